//! The dot tiers of the NEON packed kernels ([`crate::dispatch::NeonDot`]:
//! `plain`, `sdot`, `smmla`), chosen once per process by the registry
//! (`PHI_NEON_DOT` through `Config::from_env`, else the best the CPU has:
//! `is_aarch64_feature_detected!("dotprod")` / `("i8mm")` in
//! `crate::dispatch::features`).
//!
//! The packed layouts interleave 4 bytes per row (`crate::packed`): one
//! 128-bit register of weights holds 4 consecutive bytes of 4 rows. The
//! kernels are written once over [`Dot4`], which multiplies such a register
//! with one 4-byte group of an activation register (lane `L`) and keeps 4
//! per-row sums:
//!
//! * [`SdotLane`]: `sdot v.4s, w.16b, a.4b[L]` (FEAT_DotProd), one
//!   instruction per 16 products.
//! * [`Plain`]: `dup` of lane `L`, `smull`/`smull2` and `smlal`/`smlal2` of
//!   two such products into i16, `sadalp` into two i32 accumulators (row
//!   pairs), one `addp` at the end of a block.
//!
//! The `smmla` tier (FEAT_I8MM) multiplies 2 rows × 8 bytes by 2 tokens × 8
//! bytes ([`smmla`]); the kernels build its row pairs from the same layout
//! with `zip1`/`zip2` of two 4-byte-interleaved registers (once per weight
//! block, shared by all tokens of a tile) and run the `sdot` tier for gemv.

use core::arch::aarch64::*;
use core::arch::asm;

/// Four rows' signed byte dot products against broadcast 4-byte groups of
/// activations: `w` holds bytes `4i..4i + 4` of row `i`, and the result
/// lane `i` gets `Σ_k w[4i + k] · a[4L + k]`.
pub(crate) trait Dot4 {
    /// Running sums of one block.
    type Acc: Copy;

    /// Sums that start at `init` in every row (a block's integer offset).
    ///
    /// # Safety
    /// The CPU has the tier's instructions and the caller enables them.
    unsafe fn start(init: i32) -> Self::Acc;

    /// Adds `w1 · a1[L1]` and `w2 · a2[L2]` (4-byte groups) to each row.
    /// For the plain tier the two products of each byte position are summed
    /// in i16: callers keep `|w1·a1 + w2·a2| ≤ 32767` per byte (weights in
    /// −128..=127 and activations in −127..=127 do).
    ///
    /// # Safety
    /// As [`start`](Self::start).
    unsafe fn dot2<const L1: i32, const L2: i32>(
        acc: Self::Acc,
        w1: int8x16_t,
        a1: int8x16_t,
        w2: int8x16_t,
        a2: int8x16_t,
    ) -> Self::Acc;

    /// The four rows' sums (lane `i` = row `i`).
    ///
    /// # Safety
    /// As [`start`](Self::start).
    unsafe fn finish(acc: Self::Acc) -> int32x4_t;
}

/// FEAT_DotProd: `sdot` by element. Callers carry
/// `#[target_feature(enable = "neon,dotprod")]`.
pub(crate) struct SdotLane;

/// Plain NEON (no dotprod): widening multiplies folded with `sadalp`.
pub(crate) struct Plain;

/// `acc += sdot(w, a.4b[L])` (lane `L` of `a` as one 4-byte group): per
/// lane `r`, `acc[r] += Σ_{l<4} w[4r + l]·a[4L + l]`.
///
/// # Safety
/// The CPU has dotprod and the caller enables it.
#[inline(always)]
pub(crate) unsafe fn sdot_lane<const L: i32>(
    mut acc: int32x4_t,
    w: int8x16_t,
    a: int8x16_t,
) -> int32x4_t {
    // SAFETY: register-only instruction; the caller guarantees dotprod (the
    // assembler accepts `sdot` only with the feature).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

impl Dot4 for SdotLane {
    type Acc = int32x4_t;

    #[inline(always)]
    unsafe fn start(init: i32) -> int32x4_t {
        // SAFETY: NEON register op (the trait contract).
        unsafe { vdupq_n_s32(init) }
    }

    #[inline(always)]
    unsafe fn dot2<const L1: i32, const L2: i32>(
        acc: int32x4_t,
        w1: int8x16_t,
        a1: int8x16_t,
        w2: int8x16_t,
        a2: int8x16_t,
    ) -> int32x4_t {
        // SAFETY: the trait contract (dotprod enabled by the caller).
        unsafe { sdot_lane::<L2>(sdot_lane::<L1>(acc, w1, a1), w2, a2) }
    }

    #[inline(always)]
    unsafe fn finish(acc: int32x4_t) -> int32x4_t {
        acc
    }
}

impl Dot4 for Plain {
    /// Rows (0, 1) and (2, 3), two i32 lanes each, and the offset.
    type Acc = (int32x4_t, int32x4_t, i32);

    #[inline(always)]
    unsafe fn start(init: i32) -> Self::Acc {
        // SAFETY: NEON register op (the trait contract).
        unsafe {
            let z = vdupq_n_s32(0);
            (z, z, init)
        }
    }

    #[inline(always)]
    unsafe fn dot2<const L1: i32, const L2: i32>(
        (lo, hi, init): Self::Acc,
        w1: int8x16_t,
        a1: int8x16_t,
        w2: int8x16_t,
        a2: int8x16_t,
    ) -> Self::Acc {
        // SAFETY: plain NEON register arithmetic (the trait contract). The
        // i16 sums of two products fit by the caller's bound.
        unsafe {
            let b1 = vreinterpretq_s8_s32(vdupq_laneq_s32::<L1>(vreinterpretq_s32_s8(a1)));
            let b2 = vreinterpretq_s8_s32(vdupq_laneq_s32::<L2>(vreinterpretq_s32_s8(a2)));
            let p = vmlal_s8(
                vmull_s8(vget_low_s8(w1), vget_low_s8(b1)),
                vget_low_s8(w2),
                vget_low_s8(b2),
            );
            let q = vmlal_high_s8(vmull_high_s8(w1, b1), w2, b2);
            (vpadalq_s16(lo, p), vpadalq_s16(hi, q), init)
        }
    }

    #[inline(always)]
    unsafe fn finish((lo, hi, init): Self::Acc) -> int32x4_t {
        // SAFETY: NEON register ops (the trait contract).
        unsafe { vaddq_s32(vpaddq_s32(lo, hi), vdupq_n_s32(init)) }
    }
}

/// `smmla` (FEAT_I8MM): with `w` = rows (i = 0, 1) × 8 bytes and `a` =
/// tokens (j = 0, 1) × 8 bytes, lane `2i + j` of the result is `acc[2i + j]
/// + Σ_k w[8i + k] · a[8j + k]`.
///
/// # Safety
/// The CPU has i8mm and the caller enables it
/// (`#[target_feature(enable = "neon,dotprod,i8mm")]`).
#[inline(always)]
pub(crate) unsafe fn smmla(mut acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: register-only instruction; the caller guarantees i8mm (the
    // assembler accepts `smmla` only with the feature).
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {w:v}.16b, {a:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}
