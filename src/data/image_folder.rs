//! A folder of images with one sub-folder per class (Keras `image_dataset_from_directory`).

use std::ffi::OsString;
use std::fs::{self, DirEntry};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{ImageBuffer, ImageDecoder, ImageReader, Pixel};

use super::{Dataset, LoadLimits, data_err, io_err, read_file};
use crate::{Error, Result};

/// File extensions taken as images (compared without regard to case).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The entries of `dir` whose type (not followed through symlinks) passes `keep`, sorted by
/// name.
fn sorted_entries(
    dir: &Path,
    keep: impl Fn(&DirEntry, &fs::FileType) -> bool,
) -> Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        // `DirEntry::file_type` does not follow symlinks: a link is neither a dir nor a file.
        let kind = entry.file_type().map_err(|e| io_err(&entry.path(), e))?;
        if keep(&entry, &kind) {
            out.push((entry.file_name(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn is_image_name(entry: &DirEntry) -> bool {
    Path::new(&entry.file_name())
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decodes one image held in memory (PNG or JPEG, recognised from its contents), converts it
/// to grey (`channels` 1) or RGB (`channels` 3, alpha dropped) and resizes it to `height` x
/// `width` with a triangle (bilinear) filter where its size differs. Returns the
/// `height * width * channels` pixel bytes, HWC. `name` stands for the input in error
/// messages. This is what [`image_folder`] does with each file.
///
/// Before any pixel is allocated, the header's size is checked against
/// `limits.max_image_side` (strictly, on both sides), the decoded size against
/// `limits.max_alloc` and against `limits.max_decode_ratio` times the input's length.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut png = std::io::Cursor::new(Vec::new());
/// image::RgbImage::from_pixel(4, 2, image::Rgb([9, 8, 7])).write_to(&mut png, image::ImageFormat::Png)?;
/// let limits = wgnn::data::LoadLimits::default();
/// let pixels = wgnn::data::read_image(png.get_ref(), 2, 4, 3, &limits, "<bytes>")?;
/// assert_eq!(pixels, [9, 8, 7].repeat(8));
/// let err = wgnn::data::read_image(b"GIF89a", 2, 4, 3, &limits, "x.png").unwrap_err();
/// assert_eq!(err.to_string(), "x.png: not a PNG or JPEG image (unrecognised signature)");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Argument`] if `channels` is not 1 or 3, or `height` or `width` is 0 or over
/// `limits.max_image_side`; [`Error::Data`] naming `name` if the input is over
/// `limits.max_bytes`, not a PNG or JPEG, corrupt, or over the decoding limits.
pub fn read_image(
    bytes: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    limits: &LoadLimits,
    name: &str,
) -> Result<Vec<u8>> {
    let (h, w) = check_target("read_image", height, width, channels, limits)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(data_err(
            name,
            format!(
                "input holds {} bytes, over max_bytes {}",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    decode(bytes, h, w, channels, limits, name)
}

/// Checks the target size and channel count of [`read_image`] and [`image_folder`].
fn check_target(
    op: &'static str,
    height: usize,
    width: usize,
    channels: usize,
    limits: &LoadLimits,
) -> Result<(u32, u32)> {
    if channels != 1 && channels != 3 {
        return Err(Error::arg(
            op,
            format!("channels is {channels}, not 1 or 3"),
        ));
    }
    let side = |s: usize, what: &str| {
        u32::try_from(s)
            .ok()
            .filter(|&s| s > 0 && s <= limits.max_image_side)
            .ok_or_else(|| {
                Error::arg(
                    op,
                    format!(
                        "{what} {s} is not in 1..={} (max_image_side)",
                        limits.max_image_side
                    ),
                )
            })
    };
    Ok((side(height, "height")?, side(width, "width")?))
}

/// Decodes `bytes` within `limits` to `height` x `width` x `channels` pixels.
fn decode(
    bytes: &[u8],
    height: u32,
    width: u32,
    channels: usize,
    limits: &LoadLimits,
    name: &str,
) -> Result<Vec<u8>> {
    let undecodable = |e: image::ImageError| data_err(name, format!("cannot decode image: {e}"));
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| data_err(name, format!("cannot read image: {e}")))?;
    if !matches!(
        reader.format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        return Err(data_err(
            name,
            "not a PNG or JPEG image (unrecognised signature)",
        ));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_end(bytes, name)?;
    }
    // The image crate's defaults are no side limit and a non-strict 512 MiB.
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_image_side);
    decoder_limits.max_image_height = Some(limits.max_image_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits.clone());
    // Reads the header only; the side limits are checked here.
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let total = decoder.total_bytes();
    decoder_limits.reserve(total).map_err(undecodable)?;
    let most = limits.max_decode_ratio.saturating_mul(bytes.len() as u64);
    if total > most {
        let (w, h) = decoder.dimensions();
        return Err(data_err(
            name,
            format!(
                "image of {w} x {h} pixels decodes to {total} bytes, more than \
                 max_decode_ratio {} times its {} bytes",
                limits.max_decode_ratio,
                bytes.len()
            ),
        ));
    }
    // What is left of max_alloc bounds the decoder's own buffers.
    decoder.set_limits(decoder_limits).map_err(undecodable)?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    fn fit<P: Pixel<Subpixel = u8> + 'static>(
        img: ImageBuffer<P, Vec<u8>>,
        height: u32,
        width: u32,
    ) -> Vec<u8> {
        if img.dimensions() == (width, height) {
            img.into_raw()
        } else {
            imageops::resize(&img, width, height, FilterType::Triangle).into_raw()
        }
    }
    // `into_*` reuses the decoded buffer when it already has the wanted pixel type.
    Ok(if channels == 1 {
        fit(img.into_luma8(), height, width)
    } else {
        fit(img.into_rgb8(), height, width)
    })
}

/// Refuses a truncated JPEG, which the decoder would otherwise complete with grey: the last
/// start-of-scan marker (FF DA) must be followed by an end-of-image marker (FF D9). Neither
/// can occur inside entropy-coded data (an FF there is followed by 00 or a restart marker),
/// an embedded thumbnail lies before the main image's scans, and bytes after the end marker
/// are allowed.
fn check_jpeg_end(bytes: &[u8], name: &str) -> Result<()> {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xff, marker]);
    match (last(0xda), last(0xd9)) {
        (Some(scan), Some(end)) if end > scan => Ok(()),
        (Some(scan), _) => Err(data_err(
            name,
            format!(
                "JPEG truncated: no end-of-image marker (FF D9) after the scan at byte {scan} \
                 ({} bytes)",
                bytes.len()
            ),
        )),
        (None, _) => Err(data_err(
            name,
            format!(
                "JPEG has no start-of-scan marker (FF DA) in its {} bytes",
                bytes.len()
            ),
        )),
    }
}

/// Reads and decodes one image file, appending its pixels to `out`.
fn load_image(
    path: &Path,
    height: u32,
    width: u32,
    channels: usize,
    limits: &LoadLimits,
    out: &mut Vec<u8>,
) -> Result<()> {
    let bytes = read_file(path, limits, 0)?;
    let pixels = decode(
        &bytes,
        height,
        width,
        channels,
        limits,
        &path.display().to_string(),
    )?;
    out.extend_from_slice(&pixels);
    Ok(())
}

/// Loads a folder of images, one sub-folder per class: the sub-folders, sorted by name, are
/// classes 0, 1, 2, ...; each holds `.png`, `.jpg` or `.jpeg` files (any case), taken in name
/// order. Every image is decoded (format recognised from its contents), converted to grey
/// (`channels` 1) or RGB (`channels` 3, alpha dropped) and resized to `height` x `width` with
/// a triangle (bilinear) filter where its size differs. Returns NHWC u8 pixels.
///
/// Symbolic links inside `dir` are not followed (neither class folders nor files); files
/// with other extensions, files directly in `dir` and folders inside class folders are
/// ignored. Each file is limited to `limits.max_bytes`, decoding to `limits.max_image_side`
/// pixels per side and `limits.max_alloc` bytes, and the whole data set to
/// `limits.max_bytes` pixel bytes (checked before decoding).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wgnn::data::{LoadLimits, image_folder};
/// let dir = std::env::temp_dir().join(format!("wgnn-doc-folder-{}", std::process::id()));
/// for (class, colour) in [("daisy", [250, 250, 250]), ("rose", [200, 0, 0])] {
///     std::fs::create_dir_all(dir.join(class))?;
///     image::RgbImage::from_pixel(8, 8, image::Rgb(colour)).save(dir.join(class).join("1.png"))?;
/// }
/// let flowers = image_folder(&dir, 4, 4, 3, &LoadLimits::default())?;
/// std::fs::remove_dir_all(&dir)?;
/// assert_eq!((flowers.count, flowers.classes, flowers.labels.clone()), (2, 2, vec![0, 1]));
/// assert_eq!(flowers.image_len(), 4 * 4 * 3);
/// assert_eq!(flowers.images[48..51], [200, 0, 0]); // the rose, resized to 4 x 4
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Argument`] if `channels` is not 1 or 3, or `height` or `width` is 0 or over
/// `limits.max_image_side`; [`Error::Io`] if a folder or file cannot be read;
/// [`Error::Data`] if `dir` has no class folders or more than 256, holds no images, would
/// hold more than `limits.max_bytes` pixel bytes, or if a file is over `limits.max_bytes`,
/// not a PNG or JPEG, corrupt or over the decoding limits (naming the file). To skip such
/// files instead, use [`ImageFolder`] with `skip_unreadable`.
pub fn image_folder(
    dir: &Path,
    height: usize,
    width: usize,
    channels: usize,
    limits: &LoadLimits,
) -> Result<Dataset> {
    let options = ImageFolder {
        height,
        width,
        channels,
        limits: *limits,
        skip_unreadable: false,
    };
    Ok(options.load(dir)?.data)
}

/// Options of an image-folder load: [`image_folder`] with every option, including skipping
/// files that cannot be read or decoded.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wgnn::data::ImageFolder;
/// let dir = std::env::temp_dir().join(format!("wgnn-doc-skip-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("cat"))?;
/// image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3])).save(dir.join("cat/1.png"))?;
/// std::fs::write(dir.join("cat/2.png"), b"not a picture")?;
/// let options = ImageFolder { skip_unreadable: true, ..ImageFolder::new(4, 4, 3) };
/// let loaded = options.load(&dir)?;
/// std::fs::remove_dir_all(&dir)?;
/// assert_eq!(loaded.data.count, 1);
/// assert_eq!(loaded.skipped.len(), 1);
/// assert!(loaded.skipped[0].path.ends_with("cat/2.png"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageFolder {
    /// Height every image is resized to.
    pub height: usize,
    /// Width every image is resized to.
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Bounds on each file and on the whole data set.
    pub limits: LoadLimits,
    /// Skip (and report in [`FolderLoad::skipped`]) image files that cannot be read or
    /// decoded, instead of failing on the first. Default: false.
    pub skip_unreadable: bool,
}

/// What [`ImageFolder::load`] returns: the data set and the files it skipped.
#[derive(Debug)]
pub struct FolderLoad {
    /// The images that were read, labelled by class folder.
    pub data: Dataset,
    /// The files skipped (only with `skip_unreadable`), in the order met, each with its
    /// error; `skipped.len()` is their count.
    pub skipped: Vec<SkippedFile>,
}

/// An image file that [`ImageFolder::load`] skipped.
#[derive(Debug)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be used (the error that would otherwise have been returned).
    pub error: Error,
}

impl ImageFolder {
    /// `height` x `width` x `channels`, default limits, failing on the first unreadable
    /// file.
    pub fn new(height: usize, width: usize, channels: usize) -> ImageFolder {
        ImageFolder {
            height,
            width,
            channels,
            limits: LoadLimits::default(),
            skip_unreadable: false,
        }
    }

    /// Loads `dir` as [`image_folder`] describes.
    ///
    /// # Errors
    ///
    /// As [`image_folder`], except that with `skip_unreadable` a file that cannot be read or
    /// decoded is skipped and reported; [`Error::Data`] if every image file was skipped.
    pub fn load(&self, dir: &Path) -> Result<FolderLoad> {
        let (height, width, channels, limits) =
            (self.height, self.width, self.channels, &self.limits);
        let (h, w) = check_target("image_folder", height, width, channels, limits)?;
        let name = dir.display().to_string();

        let classes = sorted_entries(dir, |_, kind| kind.is_dir())?;
        if classes.is_empty() {
            return Err(data_err(name, "no class sub-folders"));
        }
        if classes.len() > 256 {
            return Err(data_err(
                name,
                format!("{} class sub-folders, more than 256", classes.len()),
            ));
        }
        let mut files = Vec::new();
        for (label, (_, class_dir)) in classes.iter().enumerate() {
            let found = sorted_entries(class_dir, |e, kind| kind.is_file() && is_image_name(e))?;
            files.extend(found.into_iter().map(|(_, path)| (path, label as u8)));
        }
        if files.is_empty() {
            return Err(data_err(
                name,
                format!(
                    "no .png, .jpg or .jpeg files in its {} class sub-folders",
                    classes.len()
                ),
            ));
        }
        let total = (files.len() as u64)
            .checked_mul(u64::from(h))
            .and_then(|t| t.checked_mul(u64::from(w)))
            .and_then(|t| t.checked_mul(channels as u64))
            .filter(|&t| t <= limits.max_bytes)
            .ok_or_else(|| {
                data_err(
                    &name,
                    format!(
                        "{} images of {height} x {width} x {channels} exceed max_bytes {}",
                        files.len(),
                        limits.max_bytes
                    ),
                )
            })?;
        let mut images = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut labels = Vec::with_capacity(files.len());
        let mut skipped = Vec::new();
        for (path, label) in files {
            match load_image(&path, h, w, channels, limits, &mut images) {
                Ok(()) => labels.push(label),
                Err(error) if self.skip_unreadable => skipped.push(SkippedFile { path, error }),
                Err(e) => return Err(e),
            }
        }
        if labels.is_empty() {
            return Err(data_err(
                name,
                format!(
                    "none of its {} image files could be read (all skipped)",
                    skipped.len()
                ),
            ));
        }
        images.shrink_to_fit();
        Ok(FolderLoad {
            data: Dataset {
                images,
                count: labels.len(),
                labels,
                height,
                width,
                channels,
                classes: classes.len(),
            },
            skipped,
        })
    }
}
