//! Every `phi` subcommand that reads a model file (`inspect` in text and
//! JSON, `run`, `bench`, `perplexity`, `tokenize`, `quantize`) over the
//! project's malformed / lying files and hostile ones (huge names, terminal
//! escape sequences, control characters, bidi overrides and invalid UTF-8 in
//! names, metadata and token pieces, special-token ids outside the
//! vocabulary). None may panic or hang, and none may copy a control
//! character from the file to the terminal: stderr (and `inspect`'s and
//! `tokenize`'s stdout) hold no control character but `\n`/`\t`, no C1
//! control and no bidi override. (`run`'s stdout is the model's generated
//! text and is not checked.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phi_gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};

/// A run that takes longer than this is a hang (the tiny fixture runs in
/// milliseconds; the margin is for a loaded machine).
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// A change to the good model.
enum Change<'a> {
    /// Set (or add) a metadata key.
    Meta(&'a str, Value),
    /// Add a metadata key with a hostile name.
    ExtraKey(String),
    /// Replace token `id`'s text.
    Token(usize, &'static str),
    /// Rename a tensor.
    Rename(&'a str, String),
    /// Add a small extra tensor with this name (the model still loads).
    ExtraTensor(String),
    Drop(&'a str),
    Reshape(&'a str, Vec<u64>),
    Retype(&'a str, GgmlType),
}

fn rebuild(good: &Gguf, change: &Change<'_>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in good.metadata() {
        let v = match change {
            Change::Meta(mk, mv) if mk == k => mv.clone(),
            Change::Token(id, text) if k == "tokenizer.ggml.tokens" => {
                let Value::Array(ty, mut items) = v.clone() else {
                    unreachable!("the fixture's tokens are an array")
                };
                items[*id] = Value::String((*text).into());
                Value::Array(ty, items)
            }
            _ => v.clone(),
        };
        w.add_metadata(k.clone(), v).unwrap();
    }
    match change {
        Change::Meta(mk, mv) if good.get(mk).is_none() => w.add_metadata(*mk, mv.clone()).unwrap(),
        Change::ExtraKey(k) => w.add_metadata(k.clone(), Value::U32(1)).unwrap(),
        _ => {}
    }
    for t in good.tensors() {
        let name = t.name.as_str();
        let (mut new_name, mut dims, mut ty) = (name.to_owned(), t.dims.clone(), t.ggml_type);
        let mut data = good.tensor(name).unwrap().data.to_vec();
        match change {
            Change::Drop(n) if *n == name => continue,
            Change::Rename(n, to) if *n == name => new_name = to.clone(),
            Change::Reshape(n, d) if *n == name => dims = d.clone(),
            Change::Retype(n, new) if *n == name => ty = *new,
            _ => {}
        }
        let n: u64 = dims.iter().product();
        if let Some(bytes) = ty.bytes_for(n) {
            data.resize(bytes as usize, 0);
        }
        w.add_tensor(new_name, ty, &dims, data).unwrap();
    }
    if let Change::ExtraTensor(name) = change {
        w.add_tensor(name.clone(), GgmlType::F32, &[4], vec![0u8; 16])
            .unwrap();
    }
    w.to_bytes().unwrap()
}

/// Replaces the bytes of `marker` (a string written into the file) with
/// `with`, same length.
fn patch(mut bytes: Vec<u8>, marker: &[u8], with: &[u8]) -> Vec<u8> {
    assert_eq!(marker.len(), with.len());
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in the file");
    bytes[at..at + marker.len()].copy_from_slice(with);
    bytes
}

const ESC: &str = "\x1b[31mred\x1b[0m\x1b]0;title\x07\x1b[2J\r\n\u{9b}1m\u{202e}rev\u{2028}";

/// The hostile and malformed files, by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let good_bytes = std::fs::read(repo("tests/fixtures/models/phi3-tiny-q4_0.gguf")).unwrap();
    let good = Gguf::from_bytes(good_bytes.clone()).unwrap();
    let n_vocab = good.get_array("tokenizer.ggml.tokens").unwrap().len() as u32;
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let s = |t: &str| Value::String(t.into());

    let mut changes: Vec<(&str, Change)> = vec![
        // Names, keys, values and pieces nobody should print raw.
        ("name-esc", Change::Meta("general.name", s(ESC))),
        (
            "name-1mb",
            Change::Meta("general.name", s(&long('n', 1 << 20))),
        ),
        ("arch-esc", Change::Meta("general.architecture", s(ESC))),
        (
            "tok-model-esc",
            Change::Meta("tokenizer.ggml.model", s(ESC)),
        ),
        ("key-esc", Change::ExtraKey(format!("general.{ESC}"))),
        ("key-100k", Change::ExtraKey(long('k', 100_000))),
        (
            "strings-esc",
            Change::Meta(
                "general.tags",
                Value::Array(ValueType::String, vec![s(ESC), s(&long('\u{1b}', 5000))]),
            ),
        ),
        (
            "template-esc",
            Change::Meta(
                "tokenizer.chat_template",
                s(&format!("{ESC}{{{{ bos_token }}}}")),
            ),
        ),
        (
            "template-raises-esc",
            Change::Meta(
                "tokenizer.chat_template",
                s("{{ raise_exception('\x1b[2J\x1b]0;pwned\x07 gone') }}"),
            ),
        ),
        (
            "template-syntax-esc",
            Change::Meta("tokenizer.chat_template", s("{% \x1b[31m %}")),
        ),
        (
            "template-1mb",
            Change::Meta("tokenizer.chat_template", s(&long('t', 1 << 20))),
        ),
        ("piece-esc", Change::Token(300, "\x1b[2J\x1b]0;pwned\x07")),
        ("piece-c1", Change::Token(301, "\u{9b}31m\u{202e}")),
        ("piece-bos-esc", Change::Token(1, "\x1b[5m<s>")),
        ("tensor-100k", Change::ExtraTensor(long('x', 100_000))),
        ("tensor-esc", Change::ExtraTensor(format!("t.{ESC}"))),
        (
            "tensor-renamed-100k",
            Change::Rename("token_embd.weight", long('e', 100_000)),
        ),
        // Lying special-token ids.
        (
            "bos-past-vocab",
            Change::Meta("tokenizer.ggml.bos_token_id", Value::U32(n_vocab)),
        ),
        (
            "eos-huge",
            Change::Meta("tokenizer.ggml.eos_token_id", Value::U32(u32::MAX)),
        ),
        (
            "bos-negative",
            Change::Meta("tokenizer.ggml.bos_token_id", Value::I32(-1)),
        ),
        (
            "eot-past-vocab",
            Change::Meta("tokenizer.ggml.eot_token_id", Value::U32(n_vocab + 7)),
        ),
        (
            "pad-past-vocab",
            Change::Meta("tokenizer.ggml.padding_token_id", Value::U64(1 << 40)),
        ),
        (
            "unk-past-vocab",
            Change::Meta("tokenizer.ggml.unknown_token_id", Value::U32(n_vocab)),
        ),
        (
            "sep-past-vocab",
            Change::Meta("tokenizer.ggml.seperator_token_id", Value::U32(n_vocab)),
        ),
        (
            "prefix-past-vocab",
            Change::Meta("tokenizer.ggml.prefix_token_id", Value::U32(n_vocab)),
        ),
        (
            "bos-is-a-string",
            Change::Meta("tokenizer.ggml.bos_token_id", s(ESC)),
        ),
        // Lying structure (as in runtime/tests/malformed_models.rs).
        ("no-embedding", Change::Drop("token_embd.weight")),
        ("no-output-norm", Change::Drop("output_norm.weight")),
        (
            "qkv-reshaped",
            Change::Reshape("blk.0.attn_qkv.weight", vec![256, 7]),
        ),
        (
            "ffn-retyped",
            Change::Retype("blk.1.ffn_down.weight", GgmlType::I32),
        ),
        (
            "block-count-huge",
            Change::Meta("phi3.block_count", Value::U32(1 << 24)),
        ),
        (
            "heads-zero",
            Change::Meta("phi3.attention.head_count", Value::U32(0)),
        ),
        (
            "embedding-lies",
            Change::Meta("phi3.embedding_length", Value::U32(7)),
        ),
        (
            "context-zero",
            Change::Meta("phi3.context_length", Value::U32(0)),
        ),
        (
            "rope-nan",
            Change::Meta("phi3.rope.freq_base", Value::F32(f32::NAN)),
        ),
        (
            "vocab-empty",
            Change::Meta(
                "tokenizer.ggml.tokens",
                Value::Array(ValueType::String, vec![]),
            ),
        ),
    ];
    // Every tensor missing, mis-shaped and of a type the kernels cannot run
    // in turn, and lying hyper-parameters (runtime/tests/malformed_models.rs).
    let mut structural: Vec<(String, Change<'_>)> = Vec::new();
    for t in good.tensors() {
        let name = t.name.as_str();
        let mut dims = t.dims.clone();
        dims[0] += t.ggml_type.block_size() as u64; // one block more per row
        structural.push((format!("drop-{name}"), Change::Drop(name)));
        structural.push((format!("reshape-{name}"), Change::Reshape(name, dims)));
        structural.push((
            format!("retype-{name}"),
            Change::Retype(name, GgmlType::I32),
        ));
    }
    let hparam_keys: Vec<String> = [
        "embedding_length",
        "block_count",
        "attention.head_count",
        "attention.head_count_kv",
        "feed_forward_length",
        "context_length",
        "rope.dimension_count",
    ]
    .iter()
    .map(|k| format!("phi3.{k}"))
    .collect();
    for key in &hparam_keys {
        for v in [0u64, 1 << 40] {
            structural.push((format!("{key}-{v}"), Change::Meta(key, Value::U64(v))));
        }
    }
    let mut files: Vec<(String, Vec<u8>)> = changes
        .drain(..)
        .map(|(name, change)| (name.to_owned(), rebuild(&good, &change)))
        .chain(
            structural
                .iter()
                .map(|(name, change)| (name.clone(), rebuild(&good, change))),
        )
        .collect();

    // Invalid UTF-8 where the format wants text: in a value (decoded
    // lossily), in a key and in a tensor name (refused).
    let marked = rebuild(&good, &Change::Meta("general.name", s("MARKER-VALUE")));
    files.push((
        "value-bad-utf8".into(),
        patch(marked, b"MARKER-VALUE", b"\xff\xfe\x1b[2J\xc3(\x80abc"),
    ));
    let marked = rebuild(&good, &Change::ExtraKey("MARKER.KEY".into()));
    files.push((
        "key-bad-utf8".into(),
        patch(marked, b"MARKER.KEY", b"\xff\x1b[2J\xc3(\x80!!"),
    ));
    let marked = rebuild(&good, &Change::ExtraTensor("MARKER.TENSOR".into()));
    files.push((
        "tensor-bad-utf8".into(),
        patch(marked, b"MARKER.TENSOR", b"\xff\x1b[2J\xc3(\x80\xfe\xfdxyz"),
    ));

    // The byte-level corpus of gguf/tests/malformed.rs, sampled: truncated
    // and corrupted copies of a valid file, and other defects.
    let len = good_bytes.len();
    let cuts = [0, 3, 4, 8, 16, 23, 24, 100, 1000].into_iter();
    for cut in cuts.chain((1..16).map(|i| len * i / 16)).chain([len - 1]) {
        files.push((format!("truncated-{cut}"), good_bytes[..cut].to_vec()));
    }
    let mut v1 = good_bytes[..64].to_vec();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    files.push(("version-1".into(), v1));
    let mut huge_count = good_bytes.clone();
    huge_count[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes()); // tensor count
    files.push(("tensor-count-2^60".into(), huge_count));
    let mut huge_kv = good_bytes.clone();
    huge_kv[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    files.push(("metadata-count-max".into(), huge_kv));
    files.push(("not-gguf".into(), b"hello, world\x1b[2J".to_vec()));
    files.push(("esc-only".into(), b"\x1b]0;pwned\x07\x1b[2J".to_vec()));

    // The fuzzers' regression inputs.
    for dir in ["gguf/tests/fuzz_regressions"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            files.push((format!("fuzz-{name}"), std::fs::read(&p).unwrap()));
        }
    }
    files
}

/// A character `show` would have escaped: the output leaked it raw.
fn raw_control(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    })
}

struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `phi args`, killing it after [`TIMEOUT`].
fn phi(args: &[&std::ffi::OsStr], what: &str) -> Outcome {
    let dir = std::env::temp_dir().join(format!("phi-hostile-{}", std::process::id()));
    let out_path = dir.join(format!("{what}.stdout"));
    let err_path = dir.join(format!("{what}.stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run phi");
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let o = Outcome {
        code: status.code(),
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    o
}

fn check(o: &Outcome, what: &str, stdout_is_ours: bool) {
    assert!(o.code.is_some(), "{what}: killed by a signal\n{}", o.stderr);
    assert_ne!(o.code, Some(101), "{what}: panicked\n{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{what}: {}", o.stderr);
    if let Some(c) = raw_control(&o.stderr) {
        panic!("{what}: raw {c:?} on stderr: {:?}", o.stderr);
    }
    if o.code == Some(1) {
        assert!(o.stderr.contains("error: "), "{what}: {}", o.stderr);
    }
    if stdout_is_ours {
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(c) = raw_control(&text) {
            let at = text.find(c).unwrap_or(0);
            let ctx: String = text[at.saturating_sub(80)..].chars().take(160).collect();
            panic!("{what}: raw {c:?} on stdout near {ctx:?}");
        }
    }
}

fn run_all(path: &Path, name: &str, text_file: &Path, out_dir: &Path) -> Vec<(String, Outcome)> {
    let p = path.as_os_str();
    let out_gguf = out_dir.join(format!("{name}.q8_0.gguf"));
    let runs: Vec<(&str, Vec<&std::ffi::OsStr>, bool)> = vec![
        (
            "inspect",
            vec!["inspect".as_ref(), "--metadata".as_ref(), p],
            true,
        ),
        (
            "inspect-json",
            vec![
                "inspect".as_ref(),
                "--json".as_ref(),
                "--metadata".as_ref(),
                p,
            ],
            true,
        ),
        (
            "run",
            [
                "run", "-p", "hi there", "-n", "4", "--temp", "0", "-c", "64", "-t", "1", "-m",
            ]
            .iter()
            .map(|a| a.as_ref())
            .chain([p])
            .collect(),
            false,
        ),
        (
            "bench",
            ["bench", "-p", "8", "-n", "2", "-r", "1", "-t", "1", "-m"]
                .iter()
                .map(|a| a.as_ref())
                .chain([p])
                .collect(),
            true,
        ),
        (
            "perplexity",
            ["perplexity", "-c", "16", "-t", "1", "--chunks", "1", "-f"]
                .iter()
                .map(|a| a.as_ref())
                .chain([text_file.as_os_str(), "-m".as_ref(), p])
                .collect(),
            true,
        ),
        (
            "tokenize",
            vec![
                "tokenize".as_ref(),
                "--parse-special".as_ref(),
                "-m".as_ref(),
                p,
                "hi <s>".as_ref(),
            ],
            true,
        ),
        (
            "quantize",
            vec![
                "quantize".as_ref(),
                "--allow-requantize".as_ref(),
                "-t".as_ref(),
                "1".as_ref(),
                p,
                out_gguf.as_os_str(),
                "q8_0".as_ref(),
            ],
            true,
        ),
    ];
    let mut outcomes = Vec::new();
    for (cmd, args, ours) in runs {
        let what = format!("{cmd}-{name}");
        let o = phi(&args, &what);
        check(&o, &what, ours);
        outcomes.push((cmd.to_owned(), o));
    }
    let _ = std::fs::remove_file(out_gguf);
    outcomes
}

#[test]
fn no_subcommand_panics_hangs_or_leaks_control_characters() {
    let dir = std::env::temp_dir().join(format!("phi-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(8),
    )
    .unwrap();
    let t0 = Instant::now();
    let files = corpus();
    let n_files = files.len();
    // Two files at a time: the runs are short and mostly process start-up.
    let files = std::sync::Mutex::new(files);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some((name, bytes)) = files.lock().unwrap().pop() else {
                    return;
                };
                let path = dir.join(format!("{name}.gguf"));
                std::fs::write(&path, &bytes).unwrap();
                let outcomes = run_all(&path, &name, &text, &dir);
                let _ = std::fs::remove_file(&path);
                results.lock().unwrap().push((name, outcomes));
            });
        }
    });
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), n_files, "a worker failed");
    let get = |file: &str, cmd: &str| -> &Outcome {
        let (_, outcomes) = results.iter().find(|(n, _)| n == file).unwrap();
        &outcomes.iter().find(|(c, _)| c == cmd).unwrap().1
    };

    // Files that are valid GGUF are shown by inspect, whatever their strings.
    for file in [
        "name-esc",
        "name-1mb",
        "arch-esc",
        "key-esc",
        "key-100k",
        "strings-esc",
        "template-1mb",
        "piece-esc",
        "tensor-100k",
        "tensor-esc",
        "tensor-renamed-100k",
        "bos-past-vocab",
        "value-bad-utf8",
    ] {
        for cmd in ["inspect", "inspect-json"] {
            let o = get(file, cmd);
            assert_eq!(o.code, Some(0), "{cmd} {file}: {}", o.stderr);
        }
    }
    let shown = String::from_utf8_lossy(&get("tensor-100k", "inspect").stdout).into_owned();
    assert!(shown.contains("...(100000 bytes)"), "{shown}");
    let shown = String::from_utf8_lossy(&get("name-esc", "inspect").stdout).into_owned();
    assert!(shown.contains("\\x1b[31mred"), "{shown}");

    // Models with extra hostile tensors or strings still load and run.
    for file in [
        "name-esc",
        "tensor-100k",
        "tensor-esc",
        "piece-esc",
        "piece-c1",
        "strings-esc",
    ] {
        for cmd in ["run", "bench", "tokenize"] {
            let o = get(file, cmd);
            assert_eq!(o.code, Some(0), "{cmd} {file}: {}", o.stderr);
        }
    }

    // Special ids outside the vocabulary are refused, naming the key.
    for (file, key) in [
        ("bos-past-vocab", "tokenizer.ggml.bos_token_id"),
        ("eos-huge", "tokenizer.ggml.eos_token_id"),
        ("bos-negative", "tokenizer.ggml.bos_token_id"),
        ("eot-past-vocab", "tokenizer.ggml.eot_token_id"),
        ("pad-past-vocab", "tokenizer.ggml.padding_token_id"),
        ("unk-past-vocab", "tokenizer.ggml.unknown_token_id"),
        ("sep-past-vocab", "tokenizer.ggml.seperator_token_id"),
        ("prefix-past-vocab", "tokenizer.ggml.prefix_token_id"),
    ] {
        for cmd in ["run", "bench", "perplexity", "tokenize"] {
            let o = get(file, cmd);
            assert_eq!(o.code, Some(1), "{cmd} {file}: {}", o.stderr);
            assert!(o.stderr.contains(key), "{cmd} {file}: {}", o.stderr);
            assert!(
                o.stderr.contains("512 tokens"),
                "{cmd} {file}: {}",
                o.stderr
            );
        }
    }
    // Mis-shaped and mis-typed tensors are refused, naming the tensor.
    let mut structural = 0;
    for (file, _) in results.iter().filter(|(n, _)| n.starts_with("re")) {
        let Some(tensor) = file
            .strip_prefix("reshape-")
            .or(file.strip_prefix("retype-"))
        else {
            continue;
        };
        let o = get(file, "run");
        assert_eq!(o.code, Some(1), "run {file}: {}", o.stderr);
        assert!(o.stderr.contains(tensor), "run {file}: {}", o.stderr);
        structural += 1;
    }
    assert_eq!(structural, 30, "15 tensors x (reshape, retype)");
    eprintln!(
        "{n_files} files x 7 runs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
