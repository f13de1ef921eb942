// philox_mulhilo32.wgsl: Philox's `mulhilo` (shaders/philox.wgsl) without 64-bit integers.
// The full 64-bit product a * b as (lo, hi), built from 16-bit halves. Devices with 64-bit
// integers (wgpu's SHADER_INT64) get shaders/philox_mulhilo64.wgsl instead, one widening
// multiply (chosen by kernels::shader::compose); both give the same bits (tests/philox.rs
// runs both on one adapter).
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
