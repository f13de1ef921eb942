//! The seed's dropout sweep: one small CNN trained once per dropout rate p, to see the gap
//! between training and test accuracy shrink as p grows.
//!
//! Model (input 28x28x1, or 32x32x3 with `--cifar`):
//! Conv2D 32 3x3 relu -> Dropout(p) -> Conv2D 32 3x3 relu -> Flatten -> Dense 300 relu ->
//! Dense 300 relu -> Dense 10, trained with SGD (learning rate 0.01, momentum 0.9, batch 32)
//! for p in 0, 0.05, 0.1, 0.2, 0.5, 0.8, plus the seed's bonus variant: no dropout after the
//! convolution, Dropout(0.15) after each Dense 300.
//!
//! With `--spatial`, the sweep also trains each p > 0 with SpatialDropout2D(p) instead of
//! Dropout(p) after the first convolution (whole feature maps dropped; fused into that
//! convolution's epilogue), and adds its rows to the table and its curves to the plot
//! (p = 0 is the same model either way and is trained once).
//!
//! ```text
//! cargo run --release --example dropout_sweep                  # 10,000 images, 5 epochs per p
//! cargo run --release --example dropout_sweep -- --full --epochs 10
//! cargo run --release --example dropout_sweep -- --cifar DIR   # CIFAR-10 binary batches
//! cargo run --release --example dropout_sweep -- --rates 0.5 --no-bonus --epochs 1
//! cargo run --release --example dropout_sweep -- --quick       # CI: 160 images, 1 epoch, p in 0, 0.5 + bonus
//! cargo run --release --example dropout_sweep -- --spatial     # also SpatialDropout2D(p) per p > 0
//! ```
//!
//! Prints a table of final training and test accuracy per variant and draws the curves to
//! ./dropout_sweep.png in the current directory (`--plot FILE`; `--docs` redraws
//! docs/dropout_sweep.png, the picture README.md shows).

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use support::{
    chart::{Legend, Panel, Series},
    cli::{AnyResult, Cli, pct},
    data::{DATA_USAGE, DataArgs},
};
use wgnn::nn::{
    Activation, Conv2d, Dense, Dropout, Fit, History, Optimizer, Sequential, SpatialDropout2d,
};

const USAGE: &str = "\
usage: dropout_sweep [data options] [--epochs N] [--rates LIST] [--spatial] [--no-bonus]
                     [--lr X] [--momentum X] [--batch N] [--seed N] [--plot FILE | --docs]
  --epochs N      epochs per variant (default 5; 1 with --quick)
  --rates LIST    dropout rates after the first convolution (default 0,0.05,0.1,0.2,0.5,0.8;
                  0,0.5 with --quick)
  --spatial       also train SpatialDropout2D(p) after the first convolution for each p > 0
                  (whole feature maps dropped), beside Dropout(p); with --quick, no bonus
  --no-bonus      skip the variant with Dropout(0.15) after each dense layer
  --lr X          SGD learning rate (default 0.01)
  --momentum X    SGD momentum (default 0.9)
  --batch N       batch size (default 32)
  --seed N        weights and dropout seed (default 42)
  --plot FILE     where to draw the curves (default ./dropout_sweep.png in the current
                  directory; ./dropout_sweep-quick.png with --quick)
  --docs          draw docs/dropout_sweep.png instead, the picture README.md shows
training images: 10,000 unless --full or --train N";

const RATES: [f32; 6] = [0.0, 0.05, 0.1, 0.2, 0.5, 0.8];

/// One model of the sweep.
struct Variant {
    name: String,
    /// Dropout after the first convolution.
    conv_p: f32,
    /// SpatialDropout2D rather than Dropout after the first convolution.
    spatial: bool,
    /// Dropout after each Dense 300.
    dense_p: f32,
}

struct Outcome {
    name: String,
    conv_p: f32,
    spatial: bool,
    history: History,
    /// Training accuracy in inference mode (dropout off) after the last epoch.
    train_eval: f64,
    test: f64,
    seconds: f64,
}

fn model(input: &[usize], classes: usize, v: &Variant) -> wgnn::Result<Sequential> {
    let mut m = Sequential::new(input)
        .with(Conv2d::new(32, [3, 3])?.activation(Activation::Relu))
        .with(conv_dropout(v)?)
        .with(Conv2d::new(32, [3, 3])?.activation(Activation::Relu))
        .with(wgnn::nn::Layer::Flatten)
        .with(Dense::new(300)?.activation(Activation::Relu));
    if v.dense_p > 0.0 {
        m.add(Dropout::new(v.dense_p)?);
    }
    m.add(Dense::new(300)?.activation(Activation::Relu));
    if v.dense_p > 0.0 {
        m.add(Dropout::new(v.dense_p)?);
    }
    m.add(Dense::new(classes)?);
    Ok(m)
}

/// The layer after the first convolution.
fn conv_dropout(v: &Variant) -> wgnn::Result<wgnn::nn::Layer> {
    Ok(if v.spatial {
        SpatialDropout2d::new(v.conv_p)?.into()
    } else {
        Dropout::new(v.conv_p)?.into()
    })
}

fn run() -> AnyResult {
    let mut cli = Cli::new(format!("{USAGE}\n{DATA_USAGE}"));
    let mut data = DataArgs::parse(&mut cli)?;
    // Several models: fewer images than the other examples' quick mode keeps CI short.
    data.quick_sizes = (160, 128);
    let epochs = data.epochs(cli.value("--epochs")?, 5)?;
    // Quick mode (CI) trains three of the seven models: both dropout placements, still
    // well under a minute on lavapipe.
    let rates: Vec<f32> = match cli.list("--rates")? {
        Some(r) => r,
        None if data.quick => vec![0.0, 0.5],
        None => RATES.to_vec(),
    };
    let spatial = cli.flag("--spatial");
    // Quick mode with --spatial trains p = 0, Dropout(0.5) and SpatialDropout2D(0.5): three
    // models, as plain quick mode does.
    let skip_bonus = cli.flag("--no-bonus") || (data.quick && spatial);
    let bonus = !skip_bonus;
    let lr: f32 = cli.value("--lr")?.unwrap_or(0.01);
    let momentum: f32 = cli.value("--momentum")?.unwrap_or(0.9);
    let batch: usize = cli.value("--batch")?.unwrap_or(32);
    let seed: u64 = cli.value("--seed")?.unwrap_or(42);
    let plot = support::chart::plot_path(&mut cli, "dropout_sweep", data.quick)?;
    cli.finish()?;
    if let Some(bad) = rates.iter().find(|p| !(0.0..1.0).contains(*p)) {
        return Err(format!("--rates: {bad} is outside [0, 1)").into());
    }

    let gpu = wgnn::Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let loaded = data.load(Some(10_000))?;
    println!("data: {}", loaded.source);
    let (train, test) = (&loaded.train, &loaded.test);
    let input = [train.height, train.width, train.channels];

    let mut variants: Vec<Variant> = rates
        .iter()
        .map(|&p| Variant {
            name: format!("p = {p}"),
            conv_p: p,
            spatial: false,
            dense_p: 0.0,
        })
        .collect();
    if spatial {
        // p = 0 is the same model with either layer (and the same bits): trained once.
        for &p in rates.iter().filter(|&&p| p > 0.0) {
            variants.push(Variant {
                name: format!("spatial {p}"),
                conv_p: p,
                spatial: true,
                dense_p: 0.0,
            });
        }
    }
    if bonus {
        variants.push(Variant {
            name: "dense 0.15".into(),
            conv_p: 0.0,
            spatial: false,
            dense_p: 0.15,
        });
    }
    if variants.is_empty() {
        return Err("nothing to train: --rates is empty and --no-bonus was given".into());
    }
    println!(
        "optimizer: SGD lr {lr} momentum {momentum}, batch {batch}, {epochs} epoch(s) per variant"
    );
    print!("{}", model(&input, train.classes, &variants[0])?.summary()?);

    let mut outcomes = Vec::new();
    for v in &variants {
        println!("\n== {} ==", v.name);
        let mut m = model(&input, train.classes, v)?;
        m.compile(&gpu, Optimizer::sgd(lr, momentum), seed)?;
        let started = Instant::now();
        let history = m.fit(
            train,
            &Fit {
                epochs,
                batch_size: batch,
                validation: Some(test),
                ..Fit::default()
            },
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let train_eval = m.evaluate(train, 256)?.accuracy;
        let test_acc = history
            .epochs
            .last()
            .and_then(|e| e.validation)
            .map_or(f64::NAN, |e| e.accuracy);
        let per_epoch: f64 =
            history.epochs.iter().map(|e| e.seconds).sum::<f64>() / history.epochs.len() as f64;
        println!(
            "{}: test accuracy {}, {:.1} s per training epoch",
            v.name,
            pct(test_acc),
            per_epoch
        );
        outcomes.push(Outcome {
            name: v.name.clone(),
            conv_p: v.conv_p,
            spatial: v.spatial,
            history,
            train_eval,
            test: test_acc,
            seconds,
        });
    }

    println!(
        "\nFinal accuracies after {epochs} epoch(s) on {} training images:",
        train.count
    );
    println!(
        "{:<14} {:>16} {:>16} {:>10} {:>12} {:>9}",
        "variant", "train (dropout)", "train (eval)", "test", "gap (eval)", "time"
    );
    for o in &outcomes {
        let last = o.history.epochs.last().map_or(f64::NAN, |e| e.accuracy);
        println!(
            "{:<14} {:>16} {:>16} {:>10} {:>12} {:>8.0}s",
            o.name,
            pct(last),
            pct(o.train_eval),
            pct(o.test),
            format!("{:+.2} pt", 100.0 * (o.train_eval - o.test)),
            o.seconds
        );
    }
    if let Some(best) = outcomes.iter().max_by(|a, b| a.test.total_cmp(&b.test)) {
        println!("best test accuracy: {} ({})", pct(best.test), best.name);
    }
    println!(
        "train (dropout) is the last epoch's running accuracy with dropout active, as Keras \
         prints it; train (eval) is measured afterwards with dropout off."
    );
    if spatial {
        println!(
            "p = X: Dropout(X) after the first convolution; spatial X: SpatialDropout2D(X) there \
             (each of the 32 feature maps of an image kept or dropped whole)."
        );
    }

    let title = format!(
        "Dropout sweep: seed CNN, SGD lr {lr} momentum {momentum}, {} - {} training / {} test images",
        loaded.name, train.count, test.count
    );
    draw(&plot, &outcomes, &title, epochs)?;
    Ok(())
}

fn draw(path: &std::path::Path, outcomes: &[Outcome], title: &str, epochs: usize) -> AnyResult {
    let mut panels = Vec::new();
    let all = outcomes.iter().flat_map(|o| {
        o.history.epochs.iter().flat_map(|e| {
            [e.accuracy]
                .into_iter()
                .chain(e.validation.map(|v| v.accuracy))
        })
    });
    let (lo, hi) = all.fold((1.0f64, 0.0f64), |(l, h), a| (l.min(a), h.max(a)));
    let y_range = Some(((lo - 0.02).max(0.0), (hi + 0.02).min(1.0)));
    for o in outcomes {
        let train: Vec<f64> = o.history.epochs.iter().map(|e| e.accuracy).collect();
        let test: Vec<f64> = o
            .history
            .epochs
            .iter()
            .map(|e| e.validation.map_or(f64::NAN, |v| v.accuracy))
            .collect();
        let mut p = Panel::new(o.name.clone(), "epoch", "accuracy")
            .with(Series::new(
                "train (dropout on)",
                support::chart::per_epoch(train),
                0,
            ))
            .with(Series::new("test", support::chart::per_epoch(test), 1).dashed());
        p.y_range = y_range;
        panels.push(p);
    }
    // The x axis: the Dropout variants (and the bonus); a SpatialDropout2D variant sits at
    // the x of the Dropout variant with its rate, and p = 0 is shared.
    let element: Vec<&Outcome> = outcomes.iter().filter(|o| !o.spatial).collect();
    let names: Vec<String> = element.iter().map(|o| o.name.replace("p = ", "")).collect();
    let x_of = |p: f32| {
        element
            .iter()
            .position(|o| o.conv_p == p && !o.name.starts_with("dense"))
    };
    let idx = |f: &dyn Fn(&Outcome) -> f64| -> Vec<(f64, f64)> {
        element
            .iter()
            .enumerate()
            .map(|(i, o)| (i as f64, f(o)))
            .collect()
    };
    let spatial_idx = |f: &dyn Fn(&Outcome) -> f64| -> Vec<(f64, f64)> {
        let zero = element
            .iter()
            .find(|o| o.conv_p == 0.0 && o.name == "p = 0");
        zero.into_iter()
            .copied()
            .chain(outcomes.iter().filter(|o| o.spatial))
            .filter_map(|o| Some((x_of(o.conv_p)? as f64, f(o))))
            .collect()
    };
    let any_spatial = outcomes.iter().any(|o| o.spatial);
    let mut summary = Panel::new(
        format!("after {epochs} epoch(s): accuracy per variant"),
        "variant (dropout rate after the first convolution)",
        "accuracy",
    )
    .with(Series::new("train (eval)", idx(&|o| o.train_eval), 0))
    .with(Series::new("test", idx(&|o| o.test), 1).dashed());
    if any_spatial {
        summary = summary
            .with(Series::new(
                "train (eval), spatial",
                spatial_idx(&|o| o.train_eval),
                2,
            ))
            .with(Series::new("test, spatial", spatial_idx(&|o| o.test), 4).dashed());
    }
    summary.x_ticks = Some(names.clone());
    summary.legend = Legend::UpperRight;
    panels.push(summary);
    let mut gap = Panel::new(
        "train - test gap (dropout off)",
        "variant (dropout rate after the first convolution)",
        "accuracy points",
    )
    .with(Series::new(
        "train (eval) - test",
        idx(&|o| 100.0 * (o.train_eval - o.test)),
        3,
    ));
    if any_spatial {
        gap = gap.with(Series::new(
            "spatial",
            spatial_idx(&|o| 100.0 * (o.train_eval - o.test)),
            5,
        ));
    }
    gap.x_ticks = Some(names);
    gap.legend = Legend::UpperRight;
    gap.y_decimals = 1;
    panels.push(gap);
    support::chart::save_chart(path, title, &panels, 3)
}

fn main() -> std::process::ExitCode {
    support::cli::main_with("dropout_sweep", run)
}
