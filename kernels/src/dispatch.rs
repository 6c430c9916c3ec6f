//! Instruction-set selection: detected once, overridable by the `PHI_ISA`
//! environment variable (read once) or by [`force`].
//!
//! * `Avx2` means AVX2 + FMA + F16C.
//! * `Avx512` means AVX-512 F + BW + VL (plus everything `Avx2` needs);
//!   VNNI (`vpdpbusd`) is detected separately ([`has_avx512_vnni`]) and used
//!   inside the AVX-512 path when present.
//! * `Neon` means AArch64 Advanced SIMD.
//!
//! The CPU's features are detected once ([`features`]); the process's ISA
//! starts as `crate::Config::from_env` asks (`PHI_ISA`, read once there),
//! else the best one.

use crate::{Isa, KernelError};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

const UNSET: u8 = 0;

static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);

/// What this CPU has, detected once per process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Features {
    /// AVX2 + FMA + F16C.
    pub avx2: bool,
    /// AVX-512 F + BW + VL (and `avx2`).
    pub avx512: bool,
    /// `avx512` and AVX-512 VNNI.
    pub avx512vnni: bool,
    /// `avx2` and AVX-VNNI (VEX `vpdpbusd`).
    pub avxvnni: bool,
    pub neon: bool,
    /// `neon` and FEAT_DotProd (`sdot`).
    pub dotprod: bool,
    /// `dotprod` and FEAT_I8MM (`smmla`).
    pub i8mm: bool,
}

/// The CPU's features (detected on the first call).
pub(crate) fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(|| {
        #[allow(unused_mut)]
        let mut f = Features::default();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            f.avx2 = has!("avx2") && has!("fma") && has!("f16c");
            f.avx512 = f.avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
            f.avx512vnni = f.avx512 && has!("avx512vnni");
            f.avxvnni = f.avx2 && has!("avxvnni");
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            f.neon = has!("neon");
            f.dotprod = f.neon && has!("dotprod");
            f.i8mm = f.dotprod && has!("i8mm");
        }
        f
    })
}

fn encode(isa: Isa) -> u8 {
    match isa {
        Isa::Scalar => 1,
        Isa::Avx2 => 2,
        Isa::Avx512 => 3,
        Isa::Neon => 4,
    }
}

fn decode(v: u8) -> Option<Isa> {
    match v {
        1 => Some(Isa::Scalar),
        2 => Some(Isa::Avx2),
        3 => Some(Isa::Avx512),
        4 => Some(Isa::Neon),
        _ => None,
    }
}

impl Isa {
    /// Every ISA, from the simplest.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// Lower-case name as `PHI_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Isa, KernelError> {
        let t = s.trim();
        Isa::ALL
            .iter()
            .copied()
            .find(|i| i.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| KernelError::UnknownIsa(s.to_string()))
    }
}

/// Whether this CPU can run `isa`.
pub fn is_available(isa: Isa) -> bool {
    let f = features();
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => f.avx2,
        Isa::Avx512 => f.avx512,
        Isa::Neon => f.neon,
    }
}

/// Whether the AVX-512 path can use VNNI (`vpdpbusd`).
pub fn has_avx512_vnni() -> bool {
    features().avx512vnni
}

/// Whether the NEON path can use FEAT_DotProd (`sdot`).
pub fn has_dotprod() -> bool {
    features().dotprod
}

/// The best ISA this CPU supports.
pub fn best() -> Isa {
    [Isa::Avx512, Isa::Avx2, Isa::Neon]
        .into_iter()
        .find(|&i| is_available(i))
        .unwrap_or(Isa::Scalar)
}

/// Parses a `PHI_ISA` value: `Ok(None)` for unset, empty or `auto`; an
/// error for an unknown name or an ISA this CPU lacks.
pub fn parse_request(value: Option<&str>) -> Result<Option<Isa>, KernelError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("auto") => Ok(None),
        Some(v) => {
            let isa: Isa = v.parse()?;
            if is_available(isa) {
                Ok(Some(isa))
            } else {
                Err(KernelError::IsaUnavailable(isa.name()))
            }
        }
    }
}

/// The path in use: [`force`]'s choice, else the ISA
/// `crate::Config::from_env` asks for (`PHI_ISA`), else [`best`].
pub fn active() -> Isa {
    if let Some(isa) = decode(ACTIVE.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = crate::Config::from_env().isa.unwrap_or_else(best);
    // Only the first initialiser wins, so a concurrent `force` is not undone.
    match ACTIVE.compare_exchange(UNSET, encode(isa), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => isa,
        Err(cur) => decode(cur).unwrap_or(isa),
    }
}

/// Use `isa` from now on, process-wide. Error if the CPU lacks it.
pub fn force(isa: Isa) -> Result<(), KernelError> {
    if !is_available(isa) {
        return Err(KernelError::IsaUnavailable(isa.name()));
    }
    ACTIVE.store(encode(isa), Ordering::Relaxed);
    crate::vec::reset();
    Ok(())
}

/// The dot instruction of the 256-bit packed kernels (every type packed
/// for `Isa::Avx2`: all the types AVX-512 VNNI packs);
/// the packed layout is the same for all three and so are the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Avx2Dot {
    /// AVX2 `vpmaddubsw` + `vpmaddwd`.
    Maddubs,
    /// AVX-VNNI: VEX `vpdpbusd` on ymm.
    AvxVnni,
    /// AVX-512 VNNI + VL: EVEX `vpdpbusd` on ymm.
    Avx512Vl,
}

impl Avx2Dot {
    /// Every flavour, in the order of `PHI_AVX2_DOT`'s names.
    pub const ALL: [Avx2Dot; 3] = [Avx2Dot::Maddubs, Avx2Dot::AvxVnni, Avx2Dot::Avx512Vl];

    /// The `PHI_AVX2_DOT` name.
    pub fn name(self) -> &'static str {
        match self {
            Avx2Dot::Maddubs => "maddubs",
            Avx2Dot::AvxVnni => "avxvnni",
            Avx2Dot::Avx512Vl => "avx512vl",
        }
    }

    /// Whether the CPU can run this flavour.
    pub fn available(self) -> bool {
        let f = features();
        f.avx2
            && match self {
                Avx2Dot::Maddubs => true,
                Avx2Dot::AvxVnni => f.avxvnni,
                Avx2Dot::Avx512Vl => f.avx512vnni,
            }
    }

    /// The flavour detection picks: AVX-VNNI when the CPU has it, else
    /// `Maddubs` (AVX-512 VNNI CPUs run the 512-bit packed kernels instead,
    /// unless the ISA is forced to AVX2).
    pub fn detected() -> Avx2Dot {
        if Avx2Dot::AvxVnni.available() {
            Avx2Dot::AvxVnni
        } else {
            Avx2Dot::Maddubs
        }
    }
}

impl std::str::FromStr for Avx2Dot {
    type Err = KernelError;

    /// A `PHI_AVX2_DOT` name (`maddubs`, also `avx2`; `avxvnni`;
    /// `avx512vl`), case-insensitive.
    fn from_str(s: &str) -> Result<Avx2Dot, KernelError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("avx2") {
            return Ok(Avx2Dot::Maddubs);
        }
        Avx2Dot::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| KernelError::UnknownAvx2Dot(t.to_string()))
    }
}

/// The value of `PHI_AVX2_DOT`: `None` for unset or `auto`, an error for an
/// unknown name or a flavour this CPU lacks.
pub fn parse_avx2_dot(value: Option<&str>) -> Result<Option<Avx2Dot>, KernelError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("auto") => Ok(None),
        Some(v) => {
            let d: Avx2Dot = v.parse()?;
            if d.available() {
                Ok(Some(d))
            } else {
                Err(KernelError::IsaUnavailable(d.name()))
            }
        }
    }
}

/// The process's AVX2 dot flavour: the one `crate::Config::from_env` asks
/// for (`PHI_AVX2_DOT`), else [`Avx2Dot::detected`].
pub fn avx2_dot() -> Avx2Dot {
    crate::Config::from_env()
        .avx2_dot
        .unwrap_or_else(Avx2Dot::detected)
}

/// The dot instruction of the NEON packed kernels (the same packed layout
/// and the same results for all three; see `arch/aarch64/neon_dot.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeonDot {
    /// Plain NEON: `smull` / `smlal` + `sadalp` (Cortex-A53/A72, Pi 3/4).
    Plain,
    /// FEAT_DotProd: `sdot` by element.
    Sdot,
    /// FEAT_I8MM: `smmla` tiles for gemm (gemv runs `sdot`).
    Smmla,
}

impl NeonDot {
    /// Every tier, from the simplest, in the order of `PHI_NEON_DOT`'s names.
    pub const ALL: [NeonDot; 3] = [NeonDot::Plain, NeonDot::Sdot, NeonDot::Smmla];

    /// The `PHI_NEON_DOT` name.
    pub fn name(self) -> &'static str {
        match self {
            NeonDot::Plain => "plain",
            NeonDot::Sdot => "sdot",
            NeonDot::Smmla => "smmla",
        }
    }

    /// Whether the CPU can run this tier.
    pub fn available(self) -> bool {
        let f = features();
        match self {
            NeonDot::Plain => f.neon,
            NeonDot::Sdot => f.dotprod,
            NeonDot::Smmla => f.i8mm,
        }
    }

    /// The best tier the CPU runs (`Plain` on CPUs without NEON, which
    /// never reach the NEON kernels).
    pub fn detected() -> NeonDot {
        NeonDot::ALL
            .into_iter()
            .rev()
            .find(|d| d.available())
            .unwrap_or(NeonDot::Plain)
    }
}

impl std::str::FromStr for NeonDot {
    type Err = KernelError;

    /// A `PHI_NEON_DOT` name (`plain`, `sdot`, `smmla`), case-insensitive.
    fn from_str(s: &str) -> Result<NeonDot, KernelError> {
        let t = s.trim();
        NeonDot::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| KernelError::UnknownNeonDot(t.to_string()))
    }
}

/// The value of `PHI_NEON_DOT`: `None` for unset or `auto`, an error for an
/// unknown name or a tier this CPU lacks.
pub fn parse_neon_dot(value: Option<&str>) -> Result<Option<NeonDot>, KernelError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("auto") => Ok(None),
        Some(v) => {
            let d: NeonDot = v.parse()?;
            if d.available() {
                Ok(Some(d))
            } else {
                Err(KernelError::IsaUnavailable(d.name()))
            }
        }
    }
}

/// The process's NEON packed tier: the one `crate::Config::from_env` asks
/// for (`PHI_NEON_DOT`), else [`NeonDot::detected`].
pub fn neon_dot() -> NeonDot {
    crate::Config::from_env()
        .neon_dot
        .unwrap_or_else(NeonDot::detected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
        }
        assert!(matches!(
            "avx9".parse::<Isa>(),
            Err(KernelError::UnknownIsa(_))
        ));
        assert_eq!("AVX2".parse::<Isa>().unwrap(), Isa::Avx2);
    }

    #[test]
    fn env_values() {
        assert!(matches!(parse_request(None), Ok(None)));
        assert!(matches!(parse_request(Some(" auto ")), Ok(None)));
        assert!(matches!(parse_request(Some("")), Ok(None)));
        assert!(matches!(
            parse_request(Some("scalar")),
            Ok(Some(Isa::Scalar))
        ));
        assert!(matches!(
            parse_request(Some("sse9")),
            Err(KernelError::UnknownIsa(_))
        ));
        #[cfg(target_arch = "x86_64")]
        assert!(matches!(
            parse_request(Some("neon")),
            Err(KernelError::IsaUnavailable("neon"))
        ));
    }

    #[test]
    fn avx2_dot_values() {
        assert!(matches!(parse_avx2_dot(None), Ok(None)));
        assert!(matches!(parse_avx2_dot(Some(" AUTO ")), Ok(None)));
        assert!(matches!(
            parse_avx2_dot(Some("vnni")),
            Err(KernelError::UnknownAvx2Dot(_))
        ));
        for d in Avx2Dot::ALL {
            assert_eq!(d.name().parse::<Avx2Dot>().unwrap(), d);
            match parse_avx2_dot(Some(d.name())) {
                Ok(Some(got)) => assert!(got == d && d.available()),
                Err(KernelError::IsaUnavailable(n)) => assert!(n == d.name() && !d.available()),
                other => panic!("{d:?}: {other:?}"),
            }
        }
        assert_eq!("avx2".parse::<Avx2Dot>().unwrap(), Avx2Dot::Maddubs);
        // Detection picks a flavour the CPU runs (when it has AVX2 at all).
        assert!(!is_available(Isa::Avx2) || Avx2Dot::detected().available());
        assert!(!is_available(Isa::Avx2) || avx2_dot().available());
    }

    #[test]
    fn neon_dot_values() {
        assert!(matches!(parse_neon_dot(None), Ok(None)));
        assert!(matches!(parse_neon_dot(Some(" Auto ")), Ok(None)));
        assert!(matches!(
            parse_neon_dot(Some("udot")),
            Err(KernelError::UnknownNeonDot(_))
        ));
        for d in NeonDot::ALL {
            assert_eq!(d.name().parse::<NeonDot>().unwrap(), d);
            match parse_neon_dot(Some(d.name())) {
                Ok(Some(got)) => assert!(got == d && d.available()),
                Err(KernelError::IsaUnavailable(n)) => assert!(n == d.name() && !d.available()),
                other => panic!("{d:?}: {other:?}"),
            }
        }
        // Each tier implies the one below it.
        assert!(!NeonDot::Smmla.available() || NeonDot::Sdot.available());
        assert!(!NeonDot::Sdot.available() || NeonDot::Plain.available());
        assert_eq!(NeonDot::Plain.available(), is_available(Isa::Neon));
        assert!(!is_available(Isa::Neon) || NeonDot::detected().available());
    }

    #[test]
    fn scalar_always_available_and_best_is_available() {
        assert!(is_available(Isa::Scalar));
        assert!(is_available(best()));
        assert!(is_available(active()));
        #[cfg(target_arch = "x86_64")]
        assert!(!is_available(Isa::Neon));
        #[cfg(target_arch = "x86_64")]
        assert!(matches!(
            force(Isa::Neon),
            Err(KernelError::IsaUnavailable("neon"))
        ));
    }
}
