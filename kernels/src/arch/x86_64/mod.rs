//! x86-64 paths: `avx2.rs` (AVX2 + FMA + F16C) and `avx512.rs`
//! (AVX-512 F/BW/VL, VNNI when present). K-quants: `k_avx2.rs`, `k_avx512.rs`.

use crate::table::MatFn;
use crate::GgmlType;

/// The AVX2 tile function for `ty`, if there is one.
pub(crate) fn avx2_mat(ty: GgmlType) -> Option<MatFn> {
    let _ = ty;
    None
}

/// The AVX-512 tile function for `ty`, if there is one.
pub(crate) fn avx512_mat(ty: GgmlType) -> Option<MatFn> {
    let _ = ty;
    None
}
