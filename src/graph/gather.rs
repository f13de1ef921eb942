//! The step's input from a resident data set: the gather kernel that builds the f32 batch
//! and its labels on the GPU from the u8 samples the permutation names.

use crate::data::resident::GpuDataset;
use crate::graph::instr::{Builder, Res, bytes};
use crate::kernels::data::DataParams;
use crate::kernels::rec::Rec;

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

pub(crate) fn params(d: &GpuDataset, rows: usize) -> DataParams {
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
