//! Model references: `-m` takes a path or a Hugging Face reference.
//!
//! * `PATH` — a local GGUF file.
//! * `hf:OWNER/REPO/FILE.gguf` — a file of a Hub repository (`FILE` may hold
//!   folders), optionally `@REVISION` at the end (default `main`).
//! * `hf:OWNER/REPO` — the repository's one obvious GGUF: the only one, or
//!   the only Q4_K_M, or the only Q4_0.
//!
//! Files go to the standard Hugging Face cache, laid out as the Python
//! `huggingface_hub` library does (`models--OWNER--REPO/{blobs,snapshots,refs}`),
//! so other tools share them: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
//! `HF_ENDPOINT` replaces `https://huggingface.co`, the token (`HF_TOKEN`, else
//! the file `HF_TOKEN_PATH` or `$HF_HOME/token`) is sent as a bearer token,
//! and `--offline` or `HF_HUB_OFFLINE=1` never touch the network.
//! Downloads land in `blobs/ETAG.incomplete` first and resume from there.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The model `phi run` / `phi chat` use when no `-m` is given.
pub const DEFAULT_MODEL: &str =
    "hf:microsoft/Phi-3-mini-4k-instruct-gguf/Phi-3-mini-4k-instruct-q4.gguf";

type BoxError = Box<dyn std::error::Error>;

/// A parsed `hf:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfRef {
    /// `OWNER/REPO`.
    pub repo: String,
    /// The file inside the repository; `None` = pick the obvious GGUF.
    pub file: Option<String>,
    pub revision: String,
}

impl HfRef {
    /// Parses `hf:OWNER/REPO[/FILE][@REVISION]`; `None` if `s` is no `hf:` reference.
    pub fn parse(s: &str) -> Option<Result<HfRef, String>> {
        let rest = s.strip_prefix("hf:")?;
        let (body, revision) = match rest.rsplit_once('@') {
            Some((b, r)) if !r.is_empty() && !r.contains('/') => (b, r.to_string()),
            _ => (rest, "main".to_string()),
        };
        let parts: Vec<&str> = body.split('/').collect();
        let bad = |why: &str| {
            Some(Err(format!(
                "`{s}` is not a valid model reference ({why}); expected hf:OWNER/REPO/FILE.gguf or a local path"
            )))
        };
        if parts.len() < 2
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return bad("it needs an owner and a repository, without empty or dot parts");
        }
        let ok = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !ok(parts[0]) || !ok(parts[1]) {
            return bad("owner and repository names use letters, digits, '-', '_' and '.'");
        }
        let file = (parts.len() > 2).then(|| parts[2..].join("/"));
        Some(Ok(HfRef {
            repo: format!("{}/{}", parts[0], parts[1]),
            file,
            revision,
        }))
    }

    fn display(&self) -> String {
        let mut s = format!("hf:{}", self.repo);
        if let Some(f) = &self.file {
            s.push('/');
            s.push_str(f);
        }
        if self.revision != "main" {
            s.push('@');
            s.push_str(&self.revision);
        }
        s
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The Hugging Face hub cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = env_nonempty("HF_HUB_CACHE") {
        return PathBuf::from(d);
    }
    hf_home().join("hub")
}

/// Whether the network is off limits (`HF_HUB_OFFLINE` set to 1/true/yes/on).
pub fn env_offline() -> bool {
    env_nonempty("HF_HUB_OFFLINE")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn endpoint() -> String {
    env_nonempty("HF_ENDPOINT")
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

fn repo_dir(repo: &str) -> PathBuf {
    cache_dir().join(format!("models--{}", repo.replace('/', "--")))
}

/// Turns a `-m` value into a local file: paths are returned as they are,
/// `hf:` references are looked up in the cache and downloaded when missing.
pub fn resolve(reference: &str, offline: bool) -> Result<PathBuf, BoxError> {
    let Some(parsed) = HfRef::parse(reference) else {
        let p = PathBuf::from(reference);
        if !p.exists() {
            return Err(format!(
                "no model file at {reference} (give -m PATH to a .gguf file, or hf:OWNER/REPO/FILE.gguf)"
            )
            .into());
        }
        return Ok(p);
    };
    let r = parsed?;
    let offline = offline || env_offline();
    fetch(&r, offline, false).map_err(|e| {
        format!("{e}; to use a model file you already have, pass -m PATH/TO/MODEL.gguf").into()
    })
}

/// `phi pull`: makes sure the reference is in the cache, printing its path.
pub fn pull(reference: &str, offline: bool) -> Result<PathBuf, BoxError> {
    let r = HfRef::parse(reference).ok_or_else(|| {
        format!("`{reference}` is not an hf: reference (hf:OWNER/REPO/FILE.gguf)")
    })??;
    Ok(fetch(&r, offline || env_offline(), true)?)
}

/// The commit a cached revision points at (a branch's ref file, or the
/// revision itself when it is a commit hash).
fn cached_commit(dir: &Path, revision: &str) -> Option<String> {
    if let Ok(c) = fs::read_to_string(dir.join("refs").join(revision)) {
        let c = c.trim().to_string();
        if !c.is_empty() {
            return Some(c);
        }
    }
    dir.join("snapshots")
        .join(revision)
        .is_dir()
        .then(|| revision.to_string())
}

/// Picks the obvious GGUF from a repository's file list.
fn pick_gguf(repo: &str, files: &[String]) -> Result<String, String> {
    let ggufs: Vec<&String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    if ggufs.len() == 1 {
        return Ok(ggufs[0].clone());
    }
    for tag in ["q4_k_m", "q4_0"] {
        let hits: Vec<&&String> = ggufs
            .iter()
            .filter(|f| f.to_ascii_lowercase().contains(tag))
            .collect();
        if hits.len() == 1 {
            return Ok((*hits[0]).clone());
        }
    }
    if ggufs.is_empty() {
        return Err(format!("hf:{repo} holds no .gguf file"));
    }
    let names: Vec<&str> = ggufs.iter().take(12).map(|s| s.as_str()).collect();
    Err(format!(
        "hf:{repo} holds several GGUF files and none is the obvious choice; name one, e.g. hf:{repo}/{} (files: {})",
        names[0],
        names.join(", ")
    ))
}

/// Files (relative paths) of a cached snapshot.
fn snapshot_files(snap: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(snap, snap, &mut out);
    out.sort();
    out
}

fn agent(redirects: u32) -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(redirects)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("phi.rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `$HF_HOME` (default `~/.cache/huggingface`, or under `$XDG_CACHE_HOME`).
fn hf_home() -> PathBuf {
    if let Some(h) = env_nonempty("HF_HOME") {
        return PathBuf::from(h);
    }
    env_nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env_nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("huggingface")
}

/// The access token as huggingface_hub finds it: `$HF_TOKEN`, else the file
/// `$HF_TOKEN_PATH`, else `$HF_HOME/token` (written by `huggingface-cli login`).
fn token() -> Option<String> {
    if let Some(t) = env_nonempty("HF_TOKEN") {
        return Some(t);
    }
    let path = env_nonempty("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home().join("token"));
    let t = fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty() && !t.contains(char::is_whitespace)).then(|| t.to_string())
}

fn with_auth<B>(req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    match token() {
        Some(t) => req.header("Authorization", format!("Bearer {t}")),
        None => req,
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn status_error(what: &str, status: u16) -> String {
    match status {
        401 | 403 => format!(
            "{what}: access denied (HTTP {status}); the repository may be gated or private: set HF_TOKEN"
        ),
        404 => format!("{what}: not found (HTTP 404)"),
        _ => format!("{what}: HTTP {status}"),
    }
}

/// The repository's file list from the Hub API.
fn list_remote(r: &HfRef) -> Result<Vec<String>, String> {
    let url = format!(
        "{}/api/models/{}/revision/{}",
        endpoint(),
        r.repo,
        r.revision
    );
    let what = format!("cannot list the files of hf:{}", r.repo);
    let resp = with_auth(agent(5).get(&url))
        .call()
        .map_err(|e| format!("{what}: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(status_error(&what, resp.status().as_u16()));
    }
    let v: serde_json::Value = serde_json::from_reader(resp.into_body().into_reader())
        .map_err(|e| format!("{what}: bad answer: {e}"))?;
    Ok(v["siblings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// What the resolve endpoint says about a file.
struct Remote {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the bytes are (the CDN for LFS files).
    url: String,
}

fn head(r: &HfRef, file: &str) -> Result<Remote, String> {
    let mut url = format!("{}/{}/resolve/{}/{}", endpoint(), r.repo, r.revision, file);
    let what = format!("cannot download hf:{}/{file}", r.repo);
    let a = agent(0);
    for _ in 0..5 {
        let resp = with_auth(a.head(&url))
            .call()
            .map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status().as_u16();
        let commit = header(&resp, "x-repo-commit");
        let location = header(&resp, "location");
        let is_redirect = (300..400).contains(&status);
        // Relative redirects (renamed repositories, the Hub's resolve cache)
        // are followed for the metadata, as huggingface_hub does; an absolute
        // one points at the bytes (the CDN) and this response has the headers.
        let relative = location.as_deref().is_some_and(|l| !l.contains("://"));
        if is_redirect && (relative || commit.is_none()) {
            let loc = location.ok_or_else(|| format!("{what}: redirect without a location"))?;
            url = join_url(&url, &loc);
            continue;
        }
        if !(status == 200 || is_redirect) {
            return Err(status_error(&what, status));
        }
        let etag = header(&resp, "x-linked-etag")
            .or_else(|| header(&resp, "etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .ok_or_else(|| format!("{what}: the server sent no usable ETag"))?;
        let commit = commit
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
            .ok_or_else(|| format!("{what}: the server sent no commit hash"))?;
        let size = header(&resp, "x-linked-size")
            .or_else(|| header(&resp, "content-length"))
            .and_then(|s| s.parse().ok());
        let dl = match (is_redirect, location) {
            (true, Some(loc)) => join_url(&url, &loc),
            _ => url.clone(),
        };
        return Ok(Remote {
            commit,
            etag,
            size,
            url: dl,
        });
    }
    Err(format!("{what}: too many redirects"))
}

/// Resolves a `Location` against the URL it came from.
fn join_url(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if loc.starts_with('/') {
        format!("{}{loc}", &base[..host_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= host_end)
            .unwrap_or(host_end);
        format!("{}/{loc}", &base[..dir_end])
    }
}

/// The cached file of `r`, downloading it unless `offline`.
fn fetch(r: &HfRef, offline: bool, verbose: bool) -> Result<PathBuf, String> {
    let dir = repo_dir(&r.repo);
    let name = r.display();
    // Offline, or already cached: no network.
    let cached_file = |file: &str| -> Option<PathBuf> {
        let commit = cached_commit(&dir, &r.revision)?;
        let p = dir.join("snapshots").join(commit).join(file);
        p.is_file().then_some(p)
    };
    let cached_listing = || -> Option<Vec<String>> {
        let commit = cached_commit(&dir, &r.revision)?;
        Some(snapshot_files(&dir.join("snapshots").join(commit)))
    };
    if offline {
        let file = match &r.file {
            Some(f) => f.clone(),
            None => pick_gguf(&r.repo, &cached_listing().unwrap_or_default()).map_err(|e| {
                format!(
                    "{e} (offline: looked only in the cache at {})",
                    dir.display()
                )
            })?,
        };
        return cached_file(&file).ok_or_else(|| {
            format!(
                "{name} is not in the Hugging Face cache ({}) and the network is off (--offline or HF_HUB_OFFLINE)",
                cache_dir().display()
            )
        });
    }
    let file = match &r.file {
        Some(f) => f.clone(),
        None => match list_remote(r) {
            Ok(files) => pick_gguf(&r.repo, &files)?,
            Err(e) => match cached_listing().and_then(|l| pick_gguf(&r.repo, &l).ok()) {
                Some(f) => {
                    eprintln!("warning: {e}; using the cached copy");
                    f
                }
                None => return Err(e),
            },
        },
    };
    let remote = match head(r, &file) {
        Ok(m) => m,
        Err(e) => {
            // No network (or the Hub is down): a cached copy still does.
            if let Some(p) = cached_file(&file) {
                eprintln!("warning: {e}; using the cached copy");
                return Ok(p);
            }
            return Err(e);
        }
    };
    let blobs = dir.join("blobs");
    let snap_dir = dir.join("snapshots").join(&remote.commit);
    let target = snap_dir.join(&file);
    let blob = blobs.join(&remote.etag);
    let io =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    fs::create_dir_all(&blobs).map_err(|e| io("create", &blobs, e))?;
    let blob_ok = fs::metadata(&blob)
        .map(|m| m.is_file() && remote.size.is_none_or(|s| s == m.len()))
        .unwrap_or(false);
    if !blob_ok {
        download(&remote, &blob, &format!("hf:{}/{file}", r.repo))?;
    } else if verbose {
        eprintln!("{name} is already in the cache");
    }
    let parent = target.parent().unwrap_or(&snap_dir).to_path_buf();
    fs::create_dir_all(&parent).map_err(|e| io("create", &parent, e))?;
    if !target.is_file() {
        let _ = fs::remove_file(&target);
        link_blob(&blob, &target, &file).map_err(|e| io("link", &target, e))?;
    }
    let refs = dir.join("refs");
    if remote.commit != r.revision {
        fs::create_dir_all(&refs).map_err(|e| io("create", &refs, e))?;
        let ref_path = refs.join(&r.revision);
        if let Some(p) = ref_path.parent() {
            fs::create_dir_all(p).map_err(|e| io("create", p, e))?;
        }
        fs::write(&ref_path, &remote.commit).map_err(|e| io("write", &ref_path, e))?;
    }
    Ok(target)
}

/// `snapshots/COMMIT/FILE` → `../../blobs/ETAG` (relative, as huggingface_hub
/// makes it); a copy where symbolic links are not available.
fn link_blob(blob: &Path, target: &Path, file: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let depth = file.split('/').count() + 1;
        let mut rel = PathBuf::new();
        for _ in 0..depth {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(rel, target)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        fs::copy(blob, target).map(|_| ())
    }
}

/// Downloads `remote` into `blob`, resuming `blob.incomplete` if present, and
/// retrying (with resume) when the connection breaks.
fn download(remote: &Remote, blob: &Path, what: &str) -> Result<(), String> {
    let partial = PathBuf::from(format!("{}.incomplete", blob.display()));
    let bar = ProgressBar::with_draw_target(remote.size, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    let mut last_err = String::new();
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 * attempt));
        }
        match download_once(remote, &partial, &bar) {
            Ok(()) => {
                bar.finish_and_clear();
                if let Err(e) = verify_sha256(&partial, &remote.etag) {
                    // A corrupt file (e.g. resumed onto bytes of another
                    // version) is thrown away: the next try starts over.
                    let _ = fs::remove_file(&partial);
                    last_err = e;
                    continue;
                }
                fs::rename(&partial, blob)
                    .map_err(|e| format!("cannot move the download to {}: {e}", blob.display()))?;
                eprintln!(
                    "downloaded {what} ({} bytes)",
                    fs::metadata(blob).map(|m| m.len()).unwrap_or(0)
                );
                return Ok(());
            }
            Err((e, retry)) => {
                last_err = e;
                if !retry {
                    break;
                }
            }
        }
    }
    bar.abandon();
    Err(format!(
        "cannot download {what}: {last_err} (the partial download is kept and resumes on the next try)"
    ))
}

/// LFS files' etags are their sha256: check it when the etag looks like one.
fn verify_sha256(path: &Path, etag: &str) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    if etag.len() != 64 || !etag.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    let mut f = fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != etag.to_ascii_lowercase() {
        return Err(format!(
            "the downloaded file's sha256 is {got}, the Hub says {etag}"
        ));
    }
    Ok(())
}

/// One attempt; the error says whether trying again may help.
fn download_once(remote: &Remote, partial: &Path, bar: &ProgressBar) -> Result<(), (String, bool)> {
    let have = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if let Some(size) = remote.size {
        if have > size {
            let _ = fs::remove_file(partial);
            return Err(("the partial download is larger than the file".into(), true));
        }
    }
    let mut req = agent(10).get(&remote.url);
    if remote.url.starts_with(&endpoint()) {
        req = with_auth(req);
    }
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| (e.to_string(), true))?;
    let status = resp.status().as_u16();
    let (mut file, start) = match status {
        206 => {
            let f = fs::OpenOptions::new()
                .append(true)
                .open(partial)
                .map_err(|e| (format!("cannot open {}: {e}", partial.display()), false))?;
            (f, have)
        }
        200 => {
            let f = fs::File::create(partial)
                .map_err(|e| (format!("cannot create {}: {e}", partial.display()), false))?;
            (f, 0)
        }
        416 if remote.size == Some(have) => return Ok(()),
        s => return Err((status_error("the server refused", s), s >= 500 || s == 416)),
    };
    bar.set_position(start);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = start;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.flush();
                return Err((format!("the connection broke at byte {pos}: {e}"), true));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| (format!("cannot write {}: {e}", partial.display()), false))?;
        pos += n as u64;
        bar.set_position(pos);
    }
    file.flush()
        .map_err(|e| (format!("cannot write {}: {e}", partial.display()), false))?;
    if let Some(size) = remote.size {
        if pos != size {
            return Err((
                format!("the connection ended at byte {pos} of {size}"),
                true,
            ));
        }
    }
    Ok(())
}

/// One cached GGUF for `phi list`.
pub struct CachedModel {
    pub reference: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Every GGUF in the cache's snapshots (each file once per repository and path).
pub fn cached_models() -> Vec<CachedModel> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(cache_dir()) else {
        return out;
    };
    let mut repos: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    repos.sort();
    for dir in repos {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(repo) = name.strip_prefix("models--") else {
            continue;
        };
        let repo = repo.replacen("--", "/", 1);
        let Ok(snaps) = fs::read_dir(dir.join("snapshots")) else {
            continue;
        };
        let mut seen = std::collections::BTreeMap::new();
        for s in snaps.flatten() {
            for f in snapshot_files(&s.path()) {
                if f.to_ascii_lowercase().ends_with(".gguf") {
                    let p = s.path().join(&f);
                    if let Ok(m) = fs::metadata(&p) {
                        seen.entry(f).or_insert((p, m.len()));
                    }
                }
            }
        }
        for (f, (path, size)) in seen {
            out.push(CachedModel {
                reference: format!("hf:{repo}/{f}"),
                path,
                size,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(HfRef::parse("model.gguf"), None);
        let r = HfRef::parse("hf:a/b/dir/f.gguf").unwrap().unwrap();
        assert_eq!(r.repo, "a/b");
        assert_eq!(r.file.as_deref(), Some("dir/f.gguf"));
        assert_eq!(r.revision, "main");
        let r = HfRef::parse("hf:a/b@v1.0").unwrap().unwrap();
        assert_eq!(r.file, None);
        assert_eq!(r.revision, "v1.0");
        assert_eq!(r.display(), "hf:a/b@v1.0");
        assert!(HfRef::parse("hf:a").unwrap().is_err());
        assert!(HfRef::parse("hf:a/../x.gguf").unwrap().is_err());
        assert!(HfRef::parse("hf:a b/c").unwrap().is_err());
    }

    #[test]
    fn picks_the_obvious_gguf() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_gguf("a/b", &f(&["README.md", "m-q8_0.gguf"])).unwrap(),
            "m-q8_0.gguf"
        );
        assert_eq!(
            pick_gguf("a/b", &f(&["m-Q4_K_M.gguf", "m-q8_0.gguf", "m-q4_0.gguf"])).unwrap(),
            "m-Q4_K_M.gguf"
        );
        assert_eq!(
            pick_gguf("a/b", &f(&["m-q4_0.gguf", "m-q8_0.gguf"])).unwrap(),
            "m-q4_0.gguf"
        );
        assert!(pick_gguf("a/b", &f(&["m-q5_0.gguf", "m-q8_0.gguf"])).is_err());
        assert!(pick_gguf("a/b", &f(&["README.md"])).is_err());
    }

    #[test]
    fn joins_redirects() {
        assert_eq!(join_url("http://h:1/a/b/c", "/x/y"), "http://h:1/x/y");
        assert_eq!(join_url("http://h:1/a/b/c", "d"), "http://h:1/a/b/d");
        assert_eq!(join_url("http://h/a", "https://cdn/z"), "https://cdn/z");
    }
}
