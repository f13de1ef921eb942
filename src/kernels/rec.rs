//! A recorded dispatch: which kernel entry point, with what sizes, so a planned step (and the
//! bench's timed kernels) can find the bind group layout at plan time and record the dispatch
//! at step time through one `match`.

use crate::kernels::Family;
use crate::kernels::batchnorm::{BatchNorm, BatchNormParams};
use crate::kernels::conv2d::{Conv2d, Conv2dDims, Conv2dPass};
use crate::kernels::data::Data;
use crate::kernels::dropout::Dropout;
use crate::kernels::dropout_mc::DropoutMc;
use crate::kernels::elementwise::{Elementwise, Pointwise};
use crate::kernels::matmul::{Matmul, MatmulTile};
use crate::kernels::optim::Optim;
use crate::kernels::pool::{Pool, PoolParams};
use crate::kernels::reduce::Reduce;
use crate::kernels::softmax_xent::SoftmaxXent;
use crate::{Error, Gpu, Result};

/// What an instruction dispatches: one variant per kernel entry point family.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rec {
    Gather {
        elements: u32,
    },
    Metrics,
    Tally,
    CheckFinite {
        vec4s: u32,
    },
    /// `tile` is chosen (autotuned) when the plan is materialized, recorded as is after.
    Matmul {
        trans: (bool, bool),
        mnk: [u32; 3],
        tile: Option<MatmulTile>,
    },
    Pointwise {
        which: Pointwise,
        len: u32,
    },
    Dropout {
        backward: bool,
        len: u32,
    },
    /// Dropout over the copies of a batch (Monte-Carlo dropout), `len` outputs.
    DropoutMc {
        len: u32,
    },
    /// The softmax of `rows` rows (inference).
    Softmax {
        rows: u32,
    },
    /// SpatialDropout2D over `len` elements (params from `DropoutParams::spatial`).
    SpatialDropout {
        backward: bool,
        len: u32,
    },
    BiasGrad {
        cols: u32,
    },
    SoftmaxLoss {
        rows: u32,
    },
    PoolForward(PoolParams),
    PoolBackward(PoolParams),
    Sgd {
        len: u32,
    },
    Adam {
        len: u32,
    },
    Conv(Conv2dPass, Conv2dDims),
    ConvWeightReduce(Conv2dDims), // the second pass of a weight gradient split over the batch
    /// The forward with an epilogue (bias, ReLU, spatial dropout), `ConvEpilogue` params.
    ConvEpilogue(Conv2dDims),
    Bn(BnPass, BatchNormParams),
}

/// The entry points of shaders/batchnorm.wgsl the executor records.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BnPass {
    PartialMoments,
    ReduceMoments,
    Forward,
    Inference,
    UpdateMoving,
    PartialGrads,
    ReduceGrads,
    Backward,
}

impl Rec {
    pub(crate) fn family(self, gpu: &Gpu) -> Result<&Family> {
        Ok(match self {
            Rec::Gather { .. } => &Data::get(gpu)?.gather_family,
            Rec::Metrics | Rec::Tally => &Data::get(gpu)?.metrics_family,
            Rec::CheckFinite { .. } => &Data::get(gpu)?.finite_family,
            Rec::Matmul { .. } => &Matmul::get(gpu)?.family,
            Rec::Pointwise { .. } => &Elementwise::get(gpu)?.family,
            Rec::Dropout { .. } | Rec::SpatialDropout { .. } => &Dropout::get(gpu)?.family,
            Rec::DropoutMc { .. } => &DropoutMc::get(gpu)?.family,
            Rec::Softmax { .. } => &SoftmaxXent::get(gpu)?.softmax_family,
            Rec::BiasGrad { .. } => &Reduce::get(gpu)?.family,
            Rec::SoftmaxLoss { .. } => &SoftmaxXent::get(gpu)?.family,
            Rec::PoolForward(_) | Rec::PoolBackward(_) => &Pool::get(gpu)?.family,
            Rec::Sgd { .. } => &Optim::get(gpu)?.sgd_family,
            Rec::Adam { .. } => &Optim::get(gpu)?.adam_family,
            Rec::Conv(..) | Rec::ConvWeightReduce(_) => &Conv2d::get(gpu)?.family,
            Rec::ConvEpilogue(_) => &Conv2d::get(gpu)?.epilogue(gpu)?.family,
            Rec::Bn(pass, _) => {
                let k = BatchNorm::get(gpu)?;
                match pass {
                    BnPass::PartialMoments | BnPass::PartialGrads => &k.partial_family,
                    BnPass::ReduceMoments | BnPass::ReduceGrads => &k.reduce_family,
                    BnPass::Forward | BnPass::Inference | BnPass::Backward => &k.apply_family,
                    BnPass::UpdateMoving => &k.moving_family,
                }
            }
        })
    }

    /// Records the dispatch with bind group `io` (made with [`Rec::family`]'s layout); a
    /// matmul's tile must be chosen by then (an [`Error::Internal`] if not: a planner bug). The
    /// bench's timed kernels record through it too.
    pub(crate) fn record(
        self,
        gpu: &Gpu,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
    ) -> Result<()> {
        match self {
            Rec::Gather { elements } => Data::get(gpu)?.record_gather(pass, io, elements),
            Rec::Metrics => Data::get(gpu)?.record_metrics(pass, io),
            Rec::Tally => Data::get(gpu)?.record_tally(pass, io),
            Rec::CheckFinite { vec4s } => Data::get(gpu)?.record_check_finite(pass, io, vec4s),
            Rec::Matmul {
                trans,
                mnk: [m, n, k],
                tile,
            } => {
                let tile = tile.ok_or_else(|| {
                    Error::internal("record", "matmul tile not chosen before recording")
                })?;
                Matmul::get(gpu)?.record_tile(gpu, pass, io, trans, (m, n, k), tile)?;
            }
            Rec::Pointwise { which, len } => Elementwise::get(gpu)?.record(pass, which, io, len),
            Rec::Dropout {
                backward: false,
                len,
            } => Dropout::get(gpu)?.record_forward(pass, io, len),
            Rec::Dropout {
                backward: true,
                len,
            } => Dropout::get(gpu)?.record_backward(pass, io, len),
            Rec::DropoutMc { len } => DropoutMc::get(gpu)?.record(pass, io, len),
            Rec::Softmax { rows } => SoftmaxXent::get(gpu)?.record_softmax(pass, io, rows),
            Rec::SpatialDropout { backward, len } => {
                Dropout::get(gpu)?.record_spatial(pass, io, len, backward)
            }
            Rec::BiasGrad { cols } => Reduce::get(gpu)?.record_bias_grad(pass, io, cols),
            Rec::SoftmaxLoss { rows } => SoftmaxXent::get(gpu)?.record_loss(pass, io, rows),
            Rec::PoolForward(p) => Pool::get(gpu)?.record_forward(pass, io, &p),
            Rec::PoolBackward(p) => Pool::get(gpu)?.record_backward(pass, io, &p),
            Rec::Sgd { len } => Optim::get(gpu)?.record_sgd_update(pass, io, len),
            Rec::Adam { len } => Optim::get(gpu)?.record_adam_update(pass, io, len),
            Rec::Conv(Conv2dPass::Forward, d) => Conv2d::get(gpu)?.record_forward(pass, io, &d),
            Rec::Conv(Conv2dPass::BackwardInput, d) => {
                Conv2d::get(gpu)?.record_backward_input(pass, io, &d)
            }
            Rec::Bn(which, p) => {
                let k = BatchNorm::get(gpu)?;
                match which {
                    BnPass::PartialMoments => k.record_partial_moments(pass, io, &p),
                    BnPass::ReduceMoments => k.record_reduce_moments(pass, io, &p),
                    BnPass::Forward => k.record_forward(pass, io, &p),
                    BnPass::Inference => k.record_inference(pass, io, &p),
                    BnPass::UpdateMoving => k.record_update_moving(pass, io, &p),
                    BnPass::PartialGrads => k.record_partial_grads(pass, io, &p),
                    BnPass::ReduceGrads => k.record_reduce_grads(pass, io, &p),
                    BnPass::Backward => k.record_backward(pass, io, &p),
                }
            }
            Rec::Conv(Conv2dPass::BackwardWeight, d) => {
                Conv2d::get(gpu)?.record_backward_weight(pass, io, &d)
            }
            Rec::ConvEpilogue(d) => Conv2d::get(gpu)?.record_forward_epilogue(gpu, pass, io, &d)?,
            Rec::ConvWeightReduce(d) => {
                Conv2d::get(gpu)?.record_backward_weight_reduce(pass, io, &d)
            }
        }
        Ok(())
    }
}
