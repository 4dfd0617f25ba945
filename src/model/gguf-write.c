/* GGUF v3 writer: metadata and tensors (bnb tensors of any type, or raw data of a ggml/bnb type id), written to a
 * memory buffer or atomically to a file. */
#include "model-impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct wkv {
    char *key;
    uint32_t type;
    bnb_bytes val; /* serialized value (after the type field) */
} wkv;

typedef struct wtensor {
    char name[BNB_MAX_NAME];
    int n_dims;
    int64_t ne[BNB_MAX_DIMS];
    uint32_t type;
    size_t nbytes;
    const bnb_tensor *t; /* read at write time, or */
    uint8_t *raw;        /* copied data */
} wtensor;

struct bnb_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    uint32_t alignment;
};

bnb_gguf_writer *bnb_gguf_writer_new(void) {
    bnb_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return bnb_fail_null(BNB_ERR_OOM, "bnb_gguf_writer_new: out of memory");
    w->alignment = BNB_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void bnb_gguf_writer_free(bnb_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        bnb_bytes_free(&w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->ts[i].raw);
    free(w->kvs);
    free(w->ts);
    free(w);
}

bnb_status bnb_gguf_writer_set_alignment(bnb_gguf_writer *w, uint32_t a) {
    if (!w || a == 0 || (a & (a - 1)) || a > (1u << 24))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_set_alignment: %u is not a power of two <= 2^24", a);
    w->alignment = a;
    return bnb_gguf_set_u32(w, "general.alignment", a);
}

/* The kv slot for key (replacing an existing value). */
static wkv *slot(bnb_gguf_writer *w, const char *key, uint32_t type) {
    if (!w || !key || !*key) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_gguf_set: writer or key is NULL/empty");
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) {
            w->kvs[i].val.size = 0;
            w->kvs[i].val.oom = false;
            w->kvs[i].type = type;
            return &w->kvs[i];
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *n = realloc(w->kvs, cap * sizeof *n);
        if (!n) return bnb_fail_null(BNB_ERR_OOM, "bnb_gguf_set: out of memory");
        w->kvs = n;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kvs[w->n_kv];
    memset(kv, 0, sizeof *kv);
    size_t l = strlen(key) + 1;
    kv->key = malloc(l);
    if (!kv->key) return bnb_fail_null(BNB_ERR_OOM, "bnb_gguf_set: out of memory");
    memcpy(kv->key, key, l);
    kv->type = type;
    w->n_kv++;
    return kv;
}

static bnb_status done(wkv *kv) {
    if (!kv) return bnb_last_status();
    if (kv->val.oom) return bnb_fail(BNB_ERR_OOM, "bnb_gguf_set: out of memory for '%s'", kv->key);
    return BNB_OK;
}

bnb_status bnb_gguf_set_u32(bnb_gguf_writer *w, const char *key, uint32_t v) {
    wkv *kv = slot(w, key, BNB_GGUF_UINT32);
    if (kv) bnb_bytes_put_u32(&kv->val, v);
    return done(kv);
}
bnb_status bnb_gguf_set_i32(bnb_gguf_writer *w, const char *key, int32_t v) {
    wkv *kv = slot(w, key, BNB_GGUF_INT32);
    if (kv) bnb_bytes_put_u32(&kv->val, (uint32_t)v);
    return done(kv);
}
bnb_status bnb_gguf_set_u64(bnb_gguf_writer *w, const char *key, uint64_t v) {
    wkv *kv = slot(w, key, BNB_GGUF_UINT64);
    if (kv) bnb_bytes_put_u64(&kv->val, v);
    return done(kv);
}
bnb_status bnb_gguf_set_i64(bnb_gguf_writer *w, const char *key, int64_t v) {
    wkv *kv = slot(w, key, BNB_GGUF_INT64);
    if (kv) bnb_bytes_put_u64(&kv->val, (uint64_t)v);
    return done(kv);
}
bnb_status bnb_gguf_set_f32(bnb_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    wkv *kv = slot(w, key, BNB_GGUF_FLOAT32);
    if (kv) bnb_bytes_put_u32(&kv->val, u);
    return done(kv);
}
bnb_status bnb_gguf_set_f64(bnb_gguf_writer *w, const char *key, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    wkv *kv = slot(w, key, BNB_GGUF_FLOAT64);
    if (kv) bnb_bytes_put_u64(&kv->val, u);
    return done(kv);
}
bnb_status bnb_gguf_set_bool(bnb_gguf_writer *w, const char *key, bool v) {
    wkv *kv = slot(w, key, BNB_GGUF_BOOL);
    if (kv) bnb_bytes_put_u8(&kv->val, v ? 1 : 0);
    return done(kv);
}
static void put_gstr(bnb_bytes *b, const char *s) {
    size_t l = strlen(s);
    bnb_bytes_put_u64(b, l);
    bnb_bytes_put(b, s, l);
}
bnb_status bnb_gguf_set_str(bnb_gguf_writer *w, const char *key, const char *v) {
    if (!v) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_set_str: value of '%s' is NULL", key ? key : "");
    wkv *kv = slot(w, key, BNB_GGUF_STRING);
    if (kv) put_gstr(&kv->val, v);
    return done(kv);
}

static size_t elem_size(bnb_gguf_value_type t) {
    switch (t) {
    case BNB_GGUF_UINT8: case BNB_GGUF_INT8: case BNB_GGUF_BOOL: return 1;
    case BNB_GGUF_UINT16: case BNB_GGUF_INT16: return 2;
    case BNB_GGUF_UINT32: case BNB_GGUF_INT32: case BNB_GGUF_FLOAT32: return 4;
    case BNB_GGUF_UINT64: case BNB_GGUF_INT64: case BNB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

bnb_status bnb_gguf_set_arr(bnb_gguf_writer *w, const char *key, bnb_gguf_value_type type, const void *data, int64_t n) {
    size_t es = elem_size(type);
    if (!es || n < 0 || (n > 0 && !data))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_set_arr('%s'): bad element type %d or data", key ? key : "",
                        (int)type);
    wkv *kv = slot(w, key, BNB_GGUF_ARRAY);
    if (kv) {
        bnb_bytes_put_u32(&kv->val, (uint32_t)type);
        bnb_bytes_put_u64(&kv->val, (uint64_t)n);
        bnb_bytes_put(&kv->val, data, (size_t)n * es); /* little-endian host */
    }
    return done(kv);
}

bnb_status bnb_gguf_set_arr_str(bnb_gguf_writer *w, const char *key, const char *const *v, int64_t n) {
    if (n < 0 || (n > 0 && !v)) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_set_arr_str('%s'): bad data", key ? key : "");
    for (int64_t i = 0; i < n; i++)
        if (!v[i]) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_set_arr_str('%s'): element %lld is NULL", key, (long long)i);
    wkv *kv = slot(w, key, BNB_GGUF_ARRAY);
    if (kv) {
        bnb_bytes_put_u32(&kv->val, BNB_GGUF_STRING);
        bnb_bytes_put_u64(&kv->val, (uint64_t)n);
        for (int64_t i = 0; i < n; i++) put_gstr(&kv->val, v[i]);
    }
    return done(kv);
}

static uint32_t gguf_type_of(bnb_type t) {
    switch (t) {
    case BNB_TYPE_F32: return BNB_GGML_TYPE_F32;
    case BNB_TYPE_F16: return BNB_GGML_TYPE_F16;
    case BNB_TYPE_BF16: return BNB_GGML_TYPE_BF16;
    case BNB_TYPE_I8: return BNB_GGML_TYPE_I8;
    case BNB_TYPE_I32: return BNB_GGML_TYPE_I32;
    default: return BNB_GGUF_TYPE_BNB_BASE + (uint32_t)t;
    }
}

static wtensor *new_wtensor(bnb_gguf_writer *w, const char *name) {
    if (!name || !*name || strlen(name) >= BNB_MAX_NAME)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_gguf_writer: tensor name '%s' is empty or longer than %d",
                             name ? name : "", BNB_MAX_NAME - 1);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_gguf_writer: duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *n = realloc(w->ts, cap * sizeof *n);
        if (!n) return bnb_fail_null(BNB_ERR_OOM, "bnb_gguf_writer: out of memory");
        w->ts = n;
        w->cap_t = cap;
    }
    wtensor *t = &w->ts[w->n_t];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

bnb_status bnb_gguf_writer_add_tensor(bnb_gguf_writer *w, const bnb_tensor *t) {
    if (!w || !t) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_tensor: NULL argument");
    if (!bnb_is_contiguous(t) || !t->data)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_tensor: tensor '%s' is not contiguous or has no data",
                        t->name);
    wtensor *wt = new_wtensor(w, t->name);
    if (!wt) return bnb_last_status();
    wt->n_dims = bnb_n_dims(t);
    memcpy(wt->ne, t->ne, sizeof wt->ne);
    wt->type = gguf_type_of(t->type);
    wt->nbytes = bnb_nbytes(t);
    wt->t = t;
    w->n_t++;
    const bnb_type_traits *tr = bnb_type_get_traits(t->type);
    if (tr && tr->is_quantized) {
        char key[BNB_MAX_NAME + 16];
        snprintf(key, sizeof key, "bnb.quant.%s", t->name);
        float qp[4] = {(float)t->quant.block, (float)t->quant.map, (float)t->quant.nested, t->quant.threshold};
        bnb_status st = bnb_gguf_set_arr(w, key, BNB_GGUF_FLOAT32, qp, 4);
        if (st != BNB_OK) {
            w->n_t--;
            return st;
        }
    }
    return BNB_OK;
}

bnb_status bnb_gguf_writer_add_raw(bnb_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                                   const void *data, size_t nbytes) {
    if (!w || !ne || (nbytes && !data) || n_dims < 1 || n_dims > BNB_MAX_DIMS)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_raw: bad arguments for '%s'", name ? name : "");
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || bnb_mul_overflow_u64(n, (uint64_t)ne[d], &n))
            return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_raw('%s'): bad shape", name ? name : "");
    }
    if (type < BNB_GGUF_TYPE_BNB_BASE) {
        size_t want = bnb_ggml_type_nbytes(type, n);
        if ((want == 0 && n > 0) || want != nbytes)
            return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_raw('%s'): %zu bytes given, type %u needs %zu",
                            name ? name : "", nbytes, type, want);
    } else if (type >= BNB_GGUF_TYPE_BNB_BASE + BNB_TYPE_COUNT) {
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_add_raw('%s'): unknown type %u", name ? name : "", type);
    }
    wtensor *wt = new_wtensor(w, name);
    if (!wt) return bnb_last_status();
    wt->n_dims = n_dims;
    for (int d = 0; d < BNB_MAX_DIMS; d++) wt->ne[d] = d < n_dims ? ne[d] : 1;
    wt->type = type;
    wt->nbytes = nbytes;
    wt->raw = malloc(nbytes ? nbytes : 1);
    if (!wt->raw) return bnb_fail(BNB_ERR_OOM, "bnb_gguf_writer_add_raw('%s'): out of memory", name);
    if (nbytes) memcpy(wt->raw, data, nbytes);
    w->n_t++;
    return BNB_OK;
}

/* ---------------------------------------------------------------- emitting (through the shared sink) */
static bnb_status write_all(void *ctx, bnb_sink *s) {
    bnb_gguf_writer *w = ctx;
    bnb_bytes h = {0};
    bnb_bytes_put(&h, "GGUF", 4);
    bnb_bytes_put_u32(&h, 3);
    bnb_bytes_put_u64(&h, w->n_t);
    bnb_bytes_put_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_gstr(&h, w->kvs[i].key);
        bnb_bytes_put_u32(&h, w->kvs[i].type);
        bnb_bytes_put(&h, w->kvs[i].val.data, w->kvs[i].val.size);
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->ts[i];
        put_gstr(&h, t->name);
        bnb_bytes_put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bnb_bytes_put_u64(&h, (uint64_t)t->ne[d]);
        bnb_bytes_put_u32(&h, t->type);
        bnb_bytes_put_u64(&h, off);
        off = BNB_PAD(off + t->nbytes, w->alignment);
    }
    if (h.oom) {
        bnb_bytes_free(&h);
        return bnb_fail(BNB_ERR_OOM, "bnb_gguf_writer: out of memory");
    }
    bnb_status st = bnb_sink_write(s, h.data, h.size);
    size_t pad = BNB_PAD(h.size, w->alignment) - h.size;
    bnb_bytes_free(&h);
    if (st == BNB_OK) st = bnb_sink_zeros(s, pad);
    uint8_t *buf = NULL;
    for (size_t i = 0; i < w->n_t && st == BNB_OK; i++) {
        const wtensor *t = &w->ts[i];
        st = t->raw ? bnb_sink_write(s, t->raw, t->nbytes) : bnb_sink_tensor(s, t->t, t->nbytes, t->name, &buf);
        if (st == BNB_OK) st = bnb_sink_zeros(s, BNB_PAD(t->nbytes, w->alignment) - t->nbytes);
    }
    free(buf);
    return st;
}

bnb_status bnb_gguf_writer_write(bnb_gguf_writer *w, const char *path) {
    if (!w) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_write: writer is NULL");
    return bnb_sink_to_file(path, "bnb_gguf_writer", write_all, w);
}

bnb_status bnb_gguf_writer_write_memory(bnb_gguf_writer *w, void **data, size_t *size) {
    if (!w || !data || !size) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_writer_write_memory: NULL argument");
    return bnb_sink_to_memory(data, size, "bnb_gguf_writer", write_all, w);
}
