// softmax_xent.wgsl: fused, numerically stable softmax cross-entropy over [rows, cols] logits
// with u32 class labels, its gradient, accuracy counts and a label status word; and the
// plain row softmax for inference.
// Entry points:
//   softmax_cross_entropy_forward   one invocation per row: max, log-sum-exp, row loss,
//                                   argmax hit, and (unless FLAG_NO_GRAD) the gradient row
//   softmax_cross_entropy_finalize  one invocation: sums the row losses and hits in a fixed
//                                   order (no atomics: bit-reproducible), checks the labels
//   softmax_forward                 one invocation per row: out = softmax(logits)
// Bindings: 0 params: SoftmaxXentParams (uniform), 1 logits (read, f32 [rows, cols]),
// 2 out (write, f32 [rows, cols]: dlogits, or probabilities for softmax_forward),
// 3 labels (read, u32 [rows]), 4 row_stats (write, f32 [2 * rows]: row losses, then row hits
// as 0.0 / 1.0), 5 loss (write, f32 [1]), 6 correct (write, u32 [1]),
// 7 status (write, u32 [4]: bad rows, first bad row, its label, rows checked).
// softmax_forward uses bindings 0 to 2 only, so it also runs with a three-binding layout.
// Rust module: src/kernels/softmax_xent.rs.
//
// A row whose label is >= cols gets a NaN loss (so the mean is NaN), no hit, and the gradient
// softmax * scale without the one-hot term; the finalize pass counts such rows in `status`.

struct SoftmaxXentParams {
    rows: u32,
    cols: u32,
    // FLAG_ACCUMULATE | FLAG_NO_GRAD.
    flags: u32,
    // Gradient multiplier: 1 / rows for the mean loss.
    scale: f32,
}

// The finalize pass adds to loss, correct and status instead of overwriting them (the
// executor's running epoch totals; status keeps the first bad row it saw).
const FLAG_ACCUMULATE: u32 = 1u;
// softmax_cross_entropy_forward writes no gradient (evaluation, accuracy).
const FLAG_NO_GRAD: u32 = 2u;

@group(0) @binding(0) var<uniform> params: SoftmaxXentParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> row_stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> correct: array<u32>;
@group(0) @binding(7) var<storage, read_write> status: array<u32>;

fn row_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

struct RowMax {
    value: f32,
    arg: u32,
}

// The row maximum and the index of its first occurrence (strictly greater replaces).
fn row_max(base: u32) -> RowMax {
    var m = logits[base];
    var arg = 0u;
    for (var j = 1u; j < params.cols; j++) {
        let v = logits[base + j];
        if (v > m) {
            m = v;
            arg = j;
        }
    }
    return RowMax(m, arg);
}

// sum_j exp(logits[base + j] - m): at least 1 (the maximum's own term), so its log is finite.
fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < params.cols; j++) {
        s += exp(logits[base + j] - m);
    }
    return s;
}

// loss_i = log(sum_j exp(x_j - m)) + (m - x_label) = logsumexp(x) - x_label;
// dlogits_ij = (softmax(x)_j - [j == label]) * scale.
@compute @workgroup_size(64)
fn softmax_cross_entropy_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = row_index(gid, nwg);
    if (i >= params.rows) {
        return;
    }
    let cols = params.cols;
    let base = i * cols;
    let mx = row_max(base);
    let m = mx.value;
    let arg = mx.arg;
    let s = row_sum_exp(base, m);
    let label = labels[i];
    let valid = label < cols;
    let x_label = logits[base + min(label, cols - 1u)];
    let nan = bitcast<f32>(0x7fc00000u | (label & 0u));
    row_stats[i] = select(nan, log(s) + (m - x_label), valid);
    row_stats[params.rows + i] = select(0.0, 1.0, valid && arg == label);
    if ((params.flags & FLAG_NO_GRAD) != 0u) {
        return;
    }
    let inv_s = 1.0 / s;
    for (var j = 0u; j < cols; j++) {
        let p = exp(logits[base + j] - m) * inv_s;
        out[base + j] = (p - select(0.0, 1.0, j == label)) * params.scale;
    }
}

// loss = mean of the row losses; correct = number of hits; status = [rows with a label >=
// cols, the first such row, its label, rows checked]. Sums run in a fixed order, in blocks of
// 256 rows (sum of block sums) to keep the f32 rounding error small for large batches. One
// invocation: the work is a single pass over `rows` words, not worth a cross-group reduction.
@compute @workgroup_size(1)
fn softmax_cross_entropy_finalize() {
    let rows = params.rows;
    var total = 0.0;
    var hits = 0u;
    var bad = 0u;
    var first_row = 0u;
    var first_label = 0u;
    for (var b = 0u; b < rows; b += 256u) {
        var block = 0.0;
        let end = min(b + 256u, rows);
        for (var i = b; i < end; i++) {
            block += row_stats[i];
            hits += u32(row_stats[rows + i]);
            let label = labels[i];
            if (label >= params.cols) {
                if (bad == 0u) {
                    first_row = i;
                    first_label = label;
                }
                bad += 1u;
            }
        }
        total += block;
    }
    let mean = total / f32(rows);
    if ((params.flags & FLAG_ACCUMULATE) != 0u) {
        loss[0] += mean;
        correct[0] += hits;
        if (status[0] == 0u && bad > 0u) {
            status[1] = first_row;
            status[2] = first_label;
        }
        status[0] += bad;
        status[3] += rows;
    } else {
        loss[0] = mean;
        correct[0] = hits;
        status[0] = bad;
        status[1] = first_row;
        status[2] = first_label;
        status[3] = rows;
    }
}

// out[i, j] = exp(x_ij - max_j x_ij) / sum_j exp(x_ij - max_j x_ij).
@compute @workgroup_size(64)
fn softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = row_index(gid, nwg);
    if (i >= params.rows) {
        return;
    }
    let base = i * params.cols;
    let m = row_max(base).value;
    let inv_s = 1.0 / row_sum_exp(base, m);
    for (var j = 0u; j < params.cols; j++) {
        out[base + j] = exp(logits[base + j] - m) * inv_s;
    }
}
