//! The convolution kernels by name: which one runs a pass, and one pass with the kernel a
//! test asks for.

use super::f32s;
use crate::kernels::conv2d::{Conv2d, Conv2dDims, Conv2dPass};
use crate::spec::Padding;
use crate::{Error, Gpu, Result, Tensor};

/// Which convolution pass [`Timed::conv2d`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPass {
    /// `y = conv2d(x, w)`: binds (x, w, y).
    Forward,
    /// `dx` from `dy`: binds (dy, w, dx).
    BackwardInput,
    /// `dw` from `x` and `dy`: binds (x, dy, dw).
    BackwardWeight,
}

impl ConvPass {
    pub(super) fn pass(self) -> Conv2dPass {
        match self {
            ConvPass::Forward => Conv2dPass::Forward,
            ConvPass::BackwardInput => Conv2dPass::BackwardInput,
            ConvPass::BackwardWeight => Conv2dPass::BackwardWeight,
        }
    }
}

/// Whether `pass` of this convolution runs on the subgroup kernel on `gpu` (else on the
/// 4x4-tile kernel).
///
/// # Errors
/// When the shapes are not a valid convolution or the kernel does not compile.
pub fn conv2d_uses_subgroup(
    gpu: &Gpu,
    pass: ConvPass,
    input_shape: &[usize],
    kernel_shape: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<bool> {
    let d = Conv2dDims::new("conv2d", input_shape, kernel_shape, stride, padding)?;
    Ok(Conv2d::get(gpu)?.subgroup_fits(&d, pass.pass()))
}

/// The convolution kernels a test can ask for by name (every one gives the same bits as the
/// 4x4-tile kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// What the eager ops choose (the staged kernel on GPU adapters where it suits, else the
    /// subgroup one where it fits, else the 4x4-tile one).
    Auto,
    /// The 4x4-tile kernel of shaders/conv2d.wgsl.
    Tile,
    /// The subgroup kernel where [`conv2d_uses_subgroup`], else the 4x4-tile one.
    Subgroup,
    /// The workgroup-staged kernel (shaders/conv2d_staged.wgsl) where [`conv2d_staged_fits`],
    /// else the 4x4-tile one.
    Staged,
}

impl ConvKernel {
    fn kernel(self) -> crate::kernels::conv2d::ConvKernel {
        use crate::kernels::conv2d::ConvKernel as K;
        match self {
            ConvKernel::Auto => K::Auto,
            ConvKernel::Tile => K::Tile,
            ConvKernel::Subgroup => K::Subgroup,
            ConvKernel::Staged => K::Staged,
        }
    }
}

/// Whether `kernel` runs `pass` of this convolution on the staged kernel on `gpu` (compiling
/// it first when `kernel` is [`ConvKernel::Staged`]). With [`ConvKernel::Auto`], whether the
/// default choice is the staged kernel: on GPU adapters only, unless
/// [`conv2d_set_default_kernel`] changed it.
///
/// # Errors
/// When the shapes are not a valid convolution or the kernel does not compile.
pub fn conv2d_runs_staged(
    gpu: &Gpu,
    kernel: ConvKernel,
    pass: ConvPass,
    input_shape: &[usize],
    kernel_shape: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<bool> {
    let d = Conv2dDims::new("conv2d", input_shape, kernel_shape, stride, padding)?;
    let k = Conv2d::get(gpu)?;
    if kernel == ConvKernel::Staged {
        k.staged(gpu)?;
    }
    Ok(k.runs_staged(&d, pass.pass(), kernel.kernel()))
}

/// Whether the staged kernel can run `pass` of this convolution (its workgroup grid is within
/// the dispatch limits): [`conv2d_runs_staged`] with [`ConvKernel::Staged`].
///
/// # Errors
/// As [`conv2d_runs_staged`].
pub fn conv2d_staged_fits(
    gpu: &Gpu,
    pass: ConvPass,
    input_shape: &[usize],
    kernel_shape: &[usize],
    stride: usize,
    padding: Padding,
) -> Result<bool> {
    conv2d_runs_staged(
        gpu,
        ConvKernel::Staged,
        pass,
        input_shape,
        kernel_shape,
        stride,
        padding,
    )
}

/// Sets what the default convolution choice ([`ConvKernel::Auto`]) takes on `gpu`, for the
/// models and eager ops run on `gpu` from now on (the fused epilogue forward follows the same
/// choice): [`ConvKernel::Staged`] as on GPU adapters (the staged kernel where it suits, else
/// as on CPU adapters), [`ConvKernel::Subgroup`] as on CPU adapters (the subgroup kernel where
/// it fits, else the 4x4-tile one), [`ConvKernel::Tile`] the 4x4-tile kernel always,
/// [`ConvKernel::Auto`] the adapter's own default again. For tests, on a `Gpu` of their own.
///
/// # Errors
/// When the staged kernel does not compile.
pub fn conv2d_set_default_kernel(gpu: &Gpu, kernel: ConvKernel) -> Result<()> {
    Conv2d::get(gpu)?.set_default(gpu, kernel.kernel())
}

/// One convolution pass as the eager ops run it (binding `a`, `b` as [`ConvPass`] says),
/// with the kernel `kernel` names.
///
/// # Errors
/// As the eager ops, [`crate::ops::conv2d`] and its gradients.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with_kernel(
    pass: ConvPass,
    a: &Tensor,
    b: &Tensor,
    input_shape: &[usize],
    kernel_shape: &[usize],
    stride: usize,
    padding: Padding,
    kernel: ConvKernel,
) -> Result<Tensor> {
    let op = "conv2d";
    f32s(op, &[a, b])?;
    let d = Conv2dDims::new(op, input_shape, kernel_shape, stride, padding)?;
    let (want_a, want_b, out) = match pass {
        ConvPass::Forward => (d.in_shape(), d.kernel_shape(), d.out_shape()),
        ConvPass::BackwardInput => (d.out_shape(), d.kernel_shape(), d.in_shape()),
        ConvPass::BackwardWeight => (d.in_shape(), d.out_shape(), d.kernel_shape()),
    };
    if a.shape() != want_a || b.shape() != want_b {
        return Err(Error::shape(
            op,
            format!(
                "{pass:?} binds a {:?} and b {:?}, expected {want_a:?} and {want_b:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    crate::ops::conv2d_eager(op, pass.pass(), &d, a, b, out, kernel.kernel())
}
