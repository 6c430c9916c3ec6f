//! The runtime's error type.

use phi_gguf::{GgmlType, GgufError};
use phi_kernels::KernelError;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum PhiError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("unsupported model architecture `{0}` (phi.rs runs `phi3` and `llama`)")]
    UnsupportedArch(String),
    #[error("tensor `{name}` is missing from the model file")]
    MissingTensor { name: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor `{name}` has type {ty}, which phi.rs cannot compute with")]
    TensorType { name: String, ty: GgmlType },
    #[error("invalid model hyper-parameter: {0}")]
    BadHyperParam(String),
    #[error("the context holds {n_ctx} tokens, but {needed} are needed (use a larger -c)")]
    ContextFull { n_ctx: usize, needed: usize },
    #[error(
        "a context of {n_ctx} tokens needs {needed} bytes for its KV cache and buffers, \
         more than the {limit} bytes available (use a smaller -c)"
    )]
    OutOfMemory {
        needed: usize,
        limit: usize,
        n_ctx: usize,
    },
    #[error("token id {id} is outside the vocabulary (0..{n_vocab})")]
    BadToken { id: u32, n_vocab: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A structured-output constraint that cannot be compiled or followed.
    #[error("structured output: {0}")]
    Constraint(String),
    #[error("could not start the thread pool: {0}")]
    ThreadPool(String),
}

pub type Result<T, E = PhiError> = std::result::Result<T, E>;
