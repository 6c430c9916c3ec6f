//! AArch64 only: the public `matmul` on the NEON path against the scalar
//! path, for every supported weight type, through the driver (activation
//! quantization, row chunking, rayon, gemm staging). Quantized types must
//! agree bit for bit (exact integer block dots, same float expression per
//! block); float types within the summation-order bound.
//!
//! Run with `../shared/tools/aarch64.sh test -p phi-kernels --release`
//! (QEMU_CPU=max exercises `sdot`, QEMU_CPU=cortex-a53 plain NEON).
#![cfg(target_arch = "aarch64")]

use half::f16;
use phi_kernels::{dispatch, matmul_with_isa, table, GgmlType, Isa, Scratch, Weights};
use proptest::prelude::*;

const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Offsets of the f16 scale / min fields in one block (ggml layouts).
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

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `rows × cols` weights of `ty`: random floats for float types, random
/// quant bytes with finite random scales otherwise.
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let n = rows * cols;
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| rng.unit().to_le_bytes()).collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| f16::from_f32(rng.unit()).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.unit()).to_bits().to_le_bytes())
            .collect(),
        _ => {
            let bs = ty.type_size();
            let mut v: Vec<u8> = (0..n / ty.block_size() * bs)
                .map(|_| rng.next() as u8)
                .collect();
            for b in v.chunks_exact_mut(bs) {
                for &off in f16_fields(ty) {
                    let s = f16::from_f32(rng.unit() * 0.02).to_bits().to_le_bytes();
                    b[off..off + 2].copy_from_slice(&s);
                }
            }
            v
        }
    }
}

fn check(ty: GgmlType, rows: usize, blocks: usize, nt: usize, seed: u64) {
    let mut rng = Rng(seed);
    let cols = blocks * ty.block_size().max(32);
    let w = weights(ty, rows, cols, &mut rng);
    let wt = Weights::new(ty, rows, cols, &w).unwrap();
    let x: Vec<f32> = (0..nt * cols).map(|_| rng.unit() * 2.0).collect();
    let mut scratch = Scratch::default();
    let mut want = vec![0.0f32; nt * rows];
    let mut got = vec![f32::NAN; nt * rows];
    matmul_with_isa(Isa::Scalar, &wt, &x, nt, &mut want, &mut scratch).unwrap();
    matmul_with_isa(Isa::Neon, &wt, &x, nt, &mut got, &mut scratch).unwrap();
    for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
        if is_float(ty) {
            // |w| ≤ 1, |x| ≤ 2: Σ|w·x| ≤ 2·cols; both sums within cols·ε of it.
            let tol = 4.0 * (cols * cols) as f32 * f32::EPSILON;
            assert!((g - e).abs() <= tol, "{ty} y[{i}]: {g} vs {e}");
        } else {
            assert_eq!(g.to_bits(), e.to_bits(), "{ty} y[{i}]: {g} vs {e}");
        }
    }
}

#[test]
fn neon_is_detected_and_registered() {
    assert!(dispatch::is_available(Isa::Neon));
    assert_eq!(dispatch::best(), Isa::Neon);
    for ty in TYPES {
        assert_eq!(table::ops(ty, Isa::Neon).unwrap().isa, Isa::Neon, "{ty}");
    }
}

#[test]
fn neon_matmul_shapes() {
    for ty in TYPES {
        // One block, odd row counts, gemm with several tokens, and a size
        // above the driver's sequential threshold (chunks on the pool).
        check(ty, 1, 1, 1, 1);
        check(ty, 17, 3, 1, 2);
        check(ty, 5, 2, 3, 3);
        check(ty, 67, 4, 2, 4);
        check(ty, 130, 2, 1, 5);
    }
}

proptest! {
    #[test]
    fn neon_matmul_matches_scalar(
        ti in 0usize..TYPES.len(),
        rows in 1usize..40,
        blocks in 1usize..5,
        nt in 1usize..4,
        seed in any::<u64>(),
    ) {
        check(TYPES[ti], rows, blocks, nt, seed);
    }
}
