//! The C API (`phi.h`): a thin layer over the Rust API.
//!
//! Every entry point catches panics and turns them into `PHI_ERR_PANIC`;
//! null pointers and invalid UTF-8 are errors, never crashes. The message of
//! the last error on the calling thread is available from `phi_last_error`.

// C naming: the header reads like llama.h, which our users know.
#![allow(non_camel_case_types)]

use crate::context::{Context, ContextParams, KvType};
use crate::error::PhiError;
use crate::generate::generate;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerParams};
use crate::tokenizer::chat::ChatMessage;
use crate::tokenizer::TextStream;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Status codes returned by every fallible call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum phi_status {
    PHI_OK = 0,
    /// A null pointer, invalid UTF-8 or an out-of-range value was passed.
    PHI_ERR_INVALID_ARGUMENT = 1,
    /// The file could not be read.
    PHI_ERR_IO = 2,
    /// The file is not a valid model phi.rs can run.
    PHI_ERR_MODEL = 3,
    /// The tokens do not fit in the context.
    PHI_ERR_CONTEXT_FULL = 4,
    /// A caller-supplied buffer is too small (the needed size is reported).
    PHI_ERR_BUFFER_TOO_SMALL = 5,
    /// An internal error (a bug): the call was abandoned safely.
    PHI_ERR_PANIC = 6,
}
use phi_status::*;

/// Opaque handle to a loaded model; shared read-only by any number of
/// contexts and threads.
pub struct phi_model {
    model: Arc<Model>,
}

/// Opaque handle to an inference context (KV cache, buffers, thread pool);
/// to be used by one thread at a time.
pub struct phi_context {
    ctx: Context,
}

/// Model loading parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_model_params {
    /// Map the file (true, the default) or read it into memory (false).
    pub use_mmap: bool,
}

/// Context parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_context_params {
    /// Context size in tokens (0 = the model's training context, capped at 4096).
    pub n_ctx: u32,
    /// Tokens per forward pass during prompt processing (0 = 512).
    pub n_batch: u32,
    /// Worker threads (0 = one per core).
    pub n_threads: u32,
    /// Store the KV cache as f32 instead of f16.
    pub kv_f32: bool,
    /// Apply the model's sliding attention window (llama.cpp does not).
    pub sliding_window: bool,
}

/// Sampling parameters (`phi_sampling_default_params` gives llama.cpp's defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_sampling_params {
    /// 0 = greedy.
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub seed: u64,
}

/// A chat message for `phi_chat_apply_template`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_chat_message {
    /// "system", "user" or "assistant" (UTF-8, NUL-terminated).
    pub role: *const c_char,
    /// The message text (UTF-8, NUL-terminated).
    pub content: *const c_char,
}

/// Receives each generated piece of text (UTF-8, `len` bytes, not
/// NUL-terminated). Return false to stop generation.
pub type phi_token_callback =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl Into<String>) {
    let msg = msg.into().replace('\0', " ");
    let c = CString::new(msg).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn status_of(e: &PhiError) -> phi_status {
    match e {
        PhiError::Gguf(g) if g.is_io() => PHI_ERR_IO,
        PhiError::ContextFull { .. } => PHI_ERR_CONTEXT_FULL,
        PhiError::BadToken { .. } | PhiError::InvalidArgument(_) => PHI_ERR_INVALID_ARGUMENT,
        _ => PHI_ERR_MODEL,
    }
}

/// Runs `f`, converting errors and panics into a status and `phi_last_error`.
fn guard(f: impl FnOnce() -> Result<(), (phi_status, String)>) -> phi_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => PHI_OK,
        Ok(Err((status, msg))) => {
            set_error(msg);
            status
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(format!("internal error: {msg}"));
            PHI_ERR_PANIC
        }
    }
}

fn phi_err(e: PhiError) -> (phi_status, String) {
    (status_of(&e), e.to_string())
}

fn invalid(msg: &str) -> (phi_status, String) {
    (PHI_ERR_INVALID_ARGUMENT, msg.to_string())
}

/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, (phi_status, String)> {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not valid UTF-8")))
}

/// # Safety
/// `p` is null or points to `n` readable `T`s.
unsafe fn slice_arg<'a, T>(
    p: *const T,
    n: usize,
    what: &str,
) -> Result<&'a [T], (phi_status, String)> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller promises n readable elements.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Copies `bytes` plus a NUL into `buf` of `cap` bytes; `*out_len` gets the
/// length without the NUL even when the buffer is too small.
///
/// # Safety
/// `buf` is null or points to `cap` writable bytes; `out_len` is null or writable.
unsafe fn write_out(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), (phi_status, String)> {
    if !out_len.is_null() {
        // SAFETY: non-null and writable per the contract.
        unsafe { *out_len = bytes.len() };
    }
    if buf.is_null() || cap < bytes.len() + 1 {
        return Err((
            PHI_ERR_BUFFER_TOO_SMALL,
            format!(
                "the buffer holds {cap} bytes, {} are needed",
                bytes.len() + 1
            ),
        ));
    }
    // SAFETY: buf has cap >= len + 1 writable bytes and cannot overlap our Rust-owned bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

/// # Safety
/// `p` is null or a pointer obtained from this library and not yet freed.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, (phi_status, String)> {
    // SAFETY: the caller promises a live handle or null; null is rejected here.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// # Safety
/// As for `handle`, and no other reference to the object is live.
unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, (phi_status, String)> {
    // SAFETY: the caller promises exclusive use of a live handle or null.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// The library version, e.g. "0.1.0" (static storage).
#[no_mangle]
pub extern "C" fn phi_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The message of the last error on this thread ("" if none). Valid until
/// the next failing call on this thread.
#[no_mangle]
pub extern "C" fn phi_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn phi_model_default_params() -> phi_model_params {
    phi_model_params { use_mmap: true }
}

#[no_mangle]
pub extern "C" fn phi_context_default_params() -> phi_context_params {
    phi_context_params {
        n_ctx: 0,
        n_batch: 512,
        n_threads: 0,
        kv_f32: false,
        sliding_window: true,
    }
}

#[no_mangle]
pub extern "C" fn phi_sampling_default_params() -> phi_sampling_params {
    let d = SamplerParams::default();
    phi_sampling_params {
        temperature: d.temperature,
        top_k: d.top_k as u32,
        top_p: d.top_p,
        min_p: d.min_p,
        repeat_penalty: d.repeat_penalty,
        repeat_last_n: d.repeat_last_n as u32,
        seed: d.seed,
    }
}

/// Loads a model. On success `*out` holds a handle to free with `phi_model_free`.
///
/// # Safety
/// `path` is a NUL-terminated string; `params` is null (defaults) or valid;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn phi_model_load(
    path: *const c_char,
    params: *const phi_model_params,
    out: *mut *mut phi_model,
) -> phi_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: out is non-null and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: path per the contract.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: params is null or valid per the contract.
        let params = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| phi_model_default_params());
        let model = if params.use_mmap {
            Model::load(path)
        } else {
            std::fs::read(path)
                .map_err(|e| PhiError::Gguf(e.into()))
                .and_then(|b| Model::from_gguf(phi_gguf::Gguf::from_bytes(b)?))
        }
        .map_err(phi_err)?;
        let h = Box::new(phi_model {
            model: Arc::new(model),
        });
        // SAFETY: out is non-null and writable.
        unsafe { *out = Box::into_raw(h) };
        Ok(())
    })
}

/// Frees a model. Contexts created from it keep it alive until they are freed.
///
/// # Safety
/// `model` is null or a handle from `phi_model_load`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn phi_model_free(model: *mut phi_model) {
    if !model.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once per the contract.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(model) })));
    }
}

/// The vocabulary size (0 if `model` is NULL).
///
/// # Safety
/// `model` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn phi_model_n_vocab(model: *const phi_model) -> u32 {
    // SAFETY: per the contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.model.config.n_vocab as u32)
}

/// Creates a context. On success `*out` holds a handle to free with `phi_context_free`.
///
/// # Safety
/// `model` is a live handle; `params` is null (defaults) or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn phi_context_new(
    model: *const phi_model,
    params: *const phi_context_params,
    out: *mut *mut phi_context,
) -> phi_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: out is non-null and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: per the contract.
        let model = unsafe { handle(model, "model") }?;
        // SAFETY: params is null or valid per the contract.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| phi_context_default_params());
        let params = ContextParams {
            n_ctx: p.n_ctx as usize,
            n_batch: if p.n_batch == 0 {
                512
            } else {
                p.n_batch as usize
            },
            n_threads: p.n_threads as usize,
            kv_type: if p.kv_f32 { KvType::F32 } else { KvType::F16 },
            sliding_window: p.sliding_window,
            max_memory: 0,
        };
        let ctx = Context::new(Arc::clone(&model.model), &params).map_err(phi_err)?;
        // SAFETY: out is non-null and writable.
        unsafe { *out = Box::into_raw(Box::new(phi_context { ctx })) };
        Ok(())
    })
}

/// Frees a context.
///
/// # Safety
/// `ctx` is null or a handle from `phi_context_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn phi_context_free(ctx: *mut phi_context) {
    if !ctx.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once per the contract.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(ctx) })));
    }
}

/// Forgets the context's tokens (clears the KV cache position).
///
/// # Safety
/// `ctx` is null or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn phi_context_reset(ctx: *mut phi_context) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        unsafe { handle_mut(ctx, "ctx") }?.ctx.reset();
        Ok(())
    })
}

/// Tokenizes UTF-8 `text`. Writes up to `cap` ids to `out` and sets
/// `*n_tokens` to the number of ids the text has; returns
/// PHI_ERR_BUFFER_TOO_SMALL (having written nothing) when `cap` is smaller.
///
/// # Safety
/// `model` is a live handle; `text` is NUL-terminated; `out` has `cap`
/// writable ids; `n_tokens` is writable.
#[no_mangle]
pub unsafe extern "C" fn phi_tokenize(
    model: *const phi_model,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    out: *mut i32,
    cap: usize,
    n_tokens: *mut usize,
) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        let model = unsafe { handle(model, "model") }?;
        // SAFETY: per the contract.
        let text = unsafe { str_arg(text, "text") }?;
        let ids = model
            .model
            .tokenizer()
            .encode(text, add_special, parse_special);
        if n_tokens.is_null() {
            return Err(invalid("n_tokens is NULL"));
        }
        // SAFETY: non-null and writable per the contract.
        unsafe { *n_tokens = ids.len() };
        if ids.len() > cap || (out.is_null() && !ids.is_empty()) {
            return Err((
                PHI_ERR_BUFFER_TOO_SMALL,
                format!("the text has {} tokens, the buffer holds {cap}", ids.len()),
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            // SAFETY: i < ids.len() <= cap, and out has cap writable ids.
            unsafe { *out.add(i) = *id as i32 };
        }
        Ok(())
    })
}

fn token_ids(ids: &[i32], n_vocab: usize) -> Result<Vec<u32>, (phi_status, String)> {
    ids.iter()
        .map(|&t| {
            if t >= 0 && (t as usize) < n_vocab {
                Ok(t as u32)
            } else {
                Err(invalid(&format!(
                    "token id {t} is outside the vocabulary (0..{n_vocab})"
                )))
            }
        })
        .collect()
}

/// Turns ids back into UTF-8 text (NUL-terminated in `buf`; `*out_len` gets
/// the length without the NUL, also when the buffer is too small).
///
/// # Safety
/// `model` is a live handle; `ids` has `n` readable ids; `buf` has `cap`
/// writable bytes; `out_len` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn phi_detokenize(
    model: *const phi_model,
    ids: *const i32,
    n: usize,
    remove_special: bool,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        let model = unsafe { handle(model, "model") }?;
        // SAFETY: per the contract.
        let ids = token_ids(
            unsafe { slice_arg(ids, n, "ids") }?,
            model.model.config.n_vocab,
        )?;
        let text = model
            .model
            .tokenizer()
            .detokenize(&ids, remove_special, false);
        // SAFETY: per the contract.
        unsafe { write_out(text.as_bytes(), buf, cap, out_len) }
    })
}

/// Appends `n` tokens to the context's sequence and runs them through the model.
///
/// # Safety
/// `ctx` is a live handle used by no other thread; `tokens` has `n` readable ids.
#[no_mangle]
pub unsafe extern "C" fn phi_eval(
    ctx: *mut phi_context,
    tokens: *const i32,
    n: usize,
) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        let c = unsafe { handle_mut(ctx, "ctx") }?;
        let n_vocab = c.ctx.model().config.n_vocab;
        // SAFETY: per the contract.
        let ids = token_ids(unsafe { slice_arg(tokens, n, "tokens") }?, n_vocab)?;
        c.ctx.eval(&ids, false).map_err(phi_err)
    })
}

/// The logits of the last evaluated position (`n_vocab` floats), or NULL
/// before any evaluation. Valid until the next call on this context.
///
/// # Safety
/// `ctx` is null or a live handle; `n_vocab` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn phi_get_logits(
    ctx: *const phi_context,
    n_vocab: *mut usize,
) -> *const f32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        let Some(c) = (unsafe { ctx.as_ref() }) else {
            set_error("ctx is NULL");
            return std::ptr::null();
        };
        let logits = c.ctx.last_logits();
        if !n_vocab.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { *n_vocab = logits.len() };
        }
        if logits.is_empty() {
            std::ptr::null()
        } else {
            logits.as_ptr()
        }
    }))
    .unwrap_or(std::ptr::null())
}

/// Evaluates `prompt` (appended to the context), then samples up to
/// `max_tokens` tokens, calling `callback` with each piece of text. Stops at
/// an end-of-generation token, after `max_tokens`, or when the callback
/// returns false. `*n_generated` (if not null) gets the count.
///
/// # Safety
/// `ctx` is a live handle used by no other thread; `prompt` has `n_prompt`
/// readable ids; `params` is null (defaults) or valid; `n_generated` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn phi_generate(
    ctx: *mut phi_context,
    prompt: *const i32,
    n_prompt: usize,
    params: *const phi_sampling_params,
    max_tokens: usize,
    callback: phi_token_callback,
    user_data: *mut c_void,
    n_generated: *mut usize,
) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        let c = unsafe { handle_mut(ctx, "ctx") }?;
        let model = Arc::clone(c.ctx.model());
        // SAFETY: per the contract.
        let ids = token_ids(
            unsafe { slice_arg(prompt, n_prompt, "prompt") }?,
            model.config.n_vocab,
        )?;
        // SAFETY: params is null or valid per the contract.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| phi_sampling_default_params());
        let mut sampler = Sampler::new(SamplerParams {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n as usize,
            seed: p.seed,
        });
        let tok = model.tokenizer();
        let mut stream = TextStream::new(tok, false);
        let emit = |text: &str| -> bool {
            match callback {
                // SAFETY: the caller's callback, given a pointer to `text.len()` readable bytes.
                Some(cb) if !text.is_empty() => unsafe {
                    cb(text.as_ptr() as *const c_char, text.len(), user_data)
                },
                _ => true,
            }
        };
        let stats = generate(
            &mut c.ctx,
            &mut sampler,
            &ids,
            max_tokens,
            |t| tok.is_eog(t),
            |t| {
                let piece = stream.push(t);
                if emit(&piece) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        )
        .map_err(phi_err)?;
        let tail = stream.finish();
        emit(&tail);
        if !n_generated.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { *n_generated = stats.generated_tokens };
        }
        Ok(())
    })
}

/// Renders `messages` with the model's chat template (or Phi-3's format when
/// the model has none) into `buf` (NUL-terminated; `*out_len` gets the length
/// without the NUL, also when the buffer is too small). With
/// `add_assistant`, the text ends with the prompt for the assistant's reply.
/// Tokenize the result with `parse_special` = true.
///
/// # Safety
/// `model` is a live handle; `messages` has `n` readable messages whose
/// strings are NUL-terminated; `buf` has `cap` writable bytes; `out_len` is
/// null or writable.
#[no_mangle]
pub unsafe extern "C" fn phi_chat_apply_template(
    model: *const phi_model,
    messages: *const phi_chat_message,
    n: usize,
    add_assistant: bool,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> phi_status {
    guard(|| {
        // SAFETY: per the contract.
        let model = unsafe { handle(model, "model") }?;
        // SAFETY: per the contract.
        let msgs = unsafe { slice_arg(messages, n, "messages") }?;
        let mut chat = Vec::with_capacity(msgs.len());
        for m in msgs {
            // SAFETY: the strings of each message are NUL-terminated per the contract.
            let role = unsafe { str_arg(m.role, "message role") }?;
            // SAFETY: as above.
            let content = unsafe { str_arg(m.content, "message content") }?;
            chat.push(ChatMessage::new(role, content));
        }
        let text = model
            .model
            .tokenizer()
            .apply_chat_template(&chat, add_assistant)
            .map_err(|e| (PHI_ERR_INVALID_ARGUMENT, e.to_string()))?;
        // SAFETY: per the contract.
        unsafe { write_out(text.as_bytes(), buf, cap, out_len) }
    })
}
