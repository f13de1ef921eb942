//! The eager convolutions: [`conv2d`] and its two gradients (shaders/conv2d.wgsl).

use crate::kernels::conv2d::{Conv2d, Conv2dDims, Conv2dPass, ConvKernel};
use crate::ops::uniform;
use crate::spec::Padding;
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// Checks that `t` is f32, lives with `first`, and (when `shape` is given) has that shape.
fn check(
    op: &'static str,
    first: &Tensor,
    t: &Tensor,
    what: &str,
    shape: Option<([usize; 4], &Conv2dDims, Padding)>,
) -> Result<()> {
    t.expect(DType::F32, op)?;
    first.same_gpu(t, op)?;
    if let Some((want, d, padding)) = shape
        && t.shape() != want
    {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}, expected {want:?} (the output of input {:?}, kernel {:?}, stride {}, {padding:?} padding)",
                t.shape(),
                d.in_shape(),
                d.kernel_shape(),
                d.stride
            ),
        ));
    }
    Ok(())
}

/// Allocates the output, binds (params, a, b, out) and records `pass` with the kernel
/// `kernel` resolves to (compiling the staged one first when it is asked for).
pub(crate) fn eager(
    op: &'static str,
    pass: Conv2dPass,
    d: &Conv2dDims,
    a: &Tensor,
    b: &Tensor,
    out_shape: [usize; 4],
    kernel: ConvKernel,
) -> Result<Tensor> {
    let gpu = a.gpu();
    let k = Conv2d::get(gpu)?;
    if kernel == ConvKernel::Staged {
        k.staged(gpu)?;
    }
    let out = Tensor::empty(gpu, op, &out_shape, DType::F32)?;
    let params = uniform(gpu, op, &d.params());
    if pass == Conv2dPass::BackwardWeight && d.weight_splits() > 1 {
        let scratch = Tensor::empty(gpu, op, &[d.weight_scratch_len()], DType::F32)?;
        let first = k
            .family
            .bind_eager(gpu, &[&params, a.buffer(), b.buffer(), scratch.buffer()]);
        let second = k.family.bind_eager(
            gpu,
            &[&params, scratch.buffer(), scratch.buffer(), out.buffer()],
        );
        gpu.submit_pass(op, |p| {
            k.record_pass(p, &first, d, pass, kernel);
            k.record_backward_weight_reduce(p, &second, d);
        })?;
        return Ok(out);
    }
    let io = k
        .family
        .bind_eager(gpu, &[&params, a.buffer(), b.buffer(), out.buffer()]);
    gpu.submit_pass(op, |p| k.record_pass(p, &io, d, pass, kernel))?;
    Ok(out)
}

/// 2-D convolution (cross-correlation, as Keras' `Conv2D`, without bias):
/// `y[b, oy, ox, co] = sum over ky, kx, ci of x[b, oy*stride + ky - pad_top, ox*stride + kx - pad_left, ci] * w[ky, kx, ci, co]`,
/// positions outside the image reading as zero.
///
/// `x` is NHWC `[n, h, w, cin]`, `w` HWIO `[kh, kw, cin, cout]`; the result is NHWC
/// `[n, oh, ow, cout]` with `oh`, `ow` and the padding given by `padding` (see [`Padding`]);
/// `stride` applies to both axes. Add a bias with [`crate::ops::bias_add`].
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// use wgnn::ops::{Padding, conv2d};
/// let gpu = wgnn::Gpu::software()?;
/// // A 3x3 single-channel image and a 2x2 kernel summing its window.
/// let x = wgnn::Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1, 3, 3, 1])?;
/// let w = wgnn::Tensor::from_slice(&gpu, &[1.0; 4], &[2, 2, 1, 1])?;
/// let y = conv2d(&x, &w, 1, Padding::Valid)?;
/// assert_eq!(y.shape(), [1, 2, 2, 1]);
/// assert_eq!(y.to_vec()?, vec![12.0, 16.0, 24.0, 28.0]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When a tensor is not a 4-D f32 tensor, the channel counts differ, `stride` is 0, the
/// kernel is larger than the image with [`Padding::Valid`], the tensors live on different
/// `Gpu`s, or the work is over the device's dispatch limits.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
    let op = "conv2d";
    check(op, x, x, "x", None)?;
    check(op, x, w, "w", None)?;
    let d = Conv2dDims::new(op, x.shape(), w.shape(), stride, padding)?;
    eager(
        op,
        Conv2dPass::Forward,
        &d,
        x,
        w,
        d.out_shape(),
        ConvKernel::Auto,
    )
}

/// The gradient of [`conv2d`] with respect to its input: `dx[b, iy, ix, ci]` is the sum of
/// `dy[b, oy, ox, co] * w[ky, kx, ci, co]` over every output position and kernel tap that read
/// `x[b, iy, ix, ci]`.
///
/// `dy` is NHWC `[n, oh, ow, cout]`, the output shape of a convolution of `input_shape`
/// (`[n, h, w, cin]`, needed because with `stride > 1` several input sizes give one output
/// size) with the HWIO kernel `w` under `stride` and `padding`; the result has `input_shape`.
///
/// # Errors
/// As [`conv2d`] for `input_shape` and `w`, and when `dy` does not have the output shape or
/// is not f32 on the same `Gpu`.
pub fn conv2d_backward_input(
    dy: &Tensor,
    w: &Tensor,
    input_shape: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    check(op, dy, dy, "dy", None)?;
    check(op, dy, w, "w", None)?;
    let d = Conv2dDims::new(op, input_shape, w.shape(), stride, padding)?;
    check(op, dy, dy, "dy", Some((d.out_shape(), &d, padding)))?;
    eager(
        op,
        Conv2dPass::BackwardInput,
        &d,
        dy,
        w,
        d.in_shape(),
        ConvKernel::Auto,
    )
}

/// The gradient of [`conv2d`] with respect to its kernel: `dw[ky, kx, ci, co]` is the sum
/// over `b, oy, ox` of `x[b, oy*stride + ky - pad_top, ox*stride + kx - pad_left, ci] * dy[b, oy, ox, co]`.
///
/// `x` is the NHWC input `[n, h, w, cin]`, `dy` NHWC `[n, oh, ow, cout]` (the output shape
/// for `x`, `kernel_shape`, `stride` and `padding`); the result is HWIO `kernel_shape`
/// `[kh, kw, cin, cout]`. The bias gradient is [`crate::ops::bias_grad`] of `dy`.
///
/// # Errors
/// As [`conv2d`] for `x` and `kernel_shape`, and when `dy` does not have the output shape or
/// is not f32 on the same `Gpu`.
pub fn conv2d_backward_weight(
    x: &Tensor,
    dy: &Tensor,
    kernel_shape: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let op = "conv2d_backward_weight";
    check(op, x, x, "x", None)?;
    check(op, x, dy, "dy", None)?;
    let d = Conv2dDims::new(op, x.shape(), kernel_shape, stride, padding)?;
    check(op, x, dy, "dy", Some((d.out_shape(), &d, padding)))?;
    eager(
        op,
        Conv2dPass::BackwardWeight,
        &d,
        x,
        dy,
        d.kernel_shape(),
        ConvKernel::Auto,
    )
}
