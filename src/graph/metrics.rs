//! Loss, accuracy and the status word: the softmax cross-entropy of the logits, and the
//! accumulators a training or evaluation plan adds each step's results to on the GPU, read
//! back only when asked.

use crate::graph::instr::{Builder, Res, bytes};
use crate::kernels::data::{DataParams, LOSS_CODE};
use crate::kernels::rec::Rec;
use crate::kernels::softmax_xent::{FLAG_NO_GRAD, STATUS_WORDS, SoftmaxXentParams};
use crate::{Gpu, Result, Tensor};

/// What the metric accumulators held.
pub(crate) struct Reading {
    /// Mean loss over the samples accumulated.
    pub loss: f64,
    /// Fraction of them classified right.
    pub accuracy: f64,
    /// The first step with a non-finite value, and what: `None` for the loss, else the
    /// parameter index whose gradient was not finite.
    pub bad: Option<(u32, Option<usize>)>,
    /// Steps skipped for non-finite values (skip mode).
    pub skipped: usize,
}

/// Persistent tensors a training or evaluation plan accumulates into.
pub(crate) struct Metrics {
    /// f32 [4]: loss sum, correct count, samples, unused.
    pub acc: Tensor,
    /// u32 [4]: the first step + 1 with a non-finite loss or gradient, what it was
    /// (`LOSS_CODE` or `finite_code(parameter)`), the policy (1 = skip), the last bad
    /// step + 1 (shaders/data.wgsl).
    pub status: Tensor,
    /// Skip steps with non-finite values (and count them) rather than stop updating.
    pub skip: bool,
}

impl Metrics {
    pub fn new(gpu: &Gpu, skip: bool) -> Result<Metrics> {
        Ok(Metrics {
            acc: Tensor::zeros(gpu, &[4])?,
            status: Tensor::from_u32(gpu, &[0, 0, u32::from(skip), 0], &[4])?,
            skip,
        })
    }

    /// The accumulators, read back in one go.
    pub fn read(&self) -> Result<Reading> {
        let a = self.acc.read_f32("Tensor::to_vec")?;
        let s = self.status.read_u32("Tensor::to_vec_u32")?;
        let n = f64::from(a[2]).max(1.0);
        Ok(Reading {
            loss: f64::from(a[0]) / n,
            accuracy: f64::from(a[1]) / n,
            bad: s[0].checked_sub(1).map(|step| {
                let what = (s[1] != LOSS_CODE).then(|| (u32::MAX - 1 - s[1]) as usize);
                (step, what)
            }),
            skipped: a[3] as usize,
        })
    }

    /// Zeroes the accumulators (recorded on the queue, no upload).
    pub fn reset(&self) {
        let gpu = self.acc.gpu();
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("metrics reset"),
            });
        enc.clear_buffer(self.acc.buffer(), 0, None);
        gpu.submit(enc.finish());
        // The policy word survives; the rest of the status is zeroed (16 bytes per epoch).
        gpu.upload(
            self.status.buffer(),
            0,
            bytemuck::cast_slice(&[0u32, 0, u32::from(self.skip), 0]),
        );
    }
}

/// The loss of `batch` rows of `classes` logits against `labels`, and (`train`) its
/// gradient, accumulated into `m`. Returns the gradient of the logits and the bindings of
/// the metrics kernel (the tally of skipped steps binds the same).
pub(super) fn loss(
    b: &mut Builder,
    m: &Metrics,
    [batch, classes, in_len]: [usize; 3],
    logits: Res,
    labels: usize,
    train: bool,
) -> (Res, Vec<Res>) {
    let rows = batch as u32;
    let dlogits = b.vbuf(batch * classes);
    let row_stats = b.vbuf(2 * batch);
    let (loss, correct, label_status) = (b.vbuf(1), b.vbuf(1), b.vbuf(STATUS_WORDS));
    let flags = if train { 0 } else { FLAG_NO_GRAD };
    b.push(
        Rec::SoftmaxLoss { rows },
        vec![
            bytes(&SoftmaxXentParams::new(rows, classes as u32, flags)),
            logits,
            Res::V(dlogits),
            Res::V(labels),
            Res::V(row_stats),
            Res::V(loss),
            Res::V(correct),
            Res::V(label_status),
        ],
    );
    let p = DataParams {
        rows,
        image_len: in_len as u32,
        scale: 1.0 / 255.0,
        per_chunk: 1,
    };
    let metric_binds = vec![
        bytes(&p),
        Res::Step,
        Res::V(loss),
        Res::V(correct),
        Res::T(m.acc.clone()),
        Res::T(m.status.clone()),
    ];
    b.push(Rec::Metrics, metric_binds.clone());
    (Res::V(dlogits), metric_binds)
}
