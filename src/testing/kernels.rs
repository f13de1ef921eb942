//! Kernels the tests drive on their own: the data set gather, the non-finite check, raw
//! Philox words and a spinning kernel for wait timeouts.

use crate::data::resident::GpuDataset;
use crate::kernels::data::{Data, DataParams, FINITE_SEGMENTS, FiniteParams};
use crate::kernels::dropout::{Dropout, WordsParams};
use crate::kernels::{dispatch_1d, uniform};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

/// Uploads `images`/`labels` (`count` samples) and gathers the samples at `indices` with the
/// training step's kernel; returns the f32 batch and its labels. For the tests of data sets
/// spanning several bindings.
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
    let params = crate::kernels::uniform(gpu, op, &crate::graph::gather::params(&data, rows));
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

/// Raw Philox-4x32-10 words computed on the GPU, one per (counter, key) pair; the tests hold
/// them to [`crate::philox::philox4x32_10`].
///
/// # Errors
/// When `items` is empty or over the device's limits.
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
    gpu.submit_pass(op, |pass| {
        dispatch_1d(pass, &k.words, &io, items.len() as u32)
    })?;
    let out = output.to_vec_u32()?;
    Ok(out.chunks(4).map(|w| [w[0], w[1], w[2], w[3]]).collect())
}

/// The training step's non-finite check run on its own: checks `segments` (each a tensor,
/// how many of its elements count, and the parameter index it stands for; at most
/// `FINITE_SEGMENTS` (6)) as step 0, on a status word that starts as `initial`, and returns
/// it (`[first bad step + 1, code, policy, last bad step + 1]`, code `u32::MAX - 1 -
/// parameter`). For the tests.
///
/// # Errors
/// On more than `FINITE_SEGMENTS` (6) segments, none, a tensor not f32 or on another `Gpu`, a
/// count over a tensor's length, or device errors.
pub fn check_finite(
    segments: &[(&crate::Tensor, usize, usize)],
    initial: [u32; 4],
) -> Result<[u32; 4]> {
    let op = "check_finite";
    let Some(&(first, _, _)) = segments.first() else {
        return Err(crate::Error::arg(op, "no segments"));
    };
    if segments.len() > FINITE_SEGMENTS {
        return Err(crate::Error::arg(
            op,
            format!("{} segments, at most {FINITE_SEGMENTS}", segments.len()),
        ));
    }
    for &(t, n, _) in segments {
        t.expect(crate::DType::F32, op)?;
        first.same_gpu(t, op)?;
        if n > t.len() {
            return Err(crate::Error::arg(
                op,
                format!("count {n} is over the tensor's {} elements", t.len()),
            ));
        }
    }
    let gpu = first.gpu();
    let k = Data::get(gpu)?;
    let lens: Vec<(u32, usize)> = segments.iter().map(|&(_, n, p)| (n as u32, p)).collect();
    let (params, vec4s) = FiniteParams::new(&lens);
    let params = crate::kernels::uniform(gpu, op, &params);
    let status = crate::Tensor::from_u32(gpu, &initial, &[4])?;
    let mut buffers = vec![&params, crate::kernels::zero_step(gpu), status.buffer()];
    for i in 0..FINITE_SEGMENTS {
        buffers.push(segments.get(i).unwrap_or(&segments[0]).0.buffer());
    }
    let io = k.finite_family.bind(gpu, &buffers);
    gpu.submit_pass(op, |pass| k.record_check_finite(pass, &io, vec4s))?;
    let s = status.to_vec_u32()?;
    Ok([s[0], s[1], s[2], s[3]])
}

/// Runs `groups` (at most 65,535) workgroups of 64 invocations, each `iterations` dependent
/// steps long, and returns the 4-element output without waiting: a long-running kernel for
/// the tests of wait timeouts.
///
/// # Errors
/// On device errors.
pub fn spin(gpu: &Gpu, groups: u32, iterations: u32) -> Result<crate::Tensor> {
    let op = "spin";
    let k = Data::get(gpu)?;
    let out = crate::Tensor::empty(gpu, op, &[4], crate::DType::F32)?;
    let p = DataParams {
        rows: iterations,
        image_len: groups,
        scale: 0.5,
        per_chunk: 1,
    };
    let params = crate::kernels::uniform(gpu, op, &p);
    let io = k.spin_family.bind(gpu, &[&params, out.buffer()]);
    gpu.submit_pass(op, |pass| k.record_spin(pass, &io, groups.clamp(1, 65_535)))?;
    Ok(out)
}
