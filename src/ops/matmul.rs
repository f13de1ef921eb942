//! The eager products: [`matmul`] and the fused [`dense`] layer (shaders/matmul.wgsl).

use crate::kernels::matmul::{Epilogue, Matmul, MatmulParams, MatmulTile};
use crate::kernels::{zero_status, zero_step};
use crate::ops::uniform;
use crate::ops::{DropoutSpec, check_rate, expect_status};
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// `(m, k, n)` of `op(a) op(b)`, or an error naming both shapes.
pub(crate) fn dims(
    op: &'static str,
    a: &[usize],
    b: &[usize],
    ta: bool,
    tb: bool,
) -> Result<(usize, usize, usize)> {
    if a.len() != 2 || b.len() != 2 {
        return Err(Error::shape(
            op,
            format!("expects two matrices, got a {a:?} and b {b:?}"),
        ));
    }
    let (m, ka) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
    let (kb, n) = if tb { (b[1], b[0]) } else { (b[0], b[1]) };
    if ka != kb {
        return Err(Error::shape(
            op,
            format!(
                "inner dimensions differ: op(a) is [{m}, {ka}], op(b) is [{kb}, {n}] (a {a:?} trans_a={ta}, b {b:?} trans_b={tb})"
            ),
        ));
    }
    // The smallest workgroup block of any variant is 32 x 32.
    let side = 32usize;
    if m.div_ceil(side) > 65_535 || n.div_ceil(side) > 65_535 {
        return Err(Error::Limit {
            op,
            what: format!("workgroups for an [{m}, {n}] output"),
            requested: m.max(n).div_ceil(side) as u64,
            limit: 65_535,
        });
    }
    Ok((m, ka, n))
}

/// One product on its own: `tile` (else the autotuner's or the static choice), and with
/// `check` = (status, code) every output checked as in a training step, reporting to that
/// status tensor (u32 [4]).
#[allow(
    clippy::too_many_arguments,
    reason = "the product's parts, named; ops::matmul and ops::dense fix most of them"
)]
pub(crate) fn eager(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    trans: (bool, bool),
    bias: Option<&Tensor>,
    epi: Epilogue,
    tile: Option<MatmulTile>,
    check: Option<(&Tensor, u32)>,
) -> Result<Tensor> {
    a.expect(DType::F32, op)?;
    b.expect(DType::F32, op)?;
    a.same_gpu(b, op)?;
    let (m, k, n) = dims(op, a.shape(), b.shape(), trans.0, trans.1)?;
    if let Some(bias) = bias {
        bias.expect(DType::F32, op)?;
        a.same_gpu(bias, op)?;
        if bias.shape() != [n] {
            return Err(Error::shape(
                op,
                format!(
                    "bias has shape {:?}, expected [{n}] (output [{m}, {n}])",
                    bias.shape()
                ),
            ));
        }
    }
    if let Some(d) = epi.dropout {
        check_rate(op, d.rate)?;
    }
    let gpu = a.gpu();
    let kern = Matmul::get(gpu)?;
    let (mu, nu, ku) = (m as u32, n as u32, k as u32);
    let tile = match tile {
        Some(t) if !kern.tiles().contains(&t) => {
            return Err(Error::arg(
                op,
                format!("tile {t:?} is not available on {}", gpu.info().name),
            ));
        }
        Some(t) => t,
        None => crate::tune::matmul_pick(gpu, kern, trans, (mu, nu, ku)),
    };
    if let Some((status, _)) = check {
        expect_status(op, status, a)?;
    }
    kern.prepare_tile(gpu, trans, (mu, nu, ku), tile)?;
    let c = Tensor::empty(gpu, op, &[m, n], DType::F32)?;
    let code = check.map_or(0, |(_, code)| code);
    let params = uniform(
        gpu,
        op,
        &MatmulParams::new(m as u32, n as u32, k as u32, epi).checked(code),
    );
    let bias_buf = bias.map_or(a.buffer(), |t| t.buffer());
    let io = kern.family.bind_eager(
        gpu,
        &[
            &params,
            zero_step(gpu),
            a.buffer(),
            b.buffer(),
            bias_buf,
            c.buffer(),
            check.map_or(zero_status(gpu), |(status, _)| status.buffer()),
        ],
    );
    let mut recorded = Ok(());
    gpu.submit_pass(op, |pass| {
        recorded = kern.record_tile(gpu, pass, &io, trans, (mu, nu, ku), tile)
    })?;
    recorded?;
    Ok(c)
}

/// `op(a) op(b)`: `[m, k] x [k, n] -> [m, n]`, where `op(a)` is `a` or, if `trans_a`, its
/// transpose (then `a` is `[k, m]`); likewise `b` (`[n, k]` if `trans_b`). The backward of
/// `y = x w` is `dx = matmul(dy, w, false, true)` and `dw = matmul(x, dy, true, false)`.
///
/// # Errors
/// When a tensor is not a 2-D f32 matrix or the inner dimensions differ.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    eager(
        "matmul",
        a,
        b,
        (trans_a, trans_b),
        None,
        Epilogue::default(),
        None,
        None,
    )
}

/// The fused dense layer: `dropout(act(x w + bias))` in one kernel, `x` `[batch, in]`, `w`
/// `[in, units]`, `bias` `[units]`, `act` ReLU if `relu` else identity, dropout drawn exactly
/// as [`crate::ops::dropout`] draws it for the `[batch, units]` output. Its gradient with
/// respect to the pre-activation is [`crate::ops::relu_dropout_backward`] of the output.
///
/// # Errors
/// When shapes do not fit (naming them) or the dropout rate is outside [0, 1].
pub fn dense(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    dropout: Option<DropoutSpec>,
) -> Result<Tensor> {
    let epi = Epilogue {
        bias: bias.is_some(),
        relu,
        dropout,
    };
    eager("dense", x, w, (false, false), bias, epi, None, None)
}
