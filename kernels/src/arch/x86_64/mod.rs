//! x86-64 paths: `avx2.rs` (AVX2 + FMA + F16C) and `avx512.rs`
//! (AVX-512 F/BW/VL, VNNI when present), both instantiating `body.rs`.
//! K-quants: `k_avx2.rs`, `k_avx512.rs`.

#[macro_use]
pub(crate) mod body;
pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod k_avx2;
pub(crate) mod k_avx512;
pub(crate) mod vec;

use crate::table::MatFn;
use crate::GgmlType;

/// The AVX2 tile function for `ty`, if there is one.
pub(crate) fn avx2_mat(ty: GgmlType) -> Option<MatFn> {
    avx2::mat_for(ty).or_else(|| k_avx2::mat(ty))
}

/// The AVX-512 tile function for `ty`, if there is one (VNNI build when
/// the CPU has `avx512vnni`).
pub(crate) fn avx512_mat(ty: GgmlType) -> Option<MatFn> {
    if crate::dispatch::has_avx512_vnni() {
        avx512::vnni::mat_for(ty)
    } else {
        avx512::mat_for(ty)
    }
    .or_else(|| k_avx512::mat(ty))
}
