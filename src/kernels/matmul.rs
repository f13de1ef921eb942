//! Entry points of shaders/matmul.wgsl: GEMM with transposes and a fused dense epilogue.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::kernels::dropout::DropoutSpec;
use crate::kernels::dropout_mask::DropoutMask;
use crate::kernels::shader::{DROPOUT_MASK, FINITE, PHILOX, Part, STEP, Shader, wgsl};
use crate::kernels::{Bind, Family, get};
use crate::{Error, Gpu, Result};

/// The plain and the workgroup-staged matmul: shaders/matmul.wgsl and
/// shaders/matmul_tiled.wgsl after the step, Philox, the dropout mask and the non-finite
/// check.
pub(crate) const SHADER: Shader = Shader {
    name: "matmul",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        FINITE,
        wgsl!("matmul.wgsl"),
        wgsl!("matmul_tiled.wgsl"),
    ],
};

/// [`SHADER`] with the subgroup entry point and its operand loads joined after it (compiled
/// only on adapters whose subgroups have a fixed 8 or 16 lanes).
pub(crate) const SUBGROUP_SHADER: Shader = Shader {
    name: "matmul_subgroup",
    parts: &[
        STEP,
        Part::Mulhilo,
        PHILOX,
        DROPOUT_MASK,
        FINITE,
        wgsl!("matmul.wgsl"),
        wgsl!("matmul_subgroup.wgsl"),
        Part::MatmulLoads,
    ],
};

/// `MatmulParams.flags`: add the bias (`EPI_BIAS` in shaders/matmul.wgsl).
pub(crate) const EPI_BIAS: u32 = 1;
/// `MatmulParams.flags`: ReLU (`EPI_RELU` in shaders/matmul.wgsl).
pub(crate) const EPI_RELU: u32 = 2;

/// Mirrors `MatmulParams` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    /// 0, or the status code a non-finite output reports (a checked weight gradient).
    pub check: u32,
    pub _pad: [u32; 3],
    /// The epilogue's dropout (keep all, unscaled, without one).
    pub mask: DropoutMask,
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
        MatmulParams {
            m,
            n,
            k,
            flags,
            check: 0,
            _pad: [0; 3],
            mask: DropoutMask::new(epi.dropout),
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
/// columns per invocation, in `matmul_forward_tiled` (operands staged in workgroup memory)
/// when `wg > 0`, else in `matmul_forward_sg` (the lanes of a subgroup share their rows)
/// when `subgroup`, else in `matmul_forward`. Unstaged, a workgroup of 64 invocations covers
/// `(64 / lanes) * tm` rows by `4 * lanes * tn4` columns, where `lanes` is the subgroup size
/// (8 or 16) for the subgroup kernel and 8 for the plain one (8 x 8 invocations); staged, a
/// workgroup of `wg x wg` invocations covers `wg * tm` rows by `wg * 4 * tn4` columns.
/// Exposed (hidden) so that tests can run every variant and the bench can time them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTile {
    /// Uses `matmul_forward_sg` (adapters with subgroups of a fixed 8 or 16 lanes only).
    pub subgroup: bool,
    /// Rows per invocation: a multiple of 4, at most 32 with `subgroup`, else at most 8.
    pub tm: u32,
    /// Vec4 columns per invocation: 1 or 2.
    pub tn4: u32,
    /// Invocations per side of a workgroup-staged variant (`matmul_forward_tiled`,
    /// shaders/matmul_tiled.wgsl): 16; 0 for the unstaged kernels.
    pub wg: u32,
}

impl MatmulTile {
    /// The variants of `matmul_forward_sg`, largest first.
    pub const SUBGROUP: [MatmulTile; 2] = [MatmulTile::sg(32, 2), MatmulTile::sg(8, 2)];
    /// The variants of `matmul_forward`, largest first.
    pub const PLAIN: [MatmulTile; 2] = [MatmulTile::plain(8, 2), MatmulTile::plain(4, 1)];
    /// The variants of `matmul_forward_tiled`, largest first: 128 x 128 outputs per
    /// workgroup of 16 x 16 invocations (8 x 8 each), and 64 x 64 (4 x 4 each).
    pub const TILED: [MatmulTile; 2] = [MatmulTile::tiled(16, 8, 2), MatmulTile::tiled(16, 4, 1)];

    const fn sg(tm: u32, tn4: u32) -> MatmulTile {
        MatmulTile {
            subgroup: true,
            tm,
            tn4,
            wg: 0,
        }
    }

    const fn plain(tm: u32, tn4: u32) -> MatmulTile {
        MatmulTile {
            subgroup: false,
            tm,
            tn4,
            wg: 0,
        }
    }

    const fn tiled(wg: u32, tm: u32, tn4: u32) -> MatmulTile {
        MatmulTile {
            subgroup: false,
            tm,
            tn4,
            wg,
        }
    }

    /// Whether this variant stages its operands in workgroup memory.
    pub fn staged(&self) -> bool {
        self.wg > 0
    }

    /// Workgroup memory a staged variant needs, in bytes (shaders/matmul_tiled.wgsl: its
    /// `ta` and `tb`, each padded by one vec4 per row); 0 for the others.
    pub(crate) fn workgroup_bytes(&self) -> u32 {
        if !self.staged() {
            return 0;
        }
        let (bm, bn) = (self.wg * self.tm, self.wg * 4 * self.tn4);
        16 * (bm * (TILE_BK / 4 + 1) + TILE_BK * (bn / 4 + 1))
    }

    /// Workgroups for an `[m, n]` output on an adapter whose subgroups have `lanes` lanes
    /// (8 or 16, the only sizes [`Matmul`] compiles the subgroup kernel for; ignored by the
    /// plain kernel).
    pub(crate) fn groups(&self, m: u32, n: u32, lanes: u32) -> [u32; 2] {
        debug_assert!(matches!(lanes, 8 | 16), "matmul: {lanes} lanes");
        if self.staged() {
            return [
                n.div_ceil(self.wg * 4 * self.tn4),
                m.div_ceil(self.wg * self.tm),
            ];
        }
        let lanes = if self.subgroup { lanes } else { 8 };
        [
            n.div_ceil(4 * lanes * self.tn4),
            m.div_ceil((64 / lanes) * self.tm),
        ]
    }
}

/// `TILE_BK` of shaders/matmul_tiled.wgsl: the k of one stage.
const TILE_BK: u32 = 8;

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
    /// The subgroup entry point's module over `family`'s layout ([`Family::sibling`]), on
    /// adapters whose subgroups have a fixed 8 or 16 lanes.
    subgroup: Option<Family>,
    /// Whether the subgroup module has the 64-bit loads (the overrides `B64` and `A64`).
    wide: bool,
    /// Those lanes (the override `SG`); 8 without the subgroup kernel.
    lanes: u32,
    cache: Mutex<HashMap<Key, wgpu::ComputePipeline>>,
    /// The variants this adapter runs, largest first: the subgroup or the plain ones, then
    /// the staged ones its workgroup limits allow.
    tiles: Vec<MatmulTile>,
    /// Whether the adapter is a CPU (lavapipe, llvmpipe, SwiftShader), where the static
    /// choice keeps to the unstaged variants.
    cpu: bool,
    /// Workgroups a dispatch should have at least, when a smaller tile can give them.
    min_groups: u32,
    /// The autotuner's choices by (transposes, m, n, k), for this adapter: filled by
    /// `crate::tune`, read by [`Matmul::pick`].
    tuned: Mutex<HashMap<TuneKey, MatmulTile>>,
    /// The autotuner's settings, read once per `Gpu` by `crate::tune` (which also seeds
    /// `tuned` from the disk cache then).
    pub tune_settings: OnceLock<TuneSettings>,
    /// Every shape `crate::tune` timed on this adapter, in order (for tests:
    /// `testing::matmul_tunings`).
    pub tune_log: Mutex<Vec<TuneRecord>>,
}

/// A shape the autotuner has timed: (transpose a, transpose b, m, n, k).
pub(crate) type TuneKey = (bool, bool, u32, u32, u32);

/// One shape the autotuner timed: how, each variant's median, and the variant kept.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneRecord {
    /// (transpose a, transpose b, m, n, k).
    pub key: (bool, bool, u32, u32, u32),
    /// Timed from GPU timestamps read back without blocking (the async forms), else by the
    /// wall clock around blocking waits.
    pub timestamps: bool,
    /// Each variant timed, with its median seconds per run.
    pub medians: Vec<(MatmulTile, f64)>,
    /// The variant the shape takes untimed ([`Matmul::choose`]).
    pub static_choice: MatmulTile,
    /// The variant kept: the static choice unless another one's median is strictly
    /// smaller, then the smallest median's (the first of equal ones).
    pub chosen: MatmulTile,
}

/// How `crate::tune` chooses variants on one `Gpu`.
#[derive(Clone, Debug)]
pub(crate) struct TuneSettings {
    /// Whether the variants are timed (off with `WGNN_AUTOTUNE=0`).
    pub autotune: bool,
    /// Where choices persist between processes (`WGNN_TUNE_CACHE`), if anywhere.
    pub disk: Option<std::path::PathBuf>,
}

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
            &SHADER,
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
        let subgroup = match lanes {
            Some(_) => Some(family.sibling(gpu, "matmul_subgroup", &SUBGROUP_SHADER, wide)?),
            None => None,
        };
        // A CPU adapter runs one workgroup per thread at a time: two per thread balance the
        // load; a GPU wants its every core busy.
        let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu;
        let limits = d.limits();
        let tiles = tiles_for(subgroup.is_some())
            .iter()
            .copied()
            .filter(|t| {
                !t.staged()
                    || (t.wg * t.wg <= limits.max_compute_invocations_per_workgroup
                        && t.wg <= limits.max_compute_workgroup_size_x
                        && t.wg <= limits.max_compute_workgroup_size_y
                        && t.workgroup_bytes() <= limits.max_compute_workgroup_storage_size)
            })
            .collect();
        let min_groups = if cpu {
            2 * std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
        } else {
            256
        };
        Ok(Matmul {
            family,
            subgroup,
            wide,
            lanes: lanes.unwrap_or(8),
            cache: Mutex::new(HashMap::new()),
            tiles,
            cpu,
            min_groups,
            tuned: Mutex::new(HashMap::new()),
            tune_settings: OnceLock::new(),
            tune_log: Mutex::new(Vec::new()),
        })
    }

    pub fn get(gpu: &Gpu) -> Result<&Matmul> {
        get(gpu, &gpu.kernels().matmul, Matmul::new)
    }

    /// The variants this adapter can run: the unstaged ones largest first, then the staged
    /// ones largest first.
    pub fn tiles(&self) -> &[MatmulTile] {
        &self.tiles
    }

    /// The variants the autotuner times on this adapter: every one on a GPU; on a CPU
    /// adapter the unstaged ones only (on lavapipe the staged ones ran 6 to 17 times slower
    /// than the 32x8 subgroup one, timed in turns in one run: `bench --quick --gpu-sizes`'s
    /// `matmul_{128,256}_*_gflops`; and each costs llvmpipe seconds to compile per shape),
    /// so that tuning there costs what it did.
    pub fn tune_tiles(&self) -> Vec<MatmulTile> {
        self.tiles
            .iter()
            .copied()
            .filter(|t| !(self.cpu && t.staged()))
            .collect()
    }

    /// The variant for this product: the autotuner's choice when it has timed the shape,
    /// else [`Matmul::choose`]. Every variant gives the same bits (tests/dense.rs), so the
    /// choice changes speed only, never a result.
    pub fn pick(&self, trans: (bool, bool), m: u32, n: u32, k: u32) -> MatmulTile {
        self.tuned((trans.0, trans.1, m, n, k))
            .unwrap_or_else(|| self.choose(m, n))
    }

    /// The autotuner's choice for `key`, if it has made one.
    pub fn tuned(&self, key: TuneKey) -> Option<MatmulTile> {
        self.tuned.lock().ok().and_then(|t| t.get(&key).copied())
    }

    /// Stores `tile` as the choice for `key` unless one is stored already, and returns the
    /// stored choice: the first stored wins, so two threads tuning one shape at once, or a
    /// plan prepared before and recorded after, all see the same variant.
    pub fn remember(&self, key: TuneKey, tile: MatmulTile) -> MatmulTile {
        match self.tuned.lock() {
            Ok(mut t) => *t.entry(key).or_insert(tile),
            Err(_) => tile,
        }
    }

    /// The variant for an `[m, n]` output: among the unstaged variants on a CPU adapter
    /// (where workgroup memory costs a loop over the lanes per access and a barrier a
    /// coroutine switch: lavapipe ran the staged ones slower at every size measured, see
    /// [`Matmul::tune_tiles`]) and among the staged ones elsewhere, the largest tile that still gives
    /// `min_groups` workgroups, else the smallest. (Measured on lavapipe, Mesa 22.3, 2 cores:
    /// the 32x8 subgroup tile is the fastest even at four workgroups for 256x784x256, and for
    /// 64x18432x300, where most of its subgroups have no rows and return at once.)
    pub fn choose(&self, m: u32, n: u32) -> MatmulTile {
        let family: Vec<MatmulTile> = self
            .tiles
            .iter()
            .copied()
            .filter(|t| t.staged() != self.cpu)
            .collect();
        let tiles = if family.is_empty() {
            &self.tiles[..]
        } else {
            &family[..]
        };
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
            let Some(sub) = &self.subgroup else {
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
            sub.pipeline(gpu, "matmul_forward_sg", &consts)?
        } else if key.tile.staged() {
            let mut consts = consts.to_vec();
            consts.push(("WG", f64::from(key.tile.wg)));
            self.family.pipeline(gpu, "matmul_forward_tiled", &consts)?
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

/// Every variant an adapter may run, before its workgroup limits are applied: the subgroup
/// ones (with `subgroup`) or the plain ones, then the staged ones.
pub(crate) fn tiles_for(subgroup: bool) -> &'static [MatmulTile] {
    const WITH_SUBGROUP: [MatmulTile; 4] = [
        MatmulTile::SUBGROUP[0],
        MatmulTile::SUBGROUP[1],
        MatmulTile::TILED[0],
        MatmulTile::TILED[1],
    ];
    const WITHOUT: [MatmulTile; 4] = [
        MatmulTile::PLAIN[0],
        MatmulTile::PLAIN[1],
        MatmulTile::TILED[0],
        MatmulTile::TILED[1],
    ];
    if subgroup { &WITH_SUBGROUP } else { &WITHOUT }
}
