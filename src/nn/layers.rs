//! Layers: small plain values with Keras defaults and builders, checked early.

use crate::spec::Padding;
use crate::{Error, Result};

/// The activation applied at a layer's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity (Keras `activation=None`, the default).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
}

/// A fully connected layer: `act(x W + b)`, `W` `[in, units]` Glorot-uniform initialised.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Output features.
    pub units: usize,
    /// Output activation.
    pub activation: Activation,
    /// Whether the layer has a bias (Keras default `True`).
    pub use_bias: bool,
    /// L2 factor on the kernel (Keras `kernel_regularizer=l2(f)`): adds `f * sum(W^2)` to the loss.
    pub l2: f32,
    /// Whether training updates the layer's weights.
    pub trainable: bool,
}

impl Dense {
    /// A dense layer of `units` outputs, linear, with bias.
    ///
    /// # Errors
    /// When `units` is 0.
    pub fn new(units: usize) -> Result<Dense> {
        if units == 0 {
            return Err(Error::arg("Dense", "units must be at least 1, got 0"));
        }
        Ok(Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            l2: 0.0,
            trainable: true,
        })
    }

    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Dense {
        self.activation = a;
        self
    }

    /// Sets the L2 factor of the kernel.
    ///
    /// # Errors
    /// When `f` is negative or not finite.
    pub fn l2(mut self, f: f32) -> Result<Dense> {
        check_l2("Dense", f)?;
        self.l2 = f;
        Ok(self)
    }

    /// Freezes (`false`) or unfreezes the layer.
    pub fn trainable(mut self, t: bool) -> Dense {
        self.trainable = t;
        self
    }
}

/// A 2-D convolution over NHWC input with an HWIO kernel, Glorot-uniform initialised.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Output channels.
    pub filters: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along both axes.
    pub stride: usize,
    /// `Valid` (Keras default) or `Same`.
    pub padding: Padding,
    /// Output activation.
    pub activation: Activation,
    /// Whether the layer has a bias.
    pub use_bias: bool,
    /// L2 factor on the kernel.
    pub l2: f32,
    /// Whether training updates the layer's weights.
    pub trainable: bool,
}

impl Conv2d {
    /// `filters` output channels with a `kernel[0] x kernel[1]` window, stride 1, valid padding.
    ///
    /// # Errors
    /// When `filters` or a kernel side is 0.
    pub fn new(filters: usize, kernel: [usize; 2]) -> Result<Conv2d> {
        if filters == 0 || kernel[0] == 0 || kernel[1] == 0 {
            return Err(Error::arg(
                "Conv2d",
                format!(
                    "filters and kernel sides must be at least 1, got filters {filters}, kernel {kernel:?}"
                ),
            ));
        }
        Ok(Conv2d {
            filters,
            kernel,
            stride: 1,
            padding: Padding::Valid,
            activation: Activation::Linear,
            use_bias: true,
            l2: 0.0,
            trainable: true,
        })
    }

    /// Sets the stride.
    ///
    /// # Errors
    /// When `s` is 0.
    pub fn stride(mut self, s: usize) -> Result<Conv2d> {
        if s == 0 {
            return Err(Error::arg("Conv2d", "stride must be at least 1, got 0"));
        }
        self.stride = s;
        Ok(self)
    }

    /// Sets the padding.
    pub fn padding(mut self, p: Padding) -> Conv2d {
        self.padding = p;
        self
    }

    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Conv2d {
        self.activation = a;
        self
    }

    /// Sets the L2 factor of the kernel.
    ///
    /// # Errors
    /// When `f` is negative or not finite.
    pub fn l2(mut self, f: f32) -> Result<Conv2d> {
        check_l2("Conv2d", f)?;
        self.l2 = f;
        Ok(self)
    }

    /// Freezes (`false`) or unfreezes the layer.
    pub fn trainable(mut self, t: bool) -> Conv2d {
        self.trainable = t;
        self
    }
}

/// Max pooling over NHWC, valid padding; Keras' default stride is the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window height and width.
    pub window: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
}

impl MaxPool2d {
    /// A `window` pool with stride equal to the window (Keras default).
    ///
    /// # Errors
    /// When a window side is 0.
    pub fn new(window: [usize; 2]) -> Result<MaxPool2d> {
        if window[0] == 0 || window[1] == 0 {
            return Err(Error::arg(
                "MaxPool2d",
                format!("window sides must be at least 1, got {window:?}"),
            ));
        }
        Ok(MaxPool2d {
            window,
            stride: window,
        })
    }

    /// Sets the stride.
    ///
    /// # Errors
    /// When a stride is 0.
    pub fn stride(mut self, s: [usize; 2]) -> Result<MaxPool2d> {
        if s[0] == 0 || s[1] == 0 {
            return Err(Error::arg(
                "MaxPool2d",
                format!("strides must be at least 1, got {s:?}"),
            ));
        }
        self.stride = s;
        Ok(self)
    }
}

/// Batch normalisation over the last axis (Keras `BatchNormalization`): batch statistics in
/// training, moving averages in inference.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Added to the variance (Keras default 1e-3).
    pub epsilon: f32,
    /// Moving-average momentum (Keras default 0.99).
    pub momentum: f32,
    /// Whether training updates gamma and beta; a frozen BatchNorm also runs in inference
    /// mode, as in Keras.
    pub trainable: bool,
}

impl Default for BatchNorm {
    fn default() -> BatchNorm {
        BatchNorm {
            epsilon: 1e-3,
            momentum: 0.99,
            trainable: true,
        }
    }
}

impl BatchNorm {
    /// Keras defaults.
    pub fn new() -> BatchNorm {
        BatchNorm::default()
    }

    /// Freezes (`false`) or unfreezes the layer.
    pub fn trainable(mut self, t: bool) -> BatchNorm {
        self.trainable = t;
        self
    }
}

/// Inverted dropout: in training each element is zeroed with probability `rate` and the rest
/// scaled by `1 / (1 - rate)`; in inference the identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of dropping an element, in [0, 1].
    pub rate: f32,
}

impl Dropout {
    /// Dropout at `rate`.
    ///
    /// # Errors
    /// When `rate` is NaN or outside [0, 1].
    pub fn new(rate: f32) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::arg(
                "Dropout",
                format!("rate {rate} is outside [0, 1]"),
            ));
        }
        Ok(Dropout { rate })
    }
}

/// Any layer of a [`crate::nn::Sequential`].
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// See [`Dense`].
    Dense(Dense),
    /// See [`Conv2d`].
    Conv2d(Conv2d),
    /// See [`MaxPool2d`].
    MaxPool2d(MaxPool2d),
    /// See [`BatchNorm`].
    BatchNorm(BatchNorm),
    /// Collapses every axis but the batch axis.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// See [`Dropout`].
    Dropout(Dropout),
}

impl Layer {
    /// The Keras-like type name used in summaries and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense(_) => "Dense",
            Layer::Conv2d(_) => "Conv2D",
            Layer::MaxPool2d(_) => "MaxPooling2D",
            Layer::BatchNorm(_) => "BatchNormalization",
            Layer::Flatten => "Flatten",
            Layer::Relu => "ReLU",
            Layer::Dropout(_) => "Dropout",
        }
    }

    /// Whether the layer's weights are updated by training (layers without weights: true).
    pub fn trainable(&self) -> bool {
        match self {
            Layer::Dense(d) => d.trainable,
            Layer::Conv2d(c) => c.trainable,
            Layer::BatchNorm(b) => b.trainable,
            _ => true,
        }
    }

    /// Freezes (`false`) or unfreezes the layer; layers without weights ignore it.
    pub fn set_trainable(&mut self, t: bool) {
        match self {
            Layer::Dense(d) => d.trainable = t,
            Layer::Conv2d(c) => c.trainable = t,
            Layer::BatchNorm(b) => b.trainable = t,
            _ => {}
        }
    }
}

macro_rules! into_layer {
    ($($t:ident),*) => {$(
        impl From<$t> for Layer {
            fn from(l: $t) -> Layer {
                Layer::$t(l)
            }
        }
    )*};
}
into_layer!(Dense, Conv2d, MaxPool2d, BatchNorm, Dropout);

fn check_l2(op: &'static str, f: f32) -> Result<()> {
    if !f.is_finite() || f < 0.0 {
        return Err(Error::arg(
            op,
            format!("l2 factor {f} must be finite and >= 0"),
        ));
    }
    Ok(())
}
