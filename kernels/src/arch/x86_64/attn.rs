//! Attention over f16 KV rows ([`crate::attn`]) and the softmax exp, for
//! AVX-512 (zmm, masked tails, groups of up to 4 queries sharing each K/V
//! row) and AVX2 + F16C (ymm, head sizes that are multiples of 8, groups of
//! up to 2).
//!
//! Shape of both bodies, per group: (1) for every cell any query sees,
//! convert its K row once and run one dot per query (two accumulator
//! chains, then a horizontal sum); (2) per query, `exp(s − max)` in place
//! and its sum; (3) per chunk of the output (≤ 96 floats on AVX-512, ≤ 48 on
//! AVX2), the output of every query of the group stays in registers across
//! the cells while each V row is converted once. A cell outside a query's
//! range leaves that query's accumulators as they are (masked FMA / blend),
//! so its result does not depend on the group (see [`crate::attn`]).
//!
//! exp: Cody–Waite reduction `x = n·ln2 + r` (|r| ≤ ln2/2), a degree-7 Taylor
//! polynomial for `e^r` (truncation < 6e-9 relative), then `2^n`: relative
//! error under 1 ulp measured (`tests/attn.rs` holds it under 2 ulp).

use crate::attn::Group;
use core::arch::x86_64::*;
use std::ops::Range;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n · LN2_HI` is exact for |n| < 2⁹.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1/k! for k = 7 down to 2 (Horner order; the last two terms are 1).
const TAYLOR: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

/// Query `t`'s index of cell `j` in its scores row, if it sees `j`.
#[inline(always)]
fn seen(span: &Range<usize>, j: usize) -> Option<usize> {
    let idx = j.wrapping_sub(span.start);
    (idx < span.len()).then_some(idx)
}

/// Phases (2) and (3) of a group, the same on both ISAs (expanded inside
/// each ISA's `#[target_feature]` body, with its `exp_sum` and `vsum`):
/// softmax weights (unnormalised) and their sums per query, then the
/// weighted V sums, ≤ 6 vectors of output per pass. Unsafe to expand: the
/// ISA must run and the group must have been checked by `attend`.
macro_rules! softmax_then_v {
    ($G:ident, $exp_sum:ident, $vsum:ident, $scores:ident, $spans:ident, $width:ident,
     $v:ident, $stride:ident, $d:ident, $all:ident, $out:ident, $nv:ident) => {{
        let mut inv = [0f32; $G];
        for (t, w) in inv.iter_mut().enumerate() {
            let row = &mut $scores[t * $width..t * $width + $spans[t].len()];
            *w = 1.0 / $exp_sum(row);
        }
        let c = Chunk {
            v: $v.as_ptr() as *const i16,
            stride: $stride,
            d: $d,
            spans: $spans,
            all: $all,
            scores: $scores.as_ptr(),
            width: $width,
            out: $out.as_mut_ptr(),
        };
        let mut c0 = 0;
        while c0 < $nv {
            let w = ($nv - c0).min(6);
            match w {
                1 => $vsum::<$G, 1>(&c, c0, &inv),
                2 => $vsum::<$G, 2>(&c, c0, &inv),
                3 => $vsum::<$G, 3>(&c, c0, &inv),
                4 => $vsum::<$G, 4>(&c, c0, &inv),
                5 => $vsum::<$G, 5>(&c, c0, &inv),
                _ => $vsum::<$G, 6>(&c, c0, &inv),
            }
            c0 += w;
        }
    }};
}

/// `scale ×` the sums of four vectors, by one tree that treats every slot
/// alike (halves, then pairs, then the two 128-bit lanes).
///
/// # Safety
/// CPU has AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum4(v: [__m256; 4], scale: f32) -> [f32; 4] {
    let h01 = _mm256_hadd_ps(v[0], v[1]);
    let h23 = _mm256_hadd_ps(v[2], v[3]);
    let h = _mm256_hadd_ps(h01, h23);
    let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let mut out = [0f32; 4];
    // SAFETY: `out` holds 4 floats.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_mul_ps(s, _mm_set1_ps(scale))) };
    out
}

/// Stores the scores of cells `j..j + nc` that `span` sees into the scores
/// row at `sp + row`.
///
/// # Safety
/// `sp + row` starts a scores row of at least `span.len()` floats.
#[inline(always)]
unsafe fn store_seen(
    span: &Range<usize>,
    j: usize,
    nc: usize,
    dots: &[f32; 4],
    sp: *mut f32,
    row: usize,
) {
    for (c, &dot) in dots.iter().enumerate().take(nc) {
        if let Some(idx) = seen(span, j + c) {
            // SAFETY: idx < span length ≤ the row (caller).
            unsafe { *sp.add(row + idx) = dot };
        }
    }
}

pub(crate) mod avx512 {
    use super::*;

    /// Mask of the first `rem` (capped at 16) lanes.
    #[inline(always)]
    fn lanes(rem: usize) -> __mmask16 {
        if rem >= 16 {
            0xFFFF
        } else {
            (1u16 << rem) - 1
        }
    }

    /// The sum of the two 256-bit halves.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn half(x: __m512) -> __m256 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
        _mm256_add_ps(_mm512_castps512_ps256(x), hi)
    }

    /// e^x per lane (x ≤ 0 in softmax; under about −103.3 it is 0).
    ///
    /// # Safety
    /// CPU has AVX-512 F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
        let n = _mm512_roundscale_ps::<0x08>(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(TAYLOR[0]);
        for c in &TAYLOR[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        let one = _mm512_set1_ps(1.0);
        p = _mm512_fmadd_ps(p, r, one);
        p = _mm512_fmadd_ps(p, r, one);
        _mm512_scalef_ps(p, n)
    }

    /// `s ← exp(s − max s)`, returns Σ s (16 lane sums, then across lanes).
    ///
    /// # Safety
    /// CPU has AVX-512 F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn exp_sum(s: &mut [f32]) -> f32 {
        let n = s.len();
        if n == 0 {
            return 0.0;
        }
        let p = s.as_mut_ptr();
        let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < n {
            // SAFETY: the masked lanes are i..min(i + 16, n), inside `s`
            // (masked-off lanes are not read).
            mv = _mm512_max_ps(mv, unsafe {
                _mm512_mask_loadu_ps(mv, lanes(n - i), p.add(i))
            });
            i += 16;
        }
        let mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
        let mut sum = _mm512_setzero_ps();
        i = 0;
        while i < n {
            let m = lanes(n - i);
            // SAFETY: as above; the store is masked the same way.
            unsafe {
                let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), mx));
                _mm512_mask_storeu_ps(p.add(i), m, e);
                sum = _mm512_mask_add_ps(sum, m, sum, e);
            }
            i += 16;
        }
        _mm512_reduce_add_ps(sum)
    }

    /// One group of 1..=4 queries (`crate::attn::GROUP`).
    ///
    /// # Safety
    /// CPU has AVX-512 F/BW/VL; `g` was checked by `crate::attn::attend`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn attn_f16(g: Group<'_>) {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match g.spans.len() {
                1 => group::<1>(g),
                2 => group::<2>(g),
                3 => group::<3>(g),
                _ => group::<4>(g),
            }
        }
    }

    /// # Safety
    /// As [`attn_f16`], with `g.spans.len() == G`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn group<const G: usize>(g: Group<'_>) {
        let all = g.union();
        let Group {
            k,
            v,
            stride,
            dim: d,
            q,
            spans,
            scale,
            scores,
            width,
            out,
        } = g;
        let nv = d.div_ceil(16);
        let mask = |i: usize| lanes(d - 16 * i);
        let (kp, qp) = (k.as_ptr() as *const i16, q.as_ptr());

        // (1) Scores, four cells at a time: one FMA chain per (cell, query),
        // the four dots of a query reduced together (`hsum4`: the same
        // tree for every cell, whichever slot it takes).
        let sp = scores.as_mut_ptr();
        let tail = mask(nv - 1);
        let mut j = all.start;
        while j < all.end {
            let nc = (all.end - j).min(4);
            // Rows of the block; a short block repeats its last cell.
            // SAFETY: each cell is inside a span, so its row's `d` elements
            // lie inside `k` (checked by `attend`); lanes at or past `d` are
            // masked off and not read.
            let kr: [*const i16; 4] =
                core::array::from_fn(|c| unsafe { kp.add((j + c.min(nc - 1)) * stride) });
            let mut acc = [[_mm512_setzero_ps(); G]; 4];
            for i in 0..nv {
                let m = if i + 1 < nv { 0xFFFF } else { tail };
                // SAFETY: as above; query rows hold `G × d` floats.
                unsafe {
                    let qv: [__m512; G] =
                        core::array::from_fn(|t| _mm512_maskz_loadu_ps(m, qp.add(t * d + 16 * i)));
                    for (r, a) in kr.iter().zip(acc.iter_mut()) {
                        let kv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r.add(16 * i)));
                        for (x, q) in a.iter_mut().zip(&qv) {
                            *x = _mm512_fmadd_ps(*q, kv, *x);
                        }
                    }
                }
            }
            for t in 0..G {
                let dots = hsum4(
                    [
                        half(acc[0][t]),
                        half(acc[1][t]),
                        half(acc[2][t]),
                        half(acc[3][t]),
                    ],
                    scale,
                );
                // SAFETY: row t of the scratch holds `width` ≥ span floats.
                unsafe { store_seen(&spans[t], j, nc, &dots, sp, t * width) };
            }
            j += 4;
        }

        // SAFETY: this CPU has AVX-512 F/BW/VL; the group was checked.
        unsafe {
            softmax_then_v!(G, exp_sum, vsum, scores, spans, width, v, stride, d, all, out, nv)
        };
    }

    /// Σ_j e_tj · v_j for output vectors `c0..c0 + W` of each query.
    ///
    /// # Safety
    /// CPU has AVX-512 F/BW/VL; `c` describes a checked group with weights
    /// in `scores`; `16·c0 < d`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    // acc[t][i]: index loops keep the W × G accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    unsafe fn vsum<const G: usize, const W: usize>(c: &Chunk<'_>, c0: usize, inv: &[f32; G]) {
        let mask = |i: usize| lanes(c.d.saturating_sub(16 * i));
        let mut acc = [[_mm512_setzero_ps(); W]; G];
        for j in c.all.clone() {
            let mut p = [_mm512_setzero_ps(); G];
            let mut act = [0 as __mmask16; G];
            for t in 0..G {
                if let Some(idx) = seen(&c.spans[t], j) {
                    // SAFETY: idx < span length ≤ width (scratch row t).
                    p[t] = _mm512_set1_ps(unsafe { *c.scores.add(t * c.width + idx) });
                    act[t] = 0xFFFF;
                }
            }
            // SAFETY: cell j's row lies inside `v`; lanes past `d` masked.
            let vr = unsafe { c.v.add(j * c.stride) };
            for i in 0..W {
                // SAFETY: as above.
                let vv = _mm512_cvtph_ps(unsafe {
                    _mm256_maskz_loadu_epi16(mask(c0 + i), vr.add(16 * (c0 + i)))
                });
                for t in 0..G {
                    acc[t][i] = if G == 1 {
                        _mm512_fmadd_ps(p[t], vv, acc[t][i])
                    } else {
                        _mm512_mask3_fmadd_ps(p[t], vv, acc[t][i], act[t])
                    };
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let s = _mm512_set1_ps(inv[t]);
            for (i, ai) in a.iter().enumerate() {
                let o = 16 * (c0 + i);
                // SAFETY: output row t holds `d` floats; lanes past `d` masked.
                unsafe {
                    _mm512_mask_storeu_ps(
                        c.out.add(t * c.d + o),
                        mask(c0 + i),
                        _mm512_mul_ps(*ai, s),
                    )
                };
            }
        }
    }
}

/// What the V pass of one group reads and writes.
struct Chunk<'a> {
    v: *const i16,
    stride: usize,
    d: usize,
    spans: &'a [Range<usize>],
    all: Range<usize>,
    scores: *const f32,
    width: usize,
    out: *mut f32,
}

pub(crate) mod avx2 {
    use super::*;
    use crate::arch::x86_64::vec::hsum;

    /// e^x per lane (x ≤ 0 in softmax; under −87 it is 0: results under
    /// 2⁻¹²⁶ flush).
    ///
    /// # Safety
    /// CPU has AVX2 + FMA.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn exp(x: __m256) -> __m256 {
        let floor = _mm256_set1_ps(-87.0);
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, floor);
        let x = _mm256_max_ps(x, floor);
        let n = _mm256_round_ps::<0x08>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(TAYLOR[0]);
        for c in &TAYLOR[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let one = _mm256_set1_ps(1.0);
        p = _mm256_fmadd_ps(p, r, one);
        p = _mm256_fmadd_ps(p, r, one);
        // 2^n for n ≥ −126 (x was raised to −87): the exponent field.
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        let pow = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e));
        _mm256_andnot_ps(under, _mm256_mul_ps(p, pow))
    }

    /// Lane mask (all ones in the first `rem`, capped at 8, lanes).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn lanes(rem: usize) -> __m256i {
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(rem.min(8) as i32), idx)
    }

    /// `s ← exp(s − max s)`, returns Σ s (8 lane sums, then across lanes).
    ///
    /// # Safety
    /// CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn exp_sum(s: &mut [f32]) -> f32 {
        let n = s.len();
        if n == 0 {
            return 0.0;
        }
        let p = s.as_mut_ptr();
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut mv = ninf;
        let mut i = 0;
        while i < n {
            let m = lanes(n - i);
            // SAFETY: lanes i..min(i + 8, n) lie inside `s`; masked-off
            // lanes are not read (they read as 0, replaced by −∞).
            let x = unsafe { _mm256_maskload_ps(p.add(i), m) };
            mv = _mm256_max_ps(mv, _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(m)));
            i += 8;
        }
        let h = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps::<1>(mv));
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_max_ss(h, _mm_movehdup_ps(h));
        let mx = _mm256_set1_ps(_mm_cvtss_f32(h));
        let mut sum = _mm256_setzero_ps();
        i = 0;
        while i < n {
            let m = lanes(n - i);
            // SAFETY: as above; the store is masked the same way.
            unsafe {
                let e = exp(_mm256_sub_ps(_mm256_maskload_ps(p.add(i), m), mx));
                let e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
                _mm256_maskstore_ps(p.add(i), m, e);
                sum = _mm256_add_ps(sum, e);
            }
            i += 8;
        }
        hsum(sum)
    }

    /// Groups of up to 4 queries, run as pairs.
    ///
    /// # Safety
    /// CPU has AVX2, FMA and F16C; `g` was checked by `crate::attn::attend`
    /// and `g.dim` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn attn_f16(g: Group<'_>) {
        let Group {
            k,
            v,
            stride,
            dim,
            q,
            spans,
            scale,
            scores,
            width,
            out,
        } = g;
        let mut t0 = 0;
        while t0 < spans.len() {
            let t1 = (t0 + 2).min(spans.len());
            let sub = Group {
                k,
                v,
                stride,
                dim,
                q: &q[t0 * dim..t1 * dim],
                spans: &spans[t0..t1],
                scale,
                scores: &mut scores[t0 * width..t1 * width],
                width,
                out: &mut out[t0 * dim..t1 * dim],
            };
            // SAFETY: the caller's contract, for a sub-group.
            unsafe {
                if t1 - t0 == 2 {
                    group::<2>(sub)
                } else {
                    group::<1>(sub)
                }
            }
            t0 = t1;
        }
    }

    /// # Safety
    /// As [`attn_f16`], with `g.spans.len() == G`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn group<const G: usize>(g: Group<'_>) {
        let all = g.union();
        let Group {
            k,
            v,
            stride,
            dim: d,
            q,
            spans,
            scale,
            scores,
            width,
            out,
        } = g;
        let nv = d / 8;
        let (kp, qp) = (k.as_ptr() as *const u8, q.as_ptr());

        // Four cells at a time, as on AVX-512.
        let sp = scores.as_mut_ptr();
        let mut j = all.start;
        while j < all.end {
            let nc = (all.end - j).min(4);
            // SAFETY: each cell is inside a span, so its row's `d` elements
            // (2 bytes each) lie inside `k`; `d` is a multiple of 8.
            let kr: [*const u8; 4] =
                core::array::from_fn(|c| unsafe { kp.add(2 * (j + c.min(nc - 1)) * stride) });
            let mut acc = [[_mm256_setzero_ps(); G]; 4];
            for i in 0..nv {
                // SAFETY: as above; query rows hold `G × d` floats.
                unsafe {
                    let qv: [__m256; G] =
                        core::array::from_fn(|t| _mm256_loadu_ps(qp.add(t * d + 8 * i)));
                    for (r, a) in kr.iter().zip(acc.iter_mut()) {
                        let kv = _mm256_cvtph_ps(_mm_loadu_si128(r.add(16 * i) as *const __m128i));
                        for (x, q) in a.iter_mut().zip(&qv) {
                            *x = _mm256_fmadd_ps(*q, kv, *x);
                        }
                    }
                }
            }
            for t in 0..G {
                let dots = hsum4([acc[0][t], acc[1][t], acc[2][t], acc[3][t]], scale);
                // SAFETY: row t of the scratch holds `width` ≥ span floats.
                unsafe { store_seen(&spans[t], j, nc, &dots, sp, t * width) };
            }
            j += 4;
        }

        // SAFETY: this CPU has AVX2, FMA and F16C; the group was checked.
        unsafe {
            softmax_then_v!(G, exp_sum, vsum, scores, spans, width, v, stride, d, all, out, nv)
        };
    }

    /// Σ_j e_tj · v_j for output vectors `c0..c0 + W` (8 floats each).
    ///
    /// # Safety
    /// CPU has AVX2, FMA and F16C; `c` describes a checked group with
    /// weights in `scores`; `8·(c0 + W) ≤ d`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    // acc[t][i]: index loops keep the W × G accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    unsafe fn vsum<const G: usize, const W: usize>(c: &Chunk<'_>, c0: usize, inv: &[f32; G]) {
        let mut acc = [[_mm256_setzero_ps(); W]; G];
        for j in c.all.clone() {
            let mut p = [_mm256_setzero_ps(); G];
            let mut act = [_mm256_setzero_ps(); G];
            for t in 0..G {
                if let Some(idx) = seen(&c.spans[t], j) {
                    // SAFETY: idx < span length ≤ width (scratch row t).
                    p[t] = _mm256_set1_ps(unsafe { *c.scores.add(t * c.width + idx) });
                    act[t] = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
                }
            }
            // SAFETY: cell j's row (d f16) lies inside `v`.
            let vr = unsafe { c.v.add(j * c.stride + 8 * c0) } as *const __m128i;
            for i in 0..W {
                // SAFETY: 8·(c0 + i) + 8 ≤ d.
                let vv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(vr.add(i)) });
                for t in 0..G {
                    let f = _mm256_fmadd_ps(p[t], vv, acc[t][i]);
                    acc[t][i] = if G == 1 {
                        f
                    } else {
                        _mm256_blendv_ps(acc[t][i], f, act[t])
                    };
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let s = _mm256_set1_ps(inv[t]);
            for (i, ai) in a.iter().enumerate() {
                // SAFETY: output row t holds `d` floats; 8·(c0 + i) + 8 ≤ d.
                unsafe {
                    _mm256_storeu_ps(c.out.add(t * c.d + 8 * (c0 + i)), _mm256_mul_ps(*ai, s))
                };
            }
        }
    }
}
