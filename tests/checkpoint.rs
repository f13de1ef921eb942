//! Checkpoints that survive a kill: the atomic writer under SIGKILL (against a naive writer
//! that must tear), injected write errors, modes, stale temporaries, corrupt weights files
//! that leave the model unchanged, and `ModelCheckpoint` keeping its best across restarts.
//!
//! The kill loop runs this test binary again as a child (`WGNN_KILL_CHILD` selects the
//! child's role in `checkpoint_child_saves_versions_alternately`), which saves versions A and
//! B of an 8 MB weights file alternately to one path until it is killed.

mod common;

use common::TempDir;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use wgnn::nn::weights::{self, NamedTensor, WeightSpec, WeightsOptions};
use wgnn::nn::{
    Activation, BatchNorm, Dense, Fit, ModelCheckpoint, Monitor, Optimizer, Sequential,
};

// ---------------------------------------------------------------------------------------------
// Versions A and B of an 8 MB model

/// Four tensors, 2,049,000 values (8,196,000 bytes).
fn big_specs() -> Vec<WeightSpec> {
    common::two_dense_specs(1024, 1024, 976)
}

/// Version `v` (0 for A, 1 for B) as the library writes it; B differs from A in every value
/// of every tensor.
fn version(v: u8) -> Vec<u8> {
    let tensors: Vec<NamedTensor> = big_specs()
        .into_iter()
        .enumerate()
        .map(|(t, s)| {
            let n: usize = s.shape.iter().product();
            NamedTensor {
                name: s.name,
                shape: s.shape,
                data: (0..n)
                    .map(|i| (i % 1000) as f32 * 1e-3 + t as f32 + f32::from(v) * 10.0)
                    .collect(),
            }
        })
        .collect();
    weights::to_safetensors(&tensors, None).unwrap()
}

fn naive_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::File::create(path)?.write_all(bytes)
}

const CHILD_TEST: &str = "checkpoint_child_saves_versions_alternately";

/// In a child (`WGNN_KILL_CHILD` = `atomic:DIR` or `naive:DIR`): reads `DIR/a.bin` and
/// `DIR/b.bin`, says `WGNN-READY` on stdout, then saves A, B, A, B... to `DIR/w.safetensors`
/// with the chosen writer until killed (or for at most 60 s). Run as an ordinary test: four
/// atomic saves, each leaving exactly the version written and no temporary.
#[test]
fn checkpoint_child_saves_versions_alternately() {
    if let Ok(role) = std::env::var("WGNN_KILL_CHILD") {
        let (mode, dir) = role.split_once(':').expect("MODE:DIR");
        let dir = Path::new(dir);
        let versions = [
            std::fs::read(dir.join("a.bin")).unwrap(),
            std::fs::read(dir.join("b.bin")).unwrap(),
        ];
        let target = dir.join("w.safetensors");
        println!("WGNN-READY");
        std::io::stdout().flush().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            for v in &versions {
                match mode {
                    "atomic" => weights::write_atomic(&target, v).unwrap(),
                    _ => naive_write(&target, v).unwrap(),
                }
            }
        }
        return;
    }
    let dir = TempDir::new("child");
    let target = dir.0.join("w.safetensors");
    let versions = [version(0), version(1)];
    for i in 0..4 {
        weights::write_atomic(&target, &versions[i % 2]).unwrap();
        assert!(
            std::fs::read(&target).unwrap() == versions[i % 2],
            "save {i}"
        );
        assert_eq!(
            weights::temporaries(&target).unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}

/// Median seconds of 5 saves of A with `writer`.
fn save_time(path: &Path, a: &[u8], writer: &dyn Fn(&Path, &[u8])) -> Duration {
    let mut t: Vec<Duration> = (0..5)
        .map(|_| {
            let s = Instant::now();
            writer(path, a);
            s.elapsed()
        })
        .collect();
    t.sort();
    t[2]
}

#[derive(Debug, Default)]
struct Outcome {
    kills: usize,
    a: usize,
    b: usize,
    torn: usize,
    temp_left: usize,
    first_torn: Option<(usize, Duration, usize)>,
}

/// `kills` times: start a child saving with `mode`, wait a seeded uniform delay in
/// [0, 2 x save time], SIGKILL it, and classify what the target holds.
fn kill_loop(mode: &str, kills: usize, seed: u64) -> Outcome {
    let dir = TempDir::new(mode);
    let (a, b) = (version(0), version(1));
    std::fs::write(dir.0.join("a.bin"), &a).unwrap();
    std::fs::write(dir.0.join("b.bin"), &b).unwrap();
    let target = dir.0.join("w.safetensors");
    let writer: &dyn Fn(&Path, &[u8]) = match mode {
        "atomic" => &|p, v| weights::write_atomic(p, v).unwrap(),
        _ => &|p, v| naive_write(p, v).unwrap(),
    };
    let save = save_time(&target, &a, writer);
    let specs = big_specs();
    // A and B load; so does any file equal to one of them byte for byte.
    for v in [&a, &b] {
        weights::from_safetensors(v, "w", &specs, &WeightsOptions::default()).unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Outcome::default();
    let start = Instant::now();
    for kill in 0..kills {
        let delay = save.mul_f64(2.0 * rng.random_range(0.0..1.0));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env("WGNN_KILL_CHILD", format!("{mode}:{}", dir.0.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.ends_with("WGNN-READY") => break,
                Some(Ok(_)) => {}
                other => panic!("{mode}: child ended before it was ready: {other:?}"),
            }
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let context = format!("{mode}: kill {kill}, seed {seed}, delay {delay:?}");
        let bytes = std::fs::read(&target).unwrap();
        let torn = bytes != a && bytes != b;
        let loads = if torn {
            weights::from_safetensors(&bytes, "w", &specs, &WeightsOptions::default()).map(|_| ())
        } else {
            Ok(())
        };
        let temps = weights::temporaries(&target).unwrap();
        assert!(temps.len() <= 1, "{context}: temporaries {temps:?}");
        out.temp_left += temps.len();
        out.kills += 1;
        if bytes == a {
            out.a += 1;
        } else if bytes == b {
            out.b += 1;
        } else {
            out.torn += 1;
            out.first_torn.get_or_insert((kill, delay, bytes.len()));
            assert!(
                mode != "atomic",
                "{context}: the file is torn ({} bytes, load: {:?})",
                bytes.len(),
                loads.err().map(|e| e.to_string())
            );
        }
    }
    eprintln!(
        "kill loop {mode}: save time {save:?}, {out:?}, {:.1?} in all",
        start.elapsed()
    );
    out
}

/// 200 SIGKILLs during atomic saves: every time the file loads and is A or B byte for
/// byte, with at most one temporary beside it. The same against a naive writer
/// (`File::create` on the target) must find a torn file, or this test could not fail.
#[cfg(unix)]
#[test]
fn checkpoint_kill_loop_never_tears_the_atomic_writer_and_tears_a_naive_one() {
    let atomic = kill_loop("atomic", 200, 0x5eed_0001);
    assert_eq!(atomic.torn, 0);
    assert!(
        atomic.a > 0 && atomic.b > 0,
        "both versions seen: {atomic:?}"
    );
    assert!(
        atomic.temp_left > 0,
        "no kill landed inside a save (no temporary ever left): {atomic:?}"
    );
    let naive = kill_loop("naive", 200, 0x5eed_0002);
    assert!(
        naive.torn > 0,
        "the naive writer was never caught torn in 200 kills: {naive:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Failed saves, modes, temporaries

/// Passes at most `left` bytes to `inner`, then fails.
struct FailAfter<'a> {
    inner: &'a mut dyn Write,
    left: usize,
}

impl Write for FailAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 && !buf.is_empty() {
            return Err(std::io::Error::other("injected failure"));
        }
        let n = self.inner.write(&buf[..buf.len().min(self.left)])?;
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn checkpoint_write_error_after_n_bytes_keeps_the_old_file() {
    let dir = TempDir::new("fail");
    let path = dir.0.join("w.safetensors");
    let old = weights::to_safetensors(
        &[NamedTensor {
            name: "dense/kernel".into(),
            shape: vec![3],
            data: vec![1.0, 2.0, 3.0],
        }],
        None,
    )
    .unwrap();
    weights::write_atomic(&path, &old).unwrap();
    let new = version(1);
    for n in [0, 1, 8, 100, 4096, 1 << 20, new.len() - 1] {
        let err =
            weights::write_atomic_with(&path, |w| FailAfter { inner: w, left: n }.write_all(&new))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: injected failure", path.display()),
            "after {n} bytes"
        );
        assert!(std::fs::read(&path).unwrap() == old, "after {n} bytes");
        assert_eq!(weights::temporaries(&path).unwrap(), Vec::<PathBuf>::new());
    }
    // All bytes through: the new file.
    weights::write_atomic_with(&path, |w| {
        FailAfter {
            inner: w,
            left: new.len(),
        }
        .write_all(&new)
    })
    .unwrap();
    assert!(std::fs::read(&path).unwrap() == new);
    // A target that cannot be replaced (a directory): the rename fails, nothing is left.
    let blocked = dir.0.join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    let err = weights::write_atomic(&blocked, &old)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: ", blocked.display())),
        "{err}"
    );
    assert_eq!(
        weights::temporaries(&blocked).unwrap(),
        Vec::<PathBuf>::new()
    );
    // A directory that does not exist.
    let missing = dir.0.join("no/such/dir/w.safetensors");
    assert_eq!(
        weights::write_atomic(&missing, &old)
            .unwrap_err()
            .to_string(),
        format!(
            "{}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[cfg(unix)]
#[test]
fn checkpoint_takes_the_replaced_files_mode_or_0644_and_never_writes_the_target_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("mode");
    let path = dir.0.join("w.safetensors");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    weights::write_atomic(&path, b"one").unwrap();
    assert_eq!(mode(&path), 0o644, "a new file");
    for m in [0o600, 0o640, 0o444] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        weights::write_atomic(&path, b"two").unwrap();
        assert_eq!(mode(&path), m, "replacing a {m:o} file");
    }
    // A hard link to the old file keeps the old bytes: the target was replaced by a rename,
    // never opened for writing (a writer that truncated it would change the link too).
    std::fs::hard_link(&path, dir.0.join("link")).unwrap();
    weights::write_atomic(&path, b"three").unwrap();
    assert_eq!(std::fs::read(dir.0.join("link")).unwrap(), b"two");
    assert_eq!(std::fs::read(&path).unwrap(), b"three");
}

#[test]
fn checkpoint_stale_temporaries_are_never_read_and_are_removed_by_the_next_save() {
    let dir = TempDir::new("stale");
    let path = dir.0.join("w.safetensors");
    let a = version(0);
    weights::write_atomic(&path, &a).unwrap();
    // What two killed saves would leave: a torn half of B and an empty file.
    let b = version(1);
    let stale = [
        dir.0.join(".w.safetensors.wgnn-tmp-1-2-3"),
        dir.0.join(".w.safetensors.wgnn-tmp-4-5-6"),
    ];
    std::fs::write(&stale[0], &b[..b.len() / 2]).unwrap();
    std::fs::write(&stale[1], b"").unwrap();
    let other = dir.0.join(".other.wgnn-tmp-1-2-3");
    std::fs::write(&other, b"another file's temporary").unwrap();
    assert_eq!(weights::temporaries(&path).unwrap(), stale.to_vec());
    let loaded =
        weights::read_safetensors_file(&path, &big_specs(), &WeightsOptions::default()).unwrap();
    assert!(
        loaded.data[1][1] < 10.0,
        "A (values below 10), not the temporary's B"
    );
    assert_eq!(
        weights::temporaries(&path).unwrap(),
        stale.to_vec(),
        "a load removes nothing"
    );
    weights::write_atomic(&path, &b).unwrap();
    assert_eq!(weights::temporaries(&path).unwrap(), Vec::<PathBuf>::new());
    assert!(other.exists(), "only this file's temporaries are removed");
    assert!(std::fs::read(&path).unwrap() == b);
}

// ---------------------------------------------------------------------------------------------
// Corrupt weights files leave the model unchanged

fn mlp() -> Sequential {
    Sequential::new(&[6])
        .with(Dense::new(5).unwrap().activation(Activation::Relu))
        .with(Dense::new(4).unwrap().activation(Activation::Relu))
        .with(Dense::new(3).unwrap())
}

#[test]
fn checkpoint_damaged_weights_files_are_rejected_and_leave_the_model_unchanged() {
    let gpu = common::gpu();
    let mut source = mlp();
    source.compile(gpu, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    let dir = TempDir::new("damaged");
    let path = dir.0.join("w.safetensors");
    source.save_weights(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert!(
        header >= 248,
        "the first 256 bytes must lie in the header: {header}"
    );

    let mut model = mlp();
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), 2).unwrap();
    let before = model.weights().unwrap();
    assert_ne!(before, source.weights().unwrap());
    let mut rejected = 0;
    let mut attempt = |damaged: &[u8], what: String| {
        let r = model.load_weights_bytes(damaged, "damaged.safetensors");
        assert!(r.is_err(), "{what} was accepted");
        assert!(
            model.weights().unwrap() == before,
            "{what} changed the model"
        );
        rejected += 1;
    };
    for i in 0..256 {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        attempt(&b, format!("byte {i} flipped"));
    }
    for n in (0..bytes.len()).step_by(37) {
        attempt(&bytes[..n], format!("cut at byte {n}"));
    }
    eprintln!("{rejected} damaged weights files rejected, the model unchanged");
    // The undamaged file loads, so the rejections above were the damage's doing.
    model.load_weights(&path).unwrap();
    assert_eq!(model.weights().unwrap(), source.weights().unwrap());
}

#[test]
fn checkpoint_weights_of_another_architecture_are_refused_naming_the_layer() {
    let gpu = common::gpu();
    let mut wide = Sequential::new(&[6])
        .with(Dense::new(7).unwrap())
        .with(Dense::new(3).unwrap());
    wide.compile(gpu, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    let dir = TempDir::new("arch");
    let path = dir.0.join("wide.safetensors");
    wide.save_weights(&path).unwrap();
    let mut model = mlp();
    model.compile(gpu, Optimizer::sgd(0.1, 0.0), 2).unwrap();
    let before = model.weights().unwrap();
    assert_eq!(
        model.load_weights(&path).unwrap_err().to_string(),
        format!(
            "{}: tensor \"dense/kernel\" has shape [6, 7], but layer 0 (Dense) expects [6, 5]",
            path.display()
        )
    );
    assert!(model.weights().unwrap() == before);
}

// ---------------------------------------------------------------------------------------------
// ModelCheckpoint(save_best_only)

fn metadata(path: &Path) -> HashMap<String, String> {
    weights::read_metadata_file(path, &WeightsOptions::default()).unwrap()
}

fn fit_opts<'a>(validation: &'a wgnn::data::Dataset, path: &Path, epochs: usize) -> Fit<'a> {
    Fit {
        epochs,
        batch_size: 64,
        validation: Some(validation),
        verbose: false,
        checkpoint: Some(ModelCheckpoint {
            path: path.to_path_buf(),
            monitor: Monitor::ValLoss,
            save_best_only: true,
            include_optimizer: false,
        }),
        ..Fit::default()
    }
}

fn classifier() -> Sequential {
    Sequential::new(&[784])
        .with(Dense::new(32).unwrap().activation(Activation::Relu))
        .with(Dense::new(10).unwrap())
}

#[test]
fn checkpoint_best_value_and_epoch_are_stored_and_a_restarted_run_resumes_the_comparison() {
    let gpu = common::gpu();
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let (train, test) = (train.subset(0..512).unwrap(), test.subset(0..256).unwrap());
    let dir = TempDir::new("best");
    let path = dir.0.join("best.safetensors");

    let mut model = classifier();
    model.compile(gpu, Optimizer::adam(1e-3), 7).unwrap();
    let h = model.fit(&train, &fit_opts(&test, &path, 3)).unwrap();
    let losses: Vec<f64> = h
        .epochs
        .iter()
        .map(|e| e.validation.unwrap().loss)
        .collect();
    let (best_epoch, best) =
        losses.iter().enumerate().fold(
            (0, f64::INFINITY),
            |m, (i, &l)| if l < m.1 { (i + 1, l) } else { m },
        );
    let meta = metadata(&path);
    assert_eq!(meta["monitor"], "val_loss");
    assert_eq!(
        meta["best"].parse::<f64>().unwrap(),
        best,
        "{meta:?} {losses:?}"
    );
    assert_eq!(meta["best_epoch"], best_epoch.to_string());
    let saved = std::fs::read(&path).unwrap();

    // A restarted run whose model is worse (untrained: learning rate 0) must not replace the
    // stored best, though it is the restarted run's own first epoch.
    let mut fresh = classifier();
    fresh.compile(gpu, Optimizer::sgd(0.0, 0.0), 8).unwrap();
    let h = fresh.fit(&train, &fit_opts(&test, &path, 1)).unwrap();
    let worse = h.epochs[0].validation.unwrap().loss;
    assert!(worse > best, "untrained {worse} vs best {best}");
    assert!(
        std::fs::read(&path).unwrap() == saved,
        "the stored best was replaced"
    );

    // A stored best that is not finite is not a best: the next finite epoch replaces it.
    for bad in ["NaN", "inf", "-inf", "not a number"] {
        let mut m = metadata(&path);
        m.insert("best".into(), bad.into());
        let bytes = weights::to_safetensors(&model.weights().unwrap(), Some(m)).unwrap();
        weights::write_atomic(&path, &bytes).unwrap();
        fresh.fit(&train, &fit_opts(&test, &path, 1)).unwrap();
        let m = metadata(&path);
        assert_eq!(m["best_epoch"], "1", "stored best {bad}");
        assert!(
            m["best"].parse::<f64>().unwrap().is_finite(),
            "stored best {bad}"
        );
    }
}

#[test]
fn checkpoint_never_counts_a_nan_metric_as_best() {
    let gpu = common::gpu();
    let (train, test) = wgnn::data::shipped_fashion_mnist().unwrap();
    let (train, test) = (train.subset(0..256).unwrap(), test.subset(0..128).unwrap());
    // BatchNorm with a negative moving variance: training (batch statistics) stays finite,
    // inference (moving statistics) gives NaN, so the validation loss is NaN.
    let mut model = Sequential::new(&[784])
        .with(Dense::new(16).unwrap())
        .with(BatchNorm::new())
        .with(Dense::new(10).unwrap());
    model.compile(gpu, Optimizer::sgd(0.01, 0.0), 3).unwrap();
    let mut w = model.weights().unwrap();
    for t in &mut w {
        if t.name.ends_with("moving_variance") {
            t.data.iter_mut().for_each(|v| *v = -1000.0);
        }
    }
    model
        .load_weights_bytes(
            &weights::to_safetensors(&w, None).unwrap(),
            "negative variance",
        )
        .unwrap();
    let dir = TempDir::new("nan");
    let path = dir.0.join("best.safetensors");
    let h = model.fit(&train, &fit_opts(&test, &path, 2)).unwrap();
    let losses: Vec<f64> = h
        .epochs
        .iter()
        .map(|e| e.validation.unwrap().loss)
        .collect();
    assert!(
        losses.iter().all(|l| l.is_nan()),
        "validation losses {losses:?}"
    );
    assert!(
        !path.exists(),
        "a NaN validation loss was saved as the best"
    );
}
