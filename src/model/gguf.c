/* GGUF v3 reader: header, metadata, tensor infos, data section; ggml block formats (Q8_0, Q4_0, Q4_1) dequantized.
 * Every count and length is checked against the bytes left before anything is allocated, so memory stays bounded
 * by a small multiple of the file size whatever the file says. The writer is in gguf-write.c. */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gguf_kv {
    const char *key;
    uint32_t type;
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;
    const char *str; /* STRING */
    size_t str_len;
    uint32_t arr_type; /* ARRAY */
    uint64_t arr_n;
    const uint8_t *arr_data;   /* numeric arrays: raw little-endian elements in the file */
    const char **arr_strs;     /* string arrays */
    size_t *arr_lens;
} gguf_kv;

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

struct bnb_gguf {
    bnb_mapped_file file;
    const uint8_t *data;
    size_t size;
    char name[256];
    uint32_t version;
    int64_t n_kv, n_tensors;
    gguf_kv *kvs;
    bnb_gguf_tensor_info *tensors;
    size_t alignment, data_offset;
    arena_block *arena;
};

/* ---------------------------------------------------------------- ggml block formats */
static size_t ggml_block_size(uint32_t t, size_t *block_bytes) {
    switch (t) {
    case BNB_GGML_TYPE_F32: *block_bytes = 4; return 1;
    case BNB_GGML_TYPE_F16: *block_bytes = 2; return 1;
    case BNB_GGML_TYPE_BF16: *block_bytes = 2; return 1;
    case BNB_GGML_TYPE_Q4_0: *block_bytes = 18; return 32;
    case BNB_GGML_TYPE_Q4_1: *block_bytes = 20; return 32;
    case BNB_GGML_TYPE_Q8_0: *block_bytes = 34; return 32;
    case BNB_GGML_TYPE_I8: *block_bytes = 1; return 1;
    case BNB_GGML_TYPE_I16: *block_bytes = 2; return 1;
    case BNB_GGML_TYPE_I32: *block_bytes = 4; return 1;
    case BNB_GGML_TYPE_I64: *block_bytes = 8; return 1;
    case BNB_GGML_TYPE_F64: *block_bytes = 8; return 1;
    default: *block_bytes = 0; return 0;
    }
}

size_t bnb_ggml_type_nbytes(uint32_t t, uint64_t n) {
    size_t bb;
    size_t bs = ggml_block_size(t, &bb);
    if (!bs || n % bs) return 0;
    uint64_t r;
    if (bnb_mul_overflow_u64(n / bs, bb, &r) || r > SIZE_MAX) return 0;
    return (size_t)r;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

bnb_status bnb_ggml_to_f32(uint32_t t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (t) {
    case BNB_GGML_TYPE_F32: memcpy(dst, s, (size_t)n * 4); return BNB_OK;
    case BNB_GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = bnb_f16_to_f32(rd16(s + 2 * i));
        return BNB_OK;
    case BNB_GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = bnb_bf16_to_f32(rd16(s + 2 * i));
        return BNB_OK;
    case BNB_GGML_TYPE_I8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i];
        return BNB_OK;
    case BNB_GGML_TYPE_I16:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int16_t)rd16(s + 2 * i);
        return BNB_OK;
    case BNB_GGML_TYPE_I32:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)rd32(s + 4 * i);
        return BNB_OK;
    case BNB_GGML_TYPE_I64:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int64_t)rd64(s + 8 * i);
        return BNB_OK;
    case BNB_GGML_TYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t u = rd64(s + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        }
        return BNB_OK;
    case BNB_GGML_TYPE_Q8_0: /* f16 d, 32 x int8 */
        for (int64_t b = 0; b < n / 32; b++, s += 34) {
            float d = bnb_f16_to_f32(rd16(s));
            for (int j = 0; j < 32; j++) dst[b * 32 + j] = (float)(int8_t)s[2 + j] * d;
        }
        return BNB_OK;
    case BNB_GGML_TYPE_Q4_0: /* f16 d, 16 bytes: element j < 16 low nibble of byte j, j >= 16 high nibble of j-16 */
        for (int64_t b = 0; b < n / 32; b++, s += 18) {
            float d = bnb_f16_to_f32(rd16(s));
            float *y = dst + b * 32;
            for (int j = 0; j < 16; j++) {
                y[j] = (float)((int)(s[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = (float)((int)(s[2 + j] >> 4) - 8) * d;
            }
        }
        return BNB_OK;
    case BNB_GGML_TYPE_Q4_1: /* f16 d, f16 m, 16 bytes: x = q d + m */
        for (int64_t b = 0; b < n / 32; b++, s += 20) {
            float d = bnb_f16_to_f32(rd16(s)), m = bnb_f16_to_f32(rd16(s + 2));
            float *y = dst + b * 32;
            for (int j = 0; j < 16; j++) {
                y[j] = (float)(s[4 + j] & 0x0F) * d + m;
                y[j + 16] = (float)(s[4 + j] >> 4) * d + m;
            }
        }
        return BNB_OK;
    default: return bnb_fail(BNB_ERR_TYPE, "bnb_ggml_to_f32: unsupported GGUF tensor type %u", t);
    }
}

/* ---------------------------------------------------------------- parsing */
typedef struct reader {
    bnb_gguf *g;
    size_t pos;
    const char *field; /* what is being read, for messages */
} reader;

static bool rfail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool rfail(reader *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bnb_fail(BNB_ERR_IO, "%s: %s: %s (at byte %zu of %zu)", r->g->name, r->field, msg, r->pos, r->g->size);
    return false;
}

static size_t left(const reader *r) { return r->g->size - r->pos; }

static bool need(reader *r, size_t n, const char *what) {
    if (left(r) < n) return rfail(r, "truncated: %s needs %zu bytes, %zu left", what, n, left(r));
    return true;
}

static bool get_u32(reader *r, uint32_t *v, const char *what) {
    if (!need(r, 4, what)) return false;
    *v = rd32(r->g->data + r->pos);
    r->pos += 4;
    return true;
}
static bool get_u64(reader *r, uint64_t *v, const char *what) {
    if (!need(r, 8, what)) return false;
    *v = rd64(r->g->data + r->pos);
    r->pos += 8;
    return true;
}

static char *arena_alloc(bnb_gguf *g, size_t n) {
    arena_block *b = g->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = g->arena;
        nb->used = 0;
        nb->cap = cap;
        g->arena = b = nb;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

/* GGUF string: u64 length + bytes; copied NUL-terminated into the arena. */
static bool get_str(reader *r, const char **out, size_t *out_len, const char *what) {
    uint64_t len;
    if (!get_u64(r, &len, what)) return false;
    if (len > left(r)) return rfail(r, "%s: string length %llu is past the end of the file", what, (unsigned long long)len);
    char *s = arena_alloc(r->g, (size_t)len + 1);
    if (!s) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", r->g->name), false;
    memcpy(s, r->g->data + r->pos, (size_t)len);
    s[len] = 0;
    r->pos += (size_t)len;
    *out = s;
    if (out_len) *out_len = (size_t)len;
    return true;
}

static size_t value_size(uint32_t type) {
    switch (type) {
    case BNB_GGUF_UINT8: case BNB_GGUF_INT8: case BNB_GGUF_BOOL: return 1;
    case BNB_GGUF_UINT16: case BNB_GGUF_INT16: return 2;
    case BNB_GGUF_UINT32: case BNB_GGUF_INT32: case BNB_GGUF_FLOAT32: return 4;
    case BNB_GGUF_UINT64: case BNB_GGUF_INT64: case BNB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Scalar at p of a numeric type into the kv's union (u for unsigned/bool, i for signed, f for floats). */
static void load_scalar(gguf_kv *kv, uint32_t type, const uint8_t *p) {
    switch (type) {
    case BNB_GGUF_UINT8: kv->v.u = p[0]; break;
    case BNB_GGUF_BOOL: kv->v.u = p[0] != 0; break;
    case BNB_GGUF_INT8: kv->v.i = (int8_t)p[0]; break;
    case BNB_GGUF_UINT16: kv->v.u = rd16(p); break;
    case BNB_GGUF_INT16: kv->v.i = (int16_t)rd16(p); break;
    case BNB_GGUF_UINT32: kv->v.u = rd32(p); break;
    case BNB_GGUF_INT32: kv->v.i = (int32_t)rd32(p); break;
    case BNB_GGUF_UINT64: kv->v.u = rd64(p); break;
    case BNB_GGUF_INT64: kv->v.i = (int64_t)rd64(p); break;
    case BNB_GGUF_FLOAT32: {
        uint32_t u = rd32(p);
        float f;
        memcpy(&f, &u, 4);
        kv->v.f = f;
        break;
    }
    case BNB_GGUF_FLOAT64: {
        uint64_t u = rd64(p);
        memcpy(&kv->v.f, &u, 8);
        break;
    }
    default: break;
    }
}

static bool read_kv(reader *r, gguf_kv *kv, int64_t idx) {
    char field[64];
    snprintf(field, sizeof field, "metadata key %lld", (long long)idx);
    r->field = field;
    if (!get_str(r, &kv->key, NULL, "key")) return false;
    /* name the key in later messages */
    static _Thread_local char field2[320];
    snprintf(field2, sizeof field2, "metadata '%.256s'", kv->key);
    r->field = field2;
    if (!get_u32(r, &kv->type, "value type")) return false;
    if (kv->type == BNB_GGUF_STRING) return get_str(r, &kv->str, &kv->str_len, "value");
    if (kv->type == BNB_GGUF_ARRAY) {
        uint64_t n;
        if (!get_u32(r, &kv->arr_type, "array element type") || !get_u64(r, &n, "array length")) return false;
        kv->arr_n = n;
        if (kv->arr_type == BNB_GGUF_STRING) {
            if (n > left(r) / 8) return rfail(r, "array of %llu strings is longer than the file", (unsigned long long)n);
            kv->arr_strs = malloc((size_t)(n ? n : 1) * sizeof *kv->arr_strs);
            kv->arr_lens = malloc((size_t)(n ? n : 1) * sizeof *kv->arr_lens);
            if (!kv->arr_strs || !kv->arr_lens) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", r->g->name), false;
            for (uint64_t j = 0; j < n; j++)
                if (!get_str(r, &kv->arr_strs[j], &kv->arr_lens[j], "array string")) return false;
            return true;
        }
        size_t es = value_size(kv->arr_type);
        if (!es) {
            if (kv->arr_type == BNB_GGUF_ARRAY) return rfail(r, "nested arrays are not supported");
            return rfail(r, "unknown array element type %u", kv->arr_type);
        }
        if (n > left(r) / es)
            return rfail(r, "array of %llu elements of %zu bytes is past the end of the file", (unsigned long long)n, es);
        kv->arr_data = r->g->data + r->pos;
        r->pos += (size_t)n * es;
        return true;
    }
    size_t es = value_size(kv->type);
    if (!es) return rfail(r, "unknown value type %u", kv->type);
    if (!need(r, es, "value")) return false;
    load_scalar(kv, kv->type, r->g->data + r->pos);
    r->pos += es;
    return true;
}

/* bnb quant params from "bnb.quant.<name>" (FLOAT32 array [block, map, nested, threshold]). */
static bool read_quant_params(reader *r, const char *tname, bnb_quant_params *qp) {
    char key[BNB_MAX_NAME + 16];
    snprintf(key, sizeof key, "bnb.quant.%s", tname);
    int64_t i = bnb_gguf_find_key(r->g, key);
    if (i < 0) return rfail(r, "missing metadata '%s' (quantization parameters)", key);
    const gguf_kv *kv = &r->g->kvs[i];
    if (kv->type != BNB_GGUF_ARRAY || kv->arr_type != BNB_GGUF_FLOAT32 || kv->arr_n != 4)
        return rfail(r, "metadata '%s' must be a FLOAT32 array of 4", key);
    float v[4];
    for (int j = 0; j < 4; j++) {
        uint32_t u = rd32(kv->arr_data + 4 * j);
        memcpy(&v[j], &u, 4);
    }
    bool block_ok = v[0] >= 0 && v[0] <= 65536 && v[0] == floorf(v[0]);
    if (block_ok && v[0] > 0) block_ok = ((int)v[0] & ((int)v[0] - 1)) == 0;
    if (!block_ok || !(v[1] >= 0 && v[1] <= BNB_QMAP_FP4 && v[1] == floorf(v[1])) || !(v[2] == 0 || v[2] == 1) ||
        !(v[3] >= 0 && isfinite(v[3])))
        return rfail(r, "metadata '%s': invalid quantization parameters [%g, %g, %g, %g]", key, v[0], v[1], v[2], v[3]);
    qp->block = (int32_t)v[0];
    qp->map = (int32_t)v[1];
    qp->nested = (int32_t)v[2];
    qp->threshold = v[3];
    return true;
}

static bool read_tensor_info(reader *r, bnb_gguf_tensor_info *ti, int64_t idx) {
    static _Thread_local char field[320];
    snprintf(field, sizeof field, "tensor %lld", (long long)idx);
    r->field = field;
    size_t name_len;
    if (!get_str(r, &ti->name, &name_len, "name")) return false;
    snprintf(field, sizeof field, "tensor %lld (%.200s)", (long long)idx, ti->name);
    if (name_len == 0) return rfail(r, "empty tensor name");
    uint32_t nd;
    if (!get_u32(r, &nd, "n_dims")) return false;
    if (nd < 1 || nd > BNB_MAX_DIMS) return rfail(r, "n_dims %u is not in 1..4", nd);
    ti->n_dims = (int)nd;
    uint64_t n = 1;
    for (int d = 0; d < BNB_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (!get_u64(r, &ne, "ne")) return false;
        if (ne > (uint64_t)INT64_MAX || bnb_mul_overflow_u64(n, ne, &n) || n > (uint64_t)INT64_MAX)
            return rfail(r, "shape overflows (dim %u = %llu)", d, (unsigned long long)ne);
        ti->ne[d] = (int64_t)ne;
    }
    if (!get_u32(r, &ti->ggml_type, "type") || !get_u64(r, &ti->offset, "offset")) return false;
    uint32_t t = ti->ggml_type;
    memset(&ti->quant, 0, sizeof ti->quant);
    if (t >= BNB_GGUF_TYPE_BNB_BASE && t < BNB_GGUF_TYPE_BNB_BASE + BNB_TYPE_COUNT) {
        ti->type = (bnb_type)(t - BNB_GGUF_TYPE_BNB_BASE);
        const bnb_type_traits *tr = bnb_type_get_traits(ti->type);
        if (!tr) return rfail(r, "unknown bnb type %u", t - BNB_GGUF_TYPE_BNB_BASE);
        if (tr->is_quantized) {
            if (strlen(ti->name) >= BNB_MAX_NAME) return rfail(r, "name too long for a bnb tensor");
            if (!read_quant_params(r, ti->name, &ti->quant)) return false;
            if ((ti->type == BNB_TYPE_I8_ROW || ti->type == BNB_TYPE_OUTLIERS) && ti->ne[0] == 0)
                return rfail(r, "ne[0] is 0 for a row-wise type");
            if (ti->type != BNB_TYPE_I8_ROW && ti->type != BNB_TYPE_OUTLIERS && ti->quant.block == 0)
                return rfail(r, "block size 0 for a blockwise type");
        }
        /* the size computation multiplies by small constants: keep n well inside size_t */
        if (n > r->g->size * 2 + 64) return rfail(r, "%llu elements cannot fit in the file", (unsigned long long)n);
        ti->nbytes = bnb_type_nbytes(ti->type, (int64_t)n, ti->ne[0], ti->quant);
        if (ti->nbytes == 0 && n > 0) return rfail(r, "invalid bnb type/shape");
    } else {
        size_t bb;
        size_t bs = ggml_block_size(t, &bb);
        if (!bs) return rfail(r, "unsupported tensor type %u (bnb reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, I8..F64)", t);
        if (ti->ne[0] % (int64_t)bs) return rfail(r, "ne[0] = %lld is not a multiple of the block size %zu",
                                                  (long long)ti->ne[0], bs);
        ti->nbytes = bnb_ggml_type_nbytes(t, n);
        if (ti->nbytes == 0 && n > 0) return rfail(r, "size overflows");
        switch (t) {
        case BNB_GGML_TYPE_F32: ti->type = BNB_TYPE_F32; break;
        case BNB_GGML_TYPE_F16: ti->type = BNB_TYPE_F16; break;
        case BNB_GGML_TYPE_BF16: ti->type = BNB_TYPE_BF16; break;
        case BNB_GGML_TYPE_I8: ti->type = BNB_TYPE_I8; break;
        case BNB_GGML_TYPE_I32: ti->type = BNB_TYPE_I32; break;
        default: ti->type = BNB_TYPE_F32; break;
        }
    }
    return true;
}

static void gguf_free_parts(bnb_gguf *g) {
    if (g->kvs) {
        for (int64_t i = 0; i < g->n_kv; i++) {
            free(g->kvs[i].arr_strs);
            free(g->kvs[i].arr_lens);
        }
    }
    free(g->kvs);
    free(g->tensors);
    while (g->arena) {
        arena_block *n = g->arena->next;
        free(g->arena);
        g->arena = n;
    }
}

static bool gguf_parse(bnb_gguf *g) {
    reader r = {g, 0, "header"};
    if (!need(&r, 4, "magic")) return false;
    if (memcmp(g->data, "GGUF", 4) != 0) return rfail(&r, "bad magic (not a GGUF file)");
    r.pos = 4;
    uint64_t nt, nkv;
    if (!get_u32(&r, &g->version, "version")) return false;
    if (g->version != 3 && g->version != 2)
        return rfail(&r, "unsupported GGUF version %u (bnb reads version 3, and 2)", g->version);
    if (!get_u64(&r, &nt, "n_tensors") || !get_u64(&r, &nkv, "n_kv")) return false;
    /* each KV takes >= 12 bytes, each tensor info >= 24: counts beyond that cannot be real */
    if (nkv > left(&r) / 12) return rfail(&r, "n_kv = %llu is more than the file can hold", (unsigned long long)nkv);
    g->kvs = calloc((size_t)(nkv ? nkv : 1), sizeof *g->kvs);
    if (!g->kvs) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", g->name), false;
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1;
        if (!read_kv(&r, &g->kvs[i], (int64_t)i)) return false;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kvs[j].key, g->kvs[i].key) == 0) return rfail(&r, "duplicate key");
    }
    g->n_kv = (int64_t)nkv;
    r.field = "header";
    if (nt > left(&r) / 24) return rfail(&r, "n_tensors = %llu is more than the file can hold", (unsigned long long)nt);
    g->alignment = BNB_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = bnb_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kvs[ai];
        r.field = "metadata 'general.alignment'";
        if (kv->type != BNB_GGUF_UINT32) return rfail(&r, "must be UINT32");
        if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) || kv->v.u > (1u << 24))
            return rfail(&r, "alignment %llu is not a power of two <= 2^24", (unsigned long long)kv->v.u);
        g->alignment = (size_t)kv->v.u;
    }
    g->tensors = calloc((size_t)(nt ? nt : 1), sizeof *g->tensors);
    if (!g->tensors) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", g->name), false;
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = (int64_t)i + 1;
        if (!read_tensor_info(&r, &g->tensors[i], (int64_t)i)) return false;
    }
    g->n_tensors = (int64_t)nt;
    /* duplicate names: sort-free check with a small hash table */
    if (nt > 1) {
        size_t hs = 1;
        while (hs < nt * 2) hs <<= 1;
        int64_t *h = malloc(hs * sizeof *h);
        if (!h) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", g->name), false;
        for (size_t k = 0; k < hs; k++) h[k] = -1;
        for (int64_t i = 0; i < (int64_t)nt; i++) {
            uint64_t hv = 1469598103934665603ull;
            for (const char *c = g->tensors[i].name; *c; c++) hv = (hv ^ (uint8_t)*c) * 1099511628211ull;
            size_t k = hv & (hs - 1);
            while (h[k] >= 0) {
                if (strcmp(g->tensors[h[k]].name, g->tensors[i].name) == 0) {
                    free(h);
                    r.field = "tensor infos";
                    return rfail(&r, "duplicate tensor name '%.200s'", g->tensors[i].name);
                }
                k = (k + 1) & (hs - 1);
            }
            h[k] = i;
        }
        free(h);
    }
    size_t data_off = BNB_PAD(r.pos, g->alignment);
    g->data_offset = data_off;
    size_t data_size = data_off <= g->size ? g->size - data_off : 0;
    for (int64_t i = 0; i < (int64_t)nt; i++) {
        bnb_gguf_tensor_info *ti = &g->tensors[i];
        char field[320];
        snprintf(field, sizeof field, "tensor %lld (%.200s)", (long long)i, ti->name);
        r.field = field;
        r.pos = data_off <= g->size ? data_off : g->size;
        if (ti->offset % g->alignment)
            return rfail(&r, "data offset %llu is not a multiple of the alignment %zu", (unsigned long long)ti->offset,
                         g->alignment);
        if (ti->offset > data_size || ti->nbytes > data_size - ti->offset)
            return rfail(&r, "data offset %llu + %zu bytes is past the end of the data section (%zu bytes)",
                         (unsigned long long)ti->offset, ti->nbytes, data_size);
        ti->data = g->data + data_off + ti->offset;
    }
    return true;
}

static bnb_gguf *gguf_new(const char *name) {
    bnb_gguf *g = calloc(1, sizeof *g);
    if (!g) return bnb_fail_null(BNB_ERR_OOM, "bnb_gguf: out of memory");
    snprintf(g->name, sizeof g->name, "%s", name ? name : "GGUF");
    return g;
}

bnb_gguf *bnb_gguf_parse_memory(const void *data, size_t size, const char *name) {
    if (!data && size) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_gguf_parse_memory: data is NULL");
    bnb_gguf *g = gguf_new(name);
    if (!g) return NULL;
    g->data = data;
    g->size = size;
    if (!gguf_parse(g)) {
        bnb_gguf_free(g);
        return NULL;
    }
    return g;
}

bnb_gguf *bnb_gguf_open(const char *path) {
    bnb_gguf *g = gguf_new(path);
    if (!g) return NULL;
    if (bnb_file_map(path, &g->file) != BNB_OK) {
        free(g);
        return NULL;
    }
    g->data = g->file.data;
    g->size = g->file.size;
    if (!gguf_parse(g)) {
        bnb_gguf_free(g);
        return NULL;
    }
    return g;
}

void bnb_gguf_free(bnb_gguf *g) {
    if (!g) return;
    gguf_free_parts(g);
    bnb_file_unmap(&g->file);
    free(g);
}

uint32_t bnb_gguf_version(const bnb_gguf *g) { return g ? g->version : 0; }
size_t bnb_gguf_alignment(const bnb_gguf *g) { return g ? g->alignment : 0; }
size_t bnb_gguf_data_offset(const bnb_gguf *g) { return g ? g->data_offset : 0; }
int64_t bnb_gguf_n_kv(const bnb_gguf *g) { return g ? g->n_kv : 0; }
int64_t bnb_gguf_n_tensors(const bnb_gguf *g) { return g ? g->n_tensors : 0; }

/* internal access for the tokenizer and gguf-access.c */
const char *bnb_gguf_name_internal(const bnb_gguf *g) { return g->name; }

int64_t bnb_gguf_find_key(const bnb_gguf *g, const char *key) {
    if (!g || !key) return -1;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0) return i;
    return -1;
}
const char *bnb_gguf_key(const bnb_gguf *g, int64_t i) { return g && i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL; }
bnb_gguf_value_type bnb_gguf_kv_type(const bnb_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? (bnb_gguf_value_type)g->kvs[i].type : (bnb_gguf_value_type)-1;
}

static bool kv_to_double(const gguf_kv *kv, double *out) {
    switch (kv->type) {
    case BNB_GGUF_UINT8: case BNB_GGUF_UINT16: case BNB_GGUF_UINT32: case BNB_GGUF_UINT64: case BNB_GGUF_BOOL:
        *out = (double)kv->v.u; return true;
    case BNB_GGUF_INT8: case BNB_GGUF_INT16: case BNB_GGUF_INT32: case BNB_GGUF_INT64: *out = (double)kv->v.i; return true;
    case BNB_GGUF_FLOAT32: case BNB_GGUF_FLOAT64: *out = kv->v.f; return true;
    default: return false;
    }
}
static bool kv_to_int(const gguf_kv *kv, int64_t *out) {
    switch (kv->type) {
    case BNB_GGUF_UINT8: case BNB_GGUF_UINT16: case BNB_GGUF_UINT32: case BNB_GGUF_UINT64: case BNB_GGUF_BOOL:
        if (kv->v.u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->v.u;
        return true;
    case BNB_GGUF_INT8: case BNB_GGUF_INT16: case BNB_GGUF_INT32: case BNB_GGUF_INT64: *out = kv->v.i; return true;
    default: return false;
    }
}

static const gguf_kv *find_kv(const bnb_gguf *g, const char *key, bool required, bnb_status *st) {
    int64_t i = bnb_gguf_find_key(g, key);
    if (i < 0) {
        *st = required ? bnb_fail(BNB_ERR_IO, "%s: missing metadata '%s'", g ? g->name : "GGUF", key ? key : "(null)")
                       : BNB_ERR_INVALID_ARG;
        return NULL;
    }
    return &g->kvs[i];
}

bnb_status bnb_gguf_get_int(const bnb_gguf *g, const char *key, bool required, int64_t *out) {
    bnb_status st = BNB_OK;
    const gguf_kv *kv = find_kv(g, key, required, &st);
    if (!kv) return st;
    if (!kv_to_int(kv, out)) return bnb_fail(BNB_ERR_IO, "%s: metadata '%s' is not an integer", g->name, key);
    return BNB_OK;
}
bnb_status bnb_gguf_get_float(const bnb_gguf *g, const char *key, bool required, double *out) {
    bnb_status st = BNB_OK;
    const gguf_kv *kv = find_kv(g, key, required, &st);
    if (!kv) return st;
    if (!kv_to_double(kv, out)) return bnb_fail(BNB_ERR_IO, "%s: metadata '%s' is not a number", g->name, key);
    return BNB_OK;
}
bnb_status bnb_gguf_get_bool(const bnb_gguf *g, const char *key, bool required, bool *out) {
    int64_t v;
    bnb_status st = bnb_gguf_get_int(g, key, required, &v);
    if (st == BNB_OK) *out = v != 0;
    return st;
}
const char *bnb_gguf_get_str(const bnb_gguf *g, const char *key, size_t *len) {
    int64_t i = bnb_gguf_find_key(g, key);
    if (i < 0 || g->kvs[i].type != BNB_GGUF_STRING) return NULL;
    if (len) *len = g->kvs[i].str_len;
    return g->kvs[i].str;
}
bnb_gguf_value_type bnb_gguf_arr_type(const bnb_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv && g->kvs[i].type == BNB_GGUF_ARRAY ? (bnb_gguf_value_type)g->kvs[i].arr_type
                                                                           : (bnb_gguf_value_type)-1;
}
int64_t bnb_gguf_arr_n(const bnb_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv && g->kvs[i].type == BNB_GGUF_ARRAY ? (int64_t)g->kvs[i].arr_n : 0;
}
const char *bnb_gguf_arr_str(const bnb_gguf *g, int64_t i, int64_t j, size_t *len) {
    if (bnb_gguf_arr_type(g, i) != BNB_GGUF_STRING || j < 0 || (uint64_t)j >= g->kvs[i].arr_n) return NULL;
    if (len) *len = g->kvs[i].arr_lens[j];
    return g->kvs[i].arr_strs[j];
}
static bool arr_elem(const bnb_gguf *g, int64_t i, int64_t j, gguf_kv *tmp) {
    bnb_gguf_value_type t = bnb_gguf_arr_type(g, i);
    size_t es = value_size((uint32_t)t);
    if ((int)t < 0 || !es || j < 0 || (uint64_t)j >= g->kvs[i].arr_n) return false;
    memset(tmp, 0, sizeof *tmp);
    tmp->type = (uint32_t)t;
    load_scalar(tmp, (uint32_t)t, g->kvs[i].arr_data + (size_t)j * es);
    return true;
}
bool bnb_gguf_arr_float(const bnb_gguf *g, int64_t i, int64_t j, double *out) {
    gguf_kv tmp;
    return arr_elem(g, i, j, &tmp) && kv_to_double(&tmp, out);
}
bool bnb_gguf_arr_int(const bnb_gguf *g, int64_t i, int64_t j, int64_t *out) {
    gguf_kv tmp;
    return arr_elem(g, i, j, &tmp) && kv_to_int(&tmp, out);
}

int64_t bnb_gguf_find_tensor(const bnb_gguf *g, const char *name) {
    if (!g || !name) return -1;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}

bnb_status bnb_gguf_tensor_info_get(const bnb_gguf *g, int64_t i, bnb_gguf_tensor_info *info) {
    if (!g || !info || i < 0 || i >= g->n_tensors)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_gguf_tensor_info_get: tensor index %lld out of range", (long long)i);
    *info = g->tensors[i];
    return BNB_OK;
}
