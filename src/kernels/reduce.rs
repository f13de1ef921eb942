//! Entry points of shaders/reduce.wgsl.

use crate::kernels::{
    Bind, Family, dispatch_1d, expect_status, get, run, uniform, zero_status, zero_step,
};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/finite.wgsl"),
    include_str!("../../shaders/reduce.wgsl")
);

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
            SOURCE,
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

/// The bias gradient: the sum of `dy` over every dimension but the last (`[.., c]` -> `[c]`).
///
/// # Errors
/// When `dy` is not f32.
pub fn bias_grad(dy: &Tensor) -> Result<Tensor> {
    eager(dy, None)
}

/// [`bias_grad`], and with `check` = (status, code) every sum checked as in a training step,
/// reporting to that status tensor (u32 [4]).
pub(crate) fn eager(dy: &Tensor, check: Option<(&Tensor, u32)>) -> Result<Tensor> {
    let op = "bias_grad";
    dy.expect(DType::F32, op)?;
    if let Some((status, _)) = check {
        expect_status(op, status, dy)?;
    }
    let gpu = dy.gpu();
    let k = Reduce::get(gpu)?;
    let cols = *dy
        .shape()
        .last()
        .ok_or_else(|| Error::shape(op, "dy has no dimensions"))?;
    let rows = dy.len() / cols;
    let out = Tensor::empty(gpu, op, &[cols], DType::F32)?;
    let params = uniform(
        gpu,
        op,
        &ReduceParams {
            rows: rows as u32,
            cols: cols as u32,
            check: check.map_or(0, |(_, code)| code),
            _pad: 0,
        },
    );
    let io = k.family.bind(
        gpu,
        &[
            &params,
            dy.buffer(),
            out.buffer(),
            zero_step(gpu),
            check.map_or(zero_status(gpu), |(status, _)| status.buffer()),
        ],
    );
    run(gpu, op, |pass| k.record_bias_grad(pass, &io, cols as u32))?;
    Ok(out)
}
