//! The x86 kernel bodies, written once and compiled per ISA: `avx2.rs`
//! instantiates them with `"avx2,fma,f16c"` and the `vpmaddubsw` dot,
//! `avx512.rs` with the AVX-512 features (32 vector registers, larger tiles)
//! and, when the CPU has it, the VNNI `vpdpbusd` dot.
//!
//! Everything works on 256-bit vectors: one 32-element block is one `__m256i`
//! of bytes, so the block loops have no lane shuffling across blocks.
//!
//! Quantized types are decoded to 32 **unsigned** bytes `u` plus a bias `B`
//! (Q4_0: nibble, B = 8; Q5_0: 5-bit value, B = 16; Q4_1/Q5_1: B = 0), so
//! that the integer dot with signed activations `a` is
//! `Σ u·a − B·Σ a`, exact in i32 (u ≤ 31, |a| ≤ 127: `vpmaddubsw` pairs stay
//! below 2¹⁵). Q8_0 weights are signed: `Σ |w|·(a·sign w)`.

/// Type codes for the const-generic bodies (the one `Block32` numbering).
pub(crate) use crate::formats::layout::code::{IQ4_NL, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::formats::layout::Block32;

/// Float type codes.
pub(crate) const F32: u8 = 0;
pub(crate) const F16: u8 = 1;
pub(crate) const BF16: u8 = 2;

/// Bytes per weight block.
pub(crate) const fn w_block(k: u8) -> usize {
    Block32::of(k).bytes()
}

/// Whether the type has a min `m` (and so pairs with Q8_1 activations).
pub(crate) const fn has_min(k: u8) -> bool {
    Block32::of(k).has_min()
}

/// Bias subtracted from the unsigned decoded values.
pub(crate) const fn bias(k: u8) -> i8 {
    match k {
        Q4_0 => 8,
        Q5_0 => 16,
        _ => 0,
    }
}

/// Bytes per activation block: Q8_1 (36) for types with a min, else Q8_0 (34).
pub(crate) const fn a_block(k: u8) -> usize {
    Block32::of(k).act_bytes()
}

/// Bytes per float element.
pub(crate) const fn f_size(k: u8) -> usize {
    if k == F32 {
        4
    } else {
        2
    }
}

/// Runs tile function `tile::<R, T>` over an `nr × nt` block of
/// `args`, writing `out[t * nr + r]`.
macro_rules! drive {
    ($tile:ident, $k:ident, $len:expr, $args:expr, $out:expr, $r:literal, $t:literal) => {{
        let args: &MatArgs<'_> = $args;
        let out: &mut [f32] = $out;
        let (nr, nt) = (args.nr, args.nt);
        let wp = args.w.as_ptr();
        let ap = args.a.as_ptr();
        let mut r0 = 0;
        while r0 < nr {
            let rows_left = nr - r0;
            let mut t0 = 0;
            while t0 < nt {
                let toks_left = nt - t0;
                // SAFETY: rows r0.. and tokens t0.. are inside
                // `args`, which the caller guarantees valid.
                unsafe {
                    if rows_left >= $r && toks_left >= $t {
                        let res = $tile::<$k, $r, $t>(
                            $len,
                            core::array::from_fn(|i| wp.add((r0 + i) * args.w_stride)),
                            core::array::from_fn(|i| ap.add((t0 + i) * args.a_stride)),
                        );
                        for (i, row) in res.iter().enumerate() {
                            for (j, v) in row.iter().enumerate() {
                                out[(t0 + j) * nr + r0 + i] = *v;
                            }
                        }
                        t0 += $t;
                    } else if rows_left >= $r {
                        let res = $tile::<$k, $r, 1>(
                            $len,
                            core::array::from_fn(|i| wp.add((r0 + i) * args.w_stride)),
                            [ap.add(t0 * args.a_stride)],
                        );
                        for (i, row) in res.iter().enumerate() {
                            out[t0 * nr + r0 + i] = row[0];
                        }
                        t0 += 1;
                    } else if toks_left >= $t {
                        let res = $tile::<$k, 1, $t>(
                            $len,
                            [wp.add(r0 * args.w_stride)],
                            core::array::from_fn(|j| ap.add((t0 + j) * args.a_stride)),
                        );
                        for (j, v) in res[0].iter().enumerate() {
                            out[(t0 + j) * nr + r0] = *v;
                        }
                        t0 += $t;
                    } else {
                        let res = $tile::<$k, 1, 1>(
                            $len,
                            [wp.add(r0 * args.w_stride)],
                            [ap.add(t0 * args.a_stride)],
                        );
                        out[t0 * nr + r0] = res[0][0];
                        t0 += 1;
                    }
                }
            }
            r0 += if rows_left >= $r { $r } else { 1 };
        }
    }};
}

/// Instantiates the kernels for one ISA. `$feat` is the target-feature
/// list, `$dot` the including module's `fn(src, u, a) -> __m256i`
/// (`src` + Σ of 4 unsigned×signed byte products per i32 lane, built with `$feat`),
/// `$gr`/`$gt` the gemm tile (rows × tokens), `$vr` the rows per gemv step.
macro_rules! x86_kernels {
    ($feat:literal, $dot:ident, $gr:literal, $gt:literal, $vr:literal) => {
        use crate::arch::x86_64::body::*;
        use crate::tile::MatArgs;
        use core::arch::x86_64::*;

        /// f16 bits at `p` (unaligned) to f32.
        ///
        /// # Safety
        /// `p..p+2` readable; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn ld_f16(p: *const u8) -> f32 {
            // SAFETY: the caller guarantees 2 readable bytes at `p`.
            let bits = unsafe { core::ptr::read_unaligned(p as *const u16) };
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }

        /// Horizontal sum of 8 floats.
        #[target_feature(enable = $feat)]
        #[inline]
        fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }

        /// `src` + Σ over groups of 4 of unsigned `u` times signed `a` (8 i32 lanes).
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_u8_i8(src: __m256i, u: __m256i, a: __m256i) -> __m256i {
            $dot(src, u, a)
        }

        /// 32 bytes: bit `j` of the little-endian u32 at `p` → 0x10 in byte `j`.
        ///
        /// # Safety
        /// `p..p+4` readable; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn high_bits(p: *const u8) -> __m256i {
            // SAFETY: the caller guarantees 4 readable bytes at `p`.
            let qh = unsafe { core::ptr::read_unaligned(p as *const u32) };
            let x = _mm256_set1_epi32(qh as i32);
            let shuf = _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            let y = _mm256_and_si256(_mm256_shuffle_epi8(x, shuf), bit);
            _mm256_and_si256(_mm256_cmpeq_epi8(y, bit), _mm256_set1_epi8(0x10))
        }

        /// 16 packed nibble bytes at `p` → 32 bytes (low nibbles, then high).
        ///
        /// # Safety
        /// `p..p+16` readable; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn nibbles(p: *const u8) -> __m256i {
            // SAFETY: the caller guarantees 16 readable bytes at `p`.
            let q = unsafe { _mm_loadu_si128(p as *const __m128i) };
            let m = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(q, m);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m);
            _mm256_set_m128i(hi, lo)
        }

        /// Decodes weight block at `p`: (bytes, d, m). Bytes are unsigned
        /// (biased) for Q4/Q5 and signed for Q8_0.
        ///
        /// # Safety
        /// `p..p+w_block(K)` readable; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn decode<const K: u8>(p: *const u8) -> (__m256i, f32, f32) {
            // SAFETY: (all reads below) offsets lie inside the block of
            // `w_block(K)` bytes the caller guarantees readable.
            unsafe {
                let d = ld_f16(p);
                match K {
                    Q4_0 => (nibbles(p.add(2)), d, 0.0),
                    Q4_1 => (nibbles(p.add(4)), d, ld_f16(p.add(2))),
                    Q5_0 => (
                        _mm256_or_si256(nibbles(p.add(6)), high_bits(p.add(2))),
                        d,
                        0.0,
                    ),
                    Q5_1 => (
                        _mm256_or_si256(nibbles(p.add(8)), high_bits(p.add(4))),
                        d,
                        ld_f16(p.add(2)),
                    ),
                    _ => (_mm256_loadu_si256(p.add(2) as *const __m256i), d, 0.0),
                }
            }
        }

        /// One R×T tile over all blocks: `res[r][t]` = row r · token t.
        ///
        /// # Safety
        /// Each `w[r]` has `nb` blocks of `w_block(K)` bytes readable, each
        /// `a[t]` `nb` blocks of `a_block(K)` bytes; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        pub(crate) unsafe fn qtile<const K: u8, const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> [[f32; T]; R] {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let mut accm = [[0.0f32; T]; R];
            let qa = if has_min(K) { 4 } else { 2 };
            let bias_v = _mm256_set1_epi8(bias(K));
            // gemv tiles stream their rows side by side, which defeats the
            // hardware prefetcher: prefetch into L2 the tile after the next
            // one (rows are contiguous in every matrix the driver passes),
            // spread evenly over this tile's blocks.
            let tile_bytes = R * nb * w_block(K);
            let pf_lines = if T == 1 && R > 1 {
                tile_bytes.div_ceil(64).div_ceil(nb.max(1))
            } else {
                0
            };
            let pf_base = w[0].wrapping_add(2 * tile_bytes);
            for b in 0..nb {
                for k in 0..pf_lines {
                    // A prefetch is only a hint: it never faults, even past the end.
                    _mm_prefetch::<_MM_HINT_T1>(
                        pf_base.wrapping_add((b * pf_lines + k) * 64) as *const i8
                    );
                }
                let mut wv = [_mm256_setzero_si256(); R];
                let mut ws = [_mm256_setzero_si256(); R];
                let mut dw = [0.0f32; R];
                let mut mw = [0.0f32; R];
                for r in 0..R {
                    // SAFETY: block `b < nb` of row `r` is readable (caller).
                    let (v, d, m) = unsafe { decode::<K>(w[r].add(b * w_block(K))) };
                    if K == Q8_0 {
                        ws[r] = v;
                        wv[r] = _mm256_sign_epi8(v, v);
                    } else {
                        wv[r] = v;
                    }
                    dw[r] = d;
                    mw[r] = m;
                }
                let dwv: [__m256; R] = core::array::from_fn(|r| _mm256_set1_ps(dw[r]));
                for t in 0..T {
                    // SAFETY: block `b < nb` of token `t` is readable (caller).
                    let (av, da, sa) = unsafe {
                        let pa = a[t].add(b * a_block(K));
                        let s = if has_min(K) { ld_f16(pa.add(2)) } else { 0.0 };
                        (
                            _mm256_loadu_si256(pa.add(qa) as *const __m256i),
                            ld_f16(pa),
                            s,
                        )
                    };
                    let dav = _mm256_set1_ps(da);
                    // −B·Σa per lane, the starting value of every row's dot.
                    let zero = _mm256_setzero_si256();
                    let neg_corr = if bias(K) != 0 {
                        _mm256_sub_epi32(zero, dot_u8_i8(zero, bias_v, av))
                    } else {
                        zero
                    };
                    for r in 0..R {
                        let di = if K == Q8_0 {
                            dot_u8_i8(zero, wv[r], _mm256_sign_epi8(av, ws[r]))
                        } else {
                            dot_u8_i8(neg_corr, wv[r], av)
                        };
                        acc[r][t] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(di),
                            _mm256_mul_ps(dwv[r], dav),
                            acc[r][t],
                        );
                        if has_min(K) {
                            accm[r][t] += mw[r] * sa;
                        }
                    }
                }
            }
            let mut res = [[0.0f32; T]; R];
            for r in 0..R {
                for t in 0..T {
                    res[r][t] = hsum(acc[r][t]) + accm[r][t];
                }
            }
            res
        }

        /// 8 elements of float type `K` at `p` as f32.
        ///
        /// # Safety
        /// `8 * f_size(K)` bytes readable at `p`; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn ld8<const K: u8>(p: *const u8) -> __m256 {
            // SAFETY: the caller guarantees the bytes are readable.
            unsafe {
                match K {
                    F32 => _mm256_loadu_ps(p as *const f32),
                    F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                    _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                        _mm_loadu_si128(p as *const __m128i),
                    ))),
                }
            }
        }

        /// One element of float type `K` at `p` as f32.
        ///
        /// # Safety
        /// `f_size(K)` bytes readable at `p`; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn ld1<const K: u8>(p: *const u8) -> f32 {
            // SAFETY: the caller guarantees the bytes are readable.
            unsafe {
                match K {
                    F32 => core::ptr::read_unaligned(p as *const f32),
                    F16 => ld_f16(p),
                    _ => f32::from_bits((core::ptr::read_unaligned(p as *const u16) as u32) << 16),
                }
            }
        }

        /// Float R×T tile over `n` elements (weights and activations both of type `K`).
        ///
        /// # Safety
        /// `n * f_size(K)` bytes readable at every `w[r]` and `a[t]`; CPU has `$feat`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn ftile<const K: u8, const R: usize, const T: usize>(
            n: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> [[f32; T]; R] {
            let es = f_size(K);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let n8 = n / 8 * 8;
            // gemv: prefetch into L2 the tile after the next one, spread over
            // this tile's 8-element steps (as `qtile` does).
            let tile_bytes = R * n * es;
            let pf_lines = if T == 1 && R > 1 {
                tile_bytes.div_ceil(64).div_ceil((n / 8).max(1))
            } else {
                0
            };
            let pf_base = w[0].wrapping_add(2 * tile_bytes);
            let mut i = 0;
            while i < n8 {
                for k in 0..pf_lines {
                    // A prefetch is only a hint: it never faults, even past the end.
                    _mm_prefetch::<_MM_HINT_T1>(
                        pf_base.wrapping_add((i / 8 * pf_lines + k) * 64) as *const i8
                    );
                }
                let mut wv = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    // SAFETY: i + 8 <= n elements are readable (caller).
                    wv[r] = unsafe { ld8::<K>(w[r].add(i * es)) };
                }
                for t in 0..T {
                    // SAFETY: as above.
                    let av = unsafe { ld8::<K>(a[t].add(i * es)) };
                    for r in 0..R {
                        acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
                    }
                }
                i += 8;
            }
            let mut res = [[0.0f32; T]; R];
            for r in 0..R {
                for t in 0..T {
                    let mut s = hsum(acc[r][t]);
                    for j in n8..n {
                        // SAFETY: j < n elements are readable (caller).
                        s += unsafe { ld1::<K>(w[r].add(j * es)) * ld1::<K>(a[t].add(j * es)) };
                    }
                    res[r][t] = s;
                }
            }
            res
        }

        /// Tile function for quantized type `K` (see [`crate::tile::MatFn`]).
        ///
        /// # Safety
        /// CPU has `$feat`; `args.is_valid(row bytes, act row bytes, out.len())`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn mat_q<const K: u8>(args: &MatArgs<'_>, out: &mut [f32]) {
            let nb = args.n / 32;
            if args.nt == 1 {
                drive!(qtile, K, nb, args, out, $vr, 1);
            } else {
                drive!(qtile, K, nb, args, out, $gr, $gt);
            }
        }

        /// Tile function for float type `K` (see [`crate::tile::MatFn`]).
        ///
        /// # Safety
        /// CPU has `$feat`; `args.is_valid(row bytes, act row bytes, out.len())`.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn mat_f<const K: u8>(args: &MatArgs<'_>, out: &mut [f32]) {
            let n = args.n;
            if args.nt == 1 {
                drive!(ftile, K, n, args, out, $vr, 1);
            } else {
                drive!(ftile, K, n, args, out, $gr, $gt);
            }
        }

        /// The tile function for `ty` on this ISA.
        pub(crate) fn mat_for(ty: crate::GgmlType) -> Option<crate::tile::MatFn> {
            use crate::GgmlType as T;
            let f: crate::tile::MatFn = match ty {
                T::F32 => mat_f::<F32>,
                T::F16 => mat_f::<F16>,
                T::BF16 => mat_f::<BF16>,
                T::Q4_0 => mat_q::<Q4_0>,
                T::Q4_1 => mat_q::<Q4_1>,
                T::Q5_0 => mat_q::<Q5_0>,
                T::Q5_1 => mat_q::<Q5_1>,
                T::Q8_0 => mat_q::<Q8_0>,
                _ => return None,
            };
            Some(f)
        }
    };
}

pub(crate) use x86_kernels;
