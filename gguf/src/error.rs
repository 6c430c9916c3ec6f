//! The error type of the crate.

use std::path::PathBuf;

/// Errors from reading, validating, querying or writing a GGUF file.
///
/// Every malformed input maps to one of these; the parser never panics and
/// never allocates more than the file's own size justifies.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// An I/O error while reading or writing (no path known).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file could not be opened or mapped.
    #[error("cannot read `{}`: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A metadata lookup found no such key.
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    /// A metadata lookup found a value of another type.
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// An integer metadata value does not fit the requested integer type.
    #[error("metadata key `{key}` = {value} does not fit in {expected}")]
    ValueOutOfRange {
        key: String,
        expected: &'static str,
        value: String,
    },
    /// A tensor lookup found no tensor of that name.
    #[error("tensor `{0}` not found")]
    MissingTensor(String),
    /// The file does not start with the GGUF magic.
    #[error(
        "not a GGUF file: it starts with {found:02x?}, expected the magic \"GGUF\" (47 47 55 46)"
    )]
    BadMagic { found: [u8; 4] },
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {0}: only versions 2 and 3 are supported{hint}",
        hint = if *.0 == 1 { " (version 1 files are obsolete; re-convert the model)" } else { "" })]
    UnsupportedVersion(u32),
    /// The header is byte-swapped: a big-endian GGUF file.
    #[error("this is a big-endian GGUF file (version {0} byte-swapped); only little-endian files are supported")]
    BigEndian(u32),
    /// Some item extends past the end of the file.
    #[error(
        "{what} at offset {offset} needs {needed} bytes, but the file ends at {file_len} bytes"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    /// A count is larger than the rest of the file could possibly hold.
    #[error(
        "{what}: count {count} is impossible, the remaining {remaining} bytes hold at most {max}"
    )]
    ImpossibleCount {
        what: String,
        count: u64,
        max: u64,
        remaining: u64,
    },
    /// A metadata value type id GGUF does not define.
    #[error("metadata key `{key}` has unknown value type id {id}")]
    UnknownValueType { key: String, id: u32 },
    /// A tensor type id ggml does not define (or has retired).
    #[error("tensor `{tensor}` has unknown ggml type id {id}")]
    UnknownGgmlType { tensor: String, id: u32 },
    /// Arrays nested deeper than the parser allows.
    #[error("metadata key `{key}` nests arrays deeper than {max} levels")]
    NestingTooDeep { key: String, max: usize },
    /// A key or tensor name is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },
    /// The same metadata key appears twice.
    #[error("metadata key `{0}` appears more than once")]
    DuplicateKey(String),
    /// The same tensor name appears twice.
    #[error("tensor `{0}` appears more than once")]
    DuplicateTensor(String),
    /// `general.alignment` is not a nonzero power of two.
    #[error("general.alignment = {0} is not a nonzero power of two")]
    BadAlignment(String),
    /// A tensor's shape or type is inconsistent (dims, block size, size overflow).
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error("tensor `{name}` data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    /// A tensor's data extends past the end of the file.
    #[error("tensor `{name}` data (offset {offset}, {n_bytes} bytes) extends past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        /// Absolute offset in the file.
        offset: u64,
        n_bytes: u64,
        file_len: u64,
    },
    /// Two tensors' data ranges overlap.
    #[error("tensors `{first}` (bytes {first_start}..{first_end}) and `{second}` (from byte {second_start}) overlap")]
    OverlappingTensors {
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
    },
    /// Anything else that makes the input invalid (also used by the writer).
    #[error("{0}")]
    Invalid(String),
}

impl GgufError {
    /// True for I/O failures (`Io` and `Open`: missing file, permissions,
    /// read errors), false for every problem with the file's contents or
    /// with a lookup.
    pub fn is_io(&self) -> bool {
        matches!(self, GgufError::Io(_) | GgufError::Open { .. })
    }
}
