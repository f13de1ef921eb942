//! wgnn: neural-network compute kernels and a training executor on wgpu.
//!
//! Tensors live on the GPU; every kernel is a WGSL compute shader under `shaders/`, checked
//! against plain f64 CPU references in [`reference`](mod@reference). Dropout uses a counter-based
//! Philox-4x32-10 generator, so its mask is a pure function of (seed, offset, element index)
//! that the host reproduces bit for bit ([`philox`]) and that is never stored.
//!
//! ```
//! # fn main() -> wgnn::Result<()> {
//! let gpu = wgnn::Gpu::software()?;
//! let a = wgnn::Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = wgnn::Tensor::from_slice(&gpu, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
//! let c = wgnn::ops::matmul(&a, &b, false, false)?;
//! assert_eq!(c.to_vec()?, vec![4.0, 5.0, 10.0, 11.0]);
//! # Ok(())
//! # }
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `fs` | on | What takes a path: `data::{load_idx_pair, fashion_mnist, cifar10, image_folder, ImageFolder}`, `Sequential::{save_weights, load_weights, load_weights_with}`, `nn::weights::{write_atomic, write_atomic_with, temporaries, read_safetensors_file, read_metadata_file}`, `nn::ModelCheckpoint` and `Fit::checkpoint`. Each has a bytes form that stays without it. |
//! | `progress` | on | `fit`'s progress bar on a terminal (indicatif; never in a browser). |
//! | `testing` | off | `wgnn::testing` scaffolding for the crate's own tests, fuzzing and bench: hooks that inject non-finite values, the fusion and check switches, the bench's timing helpers. Not part of the supported API; a user's build never needs it. |
//!
//! A browser build (`wasm32-unknown-unknown`, WebGPU) turns `fs` and `progress` off
//! (`default-features = false`), as `web/` in the repository does.
//!
//! The crate needs Rust 1.95 or later (`rust-version`), the toolchain its CI builds and tests
//! with.
#![warn(missing_docs)]

pub use wgpu;

pub mod data;
mod error;
mod gpu;
pub(crate) mod graph;
pub(crate) mod kernels;
pub mod nn;
pub mod ops;
pub mod philox;
pub mod reference;
mod spec;
mod tensor;
pub(crate) mod tune;

pub use error::{Error, Result};
pub use gpu::{ExecStats, Gpu, GpuInfo, ObjectCounts};
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use tensor::set_poison_outputs;
pub use tensor::{DType, Tensor};
