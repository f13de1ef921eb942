//! `fit`: its options (epochs, validation, checkpoints, what to do at a non-finite step),
//! the epoch loop over a [`Trainer`](super::Trainer), and what it returns.

#[cfg(feature = "fs")]
use std::collections::HashMap;
#[cfg(feature = "fs")]
use std::path::PathBuf;

use crate::data::Dataset;
use crate::data::resident::GpuDataset;
use crate::nn::model::Sequential;
use crate::nn::progress::Bar;
#[cfg(feature = "fs")]
use crate::nn::weights::{self, WeightsOptions};
use crate::{Error, Result};
// std's clock natively; in a browser, where `std::time::Instant::now` panics, `performance.now()`.
use web_time::Instant;

/// What training does at a step whose loss or a gradient is not finite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnNonFinite {
    /// Stop: no weight changes from that step on, and `fit` returns
    /// [`Error::NonFinite`] naming the epoch, the step and what was not finite (as Keras'
    /// `TerminateOnNaN`).
    #[default]
    Stop,
    /// Skip the step's updates and go on; the epoch's log counts the skipped steps (as
    /// PyTorch's `GradScaler` skips `optimizer.step()`).
    Skip,
}

/// Which validation metric a checkpoint watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// Higher is better.
    ValAccuracy,
    /// Lower is better.
    ValLoss,
}

/// Keras' `ModelCheckpoint`: writes the weights after an epoch, with `save_best_only` only
/// when the monitored validation metric improved. A NaN or infinite metric never counts as
/// the best.
///
/// Each file written carries in its safetensors `__metadata__` the keys `monitor`
/// (`val_loss` or `val_accuracy`), `best` (the best value so far, as Rust prints an `f64`,
/// which reads back exactly) and `best_epoch`, with `epoch`, `val_loss` and `val_accuracy`
/// of the epoch written. With `save_best_only`, `fit` reads them back (the header only) when
/// the file already exists, so a restarted run saves only on improvement over the stored
/// best; a file without them, or for another monitor, or whose `best` is not finite, is
/// replaced by the first epoch with a finite metric. A run resumed with
/// [`Fit::initial_epoch`] above 0 reads them back too, so it tracks the best as the
/// uninterrupted run did.
///
/// Without `save_best_only` the file is written after every epoch, with or without a
/// validation set (without one, only `epoch` among the keys above). With
/// `include_optimizer` (Keras' `save_weights_only=False`) the file is a training state that
/// [`Sequential::load_training_state`] restores: the weights plus the optimizer state, the
/// step counter and the seed (tensors and keys in the [`TrainingState`](crate::nn::TrainingState)
/// docs and README.md); [`Sequential::load_weights`] still reads its weights.
#[cfg(feature = "fs")]
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCheckpoint {
    /// The safetensors file to write (atomically).
    pub path: PathBuf,
    /// The metric watched.
    pub monitor: Monitor,
    /// Write only on improvement.
    pub save_best_only: bool,
    /// Also write the optimizer state, step counter and seed: a training state to resume
    /// from.
    pub include_optimizer: bool,
}

#[cfg(feature = "fs")]
impl Monitor {
    fn key(self) -> &'static str {
        match self {
            Monitor::ValAccuracy => "val_accuracy",
            Monitor::ValLoss => "val_loss",
        }
    }

    /// The metric, oriented so that higher is better.
    fn score(self, v: Evaluation) -> f64 {
        match self {
            Monitor::ValAccuracy => v.accuracy,
            Monitor::ValLoss => -v.loss,
        }
    }
}

#[cfg(feature = "fs")]
impl ModelCheckpoint {
    /// A checkpoint of the weights to `path` after every epoch, watching `monitor`
    /// (`save_best_only` and `include_optimizer` off).
    pub fn new(path: impl Into<PathBuf>, monitor: Monitor) -> ModelCheckpoint {
        ModelCheckpoint {
            path: path.into(),
            monitor,
            save_best_only: false,
            include_optimizer: false,
        }
    }

    /// Sets [`ModelCheckpoint::save_best_only`] (builder form).
    pub fn save_best_only(mut self, on: bool) -> ModelCheckpoint {
        self.save_best_only = on;
        self
    }

    /// Sets [`ModelCheckpoint::include_optimizer`] (builder form).
    pub fn include_optimizer(mut self, on: bool) -> ModelCheckpoint {
        self.include_optimizer = on;
        self
    }

    /// The best score and its epoch stored in the file, when it exists and records a finite
    /// best for this monitor.
    fn resume(&self) -> Result<Option<(f64, String)>> {
        let exists = self.path.try_exists().map_err(|e| Error::Io {
            path: self.path.display().to_string(),
            source: e,
        })?;
        if !exists {
            return Ok(None);
        }
        let meta = weights::read_metadata_file(&self.path, &WeightsOptions::default())?;
        if meta.get("monitor").map(String::as_str) != Some(self.monitor.key()) {
            return Ok(None);
        }
        let best = meta
            .get("best")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        let epoch = meta.get("best_epoch").cloned().unwrap_or_default();
        Ok(best.map(|b| match self.monitor {
            Monitor::ValAccuracy => (b, epoch),
            Monitor::ValLoss => (-b, epoch),
        }))
    }
}

/// Options of [`Sequential::fit`].
#[derive(Clone, Debug)]
pub struct Fit<'a> {
    /// The last epoch (at least 1): epochs `initial_epoch + 1 ..= epochs` run, as Keras'
    /// `epochs`.
    pub epochs: usize,
    /// Epochs already done (default 0), as Keras' `initial_epoch`: to resume from a
    /// training state, the [`TrainingState::epoch`](crate::nn::TrainingState) that
    /// [`Sequential::load_training_state`] returned. Epoch numbers in the logs and the
    /// checkpoint go on from it; at most `epochs` (equal: nothing left to run).
    pub initial_epoch: usize,
    /// Samples per step (at least 1); the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Evaluated after each epoch.
    pub validation: Option<&'a Dataset>,
    /// Shuffle the training set every epoch: the order is
    /// [`epoch_order`](crate::nn::epoch_order) of the model's seed and step count.
    pub shuffle: bool,
    /// A progress bar and a Keras-like line per epoch on stderr.
    pub verbose: bool,
    /// Keep the best weights on disk (the `fs` feature).
    #[cfg(feature = "fs")]
    pub checkpoint: Option<ModelCheckpoint>,
    /// Stop (default) or skip at a non-finite loss or gradient.
    pub on_non_finite: OnNonFinite,
}

impl Default for Fit<'_> {
    fn default() -> Self {
        Fit {
            epochs: 1,
            initial_epoch: 0,
            batch_size: 32,
            validation: None,
            shuffle: true,
            verbose: true,
            #[cfg(feature = "fs")]
            checkpoint: None,
            on_non_finite: OnNonFinite::Stop,
        }
    }
}

/// Loss and accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean sparse categorical cross-entropy.
    pub loss: f64,
    /// Fraction of samples whose arg-max logit is the label.
    pub accuracy: f64,
}

/// One epoch's record.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's samples (with dropout active).
    pub loss: f64,
    /// Training accuracy over the epoch's samples (with dropout active).
    pub accuracy: f64,
    /// Validation results, if a validation set was given.
    pub validation: Option<Evaluation>,
    /// Wall-clock seconds of the epoch (training only).
    pub seconds: f64,
    /// Steps whose updates were skipped for non-finite values ([`OnNonFinite::Skip`]).
    pub skipped_steps: usize,
}

/// What [`Sequential::fit`] returns: one entry per completed epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The epochs, in order.
    pub epochs: Vec<EpochLog>,
}

impl Sequential {
    /// Trains epochs `opts.initial_epoch + 1 ..= opts.epochs`. Each epoch's sample order is
    /// [`epoch_order`](crate::nn::epoch_order) of the model's seed and step count (with
    /// `shuffle`), so it depends on nothing else. Each step is one submission; metrics are read back
    /// at each epoch's end, and once a second while a progress bar shows (`verbose`). On a
    /// non-finite loss or gradient ([`OnNonFinite::Stop`], the default) training stops with
    /// [`Error::NonFinite`] naming the epoch, the step and what went bad, and the weights
    /// (BatchNorm moving statistics included) are those of the step before.
    ///
    /// It reads the metrics back blocking, so in a browser it fails at the first epoch's end
    /// naming the async forms: there, drive [`Sequential::trainer`] and poll
    /// [`Trainer::request_metrics`](super::Trainer::request_metrics) instead.
    ///
    /// # Errors
    /// Zero epochs or batch size, `initial_epoch` above `epochs`, an empty or mismatched data set (naming the sample),
    /// labels out of range, a non-finite loss or gradient, device errors.
    pub fn fit(&mut self, train: &Dataset, opts: &Fit<'_>) -> Result<History> {
        let op = "fit";
        if opts.epochs == 0 {
            return Err(Error::arg(op, "epochs must be at least 1, got 0"));
        }
        if opts.initial_epoch > opts.epochs {
            return Err(Error::arg(
                op,
                format!(
                    "initial_epoch {} is past epochs {}",
                    opts.initial_epoch, opts.epochs
                ),
            ));
        }
        if let Some(v) = opts.validation {
            self.check_data(op, "validation", v)?;
        }
        let val = match opts.validation {
            Some(v) => Some(GpuDataset::upload(
                &self.compiled(op)?.gpu,
                op,
                &v.images,
                &v.labels,
                v.count,
            )?),
            None => None,
        };
        let batch_size = opts.batch_size;
        self.compiled
            .as_mut()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))?
            .on_non_finite = opts.on_non_finite;
        let mut trainer = self.trainer_for(op, train, batch_size)?;
        trainer.shuffle = opts.shuffle;
        let steps = trainer.steps_per_epoch();
        let mut history = History::default();
        // The best score (higher is better) and its epoch, resumed from the file's metadata.
        #[cfg(feature = "fs")]
        let mut best: Option<(f64, String)> = match &opts.checkpoint {
            Some(cp) if cp.save_best_only || opts.initial_epoch > 0 => cp.resume()?,
            _ => None,
        };
        for epoch in opts.initial_epoch + 1..=opts.epochs {
            let started = Instant::now();
            trainer.begin_epoch();
            let bar = Bar::new(opts.verbose, epoch, opts.epochs, steps);
            let mut refreshed = Instant::now();
            for step in 0..steps {
                trainer.step().map_err(|e| at_step(e, epoch, step))?;
                if let Some(bar) = &bar {
                    bar.inc(1);
                    // Keras' live loss and accuracy: one readback a second, which also
                    // stops a run whose loss went non-finite without waiting for the
                    // epoch's end. Without a bar nothing is read until the epoch ends.
                    if refreshed.elapsed() >= PROGRESS_REFRESH && step + 1 < steps {
                        refreshed = Instant::now();
                        let r = trainer
                            .read_checked(epoch)
                            .map_err(|e| at_step(e, epoch, step))?;
                        bar.set_message(format!(
                            "- accuracy: {:.4} - loss: {:.4}",
                            r.accuracy, r.loss
                        ));
                    }
                }
            }
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let (loss, accuracy) = trainer
                .end_epoch(epoch)
                .map_err(|e| at_step(e, epoch, steps))?;
            let seconds = started.elapsed().as_secs_f64();
            let model = &*trainer.model;
            let validation = match &val {
                Some(vd) => Some(model.evaluate_resident(op, vd, batch_size)?),
                None => None,
            };
            let log = EpochLog {
                epoch,
                loss,
                accuracy,
                validation,
                seconds,
                skipped_steps: trainer.skipped,
            };
            if opts.verbose {
                eprintln!("{}", epoch_line(&log, opts.epochs, steps));
            }
            #[cfg(feature = "fs")]
            if let Some(cp) = &opts.checkpoint {
                save_checkpoint(model, cp, epoch, validation, &mut best)?;
            }
            history.epochs.push(log);
        }
        Ok(history)
    }
}

/// After `epoch`: updates `best` from the validation results `v` and writes the checkpoint
/// when it should be (see [`ModelCheckpoint`]).
#[cfg(feature = "fs")]
fn save_checkpoint(
    model: &Sequential,
    cp: &ModelCheckpoint,
    epoch: usize,
    v: Option<Evaluation>,
    best: &mut Option<(f64, String)>,
) -> Result<()> {
    let mut improved = false;
    if let Some(v) = v {
        let value = cp.monitor.score(v);
        improved = value.is_finite() && best.as_ref().is_none_or(|(b, _)| value > *b);
        if improved {
            *best = Some((value, epoch.to_string()));
        }
    }
    if cp.save_best_only && !improved {
        return Ok(());
    }
    let mut meta = HashMap::new();
    meta.insert("epoch".to_string(), epoch.to_string());
    if let Some(v) = v {
        meta.insert("val_accuracy".to_string(), v.accuracy.to_string());
        meta.insert("val_loss".to_string(), v.loss.to_string());
        meta.insert("monitor".to_string(), cp.monitor.key().to_string());
        if let Some((b, e)) = best.as_ref() {
            let b = match cp.monitor {
                Monitor::ValAccuracy => *b,
                Monitor::ValLoss => -*b,
            };
            meta.insert("best".to_string(), b.to_string());
            meta.insert("best_epoch".to_string(), e.clone());
        }
    }
    if cp.include_optimizer {
        let bytes = model.training_state_bytes("fit", meta)?;
        weights::write_atomic(&cp.path, &bytes)
    } else {
        model.save_weights_with(&cp.path, Some(meta))
    }
}

/// Names the epoch and step in a device loss during `fit`.
fn at_step(e: Error, epoch: usize, step: usize) -> Error {
    match e {
        Error::DeviceLost { reason, .. } => Error::DeviceLost {
            op: "fit",
            reason: format!(
                "{reason} (epoch {epoch}, step {step}; the weights of the last completed epoch are kept on the host)"
            ),
        },
        other => other,
    }
}

/// How often `fit`'s progress bar reads the running loss and accuracy back.
const PROGRESS_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

fn epoch_line(log: &EpochLog, epochs: usize, steps: usize) -> String {
    let mut s = format!(
        "Epoch {}/{epochs}: {steps}/{steps} - {:.1}s {:.0}ms/step - accuracy: {:.4} - loss: {:.4}",
        log.epoch,
        log.seconds,
        1000.0 * log.seconds / steps.max(1) as f64,
        log.accuracy,
        log.loss
    );
    if let Some(v) = log.validation {
        s.push_str(&format!(
            " - val_accuracy: {:.4} - val_loss: {:.4}",
            v.accuracy, v.loss
        ));
    }
    s
}
