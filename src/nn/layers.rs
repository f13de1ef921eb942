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
///
/// Its fields are private, so every value passes the checks of [`Dense::new`] and the
/// builders (and `compile` checks them again):
///
/// ```compile_fail
/// let d = wgnn::nn::Dense { units: 0 };
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    units: usize,
    activation: Activation,
    use_bias: bool,
    l2: f32,
    trainable: bool,
}

impl Dense {
    /// A dense layer of `units` outputs, linear, with bias.
    ///
    /// # Errors
    /// When `units` is 0.
    pub fn new(units: usize) -> Result<Dense> {
        Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            l2: 0.0,
            trainable: true,
        }
        .checked()
    }

    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Dense {
        self.activation = a;
        self
    }

    /// With (`true`, the Keras default) or without a bias.
    pub fn use_bias(mut self, on: bool) -> Dense {
        self.use_bias = on;
        self
    }

    /// Sets the L2 factor of the kernel (Keras `kernel_regularizer=l2(f)`): adds
    /// `f * sum(W^2)` to the loss.
    ///
    /// # Errors
    /// When `f` is negative or not finite.
    pub fn l2(mut self, f: f32) -> Result<Dense> {
        self.l2 = f;
        self.checked()
    }

    /// Freezes (`false`) or unfreezes the layer.
    pub fn trainable(mut self, t: bool) -> Dense {
        self.trainable = t;
        self
    }

    /// Output features.
    pub fn units(&self) -> usize {
        self.units
    }

    /// What is wrong with the values, if anything.
    fn problem(&self) -> Option<String> {
        if self.units == 0 {
            return Some("units must be at least 1, got 0".into());
        }
        l2_problem(self.l2)
    }

    fn checked(self) -> Result<Dense> {
        match self.problem() {
            Some(msg) => Err(Error::arg("Dense", msg)),
            None => Ok(self),
        }
    }
}

/// A 2-D convolution over NHWC input with an HWIO kernel, Glorot-uniform initialised.
///
/// Fields private; every value passes the checks of [`Conv2d::new`] and the builders.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    filters: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: Padding,
    activation: Activation,
    use_bias: bool,
    l2: f32,
    trainable: bool,
}

impl Conv2d {
    /// `filters` output channels with a `kernel[0] x kernel[1]` window, stride 1, valid padding.
    ///
    /// # Errors
    /// When `filters` or a kernel side is 0.
    pub fn new(filters: usize, kernel: [usize; 2]) -> Result<Conv2d> {
        Conv2d {
            filters,
            kernel,
            stride: 1,
            padding: Padding::Valid,
            activation: Activation::Linear,
            use_bias: true,
            l2: 0.0,
            trainable: true,
        }
        .checked()
    }

    /// Sets the stride.
    ///
    /// # Errors
    /// When `s` is 0.
    pub fn stride(mut self, s: usize) -> Result<Conv2d> {
        self.stride = s;
        self.checked()
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

    /// With (`true`, the Keras default) or without a bias.
    pub fn use_bias(mut self, on: bool) -> Conv2d {
        self.use_bias = on;
        self
    }

    /// Sets the L2 factor of the kernel.
    ///
    /// # Errors
    /// When `f` is negative or not finite.
    pub fn l2(mut self, f: f32) -> Result<Conv2d> {
        self.l2 = f;
        self.checked()
    }

    /// Freezes (`false`) or unfreezes the layer.
    pub fn trainable(mut self, t: bool) -> Conv2d {
        self.trainable = t;
        self
    }

    /// Output channels.
    pub fn filters(&self) -> usize {
        self.filters
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }

    /// Stride along both axes.
    pub fn get_stride(&self) -> usize {
        self.stride
    }

    /// `Valid` (Keras default) or `Same`.
    pub fn get_padding(&self) -> Padding {
        self.padding
    }

    fn problem(&self) -> Option<String> {
        let (filters, kernel) = (self.filters, self.kernel);
        if filters == 0 || kernel[0] == 0 || kernel[1] == 0 {
            return Some(format!(
                "filters and kernel sides must be at least 1, got filters {filters}, kernel {kernel:?}"
            ));
        }
        if self.stride == 0 {
            return Some("stride must be at least 1, got 0".into());
        }
        l2_problem(self.l2)
    }

    fn checked(self) -> Result<Conv2d> {
        match self.problem() {
            Some(msg) => Err(Error::arg("Conv2d", msg)),
            None => Ok(self),
        }
    }
}

/// The getters `Dense` and `Conv2d` share (their fields of the same names).
macro_rules! weighted_getters {
    ($($layer:ty),*) => {$(
        impl $layer {
            /// The output activation.
            pub fn get_activation(&self) -> Activation {
                self.activation
            }

            /// Whether the layer has a bias.
            pub fn has_bias(&self) -> bool {
                self.use_bias
            }

            /// The L2 factor of the kernel.
            pub fn get_l2(&self) -> f32 {
                self.l2
            }

            /// Whether training updates the layer's weights.
            pub fn is_trainable(&self) -> bool {
                self.trainable
            }
        }
    )*};
}

weighted_getters!(Dense, Conv2d);

/// Max pooling over NHWC, valid padding; Keras' default stride is the window.
///
/// Fields private; every value passes the checks of [`MaxPool2d::new`] and the builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    window: [usize; 2],
    stride: [usize; 2],
}

impl MaxPool2d {
    /// A `window` pool with stride equal to the window (Keras default).
    ///
    /// # Errors
    /// When a window side is 0.
    pub fn new(window: [usize; 2]) -> Result<MaxPool2d> {
        MaxPool2d {
            window,
            stride: window,
        }
        .checked()
    }

    /// Sets the stride.
    ///
    /// # Errors
    /// When a stride is 0.
    pub fn stride(mut self, s: [usize; 2]) -> Result<MaxPool2d> {
        self.stride = s;
        self.checked()
    }

    /// Window height and width.
    pub fn window(&self) -> [usize; 2] {
        self.window
    }

    /// Stride along height and width.
    pub fn get_stride(&self) -> [usize; 2] {
        self.stride
    }

    fn problem(&self) -> Option<String> {
        let (w, s) = (self.window, self.stride);
        if w[0] == 0 || w[1] == 0 {
            return Some(format!("window sides must be at least 1, got {w:?}"));
        }
        if s[0] == 0 || s[1] == 0 {
            return Some(format!("strides must be at least 1, got {s:?}"));
        }
        None
    }

    fn checked(self) -> Result<MaxPool2d> {
        match self.problem() {
            Some(msg) => Err(Error::arg("MaxPool2d", msg)),
            None => Ok(self),
        }
    }
}

/// Batch normalisation over the last axis (Keras `BatchNormalization`): batch statistics in
/// training, moving averages in inference.
///
/// Fields private; every value passes the checks of the builders.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    epsilon: f32,
    momentum: f32,
    trainable: bool,
}

impl Default for BatchNorm {
    /// Keras defaults: epsilon 1e-3, momentum 0.99, trainable.
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

    /// Sets the value added to the variance (Keras default 1e-3).
    ///
    /// # Errors
    /// When `e` is not a finite number > 0.
    pub fn epsilon(mut self, e: f32) -> Result<BatchNorm> {
        self.epsilon = e;
        self.checked()
    }

    /// Sets the moving-average momentum (Keras default 0.99).
    ///
    /// # Errors
    /// When `m` is NaN or outside [0, 1].
    pub fn momentum(mut self, m: f32) -> Result<BatchNorm> {
        self.momentum = m;
        self.checked()
    }

    /// Freezes (`false`) or unfreezes the layer; a frozen BatchNorm also runs in inference
    /// mode, as in Keras.
    pub fn trainable(mut self, t: bool) -> BatchNorm {
        self.trainable = t;
        self
    }

    /// The value added to the variance.
    pub fn get_epsilon(&self) -> f32 {
        self.epsilon
    }

    /// The moving-average momentum.
    pub fn get_momentum(&self) -> f32 {
        self.momentum
    }

    /// Whether training updates gamma and beta (and uses batch statistics).
    pub fn is_trainable(&self) -> bool {
        self.trainable
    }

    fn problem(&self) -> Option<String> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Some(format!("epsilon {} must be finite and > 0", self.epsilon));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Some(format!("momentum {} is outside [0, 1]", self.momentum));
        }
        None
    }

    fn checked(self) -> Result<BatchNorm> {
        match self.problem() {
            Some(msg) => Err(Error::arg("BatchNorm", msg)),
            None => Ok(self),
        }
    }
}

/// Inverted dropout: in training each element is zeroed with probability `rate` and the rest
/// scaled by `1 / (1 - rate)`; in inference the identity.
///
/// The rate is private, so only [`Dropout::new`] makes one:
///
/// ```compile_fail
/// let d = wgnn::nn::Dropout { rate: -0.5 };
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    rate: f32,
}

impl Dropout {
    /// Dropout at `rate`.
    ///
    /// # Errors
    /// When `rate` is NaN or outside [0, 1].
    pub fn new(rate: f32) -> Result<Dropout> {
        Dropout { rate }.checked()
    }

    /// The probability of dropping an element, in [0, 1].
    pub fn rate(&self) -> f32 {
        self.rate
    }

    fn problem(&self) -> Option<String> {
        let rate = self.rate;
        (!(0.0..=1.0).contains(&rate)).then(|| format!("rate {rate} is outside [0, 1]"))
    }

    fn checked(self) -> Result<Dropout> {
        match self.problem() {
            Some(msg) => Err(Error::arg("Dropout", msg)),
            None => Ok(self),
        }
    }
}

/// SpatialDropout2D (Keras `SpatialDropout2D`, PyTorch `Dropout2d`): in training each
/// feature map (one channel of one sample of an `[height, width, channels]` input) is zeroed
/// with probability `rate` and the rest scaled by `1 / (1 - rate)`; in inference the identity.
///
/// The mask of the layer at index `l` of the `Sequential` at training step `s` is
/// [`crate::ops::spatial_dropout`]'s with the model's seed and `offset = l + s * 2^32`, as for
/// [`Dropout`]: element `(n, h, w, c)` of the batch is kept iff
/// `wgnn::philox::keep(seed, offset, n * channels + c, rate)`. Directly after a [`Conv2d`]
/// (with or without its ReLU) it is drawn in the convolution's epilogue.
///
/// The rate is private, so only [`SpatialDropout2d::new`] makes one:
///
/// ```compile_fail
/// let d = wgnn::nn::SpatialDropout2d { rate: -0.5 };
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SpatialDropout2d {
    rate: f32,
}

impl SpatialDropout2d {
    /// Spatial dropout at `rate`.
    ///
    /// # Errors
    /// When `rate` is NaN or outside [0, 1].
    pub fn new(rate: f32) -> Result<SpatialDropout2d> {
        SpatialDropout2d { rate }.checked()
    }

    /// The probability of dropping a feature map, in [0, 1].
    pub fn rate(&self) -> f32 {
        self.rate
    }

    fn problem(&self) -> Option<String> {
        let rate = self.rate;
        (!(0.0..=1.0).contains(&rate)).then(|| format!("rate {rate} is outside [0, 1]"))
    }

    fn checked(self) -> Result<SpatialDropout2d> {
        match self.problem() {
            Some(msg) => Err(Error::arg("SpatialDropout2d", msg)),
            None => Ok(self),
        }
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
    /// See [`SpatialDropout2d`].
    SpatialDropout2d(SpatialDropout2d),
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
            Layer::SpatialDropout2d(_) => "SpatialDropout2D",
        }
    }

    /// `Err` of the public call `op` naming layer `index` and the value out of range: the
    /// constructors' and builders' checks again, for `compile` (defence in depth).
    pub(crate) fn check(&self, op: &'static str, index: usize) -> Result<()> {
        let problem = match self {
            Layer::Dense(d) => d.problem(),
            Layer::Conv2d(c) => c.problem(),
            Layer::MaxPool2d(p) => p.problem(),
            Layer::BatchNorm(b) => b.problem(),
            Layer::Dropout(d) => d.problem(),
            Layer::SpatialDropout2d(d) => d.problem(),
            Layer::Flatten | Layer::Relu => None,
        };
        match problem {
            Some(msg) => Err(Error::arg(
                op,
                format!("layer {index} ({}): {msg}", self.kind()),
            )),
            None => Ok(()),
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
into_layer!(
    Dense,
    Conv2d,
    MaxPool2d,
    BatchNorm,
    Dropout,
    SpatialDropout2d
);

/// What is wrong with an L2 factor, if anything.
fn l2_problem(f: f32) -> Option<String> {
    (!f.is_finite() || f < 0.0).then(|| format!("l2 factor {f} must be finite and >= 0"))
}

#[cfg(test)]
impl Dropout {
    /// A dropout with any rate, unchecked: for the tests of the checks behind the builders.
    pub(crate) fn bypassing_checks(rate: f32) -> Dropout {
        Dropout { rate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that bypass the constructors (as a `Layer` from elsewhere might) are refused
    /// by the check `compile` runs, naming the call, the layer and the value.
    #[test]
    fn layer_check_refuses_values_that_bypassed_the_builders() {
        let dense = Dense::new(4).unwrap();
        let cases: Vec<(Layer, &str)> = vec![
            (
                Dropout { rate: -0.5 }.into(),
                "Dropout): rate -0.5 is outside [0, 1]",
            ),
            (
                Dropout { rate: f32::NAN }.into(),
                "Dropout): rate NaN is outside [0, 1]",
            ),
            (
                SpatialDropout2d { rate: 1.5 }.into(),
                "SpatialDropout2D): rate 1.5 is outside [0, 1]",
            ),
            (
                Dense {
                    units: 0,
                    ..dense.clone()
                }
                .into(),
                "Dense): units must be at least 1, got 0",
            ),
            (
                Dense { l2: -1.0, ..dense }.into(),
                "Dense): l2 factor -1 must be finite and >= 0",
            ),
            (
                Conv2d {
                    stride: 0,
                    ..Conv2d::new(2, [3, 3]).unwrap()
                }
                .into(),
                "Conv2D): stride must be at least 1, got 0",
            ),
            (
                MaxPool2d {
                    window: [2, 2],
                    stride: [0, 1],
                }
                .into(),
                "MaxPooling2D): strides must be at least 1, got [0, 1]",
            ),
            (
                BatchNorm {
                    momentum: 2.0,
                    ..BatchNorm::new()
                }
                .into(),
                "BatchNormalization): momentum 2 is outside [0, 1]",
            ),
            (
                BatchNorm {
                    epsilon: 0.0,
                    ..BatchNorm::new()
                }
                .into(),
                "BatchNormalization): epsilon 0 must be finite and > 0",
            ),
        ];
        for (layer, want) in cases {
            let got = layer.check("compile", 3).unwrap_err().to_string();
            assert_eq!(got, format!("compile: layer 3 ({want}"));
        }
    }
}
