//! phi: the Phi-3 / Llama inference runtime.
//!
//! Data flows one way: [`phi_gguf`] parses the file, [`phi_kernels`] does the
//! matrix work, and this crate assembles the decoder, its KV cache, the
//! tokenizer, sampling and generation.
//!
//! ```
//! use std::ops::ControlFlow;
//! use std::sync::Arc;
//! use phi::{generate, Context, ContextParams, Model, Sampler, SamplerParams};
//!
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/phi3-tiny-q4_0.gguf");
//! // The model is mapped, not copied; share it between contexts and threads.
//! let model = Arc::new(Model::load(path)?);
//! let tok = model.tokenizer();
//! let prompt = tok.encode("Once upon a time", true, false);
//!
//! // A context holds one sequence's KV cache; use it from one thread at a time.
//! let mut ctx = Context::new(Arc::clone(&model), &ContextParams::default())?;
//! let mut sampler = Sampler::new(SamplerParams::greedy());
//! let mut text = phi::tokenizer::TextStream::new(tok, false);
//! let mut out = String::new();
//! let stats = generate(&mut ctx, &mut sampler, &prompt, 16, |t| tok.is_eog(t), |t| {
//!     out.push_str(&text.push(t)); // valid UTF-8 pieces, streamed
//!     ControlFlow::Continue(())
//! })?;
//! out.push_str(&text.finish());
//! assert!(stats.generated_tokens > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

//!
//! # Cargo features
//!
//! * `capi` — the C API (`phi::ffi`, declared in `include/phi.h`), compiled into
//!   `libphi.a` / `libphi.so`: `cargo build --release -p phi --features capi`.
//!   Off by default, so the Rust API does not carry it.
//! * `synthetic` — `phi::synthetic::{build, write}`: random-weight
//!   models of any decoder shape, written with our own GGUF writer. The one
//!   way tests, benchmarks, the fuzzers and `phi bench --synthetic` make
//!   models without a download. Off by default.

pub mod batch;
pub mod config;
pub mod constraint;
pub mod context;
pub mod error;
#[cfg(feature = "capi")]
pub mod ffi;
pub mod generate;
mod model;
pub mod quantize;
pub mod sampler;
#[cfg(feature = "synthetic")]
pub mod synthetic;
mod threads;
pub mod tokenizer;

pub use batch::{Batch, BatchParams, SeqParams};
pub use config::{Arch, Config};
pub use constraint::{Constraint, ConstraintSpec, ConstraintVocab};
pub use context::{Context, ContextParams, KvType};
pub use error::{ErrorKind, PhiError, Result};
pub use generate::{generate, generate_constrained, GenerationStats, StopReason};
pub use model::{Model, ModelOptions};
pub use sampler::{Sampler, SamplerParams};
pub use threads::{default_threads, ThreadPool};
pub use tokenizer::Tokenizer;
