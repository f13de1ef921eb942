//! What wgnn counts on a [`Gpu`]: the work it did ([`ExecStats`], from [`Gpu::counters`])
//! and the wgpu objects alive ([`ObjectCounts`], from [`Gpu::object_counts`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Gpu;

/// Live wgpu objects, from [`Gpu::object_counts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Buffers.
    pub buffers: usize,
    /// Bind groups.
    pub bind_groups: usize,
    /// Command buffers.
    pub command_buffers: usize,
}

/// Counters of the work wgnn did on a [`Gpu`]; tests use them to prove residency claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Command buffers submitted.
    pub submissions: u64,
    /// Buffers created.
    pub buffers_created: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Bytes written from the host to the device.
    pub bytes_uploaded: u64,
    /// Bytes read back from the device to the host.
    pub bytes_read_back: u64,
    /// Bytes of the storage buffers in use: tensors', plans' and resident data sets'. Idle
    /// buffers the pool keeps for reuse are not in it but in [`ExecStats::pooled_bytes`]:
    /// the device holds the sum of the two.
    pub device_bytes: u64,
    /// Bytes of freed tensors' buffers the pool keeps for reuse by later tensors of the same
    /// size (the eager ops' outputs): still held on the device and counted by the memory
    /// budget, released by [`Gpu::release_pool`] and bounded by [`Gpu::set_pool_limit`].
    pub pooled_bytes: u64,
    /// How many buffers [`ExecStats::pooled_bytes`] is.
    pub pooled_buffers: u64,
    /// Times wgnn blocked the calling thread on the device: every `poll(Wait)` (a blocking
    /// readback, the autotuner's timing, an epoch end) and every future it had to block on
    /// (`pollster`), including the adapter and device requests of the blocking
    /// [`Gpu::new`] and its siblings. The async forms ([`Tensor::to_vec_async`],
    /// [`crate::nn::PendingMetrics`]...) and [`crate::nn::Trainer::step`] never add to it.
    ///
    /// [`Tensor::to_vec_async`]: crate::Tensor::to_vec_async
    pub blocking_waits: u64,
    /// Matmul shapes whose variant the autotuner chose by the wall clock, waiting for each
    /// run (the blocking forms, natively: [`crate::nn::Sequential::trainer`], `fit`,
    /// `evaluate`, `predict`...). Each adds to [`ExecStats::blocking_waits`] too.
    pub tuned_by_clock: u64,
    /// Matmul shapes whose variant the autotuner chose from GPU timestamps, read back
    /// without blocking (the async forms: [`crate::nn::Sequential::trainer_async`],
    /// `evaluate_async`, `predict_async`, on an adapter with `TIMESTAMP_QUERY`; without it
    /// they keep the static choice and this stays 0).
    pub tuned_by_timestamps: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub submissions: AtomicU64,
    pub buffers_created: AtomicU64,
    pub bind_groups_created: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub bytes_read_back: AtomicU64,
    pub device_bytes: AtomicU64,
    pub blocking_waits: AtomicU64,
    pub tuned_by_clock: AtomicU64,
    pub tuned_by_timestamps: AtomicU64,
}

impl Gpu {
    /// A snapshot of the work counters.
    pub fn counters(&self) -> ExecStats {
        let c = &self.inner.counters;
        let (pooled_bytes, pooled_buffers) = self.pooled();
        ExecStats {
            submissions: c.submissions.load(Ordering::Relaxed),
            buffers_created: c.buffers_created.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups_created.load(Ordering::Relaxed),
            bytes_uploaded: c.bytes_uploaded.load(Ordering::Relaxed),
            bytes_read_back: c.bytes_read_back.load(Ordering::Relaxed),
            device_bytes: c.device_bytes.load(Ordering::Relaxed),
            pooled_bytes,
            pooled_buffers,
            blocking_waits: c.blocking_waits.load(Ordering::Relaxed),
            tuned_by_clock: c.tuned_by_clock.load(Ordering::Relaxed),
            tuned_by_timestamps: c.tuned_by_timestamps.load(Ordering::Relaxed),
        }
    }

    /// Always `None` in the browser: WebGPU keeps no report of live objects.
    #[cfg(target_arch = "wasm32")]
    pub fn object_counts(&self) -> Option<ObjectCounts> {
        None
    }

    /// Live wgpu objects of this `Gpu`'s instance (buffers, bind groups, command buffers),
    /// from `wgpu::Instance::generate_report`; `None` for a device from [`Gpu::from_wgpu`].
    /// For leak tests: wgpu frees a dropped object when the device is next polled, which
    /// wgnn does at the start of every operation.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn object_counts(&self) -> Option<ObjectCounts> {
        let report = self.inner.instance.as_ref()?.generate_report()?;
        let hub = report.hub_report();
        Some(ObjectCounts {
            buffers: hub.buffers.num_kept_from_user,
            bind_groups: hub.bind_groups.num_kept_from_user,
            command_buffers: hub.command_buffers.num_kept_from_user,
        })
    }
}
