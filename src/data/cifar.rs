//! CIFAR-10 binary batches (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`).
//!
//! Each record is one label byte followed by a 32 x 32 x 3 image stored as three planes
//! (1024 red, then 1024 green, then 1024 blue bytes, each row-major); the loader converts the
//! planes to interleaved HWC pixels.

#[cfg(feature = "fs")]
use std::path::Path;

#[cfg(feature = "fs")]
use super::read_file;
use super::{Dataset, LoadLimits, data_err};
use crate::Result;

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const IMAGE: usize = 3 * PLANE;
const RECORD: usize = 1 + IMAGE;

/// Parses one CIFAR-10 binary batch from memory: 32 x 32 x 3 images (HWC, converted from the
/// file's CHW planes), 10 classes. `name` stands for the input in error messages.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let mut record = vec![7u8; 3073]; // label 7, every pixel byte 7
/// record[1] = 200; // red of pixel (0, 0)
/// record[1 + 1024] = 100; // green of pixel (0, 0)
/// let batch = wgnn::data::read_cifar_batch(&record, "<bytes>")?;
/// assert_eq!((batch.count, batch.labels[0]), (1, 7));
/// assert_eq!(batch.images[..4], [200, 100, 7, 7]); // r, g, b of (0, 0), then r of (0, 1)
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Data`](crate::Error::Data) naming `name` if the length is not a non-zero
/// multiple of 3,073 bytes or a label is above 9 (with the record and its byte offset).
pub fn read_cifar_batch(bytes: &[u8], name: &str) -> Result<Dataset> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(data_err(
            name,
            format!(
                "CIFAR batch of {} bytes is not a non-zero multiple of {RECORD} (1 label byte \
                 and {IMAGE} pixel bytes per record)",
                bytes.len()
            ),
        ));
    }
    let count = bytes.len() / RECORD;
    let mut images = vec![0u8; count * IMAGE];
    let mut labels = Vec::with_capacity(count);
    for (i, (record, out)) in bytes
        .chunks_exact(RECORD)
        .zip(images.chunks_exact_mut(IMAGE))
        .enumerate()
    {
        labels.push(record_label(record, i, (i * RECORD) as u64, name)?);
        planes_to_hwc(&record[1..], out);
    }
    Ok(cifar_dataset(images, labels))
}

/// Parses one CIFAR-10 binary batch from a reader, record by record: the pixels are
/// converted as each 3,073-byte record arrives, so memory grows with the records actually
/// read, and at most `limits.max_bytes` bytes (plus one, to detect a longer input) are read.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let records = vec![3u8; 2 * 3073]; // two records, label 3
/// let batch = wgnn::data::read_cifar_reader(&records[..], &Default::default(), "<bytes>")?;
/// assert_eq!((batch.count, batch.labels.clone()), (2, vec![3, 3]));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`read_cifar_batch`]; [`Error::Data`](crate::Error::Data) if the input holds more than
/// `limits.max_bytes` bytes; [`Error::Io`](crate::Error::Io) (path `name`) if the reader
/// fails.
pub fn read_cifar_reader(
    mut r: impl std::io::Read,
    limits: &LoadLimits,
    name: &str,
) -> Result<Dataset> {
    let max_records = limits.max_bytes / RECORD as u64;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut record = vec![0u8; RECORD];
    loop {
        let mut got = 0;
        while got < RECORD {
            match r.read(&mut record[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(crate::Error::Io {
                        path: name.to_string(),
                        source,
                    });
                }
            }
        }
        let at = labels.len() as u64 * RECORD as u64;
        if got == 0 && !labels.is_empty() {
            break;
        }
        if got < RECORD {
            return Err(data_err(
                name,
                format!(
                    "CIFAR batch of {} bytes is not a non-zero multiple of {RECORD} (1 label \
                     byte and {IMAGE} pixel bytes per record)",
                    at + got as u64
                ),
            ));
        }
        if labels.len() as u64 >= max_records {
            return Err(data_err(
                name,
                format!(
                    "CIFAR input holds more than {} bytes, over max_bytes {}",
                    at, limits.max_bytes
                ),
            ));
        }
        labels.push(record_label(&record, labels.len(), at, name)?);
        let start = images.len();
        if start + IMAGE > images.capacity() {
            // Doubling, but never past what max_bytes admits.
            let most = usize::try_from(max_records)
                .unwrap_or(usize::MAX)
                .saturating_mul(IMAGE);
            let want = images
                .capacity()
                .saturating_mul(2)
                .clamp(start + IMAGE, most.max(start + IMAGE));
            images.reserve_exact(want - start);
            labels.reserve_exact(want / IMAGE - labels.len());
        }
        images.resize(start + IMAGE, 0);
        planes_to_hwc(&record[1..], &mut images[start..]);
    }
    Ok(cifar_dataset(images, labels))
}

/// The label of record `index` (starting at byte `at`), which must be at most 9.
fn record_label(record: &[u8], index: usize, at: u64, name: &str) -> Result<u8> {
    match record[0] {
        label @ 0..=9 => Ok(label),
        label => Err(data_err(
            name,
            format!("CIFAR record {index} at byte {at}: label {label} is above 9"),
        )),
    }
}

/// A CIFAR-10 data set of 32x32 RGB images (HWC) and their labels.
fn cifar_dataset(images: Vec<u8>, labels: Vec<u8>) -> Dataset {
    Dataset {
        count: labels.len(),
        images,
        labels,
        height: SIDE,
        width: SIDE,
        channels: 3,
        classes: 10,
    }
}

/// Converts one record's three planes (`IMAGE` bytes) to interleaved HWC pixels.
fn planes_to_hwc(planes: &[u8], out: &mut [u8]) {
    let (r, rest) = planes.split_at(PLANE);
    let (g, b) = rest.split_at(PLANE);
    for (p, px) in out.chunks_exact_mut(3).enumerate() {
        px.copy_from_slice(&[r[p], g[p], b[p]]);
    }
}

/// Loads CIFAR-10 from `dir` (the folder holding the binary version's `.bin` files, usually
/// `cifar-10-batches-bin`): returns `(train, test)` with the five `data_batch_N.bin` files
/// concatenated in order (50,000 images) and `test_batch.bin` (10,000 images), 32 x 32 x 3 HWC,
/// 10 classes.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) if a file is missing or unreadable;
/// [`Error::Data`](crate::Error::Data) naming the file if it holds more than
/// `limits.max_bytes` bytes, or as [`read_cifar_batch`].
#[cfg(feature = "fs")]
pub fn cifar10(dir: &Path, limits: &LoadLimits) -> Result<(Dataset, Dataset)> {
    let load = |file: &str| {
        let path = dir.join(file);
        let bytes = read_file(&path, limits, 0)?;
        read_cifar_batch(&bytes, &path.display().to_string())
    };
    let mut train = load("data_batch_1.bin")?;
    for n in 2..=5 {
        let batch = load(&format!("data_batch_{n}.bin"))?;
        train.images.extend_from_slice(&batch.images);
        train.labels.extend_from_slice(&batch.labels);
        train.count += batch.count;
    }
    let test = load("test_batch.bin")?;
    Ok((train, test))
}
