//! matmul, the fused dense layer, bias, ReLU and dropout against the f64 references.

mod common;

use common::{assert_close, gpus, gpus_and_portable, rand_vec};
use wgnn::ops::{self, DropoutSpec};
use wgnn::{Tensor, philox, reference};

/// f32 GEMM against an f64 reference: the error grows like sqrt(k) * eps * |a||b|.
const MATMUL_REL: f64 = 1e-5;

/// Held by the tests that compile matmul variants: wgpu's GL backend gives up (panics) when
/// a thread waits over 6 seconds for the GL context, and llvmpipe can take that long to
/// compile a large variant on a loaded machine while another test waits.
fn compiling() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn matmul_matches_reference_odd_shapes_all_transposes() {
    let _serial = compiling();
    let shapes = [
        (1, 1, 1),
        (1, 3, 7),
        (3, 7, 1),
        (7, 33, 3),
        (33, 1, 257),
        (257, 33, 7),
        (64, 64, 64),
        (5, 257, 129),
    ];
    for gpu in gpus() {
        let mut worst = 0.0f64;
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (a, b, ga, gb) = operands(gpu, (m, k, n), (ta, tb), 1000 + s as u64);
                let c = ops::matmul(&ga, &gb, ta, tb).unwrap();
                assert_eq!(c.shape(), [m, n]);
                let want = reference::matmul(&a, &b, m, k, n, ta, tb);
                let what = format!(
                    "{}: matmul m={m} k={k} n={n} ta={ta} tb={tb}",
                    gpu.info().name
                );
                worst = worst.max(assert_close(
                    &what,
                    &c.to_vec().unwrap(),
                    &want,
                    MATMUL_REL,
                    0.0,
                ));
            }
        }
        eprintln!(
            "matmul worst relative error on {}: {worst:e}",
            gpu.info().name
        );
    }
}

/// Random operands of `op(a) op(b)` for an `[m, k] x [k, n]` product, stored transposed
/// where asked (`a` as `[k, m]`, `b` as `[n, k]`): the host values (as stored) and tensors.
fn operands(
    gpu: &wgnn::Gpu,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Tensor, Tensor) {
    let a = rand_vec(m * k, seed);
    let b = rand_vec(k * n, seed + 10);
    let sa = if ta { [k, m] } else { [m, k] };
    let sb = if tb { [n, k] } else { [k, n] };
    let ga = Tensor::from_slice(gpu, &a, &sa).unwrap();
    let gb = Tensor::from_slice(gpu, &b, &sb).unwrap();
    (a, b, ga, gb)
}

/// Every register-tile variant the adapter can run (those `matmul` chooses from), each
/// transpose, odd shapes (gathered loads) and multiples of 4 (vec4 loads and stores), with
/// and without the fused epilogue.
#[test]
fn matmul_every_variant_matches_reference_odd_and_vec4_shapes() {
    let _serial = compiling();
    use wgnn::testing::{matmul_tiles, matmul_with_tile};
    // (m, k, n): odd sizes; multiples of 4 that end tiles part-way (m > 256 fills the
    // largest subgroup tile's 32 rows per subgroup, and leaves a partial block).
    // Mixed: (36, 20, 10) gives vec4 A but gathered B and C without transposes; (12, 10, 36)
    // the reverse. Where the subgroup kernel has 64-bit loads (8 lanes, SHADER_INT64):
    // (9, 7, 24) reads B eight columns at a time with k odd (rows past k zeroed), (37, 16, 24)
    // A eight k at a time, (3, 8, 8) both on the smallest such matrices.
    let shapes = [
        (1, 1, 1),
        (7, 33, 3),
        (33, 5, 257),
        (36, 20, 68),
        (260, 12, 40),
        (36, 20, 10),
        (12, 10, 36),
        (9, 7, 24),
        (37, 16, 24),
        (3, 8, 8),
    ];
    let d = DropoutSpec {
        rate: 0.5,
        seed: 9,
        offset: 2,
    };
    for gpu in gpus() {
        let tiles = matmul_tiles(gpu).unwrap();
        assert!(!tiles.is_empty(), "{}: no matmul variant", gpu.info().name);
        // Every variant sums each output over k in the same order, so the autotuner's
        // choice never changes a result: the first variant's outputs, bit for bit.
        let mut first: std::collections::HashMap<String, Vec<u32>> = Default::default();
        let mut same = |key: String, v: Vec<f32>| {
            let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
            let want = first.entry(key.clone()).or_insert_with(|| bits.clone());
            assert!(
                *want == bits,
                "{}: {key} differs between variants",
                gpu.info().name
            );
        };
        for tile in tiles {
            for (s, &(m, k, n)) in shapes.iter().enumerate() {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let (a, b, ga, gb) = operands(gpu, (m, k, n), (ta, tb), 40 + s as u64);
                    let c = matmul_with_tile(&ga, &gb, ta, tb, None, false, None, tile).unwrap();
                    let want = reference::matmul(&a, &b, m, k, n, ta, tb);
                    let what = format!(
                        "{}: {tile:?} matmul m={m} k={k} n={n} ta={ta} tb={tb}",
                        gpu.info().name
                    );
                    let got = c.to_vec().unwrap();
                    assert_close(&what, &got, &want, MATMUL_REL, 0.0);
                    same(format!("matmul m={m} k={k} n={n} ta={ta} tb={tb}"), got);
                }
                // The epilogue (bias, ReLU, dropout) on the same variant, no transposes.
                let x = rand_vec(m * k, 60 + s as u64);
                let w = rand_vec(k * n, 70 + s as u64);
                let bias = rand_vec(n, 80 + s as u64);
                let gx = Tensor::from_slice(gpu, &x, &[m, k]).unwrap();
                let gw = Tensor::from_slice(gpu, &w, &[k, n]).unwrap();
                let gbias = Tensor::from_slice(gpu, &bias, &[n]).unwrap();
                let y = matmul_with_tile(&gx, &gw, false, false, Some(&gbias), true, Some(d), tile)
                    .unwrap();
                let want = dense_reference(&x, &w, &bias, m, k, n, true, Some(d));
                let what = format!("{}: {tile:?} dense m={m} k={k} n={n}", gpu.info().name);
                let got = y.to_vec().unwrap();
                assert_close(&what, &got, &want, MATMUL_REL, 0.0);
                same(format!("dense m={m} k={k} n={n}"), got);
            }
        }
    }
}

/// The subgroup variants on a few shapes and the three transposes a dense layer uses, against
/// the reference and bit for bit against each other. A subset of the test above, kept small
/// because CI runs it a second time on lavapipe at 512 bits (`LP_NATIVE_VECTOR_WIDTH=512`,
/// 16-lane subgroups; `.ci/run`), where every variant takes llvmpipe seconds to compile.
/// There the subgroup kernels must be in use: the adapter's name says 512 bits.
/// Where n % 8 == 0 (B) or k % 8 == 0 (A) the kernel reads eight floats as one vec4<u64> on
/// a device with 64-bit integers: the same adapter opened without them (`portable_gpu`) runs
/// the portable loads, and the two must agree bit for bit.
#[test]
fn matmul_subgroup_variants_match_reference_at_this_lane_count() {
    let _serial = compiling();
    use wgnn::testing::{matmul_tiles, matmul_with_tile};
    // Lavapipe's results by shape, with and without 64-bit loads (one driver, one compiler).
    let mut lavapipe: std::collections::HashMap<String, Vec<u32>> = Default::default();
    let all = gpus_and_portable();
    let int64 = |g: &wgnn::Gpu| {
        g.device()
            .features()
            .contains(wgnn::wgpu::Features::SHADER_INT64)
    };
    for gpu in all {
        let portable = common::portable_gpu().is_some_and(|p| std::ptr::eq(p, gpu));
        let mut tiles: Vec<_> = matmul_tiles(gpu)
            .unwrap()
            .into_iter()
            .filter(|t| t.subgroup)
            .collect();
        if portable {
            // The comparison is only worth its compiles where the other device has the
            // 64-bit loads: lavapipe with subgroups of 8 (at 16 lanes both run the portable
            // loads, and every variant costs llvmpipe seconds to compile).
            let wide = gpus().iter().any(|g| {
                int64(g)
                    && g.info().name.starts_with("llvmpipe")
                    && !g.info().name.contains("512 bits")
                    && matmul_tiles(g).unwrap().iter().any(|t| t.subgroup)
            });
            if !wide {
                continue;
            }
            assert!(
                !tiles.is_empty() && !int64(gpu),
                "portable device with subgroups"
            );
            // The largest tile (the other runs the same loads).
            tiles.truncate(1);
        }
        let name = if portable {
            format!("{} without int64", gpu.info().name)
        } else {
            gpu.info().name.clone()
        };
        if gpu.info().name.contains("512 bits") && gpu.info().backend == wgnn::wgpu::Backend::Vulkan
        {
            assert!(
                !tiles.is_empty(),
                "{}: no subgroup variant",
                gpu.info().name
            );
        }
        if tiles.is_empty() && !portable {
            // The subgroup kernels serve subgroups of a fixed 8 or 16 lanes only
            // (kernels::subgroup_lanes); elsewhere the plain and staged variants run.
            let subgroups = gpu
                .device()
                .features()
                .contains(wgnn::wgpu::Features::SUBGROUP);
            eprintln!(
                "SKIPPED subgroup matmul variants on {name}: {} (they serve a fixed 8 or 16 lanes)",
                if subgroups {
                    "its subgroup size is not a fixed 8 or 16"
                } else {
                    "no subgroups"
                }
            );
        }
        let mut first: std::collections::HashMap<String, Vec<u32>> = Default::default();
        for tile in tiles {
            // Odd (gathered loads, partial tiles in both directions), multiples of 4 past
            // one workgroup's rows at either lane count (vec4 loads; n % 8 == 0: 64-bit B
            // loads), and k % 8 == 0 (64-bit A loads, two groups of eight k; m = 37 clamps
            // rows).
            let shapes = [(33, 5, 257), (260, 12, 136), (37, 16, 24)];
            let skip = usize::from(portable);
            for (s, &(m, k, n)) in shapes.iter().enumerate().skip(skip) {
                for (ta, tb) in [(false, false), (true, false), (false, true)] {
                    let (a, b, ga, gb) = operands(gpu, (m, k, n), (ta, tb), 140 + s as u64);
                    let got = matmul_with_tile(&ga, &gb, ta, tb, None, false, None, tile)
                        .unwrap()
                        .to_vec()
                        .unwrap();
                    let what = format!("{name}: {tile:?} matmul m={m} k={k} n={n} ta={ta} tb={tb}");
                    let want = reference::matmul(&a, &b, m, k, n, ta, tb);
                    assert_close(&what, &got, &want, MATMUL_REL, 0.0);
                    let bits: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                    let key = format!("{m} {k} {n} {ta} {tb}");
                    if gpu.info().name.starts_with("llvmpipe")
                        && gpu.info().backend == wgnn::wgpu::Backend::Vulkan
                    {
                        let want_bits = lavapipe.entry(key.clone()).or_insert_with(|| bits.clone());
                        assert!(*want_bits == bits, "{what}: differs from the other device");
                    }
                    let want_bits = first.entry(key).or_insert_with(|| bits.clone());
                    assert!(*want_bits == bits, "{what}: differs between variants");
                }
            }
        }
    }
}

/// The staged variants are offered everywhere (and held to the others' bits above), but on a
/// CPU adapter neither the static choice (a shape too large to time) nor the autotuner's
/// (shapes it times) is ever one of them, so lavapipe's kernels are what they were; on a GPU
/// the static choice for a large product is the largest staged variant.
#[test]
fn matmul_staged_variants_are_chosen_on_gpus_only() {
    let _serial = compiling();
    use wgnn::testing::{MatmulTile, matmul_tile_for, matmul_tiles};
    for gpu in gpus() {
        let name = &gpu.info().name;
        let tiles = matmul_tiles(gpu).unwrap();
        assert!(
            tiles.iter().any(|t| t.wg > 0),
            "{name}: no staged variant in {tiles:?}"
        );
        let cpu = gpu.info().device_type == wgnn::wgpu::DeviceType::Cpu;
        // 4096^3 is past what the autotuner times: the static choice.
        let big = matmul_tile_for(gpu, (false, false), 4096, 4096, 4096).unwrap();
        if cpu {
            assert_eq!(big.wg, 0, "{name}: static choice {big:?} is staged");
            for (trans, m, n, k) in [
                ((false, false), 33, 257, 7),
                ((true, false), 64, 64, 64),
                ((false, true), 7, 3, 33),
            ] {
                let t = matmul_tile_for(gpu, trans, m, n, k).unwrap();
                assert_eq!(
                    t.wg, 0,
                    "{name}: tuned choice {t:?} for {m}x{n}x{k} is staged"
                );
            }
        } else {
            assert_eq!(
                big,
                MatmulTile::TILED[0],
                "{name}: static choice for 4096^3"
            );
        }
    }
}

#[test]
fn matmul_rejects_a_variant_the_adapter_lacks() {
    use wgnn::testing::{MatmulTile, matmul_tiles, matmul_with_tile};
    let gpu = common::gpu();
    let tiles = matmul_tiles(gpu).unwrap();
    let missing = MatmulTile::SUBGROUP
        .iter()
        .chain(&MatmulTile::PLAIN)
        .find(|t| !tiles.contains(t))
        .copied()
        .expect("one family of variants is not available");
    let a = Tensor::from_slice(gpu, &[1.0; 4], &[2, 2]).unwrap();
    let e = matmul_with_tile(&a, &a, false, false, None, false, None, missing)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "matmul: tile {missing:?} is not available on {}",
            gpu.info().name
        )
    );
}

#[test]
fn matmul_rejects_mismatched_shapes() {
    let gpu = common::gpu();
    let a = Tensor::from_slice(gpu, &[0.0; 6], &[2, 3]).unwrap();
    let b = Tensor::from_slice(gpu, &[0.0; 8], &[4, 2]).unwrap();
    let e = ops::matmul(&a, &b, false, false).unwrap_err().to_string();
    assert_eq!(
        e,
        "matmul: inner dimensions differ: op(a) is [2, 3], op(b) is [4, 2] (a [2, 3] trans_a=false, b [4, 2] trans_b=false)"
    );
    let v = Tensor::from_slice(gpu, &[0.0; 6], &[6]).unwrap();
    let e = ops::matmul(&v, &b, false, false).unwrap_err().to_string();
    assert_eq!(e, "matmul: expects two matrices, got a [6] and b [4, 2]");
}

#[allow(
    clippy::too_many_arguments,
    reason = "the reference takes every operand by name"
)]
fn dense_reference(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    relu: bool,
    d: Option<DropoutSpec>,
) -> Vec<f64> {
    let z = reference::matmul(x, w, m, k, n, false, false);
    z.iter()
        .enumerate()
        .map(|(i, &v)| {
            let mut v = v + f64::from(b[i % n]);
            if relu {
                v = v.max(0.0);
            }
            if let Some(d) = d {
                v = if philox::keep(d.seed, d.offset, i as u64, d.rate) {
                    v * f64::from(philox::scale(d.rate))
                } else {
                    0.0
                };
            }
            v
        })
        .collect()
}

#[test]
fn dense_fused_epilogue_matches_reference_odd_shapes() {
    let _serial = compiling();
    for gpu in gpus() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 7, 5),
            (7, 33, 4),
            (33, 17, 257),
            (256, 78, 10),
        ] {
            for d in [
                None,
                Some(DropoutSpec {
                    rate: 0.5,
                    seed: 7,
                    offset: 3,
                }),
                Some(DropoutSpec {
                    rate: 1.0,
                    seed: 1,
                    offset: 0,
                }),
            ] {
                for relu in [false, true] {
                    let x = rand_vec(m * k, 1);
                    let w = rand_vec(k * n, 2);
                    let b = rand_vec(n, 3);
                    let gx = Tensor::from_slice(gpu, &x, &[m, k]).unwrap();
                    let gw = Tensor::from_slice(gpu, &w, &[k, n]).unwrap();
                    let gb = Tensor::from_slice(gpu, &b, &[n]).unwrap();
                    let y = ops::dense(&gx, &gw, Some(&gb), relu, d).unwrap();
                    let want = dense_reference(&x, &w, &b, m, k, n, relu, d);
                    let what = format!(
                        "{}: dense {m}x{k}x{n} relu={relu} dropout={d:?}",
                        gpu.info().name
                    );
                    assert_close(&what, &y.to_vec().unwrap(), &want, MATMUL_REL, 0.0);
                }
            }
        }
    }
}

#[test]
fn dense_fused_equals_unfused_ops_and_backward_needs_only_output() {
    let gpu = common::gpu();
    let (m, k, n) = (33, 17, 7);
    let d = DropoutSpec {
        rate: 0.3,
        seed: 11,
        offset: 5,
    };
    let x = Tensor::from_slice(gpu, &rand_vec(m * k, 4), &[m, k]).unwrap();
    let w = Tensor::from_slice(gpu, &rand_vec(k * n, 5), &[k, n]).unwrap();
    let b = Tensor::from_slice(gpu, &rand_vec(n, 6), &[n]).unwrap();
    let fused = ops::dense(&x, &w, Some(&b), true, Some(d))
        .unwrap()
        .to_vec()
        .unwrap();
    let z = ops::bias_add(&ops::matmul(&x, &w, false, false).unwrap(), &b).unwrap();
    let r = ops::relu(&z).unwrap();
    let unfused = ops::dropout(&r, d.rate, d.seed, d.offset).unwrap();
    let unfused_v: Vec<f64> = unfused
        .to_vec()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    assert_close("dense fused vs unfused", &fused, &unfused_v, 1e-6, 0.0);

    // Backward: relu_dropout_backward(y, dy) equals relu_backward(z, dropout_backward(dy)).
    let dy_v = rand_vec(m * n, 8);
    let dy = Tensor::from_slice(gpu, &dy_v, &[m, n]).unwrap();
    let y = Tensor::from_slice(gpu, &fused, &[m, n]).unwrap();
    let from_output = ops::relu_dropout_backward(&y, &dy, d.rate)
        .unwrap()
        .to_vec()
        .unwrap();
    let zv = z.to_vec().unwrap();
    let ddrop = reference::dropout(&dy_v, d.rate, d.seed, d.offset);
    let want: Vec<f64> = zv
        .iter()
        .zip(&ddrop)
        .map(|(&z, &g)| if z > 0.0 { g } else { 0.0 })
        .collect();
    assert_close(
        "relu_dropout_backward from output",
        &from_output,
        &want,
        1e-6,
        0.0,
    );
}

#[test]
fn relu_forward_and_backward_match_reference() {
    for gpu in gpus() {
        for n in [1usize, 3, 7, 16, 17, 33, 65, 257, 1000] {
            let x = rand_vec(n, n as u64);
            let dy = rand_vec(n, 1 + n as u64);
            let gx = Tensor::from_slice(gpu, &x, &[n]).unwrap();
            let gdy = Tensor::from_slice(gpu, &dy, &[n]).unwrap();
            assert_close(
                "relu",
                &ops::relu(&gx).unwrap().to_vec().unwrap(),
                &reference::relu(&x),
                0.0,
                0.0,
            );
            let got = ops::relu_backward(&gx, &gdy).unwrap().to_vec().unwrap();
            assert_close(
                "relu_backward",
                &got,
                &reference::relu_backward(&x, &dy),
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn bias_add_and_bias_grad_match_reference() {
    for gpu in gpus() {
        for &(rows, cols) in &[
            (1, 1),
            (3, 7),
            (33, 5),
            (257, 3),
            (2, 1000),
            (5, 4),
            (300, 32),
        ] {
            let x = rand_vec(rows * cols, 9);
            let b = rand_vec(cols, 10);
            let gx = Tensor::from_slice(gpu, &x, &[rows, cols]).unwrap();
            let gb = Tensor::from_slice(gpu, &b, &[cols]).unwrap();
            let got = ops::bias_add(&gx, &gb).unwrap().to_vec().unwrap();
            assert_close("bias_add", &got, &reference::bias_add(&x, &b), 0.0, 0.0);
            let got = ops::bias_grad(&gx).unwrap().to_vec().unwrap();
            assert_close(
                "bias_grad",
                &got,
                &reference::bias_grad(&x, cols),
                1e-6,
                0.0,
            );
        }
    }
}

#[test]
fn finite_differences_of_dense_relu_match_backward_ops() {
    // L = sum(relu(x w + b) * g): dL/dw = x^T (relu'(z) g), dL/dx = (relu'(z) g) w^T, dL/db = sum rows.
    let gpu = common::gpu();
    let (m, k, n) = (3, 4, 5);
    let x = rand_vec(m * k, 21);
    let w = rand_vec(k * n, 22);
    let b = rand_vec(n, 23);
    let g = rand_vec(m * n, 24);
    let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
        let z = reference::matmul(x, w, m, k, n, false, false);
        z.iter()
            .enumerate()
            .map(|(i, &v)| (v + f64::from(b[i % n])).max(0.0) * f64::from(g[i]))
            .sum()
    };
    let gx = Tensor::from_slice(gpu, &x, &[m, k]).unwrap();
    let gw = Tensor::from_slice(gpu, &w, &[k, n]).unwrap();
    let gb = Tensor::from_slice(gpu, &b, &[n]).unwrap();
    let gg = Tensor::from_slice(gpu, &g, &[m, n]).unwrap();
    let y = ops::dense(&gx, &gw, Some(&gb), true, None).unwrap();
    let dz = ops::relu_dropout_backward(&y, &gg, 0.0).unwrap();
    let dw = ops::matmul(&gx, &dz, true, false)
        .unwrap()
        .to_vec()
        .unwrap();
    let dx = ops::matmul(&dz, &gw, false, true)
        .unwrap()
        .to_vec()
        .unwrap();
    let db = ops::bias_grad(&dz).unwrap().to_vec().unwrap();
    let h = 1e-3f32;
    let fd = |v: &[f32], which: usize| -> Vec<f64> {
        (0..v.len())
            .map(|i| {
                let mut p = v.to_vec();
                let mut q = v.to_vec();
                p[i] += h;
                q[i] -= h;
                let (lp, lq) = match which {
                    0 => (loss(&p, &w, &b), loss(&q, &w, &b)),
                    1 => (loss(&x, &p, &b), loss(&x, &q, &b)),
                    _ => (loss(&x, &w, &p), loss(&x, &w, &q)),
                };
                (lp - lq) / (2.0 * f64::from(h))
            })
            .collect()
    };
    assert_close(
        "dense dx vs finite differences",
        &dx,
        &fd(&x, 0),
        1e-3,
        1e-4,
    );
    assert_close(
        "dense dw vs finite differences",
        &dw,
        &fd(&w, 1),
        1e-3,
        1e-4,
    );
    assert_close(
        "dense db vs finite differences",
        &db,
        &fd(&b, 2),
        1e-3,
        1e-4,
    );
}
