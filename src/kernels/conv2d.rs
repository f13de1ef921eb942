//! Entry points of shaders/conv2d.wgsl: 2-D convolution (NHWC images, HWIO kernels) and its
//! input and weight gradients, each an implicit GEMM with a 4x4 register tile.
//!
//! Bias is not part of the convolution: [`crate::ops::bias_add`] and
//! [`crate::ops::bias_grad`] work over the last (channel) dimension of NHWC tensors. The one
//! exception is the fused `Conv2D [-> ReLU] -> SpatialDropout2D` of a model, whose forward
//! runs with an epilogue (shaders/conv2d_epilogue.wgsl, [`ConvEpilogue`]) that adds the bias,
//! applies the ReLU and draws the channel mask as it stores.
//!
//! Three kernels run each pass, all with the same bits ([`ConvKernel`]): the 4x4-tile one,
//! the subgroup one (shaders/conv2d_subgroup.wgsl, adapters with 8 or 16 lanes) and the
//! workgroup-staged one (shaders/conv2d_staged.wgsl, the child module `conv2d_staged.rs`).
//! The default takes the staged kernel on GPU adapters only, else the subgroup one where it
//! fits; the fused epilogue forward makes the same choice as the plain forward.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::kernels::shader::{Shader, wgsl};
use crate::kernels::{Bind, Family, WG, get, grid};
use crate::spec::Padding;
use crate::{Error, Gpu, Result};

// A child module so it can use the kernel choice of `Conv2d` (private here).
#[path = "conv2d_epilogue.rs"]
mod epilogue;
pub(crate) use epilogue::{Conv2dEpilogue, ConvEpilogue};
#[cfg(test)]
pub(crate) use epilogue::{EPILOGUE_SHADER, EPILOGUE_STAGED_SHADER, EPILOGUE_SUBGROUP_SHADER};

// A child module so it can use the fields of `Conv2d`.
#[path = "conv2d_staged.rs"]
mod staged;
#[cfg(test)]
pub(crate) use staged::STAGED_SHADER;
use staged::{Conv2dStaged, pass_index};

/// Which kernel runs a convolution pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    not(feature = "testing"),
    allow(dead_code, reason = "the tests and the bench name the other kernels")
)]
pub(crate) enum ConvKernel {
    /// The default: on GPU adapters the staged kernel where [`Conv2d::prefers_staged`], else
    /// the subgroup kernel where it fits, else the 4x4-tile kernel.
    Auto,
    /// The 4x4-tile kernel (shaders/conv2d.wgsl).
    Tile,
    /// The subgroup kernel where it fits (`Conv2d::subgroup_fits`), else the 4x4-tile one.
    Subgroup,
    /// The staged kernel (shaders/conv2d_staged.wgsl) where its grid is within limits and it
    /// was compiled ([`Conv2d::staged`]), else the 4x4-tile one.
    Staged,
}

/// A kernel choice resolved for one pass: the kernel and its workgroup grid.
enum Chosen<'a> {
    Tile,
    /// The pipeline (in halves or not) and its grid.
    Subgroup(&'a wgpu::ComputePipeline, [u32; 3]),
    /// The staged kernel's grid (its pipeline is the pass's and the dims' variant).
    Staged(&'a Conv2dStaged, [u32; 3]),
}

/// shaders/conv2d.wgsl on its own.
pub(crate) const SHADER: Shader = Shader {
    name: "conv2d",
    parts: &[wgsl!("conv2d.wgsl")],
};

/// [`SHADER`] with the subgroup entry points joined after it (compiled only on adapters whose
/// subgroups have a fixed 8 or 16 lanes).
pub(crate) const SUBGROUP_SHADER: Shader = Shader {
    name: "conv2d_subgroup",
    parts: &[wgsl!("conv2d.wgsl"), wgsl!("conv2d_subgroup.wgsl")],
};

/// Mirrors `Conv2dParams` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Conv2dParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub cin: u32,
    pub oh: u32,
    pub ow: u32,
    pub cout: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    /// K slices of the weight gradient (1: no split, the kernel writes dkernel itself).
    pub splits: u32,
    /// Images per K slice.
    pub per_split: u32,
    pub _pad: [u32; 2],
}

/// Weight-gradient invocations wanted at least: with fewer 4x4 tiles than this, K (the
/// images) is split into slices whose partial sums a second pass adds in a fixed order.
const WEIGHT_INVOCATIONS: u64 = 4096;

/// Output size and padding before the image along one axis, or `None` when a `Valid`
/// window does not fit.
fn axis(input: usize, k: usize, stride: usize, padding: Padding) -> Option<(usize, usize)> {
    match padding {
        Padding::Valid => (input >= k).then(|| ((input - k) / stride + 1, 0)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + k).saturating_sub(input);
            Some((out, total / 2))
        }
    }
}

/// The validated geometry of one convolution: everything the `record_*` methods and the
/// params uniform need. All sizes fit in u32 and every pass's dispatch is within limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv2dDims {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub kh: usize,
    pub kw: usize,
    pub cout: usize,
    pub stride: usize,
    pub oh: usize,
    pub ow: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// The three passes of shaders/conv2d.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conv2dPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl Conv2dDims {
    /// Checks an NHWC input shape `x` against an HWIO kernel shape `k` and returns the
    /// geometry, or an error naming `op` and both shapes.
    pub fn new(
        op: &'static str,
        x: &[usize],
        k: &[usize],
        stride: usize,
        padding: Padding,
    ) -> Result<Conv2dDims> {
        if x.len() != 4 || k.len() != 4 {
            return Err(Error::shape(
                op,
                format!(
                    "expects a 4-D NHWC input and a 4-D HWIO kernel, got input {x:?} and kernel {k:?}"
                ),
            ));
        }
        if x.contains(&0) || k.contains(&0) {
            return Err(Error::shape(
                op,
                format!("shapes must have no zero dimension (input {x:?}, kernel {k:?})"),
            ));
        }
        if stride == 0 {
            return Err(Error::arg(op, "stride must be at least 1, got 0"));
        }
        if x[3] != k[2] {
            return Err(Error::shape(
                op,
                format!(
                    "input has {} channels, kernel expects {} (input {x:?}, kernel {k:?})",
                    x[3], k[2]
                ),
            ));
        }
        let (Some((oh, pad_top)), Some((ow, pad_left))) = (
            axis(x[1], k[0], stride, padding),
            axis(x[2], k[1], stride, padding),
        ) else {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {}x{} is larger than the {}x{} input with Padding::Valid (input {x:?}, kernel {k:?})",
                    k[0], k[1], x[1], x[2]
                ),
            ));
        };
        let d = Conv2dDims {
            n: x[0],
            h: x[1],
            w: x[2],
            cin: x[3],
            kh: k[0],
            kw: k[1],
            cout: k[3],
            stride,
            oh,
            ow,
            pad_top,
            pad_left,
        };
        // Coordinates in the shader (positions, strided positions, padded positions, the i32
        // arithmetic of the input gradient) stay below 2^31 when this sum does.
        let reach = (d.h.max(d.w) as u64)
            .saturating_add(d.kh.max(d.kw) as u64)
            .saturating_add((d.shader_stride() as u64).saturating_mul(8));
        if reach > i32::MAX as u64 {
            return Err(Error::Limit {
                op,
                what: format!("the coordinates of input {x:?}, kernel {k:?}, stride {stride}"),
                requested: reach,
                limit: i32::MAX as u64,
            });
        }
        // Every pass launches whole workgroups of 64 invocations in a grid of at most 65,535
        // columns; the invocation id must fit in u32. (Each of n, cin, cout scales some pass's
        // tile count, so this also keeps them, and the tensors' element counts, within u32.)
        let limit = u64::from(u32::MAX) - 65_535 * u64::from(WG);
        for pass in [
            Conv2dPass::Forward,
            Conv2dPass::BackwardInput,
            Conv2dPass::BackwardWeight,
        ] {
            let requested = d.invocations(pass);
            if requested > limit {
                return Err(Error::Limit {
                    op,
                    what: format!(
                        "4x4 tiles of {} (input {x:?}, kernel {k:?}, stride {stride})",
                        pass.entry()
                    ),
                    requested,
                    limit,
                });
            }
        }
        Ok(d)
    }

    /// The NHWC output shape `[n, oh, ow, cout]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.cout]
    }

    /// The NHWC input shape `[n, h, w, cin]`.
    pub fn in_shape(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.cin]
    }

    /// The HWIO kernel shape `[kh, kw, cin, cout]`.
    pub fn kernel_shape(&self) -> [usize; 4] {
        [self.kh, self.kw, self.cin, self.cout]
    }

    /// The stride the shader uses: at most `max(h, w)`. Any stride from there on gives a 1x1
    /// output reading only the window at the origin, so the results are the same, and the
    /// shader's coordinates stay small.
    pub fn shader_stride(&self) -> usize {
        self.stride.min(self.h.max(self.w))
    }

    /// The uniform the shader reads (all sizes were checked to fit in u32).
    pub fn params(&self) -> Conv2dParams {
        let u = |v: usize| v as u32;
        Conv2dParams {
            n: u(self.n),
            h: u(self.h),
            w: u(self.w),
            cin: u(self.cin),
            oh: u(self.oh),
            ow: u(self.ow),
            cout: u(self.cout),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.shader_stride()),
            pad_top: u(self.pad_top),
            pad_left: u(self.pad_left),
            splits: u(self.weight_splits()),
            per_split: u(self.n.div_ceil(self.weight_splits())),
            _pad: [0; 2],
        }
    }

    /// 4x4 tiles of the weight gradient.
    fn weight_tiles(&self) -> u64 {
        ((self.kh as u64)
            .saturating_mul(self.kw as u64)
            .saturating_mul(self.cin as u64)
            .div_ceil(4))
        .saturating_mul(self.cout.div_ceil(4) as u64)
    }

    /// The slices the weight gradient's K (the batch) is cut into: enough that the first
    /// pass has about [`WEIGHT_INVOCATIONS`] invocations, each slice a whole number of
    /// images (`ceil(n / splits)` each, the last one fewer).
    pub fn weight_splits(&self) -> usize {
        let tiles = self.weight_tiles().max(1);
        let want = WEIGHT_INVOCATIONS.div_ceil(tiles).min(self.n as u64).max(1) as usize;
        let per = self.n.div_ceil(want);
        self.n.div_ceil(per)
    }

    /// Elements of the partial sums of a split weight gradient (0 when not split).
    pub fn weight_scratch_len(&self) -> usize {
        match self.weight_splits() {
            1 => 0,
            s => s * self.kh * self.kw * self.cin * self.cout,
        }
    }

    /// Invocations (4x4 tiles) of `pass`, counted exactly as the shader decomposes its id.
    /// Saturates instead of overflowing (then [`Conv2dDims::new`] rejects it).
    pub fn invocations(&self, pass: Conv2dPass) -> u64 {
        let t = |v: usize| v.div_ceil(4) as u64;
        let u = |v: usize| v as u64;
        let prod = |f: &[u64]| f.iter().fold(1u64, |a, &b| a.saturating_mul(b));
        let s = self.shader_stride();
        match pass {
            Conv2dPass::Forward => prod(&[u(self.n), u(self.oh), t(self.ow), t(self.cout)]),
            Conv2dPass::BackwardInput => {
                let classes = s.min(self.w);
                let per_class = self.w.div_ceil(s);
                prod(&[u(self.n), u(self.h), u(classes), t(per_class), t(self.cin)])
            }
            Conv2dPass::BackwardWeight => self
                .weight_tiles()
                .saturating_mul(self.weight_splits() as u64),
        }
    }

    /// The shader variant: `CIN4 * 2 + COUT4`, where `CIN4` / `COUT4` say that `cin` / `cout`
    /// is a multiple of 4 (its channel runs are whole vec4s).
    pub fn variant(&self) -> usize {
        usize::from(self.cin.is_multiple_of(4)) * 2 + usize::from(self.cout.is_multiple_of(4))
    }

    /// Workgroup counts of `pass` (checked against the limits in [`Conv2dDims::new`]).
    fn groups(&self, pass: Conv2dPass) -> [u32; 2] {
        grid(self.invocations(pass).div_ceil(u64::from(WG)) as u32)
    }
}

impl Conv2dPass {
    fn entry(self) -> &'static str {
        match self {
            Conv2dPass::Forward => "conv2d_forward",
            Conv2dPass::BackwardInput => "conv2d_backward_input",
            Conv2dPass::BackwardWeight => "conv2d_backward_weight",
        }
    }
}

/// The NHWC output shape of a convolution of input shape `x` with HWIO kernel shape `k`, or
/// an error naming `op` and the shapes (for the graph planner's shape inference).
#[allow(dead_code)] // the graph planner's shape inference is its user; not merged yet
pub(crate) fn conv2d_out_shape(
    op: &'static str,
    x: &[usize],
    k: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<[usize; 4]> {
    Conv2dDims::new(op, x, k, stride, padding).map(|d| d.out_shape())
}

/// The pipelines of shaders/conv2d.wgsl; all share one layout (params, a, b, out). Each
/// entry point has four variants, indexed by [`Conv2dDims::variant`] (`CIN4 * 2 + COUT4`).
/// On adapters whose subgroups have a fixed 8 or 16 lanes, `subgroup` holds the entry points
/// of shaders/conv2d_subgroup.wgsl, used where [`Conv2d::subgroup_fits`].
pub(crate) struct Conv2d {
    pub family: Family,
    forward: [wgpu::ComputePipeline; 4],
    backward_input: [wgpu::ComputePipeline; 4],
    backward_weight: [wgpu::ComputePipeline; 4],
    backward_weight_reduce: wgpu::ComputePipeline,
    subgroup: Option<[wgpu::ComputePipeline; 3]>,
    /// With 16 lanes, the same entry points with `HALF` (two halves of 8 lanes on their own
    /// rows), for GEMMs of at most 32 columns.
    subgroup_half: Option<[wgpu::ComputePipeline; 3]>,
    /// The subgroup size `subgroup` was compiled for (8 or 16); 8 without it.
    lanes: u32,
    /// The forward with an epilogue, compiled on first use.
    epilogue: OnceLock<Conv2dEpilogue>,
    /// The staged kernels (compiled by `new` on GPU adapters, else on first use).
    staged: OnceLock<Conv2dStaged>,
    /// What [`ConvKernel::Auto`] means: [`DEFAULT_STAGED`] on GPU adapters (device type not
    /// `Cpu`), [`DEFAULT_SUBGROUP`] on CPU ones; tests can set either, or [`DEFAULT_TILE`].
    default: AtomicU8,
}

/// `Conv2d::default`: the staged kernel where [`Conv2d::prefers_staged`], else as
/// [`DEFAULT_SUBGROUP`].
const DEFAULT_STAGED: u8 = 1;
/// `Conv2d::default`: the subgroup kernel where it fits, else the 4x4-tile one.
const DEFAULT_SUBGROUP: u8 = 0;
/// `Conv2d::default`: the 4x4-tile kernel always (tests only).
#[cfg(feature = "testing")]
const DEFAULT_TILE: u8 = 2;

impl Conv2d {
    pub fn new(gpu: &Gpu) -> Result<Conv2d> {
        let family = Family::new(
            gpu,
            "conv2d",
            &SHADER,
            &[Bind::Uniform, Bind::Read, Bind::Read, Bind::Write],
        )?;
        let variants = |entry: &'static str| -> Result<[wgpu::ComputePipeline; 4]> {
            let v = |cin4: f64, cout4: f64| {
                family.pipeline(gpu, entry, &[("CIN4", cin4), ("COUT4", cout4)])
            };
            Ok([v(0.0, 0.0)?, v(0.0, 1.0)?, v(1.0, 0.0)?, v(1.0, 1.0)?])
        };
        let lanes = crate::kernels::subgroup_lanes(gpu);
        // One module for the subgroup entry points; pipelines for SG = lanes, and with 16
        // lanes a second set with HALF.
        let (subgroup, subgroup_half) = match lanes {
            None => (None, None),
            Some(lanes) => {
                let f = family.sibling(gpu, "conv2d_subgroup", &SUBGROUP_SHADER, false)?;
                let pipelines = |half: bool| -> Result<[wgpu::ComputePipeline; 3]> {
                    let consts = [
                        ("SG", f64::from(lanes)),
                        ("HALF", f64::from(u8::from(half))),
                    ];
                    Ok([
                        f.pipeline(gpu, "conv2d_forward_sg", &consts)?,
                        f.pipeline(gpu, "conv2d_backward_input_sg", &consts)?,
                        f.pipeline(gpu, "conv2d_backward_weight_sg", &consts)?,
                    ])
                };
                let half = match lanes {
                    16 => Some(pipelines(true)?),
                    _ => None,
                };
                (Some(pipelines(false)?), half)
            }
        };
        let gpu_adapter = gpu.info().device_type != wgpu::DeviceType::Cpu;
        let conv = Conv2d {
            forward: variants("conv2d_forward")?,
            backward_input: variants("conv2d_backward_input")?,
            backward_weight: variants("conv2d_backward_weight")?,
            backward_weight_reduce: family.pipeline(gpu, "conv2d_backward_weight_reduce", &[])?,
            subgroup,
            subgroup_half,
            lanes: lanes.unwrap_or(8),
            family,
            epilogue: OnceLock::new(),
            staged: OnceLock::new(),
            default: AtomicU8::new(if gpu_adapter {
                DEFAULT_STAGED
            } else {
                DEFAULT_SUBGROUP
            }),
        };
        if gpu_adapter {
            conv.staged(gpu)?;
        }
        Ok(conv)
    }

    /// The kernel `kernel` resolves to for `which` of `dims`.
    fn chosen(&self, dims: &Conv2dDims, which: Conv2dPass, kernel: ConvKernel) -> Chosen<'_> {
        let staged = || match (self.staged.get(), Conv2d::staged_grid(dims, which)) {
            (Some(st), Some(grid)) => Some(Chosen::Staged(st, grid)),
            _ => None,
        };
        let subgroup = || match (&self.subgroup, self.subgroup_shape(dims, which)) {
            (Some(full), Some((grid, half))) => {
                let sg = match (half, &self.subgroup_half) {
                    (true, Some(h)) => h,
                    _ => full,
                };
                Some(Chosen::Subgroup(&sg[pass_index(which)], grid))
            }
            _ => None,
        };
        let pick = match kernel {
            ConvKernel::Tile => None,
            ConvKernel::Subgroup => subgroup(),
            ConvKernel::Staged => staged(),
            ConvKernel::Auto => match self.default.load(Ordering::Relaxed) {
                DEFAULT_STAGED if self.prefers_staged(dims, which) => staged(),
                DEFAULT_STAGED | DEFAULT_SUBGROUP => subgroup(),
                // DEFAULT_TILE (tests).
                _ => None,
            },
        };
        pick.unwrap_or(Chosen::Tile)
    }

    /// Whether the subgroup kernel can run `pass` of `dims`: the adapter has it, both channel
    /// counts are multiples of 4, the input gradient has stride 1, and the workgroup grid
    /// (256 GEMM rows by 32 columns each with 8 lanes or with 16 in halves, 128 by 64 with
    /// 16 side by side; the weight gradient's K slices in z) is within limits.
    #[cfg(feature = "testing")]
    pub fn subgroup_fits(&self, dims: &Conv2dDims, pass: Conv2dPass) -> bool {
        self.subgroup.is_some() && self.subgroup_shape(dims, pass).is_some()
    }

    /// The workgroup grid of the subgroup kernel for `pass`, if the shapes suit it, and
    /// whether it runs in halves (16 lanes, at most 32 GEMM columns).
    fn subgroup_shape(&self, d: &Conv2dDims, pass: Conv2dPass) -> Option<([u32; 3], bool)> {
        if !d.cin.is_multiple_of(4) || !d.cout.is_multiple_of(4) {
            return None;
        }
        let (rows, cols, z) = match pass {
            Conv2dPass::Forward => (d.n * d.oh * d.ow, d.cout, 1),
            Conv2dPass::BackwardInput if d.shader_stride() == 1 => (d.n * d.h * d.w, d.cin, 1),
            Conv2dPass::BackwardWeight => (d.kh * d.kw * d.cin, d.cout, d.weight_splits()),
            _ => return None,
        };
        // Measured on lavapipe at 512 bits: the seed CNN's 32-channel layer runs 1.5-1.7x as
        // fast in halves as with 16 lanes side by side, half of them idle.
        let half = self.subgroup_half.is_some() && cols <= 32;
        let lanes = if half { 8 } else { self.lanes as usize };
        let (gx, gy) = (rows.div_ceil(32 * 64 / lanes), cols.div_ceil(4 * lanes));
        (gx <= 65_535 && gy <= 65_535 && z <= 65_535)
            .then_some(([gx as u32, gy as u32, z as u32], half))
    }

    pub fn get(gpu: &Gpu) -> Result<&Conv2d> {
        get(gpu, &gpu.kernels().conv2d, Conv2d::new)
    }

    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipelines: &[wgpu::ComputePipeline; 4],
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
        which: Conv2dPass,
    ) {
        self.record_with(pass, pipelines, io, dims, which, ConvKernel::Auto)
    }

    /// Records `which` with the kernel `kernel` resolves to.
    fn record_with(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipelines: &[wgpu::ComputePipeline; 4],
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
        which: Conv2dPass,
        kernel: ConvKernel,
    ) {
        let (pipeline, [gx, gy, gz]) = match self.chosen(dims, which, kernel) {
            Chosen::Subgroup(p, grid) => (p, grid),
            Chosen::Staged(st, grid) => (st.pipeline(dims, which), grid),
            Chosen::Tile => {
                let [gx, gy] = dims.groups(which);
                (&pipelines[dims.variant()], [gx, gy, 1])
            }
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(gx, gy, gz);
    }

    /// Records `which` with `kernel` (the bench and the tests pick the kernel).
    pub fn record_pass(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
        which: Conv2dPass,
        kernel: ConvKernel,
    ) {
        let pipelines = match which {
            Conv2dPass::Forward => &self.forward,
            Conv2dPass::BackwardInput => &self.backward_input,
            Conv2dPass::BackwardWeight => &self.backward_weight,
        };
        self.record_with(pass, pipelines, io, dims, which, kernel)
    }

    /// Records `y = conv2d(x, kernel)`; `io` binds (params, x, kernel, y) with params
    /// `dims.params()`.
    pub fn record_forward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
    ) {
        self.record(pass, &self.forward, io, dims, Conv2dPass::Forward);
    }

    /// Records `dx` from `dy`; `io` binds (params, dy, kernel, dx).
    pub fn record_backward_input(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
    ) {
        self.record(
            pass,
            &self.backward_input,
            io,
            dims,
            Conv2dPass::BackwardInput,
        );
    }

    /// The second pass of a split weight gradient ([`Conv2dDims::weight_splits`] > 1): `io`
    /// binds (params, scratch, scratch, dkernel) after [`Conv2d::record_backward_weight`]
    /// bound (params, x, dy, scratch) with a scratch of [`Conv2dDims::weight_scratch_len`].
    pub fn record_backward_weight_reduce(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
    ) {
        let len = (dims.kh * dims.kw * dims.cin * dims.cout) as u32;
        crate::kernels::dispatch_1d(pass, &self.backward_weight_reduce, io, len);
    }

    /// Records `dkernel` from `x` and `dy`; `io` binds (params, x, dy, dkernel), or, when
    /// [`Conv2dDims::weight_splits`] > 1, (params, x, dy, scratch) and the partial sums go
    /// to the scratch for [`Conv2d::record_backward_weight_reduce`].
    pub fn record_backward_weight(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        dims: &Conv2dDims,
    ) {
        self.record(
            pass,
            &self.backward_weight,
            io,
            dims,
            Conv2dPass::BackwardWeight,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv2d_out_shape_follows_keras_and_matches_reference() {
        let x = [2, 28, 28, 1];
        let k = [3, 3, 1, 32];
        let s = |x: &[usize], k: &[usize], st, p| conv2d_out_shape("conv2d", x, k, st, p);
        assert_eq!(s(&x, &k, 1, Padding::Valid).unwrap(), [2, 26, 26, 32]);
        assert_eq!(s(&x, &k, 1, Padding::Same).unwrap(), [2, 28, 28, 32]);
        assert_eq!(s(&x, &k, 2, Padding::Same).unwrap(), [2, 14, 14, 32]);
        assert_eq!(s(&x, &k, 2, Padding::Valid).unwrap(), [2, 13, 13, 32]);
        for h in 1..12 {
            for kk in 1..6 {
                for st in 1..5 {
                    let d = Conv2dDims::new(
                        "conv2d",
                        &[1, h, h, 1],
                        &[kk, kk, 1, 1],
                        st,
                        Padding::Same,
                    )
                    .unwrap();
                    assert_eq!(
                        (d.oh, d.pad_top),
                        crate::reference::same_padding(h, kk, st),
                        "h {h} k {kk} stride {st}"
                    );
                }
            }
        }
    }
}
