//! Streamed packing (`packed::StreamedWeights`, each 16-row group packed
//! on the fly) against weights packed once (`PackedWeights`), on the
//! packed ISA of this process, one thread (the global rayon pool is set
//! to `threads`, default 1), for 1 token and `tokens` tokens:
//!
//! * `hot`: a 256 KiB matrix that stays in L2: GB/s of file bytes
//!   (the compute cost of packing on the fly);
//! * `cold`: a 1 GiB matrix read from memory.
//!
//! `cargo run --release -p phi-kernels --example stream_speed -- [types] [threads] [tokens]`
//! (defaults: q8_0,q4_0; 1; 16).

use phi_kernels::packed::{
    matmul_packed, matmul_streamed, packed_isa, PackedWeights, StreamedWeights,
};
use phi_kernels::{GgmlType, Scratch, Weights};
use std::time::Instant;

mod common;

const COLS: usize = 3072;

/// Best seconds of `reps` calls of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let types = args.first().map_or("q8_0,q4_0", String::as_str);
    let threads: usize = args.get(1).map_or(1, |s| s.parse().expect("threads"));
    let tokens: usize = args.get(2).map_or(16, |s| s.parse().expect("tokens"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("pool");
    let Some(isa) = packed_isa() else {
        eprintln!("no packed ISA on this CPU");
        return;
    };
    println!("packed ISA {isa:?}, {threads} thread(s); GB/s of file bytes");
    println!("| type | size | tokens | packed once | streamed | streamed / packed |");
    println!("|---|---|---|---|---|---|");
    for name in types.split(',') {
        let ty = GgmlType::from_name(name).expect("type name");
        let row_bytes = ty.bytes_for(COLS as u64).unwrap() as usize;
        for (label, bytes) in [("hot", 256usize << 10), ("cold", 1 << 30)] {
            let rows = (bytes / row_bytes / 16 * 16).max(16);
            let data = common::matrix(ty, rows, COLS, 256);
            let w = Weights::new(ty, rows, COLS, &data).unwrap();
            let p = PackedWeights::pack_with_isa(isa, &w)
                .unwrap()
                .expect("packed type");
            let Some(s) = StreamedWeights::new(isa, &w).unwrap() else {
                println!("| {name} | no group packer |");
                break;
            };
            let mut scratch = Scratch::default();
            for n in [1, tokens] {
                let x: Vec<f32> = (0..COLS * n)
                    .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                    .collect();
                let mut y = vec![0f32; rows * n];
                let reps = if label == "hot" { 200 } else { 5 };
                let tp = best(reps, || {
                    matmul_packed(&p, &x, n, &mut y, &mut scratch).unwrap()
                });
                let yp = y.clone();
                let ts = best(reps, || {
                    matmul_streamed(&s, &w, &x, n, &mut y, &mut scratch).unwrap()
                });
                assert_eq!(
                    yp.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "streamed and packed results differ"
                );
                let gb = data.len() as f64 / 1e9;
                println!(
                    "| {name} | {label} | {n} | {:.1} | {:.1} | {:.2} |",
                    gb / tp,
                    gb / ts,
                    tp / ts
                );
            }
        }
    }
}
