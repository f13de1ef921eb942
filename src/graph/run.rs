//! Running plans for the `nn` API: an epoch's steps over a resident data set (full batches
//! and a smaller last one), an evaluation, and predictions from host values. The step
//! uniform is built here, so callers pass plain numbers.

use crate::data::resident::GpuDataset;
use crate::graph::Graph;
use crate::graph::metrics::{Metrics, PendingReading, Reading};
use crate::graph::plan::{Draft, Job, Mode, ParamRefs, Plan, Tuning};
use crate::kernels::matmul::TuneKey;
use crate::kernels::step::Step;
use crate::tensor::Readback;
use crate::tune::tune_async;
use crate::{Error, Gpu, Result, Tensor};

/// The plans of one pass over a resident data set: `full` steps of `batch` samples, then
/// one of the `rest` when the batch does not divide the set.
pub(crate) struct Epoch {
    plan: Plan,
    tail: Option<Plan>,
    batch: usize,
    full: usize,
    rest: usize,
}

impl Epoch {
    /// Plans `job` (its batch capped at the set's size) over `data`, accumulating into
    /// `metrics`: the plans' instructions, made real by [`Drafted::make`] (blocking forms)
    /// or [`Drafted::make_async`].
    pub fn draft(
        gpu: &Gpu,
        graph: &Graph,
        params: &ParamRefs<'_>,
        job: Job,
        data: &GpuDataset,
        metrics: &Metrics,
    ) -> Result<EpochDraft> {
        let batch = job.batch.min(data.count);
        let (full, rest) = (data.count / batch, data.count % batch);
        let draft = |batch| {
            Plan::draft(
                gpu,
                graph,
                params,
                Job { batch, ..job },
                Some(data),
                Some(metrics),
            )
        };
        Ok(EpochDraft {
            plan: draft(batch)?,
            tail: if rest > 0 { Some(draft(rest)?) } else { None },
            batch,
            full,
            rest,
        })
    }

    /// Steps in one pass over the data.
    pub fn steps(&self) -> usize {
        self.full + usize::from(self.rest > 0)
    }

    /// The plan of the full-batch steps.
    #[cfg(feature = "testing")]
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The bytes of every buffer the epoch's plans (the full-batch one and the last, smaller
    /// one) bind or own, by role.
    #[cfg(feature = "testing")]
    pub fn role_bytes(&self) -> crate::graph::plan::RoleBytes {
        crate::graph::plan::RoleBytes::of(std::iter::once(&self.plan).chain(&self.tail))
    }

    /// Runs the epoch's step `i` as the model's training step `step`; `poison` is the
    /// non-finite test hook (0: none, 1: the loss, 2: a gradient). One submission.
    pub fn run(&self, i: usize, step: u32, poison: u32) -> Result<()> {
        let plan = if i < self.full {
            &self.plan
        } else {
            self.tail.as_ref().unwrap_or(&self.plan)
        };
        plan.run(Step {
            step,
            batch_start: (i * self.batch) as u32,
            poison,
            _pad: 0,
        })?;
        Ok(())
    }
}

/// Plans drafted ([`Plan::draft`]) and not yet made real: their matmul variants chosen,
/// buffers and bind groups made.
pub(crate) trait Drafted: Sized {
    /// What the drafts make.
    type Made;

    /// The shapes of every product the plans run.
    fn matmul_shapes(&self) -> Vec<TuneKey>;

    /// Makes the plans, each matmul variant chosen as `tuning` says.
    fn finish(self, gpu: &Gpu, tuning: Tuning) -> Result<Self::Made>;

    /// For the blocking forms: natively the autotuner times new shapes by the wall clock,
    /// waiting for the device.
    fn make(self, gpu: &Gpu) -> Result<Self::Made> {
        self.finish(gpu, Tuning::TimeNow)
    }

    /// For the async forms, without blocking: the autotuner times new shapes from GPU
    /// timestamps where the adapter has them ([`tune_async`]), else keeps the static choice.
    async fn make_async(self, gpu: &Gpu) -> Result<Self::Made> {
        tune_async(gpu, &self.matmul_shapes()).await?;
        self.finish(gpu, Tuning::Chosen)
    }
}

/// An [`Epoch`]'s plans, drafted.
pub(crate) struct EpochDraft {
    plan: Draft,
    tail: Option<Draft>,
    batch: usize,
    full: usize,
    rest: usize,
}

impl Drafted for EpochDraft {
    type Made = Epoch;

    fn matmul_shapes(&self) -> Vec<TuneKey> {
        let mut keys = self.plan.matmul_shapes();
        keys.extend(self.tail.iter().flat_map(Draft::matmul_shapes));
        keys
    }

    fn finish(self, gpu: &Gpu, tuning: Tuning) -> Result<Epoch> {
        Ok(Epoch {
            plan: self.plan.finish(gpu, tuning)?,
            tail: match self.tail {
                Some(t) => Some(t.finish(gpu, tuning)?),
                None => None,
            },
            batch: self.batch,
            full: self.full,
            rest: self.rest,
        })
    }
}

/// Loss and accuracy of the model over all of `data`, in inference mode, `batch` samples per
/// step, for the public call `op`.
pub(crate) fn evaluate(
    gpu: &Gpu,
    op: &'static str,
    graph: &Graph,
    params: &ParamRefs<'_>,
    data: &GpuDataset,
    batch: usize,
) -> Result<Reading> {
    evaluate_record(gpu, op, graph, params, data, batch)?.read()
}

/// As [`evaluate`], without blocking: plans (timing new matmul shapes from GPU timestamps,
/// see [`Drafted::make_async`]), records and submits every step, then starts the readback of
/// the metrics.
pub(crate) async fn evaluate_request(
    gpu: &Gpu,
    op: &'static str,
    graph: &Graph,
    params: &ParamRefs<'_>,
    data: &GpuDataset,
    batch: usize,
) -> Result<PendingReading> {
    let metrics = Metrics::new(gpu, false)?;
    let epoch = Epoch::draft(gpu, graph, params, eval_job(op, batch), data, &metrics)?
        .make_async(gpu)
        .await?;
    run_evaluation(&epoch, data, &metrics)?;
    Ok(metrics.request(op))
}

/// Records and submits an evaluation's steps; returns the metrics they accumulate into.
fn evaluate_record(
    gpu: &Gpu,
    op: &'static str,
    graph: &Graph,
    params: &ParamRefs<'_>,
    data: &GpuDataset,
    batch: usize,
) -> Result<Metrics> {
    let metrics = Metrics::new(gpu, false)?;
    let epoch = Epoch::draft(gpu, graph, params, eval_job(op, batch), data, &metrics)?.make(gpu)?;
    run_evaluation(&epoch, data, &metrics)?;
    Ok(metrics)
}

fn eval_job(op: &'static str, batch: usize) -> Job {
    Job {
        op,
        mode: Mode::Eval,
        batch,
    }
}

/// Records and submits the steps of `epoch`, an evaluation, over `data` in order.
fn run_evaluation(epoch: &Epoch, data: &GpuDataset, metrics: &Metrics) -> Result<()> {
    let identity: Vec<u32> = (0..data.count as u32).collect();
    data.set_order(&identity);
    metrics.reset();
    for i in 0..epoch.steps() {
        epoch.run(i, 0, 0)?;
    }
    Ok(())
}

/// A [`Predictor`]'s plan, drafted.
pub(crate) struct PredictorDraft {
    draft: Draft,
    op: &'static str,
    in_len: usize,
    classes: usize,
    samples: Option<usize>,
}

impl Drafted for PredictorDraft {
    type Made = Predictor;

    fn matmul_shapes(&self) -> Vec<TuneKey> {
        self.draft.matmul_shapes()
    }

    fn finish(self, gpu: &Gpu, tuning: Tuning) -> Result<Predictor> {
        let plan = self.draft.finish(gpu, tuning)?;
        let (Some(input), Some(logits)) = (plan.input.clone(), plan.logits.clone()) else {
            return Err(Error::internal(
                self.op,
                "a prediction plan without input or logits",
            ));
        };
        Ok(Predictor {
            plan,
            input,
            logits,
            in_len: self.in_len,
            classes: self.classes,
            samples: self.samples,
        })
    }
}

/// A prediction plan for up to `batch` samples at a time: host values in, logits out (or,
/// for Monte-Carlo dropout, every copy's softmax).
pub(crate) struct Predictor {
    plan: Plan,
    input: Tensor,
    logits: Tensor,
    in_len: usize,
    classes: usize,
    /// Monte-Carlo copies of the batch (`None`: plain prediction).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    samples: Option<usize>,
}

impl Predictor {
    /// A plan for `batch` samples at a time: plain prediction (`samples` `None`) or
    /// Monte-Carlo dropout over `samples` copies, for the public call `op`, drafted.
    pub fn draft(
        gpu: &Gpu,
        op: &'static str,
        graph: &Graph,
        params: &ParamRefs<'_>,
        batch: usize,
        samples: Option<usize>,
    ) -> Result<PredictorDraft> {
        let job = Job {
            op,
            mode: samples.map_or(Mode::Predict, |samples| Mode::Sample { samples }),
            batch,
        };
        Ok(PredictorDraft {
            draft: Plan::draft(gpu, graph, params, job, None, None)?,
            op,
            in_len: graph.input.iter().product(),
            classes: graph.output().iter().product(),
            samples,
        })
    }

    /// Monte-Carlo dropout: the softmax of every copy for the samples in `x` (a whole number
    /// of them, checked by the caller), `[copies, n, classes]`; one submission and one
    /// readback per batch, all copies in it. Each batch's step uniform carries its first
    /// row, so the masks index the rows of all of `x` (`batch_start`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (batch, classes) = (self.input.shape()[0], self.classes);
        let copies = self.samples.unwrap_or(1);
        let n = x.len() / self.in_len;
        let mut out = vec![0.0; copies * n * classes];
        for (c, chunk) in x.chunks(batch * self.in_len).enumerate() {
            let rows = chunk.len() / self.in_len;
            let start = c * batch;
            let gpu = self.input.gpu();
            gpu.upload(self.input.buffer(), 0, bytemuck::cast_slice(chunk));
            self.plan.run(Step {
                batch_start: start as u32,
                ..Step::default()
            })?;
            let all = self.logits.read_f32("Tensor::to_vec")?;
            for s in 0..copies {
                let from = s * batch * classes;
                let to = (s * n + start) * classes;
                out[to..to + rows * classes].copy_from_slice(&all[from..from + rows * classes]);
            }
        }
        Ok(out)
    }

    /// Logits of the samples in `x` (a whole number of them, checked by the caller), a
    /// batch per submission, each read back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let batch = self.input.shape()[0];
        let mut out = Vec::with_capacity(x.len() / self.in_len * self.classes);
        for chunk in x.chunks(batch * self.in_len) {
            let rows = chunk.len() / self.in_len;
            let gpu = self.input.gpu();
            gpu.upload(self.input.buffer(), 0, bytemuck::cast_slice(chunk));
            self.plan.run(Step::default())?;
            let all = self.logits.read_f32("Tensor::to_vec")?;
            out.extend_from_slice(&all[..rows * self.classes]);
        }
        Ok(out)
    }

    /// As [`Predictor::predict`], without blocking: records every batch's run and the copy of
    /// its logits now (the input and logits buffers are reused in queue order), and returns
    /// the readbacks with the rows each holds.
    pub fn request(&self, x: &[f32]) -> Result<Vec<(Readback, usize)>> {
        let batch = self.input.shape()[0];
        let mut out = Vec::new();
        for chunk in x.chunks(batch * self.in_len) {
            let rows = chunk.len() / self.in_len;
            let gpu = self.input.gpu();
            gpu.upload(self.input.buffer(), 0, bytemuck::cast_slice(chunk));
            self.plan.run(Step::default())?;
            let bytes = (rows * self.classes * 4) as u64;
            out.push((
                gpu.readback("predict", &[(self.logits.buffer(), bytes)]),
                rows,
            ));
        }
        Ok(out)
    }
}
