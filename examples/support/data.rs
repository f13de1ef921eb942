//! The data sets: which one the options choose, loading it, cutting it to size and
//! shuffling it.

use std::path::{Path, PathBuf};

use wgnn::data::{Dataset, LoadLimits};

use super::cli::{AnyResult, Cli};

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
