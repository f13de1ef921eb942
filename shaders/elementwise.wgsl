// elementwise.wgsl: ReLU forward and backward, the fused dense layer's backward from its
// output, and bias addition. One invocation per 4 vec4 (16 elements); buffers are padded to
// 16 bytes, so the last vec4 may cover padding, which is written but never read as data.
// Entry points: relu_forward, relu_backward, relu_dropout_backward, bias_add, copy (the
// bench's bandwidth yardstick).
// Bindings: 0 params: ElementwiseParams (uniform), 1 a (read, vec4), 2 b (read, vec4),
// 3 bias (read, f32), 4 out (write, vec4). Rust module: src/kernels/elementwise.rs.

struct ElementwiseParams {
    len: u32,
    // Length of the last dimension, for bias_add.
    cols: u32,
    // Multiplier of kept gradients in relu_dropout_backward (1 / (1 - p)).
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ElementwiseParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// Vec4s per invocation: lavapipe pays for every workgroup, and four per invocation made the
// copy kernel about 2x faster than one.
const PER: u32 = 4u;

fn block(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (gid.x + gid.y * nwg.x * 64u) * PER;
}

fn blocks() -> u32 {
    return (params.len >> 2u) + select(0u, 1u, (params.len & 3u) != 0u);
}

// out = max(a, 0).
@compute @workgroup_size(64)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = block(gid, nwg);
    let n = min(blocks(), i0 + PER);
    for (var i = i0; i < n; i++) {
        out[i] = max(a[i], vec4<f32>(0.0));
    }
}

// out = b where a > 0, else 0 (a: the ReLU's input x, b: dy).
@compute @workgroup_size(64)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = block(gid, nwg);
    let n = min(blocks(), i0 + PER);
    for (var i = i0; i < n; i++) {
        out[i] = select(vec4<f32>(0.0), b[i], a[i] > vec4<f32>(0.0));
    }
}

// The backward of y = dropout(relu(z)) from y alone (a: y, b: dy): y > 0 exactly where the
// element was kept and the ReLU was active, so dz = dy * scale there and 0 elsewhere.
@compute @workgroup_size(64)
fn relu_dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = block(gid, nwg);
    let n = min(blocks(), i0 + PER);
    for (var i = i0; i < n; i++) {
        out[i] = select(vec4<f32>(0.0), b[i] * params.scale, a[i] > vec4<f32>(0.0));
    }
}

// out = a + bias broadcast over the last dimension (cols).
@compute @workgroup_size(64)
fn bias_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = block(gid, nwg);
    let n = min(blocks(), i0 + PER);
    let c = params.cols;
    for (var i = i0; i < n; i++) {
        let e = 4u * i;
        let bv = vec4<f32>(bias[e % c], bias[(e + 1u) % c], bias[(e + 2u) % c], bias[(e + 3u) % c]);
        out[i] = a[i] + bv;
    }
}

// out = a: the plainest kernel that reads and writes every element once (8 bytes each), the
// bandwidth the bench holds dropout to.
@compute @workgroup_size(64)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = block(gid, nwg);
    let n = min(blocks(), i0 + PER);
    for (var i = i0; i < n; i++) {
        out[i] = a[i];
    }
}
