//! Reverse-mode differentiation: from the gradient of the logits back through the chain,
//! each node's gradient rule writing its parameters' gradients (and, where a node before it
//! trains, its input's gradient).

use crate::graph::forward::{Forward, Saved};
use crate::graph::instr::{Builder, Res, bytes};
use crate::graph::metrics::Metrics;
use crate::graph::plan::{Job, ParamRefs};
use crate::graph::{Graph, Op, ParamId, layer_err};
use crate::kernels::conv2d::Conv2dPass;
use crate::kernels::data::finite_code;
use crate::kernels::elementwise::Pointwise;
use crate::kernels::matmul::{Epilogue, MatmulParams};
use crate::kernels::rec::{BnPass, Rec};
use crate::kernels::reduce::ReduceParams;
use crate::{Error, Result};

/// The gradients a backward pass writes.
#[derive(Default)]
pub(super) struct Gradients {
    /// Parameters with a gradient (to update), in the order the backward reached them.
    pub updated: Vec<ParamId>,
    /// Those whose gradient the kernel that produced it checked for non-finite values.
    pub checked: Vec<ParamId>,
}

/// Appends the backward pass from `dlogits`; `None` when no node trains (nothing is
/// appended). Layers before the first trainable one get no input gradient; frozen
/// parameters get no gradient. Errors name `job.op`, the public call.
pub(super) fn backward(
    b: &mut Builder,
    job: Job,
    graph: &Graph,
    params: &ParamRefs<'_>,
    fwd: &Forward,
    dlogits: Res,
    metrics: &Metrics,
) -> Result<Option<Gradients>> {
    let Job { op, batch, .. } = job;
    let trainable = |p: &ParamId| params.trainable[*p];
    let node_trains = |op: &Op| match op {
        Op::Dense { w, b, .. } | Op::Conv2d { w, b, .. } => {
            trainable(w) || b.as_ref().is_some_and(trainable)
        }
        Op::BatchNorm { gamma, beta, .. } => trainable(gamma) || trainable(beta),
        _ => false,
    };
    let mut grads = Gradients::default();
    let Some(first) = graph.nodes.iter().position(|n| node_trains(&n.op)) else {
        return Ok(None);
    };
    let mut g = dlogits;
    // With the checks on, the kernels that produce a dense layer's weight gradient (matmul)
    // and any bias gradient (reduce) check each value as they store it, reporting to the
    // status word; the other gradients are read again by the update's check_finite.
    let code = |p: ParamId| if params.checks { finite_code(p) } else { 0 };
    let status = || {
        if params.checks {
            Res::T(metrics.status.clone())
        } else {
            Res::ZeroStatus
        }
    };
    let value = |p: &ParamId| Res::T(params.values[*p].clone());
    let grad = |p: &ParamId| Res::T(params.grads[*p].clone());
    // The bias gradient of parameter `bp`: the sum of `dy` ([rows, cols]) over its rows,
    // each sum checked as it is stored.
    let bias_grad = |b: &mut Builder, rows: u32, cols: u32, dy: Res, bp: ParamId| {
        let p = ReduceParams {
            rows,
            cols,
            check: code(bp),
            _pad: 0,
        };
        let binds = vec![bytes(&p), dy, grad(&bp), Res::Step, status()];
        b.push(Rec::BiasGrad { cols }, binds);
    };
    for k in (first..graph.nodes.len()).rev() {
        let node = &graph.nodes[k];
        let (x, y) = (fwd.acts[k].clone(), fwd.acts[k + 1].clone());
        let need_dx = k > first;
        let out = batch * node.out_len();
        let inp = batch * node.in_len();
        g = match (&node.op, fwd.saved[k]) {
            (Op::Reshape, _) => g,
            (
                Op::Dense {
                    w,
                    b: bias,
                    relu,
                    dropout,
                },
                _,
            ) => {
                let dz = if *relu {
                    // The backward from the fused layer's output (y > 0 where kept and active).
                    let scale =
                        dropout.map_or(1.0, |d| crate::philox::DropoutLowering::new(d.rate).scale);
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
                            x,
                            grad(w),
                            status(),
                        ],
                    );
                    grads.updated.push(*w);
                    grads.checked.push(*w);
                }
                if let Some(bp) = bias.filter(|p| trainable(p)) {
                    bias_grad(b, bt, fo, dz.clone(), bp);
                    grads.updated.push(bp);
                    grads.checked.push(bp);
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
                            value(w),
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
            (Op::Relu, _) => b.pointwise(
                Pointwise::ReluDropoutBackward,
                out,
                1,
                1.0,
                [y.clone(), g, y],
            ),
            (Op::Dropout(d), _) => b.dropout(d, params.seed, out, true, g),
            (Op::SpatialDropout(d), _) => {
                let c = *node.output.last().unwrap_or(&1);
                b.spatial_dropout(d, params.seed, out, c, node.out_len(), true, g)
            }
            (
                Op::Conv2d {
                    w,
                    b: bias,
                    relu,
                    spatial,
                    ..
                },
                Saved::Conv(d),
            ) => {
                // A fused epilogue first: from y where the ReLU is in it (y > 0 exactly where
                // the channel was kept and the ReLU active), else the spatial dropout's own
                // backward.
                let g = match (relu, spatial) {
                    (true, _) => {
                        let scale = spatial
                            .map_or(1.0, |sd| crate::philox::DropoutLowering::new(sd.rate).scale);
                        b.pointwise(
                            Pointwise::ReluDropoutBackward,
                            out,
                            1,
                            scale,
                            [y.clone(), g, y],
                        )
                    }
                    (false, Some(sd)) => {
                        b.spatial_dropout(sd, params.seed, out, d.cout, out / d.n, true, g)
                    }
                    (false, None) => g,
                };
                if trainable(w) {
                    // A weight gradient split over the batch sums its slices in a second pass.
                    let (first, second) = match d.weight_scratch_len() {
                        0 => (grad(w), None),
                        len => {
                            let s = b.vbuf(len);
                            (Res::V(s), Some((Res::V(s), grad(w))))
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
                    grads.updated.push(*w);
                }
                if let Some(bp) = bias.filter(|p| trainable(p)) {
                    bias_grad(b, (out / d.cout) as u32, d.cout as u32, g.clone(), bp);
                    grads.updated.push(bp);
                    grads.checked.push(bp);
                }
                if need_dx {
                    let dx = b.vbuf(inp);
                    b.push(
                        Rec::Conv(Conv2dPass::BackwardInput, d),
                        vec![bytes(&d.params()), g, value(w), Res::V(dx)],
                    );
                    Res::V(dx)
                } else {
                    g
                }
            }
            (Op::BatchNorm { gamma, beta, .. }, Saved::Bn(p, stats)) => {
                let Some((bm, bs)) = stats else {
                    return Err(layer_err(
                        op,
                        node.layer,
                        "a frozen BatchNormalization after a trainable layer is not supported yet",
                    ));
                };
                let c = p.channels as usize;
                let partial = b.vbuf(p.partial_len());
                let (dgamma, dbeta) = if trainable(gamma) {
                    grads.updated.push(*gamma);
                    grads.updated.push(*beta);
                    (grad(gamma), grad(beta))
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
                            value(gamma),
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
            (Op::MaxPool { .. }, Saved::Pool(p)) => {
                let dx = b.vbuf(inp);
                b.push(Rec::PoolBackward(p), vec![bytes(&p), x, g, Res::V(dx)]);
                Res::V(dx)
            }
            (Op::Conv2d { .. } | Op::BatchNorm { .. } | Op::MaxPool { .. }, _) => {
                return Err(Error::internal(
                    op,
                    format!("node {k} has no saved forward for its backward"),
                ));
            }
        };
    }
    Ok(Some(grads))
}
