//! Shared test support: one set of software `Gpu`s per test binary, data and tolerances.
#![allow(dead_code)]

use std::sync::OnceLock;

use rand::{RngExt, SeedableRng};
use wgnn::Gpu;

/// Every software adapter there is (lavapipe through Vulkan; llvmpipe through GL when EGL
/// is installed), opened once per test binary.
pub fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        wgnn::set_poison_outputs(true);
        let all =
            Gpu::software_all().expect("a software adapter (apt-get install mesa-vulkan-drivers)");
        for g in &all {
            eprintln!("test adapter: {}", g.info());
        }
        all
    })
}

/// The first software adapter (lavapipe where present).
pub fn gpu() -> &'static Gpu {
    &gpus()[0]
}

/// `n` uniform values in [-1, 1) from a seeded generator.
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `|got - want| <= abs + rel * max|want|` elementwise (the relative part is taken
/// against the reference's largest magnitude, so values near zero are judged on the tensor's
/// scale). Reports the shape, the worst index and both values. Returns the worst relative
/// error (against the largest magnitude) so tests can report it.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rel: f64, abs: f64) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != reference length {}",
        got.len(),
        want.len()
    );
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(
            err.is_finite() || (g.is_nan() && w.is_nan()),
            "{what}: element {i} is {g}, reference {w}"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
    let (i, err) = worst;
    let bound = abs + rel * scale;
    assert!(
        err <= bound,
        "{what}: worst element {i} of {}: got {}, reference {} (error {err:e} > bound {bound:e}; scale {scale:e})",
        got.len(),
        got[i],
        want[i]
    );
    if scale > 0.0 { err / scale } else { err }
}
