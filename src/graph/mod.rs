//! The graph executor: a model's ops on symbolic shapes, their gradients, a plan that fixes
//! every buffer and bind group once, and a training step recorded as one submission.
//!
//! Lives here: the [`Graph`] (this file), [`plan`] (the orchestration), in pipeline order
//! [`gather`], [`forward`], [`metrics`], [`backward`], [`update`], [`alloc`] (over the
//! instructions of [`instr`]), and [`run`] (epochs, evaluation, prediction for `nn`).
//! May use: `kernels` (pipelines, params, [`Rec`](crate::kernels::rec::Rec)), `data`'s
//! resident data sets, the device (`Gpu`, `Tensor`), `spec` and `error`; never `nn`.
//! Holds no WGSL.
//!
//! # The graph
//! A [`Graph`] is a chain of [`Node`]s, each reading the previous node's output and its own
//! parameters (what a `Sequential` model needs; every op's gradient rule is local, so
//! reverse-mode differentiation walks the chain backwards). Shapes are checked when the
//! graph is built, and errors name the node's layer and both shapes.
//!
//! # Fusion
//! `dense -> relu -> dropout` becomes one matmul whose epilogue adds the bias, applies the
//! ReLU and draws the dropout mask. Its backward needs only the layer's output `y`: where
//! `y > 0` the element was kept and the ReLU active, so `dz = dy / (1 - p)` there and 0
//! elsewhere. No mask and no pre-activation are stored.
//!
//! `conv2d [-> relu] -> spatial dropout` likewise becomes one convolution whose epilogue
//! (shaders/conv2d_epilogue.wgsl) adds the bias, applies the ReLU and draws the channel mask
//! as it stores each output tile; with the ReLU the backward starts from `y` as above, without
//! it from the spatial dropout backward (which regenerates the channel mask). A convolution
//! not followed by a spatial dropout keeps its separate bias and ReLU passes. Fused and
//! unfused give the same bits: the epilogue does the same f32 operations in the same order.
//!
//! # Dropout streams
//! The dropout (or spatial dropout) of model layer `l` (its index in the `Sequential`) at
//! training step `s`
//! (counted from 0 over the model's life) draws from stream `offset = l + s * 2^32` with the
//! model's seed: no two layers or steps share a mask, fusion does not change any mask, and
//! any mask can be recomputed on the host with [`crate::philox::keep`].
//!
//! # The plan
//! [`plan::Plan`] fuses the graph (unless fusion is off: the one place it happens), lists the step's kernel dispatches against virtual buffers, gives each
//! virtual buffer a lifetime (first and last dispatch that touches it) and maps virtual
//! buffers to physical ones, reusing a dead buffer of the right size class. Bind groups and
//! uniforms are made then, once; a step afterwards writes one 16-byte uniform, records the
//! dispatches into one compute pass and submits once.

mod alloc;
mod backward;
mod forward;
pub(crate) mod gather;
mod instr;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod run;
mod update;

use crate::Error;
use crate::spec::Padding;

/// Index of a parameter in the model's parameter list.
pub(crate) type ParamId = usize;

/// A dropout: its rate and its stream (the model layer index; see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DropoutOp {
    pub rate: f32,
    pub stream: u64,
}

/// An op of the graph, with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// `dropout(act(x w + b))`, fused; `dropout` only with `relu` (the backward reads `y > 0`).
    Dense {
        w: ParamId,
        b: Option<ParamId>,
        relu: bool,
        dropout: Option<DropoutOp>,
    },
    /// NHWC x HWIO convolution plus bias; fused, `spatial(act(conv(x) + b))` in the
    /// convolution's epilogue (`relu` and `spatial` only set by [`Graph::fuse`], and only
    /// with `spatial`).
    Conv2d {
        w: ParamId,
        b: Option<ParamId>,
        stride: usize,
        padding: Padding,
        relu: bool,
        spatial: Option<DropoutOp>,
    },
    /// Max pooling, valid padding.
    MaxPool {
        window: [usize; 2],
        stride: [usize; 2],
    },
    /// Batch normalisation over the last axis; `frozen` runs inference statistics.
    BatchNorm {
        gamma: ParamId,
        beta: ParamId,
        mean: ParamId,
        var: ParamId,
        epsilon: f32,
        momentum: f32,
        frozen: bool,
    },
    /// `max(x, 0)`.
    Relu,
    /// Inverted dropout (standalone).
    Dropout(DropoutOp),
    /// SpatialDropout2D over an `[h, w, c]` input: one keep bit per (sample, channel).
    SpatialDropout(DropoutOp),
    /// A new shape over the same data (Flatten).
    Reshape,
}

/// One node: an op, the model layer it came from (for messages), its per-sample shapes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub op: Op,
    /// Index and Keras type name of the layer this node was lowered from.
    pub layer: (usize, &'static str),
    /// Per-sample input shape (the batch axis is added by the plan).
    pub input: Vec<usize>,
    /// Per-sample output shape.
    pub output: Vec<usize>,
}

impl Node {
    /// Elements per sample of the output.
    pub fn out_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Elements per sample of the input.
    pub fn in_len(&self) -> usize {
        self.input.iter().product()
    }
}

/// A model's forward graph, ending in logits over `classes` classes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Graph {
    /// Per-sample input shape, e.g. `[28, 28, 1]` or `[784]`.
    pub input: Vec<usize>,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Per-sample shape of the graph's output (the logits).
    pub fn output(&self) -> &[usize] {
        self.nodes.last().map_or(&self.input, |n| &n.output)
    }

    /// Fuses `Dense -> Relu -> Dropout` (and `Dense -> Relu`) into single dense nodes, and
    /// `Conv2d -> Relu -> SpatialDropout` (and `Conv2d -> SpatialDropout`) into single
    /// convolution nodes; a `Conv2d -> Relu` with no spatial dropout after it stays as it is.
    pub fn fuse(mut self) -> Graph {
        let mut out: Vec<Node> = Vec::with_capacity(self.nodes.len());
        let nodes: Vec<Node> = self.nodes.drain(..).collect();
        for (i, node) in nodes.iter().cloned().enumerate() {
            if let Some(prev) = out.last_mut()
                && let Op::Conv2d { relu, spatial, .. } = &mut prev.op
                && spatial.is_none()
            {
                let next_spatial =
                    matches!(nodes.get(i + 1).map(|n| &n.op), Some(Op::SpatialDropout(_)));
                match node.op {
                    Op::Relu if !*relu && next_spatial => {
                        *relu = true;
                        continue;
                    }
                    Op::SpatialDropout(d) => {
                        *spatial = Some(d);
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(prev) = out.last_mut()
                && let Op::Dense { relu, dropout, .. } = &mut prev.op
            {
                match node.op {
                    Op::Relu if !*relu && dropout.is_none() => {
                        *relu = true;
                        continue;
                    }
                    Op::Dropout(d) if *relu && dropout.is_none() => {
                        *dropout = Some(d);
                        continue;
                    }
                    _ => {}
                }
            }
            out.push(node);
        }
        self.nodes = out;
        self
    }
}

/// An error of the public call `op` naming the layer (index and type).
pub(crate) fn layer_err(
    op: &'static str,
    layer: (usize, &'static str),
    msg: impl std::fmt::Display,
) -> Error {
    Error::Shape {
        op,
        msg: format!("layer {} ({}): {msg}", layer.0, layer.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: Op) -> Node {
        Node {
            op,
            layer: (0, "x"),
            input: vec![4],
            output: vec![4],
        }
    }

    #[test]
    fn graph_fuses_dense_relu_dropout_but_not_linear_dense_dropout() {
        let dense = Op::Dense {
            w: 0,
            b: Some(1),
            relu: false,
            dropout: None,
        };
        let g = Graph {
            input: vec![4],
            nodes: vec![
                node(dense.clone()),
                node(Op::Relu),
                node(Op::Dropout(DropoutOp {
                    rate: 0.5,
                    stream: 2,
                })),
            ],
        }
        .fuse();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(
            g.nodes[0].op,
            Op::Dense {
                w: 0,
                b: Some(1),
                relu: true,
                dropout: Some(DropoutOp {
                    rate: 0.5,
                    stream: 2
                })
            }
        );
        let g = Graph {
            input: vec![4],
            nodes: vec![
                node(dense.clone()),
                node(Op::Dropout(DropoutOp {
                    rate: 0.5,
                    stream: 2,
                })),
            ],
        }
        .fuse();
        assert_eq!(
            g.nodes.len(),
            2,
            "a linear dense keeps its dropout separate"
        );
        let g = Graph {
            input: vec![4],
            nodes: vec![node(dense), node(Op::Relu), node(Op::Relu)],
        }
        .fuse();
        assert_eq!(g.nodes.len(), 2);
    }

    #[test]
    fn graph_fuses_conv_relu_spatial_dropout_but_leaves_conv_relu_alone() {
        let conv = Op::Conv2d {
            w: 0,
            b: Some(1),
            stride: 1,
            padding: Padding::Valid,
            relu: false,
            spatial: None,
        };
        let sd = DropoutOp {
            rate: 0.25,
            stream: 3,
        };
        let fuse = |ops: Vec<Op>| {
            Graph {
                input: vec![4],
                nodes: ops.into_iter().map(node).collect(),
            }
            .fuse()
            .nodes
            .into_iter()
            .map(|n| n.op)
            .collect::<Vec<_>>()
        };
        let with = |relu, spatial| match conv.clone() {
            Op::Conv2d {
                w,
                b,
                stride,
                padding,
                ..
            } => Op::Conv2d {
                w,
                b,
                stride,
                padding,
                relu,
                spatial,
            },
            _ => unreachable!(),
        };
        assert_eq!(
            fuse(vec![conv.clone(), Op::Relu, Op::SpatialDropout(sd)]),
            vec![with(true, Some(sd))]
        );
        assert_eq!(
            fuse(vec![conv.clone(), Op::SpatialDropout(sd), Op::Relu]),
            vec![with(false, Some(sd)), Op::Relu]
        );
        assert_eq!(
            fuse(vec![conv.clone(), Op::Relu, Op::Reshape]),
            vec![conv.clone(), Op::Relu, Op::Reshape],
            "a convolution without a spatial dropout after it keeps its ReLU separate"
        );
        assert_eq!(
            fuse(vec![
                conv.clone(),
                Op::Relu,
                Op::MaxPool {
                    window: [2, 2],
                    stride: [2, 2]
                },
                Op::SpatialDropout(sd)
            ])
            .len(),
            4
        );
        assert_eq!(
            fuse(vec![
                conv.clone(),
                Op::SpatialDropout(sd),
                Op::SpatialDropout(sd)
            ]),
            vec![with(false, Some(sd)), Op::SpatialDropout(sd)]
        );
    }
}
