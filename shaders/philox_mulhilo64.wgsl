// philox_mulhilo64.wgsl: Philox's `mulhilo` (shaders/philox.wgsl) with one widening 64-bit
// multiply, for devices with SHADER_INT64: joined in place of shaders/philox_mulhilo32.wgsl
// by kernels::shader::compose; the bits are the same. On lavapipe it makes Philox about 1.3 times
// faster: LLVM turns a product of two zero-extended words into one vpmuludq per four lanes
// where the portable version needs four 32-bit multiplies and the carries.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let p = u64(a) * u64(b);
    return vec2<u32>(u32(p), u32(p >> 32u));
}
