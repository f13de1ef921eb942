//! 2-D convolution references: direct loops over every (output position, kernel tap) pair,
//! the gradients as the exact transposes of the forward loop (each term scattered back to the
//! input or kernel element it read). Independent of the GPU's implicit-GEMM formulation.
//!
//! Shapes: `x` NHWC `[n, h, w, cin]`, kernel HWIO `[kh, kw, cin, cout]`, output NHWC
//! `[n, oh, ow, cout]`. These functions panic on shapes that do not fit (they are test
//! references; [`crate::ops::conv2d`] validates).

use crate::spec::Padding;

/// Keras/TensorFlow `"same"` padding along one axis: returns `(out, pad_before)` with
/// `out = ceil(in_size / stride)` and `pad_before` half (rounded down) of the total
/// `max((out - 1) * stride + k - in_size, 0)`; the rest of the padding comes after.
pub fn same_padding(in_size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = in_size.div_ceil(stride);
    let needed = (out - 1) * stride + k;
    let total = needed.saturating_sub(in_size);
    (out, total / 2)
}

/// `(out, pad_before)` along one axis for `padding` (Valid: `((in_size - k) / stride + 1, 0)`).
pub fn conv_axis(in_size: usize, k: usize, stride: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => {
            assert!(in_size >= k, "kernel {k} larger than input {in_size}");
            ((in_size - k) / stride + 1, 0)
        }
        Padding::Same => same_padding(in_size, k, stride),
    }
}

/// The NHWC output shape of a convolution of `x_shape` with HWIO `w_shape`.
pub fn conv2d_output_shape(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    stride: usize,
    padding: Padding,
) -> [usize; 4] {
    assert_eq!(x_shape[3], w_shape[2], "channel counts differ");
    let (oh, _) = conv_axis(x_shape[1], w_shape[0], stride, padding);
    let (ow, _) = conv_axis(x_shape[2], w_shape[1], stride, padding);
    [x_shape[0], oh, ow, w_shape[3]]
}

/// Calls `f(x_index, w_index, y_index)` for every product term of the convolution: output
/// `(b, oy, ox, co)` gets `x[b, iy, ix, ci] * w[ky, kx, ci, co]` for every tap whose input
/// position `(iy, ix) = (oy*stride + ky - pad_top, ox*stride + kx - pad_left)` is inside the
/// image (positions in the padding contribute zero and are skipped).
fn for_each_term(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    stride: usize,
    padding: Padding,
    mut f: impl FnMut(usize, usize, usize),
) {
    let [n, h, w, cin] = x_shape;
    let [kh, kw, _, cout] = w_shape;
    let [_, oh, ow, _] = conv2d_output_shape(x_shape, w_shape, stride, padding);
    let (_, pad_top) = conv_axis(h, kh, stride, padding);
    let (_, pad_left) = conv_axis(w, kw, stride, padding);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kh {
                    let iy = (oy * stride + ky) as isize - pad_top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * stride + kx) as isize - pad_left as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        for ci in 0..cin {
                            let xi = ((b * h + iy) * w + ix) * cin + ci;
                            for co in 0..cout {
                                let wi = ((ky * kw + kx) * cin + ci) * cout + co;
                                let yi = ((b * oh + oy) * ow + ox) * cout + co;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[b, oy, ox, co] = sum over ky, kx, ci of x[b, oy*stride + ky - pad_top,
/// ox*stride + kx - pad_left, ci] * w[ky, kx, ci, co]` (zero outside the image); returns the
/// `[n, oh, ow, cout]` output, shape from [`conv2d_output_shape`].
pub fn conv2d(
    x: &[f32],
    x_shape: [usize; 4],
    w: &[f32],
    w_shape: [usize; 4],
    stride: usize,
    padding: Padding,
) -> Vec<f64> {
    let out = conv2d_output_shape(x_shape, w_shape, stride, padding);
    let mut y = vec![0.0; out.iter().product()];
    for_each_term(x_shape, w_shape, stride, padding, |xi, wi, yi| {
        y[yi] += f64::from(x[xi]) * f64::from(w[wi]);
    });
    y
}

/// The gradient of [`conv2d`] with respect to `x` (shape `x_shape`): every forward term
/// `x[xi] * w[wi] -> y[yi]` adds `dy[yi] * w[wi]` to `dx[xi]`.
pub fn conv2d_backward_input(
    dy: &[f32],
    w: &[f32],
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    stride: usize,
    padding: Padding,
) -> Vec<f64> {
    let mut dx = vec![0.0; x_shape.iter().product()];
    for_each_term(x_shape, w_shape, stride, padding, |xi, wi, yi| {
        dx[xi] += f64::from(dy[yi]) * f64::from(w[wi]);
    });
    dx
}

/// The gradient of [`conv2d`] with respect to the kernel (shape `w_shape`): every forward
/// term `x[xi] * w[wi] -> y[yi]` adds `x[xi] * dy[yi]` to `dw[wi]`.
pub fn conv2d_backward_weight(
    x: &[f32],
    dy: &[f32],
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    stride: usize,
    padding: Padding,
) -> Vec<f64> {
    let mut dw = vec![0.0; w_shape.iter().product()];
    for_each_term(x_shape, w_shape, stride, padding, |xi, wi, yi| {
        dw[wi] += f64::from(x[xi]) * f64::from(dy[yi]);
    });
    dw
}
