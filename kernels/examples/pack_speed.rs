//! The cost of repacking at load: `PackedWeights::pack_with_isa` on a
//! 9216 × 3072 matrix (Phi-3-mini's gate/up projection, 8 copies stacked:
//! 65–125 MiB, beyond the caches) of each packed type, against copying the
//! same bytes into a fresh buffer (the memory-speed baseline: the same
//! reads, writes and first-touch page faults, none of the shuffling).
//!
//! ```sh
//! cargo run --release -p phi-kernels --example pack_speed -- [THREADS] [REPS] [ISA] [TYPES]
//! ```
//! ISA `avx2` (default) or `avx512`; TYPES comma-separated (`q4_0,q4_k`).
//! Times are the best of REPS (default 5) of the CPU time of the calling
//! pool thread (`/proc/thread-self/schedstat`; with THREADS = 1 it does all
//! the work), which a loaded machine disturbs much less than wall time.

use phi_kernels::packed::PackedWeights;
use phi_kernels::{quantize_row, GgmlType, Isa, Weights};

/// This thread's CPU time in seconds (Linux; 0 elsewhere).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}

/// `f()` on `pool`, with the CPU time it took on the pool thread.
fn timed<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> (R, f64) {
    pool.install(|| {
        let t = thread_cpu();
        let r = f();
        (r, thread_cpu() - t)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let isa = match args.next().as_deref() {
        Some("avx512") => Isa::Avx512,
        _ => Isa::Avx2,
    };
    let only: Option<String> = args.next();
    let (rows, cols, copies) = (9216usize, 3072usize, 8usize);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    println!(
        "{}x{cols} ({copies} stacked copies), {threads} thread(s), {isa:?} layout, best of {reps}",
        rows * copies
    );
    let names =
        only.unwrap_or_else(|| "q4_0,q4_1,q5_0,q8_0,q4_k,q5_k,q6_k,q3_k,q2_k,iq4_xs".into());
    for name in names.split(',') {
        let ty = GgmlType::from_name(&name.to_ascii_uppercase()).expect("a type name, e.g. q4_k");
        // Deterministic weights in −1..1 (their values do not matter here).
        let row: Vec<f32> = (0..cols)
            .map(|c| ((c * 7919) as f32 * 1e-3).sin())
            .collect();
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let mut q = vec![0u8; row_bytes];
        quantize_row(ty, &row, &mut q).expect("quantize");
        let data = q.repeat(rows);
        let big = data.repeat(copies);
        let w = Weights::new(ty, rows * copies, cols, &big).expect("weights");
        let (mut tp, mut tc) = (f64::INFINITY, f64::INFINITY);
        let mut packed_len = 0;
        for _ in 0..reps {
            let (p, t) = timed(&pool, || {
                PackedWeights::pack_with_isa(isa, &w).expect("pack")
            });
            tp = tp.min(t);
            let Some(p) = p else { break };
            packed_len = p.data().len();
            drop(p);
            let (copy, t) = timed(&pool, || {
                use rayon::prelude::*;
                let mut v = vec![0u8; big.len()];
                v.par_chunks_mut(1 << 20)
                    .zip(big.par_chunks(1 << 20))
                    .for_each(|(o, i)| o.copy_from_slice(i));
                v
            });
            tc = tc.min(t);
            std::hint::black_box(copy);
        }
        if packed_len == 0 {
            println!("{ty}: no packed layout for {isa:?}");
            continue;
        }
        let gbs = |t: f64| big.len() as f64 / t / 1e9;
        println!(
            "{ty} ({} MiB -> {} MiB): pack {:.1} ms ({:.2} GB/s)  copy {:.1} ms ({:.2} GB/s)  pack/copy {:.2}",
            big.len() >> 20,
            packed_len >> 20,
            tp * 1e3,
            gbs(tp),
            tc * 1e3,
            gbs(tc),
            tp / tc
        );
    }
}
