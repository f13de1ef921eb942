//! The forward pass: each node's dispatches, in training mode (dropout, batch statistics),
//! inference mode, or Monte-Carlo mode (dropout on over copies of the batch, batch norm in
//! inference mode), and what each node's backward will need.

use crate::Result;
use crate::graph::instr::{Builder, Res, batched, bytes};
use crate::graph::plan::{Job, Mode, ParamRefs};
use crate::graph::{Graph, Op, ParamId};
use crate::kernels::batchnorm::BatchNormParams;
use crate::kernels::conv2d::{Conv2dDims, Conv2dPass, ConvEpilogue};
use crate::kernels::dropout::DropoutSpec;
use crate::kernels::elementwise::Pointwise;
use crate::kernels::matmul::{Epilogue, MatmulParams};
use crate::kernels::pool::PoolParams;
use crate::kernels::rec::{BnPass, Rec};

/// What a node's backward needs of its forward, worked out once.
#[derive(Clone, Copy)]
pub(super) enum Saved {
    /// Nothing beyond the node's input and output.
    Nothing,
    Conv(Conv2dDims),
    Pool(PoolParams),
    /// The BatchNorm's sizes, and the virtual buffers of its batch mean and standard
    /// deviation when it ran in training mode.
    Bn(BatchNormParams, Option<(usize, usize)>),
}

/// The forward pass, planned.
pub(super) struct Forward {
    /// `acts[i]` is node `i`'s input, `acts[n]` the logits.
    pub acts: Vec<Res>,
    /// By node.
    pub saved: Vec<Saved>,
    /// The moving-average updates of training-mode BatchNorm nodes: (sizes, [batch mean,
    /// batch std, moving mean, moving variance]). Recorded after the backward pass, with the
    /// optimizer updates, so the non-finite checks can hold them back too.
    pub moving: Vec<(BatchNormParams, [Res; 4])>,
}

/// Appends the forward pass of `graph` over `job.batch` samples from `x0`; training mode
/// turns dropout and batch statistics on. Errors name `job.op`, the public call.
pub(super) fn forward(
    b: &mut Builder,
    job: Job,
    graph: &Graph,
    params: &ParamRefs<'_>,
    x0: Res,
) -> Result<Forward> {
    let Job { op, batch, mode } = job;
    let train = mode == Mode::Train;
    // Monte-Carlo dropout: `copies` goes from 1 to `samples` at the first dropout, where the
    // copies of the batch are made.
    let samples = match mode {
        Mode::Sample { samples } => Some(samples),
        _ => None,
    };
    let mut copies = 1;
    let t = |i: &ParamId| Res::T(params.values[*i].clone());
    let mut fwd = Forward {
        acts: vec![x0],
        saved: Vec::with_capacity(graph.nodes.len()),
        moving: Vec::new(),
    };
    for (k, node) in graph.nodes.iter().enumerate() {
        let x = fwd.acts[k].clone();
        let rows = batch * copies;
        let out = rows * node.out_len();
        // The Monte-Carlo dropout of this node's output (`y`, one row per copy so far): the
        // copies made at the first one.
        let mut mc = |b: &mut Builder, d: &crate::graph::DropoutOp, y: Res, n: usize| {
            let first = copies == 1;
            copies = n;
            b.dropout_mc(
                d,
                params.seed,
                (batch * node.out_len(), node.out_len(), n),
                first,
                y,
            )
        };
        let mut saved = Saved::Nothing;
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
                let (m, kk, n) = (rows as u32, node.in_len() as u32, node.out_len() as u32);
                let bias_res = bias.as_ref().map_or(x.clone(), t);
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
                        t(w),
                        bias_res,
                        Res::V(y),
                        Res::ZeroStatus,
                    ],
                );
                match (samples, dropout) {
                    (Some(n), Some(d)) => mc(b, d, Res::V(y), n),
                    _ => Res::V(y),
                }
            }
            Op::Relu => b.pointwise(
                Pointwise::ReluForward,
                out,
                1,
                1.0,
                [x.clone(), x.clone(), x],
            ),
            Op::Dropout(d) => match samples {
                _ if train => b.dropout(d, params.seed, out, false, x),
                Some(n) => mc(b, d, x, n),
                None => x,
            },
            Op::SpatialDropout(d) => {
                if train {
                    let c = *node.output.last().unwrap_or(&1);
                    b.spatial_dropout(d, params.seed, out, c, node.out_len(), false, x)
                } else {
                    x
                }
            }
            Op::Conv2d {
                w,
                b: bias,
                stride,
                padding,
                relu,
                spatial: Some(sd),
            } => {
                // Fused: bias, ReLU and the channel mask in the convolution's epilogue
                // (the mask off in inference: it keeps every channel unscaled).
                let d = Conv2dDims::new(
                    op,
                    &batched(rows, &node.input),
                    params.values[*w].shape(),
                    *stride,
                    *padding,
                )?;
                saved = Saved::Conv(d);
                let y = b.vbuf(out);
                let mask = train.then_some(DropoutSpec {
                    rate: sd.rate,
                    seed: params.seed,
                    offset: sd.stream,
                });
                let epi = ConvEpilogue::new(bias.is_some(), *relu, mask);
                let bias_res = bias.as_ref().map_or(x.clone(), t);
                b.push(
                    Rec::ConvEpilogue(d),
                    vec![
                        bytes(&d.params()),
                        x,
                        t(w),
                        Res::V(y),
                        bytes(&epi),
                        Res::Step,
                        bias_res,
                    ],
                );
                Res::V(y)
            }
            Op::Conv2d {
                w,
                b: bias,
                stride,
                padding,
                relu,
                spatial: None,
            } => {
                let d = Conv2dDims::new(
                    op,
                    &batched(rows, &node.input),
                    params.values[*w].shape(),
                    *stride,
                    *padding,
                )?;
                saved = Saved::Conv(d);
                let z = b.vbuf(out);
                b.push(
                    Rec::Conv(Conv2dPass::Forward, d),
                    vec![bytes(&d.params()), x, t(w), Res::V(z)],
                );
                let y = match bias {
                    Some(bp) => {
                        let cols = *node.output.last().unwrap_or(&1) as u32;
                        b.pointwise(
                            Pointwise::BiasAdd,
                            out,
                            cols,
                            1.0,
                            [Res::V(z), Res::V(z), t(bp)],
                        )
                    }
                    None => Res::V(z),
                };
                // (`relu` without `spatial` is never made by `Graph::fuse`; kept correct.)
                if *relu {
                    b.pointwise(
                        Pointwise::ReluForward,
                        out,
                        1,
                        1.0,
                        [y.clone(), y.clone(), y],
                    )
                } else {
                    y
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
                            x,
                            t(gamma),
                            t(beta),
                            Res::V(bm),
                            Res::V(bs),
                            Res::V(scratch),
                            Res::V(y),
                        ],
                    );
                    fwd.moving
                        .push((p, [Res::V(bm), Res::V(bs), t(mean), t(var)]));
                    saved = Saved::Bn(p, Some((bm, bs)));
                } else {
                    let scratch = b.vbuf(c);
                    b.push(
                        Rec::Bn(BnPass::Inference, p),
                        vec![
                            bytes(&p),
                            x.clone(),
                            x,
                            t(gamma),
                            t(beta),
                            t(mean),
                            t(var),
                            Res::V(scratch),
                            Res::V(y),
                        ],
                    );
                    saved = Saved::Bn(p, None);
                }
                Res::V(y)
            }
            Op::MaxPool { window, stride } => {
                let y = b.vbuf(out);
                let p = PoolParams::new(op, &batched(rows, &node.input), *window, *stride)?;
                saved = Saved::Pool(p);
                b.push(
                    Rec::PoolForward(p),
                    vec![bytes(&p), x.clone(), x, Res::V(y)],
                );
                Res::V(y)
            }
        };
        fwd.acts.push(y);
        fwd.saved.push(saved);
    }
    // A model without dropout: every copy is the same, made from the logits.
    if let Some(n) = samples.filter(|_| copies == 1)
        && let Some(logits) = fwd.acts.pop()
    {
        let keep = crate::graph::DropoutOp {
            rate: 0.0,
            stream: 0,
        };
        let classes = graph.output().iter().product::<usize>();
        fwd.acts.push(b.dropout_mc(
            &keep,
            params.seed,
            (batch * classes, classes, n),
            true,
            logits,
        ));
    }
    Ok(fwd)
}
