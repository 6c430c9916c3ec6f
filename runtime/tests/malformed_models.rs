//! A corpus of broken models, generated with our own GGUF writer from a good
//! synthetic one: every tensor missing, mis-shaped or of an unsupported type in
//! turn, lying hyper-parameters, non-finite norms, a vocabulary larger than the
//! embedding. Each must give a typed error that names the problem; none may
//! panic.

use phi::synthetic::{build, SyntheticSpec};
use phi::{Arch, Model, PhiError};
use phi_gguf::{GgmlType, Gguf, GgufWriter, Value};

/// Tracks the largest single allocation, so a test can show that lying
/// sizes are refused before anything huge is allocated.
struct Tracking;
static LARGEST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl std::alloc::GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: p came from System.alloc with layout l.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}
#[global_allocator]
static ALLOC: Tracking = Tracking;

enum Change<'a> {
    Drop(&'a str),
    Reshape(&'a str, Vec<u64>),
    Retype(&'a str, GgmlType),
    Meta(&'a str, Value),
    Poison(&'a str, f32),
}

fn rebuild(good: &Gguf, change: &Change) -> Result<Model, PhiError> {
    let mut w = GgufWriter::new();
    for (k, v) in good.metadata() {
        let v = match change {
            Change::Meta(mk, mv) if mk == k => mv.clone(),
            _ => v.clone(),
        };
        w.add_metadata(k.clone(), v).unwrap();
    }
    if let Change::Meta(mk, mv) = change {
        if good.get(mk).is_none() {
            w.add_metadata(*mk, mv.clone()).unwrap();
        }
    }
    for t in good.tensors() {
        let name = t.name.as_str();
        let mut dims = t.dims.clone();
        let mut ty = t.ggml_type;
        let mut data = good.tensor(name).unwrap().data.to_vec();
        match change {
            Change::Drop(n) if *n == name => continue,
            Change::Reshape(n, d) if *n == name => dims = d.clone(),
            Change::Retype(n, new) if *n == name => ty = *new,
            Change::Poison(n, v) if *n == name => data[4..8].copy_from_slice(&v.to_le_bytes()),
            _ => {}
        }
        let n: u64 = dims.iter().product();
        if let Some(bytes) = ty.bytes_for(n) {
            data.resize(bytes as usize, 0);
        }
        w.add_tensor(name, ty, &dims, data).unwrap();
    }
    Model::from_gguf(Gguf::from_bytes(w.to_bytes().unwrap()).unwrap())
}

fn expect_err(good: &Gguf, change: Change, must_mention: &[&str]) -> PhiError {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rebuild(good, &change)));
    let err = match r {
        Ok(Ok(_)) => panic!("a broken model loaded (should mention {must_mention:?})"),
        Ok(Err(e)) => e,
        Err(_) => panic!("loading a broken model panicked (should mention {must_mention:?})"),
    };
    let msg = err.to_string();
    for m in must_mention {
        assert!(msg.contains(m), "error `{msg}` does not mention `{m}`");
    }
    err
}

fn specs() -> Vec<SyntheticSpec> {
    vec![
        SyntheticSpec {
            n_layer: 1,
            longrope_orig_ctx: Some(64),
            ..SyntheticSpec::tiny_phi3()
        },
        SyntheticSpec {
            arch: Arch::Llama,
            n_layer: 1,
            n_head_kv: 2,
            ..SyntheticSpec::tiny_phi3()
        },
    ]
}

#[test]
fn every_tensor_missing_misshaped_or_mistyped_in_turn() {
    for spec in specs() {
        let good = Gguf::from_bytes(build(&spec).unwrap()).unwrap();
        Model::from_gguf(Gguf::from_bytes(build(&spec).unwrap()).unwrap()).unwrap();
        for t in good.tensors() {
            let name = t.name.as_str();
            let optional = name == "output.weight" || name.starts_with("rope_factors");
            if !optional {
                let e = expect_err(&good, Change::Drop(name), &[name]);
                assert!(matches!(e, PhiError::MissingTensor { .. }), "{e}");
            }
            // One element more per row (or per vector).
            let mut dims = t.dims.clone();
            dims[0] += 32;
            let e = expect_err(&good, Change::Reshape(name, dims), &[name]);
            assert!(matches!(e, PhiError::TensorShape { .. }), "{e}");
            // A type the kernels cannot run.
            let e = expect_err(&good, Change::Retype(name, GgmlType::I32), &[name, "I32"]);
            assert!(matches!(e, PhiError::TensorType { .. }), "{e}");
        }
    }
}

#[test]
fn lying_hyper_parameters() {
    let good = Gguf::from_bytes(build(&SyntheticSpec::tiny_phi3()).unwrap()).unwrap();
    let k = |s: &str| format!("phi3.{s}");
    for key in [
        "embedding_length",
        "block_count",
        "attention.head_count",
        "feed_forward_length",
    ] {
        for v in [0u64, 1 << 40] {
            let key = k(key);
            expect_err(&good, Change::Meta(&key, Value::U64(v)), &[]);
        }
    }
    // Wrong types name the key and both types.
    let key = k("block_count");
    expect_err(
        &good,
        Change::Meta(&key, Value::String("two".into())),
        &["block_count"],
    );
    let key = k("attention.head_count");
    expect_err(&good, Change::Meta(&key, Value::U32(3)), &["head count"]);
    let key = k("attention.head_count_kv");
    expect_err(&good, Change::Meta(&key, Value::U32(3)), &["kv head count"]);
    let key = k("rope.dimension_count");
    expect_err(
        &good,
        Change::Meta(&key, Value::U32(1000)),
        &["rope dimension"],
    );
    let key = k("rope.freq_base");
    expect_err(
        &good,
        Change::Meta(&key, Value::F32(f32::NAN)),
        &["rope base"],
    );
    let key = k("attention.layer_norm_rms_epsilon");
    expect_err(&good, Change::Meta(&key, Value::F32(-1.0)), &["epsilon"]);
    let key = k("rope.scaling.attn_factor");
    expect_err(
        &good,
        Change::Meta(&key, Value::F32(f32::INFINITY)),
        &["attention factor"],
    );
    expect_err(
        &good,
        Change::Meta("general.architecture", Value::String("gpt-neox".into())),
        &["gpt-neox"],
    );
}

#[test]
fn non_finite_norms_and_vocab_mismatch() {
    let good = Gguf::from_bytes(build(&SyntheticSpec::tiny_phi3()).unwrap()).unwrap();
    for v in [f32::NAN, f32::INFINITY] {
        expect_err(
            &good,
            Change::Poison("blk.1.ffn_norm.weight", v),
            &["blk.1.ffn_norm.weight", "non-finite"],
        );
    }
    // 320 tokens in the vocabulary, but only 300 embedding rows.
    let e = expect_err(
        &good,
        Change::Reshape("token_embd.weight", vec![128, 300]),
        &[],
    );
    assert!(e.to_string().contains("300"), "{e}");
}

#[test]
fn a_huge_layer_count_fails_on_the_first_missing_layer_without_allocating() {
    // Regression (fuzz/model_load): block_count = 2^24 used to pre-allocate
    // 16 M layer structs (~7 GB) before noticing blk.1 is missing.
    let good = Gguf::from_bytes(
        build(&SyntheticSpec {
            n_layer: 1,
            ..SyntheticSpec::tiny_phi3()
        })
        .unwrap(),
    )
    .unwrap();
    let e = expect_err(
        &good,
        Change::Meta("phi3.block_count", Value::U32(1 << 24)),
        &["blk.1."],
    );
    assert!(matches!(e, PhiError::MissingTensor { .. }), "{e}");
    // No test in this file needs more than a few MiB in one piece.
    let largest = LARGEST.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest < 64 << 20,
        "largest single allocation: {largest} bytes"
    );
}

/// Issue 18: a model whose special-token ids lie outside its vocabulary
/// used to load (the ids were silently ignored) and generate. Every
/// token-id key the tokenizer reads is refused, naming the key and the
/// vocabulary size, and in-range ids still load.
#[test]
fn special_token_ids_outside_the_vocabulary() {
    let good = Gguf::from_bytes(build(&SyntheticSpec::tiny_phi3()).unwrap()).unwrap();
    let n_vocab = good.get_array("tokenizer.ggml.tokens").unwrap().len();
    let vocab_msg = format!("outside the vocabulary of {n_vocab} tokens");
    let past = n_vocab as u32;
    for key in [
        "bos_token_id",
        "eos_token_id",
        "eot_token_id",
        "eom_token_id",
        "unknown_token_id",
        "seperator_token_id",
        "padding_token_id",
        "mask_token_id",
        "prefix_token_id",
        "suffix_token_id",
        "middle_token_id",
        "fim_pre_token_id",
        "fim_suf_token_id",
        "fim_mid_token_id",
        "fim_pad_token_id",
        "fim_rep_token_id",
        "fim_sep_token_id",
    ] {
        let key = format!("tokenizer.ggml.{key}");
        for v in [Value::U32(past), Value::U32(u32::MAX), Value::I32(-1)] {
            let e = expect_err(&good, Change::Meta(&key, v), &[&key, &vocab_msg]);
            assert!(
                matches!(
                    e,
                    PhiError::Tokenizer(phi::tokenizer::TokenizerError::SpecialIdOutOfRange { .. })
                ),
                "{e}"
            );
        }
        // The last token is a valid id for every key.
        rebuild(&good, &Change::Meta(&key, Value::U32(past - 1))).unwrap();
    }
}
