//! Every kernel as a function on tensors: records one op, submits it, returns the result
//!
//! Layer: may use `kernels` and the device; never `graph`, `nn` or `data`.
//! without waiting (read it with [`crate::Tensor::to_vec`]).
//!
//! Shapes: images NHWC, conv kernels HWIO, matrices row-major `[rows, cols]`.
//!
//! Each function validates its arguments (an `Err` leaves nothing recorded), then records
//! through the same `record_*` methods of `crate::kernels` a training step uses and submits
//! them with `Gpu::submit_pass`, one compute pass per op.
//!
//! A loop of calls allocates nothing once its sizes have been seen: an output takes the
//! buffer of a dropped tensor of the same size, and the parameters' uniform buffer and the
//! bind group are reused too ([`crate::ExecStats::pooled_bytes`], [`crate::Gpu::release_pool`]).

mod batchnorm;
mod conv2d;
mod dropout;
mod elementwise;
pub(crate) mod matmul;
mod optim;
mod pool;
pub(crate) mod reduce;
mod softmax_xent;

pub use batchnorm::{
    batch_norm_backward, batch_norm_inference, batch_norm_train, batch_norm_update_moving,
};
#[cfg(feature = "testing")]
pub(crate) use conv2d::eager as conv2d_eager;
pub use conv2d::{conv2d, conv2d_backward_input, conv2d_backward_weight};
pub use dropout::{dropout, dropout_backward, spatial_dropout, spatial_dropout_backward};
pub use elementwise::{bias_add, relu, relu_backward, relu_dropout_backward};
pub use matmul::{dense, matmul};
pub use optim::{adam_update, sgd_update};
pub use pool::{max_pool2d, max_pool2d_backward};
pub use reduce::bias_grad;
pub use softmax_xent::{accuracy, softmax, softmax_cross_entropy, softmax_cross_entropy_async};

pub use crate::philox::DropoutSpec;
pub use crate::spec::{Adam, Padding, Sgd};

use crate::gpu::PooledUniform;
use crate::kernels::Family;
use crate::{Error, Gpu, Result, Tensor};

/// One eager call's parameters in a uniform buffer from the `Gpu`'s pool, given back when the
/// returned guard drops: keep it until the call has been submitted.
pub(crate) fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> PooledUniform {
    gpu.pooled_uniform(label, bytemuck::bytes_of(value))
}

impl Family {
    /// [`Family::bind`] for an eager call, from the `Gpu`'s cache of bind groups (keyed by
    /// this layout and the buffers): the buffers must be tensors' buffers, pooled uniforms
    /// ([`uniform`]) or wgnn's permanent ones, so that the entry goes when one is destroyed.
    pub(crate) fn bind_eager(&self, gpu: &Gpu, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        gpu.cached_bind_group(&self.layout, buffers, || self.bind(gpu, buffers))
    }
}

/// Checks that `status` is a training status word (u32 [4]) on `like`'s `Gpu`.
pub(crate) fn expect_status(op: &'static str, status: &Tensor, like: &Tensor) -> Result<()> {
    status.expect(crate::DType::U32, op)?;
    like.same_gpu(status, op)?;
    if status.len() != 4 {
        return Err(Error::shape(
            op,
            format!("status has shape {:?}, expected [4]", status.shape()),
        ));
    }
    Ok(())
}

/// `Err` unless `p` is a number in [0, 1].
pub(crate) fn check_rate(op: &'static str, p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::arg(op, format!("rate {p} is outside [0, 1]")));
    }
    Ok(())
}

/// `Err` unless `a` and `b` (named `an` and `bn` in the message) share a `Gpu` and a shape.
pub(crate) fn same_shape(
    op: &'static str,
    a: &Tensor,
    an: &str,
    b: &Tensor,
    bn: &str,
) -> Result<()> {
    a.same_gpu(b, op)?;
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!(
                "{an} and {bn} differ in shape ({an} {:?}, {bn} {:?})",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok(())
}
