//! gemv / gemm at Phi-3-mini shapes, per type and per ISA path, plus a
//! plain memory-read loop for scale.
//!
//! `cargo bench -p phi-kernels --bench matmul` runs a short default set
//! (~4 min: every type at 3072→9216 on the best path and, where the CPU
//! has it, on the repacked layout the runtime uses (`avx512-packed` on
//! AVX-512 VNNI: every packed type; `avx2-packed`: Q4_0, Q4_1, Q5_0, Q5_1);
//! Q4_0, Q4_K and Q6_K (the
//! types of Q4_0 and Q4_K_M files) at every shape);
//! `PHI_BENCH_FULL=1` runs every type × shape × path (scalar included).
//! `PHI_BENCH_THREADS=1,2` picks the rayon pool sizes (default 1,2).
//! gemv throughput = weight bytes / s; gemm "elements" = 2·rows·cols·tokens
//! operations / s (so Gelem/s reads as GOP/s).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phi_kernels::packed::{matmul_packed, PackedWeights};
use phi_kernels::{dispatch, matmul_with_isa, GgmlType, Isa, Scratch, Weights};
use std::time::Duration;

// The integration tests' deterministic inputs.
#[path = "../tests/common/mod.rs"]
mod common;
use common::rand_vec;

/// (cols, rows): qkv, attn_output, ffn_up(gate|up), ffn_down, output.
const SHAPES: [(usize, usize); 5] = [
    (3072, 9216),
    (3072, 3072),
    (3072, 16384),
    (8192, 3072),
    (3072, 32064),
];

const TYPES: [GgmlType; 15] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

const GEMM_TOKENS: usize = 64;

fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() / ty.block_size() * ty.type_size()];
    phi_kernels::quantize_row(ty, x, &mut out).expect("quantize");
    out
}

/// A rows×cols matrix of `ty`: 64 distinct quantized rows, repeated.
fn matrix(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let distinct = 64.min(rows);
    let proto = quantize(ty, &rand_vec(distinct * cols, cols as u64, 1.0));
    let rb = proto.len() / distinct;
    let mut out = Vec::with_capacity(rb * rows);
    for r in 0..rows {
        out.extend_from_slice(&proto[(r % distinct) * rb..(r % distinct + 1) * rb]);
    }
    out
}

fn thread_counts() -> Vec<usize> {
    std::env::var("PHI_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("thread pool")
}

/// Sums a buffer far larger than the caches: the read bandwidth a gemv can hope for.
fn memory_read(c: &mut Criterion) {
    let buf: Vec<u64> = (0..(256usize << 20) / 8).map(|i| i as u64).collect();
    let mut g = c.benchmark_group("memread");
    g.throughput(Throughput::Bytes((buf.len() * 8) as u64));
    for threads in thread_counts() {
        let p = pool(threads);
        g.bench_function(BenchmarkId::new("sum_u64", format!("{threads}t")), |b| {
            b.iter(|| {
                p.install(|| {
                    use rayon::prelude::*;
                    buf.par_chunks(1 << 16)
                        .map(|ch| {
                            // Four independent sums so the loop is load-bound.
                            let mut s = [0u64; 4];
                            for q in ch.chunks_exact(4) {
                                for k in 0..4 {
                                    s[k] = s[k].wrapping_add(q[k]);
                                }
                            }
                            s.iter().fold(0u64, |a, v| a.wrapping_add(*v))
                        })
                        .reduce(|| 0, u64::wrapping_add)
                })
            })
        });
    }
    g.finish();
}

fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect()
}

fn bench_matmul(c: &mut Criterion) {
    let full = std::env::var("PHI_BENCH_FULL").is_ok();
    let best = dispatch::best();
    for ty in TYPES {
        for (si, &(cols, rows)) in SHAPES.iter().enumerate() {
            let wide = full || matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_K | GgmlType::Q6_K);
            if si > 0 && !wide {
                continue;
            }
            let data = matrix(ty, rows, cols);
            let w = Weights::new(ty, rows, cols, &data).expect("weights");
            let x = rand_vec(cols * GEMM_TOKENS, 7, 1.0);
            let mut y = vec![0.0f32; rows * GEMM_TOKENS];
            let mut scratch = Scratch::default();
            for isa in isas() {
                // Default: best path only. Full: every path (scalar only at the
                // first shape: it is slow and only a reference).
                if (!full && isa != best) || (isa == Isa::Scalar && si > 0) {
                    continue;
                }
                for threads in thread_counts() {
                    let p = pool(threads);
                    let mut g = c.benchmark_group(format!("gemv/{ty}"));
                    g.throughput(Throughput::Bytes(data.len() as u64));
                    g.bench_function(
                        BenchmarkId::new(format!("{isa}/{threads}t"), format!("{cols}x{rows}")),
                        |b| {
                            b.iter(|| {
                                p.install(|| {
                                    matmul_with_isa(
                                        isa,
                                        &w,
                                        &x[..cols],
                                        1,
                                        &mut y[..rows],
                                        &mut scratch,
                                    )
                                })
                                .expect("gemv");
                                black_box(&y);
                            })
                        },
                    );
                    g.finish();
                    if isa == Isa::Scalar || si != 0 {
                        continue;
                    }
                    let mut g = c.benchmark_group(format!("gemm{GEMM_TOKENS}/{ty}"));
                    g.throughput(Throughput::Elements((2 * rows * cols * GEMM_TOKENS) as u64));
                    g.bench_function(
                        BenchmarkId::new(format!("{isa}/{threads}t"), format!("{cols}x{rows}")),
                        |b| {
                            b.iter(|| {
                                p.install(|| {
                                    matmul_with_isa(isa, &w, &x, GEMM_TOKENS, &mut y, &mut scratch)
                                })
                                .expect("gemm");
                                black_box(&y);
                            })
                        },
                    );
                    g.finish();
                }
            }
            for isa in packed_isas() {
                if let Some(pk) = PackedWeights::pack_with_isa(isa, &w).expect("pack") {
                    bench_packed(c, &pk, &x, &mut y, &mut scratch, si == 0);
                }
            }
        }
    }
}

/// The packed kernels this process runs: the runtime's choice
/// (`packed::packed_isa`) and, on AVX-512 VNNI, also the AVX2 ones.
fn packed_isas() -> Vec<Isa> {
    match phi_kernels::packed::packed_isa() {
        Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
        Some(isa) => vec![isa],
        None => Vec::new(),
    }
}

/// gemv (and, with `gemm`, gemm of [`GEMM_TOKENS`]) on a repacked matrix.
fn bench_packed(
    c: &mut Criterion,
    pk: &PackedWeights,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Scratch,
    gemm: bool,
) {
    let (ty, rows, cols) = (pk.ty(), pk.rows(), pk.cols());
    for threads in thread_counts() {
        let p = pool(threads);
        let id = BenchmarkId::new(
            format!("{}-packed/{threads}t", pk.isa().name()),
            format!("{cols}x{rows}"),
        );
        let mut g = c.benchmark_group(format!("gemv/{ty}"));
        g.throughput(Throughput::Bytes(pk.data().len() as u64));
        g.bench_function(id.clone(), |b| {
            b.iter(|| {
                p.install(|| matmul_packed(pk, &x[..cols], 1, &mut y[..rows], scratch))
                    .expect("gemv");
                black_box(&y);
            })
        });
        g.finish();
        if !gemm {
            continue;
        }
        let mut g = c.benchmark_group(format!("gemm{GEMM_TOKENS}/{ty}"));
        g.throughput(Throughput::Elements((2 * rows * cols * GEMM_TOKENS) as u64));
        g.bench_function(id, |b| {
            b.iter(|| {
                p.install(|| matmul_packed(pk, x, GEMM_TOKENS, y, scratch))
                    .expect("gemm");
                black_box(&y);
            })
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = memory_read, bench_matmul
}
criterion_main!(benches);
