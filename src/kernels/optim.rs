//! Entry points of shaders/optim.wgsl: SGD (with momentum) and Adam updates in place.

use std::sync::Arc;

use crate::kernels::elementwise::same_shape;
use crate::kernels::{Bind, Family, dispatch_1d, get, run, uniform, zero_status, zero_step};
use crate::tensor::DType;
use crate::spec::{Adam, Sgd};
use crate::{Error, Gpu, Result, Tensor};

pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/optim.wgsl")
);

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
    opt.check(op)?;
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
