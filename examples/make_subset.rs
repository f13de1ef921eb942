//! Writes the Fashion-MNIST subset shipped in `data/`: the first 2,000 training and the first
//! 500 test images with their labels, as gzipped IDX files.
//!
//! ```text
//! cargo run --example make_subset [-- SOURCE_DIR [OUT_DIR]]
//! ```
//!
//! SOURCE_DIR defaults to Debian's `/usr/share/datasets/fashion-mnist` (package
//! `dataset-fashion-mnist`), OUT_DIR to the crate's `data/`. The files are read with
//! `wgnn::data` and written by the small IDX writer below; the output is deterministic (gzip
//! header time 0), so rerunning reproduces the shipped bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use wgnn::data::{Dataset, LoadLimits};

const TRAIN: usize = 2000;
const TEST: usize = 500;

/// An IDX file of unsigned bytes: magic, type 0x08, dimension count, big-endian dimensions.
fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&u32::try_from(d).expect("dimension fits u32").to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn write_gz(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(bytes)?;
    std::fs::write(path, gz.finish()?)?;
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        std::fs::metadata(path)?.len()
    );
    Ok(())
}

fn write_pair(out: &Path, prefix: &str, set: &Dataset) -> std::io::Result<()> {
    let images = idx_bytes(&[set.count, set.height, set.width], &set.images);
    write_gz(&out.join(format!("{prefix}-images-idx3-ubyte.gz")), &images)?;
    let labels = idx_bytes(&[set.count], &set.labels);
    write_gz(&out.join(format!("{prefix}-labels-idx1-ubyte.gz")), &labels)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let source = args.next().map_or_else(
        || PathBuf::from("/usr/share/datasets/fashion-mnist"),
        PathBuf::from,
    );
    let out = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("data"),
        PathBuf::from,
    );
    let (train, test) = wgnn::data::fashion_mnist(&source, &LoadLimits::default())?;
    let train = train.subset(0..TRAIN)?;
    let test = test.subset(0..TEST)?;
    std::fs::create_dir_all(&out)?;
    write_pair(&out, "train", &train)?;
    write_pair(&out, "t10k", &test)?;
    println!("train class counts: {:?}", train.class_counts());
    println!("test class counts:  {:?}", test.class_counts());
    Ok(())
}
