//! A compiled model's weights: read back, saved, loaded from files or bytes, moved to
//! another device.

#[cfg(feature = "fs")]
use std::collections::HashMap;
#[cfg(feature = "fs")]
use std::path::Path;

use crate::nn::lower::{ParamInfo, lower};
use crate::nn::model::Sequential;
use crate::nn::weights::{self, NamedTensor, WeightSpec, WeightsOptions};
use crate::{Error, Gpu, Result, Tensor};

impl Sequential {
    /// The weights, read back: name, shape, values, in the model's order. Blocks until the
    /// GPU is done; in a browser use [`Sequential::weights_async`].
    ///
    /// # Errors
    /// When the model is not compiled, or on device errors.
    pub fn weights(&self) -> Result<Vec<NamedTensor>> {
        let c = self.compiled("weights")?;
        c.gpu.check_alive("weights")?;
        read_named(&c.infos, &c.values)
    }

    /// As [`Sequential::weights`], without blocking: the copies are recorded when the future
    /// is first polled (the values after the work submitted until then), then read back by
    /// futures that never wait (see [`Tensor::to_vec_async`]). With
    /// [`weights::to_safetensors`], a weights file's bytes without a file system:
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// # use wgnn::nn::*;
    /// # let gpu = wgnn::Gpu::software()?;
    /// let mut model = Sequential::new(&[4]).with(Dense::new(3)?);
    /// model.compile(&gpu, Optimizer::sgd(0.1, 0.0), 1)?;
    /// let w = pollster::block_on(model.weights_async())?; // `.await` in async code
    /// assert_eq!(w, model.weights()?);
    /// let bytes = weights::to_safetensors(&w, None)?;
    /// model.load_weights_bytes(&bytes, "download.safetensors")?; // reads them back
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::weights`].
    pub async fn weights_async(&self) -> Result<Vec<NamedTensor>> {
        let op = "weights_async";
        let c = self.compiled(op)?;
        c.gpu.check_alive(op)?;
        let pending: Vec<_> = c.values.iter().map(Tensor::to_vec_async).collect();
        let mut out = Vec::with_capacity(pending.len());
        for (p, read) in c.infos.iter().zip(pending) {
            out.push(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: read.await?,
            });
        }
        Ok(out)
    }

    /// Writes the weights to `path` as safetensors (F32, Keras-style names such as
    /// `dense_1/kernel`, Dense kernels `[in, units]`, conv kernels HWIO), atomically: a crash
    /// leaves the old file or the new one, never a torn one.
    ///
    /// # Errors
    /// I/O errors naming the path (the old file is left as it was).
    #[cfg(feature = "fs")]
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_weights_with(path.as_ref(), None)
    }

    #[cfg(feature = "fs")]
    pub(super) fn save_weights_with(
        &self,
        path: &Path,
        meta: Option<HashMap<String, String>>,
    ) -> Result<()> {
        let bytes = weights::to_safetensors(&self.weights_or_host_copy()?, meta)?;
        weights::write_atomic(path, &bytes)
    }

    /// The weights from the device, or, when the device is lost, the host copy taken at the
    /// last completed epoch.
    fn weights_or_host_copy(&self) -> Result<Vec<NamedTensor>> {
        match self.weights() {
            Err(Error::DeviceLost { op, reason }) => {
                match self.compiled.as_ref().and_then(|c| c.host_copy.clone()) {
                    Some(copy) => Ok(copy),
                    None => Err(Error::DeviceLost { op, reason }),
                }
            }
            other => other,
        }
    }

    /// Moves the model to `gpu` (after a device loss, say): the weights come from the old
    /// device, or from the host copy of the last completed epoch when it is lost; the
    /// optimizer state starts afresh, the step count (and so the dropout streams) goes on.
    ///
    /// # Errors
    /// When there are no weights to move (lost before the first epoch ended), or on errors
    /// of the new device.
    pub fn move_to(&mut self, gpu: &Gpu) -> Result<()> {
        gpu.check_alive("move_to")?;
        let weights = self.weights_or_host_copy()?;
        let c = self.compiled("move_to")?;
        let (optimizer, seed, step, fuse) = (c.optimizer, c.seed, c.step, c.fuse);
        self.compile(gpu, optimizer, seed)?;
        let c = self.compiled.as_mut().ok_or_else(|| {
            Error::arg("move_to", "the model is not compiled; call compile first")
        })?;
        for (t, w) in c.values.iter().zip(&weights) {
            c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(&w.data));
        }
        c.step = step;
        c.fuse = fuse;
        c.host_copy = Some(weights);
        Ok(())
    }

    /// Loads weights written by [`Sequential::save_weights`] for the same architecture, with
    /// the default [`WeightsOptions`] (header at most 1 MiB, non-finite values refused). All
    /// or nothing: on any error the model's weights are unchanged.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file and the tensor and its layer (missing, extra, wrong
    /// shape or dtype, non-finite value, wrong length); [`Error::Io`].
    #[cfg(feature = "fs")]
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_weights_with(path, &WeightsOptions::default())
    }

    /// As [`Sequential::load_weights`], with `options`. The file's 8-byte length and header
    /// are read and checked against the model, and its length against 8 + header + the
    /// model's parameter bytes, before any tensor data is read.
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    #[cfg(feature = "fs")]
    pub fn load_weights_with(
        &mut self,
        path: impl AsRef<Path>,
        options: &WeightsOptions,
    ) -> Result<()> {
        let specs = self.weight_specs("load_weights")?;
        let loaded = weights::read_safetensors_file(path.as_ref(), &specs, options)?;
        self.set_weights(&loaded.data)
    }

    /// As [`Sequential::load_weights`], from bytes in memory (`name` is used in messages).
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    pub fn load_weights_bytes(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        self.load_weights_bytes_with(bytes, name, &WeightsOptions::default())
    }

    /// As [`Sequential::load_weights_bytes`], with `options`.
    ///
    /// # Errors
    /// As [`Sequential::load_weights`].
    pub fn load_weights_bytes_with(
        &mut self,
        bytes: &[u8],
        name: &str,
        options: &WeightsOptions,
    ) -> Result<()> {
        let specs = self.weight_specs("load_weights")?;
        let loaded = weights::from_safetensors(bytes, name, &specs, options)?;
        self.set_weights(&loaded.data)
    }

    /// What a weights file must hold for this model: every parameter, with its layer.
    pub(super) fn weight_specs(&self, op: &'static str) -> Result<Vec<WeightSpec>> {
        let c = self.compiled(op)?;
        let names = lower(op, &self.input, &self.layers)?.names;
        Ok(c.infos
            .iter()
            .map(|p| {
                let owner = names.iter().position(|n| {
                    p.name
                        .strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                });
                WeightSpec {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    layer: owner.map_or_else(
                        || "the model".to_string(),
                        |i| format!("layer {i} ({})", self.layers[i].kind()),
                    ),
                }
            })
            .collect())
    }

    /// Uploads checked values (one per parameter, in order); called only after every check
    /// has passed, so a load is all or nothing.
    fn set_weights(&mut self, data: &[Vec<f32>]) -> Result<()> {
        let c = self.compiled("load_weights")?;
        // A queue write on a lost device fails silently: report the loss instead.
        c.gpu.check_alive("load_weights")?;
        for (t, v) in c.values.iter().zip(data) {
            c.gpu.upload(t.buffer(), 0, bytemuck::cast_slice(v));
        }
        Ok(())
    }
}

/// Reads `tensors` back, each named and shaped as its parameter.
pub(super) fn read_named(infos: &[ParamInfo], tensors: &[Tensor]) -> Result<Vec<NamedTensor>> {
    infos
        .iter()
        .zip(tensors)
        .map(|(p, t)| {
            Ok(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: t.read_f32("Tensor::to_vec")?,
            })
        })
        .collect()
}
