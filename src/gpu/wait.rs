//! Waiting for the device: the blocking edges (`poll(Wait)`, a future blocked on), each
//! counted in [`ExecStats::blocking_waits`](crate::ExecStats::blocking_waits), and the error scopes every recorded operation
//! runs in (which pop at once natively and are not opened in a browser).

#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

use crate::{Error, Gpu, Result};

impl Gpu {
    /// Blocks until all submitted work has finished, at most the configured timeout. A
    /// readback waits here before it submits its copy: some drivers (lavapipe) block in the
    /// submit itself while earlier work runs, where no timeout applies.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn wait_idle(&self, op: &'static str) -> Result<()> {
        self.wait_for(op, None)
    }

    /// Blocks until `index` has finished, at most the configured timeout.
    #[cfg(feature = "testing")]
    pub(crate) fn wait(&self, op: &'static str, index: wgpu::SubmissionIndex) -> Result<()> {
        self.wait_for(op, Some(index))
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn wait_for(&self, op: &'static str, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let timeout = self.wait_timeout();
        self.count_blocking();
        match self.inner.device.poll(wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(timeout),
        }) {
            Ok(_) => self.check_alive(op),
            Err(wgpu::PollError::Timeout) => {
                self.check_alive(op)?;
                Err(Error::Timeout {
                    op,
                    waited: timeout,
                })
            }
            Err(e) => {
                self.check_alive(op)?;
                // Waiting on a submission that never happened: the submit failed, which
                // happens when the device is no longer valid.
                Err(Error::DeviceLost {
                    op,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Runs `f` inside a validation and out-of-memory error scope and maps what it catches.
    /// Natively wgpu pops a scope at once (its future is ready when made), so this does not
    /// block; should one ever be pending, it is waited for and counted in
    /// [`ExecStats::blocking_waits`](crate::ExecStats::blocking_waits).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = self.ready_now(val.pop());
        let o = self.ready_now(oom.pop());
        if let Some(e) = v.or(o) {
            // A lost device shows first as invalid objects; polling runs the lost callback.
            let _ = self.inner.device.poll(wgpu::PollType::Poll);
            self.check_alive(op)?;
            return Err(Error::Gpu {
                op,
                msg: e.to_string(),
            });
        }
        Ok(out)
    }

    /// In the browser an error scope pops asynchronously and the executor cannot be waited
    /// on, so wgnn opens none: validation and out-of-memory errors reach the device's
    /// uncaptured-error handler (the browser's console) instead of an `Err`.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        let out = f();
        self.lost_error(op)?;
        Ok(out)
    }

    /// The output of `fut` if it is ready on its first poll, else waited for (and counted).
    #[cfg(not(target_arch = "wasm32"))]
    fn ready_now<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => {
                self.count_blocking();
                pollster::block_on(fut)
            }
        }
    }

    /// Blocks until `fut` (a wgnn readback future, which polls the device itself) is done:
    /// the thin native wrapper the blocking readbacks put over their async forms. Waits for
    /// the device with `poll(Wait)` (at most the configured timeout; each counted in
    /// [`ExecStats::blocking_waits`](crate::ExecStats::blocking_waits)) whenever the future is pending.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn block_on<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let deadline = std::time::Instant::now() + self.wait_timeout();
        let mut waited = false;
        loop {
            if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            if !waited {
                self.wait_idle(op)?;
                waited = true;
            } else if std::time::Instant::now() < deadline {
                // The mapping callback may be run by another thread's poll, a moment after
                // the device went idle; or the future submitted more work after an await.
                // The device is polled by the future itself each time.
                std::thread::sleep(Duration::from_millis(1));
            } else {
                self.check_alive(op)?;
                return Err(Error::Timeout {
                    op,
                    waited: self.wait_timeout(),
                });
            }
        }
    }
}
