//! Repeats one packed matmul (3072 → 9216, 1 thread) `reps` times, for
//! cycle counts on a busy machine: run it under
//! `perf stat -e cycles:u,instructions:u` with `reps` and with 0 and take
//! the difference (user cycles do not count time the process waits).
//!
//! `cargo run --release -p phi-kernels --example packed_cycles -- q4_k 64 40`
//! (`PHI_UNPACKED=1`: the same with `matmul` on the unpacked weights, the
//! baseline; `PHI_ISA` / `PHI_AVX2_DOT` choose the kernels as usual).

use phi_kernels::packed::{matmul_packed, PackedWeights};
use phi_kernels::{quantize_row, GgmlType, Scratch, Weights};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "q4_k".into());
    let ty = GgmlType::from_name(&name).expect("type name, e.g. q4_k");
    let nt: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(40);
    let (rows, cols) = (9216usize, 3072usize);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    // 64 distinct rows, repeated (quantizing all rows is slow for K-quants).
    let row_bytes = cols / ty.block_size() * ty.type_size();
    let mut proto = vec![0u8; 64 * row_bytes];
    for o in proto.chunks_exact_mut(row_bytes) {
        let wf: Vec<f32> = (0..cols).map(|_| rnd()).collect();
        quantize_row(ty, &wf, o).expect("quantize");
    }
    let data = proto.repeat(rows / 64);
    let x: Vec<f32> = (0..nt * cols).map(|_| rnd()).collect();
    let w = Weights::new(ty, rows, cols, &data).expect("weights");
    let Some(p) = PackedWeights::pack(&w).expect("pack") else {
        println!("{ty}: no packed path on this CPU");
        return;
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut s = Scratch::default();
    let mut y = vec![0f32; nt * rows];
    let unpacked = std::env::var_os("PHI_UNPACKED").is_some_and(|v| v == "1");
    let t = std::time::Instant::now();
    for _ in 0..reps {
        if unpacked {
            pool.install(|| phi_kernels::matmul(&w, &x, nt, &mut y, &mut s).expect("matmul"));
        } else {
            pool.install(|| matmul_packed(&p, &x, nt, &mut y, &mut s).expect("packed"));
        }
    }
    let ops = 2.0 * (rows * cols * nt * reps) as f64;
    println!(
        "{ty} {nt} tokens x {reps}: {:.1} GOP/s wall ({:.3e} ops)",
        ops / t.elapsed().as_secs_f64() / 1e9,
        ops
    );
}
