// conv2d_subgroup_epilogue.wgsl: conv2d_forward_sg with conv2d_epilogue.wgsl's epilogue, for
// the shapes where the unfused forward runs the subgroup kernel (so fused and unfused
// accumulate in the same order and give the same bits).
// Joined after conv2d_subgroup.wgsl and conv2d_epilogue.wgsl; same bindings as the latter.
// Entry point: conv2d_forward_sg_epilogue (forward_sg_tile's tiles). A lane's 32 rows are
// consecutive output pixels, so the channel mask is drawn again only where the image changes.

@compute @workgroup_size(64)
fn conv2d_forward_sg_epilogue(
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
    if (pl.col0 >= p.cout || pl.row0 >= rows) {
        return;
    }
    let hw = p.oh * p.ow;
    let count = min(32u, rows - pl.row0);
    var img = 0xFFFFFFFFu;
    var keep = vec4<bool>(true);
    for (var r = 0u; r < count; r++) {
        let row = pl.row0 + r;
        if (row / hw != img) {
            img = row / hw;
            keep = channel_keep4(img, pl.col0);
        }
        out[(row * p.cout + pl.col0) >> 2u] = epilogue4(tile[r], pl.col0, keep);
    }
}
