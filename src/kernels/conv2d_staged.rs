//! The workgroup-staged variant of the convolution's three passes
//! (shaders/conv2d_staged.wgsl): blocks of the implicit GEMM's operands gathered into
//! workgroup memory, a 4x4 register tile per invocation, the same bits as the 4x4-tile
//! kernel of `super`. Chosen by default on GPU adapters only ([`Conv2d::prefers_staged`]);
//! the tests can set the default per `Gpu` ([`Conv2d::set_default`]).

use std::sync::atomic::Ordering;

#[cfg(feature = "testing")]
use super::{Chosen, ConvKernel, DEFAULT_STAGED, DEFAULT_SUBGROUP, DEFAULT_TILE};
use super::{Conv2d, Conv2dDims, Conv2dPass};
use crate::kernels::shader::{Shader, wgsl};
use crate::{Gpu, Result};

/// shaders/conv2d.wgsl with the staged entry point joined after it.
pub(crate) const STAGED_SHADER: Shader = Shader {
    name: "conv2d_staged",
    parts: &[wgsl!("conv2d.wgsl"), wgsl!("conv2d_staged.wgsl")],
};

/// GEMM rows and columns of one staged workgroup (`ST_ROWS`, `ST_COLS` in the shader).
const BLOCK: usize = 32;

/// GEMM columns (cout, or cin for the input gradient) the default choice wants before it
/// takes the staged kernel: half a workgroup's block.
pub(crate) const MIN_COLUMNS: usize = 16;

/// `conv2d_staged` per pass (forward, input gradient, weight gradient) and per
/// [`Conv2dDims::variant`], over the layout of [`Conv2d`]'s family (so its bind groups fit).
pub(crate) struct Conv2dStaged {
    passes: [[wgpu::ComputePipeline; 4]; 3],
}

/// The index of `pass` in [`Conv2dStaged`] (the shader's `PASS`).
pub(super) fn pass_index(pass: Conv2dPass) -> usize {
    match pass {
        Conv2dPass::Forward => 0,
        Conv2dPass::BackwardInput => 1,
        Conv2dPass::BackwardWeight => 2,
    }
}

impl Conv2dStaged {
    /// The pipeline of `pass` for `dims`.
    pub(super) fn pipeline(&self, dims: &Conv2dDims, pass: Conv2dPass) -> &wgpu::ComputePipeline {
        &self.passes[pass_index(pass)][dims.variant()]
    }
}

impl Conv2d {
    /// The staged pipelines: compiled by [`Conv2d::new`] on GPU adapters, where they are the
    /// default choice, else on first use (a test or bench that asks for them).
    pub fn staged(&self, gpu: &Gpu) -> Result<&Conv2dStaged> {
        if let Some(s) = self.staged.get() {
            return Ok(s);
        }
        let f = self
            .family
            .sibling(gpu, "conv2d_staged", &STAGED_SHADER, false)?;
        let p = |pass: f64, cin4: f64, cout4: f64| {
            f.pipeline(
                gpu,
                "conv2d_staged",
                &[("PASS", pass), ("CIN4", cin4), ("COUT4", cout4)],
            )
        };
        let variants = |pass: f64| -> Result<[wgpu::ComputePipeline; 4]> {
            Ok([
                p(pass, 0.0, 0.0)?,
                p(pass, 0.0, 1.0)?,
                p(pass, 1.0, 0.0)?,
                p(pass, 1.0, 1.0)?,
            ])
        };
        let s = Conv2dStaged {
            passes: [variants(0.0)?, variants(1.0)?, variants(2.0)?],
        };
        let _ = self.staged.set(s);
        Ok(self.staged.get().expect("slot was just filled"))
    }

    /// The workgroup grid of the staged kernel for `pass` (32 GEMM rows by 32 columns per
    /// workgroup, the weight gradient's K slices in z), if within the dispatch limits.
    pub(super) fn staged_grid(d: &Conv2dDims, pass: Conv2dPass) -> Option<[u32; 3]> {
        let (rows, cols, z) = match pass {
            Conv2dPass::Forward => (d.n * d.oh * d.ow, d.cout, 1),
            Conv2dPass::BackwardInput => (d.n * d.h * d.w, d.cin, 1),
            Conv2dPass::BackwardWeight => (d.kh * d.kw * d.cin, d.cout, d.weight_splits()),
        };
        let (gx, gy) = (cols.div_ceil(BLOCK), rows.div_ceil(BLOCK));
        (gx <= 65_535 && gy <= 65_535 && z <= 65_535).then_some([gx as u32, gy as u32, z as u32])
    }

    /// Whether the default choice ([`super::ConvKernel::Auto`]) runs `pass` of `d` on the
    /// staged kernel: on GPU adapters (not on CPU ones: on lavapipe, 2 cores, it ran 1.5 to 12
    /// times slower than the default kernels on the seed CNN's layers at batch 32, as the
    /// staged matmul did, see `Matmul::tune_tiles`), when its grid is within limits, when the
    /// GEMM has at least [`MIN_COLUMNS`] columns (fewer leave most of a workgroup's 32 idle:
    /// the first layer's input gradient, cin 1, ran 12 times slower there), and for the input
    /// gradient at stride 1 only (with stride s, all but 1 / s^2 of its K are zeros).
    pub(super) fn prefers_staged(&self, d: &Conv2dDims, pass: Conv2dPass) -> bool {
        let cols = match pass {
            Conv2dPass::BackwardInput => d.cin,
            _ => d.cout,
        };
        self.default.load(Ordering::Relaxed) == super::DEFAULT_STAGED
            && self.staged.get().is_some()
            && Conv2d::staged_grid(d, pass).is_some()
            && cols >= MIN_COLUMNS
            && (pass != Conv2dPass::BackwardInput || d.shader_stride() == 1)
    }

    /// Sets what [`ConvKernel::Auto`] takes on this `Gpu` from now on: `Staged` as on GPU
    /// adapters (compiling it first if needed), `Subgroup` as on CPU ones, `Tile` the 4x4-tile
    /// kernel always, `Auto` this adapter's own default again.
    #[cfg(feature = "testing")]
    pub fn set_default(&self, gpu: &Gpu, kernel: ConvKernel) -> Result<()> {
        let gpu_adapter = gpu.info().device_type != wgpu::DeviceType::Cpu;
        let mode = match kernel {
            ConvKernel::Staged => DEFAULT_STAGED,
            ConvKernel::Subgroup => DEFAULT_SUBGROUP,
            ConvKernel::Tile => DEFAULT_TILE,
            ConvKernel::Auto if gpu_adapter => DEFAULT_STAGED,
            ConvKernel::Auto => DEFAULT_SUBGROUP,
        };
        if mode == DEFAULT_STAGED {
            self.staged(gpu)?;
        }
        self.default.store(mode, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `kernel` runs `which` of `dims` on the staged kernel.
    #[cfg(feature = "testing")]
    pub fn runs_staged(&self, dims: &Conv2dDims, which: Conv2dPass, kernel: ConvKernel) -> bool {
        matches!(self.chosen(dims, which, kernel), Chosen::Staged(..))
    }
}
