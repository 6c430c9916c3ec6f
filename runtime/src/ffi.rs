//! The C API (`phi.h`): a thin layer over the Rust API.
//!
//! Every entry point catches panics and turns them into `PHI_ERR_INTERNAL`;
//! null pointers and invalid UTF-8 are errors, never crashes. The message of
//! the last error on the calling thread is available from `phi_last_error`.

// C naming: the header reads like llama.h, which our users know.
#![allow(non_camel_case_types)]

use crate::context::{Context, ContextParams, KvType};
use crate::error::{ErrorKind, PhiError};
use crate::generate::{generate, StopReason};
use crate::model::{Model, ModelOptions};
use crate::sampler::{Sampler, SamplerParams};
use crate::threads::ThreadPool;
use crate::tokenizer::chat::ChatMessage;
use crate::tokenizer::TextStream;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Status codes returned by every fallible call: one per kind of failure
/// (`phi::ErrorKind`), plus `PHI_ERR_BUFFER_TOO_SMALL` and
/// `PHI_ERR_CANCELLED`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum phi_status {
    PHI_OK = 0,
    /// A null pointer, invalid UTF-8 or an out-of-range value was passed.
    PHI_ERR_INVALID_ARGUMENT = 1,
    /// The file could not be opened or read.
    PHI_ERR_IO = 2,
    /// The file is not a well-formed model (bad GGUF, missing or mis-shaped
    /// tensors, inconsistent hyper-parameters, a broken vocabulary).
    PHI_ERR_INVALID_MODEL = 3,
    /// The tokens do not fit in the context.
    PHI_ERR_CONTEXT_FULL = 4,
    /// A caller-supplied buffer is too small (the needed size is reported).
    PHI_ERR_BUFFER_TOO_SMALL = 5,
    /// An internal error (a bug): the call was abandoned safely.
    PHI_ERR_INTERNAL = 6,
    /// A well-formed model phi.rs cannot run (architecture, tensor type,
    /// tokenizer model).
    PHI_ERR_UNSUPPORTED_MODEL = 7,
    /// Not enough memory (or threads) for the model or context asked for.
    PHI_ERR_OUT_OF_MEMORY = 8,
    /// The caller stopped the call (`phi_generate`'s callback returned false);
    /// what was produced until then is reported as on success.
    PHI_ERR_CANCELLED = 9,
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

/// Opaque handle to a pool of worker threads that several contexts may
/// share (`phi_context_params.thread_pool`). Contexts keep the threads alive:
/// the handle may be freed while contexts still use the pool.
pub struct phi_thread_pool {
    pool: ThreadPool,
}

/// Element type of a context's KV cache (`phi_context_params.kv_type`).
pub type phi_kv_type = u32;
/// 16-bit floats (the default).
pub const PHI_KV_F16: phi_kv_type = 0;
/// 32-bit floats.
pub const PHI_KV_F32: phi_kv_type = 1;
/// ggml's Q8_0 blocks (the model's head size must be a multiple of 32).
pub const PHI_KV_Q8_0: phi_kv_type = 2;

/// Model loading parameters. Start from `phi_model_default_params()`, which
/// sets `size`: the library reads only the fields a caller's version of
/// this struct has, so fields can be added without breaking callers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_model_params {
    /// `sizeof(phi_model_params)` as the caller was compiled.
    pub size: usize,
    /// Map the file (true, the default) or read it into memory (false).
    pub use_mmap: bool,
    /// Repack the weights into the kernels' faster layout where this CPU has
    /// one, releasing their mapped pages (default: true, unless the
    /// environment has `PHI_REPACK=0`).
    pub repack: bool,
}

/// Context parameters. Start from `phi_context_default_params()`, which
/// sets `size` (see `phi_model_params`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct phi_context_params {
    /// `sizeof(phi_context_params)` as the caller was compiled.
    pub size: usize,
    /// Context size in tokens (0 = the model's training context, capped at 4096).
    pub n_ctx: u32,
    /// Tokens per forward pass during prompt processing (0 = the default, 512).
    pub n_batch: u32,
    /// Worker threads for decoding (0 = one per physical core).
    pub n_threads: u32,
    /// Worker threads for prompt processing (0 = as `n_threads`).
    pub n_threads_batch: u32,
    /// A pool shared with other contexts (NULL = the context starts its
    /// own); when set, `n_threads` and `n_threads_batch` are not used.
    pub thread_pool: *const phi_thread_pool,
    /// KV cache element type: `PHI_KV_F16`, `PHI_KV_F32` or `PHI_KV_Q8_0`.
    pub kv_type: phi_kv_type,
    /// Apply the model's sliding attention window (llama.cpp does not).
    pub sliding_window: bool,
    /// Refuse a context whose KV cache and buffers need more than this many
    /// bytes (0 = the memory the system reports as available).
    pub max_memory: u64,
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
    match e.kind() {
        ErrorKind::InvalidArgument => PHI_ERR_INVALID_ARGUMENT,
        ErrorKind::Io => PHI_ERR_IO,
        ErrorKind::InvalidModel => PHI_ERR_INVALID_MODEL,
        ErrorKind::UnsupportedModel => PHI_ERR_UNSUPPORTED_MODEL,
        ErrorKind::OutOfMemory => PHI_ERR_OUT_OF_MEMORY,
        ErrorKind::ContextFull => PHI_ERR_CONTEXT_FULL,
        ErrorKind::Internal => PHI_ERR_INTERNAL,
    }
}

/// Reads a caller's params struct of `T`'s layout whose first field is its
/// `size`: null = `defaults`; otherwise the caller's first `size` bytes over
/// `defaults` (an older caller's struct is a prefix of ours).
///
/// # Safety
/// `p` is null or points to a struct whose first field, a `usize`, is
/// readable and holds how many bytes of the struct are readable.
unsafe fn read_params<T: Copy>(
    p: *const T,
    defaults: T,
    min_size: usize,
    what: &str,
) -> Result<T, (phi_status, String)> {
    if p.is_null() {
        return Ok(defaults);
    }
    // SAFETY: non-null, and the caller promises a readable leading size field.
    let size = unsafe { (p as *const usize).read_unaligned() };
    let ours = std::mem::size_of::<T>();
    if size < min_size || size > ours {
        return Err(invalid(&format!(
            "{what}.size is {size}, expected {ours}: start from {what_default}() \
             (and build against the phi.h of this library)",
            what_default = what.replace("_params", "_default_params")
        )));
    }
    let mut out = defaults;
    // SAFETY: the caller's struct has `size` readable bytes; `out` has
    // `ours >= size` writable bytes; the two do not overlap. The fields are
    // plain data, and `size` is a field boundary of some version of `T`.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, size) };
    Ok(out)
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
            PHI_ERR_INTERNAL
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

/// The default model parameters (`size` set): those of the Rust API,
/// `PHI_REPACK=0` in the environment turning repacking off.
#[no_mangle]
pub extern "C" fn phi_model_default_params() -> phi_model_params {
    let d = ModelOptions::from_env();
    phi_model_params {
        size: std::mem::size_of::<phi_model_params>(),
        use_mmap: true,
        repack: d.repack,
    }
}

/// The default context parameters (`size` set): those of the Rust API.
#[no_mangle]
pub extern "C" fn phi_context_default_params() -> phi_context_params {
    let d = ContextParams::default();
    phi_context_params {
        size: std::mem::size_of::<phi_context_params>(),
        n_ctx: u32::try_from(d.n_ctx).unwrap_or(u32::MAX),
        n_batch: u32::try_from(d.n_batch).unwrap_or(u32::MAX),
        n_threads: u32::try_from(d.n_threads).unwrap_or(u32::MAX),
        n_threads_batch: u32::try_from(d.n_threads_batch).unwrap_or(u32::MAX),
        thread_pool: std::ptr::null(),
        kv_type: match d.kv_type {
            KvType::F16 => PHI_KV_F16,
            KvType::F32 => PHI_KV_F32,
            KvType::Q8_0 => PHI_KV_Q8_0,
        },
        sliding_window: d.sliding_window,
        max_memory: d.max_memory as u64,
    }
}

/// Starts a pool of `n_threads` worker threads (0 = one per physical core)
/// for contexts to share. On success `*out` holds a handle to free with
/// `phi_thread_pool_free`.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn phi_thread_pool_new(
    n_threads: u32,
    out: *mut *mut phi_thread_pool,
) -> phi_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: out is non-null and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        let pool = ThreadPool::new(n_threads as usize).map_err(phi_err)?;
        // SAFETY: out is non-null and writable.
        unsafe { *out = Box::into_raw(Box::new(phi_thread_pool { pool })) };
        Ok(())
    })
}

/// Frees a thread pool handle. Contexts using the pool keep its threads
/// until they are freed.
///
/// # Safety
/// `pool` is null or a handle from `phi_thread_pool_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn phi_thread_pool_free(pool: *mut phi_thread_pool) {
    if !pool.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once per the contract.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(pool) })));
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
/// `path` is a NUL-terminated string; `params` is null (defaults) or a
/// struct from `phi_model_default_params` (its `size` set); `out` is writable.
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
        let params = unsafe {
            read_params(
                params,
                phi_model_default_params(),
                std::mem::size_of::<phi_model_params>(),
                "phi_model_params",
            )
        }?;
        // The C API keeps its contract: every packed matrix is copied at
        // load (no thread is left running behind the caller).
        let options = ModelOptions {
            repack: params.repack,
            stream: false,
        };
        let model = if params.use_mmap {
            Model::load_with(path, &options)
        } else {
            std::fs::read(path)
                .map_err(|e| PhiError::Gguf(e.into()))
                .and_then(|b| Model::from_gguf_with(phi_gguf::Gguf::from_bytes(b)?, &options))
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
/// `model` is a live handle; `params` is null (defaults) or a struct from
/// `phi_context_default_params` (its `size` set) whose `thread_pool` is null
/// or a live handle; `out` is writable.
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
        let p = unsafe {
            read_params(
                params,
                phi_context_default_params(),
                std::mem::size_of::<phi_context_params>(),
                "phi_context_params",
            )
        }?;
        let d = ContextParams::default();
        let kv_type = match p.kv_type {
            PHI_KV_F16 => KvType::F16,
            PHI_KV_F32 => KvType::F32,
            PHI_KV_Q8_0 => KvType::Q8_0,
            other => return Err(invalid(&format!("unknown kv_type {other}"))),
        };
        let max_memory = usize::try_from(p.max_memory)
            .map_err(|_| invalid("max_memory does not fit this machine's address space"))?;
        // SAFETY: thread_pool is null or a live handle per the contract.
        let thread_pool = unsafe { p.thread_pool.as_ref() }.map(|h| h.pool.clone());
        let params = ContextParams {
            n_ctx: p.n_ctx as usize,
            n_batch: if p.n_batch == 0 {
                d.n_batch
            } else {
                p.n_batch as usize
            },
            n_threads: p.n_threads as usize,
            n_threads_batch: p.n_threads_batch as usize,
            thread_pool,
            kv_type,
            sliding_window: p.sliding_window,
            max_memory,
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
/// an end-of-generation token or after `max_tokens` (PHI_OK), or when the
/// callback returns false (PHI_ERR_CANCELLED; the tokens generated so far
/// stay in the context). `*n_generated` (if not null) gets the count.
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
        if !n_generated.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { *n_generated = stats.generated_tokens };
        }
        if stats.stop == StopReason::Callback {
            return Err((
                PHI_ERR_CANCELLED,
                "the callback stopped generation".to_string(),
            ));
        }
        emit(&tail);
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
