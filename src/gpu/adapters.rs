//! Finding adapters: the instance, Mesa's device_select layer kept quiet, and the ranking
//! that puts hardware first and, among software adapters, lavapipe first.

pub(super) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    quiet_device_select();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Turns off Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` (by setting
/// `NODEVICE_SELECT=1`, the switch its manifest names) when there is no Wayland session, once,
/// before wgnn creates its first `wgpu::Instance`. Creating a Vulkan instance loads the layer,
/// which connects to Wayland and, on a headless machine, prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice. The layer only
/// reorders the adapters, and wgnn ranks them itself, so it changes nothing else. Left alone
/// when `NODEVICE_SELECT` is already set, or when the user configures the layer
/// (`MESA_VK_DEVICE_SELECT*` set). The Vulkan loader turns the layer off whenever
/// `NODEVICE_SELECT` is set, whatever its value (`0` and empty included), so it cannot serve as
/// the opt-out. wgpu has no instance option that skips implicit layers; the loader's own
/// switch (`VK_LOADER_LAYERS_DISABLE`) is an environment variable too and reaches every
/// implicit layer, not just this one.
pub(super) fn quiet_device_select() {
    #[cfg(all(unix, not(target_vendor = "apple")))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
            // libwayland's test: XDG_RUNTIME_DIR set and absolute.
            let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| std::path::Path::new(&d).is_absolute());
            let wayland = set("WAYLAND_DISPLAY") && runtime_dir;
            let configured = std::env::vars_os().any(|(k, _)| {
                k.to_str().is_some_and(|k| {
                    k == "NODEVICE_SELECT" || k.starts_with("MESA_VK_DEVICE_SELECT")
                })
            });
            if !configured && !wayland {
                // SAFETY: `set_var` races with a read or write of the environment on another
                // thread that bypasses std's environment lock (C code calling `getenv`). This
                // runs once, before wgnn creates its first instance, so no driver wgnn loads
                // (the Vulkan loader, Mesa and their threads) exists yet. What remains is C
                // code the application itself runs on another thread at this moment, or
                // drivers of a wgpu instance it created itself; `Gpu::new` documents this and
                // how to avoid it (set `NODEVICE_SELECT` before starting threads).
                unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
            }
        });
    }
}

pub(super) fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

pub(super) fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

pub(super) async fn adapters(backends: wgpu::Backends) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let inst = instance(backends);
    let mut list = inst.enumerate_adapters(backends).await;
    // Among software adapters Mesa's lavapipe ("llvmpipe" through Vulkan) comes before
    // SwiftShader whatever order the Vulkan loader lists them in: it is the faster of the two
    // here and runs the subgroup kernels (8 lanes, SwiftShader's are 4).
    list.sort_by_key(|a| {
        let i = a.get_info();
        (
            type_rank(i.device_type),
            backend_rank(i.backend),
            !i.name.starts_with("llvmpipe"),
        )
    });
    (inst, list)
}

pub(super) fn describe(list: &[wgpu::Adapter]) -> String {
    let names: Vec<String> = list
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    names.join(", ")
}
