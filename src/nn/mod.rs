//! The Keras-like API: layers, `Sequential`, optimizers, `fit` / `evaluate` / `predict`.
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

mod layers;
mod model;
pub mod weights;

pub use layers::{Activation, BatchNorm, Conv2d, Dense, Dropout, Layer, MaxPool2d};
pub use model::{
    EpochLog, Evaluation, Fit, History, ModelCheckpoint, Monitor, OnNonFinite, Optimizer,
    Sequential, Trainer,
};
pub use weights::NamedTensor;
