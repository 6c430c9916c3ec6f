/* phi.h: the C API of phi.rs (libphi.a / libphi.so).
 *
 * Generated from runtime/src/ffi.rs by cbindgen; do not edit by hand.
 * Regenerate with: PHI_BLESS=1 cargo test -p phi --test header
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

// Status codes returned by every fallible call.
typedef enum phi_status {
  PHI_OK = 0,
  // A null pointer, invalid UTF-8 or an out-of-range value was passed.
  PHI_ERR_INVALID_ARGUMENT = 1,
  // The file could not be read.
  PHI_ERR_IO = 2,
  // The file is not a valid model phi.rs can run.
  PHI_ERR_MODEL = 3,
  // The tokens do not fit in the context.
  PHI_ERR_CONTEXT_FULL = 4,
  // A caller-supplied buffer is too small (the needed size is reported).
  PHI_ERR_BUFFER_TOO_SMALL = 5,
  // An internal error (a bug): the call was abandoned safely.
  PHI_ERR_PANIC = 6,
} phi_status;

// Opaque handle to an inference context (KV cache, buffers, thread pool);
// to be used by one thread at a time.
typedef struct phi_context phi_context;

// Opaque handle to a loaded model; shared read-only by any number of
// contexts and threads.
typedef struct phi_model phi_model;

// Model loading parameters.
typedef struct phi_model_params {
  // Map the file (true, the default) or read it into memory (false).
  bool use_mmap;
} phi_model_params;

// Context parameters.
typedef struct phi_context_params {
  // Context size in tokens (0 = the model's training context, capped at 4096).
  uint32_t n_ctx;
  // Tokens per forward pass during prompt processing (0 = 512).
  uint32_t n_batch;
  // Worker threads (0 = one per core).
  uint32_t n_threads;
  // Store the KV cache as f32 instead of f16.
  bool kv_f32;
  // Apply the model's sliding attention window (llama.cpp does not).
  bool sliding_window;
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

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version, e.g. "0.1.0" (static storage).
const char *phi_version(void);

// The message of the last error on this thread ("" if none). Valid until
// the next failing call on this thread.
const char *phi_last_error(void);

struct phi_model_params phi_model_default_params(void);

struct phi_context_params phi_context_default_params(void);

struct phi_sampling_params phi_sampling_default_params(void);

// Loads a model. On success `*out` holds a handle to free with `phi_model_free`.
//
// # Safety
// `path` is a NUL-terminated string; `params` is null (defaults) or valid;
// `out` is writable.
enum phi_status phi_model_load(const char *path,
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
// `model` is a live handle; `params` is null (defaults) or valid; `out` is writable.
enum phi_status phi_context_new(const struct phi_model *model,
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
enum phi_status phi_context_reset(struct phi_context *ctx);

// Tokenizes UTF-8 `text`. Writes up to `cap` ids to `out` and sets
// `*n_tokens` to the number of ids the text has; returns
// PHI_ERR_BUFFER_TOO_SMALL (having written nothing) when `cap` is smaller.
//
// # Safety
// `model` is a live handle; `text` is NUL-terminated; `out` has `cap`
// writable ids; `n_tokens` is writable.
enum phi_status phi_tokenize(const struct phi_model *model,
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
enum phi_status phi_detokenize(const struct phi_model *model,
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
enum phi_status phi_eval(struct phi_context *ctx, const int32_t *tokens, size_t n);

// The logits of the last evaluated position (`n_vocab` floats), or NULL
// before any evaluation. Valid until the next call on this context.
//
// # Safety
// `ctx` is null or a live handle; `n_vocab` is null or writable.
const float *phi_get_logits(const struct phi_context *ctx, size_t *n_vocab);

// Evaluates `prompt` (appended to the context), then samples up to
// `max_tokens` tokens, calling `callback` with each piece of text. Stops at
// an end-of-generation token, after `max_tokens`, or when the callback
// returns false. `*n_generated` (if not null) gets the count.
//
// # Safety
// `ctx` is a live handle used by no other thread; `prompt` has `n_prompt`
// readable ids; `params` is null (defaults) or valid; `n_generated` is null or writable.
enum phi_status phi_generate(struct phi_context *ctx,
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
enum phi_status phi_chat_apply_template(const struct phi_model *model,
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
