//! A lost device: every public operation returns an error naming the loss, none panics or
//! hangs.

mod common;

use wgnn::nn::{Activation, Dense, Dropout, Fit, Optimizer, Sequential};
use wgnn::ops::{self, Padding};
use wgnn::{Error, Gpu, Tensor};

#[test]
fn device_lost_every_public_operation_returns_device_lost() {
    let gpu = Gpu::software().unwrap();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..64).unwrap();
    let a = Tensor::from_slice(&gpu, &[1.0; 16], &[4, 4]).unwrap();
    let img = Tensor::from_slice(&gpu, &[1.0; 32], &[1, 4, 4, 2]).unwrap();
    let k = Tensor::from_slice(&gpu, &[1.0; 36], &[3, 3, 2, 2]).unwrap();
    let labels = Tensor::from_u32(&gpu, &[0, 1, 2, 3], &[4]).unwrap();
    let mut model = Sequential::new(&[784])
        .with(Dense::new(8).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.5).unwrap())
        .with(Dense::new(10).unwrap());
    model.compile(&gpu, Optimizer::adam(1e-3), 1).unwrap();
    model
        .fit(
            &data,
            &Fit {
                epochs: 1,
                batch_size: 32,
                verbose: false,
                ..Fit::default()
            },
        )
        .unwrap();

    gpu.device().destroy();

    let tmp = common::TempDir::new("lost");
    let dir = tmp.path();
    let results: Vec<(&str, wgnn::Result<()>)> = vec![
        (
            "Tensor::from_slice",
            Tensor::from_slice(&gpu, &[1.0], &[1]).map(drop),
        ),
        ("Tensor::zeros", Tensor::zeros(&gpu, &[3]).map(drop)),
        ("Tensor::to_vec", a.to_vec().map(drop)),
        ("Tensor::to_vec_u32", labels.to_vec_u32().map(drop)),
        ("matmul", ops::matmul(&a, &a, false, true).map(drop)),
        ("relu", ops::relu(&a).map(drop)),
        ("dropout", ops::dropout(&a, 0.5, 1, 2).map(drop)),
        (
            "dropout_backward",
            ops::dropout_backward(&a, 0.5, 1, 2).map(drop),
        ),
        ("bias_grad", ops::bias_grad(&a).map(drop)),
        ("conv2d", ops::conv2d(&img, &k, 1, Padding::Same).map(drop)),
        (
            "max_pool2d",
            ops::max_pool2d(&img, [2, 2], [2, 2]).map(drop),
        ),
        (
            "softmax_cross_entropy",
            ops::softmax_cross_entropy(&a, &labels).map(drop),
        ),
        ("softmax", ops::softmax(&a).map(drop)),
        ("accuracy", ops::accuracy(&a, &labels).map(drop)),
        (
            "sgd_update",
            ops::sgd_update(
                &a,
                &a.clone(),
                &Tensor::zeros(&gpu, &[4, 4]).unwrap_or(a.clone()),
                &ops::Sgd::default(),
            ),
        ),
        (
            "batch_norm_train",
            ops::batch_norm_train(
                &a,
                &a.reshape(&[16]).unwrap(),
                &a.reshape(&[16]).unwrap(),
                1e-3,
            )
            .map(drop),
        ),
        (
            "fit",
            model
                .fit(
                    &data,
                    &Fit {
                        epochs: 1,
                        batch_size: 32,
                        verbose: false,
                        ..Fit::default()
                    },
                )
                .map(drop),
        ),
        ("evaluate", model.evaluate(&data, 32).map(drop)),
        ("predict", model.predict(&[0.0; 784]).map(drop)),
        ("weights", model.weights().map(drop)),
        ("compile", model.compile(&gpu, Optimizer::adam(1e-3), 2)),
    ];
    for (name, r) in results {
        match r {
            Err(Error::DeviceLost { reason, .. }) => assert_eq!(reason, "Destroyed", "{name}"),
            Err(e) if name == "sgd_update" || name == "batch_norm_train" => {
                // Shape checks may come first; any error is fine, a panic or an Ok is not.
                eprintln!("{name}: {e}");
            }
            other => panic!("{name} after the device was destroyed gave {other:?}"),
        }
    }
    // Saving still works, from the host copy of the last completed epoch.
    model.save_weights(dir.join("w.safetensors")).unwrap();
    assert!(dir.join("w.safetensors").exists());
}

#[test]
fn device_lost_during_training_keeps_the_last_epoch_on_the_host_and_moves_to_a_new_gpu() {
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..320).unwrap();
    let build = |gpu: &Gpu| {
        let mut m = Sequential::new(&[784])
            .with(Dense::new(32).unwrap().activation(Activation::Relu))
            .with(Dropout::new(0.5).unwrap())
            .with(Dense::new(10).unwrap());
        m.compile(gpu, Optimizer::adam(1e-3), 11).unwrap();
        m
    };
    let opts = Fit {
        epochs: 1,
        batch_size: 32,
        verbose: false,
        ..Fit::default()
    };
    // A clean run's weights after epoch 1 and its evaluation.
    let clean_gpu = Gpu::software().unwrap();
    let mut clean = build(&clean_gpu);
    clean.fit(&data, &opts).unwrap();
    let want = clean.weights().unwrap();
    let want_eval = clean.evaluate(&test, 100).unwrap();

    // The same run, with the device destroyed during epoch 2.
    let gpu = Gpu::software().unwrap();
    let mut model = build(&gpu);
    model.fit(&data, &opts).unwrap();
    {
        let mut t = model.trainer(&data, 32).unwrap();
        t.begin_epoch();
        for _ in 0..3 {
            t.step().unwrap();
        }
        gpu.device().destroy();
        // wgpu reports the loss once the queue drains: a step or the epoch's end says so.
        let mut res = Ok(());
        for _ in 0..6 {
            res = t.step();
            if res.is_err() {
                break;
            }
        }
        let e = match res {
            Err(e) => e,
            Ok(()) => t.end_epoch(2).unwrap_err(),
        };
        assert!(matches!(e, Error::DeviceLost { .. }), "{e}");
    }
    let e = model.fit(&data, &opts).unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e}");
    // save_weights works from the host copy: epoch 1's weights, bit for bit.
    let tmp = common::TempDir::new("lost-save");
    let dir = tmp.path();
    let path = dir.join("after-loss.safetensors");
    model.save_weights(&path).unwrap();
    let mut reloaded = build(&clean_gpu);
    reloaded.load_weights(&path).unwrap();
    assert_eq!(reloaded.weights().unwrap(), want);
    // The model moves to a new Gpu and evaluates exactly as the clean run does.
    let fresh = Gpu::software().unwrap();
    model.move_to(&fresh).unwrap();
    assert_eq!(model.weights().unwrap(), want);
    let eval = model.evaluate(&test, 100).unwrap();
    assert_eq!(eval.loss.to_bits(), want_eval.loss.to_bits());
    model.fit(&data, &opts).unwrap();
}

#[test]
fn timeout_a_long_kernel_read_back_with_a_short_timeout_gives_timeout() {
    let gpu = Gpu::software().unwrap(); // its own queue
    // wgpu's GL backend runs work inside `submit`, so no wait is ever long enough to time
    // out there: this test needs the Vulkan driver the README's test command installs.
    assert_ne!(
        gpu.info().backend,
        wgnn::wgpu::Backend::Gl,
        "lavapipe is missing (apt-get install mesa-vulkan-drivers): {}",
        gpu.info()
    );
    // Calibrate: double the work until one run takes at least 200 ms (so submission and
    // wait overheads are noise), then size a kernel of about 3 s, ten times the timeout.
    wgnn::testing::spin(&gpu, 1, 1).unwrap().to_vec().unwrap();
    let (mut groups, mut iterations) = (64u32, 1u32 << 12);
    let per_unit = loop {
        let start = std::time::Instant::now();
        wgnn::testing::spin(&gpu, groups, iterations)
            .unwrap()
            .to_vec()
            .unwrap();
        let took = start.elapsed().as_secs_f64();
        if took >= 0.2 {
            break took / (f64::from(groups) * f64::from(iterations));
        }
        if groups < 4096 {
            groups *= 2;
        } else {
            iterations *= 2;
        }
    };
    let units = 3.0 / per_unit;
    let groups = ((units / f64::from(iterations)) as u32).clamp(1, 65_535);
    let iterations = ((units / f64::from(groups)) as u32).max(iterations);
    gpu.set_wait_timeout(std::time::Duration::from_millis(300));
    let t = wgnn::testing::spin(&gpu, groups, iterations).unwrap();
    let e = t.to_vec().unwrap_err();
    assert_eq!(
        e.to_string(),
        "Tensor::to_vec: the device did not finish within 300ms"
    );
    // Given time, the same device finishes and the result reads back.
    gpu.set_wait_timeout(std::time::Duration::from_secs(60));
    let v = t.to_vec().unwrap();
    assert!(v[0].is_finite());
}
