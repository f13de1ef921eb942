// matmul_loads_wide.wgsl: b_pair and a_next for devices with 64-bit integers (SHADER_INT64)
// and subgroups of 8 lanes, joined after matmul_subgroup.wgsl in place of
// shaders/matmul_loads_portable.wgsl by kernels::shader::compose. (At 16 lanes, lavapipe at 512 bits, the same loads measured 2.3x
// slower at 1024^3, so there the portable ones stay.)
// lavapipe loads a storage buffer one lane and one component at a time (a loop over the
// lanes with a bounds check per component), so reading eight floats as one vec4<u64> rather
// than two vec4<f32> halves the work per float.
// - B64 (set by the host when B is read along n, n % 8 == 0 and TN4 = 2): the eight columns
//   j0..j0+7 of B at one k are one aligned vec4<u64> (j0 is a multiple of 8).
// - A64 (A read along k, k % 8 == 0): each of a lane's four rows gives its eight k
//   kk..kk+7 as one vec4<u64> when kk % 8 == 0; the second half waits in `held` for the call
//   at kk + 4 (calls come in order of kk, every 4).
// A u64's low half is the float at the lower address: the little-endian layout of every
// Vulkan, Metal and D3D12 device. tests/dense.rs checks the bits against the portable loads
// on the same adapter.
// Bindings 7 and 8: the buffers of bindings 3 (b) and 2 (a), viewed as vec4<u64>.

override B64: bool = false;
override A64: bool = false;

@group(0) @binding(7) var<storage, read> b64: array<vec4<u64>>;
@group(0) @binding(8) var<storage, read> a64: array<vec4<u64>>;

fn wide_lo(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(
        bitcast<f32>(u32(w.x)), bitcast<f32>(u32(w.x >> 32u)),
        bitcast<f32>(u32(w.y)), bitcast<f32>(u32(w.y >> 32u)));
}

fn wide_hi(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(
        bitcast<f32>(u32(w.z)), bitcast<f32>(u32(w.z >> 32u)),
        bitcast<f32>(u32(w.w)), bitcast<f32>(u32(w.w >> 32u)));
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
            select(z, wide_lo(w0), ok.x),
            select(z, wide_lo(w1), ok.y),
            select(z, wide_lo(w2), ok.z),
            select(z, wide_lo(w3), ok.w));
        let hi = mat4x4<f32>(
            select(z, wide_hi(w0), ok.x),
            select(z, wide_hi(w1), ok.y),
            select(z, wide_hi(w2), ok.z),
            select(z, wide_hi(w3), ok.w));
        return array<mat4x4<f32>, 2>(lo, hi);
    }
    return b_blocks(kk, j0);
}

fn a_next(i0: u32, kk: u32, held: ptr<function, array<mat4x4<f32>, 2>>) -> mat4x4<f32> {
    if (A64) {
        let upper = (kk & 4u) != 0u;
        if (!upper) {
            // Column c of a block is row i0 + c (clamped to m - 1, as a_block does).
            let p = params;
            let k8 = p.k >> 3u;
            let q = kk >> 3u;
            let rows = min(vec4<u32>(i0) + LANES, vec4<u32>(p.m - 1u));
            let w0 = a64[rows.x * k8 + q];
            let w1 = a64[rows.y * k8 + q];
            let w2 = a64[rows.z * k8 + q];
            let w3 = a64[rows.w * k8 + q];
            (*held)[0] = mat4x4<f32>(wide_lo(w0), wide_lo(w1), wide_lo(w2), wide_lo(w3));
            (*held)[1] = mat4x4<f32>(wide_hi(w0), wide_hi(w1), wide_hi(w2), wide_hi(w3));
        }
        let h = *held;
        return mat4x4<f32>(
            select(h[0][0], h[1][0], upper),
            select(h[0][1], h[1][1], upper),
            select(h[0][2], h[1][2], upper),
            select(h[0][3], h[1][3], upper));
    }
    return a_block(i0, kk);
}
