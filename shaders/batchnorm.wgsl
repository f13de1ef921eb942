// batchnorm.wgsl: batch normalization over the last axis (Keras BatchNormalization, axis=-1).
// x is [rows, channels] row-major: NHWC flattened (rows = N*H*W) or [N, F] features.
//
// Statistics are deterministic and use no atomics and no workgroup memory, in two passes:
// rows are cut into chunks of `chunk` rows; one invocation per (chunk, channel group) reduces
// its chunk (partial pass), then one invocation per channel group combines the chunks in
// order (reduce pass). The chunking depends on the shape alone, so every adapter sums in the
// same order.
//
// Override ALIGNED (pipelines exist for both values): when channels % 4 == 0, a channel group
// is 4 consecutive channels read and written as one vec4, and the 4 elements of an x vec4
// share one vec4 of each per-channel vector. Otherwise a group is one channel: the same code
// runs on vec4s whose lanes 1..3 are ignored. Every buffer is an array of vec4 (buffers are
// padded to 16 bytes), read by component where a group is one channel.
//
// Entry points, by bind group layout (the layouts share binding numbers; no entry point uses
// globals of two layouts, which WGSL and naga allow):
//   layout P (params, px, pdy, pmean, pinv_std, partial):
//     batch_norm_partial_moments  per (chunk, group): chunk mean and the sum of squared
//                                 deviations from it, two passes over the chunk.
//     batch_norm_partial_grads    per (chunk, group): sum dy * xhat and sum dy.
//     partial holds value `which` (0 or 1) of chunk k, channel c at f32 index
//     (2 k + which) * channels + c.
//   layout R (params, rpartial, out_a, out_b):
//     batch_norm_reduce_moments   per group: Chan et al.'s pairwise combination of the chunk
//                                 moments; out_a = mean, out_b = 1 / sqrt(var + epsilon) with the
//                                 biased variance (divided by rows).
//     batch_norm_reduce_grads     per group: out_a = dgamma, out_b = dbeta (sums over chunks).
//   layout A (params, x, dy, gamma, shift, center, spread, dgamma, out), one invocation per 4
//   elements (the last vec4 may cover buffer padding, written but never read as data):
//     batch_norm_forward          y = (x - mean) * (inv_std * gamma) + beta
//                                 (shift = beta, center = mean, spread = inv_std).
//     batch_norm_inference        y = (x - moving_mean) * (gamma / sqrt(moving_var + eps)) + beta
//                                 (shift = beta, center = moving_mean, spread = moving_var).
//     batch_norm_backward         dx = gamma * inv_std * (dy - (dbeta + xhat * dgamma) / rows),
//                                 xhat = (x - mean) * inv_std
//                                 (shift = dbeta, center = mean, spread = inv_std).
//   layout M (params, mmean, minv_std, moving_mean, moving_var; 9 mstep, 10 mstatus),
//   scalar:
//     batch_norm_update_moving    per channel, Keras' update with the biased batch variance
//                                 var = 1 / inv_std^2 - epsilon (clamped at 0):
//                                 moving = moving * momentum + batch * (1 - momentum).
//                                 In a training step it runs with the optimizer updates,
//                                 after the non-finite checks, and changes nothing when they
//                                 do (the status word, as in optim.wgsl): a stopped run keeps
//                                 the moving statistics of the step before, like its weights.
// Params: BatchNormParams (uniform, binding 0 of every layout).
// Rust module: src/kernels/batchnorm.rs.

override ALIGNED: bool = false;

// Sums run over blocks of BLOCK terms added into a running total: f32 rounding error grows
// with BLOCK + terms / BLOCK instead of with the number of terms.
const BLOCK: u32 = 16u;

struct BatchNormParams {
    // Rows (N*H*W or N) and channels (the last axis).
    rows: u32,
    channels: u32,
    // Rows per chunk of the partial passes, and ceil(rows / chunk).
    chunk: u32,
    chunks: u32,
    // rows * channels.
    len: u32,
    epsilon: f32,
    // Keras' moving-average momentum (update_moving only).
    momentum: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: BatchNormParams;

// Layout P.
@group(0) @binding(1) var<storage, read> px: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pdy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> pmean: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pinv_std: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> partial: array<vec4<f32>>;

// Layout R.
@group(0) @binding(1) var<storage, read> rpartial: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out_a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out_b: array<vec4<f32>>;

// Layout A.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gamma: array<vec4<f32>>;
// beta (forward, inference) or dbeta (backward).
@group(0) @binding(4) var<storage, read> shift: array<vec4<f32>>;
// mean (forward, backward) or moving mean (inference).
@group(0) @binding(5) var<storage, read> center: array<vec4<f32>>;
// inv_std (forward, backward) or moving variance (inference).
@group(0) @binding(6) var<storage, read> spread: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> dgamma: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;

// Layout M.
@group(0) @binding(1) var<storage, read> mmean: array<f32>;
@group(0) @binding(2) var<storage, read> minv_std: array<f32>;
@group(0) @binding(3) var<storage, read_write> moving_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> moving_var: array<f32>;
// The step uniform (step.wgsl) and the status word of data.wgsl: eager calls bind zeros.
@group(0) @binding(9) var<uniform> mstep: Step;
@group(0) @binding(10) var<storage, read> mstatus: array<u32>;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// Channel groups per row: channels / 4 when ALIGNED, else channels.
fn groups() -> u32 {
    return select(params.channels, params.channels >> 2u, ALIGNED);
}

// Rows [r0, r1) of chunk k.
fn chunk_rows(k: u32) -> vec2<u32> {
    let r0 = k * params.chunk;
    return vec2<u32>(r0, min(r0 + params.chunk, params.rows));
}

// ---- Layout P and R helpers: item j of a [.., groups] array of channel groups.

fn px4(j: u32) -> vec4<f32> {
    if (ALIGNED) {
        return px[j];
    }
    return vec4<f32>(px[j >> 2u][j & 3u], 0.0, 0.0, 0.0);
}

fn pdy4(j: u32) -> vec4<f32> {
    if (ALIGNED) {
        return pdy[j];
    }
    return vec4<f32>(pdy[j >> 2u][j & 3u], 0.0, 0.0, 0.0);
}

fn pmean4(j: u32) -> vec4<f32> {
    if (ALIGNED) {
        return pmean[j];
    }
    return vec4<f32>(pmean[j >> 2u][j & 3u], 0.0, 0.0, 0.0);
}

fn pinv_std4(j: u32) -> vec4<f32> {
    if (ALIGNED) {
        return pinv_std[j];
    }
    return vec4<f32>(pinv_std[j >> 2u][j & 3u], 0.0, 0.0, 0.0);
}

fn store_partial(j: u32, v: vec4<f32>) {
    if (ALIGNED) {
        partial[j] = v;
    } else {
        partial[j >> 2u][j & 3u] = v.x;
    }
}

fn rpartial4(j: u32) -> vec4<f32> {
    if (ALIGNED) {
        return rpartial[j];
    }
    return vec4<f32>(rpartial[j >> 2u][j & 3u], 0.0, 0.0, 0.0);
}

fn store_a(j: u32, v: vec4<f32>) {
    if (ALIGNED) {
        out_a[j] = v;
    } else {
        out_a[j >> 2u][j & 3u] = v.x;
    }
}

fn store_b(j: u32, v: vec4<f32>) {
    if (ALIGNED) {
        out_b[j] = v;
    } else {
        out_b[j >> 2u][j & 3u] = v.x;
    }
}

@compute @workgroup_size(64)
fn batch_norm_partial_moments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    let gs = groups();
    if (t >= params.chunks * gs) {
        return;
    }
    let g = t % gs;
    let k = t / gs;
    let r = chunk_rows(k);
    var s = vec4<f32>(0.0);
    for (var i0 = r.x; i0 < r.y; i0 += BLOCK) {
        var b = vec4<f32>(0.0);
        for (var i = i0; i < min(i0 + BLOCK, r.y); i++) {
            b += px4(i * gs + g);
        }
        s += b;
    }
    let m = s / f32(r.y - r.x);
    var q = vec4<f32>(0.0);
    for (var i0 = r.x; i0 < r.y; i0 += BLOCK) {
        var b = vec4<f32>(0.0);
        for (var i = i0; i < min(i0 + BLOCK, r.y); i++) {
            let d = px4(i * gs + g) - m;
            b += d * d;
        }
        q += b;
    }
    store_partial(2u * k * gs + g, m);
    store_partial((2u * k + 1u) * gs + g, q);
}

@compute @workgroup_size(64)
fn batch_norm_partial_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    let gs = groups();
    if (t >= params.chunks * gs) {
        return;
    }
    let g = t % gs;
    let k = t / gs;
    let r = chunk_rows(k);
    let m = pmean4(g);
    // Sums of dy * (x - mean) and of dy.
    var s_dyx = vec4<f32>(0.0);
    var s_dy = vec4<f32>(0.0);
    for (var i0 = r.x; i0 < r.y; i0 += BLOCK) {
        var b_dyx = vec4<f32>(0.0);
        var b_dy = vec4<f32>(0.0);
        for (var i = i0; i < min(i0 + BLOCK, r.y); i++) {
            let e = i * gs + g;
            let d = pdy4(e);
            b_dyx += d * (px4(e) - m);
            b_dy += d;
        }
        s_dyx += b_dyx;
        s_dy += b_dy;
    }
    store_partial(2u * k * gs + g, s_dyx * pinv_std4(g));
    store_partial((2u * k + 1u) * gs + g, s_dy);
}

@compute @workgroup_size(64)
fn batch_norm_reduce_moments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = linear(gid, nwg);
    let gs = groups();
    if (g >= gs) {
        return;
    }
    var n_a = 0.0;
    var mean = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    for (var k = 0u; k < params.chunks; k++) {
        let r = chunk_rows(k);
        let n_b = f32(r.y - r.x);
        let n = n_a + n_b;
        let delta = rpartial4(2u * k * gs + g) - mean;
        let w_b = n_b / n;
        mean += delta * w_b;
        m2 += rpartial4((2u * k + 1u) * gs + g) + delta * delta * (n_a * w_b);
        n_a = n;
    }
    store_a(g, mean);
    store_b(g, inverseSqrt(m2 / f32(params.rows) + params.epsilon));
}

@compute @workgroup_size(64)
fn batch_norm_reduce_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = linear(gid, nwg);
    let gs = groups();
    if (g >= gs) {
        return;
    }
    var s_dyx = vec4<f32>(0.0);
    var s_dy = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.chunks; k0 += BLOCK) {
        var b_dyx = vec4<f32>(0.0);
        var b_dy = vec4<f32>(0.0);
        for (var k = k0; k < min(k0 + BLOCK, params.chunks); k++) {
            b_dyx += rpartial4(2u * k * gs + g);
            b_dy += rpartial4((2u * k + 1u) * gs + g);
        }
        s_dyx += b_dyx;
        s_dy += b_dy;
    }
    store_a(g, s_dyx);
    store_b(g, s_dy);
}

// ---- Layout A helpers.

fn blocks() -> u32 {
    return (params.len >> 2u) + select(0u, 1u, (params.len & 3u) != 0u);
}

// The channel after c.
fn next_channel(c: u32) -> u32 {
    return select(c + 1u, 0u, c + 1u == params.channels);
}

// The channels of the 4 elements of x vec4 number i (when ALIGNED, c.x is a multiple of 4
// and c.y..c.w follow it).
fn channels4(i: u32) -> vec4<u32> {
    let c0 = (4u * i) % params.channels;
    if (ALIGNED) {
        return vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
    }
    let c1 = next_channel(c0);
    let c2 = next_channel(c1);
    return vec4<u32>(c0, c1, c2, next_channel(c2));
}

// Per-channel values for channels c, one function per binding (WGSL cannot pass storage
// arrays to functions).
fn gamma4(c: vec4<u32>) -> vec4<f32> {
    if (ALIGNED) {
        return gamma[c.x >> 2u];
    }
    return vec4<f32>(gamma[c.x >> 2u][c.x & 3u], gamma[c.y >> 2u][c.y & 3u], gamma[c.z >> 2u][c.z & 3u], gamma[c.w >> 2u][c.w & 3u]);
}

fn shift4(c: vec4<u32>) -> vec4<f32> {
    if (ALIGNED) {
        return shift[c.x >> 2u];
    }
    return vec4<f32>(shift[c.x >> 2u][c.x & 3u], shift[c.y >> 2u][c.y & 3u], shift[c.z >> 2u][c.z & 3u], shift[c.w >> 2u][c.w & 3u]);
}

fn center4(c: vec4<u32>) -> vec4<f32> {
    if (ALIGNED) {
        return center[c.x >> 2u];
    }
    return vec4<f32>(center[c.x >> 2u][c.x & 3u], center[c.y >> 2u][c.y & 3u], center[c.z >> 2u][c.z & 3u], center[c.w >> 2u][c.w & 3u]);
}

fn spread4(c: vec4<u32>) -> vec4<f32> {
    if (ALIGNED) {
        return spread[c.x >> 2u];
    }
    return vec4<f32>(spread[c.x >> 2u][c.x & 3u], spread[c.y >> 2u][c.y & 3u], spread[c.z >> 2u][c.z & 3u], spread[c.w >> 2u][c.w & 3u]);
}

fn dgamma4(c: vec4<u32>) -> vec4<f32> {
    if (ALIGNED) {
        return dgamma[c.x >> 2u];
    }
    return vec4<f32>(dgamma[c.x >> 2u][c.x & 3u], dgamma[c.y >> 2u][c.y & 3u], dgamma[c.z >> 2u][c.z & 3u], dgamma[c.w >> 2u][c.w & 3u]);
}

@compute @workgroup_size(64)
fn batch_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= blocks()) {
        return;
    }
    let c = channels4(i);
    out[i] = (x[i] - center4(c)) * (spread4(c) * gamma4(c)) + shift4(c);
}

@compute @workgroup_size(64)
fn batch_norm_inference(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= blocks()) {
        return;
    }
    let c = channels4(i);
    let inv_std = inverseSqrt(spread4(c) + params.epsilon);
    out[i] = (x[i] - center4(c)) * (inv_std * gamma4(c)) + shift4(c);
}

@compute @workgroup_size(64)
fn batch_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= blocks()) {
        return;
    }
    let c = channels4(i);
    let inv_std = spread4(c);
    let xhat = (x[i] - center4(c)) * inv_std;
    let inv_rows = 1.0 / f32(params.rows);
    out[i] = gamma4(c) * inv_std * (dy[i] - (shift4(c) + xhat * dgamma4(c)) * inv_rows);
}

@compute @workgroup_size(64)
fn batch_norm_update_moving(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear(gid, nwg);
    let off = select(mstatus[0] != 0u, mstatus[3] == mstep.step + 1u, mstatus[2] != 0u);
    if (c >= params.channels || off) {
        return;
    }
    let s = minv_std[c];
    let var_b = max(1.0 / (s * s) - params.epsilon, 0.0);
    let mom = params.momentum;
    moving_mean[c] = moving_mean[c] * mom + mmean[c] * (1.0 - mom);
    moving_var[c] = moving_var[c] * mom + var_b * (1.0 - mom);
}
