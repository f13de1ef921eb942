//! Entry points of shaders/elementwise.wgsl.

use crate::kernels::shader::{Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// shaders/elementwise.wgsl on its own.
pub(crate) const SHADER: Shader = Shader {
    name: "elementwise",
    parts: &[wgsl!("elementwise.wgsl")],
};

/// Mirrors `ElementwiseParams` in shaders/elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ElementwiseParams {
    pub len: u32,
    pub cols: u32,
    pub scale: f32,
    pub _pad: u32,
}

/// The pipelines of shaders/elementwise.wgsl; all share one layout
/// (params, a, b, bias, out).
pub(crate) struct Elementwise {
    pub family: Family,
    relu_forward: wgpu::ComputePipeline,
    relu_backward: wgpu::ComputePipeline,
    relu_dropout_backward: wgpu::ComputePipeline,
    bias_add: wgpu::ComputePipeline,
    copy: wgpu::ComputePipeline,
}

/// The entry points of shaders/elementwise.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pointwise {
    ReluForward,
    ReluBackward,
    ReluDropoutBackward,
    BiasAdd,
    /// `out = a` (the bench's bandwidth yardstick).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // read by the testing module
    Copy,
}

impl Elementwise {
    pub fn new(gpu: &Gpu) -> Result<Elementwise> {
        let family = Family::new(
            gpu,
            "elementwise",
            &SHADER,
            &[
                Bind::Uniform,
                Bind::Read,
                Bind::Read,
                Bind::Read,
                Bind::Write,
            ],
        )?;
        Ok(Elementwise {
            relu_forward: family.pipeline(gpu, "relu_forward", &[])?,
            relu_backward: family.pipeline(gpu, "relu_backward", &[])?,
            relu_dropout_backward: family.pipeline(gpu, "relu_dropout_backward", &[])?,
            bias_add: family.pipeline(gpu, "bias_add", &[])?,
            copy: family.pipeline(gpu, "copy", &[])?,
            family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Elementwise> {
        get(gpu, &gpu.kernels().elementwise, Elementwise::new)
    }

    /// Records entry point `which` over `len` elements; `io` binds (params, a, b, bias, out).
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        which: Pointwise,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        let p = match which {
            Pointwise::ReluForward => &self.relu_forward,
            Pointwise::ReluBackward => &self.relu_backward,
            Pointwise::ReluDropoutBackward => &self.relu_dropout_backward,
            Pointwise::BiasAdd => &self.bias_add,
            Pointwise::Copy => &self.copy,
        };
        // Four vec4 (16 elements) per invocation.
        dispatch_1d(pass, p, io, len.div_ceil(16));
    }
}
