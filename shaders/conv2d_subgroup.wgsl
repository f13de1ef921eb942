// GENERATED IN PART: the regions between `// BEGIN GENERATED` and `// END GENERATED` lines
// are written by shaders/gen_matmul.py (register-tile loops, duplicated by design so every
// accumulator is a named variable). Edit the generator and rerun it, not the regions;
// `python3 shaders/gen_matmul.py --check` fails when they differ from its output.
// conv2d_subgroup.wgsl: the forward pass and (stride 1) the input gradient as implicit GEMMs on
// matmul's subgroup tiling (see matmul_subgroup.wgsl), appended to conv2d.wgsl only when the
// adapter's subgroups have a fixed 8 or 16 lanes (the override SG), and used when cin and
// cout are multiples of 4.
// Entry points (workgroup 64 = 64 / SG subgroups; workgroup (x, y) covers GEMM rows
// R x .. with R = 32 * 64 / SG, and columns 4 SG y ..; subgroup s of it rows R x + 32 s ..
// + 32, lane l columns 4 SG y + 4 l .. + 4):
//   conv2d_forward_sg          M = (n, oh, ow) output pixels, N = cout, K = (ky, kx, cin).
//   conv2d_backward_input_sg   stride 1: M = (n, h, w) input pixels, N = cin,
//                              K = (ky, kx, cout); dy is read at oy = iy + pad_top - ky.
//   conv2d_backward_weight_sg  M = (ky, kx, cin), N = cout, K = (n, oh, ow) four output
//                              columns at a time; workgroup z is the K slice (images
//                              z * per_split ..) and, with splits > 1, writes block z of the
//                              scratch `out` for conv2d_backward_weight_reduce (conv2d.wgsl).
// Per four k (four channels of one tap), lane l < 8 reads A block l (its four pixels'
// channels, one vec4 each, zero outside the image; with HALF every lane, block l % 8 of its
// half's rows) and every lane its own 4x4 B block of the kernel; the A blocks reach every
// lane by subgroupBroadcast. Each lane keeps 32 pixels x 4 channels of output.
// Same bindings as conv2d.wgsl; the tile code is written by shaders/gen_matmul.py. The
// forward's tile is computed by forward_sg_tile, which conv2d_subgroup_epilogue.wgsl shares.

override SG: u32 = 8u;
// With 16 lanes only: the subgroup works as two halves of 8 lanes, each on its own 32 rows
// over the same 32 columns (the host sets it where the GEMM has at most 32 columns, which 16
// lanes side by side would leave half idle). A workgroup then covers 256 rows by 32 columns,
// as with 8 lanes, and a lane of half h takes A block p from lane 8h + p.
override HALF: bool = false;

// Where an invocation works: `row0` its first row, `first` its subgroup's first row (the same
// on all its lanes), `col0` its first column, `a_row` the first row of the A block it loads,
// `upper` whether it is in the upper half (HALF).
struct Place {
    row0: u32,
    first: u32,
    col0: u32,
    a_row: u32,
    upper: bool,
}

fn place(wx: u32, wy: u32, li: u32, lane: u32) -> Place {
    let sub = wx * (64u / SG) + li / SG;
    if (HALF) {
        let first = sub * 64u;
        let row0 = first + 32u * (lane / 8u);
        return Place(row0, first, (wy * 8u + lane % 8u) * 4u, row0 + 4u * (lane % 8u), lane >= 8u);
    }
    let row0 = sub * 32u;
    return Place(row0, row0, (wy * SG + lane) * 4u, row0 + 4u * lane, false);
}

// Whether this lane loads an A block: lanes 0 .. 7 do (32 rows = 8 blocks of 4), and all
// of them with HALF. Always true with 8 lanes (SG and HALF are constants: the test folds).
fn loads_a(lane: u32) -> bool {
    return SG == 8u || HALF || lane < 8u;
}

// Stores rows row0 .. row0 + 31 (those below `rows`) of column group col0 of the
// [rows, ncols] output (ncols % 4 == 0) that starts at element `base` of `out`: tile[r] is
// row row0 + r.
fn store_tile_sg(base: u32, row0: u32, rows: u32, col0: u32, ncols: u32, tile: ptr<function, array<vec4<f32>, 32>>) {
    if (col0 >= ncols || row0 >= rows) {
        return;
    }
    // A trip count known only at run time keeps the loop rolled.
    let count = min(32u, rows - row0);
    for (var r = 0u; r < count; r++) {
        out[(base + (row0 + r) * ncols + col0) >> 2u] = (*tile)[r];
    }
}

// The forward tile of the lane at `pl` into `tile` (tile[r] is GEMM row pl.row0 + r over
// columns pl.col0 .. + 3), shared with conv2d_subgroup_epilogue.wgsl; the caller returns
// when its whole subgroup is past the last row (pl.first >= rows, uniform across it).
fn forward_sg_tile(pl: Place, lane: u32, tile: ptr<function, array<vec4<f32>, 32>>) {
    let p = params;
    let rows = p.n * p.oh * p.ow;
    let col0 = pl.col0;
    // The four output pixels of this lane's A block, clamped to the last one.
    let m = min(vec4<u32>(pl.a_row) + LANES, vec4<u32>(rows - 1u));
    let hw = p.oh * p.ow;
    let img = m / hw;
    let rest = m % hw;
    let iy0 = (rest / p.ow) * p.stride - vec4<u32>(p.pad_top);
    let ix0 = (rest % p.ow) * p.stride - vec4<u32>(p.pad_left);
    let cin4 = p.cin / 4u;
    let cout4 = p.cout / 4u;
    // This lane's column group, clamped (lanes past cout load and never store).
    let cb = min(col0, p.cout - 4u) / 4u;
    // BEGIN GENERATED DECLS
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0); var acc4 = vec4<f32>(0.0); var acc5 = vec4<f32>(0.0); var acc6 = vec4<f32>(0.0); var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0); var acc9 = vec4<f32>(0.0); var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0); var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0); var acc14 = vec4<f32>(0.0); var acc15 = vec4<f32>(0.0);
    var acc16 = vec4<f32>(0.0); var acc17 = vec4<f32>(0.0); var acc18 = vec4<f32>(0.0); var acc19 = vec4<f32>(0.0); var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
    var acc24 = vec4<f32>(0.0); var acc25 = vec4<f32>(0.0); var acc26 = vec4<f32>(0.0); var acc27 = vec4<f32>(0.0); var acc28 = vec4<f32>(0.0); var acc29 = vec4<f32>(0.0); var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0);
    // END GENERATED DECLS
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = iy0 + vec4<u32>(ky);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = ix0 + vec4<u32>(kx);
            let ok = (iy < vec4<u32>(p.h)) & (ix < vec4<u32>(p.w));
            let q = ((img * p.h + iy) * p.w + ix) * cin4;
            // Kernel row (ky, kx, ci = 0) of this lane's column group, in vec4s.
            var wq = (ky * p.kw + kx) * p.cin * cout4 + cb;
            for (var c4 = 0u; c4 < cin4; c4++) {
                var mine = mat4x4<f32>();
                if (loads_a(lane)) {
                    mine = mat4x4<f32>(load_a4(q.x + c4, ok.x), load_a4(q.y + c4, ok.y), load_a4(q.z + c4, ok.z), load_a4(q.w + c4, ok.w));
                }
                let bb0 = mat4x4<f32>(b[wq], b[wq + cout4], b[wq + 2u * cout4], b[wq + 3u * cout4]);
                wq += 4u * cout4;
                // BEGIN GENERATED FORWARD UPDATE
                var ab0 = mat4x4<f32>(subgroupBroadcast(mine[0], 0u), subgroupBroadcast(mine[1], 0u), subgroupBroadcast(mine[2], 0u), subgroupBroadcast(mine[3], 0u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 8u), subgroupBroadcast(mine[1], 8u), subgroupBroadcast(mine[2], 8u), subgroupBroadcast(mine[3], 8u));
                    ab0 = mat4x4<f32>(select(ab0[0], hi[0], pl.upper), select(ab0[1], hi[1], pl.upper), select(ab0[2], hi[2], pl.upper), select(ab0[3], hi[3], pl.upper));
                }
                acc0 += bb0[0] * ab0[0].x + bb0[1] * ab0[0].y + bb0[2] * ab0[0].z + bb0[3] * ab0[0].w;
                acc1 += bb0[0] * ab0[1].x + bb0[1] * ab0[1].y + bb0[2] * ab0[1].z + bb0[3] * ab0[1].w;
                acc2 += bb0[0] * ab0[2].x + bb0[1] * ab0[2].y + bb0[2] * ab0[2].z + bb0[3] * ab0[2].w;
                acc3 += bb0[0] * ab0[3].x + bb0[1] * ab0[3].y + bb0[2] * ab0[3].z + bb0[3] * ab0[3].w;
                var ab1 = mat4x4<f32>(subgroupBroadcast(mine[0], 1u), subgroupBroadcast(mine[1], 1u), subgroupBroadcast(mine[2], 1u), subgroupBroadcast(mine[3], 1u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 9u), subgroupBroadcast(mine[1], 9u), subgroupBroadcast(mine[2], 9u), subgroupBroadcast(mine[3], 9u));
                    ab1 = mat4x4<f32>(select(ab1[0], hi[0], pl.upper), select(ab1[1], hi[1], pl.upper), select(ab1[2], hi[2], pl.upper), select(ab1[3], hi[3], pl.upper));
                }
                acc4 += bb0[0] * ab1[0].x + bb0[1] * ab1[0].y + bb0[2] * ab1[0].z + bb0[3] * ab1[0].w;
                acc5 += bb0[0] * ab1[1].x + bb0[1] * ab1[1].y + bb0[2] * ab1[1].z + bb0[3] * ab1[1].w;
                acc6 += bb0[0] * ab1[2].x + bb0[1] * ab1[2].y + bb0[2] * ab1[2].z + bb0[3] * ab1[2].w;
                acc7 += bb0[0] * ab1[3].x + bb0[1] * ab1[3].y + bb0[2] * ab1[3].z + bb0[3] * ab1[3].w;
                var ab2 = mat4x4<f32>(subgroupBroadcast(mine[0], 2u), subgroupBroadcast(mine[1], 2u), subgroupBroadcast(mine[2], 2u), subgroupBroadcast(mine[3], 2u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 10u), subgroupBroadcast(mine[1], 10u), subgroupBroadcast(mine[2], 10u), subgroupBroadcast(mine[3], 10u));
                    ab2 = mat4x4<f32>(select(ab2[0], hi[0], pl.upper), select(ab2[1], hi[1], pl.upper), select(ab2[2], hi[2], pl.upper), select(ab2[3], hi[3], pl.upper));
                }
                acc8 += bb0[0] * ab2[0].x + bb0[1] * ab2[0].y + bb0[2] * ab2[0].z + bb0[3] * ab2[0].w;
                acc9 += bb0[0] * ab2[1].x + bb0[1] * ab2[1].y + bb0[2] * ab2[1].z + bb0[3] * ab2[1].w;
                acc10 += bb0[0] * ab2[2].x + bb0[1] * ab2[2].y + bb0[2] * ab2[2].z + bb0[3] * ab2[2].w;
                acc11 += bb0[0] * ab2[3].x + bb0[1] * ab2[3].y + bb0[2] * ab2[3].z + bb0[3] * ab2[3].w;
                var ab3 = mat4x4<f32>(subgroupBroadcast(mine[0], 3u), subgroupBroadcast(mine[1], 3u), subgroupBroadcast(mine[2], 3u), subgroupBroadcast(mine[3], 3u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 11u), subgroupBroadcast(mine[1], 11u), subgroupBroadcast(mine[2], 11u), subgroupBroadcast(mine[3], 11u));
                    ab3 = mat4x4<f32>(select(ab3[0], hi[0], pl.upper), select(ab3[1], hi[1], pl.upper), select(ab3[2], hi[2], pl.upper), select(ab3[3], hi[3], pl.upper));
                }
                acc12 += bb0[0] * ab3[0].x + bb0[1] * ab3[0].y + bb0[2] * ab3[0].z + bb0[3] * ab3[0].w;
                acc13 += bb0[0] * ab3[1].x + bb0[1] * ab3[1].y + bb0[2] * ab3[1].z + bb0[3] * ab3[1].w;
                acc14 += bb0[0] * ab3[2].x + bb0[1] * ab3[2].y + bb0[2] * ab3[2].z + bb0[3] * ab3[2].w;
                acc15 += bb0[0] * ab3[3].x + bb0[1] * ab3[3].y + bb0[2] * ab3[3].z + bb0[3] * ab3[3].w;
                var ab4 = mat4x4<f32>(subgroupBroadcast(mine[0], 4u), subgroupBroadcast(mine[1], 4u), subgroupBroadcast(mine[2], 4u), subgroupBroadcast(mine[3], 4u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 12u), subgroupBroadcast(mine[1], 12u), subgroupBroadcast(mine[2], 12u), subgroupBroadcast(mine[3], 12u));
                    ab4 = mat4x4<f32>(select(ab4[0], hi[0], pl.upper), select(ab4[1], hi[1], pl.upper), select(ab4[2], hi[2], pl.upper), select(ab4[3], hi[3], pl.upper));
                }
                acc16 += bb0[0] * ab4[0].x + bb0[1] * ab4[0].y + bb0[2] * ab4[0].z + bb0[3] * ab4[0].w;
                acc17 += bb0[0] * ab4[1].x + bb0[1] * ab4[1].y + bb0[2] * ab4[1].z + bb0[3] * ab4[1].w;
                acc18 += bb0[0] * ab4[2].x + bb0[1] * ab4[2].y + bb0[2] * ab4[2].z + bb0[3] * ab4[2].w;
                acc19 += bb0[0] * ab4[3].x + bb0[1] * ab4[3].y + bb0[2] * ab4[3].z + bb0[3] * ab4[3].w;
                var ab5 = mat4x4<f32>(subgroupBroadcast(mine[0], 5u), subgroupBroadcast(mine[1], 5u), subgroupBroadcast(mine[2], 5u), subgroupBroadcast(mine[3], 5u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 13u), subgroupBroadcast(mine[1], 13u), subgroupBroadcast(mine[2], 13u), subgroupBroadcast(mine[3], 13u));
                    ab5 = mat4x4<f32>(select(ab5[0], hi[0], pl.upper), select(ab5[1], hi[1], pl.upper), select(ab5[2], hi[2], pl.upper), select(ab5[3], hi[3], pl.upper));
                }
                acc20 += bb0[0] * ab5[0].x + bb0[1] * ab5[0].y + bb0[2] * ab5[0].z + bb0[3] * ab5[0].w;
                acc21 += bb0[0] * ab5[1].x + bb0[1] * ab5[1].y + bb0[2] * ab5[1].z + bb0[3] * ab5[1].w;
                acc22 += bb0[0] * ab5[2].x + bb0[1] * ab5[2].y + bb0[2] * ab5[2].z + bb0[3] * ab5[2].w;
                acc23 += bb0[0] * ab5[3].x + bb0[1] * ab5[3].y + bb0[2] * ab5[3].z + bb0[3] * ab5[3].w;
                var ab6 = mat4x4<f32>(subgroupBroadcast(mine[0], 6u), subgroupBroadcast(mine[1], 6u), subgroupBroadcast(mine[2], 6u), subgroupBroadcast(mine[3], 6u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 14u), subgroupBroadcast(mine[1], 14u), subgroupBroadcast(mine[2], 14u), subgroupBroadcast(mine[3], 14u));
                    ab6 = mat4x4<f32>(select(ab6[0], hi[0], pl.upper), select(ab6[1], hi[1], pl.upper), select(ab6[2], hi[2], pl.upper), select(ab6[3], hi[3], pl.upper));
                }
                acc24 += bb0[0] * ab6[0].x + bb0[1] * ab6[0].y + bb0[2] * ab6[0].z + bb0[3] * ab6[0].w;
                acc25 += bb0[0] * ab6[1].x + bb0[1] * ab6[1].y + bb0[2] * ab6[1].z + bb0[3] * ab6[1].w;
                acc26 += bb0[0] * ab6[2].x + bb0[1] * ab6[2].y + bb0[2] * ab6[2].z + bb0[3] * ab6[2].w;
                acc27 += bb0[0] * ab6[3].x + bb0[1] * ab6[3].y + bb0[2] * ab6[3].z + bb0[3] * ab6[3].w;
                var ab7 = mat4x4<f32>(subgroupBroadcast(mine[0], 7u), subgroupBroadcast(mine[1], 7u), subgroupBroadcast(mine[2], 7u), subgroupBroadcast(mine[3], 7u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 15u), subgroupBroadcast(mine[1], 15u), subgroupBroadcast(mine[2], 15u), subgroupBroadcast(mine[3], 15u));
                    ab7 = mat4x4<f32>(select(ab7[0], hi[0], pl.upper), select(ab7[1], hi[1], pl.upper), select(ab7[2], hi[2], pl.upper), select(ab7[3], hi[3], pl.upper));
                }
                acc28 += bb0[0] * ab7[0].x + bb0[1] * ab7[0].y + bb0[2] * ab7[0].z + bb0[3] * ab7[0].w;
                acc29 += bb0[0] * ab7[1].x + bb0[1] * ab7[1].y + bb0[2] * ab7[1].z + bb0[3] * ab7[1].w;
                acc30 += bb0[0] * ab7[2].x + bb0[1] * ab7[2].y + bb0[2] * ab7[2].z + bb0[3] * ab7[2].w;
                acc31 += bb0[0] * ab7[3].x + bb0[1] * ab7[3].y + bb0[2] * ab7[3].z + bb0[3] * ab7[3].w;
                // END GENERATED FORWARD UPDATE
            }
        }
    }
    // BEGIN GENERATED FORWARD TILE
    (*tile)[0] = acc0; (*tile)[1] = acc1; (*tile)[2] = acc2; (*tile)[3] = acc3; (*tile)[4] = acc4; (*tile)[5] = acc5; (*tile)[6] = acc6; (*tile)[7] = acc7;
    (*tile)[8] = acc8; (*tile)[9] = acc9; (*tile)[10] = acc10; (*tile)[11] = acc11; (*tile)[12] = acc12; (*tile)[13] = acc13; (*tile)[14] = acc14; (*tile)[15] = acc15;
    (*tile)[16] = acc16; (*tile)[17] = acc17; (*tile)[18] = acc18; (*tile)[19] = acc19; (*tile)[20] = acc20; (*tile)[21] = acc21; (*tile)[22] = acc22; (*tile)[23] = acc23;
    (*tile)[24] = acc24; (*tile)[25] = acc25; (*tile)[26] = acc26; (*tile)[27] = acc27; (*tile)[28] = acc28; (*tile)[29] = acc29; (*tile)[30] = acc30; (*tile)[31] = acc31;
    // END GENERATED FORWARD TILE
}

@compute @workgroup_size(64)
fn conv2d_forward_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let p = params;
    let rows = p.n * p.oh * p.ow;
    let pl = place(wid.x, wid.y, li, lane);
    // A whole subgroup past the last row returns (pl.first is uniform across it).
    if (pl.first >= rows) {
        return;
    }
    var tile: array<vec4<f32>, 32>;
    forward_sg_tile(pl, lane, &tile);
    store_tile_sg(0u, pl.row0, rows, pl.col0, p.cout, &tile);
}

@compute @workgroup_size(64)
fn conv2d_backward_input_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let p = params;
    let rows = p.n * p.h * p.w;
    let pl = place(wid.x, wid.y, li, lane);
    let row0 = pl.row0;
    let col0 = pl.col0;
    let ncols = p.cin;
    if (pl.first >= rows) {
        return;
    }
    // The four input pixels of this lane's A block, clamped to the last one.
    let m = min(vec4<u32>(pl.a_row) + LANES, vec4<u32>(rows - 1u));
    let hw = p.h * p.w;
    let img = m / hw;
    let rest = m % hw;
    // Stride 1: tap (ky, kx) reads dy at (iy + pad_top - ky, ix + pad_left - kx).
    let oy0 = rest / p.w + vec4<u32>(p.pad_top);
    let ox0 = rest % p.w + vec4<u32>(p.pad_left);
    let cout4 = p.cout / 4u;
    let ci0 = min(col0, p.cin - 4u);
    // BEGIN GENERATED DECLS
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0); var acc4 = vec4<f32>(0.0); var acc5 = vec4<f32>(0.0); var acc6 = vec4<f32>(0.0); var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0); var acc9 = vec4<f32>(0.0); var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0); var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0); var acc14 = vec4<f32>(0.0); var acc15 = vec4<f32>(0.0);
    var acc16 = vec4<f32>(0.0); var acc17 = vec4<f32>(0.0); var acc18 = vec4<f32>(0.0); var acc19 = vec4<f32>(0.0); var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
    var acc24 = vec4<f32>(0.0); var acc25 = vec4<f32>(0.0); var acc26 = vec4<f32>(0.0); var acc27 = vec4<f32>(0.0); var acc28 = vec4<f32>(0.0); var acc29 = vec4<f32>(0.0); var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0);
    // END GENERATED DECLS
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = oy0 - vec4<u32>(ky);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = ox0 - vec4<u32>(kx);
            let ok = (oy < vec4<u32>(p.oh)) & (ox < vec4<u32>(p.ow));
            let q = ((img * p.oh + oy) * p.ow + ox) * cout4;
            // Kernel rows (ky, kx, ci0 + j) over cout, in vec4s.
            let wq = ((ky * p.kw + kx) * p.cin + ci0) * cout4;
            for (var c4 = 0u; c4 < cout4; c4++) {
                var mine = mat4x4<f32>();
                if (loads_a(lane)) {
                    mine = mat4x4<f32>(load_a4(q.x + c4, ok.x), load_a4(q.y + c4, ok.y), load_a4(q.z + c4, ok.z), load_a4(q.w + c4, ok.w));
                }
                // Column j of t is input channel ci0 + j over four output channels.
                let t = mat4x4<f32>(b[wq + c4], b[wq + cout4 + c4], b[wq + 2u * cout4 + c4], b[wq + 3u * cout4 + c4]);
                let bb0 = transpose(t);
                // BEGIN GENERATED BACKWARD UPDATE
                var ab0 = mat4x4<f32>(subgroupBroadcast(mine[0], 0u), subgroupBroadcast(mine[1], 0u), subgroupBroadcast(mine[2], 0u), subgroupBroadcast(mine[3], 0u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 8u), subgroupBroadcast(mine[1], 8u), subgroupBroadcast(mine[2], 8u), subgroupBroadcast(mine[3], 8u));
                    ab0 = mat4x4<f32>(select(ab0[0], hi[0], pl.upper), select(ab0[1], hi[1], pl.upper), select(ab0[2], hi[2], pl.upper), select(ab0[3], hi[3], pl.upper));
                }
                acc0 += bb0[0] * ab0[0].x + bb0[1] * ab0[0].y + bb0[2] * ab0[0].z + bb0[3] * ab0[0].w;
                acc1 += bb0[0] * ab0[1].x + bb0[1] * ab0[1].y + bb0[2] * ab0[1].z + bb0[3] * ab0[1].w;
                acc2 += bb0[0] * ab0[2].x + bb0[1] * ab0[2].y + bb0[2] * ab0[2].z + bb0[3] * ab0[2].w;
                acc3 += bb0[0] * ab0[3].x + bb0[1] * ab0[3].y + bb0[2] * ab0[3].z + bb0[3] * ab0[3].w;
                var ab1 = mat4x4<f32>(subgroupBroadcast(mine[0], 1u), subgroupBroadcast(mine[1], 1u), subgroupBroadcast(mine[2], 1u), subgroupBroadcast(mine[3], 1u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 9u), subgroupBroadcast(mine[1], 9u), subgroupBroadcast(mine[2], 9u), subgroupBroadcast(mine[3], 9u));
                    ab1 = mat4x4<f32>(select(ab1[0], hi[0], pl.upper), select(ab1[1], hi[1], pl.upper), select(ab1[2], hi[2], pl.upper), select(ab1[3], hi[3], pl.upper));
                }
                acc4 += bb0[0] * ab1[0].x + bb0[1] * ab1[0].y + bb0[2] * ab1[0].z + bb0[3] * ab1[0].w;
                acc5 += bb0[0] * ab1[1].x + bb0[1] * ab1[1].y + bb0[2] * ab1[1].z + bb0[3] * ab1[1].w;
                acc6 += bb0[0] * ab1[2].x + bb0[1] * ab1[2].y + bb0[2] * ab1[2].z + bb0[3] * ab1[2].w;
                acc7 += bb0[0] * ab1[3].x + bb0[1] * ab1[3].y + bb0[2] * ab1[3].z + bb0[3] * ab1[3].w;
                var ab2 = mat4x4<f32>(subgroupBroadcast(mine[0], 2u), subgroupBroadcast(mine[1], 2u), subgroupBroadcast(mine[2], 2u), subgroupBroadcast(mine[3], 2u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 10u), subgroupBroadcast(mine[1], 10u), subgroupBroadcast(mine[2], 10u), subgroupBroadcast(mine[3], 10u));
                    ab2 = mat4x4<f32>(select(ab2[0], hi[0], pl.upper), select(ab2[1], hi[1], pl.upper), select(ab2[2], hi[2], pl.upper), select(ab2[3], hi[3], pl.upper));
                }
                acc8 += bb0[0] * ab2[0].x + bb0[1] * ab2[0].y + bb0[2] * ab2[0].z + bb0[3] * ab2[0].w;
                acc9 += bb0[0] * ab2[1].x + bb0[1] * ab2[1].y + bb0[2] * ab2[1].z + bb0[3] * ab2[1].w;
                acc10 += bb0[0] * ab2[2].x + bb0[1] * ab2[2].y + bb0[2] * ab2[2].z + bb0[3] * ab2[2].w;
                acc11 += bb0[0] * ab2[3].x + bb0[1] * ab2[3].y + bb0[2] * ab2[3].z + bb0[3] * ab2[3].w;
                var ab3 = mat4x4<f32>(subgroupBroadcast(mine[0], 3u), subgroupBroadcast(mine[1], 3u), subgroupBroadcast(mine[2], 3u), subgroupBroadcast(mine[3], 3u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 11u), subgroupBroadcast(mine[1], 11u), subgroupBroadcast(mine[2], 11u), subgroupBroadcast(mine[3], 11u));
                    ab3 = mat4x4<f32>(select(ab3[0], hi[0], pl.upper), select(ab3[1], hi[1], pl.upper), select(ab3[2], hi[2], pl.upper), select(ab3[3], hi[3], pl.upper));
                }
                acc12 += bb0[0] * ab3[0].x + bb0[1] * ab3[0].y + bb0[2] * ab3[0].z + bb0[3] * ab3[0].w;
                acc13 += bb0[0] * ab3[1].x + bb0[1] * ab3[1].y + bb0[2] * ab3[1].z + bb0[3] * ab3[1].w;
                acc14 += bb0[0] * ab3[2].x + bb0[1] * ab3[2].y + bb0[2] * ab3[2].z + bb0[3] * ab3[2].w;
                acc15 += bb0[0] * ab3[3].x + bb0[1] * ab3[3].y + bb0[2] * ab3[3].z + bb0[3] * ab3[3].w;
                var ab4 = mat4x4<f32>(subgroupBroadcast(mine[0], 4u), subgroupBroadcast(mine[1], 4u), subgroupBroadcast(mine[2], 4u), subgroupBroadcast(mine[3], 4u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 12u), subgroupBroadcast(mine[1], 12u), subgroupBroadcast(mine[2], 12u), subgroupBroadcast(mine[3], 12u));
                    ab4 = mat4x4<f32>(select(ab4[0], hi[0], pl.upper), select(ab4[1], hi[1], pl.upper), select(ab4[2], hi[2], pl.upper), select(ab4[3], hi[3], pl.upper));
                }
                acc16 += bb0[0] * ab4[0].x + bb0[1] * ab4[0].y + bb0[2] * ab4[0].z + bb0[3] * ab4[0].w;
                acc17 += bb0[0] * ab4[1].x + bb0[1] * ab4[1].y + bb0[2] * ab4[1].z + bb0[3] * ab4[1].w;
                acc18 += bb0[0] * ab4[2].x + bb0[1] * ab4[2].y + bb0[2] * ab4[2].z + bb0[3] * ab4[2].w;
                acc19 += bb0[0] * ab4[3].x + bb0[1] * ab4[3].y + bb0[2] * ab4[3].z + bb0[3] * ab4[3].w;
                var ab5 = mat4x4<f32>(subgroupBroadcast(mine[0], 5u), subgroupBroadcast(mine[1], 5u), subgroupBroadcast(mine[2], 5u), subgroupBroadcast(mine[3], 5u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 13u), subgroupBroadcast(mine[1], 13u), subgroupBroadcast(mine[2], 13u), subgroupBroadcast(mine[3], 13u));
                    ab5 = mat4x4<f32>(select(ab5[0], hi[0], pl.upper), select(ab5[1], hi[1], pl.upper), select(ab5[2], hi[2], pl.upper), select(ab5[3], hi[3], pl.upper));
                }
                acc20 += bb0[0] * ab5[0].x + bb0[1] * ab5[0].y + bb0[2] * ab5[0].z + bb0[3] * ab5[0].w;
                acc21 += bb0[0] * ab5[1].x + bb0[1] * ab5[1].y + bb0[2] * ab5[1].z + bb0[3] * ab5[1].w;
                acc22 += bb0[0] * ab5[2].x + bb0[1] * ab5[2].y + bb0[2] * ab5[2].z + bb0[3] * ab5[2].w;
                acc23 += bb0[0] * ab5[3].x + bb0[1] * ab5[3].y + bb0[2] * ab5[3].z + bb0[3] * ab5[3].w;
                var ab6 = mat4x4<f32>(subgroupBroadcast(mine[0], 6u), subgroupBroadcast(mine[1], 6u), subgroupBroadcast(mine[2], 6u), subgroupBroadcast(mine[3], 6u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 14u), subgroupBroadcast(mine[1], 14u), subgroupBroadcast(mine[2], 14u), subgroupBroadcast(mine[3], 14u));
                    ab6 = mat4x4<f32>(select(ab6[0], hi[0], pl.upper), select(ab6[1], hi[1], pl.upper), select(ab6[2], hi[2], pl.upper), select(ab6[3], hi[3], pl.upper));
                }
                acc24 += bb0[0] * ab6[0].x + bb0[1] * ab6[0].y + bb0[2] * ab6[0].z + bb0[3] * ab6[0].w;
                acc25 += bb0[0] * ab6[1].x + bb0[1] * ab6[1].y + bb0[2] * ab6[1].z + bb0[3] * ab6[1].w;
                acc26 += bb0[0] * ab6[2].x + bb0[1] * ab6[2].y + bb0[2] * ab6[2].z + bb0[3] * ab6[2].w;
                acc27 += bb0[0] * ab6[3].x + bb0[1] * ab6[3].y + bb0[2] * ab6[3].z + bb0[3] * ab6[3].w;
                var ab7 = mat4x4<f32>(subgroupBroadcast(mine[0], 7u), subgroupBroadcast(mine[1], 7u), subgroupBroadcast(mine[2], 7u), subgroupBroadcast(mine[3], 7u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 15u), subgroupBroadcast(mine[1], 15u), subgroupBroadcast(mine[2], 15u), subgroupBroadcast(mine[3], 15u));
                    ab7 = mat4x4<f32>(select(ab7[0], hi[0], pl.upper), select(ab7[1], hi[1], pl.upper), select(ab7[2], hi[2], pl.upper), select(ab7[3], hi[3], pl.upper));
                }
                acc28 += bb0[0] * ab7[0].x + bb0[1] * ab7[0].y + bb0[2] * ab7[0].z + bb0[3] * ab7[0].w;
                acc29 += bb0[0] * ab7[1].x + bb0[1] * ab7[1].y + bb0[2] * ab7[1].z + bb0[3] * ab7[1].w;
                acc30 += bb0[0] * ab7[2].x + bb0[1] * ab7[2].y + bb0[2] * ab7[2].z + bb0[3] * ab7[2].w;
                acc31 += bb0[0] * ab7[3].x + bb0[1] * ab7[3].y + bb0[2] * ab7[3].z + bb0[3] * ab7[3].w;
                // END GENERATED BACKWARD UPDATE
            }
        }
    }
    // BEGIN GENERATED STORES
    var tile: array<vec4<f32>, 32>;
    tile[0] = acc0; tile[1] = acc1; tile[2] = acc2; tile[3] = acc3; tile[4] = acc4; tile[5] = acc5; tile[6] = acc6; tile[7] = acc7;
    tile[8] = acc8; tile[9] = acc9; tile[10] = acc10; tile[11] = acc11; tile[12] = acc12; tile[13] = acc13; tile[14] = acc14; tile[15] = acc15;
    tile[16] = acc16; tile[17] = acc17; tile[18] = acc18; tile[19] = acc19; tile[20] = acc20; tile[21] = acc21; tile[22] = acc22; tile[23] = acc23;
    tile[24] = acc24; tile[25] = acc25; tile[26] = acc26; tile[27] = acc27; tile[28] = acc28; tile[29] = acc29; tile[30] = acc30; tile[31] = acc31;
    store_tile_sg(0u, row0, rows, col0, ncols, &tile);
    // END GENERATED STORES
}

@compute @workgroup_size(64)
fn conv2d_backward_weight_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let p = params;
    let rows = p.kh * p.kw * p.cin;
    let pl = place(wid.x, wid.y, li, lane);
    let row0 = pl.row0;
    let col0 = pl.col0;
    let ncols = p.cout;
    if (pl.first >= rows) {
        return;
    }
    let b0 = wid.z * p.per_split;
    let b1 = min(b0 + p.per_split, p.n);
    // This lane's A block: rows r0 .. r0 + 3, four channels of one tap (cin % 4 == 0),
    // clamped to the last block.
    let r0 = min(pl.a_row, rows - 4u);
    let tap = r0 / p.cin;
    let ci0 = r0 % p.cin;
    let ky = tap / p.kw;
    let kx = tap % p.kw;
    let cout4 = p.cout / 4u;
    let cb = min(col0, p.cout - 4u) / 4u;
    // BEGIN GENERATED DECLS
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0); var acc4 = vec4<f32>(0.0); var acc5 = vec4<f32>(0.0); var acc6 = vec4<f32>(0.0); var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0); var acc9 = vec4<f32>(0.0); var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0); var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0); var acc14 = vec4<f32>(0.0); var acc15 = vec4<f32>(0.0);
    var acc16 = vec4<f32>(0.0); var acc17 = vec4<f32>(0.0); var acc18 = vec4<f32>(0.0); var acc19 = vec4<f32>(0.0); var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
    var acc24 = vec4<f32>(0.0); var acc25 = vec4<f32>(0.0); var acc26 = vec4<f32>(0.0); var acc27 = vec4<f32>(0.0); var acc28 = vec4<f32>(0.0); var acc29 = vec4<f32>(0.0); var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0);
    // END GENERATED DECLS
    for (var bi = b0; bi < b1; bi++) {
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = oy * p.stride + ky - p.pad_top;
            let row_ok = vec4<bool>(iy < p.h);
            let xrow = (bi * p.h + iy) * p.w;
            let dyrow = (bi * p.oh + oy) * p.ow;
            for (var ox0 = 0u; ox0 < p.ow; ox0 += 4u) {
                // Four output columns (the four k of this step), zero past the row's end.
                let ox = vec4<u32>(ox0) + LANES;
                let in_row = ox < vec4<u32>(p.ow);
                let ix = ox * p.stride + vec4<u32>(kx - p.pad_left);
                let ok = row_ok & in_row & (ix < vec4<u32>(p.w));
                let q = ((vec4<u32>(xrow) + ix) * p.cin + vec4<u32>(ci0)) >> vec4<u32>(2u);
                // Column j of t is pixel j over the block's four channels.
                var mine = mat4x4<f32>();
                if (loads_a(lane)) {
                    let t = mat4x4<f32>(load_a4(q.x, ok.x), load_a4(q.y, ok.y), load_a4(q.z, ok.z), load_a4(q.w, ok.w));
                    mine = transpose(t);
                }
                let dq = (vec4<u32>(dyrow) + min(ox, vec4<u32>(p.ow - 1u))) * cout4 + vec4<u32>(cb);
                let bb0 = mat4x4<f32>(
                    select(vec4<f32>(0.0), b[dq.x], in_row.x),
                    select(vec4<f32>(0.0), b[dq.y], in_row.y),
                    select(vec4<f32>(0.0), b[dq.z], in_row.z),
                    select(vec4<f32>(0.0), b[dq.w], in_row.w));
                // BEGIN GENERATED WEIGHT UPDATE
                var ab0 = mat4x4<f32>(subgroupBroadcast(mine[0], 0u), subgroupBroadcast(mine[1], 0u), subgroupBroadcast(mine[2], 0u), subgroupBroadcast(mine[3], 0u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 8u), subgroupBroadcast(mine[1], 8u), subgroupBroadcast(mine[2], 8u), subgroupBroadcast(mine[3], 8u));
                    ab0 = mat4x4<f32>(select(ab0[0], hi[0], pl.upper), select(ab0[1], hi[1], pl.upper), select(ab0[2], hi[2], pl.upper), select(ab0[3], hi[3], pl.upper));
                }
                acc0 += bb0[0] * ab0[0].x + bb0[1] * ab0[0].y + bb0[2] * ab0[0].z + bb0[3] * ab0[0].w;
                acc1 += bb0[0] * ab0[1].x + bb0[1] * ab0[1].y + bb0[2] * ab0[1].z + bb0[3] * ab0[1].w;
                acc2 += bb0[0] * ab0[2].x + bb0[1] * ab0[2].y + bb0[2] * ab0[2].z + bb0[3] * ab0[2].w;
                acc3 += bb0[0] * ab0[3].x + bb0[1] * ab0[3].y + bb0[2] * ab0[3].z + bb0[3] * ab0[3].w;
                var ab1 = mat4x4<f32>(subgroupBroadcast(mine[0], 1u), subgroupBroadcast(mine[1], 1u), subgroupBroadcast(mine[2], 1u), subgroupBroadcast(mine[3], 1u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 9u), subgroupBroadcast(mine[1], 9u), subgroupBroadcast(mine[2], 9u), subgroupBroadcast(mine[3], 9u));
                    ab1 = mat4x4<f32>(select(ab1[0], hi[0], pl.upper), select(ab1[1], hi[1], pl.upper), select(ab1[2], hi[2], pl.upper), select(ab1[3], hi[3], pl.upper));
                }
                acc4 += bb0[0] * ab1[0].x + bb0[1] * ab1[0].y + bb0[2] * ab1[0].z + bb0[3] * ab1[0].w;
                acc5 += bb0[0] * ab1[1].x + bb0[1] * ab1[1].y + bb0[2] * ab1[1].z + bb0[3] * ab1[1].w;
                acc6 += bb0[0] * ab1[2].x + bb0[1] * ab1[2].y + bb0[2] * ab1[2].z + bb0[3] * ab1[2].w;
                acc7 += bb0[0] * ab1[3].x + bb0[1] * ab1[3].y + bb0[2] * ab1[3].z + bb0[3] * ab1[3].w;
                var ab2 = mat4x4<f32>(subgroupBroadcast(mine[0], 2u), subgroupBroadcast(mine[1], 2u), subgroupBroadcast(mine[2], 2u), subgroupBroadcast(mine[3], 2u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 10u), subgroupBroadcast(mine[1], 10u), subgroupBroadcast(mine[2], 10u), subgroupBroadcast(mine[3], 10u));
                    ab2 = mat4x4<f32>(select(ab2[0], hi[0], pl.upper), select(ab2[1], hi[1], pl.upper), select(ab2[2], hi[2], pl.upper), select(ab2[3], hi[3], pl.upper));
                }
                acc8 += bb0[0] * ab2[0].x + bb0[1] * ab2[0].y + bb0[2] * ab2[0].z + bb0[3] * ab2[0].w;
                acc9 += bb0[0] * ab2[1].x + bb0[1] * ab2[1].y + bb0[2] * ab2[1].z + bb0[3] * ab2[1].w;
                acc10 += bb0[0] * ab2[2].x + bb0[1] * ab2[2].y + bb0[2] * ab2[2].z + bb0[3] * ab2[2].w;
                acc11 += bb0[0] * ab2[3].x + bb0[1] * ab2[3].y + bb0[2] * ab2[3].z + bb0[3] * ab2[3].w;
                var ab3 = mat4x4<f32>(subgroupBroadcast(mine[0], 3u), subgroupBroadcast(mine[1], 3u), subgroupBroadcast(mine[2], 3u), subgroupBroadcast(mine[3], 3u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 11u), subgroupBroadcast(mine[1], 11u), subgroupBroadcast(mine[2], 11u), subgroupBroadcast(mine[3], 11u));
                    ab3 = mat4x4<f32>(select(ab3[0], hi[0], pl.upper), select(ab3[1], hi[1], pl.upper), select(ab3[2], hi[2], pl.upper), select(ab3[3], hi[3], pl.upper));
                }
                acc12 += bb0[0] * ab3[0].x + bb0[1] * ab3[0].y + bb0[2] * ab3[0].z + bb0[3] * ab3[0].w;
                acc13 += bb0[0] * ab3[1].x + bb0[1] * ab3[1].y + bb0[2] * ab3[1].z + bb0[3] * ab3[1].w;
                acc14 += bb0[0] * ab3[2].x + bb0[1] * ab3[2].y + bb0[2] * ab3[2].z + bb0[3] * ab3[2].w;
                acc15 += bb0[0] * ab3[3].x + bb0[1] * ab3[3].y + bb0[2] * ab3[3].z + bb0[3] * ab3[3].w;
                var ab4 = mat4x4<f32>(subgroupBroadcast(mine[0], 4u), subgroupBroadcast(mine[1], 4u), subgroupBroadcast(mine[2], 4u), subgroupBroadcast(mine[3], 4u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 12u), subgroupBroadcast(mine[1], 12u), subgroupBroadcast(mine[2], 12u), subgroupBroadcast(mine[3], 12u));
                    ab4 = mat4x4<f32>(select(ab4[0], hi[0], pl.upper), select(ab4[1], hi[1], pl.upper), select(ab4[2], hi[2], pl.upper), select(ab4[3], hi[3], pl.upper));
                }
                acc16 += bb0[0] * ab4[0].x + bb0[1] * ab4[0].y + bb0[2] * ab4[0].z + bb0[3] * ab4[0].w;
                acc17 += bb0[0] * ab4[1].x + bb0[1] * ab4[1].y + bb0[2] * ab4[1].z + bb0[3] * ab4[1].w;
                acc18 += bb0[0] * ab4[2].x + bb0[1] * ab4[2].y + bb0[2] * ab4[2].z + bb0[3] * ab4[2].w;
                acc19 += bb0[0] * ab4[3].x + bb0[1] * ab4[3].y + bb0[2] * ab4[3].z + bb0[3] * ab4[3].w;
                var ab5 = mat4x4<f32>(subgroupBroadcast(mine[0], 5u), subgroupBroadcast(mine[1], 5u), subgroupBroadcast(mine[2], 5u), subgroupBroadcast(mine[3], 5u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 13u), subgroupBroadcast(mine[1], 13u), subgroupBroadcast(mine[2], 13u), subgroupBroadcast(mine[3], 13u));
                    ab5 = mat4x4<f32>(select(ab5[0], hi[0], pl.upper), select(ab5[1], hi[1], pl.upper), select(ab5[2], hi[2], pl.upper), select(ab5[3], hi[3], pl.upper));
                }
                acc20 += bb0[0] * ab5[0].x + bb0[1] * ab5[0].y + bb0[2] * ab5[0].z + bb0[3] * ab5[0].w;
                acc21 += bb0[0] * ab5[1].x + bb0[1] * ab5[1].y + bb0[2] * ab5[1].z + bb0[3] * ab5[1].w;
                acc22 += bb0[0] * ab5[2].x + bb0[1] * ab5[2].y + bb0[2] * ab5[2].z + bb0[3] * ab5[2].w;
                acc23 += bb0[0] * ab5[3].x + bb0[1] * ab5[3].y + bb0[2] * ab5[3].z + bb0[3] * ab5[3].w;
                var ab6 = mat4x4<f32>(subgroupBroadcast(mine[0], 6u), subgroupBroadcast(mine[1], 6u), subgroupBroadcast(mine[2], 6u), subgroupBroadcast(mine[3], 6u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 14u), subgroupBroadcast(mine[1], 14u), subgroupBroadcast(mine[2], 14u), subgroupBroadcast(mine[3], 14u));
                    ab6 = mat4x4<f32>(select(ab6[0], hi[0], pl.upper), select(ab6[1], hi[1], pl.upper), select(ab6[2], hi[2], pl.upper), select(ab6[3], hi[3], pl.upper));
                }
                acc24 += bb0[0] * ab6[0].x + bb0[1] * ab6[0].y + bb0[2] * ab6[0].z + bb0[3] * ab6[0].w;
                acc25 += bb0[0] * ab6[1].x + bb0[1] * ab6[1].y + bb0[2] * ab6[1].z + bb0[3] * ab6[1].w;
                acc26 += bb0[0] * ab6[2].x + bb0[1] * ab6[2].y + bb0[2] * ab6[2].z + bb0[3] * ab6[2].w;
                acc27 += bb0[0] * ab6[3].x + bb0[1] * ab6[3].y + bb0[2] * ab6[3].z + bb0[3] * ab6[3].w;
                var ab7 = mat4x4<f32>(subgroupBroadcast(mine[0], 7u), subgroupBroadcast(mine[1], 7u), subgroupBroadcast(mine[2], 7u), subgroupBroadcast(mine[3], 7u));
                if (HALF) {
                    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], 15u), subgroupBroadcast(mine[1], 15u), subgroupBroadcast(mine[2], 15u), subgroupBroadcast(mine[3], 15u));
                    ab7 = mat4x4<f32>(select(ab7[0], hi[0], pl.upper), select(ab7[1], hi[1], pl.upper), select(ab7[2], hi[2], pl.upper), select(ab7[3], hi[3], pl.upper));
                }
                acc28 += bb0[0] * ab7[0].x + bb0[1] * ab7[0].y + bb0[2] * ab7[0].z + bb0[3] * ab7[0].w;
                acc29 += bb0[0] * ab7[1].x + bb0[1] * ab7[1].y + bb0[2] * ab7[1].z + bb0[3] * ab7[1].w;
                acc30 += bb0[0] * ab7[2].x + bb0[1] * ab7[2].y + bb0[2] * ab7[2].z + bb0[3] * ab7[2].w;
                acc31 += bb0[0] * ab7[3].x + bb0[1] * ab7[3].y + bb0[2] * ab7[3].z + bb0[3] * ab7[3].w;
                // END GENERATED WEIGHT UPDATE
            }
        }
    }
    // BEGIN GENERATED WSTORES
    var tile: array<vec4<f32>, 32>;
    tile[0] = acc0; tile[1] = acc1; tile[2] = acc2; tile[3] = acc3; tile[4] = acc4; tile[5] = acc5; tile[6] = acc6; tile[7] = acc7;
    tile[8] = acc8; tile[9] = acc9; tile[10] = acc10; tile[11] = acc11; tile[12] = acc12; tile[13] = acc13; tile[14] = acc14; tile[15] = acc15;
    tile[16] = acc16; tile[17] = acc17; tile[18] = acc18; tile[19] = acc19; tile[20] = acc20; tile[21] = acc21; tile[22] = acc22; tile[23] = acc23;
    tile[24] = acc24; tile[25] = acc25; tile[26] = acc26; tile[27] = acc27; tile[28] = acc28; tile[29] = acc29; tile[30] = acc30; tile[31] = acc31;
    store_tile_sg(wid.z * rows * ncols, row0, rows, col0, ncols, &tile);
    // END GENERATED WSTORES
}
