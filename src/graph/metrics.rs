//! Loss, accuracy and the status word: the softmax cross-entropy of the logits, and the
//! accumulators a training or evaluation plan adds each step's results to on the GPU, read
//! back only when asked.

use crate::graph::instr::{Builder, Res, bytes};
use crate::kernels::data::{DataParams, LOSS_CODE};
use crate::kernels::rec::Rec;
use crate::kernels::softmax_xent::{FLAG_NO_GRAD, STATUS_WORDS, SoftmaxXentParams};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::tensor::Readback;
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

impl Reading {
    /// The reading of the accumulators `a` (f32 [4]) and status words `s` (u32 [4]).
    fn new(a: &[f32], s: &[u32]) -> Reading {
        let n = f64::from(a[2]).max(1.0);
        Reading {
            loss: f64::from(a[0]) / n,
            accuracy: f64::from(a[1]) / n,
            bad: s[0].checked_sub(1).map(|step| {
                let what = (s[1] != LOSS_CODE).then(|| (u32::MAX - 1 - s[1]) as usize);
                (step, what)
            }),
            skipped: a[3] as usize,
        }
    }

    /// The reading of a [`Metrics::request`] readback's two parts.
    fn from_parts(parts: &[Vec<u8>]) -> Reading {
        let word = |i: usize| -> Vec<u32> {
            parts
                .get(i)
                .map_or_else(|| vec![0; 4], |p| bytemuck::pod_collect_to_vec(p))
        };
        let a: Vec<f32> = word(0).into_iter().map(f32::from_bits).collect();
        Reading::new(&a, &word(1))
    }
}

/// A reading of the metrics in flight ([`Metrics::request`]): a future that never blocks,
/// or [`PendingReading::try_take`] once per frame.
pub(crate) struct PendingReading(Readback);

impl PendingReading {
    /// The reading once the GPU is done, `None` until then (polls the device once, without
    /// waiting).
    pub fn try_take(&mut self) -> Option<Result<Reading>> {
        self.0
            .try_take()
            .map(|r| r.map(|parts| Reading::from_parts(&parts)))
    }
}

impl Future for PendingReading {
    type Output = Result<Reading>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0)
            .poll(cx)
            .map(|r| r.map(|parts| Reading::from_parts(&parts)))
    }
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

    /// The accumulators, read back (blocking).
    pub fn read(&self) -> Result<Reading> {
        let a = self.acc.read_f32("Tensor::to_vec")?;
        let s = self.status.read_u32("Tensor::to_vec_u32")?;
        Ok(Reading::new(&a, &s))
    }

    /// Starts reading both accumulators back (one copy of each into one staging buffer, one
    /// mapping); never waits. The values are those after the work submitted so far.
    pub fn request(&self, op: &'static str) -> PendingReading {
        let gpu = self.acc.gpu();
        PendingReading(gpu.readback(
            op,
            &[
                (self.acc.buffer(), self.acc.len() as u64 * 4),
                (self.status.buffer(), self.status.len() as u64 * 4),
            ],
        ))
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
