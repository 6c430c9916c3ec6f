//! Every decoder variant on synthetic models written with our own GGUF
//! writer: batched prefill equals token-by-token decode, the sliding window,
//! LongRoPE factor choice, GQA, partial rotary, tied embeddings, Llama, and
//! clear errors for broken files.

use phi::synthetic::{build, SyntheticSpec};
use phi::{Arch, Context, ContextParams, KvType, Model, PhiError};
use phi_gguf::{GgmlType, Gguf};
use std::sync::Arc;

fn load(spec: &SyntheticSpec) -> Arc<Model> {
    let bytes = build(spec).unwrap();
    Arc::new(Model::from_gguf(Gguf::from_bytes(bytes).unwrap()).unwrap())
}

fn ctx(model: &Arc<Model>, n_ctx: usize, swa: bool) -> Context {
    let p = ContextParams {
        n_ctx,
        n_batch: 64,
        n_threads: 2,
        kv_type: KvType::F32,
        sliding_window: swa,
        max_memory: 0,
        ..Default::default()
    };
    Context::new(Arc::clone(model), &p).unwrap()
}

fn prompt(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % n_vocab) as u32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Prefill of the whole prompt in batches vs one token at a time.
fn batched_equals_sequential(spec: &SyntheticSpec) {
    let model = load(spec);
    let nv = model.config().n_vocab;
    let toks = prompt(100, nv); // > n_batch: exercises several batches
    let mut a = ctx(&model, 256, true);
    a.eval(&toks, true).unwrap();
    let mut b = ctx(&model, 256, true);
    let mut seq = Vec::new();
    for &t in &toks {
        b.eval(&[t], false).unwrap();
        seq.extend_from_slice(b.last_logits());
    }
    let all = a.logits();
    assert!(all.iter().all(|v| v.is_finite()));
    let spread = all.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.1, "degenerate logits ({spread})");
    let d = max_diff(all, &seq);
    assert!(
        d < 2e-3 * spread.max(1.0),
        "{spec:?}: batched vs sequential differ by {d}"
    );
}

#[test]
fn phi3_base() {
    batched_equals_sequential(&SyntheticSpec::tiny_phi3());
}

#[test]
fn phi3_gqa_partial_rotary_f16() {
    batched_equals_sequential(&SyntheticSpec {
        n_head: 8,
        n_head_kv: 2,
        n_rot: 8, // head_dim 16, last 8 dims not rotated
        weight_type: GgmlType::F16,
        ..SyntheticSpec::tiny_phi3()
    });
}

#[test]
fn llama_gqa_tied_embeddings() {
    let spec = SyntheticSpec {
        arch: Arch::Llama,
        n_head_kv: 2,
        tied_embeddings: true,
        ..SyntheticSpec::tiny_phi3()
    };
    batched_equals_sequential(&spec);
    let model = load(&spec);
    assert_eq!(model.config().arch, Arch::Llama);
    assert!(!model.config().rope_neox);
}

#[test]
fn sliding_window_limits_attention() {
    // One layer: with a window of W, the last position sees exactly the last W
    // tokens, and rotary attention only depends on relative positions, so the
    // result equals running those W tokens alone.
    let w = 8;
    let spec = SyntheticSpec {
        n_layer: 1,
        sliding_window: w,
        ..SyntheticSpec::tiny_phi3()
    };
    let model = load(&spec);
    let toks = prompt(30, model.config().n_vocab);
    let mut windowed = ctx(&model, 64, true);
    windowed.eval(&toks, false).unwrap();
    let mut tail = ctx(&model, 64, true);
    tail.eval(&toks[toks.len() - w..], false).unwrap();
    let d = max_diff(windowed.last_logits(), tail.last_logits());
    assert!(
        d < 1e-3,
        "windowed attention differs from the tail alone by {d}"
    );

    let mut full = ctx(&model, 64, false);
    full.eval(&toks, false).unwrap();
    let d = max_diff(windowed.last_logits(), full.last_logits());
    assert!(d > 1e-2, "--no-swa should change the result (diff {d})");
    // And the window matters in decode too.
    batched_equals_sequential(&spec);
}

#[test]
fn longrope_picks_factors_by_context_size() {
    let spec = SyntheticSpec {
        longrope_orig_ctx: Some(64),
        n_ctx_train: 1024,
        ..SyntheticSpec::tiny_phi3()
    };
    let model = load(&spec);
    let toks = prompt(20, model.config().n_vocab);
    let run = |n_ctx| {
        let mut c = ctx(&model, n_ctx, false);
        c.eval(&toks, false).unwrap();
        c.last_logits().to_vec()
    };
    let (short_a, short_b, long) = (run(32), run(64), run(128));
    assert_eq!(max_diff(&short_a, &short_b), 0.0);
    assert!(
        max_diff(&short_a, &long) > 1e-2,
        "long factors were not used"
    );
    batched_equals_sequential(&spec);
}

#[test]
fn context_overflow_and_bad_tokens_are_errors() {
    let model = load(&SyntheticSpec::tiny_phi3());
    let mut c = ctx(&model, 16, false);
    let err = c.eval(&prompt(17, 300), false).unwrap_err();
    assert!(
        matches!(
            err,
            PhiError::ContextFull {
                n_ctx: 16,
                needed: 17
            }
        ),
        "{err}"
    );
    c.eval(&prompt(10, 300), false).unwrap();
    let err = c.eval(&prompt(7, 300), false).unwrap_err();
    assert!(matches!(err, PhiError::ContextFull { .. }), "{err}");
    let err = c.eval(&[100_000], false).unwrap_err();
    assert!(
        matches!(err, PhiError::BadToken { id: 100_000, .. }),
        "{err}"
    );
}

#[test]
fn broken_models_give_errors_that_name_the_problem() {
    use phi_gguf::{GgufWriter, Value};
    let good = Gguf::from_bytes(build(&SyntheticSpec::tiny_phi3()).unwrap()).unwrap();
    // Rewrite the good model with one change applied.
    let rewrite = |skip: &str, reshape: Option<(&str, Vec<u64>)>, meta: Option<(&str, Value)>| {
        let mut w = GgufWriter::new();
        for (k, v) in good.metadata() {
            let v = match &meta {
                Some((mk, mv)) if mk == k => mv.clone(),
                _ => v.clone(),
            };
            w.add_metadata(k.clone(), v).unwrap();
        }
        for t in good.tensors() {
            if t.name == skip {
                continue;
            }
            let mut dims = t.dims.clone();
            let mut data = good.tensor(&t.name).unwrap().data.to_vec();
            if let Some((name, d)) = &reshape {
                if *name == t.name {
                    dims = d.clone();
                    let n: u64 = d.iter().product();
                    data.resize(n as usize * 4, 0);
                }
            }
            w.add_tensor(t.name.clone(), t.ggml_type, &dims, data)
                .unwrap();
        }
        Model::from_gguf(Gguf::from_bytes(w.to_bytes().unwrap()).unwrap())
    };
    let msg = |r: Result<Model, PhiError>| r.err().expect("should fail").to_string();

    let m = msg(rewrite("blk.1.ffn_down.weight", None, None));
    assert!(
        m.contains("blk.1.ffn_down.weight") && m.contains("missing"),
        "{m}"
    );
    let m = msg(rewrite(
        "",
        Some(("blk.0.attn_qkv.weight", vec![128, 100])),
        None,
    ));
    assert!(
        m.contains("blk.0.attn_qkv.weight") && m.contains("384"),
        "{m}"
    );
    let m = msg(rewrite(
        "",
        None,
        Some(("general.architecture", Value::String("mamba".into()))),
    ));
    assert!(m.contains("mamba"), "{m}");
    let m = msg(rewrite(
        "",
        None,
        Some(("phi3.attention.head_count", Value::U32(3))),
    ));
    assert!(m.contains("head count"), "{m}");
    let m = msg(rewrite(
        "",
        None,
        Some(("phi3.attention.head_count_kv", Value::U32(3))),
    ));
    assert!(m.contains("kv head count"), "{m}");
    let m = msg(rewrite("", None, Some(("phi3.block_count", Value::U32(0)))));
    assert!(m.contains("block_count"), "{m}");
}

#[test]
fn contexts_beyond_the_memory_limit_are_refused() {
    let model = load(&SyntheticSpec::tiny_phi3());
    let p = ContextParams {
        n_ctx: 1 << 20,
        max_memory: 64 << 20,
        ..ContextParams::default()
    };
    let err = Context::new(Arc::clone(&model), &p)
        .err()
        .expect("should refuse");
    assert!(matches!(err, PhiError::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("-c"), "{err}");
    // An absurd context overflows the size computation: still an error, not a panic.
    let p = ContextParams {
        n_ctx: usize::MAX / 2,
        ..ContextParams::default()
    };
    assert!(Context::new(model, &p).is_err());
}

#[test]
fn quantized_kv_caches_stay_close_to_f32() {
    let model = load(&SyntheticSpec::tiny_phi3());
    let toks = prompt(40, model.config().n_vocab);
    let run = |kv_type| {
        let p = ContextParams {
            n_ctx: 64,
            n_threads: 2,
            kv_type,
            ..ContextParams::default()
        };
        let mut c = Context::new(Arc::clone(&model), &p).unwrap();
        c.eval(&toks[..30], false).unwrap();
        for &t in &toks[30..] {
            c.eval(&[t], false).unwrap();
        }
        c.last_logits().to_vec()
    };
    let exact = run(KvType::F32);
    let spread = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (kv, tol) in [(KvType::F16, 0.01), (KvType::Q8_0, 0.05)] {
        let d = max_diff(&exact, &run(kv));
        assert!(
            d > 0.0 && d < tol * spread,
            "{kv:?}: differs from f32 by {d} (spread {spread})"
        );
    }
    // A head size that is not a multiple of 32 cannot hold Q8_0 rows.
    let odd = load(&SyntheticSpec {
        n_head: 8,
        n_rot: 16,
        ..SyntheticSpec::tiny_phi3()
    }); // head 16
    let p = ContextParams {
        kv_type: KvType::Q8_0,
        ..ContextParams::default()
    };
    let err = Context::new(odd, &p).err().expect("should refuse");
    assert!(err.to_string().contains("multiple of 32"), "{err}");
}

/// Contexts sharing one pool compute what contexts with their own pools do,
/// and the thread counts for prompt and decode are applied apart.
#[test]
fn contexts_share_a_thread_pool() {
    let model = load(&SyntheticSpec::tiny_phi3());
    let toks = prompt(20, model.config().n_vocab);
    let run = |p: &ContextParams| {
        let mut c = Context::new(Arc::clone(&model), p).unwrap();
        c.eval(&toks, true).unwrap();
        let mut all = c.logits().to_vec();
        c.eval(&[7], false).unwrap();
        all.extend_from_slice(c.last_logits());
        (all, c.n_threads(), c.n_threads_batch())
    };
    let base = ContextParams {
        n_ctx: 64,
        kv_type: KvType::F32,
        ..Default::default()
    };
    let own = run(&ContextParams {
        n_threads: 1,
        n_threads_batch: 2,
        ..base.clone()
    });
    assert_eq!((own.1, own.2), (1, 2));
    let pool = phi::ThreadPool::new(2).unwrap();
    let shared = ContextParams {
        thread_pool: Some(pool.clone()),
        n_threads: 1,
        ..base
    };
    let (a, b) = (run(&shared), run(&shared));
    assert_eq!((a.1, a.2), (2, 2));
    assert_eq!(a.0, own.0);
    assert_eq!(b.0, own.0);
}
