//! SpatialDropout2D: the eager ops against the host Philox mask bit for bit, the layer fused
//! into the convolution's epilogue against the separate ops bit for bit, gradients through
//! it against finite differences of an f64 host model, and the errors.
#![allow(
    clippy::needless_range_loop,
    reason = "the host model indexes tensors as the formulas do"
)]

mod common;

use wgnn::data::Dataset;
use wgnn::nn::{
    Activation, Conv2d, Dense, Layer, MaxPool2d, Optimizer, Sequential, SpatialDropout2d,
};
use wgnn::{Tensor, ops, philox};

const SEED: u64 = 11;

/// Panics naming the first element where `got` and `want` (f32 bits) differ.
fn assert_bits(what: &str, got: &[f32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i]) {
        panic!(
            "{what}: element {i} of {} is {} ({:#010x}), want {} ({:#010x})",
            got.len(),
            got[i],
            got[i].to_bits(),
            f32::from_bits(want[i]),
            want[i]
        );
    }
}

/// What `spatial_dropout` must give for `x` `[n, h, w, c]`: `x * scale` where the host keeps
/// mask element `img * c + ch`, else 0, as f32 bits.
fn host_spatial(x: &[f32], shape: [usize; 4], p: f32, seed: u64, offset: u64) -> Vec<u32> {
    let [_, h, w, c] = shape;
    let s = philox::scale(p);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (img, ch) = (i / (h * w * c), i % c);
            let keep = philox::keep(seed, offset, (img * c + ch) as u64, p);
            (if keep { v * s } else { 0.0 }).to_bits()
        })
        .collect()
}

#[test]
fn spatial_dropout_matches_host_mask_bit_for_bit_forward_and_backward() {
    let shapes = [[1, 1, 1, 1], [3, 5, 7, 3], [2, 3, 3, 33], [5, 2, 1, 4]];
    // Offsets past 2^32 exercise the stream's high word.
    let streams = [(42u64, 0u64), (0xFFFF_FFFF_0000_0001, (1 << 33) | 7)];
    let (mut kept, mut dropped) = (0usize, 0usize);
    for gpu in common::gpus_and_portable() {
        for (si, shape) in shapes.iter().enumerate() {
            let len: usize = shape.iter().product();
            let x = common::rand_vec(len, 10 + si as u64);
            let dy = common::rand_vec(len, 20 + si as u64);
            let gx = Tensor::from_slice(gpu, &x, shape).unwrap();
            let gdy = Tensor::from_slice(gpu, &dy, shape).unwrap();
            for &(seed, offset) in &streams {
                for p in [0.0f32, 0.37, 0.5, 1.0] {
                    let what = |dir: &str| {
                        format!(
                            "{}: {dir} {shape:?} p {p} seed {seed:#x} offset {offset:#x}",
                            gpu.info().name
                        )
                    };
                    let y = ops::spatial_dropout(&gx, p, seed, offset)
                        .unwrap()
                        .to_vec()
                        .unwrap();
                    let want = host_spatial(&x, *shape, p, seed, offset);
                    assert_bits(&what("forward"), &y, &want);
                    let dx = ops::spatial_dropout_backward(&gdy, p, seed, offset)
                        .unwrap()
                        .to_vec()
                        .unwrap();
                    let want = host_spatial(&dy, *shape, p, seed, offset);
                    assert_bits(&what("backward"), &dx, &want);
                    for (i, v) in y.iter().enumerate() {
                        if p > 0.0 && p < 1.0 && x[i] != 0.0 {
                            if *v == 0.0 {
                                dropped += 1;
                            } else {
                                kept += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    // The masks above are not all one way (the comparison would be weak if they were).
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
}

#[test]
fn spatial_dropout_errors_name_the_call_and_the_values() {
    let gpu = common::gpu();
    let x3 = Tensor::from_slice(gpu, &[1.0; 24], &[2, 3, 4]).unwrap();
    let x5 = Tensor::from_slice(gpu, &[1.0; 24], &[1, 2, 3, 4, 1]).unwrap();
    let x4 = Tensor::from_slice(gpu, &[1.0; 24], &[1, 2, 3, 4]).unwrap();
    for (op, f) in [
        (
            "spatial_dropout",
            ops::spatial_dropout as fn(&Tensor, f32, u64, u64) -> wgnn::Result<Tensor>,
        ),
        ("spatial_dropout_backward", ops::spatial_dropout_backward),
    ] {
        let e = f(&x3, 0.5, 1, 0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{op}: expects a 4-D [N, H, W, C] tensor, got shape [2, 3, 4]")
        );
        let e = f(&x5, 0.5, 1, 0).unwrap_err().to_string();
        assert!(e.contains("got shape [1, 2, 3, 4, 1]"), "{e}");
        for p in [-0.1f32, 1.5, f32::NAN] {
            let e = f(&x4, p, 1, 0).unwrap_err().to_string();
            assert_eq!(e, format!("{op}: rate {p} is outside [0, 1]"));
        }
    }
    for p in [-0.1f32, 1.5, f32::NAN] {
        let e = SpatialDropout2d::new(p).unwrap_err().to_string();
        assert_eq!(e, format!("SpatialDropout2d: rate {p} is outside [0, 1]"));
    }
    // Not after an image: the layer needs [height, width, channels].
    let mut m = Sequential::new(&[4, 4, 2])
        .with(Layer::Flatten)
        .with(SpatialDropout2d::new(0.5).unwrap())
        .with(Dense::new(3).unwrap());
    let e = m
        .compile(gpu, Optimizer::sgd(0.1, 0.0), 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "compile: layer 1 (SpatialDropout2D): expects an [height, width, channels] input, got [32]"
    );
}

#[test]
fn spatial_dropout_layer_in_summary_has_no_weights() {
    let m = Sequential::new(&[6, 6, 2])
        .with(Conv2d::new(3, [3, 3]).unwrap())
        .with(SpatialDropout2d::new(0.2).unwrap())
        .with(SpatialDropout2d::new(0.1).unwrap())
        .with(Layer::Flatten)
        .with(Dense::new(2).unwrap());
    let s = m.summary().unwrap();
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| l.contains("spatial_dropout2d"))
        .collect();
    assert_eq!(rows.len(), 2, "{s}");
    assert!(
        rows[0].starts_with("spatial_dropout2d (SpatialDropout2D)")
            && rows[0].contains("(None, 4, 4, 3)")
            && rows[0].trim_end().ends_with(" 0"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("spatial_dropout2d_1 (SpatialDropout2D)"),
        "{}",
        rows[1]
    );
    // Parameters: conv 3*3*2*3 + 3, dense 48*2 + 2.
    assert!(s.contains("Total params: 155"), "{s}");
}

/// Conv(f0, relu) -> SpatialDropout2D(0.4) [fused] -> Conv(f1, linear) -> SpatialDropout2D(0.5)
/// [fused] -> MaxPool -> SpatialDropout2D(0.3) [standalone] -> Flatten -> Dense(3), with
/// `[f0, f1]` = `filters`. With [4, 8], the second convolution takes the subgroup kernel where
/// the adapter has one.
fn spatial_cnn(filters: [usize; 2]) -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[9, 9, 3])
        .with(Conv2d::new(filters[0], [3, 3])?.activation(Activation::Relu))
        .with(SpatialDropout2d::new(0.4)?)
        .with(Conv2d::new(filters[1], [3, 3])?)
        .with(SpatialDropout2d::new(0.5)?)
        .with(MaxPool2d::new([2, 2])?)
        .with(SpatialDropout2d::new(0.3)?)
        .with(Layer::Flatten)
        .with(Dense::new(3)?))
}

#[test]
fn spatial_dropout_fused_into_conv_epilogue_equals_separate_ops_bit_for_bit() {
    // Every adapter, and the portable Philox multiply in the epilogue where there is one.
    for gpu in common::gpus_and_portable() {
        fused_equals_separate(gpu, [4, 8]);
    }
}

/// As above with the convolutions' default choice set to the workgroup-staged kernel (the
/// choice on GPU adapters), on `Gpu`s of this test's own: the fused forward then runs the
/// staged kernel's epilogue entry point, the separate ops the staged forward (16 channels:
/// the default takes the staged kernel for GEMMs of 16 columns or more). The trained weights
/// also equal, bit for bit, the same training on a `Gpu` of the adapter told to take the
/// 4x4-tile kernel always: forward and both gradients, end to end.
#[test]
fn spatial_dropout_fused_equals_separate_ops_with_staged_conv() {
    use wgnn::testing::{ConvKernel, ConvPass, conv2d_runs_staged, conv2d_set_default_kernel};
    // The 4x4-tile kernel always, to compare with.
    let tiled = wgnn::Gpu::software_all().unwrap();
    for gpu in &tiled {
        conv2d_set_default_kernel(gpu, ConvKernel::Tile).unwrap();
    }
    for (gpu, tile) in wgnn::Gpu::software_all().unwrap().iter().zip(&tiled) {
        conv2d_set_default_kernel(gpu, ConvKernel::Staged).unwrap();
        // The batches of 5 (and the last of the 20 samples) through both convolutions.
        for (x, k) in [
            ([5, 9, 9, 3], [3, 3, 3, 16]),
            ([5, 7, 7, 16], [3, 3, 16, 16]),
        ] {
            let pad = wgnn::ops::Padding::Valid;
            let staged =
                conv2d_runs_staged(gpu, ConvKernel::Auto, ConvPass::Forward, &x, &k, 1, pad);
            assert!(
                staged.unwrap(),
                "{}: {x:?} {k:?} not staged",
                gpu.info().name
            );
        }
        let staged = fused_equals_separate(gpu, [16, 16]);
        let plain = fused_equals_separate(tile, [16, 16]);
        for (a, b) in staged.iter().zip(&plain) {
            let what = format!(
                "{}: {} after 8 steps, staged vs 4x4-tile kernel",
                gpu.info().name,
                a.name
            );
            let bits: Vec<u32> = b.data.iter().map(|x| x.to_bits()).collect();
            assert_bits(&what, &a.data, &bits);
        }
    }
}

/// Trains `spatial_cnn(filters)` fused and with separate ops on `gpu`, compares the bits, and
/// returns the fused model's weights.
fn fused_equals_separate(gpu: &wgnn::Gpu, filters: [usize; 2]) -> Vec<wgnn::nn::NamedTensor> {
    let data = common::random_data(20, [9, 9, 3], 3, 5);
    let probe = common::random_data(4, [9, 9, 3], 3, 6);
    let probe_x: Vec<f32> = probe.images.iter().map(|&b| f32::from(b) / 255.0).collect();
    {
        let mut fused = spatial_cnn(filters).unwrap();
        fused.compile(gpu, Optimizer::sgd(0.05, 0.9), SEED).unwrap();
        let mut plain = spatial_cnn(filters).unwrap();
        plain.compile(gpu, Optimizer::sgd(0.05, 0.9), SEED).unwrap();
        plain.set_fusion(false).unwrap();
        // Fused, layer 0 drops its bias, ReLU and spatial dropout passes (3) and one backward
        // pass (the spatial dropout's and the ReLU's become one from y); layer 2 its bias and
        // spatial dropout passes (2). The standalone layer 5 is the same in both.
        let fused_dispatches = fused.trainer(&data, 5).unwrap().plan_dispatches();
        let plain_dispatches = plain.trainer(&data, 5).unwrap().plan_dispatches();
        assert_eq!(
            plain_dispatches,
            fused_dispatches + 6,
            "{}: dispatches per step, separate ops vs fused",
            gpu.info().name
        );
        for model in [&mut fused, &mut plain] {
            let mut t = model.trainer(&data, 5).unwrap();
            for _ in 0..2 {
                t.begin_epoch();
                for _ in 0..t.steps_per_epoch() {
                    t.step().unwrap();
                }
            }
        }
        let (a, b) = (fused.weights().unwrap(), plain.weights().unwrap());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (a, b) in a.iter().zip(&b) {
            let what = format!(
                "{}: {} after 8 steps, fused vs separate ops",
                gpu.info().name,
                a.name
            );
            assert_bits(&what, &a.data, &bits(&b.data));
        }
        assert_ne!(
            a[0].data,
            spatial_cnn_initial(gpu, filters)[0].data,
            "training did not move the first kernel"
        );
        // Inference: the epilogue with the mask off equals bias + ReLU alone.
        let (pa, pb) = (
            fused.predict(&probe_x).unwrap(),
            plain.predict(&probe_x).unwrap(),
        );
        let what = format!("{}: predict, fused vs separate ops", gpu.info().name);
        assert_bits(&what, &pa, &bits(&pb));
        a
    }
}

fn spatial_cnn_initial(gpu: &wgnn::Gpu, filters: [usize; 2]) -> Vec<wgnn::nn::NamedTensor> {
    let mut m = spatial_cnn(filters).unwrap();
    m.compile(gpu, Optimizer::sgd(0.05, 0.9), SEED).unwrap();
    m.weights().unwrap()
}

/// The pixel value the GPU gather makes of a byte.
fn pixel(b: u8) -> f64 {
    f64::from(f32::from(b) * (1.0f32 / 255.0))
}

/// The f64 host forward of `fd_model(cin)` in training mode at step `step`, mean loss:
/// conv 3x3 valid (4 filters) + bias + ReLU -> [3, 3, 4], SpatialDropout2D(0.5) of layer 1
/// (keep mask element `s * 4 + co` of stream `1 + step * 2^32`), Flatten, Dense 3, softmax
/// cross-entropy. Weights: conv kernel HWIO [3, 3, cin, 4], conv bias, dense [36, 3], bias.
fn host_loss(w: &[Vec<f64>], data: &Dataset, step: u64) -> f64 {
    let (n, h, wd, c) = (data.count, 5, 5, data.channels);
    let x: Vec<f64> = data.images.iter().map(|&b| pixel(b)).collect();
    let (ck, cb, dk, db) = (&w[0], &w[1], &w[2], &w[3]);
    let scale = f64::from(philox::scale(0.5));
    let mut loss = 0.0;
    for s in 0..n {
        let mut flat = [0.0; 36];
        for i in 0..3 {
            for j in 0..3 {
                for co in 0..4 {
                    let mut acc = cb[co];
                    for di in 0..3 {
                        for dj in 0..3 {
                            for ci in 0..c {
                                acc += x[((s * h + i + di) * wd + j + dj) * c + ci]
                                    * ck[((di * 3 + dj) * c + ci) * 4 + co];
                            }
                        }
                    }
                    let keep = philox::keep(SEED, 1 + (step << 32), (s * 4 + co) as u64, 0.5);
                    flat[(i * 3 + j) * 4 + co] = if keep { acc.max(0.0) * scale } else { 0.0 };
                }
            }
        }
        let logits: Vec<f64> = (0..3)
            .map(|o| db[o] + (0..36).map(|k| flat[k] * dk[k * 3 + o]).sum::<f64>())
            .collect();
        loss += common::xent_f64(&logits, usize::from(data.labels[s]));
    }
    loss / n as f64
}

fn fd_model(cin: usize) -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[5, 5, cin])
        .with(Conv2d::new(4, [3, 3])?.activation(Activation::Relu))
        .with(SpatialDropout2d::new(0.5)?)
        .with(Layer::Flatten)
        .with(Dense::new(3)?))
}

#[test]
fn spatial_dropout_gradients_match_finite_differences_of_host_model() {
    let gpu = common::gpu();
    // 3 input channels: the 4x4-tile kernel's epilogue; 4: the subgroup kernel's (where the
    // adapter has one).
    for cin in [3usize, 4] {
        let data = common::random_data(3, [5, 5, cin], 3, 40 + cin as u64);
        let mut model = fd_model(cin).unwrap();
        model.compile(gpu, Optimizer::sgd(0.0, 0.0), SEED).unwrap();
        for step in 0..2u64 {
            // The mask of this step keeps some channels and drops others.
            let keep: Vec<bool> = (0..12)
                .map(|i| philox::keep(SEED, 1 + (step << 32), i, 0.5))
                .collect();
            assert!(keep.contains(&true) && keep.contains(&false), "{keep:?}");
            let mut t = model.trainer(&data, data.count).unwrap();
            t.shuffle = false;
            t.begin_epoch();
            t.step().unwrap();
            t.end_epoch(1).unwrap();
            let grads = model.gradients().unwrap();
            let w: Vec<Vec<f64>> = model
                .weights()
                .unwrap()
                .iter()
                .map(|t| t.data.iter().map(|&v| f64::from(v)).collect())
                .collect();
            let h = 1e-5;
            for (p, g) in grads.iter().enumerate() {
                let fd: Vec<f64> = (0..w[p].len())
                    .map(|i| {
                        let (mut wp, mut wm) = (w.clone(), w.clone());
                        wp[p][i] += h;
                        wm[p][i] -= h;
                        (host_loss(&wp, &data, step) - host_loss(&wm, &data, step)) / (2.0 * h)
                    })
                    .collect();
                // f32 GPU sums against f64 central differences (whose own error is ~1e-10, see
                // tests/training.rs): rel 1e-6 of the largest entry, abs 1e-9. Measured on
                // lavapipe and llvmpipe: at most 2e-7.
                let worst = common::assert_close(
                    &format!("cin {cin} step {step}: {}", g.name),
                    &g.data,
                    &fd,
                    1e-6,
                    1e-9,
                );
                eprintln!(
                    "cin {cin} step {step}: {} worst relative error {worst:e}",
                    g.name
                );
            }
        }
    }
}
