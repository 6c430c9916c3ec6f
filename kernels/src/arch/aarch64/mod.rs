//! AArch64 Advanced SIMD (NEON) paths.
//!
//! Every integer kernel is written once, generic over [`I8Dot`], and
//! instantiated twice:
//!
//! * [`Sdot`]: the `sdot` instruction (FEAT_DotProd), emitted with inline
//!   assembly because `vdotq_s32` is not stable Rust; the entry points of
//!   this flavour carry `#[target_feature(enable = "neon,dotprod")]`.
//! * [`Smull`]: plain NEON widening multiplies (`smull`/`smull2`) folded
//!   with `sadalp`, for cores without the extension (Cortex-A53/A72, ...).
//!
//! [`neon_mat`] picks the flavour once per process from
//! [`has_dotprod`]. Per block the integer dot is exact and the float
//! accumulation repeats the scalar reference's operations in the same
//! order, so for the quantized types the NEON results are bit-identical to
//! the scalar ones (the tests check equality).

use crate::tile::MatFn;
use crate::GgmlType;
use core::arch::aarch64::*;
use core::arch::asm;

/// Token-tile width of [`tile_fn_t`]: each weight block is decoded once
/// and multiplied with this many activation rows.
pub(crate) const TILE_T: usize = 4;

/// Defines a tile function `$name` with `#[target_feature($feat)]` that
/// fills `out[t * nr + r]` from a row kernel that takes `T` activation rows
/// at once, `$row::<D, P.., T>(n, w, [a; T]) -> [f32; T]`: tokens go in groups of
/// [`TILE_T`] (the weights are decoded once per group), the rest one by one.
macro_rules! tile_fn_t {
    ($(#[$doc:meta])* $name:ident, $feat:literal, $row:ident :: <$d:ty $(, $p:tt)*>) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The `MatFn` contract: the CPU has the enabled target features and
        /// `args.is_valid(weight row bytes, activation row bytes, out.len())`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $name(args: &$crate::tile::MatArgs<'_>, out: &mut [f32]) {
            use $crate::arch::aarch64::TILE_T;
            let (w, a, nr) = (args.w.as_ptr(), args.a.as_ptr(), args.nr);
            let mut t = 0;
            while t + TILE_T <= args.nt {
                // SAFETY: is_valid ⇒ activation rows t..t + TILE_T (< nt)
                // start inside `args.a`.
                let ap: [*const u8; TILE_T] =
                    core::array::from_fn(|k| unsafe { a.add((t + k) * args.a_stride) });
                for r in 0..nr {
                    // SAFETY: is_valid ⇒ weight row r and these activation
                    // rows are whole rows inside their slices; the CPU has
                    // the features this function enables.
                    let s = unsafe { $row::<$d, $($p,)* TILE_T>(args.n, w.add(r * args.w_stride), ap) };
                    for (k, v) in s.into_iter().enumerate() {
                        out[(t + k) * nr + r] = v;
                    }
                }
                t += TILE_T;
            }
            while t < args.nt {
                // SAFETY: as above, for the single row t < nt.
                let ap = [unsafe { a.add(t * args.a_stride) }];
                for r in 0..nr {
                    // SAFETY: as above.
                    let s = unsafe { $row::<$d, $($p,)* 1>(args.n, w.add(r * args.w_stride), ap) };
                    out[t * nr + r] = s[0];
                }
                t += 1;
            }
        }
    };
}

/// One flavour's tile functions (named by type) and its `mat(ty)` table:
/// every row kernel instantiated with the flavour's [`I8Dot`].
macro_rules! flavour {
    ($m:ident, $feat:literal, $d:ty; $($ty:ident => $row:ident [$($p:tt),*];)*) => {
        mod $m {
            use super::*;
            $(
                tile_fn_t!(
                    /// An integer tile of this flavour.
                    #[allow(non_snake_case)]
                    $ty, $feat, $row::<$d $(, $p)*>
                );
            )*

            pub(super) fn mat(ty: GgmlType) -> Option<MatFn> {
                Some(match ty {
                    $(GgmlType::$ty => $ty,)*
                    _ => return None,
                })
            }
        }
    };
}

macro_rules! flavours {
    ($($body:tt)*) => {
        flavour!(sdot, "neon,dotprod", Sdot; $($body)*);
        flavour!(plain, "neon", Smull; $($body)*);
    };
}

mod k_neon;
mod neon;
pub(crate) mod neon_dot;
mod packed_neon;
pub(crate) mod packed_neon_k;
mod quant_act;
mod quant_k_act;
#[cfg(test)]
mod tests;
pub(crate) mod vec;

/// The NEON packed group tile of `ty` for `tier` (`packed_neon.rs` for the
/// 32-element types, `packed_neon_k.rs` for the K-quants) and the most
/// tokens it takes per call.
pub(crate) fn packed_tile(
    ty: GgmlType,
    tier: crate::dispatch::NeonDot,
) -> Option<(crate::tile::PackedTileFn, usize)> {
    packed_neon::tile_for(ty, tier).or_else(|| packed_neon_k::tile_for(ty, tier))
}

/// The NEON activation quantizer for `act` (Q8_0, Q8_1, Q8_K), bit-identical
/// to the scalar one.
pub(crate) fn quantize_act(act: GgmlType) -> Option<crate::tile::QuantizeActFn> {
    match act {
        GgmlType::Q8_0 => Some(quant_act::quantize_act_q8_0),
        GgmlType::Q8_1 => Some(quant_act::quantize_act_q8_1),
        GgmlType::Q8_K => Some(quant_k_act::quantize_act_q8_k),
        _ => None,
    }
}

/// Whether this CPU has FEAT_DotProd (`sdot`), detected once with the
/// other features (`crate::dispatch::features`).
pub(crate) fn has_dotprod() -> bool {
    crate::dispatch::has_dotprod()
}

/// The NEON tile function for `ty`, if there is one: the `sdot` flavour
/// when the CPU has dotprod, the plain one otherwise. The caller
/// ([`crate::table::ops`]) has checked that NEON is available.
pub(crate) fn neon_mat(ty: GgmlType) -> Option<MatFn> {
    mat_flavour(ty, has_dotprod())
}

/// Every NEON tile built for `ty` that this CPU can run, named (for
/// [`crate::table::mat_variants`]): plain NEON always, `sdot` with dotprod.
pub(crate) fn variants(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    let mut v: Vec<(&'static str, MatFn)> = Vec::new();
    if crate::dispatch::is_available(crate::Isa::Neon) {
        v.extend(mat_flavour(ty, false).map(|f| ("neon", f)));
        if has_dotprod() {
            v.extend(mat_flavour(ty, true).map(|f| ("neon-sdot", f)));
        }
    }
    v
}

/// The NEON tile for `ty` of one flavour: `sdot` (`dotprod = true`, only
/// for CPUs with dotprod) or plain NEON.
pub(crate) fn mat_flavour(ty: GgmlType, dotprod: bool) -> Option<MatFn> {
    neon::mat(ty, dotprod).or_else(|| k_neon::mat(ty, dotprod))
}

/// A 16-lane signed byte dot product step: adds `Σ a[k]·b[k]` over the 16
/// lanes into the four i32 lanes of `acc` (how the 16 products are split
/// over the four lanes is up to the implementation; callers only use the
/// total).
pub(crate) trait I8Dot {
    /// # Safety
    ///
    /// The CPU must support the instructions of the implementation (NEON
    /// for [`Smull`], NEON + dotprod for [`Sdot`]) and the caller must be
    /// compiled with those target features, so that the body is inlined
    /// into it.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// `sdot` (FEAT_DotProd): lane i gets `Σ_{k<4} a[4i+k]·b[4i+k]`.
pub(crate) struct Sdot;

/// Plain NEON: `smull`/`smull2` to i16 products (never overflow: |x·y| ≤
/// 2^14), pairwise-added into i32 with `sadalp`.
pub(crate) struct Smull;

impl I8Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: the trait contract says the CPU has dotprod and the caller
        // enables the feature (the assembler accepts `sdot` only then). The
        // instruction reads and writes registers only.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }
}

impl I8Dot for Smull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: plain NEON register arithmetic; the trait contract says
        // the CPU has NEON.
        unsafe {
            let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let hi = vmull_high_s8(a, b);
            vpadalq_s16(vpadalq_s16(acc, lo), hi)
        }
    }
}

/// IEEE half → single (exact), from the raw little-endian bits.
#[inline(always)]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Reads a little-endian f16 at `p` (any alignment) as f32.
///
/// # Safety
///
/// `p..p + 2` must be readable.
#[inline(always)]
pub(crate) unsafe fn load_f16(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes; `[u8; 2]` has
    // alignment 1.
    let b = unsafe { core::ptr::read_unaligned(p as *const [u8; 2]) };
    f16_to_f32(u16::from_le_bytes(b))
}

/// Widens the four halves of `h` (raw f16 bits) to f32x4 (`fcvtl`; exact;
/// base AArch64 Advanced SIMD, see [`cvt_f16x8`]).
///
/// # Safety
///
/// The CPU must have NEON (every AArch64 Linux CPU does).
#[inline(always)]
pub(crate) unsafe fn cvt_f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: a register-only conversion available on every AArch64 CPU
    // with Advanced SIMD.
    unsafe {
        asm!(
            "fcvtl {o:v}.4s, {h:v}.4h",
            h = in(vreg) h,
            o = out(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Widens the eight halves of `h` (raw f16 bits) to two f32x4 (`fcvtl`,
/// `fcvtl2`; exact; part of base AArch64 Advanced SIMD). `vcvt_f32_f16` is
/// not stable Rust, hence the assembly.
///
/// # Safety
///
/// The CPU must have NEON (every AArch64 Linux CPU does).
#[inline(always)]
pub(crate) unsafe fn cvt_f16x8(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let lo: float32x4_t;
    let hi: float32x4_t;
    // SAFETY: register-only conversions available on every AArch64 CPU
    // with Advanced SIMD.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    (lo, hi)
}
