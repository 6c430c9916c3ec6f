//! `phi inspect`: a GGUF file's header, hyper-parameters, tokenizer and tensors.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use crate::show;
use phi_gguf::{FileType, Gguf, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also dump every metadata key (text: arrays longer than 8 abbreviated).
    #[arg(long)]
    pub metadata: bool,
}

/// Per-architecture hyper-parameter keys shown when present (`<arch>.` prefix).
const HPARAMS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.original_context_length",
    "rope.scaling.attn_factor",
    "attention.sliding_window",
    "attention.layer_norm_rms_epsilon",
    "attention.layer_norm_epsilon",
    "vocab_size",
    "expert_count",
    "expert_used_count",
];

/// Special-token id keys shown in the tokenizer summary.
const TOKEN_IDS: &[&str] = &[
    "bos_token_id",
    "eos_token_id",
    "eot_token_id",
    "unknown_token_id",
    "padding_token_id",
    "separator_token_id",
];

/// Arrays longer than this are abbreviated in text output.
const MAX_ARRAY_ITEMS: usize = 8;

/// Strings from the file longer than this (escaped) are cut in text output.
const MAX_STRING_CHARS: usize = 200;

/// The widest the tensor-name column grows; longer names are cut.
const MAX_NAME_CHARS: usize = 64;

/// A string from the file, quoted, escaped and cut for text output.
fn quoted(s: &str) -> String {
    format!("\"{}\"", show::shortened(s, MAX_STRING_CHARS))
}

pub fn run(args: Args) -> crate::CliResult {
    let g = Gguf::open(&args.model).map_err(|e| match e {
        phi_gguf::GgufError::Open { .. } => e.to_string(),
        e => format!("{}: {e}", args.model.display()),
    })?;
    let out = if args.json {
        let mut s = terminal_safe_json(&to_json(&g, args.metadata))?;
        s.push('\n');
        s
    } else {
        to_text(&g, &args)?
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `phi inspect model.gguf | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `general.file_type` and llama.cpp's name for it (`MOSTLY_Q4_0`, or
/// "unknown"), from phi-gguf's table.
fn file_type(g: &Gguf) -> Option<(u32, String)> {
    let ft = g.get_u32("general.file_type").ok()?;
    let name = FileType::from_id(ft).map_or_else(|| "unknown".into(), FileType::llama_name);
    Some((ft, name))
}

/// `(key suffix, value)` of the hyper-parameters present.
fn hparams<'g>(g: &'g Gguf, arch: &str) -> Vec<(&'static str, &'g Value)> {
    HPARAMS
        .iter()
        .filter_map(|k| g.get(&format!("{arch}.{k}")).map(|v| (*k, v)))
        .collect()
}

/// The token text for `id`, if the vocabulary has it.
fn token_text<'g>(tokens: Option<&'g [Value]>, id: &Value) -> Option<&'g str> {
    let i = usize::try_from(id.as_u64()?).ok()?;
    tokens?.get(i)?.as_str()
}

/// Text rendering with long arrays abbreviated: `[a, b, c, ... (N items)]`.
fn abbreviated(v: &Value) -> String {
    match v {
        Value::Array(_, items) if items.len() > MAX_ARRAY_ITEMS => {
            let head: Vec<String> = items.iter().take(3).map(abbreviated).collect();
            format!("[{}, ... ({} items)]", head.join(", "), items.len())
        }
        Value::Array(_, items) => {
            let all: Vec<String> = items.iter().map(abbreviated).collect();
            format!("[{}]", all.join(", "))
        }
        Value::String(s) => quoted(s),
        v => v.to_string(),
    }
}

/// `u32`, `string`, `array[string]`, `array[array[i32]]`, ...
fn type_label(v: &Value) -> String {
    match v {
        Value::Array(ty, items) => match (ty, items.first()) {
            (phi_gguf::ValueType::Array, Some(first)) => format!("array[{}]", type_label(first)),
            _ => format!("array[{ty}]"),
        },
        v => v.type_name().to_owned(),
    }
}

/// A short identifier-like string (architecture, model name) as it is;
/// anything with escapes or too long, quoted like other strings.
fn quoted_if_odd(s: &str) -> String {
    if show::escaped_width(s, MAX_STRING_CHARS) <= MAX_STRING_CHARS && show::escaped(s) == s {
        s.to_owned()
    } else {
        quoted(s)
    }
}

fn shape(t: &TensorInfo) -> String {
    let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn to_text(g: &Gguf, args: &Args) -> Result<String, std::fmt::Error> {
    let mut s = String::new();
    let arch = g.get_str("general.architecture").ok();
    writeln!(s, "file:          {}", args.model.display())?;
    writeln!(s, "size:          {} bytes", g.bytes().len())?;
    writeln!(s, "GGUF version:  {}", g.version())?;
    writeln!(s, "alignment:     {}", g.alignment())?;
    let arch_shown = arch.map_or_else(|| "(none)".to_owned(), quoted_if_odd);
    writeln!(s, "architecture:  {arch_shown}")?;
    if let Ok(name) = g.get_str("general.name") {
        writeln!(s, "name:          {}", quoted_if_odd(name))?;
    }
    if let Some((ft, name)) = file_type(g) {
        writeln!(s, "file type:     {name} ({ft})")?;
    }
    writeln!(s, "metadata:      {} keys", g.metadata().len())?;
    let total: u64 = g.tensors().iter().map(|t| t.n_bytes).sum();
    writeln!(
        s,
        "tensors:       {} ({total} bytes of data)",
        g.tensors().len()
    )?;

    if let Some(arch) = arch {
        let hp = hparams(g, arch);
        if !hp.is_empty() {
            writeln!(s, "\nhyper-parameters ({}.*):", quoted_if_odd(arch))?;
            for (k, v) in hp {
                writeln!(s, "  {k:<38} {}", abbreviated(v))?;
            }
        }
    }

    if let Some(model) = g.get("tokenizer.ggml.model") {
        let tokens = g.get_array("tokenizer.ggml.tokens").ok();
        writeln!(s, "\ntokenizer:")?;
        writeln!(s, "  {:<38} {}", "model", abbreviated(model))?;
        if let Some(pre) = g.get("tokenizer.ggml.pre") {
            writeln!(s, "  {:<38} {}", "pre", abbreviated(pre))?;
        }
        if let Some(t) = tokens {
            writeln!(s, "  {:<38} {}", "vocab size", t.len())?;
        }
        if let Ok(m) = g.get_array("tokenizer.ggml.merges") {
            writeln!(s, "  {:<38} {}", "merges", m.len())?;
        }
        for key in TOKEN_IDS {
            if let Some(id) = g.get(&format!("tokenizer.ggml.{key}")) {
                match token_text(tokens, id) {
                    Some(text) => writeln!(s, "  {key:<38} {id} ({})", quoted(text))?,
                    None => writeln!(s, "  {key:<38} {}", abbreviated(id))?,
                }
            }
        }
        for key in ["add_bos_token", "add_eos_token", "add_space_prefix"] {
            if let Some(v) = g.get(&format!("tokenizer.ggml.{key}")) {
                writeln!(s, "  {key:<38} {}", abbreviated(v))?;
            }
        }
        if let Ok(t) = g.get_str("tokenizer.chat_template") {
            writeln!(s, "  {:<38} {} bytes", "chat template", t.len())?;
        }
    }

    if args.metadata {
        writeln!(s, "\nmetadata:")?;
        for (k, v) in g.metadata() {
            writeln!(
                s,
                "  {} ({}) = {}",
                show::shortened(k, MAX_STRING_CHARS),
                type_label(v),
                abbreviated(v)
            )?;
        }
    }

    if !g.tensors().is_empty() {
        // Width from the file, so padded by `show::cell`, never by a
        // formatting width argument (those panic above 65535).
        let name_w = g
            .tensors()
            .iter()
            .map(|t| show::escaped_width(&t.name, MAX_NAME_CHARS).min(MAX_NAME_CHARS))
            .max()
            .unwrap_or(0)
            .max(4);
        writeln!(s, "\ntensors:")?;
        writeln!(
            s,
            "  {}  {:<8} {:<22} {:>12}",
            show::cell("name", name_w),
            "type",
            "shape",
            "bytes"
        )?;
        for t in g.tensors() {
            writeln!(
                s,
                "  {}  {:<8} {:<22} {:>12}",
                show::cell(&t.name, name_w),
                t.ggml_type.name(),
                shape(t),
                t.n_bytes
            )?;
        }
    }
    Ok(s)
}

/// Pretty JSON in which the characters `show` escapes in text output (DEL,
/// C1 controls such as the 8-bit CSI, bidi controls, line separators) are
/// written as `\uXXXX` too: serde_json escapes only C0 controls, and the
/// output may go to a terminal. The JSON value is the same.
fn terminal_safe_json(v: &Json) -> Result<String, serde_json::Error> {
    use serde::Serialize as _;
    use serde_json::ser::{Formatter, PrettyFormatter};
    use std::io::{self, Write};

    struct Safe<'a>(PrettyFormatter<'a>);
    impl Formatter for Safe<'_> {
        fn write_string_fragment<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> io::Result<()> {
            let mut start = 0;
            for (i, c) in fragment.char_indices() {
                if phi_gguf::is_unsafe_to_show(c) {
                    w.write_all(&fragment.as_bytes()[start..i])?;
                    // Every escaped character is in the BMP: one \uXXXX.
                    write!(w, "\\u{:04x}", c as u32)?;
                    start = i + c.len_utf8();
                }
            }
            w.write_all(&fragment.as_bytes()[start..])
        }
        fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_array(w)
        }
        fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array(w)
        }
        fn begin_array_value<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.0.begin_array_value(w, first)
        }
        fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array_value(w)
        }
        fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_object(w)
        }
        fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object(w)
        }
        fn begin_object_key<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.0.begin_object_key(w, first)
        }
        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_object_value(w)
        }
        fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object_value(w)
        }
    }

    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Safe(PrettyFormatter::new()));
    v.serialize(&mut ser)?;
    // serde_json writes valid UTF-8: the lossy conversion never replaces.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A metadata value as JSON (full arrays; non-finite floats become null).
fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        // Shortest decimal that round-trips the f32 (1e-5, not 9.9999997e-6).
        Value::F32(x) => json!(x.to_string().parse::<f64>().ok()),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(_, items) => Json::Array(items.iter().map(value_json).collect()),
    }
}

fn to_json(g: &Gguf, with_metadata: bool) -> Json {
    let arch = g.get_str("general.architecture").ok();
    let mut hp = Map::new();
    if let Some(arch) = arch {
        for (k, v) in hparams(g, arch) {
            hp.insert(k.to_owned(), value_json(v));
        }
    }
    let mut tok = Map::new();
    if let Some(m) = g.get("tokenizer.ggml.model") {
        tok.insert("model".into(), value_json(m));
        if let Some(pre) = g.get("tokenizer.ggml.pre") {
            tok.insert("pre".into(), value_json(pre));
        }
        if let Ok(t) = g.get_array("tokenizer.ggml.tokens") {
            tok.insert("vocab_size".into(), json!(t.len()));
        }
        for key in TOKEN_IDS {
            if let Some(id) = g.get(&format!("tokenizer.ggml.{key}")) {
                tok.insert((*key).into(), value_json(id));
            }
        }
    }
    let tensors: Vec<Json> = g
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ggml_type.name(),
                "shape": t.dims,
                "offset": t.offset,
                "file_offset": g.data_offset() + t.offset,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    let mut obj = Map::new();
    obj.insert("version".into(), json!(g.version()));
    obj.insert("architecture".into(), json!(arch));
    obj.insert("name".into(), json!(g.get_str("general.name").ok()));
    obj.insert(
        "file_type".into(),
        match file_type(g) {
            Some((ft, name)) => json!({"id": ft, "name": name}),
            None => Json::Null,
        },
    );
    obj.insert("file_size".into(), json!(g.bytes().len()));
    obj.insert("alignment".into(), json!(g.alignment()));
    obj.insert("data_offset".into(), json!(g.data_offset()));
    obj.insert("metadata_count".into(), json!(g.metadata().len()));
    obj.insert("tensor_count".into(), json!(g.tensors().len()));
    obj.insert("hyperparameters".into(), Json::Object(hp));
    obj.insert("tokenizer".into(), Json::Object(tok));
    if with_metadata {
        let md: Map<String, Json> = g
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect();
        obj.insert("metadata".into(), Json::Object(md));
    }
    obj.insert("tensors".into(), Json::Array(tensors));
    Json::Object(obj)
}
