//! Entry points of shaders/batchnorm.wgsl: batch normalization over the last axis, as Keras'
//! `BatchNormalization(axis=-1)` computes it (training statistics, inference with moving
//! statistics, the backward, the moving-average update).

use crate::kernels::shader::{STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Gpu, Result};

/// shaders/batchnorm.wgsl after the step (the moving-statistics update binds it).
pub(crate) const SHADER: Shader = Shader {
    name: "batchnorm",
    parts: &[STEP, wgsl!("batchnorm.wgsl")],
};

/// Rows per chunk of the partial statistics passes: each (chunk, channel group) pair is one
/// invocation (a group is 4 channels when `channels % 4 == 0`, else 1), so large batches
/// spread over many workgroups while every chunk stays a short f32 sum. It is a params field,
/// so a faster choice for many-core GPUs (smaller chunks) needs no shader change.
pub(crate) const CHUNK_ROWS: u32 = 256;

/// Mirrors `BatchNormParams` in shaders/batchnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BatchNormParams {
    pub rows: u32,
    pub channels: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub len: u32,
    pub epsilon: f32,
    pub momentum: f32,
    pub _pad: u32,
}

impl BatchNormParams {
    /// Params for `rows` x `channels` (`rows * channels` fits in u32, both >= 1).
    pub fn new(rows: u32, channels: u32, epsilon: f32, momentum: f32) -> BatchNormParams {
        BatchNormParams {
            rows,
            channels,
            chunk: CHUNK_ROWS,
            chunks: rows.div_ceil(CHUNK_ROWS),
            len: rows * channels,
            epsilon,
            momentum,
            _pad: 0,
        }
    }

    /// Elements of the scratch buffer the partial passes write: two per (chunk, channel).
    pub fn partial_len(&self) -> usize {
        2 * self.chunks as usize * self.channels as usize
    }
}

/// The pipelines of shaders/batchnorm.wgsl and its four bind group layouts:
///
/// - `partial_family`: (params, x, dy, mean, inv_std, partial);
/// - `reduce_family`: (params, partial, out_a, out_b);
/// - `apply_family`: (params, x, dy, gamma, shift, center, spread, dgamma, out);
/// - `moving_family`: (params, mean, inv_std, moving_mean, moving_var, step, status).
///
/// Bindings an entry point does not use may hold any buffer of the right access (eager calls
/// repeat `x`). Every entry point but the moving update has two pipelines, indexed by
/// `channels % 4 == 0` (the `ALIGNED` override: one vec4 per 4 channels).
pub(crate) struct BatchNorm {
    pub partial_family: Family,
    pub reduce_family: Family,
    pub apply_family: Family,
    pub moving_family: Family,
    partial_moments: [wgpu::ComputePipeline; 2],
    partial_grads: [wgpu::ComputePipeline; 2],
    reduce_moments: [wgpu::ComputePipeline; 2],
    reduce_grads: [wgpu::ComputePipeline; 2],
    forward: [wgpu::ComputePipeline; 2],
    inference: [wgpu::ComputePipeline; 2],
    backward: [wgpu::ComputePipeline; 2],
    update_moving: wgpu::ComputePipeline,
}

/// Index into the pipeline pairs, and the invocations per row of the statistics passes.
fn variant(p: &BatchNormParams) -> (usize, u32) {
    if p.channels.is_multiple_of(4) {
        (1, p.channels / 4)
    } else {
        (0, p.channels)
    }
}

impl BatchNorm {
    pub fn new(gpu: &Gpu) -> Result<BatchNorm> {
        use Bind::{Read as R, Uniform as U, Write as W};
        let partial_family = Family::new(gpu, "batchnorm_partial", &SHADER, &[U, R, R, R, R, W])?;
        let reduce_family = Family::new(gpu, "batchnorm_reduce", &SHADER, &[U, R, W, W])?;
        let apply_family = Family::new(
            gpu,
            "batchnorm_apply",
            &SHADER,
            &[U, R, R, R, R, R, R, R, W],
        )?;
        let moving_family = Family::new_sparse(
            gpu,
            "batchnorm_moving",
            &SHADER,
            &[(0, U), (1, R), (2, R), (3, W), (4, W), (9, U), (10, R)],
        )?;
        let pair = |f: &Family, entry: &'static str| -> Result<[wgpu::ComputePipeline; 2]> {
            Ok([
                f.pipeline(gpu, entry, &[("ALIGNED", 0.0)])?,
                f.pipeline(gpu, entry, &[("ALIGNED", 1.0)])?,
            ])
        };
        Ok(BatchNorm {
            partial_moments: pair(&partial_family, "batch_norm_partial_moments")?,
            partial_grads: pair(&partial_family, "batch_norm_partial_grads")?,
            reduce_moments: pair(&reduce_family, "batch_norm_reduce_moments")?,
            reduce_grads: pair(&reduce_family, "batch_norm_reduce_grads")?,
            forward: pair(&apply_family, "batch_norm_forward")?,
            inference: pair(&apply_family, "batch_norm_inference")?,
            backward: pair(&apply_family, "batch_norm_backward")?,
            update_moving: moving_family.pipeline(gpu, "batch_norm_update_moving", &[])?,
            partial_family,
            reduce_family,
            apply_family,
            moving_family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&BatchNorm> {
        get(gpu, &gpu.kernels().batchnorm, BatchNorm::new)
    }

    /// Records the per-(chunk, channel) moments of `x`; `io` (partial layout) binds
    /// (params, x, -, -, -, partial).
    pub fn record_partial_moments(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        let (v, groups) = variant(p);
        dispatch_1d(pass, &self.partial_moments[v], io, p.chunks * groups);
    }

    /// Records the per-(chunk, channel) gradient sums; `io` (partial layout) binds
    /// (params, x, dy, mean, inv_std, partial).
    pub fn record_partial_grads(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        let (v, groups) = variant(p);
        dispatch_1d(pass, &self.partial_grads[v], io, p.chunks * groups);
    }

    /// Records mean and inv_std from the partial moments; `io` (reduce layout) binds
    /// (params, partial, mean, inv_std).
    pub fn record_reduce_moments(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        let (v, groups) = variant(p);
        dispatch_1d(pass, &self.reduce_moments[v], io, groups);
    }

    /// Records dgamma and dbeta from the partial sums; `io` (reduce layout) binds
    /// (params, partial, dgamma, dbeta).
    pub fn record_reduce_grads(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        let (v, groups) = variant(p);
        dispatch_1d(pass, &self.reduce_grads[v], io, groups);
    }

    /// Records `y` from batch statistics; `io` (apply layout) binds
    /// (params, x, -, gamma, beta, mean, inv_std, -, y).
    pub fn record_forward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        dispatch_1d(pass, &self.forward[variant(p).0], io, p.len.div_ceil(4));
    }

    /// Records `y` from moving statistics; `io` (apply layout) binds
    /// (params, x, -, gamma, beta, moving_mean, moving_var, -, y).
    pub fn record_inference(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        dispatch_1d(pass, &self.inference[variant(p).0], io, p.len.div_ceil(4));
    }

    /// Records `dx`; `io` (apply layout) binds
    /// (params, x, dy, gamma, dbeta, mean, inv_std, dgamma, dx).
    pub fn record_backward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        dispatch_1d(pass, &self.backward[variant(p).0], io, p.len.div_ceil(4));
    }

    /// Records the moving-average update; `io` (moving layout) binds
    /// (params, mean, inv_std, moving_mean, moving_var, step, status).
    pub fn record_update_moving(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &BatchNormParams,
    ) {
        dispatch_1d(pass, &self.update_moving, io, p.channels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_params_chunks() {
        let p = BatchNormParams::new(257, 3, 1e-3, 0.99);
        assert_eq!((p.chunks, p.len, p.partial_len()), (2, 771, 12));
        let p = BatchNormParams::new(1, 33, 1e-3, 0.99);
        assert_eq!((p.chunks, p.len, p.partial_len()), (1, 33, 66));
    }
}
