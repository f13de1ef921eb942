//! Entry points of shaders/pool.wgsl: 2-D max pooling (NHWC, valid padding) and its gradient.

use crate::kernels::{Bind, Family, dispatch_1d, get, run, uniform};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

pub(crate) const SOURCE: &str = include_str!("../../shaders/pool.wgsl");

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
            SOURCE,
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

/// 2-D max pooling of `x` (`[n, h, w, c]`, NHWC) with a `window` of `[kh, kw]` pixels moved by
/// `stride` `[sh, sw]`, valid padding (Keras `MaxPooling2D(pool_size=window, strides=stride)`;
/// Keras' default is window `[2, 2]` with the stride equal to the window). Returns
/// `[n, (h - kh) / sh + 1, (w - kw) / sw + 1, c]`.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let gpu = wgnn::Gpu::software()?;
/// let x = wgnn::Tensor::from_slice(&gpu, &[1.0, 5.0, 3.0, 2.0], &[1, 2, 2, 1])?;
/// let y = wgnn::ops::max_pool2d(&x, [2, 2], [2, 2])?;
/// assert_eq!(y.shape(), [1, 1, 1, 1]);
/// assert_eq!(y.to_vec()?, vec![5.0]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When `x` is not a 4-D f32 tensor, a window or stride dimension is 0, or the window is
/// larger than the input's height or width.
pub fn max_pool2d(x: &Tensor, window: [usize; 2], stride: [usize; 2]) -> Result<Tensor> {
    let op = "max_pool2d";
    let p = PoolParams::new(op, x.shape(), window, stride)?;
    x.expect(DType::F32, op)?;
    let gpu = x.gpu();
    let k = Pool::get(gpu)?;
    let shape = [p.n as usize, p.oh as usize, p.ow as usize, p.c as usize];
    let y = Tensor::empty(gpu, op, &shape, DType::F32)?;
    let params = uniform(gpu, op, &p);
    let io = k
        .family
        .bind(gpu, &[&params, x.buffer(), x.buffer(), y.buffer()]);
    run(gpu, op, |pass| k.record_forward(pass, &io, &p))?;
    Ok(y)
}

/// The gradient of [`max_pool2d`] with respect to `x`: each element of `dy`
/// (`[n, oh, ow, c]`, the forward's output shape) is added to the position of its window's
/// maximum in `x`; where a window holds its maximum more than once, the first in row-major
/// window order (top row first, left to right) receives it. Overlapping windows
/// (`stride < window`) add up. Returns `dx` shaped like `x`; pixels in no window get 0.
///
/// # Errors
/// As [`max_pool2d`], and when `dy` is not f32 or its shape is not the forward's output shape.
pub fn max_pool2d_backward(
    x: &Tensor,
    dy: &Tensor,
    window: [usize; 2],
    stride: [usize; 2],
) -> Result<Tensor> {
    let op = "max_pool2d_backward";
    let p = PoolParams::new(op, x.shape(), window, stride)?;
    x.expect(DType::F32, op)?;
    dy.expect(DType::F32, op)?;
    x.same_gpu(dy, op)?;
    let want = [p.n as usize, p.oh as usize, p.ow as usize, p.c as usize];
    if dy.shape() != want {
        return Err(Error::shape(
            op,
            format!(
                "dy has shape {:?}, expected {want:?} (x {:?}, window {window:?}, stride {stride:?})",
                dy.shape(),
                x.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let k = Pool::get(gpu)?;
    let dx = Tensor::empty(gpu, op, x.shape(), DType::F32)?;
    let params = uniform(gpu, op, &p);
    let io = k
        .family
        .bind(gpu, &[&params, x.buffer(), dy.buffer(), dx.buffer()]);
    run(gpu, op, |pass| k.record_backward(pass, &io, &p))?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_params_layout_matches_wgsl() {
        let module = wgpu::naga::front::wgsl::parse_str(SOURCE).expect("pool.wgsl parses");
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("PoolParams"))
            .expect("PoolParams in pool.wgsl");
        let wgpu::naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("PoolParams is not a struct");
        };
        assert_eq!(*span as usize, size_of::<PoolParams>());
        let names = [
            "n", "h", "w", "c", "oh", "ow", "kh", "kw", "sh", "sw", "blocks", "_pad",
        ];
        assert_eq!(members.len(), names.len());
        for (i, (m, name)) in members.iter().zip(names).enumerate() {
            assert_eq!(m.name.as_deref(), Some(name));
            assert_eq!(m.offset as usize, 4 * i, "{name}");
        }
        wgpu::naga::valid::Validator::new(
            wgpu::naga::valid::ValidationFlags::all(),
            wgpu::naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .expect("pool.wgsl validates");
    }

    #[test]
    fn pool_out_shape_follows_valid_padding() {
        let s = |x: &[usize], k, st| pool_out_shape("t", x, k, st).unwrap();
        assert_eq!(s(&[2, 28, 28, 32], [2, 2], [2, 2]), [2, 14, 14, 32]);
        assert_eq!(s(&[1, 7, 9, 3], [3, 3], [2, 2]), [1, 3, 4, 3]);
        assert_eq!(s(&[1, 5, 5, 1], [2, 3], [1, 2]), [1, 4, 2, 1]);
        assert_eq!(s(&[1, 1, 1, 1], [1, 1], [1, 1]), [1, 1, 1, 1]);
    }
}
