//! Optimizer references: one SGD or Adam step in f64, in place on f64 state so that several
//! steps can be iterated without rounding to f32 in between.

use crate::spec::{Adam, Sgd};

/// One SGD step (see [`crate::ops::Sgd`]): with `g' = g + 2 * weight_decay * w`,
/// `momentum == 0`: `w -= lr * g'` (velocity untouched); otherwise
/// `v = momentum * v - lr * g'`, `w += v`. All slices have one length.
pub fn sgd_update(param: &mut [f64], grad: &[f32], velocity: &mut [f64], opt: &Sgd) {
    let lr = f64::from(opt.lr);
    let momentum = f64::from(opt.momentum);
    let decay = 2.0 * f64::from(opt.weight_decay);
    for ((w, &g), v) in param.iter_mut().zip(grad).zip(velocity.iter_mut()) {
        let g = f64::from(g) + decay * *w;
        if momentum == 0.0 {
            *w -= lr * g;
        } else {
            *v = momentum * *v - lr * g;
            *w += *v;
        }
    }
}

/// Adam step `step` (from 1) as Keras computes it (see [`crate::ops::Adam`]): with
/// `g' = g + 2 * weight_decay * w`, `m = b1 m + (1 - b1) g'`, `v = b2 v + (1 - b2) g'^2`,
/// `w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)`. All slices have one
/// length.
pub fn adam_update(
    param: &mut [f64],
    grad: &[f32],
    m: &mut [f64],
    v: &mut [f64],
    opt: &Adam,
    step: u32,
) {
    let t = f64::from(step);
    let (b1, b2) = (f64::from(opt.beta1), f64::from(opt.beta2));
    let lr_t = f64::from(opt.lr) * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
    let eps = f64::from(opt.epsilon);
    let decay = 2.0 * f64::from(opt.weight_decay);
    for (((w, &g), m), v) in param
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let g = f64::from(g) + decay * *w;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *w -= lr_t * *m / (v.sqrt() + eps);
    }
}
