//! The transfer-learning seed's pattern: a convolutional base is trained (or loaded), then
//! frozen, and a new head Dense(100) relu -> Dropout(p) -> Dense(classes) is trained on top
//! of it for p in 0, 0.2, 0.5, 0.8. A `ModelCheckpoint` keeps each head's best weights by
//! validation accuracy; the best checkpoint is loaded back and scored on the test set.
//!
//! Base: Conv2D 32 3x3 relu -> MaxPooling2D 2x2 -> Conv2D 64 3x3 relu -> MaxPooling2D 2x2
//! -> Flatten (no BatchNormalization: the head trains on fixed features).
//!
//! ```text
//! cargo run --release --example frozen_base_sweep                       # Fashion-MNIST
//! cargo run --release --example frozen_base_sweep -- --images DIR       # class sub-folders
//! cargo run --release --example frozen_base_sweep -- --images DIR --size 28 --grey
//! cargo run --release --example frozen_base_sweep -- --save-base base.safetensors
//! cargo run --release --example frozen_base_sweep -- --base base.safetensors
//! cargo run --release --example frozen_base_sweep -- --quick            # CI
//! ```
//!
//! A `--base` file holds exactly the base's four tensors, `conv2d/kernel` [3, 3, C, 32],
//! `conv2d/bias` [32], `conv2d_1/kernel` [3, 3, 32, 64], `conv2d_1/bias` [64] (HWIO kernels,
//! F32), as `--save-base` writes them.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use support::{
    chart::{Panel, Series, per_epoch},
    cli::{AnyResult, Cli, pct},
    data::{DATA_USAGE, DataArgs},
};
use wgnn::data::Dataset;
use wgnn::nn::weights::{
    NamedTensor, WeightSpec, WeightsOptions, from_safetensors, to_safetensors,
};
use wgnn::nn::{
    Activation, Conv2d, Dense, Dropout, Fit, Layer, MaxPool2d, ModelCheckpoint, Monitor, Optimizer,
    Sequential,
};

const USAGE: &str = "\
usage: frozen_base_sweep [data options | --images DIR [--size N] [--grey]] [--base FILE]
                         [--save-base FILE] [--base-epochs N] [--epochs N] [--rates LIST]
                         [--out DIR] [--seed N] [--plot FILE | --docs]
  --images DIR      an image folder, one sub-folder per class (PNG or JPEG, any size),
                    resized to --size x --size (default 32) RGB, or grey with --grey;
                    1/5 is held out for testing and 1/5 of the rest for validation
  --base FILE       load the base's weights (safetensors, as --save-base writes them)
                    instead of training it
  --save-base FILE  write the trained base's weights
  --base-epochs N   epochs to train the base (default 2; 1 with --quick)
  --epochs N        epochs per head (default 3; 1 with --quick)
  --rates LIST      head dropout rates (default 0,0.2,0.5,0.8)
  --out DIR         where the checkpoints go (default: a new folder under the temp dir)
  --seed N          seed (default 42)
  --plot FILE       where to draw the curves (default ./frozen_base_sweep.png in the current
                    directory; ./frozen_base_sweep-quick.png with --quick)
  --docs            draw docs/frozen_base_sweep.png instead, the picture README.md shows
Fashion-MNIST: 10,000 training images unless --full or --train N; the last 1/6 of them
validates the checkpoints";

/// The base's layers: the first `BASE_LAYERS` of every model here.
fn base() -> wgnn::Result<Vec<Layer>> {
    Ok(vec![
        Conv2d::new(32, [3, 3])?.activation(Activation::Relu).into(),
        MaxPool2d::new([2, 2])?.into(),
        Conv2d::new(64, [3, 3])?.activation(Activation::Relu).into(),
        MaxPool2d::new([2, 2])?.into(),
        Layer::Flatten,
    ])
}

const BASE_LAYERS: usize = 5;
/// The base's weights, as Keras names them in every model built here.
const BASE_TENSORS: [&str; 4] = [
    "conv2d/kernel",
    "conv2d/bias",
    "conv2d_1/kernel",
    "conv2d_1/bias",
];

/// Base + Dense(100) relu + Dropout(p) + Dense(classes).
fn with_head(input: &[usize], classes: usize, p: f32) -> wgnn::Result<Sequential> {
    let mut m = Sequential::new(input);
    for l in base()? {
        m.add(l);
    }
    m.add(Dense::new(100)?.activation(Activation::Relu));
    m.add(Dropout::new(p)?);
    m.add(Dense::new(classes)?);
    Ok(m)
}

fn base_weights(m: &Sequential) -> wgnn::Result<Vec<NamedTensor>> {
    Ok(m.weights()?
        .into_iter()
        .filter(|t| BASE_TENSORS.contains(&t.name.as_str()))
        .collect())
}

/// Reads a `--base` file, checking names, shapes and values against `model`'s base.
fn read_base(path: &Path, model: &Sequential) -> AnyResult<Vec<NamedTensor>> {
    let want = base_weights(model)?;
    let expected: Vec<(String, Vec<usize>)> = want
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let bytes = std::fs::read(path).map_err(|e| format!("--base {}: {e}", path.display()))?;
    let specs: Vec<WeightSpec> = expected
        .iter()
        .map(|(name, shape)| WeightSpec {
            name: name.clone(),
            shape: shape.clone(),
            layer: "base".into(),
        })
        .collect();
    let opts = WeightsOptions::default();
    let data = from_safetensors(&bytes, &path.display().to_string(), &specs, &opts)
        .map(|l| l.data)
        .map_err(|e| {
            let shapes: Vec<String> = expected.iter().map(|(n, s)| format!("{n} {s:?}")).collect();
            format!(
                "--base: {e} (this model's base needs exactly {})",
                shapes.join(", ")
            )
        })?;
    Ok(want
        .into_iter()
        .zip(data)
        .map(|(t, data)| NamedTensor { data, ..t })
        .collect())
}

/// Puts `base` into `model`'s weights (the head keeps its fresh initial values).
fn load_base(model: &mut Sequential, base: &[NamedTensor]) -> AnyResult {
    let mut all = model.weights()?;
    for t in &mut all {
        if let Some(b) = base.iter().find(|b| b.name == t.name) {
            if b.shape != t.shape {
                return Err(format!(
                    "base tensor {} has shape {:?}, the model expects {:?}",
                    b.name, b.shape, t.shape
                )
                .into());
            }
            t.data.clone_from(&b.data);
        }
    }
    model.load_weights_bytes(&to_safetensors(&all, None)?, "base weights")?;
    Ok(())
}

struct Data {
    train: Dataset,
    validation: Dataset,
    test: Dataset,
    source: String,
}

fn load(cli: &mut Cli) -> AnyResult<(Data, bool)> {
    let images: Option<PathBuf> = cli.value("--images")?;
    let size: usize = cli.value("--size")?.unwrap_or(32);
    let grey = cli.flag("--grey");
    let data = DataArgs::parse(cli)?;
    if let Some(dir) = images {
        if data.data.is_some() || data.cifar.is_some() {
            return Err("--images excludes --data and --cifar".into());
        }
        let channels = if grey { 1 } else { 3 };
        let all = wgnn::data::image_folder(
            &dir,
            size,
            size,
            channels,
            &wgnn::data::LoadLimits::default(),
        )?;
        let mut all = support::data::shuffled(&all, 7);
        if data.quick {
            all = support::data::take(
                all,
                Some(support::data::QUICK_TRAIN + support::data::QUICK_TEST),
            )?;
        } else if let Some(n) = data.train {
            all = support::data::take(all, Some(n))?;
        }
        if all.count < 10 {
            return Err(format!(
                "{}: {} images; at least 10 are needed to split training, validation and test sets",
                dir.display(),
                all.count
            )
            .into());
        }
        let (rest, test) = all.split(all.count - all.count / 5)?;
        let (train, validation) = rest.split(rest.count - rest.count / 5)?;
        let source = format!(
            "image folder {} ({} classes, {size}x{size}x{channels}): {} training, {} validation, \
             {} test images",
            dir.display(),
            all.classes,
            train.count,
            validation.count,
            test.count
        );
        return Ok((
            Data {
                train,
                validation,
                test,
                source,
            },
            data.quick,
        ));
    }
    let loaded = data.load(Some(10_000))?;
    let t = loaded.train;
    let (train, validation) = t.split(t.count - t.count / 6)?;
    let source = format!(
        "{}; {} for training, {} for validation",
        loaded.source, train.count, validation.count
    );
    Ok((
        Data {
            train,
            validation,
            test: loaded.test,
            source,
        },
        data.quick,
    ))
}

fn run() -> AnyResult {
    let mut cli = Cli::new(format!("{USAGE}\n{DATA_USAGE}"));
    let (data, quick) = load(&mut cli)?;
    let base_file: Option<PathBuf> = cli.value("--base")?;
    let save_base: Option<PathBuf> = cli.value("--save-base")?;
    let given_base_epochs: Option<usize> = cli.value("--base-epochs")?;
    let given_epochs: Option<usize> = cli.value("--epochs")?;
    let rates: Vec<f32> = cli
        .list("--rates")?
        .unwrap_or_else(|| vec![0.0, 0.2, 0.5, 0.8]);
    let out: Option<PathBuf> = cli.value("--out")?;
    let seed: u64 = cli.value("--seed")?.unwrap_or(42);
    let plot = support::chart::plot_path(&mut cli, "frozen_base_sweep", quick)?;
    cli.finish()?;
    let pick = |given: Option<usize>, default: usize, what: &str| -> Result<usize, String> {
        match (quick, given) {
            (true, _) => Ok(1),
            (false, Some(0)) => Err(format!("{what} must be at least 1")),
            (false, Some(n)) => Ok(n),
            (false, None) => Ok(default),
        }
    };
    let base_epochs = pick(given_base_epochs, 2, "--base-epochs")?;
    let epochs = pick(given_epochs, 3, "--epochs")?;
    if rates.is_empty() {
        return Err("--rates is empty".into());
    }
    if let Some(bad) = rates.iter().find(|p| !(0.0..1.0).contains(*p)) {
        return Err(format!("--rates: {bad} is outside [0, 1)").into());
    }
    let out = match out {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("wgnn-frozen-base-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    let gpu = wgnn::Gpu::new()?;
    println!("adapter: {}", gpu.info());
    println!("data: {}", data.source);
    let input = [data.train.height, data.train.width, data.train.channels];
    let classes = data.train.classes;
    let batch = 64;

    // 1. The base: loaded, or trained with a head of its own (Dense(100) relu, Dense).
    let mut pre = with_head(&input, classes, 0.0)?;
    pre.compile(&gpu, Optimizer::adam(1e-3), seed)?;
    let base = match &base_file {
        Some(path) => {
            let b = read_base(path, &pre)?;
            println!("base: loaded {} tensors from {}", b.len(), path.display());
            load_base(&mut pre, &b)?;
            b
        }
        None => {
            println!("base: training base + head for {base_epochs} epoch(s) (Adam 1e-3)");
            pre.fit(
                &data.train,
                &Fit {
                    epochs: base_epochs,
                    batch_size: batch,
                    validation: Some(&data.validation),
                    ..Fit::default()
                },
            )?;
            let score = pre.evaluate(&data.test, 256)?;
            println!(
                "base with its own head: test accuracy {}",
                pct(score.accuracy)
            );
            base_weights(&pre)?
        }
    };
    if let Some(path) = &save_base {
        wgnn::nn::weights::write_atomic(path, &to_safetensors(&base, None)?)?;
        println!("base weights written to {}", path.display());
    }

    // 2. One new head per rate on the frozen base.
    struct Outcome {
        p: f32,
        best: f64,
        best_epoch: usize,
        test: f64,
        history: wgnn::nn::History,
    }
    let mut outcomes = Vec::new();
    for &p in &rates {
        let mut m = with_head(&input, classes, p)?;
        // A head seed of its own, so the heads differ from the pre-training head.
        m.compile(&gpu, Optimizer::adam(1e-3), seed + 1)?;
        load_base(&mut m, &base)?;
        for i in 0..BASE_LAYERS {
            m.set_trainable(i, false)?;
        }
        if p == rates[0] {
            print!("{}", m.summary()?);
        }
        let path = out.join(format!("head_p{p}.safetensors"));
        println!(
            "\n== head with Dropout({p}) -> checkpoint {} ==",
            path.display()
        );
        let history = m.fit(
            &data.train,
            &Fit {
                epochs,
                batch_size: batch,
                validation: Some(&data.validation),
                checkpoint: Some(ModelCheckpoint {
                    path: path.clone(),
                    monitor: Monitor::ValAccuracy,
                    save_best_only: true,
                    include_optimizer: false,
                }),
                ..Fit::default()
            },
        )?;
        // The base must not have moved.
        let after = base_weights(&m)?;
        if after != base {
            return Err(format!("the frozen base changed while training the head p = {p}").into());
        }
        let (best_epoch, best) = history
            .epochs
            .iter()
            .filter_map(|e| e.validation.map(|v| (e.epoch, v.accuracy)))
            .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
        if best_epoch == 0 {
            return Err(format!("no finite validation accuracy for p = {p}").into());
        }
        // Score the checkpoint, not the last epoch's weights.
        m.load_weights(&path)?;
        let test = m.evaluate(&data.test, 256)?.accuracy;
        println!(
            "p = {p}: best validation accuracy {} at epoch {best_epoch}; that checkpoint scores {} on the test set",
            pct(best),
            pct(test)
        );
        outcomes.push(Outcome {
            p,
            best,
            best_epoch,
            test,
            history,
        });
    }

    println!("\nBest validation accuracy per head dropout rate (frozen base, {epochs} epoch(s)):");
    println!(
        "{:>6} {:>16} {:>11} {:>20}",
        "p", "best val acc", "at epoch", "test acc (checkpoint)"
    );
    for o in &outcomes {
        println!(
            "{:>6} {:>16} {:>11} {:>20}",
            o.p,
            pct(o.best),
            o.best_epoch,
            pct(o.test)
        );
    }
    println!("checkpoints in {}", out.display());

    let mut val = Panel::new("validation accuracy per epoch", "epoch", "accuracy");
    let mut train = Panel::new("training accuracy (dropout on)", "epoch", "accuracy");
    for (i, o) in outcomes.iter().enumerate() {
        let v = o
            .history
            .epochs
            .iter()
            .map(|e| e.validation.map_or(f64::NAN, |v| v.accuracy));
        val = val.with(Series::new(format!("p = {}", o.p), per_epoch(v), i));
        let t = o.history.epochs.iter().map(|e| e.accuracy);
        train = train.with(Series::new(format!("p = {}", o.p), per_epoch(t), i));
    }
    support::chart::save_chart(
        &plot,
        &format!(
            "Frozen base, new head Dense(100) + Dropout(p) - {} training images",
            data.train.count
        ),
        &[train, val],
        2,
    )?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    support::cli::main_with("frozen_base_sweep", run)
}
