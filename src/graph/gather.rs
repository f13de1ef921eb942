//! The step's input from a resident data set: the gather kernel that builds the f32 batch
//! and its labels on the GPU from the u8 samples the permutation names.

use crate::data::resident::GpuDataset;
use crate::graph::instr::{Builder, Res, bytes};
use crate::kernels::data::{Data, DataParams};
use crate::kernels::rec::Rec;
use crate::{Error, Gpu, Result, Tensor};

/// The gather's bindings 2-4 and 11-13: (pixels 0, labels, perm) and pixels 1-3 (the first
/// chunk again where there are fewer).
fn binds(d: &GpuDataset) -> [Res; 6] {
    [
        Res::B(d.chunk(0).clone()),
        Res::B(d.labels.clone()),
        Res::T(d.perm.clone()),
        Res::B(d.chunk(1).clone()),
        Res::B(d.chunk(2).clone()),
        Res::B(d.chunk(3).clone()),
    ]
}

fn params(d: &GpuDataset, rows: usize) -> DataParams {
    DataParams {
        rows: rows as u32,
        image_len: d.image_len as u32,
        scale: 1.0 / 255.0,
        per_chunk: d.per_chunk as u32,
    }
}

/// Appends the gather of `batch` samples (from the step's `batch_start` in the permutation)
/// into new virtual buffers: returns (images, labels).
pub(super) fn gather(b: &mut Builder, d: &GpuDataset, batch: usize) -> (usize, usize) {
    let x = b.vbuf(batch * d.image_len);
    let y = b.vbuf(batch);
    let [c0, labels, perm, c1, c2, c3] = binds(d);
    b.push(
        Rec::Gather {
            elements: (batch * d.image_len) as u32,
        },
        vec![
            bytes(&params(d, batch)),
            Res::Step,
            c0,
            labels,
            perm,
            Res::V(x),
            Res::V(y),
            c1,
            c2,
            c3,
        ],
    );
    (x, y)
}

/// Uploads `images`/`labels` (`count` samples) and gathers the samples at `indices` with the
/// training step's kernel; returns the f32 batch and its labels. For the tests of data sets
/// spanning several bindings.
#[doc(hidden)]
pub fn gather_batch(
    gpu: &Gpu,
    images: &[u8],
    labels: &[u8],
    count: usize,
    indices: &[u32],
) -> Result<(Vec<f32>, Vec<u32>)> {
    let op = "gather_batch";
    let data = GpuDataset::upload(gpu, op, images, labels, count)?;
    if indices.is_empty() || indices.len() > count || indices.iter().any(|&i| i as usize >= count) {
        return Err(Error::arg(
            op,
            format!("indices must be 1 to {count} sample numbers below {count}"),
        ));
    }
    data.set_order(indices);
    let rows = indices.len();
    let x = Tensor::empty(gpu, op, &[rows, data.image_len], crate::DType::F32)?;
    let y = Tensor::empty(gpu, op, &[rows], crate::DType::U32)?;
    let k = Data::get(gpu)?;
    let params = crate::kernels::uniform(gpu, op, &params(&data, rows));
    let io = k.gather_family.bind(
        gpu,
        &[
            &params,
            crate::kernels::zero_step(gpu),
            &data.chunk(0).buffer,
            &data.labels.buffer,
            data.perm.buffer(),
            x.buffer(),
            y.buffer(),
            &data.chunk(1).buffer,
            &data.chunk(2).buffer,
            &data.chunk(3).buffer,
        ],
    );
    gpu.submit_pass(op, |pass| {
        k.record_gather(pass, &io, (rows * data.image_len) as u32)
    })?;
    Ok((x.to_vec()?, y.to_vec_u32()?))
}
