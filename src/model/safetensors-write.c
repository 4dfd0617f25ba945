/* safetensors writer (atomic) and Hugging Face config.json reading (Llama-family fields). */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_wtensor {
    char *name;
    bnb_st_dtype dtype;
    int n_dims;
    int64_t shape[BNB_ST_MAX_DIMS];
    size_t nbytes;
    const bnb_tensor *t;
    uint8_t *raw;
} st_wtensor;

struct bnb_safetensors_writer {
    st_wtensor *ts;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta;
};

static const size_t g_dsize[BNB_ST_COUNT] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};

static char *dupstr(const char *s) {
    size_t l = strlen(s) + 1;
    char *d = malloc(l);
    if (d) memcpy(d, s, l);
    return d;
}

bnb_safetensors_writer *bnb_safetensors_writer_new(void) {
    bnb_safetensors_writer *w = calloc(1, sizeof *w);
    return w ? w : bnb_fail_null(BNB_ERR_OOM, "bnb_safetensors_writer_new: out of memory");
}

void bnb_safetensors_writer_free(bnb_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->ts[i].name);
        free(w->ts[i].raw);
    }
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->meta);
    free(w->ts);
    free(w);
}

bnb_status bnb_safetensors_writer_set_metadata(bnb_safetensors_writer *w, const char *key, const char *value) {
    if (!w || !key || !value || !*key) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_set_metadata: bad argument");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            char *v = dupstr(value);
            if (!v) return bnb_fail(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return BNB_OK;
        }
    char **m = realloc(w->meta, (w->n_meta + 1) * 2 * sizeof *m);
    if (!m) return bnb_fail(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
    w->meta = m;
    m[2 * w->n_meta] = dupstr(key);
    m[2 * w->n_meta + 1] = dupstr(value);
    w->n_meta++;
    if (!m[2 * w->n_meta - 2] || !m[2 * w->n_meta - 1]) return bnb_fail(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
    return BNB_OK;
}

static st_wtensor *new_entry(bnb_safetensors_writer *w, const char *name) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer: bad tensor name '%s'", name ? name : "");
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        st_wtensor *n = realloc(w->ts, cap * sizeof *n);
        if (!n) return bnb_fail_null(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
        w->ts = n;
        w->cap = cap;
    }
    st_wtensor *t = &w->ts[w->n];
    memset(t, 0, sizeof *t);
    t->name = dupstr(name);
    if (!t->name) return bnb_fail_null(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
    return t;
}

bnb_status bnb_safetensors_writer_add_tensor(bnb_safetensors_writer *w, const bnb_tensor *t) {
    if (!w || !t) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_add_tensor: NULL argument");
    bnb_st_dtype d;
    switch (t->type) {
    case BNB_TYPE_F32: d = BNB_ST_F32; break;
    case BNB_TYPE_F16: d = BNB_ST_F16; break;
    case BNB_TYPE_BF16: d = BNB_ST_BF16; break;
    case BNB_TYPE_I8: d = BNB_ST_I8; break;
    case BNB_TYPE_U8: d = BNB_ST_U8; break;
    case BNB_TYPE_I32: d = BNB_ST_I32; break;
    default:
        return bnb_fail(BNB_ERR_TYPE, "bnb_safetensors_writer_add_tensor: '%s' is %s; safetensors holds plain types only "
                                      "(write bnb types to GGUF)", t->name, bnb_type_name(t->type));
    }
    if (!bnb_is_contiguous(t) || !t->data)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_add_tensor: '%s' is not contiguous or has no data",
                        t->name);
    st_wtensor *e = new_entry(w, t->name);
    if (!e) return bnb_last_status();
    e->dtype = d;
    e->n_dims = bnb_n_dims(t);
    for (int k = 0; k < e->n_dims; k++) e->shape[k] = t->ne[e->n_dims - 1 - k];
    e->nbytes = bnb_nbytes(t);
    e->t = t;
    w->n++;
    return BNB_OK;
}

bnb_status bnb_safetensors_writer_add_raw(bnb_safetensors_writer *w, const char *name, bnb_st_dtype dtype, int n_dims,
                                          const int64_t *shape, const void *data, size_t nbytes) {
    if (!w || (unsigned)dtype >= BNB_ST_COUNT || n_dims < 0 || n_dims > BNB_ST_MAX_DIMS || (n_dims && !shape) ||
        (nbytes && !data))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_add_raw: bad arguments for '%s'", name ? name : "");
    uint64_t n = 1;
    for (int k = 0; k < n_dims; k++)
        if (shape[k] < 0 || bnb_mul_overflow_u64(n, (uint64_t)shape[k], &n))
            return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_add_raw('%s'): bad shape", name ? name : "");
    if (n * g_dsize[dtype] != nbytes)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_add_raw('%s'): %zu bytes given, shape needs %llu",
                        name ? name : "", nbytes, (unsigned long long)(n * g_dsize[dtype]));
    st_wtensor *e = new_entry(w, name);
    if (!e) return bnb_last_status();
    e->dtype = dtype;
    e->n_dims = n_dims;
    for (int k = 0; k < n_dims; k++) e->shape[k] = shape[k];
    e->nbytes = nbytes;
    e->raw = malloc(nbytes ? nbytes : 1);
    if (!e->raw) {
        free(e->name);
        return bnb_fail(BNB_ERR_OOM, "bnb_safetensors_writer_add_raw('%s'): out of memory", name);
    }
    if (nbytes) memcpy(e->raw, data, nbytes);
    w->n++;
    return BNB_OK;
}

static void put_json_str(bnb_bytes *b, const char *s) {
    bnb_bytes_put_u8(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            bnb_bytes_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            bnb_bytes_put(b, esc, 6);
        } else {
            bnb_bytes_put_u8(b, *p);
        }
    }
    bnb_bytes_put_u8(b, '"');
}

static bnb_status write_all(void *ctx, bnb_sink *s) {
    bnb_safetensors_writer *w = ctx;
    bnb_bytes h = {0};
    char num[64];
    bnb_bytes_put_u8(&h, '{');
    bool first = true;
    if (w->n_meta) {
        bnb_bytes_put_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) bnb_bytes_put_u8(&h, ',');
            put_json_str(&h, w->meta[2 * i]);
            bnb_bytes_put_u8(&h, ':');
            put_json_str(&h, w->meta[2 * i + 1]);
        }
        bnb_bytes_put_u8(&h, '}');
        first = false;
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->ts[i];
        if (!first) bnb_bytes_put_u8(&h, ',');
        first = false;
        put_json_str(&h, t->name);
        bnb_bytes_put_str(&h, ":{\"dtype\":\"");
        bnb_bytes_put_str(&h, bnb_st_dtype_name(t->dtype));
        bnb_bytes_put_str(&h, "\",\"shape\":[");
        for (int k = 0; k < t->n_dims; k++) {
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)t->shape[k]);
            bnb_bytes_put_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        bnb_bytes_put_str(&h, num);
        off += t->nbytes;
    }
    bnb_bytes_put_u8(&h, '}');
    while (h.size % 8) bnb_bytes_put_u8(&h, ' '); /* data starts 8-byte aligned */
    if (h.oom) {
        bnb_bytes_free(&h);
        return bnb_fail(BNB_ERR_OOM, "bnb_safetensors_writer: out of memory");
    }
    uint8_t len[8];
    for (int k = 0; k < 8; k++) len[k] = (uint8_t)((uint64_t)h.size >> (8 * k));
    bnb_status st = bnb_sink_write(s, len, 8);
    if (st == BNB_OK) st = bnb_sink_write(s, h.data, h.size);
    bnb_bytes_free(&h);
    uint8_t *buf = NULL;
    for (size_t i = 0; i < w->n && st == BNB_OK; i++) {
        const st_wtensor *t = &w->ts[i];
        st = t->raw ? bnb_sink_write(s, t->raw, t->nbytes) : bnb_sink_tensor(s, t->t, t->nbytes, t->name, &buf);
    }
    free(buf);
    return st;
}

bnb_status bnb_safetensors_writer_write(bnb_safetensors_writer *w, const char *path) {
    if (!w) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_write: writer is NULL");
    return bnb_sink_to_file(path, "bnb_safetensors_writer", write_all, w);
}

bnb_status bnb_safetensors_writer_write_memory(bnb_safetensors_writer *w, void **data, size_t *size) {
    if (!w || !data || !size) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_writer_write_memory: NULL argument");
    return bnb_sink_to_memory(data, size, "bnb_safetensors_writer", write_all, w);
}

/* ---------------------------------------------------------------- config.json */
static bool cfg_int(const bnb_json_value *root, const char *key, bool required, int64_t *out, const char *file) {
    const bnb_json_value *v = bnb_json_get(root, key);
    if (!v || bnb_json_type_of(v) == BNB_JSON_NULL) {
        if (required) bnb_fail(BNB_ERR_IO, "%s: missing field '%s'", file, key);
        return !required;
    }
    if (bnb_json_type_of(v) == BNB_JSON_ARRAY) v = bnb_json_at(v, 0); /* eos_token_id may be a list */
    int64_t x;
    if (!bnb_json_int(v, &x) || x < -1 || x > ((int64_t)1 << 40)) {
        bnb_fail(BNB_ERR_IO, "%s: field '%s' is not a valid integer", file, key);
        return false;
    }
    *out = x;
    return true;
}

static bool cfg_num(const bnb_json_value *root, const char *key, double *out, const char *file) {
    const bnb_json_value *v = bnb_json_get(root, key);
    if (!v || bnb_json_type_of(v) == BNB_JSON_NULL) return true;
    if (bnb_json_type_of(v) != BNB_JSON_NUMBER || !isfinite(bnb_json_number(v)) || bnb_json_number(v) < 0) {
        bnb_fail(BNB_ERR_IO, "%s: field '%s' is not a non-negative number", file, key);
        return false;
    }
    *out = bnb_json_number(v);
    return true;
}

static void cfg_str(const bnb_json_value *v, char *dst, size_t cap) {
    const char *s = bnb_json_string(v, NULL);
    if (s) snprintf(dst, cap, "%s", s);
}

bnb_status bnb_hf_config_parse(const char *json, size_t len, const char *name, bnb_hf_config *cfg) {
    if (!cfg) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_hf_config_parse: cfg is NULL");
    if (!name) name = "config.json";
    memset(cfg, 0, sizeof *cfg);
    cfg->num_key_value_heads = -1;
    cfg->head_dim = -1;
    cfg->max_position_embeddings = 2048;
    cfg->rms_norm_eps = 1e-6;
    cfg->rope_theta = 10000.0;
    cfg->bos_token_id = cfg->eos_token_id = -1;
    bnb_json *doc = bnb_json_parse(json, len, name);
    if (!doc) return bnb_last_status();
    const bnb_json_value *r = bnb_json_root(doc);
    bool ok = bnb_json_type_of(r) == BNB_JSON_OBJECT;
    if (!ok) bnb_fail(BNB_ERR_IO, "%s: not a JSON object", name);
    ok = ok && cfg_int(r, "hidden_size", true, &cfg->hidden_size, name) &&
         cfg_int(r, "intermediate_size", true, &cfg->intermediate_size, name) &&
         cfg_int(r, "num_hidden_layers", true, &cfg->num_hidden_layers, name) &&
         cfg_int(r, "num_attention_heads", true, &cfg->num_attention_heads, name) &&
         cfg_int(r, "vocab_size", true, &cfg->vocab_size, name) &&
         cfg_int(r, "num_key_value_heads", false, &cfg->num_key_value_heads, name) &&
         cfg_int(r, "head_dim", false, &cfg->head_dim, name) &&
         cfg_int(r, "max_position_embeddings", false, &cfg->max_position_embeddings, name) &&
         cfg_int(r, "bos_token_id", false, &cfg->bos_token_id, name) &&
         cfg_int(r, "eos_token_id", false, &cfg->eos_token_id, name) &&
         cfg_num(r, "rms_norm_eps", &cfg->rms_norm_eps, name) && cfg_num(r, "rope_theta", &cfg->rope_theta, name);
    if (ok) {
        const bnb_json_value *tie = bnb_json_get(r, "tie_word_embeddings");
        if (tie && bnb_json_type_of(tie) != BNB_JSON_BOOL) {
            bnb_fail(BNB_ERR_IO, "%s: field 'tie_word_embeddings' is not a boolean", name);
            ok = false;
        }
        cfg->tie_word_embeddings = bnb_json_bool(tie);
        cfg_str(bnb_json_get(r, "model_type"), cfg->model_type, sizeof cfg->model_type);
        cfg_str(bnb_json_at(bnb_json_get(r, "architectures"), 0), cfg->architecture, sizeof cfg->architecture);
        cfg_str(bnb_json_get(r, "torch_dtype"), cfg->torch_dtype, sizeof cfg->torch_dtype);
    }
    if (ok) {
        const char *bad = NULL;
        if (cfg->hidden_size <= 0) bad = "hidden_size";
        else if (cfg->intermediate_size <= 0) bad = "intermediate_size";
        else if (cfg->num_hidden_layers <= 0) bad = "num_hidden_layers";
        else if (cfg->num_attention_heads <= 0) bad = "num_attention_heads";
        else if (cfg->vocab_size <= 0) bad = "vocab_size";
        if (bad) {
            bnb_fail(BNB_ERR_IO, "%s: field '%s' must be positive", name, bad);
            ok = false;
        }
    }
    if (ok) {
        if (cfg->num_key_value_heads < 0) cfg->num_key_value_heads = cfg->num_attention_heads;
        if (cfg->head_dim < 0) cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
        if (cfg->num_key_value_heads <= 0 || cfg->num_attention_heads % cfg->num_key_value_heads) {
            bnb_fail(BNB_ERR_IO, "%s: field 'num_key_value_heads' (%lld) must divide num_attention_heads (%lld)", name,
                     (long long)cfg->num_key_value_heads, (long long)cfg->num_attention_heads);
            ok = false;
        }
    }
    bnb_json_free(doc);
    return ok ? BNB_OK : bnb_last_status();
}

bnb_status bnb_hf_config_load(const char *path, bnb_hf_config *cfg) {
    char *text;
    size_t n;
    bnb_status st = bnb_file_read_all(path, 16u << 20, &text, &n);
    if (st != BNB_OK) return st;
    st = bnb_hf_config_parse(text, n, path, cfg);
    free(text);
    return st;
}
