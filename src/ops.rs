//! Every kernel as a function on tensors: records one op, submits it, returns the result
//! without waiting (read it with [`crate::Tensor::to_vec`]).
//!
//! Shapes: images NHWC, conv kernels HWIO, matrices row-major `[rows, cols]`.

pub use crate::kernels::batchnorm::{
    batch_norm_backward, batch_norm_inference, batch_norm_train, batch_norm_update_moving,
};
pub use crate::kernels::conv2d::{conv2d, conv2d_backward_input, conv2d_backward_weight};
#[doc(hidden)]
pub use crate::kernels::data::{check_finite, spin};
pub use crate::kernels::dropout::{DropoutSpec, dropout, dropout_backward, philox_words};
pub use crate::kernels::elementwise::{bias_add, relu, relu_backward, relu_dropout_backward};
pub use crate::kernels::matmul::{dense, matmul};
pub use crate::kernels::optim::{adam_update, sgd_update};
pub use crate::spec::{Adam, Padding, Sgd};
pub use crate::kernels::pool::{max_pool2d, max_pool2d_backward};
pub use crate::kernels::reduce::bias_grad;
pub use crate::kernels::softmax_xent::{accuracy, softmax, softmax_cross_entropy};
