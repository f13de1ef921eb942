// GENERATED IN PART: the regions between `// BEGIN GENERATED` and `// END GENERATED` lines
// are written by shaders/gen_matmul.py (register-tile loops, duplicated by design so every
// accumulator is a named variable). Edit the generator and rerun it, not the regions;
// `python3 shaders/gen_matmul.py --check` fails when they differ from its output.
// matmul.wgsl: C = op(A) op(B) with a fused epilogue (bias, ReLU, Philox dropout).
// op(A) is [m, k]: A itself ([m, k] row-major) or, with TRANS_A, the transpose of A ([k, m]).
// op(B) is [k, n]: B ([k, n]) or, with TRANS_B, the transpose of B ([n, k]).
//
// Register tiling with no workgroup memory and no barriers (lavapipe runs barriers as
// coroutines and every workgroup-memory access as a per-lane loop). An invocation keeps a
// TM x (4 * TN4) tile of C in `acc` and walks K four at a time: it reads a TM x 4 block of
// op(A) and a 4 x (4 * TN4) block of op(B) as 4x4 blocks (`mat4x4`, one vec4 load per column
// where the layout allows; a transposed operand is read along its contiguous axis and
// transposed in registers, which costs nothing), then adds `B block * A row` per row: four
// products summed before they meet the accumulator, so each accumulator is read and written
// once per four k (the accumulators do not fit in registers; this halves the spill traffic).
// Loops run to override constants, so the compiler unrolls them and every `acc` index is a
// constant.
//
// Entry points:
//   matmul_forward      one invocation per TM x 4*TN4 tile, workgroup 8 x 8 invocations.
//   matmul_forward_sg   (shaders/matmul_subgroup.wgsl, appended when the adapter's
//                       subgroups have a fixed 8 or 16 lanes) the lanes of a subgroup share
//                       their TM rows: lane l < TM / 4 loads block l of the A rows and
//                       subgroupBroadcast hands it to the others, so A costs 8 (or 16) times
//                       fewer loads.
//   matmul_forward_tiled (shaders/matmul_tiled.wgsl, always appended) stages blocks of
//                       op(A) and op(B) in workgroup memory for a WG x WG workgroup.
// Overrides: TRANS_A, TRANS_B; TM (rows per invocation, a multiple of 4, at most 32) and TN4
// (vec4 columns per invocation, at most 2); VEC_A, VEC_B, VEC_C: load A / load B / store C
// as aligned vec4s (the host sets them only when the contiguous axis is a multiple of 4:
// A: k, or m with TRANS_A; B: n, or k with TRANS_B; C: n). Otherwise elements are gathered
// one by one, and indices past the edge are clamped and their values zeroed.
// With params.check != 0 (a weight gradient in a training step), every value stored is
// checked for NaN and infinity and a non-finite one reported with that code to the training
// status (shaders/finite.wgsl), so the gradient need not be read again to be checked.
// Bindings: 0 params: MatmulParams (uniform), 1 step: Step (uniform), 2 a (read),
// 3 b (read), 4 bias (read, [n]; any buffer when unused), 5 c (write), 6 status (atomic u32
// [4]; written only with params.check != 0). a, b and c are declared as vec4 arrays (every
// tensor buffer is padded to 16 bytes). The subgroup entry point may add 7 and 8, 64-bit
// views of b and a (shaders/matmul_loads_wide.wgsl).
// Rust module: src/kernels/matmul.rs. Joined after step.wgsl, philox.wgsl (and its mulhilo),
// dropout_mask.wgsl and finite.wgsl.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override TM: u32 = 4u;
override TN4: u32 = 1u;
override VEC_A: bool = false;
override VEC_B: bool = false;
override VEC_C: bool = false;

const EPI_BIAS: u32 = 1u;
const EPI_RELU: u32 = 2u;

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // EPI_BIAS | EPI_RELU.
    flags: u32,
    // 0, or the status code (finite.wgsl) a non-finite output reports.
    check: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    // The dropout of the epilogue (mode DROP_KEEP_ALL: none).
    mask: DropoutMask,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> astatus: array<atomic<u32>>;

const LANES = vec4<u32>(0u, 1u, 2u, 3u);

fn a_elem(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

fn b_elem(i: u32) -> f32 {
    return b[i >> 2u][i & 3u];
}

// op(A)[i, kk..kk+4] for one row i < m, zero past k.
fn a_gather(i: u32, kk: u32) -> vec4<f32> {
    let p = params;
    let ok = vec4<u32>(kk) + LANES < vec4<u32>(p.k);
    let q = min(vec4<u32>(kk) + LANES, vec4<u32>(p.k - 1u));
    var e: vec4<u32>;
    if (TRANS_A) {
        e = q * p.m + vec4<u32>(i);
    } else {
        e = vec4<u32>(i * p.k) + q;
    }
    let v = vec4<f32>(a_elem(e.x), a_elem(e.y), a_elem(e.z), a_elem(e.w));
    return select(vec4<f32>(0.0), v, ok);
}

// The 4x4 block of op(A) at rows i0..i0+3, k kk..kk+3: column c holds row i0 + c over the four
// k. Rows past m are clamped (their results are never stored), k past the end reads zero.
fn a_block(i0: u32, kk: u32) -> mat4x4<f32> {
    let p = params;
    let rows = min(vec4<u32>(i0) + LANES, vec4<u32>(p.m - 1u));
    if (VEC_A && !TRANS_A) {
        // k % 4 == 0: each row's four k are one aligned vec4.
        let k4 = p.k >> 2u;
        let q = kk >> 2u;
        return mat4x4<f32>(a[rows.x * k4 + q], a[rows.y * k4 + q], a[rows.z * k4 + q], a[rows.w * k4 + q]);
    }
    if (VEC_A && TRANS_A) {
        // m % 4 == 0: four rows at one k are one aligned vec4 of A; transpose the 4x4 block.
        let m4 = p.m >> 2u;
        let g = min(i0, p.m - 4u) >> 2u;
        let ks = min(vec4<u32>(kk) + LANES, vec4<u32>(p.k - 1u));
        let ok = vec4<u32>(kk) + LANES < vec4<u32>(p.k);
        let t = mat4x4<f32>(
            select(vec4<f32>(0.0), a[ks.x * m4 + g], ok.x),
            select(vec4<f32>(0.0), a[ks.y * m4 + g], ok.y),
            select(vec4<f32>(0.0), a[ks.z * m4 + g], ok.z),
            select(vec4<f32>(0.0), a[ks.w * m4 + g], ok.w));
        return transpose(t);
    }
    return mat4x4<f32>(a_gather(rows.x, kk), a_gather(rows.y, kk), a_gather(rows.z, kk), a_gather(rows.w, kk));
}

// op(B)[kk + q, j0..j0+4] for one q, columns clamped to n - 1, zero when kk + q >= k.
fn b_gather(kq: u32, j0: u32) -> vec4<f32> {
    let p = params;
    let cols = min(vec4<u32>(j0) + LANES, vec4<u32>(p.n - 1u));
    let kc = min(kq, p.k - 1u);
    var e: vec4<u32>;
    if (TRANS_B) {
        e = cols * p.k + vec4<u32>(kc);
    } else {
        e = vec4<u32>(kc * p.n) + cols;
    }
    let v = vec4<f32>(b_elem(e.x), b_elem(e.y), b_elem(e.z), b_elem(e.w));
    return select(vec4<f32>(0.0), v, kq < p.k);
}

// The 4x4 block of op(B) at k kk..kk+3, columns j0..j0+3: column q holds k = kk + q over the
// four columns.
fn b_block(kk: u32, j0: u32) -> mat4x4<f32> {
    let p = params;
    if (VEC_B && !TRANS_B) {
        // n % 4 == 0: four columns at one k are one aligned vec4.
        let n4 = p.n >> 2u;
        let g = min(j0, p.n - 4u) >> 2u;
        let ks = min(vec4<u32>(kk) + LANES, vec4<u32>(p.k - 1u));
        let ok = vec4<u32>(kk) + LANES < vec4<u32>(p.k);
        return mat4x4<f32>(
            select(vec4<f32>(0.0), b[ks.x * n4 + g], ok.x),
            select(vec4<f32>(0.0), b[ks.y * n4 + g], ok.y),
            select(vec4<f32>(0.0), b[ks.z * n4 + g], ok.z),
            select(vec4<f32>(0.0), b[ks.w * n4 + g], ok.w));
    }
    if (VEC_B && TRANS_B) {
        // k % 4 == 0: one column's four k are one aligned vec4 of B; transpose the block.
        let k4 = p.k >> 2u;
        let q = kk >> 2u;
        let cols = min(vec4<u32>(j0) + LANES, vec4<u32>(p.n - 1u));
        let t = mat4x4<f32>(b[cols.x * k4 + q], b[cols.y * k4 + q], b[cols.z * k4 + q], b[cols.w * k4 + q]);
        return transpose(t);
    }
    return mat4x4<f32>(b_gather(kk, j0), b_gather(kk + 1u, j0), b_gather(kk + 2u, j0), b_gather(kk + 3u, j0));
}

// Bias, ReLU and dropout of one output row segment (4 columns from col0), then the guarded
// store. Returns whether a stored value is not finite (checked only with params.check != 0).
fn store_row(row: u32, col0: u32, acc: vec4<f32>) -> bool {
    let p = params;
    if (row >= p.m || col0 >= p.n) {
        return false;
    }
    let n = p.n;
    var v = acc;
    if ((p.flags & EPI_BIAS) != 0u) {
        let j = min(vec4<u32>(col0) + LANES, vec4<u32>(n - 1u));
        v += vec4<f32>(bias[j.x], bias[j.y], bias[j.z], bias[j.w]);
    }
    if ((p.flags & EPI_RELU) != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    let base = row * n + col0;
    let d = p.mask;
    if (d.mode != DROP_KEEP_ALL) {
        let off = stream_offset(d.offset, step);
        var keep: vec4<bool>;
        if (VEC_C || (base & 3u) == 0u) {
            keep = dropout_keep4(d.seed, off, base >> 2u, d.threshold, d.mode);
        } else {
            keep = vec4<bool>(
                dropout_keep1(d.seed, off, base, d.threshold, d.mode),
                dropout_keep1(d.seed, off, base + 1u, d.threshold, d.mode),
                dropout_keep1(d.seed, off, base + 2u, d.threshold, d.mode),
                dropout_keep1(d.seed, off, base + 3u, d.threshold, d.mode));
        }
        v = select(vec4<f32>(0.0), v * d.scale, keep);
    }
    let bad = p.check != 0u && !lanes_finite(v, n - col0);
    if (VEC_C) {
        // n % 4 == 0, so base is aligned and all four columns are inside the row.
        c[base >> 2u] = v;
        return bad;
    }
    c[base >> 2u][base & 3u] = v.x;
    if (col0 + 1u < n) {
        c[(base + 1u) >> 2u][(base + 1u) & 3u] = v.y;
    }
    if (col0 + 2u < n) {
        c[(base + 2u) >> 2u][(base + 2u) & 3u] = v.z;
    }
    if (col0 + 3u < n) {
        c[(base + 3u) >> 2u][(base + 3u) & 3u] = v.w;
    }
    return bad;
}

// Stores the tile rows row0.. (at most TM, none past m): row r, column group g is
// tile[2 * r + g]. With params.check != 0, one report per invocation that stored a
// non-finite value (or holds element 0 under the test hook).
fn store_tile(row0: u32, col0: u32, tile: ptr<function, array<vec4<f32>, 64>>) {
    // A trip count known only at run time keeps the loop (and the epilogue) rolled.
    let rows = select(0u, min(TM, params.m - row0), row0 < params.m);
    var bad = false;
    for (var r = 0u; r < rows; r++) {
        bad = store_row(row0 + r, col0, (*tile)[2u * r]) || bad;
        if (TN4 > 1u) {
            bad = store_row(row0 + r, col0 + 4u, (*tile)[2u * r + 1u]) || bad;
        }
    }
    let poisoned = test_poison(POISON_GRADIENT) && row0 == 0u && col0 == 0u;
    if (params.check != 0u && (bad || poisoned)) {
        report_non_finite(params.check);
    }
}

@compute @workgroup_size(8, 8)
fn matmul_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * TM;
    let col0 = gid.x * (4u * TN4);
    if (row0 >= params.m || col0 >= params.n) {
        return;
    }
    // BEGIN GENERATED by shaders/gen_matmul.py: accumulators, k loop, stores.
    var acc0_0 = vec4<f32>(0.0); var acc0_1 = vec4<f32>(0.0);
    var acc1_0 = vec4<f32>(0.0); var acc1_1 = vec4<f32>(0.0);
    var acc2_0 = vec4<f32>(0.0); var acc2_1 = vec4<f32>(0.0);
    var acc3_0 = vec4<f32>(0.0); var acc3_1 = vec4<f32>(0.0);
    var acc4_0 = vec4<f32>(0.0); var acc4_1 = vec4<f32>(0.0);
    var acc5_0 = vec4<f32>(0.0); var acc5_1 = vec4<f32>(0.0);
    var acc6_0 = vec4<f32>(0.0); var acc6_1 = vec4<f32>(0.0);
    var acc7_0 = vec4<f32>(0.0); var acc7_1 = vec4<f32>(0.0);
    let steps = (params.k + 3u) >> 2u;
    for (var s = 0u; s < steps; s++) {
        let kk = s * 4u;
        let bb0 = b_block(kk, col0);
        var bb1 = bb0;
        if (TN4 > 1u) {
            bb1 = b_block(kk, col0 + 4u);
        }
        if (TM > 0u) {
            let ab = a_block(row0 + 0u, kk);
            acc0_0 += bb0[0] * ab[0].x + bb0[1] * ab[0].y + bb0[2] * ab[0].z + bb0[3] * ab[0].w;
            if (TN4 > 1u) {
                acc0_1 += bb1[0] * ab[0].x + bb1[1] * ab[0].y + bb1[2] * ab[0].z + bb1[3] * ab[0].w;
            }
            acc1_0 += bb0[0] * ab[1].x + bb0[1] * ab[1].y + bb0[2] * ab[1].z + bb0[3] * ab[1].w;
            if (TN4 > 1u) {
                acc1_1 += bb1[0] * ab[1].x + bb1[1] * ab[1].y + bb1[2] * ab[1].z + bb1[3] * ab[1].w;
            }
            acc2_0 += bb0[0] * ab[2].x + bb0[1] * ab[2].y + bb0[2] * ab[2].z + bb0[3] * ab[2].w;
            if (TN4 > 1u) {
                acc2_1 += bb1[0] * ab[2].x + bb1[1] * ab[2].y + bb1[2] * ab[2].z + bb1[3] * ab[2].w;
            }
            acc3_0 += bb0[0] * ab[3].x + bb0[1] * ab[3].y + bb0[2] * ab[3].z + bb0[3] * ab[3].w;
            if (TN4 > 1u) {
                acc3_1 += bb1[0] * ab[3].x + bb1[1] * ab[3].y + bb1[2] * ab[3].z + bb1[3] * ab[3].w;
            }
        }
        if (TM > 4u) {
            let ab = a_block(row0 + 4u, kk);
            acc4_0 += bb0[0] * ab[0].x + bb0[1] * ab[0].y + bb0[2] * ab[0].z + bb0[3] * ab[0].w;
            if (TN4 > 1u) {
                acc4_1 += bb1[0] * ab[0].x + bb1[1] * ab[0].y + bb1[2] * ab[0].z + bb1[3] * ab[0].w;
            }
            acc5_0 += bb0[0] * ab[1].x + bb0[1] * ab[1].y + bb0[2] * ab[1].z + bb0[3] * ab[1].w;
            if (TN4 > 1u) {
                acc5_1 += bb1[0] * ab[1].x + bb1[1] * ab[1].y + bb1[2] * ab[1].z + bb1[3] * ab[1].w;
            }
            acc6_0 += bb0[0] * ab[2].x + bb0[1] * ab[2].y + bb0[2] * ab[2].z + bb0[3] * ab[2].w;
            if (TN4 > 1u) {
                acc6_1 += bb1[0] * ab[2].x + bb1[1] * ab[2].y + bb1[2] * ab[2].z + bb1[3] * ab[2].w;
            }
            acc7_0 += bb0[0] * ab[3].x + bb0[1] * ab[3].y + bb0[2] * ab[3].z + bb0[3] * ab[3].w;
            if (TN4 > 1u) {
                acc7_1 += bb1[0] * ab[3].x + bb1[1] * ab[3].y + bb1[2] * ab[3].z + bb1[3] * ab[3].w;
            }
        }
    }
    var tile: array<vec4<f32>, 64>;
    tile[0] = acc0_0; tile[1] = acc0_1;
    tile[2] = acc1_0; tile[3] = acc1_1;
    tile[4] = acc2_0; tile[5] = acc2_1;
    tile[6] = acc3_0; tile[7] = acc3_1;
    tile[8] = acc4_0; tile[9] = acc4_1;
    tile[10] = acc5_0; tile[11] = acc5_1;
    tile[12] = acc6_0; tile[13] = acc6_1;
    tile[14] = acc7_0; tile[15] = acc7_1;
    store_tile(row0, col0, &tile);
    // END GENERATED
}
