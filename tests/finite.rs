//! The training step's non-finite gradient check, run on its own against a host reference:
//! odd lengths, values at every edge (first, last, padding lanes, past the stride), and
//! several bad segments at once, where the lowest parameter must win. And one gradient that
//! overflows for real through `fit`, with no test hook.

mod common;

use wgnn::{Tensor, ops};

/// What the check must report for `segments` (data, counted length, parameter) at step 0.
fn expected(segments: &[(Vec<f32>, usize, usize)]) -> [u32; 4] {
    let bad = segments
        .iter()
        .filter(|(d, n, _)| d[..*n].iter().any(|v| !v.is_finite()))
        .map(|&(_, _, p)| p)
        .min();
    match bad {
        Some(p) => [1, u32::MAX - 1 - p as u32, 0, 1],
        None => [0; 4],
    }
}

fn run(gpu: &wgnn::Gpu, segments: &[(Vec<f32>, usize, usize)]) -> [u32; 4] {
    let tensors: Vec<Tensor> = segments
        .iter()
        .map(|(d, _, _)| Tensor::from_slice(gpu, d, &[d.len()]).unwrap())
        .collect();
    let args: Vec<(&Tensor, usize, usize)> = tensors
        .iter()
        .zip(segments)
        .map(|(t, &(_, n, p))| (t, n, p))
        .collect();
    wgnn::testing::check_finite(&args, [0; 4]).unwrap()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37).sin() * 1e30).collect()
}

#[test]
fn finite_check_matches_the_host_on_odd_lengths_and_every_edge() {
    let lens = [1usize, 3, 7, 33, 257, 70_001];
    for gpu in common::gpus() {
        let clean: Vec<(Vec<f32>, usize, usize)> = lens
            .iter()
            .enumerate()
            .map(|(k, &n)| (ramp(n), n, 2 * k + 1))
            .collect();
        assert_eq!(run(gpu, &clean), [0; 4], "all finite on {}", gpu.info());
        // One bad value per case: each segment, at its first, middle and last element, as
        // NaN, +inf and -inf; the 70,001-element segment is longer than one stride of the
        // capped dispatch, so its later values are reached by the loop.
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for (k, &n) in lens.iter().enumerate() {
            for (j, at) in [0, n / 2, n - 1].into_iter().enumerate() {
                let mut case = clean.clone();
                case[k].0[at] = specials[j];
                let got = run(gpu, &case);
                assert_eq!(
                    got,
                    expected(&case),
                    "segment {k} index {at} on {}",
                    gpu.info()
                );
                assert_ne!(got[0], 0);
            }
        }
        // Several bad segments at once: the lowest parameter is reported, whichever
        // segment it sits in (parameters here run backwards through the segments).
        let mut many: Vec<(Vec<f32>, usize, usize)> = lens
            .iter()
            .enumerate()
            .map(|(k, &n)| (ramp(n), n, 100 - k))
            .collect();
        for k in [0, 2, 5] {
            let n = many[k].1;
            many[k].0[n - 1] = f32::NAN;
        }
        let got = run(gpu, &many);
        assert_eq!(got, expected(&many));
        assert_eq!(
            got[1],
            u32::MAX - 1 - 95,
            "parameter 95 (segment 5) is the lowest"
        );
    }
}

#[test]
fn finite_check_ignores_values_past_the_counted_length() {
    for gpu in common::gpus() {
        // Counted lengths 3 and 5 of 4- and 12-element tensors: the NaNs sit in the padding
        // lanes of the last counted vec4, and in the whole vec4 past it.
        let mut twelve = vec![1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN, f32::INFINITY, f32::NAN];
        twelve.extend([f32::NAN; 4]);
        let padded = vec![(vec![1.0, 2.0, 3.0, f32::NAN], 3, 0), (twelve, 5, 1)];
        assert_eq!(
            run(gpu, &padded),
            [0; 4],
            "padding counted on {}",
            gpu.info()
        );
        // The same values counted in full are caught.
        let full: Vec<(Vec<f32>, usize, usize)> = padded
            .iter()
            .map(|(d, _, p)| (d.clone(), d.len(), *p))
            .collect();
        assert_eq!(run(gpu, &full), expected(&full));
        assert_eq!(run(gpu, &full)[1], u32::MAX - 1);
    }
}

#[test]
fn finite_check_rejects_bad_arguments() {
    let gpu = common::gpu();
    let t = Tensor::from_slice(gpu, &[1.0, 2.0], &[2]).unwrap();
    let e = wgnn::testing::check_finite(&[(&t, 3, 0)], [0; 4]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "check_finite: count 3 is over the tensor's 2 elements"
    );
    let seven = vec![(&t, 2, 0); 7];
    let e = wgnn::testing::check_finite(&seven, [0; 4]).unwrap_err();
    assert_eq!(e.to_string(), "check_finite: 7 segments, at most 6");
    assert!(wgnn::testing::check_finite(&[], [0; 4]).is_err());
    let labels = Tensor::from_u32(gpu, &[1, 2], &[2]).unwrap();
    assert!(wgnn::testing::check_finite(&[(&labels, 2, 0)], [0; 4]).is_err());
}

#[test]
fn finite_check_keeps_an_earlier_bad_step_and_its_cause() {
    for gpu in common::gpus() {
        let bad = Tensor::from_slice(gpu, &[1.0, f32::NAN, 3.0], &[3]).unwrap();
        // Step 4 went bad before (its loss: code u32::MAX); this is step 0 with a NaN
        // gradient of parameter 0: the first bad step and its cause stay, the last bad step
        // becomes this one.
        let earlier = [5, u32::MAX, 0, 5];
        let got = wgnn::testing::check_finite(&[(&bad, 3, 0)], earlier).unwrap();
        assert_eq!(got, [5, u32::MAX, 0, 1], "on {}", gpu.info());
        // The same step's loss already bad: the loss stays the cause (its code is the max).
        let got = wgnn::testing::check_finite(&[(&bad, 3, 0)], [1, u32::MAX, 0, 1]).unwrap();
        assert_eq!(got, [1, u32::MAX, 0, 1], "on {}", gpu.info());
        // The skip policy word is left alone.
        let got = wgnn::testing::check_finite(&[(&bad, 3, 7)], [0, 0, 1, 0]).unwrap();
        assert_eq!(got, [1, u32::MAX - 1 - 7, 1, 1], "on {}", gpu.info());
    }
}

/// Whether any output of `op(a) op(b)` (`[m, k] x [k, n]`), computed in f64 and rounded to
/// f32 as the kernel stores it, is not finite: what the fused check must report.
fn product_has_non_finite(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
) -> bool {
    (0..m).any(|i| {
        (0..n).any(|j| {
            let s: f64 = (0..k)
                .map(|q| {
                    let x = if ta { a[q * m + i] } else { a[i * k + q] };
                    let y = if tb { b[j * k + q] } else { b[q * n + j] };
                    f64::from(x) * f64::from(y)
                })
                .sum();
            !(s as f32).is_finite()
        })
    })
}

#[test]
fn matmul_check_reports_every_non_finite_output_on_every_variant() {
    use wgnn::testing::{matmul_checked, matmul_tiles, matmul_with_tile};
    let code = u32::MAX - 1 - 4;
    for gpu in common::gpus() {
        for tile in matmul_tiles(gpu).unwrap() {
            for trans in [(false, false), (true, false), (false, true)] {
                for (m, n, k) in [(1, 1, 1), (3, 7, 5), (33, 257, 7), (7, 33, 257)] {
                    let a_shape = if trans.0 { [k, m] } else { [m, k] };
                    let b_shape = if trans.1 { [n, k] } else { [k, n] };
                    let a = common::rand_vec(m * k, 1);
                    let b = common::rand_vec(k * n, 2);
                    let what = format!(
                        "{tile:?} trans {trans:?} m {m} n {n} k {k} on {}",
                        gpu.info()
                    );
                    let ga = Tensor::from_slice(gpu, &a, &a_shape).unwrap();
                    let gb = Tensor::from_slice(gpu, &b, &b_shape).unwrap();
                    // Clean: nothing reported, and the product is the unchecked one's bits.
                    let (c, status) = matmul_checked(&ga, &gb, trans, tile, code, [0; 4]).unwrap();
                    assert_eq!(status, [0; 4], "clean, {what}");
                    let plain =
                        matmul_with_tile(&ga, &gb, trans.0, trans.1, None, false, None, tile)
                            .unwrap();
                    let bits = |t: &Tensor| -> Vec<u32> {
                        t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()
                    };
                    assert_eq!(bits(&c), bits(&plain), "checked product's bits, {what}");
                    // One bad input value (last of A as NaN, first of B as -inf, the middle
                    // of A as +inf): every output it reaches is reported.
                    let cases = [
                        (true, m * k - 1, f32::NAN),
                        (false, 0, f32::NEG_INFINITY),
                        (true, m * k / 2, f32::INFINITY),
                    ];
                    for (in_a, at, v) in cases {
                        let (mut a2, mut b2) = (a.clone(), b.clone());
                        if in_a {
                            a2[at] = v;
                        } else {
                            b2[at] = v;
                        }
                        assert!(product_has_non_finite(&a2, &b2, (m, n, k), trans));
                        let ga = Tensor::from_slice(gpu, &a2, &a_shape).unwrap();
                        let gb = Tensor::from_slice(gpu, &b2, &b_shape).unwrap();
                        let (_, status) =
                            matmul_checked(&ga, &gb, trans, tile, code, [0; 4]).unwrap();
                        assert_eq!(
                            status,
                            [1, code, 0, 1],
                            "{v} in {} at {at}, {what}",
                            if in_a { "a" } else { "b" }
                        );
                    }
                }
            }
            // Finite inputs whose products overflow f32: caught as stored.
            let (m, n, k) = (3, 5, 2);
            let big = Tensor::from_slice(gpu, &vec![1e25f32; m * k], &[m, k]).unwrap();
            let big_b = Tensor::from_slice(gpu, &vec![1e25f32; k * n], &[k, n]).unwrap();
            assert!(product_has_non_finite(
                &[1e25; 6],
                &[1e25; 10],
                (m, n, k),
                (false, false)
            ));
            let (_, status) =
                matmul_checked(&big, &big_b, (false, false), tile, code, [0; 4]).unwrap();
            assert_eq!(
                status,
                [1, code, 0, 1],
                "overflow, {tile:?} on {}",
                gpu.info()
            );
            // An earlier bad step and its cause stay; the last bad step becomes this one.
            let (_, status) = matmul_checked(
                &big,
                &big_b,
                (false, false),
                tile,
                code,
                [5, u32::MAX, 0, 5],
            )
            .unwrap();
            assert_eq!(
                status,
                [5, u32::MAX, 0, 1],
                "earlier step, {tile:?} on {}",
                gpu.info()
            );
        }
    }
}

#[test]
fn bias_grad_check_reports_every_non_finite_sum() {
    use wgnn::testing::bias_grad_checked;
    let code = u32::MAX - 1 - 9;
    for gpu in common::gpus() {
        // Odd column counts take the scalar kernel, multiples of 4 the vec4 one.
        for cols in [1usize, 3, 4, 7, 33, 256, 257] {
            for rows in [1usize, 5] {
                let what = format!("rows {rows} cols {cols} on {}", gpu.info());
                let dy = common::rand_vec(rows * cols, 3);
                let t = Tensor::from_slice(gpu, &dy, &[rows, cols]).unwrap();
                let (sum, status) = bias_grad_checked(&t, code, [0; 4]).unwrap();
                assert_eq!(status, [0; 4], "clean, {what}");
                assert_eq!(
                    sum.to_vec().unwrap(),
                    ops::bias_grad(&t).unwrap().to_vec().unwrap(),
                    "{what}"
                );
                for (at, v) in [
                    (rows * cols - 1, f32::NAN),
                    (0, f32::INFINITY),
                    (cols / 2, f32::NEG_INFINITY),
                ] {
                    let mut bad = dy.clone();
                    bad[at] = v;
                    let t = Tensor::from_slice(gpu, &bad, &[rows, cols]).unwrap();
                    let (_, status) = bias_grad_checked(&t, code, [0; 4]).unwrap();
                    assert_eq!(status, [1, code, 0, 1], "{v} at {at}, {what}");
                }
            }
            // Finite values whose column sum overflows: caught.
            let huge = Tensor::from_slice(gpu, &vec![3e38f32; 2 * cols], &[2, cols]).unwrap();
            let (_, status) = bias_grad_checked(&huge, code, [0; 4]).unwrap();
            assert_eq!(
                status,
                [1, code, 0, 1],
                "overflow, cols {cols} on {}",
                gpu.info()
            );
        }
    }
}

/// A gradient that overflows for real, with no test hook: `fit` with the default
/// `OnNonFinite::Stop` names the epoch, the step and the parameter, and keeps the weights of
/// the step before, which are checked against an f64 host run of the good steps.
///
/// The model is `Dense(1, no bias) -> Dense(10)` on 4 inputs, loaded with `dense/kernel` 0
/// (so the hidden value and hence the logits' dependence on the input are 0, and the logits
/// are `dense_1/bias`, always finite), `dense_1/kernel` `[-3e38, 3e38 x 9]` and a bias that
/// predicts class 9. The hidden gradient is `dlogits . dense_1/kernel`: for samples labelled 9
/// (predicted, `dlogits` ~ 1e-4) it is ~1e34; for a sample labelled 0 it is `3e38 + 3e38`,
/// past f32's 3.4e38, and `dense/kernel`'s gradient `x^T dh` over 16 white samples (x = 1)
/// is infinite however the batch mean is applied. Steps 0 and 1 see black images (x = 0)
/// labelled 9, so only `dense_1/bias` moves; step 2 sees white images labelled 0.
#[test]
fn fit_stops_on_a_real_gradient_overflow_naming_it_and_keeps_the_step_before() {
    use wgnn::data::Dataset;
    use wgnn::nn::weights::{self, NamedTensor};
    use wgnn::nn::{Dense, Fit, Optimizer, Sequential};

    const W: f32 = 3e38;
    let (lr, batch) = (0.1f32, 16usize);
    let tensor = |name: &str, shape: &[usize], data: Vec<f32>| NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data,
    };
    let mut bias = vec![0.0f32; 10];
    bias[9] = 10.0;
    let start = vec![
        tensor("dense/kernel", &[4, 1], vec![0.0; 4]),
        tensor(
            "dense_1/kernel",
            &[1, 10],
            (0..10).map(|c| if c == 0 { -W } else { W }).collect(),
        ),
        tensor("dense_1/bias", &[10], bias.clone()),
    ];
    let file = weights::to_safetensors(&start, None).unwrap();
    let mut images = vec![0u8; 2 * batch * 4];
    images.extend(vec![255u8; batch * 4]);
    let mut labels = vec![9u8; 2 * batch];
    labels.extend(vec![0u8; batch]);
    let data = Dataset {
        images,
        labels,
        count: 3 * batch,
        height: 1,
        width: 4,
        channels: 1,
        classes: 10,
    };

    for gpu in common::gpus() {
        let mut model = Sequential::new(&[4])
            .with(Dense::new(1).unwrap().use_bias(false))
            .with(Dense::new(10).unwrap());
        model.compile(gpu, Optimizer::sgd(lr, 0.0), 1).unwrap();
        model.load_weights_bytes(&file, "start").unwrap();
        let e = model
            .fit(
                &data,
                &Fit {
                    epochs: 3,
                    batch_size: batch,
                    shuffle: false,
                    verbose: false,
                    ..Fit::default()
                },
            )
            .unwrap_err();
        assert!(
            matches!(e, wgnn::Error::NonFinite { .. }),
            "{}: {e:?}",
            gpu.info()
        );
        assert_eq!(
            e.to_string(),
            "fit: non-finite gradient of dense/kernel at epoch 1, step 2; the weights of the \
             step before are kept",
            "{}",
            gpu.info()
        );

        // The weights after steps 0 and 1, on the host in f64: both kernels get a zero
        // gradient (x = 0, hidden = 0), the bias `mean(softmax(bias) - onehot(9))` per step.
        let mut want_bias: Vec<f64> = bias.iter().map(|&b| f64::from(b)).collect();
        for _ in 0..2 {
            let m = want_bias.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = want_bias.iter().map(|b| (b - m).exp()).sum();
            let p: Vec<f64> = want_bias.iter().map(|b| (b - m).exp() / z).collect();
            for (c, b) in want_bias.iter_mut().enumerate() {
                *b -= f64::from(lr) * (p[c] - if c == 9 { 1.0 } else { 0.0 });
            }
        }
        let kept = model.weights().unwrap();
        assert!(
            kept.iter().all(|t| t.data.iter().all(|v| v.is_finite())),
            "{}: kept weights hold a non-finite value: {kept:?}",
            gpu.info()
        );
        let names: Vec<&str> = kept.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["dense/kernel", "dense_1/kernel", "dense_1/bias"]);
        assert_eq!(kept[0].data, start[0].data, "{}: dense/kernel", gpu.info());
        assert_eq!(
            kept[1].data,
            start[1].data,
            "{}: dense_1/kernel",
            gpu.info()
        );
        // The bias moved (by ~4.5e-6 per class and step), by the host's amounts: f32 softmax
        // and update rounding, 1e-7 of the bias' scale of 10.
        assert_ne!(
            kept[2].data,
            bias,
            "{}: the good steps changed nothing",
            gpu.info()
        );
        common::assert_close(
            &format!("{}: dense_1/bias after steps 0 and 1", gpu.info()),
            &kept[2].data,
            &want_bias,
            1e-7,
            0.0,
        );
    }
}
