/* safetensors reader and writer (u64 header length + JSON header + data), and Hugging Face config.json. */
#include "model-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB of header */

static const struct {
    const char *name;
    size_t size;
} g_dtypes[BNB_ST_COUNT] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
};

const char *bnb_st_dtype_name(bnb_st_dtype d) { return (unsigned)d < BNB_ST_COUNT ? g_dtypes[d].name : "?"; }

struct bnb_safetensors {
    bnb_mapped_file file;
    char name[256];
    const uint8_t *data; /* start of the data section */
    size_t data_size;
    bnb_json *header;
    const bnb_json_value *metadata;
    bnb_st_tensor_info *tensors;
    int64_t n_tensors;
};

static int cmp_offset(const void *a, const void *b) {
    const bnb_st_tensor_info *x = a, *y = b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py ? 1 : (x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static bool parse_entry(bnb_safetensors *st, const char *tname, const bnb_json_value *v, bnb_st_tensor_info *ti) {
    const char *f = st->name;
    if (bnb_json_type_of(v) != BNB_JSON_OBJECT)
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': entry is not an object", f, tname), false;
    memset(ti, 0, sizeof *ti);
    ti->name = tname;
    const char *dt = bnb_json_string(bnb_json_get(v, "dtype"), NULL);
    if (!dt) return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'dtype' missing or not a string", f, tname), false;
    int d = -1;
    for (int k = 0; k < BNB_ST_COUNT; k++)
        if (strcmp(dt, g_dtypes[k].name) == 0) d = k;
    if (d < 0) return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'dtype': unsupported dtype '%.32s'", f, tname, dt), false;
    ti->dtype = (bnb_st_dtype)d;
    const bnb_json_value *shape = bnb_json_get(v, "shape");
    if (bnb_json_type_of(shape) != BNB_JSON_ARRAY || bnb_json_len(shape) > BNB_ST_MAX_DIMS)
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'shape' is not an array of at most %d dims", f, tname,
                        BNB_ST_MAX_DIMS), false;
    ti->n_dims = (int)bnb_json_len(shape);
    uint64_t n = 1;
    for (int k = 0; k < ti->n_dims; k++) {
        int64_t s;
        if (!bnb_json_int(bnb_json_at(shape, (size_t)k), &s) || s < 0)
            return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'shape'[%d] is not a non-negative integer", f, tname, k), false;
        if (bnb_mul_overflow_u64(n, (uint64_t)s, &n) || n > (uint64_t)INT64_MAX)
            return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'shape': element count overflows", f, tname), false;
        ti->shape[k] = s;
    }
    ti->n_elements = (int64_t)n;
    for (int k = 0; k < BNB_MAX_DIMS; k++) ti->ne[k] = 1;
    if (ti->n_dims <= BNB_MAX_DIMS)
        for (int k = 0; k < ti->n_dims; k++) ti->ne[k] = ti->shape[ti->n_dims - 1 - k];
    const bnb_json_value *offs = bnb_json_get(v, "data_offsets");
    int64_t b, e;
    if (bnb_json_type_of(offs) != BNB_JSON_ARRAY || bnb_json_len(offs) != 2 || !bnb_json_int(bnb_json_at(offs, 0), &b) ||
        !bnb_json_int(bnb_json_at(offs, 1), &e))
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'data_offsets' is not [begin, end]", f, tname), false;
    if (b < 0 || e < b || (uint64_t)e > st->data_size)
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'data_offsets' [%lld, %lld] is outside the data (%zu bytes)",
                        f, tname, (long long)b, (long long)e, st->data_size), false;
    uint64_t want;
    if (bnb_mul_overflow_u64(n, g_dtypes[d].size, &want) || want != (uint64_t)(e - b))
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%.200s': field 'data_offsets' spans %lld bytes, %s x %llu elements need %llu",
                        f, tname, (long long)(e - b), g_dtypes[d].name, (unsigned long long)n,
                        (unsigned long long)(n * g_dtypes[d].size)), false;
    ti->data = st->data + b;
    ti->nbytes = (size_t)(e - b);
    switch (ti->dtype) {
    case BNB_ST_F32: ti->type = BNB_TYPE_F32; break;
    case BNB_ST_F16: ti->type = BNB_TYPE_F16; break;
    case BNB_ST_BF16: ti->type = BNB_TYPE_BF16; break;
    case BNB_ST_I8: ti->type = BNB_TYPE_I8; break;
    case BNB_ST_U8: ti->type = BNB_TYPE_U8; break;
    case BNB_ST_I32: ti->type = BNB_TYPE_I32; break;
    default: ti->type = BNB_TYPE_F32; break;
    }
    return true;
}

static bool st_parse(bnb_safetensors *st, const uint8_t *data, size_t size) {
    const char *f = st->name;
    if (size < 8) return bnb_fail(BNB_ERR_IO, "%s: header length: truncated (file is %zu bytes)", f, size), false;
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | data[k];
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        return bnb_fail(BNB_ERR_IO, "%s: header length %llu is past the end of the file (%zu bytes) or over 100 MB", f,
                        (unsigned long long)hlen, size), false;
    if (hlen < 2 || data[8] != '{')
        return bnb_fail(BNB_ERR_IO, "%s: header does not start with '{' (not a safetensors file)", f), false;
    st->data = data + 8 + hlen;
    st->data_size = size - 8 - (size_t)hlen;
    /* the header may be padded with trailing spaces */
    st->header = bnb_json_parse((const char *)data + 8, (size_t)hlen, f);
    if (!st->header) return false;
    const bnb_json_value *root = bnb_json_root(st->header);
    if (bnb_json_type_of(root) != BNB_JSON_OBJECT) return bnb_fail(BNB_ERR_IO, "%s: header is not a JSON object", f), false;
    size_t n = bnb_json_len(root);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    if (!st->tensors) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", f), false;
    for (size_t i = 0; i < n; i++) {
        const char *key = bnb_json_key_at(root, i);
        const bnb_json_value *v = bnb_json_at(root, i);
        if (strcmp(key, "__metadata__") == 0) {
            if (bnb_json_type_of(v) != BNB_JSON_OBJECT)
                return bnb_fail(BNB_ERR_IO, "%s: field '__metadata__' is not an object", f), false;
            for (size_t k = 0; k < bnb_json_len(v); k++)
                if (bnb_json_type_of(bnb_json_at(v, k)) != BNB_JSON_STRING)
                    return bnb_fail(BNB_ERR_IO, "%s: __metadata__ '%.200s' is not a string", f, bnb_json_key_at(v, k)), false;
            st->metadata = v;
            continue;
        }
        if (strlen(key) == 0) return bnb_fail(BNB_ERR_IO, "%s: empty tensor name", f), false;
        if (!parse_entry(st, key, v, &st->tensors[st->n_tensors])) return false;
        st->n_tensors++;
    }
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_offset);
    for (int64_t i = 1; i < st->n_tensors; i++) {
        const bnb_st_tensor_info *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data)
            return bnb_fail(BNB_ERR_IO, "%s: tensors '%.200s' and '%.200s' overlap (field 'data_offsets')", f, a->name,
                            b->name), false;
    }
    /* duplicate names (JSON objects may repeat keys) */
    if (st->n_tensors > 1) {
        const char **names = malloc((size_t)st->n_tensors * sizeof *names);
        if (!names) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", f), false;
        for (int64_t i = 0; i < st->n_tensors; i++) names[i] = st->tensors[i].name;
        qsort(names, (size_t)st->n_tensors, sizeof *names, cmp_name);
        for (int64_t i = 1; i < st->n_tensors; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                bnb_fail(BNB_ERR_IO, "%s: duplicate tensor '%.200s'", f, names[i]);
                free(names);
                return false;
            }
        free(names);
    }
    return true;
}

static bnb_safetensors *st_new(const char *name) {
    bnb_safetensors *st = calloc(1, sizeof *st);
    if (!st) return bnb_fail_null(BNB_ERR_OOM, "bnb_safetensors: out of memory");
    snprintf(st->name, sizeof st->name, "%s", name ? name : "safetensors");
    return st;
}

bnb_safetensors *bnb_safetensors_parse_memory(const void *data, size_t size, const char *name) {
    if (!data && size) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_safetensors_parse_memory: data is NULL");
    bnb_safetensors *st = st_new(name);
    if (st && !st_parse(st, data, size)) {
        bnb_safetensors_free(st);
        return NULL;
    }
    return st;
}

bnb_safetensors *bnb_safetensors_open(const char *path) {
    bnb_safetensors *st = st_new(path);
    if (!st) return NULL;
    if (bnb_file_map(path, &st->file) != BNB_OK || !st_parse(st, st->file.data, st->file.size)) {
        bnb_safetensors_free(st);
        return NULL;
    }
    return st;
}

void bnb_safetensors_free(bnb_safetensors *st) {
    if (!st) return;
    bnb_json_free(st->header);
    free(st->tensors);
    bnb_file_unmap(&st->file);
    free(st);
}

int64_t bnb_safetensors_n_tensors(const bnb_safetensors *st) { return st ? st->n_tensors : 0; }
int64_t bnb_safetensors_find(const bnb_safetensors *st, const char *name) {
    if (!st || !name) return -1;
    for (int64_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return i;
    return -1;
}
bnb_status bnb_safetensors_info(const bnb_safetensors *st, int64_t i, bnb_st_tensor_info *info) {
    if (!st || !info || i < 0 || i >= st->n_tensors)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_info: index %lld out of range", (long long)i);
    *info = st->tensors[i];
    return BNB_OK;
}
const char *bnb_safetensors_metadata(const bnb_safetensors *st, const char *key) {
    return st ? bnb_json_string(bnb_json_get(st->metadata, key), NULL) : NULL;
}

bnb_status bnb_safetensors_to_f32(const bnb_safetensors *st, int64_t i, float *dst, int64_t n) {
    bnb_st_tensor_info ti;
    bnb_status s = bnb_safetensors_info(st, i, &ti);
    if (s != BNB_OK) return s;
    if (!dst || n != ti.n_elements)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor '%s' has %lld elements, asked for %lld", st->name, ti.name,
                        (long long)ti.n_elements, (long long)n);
    const uint8_t *p = ti.data;
    switch (ti.dtype) {
    case BNB_ST_F64: return bnb_ggml_to_f32(BNB_GGML_TYPE_F64, p, dst, n);
    case BNB_ST_F32: return bnb_ggml_to_f32(BNB_GGML_TYPE_F32, p, dst, n);
    case BNB_ST_F16: return bnb_ggml_to_f32(BNB_GGML_TYPE_F16, p, dst, n);
    case BNB_ST_BF16: return bnb_ggml_to_f32(BNB_GGML_TYPE_BF16, p, dst, n);
    case BNB_ST_I64: return bnb_ggml_to_f32(BNB_GGML_TYPE_I64, p, dst, n);
    case BNB_ST_I32: return bnb_ggml_to_f32(BNB_GGML_TYPE_I32, p, dst, n);
    case BNB_ST_I16: return bnb_ggml_to_f32(BNB_GGML_TYPE_I16, p, dst, n);
    case BNB_ST_I8: return bnb_ggml_to_f32(BNB_GGML_TYPE_I8, p, dst, n);
    case BNB_ST_U8:
    case BNB_ST_BOOL:
        for (int64_t k = 0; k < n; k++) dst[k] = (float)p[k];
        return BNB_OK;
    default: return bnb_fail(BNB_ERR_TYPE, "%s: tensor '%s': bad dtype", st->name, ti.name);
    }
}

bnb_tensor *bnb_safetensors_tensor_new(const bnb_safetensors *st, int64_t i, bnb_context *ctx) {
    bnb_st_tensor_info ti;
    if (bnb_safetensors_info(st, i, &ti) != BNB_OK) return NULL;
    if (ti.n_dims > BNB_MAX_DIMS)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: tensor '%s' has %d dims, bnb tensors have at most 4", st->name, ti.name,
                             ti.n_dims);
    bnb_tensor *t = bnb_new_tensor(ctx, ti.type, ti.n_dims ? ti.n_dims : 1, ti.ne);
    return t ? bnb_set_name(t, ti.name) : NULL;
}

bnb_status bnb_safetensors_tensor_load(const bnb_safetensors *st, int64_t i, bnb_tensor *t) {
    bnb_st_tensor_info ti;
    bnb_status s = bnb_safetensors_info(st, i, &ti);
    if (s != BNB_OK) return s;
    if (!t) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: bnb_safetensors_tensor_load: tensor is NULL", st->name);
    if (t->type != ti.type || bnb_nelements(t) != ti.n_elements || ti.n_dims > BNB_MAX_DIMS)
        return bnb_fail(BNB_ERR_SHAPE, "%s: tensor '%s' (%s, %lld elements) does not fit the destination (%s, %lld)",
                        st->name, ti.name, bnb_st_dtype_name(ti.dtype), (long long)ti.n_elements, bnb_type_name(t->type),
                        (long long)bnb_nelements(t));
    for (int d = 0; d < BNB_MAX_DIMS; d++)
        if (t->ne[d] != ti.ne[d])
            return bnb_fail(BNB_ERR_SHAPE, "%s: tensor '%s': dim %d is %lld, the destination has %lld", st->name, ti.name,
                            d, (long long)ti.ne[d], (long long)t->ne[d]);
    if (ti.type != BNB_TYPE_F32 || ti.dtype == BNB_ST_F32) return bnb_tensor_set(t, ti.data, 0, ti.nbytes);
    float *tmp = malloc((size_t)(ti.n_elements ? ti.n_elements : 1) * sizeof(float));
    if (!tmp) return bnb_fail(BNB_ERR_OOM, "%s: tensor '%s': out of memory", st->name, ti.name);
    s = bnb_safetensors_to_f32(st, i, tmp, ti.n_elements);
    if (s == BNB_OK) s = bnb_tensor_set_f32(t, tmp, ti.n_elements);
    free(tmp);
    return s;
}

bnb_status bnb_safetensors_int8_linear(const bnb_safetensors *st, const char *prefix, int64_t *weight, int64_t *scb,
                                       int64_t *in, int64_t *out) {
    if (!st || !prefix) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_safetensors_int8_linear: NULL argument");
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int64_t wi = bnb_safetensors_find(st, name);
    if (wi < 0) return bnb_fail(BNB_ERR_IO, "%s: missing tensor '%s'", st->name, name);
    const bnb_st_tensor_info *w = &st->tensors[wi];
    if (w->dtype != BNB_ST_I8 || w->n_dims != 2)
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%s' is %s with %d dims, an int8 weight is I8 [out, in]", st->name, name,
                        bnb_st_dtype_name(w->dtype), w->n_dims);
    snprintf(name, sizeof name, "%s.SCB", prefix);
    int64_t si = bnb_safetensors_find(st, name);
    if (si < 0) return bnb_fail(BNB_ERR_IO, "%s: missing tensor '%s'", st->name, name);
    const bnb_st_tensor_info *s = &st->tensors[si];
    if (s->dtype != BNB_ST_F32 || s->n_dims != 1 || s->shape[0] != w->shape[0])
        return bnb_fail(BNB_ERR_IO, "%s: tensor '%s' must be F32 [%lld] (one scale per output row)", st->name, name,
                        (long long)w->shape[0]);
    if (weight) *weight = wi;
    if (scb) *scb = si;
    if (in) *in = w->shape[1];
    if (out) *out = w->shape[0];
    return BNB_OK;
}
