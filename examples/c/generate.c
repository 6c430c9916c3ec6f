/* generate MODEL PROMPT N
 *
 * Loads MODEL, tokenizes PROMPT as plain text (BOS as the vocabulary says, no
 * chat template), generates N tokens greedily and streams the text to stdout:
 * the same text as `phi run -m MODEL -p PROMPT -n N --temp 0 --raw`.
 *
 * Build: cc examples/c/generate.c -Iruntime/include target/release/libphi.a \
 *           -lpthread -ldl -lm -o generate
 */
#include <stdio.h>
#include <stdlib.h>

#include "phi.h"

static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, phi_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT N\n", argv[0]);
        return 2;
    }
    char *end = NULL;
    long n = strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || n < 0) {
        fprintf(stderr, "error: N must be a non-negative integer\n");
        return 2;
    }

    /* Parameters start from the library's defaults (which set .size, so a
     * newer library can tell which fields this program knows). */
    phi_model_params mp = phi_model_default_params();
    phi_model *model = NULL;
    if (phi_model_load(argv[1], &mp, &model) != PHI_OK) return fail("loading the model");

    size_t n_tokens = 0;
    phi_status st = phi_tokenize(model, argv[2], true, false, NULL, 0, &n_tokens);
    if (st != PHI_OK && st != PHI_ERR_BUFFER_TOO_SMALL) {
        phi_model_free(model);
        return fail("tokenizing");
    }
    int32_t *tokens = malloc((n_tokens ? n_tokens : 1) * sizeof *tokens);
    if (!tokens || phi_tokenize(model, argv[2], true, false, tokens, n_tokens, &n_tokens) != PHI_OK) {
        free(tokens);
        phi_model_free(model);
        return fail("tokenizing");
    }

    phi_context_params cp = phi_context_default_params();
    cp.kv_type = PHI_KV_F16; /* the default, as phi run's; or PHI_KV_F32, PHI_KV_Q8_0 */
    phi_context *ctx = NULL;
    if (phi_context_new(model, &cp, &ctx) != PHI_OK) {
        free(tokens);
        phi_model_free(model);
        return fail("creating the context");
    }

    phi_sampling_params sp = phi_sampling_default_params();
    sp.temperature = 0.0f; /* greedy */
    size_t n_generated = 0;
    st = phi_generate(ctx, tokens, n_tokens, &sp, (size_t)n, print_piece, NULL, &n_generated);
    printf("\n");

    free(tokens);
    phi_context_free(ctx);
    phi_model_free(model);
    if (st != PHI_OK) return fail("generating");
    return 0;
}
