//! AVX-512 (F + BW + VL) dot products of K-quant / IQ4 weights with Q8_K
//! (Q8_0 for IQ4_NL) activations, in two builds: with AVX512-VNNI
//! (`vpdpwssd` folds the sub-block scale multiply and the accumulation into
//! one instruction; `vpdpbusd` does IQ4_NL's unscaled u8·i8 block dots) and
//! without (the same arithmetic with `vpmaddwd` + `vpaddd`).
//!
//! Same scheme as the AVX2 kernels (see `k_avx2.rs`): weights decoded to
//! unsigned bytes, `vpmaddubsw` with the activations, sub-block scales
//! applied on i16 pair sums, offsets / mins through `bsums`. Each 512-bit
//! step covers 64 elements: two 32-element halves built from one 32-byte
//! load of packed weights with per-half shifts (`vpsllvw` / `vpsrlvw`) or
//! per-half bit tests. Integer results per block equal the scalar
//! reference's exactly; only f32 accumulation order differs.
//!
//! Blocks are read through raw pointers with unaligned loads.

use core::arch::x86_64::*;

use super::k_avx2::{
    acc_with_mins, acc_with_offset, f16_at, f32_at, finish, k4_mins16, k4_scales_mins,
    q3_k_scales16, u32_at, Q8K_QS, Q8K_SIZE,
};
use crate::formats::iq4::KVALUES_IQ4NL;
use crate::tile::MatFn;
use crate::GgmlType;

/// `acc + Σ pairs a·b` on i16 → i32 lanes: `vpdpwssd` with VNNI.
macro_rules! dpwssd {
    (true, $acc:expr, $a:expr, $b:expr) => {
        _mm512_dpwssd_epi32($acc, $a, $b)
    };
    (false, $acc:expr, $a:expr, $b:expr) => {
        _mm512_add_epi32($acc, _mm512_madd_epi16($a, $b))
    };
}

/// `Σ quads u8·i8` into i32 lanes (from zero): `vpdpbusd` with VNNI.
macro_rules! dpbusd0 {
    (true, $a:expr, $b:expr) => {
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), $a, $b)
    };
    (false, $a:expr, $b:expr) => {
        _mm512_madd_epi16(_mm512_maddubs_epi16($a, $b), _mm512_set1_epi16(1))
    };
}

macro_rules! kernels {
    ($m:ident, $feat:literal, $vnni:tt) => {
        mod $m {
            use super::*;

            /// i16 vector: `a` in words 0..16, `b` in words 16..32.
            #[inline]
            #[target_feature(enable = $feat)]
            fn halves16(a: i16, b: i16) -> __m512i {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set1_epi16(a)),
                    _mm256_set1_epi16(b),
                )
            }

            /// i8 vector: `a` in bytes 0..32, `b` in bytes 32..64.
            #[inline]
            #[target_feature(enable = $feat)]
            fn halves8(a: i8, b: i8) -> __m512i {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set1_epi8(a)),
                    _mm256_set1_epi8(b),
                )
            }

            /// Word indices `[4g ×8, 4g+1 ×8, 4g+2 ×8, 4g+3 ×8]`: picks the
            /// scales of four 16-element sub-blocks for `vpermw`.
            #[inline]
            #[target_feature(enable = $feat)]
            fn quad_idx(g: i16) -> __m512i {
                let base = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(1), _mm_set1_epi16(0))),
                    _mm256_set_m128i(_mm_set1_epi16(3), _mm_set1_epi16(2)),
                );
                _mm512_add_epi16(base, _mm512_set1_epi16(4 * g))
            }

            /// Sum of the two 256-bit halves of 16 i32 lanes.
            #[inline]
            #[target_feature(enable = $feat)]
            fn fold(v: __m512i) -> __m256i {
                _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
            }

            /// One Q4_K (`Q5 == false`) or Q5_K weight row against `T` Q8_K
            /// activation rows: the weights are decoded once per block and
            /// reused; every token's arithmetic is the same sequence as for
            /// `T = 1`. Q5_K adds 16 where its high bit (`qh`) is set.
            ///
            /// # Safety
            /// AVX-512 F/BW/VL (+VNNI for the VNNI build), AVX2, FMA, F16C;
            /// `nb` readable Q4_K (Q5_K) blocks at `w`, `nb` readable Q8_K
            /// blocks at each of the `T` activation pointers (any alignment).
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn dot_q45_k_n<const Q5: bool, const T: usize>(
                nb: usize,
                w: *const u8,
                a: [*const u8; T],
            ) -> [f32; T] {
                use crate::formats::layout::fields::{k4, K4_SC as SC, K5_QH as QH};
                let (bs, qs) = k4(Q5);
                let m4 = _mm512_set1_epi8(0x0F);
                let sixteen = _mm512_set1_epi8(16);
                let idx = [
                    halves16(0, 1),
                    halves16(2, 3),
                    halves16(4, 5),
                    halves16(6, 7),
                ];
                let bit = [
                    halves8(1, 2),
                    halves8(4, 8),
                    halves8(16, 32),
                    halves8(64, -128),
                ];
                let mut acc = [_mm256_setzero_ps(); T];
                let mut acc_m = [_mm256_setzero_ps(); T];
                for i in 0..nb {
                    // SAFETY: block i of each operand is in bounds per the
                    // contract; every load stays inside its block.
                    unsafe {
                        let x = w.add(i * bs);
                        let dx = f16_at(x);
                        let dmx = f16_at(x.add(2));
                        let (sc, mn) = k4_scales_mins(x.add(SC));
                        let sc16 =
                            _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
                        let qh = if Q5 {
                            _mm512_broadcast_i64x4(_mm256_loadu_si256(x.add(QH).cast()))
                        } else {
                            _mm512_setzero_si512()
                        };
                        let mut sumi = [_mm512_setzero_si512(); T];
                        for p in 0..4 {
                            let q = _mm256_loadu_si256(x.add(qs + 32 * p).cast());
                            let qz = _mm512_inserti64x4::<1>(
                                _mm512_castsi256_si512(q),
                                _mm256_srli_epi16::<4>(q),
                            );
                            let mut u = _mm512_and_si512(qz, m4);
                            if Q5 {
                                // High bit of sub-block 2p (low half) / 2p+1 (high half).
                                let k = _mm512_test_epi8_mask(qh, bit[p]);
                                u = _mm512_mask_add_epi8(u, k, u, sixteen);
                            }
                            let s = _mm512_permutexvar_epi16(idx[p], sc16);
                            for t in 0..T {
                                let q8 = _mm512_loadu_si512(
                                    a[t].add(i * Q8K_SIZE + Q8K_QS + 64 * p).cast(),
                                );
                                sumi[t] = dpwssd!($vnni, sumi[t], _mm512_maddubs_epi16(u, q8), s);
                            }
                        }
                        let s256 = core::array::from_fn(|t| fold(sumi[t]));
                        let acc_all = (&mut acc, &mut acc_m);
                        acc_with_mins(acc_all, &s256, &a, i, (dx, dmx), k4_mins16(mn));
                    }
                }
                finish(&acc, Some(&acc_m))
            }

            /// One Q6_K weight row against `T` Q8_K activation rows (see
            /// [`dot_q45_k_n`]).
            ///
            /// # Safety
            /// As [`dot_q45_k_n`], with Q6_K weight blocks.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn dot_q6_k_n<const T: usize>(
                nb: usize,
                w: *const u8,
                a: [*const u8; T],
            ) -> [f32; T] {
                use crate::formats::layout::fields::q6_k::*;
                let m4 = _mm512_set1_epi8(0x0F);
                let m30 = _mm512_set1_epi8(0x30);
                // qh bits 2k..2k+2 of value group k moved to bits 4..6.
                let shl_01 = halves16(4, 2);
                let shr_23 = halves16(0, 2);
                let idx = [quad_idx(0), quad_idx(1), quad_idx(2), quad_idx(3)];
                let mut acc = [_mm256_setzero_ps(); T];
                for i in 0..nb {
                    // SAFETY: block i of each operand is in bounds per the contract.
                    unsafe {
                        let x = w.add(i * BS);
                        let dx = f16_at(x.add(D));
                        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(SC).cast()));
                        let sc16z = _mm512_castsi256_si512(sc16);
                        let mut sumi = [_mm512_setzero_si512(); T];
                        for n in 0..2 {
                            let ql = _mm512_loadu_si512(x.add(QL + 64 * n).cast());
                            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                                x.add(QH + 32 * n).cast(),
                            ));
                            let g0 = _mm512_or_si512(
                                _mm512_and_si512(ql, m4),
                                _mm512_and_si512(_mm512_sllv_epi16(qh, shl_01), m30),
                            );
                            let g1 = _mm512_or_si512(
                                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
                                _mm512_and_si512(_mm512_srlv_epi16(qh, shr_23), m30),
                            );
                            let sa = _mm512_permutexvar_epi16(idx[2 * n], sc16z);
                            let sb = _mm512_permutexvar_epi16(idx[2 * n + 1], sc16z);
                            for t in 0..T {
                                let y = a[t].add(i * Q8K_SIZE + Q8K_QS + 128 * n);
                                let q8a = _mm512_loadu_si512(y.cast());
                                let q8b = _mm512_loadu_si512(y.add(64).cast());
                                sumi[t] =
                                    dpwssd!($vnni, sumi[t], _mm512_maddubs_epi16(g0, q8a), sa);
                                sumi[t] =
                                    dpwssd!($vnni, sumi[t], _mm512_maddubs_epi16(g1, q8b), sb);
                            }
                        }
                        let s256 = core::array::from_fn(|t| fold(sumi[t]));
                        acc_with_offset::<5, T>(&mut acc, &s256, &a, i, dx, sc16);
                    }
                }
                finish(&acc, None)
            }

            /// One Q2_K (`Q3 == false`) or Q3_K weight row against `T` Q8_K
            /// activation rows (see [`dot_q45_k_n`] and the AVX2
            /// `dot_q23_k_n`: Q3_K is Q2_K's 2-bit values plus an `hmask`
            /// bit, with signed scales and an offset instead of mins).
            ///
            /// # Safety
            /// As [`dot_q45_k_n`], with Q2_K (Q3_K) weight blocks.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn dot_q23_k_n<const Q3: bool, const T: usize>(
                nb: usize,
                w: *const u8,
                a: [*const u8; T],
            ) -> [f32; T] {
                use crate::formats::layout::fields::{q2_k, q3_k};
                let (bs, qs) = if Q3 {
                    (q3_k::BS, q3_k::QS)
                } else {
                    (q2_k::BS, q2_k::QS)
                };
                let m3 = _mm512_set1_epi8(0x03);
                let m4 = _mm_set1_epi8(0x0F);
                let four = _mm512_set1_epi8(4);
                let shr = [halves16(0, 2), halves16(4, 6)];
                let idx = [quad_idx(0), quad_idx(1), quad_idx(2), quad_idx(3)];
                // Q3_K: hmask bit g of every byte rotated to bit 2 (bit 8b + g
                // of a dword lands on 8b + 2): g = 4n + 2jj (low half), + 1
                // (high half).
                let rot = |g: i32| {
                    _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(_mm256_set1_epi32((2 - g).rem_euclid(32))),
                        _mm256_set1_epi32((1 - g).rem_euclid(32)),
                    )
                };
                let rot = [rot(0), rot(2), rot(4), rot(6)];
                let mut acc = [_mm256_setzero_ps(); T];
                let mut acc_m = [_mm256_setzero_ps(); T];
                for i in 0..nb {
                    // SAFETY: block i of each operand is in bounds per the contract.
                    unsafe {
                        let x = w.add(i * bs);
                        // (d, scales, mins, hmask): Q3_K has no mins, Q2_K no hmask.
                        let (dx, sc16, mn16, hm) = if Q3 {
                            let hm =
                                _mm512_broadcast_i64x4(_mm256_loadu_si256(x.add(q3_k::HM).cast()));
                            let sc16 = q3_k_scales16(x.add(q3_k::SC));
                            (f16_at(x.add(q3_k::D)), sc16, _mm256_setzero_si256(), hm)
                        } else {
                            let raw = _mm_loadu_si128(x.add(q2_k::SC).cast());
                            let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
                            let mn16 =
                                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4));
                            (f16_at(x.add(q2_k::D)), sc16, mn16, _mm512_setzero_si512())
                        };
                        let sc16z = _mm512_castsi256_si512(sc16);
                        let mut sumi = [_mm512_setzero_si512(); T];
                        for n in 0..2 {
                            let q = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                                x.add(qs + 32 * n).cast(),
                            ));
                            for jj in 0..2 {
                                // Bit lanes j = 2jj (low half) and 2jj+1 (high half).
                                let mut u = _mm512_and_si512(_mm512_srlv_epi16(q, shr[jj]), m3);
                                if Q3 {
                                    let h = _mm512_rolv_epi32(hm, rot[2 * n + jj]);
                                    // 0xF8: A | (B & C).
                                    u = _mm512_ternarylogic_epi32::<0xF8>(u, h, four);
                                }
                                let s = _mm512_permutexvar_epi16(idx[2 * n + jj], sc16z);
                                for t in 0..T {
                                    let q8 = _mm512_loadu_si512(
                                        a[t].add(i * Q8K_SIZE + Q8K_QS + 128 * n + 64 * jj).cast(),
                                    );
                                    sumi[t] =
                                        dpwssd!($vnni, sumi[t], _mm512_maddubs_epi16(u, q8), s);
                                }
                            }
                        }
                        let s256 = core::array::from_fn(|t| fold(sumi[t]));
                        if Q3 {
                            acc_with_offset::<2, T>(&mut acc, &s256, &a, i, dx, sc16);
                        } else {
                            let dmx = f16_at(x.add(q2_k::DMIN));
                            let acc_all = (&mut acc, &mut acc_m);
                            acc_with_mins(acc_all, &s256, &a, i, (dx, dmx), mn16);
                        }
                    }
                }
                finish(&acc, if Q3 { None } else { Some(&acc_m) })
            }

            /// 64 IQ4 codebook values from two 16-byte groups `lo_src` /
            /// `hi_src`: `[lo nibbles A, hi nibbles A, lo B, hi B]`.
            #[inline]
            #[target_feature(enable = $feat)]
            fn iq4_values(ab: __m512i, lut: __m512i) -> __m512i {
                let shifts =
                    _mm512_broadcast_i64x4(_mm256_set_m128i(_mm_set1_epi16(4), _mm_set1_epi16(0)));
                let idx = _mm512_and_si512(_mm512_srlv_epi16(ab, shifts), _mm512_set1_epi8(0x0F));
                _mm512_shuffle_epi8(lut, idx)
            }

            /// `(|v|, q8 negated where v < 0)`: the operands of an exact
            /// signed·signed byte dot through an unsigned·signed instruction.
            #[inline]
            #[target_feature(enable = $feat)]
            fn sign_split(v: __m512i, q8: __m512i) -> (__m512i, __m512i) {
                let neg = _mm512_movepi8_mask(v);
                (
                    _mm512_abs_epi8(v),
                    _mm512_mask_sub_epi8(q8, neg, _mm512_setzero_si512(), q8),
                )
            }

            /// One IQ4_XS weight row against `T` Q8_K activation rows (see
            /// [`dot_q45_k_n`]).
            ///
            /// # Safety
            /// As [`dot_q45_k_n`], with IQ4_XS weight blocks; activations in
            /// `-127..=127`.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn dot_iq4_xs_n<const T: usize>(
                nb: usize,
                w: *const u8,
                a: [*const u8; T],
            ) -> [f32; T] {
                use crate::formats::layout::fields::iq4_xs::*;
                // SAFETY: KVALUES_IQ4NL is 16 bytes.
                let lut = _mm512_broadcast_i32x4(unsafe {
                    _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast())
                });
                // Scale pair (ib, ib + 1) picked by `vpermw` from the 8 scales.
                let pick = [
                    halves16(0, 1),
                    halves16(2, 3),
                    halves16(4, 5),
                    halves16(6, 7),
                ];
                let nib_shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
                let hi_shift = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
                let mut acc = [_mm256_setzero_ps(); T];
                for i in 0..nb {
                    // SAFETY: block i of each operand is in bounds per the contract.
                    unsafe {
                        let x = w.add(i * BS);
                        let dx = f16_at(x);
                        let sh = x.add(SH).cast::<u16>().read_unaligned() as i32;
                        let sl = u32_at(x.add(SL)) as i32;
                        // Scale ib = (nibble ib of sl | 2 bits ib of sh << 4) − 32,
                        // all 8 at once as i32, then i16 in words 0..8.
                        let lo = _mm256_and_si256(
                            _mm256_srlv_epi32(_mm256_set1_epi32(sl), nib_shift),
                            _mm256_set1_epi32(0xF),
                        );
                        let hi = _mm256_and_si256(
                            _mm256_srlv_epi32(_mm256_set1_epi32(sh << 4), hi_shift),
                            _mm256_set1_epi32(0x30),
                        );
                        let ls = _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
                        let ls16 = _mm512_castsi128_si512(_mm256_cvtepi32_epi16(ls));
                        let mut sumi = [_mm512_setzero_si512(); T];
                        for (g, ix) in pick.iter().enumerate() {
                            let ib = 2 * g as u32;
                            let q = _mm512_castsi256_si512(_mm256_loadu_si256(
                                x.add(QS + 16 * ib as usize).cast(),
                            ));
                            // 128-bit lanes [A, A, B, B] of the two 16-byte groups.
                            let ab = _mm512_shuffle_i64x2::<0x50>(q, q);
                            let v = iq4_values(ab, lut);
                            let s = _mm512_permutexvar_epi16(*ix, ls16);
                            for t in 0..T {
                                let q8 = _mm512_loadu_si512(
                                    a[t].add(i * Q8K_SIZE + Q8K_QS + 32 * ib as usize).cast(),
                                );
                                let (av, sq8) = sign_split(v, q8);
                                sumi[t] = dpwssd!($vnni, sumi[t], _mm512_maddubs_epi16(av, sq8), s);
                            }
                        }
                        for t in 0..T {
                            let d = f32_at(a[t].add(i * Q8K_SIZE)) * dx;
                            acc[t] = _mm256_fmadd_ps(
                                _mm256_set1_ps(d),
                                _mm256_cvtepi32_ps(fold(sumi[t])),
                                acc[t],
                            );
                        }
                    }
                }
                finish(&acc, None)
            }

            /// # Safety
            /// AVX-512 features as above; `nb` readable IQ4_NL blocks at `w`
            /// and `nb` Q8_0 blocks (values in `-127..=127`) at `a`.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn dot_iq4_nl(nb: usize, w: *const u8, a: *const u8) -> f32 {
                use crate::formats::layout::fields::iq4_nl::{BS, QS};
                use crate::formats::layout::fields::q8_0::{BS as ABS, QS as AQS};
                // SAFETY: KVALUES_IQ4NL is 16 bytes.
                let lut = _mm512_broadcast_i32x4(unsafe {
                    _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast())
                });
                let mut acc = _mm512_setzero_ps();
                let mut i = 0;
                while i + 2 <= nb {
                    // SAFETY: blocks i and i+1 of each operand are in bounds.
                    unsafe {
                        let x = w.add(i * BS);
                        let y = a.add(i * ABS);
                        let qa = _mm256_broadcastsi128_si256(_mm_loadu_si128(x.add(QS).cast()));
                        let qb =
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(x.add(BS + QS).cast()));
                        let ab = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
                        let v = iq4_values(ab, lut);
                        let q8 = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(y.add(AQS).cast())),
                            _mm256_loadu_si256(y.add(ABS + AQS).cast()),
                        );
                        let (av, sq8) = sign_split(v, q8);
                        let dot = dpbusd0!($vnni, av, sq8);
                        let d0 = f16_at(x) * f16_at(y);
                        let d1 = f16_at(x.add(BS)) * f16_at(y.add(ABS));
                        let dv =
                            _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
                        acc = _mm512_fmadd_ps(dv, _mm512_cvtepi32_ps(dot), acc);
                    }
                    i += 2;
                }
                let mut sum = _mm512_reduce_add_ps(acc);
                if i < nb {
                    // SAFETY: block i is in bounds; the AVX2 kernel handles one
                    // block and the features it needs are enabled here.
                    sum += unsafe {
                        super::super::k_avx2::dot_iq4_nl(1, w.add(i * BS), a.add(i * ABS))
                    };
                }
                sum
            }

            k_tiles! {
                $feat;
                IQ4_NL => dot_iq4_nl;
                Q2_K => dot_q23_k_n[false];
                Q3_K => dot_q23_k_n[true];
                Q4_K => dot_q45_k_n[false];
                Q5_K => dot_q45_k_n[true];
                Q6_K => dot_q6_k_n[];
                IQ4_XS => dot_iq4_xs_n[];
            }
        }
    };
}

kernels!(plain, "avx512f,avx512bw,avx512vl,avx2,fma,f16c", false);
kernels!(
    vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    true
);

/// The AVX-512 tile function for a K-quant / IQ4 weight type (the VNNI
/// build when the CPU has AVX512-VNNI).
pub(crate) fn mat(ty: GgmlType) -> Option<MatFn> {
    if crate::dispatch::has_avx512_vnni() {
        vnni::mat(ty)
    } else {
        plain::mat(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::iq4::QK4_NL;
    use crate::formats::k_quants::QK_K;
    use crate::table::ops;
    use crate::tile::MatArgs;
    use crate::Isa;

    /// Byte offsets of the f16 scale fields of one weight block.
    fn f16_fields(ty: GgmlType) -> &'static [usize] {
        match ty {
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[0],
        }
    }

    /// Both AVX-512 builds (VNNI where the CPU has it) against the scalar
    /// reference on random blocks: 3 super-blocks (25 blocks for IQ4_NL, odd,
    /// so its single-block tail runs), 5 tokens (a 4-token group + 1).
    #[test]
    fn both_builds_match_scalar() {
        if !crate::dispatch::is_available(Isa::Avx512) {
            return;
        }
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for ty in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::IQ4_XS,
            GgmlType::IQ4_NL,
        ] {
            // IQ4_NL: 25 blocks of 32, odd, to reach the single-block tail.
            let n = if ty == GgmlType::IQ4_NL {
                3 * QK_K + QK4_NL
            } else {
                3 * QK_K
            };
            let wb = ty.bytes_for(n as u64).unwrap() as usize;
            let mut w: Vec<u8> = (0..wb).map(|_| next() as u8).collect();
            for blk in w.chunks_exact_mut(ty.type_size()) {
                for &off in f16_fields(ty) {
                    let v = half::f16::from_f32((next() % 1000) as f32 * 1e-4 - 0.05);
                    blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            let scalar = ops(ty, Isa::Scalar).unwrap();
            let ab = scalar.act.bytes_for(n as u64).unwrap() as usize;
            // 5 tokens: one 4-token group plus a single one.
            let nt = 5;
            let x: Vec<f32> = (0..n * nt)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut abuf = vec![0u32; (ab * nt).div_ceil(4)];
            let a = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut abuf)[..ab * nt];
            for (row, xt) in a.chunks_exact_mut(ab).zip(x.chunks_exact(n)) {
                (scalar.quantize_act)(xt, row);
            }
            let args = MatArgs {
                n,
                w: &w,
                w_stride: wb,
                nr: 1,
                a,
                a_stride: ab,
                nt,
            };
            assert!(args.is_valid(wb, ab, nt));
            let mut want = vec![0.0f32; nt];
            // SAFETY: scalar path, arguments validated.
            unsafe { (scalar.mat)(&args, &mut want) };
            let mut builds = vec![plain::mat(ty).unwrap()];
            if crate::dispatch::has_avx512_vnni() {
                builds.push(vnni::mat(ty).unwrap());
            }
            for f in builds {
                let mut got = vec![0.0f32; nt];
                // SAFETY: the CPU has AVX-512 (checked above; VNNI checked
                // before adding that build) and the arguments are valid.
                unsafe { f(&args, &mut got) };
                for (g, e) in got.iter().zip(&want) {
                    let tol = 1e-4 * e.abs().max(1.0);
                    assert!((g - e).abs() <= tol, "{ty}: {g} vs {e}");
                }
            }
        }
    }
}
