/* phi.h: the C API of phi.rs (libphi.a / libphi.so).
 *
 * Generated from runtime/src/ffi.rs by cbindgen; do not edit by hand.
 * Regenerate with: PHI_BLESS=1 cargo test -p phi --test header
 * Build the library with the C API: cargo build --release -p phi --features capi
 *
 * Threading: a phi_model is read-only once loaded and may be shared by any
 * number of threads and contexts. A phi_context must be used by one thread
 * at a time. phi_last_error() is per thread.
 *
 * Link: cc app.c -Iruntime/include target/release/libphi.a -lpthread -ldl -lm
 */

#ifndef PHI_H
#define PHI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// Status codes returned by every fallible call: one per kind of failure
// (`phi::ErrorKind`), plus `PHI_ERR_BUFFER_TOO_SMALL` and
// `PHI_ERR_CANCELLED`.
enum phi_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  PHI_OK = 0,
  // A null pointer, invalid UTF-8 or an out-of-range value was passed.
  PHI_ERR_INVALID_ARGUMENT = 1,
  // The file could not be opened or read.
  PHI_ERR_IO = 2,
  // The file is not a well-formed model (bad GGUF, missing or mis-shaped
  // tensors, inconsistent hyper-parameters, a broken vocabulary).
  PHI_ERR_INVALID_MODEL = 3,
  // The tokens do not fit in the context.
  PHI_ERR_CONTEXT_FULL = 4,
  // A caller-supplied buffer is too small (the needed size is reported).
  PHI_ERR_BUFFER_TOO_SMALL = 5,
  // An internal error (a bug): the call was abandoned safely.
  PHI_ERR_INTERNAL = 6,
  // A well-formed model phi.rs cannot run (architecture, tensor type,
  // tokenizer model).
  PHI_ERR_UNSUPPORTED_MODEL = 7,
  // Not enough memory (or threads) for the model or context asked for.
  PHI_ERR_OUT_OF_MEMORY = 8,
  // The caller stopped the call (`phi_generate`'s callback returned false);
  // what was produced until then is reported as on success.
  PHI_ERR_CANCELLED = 9,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum phi_status phi_status;
#else
typedef uint32_t phi_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// Opaque handle to an inference context (KV cache, buffers, thread pool);
// to be used by one thread at a time.
typedef struct phi_context phi_context;

// Opaque handle to a loaded model; shared read-only by any number of
// contexts and threads.
typedef struct phi_model phi_model;

// Opaque handle to a pool of worker threads that several contexts may
// share (`phi_context_params.thread_pool`). Contexts keep the threads alive:
// the handle may be freed while contexts still use the pool.
typedef struct phi_thread_pool phi_thread_pool;

// Model loading parameters. Start from `phi_model_default_params()`, which
// sets `size`: the library reads only the fields a caller's version of
// this struct has, so fields can be added without breaking callers.
typedef struct phi_model_params {
  // `sizeof(phi_model_params)` as the caller was compiled.
  size_t size;
  // Map the file (true, the default) or read it into memory (false).
  bool use_mmap;
  // Repack the weights into the kernels' faster layout where this CPU has
  // one, releasing their mapped pages (default: true, unless the
  // environment has `PHI_REPACK=0`).
  bool repack;
} phi_model_params;

// Element type of a context's KV cache (`phi_context_params.kv_type`).
typedef uint32_t phi_kv_type;

// Context parameters. Start from `phi_context_default_params()`, which
// sets `size` (see `phi_model_params`).
typedef struct phi_context_params {
  // `sizeof(phi_context_params)` as the caller was compiled.
  size_t size;
  // Context size in tokens (0 = the model's training context, capped at 4096).
  uint32_t n_ctx;
  // Tokens per forward pass during prompt processing (0 = the default, 512).
  uint32_t n_batch;
  // Worker threads for decoding (0 = one per physical core).
  uint32_t n_threads;
  // Worker threads for prompt processing (0 = as `n_threads`).
  uint32_t n_threads_batch;
  // A pool shared with other contexts (NULL = the context starts its
  // own); when set, `n_threads` and `n_threads_batch` are not used.
  const struct phi_thread_pool *thread_pool;
  // KV cache element type: `PHI_KV_F16`, `PHI_KV_F32` or `PHI_KV_Q8_0`.
  phi_kv_type kv_type;
  // Apply the model's sliding attention window (llama.cpp does not).
  bool sliding_window;
  // Refuse a context whose KV cache and buffers need more than this many
  // bytes (0 = the memory the system reports as available).
  uint64_t max_memory;
} phi_context_params;

// Sampling parameters (`phi_sampling_default_params` gives llama.cpp's defaults).
typedef struct phi_sampling_params {
  // 0 = greedy.
  float temperature;
  uint32_t top_k;
  float top_p;
  float min_p;
  float repeat_penalty;
  uint32_t repeat_last_n;
  uint64_t seed;
} phi_sampling_params;

// Receives each generated piece of text (UTF-8, `len` bytes, not
// NUL-terminated). Return false to stop generation.
typedef bool (*phi_token_callback)(const char *piece, size_t len, void *user_data);

// A chat message for `phi_chat_apply_template`.
typedef struct phi_chat_message {
  // "system", "user" or "assistant" (UTF-8, NUL-terminated).
  const char *role;
  // The message text (UTF-8, NUL-terminated).
  const char *content;
} phi_chat_message;

// 16-bit floats (the default).
#define PHI_KV_F16 0

// 32-bit floats.
#define PHI_KV_F32 1

// ggml's Q8_0 blocks (the model's head size must be a multiple of 32).
#define PHI_KV_Q8_0 2

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version, e.g. "0.1.0" (static storage).
const char *phi_version(void);

// The message of the last error on this thread ("" if none). Valid until
// the next failing call on this thread.
const char *phi_last_error(void);

// The default model parameters (`size` set): those of the Rust API,
// `PHI_REPACK=0` in the environment turning repacking off.
struct phi_model_params phi_model_default_params(void);

// The default context parameters (`size` set): those of the Rust API.
struct phi_context_params phi_context_default_params(void);

// Starts a pool of `n_threads` worker threads (0 = one per physical core)
// for contexts to share. On success `*out` holds a handle to free with
// `phi_thread_pool_free`.
//
// # Safety
// `out` is writable.
phi_status phi_thread_pool_new(uint32_t n_threads, struct phi_thread_pool **out);

// Frees a thread pool handle. Contexts using the pool keep its threads
// until they are freed.
//
// # Safety
// `pool` is null or a handle from `phi_thread_pool_new`, not used afterwards.
void phi_thread_pool_free(struct phi_thread_pool *pool);

struct phi_sampling_params phi_sampling_default_params(void);

// Loads a model. On success `*out` holds a handle to free with `phi_model_free`.
//
// # Safety
// `path` is a NUL-terminated string; `params` is null (defaults) or a
// struct from `phi_model_default_params` (its `size` set); `out` is writable.
phi_status phi_model_load(const char *path,
                          const struct phi_model_params *params,
                          struct phi_model **out);

// Frees a model. Contexts created from it keep it alive until they are freed.
//
// # Safety
// `model` is null or a handle from `phi_model_load`, not used afterwards.
void phi_model_free(struct phi_model *model);

// The vocabulary size (0 if `model` is NULL).
//
// # Safety
// `model` is null or a live handle.
uint32_t phi_model_n_vocab(const struct phi_model *model);

// Creates a context. On success `*out` holds a handle to free with `phi_context_free`.
//
// # Safety
// `model` is a live handle; `params` is null (defaults) or a struct from
// `phi_context_default_params` (its `size` set) whose `thread_pool` is null
// or a live handle; `out` is writable.
phi_status phi_context_new(const struct phi_model *model,
                           const struct phi_context_params *params,
                           struct phi_context **out);

// Frees a context.
//
// # Safety
// `ctx` is null or a handle from `phi_context_new`, not used afterwards.
void phi_context_free(struct phi_context *ctx);

// Forgets the context's tokens (clears the KV cache position).
//
// # Safety
// `ctx` is null or a live handle used by no other thread.
phi_status phi_context_reset(struct phi_context *ctx);

// Tokenizes UTF-8 `text`. Writes up to `cap` ids to `out` and sets
// `*n_tokens` to the number of ids the text has; returns
// PHI_ERR_BUFFER_TOO_SMALL (having written nothing) when `cap` is smaller.
//
// # Safety
// `model` is a live handle; `text` is NUL-terminated; `out` has `cap`
// writable ids; `n_tokens` is writable.
phi_status phi_tokenize(const struct phi_model *model,
                        const char *text,
                        bool add_special,
                        bool parse_special,
                        int32_t *out,
                        size_t cap,
                        size_t *n_tokens);

// Turns ids back into UTF-8 text (NUL-terminated in `buf`; `*out_len` gets
// the length without the NUL, also when the buffer is too small).
//
// # Safety
// `model` is a live handle; `ids` has `n` readable ids; `buf` has `cap`
// writable bytes; `out_len` is null or writable.
phi_status phi_detokenize(const struct phi_model *model,
                          const int32_t *ids,
                          size_t n,
                          bool remove_special,
                          char *buf,
                          size_t cap,
                          size_t *out_len);

// Appends `n` tokens to the context's sequence and runs them through the model.
//
// # Safety
// `ctx` is a live handle used by no other thread; `tokens` has `n` readable ids.
phi_status phi_eval(struct phi_context *ctx, const int32_t *tokens, size_t n);

// The logits of the last evaluated position (`n_vocab` floats), or NULL
// before any evaluation. Valid until the next call on this context.
//
// # Safety
// `ctx` is null or a live handle; `n_vocab` is null or writable.
const float *phi_get_logits(const struct phi_context *ctx, size_t *n_vocab);

// Evaluates `prompt` (appended to the context), then samples up to
// `max_tokens` tokens, calling `callback` with each piece of text. Stops at
// an end-of-generation token or after `max_tokens` (PHI_OK), or when the
// callback returns false (PHI_ERR_CANCELLED; the tokens generated so far
// stay in the context). `*n_generated` (if not null) gets the count.
//
// # Safety
// `ctx` is a live handle used by no other thread; `prompt` has `n_prompt`
// readable ids; `params` is null (defaults) or valid; `n_generated` is null or writable.
phi_status phi_generate(struct phi_context *ctx,
                        const int32_t *prompt,
                        size_t n_prompt,
                        const struct phi_sampling_params *params,
                        size_t max_tokens,
                        phi_token_callback callback,
                        void *user_data,
                        size_t *n_generated);

// Renders `messages` with the model's chat template (or Phi-3's format when
// the model has none) into `buf` (NUL-terminated; `*out_len` gets the length
// without the NUL, also when the buffer is too small). With
// `add_assistant`, the text ends with the prompt for the assistant's reply.
// Tokenize the result with `parse_special` = true.
//
// # Safety
// `model` is a live handle; `messages` has `n` readable messages whose
// strings are NUL-terminated; `buf` has `cap` writable bytes; `out_len` is
// null or writable.
phi_status phi_chat_apply_template(const struct phi_model *model,
                                   const struct phi_chat_message *messages,
                                   size_t n,
                                   bool add_assistant,
                                   char *buf,
                                   size_t cap,
                                   size_t *out_len);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* PHI_H */
