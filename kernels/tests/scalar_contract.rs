//! The public contract on the scalar path: shapes, errors, and matmul
//! against an f64 product of the dequantized weights and activations.

use phi_kernels::formats::{float, q4_0, q4_1, q5_0, q5_1, q8_0};
use phi_kernels::{
    dequantize_row, matmul_with_isa, quantize_activations, supports, GgmlType, Isa, KernelError,
    Scratch, Weights,
};

mod common;

/// Deterministic pseudo-random floats in [-1, 1).
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    common::rand_vec(n, seed, 1.0)
}

/// Quantizes a row of f32 into `ty` bytes with the reference quantizers.
fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    use GgmlType as T;
    let nb = x.len() / 32;
    match ty {
        T::F32 => bytemuck::cast_slice(x).to_vec(),
        T::F16 => {
            let mut v = vec![half::f16::ZERO; x.len()];
            float::quantize_row_f16(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::BF16 => {
            let mut v = vec![half::bf16::ZERO; x.len()];
            float::quantize_row_bf16(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::Q4_0 => {
            let mut v = vec![q4_0::BlockQ4_0::default(); nb];
            q4_0::quantize_row_q4_0(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::Q4_1 => {
            let mut v = vec![q4_1::BlockQ4_1::default(); nb];
            q4_1::quantize_row_q4_1(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::Q5_0 => {
            let mut v = vec![q5_0::BlockQ5_0::default(); nb];
            q5_0::quantize_row_q5_0(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::Q5_1 => {
            let mut v = vec![q5_1::BlockQ5_1::default(); nb];
            q5_1::quantize_row_q5_1(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        T::Q8_0 => {
            let mut v = vec![q8_0::BlockQ8_0::default(); nb];
            q8_0::quantize_row_q8_0(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }
        _ => unreachable!(),
    }
}

const TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

#[test]
fn supported_types() {
    for t in TYPES {
        assert!(supports(t), "{t}");
    }
    assert!(!supports(GgmlType::I32));
    assert!(!supports(GgmlType::Q8_1));
}

#[test]
fn rows_slice_selects_rows() {
    let data: Vec<u8> = (0..18 * 6).map(|i| i as u8).collect();
    let w = Weights::new(GgmlType::Q4_0, 3, 64, &data).unwrap();
    let s = w.rows_slice(1, 2).unwrap();
    assert_eq!((s.rows, s.cols), (2, 64));
    assert_eq!(s.data, &data[36..]);
    assert!(w.rows_slice(2, 2).is_none());
    assert!(w.rows_slice(usize::MAX, 2).is_none());
}

#[test]
fn weights_new_checks_sizes() {
    let data = vec![0u8; 18 * 4];
    assert!(Weights::new(GgmlType::Q4_0, 2, 64, &data).is_ok());
    assert_eq!(
        Weights::new(GgmlType::Q4_0, 2, 64, &data)
            .unwrap()
            .row_bytes(),
        36
    );
    assert!(matches!(
        Weights::new(GgmlType::Q4_0, 3, 64, &data),
        Err(KernelError::Shape(_))
    ));
    assert!(matches!(
        Weights::new(GgmlType::Q4_0, 2, 60, &data),
        Err(KernelError::Shape(_))
    ));
    assert!(matches!(
        Weights::new(GgmlType::Q4_0, usize::MAX, 64, &data),
        Err(KernelError::Shape(_))
    ));
}

#[test]
fn matmul_rejects_bad_shapes_and_types() {
    let data = vec![0u8; 18 * 4];
    let w = Weights::new(GgmlType::Q4_0, 2, 64, &data).unwrap();
    let mut s = Scratch::default();
    let mut y = vec![0.0; 2];
    assert!(matches!(
        matmul_with_isa(Isa::Scalar, &w, &[0.0; 63], 1, &mut y, &mut s),
        Err(KernelError::Shape(_))
    ));
    assert!(matches!(
        matmul_with_isa(Isa::Scalar, &w, &[0.0; 64], 1, &mut [0.0; 3], &mut s),
        Err(KernelError::Shape(_))
    ));
    let bad = Weights {
        ty: GgmlType::Q4_0,
        rows: 3,
        cols: 64,
        data: &data,
    };
    assert!(matches!(
        matmul_with_isa(Isa::Scalar, &bad, &[0.0; 64], 1, &mut [0.0; 3], &mut s),
        Err(KernelError::Shape(_))
    ));
    let wi = Weights::new(GgmlType::I8, 1, 4, &[0u8; 4]).unwrap();
    assert!(matches!(
        matmul_with_isa(Isa::Scalar, &wi, &[0.0; 4], 1, &mut [0.0; 1], &mut s),
        Err(KernelError::Unsupported(GgmlType::I8))
    ));
    assert!(matches!(
        dequantize_row(GgmlType::Q4_0, &data[..17], &mut [0.0; 32]),
        Err(KernelError::Shape(_))
    ));
    // zero tokens is a no-op; zero columns gives zeros, on every path
    assert!(matmul_with_isa(Isa::Scalar, &w, &[], 0, &mut [], &mut s).is_ok());
    for isa in Isa::ALL
        .into_iter()
        .filter(|&i| phi_kernels::dispatch::is_available(i))
    {
        for ty in TYPES {
            let w0 = Weights::new(ty, 3, 0, &[]).unwrap();
            let mut y = vec![1.0; 6];
            matmul_with_isa(isa, &w0, &[], 2, &mut y, &mut s).unwrap();
            assert_eq!(y, vec![0.0; 6]);
            let w1 = Weights::new(ty, 0, 64, &[]).unwrap();
            matmul_with_isa(isa, &w1, &[0.5; 128], 2, &mut [], &mut s).unwrap();
        }
    }
}

/// Max quantize→dequantize error per type, relative to the block's max |x|.
/// Q4_0/Q5_0 put the extreme value at -8/-16 steps, so values of the other
/// sign clamp at +7/+15 steps: up to one full step (1/8, 1/16) of error.
#[test]
fn quantize_dequantize_error_bounds() {
    let x = rand_vec(32 * 64, 7);
    for (ty, bound) in [
        (GgmlType::Q4_0, 1.0 / 8.0 + 1e-3),
        (GgmlType::Q4_1, 2.0 / 30.0 + 1e-3),
        (GgmlType::Q5_0, 1.0 / 16.0 + 1e-3),
        (GgmlType::Q5_1, 2.0 / 62.0 + 1e-3),
        (GgmlType::Q8_0, 1.0 / 254.0 + 1e-3),
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 4e-3),
        (GgmlType::F32, 0.0),
    ] {
        let q = quantize(ty, &x);
        let mut back = vec![0.0; x.len()];
        dequantize_row(ty, &q, &mut back).unwrap();
        for (b, (xb, yb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, c) in xb.iter().zip(yb) {
                assert!(
                    (a - c).abs() <= bound * amax,
                    "{ty} block {b}: {a} -> {c} (amax {amax})"
                );
            }
        }
    }
}

/// matmul (scalar) equals Σ dequant(W)·dequant(act(x)) computed in f64,
/// within f32 accumulation error.
#[test]
fn scalar_matmul_matches_f64_of_dequantized() {
    for ty in TYPES {
        for (rows, cols, nt) in [(1, 32, 1), (5, 64, 1), (37, 256, 3), (70, 96, 5)] {
            let wf = rand_vec(rows * cols, (rows * cols) as u64);
            let wq = quantize(ty, &wf);
            let w = Weights::new(ty, rows, cols, &wq).unwrap();
            let x = rand_vec(cols * nt, 99 + nt as u64);
            let mut y = vec![0.0; rows * nt];
            matmul_with_isa(Isa::Scalar, &w, &x, nt, &mut y, &mut Scratch::default()).unwrap();

            let mut wd = vec![0.0; rows * cols];
            for r in 0..rows {
                dequantize_row(
                    ty,
                    &wq[r * w.row_bytes()..],
                    &mut wd[r * cols..(r + 1) * cols],
                )
                .unwrap();
            }
            for t in 0..nt {
                let act_ty = match ty {
                    GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
                    GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
                    other => other,
                };
                let xa = quantize_activations(ty, &x[t * cols..(t + 1) * cols]).unwrap();
                let mut xd = vec![0.0; cols];
                dequantize_row(act_ty, &xa, &mut xd).unwrap();
                for r in 0..rows {
                    let row = &wd[r * cols..(r + 1) * cols];
                    let exact: f64 = row
                        .iter()
                        .zip(&xd)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let mag: f64 = row
                        .iter()
                        .zip(&xd)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    // Q8_1's `s` term is rounded to f16: allow its error too.
                    let slack = if act_ty == GgmlType::Q8_1 {
                        2e-3 * mag
                    } else {
                        0.0
                    };
                    let got = y[t * rows + r] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * mag + slack + 1e-7,
                        "{ty} {rows}x{cols} t{t} r{r}: {got} vs {exact}"
                    );
                }
            }
        }
    }
}

#[test]
fn vec_ops_scalar() {
    let a = rand_vec(37, 1);
    let b = rand_vec(37, 2);
    let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
    assert!((phi_kernels::vec::dot_f32(&a, &b) as f64 - d).abs() < 1e-5);
    let mut y = b.clone();
    phi_kernels::vec::axpy_f32(&mut y, 0.5, &a);
    for i in 0..37 {
        assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
    }
}
