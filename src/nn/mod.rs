//! The Keras-like API: layers, `Sequential`, optimizers, `fit` / `evaluate` / `predict`.
//!
//! Lives here: [`layers`](Layer) (plain values, checked), `lower` (layers to a graph),
//! `model` (`Sequential`: compile, evaluate, predict), `params` (its weights: read, saved,
//! loaded, moved), `fit` and `trainer` (the
//! training loop), `state` (training states to resume from), `mc` (Monte-Carlo dropout,
//! training masks), `optimizer`, `summary`,
//! [`weights`] (safetensors files). May use `graph`
//! (plans, runs, metrics), `data` (data sets, resident ones), `spec`, `error` and the `Gpu`
//! and `Tensor` handles; never `kernels` or `wgpu`.
//!
//! ```
//! # fn main() -> wgnn::Result<()> {
//! use wgnn::nn::{Activation, Dense, Dropout, Fit, Optimizer, Sequential};
//! let gpu = wgnn::Gpu::software()?;
//! let (train, test) = wgnn::data::shipped_fashion_mnist()?;
//! let mut model = Sequential::new(&[784])
//!     .with(Dense::new(64)?.activation(Activation::Relu))
//!     .with(Dropout::new(0.2)?)
//!     .with(Dense::new(10)?);
//! model.compile(&gpu, Optimizer::adam(1e-3), 42)?;
//! let history = model.fit(&train.subset(0..512)?, &Fit { epochs: 1, batch_size: 128, verbose: false, ..Fit::default() })?;
//! let eval = model.evaluate(&test, 256)?;
//! assert!(eval.accuracy > 0.3, "accuracy {}", eval.accuracy);
//! # let _ = history;
//! # Ok(())
//! # }
//! ```

mod fit;
mod layers;
mod lower;
mod mc;
mod model;
mod optimizer;
mod params;
mod progress;
mod state;
mod summary;
mod trainer;
pub mod weights;

#[cfg(feature = "fs")]
pub use fit::ModelCheckpoint;
pub use fit::{EpochLog, Evaluation, Fit, History, Monitor, OnNonFinite};
pub use layers::{
    Activation, BatchNorm, Conv2d, Dense, Dropout, Layer, MaxPool2d, SpatialDropout2d,
};
pub use mc::McPrediction;
pub use model::Sequential;
pub use optimizer::Optimizer;
pub use state::TrainingState;
pub use trainer::{PendingMetrics, Trainer, epoch_order};
pub use weights::NamedTensor;
