//! wgnn in a browser tab: the JS bindings behind `web/index.html` (`window.wgnn`).
//!
//! Every call that reads the GPU back returns a `Promise` and never blocks: the readbacks are
//! wgnn's async forms (`Tensor::to_vec_async`, `ops::softmax_cross_entropy_async`,
//! `Sequential::evaluate_async` / `predict_async` / `weights_async`, `Trainer::request_metrics`),
//! driven by the page's event loop. Training runs one step per turn of the event loop and polls
//! its metrics with `PendingMetrics::try_get`, so the page keeps drawing while it trains. The
//! trainer comes from `Sequential::trainer_async`, whose autotuner times the matmul variants
//! from GPU timestamps (where the adapter offers `timestamp-query`) without blocking.
//!
//! The host reference of the dropout mask (`hostDropout`, `hostKeep`) is `wgnn::philox`, the
//! same function the native tests compare against, compiled to wasm and run on the CPU.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wgnn::data::{Dataset, LoadLimits, read_idx_pair};
use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential, weights};
use wgnn::ops::{self, Padding};
use wgnn::{Gpu, Tensor, philox};

/// The demo's batch size: 32 steps per epoch on the 2,000 shipped training images.
pub const DEMO_BATCH: usize = 64;

/// What the page opened and loaded.
struct State {
    gpu: Gpu,
    train: Option<Dataset>,
    test: Option<Dataset>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    static TRAINING: Cell<bool> = const { Cell::new(false) };
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

/// A Rust panic shows in the console instead of a bare "unreachable".
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("wgnn-web: {info}"))));
}

/// A JS `Error` carrying wgnn's message (which names the call and the values).
fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn gpu() -> Result<Gpu, JsValue> {
    STATE
        .with(|s| s.borrow().as_ref().map(|s| s.gpu.clone()))
        .ok_or_else(|| js_err("wgnn: the device is not open (await wgnnReady)"))
}

fn set(o: &Object, key: &str, v: impl Into<JsValue>) -> Result<(), JsValue> {
    Reflect::set(o, &JsValue::from_str(key), &v.into()).map(|_| ())
}

/// Opens the browser's WebGPU adapter (`Gpu::new_async`); resolves to [`adapter_info`].
#[wasm_bindgen]
pub async fn open() -> Result<JsValue, JsValue> {
    let gpu = Gpu::new_async().await.map_err(js_err)?;
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            gpu,
            train: None,
            test: None,
        })
    });
    adapter_info()
}

/// wgnn's work counters on the page's device (`Gpu::counters`): `{submissions,
/// buffersCreated, bindGroupsCreated, bytesUploaded, bytesReadBack, deviceBytes,
/// blockingWaits, tunedByClock, tunedByTimestamps}`.
#[wasm_bindgen]
pub fn stats() -> Result<JsValue, JsValue> {
    let c = gpu()?.counters();
    let o = Object::new();
    for (k, v) in [
        ("submissions", c.submissions),
        ("buffersCreated", c.buffers_created),
        ("bindGroupsCreated", c.bind_groups_created),
        ("bytesUploaded", c.bytes_uploaded),
        ("bytesReadBack", c.bytes_read_back),
        ("deviceBytes", c.device_bytes),
        ("blockingWaits", c.blocking_waits),
        ("tunedByClock", c.tuned_by_clock),
        ("tunedByTimestamps", c.tuned_by_timestamps),
    ] {
        set(&o, k, v as f64)?;
    }
    Ok(o.into())
}

/// What wgnn runs on: `{name, backend, deviceType, driver, features, maxStorageBufferBindingSize}`.
#[wasm_bindgen(js_name = adapterInfo)]
pub fn adapter_info() -> Result<JsValue, JsValue> {
    let g = gpu()?;
    let i = g.info();
    let o = Object::new();
    set(&o, "name", i.name.as_str())?;
    set(&o, "backend", format!("{:?}", i.backend))?;
    set(&o, "deviceType", format!("{:?}", i.device_type))?;
    set(&o, "driver", i.driver.as_str())?;
    set(
        &o,
        "maxStorageBufferBindingSize",
        i.limits.max_storage_buffer_binding_size as f64,
    )?;
    let features = Array::new();
    for (name, _) in g.device().features().iter_names() {
        features.push(&JsValue::from_str(name));
    }
    set(&o, "features", features)?;
    Ok(o.into())
}

/// Dropout on the GPU (`ops::dropout`): element `i` is kept iff
/// `philox::keep(seed, offset, i, p)`, and kept values are scaled by `1 / (1 - p)`.
#[wasm_bindgen]
pub async fn dropout(x: Vec<f32>, p: f32, seed: u64, offset: u64) -> Result<Vec<f32>, JsValue> {
    let t = Tensor::from_slice(&gpu()?, &x, &[x.len()]).map_err(js_err)?;
    let y = ops::dropout(&t, p, seed, offset).map_err(js_err)?;
    y.to_vec_async().await.map_err(js_err)
}

/// The gradient of [`dropout`] (`ops::dropout_backward`): `dy` through the same mask.
#[wasm_bindgen(js_name = dropoutBackward)]
pub async fn dropout_backward(
    dy: Vec<f32>,
    p: f32,
    seed: u64,
    offset: u64,
) -> Result<Vec<f32>, JsValue> {
    let t = Tensor::from_slice(&gpu()?, &dy, &[dy.len()]).map_err(js_err)?;
    let dx = ops::dropout_backward(&t, p, seed, offset).map_err(js_err)?;
    dx.to_vec_async().await.map_err(js_err)
}

/// The host's mask, on the CPU: byte `i` is 1 iff `philox::keep(seed, offset, i, p)`.
#[wasm_bindgen(js_name = hostKeep)]
pub fn host_keep(n: u32, p: f32, seed: u64, offset: u64) -> Vec<u8> {
    (0..u64::from(n))
        .map(|i| u8::from(philox::keep(seed, offset, i, p)))
        .collect()
}

/// The host's dropout, on the CPU: `x[i] * philox::scale(p)` (f32) where kept, else 0, the
/// value the GPU must give bit for bit.
#[wasm_bindgen(js_name = hostDropout)]
pub fn host_dropout(x: Vec<f32>, p: f32, seed: u64, offset: u64) -> Vec<f32> {
    let s = philox::scale(p);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if philox::keep(seed, offset, i as u64, p) {
                v * s
            } else {
                0.0
            }
        })
        .collect()
}

/// `a [m, k] x b [k, n]`, row-major (`ops::matmul`).
#[wasm_bindgen]
pub async fn matmul(
    a: Vec<f32>,
    b: Vec<f32>,
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<f32>, JsValue> {
    let g = gpu()?;
    let ga = Tensor::from_slice(&g, &a, &[m, k]).map_err(js_err)?;
    let gb = Tensor::from_slice(&g, &b, &[k, n]).map_err(js_err)?;
    let c = ops::matmul(&ga, &gb, false, false).map_err(js_err)?;
    c.to_vec_async().await.map_err(js_err)
}

/// `conv2d` of `x` (NHWC, `x_shape`) with `w` (HWIO, `w_shape`), `padding` `"same"` or
/// `"valid"` (`ops::conv2d`); resolves to `{data, shape}`.
#[wasm_bindgen]
pub async fn conv2d(
    x: Vec<f32>,
    x_shape: Vec<u32>,
    w: Vec<f32>,
    w_shape: Vec<u32>,
    stride: usize,
    padding: String,
) -> Result<JsValue, JsValue> {
    let padding = match padding.as_str() {
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        other => {
            return Err(js_err(format!(
                "conv2d: padding must be \"same\" or \"valid\", got {other:?}"
            )));
        }
    };
    let g = gpu()?;
    let dims = |s: &[u32]| s.iter().map(|&d| d as usize).collect::<Vec<_>>();
    let gx = Tensor::from_slice(&g, &x, &dims(&x_shape)).map_err(js_err)?;
    let gw = Tensor::from_slice(&g, &w, &dims(&w_shape)).map_err(js_err)?;
    let y = ops::conv2d(&gx, &gw, stride, padding).map_err(js_err)?;
    let shape: Array = y.shape().iter().map(|&d| JsValue::from(d as u32)).collect();
    let data = y.to_vec_async().await.map_err(js_err)?;
    let o = Object::new();
    set(&o, "data", js_sys::Float32Array::from(&data[..]))?;
    set(&o, "shape", shape)?;
    Ok(o.into())
}

/// Softmax cross-entropy of `logits` `[rows, classes]` against `labels` `[rows]`
/// (`ops::softmax_cross_entropy_async`); resolves to `{loss, dlogits}`.
#[wasm_bindgen(js_name = softmaxXent)]
pub async fn softmax_xent(
    logits: Vec<f32>,
    labels: Vec<u32>,
    rows: usize,
    classes: usize,
) -> Result<JsValue, JsValue> {
    let g = gpu()?;
    let gl = Tensor::from_slice(&g, &logits, &[rows, classes]).map_err(js_err)?;
    let gy = Tensor::from_u32(&g, &labels, &[rows]).map_err(js_err)?;
    let (loss, dlogits) = ops::softmax_cross_entropy_async(&gl, &gy)
        .await
        .map_err(js_err)?;
    let (loss, dlogits) = (loss.to_vec_async(), dlogits.to_vec_async());
    let loss = loss.await.map_err(js_err)?;
    let dlogits = dlogits.await.map_err(js_err)?;
    let o = Object::new();
    set(&o, "loss", f64::from(loss[0]))?;
    set(&o, "dlogits", js_sys::Float32Array::from(&dlogits[..]))?;
    Ok(o.into())
}

/// Parses the Fashion-MNIST IDX files (gzipped or plain, as fetched) with `read_idx_pair`
/// and keeps them for [`train`]; returns `{train, test}`, the image counts.
#[wasm_bindgen(js_name = loadData)]
pub fn load_data(
    train_images: &[u8],
    train_labels: &[u8],
    test_images: &[u8],
    test_labels: &[u8],
) -> Result<JsValue, JsValue> {
    let limits = LoadLimits::default();
    let train = read_idx_pair(
        train_images,
        "train-images-idx3-ubyte.gz",
        train_labels,
        "train-labels-idx1-ubyte.gz",
        &limits,
    )
    .map_err(js_err)?;
    let test = read_idx_pair(
        test_images,
        "t10k-images-idx3-ubyte.gz",
        test_labels,
        "t10k-labels-idx1-ubyte.gz",
        &limits,
    )
    .map_err(js_err)?;
    let o = Object::new();
    set(&o, "train", train.count as u32)?;
    set(&o, "test", test.count as u32)?;
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(st) => {
            st.train = Some(train);
            st.test = Some(test);
            Ok(())
        }
        None => Err(js_err("loadData: the device is not open (await wgnnReady)")),
    })?;
    Ok(o.into())
}

/// The pixels (`count * 784` bytes) and labels of test images `start .. start + count`.
#[wasm_bindgen(js_name = testImages)]
pub fn test_images(start: usize, count: usize) -> Result<JsValue, JsValue> {
    let test = data_sets()?.1;
    let part = test.subset(start..start + count).map_err(js_err)?;
    let o = Object::new();
    set(&o, "pixels", Uint8Array::from(&part.images[..]))?;
    set(&o, "labels", Uint8Array::from(&part.labels[..]))?;
    Ok(o.into())
}

fn data_sets() -> Result<(Dataset, Dataset), JsValue> {
    STATE
        .with(|s| {
            let s = s.borrow();
            let s = s.as_ref()?;
            Some((s.train.clone()?, s.test.clone()?))
        })
        .ok_or_else(|| js_err("wgnn: no data loaded (loadData)"))
}

/// The demo model: `examples/fashion_mlp.rs`'s MLP, 784-256-256-10 with ReLU, dropout 0.2
/// and 0.5.
fn demo_model() -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[784])
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.2)?)
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.5)?)
        .with(Dense::new(10)?))
}

/// A promise resolved on the next turn of the event loop (`setTimeout(0)`): the page draws
/// and the GPU's callbacks run meanwhile.
async fn next_turn() -> Result<(), JsValue> {
    let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())?.into();
    let p = Promise::new(&mut |resolve, _| {
        let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(0));
    });
    wasm_bindgen_futures::JsFuture::from(p).await.map(|_| ())
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Clears the training flag however `train` ends.
struct Busy;

impl Drop for Busy {
    fn drop(&mut self) {
        TRAINING.with(|t| t.set(false));
    }
}

/// Trains the demo MLP (Adam 1e-3, seed 42, batch [`DEMO_BATCH`]) on the loaded training set
/// for `epochs` epochs, one step per turn of the event loop; the epoch's loss and accuracy
/// come from `Trainer::request_metrics`, polled with `try_get` once a turn. After each epoch
/// `on_epoch({epoch, loss, accuracy, testLoss, testAccuracy, seconds})` is called (`seconds`:
/// the epoch's training, from its first step to its metrics). Resolves to
/// `{testAccuracy, testLoss, epochs, predictions, weights}`: the last epoch's test results,
/// every epoch's record, the predicted class of the first `grid` test images, and the trained
/// weights as safetensors bytes (`Sequential::weights_async`, `weights::to_safetensors`).
#[wasm_bindgen]
pub async fn train(
    epochs: u32,
    on_epoch: Option<Function>,
    grid: usize,
) -> Result<JsValue, JsValue> {
    if epochs == 0 {
        return Err(js_err("train: epochs must be at least 1, got 0"));
    }
    if TRAINING.with(|t| t.replace(true)) {
        return Err(js_err("train: a training run is already going on"));
    }
    let _busy = Busy;
    let g = gpu()?;
    let (train, test) = data_sets()?;
    let mut model = demo_model().map_err(js_err)?;
    model
        .compile(&g, Optimizer::adam(1e-3), 42)
        .map_err(js_err)?;
    // The async form: the autotuner times the plan's matmul variants from GPU timestamps
    // (where the adapter has them) without blocking the page.
    let mut t = model
        .trainer_async(&train, DEMO_BATCH)
        .await
        .map_err(js_err)?;
    let logs = Array::new();
    let mut last = (0.0, 0.0);
    for epoch in 1..=epochs {
        let started = now_ms();
        t.begin_epoch();
        while t.steps_done() < t.steps_per_epoch() {
            t.step().map_err(js_err)?;
            next_turn().await?;
        }
        let pending = t.request_metrics().map_err(js_err)?;
        let (loss, accuracy) = loop {
            if let Some(r) = pending.try_get() {
                break r.map_err(js_err)?;
            }
            next_turn().await?;
        };
        let seconds = (now_ms() - started) / 1000.0;
        if !loss.is_finite() {
            return Err(js_err(format!("train: epoch {epoch}: the loss is {loss}")));
        }
        let e = t.model().evaluate_async(&test, 250).await.map_err(js_err)?;
        last = (e.loss, e.accuracy);
        let log = Object::new();
        set(&log, "epoch", epoch)?;
        set(&log, "loss", loss)?;
        set(&log, "accuracy", accuracy)?;
        set(&log, "testLoss", e.loss)?;
        set(&log, "testAccuracy", e.accuracy)?;
        set(&log, "seconds", seconds)?;
        logs.push(&log);
        if let Some(f) = &on_epoch {
            f.call1(&JsValue::NULL, &log)?;
        }
    }
    let model = t.model();
    let grid = grid.min(test.count);
    let predictions = if grid > 0 {
        let x: Vec<f32> = test.images[..grid * 784]
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect();
        let logits = model.predict_async(&x).await.map_err(js_err)?;
        logits
            .chunks(10)
            .map(|row| {
                let mut best = 0;
                for (c, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = c;
                    }
                }
                best as u8
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut meta = HashMap::new();
    meta.insert(
        "model".to_string(),
        "fashion_mlp 784-256-256-10".to_string(),
    );
    meta.insert("trained_in".to_string(), "wgnn-web".to_string());
    meta.insert("epochs".to_string(), epochs.to_string());
    meta.insert("test_accuracy".to_string(), last.1.to_string());
    let bytes = weights::to_safetensors(&model.weights_async().await.map_err(js_err)?, Some(meta))
        .map_err(js_err)?;
    let o = Object::new();
    set(&o, "testLoss", last.0)?;
    set(&o, "testAccuracy", last.1)?;
    set(&o, "epochs", logs)?;
    set(&o, "predictions", Uint8Array::from(&predictions[..]))?;
    set(&o, "weights", Uint8Array::from(&bytes[..]))?;
    Ok(o.into())
}
