// dropout.wgsl: inverted dropout, forward and backward, with the mask drawn from Philox.
// Entry points: dropout_forward, dropout_backward (one invocation per 4 vec4 = 16 elements;
// each vec4 takes all four words of one Philox call); spatial_dropout_forward,
// spatial_dropout_backward (SpatialDropout2D over NHWC: one invocation per vec4; element e of
// image n = e / image, channel c = e % channels, uses mask element n * channels + c, so a
// whole feature map is kept or dropped).
// Bindings: 0 params: DropoutParams (uniform), 1 step: Step (uniform), 2 x (read), 3 y (write).
// Rust module: src/kernels/dropout.rs. Joined after step.wgsl, philox.wgsl (and its mulhilo)
// and dropout_mask.wgsl.
// No mask is stored: the backward regenerates the keep bits from (seed, offset, index).

struct DropoutParams {
    mask: DropoutMask,
    len: u32,
    // Spatial entry points only: C, and H * W * C (elements per image); 0 otherwise.
    channels: u32,
    image: u32,
    _pad0: u32,
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

// SpatialDropout2D of vec4 `b`: element e keeps iff mask element (e / image) * channels +
// e % channels does. Consecutive elements mostly share a Philox block: it is drawn again
// only when the block changes.
fn spatial_apply(b: u32) {
    let p = params;
    if (b >= (p.len + 3u) / 4u) {
        return;
    }
    let m = p.mask;
    if (m.mode != DROP_THRESHOLD) {
        y[b] = select(vec4<f32>(0.0), x[b] * m.scale, vec4<bool>(m.mode == DROP_KEEP_ALL));
        return;
    }
    let off = stream_offset(m.offset, step);
    var keep = vec4<bool>(false);
    var block = 0xFFFFFFFFu;
    var r = vec4<u32>(0u);
    for (var l = 0u; l < 4u; l++) {
        let e = 4u * b + l;
        let i = (e / p.image) * p.channels + e % p.channels;
        if ((i >> 2u) != block) {
            block = i >> 2u;
            r = philox4x32_10(vec4<u32>(block, 0u, off.x, off.y), m.seed);
        }
        keep[l] = r[i & 3u] >= m.threshold;
    }
    y[b] = select(vec4<f32>(0.0), x[b] * m.scale, keep);
}

// y = x * keep(channel) / (1 - p).
@compute @workgroup_size(64)
fn spatial_dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    spatial_apply(gid.x + gid.y * nwg.x * 64u);
}

// dx = dy * keep(channel) / (1 - p), the channel mask of the forward regenerated.
@compute @workgroup_size(64)
fn spatial_dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    spatial_apply(gid.x + gid.y * nwg.x * 64u);
}
