//! `Gpu::counters()` sees every buffer and bind group wgnn creates: raw creation calls exist
//! only in src/gpu.rs (checked by reading the sources, no GPU needed), and readbacks count
//! their staging buffers.

#[path = "common/sources.rs"]
mod sources;
use sources::rust_files;
use std::path::Path;

/// The one module allowed to call wgpu's creation functions (its counted helpers).
const HELPERS: &str = "gpu.rs";

/// wgpu calls that create a buffer or a bind group without counting it.
const RAW: [&str; 3] = [
    "create_buffer(",
    "create_buffer_init(",
    "create_bind_group(",
];

/// `(line number, raw call)` for each raw creation call in `text`, comments left out.
/// Unit tests (`#[cfg(test)]` modules) count too: they run on counted `Gpu`s as well.
fn raw_calls(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        for raw in RAW {
            if code.contains(raw) {
                out.push((i + 1, raw));
            }
        }
    }
    out
}

#[test]
fn counted_raw_buffer_and_bind_group_creation_only_in_gpu_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(files.len() > 20, "only {} files under src/", files.len());
    let mut outside = Vec::new();
    let mut inside = Vec::new();
    for path in &files {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rel = path.strip_prefix(&src).expect("under src/");
        for (line, raw) in raw_calls(&text) {
            if rel == Path::new(HELPERS) {
                inside.push(raw);
            } else {
                outside.push(format!("src/{}:{line}: {raw}", rel.display()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "raw creation calls outside src/{HELPERS} (use Gpu::counted_buffer, \
         counted_buffer_with or counted_bind_group):\n{}",
        outside.join("\n")
    );
    // The helpers themselves: one raw call each, so the scan cannot pass by looking in the
    // wrong place.
    inside.sort_unstable();
    assert_eq!(
        inside,
        ["create_bind_group(", "create_buffer("],
        "raw calls in src/{HELPERS}"
    );
}

#[test]
fn counted_scan_sees_a_raw_call() {
    let code = "    let b = gpu.device().create_buffer(&desc);\n    // create_bind_group( in a comment\n    let g = d.create_bind_group(&x); // create_buffer_init(";
    assert_eq!(
        raw_calls(code),
        [(1, "create_buffer("), (3, "create_bind_group(")]
    );
}

#[test]
fn counted_readback_creates_one_staging_buffer_per_size_then_reuses_it() {
    let gpu = wgnn::Gpu::software().unwrap(); // its own counters
    let a = wgnn::Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0], &[3]).unwrap();
    let b = wgnn::Tensor::from_slice(&gpu, &[4.0, 5.0, 6.0], &[3]).unwrap();
    let c = wgnn::Tensor::from_slice(&gpu, &[7.0; 5], &[5]).unwrap();
    let before = gpu.counters();
    assert_eq!(a.to_vec().unwrap(), [1.0, 2.0, 3.0]);
    let one = gpu.counters();
    assert_eq!(
        one.buffers_created - before.buffers_created,
        1,
        "the first readback creates its staging buffer"
    );
    assert_eq!(b.to_vec().unwrap(), [4.0, 5.0, 6.0]);
    assert_eq!(a.to_vec().unwrap(), [1.0, 2.0, 3.0]);
    assert_eq!(
        gpu.counters().buffers_created,
        one.buffers_created,
        "readbacks of the same size reuse it"
    );
    assert_eq!(c.to_vec().unwrap(), [7.0; 5]);
    assert_eq!(
        gpu.counters().buffers_created - one.buffers_created,
        1,
        "another size, another staging buffer"
    );
    assert_eq!(
        gpu.counters().bind_groups_created,
        before.bind_groups_created
    );
}
