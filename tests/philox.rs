//! Philox-4x32-10 against Random123's known answers, and the GPU's words against the host's.

mod common;

use wgnn::philox::{philox4x32_10, threshold};

/// Random123 `kat_vectors`, philox4x32_10: (counter, key, expected).
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
        [0xffffffff, 0xffffffff],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

#[test]
fn philox_host_matches_random123_known_answers() {
    for (c, k, want) in KAT {
        assert_eq!(philox4x32_10(c, k), want, "counter {c:08x?} key {k:08x?}");
    }
}

/// Counters and keys at the integer edges, including carries into the high counter words.
fn edge_items() -> Vec<([u32; 4], [u32; 2])> {
    let edges = [
        0u32,
        1,
        2,
        0x7FFF_FFFF,
        0x8000_0000,
        0xFFFF,
        0x1_0000,
        0xFFFF_FFFE,
        0xFFFF_FFFF,
    ];
    let mut items: Vec<_> = KAT.iter().map(|(c, k, _)| (*c, *k)).collect();
    for &a in &edges {
        for &b in &edges {
            items.push(([a, b, b, a], [b, a]));
            items.push(([a, 0, 0, 0], [0, b]));
            items.push(([0xFFFF_FFFF, a, 0xFFFF_FFFF, b], [a, 0xFFFF_FFFF]));
        }
    }
    items
}

/// Every adapter, and on lavapipe both versions of `mulhilo` (the 64-bit one `Gpu::open` uses
/// where the device has 64-bit integers, and the portable one).
#[test]
fn philox_gpu_words_equal_host_words_on_edge_counters() {
    let items = edge_items();
    let all = common::gpus_and_portable();
    let wide = |g: &wgnn::Gpu| g.device().features().contains(wgpu::Features::SHADER_INT64);
    if common::portable_gpu().is_some() {
        assert!(all.iter().any(|g| wide(g)) && all.iter().any(|g| !wide(g)));
    }
    for gpu in all {
        let got = wgnn::testing::philox_words(gpu, &items).unwrap();
        for ((c, k), g) in items.iter().zip(&got) {
            assert_eq!(
                *g,
                philox4x32_10(*c, *k),
                "{}: counter {c:08x?} key {k:08x?}",
                gpu.info().name
            );
        }
    }
}

#[test]
fn philox_gpu_matches_random123_known_answers() {
    let items: Vec<_> = KAT.iter().map(|(c, k, _)| (*c, *k)).collect();
    for gpu in common::gpus() {
        let got = wgnn::testing::philox_words(gpu, &items).unwrap();
        for ((_, _, want), g) in KAT.iter().zip(&got) {
            assert_eq!(g, want, "{}", gpu.info().name);
        }
    }
}

#[test]
fn philox_threshold_is_round_of_p_times_two_to_32() {
    for p in [
        0.0f32,
        1e-10,
        0.05,
        0.1,
        0.2,
        0.25,
        0.5,
        0.8,
        0.999_999_9,
        1.0,
    ] {
        let exact = (f64::from(p) * 2f64.powi(32)).round().min(4_294_967_295.0);
        assert_eq!(f64::from(threshold(p)), exact, "p = {p}");
    }
}
