//! The crate's layers, checked by reading its sources (no GPU needed).
//!
//! ```text
//! nn/        layers, Sequential, fit/evaluate/predict, weights files   -> graph, data
//! graph/     build, autodiff, plan, record, submit                      -> kernels, device
//! data/      loaders; resident data sets (upload once, gather on GPU)   -> device
//! ops/       eager ops: one call = record + submit (+ optional wait)    -> kernels, device
//! kernels/   one module per shader family: pipelines, params, record    -> device, philox
//! gpu.rs, tensor.rs (device)   philox.rs, spec.rs (pure)   reference/ (pure f64 CPU)
//! ```
//!
//! An arrow points down only. "Device" is `gpu`, `tensor` and `error`; the pure modules
//! (`philox`, `spec`, `error`) may be used by every layer. The test scaffolding (`testing`)
//! sits above everything and exists only with the `testing` feature.

use std::collections::BTreeSet;
#[path = "common/sources.rs"]
mod sources;
use sources::rust_files;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer a source file belongs to: its first path component under src/, without `.rs`.
fn layer_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src/");
    let first = rel.components().next().expect("non-empty path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file with comments (`//`, `///`, `//!`) removed, line by line, and the
/// `#[cfg(test)]` module at its end cut off (unit tests may reach anywhere).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        if !code.trim().is_empty() {
            out.push((i + 1, code.to_string()));
        }
    }
    out
}

/// The top-level modules a line of code names through `crate::` (groups expanded), and
/// whether it names `wgpu` directly.
fn crate_refs(code: &str) -> (BTreeSet<String>, bool) {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_first(&mut refs, &item);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            push_first(&mut refs, &item);
        } else {
            push_first(&mut refs, rest);
        }
    }
    let wgpu = code.contains("wgpu::") || code.contains("use wgpu");
    (refs, wgpu)
}

fn push_first(refs: &mut BTreeSet<String>, item: &str) {
    let first: String = item
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !first.is_empty() {
        refs.insert(first);
    }
}

/// Top-level names a layer may not name (`crate::X`), and whether it may name `wgpu`.
fn forbidden(layer: &str) -> (&'static [&'static str], bool) {
    match layer {
        "nn" => (&["kernels", "ops", "tune", "testing"], false),
        "graph" => (&["nn", "ops", "testing"], true),
        "data" => (&["graph", "nn", "ops", "kernels", "tune", "testing"], true),
        "ops" => (&["graph", "nn", "data", "testing"], true),
        "kernels" => (&["graph", "ops", "nn", "data", "tune", "testing"], true),
        // `Gpu` owns the pipeline cache (one typed slot per kernel family, `kernels::Kernels`),
        // so gpu.rs names that one type; tensor.rs names nothing above the device.
        "gpu" => (&["graph", "ops", "nn", "data", "tune", "testing"], true),
        "tensor" => (
            &["graph", "ops", "nn", "data", "kernels", "tune", "testing"],
            true,
        ),
        // The autotuner times kernels: it may submit, beside ops and below graph.
        "tune" => (&["graph", "ops", "nn", "data"], true),
        "philox" | "spec" | "reference" | "error" => (
            &[
                "gpu", "tensor", "kernels", "graph", "ops", "nn", "data", "Gpu", "Tensor", "DType",
            ],
            false,
        ),
        _ => (&[], true),
    }
}

#[test]
fn architecture_layers_import_only_downward() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in rust_files(&src()) {
        let layer = layer_of(&path);
        let (deny, wgpu_ok) = forbidden(&layer);
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (line, code) in code_lines(&text) {
            let (refs, wgpu) = crate_refs(&code);
            for r in refs {
                checked += 1;
                if deny.contains(&r.as_str()) {
                    broken.push(format!(
                        "{}:{line}: {layer} names crate::{r}",
                        path.display()
                    ));
                }
            }
            if wgpu && !wgpu_ok {
                broken.push(format!("{}:{line}: {layer} names wgpu", path.display()));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: the scan is broken"
    );
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

/// The test and bench scaffolding: names that must exist only with the `testing` feature.
const SCAFFOLDING: &[&str] = &[
    "bench_support",
    "gather_batch",
    "set_poison_outputs",
    "set_fusion",
    "set_finite_checks",
    "inject_non_finite",
    "check_finite",
    "spin",
    "enable_test_hooks",
    "plan_buffers",
    "plan_dispatches",
    "gradients",
    "philox_words",
];

/// Whether the item declared at `lines[at]` carries `#[cfg(feature = "testing")]` in the
/// attribute and doc lines right above it.
fn gated(lines: &[&str], at: usize) -> bool {
    let mut i = at;
    while i > 0 {
        i -= 1;
        let l = lines[i].trim_start();
        if l.contains("cfg(feature = \"testing\")") {
            return true;
        }
        if !(l.starts_with("#[") || l.starts_with("///") || l.starts_with("//")) {
            return false;
        }
    }
    false
}

#[test]
fn architecture_no_test_scaffolding_without_the_feature() {
    let mut broken = Vec::new();
    let mut found = 0;
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("readable source");
        let in_testing_module = layer_of(&path) == "testing";
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            if l.starts_with("#[cfg(test)]") {
                break;
            }
            let public = l.starts_with("pub fn ")
                || l.starts_with("pub mod ")
                || l.starts_with("pub use ")
                || l.starts_with("pub(crate) use ");
            if !public {
                continue;
            }
            let names_scaffolding = SCAFFOLDING.iter().any(|s| {
                l.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| word == *s)
            });
            if l.starts_with("pub(crate)") {
                continue;
            }
            if names_scaffolding {
                found += 1;
                if !(in_testing_module || gated(&lines, at)) {
                    broken.push(format!("{}:{}: {l}", path.display(), at + 1));
                }
            }
            // Hidden is still public: every `#[doc(hidden)]` public item is feature-gated.
            if at > 0 && lines[at - 1].trim() == "#[doc(hidden)]" && !gated(&lines, at) {
                broken.push(format!(
                    "{}:{}: hidden but public: {l}",
                    path.display(),
                    at + 1
                ));
            }
        }
    }
    assert!(
        found >= 5,
        "only {found} scaffolding items found: the scan is broken"
    );
    assert!(
        broken.is_empty(),
        "test scaffolding public without `#[cfg(feature = \"testing\")]`:\n{}",
        broken.join("\n")
    );
}

/// A source file over this many lines says in its header (a `//!` line containing
/// "one file:") why its jobs belong together.
const MAX_LINES: usize = 700;

#[test]
fn architecture_source_files_hold_one_job() {
    let mut long = Vec::new();
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("readable source");
        let n = text.lines().count();
        let explained = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .any(|l| l.contains("one file:"));
        if n > MAX_LINES && !explained {
            long.push(format!("{} ({n} lines)", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a reason in their header:\n{}",
        long.join("\n")
    );
}

#[test]
fn architecture_scan_sees_group_imports() {
    // The scanner itself: a grouped import must not hide an upward edge.
    let (refs, wgpu) = crate_refs("use crate::{Error, nn::Sequential, graph::{Plan, Op}};");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["Error", "graph", "nn"]
    );
    assert!(!wgpu);
    let (refs, wgpu) = crate_refs("let x = crate::kernels::matmul::Matmul::get(gpu); wgpu::Buffer");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["kernels"]);
    assert!(wgpu);
}
