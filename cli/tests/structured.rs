//! `phi run --json / --json-schema / --regex / --grammar` on the random-weight
//! fixture model: the constraint alone makes the text match.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/phi3-tiny-q4_0.gguf")
}

fn phi_run(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["run", "-t", "1", "--seed", "7", "-p", "Give me JSON", "-m"])
        .arg(model())
        .args(extra)
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("phi-structured-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

const SCHEMA: &str = r#"{"type": "object",
  "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9},
                 "tag": {"enum": ["a", "b"]},
                 "xs": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
  "required": ["n", "tag", "xs"], "additionalProperties": false}"#;

fn check_schema_output(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let n = v["n"].as_i64().unwrap();
    assert!((3..=9).contains(&n), "{text}");
    assert!(v["tag"] == "a" || v["tag"] == "b", "{text}");
    assert!(
        v["xs"].as_array().unwrap().iter().all(Value::is_boolean),
        "{text}"
    );
    assert_eq!(v.as_object().unwrap().len(), 3, "{text}");
}

#[test]
fn json_schema_inline_and_from_a_file() {
    let out = phi_run(&["-n", "64", "--json-schema", SCHEMA]);
    check_schema_output(&stdout_ok(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("masks"));
    let f = temp_file("schema.json", SCHEMA);
    let out = phi_run(&["-n", "64", "-q", "--json-schema", f.to_str().unwrap()]);
    check_schema_output(&stdout_ok(&out));
    assert!(out.stderr.is_empty());
    std::fs::remove_file(f).ok();
}

#[test]
fn regex_and_grammar() {
    let text = stdout_ok(&phi_run(&[
        "-n",
        "32",
        "--regex",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
    ]));
    let b = text.as_bytes();
    assert_eq!(b.len(), 10, "{text:?}");
    assert!(
        b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 {
            *c == b'-'
        } else {
            c.is_ascii_digit()
        }),
        "{text:?}"
    );

    let g = temp_file(
        "g.lark",
        "start: (\"yes\" | \"no\") \", \" NUM\nNUM: /[1-9][0-9]?/\n",
    );
    let text = stdout_ok(&phi_run(&["-n", "32", "--grammar", g.to_str().unwrap()]));
    let (word, num) = text.split_once(", ").unwrap_or_else(|| panic!("{text:?}"));
    assert!(word == "yes" || word == "no", "{text:?}");
    assert!(
        num.parse::<u32>().is_ok_and(|n| (1..100).contains(&n)),
        "{text:?}"
    );
    std::fs::remove_file(g).ok();
}

#[test]
fn any_json_object_or_length() {
    let out = phi_run(&["-n", "48", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    assert!(text.starts_with('{'), "{text:?}");
    if out.status.success() {
        assert!(serde_json::from_str::<Value>(&text).unwrap().is_object());
    } else {
        assert!(String::from_utf8_lossy(&out.stderr).contains("finish reason: length"));
    }
}

#[test]
fn unsatisfiable_within_n_says_length() {
    let out = phi_run(&[
        "-n",
        "4",
        "--json-schema",
        r#"{"type": "object", "properties": {"s": {"type": "string", "minLength": 30}}, "required": ["s"]}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("finish reason: length") && err.contains("within 4 tokens"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\"s"));
}

#[test]
fn bad_constraints_fail_before_generating() {
    for (flags, reason) in [
        (vec!["--json-schema", r#"{"type": "bogus"}"#], "bogus"),
        (vec!["--json-schema", r#"{"type": "#], "not valid JSON"),
        (
            vec!["--json-schema", "/nonexistent/schema.json"],
            "cannot read",
        ),
        (vec!["--regex", "(unclosed"], "structured output"),
        (vec!["--grammar", "/nonexistent/g.lark"], "cannot read"),
    ] {
        let out = phi_run(&flags);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{flags:?}: {err}");
        assert!(out.stdout.is_empty(), "{flags:?} generated text");
    }
    let out = phi_run(&["--json", "--regex", "a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
