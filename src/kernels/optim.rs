//! Entry points of shaders/optim.wgsl: SGD (with momentum) and Adam updates in place.

use crate::kernels::shader::{STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::spec::{Adam, Sgd};
use crate::{Gpu, Result};

/// shaders/optim.wgsl after the step.
pub(crate) const SHADER: Shader = Shader {
    name: "optim",
    parts: &[STEP, wgsl!("optim.wgsl")],
};

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
            &SHADER,
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
            &SHADER,
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

#[cfg(test)]
mod tests {
    use super::*;

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
