// philox.wgsl: Philox-4x32-10 (Random123) and the dropout keep test.
// A snippet, not a module: prepended (concat!) to every shader that draws dropout masks.
// Host twin and reference: src/philox.rs. The mask is a pure function of
// (seed, offset, element index, rate); see that module's documentation.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// The full 64-bit product a * b as (lo, hi). WGSL has no u64, so this portable version builds
// it from 16-bit halves. On devices with 64-bit integers (wgpu's SHADER_INT64) the host swaps
// the text between the BEGIN and END lines for shaders/philox_mulhilo64.wgsl, one widening
// multiply, before compiling (src/kernels/mod.rs, `specialize`); both give the same bits.
// BEGIN mulhilo
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Carry of the middle column: each term < 2^16 + 2^16 + 2^16, no overflow.
    let mid = (p00 >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(a * b, hi);
}
// END mulhilo

fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let p0 = mulhilo(PHILOX_M0, c.x);
    let p1 = mulhilo(PHILOX_M1, c.z);
    return vec4<u32>(p1.y ^ c.y ^ k.x, p1.x, p0.y ^ c.w ^ k.y, p0.x);
}

// Philox-4x32-10: ten rounds, the key bumped by the Weyl constants before rounds 2 to 10.
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    c = philox_round(c, k);
    for (var r = 1u; r < 10u; r++) {
        k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        c = philox_round(c, k);
    }
    return c;
}

// How dropout treats a rate: 0 keeps all (p == 0), 1 compares with the threshold, 2 drops all
// (p == 1).
const DROP_NONE: u32 = 0u;
const DROP_THRESHOLD: u32 = 1u;
const DROP_ALL: u32 = 2u;

// Keep bits of the four elements 4 * block .. 4 * block + 3 of stream (seed, offset):
// element i uses word i % 4 of philox4x32_10([block, 0, offset.lo, offset.hi], seed).
// (Tensors hold fewer than 2^32 elements, so the block's high word is always 0.)
fn dropout_keep4(seed: vec2<u32>, offset: vec2<u32>, block: u32, threshold: u32, mode: u32) -> vec4<bool> {
    if (mode == DROP_NONE) {
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

// The executor's step uniform, the one host write of a training step: a dropout's effective
// offset is `offset + step * 2^32`; `batch_start` is the first position of this step's batch
// in the epoch's permutation. Eager calls bind zeros.
struct Step {
    step: u32,
    batch_start: u32,
    // Test hook for the non-finite stop: 1 makes the loss NaN, 2 the first checked gradient.
    poison: u32,
    _pad: u32,
}

fn stream_offset(offset: vec2<u32>, step: Step) -> vec2<u32> {
    return vec2<u32>(offset.x, offset.y + step.step);
}
