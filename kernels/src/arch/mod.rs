//! Per-architecture SIMD bodies, and the one place (with the registry,
//! `crate::registry`, which calls these) that chooses by `target_arch`.
//! Everything here is `unsafe` and reached only through the registry's
//! entries, which check the CPU first.

use crate::tile::{MatFn, PackedTileFn, QuantizeActFn};
use crate::vec::VecOps;
use crate::{GgmlType, Isa};

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;

/// The best tile function for `ty` at or below `isa` (same CPU family) and
/// the ISA it was built for; `None`: scalar. `isa` is available.
pub(crate) fn mat(ty: GgmlType, isa: Isa) -> Option<(MatFn, Isa)> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = (isa == Isa::Avx512)
            .then(|| x86_64::avx512_mat(ty).map(|f| (f, Isa::Avx512)))
            .flatten();
        let avx2 = || {
            matches!(isa, Isa::Avx512 | Isa::Avx2)
                .then(|| x86_64::avx2_mat(ty).map(|f| (f, Isa::Avx2)))
                .flatten()
        };
        avx512.or_else(avx2)
    }
    #[cfg(target_arch = "aarch64")]
    {
        (isa == Isa::Neon)
            .then(|| aarch64::neon_mat(ty).map(|f| (f, Isa::Neon)))
            .flatten()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (ty, isa);
        None
    }
}

/// A SIMD activation quantizer for activation type `act` on `isa`
/// (bit-identical to the scalar one), if there is one.
pub(crate) fn quantize_act(act: GgmlType, isa: Isa) -> Option<QuantizeActFn> {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx512 | Isa::Avx2) {
        return x86_64::quantize_act(act);
    }
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon {
        return aarch64::quantize_act(act);
    }
    let _ = (act, isa);
    None
}

/// Every SIMD tile built for `ty` that this CPU can run, named.
pub(crate) fn mat_variants(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    #[cfg(target_arch = "x86_64")]
    {
        x86_64::variants(ty)
    }
    #[cfg(target_arch = "aarch64")]
    {
        aarch64::variants(ty)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = ty;
        Vec::new()
    }
}

/// The packed group tile of `ty` for the packed ISA `pisa` and the most
/// tokens it takes per call, if there is one: `dot` picks the flavour of
/// the x86 `Avx2` kernels, `neon` the tier of the `Neon` ones.
pub(crate) fn packed_tile(
    ty: GgmlType,
    pisa: Isa,
    dot: Option<crate::dispatch::Avx2Dot>,
    neon: Option<crate::dispatch::NeonDot>,
) -> Option<(PackedTileFn, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = neon;
        x86_64::packed_tile(ty, pisa, dot)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let _ = dot;
        match (pisa, neon) {
            (Isa::Neon, Some(tier)) => aarch64::packed_tile(ty, tier),
            _ => None,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (ty, pisa, dot, neon);
        None
    }
}

/// The SIMD packer of one 16-row group of `ty` into the x86 packed layout
/// (the same bytes as the scalar packer), when this CPU runs one.
pub(crate) fn group_packer(ty: GgmlType) -> Option<crate::tile::GroupPackFn> {
    #[cfg(target_arch = "x86_64")]
    if crate::dispatch::is_available(Isa::Avx2) {
        return x86_64::pack_group::group_packer(ty);
    }
    let _ = ty;
    None
}

/// The vec-op table of `isa` (an available ISA), if it has SIMD bodies.
pub(crate) fn vec_ops(isa: Isa) -> Option<VecOps> {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return Some(x86_64::vec::OPS_512),
        Isa::Avx2 => return Some(x86_64::vec::OPS),
        _ => {}
    }
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon {
        return Some(aarch64::vec::OPS);
    }
    let _ = isa;
    None
}
