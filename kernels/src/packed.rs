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
//! type, rows not a multiple of 16, no AVX-512 VNNI, or the
//! active ISA forced below AVX-512); the caller then keeps using `matmul`.
//!
//! 32-element layout (`data`, 64-byte aligned): `groups = rows / 16`,
//! `nb = cols / 32`. First the quants: for group `g`, block `b`, at
//! `(g·nb + b)·QB` (QB = [`l32::quant_bytes`]: 256, Q5_x 320, Q8_0 512),
//! vectors of 64 bytes whose bytes `4r..4r+4` belong to row `16g + r`.
//! Nibble types: vector `k < 4` holds the row's stored `qs` bytes
//! `4k..4k+4` (low nibbles = elements `4k..4k+3`, high nibbles = elements
//! `16+4k..16+4k+3`, both unsigned 0..15); Q5_0 / Q5_1 then one vector of
//! fifth bits (byte `4r + i`, bit `j`: element `4j + i`). Q8_0: vector
//! `j < 8` holds elements `4j..4j+3` as `w + 128`. Then, at `scale_off`, for
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

use crate::formats::k_quants::{unpack_scales_mins_k4, unpack_scales_q3_k, K_SCALE_SIZE, QK_K};
use crate::matmul::{aligned_bytes, Line, Scratch};
use crate::{dispatch, matrix_bytes, table, GgmlType, Isa, KernelError, Weights};
use rayon::prelude::*;

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 16;
/// Elements per block (Q4_0 / Q8_0).
const QK: usize = 32;
/// Multiply-adds below which a call runs on the calling thread.
const SEQ_WORK: usize = 1 << 16;
/// Tokens per register tile of the K-quant kernels (16 measured ~5 % faster
/// than 8 with `examples/packed_cycles.rs`).
const TOKENS_PER_TILE_K: usize = 16;

/// Layout of the packed 32-element types (shared with the kernels).
pub(crate) mod l32 {
    use crate::GgmlType;

    /// The packed 32-element types (the const parameter of [`group_tile`]).
    pub(crate) const Q4_0: u8 = 0;
    pub(crate) const Q8_0: u8 = 1;
    pub(crate) const Q4_1: u8 = 2;
    pub(crate) const Q5_0: u8 = 3;
    pub(crate) const Q5_1: u8 = 4;
    pub(crate) const IQ4_NL: u8 = 5;

    /// Packed quant bytes of one block of one 16-row group.
    pub(crate) const fn quant_bytes(kind: u8) -> usize {
        match kind {
            Q8_0 => 512,
            Q5_0 | Q5_1 => 320,
            _ => 256,
        }
    }

    /// Whether `kind` has a per-block min (`m_w`, activations Q8_1).
    pub(crate) const fn has_min(kind: u8) -> bool {
        matches!(kind, Q4_1 | Q5_1)
    }

    /// Scale bytes of one block of one 16-row group: 16 f16 `d`, then (with a
    /// min) 16 f16 `m`.
    pub(crate) const fn scale_bytes(kind: u8) -> usize {
        if has_min(kind) {
            64
        } else {
            32
        }
    }

    /// Bytes of one activation block: Q8_1 (f16 d, f16 s, 32 × i8) for the
    /// types with a min, Q8_0 (f16 d, 32 × i8) otherwise.
    pub(crate) const fn act_block(kind: u8) -> usize {
        if has_min(kind) {
            36
        } else {
            34
        }
    }

    /// Tokens per register tile: Q8_0 8 (its 8 weight vectors per block leave
    /// fewer registers), the nibble types 16 (measured with
    /// `examples/packed_speed.rs`).
    pub(crate) const fn tile_tokens(kind: u8) -> usize {
        if kind == Q8_0 {
            8
        } else {
            16
        }
    }

    /// Whether the AVX2 packed kernels cover `kind` (the nibble types: Q8_0's
    /// and IQ4_NL's unsigned bytes would saturate `vpmaddubsw`).
    pub(crate) const fn avx2_kind(kind: u8) -> bool {
        matches!(kind, Q4_0 | Q4_1 | Q5_0 | Q5_1)
    }

    /// Tokens per register tile of the AVX2 kernels (16 ymm registers).
    pub(crate) const AVX2_TILE_TOKENS: usize = 2;

    /// The packed kind of a 32-element type, `None` for the others.
    pub(crate) fn kind(ty: GgmlType) -> Option<u8> {
        Some(match ty {
            GgmlType::Q4_0 => Q4_0,
            GgmlType::Q8_0 => Q8_0,
            GgmlType::Q4_1 => Q4_1,
            GgmlType::Q5_0 => Q5_0,
            GgmlType::Q5_1 => Q5_1,
            GgmlType::IQ4_NL => IQ4_NL,
            _ => return None,
        })
    }

    /// Offsets in a file block of `kind` (18 / 20 / 22 / 24 / 34 bytes):
    /// `(m, qh, qs)` (`d` is always at 0).
    pub(crate) const fn src_offsets(kind: u8) -> (Option<usize>, Option<usize>, usize) {
        match kind {
            Q4_1 => (Some(2), None, 4),
            Q5_0 => (None, Some(2), 6),
            Q5_1 => (Some(2), Some(4), 8),
            _ => (None, None, 2),
        }
    }

    /// The bias of the unsigned packed weights (removed through the
    /// activations' side words); 0 for the types with a min.
    pub(crate) const fn bias(kind: u8) -> i32 {
        match kind {
            Q4_0 => 8,
            Q5_0 => 16,
            Q8_0 | IQ4_NL => 128,
            _ => 0,
        }
    }
}

/// Record layout of the packed K-quants (shared with the kernels).
pub(crate) mod k_layout {
    /// Packed bytes of one super-block of one 16-row group.
    pub(crate) const Q4_K_REC: usize = 2368;
    pub(crate) const Q6_K_REC: usize = 3392;
    /// Q5_K: the Q4_K record, then 8 qh vectors.
    pub(crate) const Q5_K_REC: usize = 2880;
    pub(crate) const Q5K_QH: usize = 2368;
    /// Q4_K: scales `[j][r]` u8, mins `[p][r][2]` u8, f16 d, f16 dmin.
    pub(crate) const Q4K_SC: usize = 2048;
    pub(crate) const Q4K_MIN: usize = 2176;
    pub(crate) const Q4K_D: usize = 2304;
    pub(crate) const Q4K_DMIN: usize = 2336;
    /// Q6_K: qh vectors, scales `[p][r][2]` i8, f16 d.
    pub(crate) const Q6K_QH: usize = 2048;
    pub(crate) const Q6K_SC: usize = 3072;
    pub(crate) const Q6K_D: usize = 3328;
    /// Q3_K: 24 vectors of 3-bit quants, then 4 scale vectors
    /// `[quad][row][4]` (6-bit signed scales; their top bits hold f16 d).
    pub(crate) const Q3_K_REC: usize = 1792;
    pub(crate) const Q3K_SC: usize = 1536;
    /// Q2_K: 16 quant vectors (the file's `qs`), scale|min<<4 bytes
    /// `[quad][row][4]`, f16 d, f16 dmin.
    pub(crate) const Q2_K_REC: usize = 1344;
    pub(crate) const Q2K_SC: usize = 1024;
    pub(crate) const Q2K_D: usize = 1280;
    pub(crate) const Q2K_DMIN: usize = 1312;
    /// IQ4_XS: 32 nibble vectors (the file's `qs`), then 2 scale vectors
    /// `[quad][row][4]` (6-bit signed scales; their top bits hold f16 d).
    pub(crate) const IQ4_XS_REC: usize = 2176;
    pub(crate) const IQ4XS_SC: usize = 2048;
    /// Bytes of one Q8_K activation block (f32 d, 256 × i8, 16 × i16 bsums).
    pub(crate) const A_BLOCK: usize = 292;
    /// Side bytes per super-block per token: Q4_K 4 i32 (pairs of
    /// 32-element activation sums as i16), Q6_K 16 i32 (`−32·bsum`),
    /// Q3_K 16 i32 (`−4·bsum`, odd sub-blocks `−32·bsum`).
    pub(crate) const Q4K_SIDE: usize = 16;
    pub(crate) const Q6K_SIDE: usize = 64;
    pub(crate) const Q3K_SIDE: usize = 64;
    /// IQ4_XS: 8 i32 (`−128·Σa` per 32-element sub-block).
    pub(crate) const IQ4XS_SIDE: usize = 32;
}
use k_layout::*;

/// A weight matrix repacked for [`matmul_packed`].
pub struct PackedWeights {
    ty: GgmlType,
    /// The kernels it was packed for: `Avx512` (VNNI) or `Avx2`.
    isa: Isa,
    rows: usize,
    cols: usize,
    /// Blocks per row.
    nb: usize,
    /// Packed bytes per block per group.
    qb: usize,
    /// Byte offset of the scales in `data`.
    scale_off: usize,
    /// Total packed bytes (a prefix of `data`).
    len: usize,
    data: Vec<Line>,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.len)
            .finish()
    }
}

/// The ISA whose packed kernels [`PackedWeights::pack`] uses in this
/// process: `Avx512` with VNNI (every packed type), `Avx2` (the nibble types
/// Q4_0 / Q4_1 / Q5_0 / Q5_1; also on AVX-512 CPUs without VNNI), `None`
/// on other CPUs or when `PHI_ISA` / `dispatch::force` chose scalar.
pub fn packed_isa() -> Option<Isa> {
    match dispatch::active() {
        Isa::Avx512 if dispatch::has_avx512_vnni() => Some(Isa::Avx512),
        Isa::Avx512 | Isa::Avx2 => Some(Isa::Avx2),
        _ => None,
    }
}

/// Whether this process can run packed kernels for some type ([`packed_isa`]).
pub fn available() -> bool {
    packed_isa().is_some()
}

/// Whether `isa` has packed kernels for `ty`.
pub fn supports(isa: Isa, ty: GgmlType) -> bool {
    let k = is_k(ty);
    match isa {
        Isa::Avx512 => k || l32::kind(ty).is_some(),
        Isa::Avx2 => l32::kind(ty).is_some_and(l32::avx2_kind),
        _ => false,
    }
}

/// Whether the CPU can run `isa`'s packed kernels (whatever `PHI_ISA` says).
fn isa_runs(isa: Isa) -> bool {
    match isa {
        Isa::Avx512 => dispatch::is_available(Isa::Avx512) && dispatch::has_avx512_vnni(),
        Isa::Avx2 => dispatch::is_available(Isa::Avx2),
        _ => false,
    }
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
        let w_row = crate::matmul::check_weights(w)?;
        if !isa_runs(isa) {
            return Err(KernelError::IsaUnavailable(match isa {
                Isa::Avx512 => "avx512vnni",
                Isa::Avx2 => "avx2",
                _ => "a packed path",
            }));
        }
        let k_rec = match w.ty {
            GgmlType::Q4_K => Some(Q4_K_REC),
            GgmlType::Q5_K => Some(Q5_K_REC),
            GgmlType::Q6_K => Some(Q6_K_REC),
            GgmlType::Q3_K => Some(Q3_K_REC),
            GgmlType::Q2_K => Some(Q2_K_REC),
            GgmlType::IQ4_XS => Some(IQ4_XS_REC),
            _ => None,
        };
        let kind = l32::kind(w.ty);
        if !supports(isa, w.ty) || w.rows == 0 || w.cols == 0 || !w.rows.is_multiple_of(GROUP_ROWS)
        {
            return Ok(None);
        }
        if let Some(rec) = k_rec {
            return pack_k(w, w_row, rec).map(Some);
        }
        let Some(kind) = kind else {
            return Ok(None);
        };
        let (qb, sb) = (l32::quant_bytes(kind), l32::scale_bytes(kind));
        let nb = w.cols / QK;
        let groups = w.rows / GROUP_ROWS;
        let overflow = || KernelError::Shape("packed size overflows".into());
        let blocks = groups.checked_mul(nb).ok_or_else(overflow)?;
        let scale_off = blocks.checked_mul(qb).ok_or_else(overflow)?;
        let len = blocks
            .checked_mul(sb)
            .and_then(|s| s.checked_add(scale_off))
            .ok_or_else(overflow)?;
        let mut data: Vec<Line> = vec![bytemuck::Zeroable::zeroed(); len.div_ceil(64)];
        let bytes: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut data)[..len];
        let (quants, scales) = bytes.split_at_mut(scale_off);
        let src_block = w.ty.type_size();
        let (m_off, qh_off, qs_off) = l32::src_offsets(kind);
        let q8 = kind == l32::Q8_0;
        quants
            .par_chunks_mut(nb * qb)
            .zip(scales.par_chunks_mut(nb * sb))
            .enumerate()
            .for_each(|(g, (qg, sg))| {
                for r in 0..GROUP_ROWS {
                    let row = &w.data[(g * GROUP_ROWS + r) * w_row..][..w_row];
                    for (b, blk) in row.chunks_exact(src_block).enumerate() {
                        let sc = &mut sg[b * sb..][..sb];
                        sc[2 * r..][..2].copy_from_slice(&blk[..2]);
                        if let Some(m) = m_off {
                            sc[32 + 2 * r..][..2].copy_from_slice(&blk[m..m + 2]);
                        }
                        let qs = &blk[qs_off..];
                        let dst = &mut qg[b * qb..][..qb];
                        // Stored bytes 4k..4k+4 (Q8_0: elements 4k..4k+3).
                        for k in 0..if q8 { 8 } else { 4 } {
                            let lane = &mut dst[64 * k + 4 * r..][..4];
                            for (o, &v) in lane.iter_mut().zip(&qs[4 * k..4 * k + 4]) {
                                *o = if q8 { v ^ 0x80 } else { v };
                            }
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
            });
        Ok(Some(PackedWeights {
            ty: w.ty,
            isa,
            rows: w.rows,
            cols: w.cols,
            nb,
            qb,
            scale_off,
            len,
            data,
        }))
    }

    /// Weight type (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, Q3_K, Q2_K or IQ4_XS).
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// The ISA whose kernels it was packed for (`Avx512` or `Avx2`).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The packed bytes (64-byte aligned; layout in the module docs).
    pub fn data(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.data)[..self.len]
    }
}

/// Repacks a Q4_K / Q5_K / Q6_K / Q3_K / Q2_K / IQ4_XS matrix (`rows` a
/// multiple of 16, `data` checked by the caller) into `rec`-byte records
/// (layout: `k_layout`).
fn pack_k(w: &Weights<'_>, w_row: usize, rec: usize) -> Result<PackedWeights, KernelError> {
    let nb = w.cols / QK_K;
    let groups = w.rows / GROUP_ROWS;
    let len = groups
        .checked_mul(nb)
        .and_then(|n| n.checked_mul(rec))
        .ok_or_else(|| KernelError::Shape("packed size overflows".into()))?;
    let mut data: Vec<Line> = vec![bytemuck::Zeroable::zeroed(); len.div_ceil(64)];
    let bytes: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut data)[..len];
    let src_block = w.ty.type_size();
    let ty = w.ty;
    bytes
        .par_chunks_mut(nb * rec)
        .enumerate()
        .for_each(|(g, dst)| {
            for r in 0..GROUP_ROWS {
                let row = &w.data[(g * GROUP_ROWS + r) * w_row..][..w_row];
                for (blk, out) in row.chunks_exact(src_block).zip(dst.chunks_exact_mut(rec)) {
                    match ty {
                        GgmlType::Q4_K => pack_q4_k(blk, r, out),
                        GgmlType::Q5_K => pack_q5_k(blk, r, out),
                        GgmlType::Q3_K => pack_q3_k(blk, r, out),
                        GgmlType::Q2_K => pack_q2_k(blk, r, out),
                        GgmlType::IQ4_XS => pack_iq4_xs(blk, r, out),
                        _ => pack_q6_k(blk, r, out),
                    }
                }
            }
        });
    Ok(PackedWeights {
        ty: w.ty,
        isa: Isa::Avx512,
        rows: w.rows,
        cols: w.cols,
        nb,
        qb: rec,
        scale_off: len,
        len,
        data,
    })
}

/// Row `r`'s share of a Q4_K record from its 144-byte block
/// (d, dmin, 12 scale bytes, 128 quant bytes).
fn pack_q4_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let qs = &blk[16..144];
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&qs[4 * v..][..4]);
    }
    let scales: &[u8; K_SCALE_SIZE] = blk[4..16].try_into().expect("12 scale bytes");
    let (sc, mn) = unpack_scales_mins_k4(scales);
    for j in 0..8 {
        out[Q4K_SC + 16 * j + r] = sc[j];
        out[Q4K_MIN + 32 * (j / 2) + 2 * r + j % 2] = mn[j];
    }
    out[Q4K_D + 2 * r..][..2].copy_from_slice(&blk[0..2]);
    out[Q4K_DMIN + 2 * r..][..2].copy_from_slice(&blk[2..4]);
}

/// Row `r`'s share of a Q5_K record from its 176-byte block (d, dmin,
/// 12 scale bytes, 32 qh bytes, 128 quant bytes): the Q4_K record of the
/// same d, dmin, scales and low nibbles, then the qh vectors.
fn pack_q5_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let mut q4 = [0u8; 144];
    q4[..16].copy_from_slice(&blk[..16]);
    q4[16..].copy_from_slice(&blk[48..176]);
    pack_q4_k(&q4, r, out);
    for k in 0..8 {
        out[Q5K_QH + 64 * k + 4 * r..][..4].copy_from_slice(&blk[16 + 4 * k..][..4]);
    }
}

/// Row `r`'s share of a Q6_K record from its 210-byte block
/// (128 ql, 64 qh, 16 i8 scales, d).
fn pack_q6_k(blk: &[u8], r: usize, out: &mut [u8]) {
    // ql vector (2n + h)·8 + k holds ql[64n + 32h + 4k..], i.e. ql[4v..].
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&blk[4 * v..][..4]);
    }
    // qh vector 8n + k holds qh[32n + 4k..], i.e. qh[4v..].
    for v in 0..16 {
        out[Q6K_QH + 64 * v + 4 * r..][..4].copy_from_slice(&blk[128 + 4 * v..][..4]);
    }
    for g in 0..16 {
        out[Q6K_SC + 32 * (g / 2) + 2 * r + g % 2] = blk[192 + g];
    }
    out[Q6K_D + 2 * r..][..2].copy_from_slice(&blk[208..210]);
}

/// Row `r`'s share of a Q3_K record from its 110-byte block (32 hmask,
/// 64 qs, 12 scale bytes, f16 d).
fn pack_q3_k(blk: &[u8], r: usize, out: &mut [u8]) {
    let (hmask, qs) = (&blk[..32], &blk[32..96]);
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
    let scales: &[u8; K_SCALE_SIZE] = blk[96..108].try_into().expect("12 scale bytes");
    let d = u16::from_le_bytes([blk[108], blk[109]]);
    pack_scales6(&unpack_scales_q3_k(scales), d, true, r, &mut out[Q3K_SC..]);
}

/// Row `r`'s share of a Q2_K record from its 84-byte block (16 scale|min
/// bytes, 64 qs, f16 d, f16 dmin).
fn pack_q2_k(blk: &[u8], r: usize, out: &mut [u8]) {
    for v in 0..16 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&blk[16 + 4 * v..][..4]);
    }
    for (g, &b) in blk[..16].iter().enumerate() {
        out[Q2K_SC + 64 * (g / 4) + 4 * r + PAIRED[g % 4]] = b;
    }
    out[Q2K_D + 2 * r..][..2].copy_from_slice(&blk[80..82]);
    out[Q2K_DMIN + 2 * r..][..2].copy_from_slice(&blk[82..84]);
}

/// Row `r`'s share of an IQ4_XS record from its 136-byte block (f16 d,
/// u16 scales_h, 4 scales_l bytes, 128 qs).
fn pack_iq4_xs(blk: &[u8], r: usize, out: &mut [u8]) {
    for v in 0..32 {
        out[64 * v + 4 * r..][..4].copy_from_slice(&blk[8 + 4 * v..][..4]);
    }
    let h = u16::from_le_bytes([blk[2], blk[3]]);
    let mut sc = [0i8; 8];
    for (ib, s) in sc.iter_mut().enumerate() {
        let low = (blk[4 + ib / 2] >> (4 * (ib % 2))) & 0xF;
        let high = ((h >> (2 * ib)) & 3) as u8;
        *s = (low | (high << 4)) as i8 - 32;
    }
    let d = u16::from_le_bytes([blk[0], blk[1]]);
    pack_scales6(&sc, d, false, r, &mut out[IQ4XS_SC..]);
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

/// Whether `ty` is packed as K-quant records (Q8_K activations).
fn is_k(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::Q3_K
            | GgmlType::Q2_K
            | GgmlType::IQ4_XS
    )
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
    if !isa_runs(p.isa) {
        return Err(KernelError::IsaUnavailable("the packed weights' ISA"));
    }
    let (rows, cols, nb) = (p.rows, p.cols, p.nb);
    crate::matmul::check_io(rows, cols, n_tokens, x.len(), y.len())?;
    if n_tokens == 0 {
        return Ok(());
    }
    // The activation quantizer of the weight type: Q8_0 for Q4_0/Q8_0,
    // Q8_K for the K-quants.
    let ops = table::ops(p.ty, p.isa).ok_or(KernelError::Unsupported(p.ty))?;
    let kquant = is_k(p.ty);
    // Activation row: nb blocks, then per block the side words: Q4_0/Q8_0
    // (d_a: f32, −bias·Σa: i32); the K-quants see `k_layout`.
    let kind = l32::kind(p.ty);
    let (a_block, side) = match p.ty {
        GgmlType::Q4_K | GgmlType::Q5_K => (A_BLOCK, Q4K_SIDE),
        GgmlType::Q6_K => (A_BLOCK, Q6K_SIDE),
        GgmlType::Q3_K => (A_BLOCK, Q3K_SIDE),
        // Q2_K reads its mins' activation sums from the Q8_K bsums.
        GgmlType::Q2_K => (A_BLOCK, 0),
        GgmlType::IQ4_XS => (A_BLOCK, IQ4XS_SIDE),
        _ => (kind.map_or(34, l32::act_block), 8),
    };
    let (a_row, _) = matrix_bytes(ops.act, 1, cols)?;
    let side_off = a_row.next_multiple_of(64);
    let a_stride = side_off + (nb * side).next_multiple_of(64);
    let a_total = a_stride
        .checked_mul(n_tokens)
        .ok_or_else(|| KernelError::Shape("activations overflow".into()))?;

    let Scratch { act, out } = scratch;
    let abuf = aligned_bytes(act, a_total);
    let ty = p.ty;
    let quantize = |o: &mut [u8], xt: &[f32]| {
        let (q, sides) = o.split_at_mut(side_off);
        (ops.quantize_act)(xt, &mut q[..a_row]);
        let blocks = q[..a_row].chunks_exact(a_block);
        // (No side words: `sides` is empty and the loop does not run.)
        for (blk, s) in blocks.zip(sides.chunks_exact_mut(side.max(1))) {
            let bsum = |i: usize| i16::from_le_bytes([blk[260 + 2 * i], blk[261 + 2 * i]]) as i32;
            match ty {
                GgmlType::Q4_K | GgmlType::Q5_K => {
                    // Pair p: Σa over sub-blocks 2p and 2p+1 (|·| ≤ 32·128, an i16).
                    for (pair, o) in s.chunks_exact_mut(4).enumerate() {
                        let lo = (bsum(4 * pair) + bsum(4 * pair + 1)) as i16;
                        let hi = (bsum(4 * pair + 2) + bsum(4 * pair + 3)) as i16;
                        o[..2].copy_from_slice(&lo.to_le_bytes());
                        o[2..].copy_from_slice(&hi.to_le_bytes());
                    }
                }
                GgmlType::Q6_K => {
                    for (g, o) in s.chunks_exact_mut(4).enumerate() {
                        o.copy_from_slice(&(-32 * bsum(g)).to_le_bytes());
                    }
                }
                GgmlType::Q3_K => {
                    // Odd sub-blocks' quants reach the kernel times 8.
                    for (g, o) in s.chunks_exact_mut(4).enumerate() {
                        let off = if g % 2 == 0 { -4 } else { -32 };
                        o.copy_from_slice(&(off * bsum(g)).to_le_bytes());
                    }
                }
                GgmlType::IQ4_XS => {
                    for (ib, o) in s.chunks_exact_mut(4).enumerate() {
                        let sum = bsum(2 * ib) + bsum(2 * ib + 1);
                        o.copy_from_slice(&(-128 * sum).to_le_bytes());
                    }
                }
                _ => {
                    // 32-element types: (d_a, −bias·Σa) or, with a min, (d_a, s_a).
                    let kind = kind.unwrap_or(l32::Q4_0);
                    let f16 = |i: usize| half::f16::from_le_bytes([blk[i], blk[i + 1]]).to_f32();
                    s[..4].copy_from_slice(&f16(0).to_le_bytes());
                    if l32::has_min(kind) {
                        s[4..].copy_from_slice(&f16(2).to_le_bytes());
                    } else {
                        let sum: i32 = blk[2..].iter().map(|&v| v as i8 as i32).sum();
                        s[4..].copy_from_slice(&(-l32::bias(kind) * sum).to_le_bytes());
                    }
                }
            }
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

    let groups = rows / GROUP_ROWS;
    let chunk_groups = if sequential {
        groups
    } else {
        groups.div_ceil(threads * 4).max(1)
    };
    let chunk_rows = chunk_groups * GROUP_ROWS;
    let data = p.data();
    let kind32 = kind.unwrap_or(l32::Q4_0);
    let sb = l32::scale_bytes(kind32);
    #[cfg(target_arch = "x86_64")]
    let kkind = {
        use crate::arch::x86_64::packed_k_avx512::KKind;
        match p.ty {
            GgmlType::Q5_K => KKind::Q5K,
            GgmlType::Q6_K => KKind::Q6K,
            GgmlType::Q3_K => KKind::Q3K,
            GgmlType::Q2_K => KKind::Q2K,
            GgmlType::IQ4_XS => KKind::IQ4XS,
            _ => KKind::Q4K,
        }
    };
    let avx2 = p.isa == Isa::Avx2;
    let tile_tokens = if kquant {
        TOKENS_PER_TILE_K
    } else if avx2 {
        l32::AVX2_TILE_TOKENS
    } else {
        l32::tile_tokens(kind32)
    };
    // Computes rows c·chunk_rows.. for all tokens into o[t * nr + r].
    let run_chunk = |c: usize, o: &mut [f32]| {
        let nr = o.len() / n_tokens;
        debug_assert!(nr.is_multiple_of(GROUP_ROWS) && nr * n_tokens == o.len());
        let g0 = c * chunk_groups;
        for gi in 0..nr / GROUP_ROWS {
            let g = g0 + gi;
            debug_assert!(g < groups);
            let mut t0 = 0;
            while t0 < n_tokens {
                let nt = (n_tokens - t0).min(tile_tokens);
                #[cfg(target_arch = "x86_64")]
                if kquant {
                    use crate::arch::x86_64::packed_k_avx512 as k;
                    let tile = k::KTile {
                        nb,
                        w: data[g * nb * p.qb..].as_ptr(),
                        a: a[t0 * a_stride..].as_ptr(),
                        a_stride,
                        side_off,
                        out: o[t0 * nr + gi * GROUP_ROWS..].as_mut_ptr(),
                        out_stride: nr,
                    };
                    // SAFETY: VNNI was checked above (and by `pack`). Group g <
                    // groups has nb records of p.qb bytes at `w` inside `data`;
                    // tokens t0..t0+nt < n_tokens each have a full activation row
                    // (nb Q8_K blocks, nb·side side bytes at side_off) in `a`
                    // (a_total = a_stride·n_tokens); o[t·nr + gi·16..][..16] lies
                    // inside `o` (len nr·n_tokens) for t < t0 + nt; nt <= 16.
                    unsafe { k::k_tile_n(kkind, &tile, nt) }
                } else {
                    use crate::arch::x86_64::packed_avx512 as k;
                    let tile = k::Tile {
                        nb,
                        qs: data[g * nb * p.qb..].as_ptr(),
                        sc: data[p.scale_off + g * nb * sb..].as_ptr(),
                        a: a[t0 * a_stride..].as_ptr(),
                        a_stride,
                        side_off,
                        out: o[t0 * nr + gi * GROUP_ROWS..].as_mut_ptr(),
                        out_stride: nr,
                    };
                    // SAFETY: the CPU runs p.isa (checked above; `pack` only
                    // packs these kinds for AVX2 or AVX-512 VNNI). Group g <
                    // groups has nb·qb quant bytes at `qs` and nb·sb scale bytes
                    // at `sc` inside `data` (qb, sb the kind's, as `pack` laid
                    // them out); tokens t0..t0+nt < n_tokens each have a full
                    // activation row (nb blocks of the kind's activation type +
                    // nb side pairs) in `a` (a_total = a_stride·n_tokens); and
                    // o[t·nr + gi·16..][..16] lies inside `o` (len nr·n_tokens)
                    // for t < t0 + nt; nt <= tile_tokens <= 16.
                    unsafe {
                        use crate::arch::x86_64::packed_avx2 as k2;
                        match (avx2, kind32) {
                            (true, l32::Q4_1) => k2::group_tile_n::<{ l32::Q4_1 }>(&tile, nt),
                            (true, l32::Q5_0) => k2::group_tile_n::<{ l32::Q5_0 }>(&tile, nt),
                            (true, l32::Q5_1) => k2::group_tile_n::<{ l32::Q5_1 }>(&tile, nt),
                            (true, _) => k2::group_tile_n::<{ l32::Q4_0 }>(&tile, nt),
                            (_, l32::Q8_0) => k::group_tile_n::<{ l32::Q8_0 }>(&tile, nt),
                            (_, l32::Q4_1) => k::group_tile_n::<{ l32::Q4_1 }>(&tile, nt),
                            (_, l32::Q5_0) => k::group_tile_n::<{ l32::Q5_0 }>(&tile, nt),
                            (_, l32::Q5_1) => k::group_tile_n::<{ l32::Q5_1 }>(&tile, nt),
                            (_, l32::IQ4_NL) => k::group_tile_n::<{ l32::IQ4_NL }>(&tile, nt),
                            _ => k::group_tile_n::<{ l32::Q4_0 }>(&tile, nt),
                        }
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (
                    data, a, g, gi, kind32, sb, kquant, avx2, nb, a_stride, side_off,
                );
                t0 += nt;
            }
        }
    };

    crate::matmul::run_chunks(out, y, rows, n_tokens, chunk_rows, sequential, run_chunk);
    Ok(())
}
