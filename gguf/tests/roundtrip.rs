//! Writer → reader round trips (property-based) and typed accessor rules.

use phi_gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType};
use proptest::prelude::*;

fn finite_f32() -> impl Strategy<Value = f32> {
    prop::num::f32::NORMAL
        | prop::num::f32::SUBNORMAL
        | prop::num::f32::ZERO
        | prop::num::f32::INFINITE
}
fn finite_f64() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::ZERO
        | prop::num::f64::INFINITE
}

/// A value of type `ty`; arrays nest up to `depth` more levels.
fn value_of(ty: ValueType, depth: u32) -> BoxedStrategy<Value> {
    match ty {
        ValueType::U8 => any::<u8>().prop_map(Value::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(Value::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(Value::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        ValueType::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        ValueType::F32 => finite_f32().prop_map(Value::F32).boxed(),
        ValueType::F64 => finite_f64().prop_map(Value::F64).boxed(),
        ValueType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ValueType::String => "\\PC{0,12}".prop_map(Value::String).boxed(),
        ValueType::Array => {
            let elem = if depth == 0 {
                prop::sample::select(&ValueType::ALL[..9]).boxed() // no Array
            } else {
                prop::sample::select(&ValueType::ALL[..]).boxed()
            };
            elem.prop_flat_map(move |et| {
                prop::collection::vec(value_of(et, depth.saturating_sub(1)), 0..6)
                    .prop_map(move |items| Value::Array(et, items))
            })
            .boxed()
        }
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    prop::sample::select(&ValueType::ALL[..]).prop_flat_map(|ty| value_of(ty, 2))
}

#[derive(Debug, Clone)]
struct TensorSpec {
    ty: GgmlType,
    dims: Vec<u64>,
    seed: u64,
}

fn tensor_spec() -> impl Strategy<Value = TensorSpec> {
    (
        prop::sample::select(&GgmlType::ALL[..]),
        1u64..3,
        prop::collection::vec(1u64..4, 0..4),
        any::<u64>(),
    )
        .prop_map(|(ty, blocks, rest, seed)| {
            let mut dims = vec![blocks * ty.block_size() as u64];
            dims.extend(rest);
            TensorSpec { ty, dims, seed }
        })
}

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn write_then_read_round_trips(
        meta in prop::collection::btree_map("\\PC{0,16}", any_value(), 0..10),
        tensors in prop::collection::btree_map("[a-z0-9._]{1,20}", tensor_spec(), 0..6),
        align_log2 in prop::option::of(0u32..9),
    ) {
        let mut w = GgufWriter::new();
        let mut expected_meta = Vec::new();
        if let Some(a) = align_log2 {
            let v = Value::U32(1 << a);
            w.add_metadata("general.alignment", v.clone()).unwrap();
            expected_meta.push(("general.alignment".to_string(), v));
        }
        for (k, v) in &meta {
            if k == "general.alignment" { continue; }
            w.add_metadata(k.clone(), v.clone()).unwrap();
            expected_meta.push((k.clone(), v.clone()));
        }
        let mut expected_data = Vec::new();
        for (name, spec) in &tensors {
            let n = spec.ty.bytes_for(spec.dims.iter().product()).unwrap() as usize;
            let data = bytes(spec.seed, n);
            w.add_tensor(name.clone(), spec.ty, &spec.dims, data.clone()).unwrap();
            expected_data.push((name, spec, data));
        }
        let file = w.to_bytes().unwrap();
        let mut streamed = Vec::new();
        prop_assert_eq!(w.write_to(&mut streamed).unwrap(), file.len() as u64);
        prop_assert_eq!(&streamed, &file);

        let g = Gguf::from_bytes(file).unwrap();
        let align = 1u64 << align_log2.unwrap_or(5);
        prop_assert_eq!(g.alignment(), align);
        prop_assert_eq!(g.version(), 3);
        prop_assert_eq!(g.metadata(), &expected_meta[..]);
        prop_assert_eq!(g.tensors().len(), expected_data.len());
        for (info, (name, spec, data)) in g.tensors().iter().zip(&expected_data) {
            prop_assert_eq!(&info.name, *name);
            prop_assert_eq!(info.ggml_type, spec.ty);
            prop_assert_eq!(&info.dims, &spec.dims);
            prop_assert_eq!(info.offset % align, 0);
            let view = g.tensor(name).unwrap();
            prop_assert_eq!(view.data, &data[..]);
            prop_assert_eq!((view.data.as_ptr() as usize) % align.min(64) as usize, 0);
        }
    }

    #[test]
    fn random_corruption_never_panics(
        pos in any::<prop::sample::Index>(),
        vals in prop::collection::vec(any::<u8>(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut w = GgufWriter::new();
        w.add_metadata("k", Value::Array(ValueType::String, vec!["a".into(), "bc".into()])).unwrap();
        w.add_metadata("n", Value::U32(3)).unwrap();
        w.add_tensor("t", GgmlType::Q8_0, &[32, 2], vec![0u8; 68]).unwrap();
        let mut file = w.to_bytes().unwrap();
        let p = pos.index(file.len());
        for (i, v) in vals.iter().enumerate() {
            if let Some(b) = file.get_mut(p + i) { *b = *v; }
        }
        let _ = Gguf::from_bytes(file.clone());
        file.truncate(cut.index(file.len()));
        let _ = Gguf::from_bytes(file);
    }
}

#[test]
fn nan_floats_round_trip_bit_exactly() {
    let mut w = GgufWriter::new();
    let nan = f32::from_bits(0x7fc0_1234);
    w.add_metadata("nan32", Value::F32(nan)).unwrap();
    w.add_metadata("nan64", Value::F64(f64::from_bits(0x7ff8_0000_dead_beef)))
        .unwrap();
    let g = Gguf::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.get_f32("nan32").unwrap().to_bits(), 0x7fc0_1234);
    assert!(matches!(g.get("nan64"), Some(Value::F64(x)) if x.to_bits() == 0x7ff8_0000_dead_beef));
}

fn accessor_file() -> Gguf {
    let mut w = GgufWriter::new();
    for (k, v) in [
        ("u8", Value::U8(200)),
        ("i8.neg", Value::I8(-1)),
        ("i32.pos", Value::I32(7)),
        ("i64.big", Value::I64(1 << 40)),
        ("u64.max", Value::U64(u64::MAX)),
        ("f32", Value::F32(0.5)),
        ("f64", Value::F64(1e-5)),
        ("bool", Value::Bool(true)),
        ("str", Value::from("phi3")),
        (
            "ints",
            Value::Array(ValueType::U8, vec![Value::U8(1), Value::U8(2)]),
        ),
        (
            "strs",
            Value::Array(ValueType::String, vec!["a".into(), "b".into()]),
        ),
        ("f64s", Value::Array(ValueType::F64, vec![Value::F64(0.25)])),
    ] {
        w.add_metadata(k, v).unwrap();
    }
    Gguf::from_bytes(w.to_bytes().unwrap()).unwrap()
}

#[test]
fn integer_accessors_accept_any_width_that_fits() {
    let g = accessor_file();
    assert_eq!(g.get_u32("u8").unwrap(), 200);
    assert_eq!(g.get_i32("u8").unwrap(), 200);
    assert_eq!(g.get_u64("i32.pos").unwrap(), 7);
    assert_eq!(g.get_u32("i32.pos").unwrap(), 7);
    assert_eq!(g.get_i32("i8.neg").unwrap(), -1);
    assert_eq!(g.get_i64("i64.big").unwrap(), 1 << 40);
    assert_eq!(g.get_u64("u64.max").unwrap(), u64::MAX);
    assert_eq!(g.get_usize("u8").unwrap(), 200);
    for (key, exp) in [("i8.neg", "u32"), ("i64.big", "u32")] {
        match g.get_u32(key) {
            Err(GgufError::ValueOutOfRange {
                key: k,
                expected,
                value,
            }) => {
                assert_eq!((k.as_str(), expected), (key, exp));
                assert!(!value.is_empty());
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(matches!(
        g.get_i64("u64.max"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        g.get_u64("i8.neg"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
}

#[test]
fn wrong_types_and_missing_keys_are_named() {
    let g = accessor_file();
    match g.get_u32("str") {
        Err(e @ GgufError::WrongType { .. }) => {
            assert_eq!(
                e.to_string(),
                "metadata key `str` has type string, expected u32"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        g.get_u32("f32"),
        Err(GgufError::WrongType { found: "f32", .. })
    ));
    assert!(matches!(
        g.get_str("u8"),
        Err(GgufError::WrongType {
            expected: "string",
            found: "u8",
            ..
        })
    ));
    assert!(matches!(g.get_bool("u8"), Err(GgufError::WrongType { .. })));
    assert!(matches!(
        g.get_array("str"),
        Err(GgufError::WrongType {
            found: "string",
            ..
        })
    ));
    assert!(matches!(g.get_f32("str"), Err(GgufError::WrongType { .. })));
    assert!(matches!(
        g.get_str_array("ints"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        g.get_f32_array("strs"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        g.get_i32_array("strs"),
        Err(GgufError::WrongType { .. })
    ));
    match g.get_u32("phi3.block_count") {
        Err(e @ GgufError::MissingKey(_)) => {
            assert_eq!(e.to_string(), "metadata key `phi3.block_count` is missing")
        }
        other => panic!("{other:?}"),
    }
    assert!(g.get("nope").is_none());
}

#[test]
fn float_bool_string_array_accessors() {
    let g = accessor_file();
    assert_eq!(g.get_f32("f32").unwrap(), 0.5);
    assert_eq!(g.get_f32("f64").unwrap(), 1e-5f64 as f32);
    assert_eq!(g.get_f64("f64").unwrap(), 1e-5);
    assert_eq!(g.get_f64("f32").unwrap(), 0.5);
    assert_eq!(g.get_f32("u8").unwrap(), 200.0);
    assert!(matches!(
        g.get_f32("i64.big"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(g.get_bool("bool").unwrap());
    assert_eq!(g.get_str("str").unwrap(), "phi3");
    assert_eq!(g.get_array("ints").unwrap(), &[Value::U8(1), Value::U8(2)]);
    assert_eq!(g.get_str_array("strs").unwrap(), vec!["a", "b"]);
    assert_eq!(g.get_i32_array("ints").unwrap(), vec![1, 2]);
    assert_eq!(g.get_f32_array("f64s").unwrap(), vec![0.25]);
}

#[test]
fn optional_accessors() {
    let g = accessor_file();
    assert_eq!(g.opt_u32("u8").unwrap(), Some(200));
    assert_eq!(g.opt_u32("absent").unwrap(), None);
    assert!(g.opt_u32("str").is_err());
    assert_eq!(g.opt_str("str").unwrap(), Some("phi3"));
    assert_eq!(g.opt_f32("absent").unwrap(), None);
    assert_eq!(g.opt_bool("bool").unwrap(), Some(true));
    assert_eq!(g.opt_array("ints").unwrap().map(<[Value]>::len), Some(2));
    assert_eq!(g.opt_usize("i32.pos").unwrap(), Some(7));
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", Value::U8(1)).unwrap();
    assert!(matches!(
        w.add_metadata("k", Value::U8(2)),
        Err(GgufError::DuplicateKey(_))
    ));
    // Heterogeneous array.
    let bad = Value::Array(ValueType::U8, vec![Value::U8(1), Value::I8(1)]);
    assert!(matches!(
        w.add_metadata("arr", bad),
        Err(GgufError::Invalid(_))
    ));
    // Too deep.
    let mut deep = Value::Array(ValueType::U8, vec![]);
    for _ in 0..phi_gguf::MAX_ARRAY_DEPTH {
        deep = Value::Array(ValueType::Array, vec![deep]);
    }
    assert!(w.add_metadata("deep", deep).is_err());
    // Exactly MAX_ARRAY_DEPTH levels are fine and round-trip.
    let mut ok = Value::Array(ValueType::U8, vec![Value::U8(9)]);
    for _ in 1..phi_gguf::MAX_ARRAY_DEPTH {
        ok = Value::Array(ValueType::Array, vec![ok]);
    }
    w.add_metadata("ok", ok.clone()).unwrap();
    for a in [0u32, 12] {
        assert!(matches!(
            w.add_metadata("general.alignment", Value::U32(a)),
            Err(GgufError::BadAlignment(_))
        ));
    }
    // Tensors: wrong data size, bad dims, duplicate names.
    assert!(matches!(
        w.add_tensor("t", GgmlType::F32, &[4], vec![0u8; 15]),
        Err(GgufError::BadTensor { .. })
    ));
    assert!(w
        .add_tensor("t", GgmlType::Q4_0, &[16], vec![0u8; 9])
        .is_err());
    assert!(w
        .add_tensor("t", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4])
        .is_err());
    assert!(w.add_tensor("t", GgmlType::F32, &[0], vec![]).is_err());
    w.add_tensor("t", GgmlType::F32, &[4], vec![0u8; 16])
        .unwrap();
    assert!(matches!(
        w.add_tensor("t", GgmlType::F32, &[4], vec![0u8; 16]),
        Err(GgufError::DuplicateTensor(_))
    ));
    let g = Gguf::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.get("ok"), Some(&ok));
    assert_eq!(g.tensors().len(), 1);
}

#[test]
fn writer_honours_alignment_and_fixture_rewrite_is_identical() {
    // Re-writing a llama.cpp fixture reproduces it byte for byte (same
    // metadata order, tensor order and packing as llama.cpp's writer).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/models/phi3-partial-q8_0.gguf"
    );
    let orig = std::fs::read(path).unwrap();
    let g = Gguf::from_bytes(orig.clone()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.add_metadata(k.clone(), v.clone()).unwrap();
    }
    for t in g.tensor_views() {
        w.add_tensor(t.name(), t.ggml_type(), t.dims(), t.data)
            .unwrap();
    }
    let out = w.to_bytes().unwrap();
    let g2 = Gguf::from_bytes(out.clone()).unwrap();
    assert_eq!(g2.metadata(), g.metadata());
    for (a, b) in g.tensor_views().zip(g2.tensor_views()) {
        assert_eq!(a.info, b.info);
        assert_eq!(a.data, b.data);
    }
    assert_eq!(out.len(), orig.len());
    assert_eq!(out, orig);

    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", Value::U32(256))
        .unwrap();
    w.add_tensor("a", GgmlType::F32, &[3], vec![1u8; 12])
        .unwrap();
    w.add_tensor("b", GgmlType::F32, &[5], vec![2u8; 20])
        .unwrap();
    let g = Gguf::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.alignment(), 256);
    assert_eq!(g.data_offset() % 256, 0);
    assert_eq!(g.tensor_info("b").unwrap().offset, 256);
}

#[test]
fn gguf_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Gguf>();
    check::<phi_gguf::TensorView<'static>>();
    check::<GgufError>();
}

#[test]
fn io_errors_are_distinguishable() {
    assert!(Gguf::open("/nonexistent.gguf").unwrap_err().is_io());
    assert!(!Gguf::from_bytes(b"GGUF".to_vec()).unwrap_err().is_io());
    assert!(!accessor_file().get_u32("nope").unwrap_err().is_io());
}

/// Deferred tensors: the bytes come from the callback at write time, in
/// insertion order, and the file equals the one written with the bytes
/// given up front; a wrong size or a callback error stops the write, and
/// `write_to` refuses deferred tensors.
#[test]
fn deferred_tensors_write_the_same_file() {
    let a: Vec<u8> = (0..24u8).collect();
    let b: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut eager = GgufWriter::new();
    eager
        .add_metadata("general.architecture", Value::from("llama"))
        .unwrap();
    eager
        .add_tensor("a", GgmlType::I8, &[24], a.clone())
        .unwrap();
    eager
        .add_tensor("b", GgmlType::F32, &[4, 2], b.clone())
        .unwrap();
    let want = eager.to_bytes().unwrap();

    let mut lazy = GgufWriter::new();
    lazy.add_metadata("general.architecture", Value::from("llama"))
        .unwrap();
    lazy.add_tensor("a", GgmlType::I8, &[24], a.clone())
        .unwrap();
    lazy.add_tensor_deferred("b", GgmlType::F32, &[4, 2])
        .unwrap();
    assert!(lazy.add_tensor_deferred("a", GgmlType::F32, &[1]).is_err());
    assert!(
        lazy.to_bytes().is_err(),
        "write_to without the deferred data"
    );
    let mut asked = Vec::new();
    let mut got = Vec::new();
    let n = lazy
        .write_to_with(&mut got, |i, name| {
            asked.push((i, name.to_string()));
            Ok(b.clone())
        })
        .unwrap();
    assert_eq!(asked, vec![(1, "b".to_string())]);
    assert_eq!(n as usize, got.len());
    assert_eq!(got, want);
    let g = Gguf::from_bytes(got).unwrap();
    assert_eq!(g.tensor("b").unwrap().data, &b[..]);

    let mut sink = Vec::new();
    let short = lazy.write_to_with(&mut sink, |_, _| Ok(vec![0u8; 31]));
    assert!(short.is_err());
    let failed = lazy.write_to_with(&mut sink, |_, name| {
        Err(phi_gguf::GgufError::Invalid(format!("no data for {name}")))
    });
    assert!(failed.unwrap_err().to_string().contains("no data for b"));
}
