//! Shared test support: one set of software `Gpu`s per test binary, data and tolerances.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{RngExt, SeedableRng};
use wgnn::Gpu;
use wgnn::nn::weights::WeightSpec;

/// How long the shared test `Gpu`s wait for the device before `Error::Timeout`.
pub const TEST_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Every software adapter there is (lavapipe through Vulkan; llvmpipe through GL when EGL
/// is installed), opened once per test binary; or the adapters `WGNN_TEST_ADAPTER` chooses
/// ([`chosen_adapters`]).
pub fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        wgnn::set_poison_outputs(true);
        let all = chosen_adapters().unwrap_or_else(|| {
            Gpu::software_all().expect("a software adapter (apt-get install mesa-vulkan-drivers)")
        });
        for g in &all {
            // Before any kernel compiles: `Sequential::inject_non_finite` needs the hooks.
            g.enable_test_hooks().expect("a fresh Gpu takes test hooks");
            // A software driver compiling 16-lane variants with an empty shader cache on a
            // loaded 2-core machine can take over a minute for one readback; the tests of
            // timeouts set their own.
            g.set_wait_timeout(TEST_WAIT);
            eprintln!("test adapter: {}", g.info());
        }
        all
    })
}

/// The adapters `WGNN_TEST_ADAPTER` asks for instead of the software ones, opened: `gpu`
/// every hardware adapter (discrete, integrated or virtual GPU; scripts/gpu-bench.sh runs the
/// kernel tests so on a real GPU), `any` every adapter there is; `None` when it is unset or
/// `software`. A selection that finds no adapter panics (naming what it saw) rather than
/// passing on none.
fn chosen_adapters() -> Option<Vec<Gpu>> {
    let want = std::env::var("WGNN_TEST_ADAPTER").ok()?;
    let pick: fn(wgpu::DeviceType) -> bool = match want.as_str() {
        "software" | "" => return None,
        "gpu" => |t| {
            matches!(
                t,
                wgpu::DeviceType::DiscreteGpu
                    | wgpu::DeviceType::IntegratedGpu
                    | wgpu::DeviceType::VirtualGpu
            )
        },
        "any" => |_| true,
        other => panic!("WGNN_TEST_ADAPTER={other:?}: expected gpu, any or software"),
    };
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let inst = wgpu::Instance::default();
    let adapters = pollster::block_on(inst.enumerate_adapters(backends));
    let seen: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect();
    let gpus: Vec<Gpu> = adapters
        .iter()
        .filter(|a| pick(a.get_info().device_type))
        .map(|a| Gpu::open(a).expect("the chosen adapter opens"))
        .collect();
    assert!(
        !gpus.is_empty(),
        "WGNN_TEST_ADAPTER={want}: no such adapter among {seen:?}"
    );
    Some(gpus)
}

/// The first software adapter with 64-bit integers, opened a second time without them, so its
/// kernels compile the portable Philox multiply and subgroup matmul operand loads rather than
/// the 64-bit ones `Gpu::open` picks there. `None` when no software adapter has 64-bit
/// integers: then `gpus()` already runs the portable versions.
pub fn portable_gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        gpus();
        let inst = wgpu::Instance::default();
        let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        let adapter = adapters.into_iter().find(|a| {
            a.get_info().device_type == wgpu::DeviceType::Cpu
                && a.features().contains(wgpu::Features::SHADER_INT64)
        })?;
        // Opened by wgnn, subgroups and all, so the subgroup kernels run too.
        let gpu = wgnn::testing::open_without_int64(&adapter).expect("a device without int64");
        gpu.enable_test_hooks()
            .expect("a fresh Gpu takes test hooks");
        gpu.set_wait_timeout(TEST_WAIT);
        assert!(
            !gpu.device()
                .features()
                .contains(wgpu::Features::SHADER_INT64)
        );
        Some(gpu)
    })
    .as_ref()
}

/// `gpus()` and `portable_gpu()`: every adapter, and both versions of the 64-bit file choices
/// (kernels::shader::compose).
pub fn gpus_and_portable() -> Vec<&'static Gpu> {
    gpus().iter().chain(portable_gpu()).collect()
}

/// The first software adapter (lavapipe where present).
pub fn gpu() -> &'static Gpu {
    &gpus()[0]
}

/// A small labelled data set: `count` 8x8x1 images of random bytes (from `seed`), 10
/// classes, labels `(7i + 3) mod 10`.
pub fn small_images(count: usize, seed: u64) -> wgnn::data::Dataset {
    let bytes: Vec<u8> = rand_vec(count * 64, seed)
        .iter()
        .map(|v| ((v + 1.0) * 127.5) as u8)
        .collect();
    wgnn::data::Dataset {
        images: bytes,
        labels: (0..count).map(|i| ((i * 7 + 3) % 10) as u8).collect(),
        count,
        height: 8,
        width: 8,
        channels: 1,
        classes: 10,
    }
}

/// Softmax cross-entropy of one row of f64 logits against `label` (max-shifted log-sum-exp),
/// for the tests' host models.
pub fn xent_f64(logits: &[f64], label: usize) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
    lse - logits[label]
}

/// A small labelled data set of random bytes.
pub fn random_data(
    count: usize,
    shape: [usize; 3],
    classes: usize,
    seed: u64,
) -> wgnn::data::Dataset {
    let len = shape.iter().product::<usize>() * count;
    let images: Vec<u8> = rand_vec(len, seed)
        .iter()
        .map(|v| ((v + 1.0) * 127.5) as u8)
        .collect();
    let labels: Vec<u8> = (0..count)
        .map(|i| ((i * 7 + seed as usize) % classes) as u8)
        .collect();
    wgnn::data::Dataset {
        images,
        labels,
        count,
        height: shape[0],
        width: shape[1],
        channels: shape[2],
        classes,
    }
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

/// A fresh directory under the system temp dir (`wgnn-<tag>-<pid>-<n>`), removed on drop, so a
/// failing test leaves nothing behind.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wgnn-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path()/rel` (parent folders made) with `bytes` in it.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PNG whose header declares `w` x `h` 8-bit RGB pixels, followed by a tiny IDAT and IEND.
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The weight specs of two Dense layers `a -> b -> c` (kernels and biases, Keras names).
pub fn two_dense_specs(a: usize, b: usize, c: usize) -> Vec<WeightSpec> {
    let spec = |name: &str, shape: &[usize], layer: &str| WeightSpec {
        name: name.into(),
        shape: shape.to_vec(),
        layer: layer.into(),
    };
    vec![
        spec("dense/kernel", &[a, b], "layer 0 (Dense)"),
        spec("dense/bias", &[b], "layer 0 (Dense)"),
        spec("dense_1/kernel", &[b, c], "layer 1 (Dense)"),
        spec("dense_1/bias", &[c], "layer 1 (Dense)"),
    ]
}

/// Whether this machine has the `need` software adapters `test` compares.
///
/// With `WGNN_REQUIRE_ADAPTERS=N` in the environment (CI sets it to the adapters it installs),
/// fewer than N adapters is a failure, so a comparison across adapters cannot pass unseen on one.
/// Without it, too few adapters prints `SKIPPED <test>: needs <need> adapters, found <n> (..)`
/// on stderr and returns false; the caller still checks each adapter it has against a host
/// reference, so the test never asserts nothing.
#[track_caller]
pub fn has_adapters(test: &str, need: usize) -> bool {
    let found = gpus();
    let names = found
        .iter()
        .map(|g| g.info().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if let Ok(v) = std::env::var("WGNN_REQUIRE_ADAPTERS") {
        let required: usize = v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WGNN_REQUIRE_ADAPTERS={v:?} is not a whole number"));
        assert!(
            found.len() >= required,
            "{test}: WGNN_REQUIRE_ADAPTERS={required} but found {} software adapters ({names})",
            found.len()
        );
    }
    if found.len() >= need {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs {need} adapters, found {} ({names}); set WGNN_REQUIRE_ADAPTERS={need} to make this a failure",
        found.len()
    );
    false
}
