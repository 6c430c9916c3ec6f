//! phi-gguf: a zero-copy, validating reader and a writer for GGUF files.
//!
//! API CONTRACT (other crates code against these names; the parser body is
//! being written — see README.md):
//!
//! ```ignore
//! let g = Gguf::open("model.gguf")?;          // mmap + full validation
//! let n = g.get_u32("phi3.block_count")?;     // typed metadata access
//! let t = g.tensor("blk.0.attn_qkv.weight")?; // TensorView: type, dims, &[u8]
//! ```

mod types;
pub use types::GgmlType;

use std::path::Path;

/// Metadata value types as GGUF numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and elements (elements may themselves be arrays).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// Errors from reading or validating a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("tensor `{0}` not found")]
    MissingTensor(String),
    #[error("{0}")]
    Invalid(String),
}

/// One tensor's description from the header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order (dims[0] is the contiguous one: the row length).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A tensor's header entry and its bytes, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

/// A parsed, validated GGUF file.
pub struct Gguf {
    _private: (),
}

impl Gguf {
    /// Memory-maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let _ = path;
        todo!("parser")
    }
    /// Parses and validates an in-memory file (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        let _ = bytes;
        todo!("parser")
    }
    pub fn version(&self) -> u32 {
        todo!()
    }
    pub fn alignment(&self) -> u64 {
        todo!()
    }
    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        todo!()
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        let _ = key;
        todo!()
    }
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let _ = key;
        todo!()
    }
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let _ = key;
        todo!()
    }
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        let _ = key;
        todo!()
    }
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let _ = key;
        todo!()
    }
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let _ = key;
        todo!()
    }
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let _ = key;
        todo!()
    }
    /// The elements of an array-valued key.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let _ = key;
        todo!()
    }
    pub fn tensors(&self) -> &[TensorInfo] {
        todo!()
    }
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let _ = name;
        todo!()
    }
    /// The whole file's bytes (mapped or owned).
    pub fn bytes(&self) -> &[u8] {
        todo!()
    }
}
