//! One Rust module per shader family: params structs, pipelines and `record_*` methods.
//!
//! Layer: may use the device (`Gpu`, `Tensor`), `philox` and `spec`; never `graph`, `ops`,
//! `nn` or `data`.
//!
//! Kernels record into a compute pass and never submit; the eager `ops` functions and the
//! executor are the only places that create encoders and submit. Every shader module is
//! whole WGSL files joined by [`shader::compose`].

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use crate::{Gpu, Result};
use shader::{Shader, Variant};

pub(crate) mod batchnorm;
pub(crate) mod conv2d;
pub(crate) mod data;
pub(crate) mod dropout;
pub(crate) mod dropout_mask;
pub(crate) mod dropout_mc;
pub(crate) mod elementwise;
#[cfg(test)]
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod rec;
pub(crate) mod reduce;
pub(crate) mod shader;
pub(crate) mod softmax_xent;
pub(crate) mod step;

/// Workgroup size of every one-dimensional kernel (a multiple of lavapipe's 8 SIMD lanes).
pub(crate) const WG: u32 = 64;

/// One typed slot per shader family, filled on first use: each shader compiles once per
/// `Gpu`.
#[derive(Default)]
pub(crate) struct Kernels {
    pub batchnorm: OnceLock<batchnorm::BatchNorm>,
    pub conv2d: OnceLock<conv2d::Conv2d>,
    pub data: OnceLock<data::Data>,
    pub dropout: OnceLock<dropout::Dropout>,
    pub dropout_mc: OnceLock<dropout_mc::DropoutMc>,
    pub elementwise: OnceLock<elementwise::Elementwise>,
    pub matmul: OnceLock<matmul::Matmul>,
    pub optim: OnceLock<optim::Optim>,
    pub pool: OnceLock<pool::Pool>,
    pub reduce: OnceLock<reduce::Reduce>,
    pub softmax_xent: OnceLock<softmax_xent::SoftmaxXent>,
    /// A zero step uniform for eager calls (the executor binds its own).
    pub zero_step: OnceLock<wgpu::Buffer>,
    /// A zero status word for eager calls (storage, 16 bytes).
    pub zero_status: OnceLock<wgpu::Buffer>,
    /// The placeholder for alias bindings of buffers under 32 bytes (storage, 32 bytes).
    pub zero_alias: OnceLock<wgpu::Buffer>,
}

/// Returns the kernel in `slot`, compiling it with `new` on first use.
pub(crate) fn get<'a, K>(
    gpu: &Gpu,
    slot: &'a OnceLock<K>,
    new: fn(&Gpu) -> Result<K>,
) -> Result<&'a K> {
    if let Some(k) = slot.get() {
        return Ok(k);
    }
    let k = new(gpu)?;
    let _ = slot.set(k);
    Ok(slot.get().expect("slot was just filled"))
}

/// Compiles `shader` for the device: its files joined by [`shader::compose`] for the
/// device's features (wide loads only if `wide_loads`, which only the subgroup matmul asks
/// for). Call inside [`Gpu::scoped`] so a compile error becomes an `Err`.
pub(crate) fn shader_module(gpu: &Gpu, shader: &Shader, wide_loads: bool) -> wgpu::ShaderModule {
    let d = gpu.device();
    gpu.inner.compiled.store(true, Ordering::SeqCst);
    let variant = Variant::new(d.features(), wide_loads);
    d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(shader.name),
        source: wgpu::ShaderSource::Wgsl(shader.source(variant).into()),
    })
}

/// The override constants every pipeline of `shader` gets besides its own: `TEST_HOOKS` on
/// where the `Gpu` has test hooks and the shader declares them; nothing otherwise, so the
/// hook branches keep their default (false) and compile out.
pub(crate) fn hook_constants(gpu: &Gpu, shader: &Shader) -> &'static [(&'static str, f64)] {
    if shader.has_test_hooks() && gpu.test_hooks() {
        &[("TEST_HOOKS", 1.0)]
    } else {
        &[]
    }
}

/// The subgroup size the subgroup kernels (matmul, conv2d) are compiled for, if they suit the
/// adapter. They need to know it when the pipeline is made, so only an adapter whose subgroup
/// size is fixed (min == max) can have them, and they assume that subgroup `s` of a workgroup
/// is invocations `s * lanes ..` in order. 8 lanes: lavapipe as installed (its vector width
/// over 32), and any adapter with a fixed 8. 16 lanes: lavapipe with
/// `LP_NATIVE_VECTOR_WIDTH=512` only, the one 16-lane adapter measured and tested; GPUs with a
/// fixed 16 (some mobile ones) keep the plain kernels until one has been.
pub(crate) fn subgroup_lanes(gpu: &Gpu) -> Option<u32> {
    if !gpu.device().features().contains(wgpu::Features::SUBGROUP) {
        return None;
    }
    match gpu.inner.subgroup_sizes {
        (8, 8) => Some(8),
        (16, 16) if gpu.info().device_type == wgpu::DeviceType::Cpu => Some(16),
        _ => None,
    }
}

/// The kind of each binding of a kernel's bind group, in binding order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
}

/// A compiled shader module with one explicit bind group layout shared by its entry points.
pub(crate) struct Family {
    pub module: wgpu::ShaderModule,
    pub layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    label: &'static str,
    /// `TEST_HOOKS` for every pipeline ([`hook_constants`]).
    hooks: &'static [(&'static str, f64)],
    /// The binding number of each layout entry, in order.
    numbers: Vec<u32>,
    /// Extra read-only bindings that view another binding's buffer under a second type:
    /// (binding number, index into the buffers `bind` is given).
    aliases: Vec<(u32, usize)>,
}

impl Family {
    /// Compiles `shader` and makes the layout for `binds` (bindings 0, 1, ...).
    pub fn new(gpu: &Gpu, label: &'static str, shader: &Shader, binds: &[Bind]) -> Result<Family> {
        Family::new_aliased(gpu, label, shader, binds, &[])
    }

    /// As [`Family::new`] with explicit binding numbers, for entry points that use only some
    /// of a shader's bindings.
    pub fn new_sparse(
        gpu: &Gpu,
        label: &'static str,
        shader: &Shader,
        binds: &[(u32, Bind)],
    ) -> Result<Family> {
        let d = gpu.device();
        gpu.scoped(label, || {
            let module = shader_module(gpu, shader, false);
            let entries: Vec<_> = binds
                .iter()
                .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                    binding: *i,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: match b {
                        Bind::Uniform => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Uniform,
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        Bind::Read | Bind::Write => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: matches!(b, Bind::Read),
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                    },
                    count: None,
                })
                .collect();
            let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            });
            let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let numbers = binds.iter().map(|(i, _)| *i).collect();
            Family {
                module,
                layout,
                pipeline_layout,
                label,
                hooks: hook_constants(gpu, shader),
                numbers,
                aliases: Vec::new(),
            }
        })
    }

    /// As [`Family::new`], plus read-only `aliases` (binding number, index of the binding
    /// whose buffer it views), which [`Family::bind`] fills by itself.
    pub fn new_aliased(
        gpu: &Gpu,
        label: &'static str,
        shader: &Shader,
        binds: &[Bind],
        aliases: &[(u32, usize)],
    ) -> Result<Family> {
        let mut numbered: Vec<(u32, Bind)> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        numbered.extend(aliases.iter().map(|&(number, _)| (number, Bind::Read)));
        let mut family = Family::new_sparse(gpu, label, shader, &numbered)?;
        family.numbers.truncate(binds.len());
        family.aliases = aliases.to_vec();
        Ok(family)
    }

    /// Another shader over this family's bind group layout, so the bind groups made with
    /// either fit both: the subgroup and staged variants of matmul and the convolutions.
    pub fn sibling(
        &self,
        gpu: &Gpu,
        label: &'static str,
        shader: &Shader,
        wide_loads: bool,
    ) -> Result<Family> {
        let module = gpu.scoped(label, || shader_module(gpu, shader, wide_loads))?;
        Ok(Family {
            module,
            layout: self.layout.clone(),
            pipeline_layout: self.pipeline_layout.clone(),
            label,
            hooks: hook_constants(gpu, shader),
            numbers: self.numbers.clone(),
            aliases: self.aliases.clone(),
        })
    }

    /// A pipeline for `entry` with override `constants` (and `TEST_HOOKS` where the `Gpu`
    /// has test hooks).
    pub fn pipeline(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let constants: Vec<(&str, f64)> = constants.iter().chain(self.hooks).copied().collect();
        let constants = constants.as_slice();
        gpu.scoped(self.label, || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&self.pipeline_layout),
                    module: &self.module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })
    }

    /// A bind group of `buffers` in binding order, counted.
    pub fn bind(&self, gpu: &Gpu, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        debug_assert_eq!(
            buffers.len(),
            self.numbers.len(),
            "{}: bind group size",
            self.label
        );
        let mut entries: Vec<_> = buffers
            .iter()
            .zip(&self.numbers)
            .map(|(b, &i)| wgpu::BindGroupEntry {
                binding: i,
                resource: b.as_entire_binding(),
            })
            .collect();
        for &(number, source) in &self.aliases {
            // An alias is a vec4<u64> array (32-byte elements): a buffer too small to hold
            // one is bound as a zero placeholder (kernels read an alias only when the
            // matrix has whole 32-byte groups).
            let buffer = buffers[source];
            let buffer = if buffer.size() >= ALIAS_MIN_BYTES {
                buffer
            } else {
                zero_alias(gpu)
            };
            entries.push(wgpu::BindGroupEntry {
                binding: number,
                resource: buffer.as_entire_binding(),
            });
        }
        gpu.counted_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        })
    }
}

/// A uniform buffer holding `value`, counted.
pub(crate) fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> wgpu::Buffer {
    // Not `create_buffer_init`, which panics when the device is lost (see
    // `Gpu::counted_buffer_with`).
    gpu.counted_buffer_with(
        label,
        wgpu::BufferUsages::UNIFORM,
        bytemuck::bytes_of(value),
    )
}

/// The step uniform eager calls bind: step 0, so an eager dropout uses its offset unchanged.
pub(crate) fn zero_step(gpu: &Gpu) -> &wgpu::Buffer {
    gpu.kernels()
        .zero_step
        .get_or_init(|| uniform(gpu, "wgnn zero step", &step::Step::default()))
}

/// A 16-byte zero storage buffer: the status eager optimizer calls bind (never set).
pub(crate) fn zero_status(gpu: &Gpu) -> &wgpu::Buffer {
    let slot = &gpu.kernels().zero_status;
    slot.get_or_init(|| zero_storage(gpu, "wgnn zero status", 16))
}

/// The smallest buffer an alias binding takes (one `vec4<u64>`).
const ALIAS_MIN_BYTES: u64 = 32;

/// A zero buffer standing in for a source buffer too small for its alias binding.
fn zero_alias(gpu: &Gpu) -> &wgpu::Buffer {
    let slot = &gpu.kernels().zero_alias;
    slot.get_or_init(|| zero_storage(gpu, "wgnn zero alias", ALIAS_MIN_BYTES))
}

/// A new zero storage buffer of `size` bytes, counted.
fn zero_storage(gpu: &Gpu, label: &str, size: u64) -> wgpu::Buffer {
    gpu.counted_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Workgroup counts for `groups` workgroups: x at most 65,535, the rest in y. Shaders
/// recover the linear index as `gid.x + gid.y * num_workgroups.x * WG`.
pub(crate) fn grid(groups: u32) -> [u32; 2] {
    let groups = groups.max(1);
    if groups <= 65_535 {
        [groups, 1]
    } else {
        [65_535, groups.div_ceil(65_535)]
    }
}

/// Dispatches `pipeline` over `invocations` one-dimensional invocations.
pub(crate) fn dispatch_1d(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    bind: &wgpu::BindGroup,
    invocations: u32,
) {
    let [gx, gy] = grid(invocations.div_ceil(WG));
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind, &[]);
    pass.dispatch_workgroups(gx, gy, 1);
}
