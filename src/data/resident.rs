//! Resident data sets: a [`Dataset`](super::Dataset) uploaded once, as bytes, and a sample
//! order rewritten once per epoch. The gather that builds a step's f32 batch from it is
//! recorded by the graph executor (`graph::gather`); this module only uploads and holds.

use std::sync::Arc;

use crate::tensor::Buf;
use crate::{Error, Gpu, Result, Tensor};

/// A data set resident on the GPU: u8 pixels and labels packed four per u32 word, and a
/// permutation of sample indices rewritten once per epoch.
pub(crate) struct GpuDataset {
    /// Pixel chunks: whole samples, each chunk within one storage binding.
    pub chunks: Vec<Arc<Buf>>,
    /// Samples per chunk (the last chunk may hold fewer).
    pub per_chunk: usize,
    pub labels: Arc<Buf>,
    pub perm: Tensor,
    pub image_len: usize,
    /// The number of samples.
    pub count: usize,
}

/// Pixel bindings the gather kernel has: a data set may span this many storage bindings.
pub(crate) const MAX_CHUNKS: usize = 4;

impl GpuDataset {
    /// Uploads `images` (`count * image_len` bytes) and `labels` once, as bytes, for the
    /// public call `op`. A data set larger than one storage binding (lavapipe allows 128 MiB;
    /// CIFAR-10's training pixels are 153,600,000 bytes) is split into up to [`MAX_CHUNKS`]
    /// chunks of whole samples.
    pub fn upload(
        gpu: &Gpu,
        op: &'static str,
        images: &[u8],
        labels: &[u8],
        count: usize,
    ) -> Result<GpuDataset> {
        if count == 0
            || !images.len().is_multiple_of(count)
            || images.is_empty()
            || labels.len() != count
        {
            return Err(Error::arg(
                op,
                format!(
                    "{} image bytes and {} labels do not make {count} samples",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        let image_len = images.len() / count;
        let limits = &gpu.info().limits;
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            & !15;
        let per_chunk = usize::try_from(binding / image_len as u64)
            .unwrap_or(usize::MAX)
            .min(count);
        if per_chunk == 0 || count.div_ceil(per_chunk) > MAX_CHUNKS {
            return Err(Error::Limit {
                op,
                what: format!(
                    "data set bytes ({count} samples of {image_len} bytes, in at most {MAX_CHUNKS} bindings)"
                ),
                requested: images.len() as u64,
                limit: (MAX_CHUNKS * per_chunk * image_len) as u64,
            });
        }
        let put = |bytes: &[u8], label: &str| -> Result<Arc<Buf>> {
            let buf = gpu.storage(op, label, bytes.len() as u64)?;
            let whole = bytes.len() & !3;
            gpu.upload(&buf.buffer, 0, &bytes[..whole]);
            if whole < bytes.len() {
                let mut tail = [0u8; 4];
                tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                gpu.upload(&buf.buffer, whole as u64, &tail);
            }
            Ok(buf)
        };
        let chunks = images
            .chunks(per_chunk * image_len)
            .map(|c| put(c, "wgnn data set pixels"))
            .collect::<Result<Vec<_>>>()?;
        let labels = put(labels, "wgnn data set labels")?;
        let identity: Vec<u32> = (0..count as u32).collect();
        let perm = Tensor::from_u32(gpu, &identity, &[count])?;
        Ok(GpuDataset {
            chunks,
            per_chunk,
            labels,
            perm,
            image_len,
            count,
        })
    }

    /// Writes the epoch's permutation (the only per-epoch upload).
    pub fn set_order(&self, order: &[u32]) {
        self.perm
            .gpu()
            .upload(self.perm.buffer(), 0, bytemuck::cast_slice(order));
    }

    /// The pixel chunk holding samples `i * per_chunk ..`, or the first chunk where there
    /// are fewer than `i + 1` (the gather kernel binds all of its chunks).
    pub fn chunk(&self, i: usize) -> &Arc<Buf> {
        self.chunks.get(i).unwrap_or(&self.chunks[0])
    }
}
