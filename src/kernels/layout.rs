//! Checks, without a GPU, that every shader parses and validates with naga and that every
//! params struct has the same size and field offsets in Rust and in WGSL.

use wgpu::naga;

/// Every shader source as the pipelines receive it, by family name.
pub(crate) fn sources() -> Vec<(&'static str, &'static str)> {
    use crate::kernels::*;
    vec![
        ("dropout", dropout::SOURCE),
        ("philox_words", dropout::WORDS_SOURCE),
        ("elementwise", elementwise::SOURCE),
        ("matmul", matmul::SOURCE),
        ("reduce", reduce::SOURCE),
        ("data", data::SOURCE),
    ]
}

fn parse(name: &str, src: &str) -> naga::Module {
    match naga::front::wgsl::parse_str(src) {
        Ok(m) => m,
        Err(e) => panic!("{name}: {}", e.emit_to_string(src)),
    }
}

/// (span, [(member name, offset)]) of the WGSL struct `ty` in `src`.
pub(crate) fn wgsl_layout(src: &str, ty: &str) -> (u32, Vec<(String, u32)>) {
    let module = parse(ty, src);
    for (_, t) in module.types.iter() {
        if t.name.as_deref() == Some(ty)
            && let naga::TypeInner::Struct { members, span } = &t.inner
        {
            {
                let m = members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect();
                return (*span, m);
            }
        }
    }
    panic!("struct {ty} not found in its shader");
}

/// Asserts that Rust struct `$rust` and WGSL struct `$wgsl` of `$src` agree in size and in
/// the offsets of the named fields.
macro_rules! assert_layout {
    ($src:expr, $wgsl:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
        let (span, members) = $crate::kernels::layout::wgsl_layout($src, $wgsl);
        assert_eq!(span as usize, size_of::<$rust>(), "{}: WGSL size {} != Rust size {}", $wgsl, span, size_of::<$rust>());
        $(
            let name = stringify!($field);
            let off = members.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{}: no member {}", $wgsl, name)).1;
            assert_eq!(off as usize, std::mem::offset_of!($rust, $field), "{}.{}: WGSL offset {} != Rust offset", $wgsl, name, off);
        )*
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::*;

    #[test]
    fn shaders_parse_and_validate_with_naga() {
        for (name, src) in sources() {
            let module = parse(name, src);
            let mut v = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::default(),
            );
            if let Err(e) = v.validate(&module) {
                panic!("{name}: {}", e.emit_to_string(src));
            }
        }
    }

    /// Every source that draws Philox carries the portable `mulhilo` between the markers
    /// `specialize` looks for, and its 64-bit specialisation validates with naga. (That the
    /// two give the same bits is tested on a device in tests/philox.rs.)
    #[test]
    fn philox_sources_specialise_to_64_bit_mulhilo() {
        let mut all = sources();
        all.push(("optim", optim::SOURCE));
        all.push(("matmul_subgroup", matmul::SUBGROUP_SOURCE));
        let mut specialised = 0;
        for (name, src) in all {
            let plain = specialize(src, wgpu::Features::empty(), true);
            assert_eq!(plain, src, "{name}: changed without SHADER_INT64");
            let wide = specialize(src, wgpu::Features::SHADER_INT64, true);
            if !src.contains("fn philox4x32_10") {
                assert_eq!(wide, src, "{name}: no Philox, yet changed");
                continue;
            }
            specialised += 1;
            assert!(
                !wide.contains("a0 * b0"),
                "{name}: portable mulhilo left in"
            );
            assert_eq!(wide.matches("fn mulhilo(").count(), 1, "{name}");
            assert!(wide.contains("u64(a) * u64(b)"), "{name}");
            let module = parse(name, &wide);
            let caps =
                naga::valid::Capabilities::SHADER_INT64 | naga::valid::Capabilities::SUBGROUP;
            let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
            if let Err(e) = v.validate(&module) {
                panic!("{name}: {}", e.emit_to_string(&wide));
            }
        }
        assert_eq!(specialised, 7, "sources with Philox");
        // A checkout with CRLF line endings splices the same way.
        let crlf = dropout::SOURCE.replace('\n', "\r\n");
        let wide = specialize(&crlf, wgpu::Features::SHADER_INT64, true);
        assert!(!wide.contains("a0 * b0") && !wide.contains("END mulhilo"));
        assert_eq!(wide.matches("fn mulhilo(").count(), 1);
    }

    /// The subgroup matmul carries its portable loads between the markers, and its 64-bit
    /// specialisation (both splices) validates with naga. (Same bits: tests/dense.rs.)
    #[test]
    fn matmul_subgroup_specialises_to_64_bit_loads() {
        let src = matmul::SUBGROUP_SOURCE;
        assert_eq!(src.matches("fn b_pair(").count(), 1);
        assert_eq!(src.matches("fn a_next(").count(), 1);
        assert!(!src.contains("array<vec4<u64>>"));
        for (name, text) in [("lf", src.to_string()), ("crlf", src.replace('\n', "\r\n"))] {
            let wide = specialize(&text, wgpu::Features::SHADER_INT64, true);
            assert_eq!(wide.matches("fn b_pair(").count(), 1, "{name}");
            assert_eq!(wide.matches("fn a_next(").count(), 1, "{name}");
            for binding in ["b64: array<vec4<u64>>", "a64: array<vec4<u64>>"] {
                assert!(wide.contains(binding), "{name}: {binding}");
            }
            assert!(
                !wide.contains("END wide") && !wide.contains("END mulhilo"),
                "{name}"
            );
            assert!(
                wide.contains("u64(a) * u64(b)"),
                "{name}: Philox spliced too"
            );
        }
        // Without wide loads (16 lanes) only Philox is spliced.
        let narrow = specialize(src, wgpu::Features::SHADER_INT64, false);
        assert!(narrow.contains("BEGIN wide loads") && !narrow.contains("array<vec4<u64>>"));
        assert!(narrow.contains("u64(a) * u64(b)"));
        // The plain matmul has no wide loads and gains no binding.
        assert!(!matmul::SOURCE.contains("BEGIN wide"));
        let wide = specialize(matmul::SUBGROUP_SOURCE, wgpu::Features::SHADER_INT64, true);
        let module = parse("matmul_subgroup", &wide);
        let caps = naga::valid::Capabilities::SHADER_INT64 | naga::valid::Capabilities::SUBGROUP;
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if let Err(e) = v.validate(&module) {
            panic!("matmul_subgroup: {}", e.emit_to_string(&wide));
        }
    }

    #[test]
    fn params_structs_match_wgsl_layout() {
        assert_layout!(
            dropout::SOURCE,
            "DropoutParams",
            dropout::DropoutParams,
            [len, threshold, mode, scale, seed, offset]
        );
        assert_layout!(
            dropout::WORDS_SOURCE,
            "WordsParams",
            dropout::WordsParams,
            [count]
        );
        assert_layout!(
            elementwise::SOURCE,
            "ElementwiseParams",
            elementwise::ElementwiseParams,
            [len, cols, scale]
        );
        assert_layout!(
            matmul::SOURCE,
            "MatmulParams",
            matmul::MatmulParams,
            [m, n, k, flags, threshold, mode, scale, seed, offset]
        );
        assert_layout!(
            reduce::SOURCE,
            "ReduceParams",
            reduce::ReduceParams,
            [rows, cols]
        );
        assert_layout!(
            dropout::SOURCE,
            "Step",
            data::StepUniform,
            [step, batch_start]
        );
        assert_layout!(
            data::SOURCE,
            "DataParams",
            data::DataParams,
            [rows, image_len, scale, per_chunk]
        );
        assert_layout!(
            data::SOURCE,
            "FiniteParams",
            data::FiniteParams,
            [lens, codes]
        );
    }
}
