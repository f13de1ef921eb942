//! The matmul autotuner: times every register-tile variant of a shape on the device (on a
//! CPU adapter, every unstaged one: `Matmul::tune_tiles`) and keeps the fastest
//! (`kernels::matmul` holds the variants, the static choice and the choices made; this
//! module submits, waits and reads the clock, which kernels never do).
//!
//! Two ways to time, one rule to choose ([`conclude`]):
//! - [`matmul_tile`], for the blocking forms (natively): the wall clock around each run and
//!   a blocking wait. In a browser nothing may block, so there it only reads what is chosen.
//! - [`tune_async`], for the async forms (`trainer_async`, `evaluate_async`,
//!   `predict_async`) natively and in a browser: GPU timestamps written at each run's pass
//!   boundaries, all variants in one submission, read back by a future that never blocks.
//!   An adapter without `TIMESTAMP_QUERY` keeps the static choice.
//!
//! Settings, read once per `Gpu`: `WGNN_AUTOTUNE=0` keeps the static choice;
//! `WGNN_TUNE_CACHE=FILE` also keeps the choices on disk for later runs. Every variant gives
//! the same bits (tests/dense.rs), so a choice changes speed only, never a result.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::Ordering;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

use crate::kernels::matmul::{
    Epilogue, Matmul, MatmulParams, MatmulTile, TuneKey, TuneRecord, TuneSettings,
};
use crate::kernels::{uniform, zero_status, zero_step};
use crate::{Error, Gpu, Result, Tensor};

/// Shapes up to this many multiply-adds are timed; larger ones take the static choice (at
/// about 50 GFLOP/s on lavapipe, timing 2^32 costs a few seconds once).
const TUNE_MAX_MACS: u64 = 1 << 32;
/// Nor are shapes whose three scratch matrices would take more than this.
const TUNE_MAX_BYTES: u64 = 256 << 20;
/// Timed runs per variant (after one warm-up); the median counts.
const TUNE_RUNS: usize = 3;
/// The call every error of the autotuner names.
const OP: &str = "matmul autotune";

/// The autotuner's settings on `gpu`, read from the environment the first time, when the
/// choices in `WGNN_TUNE_CACHE` (if set) are loaded into `kern`.
pub(crate) fn settings<'a>(gpu: &Gpu, kern: &'a Matmul) -> &'a TuneSettings {
    kern.tune_settings.get_or_init(|| {
        let disk = std::env::var_os("WGNN_TUNE_CACHE").map(std::path::PathBuf::from);
        if let Some(path) = &disk {
            for (key, tile) in load_tuning(path, &tune_id(gpu), kern.tiles()) {
                kern.remember(key, tile);
            }
        }
        TuneSettings {
            autotune: std::env::var("WGNN_AUTOTUNE").map_or(true, |v| v != "0"),
            disk,
        }
    })
}

/// The variant for an eager product with no variant given, or a plan made by an async
/// form: the autotuner's choice when it has timed the shape (in this process or, through
/// `WGNN_TUNE_CACHE`, an earlier one), else the static choice. Times nothing.
pub(crate) fn matmul_pick(
    gpu: &Gpu,
    kern: &Matmul,
    trans: (bool, bool),
    (m, n, k): (u32, u32, u32),
) -> MatmulTile {
    settings(gpu, kern);
    kern.pick(trans, m, n, k)
}

/// Whether the shape `key` is to be timed: tuning is on, the adapter has two variants or
/// more, nothing is chosen for it yet, and it is small enough to time cheaply.
fn worth_timing(settings: &TuneSettings, kern: &Matmul, key: TuneKey) -> bool {
    let (_, _, m, n, k) = key;
    let (m, n, k) = (u64::from(m), u64::from(n), u64::from(k));
    let macs = m.saturating_mul(n).saturating_mul(k);
    let bytes = (m * k)
        .saturating_add(k * n)
        .saturating_add(m * n)
        .saturating_mul(4);
    settings.autotune
        && kern.tune_tiles().len() >= 2
        && kern.tuned(key).is_none()
        && macs <= TUNE_MAX_MACS
        && bytes <= TUNE_MAX_BYTES
}

/// The variant for `op(a) op(b)` of `[m, k] x [k, n]` on `gpu`, for a blocking form:
/// natively, times every variant on scratch matrices of this shape by the wall clock (once
/// per shape and adapter, in memory and in `WGNN_TUNE_CACHE` if set) and keeps the fastest.
/// Shapes too large to time cheaply, `WGNN_AUTOTUNE=0`, or any failure while timing leave
/// the static choice; only a lost device is an error. In a browser, where nothing may block
/// (and `Instant` does not exist), it times nothing: what [`tune_async`] chose, else the
/// static choice.
pub(crate) fn matmul_tile(
    gpu: &Gpu,
    trans: (bool, bool),
    (m, n, k): (u32, u32, u32),
) -> Result<MatmulTile> {
    let kern = Matmul::get(gpu)?;
    let settings = settings(gpu, kern);
    let key = (trans.0, trans.1, m, n, k);
    if cfg!(target_arch = "wasm32") || !worth_timing(settings, kern, key) {
        return Ok(kern.pick(trans, m, n, k));
    }
    // Timed with `wait_idle`: on a Gpu other threads use at the same time, their work
    // is timed too, which can only make the choice worse, never a result different.
    #[cfg(not(target_arch = "wasm32"))]
    let timed = time_by_clock(gpu, kern, trans, (m, n, k));
    #[cfg(target_arch = "wasm32")]
    let timed = Err(Error::internal(OP, "no clock in a browser"));
    conclude(gpu, kern, settings, key, timed, false)
}

/// Times, without blocking, every shape in `keys` that is worth it (see [`matmul_tile`])
/// from GPU timestamps: one submission per shape holding every variant's warm-up and timed
/// runs, each run a compute pass with timestamps at its start and end, read back by a
/// future that never waits (natively it polls the device; in a browser the page's event
/// loop maps the buffer). An adapter without `TIMESTAMP_QUERY` times nothing and keeps the
/// static choice. Only a lost device is an error.
pub(crate) async fn tune_async(gpu: &Gpu, keys: &[TuneKey]) -> Result<()> {
    let kern = Matmul::get(gpu)?;
    let settings = settings(gpu, kern);
    if !gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for &key in keys {
        if !seen.insert(key) || !worth_timing(settings, kern, key) {
            continue;
        }
        let (ta, tb, m, n, k) = key;
        let timed = time_by_timestamps(gpu, kern, (ta, tb), (m, n, k)).await;
        conclude(gpu, kern, settings, key, timed, true)?;
    }
    Ok(())
}

/// Keeps the choice for `key` from the medians `timed`: the static choice unless another
/// variant's median is strictly smaller (then the smallest, the first of equal ones). A
/// failure to time (other than a lost device, which is returned), or medians all zero (a
/// clock too coarse to tell), keeps the static choice, remembered so that the shape is not
/// tried again. Counts the shape, logs it and, when `WGNN_TUNE_CACHE` is set, stores it.
fn conclude(
    gpu: &Gpu,
    kern: &Matmul,
    settings: &TuneSettings,
    key: TuneKey,
    timed: Result<Vec<(MatmulTile, f64)>>,
    timestamps: bool,
) -> Result<MatmulTile> {
    let (_, _, m, n, _) = key;
    let fallback = kern.choose(m, n);
    let medians = match timed {
        Ok(t) if t.iter().any(|&(_, s)| s > 0.0) => t,
        Err(e @ Error::DeviceLost { .. }) => return Err(e),
        Ok(_) | Err(_) => return Ok(kern.remember(key, fallback)),
    };
    let base = medians
        .iter()
        .find(|(t, _)| *t == fallback)
        .map_or(f64::INFINITY, |&(_, s)| s);
    let mut best = (base, fallback);
    for &(tile, s) in &medians {
        if s < best.0 {
            best = (s, tile);
        }
    }
    let best = best.1;
    // The first choice stored wins (`Matmul::remember`).
    let chosen = kern.remember(key, best);
    if chosen != best {
        return Ok(chosen);
    }
    let counters = &gpu.inner.counters;
    let counter = if timestamps {
        &counters.tuned_by_timestamps
    } else {
        &counters.tuned_by_clock
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut log) = kern.tune_log.lock() {
        log.push(TuneRecord {
            key,
            timestamps,
            medians,
            static_choice: fallback,
            chosen,
        });
    }
    if let Some(path) = &settings.disk {
        save_tuning(path, &tune_id(gpu), key, best);
    }
    Ok(chosen)
}

/// Zero matrices of a product's shape (`a` also bound as the unused bias) and their bind
/// group, for timing.
struct Scratch {
    _a: Tensor,
    _b: Tensor,
    _c: Tensor,
    io: wgpu::BindGroup,
}

impl Scratch {
    fn new(gpu: &Gpu, kern: &Matmul, (m, n, k): (u32, u32, u32)) -> Result<Scratch> {
        let (mu, nu, ku) = (m as usize, n as usize, k as usize);
        let a = Tensor::zeros(gpu, &[mu, ku])?;
        let b = Tensor::zeros(gpu, &[ku, nu])?;
        let c = Tensor::zeros(gpu, &[mu, nu])?;
        let params = uniform(gpu, OP, &MatmulParams::new(m, n, k, Epilogue::default()));
        let io = kern.family.bind(
            gpu,
            &[
                &params,
                zero_step(gpu),
                a.buffer(),
                b.buffer(),
                a.buffer(),
                c.buffer(),
                zero_status(gpu),
            ],
        );
        Ok(Scratch {
            _a: a,
            _b: b,
            _c: c,
            io,
        })
    }
}

/// The median of `times`, which is not empty.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Each variant's median seconds by the wall clock: one warm-up and [`TUNE_RUNS`] timed
/// runs each, a blocking wait after every run, on zero matrices.
#[cfg(not(target_arch = "wasm32"))]
fn time_by_clock(
    gpu: &Gpu,
    kern: &Matmul,
    trans: (bool, bool),
    mnk: (u32, u32, u32),
) -> Result<Vec<(MatmulTile, f64)>> {
    let s = Scratch::new(gpu, kern, mnk)?;
    let mut out = Vec::new();
    for tile in kern.tune_tiles() {
        kern.prepare_tile(gpu, trans, mnk, tile)?;
        let mut times = Vec::with_capacity(TUNE_RUNS);
        for run_index in 0..=TUNE_RUNS {
            let start = Instant::now();
            let mut recorded = Ok(());
            gpu.submit_pass(OP, |pass| {
                recorded = kern.record_tile(gpu, pass, &s.io, trans, mnk, tile);
            })?;
            recorded?;
            gpu.wait_idle(OP)?;
            if run_index > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        out.push((tile, median(times)));
    }
    Ok(out)
}

/// Each variant's median seconds from GPU timestamps: every variant's warm-up and
/// [`TUNE_RUNS`] timed runs in one submission, each run a compute pass of its own with
/// timestamps at its start and end; the resolved timestamps are read back without blocking.
async fn time_by_timestamps(
    gpu: &Gpu,
    kern: &Matmul,
    trans: (bool, bool),
    mnk: (u32, u32, u32),
) -> Result<Vec<(MatmulTile, f64)>> {
    let tiles = kern.tune_tiles();
    let s = Scratch::new(gpu, kern, mnk)?;
    for &tile in &tiles {
        kern.prepare_tile(gpu, trans, mnk, tile)?;
    }
    let count = (tiles.len() * TUNE_RUNS * 2) as u32;
    let bytes = u64::from(count) * 8;
    gpu.check_alive(OP)?;
    let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
        label: Some(OP),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolve = gpu.counted_buffer(&wgpu::BufferDescriptor {
        label: Some("wgnn autotune timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut recorded = Ok(());
    gpu.scoped(OP, || {
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(OP) });
        for (v, &tile) in tiles.iter().enumerate() {
            for run in 0..=TUNE_RUNS {
                // Run 0 warms up, untimed; run r > 0 writes queries 2q and 2q + 1.
                let writes = (run > 0).then(|| {
                    let q = ((v * TUNE_RUNS + run - 1) * 2) as u32;
                    wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: Some(q),
                        end_of_pass_write_index: Some(q + 1),
                    }
                });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(OP),
                    timestamp_writes: writes,
                });
                if recorded.is_ok() {
                    recorded = kern.record_tile(gpu, &mut pass, &s.io, trans, mnk, tile);
                }
            }
        }
        enc.resolve_query_set(&set, 0..count, &resolve, 0);
        gpu.submit(enc.finish());
    })?;
    recorded?;
    let ticks = crate::tensor::first(gpu.readback(OP, &[(&resolve, bytes)]).await?);
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ticks);
    // Nanoseconds per tick.
    let period = f64::from(gpu.queue().get_timestamp_period());
    Ok(tiles
        .iter()
        .enumerate()
        .map(|(v, &tile)| {
            let runs = (0..TUNE_RUNS)
                .map(|r| {
                    let q = (v * TUNE_RUNS + r) * 2;
                    ticks[q + 1].saturating_sub(ticks[q]) as f64 * period * 1e-9
                })
                .collect();
            (tile, median(runs))
        })
        .collect())
}

/// What a tuning-cache line is valid for: adapter, backend and driver (tabs removed).
fn tune_id(gpu: &Gpu) -> String {
    let i = gpu.info();
    format!("{}|{:?}|{}", i.name, i.backend, i.driver).replace(['\t', '\n'], " ")
}

/// Reads the choices for adapter `id` from a tuning cache: one line per shape,
/// `id \t ta tb m n k \t subgroup tm tn4 wg` (`wg` 0 for an unstaged variant; a line
/// written before the staged variants existed, without it, reads as 0). Lines for other adapters, malformed lines and
/// variants this adapter lacks are ignored (the cache is a hint, never trusted blindly).
fn load_tuning(
    path: &std::path::Path,
    id: &str,
    tiles: &[MatmulTile],
) -> HashMap<TuneKey, MatmulTile> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(who), Some(shape), Some(tile), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if who != id {
            continue;
        }
        let nums = |s: &str| -> Option<Vec<u32>> { s.split(' ').map(|v| v.parse().ok()).collect() };
        let (Some(sh), Some(t)) = (nums(shape), nums(tile)) else {
            continue;
        };
        let (sg, tm, tn4, wg) = match t.as_slice() {
            [sg, tm, tn4] => (*sg, *tm, *tn4, 0),
            [sg, tm, tn4, wg] => (*sg, *tm, *tn4, *wg),
            _ => continue,
        };
        if let [ta, tb, m, n, k] = sh.as_slice() {
            let tile = MatmulTile {
                subgroup: sg == 1,
                tm,
                tn4,
                wg,
            };
            if *ta < 2 && *tb < 2 && tiles.contains(&tile) {
                out.insert((*ta == 1, *tb == 1, *m, *n, *k), tile);
            }
        }
    }
    out
}

/// Appends one choice to the tuning cache; a failure to write only loses the hint.
fn save_tuning(path: &std::path::Path, id: &str, key: TuneKey, tile: MatmulTile) {
    let (ta, tb, m, n, k) = key;
    let line = format!(
        "{id}\t{} {} {m} {n} {k}\t{} {} {} {}\n",
        u8::from(ta),
        u8::from(tb),
        u8::from(tile.subgroup),
        tile.tm,
        tile.tn4,
        tile.wg
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "wgnn: could not record a matmul tuning in {}: {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_cache_round_trips_and_ignores_what_it_cannot_trust() {
        let dir = std::env::temp_dir().join(format!("wgnn-tune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tune.tsv");
        let _ = std::fs::remove_file(&path);
        let tiles = crate::kernels::matmul::tiles_for(true);
        save_tuning(
            &path,
            "lavapipe|Vulkan|Mesa",
            (false, true, 256, 784, 256),
            tiles[1],
        );
        save_tuning(
            &path,
            "lavapipe|Vulkan|Mesa",
            (true, false, 7, 33, 3),
            tiles[0],
        );
        save_tuning(&path, "other|Vulkan|x", (false, false, 1, 1, 1), tiles[0]);
        // A staged variant (its fourth number, wg, is not 0).
        assert!(tiles[2].staged());
        save_tuning(
            &path,
            "lavapipe|Vulkan|Mesa",
            (false, false, 64, 64, 64),
            tiles[2],
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Malformed lines, and a variant this adapter does not have.
        text.push_str("garbage\nlavapipe|Vulkan|Mesa\t0 0 1 2\t1 32 2\n");
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 5 5 5\t0 8 2\n");
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 9 9 9\t1 x 2\n");
        // A staged shape no adapter has (12 invocations a side), and too many numbers.
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 6 6 6\t0 8 2 12\n");
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 7 7 7\t0 8 2 16 1\n");
        std::fs::write(&path, text).unwrap();
        let got = load_tuning(&path, "lavapipe|Vulkan|Mesa", tiles);
        let want: HashMap<TuneKey, MatmulTile> = [
            ((false, true, 256, 784, 256), tiles[1]),
            ((true, false, 7, 33, 3), tiles[0]),
            ((false, false, 64, 64, 64), tiles[2]),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        // An adapter without subgroups keeps the plain variant's line (an old one, without
        // wg) and the staged one.
        let plain = load_tuning(
            &path,
            "lavapipe|Vulkan|Mesa",
            crate::kernels::matmul::tiles_for(false),
        );
        let want: HashMap<TuneKey, MatmulTile> = [
            ((false, false, 5, 5, 5), MatmulTile::PLAIN[0]),
            ((false, false, 64, 64, 64), MatmulTile::TILED[0]),
        ]
        .into_iter()
        .collect();
        assert_eq!(plain, want);
        assert!(load_tuning(&dir.join("missing"), "x", tiles).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
