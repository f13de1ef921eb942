//! Layers to graph: every layer checked again, every shape worked out, each parameter
//! described and named as Keras names it.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};

use crate::graph::{DropoutOp, Graph, Node, Op, layer_err};
use crate::nn::layers::{Activation, Layer};
use crate::spec::Padding;
use crate::{Error, Result};

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

fn keras_name(kind: &str) -> &'static str {
    match kind {
        "Dense" => "dense",
        "Conv2D" => "conv2d",
        "MaxPooling2D" => "max_pooling2d",
        "BatchNormalization" => "batch_normalization",
        "Flatten" => "flatten",
        "ReLU" => "re_lu",
        "SpatialDropout2D" => "spatial_dropout2d",
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

/// Lowers `layers` to a graph over per-sample `input` for the public call `op`, checking
/// every layer's values and every shape; returns the graph (unfused: the plan fuses), the
/// parameters in order, and each layer's Keras name.
pub(crate) fn lower(op: &'static str, input: &[usize], layers: &[Layer]) -> Result<Lowered> {
    if input.is_empty() || input.contains(&0) {
        return Err(Error::shape(
            op,
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
        layer.check(op, i)?;
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
                        op,
                        at,
                        format!("expects a flat input, got {shape:?}; add Flatten before it"),
                    ));
                }
                let fan_in = shape[0];
                let w = param(
                    "kernel",
                    vec![fan_in, d.units()],
                    d.is_trainable(),
                    d.get_l2(),
                    Init::Glorot(fan_in, d.units()),
                    true,
                );
                let b = d.has_bias().then(|| {
                    param(
                        "bias",
                        vec![d.units()],
                        d.is_trainable(),
                        0.0,
                        Init::Zeros,
                        true,
                    )
                });
                let out = vec![d.units()];
                push(
                    Op::Dense {
                        w,
                        b,
                        relu: d.get_activation() == Activation::Relu,
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
                        op,
                        at,
                        format!("expects an [height, width, channels] input, got {shape:?}"),
                    ));
                }
                let [kh, kw] = cv.kernel();
                let (oh, ow) = match (
                    out_size(shape[0], kh, cv.get_stride(), cv.get_padding()),
                    out_size(shape[1], kw, cv.get_stride(), cv.get_padding()),
                ) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return Err(layer_err(
                            op,
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
                    vec![kh, kw, cin, cv.filters()],
                    cv.is_trainable(),
                    cv.get_l2(),
                    Init::Glorot(kh * kw * cin, kh * kw * cv.filters()),
                    true,
                );
                let b = cv.has_bias().then(|| {
                    param(
                        "bias",
                        vec![cv.filters()],
                        cv.is_trainable(),
                        0.0,
                        Init::Zeros,
                        true,
                    )
                });
                let out = vec![oh, ow, cv.filters()];
                push(
                    Op::Conv2d {
                        w,
                        b,
                        stride: cv.get_stride(),
                        padding: cv.get_padding(),
                        relu: false,
                        spatial: None,
                    },
                    out.clone(),
                    &shape,
                );
                if cv.get_activation() == Activation::Relu {
                    push(Op::Relu, out.clone(), &out);
                }
                shape = out;
            }
            Layer::MaxPool2d(p) => {
                if shape.len() != 3 {
                    return Err(layer_err(
                        op,
                        at,
                        format!("expects an [height, width, channels] input, got {shape:?}"),
                    ));
                }
                let oh = out_size(shape[0], p.window()[0], p.get_stride()[0], Padding::Valid);
                let ow = out_size(shape[1], p.window()[1], p.get_stride()[1], Padding::Valid);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(layer_err(
                        op,
                        at,
                        format!("window {:?} is larger than its input {shape:?}", p.window()),
                    ));
                };
                let out = vec![oh, ow, shape[2]];
                push(
                    Op::MaxPool {
                        window: p.window(),
                        stride: p.get_stride(),
                    },
                    out.clone(),
                    &shape,
                );
                shape = out;
            }
            Layer::BatchNorm(bn) => {
                let c = *shape.last().unwrap_or(&1);
                let gamma = param("gamma", vec![c], bn.is_trainable(), 0.0, Init::Ones, true);
                let beta = param("beta", vec![c], bn.is_trainable(), 0.0, Init::Zeros, true);
                let mean = param("moving_mean", vec![c], false, 0.0, Init::Zeros, false);
                let var = param("moving_variance", vec![c], false, 0.0, Init::Ones, false);
                let op = Op::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    epsilon: bn.get_epsilon(),
                    momentum: bn.get_momentum(),
                    frozen: !bn.is_trainable(),
                };
                push(op, shape.clone(), &shape);
            }
            Layer::Flatten => {
                let out = vec![shape.iter().product()];
                push(Op::Reshape, out.clone(), &shape);
                shape = out;
            }
            Layer::Relu => push(Op::Relu, shape.clone(), &shape),
            Layer::SpatialDropout2d(d) => {
                if shape.len() != 3 {
                    return Err(layer_err(
                        op,
                        at,
                        format!("expects an [height, width, channels] input, got {shape:?}"),
                    ));
                }
                push(
                    Op::SpatialDropout(DropoutOp {
                        rate: d.rate(),
                        stream: i as u64,
                    }),
                    shape.clone(),
                    &shape,
                )
            }
            Layer::Dropout(d) => push(
                Op::Dropout(DropoutOp {
                    rate: d.rate(),
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
        },
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
    pub fn check_logits(self, op: &'static str) -> Result<Lowered> {
        let out = self.graph.output();
        if out.len() != 1 || out[0] < 2 {
            return Err(Error::shape(
                op,
                format!(
                    "the last layer must give logits over at least 2 classes, shape [classes]; it gives {out:?}"
                ),
            ));
        }
        Ok(self)
    }
}

/// Host initial values, Glorot-uniform from a seeded generator.
pub(super) fn init_values(infos: &[ParamInfo], seed: u64) -> Vec<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layers::{Dense, Dropout};

    /// A layer value that skipped the builders (possible inside the crate, and for any
    /// `Layer` made by future code) is refused when the model is lowered, i.e. by `compile`.
    #[test]
    fn lower_refuses_a_layer_that_bypassed_the_builders() {
        let layers: Vec<Layer> = vec![
            Dense::new(8).unwrap().into(),
            Dropout::bypassing_checks(-0.5).into(),
            Dense::new(3).unwrap().into(),
        ];
        let e = lower("compile", &[4], &layers).err().expect("an Err");
        assert_eq!(
            e.to_string(),
            "compile: layer 1 (Dropout): rate -0.5 is outside [0, 1]"
        );
    }
}
