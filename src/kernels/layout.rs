//! Checks, without a GPU, that every params struct has the same size and field offsets in
//! Rust and in WGSL, and that the constants both languages name have the same values. (That
//! every shader module parses and validates is `kernels::shader`'s test.)

use wgpu::naga;

use crate::kernels::shader::Shader;

fn parse(shader: &Shader) -> naga::Module {
    let src = shader.portable();
    naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(&src)))
}

/// (span, [(member name, offset)]) of the WGSL struct `ty` in `shader`.
pub(crate) fn wgsl_layout(shader: &Shader, ty: &str) -> (u32, Vec<(String, u32)>) {
    let module = parse(shader);
    for (_, t) in module.types.iter() {
        if t.name.as_deref() == Some(ty)
            && let naga::TypeInner::Struct { members, span } = &t.inner
        {
            let m = members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                .collect();
            return (*span, m);
        }
    }
    panic!("struct {ty} not found in {}", shader.name);
}

/// The value of the WGSL `const name: u32` in `shader`.
pub(crate) fn wgsl_u32(shader: &Shader, name: &str) -> u32 {
    let module = parse(shader);
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("const {name} not found in {}", shader.name));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref e => panic!("{}: const {name} is {e:?}, not a u32 literal", shader.name),
    }
}

/// Asserts that Rust struct `$rust` and WGSL struct `$wgsl` of shader `$shader` have the same
/// size, that `$fields` are the WGSL struct's members in order (padding, named `_..`, aside),
/// and that each lies at the same offset in both.
macro_rules! assert_layout {
    ($shader:expr, $wgsl:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
        let (span, members) = $crate::kernels::layout::wgsl_layout(&$shader, $wgsl);
        assert_eq!(
            span as usize,
            size_of::<$rust>(),
            "{}: WGSL size {} != Rust size {}",
            $wgsl,
            span,
            size_of::<$rust>()
        );
        let named: Vec<&str> = members
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.starts_with('_'))
            .collect();
        assert_eq!(named, [$(stringify!($field)),*], "{}: members", $wgsl);
        $(
            let name = stringify!($field);
            let off = members.iter().find(|(n, _)| n == name).expect("listed member").1;
            assert_eq!(
                off as usize,
                std::mem::offset_of!($rust, $field),
                "{}.{}: WGSL offset {} != Rust offset",
                $wgsl,
                name,
                off
            );
        )*
    }};
}

#[cfg(test)]
mod tests {
    use crate::kernels::*;

    #[test]
    fn params_structs_match_wgsl_layout() {
        assert_layout!(
            data::SHADER,
            "Step",
            step::Step,
            [step, batch_start, poison]
        );
        assert_layout!(
            dropout::SHADER,
            "DropoutMask",
            dropout_mask::DropoutMask,
            [seed, offset, threshold, mode, scale]
        );
        assert_layout!(
            dropout::SHADER,
            "DropoutParams",
            dropout::DropoutParams,
            [mask, len, channels, image]
        );
        assert_layout!(
            dropout_mc::SHADER,
            "DropoutMcParams",
            dropout_mc::DropoutMcParams,
            [mask, len, span, replicate, row_len]
        );
        assert_layout!(
            dropout::WORDS_SHADER,
            "WordsParams",
            dropout::WordsParams,
            [count]
        );
        assert_layout!(
            elementwise::SHADER,
            "ElementwiseParams",
            elementwise::ElementwiseParams,
            [len, cols, scale]
        );
        assert_layout!(
            matmul::SHADER,
            "MatmulParams",
            matmul::MatmulParams,
            [m, n, k, flags, check, mask]
        );
        assert_layout!(
            reduce::SHADER,
            "ReduceParams",
            reduce::ReduceParams,
            [rows, cols, check]
        );
        assert_layout!(
            data::SHADER,
            "DataParams",
            data::DataParams,
            [rows, image_len, scale, per_chunk]
        );
        assert_layout!(
            data::SHADER,
            "FiniteParams",
            data::FiniteParams,
            [lens, codes]
        );
        assert_layout!(
            batchnorm::SHADER,
            "BatchNormParams",
            batchnorm::BatchNormParams,
            [rows, channels, chunk, chunks, len, epsilon, momentum]
        );
        assert_layout!(
            conv2d::SHADER,
            "Conv2dParams",
            conv2d::Conv2dParams,
            [
                n, h, w, cin, oh, ow, cout, kh, kw, stride, pad_top, pad_left, splits, per_split
            ]
        );
        assert_layout!(
            conv2d::EPILOGUE_SHADER,
            "ConvEpilogue",
            conv2d::ConvEpilogue,
            [mask, bias, relu]
        );
        assert_layout!(
            optim::SHADER,
            "OptimParams",
            optim::OptimParams,
            [len, lr, momentum, decay, beta1, beta2, t0, eps_hat]
        );
        assert_layout!(
            pool::SHADER,
            "PoolParams",
            pool::PoolParams,
            [n, h, w, c, oh, ow, kh, kw, sh, sw, blocks]
        );
        assert_layout!(
            softmax_xent::SHADER,
            "SoftmaxXentParams",
            softmax_xent::SoftmaxXentParams,
            [rows, cols, flags, scale]
        );
    }

    /// Constants named in both languages have one value.
    #[test]
    fn params_constants_match_wgsl() {
        use super::wgsl_u32;
        use crate::philox::DropMode;
        for (shader, name, value) in [
            (dropout::SHADER, "DROP_KEEP_ALL", DropMode::KeepAll as u32),
            (
                dropout::SHADER,
                "DROP_THRESHOLD",
                DropMode::Threshold as u32,
            ),
            (dropout::SHADER, "DROP_ALL", DropMode::DropAll as u32),
            (matmul::SHADER, "EPI_BIAS", matmul::EPI_BIAS),
            (matmul::SHADER, "EPI_RELU", matmul::EPI_RELU),
            (
                softmax_xent::SHADER,
                "FLAG_ACCUMULATE",
                softmax_xent::FLAG_ACCUMULATE,
            ),
            (
                softmax_xent::SHADER,
                "FLAG_NO_GRAD",
                softmax_xent::FLAG_NO_GRAD,
            ),
        ] {
            assert_eq!(wgsl_u32(&shader, name), value, "{}: {name}", shader.name);
        }
    }
}
