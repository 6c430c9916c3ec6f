//! x86-64 paths: `avx2.rs` (AVX2 + FMA + F16C) and `avx512.rs`
//! (AVX-512 F/BW/VL, VNNI when present), both instantiating `body.rs`.
//! K-quants: `k_avx2.rs`, `k_avx512.rs`.

#[macro_use]
pub(crate) mod body;
pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod k_avx2;
pub(crate) mod k_avx512;
pub(crate) mod packed_avx2;
pub(crate) mod packed_avx512;
pub(crate) mod packed_k_avx512;
pub(crate) mod quant_act;
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
        avx512::wide::mat_for(ty).or_else(|| avx512::vnni::mat_for(ty))
    } else {
        avx512::mat_for(ty)
    }
    .or_else(|| k_avx512::mat(ty))
}

/// Every x86 tile function compiled for `ty` that this CPU can run, named
/// (tests compare each against scalar, including the ones `avx512_mat`
/// would not pick on this CPU, e.g. the non-VNNI AVX-512 build).
pub(crate) fn variants(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    use crate::dispatch::{has_avx512_vnni, is_available};
    use crate::Isa;
    let mut v = Vec::new();
    if is_available(Isa::Avx2) {
        v.extend(avx2::mat_for(ty).map(|f| ("avx2", f)));
    }
    if is_available(Isa::Avx512) {
        v.extend(avx512::mat_for(ty).map(|f| ("avx512", f)));
        if has_avx512_vnni() {
            v.extend(avx512::vnni::mat_for(ty).map(|f| ("avx512-vnni-256", f)));
            v.extend(avx512::wide::mat_for(ty).map(|f| ("avx512-vnni-512", f)));
        }
    }
    v
}

/// The x86 SIMD activation quantizer for activation type `act`, if any
/// (bit-identical to the scalar one; falls back to it on CPUs without AVX2).
pub(crate) fn quantize_act(act: GgmlType) -> Option<crate::table::QuantizeActFn> {
    match act {
        GgmlType::Q8_0 => Some(quant_act::quantize_act_q8_0),
        GgmlType::Q8_1 => Some(quant_act::quantize_act_q8_1),
        GgmlType::F16 => Some(quant_act::quantize_act_f16),
        _ => None,
    }
}
