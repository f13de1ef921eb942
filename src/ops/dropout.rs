//! The eager dropout ops, SpatialDropout2D's included, and the raw Philox words
//! (shaders/dropout.wgsl, shaders/philox_words.wgsl).

use crate::kernels::dropout::{Dropout, DropoutParams};
use crate::kernels::zero_step;
use crate::ops::uniform;
use crate::ops::{DropoutSpec, check_rate};
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// Which dropout an eager call runs.
#[derive(Clone, Copy)]
enum Kind {
    /// Per element.
    Element,
    /// Per (image, channel) of an NHWC tensor.
    Spatial,
}

fn eager(
    op: &'static str,
    x: &Tensor,
    p: f32,
    seed: u64,
    offset: u64,
    backward: bool,
    kind: Kind,
) -> Result<Tensor> {
    check_rate(op, p)?;
    x.expect(DType::F32, op)?;
    let spec = DropoutSpec {
        rate: p,
        seed,
        offset,
    };
    let len = x.len() as u32;
    let params = match kind {
        Kind::Element => DropoutParams::new(len, spec),
        Kind::Spatial => {
            let &[_, h, w, c] = x.shape() else {
                return Err(Error::shape(
                    op,
                    format!(
                        "expects a 4-D [N, H, W, C] tensor, got shape {:?}",
                        x.shape()
                    ),
                ));
            };
            // Each dimension is at least 1 and the product fits the tensor's u32 length.
            DropoutParams::spatial(len, c as u32, (h * w * c) as u32, spec)
        }
    };
    let gpu = x.gpu();
    let k = Dropout::get(gpu)?;
    let y = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let params = uniform(gpu, op, &params);
    let io = k
        .family
        .bind_eager(gpu, &[&params, zero_step(gpu), x.buffer(), y.buffer()]);
    gpu.submit_pass(op, |pass| match (kind, backward) {
        (Kind::Element, false) => k.record_forward(pass, &io, len),
        (Kind::Element, true) => k.record_backward(pass, &io, len),
        (Kind::Spatial, _) => k.record_spatial(pass, &io, len, backward),
    })?;
    Ok(y)
}

/// Inverted dropout: `y = x * keep / (1 - p)`, keep bits from [`crate::philox::keep`]
/// (`seed`, `offset`, flattened element index, `p`). Any shape.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let x = wgnn::Tensor::from_slice(&gpu, &[1.0; 8], &[2, 4])?;
/// let y = wgnn::ops::dropout(&x, 0.5, 42, 0)?.to_vec()?;
/// for (i, v) in y.iter().enumerate() {
///     let want = if wgnn::philox::keep(42, 0, i as u64, 0.5) { 2.0 } else { 0.0 };
///     assert_eq!(*v, want);
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `p` is NaN or outside [0, 1], or `x` is not f32.
pub fn dropout(x: &Tensor, p: f32, seed: u64, offset: u64) -> Result<Tensor> {
    eager("dropout", x, p, seed, offset, false, Kind::Element)
}

/// The gradient of [`dropout`]: `dx = dy * keep / (1 - p)` with the very keep bits of the
/// forward call with the same (`p`, `seed`, `offset`), regenerated rather than stored.
///
/// # Errors
/// As [`dropout`].
pub fn dropout_backward(dy: &Tensor, p: f32, seed: u64, offset: u64) -> Result<Tensor> {
    eager("dropout_backward", dy, p, seed, offset, true, Kind::Element)
}

/// SpatialDropout2D (Keras `SpatialDropout2D`, PyTorch `Dropout2d`): drops whole feature maps
/// of an NHWC tensor `x` of shape `[N, H, W, C]`. Element `(n, h, w, c)` is kept iff
/// [`crate::philox::keep`]`(seed, offset, n * C + c, p)`, the same keep bit for every `(h, w)`
/// of a channel, and `y = keep ? x / (1 - p) : 0` with the threshold, scale and `p == 0` /
/// `p == 1` rules of [`dropout`] (`p == 1` gives exactly zero). The mask is the one
/// [`dropout`] would draw for an `[N, C]` tensor, broadcast over height and width.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let (n, h, w, c) = (2, 3, 3, 5);
/// let x = wgnn::Tensor::from_slice(&gpu, &vec![1.0; n * h * w * c], &[n, h, w, c])?;
/// let y = wgnn::ops::spatial_dropout(&x, 0.5, 42, 7)?.to_vec()?;
/// for (i, v) in y.iter().enumerate() {
///     let (img, ch) = (i / (h * w * c), i % c);
///     let kept = wgnn::philox::keep(42, 7, (img * c + ch) as u64, 0.5);
///     assert_eq!(*v, if kept { 2.0 } else { 0.0 });
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `x` is not 4-D or not f32, or `p` is NaN or outside [0, 1].
pub fn spatial_dropout(x: &Tensor, p: f32, seed: u64, offset: u64) -> Result<Tensor> {
    eager("spatial_dropout", x, p, seed, offset, false, Kind::Spatial)
}

/// The gradient of [`spatial_dropout`]: `dx = dy * keep / (1 - p)` for `dy` of shape
/// `[N, H, W, C]`, with the channel mask of the forward call with the same (`p`, `seed`,
/// `offset`) regenerated rather than stored.
///
/// # Errors
/// As [`spatial_dropout`].
pub fn spatial_dropout_backward(dy: &Tensor, p: f32, seed: u64, offset: u64) -> Result<Tensor> {
    eager(
        "spatial_dropout_backward",
        dy,
        p,
        seed,
        offset,
        true,
        Kind::Spatial,
    )
}
