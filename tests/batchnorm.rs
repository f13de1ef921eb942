//! Batch normalization (training, inference, backward, moving update) against the f64
//! references and central finite differences.

mod common;

use common::{assert_close, gpus, rand_vec};
use wgnn::{Tensor, ops, reference};

/// f32 statistics over at most 256 rows per chunk, combined pairwise: the mean and variance
/// stay within a few ulp-per-term of the f64 two-pass values, far inside 1e-5 of the largest
/// output.
const BN_REL: f64 = 1e-5;
const EPS: f32 = 1e-3;

/// `[rows, c]` values with a per-channel offset (up to +-4) and spread, so the statistics
/// differ by channel and the mean is not small next to the spread.
fn bn_data(rows: usize, c: usize, seed: u64) -> Vec<f32> {
    rand_vec(rows * c, seed)
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let ch = (i % c) as f32;
            4.0 * (ch + 1.0).sin() + (0.5 + (ch % 3.0)) * u
        })
        .collect()
}

/// Shapes: `[rows, c]` for every rows and c listed, plus NHWC shapes crossing the 256-row
/// chunk. Channel counts that are multiples of 4 run the vec4-per-4-channels pipelines.
fn shapes() -> Vec<Vec<usize>> {
    let mut s = Vec::new();
    for rows in [1usize, 3, 7, 33, 257, 1031] {
        for c in [1usize, 3, 4, 33] {
            s.push(vec![rows, c]);
        }
    }
    s.push(vec![2, 13, 11, 3]);
    s.push(vec![1, 1, 1, 5]);
    s.push(vec![4, 9, 9, 8]);
    s.push(vec![3, 5, 64]);
    s
}

fn split(shape: &[usize]) -> (usize, usize) {
    let c = shape[shape.len() - 1];
    (shape.iter().product::<usize>() / c, c)
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn batch_norm_train_matches_reference_odd_shapes() {
    for gpu in gpus() {
        let mut worst = [0.0f64; 3];
        for (s, shape) in shapes().iter().enumerate() {
            let (rows, c) = split(shape);
            let x = bn_data(rows, c, s as u64);
            let gamma = rand_vec(c, 100 + s as u64);
            let beta = rand_vec(c, 200 + s as u64);
            let gx = Tensor::from_slice(gpu, &x, shape).unwrap();
            let gg = Tensor::from_slice(gpu, &gamma, &[c]).unwrap();
            let gb = Tensor::from_slice(gpu, &beta, &[c]).unwrap();
            let (y, mean, inv_std) = ops::batch_norm_train(&gx, &gg, &gb, EPS).unwrap();
            assert_eq!(y.shape(), shape.as_slice());
            assert_eq!(
                (mean.shape(), inv_std.shape()),
                ([c].as_slice(), [c].as_slice())
            );
            let (ry, rmean, rinv) = reference::batch_norm_train(&x, &gamma, &beta, c, EPS);
            let what = format!("{}: batch_norm_train {shape:?}", gpu.info().name);
            let got = [
                y.to_vec().unwrap(),
                mean.to_vec().unwrap(),
                inv_std.to_vec().unwrap(),
            ];
            for (k, (name, want)) in [("y", &ry), ("mean", &rmean), ("inv_std", &rinv)]
                .into_iter()
                .enumerate()
            {
                let e = assert_close(&format!("{what} {name}"), &got[k], want, BN_REL, 0.0);
                worst[k] = worst[k].max(e);
            }
            if rows == 1 {
                // Variance 0: y is beta exactly and inv_std is 1 / sqrt(epsilon), not NaN.
                assert_eq!(got[0], beta, "{what}: one row gives y = beta");
            }
        }
        eprintln!(
            "batch_norm_train worst relative error on {} ({:?}): y {:e}, mean {:e}, inv_std {:e}",
            gpu.info().name,
            gpu.info().backend,
            worst[0],
            worst[1],
            worst[2]
        );
    }
}

#[test]
fn batch_norm_inference_matches_reference_odd_shapes() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for (s, shape) in shapes().iter().enumerate() {
            let (rows, c) = split(shape);
            let x = bn_data(rows, c, 300 + s as u64);
            let gamma = rand_vec(c, 1);
            let beta = rand_vec(c, 2);
            let mm = rand_vec(c, 3);
            let mv: Vec<f32> = rand_vec(c, 4).iter().map(|u| 1.05 + u).collect();
            let t = |v: &[f32], sh: &[usize]| Tensor::from_slice(gpu, v, sh).unwrap();
            let y = ops::batch_norm_inference(
                &t(&x, shape),
                &t(&gamma, &[c]),
                &t(&beta, &[c]),
                &t(&mm, &[c]),
                &t(&mv, &[c]),
                EPS,
            )
            .unwrap();
            let want = reference::batch_norm_inference(&x, &gamma, &beta, &mm, &mv, EPS);
            let what = format!("{}: batch_norm_inference {shape:?}", gpu.info().name);
            worst = worst.max(assert_close(
                &what,
                &y.to_vec().unwrap(),
                &want,
                BN_REL,
                0.0,
            ));
        }
        eprintln!(
            "batch_norm_inference worst relative error on {} ({:?}): {worst:e}",
            gpu.info().name,
            gpu.info().backend
        );
    }
}

#[test]
fn batch_norm_backward_matches_reference_odd_shapes() {
    for gpu in gpus() {
        let mut worst = [0.0f64; 3];
        for (s, shape) in shapes().iter().enumerate() {
            let (rows, c) = split(shape);
            let x = bn_data(rows, c, 400 + s as u64);
            let dy = rand_vec(rows * c, 500 + s as u64);
            let gamma = rand_vec(c, 600 + s as u64);
            // The statistics the forward would return, from the reference (rounded to f32).
            let (_, rmean, rinv) = reference::batch_norm_train(&x, &gamma, &gamma, c, EPS);
            let (mean, inv_std) = (narrow(&rmean), narrow(&rinv));
            let t = |v: &[f32], sh: &[usize]| Tensor::from_slice(gpu, v, sh).unwrap();
            let (dx, dgamma, dbeta) = ops::batch_norm_backward(
                &t(&x, shape),
                &t(&dy, shape),
                &t(&gamma, &[c]),
                &t(&mean, &[c]),
                &t(&inv_std, &[c]),
            )
            .unwrap();
            assert_eq!(dx.shape(), shape.as_slice());
            let (rdx, rdg, rdb) = reference::batch_norm_backward(&x, &dy, &gamma, &mean, &inv_std);
            let what = format!("{}: batch_norm_backward {shape:?}", gpu.info().name);
            let got = [
                dx.to_vec().unwrap(),
                dgamma.to_vec().unwrap(),
                dbeta.to_vec().unwrap(),
            ];
            for (k, (name, want)) in [("dx", &rdx), ("dgamma", &rdg), ("dbeta", &rdb)]
                .into_iter()
                .enumerate()
            {
                // With one row dx and dgamma are exactly 0 (xhat = 0, dy - dbeta = 0): the
                // absolute floor keeps a zero reference from demanding an exact zero.
                let e = assert_close(&format!("{what} {name}"), &got[k], want, BN_REL, 1e-6);
                worst[k] = worst[k].max(e);
            }
        }
        eprintln!(
            "batch_norm_backward worst relative error on {} ({:?}): dx {:e}, dgamma {:e}, dbeta {:e}",
            gpu.info().name,
            gpu.info().backend,
            worst[0],
            worst[1],
            worst[2]
        );
    }
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    // L = sum(y * g) with y from the f64 reference forward (batch statistics included), so
    // dL/dx, dL/dgamma, dL/dbeta are what batch_norm_backward returns for dy = g, with the
    // GPU forward's own mean and inv_std.
    for gpu in gpus() {
        for shape in [vec![5usize, 3], vec![2, 2, 2, 3], vec![3, 1], vec![2, 3, 8]] {
            let (rows, c) = split(&shape);
            let x = bn_data(rows, c, 31);
            let gamma = rand_vec(c, 32);
            let beta = rand_vec(c, 33);
            let g = rand_vec(rows * c, 34);
            let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
                let (y, _, _) = reference::batch_norm_train(x, gamma, beta, c, EPS);
                y.iter().zip(&g).map(|(&y, &g)| y * f64::from(g)).sum()
            };
            let t = |v: &[f32], sh: &[usize]| Tensor::from_slice(gpu, v, sh).unwrap();
            let (gx, gg) = (t(&x, &shape), t(&gamma, &[c]));
            let (_, mean, inv_std) = ops::batch_norm_train(&gx, &gg, &t(&beta, &[c]), EPS).unwrap();
            let (dx, dgamma, dbeta) =
                ops::batch_norm_backward(&gx, &t(&g, &shape), &gg, &mean, &inv_std).unwrap();
            let h = 1e-3f32;
            let fd = |v: &[f32], which: usize| -> Vec<f64> {
                (0..v.len())
                    .map(|i| {
                        let (mut p, mut q) = (v.to_vec(), v.to_vec());
                        p[i] += h;
                        q[i] -= h;
                        let (lp, lq) = match which {
                            0 => (loss(&p, &gamma, &beta), loss(&q, &gamma, &beta)),
                            1 => (loss(&x, &p, &beta), loss(&x, &q, &beta)),
                            _ => (loss(&x, &gamma, &p), loss(&x, &gamma, &q)),
                        };
                        // The f32 steps are not exactly h: divide by the real difference.
                        (lp - lq) / (f64::from(p[i]) - f64::from(q[i]))
                    })
                    .collect()
            };
            let what = format!(
                "{}: batch_norm_backward {shape:?} vs finite differences",
                gpu.info().name
            );
            assert_close(
                &format!("{what} dx"),
                &dx.to_vec().unwrap(),
                &fd(&x, 0),
                1e-3,
                1e-4,
            );
            assert_close(
                &format!("{what} dgamma"),
                &dgamma.to_vec().unwrap(),
                &fd(&gamma, 1),
                1e-3,
                1e-4,
            );
            assert_close(
                &format!("{what} dbeta"),
                &dbeta.to_vec().unwrap(),
                &fd(&beta, 2),
                1e-3,
                1e-4,
            );
        }
    }
}

#[test]
fn batch_norm_update_moving_matches_reference() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for (s, &(rows, c)) in [
            (1usize, 1usize),
            (3, 3),
            (7, 33),
            (257, 3),
            (33, 33),
            (5, 8),
        ]
        .iter()
        .enumerate()
        {
            let x = bn_data(rows, c, 700 + s as u64);
            let (_, rmean, rinv) = reference::batch_norm_train(&x, &x[..c], &x[..c], c, EPS);
            let (mean, inv_std) = (narrow(&rmean), narrow(&rinv));
            for momentum in [0.0f32, 0.5, 0.99, 1.0] {
                let mm0 = rand_vec(c, 1);
                let mv0: Vec<f32> = rand_vec(c, 2).iter().map(|u| 1.05 + u).collect();
                let t = |v: &[f32]| Tensor::from_slice(gpu, v, &[c]).unwrap();
                let (mm, mv) = (t(&mm0), t(&mv0));
                ops::batch_norm_update_moving(
                    &mm,
                    &mv,
                    &t(&mean),
                    &t(&inv_std),
                    momentum,
                    EPS,
                    rows,
                )
                .unwrap();
                let (rmm, rmv) =
                    reference::batch_norm_update_moving(&mm0, &mv0, &mean, &inv_std, momentum, EPS);
                let what = format!(
                    "{}: batch_norm_update_moving rows {rows} c {c} momentum {momentum}",
                    gpu.info().name
                );
                for (name, got, want) in [("moving_mean", &mm, &rmm), ("moving_var", &mv, &rmv)] {
                    let e = assert_close(
                        &format!("{what} {name}"),
                        &got.to_vec().unwrap(),
                        want,
                        BN_REL,
                        0.0,
                    );
                    worst = worst.max(e);
                }
            }
        }
        eprintln!(
            "batch_norm_update_moving worst relative error on {} ({:?}): {worst:e}",
            gpu.info().name,
            gpu.info().backend
        );
    }
}

#[test]
fn batch_norm_update_moving_uses_biased_batch_variance_like_keras() {
    // Keras: moving_var = moving_var * momentum + var * (1 - momentum) with var from
    // ops.moments, which divides by rows. Checked from the data itself (not via inv_std):
    // with 3 rows the unbiased variance is 1.5x larger, far outside the tolerance.
    for gpu in gpus() {
        for (rows, c) in [(3usize, 4usize), (300, 3)] {
            let x = bn_data(rows, c, 77);
            let ones = vec![1.0f32; c];
            let zeros = vec![0.0f32; c];
            let t = |v: &[f32], sh: &[usize]| Tensor::from_slice(gpu, v, sh).unwrap();
            let (_, mean, inv_std) =
                ops::batch_norm_train(&t(&x, &[rows, c]), &t(&ones, &[c]), &t(&zeros, &[c]), EPS)
                    .unwrap();
            // Keras' initial moving statistics: mean 0, variance 1; default momentum 0.99.
            let (mm, mv) = (t(&zeros, &[c]), t(&ones, &[c]));
            ops::batch_norm_update_moving(&mm, &mv, &mean, &inv_std, 0.99, EPS, rows).unwrap();
            let (bm, bv) = reference::batch_norm_moments(&x, c);
            let want_mm: Vec<f64> = bm.iter().map(|m| 0.01 * m).collect();
            let want_mv: Vec<f64> = bv.iter().map(|v| 0.99 + 0.01 * v).collect();
            let what = format!(
                "{}: batch_norm_update_moving keras rows {rows}",
                gpu.info().name
            );
            assert_close(
                &format!("{what} moving_mean"),
                &mm.to_vec().unwrap(),
                &want_mm,
                BN_REL,
                0.0,
            );
            assert_close(
                &format!("{what} moving_var"),
                &mv.to_vec().unwrap(),
                &want_mv,
                BN_REL,
                0.0,
            );
        }
    }
}

#[test]
fn batch_norm_rejects_bad_arguments() {
    let gpu = common::gpu();
    let t = |v: &[f32], sh: &[usize]| Tensor::from_slice(gpu, v, sh).unwrap();
    let x = t(&[0.0; 21], &[7, 3]);
    let c3 = t(&[1.0; 3], &[3]);
    let c4 = t(&[1.0; 4], &[4]);
    let msg = |r: wgnn::Result<(Tensor, Tensor, Tensor)>| r.expect_err("an error").to_string();
    assert_eq!(
        msg(ops::batch_norm_train(&t(&[0.0; 5], &[5]), &c3, &c3, EPS)),
        "batch_norm_train: x must have at least 2 dimensions ([rows, channels] or NHWC), got [5]"
    );
    assert_eq!(
        msg(ops::batch_norm_train(&x, &c4, &c3, EPS)),
        "batch_norm_train: gamma has shape [4], expected [3] (x [7, 3])"
    );
    assert_eq!(
        msg(ops::batch_norm_train(&x, &c3, &t(&[0.0; 3], &[1, 3]), EPS)),
        "batch_norm_train: beta has shape [1, 3], expected [3] (x [7, 3])"
    );
    assert_eq!(
        msg(ops::batch_norm_train(&x, &c3, &c3, 0.0)),
        "batch_norm_train: epsilon 0 is not a finite number > 0"
    );
    let xu = Tensor::from_u32(gpu, &[0; 6], &[2, 3]).unwrap();
    assert_eq!(
        msg(ops::batch_norm_train(&xu, &c3, &c3, EPS)),
        "batch_norm_train: expected a F32 tensor, got U32 [2, 3]"
    );
    assert_eq!(
        ops::batch_norm_inference(&x, &c3, &c3, &c3, &c4, EPS)
            .unwrap_err()
            .to_string(),
        "batch_norm_inference: moving_var has shape [4], expected [3] (x [7, 3])"
    );
    assert_eq!(
        ops::batch_norm_inference(&x, &c3, &c3, &c3, &c3, f32::NAN)
            .unwrap_err()
            .to_string(),
        "batch_norm_inference: epsilon NaN is not a finite number > 0"
    );
    assert_eq!(
        msg(ops::batch_norm_backward(
            &x,
            &t(&[0.0; 21], &[3, 7]),
            &c3,
            &c3,
            &c3
        )),
        "batch_norm_backward: x and dy differ in shape (x [7, 3], dy [3, 7])"
    );
    assert_eq!(
        msg(ops::batch_norm_backward(&x, &x, &c3, &c3, &c4)),
        "batch_norm_backward: inv_std has shape [4], expected [3] (x [7, 3])"
    );
    let (mm, mv) = (t(&[0.0; 3], &[3]), t(&[1.0; 3], &[3]));
    let upd = |mm: &Tensor, mv: &Tensor, mean: &Tensor, momentum: f32, eps: f32, rows: usize| {
        ops::batch_norm_update_moving(mm, mv, mean, &c3, momentum, eps, rows)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        upd(&mm, &mv, &c3, 1.5, EPS, 7),
        "batch_norm_update_moving: momentum 1.5 is outside [0, 1]"
    );
    assert_eq!(
        upd(&mm, &mv, &c3, 0.99, -1.0, 7),
        "batch_norm_update_moving: epsilon -1 is not a finite number > 0"
    );
    assert_eq!(
        upd(&mm, &mv, &c3, 0.99, EPS, 0),
        "batch_norm_update_moving: rows 0 is not >= 1"
    );
    assert_eq!(
        upd(&mm, &mm, &c3, 0.99, EPS, 7),
        "batch_norm_update_moving: moving_mean and moving_var share one buffer; each must be its own tensor"
    );
    assert_eq!(
        upd(&mm, &mv, &mv, 0.99, EPS, 7),
        "batch_norm_update_moving: moving_var and mean share one buffer; each must be its own tensor"
    );
    assert_eq!(
        upd(&mm, &c4, &c3, 0.99, EPS, 7),
        "batch_norm_update_moving: moving_mean and moving_var differ in shape (moving_mean [3], moving_var [4])"
    );
    assert_eq!(
        upd(&t(&[0.0; 3], &[1, 3]), &mv, &c3, 0.99, EPS, 7),
        "batch_norm_update_moving: moving_mean has shape [1, 3], expected one dimension [channels]"
    );
    // Nothing was recorded by the failed calls.
    assert_eq!(
        (mm.to_vec().unwrap(), mv.to_vec().unwrap()),
        (vec![0.0; 3], vec![1.0; 3])
    );
}
