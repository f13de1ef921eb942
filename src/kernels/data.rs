//! Entry points of shaders/data.wgsl: batch gather and metric accumulation.

use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/data.wgsl")
);

/// Mirrors `DataParams` in shaders/data.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DataParams {
    pub rows: u32,
    pub image_len: u32,
    pub scale: f32,
    pub per_chunk: u32,
}

/// Mirrors `Step` in shaders/philox.wgsl: the one per-step host write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StepUniform {
    pub step: u32,
    pub batch_start: u32,
    /// Test hook for the non-finite stop: 1 makes the loss NaN, 2 the first checked gradient.
    pub poison: u32,
    pub _pad: u32,
}

/// The pipelines of shaders/data.wgsl.
pub(crate) struct Data {
    /// (params, step, pixels, labels, perm, x, y, pixels1, pixels2, pixels3).
    pub gather_family: Family,
    /// (params, step, -, -, -, -, -, loss, correct, acc, status): bindings 2-6 unused.
    pub metrics_family: Family,
    /// (params, step, status, grad): bindings 0, 1, 10, 14.
    pub finite_family: Family,
    /// (params, x): bindings 0 and 5.
    pub spin_family: Family,
    gather: wgpu::ComputePipeline,
    metrics: wgpu::ComputePipeline,
    tally: wgpu::ComputePipeline,
    spin: wgpu::ComputePipeline,
    finite: wgpu::ComputePipeline,
}

impl Data {
    pub fn new(gpu: &Gpu) -> Result<Data> {
        use Bind::*;
        let gather_family = Family::new_sparse(
            gpu,
            "gather",
            SOURCE,
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
            SOURCE,
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
            SOURCE,
            &[(0, Uniform), (1, Uniform), (10, Write), (14, Read)],
        )?;
        let spin_family = Family::new_sparse(gpu, "spin", SOURCE, &[(0, Uniform), (5, Write)])?;
        Ok(Data {
            spin: spin_family.pipeline(gpu, "spin", &[])?,
            tally: metrics_family.pipeline(gpu, "tally_skipped", &[])?,
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
    pub fn record_spin(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, groups: u32) {
        pass.set_pipeline(&self.spin);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }

    /// Records the finiteness check of a gradient of `len` elements.
    pub fn record_check_finite(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        dispatch_1d(pass, &self.finite, io, len.div_ceil(4));
    }

    /// Records one accumulation of the step's loss and correct count.
    pub fn record_metrics(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup) {
        pass.set_pipeline(&self.metrics);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
}

/// Runs `groups` (at most 65,535) workgroups of 64 invocations, each `iterations` dependent
/// steps long, and returns the 4-element output without waiting: a long-running kernel for
/// the tests of wait timeouts.
///
/// # Errors
/// On device errors.
#[doc(hidden)]
pub fn spin(gpu: &Gpu, groups: u32, iterations: u32) -> Result<crate::Tensor> {
    let op = "spin";
    let k = Data::get(gpu)?;
    let out = crate::Tensor::empty(gpu, op, &[4], crate::DType::F32)?;
    let p = DataParams {
        rows: iterations,
        image_len: groups,
        scale: 0.5,
        per_chunk: 1,
    };
    let params = crate::kernels::uniform(gpu, op, &p);
    let io = k.spin_family.bind(gpu, &[&params, out.buffer()]);
    crate::kernels::run(gpu, op, |pass| {
        k.record_spin(pass, &io, groups.clamp(1, 65_535))
    })?;
    Ok(out)
}
