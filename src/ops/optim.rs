//! The eager optimizer updates (shaders/optim.wgsl).

use std::sync::Arc;

use crate::kernels::optim::{Optim, OptimParams};
use crate::kernels::{zero_status, zero_step};
use crate::ops::same_shape;
use crate::ops::uniform;
use crate::spec::{Adam, Sgd};
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// `Err` unless `state` is an f32 tensor of `param`'s shape on its GPU, with a buffer of its
/// own (a tensor updated in place must not share a buffer with another operand).
fn check_tensors(op: &'static str, named: &[(&Tensor, &str)]) -> Result<()> {
    let (param, pn) = named[0];
    for (i, &(t, name)) in named.iter().enumerate() {
        t.expect(DType::F32, op)?;
        if i > 0 {
            same_shape(op, param, pn, t, name)?;
        }
        for &(u, un) in &named[..i] {
            if Arc::ptr_eq(&t.buf, &u.buf) {
                return Err(Error::arg(
                    op,
                    format!("{un} and {name} share one buffer; each must be its own tensor"),
                ));
            }
        }
    }
    Ok(())
}

/// One SGD step in place: updates `param` (and `velocity` when `opt.momentum > 0`) from
/// `grad`, as [`Sgd`] describes. All three tensors are f32 of one shape (any shape).
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// use wgnn::ops::{Sgd, sgd_update};
/// let gpu = wgnn::Gpu::software()?;
/// let w = wgnn::Tensor::from_slice(&gpu, &[1.0, -2.0], &[2])?;
/// let g = wgnn::Tensor::from_slice(&gpu, &[0.5, 0.25], &[2])?;
/// let v = wgnn::Tensor::zeros(&gpu, &[2])?;
/// sgd_update(&w, &g, &v, &Sgd { lr: 0.5, ..Sgd::default() })?;
/// assert_eq!(w.to_vec()?, vec![0.75, -2.125]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When the shapes differ, a tensor is not f32, two arguments share a buffer, or `opt` is out
/// of range (`lr` and `weight_decay` finite and >= 0, `momentum` in [0, 1)), e.g.
/// `sgd_update: momentum 1.5 is outside [0, 1)`.
pub fn sgd_update(param: &Tensor, grad: &Tensor, velocity: &Tensor, opt: &Sgd) -> Result<()> {
    let op = "sgd_update";
    check_tensors(
        op,
        &[(param, "param"), (grad, "grad"), (velocity, "velocity")],
    )?;
    opt.check(op)?;
    let gpu = param.gpu();
    gpu.check_alive(op)?; // before the params upload, which a lost device cannot report
    let k = Optim::get(gpu)?;
    let len = param.len() as u32;
    let params = uniform(gpu, op, &OptimParams::sgd(len, opt));
    let io = k.sgd_family.bind_eager(
        gpu,
        &[
            &params,
            grad.buffer(),
            param.buffer(),
            velocity.buffer(),
            zero_step(gpu),
            zero_status(gpu),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_sgd_update(pass, &io, len))
}

/// Adam step `step` (counting from 1) in place: updates `param`, `m` and `v` from `grad`, as
/// [`Adam`] describes. All four tensors are f32 of one shape (any shape); `m` and `v` start
/// as zeros.
///
/// # Errors
/// When the shapes differ, a tensor is not f32, two arguments share a buffer, `step` is 0, or
/// `opt` is out of range (`lr` and `weight_decay` finite and >= 0, `beta1` and `beta2` in
/// [0, 1), `epsilon` finite and > 0), e.g. `adam_update: beta2 1 is outside [0, 1)`.
pub fn adam_update(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    opt: &Adam,
    step: u32,
) -> Result<()> {
    let op = "adam_update";
    check_tensors(op, &[(param, "param"), (grad, "grad"), (m, "m"), (v, "v")])?;
    opt.check(op)?;
    if step == 0 {
        return Err(Error::arg(op, "step 0 is not >= 1 (steps count from 1)"));
    }
    let gpu = param.gpu();
    gpu.check_alive(op)?; // before the params upload, which a lost device cannot report
    let k = Optim::get(gpu)?;
    let len = param.len() as u32;
    let params = uniform(gpu, op, &OptimParams::adam(len, opt, step));
    let io = k.adam_family.bind_eager(
        gpu,
        &[
            &params,
            grad.buffer(),
            param.buffer(),
            m.buffer(),
            v.buffer(),
            zero_step(gpu),
            zero_status(gpu),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_adam_update(pass, &io, len))
}
