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
use crate::graph::instr::{Builder, Res, bytes};
use crate::graph::metrics::{self, Metrics};
use crate::graph::update::updates;
use crate::kernels::matmul::TuneKey;
use crate::kernels::rec::Rec;
use crate::kernels::softmax_xent::SoftmaxXentParams;
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
    /// Monte-Carlo dropout: forward from an input tensor of `batch` samples over `samples`
    /// copies of it, batch norm in inference mode and dropout on, the copy `s` of the
    /// Dropout at layer `l` drawing from stream `2^63 + s * 2^32 + l`
    /// ([`crate::philox::mc_offset`]); the softmax of every copy kept, `[samples * batch,
    /// classes]`. The layers before the first dropout run once, on the batch; the copies are
    /// made on the GPU where that dropout is drawn.
    Sample { samples: usize },
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
    /// Fuse `dense -> relu -> dropout` and `conv2d -> relu -> spatial dropout` before planning
    /// (default true; off only to hold the fused kernels to the separate ops). The only
    /// place fusion happens.
    pub fuse: bool,
}

/// What a device buffer a plan binds holds, for the memory accounting the bench reports
/// (`wgnn::testing::RoleBytes`). Every buffer gets one role, where the plan makes it or takes
/// it from its owner (the model, the resident data set, the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))] // read by the testing accessors
pub enum BufferRole {
    /// The resident data set (pixels, labels, sample order) or a prediction's input.
    Data,
    /// Parameters: kernels, biases, BatchNorm's scales and moving statistics.
    Weights,
    /// The optimizer's slots (momentum; Adam's m and v).
    OptimizerState,
    /// The plan's pool: activations, their gradients, the gathered batch and the loss
    /// scratch, sharing physical buffers by lifetime.
    Activation,
    /// Parameter gradients.
    Gradient,
    /// Uniforms: each dispatch's parameters and the step's. Not in `ExecStats::device_bytes`,
    /// which counts storage buffers.
    Uniform,
    /// Metric accumulators and the non-finite status word.
    Status,
    /// Host-mapped copies. A plan holds none (each readback makes and drops its own); not in
    /// `ExecStats::device_bytes`.
    Staging,
    /// Stored dropout masks. wgnn holds none: keep bits are regenerated from Philox.
    Mask,
}

#[cfg(feature = "testing")]
impl BufferRole {
    /// Every role, in report order.
    pub const ALL: [BufferRole; 9] = [
        BufferRole::Data,
        BufferRole::Weights,
        BufferRole::OptimizerState,
        BufferRole::Activation,
        BufferRole::Gradient,
        BufferRole::Uniform,
        BufferRole::Status,
        BufferRole::Staging,
        BufferRole::Mask,
    ];

    /// The role's name in reports (`weights`, `optimizer_state`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BufferRole::Data => "data",
            BufferRole::Weights => "weights",
            BufferRole::OptimizerState => "optimizer_state",
            BufferRole::Activation => "activation",
            BufferRole::Gradient => "gradient",
            BufferRole::Uniform => "uniform",
            BufferRole::Status => "status",
            BufferRole::Staging => "staging",
            BufferRole::Mask => "mask",
        }
    }

    /// Whether `ExecStats::device_bytes` counts buffers of this role (the storage buffers
    /// wgnn makes through one function; uniforms and staging copies are made elsewhere).
    pub fn in_device_bytes(self) -> bool {
        !matches!(self, BufferRole::Uniform | BufferRole::Staging)
    }
}

/// Bytes of distinct device buffers per [`BufferRole`], over one or more plans (a buffer two
/// plans bind, such as a weight, counts once).
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleBytes {
    bytes: [u64; BufferRole::ALL.len()],
    buffers: [usize; BufferRole::ALL.len()],
}

#[cfg(feature = "testing")]
impl RoleBytes {
    /// The distinct buffers the `plans` bind or own, summed by role.
    pub(crate) fn of<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> RoleBytes {
        #[allow(
            clippy::mutable_key_type,
            reason = "wgpu::Buffer hashes and compares by identity, which its contents never change"
        )]
        let mut seen = std::collections::HashSet::new();
        let mut out = RoleBytes::default();
        for plan in plans {
            for (role, buffer) in &plan.roles {
                if seen.insert(buffer.clone()) {
                    out.bytes[*role as usize] += buffer.size();
                    out.buffers[*role as usize] += 1;
                }
            }
        }
        out
    }

    /// Bytes of buffers with role `role`.
    pub fn bytes(&self, role: BufferRole) -> u64 {
        self.bytes[role as usize]
    }

    /// How many buffers have role `role`.
    pub fn buffers(&self, role: BufferRole) -> usize {
        self.buffers[role as usize]
    }

    /// Bytes of the roles `ExecStats::device_bytes` counts ([`BufferRole::in_device_bytes`]).
    pub fn device_bytes(&self) -> u64 {
        BufferRole::ALL
            .iter()
            .filter(|r| r.in_device_bytes())
            .map(|r| self.bytes(*r))
            .sum()
    }
}

/// A planned step: its dispatches with bind groups made, and the tensors it reads and writes.
pub(crate) struct Plan {
    gpu: Gpu,
    op: &'static str,
    cmds: Vec<(Rec, wgpu::BindGroup)>,
    step: wgpu::Buffer,
    /// Physical buffers backing the virtual ones, and those of the tensors and data sets it
    /// binds (kept alive by the plan, so none goes back to the pool while it may run).
    _physical: Vec<std::sync::Arc<crate::tensor::Buf>>,
    /// The per-sample logits of the last step ([batch, classes]), for prediction (for
    /// [`Mode::Sample`], the softmax of every copy, [samples * batch, classes]).
    pub logits: Option<Tensor>,
    /// For prediction: the input the caller copies a batch into.
    pub input: Option<Tensor>,
    /// (virtual buffers, physical buffers backing them): reuse by lifetime.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // read by the testing module
    pub buffers: (usize, usize),
    /// Every device buffer the plan binds or owns, with its role (uniforms included).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // read by the testing accessors
    roles: Vec<(BufferRole, wgpu::Buffer)>,
}

impl Plan {
    /// Plans one step of `job` over the (unfused) `graph`: its instructions, before any
    /// matmul variant is chosen and any buffer or bind group made ([`Draft::finish`] makes
    /// them; an async form first times the shapes, [`Draft::matmul_shapes`], without
    /// blocking). `data` is the resident data set and `metrics` the accumulators, for Train
    /// and Eval.
    pub fn draft(
        gpu: &Gpu,
        graph: &Graph,
        params: &ParamRefs<'_>,
        job: Job,
        data: Option<&GpuDataset>,
        metrics: Option<&Metrics>,
    ) -> Result<Draft> {
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
            (Mode::Predict | Mode::Sample { .. }, _) => {
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
        let mut logits = fwd.acts[graph.nodes.len()].clone();
        if let Mode::Sample { samples } = mode {
            let rows = samples * batch;
            let probs = b.vbuf(rows * classes);
            let p = SoftmaxXentParams::new(rows as u32, classes as u32, 0);
            b.push(
                Rec::Softmax { rows: rows as u32 },
                vec![bytes(&p), logits, Res::V(probs)],
            );
            logits = Res::V(probs);
        }
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

        // Roles of the buffers the plan takes from their owners; materialize adds its own.
        let mut roles: Vec<(BufferRole, wgpu::Buffer)> = Vec::new();
        let owned = [
            (
                BufferRole::Weights,
                params.values.iter().collect::<Vec<_>>(),
            ),
            (BufferRole::Gradient, params.grads.iter().collect()),
            (
                BufferRole::OptimizerState,
                params.state.iter().flatten().collect(),
            ),
            (
                BufferRole::Data,
                input.iter().chain(data.map(|d| &d.perm)).collect(),
            ),
            (
                BufferRole::Status,
                metrics.iter().flat_map(|m| [&m.acc, &m.status]).collect(),
            ),
        ];
        for (role, ts) in owned {
            roles.extend(ts.into_iter().map(|t| (role, t.buffer().clone())));
        }
        if let Some(d) = data {
            for c in d.chunks.iter().chain(std::iter::once(&d.labels)) {
                roles.push((BufferRole::Data, c.buffer.clone()));
            }
        }
        Ok(Draft {
            op,
            mode,
            batch,
            classes,
            b,
            roles,
            input,
            logits,
        })
    }
}

/// How a plan's matmul variants are chosen when it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tuning {
    /// Natively, shapes not yet timed are timed now by the wall clock, waiting for the
    /// device (the blocking forms); in a browser as [`Tuning::Chosen`].
    TimeNow,
    /// What the autotuner has chosen (by an async form's [`crate::tune::tune_async`] before),
    /// else the static choice: nothing waits.
    Chosen,
}

/// A plan's instructions before its variants, buffers and bind groups are made
/// ([`Plan::draft`]).
pub(crate) struct Draft {
    op: &'static str,
    mode: Mode,
    batch: usize,
    classes: usize,
    b: Builder,
    roles: Vec<(BufferRole, wgpu::Buffer)>,
    input: Option<Tensor>,
    logits: Res,
}

impl Draft {
    /// The (transpose a, transpose b, m, n, k) of every product the plan runs.
    pub fn matmul_shapes(&self) -> Vec<TuneKey> {
        self.b
            .instrs
            .iter()
            .filter_map(|ins| match ins.rec {
                Rec::Matmul {
                    trans,
                    mnk: [m, n, k],
                    ..
                } => Some((trans.0, trans.1, m, n, k)),
                _ => None,
            })
            .collect()
    }

    /// Makes the plan: each matmul variant chosen as `tuning` says, every buffer, uniform
    /// and bind group made.
    pub fn finish(self, gpu: &Gpu, tuning: Tuning) -> Result<Plan> {
        let Draft {
            op,
            mode,
            batch,
            classes,
            b,
            mut roles,
            input,
            logits,
        } = self;
        let mut mat = materialize(gpu, op, b, tuning)?;
        roles.append(&mut mat.roles);
        let distinct: BTreeSet<usize> = mat.physical.iter().map(|(j, _)| *j).collect();
        let buffers = (mat.physical.len(), distinct.len());
        let rows = match mode {
            Mode::Sample { samples } => samples * batch,
            _ => batch,
        };
        let logits = match (mode, logits) {
            (Mode::Predict | Mode::Sample { .. }, Res::V(v)) => Some(Tensor::view(
                gpu,
                mat.physical_of(op, v)?,
                &[rows, classes],
                DType::F32,
            )),
            _ => None,
        };
        Ok(Plan {
            gpu: gpu.clone(),
            op,
            cmds: mat.cmds,
            step: mat.step,
            _physical: mat
                .physical
                .into_iter()
                .map(|(_, b)| b)
                .chain(mat.bound)
                .collect(),
            logits,
            input,
            buffers,
            roles,
        })
    }
}

impl Plan {
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
