//! Monte-Carlo dropout (`Sequential::predict_mc`) against passes made by hand through the
//! public ops and an f64 host model, and the training masks (`Sequential::training_mask`)
//! against what the GPU's training steps did, on every software adapter.

mod common;

use common::{gpus, rand_vec};
use wgnn::data::Dataset;
use wgnn::nn::weights::{NamedTensor, to_safetensors};
use wgnn::nn::{Activation, BatchNorm, Dense, Dropout, Fit, Optimizer, Sequential};
use wgnn::philox::{keep, mc_offset, scale};
use wgnn::{Gpu, Tensor, ops};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The weights as (name -> values).
fn weight(model: &Sequential, name: &str) -> Vec<f32> {
    model
        .weights()
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no weight {name}"))
        .data
}

/// 13 -> Dense(33, relu) -> Dropout(0.3) -> Dense(7, relu) -> Dropout(0.5) -> Dense(5).
fn mlp(p1: f32, p2: f32) -> Sequential {
    Sequential::new(&[13])
        .with(Dense::new(33).unwrap().activation(Activation::Relu))
        .with(Dropout::new(p1).unwrap())
        .with(Dense::new(7).unwrap().activation(Activation::Relu))
        .with(Dropout::new(p2).unwrap())
        .with(Dense::new(5).unwrap())
}

/// Sample `s` of `mlp` made by hand: dense, dropout with the documented offset, dense,
/// dropout, dense, softmax, each an eager op.
fn hand_pass(gpu: &Gpu, model: &Sequential, x: &[f32], s: u64, seed: u64, p: [f32; 2]) -> Vec<f32> {
    let n = x.len() / 13;
    let t = |name: &str, shape: &[usize]| Tensor::from_slice(gpu, &weight(model, name), shape);
    let x = Tensor::from_slice(gpu, x, &[n, 13]).unwrap();
    let (w1, b1) = (
        t("dense/kernel", &[13, 33]).unwrap(),
        t("dense/bias", &[33]).unwrap(),
    );
    let (w2, b2) = (
        t("dense_1/kernel", &[33, 7]).unwrap(),
        t("dense_1/bias", &[7]).unwrap(),
    );
    let (w3, b3) = (
        t("dense_2/kernel", &[7, 5]).unwrap(),
        t("dense_2/bias", &[5]).unwrap(),
    );
    let h = ops::dense(&x, &w1, Some(&b1), true, None).unwrap();
    let h = ops::dropout(&h, p[0], seed, mc_offset(1, s)).unwrap();
    let h = ops::dense(&h, &w2, Some(&b2), true, None).unwrap();
    let h = ops::dropout(&h, p[1], seed, mc_offset(3, s)).unwrap();
    let logits = ops::dense(&h, &w3, Some(&b3), false, None).unwrap();
    ops::softmax(&logits).unwrap().to_vec().unwrap()
}

#[test]
fn mc_samples_equal_hand_passes_through_the_ops_bit_for_bit() {
    for gpu in gpus() {
        let mut model = mlp(0.3, 0.5);
        model.compile(gpu, Optimizer::sgd(0.1, 0.0), 11).unwrap();
        // 3 inputs (99 and 21 values per layer: no sample starts on a Philox block), and 300
        // (two submissions: the second batch's masks go on from row 256).
        for (n, samples) in [(3usize, 5usize), (300, 2)] {
            let x = rand_vec(n * 13, 5 + n as u64);
            let seed = 0x5eed_0000_0000_0007;
            let mc = model.predict_mc(&x, samples, seed).unwrap();
            assert_eq!((mc.samples, mc.inputs, mc.classes), (samples, n, 5));
            for s in 0..samples {
                let want = hand_pass(gpu, &model, &x, s as u64, seed, [0.3, 0.5]);
                let got = mc.sample(s).unwrap();
                assert_eq!(bits(got), bits(&want), "{}: n {n}, sample {s}", gpu.info());
            }
            // The mean and std are the f64 statistics of those samples, rounded once.
            for j in 0..n * 5 {
                let v: Vec<f64> = (0..samples)
                    .map(|s| f64::from(mc.sample(s).unwrap()[j]))
                    .collect();
                let m = v.iter().sum::<f64>() / samples as f64;
                let sd = (v.iter().map(|p| (p - m).powi(2)).sum::<f64>() / samples as f64).sqrt();
                assert_eq!(mc.mean[j], m as f32, "mean {j}");
                assert_eq!(mc.std[j], sd as f32, "std {j}");
            }
            // Dropout does something: samples differ.
            assert_ne!(mc.sample(0), mc.sample(1), "{}", gpu.info());
        }
    }
}

/// 6 -> Dense(9) -> BatchNorm -> Dropout(0.4) -> Dense(4): a dropout that is not fused, after
/// a batch norm that must use its moving statistics.
#[test]
fn mc_matches_an_f64_host_model_with_batch_norm_in_inference_mode() {
    let (n, samples, p, seed) = (7usize, 3usize, 0.4f32, 99u64);
    for gpu in gpus() {
        let mut model = Sequential::new(&[6])
            .with(Dense::new(9).unwrap())
            .with(BatchNorm::new())
            .with(Dropout::new(p).unwrap())
            .with(Dense::new(4).unwrap());
        model.compile(gpu, Optimizer::sgd(0.1, 0.0), 3).unwrap();
        // Moving statistics far from (0, 1), and gamma, beta not (1, 0).
        let mut ws = model.weights().unwrap();
        for (k, w) in ws.iter_mut().enumerate() {
            let r = rand_vec(w.data.len(), 40 + k as u64);
            if w.name.ends_with("moving_variance") {
                w.data = r.iter().map(|v| 0.5 + v.abs()).collect();
            } else if !w.name.ends_with("kernel") {
                w.data = r;
            }
        }
        let bytes = to_safetensors(&ws, None).unwrap();
        model.load_weights_bytes(&bytes, "test").unwrap();
        let get = |name: &str| -> Vec<f64> {
            ws.iter()
                .find(|w: &&NamedTensor| w.name == name)
                .unwrap()
                .data
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        };
        let (w1, b1, w2, b2) = (
            get("dense/kernel"),
            get("dense/bias"),
            get("dense_1/kernel"),
            get("dense_1/bias"),
        );
        let (g, be, mm, mv) = (
            get("batch_normalization/gamma"),
            get("batch_normalization/beta"),
            get("batch_normalization/moving_mean"),
            get("batch_normalization/moving_variance"),
        );
        let x = rand_vec(n * 6, 8);
        let mc = model.predict_mc(&x, samples, seed).unwrap();
        let mut worst = 0.0f64;
        for s in 0..samples {
            for r in 0..n {
                let mut logits = b2.clone();
                for j in 0..9 {
                    let z: f64 = b1[j]
                        + (0..6)
                            .map(|i| f64::from(x[r * 6 + i]) * w1[i * 9 + j])
                            .sum::<f64>();
                    let y = (z - mm[j]) / (mv[j] + 1e-3).sqrt() * g[j] + be[j];
                    let kept = keep(seed, mc_offset(2, s as u64), (r * 9 + j) as u64, p);
                    let d = if kept { y * f64::from(scale(p)) } else { 0.0 };
                    for (c, l) in logits.iter_mut().enumerate() {
                        *l += d * w2[j * 4 + c];
                    }
                }
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                for (c, l) in logits.iter().enumerate() {
                    let want = (l - m).exp() / sum;
                    let got = f64::from(mc.sample(s).unwrap()[r * 4 + c]);
                    worst = worst.max((got - want).abs());
                }
            }
        }
        assert!(worst <= 1e-5, "{}: worst |gpu - f64| {worst:e}", gpu.info());
    }
}

#[test]
fn mc_with_every_rate_zero_is_predict_with_zero_std() {
    for gpu in gpus() {
        let mut model = mlp(0.0, 0.0);
        model.compile(gpu, Optimizer::sgd(0.1, 0.0), 4).unwrap();
        // A model with no dropout at all: the copies are made from the logits.
        let mut plain = Sequential::new(&[13])
            .with(Dense::new(33).unwrap().activation(Activation::Relu))
            .with(Dense::new(5).unwrap());
        plain.compile(gpu, Optimizer::sgd(0.1, 0.0), 4).unwrap();
        let x = rand_vec(7 * 13, 21);
        for m in [&model, &plain] {
            let logits = m.predict(&x).unwrap();
            let t = Tensor::from_slice(gpu, &logits, &[7, 5]).unwrap();
            let want = ops::softmax(&t).unwrap().to_vec().unwrap();
            let mc = m.predict_mc(&x, 6, 1).unwrap();
            assert_eq!(bits(&mc.mean), bits(&want), "{}", gpu.info());
            assert!(mc.std.iter().all(|&v| v == 0.0), "{:?}", mc.std);
            for s in 0..6 {
                assert_eq!(bits(mc.sample(s).unwrap()), bits(&want));
            }
        }
    }
}

#[test]
fn mc_one_sample_is_the_first_of_many_and_a_call_replays_bit_for_bit() {
    for gpu in gpus() {
        let mut model = mlp(0.3, 0.5);
        model.compile(gpu, Optimizer::sgd(0.1, 0.0), 12).unwrap();
        let x = rand_vec(9 * 13, 3);
        let many = model.predict_mc(&x, 4, 77).unwrap();
        let one = model.predict_mc(&x, 1, 77).unwrap();
        assert_eq!(bits(&one.probabilities), bits(many.sample(0).unwrap()));
        assert_eq!(bits(&one.mean), bits(&one.probabilities));
        assert!(one.std.iter().all(|&v| v == 0.0));
        // Twice the same call (the cached plan), and again after a plain predict and another
        // seed used the cache: the same bits.
        let again = model.predict_mc(&x, 4, 77).unwrap();
        assert_eq!(bits(&again.probabilities), bits(&many.probabilities));
        model.predict(&x).unwrap();
        let other = model.predict_mc(&x, 4, 78).unwrap();
        assert_ne!(other.probabilities, many.probabilities);
        let third = model.predict_mc(&x, 4, 77).unwrap();
        assert_eq!(bits(&third.probabilities), bits(&many.probabilities));
        assert_eq!(bits(&third.std), bits(&many.std));
    }
}

#[test]
fn mc_bad_arguments_are_errors() {
    let gpu = &gpus()[0];
    let mut model = mlp(0.3, 0.5);
    let x = rand_vec(2 * 13, 1);
    let e = model.predict_mc(&x, 4, 1).unwrap_err().to_string();
    assert_eq!(
        e,
        "predict_mc: the model is not compiled; call compile first"
    );
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    let e = model.predict_mc(&x, 0, 1).unwrap_err().to_string();
    assert_eq!(e, "predict_mc: samples must be in 1..=2^31, got 0");
    let e = model
        .predict_mc(&x, (1 << 31) + 1, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("got 2147483649"), "{e}");
    let e = model.predict_mc(&x, 1 << 31, 1).unwrap_err().to_string();
    assert_eq!(
        e,
        "predict_mc: 2147483648 samples of a model whose widest layer has 33 values make an \
         activation of 2^32 elements or more for a single input"
    );
    let e = model.predict_mc(&x[..20], 4, 1).unwrap_err().to_string();
    assert!(
        e.contains("20 values are not a whole number of inputs of [13]"),
        "{e}"
    );
    let e = model.predict_mc(&[], 4, 1).unwrap_err().to_string();
    assert!(e.contains("0 values are not a whole number"), "{e}");
    // SpatialDropout2d's Monte-Carlo masks are not defined yet: an error, not a silent
    // pass with the layer off.
    let mut cnn = Sequential::new(&[3, 3, 1])
        .with(wgnn::nn::Conv2d::new(2, [3, 3]).unwrap())
        .with(wgnn::nn::SpatialDropout2d::new(0.5).unwrap())
        .with(wgnn::nn::Layer::Flatten)
        .with(Dense::new(2).unwrap());
    cnn.compile(gpu, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    let e = cnn
        .predict_mc(&rand_vec(9, 2), 4, 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "predict_mc: layer 1 is a SpatialDropout2d, whose Monte-Carlo masks are not supported \
         yet (Dropout layers are); predict with `predict`"
    );
}

/// Five samples, each one pixel lit at its own index, all labelled 1.
fn one_hot_data(n: usize) -> Dataset {
    let mut images = vec![0u8; n * n];
    for i in 0..n {
        images[i * n + i] = 255;
    }
    Dataset {
        images,
        labels: vec![1; n],
        count: n,
        height: 1,
        width: n,
        channels: 1,
        classes: 2,
    }
}

/// The GPU's training masks, read off the first kernel's gradient, are `training_mask`'s.
///
/// With the input row `b` one-hot at `b` (no shuffling, so row b is sample b), `W1 = 0`,
/// `b1 = 1` (every ReLU active), `W2[:, 0] = 1`, `W2[:, 1] = 0` and label 1, the gradient of
/// the first kernel is `dW1[b, j] = keep[b, j] * dlogit[b, 0] * scale` with
/// `dlogit[b, 0] > 0`: nonzero exactly where unit j of row b was kept. Checked at steps 0
/// to 2 and at the last two steps training may take, fused and not, and step 2^31 is an
/// error of `Trainer::step` and of `fit`.
#[test]
fn training_masks_on_the_gpu_are_training_mask() {
    let (n, units, p) = (5usize, 33usize, 0.5f32);
    let data = one_hot_data(n);
    for gpu in gpus() {
        for fused in [true, false] {
            let mut model = Sequential::new(&[n])
                .with(Dense::new(units).unwrap().activation(Activation::Relu))
                .with(Dropout::new(p).unwrap())
                .with(Dense::new(2).unwrap());
            model.compile(gpu, Optimizer::sgd(1e-6, 0.0), 17).unwrap();
            model.set_fusion(fused).unwrap();
            let mut ws = model.weights().unwrap();
            for w in &mut ws {
                w.data = match w.name.as_str() {
                    "dense/kernel" | "dense_1/bias" => vec![0.0; w.data.len()],
                    "dense/bias" => vec![1.0; units],
                    "dense_1/kernel" => (0..units * 2).map(|i| ((i + 1) % 2) as f32).collect(),
                    other => panic!("{other}"),
                };
            }
            model
                .load_weights_bytes(&to_safetensors(&ws, None).unwrap(), "test")
                .unwrap();
            let check_steps = |model: &mut Sequential, count: usize| {
                for _ in 0..count {
                    let step = model.steps_taken();
                    {
                        let mut t = model.trainer(&data, n).unwrap();
                        t.shuffle = false;
                        t.begin_epoch();
                        t.step().unwrap();
                    }
                    let g = model.gradients().unwrap();
                    let dw1 = &g.iter().find(|w| w.name == "dense/kernel").unwrap().data;
                    let gpu_mask: Vec<bool> = dw1.iter().map(|&v| v != 0.0).collect();
                    let host = model.training_mask(1, step, n).unwrap();
                    assert_eq!(gpu_mask, host, "{}, fused {fused}, step {step}", gpu.info());
                    let kept = host.iter().filter(|&&k| k).count();
                    assert!(kept > 0 && kept < n * units, "step {step}: {kept} kept");
                }
            };
            check_steps(&mut model, 3);
            model.set_steps_taken((1 << 31) - 2).unwrap();
            check_steps(&mut model, 2);
            let mut t = model.trainer(&data, n).unwrap();
            t.begin_epoch();
            let e = t.step().unwrap_err().to_string();
            assert!(
                e.contains("step 2147483648 is past the last training step, 2^31 - 1"),
                "{e}"
            );
            let fit = Fit {
                epochs: 1,
                batch_size: n,
                verbose: false,
                ..Fit::default()
            };
            let e = model.fit(&data, &fit).unwrap_err().to_string();
            assert!(
                e.contains("step 2147483648 is past the last training step, 2^31 - 1"),
                "{e}"
            );
            assert_eq!(model.steps_taken(), 1 << 31);
        }
    }
}

#[test]
fn training_mask_is_host_philox_and_bad_arguments_are_errors() {
    let gpu = &gpus()[0];
    let mut model = mlp(0.3, 0.5);
    let e = model.training_mask(1, 0, 1).unwrap_err().to_string();
    assert_eq!(
        e,
        "training_mask: the model is not compiled; call compile first"
    );
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), 5).unwrap();
    let m = model.training_mask(3, 9, 3).unwrap();
    assert_eq!(m.len(), 3 * 7);
    for (i, &k) in m.iter().enumerate() {
        assert_eq!(k, keep(5, 3 + (9 << 32), i as u64, 0.5));
    }
    let err = |layer, step, batch| {
        model
            .training_mask(layer, step, batch)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(0, 0, 1),
        "training_mask: layer 0 is a Dense, not a Dropout"
    );
    assert_eq!(
        err(5, 0, 1),
        "training_mask: layer index 5 is out of range for 5 layers"
    );
    assert_eq!(
        err(1, 1 << 31, 1),
        "training_mask: step 2147483648 is past the last training step, 2^31 - 1"
    );
    assert_eq!(
        err(1, 0, 0),
        "training_mask: batch must be at least 1, got 0"
    );
}
