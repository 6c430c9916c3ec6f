//! `phi quantize`: convert a GGUF model's weight matrices to another type,
//! the way llama.cpp's `llama-quantize` does (same type names, same file-type
//! numbers, same per-tensor mix rules for the dense Phi-3 / Llama models).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::show;
use phi_gguf::{GgmlType, Gguf, GgufWriter, TensorInfo, Value};
use rayon::prelude::*;

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

/// A llama.cpp file type (`LLAMA_FTYPE_*`) this command can produce.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ftype {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// Accepted names (lower case), canonical ones first, then aliases.
const FTYPE_NAMES: &[(&str, Ftype)] = &[
    ("f32", Ftype::F32),
    ("f16", Ftype::F16),
    ("bf16", Ftype::BF16),
    ("q4_0", Ftype::Q4_0),
    ("q4_1", Ftype::Q4_1),
    ("q5_0", Ftype::Q5_0),
    ("q5_1", Ftype::Q5_1),
    ("q8_0", Ftype::Q8_0),
    ("q2_k", Ftype::Q2_K),
    ("q3_k_s", Ftype::Q3_K_S),
    ("q3_k_m", Ftype::Q3_K_M),
    ("q3_k_l", Ftype::Q3_K_L),
    ("q4_k_s", Ftype::Q4_K_S),
    ("q4_k_m", Ftype::Q4_K_M),
    ("q5_k_s", Ftype::Q5_K_S),
    ("q5_k_m", Ftype::Q5_K_M),
    ("q6_k", Ftype::Q6_K),
    ("q3_k", Ftype::Q3_K_M),
    ("q4_k", Ftype::Q4_K_M),
    ("q5_k", Ftype::Q5_K_M),
];

impl Ftype {
    /// The `LLAMA_FTYPE_MOSTLY_*` number stored as `general.file_type`.
    pub fn id(self) -> u32 {
        match self {
            Ftype::F32 => 0,
            Ftype::F16 => 1,
            Ftype::Q4_0 => 2,
            Ftype::Q4_1 => 3,
            Ftype::Q8_0 => 7,
            Ftype::Q5_0 => 8,
            Ftype::Q5_1 => 9,
            Ftype::Q2_K => 10,
            Ftype::Q3_K_S => 11,
            Ftype::Q3_K_M => 12,
            Ftype::Q3_K_L => 13,
            Ftype::Q4_K_S => 14,
            Ftype::Q4_K_M => 15,
            Ftype::Q5_K_S => 16,
            Ftype::Q5_K_M => 17,
            Ftype::Q6_K => 18,
            Ftype::BF16 => 32,
        }
    }

    /// The type of a weight matrix before any mix rule.
    pub fn default_type(self) -> GgmlType {
        use GgmlType as T;
        match self {
            Ftype::F32 => T::F32,
            Ftype::F16 => T::F16,
            Ftype::BF16 => T::BF16,
            Ftype::Q4_0 => T::Q4_0,
            Ftype::Q4_1 => T::Q4_1,
            Ftype::Q5_0 => T::Q5_0,
            Ftype::Q5_1 => T::Q5_1,
            Ftype::Q8_0 => T::Q8_0,
            Ftype::Q2_K => T::Q2_K,
            Ftype::Q3_K_S | Ftype::Q3_K_M | Ftype::Q3_K_L => T::Q3_K,
            Ftype::Q4_K_S | Ftype::Q4_K_M => T::Q4_K,
            Ftype::Q5_K_S | Ftype::Q5_K_M => T::Q5_K,
            Ftype::Q6_K => T::Q6_K,
        }
    }

    /// The canonical name, e.g. `Q4_K_M`.
    pub fn name(self) -> String {
        FTYPE_NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| n.to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Parses a type name (case-insensitive) or an ftype number.
    pub fn parse(s: &str) -> Result<Ftype, String> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some((_, f)) = FTYPE_NAMES.iter().find(|(n, _)| *n == lower) {
            return Ok(*f);
        }
        if let Ok(n) = lower.parse::<u32>() {
            if let Some((_, f)) = FTYPE_NAMES.iter().find(|(_, f)| f.id() == n) {
                return Ok(*f);
            }
        }
        let names: Vec<&str> = FTYPE_NAMES.iter().map(|(n, _)| *n).collect();
        Err(format!(
            "unknown quantization type `{s}`; expected one of: {}",
            names.join(", ")
        ))
    }
}

/// The hyper-parameters the mix rules look at.
#[derive(Debug, Clone, Copy, Default)]
struct Hparams {
    n_layer: i64,
    n_head: i64,
    n_head_kv: i64,
    n_expert: i64,
    /// llama.cpp's LLM_TYPE_70B: arch llama, 80 layers, fewer kv heads than heads.
    is_70b: bool,
}

impl Hparams {
    fn from_gguf(g: &Gguf) -> Hparams {
        let arch = g.architecture().unwrap_or("");
        // Arrays (per-layer head counts) or odd types: treat as absent.
        let get = |key: &str| -> Option<i64> {
            g.get(&format!("{arch}.{key}"))
                .and_then(Value::as_i64)
                .filter(|v| *v >= 0)
        };
        let n_layer = get("block_count").unwrap_or_else(|| count_layers(g));
        let n_head = get("attention.head_count").unwrap_or(0);
        let n_head_kv = get("attention.head_count_kv").unwrap_or(n_head);
        let n_expert = get("expert_count").unwrap_or(0);
        Hparams {
            n_layer,
            n_head,
            n_head_kv,
            n_expert,
            is_70b: arch == "llama" && n_expert <= 1 && n_layer == 80 && n_head != n_head_kv,
        }
    }

    fn n_gqa(&self) -> i64 {
        if self.n_head_kv > 0 {
            self.n_head / self.n_head_kv
        } else {
            0
        }
    }
}

/// 1 + the highest `blk.N.` index among the tensors (0 if none).
fn count_layers(g: &Gguf) -> i64 {
    g.tensors()
        .iter()
        .filter_map(|t| layer_of(&t.name))
        .max()
        .map_or(0, |m| m + 1)
}

/// N from a `blk.N.` prefix.
fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let (num, _) = rest.split_once('.')?;
    num.parse().ok()
}

/// llama.cpp's broad tensor categories (substring matches, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return Category::TokenEmbd;
    }
    const BY_SUBSTRING: &[(&str, Category)] = &[
        ("attn_qkv.weight", Category::AttnQkv),
        ("attn_kv_b.weight", Category::AttnKvB),
        ("attn_v.weight", Category::AttnV),
        ("attn_k.weight", Category::AttnK),
        ("attn_q.weight", Category::AttnQ),
        ("attn_output.weight", Category::AttnOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    BY_SUBSTRING
        .iter()
        .find(|(s, _)| name.contains(s))
        .map_or(Category::Other, |(_, c)| *c)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// ggml_n_dims: dimensions up to the last one above 1 (at least 1).
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether a tensor is a weight matrix that gets converted.
fn is_weight_matrix(info: &TensorInfo) -> bool {
    let name = info.name.as_str();
    n_dims(&info.dims) >= 2
        && name.ends_with(".weight")
        && !name.contains("_norm.weight")
        && !name.starts_with("rope_factors")
        && !name.contains("ffn_gate_inp.weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// "Use more bits" layers: the first and last eighth and every third between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Counters llama.cpp advances while it walks the tensors in layer order.
#[derive(Default)]
struct MixState {
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    has_tied_embeddings: bool,
}

/// The mix rule for one tensor (llama.cpp's llama_tensor_get_type_impl for
/// the file types above, non-Falcon branches).
fn mix_type(
    st: &mut MixState,
    hp: &Hparams,
    ft: Ftype,
    info: &TensorInfo,
    cat: Category,
    mut ty: GgmlType,
) -> Result<GgmlType, String> {
    use Ftype as F;
    use GgmlType as T;
    let n_expert = hp.n_expert.max(1);
    if cat == Category::Output || (st.has_tied_embeddings && cat == Category::TokenEmbd) {
        if info.row_len() % ty.block_size() as u64 != 0 {
            ty = T::Q8_0;
        } else if ty != T::Q8_0 {
            ty = T::Q6_K;
        }
    } else if cat == Category::TokenEmbd {
        // No rule for the file types offered here.
    } else if is_attn_v_like(cat) {
        let i = st.i_attention_wv;
        match ft {
            F::Q2_K => ty = if hp.n_gqa() >= 4 { T::Q4_K } else { T::Q3_K },
            F::Q3_K_M => ty = if i < 2 { T::Q5_K } else { T::Q4_K },
            F::Q3_K_L => ty = T::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, st.n_attention_wv) => ty = T::Q6_K,
            F::Q4_K_S if i < 4 => ty = T::Q5_K,
            _ => {}
        }
        if hp.is_70b && (ty == T::Q3_K || ty == T::Q4_K) {
            ty = T::Q5_K;
        }
        if hp.n_expert == 8 {
            ty = T::Q8_0;
        }
        st.i_attention_wv += 1;
    } else if cat == Category::AttnK {
        if hp.n_expert == 8 {
            ty = T::Q8_0;
        }
    } else if cat == Category::FfnDown {
        let (i, n) = if n_expert > 1 {
            let i = layer_of(&info.name)
                .ok_or_else(|| format!("cannot tell the layer of tensor {}", shown(&info.name)))?;
            if i >= hp.n_layer {
                return Err(format!(
                    "tensor {} is in layer {i}, the model has {}",
                    shown(&info.name),
                    hp.n_layer
                ));
            }
            (i, hp.n_layer)
        } else {
            (st.i_ffn_down, hp.n_layer)
        };
        match ft {
            F::Q2_K => ty = T::Q3_K,
            F::Q3_K_M => ty = if i < n / 16 { T::Q5_K } else { T::Q4_K },
            F::Q3_K_L => ty = T::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = T::Q6_K,
            F::Q4_K_S if i < n / 8 => ty = T::Q5_K,
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if cat == Category::AttnOutput {
        if hp.n_expert == 8 {
            if matches!(ft, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                ty = T::Q5_K;
            }
        } else {
            match ft {
                F::Q2_K => ty = T::Q3_K,
                F::Q3_K_M => ty = T::Q4_K,
                F::Q3_K_L => ty = T::Q5_K,
                _ => {}
            }
        }
    }
    Ok(ty)
}

/// llama.cpp's tensor_type_fallback: a type whose block does not divide the
/// row length is replaced. Returns the type and a note when it changed.
fn fallback(info: &TensorInfo, ty: GgmlType) -> (GgmlType, Option<String>) {
    use GgmlType as T;
    let ncols = info.row_len();
    let fits = |t: GgmlType| ncols % t.block_size() as u64 == 0;
    if fits(ty) {
        return (ty, None);
    }
    let mut new = match ty {
        T::Q2_K | T::Q3_K => T::Q4_0,
        T::Q4_K => T::Q5_0,
        T::Q5_K => T::Q5_1,
        T::Q6_K => T::Q8_0,
        other => other,
    };
    if !fits(new) {
        new = T::F16;
    }
    let note = format!(
        "{}: row length {ncols} is not a multiple of {} (the {ty} block): using {new} instead",
        shown(&info.name),
        ty.block_size()
    );
    (new, Some(note))
}

/// The target type of every tensor (in file order) and the fallback notes.
fn plan(
    g: &Gguf,
    ft: Ftype,
    pure: bool,
    hp: &Hparams,
) -> Result<(Vec<GgmlType>, Vec<String>), String> {
    let tensors = g.tensors();
    let default = ft.default_type();
    let mut st = MixState {
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count() as i64,
        has_tied_embeddings: !tensors
            .iter()
            .any(|t| category(&t.name) == Category::Output),
        ..MixState::default()
    };
    // llama.cpp walks the tensors sorted by layer (non-layer ones first), then
    // by name; the counters in the rules advance in that order.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (layer_of(&tensors[i].name).unwrap_or(-1), &tensors[i].name);
        key(a).cmp(&key(b))
    });
    let mut types: Vec<GgmlType> = tensors.iter().map(|t| t.ggml_type).collect();
    let mut notes = Vec::new();
    for &i in &order {
        let info = &tensors[i];
        if !is_weight_matrix(info) {
            continue;
        }
        let mut ty = default;
        if default.is_quantized() {
            if !pure {
                ty = mix_type(&mut st, hp, ft, info, category(&info.name), ty)?;
            }
            let (t, note) = fallback(info, ty);
            ty = t;
            notes.extend(note);
        }
        types[i] = ty;
    }
    Ok((types, notes))
}

/// Converts one tensor row by row (rows in parallel on the current rayon
/// pool; each worker holds one f32 row).
fn convert(info: &TensorInfo, data: &[u8], to: GgmlType) -> Result<Vec<u8>, String> {
    let from = info.ggml_type;
    let name = shown(&info.name);
    let too_big = || format!("tensor {name} is too large for this machine");
    let row_len = usize::try_from(info.row_len()).map_err(|_| too_big())?;
    let n_rows = usize::try_from(info.n_rows()).map_err(|_| too_big())?;
    let src_row = from
        .bytes_for(row_len as u64)
        .ok_or_else(|| format!("tensor {name}: row length {row_len} does not fit {from} blocks"))?;
    let dst_row = to
        .bytes_for(row_len as u64)
        .ok_or_else(|| format!("tensor {name}: row length {row_len} does not fit {to} blocks"))?;
    let src_row = usize::try_from(src_row).map_err(|_| too_big())?;
    let dst_row = usize::try_from(dst_row).map_err(|_| too_big())?;
    let total = dst_row.checked_mul(n_rows).ok_or_else(too_big)?;
    if src_row.checked_mul(n_rows) != Some(data.len()) {
        return Err(format!(
            "tensor {name}: {} bytes of data, {n_rows} rows of {row_len} {from} need {src_row} each",
            data.len()
        ));
    }
    if total == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| too_big())?;
    out.resize(total, 0u8);
    out.par_chunks_mut(dst_row)
        .zip(data.par_chunks(src_row))
        .try_for_each_init(
            || vec![0f32; row_len],
            |row, (dst, src)| -> Result<(), phi_kernels::KernelError> {
                phi_kernels::dequantize_row(from, src, row)?;
                phi_kernels::quantize_row(to, row, dst)
            },
        )
        .map_err(|e| format!("tensor {name} ({from} -> {to}): {e}"))?;
    Ok(out)
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

const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

pub fn run(args: Args) -> crate::CliResult {
    let ft = Ftype::parse(&args.ftype)?;
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
    let hp = Hparams::from_gguf(&g);
    let (types, notes) = plan(&g, ft, args.pure, &hp)?;

    // Check every conversion before writing anything.
    for (info, &to) in g.tensors().iter().zip(&types) {
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
    for n in &notes {
        eprintln!("warning: {n}");
    }

    let mut w = GgufWriter::new();
    let mut have_ftype = false;
    let mut have_qv = false;
    for (key, value) in g.metadata() {
        let value = match key.as_str() {
            k if SPLIT_KEYS.contains(&k) => continue,
            "general.file_type" => {
                have_ftype = true;
                Value::U32(ft.id())
            }
            "general.quantization_version" => {
                have_qv = true;
                Value::U32(2)
            }
            _ => value.clone(),
        };
        w.add_metadata(key.clone(), value)?;
    }
    if !have_qv {
        w.add_metadata("general.quantization_version", Value::U32(2))?;
    }
    if !have_ftype {
        w.add_metadata("general.file_type", Value::U32(ft.id()))?;
    }

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
    for (view, &to) in views.iter().zip(&types) {
        w.add_tensor_deferred(view.info.name.clone(), to, &view.info.dims)?;
    }
    let mut fill = |i: usize, _: &str| -> Result<Vec<u8>, phi_gguf::GgufError> {
        let (view, to) = (&views[i], types[i]);
        let info = view.info;
        let from = info.ggml_type;
        let data = if from == to {
            view.data.to_vec()
        } else {
            pool.install(|| convert(info, view.data, to))
                .map_err(phi_gguf::GgufError::Invalid)?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, dims: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: GgmlType::F32,
            offset: 0,
            n_bytes: 0,
        }
    }

    #[test]
    fn names_and_numbers_parse() {
        assert_eq!(Ftype::parse("Q4_K_M"), Ok(Ftype::Q4_K_M));
        assert_eq!(Ftype::parse("q4_k"), Ok(Ftype::Q4_K_M));
        assert_eq!(Ftype::parse("15"), Ok(Ftype::Q4_K_M));
        assert_eq!(Ftype::parse("bf16").map(Ftype::id), Ok(32));
        assert!(Ftype::parse("q4_k_x").unwrap_err().contains("q4_k_m"));
        assert!(Ftype::parse("4").is_err()); // retired LLAMA_FTYPE_MOSTLY_Q4_1_SOME_F16
        assert_eq!(Ftype::Q5_K_M.name(), "Q5_K_M");
    }

    #[test]
    fn more_bits_layers() {
        // 32 layers: 0..4, 28..32 and 6, 9, ..., 27 (every third after n/8).
        let got: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        let mut want: Vec<i64> = (0..4).chain(28..32).collect();
        want.extend((4..28).filter(|i| (i - 4) % 3 == 2));
        want.sort();
        assert_eq!(got, want);
        assert!(!use_more_bits(0, 2) && use_more_bits(1, 2));
    }

    #[test]
    fn fallback_follows_the_table() {
        let t = info("blk.0.ffn_down.weight", &[96, 8]);
        assert_eq!(fallback(&t, GgmlType::Q4_K).0, GgmlType::Q5_0);
        assert_eq!(fallback(&t, GgmlType::Q6_K).0, GgmlType::Q8_0);
        assert_eq!(fallback(&t, GgmlType::Q5_K).0, GgmlType::Q5_1);
        assert_eq!(fallback(&t, GgmlType::Q3_K).0, GgmlType::Q4_0);
        assert_eq!(fallback(&t, GgmlType::Q8_0), (GgmlType::Q8_0, None));
        let odd = info("x.weight", &[100, 8]);
        assert_eq!(fallback(&odd, GgmlType::Q4_K).0, GgmlType::F16);
        assert_eq!(fallback(&odd, GgmlType::Q4_0).0, GgmlType::F16);
    }

    #[test]
    fn which_tensors_are_converted() {
        assert!(is_weight_matrix(&info(
            "blk.0.attn_qkv.weight",
            &[256, 768]
        )));
        assert!(!is_weight_matrix(&info("blk.0.attn_norm.weight", &[256])));
        assert!(!is_weight_matrix(&info("output_norm.weight", &[256, 1])));
        assert!(!is_weight_matrix(&info("rope_factors_long.weight", &[32])));
        assert!(!is_weight_matrix(&info(
            "blk.0.ffn_gate_inp.weight",
            &[256, 8]
        )));
        assert!(!is_weight_matrix(&info("blk.0.attn_q.bias", &[256, 2])));
    }

    #[test]
    fn q4_k_m_rules_on_32_layers() {
        let hp = Hparams {
            n_layer: 32,
            n_head: 32,
            n_head_kv: 32,
            ..Hparams::default()
        };
        let mut st = MixState {
            n_attention_wv: 32,
            ..MixState::default()
        };
        let mut v = Vec::new();
        let mut d = Vec::new();
        for l in 0..32 {
            let qkv = info(&format!("blk.{l}.attn_qkv.weight"), &[3072, 9216]);
            let down = info(&format!("blk.{l}.ffn_down.weight"), &[8192, 3072]);
            let t = GgmlType::Q4_K;
            v.push(mix_type(&mut st, &hp, Ftype::Q4_K_M, &qkv, Category::AttnQkv, t).unwrap());
            d.push(mix_type(&mut st, &hp, Ftype::Q4_K_M, &down, Category::FfnDown, t).unwrap());
        }
        for l in 0..32 {
            let want = if use_more_bits(l as i64, 32) {
                GgmlType::Q6_K
            } else {
                GgmlType::Q4_K
            };
            assert_eq!((v[l], d[l]), (want, want), "layer {l}");
        }
        let out = info("output.weight", &[3072, 32064]);
        let ty = mix_type(
            &mut st,
            &hp,
            Ftype::Q8_0,
            &out,
            Category::Output,
            GgmlType::Q8_0,
        );
        assert_eq!(ty, Ok(GgmlType::Q8_0));
        let ty = mix_type(
            &mut st,
            &hp,
            Ftype::Q4_0,
            &out,
            Category::Output,
            GgmlType::Q4_0,
        );
        assert_eq!(ty, Ok(GgmlType::Q6_K));
    }
}
