// optim.wgsl: optimizer updates, each one kernel over a parameter and its gradient, updating
// the parameter and the optimizer state in place. One invocation per 4 elements (vec4);
// buffers are padded to 16 bytes, so the last vec4 may cover padding, which is updated but
// never read as data.
//
// L2 weight decay is Keras' kernel_regularizer=l2(wd): the loss gains wd * sum(w^2), so the
// gradient used is g' = g + decay * w with decay = 2 * wd (computed on the host).
//
// Entry points:
//   sgd_update   v = momentum * v - lr * g'; w = w + v (momentum 0: w = w - lr * g', and the
//                velocity is neither read nor written). Bindings 0..3.
//   adam_update  m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//                w = w - lr_t * m / (sqrt(v) + eps_hat). Bindings 0..4.
// Bindings: 0 params: OptimParams (uniform), 1 grad (read, vec4), 2 param (read_write, vec4),
// 3 state1 (read_write, vec4: SGD velocity or Adam m), 4 state2 (read_write, vec4: Adam v),
// 5 step: Step (uniform), 6 status (read, u32 [4]).
// Rust module: src/kernels/optim.rs (two bind group layouts: SGD uses bindings 0-3, 5, 6;
// Adam 0-6). Joined after step.wgsl.
// Adam's step is t = t0 + step.step: eager calls pass t in t0 and bind step 0; the executor
// passes t0 = 1 and moves step.step, so its one per-step write also moves Adam's bias
// correction. The executor's metrics pass and gradient checks record non-finite values in
// status (see blocked()): the updates then change nothing, so the weights stay those of the
// step before.

struct OptimParams {
    // Number of elements.
    len: u32,
    // SGD learning rate.
    lr: f32,
    // SGD momentum in [0, 1).
    momentum: f32,
    // 2 * weight_decay: the gradient of weight_decay * sum(w^2) is decay * w.
    decay: f32,
    // Adam beta1 and beta2, in [0, 1).
    beta1: f32,
    beta2: f32,
    // Adam step t, less the step uniform's step (see above).
    t0: u32,
    // Adam epsilon added to sqrt(v) at this step (Keras: epsilon itself).
    eps_hat: f32,
}

@group(0) @binding(0) var<uniform> params: OptimParams;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> state1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state2: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read> status: array<u32>;

// Whether this step's updates are off: with status[2] == 0 (stop on non-finite values) once
// any step was bad (status[0] != 0); with status[2] != 0 (skip bad steps) when this step is
// (status[3] == step + 1). Eager calls bind zeros.
fn blocked() -> bool {
    return select(status[0] != 0u, status[3] == step.step + 1u, status[2] != 0u);
}

fn block(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn blocks() -> u32 {
    return (params.len >> 2u) + select(0u, 1u, (params.len & 3u) != 0u);
}

@compute @workgroup_size(64)
fn sgd_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = block(gid, nwg);
    if (i >= blocks() || blocked()) {
        return;
    }
    let w = param[i];
    let g = grad[i] + params.decay * w;
    if (params.momentum == 0.0) {
        param[i] = w - params.lr * g;
    } else {
        let v = params.momentum * state1[i] - params.lr * g;
        state1[i] = v;
        param[i] = w + v;
    }
}

@compute @workgroup_size(64)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = block(gid, nwg);
    if (i >= blocks() || blocked()) {
        return;
    }
    // Bias correction in f32 on the GPU: lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    let t = f32(params.t0 + step.step);
    let p1 = select(pow(params.beta1, t), 0.0, params.beta1 == 0.0);
    let p2 = select(pow(params.beta2, t), 0.0, params.beta2 == 0.0);
    let lr_t = params.lr * sqrt(1.0 - p2) / (1.0 - p1);
    let w = param[i];
    let g = grad[i] + params.decay * w;
    let m = params.beta1 * state1[i] + (1.0 - params.beta1) * g;
    let v = params.beta2 * state2[i] + (1.0 - params.beta2) * (g * g);
    state1[i] = m;
    state2[i] = v;
    param[i] = w - lr_t * m / (sqrt(v) + params.eps_hat);
}
