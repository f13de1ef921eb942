//! The eager softmax, cross-entropy and accuracy ops (shaders/softmax_xent.wgsl).

use crate::kernels::softmax_xent::*;
use crate::ops::uniform;
use crate::tensor::DType;
use crate::{Error, Result, Tensor};

/// `(rows, classes)` of 2-D f32 `logits`, or an error naming `op` and the shape.
fn logits_dims(op: &'static str, logits: &Tensor) -> Result<(usize, usize)> {
    if logits.dtype() != DType::F32 {
        return Err(Error::arg(
            op,
            format!(
                "logits must be F32, got {:?} {:?}",
                logits.dtype(),
                logits.shape()
            ),
        ));
    }
    match *logits.shape() {
        [rows, cols] => Ok((rows, cols)),
        ref s => Err(Error::shape(
            op,
            format!("logits must be 2-D [rows, classes], got shape {s:?}"),
        )),
    }
}

/// Checks `logits` `[rows, classes]` (f32) against `labels` `[rows]` (u32): `(rows, classes)`.
pub(crate) fn check_inputs(
    op: &'static str,
    logits: &Tensor,
    labels: &Tensor,
) -> Result<(usize, usize)> {
    logits.same_gpu(labels, op)?;
    let (rows, cols) = logits_dims(op, logits)?;
    if labels.dtype() != DType::U32 {
        return Err(Error::arg(
            op,
            format!(
                "labels must be U32 class indices, got {:?} {:?}",
                labels.dtype(),
                labels.shape()
            ),
        ));
    }
    if labels.shape() != [rows] {
        return Err(Error::shape(
            op,
            format!(
                "labels have shape {:?}, expected [{rows}] (logits {:?})",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    Ok((rows, cols))
}

/// Turns the status words the finalize pass wrote (bad rows, first bad row, its label, rows
/// checked) into an error naming the first out-of-range label, or `Ok`.
pub(crate) fn check_status(op: &'static str, status: &[u32], classes: usize) -> Result<()> {
    let &[bad, row, label, _] = status else {
        return Err(Error::Gpu {
            op,
            msg: format!("status buffer holds {} words, expected 4", status.len()),
        });
    };
    match bad {
        0 => Ok(()),
        1 => Err(Error::arg(
            op,
            format!("label {label} at row {row} is out of range for {classes} classes"),
        )),
        _ => Err(Error::arg(
            op,
            format!(
                "label {label} at row {row} is out of range for {classes} classes ({bad} rows have labels >= {classes})"
            ),
        )),
    }
}

/// The outputs of one eager run of the loss passes.
struct LossRun {
    dlogits: Option<Tensor>,
    loss: Tensor,
    correct: Tensor,
}

/// Runs the row and finalize passes, reads the 16-byte status word back and checks it.
fn eager_loss(op: &'static str, logits: &Tensor, labels: &Tensor, grad: bool) -> Result<LossRun> {
    let (run, status, cols) = record_loss(op, logits, labels, grad)?;
    check_status(op, &status.read_u32("Tensor::to_vec_u32")?, cols)?;
    Ok(run)
}

/// Records and submits the row and finalize passes: the outputs, the status word (unread)
/// and the class count.
fn record_loss(
    op: &'static str,
    logits: &Tensor,
    labels: &Tensor,
    grad: bool,
) -> Result<(LossRun, Tensor, usize)> {
    let (rows, cols) = check_inputs(op, logits, labels)?;
    let gpu = logits.gpu();
    let k = SoftmaxXent::get(gpu)?;
    // Without a gradient nothing is written to `out`: a one-element placeholder fills the slot.
    let out_shape: &[usize] = if grad { &[rows, cols] } else { &[1] };
    let out = Tensor::empty(gpu, op, out_shape, DType::F32)?;
    let row_stats = Tensor::empty(gpu, op, &[2 * rows], DType::F32)?;
    let loss = Tensor::empty(gpu, op, &[1], DType::F32)?;
    let correct = Tensor::empty(gpu, op, &[1], DType::U32)?;
    let status = Tensor::empty(gpu, op, &[STATUS_WORDS], DType::U32)?;
    let flags = if grad { 0 } else { FLAG_NO_GRAD };
    let params = uniform(
        gpu,
        op,
        &SoftmaxXentParams::new(rows as u32, cols as u32, flags),
    );
    let io = k.family.bind_eager(
        gpu,
        &[
            &params,
            logits.buffer(),
            out.buffer(),
            labels.buffer(),
            row_stats.buffer(),
            loss.buffer(),
            correct.buffer(),
            status.buffer(),
        ],
    );
    gpu.submit_pass(op, |pass| k.record_loss(pass, &io, rows as u32))?;
    let run = LossRun {
        dlogits: grad.then_some(out),
        loss,
        correct,
    };
    Ok((run, status, cols))
}

/// Softmax cross-entropy of `logits` (`[n, classes]`, f32) against integer `labels`
/// (`[n]`, u32 class indices), fused and numerically stable (log-sum-exp after subtracting
/// the row maximum, so logits of ±80 or more give finite results). Returns `(loss, dlogits)`:
/// `loss` of shape `[1]`, the mean over rows of `logsumexp(logits_i) - logits_i[label_i]`,
/// summed in a fixed order (bit-reproducible); `dlogits` `[n, classes]`, its gradient
/// `(softmax(logits) - onehot(labels)) / n`.
///
/// This eager call reads a 16-byte status word back (and so waits for the GPU) to check the
/// labels.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let logits = wgnn::Tensor::from_slice(&gpu, &[0.0, 0.0, 5.0, -5.0], &[2, 2])?;
/// let labels = wgnn::Tensor::from_u32(&gpu, &[1, 0], &[2])?;
/// let (loss, dlogits) = wgnn::ops::softmax_cross_entropy(&logits, &labels)?;
/// assert_eq!(dlogits.shape(), [2, 2]);
/// let want = (2f32.ln() + (1.0 + (-10f32).exp()).ln()) / 2.0;
/// assert!((loss.to_vec()?[0] - want).abs() < 1e-6);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `logits` is not a 2-D f32 tensor, `labels` is not u32 of shape `[n]`, or a label is
/// `>= classes` (naming the first such label and row).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let r = eager_loss("softmax_cross_entropy", logits, labels, true)?;
    let dlogits = r.dlogits.ok_or_else(|| Error::Gpu {
        op: "softmax_cross_entropy",
        msg: "no gradient tensor".into(),
    })?;
    Ok((r.loss, dlogits))
}

/// As [`softmax_cross_entropy`], without blocking (so in a browser too): the passes are
/// recorded and submitted now, and the status word that checks the labels is read back by a
/// future that never waits for the device (see [`Tensor::to_vec_async`]); the tensors come
/// once it has arrived. Same values as [`softmax_cross_entropy`], bit for bit.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let logits = wgnn::Tensor::from_slice(&gpu, &[0.0, 1.0, 5.0, -5.0, 2.0, 2.5], &[3, 2])?;
/// let labels = wgnn::Tensor::from_u32(&gpu, &[1, 0, 1], &[3])?;
/// let pending = wgnn::ops::softmax_cross_entropy_async(&logits, &labels);
/// // natively; `.await` in async code (a browser's `spawn_local`)
/// let (loss, dlogits) = pollster::block_on(pending)?;
/// let (want_loss, want_dlogits) = wgnn::ops::softmax_cross_entropy(&logits, &labels)?;
/// assert_eq!(loss.to_vec()?, want_loss.to_vec()?);
/// assert_eq!(dlogits.to_vec()?, want_dlogits.to_vec()?);
/// let bad = wgnn::Tensor::from_u32(&gpu, &[1, 2, 0], &[3])?;
/// let err = pollster::block_on(wgnn::ops::softmax_cross_entropy_async(&logits, &bad));
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     "softmax_cross_entropy_async: label 2 at row 1 is out of range for 2 classes"
/// );
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`softmax_cross_entropy`], given by the future.
pub fn softmax_cross_entropy_async(
    logits: &Tensor,
    labels: &Tensor,
) -> impl Future<Output = Result<(Tensor, Tensor)>> + 'static {
    let op = "softmax_cross_entropy_async";
    let recorded = record_loss(op, logits, labels, true);
    async move {
        let (run, status, cols) = recorded?;
        check_status(op, &status.to_vec_u32_async().await?, cols)?;
        let dlogits = run.dlogits.ok_or_else(|| Error::Gpu {
            op,
            msg: "no gradient tensor".into(),
        })?;
        Ok((run.loss, dlogits))
    }
}

/// The number of rows of `logits` (`[n, classes]`, f32) whose first maximum (the lowest
/// index among equal maxima) is at `labels[i]` (`[n]`, u32): a u32 tensor of shape `[1]`.
///
/// Like [`softmax_cross_entropy`], reads a 16-byte status word back to check the labels.
///
/// # Errors
/// As [`softmax_cross_entropy`].
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(eager_loss("accuracy", logits, labels, false)?.correct)
}

/// The softmax of each row of `logits` (`[n, classes]`, f32): `exp(x - max) / sum exp(x - max)`,
/// shape `[n, classes]`.
///
/// # Errors
/// When `logits` is not a 2-D f32 tensor.
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    let op = "softmax";
    let (rows, cols) = logits_dims(op, logits)?;
    let gpu = logits.gpu();
    let k = SoftmaxXent::get(gpu)?;
    let out = Tensor::empty(gpu, op, &[rows, cols], DType::F32)?;
    let params = uniform(
        gpu,
        op,
        &SoftmaxXentParams::new(rows as u32, cols as u32, 0),
    );
    let io = k
        .softmax_family
        .bind_eager(gpu, &[&params, logits.buffer(), out.buffer()]);
    gpu.submit_pass(op, |pass| k.record_softmax(pass, &io, rows as u32))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gpu;
    use crate::kernels::uniform;

    /// The executor's path: both passes recorded per batch with `FLAG_ACCUMULATE` into
    /// buffers zeroed once, read only at the end.
    #[test]
    fn softmax_xent_accumulate_mode_sums_batches_and_keeps_first_bad_row() -> Result<()> {
        let gpu = Gpu::software()?;
        let k = SoftmaxXent::get(&gpu)?;
        let classes = 3;
        let batches: [(&[f32], &[u32]); 3] = [
            (&[1.0, 2.0, 0.5, -1.0, 0.0, 3.0], &[1, 2]),
            (&[0.0, 0.0, 0.0, 4.0, -2.0, 1.0, 0.3, 0.2, 0.1], &[1, 7, 9]),
            (&[2.0, 1.0, 0.0], &[0]),
        ];
        let loss = Tensor::from_slice(&gpu, &[0.0], &[1])?;
        let correct = Tensor::from_u32(&gpu, &[0], &[1])?;
        let status = Tensor::from_u32(&gpu, &[0; STATUS_WORDS], &[STATUS_WORDS])?;
        let mut want_loss = 0.0;
        let mut want_correct = 0;
        for (i, &(l, y)) in batches.iter().enumerate() {
            let rows = y.len();
            let logits = Tensor::from_slice(&gpu, l, &[rows, classes])?;
            let labels = Tensor::from_u32(&gpu, y, &[rows])?;
            let dlogits = Tensor::empty(&gpu, "test", &[rows, classes], DType::F32)?;
            let row_stats = Tensor::empty(&gpu, "test", &[2 * rows], DType::F32)?;
            let p = SoftmaxXentParams::new(rows as u32, classes as u32, FLAG_ACCUMULATE);
            let params = uniform(&gpu, "test", &p);
            let io = k.family.bind(
                &gpu,
                &[
                    &params,
                    logits.buffer(),
                    dlogits.buffer(),
                    labels.buffer(),
                    row_stats.buffer(),
                    loss.buffer(),
                    correct.buffer(),
                    status.buffer(),
                ],
            );
            gpu.submit_pass("test", |pass| k.record_loss(pass, &io, rows as u32))?;
            if i != 1 {
                want_loss += crate::reference::softmax_cross_entropy(l, y, classes).0;
            }
            want_correct += crate::reference::accuracy(l, y, classes);
            // A bad row's gradient is softmax / rows, finite.
            let g = dlogits.to_vec()?;
            assert!(g.iter().all(|v| v.is_finite()), "batch {i}: {g:?}");
        }
        assert!(loss.to_vec()?[0].is_nan(), "a bad label makes the loss NaN");
        assert_eq!(correct.to_vec_u32()?, [want_correct]);
        assert_eq!(status.to_vec_u32()?, [2, 1, 7, 6]);
        assert_eq!(
            check_status("fit", &status.to_vec_u32()?, classes)
                .unwrap_err()
                .to_string(),
            "fit: label 7 at row 1 is out of range for 3 classes (2 rows have labels >= 3)"
        );
        // Without the bad batch the running loss is the sum of the batch means.
        let loss = Tensor::from_slice(&gpu, &[0.0], &[1])?;
        for &(l, y) in [batches[0], batches[2]].iter() {
            let rows = y.len();
            let logits = Tensor::from_slice(&gpu, l, &[rows, classes])?;
            let labels = Tensor::from_u32(&gpu, y, &[rows])?;
            let scratch = Tensor::empty(&gpu, "test", &[2 * rows], DType::F32)?;
            let out = Tensor::empty(&gpu, "test", &[1], DType::F32)?;
            let p =
                SoftmaxXentParams::new(rows as u32, classes as u32, FLAG_ACCUMULATE | FLAG_NO_GRAD);
            let params = uniform(&gpu, "test", &p);
            let io = k.family.bind(
                &gpu,
                &[
                    &params,
                    logits.buffer(),
                    out.buffer(),
                    labels.buffer(),
                    scratch.buffer(),
                    loss.buffer(),
                    correct.buffer(),
                    status.buffer(),
                ],
            );
            gpu.submit_pass("test", |pass| k.record_loss(pass, &io, rows as u32))?;
        }
        let got = f64::from(loss.to_vec()?[0]);
        assert!(
            (got - want_loss).abs() <= 1e-6 * want_loss,
            "{got} vs {want_loss}"
        );
        assert_eq!(status.to_vec_u32()?, [2, 1, 7, 9]);
        Ok(())
    }

    #[test]
    fn softmax_xent_status_messages() {
        let op = "softmax_cross_entropy";
        assert!(check_status(op, &[0, 0, 0, 5], 10).is_ok());
        assert_eq!(
            check_status(op, &[1, 3, 12, 5], 10)
                .unwrap_err()
                .to_string(),
            "softmax_cross_entropy: label 12 at row 3 is out of range for 10 classes"
        );
        assert_eq!(
            check_status(op, &[2, 0, 10, 5], 10)
                .unwrap_err()
                .to_string(),
            "softmax_cross_entropy: label 10 at row 0 is out of range for 10 classes (2 rows have labels >= 10)"
        );
    }
}
