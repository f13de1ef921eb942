//! The eager elementwise ops (shaders/elementwise.wgsl).

use crate::kernels::elementwise::{Elementwise, ElementwiseParams, Pointwise};
use crate::ops::uniform;
use crate::ops::{check_rate, same_shape};
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

fn eager(
    op: &'static str,
    which: Pointwise,
    a: &Tensor,
    b: &Tensor,
    bias: &Tensor,
    cols: u32,
    scale: f32,
) -> Result<Tensor> {
    for t in [a, b, bias] {
        t.expect(DType::F32, op)?;
    }
    let gpu = a.gpu();
    let k = Elementwise::get(gpu)?;
    let len = a.len() as u32;
    let out = Tensor::empty(gpu, op, a.shape(), DType::F32)?;
    let params = uniform(
        gpu,
        op,
        &ElementwiseParams {
            len,
            cols,
            scale,
            _pad: 0,
        },
    );
    let io = k.family.bind_eager(
        gpu,
        &[&params, a.buffer(), b.buffer(), bias.buffer(), out.buffer()],
    );
    gpu.submit_pass(op, |pass| k.record(pass, which, &io, len))?;
    Ok(out)
}

/// `max(x, 0)`, any shape.
///
/// # Errors
/// When `x` is not f32.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    eager("relu", Pointwise::ReluForward, x, x, x, 1, 1.0)
}

/// The gradient of [`relu`]: `dy` where `x > 0`, else 0. `x` is the ReLU's input.
///
/// # Errors
/// When the shapes differ or a tensor is not f32.
pub fn relu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    same_shape("relu_backward", x, "x", dy, "dy")?;
    eager("relu_backward", Pointwise::ReluBackward, x, dy, x, 1, 1.0)
}

/// The gradient of `y = dropout(relu(z), p)` with respect to `z`, from the output `y` alone:
/// `dy / (1 - p)` where `y > 0`, else 0. No mask and no pre-activation are needed: an element
/// is positive exactly when it was kept and the ReLU was active.
///
/// # Errors
/// When the shapes differ, a tensor is not f32, or `p` is outside [0, 1].
pub fn relu_dropout_backward(y: &Tensor, dy: &Tensor, p: f32) -> Result<Tensor> {
    let op = "relu_dropout_backward";
    check_rate(op, p)?;
    same_shape(op, y, "y", dy, "dy")?;
    eager(
        op,
        Pointwise::ReluDropoutBackward,
        y,
        dy,
        y,
        1,
        crate::philox::DropoutLowering::new(p).scale,
    )
}

/// `x + b`, `b` broadcast over the last dimension of `x` (dense `[rows, units]` or NHWC
/// `[n, h, w, c]` with `b` of shape `[c]`).
///
/// # Errors
/// When `b` is not one-dimensional with the length of `x`'s last dimension.
pub fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "bias_add";
    x.same_gpu(b, op)?;
    let cols = *x.shape().last().unwrap_or(&0);
    if b.shape() != [cols] {
        return Err(Error::shape(
            op,
            format!(
                "bias has shape {:?}, expected [{cols}] (x {:?})",
                b.shape(),
                x.shape()
            ),
        ));
    }
    eager(op, Pointwise::BiasAdd, x, x, b, cols as u32, 1.0)
}
