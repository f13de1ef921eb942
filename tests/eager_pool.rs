//! The eager ops' buffer pool: a dropped tensor's buffer is reused by the next tensor of its
//! size (never leaking its data into a result), a loop of eager ops creates no buffer and no
//! bind group once its sizes have been seen, `Gpu::counters()` reports the idle bytes, and
//! `Gpu::release_pool`, `Gpu::set_pool_limit`, the memory budget and device loss release
//! them.
//!
//! The tests share the binary's `Gpu`s and their pools and counters, so they run one at a
//! time (`serial`), each starting from an empty pool.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::{assert_close, gpus, rand_vec};
use wgnn::{Error, Gpu, Tensor, ops, philox, reference};

/// Odd element counts: 1 and 3 share a 16-byte buffer, the others are no multiple of 4.
const SIZES: [usize; 5] = [1, 3, 7, 33, 257];

/// Bytes of a tensor of `n` elements: rounded up to 16.
fn bytes(n: usize) -> u64 {
    (4 * n as u64).div_ceil(16) * 16
}

/// Takes the binary's lock: one test at a time (shared pools, counters, poison switch).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The binary's `Gpu`s (outputs poisoned), each with an empty pool and no limits.
fn fresh() -> &'static [Gpu] {
    let all = gpus();
    wgnn::set_poison_outputs(true);
    for g in all {
        g.set_memory_budget(None);
        g.set_pool_limit(None);
        g.release_pool();
    }
    all
}

/// Runs wgpu's deferred frees (dropped objects leave the report at the next poll).
fn settle(gpu: &Gpu) {
    let _ = gpu.device().poll(wgnn::wgpu::PollType::wait_indefinitely());
}

#[test]
fn eager_pool_reused_output_holds_poison_not_the_old_tensor() {
    let _s = serial();
    for gpu in fresh() {
        for n in SIZES {
            gpu.release_pool();
            let old: Vec<f32> = (0..n).map(|i| 1000.0 + i as f32).collect();
            let t = Tensor::from_slice(gpu, &old, &[n]).unwrap();
            assert_eq!(t.to_vec().unwrap(), old, "n={n}: the old tensor's data");
            drop(t);
            let before = gpu.counters();
            assert_eq!(
                before.pooled_buffers, 1,
                "n={n}: the dropped buffer is idle"
            );
            let out = wgnn::testing::eager_output(gpu, &[n]).unwrap();
            let after = gpu.counters();
            assert_eq!(
                after.buffers_created, before.buffers_created,
                "n={n}: the output reuses the idle buffer"
            );
            assert_eq!(after.pooled_buffers, 0, "n={n}");
            let bits: Vec<u32> = out.to_vec().unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(
                bits,
                vec![u32::MAX; n],
                "n={n}: a reused output starts poisoned (all-ones bits), not as the old \
                 tensor's {old:?}"
            );
        }
    }
}

/// Relu, dropout, matmul, bias_add and softmax of the given inputs, each checked against its
/// f64 reference: exact for relu and dropout (`philox::keep`), f32 rounding for the others.
fn ops_against_references(gpu: &Gpu, seed: u64) {
    let (m, k, n) = (7, 33, 3);
    let av = rand_vec(m * k, seed);
    let bv = rand_vec(k * n, seed + 1);
    let cv = rand_vec(n, seed + 2);
    let a = Tensor::from_slice(gpu, &av, &[m, k]).unwrap();
    let b = Tensor::from_slice(gpu, &bv, &[k, n]).unwrap();
    let c = Tensor::from_slice(gpu, &cv, &[n]).unwrap();

    let got = ops::relu(&a).unwrap().to_vec().unwrap();
    assert_close("relu", &got, &reference::relu(&av), 0.0, 0.0);
    let got = ops::dropout(&a, 0.5, seed, 3).unwrap().to_vec().unwrap();
    for (i, (&g, &x)) in got.iter().zip(&av).enumerate() {
        let want = if philox::keep(seed, 3, i as u64, 0.5) {
            x * philox::scale(0.5)
        } else {
            0.0
        };
        assert_eq!(g.to_bits(), want.to_bits(), "dropout element {i}");
    }
    let mm = ops::matmul(&a, &b, false, false).unwrap();
    let want = reference::matmul(&av, &bv, m, k, n, false, false);
    assert_close("matmul", &mm.to_vec().unwrap(), &want, 1e-5, 0.0);
    let got = ops::bias_add(&mm, &c).unwrap().to_vec().unwrap();
    let mmv = mm.to_vec().unwrap();
    let want = reference::bias_add(&mmv, &cv);
    assert_close("bias_add", &got, &want, 1e-6, 0.0);
    let got = ops::softmax(&a).unwrap().to_vec().unwrap();
    let want = reference::softmax(&av, k);
    assert_close("softmax", &got, &want, 1e-5, 0.0);
}

/// Fills the pool with buffers of garbage for every size the ops above allocate: uploads of
/// huge, negative and NaN values at those sizes take the idle buffers, and drop back.
fn garbage(gpu: &Gpu) {
    let held: Vec<Tensor> = [7 * 33, 33 * 3, 3, 7 * 3]
        .iter()
        .flat_map(|&n| {
            let junk: Vec<f32> = (0..n)
                .map(|i| [1e30, -7.5, f32::NAN, f32::INFINITY][i % 4])
                .collect();
            (0..4).map(move |_| junk.clone()).collect::<Vec<_>>()
        })
        .map(|junk| {
            let len = junk.len();
            Tensor::from_slice(gpu, &junk, &[len]).unwrap()
        })
        .collect();
    for t in &held {
        assert!(t.to_vec().unwrap().iter().any(|v| v.is_nan()));
    }
}

#[test]
fn eager_pool_results_match_references_over_buffers_of_garbage() {
    let _s = serial();
    for gpu in fresh() {
        // Outputs both poisoned and not: without poisoning a reused output holds the garbage
        // until its kernel overwrites all of it.
        for poison in [true, false] {
            wgnn::set_poison_outputs(poison);
            ops_against_references(gpu, 11); // compiles; creates uniforms and outputs
            garbage(gpu);
            let before = gpu.counters();
            assert!(before.pooled_buffers >= 16, "{before:?}");
            ops_against_references(gpu, 12);
            let after = gpu.counters();
            assert_eq!(
                after.buffers_created, before.buffers_created,
                "poison {poison}: every input and output reused an idle buffer of garbage"
            );
        }
        wgnn::set_poison_outputs(true);
    }
}

#[test]
fn eager_pool_a_loop_of_1000_ops_creates_no_buffer_or_bind_group_after_the_first_few() {
    let _s = serial();
    for gpu in fresh() {
        let n = 257;
        let xv = rand_vec(n, 5);
        let mut y = Tensor::from_slice(gpu, &xv, &[n]).unwrap();
        let mut host = xv.clone();
        let mut marks = Vec::new();
        for i in 0..500u64 {
            // Two ops a round: 1,000 in all.
            let r = ops::relu(&y).unwrap();
            let next = ops::dropout(&r, 0.25, 9, i).unwrap();
            drop(r);
            y = next;
            for (j, v) in host.iter_mut().enumerate() {
                let kept = philox::keep(9, i, j as u64, 0.25);
                *v = if kept {
                    v.max(0.0) * philox::scale(0.25)
                } else {
                    0.0
                };
            }
            if i == 10 || i == 499 {
                settle(gpu);
                marks.push((gpu.counters(), gpu.object_counts()));
            }
            if i == 5 || i == 499 {
                // The chain against the host's (after the counters: the first readback makes
                // its staging buffer, and each one submits a copy).
                let got = y.to_vec().unwrap();
                for (j, (&g, &w)) in got.iter().zip(&host).enumerate() {
                    assert_eq!(g, w, "element {j} after {} ops", 2 * (i + 1));
                }
            }
        }
        let ((c10, o10), (c500, o500)) = (marks[0], marks[1]);
        assert_eq!(
            c500.buffers_created, c10.buffers_created,
            "buffers created between op 22 and op 1,000"
        );
        assert_eq!(
            c500.bind_groups_created, c10.bind_groups_created,
            "bind groups created between op 22 and op 1,000"
        );
        assert_eq!(c500.submissions - c10.submissions, 2 * 489, "one per op");
        assert_eq!(c500.device_bytes, c10.device_bytes);
        assert_eq!(c500.pooled_bytes, c10.pooled_bytes);
        if let (Some(o10), Some(o500)) = (o10, o500) {
            assert_eq!(o500, o10, "live wgpu objects");
        }
    }
}

#[test]
fn eager_pool_counters_report_pooled_bytes_and_release_empties_the_pool() {
    let _s = serial();
    for gpu in fresh() {
        settle(gpu);
        let start = gpu.counters();
        assert_eq!((start.pooled_bytes, start.pooled_buffers), (0, 0));
        let objects = gpu.object_counts();
        let ts: Vec<Tensor> = SIZES
            .iter()
            .map(|&n| Tensor::from_slice(gpu, &vec![2.0; n], &[n]).unwrap())
            .collect();
        let held: u64 = SIZES.iter().map(|&n| bytes(n)).sum();
        let live = gpu.counters();
        assert_eq!(live.device_bytes - start.device_bytes, held);
        assert_eq!(live.pooled_bytes, 0);
        drop(ts);
        let idle = gpu.counters();
        assert_eq!(
            idle.pooled_bytes, held,
            "freed bytes are reported as pooled"
        );
        assert_eq!(idle.pooled_buffers, SIZES.len() as u64);
        assert_eq!(
            idle.device_bytes, start.device_bytes,
            "and no longer as in use"
        );
        settle(gpu);
        let pooled_objects = gpu.object_counts();
        gpu.release_pool();
        settle(gpu);
        let released = gpu.counters();
        assert_eq!((released.pooled_bytes, released.pooled_buffers), (0, 0));
        if let (Some(before), Some(pooled), Some(after)) =
            (objects, pooled_objects, gpu.object_counts())
        {
            assert_eq!(
                pooled.buffers,
                before.buffers + SIZES.len(),
                "idle buffers are alive"
            );
            assert_eq!(after.buffers, before.buffers, "release destroys them");
        } else {
            eprintln!(
                "{}: no object report; object counts not checked",
                gpu.info()
            );
        }
        // The next tensor of a released size is a new buffer.
        let t = Tensor::from_slice(gpu, &[1.0; 7], &[7]).unwrap();
        assert_eq!(gpu.counters().buffers_created, released.buffers_created + 1);
        assert_eq!(t.to_vec().unwrap(), [1.0; 7]);
    }
}

#[test]
fn eager_pool_a_zeros_tensor_reusing_a_buffer_is_zeros() {
    let _s = serial();
    for gpu in fresh() {
        for n in SIZES {
            drop(Tensor::from_slice(gpu, &vec![-3.0; n], &[n]).unwrap());
            let before = gpu.counters();
            let z = Tensor::zeros(gpu, &[n]).unwrap();
            assert_eq!(gpu.counters().buffers_created, before.buffers_created);
            assert_eq!(z.to_vec().unwrap(), vec![0.0; n], "n={n}");
        }
    }
}

#[test]
fn eager_pool_limit_and_memory_budget_release_idle_buffers() {
    let _s = serial();
    for gpu in fresh() {
        // A limit below a buffer's size: it is destroyed rather than kept.
        gpu.set_pool_limit(Some(bytes(257) - 16));
        drop(Tensor::from_slice(gpu, &[1.0; 257], &[257]).unwrap());
        drop(Tensor::from_slice(gpu, &[1.0; 33], &[33]).unwrap());
        let c = gpu.counters();
        assert_eq!((c.pooled_bytes, c.pooled_buffers), (bytes(33), 1));
        // Lowering the limit releases the least recently freed first.
        drop(Tensor::from_slice(gpu, &[1.0; 7], &[7]).unwrap());
        gpu.set_pool_limit(Some(bytes(7)));
        let c = gpu.counters();
        assert_eq!((c.pooled_bytes, c.pooled_buffers), (bytes(7), 1));
        gpu.set_pool_limit(Some(0));
        assert_eq!(gpu.counters().pooled_bytes, 0);
        gpu.set_pool_limit(None);

        // The budget counts idle bytes and releases them before refusing an allocation.
        let big = 64 * 1024; // elements: 256 KiB
        let live = gpu.counters().device_bytes;
        gpu.set_memory_budget(Some(live + bytes(big) + bytes(big + 4)));
        let a = Tensor::zeros(gpu, &[big]).unwrap();
        drop(Tensor::zeros(gpu, &[big]).unwrap());
        assert_eq!(gpu.counters().pooled_bytes, bytes(big));
        // A third size would pass the budget with the idle buffer: that buffer goes.
        let b = Tensor::zeros(gpu, &[big + 4]).unwrap();
        let c = gpu.counters();
        assert_eq!(c.pooled_bytes, 0, "the idle buffer made room");
        assert_eq!(c.device_bytes, live + bytes(big) + bytes(big + 4));
        // Nothing idle left to release: past the budget is an error naming the sizes.
        match Tensor::zeros(gpu, &[big]) {
            Err(Error::OutOfMemory {
                requested, in_use, ..
            }) => {
                assert_eq!(requested, bytes(big));
                assert_eq!(in_use, live + bytes(big) + bytes(big + 4));
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
        drop((a, b));
        gpu.set_memory_budget(None);
    }
}

#[test]
fn eager_pool_device_loss_releases_the_pool_and_ops_say_so() {
    let _s = serial();
    wgnn::set_poison_outputs(true);
    // A device of its own: this test destroys it.
    let gpu = Gpu::software().unwrap();
    let x = Tensor::from_slice(&gpu, &[1.0, -2.0, 3.0], &[3]).unwrap();
    drop(ops::relu(&x).unwrap());
    assert_eq!(gpu.counters().pooled_buffers, 1);
    gpu.device().destroy();
    // wgpu reports the loss once the queue drains.
    settle(&gpu);
    match ops::relu(&x) {
        Err(Error::DeviceLost { op, .. }) => assert_eq!(op, "relu"),
        other => panic!("expected DeviceLost, got {other:?}"),
    }
    assert_eq!(
        gpu.counters().pooled_bytes,
        0,
        "a lost device's pool is released"
    );
    drop(x);
    assert_eq!(
        gpu.counters().pooled_bytes,
        0,
        "a lost device's buffers are not pooled"
    );
}
