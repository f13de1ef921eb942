// conv2d.wgsl: 2-D convolution and its two gradients as implicit GEMMs: the GEMM operands are
// gathered from the NHWC image and the HWIO kernel on the fly (no im2col buffer), padded
// positions read as zero.
//   x [n, h, w, cin], kernel [kh, kw, cin, cout], y / dy [n, oh, ow, cout];
//   input row iy = oy * stride + ky - pad_top (likewise columns).
// Each invocation computes a 4x4 register tile (acc0..acc3, constant indices) with no
// workgroup memory and no barriers (lavapipe runs barriers as coroutines). Work is
// one-dimensional: invocation id = gid.x + gid.y * num_workgroups.x * 64; consecutive ids
// take consecutive tiles along the GEMM's N axis (channels), so the 8 lanes of a lavapipe SIMD
// chunk mostly read the same image addresses. Negative coordinates wrap around in u32 and are
// rejected by the `< h` / `< w` tests.
// Entry points (one tile decomposition each; Rust mirrors the counts in Conv2dDims):
//   conv2d_forward          y = conv(x, kernel): M = (n, oh, ow), N = cout, K = (kh, kw, cin).
//                           Tile: 4 adjacent output columns of one output row x 4 cout
//                           (forward_tile, shared with conv2d_epilogue.wgsl).
//   conv2d_backward_input   dx: M = (n, h, w), N = cin, K = (kh, kw, cout). Tile: 4 input
//                           columns ix = r + stride * q (q = q0..q0+3) of one input row, all with
//                           the same residue r = ix % stride, so they meet the same kernel taps
//                           (only taps with ky = (iy + pad_top) mod stride and
//                           kx = (r + pad_left) mod stride touch them), x 4 cin.
//   conv2d_backward_weight  dkernel: M = (kh, kw, cin), N = cout, K = (n, oh, ow). Tile: 4
//                           consecutive (ky, kx, ci) rows x 4 cout. With splits > 1 (few
//                           tiles), K is cut into slices of per_split images and slice s
//                           writes partial sums to block s of `out` (a scratch buffer);
//   conv2d_backward_weight_reduce  then adds the slices, in order, into dkernel.
// Overrides CIN4 / COUT4 (set when cin / cout is a multiple of 4): a run of 4 channels along
// that axis is then one aligned vec4, so it loads and stores as a vec4; otherwise elements are
// read and written one f32 component at a time. With both, forward and input gradient step K
// by 4 channels (64 FMAs per 8 vec4 loads instead of 16 FMAs per 8 scalar loads).
// Bindings: 0 params: Conv2dParams (uniform), 1 a (read), 2 b (read), 3 out (write), all
// array<vec4<f32>> (tensor buffers are padded to 16 bytes):
//   forward (x, kernel, y), backward_input (dy, kernel, dx), backward_weight (x, dy, dkernel).
// Rust module: src/kernels/conv2d.rs.

override CIN4: bool = false;
override COUT4: bool = false;

struct Conv2dParams {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    oh: u32,
    ow: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    // The weight gradient's K slices (1: not split) and images per slice.
    splits: u32,
    per_split: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

const LANES = vec4<u32>(0u, 1u, 2u, 3u);

fn invocation(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn tiles(len: u32) -> u32 {
    return (len + 3u) / 4u;
}

fn load_a(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

fn load_b(i: u32) -> f32 {
    return b[i >> 2u][i & 3u];
}

// Elements i of `a`, zero where `ok` is false (never read there).
fn gather_a(i: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let j = select(vec4<u32>(0u), i, ok);
    return select(vec4<f32>(0.0), vec4<f32>(load_a(j.x), load_a(j.y), load_a(j.z), load_a(j.w)), ok);
}

// Elements i of `b`.
fn gather_b(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(load_b(i.x), load_b(i.y), load_b(i.z), load_b(i.w));
}

// Output channels `co` (clamped, co.x the first) of the `b` row starting at element `start`:
// the kernel in the forward pass, dy in the weight gradient.
fn cout_row_b(start: u32, co: vec4<u32>) -> vec4<f32> {
    if (COUT4) {
        return b[(start + co.x) >> 2u];
    }
    return gather_b(vec4<u32>(start) + co);
}

// Vec4 element q of `a`, zero unless `ok`.
fn load_a4(q: u32, ok: bool) -> vec4<f32> {
    return select(vec4<f32>(0.0), a[select(0u, q, ok)], ok);
}

// Stores one tile row `acc` at out[base + c0 ..] for the lanes c0 + i < `limit`; with `vec`
// (limit a multiple of 4, so base and c0 are too) as one vec4.
fn store4(vec: bool, base: u32, c0: u32, limit: u32, acc: vec4<f32>) {
    let i = base + c0;
    if (vec) {
        out[i >> 2u] = acc;
        return;
    }
    out[i >> 2u][i & 3u] = acc.x;
    if (c0 + 1u < limit) {
        out[(i + 1u) >> 2u][(i + 1u) & 3u] = acc.y;
    }
    if (c0 + 2u < limit) {
        out[(i + 2u) >> 2u][(i + 2u) & 3u] = acc.z;
    }
    if (c0 + 3u < limit) {
        out[(i + 3u) >> 2u][(i + 3u) & 3u] = acc.w;
    }
}

// Where forward invocation `id` works: output channels co0 .. co0 + 3, output columns
// ox0 .. ox0 + 3 of output row `row` (= bi * oh + oy) of image `bi`.
struct ForwardPlace {
    co0: u32,
    ox0: u32,
    row: u32,
    oy: u32,
    bi: u32,
}

// Forward invocations (4x4 tiles).
fn forward_tiles() -> u32 {
    let p = params;
    return p.n * p.oh * tiles(p.ow) * tiles(p.cout);
}

fn forward_place(id: u32) -> ForwardPlace {
    let p = params;
    let ct = tiles(p.cout);
    let xt = tiles(p.ow);
    let mt = id / ct;
    let row = mt / xt;
    return ForwardPlace((id % ct) * 4u, (mt % xt) * 4u, row, row % p.oh, row / p.oh);
}

// The forward tile at `pl`: column j is output column ox0 + j over channels co0 .. co0 + 3
// (lanes past cout hold copies of the last channel and are never stored).
fn forward_tile(pl: ForwardPlace) -> mat4x4<f32> {
    let p = params;
    let co0 = pl.co0;
    let ox0 = pl.ox0;
    let oy = pl.oy;
    let bi = pl.bi;
    let co = min(vec4<u32>(co0) + LANES, vec4<u32>(p.cout - 1u));
    // Input column of each of the four outputs at kernel column 0.
    let ix0 = (vec4<u32>(ox0) + LANES) * p.stride - vec4<u32>(p.pad_left);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = oy * p.stride + ky - p.pad_top;
        if (iy >= p.h) {
            continue;
        }
        let xrow = (bi * p.h + iy) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = ix0 + vec4<u32>(kx);
            let ok = ix < vec4<u32>(p.w);
            let wi = (ky * p.kw + kx) * p.cin * p.cout;
            if (CIN4 && COUT4) {
                // x as vec4 over 4 channels per output, the kernel as 4 vec4 rows (4 cin x 4 cout).
                let cq = p.cout / 4u;
                let xq = (vec4<u32>(xrow) + ix) * (p.cin / 4u);
                var wq = (wi + co0) / 4u;
                for (var c4 = 0u; c4 < p.cin / 4u; c4++) {
                    let x0 = load_a4(xq.x + c4, ok.x);
                    let x1 = load_a4(xq.y + c4, ok.y);
                    let x2 = load_a4(xq.z + c4, ok.z);
                    let x3 = load_a4(xq.w + c4, ok.w);
                    let w0 = b[wq];
                    let w1 = b[wq + cq];
                    let w2 = b[wq + 2u * cq];
                    let w3 = b[wq + 3u * cq];
                    wq += 4u * cq;
                    acc0 += x0.x * w0 + x0.y * w1 + x0.z * w2 + x0.w * w3;
                    acc1 += x1.x * w0 + x1.y * w1 + x1.z * w2 + x1.w * w3;
                    acc2 += x2.x * w0 + x2.y * w1 + x2.z * w2 + x2.w * w3;
                    acc3 += x3.x * w0 + x3.y * w1 + x3.z * w2 + x3.w * w3;
                }
            } else {
                let xi = (vec4<u32>(xrow) + ix) * p.cin;
                for (var ci = 0u; ci < p.cin; ci++) {
                    let av = gather_a(xi + vec4<u32>(ci), ok);
                    let bv = cout_row_b(wi + ci * p.cout, co);
                    acc0 += av.x * bv;
                    acc1 += av.y * bv;
                    acc2 += av.z * bv;
                    acc3 += av.w * bv;
                }
            }
        }
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

@compute @workgroup_size(64)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = params;
    let id = invocation(gid, nwg);
    if (id >= forward_tiles()) {
        return;
    }
    let pl = forward_place(id);
    let acc = forward_tile(pl);
    let yrow = pl.row * p.ow;
    let ox0 = pl.ox0;
    let co0 = pl.co0;
    store4(COUT4, (yrow + ox0) * p.cout, co0, p.cout, acc[0]);
    if (ox0 + 1u < p.ow) {
        store4(COUT4, (yrow + ox0 + 1u) * p.cout, co0, p.cout, acc[1]);
    }
    if (ox0 + 2u < p.ow) {
        store4(COUT4, (yrow + ox0 + 2u) * p.cout, co0, p.cout, acc[2]);
    }
    if (ox0 + 3u < p.ow) {
        store4(COUT4, (yrow + ox0 + 3u) * p.cout, co0, p.cout, acc[3]);
    }
}

@compute @workgroup_size(64)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = params;
    let s = p.stride;
    let id = invocation(gid, nwg);
    let ct = tiles(p.cin);
    // Residue classes that hold columns, and tiles of columns per class.
    let classes = min(s, p.w);
    let qt = tiles((p.w + s - 1u) / s);
    if (id >= p.n * p.h * classes * qt * ct) {
        return;
    }
    let ci0 = (id % ct) * 4u;
    var t = id / ct;
    let q0 = (t % qt) * 4u;
    t /= qt;
    let r = t % classes;
    let row = t / classes; // b * h + iy
    let iy = row % p.h;
    let bi = row / p.h;
    let ci = min(vec4<u32>(ci0) + LANES, vec4<u32>(p.cin - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Taps with (iy + pad_top - ky) a non-negative multiple of the stride.
    let ty = iy + p.pad_top;
    for (var ky = ty % s; ky < p.kh && ky <= ty; ky += s) {
        let oy = (ty - ky) / s;
        if (oy >= p.oh) {
            continue;
        }
        let dyrow = (bi * p.oh + oy) * p.ow;
        for (var kx = (r + p.pad_left) % s; kx < p.kw; kx += s) {
            // Output column of column q is (r + pad_left - kx) / stride + q, exactly.
            let ox0 = bitcast<u32>((i32(r + p.pad_left) - i32(kx)) / i32(s)) + q0;
            let ox = vec4<u32>(ox0) + LANES;
            let ok = ox < vec4<u32>(p.ow);
            if (COUT4) {
                // dy as vec4 over 4 cout per position, the kernel as one vec4 (4 cout) per cin.
                let cq = p.cout / 4u;
                let dq = (vec4<u32>(dyrow) + ox) * cq;
                let wq = ((ky * p.kw + kx) * p.cin + ci) * cq;
                for (var c4 = 0u; c4 < cq; c4++) {
                    let d0 = load_a4(dq.x + c4, ok.x);
                    let d1 = load_a4(dq.y + c4, ok.y);
                    let d2 = load_a4(dq.z + c4, ok.z);
                    let d3 = load_a4(dq.w + c4, ok.w);
                    let w0 = b[wq.x + c4];
                    let w1 = b[wq.y + c4];
                    let w2 = b[wq.z + c4];
                    let w3 = b[wq.w + c4];
                    acc0 += vec4<f32>(dot(d0, w0), dot(d0, w1), dot(d0, w2), dot(d0, w3));
                    acc1 += vec4<f32>(dot(d1, w0), dot(d1, w1), dot(d1, w2), dot(d1, w3));
                    acc2 += vec4<f32>(dot(d2, w0), dot(d2, w1), dot(d2, w2), dot(d2, w3));
                    acc3 += vec4<f32>(dot(d3, w0), dot(d3, w1), dot(d3, w2), dot(d3, w3));
                }
            } else {
                let di = (vec4<u32>(dyrow) + ox) * p.cout;
                let wi = ((ky * p.kw + kx) * p.cin + ci) * p.cout;
                for (var co = 0u; co < p.cout; co++) {
                    let av = gather_a(di + vec4<u32>(co), ok);
                    let bv = gather_b(wi + vec4<u32>(co));
                    acc0 += av.x * bv;
                    acc1 += av.y * bv;
                    acc2 += av.z * bv;
                    acc3 += av.w * bv;
                }
            }
        }
    }
    let ix = vec4<u32>(r) + (vec4<u32>(q0) + LANES) * s;
    let xrow = row * p.w;
    if (ix.x < p.w) {
        store4(CIN4, (xrow + ix.x) * p.cin, ci0, p.cin, acc0);
    }
    if (ix.y < p.w) {
        store4(CIN4, (xrow + ix.y) * p.cin, ci0, p.cin, acc1);
    }
    if (ix.z < p.w) {
        store4(CIN4, (xrow + ix.z) * p.cin, ci0, p.cin, acc2);
    }
    if (ix.w < p.w) {
        store4(CIN4, (xrow + ix.w) * p.cin, ci0, p.cin, acc3);
    }
}

@compute @workgroup_size(64)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = params;
    let id = invocation(gid, nwg);
    let ct = tiles(p.cout);
    let m = p.kh * p.kw * p.cin;
    let count = tiles(m) * ct;
    if (id >= count * p.splits) {
        return;
    }
    // Slice s of K: images s * per_split .. (the last slice fewer); with splits > 1, `out` is
    // the scratch of partial sums and slice s writes its own [m, cout] block of it.
    let s = id / count;
    let tile = id % count;
    let b0 = s * p.per_split;
    let b1 = min(b0 + p.per_split, p.n);
    let slice = s * m * p.cout;
    let co0 = (tile % ct) * 4u;
    let m0 = (tile / ct) * 4u;
    let co = min(vec4<u32>(co0) + LANES, vec4<u32>(p.cout - 1u));
    // The four rows (ky, kx, ci), clamped to the last one; with CIN4 they are four
    // channels of one tap.
    let rows = min(vec4<u32>(m0) + LANES, vec4<u32>(m - 1u));
    let ci = rows % p.cin;
    let tap = rows / p.cin;
    let ky = tap / p.kw;
    let kx = tap % p.kw;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var bi = b0; bi < b1; bi++) {
        for (var oy = 0u; oy < p.oh; oy++) {
            let dyrow = (bi * p.oh + oy) * p.ow;
            if (CIN4) {
                let iy = oy * p.stride + ky.x - p.pad_top;
                if (iy >= p.h) {
                    continue;
                }
                let xrow = (bi * p.h + iy) * p.w;
                for (var ox = 0u; ox < p.ow; ox++) {
                    let ix = ox * p.stride + kx.x - p.pad_left;
                    let xv = load_a4(((xrow + ix) * p.cin + ci.x) / 4u, ix < p.w);
                    let dv = cout_row_b((dyrow + ox) * p.cout, co);
                    acc0 += xv.x * dv;
                    acc1 += xv.y * dv;
                    acc2 += xv.z * dv;
                    acc3 += xv.w * dv;
                }
            } else {
                let iy = vec4<u32>(oy * p.stride - p.pad_top) + ky;
                let oky = iy < vec4<u32>(p.h);
                let xrow = (vec4<u32>(bi * p.h) + iy) * p.w;
                for (var ox = 0u; ox < p.ow; ox++) {
                    let ix = vec4<u32>(ox * p.stride - p.pad_left) + kx;
                    let ok = oky & (ix < vec4<u32>(p.w));
                    let av = gather_a((xrow + ix) * p.cin + ci, ok);
                    let bv = cout_row_b((dyrow + ox) * p.cout, co);
                    acc0 += av.x * bv;
                    acc1 += av.y * bv;
                    acc2 += av.z * bv;
                    acc3 += av.w * bv;
                }
            }
        }
    }
    store4(COUT4, slice + m0 * p.cout, co0, p.cout, acc0);
    if (m0 + 1u < m) {
        store4(COUT4, slice + (m0 + 1u) * p.cout, co0, p.cout, acc1);
    }
    if (m0 + 2u < m) {
        store4(COUT4, slice + (m0 + 2u) * p.cout, co0, p.cout, acc2);
    }
    if (m0 + 3u < m) {
        store4(COUT4, slice + (m0 + 3u) * p.cout, co0, p.cout, acc3);
    }
}

// The second pass of a split weight gradient: dkernel[i] = the sum over slices s = 0, 1, ...
// (in that order, so the result does not depend on scheduling) of a[s * len + i], where
// `a` holds the first pass's partial sums and len = kh * kw * cin * cout. One invocation per
// element.
@compute @workgroup_size(64)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = params;
    let i = invocation(gid, nwg);
    let len = p.kh * p.kw * p.cin * p.cout;
    if (i >= len) {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += load_a(s * len + i);
    }
    out[i >> 2u][i & 3u] = sum;
}
