//! Materialisation: each virtual buffer gets a physical one by lifetime (first to last
//! instruction that binds it), reusing buffers whose last use has passed; every matmul tile,
//! uniform and bind group is made here, once, so a step allocates nothing.

use std::sync::Arc;

use crate::graph::instr::{Builder, Res};
use crate::graph::plan::{BufferRole, Tuning};
use crate::kernels::matmul::Matmul;
use crate::kernels::rec::Rec;
use crate::kernels::step::Step;
use crate::kernels::uniform;
use crate::tensor::Buf;
use crate::{Error, Gpu, Result};

/// A plan's instructions made real.
pub(super) struct Materialized {
    /// The dispatches with their bind groups.
    pub cmds: Vec<(Rec, wgpu::BindGroup)>,
    /// Per virtual buffer: (physical index, buffer).
    pub physical: Vec<(usize, Arc<Buf>)>,
    /// The step uniform every `Res::Step` binds.
    pub step: wgpu::Buffer,
    /// Every buffer made here, with its role: the pool's (activations, their gradients and
    /// the loss scratch, reused by lifetime) and the uniforms (parameters and the step's).
    pub roles: Vec<(BufferRole, wgpu::Buffer)>,
    /// The buffers of the tensors and data sets the bind groups use, kept alive with them: a
    /// tensor's buffer goes back to the pool when its last holder drops.
    pub bound: Vec<Arc<Buf>>,
}

impl Materialized {
    /// The physical buffer of virtual buffer `v`.
    pub fn physical_of(&self, op: &'static str, v: usize) -> Result<Arc<Buf>> {
        self.physical
            .get(v)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::internal(op, format!("virtual buffer {v} without storage")))
    }
}

/// Gives each virtual buffer a physical one, reusing buffers whose last use has passed, and
/// makes every uniform and bind group. Errors name `op`, the public call.
pub(super) fn materialize(
    gpu: &Gpu,
    op: &'static str,
    b: Builder,
    tuning: Tuning,
) -> Result<Materialized> {
    let n = b.vlen.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, ins) in b.instrs.iter().enumerate() {
        for r in &ins.binds {
            if let Res::V(v) = r {
                first[*v] = first[*v].min(i);
                last[*v] = last[*v].max(i);
            }
        }
    }
    // Physical pool: (elements, buffer, free).
    let mut pool: Vec<(usize, Arc<Buf>, bool)> = Vec::new();
    let mut assign: Vec<Option<usize>> = vec![None; n];
    for i in 0..b.instrs.len() {
        for v in 0..n {
            if first[v] == i {
                let best = pool
                    .iter()
                    .enumerate()
                    .filter(|(_, (len, _, free))| *free && *len >= b.vlen[v])
                    .min_by_key(|(_, (len, _, _))| *len)
                    .map(|(j, _)| j);
                let j = match best {
                    Some(j) => j,
                    None => {
                        let buf = gpu.storage(op, "wgnn activation", b.vlen[v] as u64 * 4)?;
                        pool.push((b.vlen[v], buf, true));
                        pool.len() - 1
                    }
                };
                pool[j].2 = false;
                assign[v] = Some(j);
            }
        }
        for v in 0..n {
            if last[v] == i
                && first[v] != usize::MAX
                && let Some(j) = assign[v]
            {
                pool[j].2 = true;
            }
        }
    }
    let step = uniform(gpu, "wgnn step", &Step::default());
    let mut roles: Vec<(BufferRole, wgpu::Buffer)> = pool
        .iter()
        .map(|(_, buf, _)| (BufferRole::Activation, buf.buffer.clone()))
        .collect();
    roles.push((BufferRole::Uniform, step.clone()));
    let mut cmds = Vec::with_capacity(b.instrs.len());
    let mut bound: Vec<Arc<Buf>> = Vec::new();
    for ins in &b.instrs {
        let mut rec = ins.rec;
        // The matmul variant is chosen once, here (autotuned and compiled), not per step.
        if let Rec::Matmul {
            trans,
            mnk: [m, n, k],
            tile,
        } = &mut rec
        {
            let mm = Matmul::get(gpu)?;
            let t = match tuning {
                Tuning::TimeNow => crate::tune::matmul_tile(gpu, *trans, (*m, *n, *k))?,
                Tuning::Chosen => crate::tune::matmul_pick(gpu, mm, *trans, (*m, *n, *k)),
            };
            mm.prepare_tile(gpu, *trans, (*m, *n, *k), t)?;
            *tile = Some(t);
        }
        let fam = rec.family(gpu)?;
        let mut uniforms = Vec::new();
        for r in &ins.binds {
            if let Res::Uniform(bytes) = r {
                let u = gpu.counted_buffer_with("wgnn params", wgpu::BufferUsages::UNIFORM, bytes);
                roles.push((BufferRole::Uniform, u.clone()));
                uniforms.push(u);
            }
        }
        for r in &ins.binds {
            match r {
                Res::T(t) => bound.push(t.buf.clone()),
                Res::B(buf) => bound.push(buf.clone()),
                _ => {}
            }
        }
        let mut ui = 0;
        let mut refs: Vec<&wgpu::Buffer> = Vec::with_capacity(ins.binds.len());
        for r in &ins.binds {
            refs.push(match r {
                Res::V(v) => {
                    let j = assign[*v].ok_or_else(|| {
                        Error::internal(op, format!("virtual buffer {v} is bound but unassigned"))
                    })?;
                    &pool[j].1.buffer
                }
                Res::T(t) => t.buffer(),
                Res::Step => &step,
                Res::ZeroStatus => crate::kernels::zero_status(gpu),
                Res::B(buf) => &buf.buffer,
                Res::Uniform(_) => {
                    ui += 1;
                    &uniforms[ui - 1]
                }
            });
        }
        cmds.push((rec, gpu.scoped(op, || fam.bind(gpu, &refs))?));
    }
    let physical = (0..n)
        .map(|v| {
            let j = assign[v].unwrap_or(0);
            (j, pool[j].1.clone())
        })
        .collect();
    Ok(Materialized {
        cmds,
        physical,
        step,
        roles,
        bound,
    })
}
