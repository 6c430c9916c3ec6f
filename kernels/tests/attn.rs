//! Attention over a KV head (`phi_kernels::attn`): every ISA this CPU runs
//! against the scalar reference, for f32 / f16 / Q8_0 rows, odd head sizes,
//! strides and spans; each query's result bit-identical alone and in groups
//! of any size; the exp's error bound.
//!
//! Bound: outputs are convex combinations of V rows, and the paths differ
//! only in the order of f32 sums and in exp (≤ 2 ulp), so
//! |simd − scalar| ≤ 1e-4 · (1 + max|v|) for scores of moderate size.

use half::f16;
use phi_kernels::attn::{self, KvHead, KvRows};
use phi_kernels::{dispatch, GgmlType, Isa};
use proptest::prelude::*;
use std::ops::Range;

mod common;
use common::rand_vec;

fn isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect()
}

/// The K and V caches of one test in all three element types.
struct Cache {
    f32: [Vec<f32>; 2],
    f16: [Vec<f16>; 2],
    q8: [Vec<u8>; 2],
}

impl Cache {
    fn new(cells: usize, stride: usize, seed: u64) -> Cache {
        let f32 = [
            rand_vec(cells * stride, seed, 2.0),
            rand_vec(cells * stride, seed ^ 0xABCD, 2.0),
        ];
        let f16 = f32
            .clone()
            .map(|v| v.iter().map(|&x| f16::from_f32(x)).collect());
        let q8 = f32.clone().map(|v| {
            if !stride.is_multiple_of(32) {
                return Vec::new();
            }
            let mut b = vec![0u8; v.len() / 32 * 34];
            phi_kernels::quantize_row(GgmlType::Q8_0, &v, &mut b).unwrap();
            b
        });
        Cache { f32, f16, q8 }
    }

    /// The head starting at element `off` of each cell (a whole block for Q8_0).
    fn head(&self, ty: GgmlType, off: usize, stride: usize, dim: usize) -> KvHead<'_> {
        let rows = |i: usize| match ty {
            GgmlType::F32 => KvRows::F32(&self.f32[i][off..]),
            GgmlType::F16 => KvRows::F16(&self.f16[i][off..]),
            _ => KvRows::Q8_0(&self.q8[i][off / 32 * 34..]),
        };
        KvHead {
            k: rows(0),
            v: rows(1),
            stride,
            dim,
        }
    }
}

fn run(isa: Option<Isa>, head: &KvHead<'_>, q: &[f32], spans: &[Range<usize>]) -> Vec<f32> {
    let mut out = vec![f32::NAN; q.len()];
    let mut scores = vec![f32::NAN; attn::scores_len(spans)];
    let scale = 1.0 / (head.dim as f32).sqrt();
    match isa {
        Some(isa) => {
            attn::attend_with_isa(isa, head, q, spans, scale, &mut scores, &mut out).unwrap()
        }
        None => attn::scalar::attend(head, q, spans, scale, &mut scores, &mut out),
    }
    out
}

/// Random spans inside `cells`, some causal-like (shared start, growing
/// end), some windowed, some empty.
fn spans(m: usize, cells: usize, seed: u64) -> Vec<Range<usize>> {
    let r = rand_vec(2 * m, seed, 1.0);
    (0..m)
        .map(|t| {
            let a = ((r[2 * t] + 1.0) / 2.0 * cells as f32) as usize % (cells + 1);
            let b = ((r[2 * t + 1] + 1.0) / 2.0 * cells as f32) as usize % (cells + 1);
            if seed.is_multiple_of(3) {
                0..(cells + 1 + t).saturating_sub(m).min(cells)
            } else {
                a.min(b)..a.max(b)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn simd_matches_scalar(
        dim in prop_oneof![Just(96usize), Just(64), Just(128), Just(32), 1usize..140],
        extra in prop_oneof![Just(0usize), 0usize..40],
        cells in 1usize..70,
        m in 1usize..9,
        seed in any::<u64>(),
    ) {
        let stride = dim + extra;
        let cache = Cache::new(cells, stride, seed);
        let q = rand_vec(m * dim, seed ^ 7, 3.0);
        let sp = spans(m, cells, seed);
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0] {
            if ty == GgmlType::Q8_0 && !(dim.is_multiple_of(32) && stride.is_multiple_of(32)) {
                continue;
            }
            let head = cache.head(ty, 0, stride, dim);
            let want = run(None, &head, &q, &sp);
            let vmax = 2.0f32;
            for isa in isas() {
                let got = run(Some(isa), &head, &q, &sp);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    prop_assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + vmax),
                        "{isa} {ty:?} dim {dim} stride {stride} at {i}: {g} vs {w}"
                    );
                }
                // Empty spans give zero rows.
                for (t, s) in sp.iter().enumerate() {
                    if s.is_empty() {
                        prop_assert!(got[t * dim..(t + 1) * dim].iter().all(|&x| x == 0.0));
                    }
                }
            }
        }
    }

    /// Each query's bits are the same alone, in the full list, and in
    /// every window of the list (other group boundaries and sizes).
    #[test]
    fn query_results_do_not_depend_on_the_group(
        dim in prop_oneof![Just(96usize), Just(64), 1usize..140],
        cells in 1usize..90,
        m in 1usize..11,
        seed in any::<u64>(),
    ) {
        let stride = dim.next_multiple_of(32);
        let cache = Cache::new(cells, stride, seed);
        let q = rand_vec(m * dim, seed ^ 11, 3.0);
        let sp = spans(m, cells, seed);
        for ty in [GgmlType::F16, GgmlType::F32] {
            let head = cache.head(ty, 0, stride, dim);
            for isa in isas() {
                let alone: Vec<u32> = (0..m)
                    .flat_map(|t| run(Some(isa), &head, &q[t * dim..(t + 1) * dim], &sp[t..t + 1]))
                    .map(f32::to_bits)
                    .collect();
                for a in 0..m {
                    for b in a + 1..=m.min(a + 6) {
                        let got = run(Some(isa), &head, &q[a * dim..b * dim], &sp[a..b]);
                        let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                        prop_assert_eq!(&got[..], &alone[a * dim..b * dim], "{} {:?} queries {}..{}", isa, ty, a, b);
                    }
                }
            }
        }
    }
}

#[test]
fn causal_prefill_groups_match_decode_bits() {
    // The runtime's pattern: queries at positions p0..p0+m see cells 0..=p,
    // or a sliding window of them; a prompt chunked differently must give
    // the same bits as one token at a time.
    let (dim, heads, cells) = (96, 3, 77);
    let stride = dim * heads;
    let cache = Cache::new(cells, stride, 42);
    let q = rand_vec(cells * dim, 5, 3.0);
    for window in [0usize, 9] {
        let span = |p: usize| {
            let lo = if window > 0 {
                (p + 1).saturating_sub(window)
            } else {
                0
            };
            lo..p + 1
        };
        let all: Vec<Range<usize>> = (0..cells).map(span).collect();
        for isa in isas() {
            let head = cache.head(GgmlType::F16, dim, stride, dim);
            let decode: Vec<f32> = (0..cells)
                .flat_map(|p| run(Some(isa), &head, &q[p * dim..(p + 1) * dim], &all[p..p + 1]))
                .collect();
            for chunk in [1usize, 3, 4, 5, 16, cells] {
                let mut p0 = 0;
                while p0 < cells {
                    let p1 = (p0 + chunk).min(cells);
                    let got = run(Some(isa), &head, &q[p0 * dim..p1 * dim], &all[p0..p1]);
                    assert!(
                        got.iter()
                            .zip(&decode[p0 * dim..p1 * dim])
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa} window {window} chunk {chunk} at {p0}"
                    );
                    p0 = p1;
                }
            }
        }
    }
}

#[test]
fn exp_error_is_within_2_ulp() {
    let xs: Vec<f32> = (0..200_000).map(|i| -87.0 * i as f32 / 200_000.0).collect();
    let ulp = f32::EPSILON as f64;
    for isa in isas() {
        let e = attn::exp_error(isa, &xs).unwrap();
        assert!(e <= 2.0 * ulp, "{isa}: exp relative error {e:e}");
        eprintln!("{isa}: exp max relative error {:.2} ulp", e / ulp);
    }
}

#[test]
fn bad_shapes_panic_with_a_message_not_ub() {
    let k = vec![f16::ZERO; 96 * 4];
    let head = KvHead {
        k: KvRows::F16(&k),
        v: KvRows::F16(&k),
        stride: 96,
        dim: 96,
    };
    let q = vec![0f32; 96];
    let r = std::panic::catch_unwind(|| run(None, &head, &q, std::slice::from_ref(&(0..5))));
    assert!(r.is_err(), "a span past the cells must be refused");
    let r = std::panic::catch_unwind(|| {
        let mut out = vec![0f32; 96];
        attn::attend(
            &head,
            &q,
            std::slice::from_ref(&(0..4)),
            1.0,
            &mut [0f32; 3],
            &mut out,
        )
    });
    assert!(r.is_err(), "a short scratch must be refused");
}
