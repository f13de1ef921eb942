//! A plan: one step of a model, built as a pipeline in this order: the input (a gather from
//! the resident data set, or a tensor the caller fills), [`forward`](super::forward), the
//! loss and metrics ([`metrics`](super::metrics)), [`backward`](super::backward), the
//! [`update`](super::update)s, then [`alloc`](super::alloc)'s buffers and bind groups. A
//! step afterwards writes the 16-byte step uniform and records the dispatches into one pass.

use std::collections::BTreeSet;

use crate::data::resident::GpuDataset;
use crate::graph::Graph;
use crate::graph::alloc::materialize;
use crate::graph::backward::backward;
use crate::graph::forward::forward;
use crate::graph::gather::gather;
use crate::graph::instr::{Builder, Res};
use crate::graph::metrics::{self, Metrics};
use crate::graph::update::updates;
use crate::kernels::rec::Rec;
use crate::kernels::step::Step;
use crate::spec::Update;
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

/// What a plan computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    /// Forward with dropout and batch statistics, loss, backward, updates.
    Train,
    /// Forward in inference mode, loss and accuracy accumulated.
    Eval,
    /// Forward in inference mode from an input tensor; logits kept.
    Predict,
}

/// What to plan, for which public call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    /// The public call the plan serves (`fit`, `trainer`, `evaluate`, `predict`): every
    /// error the plan raises names it.
    pub op: &'static str,
    pub mode: Mode,
    /// Samples per step.
    pub batch: usize,
}

/// The model state a plan binds: parameters, gradients, optimizer state and settings.
pub(crate) struct ParamRefs<'a> {
    pub values: &'a [Tensor],
    pub grads: &'a [Tensor],
    pub state: &'a [Vec<Tensor>],
    pub trainable: Vec<bool>,
    pub l2: Vec<f32>,
    pub update: Update,
    pub seed: u64,
    /// Check every gradient for non-finite values before the updates (default true).
    pub checks: bool,
    /// Fuse `dense -> relu -> dropout` before planning (default true; off only to hold the
    /// fused kernels to the separate ops). The only place fusion happens.
    pub fuse: bool,
}

/// A planned step: its dispatches with bind groups made, and the tensors it reads and writes.
pub(crate) struct Plan {
    gpu: Gpu,
    op: &'static str,
    cmds: Vec<(Rec, wgpu::BindGroup)>,
    step: wgpu::Buffer,
    /// Physical buffers backing the virtual ones (kept alive by the plan).
    _physical: Vec<std::sync::Arc<crate::tensor::Buf>>,
    /// The per-sample logits of the last step ([batch, classes]), for prediction.
    pub logits: Option<Tensor>,
    /// For prediction: the input the caller copies a batch into.
    pub input: Option<Tensor>,
    /// (virtual buffers, physical buffers backing them): reuse by lifetime.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // read by the testing module
    pub buffers: (usize, usize),
}

impl Plan {
    /// Plans one step of `job` over the (unfused) `graph`. `data` is the resident data set
    /// and `metrics` the accumulators, for Train and Eval.
    pub fn new(
        gpu: &Gpu,
        graph: &Graph,
        params: &ParamRefs<'_>,
        job: Job,
        data: Option<&GpuDataset>,
        metrics: Option<&Metrics>,
    ) -> Result<Plan> {
        let Job { op, mode, batch } = job;
        let graph = if params.fuse {
            graph.clone().fuse()
        } else {
            graph.clone()
        };
        let mut b = Builder::default();
        let in_len: usize = graph.input.iter().product();
        let classes: usize = graph.output().iter().product();
        let train = mode == Mode::Train;

        // Input.
        let mut input = None;
        let (x0, labels) = match (mode, data) {
            (Mode::Predict, _) => {
                let t = Tensor::zeros(gpu, &[batch, in_len])?;
                input = Some(t.clone());
                (Res::T(t), None)
            }
            (_, Some(d)) => {
                if d.image_len != in_len {
                    return Err(Error::shape(
                        op,
                        format!(
                            "data set images have {} values, the model's input {:?} takes {in_len}",
                            d.image_len, graph.input
                        ),
                    ));
                }
                let (x, y) = gather(&mut b, d, batch);
                (Res::V(x), Some(y))
            }
            (_, None) => {
                return Err(Error::internal(
                    op,
                    "a training or evaluation plan without a data set",
                ));
            }
        };

        let fwd = forward(&mut b, job, &graph, params, x0)?;
        let logits = fwd.acts[graph.nodes.len()].clone();
        if let (Some(labels), Some(m)) = (labels, metrics) {
            let sizes = [batch, classes, in_len];
            let (dlogits, metric_binds) =
                metrics::loss(&mut b, m, sizes, logits.clone(), labels, train);
            if train {
                let tally = m.skip.then_some(metric_binds);
                let grads = backward(&mut b, job, &graph, params, &fwd, dlogits, m)?;
                updates(&mut b, params, m, grads, tally, fwd.moving);
            }
        }

        let mat = materialize(gpu, op, b)?;
        let distinct: BTreeSet<usize> = mat.physical.iter().map(|(j, _)| *j).collect();
        let buffers = (mat.physical.len(), distinct.len());
        let logits = match (mode, logits) {
            (Mode::Predict, Res::V(v)) => Some(Tensor::view(
                gpu,
                mat.physical_of(op, v)?,
                &[batch, classes],
                DType::F32,
            )),
            _ => None,
        };
        Ok(Plan {
            gpu: gpu.clone(),
            op,
            cmds: mat.cmds,
            step: mat.step,
            _physical: mat.physical.into_iter().map(|(_, b)| b).collect(),
            logits,
            input,
            buffers,
        })
    }

    /// The number of dispatches a step records.
    #[cfg(feature = "testing")]
    pub fn dispatches(&self) -> usize {
        self.cmds.len()
    }

    /// Records the step's dispatches into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        for (rec, io) in &self.cmds {
            rec.record(&self.gpu, pass, io)?;
        }
        Ok(())
    }

    /// Runs one step: writes the step uniform, records every dispatch into one compute pass,
    /// submits once. Does not wait.
    pub fn run(&self, step: Step) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.gpu;
        gpu.check_alive(self.op)?;
        gpu.upload(&self.step, 0, bytemuck::bytes_of(&step));
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgnn step"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgnn step"),
                timestamp_writes: None,
            });
            self.record(&mut pass)?;
        }
        Ok(gpu.submit(enc.finish()))
    }
}
