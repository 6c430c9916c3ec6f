//! AVX2 + FMA + F16C kernels for F32/F16/BF16 and Q4_0…Q8_0 (bodies in
//! `body.rs`). gemv: 4 rows per activation load; gemm: 2 rows × 4 tokens.

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16,
};

/// `src` + Σ of 4 `u8 × i8` products per i32 lane via `vpmaddubsw` +
/// `vpmaddwd` (exact while each byte pair sums below 2¹⁵: |u| ≤ 128, |a| ≤ 127).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_maddubs(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
    _mm256_add_epi32(
        src,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)),
    )
}

super::body::x86_kernels!("avx2,fma,f16c", dot_maddubs, 2, 4, 4);
