//! The convolution's forward with an epilogue (shaders/conv2d_epilogue.wgsl and
//! shaders/conv2d_subgroup_epilogue.wgsl), for a model's fused
//! `Conv2D [-> ReLU] -> SpatialDropout2D`: the same kernel and accumulation as the plain
//! forward of `super`, then `mask(act(conv + bias))` as each tile is stored; with the kernel
//! the plain forward would take for the same shapes (the subgroup, staged or 4x4-tile one), so
//! fused and unfused accumulate in one order and give the same bits.

use super::{Chosen, Conv2d, Conv2dDims, Conv2dPass, ConvKernel};
use crate::kernels::dropout_mask::DropoutMask;
use crate::kernels::shader::{DROPOUT_MASK, PHILOX, Part, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family};
use crate::philox::DropoutSpec;
use crate::{Gpu, Result};
use std::sync::OnceLock;

/// The forward with an epilogue: [`super::SHADER`] after the step, Philox and the mask, then
/// shaders/conv2d_epilogue.wgsl.
pub(crate) const EPILOGUE_SHADER: Shader = Shader {
    name: "conv2d_epilogue",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        wgsl!("conv2d.wgsl"),
        wgsl!("conv2d_epilogue.wgsl"),
    ],
};

/// [`EPILOGUE_SHADER`] with the subgroup forward and its epilogue entry point (compiled only
/// where [`super::SUBGROUP_SHADER`] is).
pub(crate) const EPILOGUE_SUBGROUP_SHADER: Shader = Shader {
    name: "conv2d_epilogue_subgroup",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        wgsl!("conv2d.wgsl"),
        wgsl!("conv2d_subgroup.wgsl"),
        wgsl!("conv2d_epilogue.wgsl"),
        wgsl!("conv2d_subgroup_epilogue.wgsl"),
    ],
};

/// [`EPILOGUE_SHADER`] with the staged forward and its epilogue entry point (compiled on the
/// first fused forward that runs staged).
pub(crate) const EPILOGUE_STAGED_SHADER: Shader = Shader {
    name: "conv2d_epilogue_staged",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        wgsl!("conv2d.wgsl"),
        wgsl!("conv2d_staged.wgsl"),
        wgsl!("conv2d_epilogue.wgsl"),
        wgsl!("conv2d_staged_epilogue.wgsl"),
    ],
};

/// Mirrors `ConvEpilogue` in shaders/conv2d_epilogue.wgsl: what the fused forward does to
/// each output before it stores it, `mask(act(conv + bias))`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvEpilogue {
    /// The spatial dropout's mask: element (n, oy, ox, c) uses mask element `n * cout + c`.
    pub mask: DropoutMask,
    /// 1: add the bias (binding 6).
    pub bias: u32,
    /// 1: ReLU.
    pub relu: u32,
    pub _pad: [u32; 2],
}

impl ConvEpilogue {
    /// With the bias, the ReLU, and the spatial dropout `mask` (its rate checked already;
    /// `None` keeps every channel unscaled).
    pub fn new(bias: bool, relu: bool, mask: Option<DropoutSpec>) -> ConvEpilogue {
        ConvEpilogue {
            mask: DropoutMask::new(mask),
            bias: u32::from(bias),
            relu: u32::from(relu),
            _pad: [0; 2],
        }
    }
}

/// The pipelines of the forward with an epilogue, compiled on first use (only models with a
/// fused spatial dropout need them). Layout: (params, x, kernel, y, epilogue, step, bias).
pub(crate) struct Conv2dEpilogue {
    pub family: Family,
    /// `conv2d_forward_epilogue` per [`Conv2dDims::variant`].
    plain: [wgpu::ComputePipeline; 4],
    /// `conv2d_forward_sg_epilogue` (full width, and with 16 lanes in halves), where the
    /// adapter has [`Conv2d`]'s subgroup kernels.
    subgroup: Option<(wgpu::ComputePipeline, Option<wgpu::ComputePipeline>)>,
    /// `conv2d_staged_forward_epilogue` per [`Conv2dDims::variant`], compiled on first use.
    staged: OnceLock<[wgpu::ComputePipeline; 4]>,
}

impl Conv2dEpilogue {
    /// The staged forward's epilogue pipelines, compiled on first use.
    fn staged(&self, gpu: &Gpu) -> Result<&[wgpu::ComputePipeline; 4]> {
        if let Some(s) = self.staged.get() {
            return Ok(s);
        }
        let f = self.family.sibling(
            gpu,
            "conv2d_epilogue_staged",
            &EPILOGUE_STAGED_SHADER,
            false,
        )?;
        let p = |cin4: f64, cout4: f64| {
            f.pipeline(
                gpu,
                "conv2d_staged_forward_epilogue",
                &[("PASS", 0.0), ("CIN4", cin4), ("COUT4", cout4)],
            )
        };
        let s = [p(0.0, 0.0)?, p(0.0, 1.0)?, p(1.0, 0.0)?, p(1.0, 1.0)?];
        let _ = self.staged.set(s);
        Ok(self.staged.get().expect("slot was just filled"))
    }
}

impl Conv2d {
    /// The forward with an epilogue (compiled on first use, once per `Gpu`).
    pub fn epilogue(&self, gpu: &Gpu) -> Result<&Conv2dEpilogue> {
        let new = |gpu: &Gpu| -> Result<Conv2dEpilogue> {
            let family = Family::new(
                gpu,
                "conv2d_epilogue",
                &EPILOGUE_SHADER,
                &[
                    Bind::Uniform,
                    Bind::Read,
                    Bind::Read,
                    Bind::Write,
                    Bind::Uniform,
                    Bind::Uniform,
                    Bind::Read,
                ],
            )?;
            let v = |cin4: f64, cout4: f64| {
                family.pipeline(
                    gpu,
                    "conv2d_forward_epilogue",
                    &[("CIN4", cin4), ("COUT4", cout4)],
                )
            };
            let plain = [v(0.0, 0.0)?, v(0.0, 1.0)?, v(1.0, 0.0)?, v(1.0, 1.0)?];
            let subgroup = match self.subgroup {
                None => None,
                Some(_) => {
                    let f = family.sibling(
                        gpu,
                        "conv2d_epilogue_subgroup",
                        &EPILOGUE_SUBGROUP_SHADER,
                        false,
                    )?;
                    let p = |half: bool| {
                        f.pipeline(
                            gpu,
                            "conv2d_forward_sg_epilogue",
                            &[
                                ("SG", f64::from(self.lanes)),
                                ("HALF", f64::from(u8::from(half))),
                            ],
                        )
                    };
                    let half = match self.subgroup_half {
                        Some(_) => Some(p(true)?),
                        None => None,
                    };
                    Some((p(false)?, half))
                }
            };
            Ok(Conv2dEpilogue {
                family,
                plain,
                subgroup,
                staged: OnceLock::new(),
            })
        };
        if let Some(e) = self.epilogue.get() {
            return Ok(e);
        }
        let e = new(gpu)?;
        let _ = self.epilogue.set(e);
        Ok(self.epilogue.get().expect("slot was just filled"))
    }

    /// Records the forward with an epilogue: the same kernel (subgroup, staged or 4x4 tile)
    /// and the same accumulation as [`Conv2d::record_forward`] for `dims`, then
    /// `mask(act(conv + bias))` as each tile is stored. `io` (made with
    /// [`Conv2d::epilogue`]'s family) binds (params, x, kernel, y, [`ConvEpilogue`], step,
    /// bias).
    pub fn record_forward_epilogue(
        &self,
        gpu: &Gpu,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
    ) -> Result<()> {
        let e = self.epilogue(gpu)?;
        let (pipeline, [gx, gy, gz]) =
            match self.chosen(dims, Conv2dPass::Forward, ConvKernel::Auto) {
                Chosen::Subgroup(_, grid) => {
                    let in_halves = self
                        .subgroup_shape(dims, Conv2dPass::Forward)
                        .is_some_and(|(_, h)| h);
                    match &e.subgroup {
                        Some((_, Some(h))) if in_halves => (h, grid),
                        Some((full, _)) => (full, grid),
                        None => {
                            return Err(crate::Error::internal(
                                "conv2d_epilogue",
                                "subgroup forward without its epilogue pipeline",
                            ));
                        }
                    }
                }
                Chosen::Staged(_, grid) => (&e.staged(gpu)?[dims.variant()], grid),
                Chosen::Tile => {
                    let [gx, gy] = dims.groups(Conv2dPass::Forward);
                    (&e.plain[dims.variant()], [gx, gy, 1])
                }
            };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(gx, gy, gz);
        Ok(())
    }
}
