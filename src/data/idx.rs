//! IDX files (MNIST, Fashion-MNIST), plain or gzipped.
//!
//! An IDX file is a header (two zero bytes, an element type byte, a dimension count byte,
//! then one big-endian u32 per dimension) followed by the elements, row-major. Only unsigned
//! bytes (type 0x08) with 1 to 4 dimensions are accepted. Byte offsets in error messages count
//! from the start of the (decompressed) IDX stream.

use std::io::{BufRead, BufReader, Cursor, Read};
#[cfg(feature = "fs")]
use std::path::{Path, PathBuf};

use flate2::bufread::GzDecoder;

use super::{Dataset, LoadLimits, data_err};
#[cfg(feature = "fs")]
use super::{io_err, read_file};
use crate::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The largest IDX header: magic (4 bytes) and four dimensions.
#[cfg(feature = "fs")]
const MAX_HEADER: u64 = 4 + 4 * 4;

/// The contents of one IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdxArray {
    /// The dimensions, outermost first (e.g. `[60000, 28, 28]`); 1 to 4 of them, each > 0.
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The array as a plain (uncompressed) IDX file: the magic bytes `00 00 08`, the
    /// dimension count, each dimension as a big-endian u32, then the data; [`read_idx`] reads
    /// it back to an equal array.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// let a = wgnn::data::IdxArray { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] };
    /// let bytes = a.to_bytes()?;
    /// assert_eq!(bytes[..12], [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
    /// assert_eq!(wgnn::data::read_idx(&bytes, &Default::default(), "<bytes>")?, a);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Argument`] when there are not 1 to 4 dimensions, a dimension is 0 or over
    /// `u32::MAX`, or `data.len()` is not the product of the dimensions.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let op = "IdxArray::to_bytes";
        if !(1..=4).contains(&self.dims.len()) {
            return Err(Error::arg(
                op,
                format!(
                    "{} dimensions {:?}; IDX holds 1 to 4",
                    self.dims.len(),
                    self.dims
                ),
            ));
        }
        let mut out = vec![0, 0, 0x08, self.dims.len() as u8];
        let mut len = 1usize;
        for &d in &self.dims {
            let d32 = u32::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
                Error::arg(
                    op,
                    format!("dimension {d} of {:?} is not in 1..=u32::MAX", self.dims),
                )
            })?;
            out.extend_from_slice(&d32.to_be_bytes());
            len = len.saturating_mul(d);
        }
        if self.data.len() != len {
            return Err(Error::arg(
                op,
                format!(
                    "{} data bytes, but dimensions {:?} hold {len}",
                    self.data.len(),
                    self.dims
                ),
            ));
        }
        out.extend_from_slice(&self.data);
        Ok(out)
    }
}

/// A validated header.
struct Header {
    dims: Vec<usize>,
    /// Header bytes (where the data starts).
    len: usize,
    /// Data bytes declared by the dimensions.
    data_len: usize,
}

impl Header {
    fn dims_text(&self) -> String {
        format!("{:?}", self.dims)
    }
}

/// Parses an IDX array from memory, plain or gzipped (recognised by the gzip magic bytes
/// `1f 8b`).
///
/// `name` stands for the input in error messages (a file name, or e.g. `<bytes>`).
///
/// The declared size (the product of the dimensions, overflow-checked) is compared with
/// `limits.max_bytes` and, for plain input, with the bytes present, before any allocation. A
/// gzip stream is inflated into a buffer that grows with the bytes actually produced, at most
/// the declared size plus one; a stream that ends early, produces more than declared, fails
/// its checksum, or is followed by more bytes is an error.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let limits = wgnn::data::LoadLimits::default();
/// let bytes = [0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
/// let array = wgnn::data::read_idx(&bytes, &limits, "<bytes>")?;
/// assert_eq!(array.dims, vec![2, 3]);
/// assert_eq!(array.data, vec![1, 2, 3, 4, 5, 6]);
///
/// let bad = [0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0];
/// let err = wgnn::data::read_idx(&bad, &limits, "x.idx").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "x.idx: IDX header at byte 2: element type 0x0d is not 0x08 (unsigned byte)"
/// );
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Data`] naming `name`, the byte offset and the field: bad magic bytes, an element
/// type other than 0x08, a dimension count outside 1 to 4, a zero dimension, a declared size
/// over `limits.max_bytes`, input that ends early or has trailing bytes, or a corrupt gzip
/// stream.
pub fn read_idx(bytes: &[u8], limits: &LoadLimits, name: &str) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return read_gzip(bytes, limits, name);
    }
    let header = plain_header(bytes, limits, name)?;
    Ok(IdxArray {
        data: bytes[header.len..].to_vec(),
        dims: header.dims,
    })
}

/// Like [`read_idx`] for owned bytes: plain input is turned into the array in place, without a
/// second copy of the data.
#[cfg(feature = "fs")]
fn read_idx_owned(mut bytes: Vec<u8>, limits: &LoadLimits, name: &str) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return read_gzip(&bytes, limits, name);
    }
    let header = plain_header(&bytes, limits, name)?;
    bytes.drain(..header.len);
    Ok(IdxArray {
        dims: header.dims,
        data: bytes,
    })
}

/// Parses an IDX array from a reader, plain or gzipped, as [`read_idx`] does, streaming:
/// the header is read and checked first, then the data is read into a buffer that grows
/// with the bytes actually read (or inflated), never past the declared size plus one byte.
/// Exactly the header, the declared data and one more byte (to detect trailing data) are
/// pulled from a plain stream, whatever the header claims.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let bytes: &[u8] = &[0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9];
/// let array = wgnn::data::read_idx_reader(bytes, &Default::default(), "<bytes>")?;
/// assert_eq!((array.dims, array.data), (vec![3], vec![7, 8, 9]));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`read_idx`]; [`Error::Io`] (path `name`) if the reader fails.
pub fn read_idx_reader(mut r: impl Read, limits: &LoadLimits, name: &str) -> Result<IdxArray> {
    let mut head = [0u8; 2];
    let got = read_full(&mut r, &mut head).map_err(|source| Error::Io {
        path: name.to_string(),
        source,
    })?;
    let stream = Cursor::new(head[..got].to_vec()).chain(r);
    if head[..got] == GZIP_MAGIC {
        let (array, mut rest) = read_gz(BufReader::new(stream), limits, name)?;
        let left = rest.fill_buf().map_or(0, |b| b.len());
        if left > 0 {
            return Err(data_err(
                name,
                "gzip: more bytes after the end of the gzip stream",
            ));
        }
        return Ok(array);
    }
    let mut stream = stream;
    parse_stream(&mut stream, limits, name, |at, e| Error::Io {
        path: name.to_string(),
        source: std::io::Error::new(e.kind(), format!("at byte {at}: {e}")),
    })
}

/// Reads the header, then at most the declared size plus one byte from `r` into a buffer
/// that grows with what arrives, and checks that exactly the declared size came.
fn parse_stream(
    r: &mut impl Read,
    limits: &LoadLimits,
    name: &str,
    map_err: impl Fn(usize, &std::io::Error) -> Error,
) -> Result<IdxArray> {
    let header = read_header(r, limits, name, &map_err)?;
    let mut data = Vec::new();
    read_capped(r, header.data_len, &mut data).map_err(|e| map_err(header.len + data.len(), &e))?;
    if data.len() < header.data_len {
        return Err(data_err(
            name,
            format!(
                "IDX data at byte {}: input ends after {} of the {} bytes declared by \
                 dimensions {}",
                header.len + data.len(),
                data.len(),
                header.data_len,
                header.dims_text()
            ),
        ));
    }
    if data.len() > header.data_len {
        return Err(data_err(
            name,
            format!(
                "IDX data at byte {}: trailing data after the {} bytes declared by dimensions {}",
                header.len + header.data_len,
                header.data_len,
                header.dims_text()
            ),
        ));
    }
    Ok(IdxArray {
        dims: header.dims,
        data,
    })
}

/// Appends to `buf` what `r` yields, up to `limit + 1` bytes: the buffer starts small and
/// doubles only as data arrives (capped at `limit + 1`), and each read asks for no more than
/// is left under the cap, so a reader is never asked for a byte past it.
fn read_capped(r: &mut impl Read, limit: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let cap = limit.saturating_add(1);
    let mut filled = buf.len();
    let result = loop {
        if filled >= cap {
            break Ok(());
        }
        if filled == buf.len() {
            let want = buf.len().max(4096).saturating_mul(2).min(cap);
            buf.reserve_exact(want - buf.len());
            buf.resize(want, 0);
        }
        match r.read(&mut buf[filled..]) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(filled);
    result
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn gzip_err(name: &str, at: usize, e: &std::io::Error) -> Error {
    data_err(
        name,
        format!("gzip stream corrupt at decompressed byte {at}: {e}"),
    )
}

/// Reads and validates a header from `r`. `map_err` turns a read error at a given offset into
/// an [`Error`].
fn read_header(
    r: &mut impl Read,
    limits: &LoadLimits,
    name: &str,
    map_err: &impl Fn(usize, &std::io::Error) -> Error,
) -> Result<Header> {
    let short = |at: usize| {
        data_err(
            name,
            format!("IDX header at byte {at}: input ends inside the header after {at} bytes"),
        )
    };
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic).map_err(|e| map_err(0, &e))?;
    for (i, &b) in magic[..got.min(2)].iter().enumerate() {
        if b != 0 {
            return Err(data_err(
                name,
                format!("IDX header at byte {i}: magic byte 0x{b:02x} is not 0x00"),
            ));
        }
    }
    if got < 3 {
        return Err(short(got));
    }
    if magic[2] != 0x08 {
        return Err(data_err(
            name,
            format!(
                "IDX header at byte 2: element type 0x{:02x} is not 0x08 (unsigned byte)",
                magic[2]
            ),
        ));
    }
    if got < 4 {
        return Err(short(got));
    }
    let ndims = usize::from(magic[3]);
    if !(1..=4).contains(&ndims) {
        return Err(data_err(
            name,
            format!("IDX header at byte 3: {ndims} dimensions, expected 1 to 4"),
        ));
    }
    let mut raw = [0u8; 16];
    let raw = &mut raw[..4 * ndims];
    let got = read_full(r, raw).map_err(|e| map_err(4, &e))?;
    if got < raw.len() {
        return Err(short(4 + got));
    }
    let mut dims = Vec::with_capacity(ndims);
    let mut total: Option<u64> = Some(1);
    for (i, word) in raw.chunks_exact(4).enumerate() {
        let d = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        if d == 0 {
            return Err(data_err(
                name,
                format!("IDX header at byte {}: dimension {i} is 0", 4 + 4 * i),
            ));
        }
        total = total.and_then(|t| t.checked_mul(u64::from(d)));
        dims.push(d as usize);
    }
    let data_len = match total {
        Some(t) if t <= limits.max_bytes => usize::try_from(t).ok(),
        _ => None,
    };
    let Some(data_len) = data_len else {
        let size = total.map_or("more than 2^64".to_string(), |t| t.to_string());
        return Err(data_err(
            name,
            format!(
                "IDX header at byte 4: dimensions {dims:?} declare {size} bytes, over \
                 max_bytes {}",
                limits.max_bytes
            ),
        ));
    };
    Ok(Header {
        dims,
        len: 4 + 4 * ndims,
        data_len,
    })
}

/// Validates the header of plain input and that exactly the declared data follows it.
fn plain_header(bytes: &[u8], limits: &LoadLimits, name: &str) -> Result<Header> {
    let mut r = bytes;
    // Reading from a slice cannot fail.
    let header = read_header(&mut r, limits, name, &|at, e| {
        data_err(name, format!("at byte {at}: {e}"))
    })?;
    let avail = bytes.len() - header.len;
    if avail < header.data_len {
        return Err(data_err(
            name,
            format!(
                "IDX data at byte {}: input ends after {avail} of the {} bytes declared by \
                 dimensions {}",
                bytes.len(),
                header.data_len,
                header.dims_text()
            ),
        ));
    }
    if avail > header.data_len {
        return Err(data_err(
            name,
            format!(
                "IDX data at byte {}: {} trailing bytes after the {} bytes declared by \
                 dimensions {}",
                header.len + header.data_len,
                avail - header.data_len,
                header.data_len,
                header.dims_text()
            ),
        ));
    }
    Ok(header)
}

/// Inflates and parses one gzip member from `r`; returns the array and the input left after
/// the member (which the caller checks is empty).
fn read_gz<R: BufRead>(r: R, limits: &LoadLimits, name: &str) -> Result<(IdxArray, R)> {
    let mut dec = GzDecoder::new(r);
    // The buffer grows with what is inflated: never more than one byte past the declared size,
    // whatever the header claims. `read_capped` only sees the end after the member's CRC and
    // length have been checked.
    let array = parse_stream(&mut dec, limits, name, |at, e| gzip_err(name, at, e))?;
    Ok((array, dec.into_inner()))
}

/// Inflates and parses a gzipped IDX stream held in memory.
fn read_gzip(bytes: &[u8], limits: &LoadLimits, name: &str) -> Result<IdxArray> {
    let (array, rest) = read_gz(bytes, limits, name)?;
    if !rest.is_empty() {
        return Err(data_err(
            name,
            format!(
                "gzip: {} bytes after the end of the gzip stream at byte {}",
                rest.len(),
                bytes.len() - rest.len()
            ),
        ));
    }
    Ok(array)
}

/// Makes a data set of an image array (`[count, height, width]` or
/// `[count, height, width, channels]`) and a label array (`[count]`, labels below 10).
fn pair_to_dataset(
    images: IdxArray,
    labels: IdxArray,
    images_name: &str,
    labels_name: &str,
    limits: &LoadLimits,
) -> Result<Dataset> {
    let (count, height, width, channels) = match images.dims[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] => (n, h, w, c),
        _ => {
            return Err(data_err(
                images_name,
                format!(
                    "IDX images have dimensions {:?}; expected [count, height, width] or \
                     [count, height, width, channels]",
                    images.dims
                ),
            ));
        }
    };
    let side = height.max(width);
    if side > limits.max_image_side as usize {
        return Err(data_err(
            images_name,
            format!(
                "IDX image side {side} (dimensions {:?}) is over max_image_side {}",
                images.dims, limits.max_image_side
            ),
        ));
    }
    let [n_labels] = labels.dims[..] else {
        return Err(data_err(
            labels_name,
            format!(
                "IDX labels have dimensions {:?}; expected [count]",
                labels.dims
            ),
        ));
    };
    if n_labels != count {
        return Err(data_err(
            labels_name,
            format!("holds {n_labels} labels, but {images_name} holds {count} images"),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l >= 10) {
        return Err(data_err(
            labels_name,
            format!(
                "IDX data at byte {}: label {} of item {i} is not below 10",
                8 + i,
                labels.data[i]
            ),
        ));
    }
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
        count,
        height,
        width,
        channels,
        classes: 10,
    })
}

/// Makes one data set with 10 classes of an image IDX file and its label IDX file held in
/// memory (each plain or gzipped): [`load_idx_pair`] without a file system, e.g. for bytes a
/// web page fetched. `images_name` and `labels_name` stand for the inputs in messages.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// use wgnn::data::{IdxArray, LoadLimits, read_idx_pair};
/// let images = IdxArray { dims: vec![2, 2, 2], data: vec![0, 255, 9, 8, 1, 2, 3, 4] }.to_bytes()?;
/// let labels = IdxArray { dims: vec![2], data: vec![7, 3] }.to_bytes()?;
/// let d = read_idx_pair(&images, "img", &labels, "lab", &LoadLimits::default())?;
/// assert_eq!((d.count, d.height, d.width, d.channels, d.classes), (2, 2, 2, 1, 10));
/// assert_eq!(d.labels, vec![7, 3]);
/// let one = IdxArray { dims: vec![1], data: vec![7] }.to_bytes()?;
/// let err = read_idx_pair(&images, "img", &one, "lab", &LoadLimits::default());
/// assert_eq!(err.unwrap_err().to_string(), "lab: holds 1 labels, but img holds 2 images");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`load_idx_pair`], naming `images_name` or `labels_name`.
pub fn read_idx_pair(
    images: &[u8],
    images_name: &str,
    labels: &[u8],
    labels_name: &str,
    limits: &LoadLimits,
) -> Result<Dataset> {
    let img = read_idx(images, limits, images_name)?;
    let lab = read_idx(labels, limits, labels_name)?;
    pair_to_dataset(img, lab, images_name, labels_name, limits)
}

/// Loads an image IDX file and its label IDX file (each plain or gzipped) as one data set with
/// 10 classes, as MNIST and Fashion-MNIST store them.
///
/// The images must be `[count, height, width]` (one channel) or
/// `[count, height, width, channels]`, the labels `[count]` with every label below 10.
///
/// # Errors
///
/// [`Error::Io`] if a file cannot be read; [`Error::Data`] naming the file for anything
/// [`read_idx`] rejects, a file over `limits.max_bytes`, wrong dimensions, an image side over
/// `limits.max_image_side`, counts that disagree, or a label of 10 or more.
#[cfg(feature = "fs")]
pub fn load_idx_pair(images: &Path, labels: &Path, limits: &LoadLimits) -> Result<Dataset> {
    let (iname, lname) = (images.display().to_string(), labels.display().to_string());
    let img = read_idx_owned(read_file(images, limits, MAX_HEADER)?, limits, &iname)?;
    let lab = read_idx_owned(read_file(labels, limits, MAX_HEADER)?, limits, &lname)?;
    pair_to_dataset(img, lab, &iname, &lname, limits)
}

/// `dir/stem` if it exists, else `dir/stem.gz`.
#[cfg(feature = "fs")]
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let plain = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    if plain.exists() {
        Ok(plain)
    } else if gz.exists() {
        Ok(gz)
    } else {
        Err(io_err(
            &dir.join(format!("{stem}[.gz]")),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither the plain nor the gzipped file exists",
            ),
        ))
    }
}

/// Loads Fashion-MNIST (or MNIST, which uses the same file names) from `dir`: returns
/// `(train, test)` from `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each plain or with `.gz` appended
/// (the plain file is used where both exist). Images are 28 x 28 x 1, 10 classes.
///
/// # Errors
///
/// [`Error::Io`] if a file is missing or unreadable; otherwise as [`load_idx_pair`].
#[cfg(feature = "fs")]
pub fn fashion_mnist(dir: &Path, limits: &LoadLimits) -> Result<(Dataset, Dataset)> {
    let train = load_idx_pair(
        &find(dir, "train-images-idx3-ubyte")?,
        &find(dir, "train-labels-idx1-ubyte")?,
        limits,
    )?;
    let test = load_idx_pair(
        &find(dir, "t10k-images-idx3-ubyte")?,
        &find(dir, "t10k-labels-idx1-ubyte")?,
        limits,
    )?;
    Ok((train, test))
}

/// The Fashion-MNIST subset shipped in the crate's `data/` folder, embedded in the binary so
/// it loads from any working directory: `(train, test)` with the first 2,000 training and the
/// first 500 test images of Fashion-MNIST (28 x 28 x 1, 10 classes). See `data/README.md` for
/// source, licence and class balance.
///
/// ```
/// # fn main() -> wgnn::Result<()> {
/// let (train, test) = wgnn::data::shipped_fashion_mnist()?;
/// assert_eq!(train.images.len(), 2000 * 28 * 28);
/// assert_eq!(test.labels.len(), 500);
/// assert!(train.labels.iter().all(|&l| l < 10));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// None in practice (the files are fixed); the loaders' errors if the embedded files were
/// damaged.
pub fn shipped_fashion_mnist() -> Result<(Dataset, Dataset)> {
    const FILES: [(&str, &[u8]); 4] = [
        (
            "data/train-images-idx3-ubyte.gz",
            include_bytes!("../../data/train-images-idx3-ubyte.gz"),
        ),
        (
            "data/train-labels-idx1-ubyte.gz",
            include_bytes!("../../data/train-labels-idx1-ubyte.gz"),
        ),
        (
            "data/t10k-images-idx3-ubyte.gz",
            include_bytes!("../../data/t10k-images-idx3-ubyte.gz"),
        ),
        (
            "data/t10k-labels-idx1-ubyte.gz",
            include_bytes!("../../data/t10k-labels-idx1-ubyte.gz"),
        ),
    ];
    let limits = LoadLimits::default();
    let [a, b, c, d] = FILES.map(|(name, bytes)| read_idx(bytes, &limits, name));
    let train = pair_to_dataset(a?, b?, FILES[0].0, FILES[1].0, &limits)?;
    let test = pair_to_dataset(c?, d?, FILES[2].0, FILES[3].0, &limits)?;
    Ok((train, test))
}
