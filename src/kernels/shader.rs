//! How every shader module is put together: whole WGSL files joined in order, two of them
//! chosen per device by [`compose`], and nothing else (no markers, no text replaced).
//!
//! A family lists its files as a [`Shader`]: fixed files ([`Part::File`]) and at most two
//! choices, [`Part::Mulhilo`] (Philox's 64-bit product, by whether the device has 64-bit
//! integers) and [`Part::MatmulLoads`] (the subgroup matmul's operand loads, by whether the
//! caller asks for wide loads). Each choice is between two files that define the same
//! functions and give the same bits (tests/philox.rs, tests/dense.rs), so a composed module
//! is WGSL as written, and the test below validates every one of them with naga.

/// One piece of a shader module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// A file of shaders/ used as it is: (file name, text).
    File(&'static str, &'static str),
    /// Philox's `mulhilo`: shaders/philox_mulhilo64.wgsl on a device with 64-bit integers,
    /// else shaders/philox_mulhilo32.wgsl.
    Mulhilo,
    /// The subgroup matmul's `b_pair` and `a_next`: shaders/matmul_loads_wide.wgsl when the
    /// caller asks for wide loads and the device has 64-bit integers, else
    /// shaders/matmul_loads_portable.wgsl.
    MatmulLoads,
}

/// [`Part::File`] of `shaders/$name`, its text included at compile time.
macro_rules! wgsl {
    ($name:literal) => {
        $crate::kernels::shader::Part::File($name, include_str!(concat!("../../shaders/", $name)))
    };
}
pub(crate) use wgsl;

/// shaders/step.wgsl: the `Step` uniform and the `TEST_HOOKS` override.
pub(crate) const STEP: Part = wgsl!("step.wgsl");
/// shaders/philox.wgsl: Philox-4x32-10 (after a [`Part::Mulhilo`]).
pub(crate) const PHILOX: Part = wgsl!("philox.wgsl");
/// shaders/dropout_mask.wgsl: `DropoutMask` and the keep test (after [`STEP`], [`PHILOX`]).
pub(crate) const DROPOUT_MASK: Part = wgsl!("dropout_mask.wgsl");
/// shaders/finite.wgsl: the non-finite check and the test hook (after [`STEP`]).
pub(crate) const FINITE: Part = wgsl!("finite.wgsl");

/// The WGSL files of one shader module, in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shader {
    /// The module's label (and its name in test failures).
    pub name: &'static str,
    pub parts: &'static [Part],
}

impl Shader {
    /// Whether the module declares the `TEST_HOOKS` override (it joins shaders/step.wgsl).
    pub fn has_test_hooks(&self) -> bool {
        self.parts.contains(&STEP)
    }

    /// The module's text for `variant`.
    pub fn source(&self, variant: Variant) -> String {
        compose(self.parts, variant)
    }

    /// The module's text on a device without 64-bit integers (what the layout tests read).
    #[cfg(test)]
    pub fn portable(&self) -> String {
        self.source(Variant::PORTABLE)
    }
}

/// What a device and a caller choose about a module: the two [`Part`] choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Variant {
    /// 64-bit integers: [`Part::Mulhilo`] is one widening multiply.
    pub int64: bool,
    /// Wide loads: [`Part::MatmulLoads`] reads eight floats as one `vec4<u64>`.
    pub wide_loads: bool,
}

impl Variant {
    /// Neither choice: what every device can compile.
    #[cfg(test)]
    pub const PORTABLE: Variant = Variant {
        int64: false,
        wide_loads: false,
    };

    /// The variant for a device with `features`: 64-bit integers where it has them
    /// (`SHADER_INT64`), and wide loads only where it has them and `wants_wide_loads` (only
    /// the subgroup matmul at 8 lanes asks: at 16 lanes they measured slower).
    pub fn new(features: wgpu::Features, wants_wide_loads: bool) -> Variant {
        let int64 = features.contains(wgpu::Features::SHADER_INT64);
        Variant {
            int64,
            wide_loads: int64 && wants_wide_loads,
        }
    }
}

/// The text of a module made of `parts`: each file whole, in order, the choices made by
/// `variant`.
pub(crate) fn compose(parts: &[Part], variant: Variant) -> String {
    parts
        .iter()
        .map(|part| match *part {
            Part::File(_, text) => text,
            Part::Mulhilo if variant.int64 => include_str!("../../shaders/philox_mulhilo64.wgsl"),
            Part::Mulhilo => include_str!("../../shaders/philox_mulhilo32.wgsl"),
            Part::MatmulLoads if variant.wide_loads => {
                include_str!("../../shaders/matmul_loads_wide.wgsl")
            }
            Part::MatmulLoads => include_str!("../../shaders/matmul_loads_portable.wgsl"),
        })
        .collect()
}

/// Every shader module of every family.
#[cfg(test)]
pub(crate) fn all() -> Vec<Shader> {
    use crate::kernels::*;
    vec![
        batchnorm::SHADER,
        conv2d::SHADER,
        conv2d::SUBGROUP_SHADER,
        conv2d::EPILOGUE_SHADER,
        conv2d::EPILOGUE_SUBGROUP_SHADER,
        conv2d::STAGED_SHADER,
        conv2d::EPILOGUE_STAGED_SHADER,
        data::SHADER,
        dropout::SHADER,
        dropout::WORDS_SHADER,
        dropout_mc::SHADER,
        elementwise::SHADER,
        matmul::SHADER,
        matmul::SUBGROUP_SHADER,
        optim::SHADER,
        pool::SHADER,
        reduce::SHADER,
        softmax_xent::SHADER,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::naga;

    const VARIANTS: [Variant; 4] = [
        Variant::PORTABLE,
        Variant {
            int64: true,
            wide_loads: false,
        },
        Variant {
            int64: false,
            wide_loads: true,
        },
        Variant {
            int64: true,
            wide_loads: true,
        },
    ];

    /// Every composed module (every family x {int64, none} x {wide, portable} loads) parses
    /// and validates with naga, with the capabilities its composition needs.
    #[test]
    fn shader_compositions_parse_and_validate_with_naga() {
        let mut checked = 0;
        for shader in all() {
            for variant in VARIANTS {
                let src = shader.source(variant);
                let name = format!("{} {variant:?}", shader.name);
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
                let mut caps = naga::valid::Capabilities::empty();
                if shader.parts.contains(&Part::MatmulLoads) || shader.name.ends_with("subgroup") {
                    caps |= naga::valid::Capabilities::SUBGROUP;
                }
                // Wide loads without int64 never come from `Variant::new`, but compose all
                // the same: their loads are 64-bit.
                let loads = shader.parts.contains(&Part::MatmulLoads);
                if variant.int64 || (variant.wide_loads && loads) {
                    caps |= naga::valid::Capabilities::SHADER_INT64;
                }
                let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
                if let Err(e) = v.validate(&module) {
                    panic!("{name}: {}", e.emit_to_string(&src));
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 18 * 4);
    }

    /// Each choice picks whole files: the 64-bit product and the wide loads appear exactly
    /// when chosen, every file ends its last line, and no module holds a marker comment.
    #[test]
    fn shader_compose_joins_whole_files_by_variant() {
        for shader in all() {
            for variant in VARIANTS {
                let src = shader.source(variant);
                let philox = shader.parts.contains(&Part::Mulhilo);
                assert_eq!(src.matches("fn mulhilo(").count(), usize::from(philox));
                assert_eq!(
                    src.contains("u64(a) * u64(b)"),
                    philox && variant.int64,
                    "{}",
                    shader.name
                );
                let loads = shader.parts.contains(&Part::MatmulLoads);
                assert_eq!(src.matches("fn b_pair(").count(), usize::from(loads));
                assert_eq!(
                    src.contains("array<vec4<u64>>"),
                    loads && variant.wide_loads,
                    "{}",
                    shader.name
                );
                assert!(!src.contains("// BEGIN") || src.contains("// BEGIN GENERATED"));
            }
            for part in shader.parts {
                if let Part::File(name, text) = part {
                    assert!(text.ends_with('\n'), "{name} must end with a line break");
                }
            }
        }
        assert!(
            Variant::new(wgpu::Features::empty(), true) == Variant::PORTABLE
                && !Variant::new(wgpu::Features::SHADER_INT64, false).wide_loads
                && Variant::new(wgpu::Features::SHADER_INT64, true).wide_loads
        );
    }

    /// Every module with a `Step` declares `TEST_HOOKS`, defaulting to false, and reads the
    /// poison word only in finite.wgsl's `test_poison`, behind `if (TEST_HOOKS)`: a pipeline
    /// made without the override (every user's) has the hook branches compiled out.
    #[test]
    fn shader_test_hooks_default_to_off() {
        for shader in all() {
            let src = shader.portable();
            let module = naga::front::wgsl::parse_str(&src).unwrap();
            let hook = module
                .overrides
                .iter()
                .find(|(_, o)| o.name.as_deref() == Some("TEST_HOOKS"));
            assert_eq!(hook.is_some(), shader.has_test_hooks(), "{}", shader.name);
            if let Some((_, o)) = hook {
                let init = o.init.expect("TEST_HOOKS has a default");
                assert!(
                    matches!(
                        module.global_expressions[init],
                        naga::Expression::Literal(naga::Literal::Bool(false))
                    ),
                    "{}: TEST_HOOKS must default to false",
                    shader.name
                );
            }
        }
        let finite = match FINITE {
            Part::File(_, text) => text,
            _ => unreachable!(),
        };
        let hook = finite
            .split("fn test_poison(")
            .nth(1)
            .expect("finite.wgsl has test_poison");
        assert!(
            hook.trim_start()
                .contains("{\n    if (TEST_HOOKS) {\n        return step.poison == kind;")
        );
        for shader in all() {
            for part in shader.parts {
                if let Part::File(name, text) = part {
                    let reads: usize = text
                        .lines()
                        .map(|l| {
                            l.split("//")
                                .next()
                                .unwrap_or("")
                                .matches("step.poison")
                                .count()
                        })
                        .sum();
                    let want = usize::from(*name == "finite.wgsl");
                    assert_eq!(reads, want, "{name} reads step.poison outside test_poison");
                }
            }
        }
    }
}
