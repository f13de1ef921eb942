// matmul_b64.wgsl: b_pair for devices with 64-bit integers (SHADER_INT64), spliced into
// matmul_subgroup.wgsl in place of its portable b_pair by kernels::specialize.
// With B64 (set by the host when B is read along n, n % 8 == 0 and TN4 = 2), the eight
// columns j0..j0+7 of B at one k are one aligned vec4<u64> (j0 is a multiple of 8): four
// 64-bit loads per four k instead of eight vec4<f32> loads. A u64's low half is the float at
// the lower address (the little-endian layout every Vulkan, Metal and D3D12 device uses;
// tests/dense.rs checks the bits against the portable path on the same adapter).
// Binding 7: the same buffer as binding 3 (b), viewed as vec4<u64>.

override B64: bool = false;

@group(0) @binding(7) var<storage, read> b64: array<vec4<u64>>;

fn b64_floats(w: u64) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(u32(w)), bitcast<f32>(u32(w >> 32u)));
}

fn b_pair(kk: u32, j0: u32) -> array<mat4x4<f32>, 2> {
    if (B64 && TN4 > 1u) {
        let p = params;
        let n8 = p.n >> 3u;
        // A lane past the last column reads the last group (its results are never stored);
        // k past the end reads zero, as b_block does.
        let g = min(j0, p.n - 8u) >> 3u;
        let ks = min(vec4<u32>(kk) + LANES, vec4<u32>(p.k - 1u));
        let ok = vec4<u32>(kk) + LANES < vec4<u32>(p.k);
        let w0 = b64[ks.x * n8 + g];
        let w1 = b64[ks.y * n8 + g];
        let w2 = b64[ks.z * n8 + g];
        let w3 = b64[ks.w * n8 + g];
        let z = vec4<f32>(0.0);
        let lo = mat4x4<f32>(
            select(z, vec4<f32>(b64_floats(w0.x), b64_floats(w0.y)), ok.x),
            select(z, vec4<f32>(b64_floats(w1.x), b64_floats(w1.y)), ok.y),
            select(z, vec4<f32>(b64_floats(w2.x), b64_floats(w2.y)), ok.z),
            select(z, vec4<f32>(b64_floats(w3.x), b64_floats(w3.y)), ok.w));
        let hi = mat4x4<f32>(
            select(z, vec4<f32>(b64_floats(w0.z), b64_floats(w0.w)), ok.x),
            select(z, vec4<f32>(b64_floats(w1.z), b64_floats(w1.w)), ok.y),
            select(z, vec4<f32>(b64_floats(w2.z), b64_floats(w2.w)), ok.z),
            select(z, vec4<f32>(b64_floats(w3.z), b64_floats(w3.w)), ok.w));
        return array<mat4x4<f32>, 2>(lo, hi);
    }
    let bb0 = b_block(kk, j0);
    var bb1 = bb0;
    if (TN4 > 1u) {
        bb1 = b_block(kk, j0 + 4u);
    }
    return array<mat4x4<f32>, 2>(bb0, bb1);
}
