//! Entry points of shaders/pool.wgsl: 2-D max pooling (NHWC, valid padding) and its gradient.

use crate::kernels::shader::{Shader, wgsl};
use crate::kernels::{Bind, Family, dispatch_1d, get};
use crate::{Error, Gpu, Result};

/// shaders/pool.wgsl on its own.
pub(crate) const SHADER: Shader = Shader {
    name: "pool",
    parts: &[wgsl!("pool.wgsl")],
};

/// Channels per invocation (the register tile along c).
const CHANNELS_PER_INVOCATION: usize = 4;

/// Mirrors `PoolParams` in shaders/pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PoolParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub blocks: u32,
    pub _pad: u32,
}

impl PoolParams {
    /// Params for input shape `x` (`[n, h, w, c]`), checked with [`pool_out_shape`].
    pub fn new(
        op: &'static str,
        x: &[usize],
        window: [usize; 2],
        stride: [usize; 2],
    ) -> Result<PoolParams> {
        let [n, oh, ow, c] = pool_out_shape(op, x, window, stride)?;
        // Every size is at most the element count, a u32. A stride beyond the input's extent
        // gives one window either way, so it is clamped to the extent to fit a u32.
        let u = |v: usize| v as u32;
        Ok(PoolParams {
            n: u(n),
            h: u(x[1]),
            w: u(x[2]),
            c: u(c),
            oh: u(oh),
            ow: u(ow),
            kh: u(window[0]),
            kw: u(window[1]),
            sh: u(stride[0].min(x[1])),
            sw: u(stride[1].min(x[2])),
            blocks: u(c.div_ceil(CHANNELS_PER_INVOCATION)),
            _pad: 0,
        })
    }

    /// Invocations of `max_pool2d_forward`: one per output pixel and block of 4 channels.
    pub fn forward_invocations(&self) -> u32 {
        self.n * self.oh * self.ow * self.blocks
    }

    /// Invocations of `max_pool2d_backward`: one per input pixel and block of 4 channels.
    pub fn backward_invocations(&self) -> u32 {
        self.n * self.h * self.w * self.blocks
    }
}

/// The output shape `[n, oh, ow, c]` of a max pooling of `x` (`[n, h, w, c]`) with valid
/// padding: `oh = (h - kh) / sh + 1`, `ow = (w - kw) / sw + 1`. Errors name `op`.
pub(crate) fn pool_out_shape(
    op: &'static str,
    x: &[usize],
    window: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 4]> {
    if window.contains(&0) {
        return Err(Error::arg(
            op,
            format!("window {window:?} must be positive in both dimensions"),
        ));
    }
    if stride.contains(&0) {
        return Err(Error::arg(
            op,
            format!("stride {stride:?} must be positive in both dimensions"),
        ));
    }
    let &[n, h, w, c] = x else {
        return Err(Error::shape(
            op,
            format!("expects a 4-D NHWC input, got shape {x:?}"),
        ));
    };
    if window[0] > h || window[1] > w {
        return Err(Error::shape(
            op,
            format!(
                "window {window:?} is larger than the input's spatial size [{h}, {w}] (input {x:?})"
            ),
        ));
    }
    Ok([
        n,
        (h - window[0]) / stride[0] + 1,
        (w - window[1]) / stride[1] + 1,
        c,
    ])
}

/// The pipelines of shaders/pool.wgsl; both bind (params, x, dy, out).
pub(crate) struct Pool {
    pub family: Family,
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
}

impl Pool {
    pub fn new(gpu: &Gpu) -> Result<Pool> {
        let family = Family::new(
            gpu,
            "pool",
            &SHADER,
            &[Bind::Uniform, Bind::Read, Bind::Read, Bind::Write],
        )?;
        Ok(Pool {
            forward: family.pipeline(gpu, "max_pool2d_forward", &[])?,
            backward: family.pipeline(gpu, "max_pool2d_backward", &[])?,
            family,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Pool> {
        get(gpu, &gpu.kernels().pool, Pool::new)
    }

    /// Records `y = max_pool2d(x)`; `io` binds (params, x, x or any read buffer, y), with
    /// `params` the uniform holding `p`.
    pub fn record_forward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &PoolParams,
    ) {
        dispatch_1d(pass, &self.forward, io, p.forward_invocations());
    }

    /// Records `dx = max_pool2d_backward(x, dy)`; `io` binds (params, x, dy, dx). Writes every
    /// element of dx (no zeroing needed).
    pub fn record_backward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        p: &PoolParams,
    ) {
        dispatch_1d(pass, &self.backward, io, p.backward_invocations());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_out_shape_follows_valid_padding() {
        let s = |x: &[usize], k, st| pool_out_shape("t", x, k, st).unwrap();
        assert_eq!(s(&[2, 28, 28, 32], [2, 2], [2, 2]), [2, 14, 14, 32]);
        assert_eq!(s(&[1, 7, 9, 3], [3, 3], [2, 2]), [1, 3, 4, 3]);
        assert_eq!(s(&[1, 5, 5, 1], [2, 3], [1, 2]), [1, 4, 2, 1]);
        assert_eq!(s(&[1, 1, 1, 1], [1, 1], [1, 1]), [1, 1, 1, 1]);
    }
}
