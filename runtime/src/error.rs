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
    /// A tensor that cannot be converted to the planned type (`quantize`).
    #[error("{0}")]
    Quantize(String),
    /// A broken internal invariant (a bug in phi.rs, not bad input).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = PhiError> = std::result::Result<T, E>;

/// What kind of failure a [`PhiError`] is: the categories a caller acts on
/// (the C API's `phi_status` codes are these, one to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad value from the caller: an argument, a token id, a setting.
    InvalidArgument,
    /// The file could not be opened or read.
    Io,
    /// The file is not a well-formed model (bad GGUF, missing or mis-shaped
    /// tensors, inconsistent hyper-parameters, a broken vocabulary).
    InvalidModel,
    /// A well-formed file phi.rs cannot run (architecture, tensor type,
    /// tokenizer model).
    UnsupportedModel,
    /// Not enough memory (or threads) for what was asked.
    OutOfMemory,
    /// The tokens do not fit in the context.
    ContextFull,
    /// A bug in phi.rs; the operation was abandoned safely.
    Internal,
}

impl PhiError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        use crate::tokenizer::TokenizerError as T;
        use ErrorKind as K;
        match self {
            PhiError::Gguf(g) if g.is_io() => K::Io,
            PhiError::Gguf(_) => K::InvalidModel,
            PhiError::Kernel(KernelError::Unsupported(_)) => K::UnsupportedModel,
            PhiError::Kernel(KernelError::Shape(_)) => K::InvalidModel,
            // A `PHI_ISA` / `PHI_AVX2_DOT` / `PHI_NEON_DOT` request this CPU
            // cannot honour.
            PhiError::Kernel(
                KernelError::IsaUnavailable(_)
                | KernelError::UnknownIsa(_)
                | KernelError::UnknownAvx2Dot(_)
                | KernelError::UnknownNeonDot(_),
            ) => K::InvalidArgument,
            PhiError::Tokenizer(T::UnknownModel(_) | T::UnknownPreTokenizer(_)) => {
                K::UnsupportedModel
            }
            PhiError::Tokenizer(_) => K::InvalidModel,
            PhiError::UnsupportedArch(_) | PhiError::TensorType { .. } => K::UnsupportedModel,
            PhiError::MissingTensor { .. }
            | PhiError::TensorShape { .. }
            | PhiError::BadHyperParam(_)
            | PhiError::Quantize(_) => K::InvalidModel,
            PhiError::ContextFull { .. } => K::ContextFull,
            PhiError::OutOfMemory { .. } | PhiError::ThreadPool(_) => K::OutOfMemory,
            PhiError::BadToken { .. } | PhiError::InvalidArgument(_) | PhiError::Constraint(_) => {
                K::InvalidArgument
            }
            PhiError::Internal(_) => K::Internal,
        }
    }
}
