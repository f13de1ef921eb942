//! The eager max pooling ops (shaders/pool.wgsl).

use crate::kernels::pool::{Pool, PoolParams};
use crate::ops::uniform;
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// 2-D max pooling of `x` (`[n, h, w, c]`, NHWC) with a `window` of `[kh, kw]` pixels moved by
/// `stride` `[sh, sw]`, valid padding (Keras `MaxPooling2D(pool_size=window, strides=stride)`;
/// Keras' default is window `[2, 2]` with the stride equal to the window). Returns
/// `[n, (h - kh) / sh + 1, (w - kw) / sw + 1, c]`.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let x = wgnn::Tensor::from_slice(&gpu, &[1.0, 5.0, 3.0, 2.0], &[1, 2, 2, 1])?;
/// let y = wgnn::ops::max_pool2d(&x, [2, 2], [2, 2])?;
/// assert_eq!(y.shape(), [1, 1, 1, 1]);
/// assert_eq!(y.to_vec()?, vec![5.0]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `x` is not a 4-D f32 tensor, a window or stride dimension is 0, or the window is
/// larger than the input's height or width.
pub fn max_pool2d(x: &Tensor, window: [usize; 2], stride: [usize; 2]) -> Result<Tensor> {
    let op = "max_pool2d";
    let p = PoolParams::new(op, x.shape(), window, stride)?;
    x.expect(DType::F32, op)?;
    let gpu = x.gpu();
    let k = Pool::get(gpu)?;
    let shape = [p.n as usize, p.oh as usize, p.ow as usize, p.c as usize];
    let y = Tensor::empty(gpu, op, &shape, DType::F32)?;
    let params = uniform(gpu, op, &p);
    let io = k
        .family
        .bind_eager(gpu, &[&params, x.buffer(), x.buffer(), y.buffer()]);
    gpu.submit_pass(op, |pass| k.record_forward(pass, &io, &p))?;
    Ok(y)
}

/// The gradient of [`max_pool2d`] with respect to `x`: each element of `dy`
/// (`[n, oh, ow, c]`, the forward's output shape) is added to the position of its window's
/// maximum in `x`; where a window holds its maximum more than once, the first in row-major
/// window order (top row first, left to right) receives it. Overlapping windows
/// (`stride < window`) add up. Returns `dx` shaped like `x`; pixels in no window get 0.
///
/// # Errors
/// As [`max_pool2d`], and when `dy` is not f32 or its shape is not the forward's output shape.
pub fn max_pool2d_backward(
    x: &Tensor,
    dy: &Tensor,
    window: [usize; 2],
    stride: [usize; 2],
) -> Result<Tensor> {
    let op = "max_pool2d_backward";
    let p = PoolParams::new(op, x.shape(), window, stride)?;
    x.expect(DType::F32, op)?;
    dy.expect(DType::F32, op)?;
    x.same_gpu(dy, op)?;
    let want = [p.n as usize, p.oh as usize, p.ow as usize, p.c as usize];
    if dy.shape() != want {
        return Err(Error::shape(
            op,
            format!(
                "dy has shape {:?}, expected {want:?} (x {:?}, window {window:?}, stride {stride:?})",
                dy.shape(),
                x.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let k = Pool::get(gpu)?;
    let dx = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let params = uniform(gpu, op, &p);
    let io = k
        .family
        .bind_eager(gpu, &[&params, x.buffer(), dy.buffer(), dx.buffer()]);
    gpu.submit_pass(op, |pass| k.record_backward(pass, &io, &p))?;
    Ok(dx)
}
