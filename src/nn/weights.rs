//! Weights files: safetensors, written atomically, read all-or-nothing.
//!
//! Writing ([`write_atomic`]) goes through a temporary file beside the target, so a process
//! killed at any moment leaves the old file or the new one, never a torn one. Reading
//! ([`from_safetensors`], [`read_safetensors_file`]) treats the file as hostile: the 8-byte
//! header length is checked against [`WeightsOptions::max_header`] and the file's length,
//! the header against the model (names, dtype, shapes), and the file's length against
//! 8 + header + the model's parameter bytes, all before any tensor data is read; nothing is
//! returned unless every check passes.
//!
//! ```
//! # fn main() -> wgnn::Result<()> {
//! use wgnn::nn::weights::{NamedTensor, WeightSpec, WeightsOptions, from_safetensors, to_safetensors};
//! let w = NamedTensor { name: "dense/kernel".into(), shape: vec![2, 1], data: vec![0.5, -1.0] };
//! let bytes = to_safetensors(&[w], None)?;
//! let want = [WeightSpec { name: "dense/kernel".into(), shape: vec![2, 1], layer: "layer 0 (Dense)".into() }];
//! let loaded = from_safetensors(&bytes, "w.safetensors", &want, &WeightsOptions::default())?;
//! assert_eq!(loaded.data, vec![vec![0.5, -1.0]]);
//! let other = [WeightSpec { name: "dense/kernel".into(), shape: vec![3, 1], layer: "layer 0 (Dense)".into() }];
//! let err = from_safetensors(&bytes, "w.safetensors", &other, &WeightsOptions::default()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "w.safetensors: tensor \"dense/kernel\" has shape [2, 1], but layer 0 (Dense) expects [3, 1]"
//! );
//! # Ok(())
//! # }
//! ```
//!
//! The functions that take a path need the `fs` feature (on by default); the bytes forms
//! ([`to_safetensors`], [`from_safetensors`]) are always there, in a browser too.

// Without `fs` the file helpers below have no caller.
#![cfg_attr(not(feature = "fs"), allow(dead_code, unused_imports))]

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::Metadata;

use crate::{Error, Result};

/// The prefix of the optimizer-state tensors of a training state (`optimizer/dense/kernel/m`,
/// see [`ModelCheckpoint::include_optimizer`](crate::nn::ModelCheckpoint)). A read that
/// expects none of them skips them (checking only that they are F32 and counting their
/// bytes), so [`Sequential::load_weights`](crate::nn::Sequential::load_weights) reads a
/// training state's weights; no layer is named `optimizer`.
pub const OPTIMIZER_PREFIX: &str = "optimizer/";

/// One named f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Keras-style name, e.g. `dense_1/kernel`.
    pub name: String,
    /// Shape (Dense kernels `[in, units]`, conv kernels HWIO, biases `[units]`).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A weight a model expects to find in a file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightSpec {
    /// Keras-style name, e.g. `dense_1/kernel`.
    pub name: String,
    /// The shape the model holds.
    pub shape: Vec<usize>,
    /// The layer that owns it, as messages name it, e.g. `layer 1 (Dense)`.
    pub layer: String,
}

/// The safetensors crate's own limit on the JSON header: 100,000,000 bytes.
pub const MAX_HEADER_CAP: u64 = 100_000_000;

/// How a weights file is read.
///
/// ```
/// let options = wgnn::nn::weights::WeightsOptions::default();
/// assert_eq!((options.max_header, options.allow_non_finite), (1 << 20, false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeightsOptions {
    /// The largest JSON header accepted, in bytes. Default 1 MiB (a model with thousands of
    /// tensors needs far less); at most [`MAX_HEADER_CAP`].
    pub max_header: u64,
    /// Accept NaN and infinite values. Default false: the first non-finite value is an error
    /// naming its tensor and index.
    pub allow_non_finite: bool,
}

impl Default for WeightsOptions {
    fn default() -> Self {
        WeightsOptions {
            max_header: 1 << 20,
            allow_non_finite: false,
        }
    }
}

/// What a successful read returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedWeights {
    /// One vector per expected weight, in the order of the `expected` list.
    pub data: Vec<Vec<f32>>,
    /// The file's `__metadata__` (empty when it has none).
    pub metadata: HashMap<String, String>,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The prefix of the temporaries [`write_atomic`] makes for `file_name`.
fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.wgnn-tmp-")
}

/// The temporaries [`write_atomic`] would make for `path` that lie beside it now (left by a
/// save that was killed, or in progress in another process), sorted.
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be listed; [`Error::Argument`] if `path` has no
/// file name.
#[cfg(feature = "fs")]
pub fn temporaries(path: &Path) -> Result<Vec<PathBuf>> {
    let (dir, name) = split(path)?;
    let prefix = temp_prefix(&name);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
        let e = e.map_err(|e| io(&dir, e))?;
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The directory (`.` for a bare name) and file name of `path`.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| {
            Error::arg(
                "save_weights",
                format!("{} is not a file path", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    Ok((dir, name))
}

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// new one: see [`write_atomic_with`].
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let path = std::env::temp_dir().join(format!("wgnn-doc-atomic-{}.bin", std::process::id()));
/// wgnn::nn::weights::write_atomic(&path, b"version 1")?;
/// wgnn::nn::weights::write_atomic(&path, b"version 2")?;
/// assert_eq!(std::fs::read(&path).map_err(|e| wgnn::Error::Io { path: "read".into(), source: e })?, b"version 2");
/// # std::fs::remove_file(&path).ok();
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`write_atomic_with`].
#[cfg(feature = "fs")]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes a file atomically, its contents produced by `write` into the [`Write`] it is given
/// (so that any writer, e.g. one that fails on purpose, can be put in between).
///
/// The steps: temporaries left by an earlier, killed save of the same `path` are removed; a
/// new temporary `.NAME.wgnn-tmp-*` is created (mode 0600) in `path`'s own directory, so that
/// the rename below stays within one filesystem; `write` fills it; it gets the mode of the
/// file it replaces (0644 for a new file); `sync_all` makes its data and mode durable; it is
/// renamed over `path`; and on Unix the directory is fsynced so the rename itself is durable.
/// `path` is never opened for writing, so until the rename it holds the old contents, byte
/// for byte, and after it the new ones. A load reads only `path`, never a temporary.
///
/// # Errors
///
/// [`Error::Io`] naming `path` if any step fails (including an error returned by `write`);
/// the temporary is removed and the old file is left as it was.
#[cfg(feature = "fs")]
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (dir, name) = split(path)?;
    let prefix = temp_prefix(&name);
    if let Ok(stale) = temporaries(path) {
        for t in stale {
            let _ = std::fs::remove_file(t);
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        // Before the rename this removes the temporary; after it (a failed directory fsync)
        // there is nothing left to remove and the new file is in place.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// Serialises `tensors` (and string `metadata`) as safetensors bytes, F32, little-endian,
/// the tensors' data in the order given. The output is a function of the arguments alone
/// (metadata keys sorted), so equal weights give byte-identical files; the header is padded
/// with spaces to a multiple of 8 bytes, as the safetensors crate does.
///
/// # Errors
///
/// [`Error::Argument`] when a tensor's data does not fill its shape, or two tensors share a
/// name, or a name is `__metadata__`.
pub fn to_safetensors(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let op = "save_weights";
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut header = String::from("{");
    if let Some(meta) = metadata {
        let sorted: std::collections::BTreeMap<String, String> = meta.into_iter().collect();
        let fields: Vec<String> = sorted
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v)))
            .collect();
        header.push_str(&format!("\"__metadata__\":{{{}}}", fields.join(",")));
    }
    let mut names = BTreeSet::new();
    let mut offset = 0usize;
    for t in tensors {
        if t.name == "__metadata__" || !names.insert(t.name.as_str()) {
            return Err(Error::arg(
                op,
                format!("tensor name {:?} is used twice or reserved", t.name),
            ));
        }
        let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(t.data.len()) {
            return Err(Error::arg(
                op,
                format!(
                    "tensor {:?} holds {} values, its shape {:?} needs {}",
                    t.name,
                    t.data.len(),
                    t.shape,
                    n.map_or("more than usize::MAX".into(), |n| n.to_string())
                ),
            ));
        }
        if header.len() > 1 {
            header.push(',');
        }
        let end = offset + 4 * t.data.len();
        header.push_str(&format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":{:?},\"data_offsets\":[{offset},{end}]}}",
            json(&t.name),
            t.shape
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// The header length of the safetensors file `bytes` (its first 8 bytes), checked against
/// the file's length and `opts`.
fn header_len(bytes: &[u8], opts: &WeightsOptions, err: &dyn Fn(String) -> Error) -> Result<usize> {
    let len = bytes.len() as u64;
    let Some(first) = bytes.first_chunk::<8>() else {
        return Err(err(format!(
            "file is {len} bytes, shorter than the 8-byte header length"
        )));
    };
    check_header_len(u64::from_le_bytes(*first), len, opts, err)
}

/// Checks the 8-byte header length `n` of a `file_len`-byte file against `opts`.
fn check_header_len(
    n: u64,
    file_len: u64,
    opts: &WeightsOptions,
    err: &dyn Fn(String) -> Error,
) -> Result<usize> {
    let limit = opts.max_header.min(MAX_HEADER_CAP);
    if n > limit {
        return Err(err(format!(
            "header length {n} (bytes 0..8) is over max_header {limit}"
        )));
    }
    if n > file_len.saturating_sub(8) {
        return Err(err(format!(
            "header length {n} (bytes 0..8) runs past the end of the {file_len}-byte file"
        )));
    }
    // n <= 100,000,000 here.
    Ok(n as usize)
}

/// Parses the JSON header and checks it against `expected`; returns the metadata and the
/// data bytes the model needs.
fn check_header(
    header: &[u8],
    expected: &[WeightSpec],
    err: &dyn Fn(String) -> Error,
) -> Result<(Metadata, u64)> {
    let meta: Metadata = serde_json::from_slice(header).map_err(|e| {
        err(format!(
            "header at byte 8 is not a valid safetensors header: {e}"
        ))
    })?;
    let mut want_data: u64 = 0;
    for w in expected {
        let Some(info) = meta.info(&w.name) else {
            return Err(err(format!("no tensor {:?} for {}", w.name, w.layer)));
        };
        if info.dtype != safetensors::Dtype::F32 {
            return Err(err(format!(
                "tensor {:?} has dtype {:?}, but {} expects F32",
                w.name, info.dtype, w.layer
            )));
        }
        if info.shape != w.shape {
            return Err(err(format!(
                "tensor {:?} has shape {:?}, but {} expects {:?}",
                w.name, info.shape, w.layer, w.shape
            )));
        }
        let n: u64 = w.shape.iter().map(|&d| d as u64).product();
        want_data = want_data.saturating_add(n.saturating_mul(4));
    }
    // A training state's optimizer tensors are skipped (their bytes still count) when the
    // caller expects none of them: `load_weights` reads a training checkpoint.
    let skip_optimizer = !expected
        .iter()
        .any(|w| w.name.starts_with(OPTIMIZER_PREFIX));
    let mut extra: Vec<String> = Vec::new();
    for (name, info) in meta.tensors() {
        if expected.iter().any(|w| w.name == name) {
            continue;
        }
        if skip_optimizer && name.starts_with(OPTIMIZER_PREFIX) {
            if info.dtype != safetensors::Dtype::F32 {
                return Err(err(format!(
                    "optimizer tensor {name:?} has dtype {:?}, not F32",
                    info.dtype
                )));
            }
            let n: u64 = info.shape.iter().map(|&d| d as u64).product();
            want_data = want_data.saturating_add(n.saturating_mul(4));
            continue;
        }
        extra.push(name);
    }
    extra.sort();
    if let Some(first) = extra.first() {
        let names: Vec<&str> = expected.iter().map(|w| w.name.as_str()).collect();
        return Err(err(format!(
            "tensor {first:?} is not a weight of this model (it has {})",
            names.join(", ")
        )));
    }
    Ok((meta, want_data))
}

/// Converts the checked data section to one vector per expected weight.
fn tensors(
    data: &[u8],
    meta: &Metadata,
    expected: &[WeightSpec],
    opts: &WeightsOptions,
    err: &dyn Fn(String) -> Error,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(expected.len());
    for w in expected {
        let bytes = meta
            .info(&w.name)
            .and_then(|info| data.get(info.data_offsets.0..info.data_offsets.1))
            .ok_or_else(|| err(format!("tensor {:?}: data offsets out of range", w.name)))?;
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if !opts.allow_non_finite
            && let Some(i) = v.iter().position(|x| !x.is_finite())
        {
            return Err(err(format!(
                "tensor {:?} holds a non-finite value {} at index {i}",
                w.name, v[i]
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// Parses safetensors `bytes` (named `path` in messages) and checks them against `expected`:
/// header length within `opts.max_header` and the input, the same set of names (tensors
/// under [`OPTIMIZER_PREFIX`] skipped when `expected` lists none), dtype F32, the same
/// shapes, the input's length exactly 8 + header + the expected (and skipped) tensor bytes,
/// and (unless `opts.allow_non_finite`) finite values. Nothing is returned unless every check
/// passes.
///
/// # Errors
///
/// [`Error::Data`] naming `path` and, where one is at fault, the tensor and its layer.
pub fn from_safetensors(
    bytes: &[u8],
    path: &str,
    expected: &[WeightSpec],
    opts: &WeightsOptions,
) -> Result<LoadedWeights> {
    let err = |msg: String| Error::Data {
        path: path.to_string(),
        msg,
    };
    let len = bytes.len() as u64;
    let n = header_len(bytes, opts, &err)?;
    let (meta, want) = check_header(&bytes[8..8 + n], expected, &err)?;
    check_length(len, n, want, "the model's weights", &err)?;
    let data = tensors(&bytes[8 + n..], &meta, expected, opts, &err)?;
    Ok(LoadedWeights {
        data,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// Checks that a `len`-byte file is exactly 8 + `n` (header) + `want` (data) bytes; `whose`
/// says where `want` comes from.
fn check_length(
    len: u64,
    n: usize,
    want: u64,
    whose: &str,
    err: &dyn Fn(String) -> Error,
) -> Result<()> {
    let need = 8u64.saturating_add(n as u64).saturating_add(want);
    if len != need {
        return Err(err(format!(
            "file is {len} bytes, but 8 + {n} (header) + {want} ({whose}) = {need}"
        )));
    }
    Ok(())
}

/// Reads and checks the 8-byte length and the header of the file at `path`; returns the open
/// file (positioned after the header), its length, the header length and the header.
fn open_header(path: &Path, opts: &WeightsOptions) -> Result<(File, u64, usize, Vec<u8>)> {
    let name = path.display().to_string();
    let err = |msg: String| Error::Data {
        path: name.clone(),
        msg,
    };
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let len = file.metadata().map_err(|e| io(path, e))?.len();
    let mut first = [0u8; 8];
    if len < 8 {
        return Err(err(format!(
            "file is {len} bytes, shorter than the 8-byte header length"
        )));
    }
    file.read_exact(&mut first).map_err(|e| io(path, e))?;
    let n = check_header_len(u64::from_le_bytes(first), len, opts, &err)?;
    // At most max_header bytes, and no more than the file holds.
    let mut header = vec![0u8; n];
    file.read_exact(&mut header).map_err(|e| io(path, e))?;
    Ok((file, len, n, header))
}

/// Reads the weights file at `path` and checks it as [`from_safetensors`] does, reading the
/// 8-byte length and the header first and the tensor data only once the header matches
/// `expected` and the file's length is exactly 8 + header + the expected parameter bytes.
/// What is read is bounded by `opts.max_header` plus the model's own size.
///
/// # Errors
///
/// As [`from_safetensors`]; [`Error::Io`] naming `path` if it cannot be read.
#[cfg(feature = "fs")]
pub fn read_safetensors_file(
    path: &Path,
    expected: &[WeightSpec],
    opts: &WeightsOptions,
) -> Result<LoadedWeights> {
    let name = path.display().to_string();
    let err = |msg: String| Error::Data {
        path: name.clone(),
        msg,
    };
    let (file, len, n, header) = open_header(path, opts)?;
    let (meta, want) = check_header(&header, expected, &err)?;
    check_length(len, n, want, "the model's weights", &err)?;
    let mut data = Vec::new();
    data.reserve_exact(usize::try_from(want).unwrap_or(0));
    // The file may have changed since its length was read: read at most one byte more.
    file.take(want.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| io(path, e))?;
    if data.len() as u64 != want {
        return Err(err(format!(
            "file changed while being read: {} data bytes instead of {want}",
            data.len()
        )));
    }
    let data = tensors(&data, &meta, expected, opts, &err)?;
    Ok(LoadedWeights {
        data,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// The `__metadata__` of safetensors `bytes` (named `path` in messages; empty if it has
/// none), reading only the 8-byte length and the header, checked as
/// [`read_metadata_file`] checks a file's.
///
/// # Errors
///
/// [`Error::Data`] if the header is over `opts.max_header`, malformed, or does not match
/// the length of `bytes`.
pub fn read_metadata(
    bytes: &[u8],
    path: &str,
    opts: &WeightsOptions,
) -> Result<HashMap<String, String>> {
    let err = |msg: String| Error::Data {
        path: path.to_string(),
        msg,
    };
    let len = bytes.len() as u64;
    let n = header_len(bytes, opts, &err)?;
    let meta: Metadata = serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| {
        err(format!(
            "header at byte 8 is not a valid safetensors header: {e}"
        ))
    })?;
    check_length(len, n, meta.data_len() as u64, "the header's tensors", &err)?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// The `__metadata__` of the weights file at `path` (empty if it has none), reading only its
/// 8-byte length and header; the header's offsets must describe exactly the file's length.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::Data`] if its header is over
/// `opts.max_header`, malformed, or does not match the file's length.
#[cfg(feature = "fs")]
pub fn read_metadata_file(path: &Path, opts: &WeightsOptions) -> Result<HashMap<String, String>> {
    let name = path.display().to_string();
    let err = |msg: String| Error::Data {
        path: name.clone(),
        msg,
    };
    let (_, len, n, header) = open_header(path, opts)?;
    let meta: Metadata = serde_json::from_slice(&header).map_err(|e| {
        err(format!(
            "header at byte 8 is not a valid safetensors header: {e}"
        ))
    })?;
    check_length(len, n, meta.data_len() as u64, "the header's tensors", &err)?;
    Ok(meta.metadata().clone().unwrap_or_default())
}
