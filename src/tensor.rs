//! `Tensor`: a GPU buffer with a shape and an element type.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

pub(crate) use crate::gpu::Buf;
use crate::{Error, Gpu, Result};

/// The element type of a tensor. Both are 4 bytes wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: activations, weights, gradients.
    F32,
    /// 32-bit unsigned integer: class labels, counts.
    U32,
}

impl Gpu {
    /// Writes `bytes` at the start of `buffer` and counts them.
    pub(crate) fn upload(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        self.inner
            .counters
            .bytes_uploaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.queue().write_buffer(buffer, offset, bytes);
    }

    /// Copies `bytes` bytes from the start of `buffer` to the host, blocking until done: the
    /// native wrapper over [`Gpu::readback`]. Waits for the device before it submits its
    /// copy: some drivers (lavapipe) block in the submit itself while earlier work runs,
    /// where no timeout applies.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn download(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        self.check_alive(op)?;
        self.wait_idle(op)?;
        let mut parts = self.block_on(op, self.readback(op, &[(buffer, bytes)]))?;
        Ok(parts.pop().unwrap_or_default())
    }

    /// In a browser nothing may block: wgnn's blocking paths that have no async form yet
    /// (`Trainer::end_epoch`, `Sequential::weights`, the eager `ops::softmax_xent`...) fail
    /// here, naming the async forms to use.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn download(
        &self,
        op: &'static str,
        _buffer: &wgpu::Buffer,
        _bytes: u64,
    ) -> Result<Vec<u8>> {
        Err(Error::arg(
            op,
            "a blocking readback cannot run in a browser; use the async forms \
             (Tensor::to_vec_async, Sequential::evaluate_async / predict_async, \
             Trainer::request_metrics)",
        ))
    }

    /// Starts a readback of the first `bytes` bytes of each buffer in `parts`, concatenated
    /// (each rounded up to 4 bytes): records the copies into one staging buffer, submits them
    /// and asks for the mapping. Never waits: the returned [`Readback`] resolves once the GPU
    /// is done. Its contents are those of the buffers at this point in queue order.
    pub(crate) fn readback(&self, op: &'static str, parts: &[(&wgpu::Buffer, u64)]) -> Readback {
        let state = Arc::new(Mutex::new(MapState::default()));
        let mut rb = Readback {
            gpu: self.clone(),
            op,
            staging: None,
            lens: parts.iter().map(|&(_, n)| n).collect(),
            state: state.clone(),
            failed: None,
        };
        if let Err(e) = self.check_alive(op) {
            rb.failed = Some(e);
            return rb;
        }
        let size: u64 = parts.iter().map(|&(_, n)| n.div_ceil(4) * 4).sum();
        let staging = self.take_staging(size.max(4));
        let submitted = self.scoped(op, || {
            let mut enc = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            let mut at = 0;
            for &(buffer, n) in parts {
                let n = n.div_ceil(4) * 4;
                enc.copy_buffer_to_buffer(buffer, 0, &staging, at, n);
                at += n;
            }
            self.submit(enc.finish());
        });
        if let Err(e) = submitted {
            rb.failed = Some(e);
            return rb;
        }
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            if let Ok(mut s) = state.lock() {
                s.done = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        rb.staging = Some(staging);
        rb
    }

    /// An idle readback staging buffer of exactly `size` bytes from the pool, else a new
    /// (counted) one. Reuse makes repeated readbacks of the same tensors (`end_epoch`'s
    /// metrics and host copy of the weights) create no buffer after the first time.
    fn take_staging(&self, size: u64) -> wgpu::Buffer {
        if let Ok(mut pool) = self.inner.staging.lock()
            && let Some(i) = pool.iter().position(|b| b.size() == size)
        {
            return pool.remove(i);
        }
        self.counted_buffer(&wgpu::BufferDescriptor {
            label: Some("wgnn readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Returns an unmapped staging buffer to the pool, the most recently used last. When
    /// the pool would then hold more than [`STAGING_POOL_BYTES`], the least recently used
    /// buffers are dropped to make room (a buffer larger than the whole pool is dropped
    /// itself), so a training loop's readbacks keep their buffers even after one-off large
    /// readbacks filled the pool. Only a readback that succeeded gives its buffer back; a
    /// failed one drops it (it may still be mapped or pending).
    fn give_back_staging(&self, staging: wgpu::Buffer) {
        if staging.size() > STAGING_POOL_BYTES {
            return;
        }
        if let Ok(mut pool) = self.inner.staging.lock() {
            let mut held: u64 = pool.iter().map(wgpu::Buffer::size).sum();
            while held + staging.size() > STAGING_POOL_BYTES && !pool.is_empty() {
                held -= pool.remove(0).size();
            }
            pool.push(staging);
        }
    }
}

/// The first part of a readback's bytes.
pub(crate) fn first(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.truncate(1);
    parts.pop().unwrap_or_default()
}

/// Where a readback's mapping stands: set by wgpu's `map_async` callback.
#[derive(Default)]
pub(crate) struct MapState {
    done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// A readback in flight (from [`Gpu::readback`]): a future of the bytes that never blocks,
/// and [`Readback::try_take`] for a frame loop. Natively nothing polls the device by itself,
/// so each poll of the future (and each `try_take`) polls it once without waiting
/// (`PollType::Poll`) and a pending future wakes itself to be polled again; in a browser
/// the page's event loop runs the mapping callback, which wakes the future.
pub(crate) struct Readback {
    gpu: Gpu,
    op: &'static str,
    staging: Option<wgpu::Buffer>,
    lens: Vec<u64>,
    state: Arc<Mutex<MapState>>,
    /// An error met while starting, given at the first poll.
    failed: Option<Error>,
}

impl Readback {
    /// A readback that fails with `e` when polled.
    pub(crate) fn failed(gpu: &Gpu, op: &'static str, e: Error) -> Readback {
        Readback {
            gpu: gpu.clone(),
            op,
            staging: None,
            lens: Vec::new(),
            state: Arc::default(),
            failed: Some(e),
        }
    }

    /// The bytes of each part, once the GPU is done; `None` until then (it polls the device
    /// once, without waiting). After it has returned `Some`, it returns an error.
    pub(crate) fn try_take(&mut self) -> Option<Result<Vec<Vec<u8>>>> {
        let op = self.op;
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        if self.staging.is_none() {
            return Some(Err(Error::internal(op, "a readback taken twice")));
        }
        let mut done = self.state.lock().ok().and_then(|mut s| s.done.take());
        if done.is_none() {
            let _ = self.gpu.device().poll(wgpu::PollType::Poll);
            done = self.state.lock().ok().and_then(|mut s| s.done.take());
        }
        let Some(mapped) = done else {
            // A lost device never runs the callback.
            return self.gpu.lost_error(op).err().map(|e| {
                self.staging = None;
                Err(e)
            });
        };
        let staging = self.staging.take()?;
        Some(self.finish(staging, mapped))
    }

    fn finish(
        &self,
        staging: wgpu::Buffer,
        mapped: std::result::Result<(), wgpu::BufferAsyncError>,
    ) -> Result<Vec<Vec<u8>>> {
        let op = self.op;
        if let Err(e) = mapped {
            // wgnn's own staging buffer fails to map only when the device is gone: on a device
            // wgnn opened the lost callback has said so; on an application's device
            // (`Gpu::from_wgpu`, no callback installed) this failure is how the loss shows.
            self.gpu.check_alive(op)?;
            return Err(Error::DeviceLost {
                op,
                reason: format!("the readback buffer could not be mapped: {e}"),
            });
        }
        let all = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu {
                op,
                msg: format!("reading the readback buffer: {e}"),
            })?
            .to_vec();
        staging.unmap();
        let size = staging.size();
        self.gpu.give_back_staging(staging);
        self.gpu
            .inner
            .counters
            .bytes_read_back
            .fetch_add(size, Ordering::Relaxed);
        let mut at = 0;
        Ok(self
            .lens
            .iter()
            .map(|&n| {
                let part = all[at..at + n as usize].to_vec();
                at += n.div_ceil(4) as usize * 4;
                part
            })
            .collect())
    }
}

impl Future for Readback {
    type Output = Result<Vec<Vec<u8>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(out) = this.try_take() {
            return Poll::Ready(out);
        }
        if let Ok(mut s) = this.state.lock() {
            s.waker = Some(cx.waker().clone());
        }
        // Natively nothing else polls the device: ask to be polled again (try_take polls).
        // In a browser the mapping callback wakes the task.
        #[cfg(not(target_arch = "wasm32"))]
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The most bytes of idle readback staging buffers a [`Gpu`] keeps for reuse (host-visible
/// memory; not part of [`crate::ExecStats::device_bytes`] or the memory budget): enough for
/// `end_epoch`'s host copy of the weights of the seed CNN (22 MB). A readback larger than the
/// whole pool creates and drops its staging buffer each time.
pub(crate) const STAGING_POOL_BYTES: u64 = 64 << 20;

static POISON: AtomicBool = AtomicBool::new(false);

/// Makes every kernel output start as NaN (all-ones bits) instead of zero, so a test sees any
/// element a kernel failed to write. For tests; costs one upload per output.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn set_poison_outputs(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// An n-dimensional array of f32 or u32 on the GPU, row-major (NHWC for images).
///
/// Cloning is cheap and shares the buffer. Data moves only when asked: [`Tensor::from_slice`]
/// uploads, [`Tensor::to_vec_async`] reads back without blocking and [`Tensor::to_vec`] (native)
/// blocks.
///
/// When the last clone drops, its buffer is not destroyed but kept idle on its [`Gpu`] for
/// the next tensor of the same rounded size (an eager op's output, an upload), so a loop of
/// [`crate::ops`] calls creates no buffer once its sizes have been seen;
/// [`crate::ExecStats::pooled_bytes`] counts the idle bytes, [`Gpu::set_pool_limit`] bounds
/// them and [`Gpu::release_pool`] frees them.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) gpu: Gpu,
    pub(crate) buf: Arc<Buf>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.dtype, self.shape)
    }
}

/// Number of elements of `shape`, or an error naming the op when it is empty or overflows.
pub(crate) fn numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() {
        return Err(Error::shape(
            op,
            "a tensor needs at least one dimension (shape [])",
        ));
    }
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or_else(|| {
            Error::shape(
                op,
                format!("shape {shape:?} has more elements than fit in memory"),
            )
        })?;
    }
    if n == 0 {
        return Err(Error::shape(op, format!("shape {shape:?} has no elements")));
    }
    if n > u32::MAX as usize {
        return Err(Error::Limit {
            op,
            what: format!("shape {shape:?} elements"),
            requested: n as u64,
            limit: u32::MAX as u64,
        });
    }
    Ok(n)
}

impl Tensor {
    /// An f32 tensor with `data` in row-major order.
    ///
    /// # Errors
    /// When `data.len()` is not the product of `shape`, the shape is empty, or the buffer is
    /// over the device's limits.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::upload_words(
            gpu,
            "Tensor::from_slice",
            bytemuck::cast_slice(data),
            data.len(),
            shape,
            DType::F32,
        )
    }

    /// A u32 tensor (class labels) with `data` in row-major order.
    ///
    /// # Errors
    /// As [`Tensor::from_slice`].
    pub fn from_u32(gpu: &Gpu, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        Tensor::upload_words(
            gpu,
            "Tensor::from_u32",
            bytemuck::cast_slice(data),
            data.len(),
            shape,
            DType::U32,
        )
    }

    fn upload_words(
        gpu: &Gpu,
        op: &'static str,
        bytes: &[u8],
        len: usize,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let n = numel(op, shape)?;
        if n != len {
            return Err(Error::shape(
                op,
                format!("{len} values do not fill shape {shape:?} ({n} elements)"),
            ));
        }
        let t = Tensor::empty(gpu, op, shape, dtype)?;
        gpu.upload(&t.buf.buffer, 0, bytes);
        Ok(t)
    }

    /// An f32 tensor of zeros.
    ///
    /// # Errors
    /// When the shape is empty or over the device's limits.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let op = "Tensor::zeros";
        let n = numel(op, shape)?;
        let (buf, reused) = gpu.tensor_storage(op, op, n as u64 * 4)?;
        if reused {
            gpu.zero_fill(op, &buf.buffer)?; // a new buffer is zeros already (wgpu)
        }
        Ok(Tensor {
            gpu: gpu.clone(),
            buf,
            shape: shape.to_vec(),
            dtype: DType::F32,
        })
    }

    /// A tensor whose contents are unspecified, for kernel outputs and uploads: an idle
    /// pooled buffer of the same rounded size holds an earlier tensor's data, a new one
    /// zeros. With `set_poison_outputs` on, every element starts as all-ones bits
    /// whichever it is, so a kernel that leaves an element unwritten shows it rather than
    /// an earlier tensor's value.
    pub(crate) fn empty(
        gpu: &Gpu,
        op: &'static str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let n = numel(op, shape)?;
        let (buf, _reused) = gpu.tensor_storage(op, op, n as u64 * 4)?;
        if POISON.load(Ordering::Relaxed) {
            // All-ones bits: a NaN as f32, u32::MAX as u32. An unwritten element shows.
            gpu.upload(&buf.buffer, 0, &vec![0xFF; buf.buffer.size() as usize]);
        }
        Ok(Tensor {
            gpu: gpu.clone(),
            buf,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// A tensor over an existing buffer (the executor's outputs).
    pub(crate) fn view(gpu: &Gpu, buf: Arc<Buf>, shape: &[usize], dtype: DType) -> Tensor {
        Tensor {
            gpu: gpu.clone(),
            buf,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always false: a tensor has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The [`Gpu`] the tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The underlying buffer (its size is rounded up to a multiple of 16 bytes). When the
    /// last `Tensor` sharing it drops, the buffer goes to the [`Gpu`]'s pool and a later
    /// tensor of the same size may take it ([`Gpu::release_pool`]): a clone of the
    /// `wgpu::Buffer` kept past that point may then see another tensor's data.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buf.buffer
    }

    /// The same data under another shape with as many elements; shares the buffer.
    ///
    /// # Errors
    /// When the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = numel("Tensor::reshape", shape)?;
        if n != self.len() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!(
                    "cannot view {:?} ({} elements) as {shape:?} ({n} elements)",
                    self.shape,
                    self.len()
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Reads an f32 tensor back to the host, blocking until the GPU is done: the native
    /// wrapper over [`Tensor::to_vec_async`].
    ///
    /// # Errors
    /// When the tensor is u32, or on device loss or timeout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.read_f32("Tensor::to_vec")
    }

    /// Reads a u32 tensor back to the host, blocking until the GPU is done: the native
    /// wrapper over [`Tensor::to_vec_u32_async`].
    ///
    /// # Errors
    /// When the tensor is f32, or on device loss or timeout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.read_u32("Tensor::to_vec_u32")
    }

    /// Reads an f32 tensor back to the host without blocking. The copy is recorded and
    /// submitted now, so the values are those the tensor holds after the work submitted so
    /// far, whenever the future is awaited. The future never waits for the device: natively
    /// each poll polls it once (`PollType::Poll`) and a pending future wakes itself, so any
    /// executor (`pollster`, a frame loop's) drives it; in a browser the page's event loop
    /// does. It does not borrow the tensor.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # let gpu = wgnn::Gpu::software()?;
    /// let t = wgnn::Tensor::from_slice(&gpu, &[1.0, -2.0], &[2])?;
    /// let pending = wgnn::ops::relu(&t)?.to_vec_async();
    /// // ... other work; then, in async code, `pending.await?`; natively:
    /// assert_eq!(pollster::block_on(pending)?, vec![1.0, 0.0]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When the tensor is u32, or on device loss.
    pub fn to_vec_async(&self) -> impl Future<Output = Result<Vec<f32>>> + 'static {
        let rb = self.start_read(DType::F32, "Tensor::to_vec_async");
        async move { Ok(bytemuck::pod_collect_to_vec(&first(rb.await?))) }
    }

    /// Reads a u32 tensor back to the host without blocking; as [`Tensor::to_vec_async`].
    ///
    /// # Errors
    /// When the tensor is f32, or on device loss.
    pub fn to_vec_u32_async(&self) -> impl Future<Output = Result<Vec<u32>>> + 'static {
        let rb = self.start_read(DType::U32, "Tensor::to_vec_u32_async");
        async move { Ok(bytemuck::pod_collect_to_vec(&first(rb.await?))) }
    }

    /// Starts the readback of the whole tensor (or one that fails on a wrong `dtype`).
    pub(crate) fn start_read(&self, dtype: DType, op: &'static str) -> Readback {
        match self.expect(dtype, op) {
            Ok(()) => self
                .gpu
                .readback(op, &[(&self.buf.buffer, self.len() as u64 * 4)]),
            Err(e) => Readback::failed(&self.gpu, op, e),
        }
    }

    /// The blocking f32 readback for wgnn's own blocking paths, naming `op` in errors.
    pub(crate) fn read_f32(&self, op: &'static str) -> Result<Vec<f32>> {
        self.expect(DType::F32, op)?;
        let bytes = self
            .gpu
            .download(op, &self.buf.buffer, self.len() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The blocking u32 readback for wgnn's own blocking paths, naming `op` in errors.
    pub(crate) fn read_u32(&self, op: &'static str) -> Result<Vec<u32>> {
        self.expect(DType::U32, op)?;
        let bytes = self
            .gpu
            .download(op, &self.buf.buffer, self.len() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// `Err` unless the tensor has element type `dtype`.
    pub(crate) fn expect(&self, dtype: DType, op: &'static str) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::arg(
                op,
                format!(
                    "expected a {dtype:?} tensor, got {:?} {:?}",
                    self.dtype, self.shape
                ),
            ));
        }
        Ok(())
    }

    /// `Err` unless `other` lives on the same device.
    pub(crate) fn same_gpu(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if !Arc::ptr_eq(&self.gpu.inner, &other.gpu.inner) {
            return Err(Error::arg(op, "tensors live on different Gpu instances"));
        }
        Ok(())
    }
}
