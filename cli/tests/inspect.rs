//! Runs the built `phi` binary: `phi inspect` on fixtures and malformed files.

use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn phi(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(args)
        .output()
        .expect("run phi")
}

#[test]
fn json_output_describes_the_fixture() {
    let path = fixture("models/phi3-tiny-q4_k_m.gguf");
    let out = phi(&["inspect".as_ref(), "--json".as_ref(), path.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["version"], 3);
    assert_eq!(v["architecture"], "phi3");
    assert_eq!(v["file_size"], 1021344);
    assert!(v["metadata_count"].as_u64().unwrap() > 10);
    assert_eq!(v["hyperparameters"]["embedding_length"], 256);
    assert_eq!(v["hyperparameters"]["block_count"], 2);
    // f32 values print as their shortest decimal.
    assert_eq!(
        v["hyperparameters"]["attention.layer_norm_rms_epsilon"],
        1e-5
    );
    assert_eq!(v["tokenizer"]["vocab_size"], 512);
    assert_eq!(v["tokenizer"]["bos_token_id"], 1);
    assert_eq!(v["tokenizer"]["eos_token_id"], 501);
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 15); // 3 global + 2 layers x 6
    let find = |name: &str| {
        tensors
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let qkv1 = find("blk.1.attn_qkv.weight");
    assert_eq!(qkv1["type"], "Q6_K");
    assert_eq!(qkv1["shape"], serde_json::json!([256, 768]));
    assert_eq!(qkv1["bytes"], 768 * 210);
    let qkv0 = find("blk.0.attn_qkv.weight");
    assert_eq!(qkv0["type"], "Q4_K");
    assert_eq!(qkv0["bytes"], 768 * 144);
    assert_eq!(find("output.weight")["type"], "Q6_K");
    assert_eq!(find("output_norm.weight")["type"], "F32");
    let total: u64 = tensors.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    for t in tensors {
        let end = t["file_offset"].as_u64().unwrap() + t["bytes"].as_u64().unwrap();
        assert!(end <= 1021344);
        assert_eq!(t["offset"].as_u64().unwrap() % 32, 0);
    }
    assert!(total < 1021344);
    assert!(v.get("metadata").is_none());
}

#[test]
fn json_metadata_dump_and_vocab_file() {
    let path = fixture("vocab/ggml-vocab-gpt-2.gguf");
    let out = phi(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        "--metadata".as_ref(),
        path.as_os_str(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tensors"].as_array().unwrap().len(), 0);
    assert_eq!(v["tokenizer"]["model"], "gpt2");
    assert_eq!(v["tokenizer"]["vocab_size"], 50257);
    let md = v["metadata"].as_object().unwrap();
    assert_eq!(md.len() as u64, v["metadata_count"].as_u64().unwrap());
    assert_eq!(md["tokenizer.ggml.tokens"].as_array().unwrap().len(), 50257);
}

#[test]
fn text_output_has_header_hparams_tokenizer_and_tensor_table() {
    let path = fixture("models/llama-tiny-q8_0.gguf");
    let out = phi(&["inspect".as_ref(), "--metadata".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "GGUF version:  3",
        "architecture:  llama",
        "file type:     MOSTLY_Q8_0 (7)",
        "head_count_kv",
        "vocab size",
        "bos_token_id",
        "(\"<s>\")",
        "blk.0.attn_k.weight",
        "Q8_0",
        // --metadata: the 512-token array is abbreviated.
        "tokenizer.ggml.tokens (array[string]) = [\"<unk>\", \"<s>\", \"</s>\", ... (512 items)]",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // One line per tensor in the table.
    let rows = text
        .lines()
        .filter(|l| l.trim_start().starts_with("blk.") && l.contains("Q8_0"))
        .count();
    assert_eq!(rows, 7, "{text}"); // q, k, v, output, gate, up, down
}

fn assert_clean_failure(out: &std::process::Output, expect: &str) {
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(expect), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(out.stdout.is_empty());
}

#[test]
fn malformed_files_fail_with_one_line() {
    let dir = std::env::temp_dir().join(format!("phi-inspect-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(fixture("models/phi3-partial-q8_0.gguf")).unwrap();

    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let out = phi(&["inspect".as_ref(), truncated.as_os_str()]);
    assert_clean_failure(&out, "extends past the end of the file");

    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"hello, world").unwrap();
    let out = phi(&["inspect".as_ref(), "--json".as_ref(), not_gguf.as_os_str()]);
    assert_clean_failure(&out, "not a GGUF file");

    let mut v1 = good[..64].to_vec();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    let old = dir.join("v1.gguf");
    std::fs::write(&old, v1).unwrap();
    let out = phi(&["inspect".as_ref(), old.as_os_str()]);
    assert_clean_failure(&out, "version 1");

    let out = phi(&["inspect".as_ref(), dir.as_os_str()]);
    assert_clean_failure(&out, "is a directory");

    let missing = dir.join("missing.gguf");
    let out = phi(&["inspect".as_ref(), missing.as_os_str()]);
    assert_clean_failure(&out, "missing.gguf");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 18: a tensor name of 100 000 characters made `phi inspect` panic
/// ("Formatting argument out of range": the name column's width went into a
/// formatting width argument). Names and strings from the file are now
/// shortened with a marker and escaped; `--json` keeps them whole.
#[test]
fn long_and_hostile_strings_are_shortened_and_escaped() {
    use phi_gguf::{GgmlType, GgufWriter, Value};
    let dir = std::env::temp_dir().join(format!("phi-inspect-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let long = "x".repeat(100_000);
    let evil = "blk.\x1b[2J\x1b]0;pwned\x07\n\u{9b}31m\u{202e}.weight";
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add_metadata("general.name", Value::String(evil.into()))
        .unwrap();
    w.add_metadata(format!("general.{evil}"), Value::String(long.clone()))
        .unwrap();
    for name in [long.as_str(), evil, "short"] {
        w.add_tensor(name, GgmlType::F32, &[4], vec![0u8; 16])
            .unwrap();
    }
    let path = dir.join("hostile.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();

    let out = phi(&["inspect".as_ref(), "--metadata".as_ref(), path.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n') && !text.contains('\u{202e}'),
        "raw control characters in {text:?}"
    );
    // The shown name: 64 columns at most, then the marker with the true size.
    assert!(text.contains("...(100000 bytes)"), "{text}");
    assert!(text.len() < 4000, "{} bytes shown", text.len());
    let shown_evil = "blk.\\x1b[2J\\x1b]0;pwned\\x07\\n\\u{9b}31m\\u{202e}.weight";
    assert!(
        text.contains(&format!("name:          \"{shown_evil}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("general.{shown_evil} (string) = \"xxx")),
        "{text}"
    );
    // The tensor table stays aligned: every row has its type at one column.
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "tensors:")
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 4, "{text}"); // header + 3 tensors
    let col = rows[0].find("type").unwrap();
    for r in &rows[1..] {
        assert_eq!(
            r.chars().skip(col).take(3).collect::<String>(),
            "F32",
            "{text}"
        );
    }

    // JSON: the same strings, exact, with C1 and bidi controls as \u escapes.
    let out = phi(&["inspect".as_ref(), "--json".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let raw = String::from_utf8(out.stdout).unwrap();
    assert!(
        !raw.contains('\u{9b}') && !raw.contains('\u{202e}'),
        "{raw}"
    );
    assert!(raw.contains("\\u009b31m\\u202e"), "{raw}");
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["name"], evil);
    let names: Vec<&str> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [long.as_str(), evil, "short"]);
    let _ = std::fs::remove_dir_all(&dir);
}
