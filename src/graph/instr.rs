//! The step as instructions over virtual buffers: what each dispatch binds, before any
//! buffer exists. [`alloc`](super::alloc) turns them into buffers and bind groups.

use std::sync::Arc;

use crate::Tensor;
use crate::graph::DropoutOp;
use crate::kernels::dropout::{DropoutParams, DropoutSpec};
use crate::kernels::dropout_mc::DropoutMcParams;
use crate::kernels::elementwise::{ElementwiseParams, Pointwise};
use crate::kernels::rec::Rec;
use crate::tensor::Buf;

/// A resource of an instruction's bind group.
#[derive(Clone)]
pub(super) enum Res {
    /// A virtual buffer of the plan, by index.
    V(usize),
    /// A tensor that outlives the plan's step (parameters, state, data, outputs).
    T(Tensor),
    /// The step uniform.
    Step,
    /// A raw device buffer that outlives the plan (data set chunks).
    B(Arc<Buf>),
    /// A uniform with these bytes, made once at plan time.
    Uniform(Vec<u8>),
    /// The zero status word of kernels that check nothing (never written).
    ZeroStatus,
}

/// One dispatch and its bind group's resources, in binding order.
pub(super) struct Instr {
    pub rec: Rec,
    pub binds: Vec<Res>,
}

/// Builds the instruction list over virtual buffers.
#[derive(Default)]
pub(super) struct Builder {
    pub instrs: Vec<Instr>,
    /// Elements (4 bytes each) of each virtual buffer.
    pub vlen: Vec<usize>,
}

impl Builder {
    /// A new virtual buffer of `len` elements.
    pub fn vbuf(&mut self, len: usize) -> usize {
        self.vlen.push(len);
        self.vlen.len() - 1
    }

    pub fn push(&mut self, rec: Rec, binds: Vec<Res>) {
        self.instrs.push(Instr { rec, binds });
    }

    /// One elementwise kernel over `len` elements, bound as (a, b, bias, out) with `cols` and
    /// `scale` as the kernel reads them: returns the output buffer.
    pub fn pointwise(
        &mut self,
        which: Pointwise,
        len: usize,
        cols: u32,
        scale: f32,
        ins: [Res; 3],
    ) -> Res {
        let out = self.vbuf(len);
        let p = ElementwiseParams {
            len: len as u32,
            cols,
            scale,
            _pad: 0,
        };
        let [a, b, bias] = ins;
        self.push(
            Rec::Pointwise {
                which,
                len: len as u32,
            },
            vec![bytes(&p), a, b, bias, Res::V(out)],
        );
        Res::V(out)
    }

    /// Dropout of `len` elements of `input` (forward, or the backward of `dy`, which
    /// regenerates the same mask): returns the output buffer.
    pub fn dropout(
        &mut self,
        d: &DropoutOp,
        seed: u64,
        len: usize,
        backward: bool,
        input: Res,
    ) -> Res {
        let y = self.vbuf(len);
        let spec = DropoutSpec {
            rate: d.rate,
            seed,
            offset: d.stream,
        };
        self.push(
            Rec::Dropout {
                backward,
                len: len as u32,
            },
            vec![
                bytes(&DropoutParams::new(len as u32, spec)),
                Res::Step,
                input,
                Res::V(y),
            ],
        );
        Res::V(y)
    }

    /// SpatialDropout2D of `len` elements of `input` in images of `image` elements with
    /// `channels` channels (forward, or the backward of `dy`, which regenerates the same
    /// channel mask): returns the output buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn spatial_dropout(
        &mut self,
        d: &DropoutOp,
        seed: u64,
        len: usize,
        channels: usize,
        image: usize,
        backward: bool,
        input: Res,
    ) -> Res {
        let y = self.vbuf(len);
        let spec = DropoutSpec {
            rate: d.rate,
            seed,
            offset: d.stream,
        };
        let p = DropoutParams::spatial(len as u32, channels as u32, image as u32, spec);
        self.push(
            Rec::SpatialDropout {
                backward,
                len: len as u32,
            },
            vec![bytes(&p), Res::Step, input, Res::V(y)],
        );
        Res::V(y)
    }
}

impl Builder {
    /// Monte-Carlo dropout of `samples` copies of `span` elements in rows of `row_len`
    /// (`input` holds one copy when `replicate`, else all of them): copy `s` draws from
    /// stream `2^63 + s * 2^32 + d.stream`. Returns the output buffer, `samples * span`
    /// elements.
    pub fn dropout_mc(
        &mut self,
        d: &DropoutOp,
        seed: u64,
        (span, row_len, samples): (usize, usize, usize),
        replicate: bool,
        input: Res,
    ) -> Res {
        let y = self.vbuf(span * samples);
        let spec = DropoutSpec {
            rate: d.rate,
            seed,
            offset: crate::philox::mc_offset(0, 0).wrapping_add(d.stream),
        };
        let sizes = (span as u32, row_len as u32, samples as u32);
        let p = DropoutMcParams::new(sizes, replicate, spec);
        self.push(
            Rec::DropoutMc { len: p.len },
            vec![bytes(&p), Res::Step, input, Res::V(y)],
        );
        Res::V(y)
    }
}

/// A uniform resource holding `v`'s bytes.
pub(super) fn bytes<T: bytemuck::Pod>(v: &T) -> Res {
    Res::Uniform(bytemuck::bytes_of(v).to_vec())
}

/// `[batch, shape...]`.
pub(super) fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect()
}
