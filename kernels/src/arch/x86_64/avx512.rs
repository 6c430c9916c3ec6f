//! AVX-512 (F/BW/VL) kernels: the `body.rs` bodies with 32 vector
//! registers (gemm tile 4 rows × 4 tokens), and with VNNI `vpdpbusd` for the
//! byte dots when the CPU has `avx512vnni` (`vnni` submodule).

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16,
};

/// `src` + `vpmaddubsw` + `vpmaddwd` byte dot (no VNNI).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn dot_maddubs(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
    _mm256_add_epi32(
        src,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)),
    )
}

super::body::x86_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    dot_maddubs,
    4,
    4,
    4
);

/// The same kernels with `vpdpbusd` (AVX-512 VNNI on 256-bit vectors).
pub(crate) mod vnni {
    use core::arch::x86_64::{__m256i, _mm256_dpbusd_epi32};

    /// `src` + Σ of 4 `u8 × i8` products per i32 lane in one `vpdpbusd` (exact).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dot_vnni(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(src, u, a)
    }

    crate::arch::x86_64::body::x86_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_vnni,
        4,
        4,
        4
    );
}

/// 512-bit VNNI kernels for the 32-element quantized types: two blocks per
/// `zmm` (block `b` in bytes 0..32, block `b + 1` in 32..64), one
/// `vpdpbusd` per block pair and pair of rows/tokens. Every type, Q8_0
/// included, is decoded to unsigned bytes with a bias (`w ^ 0x80` is
/// `w + 128`), so the dot is `Σ u·a − B·Σ a` (exact: `vpdpbusd` adds four
/// products of at most 255·127 per i32 lane). IQ4_NL (Q4_0's layout,
/// codebook values) is decoded the same way through a `vpshufb` table of
/// `K[n] + 128`. The types without a min run `tile512` (an odd last
/// block as a half step); Q4_1 / Q5_1 run `qtile512`, whose odd last block
/// goes through the 256-bit body.
pub(crate) mod wide {
    use super::vnni;
    use crate::arch::x86_64::body::*;
    use crate::formats::iq4::KVALUES_IQ4NL;
    use crate::tile::{MatArgs, MatFn};
    use core::arch::x86_64::*;

    use crate::formats::layout::{Block32, Q8_0_BYTES as A_Q8_0};

    /// Bias of the unsigned decoding (Q8_0, IQ4_NL: 128).
    const fn bias512(k: u8) -> u8 {
        Block32::of(k).bias() as u8
    }

    /// `[f(p) ×8 | f(p + stride) ×8]` for the f16 at `p` and `p + stride`.
    ///
    /// # Safety
    /// 2 bytes readable at both addresses; CPU has AVX-512 F/BW/VL + VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn pair_f16(p: *const u8, stride: usize) -> __m512 {
        // SAFETY: the caller guarantees both 2-byte reads.
        let (a, b) = unsafe {
            (
                core::ptr::read_unaligned(p as *const u16),
                core::ptr::read_unaligned(p.add(stride) as *const u16),
            )
        };
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((a as u32 | ((b as u32) << 16)) as i32));
        let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
    }

    /// `[f(p), f(p + stride), 0, 0]` for the f16 at `p` and `p + stride`.
    ///
    /// # Safety
    /// 2 bytes readable at both addresses; CPU as above.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn two_f16(p: *const u8, stride: usize) -> __m128 {
        // SAFETY: the caller guarantees both 2-byte reads.
        let (a, b) = unsafe {
            (
                core::ptr::read_unaligned(p as *const u16),
                core::ptr::read_unaligned(p.add(stride) as *const u16),
            )
        };
        _mm_cvtph_ps(_mm_cvtsi32_si128((a as u32 | ((b as u32) << 16)) as i32))
    }

    /// Two 16-byte nibble arrays → `[lo0, hi0, lo1, hi1]` (128-bit lanes).
    ///
    /// # Safety
    /// 16 bytes readable at `p` and `p + stride`; CPU as above.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn nibbles2(p: *const u8, stride: usize) -> __m512i {
        // SAFETY: the caller guarantees both 16-byte reads.
        let q = unsafe {
            _mm256_set_m128i(
                _mm_loadu_si128(p.add(stride) as *const __m128i),
                _mm_loadu_si128(p as *const __m128i),
            )
        };
        let m = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(q, m);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m);
        let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
    }

    /// 0x10 in every byte whose bit is set in the two `qh` words.
    ///
    /// # Safety
    /// 4 bytes readable at `p` and `p + stride`; CPU as above.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn high2(p: *const u8, stride: usize) -> __m512i {
        // SAFETY: the caller guarantees both 4-byte reads.
        let (a, b) = unsafe {
            (
                core::ptr::read_unaligned(p as *const u32),
                core::ptr::read_unaligned(p.add(stride) as *const u32),
            )
        };
        _mm512_maskz_mov_epi8(a as u64 | ((b as u64) << 32), _mm512_set1_epi8(0x10))
    }

    /// Decodes blocks `b`, `b + 1` at `p` (unsigned bytes, scales, mins).
    ///
    /// # Safety
    /// Two consecutive weight blocks readable at `p`; CPU as above.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn decode2<const K: u8>(p: *const u8) -> (__m512i, __m512, __m128) {
        let s = w_block(K);
        // SAFETY: all offsets lie inside the two blocks (caller).
        unsafe {
            let d = pair_f16(p, s);
            let z = _mm_setzero_ps();
            match K {
                Q4_0 => (nibbles2(p.add(2), s), d, z),
                Q4_1 => (nibbles2(p.add(4), s), d, two_f16(p.add(2), s)),
                Q5_0 => (
                    _mm512_or_si512(nibbles2(p.add(6), s), high2(p.add(2), s)),
                    d,
                    z,
                ),
                Q5_1 => (
                    _mm512_or_si512(nibbles2(p.add(8), s), high2(p.add(4), s)),
                    d,
                    two_f16(p.add(2), s),
                ),
                _ => {
                    let w = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(_mm256_loadu_si256(p.add(2) as *const __m256i)),
                        _mm256_loadu_si256(p.add(s + 2) as *const __m256i),
                    );
                    (_mm512_xor_si512(w, _mm512_set1_epi8(-128)), d, z)
                }
            }
        }
    }

    /// Horizontal sum of 16 floats.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn hsum16(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    /// R×T tile over `nb` blocks, two blocks per step.
    ///
    /// # Safety
    /// As `qtile`: `nb` blocks readable at every `w[r]` and `a[t]`; CPU has
    /// AVX-512 F/BW/VL + VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn qtile512<const K: u8, const R: usize, const T: usize>(
        nb: usize,
        w: [*const u8; R],
        a: [*const u8; T],
    ) -> [[f32; T]; R] {
        let ws = w_block(K);
        let asz = a_block(K);
        let qa = if has_min(K) { 4 } else { 2 };
        let bias_v = _mm512_set1_epi8(bias512(K) as i8);
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut accm = [[_mm_setzero_ps(); T]; R];
        let pairs = nb / 2;
        // gemv streams weights from memory: rows of a few KiB read side by side
        // defeat the hardware prefetcher, so prefetch into L2 the tile after
        // the next one (the R rows that follow it when rows are contiguous, as
        // in every matrix the driver passes), spread evenly over this tile's
        // steps (see `tile512`, which the types without a min use instead).
        let tile_bytes = R * nb * ws;
        let pf_lines = if T == 1 {
            tile_bytes.div_ceil(64).div_ceil(pairs.max(1))
        } else {
            0
        };
        let pf_base = w[0].wrapping_add(2 * tile_bytes);
        for bp in 0..pairs {
            let b = 2 * bp;
            for k in 0..pf_lines {
                // A prefetch is only a hint: it never faults, even past the end.
                _mm_prefetch::<_MM_HINT_T1>(
                    pf_base.wrapping_add((bp * pf_lines + k) * 64) as *const i8
                );
            }
            let mut wv = [_mm512_setzero_si512(); R];
            let mut dw = [_mm512_setzero_ps(); R];
            let mut mw = [_mm_setzero_ps(); R];
            for r in 0..R {
                // SAFETY: blocks b, b+1 < nb of row r are readable (caller).
                let (v, d, m) = unsafe { decode2::<K>(w[r].add(b * ws)) };
                wv[r] = v;
                dw[r] = d;
                mw[r] = m;
            }
            for t in 0..T {
                // SAFETY: blocks b, b+1 < nb of token t are readable (caller).
                let (av, da, sa) = unsafe {
                    let pa = a[t].add(b * asz);
                    let av = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(_mm256_loadu_si256(pa.add(qa) as *const __m256i)),
                        _mm256_loadu_si256(pa.add(asz + qa) as *const __m256i),
                    );
                    let sa = if has_min(K) {
                        two_f16(pa.add(2), asz)
                    } else {
                        _mm_setzero_ps()
                    };
                    (av, pair_f16(pa, asz), sa)
                };
                // −B·Σa per lane: the starting value of every row's dot.
                let zero = _mm512_setzero_si512();
                let neg_corr = if bias512(K) != 0 {
                    _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias_v, av))
                } else {
                    zero
                };
                for r in 0..R {
                    let di = _mm512_dpbusd_epi32(neg_corr, wv[r], av);
                    acc[r][t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(di),
                        _mm512_mul_ps(dw[r], da),
                        acc[r][t],
                    );
                    if has_min(K) {
                        accm[r][t] = _mm_fmadd_ps(mw[r], sa, accm[r][t]);
                    }
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                let m = accm[r][t];
                res[r][t] =
                    hsum16(acc[r][t]) + (_mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m)));
            }
        }
        if nb % 2 == 1 {
            let b = nb - 1;
            // SAFETY: block nb-1 of every row and token is readable (caller).
            let tail = unsafe {
                vnni::qtile::<K, R, T>(
                    1,
                    core::array::from_fn(|r| w[r].add(b * ws)),
                    core::array::from_fn(|t| a[t].add(b * asz)),
                )
            };
            for r in 0..R {
                for t in 0..T {
                    res[r][t] += tail[r][t];
                }
            }
        }
        res
    }

    /// IQ4_NL in the 512-bit gemv (the `Block32` code; the 256-bit
    /// `body.rs` does not take it): Q4_0's block layout, each nibble mapped through the
    /// codebook, decoded to unsigned bytes `K[n] + 128` (bias 128).
    pub(crate) const IQ4NL: u8 = IQ4_NL;

    /// Bytes per weight block, IQ4_NL included.
    const fn wsize(k: u8) -> usize {
        w_block(k)
    }

    /// One step of an `R`×`T` tile over blocks `b` and `b + 1`, or over
    /// block `b` alone when `HALF` (an odd last block: the weights are read
    /// with stride 0 and meet zero activations in the upper half, which adds
    /// exactly 0). Types without a min (Q4_0, Q5_0, Q8_0, IQ4_NL); every
    /// (row, token) runs the same operations whatever `R` and `T` are.
    ///
    /// # Safety
    /// Blocks `b` (and `b + 1` unless `HALF`) of every row `w[r]` and of
    /// every activation row `a[t]` are readable; CPU has AVX-512 F/BW/VL + VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn step512<const K: u8, const R: usize, const T: usize, const HALF: bool>(
        b: usize,
        w: &[*const u8; R],
        a: &[*const u8; T],
        acc: &mut [[__m512; T]; R],
    ) {
        let ws = wsize(K);
        let st = if HALF { 0 } else { ws };
        let zero = _mm512_setzero_si512();
        // SAFETY: (all reads) inside blocks b (and b + 1 unless HALF) of each
        // weight row and activation row, which the caller guarantees readable.
        unsafe {
            let mut wv = [zero; R];
            let mut dw = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let p = w[r].add(b * ws);
                wv[r] = match K {
                    Q8_0 => {
                        let v = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(p.add(2) as *const __m256i)),
                            _mm256_loadu_si256(p.add(st + 2) as *const __m256i),
                        );
                        _mm512_xor_si512(v, _mm512_set1_epi8(-128))
                    }
                    Q5_0 => _mm512_or_si512(nibbles2(p.add(6), st), high2(p.add(2), st)),
                    IQ4NL => {
                        // KVALUES_IQ4NL is 16 bytes.
                        let k = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
                        let lut =
                            _mm512_xor_si512(_mm512_broadcast_i32x4(k), _mm512_set1_epi8(-128));
                        _mm512_shuffle_epi8(lut, nibbles2(p.add(2), st))
                    }
                    _ => nibbles2(p.add(2), st),
                };
                dw[r] = pair_f16(p, st);
            }
            for t in 0..T {
                let pa = a[t].add(b * A_Q8_0);
                let lo = _mm256_loadu_si256(pa.add(2) as *const __m256i);
                let (av, da) = if HALF {
                    (_mm512_zextsi256_si512(lo), pair_f16(pa, 0))
                } else {
                    (
                        _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(lo),
                            _mm256_loadu_si256(pa.add(A_Q8_0 + 2) as *const __m256i),
                        ),
                        pair_f16(pa, A_Q8_0),
                    )
                };
                // −B·Σa per lane: the starting value of every row's dot.
                let bias_v = _mm512_set1_epi8(bias512(K) as i8);
                let neg_corr = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias_v, av));
                for r in 0..R {
                    let di = _mm512_dpbusd_epi32(neg_corr, wv[r], av);
                    acc[r][t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(di),
                        _mm512_mul_ps(dw[r], da),
                        acc[r][t],
                    );
                }
            }
        }
    }

    /// `R`×`T` tile for the types without a min, odd block counts included
    /// (no 256-bit tail, unlike [`qtile512`]). gemv tiles (`T == 1`, `R > 1`)
    /// prefetch into L2 the tile after the next one (the `R` rows starting
    /// `2R` rows on: rows are contiguous in every matrix the driver passes),
    /// spread evenly over their steps: rows streamed side by side defeat the
    /// hardware prefetcher. Measured on a loaded 2-core Zen 4 (Q4_0 / Q8_0,
    /// 256 MiB): L2 beats L1 as the target (L1 evicts the tile being read)
    /// by 10–30 % of read bandwidth, and two tiles ahead beats one by ~5–10 %.
    ///
    /// # Safety
    /// `nb` blocks readable at every `w[r]` and `nb` Q8_0 blocks at every
    /// `a[t]`; CPU has AVX-512 F/BW/VL + VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn tile512<const K: u8, const R: usize, const T: usize>(
        nb: usize,
        w: [*const u8; R],
        a: [*const u8; T],
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let pairs = nb / 2;
        let tile_bytes = R * nb * wsize(K);
        let pf_lines = if T == 1 && R > 1 {
            tile_bytes.div_ceil(64).div_ceil(pairs.max(1))
        } else {
            0
        };
        let pf_base = w[0].wrapping_add(2 * tile_bytes);
        for bp in 0..pairs {
            for k in 0..pf_lines {
                // A prefetch is only a hint: it never faults, even past the end.
                _mm_prefetch::<_MM_HINT_T1>(
                    pf_base.wrapping_add((bp * pf_lines + k) * 64) as *const i8
                );
            }
            // SAFETY: blocks 2bp, 2bp + 1 < nb are readable (caller).
            unsafe { step512::<K, R, T, false>(2 * bp, &w, &a, &mut acc) };
        }
        if nb % 2 == 1 {
            // SAFETY: block nb - 1 is readable (caller).
            unsafe { step512::<K, R, T, true>(nb - 1, &w, &a, &mut acc) };
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum16(acc[r][t]);
            }
        }
        res
    }

    /// 512-bit tile function for quantized type `K` (see [`crate::tile::MatFn`]).
    ///
    /// # Safety
    /// CPU has AVX-512 F/BW/VL + VNNI; `args.is_valid(...)` as for every `MatFn`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(crate) unsafe fn mat_q512<const K: u8>(args: &MatArgs<'_>, out: &mut [f32]) {
        let nb = args.n / 32;
        match (has_min(K), args.nt) {
            (false, 1) => drive!(tile512, K, nb, args, out, 8, 1),
            (false, _) => drive!(tile512, K, nb, args, out, 4, 4),
            (true, 1) => drive!(qtile512, K, nb, args, out, 8, 1),
            (true, _) => drive!(qtile512, K, nb, args, out, 4, 4),
        }
    }

    /// The 512-bit VNNI tile function for `ty`, if there is one.
    pub(crate) fn mat_for(ty: crate::GgmlType) -> Option<MatFn> {
        use crate::GgmlType as T;
        let f: MatFn = match ty {
            T::Q4_0 => mat_q512::<Q4_0>,
            T::Q4_1 => mat_q512::<Q4_1>,
            T::Q5_0 => mat_q512::<Q5_0>,
            T::Q5_1 => mat_q512::<Q5_1>,
            T::Q8_0 => mat_q512::<Q8_0>,
            T::IQ4_NL => mat_q512::<IQ4NL>,
            _ => return None,
        };
        Some(f)
    }
}
