//! Repacked (row-interleaved) weights and their matmul: the 32-element
//! types Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL / Q8_0 and the 256-element
//! Q2_K / Q3_K / Q4_K / Q5_K / Q6_K / IQ4_XS.
//!
//! [`PackedWeights::pack`] copies a matrix once (at load) into
//! groups of 16 rows whose 4-byte weight groups are interleaved, so that one
//! AVX-512 VNNI `vpdpbusd` against a broadcast group of 4 activations
//! computes partial sums for 16 rows at once (see
//! `arch/x86_64/packed_avx512.rs`). [`matmul_packed`] then has exactly the
//! semantics of [`crate::matmul`]: activations are quantized to the weight
//! type's partner (Q8_0, Q8_1 or Q8_K) with the same quantizer, every
//! per-block integer dot is exact, and blocks are combined as
//! `isum · (d_w · d_a)` (+ `m_w · s_a`) in f32; only the order of the f32
//! additions differs from the scalar reference.
//!
//! Opt-in: `pack` returns `Ok(None)` when there is no packed path (another
//! type, rows not a multiple of 16, or a CPU / forced ISA without kernels
//! for the type: AVX-512 VNNI and AVX2 pack every type here, AVX2 read
//! from the same layouts by 256-bit kernels whose dot instruction ([`Avx2Dot`]:
//! `vpmaddubsw`, AVX-VNNI or AVX-512 VNNI + VL on ymm) the registry picks
//! once per process; NEON the 32-element types and Q4_K / Q5_K / Q6_K
//! (the same layouts and records), with a [`NeonDot`] tier (`smull`,
//! `sdot` or `smmla`: `arch/aarch64/packed_neon.rs`, `packed_neon_k.rs`)
//! picked the same way); the caller then keeps using `matmul`.
//!
//! 32-element layout (`data`, 64-byte aligned): `groups = rows / 16`,
//! `nb = cols / 32`. First the quants: for group `g`, block `b`, at
//! `(g·nb + b)·QB` (QB = [`l32::quant_bytes`]: 256, Q5_x 320, Q8_0 512),
//! vectors of 64 bytes whose bytes `4r..4r+4` belong to row `16g + r`.
//! Nibble types: vector `k < 4` holds the row's stored `qs` bytes
//! `4k..4k+4` (low nibbles = elements `4k..4k+3`, high nibbles = elements
//! `16+4k..16+4k+3`, both unsigned 0..15); Q5_0 / Q5_1 then one vector of
//! fifth bits (byte `4r + i`, bit `j`: element `4j + i`). Q8_0: vector
//! `j < 8` holds elements `4j..4j+3` as `w + 128` (packed for NEON: as
//! the file's signed `w`). Then, at `scale_off`, for
//! group `g`, block `b`, at `(g·nb + b)·SB` (SB = [`l32::scale_bytes`]), the
//! 16 rows' f16 `d` and, for Q4_1 / Q5_1, the 16 rows' f16 `m`. Same bytes
//! per row as the file (Q5_0 / Q5_1: the same too, 22 / 24).
//!
//! Q4_K / Q5_K / Q6_K / Q3_K / Q2_K / IQ4_XS (activations Q8_K, `nb = cols /
//! 256`): one record of [`k_layout::Q4_K_REC`] / [`k_layout::Q5_K_REC`] /
//! [`k_layout::Q6_K_REC`] / [`k_layout::Q3_K_REC`] / [`k_layout::Q2_K_REC`] /
//! [`k_layout::IQ4_XS_REC`] bytes per group and
//! super-block, group-major, at `(g·nb + b)·rec`; the record layout is
//! described in `arch/x86_64/packed_k_avx512.rs`. It holds the same bits as
//! the file's blocks (scales unpacked to bytes; Q3_K's 3-bit quants
//! regrouped; Q3_K's and IQ4_XS's scales as 6-bit bytes whose spare top bits
//! carry `d`), 148 / 180 / 212 / 112 / 84 / 136 bytes per row and
//! super-block against the file's 144 / 176 / 210 / 110 / 84 / 136.

use crate::formats::iq4::BlockIQ4_XS;
use crate::formats::k_quants::{
    unpack_scales_q3_k, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K,
};
use crate::formats::layout::{Block32, Q8_K_BSUMS};
use crate::formats::packed_layout::{k_layout::*, l32};
use crate::matmul::{aligned_bytes, Scratch};
use crate::pages::PageBuf;
use crate::registry::{self, PackedOps};
use crate::tile::PackedTile;
use crate::{dispatch, matrix_bytes, GgmlType, Isa, KernelError, Weights};

pub use crate::dispatch::{Avx2Dot, NeonDot};
pub use crate::pages::set_huge_pages;
use rayon::prelude::*;

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 16;
/// Multiply-adds below which a call runs on the calling thread.
const SEQ_WORK: usize = 1 << 16;

/// What a packed matrix is, apart from its bytes: shape, kernels and how
/// one row group is packed (shared by [`PackedWeights`], which packs every
/// group once, and [`StreamedWeights`], which packs each group when it is
/// multiplied).
#[derive(Clone, Copy)]
struct Plan {
    ty: GgmlType,
    /// The registry entry it was packed for (its ISA: `Avx512` (VNNI),
    /// `Avx2` or `Neon`).
    ops: PackedOps,
    rows: usize,
    cols: usize,
    /// Blocks per row.
    nb: usize,
    /// Packed quant bytes per block per group (K-quants: the record).
    qb: usize,
    /// Scale bytes per block per group (0: the K-quant records carry
    /// their scales).
    sb: usize,
    packer: Packer,
}

/// How one 16-row group is packed.
#[derive(Clone, Copy)]
enum Packer {
    /// A 32-element type (`l32` code); `flip` is xored into Q8_0's quant
    /// words; `fast` is the SIMD group packer, when the CPU has one (same
    /// bytes).
    L32 {
        kind: u8,
        flip: u32,
        fast: Option<crate::tile::GroupPackFn>,
    },
    /// A K-quant (or IQ4_XS) record per super-block, and the SIMD group
    /// packer when the CPU has one for the type (same bytes).
    K {
        pack_row: PackRecordFn,
        fast: Option<crate::tile::GroupPackFn>,
    },
}

impl Packer {
    /// Whether a SIMD group packer packs the groups (fast enough to stream).
    fn is_fast(&self) -> bool {
        matches!(
            self,
            Packer::L32 { fast: Some(_), .. } | Packer::K { fast: Some(_), .. }
        )
    }
}

impl Plan {
    /// The plan of `w` for the packed kernels of `isa`; `None` when there
    /// are none for its type or shape. `w` was checked (`w_row` bytes per
    /// row).
    fn new(isa: Isa, w: &Weights<'_>) -> Result<Option<Plan>, KernelError> {
        if !registry::packed_isa_runs(isa) {
            return Err(KernelError::IsaUnavailable(match isa {
                Isa::Avx512 => "avx512vnni",
                Isa::Avx2 => "avx2",
                Isa::Neon => "neon",
                _ => "a packed path",
            }));
        }
        let Some(ops) = registry::packed_ops(w.ty, isa) else {
            return Ok(None);
        };
        if w.rows == 0 || w.cols == 0 || !w.rows.is_multiple_of(GROUP_ROWS) {
            return Ok(None);
        }
        let nb = w.cols / w.ty.block_size();
        // The SIMD packers write the x86 layouts.
        let fast = (isa != Isa::Neon)
            .then(|| crate::arch::group_packer(w.ty))
            .flatten();
        let (qb, sb, packer) = match (Block32::from_type(w.ty), k_record(w.ty)) {
            (Some(kind), _) => {
                let kind = kind.code();
                // Q8_0 bytes become unsigned (`+ 128`) for the x86 `u8 × i8`
                // dots; the NEON kernels dot them as the file's signed bytes.
                let flip = if kind == l32::Q8_0 && isa != Isa::Neon {
                    0x8080_8080
                } else {
                    0
                };
                let packer = Packer::L32 { kind, flip, fast };
                (l32::quant_bytes(kind), l32::scale_bytes(kind), packer)
            }
            (None, Some((rec, pack_row))) => (rec, 0, Packer::K { pack_row, fast }),
            (None, None) => return Ok(None),
        };
        let plan = Plan {
            ty: w.ty,
            ops,
            rows: w.rows,
            cols: w.cols,
            nb,
            qb,
            sb,
            packer,
        };
        plan.bytes()?;
        Ok(Some(plan))
    }

    /// The bytes per row of `w` after checking that it is a consistent
    /// matrix of the plan's type and shape (the source of a streamed
    /// matrix).
    fn check_source(&self, w: &Weights<'_>) -> Result<usize, KernelError> {
        let w_row = crate::matmul::check_weights(w)?;
        if (w.ty, w.rows, w.cols) != (self.ty, self.rows, self.cols) {
            return Err(KernelError::Shape(
                "the weights are not the ones the streamed matrix was made from".into(),
            ));
        }
        Ok(w_row)
    }

    fn groups(&self) -> usize {
        self.rows / GROUP_ROWS
    }

    /// Packed bytes of all groups: `(quants, total)`; the scales start at
    /// `quants`.
    fn bytes(&self) -> Result<(usize, usize), KernelError> {
        let overflow = || KernelError::Shape("packed size overflows".into());
        let blocks = self.groups().checked_mul(self.nb).ok_or_else(overflow)?;
        let quants = blocks.checked_mul(self.qb).ok_or_else(overflow)?;
        let total = blocks
            .checked_mul(self.sb)
            .and_then(|s| s.checked_add(quants))
            .ok_or_else(overflow)?;
        Ok((quants, total))
    }

    /// Packs the group whose 16 file rows are `rows` (`w_row` bytes each)
    /// into its `nb·qb` quant bytes `qg` and `nb·sb` scale bytes `sg`; the
    /// SIMD packers prefetch `next` (the next group's rows) meanwhile.
    fn pack_group(&self, rows: &[u8], w_row: usize, qg: &mut [u8], sg: &mut [u8], next: &[u8]) {
        assert!(
            rows.len() >= GROUP_ROWS * w_row
                && w_row >= self.nb * self.ty.type_size()
                && qg.len() >= self.nb * self.qb
                && sg.len() >= self.nb * self.sb
        );
        let src_block = self.ty.type_size();
        match self.packer {
            Packer::K {
                fast: Some(fast), ..
            }
            | Packer::L32 {
                fast: Some(fast), ..
            } => {
                // SAFETY: `fast` came from `arch::group_packer`, which only
                // returns packers whose ISA (AVX2) this CPU runs (the plan's
                // packed ISA runs here, and every x86 packed ISA implies
                // AVX2); the assert above gives 16 rows of nb blocks at
                // `rows`, w_row apart, and nb·qb / nb·sb writable bytes.
                unsafe {
                    fast(
                        rows.as_ptr(),
                        w_row,
                        self.nb,
                        qg.as_mut_ptr(),
                        sg.as_mut_ptr(),
                        next.as_ptr(),
                        next.len(),
                    )
                }
            }
            Packer::K { pack_row, .. } => {
                // Record by record, all 16 rows: each record is written
                // whole before the next (a group's records outgrow L1 at
                // 8192 columns; the 32-element types measured slower that
                // way).
                for (b, out) in qg[..self.nb * self.qb]
                    .chunks_exact_mut(self.qb)
                    .enumerate()
                {
                    for (r, row) in rows.chunks_exact(w_row).take(GROUP_ROWS).enumerate() {
                        pack_row(&row[b * src_block..][..src_block], r, out);
                    }
                }
            }
            Packer::L32 { kind, flip, .. } => {
                let (qb, sb) = (self.qb, self.sb);
                let (m_off, qh_off, qs_off) = l32::src_offsets(kind);
                let q8 = kind == l32::Q8_0;
                for r in 0..GROUP_ROWS {
                    let row = &rows[r * w_row..][..w_row];
                    for (b, blk) in row.chunks_exact(src_block).take(self.nb).enumerate() {
                        let sc = &mut sg[b * sb..][..sb];
                        sc[2 * r..][..2].copy_from_slice(&blk[..2]);
                        if let Some(m) = m_off {
                            sc[32 + 2 * r..][..2].copy_from_slice(&blk[m..m + 2]);
                        }
                        let qs = &blk[qs_off..];
                        let dst = &mut qg[b * qb..][..qb];
                        // Stored bytes 4k..4k+4 (Q8_0: elements 4k..4k+3).
                        for k in 0..if q8 { 8 } else { 4 } {
                            // One 4-byte lane as a word (the byte loop was
                            // the slow part of loading Q8_0).
                            let v = u32::from_ne_bytes(qs[4 * k..4 * k + 4].try_into().unwrap());
                            dst[64 * k + 4 * r..][..4].copy_from_slice(&(v ^ flip).to_ne_bytes());
                        }
                        if let Some(h) = qh_off {
                            // Byte 4r + i, bit j: fifth bit of element 4j + i.
                            let qh =
                                u32::from_le_bytes([blk[h], blk[h + 1], blk[h + 2], blk[h + 3]]);
                            for i in 0..4 {
                                let mut v = 0u8;
                                for j in 0..8 {
                                    v |= (((qh >> (4 * j + i)) & 1) as u8) << j;
                                }
                                dst[256 + 4 * r + i] = v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs the 256-bit kernels with `dot` from now on.
    fn set_avx2_dot(&mut self, dot: Avx2Dot) -> Result<(), KernelError> {
        if self.ops.isa != Isa::Avx2 {
            return Err(KernelError::IsaUnavailable(
                "an AVX2 dot flavour for weights packed for avx512",
            ));
        }
        self.ops = registry::packed_ops_with_dot(self.ty, dot)
            .ok_or(KernelError::IsaUnavailable(dot.name()))?;
        Ok(())
    }

    /// Runs the NEON kernels with `tier` from now on.
    fn set_neon_dot(&mut self, tier: NeonDot) -> Result<(), KernelError> {
        if self.ops.isa != Isa::Neon {
            return Err(KernelError::IsaUnavailable(
                "a NEON dot tier for weights not packed for neon",
            ));
        }
        self.ops = registry::packed_ops_with_neon(self.ty, tier)
            .ok_or(KernelError::IsaUnavailable(tier.name()))?;
        Ok(())
    }
}

/// The accessors [`PackedWeights`] and [`StreamedWeights`] share (their
/// `plan`).
macro_rules! plan_accessors {
    () => {
        /// Weight type (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, Q3_K, Q2_K or IQ4_XS).
        pub fn ty(&self) -> GgmlType {
            self.plan.ty
        }

        /// The ISA of its packed kernels (`Avx512`, `Avx2` or `Neon`).
        pub fn isa(&self) -> Isa {
            self.plan.ops.isa
        }

        /// The dot instruction of the 256-bit kernels (`Some` when
        /// [`isa`](Self::isa) is `Avx2`).
        pub fn avx2_dot(&self) -> Option<Avx2Dot> {
            self.plan.ops.dot
        }

        /// The dot tier of the NEON kernels (`Some` when [`isa`](Self::isa)
        /// is `Neon`).
        pub fn neon_dot(&self) -> Option<NeonDot> {
            self.plan.ops.neon
        }

        /// Runs the NEON kernels with `tier` from now on (tests, benchmarks,
        /// `Config::neon_dot`; the layout is the same for every tier);
        /// `Err(IsaUnavailable)` when the CPU lacks it or the matrix is not
        /// packed for `Isa::Neon`.
        pub fn set_neon_dot(&mut self, tier: NeonDot) -> Result<(), KernelError> {
            self.plan.set_neon_dot(tier)
        }

        /// Runs the 256-bit kernels with `dot` from now on (tests,
        /// benchmarks, `Config::avx2_dot`); `Err(IsaUnavailable)` when the
        /// CPU lacks it or the matrix is not packed for `Isa::Avx2`.
        pub fn set_avx2_dot(&mut self, dot: Avx2Dot) -> Result<(), KernelError> {
            self.plan.set_avx2_dot(dot)
        }

        /// Output rows.
        pub fn rows(&self) -> usize {
            self.plan.rows
        }

        /// Input columns.
        pub fn cols(&self) -> usize {
            self.plan.cols
        }
    };
}

/// A weight matrix repacked for [`matmul_packed`].
pub struct PackedWeights {
    plan: Plan,
    /// Byte offset of the scales in `data`.
    scale_off: usize,
    /// The packed bytes (fresh pages: the first touch of each is in the
    /// parallel packing loop; see `pages`).
    data: PageBuf,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("ty", &self.plan.ty)
            .field("isa", &self.plan.ops.isa)
            .field("rows", &self.plan.rows)
            .field("cols", &self.plan.cols)
            .field("bytes", &self.data.bytes().len())
            .finish()
    }
}

/// The ISA whose packed kernels [`PackedWeights::pack`] uses in this
/// process: `Avx512` with VNNI (every packed type), `Avx2` (every packed
/// type too; also on AVX-512 CPUs without VNNI), `None`
/// on other CPUs or when `PHI_ISA` / `dispatch::force` chose scalar.
pub fn packed_isa() -> Option<Isa> {
    registry::packed_isa_for(dispatch::active())
}

/// Whether this process can run packed kernels for some type ([`packed_isa`]).
pub fn available() -> bool {
    packed_isa().is_some()
}

/// Whether `isa` has packed kernels for `ty` (built into this binary; the
/// CPU may still lack `isa`).
pub fn supports(isa: Isa, ty: GgmlType) -> bool {
    // Every AVX2 dot flavour (NEON tier) covers the same types.
    let dot = (isa == Isa::Avx2).then_some(Avx2Dot::Maddubs);
    let neon = (isa == Isa::Neon).then_some(NeonDot::Plain);
    crate::arch::packed_tile(ty, isa, dot, neon).is_some()
}

impl PackedWeights {
    /// Repacks `w` for [`packed_isa`]. `Ok(None)` when there is no packed
    /// path for this type, shape or CPU (see the module docs); `Err` when `w`
    /// is inconsistent.
    pub fn pack(w: &Weights<'_>) -> Result<Option<PackedWeights>, KernelError> {
        crate::matmul::check_weights(w)?;
        match packed_isa() {
            Some(isa) => Self::pack_with_isa(isa, w),
            None => Ok(None),
        }
    }

    /// [`pack`](Self::pack) for the kernels of `isa` (`Avx512` or `Avx2`),
    /// whatever `PHI_ISA` says (for tests and benchmarks).
    /// `Err(IsaUnavailable)` when the CPU cannot run them.
    pub fn pack_with_isa(isa: Isa, w: &Weights<'_>) -> Result<Option<PackedWeights>, KernelError> {
        crate::matmul::check_weights(w)?;
        match Plan::new(isa, w)? {
            Some(plan) => Self::pack_plan(plan, w).map(Some),
            None => Ok(None),
        }
    }

    /// The copy of the streamed matrix `s` whose file bytes are `w`: the
    /// bytes its groups are packed into on the fly, for the same kernels
    /// (dot flavour included), so [`matmul_packed`] on it gives bit for
    /// bit what [`matmul_streamed`] gives.
    pub fn from_streamed(
        s: &StreamedWeights,
        w: &Weights<'_>,
    ) -> Result<PackedWeights, KernelError> {
        s.plan.check_source(w)?;
        Self::pack_plan(s.plan, w)
    }

    /// Packs every group of `w` (checked) by `plan`, on the current pool.
    fn pack_plan(plan: Plan, w: &Weights<'_>) -> Result<PackedWeights, KernelError> {
        let w_row = crate::matmul::check_weights(w)?;
        let (scale_off, len) = plan.bytes()?;
        let mut data = PageBuf::zeroed(len);
        let (quants, scales) = data.bytes_mut().split_at_mut(scale_off);
        let (gq, gs) = (plan.nb * plan.qb, plan.nb * plan.sb);
        let group_rows = GROUP_ROWS * w_row;
        let pack = |g: usize, qg: &mut [u8], sg: &mut [u8]| {
            let next = w.data.get((g + 1) * group_rows..).unwrap_or_default();
            let next = &next[..next.len().min(group_rows)];
            plan.pack_group(&w.data[g * group_rows..][..group_rows], w_row, qg, sg, next);
        };
        if gs == 0 {
            quants
                .par_chunks_mut(gq)
                .enumerate()
                .for_each(|(g, qg)| pack(g, qg, &mut []));
        } else {
            quants
                .par_chunks_mut(gq)
                .zip(scales.par_chunks_mut(gs))
                .enumerate()
                .for_each(|(g, (qg, sg))| pack(g, qg, sg));
        }
        Ok(PackedWeights {
            plan,
            scale_off,
            data,
        })
    }

    plan_accessors!();

    /// The packed bytes (64-byte aligned; layout in the module docs).
    pub fn data(&self) -> &[u8] {
        self.data.bytes()
    }
}

/// A matrix multiplied by the packed kernels straight from the file's
/// bytes: each 16-row group is packed into a small per-thread buffer (L2
/// sized) right before its tiles run, by an AVX2 group packer that keeps
/// up with memory. Nothing is copied at load and the weights stay resident
/// once (in the page cache), and the results are bit for bit those of
/// [`PackedWeights`] (the same packed bytes reach the same tiles).
///
/// Only where a SIMD group packer exists ([`StreamedWeights::new`]: on
/// x86, Q8_0, Q4_0, Q4_1, IQ4_NL, Q4_K, Q5_K and Q6_K); the other types
/// (Q5_0, Q5_1, Q3_K, Q2_K, IQ4_XS, every NEON layout) are packed once at
/// load.
#[derive(Clone, Copy)]
pub struct StreamedWeights {
    plan: Plan,
}

impl std::fmt::Debug for StreamedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedWeights")
            .field("ty", &self.plan.ty)
            .field("isa", &self.plan.ops.isa)
            .field("rows", &self.plan.rows)
            .field("cols", &self.plan.cols)
            .finish()
    }
}

impl StreamedWeights {
    /// `w` multiplied by the packed kernels of `isa` with groups packed on
    /// the fly; `Ok(None)` when there is no packed path or no SIMD group
    /// packer for its type, shape or CPU; `Err` as
    /// [`PackedWeights::pack_with_isa`].
    pub fn new(isa: Isa, w: &Weights<'_>) -> Result<Option<StreamedWeights>, KernelError> {
        crate::matmul::check_weights(w)?;
        Ok(Plan::new(isa, w)?
            .filter(|p| p.packer.is_fast())
            .map(|plan| StreamedWeights { plan }))
    }

    plan_accessors!();
}

/// The file block at the start of `blk` (any alignment).
fn block<B: bytemuck::Pod>(blk: &[u8]) -> B {
    bytemuck::pod_read_unaligned(&blk[..core::mem::size_of::<B>()])
}

/// Row `r`'s share of a Q4_K record from its block.
fn pack_q4_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockQ4_K = block(blk);
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&b.qs[4 * v..][..4]);
    }
    q4_k_side(blk, r, out);
}

/// Row `r`'s share of a Q5_K record from its block: the Q4_K record of the
/// same d, dmin, scales and low nibbles, then the qh vectors.
fn pack_q5_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockQ5_K = block(blk);
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&b.qs[4 * v..][..4]);
    }
    q4_k_side(blk, r, out);
    for k in 0..8 {
        out[Q5K_QH + 64 * k + 4 * r..][..4].copy_from_slice(&b.qh[4 * k..][..4]);
    }
}

/// Row `r`'s share of a Q6_K record from its block (ql, qh, i8 scales, d).
fn pack_q6_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockQ6_K = block(blk);
    // ql vector (2n + h)·8 + k holds ql[64n + 32h + 4k..], i.e. ql[4v..].
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&b.ql[4 * v..][..4]);
    }
    // qh vector 8n + k holds qh[32n + 4k..], i.e. qh[4v..].
    for v in 0..16 {
        out[Q6K_QH + 64 * v + 4 * r..][..4].copy_from_slice(&b.qh[4 * v..][..4]);
    }
    q6_k_side(blk, r, out);
}

/// Row `r`'s share of a Q3_K record from its block (hmask, qs, 12 scale
/// bytes, f16 d).
fn pack_q3_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockQ3_K = block(blk);
    let (hmask, qs) = (&b.hmask, &b.qs);
    // Element i = 128n + 32j + l (l < 32): bits 2j..2j+2 of qs[32n + l] and
    // bit 4n + j of hmask[l]; u = low | high << 2 is q + 4, in 0..8.
    let u = |i: usize| {
        let (n, j, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = (qs[32 * n + l] >> (2 * j)) & 3;
        let high = (hmask[l] >> (4 * n + j)) & 1;
        low | (high << 2)
    };
    // Vectors 3t, 3t+1, 3t+2 (x, y, z) hold the quant vectors k = 0..4 of
    // sub-blocks 2t (a_k: elements 32t + 4k..+4) and 2t+1 (b_k: elements
    // 32t + 16 + 4k..+4).
    for t in 0..8 {
        for c in 0..4 {
            let a = |k: usize| u(32 * t + 4 * k + c);
            let b = |k: usize| u(32 * t + 16 + 4 * k + c);
            let x = a(0) | b(0) << 3 | (a(3) & 3) << 6;
            let y = a(1) | b(1) << 3 | (b(3) & 3) << 6;
            let z = a(2) | b(2) << 3 | (a(3) >> 2) << 6 | (b(3) >> 2) << 7;
            for (k, v) in [x, y, z].into_iter().enumerate() {
                out[64 * (3 * t + k) + 4 * r + c] = v;
            }
        }
    }
    let sc = unpack_scales_q3_k(&b.scales);
    pack_scales6(&sc, b.d.to_bits(), true, r, &mut out[Q3K_SC..]);
}

/// Row `r`'s share of a Q2_K record from its block (16 scale|min bytes,
/// qs, f16 d, f16 dmin).
fn pack_q2_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockQ2_K = block(blk);
    for v in 0..16 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&b.qs[4 * v..][..4]);
    }
    for (g, &s) in b.scales.iter().enumerate() {
        out[Q2K_SC + 64 * (g / 4) + 4 * r + PAIRED[g % 4]] = s;
    }
    out[Q2K_D + 2 * r..][..2].copy_from_slice(&b.d.to_le_bytes());
    out[Q2K_DMIN + 2 * r..][..2].copy_from_slice(&b.dmin.to_le_bytes());
}

/// Row `r`'s share of an IQ4_XS record from its block (f16 d, u16
/// scales_h, 4 scales_l bytes, qs).
fn pack_iq4_xs(blk: &[u8], r: usize, out: &mut [u8]) {
    let b: BlockIQ4_XS = block(blk);
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&b.qs[4 * v..][..4]);
    }
    let mut sc = [0i8; 8];
    for (ib, s) in sc.iter_mut().enumerate() {
        *s = crate::formats::iq4::iq4_xs_scale(&b, ib) as i8;
    }
    pack_scales6(&sc, b.d.to_bits(), false, r, &mut out[IQ4XS_SC..]);
}

/// Lane byte of sub-block `4q + i` in the paired scale layouts: the i16
/// halves of a lane hold sub-blocks (4q, 4q+1) in their low bytes and
/// (4q+2, 4q+3) in their high bytes.
const PAIRED: [usize; 4] = [0, 2, 1, 3];

/// Row `r`'s 6-bit signed scales (−32..32) and f16 `d` into scale vectors
/// `[quad q][row][4]`: sub-block `4q + i` at byte `i` of the row's lane, or
/// (`paired`) at byte `[0, 2, 1, 3][i]`, so that the i16 halves of a lane
/// hold the pairs (4q, 4q+1) and (4q+2, 4q+3); the top 2 bits of lane byte
/// `c` hold bits `4c + 2q..+2` of `d` in quads 0 and 1.
fn pack_scales6(sc: &[i8], d: u16, paired: bool, r: usize, out: &mut [u8]) {
    for (g, &s) in sc.iter().enumerate() {
        let i = g % 4;
        let c = if paired { PAIRED[i] } else { i };
        out[64 * (g / 4) + 4 * r + c] = s as u8 & 0x3F;
    }
    for q in 0..2 {
        for c in 0..4 {
            out[64 * q + 4 * r + c] |= (((d >> (4 * c + 2 * q)) & 3) as u8) << 6;
        }
    }
}

/// Writes row `r`'s share of a record from one file block.
type PackRecordFn = fn(blk: &[u8], r: usize, out: &mut [u8]);

/// The record bytes and packer of a K-quant (or IQ4_XS) type, `None` for
/// the others.
fn k_record(ty: GgmlType) -> Option<(usize, PackRecordFn)> {
    Some(match ty {
        GgmlType::Q4_K => (Q4_K_REC, pack_q4_k),
        GgmlType::Q5_K => (Q5_K_REC, pack_q5_k),
        GgmlType::Q6_K => (Q6_K_REC, pack_q6_k),
        GgmlType::Q3_K => (Q3_K_REC, pack_q3_k),
        GgmlType::Q2_K => (Q2_K_REC, pack_q2_k),
        GgmlType::IQ4_XS => (IQ4_XS_REC, pack_iq4_xs),
        _ => return None,
    })
}

/// The side words that follow each activation row (see `k_layout`): per
/// block, for the 32-element types `(d_a: f32, −bias·Σa: i32)` or, with a
/// min, `(d_a, s_a)`; per super-block for the K-quants the activation sums
/// their kernels fold in.
#[derive(Clone, Copy)]
enum Sides {
    Block32(Block32),
    /// Q4_K / Q5_K: pairs of 32-element sums as i16.
    PairSums,
    /// Q6_K: `−32·bsum` per 16 elements.
    Q6K,
    /// Q3_K: `−4·bsum` (odd sub-blocks `−32·bsum`).
    Q3K,
    /// IQ4_XS: `−128·Σa` per 32 elements.
    Iq4Xs,
    /// Q2_K reads its mins' activation sums from the Q8_K bsums.
    None,
}

impl Sides {
    fn of(ty: GgmlType) -> Option<Sides> {
        if let Some(b) = Block32::from_type(ty) {
            return Some(Sides::Block32(b));
        }
        Some(match ty {
            GgmlType::Q4_K | GgmlType::Q5_K => Sides::PairSums,
            GgmlType::Q6_K => Sides::Q6K,
            GgmlType::Q3_K => Sides::Q3K,
            GgmlType::IQ4_XS => Sides::Iq4Xs,
            GgmlType::Q2_K => Sides::None,
            _ => return None,
        })
    }

    /// (activation block bytes, side bytes per block).
    fn sizes(self) -> (usize, usize) {
        match self {
            Sides::Block32(b) => (b.act_bytes(), 8),
            Sides::PairSums => (A_BLOCK, Q4K_SIDE),
            Sides::Q6K => (A_BLOCK, Q6K_SIDE),
            Sides::Q3K => (A_BLOCK, Q3K_SIDE),
            Sides::Iq4Xs => (A_BLOCK, IQ4XS_SIDE),
            Sides::None => (A_BLOCK, 0),
        }
    }

    /// Writes the side words `s` of one activation block `blk`.
    fn write(self, blk: &[u8], s: &mut [u8]) {
        let bsum = |i: usize| {
            i16::from_le_bytes([blk[Q8_K_BSUMS + 2 * i], blk[Q8_K_BSUMS + 2 * i + 1]]) as i32
        };
        match self {
            Sides::PairSums => {
                // Pair p: Σa over sub-blocks 2p and 2p+1 (|·| ≤ 32·128, an i16).
                for (pair, o) in s.chunks_exact_mut(4).enumerate() {
                    let lo = (bsum(4 * pair) + bsum(4 * pair + 1)) as i16;
                    let hi = (bsum(4 * pair + 2) + bsum(4 * pair + 3)) as i16;
                    o[..2].copy_from_slice(&lo.to_le_bytes());
                    o[2..].copy_from_slice(&hi.to_le_bytes());
                }
            }
            Sides::Q6K => {
                for (g, o) in s.chunks_exact_mut(4).enumerate() {
                    o.copy_from_slice(&(-32 * bsum(g)).to_le_bytes());
                }
            }
            Sides::Q3K => {
                // Odd sub-blocks' quants reach the kernel times 8.
                for (g, o) in s.chunks_exact_mut(4).enumerate() {
                    let off = if g % 2 == 0 { -4 } else { -32 };
                    o.copy_from_slice(&(off * bsum(g)).to_le_bytes());
                }
            }
            Sides::Iq4Xs => {
                for (ib, o) in s.chunks_exact_mut(4).enumerate() {
                    let sum = bsum(2 * ib) + bsum(2 * ib + 1);
                    o.copy_from_slice(&(-128 * sum).to_le_bytes());
                }
            }
            Sides::Block32(kind) => {
                // (d_a, −bias·Σa) or, with a min, (d_a, s_a); Q8_0 / Q8_1
                // blocks start with f16 d, then (Q8_1) f16 s.
                let f16 = |i: usize| half::f16::from_le_bytes([blk[i], blk[i + 1]]).to_f32();
                s[..4].copy_from_slice(&f16(0).to_le_bytes());
                if kind.has_min() {
                    s[4..].copy_from_slice(&f16(2).to_le_bytes());
                } else {
                    let qs = &blk[crate::formats::layout::Q8_0_QS..];
                    let sum: i32 = qs.iter().map(|&v| v as i8 as i32).sum();
                    s[4..].copy_from_slice(&(-kind.bias() * sum).to_le_bytes());
                }
            }
            Sides::None => {}
        }
    }
}

/// `y[t * p.rows + r] = Σ_c W[r, c] · x[t * p.cols + c]` for `t < n_tokens`:
/// the semantics of [`crate::matmul`] on the weights `p` was packed from.
/// Runs on the current rayon pool; nothing allocates once `scratch` has
/// grown to the largest call.
pub fn matmul_packed(
    p: &PackedWeights,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let source = Source::Packed {
        data: p.data(),
        scale_off: p.scale_off,
    };
    run(&p.plan, source, x, n_tokens, y, scratch)
}

/// [`matmul_packed`] on the streamed matrix `s` whose file bytes are `w`
/// (the weights `s` was made from): bit for bit the result of
/// [`matmul_packed`] on `PackedWeights::pack_with_isa(s.isa(), w)`. Each
/// worker thread keeps one group buffer (the packed bytes of 16 rows),
/// grown once.
pub fn matmul_streamed(
    s: &StreamedWeights,
    w: &Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let w_row = s.plan.check_source(w)?;
    run(&s.plan, Source::File { w, w_row }, x, n_tokens, y, scratch)
}

/// Where the packed groups come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Packed once: quants then, at `scale_off`, scales.
    Packed { data: &'a [u8], scale_off: usize },
    /// Packed per group, on the fly, from the file's rows.
    File { w: &'a Weights<'a>, w_row: usize },
}

thread_local! {
    /// The group buffer of [`Source::File`] on this thread.
    static GROUP: std::cell::RefCell<Vec<crate::matmul::Line>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The packed matmul of `plan` reading its groups from `source`.
fn run(
    plan: &Plan,
    source: Source<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let ops = plan.ops;
    if !registry::packed_isa_runs(ops.isa)
        || ops.dot.is_some_and(|d| !d.available())
        || ops.neon.is_some_and(|d| !d.available())
    {
        return Err(KernelError::IsaUnavailable("the packed weights' ISA"));
    }
    let (ty, rows, cols, nb) = (plan.ty, plan.rows, plan.cols, plan.nb);
    crate::matmul::check_io(rows, cols, n_tokens, x.len(), y.len())?;
    if n_tokens == 0 {
        return Ok(());
    }
    // The activation quantizer of the weight type (Q8_0, Q8_1 or Q8_K).
    let act_ops = registry::ops(ty, ops.isa).ok_or(KernelError::Unsupported(ty))?;
    let sides = Sides::of(ty).ok_or(KernelError::Unsupported(ty))?;
    let (a_block, side) = sides.sizes();
    let (a_row, _) = matrix_bytes(act_ops.act, 1, cols)?;
    let side_off = a_row.next_multiple_of(64);
    let a_stride = side_off + (nb * side).next_multiple_of(64);
    let a_total = a_stride
        .checked_mul(n_tokens)
        .ok_or_else(|| KernelError::Shape("activations overflow".into()))?;

    let Scratch { act, out } = scratch;
    let abuf = aligned_bytes(act, a_total);
    let quantize = |o: &mut [u8], xt: &[f32]| {
        let (q, side_words) = o.split_at_mut(side_off);
        (act_ops.quantize_act)(xt, &mut q[..a_row]);
        // (No side words: `side_words` is empty and the loop does not run.)
        for (blk, s) in q[..a_row]
            .chunks_exact(a_block)
            .zip(side_words.chunks_exact_mut(side.max(1)))
        {
            sides.write(blk, s);
        }
    };
    let threads = rayon::current_num_threads().max(1);
    let work = rows.saturating_mul(cols).saturating_mul(n_tokens);
    let sequential = threads == 1 || work < SEQ_WORK;
    if !sequential && n_tokens > 1 {
        abuf.par_chunks_mut(a_stride)
            .zip(x.par_chunks(cols))
            .for_each(|(o, xt)| quantize(o, xt));
    } else {
        for (o, xt) in abuf.chunks_mut(a_stride).zip(x.chunks(cols)) {
            quantize(o, xt);
        }
    }
    let a: &[u8] = abuf;

    let groups = plan.groups();
    let chunk_groups = if sequential {
        groups
    } else {
        groups.div_ceil(threads * 4).max(1)
    };
    let chunk_rows = chunk_groups * GROUP_ROWS;
    let (gq, gs) = (nb * plan.qb, nb * plan.sb);
    let PackedOps {
        tile: tile_fn,
        tile_tokens,
        ..
    } = ops;
    // All tokens' tiles of group `gi` of a chunk (16 rows at `o[.. + gi·16]`)
    // from its packed quants `qs` (nb·qb bytes) and scales `sc` (nb·sb).
    let group_tiles = |qs: &[u8], sc: &[u8], gi: usize, o: &mut [f32]| {
        let nr = o.len() / n_tokens;
        assert!(qs.len() >= gq && sc.len() >= gs && (gi + 1) * GROUP_ROWS <= nr);
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = (n_tokens - t0).min(tile_tokens);
            let tile = PackedTile {
                nb,
                qs: qs.as_ptr(),
                sc: sc.as_ptr(),
                a: a[t0 * a_stride..].as_ptr(),
                a_stride,
                side_off,
                out: o[t0 * nr + gi * GROUP_ROWS..].as_mut_ptr(),
                out_stride: nr,
            };
            // SAFETY: the CPU runs ops.isa (checked above; the plan took the
            // entry from the registry for it). `qs` has the group's nb·qb
            // quant bytes and `sc` (32-element types) its nb·sb scale bytes
            // (asserted), laid out as `Plan::pack_group` writes them; tokens
            // t0..t0+nt < n_tokens each have a full activation row (nb
            // activation blocks, nb·side side bytes at side_off) in `a`
            // (a_total = a_stride·n_tokens); o[t·nr + gi·16..][..16] lies
            // inside `o` (len nr·n_tokens, gi·16 + 16 <= nr) for t < t0 + nt;
            // and 1 <= nt <= the entry's tile_tokens.
            unsafe { tile_fn(&tile, nt) };
            t0 += nt;
        }
    };
    // Computes rows c·chunk_rows.. for all tokens into o[t * nr + r].
    let run_chunk = |c: usize, o: &mut [f32]| {
        let nr = o.len() / n_tokens;
        debug_assert!(nr.is_multiple_of(GROUP_ROWS) && nr * n_tokens == o.len());
        let g0 = c * chunk_groups;
        match source {
            Source::Packed { data, scale_off } => {
                for gi in 0..nr / GROUP_ROWS {
                    let g = g0 + gi;
                    let qs = &data[g * gq..][..gq];
                    let sc = &data[scale_off + g * gs..][..gs];
                    group_tiles(qs, sc, gi, o);
                }
            }
            Source::File { w, w_row } => GROUP.with_borrow_mut(|buf| {
                // Quants, then the scales at a 64-byte boundary.
                let sc_off = gq.next_multiple_of(64);
                let bytes = aligned_bytes(buf, sc_off + gs);
                let group_bytes = GROUP_ROWS * w_row;
                for gi in 0..nr / GROUP_ROWS {
                    let g = g0 + gi;
                    let (qs, sc) = bytes.split_at_mut(sc_off);
                    let src = &w.data[g * group_bytes..][..group_bytes];
                    let next = w.data.get((g + 1) * group_bytes..).unwrap_or_default();
                    let next = &next[..next.len().min(group_bytes)];
                    plan.pack_group(src, w_row, qs, sc, next);
                    group_tiles(qs, sc, gi, o);
                }
            }),
        }
    };

    crate::matmul::run_chunks(out, y, rows, n_tokens, chunk_rows, sequential, run_chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plan of `ty` for the first x86 packed ISA this CPU runs.
    fn x86_plan(w: &Weights<'_>) -> Option<Plan> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|&isa| registry::packed_isa_runs(isa))
            .and_then(|isa| Plan::new(isa, w).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The SIMD group packers write the scalar packer's bytes, for any
        /// block bytes (scales included) and row stride.
        #[test]
        fn simd_group_packer_writes_the_scalar_bytes(
            ty in prop::sample::select(vec![
                GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::IQ4_NL,
                GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
            ]),
            nb in 1usize..12,
            seed in any::<u64>(),
        ) {
            let cols = ty.block_size() * nb;
            let w_row = ty.type_size() * nb;
            let mut state = seed | 1;
            let bytes: Vec<u8> = (0..GROUP_ROWS * w_row)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let w = Weights::new(ty, GROUP_ROWS, cols, &bytes).unwrap();
            let Some(plan) = x86_plan(&w) else {
                return Ok(()); // no x86 packed ISA on this CPU
            };
            prop_assert!(plan.packer.is_fast(), "{ty}: no SIMD group packer");
            let packer = match plan.packer {
                Packer::L32 { kind, flip, .. } => Packer::L32 { kind, flip, fast: None },
                Packer::K { pack_row, .. } => Packer::K { pack_row, fast: None },
            };
            let scalar = Plan { packer, ..plan };
            let (gq, gs) = (nb * plan.qb, nb * plan.sb);
            // (The same fill: the records' padding is written by neither.)
            let mut a = (vec![0xAAu8; gq], vec![0xAAu8; gs]);
            let mut b = a.clone();
            // Prefetching past the end of the rows is a hint: hand it the
            // bytes just after them (here none) like the matmul does.
            plan.pack_group(&bytes, w_row, &mut a.0, &mut a.1, &[]);
            scalar.pack_group(&bytes, w_row, &mut b.0, &mut b.1, &[]);
            prop_assert_eq!(a, b);
        }
    }

    /// Types without a SIMD group packer are not streamed.
    #[test]
    fn only_types_with_a_group_packer_stream() {
        for ty in [
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q3_K,
            GgmlType::Q2_K,
            GgmlType::IQ4_XS,
        ] {
            let cols = 256;
            let bytes = vec![0u8; GROUP_ROWS * ty.bytes_for(cols as u64).unwrap() as usize];
            let w = Weights::new(ty, GROUP_ROWS, cols, &bytes).unwrap();
            for isa in [Isa::Avx512, Isa::Avx2, Isa::Neon] {
                if registry::packed_isa_runs(isa) {
                    assert!(
                        StreamedWeights::new(isa, &w).unwrap().is_none(),
                        "{ty} {isa:?}"
                    );
                }
            }
        }
    }
}
