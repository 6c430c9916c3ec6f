//! The one place where the 256-bit packed kernels (`packed_avx2_k.rs`,
//! `packed_avx2_q8.rs`) differ between ISAs: the integer dot instruction.
//!
//! [`Dot`] has three implementations, each instantiated by the kernels
//! inside a `#[target_feature]` function of its own ISA (the trait's
//! methods are `#[inline(always)]` and carry no features themselves, as in
//! memchr's generic vector code):
//!
//! * [`Maddubs`] (AVX2): `vpmaddubsw` of the unsigned weights with the
//!   broadcast activations, as many 4-element groups summed in i16 as the
//!   weights' range allows without saturating (`|Σ| ≤ N·2·wmax·127 < 2^15`),
//!   then one `vpmaddwd` that applies the (i16) per-row scale and widens to
//!   i32 in the same instruction.
//! * [`AvxVnni`] (AVX-VNNI, VEX `vpdpbusd` on ymm: Intel Alder Lake and
//!   later client cores, AMD Zen 5; also Zen 4 EPYC): one `vpdpbusd` per
//!   group into an i32 dot, then one `vpmulld` by the scale.
//! * [`Avx512Vl`] (AVX-512 VNNI + VL): the same as [`AvxVnni`] with the EVEX
//!   encoding (`_mm256_dpbusd_epi32`), for CPUs with AVX-512 VNNI but not
//!   AVX-VNNI and so that both VNNI encodings are tested where both exist.
//!
//! All three give the same exact integers (the weights are unsigned and
//! below `wmax`, the activations in −127..=127), so the kernels' results are
//! bit-identical across implementations.

use core::arch::x86_64::*;

/// The dot instructions of one 256-bit ISA. Every method requires the CPU
/// to have that ISA (the kernels call them only from functions compiled for
/// it).
pub(crate) trait Dot {
    /// Whether [`Dot::dot_q8`] adds `128·Σa` (it dots the stored `w + 128`
    /// directly), so that the caller starts from the driver's `−128·Σa`.
    const Q8_BIASED: bool;

    /// The scale operand of [`Dot::dot_scaled`] for 8 rows whose scales are
    /// the i32 lanes of `sc` (`|sc| < 2^15`).
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    // Q4_K..Q6_K take their scales with `scale_u8` / `scale_pairs`; Q2_K /
    // Q3_K (packed_avx2_k2.rs) build the scale lanes themselves.
    unsafe fn scale(sc: __m256i) -> __m256i;

    /// `acc + sc·Σ_{k<N} Σ_{i<4} w[k][4r + i]·a[4k + i]` in each i32 lane
    /// `r` (row `r`), for unsigned weight bytes `≤ WMAX` and the `4N`
    /// activation bytes (i8, −127..=127) at `a`; `sc` from [`Dot::scale`].
    ///
    /// # Safety
    /// The CPU has the implementation's ISA; `4N` bytes at `a` are readable.
    unsafe fn dot_scaled<const N: usize, const WMAX: i32>(
        acc: __m256i,
        w: &[__m256i; N],
        a: *const u8,
        sc: __m256i,
    ) -> __m256i;

    /// `acc + Σ_{k<N} Σ_{i<4} w[k][4r + i]·a[4k + i]`: [`Dot::dot_scaled`]
    /// with unit scales.
    ///
    /// # Safety
    /// As [`Dot::dot_scaled`].
    unsafe fn dot<const N: usize, const WMAX: i32>(
        acc: __m256i,
        w: &[__m256i; N],
        a: *const u8,
    ) -> __m256i;

    /// `acc + x[2r]·y[2r] + x[2r+1]·y[2r+1]` over the i16 halves of each
    /// i32 lane `r` (`vpmaddwd` + add, or `vpdpwssd`).
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    unsafe fn dot_i16(acc: __m256i, x: __m256i, y: __m256i) -> __m256i;

    /// `acc + Σ_{k<8} Σ_{i<4} u[k][4r + i]·a[4k + i]` with the Q8_0 weights
    /// stored as `u = w + 128`: the biased dot when [`Dot::Q8_BIASED`],
    /// else the dot of the signed `w` itself.
    ///
    /// # Safety
    /// The CPU has the implementation's ISA; 32 bytes at `a` are readable.
    unsafe fn dot_q8(acc: __m256i, u: &[__m256i; 8], a: *const u8) -> __m256i;

    /// Partial sums a kernel keeps apart per scaled sum when it has few of
    /// them in flight (one token): `vpdpbusd`'s latency (4–5 cycles) would
    /// otherwise bound the chain; `vpmaddubsw`'s i16 add chain has latency 1.
    const CHAINS: usize;

    /// How many [`Dot::step`]s (over all chains together) one partial sum
    /// takes before [`Dot::close`] for weights `≤ wmax`
    /// (`|Σ| ≤ n·2·wmax·127 < 2^15` for the i16 sums of `vpmaddubsw`).
    fn max_steps(wmax: i32) -> usize;

    /// `part + Σ_{i<4} w[4r + i]·a[i]` in lane `r` (i16 pair sums or i32):
    /// one 4-element group of 8 rows, weights unsigned and `≤ wmax`, the 4
    /// activation bytes (i8, −127..=127) at `a`. A partial sum starts at
    /// zero.
    ///
    /// # Safety
    /// The CPU has the implementation's ISA; 4 bytes at `a` are readable.
    unsafe fn step(part: __m256i, w: __m256i, a: *const u8) -> __m256i;

    /// Two partial sums of the same scale as one (within
    /// [`Dot::max_steps`] together).
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    unsafe fn merge(p0: __m256i, p1: __m256i) -> __m256i;

    /// `acc + sc·part` per i32 lane, `sc` from [`Dot::scale`],
    /// [`Dot::scale_u8`] or [`Dot::scale_pairs`].
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    unsafe fn close(acc: __m256i, part: __m256i, sc: __m256i) -> __m256i;

    /// The scale operand of 8 rows from their 8 unsigned scale bytes at
    /// `p`.
    ///
    /// # Safety
    /// The CPU has the implementation's ISA; 8 bytes at `p` are readable.
    unsafe fn scale_u8(p: *const u8) -> __m256i;

    /// The scale operands `[s0, s1]` of 8 rows whose scales are the i16
    /// pairs `(s0_r, s1_r)` of lane `r`.
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    unsafe fn scale_pairs(sp: __m256i) -> [__m256i; 2];
}

/// The 4 activation bytes at `a` in every i32 lane.
///
/// # Safety
/// 4 bytes at `a` are readable; the CPU has AVX.
#[inline(always)]
unsafe fn bcast4(a: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes and AVX.
    unsafe { _mm256_set1_epi32(core::ptr::read_unaligned(a as *const i32)) }
}

/// AVX2: `vpmaddubsw` summed in i16, `vpmaddwd` by the scale.
#[derive(Clone, Copy)]
pub(crate) struct Maddubs;

impl Dot for Maddubs {
    const Q8_BIASED: bool = false;

    #[inline(always)]
    unsafe fn scale(sc: __m256i) -> __m256i {
        // SAFETY: AVX2 (caller). Both i16 halves of lane r = sc_r.
        unsafe { _mm256_blend_epi16::<0xAA>(sc, _mm256_slli_epi32::<16>(sc)) }
    }

    #[inline(always)]
    unsafe fn dot_scaled<const N: usize, const WMAX: i32>(
        acc: __m256i,
        w: &[__m256i; N],
        a: *const u8,
        sc: __m256i,
    ) -> __m256i {
        // Groups per i16 sum: each vpmaddubsw lane is ≤ 2·WMAX·127.
        let chunk = (i16::MAX as i32 / (2 * WMAX * 127)).max(1) as usize;
        let mut acc = acc;
        let mut k0 = 0;
        while k0 < N {
            let k1 = (k0 + chunk).min(N);
            // SAFETY: AVX2 (caller); 4 bytes at a + 4k are readable for k < N.
            unsafe {
                let mut s16 = _mm256_maddubs_epi16(w[k0], bcast4(a.add(4 * k0)));
                for (k, wk) in w.iter().enumerate().take(k1).skip(k0 + 1) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*wk, bcast4(a.add(4 * k))));
                }
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, sc));
            }
            k0 = k1;
        }
        acc
    }

    #[inline(always)]
    unsafe fn dot<const N: usize, const WMAX: i32>(
        acc: __m256i,
        w: &[__m256i; N],
        a: *const u8,
    ) -> __m256i {
        // SAFETY: forwarded contract; unit i16 scales.
        unsafe { Self::dot_scaled::<N, WMAX>(acc, w, a, _mm256_set1_epi16(1)) }
    }

    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(x, y)) }
    }

    #[inline(always)]
    unsafe fn dot_q8(acc: __m256i, u: &[__m256i; 8], a: *const u8) -> __m256i {
        // Signed × signed by sign transfer: |w| · (a with w's sign), each
        // vpmaddubsw lane ≤ 2·127·127 (one group per i16 sum).
        // SAFETY: AVX2 (caller); 32 bytes at `a`.
        unsafe {
            let bias = _mm256_set1_epi8(-128);
            let ones = _mm256_set1_epi16(1);
            let mut acc = acc;
            for (k, uk) in u.iter().enumerate() {
                let ws = _mm256_xor_si256(*uk, bias);
                let sa = _mm256_sign_epi8(bcast4(a.add(4 * k)), ws);
                let p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), sa);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
            }
            acc
        }
    }

    const CHAINS: usize = 1;

    #[inline(always)]
    fn max_steps(wmax: i32) -> usize {
        (i16::MAX as i32 / (2 * wmax * 127)).max(1) as usize
    }

    #[inline(always)]
    unsafe fn step(part: __m256i, w: __m256i, a: *const u8) -> __m256i {
        // SAFETY: AVX2 (caller); 4 bytes at `a`.
        unsafe { _mm256_add_epi16(part, _mm256_maddubs_epi16(w, bcast4(a))) }
    }

    #[inline(always)]
    unsafe fn merge(p0: __m256i, p1: __m256i) -> __m256i {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_add_epi16(p0, p1) }
    }

    #[inline(always)]
    unsafe fn close(acc: __m256i, part: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: AVX2 (caller). Both i16 halves of lane r carry sc_r.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(part, sc)) }
    }

    #[inline(always)]
    unsafe fn scale_u8(p: *const u8) -> __m256i {
        // SAFETY: AVX2 (caller); 8 bytes at `p`. The 8 bytes in every
        // quadword; byte r to both i16 halves of lane r (0x80: zero).
        unsafe {
            let v = _mm256_set1_epi64x(core::ptr::read_unaligned(p as *const i64));
            let z = -128i8;
            #[rustfmt::skip]
            let idx = _mm256_setr_epi8(
                0, z, 0, z, 1, z, 1, z, 2, z, 2, z, 3, z, 3, z,
                4, z, 4, z, 5, z, 5, z, 6, z, 6, z, 7, z, 7, z,
            );
            _mm256_shuffle_epi8(v, idx)
        }
    }

    #[inline(always)]
    unsafe fn scale_pairs(sp: __m256i) -> [__m256i; 2] {
        // SAFETY: AVX2 (caller). Copy the low (high) i16 of each lane over
        // the other half.
        unsafe {
            #[rustfmt::skip]
            let lo = _mm256_setr_epi8(
                0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
            );
            let hi = _mm256_add_epi8(lo, _mm256_set1_epi8(2));
            [_mm256_shuffle_epi8(sp, lo), _mm256_shuffle_epi8(sp, hi)]
        }
    }
}

/// Defines a VNNI implementation of [`Dot`] from its two instructions.
macro_rules! vnni_dot {
    ($name:ident, $dpbusd:ident, $dpwssd:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy)]
        pub(crate) struct $name;

        impl Dot for $name {
            const Q8_BIASED: bool = true;

            #[inline(always)]
            unsafe fn scale(sc: __m256i) -> __m256i {
                sc
            }

            #[inline(always)]
            unsafe fn dot_scaled<const N: usize, const WMAX: i32>(
                acc: __m256i,
                w: &[__m256i; N],
                a: *const u8,
                sc: __m256i,
            ) -> __m256i {
                // SAFETY: the ISA (caller); 4 bytes at a + 4k for k < N.
                // Two dependency chains: vpdpbusd's latency (4-5 cycles)
                // would otherwise bound a tile of few tokens.
                unsafe {
                    let mut s = [_mm256_setzero_si256(); 2];
                    for (k, wk) in w.iter().enumerate() {
                        s[k % 2] = $dpbusd(s[k % 2], *wk, bcast4(a.add(4 * k)));
                    }
                    let s = _mm256_add_epi32(s[0], s[1]);
                    _mm256_add_epi32(acc, _mm256_mullo_epi32(s, sc))
                }
            }

            #[inline(always)]
            unsafe fn dot<const N: usize, const WMAX: i32>(
                acc: __m256i,
                w: &[__m256i; N],
                a: *const u8,
            ) -> __m256i {
                // SAFETY: the ISA (caller); 4 bytes at a + 4k for k < N.
                unsafe {
                    let mut s = [acc, _mm256_setzero_si256()];
                    for (k, wk) in w.iter().enumerate() {
                        s[k % 2] = $dpbusd(s[k % 2], *wk, bcast4(a.add(4 * k)));
                    }
                    _mm256_add_epi32(s[0], s[1])
                }
            }

            #[inline(always)]
            unsafe fn dot_i16(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
                // SAFETY: the ISA (caller).
                unsafe { $dpwssd(acc, x, y) }
            }

            #[inline(always)]
            unsafe fn dot_q8(acc: __m256i, u: &[__m256i; 8], a: *const u8) -> __m256i {
                // SAFETY: the ISA (caller); 32 bytes at `a`.
                unsafe { Self::dot::<8, 255>(acc, u, a) }
            }

            const CHAINS: usize = 2;

            #[inline(always)]
            fn max_steps(_wmax: i32) -> usize {
                usize::MAX
            }

            #[inline(always)]
            unsafe fn step(part: __m256i, w: __m256i, a: *const u8) -> __m256i {
                // SAFETY: the ISA (caller); 4 bytes at `a`.
                unsafe { $dpbusd(part, w, bcast4(a)) }
            }

            #[inline(always)]
            unsafe fn merge(p0: __m256i, p1: __m256i) -> __m256i {
                // SAFETY: the ISA (caller).
                unsafe { _mm256_add_epi32(p0, p1) }
            }

            #[inline(always)]
            unsafe fn close(acc: __m256i, part: __m256i, sc: __m256i) -> __m256i {
                // SAFETY: the ISA (caller).
                unsafe { _mm256_add_epi32(acc, _mm256_mullo_epi32(part, sc)) }
            }

            #[inline(always)]
            unsafe fn scale_u8(p: *const u8) -> __m256i {
                // SAFETY: the ISA (caller); 8 bytes at `p`.
                unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
            }

            #[inline(always)]
            unsafe fn scale_pairs(sp: __m256i) -> [__m256i; 2] {
                // SAFETY: the ISA (caller). Sign-extend each i16 half.
                unsafe {
                    [
                        _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(sp)),
                        _mm256_srai_epi32::<16>(sp),
                    ]
                }
            }
        }
    };
}

vnni_dot!(
    AvxVnni,
    _mm256_dpbusd_avx_epi32,
    _mm256_dpwssd_avx_epi32,
    "AVX-VNNI: VEX `vpdpbusd` / `vpdpwssd` on ymm."
);
vnni_dot!(
    Avx512Vl,
    _mm256_dpbusd_epi32,
    _mm256_dpwssd_epi32,
    "AVX-512 VNNI + VL: EVEX `vpdpbusd` / `vpdpwssd` on ymm."
);
