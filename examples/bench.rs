//! wgnn's benchmark: matmul and conv2d throughput against the CPU's own sgemm, dropout
//! against a copy kernel, the fused dense layer against its parts, and whole training steps.
//!
//! ```text
//! cargo run --release --example bench              # the table (several minutes on lavapipe)
//! cargo run --release --example bench -- --json    # one {"name", "value", "unit"} per line
//! cargo run --release --example bench -- --quick   # small sizes, under a minute (CI)
//! cargo run --release --example bench -- --soak    # 10,000 MLP steps: memory stays flat
//! cargo run --release --example bench -- --json --gpu-sizes  # sizes for a real GPU
//! ```
//!
//! `--gpu-sizes` (scripts/gpu-bench.sh) sizes the run for a real GPU: matmul 1024 to 4096
//! (each variant timed on its own too: `matmul_{size}_{variant}_gflops`), dropout over 256M
//! f32, the MLP step at batch 256 and 4096 (`mlp_large_*`), and ends with one `target_*` row
//! per target of issue 17 (`"target"`, `"met"`), the matmul peak fraction against
//! `WGNN_BENCH_F32_PEAK` FLOP/s (default 67e12, an H100/H200 SXM). With `--quick` the same
//! rows at the quick sizes (to try the flow on a software adapter).
//!
//! Kernel times come from GPU timestamps written at the start and end of one compute pass
//! where the adapter has `TIMESTAMP_QUERY`, else from the wall clock around the submission
//! and a blocking wait; each figure is the median of at least 5 runs after a warm-up run, a
//! run recording the kernel as many times as fills about 50 ms. Kernels are recorded with
//! buffers and bind groups made beforehand (`wgnn::testing`), so the eager ops'
//! per-call costs are not timed there; `eager_dropout_over_kernel` times them: a chain of
//! eager `ops::dropout` calls (wall clock) over the bare kernel of the same size. Training steps use the public API only
//! (`Sequential::trainer`, `Trainer::step`).
//!
//! Every timed kernel is checked once per run, after its timing: matmul against the CPU
//! sgemm of the same run, conv2d against `wgnn::reference` (f64), dropout against
//! `wgnn::philox::keep` (bit-exact), the fused dense layer against the host and the unfused
//! kernels; each check prints its worst error (`*_max_rel_err`, with `"tol"` and `"pass"`),
//! and the run exits 1 when one fails. Timings run inside a validation error scope, so an
//! invalid dispatch fails the run too. `WGNN_BENCH_SABOTAGE=matmul` (or `conv`, `dropout`,
//! `dropout_bwd`, `dense`, `mc`, `validation`; a comma-separated list) breaks that kernel on
//! purpose to show it.
//!
//! The CPU side is matrixmultiply with `threading`: a pool of at most 4 threads
//! (`MATMUL_NUM_THREADS`, else the physical cores), of which a call uses 1, 2 or 4 by size;
//! the JSON names both (`cpu_sgemm_pool_threads`, `cpu_sgemm_*_threads`) and gives each
//! ratio per thread too. Each ratio's `"clock"` names how each side was read: GPU
//! timestamps (repetitions in one pass) or wall clock (one submission, submit + wait; one
//! sgemm call).

use std::process::ExitCode;
use std::time::Instant;

use wgnn::data::Dataset;
use wgnn::nn::{Activation, Conv2d, Dense, Dropout, Layer, Optimizer, Sequential};
use wgnn::ops::{DropoutSpec, Padding};
use wgnn::testing::{
    BufferRole, ConvPass, RoleBytes, Timed, matmul_tile_for, overwrite, sabotaged, uses_timestamps,
};
use wgnn::{Gpu, Tensor, philox};

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
    /// The checks that failed, as messages for stderr; the run exits non-zero if any did.
    failures: Vec<String>,
}

/// A JSON number, or `null` where it is not finite.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Report {
    fn add(&mut self, name: &str, value: f64, unit: &'static str, note: impl Into<String>) {
        self.add_with(name, value, unit, note, &[]);
    }

    /// A figure with extra JSON fields (`"clock"`, `"tol"`, `"pass"`), each value already
    /// JSON.
    fn add_with(
        &mut self,
        name: &str,
        value: f64,
        unit: &'static str,
        note: impl Into<String>,
        extra: &[(&str, String)],
    ) {
        let row = Row {
            name: name.into(),
            value,
            unit,
            note: note.into(),
        };
        if self.json {
            let mut fields = String::new();
            for (k, v) in extra {
                fields.push_str(&format!(",\"{k}\":{v}"));
            }
            println!(
                "{{\"name\":\"{}\",\"value\":{},\"unit\":\"{}\"{fields}}}",
                row.name,
                num(row.value),
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

    /// A ratio and the clock each side of it was read with (named in the JSON as `"clock"`).
    fn ratio(&mut self, name: &str, value: f64, clock: &str, note: &str) {
        let note = if note.is_empty() {
            format!("clock: {clock}")
        } else {
            format!("{note}; clock: {clock}")
        };
        self.add_with(name, value, "ratio", note, &[("clock", quoted(clock))]);
    }

    /// The outcome of checking a timed kernel's result: `err` is its worst error, which
    /// passes when `err <= tol` (a NaN fails). Printed as `{"name", "value": err, "unit":
    /// "ratio", "tol", "pass"}`; a failure is remembered for the exit status.
    fn check(&mut self, name: &str, err: f64, tol: f64, what: &str) {
        let pass = err <= tol;
        self.add_with(
            name,
            err,
            "ratio",
            format!(
                "{what}; tolerance {tol:.3e}, {}",
                if pass { "pass" } else { "FAIL" }
            ),
            &[("tol", num(tol)), ("pass", pass.to_string())],
        );
        if !pass {
            self.failures
                .push(format!("{name}: {err:e} over tolerance {tol:e} ({what})"));
        }
    }

    fn text(&self, name: &str, value: &str) {
        if self.json {
            println!(
                "{{\"name\":\"{name}\",\"value\":{},\"unit\":\"\"}}",
                quoted(value)
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

/// Seconds per kernel of `t` on the device (its clock: GPU timestamps over up to 64
/// repetitions in one pass where the adapter has them), seconds a caller waits for one
/// submission of it (wall clock, submit + wait) and seconds per call of `cpu` on the host
/// (wall clock), measured in turns (one of each per round, 7 rounds after a warm-up of
/// all), medians: the ratios then compare them under the same load, as the VM's other
/// tenants come and go.
struct BesideCpu {
    gpu: f64,
    gpu_wall: f64,
    cpu: f64,
}

fn seconds_beside_cpu(t: &Timed, target: f64, mut cpu: impl FnMut()) -> wgnn::Result<BesideCpu> {
    let reps = reps_for(t, target)?;
    t.wall_once()?;
    cpu();
    let (mut dev, mut wall, mut host) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        dev.push(t.time(reps)?);
        wall.push(t.wall_once()?);
        let s = Instant::now();
        cpu();
        host.push(s.elapsed().as_secs_f64());
    }
    Ok(BesideCpu {
        gpu: median(dev),
        gpu_wall: median(wall),
        cpu: median(host),
    })
}

/// The worst error of `got` against `want`, each element's difference over its `scale`
/// (the quantity the rounding error bound is proportional to); a NaN or an unwritten
/// element (the outputs start as NaN) gives infinity.
fn worst_err(got: &[f32], want: impl Fn(usize) -> f64, scale: impl Fn(usize) -> f64) -> f64 {
    let mut worst = 0.0f64;
    for (i, &g) in got.iter().enumerate() {
        let d = (f64::from(g) - want(i)).abs();
        if d.is_nan() {
            return f64::INFINITY;
        }
        if d > 0.0 {
            worst = worst.max(d / scale(i).max(f64::MIN_POSITIVE));
        }
    }
    worst
}

/// The GPU result of `t`, after breaking element 0 on the device first when
/// `WGNN_BENCH_SABOTAGE` names `what` (so the check that follows must fail).
fn result_of(t: &Tensor, what: &str) -> wgnn::Result<Vec<f32>> {
    if sabotaged(what) {
        overwrite(t, 0, 12345.0)?;
    }
    t.to_vec()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
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

/// The threads matrixmultiply's pool has (`threading` feature): `MATMUL_NUM_THREADS` when
/// set, else the physical cores as num_cpus counts them (the "cpu cores" of each "physical
/// id" in /proc/cpuinfo, or every CPU this process may use where those are missing), capped
/// at its maximum of 4; and where that number came from.
fn sgemm_pool_threads() -> (usize, String) {
    if let Some(v) = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let n = v.parse::<usize>().unwrap_or(1);
        return (
            n.clamp(1, 4),
            format!("MATMUL_NUM_THREADS={v}, capped at 4"),
        );
    }
    let mut cores = std::collections::HashMap::new();
    let mut phys = None;
    for line in std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
    {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => phys = v.parse::<u32>().ok(),
            (Some("cpu cores"), Some(v)) => {
                if let (Some(p), Ok(c)) = (phys, v.parse::<usize>()) {
                    cores.insert(p, c);
                }
            }
            _ => {}
        }
    }
    let physical: usize = cores.values().sum();
    let (n, from) = if physical > 0 {
        (physical, "physical cores")
    } else {
        (
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            "available parallelism",
        )
    };
    (n.clamp(1, 4), format!("{n} {from}, capped at 4"))
}

/// The threads one matrixmultiply sgemm of `[m, k] x [k, n]` runs on, given its pool's
/// `pool` threads: its heuristic (0.3.11, `LoopThreadConfig::new_impl`) allows one thread
/// per 16,384 elements of `m*k + k*n`, splits the m loop in two when m >= 96 (3 * MC / 2,
/// MC = 64 for f32) and the n loop in two when two threads remain: 1, 2 or 4.
fn sgemm_call_threads(pool: usize, m: usize, k: usize, n: usize) -> usize {
    if pool <= 1 {
        return 1;
    }
    let mut max = pool.min((m * k + k * n) / (1 << 14));
    let loop3 = if max >= 2 && m >= 96 {
        max /= 2;
        2
    } else {
        1
    };
    let loop2 = if max >= 2 { 2 } else { 1 };
    loop3 * loop2
}

/// `op(a) op(b)` on the CPU with matrixmultiply (threads: see [`sgemm_pool_threads`] and
/// [`sgemm_call_threads`]); a transpose is only a pair of strides.
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
    /// `--gpu-sizes`: the sizes and rows for a real GPU.
    gpu_sizes: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        json: false,
        quick: false,
        soak: false,
        gpu_sizes: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => a.json = true,
            "--quick" => a.quick = true,
            "--soak" => a.soak = true,
            "--gpu-sizes" => a.gpu_sizes = true,
            "-h" | "--help" => {
                return Err("usage: bench [--json] [--quick] [--soak] [--gpu-sizes]\n\
                    \n\
                    The CPU baseline is matrixmultiply's sgemm with threading: at most 4 threads\n\
                    (MATMUL_NUM_THREADS, else the physical cores), 1, 2 or 4 per call by size,\n\
                    printed as cpu_sgemm_pool_threads and cpu_sgemm_*_threads. GPU figures use\n\
                    GPU timestamps where the adapter has them; *_wall_* figures and ratios use the\n\
                    wall clock of one submission (submit + wait). Every timed kernel is checked\n\
                    against its reference; a failed check exits 1. WGNN_BENCH_SABOTAGE=matmul\n\
                    (conv, dropout, dropout_bwd, dense, validation) breaks one on purpose.\n\
                    --gpu-sizes: matmul 1024-4096 (every variant too), dropout over 256M f32,\n\
                    the MLP step at batch 256 and 4096, and the issue's targets (target_* rows;\n\
                    f32 peak from WGNN_BENCH_F32_PEAK, FLOP/s, default 67e12)."
                    .into());
            }
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
/// their ratios, and the GPU result checked against the sgemm's of the same run.
///
/// Tolerance: each f32 dot product of length k carries a rounding error of at most about
/// k * u * sum_k |a||b| (u = 2^-24) whatever the summation order, so the GPU's and the
/// sgemm's results differ by at most 2 * k * u = k * f32::EPSILON times sum_k |a||b|; the
/// error reported is the worst |gpu - sgemm| / sum_k |a||b| (the sum from an sgemm of
/// |a| and |b|), held to k * f32::EPSILON (2.4e-4 at k = 2048).
#[allow(clippy::too_many_arguments)]
fn matmul_row(
    r: &mut Report,
    gpu: &Gpu,
    name: &str,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    target: f64,
    pool: usize,
) -> wgnn::Result<()> {
    let sa = if ta { [k, m] } else { [m, k] };
    let sb = if tb { [n, k] } else { [k, n] };
    let av = rand_vec(m * k, 1);
    let bv = rand_vec(k * n, 2);
    let a = Tensor::from_slice(gpu, &av, &sa)?;
    let b = Tensor::from_slice(gpu, &bv, &sb)?;
    // NaN first, so an element the kernel never writes fails the check.
    let c = Tensor::from_slice(gpu, &vec![f32::NAN; m * n], &[m, n])?;
    let mut timed = Timed::matmul(&a, &b, (ta, tb), None, false, None, &c, None)?;
    if sabotaged("validation") && !r.rows.iter().any(|row| row.name.starts_with("matmul_")) {
        timed = timed.with_invalid_dispatch();
    }
    let mut cv = vec![0.0f32; m * n];
    let t = seconds_beside_cpu(&timed, target, || sgemm(&av, &bv, &mut cv, m, k, n, ta, tb))?;
    let flops = 2.0 * (m * n * k) as f64;
    let g = flops / t.gpu / 1e9;
    let tile = matmul_tile_for(gpu, (ta, tb), m, n, k)?;
    let shape = format!(
        "{m}x{k}x{n}{}{}, tile {}x{}{}{}",
        if ta { " A^T" } else { "" },
        if tb { " B^T" } else { "" },
        tile.tm,
        4 * tile.tn4,
        if tile.subgroup { " subgroup" } else { "" },
        if tile.wg > 0 {
            format!(" staged, {0}x{0} workgroup", tile.wg)
        } else {
            String::new()
        }
    );
    let clock = if uses_timestamps(gpu) {
        "gpu_timestamps"
    } else {
        "wall"
    };
    r.add_with(
        &format!("matmul_{name}_gflops"),
        g,
        "GFLOP/s",
        format!("{shape}; clock: {clock}"),
        &[("clock", quoted(clock))],
    );
    let gw = flops / t.gpu_wall / 1e9;
    r.add_with(
        &format!("matmul_{name}_wall_gflops"),
        gw,
        "GFLOP/s",
        "one kernel per submission, submit + wait; clock: wall",
        &[("clock", quoted("wall"))],
    );
    let threads = sgemm_call_threads(pool, m, k, n);
    let cg = flops / t.cpu / 1e9;
    r.add_with(
        &format!("cpu_sgemm_{name}_gflops"),
        cg,
        "GFLOP/s",
        format!("matrixmultiply on {threads} thread(s), one call; clock: wall"),
        &[("clock", quoted("wall"))],
    );
    r.add(
        &format!("cpu_sgemm_{name}_threads"),
        threads as f64,
        "count",
        format!("threads matrixmultiply's heuristic gives {m}x{k}x{n} from a pool of {pool}"),
    );
    r.ratio(
        &format!("matmul_{name}_over_cpu"),
        g / cg,
        &format!("gpu: {clock}; cpu: wall"),
        "",
    );
    r.ratio(
        &format!("matmul_{name}_over_cpu_per_thread"),
        g / (cg / threads as f64),
        &format!("gpu: {clock}; cpu: wall"),
        "GPU against one sgemm thread's share",
    );
    r.ratio(
        &format!("matmul_{name}_over_cpu_wall"),
        gw / cg,
        "gpu: wall; cpu: wall",
        "what a caller waits on each side",
    );
    // The check, outside the timed region: against the sgemm of this run.
    let got = result_of(&c, "matmul")?;
    let mut scale = vec![0.0f32; m * n];
    sgemm(&abs(&av), &abs(&bv), &mut scale, m, k, n, ta, tb);
    let err = worst_err(&got, |i| f64::from(cv[i]), |i| f64::from(scale[i]));
    r.check(
        &format!("matmul_{name}_max_rel_err"),
        err,
        k as f64 * f64::from(f32::EPSILON),
        "|gpu - sgemm| / sum|a||b| over every element; tolerance k * eps",
    );
    Ok(())
}

/// `--gpu-sizes`: every matmul variant the adapter has, on its own, at each square size
/// (timed in turns, so a change in load hits them alike): `matmul_{size}_{variant}_gflops`,
/// and `matmul_{size}_best_gflops`, the fastest. Each variant's result is checked against
/// the first's, bit for bit (`matmul_{size}_variants_differ`: the elements that differ).
fn matmul_variant_rows(
    r: &mut Report,
    gpu: &Gpu,
    sizes: &[usize],
    target: f64,
) -> wgnn::Result<()> {
    let tiles = wgnn::testing::matmul_tiles(gpu)?;
    for &s in sizes {
        let a = Tensor::from_slice(gpu, &rand_vec(s * s, 1), &[s, s])?;
        let b = Tensor::from_slice(gpu, &rand_vec(s * s, 2), &[s, s])?;
        let mut outs = Vec::new();
        let mut timed = Vec::new();
        for &tile in &tiles {
            let c = Tensor::from_slice(gpu, &vec![f32::NAN; s * s], &[s, s])?;
            timed.push(Timed::matmul(
                &a,
                &b,
                (false, false),
                None,
                false,
                None,
                &c,
                Some(tile),
            )?);
            outs.push(c);
        }
        let refs: Vec<&Timed> = timed.iter().collect();
        let t = seconds_interleaved(&refs, target)?;
        let flops = 2.0 * (s * s * s) as f64;
        let mut best = 0.0f64;
        for (tile, secs) in tiles.iter().zip(&t) {
            let g = flops / secs / 1e9;
            best = best.max(g);
            r.add(
                &format!("matmul_{s}_{}_gflops", variant_name(tile)),
                g,
                "GFLOP/s",
                format!("{tile:?}"),
            );
        }
        r.add(
            &format!("matmul_{s}_best_gflops"),
            best,
            "GFLOP/s",
            "the fastest variant",
        );
        let first: Vec<u32> = outs[0].to_vec()?.iter().map(|v| v.to_bits()).collect();
        let mut differ = 0usize;
        for c in &outs[1..] {
            let got = c.to_vec()?;
            differ += got
                .iter()
                .zip(&first)
                .filter(|(g, w)| g.to_bits() != **w)
                .count();
        }
        r.check(
            &format!("matmul_{s}_variants_differ"),
            differ as f64,
            0.0,
            "elements of each variant's result not bit-equal to the first variant's",
        );
    }
    Ok(())
}

/// A variant's short name: `sg32x8`, `plain8x8`, `wg16_8x8` (staged, 16 x 16 invocations).
fn variant_name(t: &wgnn::testing::MatmulTile) -> String {
    let shape = format!("{}x{}", t.tm, 4 * t.tn4);
    if t.wg > 0 {
        format!("wg{}_{shape}", t.wg)
    } else if t.subgroup {
        format!("sg{shape}")
    } else {
        format!("plain{shape}")
    }
}

/// `--gpu-sizes`: issue 17's targets on a real GPU, one `target_*` row each with the figure,
/// `"target"` and `"met"` (computed from the rows already reported; a missing row gives
/// null and not met). The matmul one is the best variant at `largest`^3 over the f32 peak
/// in `WGNN_BENCH_F32_PEAK` (FLOP/s; default 67e12, an H100/H200 SXM's vector f32).
fn target_rows(r: &mut Report, largest: usize) {
    let value = |r: &Report, name: &str| {
        r.rows
            .iter()
            .find(|row| row.name == name)
            .map_or(f64::NAN, |row| row.value)
    };
    let peak = std::env::var("WGNN_BENCH_F32_PEAK")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(67e12);
    let best = value(r, &format!("matmul_{largest}_best_gflops")) * 1e9;
    let step = value(r, "mlp_step_ms");
    let share = value(r, "mlp_host_share");
    let rows = [
        (
            "target_matmul_peak_fraction",
            best / peak,
            ">= 0.25",
            best / peak >= 0.25,
            format!("best variant at {largest}^3 over an f32 peak of {peak:e} FLOP/s"),
        ),
        (
            "target_dropout_over_copy",
            value(r, "dropout_fwd_over_copy"),
            ">= 0.85",
            value(r, "dropout_fwd_over_copy") >= 0.85,
            "dropout forward GB/s over the copy's, same run".into(),
        ),
        (
            "target_dense_fused_over_matmul",
            value(r, "dense_fused_over_matmul"),
            "<= 1.05",
            value(r, "dense_fused_over_matmul") <= 1.05,
            "fused dense layer time over its bare matmul".into(),
        ),
        (
            "target_mlp_step_ms",
            step,
            "< 0.5",
            step < 0.5,
            "MLP step at batch 256".into(),
        ),
        (
            "target_mlp_host_share",
            share,
            "< 0.2",
            share < 0.2,
            "host share of the MLP step at batch 256".into(),
        ),
    ];
    for (name, v, want, met, note) in rows {
        let unit = if name.ends_with("_ms") { "ms" } else { "ratio" };
        r.add_with(
            name,
            v,
            unit,
            format!(
                "{note}; target {want}: {}",
                if met { "met" } else { "NOT met" }
            ),
            &[("target", quoted(want)), ("met", met.to_string())],
        );
    }
}

/// The f64 reference of one convolution pass and the sum of the absolute values of its
/// terms (the reference of |a| and |b|), computed on two threads.
fn conv_reference(
    pass: ConvPass,
    a: &[f32],
    b: &[f32],
    xs: [usize; 4],
    ks: [usize; 4],
) -> (Vec<f64>, Vec<f64>) {
    use wgnn::reference::{conv2d, conv2d_backward_input, conv2d_backward_weight};
    let run = |a: &[f32], b: &[f32]| match pass {
        ConvPass::Forward => conv2d(a, xs, b, ks, 1, Padding::Valid),
        ConvPass::BackwardInput => conv2d_backward_input(a, b, xs, ks, 1, Padding::Valid),
        ConvPass::BackwardWeight => conv2d_backward_weight(a, b, xs, ks, 1, Padding::Valid),
    };
    let (aa, ab) = (abs(a), abs(b));
    std::thread::scope(|s| {
        let scale = s.spawn(|| run(&aa, &ab));
        let want = run(a, b);
        (want, scale.join().expect("reference thread"))
    })
}

/// Conv2d GFLOP/s of the seed CNN's layers, each pass checked against `wgnn::reference`
/// (f64) after it is timed. Tolerance: an f32 sum of K terms (K = kh*kw*cin forward,
/// kh*kw*cout for the input gradient, n*oh*ow for the weight gradient) is within about
/// K * u * sum|terms| of the exact one (u = 2^-24); the error reported is the worst
/// |gpu - f64| / sum|terms|, held to K * f32::EPSILON (twice that bound).
fn conv_rows(
    r: &mut Report,
    gpu: &Gpu,
    layers: &[(&str, [usize; 4], [usize; 4])],
    target: f64,
) -> wgnn::Result<()> {
    let mut total = [(0.0f64, 0.0f64); 3];
    for (li, (name, xs, ks)) in layers.iter().enumerate() {
        let (oh, ow) = (xs[1] - ks[0] + 1, xs[2] - ks[1] + 1);
        let ys = [xs[0], oh, ow, ks[3]];
        let xv = rand_vec(xs.iter().product(), 3);
        let wv = rand_vec(ks.iter().product(), 4);
        let x = Tensor::from_slice(gpu, &xv, xs)?;
        let w = Tensor::from_slice(gpu, &wv, ks)?;
        let nan = |shape: &[usize]| {
            Tensor::from_slice(gpu, &vec![f32::NAN; shape.iter().product()], shape)
        };
        let y = nan(&ys)?;
        let dx = nan(xs)?;
        let dw = nan(ks)?;
        let flops = 2.0 * (ys.iter().product::<usize>() * ks[0] * ks[1] * ks[2]) as f64;
        let passes = [
            (ConvPass::Forward, &x, &w, &y, "fwd", ks[0] * ks[1] * ks[2]),
            (
                ConvPass::BackwardInput,
                &y,
                &w,
                &dx,
                "bwd_input",
                ks[0] * ks[1] * ks[3],
            ),
            (
                ConvPass::BackwardWeight,
                &x,
                &y,
                &dw,
                "bwd_weight",
                xs[0] * oh * ow,
            ),
        ];
        // The forward's output, read back once it is checked: the gradients' dy.
        let mut yv = Vec::new();
        for (i, (pass, a, b, out, label, terms)) in passes.into_iter().enumerate() {
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
            // The check, outside the timed region. Sabotage breaks the first layer's
            // forward only, so the gradients still get a sound dy.
            let broken = if li == 0 && pass == ConvPass::Forward {
                "conv"
            } else {
                ""
            };
            let got = result_of(out, broken)?;
            let (av, bv): (&[f32], &[f32]) = match pass {
                ConvPass::Forward => (&xv, &wv),
                ConvPass::BackwardInput => (&yv, &wv),
                ConvPass::BackwardWeight => (&xv, &yv),
            };
            let (want, scale) = conv_reference(pass, av, bv, *xs, *ks);
            let err = worst_err(&got, |i| want[i], |i| scale[i]);
            r.check(
                &format!("{name}_{label}_max_rel_err"),
                err,
                terms as f64 * f64::from(f32::EPSILON),
                &format!("|gpu - f64 reference| / sum|terms|, K = {terms}; tolerance K * eps"),
            );
            if pass == ConvPass::Forward {
                yv = y.to_vec()?;
            }
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

/// The dropout spec every timed dropout uses.
const SPEC: DropoutSpec = DropoutSpec {
    rate: 0.5,
    seed: 42,
    offset: 1,
};

/// The dropout of `x[i]` as `wgnn::philox::keep` decides it: `x * scale` or 0, in f32.
fn dropped(x: f32, i: usize, spec: DropoutSpec) -> f32 {
    if philox::keep(spec.seed, spec.offset, i as u64, spec.rate) {
        x * philox::scale(spec.rate)
    } else {
        0.0
    }
}

/// Copy, dropout forward and backward over `len` f32, in turns, each into its own output;
/// then each checked: the copy is exact, and dropout's sampled elements (the first and last
/// 4,096 and every 13th) are bit-exact `wgnn::philox::keep` masks times the scale.
fn dropout_rows(r: &mut Report, gpu: &Gpu, len: usize, target: f64) -> wgnn::Result<()> {
    let xv = rand_vec(len, 5);
    let x = Tensor::from_slice(gpu, &xv, &[len])?;
    let nan = || Tensor::from_slice(gpu, &vec![f32::NAN; len], &[len]);
    let (yc, yf, yb) = (nan()?, nan()?, nan()?);
    let bytes = 8.0 * len as f64;
    let t = seconds_interleaved(
        &[
            &Timed::copy(&x, &yc)?,
            &Timed::dropout(&x, &yf, SPEC, false)?,
            &Timed::dropout(&x, &yb, SPEC, true)?,
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
    // The checks, outside the timed region.
    let got = yc.to_vec()?;
    let err = worst_err(&got, |i| f64::from(xv[i]), |i| f64::from(xv[i].abs()));
    r.check("copy_max_rel_err", err, 0.0, "every element equals x");
    let sample: Vec<usize> = (0..len)
        .filter(|&i| i < 4096 || i >= len.saturating_sub(4096) || i % 13 == 0)
        .collect();
    for (y, label, what) in [(&yf, "fwd", "dropout"), (&yb, "bwd", "dropout_bwd")] {
        let got = result_of(y, what)?;
        let mismatches = sample
            .iter()
            .filter(|&&i| got[i].to_bits() != dropped(xv[i], i, SPEC).to_bits())
            .count();
        r.check(
            &format!("dropout_{label}_mask_mismatches"),
            mismatches as f64,
            0.0,
            &format!(
                "of {} sampled elements, those not bit-exact philox::keep(seed, offset, i, p) \
                 ? x * scale : 0",
                sample.len()
            ),
        );
        let err = sample
            .iter()
            .map(|&i| {
                let want = f64::from(dropped(xv[i], i, SPEC));
                let d = (f64::from(got[i]) - want).abs();
                if d.is_nan() {
                    f64::INFINITY
                } else if d == 0.0 {
                    0.0
                } else {
                    d / want.abs().max(f64::MIN_POSITIVE)
                }
            })
            .fold(0.0, f64::max);
        r.check(
            &format!("dropout_{label}_max_rel_err"),
            err,
            0.0,
            "sampled elements against x * scale where kept; exact",
        );
    }
    Ok(())
}

/// Blocks until `gpu` has run everything submitted so far.
fn wait_for(gpu: &Gpu) -> wgnn::Result<()> {
    gpu.device()
        .poll(wgnn::wgpu::PollType::wait_indefinitely())
        .map_err(|e| wgnn::Error::Gpu {
            op: "bench",
            msg: e.to_string(),
        })?;
    Ok(())
}

/// What an eager call costs beyond its kernel: a chain of `chain` eager `ops::dropout` calls
/// over `len` f32, each taking the last one's output (an application's loop; wall clock from
/// the first call to the end of a blocking wait, per call), against the bare dropout kernel
/// of the same size recorded `chain` times in one pass with buffers and bind group made
/// beforehand ([`Timed::dropout`]; its clock as for every kernel). Timed in turns (one chain
/// and one kernel run per round, 5 rounds after a warm-up round); the ratio of the medians.
/// The chain's result is then checked bit for bit on a sample against the host's `chain`
/// dropouts in f32 (`philox::keep`, link `k` at offset `SPEC.offset + k`).
fn eager_rows(r: &mut Report, gpu: &Gpu, len: usize, chain: usize) -> wgnn::Result<()> {
    let xv = rand_vec(len, 9);
    let x = Tensor::from_slice(gpu, &xv, &[len])?;
    let y = Tensor::from_slice(gpu, &vec![f32::NAN; len], &[len])?;
    let kernel = Timed::dropout(&x, &y, SPEC, false)?;
    let link = |k: usize| DropoutSpec {
        offset: SPEC.offset + k as u64,
        ..SPEC
    };
    let run_chain = || -> wgnn::Result<(f64, Tensor)> {
        let start = Instant::now();
        let mut y = x.clone();
        for k in 0..chain {
            let s = link(k);
            y = wgnn::ops::dropout(&y, s.rate, s.seed, s.offset)?;
        }
        wait_for(gpu)?;
        Ok((start.elapsed().as_secs_f64() / chain as f64, y))
    };
    let (_, mut out) = run_chain()?;
    kernel.time(chain as u32)?;
    let (mut eager, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        drop(out);
        let (s, y) = run_chain()?;
        out = y;
        eager.push(s);
        bare.push(kernel.time(chain as u32)?);
    }
    let (eager, bare) = (median(eager), median(bare));
    let note = format!("{len} f32, a chain of {chain} calls, median of 5");
    r.add(
        "eager_dropout_ms",
        eager * 1e3,
        "ms",
        format!("per call; {note}"),
    );
    r.add(
        "dropout_kernel_ms",
        bare * 1e3,
        "ms",
        format!("per kernel; {note}"),
    );
    let clock = if uses_timestamps(gpu) {
        "eager: wall clock (calls + blocking wait); kernel: GPU timestamps"
    } else {
        "eager: wall clock (calls + blocking wait); kernel: wall clock (submit + wait)"
    };
    r.ratio(
        "eager_dropout_over_kernel",
        eager / bare,
        clock,
        "eager ops::dropout per call over the bare kernel, same size, in turns",
    );
    let got = result_of(&out, "eager dropout chain")?;
    let mismatches = (0..len)
        .filter(|&i| i < 4096 || i >= len.saturating_sub(4096) || i % 13 == 0)
        .filter(|&i| {
            let want = (0..chain).fold(xv[i], |v, k| dropped(v, i, link(k)));
            got[i].to_bits() != want.to_bits()
        })
        .count();
    r.check(
        "eager_dropout_mismatches",
        mismatches as f64,
        0.0,
        "sampled elements of the chain's result not bit-exact against the host's chain",
    );
    Ok(())
}

/// The dense layer `dropout(relu(x W + b))` of `[m, k] x [k, n]`: fused, the bare matmul and
/// the four separate kernels, timed in turns into outputs of their own; then the fused and
/// the unfused results checked against the host's (matrixmultiply's `x W`, plus `b`, relu,
/// `philox::keep` mask) and against each other, and the bare matmul against the sgemm.
/// Tolerance as for matmul, over `scale * (sum|x||w| + |b|)`: (k + 1) * eps.
fn dense_rows(
    r: &mut Report,
    gpu: &Gpu,
    (m, k, n): (usize, usize, usize),
    target: f64,
) -> wgnn::Result<()> {
    let (xv, wv, bv) = (rand_vec(m * k, 6), rand_vec(k * n, 7), rand_vec(n, 8));
    let xt = Tensor::from_slice(gpu, &xv, &[m, k])?;
    let wt = Tensor::from_slice(gpu, &wv, &[k, n])?;
    let bt = Tensor::from_slice(gpu, &bv, &[n])?;
    let nan = || Tensor::from_slice(gpu, &vec![f32::NAN; m * n], &[m, n]);
    let (z, z2) = (nan()?, nan()?);
    let (yf, yb, yu) = (nan()?, nan()?, nan()?);
    let fused = Timed::matmul(
        &xt,
        &wt,
        (false, false),
        Some(&bt),
        true,
        Some(SPEC),
        &yf,
        None,
    )?;
    let bare = Timed::matmul(&xt, &wt, (false, false), None, false, None, &yb, None)?;
    let unfused = Timed::matmul(&xt, &wt, (false, false), None, false, None, &z, None)?
        .then(Timed::bias_add(&z, &bt, &z2)?)
        .then(Timed::relu(&z2, &z)?)
        .then(Timed::dropout(&z, &yu, SPEC, false)?);
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
    // The checks, outside the timed region.
    let mut prod = vec![0.0f32; m * n];
    sgemm(&xv, &wv, &mut prod, m, k, n, false, false);
    let mut sum_abs = vec![0.0f32; m * n];
    sgemm(&abs(&xv), &abs(&wv), &mut sum_abs, m, k, n, false, false);
    let tol = (k + 1) as f64 * f64::from(f32::EPSILON);
    let s = f64::from(philox::scale(SPEC.rate));
    let scale = |i: usize| s * (f64::from(sum_abs[i]) + f64::from(bv[i % n].abs()));
    let host = |i: usize| f64::from(dropped((prod[i] + bv[i % n]).max(0.0), i, SPEC));
    let f = result_of(&yf, "dense")?;
    let u = yu.to_vec()?;
    let what = "|gpu - host| / (scale * (sum|x||w| + |b|)); tolerance (k + 1) * eps";
    r.check(
        "dense_fused_max_rel_err",
        worst_err(&f, host, scale),
        tol,
        what,
    );
    r.check(
        "dense_unfused_max_rel_err",
        worst_err(&u, host, scale),
        tol,
        what,
    );
    r.check(
        "dense_fused_vs_unfused_max_rel_err",
        worst_err(&f, |i| f64::from(u[i]), scale),
        2.0 * tol,
        "|fused - unfused| / (scale * (sum|x||w| + |b|)); tolerance 2 (k + 1) * eps",
    );
    let got = yb.to_vec()?;
    r.check(
        "dense_matmul_max_rel_err",
        worst_err(&got, |i| f64::from(prod[i]), |i| f64::from(sum_abs[i])),
        k as f64 * f64::from(f32::EPSILON),
        "|gpu - sgemm| / sum|x||w|; tolerance k * eps",
    );
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
    // Every epoch runs inside an error scope: an invalid step is an error, not a fast one.
    let scoped = |f: &mut dyn FnMut() -> wgnn::Result<()>| wgnn::testing::scoped(gpu, "bench", f);
    // Warm-up epoch: compiles every pipeline, makes every buffer.
    t.begin_epoch();
    let mut after_first = gpu.counters();
    scoped(&mut || {
        t.step()?;
        idle(gpu);
        after_first = gpu.counters();
        for _ in 1..steps {
            t.step()?;
        }
        Ok(())
    })?;
    let (loss, _) = t.end_epoch(0)?;
    // The first end_epoch makes the readback staging buffers (one per size, pooled by Gpu);
    // from here on every epoch, its readbacks included, must create nothing.
    let after_first_epoch = gpu.counters();
    // Host cost: Trainer::step with the queue idle, so that it measures encoding and
    // submitting only (lavapipe's submit waits while an earlier submission still runs, so
    // inside a back-to-back loop it would include device time).
    let mut host = Vec::new();
    t.begin_epoch();
    scoped(&mut || {
        for _ in 0..steps {
            idle(gpu);
            let h = Instant::now();
            t.step()?;
            host.push(h.elapsed().as_secs_f64());
        }
        idle(gpu);
        Ok(())
    })?;
    t.end_epoch(1)?;
    let host = median(host);
    // Step time: whole epochs back to back, from the first step to the GPU going idle.
    let mut samples = Vec::new();
    let mut last_loss = loss;
    for e in 0..epochs.max(5) {
        t.begin_epoch();
        scoped(&mut || {
            idle(gpu);
            let start = Instant::now();
            for _ in 0..steps {
                t.step()?;
            }
            idle(gpu);
            samples.push(start.elapsed().as_secs_f64() / steps as f64);
            Ok(())
        })?;
        last_loss = t.end_epoch(e + 2)?.0;
    }
    let after = gpu.counters();
    let roles = t.role_bytes();
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
        (after_first_epoch.buffers_created - after_first.buffers_created) as f64,
        "count",
        "in the rest of the first epoch and its end_epoch (the readbacks' staging buffers)",
    );
    r.add(
        &format!("{prefix}_objects_created_after_first_epoch"),
        (after.buffers_created - after_first_epoch.buffers_created + after.bind_groups_created
            - after_first_epoch.bind_groups_created) as f64,
        "count",
        "buffers and bind groups in every later epoch, steps and readbacks included",
    );
    r.add(
        &format!("{prefix}_device_bytes"),
        after.device_bytes as f64,
        "bytes",
        "wgnn's counter of live storage buffers (ExecStats::device_bytes)",
    );
    role_rows(r, prefix, &roles, after.device_bytes);
    // The step's result checked: the loss stays finite (a step that computed garbage would
    // show as NaN here; the non-finite checks stop earlier ones with an error).
    r.check(
        &format!("{prefix}_loss_nonfinite"),
        if last_loss.is_finite() { 0.0 } else { 1.0 },
        0.0,
        &format!("1 if the last epoch's loss ({last_loss}) is not finite"),
    );
    Ok(())
}

/// Bytes per buffer role of a training session (`{prefix}_bytes_{role}`), and the check that
/// the roles `ExecStats::device_bytes` counts sum to it (nothing else is alive on the `Gpu`
/// when this runs): `{prefix}_bytes_unaccounted` must be 0.
fn role_rows(r: &mut Report, prefix: &str, roles: &RoleBytes, device_bytes: u64) {
    for role in BufferRole::ALL {
        let note = format!(
            "{} buffer(s){}",
            roles.buffers(role),
            if role.in_device_bytes() {
                ""
            } else {
                ", not in device_bytes"
            }
        );
        r.add(
            &format!("{prefix}_bytes_{}", role.name()),
            roles.bytes(role) as f64,
            "bytes",
            note,
        );
    }
    let unaccounted = device_bytes.abs_diff(roles.device_bytes());
    r.check(
        &format!("{prefix}_bytes_unaccounted"),
        unaccounted as f64,
        0.0,
        "|device_bytes - sum of the roles it counts|",
    );
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
        let steps = t.steps_per_epoch();
        // In an error scope: an invalid step is an error, not a fast one.
        let ms = wgnn::testing::scoped(gpu, "bench", || {
            idle(gpu);
            let start = Instant::now();
            for _ in 0..steps {
                t.step()?;
            }
            idle(gpu);
            Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
        })?;
        let (loss, _) = t.end_epoch(e)?;
        if !loss.is_finite() {
            return Err(wgnn::Error::Argument {
                op: "bench",
                msg: format!("the gradient-check model's loss is {loss} at epoch {e}"),
            });
        }
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

/// Monte-Carlo dropout against batching: `samples` samples of a `batch` batch through
/// `predict_mc` (one submission) against one forward pass of the `samples * batch` batch made
/// of the same inputs (`predict` with that batch per submission), the demo MLP; each a whole
/// call (upload, run, readback), wall clock, median of 5 in turns after a warm-up. Then
/// checked: sample 0 equals the hand pass through the ops bit for bit, and the batched
/// forward's rows equal `predict`'s.
fn mc_rows(r: &mut Report, gpu: &Gpu, batch: usize, samples: usize) -> wgnn::Result<()> {
    let mut model = mlp(0.2, 0.5)?;
    model.compile(gpu, Optimizer::adam(1e-3), 42)?;
    let x: Vec<f32> = rand_vec(batch * 784, 31).iter().map(|v| v.abs()).collect();
    let big: Vec<f32> = x.repeat(samples);
    let seed = 5;
    let mc_call = || model.predict_mc(&x, samples, seed);
    let fwd_call = || model.predict_batched(&big, samples * batch);
    // Warm-up: plans made, matmul shapes tuned.
    let mc = mc_call()?;
    let fwd = fwd_call()?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    wgnn::testing::scoped(gpu, "bench", || {
        for _ in 0..5 {
            let s = Instant::now();
            mc_call()?;
            a.push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            fwd_call()?;
            b.push(s.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    let (mc_s, fwd_s) = (median(a), median(b));
    let note = format!("{samples} x batch {batch}, median of 5 calls in turns");
    r.add("mc32_ms", mc_s * 1e3, "ms", note.clone());
    r.add("batched_forward_ms", fwd_s * 1e3, "ms", note);
    r.ratio(
        "mc32_over_batched_forward",
        mc_s / fwd_s,
        "wall: both",
        &format!(
            "predict_mc, {samples} samples of a {batch} batch / one forward of {samples}x{batch} \
             (predict_batched), each call with upload and readback"
        ),
    );
    // Checks: sample 0 by hand through the ops, bit for bit; the batched rows as predict's.
    let w = model.weights()?;
    let t = |i: usize| Tensor::from_slice(gpu, &w[i].data, &w[i].shape);
    let xt = Tensor::from_slice(gpu, &x, &[batch, 784])?;
    let h = wgnn::ops::dense(&xt, &t(0)?, Some(&t(1)?), true, None)?;
    let h = wgnn::ops::dropout(&h, 0.2, seed, philox::mc_offset(1, 0))?;
    let h = wgnn::ops::dense(&h, &t(2)?, Some(&t(3)?), true, None)?;
    let h = wgnn::ops::dropout(&h, 0.5, seed, philox::mc_offset(3, 0))?;
    let logits = wgnn::ops::dense(&h, &t(4)?, Some(&t(5)?), false, None)?;
    let want = wgnn::ops::softmax(&logits)?.to_vec()?;
    let mut got = mc.sample(0).unwrap_or_default().to_vec();
    if sabotaged("mc") {
        got[0] += 1.0;
    }
    let off = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count()
        + got.len().abs_diff(want.len());
    r.check(
        "mc32_sample_mismatches",
        off as f64,
        0.0,
        "elements of predict_mc's sample 0 not bit-equal to dense/dropout/softmax by hand",
    );
    let plain = model.predict(&x)?;
    let off = fwd
        .chunks(plain.len())
        .flat_map(|c| c.iter().zip(&plain))
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count()
        + (fwd.len()).abs_diff(plain.len() * samples);
    r.check(
        "batched_forward_mismatches",
        off as f64,
        0.0,
        "logits of the batched forward not bit-equal to predict's of the same inputs",
    );
    Ok(())
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

/// Runs the bench; returns the checks that failed.
fn run() -> wgnn::Result<Vec<String>> {
    let a = args().map_err(|m| wgnn::Error::Argument {
        op: "bench",
        msg: m,
    })?;
    if a.soak {
        return soak(a.quick).map(|()| Vec::new());
    }
    let gpu = Gpu::new()?;
    let mut r = Report {
        json: a.json,
        rows: Vec::new(),
        failures: Vec::new(),
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
    let (pool, pool_from) = sgemm_pool_threads();
    r.add(
        "cpu_sgemm_pool_threads",
        pool as f64,
        "count",
        format!("matrixmultiply's pool: {pool_from}; each call uses 1, 2 or 4 of them"),
    );
    r.text("cpu_sgemm_threads_from", &pool_from);
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
    } else if a.gpu_sizes {
        &[1024, 2048, 4096]
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
            pool,
        )?;
    }
    let b = if a.quick { 64 } else { 256 };
    for (name, mkn, trans) in [
        ("mlp_fwd", (b, 784, 256), (false, false)),
        ("mlp_dw", (784, b, 256), (true, false)),
        ("mlp_dx", (b, 256, 784), (false, true)),
    ] {
        matmul_row(&mut r, &gpu, name, mkn, trans, target, pool)?;
    }

    // Bandwidth: copy, dropout forward and backward over 16M f32 (8 bytes moved each).
    let len = if a.quick {
        1 << 20
    } else if a.gpu_sizes {
        256 << 20
    } else {
        16 << 20
    };
    dropout_rows(&mut r, &gpu, len, target)?;

    // Eager ops::dropout in a chain against its bare kernel, same size (4M f32: a chain of 10
    // takes about a second a round on lavapipe).
    let eager_len = if a.quick { 1 << 20 } else { 4 << 20 };
    eager_rows(&mut r, &gpu, eager_len, 10)?;

    // The dense layer dropout(relu(x W + b)) of the MLP: fused, bare matmul, four kernels.
    dense_rows(&mut r, &gpu, (b, 784, 256), target)?;
    if a.gpu_sizes {
        matmul_variant_rows(&mut r, &gpu, sizes, target)?;
    }

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
    if a.gpu_sizes {
        let large = if a.quick { 256 } else { 4096 };
        step_rows(
            &mut r,
            &gpu,
            "mlp_large",
            &mut mlp(0.5, 0.5)?,
            &cycled(&train, large * steps),
            large,
            5,
        )?;
    }
    // The cost of checking every gradient for non-finite values before the updates: two
    // copies of the MLP, one with the checks and one without, timed in alternation so
    // that load drifts hit both alike; the median of the per-pair ratios.
    let data = cycled(&train, mlp_batch * steps);
    let pairs = if a.quick { 3 } else { 41 };
    // The two models are dropped at once, so the CNN's device bytes are its own.
    let (on_ms, off_ms, cost) = check_cost(
        &gpu,
        &mut mlp(0.5, 0.5)?,
        &mut mlp(0.5, 0.5)?,
        &data,
        mlp_batch,
        pairs,
    )?;
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
    let mask_bytes = r
        .rows
        .iter()
        .find(|row| row.name == "mlp_bytes_mask")
        .map_or(f64::NAN, |row| row.value);
    r.add(
        "mask_bytes",
        mask_bytes,
        "bytes",
        "the MLP's buffers whose role is a stored mask (mlp_bytes_mask): keep bits are \
         Philox(seed, offset, index), recomputed in backward",
    );
    // Monte-Carlo dropout: 32 samples of a batch in one call against one forward pass of
    // the 32 times larger batch.
    mc_rows(&mut r, &gpu, if a.quick { 32 } else { 256 }, 32)?;
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
    if a.gpu_sizes {
        target_rows(&mut r, sizes[sizes.len() - 1]);
    }
    let failed = r.failures.len();
    r.add(
        "checks_failed",
        failed as f64,
        "count",
        "timed results off their reference (the exit status is 1 when any)",
    );
    Ok(r.failures)
}

fn main() -> ExitCode {
    match run() {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            for f in &failures {
                eprintln!("bench: check failed: {f}");
            }
            eprintln!("bench: {} check(s) failed", failures.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
