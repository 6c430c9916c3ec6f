//! The C API: error handling at the boundary, concurrent contexts, chat
//! templates, and no leaked handles (the C example program is tested in
//! cli/tests/c_example.rs against `phi run`).

use phi::ffi::*;
use phi::Model;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod common;

/// Counts live heap bytes, so a test can see that everything is released.
#[global_allocator]
static ALLOC: common::counting_alloc::Counting = common::counting_alloc::Counting;

/// Tests in this file that measure LIVE must not overlap with others.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn last_error() -> String {
    // SAFETY: phi_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(phi_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn load(path: &Path) -> *mut phi_model {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = std::ptr::null_mut();
    // SAFETY: valid string, null params (defaults), writable out.
    let st = unsafe { phi_model_load(p.as_ptr(), std::ptr::null(), &mut m) };
    assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
    m
}

/// Greedy ids through the C API on a fresh context with default params.
fn c_greedy(model: *const phi_model, prompt: &[i32], n: usize) -> Vec<i32> {
    c_greedy_with(model, std::ptr::null(), prompt, n)
}

#[test]
fn contexts_on_one_model_run_concurrently() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = load(&fixture("phi3-tiny-q8_0.gguf"));
    let prompts: Vec<Vec<i32>> = (0..4).map(|i| vec![1, 10 + i, 300, 301 + i * 7]).collect();
    let expected: Vec<Vec<i32>> = prompts.iter().map(|p| c_greedy(model, p, 12)).collect();
    let shared = model as usize; // a read-only model may be shared across threads
    let handles: Vec<_> = prompts
        .clone()
        .into_iter()
        .map(|p| std::thread::spawn(move || c_greedy(shared as *const phi_model, &p, 12)))
        .collect();
    for (h, want) in handles.into_iter().zip(&expected) {
        assert_eq!(&h.join().unwrap(), want);
    }
    // SAFETY: live handle, freed once, no context uses it any more.
    unsafe { phi_model_free(model) };
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut m = std::ptr::null_mut();
    // SAFETY: null path is allowed and must be rejected.
    let st = unsafe { phi_model_load(std::ptr::null(), std::ptr::null(), &mut m) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("NULL"));
    let bad_utf8 = [0xffu8, 0xfe, 0];
    // SAFETY: NUL-terminated bytes.
    let st =
        unsafe { phi_model_load(bad_utf8.as_ptr() as *const c_char, std::ptr::null(), &mut m) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("UTF-8"));
    let missing = CString::new("/no/such/model.gguf").unwrap();
    // SAFETY: valid string.
    let st = unsafe { phi_model_load(missing.as_ptr(), std::ptr::null(), &mut m) };
    assert_eq!(st, phi_status::PHI_ERR_IO);
    assert!(m.is_null());
    let not_gguf = CString::new(root().join("README.md").to_str().unwrap()).unwrap();
    // SAFETY: valid string.
    let st = unsafe { phi_model_load(not_gguf.as_ptr(), std::ptr::null(), &mut m) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_MODEL, "{}", last_error());

    let model = load(&fixture("phi3-tiny-q8_0.gguf"));
    let text = CString::new("Hello world").unwrap();
    let mut n = 0usize;
    // SAFETY: live model; no output buffer, n writable.
    let st = unsafe {
        phi_tokenize(
            model,
            text.as_ptr(),
            true,
            false,
            std::ptr::null_mut(),
            0,
            &mut n,
        )
    };
    assert_eq!(st, phi_status::PHI_ERR_BUFFER_TOO_SMALL);
    assert!(n >= 2);
    let mut ctx = std::ptr::null_mut();
    // SAFETY: live model.
    let st = unsafe { phi_context_new(model, std::ptr::null(), &mut ctx) };
    assert_eq!(st, phi_status::PHI_OK);
    let bad = [1, 99_999];
    // SAFETY: live context, readable tokens.
    let st = unsafe { phi_eval(ctx, bad.as_ptr(), 2) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("99999"));
    // SAFETY: null context must be rejected.
    let st = unsafe { phi_eval(std::ptr::null_mut(), bad.as_ptr(), 1) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    let long = vec![5i32; 10_000];
    // SAFETY: live context, readable tokens.
    let st = unsafe { phi_eval(ctx, long.as_ptr(), long.len()) };
    assert_eq!(st, phi_status::PHI_ERR_CONTEXT_FULL);
    // SAFETY: live handles, freed once; null frees are no-ops.
    unsafe {
        phi_context_free(ctx);
        phi_model_free(model);
        phi_model_free(std::ptr::null_mut());
        phi_context_free(std::ptr::null_mut());
    }
}

#[test]
fn freeing_handles_releases_their_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up lazily-initialised globals (kernel dispatch, thread-local error slot).
    let m = load(&fixture("phi3-tiny-q8_0.gguf"));
    c_greedy(m, &[1, 2, 3], 2);
    // SAFETY: live handle.
    unsafe { phi_model_free(m) };
    let before = common::counting_alloc::live();
    for _ in 0..3 {
        let m = load(&fixture("phi3-tiny-q8_0.gguf"));
        c_greedy(m, &[1, 2, 3], 2);
        // SAFETY: live handle, freed once.
        unsafe { phi_model_free(m) };
    }
    let after = common::counting_alloc::live();
    // Rayon worker threads exit asynchronously; allow a few KiB of slack for them.
    assert!(
        after - before < 64 * 1024,
        "{} bytes still allocated",
        after - before
    );
}

#[test]
fn chat_template_renders_through_the_c_api() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = load(&fixture("phi3-tiny-q8_0.gguf"));
    let (sys, user) = (
        CString::new("system").unwrap(),
        CString::new("user").unwrap(),
    );
    let (be_brief, hello) = (
        CString::new("Be brief.").unwrap(),
        CString::new("Hello!").unwrap(),
    );
    let msgs = [
        phi_chat_message {
            role: sys.as_ptr(),
            content: be_brief.as_ptr(),
        },
        phi_chat_message {
            role: user.as_ptr(),
            content: hello.as_ptr(),
        },
    ];
    let mut len = 0usize;
    // SAFETY: live model, readable messages, no buffer: reports the length.
    let st = unsafe {
        phi_chat_apply_template(
            model,
            msgs.as_ptr(),
            2,
            true,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    assert_eq!(st, phi_status::PHI_ERR_BUFFER_TOO_SMALL);
    let mut buf = vec![0u8; len + 1];
    // SAFETY: buf has len + 1 writable bytes.
    let st = unsafe {
        phi_chat_apply_template(
            model,
            msgs.as_ptr(),
            2,
            true,
            buf.as_mut_ptr() as *mut c_char,
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
    let text = std::str::from_utf8(&buf[..len]).unwrap();
    let rust = Model::load(fixture("phi3-tiny-q8_0.gguf")).unwrap();
    let want = rust
        .tokenizer()
        .apply_chat_template(
            &[
                phi::tokenizer::chat::ChatMessage::new("system", "Be brief."),
                phi::tokenizer::chat::ChatMessage::new("user", "Hello!"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(text, want);
    assert!(
        text.contains("Hello!") && text.contains("<|assistant|>"),
        "{text}"
    );
    let bad = [phi_chat_message {
        role: std::ptr::null(),
        content: hello.as_ptr(),
    }];
    // SAFETY: a null role must be rejected, not read.
    let st = unsafe {
        phi_chat_apply_template(
            model,
            bad.as_ptr(),
            1,
            true,
            buf.as_mut_ptr() as *mut c_char,
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    // SAFETY: live handle, freed once.
    unsafe { phi_model_free(model) };
}

/// Greedy ids through the C API on a fresh context made with `params`
/// (null: the defaults).
fn c_greedy_with(
    model: *const phi_model,
    params: *const phi_context_params,
    prompt: &[i32],
    n: usize,
) -> Vec<i32> {
    let mut ctx = std::ptr::null_mut();
    // SAFETY: live model, params null or from phi_context_default_params, writable out.
    let st = unsafe { phi_context_new(model, params, &mut ctx) };
    assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
    let mut out = Vec::new();
    let mut toks = prompt.to_vec();
    for _ in 0..n {
        // SAFETY: live context used by this thread only; toks readable.
        let st = unsafe { phi_eval(ctx, toks.as_ptr(), toks.len()) };
        assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
        let mut nv = 0usize;
        // SAFETY: live context; nv writable.
        let logits = unsafe { phi_get_logits(ctx, &mut nv) };
        // SAFETY: phi_get_logits returned nv floats, valid until the next call.
        let row = unsafe { std::slice::from_raw_parts(logits, nv) };
        let next = phi::sampler::argmax(row) as i32;
        out.push(next);
        toks = vec![next];
    }
    // SAFETY: live handle, freed once.
    unsafe { phi_context_free(ctx) };
    out
}

#[test]
fn default_params_are_the_rust_defaults() {
    let c = phi_context_default_params();
    let r = phi::ContextParams::default();
    assert_eq!(c.size, std::mem::size_of::<phi_context_params>());
    assert_eq!(
        (c.n_ctx as usize, c.n_batch as usize, c.n_threads as usize),
        (r.n_ctx, r.n_batch, r.n_threads)
    );
    assert_eq!(c.n_threads_batch as usize, r.n_threads_batch);
    assert!(c.thread_pool.is_null() && r.thread_pool.is_none());
    assert_eq!((c.kv_type, r.kv_type), (PHI_KV_F16, phi::KvType::F16));
    assert_eq!(c.sliding_window, r.sliding_window);
    assert_eq!(c.max_memory as usize, r.max_memory);
    let m = phi_model_default_params();
    assert_eq!(m.size, std::mem::size_of::<phi_model_params>());
    assert!(m.use_mmap);
    assert_eq!(m.repack, phi::ModelOptions::from_env().repack);
}

#[test]
fn context_params_reach_the_context() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = load(&fixture("phi3-tiny-q8_0.gguf"));
    let prompt = [1, 10, 300, 301];
    let want = c_greedy(model, &prompt, 8);
    let new_ctx = |p: &phi_context_params| {
        let mut ctx = std::ptr::null_mut();
        // SAFETY: live model, readable params, writable out.
        let st = unsafe { phi_context_new(model, p, &mut ctx) };
        // SAFETY: a null or live handle, freed once.
        unsafe { phi_context_free(ctx) };
        st
    };

    // A struct not made by phi_context_default_params (size unset) or from
    // a newer header (size too large) is refused, not misread.
    let mut p = phi_context_default_params();
    p.size = 0;
    assert_eq!(new_ctx(&p), phi_status::PHI_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("size"), "{}", last_error());
    p.size = std::mem::size_of::<phi_context_params>() + 8;
    assert_eq!(new_ctx(&p), phi_status::PHI_ERR_INVALID_ARGUMENT);
    let mut p = phi_context_default_params();
    p.kv_type = 7;
    assert_eq!(new_ctx(&p), phi_status::PHI_ERR_INVALID_ARGUMENT);

    // max_memory: a tiny limit is out of memory.
    let mut p = phi_context_default_params();
    p.max_memory = 4096;
    assert_eq!(new_ctx(&p), phi_status::PHI_ERR_OUT_OF_MEMORY);
    assert!(last_error().contains("4096"), "{}", last_error());

    // Every KV type runs; f32 and f16 agree with the default on greedy ids.
    for (kv, exact) in [(PHI_KV_F32, true), (PHI_KV_F16, true), (PHI_KV_Q8_0, false)] {
        let mut p = phi_context_default_params();
        p.kv_type = kv;
        p.n_threads = 1;
        p.n_threads_batch = 2;
        let got = c_greedy_with(model, &p, &prompt, 8);
        assert_eq!(got.len(), 8);
        if exact {
            assert_eq!(got, want, "kv type {kv}");
        }
    }

    // Two contexts on one shared pool give what separate pools give.
    let mut pool = std::ptr::null_mut();
    // SAFETY: writable out.
    let st = unsafe { phi_thread_pool_new(2, &mut pool) };
    assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
    let mut p = phi_context_default_params();
    p.thread_pool = pool;
    let a = c_greedy_with(model, &p, &prompt, 8);
    let b = c_greedy_with(model, &p, &prompt, 8);
    assert_eq!((a, b), (want.clone(), want));
    // SAFETY: live handles, freed once.
    unsafe {
        phi_thread_pool_free(pool);
        phi_model_free(model);
    }
}

#[test]
fn failure_kinds_have_their_own_status() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A well-formed file of an architecture phi.rs does not run.
    let g = phi_gguf::Gguf::open(fixture("phi3-tiny-q8_0.gguf")).unwrap();
    let mut w = phi_gguf::GgufWriter::new();
    for (k, v) in g.metadata() {
        let v = if k == "general.architecture" {
            phi_gguf::Value::String("mamba".into())
        } else {
            v.clone()
        };
        w.add_metadata(k.clone(), v).unwrap();
    }
    for t in g.tensor_views() {
        w.add_tensor(t.info.name.clone(), t.info.ggml_type, &t.info.dims, t.data)
            .unwrap();
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api_mamba.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = std::ptr::null_mut();
    // SAFETY: valid string, null params, writable out.
    let st = unsafe { phi_model_load(p.as_ptr(), std::ptr::null(), &mut m) };
    assert_eq!(
        st,
        phi_status::PHI_ERR_UNSUPPORTED_MODEL,
        "{}",
        last_error()
    );
    assert!(m.is_null());

    // Model params: size checked; repack off and reading into memory work.
    let fx = CString::new(fixture("phi3-tiny-q4_0.gguf").to_str().unwrap()).unwrap();
    let mut mp = phi_model_default_params();
    mp.size = 1;
    // SAFETY: valid string, readable params, writable out.
    let st = unsafe { phi_model_load(fx.as_ptr(), &mp, &mut m) };
    assert_eq!(st, phi_status::PHI_ERR_INVALID_ARGUMENT);
    let mut greedy = Vec::new();
    for (use_mmap, repack) in [(true, true), (true, false), (false, false)] {
        let mut mp = phi_model_default_params();
        mp.use_mmap = use_mmap;
        mp.repack = repack;
        // SAFETY: valid string, readable params, writable out.
        let st = unsafe { phi_model_load(fx.as_ptr(), &mp, &mut m) };
        assert_eq!(st, phi_status::PHI_OK, "{}", last_error());
        greedy.push(c_greedy(m, &[1, 2, 3], 4));
        // SAFETY: live handle, freed once.
        unsafe { phi_model_free(m) };
    }
    assert_eq!(greedy[1], greedy[2]);
    assert_eq!(greedy[0].len(), 4);
}
