//! `phi quantize`: convert a GGUF model's weight matrices to another type,
//! the way llama.cpp's `llama-quantize` does (same type names, same file-type
//! numbers, same per-tensor mix rules for the dense Phi-3 / Llama models).
//! The rules and the conversion are `phi::quantize`'s; this command parses
//! the arguments, writes the file and reports.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::show;
use phi::quantize;
use phi_gguf::Gguf;

/// `phi help quantize` text after the flags: types and the rules implemented.
pub const AFTER_HELP: &str = r#"Types (llama.cpp's names and `general.file_type` numbers; case-insensitive, or the number):
  f32 (0)  f16 (1)  bf16 (32)  q4_0 (2)  q4_1 (3)  q5_0 (8)  q5_1 (9)  q8_0 (7)
  q2_k (10)  q3_k_s (11)  q3_k_m (12)  q3_k_l (13)  q4_k_s (14)  q4_k_m (15)
  q5_k_s (16)  q5_k_m (17)  q6_k (18);  q3_k, q4_k, q5_k are aliases of the _m mixes.

What is converted: 2-D (or larger) tensors whose name ends in `.weight`, except
`*_norm.weight`, `rope_factors_*`, `ffn_gate_inp.weight`, `position_embd.weight`
and `token_types.weight`; everything else is copied unchanged. All metadata is
copied; general.file_type and general.quantization_version (2) are set.

Mix rules (from llama.cpp's llama_tensor_get_type; skipped with --pure; only for
quantized types). "more bits" layers: i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2.
  output.weight (token_embd.weight if there is no output.weight): Q6_K, unless
    the type is q8_0 (stays Q8_0) or its rows do not fit the type's blocks (Q8_0)
  attn_v / attn_qkv (i counts these tensors, n = their number):
    q2_k: Q4_K if n_head/n_head_kv >= 4 else Q3_K;  q3_k_m: Q5_K for i < 2 else Q4_K
    q3_k_l: Q5_K;  q4_k_s: Q5_K for i < 4;  q4_k_m, q5_k_m: Q6_K in more-bits layers
    llama 70B (80 layers, GQA): Q3_K/Q4_K become Q5_K;  8 experts: Q8_0
  attn_k with 8 experts: Q8_0
  ffn_down (layer i of n): q2_k: Q3_K;  q3_k_m: Q5_K for i < n/16 else Q4_K
    q3_k_l: Q5_K;  q4_k_s: Q5_K for i < n/8;  q4_k_m, q5_k_m: Q6_K in more-bits layers
  attn_output: q2_k: Q3_K;  q3_k_m: Q4_K;  q3_k_l: Q5_K;
    with 8 experts: Q5_K for q2_k, q3_k_s, q3_k_m, q4_k_s, q4_k_m
Falcon's own rules and the IQ / imatrix-only rules are not implemented.
Fallback (also with --pure): a row length that is not a multiple of the block
size turns Q2_K/Q3_K into Q4_0, Q4_K into Q5_0, Q5_K into Q5_1, Q6_K into Q8_0,
and into F16 when even 32 does not divide it (reported on stderr).

Examples:
  phi quantize model-f16.gguf model-q4_k_m.gguf q4_k_m
  phi quantize model-f32.gguf model-q8_0.gguf q8_0 --pure -t 4"#;

#[derive(clap::Args)]
pub struct Args {
    /// The input GGUF model (F32, F16 or BF16 weights; quantized ones need --allow-requantize).
    pub input: PathBuf,
    /// The GGUF file to write (must not be the input).
    pub output: PathBuf,
    /// Target type, e.g. q4_k_m, q8_0, f16 (see below).
    #[arg(value_name = "TYPE")]
    pub ftype: String,
    /// Worker threads (0 = one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Allow converting tensors that are already quantized (loses quality).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Every weight matrix in TYPE: no mix rules (the block-size fallback still applies).
    #[arg(long)]
    pub pure: bool,
}

/// True when both paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Tensor names longer than this (escaped) are cut in messages.
const MAX_NAME_CHARS: usize = 64;

/// A tensor name from the file as shown in messages and progress lines.
fn shown(name: &str) -> String {
    show::shortened(name, MAX_NAME_CHARS)
}

pub fn run(args: Args) -> crate::CliResult {
    let ft = quantize::parse_file_type(&args.ftype).map_err(|e| match e {
        phi::PhiError::InvalidArgument(m) => m,
        e => e.to_string(),
    })?;
    if args.output.as_os_str().is_empty() {
        return Err("the output path is empty".into());
    }
    if same_file(&args.input, &args.output) {
        return Err(format!(
            "the output {} is the input file: write to another path",
            args.output.display()
        )
        .into());
    }
    let g = Gguf::open(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    if let Ok(Some(n)) = g.opt_u64("split.count") {
        if n > 1 {
            return Err(format!(
                "{} is one of {n} split files; merge them first (llama-gguf-split --merge)",
                args.input.display()
            )
            .into());
        }
    }
    let plan = quantize::plan(&g, ft, args.pure)?;
    let (types, notes) = (&plan.types, &plan.notes);

    // Check every conversion before writing anything.
    for (info, &to) in g.tensors().iter().zip(types) {
        let from = info.ggml_type;
        if from == to {
            continue;
        }
        if from.is_quantized() && !args.allow_requantize {
            return Err(format!(
                "{} is already quantized ({} is {from}); requantizing loses quality, \
                 start from an F32/F16/BF16 model or pass --allow-requantize",
                args.input.display(),
                shown(&info.name)
            )
            .into());
        }
        if !phi_kernels::supports(from) {
            return Err(format!("cannot convert {} from type {from}", shown(&info.name)).into());
        }
    }
    for n in notes {
        eprintln!("warning: {n}");
    }

    let w = quantize::writer(&g, &plan)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", args.threads))?;
    let n = g.tensors().len();
    let width = n.to_string().len();
    let name_width = g
        .tensors()
        .iter()
        .map(|t| show::escaped_width(&t.name, MAX_NAME_CHARS).min(MAX_NAME_CHARS))
        .max()
        .unwrap_or(0);
    let (mut size_in, mut size_out) = (0u64, 0u64);
    eprintln!(
        "quantizing {} -> {} as {}{} ({n} tensors)",
        args.input.display(),
        args.output.display(),
        ft.name(),
        if args.pure { ", pure" } else { "" }
    );
    // Tensors are converted one at a time while the file is written, so
    // only one converted tensor is in memory at once.
    let views: Vec<_> = g.tensor_views().collect();
    let mut fill = |i: usize, _: &str| -> Result<Vec<u8>, phi_gguf::GgufError> {
        let (view, to) = (&views[i], types[i]);
        let info = view.info;
        let from = info.ggml_type;
        let data = if from == to {
            view.data.to_vec()
        } else {
            pool.install(|| quantize::convert(info, view.data, to))
                .map_err(|e| phi_gguf::GgufError::Invalid(e.to_string()))?
        };
        let change = if from == to {
            format!("{from}, copied  {}", human(data.len() as u64))
        } else {
            let (a, b) = (view.data.len() as u64, data.len() as u64);
            format!("{from} -> {to}  {} -> {}", human(a), human(b))
        };
        eprintln!(
            "[{:>width$}/{n}] {} {:?} {change}",
            i + 1,
            show::cell(&info.name, name_width),
            info.dims,
        );
        size_in += view.data.len() as u64;
        size_out += data.len() as u64;
        // The mapped input pages are not needed again.
        let start = view.data.as_ptr() as usize - g.bytes().as_ptr() as usize;
        g.release(start..start + view.data.len());
        Ok(data)
    };

    // Write next to the target, then rename: no half-written OUT on failure.
    let mut tmp = args.output.clone().into_os_string();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> Result<u64, Box<dyn std::error::Error>> {
        let f = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let bytes = w.write_to_with(BufWriter::new(f), &mut fill)?;
        std::fs::rename(&tmp, &args.output).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                tmp.display(),
                args.output.display()
            )
        })?;
        Ok(bytes)
    })();
    let written = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    eprintln!(
        "tensors {} -> {}; wrote {} ({written} bytes){}",
        human(size_in),
        human(size_out),
        args.output.display(),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {} tensor(s) needed a fallback type", notes.len())
        }
    );
    Ok(())
}
