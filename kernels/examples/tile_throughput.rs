//! Cache-resident throughput of every compiled tile function (128 rows ×
//! 3072 columns, 1 and 16 tokens): the compute ceiling of each path,
//! independent of memory bandwidth and much less sensitive to a busy
//! machine than the criterion bench (best of 30 rounds, interleaved).
//!
//! `cargo run -p phi-kernels --release --example tile_throughput`

use phi_kernels::formats::{float, q4_0, q4_1, q5_0, q5_1, q8_0};
use phi_kernels::{quantize_activations, table, GgmlType};
use std::time::Instant;

fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    macro_rules! q {
        ($b:ty, $f:path) => {{
            let mut v = vec![<$b>::default(); x.len() / 32];
            $f(x, &mut v);
            bytemuck::cast_slice(&v).to_vec()
        }};
    }
    match ty {
        GgmlType::Q4_0 => q!(q4_0::BlockQ4_0, q4_0::quantize_row_q4_0),
        GgmlType::Q4_1 => q!(q4_1::BlockQ4_1, q4_1::quantize_row_q4_1),
        GgmlType::Q5_0 => q!(q5_0::BlockQ5_0, q5_0::quantize_row_q5_0),
        GgmlType::Q5_1 => q!(q5_1::BlockQ5_1, q5_1::quantize_row_q5_1),
        GgmlType::Q8_0 => q!(q8_0::BlockQ8_0, q8_0::quantize_row_q8_0),
        GgmlType::F16 => {
            let v: Vec<half::f16> = x.iter().map(|&f| half::f16::from_f32(f)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        GgmlType::BF16 => {
            let v: Vec<half::bf16> = x.iter().map(|&f| float::f32_to_bf16(f)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        _ => bytemuck::cast_slice(x).to_vec(),
    }
}

fn main() {
    let (rows, cols) = (128usize, 3072usize);
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 300.0)
        .collect();
    println!("| type | tokens | path | µs | GOP/s | weight GB/s |");
    println!("|---|---:|---|---:|---:|---:|");
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    for ty in types {
        let wq = quantize(ty, &x);
        let rb = wq.len() / rows;
        for nt in [1usize, 16] {
            let mut acts = Vec::new();
            for t in 0..nt {
                acts.extend(quantize_activations(ty, &x[t * cols..(t + 1) * cols]).expect("act"));
            }
            let ar = acts.len() / nt;
            let args = table::MatArgs {
                n: cols,
                w: &wq,
                w_stride: rb,
                nr: rows,
                a: &acts,
                a_stride: ar,
                nt,
            };
            let mut out = vec![0f32; rows * nt];
            assert!(args.is_valid(rb, ar, out.len()));
            let vars = table::mat_variants(ty);
            let mut best = vec![f64::MAX; vars.len()];
            for _ in 0..30 {
                for (i, (_, f)) in vars.iter().enumerate() {
                    let t0 = Instant::now();
                    for _ in 0..4 {
                        // SAFETY: `mat_variants` lists only functions this CPU
                        // runs; the arguments were checked valid above.
                        unsafe { f(&args, &mut out) };
                    }
                    best[i] = best[i].min(t0.elapsed().as_secs_f64() / 4.0);
                }
            }
            for (i, (name, _)) in vars.iter().enumerate() {
                let ops = 2.0 * (rows * cols * nt) as f64;
                println!(
                    "| {ty} | {nt} | {name} | {:.1} | {:.1} | {:.1} |",
                    best[i] * 1e6,
                    ops / best[i] / 1e9,
                    wq.len() as f64 / best[i] / 1e9
                );
            }
        }
    }
}
