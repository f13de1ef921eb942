//! The dropout mask of one op on the GPU: the Rust twin of `DropoutMask` in
//! shaders/dropout_mask.wgsl, shared by the dropout kernels and matmul's epilogue.

use crate::philox::{DropoutLowering, DropoutSpec, split};

/// Mirrors `DropoutMask` in shaders/dropout_mask.wgsl: a rate lowered by
/// [`DropoutLowering`] and its stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DropoutMask {
    pub seed: [u32; 2],
    pub offset: [u32; 2],
    pub threshold: u32,
    /// A [`crate::philox::DropMode`] as its WGSL value.
    pub mode: u32,
    pub scale: f32,
    pub _pad: u32,
}

impl DropoutMask {
    /// The mask of `spec` (its rate checked already), or, for `None`, one that keeps every
    /// element unscaled.
    pub fn new(spec: Option<DropoutSpec>) -> DropoutMask {
        let Some(spec) = spec else {
            return DropoutMask {
                seed: [0; 2],
                offset: [0; 2],
                threshold: 0,
                mode: crate::philox::DropMode::KeepAll as u32,
                scale: 1.0,
                _pad: 0,
            };
        };
        let l = DropoutLowering::new(spec.rate);
        DropoutMask {
            seed: split(spec.seed),
            offset: split(spec.offset),
            threshold: l.threshold,
            mode: l.mode as u32,
            scale: l.scale,
            _pad: 0,
        }
    }
}
