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
