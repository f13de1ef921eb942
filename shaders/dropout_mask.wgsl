// dropout_mask.wgsl: the dropout mask of one op, as dropout.wgsl and matmul.wgsl's epilogue
// draw it. A snippet, not a module: joined (kernels::shader::compose) after step.wgsl and
// philox.wgsl. Rust twin: src/kernels/dropout_mask.rs (struct DropoutMask); the host
// reference is src/philox.rs (`keep`, `DropoutLowering`). The mask is a pure function of
// (seed, offset, element index, rate); see that module's documentation.

// How dropout treats a rate (`DropMode` in src/philox.rs, same values): DROP_KEEP_ALL keeps
// every element (p == 0), DROP_THRESHOLD compares each word with the threshold, DROP_ALL
// drops every element (p == 1).
const DROP_KEEP_ALL: u32 = 0u;
const DROP_THRESHOLD: u32 = 1u;
const DROP_ALL: u32 = 2u;

// A rate lowered on the host (src/philox.rs, `DropoutLowering`) and its stream.
struct DropoutMask {
    // The generator's key (lo, hi).
    seed: vec2<u32>,
    // The stream (lo, hi), before the step moves it (`stream_offset`).
    offset: vec2<u32>,
    // Keep iff the Philox word is >= threshold (with DROP_THRESHOLD).
    threshold: u32,
    // DROP_KEEP_ALL, DROP_THRESHOLD or DROP_ALL.
    mode: u32,
    // What kept values are multiplied by: 1 / (1 - p), or 0 when p == 1.
    scale: f32,
    _pad: u32,
}

// Keep bits of the four elements 4 * block .. 4 * block + 3 of stream (seed, offset):
// element i uses word i % 4 of philox4x32_10([block, 0, offset.lo, offset.hi], seed).
// (Tensors hold fewer than 2^32 elements, so the block's high word is always 0.)
fn dropout_keep4(seed: vec2<u32>, offset: vec2<u32>, block: u32, threshold: u32, mode: u32) -> vec4<bool> {
    if (mode == DROP_KEEP_ALL) {
        return vec4<bool>(true);
    }
    if (mode == DROP_ALL) {
        return vec4<bool>(false);
    }
    let r = philox4x32_10(vec4<u32>(block, 0u, offset.x, offset.y), seed);
    return r >= vec4<u32>(threshold);
}

// Keep bit of the single element `index` of stream (seed, offset).
fn dropout_keep1(seed: vec2<u32>, offset: vec2<u32>, index: u32, threshold: u32, mode: u32) -> bool {
    let k = dropout_keep4(seed, offset, index >> 2u, threshold, mode);
    return k[index & 3u];
}

// The stream a dropout draws from in step `step`: `offset + step * 2^32`.
fn stream_offset(offset: vec2<u32>, step: Step) -> vec2<u32> {
    return vec2<u32>(offset.x, offset.y + step.step);
}
