//! `phi run --temp 0 --raw` prints llama.cpp's greedy continuation
//! (tests/fixtures/run_greedy.json, made with llama.cpp 0c1e57098).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn greedy_text_matches_llama_cpp() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("run_greedy.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (model, case) in oracle["cases"].as_object().unwrap() {
        let prefix = case["confident_prefix"].as_u64().unwrap();
        let hex = case["prefix_text_hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want = String::from_utf8_lossy(&bytes);
        // A prefix may end inside a multi-byte character; compare what is complete.
        let want = want.trim_end_matches('\u{FFFD}');
        let out = Command::new(env!("CARGO_BIN_EXE_phi"))
            .args([
                "run",
                "--raw",
                "--temp",
                "0",
                "-n",
                "24",
                "--kv-type",
                "f32",
                "--no-swa",
            ])
            .args(["-t", "2", "-m"])
            .arg(fixtures.join("models").join(model))
            .arg("-p")
            .arg(case["prompt"].as_str().unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert!(
            got.starts_with(want),
            "{model}: llama.cpp's first {prefix} greedy tokens give {want:?}, phi run printed {got:?}"
        );
        // Timings go to stderr, never into the text.
        assert!(String::from_utf8_lossy(&out.stderr).contains("tok/s"));
        checked += 1;
    }
    assert!(checked >= 4);
}

#[test]
fn bad_input_is_one_clear_error() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_phi"))
            .arg("run")
            .args(args)
            .output()
            .unwrap()
    };
    let model = fixtures.join("phi3-tiny-q8_0.gguf");
    let m = model.to_str().unwrap();
    // Prompt longer than the context.
    let long = "the model ".repeat(200);
    let out = run(&["-m", m, "-c", "64", "-p", &long, "--raw"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context") && err.contains("-c"), "{err}");
    // Out-of-range sampling flag.
    let out = run(&["-m", m, "-p", "hi", "--top-p", "2"]);
    assert_eq!(out.status.code(), Some(1));
    // Not a model.
    let out = run(&["-m", "/etc/hostname", "-p", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn quiet_verbose_and_help_examples() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/phi3-tiny-q8_0.gguf");
    let run = |extra: &str| {
        Command::new(env!("CARGO_BIN_EXE_phi"))
            .args([
                "run", "--raw", "--temp", "0", "-n", "4", "-p", "hi", extra, "-m",
            ])
            .arg(&model)
            .output()
            .unwrap()
    };
    let quiet = run("-q");
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let verbose = run("-v");
    let err = String::from_utf8_lossy(&verbose.stderr);
    assert!(
        err.contains("layer   0:") && err.contains("layer   1:"),
        "{err}"
    );
    assert_eq!(quiet.stdout, verbose.stdout);
    for sub in [
        "run",
        "chat",
        "bench",
        "perplexity",
        "tokenize",
        "inspect",
        "logits",
        "pull",
        "list",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_phi"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains("Examples:"),
            "{sub}: {help}"
        );
    }
}

#[test]
fn max_memory_refuses_a_context_that_does_not_fit() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/phi3-tiny-q8_0.gguf");
    let run = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_phi"))
            .args([
                "run",
                "--raw",
                "--temp",
                "0",
                "-n",
                "2",
                "-p",
                "hi",
                "--max-memory",
                limit,
                "-m",
            ])
            .arg(&model)
            .output()
            .unwrap()
    };
    // 4096 tokens of f16 KV for 2 layers × 256 wide needs ~8 MiB: 1M is too little.
    let small = run("1M");
    assert_eq!(small.status.code(), Some(1));
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(err.contains("bytes") && err.contains("-c"), "{err}");
    assert!(run("1G").status.success());
    assert_eq!(run("lots").status.code(), Some(2)); // clap's usage error
}

/// Every model-loading command takes the shared flag groups: `run` has
/// `--offline` (an `hf:` reference that is not cached is then an error
/// without touching the network), and the same `-m`/`-t`/`-c`/`--kv-type`
/// spellings as the others.
#[test]
fn run_takes_the_shared_model_and_context_flags() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/phi3-tiny-q4_0.gguf");
    let phi = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_phi"))
            .args(args)
            .env("HF_HUB_CACHE", env!("CARGO_TARGET_TMPDIR"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    let m = model.to_str().unwrap();
    let common = [
        "--offline",
        "-t",
        "1",
        "-c",
        "64",
        "--kv-type",
        "q8_0",
        "--max-memory",
        "64M",
    ];
    let out = phi(&[
        &["run", "-m", m, "-p", "Hello", "-n", "4", "--raw", "-q"][..],
        &common,
    ]
    .concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = phi(&[&["logits", "-m", m, "--tokens", "1,2,3"][..], &common].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = phi(&[
        "run",
        "--offline",
        "-m",
        "hf:nobody/nothing/x.gguf",
        "-p",
        "Hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("offline"), "{err}");
}
