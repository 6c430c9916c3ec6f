//! `phi serve`: an OpenAI-compatible HTTP server over the runtime's batch
//! engine ([`phi::batch`]).
//!
//! Requests are validated on the tokio side ([`api`]), then queued on a
//! bounded channel to the engine thread ([`engine`]), which runs every
//! admitted sequence through one forward pass per step and sends each
//! request its tokens on its own channel. Dropping that channel (the client
//! went away, or a stop string matched) cancels the sequence before the next
//! step.

mod api;
mod engine;
mod routes;

use crate::args::{KvArgs, ModelArgs};
use phi::batch::{Batch, BatchParams};
use phi::{ConstraintVocab, Model};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 = any free port; the bound one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together (slots); `-np N` works too.
    #[arg(
        short = 'n',
        long = "parallel",
        visible_alias = "np",
        default_value_t = 4
    )]
    pub parallel: usize,
    /// Context of each sequence in tokens (0 = the model's, capped at 4096);
    /// the KV cache holds parallel × ctx cells.
    #[arg(short = 'c', long, default_value_t = 0)]
    pub ctx_size: usize,
    /// Worker threads (0 = one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Require `Authorization: Bearer KEY` (not for /health).
    #[arg(long, conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from the first line of this file.
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Allow browser requests from this origin (`*` = any).
    #[arg(long)]
    pub cors_origin: Option<String>,
    /// Model name reported by /v1/models and in responses (default: the file name).
    #[arg(long)]
    pub alias: Option<String>,
    /// Most prompt tokens fed per step, over all waiting prompts.
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Requests that may wait for a slot; more are refused with 503.
    #[arg(long, default_value_t = 64)]
    pub queue_size: usize,
    /// Largest request body (bytes, or with a K/M/G suffix); larger gets 413.
    #[arg(long, value_parser = crate::args::parse_size, default_value = "4M")]
    pub max_body: usize,
    /// Ignore the model's sliding attention window, as llama.cpp does.
    #[arg(long)]
    pub no_swa: bool,
}

/// Counters for /metrics, shared by the handlers and the engine thread.
#[derive(Default)]
pub struct Metrics {
    pub requests: Mutex<std::collections::BTreeMap<u16, u64>>,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub cancelled: AtomicU64,
    /// Microseconds the engine spent in forward passes.
    pub busy_micros: AtomicU64,
    pub active: AtomicUsize,
    pub queued: AtomicUsize,
    pub kv_cells_used: AtomicUsize,
    pub shutdown: AtomicBool,
}

/// What the model's loading thread hands the handlers once it is done.
pub struct Loaded {
    pub model: Arc<Model>,
    pub queue: mpsc::Sender<engine::Job>,
    pub n_ctx: usize,
    pub n_seq: usize,
    /// The vocabulary for structured output, built once at load (or why it
    /// cannot be).
    pub constraint_vocab: Result<Arc<ConstraintVocab>, String>,
}

/// Shared by every handler.
pub struct State {
    pub loaded: OnceLock<Loaded>,
    pub metrics: Arc<Metrics>,
    pub model_name: String,
    pub api_key: Option<String>,
    pub next_id: AtomicU64,
}

pub fn run(args: Args) -> crate::CliResult {
    let api_key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read --api-key-file {}: {e}", f.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        (None, None) => None,
    };
    if api_key.as_deref() == Some("") {
        return Err("the API key is empty".into());
    }
    if args.parallel == 0 || args.queue_size == 0 || args.prefill_chunk == 0 {
        return Err("--parallel, --queue-size and --prefill-chunk must be at least 1".into());
    }
    let path = args.model.path()?;
    let model_name = args.alias.clone().unwrap_or_else(|| {
        path.file_name().map_or_else(
            || args.model.reference().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let state = Arc::new(State {
        loaded: OnceLock::new(),
        metrics: Arc::new(Metrics::default()),
        model_name,
        api_key,
        next_id: AtomicU64::new(1),
    });
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", args.host, args.port).parse())
        .map_err(|_| format!("`{}` is not an IP address", args.host))?;
    runtime.block_on(serve(args, path, addr, state))
}

async fn serve(
    args: Args,
    path: std::path::PathBuf,
    addr: SocketAddr,
    state: Arc<State>,
) -> crate::CliResult {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = routes::router(
        Arc::clone(&state),
        args.cors_origin.as_deref(),
        args.max_body,
    )?;

    // Load the model and start the engine while /health answers 503.
    let params = BatchParams {
        n_seq: args.parallel,
        n_ctx: args.ctx_size,
        prefill_chunk: args.prefill_chunk,
        n_threads: args.threads,
        kv_type: args.kv.kv_type.map(Into::into).unwrap_or_default(),
        sliding_window: !args.no_swa,
        max_memory: args.kv.max_memory.unwrap_or(0),
    };
    let loader_state = Arc::clone(&state);
    let queue_size = args.queue_size;
    let model_args = args.model.clone();
    let loader =
        tokio::task::spawn_blocking(move || -> Result<std::thread::JoinHandle<()>, String> {
            let model = Arc::new(model_args.load(&path).map_err(|e| e.to_string())?);
            // Serve at once; the streamed matrices switch to their packed
            // copies as they are made (same results).
            model.pack_in_background();
            let batch =
                Batch::new(Arc::clone(&model), &params).map_err(|e| match e {
                    phi::PhiError::OutOfMemory { needed, limit, .. } => format!(
                "{} sequences × {} tokens of KV cache and buffers need {needed} bytes, more \
                 than the {limit} bytes available (use a smaller -c or -np, or --max-memory)",
                params.n_seq,
                if params.n_ctx == 0 { model.config().n_ctx_train.min(4096) } else { params.n_ctx },
            ),
                    e => e.to_string(),
                })?;
            let (n_ctx, n_seq) = (batch.n_ctx(), batch.n_seq());
            let constraint_vocab = ConstraintVocab::for_model(&model).map_err(|e| e.to_string());
            let (tx, rx) = mpsc::channel(queue_size);
            let metrics = Arc::clone(&loader_state.metrics);
            let engine = std::thread::Builder::new()
                .name("phi-engine".into())
                .spawn(move || engine::run(batch, rx, metrics))
                .map_err(|e| format!("cannot start the engine thread: {e}"))?;
            let _ = loader_state.loaded.set(Loaded {
                model,
                queue: tx,
                n_ctx,
                n_seq,
                constraint_vocab,
            });
            Ok(engine)
        });

    let server = axum::serve(listener, app).with_graceful_shutdown({
        let state = Arc::clone(&state);
        async move {
            shutdown_signal().await;
            eprintln!("phi serve: stopping (finishing in-flight requests)");
            state.metrics.shutdown.store(true, Ordering::SeqCst);
        }
    });
    let server = tokio::spawn(async move { server.await });
    let engine = match loader.await {
        Ok(Ok(engine)) => engine,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(format!("loading the model failed: {e}").into()),
    };
    if let Some(l) = state.loaded.get() {
        println!(
            "phi serve: {} ready ({} sequences × {} tokens) on http://{bound}/v1",
            state.model_name, l.n_seq, l.n_ctx
        );
        println!("listening on http://{bound}");
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    server
        .await
        .map_err(|e| format!("the server task failed: {e}"))??;
    // The handlers are gone: make sure the engine stops, then wait for it.
    state.metrics.shutdown.store(true, Ordering::SeqCst);
    drop(state);
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .ok();
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
