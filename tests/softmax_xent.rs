//! softmax_cross_entropy, softmax and accuracy against the f64 references and central
//! differences, extreme logits, ties and label errors.

mod common;

use common::{assert_close, gpus, rand_vec};
use rand::{RngExt, SeedableRng};
use wgnn::{Gpu, Tensor, ops, reference};

/// f32 exp/log against f64: a few ulps per term, relative to the largest magnitude.
const XENT_REL: f64 = 1e-5;
/// Absolute slack for the loss: WGSL's `log` near 1 is accurate in absolute terms (2^-21),
/// not relative ones, and a certain row's loss (~1e-70 in f64) is 0 in f32.
const LOSS_ABS: f64 = 1e-6;

const ROWS: [usize; 4] = [1, 3, 7, 33];
const CLASSES: [usize; 7] = [1, 3, 7, 10, 33, 257, 1000];

fn name(gpu: &Gpu) -> String {
    format!("{} ({:?})", gpu.info().name, gpu.info().backend)
}

fn labels_for(rows: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..rows)
        .map(|_| rng.random_range(0..classes as u32))
        .collect()
}

/// Runs the loss on `gpu` and checks loss and gradient against the reference; returns the
/// worst relative errors (loss, gradient). The gradient `(p - onehot) / rows` has the natural
/// scale `1 / rows` even where every element underflows (a certain row's ~1e-70 is 0 in f32),
/// so it is also allowed an absolute `XENT_REL / rows`.
fn check_xent(gpu: &Gpu, logits: &[f32], labels: &[u32], classes: usize, what: &str) -> (f64, f64) {
    let rows = labels.len();
    let gl = Tensor::from_slice(gpu, logits, &[rows, classes]).unwrap();
    let gy = Tensor::from_u32(gpu, labels, &[rows]).unwrap();
    let (loss, dlogits) = ops::softmax_cross_entropy(&gl, &gy).unwrap();
    assert_eq!(loss.shape(), [1], "{what}");
    assert_eq!(dlogits.shape(), [rows, classes], "{what}");
    let (want_loss, want_grad) = reference::softmax_cross_entropy(logits, labels, classes);
    let el = assert_close(
        &format!("softmax_cross_entropy loss {what}"),
        &loss.to_vec().unwrap(),
        &[want_loss],
        XENT_REL,
        LOSS_ABS,
    );
    let eg = assert_close(
        &format!("softmax_cross_entropy dlogits {what}"),
        &dlogits.to_vec().unwrap(),
        &want_grad,
        XENT_REL,
        XENT_REL / rows as f64,
    );
    // Report the gradient's error against max(largest magnitude, 1 / rows), as it is bounded.
    let scale = want_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let natural = scale.max(1.0 / rows as f64);
    (
        el,
        if scale > 0.0 {
            eg * scale / natural
        } else {
            eg / natural
        },
    )
}

#[test]
fn softmax_cross_entropy_matches_reference_odd_shapes() {
    for gpu in gpus() {
        let (mut wl, mut wg) = (0.0f64, 0.0f64);
        for &rows in &ROWS {
            for &classes in &CLASSES {
                let seed = (rows * 10_000 + classes) as u64;
                let logits: Vec<f32> = rand_vec(rows * classes, seed)
                    .iter()
                    .map(|v| v * 6.0)
                    .collect();
                let labels = labels_for(rows, classes, seed + 1);
                let what = format!("{}: [{rows}, {classes}]", name(gpu));
                let (el, eg) = check_xent(gpu, &logits, &labels, classes, &what);
                wl = wl.max(el);
                wg = wg.max(eg);
            }
        }
        eprintln!(
            "softmax_cross_entropy worst relative error on {}: loss {wl:e}, dlogits {wg:e}",
            name(gpu)
        );
    }
}

/// Rows of extreme and equal logits (10 classes each) with their labels.
fn extreme_rows() -> (Vec<f32>, Vec<u32>) {
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    let mut row = |r: [f32; 10], label: u32| {
        logits.extend_from_slice(&r);
        labels.push(label);
    };
    let mut alt = [0.0f32; 10];
    for (j, v) in alt.iter_mut().enumerate() {
        *v = if j % 2 == 0 { 80.0 } else { -80.0 };
    }
    row(alt, 0); // label at a maximum
    row(alt, 1); // label at a minimum: loss about 160
    row([80.0; 10], 4); // all equal and large
    row([-80.0; 10], 9); // all equal and very negative
    row([0.0; 10], 3); // all equal
    let mut one = [-80.0f32; 10];
    one[7] = 80.0;
    row(one, 7); // one certain class, right
    row(one, 2); // one certain class, wrong
    let mut big = [0.0f32; 10];
    big[5] = 1e30;
    big[6] = -1e30;
    row(big, 6); // far beyond exp's range
    (logits, labels)
}

#[test]
fn softmax_cross_entropy_extreme_logits_are_finite() {
    let (logits, labels) = extreme_rows();
    for gpu in gpus() {
        // Each row alone, so a large loss does not hide a small row's error in the mean.
        let mut worst = (0.0f64, 0.0f64);
        for (i, &label) in labels.iter().enumerate() {
            let row = &logits[i * 10..(i + 1) * 10];
            let gl = Tensor::from_slice(gpu, row, &[1, 10]).unwrap();
            let gy = Tensor::from_u32(gpu, &[label], &[1]).unwrap();
            let (loss, dl) = ops::softmax_cross_entropy(&gl, &gy).unwrap();
            let (loss, dl) = (loss.to_vec().unwrap(), dl.to_vec().unwrap());
            assert!(loss[0].is_finite(), "row {i}: loss {}", loss[0]);
            assert!(dl.iter().all(|v| v.is_finite()), "row {i}: dlogits {dl:?}");
            let what = format!("{}: extreme row {i}", name(gpu));
            let (el, eg) = check_xent(gpu, row, &[label], 10, &what);
            worst = (worst.0.max(el), worst.1.max(eg));
        }
        let what = format!("{}: extreme rows together", name(gpu));
        let (el, eg) = check_xent(gpu, &logits, &labels, 10, &what);
        eprintln!(
            "softmax_cross_entropy (extreme logits) worst relative error on {}: loss {:e}, dlogits {:e}",
            name(gpu),
            worst.0.max(el),
            worst.1.max(eg)
        );
        let gl = Tensor::from_slice(gpu, &logits, &[labels.len(), 10]).unwrap();
        let p = ops::softmax(&gl).unwrap().to_vec().unwrap();
        assert!(
            p.iter().all(|v| v.is_finite()),
            "softmax of extreme rows: {p:?}"
        );
        let e = assert_close(
            &format!("softmax extreme rows {}", name(gpu)),
            &p,
            &reference::softmax(&logits, 10),
            XENT_REL,
            0.0,
        );
        eprintln!(
            "softmax (extreme logits) worst relative error on {}: {e:e}",
            name(gpu)
        );
    }
}

#[test]
fn softmax_cross_entropy_is_bit_reproducible_on_a_large_batch() {
    let (rows, classes) = (4099, 10);
    let logits: Vec<f32> = rand_vec(rows * classes, 77)
        .iter()
        .map(|v| v * 4.0)
        .collect();
    let labels = labels_for(rows, classes, 78);
    for gpu in gpus() {
        let what = format!("{}: [{rows}, {classes}]", name(gpu));
        let (el, eg) = check_xent(gpu, &logits, &labels, classes, &what);
        let gl = Tensor::from_slice(gpu, &logits, &[rows, classes]).unwrap();
        let gy = Tensor::from_u32(gpu, &labels, &[rows]).unwrap();
        let bits: Vec<u32> = (0..3)
            .map(|_| {
                let (loss, _) = ops::softmax_cross_entropy(&gl, &gy).unwrap();
                loss.to_vec().unwrap()[0].to_bits()
            })
            .collect();
        assert!(
            bits.iter().all(|&b| b == bits[0]),
            "{what}: loss bits {bits:x?}"
        );
        eprintln!(
            "softmax_cross_entropy (large batch) worst relative error on {}: loss {el:e}, dlogits {eg:e}",
            name(gpu)
        );
    }
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    // Central differences of the f64 reference's mean loss, divided by the step as rounded to
    // f32; the truncation error h^2 f''' / 6 is below 1e-7 for h = 1e-3, so the bound is the
    // kernel's own f32 error.
    let (rows, classes) = (3, 7);
    let logits: Vec<f32> = rand_vec(rows * classes, 41)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    let labels = vec![6, 0, 3];
    let loss = |l: &[f32]| reference::softmax_cross_entropy(l, &labels, classes).0;
    let h = 1e-3f32;
    let fd: Vec<f64> = (0..logits.len())
        .map(|i| {
            let mut p = logits.clone();
            let mut q = logits.clone();
            p[i] += h;
            q[i] -= h;
            (loss(&p) - loss(&q)) / (f64::from(p[i]) - f64::from(q[i]))
        })
        .collect();
    for gpu in gpus() {
        let gl = Tensor::from_slice(gpu, &logits, &[rows, classes]).unwrap();
        let gy = Tensor::from_u32(gpu, &labels, &[rows]).unwrap();
        let (_, dl) = ops::softmax_cross_entropy(&gl, &gy).unwrap();
        let what = format!("{}: dlogits vs finite differences", name(gpu));
        let e = assert_close(&what, &dl.to_vec().unwrap(), &fd, 1e-5, 0.0);
        eprintln!("softmax_cross_entropy {what}: worst relative error {e:e}");
    }
}

#[test]
fn softmax_matches_reference_odd_shapes() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for &rows in &ROWS {
            for &classes in &CLASSES {
                let logits: Vec<f32> = rand_vec(rows * classes, (rows + classes) as u64)
                    .iter()
                    .map(|v| v * 8.0)
                    .collect();
                let gl = Tensor::from_slice(gpu, &logits, &[rows, classes]).unwrap();
                let p = ops::softmax(&gl).unwrap();
                assert_eq!(p.shape(), [rows, classes]);
                worst = worst.max(assert_close(
                    &format!("softmax {}: [{rows}, {classes}]", name(gpu)),
                    &p.to_vec().unwrap(),
                    &reference::softmax(&logits, classes),
                    XENT_REL,
                    0.0,
                ));
            }
        }
        eprintln!("softmax worst relative error on {}: {worst:e}", name(gpu));
    }
}

#[test]
fn accuracy_counts_exactly_with_ties() {
    // Hand-counted: the first maximum wins a tie.
    #[rustfmt::skip]
    let logits = [
        1.0, 1.0, 0.0, // argmax 0
        1.0, 1.0, 0.0, // argmax 0, label 1: miss
        0.0, 2.0, 2.0, // argmax 1
        0.0, 2.0, 2.0, // argmax 1, label 2: miss
        5.0, 5.0, 5.0, // argmax 0
        -1.0, -3.0, -0.5, // argmax 2
        80.0, -80.0, 80.0, // argmax 0
    ];
    let labels = [0, 1, 1, 2, 0, 2, 2];
    for gpu in gpus() {
        let gl = Tensor::from_slice(gpu, &logits, &[7, 3]).unwrap();
        let gy = Tensor::from_u32(gpu, &labels, &[7]).unwrap();
        let got = ops::accuracy(&gl, &gy).unwrap();
        assert_eq!(got.shape(), [1]);
        assert_eq!(got.to_vec_u32().unwrap(), [4], "{}", name(gpu));
        assert_eq!(reference::accuracy(&logits, &labels, 3), 4);
        // Random rows with many ties (values in {0, 0.5, 1}), labels with ~1/3 hits.
        for &(rows, classes) in &[(1, 1), (33, 3), (257, 7), (7, 1000)] {
            let l: Vec<f32> = rand_vec(rows * classes, 9)
                .iter()
                .map(|v| ((v + 1.0) * 1.5).floor() * 0.5)
                .collect();
            let y = labels_for(rows, classes.min(3), 10);
            let gl = Tensor::from_slice(gpu, &l, &[rows, classes]).unwrap();
            let gy = Tensor::from_u32(gpu, &y, &[rows]).unwrap();
            assert_eq!(
                ops::accuracy(&gl, &gy).unwrap().to_vec_u32().unwrap(),
                [reference::accuracy(&l, &y, classes)],
                "{}: accuracy [{rows}, {classes}]",
                name(gpu)
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_rejects_out_of_range_labels_and_bad_shapes() {
    let gpu = common::gpu();
    let logits = Tensor::from_slice(gpu, &rand_vec(40, 1), &[4, 10]).unwrap();
    let err = |r: wgnn::Result<(Tensor, Tensor)>| r.unwrap_err().to_string();
    let labels = Tensor::from_u32(gpu, &[0, 9, 3, 12], &[4]).unwrap();
    assert_eq!(
        err(ops::softmax_cross_entropy(&logits, &labels)),
        "softmax_cross_entropy: label 12 at row 3 is out of range for 10 classes"
    );
    assert_eq!(
        ops::accuracy(&logits, &labels).unwrap_err().to_string(),
        "accuracy: label 12 at row 3 is out of range for 10 classes"
    );
    let labels = Tensor::from_u32(gpu, &[1, 10, u32::MAX, 12], &[4]).unwrap();
    assert_eq!(
        err(ops::softmax_cross_entropy(&logits, &labels)),
        "softmax_cross_entropy: label 10 at row 1 is out of range for 10 classes (3 rows have labels >= 10)"
    );
    let labels = Tensor::from_slice(gpu, &[0.0; 4], &[4]).unwrap();
    assert_eq!(
        err(ops::softmax_cross_entropy(&logits, &labels)),
        "softmax_cross_entropy: labels must be U32 class indices, got F32 [4]"
    );
    let labels = Tensor::from_u32(gpu, &[0; 5], &[5]).unwrap();
    assert_eq!(
        err(ops::softmax_cross_entropy(&logits, &labels)),
        "softmax_cross_entropy: labels have shape [5], expected [4] (logits [4, 10])"
    );
    let labels2 = Tensor::from_u32(gpu, &[0; 4], &[4, 1]).unwrap();
    assert_eq!(
        ops::accuracy(&logits, &labels2).unwrap_err().to_string(),
        "accuracy: labels have shape [4, 1], expected [4] (logits [4, 10])"
    );
    let flat = Tensor::from_slice(gpu, &[0.0; 40], &[40]).unwrap();
    let labels = Tensor::from_u32(gpu, &[0; 4], &[4]).unwrap();
    assert_eq!(
        err(ops::softmax_cross_entropy(&flat, &labels)),
        "softmax_cross_entropy: logits must be 2-D [rows, classes], got shape [40]"
    );
    assert_eq!(
        ops::softmax(&flat).unwrap_err().to_string(),
        "softmax: logits must be 2-D [rows, classes], got shape [40]"
    );
    let lu = Tensor::from_u32(gpu, &[0; 40], &[4, 10]).unwrap();
    assert_eq!(
        ops::softmax(&lu).unwrap_err().to_string(),
        "softmax: logits must be F32, got U32 [4, 10]"
    );
    // A valid call after the errors still works (nothing half-recorded).
    let (loss, _) = ops::softmax_cross_entropy(&logits, &labels).unwrap();
    assert!(loss.to_vec().unwrap()[0].is_finite());
}
