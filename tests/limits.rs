//! Device limits: tensors and data sets against a small binding limit, through an
//! application's own device; dispatches past 65,535 workgroups; thread safety.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wgnn::{Error, Gpu, Tensor, wgpu};

/// An application's own device on the software adapter, with a 1 MiB storage binding limit
/// and an uncaptured-error handler that counts calls.
fn small_device() -> (Gpu, wgpu::Device, Arc<AtomicUsize>) {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN))
        .into_iter()
        .find(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
        .expect("lavapipe");
    let mut limits = adapter.limits();
    limits.max_storage_buffer_binding_size = 1 << 20;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("application"),
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap();
    let errors = Arc::new(AtomicUsize::new(0));
    let e = errors.clone();
    device.on_uncaptured_error(Arc::new(move |_| {
        e.fetch_add(1, Ordering::SeqCst);
    }));
    (Gpu::from_wgpu(device.clone(), queue), device, errors)
}

#[test]
fn limits_tensor_over_the_application_devices_binding_limit_is_an_error() {
    let (gpu, _device, errors) = small_device();
    let e = Tensor::zeros(&gpu, &[512 * 1024]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                requested: 2_097_152,
                limit: 1_048_576,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "Tensor::zeros: a storage buffer (Tensor::zeros) of bytes needs 2097152, over the device's limit of 1048576"
    );
    // A tensor within the limit works, and the application's handler saw nothing.
    let t = Tensor::from_slice(&gpu, &[1.0, -1.0], &[2]).unwrap();
    assert_eq!(
        wgnn::ops::relu(&t).unwrap().to_vec().unwrap(),
        vec![1.0, 0.0]
    );
    assert_eq!(errors.load(Ordering::SeqCst), 0);
}

#[test]
fn limits_data_set_spanning_several_bindings_gathers_bit_for_bit() {
    let (gpu, _device, errors) = small_device();
    // 3,000 samples of 1,000 bytes: 1,048 samples per 1 MiB binding, so three chunks.
    let (count, len) = (3000usize, 1000usize);
    let images: Vec<u8> = (0..count * len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    let idx = [1047u32, 1048, 0, 2095, 2096, 2999, 1, 2097];
    let (x, y) = wgnn::testing::gather_batch(&gpu, &images, &labels, count, &idx).unwrap();
    for (r, &s) in idx.iter().enumerate() {
        let s = s as usize;
        assert_eq!(y[r], u32::from(labels[s]), "label of row {r} (sample {s})");
        for c in 0..len {
            let want = f32::from(images[s * len + c]) * (1.0f32 / 255.0);
            assert_eq!(
                x[r * len + c].to_bits(),
                want.to_bits(),
                "row {r} (sample {s}) byte {c}"
            );
        }
    }
    // More than four bindings' worth is a clear error.
    let big = vec![0u8; 5 * 1048 * len];
    let e =
        wgnn::testing::gather_batch(&gpu, &big, &vec![0; 5 * 1048], 5 * 1048, &[0]).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
    assert_eq!(errors.load(Ordering::SeqCst), 0);
}

#[test]
fn limits_elementwise_past_65535_workgroups_matches_reference() {
    let gpu = common::gpu();
    let n = (1 << 24) + 1;
    let x: Vec<f32> = (0..n)
        .map(|i| if i % 3 == 0 { -(i as f32) } else { i as f32 })
        .collect();
    let t = Tensor::from_slice(gpu, &x, &[n]).unwrap();
    let y = wgnn::ops::relu(&t).unwrap().to_vec().unwrap();
    for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
        assert_eq!(b, a.max(0.0), "element {i}");
    }
}

#[test]
fn threads_gpu_tensor_and_model_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Gpu>();
    send_sync::<Tensor>();
    send_sync::<wgnn::nn::Sequential>();
}

#[test]
fn threads_predict_from_eight_threads_matches_single_thread() {
    use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
    let gpu = common::gpu();
    let mut model = Sequential::new(&[16])
        .with(Dense::new(32).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.5).unwrap())
        .with(Dense::new(4).unwrap());
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), 5).unwrap();
    let inputs: Vec<Vec<f32>> = (0..8)
        .map(|t| common::rand_vec(16 * (t + 1), t as u64))
        .collect();
    let want: Vec<Vec<f32>> = inputs.iter().map(|x| model.predict(x).unwrap()).collect();
    let model = Arc::new(model);
    std::thread::scope(|s| {
        for (t, x) in inputs.iter().enumerate() {
            let (model, want) = (model.clone(), &want[t]);
            s.spawn(move || {
                for _ in 0..50 {
                    let got = model.predict(x).unwrap();
                    assert!(
                        got.iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "thread {t}"
                    );
                }
            });
        }
    });
}

#[test]
fn embedding_leaves_the_applications_handlers_alone() {
    let (gpu, device, errors) = small_device();
    let lost = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = lost.clone();
    device.set_device_lost_callback(move |reason, _| l.lock().unwrap().push(reason));
    // wgnn work, including a call that fails: an Err for wgnn, nothing for the application.
    let a = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(
        wgnn::ops::matmul(&a, &a, false, false)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![7.0, 10.0, 15.0, 22.0]
    );
    let bad = wgnn::ops::matmul(&a, &Tensor::zeros(&gpu, &[3, 2]).unwrap(), false, false);
    assert!(bad.is_err());
    assert_eq!(
        wgnn::ops::dropout(&a, 2.0, 0, 0).unwrap_err().to_string(),
        "dropout: rate 2 is outside [0, 1]"
    );
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "the application's error handler was called"
    );
    // The application's own error reaches its own handler, exactly once.
    let _ = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid on purpose"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    device.destroy();
    let _ = device.poll(wgpu::PollType::Poll);
    assert_eq!(
        *lost.lock().unwrap(),
        vec![wgpu::DeviceLostReason::Destroyed]
    );
    // wgnn recognises the loss from the errors its own calls get back.
    let after = wgnn::ops::relu(&a).and_then(|t| t.to_vec());
    assert!(matches!(after, Err(Error::DeviceLost { .. })), "{after:?}");
}

#[test]
fn threads_one_failing_call_does_not_disturb_another_threads_work() {
    let gpu = common::gpu();
    let x = Tensor::from_slice(gpu, &common::rand_vec(1000, 1), &[1000]).unwrap();
    let want = wgnn::ops::relu(&x).unwrap().to_vec().unwrap();
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            for _ in 0..100 {
                assert_eq!(wgnn::ops::relu(&x).unwrap().to_vec().unwrap(), want);
            }
        });
        for _ in 0..100 {
            let e = wgnn::ops::matmul(
                &x.reshape(&[10, 100]).unwrap(),
                &x.reshape(&[10, 100]).unwrap(),
                false,
                false,
            );
            assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
        }
        worker.join().unwrap();
    });
}

#[test]
fn threads_two_models_trained_at_once_match_sequential_training() {
    use wgnn::nn::{Activation, Dense, Dropout, Fit, Optimizer, Sequential};
    let gpu = common::gpu();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..256).unwrap();
    let build = |seed| {
        let mut m = Sequential::new(&[784])
            .with(Dense::new(32).unwrap().activation(Activation::Relu))
            .with(Dropout::new(0.3).unwrap())
            .with(Dense::new(10).unwrap());
        m.compile(gpu, Optimizer::adam(1e-3), seed).unwrap();
        m
    };
    let opts = Fit {
        epochs: 2,
        batch_size: 32,
        verbose: false,
        ..Fit::default()
    };
    let mut seq = [build(1), build(2)];
    for m in &mut seq {
        m.fit(&data, &opts).unwrap();
    }
    let mut par = [build(1), build(2)];
    std::thread::scope(|s| {
        for m in &mut par {
            let (data, opts) = (&data, &opts);
            s.spawn(move || m.fit(data, opts).unwrap());
        }
    });
    for (a, b) in seq.iter().zip(&par) {
        assert_eq!(a.weights().unwrap(), b.weights().unwrap());
    }
}

#[test]
fn limits_memory_budget_gives_out_of_memory_naming_both_sizes() {
    use wgnn::nn::{Dense, Optimizer, Sequential};
    let gpu = Gpu::software().unwrap(); // its own budget
    gpu.set_memory_budget(Some(64 << 20));
    // 2048 x 4096 f32 weights are 32 MiB; with gradients and Adam's two moments, 128 MiB.
    let mut model = Sequential::new(&[2048])
        .with(Dense::new(4096).unwrap())
        .with(Dense::new(10).unwrap());
    let e = model.compile(&gpu, Optimizer::adam(1e-3), 1).unwrap_err();
    match &e {
        Error::OutOfMemory {
            requested,
            budget,
            in_use,
            ..
        } => {
            assert_eq!(*budget, 64 << 20);
            assert!(in_use + requested > *budget);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(e.to_string().starts_with("Tensor::"), "{e}");
    assert!(
        e.to_string()
            .contains("would exceed the budget of 67108864"),
        "{e}"
    );
    eprintln!("{e}");
    // The memory of the failed compile is given back, and a model that fits compiles.
    let mut small = Sequential::new(&[64]).with(Dense::new(10).unwrap());
    small.compile(&gpu, Optimizer::adam(1e-3), 1).unwrap();
    assert!(
        gpu.counters().device_bytes < 1 << 20,
        "{:?}",
        gpu.counters()
    );
}
