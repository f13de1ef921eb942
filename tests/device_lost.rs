//! A lost device: every public operation returns an error naming the loss, none panics or
//! hangs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use wgnn::nn::{Activation, Dense, Dropout, Fit, Optimizer, Sequential, Trainer};
use wgnn::ops::{self, Adam, DropoutSpec, Padding, Sgd};
use wgnn::{Error, Gpu, Tensor};

/// The public functions of `wgnn::ops`, read from the `pub use` lines of `src/ops/mod.rs`
/// (snake_case names only: the types it re-exports, `Padding` or `Sgd`, are not operations).
/// The one list of operations: a new op is exported there, so it shows up here.
fn public_ops() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops/mod.rs");
    let src = std::fs::read_to_string(&path).unwrap();
    let mut names = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find("\npub use ") {
        rest = &rest[at + "\npub use ".len()..];
        let end = rest.find(';').unwrap();
        let stmt = &rest[..end];
        let list = match (stmt.find('{'), stmt.rfind('}')) {
            (Some(a), Some(b)) => &stmt[a + 1..b],
            _ => stmt.rsplit("::").next().unwrap(),
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.split(" as ").last().unwrap().trim();
            if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                names.insert(name.to_string());
            }
        }
        rest = &rest[end..];
    }
    names
}

/// Tensors with valid shapes for every op, on one `Gpu`.
struct Fixtures {
    a: Tensor,         // [4, 4]
    b: Tensor,         // [4, 4], its own buffer
    c: Tensor,         // [4, 4]
    d: Tensor,         // [4, 4]
    vec4: [Tensor; 6], // [4] each, own buffers: gamma, beta, mean, inv_std, moving mean, var
    img: Tensor,       // NHWC [1, 4, 4, 2]
    dimg: Tensor,      // [1, 4, 4, 2], the gradient of a same-padded conv's output
    kernel: Tensor,    // HWIO [3, 3, 2, 2]
    dpool: Tensor,     // [1, 2, 2, 2], the gradient of a 2x2 pool's output
    labels: Tensor,    // u32 [4], classes 0..3
}

impl Fixtures {
    fn new(gpu: &Gpu) -> Fixtures {
        let t = |v: &[f32], s: &[usize]| Tensor::from_slice(gpu, v, s).unwrap();
        let seq = |n: usize| {
            (0..n)
                .map(|i| (i % 7) as f32 * 0.25 - 0.5)
                .collect::<Vec<_>>()
        };
        Fixtures {
            a: t(&seq(16), &[4, 4]),
            b: t(&seq(16), &[4, 4]),
            c: t(&[0.0; 16], &[4, 4]),
            d: t(&[0.0; 16], &[4, 4]),
            vec4: [0.5f32, 0.0, 0.0, 1.0, 0.0, 1.0].map(|v| t(&[v; 4], &[4])),
            img: t(&seq(32), &[1, 4, 4, 2]),
            dimg: t(&seq(32), &[1, 4, 4, 2]),
            kernel: t(&seq(36), &[3, 3, 2, 2]),
            dpool: t(&seq(8), &[1, 2, 2, 2]),
            labels: Tensor::from_u32(gpu, &[0, 1, 2, 3], &[4]).unwrap(),
        }
    }
}

/// One call: what it is (`ops::matmul`, `Sequential::fit`), the op its errors must name, and
/// what it returned.
type Call = (String, &'static str, wgnn::Result<()>);

/// Every public operation of `wgnn::ops`, with valid arguments, keyed by its name.
fn op_calls(f: &Fixtures) -> Vec<Call> {
    let [g, beta, mean, inv_std, moving_mean, moving_var] = &f.vec4;
    let drop_spec = DropoutSpec {
        rate: 0.5,
        seed: 1,
        offset: 2,
    };
    let calls: Vec<(&'static str, wgnn::Result<()>)> = vec![
        ("matmul", ops::matmul(&f.a, &f.b, false, true).map(drop)),
        (
            "dense",
            ops::dense(&f.a, &f.b, Some(g), true, Some(drop_spec)).map(drop),
        ),
        ("relu", ops::relu(&f.a).map(drop)),
        ("relu_backward", ops::relu_backward(&f.a, &f.b).map(drop)),
        (
            "relu_dropout_backward",
            ops::relu_dropout_backward(&f.a, &f.b, 0.5).map(drop),
        ),
        ("bias_add", ops::bias_add(&f.a, g).map(drop)),
        ("bias_grad", ops::bias_grad(&f.a).map(drop)),
        ("dropout", ops::dropout(&f.a, 0.5, 1, 2).map(drop)),
        (
            "dropout_backward",
            ops::dropout_backward(&f.a, 0.5, 1, 2).map(drop),
        ),
        (
            "spatial_dropout",
            ops::spatial_dropout(&f.img, 0.5, 1, 2).map(drop),
        ),
        (
            "spatial_dropout_backward",
            ops::spatial_dropout_backward(&f.dimg, 0.5, 1, 2).map(drop),
        ),
        (
            "conv2d",
            ops::conv2d(&f.img, &f.kernel, 1, Padding::Same).map(drop),
        ),
        (
            "conv2d_backward_input",
            ops::conv2d_backward_input(&f.dimg, &f.kernel, &[1, 4, 4, 2], 1, Padding::Same)
                .map(drop),
        ),
        (
            "conv2d_backward_weight",
            ops::conv2d_backward_weight(&f.img, &f.dimg, &[3, 3, 2, 2], 1, Padding::Same).map(drop),
        ),
        (
            "max_pool2d",
            ops::max_pool2d(&f.img, [2, 2], [2, 2]).map(drop),
        ),
        (
            "max_pool2d_backward",
            ops::max_pool2d_backward(&f.img, &f.dpool, [2, 2], [2, 2]).map(drop),
        ),
        (
            "softmax_cross_entropy",
            ops::softmax_cross_entropy(&f.a, &f.labels).map(drop),
        ),
        (
            "softmax_cross_entropy_async",
            pollster::block_on(ops::softmax_cross_entropy_async(&f.a, &f.labels)).map(drop),
        ),
        ("softmax", ops::softmax(&f.a).map(drop)),
        ("accuracy", ops::accuracy(&f.a, &f.labels).map(drop)),
        (
            "sgd_update",
            ops::sgd_update(&f.a, &f.b, &f.c, &Sgd::default()),
        ),
        (
            "adam_update",
            ops::adam_update(&f.a, &f.b, &f.c, &f.d, &Adam::default(), 1),
        ),
        (
            "batch_norm_train",
            ops::batch_norm_train(&f.a, g, beta, 1e-3).map(drop),
        ),
        (
            "batch_norm_inference",
            ops::batch_norm_inference(&f.a, g, beta, mean, inv_std, 1e-3).map(drop),
        ),
        (
            "batch_norm_backward",
            ops::batch_norm_backward(&f.a, &f.b, g, mean, inv_std).map(drop),
        ),
        (
            "batch_norm_update_moving",
            ops::batch_norm_update_moving(moving_mean, moving_var, mean, inv_std, 0.99, 1e-3, 4),
        ),
    ];
    calls
        .into_iter()
        .map(|(name, r)| (format!("ops::{name}"), name, r))
        .collect()
}

/// The other public entry points that reach the device: tensors in and out, the model's
/// calls, and a trainer's (made before, named by the call that made it, `trainer`).
fn model_calls(
    gpu: &Gpu,
    f: &Fixtures,
    model: &mut Sequential,
    trainer: &mut Trainer<'_>,
    data: &wgnn::data::Dataset,
    weights: &Path,
) -> Vec<Call> {
    let opts = Fit {
        epochs: 1,
        batch_size: 32,
        verbose: false,
        ..Fit::default()
    };
    let bytes = std::fs::read(weights).unwrap();
    trainer.begin_epoch();
    let calls: Vec<(&'static str, &'static str, wgnn::Result<()>)> = vec![
        (
            "Tensor::from_slice",
            "Tensor::from_slice",
            Tensor::from_slice(gpu, &[1.0], &[1]).map(drop),
        ),
        (
            "Tensor::from_u32",
            "Tensor::from_u32",
            Tensor::from_u32(gpu, &[1], &[1]).map(drop),
        ),
        (
            "Tensor::zeros",
            "Tensor::zeros",
            Tensor::zeros(gpu, &[3]).map(drop),
        ),
        ("Tensor::to_vec", "Tensor::to_vec", f.a.to_vec().map(drop)),
        (
            "Tensor::to_vec_u32",
            "Tensor::to_vec_u32",
            f.labels.to_vec_u32().map(drop),
        ),
        ("Trainer::step", "trainer", trainer.step()),
        ("Trainer::progress", "trainer", trainer.progress().map(drop)),
        (
            "Trainer::end_epoch",
            "trainer",
            trainer.end_epoch(1).map(drop),
        ),
        ("Sequential::fit", "fit", model.fit(data, &opts).map(drop)),
        (
            "Sequential::evaluate",
            "evaluate",
            model.evaluate(data, 32).map(drop),
        ),
        (
            "Sequential::predict",
            "predict",
            model.predict(&[0.0; 784]).map(drop),
        ),
        (
            "Sequential::predict_mc",
            "predict_mc",
            model.predict_mc(&[0.0; 784], 4, 1).map(drop),
        ),
        ("Sequential::weights", "weights", model.weights().map(drop)),
        (
            "Sequential::trainer",
            "trainer",
            model.trainer(data, 32).map(drop),
        ),
        (
            "Sequential::load_weights",
            "load_weights",
            model.load_weights(weights),
        ),
        (
            "Sequential::load_weights_bytes",
            "load_weights",
            model.load_weights_bytes(&bytes, "w.safetensors"),
        ),
        ("Sequential::move_to", "move_to", model.move_to(gpu)),
        (
            "Sequential::compile",
            "compile",
            model.compile(gpu, Optimizer::adam(1e-3), 2),
        ),
    ];
    calls
        .into_iter()
        .map(|(name, op, r)| (name.to_string(), op, r))
        .collect()
}

fn build_model(gpu: &Gpu) -> Sequential {
    let mut model = Sequential::new(&[784])
        .with(Dense::new(8).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.5).unwrap())
        .with(Dense::new(10).unwrap());
    model.compile(gpu, Optimizer::adam(1e-3), 1).unwrap();
    model
}

#[test]
fn device_lost_every_public_operation_returns_device_lost() {
    // Its own device: this test destroys it.
    let gpu = Gpu::software().unwrap();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..64).unwrap();
    let f = Fixtures::new(&gpu);
    let tmp = common::TempDir::new("lost");
    let weights = tmp.path().join("w.safetensors");
    let mut model = build_model(&gpu);
    let mut for_trainer = build_model(&gpu);
    model.save_weights(&weights).unwrap();
    let mut trainer = for_trainer.trainer(&data, 32).unwrap();

    // The table covers every public op of `wgnn::ops`, and names no op that is not one.
    let exported = public_ops();
    let covered: BTreeSet<String> = op_calls(&f)
        .into_iter()
        .map(|(name, _, _)| name["ops::".len()..].to_string())
        .collect();
    let missing: Vec<_> = exported.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&exported).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "src/ops/mod.rs exports ops this test does not call: {missing:?}; \
         the test calls ops src/ops/mod.rs does not export: {unknown:?}"
    );

    // The arguments are valid: on the live device every call succeeds.
    let mut live = op_calls(&f);
    live.extend(model_calls(
        &gpu,
        &f,
        &mut model,
        &mut trainer,
        &data,
        &weights,
    ));
    let failed: Vec<String> = live
        .iter()
        .filter_map(|(name, _, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "calls with invalid arguments (they fail on a live device): {failed:#?}"
    );

    // A host copy of the weights for the save below (the live `compile` reset the model).
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

    let mut lost = op_calls(&f);
    lost.extend(model_calls(
        &gpu,
        &f,
        &mut model,
        &mut trainer,
        &data,
        &weights,
    ));
    let mut wrong = Vec::new();
    for (name, want_op, r) in &lost {
        match r {
            Err(Error::DeviceLost { op, reason }) if op == want_op && reason == "Destroyed" => {}
            other => wrong.push(format!(
                "{name} (want DeviceLost {{ op: {want_op:?}, reason: \"Destroyed\" }}) gave {other:?}"
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "after the device was destroyed: {wrong:#?}"
    );
    drop(trainer);
    // Saving still works, from the host copy of the last completed epoch.
    std::fs::remove_file(&weights).unwrap();
    model.save_weights(&weights).unwrap();
    assert!(weights.exists());
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
