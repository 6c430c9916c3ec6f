//! `phi chat` driven through a pipe: replies appear, and each turn
//! evaluates only its new tokens (the history stays in the KV cache).

use phi::Model;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(rel)
}

fn chat(model: &str, input: &str, extra: &[&str]) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["chat", "-m"])
        .arg(fixture(model))
        .args(["--temp", "0", "-t", "2", "--verbose"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phi chat");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// (new prompt tokens, cache before, cache after prompt, reply tokens, cache at the end) per turn.
fn turns(stderr: &str) -> Vec<[usize; 5]> {
    stderr
        .lines()
        .filter(|l| l.starts_with("[turn "))
        .map(|l| {
            let nums: Vec<usize> = l
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .filter(|s| !s.is_empty() && !s.contains('.'))
                .map(|s| s.parse().unwrap())
                .collect();
            // turn N: prompt P new tokens (cache A -> B) in T ms | reply R tokens, S tok/s | cache C/N
            let reply_at = l.find("| reply ").unwrap();
            let reply: usize = l[reply_at + 8..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let cache_at = l.rfind("| cache ").unwrap();
            let cache: usize = l[cache_at + 8..]
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            [nums[1], nums[2], nums[3], reply, cache]
        })
        .collect()
}

#[test]
fn second_turn_evaluates_only_its_new_tokens() {
    let model_file = "phi3-tiny-q8_0.gguf";
    let (stdout, stderr, ok) = chat(
        model_file,
        "hello there\nhow are you\n/reset\nhello there\n",
        &["-n", "6", "-s", "Be brief."],
    );
    assert!(ok, "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 3, "{stderr}");
    let model = Model::load(fixture(model_file)).unwrap();
    let tok = model.tokenizer();

    // Turn 1: the whole first prompt on an empty cache.
    let first = "<|system|>\nBe brief.<|end|>\n<|user|>\nhello there<|end|>\n<|assistant|>\n";
    let first_ids = tok.encode(first, true, true);
    assert_eq!(t[0][0], first_ids.len());
    assert_eq!((t[0][1], t[0][2]), (0, first_ids.len()));
    assert!(t[0][3] <= 6);
    assert_eq!(t[0][4], first_ids.len() + t[0][3]);

    // Turn 2 starts on the cache turn 1 left and adds only the new turn's tokens.
    let delta = "<|end|>\n<|user|>\nhow are you<|end|>\n<|assistant|>\n";
    let delta_ids = tok.encode(delta, false, true);
    assert_eq!(t[1][1], t[0][4], "turn 2 must continue on turn 1's cache");
    assert_eq!(
        t[1][0],
        delta_ids.len(),
        "turn 2 evaluated more than its new tokens"
    );
    assert!(t[1][0] < t[1][2] / 2);
    assert_eq!(t[1][4], t[1][2] + t[1][3]);

    // After /reset the same first message is evaluated from scratch and,
    // greedy, gives the same reply as the first time.
    assert!(stderr.contains("[conversation reset]"));
    assert_eq!(t[2][..4], t[0][..4]);
    let replies: Vec<&str> = stdout.split_inclusive('\n').collect();
    assert!(replies.len() >= 3, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
}

#[test]
fn full_context_is_reported_and_drop_oldest_recovers() {
    let model_file = "phi3-tiny-q8_0.gguf";
    let input = "one two three four five six seven\n".repeat(4);
    // 64 tokens of context: one exchange (about 45 tokens) fits, two do not.
    let (_, stderr, ok) = chat(model_file, &input, &["-n", "4", "-c", "64"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("context is full"), "{stderr}");
    assert!(stderr.contains("/reset"), "{stderr}");

    let (_, stderr, ok) = chat(
        model_file,
        &input,
        &["-n", "4", "-c", "64", "--drop-oldest"],
    );
    assert!(ok, "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 4, "{stderr}");
    assert!(stderr.contains("dropped the oldest exchange"), "{stderr}");
    assert!(t.iter().all(|x| x[4] <= 64));
}

/// Ctrl-C (SIGINT) while a reply streams stops that reply, not the program.
#[cfg(unix)]
#[test]
fn sigint_stops_the_reply_and_the_chat_goes_on() {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Duration;

    let mut child = Command::new(env!("CARGO_BIN_EXE_phi"))
        .args(["chat", "-m"])
        .arg(fixture("phi3-tiny-f32.gguf"))
        // No end-of-turn token: the reply would run to the full context.
        .args(["-t", "1", "--verbose", "--ignore-eos", "-c", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phi chat");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(());
        }
        all
    });
    stdin.write_all(b"tell me a long story\n").unwrap();
    stdin.flush().unwrap();
    // The reply is streaming: interrupt it.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("no reply text within a minute");
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    stdin.write_all(b"/exit\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = reader.join();
    assert!(status.success(), "exit {status:?}: {stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 1, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(t[0][3] > 0 && t[0][4] < 4096, "{stderr}");
}

/// Without a system prompt the model's own chat template renders the turns
/// (the fixture has Phi-3's GGUF template); turn 2 still adds only its part.
#[test]
fn the_gguf_chat_template_renders_the_turns() {
    use phi::tokenizer::chat::ChatMessage;
    let model_file = "phi3-tiny-q4_0.gguf";
    let (_, stderr, ok) = chat(model_file, "first message\nsecond one\n", &["-n", "3"]);
    assert!(ok, "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 2, "{stderr}");
    let model = Model::load(fixture(model_file)).unwrap();
    let tok = model.tokenizer();
    assert!(tok.chat_template().is_some());
    let mut msgs = vec![ChatMessage::new("user", "first message")];
    let r1 = tok.apply_chat_template(&msgs, true).unwrap();
    assert_eq!(t[0][0], tok.encode(&r1, true, true).len());
    msgs.push(ChatMessage::new("assistant", "REPLY"));
    msgs.push(ChatMessage::new("user", "second one"));
    let r2 = tok.apply_chat_template(&msgs, true).unwrap();
    let cached = format!("{r1}REPLY");
    assert!(r2.starts_with(&cached), "{r2:?}");
    let delta = tok.encode(&r2[cached.len()..], false, true);
    assert_eq!(t[1][0], delta.len(), "{stderr}");
    assert_eq!(t[1][1], t[0][4]);
}

/// A reply that fills the context is cut with a note; the next turn is
/// refused with the /reset hint, and /reset makes room again.
#[test]
fn a_reply_that_fills_the_context_is_cut() {
    let (_, stderr, ok) = chat(
        "phi3-tiny-q8_0.gguf",
        "hello\nmore\n/reset\nhello\n",
        &["-c", "48", "--ignore-eos", "-n", "-1"],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("the reply was cut"), "{stderr}");
    let t = turns(&stderr);
    // Turns 1 and 3 ran (to a full cache); turn 2 did not fit.
    assert_eq!(t.len(), 2, "{stderr}");
    assert!(t.iter().all(|x| x[4] == 48), "{stderr}");
    assert_eq!(t[0], t[1]);
    assert!(stderr.contains("type /reset"), "{stderr}");
}

#[test]
fn max_memory_refuses_a_context_that_does_not_fit() {
    // The context (4096 tokens of f16 KV) is made before the first line is read.
    let (out, err, ok) = chat("phi3-tiny-q8_0.gguf", "hi\n", &["--max-memory", "64K"]);
    assert!(!ok && out.is_empty(), "{out}\n{err}");
    assert!(err.contains("bytes") && err.contains("-c"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (out, err, ok) = chat(
        "phi3-tiny-q8_0.gguf",
        "hi\n",
        &["-n", "2", "--max-memory", "1G"],
    );
    assert!(ok && !out.is_empty(), "{out}\n{err}");
}
