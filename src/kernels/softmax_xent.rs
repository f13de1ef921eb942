//! Entry points of shaders/softmax_xent.wgsl: fused softmax cross-entropy (loss, gradient,
//! accuracy and a label status word) and the row softmax.

use crate::kernels::shader::{Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// shaders/softmax_xent.wgsl on its own.
pub(crate) const SHADER: Shader = Shader {
    name: "softmax_xent",
    parts: &[wgsl!("softmax_xent.wgsl")],
};

/// `FLAG_ACCUMULATE` in the shader: the finalize pass adds to loss, correct and status.
#[allow(
    dead_code,
    reason = "for the executor's epoch totals; eager calls overwrite"
)]
pub(crate) const FLAG_ACCUMULATE: u32 = 1;
/// `FLAG_NO_GRAD` in the shader: the row pass writes no gradient.
pub(crate) const FLAG_NO_GRAD: u32 = 2;

/// Words in the status buffer: bad rows, first bad row, its label, rows checked.
pub(crate) const STATUS_WORDS: usize = 4;

/// Mirrors `SoftmaxXentParams` in shaders/softmax_xent.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SoftmaxXentParams {
    pub rows: u32,
    pub cols: u32,
    pub flags: u32,
    /// The gradient multiplier: `1 / rows` for the mean loss.
    pub scale: f32,
}

impl SoftmaxXentParams {
    /// Params for the mean loss over `rows` rows of `cols` classes.
    pub fn new(rows: u32, cols: u32, flags: u32) -> SoftmaxXentParams {
        SoftmaxXentParams {
            rows,
            cols,
            flags,
            scale: (1.0 / f64::from(rows.max(1))) as f32,
        }
    }
}

/// The pipelines of shaders/softmax_xent.wgsl.
///
/// `family` (loss passes) binds (params, logits, out, labels, row_stats, loss, correct,
/// status); `softmax_family` (inference) binds (params, logits, out).
pub(crate) struct SoftmaxXent {
    pub family: Family,
    pub softmax_family: Family,
    forward: wgpu::ComputePipeline,
    finalize: wgpu::ComputePipeline,
    softmax: wgpu::ComputePipeline,
}

impl SoftmaxXent {
    pub fn new(gpu: &Gpu) -> Result<SoftmaxXent> {
        let family = Family::new(
            gpu,
            "softmax_xent",
            &SHADER,
            &[
                Bind::Uniform,
                Bind::Read,
                Bind::Write,
                Bind::Read,
                Bind::Write,
                Bind::Write,
                Bind::Write,
                Bind::Write,
            ],
        )?;
        // The same source with only the bindings softmax_forward uses, so inference binds
        // three buffers rather than eight.
        let softmax_family = Family::new(
            gpu,
            "softmax",
            &SHADER,
            &[Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        Ok(SoftmaxXent {
            forward: family.pipeline(gpu, "softmax_cross_entropy_forward", &[])?,
            finalize: family.pipeline(gpu, "softmax_cross_entropy_finalize", &[])?,
            softmax: softmax_family.pipeline(gpu, "softmax_forward", &[])?,
            family,
            softmax_family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&SoftmaxXent> {
        get(gpu, &gpu.kernels().softmax_xent, SoftmaxXent::new)
    }

    /// Records the row pass over `rows` rows: per-row losses and hits into `row_stats`, and the
    /// gradient into `out` unless the params carry `FLAG_NO_GRAD`. `io` binds `family`'s eight
    /// buffers.
    pub fn record_forward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        rows: u32,
    ) {
        dispatch_1d(pass, &self.forward, io, rows);
    }

    /// Records the single-invocation pass that sums `row_stats` in a fixed order into `loss`
    /// (mean) and `correct`, and the label check into `status` (overwritten, or added to with
    /// `FLAG_ACCUMULATE`: the executor binds epoch totals, zeroes them at epoch start and reads
    /// them, with [`check_status`], at epoch end; nothing is read back per step).
    pub fn record_finalize(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup) {
        pass.set_pipeline(&self.finalize);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }

    /// Records both passes: the whole loss, gradient, accuracy and label check of a batch.
    pub fn record_loss(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, rows: u32) {
        self.record_forward(pass, io, rows);
        self.record_finalize(pass, io);
    }

    /// Records `out = softmax(logits)` row by row; `io` binds `softmax_family`'s
    /// (params, logits, out).
    pub fn record_softmax(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        rows: u32,
    ) {
        dispatch_1d(pass, &self.softmax, io, rows);
    }
}
