//! NEON tile functions for the float formats and the 32-element block
//! formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8_0 / Q8_1 activations).
//!
//! Row dots read blocks through raw pointers with unaligned loads
//! (`vld1q_*` of bytes), so weights and activations may have any
//! alignment. Bounds come from the `MatFn` contract: `args.is_valid(..)`
//! holds, so every row the tile touches lies inside `args.w` / `args.a`.

use super::{cvt_f16x8, load_f16, I8Dot, Sdot, Smull};
use crate::tile::MatFn;
use crate::GgmlType;
use core::arch::aarch64::*;

use crate::formats::QK;
use core::mem::size_of;

/// Bytes per block of the 32-element formats.
const Q4_0_BYTES: usize = size_of::<crate::formats::BlockQ4_0>();
const Q4_1_BYTES: usize = size_of::<crate::formats::BlockQ4_1>();
const Q5_0_BYTES: usize = size_of::<crate::formats::BlockQ5_0>();
const Q5_1_BYTES: usize = size_of::<crate::formats::BlockQ5_1>();
const Q8_0_BYTES: usize = size_of::<crate::formats::BlockQ8_0>();
const Q8_1_BYTES: usize = size_of::<crate::formats::BlockQ8_1>();

/// The NEON tile for `ty` (`dotprod` picks the `sdot` flavour of the
/// integer kernels; the float kernels have one flavour).
pub(super) fn mat(ty: GgmlType, dotprod: bool) -> Option<MatFn> {
    use GgmlType as T;
    let f: MatFn = match ty {
        T::F32 => mat_f32,
        T::F16 => mat_f16,
        T::BF16 => mat_bf16,
        _ if dotprod => return sdot::mat(ty),
        _ => return plain::mat(ty),
    };
    Some(f)
}

// ---------------------------------------------------------------- floats

/// Horizontal sum of four accumulators.
///
/// # Safety
///
/// NEON.
#[inline(always)]
unsafe fn hsum4(a: float32x4_t, b: float32x4_t, c: float32x4_t, d: float32x4_t) -> f32 {
    // SAFETY: register arithmetic; callers run with NEON.
    unsafe { vaddvq_f32(vaddq_f32(vaddq_f32(a, b), vaddq_f32(c, d))) }
}

/// F32 · F32 over `n` elements.
///
/// # Safety
///
/// NEON; `w` and `a` each point at `4n` readable bytes.
#[inline(always)]
unsafe fn row_f32(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: every load below reads bytes `4i..4i + 16` with `i + 4 <= n`
    // or a single element `i < n`, inside the caller's `4n` bytes.
    unsafe {
        let ld = |p: *const u8, i: usize| vreinterpretq_f32_u8(vld1q_u8(p.add(4 * i)));
        let z = vdupq_n_f32(0.0);
        let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
        let mut i = 0;
        while i + 16 <= n {
            s0 = vfmaq_f32(s0, ld(w, i), ld(a, i));
            s1 = vfmaq_f32(s1, ld(w, i + 4), ld(a, i + 4));
            s2 = vfmaq_f32(s2, ld(w, i + 8), ld(a, i + 8));
            s3 = vfmaq_f32(s3, ld(w, i + 12), ld(a, i + 12));
            i += 16;
        }
        while i + 4 <= n {
            s0 = vfmaq_f32(s0, ld(w, i), ld(a, i));
            i += 4;
        }
        let mut s = hsum4(s0, s1, s2, s3);
        while i < n {
            let x = f32::from_le_bytes(core::ptr::read_unaligned(w.add(4 * i) as *const [u8; 4]));
            let y = f32::from_le_bytes(core::ptr::read_unaligned(a.add(4 * i) as *const [u8; 4]));
            s += x * y;
            i += 1;
        }
        s
    }
}

/// Sum of products of `n` pairs of 16-bit floats, each widened to f32 by
/// `cvt8` (8 lanes) / `cvt1` (one value).
///
/// # Safety
///
/// NEON; `w` and `a` each point at `2n` readable bytes.
#[inline(always)]
unsafe fn row_half(
    n: usize,
    w: *const u8,
    a: *const u8,
    cvt8: impl Fn(uint16x8_t) -> (float32x4_t, float32x4_t),
    cvt1: impl Fn(u16) -> f32,
) -> f32 {
    // SAFETY: loads read bytes `2i..2i + 16` with `i + 8 <= n`, or one
    // element `i < n`, inside the caller's `2n` bytes.
    unsafe {
        let ld = |p: *const u8, i: usize| vreinterpretq_u16_u8(vld1q_u8(p.add(2 * i)));
        let z = vdupq_n_f32(0.0);
        let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
        let mut i = 0;
        while i + 16 <= n {
            let (w0, w1) = cvt8(ld(w, i));
            let (a0, a1) = cvt8(ld(a, i));
            let (w2, w3) = cvt8(ld(w, i + 8));
            let (a2, a3) = cvt8(ld(a, i + 8));
            s0 = vfmaq_f32(s0, w0, a0);
            s1 = vfmaq_f32(s1, w1, a1);
            s2 = vfmaq_f32(s2, w2, a2);
            s3 = vfmaq_f32(s3, w3, a3);
            i += 16;
        }
        while i + 8 <= n {
            let (w0, w1) = cvt8(ld(w, i));
            let (a0, a1) = cvt8(ld(a, i));
            s0 = vfmaq_f32(s0, w0, a0);
            s1 = vfmaq_f32(s1, w1, a1);
            i += 8;
        }
        let mut s = hsum4(s0, s1, s2, s3);
        let rd = |p: *const u8, i: usize| {
            u16::from_le_bytes(core::ptr::read_unaligned(p.add(2 * i) as *const [u8; 2]))
        };
        while i < n {
            s += cvt1(rd(w, i)) * cvt1(rd(a, i));
            i += 1;
        }
        s
    }
}

/// F16 · F16.
///
/// # Safety
///
/// NEON; `w` and `a` each point at `2n` readable bytes.
#[inline(always)]
unsafe fn row_f16(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: forwarded contract; `cvt_f16x8` needs NEON only.
    unsafe { row_half(n, w, a, |h| cvt_f16x8(h), super::f16_to_f32) }
}

/// BF16 · BF16 (bf16 → f32 is a 16-bit left shift).
///
/// # Safety
///
/// NEON; `w` and `a` each point at `2n` readable bytes.
#[inline(always)]
unsafe fn row_bf16(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: forwarded contract; the shifts are plain NEON.
    unsafe {
        row_half(
            n,
            w,
            a,
            |h| {
                (
                    vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                    vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
                )
            },
            |b| f32::from_bits((b as u32) << 16),
        )
    }
}

/// A float row against `T` activation rows at once: the weights are loaded
/// and widened once per 8 elements (`ld8(p, i)` = elements `i..i + 8` of the
/// row at `p` as f32, `ld1(p, i)` = element `i`).
///
/// # Safety
///
/// NEON; `w` and every `a[t]` hold `n` elements.
#[inline(always)]
unsafe fn row_float_t<const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
    ld8: impl Fn(*const u8, usize) -> (float32x4_t, float32x4_t),
    ld1: impl Fn(*const u8, usize) -> f32,
) -> [f32; T] {
    // SAFETY: `ld8` reads elements `i..i + 8` with `i + 8 <= n`, `ld1`
    // element `i < n`, inside the caller's rows; register arithmetic
    // otherwise.
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [[z; 2]; T];
        let mut i = 0;
        while i + 8 <= n {
            let (w0, w1) = ld8(w, i);
            for (acc_t, &a_t) in acc.iter_mut().zip(&a) {
                let (a0, a1) = ld8(a_t, i);
                acc_t[0] = vfmaq_f32(acc_t[0], w0, a0);
                acc_t[1] = vfmaq_f32(acc_t[1], w1, a1);
            }
            i += 8;
        }
        let mut out = acc.map(|v| vaddvq_f32(vaddq_f32(v[0], v[1])));
        while i < n {
            let wv = ld1(w, i);
            for (o, &a_t) in out.iter_mut().zip(&a) {
                *o += wv * ld1(a_t, i);
            }
            i += 1;
        }
        out
    }
}

/// Reads element `i` of a row of 16-bit values.
///
/// # Safety
///
/// `p + 2i .. p + 2i + 2` readable.
#[inline(always)]
unsafe fn rd16(p: *const u8, i: usize) -> u16 {
    // SAFETY: forwarded contract; alignment 1.
    u16::from_le_bytes(unsafe { core::ptr::read_unaligned(p.add(2 * i) as *const [u8; 2]) })
}

/// F32 rows × `T` activation rows.
///
/// # Safety
///
/// NEON; `w` and every `a[t]` hold `4n` readable bytes.
#[inline(always)]
unsafe fn row_f32_t<const T: usize>(n: usize, w: *const u8, a: [*const u8; T]) -> [f32; T] {
    // SAFETY: forwarded contract (loads of 16 bytes at element offsets the
    // caller's bounds allow).
    unsafe {
        row_float_t(
            n,
            w,
            a,
            |p, i| {
                (
                    vreinterpretq_f32_u8(vld1q_u8(p.add(4 * i))),
                    vreinterpretq_f32_u8(vld1q_u8(p.add(4 * i + 16))),
                )
            },
            |p, i| f32::from_le_bytes(core::ptr::read_unaligned(p.add(4 * i) as *const [u8; 4])),
        )
    }
}

/// F16 rows × `T` activation rows.
///
/// # Safety
///
/// NEON; `w` and every `a[t]` hold `2n` readable bytes.
#[inline(always)]
unsafe fn row_f16_t<const T: usize>(n: usize, w: *const u8, a: [*const u8; T]) -> [f32; T] {
    // SAFETY: forwarded contract.
    unsafe {
        row_float_t(
            n,
            w,
            a,
            |p, i| cvt_f16x8(vreinterpretq_u16_u8(vld1q_u8(p.add(2 * i)))),
            |p, i| super::f16_to_f32(rd16(p, i)),
        )
    }
}

/// BF16 rows × `T` activation rows.
///
/// # Safety
///
/// NEON; `w` and every `a[t]` hold `2n` readable bytes.
#[inline(always)]
unsafe fn row_bf16_t<const T: usize>(n: usize, w: *const u8, a: [*const u8; T]) -> [f32; T] {
    // SAFETY: forwarded contract.
    unsafe {
        row_float_t(
            n,
            w,
            a,
            |p, i| {
                let h = vreinterpretq_u16_u8(vld1q_u8(p.add(2 * i)));
                (
                    vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                    vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
                )
            },
            |p, i| f32::from_bits((rd16(p, i) as u32) << 16),
        )
    }
}

/// Defines a float tile: tokens in groups of [`TILE_T`](super::TILE_T)
/// through `$row_t`, the remaining ones through the single-row `$row1`
/// (four accumulators, better for gemv).
macro_rules! tile_fn_float {
    ($(#[$doc:meta])* $name:ident, $row1:ident, $row_t:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The `MatFn` contract: the CPU has NEON and
        /// `args.is_valid(weight row bytes, activation row bytes, out.len())`.
        #[target_feature(enable = "neon")]
        pub(crate) unsafe fn $name(args: &$crate::tile::MatArgs<'_>, out: &mut [f32]) {
            use super::TILE_T;
            let (w, a, nr) = (args.w.as_ptr(), args.a.as_ptr(), args.nr);
            let mut t = 0;
            while t + TILE_T <= args.nt {
                // SAFETY: is_valid ⇒ activation rows t..t + TILE_T (< nt)
                // start inside `args.a`.
                let ap: [*const u8; TILE_T] =
                    core::array::from_fn(|k| unsafe { a.add((t + k) * args.a_stride) });
                for r in 0..nr {
                    // SAFETY: is_valid ⇒ weight row r and these activation
                    // rows are whole rows inside their slices.
                    let s = unsafe { $row_t::<TILE_T>(args.n, w.add(r * args.w_stride), ap) };
                    for (k, v) in s.into_iter().enumerate() {
                        out[(t + k) * nr + r] = v;
                    }
                }
                t += TILE_T;
            }
            while t < args.nt {
                // SAFETY: as above, for the single row t < nt.
                let at = unsafe { a.add(t * args.a_stride) };
                for r in 0..nr {
                    // SAFETY: as above.
                    out[t * nr + r] = unsafe { $row1(args.n, w.add(r * args.w_stride), at) };
                }
                t += 1;
            }
        }
    };
}

tile_fn_float!(
    /// F32 weights × F32 activations.
    mat_f32, row_f32, row_f32_t
);
tile_fn_float!(
    /// F16 weights × F16 activations.
    mat_f16, row_f16, row_f16_t
);
tile_fn_float!(
    /// BF16 weights × BF16 activations.
    mat_bf16, row_bf16, row_bf16_t
);

// ------------------------------------------------------- 32-element blocks

/// Loads 16 signed bytes at `p` (any alignment).
///
/// # Safety
///
/// NEON; `p..p + 16` readable.
#[inline(always)]
pub(super) unsafe fn ld_s8(p: *const u8) -> int8x16_t {
    // SAFETY: the caller guarantees 16 readable bytes; `vld1q_u8` has no
    // alignment requirement.
    unsafe { vreinterpretq_s8_u8(vld1q_u8(p)) }
}

/// The 32 quants of a Q8_0 / Q8_1 block at `p`.
///
/// # Safety
///
/// NEON; `p..p + 32` readable.
#[inline(always)]
pub(super) unsafe fn ld_q8(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: forwarded contract.
    unsafe { (ld_s8(p), ld_s8(p.add(16))) }
}

/// Low and high nibbles of the 16 bytes at `p`: elements 0..16 and 16..32.
///
/// # Safety
///
/// NEON; `p..p + 16` readable.
#[inline(always)]
pub(super) unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: forwarded contract; register arithmetic otherwise.
    unsafe {
        let v = vld1q_u8(p);
        (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v))
    }
}

/// Lane j is 0xFF when bit j of the 16-bit `bits` is set, else 0.
///
/// # Safety
///
/// NEON.
#[inline(always)]
unsafe fn bit_mask16(bits: u16) -> uint8x16_t {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: `SEL` is 16 readable bytes; register arithmetic otherwise.
    unsafe {
        let b = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
        vtstq_u8(b, vld1q_u8(SEL.as_ptr()))
    }
}

/// The fifth bits of a Q5 block (`qh` at `p`, little-endian u32) as two
/// lane masks: elements 0..16 and 16..32.
///
/// # Safety
///
/// NEON; `p..p + 4` readable.
#[inline(always)]
unsafe fn q5_high_masks(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: four readable bytes at `p`, alignment 1.
    let qh = u32::from_le_bytes(unsafe { core::ptr::read_unaligned(p as *const [u8; 4]) });
    // SAFETY: NEON register arithmetic.
    unsafe { (bit_mask16(qh as u16), bit_mask16((qh >> 16) as u16)) }
}

/// Exact integer dot of 32 weight lanes (`w0`, `w1`) with 32 activation
/// lanes (`a0`, `a1`).
///
/// # Safety
///
/// `D`'s CPU features (see [`I8Dot`]).
#[inline(always)]
pub(super) unsafe fn idot32<D: I8Dot>(
    w0: int8x16_t,
    w1: int8x16_t,
    a0: int8x16_t,
    a1: int8x16_t,
) -> i32 {
    // SAFETY: forwarded `I8Dot` contract (the tile enables D's features).
    unsafe { vaddvq_s32(D::dot(D::dot(vdupq_n_s32(0), w0, a0), w1, a1)) }
}

/// Generates a `T`-token row kernel for a 32-element block format: per
/// weight block, `$decode(wb) -> (w0, w1, extra)` once, then for each token
/// `$acc(sum, isum, wb, extra, ab)` with the block's exact integer dot.
macro_rules! row32 {
    ($(#[$doc:meta])* $name:ident, $wbytes:expr, $abytes:expr, $aqs:expr,
     |$wb:ident| $decode:block, |$sum:ident, $isum:ident, $wbb:ident, $ab:ident| $acc:block) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// `D`'s CPU features; `w` holds `n / 32` weight blocks and every
        /// `a[t]` as many activation blocks.
        #[inline(always)]
        unsafe fn $name<D: I8Dot, const T: usize>(
            n: usize,
            w: *const u8,
            a: [*const u8; T],
        ) -> [f32; T] {
            let mut sums = [0.0f32; T];
            for i in 0..n / QK {
                // SAFETY: block i of the weight row and of every activation
                // row lies inside the caller's bytes.
                unsafe {
                    let $wb = w.add(i * $wbytes);
                    let (w0, w1) = $decode;
                    for (t, $sum) in sums.iter_mut().enumerate() {
                        let $ab = a[t].add(i * $abytes);
                        let (a0, a1) = ld_q8($ab.add($aqs));
                        let $isum = idot32::<D>(w0, w1, a0, a1);
                        let $wbb = $wb;
                        $acc
                    }
                }
            }
            sums
        }
    };
}

row32!(
    /// Q8_0 · Q8_0 rows.
    row_q8_0, Q8_0_BYTES, Q8_0_BYTES, 2,
    |wb| { ld_q8(wb.add(2)) },
    |sum, isum, wb, ab| { *sum += isum as f32 * (load_f16(wb) * load_f16(ab)); }
);

row32!(
    /// Q4_0 · Q8_0 rows: weights `nibble - 8`.
    row_q4_0, Q4_0_BYTES, Q8_0_BYTES, 2,
    |wb| {
        let (lo, hi) = nibbles(wb.add(2));
        let eight = vdupq_n_s8(8);
        (
            vsubq_s8(vreinterpretq_s8_u8(lo), eight),
            vsubq_s8(vreinterpretq_s8_u8(hi), eight),
        )
    },
    |sum, isum, wb, ab| { *sum += isum as f32 * (load_f16(wb) * load_f16(ab)); }
);

row32!(
    /// Q4_1 · Q8_1 rows: `Σ d_w d_a · isum + m_w · s_a`.
    row_q4_1, Q4_1_BYTES, Q8_1_BYTES, 4,
    |wb| {
        let (lo, hi) = nibbles(wb.add(4));
        (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
    },
    |sum, isum, wb, ab| {
        *sum += isum as f32 * (load_f16(wb) * load_f16(ab))
            + load_f16(wb.add(2)) * load_f16(ab.add(2));
    }
);

row32!(
    /// Q5_0 · Q8_0 rows: weights `(nibble | bit4 << 4) - 16`, computed as
    /// `nibble - (bit4 ? 0 : 16)`.
    row_q5_0, Q5_0_BYTES, Q8_0_BYTES, 2,
    |wb| {
        let (m0, m1) = q5_high_masks(wb.add(2));
        let (lo, hi) = nibbles(wb.add(6));
        let sixteen = vdupq_n_u8(0x10);
        (
            vsubq_s8(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(vbicq_u8(sixteen, m0))),
            vsubq_s8(vreinterpretq_s8_u8(hi), vreinterpretq_s8_u8(vbicq_u8(sixteen, m1))),
        )
    },
    |sum, isum, wb, ab| { *sum += isum as f32 * (load_f16(wb) * load_f16(ab)); }
);

row32!(
    /// Q5_1 · Q8_1 rows: weights `nibble | bit4 << 4` (0..=31).
    row_q5_1, Q5_1_BYTES, Q8_1_BYTES, 4,
    |wb| {
        let (m0, m1) = q5_high_masks(wb.add(4));
        let (lo, hi) = nibbles(wb.add(8));
        let sixteen = vdupq_n_u8(0x10);
        (
            vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(sixteen, m0))),
            vreinterpretq_s8_u8(vorrq_u8(hi, vandq_u8(sixteen, m1))),
        )
    },
    |sum, isum, wb, ab| {
        *sum += isum as f32 * (load_f16(wb) * load_f16(ab))
            + load_f16(wb.add(2)) * load_f16(ab.add(2));
    }
);

flavours! {
    Q8_0 => row_q8_0[];
    Q4_0 => row_q4_0[];
    Q4_1 => row_q4_1[];
    Q5_0 => row_q5_0[];
    Q5_1 => row_q5_1[];
}
