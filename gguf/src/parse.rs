//! The GGUF parser: bytes in, validated header out. Never panics; every size
//! read from the file is checked before it is used.

use std::collections::HashMap;

use crate::{GgmlType, GgufError, TensorInfo, Value, ValueType};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS: the most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;
/// The deepest nesting of arrays the parser accepts.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// The most metadata values (array elements included) one file may hold:
/// each costs ~32 bytes of memory however small it is in the file, so this
/// bounds the memory a hostile file can make the parser allocate (~512 MiB).
/// Real vocabularies hold well under a million tokens and merges.
pub const MAX_METADATA_VALUES: u64 = 1 << 24;

/// Smallest possible metadata entry: empty key (8) + type (4) + 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// The validated header of a GGUF file.
pub(crate) struct Header {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub meta_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    /// Absolute offset of the data section (tensor offsets are relative to it).
    pub data_offset: u64,
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata values that may still be allocated (see MAX_METADATA_VALUES).
    value_budget: u64,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            what,
            offset: self.pos as u64,
            needed,
            file_len: self.buf.len() as u64,
        }
    }

    /// Takes `n` bytes; `what` names the item for the error message.
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.truncated(what(), n)),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed byte string.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let len = self.u64(&|| format!("{} (string length)", what()))?;
        self.take(len, &|| format!("{} (string of {len} bytes)", what()))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// the rest of the file, so that allocating `count` slots is justified.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &dyn Fn() -> String,
    ) -> Result<usize, GgufError> {
        let max = self.remaining() / min_size;
        if count > max {
            return Err(GgufError::ImpossibleCount {
                what: what(),
                count,
                max,
                remaining: self.remaining(),
            });
        }
        // count <= remaining <= usize::MAX, so this cannot fail.
        usize::try_from(count)
            .map_err(|_| GgufError::Invalid(format!("{}: count overflows", what())))
    }
}

/// Whether a character from a file must not reach a terminal as it is:
/// C0 and C1 controls and DEL (terminal escape sequences start with ESC or
/// the 8-bit CSI U+009B; line breaks fake output lines), the line and
/// paragraph separators, and the bidi controls that reorder the text around
/// them ("Trojan Source"). [`printable`] escapes them in error messages;
/// the `phi` command escapes them in everything it shows from a file.
pub fn is_unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// A key or tensor name as shown in error messages: the characters of
/// [`is_unsafe_to_show`] escaped (messages stay on one line and carry no
/// terminal escape sequences) and very long names shortened.
pub fn printable(name: &str) -> String {
    printable_up_to(name, 96)
}

/// [`printable`] with another length limit, in characters.
pub fn printable_up_to(name: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == max_chars {
            out.push_str(&format!("...({} bytes)", name.len()));
            break;
        }
        if is_unsafe_to_show(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn utf8(bytes: &[u8], what: &dyn Fn() -> String) -> Result<String, GgufError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| GgufError::InvalidUtf8 { what: what() })
}

/// Reads one value of type `ty`; `key` names the metadata entry for errors.
fn read_value(
    r: &mut Reader<'_>,
    ty: ValueType,
    depth: usize,
    key: &str,
) -> Result<Value, GgufError> {
    let what = || format!("value of metadata key `{key}`");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(r.array(&what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(r.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(r.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(r.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(r.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(r.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(r.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(r.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(r.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(r.array(&what)?)),
        ValueType::Bool => {
            let [b] = r.array(&what)?;
            match b {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    return Err(GgufError::Invalid(format!(
                        "metadata key `{key}`: bool value is {other}, must be 0 or 1"
                    )))
                }
            }
        }
        ValueType::String => {
            let bytes = r.string(&what)?;
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        ValueType::Array => {
            let id = r.u32(&|| format!("array element type of metadata key `{key}`"))?;
            let elem = ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.to_owned(),
                id,
            })?;
            if elem == ValueType::Array && depth + 1 >= MAX_ARRAY_DEPTH {
                return Err(GgufError::NestingTooDeep {
                    key: key.to_owned(),
                    max: MAX_ARRAY_DEPTH,
                });
            }
            let count = r.u64(&|| format!("array length of metadata key `{key}`"))?;
            let n = r.check_count(count, elem.min_encoded_size(), &|| {
                format!("array of {elem} in metadata key `{key}`")
            })?;
            if count > r.value_budget {
                return Err(GgufError::Invalid(format!(
                    "metadata key `{key}`: array of {count} values exceeds the limit of \
                     {MAX_METADATA_VALUES} metadata values per file"
                )));
            }
            r.value_budget -= count;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, elem, depth + 1, key)?);
            }
            Value::Array(elem, items)
        }
    })
}

/// Interprets `general.alignment` if present.
pub(crate) fn alignment_from(value: Option<&Value>) -> Result<u64, GgufError> {
    let Some(v) = value else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        Some(_) => Err(GgufError::BadAlignment(v.to_string())),
        None if v.as_integer().is_some() => Err(GgufError::BadAlignment(v.to_string())),
        None => Err(GgufError::WrongType {
            key: "general.alignment".into(),
            expected: "an unsigned integer",
            found: v.type_name(),
        }),
    }
}

/// Computes the byte size of a tensor of `ty` with `dims`, checking ggml's
/// rules: 1..=4 nonzero dims, element count fits i64, `dims[0]` divisible by
/// the block size.
pub(crate) fn tensor_size(name: &str, ty: GgmlType, dims: &[u64]) -> Result<u64, GgufError> {
    let bad = |reason: String| GgufError::BadTensor {
        name: name.to_owned(),
        reason,
    };
    if dims.len() > MAX_DIMS {
        return Err(bad(format!(
            "{} dimensions, at most {MAX_DIMS} are allowed",
            dims.len()
        )));
    }
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(bad(format!("dimension {i} is zero (shape {dims:?})")));
    }
    let mut n: u64 = 1;
    for &d in dims {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("element count of shape {dims:?} overflows")))?;
    }
    let row = dims.first().copied().unwrap_or(1);
    let bs = ty.block_size() as u64;
    if row % bs != 0 {
        return Err(bad(format!(
            "row length {row} is not a multiple of the {ty} block size {bs}"
        )));
    }
    ty.bytes_for(n)
        .ok_or_else(|| bad(format!("byte size of shape {dims:?} as {ty} overflows")))
}

/// Parses and validates a whole GGUF file.
pub(crate) fn parse(buf: &[u8]) -> Result<Header, GgufError> {
    let mut r = Reader {
        buf,
        pos: 0,
        value_budget: MAX_METADATA_VALUES,
    };
    let magic: [u8; 4] = r.array(&|| "GGUF magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = r.u32(&|| "GGUF version".into())?;
    match version {
        2 | 3 => {}
        v if v.swap_bytes() <= 3 && v.swap_bytes() >= 1 => {
            return Err(GgufError::BigEndian(v.swap_bytes()))
        }
        v => return Err(GgufError::UnsupportedVersion(v)),
    }
    let tensor_count = r.u64(&|| "tensor count".into())?;
    let kv_count = r.u64(&|| "metadata entry count".into())?;

    // Metadata.
    let n_kv = r.check_count(kv_count, MIN_KV_SIZE, &|| "metadata entries".into())?;
    let mut metadata = Vec::with_capacity(n_kv);
    let mut meta_index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key_bytes = r.string(&|| format!("metadata key #{i}"))?;
        let key = utf8(key_bytes, &|| {
            format!(
                "metadata key #{i} (`{}`)",
                printable(&String::from_utf8_lossy(key_bytes))
            )
        })?;
        let shown = printable(&key);
        let id = r.u32(&|| format!("value type of metadata key `{shown}`"))?;
        let ty = ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
            key: shown.clone(),
            id,
        })?;
        let value = read_value(&mut r, ty, 0, &shown)?;
        if meta_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(shown));
        }
        metadata.push((key, value));
    }
    let alignment = alignment_from(meta_index.get("general.alignment").map(|&i| &metadata[i].1))?;

    // Tensor infos.
    let n_tensors = r.check_count(tensor_count, MIN_TENSOR_INFO_SIZE, &|| {
        "tensor infos".into()
    })?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut tensor_index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name_bytes = r.string(&|| format!("name of tensor #{i}"))?;
        let name = utf8(name_bytes, &|| {
            format!(
                "name of tensor #{i} (`{}`)",
                printable(&String::from_utf8_lossy(name_bytes))
            )
        })?;
        let shown = printable(&name);
        let n_dims = r.u32(&|| format!("dimension count of tensor `{shown}`"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadTensor {
                name: shown,
                reason: format!("{n_dims} dimensions, at most {MAX_DIMS} are allowed"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(r.u64(&|| format!("dimension {d} of tensor `{shown}`"))?);
        }
        let type_id = r.u32(&|| format!("type of tensor `{shown}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
            tensor: shown.clone(),
            id: type_id,
        })?;
        let offset = r.u64(&|| format!("data offset of tensor `{shown}`"))?;
        let n_bytes = tensor_size(&shown, ggml_type, &dims)?;
        if offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                name: shown,
                offset,
                alignment,
            });
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor(shown));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        });
    }

    // Data section: starts at the next multiple of the alignment.
    let header_end = r.pos as u64;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| GgufError::Invalid("data section offset overflows".into()))?;
    let file_len = buf.len() as u64;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(GgufError::TensorOutOfBounds {
                name: printable(&t.name),
                offset: start.unwrap_or(u64::MAX),
                n_bytes: t.n_bytes,
                file_len,
            });
        }
    }
    // Overlaps: after sorting by offset, each tensor must end before the next starts.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        // Both ranges are in bounds, so these sums cannot overflow.
        let a_end = a.offset + a.n_bytes;
        if a_end > b.offset {
            return Err(GgufError::OverlappingTensors {
                first: printable(&a.name),
                first_start: data_offset + a.offset,
                first_end: data_offset + a_end,
                second: printable(&b.name),
                second_start: data_offset + b.offset,
            });
        }
    }

    Ok(Header {
        version,
        alignment,
        metadata,
        meta_index,
        tensors,
        tensor_index,
        data_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable("blk.0.attn_q.weight"), "blk.0.attn_q.weight");
        assert_eq!(printable("日本語 ▁x"), "日本語 ▁x");
        assert_eq!(printable("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(printable("\u{9b}31m\u{7f}"), "\\u{9b}31m\\u{7f}");
        assert_eq!(printable("abc\u{202e}d\u{2028}"), "abc\\u{202e}d\\u{2028}");
        let long = "y".repeat(1000);
        assert_eq!(
            printable(&long),
            format!("{}...(1000 bytes)", "y".repeat(96))
        );
        assert_eq!(printable_up_to(&long, 3), "yyy...(1000 bytes)");
    }

    fn u8_array(count: u64) -> Vec<u8> {
        let mut b = ValueType::U8.id().to_le_bytes().to_vec();
        b.extend_from_slice(&count.to_le_bytes());
        b.resize(b.len() + count as usize, 7);
        b
    }

    #[test]
    fn value_budget_is_shared_by_all_arrays() {
        let mut buf = u8_array(6);
        buf.extend(u8_array(5));
        let mut r = Reader {
            buf: &buf,
            pos: 0,
            value_budget: 10,
        };
        let first = read_value(&mut r, ValueType::Array, 0, "a").unwrap();
        assert_eq!(first.as_array().unwrap().len(), 6);
        assert_eq!(r.value_budget, 4);
        let e = read_value(&mut r, ValueType::Array, 0, "b").unwrap_err();
        assert!(matches!(e, GgufError::Invalid(m) if m.contains("`b`")));
    }
}
