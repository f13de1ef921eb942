//! Matmul, bias, ReLU and dropout references.

/// `op(a) op(b)` with the transpose conventions of [`crate::ops::matmul`]: returns `[m, n]`.
pub fn matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for kk in 0..k {
                let av = if trans_a {
                    a[kk * m + i]
                } else {
                    a[i * k + kk]
                };
                let bv = if trans_b {
                    b[j * k + kk]
                } else {
                    b[kk * n + j]
                };
                s += f64::from(av) * f64::from(bv);
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// `max(x, 0)`.
pub fn relu(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v).max(0.0)).collect()
}

/// `dy` where `x > 0`, else 0.
pub fn relu_backward(x: &[f32], dy: &[f32]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&x, &d)| if x > 0.0 { f64::from(d) } else { 0.0 })
        .collect()
}

/// `x + b` with `b` broadcast over the last dimension (`x.len()` a multiple of `b.len()`).
pub fn bias_add(x: &[f32], b: &[f32]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) + f64::from(b[i % b.len()]))
        .collect()
}

/// Sum over rows of a `[rows, cols]` matrix: `[cols]`.
pub fn bias_grad(dy: &[f32], cols: usize) -> Vec<f64> {
    let mut s = vec![0.0; cols];
    for (i, &v) in dy.iter().enumerate() {
        s[i % cols] += f64::from(v);
    }
    s
}

/// Inverted dropout with the mask of [`crate::philox::keep`]: `x / (1 - p)` where kept, else
/// 0. Also the backward, applied to `dy`.
pub fn dropout(x: &[f32], p: f32, seed: u64, offset: u64) -> Vec<f64> {
    let scale = if p >= 1.0 {
        0.0
    } else {
        1.0 / (1.0 - f64::from(p))
    };
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if crate::philox::keep(seed, offset, i as u64, p) {
                f64::from(v) * scale
            } else {
                0.0
            }
        })
        .collect()
}
