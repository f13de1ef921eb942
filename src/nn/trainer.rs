//! A training session: the data set uploaded once, the step planned once, then one
//! submission per step.

use std::sync::Mutex;

use crate::data::Dataset;
use crate::data::resident::GpuDataset;
use crate::graph::metrics::{Metrics, PendingReading, Reading};
use crate::graph::plan::{Job, Mode};
use crate::graph::run::{Drafted, Epoch};
use crate::nn::fit::OnNonFinite;
use crate::nn::model::Sequential;
use crate::{Error, Result};

impl Sequential {
    /// A training session over `train`: uploads the data set once and plans the step (and,
    /// when `batch_size` does not divide the set, the smaller last step) once. [`fit`] is
    /// built on it; use it directly for a custom loop. Natively the matmul autotuner times
    /// the plan's new shapes here, waiting for the device; in a browser it cannot, and the
    /// plan takes the static choice (or what an async form chose): there use
    /// [`Sequential::trainer_async`].
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// # let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    /// let mut model = Sequential::new(&[784]).with(Dense::new(10)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let mut t = model.trainer(&train.subset(0..256)?, 64)?;
    /// t.begin_epoch();
    /// for _ in 0..t.steps_per_epoch() {
    ///     t.step()?; // one submission, nothing read back
    /// }
    /// let (loss, accuracy) = t.end_epoch(1)?; // one readback
    /// assert!(loss.is_finite() && accuracy > 0.0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`fit`]: Sequential::fit
    ///
    /// # Errors
    /// Batch size 0; an empty or mismatched data set; labels out of range.
    pub fn trainer(&mut self, train: &Dataset, batch_size: usize) -> Result<Trainer<'_>> {
        self.trainer_for("trainer", train, batch_size)
    }

    /// As [`Sequential::trainer`], without blocking: the autotuner times the plans' new
    /// matmul shapes from GPU timestamps, read back by a future that never waits, where the
    /// adapter has `TIMESTAMP_QUERY` (Chromium's WebGPU does), else keeps the static choice
    /// ([`crate::ExecStats::tuned_by_timestamps`] counts the shapes timed). The same
    /// trainer, bit for bit, as [`Sequential::trainer`] makes: every variant computes the
    /// same values. The form to use in a browser, where the blocking one cannot time.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// # let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    /// let mut model = Sequential::new(&[784]).with(Dense::new(10)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let train = train.subset(0..256)?;
    /// let before = gpu.counters().blocking_waits;
    /// // natively; `.await` in async code (a browser's `spawn_local`)
    /// let mut t = pollster::block_on(model.trainer_async(&train, 64))?;
    /// t.begin_epoch();
    /// t.step()?;
    /// assert_eq!(gpu.counters().blocking_waits, before);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::trainer`].
    pub async fn trainer_async(
        &mut self,
        train: &Dataset,
        batch_size: usize,
    ) -> Result<Trainer<'_>> {
        let op = "trainer_async";
        let (data, metrics, job) = self.trainer_inputs(op, train, batch_size)?;
        let epoch = {
            let c = self.compiled(op)?;
            Epoch::draft(&c.gpu, &c.graph, &c.refs(), job, &data, &metrics)?
                .make_async(&c.gpu)
                .await?
        };
        Ok(self.trainer_with(op, data, metrics, epoch))
    }

    /// [`Sequential::trainer`] for the public call `op`, which its errors name.
    pub(super) fn trainer_for(
        &mut self,
        op: &'static str,
        train: &Dataset,
        batch_size: usize,
    ) -> Result<Trainer<'_>> {
        let (data, metrics, job) = self.trainer_inputs(op, train, batch_size)?;
        let epoch = {
            let c = self.compiled(op)?;
            Epoch::draft(&c.gpu, &c.graph, &c.refs(), job, &data, &metrics)?.make(&c.gpu)?
        };
        Ok(self.trainer_with(op, data, metrics, epoch))
    }

    /// Checks the arguments of the trainer call `op`; uploads the data set and makes the
    /// metrics a training plan accumulates into.
    fn trainer_inputs(
        &self,
        op: &'static str,
        train: &Dataset,
        batch_size: usize,
    ) -> Result<(GpuDataset, Metrics, Job)> {
        if batch_size == 0 {
            return Err(Error::arg(op, "batch_size must be at least 1, got 0"));
        }
        self.check_data(op, "training", train)?;
        let c = self.compiled(op)?;
        let gpu = &c.gpu;
        let data = GpuDataset::upload(gpu, op, &train.images, &train.labels, train.count)?;
        let metrics = Metrics::new(gpu, c.on_non_finite == OnNonFinite::Skip)?;
        let job = Job {
            op,
            mode: Mode::Train,
            batch: batch_size,
        };
        Ok((data, metrics, job))
    }

    fn trainer_with(
        &mut self,
        op: &'static str,
        data: GpuDataset,
        metrics: Metrics,
        epoch: Epoch,
    ) -> Trainer<'_> {
        let order = (0..data.count as u32).collect();
        Trainer {
            model: self,
            op,
            data,
            metrics,
            epoch,
            order,
            pos: 0,
            shuffle: true,
            epoch_start: 0,
            skipped: 0,
        }
    }
}

/// The loss and accuracy of a [`Trainer`] on their way back from the GPU
/// ([`Trainer::request_metrics`]). Does not borrow the trainer.
pub struct PendingMetrics {
    /// The readback in flight; `None` once it has failed (the error was given).
    reading: Mutex<Option<PendingReading>>,
    /// The values, once they have arrived.
    got: Mutex<Option<(f64, f64)>>,
}

impl std::fmt::Debug for PendingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingMetrics")
            .field("got", &self.got.lock().ok().and_then(|g| *g))
            .finish_non_exhaustive()
    }
}

impl PendingMetrics {
    /// `(loss, accuracy)` once the GPU is done, `None` until then; never waits (it polls the
    /// device once, `PollType::Poll`, natively; in a browser the page's event loop does).
    /// Once arrived, every later call returns the same values.
    ///
    /// # Errors
    /// On device loss or a failed mapping (returned once; later calls say it failed).
    pub fn try_get(&self) -> Option<Result<(f64, f64)>> {
        let op = "PendingMetrics::try_get";
        if let Some(v) = self.got.lock().ok().and_then(|g| *g) {
            return Some(Ok(v));
        }
        let Ok(mut reading) = self.reading.lock() else {
            return Some(Err(Error::internal(op, "a poisoned lock")));
        };
        let Some(pending) = reading.as_mut() else {
            return Some(Err(Error::arg(op, "the metrics readback already failed")));
        };
        match pending.try_take()? {
            Ok(r) => {
                let v = (r.loss, r.accuracy);
                if let Ok(mut g) = self.got.lock() {
                    *g = Some(v);
                }
                *reading = None;
                Some(Ok(v))
            }
            Err(e) => {
                *reading = None;
                Some(Err(e))
            }
        }
    }

    /// `(loss, accuracy)`, awaited: a future that never blocks (see [`PendingMetrics::try_get`]).
    ///
    /// # Errors
    /// As [`PendingMetrics::try_get`].
    pub async fn get(self) -> Result<(f64, f64)> {
        let op = "PendingMetrics::get";
        let poisoned = || Error::internal(op, "a poisoned lock");
        if let Some(v) = self.got.into_inner().map_err(|_| poisoned())? {
            return Ok(v);
        }
        match self.reading.into_inner().map_err(|_| poisoned())? {
            Some(pending) => pending.await.map(|r| (r.loss, r.accuracy)),
            None => Err(Error::arg(op, "the metrics readback already failed")),
        }
    }
}

/// A training session: see [`Sequential::trainer`].
pub struct Trainer<'m> {
    pub(super) model: &'m mut Sequential,
    /// The public call that made it (`fit` or `trainer`), named in errors.
    op: &'static str,
    data: GpuDataset,
    metrics: Metrics,
    epoch: Epoch,
    order: Vec<u32>,
    pos: usize,
    /// Shuffle the data at each [`Trainer::begin_epoch`] (default true).
    pub shuffle: bool,
    epoch_start: u64,
    pub(super) skipped: usize,
}

impl Trainer<'_> {
    /// (virtual buffers, physical buffers) of the step's plan: the planner reuses a buffer
    /// once every dispatch that reads its previous contents has run.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn plan_buffers(&self) -> (usize, usize) {
        self.epoch.plan().buffers
    }

    /// Device bytes by role of everything a training step binds: the model's weights,
    /// gradients and optimizer state, the resident data set, the metrics and the plans' own
    /// buffers (activations, uniforms). With nothing else alive on the `Gpu`, the roles
    /// counted in `ExecStats::device_bytes` sum to it.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn role_bytes(&self) -> crate::graph::plan::RoleBytes {
        self.epoch.role_bytes()
    }

    /// Kernel dispatches the step's plan records (fusion makes fewer).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn plan_dispatches(&self) -> usize {
        self.epoch.plan().dispatches()
    }

    /// Steps in one pass over the data (the last may be smaller than the batch).
    pub fn steps_per_epoch(&self) -> usize {
        self.epoch.steps()
    }

    /// Starts an epoch: a new order of the samples (one upload), metrics zeroed.
    ///
    /// With [`Trainer::shuffle`] the order is [`epoch_order`]`(n, seed, step)` for the
    /// model's seed and its step count now: a function of those two numbers alone, not of
    /// earlier epochs, so a run resumed from a training state shuffles as the uninterrupted
    /// run did. Without it the order is `0..n`.
    pub fn begin_epoch(&mut self) {
        if let Some(c) = &self.model.compiled {
            self.order = if self.shuffle {
                epoch_order(self.order.len(), c.seed, c.step)
            } else {
                (0..self.order.len() as u32).collect()
            };
            self.epoch_start = c.step;
        }
        self.data.set_order(&self.order);
        self.metrics.reset();
        self.pos = 0;
    }

    /// Runs the epoch's next step: one 16-byte upload, one submission, no readback, no
    /// allocation.
    ///
    /// # Errors
    /// When the epoch is over (call [`Trainer::begin_epoch`]), or on device errors.
    pub fn step(&mut self) -> Result<()> {
        let op = self.op;
        if self.pos >= self.steps_per_epoch() {
            return Err(Error::arg(
                op,
                format!(
                    "the epoch's {} steps are done; begin a new epoch",
                    self.steps_per_epoch()
                ),
            ));
        }
        let c = self
            .model
            .compiled
            .as_mut()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))?;
        // Training streams stay below 2^63, apart from predict_mc's (crate::philox).
        let step = u32::try_from(c.step)
            .ok()
            .filter(|&s| u64::from(s) < crate::philox::MAX_TRAINING_STEPS)
            .ok_or_else(|| {
                Error::arg(
                    op,
                    format!(
                        "step {} is past the last training step, 2^31 - 1 (the dropout \
                         streams of training stay below 2^63, apart from predict_mc's)",
                        c.step
                    ),
                )
            })?;
        let poison = if c.poison_step == Some(c.step) {
            c.poison_kind
        } else {
            0
        };
        self.epoch.run(self.pos, step, poison)?;
        c.step += 1;
        self.pos += 1;
        Ok(())
    }

    /// Steps skipped for non-finite values in the last ended epoch ([`OnNonFinite::Skip`]).
    pub fn skipped_steps(&self) -> usize {
        self.skipped
    }

    /// The model being trained (to evaluate or save between steps).
    pub fn model(&self) -> &Sequential {
        self.model
    }

    /// Starts reading the epoch's loss and accuracy so far without waiting: records one copy
    /// of the metric accumulators (after the steps submitted so far) into a staging buffer
    /// and asks for its mapping. Poll the result once per frame with
    /// [`PendingMetrics::try_get`], or await [`PendingMetrics::get`]; meanwhile training
    /// goes on ([`Trainer::step`] never waits either). The values equal those
    /// [`Trainer::progress`] would give at this point, bit for bit; like it, it does not
    /// check for non-finite steps ([`Trainer::end_epoch`] does).
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// # let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    /// let mut model = Sequential::new(&[784]).with(Dense::new(10)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let mut t = model.trainer(&train.subset(0..256)?, 64)?;
    /// t.begin_epoch();
    /// let mut pending = None;
    /// let mut shown = None;
    /// while shown.is_none() {
    ///     // one frame: the application's own work, then at most one step
    ///     if t.steps_done() < t.steps_per_epoch() {
    ///         t.step()?;
    ///     } else if pending.is_none() {
    ///         pending = Some(t.request_metrics()?);
    ///     }
    ///     if let Some(p) = &pending {
    ///         shown = p.try_get().transpose()?; // None until the GPU is done
    ///     }
    /// }
    /// let (loss, _accuracy) = shown.unwrap_or_default();
    /// assert!(loss.is_finite());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// On device loss (later errors of the readback come from `try_get` or `get`).
    pub fn request_metrics(&self) -> Result<PendingMetrics> {
        let op = "Trainer::request_metrics";
        self.metrics.acc.gpu().check_alive(op)?;
        Ok(PendingMetrics {
            reading: Mutex::new(Some(self.metrics.request(op))),
            got: Mutex::new(None),
        })
    }

    /// Steps run in the current epoch.
    pub fn steps_done(&self) -> usize {
        self.pos
    }

    /// The epoch's loss and accuracy so far, for a progress display (one readback, blocking).
    ///
    /// # Errors
    /// On device errors.
    pub fn progress(&self) -> Result<(f64, f64)> {
        self.metrics.acc.gpu().check_alive("trainer")?;
        let Reading { loss, accuracy, .. } = self.metrics.read()?;
        Ok((loss, accuracy))
    }

    /// Ends the epoch: reads the loss and accuracy over its samples (one readback).
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `epoch` and the first step (within the epoch) whose loss
    /// was not finite; the weights are those of the step before it.
    pub fn end_epoch(&mut self, epoch: usize) -> Result<(f64, f64)> {
        self.metrics.acc.gpu().check_alive("trainer")?;
        let r = self.read_checked(epoch)?;
        self.skipped = r.skipped;
        // One more readback per epoch: a host copy of the weights that survives device loss.
        let copy = self.model.weights()?;
        if let Some(c) = self.model.compiled.as_mut() {
            c.host_copy = Some(copy);
        }
        Ok((r.loss, r.accuracy))
    }

    /// Reads the epoch's metrics and status word (one readback); with
    /// [`OnNonFinite::Stop`], [`Error::NonFinite`] once a step of this epoch went bad.
    pub(super) fn read_checked(&self, epoch: usize) -> Result<Reading> {
        let r = self.metrics.read()?;
        if let Some((bad, param)) = r.bad.filter(|_| !self.metrics.skip) {
            let step = u64::from(bad).saturating_sub(self.epoch_start) as usize;
            let what = match (param, &self.model.compiled) {
                (Some(p), Some(c)) => format!(
                    "gradient of {}",
                    c.infos.get(p).map_or("?", |i| i.name.as_str())
                ),
                _ => "loss".to_string(),
            };
            return Err(Error::NonFinite { epoch, step, what });
        }
        Ok(r)
    }
}

/// The Philox stream offset of the epoch that starts at training step `step`: a layer index
/// of `u32::MAX` (no model has that many layers) in that step's block of dropout streams
/// (`layer + step * 2^32`, see the graph module), so it never meets a dropout mask.
fn shuffle_offset(step: u64) -> u64 {
    (step << 32) | u64::from(u32::MAX)
}

/// The sample order of an epoch of `n` samples that starts at training step `step` with
/// seed `seed`: a Fisher-Yates shuffle of `0..n` whose swap for position `i` (from `n - 1`
/// down to 1) takes `j = (r * (i + 1)) >> 64` for the 64-bit `r` made of Philox words
/// `2i` (low half) and `2i + 1` (high half) of stream (`seed`, `step * 2^32 + 2^32 - 1`).
/// A pure function: the same arguments give the same order on every machine.
///
/// ```
/// let a = wgnn::nn::epoch_order(10, 42, 0);
/// assert_eq!(a, wgnn::nn::epoch_order(10, 42, 0));
/// assert_ne!(a, wgnn::nn::epoch_order(10, 42, 3));
/// let mut sorted = a.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
/// ```
pub fn epoch_order(n: usize, seed: u64, step: u64) -> Vec<u32> {
    let offset = shuffle_offset(step);
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let lo = u64::from(crate::philox::word(seed, offset, 2 * i as u64));
        let hi = u64::from(crate::philox::word(seed, offset, 2 * i as u64 + 1));
        let r = lo | (hi << 32);
        let j = ((u128::from(r) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}
