//! max_pool2d forward and backward against the f64 references and central differences.

mod common;

use common::{assert_close, gpus, rand_vec};
use wgnn::{DType, Tensor, ops, reference};

/// (window, stride): Keras' default 2x2/2, overlapping 3x3/2 and 3x3/1, and a non-square one.
const CONFIGS: [([usize; 2], [usize; 2]); 4] = [
    ([2, 2], [2, 2]),
    ([3, 3], [2, 2]),
    ([3, 3], [1, 1]),
    ([2, 3], [1, 2]),
];

/// (h, w) pairs covering every size 1..=9 in each dimension.
const SPATIAL: [(usize, usize); 11] = [
    (1, 1),
    (2, 3),
    (3, 3),
    (4, 7),
    (5, 5),
    (6, 2),
    (7, 9),
    (8, 8),
    (9, 4),
    (9, 9),
    (3, 8),
];

/// The backward sums at most kh * kw dy values per element in f32.
const BACKWARD_REL: f64 = 1e-6;

/// Values with many exact ties: integers 0..4 scaled (so first-maximum routing matters).
fn tied_vec(n: usize, seed: u64) -> Vec<f32> {
    rand_vec(n, seed)
        .iter()
        .map(|v| ((v + 1.0) * 2.0).floor() * 0.5)
        .collect()
}

fn run_case(
    gpu: &wgnn::Gpu,
    x: &[f32],
    shape: [usize; 4],
    window: [usize; 2],
    stride: [usize; 2],
    seed: u64,
) -> f64 {
    let what = format!(
        "{}: x {shape:?} window {window:?} stride {stride:?}",
        gpu.info().name
    );
    let gx = Tensor::from_slice(gpu, x, &shape).unwrap();
    let y = ops::max_pool2d(&gx, window, stride).unwrap();
    let oshape = reference::max_pool2d_shape(shape, window, stride);
    assert_eq!(y.shape(), oshape, "{what}");
    // Max pooling only selects: the forward is exact.
    assert_close(
        &format!("max_pool2d {what}"),
        &y.to_vec().unwrap(),
        &reference::max_pool2d(x, shape, window, stride),
        0.0,
        0.0,
    );
    let dy = rand_vec(oshape.iter().product(), seed + 1);
    let gdy = Tensor::from_slice(gpu, &dy, &oshape).unwrap();
    let dx = ops::max_pool2d_backward(&gx, &gdy, window, stride).unwrap();
    assert_eq!(dx.shape(), shape, "{what}");
    assert_close(
        &format!("max_pool2d_backward {what}"),
        &dx.to_vec().unwrap(),
        &reference::max_pool2d_backward(x, &dy, shape, window, stride),
        BACKWARD_REL,
        0.0,
    )
}

#[test]
fn max_pool2d_forward_and_backward_match_reference_odd_shapes() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        let mut cases = 0;
        for (window, stride) in CONFIGS {
            for (s, &(h, w)) in SPATIAL.iter().enumerate() {
                if window[0] > h || window[1] > w {
                    continue;
                }
                for c in [1usize, 3, 33] {
                    let shape = [2, h, w, c];
                    let seed = (s * 100 + c) as u64;
                    let x = rand_vec(shape.iter().product(), seed);
                    worst = worst.max(run_case(gpu, &x, shape, window, stride, seed));
                    cases += 1;
                }
            }
        }
        assert!(cases >= 90, "only {cases} cases ran");
        eprintln!(
            "max_pool2d_backward worst relative error on {} ({cases} cases): {worst:e}",
            gpu.info().name
        );
    }
}

#[test]
fn max_pool2d_ties_route_to_first_maximum_and_overlaps_accumulate() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for (window, stride) in CONFIGS {
            for &(h, w, c) in &[(5, 7, 3), (9, 9, 5), (4, 6, 8)] {
                let shape = [3, h, w, c];
                let x = tied_vec(shape.iter().product(), (h * w * c) as u64);
                worst = worst.max(run_case(gpu, &x, shape, window, stride, 7));
            }
        }
        // All-equal input: every window's gradient goes to its top-left element.
        let shape = [1, 5, 5, 2];
        let gx = Tensor::from_slice(gpu, &[1.5; 50], &shape).unwrap();
        let gdy = Tensor::from_slice(gpu, &[1.0; 18], &[1, 3, 3, 2]).unwrap();
        let dx = ops::max_pool2d_backward(&gx, &gdy, [3, 3], [1, 1])
            .unwrap()
            .to_vec()
            .unwrap();
        for y in 0..5 {
            for x in 0..5 {
                let want = if y < 3 && x < 3 { 1.0 } else { 0.0 };
                assert_eq!(dx[(y * 5 + x) * 2], want, "all-equal dx at ({y}, {x})");
                assert_eq!(dx[(y * 5 + x) * 2 + 1], want, "all-equal dx at ({y}, {x})");
            }
        }
        eprintln!(
            "max_pool2d_backward (ties) worst relative error on {}: {worst:e}",
            gpu.info().name
        );
    }
}

#[test]
fn max_pool2d_large_batch_and_stride_beyond_input() {
    for gpu in gpus() {
        // Keras' default on an MNIST-sized activation: 2 * 14 * 14 * 8 invocations, many groups.
        let shape = [4, 28, 28, 32];
        let x = rand_vec(shape.iter().product(), 5);
        let worst = run_case(gpu, &x, shape, [2, 2], [2, 2], 5);
        // A stride larger than the input gives one window per dimension.
        let shape = [2, 5, 4, 3];
        let x = rand_vec(shape.iter().product(), 6);
        let gx = Tensor::from_slice(gpu, &x, &shape).unwrap();
        let y = ops::max_pool2d(&gx, [2, 3], [1 << 40, 100]).unwrap();
        assert_eq!(y.shape(), [2, 1, 1, 3]);
        assert_close(
            "max_pool2d huge stride",
            &y.to_vec().unwrap(),
            &reference::max_pool2d(&x, shape, [2, 3], [5, 4]),
            0.0,
            0.0,
        );
        let worst = worst.max(run_case(gpu, &x, shape, [2, 3], [5, 4], 6));
        eprintln!(
            "max_pool2d_backward (large) worst relative error on {}: {worst:e}",
            gpu.info().name
        );
    }
}

#[test]
fn max_pool2d_backward_matches_finite_differences() {
    // L = sum(max_pool2d(x) * g) on tie-free x (distinct values 0.01 apart, so a step of 1e-3
    // never changes an argmax): dL/dx is piecewise constant and the central difference,
    // divided by the step as actually rounded to f32, is exact up to f64 rounding.
    let shape = [2, 6, 7, 3];
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    let keys = rand_vec(n, 31);
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut x = vec![0.0f32; n];
    for (rank, &i) in order.iter().enumerate() {
        x[i] = rank as f32 * 0.01 - 1.0;
    }
    for (window, stride) in CONFIGS {
        let oshape = reference::max_pool2d_shape(shape, window, stride);
        let g = rand_vec(oshape.iter().product(), 32);
        let loss = |x: &[f32]| -> f64 {
            reference::max_pool2d(x, shape, window, stride)
                .iter()
                .zip(&g)
                .map(|(y, &g)| y * f64::from(g))
                .sum()
        };
        let h = 1e-3f32;
        let fd: Vec<f64> = (0..n)
            .map(|i| {
                let mut p = x.clone();
                let mut q = x.clone();
                p[i] += h;
                q[i] -= h;
                (loss(&p) - loss(&q)) / (f64::from(p[i]) - f64::from(q[i]))
            })
            .collect();
        for gpu in gpus() {
            let gx = Tensor::from_slice(gpu, &x, &shape).unwrap();
            let gg = Tensor::from_slice(gpu, &g, &oshape).unwrap();
            let dx = ops::max_pool2d_backward(&gx, &gg, window, stride)
                .unwrap()
                .to_vec()
                .unwrap();
            let what = format!(
                "{}: max_pool2d_backward vs finite differences, window {window:?} stride {stride:?}",
                gpu.info().name
            );
            let err = assert_close(&what, &dx, &fd, 1e-5, 0.0);
            eprintln!("{what}: worst relative error {err:e}");
        }
    }
}

#[test]
fn max_pool2d_rejects_bad_arguments() {
    let gpu = common::gpu();
    let x = Tensor::from_slice(gpu, &[0.0; 30], &[1, 2, 5, 3]).unwrap();
    let err = |r: wgnn::Result<Tensor>| r.unwrap_err().to_string();
    assert_eq!(
        err(ops::max_pool2d(&x, [0, 2], [2, 2])),
        "max_pool2d: window [0, 2] must be positive in both dimensions"
    );
    assert_eq!(
        err(ops::max_pool2d(&x, [2, 2], [2, 0])),
        "max_pool2d: stride [2, 0] must be positive in both dimensions"
    );
    assert_eq!(
        err(ops::max_pool2d(&x, [3, 3], [1, 1])),
        "max_pool2d: window [3, 3] is larger than the input's spatial size [2, 5] (input [1, 2, 5, 3])"
    );
    let flat = Tensor::from_slice(gpu, &[0.0; 30], &[10, 3]).unwrap();
    assert_eq!(
        err(ops::max_pool2d(&flat, [2, 2], [2, 2])),
        "max_pool2d: expects a 4-D NHWC input, got shape [10, 3]"
    );
    let xu = Tensor::from_u32(gpu, &[0; 4], &[1, 2, 2, 1]).unwrap();
    assert_eq!(
        err(ops::max_pool2d(&xu, [2, 2], [2, 2])),
        "max_pool2d: expected a F32 tensor, got U32 [1, 2, 2, 1]"
    );
    let dy = Tensor::from_slice(gpu, &[0.0; 12], &[1, 2, 2, 3]).unwrap();
    assert_eq!(
        err(ops::max_pool2d_backward(&x, &dy, [2, 2], [2, 2])),
        "max_pool2d_backward: dy has shape [1, 2, 2, 3], expected [1, 1, 2, 3] (x [1, 2, 5, 3], window [2, 2], stride [2, 2])"
    );
    assert_eq!(
        err(ops::max_pool2d_backward(&x, &dy, [2, 9], [2, 2])),
        "max_pool2d_backward: window [2, 9] is larger than the input's spatial size [2, 5] (input [1, 2, 5, 3])"
    );
    let dyu = Tensor::from_u32(gpu, &[0; 6], &[1, 1, 2, 3]).unwrap();
    assert_eq!(
        err(ops::max_pool2d_backward(&x, &dyu, [2, 2], [2, 2])),
        "max_pool2d_backward: expected a F32 tensor, got U32 [1, 1, 2, 3]"
    );
    assert_eq!(dyu.dtype(), DType::U32);
}
