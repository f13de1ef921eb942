//! Entry points of shaders/reduce.wgsl.

use crate::kernels::shader::{FINITE, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// shaders/reduce.wgsl after the step and the non-finite check.
pub(crate) const SHADER: Shader = Shader {
    name: "reduce",
    parts: &[STEP, FINITE, wgsl!("reduce.wgsl")],
};

/// Mirrors `ReduceParams` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceParams {
    pub rows: u32,
    pub cols: u32,
    /// 0, or the status code a non-finite sum reports (a checked bias gradient).
    pub check: u32,
    pub _pad: u32,
}

/// The pipelines of shaders/reduce.wgsl: (params, x, out, step, status).
pub(crate) struct Reduce {
    pub family: Family,
    bias_grad: wgpu::ComputePipeline,
    bias_grad_vec4: wgpu::ComputePipeline,
}

impl Reduce {
    pub fn new(gpu: &Gpu) -> Result<Reduce> {
        let family = Family::new(
            gpu,
            "reduce",
            &SHADER,
            &[
                Bind::Uniform,
                Bind::Read,
                Bind::Write,
                Bind::Uniform,
                Bind::Write,
            ],
        )?;
        Ok(Reduce {
            bias_grad: family.pipeline(gpu, "bias_grad", &[])?,
            bias_grad_vec4: family.pipeline(gpu, "bias_grad_vec4", &[])?,
            family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Reduce> {
        get(gpu, &gpu.kernels().reduce, Reduce::new)
    }

    /// Records `out[j] = sum_i x[i, j]`; `io` binds (params, x, out, step, status). Four
    /// columns per invocation (vec4) when `cols` is a multiple of 4.
    pub fn record_bias_grad(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        cols: u32,
    ) {
        if cols.is_multiple_of(4) {
            dispatch_1d(pass, &self.bias_grad_vec4, io, cols / 4);
        } else {
            dispatch_1d(pass, &self.bias_grad, io, cols);
        }
    }
}
