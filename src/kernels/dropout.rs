//! Entry points of shaders/dropout.wgsl and shaders/philox_words.wgsl.

use crate::kernels::{Bind, Family, dispatch_1d, get, run, uniform, words, zero_step};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

/// The WGSL source of the dropout kernels (Philox snippet included).
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/dropout.wgsl")
);
/// The WGSL source of the raw-word test kernel (Philox snippet included).
pub(crate) const WORDS_SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/philox_words.wgsl")
);

/// Mirrors `DropoutParams` in shaders/dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DropoutParams {
    pub len: u32,
    pub threshold: u32,
    pub mode: u32,
    pub scale: f32,
    pub seed: [u32; 2],
    pub offset: [u32; 2],
}

/// Mirrors `WordsParams` in shaders/philox_words.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct WordsParams {
    pub count: u32,
    pub _pad: [u32; 3],
}

/// A validated dropout: rate, seed and stream offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutSpec {
    /// The rate p: the probability that an element is dropped, in [0, 1].
    pub rate: f32,
    /// The generator's key.
    pub seed: u64,
    /// The stream: calls with different offsets draw independent masks.
    pub offset: u64,
}

/// The mode word for rate `p` (see `DROP_*` in shaders/philox.wgsl).
pub(crate) fn mode(p: f32) -> u32 {
    if p <= 0.0 {
        0
    } else if p >= 1.0 {
        2
    } else {
        1
    }
}

/// `Err` unless `p` is a number in [0, 1].
pub(crate) fn check_rate(op: &'static str, p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::arg(op, format!("rate {p} is outside [0, 1]")));
    }
    Ok(())
}

impl DropoutParams {
    /// Params for `len` elements; the rate must be checked already.
    pub fn new(len: u32, spec: DropoutSpec) -> DropoutParams {
        DropoutParams {
            len,
            threshold: crate::philox::threshold(spec.rate),
            mode: mode(spec.rate),
            scale: crate::philox::scale(spec.rate),
            seed: words(spec.seed),
            offset: words(spec.offset),
        }
    }
}

/// The pipelines of shaders/dropout.wgsl.
pub(crate) struct Dropout {
    pub family: Family,
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    words_family: Family,
    words: wgpu::ComputePipeline,
}

impl Dropout {
    pub fn new(gpu: &Gpu) -> Result<Dropout> {
        let family = Family::new(
            gpu,
            "dropout",
            SOURCE,
            &[Bind::Uniform, Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        let forward = family.pipeline(gpu, "dropout_forward", &[])?;
        let backward = family.pipeline(gpu, "dropout_backward", &[])?;
        let words_family = Family::new(
            gpu,
            "philox_words",
            WORDS_SOURCE,
            &[Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        let words = words_family.pipeline(gpu, "philox_words", &[])?;
        Ok(Dropout {
            family,
            forward,
            backward,
            words_family,
            words,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Dropout> {
        get(gpu, &gpu.kernels().dropout, Dropout::new)
    }

    /// Records `y = x * keep / (1 - p)`; `io` binds (params, step, x, y).
    pub fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>, io: &wgpu::BindGroup, len: u32) {
        dispatch_1d(pass, &self.forward, io, len.div_ceil(16));
    }

    /// Records `dx = dy * keep / (1 - p)`; `io` binds (params, step, dy, dx).
    pub fn record_backward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        len: u32,
    ) {
        dispatch_1d(pass, &self.backward, io, len.div_ceil(16));
    }
}

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
