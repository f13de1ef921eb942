//! Entry points of shaders/dropout.wgsl (dropout and SpatialDropout2D) and
//! shaders/philox_words.wgsl. The eager ops are in `ops::dropout`.

pub(crate) use crate::philox::DropoutSpec;

use crate::kernels::dropout_mask::DropoutMask;
use crate::kernels::shader::{DROPOUT_MASK, PHILOX, Part, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// The dropout kernels: shaders/dropout.wgsl after the step, Philox and the mask.
pub(crate) const SHADER: Shader = Shader {
    name: "dropout",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        wgsl!("dropout.wgsl"),
    ],
};
/// The raw-word test kernel: shaders/philox_words.wgsl after Philox.
#[cfg(any(test, feature = "testing"))]
pub(crate) const WORDS_SHADER: Shader = Shader {
    name: "philox_words",
    parts: &[Part::Mulhilo, PHILOX, wgsl!("philox_words.wgsl")],
};

/// Mirrors `DropoutParams` in shaders/dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DropoutParams {
    pub mask: DropoutMask,
    pub len: u32,
    /// Spatial dropout only: channels `C` (0 for plain dropout).
    pub channels: u32,
    /// Spatial dropout only: elements per image, `H * W * C` (0 for plain dropout).
    pub image: u32,
    pub _pad: u32,
}

/// Mirrors `WordsParams` in shaders/philox_words.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct WordsParams {
    pub count: u32,
    pub _pad: [u32; 3],
}

impl DropoutParams {
    /// Params for `len` elements; the rate must be checked already.
    pub fn new(len: u32, spec: DropoutSpec) -> DropoutParams {
        DropoutParams {
            mask: DropoutMask::new(Some(spec)),
            len,
            channels: 0,
            image: 0,
            _pad: 0,
        }
    }

    /// Params for a spatial dropout of `len` elements in images of `image` elements with
    /// `channels` channels each (`image` a multiple of `channels`, both at least 1); the rate
    /// must be checked already.
    pub fn spatial(len: u32, channels: u32, image: u32, spec: DropoutSpec) -> DropoutParams {
        DropoutParams {
            channels,
            image,
            ..DropoutParams::new(len, spec)
        }
    }
}

/// The pipelines of shaders/dropout.wgsl.
pub(crate) struct Dropout {
    pub family: Family,
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    spatial_forward: wgpu::ComputePipeline,
    spatial_backward: wgpu::ComputePipeline,
    #[cfg(feature = "testing")]
    pub words_family: Family,
    #[cfg(feature = "testing")]
    pub words: wgpu::ComputePipeline,
}

impl Dropout {
    pub fn new(gpu: &Gpu) -> Result<Dropout> {
        let family = Family::new(
            gpu,
            "dropout",
            &SHADER,
            &[Bind::Uniform, Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        let forward = family.pipeline(gpu, "dropout_forward", &[])?;
        let backward = family.pipeline(gpu, "dropout_backward", &[])?;
        let spatial_forward = family.pipeline(gpu, "spatial_dropout_forward", &[])?;
        let spatial_backward = family.pipeline(gpu, "spatial_dropout_backward", &[])?;
        #[cfg(feature = "testing")]
        let words_family = Family::new(
            gpu,
            "philox_words",
            &WORDS_SHADER,
            &[Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        #[cfg(feature = "testing")]
        let words = words_family.pipeline(gpu, "philox_words", &[])?;
        Ok(Dropout {
            family,
            forward,
            backward,
            spatial_forward,
            spatial_backward,
            #[cfg(feature = "testing")]
            words_family,
            #[cfg(feature = "testing")]
            words,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Dropout> {
        get(gpu, &gpu.kernels().dropout, Dropout::new)
    }

    /// Records `y = x * keep / (1 - p)`; `io` binds (params, step, x, y).
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, len: u32) {
        dispatch_1d(pass, &self.forward, io, len.div_ceil(16));
    }

    /// Records `dx = dy * keep / (1 - p)`; `io` binds (params, step, dy, dx).
    pub fn record_backward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        dispatch_1d(pass, &self.backward, io, len.div_ceil(16));
    }

    /// Records the spatial dropout of `len` elements (forward, or with `backward` its
    /// gradient, which regenerates the same channel mask); `io` binds (params, step, x, y)
    /// with params from [`DropoutParams::spatial`].
    pub fn record_spatial(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
        backward: bool,
    ) {
        let pipeline = if backward {
            &self.spatial_backward
        } else {
            &self.spatial_forward
        };
        dispatch_1d(pass, pipeline, io, len.div_ceil(4));
    }
}
