//! Entry point of shaders/dropout_mc.wgsl: dropout over `samples` copies of one batch, each
//! copy with its own stream (Monte-Carlo dropout). The executor records it; there is no
//! eager op (a sample's mask is [`crate::ops::dropout`]'s with that sample's offset).

use crate::kernels::dropout_mask::DropoutMask;
use crate::kernels::shader::{DROPOUT_MASK, PHILOX, Part, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::philox::DropoutSpec;
use crate::{Gpu, Result};

/// shaders/dropout_mc.wgsl after the step, Philox and the mask.
pub(crate) const SHADER: Shader = Shader {
    name: "dropout_mc",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        wgsl!("dropout_mc.wgsl"),
    ],
};

/// Mirrors `DropoutMcParams` in shaders/dropout_mc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DropoutMcParams {
    pub mask: DropoutMask,
    /// Elements of the output: samples * span.
    pub len: u32,
    /// Elements of one sample.
    pub span: u32,
    /// 1: the input holds one sample (read at `g % span`); 0: it is as long as the output.
    pub replicate: u32,
    /// Elements of one row: the batch's first element is `Step::batch_start * row_len`.
    pub row_len: u32,
}

impl DropoutMcParams {
    /// `samples` copies of `span` elements in rows of `row_len`, sample `s` drawing from
    /// stream `spec.offset + s * 2^32` (the rate checked already; the sizes too: `span *
    /// samples` fits a u32).
    pub fn new(
        (span, row_len, samples): (u32, u32, u32),
        replicate: bool,
        spec: DropoutSpec,
    ) -> DropoutMcParams {
        DropoutMcParams {
            mask: DropoutMask::new(Some(spec)),
            len: span.wrapping_mul(samples),
            span,
            replicate: u32::from(replicate),
            row_len,
        }
    }
}

/// The pipeline of shaders/dropout_mc.wgsl.
pub(crate) struct DropoutMc {
    pub family: Family,
    forward: wgpu::ComputePipeline,
}

impl DropoutMc {
    pub fn new(gpu: &Gpu) -> Result<DropoutMc> {
        let family = Family::new(
            gpu,
            "dropout_mc",
            &SHADER,
            &[Bind::Uniform, Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        let forward = family.pipeline(gpu, "dropout_mc_forward", &[])?;
        Ok(DropoutMc { family, forward })
    }

    pub fn get(gpu: &Gpu) -> Result<&DropoutMc> {
        get(gpu, &gpu.kernels().dropout_mc, DropoutMc::new)
    }

    /// Records `len` outputs (one invocation per vec4); `io` binds (params, step, x, y).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, len: u32) {
        dispatch_1d(pass, &self.forward, io, len.div_ceil(4));
    }
}
