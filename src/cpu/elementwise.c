/* CPU kernels: CONT (strided copy / type conversion), binary ops with broadcasting, unary maps.
 *
 * Work is split into tasks of (row, block of EW_BLOCK elements along ne[0]) so that both many short rows and one
 * huge row spread over the threads. Fully contiguous operands of the same shape are first flattened to one row so
 * that the inner loops are long and unit-stride. F32 unit-stride rows take plain loops the compiler vectorises;
 * everything else goes through bnb_cpu_load/bnb_cpu_store. Outputs never alias inputs (the graph allocator places a
 * node before freeing its sources), hence `restrict`. */
#include "cpu-kernels.h"
#include "vec-math.h"

#include <math.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#define EW_BLOCK 8192    /* elements of one row per task */

/* Iteration geometry of one operand: data, dims and byte strides (possibly flattened). */
typedef struct {
    char *data;
    int64_t ne[4];
    size_t nb[4];
    bnb_type type;
} ew_view;

static ew_view ew_make(const bnb_tensor *t, bool flatten) {
    ew_view v = {(char *)t->data, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, {t->nb[0], t->nb[1], t->nb[2], t->nb[3]},
                 t->type};
    if (flatten) {
        int64_t n = bnb_nelements(t);
        size_t es = bnb_type_size(t->type);
        v.ne[0] = n;
        v.ne[1] = v.ne[2] = v.ne[3] = 1;
        v.nb[0] = es;
        v.nb[1] = v.nb[2] = v.nb[3] = es * (size_t)n;
    }
    return v;
}

/* Address of row (i1, i2, i3) of v; dims of size 1 broadcast. */
static inline char *ew_row(const ew_view *v, int64_t i1, int64_t i2, int64_t i3) {
    return v->data + (v->ne[1] == 1 ? 0 : i1) * v->nb[1] + (v->ne[2] == 1 ? 0 : i2) * v->nb[2] +
           (v->ne[3] == 1 ? 0 : i3) * v->nb[3];
}


/* Decode task -> row indices and element range [*i0, *i1) within the row. */
static inline void ew_task(const ew_view *d, int64_t nblk, int64_t task, int64_t idx[3], int64_t *e0, int64_t *e1) {
    int64_t r = task / nblk, b = task % nblk;
    idx[0] = r % d->ne[1];
    idx[1] = (r / d->ne[1]) % d->ne[2];
    idx[2] = r / (d->ne[1] * d->ne[2]);
    *e0 = b * EW_BLOCK;
    *e1 = BNB_MIN(d->ne[0], *e0 + EW_BLOCK);
}

/* ================================================================================================ CONT */

/* Copy n elements of size es with source stride sstride (bytes) to a contiguous destination, bit-exact. */
static void copy_elems(char *restrict d, const char *restrict s, size_t sstride, size_t es, int64_t n) {
    if (sstride == es) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1:
        for (int64_t i = 0; i < n; i++) d[i] = s[(size_t)i * sstride];
        break;
    case 2:
        for (int64_t i = 0; i < n; i++) memcpy(d + 2 * i, s + (size_t)i * sstride, 2);
        break;
    case 4:
        for (int64_t i = 0; i < n; i++) memcpy(d + 4 * i, s + (size_t)i * sstride, 4);
        break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * es, s + (size_t)i * sstride, es);
    }
}

/* bf16 <-> f32 inline (same rounding as bnb_f32_to_bf16: nearest-even, NaN kept quiet) so the loops vectorise. */
static inline uint16_t f32_to_bf16_inl(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
static inline float bf16_to_f32_inl(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Unit-stride conversions between F32 and F16/BF16; false when (dt, st) is not one of those pairs. */
static bool convert_unit(char *restrict d, bnb_type dt, const char *restrict s, bnb_type st, int64_t n) {
    int64_t i = 0;
    if (dt == BNB_TYPE_F32 && st == BNB_TYPE_F16) {
#ifdef __F16C__
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps((float *)d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)s + i))));
#endif
        for (; i < n; i++) ((float *)d)[i] = bnb_f16_to_f32(((const uint16_t *)s)[i]);
    } else if (dt == BNB_TYPE_F16 && st == BNB_TYPE_F32) {
#ifdef __F16C__
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)((uint16_t *)d + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps((const float *)s + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < n; i++) ((uint16_t *)d)[i] = bnb_f32_to_f16(((const float *)s)[i]);
    } else if (dt == BNB_TYPE_F32 && st == BNB_TYPE_BF16) {
        for (; i < n; i++) ((float *)d)[i] = bf16_to_f32_inl(((const uint16_t *)s)[i]);
    } else if (dt == BNB_TYPE_BF16 && st == BNB_TYPE_F32) {
        for (; i < n; i++) ((uint16_t *)d)[i] = f32_to_bf16_inl(((const float *)s)[i]);
    } else {
        return false;
    }
    return true;
}

/* Convert n elements (source stride sstride bytes) to a contiguous destination of another plain type. */
static void convert_elems(char *restrict d, bnb_type dt, const char *restrict s, bnb_type st, size_t sstride,
                          int64_t n) {
    if (sstride == bnb_type_size(st) && convert_unit(d, dt, s, st, n)) return;
    if (dt == BNB_TYPE_F32 && st == BNB_TYPE_F16) {
        for (int64_t i = 0; i < n; i++) ((float *)d)[i] = bnb_f16_to_f32(*(const uint16_t *)(s + (size_t)i * sstride));
    } else if (dt == BNB_TYPE_F32 && st == BNB_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) ((float *)d)[i] = bnb_bf16_to_f32(*(const uint16_t *)(s + (size_t)i * sstride));
    } else if (st == BNB_TYPE_F32 && dt == BNB_TYPE_F16) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)d)[i] = bnb_f32_to_f16(*(const float *)(s + (size_t)i * sstride));
    } else if (st == BNB_TYPE_F32 && dt == BNB_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)d)[i] = bnb_f32_to_bf16(*(const float *)(s + (size_t)i * sstride));
    } else {
        size_t des = bnb_type_size(dt);
        for (int64_t i = 0; i < n; i++) bnb_cpu_store(d + (size_t)i * des, dt, bnb_cpu_load(s + (size_t)i * sstride, st));
    }
}

bnb_status bnb_cpu_cont(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    if (!bnb_type_is_plain(src->type) || !bnb_type_is_plain(node->type))
        return bnb_fail(BNB_ERR_TYPE, "cpu cont: %s -> %s is not a plain-type copy", bnb_type_name(src->type),
                        bnb_type_name(node->type));
    const bool flat = bnb_is_contiguous(src) && bnb_is_contiguous(node);
    const ew_view s = ew_make(src, flat), d = ew_make(node, flat);
    const bool same = src->type == node->type;
    const size_t des = bnb_type_size(node->type);
    if (s.nb[0] != bnb_type_size(src->type) && d.ne[1] > 1) {
        /* strided source rows (e.g. a transpose): copy 32x32 tiles so each source cache line is used 32 times */
        enum { TILE = 32 };
        const int64_t nrb = (d.ne[1] + TILE - 1) / TILE, ntile = nrb * d.ne[2] * d.ne[3];
        const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int64_t t = 0; t < ntile; t++) {
            const int64_t r0 = (t % nrb) * TILE, r1 = BNB_MIN(d.ne[1], r0 + TILE);
            const int64_t i2 = (t / nrb) % d.ne[2], i3 = t / (nrb * d.ne[2]);
            for (int64_t e0 = 0; e0 < d.ne[0]; e0 += TILE) {
                const int64_t n = BNB_MIN(TILE, d.ne[0] - e0);
                for (int64_t i1 = r0; i1 < r1; i1++) {
                    const char *sp = ew_row(&s, i1, i2, i3) + (size_t)e0 * s.nb[0];
                    char *dp = ew_row(&d, i1, i2, i3) + (size_t)e0 * des;
                    if (same) copy_elems(dp, sp, s.nb[0], des, n);
                    else convert_elems(dp, node->type, sp, src->type, s.nb[0], n);
                }
            }
        }
        return BNB_OK;
    }
    const int64_t nblk = (d.ne[0] + EW_BLOCK - 1) / EW_BLOCK;
    const int64_t ntask = nblk * d.ne[1] * d.ne[2] * d.ne[3];
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        int64_t idx[3], e0, e1;
        ew_task(&d, nblk, t, idx, &e0, &e1);
        const char *sp = ew_row(&s, idx[0], idx[1], idx[2]) + (size_t)e0 * s.nb[0];
        char *dp = ew_row(&d, idx[0], idx[1], idx[2]) + (size_t)e0 * des;
        if (same) copy_elems(dp, sp, s.nb[0], des, e1 - e0);
        else convert_elems(dp, node->type, sp, src->type, s.nb[0], e1 - e0);
    }
    return BNB_OK;
}

/* ================================================================================================ binary */

static inline float bin_apply(bnb_op op, float x, float y) {
    switch (op) {
    case BNB_OP_ADD: return x + y;
    case BNB_OP_SUB: return x - y;
    case BNB_OP_MUL: return x * y;
    default: return x / y;
    }
}

/* F32 unit-stride row; b_scalar: b is one value broadcast along the row. */
static void bin_row_f32(bnb_op op, float *restrict y, const float *restrict a, const float *restrict b, int64_t n,
                        bool b_scalar) {
    if (b_scalar) {
        const float v = b[0];
        switch (op) {
        case BNB_OP_ADD: for (int64_t i = 0; i < n; i++) y[i] = a[i] + v; break;
        case BNB_OP_SUB: for (int64_t i = 0; i < n; i++) y[i] = a[i] - v; break;
        case BNB_OP_MUL: for (int64_t i = 0; i < n; i++) y[i] = a[i] * v; break;
        default: for (int64_t i = 0; i < n; i++) y[i] = a[i] / v; break;
        }
        return;
    }
    switch (op) {
    case BNB_OP_ADD: for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i]; break;
    case BNB_OP_SUB: for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i]; break;
    case BNB_OP_MUL: for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i]; break;
    default: for (int64_t i = 0; i < n; i++) y[i] = a[i] / b[i]; break;
    }
}

bnb_status bnb_cpu_binary(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *ta = node->src[0], *tb = node->src[1];
    const bnb_op op = node->op;
    if (!bnb_type_is_float(ta->type) || !bnb_type_is_float(tb->type) || !bnb_type_is_float(node->type))
        return bnb_fail(BNB_ERR_TYPE, "cpu %s: a is %s, b is %s: need float types", bnb_op_name(op),
                        bnb_type_name(ta->type), bnb_type_name(tb->type));
    const bool flat = bnb_same_shape(ta, tb) && bnb_is_contiguous(ta) && bnb_is_contiguous(tb) &&
                      bnb_is_contiguous(node);
    const ew_view a = ew_make(ta, flat), b = ew_make(tb, flat), d = ew_make(node, flat);
    const bool b_scalar = b.ne[0] == 1;
    const bool fast = a.type == BNB_TYPE_F32 && b.type == BNB_TYPE_F32 && d.type == BNB_TYPE_F32 &&
                      a.nb[0] == 4 && d.nb[0] == 4 && (b_scalar || b.nb[0] == 4);
    const size_t bstride = b_scalar ? 0 : b.nb[0];
    const int64_t nblk = (d.ne[0] + EW_BLOCK - 1) / EW_BLOCK;
    const int64_t ntask = nblk * d.ne[1] * d.ne[2] * d.ne[3];
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        int64_t idx[3], e0, e1;
        ew_task(&d, nblk, t, idx, &e0, &e1);
        const char *ap = ew_row(&a, idx[0], idx[1], idx[2]) + (size_t)e0 * a.nb[0];
        const char *bp = ew_row(&b, idx[0], idx[1], idx[2]) + (size_t)e0 * bstride;
        char *dp = ew_row(&d, idx[0], idx[1], idx[2]) + (size_t)e0 * d.nb[0];
        const int64_t n = e1 - e0;
        if (fast) {
            bin_row_f32(op, (float *)dp, (const float *)ap, (const float *)bp, n, b_scalar);
        } else {
            for (int64_t i = 0; i < n; i++) {
                float x = bnb_cpu_load(ap + (size_t)i * a.nb[0], a.type);
                float y = bnb_cpu_load(bp + (size_t)i * bstride, b.type);
                bnb_cpu_store(dp + (size_t)i * d.nb[0], d.type, bin_apply(op, x, y));
            }
        }
    }
    return BNB_OK;
}

/* ================================================================================================ unary */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
/* GELU (tanh form) via 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): one exp instead of tanh, same function. */
static inline float gelu_f(float x) { return x / (1.f + bnb_vexpf(-2.f * GELU_K * (x + 0.044715f * x * x * x))); }

static inline float un_apply(bnb_op op, float s, float x) {
    switch (op) {
    case BNB_OP_SCALE: return x * s;
    case BNB_OP_NEG: return -x;
    case BNB_OP_ABS: return fabsf(x);
    case BNB_OP_SQR: return x * x;
    case BNB_OP_SQRT: return sqrtf(x);
    case BNB_OP_EXP: return bnb_vexpf(x);
    case BNB_OP_LOG: return logf(x);
    case BNB_OP_RELU: return x > 0.f ? x : 0.f;
    case BNB_OP_GELU: return gelu_f(x);
    case BNB_OP_SILU: return x / (1.f + bnb_vexpf(-x));
    case BNB_OP_TANH: return tanhf(x);
    default: return x;
    }
}

/* F32 unit-stride row: one loop per op so each one vectorises (all but log/tanh, which call libm). */
static void un_row_f32(bnb_op op, float s, float *restrict y, const float *restrict x, int64_t n) {
    switch (op) {
    case BNB_OP_SCALE: for (int64_t i = 0; i < n; i++) y[i] = x[i] * s; break;
    case BNB_OP_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case BNB_OP_ABS: for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    case BNB_OP_SQR: for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case BNB_OP_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case BNB_OP_RELU: for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f; break;
    case BNB_OP_EXP: for (int64_t i = 0; i < n; i++) y[i] = bnb_vexpf(x[i]); break;
    case BNB_OP_LOG: for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case BNB_OP_TANH: for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
    case BNB_OP_SILU: for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.f + bnb_vexpf(-x[i])); break;
    case BNB_OP_GELU: for (int64_t i = 0; i < n; i++) y[i] = gelu_f(x[i]); break;
    default: for (int64_t i = 0; i < n; i++) y[i] = x[i]; break;
    }
}

bnb_status bnb_cpu_unary(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    const bnb_op op = node->op;
    if (!bnb_type_is_float(src->type) || !bnb_type_is_float(node->type))
        return bnb_fail(BNB_ERR_TYPE, "cpu %s: a is %s: need a float type", bnb_op_name(op), bnb_type_name(src->type));
    const float s = op == BNB_OP_SCALE ? bnb_get_op_f32(node, 0) : 0.f;
    const bool flat = bnb_is_contiguous(src) && bnb_is_contiguous(node);
    const ew_view a = ew_make(src, flat), d = ew_make(node, flat);
    const bool fast = a.type == BNB_TYPE_F32 && d.type == BNB_TYPE_F32 && a.nb[0] == 4 && d.nb[0] == 4;
    const int64_t nblk = (d.ne[0] + EW_BLOCK - 1) / EW_BLOCK;
    const int64_t ntask = nblk * d.ne[1] * d.ne[2] * d.ne[3];
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        int64_t idx[3], e0, e1;
        ew_task(&d, nblk, t, idx, &e0, &e1);
        const char *ap = ew_row(&a, idx[0], idx[1], idx[2]) + (size_t)e0 * a.nb[0];
        char *dp = ew_row(&d, idx[0], idx[1], idx[2]) + (size_t)e0 * d.nb[0];
        const int64_t n = e1 - e0;
        if (fast) {
            un_row_f32(op, s, (float *)dp, (const float *)ap, n);
        } else {
            for (int64_t i = 0; i < n; i++)
                bnb_cpu_store(dp + (size_t)i * d.nb[0], d.type, un_apply(op, s, bnb_cpu_load(ap + (size_t)i * a.nb[0], a.type)));
        }
    }
    return BNB_OK;
}
