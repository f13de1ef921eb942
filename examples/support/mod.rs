//! What the examples share: argument parsing, data loading, a seeded shuffle and PNG line
//! charts. Each example includes it with `#[path = "support/mod.rs"] mod support;`.
//!
//! The charts are drawn with `plotters` into an RGB buffer and written with the `image`
//! crate; text uses `DejaVuSans-ascii.ttf` beside this file (DejaVu Sans cut down to ASCII,
//! 13 KB, licence in `FONT-LICENSE.txt`), so no system font is needed.

// Each example uses a different part of this module.
#![allow(dead_code)]

use std::error::Error;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use plotters::prelude::*;
use wgnn::data::{Dataset, LoadLimits};

/// The error type of every example's `run`.
pub type AnyResult<T = ()> = Result<T, Box<dyn Error>>;

/// Runs `run`, printing its error as `name: message` on stderr and exiting with status 1.
pub fn main_with(name: &str, run: impl FnOnce() -> AnyResult) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A small command-line parser: `--flag`, `--name VALUE` or `--name=VALUE`; what is left
/// when [`Cli::finish`] runs is an error naming it.
pub struct Cli {
    usage: String,
    args: Vec<String>,
}

impl Cli {
    /// Reads the process arguments; prints `usage` and exits 0 on `-h` or `--help`.
    pub fn new(usage: impl Into<String>) -> Cli {
        let usage = usage.into();
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{usage}");
            std::process::exit(0);
        }
        Cli { usage, args }
    }

    /// Whether `--name` was given (removes it).
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        self.args.len() != before
    }

    /// The value of `--name VALUE` or `--name=VALUE` (the last one given), parsed.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: Display,
    {
        let mut found = None;
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            let raw = if a == name {
                let v = self
                    .args
                    .get(i + 1)
                    .filter(|v| !v.starts_with("--"))
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value\n{}", self.usage))?;
                self.args.drain(i..i + 2);
                v
            } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                let v = v.to_string();
                self.args.remove(i);
                v
            } else {
                i += 1;
                continue;
            };
            let parsed = raw
                .parse::<T>()
                .map_err(|e| format!("{name} {raw:?}: {e}"))?;
            found = Some(parsed);
        }
        Ok(found)
    }

    /// A comma-separated list, e.g. `--rates 0,0.2,0.5`.
    pub fn list<T: FromStr>(&mut self, name: &str) -> Result<Option<Vec<T>>, String>
    where
        T::Err: Display,
    {
        let Some(raw) = self.value::<String>(name)? else {
            return Ok(None);
        };
        raw.split(',')
            .map(|s| {
                s.trim()
                    .parse::<T>()
                    .map_err(|e| format!("{name} item {s:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Err` naming the first argument nobody asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.args.first() {
            None => Ok(()),
            Some(a) => Err(format!("unknown argument {a:?}\n{}", self.usage)),
        }
    }
}

/// Where Debian's `dataset-fashion-mnist` package puts the full set.
pub const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Training and test images per set in `--quick` mode.
pub const QUICK_TRAIN: usize = 384;
/// See [`QUICK_TRAIN`].
pub const QUICK_TEST: usize = 256;

/// The data options every training example takes.
#[derive(Debug)]
pub struct DataArgs {
    /// `--data DIR`: Fashion-MNIST (or MNIST) IDX files.
    pub data: Option<PathBuf>,
    /// `--cifar DIR`: CIFAR-10 binary batches.
    pub cifar: Option<PathBuf>,
    /// `--full`: every training image (and the full set from [`FASHION_DIR`]).
    pub full: bool,
    /// `--train N`: the first N training images.
    pub train: Option<usize>,
    /// `--test N`: the first N test images.
    pub test: Option<usize>,
    /// `--quick`: a few hundred images, one epoch.
    pub quick: bool,
    /// Training and test images in quick mode ([`QUICK_TRAIN`], [`QUICK_TEST`] unless an
    /// example sets fewer).
    pub quick_sizes: (usize, usize),
}

/// The usage lines of [`DataArgs`].
pub const DATA_USAGE: &str = "\
data (Fashion-MNIST from /usr/share/datasets/fashion-mnist if present, else the subset in data/):
  --full          all training images (Fashion-MNIST: 60,000; the full set must be installed)
  --data DIR      Fashion-MNIST or MNIST IDX files (plain or .gz) in DIR
  --cifar DIR     CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin) in DIR
  --train N       use the first N training images
  --test N        use the first N test images
  --quick         a few hundred images at most, one epoch (what CI runs)";

/// A loaded data set and a line saying what it is.
pub struct Loaded {
    /// The training images.
    pub train: Dataset,
    /// The test images.
    pub test: Dataset,
    /// E.g. `Fashion-MNIST (/usr/share/datasets/fashion-mnist): 10000 training ...`.
    pub source: String,
    /// The data set's short name, e.g. `Fashion-MNIST`, `CIFAR-10`.
    pub name: &'static str,
}

impl DataArgs {
    /// Takes the data options out of `cli`.
    pub fn parse(cli: &mut Cli) -> Result<DataArgs, String> {
        let a = DataArgs {
            data: cli.value("--data")?,
            cifar: cli.value("--cifar")?,
            full: cli.flag("--full"),
            train: cli.value("--train")?,
            test: cli.value("--test")?,
            quick: cli.flag("--quick"),
            quick_sizes: (QUICK_TRAIN, QUICK_TEST),
        };
        if a.data.is_some() && a.cifar.is_some() {
            return Err("--data and --cifar exclude each other".into());
        }
        if a.train == Some(0) || a.test == Some(0) {
            return Err("--train and --test need at least 1 image".into());
        }
        Ok(a)
    }

    /// Loads the data: `default_train` training images unless `--full`, `--train` or
    /// `--quick` say otherwise; every test image unless `--test` or `--quick` do.
    pub fn load(&self, default_train: Option<usize>) -> AnyResult<Loaded> {
        let limits = LoadLimits::default();
        let (train, test, name, short) = if let Some(dir) = &self.cifar {
            let (a, b) = wgnn::data::cifar10(dir, &limits)?;
            (a, b, format!("CIFAR-10 ({})", dir.display()), "CIFAR-10")
        } else if let Some(dir) = &self.data {
            let (a, b) = wgnn::data::fashion_mnist(dir, &limits)?;
            (a, b, format!("IDX files ({})", dir.display()), "IDX data")
        } else if self.full || Path::new(FASHION_DIR).is_dir() {
            let (a, b) =
                wgnn::data::fashion_mnist(Path::new(FASHION_DIR), &limits).map_err(|e| {
                    format!(
                        "{e} (the full Fashion-MNIST set: `apt-get install dataset-fashion-mnist`, \
                     or give --data DIR)"
                    )
                })?;
            (
                a,
                b,
                format!("Fashion-MNIST ({FASHION_DIR})"),
                "Fashion-MNIST",
            )
        } else {
            let (a, b) = wgnn::data::shipped_fashion_mnist()?;
            let what = "the Fashion-MNIST subset shipped in data/".to_string();
            (a, b, what, "Fashion-MNIST subset")
        };
        let (want_train, want_test) = if self.quick {
            (Some(self.quick_sizes.0), Some(self.quick_sizes.1))
        } else if self.full {
            (self.train, self.test)
        } else {
            (self.train.or(default_train), self.test)
        };
        let train = take(train, want_train)?;
        let test = take(test, want_test)?;
        let source = format!(
            "{name}: {} training and {} test images of {}x{}x{}, {} classes",
            train.count, test.count, train.height, train.width, train.channels, train.classes
        );
        Ok(Loaded {
            train,
            test,
            source,
            name: short,
        })
    }

    /// Epochs to train: 1 in quick mode, else `--epochs N` or `default`.
    pub fn epochs(&self, given: Option<usize>, default: usize) -> Result<usize, String> {
        match (self.quick, given) {
            (true, _) => Ok(1),
            (false, Some(0)) => Err("--epochs must be at least 1".into()),
            (false, Some(n)) => Ok(n),
            (false, None) => Ok(default),
        }
    }
}

/// The first `n` images of `d` (all of them when `n` is `None` or larger).
pub fn take(d: Dataset, n: Option<usize>) -> wgnn::Result<Dataset> {
    match n {
        Some(n) if n < d.count => d.subset(0..n),
        _ => Ok(d),
    }
}

/// The images of `d` in an order drawn from `seed` (Fisher-Yates with SplitMix64), so a
/// folder loaded class by class can be split into training and validation sets.
pub fn shuffled(d: &Dataset, seed: u64) -> Dataset {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..d.count).collect();
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let len = d.image_len();
    let mut out = Dataset {
        images: Vec::with_capacity(d.images.len()),
        labels: Vec::with_capacity(d.count),
        ..d.clone()
    };
    for &i in &order {
        out.images
            .extend_from_slice(&d.images[i * len..(i + 1) * len]);
        out.labels.push(d.labels[i]);
    }
    out
}

/// Trains `model` for `epochs` passes over `train` (`batch` samples per step), evaluating
/// `test` after each epoch with batches of 256 (faster than the training batch on lavapipe),
/// and prints a Keras-like line per epoch. What `Sequential::fit` does with a validation
/// set, with a larger evaluation batch.
pub fn train_epochs(
    model: &mut wgnn::nn::Sequential,
    train: &Dataset,
    test: &Dataset,
    epochs: usize,
    batch: usize,
) -> wgnn::Result<wgnn::nn::History> {
    use std::io::Write;
    let mut history = wgnn::nn::History::default();
    for epoch in 1..=epochs {
        print!("Epoch {epoch}/{epochs}: ");
        let _ = std::io::stdout().flush();
        let started = std::time::Instant::now();
        let mut t = model.trainer(train, batch)?;
        let steps = t.steps_per_epoch();
        t.begin_epoch();
        for _ in 0..steps {
            t.step()?;
        }
        let (loss, accuracy) = t.end_epoch(epoch)?;
        let skipped_steps = t.skipped_steps();
        let seconds = started.elapsed().as_secs_f64();
        let eval_started = std::time::Instant::now();
        let v = model.evaluate(test, 256)?;
        println!(
            "{steps}/{steps} - {seconds:.1}s {:.0}ms/step - accuracy: {accuracy:.4} - loss: {loss:.4} \
             - val_accuracy: {:.4} - val_loss: {:.4} (evaluated in {:.1}s)",
            1000.0 * seconds / steps as f64,
            v.accuracy,
            v.loss,
            eval_started.elapsed().as_secs_f64()
        );
        history.epochs.push(wgnn::nn::EpochLog {
            epoch,
            loss,
            accuracy,
            validation: Some(v),
            seconds,
            skipped_steps,
        });
    }
    Ok(history)
}

/// The Fashion-MNIST class names, by label.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

// ---------------------------------------------------------------------------------------
// Charts

const FONT: &[u8] = include_bytes!("DejaVuSans-ascii.ttf");

/// Ten distinguishable colours (matplotlib's "tab10").
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend text.
    pub label: String,
    /// (x, y) points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Dashed rather than solid.
    pub dashed: bool,
}

impl Series {
    /// A solid line.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Series {
        Series {
            label: label.into(),
            points,
            color,
            dashed: false,
        }
    }

    /// The same line, dashed.
    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
}

/// Where a panel's legend goes.
#[derive(Clone, Copy, Debug)]
pub enum Legend {
    /// Lower right (rising curves such as accuracy).
    LowerRight,
    /// Upper right (falling curves such as loss).
    UpperRight,
    /// No legend.
    None,
}

/// One chart of a figure.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Category names for x = 0, 1, 2...; `None` for a numeric x axis.
    pub x_ticks: Option<Vec<String>>,
    /// Legend placement.
    pub legend: Legend,
    /// Decimals of the y tick labels.
    pub y_decimals: usize,
}

impl Panel {
    /// A panel with a numeric x axis, fitted y range and the legend lower right.
    pub fn new(title: impl Into<String>, x_label: &str, y_label: &str) -> Panel {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
            x_ticks: None,
            legend: Legend::LowerRight,
            y_decimals: 2,
        }
    }

    /// Adds a line.
    pub fn with(mut self, s: Series) -> Panel {
        self.series.push(s);
        self
    }
}

/// Points `(epoch, value)` for epochs 1, 2, 3...
pub fn per_epoch(values: impl IntoIterator<Item = f64>) -> Vec<(f64, f64)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, v))
        .collect()
}

fn span(values: impl Iterator<Item = f64>, pad_frac: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        let d = if lo.abs() > 1e-9 {
            lo.abs() * 0.05
        } else {
            0.5
        };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * pad_frac;
    (lo - pad, hi + pad)
}

/// The two panels of a single training run: loss and accuracy per epoch, training (dropout
/// on) solid and test dashed.
pub fn history_panels(history: &wgnn::nn::History) -> [Panel; 2] {
    let ep = &history.epochs;
    let val = |f: fn(&wgnn::nn::Evaluation) -> f64| {
        per_epoch(
            ep.iter()
                .map(move |e| e.validation.as_ref().map_or(f64::NAN, f)),
        )
    };
    let mut loss = Panel::new("loss", "epoch", "cross-entropy")
        .with(Series::new(
            "train (dropout on)",
            per_epoch(ep.iter().map(|e| e.loss)),
            0,
        ))
        .with(Series::new("test", val(|v| v.loss), 1).dashed());
    loss.legend = Legend::UpperRight;
    let acc = Panel::new("accuracy", "epoch", "accuracy")
        .with(Series::new(
            "train (dropout on)",
            per_epoch(ep.iter().map(|e| e.accuracy)),
            0,
        ))
        .with(Series::new("test", val(|v| v.accuracy), 1).dashed());
    [loss, acc]
}

/// Where an example draws its chart when `--plot` is not given: `docs/NAME.png`, the
/// picture the README shows; in `--quick` mode a file in the temporary folder instead, so a
/// CI run never overwrites the real one with a one-epoch curve.
pub fn default_plot(name: &str, quick: bool) -> PathBuf {
    if quick {
        std::env::temp_dir().join(format!("wgnn-{name}-quick.png"))
    } else {
        PathBuf::from(format!("docs/{name}.png"))
    }
}

/// Draws `panels` in a grid `cols` wide under `title`, writes a PNG to `path` (creating its
/// folder) and says where.
pub fn save_chart(path: &Path, title: &str, panels: &[Panel], cols: usize) -> AnyResult {
    // Registering twice is harmless; the map keeps one font per (family, style).
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the embedded font DejaVuSans-ascii.ttf is not a valid TrueType file")?;
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let (pw, ph, head) = (520u32, 380u32, 50u32);
    let (w, h) = (pw * cols as u32, ph * rows as u32 + head);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(head);
        top.draw(&Text::new(
            title.to_string(),
            (20, 14),
            ("sans-serif", 24).into_font().color(&BLACK),
        ))
        .map_err(|e| e.to_string())?;
        let cells = body.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(cells.iter()) {
            draw_panel(area, panel).map_err(|e| format!("drawing {:?}: {e}", panel.title))?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    image::save_buffer(path, &buf, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("plot written to {}", path.display());
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let integral_x = p.x_ticks.is_none() && xs.clone().all(|x| (x - x.round()).abs() < 1e-9);
    let (x0, x1) = match &p.x_ticks {
        Some(t) => (-0.5, t.len() as f64 - 0.5),
        None if integral_x => {
            let (a, b) = span(xs, 0.0);
            if b - a < 0.5 {
                (a.round() - 0.5, b.round() + 0.5)
            } else {
                (a.round() - 0.25, b.round() + 0.25)
            }
        }
        None => span(xs, 0.02),
    };
    let (y0, y1) = p.y_range.unwrap_or_else(|| {
        span(
            p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)),
            0.08,
        )
    });
    // Enough decimals that neighbouring ticks (about 8 over the range) differ.
    let step = (y1 - y0) / 8.0;
    let decimals = (-step.log10()).ceil().clamp(0.0, 4.0) as usize;
    let decimals = decimals.max(p.y_decimals);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let ticks = p.x_ticks.clone();
    let x_fmt = move |x: &f64| -> String {
        match &ticks {
            Some(t) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                    t[i as usize].clone()
                } else {
                    String::new()
                }
            }
            None if integral_x => {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            }
            None => format!("{x:.2}"),
        }
    };
    let n_x = match &p.x_ticks {
        Some(t) => t.len(),
        None => ((x1 - x0).round() as usize + 1).clamp(2, 11),
    };
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_labels(n_x)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| format!("{y:.*}", decimals))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()
        .map_err(err)?;
    for s in &p.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let style = color.stroke_width(2);
        let pts = s.points.clone();
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], color.stroke_width(2))
                        + PathElement::new(vec![(12, 0), (20, 0)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&q| Circle::new(q, 3, color.filled())))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style).point_size(3))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    let pos = match p.legend {
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::None => return Ok(()),
    };
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// `0.8123` as `81.23%`.
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}
