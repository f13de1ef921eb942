// dropout.wgsl: inverted dropout, forward and backward, with the mask drawn from Philox.
// Entry points: dropout_forward, dropout_backward (one invocation per 4 vec4 = 16 elements;
// each vec4 takes all four words of one Philox call).
// Bindings: 0 params: DropoutParams (uniform), 1 step: Step (uniform), 2 x (read), 3 y (write).
// Rust module: src/kernels/dropout.rs. Joined after step.wgsl, philox.wgsl (and its mulhilo)
// and dropout_mask.wgsl.
// No mask is stored: the backward regenerates the keep bits from (seed, offset, index).

struct DropoutParams {
    mask: DropoutMask,
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: DropoutParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

// Blocks per invocation: four independent Philox calls give the CPU (lavapipe) instruction-
// level parallelism to hide the multiplies' latency, and a quarter of the workgroups
// (lavapipe pays for each one); measured about 1.25x faster than one block per invocation.
const BLOCKS: u32 = 4u;

fn apply(b: u32, blocks: u32, off: vec2<u32>) {
    if (b >= blocks) {
        return;
    }
    let m = params.mask;
    let keep = dropout_keep4(m.seed, off, b, m.threshold, m.mode);
    y[b] = select(vec4<f32>(0.0), x[b] * m.scale, keep);
}

// Blocks (vec4s) BLOCKS * i .. BLOCKS * i + 3.
fn apply_all(i: u32) {
    let blocks = (params.len >> 2u) + select(0u, 1u, (params.len & 3u) != 0u);
    let off = stream_offset(params.mask.offset, step);
    let b = i * BLOCKS;
    apply(b, blocks, off);
    apply(b + 1u, blocks, off);
    apply(b + 2u, blocks, off);
    apply(b + 3u, blocks, off);
}

// y = x * keep / (1 - p).
@compute @workgroup_size(64)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    apply_all(gid.x + gid.y * nwg.x * 64u);
}

// dx = dy * keep / (1 - p), with the keep bits of the forward regenerated.
@compute @workgroup_size(64)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    apply_all(gid.x + gid.y * nwg.x * 64u);
}
