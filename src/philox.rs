//! Host-side Philox-4x32-10 and the dropout keep function.
//!
//! This module is the definition of every dropout mask wgnn makes; `shaders/philox.wgsl` is
//! its GPU twin and the tests hold the two to identical bits.
//!
//! # The mask, as a pure function
//!
//! A dropout call has a `seed: u64`, an `offset: u64` (its stream) and a rate `p`. Element
//! `i` (a u64 index into the flattened tensor) uses Philox block `j = i / 4` and lane `i % 4`:
//!
//! ```text
//! r    = philox4x32_10([j_lo, j_hi, offset_lo, offset_hi], [seed_lo, seed_hi])[i % 4]
//! t    = min(round(f64(p) * 2^32), 2^32 - 1)      // round half away from zero
//! keep = r >= t                                     // p == 1 drops everything (see below)
//! ```
//!
//! Kept values are scaled by `1 / (1 - p)` (inverted dropout). `p == 0` keeps every element;
//! `p == 1` drops every element, and both the output and the gradient are exactly zero.
//!
//! ```
//! // The first known-answer vector of Random123 (`kat_vectors`, philox4x32_10).
//! assert_eq!(
//!     wgnn::philox::philox4x32_10([0; 4], [0; 2]),
//!     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
//! );
//! // Whether element 5 of stream (seed 42, offset 7) survives dropout at rate 0.5.
//! let kept = wgnn::philox::keep(42, 7, 5, 0.5);
//! # let _ = kept;
//! ```

/// First Philox multiplier (Random123 `PHILOX_M4x32_0`).
pub const M0: u32 = 0xD251_1F53;
/// Second Philox multiplier (Random123 `PHILOX_M4x32_1`).
pub const M1: u32 = 0xCD9E_8D57;
/// First Weyl key increment (golden ratio).
pub const W0: u32 = 0x9E37_79B9;
/// Second Weyl key increment (sqrt(3) - 1).
pub const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

#[inline]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(M0, c[0]);
    let (hi1, lo1) = mulhilo(M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox-4x32 with 10 rounds, exactly as Random123 defines it: the key is bumped by
/// ([`W0`], [`W1`]) before rounds 2 to 10. Element 0 of each array comes first.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        c = round(c, k);
    }
    c
}

/// Splits a u64 into its (low, high) 32-bit words, the order every WGSL struct uses.
#[inline]
pub fn split(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

/// The 32-bit integer threshold for rate `p`: `min(round(p * 2^32), 2^32 - 1)`, computed in
/// f64 with rounding half away from zero. An element is kept iff its Philox word is `>=` it.
///
/// The rate must already be checked to lie in [0, 1]; `p == 1` is special-cased by
/// [`keep`] and the kernels (everything dropped), since a threshold of `2^32 - 1` alone would
/// keep the one word equal to it.
pub fn threshold(p: f32) -> u32 {
    let t = (f64::from(p) * 4_294_967_296.0).round();
    if t >= 4_294_967_295.0 {
        u32::MAX
    } else {
        t as u32
    }
}

/// The Philox word that decides element `index` of stream (`seed`, `offset`).
pub fn word(seed: u64, offset: u64, index: u64) -> u32 {
    let j = index / 4;
    let [j_lo, j_hi] = split(j);
    let [o_lo, o_hi] = split(offset);
    philox4x32_10([j_lo, j_hi, o_lo, o_hi], split(seed))[(index % 4) as usize]
}

/// Whether dropout at rate `p` keeps element `index` of stream (`seed`, `offset`).
///
/// `p <= 0` keeps everything and `p >= 1` drops everything; a NaN rate keeps nothing (the
/// public ops reject NaN before it gets here).
pub fn keep(seed: u64, offset: u64, index: u64, p: f32) -> bool {
    if p.is_nan() || p >= 1.0 {
        return false;
    }
    if p <= 0.0 {
        return true;
    }
    word(seed, offset, index) >= threshold(p)
}

/// The factor kept values are multiplied by: `1 / (1 - p)`, or 0 when `p == 1`.
pub fn scale(p: f32) -> f32 {
    if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) }
}

/// Training steps a model may take: its step counter stays below `2^31`, so the training
/// streams ([`training_offset`]) stay below `2^63` and never meet the Monte-Carlo ones
/// ([`mc_offset`]).
pub const MAX_TRAINING_STEPS: u64 = 1 << 31;

/// The first Monte-Carlo stream: `2^63`.
pub const MC_OFFSET_BASE: u64 = 1 << 63;

/// The stream of the Dropout layer at index `layer` of a `Sequential` at training step
/// `step`: `layer + step * 2^32` (with `step <` [`MAX_TRAINING_STEPS`], below `2^63`).
///
/// ```
/// assert_eq!(wgnn::philox::training_offset(3, 2), 3 + (2 << 32));
/// ```
pub fn training_offset(layer: usize, step: u64) -> u64 {
    (layer as u64).wrapping_add(step.wrapping_shl(32))
}

/// The stream of the Dropout layer at index `layer` in sample `sample` of
/// `Sequential::predict_mc`: `2^63 + sample * 2^32 + layer` (with `sample < 2^31`, at or
/// above `2^63`, so no training stream is one).
///
/// ```
/// assert_eq!(wgnn::philox::mc_offset(3, 2), (1 << 63) + (2 << 32) + 3);
/// ```
pub fn mc_offset(layer: usize, sample: u64) -> u64 {
    MC_OFFSET_BASE
        .wrapping_add(sample.wrapping_shl(32))
        .wrapping_add(layer as u64)
}

/// A validated dropout: rate, seed and stream offset (also `wgnn::ops::DropoutSpec`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutSpec {
    /// The rate p: the probability that an element is dropped, in [0, 1].
    pub rate: f32,
    /// The generator's key.
    pub seed: u64,
    /// The stream: calls with different offsets draw independent masks.
    pub offset: u64,
}

/// How a kernel treats a rate. The discriminants are the WGSL values (`DROP_KEEP_ALL`,
/// `DROP_THRESHOLD`, `DROP_ALL` in shaders/dropout_mask.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DropMode {
    /// `p <= 0`: every element is kept.
    KeepAll = 0,
    /// Keep iff the element's Philox word is `>=` the threshold.
    Threshold = 1,
    /// `p >= 1`: every element is dropped (output and gradient exactly zero).
    DropAll = 2,
}

/// A rate as the kernels take it: the one place a rate becomes threshold, scale and mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutLowering {
    /// [`threshold`] of the rate.
    pub threshold: u32,
    /// [`scale`] of the rate: what kept values are multiplied by.
    pub scale: f32,
    /// Whether the threshold decides, or the rate keeps or drops everything.
    pub mode: DropMode,
}

impl DropoutLowering {
    /// The lowering of rate `p`, which must already be checked to lie in [0, 1].
    ///
    /// ```
    /// use wgnn::philox::{DropMode, DropoutLowering};
    /// let l = DropoutLowering::new(0.5);
    /// assert_eq!((l.threshold, l.scale, l.mode), (0x8000_0000, 2.0, DropMode::Threshold));
    /// assert_eq!(DropoutLowering::new(1.0).mode, DropMode::DropAll);
    /// ```
    pub fn new(p: f32) -> DropoutLowering {
        let mode = if p <= 0.0 {
            DropMode::KeepAll
        } else if p >= 1.0 {
            DropMode::DropAll
        } else {
            DropMode::Threshold
        };
        DropoutLowering {
            threshold: threshold(p),
            scale: scale(p),
            mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_mulhilo_edges() {
        assert_eq!(mulhilo(0xFFFF_FFFF, 0xFFFF_FFFF), (0xFFFF_FFFE, 1));
        assert_eq!(mulhilo(1, 0xFFFF_FFFF), (0, 0xFFFF_FFFF));
        assert_eq!(mulhilo(0, 0xFFFF_FFFF), (0, 0));
    }

    #[test]
    fn philox_dropout_lowering_modes_at_the_edges() {
        assert_eq!(DropoutLowering::new(0.0).mode, DropMode::KeepAll);
        assert_eq!(DropoutLowering::new(-0.0).mode, DropMode::KeepAll);
        assert_eq!(DropoutLowering::new(1e-30).mode, DropMode::Threshold);
        assert_eq!(DropoutLowering::new(0.999_999_9).mode, DropMode::Threshold);
        let all = DropoutLowering::new(1.0);
        assert_eq!(
            (all.mode, all.scale, all.threshold),
            (DropMode::DropAll, 0.0, u32::MAX)
        );
        let none = DropoutLowering::new(0.0);
        assert_eq!((none.scale, none.threshold), (1.0, 0));
    }

    #[test]
    fn philox_threshold_rounds_half_away_and_saturates() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(0.5), 0x8000_0000);
        assert_eq!(threshold(1.0), u32::MAX);
        // 0.1f32 is 0.100000001490116..., times 2^32 = 429496736.4 -> 429496736.
        assert_eq!(threshold(0.1), 429_496_736);
    }
}
