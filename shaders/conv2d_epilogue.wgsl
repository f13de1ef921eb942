// conv2d_epilogue.wgsl: the convolution's forward with an epilogue, for a fused
// `Conv2D [-> ReLU] -> SpatialDropout2D`: as each output tile is stored, add the bias, apply
// the ReLU and draw the spatial dropout's channel mask, y = keep ? act(conv + b) / (1 - p) : 0,
// with the same f32 operations in the same order as the unfused passes (bias_add, relu_forward
// in elementwise.wgsl, spatial_dropout_forward in dropout.wgsl), so fused and unfused give
// the same bits.
// Joined after step.wgsl, philox.wgsl (and its mulhilo), dropout_mask.wgsl and conv2d.wgsl.
// Entry point: conv2d_forward_epilogue (conv2d_forward's tiles, forward_tile).
// Mask: element (n, oy, ox, c) is kept iff mask element n * cout + c of stream
// (seed, offset + step * 2^32) is (src/philox.rs, `keep`): one bit per feature map.
// Bindings: conv2d.wgsl's 0 params, 1 x, 2 kernel, 3 y, and 4 epi: ConvEpilogue (uniform),
// 5 step: Step (uniform), 6 bias (read; any buffer when epi.bias is 0).
// Rust module: src/kernels/conv2d_epilogue.rs (ConvEpilogue).

struct ConvEpilogue {
    // The spatial dropout's mask (keeps every channel unscaled in inference).
    mask: DropoutMask,
    // 1: add bias[c].
    bias: u32,
    // 1: max(., 0).
    relu: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(4) var<uniform> epi: ConvEpilogue;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// Keep bits of channels c0 .. c0 + 3 of image `img`: mask elements img * cout + c0 .. + 3,
// which span at most two Philox blocks.
fn channel_keep4(img: u32, c0: u32) -> vec4<bool> {
    let m = epi.mask;
    if (m.mode != DROP_THRESHOLD) {
        return vec4<bool>(m.mode == DROP_KEEP_ALL);
    }
    let off = stream_offset(m.offset, step);
    let first = img * params.cout + c0;
    let q = first >> 2u;
    let r0 = philox4x32_10(vec4<u32>(q, 0u, off.x, off.y), m.seed);
    var r1 = r0;
    if ((first & 3u) != 0u) {
        r1 = philox4x32_10(vec4<u32>(q + 1u, 0u, off.x, off.y), m.seed);
    }
    var keep = vec4<bool>(false);
    for (var l = 0u; l < 4u; l++) {
        let j = (first & 3u) + l;
        keep[l] = select(r0[j & 3u], r1[j & 3u], j >= 4u) >= m.threshold;
    }
    return keep;
}

// The epilogue of one output pixel's channels c0 .. c0 + 3 (lanes past cout are never stored).
fn epilogue4(acc: vec4<f32>, c0: u32, keep: vec4<bool>) -> vec4<f32> {
    var v = acc;
    if (epi.bias != 0u) {
        let c = min(vec4<u32>(c0) + LANES, vec4<u32>(params.cout - 1u));
        v = v + vec4<f32>(bias[c.x], bias[c.y], bias[c.z], bias[c.w]);
    }
    if (epi.relu != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    return select(vec4<f32>(0.0), v * epi.mask.scale, keep);
}

@compute @workgroup_size(64)
fn conv2d_forward_epilogue(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = params;
    let id = invocation(gid, nwg);
    if (id >= forward_tiles()) {
        return;
    }
    let pl = forward_place(id);
    let acc = forward_tile(pl);
    let keep = channel_keep4(pl.bi, pl.co0);
    let yrow = pl.row * p.ow;
    let ox0 = pl.ox0;
    let co0 = pl.co0;
    store4(COUT4, (yrow + ox0) * p.cout, co0, p.cout, epilogue4(acc[0], co0, keep));
    if (ox0 + 1u < p.ow) {
        store4(COUT4, (yrow + ox0 + 1u) * p.cout, co0, p.cout, epilogue4(acc[1], co0, keep));
    }
    if (ox0 + 2u < p.ow) {
        store4(COUT4, (yrow + ox0 + 2u) * p.cout, co0, p.cout, epilogue4(acc[2], co0, keep));
    }
    if (ox0 + 3u < p.ow) {
        store4(COUT4, (yrow + ox0 + 3u) * p.cout, co0, p.cout, epilogue4(acc[3], co0, keep));
    }
}
