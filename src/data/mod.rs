//! Data set loaders: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary batches and image folders.
//!
//! Layer: may use the device (`Gpu`, `Tensor`) and the pure modules, nothing above
//! (`resident` uploads a data set once; the gather that reads it is recorded by `graph`).
//!
//! Every loader returns a host-side [`Dataset`] (u8 pixels in NHWC order, u8 labels); the
//! upload to the GPU happens elsewhere. The loaders treat their input as hostile: every size
//! read from a file is checked (with overflow-checked arithmetic) against the input's length
//! and against [`LoadLimits`] before anything is allocated for it, compressed input is
//! inflated into a buffer that grows with the data actually produced, and nothing panics on
//! malformed input. Errors are [`Error::Data`] (what is wrong, with the byte offset and the
//! field) or [`Error::Io`], both naming the file:
//!
//! ```text
//! train-images-idx3-ubyte.gz: IDX header at byte 2: element type 0x0d is not 0x08 (unsigned byte)
//! ```
//!
//! A 2,000 + 500 image subset of Fashion-MNIST ships inside the crate:
//!
//! ```
//! # fn main() -> wgnn::Result<()> {
//! let (train, test) = wgnn::data::shipped_fashion_mnist()?;
//! assert_eq!((train.count, test.count), (2000, 500));
//! assert_eq!((train.height, train.width, train.channels, train.classes), (28, 28, 1, 10));
//! let (fit, validation) = train.split(1800)?;
//! assert_eq!((fit.count, validation.count), (1800, 200));
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::{Error, Result};

mod cifar;
mod idx;
// Without `fs` only `read_image` (bytes in) is exported.
#[cfg_attr(not(feature = "fs"), allow(dead_code))]
mod image_folder;
pub(crate) mod resident;

#[cfg(feature = "fs")]
pub use cifar::cifar10;
pub use cifar::{read_cifar_batch, read_cifar_reader};
pub use idx::{IdxArray, read_idx, read_idx_pair, read_idx_reader, shipped_fashion_mnist};
#[cfg(feature = "fs")]
pub use idx::{fashion_mnist, load_idx_pair};
pub use image_folder::read_image;
#[cfg(feature = "fs")]
pub use image_folder::{FolderLoad, ImageFolder, SkippedFile, image_folder};

/// A labelled image data set on the host: u8 pixels, NHWC, row-major.
///
/// Image `i` is `images[i * image_len() .. (i + 1) * image_len()]`, laid out as
/// `[height, width, channels]`; its label is `labels[i]`, below `classes`. The fields are
/// public; [`Dataset::check`] tells whether a hand-built value is consistent, and every method
/// returns an error rather than panicking when it is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Pixels of all images, `[count, height, width, channels]`, row-major.
    pub images: Vec<u8>,
    /// One label per image, each below `classes`.
    pub labels: Vec<u8>,
    /// The number of images.
    pub count: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Channels per pixel (1 for grey, 3 for RGB).
    pub channels: usize,
    /// The number of classes; labels lie in `0..classes`.
    pub classes: usize,
}

impl Dataset {
    /// Bytes per image: `height * width * channels` (saturating, so a hand-built value with
    /// absurd sides gives a length [`Dataset::check`] rejects rather than a panic).
    pub fn image_len(&self) -> usize {
        self.height
            .saturating_mul(self.width)
            .saturating_mul(self.channels)
    }

    /// The images `range` (and their labels) as a new data set with the same shape and
    /// `classes`.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// let (train, _) = wgnn::data::shipped_fashion_mnist()?;
    /// let some = train.subset(10..20)?;
    /// assert_eq!(some.count, 10);
    /// assert_eq!(some.labels, train.labels[10..20]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Argument`] if `range` is decreasing or ends past `count`; [`Error::Data`] if
    /// the data set itself is inconsistent (see [`Dataset::check`]).
    pub fn subset(&self, range: Range<usize>) -> Result<Dataset> {
        if range.start > range.end || range.end > self.count {
            return Err(Error::arg(
                "Dataset::subset",
                format!(
                    "range {}..{} is not within 0..{} (the data set's count)",
                    range.start, range.end, self.count
                ),
            ));
        }
        self.check()?;
        let len = self.image_len();
        Ok(Dataset {
            images: self.images[range.start * len..range.end * len].to_vec(),
            labels: self.labels[range.clone()].to_vec(),
            count: range.end - range.start,
            height: self.height,
            width: self.width,
            channels: self.channels,
            classes: self.classes,
        })
    }

    /// Splits into the first `at` images and the rest, e.g. a training and a validation set.
    ///
    /// # Errors
    ///
    /// [`Error::Argument`] if `at > count`; [`Error::Data`] if the data set is inconsistent.
    pub fn split(&self, at: usize) -> Result<(Dataset, Dataset)> {
        if at > self.count {
            return Err(Error::arg(
                "Dataset::split",
                format!("split point {at} is past the count {}", self.count),
            ));
        }
        Ok((self.subset(0..at)?, self.subset(at..self.count)?))
    }

    /// Checks that the fields agree: `images.len() == count * height * width * channels`,
    /// `labels.len() == count`, `1 <= classes <= 256`, and every label is below `classes`.
    ///
    /// # Errors
    ///
    /// [`Error::Data`] with path `<dataset>`, naming the first disagreement.
    pub fn check(&self) -> Result<()> {
        let err = |msg: String| Err(data_err("<dataset>", msg));
        let want = self
            .count
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(self.width))
            .and_then(|n| n.checked_mul(self.channels));
        if want != Some(self.images.len()) {
            return err(format!(
                "images holds {} bytes, but count {} x height {} x width {} x channels {} \
                 needs {}",
                self.images.len(),
                self.count,
                self.height,
                self.width,
                self.channels,
                want.map_or("more than usize::MAX".to_string(), |n| n.to_string())
            ));
        }
        if self.labels.len() != self.count {
            return err(format!(
                "labels holds {} entries, but count is {}",
                self.labels.len(),
                self.count
            ));
        }
        if self.classes == 0 || self.classes > 256 {
            return err(format!("classes is {}, not in 1..=256", self.classes));
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|&l| usize::from(l) >= self.classes)
        {
            return err(format!(
                "label {} of image {i} is not below classes {}",
                self.labels[i], self.classes
            ));
        }
        Ok(())
    }

    /// How many images each class has: `counts[c]` images carry label `c`
    /// (`counts.len() == classes`; labels at or above `classes` are not counted).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }
}

/// Bounds on what a loader accepts, checked before anything is allocated for it.
///
/// The defaults (`LoadLimits::default()`) admit every common data set (CIFAR-10's largest
/// file is 30.7 MB, Fashion-MNIST's 47 MB) while keeping a hostile file from asking for more
/// memory than a desktop has. No size read from a file is trusted: every buffer a loader
/// allocates is bounded by these limits and by the bytes the input actually holds (or
/// inflates to), so a header cannot buy memory the file does not contain.
///
/// ```
/// let limits = wgnn::data::LoadLimits::default();
/// assert_eq!(limits.max_bytes, 2 << 30);
/// assert_eq!(limits.max_image_side, 8192);
/// assert_eq!(limits.max_alloc, 256 << 20);
/// assert_eq!(limits.max_decode_ratio, 2048);
/// // Tighter limits for a service that reads uploads:
/// let small = wgnn::data::LoadLimits { max_bytes: 64 << 20, ..limits };
/// # let _ = small;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoadLimits {
    /// The most bytes read from one file, the most bytes one decoded IDX array or inflated
    /// gzip stream may hold, and the most pixel bytes an image folder may produce.
    /// Default: 2 GiB.
    pub max_bytes: u64,
    /// The longest image side (width or height) in pixels accepted from any file, and for
    /// the target size of [`image_folder`]. Default: 8192.
    pub max_image_side: u32,
    /// The most bytes the image decoder may allocate for one image (the `max_alloc` of
    /// `image::Limits`, which the `image` crate otherwise leaves at 512 MiB).
    /// Default: 256 MiB.
    pub max_alloc: u64,
    /// The most bytes one image may decode to per byte of its file, checked from the
    /// image's header before its pixels are allocated. Deflate (PNG) cannot exceed about
    /// 1,032:1 and JPEG's coding stays under 2,048:1 (at least one bit per 8 x 8 block), so
    /// the default refuses no grey or colour PNG of 8 or 16 bits per channel and no JPEG,
    /// while a 100-byte file declaring 8,192 x 8,192 pixels is refused. Paletted or 1-bit
    /// PNGs of one flat colour decode to up to 32 times more than deflate's ratio: raise
    /// this for those. Default: 2048.
    pub max_decode_ratio: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_bytes: 2 << 30,
            max_image_side: 8192,
            max_alloc: 256 << 20,
            max_decode_ratio: 2048,
        }
    }
}

pub(crate) fn data_err(path: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.into(),
        msg: msg.into(),
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a whole file of at most `limits.max_bytes + slack` bytes (`slack` admits a header on
/// top of `max_bytes` of data). The length is checked from the metadata before reading, and the
/// read itself stops one byte past the limit, so a file that grows meanwhile (or a device file
/// with no length) cannot make it read more.
#[cfg_attr(not(feature = "fs"), allow(dead_code))]
pub(crate) fn read_file(path: &Path, limits: &LoadLimits, slack: u64) -> Result<Vec<u8>> {
    let cap = limits.max_bytes.saturating_add(slack);
    let over = |len: &str| {
        let extra = if slack == 0 {
            String::new()
        } else {
            format!(" plus a {slack}-byte header")
        };
        data_err(
            path.display().to_string(),
            format!(
                "file holds {len} bytes, over max_bytes {}{extra}",
                limits.max_bytes
            ),
        )
    };
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    if len > cap {
        return Err(over(&len.to_string()));
    }
    // Sized from the file's length (already within the cap), so the buffer is allocated
    // once rather than doubled while reading; a file that grows meanwhile is cut at cap + 1.
    let mut bytes = Vec::new();
    bytes.reserve_exact(usize::try_from(len).unwrap_or(0).saturating_add(1));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(over(&format!("more than {cap}")));
    }
    Ok(bytes)
}
