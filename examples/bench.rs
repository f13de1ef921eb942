//! wgnn's benchmark: matmul and conv2d throughput against the CPU's own sgemm, dropout
//! against a copy kernel, the fused dense layer against its parts, and whole training steps.
//!
//! ```text
//! cargo run --release --example bench              # the table (several minutes on lavapipe)
//! cargo run --release --example bench -- --json    # one {"name", "value", "unit"} per line
//! cargo run --release --example bench -- --quick   # small sizes, under a minute (CI)
//! cargo run --release --example bench -- --soak    # 10,000 MLP steps: memory stays flat
//! ```
//!
//! Kernel times come from GPU timestamps written at the start and end of one compute pass
//! where the adapter has `TIMESTAMP_QUERY`, else from the wall clock around the submission
//! and a blocking wait; each figure is the median of at least 5 runs after a warm-up run, a
//! run recording the kernel as many times as fills about 50 ms. Kernels are recorded with
//! buffers and bind groups made beforehand (`wgnn::testing`), so the eager ops'
//! per-call allocation is not timed. Training steps use the public API only
//! (`Sequential::trainer`, `Trainer::step`).

use std::process::ExitCode;
use std::time::Instant;

use wgnn::data::Dataset;
use wgnn::nn::{Activation, Conv2d, Dense, Dropout, Layer, Optimizer, Sequential};
use wgnn::ops::{DropoutSpec, Padding};
use wgnn::testing::{ConvPass, Timed, matmul_tile_for, uses_timestamps};
use wgnn::{Gpu, Tensor};

/// One figure of the report.
struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    note: String,
}

struct Report {
    json: bool,
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, name: &str, value: f64, unit: &'static str, note: impl Into<String>) {
        let row = Row {
            name: name.into(),
            value,
            unit,
            note: note.into(),
        };
        if self.json {
            println!(
                "{{\"name\":\"{}\",\"value\":{},\"unit\":\"{}\"}}",
                row.name,
                if row.value.is_finite() {
                    format!("{}", row.value)
                } else {
                    "null".into()
                },
                row.unit
            );
        } else {
            println!(
                "| {:<34} | {:>12} | {:<7} | {} |",
                row.name,
                fmt(row.value),
                row.unit,
                row.note
            );
        }
        self.rows.push(row);
    }

    fn text(&self, name: &str, value: &str) {
        if self.json {
            println!(
                "{{\"name\":\"{name}\",\"value\":\"{}\",\"unit\":\"\"}}",
                value.replace('\\', "\\\\").replace('"', "\\\"")
            );
        } else {
            println!("{name}: {value}");
        }
    }
}

fn fmt(v: f64) -> String {
    if v == 0.0 || v.abs() >= 1e5 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Seconds per run of `t`: warm-up, then the median of 5 runs of as many repetitions as
/// fill about `target` seconds.
fn seconds(t: &Timed, target: f64) -> wgnn::Result<f64> {
    t.median(reps_for(t, target)?, 5)
}

/// How many times to record `t` in one pass so that the pass takes about `target` seconds
/// (1 to 64), from one run (which also warms it up).
fn reps_for(t: &Timed, target: f64) -> wgnn::Result<u32> {
    let first = t.time(1)?.max(1e-6);
    Ok((target / first).ceil().clamp(1.0, 64.0) as u32)
}

/// The median of `v` (the upper one of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per run of each of `ts`, measured in turns (one run of each per round, 5 rounds
/// after a warm-up round) so that a change in the machine's load hits them alike.
fn seconds_interleaved(ts: &[&Timed], target: f64) -> wgnn::Result<Vec<f64>> {
    let reps = ts
        .iter()
        .map(|t| reps_for(t, target))
        .collect::<wgnn::Result<Vec<u32>>>()?;
    let mut runs = vec![Vec::new(); ts.len()];
    for _ in 0..5 {
        for (i, t) in ts.iter().enumerate() {
            runs[i].push(t.time(reps[i])?);
        }
    }
    Ok(runs.into_iter().map(median).collect())
}

/// Seconds per run of `t` on the device and of `cpu` on the host, measured in turns (one
/// of each per round, 7 rounds after a warm-up of both), medians: the ratio of the two then
/// compares them under the same load, as the VM's other tenants come and go.
fn seconds_beside_cpu(t: &Timed, target: f64, mut cpu: impl FnMut()) -> wgnn::Result<(f64, f64)> {
    let reps = reps_for(t, target)?;
    cpu();
    let (mut dev, mut host) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        dev.push(t.time(reps)?);
        let s = Instant::now();
        cpu();
        host.push(s.elapsed().as_secs_f64());
    }
    Ok((median(dev), median(host)))
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(gpu: &Gpu, shape: &[usize], seed: u64) -> wgnn::Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_slice(gpu, &rand_vec(n, seed), shape)
}

/// `op(a) op(b)` on the CPU with matrixmultiply (threads: `MATMUL_NUM_THREADS`, by default
/// every core); a transpose is only a pair of strides.
#[allow(clippy::too_many_arguments)]
fn sgemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) {
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the slices hold m*k, k*n and m*n elements, which the strides stay within.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

struct Args {
    json: bool,
    quick: bool,
    soak: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        json: false,
        quick: false,
        soak: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => a.json = true,
            "--quick" => a.quick = true,
            "--soak" => a.soak = true,
            "-h" | "--help" => return Err("usage: bench [--json] [--quick] [--soak]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

/// The 1-minute load average (Linux), so a table shows how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// matmul GFLOP/s of `op(a) op(b)` (`[m, k] x [k, n]`) on the GPU and with the CPU sgemm,
/// and their ratio.
fn matmul_row(
    r: &mut Report,
    gpu: &Gpu,
    name: &str,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    target: f64,
) -> wgnn::Result<()> {
    let sa = if ta { [k, m] } else { [m, k] };
    let sb = if tb { [n, k] } else { [k, n] };
    let av = rand_vec(m * k, 1);
    let bv = rand_vec(k * n, 2);
    let a = Tensor::from_slice(gpu, &av, &sa)?;
    let b = Tensor::from_slice(gpu, &bv, &sb)?;
    let c = Tensor::zeros(gpu, &[m, n])?;
    let timed = Timed::matmul(&a, &b, (ta, tb), None, false, None, &c, None)?;
    let mut cv = vec![0.0f32; m * n];
    let (t, ct) = seconds_beside_cpu(&timed, target, || sgemm(&av, &bv, &mut cv, m, k, n, ta, tb))?;
    let flops = 2.0 * (m * n * k) as f64;
    let g = flops / t / 1e9;
    let tile = matmul_tile_for(gpu, (ta, tb), m, n, k)?;
    let shape = format!(
        "{m}x{k}x{n}{}{}, tile {}x{}{}",
        if ta { " A^T" } else { "" },
        if tb { " B^T" } else { "" },
        tile.tm,
        4 * tile.tn4,
        if tile.subgroup { " subgroup" } else { "" }
    );
    r.add(&format!("matmul_{name}_gflops"), g, "GFLOP/s", shape);
    let cg = flops / ct / 1e9;
    r.add(
        &format!("cpu_sgemm_{name}_gflops"),
        cg,
        "GFLOP/s",
        "matrixmultiply, threading",
    );
    r.add(&format!("matmul_{name}_over_cpu"), g / cg, "ratio", "");
    Ok(())
}

fn conv_rows(
    r: &mut Report,
    gpu: &Gpu,
    layers: &[(&str, [usize; 4], [usize; 4])],
    target: f64,
) -> wgnn::Result<()> {
    let mut total = [(0.0f64, 0.0f64); 3];
    for (name, xs, ks) in layers {
        let (oh, ow) = (xs[1] - ks[0] + 1, xs[2] - ks[1] + 1);
        let ys = [xs[0], oh, ow, ks[3]];
        let x = tensor(gpu, xs, 3)?;
        let w = tensor(gpu, ks, 4)?;
        let y = Tensor::zeros(gpu, &ys)?;
        let dx = Tensor::zeros(gpu, xs)?;
        let dw = Tensor::zeros(gpu, ks)?;
        let flops = 2.0 * (ys.iter().product::<usize>() * ks[0] * ks[1] * ks[2]) as f64;
        let passes = [
            (ConvPass::Forward, &x, &w, &y, "fwd"),
            (ConvPass::BackwardInput, &y, &w, &dx, "bwd_input"),
            (ConvPass::BackwardWeight, &x, &y, &dw, "bwd_weight"),
        ];
        for (i, (pass, a, b, out, label)) in passes.into_iter().enumerate() {
            let t = seconds(
                &Timed::conv2d(pass, a, b, out, xs, ks, 1, Padding::Valid)?,
                target,
            )?;
            total[i].0 += flops;
            total[i].1 += t;
            r.add(
                &format!("{name}_{label}_gflops"),
                flops / t / 1e9,
                "GFLOP/s",
                format!("x {xs:?} kernel {ks:?}"),
            );
        }
    }
    for (i, label) in ["fwd", "bwd_input", "bwd_weight"].iter().enumerate() {
        r.add(
            &format!("conv_{label}_gflops"),
            total[i].0 / total[i].1 / 1e9,
            "GFLOP/s",
            "both seed CNN layers together",
        );
    }
    Ok(())
}

/// `count` images cycled from `base` (so every step of an epoch has the full batch).
fn cycled(base: &Dataset, count: usize) -> Dataset {
    let len = base.image_len();
    let mut images = Vec::with_capacity(count * len);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let j = i % base.count;
        images.extend_from_slice(&base.images[j * len..(j + 1) * len]);
        labels.push(base.labels[j]);
    }
    Dataset {
        images,
        labels,
        count,
        ..base.clone()
    }
}

/// Times training steps: per epoch of `steps` steps, the wall clock from the first step to
/// the GPU going idle; and the host's part, `Trainer::step` called with the queue idle.
/// Reports the median epoch's ms per step and the median host time over it.
fn step_rows(
    r: &mut Report,
    gpu: &Gpu,
    prefix: &str,
    model: &mut Sequential,
    data: &Dataset,
    batch: usize,
    epochs: usize,
) -> wgnn::Result<()> {
    model.compile(gpu, Optimizer::sgd(0.01, 0.9), 7)?;
    let mut t = model.trainer(data, batch)?;
    t.shuffle = false;
    let steps = t.steps_per_epoch();
    let idle = |gpu: &Gpu| {
        let _ = gpu.device().poll(wgnn::wgpu::PollType::wait_indefinitely());
    };
    // Warm-up epoch: compiles every pipeline, makes every buffer.
    t.begin_epoch();
    t.step()?;
    idle(gpu);
    let after_first = gpu.counters();
    for _ in 1..steps {
        t.step()?;
    }
    t.end_epoch(0)?;
    // Host cost: Trainer::step with the queue idle, so that it measures encoding and
    // submitting only (lavapipe's submit waits while an earlier submission still runs, so
    // inside a back-to-back loop it would include device time).
    let mut host = Vec::new();
    t.begin_epoch();
    for _ in 0..steps {
        idle(gpu);
        let h = Instant::now();
        t.step()?;
        host.push(h.elapsed().as_secs_f64());
    }
    idle(gpu);
    t.end_epoch(1)?;
    let host = median(host);
    // Step time: whole epochs back to back, from the first step to the GPU going idle.
    let mut samples = Vec::new();
    for e in 0..epochs.max(5) {
        t.begin_epoch();
        idle(gpu);
        let start = Instant::now();
        for _ in 0..steps {
            t.step()?;
        }
        idle(gpu);
        samples.push(start.elapsed().as_secs_f64() / steps as f64);
        t.end_epoch(e + 2)?;
    }
    let after = gpu.counters();
    let runs = samples.len();
    let step = median(samples);
    let share = host / step;
    let note = format!("batch {batch}, {steps} steps per run, median of {runs}");
    r.add(&format!("{prefix}_step_ms"), step * 1e3, "ms", note);
    r.add(
        &format!("{prefix}_host_share"),
        share,
        "ratio",
        "Trainer::step with the queue idle (encode + submit) / step time",
    );
    r.add(
        &format!("{prefix}_buffers_created_after_first_step"),
        (after.buffers_created - after_first.buffers_created) as f64,
        "count",
        "",
    );
    r.add(
        &format!("{prefix}_device_bytes"),
        after.device_bytes as f64,
        "bytes",
        "data set, weights, optimizer state, activations",
    );
    Ok(())
}

/// Times `on` (gradient checks on) and `off` (checks off) in alternation, one epoch of
/// `data` each per pair; returns the median ms per step of each and the median over pairs
/// of on / off - 1.
fn check_cost(
    gpu: &Gpu,
    on: &mut Sequential,
    off: &mut Sequential,
    data: &Dataset,
    batch: usize,
    pairs: usize,
) -> wgnn::Result<(f64, f64, f64)> {
    on.compile(gpu, Optimizer::sgd(0.01, 0.9), 7)?;
    off.compile(gpu, Optimizer::sgd(0.01, 0.9), 7)?;
    off.set_finite_checks(false)?;
    let mut ton = on.trainer(data, batch)?;
    let mut toff = off.trainer(data, batch)?;
    ton.shuffle = false;
    toff.shuffle = false;
    let idle = |gpu: &Gpu| {
        let _ = gpu.device().poll(wgnn::wgpu::PollType::wait_indefinitely());
    };
    let epoch = |t: &mut wgnn::nn::Trainer<'_>, e: usize| -> wgnn::Result<f64> {
        t.begin_epoch();
        idle(gpu);
        let start = Instant::now();
        let steps = t.steps_per_epoch();
        for _ in 0..steps {
            t.step()?;
        }
        idle(gpu);
        let ms = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
        t.end_epoch(e)?;
        Ok(ms)
    };
    // Warm-up: every pipeline and buffer made.
    epoch(&mut ton, 0)?;
    epoch(&mut toff, 0)?;
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for e in 1..=pairs {
        // Alternate which goes first, so neither always follows the other.
        let (x, y) = if e % 2 == 0 {
            let x = epoch(&mut ton, e)?;
            (x, epoch(&mut toff, e)?)
        } else {
            let y = epoch(&mut toff, e)?;
            (epoch(&mut ton, e)?, y)
        };
        a.push(x);
        b.push(y);
        ratio.push(x / y - 1.0);
    }
    Ok((median(a), median(b), median(ratio)))
}

/// The main demo's MLP 784-256-256-10 with dropout `p1` and `p2` after the hidden layers.
fn mlp(p1: f32, p2: f32) -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[784])
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(p1)?)
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(p2)?)
        .with(Dense::new(10)?))
}

/// Resident set size in bytes (Linux), from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// `--soak`: the main demo's MLP for 10,000 steps (300 with `--quick`) at batch 256 on the
/// shipped subset, with a progress readback every 50 steps, an evaluation at each epoch's end
/// and a checkpoint every 1,000 steps; prints device bytes, RSS, wgpu's live objects and the
/// median step time of the last 1,000 steps at steps 1,000, 5,000 and 10,000.
fn soak(quick: bool) -> wgnn::Result<()> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.info());
    let (train, test) = wgnn::data::shipped_fashion_mnist()?;
    let mut model = mlp(0.2, 0.5)?;
    model.compile(&gpu, Optimizer::adam(1e-3), 42)?;
    let dir = std::env::temp_dir().join(format!("wgnn-bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| wgnn::Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let total = if quick { 300 } else { 10_000 };
    let marks: Vec<usize> = if quick {
        vec![100, 200, 300]
    } else {
        vec![1_000, 5_000, 10_000]
    };
    let mut t = model.trainer(&train, 256)?;
    let (mut step, mut epoch) = (0usize, 0usize);
    let mut times = Vec::new();
    println!(
        "| step | device bytes | RSS (KiB) | buffers | bind groups | command buffers | median step (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut last = Instant::now();
    while step < total {
        t.begin_epoch();
        epoch += 1;
        for _ in 0..t.steps_per_epoch() {
            t.step()?;
            step += 1;
            let now = Instant::now();
            times.push(now.duration_since(last).as_secs_f64());
            last = now;
            if step % 50 == 0 {
                t.progress()?;
            }
            if step % 1000 == 0 {
                t.model().save_weights(dir.join("soak.safetensors"))?;
            }
            if marks.contains(&step) {
                let window = times.len().min(1000);
                let step_median = median(times[times.len() - window..].to_vec());
                let o = gpu.object_counts();
                let c = gpu.counters();
                println!(
                    "| {step} | {} | {} | {} | {} | {} | {:.2} |",
                    c.device_bytes,
                    rss() / 1024,
                    o.map_or(0, |o| o.buffers),
                    o.map_or(0, |o| o.bind_groups),
                    o.map_or(0, |o| o.command_buffers),
                    step_median * 1e3
                );
            }
            if step == total {
                break;
            }
        }
        t.end_epoch(epoch)?;
        t.model().evaluate(&test, 256)?;
        last = Instant::now();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn run() -> wgnn::Result<()> {
    let a = args().map_err(|m| wgnn::Error::Argument {
        op: "bench",
        msg: m,
    })?;
    if a.soak {
        return soak(a.quick);
    }
    let gpu = Gpu::new()?;
    let mut r = Report {
        json: a.json,
        rows: Vec::new(),
    };
    let info = gpu.info();
    r.text("adapter", &info.name);
    r.text("backend", &format!("{:?}", info.backend));
    r.text("driver", &info.driver);
    r.text("commit", &commit());
    r.text(
        "clock",
        if uses_timestamps(&gpu) {
            "GPU timestamps at compute-pass boundaries"
        } else {
            "wall clock around submit + blocking wait"
        },
    );
    r.text("mode", if a.quick { "quick" } else { "full" });
    if !a.json {
        println!();
        println!(
            "| {:<34} | {:>12} | {:<7} | note |",
            "name", "value", "unit"
        );
        println!("|{:-<36}|{:->14}|{:-<9}|------|", "", "", "");
    }
    let target = if a.quick { 0.01 } else { 0.05 };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    r.add(
        "cpu_threads",
        cores as f64,
        "count",
        "available to this process",
    );
    if let Some(l) = load_average() {
        r.add(
            "load_average_start",
            l,
            "procs",
            "1-minute, before the first kernel",
        );
    }

    // Matmul: squares, then the MLP's three products (forward, weight and input gradients).
    let sizes: &[usize] = if a.quick {
        &[128, 256]
    } else {
        &[256, 512, 1024, 2048]
    };
    for &s in sizes {
        matmul_row(
            &mut r,
            &gpu,
            &s.to_string(),
            (s, s, s),
            (false, false),
            target,
        )?;
    }
    let b = if a.quick { 64 } else { 256 };
    for (name, mkn, trans) in [
        ("mlp_fwd", (b, 784, 256), (false, false)),
        ("mlp_dw", (784, b, 256), (true, false)),
        ("mlp_dx", (b, 256, 784), (false, true)),
    ] {
        matmul_row(&mut r, &gpu, name, mkn, trans, target)?;
    }

    // Bandwidth: copy, dropout forward and backward over 16M f32 (8 bytes moved each).
    let len = if a.quick { 1 << 20 } else { 16 << 20 };
    let x = tensor(&gpu, &[len], 5)?;
    let y = Tensor::zeros(&gpu, &[len])?;
    let spec = DropoutSpec {
        rate: 0.5,
        seed: 42,
        offset: 1,
    };
    let bytes = 8.0 * len as f64;
    let t = seconds_interleaved(
        &[
            &Timed::copy(&x, &y)?,
            &Timed::dropout(&x, &y, spec, false)?,
            &Timed::dropout(&x, &y, spec, true)?,
        ],
        target,
    )?;
    let (copy, fwd, bwd) = (bytes / t[0] / 1e9, bytes / t[1] / 1e9, bytes / t[2] / 1e9);
    let n = format!("{len} f32, 8 bytes moved per element");
    r.add("copy_gbps", copy, "GB/s", n.clone());
    r.add("dropout_fwd_gbps", fwd, "GB/s", n.clone());
    r.add("dropout_bwd_gbps", bwd, "GB/s", n);
    r.add("dropout_fwd_over_copy", fwd / copy, "ratio", "");
    r.add("dropout_bwd_over_copy", bwd / copy, "ratio", "");
    drop((x, y));

    // The dense layer dropout(relu(x W + b)) of the MLP: fused, bare matmul, four kernels.
    let (m, k, n) = (b, 784, 256);
    let xt = tensor(&gpu, &[m, k], 6)?;
    let wt = tensor(&gpu, &[k, n], 7)?;
    let bt = tensor(&gpu, &[n], 8)?;
    let z = Tensor::zeros(&gpu, &[m, n])?;
    let z2 = Tensor::zeros(&gpu, &[m, n])?;
    let yt = Tensor::zeros(&gpu, &[m, n])?;
    let fused = Timed::matmul(
        &xt,
        &wt,
        (false, false),
        Some(&bt),
        true,
        Some(spec),
        &yt,
        None,
    )?;
    let bare = Timed::matmul(&xt, &wt, (false, false), None, false, None, &yt, None)?;
    let unfused = Timed::matmul(&xt, &wt, (false, false), None, false, None, &z, None)?
        .then(Timed::bias_add(&z, &bt, &z2)?)
        .then(Timed::relu(&z2, &z)?)
        .then(Timed::dropout(&z, &yt, spec, false)?);
    let t = seconds_interleaved(&[&fused, &bare, &unfused], target)?;
    let (tf, tb, tu) = (t[0], t[1], t[2]);
    let shape = format!("{m}x{k}x{n}, dropout 0.5");
    r.add("dense_fused_ms", tf * 1e3, "ms", shape.clone());
    r.add("dense_matmul_ms", tb * 1e3, "ms", shape.clone());
    r.add(
        "dense_unfused_ms",
        tu * 1e3,
        "ms",
        "matmul, bias_add, relu, dropout",
    );
    r.add(
        "dense_fused_over_matmul",
        tf / tb,
        "ratio",
        "time, lower is better",
    );
    r.add(
        "dense_fused_over_unfused",
        tf / tu,
        "ratio",
        "time, lower is better",
    );

    // Conv2d: the seed CNN's layers.
    let nb = if a.quick { 8 } else { 64 };
    conv_rows(
        &mut r,
        &gpu,
        &[
            ("conv1", [nb, 28, 28, 1], [3, 3, 1, 32]),
            ("conv2", [nb, 26, 26, 32], [3, 3, 32, 32]),
        ],
        target,
    )?;

    // Training steps through the public API.
    let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    let mlp_batch = if a.quick { 64 } else { 256 };
    let steps = if a.quick { 2 } else { 8 };
    step_rows(
        &mut r,
        &gpu,
        "mlp",
        &mut mlp(0.5, 0.5)?,
        &cycled(&train, mlp_batch * steps),
        mlp_batch,
        5,
    )?;
    // The cost of checking every gradient for non-finite values before the updates: two
    // copies of the MLP, one with the checks and one without, timed in alternation so
    // that load drifts hit both alike; the median of the per-pair ratios.
    let data = cycled(&train, mlp_batch * steps);
    let (mut on, mut off) = (mlp(0.5, 0.5)?, mlp(0.5, 0.5)?);
    let pairs = if a.quick { 3 } else { 41 };
    let (on_ms, off_ms, cost) = check_cost(&gpu, &mut on, &mut off, &data, mlp_batch, pairs)?;
    let note = format!("batch {mlp_batch}, median of {pairs} alternating runs");
    r.add("mlp_check_step_ms", on_ms, "ms", note.clone());
    r.add("mlp_nocheck_step_ms", off_ms, "ms", note);
    r.add(
        "nan_check_cost",
        cost,
        "ratio",
        "median over pairs of (step with the gradient checks / without) - 1",
    );
    let device_bytes = r
        .rows
        .iter()
        .find(|row| row.name == "mlp_device_bytes")
        .map_or(f64::NAN, |row| row.value);
    r.add(
        "device_bytes",
        device_bytes,
        "bytes",
        "the MLP's, as mlp_device_bytes",
    );
    r.add(
        "mask_bytes",
        0.0,
        "bytes",
        "by construction: keep bits are Philox(seed, offset, index), recomputed in backward",
    );
    let cnn_batch = if a.quick { 8 } else { 64 };
    let mut cnn = Sequential::new(&[28, 28, 1])
        .with(Conv2d::new(32, [3, 3])?.activation(Activation::Relu))
        .with(Dropout::new(0.2)?)
        .with(Conv2d::new(32, [3, 3])?.activation(Activation::Relu))
        .with(Layer::Flatten)
        .with(Dense::new(300)?.activation(Activation::Relu))
        .with(Dense::new(300)?.activation(Activation::Relu))
        .with(Dense::new(10)?);
    step_rows(
        &mut r,
        &gpu,
        "cnn",
        &mut cnn,
        &cycled(&train, cnn_batch * steps),
        cnn_batch,
        5,
    )?;
    if let Some(l) = load_average() {
        r.add(
            "load_average_end",
            l,
            "procs",
            "1-minute, after the last step",
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
