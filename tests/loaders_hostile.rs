//! Every loader against hostile input: bolero fuzz harnesses (one per loader), a deterministic
//! sweep of damaged files, IDX headers built from edge values, a lazily generated gzip stream
//! of 1 GiB of zeros, a PNG declaring 100,000 x 100,000 pixels, hostile image folders and
//! safetensors files. A counting `#[global_allocator]` measures the heap each loader call
//! takes. No GPU needed.
//!
//! Fuzzing: `fuzz_<target>` tests are bolero harnesses. Under `cargo test` bolero's random
//! engine feeds each harness random byte strings, which a small structure-aware mutator turns
//! into damaged versions of the seed files (bit flips, edge values in header fields,
//! truncations, insertions, splices); `fuzz/run-bounded.sh` runs the same harnesses for
//! 20,000 inputs or 60 s each. Seeds are written by this file under `fuzz/corpus/<target>/`
//! (`WGNN_BLESS_CORPUS=1` rewrites them) and every input that ever failed is kept under
//! `fuzz/regressions/<target>/`; both are replayed by `fuzz_corpus_and_regressions_replay`.

mod common;

use common::{TempDir, png_declaring};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::Compression;
use wgnn::data::{self, ImageFolder, LoadLimits};
use wgnn::nn::weights::{self, NamedTensor, WeightSpec, WeightsOptions};

// ---------------------------------------------------------------------------------------------
// A counting allocator: live and peak heap bytes per thread

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: the allocator runs while thread-locals are torn down, too.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap bytes this thread held during the call
/// beyond what it held before (the result's own allocations included).
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, peak.max(0) as u64)
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The limits of every hostile-input check: `max_bytes` = 64 MiB, other limits default.
fn limits() -> LoadLimits {
    LoadLimits {
        max_bytes: 64 * MIB,
        ..LoadLimits::default()
    }
}

/// The heap caps: 65 MiB for any input, 8 MiB for an input under 1 KiB.
#[track_caller]
fn check_caps(target: &str, input_len: usize, peak: u64) {
    assert!(
        peak <= 65 * MIB,
        "{target}: a {input_len}-byte input took {peak} bytes of heap, over 65 MiB"
    );
    if (input_len as u64) < KIB {
        assert!(
            peak <= 8 * MIB,
            "{target}: a {input_len}-byte input took {peak} bytes of heap, over 8 MiB"
        );
    }
}

#[test]
fn counting_allocator_sees_one_loader_sized_allocation() {
    let (v, peak) = peak_of(|| vec![7u8; 10 << 20]);
    assert_eq!(v.len(), 10 << 20);
    assert!(
        (10 * MIB..10 * MIB + 4 * KIB).contains(&peak),
        "peak {peak}"
    );
    drop(v);
    let (_, peak) = peak_of(|| {
        let mut v: Vec<u8> = Vec::with_capacity(1 << 20);
        v.resize(3 << 20, 1); // grows by realloc
        v.len()
    });
    assert!((3 * MIB..5 * MIB).contains(&peak), "peak {peak}");
}

// ---------------------------------------------------------------------------------------------
// Targets: one loader call each, with the invariants that must hold for any input

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Idx,
    IdxGz,
    Cifar,
    Image,
    SafetensorsWeights,
}

const TARGETS: [Target; 5] = [
    Target::Idx,
    Target::IdxGz,
    Target::Cifar,
    Target::Image,
    Target::SafetensorsWeights,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Idx => "idx",
            Target::IdxGz => "idx_gz",
            Target::Cifar => "cifar",
            Target::Image => "image",
            Target::SafetensorsWeights => "safetensors_weights",
        }
    }
}

/// Runs `target` on `input`; panics if a loader panics, an `Ok` breaks its invariants, or a
/// call takes more heap than the caps allow. Returns whether the bytes loader accepted it.
fn run(target: Target, input: &[u8]) -> bool {
    let name = target.name();
    match target {
        Target::Idx | Target::IdxGz => {
            let (a, peak) = peak_of(|| data::read_idx(input, &limits(), "fuzz"));
            check_caps(name, input.len(), peak);
            let (b, peak) = peak_of(|| data::read_idx_reader(input, &limits(), "fuzz"));
            check_caps(name, input.len(), peak);
            if let Ok(a) = &a {
                assert!((1..=4).contains(&a.dims.len()), "{name}: dims {:?}", a.dims);
                assert!(a.dims.iter().all(|&d| d > 0), "{name}: dims {:?}", a.dims);
                let n = a.dims.iter().try_fold(1usize, |t, &d| t.checked_mul(d));
                assert_eq!(n, Some(a.data.len()), "{name}: dims {:?}", a.dims);
            }
            match (&a, &b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}: bytes and reader disagree"),
                (Err(_), Err(_)) => {}
                _ => panic!("{name}: bytes gave {a:?}, reader {b:?}"),
            }
            a.is_ok()
        }
        Target::Cifar => {
            let (a, peak) = peak_of(|| data::read_cifar_batch(input, "fuzz"));
            check_caps(name, input.len(), peak);
            let (b, peak) = peak_of(|| data::read_cifar_reader(input, &limits(), "fuzz"));
            check_caps(name, input.len(), peak);
            if let Ok(d) = &a {
                assert_eq!(d.images.len(), d.count * 3072, "{name}");
                assert_eq!(d.labels.len(), d.count, "{name}");
                assert!(d.count > 0 && d.labels.iter().all(|&l| l <= 9), "{name}");
                d.check().unwrap();
            }
            match (&a, &b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}: bytes and reader disagree"),
                (Err(_), Err(_)) => {}
                _ => panic!("{name}: bytes gave {a:?}, reader {b:?}"),
            }
            a.is_ok()
        }
        Target::Image => {
            let mut ok = false;
            for channels in [1, 3] {
                let (r, peak) =
                    peak_of(|| data::read_image(input, 5, 7, channels, &limits(), "fuzz"));
                check_caps(name, input.len(), peak);
                if let Ok(px) = &r {
                    assert_eq!(px.len(), 5 * 7 * channels, "{name}");
                    ok = true;
                }
            }
            ok
        }
        Target::SafetensorsWeights => {
            let specs = specs();
            let mut ok = false;
            for allow_non_finite in [false, true] {
                let opts = WeightsOptions {
                    allow_non_finite,
                    ..WeightsOptions::default()
                };
                let (r, peak) = peak_of(|| weights::from_safetensors(input, "fuzz", &specs, &opts));
                check_caps(name, input.len(), peak);
                if let Ok(w) = &r {
                    assert_eq!(w.data.len(), specs.len(), "{name}");
                    for (v, s) in w.data.iter().zip(&specs) {
                        assert_eq!(v.len(), s.shape.iter().product::<usize>(), "{name}");
                        assert!(allow_non_finite || v.iter().all(|x| x.is_finite()));
                    }
                    ok = true;
                }
            }
            ok
        }
    }
}

/// Runs `target` on `input`; if it fails, keeps the input under `fuzz/regressions/` first.
fn run_keeping_failures(target: Target, input: &[u8]) -> bool {
    match std::panic::catch_unwind(|| run(target, input)) {
        Ok(ok) => ok,
        Err(panic) => {
            let dir = fuzz_dir().join("regressions").join(target.name());
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{:016x}.bin", fnv1a(input)));
            if !file.exists() {
                let _ = std::fs::write(&file, input);
                eprintln!(
                    "{}: failing input kept as {}",
                    target.name(),
                    file.display()
                );
            }
            std::panic::resume_unwind(panic)
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

// ---------------------------------------------------------------------------------------------
// Seeds

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn shipped(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name),
    )
    .unwrap()
}

/// CIFAR records with labels `labels`, pixel bytes a function of record and position.
fn cifar_batch(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, &l) in labels.iter().enumerate() {
        out.push(l);
        out.extend((0..3072).map(|i| ((i * 7 + r * 31) % 251) as u8));
    }
    out
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A small weights file for [`specs`], with metadata as `ModelCheckpoint` writes it.
fn weights_file(with_meta: bool) -> Vec<u8> {
    let tensors: Vec<NamedTensor> = specs()
        .into_iter()
        .enumerate()
        .map(|(t, s)| {
            let n: usize = s.shape.iter().product();
            NamedTensor {
                name: s.name,
                shape: s.shape,
                data: (0..n).map(|i| (i as f32 - 2.5) * 0.25 + t as f32).collect(),
            }
        })
        .collect();
    let meta = with_meta.then(|| {
        [("epoch", "3"), ("monitor", "val_loss"), ("best", "0.25")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    weights::to_safetensors(&tensors, meta).unwrap()
}

/// The seed inputs of `target`, generated here (and written under `fuzz/corpus/`).
fn seeds(target: Target) -> Vec<Vec<u8>> {
    let images = data::read_idx(&shipped("t10k-images-idx3-ubyte.gz"), &limits(), "t10k")
        .unwrap()
        .data;
    let labels = data::read_idx(&shipped("t10k-labels-idx1-ubyte.gz"), &limits(), "t10k")
        .unwrap()
        .data;
    let plain = vec![
        idx_bytes(&[3, 28, 28], &images[..3 * 784]),
        idx_bytes(&[3], &labels[..3]),
        idx_bytes(&[2, 2, 2, 3], &(0..24).collect::<Vec<u8>>()),
        idx_bytes(&[1, 4, 3, 3], &images[..36]),
    ];
    match target {
        Target::Idx => plain,
        Target::IdxGz => {
            let mut out: Vec<Vec<u8>> = plain.iter().map(|p| gz(p)).collect();
            out.push(shipped("t10k-labels-idx1-ubyte.gz"));
            out
        }
        Target::Cifar => vec![cifar_batch(&[3]), cifar_batch(&[0, 9, 5])],
        Target::Image => {
            let rgb = image::RgbImage::from_fn(9, 6, |x, y| {
                image::Rgb([(x * 28) as u8, (y * 40) as u8, ((x + y) * 9) as u8])
            });
            let grey = image::GrayImage::from_fn(5, 7, |x, y| image::Luma([(x * 50 + y) as u8]));
            let rgba = image::RgbaImage::from_fn(4, 4, |x, y| {
                image::Rgba([(x * 60) as u8, 9, (y * 60) as u8, 200])
            });
            let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(3, 3, |x, y| {
                image::Rgb([(x * 20000) as u16, (y * 30000) as u16, 7])
            });
            use image::DynamicImage as D;
            use image::ImageFormat::{Jpeg, Png};
            vec![
                encode(D::ImageRgb8(rgb.clone()), Png),
                encode(D::ImageLuma8(grey.clone()), Png),
                encode(D::ImageRgba8(rgba), Png),
                encode(D::ImageRgb16(deep), Png),
                encode(D::ImageRgb8(rgb), Jpeg),
                encode(D::ImageLuma8(grey), Jpeg),
                png_declaring(64, 64),
            ]
        }
        Target::SafetensorsWeights => vec![weights_file(true), weights_file(false)],
    }
}

// ---------------------------------------------------------------------------------------------
// A structure-aware mutator driven by the fuzzer's bytes

/// Reads the fuzzer's bytes as a little program; zeros once they run out.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> usize {
        usize::from(self.byte()) | usize::from(self.byte()) << 8
    }
    /// A position in `0..len` (0 when empty), half the time within the first 64 bytes.
    fn pos(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let p = self.u16();
        if self.byte() & 1 == 0 {
            p % len.min(64)
        } else {
            p % len
        }
    }
}

const EDGE_U32: [u32; 9] = [
    0,
    1,
    3072,
    1 << 16,
    1 << 24,
    1 << 31,
    u32::MAX,
    0x7fff_ffff,
    0x0000_ffff,
];

/// Turns `program` into an input: a seed (or, for one choice in 8, the program's own bytes)
/// changed by 1 to 8 mutations.
fn mutate(target: Target, seeds: &[Vec<u8>], plain: &[Vec<u8>], program: &[u8]) -> Vec<u8> {
    let mut p = Program(program);
    let choice = usize::from(p.byte());
    if choice % 8 == 7 {
        return p.0.to_vec();
    }
    // idx_gz: half the time, damage the plain IDX seed and gzip the result, so the checks
    // behind the decompressor are reached.
    let gzip_after = target == Target::IdxGz && p.byte() & 1 == 1;
    let mut input = if gzip_after {
        plain[choice % plain.len()].clone()
    } else {
        seeds[choice % seeds.len()].clone()
    };
    let ops = 1 + p.byte() % 8;
    for _ in 0..ops {
        let len = input.len();
        match p.byte() % 9 {
            0 => {
                let at = p.pos(len);
                if let Some(b) = input.get_mut(at) {
                    *b ^= 1 << (p.byte() % 8);
                }
            }
            1 => {
                let at = p.pos(len);
                let v = [0x00, 0x01, 0x7f, 0x80, 0xff, p.byte()][usize::from(p.byte()) % 6];
                if let Some(b) = input.get_mut(at) {
                    *b = v;
                }
            }
            2 => {
                let at = p.pos(len);
                let v = EDGE_U32[usize::from(p.byte()) % EDGE_U32.len()];
                let big = p.byte() & 1 == 0;
                let bytes = if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                for (i, b) in bytes.into_iter().enumerate() {
                    if let Some(x) = input.get_mut(at + i) {
                        *x = b;
                    }
                }
            }
            3 => {
                // The safetensors header length.
                let v: u64 = [
                    0,
                    1,
                    8,
                    1 << 20,
                    (1 << 20) + 1,
                    100_000_000,
                    1 << 63,
                    u64::MAX,
                    len.saturating_sub(8) as u64,
                    len.saturating_sub(7) as u64,
                ][usize::from(p.byte()) % 10];
                for (i, b) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(x) = input.get_mut(i) {
                        *x = b;
                    }
                }
            }
            4 => {
                let at = p.pos(len + 1);
                input.truncate(at);
            }
            5 => {
                let at = p.pos(len + 1).min(len);
                let n = 1 + p.byte() as usize % 64;
                let fill = p.byte();
                input.splice(at..at, std::iter::repeat_n(fill, n));
            }
            6 => {
                let at = p.pos(len + 1).min(len);
                let n = (1 + p.byte() as usize % 64).min(len - at);
                input.drain(at..at + n);
            }
            7 => {
                // Splice in a piece of another seed.
                let other = &seeds[usize::from(p.byte()) % seeds.len()];
                let from = p.pos(other.len() + 1).min(other.len());
                let n = (1 + p.u16() % 256).min(other.len() - from);
                let at = p.pos(len + 1).min(len);
                let end = (at + n).min(len);
                input.splice(at..end, other[from..from + n].iter().copied());
            }
            _ => {
                // Repeat a piece at the end (lengths off by whole records or rows).
                let at = p.pos(len + 1).min(len);
                let n = (p.u16() % 4096).min(len - at);
                let piece = input[at..at + n].to_vec();
                input.extend_from_slice(&piece);
            }
        }
    }
    if gzip_after { gz(&input) } else { input }
}

// ---------------------------------------------------------------------------------------------
// Fuzz harnesses

/// Inputs per target under plain `cargo test`, unless `BOLERO_RANDOM_ITERATIONS` says
/// otherwise (fuzz/run-bounded.sh sets 20,000). Every one of them must run: the time cap
/// (`BOLERO_RANDOM_TEST_TIME_MS`, else [`TEST_TIME`]) is a safety net, and a run it cuts
/// short fails. Measured in release on 2 shared cores: 5,000 inputs take 10-300 ms a target.
const TEST_INPUTS: usize = 5000;

/// The time cap of a target's run when `BOLERO_RANDOM_TEST_TIME_MS` is unset.
const TEST_TIME: Duration = Duration::from_secs(4);

/// The inputs a target must run (`BOLERO_RANDOM_ITERATIONS`, else [`TEST_INPUTS`]) and the
/// time cap bolero applies, read from the same variables bolero reads.
fn fuzz_budget() -> (usize, Duration) {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
        })
    };
    let inputs = var("BOLERO_RANDOM_ITERATIONS").map_or(TEST_INPUTS, |n| n as usize);
    let cap = var("BOLERO_RANDOM_TEST_TIME_MS").map_or(TEST_TIME, Duration::from_millis);
    (inputs, cap)
}

fn seeds_of(target: Target) -> Vec<Vec<u8>> {
    seeds(target)
}

fn fuzz(target: Target) {
    let seeds = seeds(target);
    let plain = seeds_of(Target::Idx);
    let runs = AtomicUsize::new(0);
    let accepted = AtomicUsize::new(0);
    let (inputs, cap) = fuzz_budget();
    let start = Instant::now();
    bolero::check!()
        .with_iterations(inputs)
        .with_test_time(cap)
        .for_each(|program: &[u8]| {
            let input = mutate(target, &seeds, &plain, program);
            runs.fetch_add(1, Ordering::Relaxed);
            if run_keeping_failures(target, &input) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        });
    let runs = runs.into_inner();
    eprintln!(
        "fuzz {}: {runs} inputs ({} accepted) in {:.1?}",
        target.name(),
        accepted.into_inner(),
        start.elapsed()
    );
    assert!(
        runs >= inputs,
        "fuzz {}: the time cap of {cap:?} stopped the run after {runs} of {inputs} inputs \
         (raise BOLERO_RANDOM_TEST_TIME_MS, or lower the documented count in fuzz/README.md \
         with TEST_INPUTS)",
        target.name()
    );
}

#[test]
fn fuzz_idx() {
    fuzz(Target::Idx);
}

#[test]
fn fuzz_idx_gz() {
    fuzz(Target::IdxGz);
}

#[test]
fn fuzz_cifar() {
    fuzz(Target::Cifar);
}

#[test]
fn fuzz_image() {
    fuzz(Target::Image);
}

#[test]
fn fuzz_safetensors_weights() {
    fuzz(Target::SafetensorsWeights);
}

/// Every seed is accepted (so the mutator starts from valid files), the seeds on disk are the
/// generated ones, and every kept regression and corpus file passes.
#[test]
fn fuzz_corpus_and_regressions_replay() {
    let bless = std::env::var_os("WGNN_BLESS_CORPUS").is_some();
    let mut replayed = 0;
    for target in TARGETS {
        let seeds = seeds(target);
        let dir = fuzz_dir().join("corpus").join(target.name());
        if bless {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}.bin")), s).unwrap();
            }
        }
        for (i, s) in seeds.iter().enumerate() {
            let on_disk = std::fs::read(dir.join(format!("seed-{i}.bin"))).unwrap_or_else(|e| {
                panic!("{}: seed {i}: {e} (WGNN_BLESS_CORPUS=1)", target.name())
            });
            assert!(
                on_disk == *s,
                "{}: seed {i} differs from the generated one",
                target.name()
            );
            let accepted = run(target, s);
            // png_declaring(64, 64) is a seed with a broken IDAT, kept for its header.
            let broken_seed = target == Target::Image && i == 6;
            assert_eq!(accepted, !broken_seed, "{}: seed {i}", target.name());
        }
        let kept = fuzz_dir().join("regressions").join(target.name());
        for entry in std::fs::read_dir(&kept).into_iter().flatten() {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            run(target, &input);
            replayed += 1;
            eprintln!("replayed {}", path.display());
        }
    }
    eprintln!("{replayed} kept regressions replayed");
}

// ---------------------------------------------------------------------------------------------
// The deterministic sweep

/// `bytes` cut at every 37th byte of its first 4 KiB.
fn truncations(bytes: &[u8]) -> Vec<Vec<u8>> {
    (0..bytes.len().min(4096))
        .step_by(37)
        .map(|n| bytes[..n].to_vec())
        .collect()
}

/// `bytes` with each of its first 64 bytes set to 0x00, 0x01, 0x7F and 0xFF (where that
/// changes it).
fn byte_sets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..bytes.len().min(64) {
        for v in [0x00, 0x01, 0x7f, 0xff] {
            if bytes[i] != v {
                let mut b = bytes.to_vec();
                b[i] = v;
                out.push(b);
            }
        }
    }
    out
}

fn sweep(what: &str, target: Target, file: &[u8]) {
    let start = Instant::now();
    assert!(run(target, file), "{what}: the undamaged file must load");
    let cuts = truncations(file);
    for (i, cut) in cuts.iter().enumerate() {
        assert!(
            !run_keeping_failures(target, cut),
            "{what}: cut at byte {} was accepted",
            i * 37
        );
    }
    let sets = byte_sets(file);
    let accepted = sets
        .iter()
        .filter(|b| run_keeping_failures(target, b))
        .count();
    eprintln!(
        "sweep {what}: {} truncations rejected, {} byte changes ({accepted} still valid) in {:.1?}",
        cuts.len(),
        sets.len(),
        start.elapsed()
    );
}

#[test]
fn sweep_shipped_subset_files() {
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        sweep(name, Target::IdxGz, &shipped(name));
    }
}

#[test]
fn sweep_plain_idx_cifar_image_and_weights_files() {
    let images = data::read_idx(&shipped("t10k-images-idx3-ubyte.gz"), &limits(), "t10k")
        .unwrap()
        .data;
    sweep(
        "plain IDX",
        Target::Idx,
        &idx_bytes(&[8, 28, 28], &images[..8 * 784]),
    );
    sweep("CIFAR batch", Target::Cifar, &cifar_batch(&[0, 1, 9]));
    for (i, s) in seeds(Target::Image).iter().take(6).enumerate() {
        sweep(&format!("image seed {i}"), Target::Image, s);
    }
    sweep("weights", Target::SafetensorsWeights, &weights_file(true));
}

/// Every IDX header of 1 to 4 dimensions drawn from {0, 1, 2^16, 2^31, 2^32 - 1}, plain,
/// gzipped and through the reader, with no data after it: all rejected, none taking more
/// than 8 MiB; and where the dimensions declare one byte, accepted once that byte follows.
#[test]
fn idx_headers_from_edge_dimensions() {
    const EDGES: [u32; 5] = [0, 1, 1 << 16, 1 << 31, u32::MAX];
    let mut headers = 0;
    for ndims in 1..=4u32 {
        for code in 0..5usize.pow(ndims) {
            let dims: Vec<u32> = (0..ndims)
                .map(|i| EDGES[code / 5usize.pow(i) % 5])
                .collect();
            let header = idx_bytes(&dims, &[]);
            assert!(!run(Target::Idx, &header), "{dims:?} with no data");
            assert!(!run(Target::IdxGz, &gz(&header)), "{dims:?} gzipped");
            if dims.iter().all(|&d| d == 1) {
                assert!(run(Target::Idx, &idx_bytes(&dims, &[42])), "{dims:?}");
                assert!(
                    run(Target::IdxGz, &gz(&idx_bytes(&dims, &[42]))),
                    "{dims:?}"
                );
            }
            headers += 1;
        }
    }
    assert_eq!(headers, 5 + 25 + 125 + 625);
    let err = |dims: &[u32]| {
        data::read_idx(&idx_bytes(dims, &[]), &limits(), "x")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(&[1, 0]), "x: IDX header at byte 8: dimension 1 is 0");
    assert_eq!(
        err(&[1 << 16, 1 << 16]),
        "x: IDX header at byte 4: dimensions [65536, 65536] declare 4294967296 bytes, over \
         max_bytes 67108864"
    );
    assert_eq!(
        err(&[u32::MAX; 3]),
        "x: IDX header at byte 4: dimensions [4294967295, 4294967295, 4294967295] declare more \
         than 2^64 bytes, over max_bytes 67108864"
    );
    assert_eq!(
        err(&[1, 1 << 16]),
        "x: IDX data at byte 12: input ends after 0 of the 65536 bytes declared by dimensions \
         [1, 65536]"
    );
}

// ---------------------------------------------------------------------------------------------
// 1 GiB of zeros, gzipped, generated lazily

/// A gzip stream of an IDX header followed by `mib` MiB of zeros, produced as it is read: one
/// deflate segment for the header and one segment of 1 MiB of zeros repeated `mib` times
/// (each compressed by a fresh compressor and ended by a sync flush, so they concatenate),
/// then an empty final block and the trailer (CRC and length of the whole).
struct LazyGzip {
    parts: Vec<(std::rc::Rc<Vec<u8>>, usize)>,
    part: usize,
    at: usize,
    pulled: u64,
}

fn deflate_segment(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert_eq!(c.total_in(), data.len() as u64);
    out
}

impl LazyGzip {
    fn new(header: &[u8], mib: usize) -> LazyGzip {
        let zeros = vec![0u8; 1 << 20];
        let mut crc_zeros = flate2::Crc::new();
        crc_zeros.update(&zeros);
        let mut crc = flate2::Crc::new();
        crc.update(header);
        for _ in 0..mib {
            crc.combine(&crc_zeros);
        }
        let total = header.len() as u64 + (mib as u64) * MIB;
        let mut tail = vec![0x01, 0x00, 0x00, 0xff, 0xff]; // empty final stored block
        tail.extend_from_slice(&crc.sum().to_le_bytes());
        tail.extend_from_slice(&(total as u32).to_le_bytes());
        let gz_header = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let segment = std::rc::Rc::new(deflate_segment(&zeros));
        LazyGzip {
            parts: vec![
                (std::rc::Rc::new(gz_header), 1),
                (std::rc::Rc::new(deflate_segment(header)), 1),
                (segment, mib),
                (std::rc::Rc::new(tail), 1),
            ],
            part: 0,
            at: 0,
            pulled: 0,
        }
    }
}

impl Read for LazyGzip {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some((bytes, times)) = self.parts.get_mut(self.part) {
            if *times == 0 {
                self.part += 1;
                continue;
            }
            if self.at == bytes.len() {
                self.at = 0;
                *times -= 1;
                continue;
            }
            let n = buf.len().min(bytes.len() - self.at);
            buf[..n].copy_from_slice(&bytes[self.at..self.at + n]);
            self.at += n;
            self.pulled += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

#[test]
fn idx_gzip_lazy_stream_generator_is_a_valid_gzip_stream() {
    // 3 MiB of zeros under a header declaring exactly that: the stream decodes (CRC and length
    // checked by flate2 and by the loader) to what it claims.
    let header = idx_bytes(&[3, 1024, 1024], &[]);
    let mut all = Vec::new();
    flate2::read::GzDecoder::new(LazyGzip::new(&header, 3))
        .read_to_end(&mut all)
        .unwrap();
    assert_eq!(all.len(), header.len() + 3 * (1 << 20));
    assert!(all[..header.len()] == header[..] && all[header.len()..].iter().all(|&b| b == 0));
    let array = data::read_idx_reader(LazyGzip::new(&header, 3), &limits(), "3mib.gz").unwrap();
    assert_eq!(
        (array.dims, array.data.len()),
        (vec![3, 1024, 1024], 3 << 20)
    );
}

#[test]
fn idx_gzip_of_1_gib_of_zeros_claiming_16_mib_and_1_gib() {
    let start = Instant::now();
    // Claiming 16 MiB: the IDX stream behind the decompressor is pulled for exactly the
    // 16-byte header, the 16 MiB declared and one more byte.
    let claim_16 = idx_bytes(&[16, 1024, 1024], &[]);
    let mut inflated = Counted {
        inner: flate2::read::GzDecoder::new(LazyGzip::new(&claim_16, 1024)),
        bytes: 0,
    };
    let err = data::read_idx_reader(&mut inflated, &limits(), "zeros.gz").unwrap_err();
    let want = "zeros.gz: IDX data at byte 16777232: trailing data after the 16777216 bytes \
                declared by dimensions [16, 1024, 1024]";
    assert_eq!(err.to_string(), want);
    assert!(
        inflated.bytes <= 16 + 16 * MIB + 1,
        "{} bytes inflated",
        inflated.bytes
    );
    assert_eq!(inflated.bytes, 16 + 16 * MIB + 1);
    // The same stream through the loader's own decompressor: the same error, and the heap
    // never holds much more than the 16 MiB declared.
    let mut lazy = LazyGzip::new(&claim_16, 1024);
    let (r, peak) = peak_of(|| data::read_idx_reader(&mut lazy, &limits(), "zeros.gz"));
    assert_eq!(r.unwrap_err().to_string(), want);
    assert!(peak <= 16 * MIB + 256 * KIB, "peak heap {peak}");
    eprintln!(
        "16 MiB claim over 1 GiB of zeros: {} bytes inflated, {} compressed bytes read, peak \
         heap {peak}",
        inflated.bytes, lazy.pulled
    );

    // Claiming 1 GiB, over max_bytes (64 MiB): refused at the header, before inflating data.
    let claim_1g = idx_bytes(&[1024, 1024, 1024], &[]);
    let mut inflated = Counted {
        inner: flate2::read::GzDecoder::new(LazyGzip::new(&claim_1g, 1024)),
        bytes: 0,
    };
    let want = "zeros.gz: IDX header at byte 4: dimensions [1024, 1024, 1024] declare \
                1073741824 bytes, over max_bytes 67108864";
    let err = data::read_idx_reader(&mut inflated, &limits(), "zeros.gz").unwrap_err();
    assert_eq!(err.to_string(), want);
    assert_eq!(inflated.bytes, 16, "only the header is inflated");
    let (r, peak) =
        peak_of(|| data::read_idx_reader(LazyGzip::new(&claim_1g, 1024), &limits(), "zeros.gz"));
    assert_eq!(r.unwrap_err().to_string(), want);
    assert!(peak <= 4 * MIB, "peak heap {peak}");
    eprintln!(
        "1 GiB of zeros: both claims settled in {:.1?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Images

#[test]
fn image_declaring_100000_by_100000_pixels_is_refused_before_allocating() {
    let png = png_declaring(100_000, 100_000);
    let (r, peak) = peak_of(|| data::read_image(&png, 8, 8, 3, &limits(), "huge.png"));
    assert_eq!(
        r.unwrap_err().to_string(),
        "huge.png: cannot decode image: Image size exceeds limit"
    );
    assert!(peak <= MIB, "peak heap {peak}");
    // Within the side limit and max_alloc (4096 x 4096 x 3 = 48 MiB), but a 60-byte file
    // cannot hold that: refused by the decode ratio before the pixels are allocated.
    let png = png_declaring(4096, 4096);
    let (r, peak) = peak_of(|| data::read_image(&png, 8, 8, 3, &limits(), "lying.png"));
    assert_eq!(
        r.unwrap_err().to_string(),
        format!(
            "lying.png: image of 4096 x 4096 pixels decodes to 50331648 bytes, more than \
             max_decode_ratio 2048 times its {} bytes",
            png.len()
        )
    );
    assert!(peak <= MIB, "peak heap {peak}");
    // Raising the ratio lets the header through to the decoder, which then finds the data
    // missing; the pixel buffer was allocated (zeroed) for it.
    let generous = LoadLimits {
        max_decode_ratio: u64::MAX,
        ..limits()
    };
    let (r, peak) = peak_of(|| data::read_image(&png, 8, 8, 3, &generous, "lying.png"));
    assert!(r.is_err());
    assert!(
        peak >= 48 * MIB,
        "the ratio check is what kept the heap small: {peak}"
    );
}

#[test]
fn image_flat_colour_png_within_the_ratio_loads() {
    // A flat 1024 x 1024 RGB PNG compresses about 1000:1, near deflate's limit, and loads.
    let flat = image::RgbImage::from_pixel(1024, 1024, image::Rgb([10, 200, 30]));
    let png = encode(
        image::DynamicImage::ImageRgb8(flat),
        image::ImageFormat::Png,
    );
    let ratio = (3 << 20) / png.len();
    let px = data::read_image(&png, 2, 2, 3, &limits(), "flat.png").unwrap();
    assert_eq!(px, [10, 200, 30].repeat(4));
    eprintln!("flat PNG: {} bytes, ratio {ratio}:1", png.len());
}

#[cfg(unix)]
#[test]
fn image_folder_follows_no_symlink() {
    let dir = TempDir::new("links");
    let png = &seeds(Target::Image)[0];
    dir.write("a/real.png", png);
    // A link to an endless device, a link to a real image, a link to a class folder: none is
    // followed (reading /dev/zero would otherwise be cut only by max_bytes).
    std::os::unix::fs::symlink("/dev/zero", dir.0.join("a/zero.png")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("a/real.png"), dir.0.join("a/again.png")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("a"), dir.0.join("b")).unwrap();
    let (set, peak) = peak_of(|| data::image_folder(&dir.0, 4, 4, 3, &limits()).unwrap());
    assert_eq!((set.count, set.classes, set.labels), (1, 1, vec![0]));
    assert!(peak <= MIB, "peak heap {peak}");
}

#[test]
fn image_folder_names_an_unreadable_file_or_skips_and_reports_it() {
    let dir = TempDir::new("skip");
    let seeds = seeds(Target::Image);
    dir.write("cat/1.png", &seeds[0]);
    let bad = dir.write("cat/2.png", b"\x89PNG\r\n\x1a\n not really");
    dir.write("dog/1.jpg", &seeds[4]);
    let cut = dir.write("dog/2.jpeg", &seeds[4][..seeds[4].len() - 10]);
    // A file the reader cannot open as a file at all: a directory named like an image is not
    // a file, so it is not taken; an image over max_bytes is unreadable within the limits.
    let big = dir.write("dog/3.png", &vec![0u8; 4096]);
    let tight = LoadLimits {
        max_bytes: 4000,
        ..limits()
    };
    let err = data::image_folder(&dir.0, 4, 4, 3, &tight).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot decode image: Format error decoding Png: ChunkType {{ type:  rea, \
             critical: false, private: true, reserved: true, safecopy: true }} chunk appeared \
             before IHDR chunk",
            bad.display()
        )
    );
    let options = ImageFolder {
        skip_unreadable: true,
        limits: tight,
        ..ImageFolder::new(4, 4, 3)
    };
    let loaded = options.load(&dir.0).unwrap();
    assert_eq!(loaded.data.count, 2);
    assert_eq!(loaded.data.labels, [0, 1]);
    let skipped: Vec<(&Path, String)> = loaded
        .skipped
        .iter()
        .map(|s| (s.path.as_path(), s.error.to_string()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, bad);
    assert_eq!(skipped[1].0, cut);
    assert_eq!(
        skipped[1].1,
        format!(
            "{}: JPEG truncated: no end-of-image marker (FF D9) after the scan at byte 609 \
             ({} bytes)",
            cut.display(),
            seeds[4].len() - 10
        )
    );
    assert_eq!(skipped[2].0, big);
    assert_eq!(
        skipped[2].1,
        format!(
            "{}: file holds 4096 bytes, over max_bytes 4000",
            big.display()
        )
    );
    // Everything skipped: an error, not an empty data set.
    let only_bad = TempDir::new("allbad");
    only_bad.write("x/1.png", b"nope");
    assert_eq!(
        options.load(&only_bad.0).unwrap_err().to_string(),
        format!(
            "{}: none of its 1 image files could be read (all skipped)",
            only_bad.0.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Safetensors weights

/// `file` with its 8-byte header length replaced by `n` and its header padded (with spaces,
/// which JSON allows) to `n` bytes.
fn with_header_len(file: &[u8], n: usize) -> Vec<u8> {
    let old = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut out = (n as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&file[8..8 + old]);
    out.resize(8 + n, b' ');
    out.extend_from_slice(&file[8 + old..]);
    out
}

#[test]
fn safetensors_header_limit_is_1_mib_by_default_and_configurable_to_the_crate_cap() {
    let file = weights_file(true);
    let padded = with_header_len(&file, (1 << 20) + 8);
    let opts = WeightsOptions::default();
    assert_eq!(
        weights::from_safetensors(&padded, "w", &specs(), &opts)
            .unwrap_err()
            .to_string(),
        "w: header length 1048584 (bytes 0..8) is over max_header 1048576"
    );
    let wider = WeightsOptions {
        max_header: 2 << 20,
        ..opts
    };
    let loaded = weights::from_safetensors(&padded, "w", &specs(), &wider).unwrap();
    assert_eq!(loaded.metadata["best"], "0.25");
    // Asking for more than the crate's cap gets the cap.
    let mut huge = (200_000_000u64).to_le_bytes().to_vec();
    huge.extend_from_slice(&file[8..]);
    let unlimited = WeightsOptions {
        max_header: u64::MAX,
        ..opts
    };
    assert_eq!(
        weights::from_safetensors(&huge, "w", &specs(), &unlimited)
            .unwrap_err()
            .to_string(),
        "w: header length 200000000 (bytes 0..8) is over max_header 100000000"
    );
    // A header length past the end of the file.
    let mut past = ((file.len() - 7) as u64).to_le_bytes().to_vec();
    past.extend_from_slice(&file[8..]);
    assert_eq!(
        weights::from_safetensors(&past, "w", &specs(), &opts)
            .unwrap_err()
            .to_string(),
        format!(
            "w: header length {} (bytes 0..8) runs past the end of the {}-byte file",
            file.len() - 7,
            file.len()
        )
    );
}

#[test]
fn safetensors_names_missing_extra_and_mistyped_tensors_and_non_finite_values() {
    let opts = WeightsOptions::default();
    let tensor = |name: &str, shape: &[usize], data: Vec<f32>| NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data,
    };
    let good: Vec<NamedTensor> = specs()
        .iter()
        .map(|s| {
            let n = s.shape.iter().product();
            tensor(&s.name, &s.shape, vec![0.5; n])
        })
        .collect();
    let load = |t: &[NamedTensor], o: &WeightsOptions| {
        let bytes = weights::to_safetensors(t, None).unwrap();
        weights::from_safetensors(&bytes, "m.safetensors", &specs(), o)
    };
    let msg = |t: &[NamedTensor]| load(t, &opts).unwrap_err().to_string();
    assert_eq!(
        msg(&good[..3]),
        "m.safetensors: no tensor \"dense_1/bias\" for layer 1 (Dense)"
    );
    let mut extra = good.clone();
    extra.push(tensor("dense_2/kernel", &[2, 2], vec![0.0; 4]));
    assert_eq!(
        msg(&extra),
        "m.safetensors: tensor \"dense_2/kernel\" is not a weight of this model (it has \
         dense/kernel, dense/bias, dense_1/kernel, dense_1/bias)"
    );
    let mut shape = good.clone();
    shape[2] = tensor("dense_1/kernel", &[2, 3], vec![0.0; 6]);
    assert_eq!(
        msg(&shape),
        "m.safetensors: tensor \"dense_1/kernel\" has shape [2, 3], but layer 1 (Dense) \
         expects [3, 2]"
    );
    let mut nan = good.clone();
    nan[2].data[5] = f32::NAN;
    assert_eq!(
        msg(&nan),
        "m.safetensors: tensor \"dense_1/kernel\" holds a non-finite value NaN at index 5"
    );
    nan[0].data[11] = f32::NEG_INFINITY;
    assert_eq!(
        msg(&nan),
        "m.safetensors: tensor \"dense/kernel\" holds a non-finite value -inf at index 11"
    );
    let allow = WeightsOptions {
        allow_non_finite: true,
        ..opts
    };
    let loaded = load(&nan, &allow).unwrap();
    assert!(loaded.data[2][5].is_nan() && loaded.data[0][11] == f32::NEG_INFINITY);
    // Another dtype, F16, its data offsets those of F32 (twice the bytes its shape needs):
    // the safetensors parser refuses the header before any dtype is compared.
    let mut bytes = weights::to_safetensors(&good, None).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let f16 = header.replacen("\"F32\"", "\"F16\"", 1);
    assert_ne!(header, f16);
    bytes.splice(8..8 + n, f16.bytes());
    let e = weights::from_safetensors(&bytes, "m.safetensors", &specs(), &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.safetensors: header at byte 8 is not a valid safetensors header: invalid shape, data \
         type, or offset for tensor"
    );
    // A well-formed file whose first tensor is F16 of the right shape (2 bytes an element):
    // the header parses, and the loader names the tensor, its dtype and the layer.
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, s) in specs().iter().enumerate() {
        let n: usize = s.shape.iter().product();
        let (dtype, size) = if i == 0 { ("F16", 2) } else { ("F32", 4) };
        let start = data.len();
        data.resize(start + n * size, 0u8);
        header += &format!(
            "{}\"{}\":{{\"dtype\":\"{dtype}\",\"shape\":{:?},\"data_offsets\":[{start},{}]}}",
            if i == 0 { "" } else { "," },
            s.name,
            s.shape,
            data.len()
        );
    }
    header.push('}');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    let e = weights::from_safetensors(&file, "m.safetensors", &specs(), &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.safetensors: tensor \"dense/kernel\" has dtype F16, but layer 0 (Dense) expects F32"
    );
}

#[test]
fn safetensors_file_length_is_checked_before_the_data_is_read() {
    // A model of 4 Mi parameters (16 MiB); a file whose header matches it but which is one
    // byte longer is refused having read only its header.
    let big = vec![WeightSpec {
        name: "dense/kernel".into(),
        shape: vec![2048, 2048],
        layer: "layer 0 (Dense)".into(),
    }];
    let file = weights::to_safetensors(
        &[NamedTensor {
            name: "dense/kernel".into(),
            shape: vec![2048, 2048],
            data: vec![0.25; 2048 * 2048],
        }],
        None,
    )
    .unwrap();
    let dir = TempDir::new("length");
    let path = dir.write("w.safetensors", &file);
    let opts = WeightsOptions::default();
    let (ok, peak) = peak_of(|| weights::read_safetensors_file(&path, &big, &opts).unwrap());
    assert_eq!(ok.data[0].len(), 2048 * 2048);
    assert!(
        peak < 33 * MIB,
        "a good load reads the data once and converts it: {peak}"
    );
    drop(ok);
    let mut longer = file.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    let (r, peak) = peak_of(|| weights::read_safetensors_file(&path, &big, &opts));
    let n = u64::from_le_bytes(file[..8].try_into().unwrap());
    assert_eq!(
        r.unwrap_err().to_string(),
        format!(
            "{}: file is {} bytes, but 8 + {n} (header) + 16777216 (the model's weights) = {}",
            path.display(),
            longer.len(),
            longer.len() - 1
        )
    );
    assert!(peak <= 64 * KIB, "the data was read: peak heap {peak}");
    // The metadata alone is read from the header.
    std::fs::write(&path, weights_file(true)).unwrap();
    let (meta, peak) = peak_of(|| weights::read_metadata_file(&path, &opts).unwrap());
    assert_eq!(meta["monitor"], "val_loss");
    assert!(peak <= 64 * KIB, "peak heap {peak}");
}

/// The model the safetensors target loads into: two Dense layers, 4 -> 3 -> 2.
fn specs() -> Vec<WeightSpec> {
    common::two_dense_specs(4, 3, 2)
}
