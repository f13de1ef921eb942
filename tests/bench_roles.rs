//! The bench's memory figures: every device buffer of a training session has a role, the
//! roles sum to `ExecStats::device_bytes`, and for the main demo's MLP (784-256-256-10 with
//! dropout, Adam, batch 256) each role matches a count made by hand from the layer shapes.

use wgnn::Gpu;
use wgnn::nn::{Activation, Dense, Dropout, Optimizer, Sequential};
use wgnn::testing::BufferRole;

/// Bytes of a storage buffer of `elements` 4-byte values: wgnn rounds every storage buffer
/// up to 16 bytes (whole `vec4`s).
fn buf(elements: usize) -> u64 {
    (elements as u64 * 4).div_ceil(16) * 16
}

/// Bytes of a u8 buffer (the data set's pixels and labels), rounded up as [`buf`].
fn bytes(n: usize) -> u64 {
    (n as u64).div_ceil(16) * 16
}

#[test]
fn bench_roles_mlp_adam_sum_to_device_bytes_and_match_hand_count() -> wgnn::Result<()> {
    // A Gpu of its own, so nothing but this session holds device memory.
    for gpu in Gpu::software_all()? {
        let (train, _) = wgnn::data::shipped_fashion_mnist()?;
        let (batch, count) = (256usize, 512usize);
        let data = train.subset(0..count)?;
        let mut model = Sequential::new(&[784])
            .with(Dense::new(256)?.activation(Activation::Relu))
            .with(Dropout::new(0.2)?)
            .with(Dense::new(256)?.activation(Activation::Relu))
            .with(Dropout::new(0.5)?)
            .with(Dense::new(10)?);
        model.compile(&gpu, Optimizer::adam(1e-3), 42)?;
        let mut t = model.trainer(&data, batch)?;
        t.begin_epoch();
        t.step()?;
        t.step()?;
        t.end_epoch(1)?;
        let roles = t.role_bytes();
        let device = gpu.counters().device_bytes;

        // Parameters: each kernel [in, out] and bias [out] is one buffer.
        let layers = [(784usize, 256usize), (256, 256), (256, 10)];
        let weights: u64 = layers.iter().map(|&(i, o)| buf(i * o) + buf(o)).sum();
        // 784*256*4 + 256*4 + 256*256*4 + 256*4 + 256*10*4 + 48 (10 floats rounded up).
        assert_eq!(weights, 1_077_296);
        // One gradient per parameter; Adam keeps m and v per parameter.
        let gradients = weights;
        let adam = 2 * weights;
        // The resident set: u8 pixels, u8 labels, the u32 sample order.
        let data_bytes = bytes(count * 784) + bytes(count) + buf(count);
        // The loss and accuracy accumulators (4 f32) and the status word (4 u32).
        let status = buf(4) + buf(4);
        // Activations as planned: the pool holds what is alive at once at the busiest
        // points of the step (buffers are reused once their last reader has run):
        // - the gathered batch x0 [B, 784] (read again by the first weight gradient) and
        //   its labels [B];
        // - the forward activations a1 and a2 [B, 256], both read again in backward; at the
        //   second layer's relu-dropout backward the input gradient of the last layer and
        //   the new dz are alive beside them: 4 buffers of [B, 256] (later gradients reuse
        //   these two);
        // - logits and their gradient [B, 10] (alive together in the loss), the loss's row
        //   statistics [2B], loss and correct count (1 each) and the label status (4 u32).
        let b = batch;
        let activations = buf(b * 784)
            + buf(b)
            + 4 * buf(b * 256)
            + 2 * buf(b * 10)
            + buf(2 * b)
            + 2 * buf(1)
            + buf(4);

        let got = |r| roles.bytes(r);
        assert_eq!(got(BufferRole::Weights), weights, "weights");
        assert_eq!(got(BufferRole::Gradient), gradients, "gradients");
        assert_eq!(got(BufferRole::OptimizerState), adam, "Adam m and v");
        assert_eq!(got(BufferRole::Data), data_bytes, "data set");
        assert_eq!(got(BufferRole::Status), status, "metrics and status");
        assert_eq!(got(BufferRole::Activation), activations, "activations");
        assert_eq!(
            got(BufferRole::Mask),
            0,
            "masks are regenerated, never stored"
        );
        assert_eq!(
            got(BufferRole::Staging),
            0,
            "a plan holds no staging buffer"
        );
        assert!(
            got(BufferRole::Uniform) > 0,
            "the plan's uniforms are counted"
        );
        let hand = weights + gradients + adam + data_bytes + status + activations;
        assert_eq!(roles.device_bytes(), hand, "roles counted in device_bytes");
        assert_eq!(
            device, hand,
            "ExecStats::device_bytes against the hand count"
        );
    }
    Ok(())
}

#[test]
fn bench_roles_count_the_last_smaller_batch_plan_too() -> wgnn::Result<()> {
    for gpu in Gpu::software_all()? {
        let (train, _) = wgnn::data::shipped_fashion_mnist()?;
        // 100 samples in batches of 64: a full plan and a plan for the last 36.
        let data = train.subset(0..100)?;
        let mut model = Sequential::new(&[784])
            .with(Dense::new(32)?.activation(Activation::Relu))
            .with(Dense::new(10)?);
        model.compile(&gpu, Optimizer::sgd(0.1, 0.9), 1)?;
        let t = model.trainer(&data, 64)?;
        let roles = t.role_bytes();
        assert_eq!(roles.device_bytes(), gpu.counters().device_bytes);
        // Weights are shared by both plans and counted once.
        assert_eq!(
            roles.bytes(BufferRole::Weights),
            buf(784 * 32) + buf(32) + buf(32 * 10) + buf(10)
        );
    }
    Ok(())
}
