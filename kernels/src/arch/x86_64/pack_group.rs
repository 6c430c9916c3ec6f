//! AVX2 packing of one 16-row group of a 32-element type from the file's
//! blocks into the x86 packed layout (`crate::packed`): the same bytes as
//! the scalar packer, produced fast enough to be done on the fly, group by
//! group, while the matrix is multiplied (`packed::StreamedWeights`).
//!
//! Per block the packed quants are vectors of 64 bytes whose 4-byte lane
//! `r` holds 4 stored bytes of row `r`: a transpose of the 16 rows' quant
//! words. It runs as two 8-row halves (bytes `32h..32h+32` of each
//! vector): Q8_0 transposes 8 rows × 8 words with 24 shuffles
//! (`vpunpck{l,h}dq`, `vpunpck{l,h}qdq`, `vperm2i128`) and flips the bytes
//! to `w + 128`; the nibble types load two rows per register (rows `i` and
//! `i + 4`) and transpose 4 × 4 words in each 128-bit lane with 8
//! shuffles. The 16 rows' f16 `d` (and `m`) are copied as 2-byte words.
//! The next group's rows (the caller's `next`) are prefetched into L2 in
//! address order, spread over the blocks: the 16 rows read in step are 16
//! streams, which the hardware prefetchers follow too slowly to keep
//! decoding at memory speed.

use core::arch::x86_64::*;

use crate::formats::layout::Block32;
use crate::formats::packed_layout::l32::{quant_bytes, scale_bytes, src_offsets};
use crate::tile::GroupPackFn;
use crate::GgmlType;

/// The AVX2 group packer of `ty` (x86 layout), if there is one.
pub(crate) fn group_packer(ty: GgmlType) -> Option<GroupPackFn> {
    Some(match ty {
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => nibbles::<{ Block32::Q4_0.code() }>,
        GgmlType::Q4_1 => nibbles::<{ Block32::Q4_1.code() }>,
        GgmlType::IQ4_NL => nibbles::<{ Block32::IQ4_NL.code() }>,
        GgmlType::Q4_K => k_quant::<K_Q4>,
        GgmlType::Q5_K => k_quant::<K_Q5>,
        GgmlType::Q6_K => k_quant::<K_Q6>,
        _ => return None,
    })
}

/// Copies the 16 rows' 2-byte words at byte `at` of each row (`src +
/// r·w_row + at`) to `dst` (row `r` at `dst + 2r`).
///
/// # Safety
/// Those 16 words are readable; `dst` has 32 writable bytes.
#[inline(always)]
unsafe fn copy_halves(src: *const u8, w_row: usize, at: usize, dst: *mut u8) {
    for r in 0..16 {
        // SAFETY: per the contract; 2-byte unaligned copies.
        unsafe {
            let v = core::ptr::read_unaligned(src.add(r * w_row + at) as *const u16);
            core::ptr::write_unaligned(dst.add(2 * r) as *mut u16, v);
        }
    }
}

/// Prefetches block `b`'s share (of `nb`) of the `len` bytes at `next`
/// into L2, in address order (a hint: never faults).
#[inline(always)]
fn prefetch_next(next: *const u8, len: usize, b: usize, nb: usize) {
    let lines = len / 64;
    for l in b * lines / nb..(b + 1) * lines / nb {
        // SAFETY: a prefetch is a hint and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(64 * l) as *const i8) };
    }
}

/// Transposes 16 rows × 8 words (32 bytes at `src + r·w_row`) into 8
/// vectors of 64 bytes at `dst + 64k` whose lane `r` is word `k` of row
/// `r`, xored with `flip`: two 8 × 8 transposes (rows `8h..8h+8` into
/// bytes `32h..32h+32` of each vector) of 24 shuffles each.
///
/// # Safety
/// AVX2; the 16 rows' 32 bytes readable, 512 bytes at `dst` writable.
#[inline(always)]
unsafe fn transpose16x8(src: *const u8, w_row: usize, dst: *mut u8, flip: __m256i) {
    for h in 0..2 {
        // SAFETY: per the contract; unaligned loads and stores.
        unsafe {
            let row = |i: usize| _mm256_loadu_si256(src.add((8 * h + i) * w_row) as *const __m256i);
            // Rows i, i+1 interleaved by words, then by word pairs: u_k
            // holds words k and k + 4 of rows 0..4 (low lane, high lane),
            // v_k the same of rows 4..8.
            let t = |i: usize| {
                let (a, c) = (row(i), row(i + 1));
                (_mm256_unpacklo_epi32(a, c), _mm256_unpackhi_epi32(a, c))
            };
            let quad = |i: usize| {
                let ((l0, h0), (l1, h1)) = (t(i), t(i + 2));
                [
                    _mm256_unpacklo_epi64(l0, l1),
                    _mm256_unpackhi_epi64(l0, l1),
                    _mm256_unpacklo_epi64(h0, h1),
                    _mm256_unpackhi_epi64(h0, h1),
                ]
            };
            let (u, v) = (quad(0), quad(4));
            for k in 0..4 {
                let lo = _mm256_permute2x128_si256::<0x20>(u[k], v[k]);
                let hi = _mm256_permute2x128_si256::<0x31>(u[k], v[k]);
                _mm256_storeu_si256(
                    dst.add(64 * k + 32 * h) as *mut __m256i,
                    _mm256_xor_si256(lo, flip),
                );
                _mm256_storeu_si256(
                    dst.add(64 * (k + 4) + 32 * h) as *mut __m256i,
                    _mm256_xor_si256(hi, flip),
                );
            }
        }
    }
}

/// Q8_0: vector `k` lane `r` = row `r`'s quant bytes `4k..4k+4`, `^ 0x80`.
///
/// # Safety
/// AVX2; 16 rows of `nb` 34-byte blocks at `src`, `w_row` bytes apart;
/// `nb · 512` writable bytes at `qs`, `nb · 32` at `sc`.
#[target_feature(enable = "avx2")]
unsafe fn q8_0(
    src: *const u8,
    w_row: usize,
    nb: usize,
    qs: *mut u8,
    sc: *mut u8,
    next: *const u8,
    next_len: usize,
) {
    let bs = Block32::Q8_0.bytes();
    let (_, _, qs_off) = Block32::Q8_0.offsets();
    let (qb, sb) = (
        quant_bytes(Block32::Q8_0.code()),
        scale_bytes(Block32::Q8_0.code()),
    );
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    for b in 0..nb {
        let at = b * bs;
        prefetch_next(next, next_len, b, nb);
        // SAFETY: block b of rows 0..16 is readable and its packed bytes
        // writable (caller).
        unsafe {
            copy_halves(src, w_row, at, sc.add(b * sb));
            transpose16x8(src.add(at + qs_off), w_row, qs.add(b * qb), flip);
        }
    }
}

/// The K-quant records whose quant vectors are transposes of the file's
/// words: `(file bytes at, record bytes at, 8-word chunks)` per type, and
/// the per-row side fields (`k_layout::q4_k_side` / `q6_k_side`).
///
/// # Safety
/// AVX2; 16 rows of `nb` super-blocks of type `K` at `src`, `w_row` bytes
/// apart; `nb` records writable at `recs`.
#[target_feature(enable = "avx2")]
unsafe fn k_quant<const K: u8>(
    src: *const u8,
    w_row: usize,
    nb: usize,
    recs: *mut u8,
    _sc: *mut u8,
    next: *const u8,
    next_len: usize,
) {
    use crate::formats::k_quants::{BlockQ4_K, BlockQ5_K, BlockQ6_K};
    use crate::formats::packed_layout::k_layout::*;
    use core::mem::{offset_of, size_of};
    // (source offset, record offset, 8-word chunks) of each quant array.
    let (bs, rec, parts, side): (usize, usize, &[(usize, usize, usize)], SideFn) = match K {
        K_Q4 => (
            size_of::<BlockQ4_K>(),
            Q4_K_REC,
            &[(offset_of!(BlockQ4_K, qs), 0, 4)],
            q4_k_side,
        ),
        K_Q5 => (
            size_of::<BlockQ5_K>(),
            Q5_K_REC,
            &[
                (offset_of!(BlockQ5_K, qs), 0, 4),
                (offset_of!(BlockQ5_K, qh), Q5K_QH, 1),
            ],
            q4_k_side,
        ),
        _ => (
            size_of::<BlockQ6_K>(),
            Q6_K_REC,
            &[
                (offset_of!(BlockQ6_K, ql), 0, 4),
                (offset_of!(BlockQ6_K, qh), Q6K_QH, 2),
            ],
            q6_k_side,
        ),
    };
    let zero = _mm256_setzero_si256();
    for b in 0..nb {
        let at = b * bs;
        prefetch_next(next, next_len, b, nb);
        // SAFETY: super-block b of rows 0..16 (bs bytes at src + r·w_row +
        // at) is readable and its record (rec bytes at recs + b·rec)
        // writable (caller). Each part's chunks are 32 bytes inside the
        // block (from + 32c + 32 <= bs) and 512 bytes inside the record
        // (to + 512c + 512 <= rec: the k_layout offsets). The record slice
        // is made after the transposes' raw writes and is the only
        // reference to those bytes while it lives; the block slices are
        // read-only views of the caller's rows.
        unsafe {
            let out = recs.add(b * rec);
            for &(from, to, chunks) in parts {
                for c in 0..chunks {
                    transpose16x8(
                        src.add(at + from + 32 * c),
                        w_row,
                        out.add(to + 512 * c),
                        zero,
                    );
                }
            }
            let out = core::slice::from_raw_parts_mut(out, rec);
            for r in 0..16 {
                side(
                    core::slice::from_raw_parts(src.add(r * w_row + at), bs),
                    r,
                    out,
                );
            }
        }
    }
}

/// Writes row `r`'s side fields of a K-quant record from its file block.
type SideFn = fn(blk: &[u8], r: usize, out: &mut [u8]);
const K_Q4: u8 = 0;
const K_Q5: u8 = 1;
const K_Q6: u8 = 2;

/// Q4_0 / Q4_1 / IQ4_NL: vector `k < 4` lane `r` = row `r`'s stored quant
/// bytes `4k..4k+4`; the rows' `d` (and Q4_1's `m` 32 bytes further).
///
/// # Safety
/// AVX2; 16 rows of `nb` blocks of type `K` at `src`, `w_row` bytes apart;
/// `nb · quant_bytes(K)` writable bytes at `qs`, `nb · scale_bytes(K)` at
/// `sc`.
#[target_feature(enable = "avx2")]
unsafe fn nibbles<const K: u8>(
    src: *const u8,
    w_row: usize,
    nb: usize,
    qs: *mut u8,
    sc: *mut u8,
    next: *const u8,
    next_len: usize,
) {
    let bs = Block32::of(K).bytes();
    let (qb, sb) = (quant_bytes(K), scale_bytes(K));
    let (m_off, _, qs_off) = src_offsets(K);
    for b in 0..nb {
        let at = b * bs;
        prefetch_next(next, next_len, b, nb);
        // SAFETY: block b of rows 0..16 is readable and its packed bytes
        // writable (caller); all accesses are unaligned.
        unsafe {
            copy_halves(src, w_row, at, sc.add(b * sb));
            if let Some(m) = m_off {
                copy_halves(src, w_row, at + m, sc.add(b * sb + 32));
            }
            let dst = qs.add(b * qb);
            for h in 0..2 {
                let q = |i: usize| src.add((8 * h + i) * w_row + at + qs_off) as *const __m128i;
                // Rows i (low lane) and i + 4 (high lane).
                let y = |i: usize| _mm256_loadu2_m128i(q(i + 4), q(i));
                let (y0, y1, y2, y3) = (y(0), y(1), y(2), y(3));
                let (l0, h0) = (_mm256_unpacklo_epi32(y0, y1), _mm256_unpackhi_epi32(y0, y1));
                let (l1, h1) = (_mm256_unpacklo_epi32(y2, y3), _mm256_unpackhi_epi32(y2, y3));
                let out = [
                    _mm256_unpacklo_epi64(l0, l1),
                    _mm256_unpackhi_epi64(l0, l1),
                    _mm256_unpacklo_epi64(h0, h1),
                    _mm256_unpackhi_epi64(h0, h1),
                ];
                for (k, o) in out.into_iter().enumerate() {
                    _mm256_storeu_si256(dst.add(64 * k + 32 * h) as *mut __m256i, o);
                }
            }
        }
    }
}
