/* LLM.int8 (spec section 3): op constructors (vector-wise quantization, dequantization, the mixed-decomposition
 * matmul), host conversions of I8_ROW tensors, the gradient rule of matmul_int8 and the linear_int8 block. */
#include "../bnb-impl.h"

#include <math.h>
#include <stdlib.h>

static bool check_float_rows(const char *op, const bnb_tensor *t, const char *what) {
    if (!bnb_check_src(op, t, what)) return false;
    if (!bnb_type_is_float(t->type)) {
        bnb_fail(BNB_ERR_TYPE, "%s: %s is %s, must be f32/f16/bf16", op, what, bnb_type_name(t->type));
        return false;
    }
    if (t->nb[0] != bnb_type_size(t->type)) {
        char s[64];
        bnb_fail(BNB_ERR_SHAPE, "%s: %s (%s) must have contiguous rows (use bnb_cont)", op, what,
                 bnb_shape_str(t, s, sizeof s));
        return false;
    }
    return true;
}

static bool check_threshold(const char *op, float threshold) {
    if (!(threshold >= 0.f) || isinf(threshold)) {
        bnb_fail(BNB_ERR_INVALID_ARG, "%s: threshold %g must be finite and >= 0 (0 disables outliers)", op,
                 (double)threshold);
        return false;
    }
    return true;
}

static bool check_i8row(const char *op, const bnb_tensor *t, const char *what) {
    if (!bnb_check_src(op, t, what)) return false;
    if (t->type != BNB_TYPE_I8_ROW) {
        bnb_fail(BNB_ERR_TYPE, "%s: %s is %s, must be i8_row", op, what, bnb_type_name(t->type));
        return false;
    }
    if (t->view_src) {
        bnb_fail(BNB_ERR_SHAPE, "%s: %s is a view of an i8_row tensor; views of quantized tensors are not supported",
                 op, what);
        return false;
    }
    return true;
}

/* ============================================================================================= constructors */
bnb_tensor *bnb_int8_vectorwise_quant(bnb_context *ctx, bnb_tensor *x, float threshold) {
    const char *op = "bnb_int8_vectorwise_quant";
    if (!check_float_rows(op, x, "x") || !check_threshold(op, threshold)) return NULL;
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_INT8_VECTORWISE_QUANT, BNB_TYPE_I8_ROW, x->ne);
    if (!t) return NULL;
    t->quant = (bnb_quant_params){.threshold = threshold};
    bnb_set_op_f32(t, 0, threshold);
    t->src[0] = x;
    return t;
}

bnb_tensor *bnb_int8_quantize_weight(bnb_context *ctx, bnb_tensor *w) {
    if (w && (w->ne[2] != 1 || w->ne[3] != 1)) {
        char s[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "bnb_int8_quantize_weight: w is %s, must be 2-D [in, out]",
                             bnb_shape_str(w, s, sizeof s));
    }
    return bnb_int8_vectorwise_quant(ctx, w, 0.f);
}

bnb_tensor *bnb_int8_dequantize(bnb_context *ctx, bnb_tensor *q) {
    const char *op = "bnb_int8_dequantize";
    if (!check_i8row(op, q, "q")) return NULL;
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_INT8_DEQUANTIZE, BNB_TYPE_F32, q->ne);
    if (!t) return NULL;
    t->src[0] = q;
    return t;
}

bnb_tensor *bnb_matmul_int8(bnb_context *ctx, bnb_tensor *x, bnb_tensor *w, float threshold, bnb_tensor *bias) {
    return bnb_matmul_int8_out(ctx, x, w, threshold, bias, BNB_TYPE_F32);
}

bnb_tensor *bnb_matmul_int8_out(bnb_context *ctx, bnb_tensor *x, bnb_tensor *w, float threshold, bnb_tensor *bias,
                                bnb_type out_type) {
    const char *op = "bnb_matmul_int8";
    if (!bnb_type_is_float(out_type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: out_type %s, must be f32/f16/bf16", op, bnb_type_name(out_type));
    char sx[64], sw[64], sb[64];
    if (!bnb_check_src(op, x, "x") || !bnb_check_src(op, w, "w")) return NULL;
    if (x->type == BNB_TYPE_I8_ROW) {
        if (!check_i8row(op, x, "x")) return NULL;
    } else if (!check_float_rows(op, x, "x")) {
        return NULL;
    }
    if (w->type == BNB_TYPE_I8_ROW) {
        if (!check_i8row(op, w, "w")) return NULL;
    } else if (!check_float_rows(op, w, "w")) {
        return NULL;
    }
    if (!check_threshold(op, threshold)) return NULL;
    if (w->ne[2] != 1 || w->ne[3] != 1)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: w is %s, must be 2-D [in, out]", op, bnb_shape_str(w, sw, sizeof sw));
    if (w->type != BNB_TYPE_I8_ROW && w->nb[1] != w->nb[0] * (size_t)w->ne[0])
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: float w must be contiguous (use bnb_cont)", op);
    if (x->ne[0] != w->ne[0])
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: x is %s, w is %s: in features (ne[0]) differ", op,
                             bnb_shape_str(x, sx, sizeof sx), bnb_shape_str(w, sw, sizeof sw));
    if (x->ne[0] == 0)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: x is %s: in features (ne[0]) must be > 0", op,
                             bnb_shape_str(x, sx, sizeof sx));
    if (bias) {
        if (!bnb_check_src(op, bias, "bias")) return NULL;
        if (!bnb_type_is_float(bias->type))
            return bnb_fail_null(BNB_ERR_TYPE, "%s: bias is %s, must be f32/f16/bf16", op, bnb_type_name(bias->type));
        if (bias->ne[0] != w->ne[1] || bnb_nelements(bias) != bias->ne[0])
            return bnb_fail_null(BNB_ERR_SHAPE, "%s: bias is %s, w is %s: bias must be [%lld]", op,
                                 bnb_shape_str(bias, sb, sizeof sb), bnb_shape_str(w, sw, sizeof sw),
                                 (long long)w->ne[1]);
    }
    int64_t ne[4] = {w->ne[1], x->ne[1], x->ne[2], x->ne[3]};
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_MATMUL_INT8, out_type, ne);
    if (!t) return NULL;
    bnb_set_op_f32(t, 0, x->type == BNB_TYPE_I8_ROW ? x->quant.threshold : threshold);
    t->src[0] = x;
    t->src[1] = w;
    t->src[2] = bias;
    return t;
}

/* ============================================================================================= host conversions */
/* Quantize rows x[rows][cols] (host f32) into I8_ROW storage laid out as l (spec section 3, see cpu/int8.c). */
static void host_quantize(const bnb_int8_layout *l, float thr, const float *x, uint8_t *storage) {
    const int64_t K = l->cols, T = l->rows;
    int8_t *q = (int8_t *)storage;
    float *rowmax = (float *)(storage + l->rowmax_offs);
    int32_t n_outl = 0;
    int32_t *idx = l->has_outliers ? (int32_t *)(storage + l->outl_idx_offs) : NULL;
    if (l->has_outliers) {
        for (int64_t k = 0; k < K; k++) {
            bool outl = false;
            for (int64_t r = 0; r < T && !outl; r++) outl = fabsf(x[r * K + k]) >= thr;
            if (outl) idx[n_outl++] = (int32_t)k;
        }
        memcpy(storage + l->outl_count_offs, &n_outl, 4);
    }
    for (int64_t r = 0; r < T; r++) {
        const float *xr = x + r * K;
        float mx = 0.f;
        for (int64_t k = 0; k < K; k++) {
            float a = fabsf(xr[k]);
            if (!(thr > 0) || a < thr) mx = a > mx ? a : mx;
        }
        rowmax[r] = mx;
        const float scale = mx > 0 ? 127.f / mx : 0.f;
        for (int64_t k = 0; k < K; k++) {
            float v = nearbyintf(xr[k] * scale);
            q[r * K + k] = (int8_t)(!(v == v) ? 0.f : v > 127.f ? 127.f : v < -127.f ? -127.f : v);
        }
        for (int32_t j = 0; j < n_outl; j++) q[r * K + idx[j]] = 0;
    }
    if (l->has_outliers) {
        uint16_t *vals = (uint16_t *)(storage + l->outl_val_offs);
        for (int32_t j = 0; j < n_outl; j++)
            for (int64_t r = 0; r < T; r++) vals[(int64_t)j * T + r] = bnb_f32_to_f16(x[r * K + idx[j]]);
    }
}

bnb_status bnb_int8_host_from_f32(const bnb_tensor *t, const float *src, void *storage) {
    if (t->type != BNB_TYPE_I8_ROW)
        return bnb_fail(BNB_ERR_TYPE, "bnb_int8_host_from_f32: tensor is %s, not i8_row", bnb_type_name(t->type));
    bnb_int8_layout l = bnb_int8_layout_of(t);
    memset(storage, 0, bnb_nbytes(t));
    host_quantize(&l, t->quant.threshold, src, storage);
    return BNB_OK;
}

bnb_status bnb_int8_host_to_f32(const bnb_tensor *t, const void *storage, float *dst) {
    if (t->type != BNB_TYPE_I8_ROW)
        return bnb_fail(BNB_ERR_TYPE, "bnb_int8_host_to_f32: tensor is %s, not i8_row", bnb_type_name(t->type));
    bnb_int8_layout l = bnb_int8_layout_of(t);
    const uint8_t *s = storage;
    const int8_t *q = (const int8_t *)s;
    const float *rowmax = (const float *)(s + l.rowmax_offs);
    for (int64_t r = 0; r < l.rows; r++)
        for (int64_t k = 0; k < l.cols; k++) dst[r * l.cols + k] = (float)q[r * l.cols + k] * (rowmax[r] / 127.f);
    if (l.has_outliers) {
        int32_t n;
        memcpy(&n, s + l.outl_count_offs, 4);
        if (n < 0 || n > l.cols) return bnb_fail(BNB_ERR_NUMERIC, "bnb_int8_host_to_f32: corrupt outlier count %d", n);
        const int32_t *idx = (const int32_t *)(s + l.outl_idx_offs);
        const uint16_t *vals = (const uint16_t *)(s + l.outl_val_offs);
        for (int32_t j = 0; j < n; j++)
            for (int64_t r = 0; r < l.rows; r++) dst[r * l.cols + idx[j]] = bnb_f16_to_f32(vals[(int64_t)j * l.rows + r]);
    }
    return BNB_OK;
}

bnb_status bnb_int8_set_from(bnb_tensor *t, bnb_type src_type, const void *src, int64_t n) {
    const char *op = "bnb_int8_set_from";
    if (!bnb_check_src(op, t, "t")) return bnb_last_status();
    if (t->type != BNB_TYPE_I8_ROW || t->view_src)
        return bnb_fail(BNB_ERR_TYPE, "%s: t is %s, must be a (non-view) i8_row tensor", op, bnb_type_name(t->type));
    if (!bnb_type_is_float(src_type))
        return bnb_fail(BNB_ERR_TYPE, "%s: source type %s, must be f32/f16/bf16", op, bnb_type_name(src_type));
    if (n != bnb_nelements(t) || (n > 0 && !src))
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: %lld source elements for a tensor of %lld", op, (long long)n,
                        (long long)bnb_nelements(t));
    if (!t->data) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor '%s' is not allocated", op, t->name);
    if (n == 0) return BNB_OK;
    size_t bytes = bnb_nbytes(t);
    float *f = NULL;
    if (src_type != BNB_TYPE_F32) {
        f = malloc((size_t)n * sizeof(float));
        if (!f) return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
        bnb_type_get_traits(src_type)->to_f32(src, f, n);
    }
    uint8_t *storage = malloc(bytes);
    if (!storage) {
        free(f);
        return bnb_fail(BNB_ERR_OOM, "%s: out of host memory (%zu bytes)", op, bytes);
    }
    bnb_status st = bnb_int8_host_from_f32(t, f ? f : (const float *)src, storage);
    if (st == BNB_OK) st = bnb_tensor_set(t, storage, 0, bytes);
    free(storage);
    free(f);
    return st;
}

bnb_status bnb_int8_set_parts(bnb_tensor *t, const int8_t *q, const float *rowmax) {
    const char *op = "bnb_int8_set_parts";
    if (!bnb_check_src(op, t, "t")) return bnb_last_status();
    if (t->type != BNB_TYPE_I8_ROW || t->view_src || t->quant.threshold > 0)
        return bnb_fail(BNB_ERR_TYPE, "%s: t must be an i8_row tensor without outliers (threshold 0)", op);
    if (!q || !rowmax) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: q or rowmax is NULL", op);
    bnb_int8_layout l = bnb_int8_layout_of(t);
    bnb_status st = bnb_tensor_set(t, q, 0, (size_t)(l.rows * l.cols));
    if (st == BNB_OK) st = bnb_tensor_set(t, rowmax, l.rowmax_offs, (size_t)l.rows * 4);
    return st;
}

bnb_status bnb_int8_get_parts(const bnb_tensor *t, int8_t *q, float *rowmax, int32_t *n_outliers,
                              int32_t *outlier_cols) {
    const char *op = "bnb_int8_get_parts";
    if (!bnb_check_src(op, t, "t")) return bnb_last_status();
    if (t->type != BNB_TYPE_I8_ROW || t->view_src)
        return bnb_fail(BNB_ERR_TYPE, "%s: t is %s, must be a (non-view) i8_row tensor", op, bnb_type_name(t->type));
    bnb_int8_layout l = bnb_int8_layout_of(t);
    bnb_status st = BNB_OK;
    if (q && l.rows * l.cols > 0) st = bnb_tensor_get(t, q, 0, (size_t)(l.rows * l.cols));
    if (st == BNB_OK && rowmax && l.rows > 0) st = bnb_tensor_get(t, rowmax, l.rowmax_offs, (size_t)l.rows * 4);
    int32_t n = 0;
    if (st == BNB_OK && l.has_outliers && l.rows * l.cols > 0) {
        st = bnb_tensor_get(t, &n, l.outl_count_offs, 4);
        if (st == BNB_OK && (n < 0 || n > l.cols))
            st = bnb_fail(BNB_ERR_NUMERIC, "%s: corrupt outlier count %d", op, n);
        if (st == BNB_OK && outlier_cols && n > 0) st = bnb_tensor_get(t, outlier_cols, l.outl_idx_offs, (size_t)n * 4);
    }
    if (n_outliers) *n_outliers = st == BNB_OK ? n : 0;
    return st;
}

bnb_tensor *bnb_int8_new_weight(bnb_context *ctx, int64_t in, int64_t out) {
    bnb_quant_params qp = {0};
    return bnb_new_tensor_quant(ctx, BNB_TYPE_I8_ROW, 2, (int64_t[]){in, out}, qp);
}

/* ============================================================================================= gradient rule */
bnb_status bnb_int8_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy) {
    bnb_context *ctx = bnb_backward_context(bc);
    bnb_tensor *x = node->src[0], *w = node->src[1], *bias = node->src[2];
    if (gy->type != BNB_TYPE_F32) gy = bnb_cast(ctx, gy, BNB_TYPE_F32); /* F16 / BF16 output */
    else if (gy->nb[0] != sizeof(float) || !bnb_is_contiguous(gy)) gy = bnb_cont(ctx, gy);
    if (!gy) return bnb_last_status();
    const int64_t K = w->ne[0], O = w->ne[1], N = bnb_nrows(gy);
    bnb_tensor *g2 = bnb_reshape_2d(ctx, gy, O, N);
    if (!g2) return bnb_last_status();
    bnb_status st = BNB_OK;
    if (bias && bnb_grad_needed(bc, bias)) { /* dbias[o] = sum over rows of gy[., o] */
        bnb_tensor *db = bnb_sum_rows(ctx, bnb_cont(ctx, bnb_transpose(ctx, g2)));
        db = db ? bnb_reshape_1d(ctx, db, O) : NULL;
        st = db ? bnb_grad_add(bc, bias, db) : bnb_last_status();
        if (st != BNB_OK) return st;
    }
    if (x->type != BNB_TYPE_I8_ROW && bnb_grad_needed(bc, x)) { /* dx = gy · dequant(W): the int8 weights used */
        bnb_tensor *wq = w->type == BNB_TYPE_I8_ROW ? w : bnb_int8_quantize_weight(ctx, w);
        bnb_tensor *wd = wq ? bnb_int8_dequantize(ctx, wq) : NULL;
        bnb_tensor *dx = wd ? bnb_mul_mat(ctx, bnb_cont(ctx, bnb_transpose(ctx, wd)), gy) : NULL;
        st = dx ? bnb_grad_add(bc, x, dx) : bnb_last_status();
        if (st != BNB_OK) return st;
    }
    if (w->type != BNB_TYPE_I8_ROW && bnb_grad_needed(bc, w)) { /* dW = gyᵀ · x, in floating point */
        if (x->type == BNB_TYPE_I8_ROW)
            return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_matmul_int8 backward: dW needs float x, x is i8_row");
        bnb_tensor *xc = bnb_is_contiguous(x) ? x : bnb_cont(ctx, x);
        bnb_tensor *x2 = xc ? bnb_reshape_2d(ctx, xc, K, N) : NULL;
        bnb_tensor *dw = x2 ? bnb_mul_mat(ctx, bnb_cont(ctx, bnb_transpose(ctx, x2)),
                                          bnb_cont(ctx, bnb_transpose(ctx, g2)))
                            : NULL;
        st = dw ? bnb_grad_add(bc, w, dw) : bnb_last_status();
    }
    return st;
}

/* ============================================================================================= linear_int8 */
bnb_status bnb_linear_int8_init(bnb_linear_int8 *l, bnb_context *ctx, int64_t in, int64_t out, bool bias,
                                float threshold, bool has_fp16_weights, bnb_type master_type) {
    const char *op = "bnb_linear_int8_init";
    if (!l || !ctx) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: l or ctx is NULL", op);
    if (in <= 0 || out <= 0) return bnb_fail(BNB_ERR_SHAPE, "%s: in %lld, out %lld must be > 0", op, (long long)in, (long long)out);
    if (!check_threshold(op, threshold)) return bnb_last_status();
    if (has_fp16_weights && !bnb_type_is_float(master_type))
        return bnb_fail(BNB_ERR_TYPE, "%s: master weight type %s, must be f16/bf16/f32", op, bnb_type_name(master_type));
    memset(l, 0, sizeof *l);
    l->threshold = threshold;
    l->has_fp16_weights = has_fp16_weights;
    l->weight = has_fp16_weights ? bnb_set_param(bnb_new_tensor_2d(ctx, master_type, in, out))
                                 : bnb_int8_new_weight(ctx, in, out);
    if (!l->weight) return bnb_last_status();
    bnb_set_name(l->weight, "linear_int8.weight");
    if (bias) {
        l->bias = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, out);
        if (!l->bias) return bnb_last_status();
        bnb_set_name(l->bias, "linear_int8.bias");
        if (has_fp16_weights) bnb_set_param(l->bias);
    }
    return BNB_OK;
}

bnb_status bnb_linear_int8_load(bnb_linear_int8 *l, bnb_type src_type, const void *w, const void *bias) {
    const char *op = "bnb_linear_int8_load";
    if (!l || !l->weight || !w) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: layer or weights missing", op);
    if (!bnb_type_is_float(src_type))
        return bnb_fail(BNB_ERR_TYPE, "%s: source type %s, must be f32/f16/bf16", op, bnb_type_name(src_type));
    const int64_t n = bnb_nelements(l->weight), out = l->weight->ne[1];
    bnb_status st;
    if (l->has_fp16_weights) {
        if (src_type == l->weight->type) {
            st = bnb_tensor_set(l->weight, w, 0, bnb_nbytes(l->weight));
        } else {
            float *f = malloc((size_t)n * sizeof(float));
            if (!f) return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
            bnb_type_get_traits(src_type)->to_f32(w, f, n);
            st = bnb_tensor_set_f32(l->weight, f, n);
            free(f);
        }
    } else {
        st = bnb_int8_set_from(l->weight, src_type, w, n);
    }
    if (st != BNB_OK || !l->bias) return st;
    if (!bias) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: the layer has a bias but none was given", op);
    float *b = malloc((size_t)out * sizeof(float));
    if (!b) return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    bnb_type_get_traits(src_type)->to_f32(bias, b, out);
    st = bnb_tensor_set_f32(l->bias, b, out);
    free(b);
    return st;
}

bnb_tensor *bnb_linear_int8_forward(bnb_context *ctx, const bnb_linear_int8 *l, bnb_tensor *x) {
    if (!l) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_linear_int8_forward: layer is NULL");
    return bnb_matmul_int8(ctx, x, l->weight, l->threshold, l->bias);
}
