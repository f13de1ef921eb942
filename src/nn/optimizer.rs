//! How the weights are updated: the public [`Optimizer`], lowered once to the executor's
//! [`spec::Update`](crate::spec::Update).

use crate::Result;

/// How the weights are updated. L2 factors belong to the layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent, with Keras' momentum rule `v = m v - lr g; w += v`.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum in [0, 1).
        momentum: f32,
    },
    /// Adam with bias correction (Keras' form).
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Stabiliser.
        epsilon: f32,
    },
}

impl Optimizer {
    /// SGD with learning rate `lr` and `momentum`.
    pub fn sgd(lr: f32, momentum: f32) -> Optimizer {
        Optimizer::Sgd { lr, momentum }
    }

    /// Adam with learning rate `lr` and Keras' defaults (0.9, 0.999, 1e-7).
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// The description the executor runs (L2 factors come from the layers), checked once
    /// here: `Err` naming `compile` and the value out of range.
    pub(crate) fn lower(&self) -> Result<crate::spec::Update> {
        let update = match *self {
            Optimizer::Sgd { lr, momentum } => crate::spec::Update::Sgd(crate::spec::Sgd {
                lr,
                momentum,
                weight_decay: 0.0,
            }),
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => crate::spec::Update::Adam(crate::spec::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                weight_decay: 0.0,
            }),
        };
        update.check("compile")?;
        Ok(update)
    }
}
