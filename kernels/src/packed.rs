//! Repacked (row-interleaved) Q4_0 / Q8_0 weights and their matmul.
//!
//! [`PackedWeights::pack`] copies a Q4_0 or Q8_0 matrix once (at load) into
//! groups of 16 rows whose 4-byte weight groups are interleaved, so that one
//! AVX-512 VNNI `vpdpbusd` against a broadcast group of 4 activations
//! computes partial sums for 16 rows at once (see
//! `arch/x86_64/packed_avx512.rs`). [`matmul_packed`] then has exactly the
//! semantics of [`crate::matmul`]: activations are quantized to Q8_0 with the
//! same quantizer, every per-block integer dot is exact, and blocks are
//! combined as `isum · (d_w · d_a)` in f32; only the order of the f32
//! additions differs from the scalar reference.
//!
//! Opt-in: `pack` returns `Ok(None)` when there is no packed path (type
//! other than Q4_0/Q8_0, rows not a multiple of 16, no AVX-512 VNNI, or the
//! active ISA forced below AVX-512); the caller then keeps using `matmul`.
//!
//! Packed layout (`data`, 64-byte aligned): `groups = rows / 16`,
//! `nb = cols / 32`. First the quants: for group `g`, block `b`, at
//! `(g·nb + b)·QB` (QB = 256 for Q4_0, 512 for Q8_0), vectors of 64 bytes
//! whose bytes `4r..4r+4` belong to row `16g + r`. Q4_0: vector `k < 4`
//! holds the row's stored bytes `4k..4k+4` (low nibbles = elements
//! `4k..4k+3`, high nibbles = elements `16+4k..16+4k+3`, both unsigned
//! 0..15). Q8_0: vector `j < 8` holds elements `4j..4j+3` as `w + 128`.
//! Then, at `scale_off`, for group `g`, block `b`, at `(g·nb + b)·32`, the 16
//! rows' f16 scales.

use crate::matmul::{aligned_bytes, Line, Scratch};
use crate::{dispatch, matrix_bytes, table, GgmlType, Isa, KernelError, Weights};
use rayon::prelude::*;

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 16;
/// Elements per block (Q4_0 / Q8_0).
const QK: usize = 32;
/// Multiply-adds below which a call runs on the calling thread.
const SEQ_WORK: usize = 1 << 16;
/// Tokens per register tile: Q4_0 16, Q8_0 8 (its 8 weight vectors per
/// block leave fewer registers; measured with `examples/packed_speed.rs`).
const TOKENS_PER_TILE_Q4: usize = 16;
const TOKENS_PER_TILE_Q8: usize = 8;

/// A Q4_0 or Q8_0 weight matrix repacked for [`matmul_packed`].
pub struct PackedWeights {
    ty: GgmlType,
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

/// Whether this process can run the packed kernels (AVX-512 VNNI present
/// and not forced off through `PHI_ISA` / `dispatch::force`).
pub fn available() -> bool {
    dispatch::active() == Isa::Avx512 && dispatch::has_avx512_vnni()
}

impl PackedWeights {
    /// Repacks `w`. `Ok(None)` when there is no packed path for this type,
    /// shape or CPU (see the module docs); `Err` when `w` is inconsistent.
    pub fn pack(w: &Weights<'_>) -> Result<Option<PackedWeights>, KernelError> {
        let (w_row, w_total) = matrix_bytes(w.ty, w.rows, w.cols)?;
        if w.data.len() != w_total {
            return Err(KernelError::Shape(format!(
                "{} x {} {} weights need {w_total} bytes, got {}",
                w.rows,
                w.cols,
                w.ty,
                w.data.len()
            )));
        }
        let qb = match w.ty {
            GgmlType::Q4_0 => 256,
            GgmlType::Q8_0 => 512,
            _ => return Ok(None),
        };
        if !available() || w.rows == 0 || w.cols == 0 || !w.rows.is_multiple_of(GROUP_ROWS) {
            return Ok(None);
        }
        let nb = w.cols / QK;
        let groups = w.rows / GROUP_ROWS;
        let overflow = || KernelError::Shape("packed size overflows".into());
        let blocks = groups.checked_mul(nb).ok_or_else(overflow)?;
        let scale_off = blocks.checked_mul(qb).ok_or_else(overflow)?;
        let len = blocks
            .checked_mul(32)
            .and_then(|s| s.checked_add(scale_off))
            .ok_or_else(overflow)?;
        let mut data: Vec<Line> = vec![bytemuck::Zeroable::zeroed(); len.div_ceil(64)];
        let bytes: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut data)[..len];
        let (quants, scales) = bytes.split_at_mut(scale_off);
        let src_block = w_row / nb; // 18 (Q4_0) or 34 (Q8_0)
        let q8 = w.ty == GgmlType::Q8_0;
        quants
            .par_chunks_mut(nb * qb)
            .zip(scales.par_chunks_mut(nb * 32))
            .enumerate()
            .for_each(|(g, (qg, sg))| {
                for r in 0..GROUP_ROWS {
                    let row = &w.data[(g * GROUP_ROWS + r) * w_row..][..w_row];
                    for b in 0..nb {
                        let blk = &row[b * src_block..][..src_block];
                        sg[b * 32 + 2 * r..][..2].copy_from_slice(&blk[..2]);
                        let qs = &blk[2..];
                        let dst = &mut qg[b * qb..][..qb];
                        for k in 0..qb / 64 {
                            let lane = &mut dst[64 * k + 4 * r..][..4];
                            for (o, &v) in lane.iter_mut().zip(&qs[4 * k..4 * k + 4]) {
                                *o = if q8 { v ^ 0x80 } else { v };
                            }
                        }
                    }
                }
            });
        Ok(Some(PackedWeights {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            nb,
            qb,
            scale_off,
            len,
            data,
        }))
    }

    /// Weight type (Q4_0 or Q8_0).
    pub fn ty(&self) -> GgmlType {
        self.ty
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
    if !dispatch::has_avx512_vnni() {
        return Err(KernelError::IsaUnavailable("avx512vnni"));
    }
    let (rows, cols, nb) = (p.rows, p.cols, p.nb);
    let shape = |what: &str, need: Option<usize>, got: usize| match need {
        Some(n) if n == got => Ok(()),
        _ => Err(KernelError::Shape(format!(
            "{what}: expected {need:?} elements for {n_tokens} tokens, got {got}"
        ))),
    };
    shape("activations", n_tokens.checked_mul(cols), x.len())?;
    shape("output", n_tokens.checked_mul(rows), y.len())?;
    if n_tokens == 0 {
        return Ok(());
    }
    let ops = table::ops(GgmlType::Q8_0, Isa::Avx512).ok_or(KernelError::Unsupported(p.ty))?;
    let bias: i32 = if p.ty == GgmlType::Q8_0 { 128 } else { 8 };
    // Activation row: nb Q8_0 blocks, then nb (d_a: f32, −bias·Σa: i32).
    let (a_row, _) = matrix_bytes(GgmlType::Q8_0, 1, cols)?;
    let side_off = a_row.next_multiple_of(64);
    let a_stride = side_off + (nb * 8).next_multiple_of(64);
    let a_total = a_stride
        .checked_mul(n_tokens)
        .ok_or_else(|| KernelError::Shape("activations overflow".into()))?;

    let Scratch { act, out } = scratch;
    let abuf = aligned_bytes(act, a_total);
    let quantize = |o: &mut [u8], xt: &[f32]| {
        let (q, side) = o.split_at_mut(side_off);
        (ops.quantize_act)(xt, &mut q[..a_row]);
        for (blk, s) in q[..a_row].chunks_exact(34).zip(side.chunks_exact_mut(8)) {
            let sum: i32 = blk[2..].iter().map(|&v| v as i8 as i32).sum();
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            s[..4].copy_from_slice(&d.to_le_bytes());
            s[4..].copy_from_slice(&(-bias * sum).to_le_bytes());
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
    let q8 = p.ty == GgmlType::Q8_0;
    let tile_tokens = if q8 {
        TOKENS_PER_TILE_Q8
    } else {
        TOKENS_PER_TILE_Q4
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
                {
                    use crate::arch::x86_64::packed_avx512 as k;
                    let tile = k::Tile {
                        nb,
                        qs: data[g * nb * p.qb..].as_ptr(),
                        sc: data[p.scale_off + g * nb * 32..].as_ptr(),
                        a: a[t0 * a_stride..].as_ptr(),
                        a_stride,
                        side_off,
                        out: o[t0 * nr + gi * GROUP_ROWS..].as_mut_ptr(),
                        out_stride: nr,
                    };
                    // SAFETY: VNNI was checked above (and by `pack`). Group g <
                    // groups has nb·qb quant bytes at `qs` and nb·32 scale bytes
                    // at `sc` inside `data`; tokens t0..t0+nt < n_tokens each
                    // have a full activation row (Q8_0 blocks + side pairs) in
                    // `a` (a_total = a_stride·n_tokens); and o[t·nr + gi·16..][..16]
                    // lies inside `o` (len nr·n_tokens) for t < t0 + nt.
                    unsafe {
                        if q8 {
                            k::group_tile_n::<true>(&tile, nt)
                        } else {
                            k::group_tile_n::<false>(&tile, nt)
                        }
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (data, a, g, gi, q8, nb, a_stride, side_off);
                t0 += nt;
            }
        }
    };

    crate::matmul::run_chunks(out, y, rows, n_tokens, chunk_rows, sequential, run_chunk);
    Ok(())
}
