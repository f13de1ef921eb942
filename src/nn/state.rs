//! Training states: the weights with everything else a run needs to go on exactly where it
//! stopped (optimizer state, step counter, seed), written by a [`ModelCheckpoint`] with
//! `include_optimizer` and read back by [`Sequential::load_training_state`].
//!
//! The file is a weights file (safetensors, written atomically) with extra tensors and
//! `__metadata__` keys; README.md's "Training checkpoints" section lists them:
//!
//! - every weight under its own name, BatchNorm moving statistics (`*/moving_mean`,
//!   `*/moving_variance`) included, as [`Sequential::save_weights`] writes them;
//! - per trainable-kind parameter `P` (every weight but the moving statistics), SGD's
//!   velocity `optimizer/P/velocity`, or Adam's moments `optimizer/P/m` and `optimizer/P/v`,
//!   each of `P`'s shape;
//! - the keys `training_state` (the format, `1`), `optimizer` (`sgd` or `adam`), `step` (the
//!   model's training steps so far: the dropout streams and Adam's step count `t`, since
//!   step `s` updates with `t = s + 1`), `optimizer_iterations` (the optimizer updates so
//!   far, equal to `step`), `seed` (the model's seed) and `epoch` (the epoch the file closes).
//!
//! [`ModelCheckpoint`]: crate::nn::ModelCheckpoint

use std::collections::HashMap;
#[cfg(feature = "fs")]
use std::path::Path;

use crate::nn::model::Sequential;
use crate::nn::optimizer::Optimizer;
use crate::nn::weights::{self, NamedTensor, OPTIMIZER_PREFIX, WeightSpec, WeightsOptions};
use crate::{Error, Result};

/// The `training_state` value this version writes and reads.
const FORMAT: &str = "1";

/// What [`Sequential::load_training_state`] restored, from the file's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingState {
    /// The epoch the file closes (1-based): pass it as
    /// [`Fit::initial_epoch`](crate::nn::Fit::initial_epoch) to go on with the next one.
    pub epoch: usize,
    /// The model's training steps taken (now the model's [`Sequential::steps_taken`]).
    pub step: u64,
    /// The model's seed (now the model's dropout and shuffling seed).
    pub seed: u64,
    /// The file's whole `__metadata__`.
    pub metadata: HashMap<String, String>,
}

/// The optimizer's name in the `optimizer` key, and as messages name it.
fn kind(o: &Optimizer) -> (&'static str, &'static str) {
    match o {
        Optimizer::Sgd { .. } => ("sgd", "SGD"),
        Optimizer::Adam { .. } => ("adam", "Adam"),
    }
}

/// The names of the optimizer's state slots, in the order the executor holds them.
fn slots(o: &Optimizer) -> &'static [&'static str] {
    match o {
        Optimizer::Sgd { .. } => &["velocity"],
        Optimizer::Adam { .. } => &["m", "v"],
    }
}

impl Sequential {
    /// The training state, as safetensors bytes: the weights, the optimizer state and the
    /// keys of the module docs added to `meta` (whose `epoch` the caller sets).
    #[cfg(feature = "fs")]
    pub(super) fn training_state_bytes(
        &self,
        op: &'static str,
        mut meta: HashMap<String, String>,
    ) -> Result<Vec<u8>> {
        let c = self.compiled(op)?;
        c.gpu.check_alive(op)?;
        let mut tensors = self.weights()?;
        for (p, state) in c.infos.iter().zip(&c.state) {
            if !p.is_weight {
                continue;
            }
            for (slot, t) in slots(&c.optimizer).iter().zip(state) {
                tensors.push(NamedTensor {
                    name: format!("{OPTIMIZER_PREFIX}{}/{slot}", p.name),
                    shape: p.shape.clone(),
                    data: t.read_f32("Tensor::to_vec")?,
                });
            }
        }
        meta.insert("training_state".into(), FORMAT.into());
        meta.insert("optimizer".into(), kind(&c.optimizer).0.into());
        meta.insert("step".into(), c.step.to_string());
        meta.insert("optimizer_iterations".into(), c.step.to_string());
        meta.insert("seed".into(), c.seed.to_string());
        weights::to_safetensors(&tensors, Some(meta))
    }

    /// Restores a training state written by a [`ModelCheckpoint`](crate::nn::ModelCheckpoint)
    /// with `include_optimizer` into this compiled model: the weights (BatchNorm moving
    /// statistics included), the optimizer state, the step counter and the seed, so that
    /// `fit` with [`Fit::initial_epoch`](crate::nn::Fit::initial_epoch) set to the returned
    /// [`TrainingState::epoch`] continues as the run that wrote the file would have, bit for
    /// bit on the same adapter (dropout masks and sample order are functions of the seed and
    /// the step). The model must have the same layers and be compiled with the same kind of
    /// optimizer; its hyperparameters (the learning rate, say) are the model's own. The
    /// header is read and checked before any tensor data, and the load is all or nothing:
    /// on any error the model is unchanged.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// # let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    /// # let train = train.subset(0..64)?;
    /// let path = std::env::temp_dir().join(format!("wgnn-doc-state-{}.safetensors", std::process::id()));
    /// let net = || Sequential::new(&[784]).with(Dense::new(10).unwrap());
    /// let mut model = net();
    /// model.compile(&gpu, Optimizer::adam(1e-3), 7)?;
    /// let cp = ModelCheckpoint::new(&path, Monitor::ValLoss).include_optimizer(true);
    /// let opts = Fit { epochs: 1, batch_size: 32, verbose: false, checkpoint: Some(cp), ..Fit::default() };
    /// model.fit(&train, &opts)?;
    ///
    /// let mut again = net();
    /// again.compile(&gpu, Optimizer::adam(1e-3), 0)?;
    /// let state = again.load_training_state(&path)?;
    /// assert_eq!((state.epoch, state.step, state.seed), (1, 2, 7));
    /// assert_eq!(again.weights()?, model.weights()?);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The model is not compiled; [`Error::Io`] naming the path; [`Error::Data`] naming the
    /// file when it holds no training state (a weights-only file), holds another optimizer's
    /// state (naming both), lacks or has a malformed key (`step`, `epoch`, `seed`), or when a
    /// tensor is missing, extra, of another shape or dtype (naming it and its layer), or not
    /// finite.
    #[cfg(feature = "fs")]
    pub fn load_training_state(&mut self, path: impl AsRef<Path>) -> Result<TrainingState> {
        let op = "load_training_state";
        let path = path.as_ref();
        let opts = WeightsOptions::default();
        self.compiled(op)?;
        let meta = weights::read_metadata_file(path, &opts)?;
        let (specs, state) = self.state_specs(op, &path.display().to_string(), meta)?;
        let loaded = weights::read_safetensors_file(path, &specs, &opts)?;
        self.restore_state(op, &loaded.data, state)
    }

    /// As [`Sequential::load_training_state`], from bytes in memory (`name` is used in
    /// messages).
    ///
    /// # Errors
    /// As [`Sequential::load_training_state`].
    pub fn load_training_state_bytes(&mut self, bytes: &[u8], name: &str) -> Result<TrainingState> {
        let op = "load_training_state";
        let opts = WeightsOptions::default();
        self.compiled(op)?;
        let meta = weights::read_metadata(bytes, name, &opts)?;
        let (specs, state) = self.state_specs(op, name, meta)?;
        let loaded = weights::from_safetensors(bytes, name, &specs, &opts)?;
        self.restore_state(op, &loaded.data, state)
    }

    /// Checks a training state's metadata against the model; returns the tensors the file
    /// must hold (the weights, then the optimizer slots) and the state its keys describe.
    fn state_specs(
        &self,
        op: &'static str,
        path: &str,
        meta: HashMap<String, String>,
    ) -> Result<(Vec<WeightSpec>, TrainingState)> {
        let err = |msg: String| Error::Data {
            path: path.to_string(),
            msg,
        };
        let c = self.compiled(op)?;
        match meta.get("training_state").map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(err(format!(
                    "training_state format {other:?}; this version reads {FORMAT:?}"
                )));
            }
            None => {
                return Err(err(
                    "holds no training state (no \"training_state\" key; a weights-only file?); \
                     write one with ModelCheckpoint::include_optimizer(true)"
                        .into(),
                ));
            }
        }
        let (key, model_kind) = kind(&c.optimizer);
        let file_kind = meta.get("optimizer").map(String::as_str);
        if file_kind != Some(key) {
            let file = match file_kind {
                Some("sgd") => "SGD".to_string(),
                Some("adam") => "Adam".to_string(),
                Some(o) => format!("{o:?}"),
                None => "no".to_string(),
            };
            return Err(err(format!(
                "holds {file} optimizer state, but the model is compiled with {model_kind}"
            )));
        }
        fn parse<T: std::str::FromStr>(
            meta: &HashMap<String, String>,
            key: &str,
            err: &dyn Fn(String) -> Error,
        ) -> Result<T> {
            let v = meta
                .get(key)
                .ok_or_else(|| err(format!("training state without the {key:?} key")))?;
            v.parse().map_err(|_| {
                err(format!(
                    "training state key {key:?} = {v:?} is not a number"
                ))
            })
        }
        let step: u64 = parse(&meta, "step", &err)?;
        let iterations: u64 = parse(&meta, "optimizer_iterations", &err)?;
        if iterations != step {
            return Err(err(format!(
                "optimizer_iterations {iterations} differs from step {step}"
            )));
        }
        let epoch: usize = parse(&meta, "epoch", &err)?;
        let seed: u64 = parse(&meta, "seed", &err)?;
        let mut specs = self.weight_specs(op)?;
        let owners: Vec<String> = specs.iter().map(|s| s.layer.clone()).collect();
        for (p, owner) in c.infos.iter().zip(owners) {
            if !p.is_weight {
                continue;
            }
            for slot in slots(&c.optimizer) {
                specs.push(WeightSpec {
                    name: format!("{OPTIMIZER_PREFIX}{}/{slot}", p.name),
                    shape: p.shape.clone(),
                    layer: format!("{owner}'s {model_kind} state"),
                });
            }
        }
        Ok((
            specs,
            TrainingState {
                epoch,
                step,
                seed,
                metadata: meta,
            },
        ))
    }

    /// Uploads checked values (the weights, then the optimizer slots, in `state_specs`'
    /// order) and sets the step and the seed.
    fn restore_state(
        &mut self,
        op: &'static str,
        data: &[Vec<f32>],
        state: TrainingState,
    ) -> Result<TrainingState> {
        let c = self
            .compiled
            .as_mut()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))?;
        // A queue write on a lost device fails silently: report the loss instead.
        c.gpu.check_alive(op)?;
        let mut next = data.iter();
        let mut host = Vec::with_capacity(c.values.len());
        for (p, t) in c.infos.iter().zip(&c.values) {
            let v = next
                .next()
                .ok_or_else(|| Error::internal(op, "fewer tensors than parameters"))?;
            c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(v));
            host.push(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: v.clone(),
            });
        }
        let n_slots = slots(&c.optimizer).len();
        for (p, state) in c.infos.iter().zip(&c.state) {
            if !p.is_weight {
                continue;
            }
            for t in state.iter().take(n_slots) {
                let v = next
                    .next()
                    .ok_or_else(|| Error::internal(op, "fewer tensors than optimizer slots"))?;
                c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(v));
            }
        }
        c.step = state.step;
        c.seed = state.seed;
        c.host_copy = Some(host);
        c.predict
            .lock()
            .map_err(|_| Error::internal(op, "a poisoned plan cache"))?
            .clear();
        Ok(state)
    }
}
