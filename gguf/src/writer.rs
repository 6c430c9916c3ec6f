//! A GGUF writer (version 3, little-endian).

use std::collections::HashSet;
use std::io::Write;

use crate::parse::{alignment_from, tensor_size, GGUF_MAGIC, MAX_ARRAY_DEPTH};
use crate::{GgmlType, GgufError, Value};

struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: TensorData,
}

enum TensorData {
    /// The bytes, given at `add_tensor`.
    Bytes(Vec<u8>),
    /// Produced at write time (`write_to_with`); the size the type and
    /// dims require.
    Deferred(u64),
}

impl TensorData {
    fn len(&self) -> u64 {
        match self {
            TensorData::Bytes(b) => b.len() as u64,
            TensorData::Deferred(n) => *n,
        }
    }
}

/// Builds a GGUF file: metadata in insertion order, tensors in insertion
/// order, each tensor's data aligned to `general.alignment` (default 32).
///
/// ```
/// use phi_gguf::{GgmlType, Gguf, GgufWriter, Value};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", Value::from("llama"))?;
/// w.add_tensor("x", GgmlType::F32, &[2], 1f32.to_le_bytes().repeat(2))?;
/// let g = Gguf::from_bytes(w.to_bytes()?)?;
/// assert_eq!(g.tensor("x")?.data.len(), 8);
/// # Ok::<(), phi_gguf::GgufError>(())
/// ```
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds a metadata entry. Fails on a duplicate key, an array whose
    /// elements do not all have its declared type, arrays nested deeper than
    /// [`MAX_ARRAY_DEPTH`], or an invalid `general.alignment`.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> Result<(), GgufError> {
        let key = key.into();
        if self.keys.contains(&key) {
            return Err(GgufError::DuplicateKey(key));
        }
        value
            .check_homogeneous(MAX_ARRAY_DEPTH)
            .map_err(|e| GgufError::Invalid(format!("metadata key `{key}`: {e}")))?;
        if key == "general.alignment" {
            alignment_from(Some(&value))?;
        }
        self.keys.insert(key.clone());
        self.metadata.push((key, value));
        Ok(())
    }

    /// Adds a tensor. `dims` are in GGUF order (`dims[0]` = row length);
    /// `data` must be exactly the size the type and dims require.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let data = data.into();
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor(name));
        }
        let n_bytes = tensor_size(&name, ggml_type, dims)?;
        if data.len() as u64 != n_bytes {
            return Err(GgufError::BadTensor {
                name,
                reason: format!(
                    "{} bytes of data given, shape {dims:?} as {ggml_type} needs {n_bytes}",
                    data.len()
                ),
            });
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            ggml_type,
            dims: dims.to_vec(),
            data: TensorData::Bytes(data),
        });
        Ok(())
    }

    /// Adds a tensor whose bytes [`GgufWriter::write_to_with`] asks for
    /// while writing, so that a large file never has all its tensors in
    /// memory at once.
    pub fn add_tensor_deferred(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
    ) -> Result<(), GgufError> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor(name));
        }
        let n_bytes = tensor_size(&name, ggml_type, dims)?;
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            ggml_type,
            dims: dims.to_vec(),
            data: TensorData::Deferred(n_bytes),
        });
        Ok(())
    }

    /// The alignment the file will use.
    pub fn alignment(&self) -> u64 {
        let v = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .map(|(_, v)| v);
        // Validated in add_metadata.
        alignment_from(v).unwrap_or(crate::DEFAULT_ALIGNMENT)
    }

    /// Writes the file to `w`; returns the number of bytes written. Fails
    /// if a tensor was added with [`GgufWriter::add_tensor_deferred`] (use
    /// [`GgufWriter::write_to_with`]).
    pub fn write_to<W: Write>(&self, w: W) -> Result<u64, GgufError> {
        self.write_to_with(w, |_, name| {
            Err(GgufError::Invalid(format!(
                "tensor `{name}` was added without data: write it with write_to_with"
            )))
        })
    }

    /// Writes the file to `w`, calling `fill(i, name)` for the bytes of
    /// each deferred tensor (`i` its position in insertion order) when its
    /// turn comes; returns the number of bytes written. A `fill` error, or
    /// bytes of another size than the tensor's type and dims require, stops
    /// the write with that error.
    pub fn write_to_with<W: Write, F>(&self, mut w: W, mut fill: F) -> Result<u64, GgufError>
    where
        F: FnMut(usize, &str) -> Result<Vec<u8>, GgufError>,
    {
        let bytes = self.header()?;
        w.write_all(&bytes)?;
        let align = self.alignment();
        let mut pos = bytes.len() as u64;
        for (i, t) in self.tensors.iter().enumerate() {
            match &t.data {
                TensorData::Bytes(b) => w.write_all(b)?,
                TensorData::Deferred(n) => {
                    let b = fill(i, &t.name)?;
                    if b.len() as u64 != *n {
                        return Err(GgufError::BadTensor {
                            name: t.name.clone(),
                            reason: format!(
                                "{} bytes of data given, shape {:?} as {} needs {n}",
                                b.len(),
                                t.dims,
                                t.ggml_type
                            ),
                        });
                    }
                    w.write_all(&b)?;
                }
            }
            pos += t.data.len();
            let pad = padding(pos, align);
            write_zeros(&mut w, pad)?;
            pos += pad;
        }
        w.flush()?;
        Ok(pos)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Magic, counts, metadata, tensor infos and padding up to the data section.
    fn header(&self) -> Result<Vec<u8>, GgufError> {
        let align = self.alignment();
        let mut h = Vec::new();
        h.extend_from_slice(&GGUF_MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key);
            h.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut h, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            let len = t.data.len();
            offset = offset
                .checked_add(len)
                .and_then(|o| o.checked_next_multiple_of(align))
                .ok_or_else(|| GgufError::Invalid("tensor data size overflows".into()))?;
        }
        let pad = padding(h.len() as u64, align);
        h.resize(h.len() + pad as usize, 0);
        Ok(h)
    }
}

fn padding(pos: u64, align: u64) -> u64 {
    (align - pos % align) % align
}

fn write_zeros<W: Write>(w: &mut W, mut n: u64) -> std::io::Result<()> {
    let zeros = [0u8; 256];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}
