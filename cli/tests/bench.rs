//! `phi bench` on fixture models and tiny synthetic models (fast settings).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(rel)
}

fn phi(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run phi")
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "phi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn json_lines_per_test_and_thread_count() {
    let m = fixture("phi3-tiny-q4_0.gguf");
    let out = phi(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-t",
        "1,2",
        "-r",
        "2",
        "--json",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let tests: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["test"].as_str().unwrap().to_string(),
                l["threads"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tests,
        vec![
            ("pp16".to_string(), 1),
            ("tg4".to_string(), 1),
            ("pp16".to_string(), 2),
            ("tg4".to_string(), 2)
        ]
    );
    for l in &lines {
        let runs: Vec<f64> = l["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r.is_finite() && *r > 0.0));
        // The median of two runs is their mean.
        let median = l["tokens_per_s"].as_f64().unwrap();
        assert!((median - (runs[0] + runs[1]) / 2.0).abs() <= 1e-9 * median);
        assert_eq!(l["model"], m.to_str().unwrap());
        // The fixture's general.file_type says Q4_0 (its output tensor is Q6_K).
        assert_eq!(l["type"], "Q4_0");
        assert!(l["size_bytes"].as_u64().unwrap() < 936864);
        assert!(l["n_params"].as_u64().unwrap() > 256 * 512 * 2);
        let isa = l["isa"].as_str().unwrap();
        assert!(["scalar", "avx2", "avx512", "neon"]
            .iter()
            .any(|k| isa.to_lowercase().contains(k)));
    }
}

#[test]
fn markdown_table_by_default() {
    let m = fixture("llama-tiny-q8_0.gguf");
    let out = phi(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "2",
        "-t",
        "1",
        "-r",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}"); // header + pp8 + tg2
    assert!(
        rows[1].contains(" pp8 ") && rows[1].contains("Q8_0"),
        "{text}"
    );
    assert!(
        rows[1].starts_with("| llama-tiny-q8_0.gguf | Q8_0 | 0.67 MiB |"),
        "{text}"
    );
    assert!(rows[2].contains(" tg2 "), "{text}");
}

#[test]
fn synthetic_quantized_models() {
    for ty in ["q4_0", "q8_0", "q4_k", "q2_k", "f16"] {
        let out = phi(&[
            "bench",
            "--synthetic",
            "tiny",
            "--type",
            ty,
            "-p",
            "16",
            "-n",
            "4",
            "-t",
            "1",
            "-r",
            "2",
            "--json",
        ]);
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], ty.to_uppercase());
        assert_eq!(lines[0]["model"], "synthetic tiny");
        assert!(lines[1]["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let out = phi(&["bench", "--synthetic", "tiny", "--type", "iq2_xxs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("q4_0"));
    let out = phi(&["bench", "--synthetic", "enormous"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("phi3-mini"));
    let out = phi(&["bench", "-m", "/nonexistent/model.gguf", "-r", "1"]);
    assert!(!out.status.success());
}

#[test]
fn kernel_table_reports_every_path_against_memory_bandwidth() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phi"))
        .args([
            "bench",
            "--kernels",
            "--types",
            "q4_0",
            "-t",
            "1",
            "-r",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["test"], "memread");
    assert!(lines[0]["gb_s"].as_f64().unwrap() > 0.1);
    let kernels: Vec<_> = lines.iter().filter(|l| l["test"] == "kernel").collect();
    assert!(kernels.iter().any(|l| l["isa"] == "scalar"));
    // Every AVX2 CPU (AVX-512 ones included) has the vpmaddubsw packed column.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::env::var("PHI_ISA").map_or(true, |v| v != "scalar")
    {
        let names: Vec<_> = kernels.iter().map(|l| l["isa"].clone()).collect();
        assert!(
            names.iter().any(|n| n == "avx2-packed-maddubs"),
            "no AVX2 packed column in {names:?}"
        );
    }
    for k in kernels {
        assert_eq!(k["type"], "Q4_0");
        assert!(k["gemv_gb_s"].as_f64().unwrap() > 0.0);
        assert!(k["gemm_gop_s"].as_f64().unwrap() > 0.0);
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["bench", "--kernels", "--types", "q9_9"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn max_memory_refuses_a_context_that_does_not_fit() {
    let m = fixture("phi3-tiny-q4_0.gguf");
    let m = m.to_str().unwrap();
    let args = [
        "bench", "-m", m, "-p", "64", "-n", "0", "-r", "1", "-t", "1",
    ];
    let run = |limit: &str| {
        let mut a = args.to_vec();
        a.extend(["--json", "--max-memory", limit]);
        phi(&a)
    };
    let small = run("4K");
    assert_eq!(small.status.code(), Some(1));
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(
        err.contains("bytes") && err.contains("-c") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(json_lines(&run("1G")).len(), 1);
    assert_eq!(run("4X").status.code(), Some(2)); // clap's usage error
}

#[test]
fn parallel_prints_one_line_per_thread_count_and_c() {
    let m = fixture("phi3-tiny-q4_0.gguf");
    let out = phi(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "--parallel",
        "1,3",
        "--parallel-prompt",
        "5",
        "-n",
        "4",
        "-t",
        "1,2",
        "-r",
        "2",
        "--json",
    ]);
    let lines = json_lines(&out);
    let seen: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["threads"].as_u64().unwrap(),
                l["parallel"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(1, 1), (1, 3), (2, 1), (2, 3)], "{lines:?}");
    for l in &lines {
        assert_eq!(l["test"], format!("batch{}", l["parallel"]));
        assert_eq!(l["runs"].as_array().unwrap().len(), 2);
        assert!(l["tokens_per_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["step_ms"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["pp_ms_per_token"].as_f64().unwrap() > 0.0, "{l}");
    }
    // The ratio is against C = 1 of the same thread count.
    assert_eq!(lines[0]["vs_c1"].as_f64(), Some(1.0));
    let r = lines[1]["vs_c1"].as_f64().unwrap();
    let expect =
        lines[1]["tokens_per_s"].as_f64().unwrap() / lines[0]["tokens_per_s"].as_f64().unwrap();
    assert!((r - expect).abs() < 1e-9 * expect, "{r} vs {expect}");

    let bad = phi(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "--parallel",
        "0",
        "-n",
        "2",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--parallel"));
}
