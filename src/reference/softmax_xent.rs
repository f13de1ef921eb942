//! Softmax, softmax cross-entropy and accuracy references.

/// The softmax of each row of `logits` (`[rows, classes]`), computed stably in f64.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
        out.extend(row.iter().map(|&v| (f64::from(v) - m).exp() / s));
    }
    out
}

/// Per-row losses `logsumexp(logits_i) - logits_i[label_i]` of `logits` `[rows, classes]`;
/// NaN for a label `>= classes`.
pub fn softmax_cross_entropy_rows(logits: &[f32], labels: &[u32], classes: usize) -> Vec<f64> {
    logits
        .chunks(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            match row.get(label as usize) {
                Some(&x) => s.ln() + (m - f64::from(x)),
                None => f64::NAN,
            }
        })
        .collect()
}

/// The mean softmax cross-entropy and its gradient `(softmax - onehot) / rows` (`[rows,
/// classes]`), as [`crate::ops::softmax_cross_entropy`] computes them. A row with a label
/// `>= classes` has a NaN loss and the gradient `softmax / rows`.
pub fn softmax_cross_entropy(logits: &[f32], labels: &[u32], classes: usize) -> (f64, Vec<f64>) {
    let rows = labels.len();
    let losses = softmax_cross_entropy_rows(logits, labels, classes);
    let loss = losses.iter().sum::<f64>() / rows as f64;
    let mut grad = softmax(logits, classes);
    for (i, row) in grad.chunks_mut(classes).enumerate() {
        if let Some(g) = row.get_mut(labels[i] as usize) {
            *g -= 1.0;
        }
        for g in row.iter_mut() {
            *g /= rows as f64;
        }
    }
    (loss, grad)
}

/// The number of rows whose first maximum (the lowest index among equal maxima) is at the
/// label.
pub fn accuracy(logits: &[f32], labels: &[u32], classes: usize) -> u32 {
    logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, label)| {
            let mut arg = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[arg] {
                    arg = j;
                }
            }
            arg == **label as usize
        })
        .count() as u32
}
