/* bnb_trainer end to end on the CPU: a tiny Llama-style byte-level model learns (loss below a fixed bound), 8-bit
 * AdamW tracks 32-bit AdamW, a checkpoint/resume run equals an uninterrupted one bit for bit, a process killed
 * (SIGKILL) while saving leaves the previous checkpoint loadable, truncated checkpoints are rejected, and the GGUF
 * export + SVG plot are written. Text: ../shared/data/tinyshakespeare.txt next to the source tree when present,
 * otherwise a built-in text. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bnb-model.h"

static int n_pass, n_fail;
static bnb_backend *g_backend; /* NULL: the trainer's own CPU backend; --backend cuda: a CUDA backend */
static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (ok) n_pass++;
    else n_fail++;
}

/* Without tinyshakespeare.txt (it lives in ../shared, beside the checkout): a generated pseudo-English text with
 * about the same letter statistics and far too much variety to memorise in a few hundred steps (a short passage
 * repeated would be memorised, and 8-bit vs 32-bit would then be compared on an over-fitted model). */
static const char *const builtin_words[] = {
    "the", "and", "to", "of", "I", "you", "my", "a", "that", "in", "is", "not", "with", "me", "it", "for", "be",
    "his", "your", "this", "but", "he", "have", "as", "thou", "so", "him", "will", "what", "thy", "all", "her",
    "no", "by", "do", "shall", "if", "are", "we", "thee", "on", "lord", "our", "king", "good", "now", "sir",
    "from", "come", "at", "they", "let", "would", "was", "which", "more", "or", "then", "how", "here", "well",
    "love", "man", "hath", "there", "say", "know", "make", "heart", "death", "blood", "crown", "speak", "night"};
static const char *const builtin_names[] = {"ROMEO", "JULIET", "KING RICHARD", "First Citizen", "MENENIUS",
                                            "GLOUCESTER", "QUEEN", "LUCIO", "ISABELLA", "DUKE"};

static size_t builtin_text(char *buf, size_t want) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    size_t len = 0;
    const size_t nw = sizeof builtin_words / sizeof builtin_words[0];
    while (len + 64 < want) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        len += (size_t)snprintf(buf + len, want - len, "%s:\n", builtin_names[(s >> 33) % 10]);
        int lines = 1 + (int)((s >> 40) % 4);
        for (int l = 0; l < lines && len + 64 < want; l++) {
            int words = 4 + (int)((s >> 20) % 6);
            for (int w = 0; w < words && len + 16 < want; w++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                /* skewed draw: frequent words first */
                uint64_t r = (s >> 33) % nw, r2 = (s >> 45) % nw;
                const char *word = builtin_words[r < r2 ? r : r2];
                if (w) buf[len++] = ' ';
                size_t wl = strlen(word);
                memcpy(buf + len, word, wl);
                if (!w && buf[len] >= 'a' && buf[len] <= 'z') buf[len] = (char)(buf[len] - 'a' + 'A');
                len += wl;
            }
            buf[len++] = (s >> 50) % 3 ? ',' : '.';
            buf[len++] = '\n';
        }
        buf[len++] = '\n';
    }
    return len;
}

static int32_t *load_tokens(int64_t *n) {
    const size_t want = 60000;
    char *buf = malloc(want);
    size_t len = 0;
    FILE *f = fopen(BNB_SOURCE_DIR "/../shared/data/tinyshakespeare.txt", "rb");
    if (f) {
        len = fread(buf, 1, want, f);
        fclose(f);
        printf("text: %zu bytes of tinyshakespeare.txt\n", len);
    }
    if (len < 4096) {
        len = builtin_text(buf, want);
        printf("text: built-in generated, %zu bytes\n", len);
    }
    int32_t *tok = malloc(len * sizeof(int32_t));
    for (size_t i = 0; i < len; i++) tok[i] = (uint8_t)buf[i];
    free(buf);
    *n = (int64_t)len;
    return tok;
}

static bnb_train_config tiny_config(int bits) {
    bnb_train_config c = bnb_train_default_config();
    bnb_train_preset("tiny", &c.model);
    c.model.n_embd = 64;
    c.model.n_ff = 128;
    c.model.n_layer = 2;
    c.model.n_head = c.model.n_head_kv = 4;
    c.model.head_dim = 16;
    c.model.n_ctx_train = 32;
    c.optim = BNB_OPTIM_ADAMW;
    c.optim_bits = bits;
    c.lr = 4e-3f;
    c.warmup = 10;
    c.steps = 120;
    c.batch = 8;
    c.seq = 32;
    c.clip = 1.0f;
    c.n_threads = 2;
    c.seed = 7;
    c.backend = g_backend;
    return c;
}

static bool run_steps(bnb_trainer *t, int64_t n, float *losses) {
    for (int64_t i = 0; i < n; i++) {
        float l;
        if (bnb_trainer_step(t, &l) != BNB_OK) {
            printf("step failed: %s\n", bnb_last_error());
            return false;
        }
        if (losses) losses[i] = l;
    }
    return true;
}

/* Training lowers the loss below a bound; 8-bit AdamW within 2% of 32-bit AdamW at the same step. */
static void test_learning(const int32_t *tok, int64_t n) {
    bnb_train_config c8 = tiny_config(8), c32 = tiny_config(32);
    bnb_trainer *t8 = bnb_trainer_new(&c8, tok, n), *t32 = bnb_trainer_new(&c32, tok, n);
    check(t8 && t32, "trainers created (%s)", t8 && t32 ? "ok" : bnb_last_error());
    if (!t8 || !t32) return;
    float v0 = 0, v8 = 0, v32 = 0, l8[120], l32[120];
    bnb_trainer_eval(t8, 4, &v0);
    bool ok = run_steps(t8, c8.steps, l8) && run_steps(t32, c32.steps, l32);
    check(ok, "120 steps of 8-bit and 32-bit AdamW");
    if (!ok) goto done;
    bnb_trainer_eval(t8, 4, &v8);
    bnb_trainer_eval(t32, 4, &v32);
    double m8 = 0, m32 = 0;
    for (int i = 110; i < 120; i++) m8 += l8[i] / 10, m32 += l32[i] / 10;
    printf("initial validation loss %.4f; after 120 steps: 8-bit train %.4f val %.4f | 32-bit train %.4f val %.4f\n",
           v0, m8, v8, m32, v32);
    check(v0 > 5.0f && v0 < 6.0f, "initial loss %.4f near ln(256) = 5.545", v0);
    check(m8 < 3.3 && v8 < 3.3f, "8-bit AdamW: train loss %.4f < 3.3, validation loss %.4f < 3.3 (from 5.5)", m8, v8);
    check(fabs(m8 - m32) <= 0.02 * m32, "8-bit vs 32-bit AdamW train loss at step 120: %.4f vs %.4f (%.2f%%)", m8, m32,
          100 * fabs(m8 - m32) / m32);
    check(fabsf(v8 - v32) <= 0.02f * v32, "8-bit vs 32-bit AdamW validation loss at step 120: %.4f vs %.4f (%.2f%%)",
          v8, v32, 100 * fabs(v8 - v32) / v32);
    bnb_train_memory mem8 = bnb_trainer_memory(t8), mem32 = bnb_trainer_memory(t32);
    printf("memory: params %zu, grads %zu, states 8-bit %zu vs 32-bit %zu, activations %zu bytes\n", mem8.params,
           mem8.grads, mem8.optim_states, mem32.optim_states, mem8.activations);
    check(mem8.optim_states < mem32.optim_states / 2 && mem32.optim_states >= (size_t)mem32.n_params * 8 &&
              mem8.activations > 0,
          "memory report: 8-bit states %zu < half of 32-bit %zu", mem8.optim_states, mem32.optim_states);
    /* export + plot */
    char path[256];
    snprintf(path, sizeof path, "test-train-%ld.gguf", (long)getpid());
    bnb_status st = bnb_trainer_export(t8, path, BNB_WEIGHTS_INT8);
    struct stat sb;
    check(st == BNB_OK && stat(path, &sb) == 0 && sb.st_size > 100000, "int8 GGUF export (%s)",
          st == BNB_OK ? "ok" : bnb_last_error());
    bnb_gguf *g = st == BNB_OK ? bnb_gguf_open(path) : NULL;
    int64_t wi = g ? bnb_gguf_find_tensor(g, "blk.1.ffn_down.weight") : -1;
    bnb_gguf_tensor_info info;
    check(wi >= 0 && bnb_gguf_tensor_info_get(g, wi, &info) == BNB_OK && info.type == BNB_TYPE_I8_ROW,
          "export holds I8_ROW linear weights");
    if (g) bnb_gguf_free(g);
    unlink(path);
    int64_t xs[120];
    for (int i = 0; i < 120; i++) xs[i] = i + 1;
    snprintf(path, sizeof path, "test-train-%ld.svg", (long)getpid());
    st = bnb_plot_loss_svg(path, "test", xs, l8, 120, xs, l32, 120);
    check(st == BNB_OK && stat(path, &sb) == 0 && sb.st_size > 1000, "SVG loss plot written");
    unlink(path);
done:
    bnb_trainer_free(t8);
    bnb_trainer_free(t32);
}

/* The training graph and the inference model (bnb_model_load of the f32 export) compute the same loss: validation
 * loss of the trainer vs cross-entropy from bnb_model_eval's logits on the same windows (GQA: 4 heads, 2 kv heads). */
static void test_export_matches_model(const int32_t *tok, int64_t n) {
    bnb_train_config c = tiny_config(8);
    c.model.n_head_kv = 2;
    c.batch = 4;
    c.steps = 20;
    bnb_trainer *t = bnb_trainer_new(&c, tok, n);
    char path[256];
    snprintf(path, sizeof path, "test-train-gqa-%ld.gguf", (long)getpid());
    float val = 0;
    bool ok = t && run_steps(t, 20, NULL) && bnb_trainer_eval(t, 1, &val) == BNB_OK &&
              bnb_trainer_export(t, path, BNB_WEIGHTS_F32) == BNB_OK;
    bnb_model_params mp = bnb_model_default_params();
    mp.n_threads = 2;
    bnb_model *m = ok ? bnb_model_load(path, &mp) : NULL;
    check(m != NULL, "GQA model trained, exported and loaded by bnb_model_load (%s)", m ? "ok" : bnb_last_error());
    if (m) {
        int64_t T = c.seq, V = 256, n_train = n - (int64_t)((double)n * c.val_fraction);
        float *logits = malloc((size_t)(T * V) * sizeof(float));
        double sum = 0;
        for (int64_t b = 0; b < c.batch && ok; b++) {
            const int32_t *w = tok + n_train + b * T;
            ok = bnb_model_eval(m, w, T, 0, true, logits) == BNB_OK;
            for (int64_t i = 0; i < T && ok; i++) {
                const float *l = logits + i * V;
                double mx = l[0], se = 0;
                for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
                for (int v = 0; v < V; v++) se += exp(l[v] - mx);
                sum += mx + log(se) - l[w[i + 1]];
            }
        }
        double ref = sum / (double)(c.batch * T);
        check(ok && fabs(ref - val) < (g_backend ? 2e-2 : 1e-3), "trainer validation loss %.6f == inference model loss %.6f", val, ref);
        free(logits);
        bnb_model_free(m);
    }
    unlink(path);
    bnb_trainer_free(t);
}

static bool same_weights(bnb_trainer *a, bnb_trainer *b) {
    const bnb_model_config *m = bnb_trainer_model_config(a);
    const char *names[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output_norm.weight"};
    int64_t sizes[] = {m->n_embd * m->n_vocab, m->n_embd * m->n_embd, m->n_embd * m->n_ff, m->n_embd};
    for (int i = 0; i < 4; i++) {
        float *x = malloc((size_t)sizes[i] * 4), *y = malloc((size_t)sizes[i] * 4);
        bool eq = bnb_trainer_get_weight(a, names[i], x, sizes[i]) == BNB_OK &&
                  bnb_trainer_get_weight(b, names[i], y, sizes[i]) == BNB_OK &&
                  memcmp(x, y, (size_t)sizes[i] * 4) == 0;
        free(x), free(y);
        if (!eq) return false;
    }
    return true;
}

/* 2N steps straight == N steps + save + (new trainer) load + N steps, bit for bit. */
static void test_resume(const int32_t *tok, int64_t n, int bits, int accum, int pclip) {
    const int N = 8;
    bnb_train_config c = tiny_config(bits);
    c.accum = accum;
    c.pclip = pclip;
    c.steps = 2 * N;
    c.batch = 4;
    char path[256];
    snprintf(path, sizeof path, "test-train-resume-%ld.ckpt", (long)getpid());
    bnb_trainer *a = bnb_trainer_new(&c, tok, n), *b = bnb_trainer_new(&c, tok, n);
    float la[2 * N], lb[2 * N];
    bool ok = a && b && run_steps(a, 2 * N, la) && run_steps(b, N, lb) && bnb_trainer_save(b, path) == BNB_OK;
    bnb_trainer_free(b);
    b = ok ? bnb_trainer_new(&c, tok, n) : NULL;
    ok = ok && b && bnb_trainer_load(b, path) == BNB_OK && bnb_trainer_get_step(b) == N && run_steps(b, N, lb + N);
    check(ok, "resume run (%d-bit, accum %d, pclip %d): %s", bits, accum, pclip, ok ? "ok" : bnb_last_error());
    if (ok) {
        bool eq = memcmp(la + N, lb + N, N * sizeof(float)) == 0 && memcmp(la, lb, N * sizeof(float)) == 0;
        double md = 0;
        for (int i = 0; i < 2 * N; i++) md = fmax(md, fabs((double)la[i] - lb[i]));
        if (g_backend) /* GPU kernels may sum with atomics: equal to rounding */
            check(md < 2e-3, "CUDA: resumed losses match the uninterrupted run (max diff %.3g, bitwise %s)", md,
                  eq ? "yes" : "no");
        else
            check(eq, "resumed losses equal the uninterrupted run bit for bit (step %d: %.7f vs %.7f, step %d: %.7f "
                  "vs %.7f)", N + 1, la[N], lb[N], 2 * N, la[2 * N - 1], lb[2 * N - 1]);
        if (!g_backend) check(same_weights(a, b), "resumed weights equal the uninterrupted run bit for bit");
    }
    /* a truncated checkpoint is rejected with BNB_ERR_IO */
    if (ok) {
        struct stat sb;
        stat(path, &sb);
        if (truncate(path, sb.st_size - 100) != 0) printf("truncate failed\n");
        bnb_status st = bnb_trainer_load(b, path);
        check(st == BNB_ERR_IO, "truncated checkpoint rejected (%s)", bnb_last_error());
    }
    unlink(path);
    bnb_trainer_free(a);
    bnb_trainer_free(b);
}

/* A child saves checkpoints over and over; SIGKILL it at random moments: the file always loads and training
 * continues from it. */
static void test_kill_during_save(const int32_t *tok, int64_t n) {
    bnb_train_config c = tiny_config(8);
    c.batch = 4;
    char path[256];
    snprintf(path, sizeof path, "test-train-kill-%ld.ckpt", (long)getpid());
    bnb_trainer *t = bnb_trainer_new(&c, tok, n);
    bool ok = t && run_steps(t, 3, NULL) && bnb_trainer_save(t, path) == BNB_OK;
    check(ok, "first checkpoint saved");
    if (!ok) {
        bnb_trainer_free(t);
        return;
    }
    int killed_mid = 0, loads = 0;
    const int trials = 6;
    for (int trial = 0; trial < trials; trial++) {
        pid_t pid = fork();
        if (pid == 0) { /* child: no compute (OpenMP is not fork-safe), only saves */
            for (;;)
                if (bnb_trainer_save(t, path) != BNB_OK) _exit(3);
        }
        struct timespec ts = {0, (long)(5 + 17 * trial) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
        struct stat sb;
        if (stat(tmp, &sb) == 0) killed_mid++;
        unlink(tmp);
        snprintf(tmp, sizeof tmp, "%s.opt.%ld", path, (long)pid);
        unlink(tmp);
        snprintf(tmp, sizeof tmp, "%s.opt.%ld.tmp.%ld", path, (long)pid, (long)pid);
        unlink(tmp);
        bnb_trainer *r = bnb_trainer_new(&c, tok, n);
        float l = NAN;
        if (r && bnb_trainer_load(r, path) == BNB_OK && bnb_trainer_get_step(r) == 3 &&
            bnb_trainer_step(r, &l) == BNB_OK && isfinite(l))
            loads++;
        else printf("trial %d: %s\n", trial, bnb_last_error());
        bnb_trainer_free(r);
    }
    check(loads == trials, "after SIGKILL during saves the checkpoint loaded and training resumed %d/%d times "
          "(%d kills left a partial temp file)", loads, trials, killed_mid);
    unlink(path);
    bnb_trainer_free(t);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--backend") == 0 && strcmp(argv[i + 1], "cuda") == 0) {
            if (!bnb_cuda_available()) {
                printf("no CUDA device: skipped\n");
                return 77;
            }
            g_backend = bnb_backend_cuda_new(0);
            if (!g_backend) return printf("cuda backend: %s\n", bnb_last_error()), 1;
        }
    int64_t n = 0;
    int32_t *tok = load_tokens(&n);
    time_t t0 = time(NULL);
    test_learning(tok, n);
    test_export_matches_model(tok, n);
    test_resume(tok, n, 8, 1, 100);
    test_resume(tok, n, 8, 2, 5);
    test_resume(tok, n, 32, 1, 100);
    if (!g_backend) test_kill_during_save(tok, n); /* fork: CPU only (a CUDA context does not survive fork) */
    free(tok);
    if (g_backend) bnb_backend_free(g_backend);
    printf("%d passed, %d failed (%ld s)\n", n_pass, n_fail, (long)(time(NULL) - t0));
    return n_fail ? 1 : 0;
}
