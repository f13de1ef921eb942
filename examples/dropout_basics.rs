//! Dropout from scratch, as the seed notebook does it with NumPy: a 2x3 matrix goes through
//! the GPU's dropout forward and backward, and the mask is printed next to the one the host
//! reproduces with `wgnn::philox` — the same bits, never stored, regenerated from
//! (seed, offset, element index).
//!
//! ```text
//! cargo run --release --example dropout_basics
//! cargo run --release --example dropout_basics -- --p 0.3 --seed 7 --offset 1
//! ```
//!
//! Exits with status 1 if the GPU's output or gradient differs from the host's mask.

#[path = "support/mod.rs"]
mod support;

use support::cli::{AnyResult, Cli};

const USAGE: &str = "\
usage: dropout_basics [--p RATE] [--seed N] [--offset N] [--quick]
  --p RATE     dropout rate in [0, 1] (default 0.5)
  --seed N     Philox key (default 42)
  --offset N   Philox stream (default 0)
  --quick      accepted for CI; the example is always quick";

fn show(name: &str, rows: usize, cols: usize, v: &[f32]) {
    println!("{name} ({rows}x{cols}):");
    for r in 0..rows {
        let row: Vec<String> = v[r * cols..(r + 1) * cols]
            .iter()
            .map(|x| {
                if x.fract() == 0.0 && x.abs() < 1e6 {
                    format!("{:8}", *x as i64)
                } else {
                    format!("{x:8.4}")
                }
            })
            .collect();
        println!("  [{} ]", row.join(""));
    }
}

fn run() -> AnyResult {
    let mut cli = Cli::new(USAGE);
    let p: f32 = cli.value("--p")?.unwrap_or(0.5);
    let seed: u64 = cli.value("--seed")?.unwrap_or(42);
    let offset: u64 = cli.value("--offset")?.unwrap_or(0);
    let _ = cli.flag("--quick");
    cli.finish()?;

    let gpu = wgnn::Gpu::new()?;
    println!("adapter: {}", gpu.info());
    println!("dropout rate p = {p}, seed = {seed}, offset = {offset}\n");

    let (rows, cols) = (2, 3);
    let x_host = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let dy_host = [0.1f32, -0.2, 0.3, -0.4, 0.5, -0.6];
    let x = wgnn::Tensor::from_slice(&gpu, &x_host, &[rows, cols])?;
    let dy = wgnn::Tensor::from_slice(&gpu, &dy_host, &[rows, cols])?;

    // Forward: y = x * mask / (1 - p). Backward: dx = dy * mask / (1 - p), the mask
    // regenerated from (seed, offset, index) rather than stored.
    let y = wgnn::ops::dropout(&x, p, seed, offset)?.to_vec()?;
    let dx = wgnn::ops::dropout_backward(&dy, p, seed, offset)?.to_vec()?;

    // The host's twin: the same Philox-4x32-10 words and threshold.
    let mask: Vec<f32> = (0..x_host.len() as u64)
        .map(|i| f32::from(u8::from(wgnn::philox::keep(seed, offset, i, p))))
        .collect();
    let scale = wgnn::philox::scale(p);

    show("input x", rows, cols, &x_host);
    show(
        "mask (wgnn::philox::keep on the host: 1 = kept)",
        rows,
        cols,
        &mask,
    );
    println!("scale 1 / (1 - p) = {scale}");
    show("output y = dropout(x) on the GPU", rows, cols, &y);
    show("upstream gradient dy", rows, cols, &dy_host);
    show(
        "gradient dx = dropout_backward(dy) on the GPU",
        rows,
        cols,
        &dx,
    );

    println!(
        "\nper element: Philox word vs threshold {:#010x}",
        wgnn::philox::threshold(p)
    );
    for i in 0..x_host.len() as u64 {
        let word = wgnn::philox::word(seed, offset, i);
        println!(
            "  [{}, {}] word {word:#010x} -> {}",
            i as usize / cols,
            i as usize % cols,
            if mask[i as usize] == 1.0 {
                "keep"
            } else {
                "drop"
            }
        );
    }

    // The GPU's mask, read off its output and gradient, must be the host's bit for bit.
    let mut bad = Vec::new();
    for i in 0..x_host.len() {
        let want_y = x_host[i] * mask[i] * scale;
        let want_dx = dy_host[i] * mask[i] * scale;
        if y[i] != want_y || dx[i] != want_dx {
            bad.push(format!(
                "element {i}: y {} (host {want_y}), dx {} (host {want_dx})",
                y[i], dx[i]
            ));
        }
    }
    let kept = mask.iter().filter(|&&m| m == 1.0).count();
    if !bad.is_empty() {
        return Err(format!(
            "the GPU's dropout disagrees with wgnn::philox on the host:\n  {}",
            bad.join("\n  ")
        )
        .into());
    }
    println!(
        "\nOK: the GPU's forward and backward use exactly the host's mask ({kept} of {} kept)",
        mask.len()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    support::cli::main_with("dropout_basics", run)
}
