//! Entry points of shaders/data.wgsl: batch gather and metric accumulation.

use crate::kernels::shader::{FINITE, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// shaders/data.wgsl after the step and the non-finite check.
pub(crate) const SHADER: Shader = Shader {
    name: "data",
    parts: &[STEP, FINITE, wgsl!("data.wgsl")],
};

/// Mirrors `DataParams` in shaders/data.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DataParams {
    pub rows: u32,
    pub image_len: u32,
    pub scale: f32,
    pub per_chunk: u32,
}

/// Gradients one `check_finite` dispatch covers (bindings 14-19 of shaders/data.wgsl).
pub(crate) const FINITE_SEGMENTS: usize = 6;

/// The most invocations of one `check_finite` dispatch; each strides over the range.
const FINITE_INVOCATIONS: u32 = 64 * 64;

/// Mirrors `FiniteParams` in shaders/data.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FiniteParams {
    /// Elements in each segment.
    pub lens: [u32; 8],
    /// status[1]'s code for each segment: `finite_code(parameter)`.
    pub codes: [u32; 8],
}

/// What status[1] holds after a non-finite loss.
pub(crate) const LOSS_CODE: u32 = u32::MAX;

/// What status[1] holds after a non-finite gradient of parameter `p` (larger for lower p,
/// so an atomic max keeps the lowest).
pub(crate) fn finite_code(p: usize) -> u32 {
    u32::MAX - 1 - p as u32
}

impl FiniteParams {
    /// The check of `segments`, each (elements, parameter index), at most
    /// [`FINITE_SEGMENTS`]; returns the params and the largest segment's vec4 count (each
    /// invocation strides over every segment, so more would find nothing to do).
    pub fn new(segments: &[(u32, usize)]) -> (FiniteParams, u32) {
        let mut f = FiniteParams::default();
        let mut most = 0u32;
        for (k, &(len, p)) in segments.iter().take(FINITE_SEGMENTS).enumerate() {
            most = most.max(len.div_ceil(4));
            f.lens[k] = len;
            f.codes[k] = finite_code(p);
        }
        (f, most)
    }
}

/// The pipelines of shaders/data.wgsl.
pub(crate) struct Data {
    /// (params, step, pixels, labels, perm, x, y, pixels1, pixels2, pixels3).
    pub gather_family: Family,
    /// (params, step, -, -, -, -, -, loss, correct, acc, status): bindings 2-6 unused.
    pub metrics_family: Family,
    /// (params, step, status, grad x 6): bindings 0, 1, 10, 14-19.
    pub finite_family: Family,
    /// (params, x): bindings 0 and 5 (the tests' spinning kernel).
    #[cfg(feature = "testing")]
    pub spin_family: Family,
    gather: wgpu::ComputePipeline,
    metrics: wgpu::ComputePipeline,
    tally: wgpu::ComputePipeline,
    #[cfg(feature = "testing")]
    spin: wgpu::ComputePipeline,
    finite: wgpu::ComputePipeline,
}

impl Data {
    pub fn new(gpu: &Gpu) -> Result<Data> {
        use Bind::*;
        let gather_family = Family::new_sparse(
            gpu,
            "gather",
            &SHADER,
            &[
                (0, Uniform),
                (1, Uniform),
                (2, Read),
                (3, Read),
                (4, Read),
                (5, Write),
                (6, Write),
                (11, Read),
                (12, Read),
                (13, Read),
            ],
        )?;
        let metrics_family = Family::new_sparse(
            gpu,
            "metrics",
            &SHADER,
            &[
                (0, Uniform),
                (1, Uniform),
                (7, Read),
                (8, Read),
                (9, Write),
                (10, Write),
            ],
        )?;
        let finite_family = Family::new_sparse(
            gpu,
            "check_finite",
            &SHADER,
            &[
                (0, Uniform),
                (1, Uniform),
                (10, Write),
                (14, Read),
                (15, Read),
                (16, Read),
                (17, Read),
                (18, Read),
                (19, Read),
            ],
        )?;
        #[cfg(feature = "testing")]
        let spin_family = Family::new_sparse(gpu, "spin", &SHADER, &[(0, Uniform), (5, Write)])?;
        Ok(Data {
            #[cfg(feature = "testing")]
            spin: spin_family.pipeline(gpu, "spin", &[])?,
            tally: metrics_family.pipeline(gpu, "tally_skipped", &[])?,
            #[cfg(feature = "testing")]
            spin_family,
            finite: finite_family.pipeline(gpu, "check_finite", &[])?,
            finite_family,
            gather: gather_family.pipeline(gpu, "gather_forward", &[])?,
            metrics: metrics_family.pipeline(gpu, "metrics_accumulate", &[])?,
            gather_family,
            metrics_family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Data> {
        get(gpu, &gpu.kernels().data, Data::new)
    }

    /// Records the gather of `rows * image_len` elements.
    pub fn record_gather(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        elements: u32,
    ) {
        dispatch_1d(pass, &self.gather, io, elements.div_ceil(4));
    }

    /// Records the count of a skipped step; `io` is the metrics bind group.
    pub fn record_tally(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup) {
        pass.set_pipeline(&self.tally);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }

    /// Records the spinning test kernel.
    #[cfg(feature = "testing")]
    pub fn record_spin(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, groups: u32) {
        pass.set_pipeline(&self.spin);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }

    /// Records the finiteness check of up to [`FINITE_SEGMENTS`] gradients, the largest
    /// `vec4s` long.
    pub fn record_check_finite(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        vec4s: u32,
    ) {
        dispatch_1d(pass, &self.finite, io, vec4s.min(FINITE_INVOCATIONS));
    }

    /// Records one accumulation of the step's loss and correct count.
    pub fn record_metrics(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup) {
        pass.set_pipeline(&self.metrics);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
}
