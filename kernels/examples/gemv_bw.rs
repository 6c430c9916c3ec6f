//! gemv (1 token) weight throughput per type and ISA path: streaming from
//! memory (a matrix far larger than L3) as a fraction of the memory read
//! bandwidth measured right before it, and cache-resident (1 MiB matrix, the
//! compute ceiling). Best of `reps`, so a shared machine disturbs it less.
//!
//! `cargo run --release -p phi-kernels --example gemv_bw -- [types] [isas] [threads] [reps] [MiB]`
//! e.g. `-- q4_0,q3_k avx512,avx2 1,2 5 256` (defaults: all types, all SIMD
//! paths, 1 and 2 threads, 5 reps, 256 MiB). `packed` (only when named)
//! measures `matmul_packed` on the repacked matrix, against the file's bytes.

use phi_kernels::packed::{matmul_packed, PackedWeights};
use phi_kernels::{dispatch, matmul_with_isa, GgmlType, Isa, Scratch, Weights};
use rayon::prelude::*;
use std::time::Instant;

mod common;

const COLS: usize = 3072;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut b = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

fn memread(buf: &[u64], reps: usize) -> f64 {
    let secs = best(reps, || {
        let s: u64 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0u64; 4];
                for q in c.chunks_exact(4) {
                    for i in 0..4 {
                        acc[i] = acc[i].wrapping_add(q[i]);
                    }
                }
                acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
            })
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
    });
    (buf.len() * 8) as f64 / secs / 1e9
}

fn main() {
    let mut args = std::env::args().skip(1);
    let all = [
        "q8_0", "q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0", "iq4_xs", "iq4_nl", "q3_k",
        "q2_k",
    ];
    let types: Vec<GgmlType> = match args.next() {
        Some(s) if s != "all" => s
            .split(',')
            .map(|n| GgmlType::from_name(n).expect("type name"))
            .collect(),
        _ => all
            .iter()
            .map(|n| GgmlType::from_name(n).unwrap())
            .collect(),
    };
    let isa_arg = args.next();
    let packed = isa_arg
        .as_deref()
        .is_some_and(|s| s.split(',').any(|n| n == "packed"));
    let isas: Vec<Isa> = match isa_arg {
        Some(s) if s != "all" => s
            .split(',')
            .filter(|&n| n != "packed")
            .map(|n| match n {
                "scalar" => Isa::Scalar,
                "avx2" => Isa::Avx2,
                "avx512" => Isa::Avx512,
                _ => panic!("isa {n}"),
            })
            .collect(),
        _ => vec![Isa::Avx2, Isa::Avx512],
    };
    let isas: Vec<Isa> = isas
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect();
    let threads: Vec<usize> = args
        .next()
        .map(|s| s.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or(vec![1, 2]);
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let buf = vec![1u64; (mib << 20) / 8];
    let x: Vec<f32> = (0..COLS).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    println!("type isa threads: stream GB/s (% of read bw GB/s) | hot GB/s (1 MiB)");
    for ty in types {
        let rb = ty.bytes_for(COLS as u64).unwrap() as usize;
        let rows = ((mib << 20) / rb / 16 * 16).max(16);
        let big = common::matrix(ty, rows, COLS, 512);
        let wb = Weights::new(ty, rows, COLS, &big).unwrap();
        let hot_rows = ((1 << 20) / rb / 16 * 16).max(16);
        let hot = Weights::new(ty, hot_rows, COLS, &big[..hot_rows * rb]).unwrap();
        let mut y = vec![0f32; rows];
        let mut s = Scratch::default();
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| {
                for &isa in &isas {
                    let bw = memread(&buf, reps);
                    let ts = best(reps, || {
                        matmul_with_isa(isa, &wb, &x, 1, &mut y, &mut s).unwrap()
                    });
                    let th = best(reps * 20, || {
                        matmul_with_isa(isa, &hot, &x, 1, &mut y[..hot_rows], &mut s).unwrap()
                    });
                    let g = big.len() as f64 / ts / 1e9;
                    let h = (hot_rows * rb) as f64 / th / 1e9;
                    println!(
                        "{:7} {:7} {t}: {g:5.1} ({:3.0}% of {bw:4.1}) | hot {h:5.1}",
                        ty.name(),
                        isa.name(),
                        100.0 * g / bw
                    );
                }
                let (Some(pb), Some(ph)) = (
                    PackedWeights::pack(&wb).unwrap().filter(|_| packed),
                    PackedWeights::pack(&hot).unwrap().filter(|_| packed),
                ) else {
                    return;
                };
                let bw = memread(&buf, reps);
                let ts = best(reps, || matmul_packed(&pb, &x, 1, &mut y, &mut s).unwrap());
                let th = best(reps * 20, || {
                    matmul_packed(&ph, &x, 1, &mut y[..hot_rows], &mut s).unwrap()
                });
                let g = big.len() as f64 / ts / 1e9;
                let h = (hot_rows * rb) as f64 / th / 1e9;
                println!(
                    "{:7} packed  {t}: {g:5.1} ({:3.0}% of {bw:4.1}) | hot {h:5.1}",
                    ty.name(),
                    100.0 * g / bw
                );
            });
        }
    }
}
