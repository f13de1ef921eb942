// data.wgsl: the training data path on the GPU: batch gather from the resident u8 data set,
// and the per-epoch metric accumulators.
// Entry points: gather_forward (one invocation per 4 batch elements), metrics_accumulate
// (a single invocation), check_finite (one invocation per 4 gradient elements; bindings 0,
// 1, 10 and 14: grad, read).
// Bindings: 0 params: DataParams (uniform), 1 step: Step (uniform), 2 pixels (read; u8 packed
// four per u32, little-endian; the first chunk of samples, 11-13 the others), 3 labels (read; u8 packed), 4 perm (read; u32 sample indices),
// 5 x (write; f32 [rows, image_len]), 6 y (write; u32 [rows]), 7 loss (read; f32 [1]),
// 8 correct (read; u32 [1]), 9 acc (write; f32 [4]: loss sum, correct, samples, unused),
// 10 status (write; u32 [4]: first step + 1 whose loss was not finite, 0 while all are).
// gather_forward uses bindings 0-6 and 11-13 (8 storage buffers), metrics_accumulate 0, 1
// and 7-10: two layouts.
// Rust module: src/kernels/data.rs. Needs philox.wgsl prepended (for Step).

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

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7F800000u) != 0x7F800000u;
}

// acc += (loss * rows, correct, rows); status records the first step with a non-finite loss
// (status[1] = 0: the loss).
@compute @workgroup_size(1)
fn metrics_accumulate() {
    // The test hook replaces the step's loss by NaN (a NaN input would not do: ReLU's max
    // maps NaN to 0).
    let l = select(loss[0], bitcast<f32>(0x7FC00000u), step.poison == 1u);
    if (!finite(l)) {
        if (status[0] == 0u) {
            status[0] = step.step + 1u;
        }
        status[3] = step.step + 1u;
    }
    acc[0] += l * f32(params.rows);
    acc[1] += f32(correct[0]);
    acc[2] += f32(params.rows);
}

// Checks one gradient (params.rows elements) before any update of the step: the first
// non-finite value of the first bad step records (step + 1, params.image_len) in status,
// image_len carrying the parameter's index + 1. Every invocation that finds one writes the
// same two words, so the race is benign. With step.poison == 2 (a test hook) the gradient
// counts as non-finite.
@compute @workgroup_size(64)
fn check_finite(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.x + gid.y * nwg.x * 64u;
    let len = params.rows;
    if (b * 4u >= len) {
        return;
    }
    let v = grad[b];
    var bad = step.poison == 2u && b == 0u;
    for (var l = 0u; l < 4u; l++) {
        if (b * 4u + l < len && !finite(v[l])) {
            bad = true;
        }
    }
    if (bad) {
        if (status[0] == 0u) {
            status[0] = step.step + 1u;
            status[1] = params.image_len;
        }
        status[3] = step.step + 1u;
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
