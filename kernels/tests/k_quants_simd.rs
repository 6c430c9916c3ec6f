//! SIMD K-quant / IQ4 tile functions against the scalar reference, through
//! the kernel table (`table::ops(ty, isa).mat`), on random blocks and odd
//! numbers of super-blocks.
//!
//! * With scales of ±1 and activations in {-1, 0, 1} every partial sum
//!   either path forms is an integer below 2^24 (for ≤ 5 super-blocks), so
//!   every float operation is exact and the SIMD result must equal the
//!   scalar one bit for bit: this checks the integer parts (bit unpacking,
//!   sub-block scales, mins / offsets) with no tolerance.
//! * With random scales the results may differ only by f32 accumulation
//!   order: |simd − scalar| ≤ 2e-6 · B, where B bounds the magnitude of every
//!   partial sum a SIMD lane can form (see [`lane_bound`]).

use bytemuck::Zeroable;
use half::f16;
use phi_kernels::formats::iq4::*;
use phi_kernels::formats::k_quants::*;
use phi_kernels::formats::BlockQ8_0;
use phi_kernels::table::{ops, MatArgs};
use phi_kernels::{dispatch, GgmlType, Isa};
use proptest::prelude::*;

const TYPES: [GgmlType; 7] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
    GgmlType::IQ4_NL,
];

fn simd_isas() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect()
}

/// Deterministic byte stream from a proptest seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51afd7ed558ccd);
        z ^ (z >> 33)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Uniform in -1..=1 (exact mode).
    fn q8_small(&mut self) -> i8 {
        (self.next() % 3) as i8 - 1
    }
    /// A finite scale: ±1 (exact mode), or a random f16 magnitude.
    fn scale(&mut self, exact: bool) -> f16 {
        let sign = if self.next() & 1 == 0 { 1.0 } else { -1.0 };
        if exact {
            f16::from_f32(sign)
        } else {
            let m = 1e-4 + (self.next() % 10_000) as f32 * 1e-5;
            f16::from_f32(sign * m)
        }
    }
}

/// `nb` random weight blocks of `ty` with finite f16 scales.
fn weight_row(ty: GgmlType, nb: usize, rng: &mut Rng, exact: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..nb {
        if ty == GgmlType::IQ4_NL {
            // 8 IQ4_NL blocks per 256 elements.
            for _ in 0..8 {
                let raw = rng.bytes(ty.type_size());
                let mut b: BlockIQ4_NL = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            continue;
        }
        let raw = rng.bytes(ty.type_size());
        match ty {
            GgmlType::Q2_K => {
                let mut b: BlockQ2_K = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                b.dmin = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q3_K => {
                let mut b: BlockQ3_K = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q4_K => {
                let mut b: BlockQ4_K = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                b.dmin = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q5_K => {
                let mut b: BlockQ5_K = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                b.dmin = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q6_K => {
                let mut b: BlockQ6_K = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::IQ4_XS => {
                let mut b: BlockIQ4_XS = bytemuck::pod_read_unaligned(&raw);
                b.d = rng.scale(exact);
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            _ => unreachable!(),
        }
    }
    out
}

/// One activation row of `nb * 256` elements in `ty`'s partner format:
/// either built directly with exact scales, or quantized from random floats
/// by the table's activation quantizer.
fn act_row(ty: GgmlType, nb: usize, rng: &mut Rng, exact: bool) -> Vec<u8> {
    let n = nb * QK_K;
    if !exact {
        let o = ops(ty, Isa::Scalar).unwrap();
        let x: Vec<f32> = (0..n)
            .map(|_| (rng.next() % 20_001) as f32 / 10_000.0 - 1.0)
            .collect();
        let bytes = o.act.bytes_for(n as u64).unwrap() as usize;
        // u32 storage keeps the buffer 4-byte aligned for the Q8_K cast.
        let mut buf = vec![0u32; bytes.div_ceil(4)];
        (o.quantize_act)(&x, &mut bytemuck::cast_slice_mut(&mut buf)[..bytes]);
        return bytemuck::cast_slice(&buf)[..bytes].to_vec();
    }
    if ty == GgmlType::IQ4_NL {
        let mut out = Vec::new();
        for _ in 0..n / 32 {
            let mut b = BlockQ8_0::zeroed();
            b.d = rng.scale(true);
            for q in b.qs.iter_mut() {
                *q = rng.q8_small();
            }
            out.extend_from_slice(bytemuck::bytes_of(&b));
        }
        return out;
    }
    let mut out = Vec::new();
    for _ in 0..nb {
        let mut b = BlockQ8_K::zeroed();
        b.d = rng.scale(true).to_f32();
        for q in b.qs.iter_mut() {
            *q = rng.q8_small();
        }
        for j in 0..16 {
            b.bsums[j] = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
        }
        out.extend_from_slice(bytemuck::bytes_of(&b));
    }
    out
}

fn read<B: bytemuck::Pod>(bytes: &[u8], i: usize) -> B {
    let sz = core::mem::size_of::<B>();
    bytemuck::pod_read_unaligned(&bytes[i * sz..(i + 1) * sz])
}

/// Bound on |every partial sum| the SIMD kernels form: the kernels work on
/// unsigned decoded values `u ≤ U` (`q + offset`), so a lane can hold up to
/// Σ |scale|·U·|q8| + offset·Σ |scale·bsum| (in units of `d·d_y`) plus the
/// mins term, even when the block's total is small.
fn lane_bound(ty: GgmlType, nb: usize, w: &[u8], a: &[u8]) -> f64 {
    let mut b = 0.0f64;
    for i in 0..nb {
        if ty == GgmlType::IQ4_NL {
            for k in 0..8 {
                let x: BlockIQ4_NL = read(w, 8 * i + k);
                let y: BlockQ8_0 = read(a, 8 * i + k);
                let s: f64 = y.qs.iter().map(|&q| (q as f64).abs()).sum();
                b += (x.d.to_f64() * y.d.to_f64()).abs() * 127.0 * s;
            }
            continue;
        }
        let y: BlockQ8_K = read(a, i);
        let dy = (y.d as f64).abs();
        // Σ|q8| over element range r.
        let aq = |lo: usize, len: usize| -> f64 {
            y.qs[lo..lo + len].iter().map(|&q| (q as f64).abs()).sum()
        };
        let bs = |j: usize| (y.bsums[j] as f64).abs();
        b += match ty {
            GgmlType::Q2_K => {
                let x: BlockQ2_K = read(w, i);
                let (d, m) = (x.d.to_f64().abs(), x.dmin.to_f64().abs());
                (0..16)
                    .map(|j| {
                        d * dy * (x.scales[j] & 15) as f64 * 3.0 * aq(16 * j, 16)
                            + m * dy * (x.scales[j] >> 4) as f64 * bs(j)
                    })
                    .sum::<f64>()
            }
            GgmlType::Q3_K => {
                let x: BlockQ3_K = read(w, i);
                let sc = unpack_scales_q3_k(&x.scales);
                let d = x.d.to_f64().abs();
                (0..16)
                    .map(|j| d * dy * (sc[j] as f64).abs() * (7.0 * aq(16 * j, 16) + 4.0 * bs(j)))
                    .sum::<f64>()
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let (d, m, scales, umax) = if ty == GgmlType::Q4_K {
                    let x: BlockQ4_K = read(w, i);
                    (x.d, x.dmin, x.scales, 15.0)
                } else {
                    let x: BlockQ5_K = read(w, i);
                    (x.d, x.dmin, x.scales, 31.0)
                };
                let (sc, mn) = unpack_scales_mins_k4(&scales);
                (0..8)
                    .map(|j| {
                        d.to_f64().abs() * dy * sc[j] as f64 * umax * aq(32 * j, 32)
                            + m.to_f64().abs() * dy * mn[j] as f64 * (bs(2 * j) + bs(2 * j + 1))
                    })
                    .sum::<f64>()
            }
            GgmlType::Q6_K => {
                let x: BlockQ6_K = read(w, i);
                let d = x.d.to_f64().abs();
                (0..16)
                    .map(|j| {
                        d * dy * (x.scales[j] as f64).abs() * (63.0 * aq(16 * j, 16) + 32.0 * bs(j))
                    })
                    .sum::<f64>()
            }
            GgmlType::IQ4_XS => {
                let x: BlockIQ4_XS = read(w, i);
                let d = x.d.to_f64().abs();
                (0..8)
                    .map(|j| d * dy * (iq4_xs_scale(&x, j) as f64).abs() * 127.0 * aq(32 * j, 32))
                    .sum::<f64>()
            }
            _ => unreachable!(),
        };
    }
    b
}

/// Σ over blocks of |float terms| of the reference dot (the f32 error scale),
/// computed in f64 from the exact integer block dots.
fn magnitude(ty: GgmlType, nb: usize, w: &[u8], a: &[u8]) -> f64 {
    let mut m = 0.0f64;
    for i in 0..nb {
        if ty == GgmlType::IQ4_NL {
            for k in 0..8 {
                let x: BlockIQ4_NL = read(w, 8 * i + k);
                let y: BlockQ8_0 = read(a, 8 * i + k);
                let d = x.d.to_f64() * y.d.to_f64();
                m += (d * block_dot_iq4_nl_q8_0(&x, &y) as f64).abs();
            }
            continue;
        }
        let y: BlockQ8_K = read(a, i);
        let dy = y.d as f64;
        let (d, sumi, dmin, summs) = match ty {
            GgmlType::Q2_K => {
                let x: BlockQ2_K = read(w, i);
                let (s, m) = block_dot_q2_k(&x, &y);
                (x.d.to_f64(), s, x.dmin.to_f64(), m)
            }
            GgmlType::Q3_K => {
                let x: BlockQ3_K = read(w, i);
                (x.d.to_f64(), block_dot_q3_k(&x, &y), 0.0, 0)
            }
            GgmlType::Q4_K => {
                let x: BlockQ4_K = read(w, i);
                let (s, m) = block_dot_q4_k(&x, &y);
                (x.d.to_f64(), s, x.dmin.to_f64(), m)
            }
            GgmlType::Q5_K => {
                let x: BlockQ5_K = read(w, i);
                let (s, m) = block_dot_q5_k(&x, &y);
                (x.d.to_f64(), s, x.dmin.to_f64(), m)
            }
            GgmlType::Q6_K => {
                let x: BlockQ6_K = read(w, i);
                (x.d.to_f64(), block_dot_q6_k(&x, &y), 0.0, 0)
            }
            GgmlType::IQ4_XS => {
                let x: BlockIQ4_XS = read(w, i);
                (x.d.to_f64(), block_dot_iq4_xs(&x, &y), 0.0, 0)
            }
            _ => unreachable!(),
        };
        m += (d * dy * sumi as f64).abs() + (dmin * dy * summs as f64).abs();
    }
    m
}

/// Runs the tile function of `isa` for `nr` weight rows × `nt` activation
/// rows and returns `out`.
#[allow(clippy::too_many_arguments)]
fn run(
    ty: GgmlType,
    isa: Isa,
    n: usize,
    w: &[u8],
    ws: usize,
    nr: usize,
    a: &[u8],
    as_: usize,
    nt: usize,
) -> Vec<f32> {
    let o = ops(ty, isa).unwrap();
    assert!(
        isa == Isa::Scalar || o.isa != Isa::Scalar,
        "{ty} has no {isa} path"
    );
    let args = MatArgs {
        n,
        w,
        w_stride: ws,
        nr,
        a,
        a_stride: as_,
        nt,
    };
    let mut out = vec![f32::NAN; nr * nt];
    let wb = ty.bytes_for(n as u64).unwrap() as usize;
    let ab = o.act.bytes_for(n as u64).unwrap() as usize;
    assert!(args.is_valid(wb, ab, out.len()));
    // SAFETY: ops() only returns paths the CPU supports, and the arguments
    // were just validated.
    unsafe { (o.mat)(&args, &mut out) };
    out
}

fn check(ty: GgmlType, nb: usize, seed: u64, exact: bool) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let n = nb * QK_K;
    let (nr, nt) = (3usize, 6usize);
    // Weight rows with a few bytes of padding between them (odd stride).
    let row: Vec<Vec<u8>> = (0..nr)
        .map(|_| weight_row(ty, nb, &mut rng, exact))
        .collect();
    let ws = row[0].len() + 3;
    let mut w = Vec::new();
    for r in &row {
        w.extend_from_slice(r);
        w.extend_from_slice(&[0xAB; 3]);
    }
    let acts: Vec<Vec<u8>> = (0..nt).map(|_| act_row(ty, nb, &mut rng, exact)).collect();
    let as_ = acts[0].len();
    let a: Vec<u8> = acts.concat();
    let want = run(ty, Isa::Scalar, n, &w, ws, nr, &a, as_, nt);
    for isa in simd_isas() {
        let got = run(ty, isa, n, &w, ws, nr, &a, as_, nt);
        // Batch invariance: a token's results do not depend on how many
        // tokens share the tile (multi-token kernels decode weights once).
        for (t, act) in acts.iter().enumerate() {
            let single = run(ty, isa, n, &w, ws, nr, act, as_, 1);
            prop_assert_eq!(
                &single[..],
                &got[t * nr..(t + 1) * nr],
                "{} {:?} token {}",
                ty,
                isa,
                t
            );
        }
        for t in 0..nt {
            for r in 0..nr {
                let (g, e) = (got[t * nr + r], want[t * nr + r]);
                if exact {
                    // Worst case per block (Q6_K, the largest): Σ|sc·u·q8| +
                    // 32·Σ|sc·bsum| ≤ 256·63·128 + 32·128·256 < 2^24 / 5, so
                    // with unit scales every partial sum is an exact integer.
                    prop_assert_eq!(g, e, "{} {:?} nb {} row {} tok {}", ty, isa, nb, r, t);
                } else {
                    let mag = lane_bound(ty, nb, &row[r], &acts[t]);
                    prop_assert!(
                        ((g - e) as f64).abs() <= 2e-6 * mag + 1e-30,
                        "{} {:?} nb {} row {} tok {}: {} vs {} (mag {})",
                        ty,
                        isa,
                        nb,
                        r,
                        t,
                        g,
                        e,
                        mag
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn simd_equals_scalar_exact_scales(ti in 0usize..TYPES.len(), nb in 1usize..=5, seed in any::<u64>()) {
        check(TYPES[ti], nb, seed, true)?;
    }

    #[test]
    fn simd_equals_scalar_random_scales(ti in 0usize..TYPES.len(), nb in 1usize..8, seed in any::<u64>()) {
        check(TYPES[ti], nb, seed, false)?;
    }
}

#[test]
fn every_type_has_simd_paths() {
    for ty in TYPES {
        for isa in simd_isas() {
            let o = ops(ty, isa).unwrap();
            assert_ne!(o.isa, Isa::Scalar, "{ty} has no {isa:?} path");
        }
    }
}

#[test]
fn odd_block_counts_all_types() {
    // Deterministic sweep: 1, 3, 5, 7, 9 super-blocks for every type.
    for ty in TYPES {
        for nb in [1usize, 3, 5] {
            check(ty, nb, 0x5eed ^ nb as u64, true).unwrap();
        }
        for nb in [1usize, 3, 5, 7, 9, 11] {
            check(ty, nb, 0xfeed ^ nb as u64, false).unwrap();
        }
    }
}

/// Dequantized activations of one row (Q8_K, or Q8_0 for IQ4_NL).
fn dequantize_act(ty: GgmlType, a: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    if ty == GgmlType::IQ4_NL {
        for (i, o) in out.chunks_exact_mut(32).enumerate() {
            let b: BlockQ8_0 = read(a, i);
            for (v, &q) in o.iter_mut().zip(&b.qs) {
                *v = b.d.to_f32() * q as f32;
            }
        }
    } else {
        let blocks: Vec<BlockQ8_K> = (0..n / QK_K).map(|i| read(a, i)).collect();
        dequantize_row_q8_k(&blocks, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The scalar reference dot equals the f64 dot of the dequantized
    /// operands (ties the dot's bit unpacking to the dequantizer's, which
    /// the fixture tests tie to llama.cpp's files).
    #[test]
    fn scalar_dot_equals_dequantized_dot(ti in 0usize..TYPES.len(), nb in 1usize..6, seed in any::<u64>(), exact in any::<bool>()) {
        let ty = TYPES[ti];
        let mut rng = Rng(seed);
        let n = nb * QK_K;
        let w = weight_row(ty, nb, &mut rng, exact);
        let a = act_row(ty, nb, &mut rng, exact);
        let o = ops(ty, Isa::Scalar).unwrap();
        let mut wd = vec![0.0f32; n];
        (o.dequantize)(&w, &mut wd);
        let ad = dequantize_act(ty, &a, n);
        let want: f64 = wd.iter().zip(&ad).map(|(&x, &y)| x as f64 * y as f64).sum();
        let got = run(ty, Isa::Scalar, n, &w, w.len(), 1, &a, a.len(), 1)[0] as f64;
        let mag = magnitude(ty, nb, &w, &a);
        let absdot: f64 = wd.iter().zip(&ad).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
        // Dequantization rounds each product d·sc (and dmin·m) to f32 once.
        prop_assert!((got - want).abs() <= 1e-5 * (mag + absdot) + 1e-30, "{} {} vs {}", ty, got, want);
    }
}
