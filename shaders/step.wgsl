// step.wgsl: the step uniform, the one host write of a training step, and the test-hook switch.
// A snippet, not a module: joined (kernels::shader::compose) into every shader that binds a
// `Step` (data, dropout, matmul, optim, reduce, batchnorm). Rust twin: src/kernels/step.rs.
// `step` is the executor's step number: a dropout's effective offset is `offset + step * 2^32`
// (dropout_mask.wgsl), Adam's bias correction counts it (optim.wgsl) and the non-finite check
// records `step + 1` (finite.wgsl); `batch_start` is the first position of this step's batch
// in the epoch's permutation (data.wgsl). Eager calls bind zeros.

struct Step {
    step: u32,
    batch_start: u32,
    // Test hook for the non-finite stop, read only when TEST_HOOKS is on: 1 makes the loss
    // NaN, 2 the first checked gradient (finite.wgsl, `test_poison`).
    poison: u32,
    _pad: u32,
}

// Whether the test hooks are compiled in. The host sets it only on a `Gpu` opened for tests
// (`Gpu::enable_test_hooks`); every pipeline of a user's model keeps the default, so the
// driver deletes the hook branches.
override TEST_HOOKS: bool = false;
