//! `phi tokenize` on llama.cpp's Phi-3 vocab-only GGUF, against the
//! reference ids in tests/fixtures/tokenizer/phi-3.json.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn vocab() -> PathBuf {
    fixtures().join("vocab/ggml-vocab-phi-3.gguf")
}

fn phi(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi"))
        .arg("tokenize")
        .arg("-m")
        .arg(vocab())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phi tokenize");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ids(stdout: &[u8]) -> Vec<Vec<u32>> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("tokenizer/phi-3.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn reference_ids(case: &serde_json::Value, add_special: bool, parse_special: bool) -> Vec<u32> {
    let key = format!("add_special={add_special},parse_special={parse_special}");
    serde_json::from_value(case[&key]["ids"].clone()).unwrap()
}

#[test]
fn text_argument_and_flags() {
    let out = phi(&["Hello world"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ids(&out.stdout), [vec![1, 15043, 3186]]);

    let out = phi(&["--no-bos", "Hello world"], "");
    assert_eq!(ids(&out.stdout), [vec![15043, 3186]]);

    let prompt = "<|user|>\nHello!<|end|>\n<|assistant|>\n";
    let out = phi(&["--parse-special", prompt], "");
    assert_eq!(
        ids(&out.stdout),
        [vec![1, 32010, 15043, 29991, 32007, 32001]]
    );
    let out = phi(&[prompt], "");
    assert!(!ids(&out.stdout)[0].contains(&32010));
}

#[test]
fn file_and_stdin() {
    let dir = std::env::temp_dir().join(format!("phi-tokenize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompt.txt");
    std::fs::write(&file, "Hello world").unwrap();
    let out = phi(&["--file", file.to_str().unwrap()], "");
    assert_eq!(ids(&out.stdout), [vec![1, 15043, 3186]]);
    std::fs::remove_dir_all(&dir).unwrap();

    let out = phi(&["--no-bos"], "Hello world");
    assert_eq!(ids(&out.stdout), [vec![15043, 3186]]);
}

#[test]
fn jsonl_matches_llama_cpp_for_the_whole_corpus() {
    let reference = reference();
    let cases = reference["cases"].as_array().unwrap();
    let input: String = cases
        .iter()
        .map(|c| serde_json::to_string(&c["text"]).unwrap() + "\n")
        .collect();
    for (flags, add_special, parse_special) in [
        (&["--jsonl"][..], true, false),
        (&["--jsonl", "--no-bos", "--parse-special"][..], false, true),
    ] {
        let out = phi(flags, &input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = ids(&out.stdout);
        assert_eq!(got.len(), cases.len());
        for (case, got) in cases.iter().zip(&got) {
            assert_eq!(
                got,
                &reference_ids(case, add_special, parse_special),
                "{}",
                case["text"]
            );
        }
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let out = phi(&["--jsonl"], "\"ok\"\nnot json\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["tokenize", "-m", "/nonexistent/model.gguf", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
