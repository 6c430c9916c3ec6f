//! `phi perplexity` against an independent computation: the same windows run
//! one token at a time through the KV cache, log-softmax in f64.

use phi::{Context, ContextParams, KvType, Model};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(rel)
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. \
A model reads a text and predicts, at each position, the next token. \
Perplexity is the exponential of the average negative log-likelihood of the \
tokens it was asked to predict; a lower value means a better model. \
The windows do not overlap, and only the second half of each one is scored, \
so that every scored token has at least half a window of context before it. \
Numbers like 3.14159 and 2.71828 and words like naïve café and Ελληνικά test \
the byte fallback of the tokenizer as well.";

fn text_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("phi-ppl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, TEXT).unwrap();
    p
}

/// exp(mean NLL) over windows of `c`, token by token (no batched eval).
fn reference_ppl(model: &str, c: usize) -> (f64, usize, usize) {
    let model = Arc::new(Model::load(fixture(model)).unwrap());
    let tok = model.tokenizer();
    let tokens = tok.encode(TEXT, true, false);
    let params = ContextParams {
        n_ctx: c,
        n_threads: 1,
        kv_type: KvType::F16,
        sliding_window: false,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(Arc::clone(&model), &params).unwrap();
    let n_windows = tokens.len() / c;
    assert!(
        n_windows >= 2,
        "the test text is too short: {} tokens",
        tokens.len()
    );
    let mut sum = 0f64;
    let mut n = 0;
    for w in 0..n_windows {
        let win = &tokens[w * c..(w + 1) * c];
        ctx.reset();
        for j in 0..c - 1 {
            let t = if j == 0 { tok.bos().unwrap() } else { win[j] };
            ctx.eval(&[t], false).unwrap();
            if j >= c / 2 {
                let l = ctx.last_logits();
                let max = l.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let lse = max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                sum += lse - l[win[j + 1] as usize] as f64;
                n += 1;
            }
        }
    }
    ((sum / n as f64).exp(), n_windows, n)
}

#[test]
fn json_perplexity_matches_a_token_by_token_computation() {
    let c = 32;
    let file = text_file("a.txt");
    for model in ["phi3-tiny-q8_0.gguf", "llama-tiny-q8_0.gguf"] {
        let out = Command::new(env!("CARGO_BIN_EXE_phi"))
            .args(["perplexity", "-m"])
            .arg(fixture(model))
            .arg("-f")
            .arg(&file)
            .args(["-c", &c.to_string(), "-t", "2", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (want, n_windows, n_scored) = reference_ppl(model, c);
        let got = v["perplexity"].as_f64().unwrap();
        assert_eq!(v["n_windows"].as_u64().unwrap() as usize, n_windows);
        assert_eq!(v["n_tokens_scored"].as_u64().unwrap() as usize, n_scored);
        assert_eq!(n_scored, n_windows * (c - 1 - c / 2));
        // Random weights: far from 1, far from the vocabulary size (512).
        assert!(got > 1.5 && got.is_finite(), "{model}: {got}");
        // Batched vs one-token evals differ only by float rounding.
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "{model}: phi perplexity {got}, token-by-token {want}"
        );
    }
}

#[test]
fn text_report_and_errors() {
    let file = text_file("b.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["perplexity", "-m"])
        .arg(fixture("phi3-tiny-q4_0.gguf"))
        .arg("-f")
        .arg(&file)
        .args(["-c", "16", "--chunks", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("perplexity: "), "{text}");
    assert!(text.contains("in 2 windows of 16"), "{text}");
    // Non-terminal stderr gets one running-estimate line per window.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[2/2] ppl "), "{err}");

    // A window longer than the text is an error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["perplexity", "-m"])
        .arg(fixture("phi3-tiny-q4_0.gguf"))
        .arg("-f")
        .arg(&file)
        .args(["-c", "100000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than one window"));
}

#[test]
fn max_memory_refuses_a_context_that_does_not_fit() {
    let file = text_file("max-memory.txt");
    let run = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_phi"))
            .args(["perplexity", "-m"])
            .arg(fixture("phi3-tiny-q4_0.gguf"))
            .arg("-f")
            .arg(&file)
            .args(["-c", "16", "--chunks", "1", "--max-memory", limit])
            .output()
            .unwrap()
    };
    let small = run("4K");
    assert_eq!(small.status.code(), Some(1));
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(
        err.contains("bytes") && err.contains("-c") && !err.contains("panicked"),
        "{err}"
    );
    assert!(small.stdout.is_empty());
    let ok = run("1G");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(run("0").status.code(), Some(2)); // clap's usage error
}
