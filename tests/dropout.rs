//! Dropout: GPU keep bits equal the host's Philox mask, statistics, streams, edge rates.

mod common;

use common::{gpus, rand_vec};
use wgnn::{Tensor, ops, philox};

/// A tensor of ones: after dropout each element is 0 (dropped) or 1 / (1 - p) (kept).
fn keep_bits(gpu: &wgnn::Gpu, n: usize, p: f32, seed: u64, offset: u64) -> Vec<bool> {
    let x = Tensor::from_slice(gpu, &vec![1.0; n], &[n]).unwrap();
    let y = ops::dropout(&x, p, seed, offset).unwrap().to_vec().unwrap();
    let s = philox::scale(p);
    y.iter()
        .map(|&v| {
            assert!(
                v == 0.0 || v == s,
                "dropout output {v} is neither 0 nor {s}"
            );
            v != 0.0
        })
        .collect()
}

#[test]
fn dropout_gpu_keep_bits_equal_host_philox_every_element() {
    let seeds = [0u64, 1, 0xFFFF_FFFF, 0x1234_5678_9ABC_DEF0, u64::MAX];
    let offsets = [0u64, 1, 0xFFFF_FFFF, 1 << 32, u64::MAX];
    for gpu in common::gpus_and_portable() {
        for (i, &seed) in seeds.iter().enumerate() {
            for &n in &[1usize, 3, 7, 33, 257, 4099] {
                let offset = offsets[(i + n) % offsets.len()];
                for p in [0.05f32, 0.5, 0.8] {
                    let got = keep_bits(gpu, n, p, seed, offset);
                    for (j, &k) in got.iter().enumerate() {
                        assert_eq!(
                            k,
                            philox::keep(seed, offset, j as u64, p),
                            "{}: seed {seed:#x} offset {offset:#x} p {p} element {j} of {n}",
                            gpu.info().name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn dropout_masks_bit_identical_across_software_backends() {
    let all = gpus();
    let compare = common::has_adapters("dropout_masks_bit_identical_across_software_backends", 2);
    let n = 10_007;
    let x = rand_vec(n, 3);
    let (p, seed, offset) = (0.37f32, 99u64, 12u64);
    let s = philox::scale(p);
    // The host reference (Philox on the CPU), against which every adapter is checked first.
    let want: Vec<u32> = (0..n)
        .map(|i| {
            let keep = philox::keep(seed, offset, i as u64, p);
            (if keep { x[i] * s } else { 0.0 }).to_bits()
        })
        .collect();
    let outs: Vec<Vec<u32>> = all
        .iter()
        .map(|g| {
            let t = Tensor::from_slice(g, &x, &[n]).unwrap();
            ops::dropout(&t, p, seed, offset)
                .unwrap()
                .to_vec()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    for (g, o) in all.iter().zip(&outs) {
        let bad = o.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            bad,
            None,
            "{}: dropout bits differ from the host Philox reference",
            g.info()
        );
    }
    if compare {
        assert!(all.len() >= 2);
        for (g, o) in all.iter().zip(&outs).skip(1) {
            assert_eq!(o, &outs[0], "{} differs from {}", g.info(), all[0].info());
        }
        eprintln!("dropout bits compared across {} adapters", all.len());
    }
}

#[test]
fn dropout_keep_fraction_within_five_sigma() {
    let gpu = common::gpu();
    let n = 1 << 20;
    for p in [0.05f32, 0.1, 0.2, 0.5, 0.8] {
        let kept = keep_bits(gpu, n, p, 2024, 1).iter().filter(|&&k| k).count() as f64;
        let q = 1.0 - f64::from(p);
        let sigma = (n as f64 * q * (1.0 - q)).sqrt();
        let dev = (kept - n as f64 * q).abs();
        assert!(
            dev <= 5.0 * sigma,
            "p {p}: kept {kept} of {n}, expected {} +- {}",
            n as f64 * q,
            5.0 * sigma
        );
    }
}

#[test]
fn dropout_different_offsets_and_seeds_give_different_masks() {
    let gpu = common::gpu();
    let a = keep_bits(gpu, 4096, 0.5, 1, 0);
    let b = keep_bits(gpu, 4096, 0.5, 1, 1);
    let c = keep_bits(gpu, 4096, 0.5, 2, 0);
    let agree = |u: &[bool], v: &[bool]| u.iter().zip(v).filter(|(x, y)| x == y).count();
    // Independent masks agree on about half the elements; identical ones on all.
    assert!(
        agree(&a, &b) < 2300,
        "offsets 0 and 1 agree on {} of 4096",
        agree(&a, &b)
    );
    assert!(
        agree(&a, &c) < 2300,
        "seeds 1 and 2 agree on {} of 4096",
        agree(&a, &c)
    );
}

#[test]
fn dropout_backward_uses_exactly_the_forward_mask() {
    for gpu in gpus() {
        let n = 1031;
        let x = rand_vec(n, 5);
        let dy = rand_vec(n, 6);
        let (p, seed, offset) = (0.3f32, 77u64, 5u64);
        let gdy = Tensor::from_slice(gpu, &dy, &[n]).unwrap();
        let dx = ops::dropout_backward(&gdy, p, seed, offset)
            .unwrap()
            .to_vec()
            .unwrap();
        let gx = Tensor::from_slice(gpu, &x, &[n]).unwrap();
        let y = ops::dropout(&gx, p, seed, offset)
            .unwrap()
            .to_vec()
            .unwrap();
        let s = philox::scale(p);
        for i in 0..n {
            let keep = philox::keep(seed, offset, i as u64, p);
            // Both against the host mask, not against each other.
            assert_eq!(dx[i], if keep { dy[i] * s } else { 0.0 }, "dx element {i}");
            assert_eq!(y[i], if keep { x[i] * s } else { 0.0 }, "y element {i}");
        }
    }
}

#[test]
fn dropout_rate_zero_is_identity_and_one_gives_zeros() {
    for gpu in gpus() {
        let x = rand_vec(257, 7);
        let mut big = x.clone();
        big[3] = f32::MAX;
        let gx = Tensor::from_slice(gpu, &big, &[257]).unwrap();
        assert_eq!(ops::dropout(&gx, 0.0, 1, 2).unwrap().to_vec().unwrap(), big);
        let zeros = ops::dropout(&gx, 1.0, 1, 2).unwrap().to_vec().unwrap();
        assert!(
            zeros.iter().all(|v| v.to_bits() == 0),
            "p = 1 must give +0.0 everywhere"
        );
        let back = ops::dropout_backward(&gx, 1.0, 1, 2)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(back.iter().all(|v| v.to_bits() == 0));
    }
}

#[test]
fn dropout_rejects_rates_outside_unit_interval() {
    let gpu = common::gpu();
    let x = Tensor::from_slice(gpu, &[1.0; 4], &[4]).unwrap();
    assert_eq!(
        ops::dropout(&x, 1.5, 0, 0).unwrap_err().to_string(),
        "dropout: rate 1.5 is outside [0, 1]"
    );
    assert_eq!(
        ops::dropout(&x, -0.1, 0, 0).unwrap_err().to_string(),
        "dropout: rate -0.1 is outside [0, 1]"
    );
    assert_eq!(
        ops::dropout_backward(&x, f32::NAN, 0, 0)
            .unwrap_err()
            .to_string(),
        "dropout_backward: rate NaN is outside [0, 1]"
    );
}

/// One invocation covers 16 elements (four Philox blocks): sizes around its edges, forward
/// and backward against the host mask; and the bench's copy kernel (also 16 elements per
/// invocation) copies every element.
#[test]
fn dropout_and_copy_cover_every_element_around_invocation_edges() {
    use wgnn::testing::Timed;
    for gpu in gpus() {
        for n in [1usize, 4, 15, 16, 17, 63, 64, 65, 1023, 1024, 1025] {
            let x = rand_vec(n, n as u64);
            let gx = Tensor::from_slice(gpu, &x, &[n]).unwrap();
            let (p, seed, offset) = (0.3f32, 5u64, 9u64);
            let s = philox::scale(p);
            let want: Vec<f32> = (0..n)
                .map(|i| {
                    if philox::keep(seed, offset, i as u64, p) {
                        x[i] * s
                    } else {
                        0.0
                    }
                })
                .collect();
            let fwd = ops::dropout(&gx, p, seed, offset)
                .unwrap()
                .to_vec()
                .unwrap();
            let bwd = ops::dropout_backward(&gx, p, seed, offset)
                .unwrap()
                .to_vec()
                .unwrap();
            assert_eq!(fwd, want, "{}: dropout of {n}", gpu.info().name);
            assert_eq!(bwd, want, "{}: dropout_backward of {n}", gpu.info().name);
            let y = Tensor::zeros(gpu, &[n]).unwrap();
            Timed::copy(&gx, &y).unwrap().time(1).unwrap();
            assert_eq!(y.to_vec().unwrap(), x, "{}: copy of {n}", gpu.info().name);
        }
    }
}
