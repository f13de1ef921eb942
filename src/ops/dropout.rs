//! The eager dropout ops and the raw Philox words (shaders/dropout.wgsl, shaders/philox_words.wgsl).

use crate::kernels::dropout::{Dropout, DropoutParams};
use crate::kernels::zero_step;
use crate::ops::uniform;
use crate::ops::{DropoutSpec, check_rate};
use crate::tensor::DType;
use crate::{Result, Tensor};

fn eager(
    op: &'static str,
    x: &Tensor,
    p: f32,
    seed: u64,
    offset: u64,
    backward: bool,
) -> Result<Tensor> {
    check_rate(op, p)?;
    x.expect(DType::F32, op)?;
    let gpu = x.gpu();
    let k = Dropout::get(gpu)?;
    let len = x.len() as u32;
    let y = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let params = uniform(
        gpu,
        op,
        &DropoutParams::new(
            len,
            DropoutSpec {
                rate: p,
                seed,
                offset,
            },
        ),
    );
    let io = k
        .family
        .bind_eager(gpu, &[&params, zero_step(gpu), x.buffer(), y.buffer()]);
    gpu.submit_pass(op, |pass| {
        if backward {
            k.record_backward(pass, &io, len)
        } else {
            k.record_forward(pass, &io, len)
        }
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
    eager("dropout", x, p, seed, offset, false)
}

/// The gradient of [`dropout`]: `dx = dy * keep / (1 - p)` with the very keep bits of the
/// forward call with the same (`p`, `seed`, `offset`), regenerated rather than stored.
///
/// # Errors
/// As [`dropout`].
pub fn dropout_backward(dy: &Tensor, p: f32, seed: u64, offset: u64) -> Result<Tensor> {
    eager("dropout_backward", dy, p, seed, offset, true)
}
