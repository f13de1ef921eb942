// data.wgsl: the training data path on the GPU: batch gather from the resident u8 data set,
// and the per-epoch metric accumulators.
// Entry points: gather_forward (one invocation per 4 batch elements), metrics_accumulate
// (a single invocation), check_finite (up to 6 gradients at once, by at most 4,096
// invocations that stride over them; bindings 0 as FiniteParams, 1, 10 as atomics, 14-19).
// Bindings: 0 params: DataParams (uniform), 1 step: Step (uniform), 2 pixels (read; u8 packed
// four per u32, little-endian; the first chunk of samples, 11-13 the others), 3 labels (read; u8 packed), 4 perm (read; u32 sample indices),
// 5 x (write; f32 [rows, image_len]), 6 y (write; u32 [rows]), 7 loss (read; f32 [1]),
// 8 correct (read; u32 [1]), 9 acc (write; f32 [4]: loss sum, correct, samples, unused),
// 10 status (write; u32 [4]: [0] the first step + 1 with a non-finite loss or gradient, 0
// while all are finite; [1] what it was: 0xFFFFFFFF the loss, 0xFFFFFFFE - p the gradient of
// parameter p; [2] the policy, 1 = skip bad steps; [3] the last bad step + 1).
// gather_forward uses bindings 0-6 and 11-13 (8 storage buffers), metrics_accumulate 0, 1
// and 7-10: two layouts.
// Rust module: src/kernels/data.rs. Joined after step.wgsl and finite.wgsl.

struct DataParams {
    rows: u32,
    image_len: u32,
    // Scale applied to each byte (1 / 255).
    scale: f32,
    // Samples per pixel chunk: sample s lives in chunk s / per_chunk (bindings 2, 11, 12, 13).
    per_chunk: u32,
}

@group(0) @binding(0) var<uniform> params: DataParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> pixels: array<u32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read> perm: array<u32>;
@group(0) @binding(5) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;
@group(0) @binding(7) var<storage, read> loss: array<f32>;
@group(0) @binding(8) var<storage, read> correct: array<u32>;
@group(0) @binding(9) var<storage, read_write> acc: array<f32>;
@group(0) @binding(10) var<storage, read_write> status: array<u32>;
@group(0) @binding(11) var<storage, read> pixels1: array<u32>;
@group(0) @binding(12) var<storage, read> pixels2: array<u32>;
@group(0) @binding(13) var<storage, read> pixels3: array<u32>;
@group(0) @binding(14) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read> grad1: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read> grad2: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> grad3: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> grad5: array<vec4<f32>>;

// check_finite's view of binding 0, and the atomic view of binding 10 (check_finite and
// metrics_accumulate, through report_non_finite); no entry point uses two views of one binding.
// Up to 6 gradients (bindings 14-19), segment k being binding 14 + k; unused segments have
// length 0 and bind segment 0's buffer again.
struct FiniteParams {
    // Elements in each segment (masks the padding of its last vec4).
    lens: array<vec4<u32>, 2>,
    // What status[1] records for a non-finite value in each segment: 0xFFFFFFFE - p for
    // parameter p, so that the largest code is the lowest parameter.
    codes: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> fparams: FiniteParams;
@group(0) @binding(10) var<storage, read_write> astatus: array<atomic<u32>>;

// Byte c of sample `sample`, from the chunk that holds it.
fn pixel(sample: u32, c: u32) -> f32 {
    let chunk = sample / params.per_chunk;
    let i = (sample - chunk * params.per_chunk) * params.image_len + c;
    var w: u32;
    switch chunk {
        case 0u: {
            w = pixels[i >> 2u];
        }
        case 1u: {
            w = pixels1[i >> 2u];
        }
        case 2u: {
            w = pixels2[i >> 2u];
        }
        default: {
            w = pixels3[i >> 2u];
        }
    }
    return f32((w >> ((i & 3u) * 8u)) & 0xFFu);
}

// x[r, c] = pixels[perm[batch_start + r], c] * scale; y[r] = labels[perm[batch_start + r]].
@compute @workgroup_size(64)
fn gather_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = gid.x + gid.y * nwg.x * 64u;
    let total = params.rows * params.image_len;
    let e0 = q * 4u;
    if (e0 >= total) {
        return;
    }
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        let e = e0 + l;
        if (e < total) {
            let r = e / params.image_len;
            let c = e - r * params.image_len;
            let sample = perm[step.batch_start + r];
            v[l] = pixel(sample, c) * params.scale;
            if (c == 0u) {
                y[r] = (labels[sample >> 2u] >> ((sample & 3u) * 8u)) & 0xFFu;
            }
        }
    }
    x[q] = v;
}

// acc += (loss * rows, correct, rows); status records the first step with a non-finite loss
// (status[1] = 0xFFFFFFFF: the loss).
@compute @workgroup_size(1)
fn metrics_accumulate() {
    // The test hook replaces the step's loss by NaN (a NaN input would not do: ReLU's max
    // maps NaN to 0). The NaN is made at run time (`| (step.step & 0u)`): a constant NaN is
    // a shader-creation error in WGSL, which Tint (Chromium's WebGPU) enforces.
    let nan = bitcast<f32>(0x7FC00000u | (step.step & 0u));
    let l = select(loss[0], nan, test_poison(POISON_LOSS));
    if (!all_finite(vec4<f32>(l))) {
        report_non_finite(0xFFFFFFFFu);
    }
    acc[0] += l * f32(params.rows);
    acc[1] += f32(correct[0]);
    acc[2] += f32(params.rows);
}

// Checks up to 6 gradients, those no gradient kernel checked as it stored them, before any
// update of the step (report_non_finite and the test hook: shaders/finite.wgsl).
fn seg_len(k: u32) -> u32 {
    return fparams.lens[k >> 2u][k & 3u];
}

// Segment 0 (grad): whether any of its values this invocation strides over is not finite.
fn scan0(t: u32, threads: u32) -> bool {
    let n = seg_len(0u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// Segment 1 (grad1): whether any of its values this invocation strides over is not finite.
fn scan1(t: u32, threads: u32) -> bool {
    let n = seg_len(1u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad1[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad1[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// Segment 2 (grad2): whether any of its values this invocation strides over is not finite.
fn scan2(t: u32, threads: u32) -> bool {
    let n = seg_len(2u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad2[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad2[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// Segment 3 (grad3): whether any of its values this invocation strides over is not finite.
fn scan3(t: u32, threads: u32) -> bool {
    let n = seg_len(3u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad3[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad3[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// Segment 4 (grad4): whether any of its values this invocation strides over is not finite.
fn scan4(t: u32, threads: u32) -> bool {
    let n = seg_len(4u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad4[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad4[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// Segment 5 (grad5): whether any of its values this invocation strides over is not finite.
fn scan5(t: u32, threads: u32) -> bool {
    let n = seg_len(5u);
    let last = (n + 3u) / 4u;
    var bad = false;
    for (var i = t; i + 1u < last; i += threads) {
        bad = bad || !all_finite(grad5[i]);
    }
    // The last vec4, whose lanes past n are padding.
    if (last > 0u && (last - 1u) % threads == t) {
        bad = bad || !lanes_finite(grad5[last - 1u], n - 4u * (last - 1u));
    }
    return bad || (test_poison(POISON_GRADIENT) && t == 0u && n > 0u);
}

// One loop per binding (WGSL cannot index bindings), each striding over its segment: the
// dispatch is capped at a few thousand invocations, as per-workgroup overhead, not
// bandwidth, is what costs on lavapipe. Unused segments have length 0.
@compute @workgroup_size(64)
fn check_finite(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads = nwg.x * nwg.y * 64u;
    let t = gid.x + gid.y * nwg.x * 64u;
    var bad = array<bool, 6>(
        scan0(t, threads),
        scan1(t, threads),
        scan2(t, threads),
        scan3(t, threads),
        scan4(t, threads),
        scan5(t, threads),
    );
    var code = 0u;
    var any_bad = false;
    for (var k = 0u; k < 6u; k++) {
        if (bad[k]) {
            code = max(code, fparams.codes[k >> 2u][k & 3u]);
            any_bad = true;
        }
    }
    if (any_bad) {
        report_non_finite(code);
    }
}

// After the checks of a step in skip mode: counts the step in acc[3] if it was bad.
@compute @workgroup_size(1)
fn tally_skipped() {
    if (status[3] == step.step + 1u) {
        acc[3] += 1.0;
    }
}

// A test kernel that runs for a while: params.image_len workgroups of 64 invocations, each
// params.rows iterations of a dependent chaotic map (from params.scale and its index); x[0]
// gets invocation 0's value, any other invocation writes only on an impossible value, so no
// work can be dropped. For the tests of wait timeouts (bindings 0 and 5).
@compute @workgroup_size(64)
fn spin(@builtin(global_invocation_id) gid: vec3<u32>) {
    var a = fract(params.scale + f32(gid.x) * 1e-5);
    for (var i = 0u; i < params.rows; i++) {
        a = fract(a * 1.618034 + 0.31830987);
    }
    if (gid.x == 0u || a > 2.0) {
        x[0] = vec4<f32>(a);
    }
}
