//! SGD and Adam updates against f64 references iterated over several steps.

mod common;

use common::{assert_close, gpus, rand_vec};
use wgnn::ops::{self, Adam, Sgd};
use wgnn::{Tensor, reference};

/// An f32 update against an f64 reference iterated without rounding: each step rounds the
/// state to f32 once (relative 6e-8) and the update itself is a few roundings of a term much
/// smaller than the parameter, so a few steps stay well inside 1e-5 of the largest value. The
/// worst case seen (about 3e-6) is Adam's `m` for one element, where `b1 m + (1 - b1) g`
/// cancels and the scale is that one small value.
const OPTIM_REL: f64 = 1e-5;

const LENGTHS: [usize; 6] = [1, 3, 7, 33, 257, 1001];
const STEPS: u32 = 5;

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn sgd_update_matches_reference_several_steps() {
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for &n in &LENGTHS {
            for momentum in [0.0f32, 0.9] {
                for weight_decay in [0.0f32, 0.01] {
                    let opt = Sgd {
                        lr: 0.05,
                        momentum,
                        weight_decay,
                    };
                    let w0 = rand_vec(n, n as u64);
                    let v0 = rand_vec(n, 1 + n as u64);
                    let w = Tensor::from_slice(gpu, &w0, &[n]).unwrap();
                    let v = Tensor::from_slice(gpu, &v0, &[n]).unwrap();
                    let (mut rw, mut rv) = (widen(&w0), widen(&v0));
                    for step in 0..STEPS {
                        let g = rand_vec(n, 100 + u64::from(step) + n as u64);
                        let gg = Tensor::from_slice(gpu, &g, &[n]).unwrap();
                        ops::sgd_update(&w, &gg, &v, &opt).unwrap();
                        reference::sgd_update(&mut rw, &g, &mut rv, &opt);
                    }
                    let what = format!("{}: sgd_update n={n} {opt:?}", gpu.info().name);
                    let got_w = w.to_vec().unwrap();
                    worst = worst.max(assert_close(
                        &format!("{what} param"),
                        &got_w,
                        &rw,
                        OPTIM_REL,
                        0.0,
                    ));
                    let got_v = v.to_vec().unwrap();
                    if momentum == 0.0 {
                        assert_eq!(got_v, v0, "{what}: velocity must be left untouched");
                    } else {
                        worst = worst.max(assert_close(
                            &format!("{what} velocity"),
                            &got_v,
                            &rv,
                            OPTIM_REL,
                            0.0,
                        ));
                    }
                }
            }
        }
        eprintln!(
            "sgd_update worst relative error on {} ({:?}): {worst:e}",
            gpu.info().name,
            gpu.info().backend
        );
    }
}

#[test]
fn adam_update_matches_reference_steps_1_to_5() {
    let configs = [
        Adam::default(),
        Adam {
            weight_decay: 0.01,
            ..Adam::default()
        },
        // Large step and no first-moment averaging: the update is a visible fraction of w.
        Adam {
            lr: 0.1,
            beta1: 0.0,
            beta2: 0.5,
            epsilon: 1e-3,
            weight_decay: 0.01,
        },
    ];
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for &n in &LENGTHS {
            for opt in &configs {
                let w0 = rand_vec(n, 7 + n as u64);
                let w = Tensor::from_slice(gpu, &w0, &[n]).unwrap();
                let m = Tensor::zeros(gpu, &[n]).unwrap();
                let v = Tensor::zeros(gpu, &[n]).unwrap();
                let mut rw = widen(&w0);
                let (mut rm, mut rv) = (vec![0.0; n], vec![0.0; n]);
                for step in 1..=STEPS {
                    let g = rand_vec(n, 200 + u64::from(step) + n as u64);
                    let gg = Tensor::from_slice(gpu, &g, &[n]).unwrap();
                    ops::adam_update(&w, &gg, &m, &v, opt, step).unwrap();
                    reference::adam_update(&mut rw, &g, &mut rm, &mut rv, opt, step);
                    let what =
                        format!("{}: adam_update n={n} step {step} {opt:?}", gpu.info().name);
                    for (name, t, want) in [("param", &w, &rw), ("m", &m, &rm), ("v", &v, &rv)] {
                        worst = worst.max(assert_close(
                            &format!("{what} {name}"),
                            &t.to_vec().unwrap(),
                            want,
                            OPTIM_REL,
                            0.0,
                        ));
                    }
                }
            }
        }
        eprintln!(
            "adam_update worst relative error on {} ({:?}): {worst:e}",
            gpu.info().name,
            gpu.info().backend
        );
    }
}

#[test]
fn adam_update_first_step_moves_each_weight_by_lr() {
    // With m = v = 0, step 1 gives m = (1 - b1) g, v = (1 - b2) g^2 and lr_t m / sqrt(v) =
    // lr sign(g) exactly in real arithmetic (epsilon aside): an independent closed form.
    let gpu = common::gpu();
    let n = 33;
    let w0 = rand_vec(n, 41);
    let g: Vec<f32> = rand_vec(n, 42).iter().map(|x| x + x.signum()).collect(); // |g| >= 1
    let w = Tensor::from_slice(gpu, &w0, &[n]).unwrap();
    let m = Tensor::zeros(gpu, &[n]).unwrap();
    let v = Tensor::zeros(gpu, &[n]).unwrap();
    let gg = Tensor::from_slice(gpu, &g, &[n]).unwrap();
    let opt = Adam {
        epsilon: 1e-30,
        ..Adam::default()
    };
    ops::adam_update(&w, &gg, &m, &v, &opt, 1).unwrap();
    let want: Vec<f64> = w0
        .iter()
        .zip(&g)
        .map(|(&w, &g)| f64::from(w) - 0.001 * f64::from(g.signum()))
        .collect();
    assert_close("adam_update step 1", &w.to_vec().unwrap(), &want, 1e-6, 0.0);
}

#[test]
fn sgd_update_rejects_bad_arguments() {
    let gpu = common::gpu();
    let w = Tensor::from_slice(gpu, &[0.0; 6], &[2, 3]).unwrap();
    let g = Tensor::from_slice(gpu, &[0.0; 6], &[2, 3]).unwrap();
    let v = Tensor::from_slice(gpu, &[0.0; 6], &[2, 3]).unwrap();
    let err = |w: &Tensor, g: &Tensor, v: &Tensor, opt: Sgd| {
        ops::sgd_update(w, g, v, &opt).unwrap_err().to_string()
    };
    let ok = Sgd::default();
    assert_eq!(
        err(
            &w,
            &g,
            &v,
            Sgd {
                momentum: 1.5,
                ..ok
            }
        ),
        "sgd_update: momentum 1.5 is outside [0, 1)"
    );
    assert_eq!(
        err(
            &w,
            &g,
            &v,
            Sgd {
                momentum: 1.0,
                ..ok
            }
        ),
        "sgd_update: momentum 1 is outside [0, 1)"
    );
    assert_eq!(
        err(&w, &g, &v, Sgd { lr: -0.1, ..ok }),
        "sgd_update: lr -0.1 is not a finite number >= 0"
    );
    assert_eq!(
        err(
            &w,
            &g,
            &v,
            Sgd {
                lr: f32::INFINITY,
                ..ok
            }
        ),
        "sgd_update: lr inf is not a finite number >= 0"
    );
    assert_eq!(
        err(
            &w,
            &g,
            &v,
            Sgd {
                weight_decay: f32::NAN,
                ..ok
            }
        ),
        "sgd_update: weight_decay NaN is not a finite number >= 0"
    );
    let g7 = Tensor::from_slice(gpu, &[0.0; 6], &[6]).unwrap();
    assert_eq!(
        err(&w, &g7, &v, ok),
        "sgd_update: param and grad differ in shape (param [2, 3], grad [6])"
    );
    let vu = Tensor::from_u32(gpu, &[0; 6], &[2, 3]).unwrap();
    assert_eq!(
        err(&w, &g, &vu, ok),
        "sgd_update: expected a F32 tensor, got U32 [2, 3]"
    );
    assert_eq!(
        err(&w, &g, &w, ok),
        "sgd_update: param and velocity share one buffer; each must be its own tensor"
    );
    // Nothing was recorded: the parameter is unchanged.
    assert_eq!(w.to_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn adam_update_rejects_bad_arguments() {
    let gpu = common::gpu();
    let t = || Tensor::from_slice(gpu, &[1.0; 3], &[3]).unwrap();
    let (w, g, m, v) = (t(), t(), t(), t());
    let ok = Adam::default();
    let err = |opt: Adam, step: u32| {
        ops::adam_update(&w, &g, &m, &v, &opt, step)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(ok, 0),
        "adam_update: step 0 is not >= 1 (steps count from 1)"
    );
    assert_eq!(
        err(Adam { beta1: -0.5, ..ok }, 1),
        "adam_update: beta1 -0.5 is outside [0, 1)"
    );
    assert_eq!(
        err(Adam { beta2: 1.0, ..ok }, 1),
        "adam_update: beta2 1 is outside [0, 1)"
    );
    assert_eq!(
        err(Adam { epsilon: 0.0, ..ok }, 1),
        "adam_update: epsilon 0 is not a finite number > 0"
    );
    assert_eq!(
        err(Adam { lr: f32::NAN, ..ok }, 1),
        "adam_update: lr NaN is not a finite number >= 0"
    );
    assert_eq!(
        err(
            Adam {
                weight_decay: -1.0,
                ..ok
            },
            1
        ),
        "adam_update: weight_decay -1 is not a finite number >= 0"
    );
    let v4 = Tensor::from_slice(gpu, &[0.0; 4], &[4]).unwrap();
    assert_eq!(
        ops::adam_update(&w, &g, &m, &v4, &ok, 1)
            .unwrap_err()
            .to_string(),
        "adam_update: param and v differ in shape (param [3], v [4])"
    );
    assert_eq!(
        ops::adam_update(&w, &g, &m, &m, &ok, 1)
            .unwrap_err()
            .to_string(),
        "adam_update: m and v share one buffer; each must be its own tensor"
    );
    assert_eq!(w.to_vec().unwrap(), vec![1.0; 3]);
}

#[test]
fn sgd_and_adam_defaults_are_keras_defaults() {
    assert_eq!(
        Sgd::default(),
        Sgd {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0
        }
    );
    assert_eq!(
        Adam::default(),
        Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0
        }
    );
}
