//! AVX-512 VNNI body of the repacked Q4_0 / Q8_0 matmul (`crate::packed`).
//!
//! A row group is 16 weight rows. Per 32-element block the packed weights
//! hold, for each 4-element group `j` (elements `4j..4j+3`), one 64-byte
//! vector whose i32 lane `r` is the 4 *unsigned* weights of row `r`
//! (Q4_0: the nibbles, 0..15, two groups per stored vector — low nibbles
//! are group `k`, high nibbles group `k + 4`; Q8_0: `w + 128`). One
//! `vpdpbusd` against a broadcast 4-byte group of activations therefore
//! adds 4 products to each of 16 rows, and a block costs 8 `vpdpbusd`, one
//! int→float conversion and one multiply-add per 16 rows and token. The bias
//! of the unsigned weights is removed exactly in integer: each dot starts
//! at the per-block `−bias·Σa` the driver stored beside the activations.

use core::arch::x86_64::*;

/// Packed bytes of one block of one 16-row group: Q4_0 (4 vectors of 64).
pub(crate) const Q4_0_BLOCK: usize = 256;
/// Packed bytes of one block of one 16-row group: Q8_0 (8 vectors of 64).
pub(crate) const Q8_0_BLOCK: usize = 512;
/// gemv prefetch distance in bytes of packed quants.
const PF_DIST: usize = 4096;
/// Bytes of one Q8_0 activation block (f16 scale + 32 × i8).
const A_BLOCK: usize = 34;

/// Where one call of [`group_tile`] reads and writes.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    /// Blocks per row.
    pub nb: usize,
    /// Packed quant vectors of this group: `nb` blocks of 256 (Q4_0) / 512 (Q8_0) bytes.
    pub qs: *const u8,
    /// 16 f16 row scales per block: `nb × 32` bytes.
    pub sc: *const u8,
    /// First activation row: `nb` Q8_0 blocks, then at `side_off` `nb`
    /// pairs `(d_a: f32, −bias·Σa: i32)`.
    pub a: *const u8,
    pub a_stride: usize,
    pub side_off: usize,
    /// `out[t * out_stride + r]` for `r < 16`, `t < T`.
    pub out: *mut f32,
    pub out_stride: usize,
}

/// Computes 16 rows × `T` tokens of one row group.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and F16C (`dispatch::has_avx512_vnni`);
/// `tile.qs` has `nb` packed blocks readable, `tile.sc` `nb × 32` bytes,
/// each of the `T` activation rows (`a + t·a_stride`) has `nb·34` bytes at
/// its start and `nb·8` bytes at `side_off` readable, and `out` has 16
/// writable floats at every `t·out_stride`, `t < T`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn group_tile<const Q8: bool, const T: usize>(tile: &Tile) {
    let qb = if Q8 { Q8_0_BLOCK } else { Q4_0_BLOCK };
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        // SAFETY: block b < nb of the group's quants and scales is readable
        // (caller); unaligned loads need no alignment.
        let (wv, dw) = unsafe {
            let p = tile.qs.add(b * qb);
            if T == 1 {
                // gemv streams the weights from memory: prefetch ahead (a
                // hint, never faults even past the end of the buffer).
                let ahead = p.wrapping_add(PF_DIST);
                for l in 0..qb / 64 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8);
                }
            }
            let mut wv = [_mm512_setzero_si512(); 8];
            if Q8 {
                for (j, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(p.add(64 * j) as *const __m512i);
                }
            } else {
                for k in 0..4 {
                    let v = _mm512_loadu_si512(p.add(64 * k) as *const __m512i);
                    wv[k] = _mm512_and_si512(v, m4);
                    wv[k + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                }
            }
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(tile.sc.add(b * 32) as *const __m256i));
            (wv, dw)
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: token t < T has block b's 34 bytes and its 8 side
            // bytes readable (caller); all reads are unaligned.
            let (s, da) = unsafe {
                let row = tile.a.add(t * tile.a_stride);
                let q = row.add(b * A_BLOCK + 2);
                let side = row.add(tile.side_off + b * 8);
                let da = core::ptr::read_unaligned(side as *const f32);
                let corr = core::ptr::read_unaligned(side.add(4) as *const i32);
                let mut s = _mm512_set1_epi32(corr);
                for (j, w) in wv.iter().enumerate() {
                    let g = core::ptr::read_unaligned(q.add(4 * j) as *const i32);
                    s = _mm512_dpbusd_epi32(s, *w, _mm512_set1_epi32(g));
                }
                (s, da)
            };
            *acc_t = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(s),
                _mm512_mul_ps(dw, _mm512_set1_ps(da)),
                *acc_t,
            );
        }
    }
    for (t, acc_t) in acc.iter().enumerate() {
        // SAFETY: 16 floats at out + t·out_stride are writable (caller).
        unsafe { _mm512_storeu_ps(tile.out.add(t * tile.out_stride), *acc_t) };
    }
}

/// [`group_tile`] for `nt` tokens (1..=16) chosen at run time.
///
/// # Safety
/// As [`group_tile`] with `T = nt`; `1 <= nt <= 16`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn group_tile_n<const Q8: bool>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract; each arm passes T = nt.
    unsafe {
        match nt {
            1 => group_tile::<Q8, 1>(tile),
            2 => group_tile::<Q8, 2>(tile),
            3 => group_tile::<Q8, 3>(tile),
            4 => group_tile::<Q8, 4>(tile),
            5 => group_tile::<Q8, 5>(tile),
            6 => group_tile::<Q8, 6>(tile),
            7 => group_tile::<Q8, 7>(tile),
            8 => group_tile::<Q8, 8>(tile),
            9 => group_tile::<Q8, 9>(tile),
            10 => group_tile::<Q8, 10>(tile),
            11 => group_tile::<Q8, 11>(tile),
            12 => group_tile::<Q8, 12>(tile),
            13 => group_tile::<Q8, 13>(tile),
            14 => group_tile::<Q8, 14>(tile),
            15 => group_tile::<Q8, 15>(tile),
            16 => group_tile::<Q8, 16>(tile),
            _ => debug_assert!(false, "group_tile_n: nt = {nt}"),
        }
    }
}
