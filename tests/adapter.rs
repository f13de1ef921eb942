//! Adapter choice: environment variables, and a clear error when nothing matches. (Its own
//! test binary: it sets process environment variables.)

#[test]
fn gpu_new_honours_environment_and_explains_a_missing_adapter() {
    // SAFETY: this binary has one test, so no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("WGPU_ADAPTER_NAME", "no such adapter") };
    let e = wgnn::Gpu::new().unwrap_err().to_string();
    assert!(
        e.starts_with("no GPU adapter: WGPU_ADAPTER_NAME=no such adapter matches none of ["),
        "{e}"
    );
    assert!(
        e.contains("llvmpipe"),
        "the message lists the adapters there are: {e}"
    );

    unsafe { std::env::set_var("WGPU_ADAPTER_NAME", "LLVMPIPE") };
    unsafe { std::env::set_var("WGPU_BACKEND", "gl") };
    let gpu = wgnn::Gpu::new().unwrap();
    assert_eq!(
        gpu.info().backend,
        wgnn::wgpu::Backend::Gl,
        "{}",
        gpu.info()
    );
    assert!(gpu.info().name.contains("llvmpipe"));

    unsafe { std::env::remove_var("WGPU_ADAPTER_NAME") };
    unsafe { std::env::set_var("WGPU_BACKEND", "dx12") }; // none on Linux
    let e = wgnn::Gpu::new().unwrap_err().to_string();
    assert!(e.contains("apt-get install mesa-vulkan-drivers"), "{e}");
    let e = wgnn::Gpu::software().unwrap_err().to_string();
    assert!(e.contains("apt-get install mesa-vulkan-drivers"), "{e}");
    unsafe { std::env::remove_var("WGPU_BACKEND") };

    // Without the variables: a software adapter here, opened with its own limits.
    let gpu = wgnn::Gpu::new().unwrap();
    assert!(
        gpu.info().limits.max_storage_buffer_binding_size >= 128 << 20,
        "{}",
        gpu.info()
    );
}
