//! Quantization rules: which type each tensor of a model gets when the
//! model is converted to a llama.cpp file type (`phi quantize`), and the
//! row-by-row conversion itself. These are llama.cpp's `llama-quantize`
//! rules (`llama_tensor_get_type`, dense models, non-Falcon branches), read
//! from tensor names and hyper-parameters: model knowledge, so the runtime
//! owns it and the command line only parses and reports.
//!
//! Use: [`plan`] the types, make the output's [`writer`] (metadata and one
//! deferred tensor per input tensor), then write it with
//! `GgufWriter::write_to_with`, [`convert`]ing each tensor when the writer
//! asks for it — so only one converted tensor is in memory at a time (as
//! `phi quantize` does, `cli/src/quantize.rs`).

use crate::error::{PhiError, Result};
use phi_gguf::{GgmlType, Gguf, GgufWriter, TensorInfo, Value};
use rayon::prelude::*;

pub use phi_gguf::FileType;

/// The file types [`plan`] can produce, canonical order.
pub const TARGETS: &[FileType] = &[
    FileType::F32,
    FileType::F16,
    FileType::BF16,
    FileType::Q4_0,
    FileType::Q4_1,
    FileType::Q5_0,
    FileType::Q5_1,
    FileType::Q8_0,
    FileType::Q2_K,
    FileType::Q3_K_S,
    FileType::Q3_K_M,
    FileType::Q3_K_L,
    FileType::Q4_K_S,
    FileType::Q4_K_M,
    FileType::Q5_K_S,
    FileType::Q5_K_M,
    FileType::Q6_K,
];

/// Other accepted spellings (llama-quantize's): the `_M` mixes.
const ALIASES: &[(&str, FileType)] = &[
    ("q3_k", FileType::Q3_K_M),
    ("q4_k", FileType::Q4_K_M),
    ("q5_k", FileType::Q5_K_M),
];

/// Parses a target type: a name of [`TARGETS`] or an alias (case-insensitive),
/// or a `general.file_type` number.
pub fn parse_file_type(s: &str) -> Result<FileType> {
    let lower = s.trim().to_ascii_lowercase();
    let named = TARGETS
        .iter()
        .map(|f| (f.name().to_ascii_lowercase(), *f))
        .chain(ALIASES.iter().map(|(n, f)| (n.to_string(), *f)));
    let mut names = Vec::new();
    for (name, f) in named {
        if name == lower {
            return Ok(f);
        }
        names.push(name);
    }
    if let Ok(n) = lower.parse::<u32>() {
        if let Some(f) = TARGETS.iter().find(|f| f.id() == n) {
            return Ok(*f);
        }
    }
    Err(PhiError::InvalidArgument(format!(
        "unknown quantization type `{s}`; expected one of: {}",
        names.join(", ")
    )))
}

/// The type of a weight matrix of a file of type `ft` before any mix rule,
/// or None when `ft` is not one of [`TARGETS`].
pub fn default_type(ft: FileType) -> Option<GgmlType> {
    use FileType as F;
    use GgmlType as T;
    Some(match ft {
        F::F32 => T::F32,
        F::F16 => T::F16,
        F::BF16 => T::BF16,
        F::Q4_0 => T::Q4_0,
        F::Q4_1 => T::Q4_1,
        F::Q5_0 => T::Q5_0,
        F::Q5_1 => T::Q5_1,
        F::Q8_0 => T::Q8_0,
        F::Q2_K => T::Q2_K,
        F::Q3_K_S | F::Q3_K_M | F::Q3_K_L => T::Q3_K,
        F::Q4_K_S | F::Q4_K_M => T::Q4_K,
        F::Q5_K_S | F::Q5_K_M => T::Q5_K,
        F::Q6_K => T::Q6_K,
        _ => return None,
    })
}

/// The target type of every tensor of a file.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file type to write.
    pub file_type: FileType,
    /// One per tensor, in file order (a tensor that is not converted keeps
    /// its type).
    pub types: Vec<GgmlType>,
    /// The tensors whose rows did not fit the planned type's blocks, and
    /// what they got instead (one line each).
    pub notes: Vec<String>,
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
    ft: FileType,
    info: &TensorInfo,
    cat: Category,
    mut ty: GgmlType,
) -> Result<GgmlType> {
    use FileType as F;
    use GgmlType as T;
    let n_expert = hp.n_expert.max(1);
    if cat == Category::Output || (st.has_tied_embeddings && cat == Category::TokenEmbd) {
        if !info.row_len().is_multiple_of(ty.block_size() as u64) {
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
            let i = layer_of(&info.name).ok_or_else(|| {
                PhiError::Quantize(format!(
                    "cannot tell the layer of tensor {}",
                    phi_gguf::printable(&info.name)
                ))
            })?;
            if i >= hp.n_layer {
                return Err(PhiError::Quantize(format!(
                    "tensor {} is in layer {i}, the model has {}",
                    phi_gguf::printable(&info.name),
                    hp.n_layer
                )));
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
    let fits = |t: GgmlType| ncols.is_multiple_of(t.block_size() as u64);
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
        phi_gguf::printable(&info.name),
        ty.block_size()
    );
    (new, Some(note))
}

/// The target type of every tensor (in file order) and the fallback notes:
/// converted are the weight matrices (2+ dimensions, `.weight`, not norms,
/// rope factors, expert gates, position or token-type embeddings) to `ft`'s
/// type, changed by the mix rules unless `pure`, then by the block-size
/// fallback.
pub fn plan(g: &Gguf, ft: FileType, pure: bool) -> Result<Plan> {
    let default = default_type(ft).ok_or_else(|| {
        PhiError::InvalidArgument(format!("phi.rs cannot write files of type {ft}"))
    })?;
    let hp = &Hparams::from_gguf(g);
    let tensors = g.tensors();
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
    Ok(Plan {
        file_type: ft,
        types,
        notes,
    })
}

/// `general.*` keys of split files, which a converted file is not.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// A writer for the converted file: the input's metadata (the split keys
/// dropped; `general.file_type` and `general.quantization_version` = 2 set)
/// and one deferred tensor per input tensor, of its planned type, for
/// [`GgufWriter::write_to_with`] to ask for in file order.
pub fn writer(g: &Gguf, plan: &Plan) -> Result<GgufWriter> {
    let mut w = GgufWriter::new();
    let mut have_ftype = false;
    let mut have_qv = false;
    for (key, value) in g.metadata() {
        let value = match key.as_str() {
            k if SPLIT_KEYS.contains(&k) => continue,
            "general.file_type" => {
                have_ftype = true;
                Value::U32(plan.file_type.id())
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
        w.add_metadata("general.file_type", Value::U32(plan.file_type.id()))?;
    }
    for (info, &to) in g.tensors().iter().zip(&plan.types) {
        w.add_tensor_deferred(info.name.clone(), to, &info.dims)?;
    }
    Ok(w)
}

/// Converts one tensor row by row (rows in parallel on the current rayon
/// pool; each worker holds one f32 row).
pub fn convert(info: &TensorInfo, data: &[u8], to: GgmlType) -> Result<Vec<u8>> {
    let from = info.ggml_type;
    let name = phi_gguf::printable(&info.name);
    let too_big = || PhiError::Quantize(format!("tensor {name} is too large for this machine"));
    let row_len = usize::try_from(info.row_len()).map_err(|_| too_big())?;
    let n_rows = usize::try_from(info.n_rows()).map_err(|_| too_big())?;
    let src_row = from.bytes_for(row_len as u64).ok_or_else(|| {
        PhiError::Quantize(format!(
            "tensor {name}: row length {row_len} does not fit {from} blocks"
        ))
    })?;
    let dst_row = to.bytes_for(row_len as u64).ok_or_else(|| {
        PhiError::Quantize(format!(
            "tensor {name}: row length {row_len} does not fit {to} blocks"
        ))
    })?;
    let src_row = usize::try_from(src_row).map_err(|_| too_big())?;
    let dst_row = usize::try_from(dst_row).map_err(|_| too_big())?;
    let total = dst_row.checked_mul(n_rows).ok_or_else(too_big)?;
    if src_row.checked_mul(n_rows) != Some(data.len()) {
        return Err(PhiError::Quantize(format!(
            "tensor {name}: {} bytes of data, {n_rows} rows of {row_len} {from} need {src_row} each",
            data.len()
        )));
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
        .map_err(|e| PhiError::Quantize(format!("tensor {name} ({from} -> {to}): {e}")))?;
    Ok(out)
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
        let parse = |s| parse_file_type(s).ok();
        assert_eq!(parse("Q4_K_M"), Some(FileType::Q4_K_M));
        assert_eq!(parse("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(parse("15"), Some(FileType::Q4_K_M));
        assert_eq!(parse("bf16").map(FileType::id), Some(32));
        let e = parse_file_type("q4_k_x").unwrap_err().to_string();
        assert!(e.contains("q4_k_m"), "{e}");
        assert!(parse("4").is_none()); // retired LLAMA_FTYPE_MOSTLY_Q4_1_SOME_F16
        assert!(parse("25").is_none()); // IQ4_NL: no quantizer
        assert_eq!(FileType::Q5_K_M.name(), "Q5_K_M");
        assert!(TARGETS.iter().all(|f| default_type(*f).is_some()));
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
            v.push(mix_type(&mut st, &hp, FileType::Q4_K_M, &qkv, Category::AttnQkv, t).unwrap());
            d.push(mix_type(&mut st, &hp, FileType::Q4_K_M, &down, Category::FfnDown, t).unwrap());
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
            FileType::Q8_0,
            &out,
            Category::Output,
            GgmlType::Q8_0,
        );
        assert_eq!(ty.unwrap(), GgmlType::Q8_0);
        let ty = mix_type(
            &mut st,
            &hp,
            FileType::Q4_0,
            &out,
            Category::Output,
            GgmlType::Q4_0,
        );
        assert_eq!(ty.unwrap(), GgmlType::Q6_K);
    }
}
