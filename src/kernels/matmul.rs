//! Entry points of shaders/matmul.wgsl: GEMM with transposes and a fused dense epilogue.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use crate::kernels::dropout::{DropoutSpec, check_rate, mode};
use crate::kernels::{
    Bind, Family, expect_status, get, run, uniform, words, zero_status, zero_step,
};
use crate::tensor::DType;
use crate::{Error, Gpu, Result, Tensor};

pub(crate) const SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/finite.wgsl"),
    include_str!("../../shaders/matmul.wgsl")
);

/// [`SOURCE`] with the subgroup entry point appended (compiled only on adapters whose
/// subgroups have a fixed 8 or 16 lanes).
pub(crate) const SUBGROUP_SOURCE: &str = concat!(
    include_str!("../../shaders/philox.wgsl"),
    include_str!("../../shaders/finite.wgsl"),
    include_str!("../../shaders/matmul.wgsl"),
    include_str!("../../shaders/matmul_subgroup.wgsl")
);

const EPI_BIAS: u32 = 1;
const EPI_RELU: u32 = 2;

/// Mirrors `MatmulParams` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub threshold: u32,
    pub mode: u32,
    pub scale: f32,
    /// 0, or the status code a non-finite output reports (a checked weight gradient).
    pub check: u32,
    pub seed: [u32; 2],
    pub offset: [u32; 2],
}

/// What follows the product, in this order: `+ bias`, ReLU, dropout.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Epilogue {
    pub bias: bool,
    pub relu: bool,
    pub dropout: Option<DropoutSpec>,
}

impl MatmulParams {
    pub fn new(m: u32, n: u32, k: u32, epi: Epilogue) -> MatmulParams {
        let flags = if epi.bias { EPI_BIAS } else { 0 } | if epi.relu { EPI_RELU } else { 0 };
        let (threshold, mode, scale, seed, offset) = match epi.dropout {
            Some(d) => (
                crate::philox::threshold(d.rate),
                mode(d.rate),
                crate::philox::scale(d.rate),
                words(d.seed),
                words(d.offset),
            ),
            None => (0, 0, 1.0, [0; 2], [0; 2]),
        };
        MatmulParams {
            m,
            n,
            k,
            flags,
            threshold,
            mode,
            scale,
            check: 0,
            seed,
            offset,
        }
    }

    /// The same product, its every output checked for NaN and infinity as it is stored: a
    /// non-finite one reports `code` to the training status bound at binding 6.
    pub fn checked(self, code: u32) -> MatmulParams {
        MatmulParams {
            check: code,
            ..self
        }
    }
}

/// One register-tile variant of the matmul kernel: `tm` output rows by `4 * tn4` output
/// columns per invocation, in `matmul_forward_sg` (the lanes of a subgroup share their rows)
/// when `subgroup`, else in `matmul_forward`. A workgroup of 64 invocations covers
/// `(64 / lanes) * tm` rows by `4 * lanes * tn4` columns, where `lanes` is the subgroup size
/// (8 or 16) for the subgroup kernel and 8 for the plain one (8 x 8 invocations). Exposed
/// (hidden) so that tests can run every variant and the bench can time them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTile {
    /// Uses `matmul_forward_sg` (adapters with subgroups of a fixed 8 or 16 lanes only).
    pub subgroup: bool,
    /// Rows per invocation: a multiple of 4, at most 32 with `subgroup`, else at most 8.
    pub tm: u32,
    /// Vec4 columns per invocation: 1 or 2.
    pub tn4: u32,
}

impl MatmulTile {
    /// The variants of `matmul_forward_sg`, largest first.
    pub const SUBGROUP: [MatmulTile; 2] = [MatmulTile::sg(32, 2), MatmulTile::sg(8, 2)];
    /// The variants of `matmul_forward`, largest first.
    pub const PLAIN: [MatmulTile; 2] = [MatmulTile::plain(8, 2), MatmulTile::plain(4, 1)];

    const fn sg(tm: u32, tn4: u32) -> MatmulTile {
        MatmulTile {
            subgroup: true,
            tm,
            tn4,
        }
    }

    const fn plain(tm: u32, tn4: u32) -> MatmulTile {
        MatmulTile {
            subgroup: false,
            tm,
            tn4,
        }
    }

    /// Workgroups for an `[m, n]` output on an adapter whose subgroups have `lanes` lanes
    /// (8 or 16, the only sizes [`Matmul`] compiles the subgroup kernel for; ignored by the
    /// plain kernel).
    pub(crate) fn groups(&self, m: u32, n: u32, lanes: u32) -> [u32; 2] {
        debug_assert!(matches!(lanes, 8 | 16), "matmul: {lanes} lanes");
        let lanes = if self.subgroup { lanes } else { 8 };
        [
            n.div_ceil(4 * lanes * self.tn4),
            m.div_ceil((64 / lanes) * self.tm),
        ]
    }
}

/// A compiled variant: transposes, which operands move as aligned vec4s (A, B, C: each
/// where its contiguous axis is a multiple of 4), and the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    trans: (bool, bool),
    vec4: [bool; 3],
    /// B is read along n and n % 8 == 0: eight columns are one aligned vec4<u64>.
    b_eight: bool,
    /// A is read along k and k % 8 == 0: eight k of a row are one aligned vec4<u64>.
    a_eight: bool,
    tile: MatmulTile,
}

/// The matmul pipelines: compiled per variant on first use ([`Matmul::prepare_tile`]) and kept.
pub(crate) struct Matmul {
    pub family: Family,
    /// The module with the subgroup entry point and a pipeline layout over `family.layout`
    /// (so bind groups made with that layout fit), on adapters whose subgroups have a fixed
    /// 8 or 16 lanes.
    subgroup: Option<(wgpu::ShaderModule, wgpu::PipelineLayout)>,
    /// Whether the subgroup module has the 64-bit loads (the overrides `B64` and `A64`).
    wide: bool,
    /// Those lanes (the override `SG`); 8 without the subgroup kernel.
    lanes: u32,
    cache: Mutex<HashMap<Key, wgpu::ComputePipeline>>,
    /// Workgroups a dispatch should have at least, when a smaller tile can give them.
    min_groups: u32,
    /// The autotuner's choices by (transposes, m, n, k), for this adapter.
    tuned: Mutex<HashMap<TuneKey, MatmulTile>>,
    /// Whether [`Matmul::autotune`] times the variants (off with `WGNN_AUTOTUNE=0`).
    autotune: bool,
    /// Where choices persist between processes (`WGNN_TUNE_CACHE`), if anywhere.
    disk: Option<PathBuf>,
}

/// A shape the autotuner has timed.
type TuneKey = (bool, bool, u32, u32, u32);

/// Shapes up to this many multiply-adds are timed; larger ones take the static choice (at
/// about 50 GFLOP/s on lavapipe, timing 2^32 costs a few seconds once).
const TUNE_MAX_MACS: u64 = 1 << 32;
/// Nor are shapes whose three scratch matrices would take more than this.
const TUNE_MAX_BYTES: u64 = 256 << 20;
/// Timed runs per variant (after one warm-up); the median counts.
const TUNE_RUNS: usize = 3;

impl Matmul {
    pub fn new(gpu: &Gpu) -> Result<Matmul> {
        let d = gpu.device();
        let lanes = crate::kernels::subgroup_lanes(gpu);
        // With 64-bit integers and 8 lanes the subgroup kernel also reads B and A as
        // vec4<u64> through bindings 7 and 8, second views of bindings 3 and 2
        // (shaders/matmul_wide.wgsl): 1.17x at 1024^3 on lavapipe at 256 bits. At 16 lanes
        // (lavapipe at 512 bits) the same loads measured 2.3x slower, so they stay
        // portable there; and they need two storage bindings more.
        let wide = lanes == Some(8)
            && d.features().contains(wgpu::Features::SHADER_INT64)
            && d.limits().max_storage_buffers_per_shader_stage >= 7;
        let aliases: &[(u32, usize)] = if wide { &[(7, 3), (8, 2)] } else { &[] };
        let family = Family::new_aliased(
            gpu,
            "matmul",
            SOURCE,
            &[
                Bind::Uniform,
                Bind::Uniform,
                Bind::Read,
                Bind::Read,
                Bind::Read,
                Bind::Write,
                Bind::Write,
            ],
            aliases,
        )?;
        let subgroup = if lanes.is_some() {
            Some(gpu.scoped("matmul", || {
                let module =
                    crate::kernels::shader_module(gpu, "matmul_subgroup", SUBGROUP_SOURCE, wide);
                let layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("matmul_subgroup"),
                    bind_group_layouts: &[Some(&family.layout)],
                    immediate_size: 0,
                });
                (module, layout)
            })?)
        } else {
            None
        };
        // A CPU adapter runs one workgroup per thread at a time: two per thread balance the
        // load; a GPU wants its every core busy.
        let min_groups = if gpu.info().device_type == wgpu::DeviceType::Cpu {
            2 * std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
        } else {
            256
        };
        let disk = std::env::var_os("WGNN_TUNE_CACHE").map(PathBuf::from);
        let tuned = disk
            .as_ref()
            .map(|path| load_tuning(path, &tune_id(gpu), tiles_for(subgroup.is_some())))
            .unwrap_or_default();
        Ok(Matmul {
            family,
            subgroup,
            wide,
            lanes: lanes.unwrap_or(8),
            cache: Mutex::new(HashMap::new()),
            min_groups,
            tuned: Mutex::new(tuned),
            autotune: std::env::var("WGNN_AUTOTUNE").map_or(true, |v| v != "0"),
            disk,
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Matmul> {
        get(gpu, &gpu.kernels().matmul, Matmul::new)
    }

    /// The variants this adapter can run, largest first.
    pub fn tiles(&self) -> &'static [MatmulTile] {
        tiles_for(self.subgroup.is_some())
    }

    /// The variant for this product: the autotuner's choice when it has timed the shape,
    /// else [`Matmul::choose`]. Every variant gives the same bits (tests/dense.rs), so the
    /// choice changes speed only, never a result.
    pub fn pick(&self, trans: (bool, bool), m: u32, n: u32, k: u32) -> MatmulTile {
        self.tuned
            .lock()
            .ok()
            .and_then(|t| t.get(&(trans.0, trans.1, m, n, k)).copied())
            .unwrap_or_else(|| self.choose(m, n))
    }

    /// Times every variant on scratch matrices of this shape (once per shape and adapter,
    /// in memory and in `WGNN_TUNE_CACHE` if set) and keeps the fastest. Shapes too large
    /// to time cheaply, `WGNN_AUTOTUNE=0`, or any failure while timing leave the static
    /// choice; only a lost device is an error.
    pub fn autotune(
        &self,
        gpu: &Gpu,
        trans: (bool, bool),
        (m, n, k): (u32, u32, u32),
    ) -> Result<MatmulTile> {
        let key = (trans.0, trans.1, m, n, k);
        let fallback = self.choose(m, n);
        if let Some(t) = self.tuned.lock().ok().and_then(|t| t.get(&key).copied()) {
            return Ok(t);
        }
        let (m64, n64, k64) = (u64::from(m), u64::from(n), u64::from(k));
        let macs = m64.saturating_mul(n64).saturating_mul(k64);
        let bytes = (m64 * k64)
            .saturating_add(k64 * n64)
            .saturating_add(m64 * n64)
            .saturating_mul(4);
        if !self.autotune
            || self.tiles().len() < 2
            || macs > TUNE_MAX_MACS
            || bytes > TUNE_MAX_BYTES
        {
            return Ok(fallback);
        }
        // Timed with `wait_idle`: on a Gpu other threads use at the same time, their work
        // is timed too, which can only make the choice worse, never a result different.
        let (best, timed) = match self.time_tiles(gpu, trans, (m, n, k)) {
            Ok(best) => (best, true),
            Err(e @ Error::DeviceLost { .. }) => return Err(e),
            // Remembered, so that a shape that cannot be timed (a memory budget too small
            // for the scratch matrices, a timeout) is not tried again.
            Err(_) => (fallback, false),
        };
        // The first choice stored wins: two threads tuning one shape at once, or a plan
        // prepared before and recorded after, all see the same variant.
        let chosen = match self.tuned.lock() {
            Ok(mut t) => *t.entry(key).or_insert(best),
            Err(_) => best,
        };
        if let (Some(path), true) = (&self.disk, timed && chosen == best) {
            save_tuning(path, &tune_id(gpu), key, best);
        }
        Ok(chosen)
    }

    /// The fastest variant for this shape by wall clock: one warm-up and [`TUNE_RUNS`]
    /// timed runs each, on zero matrices, the median counting.
    fn time_tiles(
        &self,
        gpu: &Gpu,
        trans: (bool, bool),
        (m, n, k): (u32, u32, u32),
    ) -> Result<MatmulTile> {
        let op = "matmul autotune";
        let (mu, nu, ku) = (m as usize, n as usize, k as usize);
        let a = Tensor::zeros(gpu, &[mu, ku])?;
        let b = Tensor::zeros(gpu, &[ku, nu])?;
        let c = Tensor::zeros(gpu, &[mu, nu])?;
        let params = uniform(gpu, op, &MatmulParams::new(m, n, k, Epilogue::default()));
        let io = self.family.bind(
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
        for &tile in self.tiles() {
            self.prepare_tile(gpu, trans, (m, n, k), tile)?;
            let mut times = Vec::with_capacity(TUNE_RUNS);
            for run_index in 0..=TUNE_RUNS {
                let start = Instant::now();
                let mut recorded = Ok(());
                run(gpu, op, |pass| {
                    recorded = self.record_tile(gpu, pass, &io, trans, (m, n, k), tile);
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

    /// The variant for an `[m, n]` output: the largest tile that still gives `min_groups`
    /// workgroups, else the smallest. (Measured on lavapipe, Mesa 22.3, 2 cores: the 32x8
    /// subgroup tile is the fastest even at four workgroups for 256x784x256, and for
    /// 64x18432x300, where most of its subgroups have no rows and return at once; see
    /// BENCHMARKS.md.)
    pub fn choose(&self, m: u32, n: u32) -> MatmulTile {
        let tiles = self.tiles();
        let enough = |t: &&MatmulTile| {
            let [x, y] = t.groups(m, n, self.lanes);
            x.saturating_mul(y) >= self.min_groups
        };
        *tiles.iter().find(enough).unwrap_or(&tiles[tiles.len() - 1])
    }

    fn key(&self, trans: (bool, bool), m: u32, n: u32, k: u32, tile: MatmulTile) -> Key {
        // The 64-bit loads exist only in the subgroup module with `wide`; elsewhere the flags
        // stay off, so shapes that differ only there share a pipeline.
        let wide = self.wide && tile.subgroup;
        let four = |v: u32| v.is_multiple_of(4);
        Key {
            trans,
            // A's rows run along k, or along m when transposed; B's along n, or k.
            vec4: [
                four(if trans.0 { m } else { k }),
                four(if trans.1 { k } else { n }),
                four(n),
            ],
            b_eight: wide && tile.tn4 == 2 && !trans.1 && n.is_multiple_of(8),
            a_eight: wide && !trans.0 && k.is_multiple_of(8),
            tile,
        }
    }

    /// Compiles (once) the pipeline of `key`.
    fn pipeline(&self, gpu: &Gpu, key: Key) -> Result<wgpu::ComputePipeline> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::arg("matmul", "pipeline cache poisoned"))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let b = |v: bool| f64::from(u8::from(v));
        let consts = [
            ("TRANS_A", b(key.trans.0)),
            ("TRANS_B", b(key.trans.1)),
            ("TM", f64::from(key.tile.tm)),
            ("TN4", f64::from(key.tile.tn4)),
            ("VEC_A", b(key.vec4[0])),
            ("VEC_B", b(key.vec4[1])),
            ("VEC_C", b(key.vec4[2])),
        ];
        let p = if key.tile.subgroup {
            let Some((module, layout)) = &self.subgroup else {
                return Err(Error::arg(
                    "matmul",
                    format!("tile {:?} needs subgroups of 8 or 16 lanes", key.tile),
                ));
            };
            let mut consts = consts.to_vec();
            consts.push(("SG", f64::from(self.lanes)));
            if self.wide {
                consts.push(("B64", b(key.b_eight)));
                consts.push(("A64", b(key.a_eight)));
            }
            gpu.scoped("matmul", || {
                gpu.device()
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some("matmul_forward_sg"),
                        layout: Some(layout),
                        module,
                        entry_point: Some("matmul_forward_sg"),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &consts,
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            })?
        } else {
            self.family.pipeline(gpu, "matmul_forward", &consts)?
        };
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// Compiles (once) the pipeline of `tile` for these sizes, so that recording creates
    /// nothing.
    pub fn prepare_tile(
        &self,
        gpu: &Gpu,
        trans: (bool, bool),
        (m, n, k): (u32, u32, u32),
        tile: MatmulTile,
    ) -> Result<()> {
        self.pipeline(gpu, self.key(trans, m, n, k, tile))
            .map(|_| ())
    }

    /// Records `c = epilogue(op(a) op(b))` for an `[m, n]` output with inner size `k` with
    /// the variant `tile`; `io` binds (params, step, a, b, bias, c). The variant should have
    /// been prepared ([`Matmul::prepare_tile`]); it is compiled here otherwise.
    pub fn record_tile(
        &self,
        gpu: &Gpu,
        pass: &mut wgpu::ComputePass<'_>,
        io: &wgpu::BindGroup,
        trans: (bool, bool),
        (m, n, k): (u32, u32, u32),
        tile: MatmulTile,
    ) -> Result<()> {
        let pipeline = self.pipeline(gpu, self.key(trans, m, n, k, tile))?;
        let [gx, gy] = tile.groups(m, n, self.lanes);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, io, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
        Ok(())
    }
}

fn tiles_for(subgroup: bool) -> &'static [MatmulTile] {
    if subgroup {
        &MatmulTile::SUBGROUP
    } else {
        &MatmulTile::PLAIN
    }
}

/// What a tuning-cache line is valid for: adapter, backend and driver (tabs removed).
fn tune_id(gpu: &Gpu) -> String {
    let i = gpu.info();
    format!("{}|{:?}|{}", i.name, i.backend, i.driver).replace(['\t', '\n'], " ")
}

/// Reads the choices for adapter `id` from a tuning cache: one line per shape,
/// `id \t ta tb m n k \t subgroup tm tn4`. Lines for other adapters, malformed lines and
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
        if let ([ta, tb, m, n, k], [sg, tm, tn4]) = (sh.as_slice(), t.as_slice()) {
            let tile = MatmulTile {
                subgroup: *sg == 1,
                tm: *tm,
                tn4: *tn4,
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
        "{id}\t{} {} {m} {n} {k}\t{} {} {}\n",
        u8::from(ta),
        u8::from(tb),
        u8::from(tile.subgroup),
        tile.tm,
        tile.tn4
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

/// `(m, k, n)` of `op(a) op(b)`, or an error naming both shapes.
pub(crate) fn dims(
    op: &'static str,
    a: &[usize],
    b: &[usize],
    ta: bool,
    tb: bool,
) -> Result<(usize, usize, usize)> {
    if a.len() != 2 || b.len() != 2 {
        return Err(Error::shape(
            op,
            format!("expects two matrices, got a {a:?} and b {b:?}"),
        ));
    }
    let (m, ka) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
    let (kb, n) = if tb { (b[1], b[0]) } else { (b[0], b[1]) };
    if ka != kb {
        return Err(Error::shape(
            op,
            format!(
                "inner dimensions differ: op(a) is [{m}, {ka}], op(b) is [{kb}, {n}] (a {a:?} trans_a={ta}, b {b:?} trans_b={tb})"
            ),
        ));
    }
    // The smallest workgroup block of any variant is 32 x 32.
    let side = 32usize;
    if m.div_ceil(side) > 65_535 || n.div_ceil(side) > 65_535 {
        return Err(Error::Limit {
            op,
            what: format!("workgroups for an [{m}, {n}] output"),
            requested: m.max(n).div_ceil(side) as u64,
            limit: 65_535,
        });
    }
    Ok((m, ka, n))
}

/// One product on its own: `tile` (else the autotuner's or the static choice), and with
/// `check` = (status, code) every output checked as in a training step, reporting to that
/// status tensor (u32 [4]).
#[allow(
    clippy::too_many_arguments,
    reason = "the product's parts, named; ops::matmul and ops::dense fix most of them"
)]
pub(crate) fn eager(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    trans: (bool, bool),
    bias: Option<&Tensor>,
    epi: Epilogue,
    tile: Option<MatmulTile>,
    check: Option<(&Tensor, u32)>,
) -> Result<Tensor> {
    a.expect(DType::F32, op)?;
    b.expect(DType::F32, op)?;
    a.same_gpu(b, op)?;
    let (m, k, n) = dims(op, a.shape(), b.shape(), trans.0, trans.1)?;
    if let Some(bias) = bias {
        bias.expect(DType::F32, op)?;
        a.same_gpu(bias, op)?;
        if bias.shape() != [n] {
            return Err(Error::shape(
                op,
                format!(
                    "bias has shape {:?}, expected [{n}] (output [{m}, {n}])",
                    bias.shape()
                ),
            ));
        }
    }
    if let Some(d) = epi.dropout {
        check_rate(op, d.rate)?;
    }
    let gpu = a.gpu();
    let kern = Matmul::get(gpu)?;
    let (mu, nu, ku) = (m as u32, n as u32, k as u32);
    let tile = match tile {
        Some(t) if !kern.tiles().contains(&t) => {
            return Err(Error::arg(
                op,
                format!("tile {t:?} is not available on {}", gpu.info().name),
            ));
        }
        Some(t) => t,
        None => kern.pick(trans, mu, nu, ku),
    };
    if let Some((status, _)) = check {
        expect_status(op, status, a)?;
    }
    kern.pipeline(gpu, kern.key(trans, mu, nu, ku, tile))?;
    let c = Tensor::empty(gpu, op, &[m, n], DType::F32)?;
    let code = check.map_or(0, |(_, code)| code);
    let params = uniform(
        gpu,
        op,
        &MatmulParams::new(m as u32, n as u32, k as u32, epi).checked(code),
    );
    let bias_buf = bias.map_or(a.buffer(), |t| t.buffer());
    let io = kern.family.bind(
        gpu,
        &[
            &params,
            zero_step(gpu),
            a.buffer(),
            b.buffer(),
            bias_buf,
            c.buffer(),
            check.map_or(zero_status(gpu), |(status, _)| status.buffer()),
        ],
    );
    let mut recorded = Ok(());
    run(gpu, op, |pass| {
        recorded = kern.record_tile(gpu, pass, &io, trans, (mu, nu, ku), tile)
    })?;
    recorded?;
    Ok(c)
}

/// `op(a) op(b)`: `[m, k] x [k, n] -> [m, n]`, where `op(a)` is `a` or, if `trans_a`, its
/// transpose (then `a` is `[k, m]`); likewise `b` (`[n, k]` if `trans_b`). The backward of
/// `y = x w` is `dx = matmul(dy, w, false, true)` and `dw = matmul(x, dy, true, false)`.
///
/// # Errors
/// When a tensor is not a 2-D f32 matrix or the inner dimensions differ.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    eager(
        "matmul",
        a,
        b,
        (trans_a, trans_b),
        None,
        Epilogue::default(),
        None,
        None,
    )
}

/// The fused dense layer: `dropout(act(x w + bias))` in one kernel, `x` `[batch, in]`, `w`
/// `[in, units]`, `bias` `[units]`, `act` ReLU if `relu` else identity, dropout drawn exactly
/// as [`crate::ops::dropout`] draws it for the `[batch, units]` output. Its gradient with
/// respect to the pre-activation is [`crate::ops::relu_dropout_backward`] of the output.
///
/// # Errors
/// When shapes do not fit (naming them) or the dropout rate is outside [0, 1].
pub fn dense(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    dropout: Option<DropoutSpec>,
) -> Result<Tensor> {
    let epi = Epilogue {
        bias: bias.is_some(),
        relu,
        dropout,
    };
    eager("dense", x, w, (false, false), bias, epi, None, None)
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
        let tiles = tiles_for(true);
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
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Malformed lines, and a variant this adapter does not have.
        text.push_str("garbage\nlavapipe|Vulkan|Mesa\t0 0 1 2\t1 32 2\n");
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 5 5 5\t0 8 2\n");
        text.push_str("lavapipe|Vulkan|Mesa\t0 0 9 9 9\t1 x 2\n");
        std::fs::write(&path, text).unwrap();
        let got = load_tuning(&path, "lavapipe|Vulkan|Mesa", tiles);
        let want: HashMap<TuneKey, MatmulTile> = [
            ((false, true, 256, 784, 256), tiles[1]),
            ((true, false, 7, 33, 3), tiles[0]),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        // An adapter without subgroups keeps only the plain variant's line.
        let plain = load_tuning(&path, "lavapipe|Vulkan|Mesa", tiles_for(false));
        assert_eq!(
            plain.into_iter().collect::<Vec<_>>(),
            [((false, false, 5, 5, 5), MatmulTile::PLAIN[0])]
        );
        assert!(load_tuning(&dir.join("missing"), "x", tiles).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use wgpu::naga;

    /// The subgroup sources (matmul's and conv2d's) parse and validate with subgroups on;
    /// the plain sources are checked in `kernels::layout`.
    #[test]
    fn matmul_and_conv2d_subgroup_shaders_validate() {
        for (name, src) in [
            ("matmul", super::SUBGROUP_SOURCE),
            ("conv2d", crate::kernels::conv2d::SUBGROUP_SOURCE),
        ] {
            let module = naga::front::wgsl::parse_str(src)
                .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
            let mut v = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::SUBGROUP,
            );
            if let Err(e) = v.validate(&module) {
                panic!("{name}: {}", e.emit_to_string(src));
            }
        }
    }
}
