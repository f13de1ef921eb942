// matmul_loads_portable.wgsl: the operand loads of matmul_forward_sg's k loop
// (shaders/matmul_subgroup.wgsl) as plain vec4<f32> loads, for every device without the
// wide ones (shaders/matmul_loads_wide.wgsl: 64-bit integers and 8 lanes). Joined after
// matmul_subgroup.wgsl by kernels::shader::compose; same values either way.

// b_blocks, as the k loop calls it.
fn b_pair(kk: u32, j0: u32) -> array<mat4x4<f32>, 2> {
    return b_blocks(kk, j0);
}

// The A block at rows i0.., k kk..kk+3 (a_block's). `held` carries blocks loaded ahead
// between calls of one invocation, in order of kk; unused here.
fn a_next(i0: u32, kk: u32, held: ptr<function, array<mat4x4<f32>, 2>>) -> mat4x4<f32> {
    return a_block(i0, kk);
}
