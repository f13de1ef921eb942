// reduce.wgsl: sums over the rows of a matrix (the bias gradient).
// Entry points: bias_grad (one invocation per column, loops over rows), bias_grad_vec4 (for
// cols % 4 == 0: one invocation per four columns, vec4 loads and stores). Both add the rows
// in order, so the sums are the same bits. With params.check != 0 (a bias gradient in a
// training step) a non-finite sum is reported with that code to the training status
// (shaders/finite.wgsl), so the gradient need not be read again to be checked.
// Bindings: 0 params: ReduceParams (uniform), 1 x (read), 2 out (write), both declared as
// vec4 arrays (tensor buffers are padded to 16 bytes), 3 step: Step (uniform), 4 status
// (atomic u32 [4]; written only with params.check != 0).
// Rust module: src/kernels/reduce.rs. Joined after step.wgsl and finite.wgsl.

struct ReduceParams {
    rows: u32,
    cols: u32,
    // 0, or the status code (finite.wgsl) a non-finite sum reports.
    check: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<storage, read_write> astatus: array<atomic<u32>>;

// The check of `used` sums of invocation `index` (0 holds element 0, for the test hook).
fn check_sums(s: vec4<f32>, used: u32, index: u32) {
    if (params.check != 0u && (!lanes_finite(s, used) || (test_poison(POISON_GRADIENT) && index == 0u))) {
        report_non_finite(params.check);
    }
}

// out[j] = sum over i of x[i, j], x being [rows, cols].
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * 64u;
    if (j >= params.cols) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < params.rows; i++) {
        let e = i * params.cols + j;
        s += x[e >> 2u][e & 3u];
    }
    out[j >> 2u][j & 3u] = s;
    check_sums(vec4<f32>(s), 1u, j);
}

// As bias_grad for four columns 4q .. 4q + 3 at once (cols % 4 == 0).
@compute @workgroup_size(64)
fn bias_grad_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = gid.x + gid.y * nwg.x * 64u;
    let c4 = params.cols / 4u;
    if (q >= c4) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < params.rows; i++) {
        s += x[i * c4 + q];
    }
    out[q] = s;
    check_sums(s, 4u, q);
}
