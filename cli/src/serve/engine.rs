//! The engine thread: owns the [`Batch`], takes requests from a bounded
//! queue, steps the batch and sends each request its tokens through its own
//! channel. A request whose receiver is gone (the client disconnected, or a
//! stop string ended it) is cancelled before the next step.

use super::Metrics;
use phi::batch::{Batch, Event, Finish, SeqId, SeqParams, TokenLogprobs};
use phi::Constraint;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One request for the engine.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: SeqParams,
    /// Structured output, compiled on the request side.
    pub constraint: Option<Constraint>,
    pub tx: mpsc::UnboundedSender<Msg>,
}

/// What the engine tells a request.
#[derive(Debug)]
pub enum Msg {
    /// The request got a slot; this many prompt tokens came from the cache.
    Admitted { cached_tokens: usize },
    Token {
        token: u32,
        logprobs: Option<TokenLogprobs>,
    },
    /// The last message.
    Done(Finish),
    /// The request was refused or the engine failed.
    Error(String),
}

/// Runs until the queue's senders are all dropped and nothing is active, or
/// until `metrics.shutdown` is set (then every running request gets a final
/// [`Msg::Done`]).
pub fn run(mut batch: Batch, mut queue: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    let mut senders: HashMap<SeqId, mpsc::UnboundedSender<Msg>> = HashMap::new();
    let mut events: Vec<Event> = Vec::with_capacity(batch.n_seq() * 2);
    let mut open = true;
    loop {
        if metrics.shutdown.load(Ordering::SeqCst) {
            for (id, tx) in senders.drain() {
                batch.cancel(id);
                let _ = tx.send(Msg::Done(Finish::Length));
            }
            break;
        }
        // Admit queued requests while there is a free slot.
        while open && batch.has_free_slot() {
            let job = if senders.is_empty() {
                // Idle: wait for work (or for the server to go away).
                match queue.blocking_recv() {
                    Some(j) => j,
                    None => {
                        open = false;
                        break;
                    }
                }
            } else {
                match queue.try_recv() {
                    Ok(j) => j,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            metrics.queued.fetch_sub(1, Ordering::SeqCst);
            if job.tx.is_closed() || metrics.shutdown.load(Ordering::SeqCst) {
                continue;
            }
            let n_prompt = job.prompt.len();
            match batch.submit_constrained(job.prompt, job.params, job.constraint) {
                Ok(a) => {
                    metrics
                        .prompt_tokens
                        .fetch_add(n_prompt as u64, Ordering::Relaxed);
                    metrics
                        .cached_tokens
                        .fetch_add(a.cached_tokens as u64, Ordering::Relaxed);
                    let _ = job.tx.send(Msg::Admitted {
                        cached_tokens: a.cached_tokens,
                    });
                    senders.insert(a.id, job.tx);
                }
                Err(e) => {
                    let _ = job.tx.send(Msg::Error(e.to_string()));
                }
            }
        }
        if !open && senders.is_empty() {
            break;
        }
        // Requests whose receiver is gone leave before the pass.
        senders.retain(|&id, tx| {
            let alive = !tx.is_closed();
            if !alive {
                batch.cancel(id);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            alive
        });
        metrics.active.store(senders.len(), Ordering::Relaxed);
        if senders.is_empty() {
            continue;
        }
        events.clear();
        let t0 = std::time::Instant::now();
        if let Err(e) = batch.step(&mut events) {
            for (id, tx) in senders.drain() {
                batch.cancel(id);
                let _ = tx.send(Msg::Error(e.to_string()));
            }
            continue;
        }
        metrics
            .busy_micros
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        for e in events.drain(..) {
            let Some(tx) = senders.get(&e.id) else {
                continue;
            };
            if let Some(token) = e.token {
                metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Msg::Token {
                    token,
                    logprobs: e.logprobs,
                });
            }
            if let Some(f) = e.finish {
                let _ = tx.send(Msg::Done(f));
                senders.remove(&e.id);
            }
        }
        metrics.active.store(senders.len(), Ordering::Relaxed);
        metrics
            .kv_cells_used
            .store(batch.cells_used(), Ordering::Relaxed);
    }
    metrics.active.store(0, Ordering::Relaxed);
}
