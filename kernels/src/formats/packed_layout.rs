//! Layout constants of the repacked (row-interleaved) weights, shared by
//! the packing code (`crate::packed`) and the ISA kernels
//! (`arch/*/packed_*.rs`), which both import this lower module and not
//! each other. The layouts themselves are described in `crate::packed`.

/// Layout of the packed 32-element types, by [`Block32`] code (the const
/// parameter of the packed group tiles).
pub(crate) mod l32 {
    pub(crate) use crate::formats::layout::code::*;
    use crate::formats::layout::Block32;

    /// Packed quant bytes of one block of one 16-row group: 16 rows × the
    /// 16 nibble bytes (4 vectors of 64), + 1 vector of fifth bits (Q5_x),
    /// or 16 rows × 32 bytes (Q8_0).
    pub(crate) const fn quant_bytes(kind: u8) -> usize {
        match Block32::of(kind) {
            Block32::Q8_0 => 8 * 64,
            Block32::Q5_0 | Block32::Q5_1 => 5 * 64,
            _ => 4 * 64,
        }
    }

    /// Whether `kind` has a per-block min (`m_w`, activations Q8_1).
    pub(crate) const fn has_min(kind: u8) -> bool {
        Block32::of(kind).has_min()
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

    /// Bytes of one activation block: Q8_1 for the types with a min, Q8_0
    /// otherwise.
    pub(crate) const fn act_block(kind: u8) -> usize {
        Block32::of(kind).act_bytes()
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

    /// Tokens per register tile of the AVX2 kernels (16 ymm registers: 8
    /// weight vectors, one accumulator per token, the scales).
    pub(crate) const AVX2_TILE_TOKENS: usize = 4;

    /// Offsets in a file block of `kind`: `(m, qh, qs)` (`d` is always at 0).
    pub(crate) const fn src_offsets(kind: u8) -> (Option<usize>, Option<usize>, usize) {
        Block32::of(kind).offsets()
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
    pub(crate) const A_BLOCK: usize = crate::formats::layout::Q8_K_BYTES;
    /// Offsets of its quants and of its 16 i16 block sums.
    pub(crate) const A_QS: usize = crate::formats::layout::Q8_K_QS;
    pub(crate) const A_BSUMS: usize = crate::formats::layout::Q8_K_BSUMS;
    /// Side bytes per super-block per token: Q4_K 4 i32 (pairs of
    /// 32-element activation sums as i16), Q6_K 16 i32 (`−32·bsum`),
    /// Q3_K 16 i32 (`−4·bsum`, odd sub-blocks `−32·bsum`).
    pub(crate) const Q4K_SIDE: usize = 16;
    pub(crate) const Q6K_SIDE: usize = 64;
    pub(crate) const Q3K_SIDE: usize = 64;
    /// IQ4_XS: 8 i32 (`−128·Σa` per 32-element sub-block).
    pub(crate) const IQ4XS_SIDE: usize = 32;

    use crate::formats::k_quants::{BlockQ4_K, BlockQ6_K};
    use core::mem::offset_of;

    /// Row `r`'s unpacked scales and mins, `d` and `dmin` in a Q4_K / Q5_K
    /// record `out`, from its file block `blk` (both types start with f16
    /// d, f16 dmin and the 12 packed scale bytes). The scalar packer and
    /// the SIMD group packers (which transpose the quants) share it; the
    /// unit test below holds it to `k_quants::unpack_scales_mins_k4`.
    pub(crate) fn q4_k_side(blk: &[u8], r: usize, out: &mut [u8]) {
        // `unpack_scales_mins_k4` on 4 bytes at once (the packers' hot
        // spot): with the scale bytes as words a, b, c, scales 0..4 are
        // a & 63, mins 0..4 b & 63; scales 4..8 are the low nibbles of c
        // with a's top 2 bits above them, mins 4..8 c's high nibbles with
        // b's top 2 bits.
        let at = offset_of!(BlockQ4_K, scales);
        let word =
            |i: usize| u32::from_le_bytes(blk[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
        let (a, b, c) = (word(0), word(1), word(2));
        let (low6, nib, top2) = (0x3F3F_3F3F, 0x0F0F_0F0F, 0x3030_3030);
        let sc = (a & low6) as u64 | ((((c & nib) | ((a >> 2) & top2)) as u64) << 32);
        let mn = (b & low6) as u64 | (((((c >> 4) & nib) | ((b >> 2) & top2)) as u64) << 32);
        for j in 0..8 {
            out[Q4K_SC + 16 * j + r] = (sc >> (8 * j)) as u8;
        }
        for p in 0..4 {
            let pair = (mn >> (16 * p)) as u16;
            out[Q4K_MIN + 32 * p + 2 * r..][..2].copy_from_slice(&pair.to_le_bytes());
        }
        let (d, dmin) = (offset_of!(BlockQ4_K, d), offset_of!(BlockQ4_K, dmin));
        out[Q4K_D + 2 * r..][..2].copy_from_slice(&blk[d..d + 2]);
        out[Q4K_DMIN + 2 * r..][..2].copy_from_slice(&blk[dmin..dmin + 2]);
    }

    /// Row `r`'s i8 scales (pairs `[p][r][2]`) and f16 `d` in a Q6_K record
    /// `out`, from its file block `blk`.
    pub(crate) fn q6_k_side(blk: &[u8], r: usize, out: &mut [u8]) {
        let sc = &blk[offset_of!(BlockQ6_K, scales)..][..16];
        for (g, &v) in sc.iter().enumerate() {
            out[Q6K_SC + 32 * (g / 2) + 2 * r + g % 2] = v;
        }
        let d = offset_of!(BlockQ6_K, d);
        out[Q6K_D + 2 * r..][..2].copy_from_slice(&blk[d..d + 2]);
    }
}

#[cfg(test)]
mod tests {
    use super::k_layout::*;
    use crate::formats::k_quants::unpack_scales_mins_k4;

    /// `q4_k_side` writes what `unpack_scales_mins_k4` unpacks, for every
    /// value of each scale byte.
    #[test]
    fn q4_k_side_unpacks_like_the_reference() {
        let mut blk = [0u8; 144];
        let mut out = vec![0u8; Q4_K_REC];
        for v in 0..=255u8 {
            for (i, b) in blk.iter_mut().enumerate().take(16) {
                *b = v.wrapping_mul(i as u8 * 37 + 11).wrapping_add(i as u8);
            }
            let r = usize::from(v % 16);
            q4_k_side(&blk, r, &mut out);
            let (sc, mn) = unpack_scales_mins_k4(blk[4..16].try_into().unwrap());
            for j in 0..8 {
                assert_eq!(out[Q4K_SC + 16 * j + r], sc[j], "scale {j}, v {v}");
                assert_eq!(
                    out[Q4K_MIN + 32 * (j / 2) + 2 * r + j % 2],
                    mn[j],
                    "min {j}, v {v}"
                );
            }
            assert_eq!(out[Q4K_D + 2 * r..][..2], blk[..2]);
            assert_eq!(out[Q4K_DMIN + 2 * r..][..2], blk[2..4]);
        }
    }
}
