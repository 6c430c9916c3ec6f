//! `phi serve` over HTTP on 127.0.0.1 (port 0) with a fixture model: the
//! OpenAI shapes, batching determinism, prefix reuse, cancellation on
//! disconnect, every error status, API keys, CORS, metrics and a graceful stop.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "phi3-tiny-q4_0.gguf";

struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let model = format!(
            "{}/../tests/fixtures/models/{MODEL}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_phi"))
            .args(["serve", "-m", &model, "--port", "0", "-t", "1"])
            .args(if extra.contains(&"-c") {
                &[][..]
            } else {
                &["-c", "256"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("phi serve exited before it was ready")
                .unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.to_string();
            }
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server { child, base, agent }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String, Vec<(String, String)>) {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            "OPTIONS" => {
                let mut r = self.agent.options(&url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            _ => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.send(body.unwrap_or(""))
            }
        };
        let mut resp = resp.unwrap();
        let status = resp.status().as_u16();
        let hdrs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text, hdrs)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t, _) = self.request("POST", path, Some(&body.to_string()), &[]);
        (s, serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (s, t, _) = self.request("GET", path, None, &[]);
        (s, t)
    }

    /// A counter or gauge from /metrics.
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The data lines of a streamed answer.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let (s, t, _) = self.request("POST", path, Some(&body.to_string()), &[]);
        assert_eq!(s, 200, "{t}");
        t.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chat_body(content: &str, max: u32, stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": content}], "max_tokens": max, "temperature": 0, "stream": stream})
}

/// Concatenated text of streamed chunks (chat deltas or completion texts),
/// and the finish reason.
fn streamed_text(lines: &[String]) -> (String, String) {
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    let mut finish = String::new();
    for l in &lines[..lines.len() - 1] {
        let v: Value = serde_json::from_str(l).unwrap();
        for c in v["choices"].as_array().unwrap() {
            if let Some(t) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
    }
    (text, finish)
}

/// Polls `cond` for up to 10 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends a raw HTTP request (no reading), for clients that go away.
fn raw_request(addr: &str, path: &str, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

#[test]
fn stream_and_non_stream_give_the_same_text() {
    let srv = Server::start(&[]);
    assert_eq!(srv.get("/health").0, 200);
    let (s, v) = srv.post("/v1/chat/completions", &chat_body("Hello there", 20, false));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let finish = v["choices"][0]["finish_reason"]
        .as_str()
        .unwrap()
        .to_string();
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    let lines = srv.stream("/v1/chat/completions", &chat_body("Hello there", 20, true));
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&lines), (text, finish));

    // Completions too, with usage at the end of the stream.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0});
    let (s, v) = srv.post("/v1/completions", &body);
    assert_eq!(s, 200);
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    sb["stream_options"] = json!({"include_usage": true});
    let lines = srv.stream("/v1/completions", &sb);
    assert_eq!(streamed_text(&lines).0, text);
    let usage: Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );
}

#[test]
fn eight_concurrent_greedy_requests_each_equal_their_solo_text() {
    let srv = Server::start(&["-np", "8"]);
    let prompts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "Story {i}: the {} went to",
                ["cat", "dog", "sea", "king", "moon", "tree", "ship", "bird"][i]
            )
        })
        .collect();
    let body =
        |p: &str| json!({"prompt": p, "max_tokens": 24, "temperature": 0, "ignore_eos": true});
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| {
            srv.post("/v1/completions", &body(p)).1["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                s.spawn(|| {
                    srv.post("/v1/completions", &body(p)).1["choices"][0]["text"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, solo);
    // Seeded sampling is reproducible under batching too.
    let seeded = |p: &str| json!({"prompt": p, "max_tokens": 16, "temperature": 1.0, "seed": 42});
    let alone = srv.post("/v1/completions", &seeded(&prompts[3])).1;
    let batched: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| s.spawn(|| srv.post("/v1/completions", &seeded(p)).1))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        batched[3]["choices"][0]["text"],
        alone["choices"][0]["text"]
    );
}

#[test]
fn multi_turn_chat_reuses_the_cached_prefix() {
    let srv = Server::start(&["-np", "2"]);
    let mut messages = vec![
        json!({"role": "system", "content": "You are terse."}),
        json!({"role": "user", "content": "Name a colour."}),
    ];
    let (_, v1) = srv.post(
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 8, "temperature": 0}),
    );
    let reply = v1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let p1 = v1["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(v1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    messages.push(json!({"role": "assistant", "content": reply}));
    messages.push(json!({"role": "user", "content": "Another one."}));
    let before = srv.metric("phi_prompt_tokens_cached_total");
    let (_, v2) = srv.post(
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 8, "temperature": 0}),
    );
    let p2 = v2["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    // The whole first turn's prompt comes from the cache; only the rest is evaluated.
    assert!(cached >= p1, "cached {cached} of the first turn's {p1}");
    assert!(cached < p2);
    assert_eq!(
        srv.metric("phi_prompt_tokens_cached_total") - before,
        cached as f64
    );
}

#[test]
fn a_disconnected_client_frees_its_slot() {
    // One slot and a long context, so an abandoned generation would hold the slot for long.
    let srv = Server::start(&["-np", "1", "-c", "32768"]);
    let long = |stream: bool| json!({"prompt": "Once", "max_tokens": 32000, "temperature": 0, "ignore_eos": true, "stream": stream});
    // Streaming: read the first event, then hang up.
    let mut s = raw_request(&srv.addr(), "/v1/completions", &long(true));
    let mut buf = [0u8; 256];
    assert!(s.read(&mut buf).unwrap() > 0);
    drop(s);
    assert!(eventually(
        || srv.metric("phi_requests_cancelled_total") == 1.0
    ));
    assert!(eventually(|| srv.metric("phi_sequences_active") == 0.0));
    // Not streaming: hang up while it generates.
    let s = raw_request(&srv.addr(), "/v1/completions", &long(false));
    assert!(eventually(|| srv.metric("phi_sequences_active") == 1.0));
    drop(s);
    assert!(eventually(
        || srv.metric("phi_requests_cancelled_total") == 2.0
    ));
    // The slot serves the next request.
    let (st, v) = srv.post(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn every_error_status_in_openai_format() {
    let srv = Server::start(&[
        "-np",
        "1",
        "--queue-size",
        "1",
        "--max-body",
        "64K",
        "-c",
        "32768",
    ]);
    let check = |status: u16, body: &str, want: u16, path: &str| {
        assert_eq!(status, want, "{path}: {body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(v["error"]["type"].is_string(), "{body}");
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert!(v["error"].as_object().unwrap().contains_key("code"));
    };
    let post_raw = |body: &[u8]| {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    };
    let bad_bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"[1, 2]".to_vec(),
        br#"{"messages": "hello"}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "temperature": -0.5}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "n": 3}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}"#.to_vec(),
        br#"{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 50}"#.to_vec(),
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
        json!({"messages": [{"role": "user", "content": "hi"}], "stop": vec!["x"; 5000]}).to_string().into_bytes(),
    ];
    for b in &bad_bodies {
        let (s, body) = post_raw(b);
        check(s, &body, 400, &String::from_utf8_lossy(b));
    }
    // A prompt longer than the context.
    let srv_small = Server::start(&["-c", "32"]);
    let (s, v) = srv_small.post(
        "/v1/completions",
        &json!({"prompt": "word ".repeat(100), "max_tokens": 4}),
    );
    check(s, &v.to_string(), 400, "too long");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // Huge max_tokens: served, ending at the context.
    let (s, v) = srv_small.post(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 1u64 << 40, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    drop(srv_small);
    // 404 and 413.
    let (s, body) = srv.get("/v1/nothing");
    check(s, &body, 404, "404");
    let big = json!({"prompt": "a".repeat(100 << 10)}).to_string();
    let (s, body, _) = srv.request("POST", "/v1/completions", Some(&big), &[]);
    check(s, &body, 413, "413");
    // A slow client that never finishes its request does not block others.
    let mut slow = TcpStream::connect(srv.addr()).unwrap();
    write!(
        slow,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    // 503 when the queue is full: one request runs, one waits, the next is refused.
    let long = json!({"prompt": "Once", "max_tokens": 32000, "temperature": 0, "ignore_eos": true, "stream": true});
    let running = raw_request(&srv.addr(), "/v1/completions", &long);
    assert!(eventually(|| srv.metric("phi_sequences_active") == 1.0));
    let waiting = raw_request(&srv.addr(), "/v1/completions", &long);
    assert!(eventually(|| srv.metric("phi_sequences_queued") == 1.0));
    let (s, v) = srv.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 2}));
    check(s, &v.to_string(), 503, "503");
    drop(running);
    drop(waiting);
    drop(slow);
    assert!(eventually(
        || srv.metric("phi_sequences_active") == 0.0 && srv.metric("phi_sequences_queued") == 0.0
    ));
    let (s, _) = srv.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 2}));
    assert_eq!(s, 200);
    let (_, m) = srv.get("/metrics");
    for status in ["200", "400", "404", "413", "503"] {
        assert!(
            m.contains(&format!("phi_requests_total{{status=\"{status}\"}}")),
            "{status}: {m}"
        );
    }
}

#[test]
fn api_key_and_cors_preflight() {
    let dir = std::env::temp_dir().join(format!("phi-serve-key-{}", std::process::id()));
    std::fs::write(&dir, "s3cret\n").unwrap();
    let srv = Server::start(&[
        "--api-key-file",
        dir.to_str().unwrap(),
        "--cors-origin",
        "http://app.example",
    ]);
    std::fs::remove_file(&dir).ok();
    let (s, body, _) = srv.request("GET", "/v1/models", None, &[]);
    assert_eq!(s, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "authentication_error"
    );
    let (s, _, _) = srv.request(
        "GET",
        "/v1/models",
        None,
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(s, 401);
    let (s, body, _) = srv.request(
        "GET",
        "/v1/models",
        None,
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    // /health stays open.
    assert_eq!(srv.request("GET", "/health", None, &[]).0, 200);
    // The browser's preflight needs no key and names the allowed origin.
    let (s, _, h) = srv.request(
        "OPTIONS",
        "/v1/chat/completions",
        None,
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
    );
    assert_eq!(s, 200);
    let allow = h
        .iter()
        .find(|(k, _)| k == "access-control-allow-origin")
        .map(|(_, v)| v.as_str());
    assert_eq!(allow, Some("http://app.example"));
    let (s, _, h) = srv.request(
        "POST",
        "/v1/completions",
        Some(r#"{"prompt": "Hi", "max_tokens": 2}"#),
        &[
            ("Authorization", "Bearer s3cret"),
            ("Origin", "http://app.example"),
        ],
    );
    assert_eq!(s, 200);
    assert!(h
        .iter()
        .any(|(k, v)| k == "access-control-allow-origin" && v == "http://app.example"));
}

#[test]
fn metrics_tokenize_and_stop_strings() {
    let srv = Server::start(&[]);
    let before_gen = srv.metric("phi_generated_tokens_total");
    let before_ok = srv.metric("phi_requests_total{status=\"200\"}");
    let (s, v) = srv.post(
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 6, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(s, 200);
    assert_eq!(srv.metric("phi_generated_tokens_total") - before_gen, 6.0);
    assert!(srv.metric("phi_requests_total{status=\"200\"}") >= before_ok + 1.0);
    assert!(srv.metric("phi_kv_cells_used") > 0.0);
    assert!(srv.metric("phi_tokens_per_second") > 0.0);
    // Tokenize / detokenize round trip.
    let (s, t) = srv.post("/tokenize", &json!({"content": "Hello world"}));
    assert_eq!(s, 200);
    let (s, d) = srv.post("/detokenize", &json!({"tokens": t["tokens"]}));
    assert_eq!(s, 200);
    assert_eq!(d["content"], "Hello world");
    assert_eq!(srv.post("/detokenize", &json!({"tokens": [1, -1]})).0, 400);
    // A stop string cuts the text before it and ends with "stop".
    let text = v["choices"][0]["text"].as_str().unwrap();
    let cut = text.char_indices().nth(3).map(|(i, _)| i);
    if let Some(i) = cut.filter(|&i| i > 0 && !text[..i].trim().is_empty()) {
        let stop = &text[i..];
        let stop: String = stop.chars().take(2).collect();
        let first = text.find(&stop).unwrap();
        for stream in [false, true] {
            let body = json!({"prompt": "Hello", "max_tokens": 6, "temperature": 0, "ignore_eos": true, "stop": [stop], "stream": stream});
            let (got, finish) = if stream {
                streamed_text(&srv.stream("/v1/completions", &body))
            } else {
                let v = srv.post("/v1/completions", &body).1;
                (
                    v["choices"][0]["text"].as_str().unwrap().to_string(),
                    v["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            };
            assert_eq!(got, text[..first]);
            assert_eq!(finish, "stop");
        }
    }
    // Logprobs in chat.
    let (s, v) = srv.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2}),
    );
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len(),
        v["usage"]["completion_tokens"].as_u64().unwrap() as usize
    );
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);
}

#[test]
fn sigterm_ends_streams_and_exits_zero() {
    let mut srv = Server::start(&["-np", "1", "-c", "32768"]);
    let body = json!({"prompt": "Once", "max_tokens": 32000, "temperature": 0, "ignore_eos": true, "stream": true});
    let mut s = raw_request(&srv.addr(), "/v1/completions", &body);
    let mut first = [0u8; 64];
    assert!(s.read(&mut first).unwrap() > 0);
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The stream ends with a finish event and [DONE], then the server exits 0.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("\"finish_reason\":\"length\""),
        "{}",
        &rest[rest.len().saturating_sub(400)..]
    );
    assert!(rest.contains("data: [DONE]"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "phi serve did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// The schema the structured-output tests ask for: small enough that the
/// constraint alone ends it within a few tokens, even on random weights.
fn small_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 999},
            "ok": {"type": "boolean"},
            "c": {"enum": ["red", "green", "blue"]}
        },
        "required": ["n", "ok", "c"],
        "additionalProperties": false
    })
}

#[test]
fn structured_output_json_object_and_json_schema() {
    let srv = Server::start(&["-np", "2"]);
    let schema = small_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let formats = [
        json!({"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}}),
        json!({"type": "json_object"}),
    ];
    for rf in formats {
        let mut body = chat_body("Give me JSON.", 120, false);
        body["response_format"] = rf.clone();
        let (s, v) = srv.post("/v1/chat/completions", &body);
        assert_eq!(s, 200, "{v}");
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
        if rf["type"] == "json_schema" || finish == "stop" {
            // This schema always completes well within the budget.
            assert_eq!(finish, "stop", "{rf}: {text:?}");
            let parsed: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(parsed.is_object(), "{text}");
            assert!(
                rf["type"] == "json_object" || validator.is_valid(&parsed),
                "{text} does not match the schema"
            );
        } else {
            // Any object may run on (a random model loves long keys):
            // then it is cut at max_tokens, an unfinished object.
            assert_eq!(finish, "length", "{rf}");
            assert_eq!(v["usage"]["completion_tokens"], 120, "{v}");
            assert!(text.starts_with('{'), "{text:?}");
            assert!(serde_json::from_str::<Value>(&text).is_err(), "{text:?}");
        }
        // Streamed: the same text at temperature 0.
        body["stream"] = json!(true);
        let want = v["choices"][0]["finish_reason"].as_str().unwrap();
        let (streamed, finish) = streamed_text(&srv.stream("/v1/chat/completions", &body));
        assert_eq!((streamed.as_str(), finish.as_str()), (text.as_str(), want));
    }
    // llama-server's `json_schema` field, on both endpoints, with sampling.
    let body = json!({"prompt": "Data:", "json_schema": small_schema(), "max_tokens": 120,
        "temperature": 1.0, "seed": 5});
    let (s, v) = srv.post("/v1/completions", &body);
    assert_eq!(s, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(
        validator.is_valid(&serde_json::from_str(text).unwrap()),
        "{text}"
    );
    let mut body = chat_body("JSON please", 120, true);
    body["json_schema"] = small_schema();
    let (text, finish) = streamed_text(&srv.stream("/v1/chat/completions", &body));
    assert_eq!(finish, "stop");
    assert!(
        validator.is_valid(&serde_json::from_str(&text).unwrap()),
        "{text}"
    );
    // Cut short by max_tokens: finish reason length.
    let mut body = chat_body("Give me JSON.", 3, false);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "a", "schema": small_schema()}});
    let (s, v) = srv.post("/v1/chat/completions", &body);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
}

#[test]
fn lark_grammar_on_completions() {
    let srv = Server::start(&[]);
    let re = regex::Regex::new(r"^[0-9]{3}-[a-z]{2,4}( ok)?$").unwrap();
    for (seed, stream) in [(1, false), (2, true), (3, false)] {
        let body = json!({"prompt": "Code:", "grammar": "start: /[0-9]{3}-[a-z]{2,4}/ \" ok\"?",
            "max_tokens": 40, "temperature": 1.0, "seed": seed, "stream": stream});
        let (text, finish) = if stream {
            streamed_text(&srv.stream("/v1/completions", &body))
        } else {
            let (s, v) = srv.post("/v1/completions", &body);
            assert_eq!(s, 200, "{v}");
            (
                v["choices"][0]["text"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(finish, "stop", "{text:?}");
        assert!(re.is_match(&text), "{text:?} does not match the grammar");
    }
}

#[test]
fn structured_output_the_engine_cannot_handle_is_a_400() {
    let srv = Server::start(&[]);
    let chat = |rf: Value| {
        let mut b = chat_body("hi", 8, false);
        b["response_format"] = rf;
        b
    };
    let cases = [
        (
            "/v1/chat/completions",
            chat(
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}),
            ),
            "response_format",
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}),
            ),
            "response_format",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"type": "xml"})),
            "response_format",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "json_schema": 5}),
            "json_schema",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "grammar": "start: (("}),
            "grammar",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "grammar": "root ::= \"a\""}),
            "grammar",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "grammar": "start: \"a\"", "json_schema": {}}),
            "grammar",
        ),
    ];
    let generated = srv.metric("phi_generated_tokens_total");
    for (path, body, param) in cases {
        let (s, v) = srv.post(path, &body);
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Refused before any token.
    assert_eq!(srv.metric("phi_generated_tokens_total"), generated);
    // The server keeps serving.
    let (s, _) = srv.post("/v1/chat/completions", &chat_body("hi", 2, false));
    assert_eq!(s, 200);
}
