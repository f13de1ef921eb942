//! Plain CPU f64 implementations of every op: the references the GPU kernels are tested
//!
//! Layer: pure host code (may use `philox` and `spec`); no GPU types.
//! against, and a readable statement of what each kernel computes.
//!
//! Inputs are f32 slices as the GPU sees them; outputs are f64. Shapes follow the kernels:
//! matrices row-major, images NHWC, conv kernels HWIO.

mod batchnorm;
mod conv2d;
mod dense;
mod optim;
mod pool;
mod softmax_xent;

pub use batchnorm::*;
pub use conv2d::*;
pub use dense::*;
pub use optim::*;
pub use pool::*;
pub use softmax_xent::*;
