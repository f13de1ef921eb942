// dropout_mc.wgsl: inverted dropout over `samples` copies of one batch, each copy with its own
// stream, for Monte-Carlo dropout (`Sequential::predict_mc`). Element g of the output belongs
// to sample s = g / span and is element i = step.batch_start * row_len + g % span of that
// sample (the batch is rows batch_start.. of the caller's input, row_len elements a row); it
// is kept iff dropout_keep1(seed, offset + (step + s) * 2^32, i), so sample s's mask is
// exactly the mask a plain dropout (dropout.wgsl) draws over the caller's whole input with
// stream `offset + s * 2^32` at that step. With `replicate` set, x holds one copy (span elements)
// and is read at g % span: the copies are made here, on the GPU, nothing uploaded per sample.
// Entry point: dropout_mc_forward (one invocation per vec4 of the output).
// Bindings: 0 params: DropoutMcParams (uniform), 1 step: Step (uniform), 2 x (read),
// 3 y (write). Rust module: src/kernels/dropout_mc.rs. Joined after step.wgsl, philox.wgsl
// (and its mulhilo) and dropout_mask.wgsl.

struct DropoutMcParams {
    mask: DropoutMask,
    // Elements of y: samples * span.
    len: u32,
    // Elements of one sample (the batch's [batch, units] output).
    span: u32,
    // 1: x holds one sample's span elements, read at g % span; 0: x is as long as y.
    replicate: u32,
    // Elements of one row: the batch's first element is element batch_start * row_len.
    row_len: u32,
}

@group(0) @binding(0) var<uniform> params: DropoutMcParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

// Element g of the output: (kept, value before the mask).
fn element(g: u32, off: vec2<u32>, base: u32) -> vec2<f32> {
    let m = params.mask;
    let s = g / params.span;
    let i = g - s * params.span;
    let src = select(g, i, params.replicate != 0u);
    let keep = dropout_keep1(m.seed, vec2<u32>(off.x, off.y + s), base + i, m.threshold, m.mode);
    return vec2<f32>(select(0.0, 1.0, keep), x[src]);
}

@compute @workgroup_size(64)
fn dropout_mc_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.x + gid.y * nwg.x * 64u;
    let blocks = (params.len >> 2u) + select(0u, 1u, (params.len & 3u) != 0u);
    if (b >= blocks) {
        return;
    }
    let m = params.mask;
    let off = stream_offset(m.offset, step);
    let g = 4u * b;
    let base = step.batch_start * params.row_len;
    var out = vec4<f32>(0.0);
    if (((params.span | base) & 3u) == 0u) {
        // The four elements lie in one sample, in one Philox block.
        let s = g / params.span;
        let i = g - s * params.span;
        let src = select(g, i, params.replicate != 0u);
        let keep = dropout_keep4(m.seed, vec2<u32>(off.x, off.y + s), (base + i) >> 2u, m.threshold, m.mode);
        let v = vec4<f32>(x[src], x[src + 1u], x[src + 2u], x[src + 3u]);
        out = select(vec4<f32>(0.0), v * m.scale, keep);
    } else {
        for (var k = 0u; k < 4u; k++) {
            if (g + k < params.len) {
                let e = element(g + k, off, base);
                out[k] = select(0.0, e.y * m.scale, e.x != 0.0);
            }
        }
    }
    y[b] = out;
}
