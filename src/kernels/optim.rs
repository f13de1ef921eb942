//! Entry points of shaders/optim.wgsl: SGD (with momentum) and Adam updates in place.

use std::sync::Arc;

use crate::kernels::elementwise::same_shape;
use crate::kernels::{Bind, Family, dispatch_1d, get, run, uniform, zero_status, zero_step};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/optim.wgsl")
);

/// Stochastic gradient descent with optional momentum and L2 weight decay, as Keras'
/// `keras.optimizers.SGD` (without Nesterov) applied to a layer with
/// `kernel_regularizer=l2(weight_decay)`.
///
/// With `g' = g + 2 * weight_decay * w` (the gradient of the loss plus
/// `weight_decay * sum(w^2)`), one step is
///
/// - `momentum == 0`: `w = w - lr * g'` (the velocity is neither read nor written);
/// - otherwise: `v = momentum * v - lr * g'`, then `w = w + v`.
///
/// `weight_decay` is the L2 penalty coupled into the gradient, not the decoupled
/// `weight_decay` argument of Keras' optimizers (which shrinks `w` by `lr * wd * w`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// The learning rate, finite and >= 0 (Keras default 0.01).
    pub lr: f32,
    /// The momentum, in [0, 1) (default 0: plain gradient descent).
    pub momentum: f32,
    /// The L2 penalty factor `wd` of `wd * sum(w^2)`, finite and >= 0 (default 0).
    pub weight_decay: f32,
}

impl Default for Sgd {
    /// Keras' defaults: lr 0.01, momentum 0, no weight decay.
    fn default() -> Sgd {
        Sgd {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// Adam as Keras (`keras.optimizers.Adam`, `amsgrad=False`) and TensorFlow's `ApplyAdam`
/// compute it, with L2 weight decay as in [`Sgd`].
///
/// At step `t` (counting from 1), with `g' = g + 2 * weight_decay * w`:
///
/// ```text
/// m    = beta1 * m + (1 - beta1) * g'
/// v    = beta2 * v + (1 - beta2) * g'^2
/// lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
/// w    = w - lr_t * m / (sqrt(v) + epsilon)
/// ```
///
/// `epsilon` is added to `sqrt(v)` unscaled: it is the paper's "epsilon hat" (Kingma and Ba,
/// the formula before section 2.1), exactly as Keras documents its `epsilon`. The bias
/// corrections `beta^t` are computed on the host in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// The learning rate, finite and >= 0 (Keras default 0.001).
    pub lr: f32,
    /// The decay rate of the first moment, in [0, 1) (default 0.9).
    pub beta1: f32,
    /// The decay rate of the second moment, in [0, 1) (default 0.999).
    pub beta2: f32,
    /// Added to `sqrt(v)`, finite and > 0 (default 1e-7).
    pub epsilon: f32,
    /// The L2 penalty factor `wd` of `wd * sum(w^2)`, finite and >= 0 (default 0).
    pub weight_decay: f32,
}

impl Default for Adam {
    /// Keras' defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7, no weight decay.
    fn default() -> Adam {
        Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

/// Mirrors `OptimParams` in shaders/optim.wgsl. Holds every per-step scalar, so a training
/// loop rewrites only this uniform between steps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct OptimParams {
    pub len: u32,
    pub lr: f32,
    pub momentum: f32,
    pub decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub t0: u32,
    pub eps_hat: f32,
}

impl OptimParams {
    /// Params of an SGD step over `len` elements (`opt` already checked).
    pub fn sgd(len: u32, opt: &Sgd) -> OptimParams {
        OptimParams {
            len,
            lr: opt.lr,
            momentum: opt.momentum,
            decay: 2.0 * opt.weight_decay,
            beta1: 0.0,
            beta2: 0.0,
            t0: 0,
            eps_hat: 0.0,
        }
    }

    /// Params of Adam over `len` elements at step `t0` plus the bound step uniform's step
    /// (`opt` already checked); the bias correction is computed by the kernel.
    pub fn adam(len: u32, opt: &Adam, t0: u32) -> OptimParams {
        OptimParams {
            len,
            lr: opt.lr,
            momentum: 0.0,
            decay: 2.0 * opt.weight_decay,
            beta1: opt.beta1,
            beta2: opt.beta2,
            t0,
            eps_hat: opt.epsilon,
        }
    }
}

/// The pipelines of shaders/optim.wgsl: SGD binds (params, grad, param, velocity), Adam
/// (params, grad, param, m, v).
pub(crate) struct Optim {
    pub sgd_family: Family,
    pub adam_family: Family,
    sgd: wgpu::ComputePipeline,
    adam: wgpu::ComputePipeline,
}

impl Optim {
    pub fn new(gpu: &Gpu) -> Result<Optim> {
        use Bind::*;
        let sgd_family = Family::new_sparse(
            gpu,
            "optim_sgd",
            SOURCE,
            &[
                (0, Uniform),
                (1, Read),
                (2, Write),
                (3, Write),
                (5, Uniform),
                (6, Read),
            ],
        )?;
        let adam_family = Family::new(
            gpu,
            "optim_adam",
            SOURCE,
            &[Uniform, Read, Write, Write, Write, Uniform, Read],
        )?;
        Ok(Optim {
            sgd: sgd_family.pipeline(gpu, "sgd_update", &[])?,
            adam: adam_family.pipeline(gpu, "adam_update", &[])?,
            sgd_family,
            adam_family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Optim> {
        get(gpu, &gpu.kernels().optim, Optim::new)
    }

    /// Records one SGD step over `len` elements; `io` (of `sgd_family`) binds
    /// (params, grad, param, velocity, step, status).
    pub fn record_sgd_update(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        dispatch_1d(pass, &self.sgd, io, len.div_ceil(4));
    }

    /// Records one Adam step over `len` elements; `io` (of `adam_family`) binds
    /// (params, grad, param, m, v, step, status).
    pub fn record_adam_update(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        dispatch_1d(pass, &self.adam, io, len.div_ceil(4));
    }
}

fn finite_nonneg(op: &'static str, name: &str, x: f32) -> Result<()> {
    if !(x.is_finite() && x >= 0.0) {
        return Err(Error::arg(
            op,
            format!("{name} {x} is not a finite number >= 0"),
        ));
    }
    Ok(())
}

fn unit_interval(op: &'static str, name: &str, x: f32) -> Result<()> {
    if !(0.0..1.0).contains(&x) {
        return Err(Error::arg(op, format!("{name} {x} is outside [0, 1)")));
    }
    Ok(())
}

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
    finite_nonneg(op, "lr", opt.lr)?;
    unit_interval(op, "momentum", opt.momentum)?;
    finite_nonneg(op, "weight_decay", opt.weight_decay)?;
    let gpu = param.gpu();
    let k = Optim::get(gpu)?;
    let len = param.len() as u32;
    let params = uniform(gpu, op, &OptimParams::sgd(len, opt));
    let io = k.sgd_family.bind(
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
    run(gpu, op, |pass| k.record_sgd_update(pass, &io, len))
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
    finite_nonneg(op, "lr", opt.lr)?;
    unit_interval(op, "beta1", opt.beta1)?;
    unit_interval(op, "beta2", opt.beta2)?;
    if !(opt.epsilon.is_finite() && opt.epsilon > 0.0) {
        return Err(Error::arg(
            op,
            format!("epsilon {} is not a finite number > 0", opt.epsilon),
        ));
    }
    finite_nonneg(op, "weight_decay", opt.weight_decay)?;
    if step == 0 {
        return Err(Error::arg(op, "step 0 is not >= 1 (steps count from 1)"));
    }
    let gpu = param.gpu();
    let k = Optim::get(gpu)?;
    let len = param.len() as u32;
    let params = uniform(gpu, op, &OptimParams::adam(len, opt, step));
    let io = k.adam_family.bind(
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
    run(gpu, op, |pass| k.record_adam_update(pass, &io, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optim_params_layout_matches_wgsl() {
        let module = wgpu::naga::front::wgsl::parse_str(SOURCE).expect("optim.wgsl parses");
        let (members, span) = module
            .types
            .iter()
            .find_map(|(_, t)| match (&t.name, &t.inner) {
                (Some(n), wgpu::naga::TypeInner::Struct { members, span })
                    if n == "OptimParams" =>
                {
                    Some((members.clone(), *span))
                }
                _ => None,
            })
            .expect("OptimParams in optim.wgsl");
        assert_eq!(span as usize, size_of::<OptimParams>());
        let rust = [
            ("len", std::mem::offset_of!(OptimParams, len)),
            ("lr", std::mem::offset_of!(OptimParams, lr)),
            ("momentum", std::mem::offset_of!(OptimParams, momentum)),
            ("decay", std::mem::offset_of!(OptimParams, decay)),
            ("beta1", std::mem::offset_of!(OptimParams, beta1)),
            ("beta2", std::mem::offset_of!(OptimParams, beta2)),
            ("t0", std::mem::offset_of!(OptimParams, t0)),
            ("eps_hat", std::mem::offset_of!(OptimParams, eps_hat)),
        ];
        assert_eq!(members.len(), rust.len());
        for (m, (name, off)) in members.iter().zip(rust) {
            assert_eq!(m.name.as_deref(), Some(name));
            assert_eq!(m.offset as usize, off, "offset of {name}");
        }
        let mut v = wgpu::naga::valid::Validator::new(
            wgpu::naga::valid::ValidationFlags::all(),
            wgpu::naga::valid::Capabilities::empty(),
        );
        v.validate(&module).expect("optim.wgsl validates");
    }

    #[test]
    fn optim_adam_params_carry_step_and_hyperparameters() {
        let p = OptimParams::adam(5, &Adam::default(), 3);
        assert_eq!((p.t0, p.lr, p.beta1, p.beta2), (3, 0.001, 0.9, 0.999));
        assert_eq!(p.eps_hat, 1e-7);
        assert_eq!(
            OptimParams::sgd(
                3,
                &Sgd {
                    weight_decay: 0.25,
                    ..Sgd::default()
                }
            )
            .decay,
            0.5
        );
    }
}
