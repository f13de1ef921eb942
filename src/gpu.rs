//! `Gpu`: instance, adapter choice, device, queue, limits, the pipeline cache, the counters
//! (gpu/counters.rs) and the eager ops' buffer pool (gpu/pool.rs).
//!
//! Every buffer and bind group wgnn makes is created here, by [`Gpu::counted_buffer`],
//! [`Gpu::counted_buffer_with`] and [`Gpu::counted_bind_group`], so that
//! [`Gpu::counters`] sees them all; tests/counted.rs fails on a raw `create_buffer` or
//! `create_bind_group` call anywhere else under src/.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod adapters;
mod counters;
mod pool;
mod wait;

use adapters::{adapters, describe};
pub(crate) use counters::Counters;
pub use counters::{ExecStats, ObjectCounts};
pub(crate) use pool::{Buf, PooledUniform};

use crate::kernels::Kernels;
use crate::{Error, Result};

/// What wgnn knows of the adapter it runs on.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The backend, e.g. `Vulkan` or `Gl`.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU...
    pub device_type: wgpu::DeviceType,
    /// Driver name and version, e.g. `Mesa 22.3.6 (LLVM 15.0.6)`.
    pub driver: String,
    /// The limits of the device wgnn uses (the adapter's own limits when wgnn opened it).
    pub limits: wgpu::Limits,
}

impl std::fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}, {}; max storage binding {} bytes)",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.limits.max_storage_buffer_binding_size
        )
    }
}

pub(crate) struct GpuInner {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: GpuInfo,
    pub kernels: Kernels,
    pub counters: Counters,
    pub lost: Arc<Mutex<Option<String>>>,
    /// The instance the device came from, when wgnn opened it (for object reports, which the
    /// browser's WebGPU does not give).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub instance: Option<wgpu::Instance>,
    /// Device bytes wgnn may hold at once (u64::MAX: no budget).
    pub budget: AtomicU64,
    /// Longest wait for the device, in milliseconds.
    pub timeout_ms: AtomicU64,
    /// The adapter's (smallest, largest) subgroup size; kernels with subgroup variants use
    /// them only where both are the size they were written for.
    pub subgroup_sizes: (u32, u32),
    /// Whether kernels compile with `TEST_HOOKS` (shaders/step.wgsl); off unless
    /// [`Gpu::enable_test_hooks`] turned it on before the first shader compiled.
    pub test_hooks: AtomicBool,
    /// Whether a shader module has been compiled on this device (then the hooks are fixed).
    pub compiled: AtomicBool,
    /// Idle readback staging buffers, reused by size (tensor.rs, `Gpu::download`).
    pub staging: Mutex<Vec<wgpu::Buffer>>,
    /// Idle tensor buffers, uniforms and bind groups kept for the eager ops (gpu/pool.rs).
    pub pool: Mutex<pool::Pool>,
}

/// A device and queue with wgnn's compiled pipelines. Cheap to clone; clones share everything.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// println!("running on {}", gpu.info());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("info", &self.inner.info)
            .finish()
    }
}

const INSTALL_HINT: &str = "on Debian or Ubuntu, `apt-get install mesa-vulkan-drivers` provides the \
     software Vulkan driver (lavapipe)";

/// Runs one of wgpu's futures to completion on this thread (adapter and device requests),
/// for the blocking constructors; `Gpu::count_blocking` records it once the `Gpu` exists.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<F: Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

impl Gpu {
    /// Opens the best adapter: a hardware one if any, else a software one (lavapipe).
    ///
    /// Honours `WGPU_BACKEND` (e.g. `vulkan`, `gl`) and `WGPU_ADAPTER_NAME` (a case-insensitive
    /// part of the adapter's name).
    ///
    /// On Linux and other non-Apple Unix systems without a Wayland session (`WAYLAND_DISPLAY`
    /// or `XDG_RUNTIME_DIR` unset), the first `Gpu` opened by `new`, [`Gpu::software`] or
    /// [`Gpu::software_all`] sets `NODEVICE_SELECT=1` for the process unless it is already set:
    /// it turns off Mesa's `VK_LAYER_MESA_device_select`, a Vulkan layer that only reorders
    /// adapters (wgnn ranks them itself) and prints
    /// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on a headless
    /// machine. wgnn leaves the environment alone where `NODEVICE_SELECT` is already set or
    /// where a `MESA_VK_DEVICE_SELECT*` variable configures the layer: to keep the layer, set
    /// one of those (e.g. `MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1`); `NODEVICE_SELECT=0`
    /// does not keep it, since the Vulkan loader turns the layer off whenever
    /// `NODEVICE_SELECT` is set at all. Setting a variable races with C code
    /// reading the environment on another thread at that moment: an application that runs
    /// such threads before opening its first `Gpu` can set `NODEVICE_SELECT` itself first.
    ///
    /// The blocking form of [`Gpu::new_async`] (native only): waits for the adapter and
    /// device requests on this thread.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter matches, with how to install a software one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Gpu> {
        let gpu = block_on(Gpu::new_async())?;
        gpu.count_blocking();
        Ok(gpu)
    }

    /// Opens the best adapter as [`Gpu::new`] does, without blocking: the adapter and device
    /// requests are awaited (no `pollster`), so it works in a browser, where the executor is
    /// the page's event loop (`wasm_bindgen_futures::spawn_local`). There `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` do not exist and the browser's adapter is taken.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// let gpu = pollster::block_on(wgnn::Gpu::new_async())?; // natively; `.await` in async code
    /// println!("running on {}", gpu.info());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter matches, with how to install a software one.
    pub async fn new_async() -> Result<Gpu> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let (inst, list) = adapters(backends).await;
        if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
            let want_lc = want.to_lowercase();
            let found = list
                .iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&want_lc));
            return match found {
                Some(a) => Gpu::open_in(Some(inst.clone()), a, wgpu::Features::empty()).await,
                None => Err(Error::NoAdapter(format!(
                    "WGPU_ADAPTER_NAME={want} matches none of [{}]",
                    describe(&list)
                ))),
            };
        }
        match list.first() {
            Some(a) => Gpu::open_in(Some(inst.clone()), a, wgpu::Features::empty()).await,
            None => Err(Error::NoAdapter(format!(
                "no adapter on backends {backends:?}; {INSTALL_HINT}"
            ))),
        }
    }

    /// Opens a software adapter (lavapipe through Vulkan first, llvmpipe through GL next).
    /// Native only (blocks on the adapter and device requests).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when there is none, saying how to install lavapipe.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn software() -> Result<Gpu> {
        match Gpu::software_all()?.into_iter().next() {
            Some(g) => Ok(g),
            None => unreachable_none(),
        }
    }

    /// Opens every software adapter there is, one [`Gpu`] each, Vulkan first. Tests use it to
    /// run each kernel on every software backend. Native only (blocks).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when there is none.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn software_all() -> Result<Vec<Gpu>> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let (inst, all) = block_on(adapters(backends));
        let list: Vec<_> = all
            .into_iter()
            .filter(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
            .collect();
        if list.is_empty() {
            return Err(Error::NoAdapter(format!(
                "no software adapter on backends {backends:?}; {INSTALL_HINT}"
            )));
        }
        list.iter()
            .map(|a| {
                let gpu = block_on(Gpu::open_in(Some(inst.clone()), a, wgpu::Features::empty()))?;
                gpu.count_blocking();
                Ok(gpu)
            })
            .collect()
    }

    /// Opens `adapter` with its own limits (not the downlevel defaults), so buffers up to the
    /// adapter's `max_storage_buffer_binding_size` work. The blocking form of
    /// [`Gpu::open_async`] (native only).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] if the device cannot be created.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(adapter: &wgpu::Adapter) -> Result<Gpu> {
        let gpu = block_on(Gpu::open_async(adapter))?;
        gpu.count_blocking();
        Ok(gpu)
    }

    /// As [`Gpu::open`], awaiting the device request instead of blocking.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] if the device cannot be created.
    pub async fn open_async(adapter: &wgpu::Adapter) -> Result<Gpu> {
        Gpu::open_in(None, adapter, wgpu::Features::empty()).await
    }

    /// As [`Gpu::open`], leaving out the optional features in `without` (tests use it to run
    /// the portable versions of kernels on an adapter that has 64-bit integers).
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    pub(crate) fn open_without(adapter: &wgpu::Adapter, without: wgpu::Features) -> Result<Gpu> {
        let gpu = block_on(Gpu::open_in(None, adapter, without))?;
        gpu.count_blocking();
        Ok(gpu)
    }

    /// Counts one wait of the calling thread in [`ExecStats::blocking_waits`].
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn count_blocking(&self) {
        self.inner
            .counters
            .blocking_waits
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn open_in(
        instance: Option<wgpu::Instance>,
        adapter: &wgpu::Adapter,
        without: wgpu::Features,
    ) -> Result<Gpu> {
        let ai = adapter.get_info();
        let mut features = wgpu::Features::empty();
        // Timestamps time the bench; subgroups enable matmul's broadcast variant; 64-bit
        // integers give Philox a single widening multiply and the 8-lane subgroup matmul
        // 64-bit loads of A and B (kernels::shader::compose).
        for f in [
            wgpu::Features::TIMESTAMP_QUERY,
            wgpu::Features::SUBGROUP,
            wgpu::Features::SHADER_INT64,
        ] {
            if adapter.features().contains(f) && !without.contains(f) {
                features |= f;
            }
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgnn"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::NoAdapter(format!("{} ({:?}): {e}", ai.name, ai.backend)))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut l) = lost_cb.lock() {
                *l = Some(if msg.is_empty() {
                    format!("{reason:?}")
                } else {
                    format!("{reason:?}: {msg}")
                });
            }
        });
        // wgpu's default handler panics; wgnn catches its own errors with error scopes, and
        // anything else is recorded rather than brought down the process.
        device.on_uncaptured_error(Arc::new(|e| {
            log_uncaptured(&e);
        }));
        Ok(Gpu::wrap(device, queue, ai, lost, instance))
    }

    /// Wraps a device an application already owns; wgnn installs no handler on it (either would
    /// replace the application's own) and uses the device's own limits.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # let app = wgnn::Gpu::software()?;
    /// # let (device, queue) = (app.device().clone(), app.queue().clone());
    /// let gpu = wgnn::Gpu::from_wgpu(device, queue);
    /// let t = wgnn::Tensor::from_slice(&gpu, &[1.0, -2.0], &[2])?;
    /// assert_eq!(wgnn::ops::relu(&t)?.to_vec()?, vec![1.0, 0.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let mut ai = wgpu::AdapterInfo::new(wgpu::DeviceType::Other, wgpu::Backend::Noop);
        ai.name = "application device".into();
        Gpu::wrap(device, queue, ai, Arc::new(Mutex::new(None)), None)
    }

    fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        ai: wgpu::AdapterInfo,
        lost: Arc<Mutex<Option<String>>>,
        instance: Option<wgpu::Instance>,
    ) -> Gpu {
        let subgroup_sizes = (ai.subgroup_min_size, ai.subgroup_max_size);
        let info = GpuInfo {
            name: ai.name,
            backend: ai.backend,
            device_type: ai.device_type,
            driver: if ai.driver_info.is_empty() {
                ai.driver
            } else {
                format!("{} {}", ai.driver, ai.driver_info)
            },
            limits: device.limits(),
        };
        Gpu {
            inner: Arc::new(GpuInner {
                device,
                queue,
                info,
                kernels: Kernels::default(),
                counters: Counters::default(),
                lost,
                instance,
                timeout_ms: AtomicU64::new(60_000),
                budget: AtomicU64::new(u64::MAX),
                subgroup_sizes,
                test_hooks: AtomicBool::new(false),
                compiled: AtomicBool::new(false),
                staging: Mutex::new(Vec::new()),
                pool: Mutex::default(),
            }),
        }
    }

    /// The adapter's name, backend, driver and limits.
    pub fn info(&self) -> &GpuInfo {
        &self.inner.info
    }

    /// The subgroup sizes the device runs, as (smallest, largest), or `None` when wgnn's
    /// device has no subgroup operations. The subgroup kernels serve a fixed 8 or 16 lanes
    /// (lavapipe); other sizes (SwiftShader's 4, a GPU's 32 or 64) run the portable kernels.
    pub fn subgroup_sizes(&self) -> Option<(u32, u32)> {
        self.device()
            .features()
            .contains(wgpu::Features::SUBGROUP)
            .then_some(self.inner.subgroup_sizes)
    }

    /// The longest time wgnn blocks waiting for the device (readbacks, epoch ends) before it
    /// returns [`Error::Timeout`]; 60 s by default.
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`Gpu::wait_timeout`] for this `Gpu` and its clones.
    pub fn set_wait_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.inner.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// Caps the device memory wgnn's buffers may hold at once: an allocation past it is
    /// [`Error::OutOfMemory`] naming both sizes, checked before anything is created (a
    /// software adapter aborts rather than report out-of-memory). `None` removes the cap.
    /// Idle pooled buffers ([`ExecStats::pooled_bytes`]) count, and are released first
    /// when an allocation would pass the cap.
    pub fn set_memory_budget(&self, bytes: Option<u64>) {
        self.inner
            .budget
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Compiles the test hooks into this `Gpu`'s kernels (shared by its clones), so that
    /// `Sequential::inject_non_finite` works on models trained on it. For wgnn's own tests
    /// (to be gated behind a `testing` feature): every other `Gpu` compiles the hook branches
    /// out. Call right after opening the `Gpu`.
    ///
    /// # Errors
    /// When a kernel has already been compiled on this `Gpu`.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn enable_test_hooks(&self) -> Result<()> {
        if self.inner.compiled.load(Ordering::SeqCst) {
            return Err(Error::arg(
                "enable_test_hooks",
                "kernels were already compiled on this Gpu; enable test hooks right after opening it",
            ));
        }
        self.inner.test_hooks.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether this `Gpu`'s kernels compile the test hooks ([`Gpu::enable_test_hooks`]).
    pub(crate) fn test_hooks(&self) -> bool {
        self.inner.test_hooks.load(Ordering::SeqCst)
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.inner.kernels
    }

    /// `Err(DeviceLost)` once the device is gone. Polls the device (without blocking) so
    /// that wgpu runs the lost callback of a device destroyed since the last call.
    /// A lost device's idle pooled buffers are released.
    pub(crate) fn check_alive(&self, op: &'static str) -> Result<()> {
        let _ = self.inner.device.poll(wgpu::PollType::Poll);
        self.lost_error(op).inspect_err(|_| self.release_pool())
    }

    pub(crate) fn lost_error(&self, op: &'static str) -> Result<()> {
        match self.inner.lost.lock().ok().and_then(|l| l.clone()) {
            Some(reason) => Err(Error::DeviceLost { op, reason }),
            None => Ok(()),
        }
    }

    /// Creates a buffer and counts it in [`ExecStats::buffers_created`]. The only place
    /// wgnn creates buffers (tests/counted.rs checks).
    pub(crate) fn counted_buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        self.inner
            .counters
            .buffers_created
            .fetch_add(1, Ordering::Relaxed);
        self.inner.device.create_buffer(desc)
    }

    /// A counted buffer of `bytes.len()` bytes holding `bytes`, with `usage` plus
    /// `COPY_DST`. Not `create_buffer_init`: that maps the buffer at creation and panics
    /// when the device is lost; a plain buffer and a queue write fail quietly, and the next
    /// scoped call reports the loss.
    pub(crate) fn counted_buffer_with(
        &self,
        label: &str,
        usage: wgpu::BufferUsages,
        bytes: &[u8],
    ) -> wgpu::Buffer {
        let buffer = self.counted_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.len() as u64,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.upload(&buffer, 0, bytes);
        buffer
    }

    /// Creates a bind group and counts it in [`ExecStats::bind_groups_created`]. The only
    /// place wgnn creates bind groups (tests/counted.rs checks).
    pub(crate) fn counted_bind_group(
        &self,
        desc: &wgpu::BindGroupDescriptor<'_>,
    ) -> wgpu::BindGroup {
        self.inner
            .counters
            .bind_groups_created
            .fetch_add(1, Ordering::Relaxed);
        self.inner.device.create_bind_group(desc)
    }

    /// Submits one command buffer and counts it.
    pub(crate) fn submit(&self, cmd: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        self.inner
            .counters
            .submissions
            .fetch_add(1, Ordering::Relaxed);
        self.inner.queue.submit(Some(cmd))
    }

    /// Records `f` into one compute pass of a new encoder and submits it (an eager op, the
    /// autotuner's timing, a test's gather): checks the device first and turns validation
    /// errors into an `Err` naming `op`. Does not wait.
    pub(crate) fn submit_pass(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> Result<()> {
        self.check_alive(op)?;
        self.scoped(op, || {
            let mut enc = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(op),
                    timestamp_writes: None,
                });
                f(&mut pass);
            }
            self.submit(enc.finish());
        })
    }
}

fn log_uncaptured(e: &wgpu::Error) {
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("wgnn: uncaptured wgpu error: {e}");
    #[cfg(target_arch = "wasm32")] // stderr goes nowhere there; the page's console is seen
    web_sys::console::error_1(&format!("wgnn: uncaptured WebGPU error: {e}").into());
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_none() -> Result<Gpu> {
    Err(Error::NoAdapter(format!(
        "no software adapter; {INSTALL_HINT}"
    )))
}
