//! The HTTP routes: OpenAI's completions, chat completions and models,
//! llama-server's tokenize / detokenize, health and Prometheus metrics.

use super::api::{self, ApiError, Settings, StopScan};
use super::engine::{Job, Msg};
use super::{Loaded, State};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State as AxState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use phi::batch::{Finish, TokenLogprobs};
use phi::tokenizer::Utf8Stream;
use phi::{Constraint, ConstraintSpec};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};

type Shared = Arc<State>;

pub fn router(state: Shared, cors_origin: Option<&str>, max_body: usize) -> Result<Router, String> {
    let mut app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_status,
        ))
        .with_state(state);
    if let Some(origin) = cors_origin {
        let allow = if origin == "*" {
            AllowOrigin::any()
        } else {
            let v = HeaderValue::from_str(origin)
                .map_err(|_| format!("--cors-origin `{origin}` is not a valid header value"))?;
            AllowOrigin::exact(v)
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    Ok(app)
}

/// Counts responses by status for /metrics.
async fn count_status(AxState(state): AxState<Shared>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if let Ok(mut m) = state.metrics.requests.lock() {
        *m.entry(resp.status().as_u16()).or_default() += 1;
    }
    resp
}

/// `Authorization: Bearer KEY` on every route but /health when a key is set.
async fn authorize(AxState(state): AxState<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let open = req.uri().path() == "/health" || req.method() == Method::OPTIONS;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !open && given != Some(key.as_str()) {
            let msg = if given.is_none() {
                "missing API key (send `Authorization: Bearer KEY`)"
            } else {
                "invalid API key"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, msg, "invalid_api_key").into_response();
        }
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
        "not_found",
    )
}

fn loaded(state: &State) -> Result<&Loaded, ApiError> {
    if state.metrics.shutdown.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
            "shutting_down",
        ));
    }
    state.loaded.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
            "loading",
        )
    })
}

/// The body, or 413 / 400 in OpenAI's format.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "the request body is too large", "payload_too_large")
        } else {
            ApiError::bad(r.body_text(), None)
        }
    })
}

async fn health(AxState(state): AxState<Shared>) -> Response {
    match loaded(&state) {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn models(AxState(state): AxState<Shared>) -> Response {
    let meta = state.loaded.get().map(
        |l| json!({"n_ctx": l.n_ctx, "n_parallel": l.n_seq, "n_vocab": l.model.config().n_vocab}),
    );
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_name,
            "object": "model",
            "created": now(),
            "owned_by": "phi.rs",
            "meta": meta,
        }],
    }))
    .into_response()
}

async fn metrics(AxState(state): AxState<Shared>) -> Response {
    use std::fmt::Write;
    let m = &state.metrics;
    let mut s = String::new();
    let _ = writeln!(s, "# HELP phi_requests_total HTTP responses by status.");
    let _ = writeln!(s, "# TYPE phi_requests_total counter");
    if let Ok(r) = m.requests.lock() {
        for (status, n) in r.iter() {
            let _ = writeln!(s, "phi_requests_total{{status=\"{status}\"}} {n}");
        }
    }
    let generated = m.generated_tokens.load(Ordering::Relaxed);
    let busy = m.busy_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let counters = [
        (
            "phi_prompt_tokens_total",
            "Prompt tokens admitted.",
            m.prompt_tokens.load(Ordering::Relaxed),
        ),
        (
            "phi_prompt_tokens_cached_total",
            "Prompt tokens reused from the KV cache.",
            m.cached_tokens.load(Ordering::Relaxed),
        ),
        ("phi_generated_tokens_total", "Tokens generated.", generated),
        (
            "phi_requests_cancelled_total",
            "Sequences cancelled by a disconnect or a stop string.",
            m.cancelled.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let cells_total = state.loaded.get().map_or(0, |l| l.n_ctx * l.n_seq);
    let gauges = [
        (
            "phi_tokens_per_second",
            "Generated tokens per second of engine time.",
            if busy > 0.0 {
                generated as f64 / busy
            } else {
                0.0
            },
        ),
        (
            "phi_sequences_active",
            "Sequences being decoded or prefilled.",
            m.active.load(Ordering::Relaxed) as f64,
        ),
        (
            "phi_sequences_queued",
            "Requests waiting for a slot.",
            m.queued.load(Ordering::Relaxed) as f64,
        ),
        (
            "phi_kv_cells_used",
            "KV cells holding tokens.",
            m.kv_cells_used.load(Ordering::Relaxed) as f64,
        ),
        (
            "phi_kv_cells_total",
            "KV cells (parallel x ctx).",
            cells_total as f64,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

async fn tokenize(AxState(state): AxState<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Value, ApiError> {
        let l = loaded(&state)?;
        let v: Value = api::parse(&body(b)?)?;
        let content = v
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad("`content` must be a string", Some("content")))?;
        let add_special = v
            .get("add_special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let parse_special = v
            .get("parse_special")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let tokens = l
            .model
            .tokenizer()
            .encode(content, add_special, parse_special);
        Ok(json!({ "tokens": tokens }))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn detokenize(AxState(state): AxState<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Value, ApiError> {
        let l = loaded(&state)?;
        let v: Value = api::parse(&body(b)?)?;
        let n_vocab = l.model.tokenizer().n_vocab();
        let tokens: Vec<u32> = v
            .get("tokens")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|t| {
                        t.as_u64()
                            .filter(|&t| (t as usize) < n_vocab)
                            .map(|t| t as u32)
                    })
                    .collect()
            })
            .ok_or_else(|| {
                ApiError::bad(
                    format!("`tokens` must be an array of token ids below {n_vocab}"),
                    Some("tokens"),
                )
            })?;
        Ok(json!({ "content": l.model.tokenizer().detokenize(&tokens, false, false) }))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which endpoint a generation answers.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

/// One generation in flight: the engine's channel plus the text state.
struct Generation {
    kind: Kind,
    rx: mpsc::UnboundedReceiver<Msg>,
    model: Arc<phi::Model>,
    utf8: Utf8Stream,
    stops: StopScan,
    id: String,
    model_name: String,
    created: u64,
    prompt_tokens: usize,
    cached_tokens: usize,
    completion_tokens: usize,
    logprobs: bool,
}

/// What one message from the engine turned into.
struct Piece {
    text: String,
    logprobs: Vec<Value>,
    finish: Option<&'static str>,
}

impl Generation {
    /// Waits for the next message; None once finished.
    async fn next(&mut self) -> Option<Result<Piece, String>> {
        loop {
            match self.rx.recv().await? {
                Msg::Admitted { cached_tokens } => self.cached_tokens = cached_tokens,
                Msg::Error(e) => return Some(Err(e)),
                Msg::Token { token, logprobs } => {
                    self.completion_tokens += 1;
                    let bytes = self.model.tokenizer().token_to_piece(token, false);
                    let piece = self.utf8.push(&bytes);
                    let text = self.stops.push(&piece);
                    let lp = match (self.logprobs, logprobs) {
                        (true, Some(lp)) => vec![self.logprob_entry(token, &lp)],
                        _ => Vec::new(),
                    };
                    let finish = self.stops.stopped.then_some("stop");
                    if finish.is_some() {
                        // Dropping the channel cancels the sequence.
                        self.rx.close();
                    }
                    return Some(Ok(Piece {
                        text,
                        logprobs: lp,
                        finish,
                    }));
                }
                Msg::Done(f) => {
                    let mut text = self.stops.push(&self.utf8.finish());
                    if !self.stops.stopped {
                        text.push_str(&self.stops.finish());
                    }
                    let finish = match f {
                        Finish::Stop => "stop",
                        Finish::Length | Finish::ContextFull => "length",
                        Finish::ConstraintError => {
                            return Some(Err(
                                "structured output failed: no token can continue the output".into(),
                            ))
                        }
                    };
                    let finish = if self.stops.stopped { "stop" } else { finish };
                    return Some(Ok(Piece {
                        text,
                        logprobs: Vec::new(),
                        finish: Some(finish),
                    }));
                }
            }
        }
    }

    fn piece_text(&self, token: u32) -> String {
        String::from_utf8_lossy(&self.model.tokenizer().token_to_piece(token, false)).into_owned()
    }

    fn logprob_entry(&self, token: u32, lp: &TokenLogprobs) -> Value {
        let text = self.piece_text(token);
        match self.kind {
            Kind::Chat => json!({
                "token": text,
                "logprob": lp.logprob,
                "bytes": text.as_bytes(),
                "top_logprobs": lp.top.iter().map(|&(t, l)| {
                    let s = self.piece_text(t);
                    json!({"token": s, "logprob": l, "bytes": s.as_bytes()})
                }).collect::<Vec<_>>(),
            }),
            Kind::Text => json!({
                "token": text,
                "logprob": lp.logprob,
                "top": lp.top.iter().map(|&(t, l)| (self.piece_text(t), json!(l))).collect::<serde_json::Map<String, Value>>(),
            }),
        }
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }

    /// OpenAI's `logprobs` object for these entries (None when not asked for).
    fn logprobs_value(&self, entries: &[Value]) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.kind {
            Kind::Chat => json!({ "content": entries }),
            Kind::Text => json!({
                "tokens": entries.iter().map(|e| e["token"].clone()).collect::<Vec<_>>(),
                "token_logprobs": entries.iter().map(|e| e["logprob"].clone()).collect::<Vec<_>>(),
                "top_logprobs": entries.iter().map(|e| e["top"].clone()).collect::<Vec<_>>(),
            }),
        }
    }

    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    /// One streamed chunk.
    fn chunk(&self, text: Option<&str>, role: bool, lp: &[Value], finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": self.logprobs_value(lp), "finish_reason": finish})
            }
            Kind::Text => json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": self.logprobs_value(lp), "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model_name, "choices": [choice],
        })
    }
}

/// Validates, tokenizes and queues a generation; waits until it has a slot.
async fn start(
    state: &State,
    kind: Kind,
    prompt: Result<Vec<u32>, ApiError>,
    mut settings: Settings,
    logprobs: bool,
) -> Result<(Generation, Settings), ApiError> {
    let l = loaded(state)?;
    let prompt = prompt?;
    if prompt.is_empty() {
        return Err(ApiError::bad("the prompt has no tokens", Some("prompt")));
    }
    if prompt.len() >= l.n_ctx {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "the prompt has {} tokens, but a sequence holds {} (with room for one generated token)",
                prompt.len(),
                l.n_ctx
            ),
            param: Some(match kind {
                Kind::Chat => "messages",
                Kind::Text => "prompt",
            }),
            code: Some("context_length_exceeded"),
        });
    }
    // More than the context can hold ends with "length" when it is full.
    settings.seq.max_tokens = settings.max_tokens.unwrap_or(l.n_ctx).min(l.n_ctx);
    let constraint = match settings.constraint.take() {
        None => None,
        Some((spec, param)) => Some(compile(l, spec, param).await?),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let prompt_tokens = prompt.len();
    let job = Job {
        prompt,
        params: settings.seq.clone(),
        constraint,
        tx,
    };
    state.metrics.queued.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = l.queue.try_send(job) {
        state.metrics.queued.fetch_sub(1, Ordering::SeqCst);
        let msg = match e {
            mpsc::error::TrySendError::Full(_) => "too many requests are waiting; try again later",
            mpsc::error::TrySendError::Closed(_) => "the server is shutting down",
        };
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            msg,
            "queue_full",
        ));
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut g = Generation {
        kind,
        rx,
        model: Arc::clone(&l.model),
        utf8: Utf8Stream::new(),
        stops: StopScan::new(std::mem::take(&mut settings.stops)),
        id: match kind {
            Kind::Chat => format!("chatcmpl-{id}"),
            Kind::Text => format!("cmpl-{id}"),
        },
        model_name: state.model_name.clone(),
        created: now(),
        prompt_tokens,
        cached_tokens: 0,
        completion_tokens: 0,
        logprobs,
    };
    // The first message says whether the engine took it.
    match g.rx.recv().await {
        Some(Msg::Admitted { cached_tokens }) => g.cached_tokens = cached_tokens,
        Some(Msg::Error(e)) => return Err(ApiError::bad(e, None)),
        _ => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
                "shutting_down",
            ))
        }
    }
    Ok((g, settings))
}

/// Compiles a structured-output constraint off the async threads (a grammar
/// may take a while), so the engine never does; what the engine cannot
/// handle is a 400 naming `param`, before any token.
async fn compile(
    l: &Loaded,
    spec: ConstraintSpec,
    param: &'static str,
) -> Result<Constraint, ApiError> {
    let vocab = l.constraint_vocab.clone().map_err(|e| {
        ApiError::bad(
            format!("structured output is not available for this model: {e}"),
            Some(param),
        )
    })?;
    tokio::task::spawn_blocking(move || Constraint::new(&vocab, &spec))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("compiling the constraint failed: {e}"),
                "engine_error",
            )
        })?
        .map_err(|e| ApiError::bad(e.to_string(), Some(param)))
}

async fn chat(AxState(state): AxState<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    let prepared = (|| {
        let req: api::ChatRequest = api::parse(&body(b)?)?;
        let logprobs = req.logprobs.unwrap_or(false);
        let top = match (logprobs, req.top_logprobs) {
            (true, n) => Some(n.unwrap_or(0) as usize),
            (false, Some(_)) => {
                return Err(ApiError::bad(
                    "`top_logprobs` needs `logprobs: true`",
                    Some("top_logprobs"),
                ))
            }
            (false, None) => None,
        };
        let settings = req.sampling.settings(top)?;
        let messages = api::chat_messages(&req.messages)?;
        let l = loaded(&state)?;
        let tok = l.model.tokenizer();
        let text = crate::chat::render_prompt(tok, &messages).map_err(|e| {
            ApiError::bad(format!("the chat template failed: {e}"), Some("messages"))
        })?;
        Ok((tok.encode(&text, true, true), settings, logprobs))
    })();
    respond(&state, Kind::Chat, prepared).await
}

async fn completions(
    AxState(state): AxState<Shared>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| {
        let req: api::CompletionRequest = api::parse(&body(b)?)?;
        let prompt = match req.prompt {
            api::OneOrMany::One(p) => p,
            api::OneOrMany::Many(mut v) if v.len() == 1 => v.remove(0),
            api::OneOrMany::Many(_) => {
                return Err(ApiError::bad(
                    "only one prompt per request is supported",
                    Some("prompt"),
                ))
            }
        };
        let top = req.logprobs.map(|n| n as usize);
        if top.is_some_and(|n| n > 5) {
            return Err(ApiError::bad("`logprobs` is at most 5", Some("logprobs")));
        }
        let settings = req.sampling.settings(top)?;
        let l = loaded(&state)?;
        Ok((
            l.model.tokenizer().encode(&prompt, true, true),
            settings,
            top.is_some(),
        ))
    })();
    respond(&state, Kind::Text, prepared).await
}

async fn respond(
    state: &State,
    kind: Kind,
    prepared: Result<(Vec<u32>, Settings, bool), ApiError>,
) -> Response {
    let (prompt, settings, logprobs) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (g, settings) = match start(state, kind, Ok(prompt), settings, logprobs).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if settings.stream {
        Sse::new(sse_stream(g, settings.include_usage)).into_response()
    } else {
        whole(g).await
    }
}

/// A non-streamed answer: the whole text once generation ends.
async fn whole(mut g: Generation) -> Response {
    let mut text = String::new();
    let mut lps = Vec::new();
    let mut finish = "length";
    while let Some(p) = g.next().await {
        match p {
            Ok(p) => {
                text.push_str(&p.text);
                lps.extend(p.logprobs);
                if let Some(f) = p.finish {
                    finish = f;
                    break;
                }
            }
            Err(e) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e, "engine_error")
                    .into_response()
            }
        }
    }
    let choice = match g.kind {
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": g.logprobs_value(&lps),
            "finish_reason": finish,
        }),
        Kind::Text => json!({
            "index": 0, "text": text, "logprobs": g.logprobs_value(&lps), "finish_reason": finish,
        }),
    };
    Json(json!({
        "id": g.id, "object": g.object(false), "created": g.created, "model": g.model_name,
        "choices": [choice], "usage": g.usage(),
    }))
    .into_response()
}

/// Where a streamed answer is.
enum Phase {
    Start,
    Running,
    Usage,
    Done,
    End,
}

/// Server-sent events: chunks as tokens arrive, a final chunk with the
/// finish reason, optionally usage, then `[DONE]`. Dropping the stream (the
/// client went away) drops the engine channel, which cancels the sequence.
fn sse_stream(
    g: Generation,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold((g, Phase::Start), move |(mut g, phase)| async move {
        let data = |v: Value| SseEvent::default().data(v.to_string());
        match phase {
            Phase::Start if g.kind == Kind::Chat => {
                let first = g.chunk(Some(""), true, &[], None);
                Some((Ok(data(first)), (g, Phase::Running)))
            }
            Phase::Start | Phase::Running => loop {
                match g.next().await {
                    Some(Ok(p)) => {
                        if p.finish.is_none() && p.text.is_empty() && p.logprobs.is_empty() {
                            continue;
                        }
                        let text =
                            (!p.text.is_empty() || g.kind == Kind::Text).then_some(p.text.as_str());
                        let ev = data(g.chunk(text, false, &p.logprobs, p.finish));
                        let next = if p.finish.is_some() {
                            if include_usage {
                                Phase::Usage
                            } else {
                                Phase::Done
                            }
                        } else {
                            Phase::Running
                        };
                        break Some((Ok(ev), (g, next)));
                    }
                    Some(Err(e)) => {
                        let err =
                            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e, "engine_error");
                        break Some((Ok(data(err.body())), (g, Phase::Done)));
                    }
                    None => break Some((Ok(SseEvent::default().data("[DONE]")), (g, Phase::End))),
                }
            },
            Phase::Usage => {
                let v = json!({
                    "id": g.id, "object": g.object(true), "created": g.created,
                    "model": g.model_name, "choices": [], "usage": g.usage(),
                });
                Some((Ok(data(v)), (g, Phase::Done)))
            }
            Phase::Done => Some((Ok(SseEvent::default().data("[DONE]")), (g, Phase::End))),
            Phase::End => None,
        }
    })
}
