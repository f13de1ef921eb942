// pool.wgsl: 2-D max pooling over NHWC tensors, valid padding, any window and stride.
// Entry points:
//   max_pool2d_forward   one invocation per (n, oy, ox, block of 4 channels) of y
//   max_pool2d_backward  one invocation per (n, iy, ix, block of 4 channels) of dx
// Bindings: 0 params: PoolParams (uniform), 1 x (read, f32, [n, h, w, c]),
// 2 dy (read, f32, [n, oh, ow, c]; the forward binds x here too, unread),
// 3 out (write, f32: y [n, oh, ow, c] or dx [n, h, w, c]).
// Rust module: src/kernels/pool.rs.
//
// Each invocation handles four neighbouring channels (a 1x4 register tile; the tail block
// clamps its reads to channel c - 1 and skips its writes). The maximum of a window is its
// first maximum in row-major window order: an element replaces the running maximum only when
// strictly greater, and the window's first element seeds it (so a NaN seed stays, later NaNs
// never win). The backward routes each dy element to that argmax. It needs no atomics and no
// zeroed output: every dx element is written once by the invocation that owns it, which sums,
// in row-major window order, dy over the windows that contain it and whose recomputed argmax
// it is. Overlapping windows (stride < window) therefore accumulate correctly.

struct PoolParams {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    // Channel blocks of four: ceil(c / 4).
    blocks: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// Four channels of x at flat pixel index `pix` (n * h * w + y * w + x), starting at channel
// `c0`; channels past c - 1 read channel c - 1 (their results are never written).
fn load4(pix: u32, c0: u32) -> vec4<f32> {
    let base = pix * params.c;
    let last = params.c - 1u;
    return vec4<f32>(
        x[base + min(c0, last)],
        x[base + min(c0 + 1u, last)],
        x[base + min(c0 + 2u, last)],
        x[base + min(c0 + 3u, last)],
    );
}

// Writes the channels of `v` that exist, at flat pixel index `pix` from channel `c0`.
fn store4(pix: u32, c0: u32, v: vec4<f32>) {
    let base = pix * params.c + c0;
    out[base] = v.x;
    if (c0 + 1u < params.c) {
        out[base + 1u] = v.y;
    }
    if (c0 + 2u < params.c) {
        out[base + 2u] = v.z;
    }
    if (c0 + 3u < params.c) {
        out[base + 3u] = v.w;
    }
}

// The flat row-major window position (ky * kw + kx) of the first maximum of window (oy, ox)
// of image `img`, for four channels from `c0`.
fn window_argmax(img: u32, oy: u32, ox: u32, c0: u32) -> vec4<u32> {
    let y0 = oy * params.sh;
    let x0 = ox * params.sw;
    var best = load4((img * params.h + y0) * params.w + x0, c0);
    var arg = vec4<u32>(0u);
    for (var ky = 0u; ky < params.kh; ky++) {
        let row = (img * params.h + y0 + ky) * params.w + x0;
        for (var kx = 0u; kx < params.kw; kx++) {
            let v = load4(row + kx, c0);
            let better = v > best;
            best = select(best, v, better);
            arg = select(arg, vec4<u32>(ky * params.kw + kx), better);
        }
    }
    return arg;
}

// y[n, oy, ox, c] = max over the window at (oy * sh, ox * sw) of size kh x kw.
@compute @workgroup_size(64)
fn max_pool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let b = i % params.blocks;
    let pix = i / params.blocks; // flat output pixel: (img * oh + oy) * ow + ox
    if (pix >= params.n * params.oh * params.ow) {
        return;
    }
    let ox = pix % params.ow;
    let oy = (pix / params.ow) % params.oh;
    let img = pix / (params.ow * params.oh);
    let c0 = 4u * b;
    let y0 = oy * params.sh;
    let x0 = ox * params.sw;
    var best = load4((img * params.h + y0) * params.w + x0, c0);
    for (var ky = 0u; ky < params.kh; ky++) {
        let row = (img * params.h + y0 + ky) * params.w + x0;
        for (var kx = 0u; kx < params.kw; kx++) {
            let v = load4(row + kx, c0);
            best = select(best, v, v > best);
        }
    }
    store4(pix, c0, best);
}

// dx[n, iy, ix, c] = sum of dy[n, oy, ox, c] over the windows (oy, ox) that contain (iy, ix)
// and whose first maximum (in channel c) is at (iy, ix).
@compute @workgroup_size(64)
fn max_pool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    let b = i % params.blocks;
    let pix = i / params.blocks; // flat input pixel: (img * h + iy) * w + ix
    if (pix >= params.n * params.h * params.w) {
        return;
    }
    let ix = pix % params.w;
    let iy = (pix / params.w) % params.h;
    let img = pix / (params.w * params.h);
    let c0 = 4u * b;
    // Windows containing iy: oy * sh <= iy < oy * sh + kh, and oy < oh.
    let oy_lo = select(0u, (iy + 1u - params.kh + params.sh - 1u) / params.sh, iy + 1u > params.kh);
    let oy_hi = min(iy / params.sh + 1u, params.oh);
    let ox_lo = select(0u, (ix + 1u - params.kw + params.sw - 1u) / params.sw, ix + 1u > params.kw);
    let ox_hi = min(ix / params.sw + 1u, params.ow);
    var acc = vec4<f32>(0.0);
    for (var oy = oy_lo; oy < oy_hi; oy++) {
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            let arg = window_argmax(img, oy, ox, c0);
            let here = vec4<u32>((iy - oy * params.sh) * params.kw + (ix - ox * params.sw));
            let g = load_dy((img * params.oh + oy) * params.ow + ox, c0);
            acc += select(vec4<f32>(0.0), g, arg == here);
        }
    }
    store4(pix, c0, acc);
}

// Four channels of dy at flat output pixel `pix` from channel `c0` (clamped like load4).
fn load_dy(pix: u32, c0: u32) -> vec4<f32> {
    let base = pix * params.c;
    let last = params.c - 1u;
    return vec4<f32>(
        dy[base + min(c0, last)],
        dy[base + min(c0 + 1u, last)],
        dy[base + min(c0 + 2u, last)],
        dy[base + min(c0 + 3u, last)],
    );
}
