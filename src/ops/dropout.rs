//! The eager dropout ops and the raw Philox words (shaders/dropout.wgsl, shaders/philox_words.wgsl).

use crate::kernels::dropout::{Dropout, DropoutParams, WordsParams};
use crate::kernels::{dispatch_1d, uniform, zero_step};
use crate::ops::{DropoutSpec, check_rate, run};
use crate::tensor::DType;
use crate::{Gpu, Result, Tensor};

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
        .bind(gpu, &[&params, zero_step(gpu), x.buffer(), y.buffer()]);
    run(gpu, op, |pass| {
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

/// Raw Philox-4x32-10 words computed on the GPU, one per (counter, key) pair; the tests hold
/// them to [`crate::philox::philox4x32_10`].
///
/// # Errors
/// When `items` is empty or over the device's limits.
#[doc(hidden)]
pub fn philox_words(gpu: &Gpu, items: &[([u32; 4], [u32; 2])]) -> Result<Vec<[u32; 4]>> {
    let op = "philox_words";
    let k = Dropout::get(gpu)?;
    let mut flat = Vec::with_capacity(items.len() * 8);
    for (c, key) in items {
        flat.extend_from_slice(c);
        flat.extend_from_slice(&[key[0], key[1], 0, 0]);
    }
    let input = Tensor::from_u32(gpu, &flat, &[flat.len()])?;
    let output = Tensor::empty(gpu, op, &[items.len() * 4], DType::U32)?;
    let params = uniform(
        gpu,
        op,
        &WordsParams {
            count: items.len() as u32,
            _pad: [0; 3],
        },
    );
    let io = k
        .words_family
        .bind(gpu, &[&params, input.buffer(), output.buffer()]);
    run(gpu, op, |pass| {
        dispatch_1d(pass, &k.words, &io, items.len() as u32)
    })?;
    let out = output.to_vec_u32()?;
    Ok(out.chunks(4).map(|w| [w[0], w[1], w[2], w[3]]).collect())
}
