// GENERATED IN PART: the region between `// BEGIN GENERATED` and `// END GENERATED` lines
// is written by shaders/gen_matmul.py (the register-tile updates, one named accumulator per
// row and column group). Edit the generator and rerun it, not the region;
// `python3 shaders/gen_matmul.py --check` fails when it differs from its output.
// matmul_tiled.wgsl: the workgroup-staged variant of matmul_forward, joined after matmul.wgsl
// (whose block loads, epilogue and overrides it uses) in the same module.
// Entry point: matmul_forward_tiled, workgroup WG x WG invocations. Workgroup (x, y) owns the
// block of BM = WG * TM rows by BN = WG * 4 * TN4 columns of C at (y * BM, x * BN). Per stage
// of TILE_BK (8) k, its invocations copy op(A)[BM rows, 8 k] and op(B)[8 k, BN columns] into
// workgroup memory as 4x4 blocks (a_block and b_block of matmul.wgsl: the same vec4 loads,
// clamps and zeros past k as the unstaged kernels; invocation i copies at most one block of
// each, read along the operand's contiguous axis so neighbouring invocations read
// neighbouring addresses), then each invocation updates its TM x 4 * TN4 register tile from
// workgroup memory: rows y * BM + ly * TM .. + TM, column groups x * BN + (lx + g * WG) * 4
// (g < TN4: interleaved, so neighbouring invocations read neighbouring vec4s of `tb`).
// The next stage's blocks are loaded into registers before the current stage's updates (the
// k loop is double-buffered through registers; workgroup memory holds one stage, 8.5 KiB at
// most).
// Workgroup memory layout, padded by one vec4 per row against bank conflicts:
//   ta[r * (TILE_BK / 4 + 1) + q]      = op(A)[row r of the block, k 4q .. 4q + 3]
//   tb[kq * (BN / 4 + 1) + j]          = op(B)[k kq of the stage, columns 4j .. 4j + 3]
// Every output is summed over k in the order of matmul_forward (four k at a time, the same
// expression), and the epilogue is matmul.wgsl's store_row, so the bits are the same as every
// other variant's (tests/dense.rs).
// Overrides: WG (invocations per side, 8 or 16), with TM (4 or 8) and TN4 (1 or 2) such that
// TM * TILE_BK <= 16 * WG and 2 * TN4 <= WG (one block of each operand per invocation).
// Rust module: src/kernels/matmul.rs.

override WG: u32 = 16u;
const TILE_BK: u32 = 8u;
// The rows and columns of a workgroup's block, and its workgroup arrays' lengths.
override TILE_BM: u32 = WG * TM;
override TILE_BN: u32 = WG * 4u * TN4;
override TILE_A_LEN: u32 = TILE_BM * (TILE_BK / 4u + 1u);
override TILE_B_LEN: u32 = TILE_BK * (TILE_BN / 4u + 1u);

var<workgroup> ta: array<vec4<f32>, TILE_A_LEN>;
var<workgroup> tb: array<vec4<f32>, TILE_B_LEN>;

// Invocation `li`'s blocks of a stage: whether it has one, its first row (A) or column (B)
// within the workgroup's block, and its k group (0 or 1).
struct StageBlocks {
    has_a: bool,
    a_row: u32,
    a_q: u32,
    has_b: bool,
    b_col: u32,
    b_q: u32,
}

fn stage_blocks(li: u32) -> StageBlocks {
    var s: StageBlocks;
    let qs = TILE_BK / 4u;
    let a_blocks = (TILE_BM / 4u) * qs;
    let b_blocks = (TILE_BN / 4u) * qs;
    s.has_a = li < a_blocks;
    s.has_b = li < b_blocks;
    // Along A's contiguous axis: m with TRANS_A (block rows fastest), else k.
    if (TRANS_A) {
        s.a_row = 4u * (li % (TILE_BM / 4u));
        s.a_q = li / (TILE_BM / 4u);
    } else {
        s.a_row = 4u * (li / qs);
        s.a_q = li % qs;
    }
    // Along B's: k with TRANS_B, else n.
    if (TRANS_B) {
        s.b_col = 4u * (li / qs);
        s.b_q = li % qs;
    } else {
        s.b_col = 4u * (li % (TILE_BN / 4u));
        s.b_q = li / (TILE_BN / 4u);
    }
    return s;
}

// Writes one stage's blocks (as loaded by a_block and b_block) to workgroup memory.
fn stage_store(s: StageBlocks, ra: mat4x4<f32>, rb: mat4x4<f32>) {
    if (s.has_a) {
        let w = TILE_BK / 4u + 1u;
        ta[(s.a_row + 0u) * w + s.a_q] = ra[0];
        ta[(s.a_row + 1u) * w + s.a_q] = ra[1];
        ta[(s.a_row + 2u) * w + s.a_q] = ra[2];
        ta[(s.a_row + 3u) * w + s.a_q] = ra[3];
    }
    if (s.has_b) {
        let w = TILE_BN / 4u + 1u;
        let j = s.b_col >> 2u;
        let k0 = 4u * s.b_q;
        tb[(k0 + 0u) * w + j] = rb[0];
        tb[(k0 + 1u) * w + j] = rb[1];
        tb[(k0 + 2u) * w + j] = rb[2];
        tb[(k0 + 3u) * w + j] = rb[3];
    }
}

// The four rows r0 .. r0 + 3 of the block over k 4q .. 4q + 3 (column c: row r0 + c), as
// a_block gives them.
fn tile_a(r0: u32, q: u32) -> mat4x4<f32> {
    let w = TILE_BK / 4u + 1u;
    return mat4x4<f32>(ta[r0 * w + q], ta[(r0 + 1u) * w + q], ta[(r0 + 2u) * w + q], ta[(r0 + 3u) * w + q]);
}

// Column group j of the block over k 4q .. 4q + 3 (column c: k 4q + c), as b_block gives it.
fn tile_b(q: u32, j: u32) -> mat4x4<f32> {
    let w = TILE_BN / 4u + 1u;
    let k0 = 4u * q;
    return mat4x4<f32>(tb[k0 * w + j], tb[(k0 + 1u) * w + j], tb[(k0 + 2u) * w + j], tb[(k0 + 3u) * w + j]);
}

// Stores the register tile (row r, group g: tile[2 * r + g], columns col0 + g * 4 * WG), as
// matmul.wgsl's store_tile does for adjacent groups: one non-finite report per invocation.
fn store_tile_tiled(row0: u32, col0: u32, tile: ptr<function, array<vec4<f32>, 64>>) {
    let rows = select(0u, min(TM, params.m - row0), row0 < params.m);
    var bad = false;
    for (var r = 0u; r < rows; r++) {
        bad = store_row(row0 + r, col0, (*tile)[2u * r]) || bad;
        if (TN4 > 1u) {
            bad = store_row(row0 + r, col0 + 4u * WG, (*tile)[2u * r + 1u]) || bad;
        }
    }
    let poisoned = test_poison(POISON_GRADIENT) && row0 == 0u && col0 == 0u;
    if (params.check != 0u && (bad || poisoned)) {
        report_non_finite(params.check);
    }
}

@compute @workgroup_size(WG, WG)
fn matmul_forward_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let bm0 = wid.y * TILE_BM;
    let bn0 = wid.x * TILE_BN;
    let row0 = bm0 + lid.y * TM;
    let col0 = bn0 + 4u * lid.x;
    let sb = stage_blocks(li);
    let stages = (params.k + TILE_BK - 1u) / TILE_BK;
    // Stage 0's blocks; every invocation takes part in every barrier, in or out of range.
    var ra = mat4x4<f32>();
    var rb = mat4x4<f32>();
    if (sb.has_a) {
        ra = a_block(bm0 + sb.a_row, 4u * sb.a_q);
    }
    if (sb.has_b) {
        rb = b_block(4u * sb.b_q, bn0 + sb.b_col);
    }
    // BEGIN GENERATED by shaders/gen_matmul.py: accumulators, stages, stores.
    var acc0_0 = vec4<f32>(0.0); var acc0_1 = vec4<f32>(0.0);
    var acc1_0 = vec4<f32>(0.0); var acc1_1 = vec4<f32>(0.0);
    var acc2_0 = vec4<f32>(0.0); var acc2_1 = vec4<f32>(0.0);
    var acc3_0 = vec4<f32>(0.0); var acc3_1 = vec4<f32>(0.0);
    var acc4_0 = vec4<f32>(0.0); var acc4_1 = vec4<f32>(0.0);
    var acc5_0 = vec4<f32>(0.0); var acc5_1 = vec4<f32>(0.0);
    var acc6_0 = vec4<f32>(0.0); var acc6_1 = vec4<f32>(0.0);
    var acc7_0 = vec4<f32>(0.0); var acc7_1 = vec4<f32>(0.0);
    for (var s = 0u; s < stages; s++) {
        // Nobody still reads the previous stage; then this one is in place.
        workgroupBarrier();
        stage_store(sb, ra, rb);
        workgroupBarrier();
        // The next stage's blocks, loaded while this one is summed.
        if (s + 1u < stages) {
            let kn = (s + 1u) * TILE_BK;
            if (sb.has_a) {
                ra = a_block(bm0 + sb.a_row, kn + 4u * sb.a_q);
            }
            if (sb.has_b) {
                rb = b_block(kn + 4u * sb.b_q, bn0 + sb.b_col);
            }
        }
        for (var q = 0u; q < TILE_BK / 4u; q++) {
            // A group of four k wholly past k is skipped, as the unstaged kernels do.
            if (s * TILE_BK + 4u * q < params.k) {
                let bb0 = tile_b(q, lid.x);
                var bb1 = bb0;
                if (TN4 > 1u) {
                    bb1 = tile_b(q, lid.x + WG);
                }
                if (TM > 0u) {
                    let ab = tile_a(lid.y * TM + 0u, q);
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
                    let ab = tile_a(lid.y * TM + 4u, q);
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
    store_tile_tiled(row0, col0, &tile);    // END GENERATED
}
