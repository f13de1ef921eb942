//! wgnn inside an application that owns its GPU: the application creates the wgpu
//! instance, adapter, device and queue, fills a storage buffer of its own with images, hands
//! the device to wgnn (`Gpu::from_wgpu`), runs a classifier on that buffer, then goes on
//! using the device itself: its own compute shader reads wgnn's output buffer in place, and
//! its own copies and readbacks still work.
//!
//! ```text
//! cargo run --release --example embed                          # trains a small MLP first
//! cargo run --release --example fashion_mlp -- --save mlp.safetensors
//! cargo run --release --example embed -- --weights mlp.safetensors
//! ```
//!
//! Exits with status 1 if wgnn's results on the application's buffer differ from
//! `Sequential::predict` on the same images, or if the application's own work goes wrong.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{
    cli::{AnyResult, Cli, pct},
    data::FASHION_CLASSES,
};
use wgnn::nn::{Activation, Dense, Dropout, Fit, Optimizer, Sequential};
use wgnn::wgpu;
use wgpu::util::DeviceExt;

const USAGE: &str = "\
usage: embed [--weights FILE] [--images N] [--quick]
  --weights FILE  weights written by `fashion_mlp --save FILE` (784-256-256-10); without it
                  the same MLP is trained for 2 epochs on the subset shipped in data/
  --images N      how many test images the application classifies (default 16)
  --quick         accepted for CI (the example is quick either way)";

/// The application's own shader: the arg-max of each row of a logits matrix.
const ARGMAX_WGSL: &str = r#"
struct Dims { rows: u32, cols: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> best: array<u32>;

@compute @workgroup_size(64)
fn argmax(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= dims.rows) { return; }
    var k = 0u;
    var m = logits[r * dims.cols];
    for (var c = 1u; c < dims.cols; c++) {
        let v = logits[r * dims.cols + c];
        if (v > m) { m = v; k = c; }
    }
    best[r] = k;
}
"#;

/// The application's GPU: what a game or a viewer would already have.
struct App {
    device: wgpu::Device,
    queue: wgpu::Queue,
    errors: Arc<Mutex<Vec<String>>>,
}

impl App {
    /// A hardware adapter if there is one, else a software one (lavapipe first).
    fn new() -> AnyResult<App> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let rank = |a: &wgpu::Adapter| {
            let i = a.get_info();
            let soft = i.device_type == wgpu::DeviceType::Cpu;
            let gl = i.backend == wgpu::Backend::Gl;
            (soft, gl)
        };
        let adapter = adapters.iter().min_by_key(|a| rank(a)).ok_or(
            "no GPU adapter, not even a software one (on Debian or Ubuntu, \
             `apt-get install mesa-vulkan-drivers` provides lavapipe)",
        )?;
        let info = adapter.get_info();
        println!(
            "application: adapter {} ({:?}, {:?}) of {} found",
            info.name,
            info.backend,
            info.device_type,
            adapters.len()
        );
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("application device"),
                required_features: wgpu::Features::empty(),
                // wgnn sizes its buffers by the device's limits: ask for what the adapter has.
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))?;
        // The application's own error handler; wgnn installs none on a device it is handed.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Ok(App {
            device,
            queue,
            errors,
        })
    }

    /// Copies `bytes` bytes of `buffer` to the host with the application's own staging
    /// buffer, encoder and submission.
    fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> AnyResult<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("application readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("application readback"),
            });
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        let index = self.queue.submit(Some(enc.finish()));
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(Duration::from_secs(60)),
            })
            .map_err(|e| format!("application readback: {e}"))?;
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|e| format!("application readback: no map callback: {e}"))?
            .map_err(|e| format!("application readback: {e}"))?;
        let out = staging
            .get_mapped_range(..)
            .map_err(|e| format!("application readback: {e}"))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }

    fn check_errors(&self) -> AnyResult {
        let errors = self.errors.lock().map_err(|_| "error list poisoned")?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("the device reported: {}", errors.join("; ")).into())
        }
    }
}

/// The fashion_mlp architecture, so its `--save` files load here.
fn mlp() -> wgnn::Result<Sequential> {
    Ok(Sequential::new(&[784])
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.2)?)
        .with(Dense::new(256)?.activation(Activation::Relu))
        .with(Dropout::new(0.5)?)
        .with(Dense::new(10)?))
}

fn run() -> AnyResult {
    let mut cli = Cli::new(USAGE);
    let weights: Option<PathBuf> = cli.value("--weights")?;
    let n: usize = cli.value("--images")?.unwrap_or(16);
    let _ = cli.flag("--quick");
    cli.finish()?;
    let (train, test) = wgnn::data::shipped_fashion_mnist()?;
    if n == 0 || n > test.count {
        return Err(format!("--images must be in 1..={}, got {n}", test.count).into());
    }

    // 1. The application's device and a storage buffer it fills itself: n test images as
    //    f32 in [0, 1], row-major [n, 784].
    let app = App::new()?;
    let pixels: Vec<f32> = test.images[..n * 784]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    let images = app
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("application images"),
            contents: bytemuck::cast_slice(&pixels),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        });

    // 2. wgnn on the same device and queue.
    let gpu = wgnn::Gpu::from_wgpu(app.device.clone(), app.queue.clone());
    let mut model = mlp()?;
    model.compile(&gpu, Optimizer::adam(1e-3), 42)?;
    match &weights {
        Some(path) => {
            model.load_weights(path)?;
            println!("wgnn: weights loaded from {}", path.display());
        }
        None => {
            let h = model.fit(
                &train,
                &Fit {
                    epochs: 2,
                    batch_size: 128,
                    verbose: false,
                    ..Fit::default()
                },
            )?;
            let acc = h.epochs.last().map_or(f64::NAN, |e| e.accuracy);
            println!(
                "wgnn: trained the MLP for 2 epochs on {} images (training accuracy {})",
                train.count,
                pct(acc)
            );
        }
    }

    // 3. Inference on the application's buffer: the application copies it into a wgnn
    //    tensor with its own encoder; wgnn's ops run on the same queue, so they see it.
    let x = wgnn::Tensor::zeros(&gpu, &[n, 784])?;
    let mut enc = app
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("application -> wgnn"),
        });
    enc.copy_buffer_to_buffer(&images, 0, x.buffer(), 0, (n * 784 * 4) as u64);
    app.queue.submit(Some(enc.finish()));
    let w = model.weights()?;
    let t = |name: &str| -> AnyResult<wgnn::Tensor> {
        let nt = w
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("the model has no weight {name:?}"))?;
        Ok(wgnn::Tensor::from_slice(&gpu, &nt.data, &nt.shape)?)
    };
    let (w0, b0) = (t("dense/kernel")?, t("dense/bias")?);
    let (w1, b1) = (t("dense_1/kernel")?, t("dense_1/bias")?);
    let (w2, b2) = (t("dense_2/kernel")?, t("dense_2/bias")?);
    let h1 = wgnn::ops::dense(&x, &w0, Some(&b0), true, None)?;
    let h2 = wgnn::ops::dense(&h1, &w1, Some(&b1), true, None)?;
    let logits = wgnn::ops::dense(&h2, &w2, Some(&b2), false, None)?;
    let probs = wgnn::ops::softmax(&logits)?.to_vec()?;
    let got = logits.to_vec()?;

    // The same images through Sequential::predict (host input): the answers must agree.
    let want = model.predict(&pixels)?;
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    println!(
        "wgnn: logits from the application's buffer vs predict(): worst relative difference {worst:.2e}"
    );
    if !worst.is_finite() || worst > 1e-4 {
        return Err(format!(
            "ops on the application's buffer disagree with predict(): worst relative difference {worst}"
        )
        .into());
    }

    // 4. The application keeps using the device: its own pipeline reads wgnn's logits
    //    buffer in place and writes the arg-max into a buffer of its own.
    let module = app
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("application argmax"),
            source: wgpu::ShaderSource::Wgsl(ARGMAX_WGSL.into()),
        });
    let pipeline = app
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("application argmax"),
            layout: None,
            module: &module,
            entry_point: Some("argmax"),
            compilation_options: Default::default(),
            cache: None,
        });
    let dims = app
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("application dims"),
            contents: bytemuck::cast_slice(&[n as u32, 10u32, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
    let best = app.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application argmax"),
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let bind = app.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("application argmax"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: dims.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: logits.buffer().as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: best.as_entire_binding(),
            },
        ],
    });
    let mut enc = app
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("application argmax"),
        });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("application argmax"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups((n as u32).div_ceil(64), 1, 1);
    }
    app.queue.submit(Some(enc.finish()));
    let classes: Vec<u32> = bytemuck::pod_collect_to_vec(&app.read(&best, (n * 4) as u64)?);
    // ... and its own buffer is still what it wrote.
    let back: Vec<f32> = bytemuck::pod_collect_to_vec(&app.read(&images, (n * 784 * 4) as u64)?);
    app.check_errors()?;
    if back != pixels {
        return Err("the application's image buffer changed under wgnn".into());
    }

    println!("\npredicted = the application's own arg-max shader on wgnn's logits buffer");
    println!(" image  label         predicted              probability");
    let mut correct = 0;
    for (i, &c) in classes.iter().enumerate() {
        let host = (0..10)
            .max_by(|&a, &b| want[i * 10 + a].total_cmp(&want[i * 10 + b]))
            .unwrap_or(0);
        if c as usize != host {
            return Err(format!(
                "image {i}: the application's argmax says {c}, the host's says {host}"
            )
            .into());
        }
        let label = usize::from(test.labels[i]);
        correct += usize::from(label == host);
        println!(
            "{i:>6}  {:<13} {:<13} {:<8} {:.3}",
            FASHION_CLASSES[label],
            FASHION_CLASSES[host],
            if label == host { "" } else { "(wrong)" },
            probs[i * 10 + host]
        );
    }
    println!(
        "\n{correct} of {n} correct. The application's device served wgnn and its own \
         pipeline; its buffer read back intact; no device errors."
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    // This application creates its own Vulkan instance, so wgnn's own guard (which runs
    // before wgnn's first instance) does not cover it: on a headless Linux box Mesa's
    // device_select layer would print "error: XDG_RUNTIME_DIR is invalid ..." here. An
    // application turns that layer off the same way, before it starts any thread.
    if std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        // SAFETY: the first statement of main; no other thread exists yet.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    support::cli::main_with("embed", run)
}
