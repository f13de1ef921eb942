//! Plans: the step's dispatches over virtual buffers, lifetimes, physical buffers, bind
//! groups; and the executor that records a planned step into one submission.

use std::sync::Arc;

use crate::graph::{DropoutOp, Graph, Op, ParamId};
use crate::kernels::batchnorm::{BatchNorm, BatchNormParams};
use crate::kernels::conv2d::{Conv2d, Conv2dDims, Conv2dPass};
use crate::kernels::data::{
    Data, DataParams, FINITE_SEGMENTS, FiniteParams, LOSS_CODE, StepUniform, finite_code,
};
use crate::kernels::dropout::{Dropout, DropoutParams, DropoutSpec};
use crate::kernels::elementwise::{Elementwise, ElementwiseParams, Pointwise};
use crate::kernels::matmul::{Epilogue, Matmul, MatmulParams, MatmulTile};
use crate::kernels::optim::{Optim, OptimParams};
use crate::spec::{Adam, Sgd, Update};
use crate::kernels::pool::{Pool, PoolParams};
use crate::kernels::reduce::{Reduce, ReduceParams};
use crate::kernels::softmax_xent::{FLAG_NO_GRAD, STATUS_WORDS, SoftmaxXent, SoftmaxXentParams};
pub(crate) use crate::kernels::rec::{BnPass, Rec};
use crate::kernels::uniform;
use crate::tensor::{Buf, DType};
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

/// A data set resident on the GPU: u8 pixels and labels packed four per u32 word, and a
/// permutation of sample indices rewritten once per epoch.
pub(crate) struct GpuDataset {
    /// Pixel chunks: whole samples, each chunk within one storage binding.
    pub chunks: Vec<Arc<Buf>>,
    /// Samples per chunk (the last chunk may hold fewer).
    pub per_chunk: usize,
    pub labels: Arc<Buf>,
    pub perm: Tensor,
    pub image_len: usize,
}

/// Pixel bindings the gather kernel has: a data set may span this many storage bindings.
pub(crate) const MAX_CHUNKS: usize = 4;

impl GpuDataset {
    /// Uploads `images` (`count * image_len` bytes) and `labels` once, as bytes. A data set
    /// larger than one storage binding (lavapipe allows 128 MiB; CIFAR-10's training pixels
    /// are 153,600,000 bytes) is split into up to [`MAX_CHUNKS`] chunks of whole samples.
    pub fn upload(gpu: &Gpu, images: &[u8], labels: &[u8], count: usize) -> Result<GpuDataset> {
        let op = "upload data set";
        if count == 0
            || !images.len().is_multiple_of(count)
            || images.is_empty()
            || labels.len() != count
        {
            return Err(Error::arg(
                op,
                format!(
                    "{} image bytes and {} labels do not make {count} samples",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        let image_len = images.len() / count;
        let limits = &gpu.info().limits;
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            & !15;
        let per_chunk = usize::try_from(binding / image_len as u64)
            .unwrap_or(usize::MAX)
            .min(count);
        if per_chunk == 0 || count.div_ceil(per_chunk) > MAX_CHUNKS {
            return Err(Error::Limit {
                op,
                what: format!(
                    "data set bytes ({count} samples of {image_len} bytes, in at most {MAX_CHUNKS} bindings)"
                ),
                requested: images.len() as u64,
                limit: (MAX_CHUNKS * per_chunk * image_len) as u64,
            });
        }
        let put = |bytes: &[u8], label: &str| -> Result<Arc<Buf>> {
            let buf = gpu.storage(op, label, bytes.len() as u64)?;
            let whole = bytes.len() & !3;
            gpu.upload(&buf.buffer, 0, &bytes[..whole]);
            if whole < bytes.len() {
                let mut tail = [0u8; 4];
                tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                gpu.upload(&buf.buffer, whole as u64, &tail);
            }
            Ok(buf)
        };
        let chunks = images
            .chunks(per_chunk * image_len)
            .map(|c| put(c, "wgnn data set pixels"))
            .collect::<Result<Vec<_>>>()?;
        let labels = put(labels, "wgnn data set labels")?;
        let identity: Vec<u32> = (0..count as u32).collect();
        let perm = Tensor::from_u32(gpu, &identity, &[count])?;
        Ok(GpuDataset {
            chunks,
            per_chunk,
            labels,
            perm,
            image_len,
        })
    }

    /// Writes the epoch's permutation (the only per-epoch upload).
    pub fn set_order(&self, order: &[u32]) {
        self.perm
            .gpu()
            .upload(self.perm.buffer(), 0, bytemuck::cast_slice(order));
    }

    /// The gather's bindings 2-4 and 11-13: (pixels 0, labels, perm) and pixels 1-3 (the
    /// first chunk again where there are fewer).
    fn binds(&self) -> [Res; 6] {
        let chunk = |i: usize| Res::B(self.chunks.get(i).unwrap_or(&self.chunks[0]).clone());
        [
            chunk(0),
            Res::B(self.labels.clone()),
            Res::T(self.perm.clone()),
            chunk(1),
            chunk(2),
            chunk(3),
        ]
    }
}

/// Uploads `images`/`labels` (`count` samples) and gathers the samples at `indices` with the
/// training step's kernel; returns the f32 batch and its labels. For the tests of data sets
/// spanning several bindings.
#[doc(hidden)]
pub fn gather_batch(
    gpu: &Gpu,
    images: &[u8],
    labels: &[u8],
    count: usize,
    indices: &[u32],
) -> Result<(Vec<f32>, Vec<u32>)> {
    let op = "gather_batch";
    let data = GpuDataset::upload(gpu, images, labels, count)?;
    if indices.is_empty() || indices.len() > count || indices.iter().any(|&i| i as usize >= count) {
        return Err(Error::arg(
            op,
            format!("indices must be 1 to {count} sample numbers below {count}"),
        ));
    }
    data.set_order(indices);
    let rows = indices.len();
    let x = Tensor::empty(gpu, op, &[rows, data.image_len], crate::DType::F32)?;
    let y = Tensor::empty(gpu, op, &[rows], crate::DType::U32)?;
    let k = Data::get(gpu)?;
    let p = DataParams {
        rows: rows as u32,
        image_len: data.image_len as u32,
        scale: 1.0 / 255.0,
        per_chunk: data.per_chunk as u32,
    };
    let params = crate::kernels::uniform(gpu, op, &p);
    let [c0, l, perm, c1, c2, c3] = data.binds().map(|r| r.buffer_of().cloned());
    let (c0, l, perm, c1, c2, c3) = (
        c0.ok_or_else(missing)?,
        l.ok_or_else(missing)?,
        perm.ok_or_else(missing)?,
        c1.ok_or_else(missing)?,
        c2.ok_or_else(missing)?,
        c3.ok_or_else(missing)?,
    );
    let io = k.gather_family.bind(
        gpu,
        &[
            &params,
            crate::kernels::zero_step(gpu),
            &c0,
            &l,
            &perm,
            x.buffer(),
            y.buffer(),
            &c1,
            &c2,
            &c3,
        ],
    );
    crate::kernels::run(gpu, op, |pass| {
        k.record_gather(pass, &io, (rows * data.image_len) as u32)
    })?;
    Ok((x.to_vec()?, y.to_vec_u32()?))
}

fn missing() -> Error {
    Error::arg("gather_batch", "a data set binding is missing")
}

/// A resource of an instruction's bind group.
#[derive(Clone)]
enum Res {
    /// A virtual buffer of the plan, by index.
    V(usize),
    /// A tensor that outlives the plan's step (parameters, state, data, outputs).
    T(Tensor),
    /// The step uniform.
    Step,
    /// A raw device buffer that outlives the plan (data set chunks).
    B(Arc<Buf>),
    /// A uniform with these bytes, made once at plan time.
    Uniform(Vec<u8>),
    /// The zero status word of kernels that check nothing (never written).
    ZeroStatus,
}

struct Instr {
    rec: Rec,
    binds: Vec<Res>,
}

/// Builds the instruction list over virtual buffers.
struct Builder {
    instrs: Vec<Instr>,
    /// Elements (4 bytes each) of each virtual buffer.
    vlen: Vec<usize>,
}

impl Builder {
    fn vbuf(&mut self, len: usize) -> usize {
        self.vlen.push(len);
        self.vlen.len() - 1
    }

    fn push(&mut self, rec: Rec, binds: Vec<Res>) {
        self.instrs.push(Instr { rec, binds });
    }

    /// One elementwise kernel over `len` elements, bound as (a, b, bias, out) with `cols` and
    /// `scale` as the kernel reads them: returns the output buffer.
    fn pointwise(
        &mut self,
        which: Pointwise,
        len: usize,
        cols: u32,
        scale: f32,
        ins: [Res; 3],
    ) -> Res {
        let out = self.vbuf(len);
        let p = ElementwiseParams {
            len: len as u32,
            cols,
            scale,
            _pad: 0,
        };
        let [a, b, bias] = ins;
        self.push(
            Rec::Pointwise {
                which,
                len: len as u32,
            },
            vec![bytes(&p), a, b, bias, Res::V(out)],
        );
        Res::V(out)
    }

    /// Dropout of `len` elements of `input` (forward, or the backward of `dy`, which
    /// regenerates the same mask): returns the output buffer.
    fn dropout(&mut self, d: &DropoutOp, seed: u64, len: usize, backward: bool, input: Res) -> Res {
        let y = self.vbuf(len);
        let spec = DropoutSpec {
            rate: d.rate,
            seed,
            offset: d.stream,
        };
        self.push(
            Rec::Dropout {
                backward,
                len: len as u32,
            },
            vec![
                bytes(&DropoutParams::new(len as u32, spec)),
                Res::Step,
                input,
                Res::V(y),
            ],
        );
        Res::V(y)
    }
}

impl Res {
    /// The wgpu buffer of a resource that has one outside the plan.
    fn buffer_of(&self) -> Option<&wgpu::Buffer> {
        match self {
            Res::T(t) => Some(t.buffer()),
            Res::B(b) => Some(&b.buffer),
            _ => None,
        }
    }
}

fn bytes<T: bytemuck::Pod>(v: &T) -> Res {
    Res::Uniform(bytemuck::bytes_of(v).to_vec())
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
}

/// A planned step: its dispatches with bind groups made, and the tensors it reads and writes.
pub(crate) struct Plan {
    gpu: Gpu,
    cmds: Vec<(Rec, wgpu::BindGroup)>,
    step: wgpu::Buffer,
    /// Physical buffers backing the virtual ones (kept alive by the plan).
    _physical: Vec<Arc<Buf>>,
    /// The per-sample logits of the last step ([batch, classes]), for prediction.
    pub logits: Option<Tensor>,
    /// For prediction: the input the caller copies a batch into.
    pub input: Option<Tensor>,
    /// (virtual buffers, physical buffers backing them): reuse by lifetime.
    pub buffers: (usize, usize),
}

/// What the metric accumulators held.
pub(crate) struct Reading {
    /// Mean loss over the samples accumulated.
    pub loss: f64,
    /// Fraction of them classified right.
    pub accuracy: f64,
    /// The first step with a non-finite value, and what: `None` for the loss, else the
    /// parameter index whose gradient was not finite.
    pub bad: Option<(u32, Option<usize>)>,
    /// Steps skipped for non-finite values (skip mode).
    pub skipped: usize,
}

/// Persistent tensors a training or evaluation plan accumulates into.
pub(crate) struct Metrics {
    /// f32 [4]: loss sum, correct count, samples, unused.
    pub acc: Tensor,
    /// u32 [4]: the first step + 1 with a non-finite loss or gradient, what it was
    /// (`LOSS_CODE` or `finite_code(parameter)`), the policy (1 = skip), the last bad
    /// step + 1 (shaders/data.wgsl).
    pub status: Tensor,
    /// Skip steps with non-finite values (and count them) rather than stop updating.
    pub skip: bool,
}

impl Metrics {
    pub fn new(gpu: &Gpu, skip: bool) -> Result<Metrics> {
        Ok(Metrics {
            acc: Tensor::zeros(gpu, &[4])?,
            status: Tensor::from_u32(gpu, &[0, 0, u32::from(skip), 0], &[4])?,
            skip,
        })
    }

    /// The accumulators, read back in one go.
    pub fn read(&self) -> Result<Reading> {
        let a = self.acc.to_vec()?;
        let s = self.status.to_vec_u32()?;
        let n = f64::from(a[2]).max(1.0);
        Ok(Reading {
            loss: f64::from(a[0]) / n,
            accuracy: f64::from(a[1]) / n,
            bad: s[0].checked_sub(1).map(|step| {
                let what = (s[1] != LOSS_CODE).then(|| (u32::MAX - 1 - s[1]) as usize);
                (step, what)
            }),
            skipped: a[3] as usize,
        })
    }

    /// Zeroes the accumulators (recorded on the queue, no upload).
    pub fn reset(&self) {
        let gpu = self.acc.gpu();
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("metrics reset"),
            });
        enc.clear_buffer(self.acc.buffer(), 0, None);
        gpu.submit(enc.finish());
        // The policy word survives; the rest of the status is zeroed (16 bytes per epoch).
        gpu.upload(
            self.status.buffer(),
            0,
            bytemuck::cast_slice(&[0u32, 0, u32::from(self.skip), 0]),
        );
    }
}

impl Plan {
    /// Plans one step of `mode` over `batch` samples. `data` is the resident data set for
    /// Train and Eval; `grads` the gradient tensors (one per parameter) for Train.
    pub fn new(
        gpu: &Gpu,
        graph: &Graph,
        params: &ParamRefs<'_>,
        mode: Mode,
        batch: usize,
        data: Option<&GpuDataset>,
        metrics: Option<&Metrics>,
    ) -> Result<Plan> {
        let mut b = Builder {
            instrs: Vec::new(),
            vlen: Vec::new(),
        };
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
                        "fit",
                        format!(
                            "data set images have {} values, the model's input {:?} takes {in_len}",
                            d.image_len, graph.input
                        ),
                    ));
                }
                let x = b.vbuf(batch * in_len);
                let y = b.vbuf(batch);
                let p = DataParams {
                    rows: batch as u32,
                    image_len: in_len as u32,
                    scale: 1.0 / 255.0,
                    per_chunk: d.per_chunk as u32,
                };
                let [c0, labels, perm, c1, c2, c3] = d.binds();
                b.push(
                    Rec::Gather {
                        elements: (batch * in_len) as u32,
                    },
                    vec![
                        bytes(&p),
                        Res::Step,
                        c0,
                        labels,
                        perm,
                        Res::V(x),
                        Res::V(y),
                        c1,
                        c2,
                        c3,
                    ],
                );
                (Res::V(x), Some(y))
            }
            (_, None) => {
                return Err(Error::arg(
                    "plan",
                    "training and evaluation need a data set",
                ));
            }
        };

        // Forward: acts[i] is node i's input, acts[n] the logits. Batch statistics of
        // training-mode BatchNorm nodes, by node, for their backward.
        let mut bn_stats: std::collections::HashMap<usize, (usize, usize)> =
            std::collections::HashMap::new();
        // Moving-average updates of those nodes: recorded after the backward pass, with the
        // optimizer updates, so the non-finite checks can hold them back too.
        let mut moving_updates: Vec<(BatchNormParams, [Res; 4])> = Vec::new();
        let mut acts = vec![x0];
        for (k, node) in graph.nodes.iter().enumerate() {
            let x = acts[k].clone();
            let out = batch * node.out_len();
            let y = match &node.op {
                Op::Reshape => x,
                Op::Dense {
                    w,
                    b: bias,
                    relu,
                    dropout,
                } => {
                    let y = b.vbuf(out);
                    let drop = if train {
                        dropout.map(|d| DropoutSpec {
                            rate: d.rate,
                            seed: params.seed,
                            offset: d.stream,
                        })
                    } else {
                        None
                    };
                    let epi = Epilogue {
                        bias: bias.is_some(),
                        relu: *relu,
                        dropout: drop,
                    };
                    let (m, kk, n) = (batch as u32, node.in_len() as u32, node.out_len() as u32);
                    let bias_res = bias.map_or(x.clone(), |p| Res::T(params.values[p].clone()));
                    b.push(
                        Rec::Matmul {
                            trans: (false, false),
                            mnk: [m, n, kk],
                            tile: None,
                        },
                        vec![
                            bytes(&MatmulParams::new(m, n, kk, epi)),
                            Res::Step,
                            x,
                            Res::T(params.values[*w].clone()),
                            bias_res,
                            Res::V(y),
                            Res::ZeroStatus,
                        ],
                    );
                    Res::V(y)
                }
                Op::Relu => b.pointwise(
                    Pointwise::ReluForward,
                    out,
                    1,
                    1.0,
                    [x.clone(), x.clone(), x],
                ),
                Op::Dropout(d) => {
                    if train {
                        b.dropout(d, params.seed, out, false, x)
                    } else {
                        x
                    }
                }
                Op::Conv2d {
                    w,
                    b: bias,
                    stride,
                    padding,
                } => {
                    let d = Conv2dDims::new(
                        "conv2d",
                        &batched(batch, &node.input),
                        params.values[*w].shape(),
                        *stride,
                        *padding,
                    )?;
                    let z = b.vbuf(out);
                    b.push(
                        Rec::Conv(Conv2dPass::Forward, d),
                        vec![
                            bytes(&d.params()),
                            x,
                            Res::T(params.values[*w].clone()),
                            Res::V(z),
                        ],
                    );
                    match bias {
                        Some(bp) => {
                            let cols = *node.output.last().unwrap_or(&1) as u32;
                            let bt = Res::T(params.values[*bp].clone());
                            b.pointwise(
                                Pointwise::BiasAdd,
                                out,
                                cols,
                                1.0,
                                [Res::V(z), Res::V(z), bt],
                            )
                        }
                        None => Res::V(z),
                    }
                }
                Op::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    epsilon,
                    momentum,
                    frozen,
                } => {
                    let c = *node.output.last().unwrap_or(&1);
                    let p = BatchNormParams::new((out / c) as u32, c as u32, *epsilon, *momentum);
                    let y = b.vbuf(out);
                    let t = |i: &ParamId| Res::T(params.values[*i].clone());
                    if train && !*frozen {
                        let partial = b.vbuf(p.partial_len());
                        let (bm, bs, scratch) = (b.vbuf(c), b.vbuf(c), b.vbuf(c));
                        b.push(
                            Rec::Bn(BnPass::PartialMoments, p),
                            vec![
                                bytes(&p),
                                x.clone(),
                                x.clone(),
                                x.clone(),
                                x.clone(),
                                Res::V(partial),
                            ],
                        );
                        b.push(
                            Rec::Bn(BnPass::ReduceMoments, p),
                            vec![bytes(&p), Res::V(partial), Res::V(bm), Res::V(bs)],
                        );
                        b.push(
                            Rec::Bn(BnPass::Forward, p),
                            vec![
                                bytes(&p),
                                x.clone(),
                                x.clone(),
                                t(gamma),
                                t(beta),
                                Res::V(bm),
                                Res::V(bs),
                                Res::V(scratch),
                                Res::V(y),
                            ],
                        );
                        moving_updates.push((p, [Res::V(bm), Res::V(bs), t(mean), t(var)]));
                        bn_stats.insert(k, (bm, bs));
                    } else {
                        let scratch = b.vbuf(c);
                        b.push(
                            Rec::Bn(BnPass::Inference, p),
                            vec![
                                bytes(&p),
                                x.clone(),
                                x.clone(),
                                t(gamma),
                                t(beta),
                                t(mean),
                                t(var),
                                Res::V(scratch),
                                Res::V(y),
                            ],
                        );
                    }
                    Res::V(y)
                }
                Op::MaxPool { window, stride } => {
                    let y = b.vbuf(out);
                    let p = PoolParams::new(
                        "max_pool2d",
                        &batched(batch, &node.input),
                        *window,
                        *stride,
                    )?;
                    b.push(
                        Rec::PoolForward(p),
                        vec![bytes(&p), x.clone(), x, Res::V(y)],
                    );
                    Res::V(y)
                }
            };
            acts.push(y);
        }
        let logits = acts[graph.nodes.len()].clone();

        // Loss, accuracy and the metric accumulators.
        if let (Some(labels), Some(m)) = (labels, metrics) {
            let rows = batch as u32;
            let dlogits = b.vbuf(batch * classes);
            let row_stats = b.vbuf(2 * batch);
            let (loss, correct, label_status) = (b.vbuf(1), b.vbuf(1), b.vbuf(STATUS_WORDS));
            let flags = if train { 0 } else { FLAG_NO_GRAD };
            b.push(
                Rec::SoftmaxLoss { rows },
                vec![
                    bytes(&SoftmaxXentParams::new(rows, classes as u32, flags)),
                    logits.clone(),
                    Res::V(dlogits),
                    Res::V(labels),
                    Res::V(row_stats),
                    Res::V(loss),
                    Res::V(correct),
                    Res::V(label_status),
                ],
            );
            let p = DataParams {
                rows,
                image_len: in_len as u32,
                scale: 1.0 / 255.0,
                per_chunk: 1,
            };
            let metric_binds = vec![
                bytes(&p),
                Res::Step,
                Res::V(loss),
                Res::V(correct),
                Res::T(m.acc.clone()),
                Res::T(m.status.clone()),
            ];
            b.push(Rec::Metrics, metric_binds.clone());
            if train {
                let tally = m.skip.then_some(metric_binds);
                backward(
                    &mut b,
                    graph,
                    params,
                    batch,
                    &acts,
                    Res::V(dlogits),
                    m,
                    &bn_stats,
                    tally,
                )?;
                for (p, [bm, bs, mean, var]) in moving_updates {
                    b.push(
                        Rec::Bn(BnPass::UpdateMoving, p),
                        vec![
                            bytes(&p),
                            bm,
                            bs,
                            mean,
                            var,
                            Res::Step,
                            Res::T(m.status.clone()),
                        ],
                    );
                }
            }
        }

        // Build physical buffers and bind groups.
        let (cmds, physical, step, _) = materialize(gpu, b)?;
        let distinct: std::collections::BTreeSet<usize> =
            physical.iter().map(|(j, _)| *j).collect();
        let buffers = (physical.len(), distinct.len());
        let logits_t = match (mode, logits) {
            (Mode::Predict, Res::V(v)) => Some(Tensor::view(
                gpu,
                physical_of(&physical, v)?,
                &[batch, classes],
                DType::F32,
            )),
            _ => None,
        };
        Ok(Plan {
            gpu: gpu.clone(),
            cmds,
            step,
            _physical: physical.into_iter().map(|(_, b)| b).collect(),
            logits: logits_t,
            input,
            buffers,
        })
    }

    /// The number of dispatches a step records.
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
    /// submits once. `before` may record copies ahead of the pass. Does not wait.
    pub fn run(
        &self,
        step: StepUniform,
        before: Option<&dyn Fn(&mut wgpu::CommandEncoder)>,
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.gpu;
        gpu.check_alive("step")?;
        gpu.upload(&self.step, 0, bytemuck::bytes_of(&step));
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgnn step"),
            });
        if let Some(f) = before {
            f(&mut enc);
        }
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

type Materialized = (
    Vec<(Rec, wgpu::BindGroup)>,
    Vec<(usize, Arc<Buf>)>,
    wgpu::Buffer,
    u64,
);

fn physical_of(physical: &[(usize, Arc<Buf>)], v: usize) -> Result<Arc<Buf>> {
    physical
        .get(v)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| Error::arg("plan", "virtual buffer without storage"))
}

/// Gives each virtual buffer a physical one, reusing buffers whose last use has passed, and
/// makes every uniform and bind group. Returns, per virtual buffer, (physical index, buffer).
fn materialize(gpu: &Gpu, b: Builder) -> Result<Materialized> {
    let n = b.vlen.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, ins) in b.instrs.iter().enumerate() {
        for r in &ins.binds {
            if let Res::V(v) = r {
                first[*v] = first[*v].min(i);
                last[*v] = last[*v].max(i);
            }
        }
    }
    // Physical pool: (elements, buffer, free).
    let mut pool: Vec<(usize, Arc<Buf>, bool)> = Vec::new();
    let mut assign: Vec<Option<usize>> = vec![None; n];
    let mut bytes_held = 0u64;
    for i in 0..b.instrs.len() {
        for v in 0..n {
            if first[v] == i {
                let best = pool
                    .iter()
                    .enumerate()
                    .filter(|(_, (len, _, free))| *free && *len >= b.vlen[v])
                    .min_by_key(|(_, (len, _, _))| *len)
                    .map(|(j, _)| j);
                let j = match best {
                    Some(j) => j,
                    None => {
                        let buf = gpu.storage("plan", "wgnn activation", b.vlen[v] as u64 * 4)?;
                        bytes_held += buf.buffer.size();
                        pool.push((b.vlen[v], buf, true));
                        pool.len() - 1
                    }
                };
                pool[j].2 = false;
                assign[v] = Some(j);
            }
        }
        for v in 0..n {
            if last[v] == i
                && first[v] != usize::MAX
                && let Some(j) = assign[v]
            {
                pool[j].2 = true;
            }
        }
    }
    let step = uniform(gpu, "wgnn step", &StepUniform::default());
    let mut cmds = Vec::with_capacity(b.instrs.len());
    for ins in &b.instrs {
        let mut rec = ins.rec;
        // The matmul variant is chosen once, here (autotuned and compiled), not per step.
        if let Rec::Matmul {
            trans,
            mnk: [m, n, k],
            tile,
        } = &mut rec
        {
            let mm = Matmul::get(gpu)?;
            let t = mm.autotune(gpu, *trans, (*m, *n, *k))?;
            mm.prepare_tile(gpu, *trans, (*m, *n, *k), t)?;
            *tile = Some(t);
        }
        let fam = rec.family(gpu)?;
        let mut uniforms = Vec::new();
        for r in &ins.binds {
            if let Res::Uniform(bytes) = r {
                let u = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgnn params"),
                    size: bytes.len() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                gpu.upload(&u, 0, bytes);
                uniforms.push(u);
            }
        }
        let mut ui = 0;
        let mut refs: Vec<&wgpu::Buffer> = Vec::with_capacity(ins.binds.len());
        for r in &ins.binds {
            refs.push(match r {
                Res::V(v) => {
                    &pool[assign[*v].ok_or_else(|| Error::arg("plan", "unassigned buffer"))?]
                        .1
                        .buffer
                }
                Res::T(t) => t.buffer(),
                Res::Step => &step,
                Res::ZeroStatus => crate::kernels::zero_status(gpu),
                Res::B(buf) => &buf.buffer,
                Res::Uniform(_) => {
                    ui += 1;
                    &uniforms[ui - 1]
                }
            });
        }
        cmds.push((rec, gpu.scoped("plan", || fam.bind(gpu, &refs))?));
    }
    let physical = (0..n)
        .map(|v| {
            let j = assign[v].unwrap_or(0);
            (j, pool[j].1.clone())
        })
        .collect();
    Ok((cmds, physical, step, bytes_held))
}

/// `[batch, shape...]`.
fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect()
}

/// Appends the backward pass from `dlogits` and the parameter updates. Layers before the
/// first trainable one get no input gradient; frozen parameters get no gradient and no update.
#[allow(
    clippy::too_many_arguments,
    reason = "the step's parts, named; a struct would only rename them"
)]
fn backward(
    b: &mut Builder,
    graph: &Graph,
    params: &ParamRefs<'_>,
    batch: usize,
    acts: &[Res],
    dlogits: Res,
    metrics: &Metrics,
    bn_stats: &std::collections::HashMap<usize, (usize, usize)>,
    tally: Option<Vec<Res>>,
) -> Result<()> {
    let trainable = |p: &ParamId| params.trainable[*p];
    let node_trains = |op: &Op| match op {
        Op::Dense { w, b, .. } | Op::Conv2d { w, b, .. } => {
            trainable(w) || b.as_ref().is_some_and(trainable)
        }
        Op::BatchNorm { gamma, beta, .. } => trainable(gamma) || trainable(beta),
        _ => false,
    };
    let Some(first) = graph.nodes.iter().position(|n| node_trains(&n.op)) else {
        return Ok(());
    };
    let mut g = dlogits;
    let mut updated: Vec<ParamId> = Vec::new();
    // With the checks on, the kernels that produce a dense layer's weight gradient (matmul)
    // and any bias gradient (reduce) check each value as they store it, reporting to the
    // status word; the other gradients are read again by check_finite below.
    let mut checked_here: Vec<ParamId> = Vec::new();
    let code = |p: ParamId| if params.checks { finite_code(p) } else { 0 };
    let status = || {
        if params.checks {
            Res::T(metrics.status.clone())
        } else {
            Res::ZeroStatus
        }
    };
    // The bias gradient of parameter `bp`: the sum of `dy` ([rows, cols]) over its rows,
    // each sum checked as it is stored.
    let bias_grad = |b: &mut Builder, rows: u32, cols: u32, dy: Res, bp: ParamId| {
        let p = ReduceParams {
            rows,
            cols,
            check: code(bp),
            _pad: 0,
        };
        let binds = vec![
            bytes(&p),
            dy,
            Res::T(params.grads[bp].clone()),
            Res::Step,
            status(),
        ];
        b.push(Rec::BiasGrad { cols }, binds);
    };
    for k in (first..graph.nodes.len()).rev() {
        let node = &graph.nodes[k];
        let (x, y) = (acts[k].clone(), acts[k + 1].clone());
        let need_dx = k > first;
        let out = batch * node.out_len();
        let inp = batch * node.in_len();
        g = match &node.op {
            Op::Reshape => g,
            Op::Dense {
                w,
                b: bias,
                relu,
                dropout,
            } => {
                let dz = if *relu {
                    // The backward from the fused layer's output (y > 0 where kept and active).
                    let scale = dropout.map_or(1.0, |d| crate::philox::scale(d.rate));
                    b.pointwise(
                        Pointwise::ReluDropoutBackward,
                        out,
                        1,
                        scale,
                        [y.clone(), g, y],
                    )
                } else {
                    g
                };
                let (fi, fo, bt) = (node.in_len() as u32, node.out_len() as u32, batch as u32);
                if trainable(w) {
                    let p = MatmulParams::new(fi, fo, bt, Epilogue::default()).checked(code(*w));
                    b.push(
                        Rec::Matmul {
                            trans: (true, false),
                            mnk: [fi, fo, bt],
                            tile: None,
                        },
                        vec![
                            bytes(&p),
                            Res::Step,
                            x.clone(),
                            dz.clone(),
                            x.clone(),
                            Res::T(params.grads[*w].clone()),
                            status(),
                        ],
                    );
                    updated.push(*w);
                    checked_here.push(*w);
                }
                if let Some(bp) = bias.filter(|p| trainable(p)) {
                    bias_grad(b, bt, fo, dz.clone(), bp);
                    updated.push(bp);
                    checked_here.push(bp);
                }
                if need_dx {
                    let dx = b.vbuf(inp);
                    let p = MatmulParams::new(bt, fi, fo, Epilogue::default());
                    b.push(
                        Rec::Matmul {
                            trans: (false, true),
                            mnk: [bt, fi, fo],
                            tile: None,
                        },
                        vec![
                            bytes(&p),
                            Res::Step,
                            dz.clone(),
                            Res::T(params.values[*w].clone()),
                            dz,
                            Res::V(dx),
                            Res::ZeroStatus,
                        ],
                    );
                    Res::V(dx)
                } else {
                    dz
                }
            }
            Op::Relu => b.pointwise(
                Pointwise::ReluDropoutBackward,
                out,
                1,
                1.0,
                [y.clone(), g, y],
            ),
            Op::Dropout(d) => b.dropout(d, params.seed, out, true, g),
            Op::Conv2d {
                w,
                b: bias,
                stride,
                padding,
            } => {
                let d = Conv2dDims::new(
                    "conv2d",
                    &batched(batch, &node.input),
                    params.values[*w].shape(),
                    *stride,
                    *padding,
                )?;
                if trainable(w) {
                    let dw = Res::T(params.grads[*w].clone());
                    // A weight gradient split over the batch sums its slices in a second pass.
                    let (first, second) = match d.weight_scratch_len() {
                        0 => (dw, None),
                        len => {
                            let s = b.vbuf(len);
                            (Res::V(s), Some((Res::V(s), dw)))
                        }
                    };
                    b.push(
                        Rec::Conv(Conv2dPass::BackwardWeight, d),
                        vec![bytes(&d.params()), x, g.clone(), first],
                    );
                    if let Some((s, dw)) = second {
                        b.push(
                            Rec::ConvWeightReduce(d),
                            vec![bytes(&d.params()), s.clone(), s, dw],
                        );
                    }
                    updated.push(*w);
                }
                if let Some(bp) = bias.filter(|p| trainable(p)) {
                    bias_grad(b, (out / d.cout) as u32, d.cout as u32, g.clone(), bp);
                    updated.push(bp);
                    checked_here.push(bp);
                }
                if need_dx {
                    let dx = b.vbuf(inp);
                    b.push(
                        Rec::Conv(Conv2dPass::BackwardInput, d),
                        vec![
                            bytes(&d.params()),
                            g,
                            Res::T(params.values[*w].clone()),
                            Res::V(dx),
                        ],
                    );
                    Res::V(dx)
                } else {
                    g
                }
            }
            Op::BatchNorm {
                gamma,
                beta,
                epsilon,
                momentum,
                frozen,
                ..
            } => {
                let c = *node.output.last().unwrap_or(&1);
                let p = BatchNormParams::new((out / c) as u32, c as u32, *epsilon, *momentum);
                let Some(&(bm, bs)) = bn_stats.get(&k) else {
                    let _ = frozen;
                    return Err(layer_err_plan(
                        node,
                        "a frozen BatchNormalization after a trainable layer is not supported yet",
                    ));
                };
                let partial = b.vbuf(p.partial_len());
                let (dgamma, dbeta) = if trainable(gamma) {
                    updated.push(*gamma);
                    updated.push(*beta);
                    (
                        Res::T(params.grads[*gamma].clone()),
                        Res::T(params.grads[*beta].clone()),
                    )
                } else {
                    (Res::V(b.vbuf(c)), Res::V(b.vbuf(c)))
                };
                b.push(
                    Rec::Bn(BnPass::PartialGrads, p),
                    vec![
                        bytes(&p),
                        x.clone(),
                        g.clone(),
                        Res::V(bm),
                        Res::V(bs),
                        Res::V(partial),
                    ],
                );
                b.push(
                    Rec::Bn(BnPass::ReduceGrads, p),
                    vec![bytes(&p), Res::V(partial), dgamma.clone(), dbeta.clone()],
                );
                if need_dx {
                    let dx = b.vbuf(inp);
                    b.push(
                        Rec::Bn(BnPass::Backward, p),
                        vec![
                            bytes(&p),
                            x,
                            g,
                            Res::T(params.values[*gamma].clone()),
                            dbeta,
                            Res::V(bm),
                            Res::V(bs),
                            dgamma,
                            Res::V(dx),
                        ],
                    );
                    Res::V(dx)
                } else {
                    g
                }
            }
            Op::MaxPool { window, stride } => {
                let dx = b.vbuf(inp);
                let p =
                    PoolParams::new("max_pool2d", &batched(batch, &node.input), *window, *stride)?;
                b.push(Rec::PoolBackward(p), vec![bytes(&p), x, g, Res::V(dx)]);
                Res::V(dx)
            }
        };
    }
    updated.sort_unstable();
    // Every gradient is checked before any parameter moves: a non-finite one stops all
    // updates from this step on (the optimizer kernels read the status word). Those not
    // checked by the kernel that produced them are read again here, up to FINITE_SEGMENTS
    // per dispatch (none for an MLP).
    let rest: Vec<ParamId> = if params.checks {
        updated
            .iter()
            .copied()
            .filter(|p| !checked_here.contains(p))
            .collect()
    } else {
        Vec::new()
    };
    for group in rest.chunks(FINITE_SEGMENTS) {
        let segments: Vec<(u32, usize)> = group
            .iter()
            .map(|&p| (params.values[p].len() as u32, p))
            .collect();
        let (u, vec4s) = FiniteParams::new(&segments);
        let mut binds = vec![bytes(&u), Res::Step, Res::T(metrics.status.clone())];
        for k in 0..FINITE_SEGMENTS {
            // Unused segments are empty; they bind the first gradient again.
            let p = group.get(k).unwrap_or(&group[0]);
            binds.push(Res::T(params.grads[*p].clone()));
        }
        b.push(Rec::CheckFinite { vec4s }, binds);
    }
    if let Some(binds) = tally {
        b.push(Rec::Tally, binds);
    }
    for p in updated {
        let len = params.values[p].len() as u32;
        let (value, grad) = (
            Res::T(params.values[p].clone()),
            Res::T(params.grads[p].clone()),
        );
        let state = &params.state[p];
        let status = Res::T(metrics.status.clone());
        match params.update {
            Update::Sgd(sgd) => {
                let u = OptimParams::sgd(
                    len,
                    &Sgd {
                        weight_decay: params.l2[p],
                        ..sgd
                    },
                );
                b.push(
                    Rec::Sgd { len },
                    vec![
                        bytes(&u),
                        grad,
                        value,
                        Res::T(state[0].clone()),
                        Res::Step,
                        status,
                    ],
                );
            }
            Update::Adam(adam) => {
                let u = OptimParams::adam(
                    len,
                    &Adam {
                        weight_decay: params.l2[p],
                        ..adam
                    },
                    1,
                );
                b.push(
                    Rec::Adam { len },
                    vec![
                        bytes(&u),
                        grad,
                        value,
                        Res::T(state[0].clone()),
                        Res::T(state[1].clone()),
                        Res::Step,
                        status,
                    ],
                );
            }
        }
    }
    Ok(())
}

/// An error naming the node's layer.
fn layer_err_plan(node: &crate::graph::Node, msg: &str) -> Error {
    crate::graph::layer_err(node.layer, msg)
}
