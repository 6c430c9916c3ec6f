//! phi: the Phi-3 / Llama inference runtime.
//!
//! Data flows one way: [`phi_gguf`] parses the file, [`phi_kernels`] does the
//! matrix work, and this crate assembles the decoder, its KV cache, the
//! tokenizer, sampling and generation.

pub mod config;
pub mod context;
pub mod error;
pub mod ffi;
pub mod generate;
pub mod model;
pub mod sampler;
pub mod synthetic;
pub mod tokenizer;

pub use config::{Arch, Config};
pub use context::{Context, ContextParams, KvType};
pub use error::{PhiError, Result};
pub use generate::{generate, GenerationStats, StopReason};
pub use model::Model;
pub use sampler::{Sampler, SamplerParams};
