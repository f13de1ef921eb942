//! Batch normalization references over the last axis (Keras `BatchNormalization(axis=-1)`):
//! `x` is `[rows, channels]` row-major (NHWC flattened), per-channel vectors are `[channels]`.

/// Per-channel mean and biased variance (divided by `rows`) of `x`, two passes in f64.
pub fn batch_norm_moments(x: &[f32], channels: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = x.len() / channels;
    let mut mean = vec![0.0; channels];
    for (i, &v) in x.iter().enumerate() {
        mean[i % channels] += f64::from(v);
    }
    for m in &mut mean {
        *m /= rows as f64;
    }
    let mut var = vec![0.0; channels];
    for (i, &v) in x.iter().enumerate() {
        let d = f64::from(v) - mean[i % channels];
        var[i % channels] += d * d;
    }
    for v in &mut var {
        *v /= rows as f64;
    }
    (mean, var)
}

/// Training mode: `y = (x - mean) / sqrt(var + epsilon) * gamma + beta` with the batch's
/// mean and biased variance. Returns `(y, mean, inv_std)`, `inv_std = 1 / sqrt(var + epsilon)`.
pub fn batch_norm_train(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    channels: usize,
    epsilon: f32,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = batch_norm_moments(x, channels);
    let inv_std: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v + f64::from(epsilon)).sqrt())
        .collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % channels;
            (f64::from(v) - mean[c]) * inv_std[c] * f64::from(gamma[c]) + f64::from(beta[c])
        })
        .collect();
    (y, mean, inv_std)
}

/// Inference mode: `y = (x - moving_mean) / sqrt(moving_var + epsilon) * gamma + beta`.
pub fn batch_norm_inference(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    moving_mean: &[f32],
    moving_var: &[f32],
    epsilon: f32,
) -> Vec<f64> {
    let channels = gamma.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % channels;
            let inv_std = 1.0 / (f64::from(moving_var[c]) + f64::from(epsilon)).sqrt();
            (f64::from(v) - f64::from(moving_mean[c])) * inv_std * f64::from(gamma[c])
                + f64::from(beta[c])
        })
        .collect()
}

/// The backward of [`batch_norm_train`] given its `mean` and `inv_std`: with
/// `xhat = (x - mean) * inv_std` and sums over rows, `dbeta = sum(dy)`,
/// `dgamma = sum(dy * xhat)`, `dx = gamma * inv_std * (dy - (dbeta + xhat * dgamma) / rows)`.
/// Returns `(dx, dgamma, dbeta)`.
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let channels = gamma.len();
    let rows = (x.len() / channels) as f64;
    let xhat = |i: usize| {
        let c = i % channels;
        (f64::from(x[i]) - f64::from(mean[c])) * f64::from(inv_std[c])
    };
    let mut dgamma = vec![0.0; channels];
    let mut dbeta = vec![0.0; channels];
    for (i, &g) in dy.iter().enumerate() {
        dgamma[i % channels] += f64::from(g) * xhat(i);
        dbeta[i % channels] += f64::from(g);
    }
    let dx = dy
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            let c = i % channels;
            f64::from(gamma[c])
                * f64::from(inv_std[c])
                * (f64::from(g) - (dbeta[c] + xhat(i) * dgamma[c]) / rows)
        })
        .collect();
    (dx, dgamma, dbeta)
}

/// Keras' moving update: `moving * momentum + batch * (1 - momentum)` for the mean and for the
/// biased variance `var = max(1 / inv_std^2 - epsilon, 0)`. Returns the new
/// `(moving_mean, moving_var)`.
pub fn batch_norm_update_moving(
    moving_mean: &[f32],
    moving_var: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    momentum: f32,
    epsilon: f32,
) -> (Vec<f64>, Vec<f64>) {
    let mom = f64::from(momentum);
    let mm = moving_mean
        .iter()
        .zip(mean)
        .map(|(&m, &b)| f64::from(m) * mom + f64::from(b) * (1.0 - mom))
        .collect();
    let mv = moving_var
        .iter()
        .zip(inv_std)
        .map(|(&m, &s)| {
            let s = f64::from(s);
            let var = (1.0 / (s * s) - f64::from(epsilon)).max(0.0);
            f64::from(m) * mom + var * (1.0 - mom)
        })
        .collect();
    (mm, mv)
}
