// conv2d_staged.wgsl: the workgroup-staged variant of conv2d.wgsl's three implicit GEMMs,
// joined after conv2d.wgsl (whose params, bindings, load_a / load_b and store4 it uses).
// Entry point: conv2d_staged; the override PASS picks the GEMM (0 forward, 1 input gradient,
// 2 weight gradient), CIN4 / COUT4 as in conv2d.wgsl:
//   PASS 0: M = (n, oh, ow) output pixels, N = cout, K = (kh, kw, cin); A = x gathered with
//           padding and stride, B = the kernel as its [K, cout] matrix.
//   PASS 1: M = (n, h, w) input pixels, N = cin, K = (kh, kw, cout); A[m, (tap, co)] =
//           dy[output pixel that reads m through tap, co], zero where no output pixel does
//           (so with stride s, most of K is zeros: the default choice keeps this pass to
//           stride 1), B[(tap, co), ci] = kernel[tap, ci, co].
//   PASS 2: M = (kh, kw, cin), N = cout, K = the (n, oh, ow) of K slice wid.z (images
//           z * per_split ..); A = x gathered as in PASS 0, B = dy as its [n * oh * ow, cout]
//           matrix. With splits > 1 slice z writes block z of the scratch `out`, as
//           conv2d_backward_weight does, and conv2d_backward_weight_reduce adds the slices.
// Workgroup (x, y, z) of 8 x 8 invocations owns the block of 32 GEMM rows by 32 columns at
// (y * 32, x * 32); per stage of 8 k its invocations gather A[32 rows, 8 k] and B[8 k, 32
// columns] one element each at a time (4 of each per invocation, zero past M, N, K and in the
// padding) into workgroup memory, then invocation (lx, ly) updates its 4x4 register tile, rows
// y * 32 + 4 * ly .. + 3 by columns x * 32 + 4 * lx .. + 3.
// Workgroup memory, rows of 8 vec4 padded by one against bank conflicts:
//   sa[kk * 9 + g] = A[rows 4g .. 4g + 3 of the block, k kk of the stage]
//   sb[kk * 9 + j] = B[k kk of the stage, columns 4j .. 4j + 3 of the block]
// Bits: every output is summed over k in conv2d.wgsl's order ((ky, kx, cin) ascending for the
// forward, (ky, kx, cout) for the input gradient, (n, oh, ow) within a K slice for the weight
// gradient), with the same expression: one `acc += a * b` per k, or, where conv2d.wgsl steps
// by four channels (forward with CIN4 and COUT4, input gradient with COUT4), the same
// four-term sum or `dot`s per group of 4 k. Terms conv2d.wgsl skips (taps in the padding, or
// that do not reach an input pixel) are zero products here; adding a zero product to an
// accumulator that is never -0 (it starts at +0) leaves its bits as they are, for finite
// operands. So the outputs equal the 4x4-tile kernel's bit for bit (tests/conv2d.rs).
// Rust module: src/kernels/conv2d.rs.

override PASS: u32 = 0u;
const ST_ROWS: u32 = 32u;
const ST_COLS: u32 = 32u;
const ST_K: u32 = 8u;
// Vec4s per workgroup-memory row (8, padded by 1).
const ST_W: u32 = 9u;

var<workgroup> sa: array<vec4<f32>, 72>;
var<workgroup> sb: array<vec4<f32>, 72>;

// The GEMM of PASS: rows M, columns N, this K slice's k (K) and its first k (k0, over the
// whole of the weight gradient's K), the output block `base` its rows start at.
struct StagedGemm {
    m: u32,
    n: u32,
    k: u32,
    k0: u32,
    base: u32,
}

fn staged_gemm(slice: u32) -> StagedGemm {
    let p = params;
    var g: StagedGemm;
    if (PASS == 0u) {
        g = StagedGemm(p.n * p.oh * p.ow, p.cout, p.kh * p.kw * p.cin, 0u, 0u);
    } else if (PASS == 1u) {
        g = StagedGemm(p.n * p.h * p.w, p.cin, p.kh * p.kw * p.cout, 0u, 0u);
    } else {
        let b0 = slice * p.per_split;
        let b1 = min(b0 + p.per_split, p.n);
        let m = p.kh * p.kw * p.cin;
        g = StagedGemm(m, p.cout, (b1 - b0) * p.oh * p.ow, b0 * p.oh * p.ow, slice * m * p.cout);
    }
    return g;
}

// What A's row m of PASS is, decomposed once per invocation (its rows stay the same in every
// stage): w is 1 when m < M. PASS 0: (image, oy * stride - pad_top, ox * stride - pad_left)
// (u32, wrapping: the sums below wrap back); PASS 1: (image, iy + pad_top, ix + pad_left);
// PASS 2: (ky, kx, ci).
fn staged_row(g: StagedGemm, m: u32) -> vec4<u32> {
    let p = params;
    let ok = u32(m < g.m);
    if (PASS == 0u) {
        let t = m / p.ow;
        return vec4<u32>(t / p.oh, (t % p.oh) * p.stride - p.pad_top, (m % p.ow) * p.stride - p.pad_left, ok);
    } else if (PASS == 1u) {
        let t = m / p.w;
        return vec4<u32>(t / p.h, t % p.h + p.pad_top, m % p.w + p.pad_left, ok);
    }
    let tap = m / p.cin;
    return vec4<u32>(tap / p.kw, tap % p.kw, m % p.cin, ok);
}

// x[bi, iy, ix, ci], zero outside the image (the padding).
fn staged_x(bi: u32, iy: u32, ix: u32, ci: u32) -> f32 {
    let p = params;
    let ok = iy < p.h && ix < p.w;
    return select(0.0, load_a(select(0u, ((bi * p.h + iy) * p.w + ix) * p.cin + ci, ok)), ok);
}

// A[m, k] of PASS for the row `row` = staged_row(g, m) (m < M and k < K of the slice).
fn staged_a(g: StagedGemm, row: vec4<u32>, k: u32) -> f32 {
    let p = params;
    if (PASS == 0u) {
        let tap = k / p.cin;
        return staged_x(row.x, row.y + tap / p.kw, row.z + tap % p.kw, k % p.cin);
    } else if (PASS == 1u) {
        let co = k % p.cout;
        let tap = k / p.cout;
        let ty = row.y;
        let tx = row.z;
        let ky = tap / p.kw;
        let kx = tap % p.kw;
        let oy = (ty - ky) / p.stride;
        let ox = (tx - kx) / p.stride;
        let ok = ty >= ky && tx >= kx && (ty - ky) % p.stride == 0u && (tx - kx) % p.stride == 0u
            && oy < p.oh && ox < p.ow;
        let i = ((row.x * p.oh + oy) * p.ow + ox) * p.cout + co;
        return select(0.0, load_a(select(0u, i, ok)), ok);
    }
    let kg = g.k0 + k;
    let t = kg / p.ow;
    let iy = (t % p.oh) * p.stride + row.x - p.pad_top;
    let ix = (kg % p.ow) * p.stride + row.y - p.pad_left;
    return staged_x(t / p.oh, iy, ix, row.z);
}

// B[k, n] of PASS (k < K of the slice, n < N).
fn staged_b(g: StagedGemm, k: u32, n: u32) -> f32 {
    let p = params;
    if (PASS == 1u) {
        return load_b(((k / p.cout) * p.cin + n) * p.cout + k % p.cout);
    }
    return load_b((g.k0 + k) * g.n + n);
}

// Gathers stage `kbase`'s blocks into sa and sb: invocation li takes elements li + 64 j
// (j < 4) of each, along the operand's contiguous axis where it has one (A: k, except
// rows for the weight gradient, whose rows run along cin; B: columns, except k for the input
// gradient, whose kernel rows run along cout). `rows` are staged_row of its A elements' rows.
fn staged_gather(g: StagedGemm, li: u32, rows: array<vec4<u32>, 4>, n0: u32, kbase: u32) {
    for (var j = 0u; j < 4u; j++) {
        let e = li + 64u * j;
        let r = staged_a_row(e);
        let kk = staged_a_k(e);
        let k = kbase + kk;
        var av = 0.0;
        if (rows[j].w != 0u && k < g.k) {
            av = staged_a(g, rows[j], k);
        }
        sa[kk * ST_W + r / 4u][r % 4u] = av;
        var c = e % ST_COLS;
        var kb = e / ST_COLS;
        if (PASS == 1u) {
            c = e / ST_K;
            kb = e % ST_K;
        }
        let n = n0 + c;
        let kn = kbase + kb;
        var bv = 0.0;
        if (n < g.n && kn < g.k) {
            bv = staged_b(g, kn, n);
        }
        sb[kb * ST_W + c / 4u][c % 4u] = bv;
    }
}

// The block row and the stage's k of A element e = li + 64 j of a stage (the same row in
// every stage).
fn staged_a_row(e: u32) -> u32 {
    return select(e / ST_K, e % ST_ROWS, PASS == 2u);
}

fn staged_a_k(e: u32) -> u32 {
    return select(e % ST_K, e / ST_ROWS, PASS == 2u);
}

// The register tile of invocation (lx, ly) of workgroup `wid` (column r: GEMM row
// wid.y * 32 + 4 * ly + r over columns wid.x * 32 + 4 * lx .. + 3). Every invocation of the
// workgroup calls it (it has barriers).
fn staged_tile(g: StagedGemm, wid: vec3<u32>, lid: vec3<u32>, li: u32) -> mat4x4<f32> {
    let m0 = wid.y * ST_ROWS;
    let n0 = wid.x * ST_COLS;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // The passes where conv2d.wgsl sums four k (channels) at a time.
    let fours = (PASS == 0u && CIN4 && COUT4) || (PASS == 1u && COUT4);
    // The rows of this invocation's A elements, decomposed once.
    var rows: array<vec4<u32>, 4>;
    for (var j = 0u; j < 4u; j++) {
        rows[j] = staged_row(g, m0 + staged_a_row(li + 64u * j));
    }
    for (var kbase = 0u; kbase < g.k; kbase += ST_K) {
        // Nobody still reads the previous stage; then this one is in place.
        workgroupBarrier();
        staged_gather(g, li, rows, n0, kbase);
        workgroupBarrier();
        if (fours) {
            for (var q = 0u; q < ST_K; q += 4u) {
                if (kbase + q < g.k) {
                    let t0 = sa[q * ST_W + lid.y];
                    let t1 = sa[(q + 1u) * ST_W + lid.y];
                    let t2 = sa[(q + 2u) * ST_W + lid.y];
                    let t3 = sa[(q + 3u) * ST_W + lid.y];
                    let w0 = sb[q * ST_W + lid.x];
                    let w1 = sb[(q + 1u) * ST_W + lid.x];
                    let w2 = sb[(q + 2u) * ST_W + lid.x];
                    let w3 = sb[(q + 3u) * ST_W + lid.x];
                    if (PASS == 0u) {
                        // conv2d_forward: x (4 channels per output) times 4 kernel rows.
                        acc0 += t0.x * w0 + t1.x * w1 + t2.x * w2 + t3.x * w3;
                        acc1 += t0.y * w0 + t1.y * w1 + t2.y * w2 + t3.y * w3;
                        acc2 += t0.z * w0 + t1.z * w1 + t2.z * w2 + t3.z * w3;
                        acc3 += t0.w * w0 + t1.w * w1 + t2.w * w2 + t3.w * w3;
                    } else {
                        // conv2d_backward_input: dy (4 cout per pixel) dot the kernel's 4 cout
                        // of each cin.
                        let c0 = vec4<f32>(w0.x, w1.x, w2.x, w3.x);
                        let c1 = vec4<f32>(w0.y, w1.y, w2.y, w3.y);
                        let c2 = vec4<f32>(w0.z, w1.z, w2.z, w3.z);
                        let c3 = vec4<f32>(w0.w, w1.w, w2.w, w3.w);
                        let d0 = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
                        let d1 = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
                        let d2 = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
                        let d3 = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
                        acc0 += vec4<f32>(dot(d0, c0), dot(d0, c1), dot(d0, c2), dot(d0, c3));
                        acc1 += vec4<f32>(dot(d1, c0), dot(d1, c1), dot(d1, c2), dot(d1, c3));
                        acc2 += vec4<f32>(dot(d2, c0), dot(d2, c1), dot(d2, c2), dot(d2, c3));
                        acc3 += vec4<f32>(dot(d3, c0), dot(d3, c1), dot(d3, c2), dot(d3, c3));
                    }
                }
            }
        } else {
            for (var kk = 0u; kk < ST_K; kk++) {
                if (kbase + kk < g.k) {
                    let av = sa[kk * ST_W + lid.y];
                    let bv = sb[kk * ST_W + lid.x];
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

@compute @workgroup_size(8, 8)
fn conv2d_staged(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = staged_gemm(wid.z);
    let acc = staged_tile(g, wid, lid, li);
    let row0 = wid.y * ST_ROWS + 4u * lid.y;
    let c0 = wid.x * ST_COLS + 4u * lid.x;
    if (c0 >= g.n) {
        return;
    }
    // The output's rows run along N: cout (COUT4) or, for the input gradient, cin (CIN4).
    let vec = select(COUT4, CIN4, PASS == 1u);
    for (var r = 0u; r < 4u; r++) {
        if (row0 + r < g.m) {
            store4(vec, g.base + (row0 + r) * g.n, c0, g.n, acc[r]);
        }
    }
}
