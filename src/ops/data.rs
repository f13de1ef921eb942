//! The training step's non-finite check and the spinning kernel, run eagerly for the tests (shaders/data.wgsl).

use crate::kernels::data::{Data, DataParams, FINITE_SEGMENTS, FiniteParams};
use crate::ops::run;
use crate::{Gpu, Result};

/// The training step's non-finite check run on its own: checks `segments` (each a tensor,
/// how many of its elements count, and the parameter index it stands for; at most
/// [`FINITE_SEGMENTS`]) as step 0, on a status word that starts as `initial`, and returns
/// it (`[first bad step + 1, code, policy, last bad step + 1]`, code `u32::MAX - 1 -
/// parameter`). For the tests.
///
/// # Errors
/// On more than [`FINITE_SEGMENTS`] segments, none, a tensor not f32 or on another `Gpu`, a
/// count over a tensor's length, or device errors.
#[doc(hidden)]
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
    run(gpu, op, |pass| k.record_check_finite(pass, &io, vec4s))?;
    let s = status.to_vec_u32()?;
    Ok([s[0], s[1], s[2], s[3]])
}

/// Runs `groups` (at most 65,535) workgroups of 64 invocations, each `iterations` dependent
/// steps long, and returns the 4-element output without waiting: a long-running kernel for
/// the tests of wait timeouts.
///
/// # Errors
/// On device errors.
#[doc(hidden)]
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
    run(gpu, op, |pass| {
        k.record_spin(pass, &io, groups.clamp(1, 65_535))
    })?;
    Ok(out)
}
