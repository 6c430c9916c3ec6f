//! A corpus of hand-made malformed files: each must give its typed error,
//! never a panic or a huge allocation.

use phi_gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType};

/// Raw little-endian encoder for building files the writer refuses to make.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A metadata entry with a u32 value.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(ValueType::U32.id()).u32(v)
    }
    /// A tensor info.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of 32, then `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(32) {
            self.u8(0);
        }
        self.bytes(&vec![0x11; n])
    }
    fn parse(&self) -> Result<Gguf, GgufError> {
        Gguf::from_bytes(self.0.clone())
    }
}

fn err(r: &Raw) -> GgufError {
    match r.parse() {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => {
            // Every message is one readable line.
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            e
        }
    }
}

/// A small valid file exercising every value type and a few tensor types.
fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from("llama"))
        .unwrap();
    w.add_metadata("a.u8", Value::U8(7)).unwrap();
    w.add_metadata("a.i8", Value::I8(-7)).unwrap();
    w.add_metadata("a.u16", Value::U16(700)).unwrap();
    w.add_metadata("a.i16", Value::I16(-700)).unwrap();
    w.add_metadata("a.u32", Value::U32(70000)).unwrap();
    w.add_metadata("a.i32", Value::I32(-70000)).unwrap();
    w.add_metadata("a.f32", Value::F32(1.5)).unwrap();
    w.add_metadata("a.bool", Value::Bool(true)).unwrap();
    w.add_metadata("a.str", Value::from("héllo")).unwrap();
    w.add_metadata("a.u64", Value::U64(1 << 40)).unwrap();
    w.add_metadata("a.i64", Value::I64(-(1 << 40))).unwrap();
    w.add_metadata("a.f64", Value::F64(-2.25)).unwrap();
    w.add_metadata(
        "a.arr",
        Value::Array(ValueType::String, vec!["x".into(), "yz".into()]),
    )
    .unwrap();
    w.add_metadata(
        "a.nested",
        Value::Array(
            ValueType::Array,
            vec![
                Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                Value::Array(ValueType::I32, vec![]),
            ],
        ),
    )
    .unwrap();
    w.add_tensor("t.f32", GgmlType::F32, &[3, 2], vec![1u8; 24])
        .unwrap();
    w.add_tensor("t.q4_0", GgmlType::Q4_0, &[64], vec![2u8; 36])
        .unwrap();
    w.add_tensor("t.q6_k", GgmlType::Q6_K, &[256, 1], vec![3u8; 210])
        .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn the_valid_file_is_valid() {
    let g = Gguf::from_bytes(valid_file()).unwrap();
    assert_eq!(g.tensors().len(), 3);
    assert_eq!(g.metadata().len(), 15);
    assert_eq!(g.tensor("t.q6_k").unwrap().data, &[3u8; 210][..]);
}

#[test]
fn truncation_at_every_byte_is_a_typed_error() {
    let full = valid_file();
    let g = Gguf::from_bytes(full.clone()).unwrap();
    let data_end = g
        .tensors()
        .iter()
        .map(|t| g.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    let header_max = (g.data_offset() - g.alignment()) as usize;
    for cut in 0..full.len() {
        let r = Gguf::from_bytes(full[..cut].to_vec());
        if cut >= data_end {
            // Only the trailing padding was cut.
            assert!(r.is_ok(), "cut at {cut}: {:?}", r.err());
            continue;
        }
        match r {
            Err(GgufError::Truncated { file_len, .. }) => {
                assert!(cut <= header_max + 32, "cut {cut}");
                assert_eq!(file_len, cut as u64);
            }
            // Counts are checked against what remains before reading items.
            Err(GgufError::ImpossibleCount { .. }) => assert!(cut <= header_max, "cut {cut}"),
            Err(GgufError::TensorOutOfBounds { file_len, .. }) => {
                assert!(cut > header_max, "cut {cut}");
                assert_eq!(file_len, cut as u64);
            }
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Not every corruption is detectable (e.g. inside tensor data), but none
    // may panic, and the header bytes are covered by checks.
    let full = valid_file();
    for i in 0..full.len() {
        for v in [0x00, 0xff, 0x80, 0x7f, 0x01] {
            let mut bytes = full.clone();
            bytes[i] = v;
            let _ = Gguf::from_bytes(bytes);
        }
    }
}

#[test]
fn too_short_and_bad_magic() {
    assert!(matches!(err(&Raw::default()), GgufError::Truncated { .. }));
    assert!(matches!(
        err(&Raw(b"GGU".to_vec())),
        GgufError::Truncated { needed: 4, .. }
    ));
    let mut r = Raw::header(3, 0, 0);
    r.0[..4].copy_from_slice(b"GGML");
    let e = err(&r);
    assert!(matches!(e, GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(e.to_string().contains("not a GGUF file"));
    // Header cut after the version.
    assert!(matches!(
        err(&Raw(Raw::header(3, 0, 0).0[..10].to_vec())),
        GgufError::Truncated { .. }
    ));
}

#[test]
fn versions() {
    for v in [0, 1, 4, 0xffff, u32::MAX] {
        let e = err(&Raw::header(v, 0, 0));
        assert!(
            matches!(e, GgufError::UnsupportedVersion(x) if x == v),
            "{v}"
        );
        assert!(e.to_string().contains("versions 2 and 3"));
    }
    assert!(err(&Raw::header(1, 0, 0)).to_string().contains("obsolete"));
    for v in [2u32, 3] {
        assert!(Raw::header(v, 0, 0).parse().is_ok());
        let e = err(&Raw::header(v.swap_bytes(), 0, 0));
        assert!(matches!(e, GgufError::BigEndian(x) if x == v));
        assert!(e.to_string().contains("big-endian"));
    }
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    for n in [1u64 << 60, u64::MAX, 2] {
        assert!(
            matches!(err(&Raw::header(3, 0, n)), GgufError::ImpossibleCount { count, .. } if count == n)
        );
        assert!(
            matches!(err(&Raw::header(3, n, 0)), GgufError::ImpossibleCount { count, .. } if count == n)
        );
    }
    // An array claiming 2^60 u8 elements.
    let mut r = Raw::header(3, 0, 1);
    r.str("k")
        .u32(ValueType::Array.id())
        .u32(ValueType::U8.id())
        .u64(1 << 60)
        .u8(1);
    assert!(matches!(err(&r), GgufError::ImpossibleCount { .. }));
    // An array of 1000 strings in 1000 bytes: each needs at least 8 bytes.
    let mut r = Raw::header(3, 0, 1);
    r.str("k")
        .u32(ValueType::Array.id())
        .u32(ValueType::String.id())
        .u64(1000)
        .bytes(&[0; 1000]);
    assert!(matches!(
        err(&r),
        GgufError::ImpossibleCount { max: 125, .. }
    ));
}

#[test]
fn strings_past_eof() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 60).bytes(b"key-and-then-some");
    let e = err(&r);
    assert!(matches!(e, GgufError::Truncated { needed, .. } if needed == 1 << 60));
    assert!(e.to_string().contains("metadata key #0"), "{e}");
    let mut r = Raw::header(3, 0, 1);
    r.str("k")
        .u32(ValueType::String.id())
        .u64(100)
        .bytes(b"short");
    let e = err(&r);
    assert!(matches!(e, GgufError::Truncated { needed: 100, .. }));
    assert!(e.to_string().contains("`k`"), "{e}");
    let mut r = Raw::header(3, 1, 0);
    r.u64(u64::MAX).bytes(&[0; 32]);
    assert!(matches!(err(&r), GgufError::Truncated { .. }));
}

#[test]
fn bad_metadata() {
    // Unknown value type.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    assert!(matches!(
        err(&r),
        GgufError::UnknownValueType { id: 13, .. }
    ));
    // Unknown array element type.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(ValueType::Array.id()).u32(99).u64(0);
    assert!(matches!(
        err(&r),
        GgufError::UnknownValueType { id: 99, .. }
    ));
    // Bool that is neither 0 nor 1.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(ValueType::Bool.id()).u8(2);
    assert!(matches!(err(&r), GgufError::Invalid(m) if m.contains("bool")));
    // Invalid UTF-8 key.
    let mut r = Raw::header(3, 0, 1);
    r.u64(2).bytes(&[0xff, 0xfe]).u32(ValueType::U8.id()).u8(0);
    assert!(matches!(err(&r), GgufError::InvalidUtf8 { .. }));
    // Invalid UTF-8 value: accepted, lossily.
    let mut r = Raw::header(3, 0, 1);
    r.str("k")
        .u32(ValueType::String.id())
        .u64(3)
        .bytes(&[b'a', 0xff, b'b']);
    assert_eq!(r.parse().unwrap().get_str("k").unwrap(), "a\u{fffd}b");
    // Duplicate key.
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(err(&r), GgufError::DuplicateKey(k) if k == "k"));
    // Arrays nested 100 deep.
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(ValueType::Array.id());
    for _ in 0..100 {
        r.u32(ValueType::Array.id()).u64(1);
    }
    r.u32(ValueType::U8.id()).u64(0);
    assert!(matches!(err(&r), GgufError::NestingTooDeep { .. }));
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48, u32::MAX] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert!(matches!(err(&r), GgufError::BadAlignment(_)), "{a}");
    }
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment")
        .u32(ValueType::String.id())
        .str("32");
    assert!(matches!(err(&r), GgufError::WrongType { .. }));
    // A legal but huge alignment pushes the data section past the end.
    let mut r = Raw::header(3, 1, 1);
    r.str("general.alignment")
        .u32(ValueType::U64.id())
        .u64(1 << 63);
    r.tensor("t", &[1], GgmlType::F32.id(), 0).data(4);
    assert!(matches!(err(&r), GgufError::TensorOutOfBounds { .. }));
    // A non-default alignment is honoured.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 8);
    r.tensor("t", &[1], GgmlType::F32.id(), 0);
    while !r.0.len().is_multiple_of(8) {
        r.u8(0);
    }
    r.bytes(&1f32.to_le_bytes());
    let g = r.parse().unwrap();
    assert_eq!(g.alignment(), 8);
    assert_eq!(g.tensor("t").unwrap().data, &1f32.to_le_bytes());
}

fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Raw {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("blk.0.attn_q.weight", dims, ty, offset).data(data);
    r
}

#[test]
fn bad_tensor_infos() {
    let f32 = GgmlType::F32.id();
    assert!(one_tensor(&[4, 2], f32, 0, 32).parse().is_ok());
    // Too many dims: rejected before reading them.
    let e = err(&one_tensor(&[1, 1, 1, 1, 1], f32, 0, 4));
    assert!(matches!(e, GgufError::BadTensor { .. }));
    let mut r = Raw::header(3, 1, 0);
    r.str("t").u32(u32::MAX).bytes(&[0; 64]);
    assert!(matches!(err(&r), GgufError::BadTensor { .. }));
    // Zero and overflowing dims.
    assert!(
        matches!(err(&one_tensor(&[4, 0], f32, 0, 32)), GgufError::BadTensor { reason, .. } if reason.contains("zero"))
    );
    assert!(
        matches!(err(&one_tensor(&[1 << 32, 1 << 32], f32, 0, 32)), GgufError::BadTensor { reason, .. } if reason.contains("overflow"))
    );
    assert!(matches!(
        err(&one_tensor(&[u64::MAX], f32, 0, 32)),
        GgufError::BadTensor { .. }
    ));
    // Element count fits but byte size overflows.
    assert!(matches!(
        err(&one_tensor(&[1 << 62], f32, 0, 32)),
        GgufError::BadTensor { .. }
    ));
    // Row length not a multiple of the block size.
    let e = err(&one_tensor(&[33], GgmlType::Q4_0.id(), 0, 64));
    assert!(
        matches!(&e, GgufError::BadTensor { reason, .. } if reason.contains("block size 32")),
        "{e}"
    );
    let e = err(&one_tensor(&[128, 2], GgmlType::Q4_K.id(), 0, 4096));
    assert!(matches!(e, GgufError::BadTensor { .. }));
    // Unknown / retired type ids.
    for id in [4, 5, 31, 40, u32::MAX] {
        let e = err(&one_tensor(&[32], id, 0, 64));
        assert!(
            matches!(e, GgufError::UnknownGgmlType { id: x, .. } if x == id),
            "{id}"
        );
    }
    // Misaligned offset.
    let e = err(&one_tensor(&[4], f32, 7, 64));
    assert!(matches!(
        e,
        GgufError::MisalignedTensor {
            offset: 7,
            alignment: 32,
            ..
        }
    ));
    // Data past EOF, with the message the user sees.
    let e = err(&one_tensor(&[4, 2], f32, 0, 31));
    assert!(matches!(
        e,
        GgufError::TensorOutOfBounds { n_bytes: 32, .. }
    ));
    let msg = e.to_string();
    assert!(
        msg.starts_with("tensor `blk.0.attn_q.weight` data (offset ")
            && msg.contains("32 bytes) extends past the end of the file"),
        "{msg}"
    );
    assert!(matches!(
        err(&one_tensor(&[4], f32, 1 << 40, 64)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // Offset so large that offset + data section overflows.
    let e = err(&one_tensor(&[4], f32, u64::MAX - 31, 64));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
    // Invalid UTF-8 name.
    let mut r = Raw::header(3, 1, 0);
    r.u64(1).u8(0xc0).u32(1).u64(4).u32(f32).u64(0).data(16);
    assert!(matches!(err(&r), GgufError::InvalidUtf8 { .. }));
}

#[test]
fn duplicate_and_overlapping_tensors() {
    let f32 = GgmlType::F32.id();
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], f32, 0)
        .tensor("a", &[8], f32, 32)
        .data(64);
    assert!(matches!(err(&r), GgufError::DuplicateTensor(n) if n == "a"));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], f32, 0)
        .tensor("b", &[8], f32, 32)
        .data(128);
    let e = err(&r);
    assert!(
        matches!(&e, GgufError::OverlappingTensors { first, second, .. } if first == "a" && second == "b"),
        "{e}"
    );
    // Overlap detected whatever the header order.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("b", &[8], f32, 32)
        .tensor("a", &[16], f32, 0)
        .data(128);
    assert!(matches!(err(&r), GgufError::OverlappingTensors { .. }));
    // Same offset.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], f32, 0)
        .tensor("b", &[8], f32, 0)
        .data(128);
    assert!(matches!(err(&r), GgufError::OverlappingTensors { .. }));
    // Adjacent is fine, and tensors may be stored out of header order.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("b", &[8], f32, 32)
        .tensor("a", &[8], f32, 0)
        .data(64);
    let g = r.parse().unwrap();
    assert_eq!(g.tensors()[0].name, "b");
}

#[test]
fn scalar_tensor_with_no_dims() {
    let g = one_tensor(&[], GgmlType::F32.id(), 0, 4).parse().unwrap();
    let t = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(t.n_elements(), 1);
    assert_eq!(t.data.len(), 4);
    // A quantized scalar is not a whole block.
    assert!(matches!(
        err(&one_tensor(&[], GgmlType::Q8_0.id(), 0, 64)),
        GgufError::BadTensor { .. }
    ));
}

#[test]
fn open_reports_the_path() {
    let e = Gguf::open("/nonexistent/dir/model.gguf").unwrap_err();
    assert!(matches!(e, GgufError::Open { .. }));
    assert!(e.to_string().contains("/nonexistent/dir/model.gguf"), "{e}");
    // An empty file on disk is truncated, not a mapping failure.
    let dir = std::env::temp_dir().join(format!("phi-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Gguf::open(&path),
        Err(GgufError::Truncated { .. })
    ));
    std::fs::write(&path, valid_file()).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.bytes(), &valid_file()[..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_in_messages_are_escaped_to_one_line() {
    let mut r = Raw::header(3, 0, 1);
    r.str("evil\nkey\r").u32(77).u32(0);
    let e = err(&r);
    assert!(e.to_string().contains("evil\\nkey\\r"), "{e}");
    let long = "k".repeat(5000);
    let mut r = Raw::header(3, 0, 1);
    r.str(&long).u32(77).u32(0);
    assert!(err(&r).to_string().len() < 300);
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t\n", &[4], GgmlType::F32.id(), 1 << 20).data(16);
    assert!(matches!(err(&r), GgufError::TensorOutOfBounds { name, .. } if name == "t\\n"));
}

/// Inputs the fuzzer once found problems with (tests/fuzz_regressions/*):
/// each must parse or fail cleanly, with a one-line message.
#[test]
fn fuzz_regressions() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        n += 1;
        if let Err(e) = Gguf::from_bytes(std::fs::read(&path).unwrap()) {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{}: {msg:?}", path.display());
        }
    }
    assert!(n >= 1);
}

#[test]
fn metadata_value_count_is_capped() {
    // An array of u8 that fits in the file but exceeds the value limit is
    // rejected before its elements are allocated. (The cumulative count
    // over several arrays is unit-tested in src/parse.rs.)
    let n = phi_gguf::MAX_METADATA_VALUES + 1;
    let mut r = Raw::header(3, 0, 1);
    r.str("a")
        .u32(ValueType::Array.id())
        .u32(ValueType::U8.id())
        .u64(n);
    r.bytes(&vec![0; n as usize]);
    let e = err(&r);
    assert!(
        matches!(&e, GgufError::Invalid(m) if m.contains("`a`") && m.contains("limit")),
        "{e}"
    );
}
