//! The autotuner in the async forms: natively and in a browser they time the matmul variants
//! from GPU timestamps read back without blocking (`trainer_async`, `evaluate_async`,
//! `predict_async`), keep the static choice on an adapter without timestamps, and give the
//! same values, bit for bit, as the blocking forms. Each test opens its own devices, so the
//! autotuner's choices start empty.

mod common;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
use wgnn::testing::{TuneRecord, matmul_tunings, open_without_timestamps};
use wgnn::{Gpu, wgpu};

const SEED: u64 = 23;

/// Every software adapter, not yet opened (each test opens its own `Gpu`s).
fn software_adapters() -> Vec<wgpu::Adapter> {
    common::gpus(); // the shared adapters' names in the log, and WGNN_REQUIRE_ADAPTERS
    let inst = wgpu::Instance::default();
    let all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    let cpu: Vec<wgpu::Adapter> = all
        .into_iter()
        .filter(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
        .collect();
    assert!(!cpu.is_empty(), "no software adapter");
    cpu
}

fn has_timestamps(gpu: &Gpu) -> bool {
    gpu.device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
}

fn model(gpu: &Gpu) -> Sequential {
    let mut m = Sequential::new(&[64])
        .with(Dense::new(48).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.25).unwrap())
        .with(Dense::new(10).unwrap());
    m.compile(gpu, Optimizer::adam(0.01), SEED).unwrap();
    m
}

/// Polls `fut` once per "frame" with a waker that does nothing, as a render loop would,
/// until it is ready; returns its output and the frames it took.
fn poll_per_frame<F: Future>(fut: F) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for frame in 1..=1_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return (out, frame);
        }
        std::thread::yield_now();
    }
    panic!("the future never finished");
}

/// The rule `TuneRecord::chosen` follows, written again here: the static choice unless a
/// variant's median is strictly smaller, then the smallest (the first of equal ones).
fn expected_choice(r: &TuneRecord) -> wgnn::testing::MatmulTile {
    let mut best = r
        .medians
        .iter()
        .find(|(t, _)| *t == r.static_choice)
        .map_or((f64::INFINITY, r.static_choice), |&(t, s)| (s, t));
    for &(t, s) in &r.medians {
        if s < best.0 {
            best = (s, t);
        }
    }
    best.1
}

/// Trains `epochs` epochs with `t`, reading each epoch's metrics without blocking.
fn train(t: &mut wgnn::nn::Trainer<'_>, epochs: usize) -> Vec<(u64, u64)> {
    (0..epochs)
        .map(|_| {
            t.begin_epoch();
            while t.steps_done() < t.steps_per_epoch() {
                t.step().unwrap();
            }
            let (loss, acc) = pollster::block_on(t.request_metrics().unwrap().get()).unwrap();
            (loss.to_bits(), acc.to_bits())
        })
        .collect()
}

#[test]
fn trainer_async_times_the_plan_from_timestamps_without_blocking() {
    let train_set = common::small_images(100, 1); // 6 full batches of 16 and one of 4
    let mut timed_on = Vec::new();
    for adapter in software_adapters() {
        let gpu = Gpu::open(&adapter).unwrap();
        let name = gpu.info().to_string();
        if !has_timestamps(&gpu) {
            eprintln!("SKIPPED on {name}: no TIMESTAMP_QUERY");
            continue;
        }
        let mut m = model(&gpu);
        let before = gpu.counters();
        let (t, frames) = poll_per_frame(m.trainer_async(&train_set, 16));
        let mut t = t.unwrap();
        let after = gpu.counters();
        assert_eq!(
            after.blocking_waits, before.blocking_waits,
            "{name}: trainer_async blocked"
        );
        assert_eq!(after.tuned_by_clock, 0, "{name}");
        let log = matmul_tunings(&gpu).unwrap();
        // Two dense layers, forward and both gradients, for the batch of 16 and the last
        // batch of 4 (the first layer has no input gradient): 10 shapes.
        assert_eq!(log.len(), 10, "{name}: {log:#?}");
        assert_eq!(after.tuned_by_timestamps, 10, "{name}");
        for r in &log {
            assert!(r.timestamps, "{name}: {r:?}");
            assert!(r.medians.len() >= 2, "{name}: {r:?}");
            assert!(
                r.medians.iter().all(|&(_, s)| (0.0..10.0).contains(&s)),
                "{name}: {r:?}"
            );
            assert!(r.medians.iter().any(|&(_, s)| s > 0.0), "{name}: {r:?}");
            assert_eq!(r.chosen, expected_choice(r), "{name}: {r:?}");
        }
        let async_metrics = train(&mut t, 2);
        drop(t);

        // The blocking form on the same device finds every shape chosen: it times nothing.
        let mut again = model(&gpu);
        let mut blocking = again.trainer(&train_set, 16).unwrap();
        assert_eq!(gpu.counters().tuned_by_clock, 0, "{name}");
        assert_eq!(train(&mut blocking, 2), async_metrics, "{name}");
        drop(blocking);

        // The static choices, on the same adapter without timestamps: the same bits.
        let plain = open_without_timestamps(&adapter).unwrap();
        let mut reference = model(&plain);
        let mut rt = pollster::block_on(reference.trainer_async(&train_set, 16)).unwrap();
        assert_eq!(train(&mut rt, 2), async_metrics, "{name}");
        let changed = log.iter().filter(|r| r.chosen != r.static_choice).count();
        eprintln!(
            "{name}: trainer_async timed {} shapes from timestamps in {frames} polls, {changed} \
             away from the static choice",
            log.len()
        );
        timed_on.push(name);
    }
    assert!(
        !timed_on.is_empty(),
        "no adapter in this run has TIMESTAMP_QUERY: the timestamp autotuner ran nowhere"
    );
}

#[test]
fn without_timestamps_the_async_forms_keep_the_static_choice() {
    let adapter = software_adapters().remove(0);
    let gpu = open_without_timestamps(&adapter).unwrap();
    assert!(!has_timestamps(&gpu));
    let train_set = common::small_images(64, 2);
    let test_set = common::small_images(40, 3);
    let x: Vec<f32> = common::rand_vec(30 * 64, 4)
        .iter()
        .map(|v| v.abs())
        .collect();
    let mut m = model(&gpu);
    let before = gpu.counters();
    let mut t = pollster::block_on(m.trainer_async(&train_set, 16)).unwrap();
    train(&mut t, 1);
    drop(t);
    pollster::block_on(m.evaluate_async(&test_set, 20)).unwrap();
    pollster::block_on(m.predict_async(&x)).unwrap();
    let after = gpu.counters();
    assert_eq!(after.tuned_by_timestamps, 0);
    assert_eq!(after.tuned_by_clock, 0);
    assert!(matmul_tunings(&gpu).unwrap().is_empty());
    assert_eq!(after.blocking_waits, before.blocking_waits);
}

#[test]
fn evaluate_and_predict_async_tune_on_a_fresh_model_without_blocking() {
    let adapter = software_adapters().remove(0);
    let gpu = Gpu::open(&adapter).unwrap();
    let name = gpu.info().to_string();
    if !has_timestamps(&gpu) {
        // The trainer test above fails the run when no adapter has timestamps.
        eprintln!("SKIPPED on {name}: no TIMESTAMP_QUERY");
        return;
    }
    let test_set = common::small_images(50, 5);
    let x: Vec<f32> = common::rand_vec(300 * 64, 6)
        .iter()
        .map(|v| v.abs())
        .collect();
    let m = model(&gpu);
    let before = gpu.counters();
    let (evaluation, _) = poll_per_frame(m.evaluate_async(&test_set, 20));
    let evaluation = evaluation.unwrap();
    let after_eval = gpu.counters();
    // Forward only, batches of 20 and the last of 10: two shapes per layer.
    assert_eq!(
        after_eval.tuned_by_timestamps - before.tuned_by_timestamps,
        4
    );
    let (logits, _) = poll_per_frame(m.predict_async(&x));
    let logits = logits.unwrap();
    let after = gpu.counters();
    // One plan of 256 rows (the last 44 run through it too): two shapes more.
    assert_eq!(
        after.tuned_by_timestamps - after_eval.tuned_by_timestamps,
        2
    );
    assert_eq!(after.blocking_waits, before.blocking_waits, "{name}");
    assert_eq!(after.tuned_by_clock, 0);

    // The blocking forms with the static choices on the same adapter: the same bits.
    let plain = open_without_timestamps(&adapter).unwrap();
    let reference = model(&plain);
    let want = reference.evaluate(&test_set, 20).unwrap();
    assert_eq!(
        (evaluation.loss.to_bits(), evaluation.accuracy.to_bits()),
        (want.loss.to_bits(), want.accuracy.to_bits())
    );
    let want = reference.predict(&x).unwrap();
    assert_eq!(logits.len(), want.len());
    assert!(
        logits
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
