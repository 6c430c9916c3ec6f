//! Writes a seed corpus for the `gguf_parse` fuzz target:
//! `cargo run -p phi-gguf --example fuzz_seeds -- fuzz/corpus/gguf_parse`.
//!
//! Seeds are small *valid* files (so the fuzzer starts past the header
//! checks): a synthetic file using every value type, and each fixture model
//! re-written with its full metadata but only its small tensors (≤ 4 KiB).

use std::path::PathBuf;

use phi_gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType};

fn synthetic() -> Result<Vec<u8>, GgufError> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from("phi3"))?;
    w.add_metadata("general.alignment", Value::U32(32))?;
    w.add_metadata("phi3.block_count", Value::U32(1))?;
    w.add_metadata("phi3.rope.freq_base", Value::F32(10000.0))?;
    w.add_metadata("a.i8", Value::I8(-1))?;
    w.add_metadata("a.u16", Value::U16(2))?;
    w.add_metadata("a.i16", Value::I16(-3))?;
    w.add_metadata("a.i32", Value::I32(-4))?;
    w.add_metadata("a.u64", Value::U64(5))?;
    w.add_metadata("a.i64", Value::I64(-6))?;
    w.add_metadata("a.f64", Value::F64(0.5))?;
    w.add_metadata("a.bool", Value::Bool(true))?;
    w.add_metadata("a.u8", Value::U8(9))?;
    w.add_metadata(
        "tokenizer.ggml.tokens",
        Value::Array(ValueType::String, vec!["<s>".into(), "a".into()]),
    )?;
    w.add_metadata(
        "a.nested",
        Value::Array(
            ValueType::Array,
            vec![Value::Array(ValueType::U8, vec![Value::U8(1)])],
        ),
    )?;
    w.add_tensor("f32", GgmlType::F32, &[4, 2], vec![0u8; 32])?;
    w.add_tensor("q4_0", GgmlType::Q4_0, &[32], vec![0u8; 18])?;
    w.add_tensor("q4_k", GgmlType::Q4_K, &[256], vec![0u8; 144])?;
    w.to_bytes()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("synthetic.gguf"), synthetic()?)?;
    std::fs::write(out.join("empty.gguf"), GgufWriter::new().to_bytes()?)?;
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
    for entry in std::fs::read_dir(models)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            continue;
        }
        let g = Gguf::open(&path)?;
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata() {
            w.add_metadata(k.clone(), v.clone())?;
        }
        for t in g.tensor_views().filter(|t| t.data.len() <= 4096) {
            w.add_tensor(t.name(), t.ggml_type(), t.dims(), t.data)?;
        }
        let bytes = w.to_bytes()?;
        if bytes.len() <= 65536 {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            std::fs::write(out.join(format!("{name}-small.gguf")), bytes)?;
        }
    }
    Ok(())
}
