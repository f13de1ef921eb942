//! After the backward pass: every gradient checked for non-finite values, then the optimizer
//! updates and the BatchNorm moving averages, which all read the status word, so one bad
//! value holds back every change of the step.

use crate::graph::ParamId;
use crate::graph::backward::Gradients;
use crate::graph::instr::{Builder, Res, bytes};
use crate::graph::metrics::Metrics;
use crate::graph::plan::ParamRefs;
use crate::kernels::batchnorm::BatchNormParams;
use crate::kernels::data::{FINITE_SEGMENTS, FiniteParams};
use crate::kernels::optim::OptimParams;
use crate::kernels::rec::{BnPass, Rec};
use crate::spec::{Adam, Sgd, Update};

/// Appends, when a backward pass ran (`grads`), the non-finite checks of the gradients their
/// kernels did not check, the tally of skipped steps (`tally`: the metrics kernel's bindings,
/// in skip mode) and the optimizer update of every parameter with a gradient; then the
/// `moving` BatchNorm updates.
pub(super) fn updates(
    b: &mut Builder,
    params: &ParamRefs<'_>,
    metrics: &Metrics,
    grads: Option<Gradients>,
    tally: Option<Vec<Res>>,
    moving: Vec<(BatchNormParams, [Res; 4])>,
) {
    if let Some(grads) = grads {
        checks_and_steps(b, params, metrics, grads, tally);
    }
    for (p, [bm, bs, mean, var]) in moving {
        b.push(
            Rec::Bn(BnPass::UpdateMoving, p),
            vec![
                bytes(&p),
                bm,
                bs,
                mean,
                var,
                Res::Step,
                Res::T(metrics.status.clone()),
            ],
        );
    }
}

fn checks_and_steps(
    b: &mut Builder,
    params: &ParamRefs<'_>,
    metrics: &Metrics,
    grads: Gradients,
    tally: Option<Vec<Res>>,
) {
    let mut updated = grads.updated;
    updated.sort_unstable();
    // Every gradient is checked before any parameter moves: a non-finite one stops all
    // updates from this step on (the optimizer kernels read the status word). Those not
    // checked by the kernel that produced them are read again here, up to FINITE_SEGMENTS
    // per dispatch (none for an MLP).
    let rest: Vec<ParamId> = if params.checks {
        updated
            .iter()
            .copied()
            .filter(|p| !grads.checked.contains(p))
            .collect()
    } else {
        Vec::new()
    };
    for group in rest.chunks(FINITE_SEGMENTS) {
        let segments: Vec<(u32, usize)> = group
            .iter()
            .map(|&p| (params.values[p].len() as u32, p))
            .collect();
        let (u, vec4s) = FiniteParams::new(&segments);
        let mut binds = vec![bytes(&u), Res::Step, Res::T(metrics.status.clone())];
        for k in 0..FINITE_SEGMENTS {
            // Unused segments are empty; they bind the first gradient again.
            let p = group.get(k).unwrap_or(&group[0]);
            binds.push(Res::T(params.grads[*p].clone()));
        }
        b.push(Rec::CheckFinite { vec4s }, binds);
    }
    if let Some(binds) = tally {
        b.push(Rec::Tally, binds);
    }
    for p in updated {
        optimizer_update(b, params, metrics, p);
    }
}

/// One parameter's optimizer step, with its layer's L2 factor as the weight decay.
fn optimizer_update(b: &mut Builder, params: &ParamRefs<'_>, metrics: &Metrics, p: ParamId) {
    let len = params.values[p].len() as u32;
    let value = Res::T(params.values[p].clone());
    let grad = Res::T(params.grads[p].clone());
    let state = &params.state[p];
    let status = Res::T(metrics.status.clone());
    match params.update {
        Update::Sgd(sgd) => {
            let u = OptimParams::sgd(
                len,
                &Sgd {
                    weight_decay: params.l2[p],
                    ..sgd
                },
            );
            b.push(
                Rec::Sgd { len },
                vec![
                    bytes(&u),
                    grad,
                    value,
                    Res::T(state[0].clone()),
                    Res::Step,
                    status,
                ],
            );
        }
        Update::Adam(adam) => {
            let u = OptimParams::adam(
                len,
                &Adam {
                    weight_decay: params.l2[p],
                    ..adam
                },
                1,
            );
            b.push(
                Rec::Adam { len },
                vec![
                    bytes(&u),
                    grad,
                    value,
                    Res::T(state[0].clone()),
                    Res::T(state[1].clone()),
                    Res::Step,
                    status,
                ],
            );
        }
    }
}
