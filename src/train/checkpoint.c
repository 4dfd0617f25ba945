/* Trainer checkpoints (weights + optimizer states + step + RNG + data position, one file written atomically),
 * reading model configs/weights for fine-tuning (GGUF or checkpoint), and the GGUF export for bnb-run.
 *
 * Checkpoint format (little endian): "BNBTRCK1", u32 version 1, u32 n_params, the model config (i64 n_vocab n_embd
 * n_ff n_layer n_head n_head_kv head_dim n_ctx_train, f32 rms_eps rope_base, i32 rope_mode tied), i64 step, u64 rng,
 * i64 tokens_seen; per param: u32 name length, name, u32 bnb type, i64 elements, u64 bytes, data; u64 optimizer
 * blob bytes, the blob (bnb_optimizer_save's file); u64 FNV-1a 64 of everything before. */
#include "train-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bnb-impl.h"
#include "io-util.h"

#define CKPT_MAGIC "BNBTRCK1"

/* Checkpoints are written through the shared byte buffer and atomic file helpers (src/io-util.h). */
#define PUT(b, v) bnb_bytes_put(b, &(v), sizeof(v))

static bnb_status read_file(const char *path, uint8_t **data, size_t *size) {
    return bnb_file_read_all(path, (size_t)1 << 44, (char **)data, size);
}

static void put_config(bnb_bytes *b, const bnb_model_config *c) {
    int64_t v[8] = {c->n_vocab, c->n_embd, c->n_ff, c->n_layer, c->n_head, c->n_head_kv, c->head_dim, c->n_ctx_train};
    bnb_bytes_put(b, v, sizeof v);
    PUT(b, c->rms_eps);
    PUT(b, c->rope_base);
    int32_t mode = c->rope_mode, tied = c->tied_output;
    PUT(b, mode);
    PUT(b, tied);
}

bnb_status bnb_trainer_save(bnb_trainer *t, const char *path) {
    if (!t || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_save: NULL argument");
    bnb_bytes b = {0};
    uint32_t version = 1, np = (uint32_t)t->n_params;
    bnb_bytes_put(&b, CKPT_MAGIC, 8);
    PUT(&b, version);
    PUT(&b, np);
    put_config(&b, &t->mc);
    PUT(&b, t->step);
    PUT(&b, t->rng);
    PUT(&b, t->tokens_seen);
    bnb_status st = BNB_OK;
    for (int i = 0; i < t->n_params && st == BNB_OK; i++) {
        bnb_tensor *p = t->params[i];
        uint32_t len = (uint32_t)strlen(p->name), type = (uint32_t)p->type;
        int64_t n = bnb_nelements(p);
        uint64_t nbytes = bnb_nbytes(p);
        PUT(&b, len);
        bnb_bytes_put(&b, p->name, len);
        PUT(&b, type);
        PUT(&b, n);
        PUT(&b, nbytes);
        void *dst = nbytes ? bnb_bytes_reserve(&b, nbytes) : NULL;
        if (b.oom) break;
        if (dst) st = bnb_tensor_get(p, dst, 0, nbytes);
    }
    /* optimizer states through bnb_optimizer_save (a side file, read back into the checkpoint and removed) */
    char opath[4096];
    snprintf(opath, sizeof opath, "%s.opt.%ld", path, (long)getpid());
    uint8_t *blob = NULL;
    size_t blob_n = 0;
    if (st == BNB_OK) st = bnb_optimizer_save(t->opt, opath);
    if (st == BNB_OK) st = read_file(opath, &blob, &blob_n);
    unlink(opath);
    if (st == BNB_OK) {
        uint64_t n64 = blob_n;
        PUT(&b, n64);
        bnb_bytes_put(&b, blob, blob_n);
        uint64_t h = bnb_fnv1a64(b.data, b.size);
        PUT(&b, h);
    }
    free(blob);
    if (st == BNB_OK && b.oom) st = bnb_fail(BNB_ERR_OOM, "bnb_trainer_save: out of memory");
    if (st == BNB_OK) st = bnb_atomic_write_file(path, b.data, b.size);
    bnb_bytes_free(&b);
    return st;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    bool bad;
} rbuf;

static const void *get(rbuf *r, size_t n) {
    if (r->bad || r->n - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->off;
    r->off += n;
    return p;
}
#define GET(r, v) do { const void *q_ = get(r, sizeof(v)); if (q_) memcpy(&(v), q_, sizeof(v)); } while (0)

static void get_config(rbuf *r, bnb_model_config *c) {
    int64_t v[8] = {0};
    const void *q = get(r, sizeof v);
    if (q) memcpy(v, q, sizeof v);
    memset(c, 0, sizeof *c);
    c->n_vocab = v[0], c->n_embd = v[1], c->n_ff = v[2], c->n_layer = v[3], c->n_head = v[4], c->n_head_kv = v[5];
    c->head_dim = v[6], c->n_ctx_train = v[7];
    int32_t mode = 0, tied = 0;
    GET(r, c->rms_eps);
    GET(r, c->rope_base);
    GET(r, mode);
    GET(r, tied);
    c->rope_mode = mode;
    c->tied_output = tied != 0;
}

/* Open and verify a checkpoint: header checked, checksum verified; r positioned after the magic. */
static bnb_status open_ckpt(const char *path, uint8_t **data, rbuf *r) {
    size_t n = 0;
    bnb_status st = read_file(path, data, &n);
    if (st != BNB_OK) return st;
    if (n < 8 + 8 + 8 || memcmp(*data, CKPT_MAGIC, 8) != 0) {
        free(*data);
        return bnb_fail(BNB_ERR_IO, "%s: not a bnb-train checkpoint", path);
    }
    uint64_t h;
    memcpy(&h, *data + n - 8, 8);
    if (bnb_fnv1a64(*data, n - 8) != h) {
        free(*data);
        return bnb_fail(BNB_ERR_IO, "%s: checksum mismatch (truncated or corrupt checkpoint)", path);
    }
    *r = (rbuf){.p = *data, .n = n - 8, .off = 8};
    return BNB_OK;
}

static bool is_ckpt(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[8] = {0};
    bool yes = f && fread(m, 1, 8, f) == 8 && memcmp(m, CKPT_MAGIC, 8) == 0;
    if (f) fclose(f);
    return yes;
}

/* Load weights (and with `full`, step/RNG/data position/optimizer) from a checkpoint into t. */
static bnb_status load_ckpt(bnb_trainer *t, const char *path, bool full) {
    uint8_t *data = NULL;
    rbuf r;
    bnb_status st = open_ckpt(path, &data, &r);
    if (st != BNB_OK) return st;
    uint32_t version = 0, np = 0;
    GET(&r, version);
    GET(&r, np);
    bnb_model_config mc;
    get_config(&r, &mc);
    int64_t step = 0, seen = 0;
    uint64_t rng = 0;
    GET(&r, step);
    GET(&r, rng);
    GET(&r, seen);
    if (r.bad || version != 1 || np != (uint32_t)t->n_params || mc.n_embd != t->mc.n_embd ||
        mc.n_layer != t->mc.n_layer || mc.n_vocab != t->mc.n_vocab || mc.n_ff != t->mc.n_ff) {
        free(data);
        return bnb_fail(BNB_ERR_IO, "%s: checkpoint of another model (version %u, %u params, embd %lld, layers %lld)",
                        path, version, np, (long long)mc.n_embd, (long long)mc.n_layer);
    }
    for (uint32_t i = 0; i < np && st == BNB_OK; i++) {
        uint32_t len = 0, type = 0;
        int64_t n = 0;
        uint64_t nbytes = 0;
        GET(&r, len);
        const char *name = get(&r, len);
        GET(&r, type);
        GET(&r, n);
        GET(&r, nbytes);
        const void *src = get(&r, nbytes);
        bnb_tensor *p = t->params[i];
        if (r.bad || len != strlen(p->name) || memcmp(name, p->name, len) != 0 || type != (uint32_t)p->type ||
            n != bnb_nelements(p) || nbytes != bnb_nbytes(p)) {
            st = bnb_fail(BNB_ERR_IO, "%s: tensor %u does not match %s (%s, %lld elements)", path, i, p->name,
                          bnb_type_name(p->type), (long long)bnb_nelements(p));
            break;
        }
        st = bnb_tensor_set(p, src, 0, nbytes);
    }
    uint64_t blob_n = 0;
    GET(&r, blob_n);
    const void *blob = get(&r, blob_n);
    if (st == BNB_OK && r.bad) st = bnb_fail(BNB_ERR_IO, "%s: truncated checkpoint", path);
    if (st == BNB_OK && full) {
        char opath[4096];
        snprintf(opath, sizeof opath, "%s.optload.%ld", path, (long)getpid());
        st = bnb_atomic_write_file(opath, blob, blob_n);
        if (st == BNB_OK) st = bnb_optimizer_load(t->opt, opath);
        unlink(opath);
        if (st == BNB_OK) {
            t->step = step;
            t->rng = rng;
            t->tokens_seen = seen;
        }
    }
    free(data);
    return st;
}

bnb_status bnb_trainer_load(bnb_trainer *t, const char *path) {
    if (!t || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_load: NULL argument");
    return load_ckpt(t, path, true);
}

/* ---------------------------------------------------------------------------------------------- fine-tuning */
bnb_status train_read_file_config(const char *path, bnb_model_config *mc) {
    if (is_ckpt(path)) {
        uint8_t *data = NULL;
        rbuf r;
        bnb_status st = open_ckpt(path, &data, &r);
        if (st != BNB_OK) return st;
        uint32_t version = 0, np = 0;
        GET(&r, version);
        GET(&r, np);
        get_config(&r, mc);
        free(data);
        return r.bad ? bnb_fail(BNB_ERR_IO, "%s: truncated checkpoint", path) : BNB_OK;
    }
    bnb_gguf *g = bnb_gguf_open(path);
    if (!g) return bnb_last_status();
    memset(mc, 0, sizeof *mc);
    int64_t v;
    double f;
    bnb_status st = BNB_OK;
#define GI(key, field)                                                                                                 \
    if (st == BNB_OK && (st = bnb_gguf_get_int(g, key, true, &v)) == BNB_OK) mc->field = v
    GI("llama.embedding_length", n_embd);
    GI("llama.feed_forward_length", n_ff);
    GI("llama.block_count", n_layer);
    GI("llama.attention.head_count", n_head);
#undef GI
    if (st == BNB_OK) {
        mc->n_head_kv = bnb_gguf_get_int(g, "llama.attention.head_count_kv", false, &v) == BNB_OK ? v : mc->n_head;
        mc->head_dim = mc->n_embd / mc->n_head;
        if (bnb_gguf_get_int(g, "llama.attention.key_length", false, &v) == BNB_OK) mc->head_dim = v;
        mc->n_ctx_train = bnb_gguf_get_int(g, "llama.context_length", false, &v) == BNB_OK ? v : 2048;
        mc->rms_eps = bnb_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", false, &f) == BNB_OK ? (float)f
                                                                                                           : 1e-5f;
        mc->rope_base = bnb_gguf_get_float(g, "llama.rope.freq_base", false, &f) == BNB_OK ? (float)f : 10000.0f;
        mc->rope_mode = BNB_ROPE_NORMAL;
        int64_t te = bnb_gguf_find_tensor(g, "token_embd.weight");
        bnb_gguf_tensor_info info;
        if (te < 0 || bnb_gguf_tensor_info_get(g, te, &info) != BNB_OK)
            st = bnb_fail(BNB_ERR_IO, "%s: no token_embd.weight", path);
        else mc->n_vocab = info.ne[1];
        mc->tied_output = bnb_gguf_find_tensor(g, "output.weight") < 0;
    }
    bnb_gguf_free(g);
    return st;
}

bnb_status train_load_file_weights(bnb_trainer *t, const char *path) {
    if (is_ckpt(path)) return load_ckpt(t, path, false);
    bnb_gguf *g = bnb_gguf_open(path);
    if (!g) return bnb_last_status();
    bnb_status st = BNB_OK;
    for (int i = 0; i < t->n_params && st == BNB_OK; i++) {
        bnb_tensor *p = t->params[i];
        int64_t idx = bnb_gguf_find_tensor(g, p->name), n = bnb_nelements(p);
        if (idx < 0) {
            st = bnb_fail(BNB_ERR_IO, "%s: no tensor %s", path, p->name);
            break;
        }
        float *buf = malloc((size_t)n * sizeof(float));
        if (!buf) {
            st = bnb_fail(BNB_ERR_OOM, "out of memory");
            break;
        }
        st = bnb_gguf_tensor_to_f32(g, idx, buf, n);
        if (st == BNB_OK) st = bnb_tensor_set_f32(p, buf, n);
        free(buf);
    }
    bnb_gguf_free(g);
    return st;
}
