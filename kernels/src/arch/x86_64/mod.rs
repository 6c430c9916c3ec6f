//! x86-64 paths: `avx2.rs` (AVX2 + FMA + F16C) and `avx512.rs`
//! (AVX-512 F/BW/VL, VNNI when present), both instantiating `body.rs`.
//! K-quants: `k_avx2.rs`, `k_avx512.rs`.

/// `for_nt!(nt, f[P..](args))` is `f::<P.., nt>(args)` for a run-time `nt` in 1..=16 (the packed group
/// tiles are instantiated per token count); `for_nt!(@ nt, f[P..](args); 1 2 ..)`
/// for the listed counts only.
macro_rules! for_nt {
    (@call $f:ident [$($p:tt),*] ($($arg:expr),*) $n:literal) => {
        $f::<$($p,)* $n>($($arg),*)
    };
    (@ $nt:expr, $f:ident $ps:tt $args:tt; $($n:literal)*) => {
        match $nt {
            $($n => for_nt!(@call $f $ps $args $n),)*
            _ => debug_assert!(false, "packed tile of {} tokens", $nt),
        }
    };
    ($nt:expr, $f:ident $ps:tt $args:tt) => {
        for_nt!(@ $nt, $f $ps $args; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    };
}

/// `for_nt4!(nt, f[P..](args))`: [`for_nt`] for the 256-bit packed tiles of
/// at most 4 tokens.
macro_rules! for_nt4 {
    ($nt:expr, $f:ident $ps:tt $args:tt) => {
        for_nt!(@ $nt, $f $ps $args; 1 2 3 4)
    };
}

/// `for_each_dot!(m)` invokes `m!(module, Dot type, target features)` for
/// each flavour of the 256-bit packed kernels (`vnni_dot::Dot`), the module
/// names matching `Avx2Dot`'s: `avx2` (Maddubs), `avxvnni`, `avx512vl`.
macro_rules! for_each_dot {
    ($m:ident) => {
        $m!(
            avx2,
            crate::arch::x86_64::vnni_dot::Maddubs,
            "avx2,fma,f16c"
        );
        $m!(
            avxvnni,
            crate::arch::x86_64::vnni_dot::AvxVnni,
            "avx2,fma,f16c,avxvnni"
        );
        $m!(
            avx512vl,
            crate::arch::x86_64::vnni_dot::Avx512Vl,
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
        );
    };
}

/// The K-quant / IQ4 tile functions of one build (`$feat`) and its
/// `mat(ty)` table, from row dots written once per build:
/// `TYPE => dot_n[P..]` takes `dot_n::<P.., T>(nb, w, [a; T]) -> [f32; T]`
/// (4 tokens per weight-row decode, then the rest one by one), and
/// `IQ4_NL => dot` the single-token `dot(nb, w, a) -> f32`.
macro_rules! k_tiles {
    ($feat:literal; IQ4_NL => $dot1:ident; $($ty:ident => $dotn:ident [$($p:tt),*];)*) => {
        $(
            /// Tile function (see [`crate::tile::MatFn`]).
            ///
            /// # Safety
            /// The CPU has this build's features and `args` satisfies
            /// `MatArgs::is_valid` for this type and `out`.
            #[allow(non_snake_case)]
            #[target_feature(enable = $feat)]
            unsafe fn $ty(args: &crate::tile::MatArgs<'_>, out: &mut [f32]) {
                let nb = args.n / crate::formats::k_quants::QK_K;
                let ap = |t: usize| args.a.as_ptr().wrapping_add(t * args.a_stride);
                for r in 0..args.nr {
                    let wp = args.w.as_ptr().wrapping_add(r * args.w_stride);
                    let mut t = 0;
                    while t + 4 <= args.nt {
                        // SAFETY: is_valid guarantees weight row r and
                        // activation rows t..t+4 lie inside the slices.
                        let v = unsafe {
                            $dotn::<$($p,)* 4>(nb, wp, [ap(t), ap(t + 1), ap(t + 2), ap(t + 3)])
                        };
                        for (k, &vk) in v.iter().enumerate() {
                            out[(t + k) * args.nr + r] = vk;
                        }
                        t += 4;
                    }
                    while t < args.nt {
                        // SAFETY: as above, for row t.
                        let v = unsafe { $dotn::<$($p,)* 1>(nb, wp, [ap(t)]) };
                        out[t * args.nr + r] = v[0];
                        t += 1;
                    }
                }
            }
        )*

        /// IQ4_NL tile function (see [`crate::tile::MatFn`]).
        ///
        /// # Safety
        /// The CPU has this build's features and `args` satisfies
        /// `MatArgs::is_valid` for IQ4_NL and `out`.
        #[target_feature(enable = $feat)]
        unsafe fn mat_iq4_nl(args: &crate::tile::MatArgs<'_>, out: &mut [f32]) {
            let nb = args.n / crate::formats::iq4::QK4_NL;
            for t in 0..args.nt {
                for r in 0..args.nr {
                    // SAFETY: is_valid guarantees rows r and t lie inside the
                    // slices (`nb` whole blocks each).
                    let v = unsafe {
                        $dot1(
                            nb,
                            args.w.as_ptr().add(r * args.w_stride),
                            args.a.as_ptr().add(t * args.a_stride),
                        )
                    };
                    out[t * args.nr + r] = v;
                }
            }
        }

        /// This build's tile function for a K-quant / IQ4 weight type.
        pub(crate) fn mat(ty: crate::GgmlType) -> Option<crate::tile::MatFn> {
            Some(match ty {
                $(crate::GgmlType::$ty => $ty,)*
                crate::GgmlType::IQ4_NL => mat_iq4_nl,
                _ => return None,
            })
        }
    };
}

#[macro_use]
pub(crate) mod body;
pub(crate) mod attn;
pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod k_avx2;
pub(crate) mod k_avx512;
pub(crate) mod pack_group;
pub(crate) mod packed_avx2;
pub(crate) mod packed_avx2_iq;
pub(crate) mod packed_avx2_k;
pub(crate) mod packed_avx2_k2;
pub(crate) mod packed_avx2_q8;
pub(crate) mod packed_avx512;
pub(crate) mod packed_k_avx512;
pub(crate) mod quant_act;
pub(crate) mod quant_k_act;
pub(crate) mod vec;
pub(crate) mod vnni_dot;

use crate::dispatch::Avx2Dot;
use crate::tile::{MatFn, PackedTileFn};
use crate::{GgmlType, Isa};

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
pub(crate) fn quantize_act(act: GgmlType) -> Option<crate::tile::QuantizeActFn> {
    match act {
        GgmlType::Q8_0 => Some(quant_act::quantize_act_q8_0),
        GgmlType::Q8_1 => Some(quant_act::quantize_act_q8_1),
        GgmlType::F16 => Some(quant_act::quantize_act_f16),
        GgmlType::Q8_K => Some(quant_k_act::quantize_act_q8_k),
        _ => None,
    }
}

/// The packed group tile of `ty` for `pisa` (`Avx512`: VNNI kernels, every
/// packed type; `Avx2`: the 256-bit kernels of every packed type too, with
/// the dot instruction `dot`) and its most
/// tokens per call. `None` for `Avx2` without a flavour.
pub(crate) fn packed_tile(
    ty: GgmlType,
    pisa: Isa,
    dot: Option<Avx2Dot>,
) -> Option<(PackedTileFn, usize)> {
    // The first of the flavour module `$m`'s 256-bit kernels that has `ty`.
    macro_rules! avx2_tile {
        ($m:ident) => {
            packed_avx2::$m::tile_for(ty)
                .or_else(|| packed_avx2_q8::$m::tile_for(ty))
                .or_else(|| packed_avx2_k::$m::tile_for(ty))
                .or_else(|| packed_avx2_k2::$m::tile_for(ty))
        };
    }
    match (pisa, dot) {
        (Isa::Avx512, _) => packed_avx512::tile_for(ty).or_else(|| packed_k_avx512::tile_for(ty)),
        (Isa::Avx2, Some(Avx2Dot::Maddubs)) => avx2_tile!(avx2),
        (Isa::Avx2, Some(Avx2Dot::AvxVnni)) => avx2_tile!(avxvnni),
        (Isa::Avx2, Some(Avx2Dot::Avx512Vl)) => avx2_tile!(avx512vl),
        _ => None,
    }
}
