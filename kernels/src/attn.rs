//! Attention of query rows against one head of a KV cache (SIMD-dispatched).
//!
//! The cache is cell-major: element `i` of cell `j` lies at `j * stride + i`
//! of the head's K and V rows (the caller passes slices that start at the
//! head's first element of cell 0; for Q8_0, element counts are whole
//! blocks). Each query row has its own range of cells, so causal and
//! windowed attention are both a list of ranges.
//!
//! Per query: `s_j = scale · (q·k_j)`, `m = max s_j`, `e_j = exp(s_j − m)`,
//! `out = (Σ e_j · v_j) / Σ e_j`, the cells taken in ascending order.
//!
//! **Batch invariance.** Consecutive queries are taken in groups of up to
//! [`GROUP`] that share every K and V row they load (prefill). A query's
//! result is the same, bit for bit, whether it is computed alone, in a group,
//! or in a group of another size: each of its sums runs over its own cells
//! in the same order, with the same instructions, whatever the other queries
//! of the group are (cells outside its range leave its accumulators untouched
//! rather than adding zero).
//!
//! **Rounding.** The SIMD paths (f16 K/V on AVX-512 and AVX2) sum the dot
//! products and Σ e_j in another order than [`scalar::attend`], and take exp
//! from a polynomial ([`exp_error`]: ≤ 2 ulp over the range softmax uses;
//! inputs under −87 give 0 on AVX2). f32 and Q8_0 caches take the
//! generic path: per-cell dispatched dot/axpy ([`crate::vec`]) with the
//! table's exp.

use crate::formats::layout::Q8_0_BYTES;
use crate::vec::{ops, VecOps};
use crate::{Isa, KernelError};
use half::f16;
use std::ops::Range;

/// Queries that share one pass over the K and V rows.
pub const GROUP: usize = 4;

/// One head's rows of a K or V cache, by element type.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Q8_0 blocks: cell `j` starts at byte `j * stride / 32 * 34`.
    Q8_0(&'a [u8]),
}

/// One head of a KV cache.
#[derive(Clone, Copy, Debug)]
pub struct KvHead<'a> {
    pub k: KvRows<'a>,
    pub v: KvRows<'a>,
    /// Elements from one cell to the next (≥ `dim`; a multiple of 32 for Q8_0).
    pub stride: usize,
    /// Elements of one head row (head_dim; a multiple of 32 for Q8_0).
    pub dim: usize,
}

/// Cells `rows` holds whole (`dim` elements from `j * stride`).
fn cells(rows: KvRows<'_>, stride: usize, dim: usize) -> usize {
    let (len, stride, dim) = match rows {
        KvRows::F32(v) => (v.len(), stride, dim),
        KvRows::F16(v) => (v.len(), stride, dim),
        KvRows::Q8_0(v) => (
            v.len(),
            stride / 32 * Q8_0_BYTES,
            dim.div_ceil(32) * Q8_0_BYTES,
        ),
    };
    if len < dim || stride == 0 {
        return if len >= dim { 1 } else { 0 };
    }
    (len - dim) / stride + 1
}

/// Length of the `scores` scratch [`attend`] needs for `spans`:
/// `min(spans.len(), GROUP)` rows of the longest span.
pub fn scores_len(spans: &[Range<usize>]) -> usize {
    spans.len().min(GROUP) * spans.iter().map(|s| s.len()).max().unwrap_or(0)
}

/// One group of queries for an ISA body (everything checked by [`attend`]).
/// (Only x86 has such bodies so far.)
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Group<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub stride: usize,
    pub dim: usize,
    /// `spans.len() × dim` query rows.
    pub q: &'a [f32],
    /// 1..=GROUP ranges, non-empty, inside the cells of `k` and `v`.
    pub spans: &'a [Range<usize>],
    pub scale: f32,
    /// Query `t`'s scores at `t * width ..`; `width` ≥ every span's length.
    pub scores: &'a mut [f32],
    pub width: usize,
    /// `spans.len() × dim` outputs.
    pub out: &'a mut [f32],
}

impl Group<'_> {
    /// The cells any query of the group sees.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn union(&self) -> Range<usize> {
        let lo = self.spans.iter().map(|s| s.start).min().unwrap_or(0);
        let hi = self.spans.iter().map(|s| s.end).max().unwrap_or(0);
        lo..hi
    }
}

/// Attention of the query rows `q` (`spans.len() × head.dim`, row `t`
/// seeing cells `spans[t]`) into `out` (same shape), with `scores` as
/// scratch (at least [`scores_len`]). An empty span gives a zero row.
///
/// Panics (caller bugs, like `copy_from_slice`) if a shape does not match,
/// a span reaches past the cells the rows hold, the scratch is short, or a
/// Q8_0 head is not whole blocks.
pub fn attend(
    head: &KvHead<'_>,
    q: &[f32],
    spans: &[Range<usize>],
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_with(ops(), head, q, spans, scale, scores, out)
}

/// [`attend`] on a named instruction set (tests and benches compare them);
/// an error if this CPU lacks it.
#[allow(clippy::too_many_arguments)]
pub fn attend_with_isa(
    isa: Isa,
    head: &KvHead<'_>,
    q: &[f32],
    spans: &[Range<usize>],
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let ops = table(isa)?;
    attend_with(&ops, head, q, spans, scale, scores, out);
    Ok(())
}

/// The vec table of `isa`, if this CPU runs it.
fn table(isa: Isa) -> Result<VecOps, KernelError> {
    if !crate::dispatch::is_available(isa) {
        return Err(KernelError::IsaUnavailable(isa.name()));
    }
    Ok(crate::arch::vec_ops(isa).unwrap_or(crate::vec::SCALAR))
}

fn attend_with(
    ops: &VecOps,
    head: &KvHead<'_>,
    q: &[f32],
    spans: &[Range<usize>],
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (d, stride) = (head.dim, head.stride);
    let rows = spans.len().checked_mul(d).expect("attend: shape overflow");
    assert_eq!(q.len(), rows, "attend: query rows");
    assert_eq!(out.len(), rows, "attend: output rows");
    assert!(stride >= d, "attend: stride {stride} under head size {d}");
    if matches!(head.k, KvRows::Q8_0(_)) || matches!(head.v, KvRows::Q8_0(_)) {
        assert!(
            d.is_multiple_of(32) && stride.is_multiple_of(32),
            "attend: a Q8_0 head needs whole blocks"
        );
    }
    let n = cells(head.k, stride, d).min(cells(head.v, stride, d));
    for s in spans {
        assert!(
            s.start <= s.end && s.end <= n,
            "attend: span {s:?} past {n} cells"
        );
    }
    let width = spans.iter().map(|s| s.len()).max().unwrap_or(0);
    assert!(
        scores.len() >= scores_len(spans),
        "attend: scores scratch too short"
    );

    let fast = match (head.k, head.v, ops.attn_f16) {
        (KvRows::F16(k), KvRows::F16(v), Some(f))
            if d > 0 && d.is_multiple_of(ops.attn_f16_dim) =>
        {
            Some((k, v, f))
        }
        _ => None,
    };
    let mut t0 = 0;
    while t0 < spans.len() {
        // A group of consecutive non-empty spans; an empty one is a zero row.
        if spans[t0].is_empty() {
            out[t0 * d..(t0 + 1) * d].fill(0.0);
            t0 += 1;
            continue;
        }
        let mut t1 = t0 + 1;
        while t1 < spans.len() && t1 - t0 < GROUP && !spans[t1].is_empty() {
            t1 += 1;
        }
        let (qg, og) = (&q[t0 * d..t1 * d], &mut out[t0 * d..t1 * d]);
        match fast {
            Some((k, v, f)) => {
                let g = Group {
                    k,
                    v,
                    stride,
                    dim: d,
                    q: qg,
                    spans: &spans[t0..t1],
                    scale,
                    scores: &mut scores[..(t1 - t0) * width],
                    width,
                    out: og,
                };
                // SAFETY: the table's ISA runs here (`VecOps`); the shapes,
                // spans, head size and scratch were checked above.
                unsafe { f(g) }
            }
            None => {
                for (t, s) in spans[t0..t1].iter().enumerate() {
                    generic_one(
                        ops,
                        head,
                        &qg[t * d..(t + 1) * d],
                        s.clone(),
                        scale,
                        &mut scores[..s.len()],
                        &mut og[t * d..(t + 1) * d],
                    );
                }
            }
        }
        t0 = t1;
    }
}

/// One query over its cells with the table's per-row ops.
fn generic_one(
    ops: &VecOps,
    head: &KvHead<'_>,
    q: &[f32],
    span: Range<usize>,
    scale: f32,
    s: &mut [f32],
    o: &mut [f32],
) {
    let (d, stride) = (head.dim, head.stride);
    let q8 = |j: usize| j * stride / 32 * Q8_0_BYTES;
    for (j, sj) in span.clone().zip(s.iter_mut()) {
        let e = j * stride;
        // SAFETY: (all three arms) the table's ISA runs here; the row lies inside
        // the slice (spans checked by `attend`) and has `d` elements.
        let dot = unsafe {
            match head.k {
                KvRows::F32(k) => (ops.dot_f32)(&k[e..e + d], q),
                KvRows::F16(k) => (ops.dot_f16_f32)(&k[e..e + d], q),
                KvRows::Q8_0(k) => (ops.dot_q8_0_f32)(&k[q8(j)..q8(j) + d / 32 * Q8_0_BYTES], q),
            }
        };
        *sj = scale * dot;
    }
    // SAFETY: the table's ISA runs here.
    let sum = unsafe { (ops.exp_sum)(s) };
    o.fill(0.0);
    for (j, &w) in span.zip(s.iter()) {
        let e = j * stride;
        // SAFETY: as for the dots above.
        unsafe {
            match head.v {
                KvRows::F32(v) => (ops.axpy_f32)(o, w, &v[e..e + d]),
                KvRows::F16(v) => (ops.axpy_f16)(o, w, &v[e..e + d]),
                KvRows::Q8_0(v) => (ops.axpy_q8_0)(o, w, &v[q8(j)..q8(j) + d / 32 * Q8_0_BYTES]),
            }
        }
    }
    let inv = 1.0 / sum;
    for x in o.iter_mut() {
        *x *= inv;
    }
}

/// `s_j ← exp(s_j − max s)` in place; returns Σ s_j (0 for an empty slice),
/// with the active ISA's exp (the one [`attend`] uses).
pub fn exp_sum(s: &mut [f32]) -> f32 {
    // SAFETY: the table's ISA runs here (`VecOps`).
    unsafe { (ops().exp_sum)(s) }
}

/// Largest relative error of `isa`'s exp against f64 `exp` at `xs` (all
/// ≤ 0; results under 2⁻¹²⁶ are skipped), for the tests that hold it to
/// its documented bound.
pub fn exp_error(isa: Isa, xs: &[f32]) -> Result<f64, KernelError> {
    let ops = table(isa)?;
    let mut worst = 0f64;
    for &x in xs {
        // exp_sum subtracts the max: pair x with 0 so the max is 0.
        let mut s = [0.0, x];
        // SAFETY: `table` checked that this CPU runs `isa`.
        unsafe { (ops.exp_sum)(&mut s) };
        let want = (x as f64).exp();
        if want > f32::MIN_POSITIVE as f64 {
            worst = worst.max(((s[1] as f64) - want).abs() / want);
        }
    }
    Ok(worst)
}

/// Scalar references (the definition of correct the SIMD paths are held to).
pub mod scalar {
    use super::*;

    /// [`attend`](super::attend) with the scalar row ops and `f32::exp`.
    pub fn attend(
        head: &KvHead<'_>,
        q: &[f32],
        spans: &[Range<usize>],
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        attend_with(&crate::vec::SCALAR, head, q, spans, scale, scores, out)
    }

    /// `s_j ← exp(s_j − max s)`, returns Σ s_j (in order).
    pub fn exp_sum(s: &mut [f32]) -> f32 {
        let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for x in s.iter_mut() {
            *x = (*x - m).exp();
            sum += *x;
        }
        sum
    }
}
