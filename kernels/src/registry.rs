//! THE kernel registry: for each weight type and instruction set, its
//! activation partner, activation quantizer, dequantizer and tile function
//! ([`ops`]), and where a repacked layout exists its packed group tile
//! ([`packed_ops`]). Built once per ISA on first use (one `OnceLock` table
//! per ISA); every later lookup is an index. The runtime's entry points are
//! [`Config`], [`prepare`] (keep a matrix mapped or repack it: decided here,
//! per type and CPU) and `crate::matmul` on the resulting [`Matrix`].
//!
//! ISA-specific functions come from `crate::arch` (the only other place
//! that looks at `target_arch`); a (type, ISA) pair without a SIMD entry
//! runs the scalar reference, which is the documented fallback, never
//! another type's kernel.

use crate::dispatch::{Avx2Dot, NeonDot};
use crate::formats::{float, iq4, k_quants, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1};
use crate::packed::{PackedWeights, StreamedWeights};
use crate::tile::PackedTileFn;
pub use crate::tile::{DequantizeFn, MatArgs, MatFn, QuantizeActFn};
use crate::{dispatch, GgmlType, Isa, KernelError, Weights};
use std::sync::OnceLock;

/// Everything the matmul driver needs for one weight type on one ISA.
#[derive(Clone, Copy)]
pub struct TypeOps {
    pub ty: GgmlType,
    /// The activation format (ggml's `vec_dot_type`).
    pub act: GgmlType,
    pub quantize_act: QuantizeActFn,
    pub dequantize: DequantizeFn,
    pub mat: MatFn,
    /// The ISA `mat` was built for (may be below the one asked for when a
    /// type has no path for it yet).
    pub isa: Isa,
}

/// Generic scalar tile: one reference row dot per (row, token).
macro_rules! scalar_mat {
    ($name:ident, $dot:path) => {
        fn $name(args: &MatArgs<'_>, out: &mut [f32]) {
            for t in 0..args.nt {
                let a = &args.a[t * args.a_stride..];
                for r in 0..args.nr {
                    let w = &args.w[r * args.w_stride..];
                    out[t * args.nr + r] = $dot(args.n, w, a);
                }
            }
        }
    };
}

scalar_mat!(mat_f32_scalar, float::vec_dot_f32_bytes);
scalar_mat!(mat_f16_scalar, float::vec_dot_f16_bytes);
scalar_mat!(mat_bf16_scalar, float::vec_dot_bf16_bytes);
scalar_mat!(mat_q4_0_scalar, q4_0::vec_dot_bytes);
scalar_mat!(mat_q4_1_scalar, q4_1::vec_dot_bytes);
scalar_mat!(mat_q5_0_scalar, q5_0::vec_dot_bytes);
scalar_mat!(mat_q5_1_scalar, q5_1::vec_dot_bytes);
scalar_mat!(mat_q8_0_scalar, q8_0::vec_dot_bytes);
scalar_mat!(mat_q2_k_scalar, k_quants::vec_dot_q2_k_bytes);
scalar_mat!(mat_q3_k_scalar, k_quants::vec_dot_q3_k_bytes);
scalar_mat!(mat_q4_k_scalar, k_quants::vec_dot_q4_k_bytes);
scalar_mat!(mat_q5_k_scalar, k_quants::vec_dot_q5_k_bytes);
scalar_mat!(mat_q6_k_scalar, k_quants::vec_dot_q6_k_bytes);
scalar_mat!(mat_iq4_nl_scalar, iq4::vec_dot_iq4_nl_bytes);
scalar_mat!(mat_iq4_xs_scalar, iq4::vec_dot_iq4_xs_bytes);

/// The scalar entry for `ty`, or `None` when the kernels do not run it.
fn scalar_ops(ty: GgmlType) -> Option<TypeOps> {
    use GgmlType as T;
    let (act, quantize_act, dequantize, mat): (GgmlType, QuantizeActFn, DequantizeFn, MatFn) =
        match ty {
            T::F32 => (
                T::F32,
                float::quantize_act_f32_bytes,
                float::dequantize_f32_bytes,
                mat_f32_scalar,
            ),
            T::F16 => (
                T::F16,
                float::quantize_act_f16_bytes,
                float::dequantize_f16_bytes,
                mat_f16_scalar,
            ),
            T::BF16 => (
                T::BF16,
                float::quantize_act_bf16_bytes,
                float::dequantize_bf16_bytes,
                mat_bf16_scalar,
            ),
            T::Q4_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q4_0::dequantize_bytes,
                mat_q4_0_scalar,
            ),
            T::Q4_1 => (
                T::Q8_1,
                q8_1::quantize_act_bytes,
                q4_1::dequantize_bytes,
                mat_q4_1_scalar,
            ),
            T::Q5_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q5_0::dequantize_bytes,
                mat_q5_0_scalar,
            ),
            T::Q5_1 => (
                T::Q8_1,
                q8_1::quantize_act_bytes,
                q5_1::dequantize_bytes,
                mat_q5_1_scalar,
            ),
            T::Q8_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q8_0::dequantize_bytes,
                mat_q8_0_scalar,
            ),
            T::Q2_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q2_k_bytes,
                mat_q2_k_scalar,
            ),
            T::Q3_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q3_k_bytes,
                mat_q3_k_scalar,
            ),
            T::Q4_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q4_k_bytes,
                mat_q4_k_scalar,
            ),
            T::Q5_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q5_k_bytes,
                mat_q5_k_scalar,
            ),
            T::Q6_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q6_k_bytes,
                mat_q6_k_scalar,
            ),
            T::IQ4_NL => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                iq4::dequantize_iq4_nl_bytes,
                mat_iq4_nl_scalar,
            ),
            T::IQ4_XS => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                iq4::dequantize_iq4_xs_bytes,
                mat_iq4_xs_scalar,
            ),
            _ => return None,
        };
    Some(TypeOps {
        ty,
        act,
        quantize_act,
        dequantize,
        mat,
        isa: Isa::Scalar,
    })
}

/// Dequantizer for `ty` (scalar; also covers activation-only types).
pub fn dequantizer(ty: GgmlType) -> Option<DequantizeFn> {
    match ty {
        GgmlType::Q8_1 => Some(q8_1::dequantize_bytes),
        GgmlType::Q8_K => Some(k_quants::dequantize_q8_k_bytes),
        _ => scalar_ops(ty).map(|o| o.dequantize),
    }
}

/// Every weight type with a registry entry (the index of the tables).
pub(crate) const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// A packed group tile for one weight type and the ISA it runs on.
#[derive(Clone, Copy)]
pub(crate) struct PackedOps {
    /// The packed kernels' ISA: `Avx512` (with VNNI), `Avx2` or `Neon`.
    pub isa: Isa,
    /// `Avx2`: the 256-bit kernels' dot instruction (`None` otherwise).
    pub dot: Option<Avx2Dot>,
    /// `Neon`: the NEON kernels' dot tier (`None` otherwise).
    pub neon: Option<NeonDot>,
    pub tile: PackedTileFn,
    /// The most tokens one call of `tile` takes.
    pub tile_tokens: usize,
}

/// One (type, ISA) entry.
#[derive(Clone, Copy)]
struct Entry {
    plain: TypeOps,
    packed: Option<PackedOps>,
}

/// The table of `isa` (built on first use; `None` slots: ISA not on this CPU).
fn table(isa: Isa) -> &'static [Option<Entry>; TYPES.len()] {
    static TABLES: [OnceLock<[Option<Entry>; TYPES.len()]>; Isa::ALL.len()] =
        [const { OnceLock::new() }; Isa::ALL.len()];
    let i = Isa::ALL.iter().position(|&x| x == isa).unwrap_or(0);
    TABLES[i].get_or_init(|| {
        core::array::from_fn(|t| {
            let ty = TYPES[t];
            let base = scalar_ops(ty)?;
            if isa == Isa::Scalar || !dispatch::is_available(isa) {
                return Some(Entry {
                    plain: base,
                    packed: None,
                });
            }
            let quantize_act =
                crate::arch::quantize_act(base.act, isa).unwrap_or(base.quantize_act);
            let plain = match crate::arch::mat(ty, isa) {
                Some((mat, got)) => TypeOps {
                    quantize_act,
                    mat,
                    isa: got,
                    ..base
                },
                None => TypeOps {
                    quantize_act,
                    ..base
                },
            };
            // The AVX2 dot flavour and the NEON tier are chosen here, once
            // per process.
            let packed = packed_isa_for(isa).and_then(|pisa| {
                let dot = (pisa == Isa::Avx2).then(dispatch::avx2_dot);
                let neon = (pisa == Isa::Neon).then(dispatch::neon_dot);
                packed_entry(ty, pisa, dot, neon)
            });
            Some(Entry { plain, packed })
        })
    })
}

fn entry(ty: GgmlType, isa: Isa) -> Option<&'static Entry> {
    let t = TYPES.iter().position(|&x| x == ty)?;
    table(isa)[t].as_ref()
}

/// The kernels for weights of `ty` on `isa` (per type the best path of the
/// same CPU family at or below `isa`: AVX-512 → AVX2 → scalar), or `None`
/// if `ty` is unsupported. SIMD functions only when `isa` is available
/// (otherwise the scalar entry).
pub fn ops(ty: GgmlType, isa: Isa) -> Option<TypeOps> {
    entry(ty, isa).map(|e| e.plain)
}

/// The ISA whose packed kernels serve the plain ISA `isa` on this CPU:
/// AVX-512 with VNNI → `Avx512`; AVX-512 without VNNI and AVX2 → `Avx2`;
/// NEON → `Neon`; otherwise none.
pub(crate) fn packed_isa_for(isa: Isa) -> Option<Isa> {
    match isa {
        Isa::Avx512 if dispatch::has_avx512_vnni() => Some(Isa::Avx512),
        Isa::Avx512 | Isa::Avx2 if dispatch::is_available(Isa::Avx2) => Some(Isa::Avx2),
        Isa::Neon if dispatch::is_available(Isa::Neon) => Some(Isa::Neon),
        _ => None,
    }
}

/// Whether the CPU runs the packed kernels of `isa` (`Avx512`: with VNNI).
pub(crate) fn packed_isa_runs(isa: Isa) -> bool {
    match isa {
        Isa::Avx512 => dispatch::has_avx512_vnni(),
        Isa::Avx2 | Isa::Neon => dispatch::is_available(isa),
        Isa::Scalar => false,
    }
}

/// The packed group tile of `ty` for the packed ISA `pisa` (`Avx512` or
/// `Avx2`), `None` when there is none or the CPU cannot run it.
pub(crate) fn packed_ops(ty: GgmlType, pisa: Isa) -> Option<PackedOps> {
    if !packed_isa_runs(pisa) {
        return None;
    }
    entry(ty, pisa)?.packed.filter(|p| p.isa == pisa)
}

/// The packed entry of `ty` for `pisa` and (`Avx2`) the dot flavour `dot`
/// or (`Neon`) the tier `neon`.
fn packed_entry(
    ty: GgmlType,
    pisa: Isa,
    dot: Option<Avx2Dot>,
    neon: Option<NeonDot>,
) -> Option<PackedOps> {
    crate::arch::packed_tile(ty, pisa, dot, neon).map(|(tile, tile_tokens)| PackedOps {
        isa: pisa,
        dot,
        neon,
        tile,
        tile_tokens,
    })
}

/// The `Avx2` packed group tile of `ty` with the dot flavour `dot` instead
/// of the process's (tests, benchmarks, [`Config::avx2_dot`]); `None` when
/// there is none or the CPU cannot run it.
pub(crate) fn packed_ops_with_dot(ty: GgmlType, dot: Avx2Dot) -> Option<PackedOps> {
    if !packed_isa_runs(Isa::Avx2) || !dot.available() {
        return None;
    }
    packed_entry(ty, Isa::Avx2, Some(dot), None)
}

/// The `Neon` packed group tile of `ty` with the tier `tier` instead of the
/// process's (tests, benchmarks, [`Config::neon_dot`]); `None` when there
/// is none or the CPU cannot run it.
pub(crate) fn packed_ops_with_neon(ty: GgmlType, tier: NeonDot) -> Option<PackedOps> {
    if !packed_isa_runs(Isa::Neon) || !tier.available() {
        return None;
    }
    packed_entry(ty, Isa::Neon, None, Some(tier))
}

/// Every SIMD tile function built for `ty` that this CPU can run, with a
/// name (for tests and benches: includes builds `ops` would not choose here).
#[doc(hidden)]
pub fn mat_variants(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    crate::arch::mat_variants(ty)
}

/// How weights are prepared and which kernels run: the process boundary
/// (CLI, `Model::load`) builds it once with [`Config::from_env`]; library
/// callers build it by hand (`Default`: detected ISA, repacking on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The instruction set; `None`: [`dispatch::active`] (detected, or
    /// [`dispatch::force`]d).
    pub isa: Option<Isa>,
    /// Repack the matrices whose type has a faster interleaved layout on
    /// this CPU ([`prepare`]); `false` keeps every matrix mapped.
    pub repack: bool,
    /// With `repack`: the types that have a SIMD group packer on this CPU
    /// (x86: Q8_0, Q4_0, Q4_1, IQ4_NL, Q4_K, Q5_K, Q6_K) are not copied at load but packed
    /// group by group while they are multiplied
    /// ([`crate::packed::StreamedWeights`], the same results), until the
    /// caller makes their copies ([`Matrix::pack_streamed`], e.g. on a
    /// thread of its own: streamed decoding is slower); `false` copies them
    /// at load like the other types. Default: `false` (a caller that never
    /// makes the copies keeps the speed of packed matrices);
    /// [`Config::from_env`]: `true` unless `PHI_STREAM=0`.
    pub stream: bool,
    /// The dot instruction of the 256-bit packed kernels (matrices packed
    /// for `Isa::Avx2`); `None`: the process's ([`dispatch::avx2_dot`]).
    pub avx2_dot: Option<Avx2Dot>,
    /// The dot tier of the NEON packed kernels (matrices packed for
    /// `Isa::Neon`); `None`: the process's ([`dispatch::neon_dot`]).
    pub neon_dot: Option<NeonDot>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            isa: None,
            repack: true,
            stream: false,
            avx2_dot: None,
            neon_dot: None,
        }
    }
}

impl Config {
    /// `PHI_ISA` (`scalar|avx2|avx512|neon|auto`), `PHI_REPACK` (`0`: no
    /// repacking), `PHI_STREAM` (`0`: no streamed packing, [`Config::stream`]), `PHI_AVX2_DOT` (`maddubs|avxvnni|avx512vl|auto`: the
    /// dot instruction of the AVX2 packed kernels) and `PHI_NEON_DOT`
    /// (`plain|sdot|smmla|auto`: the tier of the NEON packed kernels), read
    /// once per process; `PHI_HUGEPAGES=1` also turns on transparent huge
    /// pages for repacked weights ([`crate::packed::set_huge_pages`]). An unknown or unavailable `PHI_ISA`, `PHI_AVX2_DOT`
    /// or `PHI_NEON_DOT` prints one
    /// warning on stderr and means `auto` ([`Config::parse`] and
    /// [`dispatch::parse_avx2_dot`] return the error instead).
    pub fn from_env() -> Config {
        static ENV: OnceLock<Config> = OnceLock::new();
        *ENV.get_or_init(|| {
            let isa = std::env::var("PHI_ISA").ok();
            let repack = std::env::var("PHI_REPACK").ok();
            let dot = std::env::var("PHI_AVX2_DOT").ok();
            let cfg = Config::parse(isa.as_deref(), repack.as_deref()).unwrap_or_else(|e| {
                eprintln!("phi-kernels: ignoring PHI_ISA: {e}; using auto");
                Config::parse(None, repack.as_deref()).unwrap_or_default()
            });
            let avx2_dot = dispatch::parse_avx2_dot(dot.as_deref()).unwrap_or_else(|e| {
                eprintln!("phi-kernels: ignoring PHI_AVX2_DOT: {e}; using auto");
                None
            });
            if std::env::var("PHI_HUGEPAGES").is_ok_and(|v| v.trim() == "1") {
                crate::packed::set_huge_pages(true);
            }
            let neon = std::env::var("PHI_NEON_DOT").ok();
            let neon_dot = dispatch::parse_neon_dot(neon.as_deref()).unwrap_or_else(|e| {
                eprintln!("phi-kernels: ignoring PHI_NEON_DOT: {e}; using auto");
                None
            });
            // `PHI_STREAM=0`: copy every packed type at load.
            let stream = std::env::var("PHI_STREAM").map_or(true, |v| v.trim() != "0");
            Config {
                avx2_dot,
                neon_dot,
                stream,
                ..cfg
            }
        })
    }

    /// The configuration the values of `PHI_ISA` and `PHI_REPACK` ask for:
    /// an error for an unknown ISA name or one this CPU lacks
    /// ([`dispatch::parse_request`]); repacking unless `repack` is `"0"`;
    /// streaming (the front ends' choice; `from_env` reads `PHI_STREAM`);
    /// the process's AVX2 dot flavour.
    pub fn parse(isa: Option<&str>, repack: Option<&str>) -> Result<Config, KernelError> {
        Ok(Config {
            isa: dispatch::parse_request(isa)?,
            repack: repack.is_none_or(|v| v.trim() != "0"),
            stream: true,
            avx2_dot: None,
            neon_dot: None,
        })
    }

    /// The AVX2 dot flavour this configuration runs: its own, or the
    /// process's.
    pub fn avx2_dot(&self) -> Avx2Dot {
        self.avx2_dot.unwrap_or_else(dispatch::avx2_dot)
    }

    /// The ISA this configuration runs: its own, or the process's.
    pub fn isa(&self) -> Isa {
        self.isa.unwrap_or_else(dispatch::active)
    }
}

/// A weight matrix prepared for this CPU by [`prepare`]: either kept where
/// it is (the kernels read the caller's bytes, see [`Matrix::view`]) or
/// repacked into memory it owns.
#[derive(Debug)]
pub struct Matrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// The ISA its kernels run on.
    isa: Isa,
    /// The packed copy: made at load, or later from `streamed`
    /// ([`Matrix::pack_streamed`]).
    packed: OnceLock<PackedWeights>,
    streamed: Option<StreamedWeights>,
}

/// A matrix ready for `crate::matmul`: mapped weights, or packed ones.
#[derive(Debug, Clone, Copy)]
pub enum MatrixRef<'a> {
    /// Weights in the caller's memory, on the given ISA (`None`: the
    /// process's, [`dispatch::active`]).
    Mapped(Weights<'a>, Option<Isa>),
    Packed(&'a PackedWeights),
    /// Packed group by group from the weights (the ones it was made from).
    Streamed(&'a StreamedWeights, Weights<'a>),
}

impl<'a> From<&Weights<'a>> for MatrixRef<'a> {
    fn from(w: &Weights<'a>) -> Self {
        MatrixRef::Mapped(*w, None)
    }
}

impl<'a> From<&'a PackedWeights> for MatrixRef<'a> {
    fn from(p: &'a PackedWeights) -> Self {
        MatrixRef::Packed(p)
    }
}

/// Prepares `w` for `crate::matmul` under `cfg`: repacked when `cfg.repack`
/// and the registry has a packed layout for its type on this CPU (and the
/// shape fits it), else kept mapped. Errors when `w` is inconsistent or
/// its type unsupported.
pub fn prepare(w: &Weights<'_>, cfg: &Config) -> Result<Matrix, KernelError> {
    crate::matmul::check_weights(w)?;
    let isa = cfg.isa();
    if !dispatch::is_available(isa) {
        return Err(KernelError::IsaUnavailable(isa.name()));
    }
    ops(w.ty, isa).ok_or(KernelError::Unsupported(w.ty))?;
    let pisa = packed_isa_for(isa).filter(|_| cfg.repack);
    let mut streamed = match pisa {
        Some(pisa) if cfg.stream => StreamedWeights::new(pisa, w)?,
        _ => None,
    };
    let mut packed = match pisa {
        Some(pisa) if streamed.is_none() => PackedWeights::pack_with_isa(pisa, w)?,
        _ => None,
    };
    let packed_now = |p: Option<PackedWeights>| p.map_or_else(OnceLock::new, OnceLock::from);
    // The configuration's dot flavour (tier) instead of the process's.
    macro_rules! set_dot {
        ($m:expr) => {
            if let Some(m) = $m.as_mut() {
                match (m.isa(), cfg.avx2_dot, cfg.neon_dot) {
                    (Isa::Avx2, Some(dot), _) => m.set_avx2_dot(dot)?,
                    (Isa::Neon, _, Some(tier)) => m.set_neon_dot(tier)?,
                    _ => {}
                }
            }
        };
    }
    set_dot!(packed);
    set_dot!(streamed);
    Ok(Matrix {
        ty: w.ty,
        rows: w.rows,
        cols: w.cols,
        isa,
        packed: packed_now(packed),
        streamed,
    })
}

impl Matrix {
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the matrix owns a repacked copy: the bytes it was prepared
    /// from are no longer read (the caller may release them).
    pub fn is_packed(&self) -> bool {
        self.packed.get().is_some()
    }

    /// Whether the packed kernels multiply it straight from the bytes it
    /// was prepared from, packing each row group on the fly
    /// ([`crate::packed::StreamedWeights`]), until
    /// [`pack_streamed`](Self::pack_streamed) makes the copy: those bytes
    /// are still read.
    pub fn is_streamed(&self) -> bool {
        self.streamed.is_some() && !self.is_packed()
    }

    /// Makes the packed copy of a streamed matrix from `source` (the bytes
    /// it was prepared from), on the current rayon pool: from then on
    /// [`view`](Self::view) hands out the copy and `source` is no longer
    /// read. The results do not change (the copy holds the bytes the
    /// streamed kernels pack on the fly, for the same tiles), so this may
    /// run on another thread while the matrix is in use. `Ok(false)` when
    /// there was nothing to do (not streamed, or already packed).
    pub fn pack_streamed(&self, source: &[u8]) -> Result<bool, KernelError> {
        let Some(s) = &self.streamed else {
            return Ok(false);
        };
        if self.is_packed() {
            return Ok(false);
        }
        let w = Weights::new(self.ty, self.rows, self.cols, source)?;
        let p = PackedWeights::from_streamed(s, &w)?;
        // (Another thread may have won the race: its copy is the same.)
        Ok(self.packed.set(p).is_ok())
    }

    /// The ISA of its kernels (for packed or streamed matrices: the packed
    /// kernels').
    pub fn isa(&self) -> Isa {
        match (self.packed.get(), &self.streamed) {
            (Some(p), _) => p.isa(),
            (None, Some(s)) => s.isa(),
            (None, None) => self.isa,
        }
    }

    /// The matrix for `crate::matmul`. `source` is the bytes it was
    /// prepared from; a packed matrix ignores it (it may be empty).
    pub fn view<'a>(&'a self, source: &'a [u8]) -> Result<MatrixRef<'a>, KernelError> {
        if let Some(p) = self.packed.get() {
            return Ok(MatrixRef::Packed(p));
        }
        let w = Weights::new(self.ty, self.rows, self.cols, source)?;
        Ok(match &self.streamed {
            Some(s) => MatrixRef::Streamed(s, w),
            None => MatrixRef::Mapped(w, Some(self.isa)),
        })
    }
}
