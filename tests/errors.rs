//! Every user mistake of the layer API is an `Err` whose whole message names the layer (index
//! and type) or the argument and its value: one table, each row's message asserted in full.

mod common;

use wgnn::data::Dataset;
use wgnn::nn::{
    Activation, BatchNorm, Conv2d, Dense, Dropout, Fit, Layer, MaxPool2d, Optimizer, Sequential,
};

/// A data set of `count` grey `side` x `side` images, label `i % classes`, `classes` classes.
fn images(count: usize, side: usize, classes: usize) -> Dataset {
    Dataset {
        images: (0..count * side * side).map(|i| (i % 251) as u8).collect(),
        labels: (0..count).map(|i| (i % classes) as u8).collect(),
        count,
        height: side,
        width: side,
        channels: 1,
        classes,
    }
}

fn mlp() -> Sequential {
    Sequential::new(&[784])
        .with(Dense::new(16).unwrap().activation(Activation::Relu))
        .with(Dense::new(10).unwrap())
}

/// Dense, a frozen BatchNorm, Dense: compiles, but training cannot plan its backward.
fn frozen_bn() -> Sequential {
    compiled(
        Sequential::new(&[784])
            .with(Dense::new(16).unwrap().activation(Activation::Relu))
            .with(BatchNorm::new().trainable(false))
            .with(Dense::new(10).unwrap()),
    )
}

fn compiled(model: Sequential) -> Sequential {
    let mut model = model;
    model
        .compile(common::gpu(), Optimizer::sgd(0.1, 0.0), 1)
        .unwrap();
    model
}

fn quiet(epochs: usize, batch_size: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size,
        verbose: false,
        ..Fit::default()
    }
}

type Case = (&'static str, Box<dyn Fn() -> wgnn::Result<()>>, String);

#[test]
fn errors_every_layer_api_mistake_has_a_message_naming_layer_or_argument() {
    let tmp = common::TempDir::new("errors");
    let dir = tmp.path();
    let other = dir.join("other.safetensors");
    let wide = compiled(
        Sequential::new(&[784])
            .with(Dense::new(32).unwrap())
            .with(Dense::new(10).unwrap()),
    );
    wide.save_weights(&other).unwrap();
    let deeper = dir.join("deeper.safetensors");
    compiled(
        Sequential::new(&[784])
            .with(Dense::new(16).unwrap())
            .with(Dense::new(10).unwrap())
            .with(Dense::new(10).unwrap()),
    )
    .save_weights(&deeper)
    .unwrap();

    let train = images(64, 28, 10);
    let cases: Vec<Case> =
        vec![
        (
            "Dense::new(0)",
            Box::new(|| Dense::new(0).map(drop)),
            "Dense: units must be at least 1, got 0".into(),
        ),
        (
            "Conv2d::new(0, ..)",
            Box::new(|| Conv2d::new(0, [3, 3]).map(drop)),
            "Conv2d: filters and kernel sides must be at least 1, got filters 0, kernel [3, 3]"
                .into(),
        ),
        (
            "conv kernel larger than its input, valid padding",
            Box::new(|| {
                let mut m = Sequential::new(&[4, 4, 1])
                    .with(Conv2d::new(2, [5, 5]).unwrap())
                    .with(Layer::Flatten)
                    .with(Dense::new(3).unwrap());
                m.compile(common::gpu(), Optimizer::sgd(0.1, 0.0), 1)
            }),
            "compile: layer 0 (Conv2D): kernel 5x5 is larger than its input [4, 4, 1] with \
             valid padding"
                .into(),
        ),
        (
            "pool window larger than its input",
            Box::new(|| {
                let mut m = Sequential::new(&[6, 6, 1])
                    .with(Conv2d::new(2, [3, 3]).unwrap())
                    .with(MaxPool2d::new([5, 5]).unwrap())
                    .with(Layer::Flatten)
                    .with(Dense::new(3).unwrap());
                m.compile(common::gpu(), Optimizer::sgd(0.1, 0.0), 1)
            }),
            "compile: layer 1 (MaxPooling2D): window [5, 5] is larger than its input [4, 4, 2]"
                .into(),
        ),
        (
            "Dense on an image without Flatten",
            Box::new(|| {
                let mut m = Sequential::new(&[28, 28, 1]).with(Dense::new(10).unwrap());
                m.compile(common::gpu(), Optimizer::sgd(0.1, 0.0), 1)
            }),
            "compile: layer 0 (Dense): expects a flat input, got [28, 28, 1]; add Flatten \
             before it"
                .into(),
        ),
        (
            "Dropout::new(1.5)",
            Box::new(|| Dropout::new(1.5).map(drop)),
            "Dropout: rate 1.5 is outside [0, 1]".into(),
        ),
        (
            "Dropout::new(-0.1)",
            Box::new(|| Dropout::new(-0.1).map(drop)),
            "Dropout: rate -0.1 is outside [0, 1]".into(),
        ),
        (
            "Dropout::new(NaN)",
            Box::new(|| Dropout::new(f32::NAN).map(drop)),
            "Dropout: rate NaN is outside [0, 1]".into(),
        ),
        (
            "negative learning rate",
            Box::new(|| mlp().compile(common::gpu(), Optimizer::sgd(-0.1, 0.0), 1)),
            "compile: lr -0.1 is not a finite number >= 0".into(),
        ),
        (
            "fit before compile",
            Box::new(|| mlp().fit(&images(4, 28, 10), &quiet(1, 4)).map(drop)),
            "fit: the model is not compiled; call compile first".into(),
        ),
        (
            "batch size 0",
            Box::new(|| compiled(mlp()).fit(&images(4, 28, 10), &quiet(1, 0)).map(drop)),
            "fit: batch_size must be at least 1, got 0".into(),
        ),
        (
            "evaluate with batch size 0",
            Box::new(|| compiled(mlp()).evaluate(&images(4, 28, 10), 0).map(drop)),
            "evaluate: batch_size must be at least 1, got 0".into(),
        ),
        (
            "zero epochs",
            Box::new(|| compiled(mlp()).fit(&images(4, 28, 10), &quiet(0, 4)).map(drop)),
            "fit: epochs must be at least 1, got 0".into(),
        ),
        (
            "an empty data set",
            Box::new(|| compiled(mlp()).fit(&images(0, 28, 10), &quiet(1, 4)).map(drop)),
            "fit: the training set is empty".into(),
        ),
        (
            "a label at the number of classes of the model",
            Box::new(|| {
                let mut m = compiled(
                    Sequential::new(&[784])
                        .with(Dense::new(8).unwrap())
                        .with(Dense::new(5).unwrap()),
                );
                m.fit(&images(8, 28, 10), &quiet(1, 4)).map(drop)
            }),
            "fit: training label 5 at sample 5 is out of range for the model's 5 classes".into(),
        ),
        (
            "a label at the number of classes of the data set",
            Box::new(|| {
                let mut bad = images(8, 28, 10);
                bad.labels[6] = 10;
                compiled(mlp()).fit(&bad, &quiet(1, 4)).map(drop)
            }),
            "fit: the training set is inconsistent: label 10 of image 6 is not below classes 10"
                .into(),
        ),
        (
            "a validation label above the classes",
            Box::new(|| {
                let mut m = compiled(
                    Sequential::new(&[784])
                        .with(Dense::new(8).unwrap())
                        .with(Dense::new(3).unwrap()),
                );
                let v = images(8, 28, 10);
                let t = images(8, 28, 3);
                m.fit(
                    &t,
                    &Fit {
                        validation: Some(&v),
                        ..quiet(1, 4)
                    },
                )
                .map(drop)
            }),
            "fit: validation label 3 at sample 3 is out of range for the model's 3 classes"
                .into(),
        ),
        (
            "a validation set whose images differ in size",
            Box::new(|| {
                let v = images(8, 14, 10);
                compiled(mlp())
                    .fit(
                        &images(8, 28, 10),
                        &Fit {
                            validation: Some(&v),
                            ..quiet(1, 4)
                        },
                    )
                    .map(drop)
            }),
            "fit: validation images are 14x14x1 (196 values), the model's input [784] takes 784"
                .into(),
        ),
        (
            "training images of the wrong size",
            Box::new(|| compiled(mlp()).fit(&images(8, 27, 10), &quiet(1, 4)).map(drop)),
            "fit: training images are 27x27x1 (729 values), the model's input [784] takes 784"
                .into(),
        ),
        (
            "predict with a partial sample",
            Box::new(|| compiled(mlp()).predict(&[0.0; 785]).map(drop)),
            "predict: 785 values are not a whole number of samples of [784] (784 values)"
                .into(),
        ),
        (
            "weights of another architecture (wider layer)",
            Box::new({
                let other = other.clone();
                move || compiled(mlp()).load_weights(&other)
            }),
            format!(
                "{}: tensor \"dense/kernel\" has shape [784, 32], but layer 0 (Dense) expects \
                 [784, 16]",
                other.display()
            ),
        ),
        (
            "weights of another architecture (one more layer)",
            Box::new({
                let deeper = deeper.clone();
                move || compiled(mlp()).load_weights(&deeper)
            }),
            format!(
                "{}: tensor \"dense_2/bias\" is not a weight of this model (it has \
                 dense/kernel, dense/bias, dense_1/kernel, dense_1/bias)",
                deeper.display()
            ),
        ),
        (
            "a frozen BatchNorm after a trainable layer, through fit",
            Box::new(|| frozen_bn().fit(&images(8, 28, 10), &quiet(1, 4)).map(drop)),
            "fit: layer 1 (BatchNormalization): a frozen BatchNormalization after a trainable \
             layer is not supported yet"
                .into(),
        ),
        (
            "a frozen BatchNorm after a trainable layer, through trainer",
            Box::new(|| frozen_bn().trainer(&images(8, 28, 10), 4).map(drop)),
            "trainer: layer 1 (BatchNormalization): a frozen BatchNormalization after a \
             trainable layer is not supported yet"
                .into(),
        ),
        (
            "set_trainable on a missing layer",
            Box::new(|| mlp().set_trainable(2, false)),
            "set_trainable: layer index 2 is out of range for 2 layers".into(),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, case, want) in &cases {
        match case() {
            Ok(()) => wrong.push(format!("{what}: Ok, want Err({want:?})")),
            Err(e) if e.to_string() != *want => wrong.push(format!(
                "{what}:\n   got {:?}\n  want {want:?}",
                e.to_string()
            )),
            Err(_) => {}
        }
    }
    drop(train);
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Every bad value of every layer, by every route a user has (constructor, builder): an
/// `Err` naming the layer and the value. (Struct literals do not compile: the fields are
/// private; `compile` checks the values again, see `nn::layers` unit tests.)
#[test]
fn errors_every_bad_layer_value_is_refused_by_constructor_and_builder() {
    type Made = Box<dyn Fn() -> wgnn::Result<Layer>>;
    fn ok<T: Into<Layer>>(r: wgnn::Result<T>) -> wgnn::Result<Layer> {
        r.map(Into::into)
    }
    let conv = || Conv2d::new(2, [3, 3]).unwrap();
    let pool = || MaxPool2d::new([2, 2]).unwrap();
    let dense = || Dense::new(4).unwrap();
    let mut cases: Vec<(String, Made, String)> = vec![
        (
            "Dense::new(0)".into(),
            Box::new(|| ok(Dense::new(0))),
            "Dense: units must be at least 1, got 0".into(),
        ),
        (
            "Conv2d::new(0, [3, 3])".into(),
            Box::new(|| ok(Conv2d::new(0, [3, 3]))),
            "Conv2d: filters and kernel sides must be at least 1, got filters 0, kernel [3, 3]"
                .into(),
        ),
        (
            "Conv2d::new(2, [0, 3])".into(),
            Box::new(|| ok(Conv2d::new(2, [0, 3]))),
            "Conv2d: filters and kernel sides must be at least 1, got filters 2, kernel [0, 3]"
                .into(),
        ),
        (
            "Conv2d::new(2, [3, 0])".into(),
            Box::new(|| ok(Conv2d::new(2, [3, 0]))),
            "Conv2d: filters and kernel sides must be at least 1, got filters 2, kernel [3, 0]"
                .into(),
        ),
        (
            "Conv2d.stride(0)".into(),
            Box::new(move || ok(conv().stride(0))),
            "Conv2d: stride must be at least 1, got 0".into(),
        ),
        (
            "MaxPool2d::new([0, 2])".into(),
            Box::new(|| ok(MaxPool2d::new([0, 2]))),
            "MaxPool2d: window sides must be at least 1, got [0, 2]".into(),
        ),
        (
            "MaxPool2d::new([2, 0])".into(),
            Box::new(|| ok(MaxPool2d::new([2, 0]))),
            "MaxPool2d: window sides must be at least 1, got [2, 0]".into(),
        ),
        (
            "MaxPool2d.stride([0, 1])".into(),
            Box::new(move || ok(pool().stride([0, 1]))),
            "MaxPool2d: strides must be at least 1, got [0, 1]".into(),
        ),
        (
            "MaxPool2d.stride([1, 0])".into(),
            Box::new(move || ok(pool().stride([1, 0]))),
            "MaxPool2d: strides must be at least 1, got [1, 0]".into(),
        ),
    ];
    for bad in [-0.5f32, 1.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        cases.push((
            format!("Dropout::new({bad})"),
            Box::new(move || ok(Dropout::new(bad))),
            format!("Dropout: rate {bad} is outside [0, 1]"),
        ));
        cases.push((
            format!("BatchNorm.momentum({bad})"),
            Box::new(move || ok(BatchNorm::new().momentum(bad))),
            format!("BatchNorm: momentum {bad} is outside [0, 1]"),
        ));
    }
    for bad in [-1.0f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        cases.push((
            format!("Dense.l2({bad})"),
            Box::new(move || ok(dense().l2(bad))),
            format!("Dense: l2 factor {bad} must be finite and >= 0"),
        ));
        cases.push((
            format!("Conv2d.l2({bad})"),
            Box::new(move || ok(conv().l2(bad))),
            format!("Conv2d: l2 factor {bad} must be finite and >= 0"),
        ));
    }
    for bad in [0.0f32, -1e-3, f32::NAN, f32::INFINITY] {
        cases.push((
            format!("BatchNorm.epsilon({bad})"),
            Box::new(move || ok(BatchNorm::new().epsilon(bad))),
            format!("BatchNorm: epsilon {bad} must be finite and > 0"),
        ));
    }
    let mut wrong = Vec::new();
    for (what, make, want) in &cases {
        match make() {
            Ok(layer) => wrong.push(format!("{what}: Ok({layer:?}), want Err({want:?})")),
            Err(e) if e.to_string() != *want => wrong.push(format!(
                "{what}:\n   got {:?}\n  want {want:?}",
                e.to_string()
            )),
            Err(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // The good values at the edges pass, and the getters return them.
    assert_eq!(Dropout::new(0.0).unwrap().rate(), 0.0);
    assert_eq!(Dropout::new(1.0).unwrap().rate(), 1.0);
    assert_eq!(Dense::new(7).unwrap().units(), 7);
    assert_eq!(Conv2d::new(5, [1, 2]).unwrap().filters(), 5);
    assert_eq!(BatchNorm::new().momentum(0.0).unwrap().get_momentum(), 0.0);
}
