// philox.wgsl: Philox-4x32-10 (Random123).
// A snippet, not a module: joined (kernels::shader::compose) after one of
// philox_mulhilo32.wgsl or philox_mulhilo64.wgsl, which define `mulhilo`, into every shader
// that draws dropout masks (with dropout_mask.wgsl) or raw Philox words.
// Host twin and reference: src/philox.rs.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

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
