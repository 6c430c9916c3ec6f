//! Cost of a packed matmul over n = 1..8 tokens relative to one token, on
//! one thread: the batched decode of `phi serve` runs exactly these
//! products (one per weight matrix per step). Two cases: weights streamed
//! from memory (8 matrices of 9216 × 3072, read round-robin, far larger
//! than any cache) and a cache-resident 3072 × 3072 matrix (the compute
//! ceiling). Times are the thread's CPU time (`/proc/thread-self/schedstat`),
//! so a busy machine inflates them less than wall time; rounds are
//! interleaved over n and the best round is kept.
//!
//! `cargo run --release -p phi-kernels --example small_batch -- q4_0 [rounds]`
//! (`PHI_ISA=avx2` for the 256-bit kernels).

use phi_kernels::packed::{matmul_packed, PackedWeights};
use phi_kernels::{quantize_row, GgmlType, Scratch, Weights};
use std::time::Instant;

/// The calling thread's CPU time in ns (wall time where it cannot be read).
fn thread_ns(wall: &Instant) -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| wall.elapsed().as_nanos() as u64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "q4_0".into());
    let ty = GgmlType::from_name(&name).expect("type name, e.g. q4_0");
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let cols = 3072usize;
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let row_bytes = cols / ty.block_size() * ty.type_size();
    let mut proto = vec![0u8; 64 * row_bytes];
    for o in proto.chunks_exact_mut(row_bytes) {
        let wf: Vec<f32> = (0..cols).map(|_| rnd()).collect();
        quantize_row(ty, &wf, o).expect("quantize");
    }
    let pack = |rows: usize| {
        let data = proto.repeat(rows / 64);
        let w = Weights::new(ty, rows, cols, &data).expect("weights");
        PackedWeights::pack(&w)
            .expect("pack")
            .expect("a packed path for this type and CPU")
    };
    let stream: Vec<PackedWeights> = (0..8).map(|_| pack(9216)).collect();
    let resident = pack(3072);
    let isa = resident.isa();
    let ns = [1usize, 2, 3, 4, 6, 8];
    let x: Vec<f32> = (0..8 * cols).map(|_| rnd()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut s = Scratch::default();
    let mut y = vec![0f32; 8 * 9216];
    let wall = Instant::now();
    // best[case][n] in ns per call.
    let mut best = [[u64::MAX; 6]; 2];
    for _ in 0..rounds {
        for (i, &n) in ns.iter().enumerate() {
            pool.install(|| {
                // The kernel's CPU clock advances in scheduler ticks: measure
                // stretches of tens of ms.
                let passes = 6;
                let t0 = thread_ns(&wall);
                for _ in 0..passes {
                    for p in &stream {
                        matmul_packed(p, &x[..n * cols], n, &mut y[..n * 9216], &mut s)
                            .expect("mm");
                    }
                }
                let t1 = thread_ns(&wall);
                best[0][i] = best[0][i].min((t1 - t0) / (passes * stream.len()) as u64);
                let reps = 400 / n as u64;
                let t0 = thread_ns(&wall);
                for _ in 0..reps {
                    matmul_packed(&resident, &x[..n * cols], n, &mut y[..n * 3072], &mut s)
                        .expect("mm");
                }
                let t1 = thread_ns(&wall);
                best[1][i] = best[1][i].min((t1 - t0) / reps);
            });
        }
    }
    println!("{ty} packed for {isa:?}, 1 thread, CPU time, best of {rounds} rounds");
    println!("| case | n | µs/call | µs/token | × n=1 cost | GB/s weights | GOP/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (case, rows, label) in [
        (0, 9216, "streamed 9216x3072"),
        (1, 3072, "resident 3072x3072"),
    ] {
        let bytes = (rows * row_bytes) as f64;
        for (i, &n) in ns.iter().enumerate() {
            let t = best[case][i] as f64;
            println!(
                "| {label} | {n} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} |",
                t / 1e3,
                t / 1e3 / n as f64,
                t / best[case][0] as f64,
                bytes / t,
                2.0 * (rows * cols * n) as f64 / t
            );
        }
    }
}
