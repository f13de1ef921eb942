//! The non-blocking API: a render-loop-style frame loop that trains one step per frame
//! beside the application's own GPU work and polls the metrics, never blocking on the
//! device; and the async readbacks (`to_vec_async`, `evaluate_async`, `predict_async`)
//! equal to their blocking forms bit for bit.

mod common;

use wgnn::nn::{Activation, Dense, Dropout, Optimizer, PendingMetrics, Sequential};
use wgnn::wgpu;
use wgnn::{Gpu, Tensor};

const SEED: u64 = 11;
const FRAMES: usize = 100;

/// The same model (dropout makes every step's stream matter) compiled with the same seed.
fn model(gpu: &Gpu) -> Sequential {
    let mut m = Sequential::new(&[64])
        .with(Dense::new(32).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.25).unwrap())
        .with(Dense::new(10).unwrap());
    m.compile(gpu, Optimizer::adam(0.01), SEED).unwrap();
    m
}

/// The application's own work in a frame: an eager wgnn op on its tensor, and a raw wgpu
/// copy between two buffers of its own. Nothing waits.
struct AppWork {
    x: Tensor,
    a: wgpu::Buffer,
    b: wgpu::Buffer,
}

impl AppWork {
    fn new(gpu: &Gpu) -> AppWork {
        let x = Tensor::from_slice(gpu, &common::rand_vec(4096, 5), &[4096]).unwrap();
        let make = |label| {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 1 << 16,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        AppWork {
            x,
            a: make("app a"),
            b: make("app b"),
        }
    }

    fn frame(&mut self, gpu: &Gpu) {
        self.x = wgnn::ops::relu(&self.x).unwrap();
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("app") });
        enc.copy_buffer_to_buffer(&self.a, 0, &self.b, 0, 1 << 16);
        gpu.queue().submit(Some(enc.finish()));
    }
}

#[test]
fn pending_metrics_can_move_between_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<PendingMetrics>();
}

#[test]
fn a_frame_loop_trains_and_reads_metrics_without_blocking() {
    let gpu = Gpu::software().unwrap();
    let train = common::small_images(96, 1);
    let mut app = AppWork::new(&gpu);

    // The frame loop: one step per frame; at an epoch's end, request its metrics and go on.
    let mut m = model(&gpu);
    let mut t = m.trainer(&train, 16).unwrap();
    let steps = t.steps_per_epoch();
    t.begin_epoch();
    let before = gpu.counters().blocking_waits;
    let mut pending: Vec<(usize, PendingMetrics)> = Vec::new();
    let mut arrived: Vec<Option<(f64, f64)>> = Vec::new();
    let mut epoch = 0;
    let mut frame = 0;
    loop {
        app.frame(&gpu);
        if frame < FRAMES {
            if t.steps_done() == steps {
                pending.push((epoch, t.request_metrics().unwrap()));
                arrived.push(None);
                epoch += 1;
                t.begin_epoch();
            }
            t.step().unwrap();
        }
        for (e, p) in &pending {
            if let Some(r) = p.try_get() {
                arrived[*e] = Some(r.unwrap());
            }
        }
        frame += 1;
        if frame >= FRAMES && arrived.iter().all(Option::is_some) {
            break;
        }
        assert!(frame < FRAMES + 100_000, "metrics never arrived");
        if frame > FRAMES {
            std::thread::yield_now(); // the application's frame pacing
        }
    }
    assert_eq!(
        gpu.counters().blocking_waits - before,
        0,
        "the frame loop blocked on the device"
    );
    assert_eq!(
        epoch,
        FRAMES / steps - usize::from(FRAMES.is_multiple_of(steps))
    );
    assert!(epoch >= 10, "{epoch} epochs");
    drop(t);

    // The blocking path on an identically seeded model: the same values, bit for bit.
    let mut reference = model(&gpu);
    let mut rt = reference.trainer(&train, 16).unwrap();
    for (e, got) in arrived.iter().enumerate() {
        rt.begin_epoch();
        for _ in 0..steps {
            rt.step().unwrap();
        }
        let progress = rt.progress().unwrap();
        let ended = rt.end_epoch(e + 1).unwrap();
        assert_eq!(progress, ended);
        let got = got.unwrap();
        assert_eq!(
            (got.0.to_bits(), got.1.to_bits()),
            (ended.0.to_bits(), ended.1.to_bits()),
            "epoch {e}: frame loop {got:?}, blocking {ended:?}"
        );
    }
    assert!(gpu.counters().blocking_waits > before);
}

#[test]
fn async_readbacks_equal_the_blocking_ones_without_blocking() {
    let gpu = Gpu::software().unwrap();
    let train = common::small_images(64, 2);
    let test = common::small_images(40, 3);
    let mut m = model(&gpu);
    m.fit(
        &train,
        &wgnn::nn::Fit {
            epochs: 1,
            batch_size: 16,
            verbose: false,
            ..Default::default()
        },
    )
    .unwrap();
    let x: Vec<f32> = common::rand_vec(300 * 64, 9)
        .iter()
        .map(|v| v.abs())
        .collect();
    // Blocking first: plans and the autotuner's timing (which waits) happen here.
    let evaluation = m.evaluate(&test, 16).unwrap();
    let logits = m.predict(&x).unwrap();
    let t = Tensor::from_slice(&gpu, &[1.0, -2.0, 3.5], &[3]).unwrap();
    let labels = Tensor::from_u32(&gpu, &[7, 0, 9], &[3]).unwrap();
    let before = gpu.counters().blocking_waits;
    // Natively the readbacks can move to another thread (a spawned task).
    fn send<T: Send + 'static>(_: &T) {}
    send(&t.to_vec_async());
    let values = pollster::block_on(t.to_vec_async()).unwrap();
    let words = pollster::block_on(labels.to_vec_u32_async()).unwrap();
    let evaluation_async = pollster::block_on(m.evaluate_async(&test, 16)).unwrap();
    let logits_async = pollster::block_on(m.predict_async(&x)).unwrap();
    assert_eq!(gpu.counters().blocking_waits - before, 0);
    assert_eq!(values, [1.0, -2.0, 3.5]);
    assert_eq!(words, [7, 0, 9]);
    assert_eq!(
        (
            evaluation_async.loss.to_bits(),
            evaluation_async.accuracy.to_bits()
        ),
        (evaluation.loss.to_bits(), evaluation.accuracy.to_bits())
    );
    assert_eq!(logits_async.len(), 300 * 10);
    assert!(
        logits_async
            .iter()
            .zip(&logits)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    // A wrong element type fails when awaited, naming the call.
    let e = pollster::block_on(labels.to_vec_async()).unwrap_err();
    assert!(e.to_string().contains("Tensor::to_vec_async"), "{e}");
    // The blocking wrapper counts its waits.
    t.to_vec().unwrap();
    assert!(gpu.counters().blocking_waits > before);
}
