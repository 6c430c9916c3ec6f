//! AVX-512 (F/BW/VL) kernels: the `body.rs` bodies with 32 vector
//! registers (gemm tile 4 rows × 4 tokens), and with VNNI `vpdpbusd` for the
//! byte dots when the CPU has `avx512vnni` (`vnni` submodule).

use core::arch::x86_64::{__m256i, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16};

/// `vpmaddubsw` + `vpmaddwd` byte dot (no VNNI).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn dot_maddubs(u: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1))
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
    use core::arch::x86_64::{__m256i, _mm256_dpbusd_epi32, _mm256_setzero_si256};

    /// Σ of 4 `u8 × i8` products per i32 lane in one `vpdpbusd` (exact).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dot_vnni(u: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a)
    }

    crate::arch::x86_64::body::x86_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_vnni,
        4,
        4,
        4
    );
}
