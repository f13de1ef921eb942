//! Storage buffers ([`Buf`]: tensors', plans' and data sets', checked against the limits and
//! the memory budget) and their reuse for the eager ops: idle tensor buffers kept by size,
//! idle uniform buffers, and bind groups kept by layout and buffers, so that an application
//! calling `ops::*` in a loop creates no buffer and no bind group once the loop's sizes have
//! been seen.
//!
//! When the last [`Tensor`](crate::Tensor) holding a buffer drops, the buffer comes here
//! instead of being destroyed (`Buf`'s drop, tensor.rs), and the next tensor of the same
//! rounded size takes it (the most recently given back first). Idle bytes are bounded by
//! [`Gpu::set_pool_limit`] (least recently given back go first), count against the memory
//! budget (released first when an allocation would pass it), are reported as
//! [`ExecStats::pooled_bytes`](crate::ExecStats::pooled_bytes) and released by
//! [`Gpu::release_pool`]. A cached bind group is dropped as soon as one of its buffers is
//! destroyed (evicted, released, or dropped outside the pool), so the cache never keeps a
//! freed buffer alive.
//!
//! Reuse is safe in queue order: a buffer or uniform taken again is written by a queue write
//! or a kernel submitted after every command that used it before.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::{Error, Gpu, Result};

/// The default bound on idle tensor bytes ([`Gpu::set_pool_limit`]): 1 GiB.
pub(crate) const POOL_BYTES: u64 = 1 << 30;

/// The most idle tensor buffers kept, whatever their bytes: a loop of tiny tensors cannot
/// fill the pool with thousands of objects.
const POOL_BUFFERS: usize = 1024;

/// The most idle uniform buffers kept (an eager op holds one or two at a time).
const POOL_UNIFORMS: usize = 64;

/// The most bind groups cached; the least recently used one makes room.
const BIND_GROUPS: usize = 1024;

/// A bind group's key: its layout and its buffers in binding order (both compared by
/// identity; the key's clones keep the ids from being reused while the entry lives).
type BindKey = (wgpu::BindGroupLayout, Vec<wgpu::Buffer>);

/// What the pool holds; one lock for all of it.
pub(crate) struct Pool {
    /// Idle tensor buffers, the least recently given back first.
    idle: Vec<wgpu::Buffer>,
    /// Bytes of `idle`.
    idle_bytes: u64,
    /// The bound on `idle_bytes`.
    limit: u64,
    /// Idle uniform buffers, the least recently given back first.
    uniforms: Vec<wgpu::Buffer>,
    /// Cached bind groups with the tick they were last used at.
    binds: HashMap<BindKey, (wgpu::BindGroup, u64)>,
    /// Counts cache lookups (the least recently used entry has the smallest tick).
    tick: u64,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            idle: Vec::new(),
            idle_bytes: 0,
            limit: POOL_BYTES,
            uniforms: Vec::new(),
            binds: HashMap::new(),
            tick: 0,
        }
    }
}

impl Pool {
    /// Drops the cached bind groups that bind `gone`.
    fn forget(&mut self, gone: &[wgpu::Buffer]) {
        if gone.is_empty() || self.binds.is_empty() {
            return;
        }
        self.binds
            .retain(|(_, buffers), _| !buffers.iter().any(|b| gone.contains(b)));
    }

    /// Evicts the least recently given back idle buffers until `idle_bytes <= bytes` and at
    /// most `count` are left; returns them (to be dropped once the lock is released).
    fn shrink(&mut self, bytes: u64, count: usize) -> Vec<wgpu::Buffer> {
        let mut n = 0;
        let mut left = self.idle_bytes;
        while n < self.idle.len() && (left > bytes || self.idle.len() - n > count) {
            left -= self.idle[n].size();
            n += 1;
        }
        let gone: Vec<wgpu::Buffer> = self.idle.drain(..n).collect();
        self.idle_bytes = left;
        self.forget(&gone);
        gone
    }
}

/// A uniform buffer from the pool, holding one eager call's parameters; given back to the
/// pool when dropped (after the call's submission).
pub(crate) struct PooledUniform {
    gpu: Gpu,
    buffer: wgpu::Buffer,
}

impl std::ops::Deref for PooledUniform {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for PooledUniform {
    fn drop(&mut self) {
        let gpu = &self.gpu;
        if gpu.lost_error("uniform").is_err() {
            gpu.with_pool(|p| p.forget(std::slice::from_ref(&self.buffer)));
            return;
        }
        let gone = gpu.with_pool(|p| {
            p.uniforms.push(self.buffer.clone());
            let extra = p.uniforms.len().saturating_sub(POOL_UNIFORMS);
            let gone: Vec<wgpu::Buffer> = p.uniforms.drain(..extra).collect();
            p.forget(&gone);
            gone
        });
        drop(gone);
    }
}

impl Gpu {
    /// Runs `f` on the pool under its lock (a poisoned lock is taken over: the pool holds no
    /// invariant a panic could break beyond a stale count).
    fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        let mut pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut pool)
    }

    /// An idle tensor buffer of exactly `size` bytes, the most recently given back, if any.
    pub(crate) fn take_idle(&self, size: u64) -> Option<wgpu::Buffer> {
        self.with_pool(|p| {
            let i = p.idle.iter().rposition(|b| b.size() == size)?;
            p.idle_bytes -= size;
            Some(p.idle.remove(i))
        })
    }

    /// Takes back the buffer of a dropped tensor: kept idle unless the device is lost or it
    /// is larger than the whole pool, the least recently given back making room.
    pub(crate) fn give_back_idle(&self, buffer: wgpu::Buffer) {
        let lost = self.lost_error("Tensor drop").is_err();
        let gone = self.with_pool(|p| {
            if lost || buffer.size() > p.limit {
                p.forget(std::slice::from_ref(&buffer));
                return vec![buffer];
            }
            p.idle_bytes += buffer.size();
            p.idle.push(buffer);
            p.shrink(p.limit, POOL_BUFFERS)
        });
        drop(gone);
    }

    /// Drops the cached bind groups of `buffer`, which is being destroyed.
    pub(crate) fn forget_buffer(&self, buffer: &wgpu::Buffer) {
        self.with_pool(|p| p.forget(std::slice::from_ref(buffer)));
    }

    /// Releases idle buffers, the least recently given back first, until at most `bytes`
    /// are idle; returns the idle bytes left.
    pub(crate) fn trim_pool(&self, bytes: u64) -> u64 {
        let (gone, left) = self.with_pool(|p| {
            let gone = p.shrink(bytes, POOL_BUFFERS);
            (gone, p.idle_bytes)
        });
        drop(gone);
        left
    }

    /// (bytes, buffers) idle in the pool.
    pub(crate) fn pooled(&self) -> (u64, u64) {
        self.with_pool(|p| (p.idle_bytes, p.idle.len() as u64))
    }

    /// Destroys every idle buffer the pool keeps (tensor buffers and uniforms) and every
    /// cached bind group, giving their memory back to the device; the next eager calls
    /// create buffers and bind groups again. Tensors still alive are untouched.
    /// [`ExecStats::pooled_bytes`](crate::ExecStats::pooled_bytes) is 0 afterwards.
    pub fn release_pool(&self) {
        let gone = self.with_pool(|p| {
            p.idle_bytes = 0;
            p.binds.clear();
            let mut gone = std::mem::take(&mut p.idle);
            gone.append(&mut p.uniforms);
            gone
        });
        drop(gone);
    }

    /// Bounds the bytes of idle tensor buffers the pool keeps for reuse (1 GiB by default):
    /// `Some(0)` keeps none (every dropped tensor's buffer is destroyed at once), `None`
    /// restores the default. Lowering it releases the least recently freed buffers now. The
    /// pool also keeps at most 1,024 idle buffers, and a memory budget
    /// ([`Gpu::set_memory_budget`]) counts idle bytes: an allocation that would pass it
    /// releases idle buffers first.
    pub fn set_pool_limit(&self, bytes: Option<u64>) {
        let limit = bytes.unwrap_or(POOL_BYTES);
        let gone = self.with_pool(|p| {
            p.limit = limit;
            p.shrink(limit, POOL_BUFFERS)
        });
        drop(gone);
    }

    /// A uniform buffer holding `bytes` from the pool (one of exactly that size given back
    /// earlier, else a new counted one), given back when the guard drops. For eager calls
    /// only: the guard must outlive the call's submission and nothing may keep the buffer.
    pub(crate) fn pooled_uniform(&self, label: &str, bytes: &[u8]) -> PooledUniform {
        let size = bytes.len() as u64;
        let idle = self.with_pool(|p| {
            let i = p.uniforms.iter().rposition(|b| b.size() == size)?;
            Some(p.uniforms.remove(i))
        });
        let buffer = match idle {
            Some(b) => {
                self.upload(&b, 0, bytes);
                b
            }
            None => self.counted_buffer_with(label, wgpu::BufferUsages::UNIFORM, bytes),
        };
        PooledUniform {
            gpu: self.clone(),
            buffer,
        }
    }

    /// The cached bind group of `layout` over `buffers` (binding order), else the one `make`
    /// creates, cached. For eager calls: the buffers must be tensors' buffers, pooled
    /// uniforms or wgnn's permanent ones, whose destruction drops the entry.
    pub(crate) fn cached_bind_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
        make: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        let key: BindKey = (layout.clone(), buffers.iter().map(|&b| b.clone()).collect());
        let hit = self.with_pool(|p| {
            p.tick += 1;
            let tick = p.tick;
            p.binds.get_mut(&key).map(|(group, used)| {
                *used = tick;
                group.clone()
            })
        });
        if let Some(group) = hit {
            return group;
        }
        let group = make();
        self.with_pool(|p| {
            if p.binds.len() >= BIND_GROUPS
                && let Some(oldest) = p
                    .binds
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
            {
                p.binds.remove(&oldest);
            }
            let tick = p.tick;
            p.binds.insert(key, (group.clone(), tick));
        });
        group
    }

    /// Fills `buffer` with zeros on the device (one counted submission): a tensor of zeros
    /// that reuses an idle buffer.
    pub(crate) fn zero_fill(&self, op: &'static str, buffer: &wgpu::Buffer) -> crate::Result<()> {
        self.scoped(op, || {
            let mut enc = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            enc.clear_buffer(buffer, 0, None);
            self.submit(enc.finish());
        })
    }
}

/// A device buffer that gives its bytes back to the counters when dropped: a tensor's buffer
/// then goes to the [`Gpu`]'s pool for reuse, any other is destroyed.
pub(crate) struct Buf {
    pub buffer: wgpu::Buffer,
    gpu: Gpu,
    /// Whether the buffer goes to the pool when dropped ([`Gpu::tensor_storage`]'s).
    pooled: bool,
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.gpu
            .inner
            .counters
            .device_bytes
            .fetch_sub(self.buffer.size(), Ordering::Relaxed);
        if self.pooled {
            self.gpu.give_back_idle(self.buffer.clone());
        } else {
            self.gpu.forget_buffer(&self.buffer);
        }
    }
}

impl Gpu {
    /// Creates a storage buffer of `bytes` bytes (rounded up to 16, so every kernel may read
    /// and write whole `vec4`s), checked against the device's limits first. Its contents are
    /// zeros and it is destroyed when dropped (plans' and data sets' buffers).
    pub(crate) fn storage(&self, op: &'static str, label: &str, bytes: u64) -> Result<Arc<Buf>> {
        self.new_storage(op, label, bytes, false)
    }

    /// A tensor's storage buffer of `bytes` bytes (rounded up to 16): an idle one of that
    /// size from the pool if there is one, else a new one (zeros), checked as
    /// [`Gpu::storage`]; either way it goes back to the pool when dropped. The bool says
    /// whether it was reused: then it holds an earlier tensor's data, which the caller
    /// overwrites (or poisons) before any kernel reads it.
    pub(crate) fn tensor_storage(
        &self,
        op: &'static str,
        label: &str,
        bytes: u64,
    ) -> Result<(Arc<Buf>, bool)> {
        self.check_alive(op)?;
        let size = self.storage_size(op, label, bytes)?;
        if let Some(buffer) = self.take_idle(size) {
            self.inner
                .counters
                .device_bytes
                .fetch_add(size, Ordering::Relaxed);
            let buf = Buf {
                buffer,
                gpu: self.clone(),
                pooled: true,
            };
            return Ok((Arc::new(buf), true));
        }
        Ok((self.new_storage(op, label, bytes, true)?, false))
    }

    /// `bytes` rounded up to 16, or an error when that is over the device's limits.
    fn storage_size(&self, op: &'static str, label: &str, bytes: u64) -> Result<u64> {
        let size = bytes.div_ceil(16).max(1) * 16;
        let limits = &self.info().limits;
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if size > limit {
            return Err(Error::Limit {
                op,
                what: format!("a storage buffer ({label}) of bytes"),
                requested: bytes,
                limit,
            });
        }
        Ok(size)
    }

    /// A new storage buffer, checked against the limits and the memory budget (which counts
    /// idle pooled bytes, released first when needed).
    fn new_storage(
        &self,
        op: &'static str,
        label: &str,
        bytes: u64,
        pooled: bool,
    ) -> Result<Arc<Buf>> {
        self.check_alive(op)?;
        let size = self.storage_size(op, label, bytes)?;
        let budget = self.inner.budget.load(Ordering::Relaxed);
        let live = self.inner.counters.device_bytes.load(Ordering::Relaxed);
        let mut idle = self.pooled().0;
        if live.saturating_add(idle).saturating_add(size) > budget {
            idle = self.trim_pool(budget.saturating_sub(live.saturating_add(size)));
        }
        let in_use = live + idle;
        if in_use.saturating_add(size) > budget {
            return Err(Error::OutOfMemory {
                op,
                requested: size,
                budget,
                in_use,
            });
        }
        let buffer = self.scoped(op, || {
            self.counted_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.inner
            .counters
            .device_bytes
            .fetch_add(size, Ordering::Relaxed);
        Ok(Arc::new(Buf {
            buffer,
            gpu: self.clone(),
            pooled,
        }))
    }
}
