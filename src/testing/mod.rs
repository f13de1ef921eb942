//! Test and bench scaffolding, compiled only with the `testing` feature (the crate's own tests,
//! examples and fuzzing turn it on through a self dev-dependency): not part of the supported API.
//!
//! [`Timed`] records kernels with buffers, uniforms and bind groups made once, so a timing
//! measures the kernels and nothing the eager [`crate::ops`] functions allocate per call.
//! [`matmul_with_tile`] runs one chosen matmul variant, so tests can check each of them.

use std::time::Instant;

mod kernels;
pub use kernels::{check_finite, gather_batch, philox_words, spin};
mod conv;
pub use conv::{
    ConvKernel, ConvPass, conv2d_runs_staged, conv2d_set_default_kernel, conv2d_staged_fits,
    conv2d_uses_subgroup, conv2d_with_kernel,
};

use crate::kernels::conv2d::{Conv2d, Conv2dDims, Conv2dPass};
use crate::kernels::dropout::{Dropout, DropoutParams};
use crate::kernels::elementwise::{Elementwise, ElementwiseParams, Pointwise};
use crate::kernels::matmul::{Epilogue, Matmul, MatmulParams};
use crate::kernels::rec::Rec;
use crate::kernels::{uniform, zero_status, zero_step};
use crate::ops::check_rate;
use crate::ops::{DropoutSpec, Padding};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

pub use crate::graph::plan::{BufferRole, RoleBytes};
pub use crate::kernels::matmul::{MatmulTile, TuneRecord};

/// The matmul variants `gpu` can run (largest first).
///
/// # Errors
/// When the kernel does not compile.
pub fn matmul_tiles(gpu: &Gpu) -> Result<Vec<MatmulTile>> {
    Ok(Matmul::get(gpu)?.tiles().to_vec())
}

/// Every shape the matmul autotuner timed on `gpu`, in order: how (timestamps or the wall
/// clock), each variant's median and the variant kept.
///
/// # Errors
/// When the kernel does not compile.
pub fn matmul_tunings(gpu: &Gpu) -> Result<Vec<TuneRecord>> {
    let kern = Matmul::get(gpu)?;
    Ok(kern.tune_log.lock().map(|l| l.clone()).unwrap_or_default())
}

/// The variant a model's plan uses for `op(a) op(b)` of `[m, k] x [k, n]` on `gpu`: the
/// autotuner's (timed now if this shape is new), or the static choice for shapes too large
/// to time.
///
/// # Errors
/// When the kernel does not compile, or the device is lost.
pub fn matmul_tile_for(
    gpu: &Gpu,
    trans: (bool, bool),
    m: usize,
    n: usize,
    k: usize,
) -> Result<MatmulTile> {
    crate::tune::matmul_tile(gpu, trans, (m as u32, n as u32, k as u32))
}

/// [`crate::ops::matmul`] and [`crate::ops::dense`] in one, with the register-tile variant
/// given: `dropout(act(op(a) op(b) + bias))`.
///
/// # Errors
/// As [`crate::ops::dense`], and when `tile` is not one of [`matmul_tiles`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_with_tile(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
    relu: bool,
    dropout: Option<DropoutSpec>,
    tile: MatmulTile,
) -> Result<Tensor> {
    let epi = Epilogue {
        bias: bias.is_some(),
        relu,
        dropout,
    };
    crate::ops::matmul::eager(
        "matmul",
        a,
        b,
        (trans_a, trans_b),
        bias,
        epi,
        Some(tile),
        None,
    )
}

/// `op(a) op(b)` with variant `tile` and the training step's non-finite check of every output
/// as it is stored (a weight gradient's), reporting `code` as step 0 to a status word that
/// starts as `initial`; returns the product and the status (`[first bad step + 1, code,
/// policy, last bad step + 1]`). For the tests.
///
/// # Errors
/// As [`crate::ops::matmul`], and when `tile` is not one of [`matmul_tiles`].
pub fn matmul_checked(
    a: &Tensor,
    b: &Tensor,
    trans: (bool, bool),
    tile: MatmulTile,
    code: u32,
    initial: [u32; 4],
) -> Result<(Tensor, [u32; 4])> {
    let status = Tensor::from_u32(a.gpu(), &initial, &[4])?;
    let c = crate::ops::matmul::eager(
        "matmul",
        a,
        b,
        trans,
        None,
        Epilogue::default(),
        Some(tile),
        Some((&status, code)),
    )?;
    let s = status.to_vec_u32()?;
    Ok((c, [s[0], s[1], s[2], s[3]]))
}

/// The bias gradient of `dy` with the training step's non-finite check of every sum, as
/// [`matmul_checked`]. For the tests.
///
/// # Errors
/// As [`crate::ops::bias_grad`].
pub fn bias_grad_checked(dy: &Tensor, code: u32, initial: [u32; 4]) -> Result<(Tensor, [u32; 4])> {
    let status = Tensor::from_u32(dy.gpu(), &initial, &[4])?;
    let out = crate::ops::reduce::eager(dy, Some((&status, code)))?;
    let s = status.to_vec_u32()?;
    Ok((out, [s[0], s[1], s[2], s[3]]))
}

/// Kernels recorded with prepared bind groups, timed as one compute pass.
pub struct Timed {
    gpu: Gpu,
    cmds: Vec<(Rec, wgpu::BindGroup)>,
    /// Uniforms the bind groups use (kept alive).
    _uniforms: Vec<wgpu::Buffer>,
    /// Scratch buffers the bind groups use.
    scratch: Vec<Tensor>,
    /// Append a dispatch that fails validation ([`Timed::with_invalid_dispatch`]).
    invalid: bool,
}

fn f32s(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        t.expect(DType::F32, op)?;
        ts[0].same_gpu(t, op)?;
    }
    Ok(())
}

fn same_len(op: &'static str, x: &Tensor, y: &Tensor) -> Result<u32> {
    if x.len() != y.len() {
        return Err(Error::shape(
            op,
            format!(
                "x and y differ in length (x {:?}, y {:?})",
                x.shape(),
                y.shape()
            ),
        ));
    }
    Ok(x.len() as u32)
}

impl Timed {
    fn one(gpu: &Gpu, cmd: Rec, bind: wgpu::BindGroup, u: wgpu::Buffer) -> Timed {
        Timed {
            gpu: gpu.clone(),
            cmds: vec![(cmd, bind)],
            _uniforms: vec![u],
            scratch: Vec::new(),
            invalid: false,
        }
    }

    /// `c = dropout(act(op(a) op(b) + bias))` into the existing `c` (`[m, n]`), with the
    /// variant wgnn would pick unless `tile` is given.
    ///
    /// # Errors
    /// When shapes do not fit or `tile` is not available.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        a: &Tensor,
        b: &Tensor,
        trans: (bool, bool),
        bias: Option<&Tensor>,
        relu: bool,
        dropout: Option<DropoutSpec>,
        c: &Tensor,
        tile: Option<MatmulTile>,
    ) -> Result<Timed> {
        let op = "matmul";
        f32s(op, &[a, b, c])?;
        let (m, k, n) = crate::ops::matmul::dims(op, a.shape(), b.shape(), trans.0, trans.1)?;
        if c.shape() != [m, n] {
            return Err(Error::shape(
                op,
                format!("c has shape {:?}, expected [{m}, {n}]", c.shape()),
            ));
        }
        if let Some(d) = dropout {
            check_rate(op, d.rate)?;
        }
        let gpu = a.gpu();
        let kern = Matmul::get(gpu)?;
        let (m, n, k) = (m as u32, n as u32, k as u32);
        let tile = match tile {
            Some(t) => t,
            None => crate::tune::matmul_tile(gpu, trans, (m, n, k))?,
        };
        if !kern.tiles().contains(&tile) {
            return Err(Error::arg(op, format!("tile {tile:?} is not available")));
        }
        kern.prepare_tile(gpu, trans, (m, n, k), tile)?;
        let epi = Epilogue {
            bias: bias.is_some(),
            relu,
            dropout,
        };
        let u = uniform(gpu, op, &MatmulParams::new(m, n, k, epi));
        let bias = bias.unwrap_or(a);
        let bind = kern.family.bind(
            gpu,
            &[
                &u,
                zero_step(gpu),
                a.buffer(),
                b.buffer(),
                bias.buffer(),
                c.buffer(),
                zero_status(gpu),
            ],
        );
        let cmd = Rec::Matmul {
            trans,
            mnk: [m, n, k],
            tile: Some(tile),
        };
        Ok(Timed::one(gpu, cmd, bind, u))
    }

    fn pointwise(
        op: &'static str,
        which: Pointwise,
        a: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        cols: u32,
    ) -> Result<Timed> {
        f32s(op, &[a, bias, y])?;
        let len = same_len(op, a, y)?;
        let gpu = a.gpu();
        let k = Elementwise::get(gpu)?;
        let u = uniform(
            gpu,
            op,
            &ElementwiseParams {
                len,
                cols,
                scale: 1.0,
                _pad: 0,
            },
        );
        let bind = k.family.bind(
            gpu,
            &[&u, a.buffer(), a.buffer(), bias.buffer(), y.buffer()],
        );
        Ok(Timed::one(gpu, Rec::Pointwise { which, len }, bind, u))
    }

    /// `y = x` (same length), the bandwidth yardstick.
    ///
    /// # Errors
    /// When the lengths differ or a tensor is not f32.
    pub fn copy(x: &Tensor, y: &Tensor) -> Result<Timed> {
        Timed::pointwise("copy", Pointwise::Copy, x, x, y, 1)
    }

    /// `y = max(x, 0)`.
    ///
    /// # Errors
    /// When the lengths differ or a tensor is not f32.
    pub fn relu(x: &Tensor, y: &Tensor) -> Result<Timed> {
        Timed::pointwise("relu", Pointwise::ReluForward, x, x, y, 1)
    }

    /// `y = x + b` over the last dimension of `x`.
    ///
    /// # Errors
    /// When the shapes do not fit or a tensor is not f32.
    pub fn bias_add(x: &Tensor, b: &Tensor, y: &Tensor) -> Result<Timed> {
        let cols = *x.shape().last().unwrap_or(&1);
        if b.shape() != [cols] {
            return Err(Error::shape(
                "bias_add",
                format!("bias has shape {:?}, expected [{cols}]", b.shape()),
            ));
        }
        Timed::pointwise("bias_add", Pointwise::BiasAdd, x, b, y, cols as u32)
    }

    /// Dropout forward (or, with `backward`, its gradient) of `x` into `y`.
    ///
    /// # Errors
    /// When the lengths differ, a tensor is not f32 or the rate is outside [0, 1].
    pub fn dropout(x: &Tensor, y: &Tensor, spec: DropoutSpec, backward: bool) -> Result<Timed> {
        let op = "dropout";
        f32s(op, &[x, y])?;
        check_rate(op, spec.rate)?;
        let len = same_len(op, x, y)?;
        let gpu = x.gpu();
        let k = Dropout::get(gpu)?;
        let u = uniform(gpu, op, &DropoutParams::new(len, spec));
        let bind = k
            .family
            .bind(gpu, &[&u, zero_step(gpu), x.buffer(), y.buffer()]);
        Ok(Timed::one(gpu, Rec::Dropout { backward, len }, bind, u))
    }

    /// One convolution pass of an NHWC input of `input_shape` and an HWIO kernel of
    /// `kernel_shape`, binding (a, b, out) as [`ConvPass`] says.
    ///
    /// # Errors
    /// When the shapes are not a valid convolution or the tensors do not have its shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        pass: ConvPass,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        input_shape: &[usize],
        kernel_shape: &[usize],
        stride: usize,
        padding: Padding,
    ) -> Result<Timed> {
        let op = "conv2d";
        f32s(op, &[a, b, out])?;
        let d = Conv2dDims::new(op, input_shape, kernel_shape, stride, padding)?;
        let (x, o, which) = match pass {
            ConvPass::Forward => (d.in_shape(), d.out_shape(), Conv2dPass::Forward),
            ConvPass::BackwardInput => (d.out_shape(), d.in_shape(), Conv2dPass::BackwardInput),
            ConvPass::BackwardWeight => {
                (d.in_shape(), d.kernel_shape(), Conv2dPass::BackwardWeight)
            }
        };
        if a.shape() != x || out.shape() != o {
            return Err(Error::shape(
                op,
                format!(
                    "{pass:?} binds a {:?} and out {:?}, expected {x:?} and {o:?}",
                    a.shape(),
                    out.shape()
                ),
            ));
        }
        let gpu = a.gpu();
        let k = Conv2d::get(gpu)?;
        let u = uniform(gpu, op, &d.params());
        if which == Conv2dPass::BackwardWeight && d.weight_splits() > 1 {
            // The split weight gradient: partial sums into a scratch, then their sum.
            let scratch = Tensor::zeros(gpu, &[d.weight_scratch_len()])?;
            let first = k
                .family
                .bind(gpu, &[&u, a.buffer(), b.buffer(), scratch.buffer()]);
            let second = k
                .family
                .bind(gpu, &[&u, scratch.buffer(), scratch.buffer(), out.buffer()]);
            let mut t = Timed::one(gpu, Rec::Conv(which, d), first, u);
            t.cmds.push((Rec::ConvWeightReduce(d), second));
            t.scratch.push(scratch);
            return Ok(t);
        }
        let bind = k
            .family
            .bind(gpu, &[&u, a.buffer(), b.buffer(), out.buffer()]);
        Ok(Timed::one(gpu, Rec::Conv(which, d), bind, u))
    }

    /// These kernels followed by `next`'s, in one pass.
    pub fn then(mut self, next: Timed) -> Timed {
        self.cmds.extend(next.cmds);
        self._uniforms.extend(next._uniforms);
        self.scratch.extend(next.scratch);
        self.invalid |= next.invalid;
        self
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let gpu = &self.gpu;
        for (cmd, io) in &self.cmds {
            cmd.record(gpu, pass, io)?;
        }
        Ok(())
    }

    /// Seconds per repetition of one submission that records the kernels `reps` times in
    /// one compute pass: from timestamps written at the pass's start and end where the
    /// adapter has `TIMESTAMP_QUERY` ([`uses_timestamps`]), else the wall clock around the
    /// submission and a blocking wait. Recording and submitting run inside a validation and
    /// out-of-memory error scope: an invalid dispatch is an `Err`, not a fast kernel.
    ///
    /// # Errors
    /// On validation errors, device errors or a timeout.
    pub fn time(&self, reps: u32) -> Result<f64> {
        let (gpu_secs, wall) = self.run(reps, uses_timestamps(&self.gpu))?;
        Ok(gpu_secs.unwrap_or(wall) / f64::from(reps.max(1)))
    }

    /// Seconds a caller waits for one submission that records the kernels once: the wall
    /// clock from the submit to the end of a blocking wait (no timestamps), inside the same
    /// error scope as [`Timed::time`].
    ///
    /// # Errors
    /// As [`Timed::time`].
    pub fn wall_once(&self) -> Result<f64> {
        Ok(self.run(1, false)?.1)
    }

    /// One submission of `reps` repetitions: (GPU seconds from timestamps when `timestamps`,
    /// wall seconds of submit + wait), the whole run.
    fn run(&self, reps: u32, timestamps: bool) -> Result<(Option<f64>, f64)> {
        let op = "bench";
        let gpu = &self.gpu;
        let d = gpu.device();
        gpu.check_alive(op)?;
        let queries = timestamps.then(|| {
            let set = d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.counted_buffer(&wgpu::BufferDescriptor {
                label: Some("bench resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        let (index, wall_start) = gpu.scoped(op, || -> Result<_> {
            let mut enc =
                d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            {
                let writes = queries
                    .as_ref()
                    .map(|(set, _)| wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(op),
                    timestamp_writes: writes,
                });
                for _ in 0..reps.max(1) {
                    self.record(&mut pass)?;
                }
                if self.invalid {
                    // The deliberate fault of `with_invalid_dispatch`: over the limit of
                    // 65,535 workgroups per dimension, with the last pipeline still set.
                    pass.dispatch_workgroups(u32::MAX, 1, 1);
                }
            }
            if let Some((set, resolve)) = &queries {
                enc.resolve_query_set(set, 0..2, resolve, 0);
            }
            let cmd = enc.finish();
            let start = Instant::now();
            Ok((gpu.submit(cmd), start))
        })??;
        gpu.wait(op, index)?;
        let wall = wall_start.elapsed().as_secs_f64();
        let secs = match &queries {
            Some((_, resolve)) => {
                let bytes = gpu.download(op, resolve, 16)?;
                let t: &[u64] = bytemuck::cast_slice(&bytes);
                let ns = t[1].saturating_sub(t[0]) as f64
                    * f64::from(gpu.queue().get_timestamp_period());
                Some(ns * 1e-9)
            }
            None => None,
        };
        Ok((secs, wall))
    }

    /// These kernels followed by a dispatch over the device's limits in the same pass, so
    /// that every timing of them fails validation: the bench's proof that an invalid dispatch
    /// stops the run ([`sabotaged`]).
    pub fn with_invalid_dispatch(mut self) -> Timed {
        self.invalid = true;
        self
    }

    /// The median of `samples` (at least 5) calls of [`Timed::time`], after one warm-up call.
    ///
    /// # Errors
    /// As [`Timed::time`].
    pub fn median(&self, reps: u32, samples: usize) -> Result<f64> {
        self.time(reps)?;
        let mut t = (0..samples.max(5))
            .map(|_| self.time(reps))
            .collect::<Result<Vec<f64>>>()?;
        t.sort_by(f64::total_cmp);
        Ok(t[t.len() / 2])
    }
}

/// Whether the environment variable `WGNN_BENCH_SABOTAGE` (a comma-separated list) names
/// `what`: the bench then breaks that kernel's result (or, for `validation`, its dispatch) on
/// purpose, to show that its checks fail the run. Exists only with the `testing` feature.
pub fn sabotaged(what: &str) -> bool {
    std::env::var("WGNN_BENCH_SABOTAGE").is_ok_and(|v| v.split(',').any(|w| w.trim() == what))
}

/// Overwrites element `index` of the f32 tensor `t` on the device with `value` (queued, as
/// any upload): a kernel's output broken after the fact, for [`sabotaged`] runs.
///
/// # Errors
/// When `t` is not f32 or `index` is out of range.
pub fn overwrite(t: &Tensor, index: usize, value: f32) -> Result<()> {
    t.expect(DType::F32, "overwrite")?;
    if index >= t.len() {
        return Err(Error::arg(
            "overwrite",
            format!("index {index} is outside the tensor's {} elements", t.len()),
        ));
    }
    t.gpu()
        .upload(t.buffer(), index as u64 * 4, bytemuck::bytes_of(&value));
    Ok(())
}

/// Runs `f` inside a validation and out-of-memory error scope on `gpu`, so that an invalid
/// command it records or submits is an `Err` naming `op` rather than a line on stderr (for
/// timing the public API, such as `Trainer::step`).
///
/// # Errors
/// What `f` returns, or the first validation or out-of-memory error it caused.
pub fn scoped<T>(gpu: &Gpu, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    gpu.scoped(op, f)?
}

/// Whether [`Timed::time`] reads GPU timestamps on `gpu` (else the wall clock).
pub fn uses_timestamps(gpu: &Gpu) -> bool {
    gpu.device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
}

/// Opens `adapter` as [`Gpu::open`] does but without 64-bit integers, so its kernels
/// compile the portable Philox multiply and subgroup matmul operand loads (tests compare the
/// two).
pub fn open_without_int64(adapter: &wgpu::Adapter) -> Result<Gpu> {
    Gpu::open_without(adapter, wgpu::Features::SHADER_INT64)
}

/// Opens `adapter` as [`Gpu::open`] does but without `TIMESTAMP_QUERY`, as a browser or
/// driver without timestamps would be: the async forms then keep the static matmul choice.
pub fn open_without_timestamps(adapter: &wgpu::Adapter) -> Result<Gpu> {
    Gpu::open_without(adapter, wgpu::Features::TIMESTAMP_QUERY)
}

/// An f32 tensor of `shape` allocated as every eager op allocates its output, with no kernel
/// run on it: what a kernel would find there before writing (an idle pooled buffer of the
/// same size if there is one; all-ones bits when outputs are poisoned).
///
/// # Errors
/// When the shape is empty or over the device's limits.
pub fn eager_output(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    Tensor::empty(gpu, "eager_output", shape, DType::F32)
}
