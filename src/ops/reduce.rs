//! The eager bias gradient (shaders/reduce.wgsl).

use crate::kernels::reduce::{Reduce, ReduceParams};
use crate::kernels::{zero_status, zero_step};
use crate::ops::expect_status;
use crate::ops::uniform;
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// The bias gradient: the sum of `dy` over every dimension but the last (`[.., c]` -> `[c]`).
///
/// # Errors
/// When `dy` is not f32.
pub fn bias_grad(dy: &Tensor) -> Result<Tensor> {
    eager(dy, None)
}

/// [`bias_grad`], and with `check` = (status, code) every sum checked as in a training step,
/// reporting to that status tensor (u32 [4]).
pub(crate) fn eager(dy: &Tensor, check: Option<(&Tensor, u32)>) -> Result<Tensor> {
    let op = "bias_grad";
    dy.expect(DType::F32, op)?;
    if let Some((status, _)) = check {
        expect_status(op, status, dy)?;
    }
    let gpu = dy.gpu();
    let k = Reduce::get(gpu)?;
    let cols = *dy
        .shape()
        .last()
        .ok_or_else(|| Error::shape(op, "dy has no dimensions"))?;
    let rows = dy.len() / cols;
    let out = Tensor::empty(gpu, op, &[cols], DType::F32)?;
    let params = uniform(
        gpu,
        op,
        &ReduceParams {
            rows: rows as u32,
            cols: cols as u32,
            check: check.map_or(0, |(_, code)| code),
            _pad: 0,
        },
    );
    let io = k.family.bind_eager(
        gpu,
        &[
            &params,
            dy.buffer(),
            out.buffer(),
            zero_step(gpu),
            check.map_or(zero_status(gpu), |(status, _)| status.buffer()),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_bias_grad(pass, &io, cols as u32))?;
    Ok(out)
}
