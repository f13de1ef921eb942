//! The step uniform: the Rust twin of `Step` in shaders/step.wgsl.

/// Mirrors `Step` in shaders/step.wgsl: the one per-step host write. Eager calls bind zeros
/// ([`crate::kernels::zero_step`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Step {
    /// The executor's step number: moves every dropout stream by `step * 2^32`, counts in
    /// Adam's bias correction, and is what the non-finite check records (`step + 1`).
    pub step: u32,
    /// The first position of this step's batch in the epoch's permutation.
    pub batch_start: u32,
    /// Test hook for the non-finite stop, read only by pipelines made with `TEST_HOOKS`
    /// ([`crate::Gpu::enable_test_hooks`]): 1 makes the loss NaN, 2 the first checked
    /// gradient.
    pub poison: u32,
    pub _pad: u32,
}
