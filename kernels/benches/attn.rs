//! Attention of one query row (decode) and of a group of 4 (prefill) over
//! one Phi-3-mini head (head_dim 96, cell stride 3072, f16 KV) against 128
//! and 512 cells, single-threaded: `attend` on each ISA path beside the
//! former per-cell form (one dispatched `dot_f16_f32` and `axpy_f16` call
//! per cell and a libm exp), which `runtime::context::attention` used.
//!
//! `cargo bench -p phi-kernels --bench attn` (~1 min). Throughput is KV
//! bytes read per second (K and V rows of the cells seen).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use phi_kernels::attn::{self, KvHead, KvRows};
use phi_kernels::{dispatch, vec as kvec, Isa};
use std::time::Duration;

const DIM: usize = 96;
const STRIDE: usize = 3072;

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

/// The per-cell form the runtime used before `attn::attend`.
fn per_cell(k: &[f16], v: &[f16], q: &[f32], n: usize, s: &mut [f32], o: &mut [f32]) {
    let scale = 1.0 / (DIM as f32).sqrt();
    let mut max = f32::NEG_INFINITY;
    for (j, sj) in s[..n].iter_mut().enumerate() {
        *sj = kvec::dot_f16_f32(&k[j * STRIDE..j * STRIDE + DIM], q) * scale;
        max = max.max(*sj);
    }
    let mut sum = 0f64;
    for sj in s[..n].iter_mut() {
        *sj = (*sj - max).exp();
        sum += *sj as f64;
    }
    let inv = (1.0 / sum) as f32;
    o.fill(0.0);
    for (j, &sj) in s[..n].iter().enumerate() {
        kvec::axpy_f16(o, sj * inv, &v[j * STRIDE..j * STRIDE + DIM]);
    }
}

fn bench(c: &mut Criterion) {
    let cells = 512;
    let k: Vec<f16> = data(cells * STRIDE, 1)
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let v: Vec<f16> = data(cells * STRIDE, 2)
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let q = data(4 * DIM, 3);
    let head = KvHead {
        k: KvRows::F16(&k),
        v: KvRows::F16(&v),
        stride: STRIDE,
        dim: DIM,
    };
    let mut s = vec![0f32; attn::GROUP * cells];
    let mut o = vec![0f32; 4 * DIM];
    let scale = 1.0 / (DIM as f32).sqrt();
    let mut g = c.benchmark_group("attn_f16_hd96");
    for n in [128usize, 512] {
        g.throughput(Throughput::Bytes((2 * n * DIM * 2) as u64));
        g.bench_function(BenchmarkId::new("per-cell", n), |b| {
            b.iter(|| per_cell(&k, &v, &q[..DIM], n, &mut s, &mut o[..DIM]))
        });
        for isa in Isa::ALL.into_iter().filter(|&i| dispatch::is_available(i)) {
            let whole = 0..n;
            let one = std::slice::from_ref(&whole);
            g.bench_function(BenchmarkId::new(format!("attend-{isa}"), n), |b| {
                b.iter(|| {
                    attn::attend_with_isa(isa, &head, &q[..DIM], one, scale, &mut s, &mut o[..DIM])
                        .unwrap();
                    black_box(&o);
                })
            });
        }
    }
    // Prefill: 4 consecutive queries (causal), per query.
    let n = 512;
    g.throughput(Throughput::Bytes((4 * 2 * n * DIM * 2) as u64));
    let four = [0..n - 3, 0..n - 2, 0..n - 1, 0..n];
    for isa in Isa::ALL.into_iter().filter(|&i| dispatch::is_available(i)) {
        g.bench_function(BenchmarkId::new(format!("attend4-{isa}"), n), |b| {
            b.iter(|| {
                attn::attend_with_isa(isa, &head, &q, &four, scale, &mut s, &mut o).unwrap();
                black_box(&o);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
