//! Lists the wgpu adapters this machine offers, as wgnn sees them: name, backend, device
//! type, driver, the subgroup sizes the adapter reports, the features the kernels choose by
//! (subgroups, 64-bit integers, timestamps), its workgroup limits, and the matmul variants
//! wgnn offers on it (opened the way `Gpu::open` opens it). scripts/gpu-bench.sh runs it
//! first, to name the device its figures come from.
//!
//! ```text
//! cargo run --release --example adapters
//! WGPU_BACKEND=vulkan cargo run --release --example adapters
//! ```
//!
//! Exits with status 1 when there is no adapter at all, or one fails to open.

use std::process::ExitCode;

use wgnn::wgpu;

fn main() -> ExitCode {
    // Mesa's device_select layer prints errors on a headless machine; wgnn turns it off for
    // its own instances, and this one is made before any of them. SAFETY: no other thread
    // exists yet.
    if std::env::var_os("NODEVICE_SELECT").is_none()
        && !std::env::vars_os()
            .any(|(k, _)| k.to_string_lossy().starts_with("MESA_VK_DEVICE_SELECT"))
    {
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    if std::env::args().skip(1).any(|a| a != "--quick") {
        eprintln!(
            "usage: adapters [--quick]  (--quick is accepted for CI; the listing is always quick)"
        );
        return ExitCode::FAILURE;
    }
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let inst = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(inst.enumerate_adapters(backends));
    println!("{} adapter(s) on backends {backends:?}", adapters.len());
    if adapters.is_empty() {
        println!("no adapter: is a Vulkan loader (libvulkan.so.1) and a driver installed?");
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let f = a.features();
        let l = a.limits();
        println!("adapter {i}: {}", info.name);
        println!("  backend: {:?}", info.backend);
        println!("  device type: {:?}", info.device_type);
        println!("  driver: {} {}", info.driver, info.driver_info);
        println!(
            "  subgroup sizes: {} to {}",
            info.subgroup_min_size, info.subgroup_max_size
        );
        println!(
            "  features: subgroup {}, shader_int64 {}, timestamp_query {}",
            f.contains(wgpu::Features::SUBGROUP),
            f.contains(wgpu::Features::SHADER_INT64),
            f.contains(wgpu::Features::TIMESTAMP_QUERY)
        );
        println!(
            "  workgroup: {} invocations, {} bytes of workgroup memory; storage binding {} bytes",
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size,
            l.max_storage_buffer_binding_size
        );
        match wgnn::Gpu::open(a).and_then(|g| wgnn::testing::matmul_tiles(&g)) {
            Ok(tiles) => println!("  wgnn matmul variants: {tiles:?}"),
            Err(e) => {
                println!("  wgnn could not open it: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
