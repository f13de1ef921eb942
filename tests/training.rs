//! The executor and the Keras-like API: gradients against finite differences of an f64
//! host model, fusion against the separate ops, residency counters, determinism, dropout
//! streams, inference mode, accuracy on the shipped subset, weights files, the NaN stop.
#![allow(
    clippy::needless_range_loop,
    reason = "the host models index tensors as the formulas do"
)]

mod common;

use wgnn::data::Dataset;
use wgnn::nn::Layer;
use wgnn::nn::{
    Activation, BatchNorm, Conv2d, Dense, Dropout, Fit, MaxPool2d, ModelCheckpoint, Monitor,
    NamedTensor, OnNonFinite, Optimizer, Sequential,
};
use wgnn::{Error, philox};

const SEED: u64 = 7;

/// The pixel value the GPU gather makes of a byte.
fn pixel(b: u8) -> f64 {
    f64::from(f32::from(b) * (1.0f32 / 255.0))
}

/// The f64 host forward of `small_cnn(bn)` in training mode at global step `step`: mean
/// loss. Weights in the model's order: conv kernel HWIO [3,3,2,3], conv bias, (BatchNorm
/// gamma, beta, moving mean, moving variance,) dense [12,5], bias, dense_1 [5,3], bias.
fn host_loss(w: &[Vec<f64>], data: &Dataset, step: u64, bn: bool) -> f64 {
    let (n, h, wd, c) = (data.count, 6, 6, 2);
    let x: Vec<f64> = data.images.iter().map(|&b| pixel(b)).collect();
    let (ck, cb) = (&w[0], &w[1]);
    let o = if bn { 4 } else { 0 };
    let (d1, b1, d2, b2) = (&w[2 + o], &w[3 + o], &w[4 + o], &w[5 + o]);
    let stream = if bn { 5 } else { 4 };
    // Conv 3x3 valid + ReLU -> [n, 4, 4, 3].
    let mut conv = vec![0.0; n * 4 * 4 * 3];
    for s in 0..n {
        for i in 0..4 {
            for j in 0..4 {
                for co in 0..3 {
                    let mut acc = cb[co];
                    for di in 0..3 {
                        for dj in 0..3 {
                            for ci in 0..c {
                                acc += x[((s * h + i + di) * wd + j + dj) * c + ci]
                                    * ck[((di * 3 + dj) * c + ci) * 3 + co];
                            }
                        }
                    }
                    conv[((s * 4 + i) * 4 + j) * 3 + co] = acc.max(0.0);
                }
            }
        }
    }
    if bn {
        // Batch statistics over the n * 16 rows of each channel, biased variance, eps 1e-3.
        let rows = (n * 16) as f64;
        for co in 0..3 {
            let mean = conv.iter().skip(co).step_by(3).sum::<f64>() / rows;
            let var = conv
                .iter()
                .skip(co)
                .step_by(3)
                .map(|v| (v - mean).powi(2))
                .sum::<f64>()
                / rows;
            let inv = 1.0 / (var + f64::from(1e-3f32)).sqrt();
            for v in conv.iter_mut().skip(co).step_by(3) {
                *v = (*v - mean) * inv * w[2][co] + w[3][co];
            }
        }
    }
    let mut loss = 0.0;
    for s in 0..n {
        // Max pool 2x2 -> [2, 2, 3], flattened NHWC -> 12.
        let mut flat = [0.0; 12];
        for i in 0..2 {
            for j in 0..2 {
                for co in 0..3 {
                    let mut m = f64::NEG_INFINITY;
                    for di in 0..2 {
                        for dj in 0..2 {
                            m = m.max(conv[((s * 4 + 2 * i + di) * 4 + 2 * j + dj) * 3 + co]);
                        }
                    }
                    flat[(i * 2 + j) * 3 + co] = m;
                }
            }
        }
        // Dense 5 + ReLU + Dropout(0.3) (the Dropout layer's stream at this step).
        let mut hid = [0.0; 5];
        for u in 0..5 {
            let z: f64 = b1[u] + (0..12).map(|k| flat[k] * d1[k * 5 + u]).sum::<f64>();
            let keep = philox::keep(SEED, stream + (step << 32), (s * 5 + u) as u64, 0.3);
            hid[u] = if keep {
                z.max(0.0) * f64::from(philox::scale(0.3))
            } else {
                0.0
            };
        }
        // Dense 3, softmax cross-entropy.
        let logits: Vec<f64> = (0..3)
            .map(|o| b2[o] + (0..5).map(|k| hid[k] * d2[k * 3 + o]).sum::<f64>())
            .collect();
        loss += common::xent_f64(&logits, usize::from(data.labels[s]));
    }
    loss / n as f64
}

fn small_cnn(bn: bool) -> wgnn::Result<Sequential> {
    let mut m =
        Sequential::new(&[6, 6, 2]).with(Conv2d::new(3, [3, 3])?.activation(Activation::Relu));
    if bn {
        m.add(BatchNorm::new());
    }
    Ok(m.with(MaxPool2d::new([2, 2])?)
        .with(Layer::Flatten)
        .with(Dense::new(5)?.activation(Activation::Relu))
        .with(Dropout::new(0.3)?)
        .with(Dense::new(3)?))
}

/// Runs one step over the whole of `data` with lr 0 and returns the gradients.
fn one_step_gradients(
    model: &mut Sequential,
    data: &Dataset,
) -> Vec<wgnn::nn::weights::NamedTensor> {
    let mut t = model.trainer(data, data.count).unwrap();
    t.shuffle = false;
    t.begin_epoch();
    t.step().unwrap();
    t.end_epoch(1).unwrap();
    model.gradients().unwrap()
}

fn check_against_finite_differences(
    model: &Sequential,
    grads: &[wgnn::nn::weights::NamedTensor],
    data: &Dataset,
    step: u64,
    skip: &[usize],
    bn: bool,
) {
    let w: Vec<Vec<f64>> = model
        .weights()
        .unwrap()
        .iter()
        .map(|t| t.data.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let h = 1e-5;
    for (p, g) in grads.iter().enumerate() {
        if skip.contains(&p) {
            continue;
        }
        let fd: Vec<f64> = (0..w[p].len())
            .map(|i| {
                let mut wp = w.clone();
                let mut wm = w.clone();
                wp[p][i] += h;
                wm[p][i] -= h;
                (host_loss(&wp, data, step, bn) - host_loss(&wm, data, step, bn)) / (2.0 * h)
            })
            .collect();
        // f32 GPU gradients against f64 central differences: rel 2e-6 of the largest entry,
        // abs 1e-9. The differences are exact to far less than that (h = 1e-5 in f64:
        // truncation h^2 * (third derivative) / 6 ~ 1e-10, rounding 1e-16 * loss / h ~
        // 1e-11, which the abs part covers where a tensor's gradient is all but zero), so the
        // error is the f32 rounding of the GPU's sums. Measured on lavapipe, the worst of the
        // three tests is 9.1e-7 (dense_1/kernel at step 0 in the frozen-layer test);
        // 2e-6 (17 f32 epsilons) is about twice that, room for another summation order, and
        // 50 times tighter than the 1e-4 used before.
        let worst = common::assert_close(
            &format!("{} at step {step}", g.name),
            &g.data,
            &fd,
            2e-6,
            1e-9,
        );
        eprintln!("{}: worst relative error {worst:e}", g.name);
    }
}

#[test]
fn graph_gradients_match_finite_differences_with_conv_pool_dense_dropout() {
    let gpu = common::gpu();
    let data = common::random_data(4, [6, 6, 2], 3, 1);
    let mut model = small_cnn(false).unwrap();
    model.compile(gpu, Optimizer::sgd(0.0, 0.0), SEED).unwrap();
    // Step 0 and step 1 draw different dropout masks (stream 4 and 4 + 2^32); the host model
    // uses the documented formula for each, so both match only if the GPU does too.
    let g0 = one_step_gradients(&mut model, &data);
    check_against_finite_differences(&model, &g0, &data, 0, &[], false);
    let g1 = one_step_gradients(&mut model, &data);
    check_against_finite_differences(&model, &g1, &data, 1, &[], false);
    assert_ne!(
        g0[2].data, g1[2].data,
        "two steps drew the same dropout mask"
    );
}

#[test]
fn graph_gradients_match_finite_differences_through_batch_norm() {
    let gpu = common::gpu();
    let data = common::random_data(4, [6, 6, 2], 3, 3);
    let mut model = small_cnn(true).unwrap();
    model.compile(gpu, Optimizer::sgd(0.0, 0.0), SEED).unwrap();
    let g = one_step_gradients(&mut model, &data);
    // The moving statistics (parameters 4 and 5) get no gradient.
    check_against_finite_differences(&model, &g, &data, 0, &[4, 5], true);
    // The moving averages moved by Keras' rule: moving = 0.99 moving + 0.01 batch.
    let w = model.weights().unwrap();
    assert_eq!(w[4].name, "batch_normalization/moving_mean");
    assert!(
        w[4].data.iter().any(|&m| m > 0.0),
        "moving mean did not move: {:?}",
        w[4].data
    );
    assert!(
        w[5].data.iter().all(|&v| v < 1.0 && v > 0.98),
        "moving variance: {:?}",
        w[5].data
    );
}

#[test]
fn graph_frozen_layer_gets_no_update_and_the_rest_match_finite_differences() {
    let gpu = common::gpu();
    let data = common::random_data(4, [6, 6, 2], 3, 2);
    let mut model = small_cnn(false).unwrap();
    model.compile(gpu, Optimizer::sgd(0.0, 0.0), SEED).unwrap();
    model.set_trainable(0, false).unwrap();
    let g = one_step_gradients(&mut model, &data);
    check_against_finite_differences(&model, &g, &data, 0, &[0, 1], false);

    // With a real learning rate the frozen conv weights stay bit-identical.
    model.compile(gpu, Optimizer::sgd(0.5, 0.9), SEED).unwrap();
    model.set_trainable(0, false).unwrap();
    let before = model.weights().unwrap();
    model
        .fit(
            &data,
            &Fit {
                epochs: 3,
                batch_size: 2,
                verbose: false,
                ..Fit::default()
            },
        )
        .unwrap();
    let after = model.weights().unwrap();
    assert_eq!(before[0], after[0], "frozen conv kernel moved");
    assert_eq!(before[1], after[1], "frozen conv bias moved");
    assert_ne!(before[2], after[2], "trainable dense kernel did not move");
}

fn mlp(dropout: f32) -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[784])
        .with(Dense::new(64)?.activation(Activation::Relu))
        .with(Dropout::new(dropout)?)
        .with(Dense::new(32)?)
        .with(Layer::Relu)
        .with(Dropout::new(dropout)?)
        .with(Dense::new(10)?))
}

fn train_steps(model: &mut Sequential, data: &Dataset, batch: usize, steps: usize) {
    let mut t = model.trainer(data, batch).unwrap();
    let mut done = 0;
    while done < steps {
        t.begin_epoch();
        for _ in 0..t.steps_per_epoch().min(steps - done) {
            t.step().unwrap();
            done += 1;
        }
    }
}

#[test]
fn graph_fused_dense_relu_dropout_matches_separate_ops() {
    let gpu = common::gpu();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..256).unwrap();
    let mut fused = mlp(0.4).unwrap();
    fused.compile(gpu, Optimizer::sgd(0.05, 0.9), SEED).unwrap();
    let mut plain = mlp(0.4).unwrap();
    plain.compile(gpu, Optimizer::sgd(0.05, 0.9), SEED).unwrap();
    plain.set_fusion(false).unwrap();
    // Two different plans: unfused, layer 0's dropout adds a forward and a backward
    // dispatch, and layer 1's ReLU and dropout two forward and one backward dispatch.
    let fused_dispatches = fused.trainer(&data, 32).unwrap().plan_dispatches();
    let plain_dispatches = plain.trainer(&data, 32).unwrap().plan_dispatches();
    assert_eq!(
        plain_dispatches,
        fused_dispatches + 5,
        "dispatches per step, separate ops vs fused"
    );
    train_steps(&mut fused, &data, 32, 10);
    train_steps(&mut plain, &data, 32, 10);
    for (a, b) in fused
        .weights()
        .unwrap()
        .iter()
        .zip(plain.weights().unwrap())
    {
        let want: Vec<f64> = b.data.iter().map(|&v| f64::from(v)).collect();
        common::assert_close(
            &format!("{} fused vs separate ops", a.name),
            &a.data,
            &want,
            1e-5,
            0.0,
        );
    }
}

#[test]
fn graph_epochs_after_the_first_create_nothing_end_epoch_readbacks_included() {
    let gpu = wgnn::Gpu::software().unwrap(); // its own counters
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let train = train.subset(0..320).unwrap();
    let mut model = Sequential::new(&[784])
        .with(Dense::new(64).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.5).unwrap())
        .with(Dense::new(64).unwrap().activation(Activation::Relu))
        .with(Dense::new(10).unwrap());
    model.compile(&gpu, Optimizer::adam(1e-3), SEED).unwrap();
    let mut t = model.trainer(&train, 32).unwrap();
    let epoch = |t: &mut wgnn::nn::Trainer<'_>, e: usize| {
        t.begin_epoch();
        for _ in 0..t.steps_per_epoch() {
            t.step().unwrap();
        }
        t.progress().unwrap();
        t.end_epoch(e).unwrap();
    };
    t.begin_epoch();
    for _ in 0..t.steps_per_epoch() {
        t.step().unwrap();
    }
    let steps_done = gpu.counters();
    t.end_epoch(1).unwrap();
    let first = gpu.counters();
    // The real cost of end_epoch, stated exactly: readbacks reuse staging buffers by size
    // (Gpu::download), so the first end_epoch creates one per distinct size it reads (the
    // 16-byte metrics and status words, and each weight tensor) and none after.
    let mut sizes: Vec<usize> = t
        .model()
        .weights()
        .unwrap()
        .iter()
        .map(|w| 4 * w.data.len())
        .chain([16])
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    assert_eq!(
        first.buffers_created - steps_done.buffers_created,
        sizes.len() as u64,
        "staging buffers the first end_epoch creates (one per readback size {sizes:?})"
    );
    for e in 2..=4 {
        epoch(&mut t, e);
    }
    let after = gpu.counters();
    assert_eq!(
        after.buffers_created, first.buffers_created,
        "buffers created since the first end_epoch (this test's weights readback, then \
         epochs 2 to 4: steps, progress, end_epoch)"
    );
    assert_eq!(
        after.bind_groups_created, first.bind_groups_created,
        "bind groups created by epochs 2 to 4"
    );
    assert_eq!(after.device_bytes, first.device_bytes);
}

#[test]
fn graph_steps_after_the_first_create_nothing_and_read_nothing_back() {
    let gpu = wgnn::Gpu::software().unwrap(); // its own counters
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    // Three hidden layers of one width, so gradient buffers can take dead ones' places.
    let mut model = Sequential::new(&[784]);
    for _ in 0..3 {
        model.add(Dense::new(64).unwrap().activation(Activation::Relu));
        model.add(Dropout::new(0.5).unwrap());
    }
    model.add(Dense::new(10).unwrap());
    model.compile(&gpu, Optimizer::adam(1e-3), SEED).unwrap();
    let mut t = model.trainer(&train, 32).unwrap();
    t.begin_epoch();
    t.step().unwrap();
    let first = gpu.counters();
    for _ in 0..50 {
        t.step().unwrap();
    }
    let after = gpu.counters();
    assert_eq!(
        after.buffers_created, first.buffers_created,
        "buffers created during steps"
    );
    assert_eq!(
        after.bind_groups_created, first.bind_groups_created,
        "bind groups created during steps"
    );
    assert_eq!(
        after.bytes_read_back, first.bytes_read_back,
        "bytes read back during steps"
    );
    assert_eq!(
        after.submissions - first.submissions,
        50,
        "one submission per step"
    );
    assert_eq!(
        after.bytes_uploaded - first.bytes_uploaded,
        50 * 16,
        "one 16-byte step uniform per step"
    );
    assert_eq!(after.device_bytes, first.device_bytes);
    let (virtual_buffers, physical) = t.plan_buffers();
    assert!(
        physical < virtual_buffers,
        "no reuse: {physical} physical for {virtual_buffers} virtual buffers"
    );
    eprintln!("plan: {virtual_buffers} virtual buffers in {physical} physical ones");
    eprintln!("ExecStats after 51 steps: {after:?}");
}

#[test]
fn graph_same_seed_gives_bit_identical_weights_after_20_steps() {
    let gpu = common::gpu();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..640).unwrap();
    let run = || {
        let mut m = mlp(0.5).unwrap();
        m.compile(gpu, Optimizer::adam(1e-3), 99).unwrap();
        train_steps(&mut m, &data, 32, 20);
        m.weights().unwrap()
    };
    let (a, b) = (run(), run());
    for (x, y) in a.iter().zip(&b) {
        let xb: Vec<u32> = x.data.iter().map(|v| v.to_bits()).collect();
        let yb: Vec<u32> = y.data.iter().map(|v| v.to_bits()).collect();
        assert!(
            xb == yb,
            "{} differs between two runs with one seed",
            x.name
        );
    }
}

#[test]
fn graph_inference_ignores_dropout() {
    let gpu = common::gpu();
    let mut model = Sequential::new(&[3])
        .with(Dense::new(4).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.9).unwrap())
        .with(Dense::new(2).unwrap());
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), SEED).unwrap();
    let x = [0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75];
    let a = model.predict(&x).unwrap();
    let b = model.predict(&x).unwrap();
    assert_eq!(a, b);
    let w = model.weights().unwrap();
    let mut want = Vec::new();
    for s in 0..2 {
        let hid: Vec<f64> = (0..4)
            .map(|u| {
                (f64::from(w[1].data[u])
                    + (0..3)
                        .map(|k| f64::from(x[s * 3 + k]) * f64::from(w[0].data[k * 4 + u]))
                        .sum::<f64>())
                .max(0.0)
            })
            .collect();
        for o in 0..2 {
            want.push(
                f64::from(w[3].data[o])
                    + (0..4)
                        .map(|k| hid[k] * f64::from(w[2].data[k * 2 + o]))
                        .sum::<f64>(),
            );
        }
    }
    common::assert_close("predict without dropout", &a, &want, 1e-6, 0.0);
}

#[test]
fn fit_on_shipped_subset_reaches_70_percent_in_two_epochs() {
    let gpu = common::gpu();
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let mut model = Sequential::new(&[784])
        .with(Dense::new(128).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.2).unwrap())
        .with(Dense::new(10).unwrap());
    model.compile(gpu, Optimizer::adam(1e-3), SEED).unwrap();
    let h = model
        .fit(
            &train,
            &Fit {
                epochs: 2,
                batch_size: 32,
                validation: Some(&test),
                verbose: false,
                ..Fit::default()
            },
        )
        .unwrap();
    let v = h.epochs[1].validation.unwrap();
    eprintln!("history: {h:?}");
    assert!(
        v.accuracy > 0.70,
        "validation accuracy {} after 2 epochs",
        v.accuracy
    );
    assert!(
        h.epochs[1].loss < h.epochs[0].loss,
        "training loss did not fall"
    );
    let e = model.evaluate(&test, 100).unwrap();
    assert!(
        (e.accuracy - v.accuracy).abs() < 1e-9,
        "evaluate {} vs validation {}",
        e.accuracy,
        v.accuracy
    );
}

#[test]
fn weights_round_trip_bit_exactly_and_bad_files_are_rejected() {
    let gpu = common::gpu();
    let tmp = common::TempDir::new("weights");
    let dir = tmp.path();
    let path = dir.join("model.safetensors");
    let mut a = small_cnn(false).unwrap();
    a.compile(gpu, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    a.save_weights(&path).unwrap();
    let mut b = small_cnn(false).unwrap();
    b.compile(gpu, Optimizer::sgd(0.1, 0.0), 2).unwrap();
    let b_before = b.weights().unwrap();
    assert_ne!(a.weights().unwrap(), b_before);
    b.load_weights(&path).unwrap();
    assert_eq!(a.weights().unwrap(), b.weights().unwrap(), "round trip");

    let bytes = std::fs::read(&path).unwrap();
    let mut c = small_cnn(false).unwrap();
    c.compile(gpu, Optimizer::sgd(0.1, 0.0), 3).unwrap();
    let c_before = c.weights().unwrap();
    let cut = &bytes[..bytes.len() - 5];
    let e = c
        .load_weights_bytes(cut, "cut.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cut.safetensors: file is "), "{e}");
    let mut flipped = bytes.clone();
    flipped[20] ^= 0xFF;
    assert!(matches!(
        c.load_weights_bytes(&flipped, "flipped"),
        Err(Error::Data { .. })
    ));
    let mut other = Sequential::new(&[6, 6, 2])
        .with(Layer::Flatten)
        .with(Dense::new(3).unwrap());
    other.compile(gpu, Optimizer::sgd(0.1, 0.0), 3).unwrap();
    let e = other.load_weights(&path).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "tensor \"dense/kernel\" has shape [12, 5], but layer 1 (Dense) expects [72, 3]"
        ),
        "{e}"
    );
    assert_eq!(
        c.weights().unwrap(),
        c_before,
        "a failed load changed the weights"
    );
}

#[test]
fn fit_stops_on_non_finite_loss_naming_the_step_and_keeps_the_last_good_weights() {
    let gpu = common::gpu();
    let data = ten_batches();
    let opts = quiet_fit(2);
    // Clean: 13 steps (epoch 1 has 10, then 3 of epoch 2).
    let (_, want) = weights_after_13_steps(gpu, &data, || mlp(0.5).unwrap());

    let mut bad = poisoned_at_step_13(gpu, || mlp(0.5).unwrap(), false);
    let e = bad.fit(&data, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "fit: non-finite loss at epoch 2, step 3; the weights of the step before are kept"
    );
    assert_eq!(
        bad.weights().unwrap(),
        want,
        "weights after the stop differ from the clean run's step 12"
    );
}

#[test]
fn fit_stop_keeps_batch_norm_moving_statistics_of_the_step_before() {
    let gpu = common::gpu();
    let data = ten_batches();
    let build = || {
        Sequential::new(&[784])
            .with(Dense::new(16).unwrap())
            .with(BatchNorm::new())
            .with(Layer::Relu)
            .with(Dropout::new(0.5).unwrap())
            .with(Dense::new(10).unwrap())
    };
    let (_, want) = weights_after_13_steps(gpu, &data, build);
    assert!(want.iter().any(|t| t.name.ends_with("moving_mean")));
    let mut bad = poisoned_at_step_13(gpu, build, false);
    let opts = quiet_fit(2);
    let e = bad.fit(&data, &opts).unwrap_err();
    assert_stopped_at_global_step_13(&e);
    // Every tensor, the moving mean and variance included, as after the clean step 12.
    assert_eq!(bad.weights().unwrap(), want);
}

#[test]
fn fit_names_the_first_trainable_parameter_when_several_gradients_go_bad_at_once() {
    // A frozen first layer, then dense layers whose gradients their own kernels check as
    // they store them, and a BatchNorm whose gradients the separate check reads: every
    // gradient poisoned at once, the report must name the lowest parameter, whichever of
    // the two checks it falls to.
    let gpu = common::gpu();
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..64).unwrap();
    let build = |bn_at: usize| {
        let mut m = Sequential::new(&[784]).with(Dense::new(8).unwrap().trainable(false));
        for k in 0..5 {
            if k == bn_at {
                m.add(BatchNorm::new());
            }
            m.add(Dense::new(8).unwrap().activation(Activation::Relu));
        }
        m.add(Dense::new(10).unwrap());
        m.compile(gpu, Optimizer::sgd(0.01, 0.0), SEED).unwrap();
        m
    };
    for (bn_at, first) in [(0, "batch_normalization/gamma"), (2, "dense_1/kernel")] {
        let mut m = build(bn_at);
        let before = m.weights().unwrap();
        m.inject_non_finite(Some(1), true).unwrap();
        let e = m.fit(&data, &quiet_fit(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "fit: non-finite gradient of {first} at epoch 1, step 1; the weights of the step before are kept"
            )
        );
        // Step 0 trained; step 1 changed nothing: compare with one clean step.
        let mut one = build(bn_at);
        let mut t = one.trainer(&data, 32).unwrap();
        t.shuffle = false;
        t.begin_epoch();
        t.step().unwrap();
        drop(t);
        let got = m.weights().unwrap();
        assert!(
            got == one.weights().unwrap(),
            "weights differ from one clean step (BatchNorm at {bn_at})"
        );
        assert!(got != before, "step 0 did not train (BatchNorm at {bn_at})");
    }
}

/// The first 320 training images of the shipped subset: ten batches of 32.
fn ten_batches() -> Dataset {
    let (train, _) = wgnn::data::shipped_fashion_mnist().unwrap();
    train.subset(0..320).unwrap()
}

/// `fit` options for the tests: batch 32, no shuffling, no output.
fn quiet_fit(epochs: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size: 32,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    }
}

/// `e` is the stop at step 3 of epoch 2 (global step 13, where the tests inject a NaN).
fn assert_stopped_at_global_step_13(e: &Error) {
    assert!(
        matches!(
            e,
            Error::NonFinite {
                epoch: 2,
                step: 3,
                ..
            }
        ),
        "{e}"
    );
}

/// A model from `build`, compiled as the clean run of [`weights_after_13_steps`], whose step
/// 13 goes non-finite: its loss, or with `gradient` its first checked gradient.
fn poisoned_at_step_13(gpu: &wgnn::Gpu, build: fn() -> Sequential, gradient: bool) -> Sequential {
    let mut m = build();
    m.compile(gpu, Optimizer::adam(1e-3), SEED).unwrap();
    m.inject_non_finite(Some(13), gradient).unwrap();
    m
}

/// Steps 0..10 of epoch 1 then 0..3 of epoch 2, with the trainer, as `fit` without shuffling.
fn weights_after_13_steps(
    gpu: &wgnn::Gpu,
    data: &Dataset,
    build: fn() -> Sequential,
) -> (Vec<NamedTensor>, Vec<NamedTensor>) {
    let mut clean = build();
    clean.compile(gpu, Optimizer::adam(1e-3), SEED).unwrap();
    let mut t = clean.trainer(data, 32).unwrap();
    t.shuffle = false;
    t.begin_epoch();
    for _ in 0..10 {
        t.step().unwrap();
    }
    t.end_epoch(1).unwrap();
    drop(t);
    let epoch1 = clean.weights().unwrap();
    let mut t = clean.trainer(data, 32).unwrap();
    t.shuffle = false;
    t.begin_epoch();
    for _ in 0..3 {
        t.step().unwrap();
    }
    drop(t);
    (epoch1, clean.weights().unwrap())
}

#[test]
fn fit_stops_on_non_finite_gradient_keeps_weights_and_best_checkpoint_at_no_extra_cost() {
    // Its own Gpu: the counters compared below must see no other test's work.
    let own = wgnn::Gpu::software().unwrap();
    own.enable_test_hooks().unwrap(); // inject_non_finite below
    let gpu = &own;
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let data = train.subset(0..320).unwrap();
    let val = test.subset(0..64).unwrap();
    let tmp = common::TempDir::new("nan-grad");
    let dir = tmp.path();
    let path = dir.join("best.safetensors");
    let opts = |checkpoint| Fit {
        validation: Some(&val),
        checkpoint,
        ..quiet_fit(2)
    };
    let (epoch1, want) = weights_after_13_steps(gpu, &data, || mlp(0.5).unwrap());

    // Step 3 of epoch 2 (global step 13): the first checked gradient, dense/kernel's, is
    // made NaN on the GPU before any update of that step.
    let mut bad = poisoned_at_step_13(gpu, || mlp(0.5).unwrap(), true);
    let e = bad
        .fit(
            &data,
            &opts(Some(ModelCheckpoint {
                path: path.clone(),
                monitor: Monitor::ValAccuracy,
                save_best_only: true,
                include_optimizer: false,
            })),
        )
        .unwrap_err();
    assert_stopped_at_global_step_13(&e);
    assert_eq!(
        e.to_string(),
        "fit: non-finite gradient of dense/kernel at epoch 2, step 3; the weights of the step before are kept"
    );
    assert_eq!(
        bad.weights().unwrap(),
        want,
        "weights differ from the clean step 12"
    );
    // The checkpoint holds epoch 1, the only epoch that finished: the last good best.
    let mut from_file = mlp(0.5).unwrap();
    from_file.compile(gpu, Optimizer::adam(1e-3), SEED).unwrap();
    from_file.load_weights(&path).unwrap();
    assert_eq!(from_file.weights().unwrap(), epoch1);
    // What the gradient check costs in submissions and readbacks: the same run (a NaN
    // loss at the same step, stopping it at the same place, with the same validation and
    // checkpoint) with the gradient checks on and off must count exactly the same.
    let mut counts = Vec::new();
    for checks in [true, false] {
        let mut m = poisoned_at_step_13(gpu, || mlp(0.5).unwrap(), false);
        m.set_finite_checks(checks).unwrap();
        let cp = ModelCheckpoint {
            path: dir.join(format!("checks-{checks}.safetensors")),
            monitor: Monitor::ValAccuracy,
            save_best_only: true,
            include_optimizer: false,
        };
        let before = gpu.counters();
        let e = m.fit(&data, &opts(Some(cp))).unwrap_err();
        let after = gpu.counters();
        assert_stopped_at_global_step_13(&e);
        counts.push((
            after.submissions - before.submissions,
            after.bytes_read_back - before.bytes_read_back,
        ));
    }
    assert_eq!(
        counts[0], counts[1],
        "(submissions, bytes read back) with the gradient checks, then without"
    );
}

#[test]
fn fit_skips_a_step_with_a_non_finite_gradient_when_asked_and_counts_it() {
    let gpu = common::gpu();
    let data = ten_batches();
    let opts = Fit {
        on_non_finite: OnNonFinite::Skip,
        ..quiet_fit(2)
    };
    // No dropout and plain SGD: the step counter then changes nothing but which batch is
    // next, so skipping step 3 of epoch 2 must equal, bit for bit, training epoch 2 on the
    // same data with that batch (rows 96..128) taken out: weights and BatchNorm moving
    // statistics alike.
    let build = || {
        Sequential::new(&[784])
            .with(Dense::new(32).unwrap())
            .with(BatchNorm::new())
            .with(Layer::Relu)
            .with(Dense::new(10).unwrap())
    };
    let mut skip = build();
    skip.compile(gpu, Optimizer::sgd(0.05, 0.0), SEED).unwrap();
    skip.inject_non_finite(Some(13), true).unwrap();
    let h = skip.fit(&data, &opts).unwrap();
    let skipped: Vec<usize> = h.epochs.iter().map(|e| e.skipped_steps).collect();
    assert_eq!(skipped, [0, 1]);

    let mut without = data.clone();
    let len = data.image_len();
    without.images.drain(96 * len..128 * len);
    without.labels.drain(96..128);
    without.count -= 32;
    let mut want = build();
    want.compile(gpu, Optimizer::sgd(0.05, 0.0), SEED).unwrap();
    let one = Fit {
        epochs: 1,
        on_non_finite: OnNonFinite::Stop,
        ..opts.clone()
    };
    want.fit(&data, &one).unwrap();
    want.fit(&without, &one).unwrap();
    let w = skip.weights().unwrap();
    assert!(w.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    assert_eq!(
        w,
        want.weights().unwrap(),
        "skipping differs from leaving the batch out"
    );
}
