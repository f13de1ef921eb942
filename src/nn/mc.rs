//! Dropout beyond training: Monte-Carlo dropout ([`Sequential::predict_mc`]) and the masks
//! training drew ([`Sequential::training_mask`]), both exact functions of the seed, the
//! stream and the element index (see [`crate::philox`]).

use crate::graph::Op;
#[cfg(not(target_arch = "wasm32"))]
use crate::nn::layers::Layer;
use crate::nn::model::Sequential;
#[cfg(not(target_arch = "wasm32"))]
use crate::nn::model::poisoned;
use crate::philox::{MAX_TRAINING_STEPS, keep, training_offset};
use crate::{Error, Result};

/// What [`Sequential::predict_mc`] returns: the softmax probabilities of every Monte-Carlo
/// sample, their mean and their standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct McPrediction {
    /// Monte-Carlo samples (passes) taken.
    pub samples: usize,
    /// Inputs predicted.
    pub inputs: usize,
    /// Classes per input.
    pub classes: usize,
    /// `[inputs, classes]`, row-major: the mean over the samples of the softmax
    /// probabilities (summed in f64, divided by `samples`, rounded to f32).
    pub mean: Vec<f32>,
    /// `[inputs, classes]`, row-major: the standard deviation over the samples of the softmax
    /// probabilities, dividing by `samples` (not `samples - 1`), computed in f64 about the
    /// f64 mean and rounded to f32.
    pub std: Vec<f32>,
    /// `[samples, inputs, classes]`, row-major: every sample's softmax probabilities, as
    /// the GPU computed them.
    pub probabilities: Vec<f32>,
}

impl McPrediction {
    /// Sample `s`'s probabilities, `[inputs, classes]` row-major (`None` past the last).
    pub fn sample(&self, s: usize) -> Option<&[f32]> {
        let len = self.inputs * self.classes;
        self.probabilities.get(s * len..(s + 1) * len)
    }

    /// The class of highest mean probability of each input (the first of equal ones).
    pub fn predicted_classes(&self) -> Vec<usize> {
        self.mean
            .chunks(self.classes.max(1))
            .map(|row| {
                let mut best = 0;
                for (c, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = c;
                    }
                }
                best
            })
            .collect()
    }
}

/// Elements one activation of the Monte-Carlo plan may hold (128 MiB of f32): the batch per
/// submission is cut so that `samples * batch * widest layer` stays within it.
#[cfg(not(target_arch = "wasm32"))]
const MC_ELEMENTS: usize = 1 << 25;

impl Sequential {
    /// Monte-Carlo dropout (Gal and Ghahramani): `samples` forward passes of the inputs in
    /// `x` (`n * input size` values) with dropout on and batch norm in inference mode
    /// (moving statistics), and the mean and standard deviation of their softmax
    /// probabilities. Native only.
    ///
    /// The masks, exactly: sample `s` (from 0) of the Dropout layer at index `l` of the
    /// model draws from `seed` (this call's, not the model's) and stream
    /// `offset = 2^63 + s * 2^32 + l` ([`crate::philox::mc_offset`]), and element `i` of that
    /// sample's `[n, units]` output of the layer (flattened row-major over all `n` inputs,
    /// as in training) is kept iff [`crate::philox::keep`]`(seed, offset, i, p)`, kept values
    /// scaled by `1 / (1 - p)`. So a sample equals, bit for bit, the pass made by hand with
    /// [`crate::ops::dense`], [`crate::ops::dropout`] with that offset and
    /// [`crate::ops::softmax`]. Training streams are `l + step * 2^32` with `step < 2^31`
    /// (below `2^63`), so no Monte-Carlo mask is ever a training mask.
    ///
    /// All samples of a batch run in one submission: the batch (up to 256 inputs, fewer when
    /// `samples` is large) is uploaded once, the layers before the first dropout run once
    /// (they are the same for every sample), and their output is copied `samples` times on
    /// the GPU where that dropout is drawn; one readback brings every sample's
    /// probabilities. The plan is kept for the next call with the same batch size,
    /// `samples` and `seed`.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
    /// let gpu = wgnn::Gpu::software()?;
    /// let mut model = Sequential::new(&[4])
    ///     .with(Dense::new(8)?.activation(Activation::Relu))
    ///     .with(Dropout::new(0.5)?)
    ///     .with(Dense::new(3)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let x = [0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25]; // two inputs
    /// let mc = model.predict_mc(&x, 16, 7)?;
    /// assert_eq!((mc.mean.len(), mc.std.len(), mc.probabilities.len()), (6, 6, 16 * 6));
    /// assert_eq!(mc, model.predict_mc(&x, 16, 7)?); // replayable: same bits
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When the model is not compiled or has a `SpatialDropout2d` layer (its Monte-Carlo
    /// masks are not defined yet); `samples` is 0 or above `2^31`; `x` is empty or not a
    /// whole number of inputs; a layer's `[n, units]` activation, or the `samples` copies of
    /// one input's, has `2^32` elements or more; on device errors (a plan larger than the
    /// device's buffers).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict_mc(&self, x: &[f32], samples: usize, seed: u64) -> Result<McPrediction> {
        let op = "predict_mc";
        let c = self.compiled(op)?;
        c.gpu.check_alive(op)?;
        if let Some(l) = (self.layers.iter()).position(|l| matches!(l, Layer::SpatialDropout2d(_)))
        {
            return Err(Error::arg(
                op,
                format!(
                    "layer {l} is a SpatialDropout2d, whose Monte-Carlo masks are not \
                     supported yet (Dropout layers are); predict with `predict`"
                ),
            ));
        }
        if samples == 0 || samples as u64 > 1 << 31 {
            return Err(Error::arg(
                op,
                format!("samples must be in 1..=2^31, got {samples}"),
            ));
        }
        let in_len: usize = c.graph.input.iter().product();
        if x.is_empty() || !x.len().is_multiple_of(in_len) {
            return Err(Error::shape(
                op,
                format!(
                    "{} values are not a whole number of inputs of {:?} ({in_len} values)",
                    x.len(),
                    c.graph.input
                ),
            ));
        }
        let n = x.len() / in_len;
        let widest = c
            .graph
            .nodes
            .iter()
            .map(|node| node.out_len())
            .chain([in_len])
            .max()
            .unwrap_or(in_len)
            .max(1);
        if n.checked_mul(widest).is_none_or(|e| e > u32::MAX as usize) {
            return Err(Error::shape(
                op,
                format!(
                    "{n} inputs of a model whose widest layer has {widest} values make an \
                     activation of 2^32 elements or more (mask indices are 32-bit); predict \
                     fewer inputs per call"
                ),
            ));
        }
        if samples.saturating_mul(widest) > u32::MAX as usize {
            return Err(Error::shape(
                op,
                format!(
                    "{samples} samples of a model whose widest layer has {widest} values make \
                     an activation of 2^32 elements or more for a single input"
                ),
            ));
        }
        let batch = (MC_ELEMENTS / samples.saturating_mul(widest)).clamp(1, n.min(256));
        let predictor = self.cached_predictor(op, batch, Some((samples, seed)))?;
        let predictor = predictor.lock().map_err(|_| poisoned())?;
        let probabilities = predictor.sample(x)?;
        drop(predictor);
        let classes = c.graph.output().iter().product::<usize>();
        let len = n * classes;
        let mut mean = Vec::with_capacity(len);
        let mut std = Vec::with_capacity(len);
        for j in 0..len {
            let at = |s: usize| f64::from(probabilities[s * len + j]);
            let m = (0..samples).map(at).sum::<f64>() / samples as f64;
            let var = (0..samples).map(|s| (at(s) - m).powi(2)).sum::<f64>() / samples as f64;
            mean.push(m as f32);
            std.push(var.sqrt() as f32);
        }
        Ok(McPrediction {
            samples,
            inputs: n,
            classes,
            mean,
            std,
            probabilities,
        })
    }

    /// Exactly which units the Dropout layer at index `layer` kept at training step `step`
    /// (counted over the model's life, as [`Sequential::steps_taken`]) for a batch of
    /// `batch` samples: `[batch, units]` row-major, `true` where kept. Computed on the host
    /// with [`crate::philox::keep`]`(seed, layer + step * 2^32, i, p)` for the model's
    /// compile seed; no GPU work. A last, smaller batch of an epoch uses the first rows of
    /// the mask of a full one.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
    /// let gpu = wgnn::Gpu::software()?;
    /// let mut model = Sequential::new(&[4])
    ///     .with(Dense::new(8)?.activation(Activation::Relu))
    ///     .with(Dropout::new(0.5)?)
    ///     .with(Dense::new(3)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let mask = model.training_mask(1, 0, 2)?; // two samples of 8 units at step 0
    /// assert_eq!(mask.len(), 16);
    /// assert_eq!(mask[9], wgnn::philox::keep(1, 1, 9, 0.5));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When the model is not compiled; `layer` is out of range or not a Dropout; `step` is
    /// `2^31` or more (training never gets there); `batch` is 0.
    pub fn training_mask(&self, layer: usize, step: u64, batch: usize) -> Result<Vec<bool>> {
        let op = "training_mask";
        let c = self.compiled(op)?;
        let n = self.layers.len();
        let kind = self
            .layers
            .get(layer)
            .ok_or_else(|| {
                Error::arg(
                    op,
                    format!("layer index {layer} is out of range for {n} layers"),
                )
            })?
            .kind();
        let (d, units) = c
            .graph
            .nodes
            .iter()
            .find_map(|node| match node.op {
                Op::Dropout(d) if node.layer.0 == layer => Some((d, node.out_len())),
                _ => None,
            })
            .ok_or_else(|| Error::arg(op, format!("layer {layer} is a {kind}, not a Dropout")))?;
        if step >= MAX_TRAINING_STEPS {
            return Err(Error::arg(
                op,
                format!("step {step} is past the last training step, 2^31 - 1"),
            ));
        }
        if batch == 0 {
            return Err(Error::arg(op, "batch must be at least 1, got 0"));
        }
        let offset = d.stream.wrapping_add(training_offset(0, step));
        Ok((0..(batch * units) as u64)
            .map(|i| keep(c.seed, offset, i, d.rate))
            .collect())
    }

    /// [`Sequential::predict`] with `batch` samples per submission, however many (predict
    /// takes at most 256): the bench's "one forward pass of a large batch".
    #[cfg(not(target_arch = "wasm32"))]
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn predict_batched(&self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let op = "predict_batched";
        let c = self.compiled(op)?;
        let in_len: usize = c.graph.input.iter().product();
        if batch == 0 || x.is_empty() || !x.len().is_multiple_of(in_len) {
            return Err(Error::shape(
                op,
                format!(
                    "{} values in batches of {batch} inputs of {in_len}",
                    x.len()
                ),
            ));
        }
        let predictor = self.cached_predictor(op, batch, None)?;
        let predictor = predictor.lock().map_err(|_| poisoned())?;
        predictor.predict(x)
    }

    /// Test hook: sets the model's training step counter (to test the step limit without
    /// 2^31 steps).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn set_steps_taken(&mut self, step: u64) -> Result<()> {
        self.compiled
            .as_mut()
            .ok_or_else(|| Error::arg("set_steps_taken", "the model is not compiled"))?
            .step = step;
        Ok(())
    }
}
