// philox_words.wgsl: raw Philox-4x32-10 words, for the tests that hold the GPU to the host.
// Entry point: philox_words. Bindings: 0 params: WordsParams (uniform), 1 input (read):
// per item two vec4 (counter; key in .xy), 2 output (write): one vec4 per item.
// Rust module: src/kernels/dropout.rs. Joined after philox.wgsl and its mulhilo.

struct WordsParams {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: WordsParams;
@group(0) @binding(1) var<storage, read> input: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<u32>>;

@compute @workgroup_size(64)
fn philox_words(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.count) {
        return;
    }
    output[i] = philox4x32_10(input[2u * i], input[2u * i + 1u].xy);
}
