/* embedding.c — text input embedding: out[b, t] = wte[tokens[b, t]] + wpe[t].
 * Token ids outside [0, V) are fatal with a message naming (b, t) and the id.
 * Backward: dwte[tokens[b, t]] += dout[b, t]; dwpe[t] += sum_b dout[b, t].
 * The fast backward splits channels across threads, so repeated token ids
 * never race and no scratch is needed. */
#include "common.h"
#include "ops.h"

static void embedding_check_ids(const int32_t *tokens, int B, int T, int V) {
    for (size_t i = 0; i < (size_t)B * T; i++)
        FLIP_CHECK(tokens[i] >= 0 && tokens[i] < V,
                   "embedding: token id %d at sample %zu position %zu outside [0, %d); "
                   "the shard's vocabulary does not match the model's --vocab",
                   (int)tokens[i], i / (size_t)T, i % (size_t)T, V);
}

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C, int V) {
    // out (B, T, C), tokens (B, T), wte (V, C), wpe (T, C)
    embedding_check_ids(tokens, B, T, V);
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        const float *e = wte + (size_t)tokens[bt] * C;
        const float *p = wpe + (size_t)t * C;
        float *y = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) y[c] = e[c] + p[c];
    }
}

#define EMB_COL_BLOCK 64

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                        int B, int T, int C, int V) {
    embedding_check_ids(tokens, B, T, V);
    int n_blocks = (C + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * EMB_COL_BLOCK;
        int c1 = c0 + EMB_COL_BLOCK < C ? c0 + EMB_COL_BLOCK : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const float *dy = dout + ((size_t)b * T + t) * C;
                if (dwte) {
                    float *dw = dwte + (size_t)tokens[(size_t)b * T + t] * C;
                    for (int c = c0; c < c1; c++) dw[c] += dy[c];
                }
                if (dwpe) {
                    float *dp = dwpe + (size_t)t * C;
                    for (int c = c0; c < c1; c++) dp[c] += dy[c];
                }
            }
        }
    }
}

void embedding_forward_ref(float *out, const int32_t *tokens, const float *wte,
                           const float *wpe, int B, int T, int C, int V) {
    embedding_check_ids(tokens, B, T, V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * T + t) * C + c] =
                    (float)((double)wte[(size_t)tokens[(size_t)b * T + t] * C + c] +
                            wpe[(size_t)t * C + c]);
}

void embedding_backward_ref(float *dwte, float *dwpe, const float *dout,
                            const int32_t *tokens, int B, int T, int C, int V) {
    embedding_check_ids(tokens, B, T, V);
    if (dwpe) {
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int b = 0; b < B; b++) s += dout[((size_t)b * T + t) * C + c];
                dwpe[(size_t)t * C + c] += (float)s;
            }
    }
    if (dwte) {
        /* double accumulation per (id, c) over every occurrence of the id */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int id = tokens[(size_t)b * T + t];
                int first = 1; /* handle each distinct id once, at its first occurrence */
                for (size_t j = 0; j < (size_t)b * T + t; j++)
                    if (tokens[j] == id) { first = 0; break; }
                if (!first) continue;
                for (int c = 0; c < C; c++) {
                    double s = 0.0;
                    for (size_t j = (size_t)b * T + t; j < (size_t)B * T; j++)
                        if (tokens[j] == id) s += dout[j * C + c];
                    dwte[(size_t)id * C + c] += (float)s;
                }
            }
    }
}
