//! Dropout from scratch, as the seed notebook does it with NumPy: a 2x3 matrix goes through
//! the GPU's dropout forward and backward, and the mask is printed next to the one the host
//! reproduces with `wgnn::philox` — the same bits, never stored, regenerated from
//! (seed, offset, element index).
//!
//! Then the masks training draws: a model's Dropout layer over 40 training steps, as
//! `Sequential::training_mask` gives them (host Philox) and as the GPU draws them (the
//! layer's stream at each step through `ops::dropout`), drawn to ./dropout_masks.png: units
//! by steps for the batch's first sample (kept white, dropped black) beside the keep
//! fraction of the whole batch per step against `1 - p` (`--plot FILE`; `--docs` redraws
//! docs/dropout_masks.png).
//!
//! ```text
//! cargo run --release --example dropout_basics
//! cargo run --release --example dropout_basics -- --p 0.3 --seed 7 --offset 1
//! ```
//!
//! Exits with status 1 if the GPU's output, gradient or training masks differ from the
//! host's.

#[path = "support/mod.rs"]
mod support;

use support::cli::{AnyResult, Cli};

const USAGE: &str = "\
usage: dropout_basics [--p RATE] [--seed N] [--offset N] [--plot FILE | --docs] [--quick]
  --p RATE     dropout rate in [0, 1] (default 0.5)
  --seed N     Philox key (default 42)
  --offset N   Philox stream (default 0)
  --plot FILE  where to draw the training masks (default ./dropout_masks.png in the current
               directory; ./dropout_masks-quick.png with --quick)
  --docs       draw docs/dropout_masks.png instead, the picture README.md shows
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
    let quick = cli.flag("--quick");
    let plot = support::chart::plot_path(&mut cli, "dropout_masks", quick)?;
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
    training_masks(&gpu, p, seed, &plot)
}

/// The masks of a model's Dropout layer over training steps: `training_mask` (host) against
/// the GPU's dropout with the layer's stream at each step, drawn.
fn training_masks(gpu: &wgnn::Gpu, p: f32, seed: u64, plot: &std::path::Path) -> AnyResult {
    use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
    let (units, batch, steps, layer) = (48usize, 64usize, 40u64, 1usize);
    let mut model = Sequential::new(&[16])
        .with(Dense::new(units)?.activation(Activation::Relu))
        .with(Dropout::new(p)?)
        .with(Dense::new(10)?);
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), seed)?;
    let ones = wgnn::Tensor::from_slice(gpu, &vec![1.0; batch * units], &[batch, units])?;
    let mut masks = Vec::new();
    let mut fractions = Vec::new();
    for step in 0..steps {
        let host = model.training_mask(layer, step, batch)?;
        let offset = wgnn::philox::training_offset(layer, step);
        let y = wgnn::ops::dropout(&ones, p, seed, offset)?.to_vec()?;
        let gpu_mask: Vec<bool> = y.iter().map(|&v| v != 0.0).collect();
        if gpu_mask != host {
            return Err(format!(
                "step {step}: the GPU's mask of layer {layer} differs from training_mask"
            )
            .into());
        }
        let kept = gpu_mask.iter().filter(|&&k| k).count();
        fractions.push((step as f64, kept as f64 / gpu_mask.len() as f64));
        masks.push(host[..units].to_vec());
    }
    let mean = fractions.iter().map(|f| f.1).sum::<f64>() / fractions.len() as f64;
    println!(
        "training masks of layer {layer} (Dropout {p}) over steps 0..{steps}: training_mask \
         equals the GPU's at every step; kept {:.4} of units on average (1 - p = {:.4})",
        mean,
        1.0 - f64::from(p)
    );
    draw_masks(plot, p, &masks, &fractions)
}

/// Left: the masks, a column per step and a row per unit (kept white, dropped black);
/// right: the keep fraction per step against `1 - p`.
fn draw_masks(
    path: &std::path::Path,
    p: f32,
    masks: &[Vec<bool>],
    fractions: &[(f64, f64)],
) -> AnyResult {
    use plotters::prelude::*;
    use support::chart::{Panel, Series};
    let (steps, units) = (masks.len(), masks.first().map_or(0, Vec::len));
    let cell = 9i32;
    let (mx, my) = (70i32, 40i32);
    let left = (2 * mx + cell * steps as i32) as u32;
    let size = (
        left + 560,
        (2 * my + cell * units as i32).max(420) as u32 + support::chart::HEAD,
    );
    let title =
        format!("Dropout({p}) of layer 1: its training masks, step by step (Philox, never stored)");
    support::chart::save_titled(path, (&title, 20), size, |body| {
        let (grid, right) = body.split_horizontally(left);
        let text = ("sans-serif", 13).into_font().color(&BLACK);
        grid.draw(&Text::new(
            "units of sample 0 (rows) by training step (columns): kept white, dropped black",
            (10, 12),
            text.clone(),
        ))
        .map_err(|e| e.to_string())?;
        for (s, mask) in masks.iter().enumerate() {
            for (u, &kept) in mask.iter().enumerate() {
                let (x0, y0) = (mx + s as i32 * cell, my + u as i32 * cell);
                let color = if kept { WHITE } else { BLACK };
                grid.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    color.filled(),
                ))
                .map_err(|e| e.to_string())?;
            }
        }
        let frame = [
            (mx - 1, my - 1),
            (mx + cell * steps as i32, my + cell * units as i32),
        ];
        grid.draw(&Rectangle::new(frame, RGBColor(150, 150, 150)))
            .map_err(|e| e.to_string())?;
        for s in (0..steps).step_by(10) {
            grid.draw(&Text::new(
                s.to_string(),
                (mx + s as i32 * cell, my + cell * units as i32 + 6),
                text.clone(),
            ))
            .map_err(|e| e.to_string())?;
        }
        grid.draw(&Text::new("unit 0", (10, my), text.clone()))
            .map_err(|e| e.to_string())?;
        let want = 1.0 - f64::from(p);
        let last = fractions.last().map_or(0.0, |f| f.0);
        let mut panel = Panel::new(
            "kept fraction of the batch's units per step",
            "training step",
            "fraction kept",
        )
        .with(Series::new("measured on the GPU", fractions.to_vec(), 0))
        .with(Series::new("1 - p", vec![(0.0, want), (last, want)], 1).dashed());
        panel.y_range = Some(((want - 0.15).max(0.0), (want + 0.15).min(1.0)));
        support::chart::draw_panel(&right, &panel)?;
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    support::cli::main_with("dropout_basics", run)
}
