//! The seed's regularised CNN: L2 on every kernel, batch normalisation after each
//! convolution, dropout before the classifier, trained with Adam (learning rate 3e-4).
//!
//! Three blocks of Conv2D (32, 64, 128 filters, 3x3, same padding, relu, L2 0.01) ->
//! BatchNormalization -> MaxPooling2D 2x2, then Flatten -> Dense 64 relu (L2 0.01) ->
//! Dropout 0.5 -> Dense 10.
//!
//! ```text
//! cargo run --release --example l2_dropout_cnn                  # 10,000 images, 5 epochs
//! cargo run --release --example l2_dropout_cnn -- --full --epochs 10
//! cargo run --release --example l2_dropout_cnn -- --cifar DIR   # CIFAR-10 binary batches
//! cargo run --release --example l2_dropout_cnn -- --quick       # CI: 384 images, 1 epoch
//! ```
//!
//! Prints the model summary, a line per epoch, the final test accuracy, and draws loss and
//! accuracy curves to ./l2_dropout_cnn.png in the current directory (`--plot FILE`; `--docs`
//! redraws docs/l2_dropout_cnn.png, the picture README.md shows).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;

use support::{
    cli::{AnyResult, Cli, pct},
    data::{DATA_USAGE, DataArgs},
};
use wgnn::nn::{
    Activation, BatchNorm, Conv2d, Dense, Dropout, Fit, MaxPool2d, Optimizer, Sequential,
};
use wgnn::ops::Padding;

const USAGE: &str = "\
usage: l2_dropout_cnn [data options] [--epochs N] [--lr X] [--batch N] [--l2 X] [--seed N]
                      [--plot FILE | --docs] [--save FILE]
  --epochs N     epochs (default 5; 1 with --quick)
  --lr X         Adam learning rate (default 3e-4)
  --batch N      batch size (default 32)
  --l2 X         L2 factor on every kernel (default 0.01)
  --seed N       weights and dropout seed (default 42)
  --plot FILE    where to draw the curves (default ./l2_dropout_cnn.png in the current
                 directory; ./l2_dropout_cnn-quick.png with --quick)
  --docs         draw docs/l2_dropout_cnn.png instead, the picture README.md shows
  --save FILE    write the trained weights (safetensors)
training images: 10,000 unless --full or --train N";

fn model(input: &[usize], classes: usize, l2: f32) -> wgnn::Result<Sequential> {
    let mut m = Sequential::new(input);
    for filters in [32, 64, 128] {
        m.add(
            Conv2d::new(filters, [3, 3])?
                .padding(Padding::Same)
                .activation(Activation::Relu)
                .l2(l2)?,
        );
        m.add(BatchNorm::new());
        m.add(MaxPool2d::new([2, 2])?);
    }
    m.add(wgnn::nn::Layer::Flatten);
    m.add(Dense::new(64)?.activation(Activation::Relu).l2(l2)?);
    m.add(Dropout::new(0.5)?);
    m.add(Dense::new(classes)?);
    Ok(m)
}

fn run() -> AnyResult {
    let mut cli = Cli::new(format!("{USAGE}\n{DATA_USAGE}"));
    let data = DataArgs::parse(&mut cli)?;
    let epochs = data.epochs(cli.value("--epochs")?, 5)?;
    let lr: f32 = cli.value("--lr")?.unwrap_or(3e-4);
    let batch: usize = cli.value("--batch")?.unwrap_or(32);
    let l2: f32 = cli.value("--l2")?.unwrap_or(0.01);
    let seed: u64 = cli.value("--seed")?.unwrap_or(42);
    let plot = support::chart::plot_path(&mut cli, "l2_dropout_cnn", data.quick)?;
    let save: Option<PathBuf> = cli.value("--save")?;
    cli.finish()?;

    let gpu = wgnn::Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let loaded = data.load(Some(10_000))?;
    println!("data: {}", loaded.source);
    let (train, test) = (&loaded.train, &loaded.test);

    let mut m = model(
        &[train.height, train.width, train.channels],
        train.classes,
        l2,
    )?;
    m.compile(&gpu, Optimizer::adam(lr), seed)?;
    print!("{}", m.summary()?);
    println!("optimizer: Adam lr {lr}, batch {batch}, {epochs} epoch(s), L2 {l2} on every kernel");

    let history = m.fit(
        train,
        &Fit {
            epochs,
            batch_size: batch,
            validation: Some(test),
            ..Fit::default()
        },
    )?;
    println!("\nepoch   loss      accuracy   val_loss  val_accuracy   seconds");
    for e in &history.epochs {
        let v = e
            .validation
            .ok_or("fit returned an epoch without validation")?;
        println!(
            "{:>5}   {:.4}    {:.4}     {:.4}    {:.4}        {:.1}",
            e.epoch, e.loss, e.accuracy, v.loss, v.accuracy, e.seconds
        );
    }
    let eval = m.evaluate(test, 256)?;
    println!(
        "final test accuracy: {} (loss {:.4}; losses are cross-entropy only, L2 acts through the gradients)",
        pct(eval.accuracy),
        eval.loss
    );
    if !eval.loss.is_finite() {
        return Err(format!("the test loss is not finite: {}", eval.loss).into());
    }
    if let Some(path) = &save {
        m.save_weights(path)?;
        println!("weights written to {}", path.display());
    }

    support::chart::save_chart(
        &plot,
        &format!(
            "L2 + BatchNorm + dropout CNN, Adam {lr} - {} training images, test {}",
            train.count,
            pct(eval.accuracy)
        ),
        &support::chart::history_panels(&history),
        2,
    )?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    support::cli::main_with("l2_dropout_cnn", run)
}
