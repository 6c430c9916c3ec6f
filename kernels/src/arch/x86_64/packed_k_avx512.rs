//! AVX-512 VNNI bodies of the repacked Q4_K / Q5_K / Q6_K / Q3_K / Q2_K /
//! IQ4_XS matmul (`crate::packed`).
//!
//! A row group is 16 weight rows; for each 256-element super-block the
//! group has one record (layouts below, written by `PackedWeights::pack`).
//! Quants are stored as vectors of 64 bytes whose i32 lane `r` holds 4
//! consecutive quants of row `r`, so one `vpdpbusd` against a broadcast group
//! of 4 Q8_K activations adds 4 products to each of 16 rows. The weights are
//! unsigned (Q4_K 0..15, Q6_K 0..63); Q6_K's offset of 32 is removed exactly
//! in integer once per super-block, `isum −= 32·Σ_g sc_g·bsum_g` (a
//! `vpdpwssd` of the per-row scale pairs with the Q8_K block's 16-element
//! sums), Q4_K's mins by a `vpdpwssd` of the per-row mins with the
//! activations' 32-element sums. All integer parts equal the
//! scalar reference's; blocks are combined in f32 as `isum·(d_w·d_a)` (and
//! `− imin·(dmin_w·d_a)`), as the reference does, in a different order.
//!
//! Q4_K record (2368 bytes): 32 quant vectors, vector `8c + k` holding the
//! stored bytes `qs[32c + 4k..][..4]` (low nibbles: elements `64c + 4k..`,
//! sub-block `2c`; high nibbles: elements `64c + 32 + 4k..`, sub-block
//! `2c + 1`); at 2048 the 6-bit scales `[sub-block j][row]` as u8; at 2176
//! the mins `[pair p][row][2]` (`m_{2p}`, `m_{2p+1}`) as u8; at 2304 the 16
//! rows' f16 `d`, at 2336 their f16 `dmin`.
//!
//! Q6_K record (3392 bytes): 32 `ql` vectors, vector `(2n + h)·8 + k`
//! holding `ql[64n + 32h + 4k..][..4]`; at 2048 16 `qh` vectors, vector
//! `8n + k` holding `qh[32n + 4k..][..4]`; at 3072 the scales
//! `[pair p][row][2]` (`sc_{2p}`, `sc_{2p+1}`) as i8; at 3328 the rows' f16
//! `d`; 32 bytes of padding keep records 64-byte aligned.
//!
//! Q3_K record (1792 bytes, the file's 110 bytes per row plus 2): the
//! quants as `u = q + 4` (0..8), the 4 quant vectors `a_k` of sub-block `2t`
//! (elements `32t + 4k..+4`) and `b_k` of sub-block `2t+1` (elements
//! `32t + 16 + 4k..+4`) stored in three vectors `x, y, z` = vectors `3t,
//! 3t+1, 3t+2`: `x = a0 | b0<<3 | (a3&3)<<6`, `y = a1 | b1<<3 | (b3&3)<<6`,
//! `z = a2 | b2<<3 | (a3>>2)<<6 | (b3>>2)<<7`, so that six of the eight
//! vectors decode with one and (the `b` ones left in place as `8·u`, their
//! side word `−32·Σa`) and two with shift, and, shift, ternlog; at 1536 four
//! scale vectors `[quad q][row][4]`, the 6-bit signed scale of sub-block
//! `4q + i` at lane byte `[0, 2, 1, 3][i]` (i16 halves = pairs (4q, 4q+1),
//! (4q+2, 4q+3)), the top two bits of lane byte `c` holding bits
//! `4c + 2q..+2` of the row's f16 `d` in quads 0 and 1. The offset 4 is
//! removed by starting each 16-element dot at `−4·Σa`; as |dot| ≤ 16·4·128
//! two sub-blocks' dots share one i32 lane (i16 halves, the `8·dot` shifted
//! by 13) and one `vpdpwssd` with the scale pair adds both products.
//!
//! Q2_K record (1344 bytes, the file's 84 bytes per row): 16 quant vectors,
//! vector `v` holding `qs[4v..][..4]` (bits `2j..2j+2` of `qs[32n + l]`:
//! element `128n + 32j + l`); at 1024 four vectors `[quad q][row][4]` of the
//! file's scale|min<<4 bytes, sub-block `4q + i` at lane byte `[0, 2, 1,
//! 3][i]` as for Q3_K; at 1280 the rows' f16 `d`, at 1312 their f16 `dmin`.
//! Field `j` is only masked, not shifted (its dot comes out times `4^j`,
//! removed exactly when the pair of sub-block dots is packed into i16
//! halves); the mins go through `vpdpwssd` with the Q8_K block's own bsums.
//!
//! IQ4_XS record (2176 bytes, the file's 136 bytes per row): 32 nibble
//! vectors, vector `4ib + k` holding `qs[16ib + 4k..][..4]` (low nibbles:
//! elements `32ib + 4k..`, high nibbles: `32ib + 16 + 4k..`); at 2048 two
//! scale vectors `[quad q][row][4]`, the 6-bit signed scale of sub-block
//! `4q + i` at lane byte `i`, with `d` in the top bits as for Q3_K. One
//! `vpshufb` maps a nibble to `K[n] + 128` (unsigned); the offset 128 is
//! removed by starting each 32-element dot at `−128·Σa`.

use core::arch::x86_64::*;

use super::packed_avx512::{iq4_u8_table, merge_fifth_bit, store_tile};
use crate::formats::packed_layout::k_layout::*;
use crate::tile::{PackedTile as KTile, PackedTileFn};

/// Prefetch distance in records (every token count: a batch of a few
/// tokens streams the weights from memory as gemv does).
const PF_RECS: usize = 4;

/// Prefetch hint for part `part` of `parts` of the record `PF_RECS`
/// ahead (never faults). Spread over a record's steps, so that no burst of
/// prefetches overflows the core's miss buffers.
#[inline(always)]
fn prefetch_part(rec: *const u8, len: usize, part: usize, parts: usize) {
    let ahead = rec.wrapping_add(PF_RECS * len);
    let lines = len / 64;
    for l in part * lines / parts..(part + 1) * lines / parts {
        // SAFETY: prefetch is a hint; it does not fault on any address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l) as *const i8) };
    }
}

/// Tokens whose dot chains [`scaled_dots`] interleaves.
const CHAIN_TOKENS: usize = 4;

/// `isum[t] += Σ_p sc[p] · Σ_k wv[p][k] · (4 activations at token t's row +
/// off[p] + 4k)` for every token `t < T`: `P` sub-blocks (quants `wv[p]`,
/// per-row scales `sc[p]`), one `vpdpbusd` per `k` into a per-token i32 sum,
/// then one `vpmulld` per sub-block.
///
/// The `P·N` chains of [`CHAIN_TOKENS`] tokens are interleaved (k outer,
/// token inner): a `vpdpbusd` waits 4 cycles for its accumulator and a Zen 5
/// core issues two per cycle, so a single chain per token, as the compiler
/// schedules the plain loop, ran at about half that rate. `P = 2` also
/// reads and writes each `isum[t]` once per two sub-blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI; `4·K` bytes at `tile.a + t·a_stride +
/// off[p]` are readable for every `t < T`, `p < P`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn scaled_dots<const T: usize, const P: usize, const K: usize>(
    isum: &mut [__m512i; T],
    wv: &[[__m512i; K]; P],
    sc: &[__m512i; P],
    tile: &KTile,
    off: [usize; P],
) {
    let mut t0 = 0;
    while t0 < T {
        let is = &mut isum[t0..];
        // SAFETY: forwarded contract (tokens t0.. < T).
        unsafe {
            match T - t0 {
                1 => scaled_dot_chain::<1, P, K>(is, wv, sc, tile, off, t0),
                2 => scaled_dot_chain::<2, P, K>(is, wv, sc, tile, off, t0),
                3 => scaled_dot_chain::<3, P, K>(is, wv, sc, tile, off, t0),
                _ => scaled_dot_chain::<CHAIN_TOKENS, P, K>(is, wv, sc, tile, off, t0),
            }
        }
        t0 += CHAIN_TOKENS;
    }
}

/// [`scaled_dots`] for the `N` tokens from `t0` (`isum` starts at token `t0`).
///
/// # Safety
/// As [`scaled_dots`], for tokens `t0..t0 + N`; `isum.len() >= N`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn scaled_dot_chain<const N: usize, const P: usize, const K: usize>(
    isum: &mut [__m512i],
    wv: &[[__m512i; K]; P],
    sc: &[__m512i; P],
    tile: &KTile,
    off: [usize; P],
    t0: usize,
) {
    let row: [*const u8; N] =
        core::array::from_fn(|u| tile.a.wrapping_add((t0 + u) * tile.a_stride));
    let mut s = [[_mm512_setzero_si512(); N]; P];
    // k outer, then sub-block, then token: consecutive vpdpbusd are independent.
    for k in 0..K {
        for ((sp, wp), op) in s.iter_mut().zip(wv).zip(off) {
            for (su, r) in sp.iter_mut().zip(row) {
                // SAFETY: 4 bytes at r + off[p] + 4k are readable (caller).
                let a4 = unsafe { core::ptr::read_unaligned(r.add(op + 4 * k) as *const i32) };
                *su = _mm512_dpbusd_epi32(*su, wp[k], _mm512_set1_epi32(a4));
            }
        }
    }
    for (u, is) in isum.iter_mut().take(N).enumerate() {
        for p in 0..P {
            *is = _mm512_add_epi32(*is, _mm512_mullo_epi32(s[p][u], sc[p]));
        }
    }
}

/// Block `b`'s float step for the types without mins:
/// `acc[t] += isum[t] · (dw · d_a)`, `d_a` token `t`'s Q8_K scale.
///
/// # Safety
/// As the tile functions: token `t < T`'s block `b` is readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn acc_plain<const T: usize>(
    acc: &mut [__m512; T],
    isum: &[__m512i; T],
    tile: &KTile,
    b: usize,
    dw: __m512,
) {
    for t in 0..T {
        // SAFETY: token t's block b (its f32 d) is readable (caller).
        let da = unsafe {
            core::ptr::read_unaligned(tile.a.add(t * tile.a_stride + b * A_BLOCK) as *const f32)
        };
        acc[t] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(isum[t]),
            _mm512_mul_ps(dw, _mm512_set1_ps(da)),
            acc[t],
        );
    }
}

/// `Σ_p w[p] · pair p` in each i32 lane: `vpdpwssd` of the i16 pairs `w[p]`
/// with the `p`-th i32 at `side` (a pair of i16 activation sums), broadcast.
///
/// # Safety
/// `4·P` bytes at `side` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_dot<const P: usize>(w: &[__m512i; P], side: *const u8) -> __m512i {
    let mut d = _mm512_setzero_si512();
    for (p, wp) in w.iter().enumerate() {
        // SAFETY: the p-th i32 at side is readable (caller).
        let pair = unsafe { core::ptr::read_unaligned(side.add(4 * p) as *const i32) };
        d = _mm512_dpwssd_epi32(d, *wp, _mm512_set1_epi32(pair));
    }
    d
}

/// Block `b`'s float step for the types with mins: `acc[t] += isum[t] ·
/// (dw · d_a) − im · (mw · d_a)`, where `im = Σ_p mins[p] · pair p` (`vpdpwssd`
/// against the i32 pairs of i16 activation sums at `pairs(row of token t)`).
///
/// # Safety
/// As the tile functions: token `t < T`'s block `b` and `4·P` bytes at
/// `pairs(row)` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn acc_mins<const T: usize, const P: usize>(
    (acc, isum): (&mut [__m512; T], &[__m512i; T]),
    tile: &KTile,
    b: usize,
    (dw, mw, mins): (__m512, __m512, &[__m512i; P]),
    pairs: impl Fn(*const u8) -> *const u8,
) {
    for t in 0..T {
        // SAFETY: per the contract.
        let (da, im) = unsafe {
            let row = tile.a.add(t * tile.a_stride);
            let da = core::ptr::read_unaligned(row.add(b * A_BLOCK) as *const f32);
            (da, pair_dot(mins, pairs(row)))
        };
        let vda = _mm512_set1_ps(da);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, vda), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(im), _mm512_mul_ps(mw, vda), acc[t]);
    }
}

/// Computes 16 rows × `T` tokens of one Q4_K (`Q5 == false`) or Q5_K row
/// group (Q5_K: the Q4_K record followed by 8 `qh` vectors at
/// [`Q5K_QH`], vector `k` holding `qh[4k..][..4]`; bit `j` of `qh[l]` is
/// bit 4 of element `32j + l`).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and F16C; `tile.qs` has `nb` records of
/// [`Q4_K_REC`] (Q5_K: [`Q5_K_REC`]) bytes readable; each of the `T` activation rows (`a +
/// t·a_stride`) has `nb` Q8_K blocks at its start and `nb·16` at `side_off`
/// readable; `out` has 16 writable floats at every `t·out_stride`, `t < T`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn q4_k_tile<const Q5: bool, const T: usize>(tile: &KTile) {
    let m4 = _mm512_set1_epi8(0x0F);
    let rec_len = if Q5 { Q5_K_REC } else { Q4_K_REC };
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        let rec = tile.qs.wrapping_add(b * rec_len);
        let mut isum = [_mm512_setzero_si512(); T];
        for c in 0..4 {
            prefetch_part(rec, rec_len, c, 4);
            // Sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles).
            // SAFETY: record b is readable (caller): quant vectors 8c..8c+8
            // and the 32 scale bytes of sub-blocks 2c, 2c+1 lie inside it.
            let (wv, sc) = unsafe {
                let mut wv = [[_mm512_setzero_si512(); 8]; 2];
                let [lo, hi] = &mut wv;
                for (k, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                    let v = _mm512_loadu_si512(rec.add((8 * c + k) * 64) as *const __m512i);
                    *l = _mm512_and_si512(v, m4);
                    *h = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    if Q5 {
                        // Bit j of each qh byte is sub-block j's bit 4.
                        let q5 = _mm512_loadu_si512(rec.add(Q5K_QH + 64 * k) as *const __m512i);
                        *l = merge_fifth_bit(*l, q5, 2 * c);
                        *h = merge_fifth_bit(*h, q5, 2 * c + 1);
                    }
                }
                let sc: [__m512i; 2] = core::array::from_fn(|h| {
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(
                        rec.add(Q4K_SC + 16 * (2 * c + h)) as *const __m128i
                    ))
                });
                (wv, sc)
            };
            let q = b * A_BLOCK + A_QS + 64 * c;
            // SAFETY: token t < T has block b's 256 quants readable.
            unsafe { scaled_dots(&mut isum, &wv, &sc, tile, [q, q + 32]) };
        }
        // SAFETY: the d, dmin and min bytes lie inside record b.
        let (dw, mw, mins) = unsafe {
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q4K_D) as *const __m256i));
            let mw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q4K_DMIN) as *const __m256i));
            let mut mins = [_mm512_setzero_si512(); 4];
            for (p, m) in mins.iter_mut().enumerate() {
                *m = _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                    rec.add(Q4K_MIN + 32 * p) as *const __m256i
                ));
            }
            (dw, mw, mins)
        };
        // SAFETY: token t's block b (its f32 d) and its 16 side bytes are
        // readable (caller).
        unsafe {
            let side = |row: *const u8| row.wrapping_add(tile.side_off + b * Q4K_SIDE);
            acc_mins((&mut acc, &isum), tile, b, (dw, mw, &mins), side);
        }
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// Computes 16 rows × `T` tokens of one Q6_K row group.
///
/// # Safety
/// As [`q4_k_tile`] (Q4_K), with records of [`Q6_K_REC`] bytes and `nb·64` side
/// bytes per activation row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn q6_k_tile<const T: usize>(tile: &KTile) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        let rec = tile.qs.wrapping_add(b * Q6_K_REC);
        let mut isum = [_mm512_setzero_si512(); T];
        for n in 0..2 {
            for qi in 0..4 {
                // SAFETY: the scale pair bytes lie inside record b.
                let sp = unsafe {
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                        rec.add(Q6K_SC + 32 * (4 * n + qi)) as *const __m256i
                    ))
                };
                let sc_pair = [
                    _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(sp)),
                    _mm512_srai_epi32::<16>(sp),
                ];
                let g0 = 8 * n + 2 * qi;
                prefetch_part(rec, Q6_K_REC, g0 / 2, 8);
                // Sub-blocks g0 + is (quant vectors 4·is..4·is + 4 of the
                // 32-element run).
                let mut wv = [[_mm512_setzero_si512(); 4]; 2];
                for (is, wis) in wv.iter_mut().enumerate() {
                    for (kk, w) in wis.iter_mut().enumerate() {
                        let k = 4 * is + kk;
                        // SAFETY: ql vector (2n + qi%2)·8 + k and qh vector
                        // 8n + k lie inside record b.
                        let (l, h) = unsafe {
                            (
                                _mm512_loadu_si512(
                                    rec.add(((2 * n + qi % 2) * 8 + k) * 64) as *const __m512i
                                ),
                                _mm512_loadu_si512(
                                    rec.add(Q6K_QH + (8 * n + k) * 64) as *const __m512i
                                ),
                            )
                        };
                        let lo = if qi < 2 {
                            _mm512_and_si512(l, m4)
                        } else {
                            _mm512_and_si512(_mm512_srli_epi16::<4>(l), m4)
                        };
                        let hs = match qi {
                            0 => _mm512_slli_epi16::<4>(h),
                            1 => _mm512_slli_epi16::<2>(h),
                            2 => h,
                            _ => _mm512_srli_epi16::<2>(h),
                        };
                        // lo | (hs & 0x30): the 6-bit unsigned quant.
                        *w = _mm512_ternarylogic_epi32::<0xF8>(lo, hs, m30);
                    }
                }
                let q = b * A_BLOCK + A_QS + 16 * g0;
                // SAFETY: token t < T has block b's quants readable (caller).
                unsafe { scaled_dots(&mut isum, &wv, &sc_pair, tile, [q, q + 16]) };
            }
        }
        // The offset: isum −= 32 · Σ_g sc_g · bsum_g, the scale pairs
        // (sc_2p, sc_2p+1) against the Q8_K block's bsum pairs (exact: an
        // i32 per lane; computed once per block instead of starting each
        // 16-element dot at −32·Σa, which measured ~10 % slower).
        // SAFETY: the scale pair vectors lie inside record b; token t's
        // block b (its 16 i16 bsums) is readable (caller).
        unsafe {
            let mut sp = [_mm512_setzero_si512(); 8];
            for (p, v) in sp.iter_mut().enumerate() {
                *v = _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                    rec.add(Q6K_SC + 32 * p) as *const __m256i
                ));
            }
            for (t, isum_t) in isum.iter_mut().enumerate() {
                let bsums = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_BSUMS);
                *isum_t = _mm512_sub_epi32(*isum_t, _mm512_slli_epi32::<5>(pair_dot(&sp, bsums)));
            }
        }
        // SAFETY: the d bytes lie inside record b.
        let dw = unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q6K_D) as *const __m256i)) };
        // SAFETY: token t's block b is readable (caller).
        unsafe { acc_plain(&mut acc, &isum, tile, b, dw) };
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// The f32 `d` of the 16 rows from the top two bits of the bytes of scale
/// vectors `v0`, `v1` (lane byte `c` holds bits `4c..4c+2` of `d` in `v0`,
/// `4c+2..4c+4` in `v1`; see `packed::pack_scales6`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn d_from_scale_tops(v0: __m512i, v1: __m512i) -> __m512 {
    // Byte c: bits 0..2 from v0's bits 6..8, bits 2..4 from v1's: nibble c.
    let lo = _mm512_srli_epi32::<6>(v0);
    let hi = _mm512_and_si512(_mm512_srli_epi32::<4>(v1), _mm512_set1_epi8(0x0C));
    let nib = _mm512_ternarylogic_epi32::<0xE4>(lo, hi, _mm512_set1_epi8(0x03));
    // Nibbles → bytes (n0 + 16·n1) → the 16-bit d in each i32 lane.
    let bytes = _mm512_maddubs_epi16(nib, _mm512_set1_epi16(0x1001));
    let d = _mm512_madd_epi16(bytes, _mm512_set1_epi32(0x0100_0001));
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d))
}

/// Computes 16 rows × `T` tokens of one Q3_K row group.
///
/// # Safety
/// As [`q4_k_tile`] (Q4_K), with records of [`Q3_K_REC`] bytes and `nb·64` side
/// bytes per activation row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn q3_k_tile<const T: usize>(tile: &KTile) {
    let m3 = _mm512_set1_epi8(3);
    let m4 = _mm512_set1_epi8(4);
    let m7 = _mm512_set1_epi8(7);
    let m18 = _mm512_set1_epi8(0x18);
    let m20 = _mm512_set1_epi8(0x20);
    let m38 = _mm512_set1_epi8(0x38);
    let low16 = _mm512_set1_epi32(0xFFFF);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        let rec = tile.qs.wrapping_add(b * Q3_K_REC);
        let mut isum = [_mm512_setzero_si512(); T];
        for p in 0..8 {
            prefetch_part(rec, Q3_K_REC, p, 8);
            // SAFETY: vectors 3p..3p+3 and scale vector p/2 lie inside record b.
            let (x, y, z, sv) = unsafe {
                let v = rec.add(64 * 3 * p) as *const __m512i;
                (
                    _mm512_loadu_si512(v),
                    _mm512_loadu_si512(v.add(1)),
                    _mm512_loadu_si512(v.add(2)),
                    _mm512_loadu_si512(rec.add(Q3K_SC + 64 * (p / 2)) as *const __m512i),
                )
            };
            // Scales of sub-blocks (2p, 2p+1) as the i16 halves of each lane.
            let sc = if p % 2 == 0 {
                _mm512_srai_epi16::<10>(_mm512_slli_epi16::<10>(sv))
            } else {
                _mm512_srai_epi16::<10>(_mm512_slli_epi16::<2>(sv))
            };
            // The quant vectors u = q + 4 of sub-block 2p, then 8·u of
            // sub-block 2p+1 (left in place; 16-bit shifts only move bits of
            // the next byte into bits the masks drop).
            let wv = [
                _mm512_and_si512(x, m7),
                _mm512_and_si512(y, m7),
                _mm512_and_si512(z, m7),
                _mm512_ternarylogic_epi32::<0xF8>(
                    _mm512_and_si512(_mm512_srli_epi16::<6>(x), m3),
                    _mm512_srli_epi16::<4>(z),
                    m4,
                ),
                _mm512_and_si512(x, m38),
                _mm512_and_si512(y, m38),
                _mm512_and_si512(z, m38),
                _mm512_ternarylogic_epi32::<0xF8>(
                    _mm512_and_si512(_mm512_srli_epi16::<3>(y), m18),
                    _mm512_srli_epi16::<2>(z),
                    m20,
                ),
            ];
            for (t, isum_t) in isum.iter_mut().enumerate() {
                // SAFETY: token t < T has block b's quants and its 64 side
                // bytes readable (caller).
                let s = unsafe {
                    let row = tile.a.add(t * tile.a_stride);
                    let q = row.add(b * A_BLOCK + A_QS + 32 * p);
                    let side = row.add(tile.side_off + b * Q3K_SIDE + 8 * p);
                    let mut s = [
                        _mm512_set1_epi32(core::ptr::read_unaligned(side as *const i32)),
                        _mm512_set1_epi32(core::ptr::read_unaligned(side.add(4) as *const i32)),
                    ];
                    for (k, w) in wv.iter().enumerate() {
                        let a4 = core::ptr::read_unaligned(q.add(4 * k) as *const i32);
                        s[k / 4] = _mm512_dpbusd_epi32(s[k / 4], *w, _mm512_set1_epi32(a4));
                    }
                    s
                };
                // s = (dot_2p, 8·dot_2p+1), |dot| ≤ 16·4·128: the dots fit
                // the i16 halves of a lane; one vpdpwssd adds
                // sc_2p·dot_2p + sc_2p+1·dot_2p+1.
                let pair =
                    _mm512_ternarylogic_epi32::<0xE4>(s[0], _mm512_slli_epi32::<13>(s[1]), low16);
                *isum_t = _mm512_dpwssd_epi32(*isum_t, pair, sc);
            }
        }
        // SAFETY: scale vectors 0 and 1 lie inside record b.
        let (s0, s1) = unsafe {
            (
                _mm512_loadu_si512(rec.add(Q3K_SC) as *const __m512i),
                _mm512_loadu_si512(rec.add(Q3K_SC + 64) as *const __m512i),
            )
        };
        let dw = d_from_scale_tops(s0, s1);
        // SAFETY: token t's block b is readable (caller).
        unsafe { acc_plain(&mut acc, &isum, tile, b, dw) };
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// Computes 16 rows × `T` tokens of one Q2_K row group. The mins use the
/// Q8_K blocks' own 16-element sums (no side words).
///
/// # Safety
/// As [`q4_k_tile`] (Q4_K), with records of [`Q2_K_REC`] bytes and no side
/// bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn q2_k_tile<const T: usize>(tile: &KTile) {
    let m15 = _mm512_set1_epi16(0x0F);
    let low16 = _mm512_set1_epi32(0xFFFF);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        let rec = tile.qs.wrapping_add(b * Q2_K_REC);
        let mut isum = [_mm512_setzero_si512(); T];
        // Pair p: sub-blocks 2p, 2p+1 = 8n + 2j + (0, 1), bits 2j..2j+2 of
        // quant vectors 8n..8n+4 and 8n+4..8n+8.
        for p in 0..8 {
            prefetch_part(rec, Q2_K_REC, p, 8);
            let (n, j) = (p / 4, p % 4);
            // SAFETY: quant vectors 8n..8n+8 and scale vector p/2 lie
            // inside record b.
            let (mut wv, sv) = unsafe {
                let v = rec.add(64 * 8 * n) as *const __m512i;
                let mut wv = [_mm512_setzero_si512(); 8];
                for (k, w) in wv.iter_mut().enumerate() {
                    *w = _mm512_loadu_si512(v.add(k));
                }
                let sv = _mm512_loadu_si512(rec.add(Q2K_SC + 64 * (p / 2)) as *const __m512i);
                (wv, sv)
            };
            // Field j kept in place (u·4^j ≤ 192): the dots come out
            // scaled by 4^j, which the pair packing below removes exactly.
            let mj = _mm512_set1_epi8((3u8 << (2 * j)) as i8);
            for w in wv.iter_mut() {
                *w = _mm512_and_si512(*w, mj);
            }
            // Scales of sub-blocks (2p, 2p+1) as the i16 halves of each lane.
            let sc = if p % 2 == 0 {
                _mm512_and_si512(sv, m15)
            } else {
                _mm512_and_si512(_mm512_srli_epi16::<8>(sv), m15)
            };
            for (t, isum_t) in isum.iter_mut().enumerate() {
                // SAFETY: token t < T has block b's quants readable (caller).
                let s = unsafe {
                    let q = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_QS + 32 * p);
                    let mut s = [_mm512_setzero_si512(); 2];
                    for (k, w) in wv.iter().enumerate() {
                        let a4 = core::ptr::read_unaligned(q.add(4 * k) as *const i32);
                        s[k / 4] = _mm512_dpbusd_epi32(s[k / 4], *w, _mm512_set1_epi32(a4));
                    }
                    s
                };
                // s = 4^j·dot with |dot| ≤ 16·3·128: dot_2p into the low
                // i16 half of each lane, dot_2p+1 into the high one.
                let pair = match j {
                    0 => _mm512_ternarylogic_epi32::<0xE4>(
                        s[0],
                        _mm512_slli_epi32::<16>(s[1]),
                        low16,
                    ),
                    1 => _mm512_ternarylogic_epi32::<0xE4>(
                        _mm512_srai_epi32::<2>(s[0]),
                        _mm512_slli_epi32::<14>(s[1]),
                        low16,
                    ),
                    2 => _mm512_ternarylogic_epi32::<0xE4>(
                        _mm512_srai_epi32::<4>(s[0]),
                        _mm512_slli_epi32::<12>(s[1]),
                        low16,
                    ),
                    _ => _mm512_ternarylogic_epi32::<0xE4>(
                        _mm512_srai_epi32::<6>(s[0]),
                        _mm512_slli_epi32::<10>(s[1]),
                        low16,
                    ),
                };
                *isum_t = _mm512_dpwssd_epi32(*isum_t, pair, sc);
            }
        }
        // SAFETY: d, dmin and the scale vectors lie inside record b.
        let (dw, mw, mins) = unsafe {
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q2K_D) as *const __m256i));
            let mw = _mm512_cvtph_ps(_mm256_loadu_si256(rec.add(Q2K_DMIN) as *const __m256i));
            let mut mins = [_mm512_setzero_si512(); 8];
            for q in 0..4 {
                let sv = _mm512_loadu_si512(rec.add(Q2K_SC + 64 * q) as *const __m512i);
                // Min pairs (4q, 4q+1) and (4q+2, 4q+3) as i16 halves.
                mins[2 * q] = _mm512_and_si512(_mm512_srli_epi16::<4>(sv), m15);
                mins[2 * q + 1] = _mm512_srli_epi16::<12>(sv);
            }
            (dw, mw, mins)
        };
        // SAFETY: token t's block b (its f32 d and 16 i16 bsums, read as
        // 8 pairs) is readable (caller).
        unsafe {
            let bsums = |row: *const u8| row.wrapping_add(b * A_BLOCK + A_BSUMS);
            acc_mins((&mut acc, &isum), tile, b, (dw, mw, &mins), bsums);
        }
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// Computes 16 rows × `T` tokens of one IQ4_XS row group.
///
/// # Safety
/// As [`q4_k_tile`] (Q4_K), with records of [`IQ4_XS_REC`] bytes and `nb·32`
/// side bytes per activation row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn iq4_xs_tile<const T: usize>(tile: &KTile) {
    let m4 = _mm512_set1_epi8(0x0F);
    let table = iq4_u8_table();
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        let rec = tile.qs.wrapping_add(b * IQ4_XS_REC);
        let mut isum = [_mm512_setzero_si512(); T];
        for ib in 0..8 {
            prefetch_part(rec, IQ4_XS_REC, ib, 8);
            // SAFETY: nibble vectors 4ib..4ib+4 and scale vector ib/4 lie
            // inside record b.
            let (v, sv) = unsafe {
                let p = rec.add(64 * 4 * ib) as *const __m512i;
                (
                    [
                        _mm512_loadu_si512(p),
                        _mm512_loadu_si512(p.add(1)),
                        _mm512_loadu_si512(p.add(2)),
                        _mm512_loadu_si512(p.add(3)),
                    ],
                    _mm512_loadu_si512(rec.add(IQ4XS_SC + 64 * (ib / 4)) as *const __m512i),
                )
            };
            // K[n] + 128 for the low nibbles (elements 32ib + 4k..), then
            // the high nibbles (elements 32ib + 16 + 4k..).
            let mut wv = [_mm512_setzero_si512(); 8];
            for k in 0..4 {
                wv[k] = _mm512_shuffle_epi8(table, _mm512_and_si512(v[k], m4));
                wv[4 + k] =
                    _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16::<4>(v[k]), m4));
            }
            // The signed 6-bit scale of sub-block ib (lane byte ib % 4).
            let sc = match ib % 4 {
                0 => _mm512_srai_epi32::<26>(_mm512_slli_epi32::<26>(sv)),
                1 => _mm512_srai_epi32::<26>(_mm512_slli_epi32::<18>(sv)),
                2 => _mm512_srai_epi32::<26>(_mm512_slli_epi32::<10>(sv)),
                _ => _mm512_srai_epi32::<26>(_mm512_slli_epi32::<2>(sv)),
            };
            for (t, isum_t) in isum.iter_mut().enumerate() {
                // SAFETY: token t < T has block b's quants and its 32 side
                // bytes readable (caller).
                let s = unsafe {
                    let row = tile.a.add(t * tile.a_stride);
                    let q = row.add(b * A_BLOCK + A_QS + 32 * ib);
                    let side = row.add(tile.side_off + b * IQ4XS_SIDE + 4 * ib);
                    let mut s = _mm512_set1_epi32(core::ptr::read_unaligned(side as *const i32));
                    for (k, w) in wv.iter().enumerate() {
                        let a4 = core::ptr::read_unaligned(q.add(4 * k) as *const i32);
                        s = _mm512_dpbusd_epi32(s, *w, _mm512_set1_epi32(a4));
                    }
                    s
                };
                *isum_t = _mm512_add_epi32(*isum_t, _mm512_mullo_epi32(s, sc));
            }
        }
        // SAFETY: both scale vectors lie inside record b.
        let (s0, s1) = unsafe {
            (
                _mm512_loadu_si512(rec.add(IQ4XS_SC) as *const __m512i),
                _mm512_loadu_si512(rec.add(IQ4XS_SC + 64) as *const __m512i),
            )
        };
        let dw = d_from_scale_tops(s0, s1);
        // SAFETY: token t's block b is readable (caller).
        unsafe { acc_plain(&mut acc, &isum, tile, b, dw) };
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// Defines `$name(tile, nt)`: `$f::<P.., nt>(tile)` for a run-time `nt`:
/// 1..=16 for the `narrow` types; 1..=32 for the `wide` ones (32 in one
/// tile, 17..=31 as 16 + the rest: a token's result does not depend on the
/// tile it lands in).
macro_rules! k_tile_n {
    (narrow { $($name:ident => $f:ident [$($p:tt),*];)* }
     wide { $($wname:ident => $wf:ident [$($wp:tt),*];)* }) => {
        $(
            /// The tile function for `nt` tokens (1..=16).
            ///
            /// # Safety
            /// As the tile function with `T = nt`; `1 <= nt <= 16`.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn $name(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt!(nt, $f[$($p),*](tile)) }
            }
        )*
        $(
            /// The tile function for `nt` tokens (1..=32).
            ///
            /// # Safety
            /// As the tile function with `T = nt`; `1 <= nt <= 32`.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn $wname(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract: T = 32 = nt, or the first 16
                // tokens and then the nt − 16 from token 16 (their rows and
                // outputs are the tile's, a_stride / out_stride apart).
                unsafe {
                    if nt == 32 {
                        $wf::<$($wp,)* 32>(tile)
                    } else if nt > 16 {
                        $wf::<$($wp,)* 16>(tile);
                        let rest = KTile {
                            a: tile.a.wrapping_add(16 * tile.a_stride),
                            out: tile.out.wrapping_add(16 * tile.out_stride),
                            ..*tile
                        };
                        for_nt!(nt - 16, $wf[$($wp),*](&rest))
                    } else {
                        for_nt!(nt, $wf[$($wp),*](tile))
                    }
                }
            }
        )*
    };
}

k_tile_n! {
    narrow {
        q3_k_n => q3_k_tile[];
        q2_k_n => q2_k_tile[];
        iq4_xs_n => iq4_xs_tile[];
    }
    wide {
        q4_k_n => q4_k_tile[false];
        q5_k_n => q4_k_tile[true];
        q6_k_n => q6_k_tile[];
    }
}

/// Tokens per register tile of Q3_K / Q2_K / IQ4_XS (16 measured ~5 %
/// faster than 8 with `examples/packed_cycles.rs`) and of Q4_K / Q5_K /
/// Q6_K, whose weight decoding is shared by twice as many tokens
/// (`scaled_dots`; Q6_K ~+8 % at 32, Q4_K a few %, on a loaded machine).
const TOKENS_PER_TILE: usize = 16;
const TOKENS_PER_WIDE_TILE: usize = 32;

/// The packed tile of the K-quant (or IQ4_XS) type `ty`, if it has one.
pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
    use crate::GgmlType as T;
    let f: PackedTileFn = match ty {
        T::Q4_K => q4_k_n,
        T::Q5_K => q5_k_n,
        T::Q6_K => q6_k_n,
        T::Q3_K => q3_k_n,
        T::Q2_K => q2_k_n,
        T::IQ4_XS => iq4_xs_n,
        _ => return None,
    };
    let nt = match ty {
        T::Q4_K | T::Q5_K | T::Q6_K => TOKENS_PER_WIDE_TILE,
        _ => TOKENS_PER_TILE,
    };
    Some((f, nt))
}
