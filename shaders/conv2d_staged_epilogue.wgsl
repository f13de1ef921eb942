// conv2d_staged_epilogue.wgsl: conv2d_staged's forward (PASS 0) with conv2d_epilogue.wgsl's
// epilogue, for the shapes where the unfused forward runs the staged kernel (so fused and
// unfused accumulate in the same order and give the same bits).
// Joined after conv2d_staged.wgsl and conv2d_epilogue.wgsl; same bindings as the latter.
// Entry point: conv2d_staged_forward_epilogue (conv2d_staged's workgroups, PASS 0 only). The
// four rows of a tile are consecutive output pixels, possibly of two images, so each row
// draws its image's channel mask.
// Rust module: src/kernels/conv2d_epilogue.rs.

@compute @workgroup_size(8, 8)
fn conv2d_staged_forward_epilogue(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let p = params;
    let g = staged_gemm(0u);
    let acc = staged_tile(g, wid, lid, li);
    let row0 = wid.y * ST_ROWS + 4u * lid.y;
    let c0 = wid.x * ST_COLS + 4u * lid.x;
    if (c0 >= p.cout) {
        return;
    }
    let hw = p.oh * p.ow;
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        if (row < g.m) {
            let keep = channel_keep4(row / hw, c0);
            store4(COUT4, row * p.cout, c0, p.cout, epilogue4(acc[r], c0, keep));
        }
    }
}
