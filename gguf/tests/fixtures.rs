//! Reads every fixture GGUF shipped in tests/fixtures and checks what the
//! fixture README documents about it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use phi_gguf::{GgmlType, Gguf, GgufError, Value, ValueType};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model(name: &str) -> Gguf {
    let path = fixtures().join("models").join(name);
    Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn types_of(g: &Gguf) -> BTreeMap<String, GgmlType> {
    g.tensors()
        .iter()
        .map(|t| (t.name.clone(), t.ggml_type))
        .collect()
}

/// (file, bytes) from the fixture README table.
const MODELS: &[(&str, u64)] = &[
    ("phi3-tiny-f32.gguf", 6309792),
    ("phi3-tiny-f16.gguf", 3164064),
    ("phi3-tiny-q8_0.gguf", 1689504),
    ("phi3-tiny-q4_0.gguf", 936864),
    ("phi3-tiny-q4_1.gguf", 1026976),
    ("phi3-tiny-q5_0.gguf", 1117088),
    ("phi3-tiny-q5_1.gguf", 1207200),
    ("phi3-tiny-q2_k.gguf", 678816),
    ("phi3-tiny-q3_k_m.gguf", 898976),
    ("phi3-tiny-q4_k_m.gguf", 1021344),
    ("phi3-tiny-q6_k.gguf", 1308576),
    ("phi3-hd96-q4_0.gguf", 834624),
    ("phi3-hd96-q8_0.gguf", 1375296),
    ("phi3-longrope-q8_0.gguf", 328160),
    ("phi3-gqa-q8_0.gguf", 677440),
    ("phi3-partial-q8_0.gguf", 327744),
    ("llama-tiny-q8_0.gguf", 712064),
];

#[test]
fn every_model_fixture_parses_and_is_consistent() {
    let dir = fixtures().join("models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected_len = MODELS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} not in the README table"))
            .1;
        assert_eq!(g.bytes().len() as u64, expected_len, "{name}");
        assert!(matches!(g.version(), 2 | 3));
        assert_eq!(g.alignment(), 32, "{name}");
        let arch = g.architecture().unwrap();
        assert_eq!(
            arch,
            if name.starts_with("llama") {
                "llama"
            } else {
                "phi3"
            }
        );
        // Every tensor's bytes lie in the file, are aligned in memory and are
        // exactly as long as the type and dims say.
        let mut total = 0u64;
        for v in g.tensor_views() {
            let t = v.info;
            assert_eq!(v.data.len() as u64, t.n_bytes);
            assert_eq!(Some(t.n_bytes), t.ggml_type.bytes_for(t.n_elements()));
            assert_eq!(v.data.as_ptr() as usize % 32, 0, "{name}/{}", t.name);
            total += t.n_bytes;
        }
        assert!(g.data_offset() + total <= g.bytes().len() as u64);
        // The vocabulary is the synthetic 512-token one.
        assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
        assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 512);
        assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
        assert_eq!(
            g.get_u32(&format!("{arch}.block_count")).unwrap() as usize,
            g.tensors()
                .iter()
                .filter(|t| t.name.ends_with(".attn_norm.weight"))
                .count()
        );
    }
    assert_eq!(seen, MODELS.len());
}

#[test]
fn phi3_tiny_hyperparameters() {
    let g = model("phi3-tiny-f32.gguf");
    assert_eq!(g.get_u32("phi3.embedding_length").unwrap(), 256);
    assert_eq!(g.get_u32("phi3.feed_forward_length").unwrap(), 512);
    assert_eq!(g.get_u32("phi3.block_count").unwrap(), 2);
    assert_eq!(g.get_u32("phi3.attention.head_count").unwrap(), 4);
    assert_eq!(g.get_u32("phi3.attention.head_count_kv").unwrap(), 4);
    assert_eq!(g.get_u32("phi3.rope.dimension_count").unwrap(), 64);
    assert_eq!(g.get_u32("phi3.context_length").unwrap(), 4096);
    assert_eq!(g.get_u32("phi3.attention.sliding_window").unwrap(), 2047);
    assert_eq!(
        g.get_f32("phi3.attention.layer_norm_rms_epsilon").unwrap(),
        1e-5
    );
    assert_eq!(g.get_f32("phi3.rope.freq_base").unwrap(), 10000.0);
    assert!(g.get_str("general.name").unwrap().contains("phi3"));
    assert!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 501);
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens[1], "<s>");
    assert_eq!(tokens[3], "<0x00>");
    assert_eq!(tokens[501], "<|endoftext|>");
    assert_eq!(tokens[511], "<|user|>");
    assert_eq!(g.get_f32_array("tokenizer.ggml.scores").unwrap().len(), 512);
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        512
    );

    let qkv = g.tensor("blk.0.attn_qkv.weight").unwrap();
    assert_eq!(qkv.dims(), &[256, 768]); // q|k|v rows
    assert_eq!(qkv.ggml_type(), GgmlType::F32);
    let up = g.tensor("blk.1.ffn_up.weight").unwrap();
    assert_eq!(up.dims(), &[256, 1024]); // gate|up, 2*n_ff
    assert_eq!(g.tensor("output.weight").unwrap().dims(), &[256, 512]);
    assert_eq!(g.tensor("token_embd.weight").unwrap().dims(), &[256, 512]);
    // F32 data decodes to finite floats.
    let norm = g.tensor("blk.0.attn_norm.weight").unwrap();
    assert_eq!(norm.dims(), &[256]);
    assert!(norm
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .all(f32::is_finite));
    assert!(matches!(
        g.tensor("blk.9.attn_qkv.weight"),
        Err(GgufError::MissingTensor(n)) if n == "blk.9.attn_qkv.weight"
    ));
}

#[test]
fn quantized_tensor_types_match_the_readme_table() {
    use GgmlType::*;
    let g = model("phi3-tiny-q4_k_m.gguf");
    for (name, ty) in types_of(&g) {
        let expected = if name.ends_with("norm.weight") {
            F32
        } else if [
            "output.weight",
            "blk.1.attn_qkv.weight",
            "blk.1.ffn_down.weight",
        ]
        .contains(&name.as_str())
        {
            Q6_K
        } else {
            Q4_K
        };
        assert_eq!(ty, expected, "q4_k_m {name}");
    }
    let g = model("phi3-tiny-q2_k.gguf");
    for (name, ty) in types_of(&g) {
        let expected = if name.ends_with("norm.weight") {
            F32
        } else if name == "output.weight" {
            Q6_K
        } else if name == "token_embd.weight" || name.ends_with("ffn_up.weight") {
            Q2_K
        } else {
            Q3_K
        };
        assert_eq!(ty, expected, "q2_k {name}");
    }
    let g = model("phi3-tiny-q3_k_m.gguf");
    for (name, ty) in types_of(&g) {
        let expected = if name.ends_with("norm.weight") {
            F32
        } else if name == "output.weight" {
            Q6_K
        } else if name == "token_embd.weight" || name.ends_with("ffn_up.weight") {
            Q3_K
        } else if name.ends_with("attn_qkv.weight") {
            Q5_K
        } else {
            Q4_K
        };
        assert_eq!(ty, expected, "q3_k_m {name}");
    }
    for (file, base, out) in [
        ("phi3-tiny-q4_0.gguf", Q4_0, Q6_K),
        ("phi3-tiny-q4_1.gguf", Q4_1, Q6_K),
        ("phi3-tiny-q5_0.gguf", Q5_0, Q6_K),
        ("phi3-tiny-q5_1.gguf", Q5_1, Q6_K),
        ("phi3-tiny-q8_0.gguf", Q8_0, Q8_0),
        ("phi3-tiny-q6_k.gguf", Q6_K, Q6_K),
        ("phi3-tiny-f16.gguf", F16, F16),
        ("phi3-hd96-q4_0.gguf", Q4_0, Q8_0),
        ("phi3-hd96-q8_0.gguf", Q8_0, Q8_0),
    ] {
        let g = model(file);
        for (name, ty) in types_of(&g) {
            let expected = if name.ends_with("norm.weight") {
                F32
            } else if name == "output.weight" {
                out
            } else {
                base
            };
            assert_eq!(ty, expected, "{file} {name}");
        }
    }
}

#[test]
fn secondary_model_dims() {
    let g = model("phi3-hd96-q4_0.gguf");
    assert_eq!(g.get_u32("phi3.embedding_length").unwrap(), 384);
    assert_eq!(g.get_u32("phi3.rope.dimension_count").unwrap(), 96);
    let g = model("phi3-gqa-q8_0.gguf");
    assert_eq!(g.get_u32("phi3.attention.head_count").unwrap(), 8);
    assert_eq!(g.get_u32("phi3.attention.head_count_kv").unwrap(), 2);
    // q (256) + k (2*32) + v (2*32) rows.
    assert_eq!(
        g.tensor("blk.0.attn_qkv.weight").unwrap().dims(),
        &[256, 384]
    );
    let g = model("phi3-partial-q8_0.gguf");
    assert_eq!(g.get_u32("phi3.rope.dimension_count").unwrap(), 32);
    let g = model("phi3-longrope-q8_0.gguf");
    assert_eq!(g.get_u32("phi3.context_length").unwrap(), 131072);
    assert_eq!(
        g.get_u32("phi3.rope.scaling.original_context_length")
            .unwrap(),
        4096
    );
    assert!((g.get_f32("phi3.rope.scaling.attn_factor").unwrap() - 1.1902).abs() < 1e-4);
    assert_eq!(g.get_u32("phi3.attention.sliding_window").unwrap(), 262144);
    for n in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        let t = g.tensor(n).unwrap();
        assert_eq!(t.dims(), &[32]);
        assert_eq!(t.ggml_type(), GgmlType::F32);
    }
    let g = model("llama-tiny-q8_0.gguf");
    assert_eq!(g.get_u32("llama.attention.head_count_kv").unwrap(), 2);
    assert_eq!(g.get_u32("llama.vocab_size").unwrap(), 512);
    assert!(g.get("tokenizer.chat_template").is_none());
    for n in [
        "attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up", "ffn_down",
    ] {
        assert!(g.has_tensor(&format!("blk.0.{n}.weight")), "{n}");
    }
}

#[test]
fn vocab_fixtures() {
    for (file, model, n_vocab, len) in [
        ("ggml-vocab-phi-3.gguf", "llama", 32064, 726019),
        ("ggml-vocab-gpt-2.gguf", "gpt2", 50257, 1766807),
    ] {
        let path = fixtures().join("vocab").join(file);
        let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(g.bytes().len(), len);
        assert!(g.tensors().is_empty(), "{file} is vocab-only");
        assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), model);
        let tokens = g.get("tokenizer.ggml.tokens").unwrap();
        assert!(matches!(tokens, Value::Array(ValueType::String, v) if v.len() == n_vocab));
        // Same result from the owned-buffer path.
        let owned = Gguf::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(owned.metadata(), g.metadata());
    }
    let g = Gguf::open(fixtures().join("vocab/ggml-vocab-gpt-2.gguf")).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert!(g.get_array("tokenizer.ggml.merges").unwrap().len() > 40000);
}

#[test]
fn released_ranges_stay_readable() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models/phi3-tiny-q8_0.gguf");
    let g = phi_gguf::Gguf::open(&path).unwrap();
    let before = g.bytes().to_vec();
    g.release(0..g.bytes().len());
    #[allow(clippy::reversed_empty_ranges)]
    g.release(100..50); // empty and reversed ranges are ignored
    g.release(0..usize::MAX);
    assert_eq!(g.bytes(), &before[..]);
}
