//! Model references end to end against a small Hub look-alike on 127.0.0.1:
//! the resolve endpoint's redirect and headers, ranged downloads that are
//! cut off and resumed, the Hugging Face cache layout, offline mode.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(rel)
}

/// What the server saw and how it misbehaves.
#[derive(Default)]
struct State {
    /// `METHOD PATH` of every request.
    requests: Mutex<Vec<String>>,
    /// The Range header of every download request ("" when none).
    ranges: Mutex<Vec<String>>,
    /// Authorization headers seen on resolve requests.
    auth: Mutex<Vec<String>>,
    /// Download responses still to cut off after `cut_after` bytes.
    cuts_left: AtomicUsize,
    cut_after: AtomicUsize,
    /// Serve every download with one byte changed.
    corrupt: std::sync::atomic::AtomicBool,
}

struct Hub {
    url: String,
    state: Arc<State>,
}

/// Files in the fake repository `test/tiny`.
fn repo_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("README.md", b"# tiny\n".to_vec()),
        (
            "tiny-Q4_K_M.gguf",
            std::fs::read(fixture("phi3-tiny-q4_k_m.gguf")).unwrap(),
        ),
        (
            "tiny-q8_0.gguf",
            std::fs::read(fixture("phi3-tiny-q8_0.gguf")).unwrap(),
        ),
    ]
}

/// The Hub's etag of an LFS file: its sha256 (of our fixture bytes).
fn etag(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let data = repo_files()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d)
        .unwrap_or_default();
    Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start_hub() -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(State::default());
    let st = Arc::clone(&state);
    let files = Arc::new(repo_files());
    let base = url.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (st, files, base) = (Arc::clone(&st), Arc::clone(&files), base.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &st, &files, &base);
            });
        }
    });
    Hub { url, state }
}

fn serve(
    mut conn: TcpStream,
    st: &State,
    files: &[(&str, Vec<u8>)],
    base: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut range = String::new();
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.to_ascii_lowercase().as_str() {
            "range" => range = v.trim().to_string(),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    st.requests.lock().unwrap().push(format!("{method} {path}"));
    let find = |name: &str| files.iter().find(|(n, _)| *n == name);
    let send = |conn: &mut TcpStream, status: &str, headers: &[String], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        conn.flush()
    };
    if path == "/api/models/test/tiny/revision/main" {
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|(n, _)| serde_json::json!({ "rfilename": n }))
            .collect();
        let body = serde_json::json!({ "id": "test/tiny", "sha": COMMIT, "siblings": siblings })
            .to_string();
        let h = [
            "Content-Type: application/json".to_string(),
            format!("Content-Length: {}", body.len()),
        ];
        return send(&mut conn, "200 OK", &h, body.as_bytes());
    }
    if let Some(name) = path.strip_prefix("/test/tiny/resolve/main/") {
        st.auth.lock().unwrap().push(auth);
        if find(name).is_none() {
            return send(
                &mut conn,
                "404 Not Found",
                &["Content-Length: 0".into()],
                b"",
            );
        }
        // The Hub first sends a relative redirect into its resolve cache.
        let h = [
            format!("Location: /api/resolve-cache/models/test/tiny/{COMMIT}/{name}"),
            format!("X-Repo-Commit: {COMMIT}"),
            "Content-Length: 0".into(),
        ];
        return send(&mut conn, "307 Temporary Redirect", &h, b"");
    }
    let cache_prefix = format!("/api/resolve-cache/models/test/tiny/{COMMIT}/");
    if let Some(name) = path.strip_prefix(cache_prefix.as_str()) {
        let Some((_, data)) = find(name) else {
            return send(
                &mut conn,
                "404 Not Found",
                &["Content-Length: 0".into()],
                b"",
            );
        };
        // What the Hub answers for an LFS file: a redirect to the CDN with the
        // commit, the file's etag and size in X- headers.
        let h = [
            format!("Location: {base}/cdn/{name}"),
            format!("X-Repo-Commit: {COMMIT}"),
            format!("X-Linked-Etag: \"{}\"", etag(name)),
            format!("X-Linked-Size: {}", data.len()),
            "ETag: \"something-else\"".into(),
            "Content-Length: 0".into(),
        ];
        return send(&mut conn, "302 Found", &h, b"");
    }
    if let Some(name) = path.strip_prefix("/cdn/") {
        let Some((_, data)) = find(name) else {
            return send(
                &mut conn,
                "404 Not Found",
                &["Content-Length: 0".into()],
                b"",
            );
        };
        st.ranges.lock().unwrap().push(range.clone());
        let start: usize = range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if start > data.len() {
            return send(
                &mut conn,
                "416 Range Not Satisfiable",
                &["Content-Length: 0".into()],
                b"",
            );
        }
        let body = &data[start..];
        let (status, mut h) = if range.is_empty() {
            ("200 OK", vec![])
        } else {
            (
                "206 Partial Content",
                vec![format!(
                    "Content-Range: bytes {start}-{}/{}",
                    data.len() - 1,
                    data.len()
                )],
            )
        };
        h.push(format!("Content-Length: {}", body.len()));
        if method == "HEAD" {
            return send(&mut conn, status, &h, b"");
        }
        let cut = st
            .cuts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if cut {
            // Promise the whole body, send part of it, hang up.
            let n = st.cut_after.load(Ordering::SeqCst).min(body.len());
            return send(&mut conn, status, &h, &body[..n]);
        }
        if st.corrupt.load(Ordering::SeqCst) && !body.is_empty() {
            let mut bad = body.to_vec();
            bad[body.len() / 2] ^= 0x40;
            return send(&mut conn, status, &h, &bad);
        }
        return send(&mut conn, status, &h, body);
    }
    send(
        &mut conn,
        "404 Not Found",
        &["Content-Length: 0".into()],
        b"",
    )
}

fn temp_home(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phi-hub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn phi(home: &Path, endpoint: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phi"));
    c.args(args)
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("XDG_CACHE_HOME");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().expect("run phi")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn interrupted_download_resumes_into_the_hf_cache_layout() {
    let hub = start_hub();
    let home = temp_home("resume");
    let want = std::fs::read(fixture("phi3-tiny-q8_0.gguf")).unwrap();
    let chunk = 300_000;
    assert!(want.len() > 4 * chunk);
    // Every response is cut after 300 kB: the four attempts of one run get
    // 1.2 MB, each resuming where the previous one stopped.
    hub.state.cut_after.store(chunk, Ordering::SeqCst);
    hub.state.cuts_left.store(1000, Ordering::SeqCst);
    let r = "hf:test/tiny/tiny-q8_0.gguf";
    let out = phi(&home, &hub.url, &["pull", r], &[("HF_TOKEN", "secret")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("resumes"), "{err}");
    let repo = home.join("hub/models--test--tiny");
    let partial = repo.join(format!("blobs/{}.incomplete", etag("tiny-q8_0.gguf")));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 4 * chunk as u64);
    assert_eq!(
        *hub.state.ranges.lock().unwrap(),
        vec![
            String::new(),
            format!("bytes={chunk}-"),
            format!("bytes={}-", 2 * chunk),
            format!("bytes={}-", 3 * chunk)
        ]
    );
    // The token goes to the Hub.
    assert!(hub
        .state
        .auth
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == "Bearer secret"));

    // Without HF_TOKEN, the token file under HF_HOME (huggingface-cli login) is used.
    std::fs::write(home.join("token"), "from-file\n").unwrap();
    hub.state.auth.lock().unwrap().clear();

    // The connection is fine again: the next run resumes and finishes.
    hub.state.cuts_left.store(0, Ordering::SeqCst);
    let out = phi(&home, &hub.url, &["pull", r], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        hub.state.ranges.lock().unwrap().last().unwrap(),
        &format!("bytes={}-", 4 * chunk)
    );
    assert_eq!(
        *hub.state.auth.lock().unwrap(),
        vec!["Bearer from-file".to_string()]
    );
    let path = PathBuf::from(text(&out.stdout).trim());
    assert_eq!(
        path,
        repo.join(format!("snapshots/{COMMIT}/tiny-q8_0.gguf"))
    );
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert!(!partial.exists());
    // huggingface_hub's layout: a relative link into blobs/, refs/main = commit.
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        PathBuf::from(format!("../../blobs/{}", etag("tiny-q8_0.gguf")))
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );

    // Cached: a third pull downloads nothing.
    let n = hub.state.ranges.lock().unwrap().len();
    let out = phi(&home, &hub.url, &["pull", r], &[]);
    assert!(out.status.success());
    assert_eq!(hub.state.ranges.lock().unwrap().len(), n);

    // Offline, the cached file is used without a request.
    let before = hub.state.requests.lock().unwrap().len();
    let out = phi(
        &home,
        &hub.url,
        &[
            "bench", "-m", r, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--json",
        ],
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(hub.state.requests.lock().unwrap().len(), before);
    let line: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["model"], r);
    assert_eq!(line["type"], "Q8_0");
}

#[test]
fn repository_reference_picks_the_q4_k_m_file_and_list_shows_it() {
    let hub = start_hub();
    let home = temp_home("pick");
    let out = phi(
        &home,
        &hub.url,
        &[
            "bench",
            "-m",
            "hf:test/tiny",
            "-p",
            "8",
            "-n",
            "2",
            "-r",
            "1",
            "-t",
            "1",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "Q4_K_M");
    assert!(hub
        .state
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r == "HEAD /test/tiny/resolve/main/tiny-Q4_K_M.gguf"));
    // Nothing was cut: one plain GET.
    assert_eq!(*hub.state.ranges.lock().unwrap(), vec![String::new()]);

    let out = phi(&home, &hub.url, &["list", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["reference"], "hf:test/tiny/tiny-Q4_K_M.gguf");
    assert_eq!(rows[0]["type"], "Q4_K_M");
    assert_eq!(rows[0]["architecture"], "phi3");
    assert_eq!(rows[0]["size_bytes"], 1021344);

    // Offline, the repository reference is resolved from the cache too.
    let out = phi(
        &home,
        "http://127.0.0.1:9",
        &["pull", "--offline", "hf:test/tiny"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().ends_with("tiny-Q4_K_M.gguf"));
}

#[test]
fn unreachable_or_offline_gives_a_one_sentence_error_naming_m_path() {
    let hub = start_hub();
    let home = temp_home("offline");
    let r = "hf:test/tiny/tiny-q8_0.gguf";
    // Offline and not cached: no request at all.
    let out = phi(
        &home,
        &hub.url,
        &["bench", "-m", r, "-r", "1"],
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("-m PATH"), "{err}");
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(hub.state.requests.lock().unwrap().is_empty());

    // Nothing listens on port 9 of the loopback: the connection is refused.
    let out = phi(
        &home,
        "http://127.0.0.1:9",
        &["bench", "-m", r, "-r", "1"],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("-m PATH"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A file the repository does not have.
    let out = phi(
        &home,
        &hub.url,
        &["bench", "-m", "hf:test/tiny/missing.gguf", "-r", "1"],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("404") && err.contains("-m PATH"), "{err}");

    // A plain path that does not exist.
    let out = phi(
        &home,
        &hub.url,
        &["bench", "-m", "/no/such/model.gguf"],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("-m PATH"));
}

#[test]
fn bare_phi_prints_a_quick_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_phi")).output().unwrap();
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("hf:microsoft/Phi-3-mini-4k-instruct-gguf/Phi-3-mini-4k-instruct-q4.gguf"));
    assert!(s.contains("phi chat"));
}

#[test]
fn a_corrupt_download_is_discarded_by_its_sha256() {
    let hub = start_hub();
    let home = temp_home("corrupt");
    hub.state.corrupt.store(true, Ordering::SeqCst);
    let r = "hf:test/tiny/tiny-q8_0.gguf";
    let out = phi(&home, &hub.url, &["pull", r], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("sha256"), "{err}");
    let blobs = home.join("hub/models--test--tiny/blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    // Every try started over (no Range on a discarded file).
    assert!(hub
        .state
        .ranges
        .lock()
        .unwrap()
        .iter()
        .all(|r| r.is_empty()));

    hub.state.corrupt.store(false, Ordering::SeqCst);
    let out = phi(&home, &hub.url, &["pull", r], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = PathBuf::from(text(&out.stdout).trim());
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(fixture("phi3-tiny-q8_0.gguf")).unwrap()
    );
}
