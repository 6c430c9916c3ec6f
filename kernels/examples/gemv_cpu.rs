//! CPU cost of the 256-bit (`Isa::Avx2`) packed gemv (1 token) per type and
//! dot flavour, measured in thread CPU time (`clock_gettime`, nanoseconds),
//! so that a loaded machine disturbs it less than wall time:
//!
//! * `hot`: a matrix that stays in L2 (the compute ceiling of one thread):
//!   ns and cycles (at the nominal `cpu MHz` of `/proc/cpuinfo`, not the
//!   boost clock) per row and 256 weights, and GB/s of file bytes per
//!   CPU-second;
//! * `stream`: a matrix far larger than L3 on 1 and 2 threads: wall GB/s
//!   (best of `reps`) against a plain read loop measured right before it,
//!   and file GB/s per CPU-second summed over the process's threads (below
//!   the hot figure when the kernel waits for memory).
//!
//! `cargo run --release -p phi-kernels --example gemv_cpu -- [types] [dots] [reps] [MiB] [tokens]`
//! e.g. `-- q4_k,q6_k maddubs,avxvnni 7 256` (defaults: Q4_K, Q6_K, Q4_0,
//! Q8_0; every flavour the CPU has; 7 reps; 256 MiB, 0: hot only; 1
//! token: `tokens` > 1 times the hot calls with that many tokens, the
//! figures then per token).

use phi_kernels::packed::{matmul_packed, Avx2Dot, PackedWeights};
use phi_kernels::{dispatch, GgmlType, Isa, Scratch, Weights};
use rayon::prelude::*;
use std::time::Instant;

mod common;

const COLS: usize = 3072;

/// CPU nanoseconds of `clock` (`CLOCK_THREAD_CPUTIME_ID`: the calling
/// thread; `CLOCK_PROCESS_CPUTIME_ID`: all of the process's threads).
#[cfg(unix)]
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(unix)]
fn thread_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[cfg(unix)]
fn process_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    0
}

#[cfg(not(unix))]
fn process_cpu_ns() -> u64 {
    0
}

fn nominal_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn packed(ty: GgmlType, rows: usize, data: &[u8], dot: Avx2Dot) -> PackedWeights {
    let w = Weights::new(ty, rows, COLS, data).expect("weights");
    let mut p = PackedWeights::pack_with_isa(Isa::Avx2, &w)
        .expect("pack")
        .expect("an AVX2 packed path");
    p.set_avx2_dot(dot).expect("flavour");
    p
}

/// Best of `reps` plain read passes over `buf` (GB/s), on the current pool.
fn read_bw(buf: &[u64], reps: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let s: u64 = buf
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (buf.len() * 8) as f64 / best / 1e9
}

fn main() {
    let mut args = std::env::args().skip(1);
    let types: Vec<GgmlType> = args
        .next()
        .unwrap_or_else(|| "q4_k,q6_k,q4_0,q8_0".into())
        .split(',')
        .map(|n| GgmlType::from_name(n).expect("type name"))
        .collect();
    let dots: Vec<Avx2Dot> = match args.next() {
        Some(s) if s != "all" => s.split(',').map(|n| n.parse().expect("dot name")).collect(),
        _ => Avx2Dot::ALL.to_vec(),
    };
    let dots: Vec<Avx2Dot> = dots.into_iter().filter(|d| d.available()).collect();
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(7);
    let mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    // Tokens of the hot calls (1: gemv; more: the gemm tiles, per token).
    let nt: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    if !dispatch::is_available(Isa::Avx2) {
        println!("no AVX2");
        return;
    }
    let mhz = nominal_mhz();
    let pools: Vec<_> = [1, 2]
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .into();
    let buf = vec![1u64; (mib << 20) / 8];
    let x: Vec<f32> = (0..COLS).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    let mut s = Scratch::default();
    println!(
        "type dot: hot ns | cycles @{mhz:.0} MHz per row·256 | hot CPU-GB/s || \
         stream wall GB/s / read GB/s (CPU-GB/s), 1 thread ; 2 threads"
    );
    for &ty in &types {
        let rb = ty.bytes_for(COLS as u64).unwrap() as usize;
        let hot_rows = ((512 << 10) / rb / 16 * 16).max(16);
        let hot_data = common::matrix(ty, hot_rows, COLS, 256);
        let big_rows = ((mib << 20) / rb / 16 * 16).max(16);
        let big_data = if mib > 0 {
            common::matrix(ty, big_rows, COLS, 256)
        } else {
            Vec::new()
        };
        for &dot in &dots {
            let hot = packed(ty, hot_rows, &hot_data, dot);
            let mut y = vec![0f32; big_rows.max(hot_rows * nt)];
            let xs: Vec<f32> = x.iter().copied().cycle().take(COLS * nt).collect();
            // Hot: the best per-call thread CPU time over reps batches.
            let calls = 200;
            let mut best = u64::MAX;
            pools[0].install(|| {
                for _ in 0..=reps {
                    let c0 = thread_cpu_ns();
                    for _ in 0..calls {
                        matmul_packed(&hot, &xs, nt, &mut y[..hot_rows * nt], &mut s).unwrap();
                    }
                    best = best.min(thread_cpu_ns() - c0);
                }
            });
            let per_call = best as f64 / calls as f64;
            let units = (hot_rows * COLS / 256 * nt) as f64;
            let ns = per_call / units;
            let hot_gbs = (hot_data.len() * nt) as f64 / per_call;
            let mut line = format!(
                "{:6} {:8}: hot {ns:6.2} ns | {:6.1} cyc | {hot_gbs:5.1} GB/s",
                ty.name(),
                dot.name(),
                ns * mhz / 1e3
            );
            if mib > 0 {
                let big = packed(ty, big_rows, &big_data, dot);
                line.push_str(" ||");
                for pool in &pools {
                    pool.install(|| {
                        let bw = read_bw(&buf, reps);
                        matmul_packed(&big, &x, 1, &mut y, &mut s).unwrap();
                        let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
                        for _ in 0..reps {
                            let (t, c0) = (Instant::now(), process_cpu_ns());
                            matmul_packed(&big, &x, 1, &mut y, &mut s).unwrap();
                            wall = wall.min(t.elapsed().as_secs_f64());
                            cpu = cpu.min((process_cpu_ns() - c0) as f64);
                        }
                        let g = big_data.len() as f64 / wall / 1e9;
                        line.push_str(&format!(
                            " {g:5.1} / {bw:4.1} ({:5.1})",
                            big_data.len() as f64 / cpu
                        ));
                    });
                }
            }
            println!("{line}");
        }
    }
}
