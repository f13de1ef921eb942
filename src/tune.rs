//! The matmul autotuner: times every register-tile variant of a shape on the device (on a
//! CPU adapter, every unstaged one: `Matmul::tune_tiles`) and keeps the fastest (`kernels::matmul` holds the variants, the static choice and the
//! choices made; this module submits, waits and reads the clock, which kernels never do).
//!
//! Settings, read once per `Gpu`: `WGNN_AUTOTUNE=0` keeps the static choice;
//! `WGNN_TUNE_CACHE=FILE` also keeps the choices on disk for later runs. Every variant gives
//! the same bits (tests/dense.rs), so a choice changes speed only, never a result.

use std::collections::HashMap;
use std::io::Write as _;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

#[cfg(not(target_arch = "wasm32"))]
use crate::Tensor;
use crate::kernels::matmul::{Matmul, MatmulTile, TuneKey, TuneSettings};
#[cfg(not(target_arch = "wasm32"))]
use crate::kernels::{
    matmul::{Epilogue, MatmulParams},
    uniform, zero_status, zero_step,
};
use crate::{Error, Gpu, Result};

/// Shapes up to this many multiply-adds are timed; larger ones take the static choice (at
/// about 50 GFLOP/s on lavapipe, timing 2^32 costs a few seconds once).
const TUNE_MAX_MACS: u64 = 1 << 32;
/// Nor are shapes whose three scratch matrices would take more than this.
const TUNE_MAX_BYTES: u64 = 256 << 20;
/// Timed runs per variant (after one warm-up); the median counts.
#[cfg(not(target_arch = "wasm32"))]
const TUNE_RUNS: usize = 3;

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

/// The variant for an eager product with no variant given: the autotuner's choice when it
/// has timed the shape (in this process or, through `WGNN_TUNE_CACHE`, an earlier one), else
/// the static choice. Times nothing.
pub(crate) fn matmul_pick(
    gpu: &Gpu,
    kern: &Matmul,
    trans: (bool, bool),
    (m, n, k): (u32, u32, u32),
) -> MatmulTile {
    settings(gpu, kern);
    kern.pick(trans, m, n, k)
}

/// The variant for `op(a) op(b)` of `[m, k] x [k, n]` on `gpu`: times every variant on
/// scratch matrices of this shape (once per shape and adapter, in memory and in
/// `WGNN_TUNE_CACHE` if set) and keeps the fastest. Shapes too large to time cheaply,
/// `WGNN_AUTOTUNE=0`, or any failure while timing leave the static choice; only a lost device
/// is an error.
pub(crate) fn matmul_tile(
    gpu: &Gpu,
    trans: (bool, bool),
    (m, n, k): (u32, u32, u32),
) -> Result<MatmulTile> {
    let kern = Matmul::get(gpu)?;
    let settings = settings(gpu, kern);
    let key = (trans.0, trans.1, m, n, k);
    let fallback = kern.choose(m, n);
    if let Some(t) = kern.tuned(key) {
        return Ok(t);
    }
    let (m64, n64, k64) = (u64::from(m), u64::from(n), u64::from(k));
    let macs = m64.saturating_mul(n64).saturating_mul(k64);
    let bytes = (m64 * k64)
        .saturating_add(k64 * n64)
        .saturating_add(m64 * n64)
        .saturating_mul(4);
    // In a browser nothing may block (and `Instant` does not exist): the static choice.
    if cfg!(target_arch = "wasm32")
        || !settings.autotune
        || kern.tune_tiles().len() < 2
        || macs > TUNE_MAX_MACS
        || bytes > TUNE_MAX_BYTES
    {
        return Ok(fallback);
    }
    // Timed with `wait_idle`: on a Gpu other threads use at the same time, their work
    // is timed too, which can only make the choice worse, never a result different.
    let (best, timed) = match time_tiles(gpu, kern, trans, (m, n, k)) {
        Ok(best) => (best, true),
        Err(e @ Error::DeviceLost { .. }) => return Err(e),
        // Remembered, so that a shape that cannot be timed (a memory budget too small
        // for the scratch matrices, a timeout) is not tried again.
        Err(_) => (fallback, false),
    };
    // The first choice stored wins (`Matmul::remember`).
    let chosen = kern.remember(key, best);
    if let (Some(path), true) = (&settings.disk, timed && chosen == best) {
        save_tuning(path, &tune_id(gpu), key, best);
    }
    Ok(chosen)
}

#[cfg(target_arch = "wasm32")]
fn time_tiles(
    _gpu: &Gpu,
    _kern: &Matmul,
    _trans: (bool, bool),
    _shape: (u32, u32, u32),
) -> Result<MatmulTile> {
    Err(Error::arg("matmul autotune", "not timed in a browser"))
}

/// The fastest variant for this shape by wall clock: one warm-up and [`TUNE_RUNS`]
/// timed runs each, on zero matrices, the median counting.
#[cfg(not(target_arch = "wasm32"))]
fn time_tiles(
    gpu: &Gpu,
    kern: &Matmul,
    trans: (bool, bool),
    (m, n, k): (u32, u32, u32),
) -> Result<MatmulTile> {
    let op = "matmul autotune";
    let (mu, nu, ku) = (m as usize, n as usize, k as usize);
    let a = Tensor::zeros(gpu, &[mu, ku])?;
    let b = Tensor::zeros(gpu, &[ku, nu])?;
    let c = Tensor::zeros(gpu, &[mu, nu])?;
    let params = uniform(gpu, op, &MatmulParams::new(m, n, k, Epilogue::default()));
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
    let mut best: Option<(f64, MatmulTile)> = None;
    for tile in kern.tune_tiles() {
        kern.prepare_tile(gpu, trans, (m, n, k), tile)?;
        let mut times = Vec::with_capacity(TUNE_RUNS);
        for run_index in 0..=TUNE_RUNS {
            let start = Instant::now();
            let mut recorded = Ok(());
            gpu.submit_pass(op, |pass| {
                recorded = kern.record_tile(gpu, pass, &io, trans, (m, n, k), tile);
            })?;
            recorded?;
            gpu.wait_idle(op)?;
            if run_index > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        if best.is_none_or(|(b, _)| t < b) {
            best = Some((t, tile));
        }
    }
    best.map(|(_, t)| t)
        .ok_or_else(|| Error::arg(op, "no variant to time"))
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
