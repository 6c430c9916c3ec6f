//! The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) on
//! every compiled tile function of this CPU: against scalar, on shapes that
//! reach every tile edge (rows around the 8-row gemv and 4-row gemm tiles,
//! odd and even block counts for the 512-bit two-block steps), and batch
//! invariance: a token's results are bit-identical whether it is alone
//! (gemv tile) or one of several (gemm tile).
//!
//! Bound as in `simd_vs_scalar.rs`: integer block dots are exact on every
//! path, so |simd − scalar| ≤ 2e-5 · Σ_c (|w_c| + 2|m_b|)·|a_c| + 1e-6.

use phi_kernels::{dequantize_row, quantize_activations, quantize_row, table, GgmlType, Isa};

mod common;
use common::rand_vec;

const TYPES: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
];

/// Runs tile function `f` over all `rows` × `nt` and returns `out`.
#[allow(clippy::too_many_arguments)]
fn run(
    f: table::MatFn,
    n: usize,
    w: &[u8],
    rb: usize,
    rows: usize,
    a: &[u8],
    ab: usize,
    nt: usize,
) -> Vec<f32> {
    let args = table::MatArgs {
        n,
        w,
        w_stride: rb,
        nr: rows,
        a,
        a_stride: ab,
        nt,
    };
    let mut out = vec![f32::NAN; rows * nt];
    assert!(args.is_valid(rb, ab, out.len()));
    // SAFETY: `mat_variants` / `ops` list only functions this CPU can run,
    // and the arguments were just checked valid.
    unsafe { f(&args, &mut out) };
    out
}

fn check(ty: GgmlType, rows: usize, nb: usize, nt: usize, seed: u64) {
    let n = nb * 32;
    let rb = ty.bytes_for(n as u64).unwrap() as usize;
    let wf = rand_vec(rows * n, seed, 1.0);
    let mut w = vec![0u8; rows * rb];
    for (o, x) in w.chunks_exact_mut(rb).zip(wf.chunks_exact(n)) {
        quantize_row(ty, x, o).unwrap();
    }
    let x = rand_vec(nt * n, seed ^ 0x5A5A, 3.0);
    let scalar = table::ops(ty, Isa::Scalar).unwrap();
    let ab = scalar.act.bytes_for(n as u64).unwrap() as usize;
    let mut a = Vec::with_capacity(nt * ab);
    for xt in x.chunks_exact(n) {
        a.extend(quantize_activations(ty, xt).unwrap());
    }
    let want = run(scalar.mat, n, &w, rb, rows, &a, ab, nt);

    // |w|·|a| magnitude per (row, token), with the mins of Q4_1 / Q5_1.
    let mut wd = vec![0.0f32; rows * n];
    for (o, row) in wd.chunks_exact_mut(n).zip(w.chunks_exact(rb)) {
        dequantize_row(ty, row, o).unwrap();
    }
    let mut ad = vec![0.0f32; nt * n];
    for (o, row) in ad.chunks_exact_mut(n).zip(a.chunks_exact(ab)) {
        dequantize_row(scalar.act, row, o).unwrap();
    }
    let min = |r: usize, b: usize| -> f64 {
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            let o = r * rb + b * ty.type_size() + 2;
            half::f16::from_bits(u16::from_le_bytes([w[o], w[o + 1]]))
                .to_f32()
                .abs() as f64
        } else {
            0.0
        }
    };

    let mut variants = table::mat_variants(ty);
    for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon] {
        if phi_kernels::dispatch::is_available(isa) {
            variants.push((isa.name(), table::ops(ty, isa).unwrap().mat));
        }
    }
    for (name, f) in variants {
        let got = run(f, n, &w, rb, rows, &a, ab, nt);
        for t in 0..nt {
            for r in 0..rows {
                let mag: f64 = (0..n)
                    .map(|c| {
                        (wd[r * n + c].abs() as f64 + 2.0 * min(r, c / 32))
                            * ad[t * n + c].abs() as f64
                    })
                    .sum();
                let (g, e) = (got[t * rows + r], want[t * rows + r]);
                let bound = 2e-5 * mag + 1e-6;
                assert!(
                    ((g - e) as f64).abs() <= bound,
                    "{ty} {name} {rows}x{n} nt={nt}: row {r} token {t}: {g} vs scalar {e} (bound {bound})"
                );
            }
        }
        if nt > 1 {
            for t in 0..nt {
                let single = run(f, n, &w, rb, rows, &a[t * ab..(t + 1) * ab], ab, 1);
                assert_eq!(
                    single[..],
                    got[t * rows..(t + 1) * rows],
                    "{ty} {name} {rows}x{n}: token {t} alone differs from its batch of {nt}"
                );
            }
        }
    }
}

#[test]
fn tile_edges_every_type() {
    for ty in TYPES {
        for &(rows, nb, nt) in &[
            (1, 1, 1),
            (8, 1, 1),
            (9, 2, 1),
            (17, 3, 1),
            (16, 96, 1),
            (23, 97, 1),
            (5, 5, 5),
            (12, 4, 8),
            (13, 7, 3),
        ] {
            check(
                ty,
                rows,
                nb,
                nt,
                (rows * 1000 + nb * 10 + nt) as u64 ^ ty.type_size() as u64,
            );
        }
    }
}
