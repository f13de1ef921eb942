//! The eager batch normalization ops (shaders/batchnorm.wgsl).

use std::sync::Arc;

use crate::kernels::batchnorm::{BatchNorm, BatchNormParams};
use crate::kernels::{zero_status, zero_step};
use crate::ops::same_shape;
use crate::ops::uniform;
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// `(rows, channels)` of `x` (`[.., channels]`, at least two dimensions), checked f32.
fn rows_channels(op: &'static str, x: &Tensor) -> Result<(u32, u32)> {
    x.expect(DType::F32, op)?;
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("x must have at least 2 dimensions ([rows, channels] or NHWC), got {shape:?}"),
        ));
    }
    let c = shape[shape.len() - 1];
    // numel has bounded the product by u32::MAX.
    Ok(((x.len() / c) as u32, c as u32))
}

/// `Err` unless `t` is an f32 `[channels]` vector on `x`'s GPU.
fn per_channel(op: &'static str, x: &Tensor, t: &Tensor, name: &str) -> Result<()> {
    t.expect(DType::F32, op)?;
    x.same_gpu(t, op)?;
    let c = x.shape()[x.shape().len() - 1];
    if t.shape() != [c] {
        return Err(Error::shape(
            op,
            format!(
                "{name} has shape {:?}, expected [{c}] (x {:?})",
                t.shape(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

fn check_epsilon(op: &'static str, epsilon: f32) -> Result<()> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(Error::arg(
            op,
            format!("epsilon {epsilon} is not a finite number > 0"),
        ));
    }
    Ok(())
}

/// Batch normalization in training mode over the last axis of `x` (`[n, features]` or NHWC
/// `[n, h, w, c]`; `rows` is the product of all but the last dimension): per channel `c`,
/// `mean = sum(x) / rows`, the biased variance `var = sum((x - mean)^2) / rows`,
/// `inv_std = 1 / sqrt(var + epsilon)` and `y = (x - mean) * inv_std * gamma + beta`.
/// `gamma` and `beta` are `[c]`; Keras' default epsilon is 1e-3. Returns
/// `(y, batch_mean [c], batch_inv_std [c])`, the last two for [`batch_norm_backward`] and
/// [`batch_norm_update_moving`]. One row gives variance 0 and `y = beta`, not NaN.
///
/// The statistics are reduced deterministically (fixed chunks of rows combined in order,
/// no atomics), so results are identical run to run.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// // Two rows, one channel: mean 2, variance 1.
/// let x = wgnn::Tensor::from_slice(&gpu, &[1.0, 3.0], &[2, 1])?;
/// let gamma = wgnn::Tensor::from_slice(&gpu, &[1.0], &[1])?;
/// let beta = wgnn::Tensor::from_slice(&gpu, &[0.0], &[1])?;
/// let (y, mean, inv_std) = wgnn::ops::batch_norm_train(&x, &gamma, &beta, 1e-3)?;
/// assert_eq!(mean.to_vec()?, vec![2.0]);
/// let s = 1.0 / 1.001f32.sqrt();
/// assert!((inv_std.to_vec()?[0] - s).abs() < 1e-6);
/// assert!((y.to_vec()?[1] - s).abs() < 1e-6);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `x` has fewer than 2 dimensions, `gamma` or `beta` is not `[c]`, a tensor is not f32,
/// or `epsilon` is not finite and > 0.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    epsilon: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batch_norm_train";
    let (rows, channels) = rows_channels(op, x)?;
    per_channel(op, x, gamma, "gamma")?;
    per_channel(op, x, beta, "beta")?;
    check_epsilon(op, epsilon)?;
    let gpu = x.gpu();
    let k = BatchNorm::get(gpu)?;
    let p = BatchNormParams::new(rows, channels, epsilon, 0.0);
    let c = channels as usize;
    let y = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let mean = Tensor::empty(gpu, op, &[c], DType::F32)?;
    let inv_std = Tensor::empty(gpu, op, &[c], DType::F32)?;
    let partial = Tensor::empty(gpu, op, &[p.partial_len()], DType::F32)?;
    let params = uniform(gpu, op, &p);
    let xb = x.buffer();
    let stats = k
        .partial_family
        .bind_eager(gpu, &[&params, xb, xb, xb, xb, partial.buffer()]);
    let reduce = k.reduce_family.bind_eager(
        gpu,
        &[&params, partial.buffer(), mean.buffer(), inv_std.buffer()],
    );
    let apply = k.apply_family.bind_eager(
        gpu,
        &[
            &params,
            xb,
            xb,
            gamma.buffer(),
            beta.buffer(),
            mean.buffer(),
            inv_std.buffer(),
            xb,
            y.buffer(),
        ],
    );
    gpu.submit_pass(op, |pass| {
        k.record_partial_moments(pass, &stats, &p);
        k.record_reduce_moments(pass, &reduce, &p);
        k.record_forward(pass, &apply, &p);
    })?;
    Ok((y, mean, inv_std))
}

/// Batch normalization in inference mode, per channel of the last axis of `x`:
///
/// ```text
/// y = (x - moving_mean) / sqrt(moving_var + epsilon) * gamma + beta
/// ```
///
/// with `gamma`, `beta`, `moving_mean` and `moving_var` all `[c]`.
///
/// # Errors
/// When `x` has fewer than 2 dimensions, a per-channel tensor is not `[c]`, a tensor is not
/// f32, or `epsilon` is not finite and > 0.
pub fn batch_norm_inference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    epsilon: f32,
) -> Result<Tensor> {
    let op = "batch_norm_inference";
    let (rows, channels) = rows_channels(op, x)?;
    per_channel(op, x, gamma, "gamma")?;
    per_channel(op, x, beta, "beta")?;
    per_channel(op, x, moving_mean, "moving_mean")?;
    per_channel(op, x, moving_var, "moving_var")?;
    check_epsilon(op, epsilon)?;
    let gpu = x.gpu();
    let k = BatchNorm::get(gpu)?;
    let p = BatchNormParams::new(rows, channels, epsilon, 0.0);
    let y = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let params = uniform(gpu, op, &p);
    let xb = x.buffer();
    let apply = k.apply_family.bind_eager(
        gpu,
        &[
            &params,
            xb,
            xb,
            gamma.buffer(),
            beta.buffer(),
            moving_mean.buffer(),
            moving_var.buffer(),
            xb,
            y.buffer(),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_inference(pass, &apply, &p))?;
    Ok(y)
}

/// The backward of [`batch_norm_train`] for the loss gradient `dy` (shape of `x`), given the
/// forward's `mean` and `inv_std` (`[c]`). With `xhat = (x - mean) * inv_std` and sums over
/// the rows of each channel:
///
/// ```text
/// dbeta  = sum(dy)
/// dgamma = sum(dy * xhat)
/// dx     = gamma * inv_std * (dy - (dbeta + xhat * dgamma) / rows)
/// ```
///
/// (the batch statistics depend on `x`, hence the two correction terms). Returns
/// `(dx, dgamma [c], dbeta [c])`.
///
/// # Errors
/// When `x` has fewer than 2 dimensions, `dy` differs from `x` in shape, a per-channel tensor
/// is not `[c]`, or a tensor is not f32.
pub fn batch_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    inv_std: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batch_norm_backward";
    let (rows, channels) = rows_channels(op, x)?;
    dy.expect(DType::F32, op)?;
    same_shape(op, x, "x", dy, "dy")?;
    per_channel(op, x, gamma, "gamma")?;
    per_channel(op, x, mean, "mean")?;
    per_channel(op, x, inv_std, "inv_std")?;
    let gpu = x.gpu();
    let k = BatchNorm::get(gpu)?;
    let p = BatchNormParams::new(rows, channels, 0.0, 0.0);
    let c = channels as usize;
    let dx = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let dgamma = Tensor::empty(gpu, op, &[c], DType::F32)?;
    let dbeta = Tensor::empty(gpu, op, &[c], DType::F32)?;
    let partial = Tensor::empty(gpu, op, &[p.partial_len()], DType::F32)?;
    let params = uniform(gpu, op, &p);
    let sums = k.partial_family.bind_eager(
        gpu,
        &[
            &params,
            x.buffer(),
            dy.buffer(),
            mean.buffer(),
            inv_std.buffer(),
            partial.buffer(),
        ],
    );
    let reduce = k.reduce_family.bind_eager(
        gpu,
        &[&params, partial.buffer(), dgamma.buffer(), dbeta.buffer()],
    );
    let apply = k.apply_family.bind_eager(
        gpu,
        &[
            &params,
            x.buffer(),
            dy.buffer(),
            gamma.buffer(),
            dbeta.buffer(),
            mean.buffer(),
            inv_std.buffer(),
            dgamma.buffer(),
            dx.buffer(),
        ],
    );
    gpu.submit_pass(op, |pass| {
        k.record_partial_grads(pass, &sums, &p);
        k.record_reduce_grads(pass, &reduce, &p);
        k.record_backward(pass, &apply, &p);
    })?;
    Ok((dx, dgamma, dbeta))
}

/// Keras' moving-statistics update, in place on `moving_mean` and `moving_var` (`[c]`):
///
/// ```text
/// moving_mean = moving_mean * momentum + mean * (1 - momentum)
/// moving_var  = moving_var  * momentum + var  * (1 - momentum)
/// ```
///
/// where `mean` and `inv_std` come from [`batch_norm_train`] with the same `epsilon`, and
/// `var = max(1 / inv_std^2 - epsilon, 0)` recovers the batch's biased variance (divided by
/// `rows`, not `rows - 1`). That is what Keras does: `BatchNormalization.call` feeds the
/// variance of `ops.moments` (biased) to the moving average and to the normalization alike.
/// (PyTorch instead feeds `var * rows / (rows - 1)` to its running variance.) Keras' default
/// momentum is 0.99.
///
/// `rows` is the number of rows the statistics came from (N*H*W); with Keras' biased update
/// it does not enter the formula, and is only checked to be >= 1.
///
/// # Errors
/// When a tensor is not f32 or not one-dimensional `[c]` like `moving_mean`, `moving_mean` or
/// `moving_var` shares a buffer with another argument, `momentum` is outside [0, 1], `epsilon`
/// is not finite and > 0, or `rows` is 0.
pub fn batch_norm_update_moving(
    moving_mean: &Tensor,
    moving_var: &Tensor,
    mean: &Tensor,
    inv_std: &Tensor,
    momentum: f32,
    epsilon: f32,
    rows: usize,
) -> Result<()> {
    let op = "batch_norm_update_moving";
    moving_mean.expect(DType::F32, op)?;
    if moving_mean.shape().len() != 1 {
        return Err(Error::shape(
            op,
            format!(
                "moving_mean has shape {:?}, expected one dimension [channels]",
                moving_mean.shape()
            ),
        ));
    }
    let named = [
        (moving_mean, "moving_mean"),
        (moving_var, "moving_var"),
        (mean, "mean"),
        (inv_std, "inv_std"),
    ];
    for (i, &(t, name)) in named.iter().enumerate().skip(1) {
        t.expect(DType::F32, op)?;
        same_shape(op, moving_mean, "moving_mean", t, name)?;
        // The two updated tensors must not alias each other or an input.
        for &(u, un) in named.iter().take(i.min(2)) {
            if Arc::ptr_eq(&t.buf, &u.buf) {
                return Err(Error::arg(
                    op,
                    format!("{un} and {name} share one buffer; each must be its own tensor"),
                ));
            }
        }
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::arg(
            op,
            format!("momentum {momentum} is outside [0, 1]"),
        ));
    }
    check_epsilon(op, epsilon)?;
    if rows == 0 {
        return Err(Error::arg(op, "rows 0 is not >= 1"));
    }
    let gpu = moving_mean.gpu();
    gpu.check_alive(op)?; // before the params upload, which a lost device cannot report
    let k = BatchNorm::get(gpu)?;
    let channels = moving_mean.len() as u32;
    let p = BatchNormParams::new(1, channels, epsilon, momentum);
    let params = uniform(gpu, op, &p);
    let io = k.moving_family.bind_eager(
        gpu,
        &[
            &params,
            mean.buffer(),
            inv_std.buffer(),
            moving_mean.buffer(),
            moving_var.buffer(),
            zero_step(gpu),
            zero_status(gpu),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_update_moving(pass, &io, &p))
}
