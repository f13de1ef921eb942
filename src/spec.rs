//! Plain descriptions shared by every layer of the crate: convolution padding and the
//! optimizers' hyperparameters, each validated in one place.
//!
//! Pure data: no GPU types, so the f64 [`crate::reference`], the kernels, the graph and the
//! `nn` builders all use these without depending on one another.

use crate::{Error, Result};

/// How a convolution treats the image border (Keras' `padding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: only windows wholly inside the image, so
    /// `out = (in - k) / stride + 1` (rounded down); the kernel must fit in the image.
    Valid,
    /// Zero padding so that `out = ceil(in / stride)`, as Keras and TensorFlow `"same"`: the
    /// total padding is `max((out - 1) * stride + k - in, 0)`, half of it (rounded down)
    /// before (top, left), the rest after (bottom, right).
    Same,
}

/// Stochastic gradient descent with optional momentum and L2 weight decay, as Keras'
/// `keras.optimizers.SGD` (without Nesterov) applied to a layer with
/// `kernel_regularizer=l2(weight_decay)`.
///
/// With `g' = g + 2 * weight_decay * w` (the gradient of the loss plus
/// `weight_decay * sum(w^2)`), one step is
///
/// - `momentum == 0`: `w = w - lr * g'` (the velocity is neither read nor written);
/// - otherwise: `v = momentum * v - lr * g'`, then `w = w + v`.
///
/// `weight_decay` is the L2 penalty coupled into the gradient, not the decoupled
/// `weight_decay` argument of Keras' optimizers (which shrinks `w` by `lr * wd * w`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// The learning rate, finite and >= 0 (Keras default 0.01).
    pub lr: f32,
    /// The momentum, in [0, 1) (default 0: plain gradient descent).
    pub momentum: f32,
    /// The L2 penalty factor `wd` of `wd * sum(w^2)`, finite and >= 0 (default 0).
    pub weight_decay: f32,
}

impl Default for Sgd {
    /// Keras' defaults: lr 0.01, momentum 0, no weight decay.
    fn default() -> Sgd {
        Sgd {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// Adam as Keras (`keras.optimizers.Adam`, `amsgrad=False`) and TensorFlow's `ApplyAdam`
/// compute it, with L2 weight decay as in [`Sgd`].
///
/// At step `t` (counting from 1), with `g' = g + 2 * weight_decay * w`:
///
/// ```text
/// m    = beta1 * m + (1 - beta1) * g'
/// v    = beta2 * v + (1 - beta2) * g'^2
/// lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
/// w    = w - lr_t * m / (sqrt(v) + epsilon)
/// ```
///
/// `epsilon` is added to `sqrt(v)` unscaled: it is the paper's "epsilon hat" (Kingma and Ba,
/// the formula before section 2.1), exactly as Keras documents its `epsilon`. The bias
/// corrections `beta^t` are computed on the host in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// The learning rate, finite and >= 0 (Keras default 0.001).
    pub lr: f32,
    /// The decay rate of the first moment, in [0, 1) (default 0.9).
    pub beta1: f32,
    /// The decay rate of the second moment, in [0, 1) (default 0.999).
    pub beta2: f32,
    /// Added to `sqrt(v)`, finite and > 0 (default 1e-7).
    pub epsilon: f32,
    /// The L2 penalty factor `wd` of `wd * sum(w^2)`, finite and >= 0 (default 0).
    pub weight_decay: f32,
}

impl Default for Adam {
    /// Keras' defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7, no weight decay.
    fn default() -> Adam {
        Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl Sgd {
    /// `Err` naming `op` unless `lr` and `weight_decay` are finite and >= 0 and `momentum` is
    /// in [0, 1), e.g. `sgd_update: momentum 1.5 is outside [0, 1)`.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        finite_nonneg(op, "lr", self.lr)?;
        unit_interval(op, "momentum", self.momentum)?;
        finite_nonneg(op, "weight_decay", self.weight_decay)
    }
}

impl Adam {
    /// `Err` naming `op` unless `lr` and `weight_decay` are finite and >= 0, `beta1` and
    /// `beta2` are in [0, 1) and `epsilon` is finite and > 0.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        finite_nonneg(op, "lr", self.lr)?;
        unit_interval(op, "beta1", self.beta1)?;
        unit_interval(op, "beta2", self.beta2)?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::arg(
                op,
                format!("epsilon {} is not a finite number > 0", self.epsilon),
            ));
        }
        finite_nonneg(op, "weight_decay", self.weight_decay)
    }
}

/// The update rule the executor applies to every trainable parameter (each parameter's
/// `weight_decay` is its layer's L2 factor, filled in by the plan).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Update {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
}

impl Update {
    /// `Err` naming `op` when a hyperparameter is out of range.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        match self {
            Update::Sgd(s) => s.check(op),
            Update::Adam(a) => a.check(op),
        }
    }

    /// Tensors of optimizer state per parameter (velocity; or first and second moments).
    pub(crate) fn slots(&self) -> usize {
        match self {
            Update::Sgd(_) => 1,
            Update::Adam(_) => 2,
        }
    }
}

fn finite_nonneg(op: &'static str, name: &str, x: f32) -> Result<()> {
    if !(x.is_finite() && x >= 0.0) {
        return Err(Error::arg(
            op,
            format!("{name} {x} is not a finite number >= 0"),
        ));
    }
    Ok(())
}

fn unit_interval(op: &'static str, name: &str, x: f32) -> Result<()> {
    if !(0.0..1.0).contains(&x) {
        return Err(Error::arg(op, format!("{name} {x} is outside [0, 1)")));
    }
    Ok(())
}
