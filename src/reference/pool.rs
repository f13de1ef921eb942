//! Max pooling references (NHWC, valid padding).

/// The row-major window position `(ky, kx)` of the first maximum of the window at output
/// pixel `(oy, ox)` of image `img`, channel `ch`: an element replaces the running maximum only
/// when strictly greater, the window's first element seeding it (as the kernel does).
#[allow(clippy::too_many_arguments)]
fn window_argmax(
    x: &[f32],
    shape: [usize; 4],
    window: [usize; 2],
    stride: [usize; 2],
    img: usize,
    oy: usize,
    ox: usize,
    ch: usize,
) -> (usize, usize) {
    let [_, h, w, c] = shape;
    let at = |y: usize, xx: usize| x[((img * h + y) * w + xx) * c + ch];
    let (y0, x0) = (oy * stride[0], ox * stride[1]);
    let mut best = at(y0, x0);
    let mut arg = (0, 0);
    for ky in 0..window[0] {
        for kx in 0..window[1] {
            let v = at(y0 + ky, x0 + kx);
            if v > best {
                best = v;
                arg = (ky, kx);
            }
        }
    }
    arg
}

/// The output shape of a valid max pooling: `[n, (h - kh) / sh + 1, (w - kw) / sw + 1, c]`.
///
/// # Panics
/// Where [`crate::ops::max_pool2d`] returns an error (a zero or too large window, a zero
/// stride); [`max_pool2d`] and [`max_pool2d_backward`] also panic when a slice's length does
/// not match its shape.
pub fn max_pool2d_shape(shape: [usize; 4], window: [usize; 2], stride: [usize; 2]) -> [usize; 4] {
    let [n, h, w, c] = shape;
    assert!(window[0] >= 1 && window[1] >= 1 && stride[0] >= 1 && stride[1] >= 1);
    assert!(window[0] <= h && window[1] <= w);
    [
        n,
        (h - window[0]) / stride[0] + 1,
        (w - window[1]) / stride[1] + 1,
        c,
    ]
}

/// `y[n, oy, ox, c] = max x[n, oy * sh + ky, ox * sw + kx, c]` over `ky < kh`, `kx < kw`;
/// `x` is `[n, h, w, c]`.
pub fn max_pool2d(
    x: &[f32],
    shape: [usize; 4],
    window: [usize; 2],
    stride: [usize; 2],
) -> Vec<f64> {
    let [n, oh, ow, c] = max_pool2d_shape(shape, window, stride);
    let [_, h, w, _] = shape;
    assert_eq!(x.len(), shape.iter().product::<usize>());
    let mut y = Vec::with_capacity(n * oh * ow * c);
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let (ky, kx) = window_argmax(x, shape, window, stride, img, oy, ox, ch);
                    let (iy, ix) = (oy * stride[0] + ky, ox * stride[1] + kx);
                    y.push(f64::from(x[((img * h + iy) * w + ix) * c + ch]));
                }
            }
        }
    }
    y
}

/// The gradient of [`max_pool2d`]: each `dy[n, oy, ox, c]` is added to `dx` at its window's
/// first maximum in row-major window order; `dx` has `x`'s shape, zero elsewhere.
pub fn max_pool2d_backward(
    x: &[f32],
    dy: &[f32],
    shape: [usize; 4],
    window: [usize; 2],
    stride: [usize; 2],
) -> Vec<f64> {
    let [n, oh, ow, c] = max_pool2d_shape(shape, window, stride);
    let [_, h, w, _] = shape;
    assert_eq!(x.len(), shape.iter().product::<usize>());
    assert_eq!(dy.len(), n * oh * ow * c);
    let mut dx = vec![0.0; x.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let (ky, kx) = window_argmax(x, shape, window, stride, img, oy, ox, ch);
                    let (iy, ix) = (oy * stride[0] + ky, ox * stride[1] + kx);
                    dx[((img * h + iy) * w + ix) * c + ch] +=
                        f64::from(dy[((img * oh + oy) * ow + ox) * c + ch]);
                }
            }
        }
    }
    dx
}
