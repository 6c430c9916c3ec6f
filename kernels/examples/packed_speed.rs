//! `matmul` vs `matmul_packed` on a 3072 → 9216 matrix of every packed type
//! (Phi-3-mini's gate/up projection), 1 thread, 1 / 16 / 64 tokens.
//!
//! `CARGO_TARGET_DIR=... cargo run --release -p phi-kernels --example packed_speed`
//! (optional args: threads, then reps, then a comma-separated type list).

use phi_kernels::packed::{matmul_packed, PackedWeights};
use phi_kernels::{matmul, quantize_row, GgmlType, Scratch, Weights};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let (rows, cols) = (9216usize, 3072usize);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let wf: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
    let x: Vec<f32> = (0..64 * cols).map(|_| rnd()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    println!("{rows}x{cols}, {threads} thread(s), best of {reps}");
    // Optional third argument: the types to run, e.g. `q4_k,q6_k`.
    let only: Option<String> = args.next();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::IQ4_NL,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q3_K,
        GgmlType::Q2_K,
        GgmlType::IQ4_XS,
    ] {
        let name = format!("{ty}").to_lowercase();
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|t| t == name))
        {
            continue;
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let mut data = vec![0u8; rows * row_bytes];
        for (r, o) in data.chunks_exact_mut(row_bytes).enumerate() {
            quantize_row(ty, &wf[r * cols..][..cols], o).expect("quantize");
        }
        let w = Weights::new(ty, rows, cols, &data).expect("weights");
        // gemv on 8 stacked copies (≥ 128 MiB, beyond the caches): memory-bound.
        {
            let big: Vec<u8> = data.repeat(8);
            let wb = Weights::new(ty, rows * 8, cols, &big).expect("weights");
            if let Some(pb) = PackedWeights::pack(&wb).expect("pack") {
                let mut s = Scratch::default();
                let mut y = vec![0f32; rows * 8];
                let xs = &x[..cols];
                let (mut tb, mut tp) = (f64::INFINITY, f64::INFINITY);
                for _ in 0..reps + 1 {
                    let t = Instant::now();
                    pool.install(|| matmul(&wb, xs, 1, &mut y, &mut s).expect("matmul"));
                    tb = tb.min(t.elapsed().as_secs_f64());
                    let t = Instant::now();
                    pool.install(|| matmul_packed(&pb, xs, 1, &mut y, &mut s).expect("packed"));
                    tp = tp.min(t.elapsed().as_secs_f64());
                }
                let gbs = |t: f64| big.len() as f64 / t / 1e9;
                println!(
                    "{ty} gemv {}x{cols} ({} MiB): matmul {:.2} ms ({:.1} GB/s)  packed {:.2} ms ({:.1} GB/s)  x{:.2}",
                    rows * 8,
                    big.len() >> 20,
                    tb * 1e3,
                    gbs(tb),
                    tp * 1e3,
                    gbs(tp),
                    tb / tp
                );
            }
        }
        let t0 = Instant::now();
        let Some(p) = PackedWeights::pack(&w).expect("pack") else {
            println!("{ty}: no packed path on this CPU");
            continue;
        };
        println!("{ty}: pack {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let mut s = Scratch::default();
        for nt in [1usize, 16, 64] {
            let xs = &x[..nt * cols];
            let mut y = vec![0f32; nt * rows];
            let mut best = |f: &mut (dyn FnMut(&mut [f32], &mut Scratch) + Send)| {
                let mut b = f64::INFINITY;
                for _ in 0..reps + 1 {
                    let t = Instant::now();
                    pool.install(|| f(&mut y, &mut s));
                    b = b.min(t.elapsed().as_secs_f64());
                }
                b
            };
            let base = best(&mut |y, s| matmul(&w, xs, nt, y, s).expect("matmul"));
            let packed = best(&mut |y, s| matmul_packed(&p, xs, nt, y, s).expect("packed"));
            let gop = |t: f64| 2.0 * (rows * cols * nt) as f64 / t / 1e9;
            println!(
                "{ty} tokens {nt:>2}: matmul {:8.2} ms ({:6.1} GOP/s)  packed {:8.2} ms ({:6.1} GOP/s)  x{:.2}",
                base * 1e3,
                gop(base),
                packed * 1e3,
                gop(packed),
                base / packed
            );
        }
    }
}
