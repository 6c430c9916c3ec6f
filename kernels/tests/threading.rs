//! The driver's chunking over rayon pools of various sizes: every (row,
//! token) result is computed by the same arithmetic whatever the chunk or
//! tile it falls in, so results must be bit-identical across thread counts
//! (llama.cpp has the same property), for gemv and gemm, on every path.

use phi_kernels::formats::{q4_1, q8_0};
use phi_kernels::{dispatch, matmul_with_isa, GgmlType, Isa, Scratch, Weights};

mod common;

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    common::rand_vec(n, seed, 1.0)
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let isas: Vec<Isa> = Isa::ALL
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect();
    for (ty, rows, cols) in [
        (GgmlType::Q8_0, 1003, 256),
        (GgmlType::Q4_1, 517, 320),
        (GgmlType::F32, 300, 250),
    ] {
        let wf = rand_vec(rows * cols, rows as u64);
        let data: Vec<u8> = match ty {
            GgmlType::Q8_0 => {
                let mut v = vec![q8_0::BlockQ8_0::default(); rows * cols / 32];
                q8_0::quantize_row_q8_0(&wf, &mut v);
                bytemuck::cast_slice(&v).to_vec()
            }
            GgmlType::Q4_1 => {
                let mut v = vec![q4_1::BlockQ4_1::default(); rows * cols / 32];
                q4_1::quantize_row_q4_1(&wf, &mut v);
                bytemuck::cast_slice(&v).to_vec()
            }
            _ => bytemuck::cast_slice(&wf).to_vec(),
        };
        let w = Weights::new(ty, rows, cols, &data).unwrap();
        for &isa in &isas {
            for nt in [1usize, 2, 7] {
                let x = rand_vec(cols * nt, 5 + nt as u64);
                let mut reference: Option<Vec<f32>> = None;
                let mut scratch = Scratch::default();
                for threads in [1usize, 2, 3, 5, 8] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut y = vec![f32::NAN; rows * nt];
                    pool.install(|| matmul_with_isa(isa, &w, &x, nt, &mut y, &mut scratch))
                        .unwrap();
                    assert!(
                        y.iter().all(|v| v.is_finite()),
                        "{ty} {isa} nt={nt} t={threads}"
                    );
                    match &reference {
                        None => reference = Some(y),
                        Some(r) => assert!(
                            r.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{ty} on {isa}, {nt} tokens: {threads} threads differ from 1 thread"
                        ),
                    }
                }
            }
        }
    }
}
