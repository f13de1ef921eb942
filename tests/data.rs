//! Data loaders: the shipped subset, IDX round trips and hostile IDX input, CIFAR batches and
//! image folders. No GPU needed.

mod common;

use common::{TempDir, png_declaring};
use std::io::Write;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use wgnn::data::{self, Dataset, IdxArray, LoadLimits};

// ---------------------------------------------------------------------------------------------
// Helpers

/// An IDX file written independently of the library: header fields as given.
fn idx_raw(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, ty, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    idx_raw(0x08, dims, data)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn limits() -> LoadLimits {
    LoadLimits::default()
}

/// The error message of `r`, which must be an `Err`.
fn err<T: std::fmt::Debug>(r: wgnn::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn read_err(bytes: &[u8]) -> String {
    err(data::read_idx(bytes, &limits(), "x"))
}

// ---------------------------------------------------------------------------------------------
// Shipped subset

#[test]
fn idx_shipped_fashion_mnist_loads() {
    let (train, test) = data::shipped_fashion_mnist().unwrap();
    for (set, count) in [(&train, 2000), (&test, 500)] {
        assert_eq!(set.count, count);
        assert_eq!(
            (set.height, set.width, set.channels, set.classes),
            (28, 28, 1, 10)
        );
        assert_eq!(set.image_len(), 784);
        assert_eq!(set.images.len(), count * 784);
        assert_eq!(set.labels.len(), count);
        assert!(set.labels.iter().all(|&l| l < 10));
        set.check().unwrap();
    }
    // The first labels and the pixel sums of Fashion-MNIST's first 2000 / 500 images (read
    // from the original files with Python's gzip module).
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    let sum = |s: &Dataset| s.images.iter().map(|&p| u64::from(p)).sum::<u64>();
    assert_eq!((sum(&train), sum(&test)), (113_529_887, 29_494_551));
    assert_eq!(
        train.class_counts(),
        [194, 216, 202, 195, 186, 200, 194, 215, 198, 200]
    );
    assert_eq!(
        test.class_counts(),
        [55, 52, 65, 46, 57, 39, 47, 47, 44, 48]
    );
}

// ---------------------------------------------------------------------------------------------
// IDX round trips

#[test]
fn idx_round_trip_plain_and_gzip() {
    for dims in [&[5][..], &[3, 5, 7], &[2, 3, 4, 5], &[1, 1]] {
        let n: u32 = dims.iter().product();
        let values: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        let plain = idx(dims, &values);
        let want = IdxArray {
            dims: dims.iter().map(|&d| d as usize).collect(),
            data: values.clone(),
        };
        assert_eq!(data::read_idx(&plain, &limits(), "p").unwrap(), want);
        assert_eq!(data::read_idx(&gz(&plain), &limits(), "g").unwrap(), want);
        assert_eq!(
            data::read_idx_reader(&plain[..], &limits(), "p").unwrap(),
            want
        );
        assert_eq!(
            data::read_idx_reader(&gz(&plain)[..], &limits(), "g").unwrap(),
            want
        );
    }
}

#[test]
fn idx_pair_and_fashion_mnist_from_files() {
    let dir = TempDir::new("mnist");
    let images: Vec<u8> = (0..3 * 4 * 5).map(|i| i as u8).collect();
    // Training files gzipped, test files plain.
    dir.write("train-images-idx3-ubyte.gz", &gz(&idx(&[3, 4, 5], &images)));
    dir.write("train-labels-idx1-ubyte.gz", &gz(&idx(&[3], &[9, 0, 4])));
    dir.write("t10k-images-idx3-ubyte", &idx(&[1, 4, 5], &images[..20]));
    dir.write("t10k-labels-idx1-ubyte", &idx(&[1], &[7]));
    let (train, test) = data::fashion_mnist(dir.path(), &limits()).unwrap();
    assert_eq!(
        train,
        Dataset {
            images: images.clone(),
            labels: vec![9, 0, 4],
            count: 3,
            height: 4,
            width: 5,
            channels: 1,
            classes: 10
        }
    );
    assert_eq!((test.count, test.labels.clone()), (1, vec![7]));
    assert_eq!(test.images, images[..20]);

    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    assert_eq!(
        err(data::fashion_mnist(dir.path(), &limits())),
        format!(
            "{}/t10k-labels-idx1-ubyte[.gz]: neither the plain nor the gzipped file exists",
            dir.path().display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// IDX rejections

#[test]
fn idx_rejects_bad_magic() {
    assert_eq!(
        read_err(&[0x12, 0, 8, 1, 0, 0, 0, 1, 0]),
        "x: IDX header at byte 0: magic byte 0x12 is not 0x00"
    );
    assert_eq!(
        read_err(&[0, 0x34, 8, 1, 0, 0, 0, 1, 0]),
        "x: IDX header at byte 1: magic byte 0x34 is not 0x00"
    );
    // A gzip magic with a broken gzip header is not taken as IDX.
    assert_eq!(
        read_err(&[0x1f, 0x8b, 0, 0]),
        "x: gzip stream corrupt at decompressed byte 0: unexpected end of file"
    );
    assert_eq!(
        read_err(&[0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0]),
        "x: gzip stream corrupt at decompressed byte 0: invalid gzip header"
    );
}

#[test]
fn idx_rejects_wrong_type() {
    let bytes = idx_raw(0x0d, &[1, 2], &[0; 8]);
    assert_eq!(
        read_err(&bytes),
        "x: IDX header at byte 2: element type 0x0d is not 0x08 (unsigned byte)"
    );
    assert_eq!(
        err(data::read_idx(
            &gz(&bytes),
            &limits(),
            "train-images-idx3-ubyte.gz"
        )),
        "train-images-idx3-ubyte.gz: IDX header at byte 2: element type 0x0d is not 0x08 \
         (unsigned byte)"
    );
}

#[test]
fn idx_rejects_dimension_count_0_and_5() {
    assert_eq!(
        read_err(&idx(&[], &[])),
        "x: IDX header at byte 3: 0 dimensions, expected 1 to 4"
    );
    assert_eq!(
        read_err(&idx(&[1, 1, 1, 1, 1], &[0])),
        "x: IDX header at byte 3: 5 dimensions, expected 1 to 4"
    );
    assert_eq!(
        read_err(&gz(&idx(&[1, 1, 1, 1, 1], &[0]))),
        "x: IDX header at byte 3: 5 dimensions, expected 1 to 4"
    );
}

#[test]
fn idx_rejects_zero_dimension() {
    assert_eq!(
        read_err(&idx(&[2, 0, 3], &[])),
        "x: IDX header at byte 8: dimension 1 is 0"
    );
    assert_eq!(
        read_err(&gz(&idx(&[0], &[]))),
        "x: IDX header at byte 4: dimension 0 is 0"
    );
}

#[test]
fn idx_rejects_truncated_input() {
    let full = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]); // 12 header bytes, 6 data bytes
    for (cut, msg) in [
        (
            0,
            "IDX header at byte 0: input ends inside the header after 0 bytes",
        ),
        (
            2,
            "IDX header at byte 2: input ends inside the header after 2 bytes",
        ),
        (
            3,
            "IDX header at byte 3: input ends inside the header after 3 bytes",
        ),
        (
            4,
            "IDX header at byte 4: input ends inside the header after 4 bytes",
        ),
        (
            9,
            "IDX header at byte 9: input ends inside the header after 9 bytes",
        ),
        (
            12,
            "IDX data at byte 12: input ends after 0 of the 6 bytes declared by dimensions [2, 3]",
        ),
        (
            17,
            "IDX data at byte 17: input ends after 5 of the 6 bytes declared by dimensions [2, 3]",
        ),
    ] {
        // The same message for plain input and for a complete gzip stream of the cut file.
        assert_eq!(read_err(&full[..cut]), format!("x: {msg}"), "cut {cut}");
        assert_eq!(
            read_err(&gz(&full[..cut])),
            format!("x: {msg}"),
            "gz cut {cut}"
        );
    }
    // A gzip stream that is itself cut short (its deflate data or its CRC/length trailer).
    let big: Vec<u8> = (0..4000u32).map(|i| (i * i % 251) as u8).collect();
    let stream = gz(&idx(&[4000], &big));
    let n = stream.len();
    assert_eq!(n, 355);
    for (cut, msg) in [
        (2, "at decompressed byte 0: unexpected end of file"),
        // flate2 1.1.9 (Cargo.lock) reports a cut deflate stream as "unexpected end of file";
        // 1.1.11 said "incomplete deflate stream" for the cuts at 10 and 177.
        (10, "at decompressed byte 0: unexpected end of file"),
        (177, "at decompressed byte 105: unexpected end of file"),
        (347, "at decompressed byte 4008: unexpected end of file"), // CRC and length cut
        (354, "at decompressed byte 4008: unexpected end of file"),
    ] {
        assert_eq!(
            read_err(&stream[..cut]),
            format!("x: gzip stream corrupt {msg}"),
            "cut {cut}"
        );
    }
    // A damaged CRC fails the check at the end of the stream.
    let mut flipped = gz(&idx(&[4], &[1, 2, 3, 4]));
    let k = flipped.len() - 8;
    flipped[k] ^= 0x01;
    assert_eq!(
        read_err(&flipped),
        "x: gzip stream corrupt at decompressed byte 12: corrupt gzip stream does not have a \
         matching checksum"
    );
}

#[test]
fn idx_rejects_trailing_bytes() {
    let mut bytes = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    bytes.extend_from_slice(&[7, 8, 9]);
    assert_eq!(
        read_err(&bytes),
        "x: IDX data at byte 18: 3 trailing bytes after the 6 bytes declared by dimensions \
         [2, 3]"
    );
    assert_eq!(
        read_err(&gz(&bytes)),
        "x: IDX data at byte 18: trailing data after the 6 bytes declared by dimensions [2, 3]"
    );
    let mut stream = gz(&bytes[..18]);
    let end = stream.len();
    stream.extend_from_slice(b"junk");
    assert_eq!(
        read_err(&stream),
        format!("x: gzip: 4 bytes after the end of the gzip stream at byte {end}")
    );
}

#[test]
fn idx_rejects_huge_header_without_allocating() {
    let header = idx(&[1 << 31, 1 << 31], &[]);
    assert_eq!(
        read_err(&header),
        "x: IDX header at byte 4: dimensions [2147483648, 2147483648] declare \
         4611686018427387904 bytes, over max_bytes 2147483648"
    );
    // With no byte limit, the header is checked against the bytes actually present (plain)
    // or the stream runs dry (gzip); neither allocates 4 EiB.
    let unlimited = LoadLimits {
        max_bytes: u64::MAX,
        ..limits()
    };
    let msg = "x: IDX data at byte 12: input ends after 0 of the 4611686018427387904 bytes \
               declared by dimensions [2147483648, 2147483648]";
    assert_eq!(err(data::read_idx(&header, &unlimited, "x")), msg);
    assert_eq!(err(data::read_idx(&gz(&header), &unlimited, "x")), msg);
    assert_eq!(
        read_err(&idx(&[u32::MAX; 4], &[])),
        "x: IDX header at byte 4: dimensions [4294967295, 4294967295, 4294967295, 4294967295] \
         declare more than 2^64 bytes, over max_bytes 2147483648"
    );
}

#[test]
fn idx_gzip_bomb_rejected_before_inflating() {
    let small = LoadLimits {
        max_bytes: 1 << 20,
        ..limits()
    };
    let zeros = vec![0u8; 16 << 20];
    // A header claiming 16 MiB over 16 MiB of zeros (about 16 KB compressed).
    let bomb = gz(&idx(&[16, 1024, 1024], &zeros));
    let start = Instant::now();
    assert_eq!(
        err(data::read_idx(&bomb, &small, "bomb.gz")),
        "bomb.gz: IDX header at byte 4: dimensions [16, 1024, 1024] declare 16777216 bytes, \
         over max_bytes 1048576"
    );
    // A header claiming 1000 bytes over the same 16 MiB of zeros: at most 1001 are inflated.
    let mut lying = idx(&[1000], &[]);
    lying.extend_from_slice(&zeros);
    let lying = gz(&lying);
    assert_eq!(
        err(data::read_idx(&lying, &small, "lying.gz")),
        "lying.gz: IDX data at byte 1008: trailing data after the 1000 bytes declared by \
         dimensions [1000]"
    );
    eprintln!(
        "gzip bombs ({} and {} compressed bytes) rejected in {:?}",
        bomb.len(),
        lying.len(),
        start.elapsed()
    );
}

#[test]
fn idx_pair_rejects_bad_label_and_count_mismatch() {
    let dir = TempDir::new("pair");
    let images = dir.write("img", &idx(&[3, 2, 2], &[0; 12]));
    let bad = dir.write("bad-labels", &idx(&[3], &[1, 10, 2]));
    let short = dir.write("short-labels.gz", &gz(&idx(&[2], &[1, 2])));
    let flat = dir.write("flat-images", &idx(&[12], &[0; 12]));
    assert_eq!(
        err(data::load_idx_pair(&images, &bad, &limits())),
        format!(
            "{}: IDX data at byte 9: label 10 of item 1 is not below 10",
            bad.display()
        )
    );
    assert_eq!(
        err(data::load_idx_pair(&images, &short, &limits())),
        format!(
            "{}: holds 2 labels, but {} holds 3 images",
            short.display(),
            images.display()
        )
    );
    assert_eq!(
        err(data::load_idx_pair(&flat, &short, &limits())),
        format!(
            "{}: IDX images have dimensions [12]; expected [count, height, width] or \
             [count, height, width, channels]",
            flat.display()
        )
    );
    assert_eq!(
        err(data::load_idx_pair(&images, &images, &limits())),
        format!(
            "{}: IDX labels have dimensions [3, 2, 2]; expected [count]",
            images.display()
        )
    );
    let tiny = LoadLimits {
        max_bytes: 4,
        ..limits()
    };
    assert_eq!(
        err(data::load_idx_pair(&images, &bad, &tiny)),
        format!(
            "{}: file holds 28 bytes, over max_bytes 4 plus a 20-byte header",
            images.display()
        )
    );
    let tiny = LoadLimits {
        max_bytes: 8,
        ..limits()
    };
    assert_eq!(
        err(data::load_idx_pair(&images, &bad, &tiny)),
        format!(
            "{}: IDX header at byte 4: dimensions [3, 2, 2] declare 12 bytes, over max_bytes 8",
            images.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10

/// The CHW byte of record `r`, channel `c`, pixel (`y`, `x`).
fn cifar_px(r: usize, c: usize, y: usize, x: usize) -> u8 {
    (r * 71 + c * 29 + y * 7 + x * 3) as u8
}

fn cifar_record(r: usize, label: u8) -> Vec<u8> {
    let mut rec = vec![label];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                rec.push(cifar_px(r, c, y, x));
            }
        }
    }
    rec
}

#[test]
fn cifar_batch_round_trip_chw_to_hwc() {
    let labels = [3u8, 0, 9];
    let bytes: Vec<u8> = (0..3).flat_map(|r| cifar_record(r, labels[r])).collect();
    let set = data::read_cifar_batch(&bytes, "batch").unwrap();
    assert_eq!(
        (set.count, set.height, set.width, set.channels, set.classes),
        (3, 32, 32, 3, 10)
    );
    assert_eq!(set.labels, labels);
    for r in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    let got = set.images[((r * 32 + y) * 32 + x) * 3 + c];
                    assert_eq!(got, cifar_px(r, c, y, x), "record {r} c {c} y {y} x {x}");
                }
            }
        }
    }
    // The same through files.
    let dir = TempDir::new("cifar");
    for n in 1..=5 {
        dir.write(&format!("data_batch_{n}.bin"), &cifar_record(n, n as u8));
    }
    dir.write("test_batch.bin", &bytes);
    let (train, test) = data::cifar10(dir.path(), &limits()).unwrap();
    assert_eq!(train.count, 5);
    assert_eq!(train.labels, [1, 2, 3, 4, 5]);
    assert_eq!(train.images.len(), 5 * 3072);
    assert_eq!(train.images[3072 * 4 + 1], cifar_px(5, 1, 0, 0));
    assert_eq!(test, set);
}

#[test]
fn cifar_rejects_bad_length_and_label() {
    for len in [0, 3072, 3074, 2 * 3073 + 1] {
        assert_eq!(
            err(data::read_cifar_batch(&vec![0; len], "b.bin")),
            format!(
                "b.bin: CIFAR batch of {len} bytes is not a non-zero multiple of 3073 (1 label \
                 byte and 3072 pixel bytes per record)"
            )
        );
    }
    let mut bytes: Vec<u8> = (0..3).flat_map(|r| cifar_record(r, 1)).collect();
    bytes[2 * 3073] = 10;
    assert_eq!(
        err(data::read_cifar_batch(&bytes, "b.bin")),
        "b.bin: CIFAR record 2 at byte 6146: label 10 is above 9"
    );
    let dir = TempDir::new("cifar-missing");
    assert_eq!(
        err(data::cifar10(dir.path(), &limits())),
        format!(
            "{}/data_batch_1.bin: No such file or directory (os error 2)",
            dir.path().display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Image folders

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    png(&image::RgbImage::from_pixel(w, h, image::Rgb(rgb)))
}

#[test]
fn image_folder_loads_sorted_classes_and_resizes() {
    let dir = TempDir::new("folder");
    // Class folders created out of order: zebra, apple, mango -> apple 0, mango 1, zebra 2.
    dir.write("zebra/1.png", &solid(4, 3, [10, 20, 30]));
    dir.write("apple/b.PNG", &solid(4, 3, [200, 0, 0]));
    dir.write("apple/a.png", &solid(4, 3, [0, 0, 255]));
    // 8 x 6 with a horizontal ramp, resized to 4 x 3.
    let ramp =
        image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([(x * 30) as u8, (y * 40) as u8, 7]));
    dir.write("mango/ramp.png", &png(&ramp));
    // Ignored: a file in the root, a non-image extension, a nested folder, symlinks.
    dir.write("notes.png", &solid(4, 3, [1, 1, 1]));
    dir.write("apple/readme.txt", b"not an image");
    dir.write("apple/nested/c.png", &solid(4, 3, [1, 1, 1]));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("apple"), dir.path().join("link-class"))
            .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("zebra/1.png"),
            dir.path().join("apple/z-link.png"),
        )
        .unwrap();
    }

    let set = data::image_folder(dir.path(), 3, 4, 3, &limits()).unwrap();
    assert_eq!(
        (set.count, set.height, set.width, set.channels, set.classes),
        (4, 3, 4, 3, 3)
    );
    assert_eq!(set.labels, [0, 0, 1, 2]);
    set.check().unwrap();
    let image = |i: usize| &set.images[i * 36..(i + 1) * 36];
    assert!(image(0).chunks(3).all(|p| p == [0, 0, 255]), "apple/a.png");
    assert!(image(1).chunks(3).all(|p| p == [200, 0, 0]), "apple/b.PNG");
    assert!(image(3).chunks(3).all(|p| p == [10, 20, 30]), "zebra/1.png");
    // The ramp went through a triangle-filter resize: compare with the image crate's.
    let want =
        image::imageops::resize(&ramp, 4, 3, image::imageops::FilterType::Triangle).into_raw();
    assert_eq!(image(2), want);
    // A 2:1 triangle filter averages neighbours: red is increasing across each row.
    assert!(image(2)[0] < image(2)[3] && image(2)[3] < image(2)[6]);

    // Grey: pure blue and a grey level survive the conversion as the image crate defines it.
    let grey = data::image_folder(dir.path(), 3, 4, 1, &limits()).unwrap();
    assert_eq!((grey.channels, grey.images.len()), (1, 4 * 12));
    let blue =
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([0, 0, 255])))
            .to_luma8()
            .into_raw()[0];
    assert!(grey.images[..12].iter().all(|&p| p == blue));
}

#[test]
fn image_folder_rejects_corrupt_file() {
    let dir = TempDir::new("corrupt");
    dir.write("a/good.png", &solid(2, 2, [1, 2, 3]));
    let bad = dir.write("b/broken.png", b"this is not a PNG at all");
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 3, &limits())),
        format!(
            "{}: not a PNG or JPEG image (unrecognised signature)",
            bad.display()
        )
    );
    // A real PNG signature over a damaged file.
    let mut cut = solid(2, 2, [1, 2, 3]);
    cut.truncate(40);
    std::fs::write(&bad, &cut).unwrap();
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 3, &limits())),
        format!(
            "{}: cannot decode image: unexpected end of file",
            bad.display()
        )
    );
}

#[test]
fn image_folder_rejects_png_over_limits() {
    let dir = TempDir::new("huge");
    let huge = dir.write("a/huge.png", &png_declaring(100_000, 100_000));
    let start = Instant::now();
    let msg = err(data::image_folder(dir.path(), 2, 2, 3, &limits()));
    assert_eq!(
        msg,
        format!(
            "{}: cannot decode image: Image size exceeds limit",
            huge.display()
        )
    );
    // Within the side limit but over max_alloc (8000 x 8000 x 3 = 192 MB > 1 MiB).
    std::fs::write(&huge, png_declaring(8000, 8000)).unwrap();
    let small_alloc = LoadLimits {
        max_alloc: 1 << 20,
        ..limits()
    };
    let msg = err(data::image_folder(dir.path(), 2, 2, 3, &small_alloc));
    assert_eq!(
        msg,
        format!(
            "{}: cannot decode image: Memory limit exceeded",
            huge.display()
        )
    );
    eprintln!("oversized PNGs rejected in {:?}", start.elapsed());
}

#[test]
fn image_folder_rejects_bad_arguments_and_empty_folders() {
    let dir = TempDir::new("args");
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 2, &limits())),
        "image_folder: channels is 2, not 1 or 3"
    );
    assert_eq!(
        err(data::image_folder(dir.path(), 0, 2, 3, &limits())),
        "image_folder: height 0 is not in 1..=8192 (max_image_side)"
    );
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 9000, 3, &limits())),
        "image_folder: width 9000 is not in 1..=8192 (max_image_side)"
    );
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 3, &limits())),
        format!("{}: no class sub-folders", dir.path().display())
    );
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 3, &limits())),
        format!(
            "{}: no .png, .jpg or .jpeg files in its 1 class sub-folders",
            dir.path().display()
        )
    );
    dir.write("empty/a.png", &solid(2, 2, [0, 0, 0]));
    let tiny = LoadLimits {
        max_bytes: 11,
        ..limits()
    };
    assert_eq!(
        err(data::image_folder(dir.path(), 2, 2, 3, &tiny)),
        format!(
            "{}: 1 images of 2 x 2 x 3 exceed max_bytes 11",
            dir.path().display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Dataset

#[test]
fn dataset_subset_split_check() {
    let set = Dataset {
        images: (0..12).collect(),
        labels: vec![0, 1, 2],
        count: 3,
        height: 2,
        width: 2,
        channels: 1,
        classes: 3,
    };
    let (a, b) = set.split(1).unwrap();
    assert_eq!(
        (a.count, a.images.clone(), a.labels.clone()),
        (1, vec![0, 1, 2, 3], vec![0])
    );
    assert_eq!((b.count, b.labels.clone()), (2, vec![1, 2]));
    assert_eq!(b.images, (4..12).collect::<Vec<u8>>());
    assert_eq!(set.subset(3..3).unwrap().count, 0);
    assert_eq!(
        err(set.subset(2..4)),
        "Dataset::subset: range 2..4 is not within 0..3 (the data set's count)"
    );
    assert_eq!(
        err(set.split(4)),
        "Dataset::split: split point 4 is past the count 3"
    );
    let bad_label = Dataset {
        labels: vec![0, 3, 1],
        ..set.clone()
    };
    assert_eq!(
        err(bad_label.check()),
        "<dataset>: label 3 of image 1 is not below classes 3"
    );
    assert_eq!(
        err(bad_label.subset(0..1)),
        "<dataset>: label 3 of image 1 is not below classes 3"
    );
    let short = Dataset {
        images: vec![0; 11],
        ..set.clone()
    };
    assert_eq!(
        err(short.check()),
        "<dataset>: images holds 11 bytes, but count 3 x height 2 x width 2 x channels 1 needs 12"
    );
    let few_labels = Dataset {
        labels: vec![0],
        ..set
    };
    assert_eq!(
        err(few_labels.check()),
        "<dataset>: labels holds 1 entries, but count is 3"
    );
}
