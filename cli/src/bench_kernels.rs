//! `phi bench --kernels`: gemv and gemm throughput per weight type and ISA
//! path at Phi-3-mini shapes, beside the machine's measured memory-read
//! bandwidth (the ceiling for gemv on matrices larger than the caches).

use phi_kernels::packed::Avx2Dot;
use phi_kernels::{dispatch, quantize_row, Config, GgmlType, Isa, Matrix, Scratch, Weights};
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

/// Columns (= Phi-3-mini's n_embd) of every benchmarked matrix.
const COLS: usize = 3072;
/// gemv matrices are this large, well past any L3 cache, so weights stream from memory.
const GEMV_BYTES: usize = 256 << 20;
/// gemm: the qkv projection (3072 → 9216) over this many tokens.
const GEMM_ROWS: usize = 9216;
const GEMM_TOKENS: usize = 64;

/// The weight types the table covers.
pub const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q5_1,
    GgmlType::Q5_0,
    GgmlType::Q4_K,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::IQ4_XS,
    GgmlType::IQ4_NL,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
];

/// Every ISA path this CPU can run.
pub fn available_isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
        .into_iter()
        .filter(|&i| dispatch::is_available(i))
        .collect()
}

/// `rows` rows of random-looking weights of `ty`: 512 rows quantized once,
/// then repeated (the values do not matter for speed).
fn matrix(ty: GgmlType, rows: usize) -> Result<Vec<u8>, String> {
    let row_bytes = ty
        .bytes_for(COLS as u64)
        .ok_or_else(|| format!("{ty} cannot hold rows of {COLS}"))? as usize;
    let seed_rows = 512.min(rows);
    let mut seed = vec![0u8; seed_rows * row_bytes];
    let mut x = vec![0f32; COLS];
    for (r, out) in seed.chunks_exact_mut(row_bytes).enumerate() {
        for (c, v) in x.iter_mut().enumerate() {
            let h = (r * COLS + c).wrapping_mul(2_654_435_761) % 10_007;
            *v = h as f32 / 5003.5 - 1.0;
        }
        quantize_row(ty, &x, out).map_err(|e| e.to_string())?;
    }
    let mut data = Vec::with_capacity(rows * row_bytes);
    while data.len() < rows * row_bytes {
        let n = (rows * row_bytes - data.len()).min(seed.len());
        data.extend_from_slice(&seed[..n]);
    }
    Ok(data)
}

/// Median of `reps` timings of `f`, in seconds, after one warm-up call.
fn time(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Read bandwidth in GB/s: summing a 256 MiB buffer on the current pool.
pub fn memory_read_bandwidth() -> f64 {
    let buf = vec![1u64; GEMV_BYTES / 8];
    let secs = time(5, || {
        let s: u64 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                // Four independent sums keep several loads in flight.
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
        Ok(())
    })
    .unwrap_or(f64::INFINITY);
    GEMV_BYTES as f64 / secs / 1e9
}

/// One measured cell of the table.
pub struct KernelResult {
    pub gemv_gb_s: f64,
    pub gemm_gop_s: f64,
}

/// A path of the table: an ISA through `matmul`, or the repacked layout
/// (`matmul_packed`) of an ISA's packed kernels, which the runtime uses
/// where it has one (AVX-512 VNNI and AVX2: every packed type, AVX2 once per
/// dot instruction the CPU has; NEON: the 32-element types and Q4_K / Q5_K
/// / Q6_K, one path per dot tier the CPU has).
#[derive(Clone, Copy, PartialEq)]
pub enum Path {
    Isa(Isa),
    /// The AVX-512 VNNI packed kernels.
    Packed(Isa),
    /// The 256-bit packed kernels with one dot instruction.
    PackedAvx2(Avx2Dot),
    /// The NEON packed kernels with one dot tier.
    PackedNeon(phi_kernels::packed::NeonDot),
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Isa(i) => i.name(),
            Path::Packed(_) => "avx512-packed",
            Path::PackedAvx2(d) => match d {
                Avx2Dot::Maddubs => "avx2-packed-maddubs",
                Avx2Dot::AvxVnni => "avx2-packed-avxvnni",
                Avx2Dot::Avx512Vl => "avx2-packed-avx512vl",
            },
            Path::PackedNeon(t) => match t {
                phi_kernels::packed::NeonDot::Plain => "neon-packed-plain",
                phi_kernels::packed::NeonDot::Sdot => "neon-packed-sdot",
                phi_kernels::packed::NeonDot::Smmla => "neon-packed-smmla",
            },
        }
    }
}

/// Every path this CPU can run.
pub fn available_paths() -> Vec<Path> {
    let mut p: Vec<Path> = available_isas().into_iter().map(Path::Isa).collect();
    if let Some(best) = phi_kernels::packed::packed_isa() {
        if matches!(best, Isa::Avx512 | Isa::Avx2) {
            let dots = Avx2Dot::ALL.into_iter().filter(|d| d.available());
            p.extend(dots.map(Path::PackedAvx2));
        }
        if best == Isa::Neon {
            let tiers = phi_kernels::packed::NeonDot::ALL.into_iter();
            p.extend(tiers.filter(|t| t.available()).map(Path::PackedNeon));
        } else if best == Isa::Avx512 {
            p.push(Path::Packed(best));
        }
    }
    p
}

/// `y = W·x` with `m` prepared from `w`'s bytes.
fn mm(
    m: &Matrix,
    w: &Weights<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    s: &mut Scratch,
) -> Result<(), String> {
    m.view(w.data)
        .and_then(|m| phi_kernels::matmul(m, x, n, y, s))
        .map_err(|e| e.to_string())
}

/// gemv GB/s and gemm GOP/s of `ty` on `path`, on the current rayon pool;
/// None when the path has no kernel for `ty`.
pub fn measure(ty: GgmlType, path: Path, reps: usize) -> Result<Option<KernelResult>, String> {
    let row_bytes = ty.bytes_for(COLS as u64).unwrap_or(1) as usize;
    // A multiple of 16 rows, so the packed layout's row groups fit.
    let gemv_rows = (GEMV_BYTES / row_bytes / 16 * 16).max(GEMM_ROWS);
    let big = matrix(ty, gemv_rows)?;
    let w = Weights::new(ty, gemv_rows, COLS, &big).map_err(|e| e.to_string())?;
    // The registry prepares `w` for the path: `Isa(isa)` keeps it mapped on
    // `isa`'s kernels, `Packed(isa)` repacks it for the packed kernels that
    // serve `isa` (AVX-512 VNNI or AVX2).
    let cfg = match path {
        Path::Isa(isa) => Config {
            isa: Some(isa),
            repack: false,
            ..Config::default()
        },
        // The packed copy (the steady state), not the streamed packing
        // (`examples/stream_speed.rs` measures that).
        Path::Packed(isa) => Config {
            isa: Some(isa),
            repack: true,
            stream: false,
            ..Config::default()
        },
        Path::PackedAvx2(dot) => Config {
            isa: Some(Isa::Avx2),
            repack: true,
            stream: false,
            avx2_dot: Some(dot),
            ..Config::default()
        },
        Path::PackedNeon(tier) => Config {
            isa: Some(Isa::Neon),
            repack: true,
            stream: false,
            neon_dot: Some(tier),
            ..Config::default()
        },
    };
    let prepare = |w: &Weights<'_>| phi_kernels::prepare(w, &cfg).map_err(|e| e.to_string());
    let packed = prepare(&w)?;
    let is_packed_path = !matches!(path, Path::Isa(_));
    if is_packed_path && !packed.is_packed() {
        return Ok(None);
    }
    // The packed path reads its own copy; the mapped copy is not touched.
    let gemv_bytes = big.len();
    let x: Vec<f32> = (0..COLS * GEMM_TOKENS)
        .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
        .collect();
    let mut y = vec![0f32; gemv_rows];
    let mut scratch = Scratch::default();
    let gemv = time(reps, || {
        mm(&packed, &w, &x[..COLS], 1, &mut y, &mut scratch)
    })?;
    let gemv_gb_s = gemv_bytes as f64 / gemv / 1e9;
    drop(packed);
    drop(big);

    let small = matrix(ty, GEMM_ROWS)?;
    let w = Weights::new(ty, GEMM_ROWS, COLS, &small).map_err(|e| e.to_string())?;
    let packed = prepare(&w)?;
    let mut y = vec![0f32; GEMM_ROWS * GEMM_TOKENS];
    let gemm = time(reps, || {
        mm(&packed, &w, &x, GEMM_TOKENS, &mut y, &mut scratch)
    })?;
    let gemm_gop_s = 2.0 * (GEMM_ROWS * COLS * GEMM_TOKENS) as f64 / gemm / 1e9;
    Ok(Some(KernelResult {
        gemv_gb_s,
        gemm_gop_s,
    }))
}

/// Runs the whole table for each thread count and prints it (markdown, or
/// JSON Lines with `json`).
pub fn run(threads: &[usize], types: &[GgmlType], reps: usize, json: bool) -> Result<(), String> {
    let paths = available_paths();
    for &t in threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| e.to_string())?;
        pool.install(|| -> Result<(), String> {
            let bw = memory_read_bandwidth();
            if json {
                let line = json!({"test": "memread", "threads": t, "gb_s": bw});
                println!("{line}");
            } else {
                println!(
                    "\n{t} thread(s): memory read bandwidth {bw:.1} GB/s \
                     (gemv: weight GB/s over a {} MiB matrix, % of that bandwidth; \
                     gemm: GOP/s, {COLS}→{GEMM_ROWS} × {GEMM_TOKENS} tokens)\n",
                    GEMV_BYTES >> 20
                );
                let head: Vec<String> = paths
                    .iter()
                    .map(|p| format!("{} gemv | {} gemm", p.name(), p.name()))
                    .collect();
                println!("| type | {} |", head.join(" | "));
                println!("|---|{}", "---:|---:|".repeat(paths.len()));
            }
            for &ty in types {
                let mut cells = Vec::new();
                for &path in &paths {
                    let Some(r) = measure(ty, path, reps)? else {
                        cells.push("– | –".to_string());
                        continue;
                    };
                    if json {
                        let line = json!({
                            "test": "kernel", "type": ty.name(), "isa": path.name(),
                            "threads": t, "gemv_gb_s": r.gemv_gb_s,
                            "gemv_fraction_of_bandwidth": r.gemv_gb_s / bw,
                            "gemm_gop_s": r.gemm_gop_s, "gemm_tokens": GEMM_TOKENS,
                        });
                        println!("{line}");
                    } else {
                        cells.push(format!(
                            "{:.1} ({:.0}%) | {:.1}",
                            r.gemv_gb_s,
                            100.0 * r.gemv_gb_s / bw,
                            r.gemm_gop_s
                        ));
                    }
                }
                if !json {
                    println!("| {} | {} |", ty.name(), cells.join(" | "));
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}
