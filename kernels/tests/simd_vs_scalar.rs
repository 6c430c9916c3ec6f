//! Every SIMD path available on this CPU against the scalar reference, for
//! every type and odd shapes (1 block, many blocks, row counts not divisible
//! by the tile or the chunk, several token counts, float rows not a multiple
//! of the vector width).
//!
//! Bound: the integer dot of each block is exact on every path, so paths
//! differ only in the order of f32 additions (and FMA vs mul+add):
//! |simd − scalar| ≤ 2e-5 · M + 1e-6, where M = Σ_c (|w_c| + 2|m_b|)·|a_c|
//! bounds the sum of |terms| (w, a dequantized; m the block min for
//! Q4_1/Q5_1, whose `m·s` term is also covered by it).

use phi_kernels::formats::{float, q4_0, q4_1, q5_0, q5_1, q8_0};
use phi_kernels::{
    dequantize_row, dispatch, matmul_with_isa, table, GgmlType, Isa, Scratch, Weights,
};
use proptest::prelude::*;

mod common;
use common::rand_vec;

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

fn simd_isas() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512, Isa::Neon]
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect()
}

/// Checks every available SIMD path against scalar for one shape.
fn check(ty: GgmlType, rows: usize, cols: usize, nt: usize, seed: u64) {
    let wf = rand_vec(rows * cols, seed, 1.0);
    let wq = quantize(ty, &wf);
    let w = Weights::new(ty, rows, cols, &wq).unwrap();
    let x = rand_vec(cols * nt, seed ^ 0xABCD, 3.0);
    let mut scratch = Scratch::default();
    let mut want = vec![0.0; rows * nt];
    matmul_with_isa(Isa::Scalar, &w, &x, nt, &mut want, &mut scratch).unwrap();

    // Magnitude bound per (row, token).
    let act_ty = table::ops(ty, Isa::Scalar).unwrap().act;
    let mut xd = vec![0.0f32; cols * nt];
    for t in 0..nt {
        let xa = phi_kernels::quantize_activations(ty, &x[t * cols..(t + 1) * cols]).unwrap();
        dequantize_row(act_ty, &xa, &mut xd[t * cols..(t + 1) * cols]).unwrap();
    }
    let rb = w.row_bytes();
    let mut mag = vec![0.0f64; rows * nt];
    for r in 0..rows {
        let mut wd = vec![0.0f32; cols];
        dequantize_row(ty, &wq[r * rb..], &mut wd).unwrap();
        let mins: Vec<f32> = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            let bs = ty.type_size();
            (0..cols / 32)
                .map(|b| {
                    let o = r * rb + b * bs + 2;
                    half::f16::from_bits(u16::from_le_bytes([wq[o], wq[o + 1]])).to_f32()
                })
                .collect()
        } else {
            vec![0.0; cols.div_ceil(32)]
        };
        for t in 0..nt {
            mag[t * rows + r] = (0..cols)
                .map(|c| {
                    (wd[c].abs() as f64 + 2.0 * mins[c / 32].abs() as f64)
                        * xd[t * cols + c].abs() as f64
                })
                .sum();
        }
    }

    // Every compiled variant, called directly on the quantized activations.
    let act_row = act_ty.bytes_for(cols as u64).unwrap() as usize;
    let mut acts = Vec::with_capacity(act_row * nt);
    for t in 0..nt {
        acts.extend(phi_kernels::quantize_activations(ty, &x[t * cols..(t + 1) * cols]).unwrap());
    }
    for (name, f) in table::mat_variants(ty) {
        let args = table::MatArgs {
            n: cols,
            w: &wq,
            w_stride: rb,
            nr: rows,
            a: &acts,
            a_stride: act_row,
            nt,
        };
        let mut got = vec![f32::NAN; rows * nt];
        assert!(args.is_valid(rb, act_row, got.len()));
        // SAFETY: `mat_variants` lists only functions this CPU can run, and
        // the arguments were just checked valid.
        unsafe { f(&args, &mut got) };
        for i in 0..rows * nt {
            let bound = 2e-5 * mag[i] + 1e-6;
            assert!(
                ((got[i] - want[i]) as f64).abs() <= bound,
                "{ty} variant {name} {rows}x{cols} nt={nt}: out[{i}] = {} vs scalar {} (bound {bound})",
                got[i],
                want[i]
            );
        }
    }

    for isa in simd_isas() {
        let ops = table::ops(ty, isa).unwrap();
        let mut got = vec![f32::NAN; rows * nt];
        matmul_with_isa(isa, &w, &x, nt, &mut got, &mut scratch).unwrap();
        for i in 0..rows * nt {
            let bound = 2e-5 * mag[i] + 1e-6;
            assert!(
                ((got[i] - want[i]) as f64).abs() <= bound,
                "{ty} on {isa} (served by {}) {rows}x{cols} nt={nt}: out[{i}] = {} vs scalar {} (bound {bound})",
                ops.isa,
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn simd_paths_exist_for_every_type() {
    #[cfg(target_arch = "x86_64")]
    if dispatch::has_avx512_vnni() {
        for ty in TYPES {
            let names: Vec<_> = table::mat_variants(ty).iter().map(|v| v.0).collect();
            assert!(
                names.contains(&"avx2") && names.contains(&"avx512-vnni-256"),
                "{ty}: {names:?}"
            );
        }
    }
    for isa in simd_isas() {
        for ty in TYPES {
            assert_ne!(
                table::ops(ty, isa).unwrap().isa,
                Isa::Scalar,
                "{ty} on {isa}"
            );
        }
    }
}

#[test]
fn fixed_odd_shapes() {
    for ty in TYPES {
        for &(rows, nb, nt) in &[
            (1, 1, 1),
            (1, 1, 5),
            (3, 1, 2),
            (7, 3, 1),
            (5, 96, 1),
            (33, 4, 3),
            (130, 2, 9),
            (257, 8, 1),
        ] {
            check(ty, rows, nb * 32, nt, (rows * 1000 + nb * 10 + nt) as u64);
        }
    }
    // float rows that are not a multiple of 8 or 16
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for cols in [1, 7, 9, 17, 100] {
            check(ty, 5, cols, 3, cols as u64);
            check(ty, 6, cols, 1, cols as u64 + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn random_shapes(ti in 0usize..8, rows in 1usize..80, nb in 1usize..10, nt in 1usize..8, seed in any::<u64>()) {
        check(TYPES[ti], rows, nb * 32, nt, seed);
    }
}

/// The activation quantizers used by the SIMD paths produce exactly the
/// scalar path's bytes (ties included: values that scale to k + 0.5).
#[test]
fn activation_quantization_is_bit_identical() {
    let mut inputs: Vec<Vec<f32>> = (0..20).map(|s| rand_vec(32 * 9, s, 10.0)).collect();
    // Exact ties: amax 127 makes the multiplier 1, so 0.5, 1.5, -2.5 … are ties.
    let mut ties: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
    ties[0] = 127.0;
    inputs.push(ties);
    inputs.push(vec![0.0; 64]);
    inputs.push(
        (0..64)
            .map(|i| if i % 2 == 0 { 1e-30 } else { -3e-38 })
            .collect(),
    );
    // F16: NaN/inf/subnormal/overflow cases too.
    inputs.push(vec![
        f32::INFINITY,
        -1e9,
        65519.0,
        65520.0,
        1e-8,
        -6e-8,
        3e-5,
        f32::NAN,
        0.1,
        7.0,
    ]);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::F16] {
        for x in inputs
            .iter()
            .filter(|x| ty == GgmlType::F16 || x.len() % 32 == 0)
        {
            let want = phi_kernels::quantize_activations(ty, x).unwrap();
            for isa in simd_isas() {
                let ops = table::ops(ty, isa).unwrap();
                let mut buf = vec![0u64; want.len().div_ceil(8)];
                let got = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..want.len()];
                (ops.quantize_act)(x, got);
                assert_eq!(&want[..], &got[..], "{ty} activations on {isa}");
            }
        }
    }
}
