//! `Sequential`: build, compile, fit, evaluate, predict, save and load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::{RngExt, SeedableRng};

use crate::data::Dataset;
use crate::graph::plan::{GpuDataset, Metrics, Mode, ParamRefs, Plan, Reading};
use crate::graph::{DropoutOp, Graph, Node, Op, layer_err};
use crate::kernels::step::Step as StepUniform;
use crate::nn::layers::{Activation, Layer};
use crate::nn::weights::{self, NamedTensor, WeightSpec, WeightsOptions};
use crate::spec::Padding;
use crate::{Error, Gpu, Result, Tensor};

/// How the weights are updated. L2 factors belong to the layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent, with Keras' momentum rule `v = m v - lr g; w += v`.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum in [0, 1).
        momentum: f32,
    },
    /// Adam with bias correction (Keras' form).
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Stabiliser.
        epsilon: f32,
    },
}

impl Optimizer {
    /// SGD with learning rate `lr` and `momentum`.
    pub fn sgd(lr: f32, momentum: f32) -> Optimizer {
        Optimizer::Sgd { lr, momentum }
    }

    /// Adam with learning rate `lr` and Keras' defaults (0.9, 0.999, 1e-7).
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// The description the executor runs (L2 factors come from the layers), checked once
    /// here: `Err` naming `compile` and the value out of range.
    pub(crate) fn lower(&self) -> Result<crate::spec::Update> {
        let update = match *self {
            Optimizer::Sgd { lr, momentum } => crate::spec::Update::Sgd(crate::spec::Sgd {
                lr,
                momentum,
                weight_decay: 0.0,
            }),
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => crate::spec::Update::Adam(crate::spec::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                weight_decay: 0.0,
            }),
        };
        update.check("compile")?;
        Ok(update)
    }
}

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
/// replaced by the first epoch with a finite metric.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCheckpoint {
    /// The safetensors file to write (atomically).
    pub path: PathBuf,
    /// The metric watched.
    pub monitor: Monitor,
    /// Write only on improvement.
    pub save_best_only: bool,
}

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

impl ModelCheckpoint {
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
    /// Passes over the training set (at least 1).
    pub epochs: usize,
    /// Samples per step (at least 1); the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Evaluated after each epoch.
    pub validation: Option<&'a Dataset>,
    /// Shuffle the training set every epoch (from the model's seed).
    pub shuffle: bool,
    /// A progress bar and a Keras-like line per epoch on stderr.
    pub verbose: bool,
    /// Keep the best weights on disk.
    pub checkpoint: Option<ModelCheckpoint>,
    /// Stop (default) or skip at a non-finite loss or gradient.
    pub on_non_finite: OnNonFinite,
}

impl Default for Fit<'_> {
    fn default() -> Self {
        Fit {
            epochs: 1,
            batch_size: 32,
            validation: None,
            shuffle: true,
            verbose: true,
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

/// A parameter's description.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// Updated by the optimizer (false for frozen layers and BatchNorm moving statistics).
    pub trainable: bool,
    /// L2 factor (kernels only).
    pub l2: f32,
    /// Initial value rule.
    pub init: Init,
    /// Counted as a trainable parameter in the summary (moving statistics never are).
    pub is_weight: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Init {
    /// Glorot uniform with these fans.
    Glorot(usize, usize),
    Zeros,
    Ones,
}

struct Compiled {
    gpu: Gpu,
    graph: Graph,
    infos: Vec<ParamInfo>,
    values: Vec<Tensor>,
    grads: Vec<Tensor>,
    state: Vec<Vec<Tensor>>,
    optimizer: Optimizer,
    /// `optimizer` lowered and checked.
    update: crate::spec::Update,
    seed: u64,
    /// Training steps taken over the model's life (moves the dropout streams).
    step: u64,
    predict: Mutex<HashMap<usize, Arc<Mutex<Plan>>>>,
    /// Fuse `dense -> relu -> dropout` (default; off only to test fusion against the ops).
    fuse: bool,
    /// What training does at a non-finite step.
    on_non_finite: OnNonFinite,
    /// Whether plans check gradients for non-finite values (off only to measure the cost).
    checks: bool,
    /// The weights at the end of the last completed epoch, read back then.
    host_copy: Option<Vec<NamedTensor>>,
    /// Test hook: the step made non-finite, and how (1: loss, 2: gradient).
    poison_step: Option<u64>,
    poison_kind: u32,
}

impl Compiled {
    /// The graph the plans run: fused unless fusion was turned off.
    fn planned_graph(&self) -> Graph {
        if self.fuse {
            self.graph.clone().fuse()
        } else {
            self.graph.clone()
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
    input: Vec<usize>,
    layers: Vec<Layer>,
    compiled: Option<Compiled>,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("input", &self.input)
            .field("layers", &self.layers)
            .finish()
    }
}

fn keras_name(kind: &str) -> &'static str {
    match kind {
        "Dense" => "dense",
        "Conv2D" => "conv2d",
        "MaxPooling2D" => "max_pooling2d",
        "BatchNormalization" => "batch_normalization",
        "Flatten" => "flatten",
        "ReLU" => "re_lu",
        _ => "dropout",
    }
}

/// Output size of a convolution or pooling along one axis.
fn out_size(n: usize, k: usize, s: usize, pad: Padding) -> Option<usize> {
    match pad {
        Padding::Valid => (n >= k).then(|| (n - k) / s + 1),
        Padding::Same => Some(n.div_ceil(s)),
    }
}

/// Lowers `layers` to a graph over per-sample `input`, checking every shape; returns the
/// graph (fused), the parameters in order, and each layer's Keras name.
pub(crate) fn lower(input: &[usize], layers: &[Layer]) -> Result<Lowered> {
    if input.is_empty() || input.contains(&0) {
        return Err(Error::shape(
            "compile",
            format!("input shape {input:?} must be non-empty with every dimension at least 1"),
        ));
    }
    let mut shape = input.to_vec();
    let mut nodes = Vec::new();
    let mut params: Vec<ParamInfo> = Vec::new();
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let kind = layer.kind();
        let c = counts.entry(kind).or_insert(0);
        let name = if *c == 0 {
            keras_name(kind).to_string()
        } else {
            format!("{}_{c}", keras_name(kind))
        };
        *c += 1;
        let at = (i, kind);
        let mut param = |suffix: &str,
                         shape: Vec<usize>,
                         trainable: bool,
                         l2: f32,
                         init: Init,
                         is_weight: bool|
         -> usize {
            params.push(ParamInfo {
                name: format!("{name}/{suffix}"),
                shape,
                trainable,
                l2,
                init,
                is_weight,
            });
            params.len() - 1
        };
        let mut push = |op: Op, out: Vec<usize>, input: &[usize]| {
            nodes.push(Node {
                op,
                layer: at,
                input: input.to_vec(),
                output: out,
            })
        };
        match layer {
            Layer::Dense(d) => {
                if shape.len() != 1 {
                    return Err(layer_err(
                        at,
                        format!("expects a flat input, got {shape:?}; add Flatten before it"),
                    ));
                }
                let fan_in = shape[0];
                let w = param(
                    "kernel",
                    vec![fan_in, d.units],
                    d.trainable,
                    d.l2,
                    Init::Glorot(fan_in, d.units),
                    true,
                );
                let b = d
                    .use_bias
                    .then(|| param("bias", vec![d.units], d.trainable, 0.0, Init::Zeros, true));
                let out = vec![d.units];
                push(
                    Op::Dense {
                        w,
                        b,
                        relu: d.activation == Activation::Relu,
                        dropout: None,
                    },
                    out.clone(),
                    &shape,
                );
                shape = out;
            }
            Layer::Conv2d(cv) => {
                if shape.len() != 3 {
                    return Err(layer_err(
                        at,
                        format!("expects an [height, width, channels] input, got {shape:?}"),
                    ));
                }
                let [kh, kw] = cv.kernel;
                let (oh, ow) = match (
                    out_size(shape[0], kh, cv.stride, cv.padding),
                    out_size(shape[1], kw, cv.stride, cv.padding),
                ) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return Err(layer_err(
                            at,
                            format!(
                                "kernel {kh}x{kw} is larger than its input {shape:?} with valid padding"
                            ),
                        ));
                    }
                };
                let cin = shape[2];
                let w = param(
                    "kernel",
                    vec![kh, kw, cin, cv.filters],
                    cv.trainable,
                    cv.l2,
                    Init::Glorot(kh * kw * cin, kh * kw * cv.filters),
                    true,
                );
                let b = cv.use_bias.then(|| {
                    param(
                        "bias",
                        vec![cv.filters],
                        cv.trainable,
                        0.0,
                        Init::Zeros,
                        true,
                    )
                });
                let out = vec![oh, ow, cv.filters];
                push(
                    Op::Conv2d {
                        w,
                        b,
                        stride: cv.stride,
                        padding: cv.padding,
                    },
                    out.clone(),
                    &shape,
                );
                if cv.activation == Activation::Relu {
                    push(Op::Relu, out.clone(), &out);
                }
                shape = out;
            }
            Layer::MaxPool2d(p) => {
                if shape.len() != 3 {
                    return Err(layer_err(
                        at,
                        format!("expects an [height, width, channels] input, got {shape:?}"),
                    ));
                }
                let oh = out_size(shape[0], p.window[0], p.stride[0], Padding::Valid);
                let ow = out_size(shape[1], p.window[1], p.stride[1], Padding::Valid);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(layer_err(
                        at,
                        format!("window {:?} is larger than its input {shape:?}", p.window),
                    ));
                };
                let out = vec![oh, ow, shape[2]];
                push(
                    Op::MaxPool {
                        window: p.window,
                        stride: p.stride,
                    },
                    out.clone(),
                    &shape,
                );
                shape = out;
            }
            Layer::BatchNorm(bn) => {
                let c = *shape.last().unwrap_or(&1);
                let gamma = param("gamma", vec![c], bn.trainable, 0.0, Init::Ones, true);
                let beta = param("beta", vec![c], bn.trainable, 0.0, Init::Zeros, true);
                let mean = param("moving_mean", vec![c], false, 0.0, Init::Zeros, false);
                let var = param("moving_variance", vec![c], false, 0.0, Init::Ones, false);
                let op = Op::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    epsilon: bn.epsilon,
                    momentum: bn.momentum,
                    frozen: !bn.trainable,
                };
                push(op, shape.clone(), &shape);
            }
            Layer::Flatten => {
                let out = vec![shape.iter().product()];
                push(Op::Reshape, out.clone(), &shape);
                shape = out;
            }
            Layer::Relu => push(Op::Relu, shape.clone(), &shape),
            Layer::Dropout(d) => push(
                Op::Dropout(DropoutOp {
                    rate: d.rate,
                    stream: i as u64,
                }),
                shape.clone(),
                &shape,
            ),
        }
        names.push(name);
        shapes.push(shape.clone());
    }
    Ok(Lowered {
        graph: Graph {
            input: input.to_vec(),
            nodes,
        }
        .fuse(),
        params,
        names,
        shapes,
    })
}

/// A model lowered to its graph.
pub(crate) struct Lowered {
    pub graph: Graph,
    pub params: Vec<ParamInfo>,
    /// Keras name of each layer.
    pub names: Vec<String>,
    /// Per-sample output shape of each layer.
    pub shapes: Vec<Vec<usize>>,
}

impl Lowered {
    /// `Err` unless the model ends in logits `[classes]`, classes >= 2.
    fn check_logits(self) -> Result<Lowered> {
        let out = self.graph.output();
        if out.len() != 1 || out[0] < 2 {
            return Err(Error::shape(
                "compile",
                format!(
                    "the last layer must give logits over at least 2 classes, shape [classes]; it gives {out:?}"
                ),
            ));
        }
        Ok(self)
    }
}

/// Host initial values, Glorot-uniform from a seeded generator.
fn init_values(infos: &[ParamInfo], seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    infos
        .iter()
        .map(|p| {
            let n: usize = p.shape.iter().product();
            match p.init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::Glorot(fi, fo) => {
                    let limit = (6.0 / (fi + fo) as f64).sqrt() as f32;
                    (0..n).map(|_| rng.random_range(-limit..limit)).collect()
                }
            }
        })
        .collect()
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
            let lw = lower(&self.input, &self.layers)?;
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
        let Lowered {
            graph,
            params: infos,
            ..
        } = lower(&self.input, &self.layers)?.check_logits()?;
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

    fn compiled(&self, op: &'static str) -> Result<&Compiled> {
        self.compiled
            .as_ref()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))
    }

    /// The number of classes the model predicts.
    ///
    /// # Errors
    /// When the model's shapes do not check.
    pub fn classes(&self) -> Result<usize> {
        Ok(lower(&self.input, &self.layers)?
            .check_logits()?
            .graph
            .output()[0])
    }

    /// A Keras-like table of layers, output shapes and parameter counts.
    ///
    /// # Errors
    /// When the model's shapes do not check.
    pub fn summary(&self) -> Result<String> {
        let lw = lower(&self.input, &self.layers)?;
        let mut rows = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = format!("{}/", lw.names[i]);
            let count: usize = lw
                .params
                .iter()
                .filter(|p| p.name.starts_with(&prefix))
                .map(|p| p.shape.iter().product::<usize>())
                .sum();
            rows.push((
                format!("{} ({})", lw.names[i], layer.kind()),
                format!("(None, {})", join(&lw.shapes[i])),
                count,
            ));
        }
        let size = |p: &ParamInfo| p.shape.iter().product::<usize>();
        let total: usize = lw.params.iter().map(size).sum();
        let trainable: usize = lw
            .params
            .iter()
            .filter(|p| p.trainable && p.is_weight)
            .map(size)
            .sum();
        let thin = "─".repeat(72);
        let thick = "═".repeat(72);
        let mut s = format!(
            "Model: \"sequential\"\n{thin}\n{:<34}{:<26}{:>12}\n{thick}\n",
            "Layer (type)", "Output Shape", "Param #"
        );
        for (name, shape, count) in rows {
            s.push_str(&format!("{name:<34}{shape:<26}{:>12}\n", thousands(count)));
        }
        s.push_str(&format!(
            "{thick}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{thin}\n",
            thousands(total),
            thousands(trainable),
            thousands(total - trainable)
        ));
        Ok(s)
    }
}

fn join(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn poisoned() -> Error {
    Error::arg(
        "Sequential",
        "a thread panicked while holding the model's plan cache",
    )
}

impl Sequential {
    fn refs<'a>(c: &'a Compiled) -> ParamRefs<'a> {
        ParamRefs {
            values: &c.values,
            grads: &c.grads,
            state: &c.state,
            trainable: c.infos.iter().map(|p| p.trainable).collect(),
            l2: c.infos.iter().map(|p| p.l2).collect(),
            update: c.update,
            seed: c.seed,
            checks: c.checks,
        }
    }

    /// Checks that `data` fits the model: image size, labels below the class count.
    fn check_data(&self, op: &'static str, what: &str, data: &Dataset) -> Result<()> {
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

    /// Trains for `opts.epochs` epochs. Each step is one submission; metrics are read back
    /// at each epoch's end, and once a second while a progress bar shows (`verbose`). On a
    /// non-finite loss or gradient ([`OnNonFinite::Stop`], the default) training stops with
    /// [`Error::NonFinite`] naming the epoch, the step and what went bad, and the weights
    /// (BatchNorm moving statistics included) are those of the step before.
    ///
    /// # Errors
    /// Zero epochs or batch size, an empty or mismatched data set (naming the sample),
    /// labels out of range, a non-finite loss or gradient, device errors.
    pub fn fit(&mut self, train: &Dataset, opts: &Fit<'_>) -> Result<History> {
        let op = "fit";
        if opts.epochs == 0 {
            return Err(Error::arg(op, "epochs must be at least 1, got 0"));
        }
        if let Some(v) = opts.validation {
            self.check_data(op, "validation", v)?;
        }
        let val = match opts.validation {
            Some(v) => Some((
                GpuDataset::upload(&self.compiled(op)?.gpu, &v.images, &v.labels, v.count)?,
                v.count,
            )),
            None => None,
        };
        let batch_size = opts.batch_size;
        self.compiled
            .as_mut()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))?
            .on_non_finite = opts.on_non_finite;
        let mut trainer = self.trainer(train, batch_size)?;
        trainer.shuffle = opts.shuffle;
        let steps = trainer.steps_per_epoch();
        let mut history = History::default();
        // The best score (higher is better) and its epoch, resumed from the file's metadata.
        let mut best: Option<(f64, String)> = match &opts.checkpoint {
            Some(cp) if cp.save_best_only => cp.resume()?,
            _ => None,
        };
        for epoch in 1..=opts.epochs {
            let started = Instant::now();
            trainer.begin_epoch();
            let bar = progress(opts.verbose, epoch, opts.epochs, steps);
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
                Some((vd, count)) => Some(model.evaluate_resident(vd, *count, batch_size)?),
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
            if let (Some(cp), Some(v)) = (&opts.checkpoint, validation) {
                let value = cp.monitor.score(v);
                let improved = value.is_finite() && best.as_ref().is_none_or(|(b, _)| value > *b);
                if improved {
                    best = Some((value, epoch.to_string()));
                }
                if improved || !cp.save_best_only {
                    let mut meta = HashMap::new();
                    meta.insert("epoch".to_string(), epoch.to_string());
                    meta.insert("val_accuracy".to_string(), v.accuracy.to_string());
                    meta.insert("val_loss".to_string(), v.loss.to_string());
                    meta.insert("monitor".to_string(), cp.monitor.key().to_string());
                    if let Some((b, e)) = &best {
                        let b = match cp.monitor {
                            Monitor::ValAccuracy => *b,
                            Monitor::ValLoss => -*b,
                        };
                        meta.insert("best".to_string(), b.to_string());
                        meta.insert("best_epoch".to_string(), e.clone());
                    }
                    model.save_weights_with(&cp.path, Some(meta))?;
                }
            }
            history.epochs.push(log);
        }
        Ok(history)
    }

    /// A training session over `train`: uploads the data set once and plans the step (and,
    /// when `batch_size` does not divide the set, the smaller last step) once. [`fit`] is
    /// built on it; use it directly for a custom loop.
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
        let op = "fit";
        if batch_size == 0 {
            return Err(Error::arg(op, "batch_size must be at least 1, got 0"));
        }
        self.check_data(op, "training", train)?;
        let c = self.compiled(op)?;
        let gpu = c.gpu.clone();
        let data = GpuDataset::upload(&gpu, &train.images, &train.labels, train.count)?;
        let metrics = Metrics::new(&gpu, c.on_non_finite == OnNonFinite::Skip)?;
        let b = batch_size.min(train.count);
        let (full, rest) = (train.count / b, train.count % b);
        let graph = c.planned_graph();
        let refs = Sequential::refs(c);
        let plan = Plan::new(
            &gpu,
            &graph,
            &refs,
            Mode::Train,
            b,
            Some(&data),
            Some(&metrics),
        )?;
        let tail = if rest > 0 {
            Some(Plan::new(
                &gpu,
                &graph,
                &refs,
                Mode::Train,
                rest,
                Some(&data),
                Some(&metrics),
            )?)
        } else {
            None
        };
        let order = (0..train.count as u32).collect();
        Ok(Trainer {
            model: self,
            data,
            metrics,
            plan,
            tail,
            batch: b,
            full,
            rest,
            order,
            pos: 0,
            shuffle: true,
            epoch_start: 0,
            skipped: 0,
        })
    }

    fn evaluate_resident(
        &self,
        data: &GpuDataset,
        count: usize,
        batch: usize,
    ) -> Result<Evaluation> {
        let c = self.compiled("evaluate")?;
        let gpu = &c.gpu;
        let metrics = Metrics::new(gpu, false)?;
        let b = batch.min(count);
        let full = count / b;
        let rest = count % b;
        let refs = Sequential::refs(c);
        let plan = Plan::new(
            gpu,
            &c.planned_graph(),
            &refs,
            Mode::Eval,
            b,
            Some(data),
            Some(&metrics),
        )?;
        let identity: Vec<u32> = (0..count as u32).collect();
        data.set_order(&identity);
        metrics.reset();
        for s in 0..full {
            plan.run(
                StepUniform {
                    batch_start: (s * b) as u32,
                    ..StepUniform::default()
                },
                None,
            )?;
        }
        if rest > 0 {
            let tail = Plan::new(
                gpu,
                &c.planned_graph(),
                &refs,
                Mode::Eval,
                rest,
                Some(data),
                Some(&metrics),
            )?;
            tail.run(
                StepUniform {
                    batch_start: (full * b) as u32,
                    ..StepUniform::default()
                },
                None,
            )?;
        }
        let Reading { loss, accuracy, .. } = metrics.read()?;
        Ok(Evaluation { loss, accuracy })
    }

    /// Mean loss and accuracy over `data` in inference mode (dropout off, BatchNorm moving
    /// statistics), `batch_size` samples per step.
    ///
    /// # Errors
    /// As [`Sequential::fit`] for the data set; batch size 0.
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
        if batch_size == 0 {
            return Err(Error::arg(
                "evaluate",
                "batch_size must be at least 1, got 0",
            ));
        }
        self.check_data("evaluate", "evaluation", data)?;
        let gpu = &self.compiled("evaluate")?.gpu;
        let resident = GpuDataset::upload(gpu, &data.images, &data.labels, data.count)?;
        self.evaluate_resident(&resident, data.count, batch_size)
    }

    /// Logits `[n, classes]` (row-major) for `n` samples in `x` (`n * input size` values), in
    /// inference mode. Safe to call from several threads at once.
    ///
    /// # Errors
    /// When `x.len()` is not a multiple of the input size or is empty.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let op = "predict";
        let c = self.compiled(op)?;
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
        let n = x.len() / in_len;
        let batch = n.min(256);
        let plan = {
            let mut cache = c.predict.lock().map_err(|_| poisoned())?;
            match cache.get(&batch) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(Mutex::new(Plan::new(
                        &c.gpu,
                        &c.planned_graph(),
                        &Sequential::refs(c),
                        Mode::Predict,
                        batch,
                        None,
                        None,
                    )?));
                    cache.insert(batch, p.clone());
                    p
                }
            }
        };
        let plan = plan.lock().map_err(|_| poisoned())?;
        let (input, logits) = match (&plan.input, &plan.logits) {
            (Some(i), Some(l)) => (i, l),
            _ => return Err(Error::arg(op, "prediction plan without input or output")),
        };
        let classes = c.graph.output()[0];
        let mut out = Vec::with_capacity(n * classes);
        for chunk in x.chunks(batch * in_len) {
            let rows = chunk.len() / in_len;
            c.gpu.upload(input.buffer(), 0, bytemuck::cast_slice(chunk));
            plan.run(StepUniform::default(), None)?;
            let all = logits.to_vec()?;
            out.extend_from_slice(&all[..rows * classes]);
        }
        Ok(out)
    }

    /// The weights, read back: name, shape, values, in the model's order.
    ///
    /// # Errors
    /// When the model is not compiled, or on device errors.
    pub fn weights(&self) -> Result<Vec<NamedTensor>> {
        let c = self.compiled("weights")?;
        read_named(&c.infos, &c.values)
    }

    /// Writes the weights to `path` as safetensors (F32, Keras-style names such as
    /// `dense_1/kernel`, Dense kernels `[in, units]`, conv kernels HWIO), atomically: a crash
    /// leaves the old file or the new one, never a torn one.
    ///
    /// # Errors
    /// I/O errors naming the path (the old file is left as it was).
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_weights_with(path.as_ref(), None)
    }

    fn save_weights_with(&self, path: &Path, meta: Option<HashMap<String, String>>) -> Result<()> {
        let bytes = weights::to_safetensors(&self.weights_or_host_copy()?, meta)?;
        weights::write_atomic(path, &bytes)
    }

    /// The weights from the device, or, when the device is lost, the host copy taken at the
    /// last completed epoch.
    fn weights_or_host_copy(&self) -> Result<Vec<NamedTensor>> {
        match self.weights() {
            Err(Error::DeviceLost { op, reason }) => {
                match self.compiled.as_ref().and_then(|c| c.host_copy.clone()) {
                    Some(copy) => Ok(copy),
                    None => Err(Error::DeviceLost { op, reason }),
                }
            }
            other => other,
        }
    }

    /// Moves the model to `gpu` (after a device loss, say): the weights come from the old
    /// device, or from the host copy of the last completed epoch when it is lost; the
    /// optimizer state starts afresh, the step count (and so the dropout streams) goes on.
    ///
    /// # Errors
    /// When there are no weights to move (lost before the first epoch ended), or on errors
    /// of the new device.
    pub fn move_to(&mut self, gpu: &Gpu) -> Result<()> {
        let weights = self.weights_or_host_copy()?;
        let c = self.compiled("move_to")?;
        let (optimizer, seed, step, fuse) = (c.optimizer, c.seed, c.step, c.fuse);
        self.compile(gpu, optimizer, seed)?;
        let c = self.compiled.as_mut().ok_or_else(|| {
            Error::arg("move_to", "the model is not compiled; call compile first")
        })?;
        for (t, w) in c.values.iter().zip(&weights) {
            c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(&w.data));
        }
        c.step = step;
        c.fuse = fuse;
        c.host_copy = Some(weights);
        Ok(())
    }

    /// Loads weights written by [`Sequential::save_weights`] for the same architecture, with
    /// the default [`WeightsOptions`] (header at most 1 MiB, non-finite values refused). All
    /// or nothing: on any error the model's weights are unchanged.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file and the tensor and its layer (missing, extra, wrong
    /// shape or dtype, non-finite value, wrong length); [`Error::Io`].
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_weights_with(path, &WeightsOptions::default())
    }

    /// As [`Sequential::load_weights`], with `options`. The file's 8-byte length and header
    /// are read and checked against the model, and its length against 8 + header + the
    /// model's parameter bytes, before any tensor data is read.
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    pub fn load_weights_with(
        &mut self,
        path: impl AsRef<Path>,
        options: &WeightsOptions,
    ) -> Result<()> {
        let specs = self.weight_specs("load_weights")?;
        let loaded = weights::read_safetensors_file(path.as_ref(), &specs, options)?;
        self.set_weights(&loaded.data)
    }

    /// As [`Sequential::load_weights`], from bytes in memory (`name` is used in messages).
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    pub fn load_weights_bytes(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        self.load_weights_bytes_with(bytes, name, &WeightsOptions::default())
    }

    /// As [`Sequential::load_weights_bytes`], with `options`.
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    pub fn load_weights_bytes_with(
        &mut self,
        bytes: &[u8],
        name: &str,
        options: &WeightsOptions,
    ) -> Result<()> {
        let specs = self.weight_specs("load_weights")?;
        let loaded = weights::from_safetensors(bytes, name, &specs, options)?;
        self.set_weights(&loaded.data)
    }

    /// What a weights file must hold for this model: every parameter, with its layer.
    fn weight_specs(&self, op: &'static str) -> Result<Vec<WeightSpec>> {
        let c = self.compiled(op)?;
        let names = lower(&self.input, &self.layers)?.names;
        Ok(c.infos
            .iter()
            .map(|p| {
                let owner = names.iter().position(|n| {
                    p.name
                        .strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                });
                WeightSpec {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    layer: owner.map_or_else(
                        || "the model".to_string(),
                        |i| format!("layer {i} ({})", self.layers[i].kind()),
                    ),
                }
            })
            .collect())
    }

    /// Uploads checked values (one per parameter, in order); called only after every check
    /// has passed, so a load is all or nothing.
    fn set_weights(&mut self, data: &[Vec<f32>]) -> Result<()> {
        let c = self.compiled("load_weights")?;
        for (t, v) in c.values.iter().zip(data) {
            c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(v));
        }
        Ok(())
    }

    /// Work counters of the model's [`Gpu`] (submissions, buffers and bind groups created,
    /// bytes moved, device bytes held).
    ///
    /// # Errors
    /// When the model is not compiled.
    pub fn stats(&self) -> Result<crate::ExecStats> {
        Ok(self.compiled("stats")?.gpu.counters())
    }

    /// Turns fusion of `dense -> relu -> dropout` off or on (on by default). For tests that
    /// hold the fused kernels to the separate ops; masks are the same either way.
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

/// A training session: see [`Sequential::trainer`].
pub struct Trainer<'m> {
    model: &'m mut Sequential,
    data: GpuDataset,
    metrics: Metrics,
    plan: Plan,
    tail: Option<Plan>,
    batch: usize,
    full: usize,
    rest: usize,
    order: Vec<u32>,
    pos: usize,
    /// Shuffle the data at each [`Trainer::begin_epoch`] (default true).
    pub shuffle: bool,
    epoch_start: u64,
    skipped: usize,
}

impl Trainer<'_> {
    /// (virtual buffers, physical buffers) of the step's plan: the planner reuses a buffer
    /// once every dispatch that reads its previous contents has run.
    #[doc(hidden)]
    pub fn plan_buffers(&self) -> (usize, usize) {
        self.plan.buffers
    }

    /// Steps in one pass over the data (the last may be smaller than the batch).
    pub fn steps_per_epoch(&self) -> usize {
        self.full + usize::from(self.rest > 0)
    }

    /// Starts an epoch: a new order of the samples (one upload), metrics zeroed.
    pub fn begin_epoch(&mut self) {
        if let Some(c) = &self.model.compiled {
            if self.shuffle {
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    c.seed ^ c.step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                for i in (1..self.order.len()).rev() {
                    self.order.swap(i, rng.random_range(0..=i));
                }
            }
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
        let op = "fit";
        if self.pos >= self.steps_per_epoch() {
            return Err(Error::arg(
                op,
                format!(
                    "the epoch's {} steps are done; begin a new epoch",
                    self.steps_per_epoch()
                ),
            ));
        }
        let plan = if self.pos < self.full {
            &self.plan
        } else {
            self.tail.as_ref().unwrap_or(&self.plan)
        };
        let c = self
            .model
            .compiled
            .as_mut()
            .ok_or_else(|| Error::arg(op, "the model is not compiled; call compile first"))?;
        // The status word records step + 1, so the last step is u32::MAX - 1.
        let step = u32::try_from(c.step)
            .ok()
            .filter(|&s| s < u32::MAX)
            .ok_or_else(|| {
                Error::arg(
                    op,
                    format!("step {} is past the last one, 2^32 - 2", c.step),
                )
            })?;
        let poison = if c.poison_step == Some(c.step) {
            c.poison_kind
        } else {
            0
        };
        plan.run(
            StepUniform {
                step,
                batch_start: (self.pos * self.batch) as u32,
                poison,
                _pad: 0,
            },
            None,
        )?;
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

    /// The epoch's loss and accuracy so far, for a progress display (one readback).
    ///
    /// # Errors
    /// On device errors.
    pub fn progress(&self) -> Result<(f64, f64)> {
        let Reading { loss, accuracy, .. } = self.metrics.read()?;
        Ok((loss, accuracy))
    }

    /// Ends the epoch: reads the loss and accuracy over its samples (one readback).
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `epoch` and the first step (within the epoch) whose loss
    /// was not finite; the weights are those of the step before it.
    pub fn end_epoch(&mut self, epoch: usize) -> Result<(f64, f64)> {
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
    fn read_checked(&self, epoch: usize) -> Result<Reading> {
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

/// Reads `tensors` back, each named and shaped as its parameter.
fn read_named(infos: &[ParamInfo], tensors: &[Tensor]) -> Result<Vec<NamedTensor>> {
    infos
        .iter()
        .zip(tensors)
        .map(|(p, t)| {
            Ok(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: t.to_vec()?,
            })
        })
        .collect()
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

fn progress(
    verbose: bool,
    epoch: usize,
    epochs: usize,
    steps: usize,
) -> Option<indicatif::ProgressBar> {
    if !verbose {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "Epoch {prefix} {pos:>4}/{len} {wide_bar} {elapsed_precise} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    Some(bar)
}

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
