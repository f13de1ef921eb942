//! Monte-Carlo dropout: the main demo's MLP, trained (or loaded with `--weights`), predicts
//! the test set 32 times with dropout on (`Sequential::predict_mc`); the spread of the
//! samples says how sure the model is, and rejecting the least sure inputs raises the
//! accuracy on the rest.
//!
//! ```text
//! cargo run --release --example mc_dropout                      # train, then 32 samples
//! cargo run --release --example mc_dropout -- --weights mlp.safetensors   # from fashion_mlp --save
//! cargo run --release --example mc_dropout -- --quick           # a few hundred images (CI)
//! ```
//!
//! Prints the accuracy on every test input against the accuracy on the most certain 80%
//! (the inputs whose predicted class has the smallest standard deviation over the samples),
//! and draws ./mc_dropout.png: accuracy against the fraction of inputs kept when the most
//! uncertain are rejected, and six test images (the three most certain, the three least)
//! with their mean probabilities and error bars of one standard deviation (`--plot FILE`;
//! `--docs` redraws docs/mc_dropout.png, the picture README.md shows).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use plotters::prelude::*;
use support::chart::{Legend, PALETTE, Panel, Series};
use support::cli::{AnyResult, Cli, pct};
use support::data::{DATA_USAGE, DataArgs, FASHION_CLASSES};
use wgnn::data::Dataset;
use wgnn::nn::{Activation, Dense, Dropout, Fit, McPrediction, Optimizer, Sequential};

const USAGE: &str = "\
usage: mc_dropout [data options] [--epochs N] [--weights FILE] [--samples N] [--seed N]
                  [--plot FILE | --docs]
  --epochs N      training epochs (default 10; 1 with --quick)
  --weights FILE  load these weights (fashion_mlp --save) instead of training
  --samples N     Monte-Carlo samples (default 32)
  --seed N        the masks' seed (default 2024)
  --plot FILE     where to draw (default ./mc_dropout.png; ./mc_dropout-quick.png with --quick)
  --docs          draw docs/mc_dropout.png instead, the picture README.md shows";

/// Fashion-MNIST's classes ([`FASHION_CLASSES`]), short enough for tick labels.
const FASHION_TICKS: [&str; 10] = [
    "Tee", "Tro", "Pul", "Drs", "Coa", "San", "Shi", "Snk", "Bag", "Boo",
];

/// The fraction of `order`'s first `kept` inputs that are correct.
fn accuracy_of(order: &[usize], correct: &[bool], kept: usize) -> f64 {
    let k = kept.clamp(1, order.len());
    order[..k].iter().filter(|&&i| correct[i]).count() as f64 / k as f64
}

fn run() -> AnyResult {
    let mut cli = Cli::new(format!("{USAGE}\n{DATA_USAGE}"));
    let data = DataArgs::parse(&mut cli)?;
    let epochs = data.epochs(cli.value("--epochs")?, 10)?;
    let weights: Option<PathBuf> = cli.value("--weights")?;
    let samples: usize = cli.value("--samples")?.unwrap_or(32);
    let seed: u64 = cli.value("--seed")?.unwrap_or(2024);
    let plot = support::chart::plot_path(&mut cli, "mc_dropout", data.quick)?;
    cli.finish()?;

    let gpu = wgnn::Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let loaded = data.load(None)?;
    println!("data: {}", loaded.source);
    let (train, test) = (&loaded.train, &loaded.test);

    let mut model = Sequential::new(&[train.image_len()])
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.2)?)
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.5)?)
        .with(Dense::new(train.classes)?);
    model.compile(&gpu, Optimizer::adam(1e-3), 42)?;
    match &weights {
        Some(path) => {
            model.load_weights(path)?;
            println!("weights loaded from {}", path.display());
        }
        None => {
            model.fit(
                train,
                &Fit {
                    epochs,
                    batch_size: 256,
                    ..Fit::default()
                },
            )?;
        }
    }

    let x: Vec<f32> = test.images.iter().map(|&p| f32::from(p) / 255.0).collect();
    let classes = test.classes;
    let logits = model.predict(&x)?;
    let plain_correct = logits
        .chunks(classes)
        .zip(&test.labels)
        .filter(|(row, l)| argmax(row) == usize::from(**l))
        .count();
    let start = Instant::now();
    let mc = model.predict_mc(&x, samples, seed)?;
    let seconds = start.elapsed().as_secs_f64();
    let predicted = mc.predicted_classes();
    let correct: Vec<bool> = predicted
        .iter()
        .zip(&test.labels)
        .map(|(p, l)| *p == usize::from(*l))
        .collect();
    // Uncertainty: the standard deviation of the predicted class's probability.
    let spread: Vec<f32> = predicted
        .iter()
        .enumerate()
        .map(|(i, &c)| mc.std[i * classes + c])
        .collect();
    let mut order: Vec<usize> = (0..test.count).collect();
    order.sort_by(|&a, &b| spread[a].total_cmp(&spread[b]).then(a.cmp(&b)));

    let n = test.count;
    let kept80 = (0.8 * n as f64).round() as usize;
    let all = accuracy_of(&order, &correct, n);
    let certain = accuracy_of(&order, &correct, kept80);
    let rest = order[kept80.min(n - 1)..]
        .iter()
        .filter(|&&i| correct[i])
        .count() as f64
        / (n - kept80.min(n - 1)) as f64;
    println!(
        "predict_mc: {samples} samples of {n} test inputs in {seconds:.2} s ({:.1} ms per sample)",
        1e3 * seconds / samples as f64
    );
    println!(
        "test accuracy, dropout off (predict): {}",
        pct(plain_correct as f64 / n as f64)
    );
    println!(
        "headline: MC-dropout accuracy on all {n} test inputs {}, on the most certain 80% \
         ({kept80} inputs, std of the predicted class <= {:.4}) {}; on the other 20% {}",
        pct(all),
        spread[order[kept80.saturating_sub(1)]],
        pct(certain),
        pct(rest)
    );

    let curve: Vec<(f64, f64)> = (1..=20)
        .map(|k| {
            let f = f64::from(k) / 20.0;
            (
                f,
                accuracy_of(&order, &correct, (f * n as f64).round() as usize),
            )
        })
        .collect();
    let mut panel = Panel::new(
        "accuracy when the most uncertain inputs are rejected",
        "fraction of test inputs kept (lowest std first)",
        "accuracy",
    )
    .with(Series::new(
        format!("MC dropout, {samples} samples"),
        curve,
        0,
    ))
    .with(Series::new("all inputs", vec![(0.05, all), (1.0, all)], 1).dashed());
    panel.legend = Legend::UpperRight;
    let fashion = loaded.name.starts_with("Fashion") && classes == 10;
    let names: [Vec<String>; 2] = [FASHION_CLASSES, FASHION_TICKS].map(|list| {
        (0..classes)
            .map(|c| match fashion {
                true => list[c].to_string(),
                false => c.to_string(),
            })
            .collect()
    });
    let picks: Vec<usize> = order[..3.min(n)]
        .iter()
        .chain(&order[n.saturating_sub(3)..])
        .copied()
        .collect();
    draw(
        &plot,
        &format!(
            "MC dropout: MLP 784-256-256-10, dropout 0.2/0.5, {samples} samples - {}: all {}, most certain 80% {}",
            loaded.name,
            pct(all),
            pct(certain)
        ),
        &panel,
        test,
        &mc,
        &picks,
        &names,
    )?;
    Ok(())
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = c;
        }
    }
    best
}

/// The figure: the accuracy panel on the left, the picked test images with their mean
/// probabilities and one-standard-deviation error bars on the right (2 rows of 3).
#[allow(clippy::too_many_arguments)]
fn draw(
    path: &std::path::Path,
    title: &str,
    panel: &Panel,
    test: &Dataset,
    mc: &McPrediction,
    picks: &[usize],
    names: &[Vec<String>; 2],
) -> AnyResult {
    support::chart::save_titled(path, (title, 20), (1500, 560), |body| {
        let (left, right) = body.split_horizontally(560);
        support::chart::draw_panel(&left, panel)?;
        let cells = right.split_evenly((2, 3));
        for (k, (&i, cell)) in picks.iter().zip(cells.iter()).enumerate() {
            let caption = if k < 3 {
                "most certain"
            } else {
                "least certain"
            };
            draw_input(cell, test, mc, i, names, caption).map_err(|e| format!("input {i}: {e}"))?;
        }
        Ok(())
    })
}

/// Test input `i`: its image, and a bar per class of its mean probability with an error bar
/// of one standard deviation; the true class in green, a wrong prediction in red.
fn draw_input<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    test: &Dataset,
    mc: &McPrediction,
    i: usize,
    names: &[Vec<String>; 2],
    caption: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let classes = mc.classes;
    let label = usize::from(test.labels[i]);
    let mean = &mc.mean[i * classes..(i + 1) * classes];
    let std = &mc.std[i * classes..(i + 1) * classes];
    let pred = argmax(mean);
    let (iw, ih, ch) = (test.width, test.height, test.channels);
    let px = &test.images[i * test.image_len()..(i + 1) * test.image_len()];
    let zoom = (84 / iw.max(ih)).max(1) as i32;
    let (ox, oy) = (8i32, 40i32);
    for y in 0..ih {
        for x in 0..iw {
            let at = (y * iw + x) * ch;
            let (r, g, b) = if ch >= 3 {
                (px[at], px[at + 1], px[at + 2])
            } else {
                (px[at], px[at], px[at])
            };
            let (x0, y0) = (ox + x as i32 * zoom, oy + y as i32 * zoom);
            area.draw(&Rectangle::new(
                [(x0, y0), (x0 + zoom, y0 + zoom)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(err)?;
        }
    }
    let lines = [
        format!("{caption}: test input {i}"),
        format!(
            "true {}, predicted {} (std {:.3})",
            names[0][label], names[0][pred], std[pred]
        ),
    ];
    for (k, line) in lines.into_iter().enumerate() {
        area.draw(&Text::new(
            line,
            (6, 4 + 14 * k as i32),
            ("sans-serif", 12).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    let (_, chart_area) = area.split_horizontally(ox as u32 + zoom as u32 * iw as u32 + 4);
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_top(36)
        .margin_right(6)
        .x_label_area_size(22)
        .y_label_area_size(30)
        .build_cartesian_2d(-0.5f64..classes as f64 - 0.5, 0.0f64..1.05)
        .map_err(err)?;
    let ticks = names[1].clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(classes)
        .y_labels(6)
        .x_label_formatter(&|x| {
            let c = x.round();
            if (x - c).abs() < 1e-6 && c >= 0.0 && (c as usize) < ticks.len() {
                ticks[c as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 9))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    for c in 0..classes {
        let color = if c == label {
            PALETTE[2]
        } else if c == pred {
            PALETTE[3]
        } else {
            PALETTE[0]
        };
        let (x, m, s) = (c as f64, f64::from(mean[c]), f64::from(std[c]));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, m)],
                color.filled(),
            )))
            .map_err(err)?;
        let (lo, hi) = ((m - s).max(0.0), (m + s).min(1.05));
        let bar = BLACK.stroke_width(1);
        chart
            .draw_series([
                PathElement::new(vec![(x, lo), (x, hi)], bar),
                PathElement::new(vec![(x - 0.15, lo), (x + 0.15, lo)], bar),
                PathElement::new(vec![(x - 0.15, hi), (x + 0.15, hi)], bar),
            ])
            .map_err(err)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    support::cli::main_with("mc_dropout", run)
}
