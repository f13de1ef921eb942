//! A long run with flat memory: 10,000 training steps with progress readbacks, evaluations
//! and checkpoints (the paths that allocate), measured by three independent meters.

mod common;

use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn soak_10000_steps_keep_device_bytes_objects_and_rss_flat() {
    let gpu = wgnn::Gpu::software().unwrap(); // its own counters
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let mut model = Sequential::new(&[784])
        .with(Dense::new(64).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.5).unwrap())
        .with(Dense::new(10).unwrap());
    model.compile(&gpu, Optimizer::adam(1e-3), 3).unwrap();
    let tmp = common::TempDir::new("soak");
    let dir = tmp.path();
    let ckpt = dir.join("soak.safetensors");
    let mut t = model.trainer(&train, 64).unwrap();
    let (mut step, mut epoch) = (0usize, 0usize);
    let mut meters = Vec::new();
    let started = std::time::Instant::now();
    let mut eval_time = 0.0;
    while step < 10_000 {
        t.begin_epoch();
        epoch += 1;
        for _ in 0..t.steps_per_epoch() {
            t.step().unwrap();
            step += 1;
            if step % 50 == 0 {
                let (loss, _) = t.progress().unwrap();
                assert!(loss.is_finite(), "loss {loss} at step {step}");
            }
            if step % 1000 == 0 {
                t.model().save_weights(&ckpt).unwrap();
            }
            if [100, 1000, 5000, 10_000].contains(&step) {
                let c = gpu.counters();
                let o = gpu.object_counts().unwrap();
                meters.push((step, c.device_bytes, o, rss()));
                eprintln!(
                    "step {step}: device bytes {}, objects {o:?}, rss {} KiB, {:.1} s",
                    c.device_bytes,
                    rss() / 1024,
                    started.elapsed().as_secs_f64()
                );
            }
            if step == 10_000 {
                break;
            }
        }
        t.end_epoch(epoch).unwrap();
        let ev = std::time::Instant::now();
        let e = t.model().evaluate(&test, 250).unwrap();
        eval_time += ev.elapsed().as_secs_f64();
        assert!(e.loss.is_finite());
    }
    eprintln!(
        "evaluations took {eval_time:.1} s of {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let at = |s: usize| meters.iter().find(|m| m.0 == s).copied().unwrap();
    let (m100, m1000, m10000) = (at(100), at(1000), at(10_000));
    assert_eq!(m100.1, m10000.1, "device bytes at step 100 and 10,000");
    assert_eq!(
        m1000.2, m10000.2,
        "wgpu object counts at step 1,000 and 10,000"
    );
    let growth = m10000.3.saturating_sub(m1000.3);
    assert!(
        growth <= 4 << 20,
        "RSS grew by {} KiB between steps 1,000 and 10,000",
        growth / 1024
    );
}
