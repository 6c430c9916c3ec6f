//! `phi bench`: prompt-processing and generation throughput, the way
//! llama-bench measures them.
//!
//! * `ppN`: one `eval` of N tokens on an empty context (batched prefill).
//! * `tgN`: N single-token `eval`s, starting from an empty context.
//!
//! Each test runs once unmeasured (warm-up: page faults of the mapped
//! weights, thread start-up), then `-r` times measured; the table shows the
//! median and the standard deviation, `--json` every run.

use crate::args::{KvArgs, ModelArgs};
use phi::synthetic::{self, SyntheticSpec};
use phi::{Arch, Context, ContextParams, Model};
use phi_gguf::{FileType, GgmlType, Gguf};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Benchmark a synthetic model of a named shape instead (phi3-mini, tiny),
    /// with random weights of --type, generated in memory.
    #[arg(long, conflicts_with = "model")]
    pub synthetic: Option<String>,
    /// Weight type of the synthetic model (f32, f16, bf16, q4_0, q4_1, q5_0,
    /// q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k).
    #[arg(long = "type", default_value = "q4_0", requires = "synthetic")]
    pub weight_type: String,
    /// Prompt lengths to test (comma-separated; 0 skips prompt processing).
    #[arg(short = 'p', long, value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 skips generation).
    #[arg(short = 'n', long, value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Thread counts to test (comma-separated; default: one per core).
    #[arg(short, long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Measured repetitions of each test.
    #[arg(short, long, default_value_t = 3)]
    pub repetitions: usize,
    /// Prompt-processing batch size.
    #[arg(short = 'b', long, default_value_t = 512)]
    pub batch_size: usize,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Print JSON Lines (one object per test) instead of a markdown table.
    #[arg(long)]
    pub json: bool,
    /// Benchmark the kernels instead of a model: gemv GB/s and gemm GOP/s per
    /// weight type and ISA path, beside the measured memory read bandwidth.
    #[arg(long, conflicts_with_all = ["model", "synthetic"])]
    pub kernels: bool,
    /// With --kernels: only these weight types (comma-separated, e.g. q4_0,q4_k).
    #[arg(long, value_delimiter = ',', requires = "kernels")]
    pub types: Vec<String>,
    /// Batched decode instead: C sequences decoding together through the
    /// `phi serve` engine, for each C (comma-separated, e.g. 1,2,4,8); -n
    /// steps per round, -r rounds.
    #[arg(long, value_delimiter = ',', conflicts_with = "kernels")]
    pub parallel: Vec<usize>,
    /// With --parallel: prompt tokens per sequence (prefilled, not measured).
    #[arg(long, default_value_t = 16, requires = "parallel")]
    pub parallel_prompt: usize,
}

/// What the benchmark says about the model.
struct ModelInfo {
    /// The path, the reference or `synthetic SHAPE`.
    name: String,
    /// llama.cpp's file-type name when the file declares it, else the type
    /// holding most of the weight bytes.
    ty: String,
    size_bytes: u64,
    n_params: u64,
}

fn model_info(name: String, g: &Gguf) -> ModelInfo {
    let mut size = 0u64;
    let mut params = 0u64;
    let mut by_type: Vec<(GgmlType, u64)> = Vec::new();
    for t in g.tensors() {
        let n = t.n_elements();
        let bytes = t.n_bytes;
        size = size.saturating_add(bytes);
        params = params.saturating_add(n);
        if t.dims.len() >= 2 {
            match by_type.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
                Some((_, b)) => *b += bytes,
                None => by_type.push((t.ggml_type, bytes)),
            }
        }
    }
    let dominant = by_type
        .iter()
        .max_by_key(|(_, b)| *b)
        .map(|(ty, _)| ty.name().to_string());
    let declared = g
        .opt_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(FileType::from_id)
        .map(|f| f.name().to_string());
    ModelInfo {
        name,
        ty: declared.or(dominant).unwrap_or_else(|| "?".into()),
        size_bytes: size,
        n_params: params,
    }
}

/// The synthetic shapes `--synthetic` knows.
pub fn synthetic_spec(shape: &str, ty: GgmlType) -> Result<SyntheticSpec, String> {
    match shape {
        "phi3-mini" => Ok(SyntheticSpec::phi3_mini(ty)),
        // Wide enough (256) for the 256-element K-quant blocks.
        "tiny" => Ok(SyntheticSpec {
            arch: Arch::Phi3,
            n_embd: 256,
            n_ff: 512,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 4,
            n_rot: 64,
            n_vocab: 512,
            n_ctx_train: 4096,
            sliding_window: 0,
            longrope_orig_ctx: None,
            tied_embeddings: false,
            weight_type: ty,
            seed: 1,
        }),
        other => Err(format!(
            "unknown synthetic shape `{other}` (known: phi3-mini, tiny)"
        )),
    }
}

fn parse_type(s: &str) -> Result<GgmlType, String> {
    let known = synthetic::weight_types();
    GgmlType::from_name(&s.to_ascii_uppercase())
        .filter(|t| known.contains(t))
        .ok_or_else(|| {
            let names: Vec<String> = known.iter().map(|t| t.name().to_lowercase()).collect();
            format!(
                "synthetic weights cannot be `{s}` (one of: {})",
                names.join(", ")
            )
        })
}

/// Builds a synthetic model in a temporary file and maps it (the file is
/// removed at once; the mapping keeps its pages).
fn synthetic_model(
    shape: &str,
    ty: &str,
    options: &phi::ModelOptions,
) -> Result<(Model, ModelInfo), Box<dyn std::error::Error>> {
    let ty = parse_type(ty)?;
    let spec = synthetic_spec(shape, ty)?;
    let path = std::env::temp_dir().join(format!(
        "phi-bench-{}-{}-{}.gguf",
        shape,
        ty.name(),
        std::process::id()
    ));
    let result = (|| -> Result<Gguf, Box<dyn std::error::Error>> {
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        synthetic::write(&spec, &mut w)?;
        std::io::Write::flush(&mut w)?;
        drop(w);
        Ok(Gguf::open(&path)?)
    })();
    let _ = std::fs::remove_file(&path);
    let gguf = result?;
    let info = model_info(format!("synthetic {shape}"), &gguf);
    let info = ModelInfo {
        ty: ty.name().to_string(),
        ..info
    };
    Ok((Model::from_gguf_with(gguf, options)?, info))
}

/// Summary statistics of one test's runs (tokens/s).
pub struct Stats {
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(runs: &[f64]) -> Stats {
    let mut v = runs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats {
            median: 0.0,
            mean: 0.0,
            stddev: 0.0,
            min: 0.0,
            max: 0.0,
        };
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    Stats {
        median,
        mean,
        stddev: var.sqrt(),
        min: v[0],
        max: v[n - 1],
    }
}

/// Pseudo-random token ids below `n_vocab` (what llama-bench feeds, too).
pub fn bench_tokens(n: usize, n_vocab: usize, salt: u64) -> Vec<u32> {
    let mut s = 0x2545_F491_4F6C_DD1D ^ salt;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n_vocab as u64) as u32
        })
        .collect()
}

enum Test {
    Prompt(usize),
    Gen(usize),
}

impl Test {
    fn name(&self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Gen(n) => format!("tg{n}"),
        }
    }
    fn n_tokens(&self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => *n,
        }
    }
    /// One timed run on an emptied context; returns tokens/s.
    fn run(&self, ctx: &mut Context, tokens: &[u32]) -> phi::Result<f64> {
        ctx.reset();
        let t0 = Instant::now();
        match self {
            Test::Prompt(n) => ctx.eval(&tokens[..*n], false)?,
            Test::Gen(n) => {
                for t in &tokens[..*n] {
                    ctx.eval(std::slice::from_ref(t), false)?;
                }
            }
        }
        let dt = t0.elapsed().as_secs_f64().max(1e-9);
        Ok(self.n_tokens() as f64 / dt)
    }
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    }
}

fn human_params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.0} K", n / 1e3)
    }
}

pub fn run(args: Args) -> crate::CliResult {
    if args.repetitions == 0 {
        return Err("-r must be at least 1".into());
    }
    if args.kernels {
        return run_kernels(&args);
    }
    let (model, info) = match (&args.synthetic, &args.model.model) {
        (Some(shape), _) => {
            if !args.json {
                eprintln!("building synthetic {shape} ({}) ...", args.weight_type);
            }
            synthetic_model(shape, &args.weight_type, &args.model.options())?
        }
        (None, _) => {
            let reference = args.model.reference();
            let path = args.model.path()?;
            let model = Model::load_with(&path, &args.model.options())?;
            let info = model_info(reference.to_string(), model.gguf());
            (model, info)
        }
    };
    // Measure the steady state: the packed copies of streamed matrices,
    // which `phi run` / `chat` / `serve` switch to in the background.
    model.pack_streamed()?;
    let model = Arc::new(model);
    let n_vocab = model.config().n_vocab;
    let threads = if args.threads.is_empty() {
        vec![phi::context::default_threads()]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        return Err("-t thread counts must be at least 1".into());
    }
    if !args.parallel.is_empty() {
        let opts = crate::bench_batch::Options {
            parallel: &args.parallel,
            prompt: args.parallel_prompt,
            n_gen: args.n_gen.first().copied().unwrap_or(0),
            reps: args.repetitions,
            json: args.json,
            kv_type: args.kv.kv_type.map(Into::into),
            max_memory: args.kv.max_memory,
            name: &info.name,
            ty: &info.ty,
        };
        return crate::bench_batch::run(&model, &threads, &opts);
    }
    let mut tests: Vec<Test> = Vec::new();
    tests.extend(
        args.n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| Test::Prompt(n)),
    );
    tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| Test::Gen(n)));
    if tests.is_empty() {
        return Err("nothing to measure: give -p or -n above 0".into());
    }
    let n_ctx = tests.iter().map(Test::n_tokens).max().unwrap_or(1);
    let tokens = bench_tokens(n_ctx, n_vocab, 1);
    let isa = phi_kernels::dispatch::active().name();

    if !args.json {
        println!(
            "model: {} | type {} | {} | {} params | ISA {isa}\n",
            info.name,
            info.ty,
            human_size(info.size_bytes),
            human_params(info.n_params)
        );
        println!("| model | type | size | params | isa | threads | test | t/s (median ± sd) |");
        println!("| --- | --- | ---: | ---: | --- | ---: | --- | ---: |");
    }
    // The table names a file by its name alone.
    let short = match std::path::Path::new(&info.name).file_name() {
        Some(f) if args.synthetic.is_none() && !info.name.starts_with("hf:") => {
            f.to_string_lossy().into_owned()
        }
        _ => info.name.clone(),
    };
    for &nt in &threads {
        let mut params = ContextParams {
            n_ctx,
            n_batch: args.batch_size,
            n_threads: nt,
            sliding_window: false,
            ..ContextParams::default()
        };
        args.kv.apply(&mut params);
        let mut ctx = Context::new(Arc::clone(&model), &params)?;
        for test in &tests {
            test.run(&mut ctx, &tokens)?; // warm-up
            let mut runs = Vec::with_capacity(args.repetitions);
            for _ in 0..args.repetitions {
                runs.push(test.run(&mut ctx, &tokens)?);
            }
            let s = stats(&runs);
            if args.json {
                let line = json!({
                    "test": test.name(),
                    "n_prompt": if let Test::Prompt(n) = test { *n } else { 0 },
                    "n_gen": if let Test::Gen(n) = test { *n } else { 0 },
                    "threads": nt,
                    "tokens_per_s": s.median,
                    "mean": s.mean,
                    "stddev": s.stddev,
                    "min": s.min,
                    "max": s.max,
                    "runs": runs,
                    "model": info.name,
                    "type": info.ty,
                    "size_bytes": info.size_bytes,
                    "n_params": info.n_params,
                    "isa": isa,
                    "batch_size": args.batch_size,
                });
                println!("{line}");
            } else {
                println!(
                    "| {} | {} | {} | {} | {isa} | {nt} | {} | {:.2} ± {:.2} |",
                    short,
                    info.ty,
                    human_size(info.size_bytes),
                    human_params(info.n_params),
                    test.name(),
                    s.median,
                    s.stddev
                );
            }
        }
    }
    Ok(())
}

/// `phi bench --kernels`.
fn run_kernels(args: &Args) -> crate::CliResult {
    let threads = if args.threads.is_empty() {
        vec![phi::context::default_threads()]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        return Err("thread counts must be at least 1".into());
    }
    let types = if args.types.is_empty() {
        crate::bench_kernels::TYPES.to_vec()
    } else {
        args.types
            .iter()
            .map(|s| {
                GgmlType::from_name(s)
                    .filter(|t| crate::bench_kernels::TYPES.contains(t))
                    .ok_or_else(|| format!("--types: `{s}` is not a weight type the kernels run"))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    crate::bench_kernels::run(&threads, &types, args.repetitions, args.json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_runs() {
        let s = stats(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.mean, 4.0);
        assert!((s.stddev - (50.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(stats(&[5.0, 1.0, 3.0]).median, 3.0);
    }

    #[test]
    fn type_names() {
        assert_eq!(parse_type("q4_k").unwrap(), GgmlType::Q4_K);
        assert_eq!(parse_type("q3_k").unwrap(), GgmlType::Q3_K);
        assert_eq!(parse_type("iq4_xs").unwrap(), GgmlType::IQ4_XS);
        assert!(parse_type("iq2_xxs").is_err());
        assert!(parse_type("q8_1").is_err());
        assert!(synthetic_spec("huge", GgmlType::F32).is_err());
    }
}
