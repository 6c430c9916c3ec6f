//! phi-gguf: a zero-copy, validating reader and a writer for GGUF files.
//!
//! ```no_run
//! # fn main() -> Result<(), phi_gguf::GgufError> {
//! use phi_gguf::Gguf;
//! let g = Gguf::open("model.gguf")?; // mmap + full validation
//! let n = g.get_u32("phi3.block_count")?; // typed metadata access
//! let t = g.tensor("blk.0.attn_qkv.weight")?; // TensorView: type, dims, &[u8]
//! # let _ = (n, t); Ok(()) }
//! ```
//!
//! Everything is validated when the file is opened (see README.md for the
//! list of checks): afterwards every [`TensorView`] is a slice of the file
//! whose length is exactly what its type and dims require.
//!
//! Decisions:
//! * Integer accessors accept any integer-typed value that converts
//!   losslessly (writers differ on int widths); floats accept `f32`, `f64`
//!   (narrowed) and integers exactly representable in the target type.
//! * Invalid UTF-8 in keys and tensor names is an error; in string *values*
//!   it is replaced by U+FFFD (lossy), so a stray byte in a vocabulary does
//!   not make the whole file unreadable.
//! * Tensor data is aligned in memory to `min(alignment, 64)` bytes, whether
//!   mapped (page-aligned mapping) or owned ([`Gguf::from_bytes`] copies the
//!   buffer into 64-byte-aligned storage).

mod error;
mod file_type;
mod parse;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use file_type::FileType;
pub use parse::{
    is_unsafe_to_show, printable, printable_up_to, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH,
    MAX_DIMS, MAX_METADATA_VALUES,
};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order (`dims[0]` is the contiguous one: the row length).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of dims; validated not to overflow for
    /// infos that come from a parsed file).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Length of one row (`dims[0]`, or 1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Number of rows (product of `dims[1..]`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// A tensor's header entry and its bytes, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn name(&self) -> &'a str {
        &self.info.name
    }
    pub fn ggml_type(&self) -> GgmlType {
        self.info.ggml_type
    }
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }
    pub fn n_elements(&self) -> u64 {
        self.info.n_elements()
    }
}

/// 64-byte-aligned storage unit for owned file bytes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

enum Storage {
    Mapped(memmap2::Mmap),
    Owned { blocks: Vec<Block>, len: usize },
}

impl Storage {
    fn owned(bytes: &[u8]) -> Storage {
        let mut blocks = vec![Block([0; 64]); bytes.len().div_ceil(64)];
        for (block, chunk) in blocks.iter_mut().zip(bytes.chunks(64)) {
            block.0[..chunk.len()].copy_from_slice(chunk);
        }
        Storage::Owned {
            blocks,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned { blocks, len } => {
                // SAFETY: `blocks` is a contiguous allocation of
                // `blocks.len() * 64` initialized bytes (Block is a
                // `repr(C)` byte array with no padding), `len <=
                // blocks.len() * 64` by construction in `owned`, and the
                // returned slice borrows `self`, so the Vec outlives it and
                // cannot be mutated meanwhile.
                unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), *len) }
            }
        }
    }
}

/// A parsed, validated GGUF file.
pub struct Gguf {
    storage: Storage,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("file_len", &self.bytes().len())
            .field("metadata_count", &self.metadata.len())
            .field("tensor_count", &self.tensors.len())
            .finish()
    }
}

/// Narrowing helpers for the typed accessors.
fn wrong_type(key: &str, expected: &'static str, v: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: v.type_name(),
    }
}

fn int_as<T: TryFrom<i128>>(key: &str, expected: &'static str, v: &Value) -> Result<T, GgufError> {
    let i = v.as_integer().ok_or_else(|| wrong_type(key, expected, v))?;
    T::try_from(i).map_err(|_| GgufError::ValueOutOfRange {
        key: key.to_owned(),
        expected,
        value: i.to_string(),
    })
}

impl Gguf {
    /// Memory-maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let open_err = |source| GgufError::Open {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a GGUF file",
            )));
        }
        let len = meta.len();
        if len == 0 {
            // Nothing to map (mapping 0 bytes fails on some systems).
            return Self::from_storage(Storage::owned(&[]));
        }
        // SAFETY: the mapping is read-only and private to this process; the
        // safety contract of `Mmap::map` is that the file is not modified or
        // truncated while mapped. Like every mmap-based model loader we
        // require that of the user (documented on `Gguf`); we never write
        // through the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
        Self::from_storage(Storage::Mapped(map))
    }

    /// Parses and validates an in-memory file (tests, fuzzing). The bytes are
    /// copied once into 64-byte-aligned storage.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::from_storage(Storage::owned(&bytes))
    }

    fn from_storage(storage: Storage) -> Result<Gguf, GgufError> {
        let h = parse::parse(storage.bytes())?;
        Ok(Gguf {
            storage,
            version: h.version,
            alignment: h.alignment,
            metadata: h.metadata,
            meta_index: h.meta_index,
            tensors: h.tensors,
            tensor_index: h.tensor_index,
            data_offset: h.data_offset,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Alignment of tensor data (from `general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }
    /// `general.architecture` (e.g. `"phi3"`, `"llama"`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_owned()))
    }

    /// Any integer value that fits in a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        int_as(key, "u32", self.require(key)?)
    }
    /// Any integer value that fits in a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        int_as(key, "u64", self.require(key)?)
    }
    /// Any integer value that fits in an `i32`.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        int_as(key, "i32", self.require(key)?)
    }
    /// Any integer value that fits in an `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        int_as(key, "i64", self.require(key)?)
    }
    /// Any integer value that fits in a `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        int_as(key, "usize", self.require(key)?)
    }
    /// An `f32`, an `f64` (rounded to f32) or an integer of magnitude at
    /// most 2^24 (exact in f32).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        match *v {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            _ => match v.as_integer() {
                Some(i) if i.unsigned_abs() <= 1 << 24 => Ok(i as f32),
                Some(i) => Err(GgufError::ValueOutOfRange {
                    key: key.to_owned(),
                    expected: "f32",
                    value: i.to_string(),
                }),
                None => Err(wrong_type(key, "f32", v)),
            },
        }
    }
    /// An `f64`, an `f32` (widened) or an integer of magnitude at most 2^53.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        match v.as_f64() {
            Some(x) => Ok(x),
            None => match v.as_integer() {
                Some(i) if i.unsigned_abs() <= 1 << 53 => Ok(i as f64),
                Some(i) => Err(GgufError::ValueOutOfRange {
                    key: key.to_owned(),
                    expected: "f64",
                    value: i.to_string(),
                }),
                None => Err(wrong_type(key, "f64", v)),
            },
        }
    }
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| wrong_type(key, "bool", v))
    }
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }
    /// The elements of an array-valued key.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, "array", v))
    }
    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        match v {
            Value::Array(ValueType::String, items) => {
                Ok(items.iter().filter_map(Value::as_str).collect())
            }
            _ => Err(wrong_type(key, "array of string", v)),
        }
    }
    /// An array of `f32` (also accepts `f64` elements, rounded).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let v = self.require(key)?;
        match v {
            Value::Array(ValueType::F32 | ValueType::F64, items) => Ok(items
                .iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()),
            _ => Err(wrong_type(key, "array of f32", v)),
        }
    }
    /// An array of integers that all fit in `i32` (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let v = self.require(key)?;
        match v {
            Value::Array(_, items) => items
                .iter()
                .map(|item| int_as(key, "array of i32", item))
                .collect(),
            _ => Err(wrong_type(key, "array of i32", v)),
        }
    }

    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_u32`].
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.opt(key, Self::get_u32)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_u64`].
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.opt(key, Self::get_u64)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_i32`].
    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, GgufError> {
        self.opt(key, Self::get_i32)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_usize`].
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, GgufError> {
        self.opt(key, Self::get_usize)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_f32`].
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.opt(key, Self::get_f32)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_f64`].
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.opt(key, Self::get_f64)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_bool`].
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.opt(key, Self::get_bool)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_str`].
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.opt(key, Self::get_str)
    }
    /// `Ok(None)` if the key is absent, otherwise like [`Gguf::get_array`].
    pub fn opt_array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        self.opt(key, Self::get_array)
    }

    fn opt<'s, T>(
        &'s self,
        key: &str,
        get: impl FnOnce(&'s Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.meta_index.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// The info of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
    /// True if the file has a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }
    /// Tensor `name`: its info and its bytes (a slice of the file).
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_owned()))?;
        Ok(self.view(info))
    }
    /// Every tensor's view, in file order.
    pub fn tensor_views(&self) -> impl Iterator<Item = TensorView<'_>> + '_ {
        self.tensors.iter().map(|info| self.view(info))
    }

    fn view<'s>(&'s self, info: &'s TensorInfo) -> TensorView<'s> {
        // Parsing checked data_offset + offset + n_bytes <= file length, so
        // these conversions and the slice are in range.
        let start = (self.data_offset + info.offset) as usize;
        let data = &self.bytes()[start..start + info.n_bytes as usize];
        TensorView { info, data }
    }

    /// The whole file's bytes (mapped or owned).
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Lets the OS drop the pages of `bytes()[range]` from this process's
    /// resident memory, e.g. after a tensor was repacked into another buffer,
    /// so its weights are not resident twice. The bytes stay readable: a
    /// later read faults them back in from the file. Only whole pages inside
    /// the range are released; out-of-range parts are ignored; in-memory
    /// files are left as they are.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Storage::Mapped(map) = &self.storage else {
            return;
        };
        const PAGE: usize = 4096;
        let end = range.end.min(map.len()) / PAGE * PAGE;
        let start = range.start.div_ceil(PAGE) * PAGE;
        if start >= end {
            return;
        }
        // SAFETY: the mapping is read-only and backed by the file, and we never
        // write through it, so MADV_DONTNEED discards no data: every later read
        // of these pages (including through slices handed out earlier) gets the
        // file's bytes again. The range lies inside the mapping. Failure only
        // means the pages stay resident.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}
