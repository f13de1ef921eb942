//! `Sequential`: build, compile, evaluate, predict (weights in `params`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::data::Dataset;
use crate::data::resident::GpuDataset;
use crate::graph::Graph;
use crate::graph::plan::ParamRefs;
use crate::graph::run::{Drafted, Predictor, evaluate, evaluate_request};
use crate::nn::fit::{Evaluation, OnNonFinite};
use crate::nn::layers::Layer;
use crate::nn::lower::{Lowered, ParamInfo, init_values, lower};
use crate::nn::optimizer::Optimizer;
#[cfg(feature = "testing")]
use crate::nn::params::read_named;
use crate::nn::weights::NamedTensor;
use crate::{Error, Gpu, Result, Tensor};

/// A cached prediction plan's key: batch size, Monte-Carlo copies and seed.
pub(super) type PlanKey = (usize, usize, u64);

/// A compiled model's state: its (unfused) graph, parameters on the GPU, settings.
pub(super) struct Compiled {
    pub gpu: Gpu,
    pub graph: Graph,
    pub infos: Vec<ParamInfo>,
    pub values: Vec<Tensor>,
    pub grads: Vec<Tensor>,
    pub state: Vec<Vec<Tensor>>,
    pub optimizer: Optimizer,
    /// `optimizer` lowered and checked.
    pub update: crate::spec::Update,
    pub seed: u64,
    /// Training steps taken over the model's life (moves the dropout streams).
    pub step: u64,
    /// Prediction plans by batch size and, for Monte-Carlo dropout, copies and seed ((0, 0):
    /// plain prediction; one Monte-Carlo plan is kept at a time), each locked while a call
    /// uses its buffers.
    pub predict: Mutex<HashMap<PlanKey, Arc<Mutex<Predictor>>>>,
    /// Fuse `dense -> relu -> dropout` (default; off only to test fusion against the ops).
    pub fuse: bool,
    /// What training does at a non-finite step.
    pub on_non_finite: OnNonFinite,
    /// Whether plans check gradients for non-finite values (off only to measure the cost).
    pub checks: bool,
    /// The weights at the end of the last completed epoch, read back then.
    pub host_copy: Option<Vec<NamedTensor>>,
    /// Test hook: the step made non-finite, and how (1: loss, 2: gradient).
    pub poison_step: Option<u64>,
    pub poison_kind: u32,
}

impl Compiled {
    /// What the plans bind of the model.
    pub fn refs(&self) -> ParamRefs<'_> {
        ParamRefs {
            values: &self.values,
            grads: &self.grads,
            state: &self.state,
            trainable: self.infos.iter().map(|p| p.trainable).collect(),
            l2: self.infos.iter().map(|p| p.l2).collect(),
            update: self.update,
            seed: self.seed,
            checks: self.checks,
            fuse: self.fuse,
        }
    }
}

/// A stack of layers, as Keras' `Sequential`, whose last layer gives the logits.
///
/// Build it, [`compile`](Sequential::compile) it for a [`Gpu`], then
/// [`fit`](Sequential::fit), [`evaluate`](Sequential::evaluate) and
/// [`predict`](Sequential::predict). Weights stay on the GPU; nothing is read back but the
/// metrics at the end of each epoch and what `predict` and `save_weights` return.
pub struct Sequential {
    pub(super) input: Vec<usize>,
    pub(super) layers: Vec<Layer>,
    pub(super) compiled: Option<Compiled>,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("input", &self.input)
            .field("layers", &self.layers)
            .finish()
    }
}

impl Sequential {
    /// An empty model taking samples of `input` shape (`[784]`, or NHWC `[28, 28, 1]`
    /// without the batch axis).
    pub fn new(input: &[usize]) -> Sequential {
        Sequential {
            input: input.to_vec(),
            layers: Vec::new(),
            compiled: None,
        }
    }

    /// Appends a layer (builder form).
    pub fn with(mut self, layer: impl Into<Layer>) -> Sequential {
        self.add(layer);
        self
    }

    /// Appends a layer (Keras' `model.add`). A compiled model must be compiled again.
    pub fn add(&mut self, layer: impl Into<Layer>) -> &mut Sequential {
        self.layers.push(layer.into());
        self.compiled = None;
        self
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Freezes (`false`) or unfreezes layer `index`; takes effect at the next `fit` (the
    /// weights are kept).
    ///
    /// # Errors
    /// When `index` is out of range.
    pub fn set_trainable(&mut self, index: usize, trainable: bool) -> Result<()> {
        let n = self.layers.len();
        let layer = self.layers.get_mut(index).ok_or_else(|| {
            Error::arg(
                "set_trainable",
                format!("layer index {index} is out of range for {n} layers"),
            )
        })?;
        layer.set_trainable(trainable);
        if let Some(c) = &mut self.compiled {
            let lw = lower("set_trainable", &self.input, &self.layers)?;
            c.graph = lw.graph;
            for (ci, ni) in c.infos.iter_mut().zip(lw.params) {
                ci.trainable = ni.trainable;
            }
            c.predict.lock().map_err(|_| poisoned())?.clear();
        }
        Ok(())
    }

    /// Checks every shape, places the weights on `gpu` (Glorot-uniform from `seed`, biases
    /// zero) with the optimizer's state, and fixes the dropout seed. Compiling again resets
    /// the weights.
    ///
    /// # Errors
    /// Shape errors naming the layer (index and type) and both shapes; optimizer arguments
    /// out of range.
    pub fn compile(&mut self, gpu: &Gpu, optimizer: Optimizer, seed: u64) -> Result<()> {
        let update = optimizer.lower()?;
        gpu.check_alive("compile")?;
        let Lowered {
            graph,
            params: infos,
            ..
        } = lower("compile", &self.input, &self.layers)?.check_logits("compile")?;
        let init = init_values(&infos, seed);
        let mut values = Vec::with_capacity(infos.len());
        let mut grads = Vec::with_capacity(infos.len());
        let mut state = Vec::with_capacity(infos.len());
        for (p, v) in infos.iter().zip(&init) {
            values.push(Tensor::from_slice(gpu, v, &p.shape)?);
            grads.push(Tensor::zeros(gpu, &p.shape)?);
            state.push(
                (0..update.slots())
                    .map(|_| Tensor::zeros(gpu, &p.shape))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        self.compiled = Some(Compiled {
            gpu: gpu.clone(),
            graph,
            infos,
            values,
            grads,
            state,
            optimizer,
            update,
            seed,
            step: 0,
            predict: Mutex::new(HashMap::new()),
            fuse: true,
            poison_step: None,
            poison_kind: 1,
            host_copy: None,
            on_non_finite: OnNonFinite::Stop,
            checks: true,
        });
        Ok(())
    }

    pub(super) fn compiled(&self, op: &'static str) -> Result<&Compiled> {
        self.compiled
            .as_ref()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))
    }

    /// The number of classes the model predicts.
    ///
    /// # Errors
    /// When the model's shapes do not check.
    pub fn classes(&self) -> Result<usize> {
        Ok(lower("classes", &self.input, &self.layers)?
            .check_logits("classes")?
            .graph
            .output()[0])
    }
}

pub(super) fn poisoned() -> Error {
    Error::arg(
        "Sequential",
        "a thread panicked while holding the model's plan cache",
    )
}

impl Sequential {
    /// Checks that `data` fits the model: image size, labels below the class count.
    pub(super) fn check_data(&self, op: &'static str, what: &str, data: &Dataset) -> Result<()> {
        let c = self.compiled(op)?;
        data.check().map_err(|e| match e {
            Error::Data { msg, .. } => {
                Error::arg(op, format!("the {what} set is inconsistent: {msg}"))
            }
            e => e,
        })?;
        if data.count == 0 {
            return Err(Error::arg(op, format!("the {what} set is empty")));
        }
        let in_len: usize = c.graph.input.iter().product();
        if data.image_len() != in_len {
            return Err(Error::shape(
                op,
                format!(
                    "{what} images are {}x{}x{} ({} values), the model's input {:?} takes {in_len}",
                    data.height,
                    data.width,
                    data.channels,
                    data.image_len(),
                    c.graph.input
                ),
            ));
        }
        let classes = c.graph.output()[0];
        if let Some((i, &l)) = data
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| usize::from(**l) >= classes)
        {
            return Err(Error::arg(
                op,
                format!(
                    "{what} label {l} at sample {i} is out of range for the model's {classes} classes"
                ),
            ));
        }
        Ok(())
    }

    /// Loss and accuracy over a resident data set, for the public call `op`.
    pub(super) fn evaluate_resident(
        &self,
        op: &'static str,
        data: &GpuDataset,
        batch: usize,
    ) -> Result<Evaluation> {
        let c = self.compiled(op)?;
        let r = evaluate(&c.gpu, op, &c.graph, &c.refs(), data, batch)?;
        Ok(Evaluation {
            loss: r.loss,
            accuracy: r.accuracy,
        })
    }

    /// Mean loss and accuracy over `data` in inference mode (dropout off, BatchNorm moving
    /// statistics), `batch_size` samples per step. The blocking form of
    /// [`Sequential::evaluate_async`] (native only).
    ///
    /// # Errors
    /// As [`Sequential::fit`] for the data set; batch size 0.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
        let resident = self.evaluation_data("evaluate", data, batch_size)?;
        self.evaluate_resident("evaluate", &resident, batch_size)
    }

    /// As [`Sequential::evaluate`], without blocking: every step is recorded and submitted
    /// when the future is first polled (it is an `async fn`), and the metrics are then read back by a future that never waits for the device (see
    /// [`Tensor::to_vec_async`]). Same values as [`Sequential::evaluate`], bit for bit.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// # let (_, test) = wgnn::data::shipped_fashion_mnist()?;
    /// let mut model = Sequential::new(&[784]).with(Dense::new(10)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let test = test.subset(0..100)?;
    /// // natively; `.await` in async code (a browser's `spawn_local`)
    /// let e = pollster::block_on(model.evaluate_async(&test, 50))?;
    /// assert_eq!(e, model.evaluate(&test, 50)?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::evaluate`].
    pub async fn evaluate_async(&self, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
        let op = "evaluate_async";
        let resident = self.evaluation_data(op, data, batch_size)?;
        let c = self.compiled(op)?;
        let pending =
            evaluate_request(&c.gpu, op, &c.graph, &c.refs(), &resident, batch_size).await?;
        let r = pending.await?;
        Ok(Evaluation {
            loss: r.loss,
            accuracy: r.accuracy,
        })
    }

    /// Checks `data` and `batch_size` for the evaluation `op` and uploads the data set.
    fn evaluation_data(
        &self,
        op: &'static str,
        data: &Dataset,
        batch_size: usize,
    ) -> Result<GpuDataset> {
        if batch_size == 0 {
            return Err(Error::arg(op, "batch_size must be at least 1, got 0"));
        }
        self.check_data(op, "evaluation", data)?;
        let gpu = &self.compiled(op)?.gpu;
        GpuDataset::upload(gpu, op, &data.images, &data.labels, data.count)
    }

    /// Logits `[n, classes]` (row-major) for `n` samples in `x` (`n * input size` values), in
    /// inference mode. Safe to call from several threads at once. The blocking form of
    /// [`Sequential::predict_async`] (native only).
    ///
    /// # Errors
    /// When `x.len()` is not a multiple of the input size or is empty.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let predictor = self.predictor("predict", x)?;
        let predictor = predictor.lock().map_err(|_| poisoned())?;
        predictor.predict(x)
    }

    /// As [`Sequential::predict`], without blocking: every batch is uploaded, run and its
    /// logits' copy recorded when the future is first polled, in one go (no other call uses
    /// the cached plan meanwhile); then the logits are read back by futures that never wait
    /// for the device. Same values as [`Sequential::predict`], bit for bit.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// let mut model = Sequential::new(&[4]).with(Dense::new(3)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let x = [0.5f32; 8]; // two samples
    /// let logits = pollster::block_on(model.predict_async(&x))?;
    /// assert_eq!(logits, model.predict(&x)?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::predict`].
    pub async fn predict_async(&self, x: &[f32]) -> Result<Vec<f32>> {
        let op = "predict_async";
        let batch = self.predict_batch(op, x)?;
        let predictor = match self.cached(op, (batch, 0, 0))? {
            Some(p) => p,
            None => {
                let c = self.compiled(op)?;
                let p = Predictor::draft(&c.gpu, "predict", &c.graph, &c.refs(), batch, None)?
                    .make_async(&c.gpu)
                    .await?;
                self.cache_predictor(op, (batch, 0, 0), p)?
            }
        };
        let pending = {
            let predictor = predictor.lock().map_err(|_| poisoned())?;
            predictor.request(x)?
        };
        let mut out = Vec::with_capacity(x.len());
        for (readback, _rows) in pending {
            let bytes = crate::tensor::first(readback.await?);
            out.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
        }
        Ok(out)
    }

    /// Checks `x` for the prediction `op`; the batch size its plan takes (at most 256).
    fn predict_batch(&self, op: &'static str, x: &[f32]) -> Result<usize> {
        let c = self.compiled(op)?;
        c.gpu.check_alive(op)?;
        let in_len: usize = c.graph.input.iter().product();
        if x.is_empty() || !x.len().is_multiple_of(in_len) {
            return Err(Error::shape(
                op,
                format!(
                    "{} values are not a whole number of samples of {:?} ({in_len} values)",
                    x.len(),
                    c.graph.input
                ),
            ));
        }
        Ok((x.len() / in_len).min(256))
    }

    /// Checks `x` for the prediction `op` and returns the cached plan for its batch size.
    #[cfg(not(target_arch = "wasm32"))]
    fn predictor(&self, op: &'static str, x: &[f32]) -> Result<Arc<Mutex<Predictor>>> {
        let batch = self.predict_batch(op, x)?;
        self.cached_predictor(op, batch, None)
    }

    /// The cached prediction plan for `key` (batch, Monte-Carlo copies, seed), if made.
    fn cached(&self, op: &'static str, key: PlanKey) -> Result<Option<Arc<Mutex<Predictor>>>> {
        let c = self.compiled(op)?;
        let cache = c.predict.lock().map_err(|_| poisoned())?;
        Ok(cache.get(&key).cloned())
    }

    /// Caches `p` as the plan for `key` (for Monte-Carlo plans, in place of any other
    /// seed's) and returns the cached plan: `p`, or the one another thread cached first.
    fn cache_predictor(
        &self,
        op: &'static str,
        key: PlanKey,
        p: Predictor,
    ) -> Result<Arc<Mutex<Predictor>>> {
        let c = self.compiled(op)?;
        let mut cache = c.predict.lock().map_err(|_| poisoned())?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        if key.1 > 0 {
            cache.retain(|k, _| k.1 == 0);
        }
        let p = Arc::new(Mutex::new(p));
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// The cached plan for `batch` samples at a time, plain (`mc` `None`) or Monte-Carlo
    /// (`mc`: copies and seed), made on first use for the public call `op` (natively the
    /// autotuner times its new matmul shapes then, waiting for the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn cached_predictor(
        &self,
        op: &'static str,
        batch: usize,
        mc: Option<(usize, u64)>,
    ) -> Result<Arc<Mutex<Predictor>>> {
        let (samples, seed) = mc.unwrap_or((0, 0));
        let key = (batch, samples, seed);
        if let Some(p) = self.cached(op, key)? {
            return Ok(p);
        }
        let c = self.compiled(op)?;
        let mut refs = c.refs();
        if mc.is_some() {
            refs.seed = seed;
            // One Monte-Carlo plan at a time: the others' memory goes before this one's.
            c.predict
                .lock()
                .map_err(|_| poisoned())?
                .retain(|k, _| k.1 == 0);
        }
        let plan_op = if mc.is_some() { op } else { "predict" };
        let p = Predictor::draft(&c.gpu, plan_op, &c.graph, &refs, batch, mc.map(|m| m.0))?
            .make(&c.gpu)?;
        self.cache_predictor(op, key, p)
    }

    /// Work counters of the model's [`Gpu`] (submissions, buffers and bind groups created,
    /// bytes moved, device bytes held).
    ///
    /// # Errors
    /// When the model is not compiled.
    pub fn stats(&self) -> Result<crate::ExecStats> {
        Ok(self.compiled("stats")?.gpu.counters())
    }

    /// Turns fusion of `dense -> relu -> dropout` and `conv2d -> relu -> spatial dropout` off
    /// or on (on by default). For tests that hold the fused kernels to the separate ops;
    /// masks are the same either way.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn set_fusion(&mut self, on: bool) -> Result<()> {
        let c = self
            .compiled
            .as_mut()
            .ok_or_else(|| Error::arg("set_fusion", "the model is not compiled"))?;
        c.fuse = on;
        c.predict.lock().map_err(|_| poisoned())?.clear();
        Ok(())
    }

    /// Turns the per-step check of every gradient for non-finite values off or on (on by
    /// default; a compile turns it on). For measuring its cost: without it a non-finite
    /// gradient with a finite loss is not caught before the update.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn set_finite_checks(&mut self, on: bool) -> Result<()> {
        let c = self
            .compiled
            .as_mut()
            .ok_or_else(|| Error::arg("set_finite_checks", "the model is not compiled"))?;
        c.checks = on;
        Ok(())
    }

    /// Test hook: makes the loss of global training step `step` NaN (`gradient` false) or
    /// the first checked gradient non-finite (`gradient` true). Needs a `Gpu` with test hooks
    /// (`Gpu::enable_test_hooks`).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn inject_non_finite(&mut self, step: Option<u64>, gradient: bool) -> Result<()> {
        if let Some(c) = self.compiled.as_ref()
            && !c.gpu.test_hooks()
        {
            return Err(Error::arg(
                "inject_non_finite",
                "the model's Gpu has no test hooks (Gpu::enable_test_hooks before compiling any kernel)",
            ));
        }
        if let Some(c) = self.compiled.as_mut() {
            c.poison_kind = if gradient { 2 } else { 1 };
        }
        self.compiled
            .as_mut()
            .ok_or_else(|| Error::arg("inject_non_finite", "the model is not compiled"))?
            .poison_step = step;
        Ok(())
    }

    /// The gradients of the last training step, read back (frozen parameters: zeros).
    ///
    /// # Errors
    /// When the model is not compiled, or on device errors.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn gradients(&self) -> Result<Vec<NamedTensor>> {
        let c = self.compiled("gradients")?;
        read_named(&c.infos, &c.grads)
    }

    /// Training steps taken so far (the dropout streams move with it).
    pub fn steps_taken(&self) -> u64 {
        self.compiled.as_ref().map_or(0, |c| c.step)
    }
}
