/* GGUF tensors as bnb tensors: conversion to F32, creating a bnb tensor for a GGUF tensor and loading its data. */
#include "model-impl.h"

#include <stdlib.h>
#include <string.h>

static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The OUTLIERS section of a hostile file may name columns that do not exist: check before dequantizing. */
static bnb_status check_outliers(const char *file, const char *tname, const uint8_t *sec, size_t avail, int64_t cap) {
    if (avail < 4) return bnb_fail(BNB_ERR_IO, "%s: tensor %s: outlier section truncated", file, tname);
    int32_t count = (int32_t)rd32(sec);
    if (count < 0 || count > cap)
        return bnb_fail(BNB_ERR_IO, "%s: tensor %s: outlier count %d is not in 0..%lld", file, tname, count,
                        (long long)cap);
    if ((size_t)(count + 1) * 4 > avail) return bnb_fail(BNB_ERR_IO, "%s: tensor %s: outlier section truncated", file, tname);
    for (int32_t j = 0; j < count; j++) {
        int32_t c = (int32_t)rd32(sec + 4 + 4 * (size_t)j);
        if (c < 0 || c >= cap)
            return bnb_fail(BNB_ERR_IO, "%s: tensor %s: outlier column %d is not in 0..%lld", file, tname, c,
                            (long long)cap - 1);
    }
    return BNB_OK;
}

static bnb_status bnb_storage_to_f32(const char *file, const bnb_gguf_tensor_info *ti, float *dst, int64_t n) {
    const uint8_t *d = ti->data;
    switch (ti->type) {
    case BNB_TYPE_F32: return bnb_ggml_to_f32(BNB_GGML_TYPE_F32, d, dst, n);
    case BNB_TYPE_F16: return bnb_ggml_to_f32(BNB_GGML_TYPE_F16, d, dst, n);
    case BNB_TYPE_BF16: return bnb_ggml_to_f32(BNB_GGML_TYPE_BF16, d, dst, n);
    case BNB_TYPE_I8: return bnb_ggml_to_f32(BNB_GGML_TYPE_I8, d, dst, n);
    case BNB_TYPE_I32: return bnb_ggml_to_f32(BNB_GGML_TYPE_I32, d, dst, n);
    case BNB_TYPE_U8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)d[i];
        return BNB_OK;
    default: break;
    }
    if (n == 0) return BNB_OK;
    /* quantized kinds: through a host tensor and the quantization code */
    if (ti->type == BNB_TYPE_OUTLIERS) {
        bnb_status st = check_outliers(file, ti->name, d, ti->nbytes, ti->ne[0]);
        if (st != BNB_OK) return st;
    }
    if (ti->type == BNB_TYPE_I8_ROW && ti->quant.threshold > 0) {
        int64_t rows = n / ti->ne[0];
        size_t off = BNB_PAD(BNB_PAD((size_t)n, 16) + (size_t)rows * 4, 16);
        if (off > ti->nbytes) return bnb_fail(BNB_ERR_IO, "%s: tensor %s: truncated", file, ti->name);
        bnb_status st = check_outliers(file, ti->name, d + off, ti->nbytes - off, ti->ne[0]);
        if (st != BNB_OK) return st;
    }
    bnb_context *ctx = bnb_context_new((bnb_context_params){ti->nbytes + 4096, false});
    if (!ctx) return bnb_last_status();
    bnb_tensor *t = bnb_new_tensor_quant(ctx, ti->type, ti->n_dims, ti->ne, ti->quant);
    bnb_status st = t ? bnb_tensor_set(t, d, 0, ti->nbytes) : bnb_last_status();
    if (st == BNB_OK) st = bnb_tensor_get_f32(t, dst, n);
    if (st != BNB_OK)
        bnb_fail(st, "%s: tensor %s (%s): cannot dequantize: %s", file, ti->name, bnb_type_name(ti->type), bnb_last_error());
    bnb_context_free(ctx);
    return st;
}

static int64_t nelements(const bnb_gguf_tensor_info *ti) { return ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3]; }

const char *bnb_gguf_name_internal(const bnb_gguf *g);

bnb_status bnb_gguf_tensor_to_f32(const bnb_gguf *g, int64_t i, float *dst, int64_t n) {
    bnb_gguf_tensor_info ti;
    bnb_status st = bnb_gguf_tensor_info_get(g, i, &ti);
    if (st != BNB_OK) return st;
    const char *file = bnb_gguf_name_internal(g);
    if (!dst || n != nelements(&ti))
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor %s has %lld elements, asked for %lld", file, ti.name,
                        (long long)nelements(&ti), (long long)n);
    if (ti.ggml_type >= BNB_GGUF_TYPE_BNB_BASE) return bnb_storage_to_f32(file, &ti, dst, n);
    return bnb_ggml_to_f32(ti.ggml_type, ti.data, dst, n);
}

bnb_tensor *bnb_gguf_tensor_new(const bnb_gguf *g, int64_t i, bnb_context *ctx) {
    bnb_gguf_tensor_info ti;
    if (bnb_gguf_tensor_info_get(g, i, &ti) != BNB_OK) return NULL;
    const bnb_type_traits *tr = bnb_type_get_traits(ti.type);
    bnb_tensor *t = tr && tr->is_quantized ? bnb_new_tensor_quant(ctx, ti.type, ti.n_dims, ti.ne, ti.quant)
                                           : bnb_new_tensor(ctx, ti.type, ti.n_dims, ti.ne);
    if (!t) return NULL;
    return bnb_set_name(t, ti.name);
}

/* Whether the file's bytes are the bnb tensor's storage as is. */
static bool stored_as_is(const bnb_gguf_tensor_info *ti) {
    switch (ti->ggml_type) {
    case BNB_GGML_TYPE_F32: case BNB_GGML_TYPE_F16: case BNB_GGML_TYPE_BF16: case BNB_GGML_TYPE_I8:
    case BNB_GGML_TYPE_I32: return true;
    default: return ti->ggml_type >= BNB_GGUF_TYPE_BNB_BASE;
    }
}

bnb_status bnb_gguf_tensor_load(const bnb_gguf *g, int64_t i, bnb_tensor *t) {
    bnb_gguf_tensor_info ti;
    bnb_status st = bnb_gguf_tensor_info_get(g, i, &ti);
    if (st != BNB_OK) return st;
    const char *file = bnb_gguf_name_internal(g);
    if (!t) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: bnb_gguf_tensor_load: tensor is NULL", file);
    for (int d = 0; d < BNB_MAX_DIMS; d++)
        if (t->ne[d] != ti.ne[d])
            return bnb_fail(BNB_ERR_SHAPE, "%s: tensor %s: shape differs from the destination's (dim %d: %lld vs %lld)",
                            file, ti.name, d, (long long)ti.ne[d], (long long)t->ne[d]);
    if (t->type != ti.type)
        return bnb_fail(BNB_ERR_TYPE, "%s: tensor %s loads as %s, the destination is %s", file, ti.name,
                        bnb_type_name(ti.type), bnb_type_name(t->type));
    if (stored_as_is(&ti)) {
        if (bnb_nbytes(t) != ti.nbytes)
            return bnb_fail(BNB_ERR_SHAPE, "%s: tensor %s: %zu bytes in the file, the destination has %zu", file,
                            ti.name, ti.nbytes, bnb_nbytes(t));
        return bnb_tensor_set(t, ti.data, 0, ti.nbytes);
    }
    int64_t n = nelements(&ti);
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!tmp) return bnb_fail(BNB_ERR_OOM, "%s: tensor %s: cannot allocate %lld floats", file, ti.name, (long long)n);
    st = bnb_ggml_to_f32(ti.ggml_type, ti.data, tmp, n);
    if (st == BNB_OK) st = bnb_tensor_set_f32(t, tmp, n);
    free(tmp);
    return st;
}
