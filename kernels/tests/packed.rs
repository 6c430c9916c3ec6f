//! Repacked matmul (`phi_kernels::packed`) against the scalar reference
//! `matmul_with_isa(Isa::Scalar, ...)`.
//!
//! 32-element types (Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL / Q8_0): both compute,
//! per (row, token), Σ_b isum_b · (d_w,b · d_a,b) (+ m_w,b · s_a,b for Q4_1 /
//! Q5_1) with the same Q8_0 / Q8_1 activations and exact integer block dots;
//! they differ only in the order of the f32 additions and in the packed
//! path's fused multiply-adds. Bound used: |Δ| ≤ (n + 2) · f32::EPSILON · T,
//! n = blocks (twice that with a min), T = Σ_b (|isum_b · d_w · d_a| +
//! |m_w · s_a|) (from dequantized weights without their min × dequantized
//! activations, which bounds the first part), plus 1e-30 for exact zeros.
//!
//! Q4_K / Q5_K / Q6_K / Q3_K / Q2_K / IQ4_XS (Q8_K activations): the integer parts per super-block are
//! exact; the f32 combination `d·isum − dmin·imin` differs in order and
//! fusing, so the bound is (nb + 2) · ε · Σ_b (|d_w·d_a·isum_b| +
//! |dmin_w·d_a·imin_b|), computed with the scalar block dots.

use bytemuck::Zeroable;
use phi_kernels::dispatch::is_available;
use phi_kernels::formats::iq4::{block_dot_iq4_xs, BlockIQ4_XS};
use phi_kernels::formats::k_quants::{
    block_dot_q2_k, block_dot_q3_k, block_dot_q4_k, block_dot_q5_k, block_dot_q6_k,
    quantize_row_q8_k, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K,
};
use phi_kernels::packed::{self, matmul_packed, Avx2Dot, NeonDot, PackedWeights};
use phi_kernels::{
    dequantize_row, matmul, matmul_with_isa, quantize_activations, GgmlType, Isa, Scratch, Weights,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Random blocks of `ty` with every quant byte value possible (Q8_0: −128
/// included) and scales in [2⁻⁸, 2⁻⁴) of either sign (Q4_1 / Q5_1: the min
/// too).
fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let bsz = ty.type_size();
    let n = rows * cols / 32;
    let mut v = vec![0u8; n * bsz];
    let with_min = has_min(ty);
    for blk in v.chunks_exact_mut(bsz) {
        for b in &mut blk[2..] {
            *b = rng.next() as u8;
        }
        for at in if with_min { &[0, 2][..] } else { &[0][..] } {
            let d = (1.0 + rng.f32().abs()) * 2f32.powi(-(4 + rng.below(5) as i32));
            let d = if rng.below(2) == 0 { d } else { -d };
            blk[*at..*at + 2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        }
    }
    v
}

/// Whether `ty` has a per-block min (activations Q8_1).
fn has_min(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1)
}

/// The 32-element types with a packed layout.
const TYPES_32: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::IQ4_NL,
];

fn random_x(rng: &mut Rng, n: usize) -> Vec<f32> {
    let scale = 10f32.powi(rng.below(4) as i32 - 2);
    (0..n)
        .map(|_| {
            // Some exact zeros and some outliers, as real activations have.
            match rng.below(16) {
                0 => 0.0,
                1 => rng.f32() * scale * 30.0,
                _ => rng.f32() * scale,
            }
        })
        .collect()
}

/// Per (token, row): Σ_b (|isum_b · d_w · d_a| + |m_w · s_a|), the sum of the
/// magnitudes of the f32 terms both paths add: from the weights dequantized
/// without their min (`q·d`), the dequantized activations, and (Q4_1 /
/// Q5_1) the blocks' `m_w` and Q8_1 `s_a`.
fn abs_terms(w: &Weights<'_>, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    let min = has_min(w.ty);
    let bsz = w.ty.type_size();
    let mut no_min = w.data.to_vec();
    if min {
        for blk in no_min.chunks_exact_mut(bsz) {
            blk[2..4].fill(0);
        }
    }
    let f16 = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    let rb = w.row_bytes();
    let mut wd = vec![0f32; rows * cols];
    for r in 0..rows {
        dequantize_row(w.ty, &no_min[r * rb..], &mut wd[r * cols..][..cols]).unwrap();
    }
    let act = if min { GgmlType::Q8_1 } else { GgmlType::Q8_0 };
    let mut out = vec![0f32; n_tokens * rows];
    for t in 0..n_tokens {
        let qa = quantize_activations(w.ty, &x[t * cols..][..cols]).unwrap();
        let mut ad = vec![0f32; cols];
        dequantize_row(act, &qa, &mut ad).unwrap();
        for r in 0..rows {
            let mut sum: f32 = wd[r * cols..][..cols]
                .iter()
                .zip(&ad)
                .map(|(a, b)| (a * b).abs())
                .sum();
            if min {
                let row = &w.data[r * rb..][..rb];
                for (wb, ab) in row.chunks_exact(bsz).zip(qa.chunks_exact(36)) {
                    sum += (f16(wb, 2) * f16(ab, 2)).abs();
                }
            }
            out[t * rows + r] = sum;
        }
    }
    out
}

/// Which instantiation of an ISA's packed kernels runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavour {
    /// The only one (AVX-512 VNNI).
    Only,
    /// An `Avx2` dot instruction.
    Avx2(Avx2Dot),
    /// A `Neon` dot tier.
    Neon(NeonDot),
}

/// The packed kernels this CPU runs for `ty`: each ISA, for `Avx2` each dot
/// flavour and for `Neon` each tier the CPU has (the others are reported as
/// skipped).
fn isas(ty: GgmlType) -> Vec<(Isa, Flavour)> {
    let mut v = Vec::new();
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Neon] {
        if !packed::supports(isa, ty) || !is_available(isa) {
            continue;
        }
        if isa == Isa::Avx512 {
            if phi_kernels::dispatch::has_avx512_vnni() {
                v.push((isa, Flavour::Only));
            }
        } else if isa == Isa::Neon {
            for tier in NeonDot::ALL {
                if tier.available() {
                    v.push((isa, Flavour::Neon(tier)));
                } else {
                    eprintln!("{ty}: CPU lacks NEON {tier:?}, that tier is not tested here");
                }
            }
        } else {
            for dot in [Avx2Dot::Maddubs, Avx2Dot::AvxVnni, Avx2Dot::Avx512Vl] {
                if dot.available() {
                    v.push((isa, Flavour::Avx2(dot)));
                } else {
                    eprintln!("{ty}: CPU lacks {dot:?}, that instantiation is not tested here");
                }
            }
        }
    }
    v
}

/// `w` packed for `isa` with the flavour `dot`.
fn pack_for(isa: Isa, dot: Flavour, w: &Weights<'_>) -> PackedWeights {
    let mut p = PackedWeights::pack_with_isa(isa, w)
        .unwrap()
        .expect("packable shape");
    match dot {
        Flavour::Avx2(d) if isa == Isa::Avx2 => {
            p.set_avx2_dot(d).unwrap();
            assert_eq!(p.avx2_dot(), Some(d));
        }
        Flavour::Neon(t) => {
            p.set_neon_dot(t).unwrap();
            assert_eq!(p.neon_dot(), Some(t));
        }
        _ => {}
    }
    assert_eq!(p.isa(), isa);
    p
}

/// [`check_case_isa`] on every packed ISA of `ty`.
fn check_case(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, n_tokens: usize) {
    for (isa, dot) in isas(ty) {
        check_case_isa(rng, isa, dot, ty, rows, cols, n_tokens);
    }
}

fn check_case_isa(
    rng: &mut Rng,
    isa: Isa,
    dot: Flavour,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    n_tokens: usize,
) {
    let data = random_weights(rng, ty, rows, cols);
    let w = Weights::new(ty, rows, cols, &data).unwrap();
    let x = random_x(rng, cols * n_tokens);
    let p = pack_for(isa, dot, &w);
    assert_eq!((p.ty(), p.rows(), p.cols()), (ty, rows, cols));
    assert_eq!(
        p.data().as_ptr() as usize % 64,
        0,
        "packed data is 64-byte aligned"
    );
    let mut s = Scratch::default();
    let mut yref = vec![0f32; rows * n_tokens];
    matmul_with_isa(Isa::Scalar, &w, &x, n_tokens, &mut yref, &mut s).unwrap();
    let mut y = vec![f32::NAN; rows * n_tokens];
    matmul_packed(&p, &x, n_tokens, &mut y, &mut s).unwrap();
    let terms = abs_terms(&w, &x, n_tokens);
    // Two roundings per block where there is a min term.
    let nb = cols / 32 * if has_min(ty) { 2 } else { 1 };
    for i in 0..y.len() {
        let bound = (nb + 2) as f32 * f32::EPSILON * terms[i] + 1e-30;
        assert!(
            (y[i] - yref[i]).abs() <= bound,
            "{ty} {isa:?}/{dot:?} {rows}x{cols} n_tokens={n_tokens} token {} row {}: packed {} scalar {} bound {bound}",
            i / rows,
            i % rows,
            y[i],
            yref[i]
        );
    }
}

/// Whether to skip a test written for the AVX-512 VNNI kernels (which pack
/// every type).
fn skip() -> bool {
    if !matches!(packed::packed_isa(), Some(Isa::Avx512 | Isa::Neon)) {
        eprintln!("no AVX-512 VNNI or NEON: packed path not available, test skipped");
        return true;
    }
    false
}

#[test]
fn packed_matches_scalar_on_odd_shapes() {
    // Every packed ISA of the CPU (none: nothing to check).
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Fixed edge cases first: 1 block, 1 group, 1 and 9 tokens (tile of 8 + 1).
    for &(rows, cols, nt) in &[
        (16, 32, 1),
        (16, 32, 9),
        (32, 64, 8),
        (16, 96, 16),
        (48, 4096, 3),
    ] {
        for ty in TYPES_32 {
            check_case(&mut rng, ty, rows, cols, nt);
        }
    }
    for _ in 0..90 {
        let ty = TYPES_32[rng.below(TYPES_32.len())];
        let cols = 32 * (1 + rng.below(128)); // 32..=4096
        let rows = 16 * (1 + rng.below(12));
        // 1..=9 mostly; sometimes up to 20 (full 16-token tiles + remainders).
        let nt = if rng.below(4) == 0 {
            1 + rng.below(20)
        } else {
            1 + rng.below(9)
        };
        check_case(&mut rng, ty, rows, cols, nt);
    }
}

#[test]
fn packed_matches_simd_matmul_large() {
    if skip() {
        return;
    }
    // Many row chunks across the pool, gemv and gemm.
    let mut rng = Rng(42);
    for nt in [1, 17] {
        for ty in TYPES_32 {
            check_case(&mut rng, ty, 512, 3072, nt);
        }
    }
    let data = random_weights(&mut rng, GgmlType::Q4_0, 256, 1024);
    let w = Weights::new(GgmlType::Q4_0, 256, 1024, &data).unwrap();
    let p = PackedWeights::pack(&w).unwrap().unwrap();
    let x = random_x(&mut rng, 1024 * 5);
    let (mut a, mut b) = (vec![0f32; 256 * 5], vec![0f32; 256 * 5]);
    let mut s = Scratch::default();
    matmul(&w, &x, 5, &mut a, &mut s).unwrap();
    matmul_packed(&p, &x, 5, &mut b, &mut s).unwrap();
    let terms = abs_terms(&w, &x, 5);
    for i in 0..a.len() {
        assert!((a[i] - b[i]).abs() <= 2.0 * 34.0 * f32::EPSILON * terms[i] + 1e-30);
    }
}

#[test]
fn pack_returns_none_without_a_packed_path() {
    let mut rng = Rng(7);
    let cases = [
        (GgmlType::Q4_1, 40, 64), // rows not a multiple of 16
        (GgmlType::Q5_0, 8, 32),  // rows not a multiple of 16
        (GgmlType::Q4_0, 8, 64),  // rows not a multiple of 16
        (GgmlType::Q8_0, 24, 64), // rows not a multiple of 16
        (GgmlType::Q4_0, 0, 64),  // empty
    ];
    for (ty, rows, cols) in cases {
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = Weights::new(ty, rows, cols, &data).unwrap();
        assert!(
            PackedWeights::pack(&w).unwrap().is_none(),
            "{ty} {rows}x{cols}"
        );
    }
    // Packed K-quants need whole 16-row groups too.
    for ty in K_TYPES {
        let data = random_k_weights(&mut rng, ty, 8, 256);
        let w = Weights::new(ty, 8, 256, &data).unwrap();
        assert!(PackedWeights::pack(&w).unwrap().is_none(), "{ty} 8x256");
    }
    let f = vec![0u8; 16 * 32 * 4];
    let w = Weights::new(GgmlType::F32, 16, 32, &f).unwrap();
    assert!(PackedWeights::pack(&w).unwrap().is_none());
    // Supported type and shape: Some exactly when the CPU has the path.
    let data = random_weights(&mut rng, GgmlType::Q4_0, 16, 64);
    let w = Weights::new(GgmlType::Q4_0, 16, 64, &data).unwrap();
    assert_eq!(
        PackedWeights::pack(&w).unwrap().is_some(),
        packed::available()
    );
    // Inconsistent weights are an error, not None.
    let bad = Weights {
        ty: GgmlType::Q4_0,
        rows: 16,
        cols: 64,
        data: &data[..data.len() - 1],
    };
    assert!(PackedWeights::pack(&bad).is_err());
    // Kernels the CPU cannot run are an error; types an ISA has no kernel for, None.
    assert!(PackedWeights::pack_with_isa(Isa::Scalar, &w).is_err());
    assert_eq!(
        PackedWeights::pack_with_isa(Isa::Neon, &w).is_ok(),
        is_available(Isa::Neon)
    );
    if is_available(Isa::Avx2) {
        // AVX2 packs every type AVX-512 VNNI packs.
        for ty in TYPES_32 {
            let data = random_weights(&mut rng, ty, 16, 64);
            let w = Weights::new(ty, 16, 64, &data).unwrap();
            let p = PackedWeights::pack_with_isa(Isa::Avx2, &w).unwrap();
            assert!(p.is_some(), "{ty} has an AVX2 packed kernel");
        }
        for ty in K_TYPES {
            let data = random_k_weights(&mut rng, ty, 16, 256);
            let w = Weights::new(ty, 16, 256, &data).unwrap();
            let p = PackedWeights::pack_with_isa(Isa::Avx2, &w).unwrap();
            assert!(p.is_some(), "{ty} has an AVX2 packed kernel");
        }
    }
}

#[test]
fn shape_errors_and_empty_calls() {
    if skip() {
        return;
    }
    let mut rng = Rng(3);
    let data = random_weights(&mut rng, GgmlType::Q8_0, 32, 64);
    let w = Weights::new(GgmlType::Q8_0, 32, 64, &data).unwrap();
    let p = PackedWeights::pack(&w).unwrap().unwrap();
    let mut s = Scratch::default();
    let x = vec![0.5f32; 64 * 2];
    let mut y = vec![0f32; 32 * 2];
    assert!(matmul_packed(&p, &x[..63], 1, &mut y[..32], &mut s).is_err());
    assert!(matmul_packed(&p, &x, 2, &mut y[..33], &mut s).is_err());
    assert!(matmul_packed(&p, &x, usize::MAX, &mut y, &mut s).is_err());
    matmul_packed(&p, &[], 0, &mut [], &mut s).unwrap();
    matmul_packed(&p, &x, 2, &mut y, &mut s).unwrap();
}

#[test]
fn results_independent_of_thread_count_and_scratch_reuse() {
    if skip() {
        return;
    }
    let mut rng = Rng(11);
    let (rows, cols) = (320, 2048);
    let data = random_weights(&mut rng, GgmlType::Q4_0, rows, cols);
    let w = Weights::new(GgmlType::Q4_0, rows, cols, &data).unwrap();
    let p = PackedWeights::pack(&w).unwrap().unwrap();
    for nt in [1, 3, 12] {
        let x = random_x(&mut rng, cols * nt);
        let mut first: Option<Vec<f32>> = None;
        let mut s = Scratch::default();
        for threads in [1, 2, 3, 5, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut y = vec![f32::NAN; rows * nt];
            // Scratch reused across calls of other shapes and of `matmul`.
            let mut junk = vec![0f32; rows * 2];
            pool.install(|| {
                matmul(
                    &w,
                    &x[..cols * 2.min(nt)],
                    2.min(nt),
                    &mut junk[..rows * 2.min(nt)],
                    &mut s,
                )
                .unwrap();
                matmul_packed(&p, &x, nt, &mut y, &mut s).unwrap()
            });
            match &first {
                None => first = Some(y),
                Some(f) => assert!(
                    f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{threads} threads, {nt} tokens differ from 1 thread"
                ),
            }
        }
    }
}

#[test]
fn batch_invariant_gemm_rows_equal_gemv() {
    let mut rng = Rng(5);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::IQ4_NL,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q3_K,
        GgmlType::Q2_K,
        GgmlType::IQ4_XS,
    ] {
        // 37 tokens: a 32-token tile + 5 for Q4_K / Q5_K / Q6_K, 16 + 16 + 5
        // for the others.
        let (rows, cols, nt) = (64, 1024, 37);
        let data = if ty.block_size() == 256 {
            random_k_weights(&mut rng, ty, rows, cols)
        } else {
            random_weights(&mut rng, ty, rows, cols)
        };
        let w = Weights::new(ty, rows, cols, &data).unwrap();
        let x = random_x(&mut rng, cols * nt);
        for (isa, dot) in isas(ty) {
            let p = pack_for(isa, dot, &w);
            let mut s = Scratch::default();
            let mut all = vec![0f32; rows * nt];
            matmul_packed(&p, &x, nt, &mut all, &mut s).unwrap();
            for t in 0..nt {
                let mut one = vec![0f32; rows];
                matmul_packed(&p, &x[t * cols..][..cols], 1, &mut one, &mut s).unwrap();
                assert!(
                    one.iter()
                        .zip(&all[t * rows..][..rows])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty} {isa:?}/{dot:?}: token {t} of a batch differs from its gemv"
                );
            }
        }
    }
}

/// Random Q4_K / Q5_K / Q6_K / Q3_K / Q2_K / IQ4_XS blocks: every quant,
/// scale and min byte random, the f16 scales finite in [2⁻¹², 2⁻⁸) (Q6_K's,
/// Q3_K's and IQ4_XS's of either sign).
fn random_k_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let bsz = ty.type_size();
    let mut v = vec![0u8; rows * cols / 256 * bsz];
    for blk in v.chunks_exact_mut(bsz) {
        for b in blk.iter_mut() {
            *b = rng.next() as u8;
        }
        let neg = rng.below(2) == 0;
        let mut f16 = |neg: bool| {
            let d = (1.0 + rng.f32().abs()) * 2f32.powi(-(8 + rng.below(5) as i32));
            half::f16::from_f32(if neg { -d } else { d }).to_le_bytes()
        };
        match ty {
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&f16(neg)),
            GgmlType::Q3_K => blk[108..110].copy_from_slice(&f16(neg)),
            GgmlType::IQ4_XS => blk[..2].copy_from_slice(&f16(neg)),
            GgmlType::Q2_K => {
                let (d, m) = (f16(false), f16(false));
                blk[80..82].copy_from_slice(&d);
                blk[82..84].copy_from_slice(&m);
            }
            _ => {
                let (d, m) = (f16(false), f16(false));
                blk[..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&m);
            }
        }
    }
    v
}

/// Σ_b Σ_parts |scale · d_a · integer part| over one row's blocks of type
/// `B`; `parts` gives a block's (scale, exact integer) pairs (d·isum and
/// dmin·imin).
fn row_terms<B: bytemuck::Pod>(
    row: &[u8],
    a: &[BlockQ8_K],
    parts: impl Fn(&B, &BlockQ8_K) -> [(f32, i32); 2],
) -> f32 {
    let w: &[B] = bytemuck::cast_slice(row);
    w.iter()
        .zip(a)
        .map(|(bw, ba)| {
            parts(bw, ba)
                .iter()
                .map(|&(d, i)| (d * ba.d * i as f32).abs())
                .sum::<f32>()
        })
        .sum()
}

/// Per (token, row): Σ_b |d_w·d_a·isum_b| + |dmin_w·d_a·imin_b|.
fn k_terms(ty: GgmlType, data: &[u8], rows: usize, cols: usize, x: &[f32], nt: usize) -> Vec<f32> {
    let nb = cols / 256;
    let mut out = vec![0f32; rows * nt];
    for t in 0..nt {
        let mut a = vec![BlockQ8_K::zeroed(); nb];
        quantize_row_q8_k(&x[t * cols..][..cols], &mut a);
        for r in 0..rows {
            let row = &data[r * nb * ty.type_size()..][..nb * ty.type_size()];
            let d = |x: half::f16| x.to_f32();
            let sum = match ty {
                GgmlType::Q4_K => row_terms(row, &a, |w: &BlockQ4_K, q| {
                    let (i, m) = block_dot_q4_k(w, q);
                    [(d(w.d), i), (d(w.dmin), m)]
                }),
                GgmlType::Q5_K => row_terms(row, &a, |w: &BlockQ5_K, q| {
                    let (i, m) = block_dot_q5_k(w, q);
                    [(d(w.d), i), (d(w.dmin), m)]
                }),
                GgmlType::Q2_K => row_terms(row, &a, |w: &BlockQ2_K, q| {
                    let (i, m) = block_dot_q2_k(w, q);
                    [(d(w.d), i), (d(w.dmin), m)]
                }),
                GgmlType::IQ4_XS => row_terms(row, &a, |w: &BlockIQ4_XS, q| {
                    [(d(w.d), block_dot_iq4_xs(w, q)), (0.0, 0)]
                }),
                GgmlType::Q3_K => row_terms(row, &a, |w: &BlockQ3_K, q| {
                    [(d(w.d), block_dot_q3_k(w, q)), (0.0, 0)]
                }),
                _ => row_terms(row, &a, |w: &BlockQ6_K, q| {
                    [(d(w.d), block_dot_q6_k(w, q)), (0.0, 0)]
                }),
            };
            out[t * rows + r] = sum;
        }
    }
    out
}

fn check_k_case(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, nt: usize) {
    for (isa, dot) in isas(ty) {
        check_k_case_isa(rng, isa, dot, ty, rows, cols, nt);
    }
}

fn check_k_case_isa(
    rng: &mut Rng,
    isa: Isa,
    dot: Flavour,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    nt: usize,
) {
    let data = random_k_weights(rng, ty, rows, cols);
    let x = random_x(rng, cols * nt);
    assert_k_close(isa, dot, ty, rows, cols, &data, &x, nt);
}

/// The packed K-quant matmul of `data` against the scalar one, within the
/// bound of the module docs.
#[allow(clippy::too_many_arguments)]
fn assert_k_close(
    isa: Isa,
    dot: Flavour,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: &[u8],
    x: &[f32],
    nt: usize,
) {
    let w = Weights::new(ty, rows, cols, data).unwrap();
    let p = pack_for(isa, dot, &w);
    assert_eq!((p.ty(), p.rows(), p.cols()), (ty, rows, cols));
    assert_eq!(p.data().as_ptr() as usize % 64, 0);
    let mut s = Scratch::default();
    let mut yref = vec![0f32; rows * nt];
    matmul_with_isa(Isa::Scalar, &w, x, nt, &mut yref, &mut s).unwrap();
    let mut y = vec![f32::NAN; rows * nt];
    matmul_packed(&p, x, nt, &mut y, &mut s).unwrap();
    let terms = k_terms(ty, data, rows, cols, x, nt);
    let nb = cols / 256;
    for i in 0..y.len() {
        let bound = (nb + 2) as f32 * f32::EPSILON * terms[i] + 1e-30;
        assert!(
            (y[i] - yref[i]).abs() <= bound,
            "{ty} {isa:?}/{dot:?} {rows}x{cols} n_tokens={nt} token {} row {}: packed {} scalar {} bound {bound}",
            i / rows,
            i % rows,
            y[i],
            yref[i]
        );
    }
}

#[test]
fn packed_k_quants_match_scalar() {
    let mut rng = Rng(0x51_7C_C1_B7_27_22_0A_95);
    // Q4_K / Q5_K / Q6_K run tiles of up to 32 tokens (17..=31 as 16 + the
    // rest): 32, 29 and 37 (32 + 5) cover those paths.
    for &(rows, cols, nt) in &[
        (16, 256, 1),
        (16, 256, 9),
        (32, 512, 8),
        (48, 3072, 3),
        (32, 512, 32),
        (16, 768, 29),
        (32, 256, 37),
    ] {
        for ty in K_TYPES {
            check_k_case(&mut rng, ty, rows, cols, nt);
        }
    }
    for _ in 0..80 {
        let ty = K_TYPES[rng.below(K_TYPES.len())];
        let cols = 256 * (1 + rng.below(12));
        let rows = 16 * (1 + rng.below(10));
        let nt = 1 + rng.below(20);
        check_k_case(&mut rng, ty, rows, cols, nt);
    }
    // Many row chunks across the pool, gemv and gemm.
    for nt in [1, 17] {
        check_k_case(&mut rng, GgmlType::Q4_K, 512, 3072, nt);
        check_k_case(&mut rng, GgmlType::Q5_K, 256, 3072, nt);
        check_k_case(&mut rng, GgmlType::Q6_K, 256, 3072, nt);
        check_k_case(&mut rng, GgmlType::Q3_K, 256, 3072, nt);
        check_k_case(&mut rng, GgmlType::Q2_K, 256, 3072, nt);
        check_k_case(&mut rng, GgmlType::IQ4_XS, 256, 3072, nt);
    }
}

/// The packed K-quant types.
const K_TYPES: [GgmlType; 6] = [
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
    GgmlType::IQ4_XS,
];

/// The three dot instructions of the 256-bit kernels compute the same exact
/// integers and the same f32 operations: their results agree bit for bit
/// (every flavour this CPU has; at least `Maddubs` on any AVX2 CPU).
#[test]
fn avx2_dot_flavours_bit_identical() {
    if !is_available(Isa::Avx2) {
        eprintln!("no AVX2: test skipped");
        return;
    }
    let mut rng = Rng(0xA2D0);
    for ty in TYPES_32.into_iter().chain(K_TYPES) {
        let shapes = [(16, 256, 1), (48, 768, 5), (32, 2048, 13)];
        let dots = [Avx2Dot::Maddubs, Avx2Dot::AvxVnni, Avx2Dot::Avx512Vl];
        flavours_agree(&mut rng, ty, &shapes, Isa::Avx2, dots.map(Flavour::Avx2));
    }
}

/// `matmul_packed` of `ty` gives the same bits with every flavour of `isa`
/// the CPU has (those it lacks are reported and skipped), on random weights
/// and activations of each `(rows, cols, tokens)` shape.
fn flavours_agree(
    rng: &mut Rng,
    ty: GgmlType,
    shapes: &[(usize, usize, usize)],
    isa: Isa,
    flavours: [Flavour; 3],
) {
    for &(rows, cols, nt) in shapes {
        let data = if ty.block_size() == 256 {
            random_k_weights(rng, ty, rows, cols)
        } else {
            random_weights(rng, ty, rows, cols)
        };
        let w = Weights::new(ty, rows, cols, &data).unwrap();
        let x = random_x(rng, cols * nt);
        let mut s = Scratch::default();
        let mut first: Option<Vec<f32>> = None;
        for f in flavours {
            let available = match f {
                Flavour::Avx2(d) => d.available(),
                Flavour::Neon(t) => t.available(),
                Flavour::Only => true,
            };
            if !available {
                eprintln!("CPU lacks {f:?}: not compared");
                continue;
            }
            let p = pack_for(isa, f, &w);
            let mut y = vec![f32::NAN; rows * nt];
            matmul_packed(&p, &x, nt, &mut y, &mut s).unwrap();
            match &first {
                None => first = Some(y),
                Some(f0) => assert!(
                    f0.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty} {rows}x{cols} nt={nt}: {f:?} differs from {:?}",
                    flavours[0]
                ),
            }
        }
    }
}

/// The three NEON tiers compute the same exact integers and the same f32
/// operations: their results agree bit for bit, for gemv and for every
/// tile width (odd token counts included). Tiers the CPU lacks are
/// reported and skipped.
#[test]
fn neon_tiers_bit_identical() {
    if !is_available(Isa::Neon) {
        eprintln!("no NEON: test skipped");
        return;
    }
    let mut rng = Rng(0x4E30);
    let shapes = [(16, 32, 1), (48, 768, 5), (32, 2048, 13), (16, 96, 8)];
    for ty in TYPES_32 {
        flavours_agree(
            &mut rng,
            ty,
            &shapes,
            Isa::Neon,
            NeonDot::ALL.map(Flavour::Neon),
        );
    }
    let k_shapes = [(16, 256, 1), (48, 768, 5), (32, 2048, 13), (16, 512, 8)];
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        flavours_agree(
            &mut rng,
            ty,
            &k_shapes,
            Isa::Neon,
            NeonDot::ALL.map(Flavour::Neon),
        );
    }
}

/// Extreme values: every quant at its largest (and Q8_0 at −128 / 127, Q6_K
/// scales ±127, Q3_K / IQ4_XS scales −32, the IQ4 codebook's −127 / 113)
/// against activations all at ±127, where any i16 sum that could saturate
/// would (the random cases rarely get there).
#[test]
fn packed_extreme_values_do_not_saturate() {
    let mut rng = Rng(0xE7);
    let (rows, cols, nt) = (32, 512, 3);
    // Token 0 all +1, token 1 all −1, token 2 alternating in sign per 16.
    let mut x = vec![1.0f32; cols * nt];
    for (i, v) in x.iter_mut().enumerate() {
        if i / cols == 1 || (i / cols == 2 && (i / 16) % 2 == 1) {
            *v = -1.0;
        }
    }
    for ty in K_TYPES {
        let mut data = random_k_weights(&mut rng, ty, rows, cols);
        for (bi, blk) in data.chunks_exact_mut(ty.type_size()).enumerate() {
            match ty {
                GgmlType::Q6_K => {
                    blk[..192].fill(0xFF);
                    blk[192..208].fill(if bi % 2 == 0 { 0x7F } else { 0x81 });
                }
                GgmlType::Q5_K => blk[4..176].fill(0xFF),
                // Every q = −4 (u = 0) or 3 (u = 7), every scale −32.
                GgmlType::Q3_K => blk[..108].fill(if bi % 2 == 0 { 0x00 } else { 0xFF }),
                // Every q = 3, every scale and min 15.
                GgmlType::Q2_K => blk[..80].fill(0xFF),
                // Every weight K[0] = −127 (or K[15] = 113), every scale −32.
                GgmlType::IQ4_XS => {
                    blk[2..8].fill(0);
                    blk[8..].fill(if bi % 2 == 0 { 0x00 } else { 0xFF });
                }
                _ => blk[4..144].fill(0xFF),
            }
        }
        for (isa, dot) in isas(ty) {
            assert_k_close(isa, dot, ty, rows, cols, &data, &x, nt);
        }
    }
    for ty in [GgmlType::Q8_0, GgmlType::IQ4_NL] {
        let mut data = random_weights(&mut rng, ty, rows, cols);
        for (bi, blk) in data.chunks_exact_mut(ty.type_size()).enumerate() {
            // Q8_0: −128 / 127; IQ4_NL: K[0] = −127 / K[15] = 113.
            let (lo, hi) = if ty == GgmlType::Q8_0 {
                (0x80, 0x7F)
            } else {
                (0x00, 0xFF)
            };
            blk[2..].fill(if (bi / 3) % 2 == 0 { lo } else { hi });
        }
        assert_32_close(ty, rows, cols, &data, &x, nt);
    }
}

/// The packed matmul of the 32-element `data` on every packed ISA against
/// the scalar one, within the bound of the module docs.
fn assert_32_close(ty: GgmlType, rows: usize, cols: usize, data: &[u8], x: &[f32], nt: usize) {
    let w = Weights::new(ty, rows, cols, data).unwrap();
    let terms = abs_terms(&w, x, nt);
    let mut s = Scratch::default();
    let mut yref = vec![0f32; rows * nt];
    matmul_with_isa(Isa::Scalar, &w, x, nt, &mut yref, &mut s).unwrap();
    for (isa, dot) in isas(ty) {
        let p = pack_for(isa, dot, &w);
        let mut y = vec![f32::NAN; rows * nt];
        matmul_packed(&p, x, nt, &mut y, &mut s).unwrap();
        for i in 0..y.len() {
            let bound = (cols / 32 + 2) as f32 * f32::EPSILON * terms[i] + 1e-30;
            assert!(
                (y[i] - yref[i]).abs() <= bound,
                "{ty} {isa:?}/{dot:?} extreme: {} vs {} at {i}",
                y[i],
                yref[i]
            );
        }
    }
}

/// Streamed matrices (each group packed on the fly from the file's bytes)
/// give bit for bit the results of the same matrices packed once, on every
/// packed ISA and dot flavour this CPU runs, for 1 to 17 tokens; the
/// `Matrix` of the registry streams them until `pack_streamed` makes the
/// copy, and the results stay the same.
#[test]
fn streamed_matrices_match_packed_bit_for_bit() {
    use phi_kernels::packed::{matmul_streamed, StreamedWeights};
    let mut rng = Rng(0x5EED_5EED);
    let mut streamed_any = false;
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::IQ4_NL,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        for (isa, flavour) in isas(ty) {
            for &(rows, blocks) in &[(16, 1), (48, 3), (80, 10), (32, 32)] {
                let cols = blocks * ty.block_size();
                let data = if ty.block_size() == 256 {
                    random_k_weights(&mut rng, ty, rows, cols)
                } else {
                    random_weights(&mut rng, ty, rows, cols)
                };
                let w = Weights::new(ty, rows, cols, &data).unwrap();
                let Some(mut s) = StreamedWeights::new(isa, &w).unwrap() else {
                    continue;
                };
                streamed_any = true;
                match flavour {
                    Flavour::Avx2(d) if isa == Isa::Avx2 => s.set_avx2_dot(d).unwrap(),
                    Flavour::Neon(t) => s.set_neon_dot(t).unwrap(),
                    _ => {}
                }
                let p = pack_for(isa, flavour, &w);
                let copy = PackedWeights::from_streamed(&s, &w).unwrap();
                assert_eq!(copy.data(), p.data(), "{ty} {isa:?}: copy bytes");
                for nt in [1, 2, 3, 5, 9, 17] {
                    let x = random_x(&mut rng, cols * nt);
                    let mut sc = Scratch::default();
                    let mut yp = vec![0f32; rows * nt];
                    let mut ys = vec![1f32; rows * nt];
                    matmul_packed(&p, &x, nt, &mut yp, &mut sc).unwrap();
                    matmul_streamed(&s, &w, &x, nt, &mut ys, &mut sc).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&ys),
                        bits(&yp),
                        "{ty} {isa:?} {flavour:?} {rows}x{cols}, {nt} tokens"
                    );
                }
                // The bytes of a matrix of another shape are refused.
                if rows != 16 {
                    let part = &data[..16 * data.len() / rows];
                    let short = Weights::new(ty, 16, cols, part).unwrap();
                    let (x, mut y) = (vec![0f32; cols], vec![0f32; 16]);
                    let r = matmul_streamed(&s, &short, &x, 1, &mut y, &mut Scratch::default());
                    assert!(r.is_err(), "{ty}: bytes of another shape");
                }
            }
        }
    }
    if !streamed_any {
        eprintln!("no group packer on this CPU: nothing streamed (test skipped)");
        return;
    }

    // The registry's life cycle: streamed, then packed on request.
    let (ty, rows, cols, nt) = (GgmlType::Q8_0, 64, 256, 3);
    let data = random_weights(&mut rng, ty, rows, cols);
    let w = Weights::new(ty, rows, cols, &data).unwrap();
    let stream = phi_kernels::Config {
        stream: true,
        ..Default::default()
    };
    let m = phi_kernels::prepare(&w, &stream).unwrap();
    assert!(m.is_streamed() && !m.is_packed());
    let x = random_x(&mut rng, cols * nt);
    let mut sc = Scratch::default();
    let mut y0 = vec![0f32; rows * nt];
    matmul(m.view(&data).unwrap(), &x, nt, &mut y0, &mut sc).unwrap();
    assert!(m.pack_streamed(&data).unwrap());
    assert!(!m.is_streamed() && m.is_packed());
    assert!(!m.pack_streamed(&data).unwrap(), "packed twice");
    let mut y1 = vec![0f32; rows * nt];
    // The copy no longer reads the source.
    matmul(m.view(&[]).unwrap(), &x, nt, &mut y1, &mut sc).unwrap();
    assert_eq!(y0, y1);
    // The default packs at load.
    let m = phi_kernels::prepare(&w, &phi_kernels::Config::default()).unwrap();
    assert!(m.is_packed() && !m.is_streamed());
}
