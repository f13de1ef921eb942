//! Resuming exactly after a crash: a run killed (SIGKILL) at a random moment of its third
//! epoch and restarted from its training checkpoint ends with every tensor (weights,
//! BatchNorm moving statistics, optimizer state) and the third epoch's logged metrics equal,
//! bit for bit, to those of the uninterrupted run; with Adam and with SGD-momentum, on every
//! adapter. Plus the errors of `load_training_state` (names, shapes, optimizer kind) and the
//! contract of the files it reads.
//!
//! The killed runs are this test binary run again as a child (`WGNN_RESUME_CHILD` selects
//! the child's role in `resume_child_or_in_memory_continuation`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use rand::{RngExt, SeedableRng};
use wgnn::data::Dataset;
use wgnn::nn::weights::{self, NamedTensor, WeightsOptions};
use wgnn::nn::{
    Activation, BatchNorm, Dense, Dropout, EpochLog, Fit, Layer, ModelCheckpoint, Monitor,
    Optimizer, Sequential,
};
use wgnn::{Error, Gpu};

const SEED: u64 = 0x5eed_0016;
const EPOCHS: usize = 3;
const BATCH: usize = 32;
const CHILD_TEST: &str = "resume_child_or_in_memory_continuation";

/// A small MLP with fused and standalone dropout and a BatchNorm.
fn mlp() -> Sequential {
    Sequential::new(&[784])
        .with(Dense::new(64).unwrap().activation(Activation::Relu))
        .with(Dropout::new(0.3).unwrap())
        .with(Dense::new(33).unwrap())
        .with(BatchNorm::new())
        .with(Layer::Relu)
        .with(Dropout::new(0.2).unwrap())
        .with(Dense::new(10).unwrap())
}

fn optimizer(name: &str) -> Optimizer {
    match name {
        "adam" => Optimizer::adam(1e-3),
        "sgd" => Optimizer::sgd(0.05, 0.9),
        other => panic!("no optimizer {other:?}"),
    }
}

/// 650 training images (20 batches of 32 and one of 10) and 200 validation images.
fn data() -> (Dataset, Dataset) {
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    (train.subset(0..650).unwrap(), test.subset(0..200).unwrap())
}

/// `fit` to epoch `EPOCHS` from `initial_epoch`, a training checkpoint to `path` each epoch.
fn fit_opts<'a>(validation: &'a Dataset, path: &Path, initial_epoch: usize) -> Fit<'a> {
    Fit {
        epochs: EPOCHS,
        initial_epoch,
        batch_size: BATCH,
        validation: Some(validation),
        verbose: false,
        checkpoint: Some(ModelCheckpoint::new(path, Monitor::ValLoss).include_optimizer(true)),
        ..Fit::default()
    }
}

fn compiled(gpu: &Gpu, opt: &str, seed: u64) -> Sequential {
    let mut m = mlp();
    m.compile(gpu, optimizer(opt), seed).unwrap();
    m
}

fn epoch_of(path: &Path) -> Option<usize> {
    weights::read_metadata_file(path, &WeightsOptions::default())
        .ok()?
        .get("epoch")?
        .parse()
        .ok()
}

/// Every tensor of two safetensors files, compared bit for bit: the names that differ.
fn differing_tensors(a: &[u8], b: &[u8]) -> Vec<String> {
    let a = safetensors::SafeTensors::deserialize(a).unwrap();
    let b = safetensors::SafeTensors::deserialize(b).unwrap();
    let mut names: Vec<String> = a.names().into_iter().map(String::from).collect();
    names.sort();
    let mut bn: Vec<String> = b.names().into_iter().map(String::from).collect();
    bn.sort();
    assert_eq!(names, bn, "the two files hold different tensors");
    names
        .into_iter()
        .filter(|n| a.tensor(n).unwrap().data() != b.tensor(n).unwrap().data())
        .collect()
}

/// An epoch's log without its wall-clock time.
fn logged(e: &EpochLog) -> EpochLog {
    EpochLog {
        seconds: 0.0,
        ..e.clone()
    }
}

/// In a child (`WGNN_RESUME_CHILD` = `ADAPTER:OPTIMIZER:FILE`): trains as the uninterrupted
/// run does, a training checkpoint to FILE after each epoch, until killed.
///
/// As an ordinary test: on the first adapter, `fit` to epoch 2 and then, on the same model,
/// `fit` from `initial_epoch` 2 to 3 ends with the weights, optimizer state and epoch-3 log
/// of one `fit` over the three epochs (the order of each epoch depends on the seed and the
/// step alone, not on the epochs before).
#[test]
fn resume_child_or_in_memory_continuation() {
    if let Ok(role) = std::env::var("WGNN_RESUME_CHILD") {
        let mut parts = role.splitn(3, ':');
        let (gi, opt, path) = (
            parts.next().unwrap().parse::<usize>().unwrap(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        );
        let (train, val) = data();
        let mut m = compiled(&common::gpus()[gi], &opt, SEED);
        m.fit(&train, &fit_opts(&val, Path::new(&path), 0)).unwrap();
        return;
    }
    let gpu = common::gpu();
    let (train, val) = data();
    let dir = TempDir::new("resume-mem");
    let (one, two) = (dir.0.join("one.safetensors"), dir.0.join("two.safetensors"));
    let mut a = compiled(gpu, "sgd", SEED);
    let ha = a.fit(&train, &fit_opts(&val, &one, 0)).unwrap();
    let mut b = compiled(gpu, "sgd", SEED);
    let first = b
        .fit(
            &train,
            &Fit {
                epochs: 2,
                ..fit_opts(&val, &two, 0)
            },
        )
        .unwrap();
    assert_eq!(
        first.epochs.iter().map(logged).collect::<Vec<_>>(),
        ha.epochs[..2].iter().map(logged).collect::<Vec<_>>()
    );
    let hb = b.fit(&train, &fit_opts(&val, &two, 2)).unwrap();
    assert_eq!(hb.epochs.len(), 1);
    assert_eq!(logged(&hb.epochs[0]), logged(&ha.epochs[2]));
    assert_eq!(b.steps_taken(), a.steps_taken());
    let (fa, fb) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    assert_eq!(differing_tensors(&fa, &fb), Vec::<String>::new());
    assert!(fa == fb, "the two files' metadata differ");
}

/// One killed run: the child started, SIGKILLed `frac` of its second epoch's duration after
/// its second checkpoint appeared. Returns the checkpoint's epoch after the kill and the
/// delay.
fn kill_in_epoch_3(gi: usize, opt: &str, path: &Path, frac: f64) -> (Option<usize>, Duration) {
    let _ = std::fs::remove_file(path);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(
            "WGNN_RESUME_CHILD",
            format!("{gi}:{opt}:{}", path.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen: [Option<Instant>; 2] = [None, None];
    while seen[1].is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{opt}: the child ended ({status}) before its second checkpoint: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{opt}: no second checkpoint after 300 s"
        );
        match epoch_of(path) {
            Some(1) if seen[0].is_none() => seen[0] = Some(Instant::now()),
            Some(2) => seen[1] = Some(Instant::now()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (t1, t2) = (seen[0].unwrap_or(start), seen[1].unwrap_or(start));
    let delay = (t2 - t1).mul_f64(frac);
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    (epoch_of(path), delay)
}

#[test]
fn resume_after_sigkill_in_epoch_3_matches_the_uninterrupted_run_bit_for_bit() {
    let (train, val) = data();
    let dir = TempDir::new("resume");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0017);
    let started = Instant::now();
    for (gi, gpu) in common::gpus().iter().enumerate() {
        for (opt, kills) in [("adam", 2), ("sgd", 2)] {
            // The uninterrupted run.
            let whole = dir.0.join(format!("whole-{gi}-{opt}.safetensors"));
            let mut m = compiled(gpu, opt, SEED);
            let history = m.fit(&train, &fit_opts(&val, &whole, 0)).unwrap();
            let want = std::fs::read(&whole).unwrap();
            let want_log = logged(&history.epochs[2]);
            let want_weights = m.weights().unwrap();
            let mut landed = 0;
            for kill in 0..kills {
                let path = dir.0.join(format!("killed-{gi}-{opt}-{kill}.safetensors"));
                let mut frac = rng.random_range(0.05..0.6);
                let (epoch, delay) = loop {
                    let (epoch, delay) = kill_in_epoch_3(gi, opt, &path, frac);
                    if epoch == Some(2) || frac < 0.01 {
                        break (epoch, delay);
                    }
                    // The kill came after the third epoch's checkpoint (a slow machine):
                    // earlier, until it lands in epoch 3.
                    eprintln!(
                        "{}: {opt} kill {kill} at {frac:.3} ({delay:?}) came after epoch 3; again at half",
                        gpu.info()
                    );
                    frac /= 2.0;
                };
                let context = format!(
                    "{}: {opt}, kill {kill} {delay:?} into epoch 3 ({frac:.3} of an epoch)",
                    gpu.info()
                );
                assert_eq!(epoch, Some(2), "{context}: never landed in epoch 3");
                landed += 1;
                // Restart: a fresh model (another seed: the file's is restored), the state
                // loaded, and epoch 3 run again.
                let mut r = compiled(gpu, opt, SEED ^ 1);
                let state = r.load_training_state(&path).unwrap();
                assert_eq!(state.epoch, 2, "{context}");
                assert_eq!(state.seed, SEED, "{context}");
                assert_eq!(r.steps_taken(), 2 * 21, "{context}");
                let resumed = r.fit(&train, &fit_opts(&val, &path, state.epoch)).unwrap();
                assert_eq!(resumed.epochs.len(), 1, "{context}");
                assert_eq!(
                    logged(&resumed.epochs[0]),
                    want_log,
                    "{context}: epoch 3's log"
                );
                let got = std::fs::read(&path).unwrap();
                assert_eq!(
                    differing_tensors(&got, &want),
                    Vec::<String>::new(),
                    "{context}: tensors that differ from the uninterrupted run's"
                );
                assert!(got == want, "{context}: the files' metadata differ");
                assert_eq!(r.weights().unwrap(), want_weights, "{context}");
                eprintln!("{context}: resumed to the same bits");
            }
            assert_eq!(landed, kills);
        }
    }
    eprintln!("resume test: {:.1?} in all", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// What load_training_state refuses, and what load_weights reads

/// A training state after one epoch of a model `build()` compiled with `opt`.
fn state_file(gpu: &Gpu, build: fn() -> Sequential, opt: &str, path: &Path) -> Sequential {
    let (train, _) = data();
    let mut m = build();
    m.compile(gpu, optimizer(opt), SEED).unwrap();
    m.fit(
        &train.subset(0..70).unwrap(),
        &Fit {
            epochs: 1,
            batch_size: BATCH,
            verbose: false,
            checkpoint: Some(ModelCheckpoint::new(path, Monitor::ValLoss).include_optimizer(true)),
            ..Fit::default()
        },
    )
    .unwrap();
    m
}

fn data_msg(e: Error) -> String {
    match e {
        Error::Data { msg, .. } => msg,
        other => panic!("not a data error: {other:?}"),
    }
}

/// The tensors and metadata of a safetensors file.
fn parse(bytes: &[u8]) -> (Vec<NamedTensor>, HashMap<String, String>) {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<NamedTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| NamedTensor {
            name,
            shape: v.shape().to_vec(),
            data: bytemuck::pod_collect_to_vec(v.data()),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    (tensors, meta.metadata().clone().unwrap_or_default())
}

#[test]
fn resume_state_file_holds_the_documented_tensors_and_keys_and_load_weights_reads_it() {
    let gpu = common::gpu();
    let dir = TempDir::new("resume-keys");
    let path = dir.0.join("s.safetensors");
    for (opt, slots) in [("adam", &["m", "v"][..]), ("sgd", &["velocity"][..])] {
        let m = state_file(gpu, mlp, opt, &path);
        let (tensors, meta) = parse(&std::fs::read(&path).unwrap());
        let mut want: Vec<String> = Vec::new();
        for w in m.weights().unwrap() {
            if !w.name.contains("moving_") {
                for s in slots {
                    want.push(format!("optimizer/{}/{s}", w.name));
                }
            }
            want.push(w.name);
        }
        want.sort();
        let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, want, "{opt}");
        assert!(names.contains(&"batch_normalization/moving_mean".to_string()));
        // The optimizer state is the device's: Adam's second moments are positive
        // somewhere and never negative; SGD's velocity is not all zero.
        let slot0 = tensors
            .iter()
            .find(|t| t.name == format!("optimizer/dense/kernel/{}", slots[slots.len() - 1]))
            .unwrap();
        assert!(
            slot0.data.iter().any(|&v| v != 0.0),
            "{opt}: state all zero"
        );
        if opt == "adam" {
            assert!(slot0.data.iter().all(|&v| v >= 0.0), "adam: negative v");
        }
        // 70 samples in batches of 32: 3 steps.
        for (k, v) in [
            ("training_state", "1"),
            ("optimizer", opt),
            ("step", "3"),
            ("optimizer_iterations", "3"),
            ("epoch", "1"),
        ] {
            assert_eq!(meta.get(k).map(String::as_str), Some(v), "{opt}: key {k}");
        }
        assert_eq!(meta.get("seed"), Some(&SEED.to_string()));
        // load_weights reads the weights and skips the optimizer state.
        let mut w = mlp();
        w.compile(gpu, optimizer(opt), 1).unwrap();
        w.load_weights(&path).unwrap();
        assert_eq!(w.weights().unwrap(), m.weights().unwrap(), "{opt}");
        // The bytes form restores the same as the file form.
        let mut s = mlp();
        s.compile(gpu, optimizer(opt), 1).unwrap();
        let st = s
            .load_training_state_bytes(&std::fs::read(&path).unwrap(), "s")
            .unwrap();
        assert_eq!((st.epoch, st.step, st.seed), (1, 3, SEED));
        assert_eq!(s.weights().unwrap(), m.weights().unwrap());
        assert_eq!(s.steps_taken(), 3);
    }
}

#[test]
fn resume_refuses_another_optimizer_shape_or_name_and_leaves_the_model_unchanged() {
    let gpu = common::gpu();
    let dir = TempDir::new("resume-errors");
    let adam = dir.0.join("adam.safetensors");
    state_file(gpu, mlp, "adam", &adam);
    let fresh = |opt: &str| compiled(gpu, opt, 3);
    let check_unchanged = |m: &Sequential, before: &[NamedTensor]| {
        assert_eq!(m.weights().unwrap(), before);
        assert_eq!(m.steps_taken(), 0);
    };

    // An Adam file into an SGD model names both.
    let mut sgd = fresh("sgd");
    let before = sgd.weights().unwrap();
    let msg = data_msg(sgd.load_training_state(&adam).unwrap_err());
    assert_eq!(
        msg,
        "holds Adam optimizer state, but the model is compiled with SGD"
    );
    check_unchanged(&sgd, &before);
    // And an SGD file into an Adam model.
    let sgd_file = dir.0.join("sgd.safetensors");
    state_file(gpu, mlp, "sgd", &sgd_file);
    let mut m = fresh("adam");
    let msg = data_msg(m.load_training_state(&sgd_file).unwrap_err());
    assert_eq!(
        msg,
        "holds SGD optimizer state, but the model is compiled with Adam"
    );

    // A layer of another width: the weight's shape, naming the layer.
    fn wider() -> Sequential {
        Sequential::new(&[784])
            .with(Dense::new(64).unwrap().activation(Activation::Relu))
            .with(Dropout::new(0.3).unwrap())
            .with(Dense::new(7).unwrap())
            .with(BatchNorm::new())
            .with(Layer::Relu)
            .with(Dropout::new(0.2).unwrap())
            .with(Dense::new(10).unwrap())
    }
    let mut w = wider();
    w.compile(gpu, optimizer("adam"), 3).unwrap();
    let before = w.weights().unwrap();
    let msg = data_msg(w.load_training_state(&adam).unwrap_err());
    assert_eq!(
        msg,
        "tensor \"dense_1/kernel\" has shape [64, 33], but layer 2 (Dense) expects [64, 7]"
    );
    check_unchanged(&w, &before);

    // An optimizer tensor of the wrong shape, one missing, one extra (from rewritten files).
    let bytes = std::fs::read(&adam).unwrap();
    let (tensors, meta) = parse(&bytes);
    let rewrite = |f: &dyn Fn(&mut Vec<NamedTensor>)| {
        let mut t = tensors.clone();
        f(&mut t);
        weights::to_safetensors(&t, Some(meta.clone())).unwrap()
    };
    let mut m = fresh("adam");
    let before = m.weights().unwrap();
    let bad_shape = rewrite(&|t| {
        let v = t
            .iter_mut()
            .find(|t| t.name == "optimizer/dense_2/bias/v")
            .unwrap();
        v.shape = vec![5, 2];
    });
    let msg = data_msg(m.load_training_state_bytes(&bad_shape, "f").unwrap_err());
    assert_eq!(
        msg,
        "tensor \"optimizer/dense_2/bias/v\" has shape [5, 2], but layer 6 (Dense)'s Adam state expects [10]"
    );
    let missing = rewrite(&|t| t.retain(|t| t.name != "optimizer/batch_normalization/gamma/m"));
    let msg = data_msg(m.load_training_state_bytes(&missing, "f").unwrap_err());
    assert_eq!(
        msg,
        "no tensor \"optimizer/batch_normalization/gamma/m\" for layer 3 (BatchNormalization)'s Adam state"
    );
    let extra = rewrite(&|t| {
        t.push(NamedTensor {
            name: "optimizer/dense/kernel/u".into(),
            shape: vec![1],
            data: vec![0.0],
        })
    });
    let msg = data_msg(m.load_training_state_bytes(&extra, "f").unwrap_err());
    assert!(
        msg.starts_with("tensor \"optimizer/dense/kernel/u\" is not a weight of this model"),
        "{msg}"
    );
    // load_weights skips optimizer tensors but still refuses an extra weight.
    let extra_weight = rewrite(&|t| {
        t.push(NamedTensor {
            name: "dense_9/kernel".into(),
            shape: vec![1],
            data: vec![0.0],
        })
    });
    let msg = data_msg(m.load_weights_bytes(&extra_weight, "f").unwrap_err());
    assert!(
        msg.starts_with("tensor \"dense_9/kernel\" is not a weight"),
        "{msg}"
    );
    // Keys: none (a weights-only file), another format, a malformed step.
    let plain = fresh("adam");
    let weights_only = dir.0.join("w.safetensors");
    plain.save_weights(&weights_only).unwrap();
    let msg = data_msg(m.load_training_state(&weights_only).unwrap_err());
    assert!(msg.starts_with("holds no training state"), "{msg}");
    let with_meta = |k: &str, v: &str| {
        let mut mm = meta.clone();
        mm.insert(k.into(), v.into());
        weights::to_safetensors(&tensors, Some(mm)).unwrap()
    };
    let msg = data_msg(
        m.load_training_state_bytes(&with_meta("training_state", "2"), "f")
            .unwrap_err(),
    );
    assert_eq!(msg, "training_state format \"2\"; this version reads \"1\"");
    let msg = data_msg(
        m.load_training_state_bytes(&with_meta("step", "x"), "f")
            .unwrap_err(),
    );
    assert_eq!(msg, "training state key \"step\" = \"x\" is not a number");
    let msg = data_msg(
        m.load_training_state_bytes(&with_meta("optimizer", "rmsprop"), "f")
            .unwrap_err(),
    );
    assert_eq!(
        msg,
        "holds \"rmsprop\" optimizer state, but the model is compiled with Adam"
    );
    check_unchanged(&m, &before);
    // The unchanged file still loads.
    m.load_training_state_bytes(&bytes, "f").unwrap();
    assert_eq!(m.steps_taken(), 3);

    // An uncompiled model, and initial_epoch past epochs.
    let mut u = mlp();
    assert!(matches!(
        u.load_training_state(&adam),
        Err(Error::Argument { .. })
    ));
    let (train, _) = data();
    let e = m
        .fit(
            &train,
            &Fit {
                epochs: 2,
                initial_epoch: 3,
                verbose: false,
                ..Fit::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "fit: initial_epoch 3 is past epochs 2");
    let h = m
        .fit(
            &train,
            &Fit {
                epochs: 2,
                initial_epoch: 2,
                verbose: false,
                ..Fit::default()
            },
        )
        .unwrap();
    assert!(h.epochs.is_empty());
    assert_eq!(m.steps_taken(), 3);
}

#[test]
fn resume_epoch_order_is_a_permutation_of_seed_and_step_only() {
    for n in [1usize, 3, 7, 33, 257] {
        let a = wgnn::nn::epoch_order(n, 5, 42);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..n as u32).collect::<Vec<_>>(), "n {n}");
        assert_eq!(a, wgnn::nn::epoch_order(n, 5, 42));
        if n > 3 {
            assert_ne!(
                a,
                wgnn::nn::epoch_order(n, 5, 43),
                "n {n}: the step moves it"
            );
            assert_ne!(
                a,
                wgnn::nn::epoch_order(n, 6, 42),
                "n {n}: the seed moves it"
            );
        }
    }
    // The documented construction, by hand.
    let n = 33;
    let offset = (7u64 << 32) | u64::from(u32::MAX);
    let mut want: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let r = u64::from(wgnn::philox::word(9, offset, 2 * i as u64))
            | (u64::from(wgnn::philox::word(9, offset, 2 * i as u64 + 1)) << 32);
        want.swap(i, ((u128::from(r) * (i as u128 + 1)) >> 64) as usize);
    }
    assert_eq!(wgnn::nn::epoch_order(n, 9, 7), want);
    // Uniform enough: over 4000 orders of 4, each position holds each sample about 1000 times.
    let mut counts = [[0u32; 4]; 4];
    for step in 0..4000 {
        for (pos, &s) in wgnn::nn::epoch_order(4, 1, step).iter().enumerate() {
            counts[pos][s as usize] += 1;
        }
    }
    for row in counts {
        for c in row {
            assert!((880..=1120).contains(&c), "{counts:?}");
        }
    }
}
