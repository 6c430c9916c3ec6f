//! NEON tiles against the scalar tiles, for both integer flavours (`sdot`
//! when the CPU has dotprod, plain NEON always), on random rows of odd
//! shapes, strides and alignments. Run under qemu (see the crate README).

use super::{has_dotprod, mat_flavour};
use crate::table::{self, MatArgs, MatFn};
use crate::{GgmlType, Isa};
use half::f16;
use proptest::prelude::*;

/// The weight types with NEON tiles: every type in the registry.
use crate::registry::TYPES;

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Offsets of the f16 scale / min fields inside one block of `ty` (random
/// bytes there could be NaN or huge; everything else is fair game).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::IQ4_XS => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => &[],
    }
}

/// splitmix64: a small deterministic generator seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// One weight row of `ty` with `cols` elements: random quant bytes with
/// finite random scales, or random floats for the float types.
fn weight_row(ty: GgmlType, cols: usize, rng: &mut Rng) -> Vec<u8> {
    match ty {
        GgmlType::F32 => (0..cols).flat_map(|_| rng.unit().to_le_bytes()).collect(),
        GgmlType::F16 => (0..cols)
            .flat_map(|_| f16::from_f32(rng.unit()).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..cols)
            .flat_map(|_| {
                crate::formats::float::f32_to_bf16(rng.unit())
                    .to_bits()
                    .to_le_bytes()
            })
            .collect(),
        _ => {
            let bs = ty.type_size();
            let mut row: Vec<u8> = (0..cols / ty.block_size() * bs)
                .map(|_| rng.next() as u8)
                .collect();
            for block in row.chunks_exact_mut(bs) {
                for &off in f16_fields(ty) {
                    let v = f16::from_f32(rng.unit() * 0.05).to_bits().to_le_bytes();
                    block[off..off + 2].copy_from_slice(&v);
                }
            }
            row
        }
    }
}

/// Lays `rows` out `stride` bytes apart (padding filled with junk).
fn strided(rows: &[Vec<u8>], stride: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out: Vec<u8> = (0..rows.len() * stride).map(|_| rng.next() as u8).collect();
    for (i, r) in rows.iter().enumerate() {
        out[i * stride..i * stride + r.len()].copy_from_slice(r);
    }
    out
}

/// Runs `f` on `args`, checking the `MatFn` contract first.
fn run(f: MatFn, args: &MatArgs<'_>, w_row: usize, a_row: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; args.nr * args.nt];
    assert!(args.is_valid(w_row, a_row, out.len()));
    // SAFETY: `f` is either a scalar tile or a NEON tile of the flavour the
    // caller checked the CPU supports; `args` was validated just above.
    unsafe { f(args, &mut out) };
    out
}

/// The NEON tiles this CPU can run for `ty`: plain always, `sdot` when
/// dotprod is present.
fn neon_tiles(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    let mut v = vec![("neon", mat_flavour(ty, false).expect("NEON tile"))];
    if has_dotprod() {
        v.push(("sdot", mat_flavour(ty, true).expect("sdot tile")));
    }
    v
}

/// Compares every NEON flavour with the scalar tile on one random problem.
fn check(ty: GgmlType, seed: u64, nr: usize, blocks: usize, nt: usize, pad: (usize, usize)) {
    let mut rng = Rng(seed);
    let cols = if is_float(ty) {
        // Float rows need not be a multiple of anything: exercise tails.
        blocks * 16 + (seed % 23) as usize
    } else {
        blocks * ty.block_size()
    };
    let ops = table::ops(ty, Isa::Scalar).expect("scalar ops");
    let (w_row, _) = crate::matrix_bytes(ty, 1, cols).unwrap();
    let (a_row, _) = crate::matrix_bytes(ops.act, 1, cols).unwrap();
    let wrows: Vec<Vec<u8>> = (0..nr).map(|_| weight_row(ty, cols, &mut rng)).collect();
    let arows: Vec<Vec<u8>> = (0..nt)
        .map(|_| {
            let x: Vec<f32> = (0..cols).map(|_| rng.unit() * 3.0).collect();
            crate::quantize_activations(ty, &x).unwrap()
        })
        .collect();
    // An odd byte offset into the buffers tests unaligned access.
    let (w_stride, a_stride) = (w_row + pad.0, a_row + pad.1);
    let wbuf = strided(&wrows, w_stride, &mut rng);
    let abuf = strided(&arows, a_stride, &mut rng);
    let (wo, ao) = (1 + pad.0 % 3, pad.1 % 2);
    let wv = [vec![0u8; wo], wbuf].concat();
    let av = [vec![0u8; ao], abuf].concat();
    let args = MatArgs {
        n: cols,
        w: &wv[wo..],
        w_stride,
        nr,
        a: &av[ao..],
        a_stride,
        nt,
    };
    let want = run(ops.mat, &args, w_row, a_row);
    // Σ|w·a| per output, for the float tolerance.
    let deq = |t: GgmlType, row: &[u8]| {
        let mut v = vec![0.0f32; cols];
        crate::dequantize_row(t, row, &mut v).unwrap();
        v
    };
    let wf: Vec<Vec<f32>> = wrows.iter().map(|r| deq(ty, r)).collect();
    let af: Vec<Vec<f32>> = arows.iter().map(|r| deq(ops.act, r)).collect();
    for (name, f) in neon_tiles(ty) {
        let got = run(f, &args, w_row, a_row);
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            if is_float(ty) {
                // Different summation order (4 FMA accumulators): both sums
                // are within n·ε·Σ|w·a| of the exact one.
                let (t, r) = (i / nr, i % nr);
                let sabs: f32 = wf[r].iter().zip(&af[t]).map(|(x, y)| (x * y).abs()).sum();
                let tol = 2.0 * cols as f32 * f32::EPSILON * sabs + f32::MIN_POSITIVE;
                assert!(
                    (g - e).abs() <= tol,
                    "{ty} {name} out[{i}]: {g} vs {e} (tol {tol})"
                );
            } else {
                assert_eq!(g.to_bits(), e.to_bits(), "{ty} {name} out[{i}]: {g} vs {e}");
            }
        }
    }
}

proptest! {
    #[test]
    fn neon_tiles_match_scalar(
        seed in any::<u64>(),
        nr in 1usize..6,
        blocks in 1usize..10,
        nt in 1usize..7,
        pad in (0usize..5, 0usize..5),
    ) {
        for ty in TYPES {
            check(ty, seed, nr, blocks, nt, pad);
        }
    }
}

#[test]
fn many_blocks_and_rows() {
    for ty in TYPES {
        check(ty, 7, 13, 40, 5, (0, 0));
        check(ty, 9, 3, 2, 8, (1, 3));
        check(ty, 8, 1, 1, 1, (0, 0));
    }
}

/// Extreme quants: every byte -128 (Q8_0) or 0xFF nibbles, where a plain
/// 16-bit accumulation would overflow.
#[test]
fn extreme_quants_do_not_overflow() {
    let one = f16::from_f32(1.0).to_bits().to_le_bytes();
    for (ty, fill) in [
        (GgmlType::Q8_0, 0x80u8),
        (GgmlType::Q4_0, 0x00),
        (GgmlType::Q4_1, 0xFF),
        (GgmlType::Q5_0, 0x00),
        (GgmlType::Q5_1, 0xFF),
    ] {
        let cols = 4 * 32;
        let ops = table::ops(ty, Isa::Scalar).unwrap();
        let (w_row, _) = crate::matrix_bytes(ty, 1, cols).unwrap();
        let (a_row, _) = crate::matrix_bytes(ops.act, 1, cols).unwrap();
        let mut w = vec![fill; w_row];
        for b in w.chunks_exact_mut(ty.type_size()) {
            for &off in f16_fields(ty) {
                b[off..off + 2].copy_from_slice(&one);
            }
        }
        // Activations: scale 1, all quants -128 (Q8_1 sum field = 1).
        let mut a = vec![0x80u8; a_row];
        for b in a.chunks_exact_mut(ops.act.type_size()) {
            b[0..2].copy_from_slice(&one);
            if ops.act == GgmlType::Q8_1 {
                b[2..4].copy_from_slice(&one);
            }
        }
        let args = MatArgs {
            n: cols,
            w: &w,
            w_stride: w_row,
            nr: 1,
            a: &a,
            a_stride: a_row,
            nt: 1,
        };
        let want = run(ops.mat, &args, w_row, a_row);
        assert!(want[0].abs() > 1000.0, "{ty}: {want:?}");
        for (name, f) in neon_tiles(ty) {
            let got = run(f, &args, w_row, a_row);
            assert_eq!(got[0].to_bits(), want[0].to_bits(), "{ty} {name}");
        }
    }
}

/// The table hands out NEON tiles, and the detected flavour matches the
/// emulated CPU when the qemu CPU model is known (so CI really runs both).
#[test]
fn registered_and_detected() {
    for ty in TYPES {
        let ops = table::ops(ty, Isa::Neon).unwrap();
        assert_eq!(ops.isa, Isa::Neon, "{ty}");
    }
    assert_eq!(
        has_dotprod(),
        std::arch::is_aarch64_feature_detected!("dotprod")
    );
    let i8mm = crate::dispatch::NeonDot::Smmla.available();
    assert_eq!(
        i8mm,
        std::arch::is_aarch64_feature_detected!("i8mm") && has_dotprod()
    );
    match std::env::var("QEMU_CPU").as_deref() {
        Ok("max") => assert!(has_dotprod() && i8mm, "QEMU_CPU=max has dotprod and i8mm"),
        Ok("cortex-a76") => assert!(has_dotprod() && !i8mm, "Cortex-A76: dotprod, no i8mm"),
        Ok("cortex-a53") => assert!(!has_dotprod() && !i8mm, "Cortex-A53 has no dotprod"),
        _ => {}
    }
    // The packed kernels: NEON repacks, with the best tier detected (or
    // the one PHI_NEON_DOT names), and its activation quantizers are SIMD.
    assert_eq!(crate::registry::packed_isa_for(Isa::Neon), Some(Isa::Neon));
    let tier = crate::dispatch::neon_dot();
    assert!(tier.available());
    if std::env::var_os("PHI_NEON_DOT").is_none() {
        assert_eq!(tier, crate::dispatch::NeonDot::detected());
    }
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let p =
            crate::registry::packed_ops(ty, Isa::Neon).expect("NEON packs Q4_0 / Q8_0 / K-quants");
        assert_eq!((p.isa, p.neon, p.dot), (Isa::Neon, Some(tier), None));
    }
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        assert!(crate::arch::quantize_act(act, Isa::Neon).is_some());
    }
}
