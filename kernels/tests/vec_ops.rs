//! The dispatched vec ops (SIMD on this CPU when available) against the
//! scalar references: |Δ| ≤ 1e-5·Σ|aᵢbᵢ| + 1e-6 for dots, axpy exact up to
//! FMA rounding (≤ 1 ulp-ish: 1e-6 relative).

use half::f16;
use phi_kernels::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn vec_ops_match_scalar(v in prop::collection::vec((-4.0f32..4.0, -4.0f32..4.0), 0..300), alpha in -2.0f32..2.0) {
        let a: Vec<f32> = v.iter().map(|p| p.0).collect();
        let b: Vec<f32> = v.iter().map(|p| p.1).collect();
        let h: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
        let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();

        let d = vec::dot_f32(&a, &b);
        prop_assert!((d - vec::scalar::dot_f32(&a, &b)).abs() <= 1e-5 * mag + 1e-6);
        let d = vec::dot_f16_f32(&h, &b);
        prop_assert!((d - vec::scalar::dot_f16_f32(&h, &b)).abs() <= 1e-5 * mag + 1e-6);

        let mut y1 = b.clone();
        let mut y2 = b.clone();
        vec::axpy_f32(&mut y1, alpha, &a);
        vec::scalar::axpy_f32(&mut y2, alpha, &a);
        for (p, q) in y1.iter().zip(&y2) {
            prop_assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()));
        }
        let mut y1 = b.clone();
        let mut y2 = b.clone();
        vec::axpy_f16(&mut y1, alpha, &h);
        vec::scalar::axpy_f16(&mut y2, alpha, &h);
        for (p, q) in y1.iter().zip(&y2) {
            prop_assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()));
        }
    }
}

proptest! {
    /// Q8_0 KV-cache row ops: dot |Δ| ≤ 1e-5·Σ|dequant(k)·b| + 1e-6, axpy
    /// within FMA rounding of the scalar loop.
    #[test]
    fn q8_0_row_ops_match_scalar(
        v in prop::collection::vec((-4.0f32..4.0, -4.0f32..4.0), 1..8usize),
        seed in any::<u64>(),
        alpha in -2.0f32..2.0,
    ) {
        // 32·len(v) elements from the pairs, varied by a xorshift stream.
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let n = 32 * v.len();
        let x: Vec<f32> = (0..n).map(|i| v[i / 32].0 * (next() - 0.5)).collect();
        let b: Vec<f32> = (0..n).map(|i| v[i / 32].1 * (next() - 0.5)).collect();
        let mut k = vec![0u8; n / 32 * 34];
        phi_kernels::quantize_row(phi_kernels::GgmlType::Q8_0, &x, &mut k).unwrap();
        let mut deq = vec![0f32; n];
        phi_kernels::dequantize_row(phi_kernels::GgmlType::Q8_0, &k, &mut deq).unwrap();
        let mag: f32 = deq.iter().zip(&b).map(|(p, q)| (p * q).abs()).sum();
        let d = vec::dot_q8_0_f32(&k, &b);
        prop_assert!((d - vec::scalar::dot_q8_0_f32(&k, &b)).abs() <= 1e-5 * mag + 1e-6);
        let mut y1 = b.clone();
        let mut y2 = b.clone();
        vec::axpy_q8_0(&mut y1, alpha, &k);
        vec::scalar::axpy_q8_0(&mut y2, alpha, &k);
        for (p, q) in y1.iter().zip(&y2) {
            prop_assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()));
        }
    }
}

#[test]
#[should_panic(expected = "length mismatch")]
fn mismatched_lengths_panic() {
    vec::dot_f32(&[1.0, 2.0], &[1.0]);
}
