/* CPU kernels: GET_ROWS, CONCAT, SOFTMAX, RMS_NORM, LAYER_NORM, ROPE, CROSS_ENTROPY.
 *
 * All are row-wise (a row = ne[0] elements) and run OpenMP over rows. F32 unit-stride rows take plain loops;
 * other types and strides use bnb_cpu_load/bnb_cpu_store. Row statistics (sums, variances, log-sum-exp) accumulate
 * in double. Index inputs (get_rows indices, cross-entropy targets) are validated before any row is computed. */
#include "cpu-kernels.h"
#include "vec-math.h"

#include <math.h>



/* Byte address of row r (flattened over dims 1..3) of t. */
static inline char *row_at(const bnb_tensor *t, int64_t r) {
    int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return (char *)t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

/* Byte address of flat element k (in ne order) of t, for index tensors of any shape and stride. */
static inline const char *elem_at(const bnb_tensor *t, int64_t k) {
    int64_t i0 = k % t->ne[0];
    return row_at(t, k / t->ne[0]) + i0 * t->nb[0];
}

static double sum_f32(const float *restrict x, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
    double s = 0;
    for (; i < n; i++) s += (double)x[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* max of x[i] * scale; omp simd lets the reduction be reordered so it vectorises */
static float max_scaled_f32(const float *restrict x, int64_t n, float scale) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; i++) m = x[i] * scale > m ? x[i] * scale : m;
    return m;
}

/* ================================================================================================ GET_ROWS */

bnb_status bnb_cpu_get_rows(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *idx = node->src[1];
    const int64_t K = a->ne[0], R = a->ne[1], N = idx->ne[0];
    for (int64_t n = 0; n < N; n++) {
        int32_t r = *(const int32_t *)((const char *)idx->data + n * idx->nb[0]);
        if (r < 0 || r >= R)
            return bnb_fail(BNB_ERR_INVALID_ARG, "cpu get_rows: index %d at position %lld is outside [0, %lld)", r,
                            (long long)n, (long long)R);
    }
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const int32_t r = *(const int32_t *)((const char *)idx->data + n * idx->nb[0]);
        const char *s = (const char *)a->data + (size_t)r * a->nb[1];
        float *d = (float *)((char *)node->data + n * node->nb[1]);
        if (a->type == BNB_TYPE_F32 && a->nb[0] == 4) {
            memcpy(d, s, (size_t)K * 4);
        } else {
            for (int64_t k = 0; k < K; k++) d[k] = bnb_cpu_load(s + k * a->nb[0], a->type);
        }
    }
    return BNB_OK;
}

/* ================================================================================================ CONCAT */

static void copy_row(char *restrict d, const char *restrict s, size_t sstride, size_t es, int64_t n) {
    if (sstride == es) {
        memcpy(d, s, (size_t)n * es);
    } else if (es == 4) {
        for (int64_t i = 0; i < n; i++) memcpy(d + 4 * i, s + (size_t)i * sstride, 4);
    } else if (es == 2) {
        for (int64_t i = 0; i < n; i++) memcpy(d + 2 * i, s + (size_t)i * sstride, 2);
    } else {
        for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * es, s + (size_t)i * sstride, es);
    }
}

bnb_status bnb_cpu_concat(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    const int dim = node->op_params[0];
    const size_t es = bnb_type_size(node->type);
    const int64_t nrows = bnb_nrows(node);
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        int64_t i[4] = {0, r % node->ne[1], (r / node->ne[1]) % node->ne[2], r / (node->ne[1] * node->ne[2])};
        char *d = row_at(node, r);
        if (dim == 0) {
            copy_row(d, row_at(a, r), a->nb[0], es, a->ne[0]);
            copy_row(d + (size_t)a->ne[0] * es, row_at(b, r), b->nb[0], es, b->ne[0]);
            continue;
        }
        const bnb_tensor *s = a;
        if (i[dim] >= a->ne[dim]) {
            i[dim] -= a->ne[dim];
            s = b;
        }
        const char *sp = (const char *)s->data + i[1] * s->nb[1] + i[2] * s->nb[2] + i[3] * s->nb[3];
        copy_row(d, sp, s->nb[0], es, node->ne[0]);
    }
    return BNB_OK;
}

/* ================================================================================================ SOFTMAX */

bnb_status bnb_cpu_softmax(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0];
    const float scale = bnb_get_op_f32(node, 0);
    const bool causal = node->op_params[1] != 0;
    const int64_t ne0 = a->ne[0], ne1 = a->ne[1], nrows = bnb_nrows(a);
    const bool fast = a->type == BNB_TYPE_F32 && node->type == BNB_TYPE_F32 && a->nb[0] == 4 && node->nb[0] == 4;
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        /* visible columns [0, lim): the causal mask lets query i1 see keys up to i1 + (ne0 - ne1) */
        const int64_t lim = causal ? BNB_MIN(ne0, r % ne1 + (ne0 - ne1) + 1) : ne0;
        const char *xp = row_at(a, r);
        char *yp = row_at(node, r);
        if (fast) {
            const float *restrict x = (const float *)xp;
            float *restrict y = (float *)yp;
            const float m = max_scaled_f32(x, lim, scale);
            for (int64_t i = 0; i < lim; i++) y[i] = bnb_vexpf(x[i] * scale - m);
            const double sum = sum_f32(y, lim);
            const float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < lim; i++) y[i] *= inv;
            for (int64_t i = lim; i < ne0; i++) y[i] = 0.f;
        } else {
            /* no scratch: recompute exp in the last pass rather than round it through the output type */
            float m = -INFINITY;
            for (int64_t i = 0; i < lim; i++) {
                float v = bnb_cpu_load(xp + i * a->nb[0], a->type) * scale;
                m = v > m ? v : m;
            }
            double sum = 0;
            for (int64_t i = 0; i < lim; i++) sum += bnb_vexpf(bnb_cpu_load(xp + i * a->nb[0], a->type) * scale - m);
            const float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < ne0; i++) {
                float v = i < lim ? bnb_vexpf(bnb_cpu_load(xp + i * a->nb[0], a->type) * scale - m) * inv : 0.f;
                bnb_cpu_store(yp + i * node->nb[0], node->type, v);
            }
        }
    }
    return BNB_OK;
}

/* ================================================================================================ norms */

bnb_status bnb_cpu_norm(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0];
    const bool layer = node->op == BNB_OP_LAYER_NORM;
    const double eps = bnb_get_op_f32(node, 0);
    const int64_t ne0 = a->ne[0], nrows = bnb_nrows(a);
    const bool fast = a->type == BNB_TYPE_F32 && node->type == BNB_TYPE_F32 && a->nb[0] == 4 && node->nb[0] == 4;
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *xp = row_at(a, r);
        char *yp = row_at(node, r);
        if (fast) {
            const float *restrict x = (const float *)xp;
            float *restrict y = (float *)yp;
            const double mean = layer ? sum_f32(x, ne0) / (double)ne0 : 0.0;
            /* second moment about the mean (two-pass: no cancellation) in 8 double lanes */
            double acc[8] = {0}, tail = 0;
            int64_t i = 0;
            for (; i + 8 <= ne0; i += 8)
                for (int j = 0; j < 8; j++) {
                    double d = (double)x[i + j] - mean;
                    acc[j] += d * d;
                }
            for (; i < ne0; i++) tail += ((double)x[i] - mean) * ((double)x[i] - mean);
            double ss = tail + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            const double rstd = 1.0 / sqrt(ss / (double)ne0 + eps);
            if (layer) { /* x - mean in double: a float mean would cancel badly for rows with a large offset */
                for (int64_t k = 0; k < ne0; k++) y[k] = (float)(((double)x[k] - mean) * rstd);
            } else {
                const float rs = (float)rstd;
                for (int64_t k = 0; k < ne0; k++) y[k] = x[k] * rs;
            }
        } else {
            double mean = 0;
            if (layer) {
                for (int64_t i = 0; i < ne0; i++) mean += bnb_cpu_load(xp + i * a->nb[0], a->type);
                mean /= (double)ne0;
            }
            double ss = 0;
            for (int64_t i = 0; i < ne0; i++) {
                double d = (double)bnb_cpu_load(xp + i * a->nb[0], a->type) - mean;
                ss += d * d;
            }
            const double rstd = 1.0 / sqrt(ss / (double)ne0 + eps);
            for (int64_t i = 0; i < ne0; i++) {
                double v = ((double)bnb_cpu_load(xp + i * a->nb[0], a->type) - mean) * rstd;
                bnb_cpu_store(yp + i * node->nb[0], node->type, (float)v);
            }
        }
    }
    return BNB_OK;
}

/* ================================================================================================ ROPE */

#define ROPE_CHUNK 64 /* rotation pairs whose cos/sin are computed at once (stack arrays) */

/* Rotate pairs [i0, i0 + n) of one head row with the given cos/sin. */
static void rope_pairs(char *yp, const char *xp, const bnb_tensor *a, const bnb_tensor *node, bool fast, bool neox,
                       int64_t half, int64_t i0, int64_t n, const float *cs, const float *sn) {
    if (fast) {
        const float *restrict x = (const float *)xp;
        float *restrict y = (float *)yp;
        if (neox) {
            for (int64_t j = 0; j < n; j++) {
                const float x0 = x[i0 + j], x1 = x[i0 + j + half];
                y[i0 + j] = x0 * cs[j] - x1 * sn[j];
                y[i0 + j + half] = x0 * sn[j] + x1 * cs[j];
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                const float x0 = x[2 * (i0 + j)], x1 = x[2 * (i0 + j) + 1];
                y[2 * (i0 + j)] = x0 * cs[j] - x1 * sn[j];
                y[2 * (i0 + j) + 1] = x0 * sn[j] + x1 * cs[j];
            }
        }
        return;
    }
    const size_t sa = a->nb[0], sd = node->nb[0];
    for (int64_t j = 0; j < n; j++) {
        const int64_t i = i0 + j, k0 = neox ? i : 2 * i, k1 = neox ? i + half : 2 * i + 1;
        const float x0 = bnb_cpu_load(xp + k0 * sa, a->type), x1 = bnb_cpu_load(xp + k1 * sa, a->type);
        bnb_cpu_store(yp + k0 * sd, node->type, x0 * cs[j] - x1 * sn[j]);
        bnb_cpu_store(yp + k1 * sd, node->type, x0 * sn[j] + x1 * cs[j]);
    }
}

bnb_status bnb_cpu_rope(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *pos = node->src[1];
    const int n_rot = node->op_params[0];
    const bool neox = node->op_params[1] == BNB_ROPE_NEOX;
    const double base = bnb_get_op_f32(node, 2);
    const int64_t hd = a->ne[0], nh = a->ne[1], nt = a->ne[2], half = n_rot / 2;
    const bool fast = a->type == BNB_TYPE_F32 && node->type == BNB_TYPE_F32 && a->nb[0] == 4 && node->nb[0] == 4;
    const size_t sa = a->nb[0], sd = node->nb[0];
    const int nth = bnb_cpu_threads(c, bnb_nelements(node));
    /* a task is one token (its cos/sin shared by all heads), or one (token, head) when tokens are too few to
     * occupy the threads */
    const bool per_head = nt < nth;
    const int64_t ntask = per_head ? nt * nh : nt;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t it = per_head ? t / nh : t, h0 = per_head ? t % nh : 0, h1 = per_head ? h0 + 1 : nh;
        /* the angle in double: positions can be large and theta = pos * base^(-2i/n_rot) */
        const double p = (double)*(const int32_t *)((const char *)pos->data + it * pos->nb[0]);
        float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
        for (int64_t i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
            const int64_t n = BNB_MIN(ROPE_CHUNK, half - i0);
            for (int64_t j = 0; j < n; j++) {
                const double theta = p * pow(base, -2.0 * (double)(i0 + j) / (double)n_rot);
                cs[j] = (float)cos(theta);
                sn[j] = (float)sin(theta);
            }
            for (int64_t h = h0; h < h1; h++)
                rope_pairs((char *)node->data + h * node->nb[1] + it * node->nb[2],
                           (const char *)a->data + h * a->nb[1] + it * a->nb[2], a, node, fast, neox, half, i0, n, cs,
                           sn);
        }
        /* dims beyond n_rot pass through */
        for (int64_t h = h0; h < h1; h++) {
            const char *xp = (const char *)a->data + h * a->nb[1] + it * a->nb[2];
            char *yp = (char *)node->data + h * node->nb[1] + it * node->nb[2];
            if (fast) {
                memcpy(yp + (size_t)n_rot * 4, xp + (size_t)n_rot * 4, (size_t)(hd - n_rot) * 4);
            } else {
                for (int64_t k = n_rot; k < hd; k++)
                    bnb_cpu_store(yp + k * sd, node->type, bnb_cpu_load(xp + k * sa, a->type));
            }
        }
    }
    return BNB_OK;
}

/* ================================================================================================ CROSS_ENTROPY */

bnb_status bnb_cpu_cross_entropy(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *lg = node->src[0], *tg = node->src[1];
    const int64_t V = lg->ne[0], nrows = bnb_nrows(lg);
    for (int64_t r = 0; r < nrows; r++) {
        int32_t k = *(const int32_t *)elem_at(tg, r);
        if (k < 0 || k >= V)
            return bnb_fail(BNB_ERR_INVALID_ARG, "cpu cross_entropy: target %d of row %lld is outside [0, %lld)", k,
                            (long long)r, (long long)V);
    }
    const bool fast = lg->type == BNB_TYPE_F32 && lg->nb[0] == 4;
    const size_t s0 = lg->nb[0];
    double total = 0;
    const int nth = bnb_cpu_threads(c, bnb_nelements(lg));
#pragma omp parallel for num_threads(nth) schedule(static) reduction(+ : total)
    for (int64_t r = 0; r < nrows; r++) {
        const char *xp = row_at(lg, r);
        const int32_t k = *(const int32_t *)elem_at(tg, r);
        double lse;
        float xt;
        if (fast) {
            const float *x = (const float *)xp;
            const float m = max_scaled_f32(x, V, 1.f);
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < V; i++) s += (double)bnb_vexpf(x[i] - m);
            lse = (double)m + log(s);
            xt = x[k];
        } else {
            float m = -INFINITY;
            for (int64_t i = 0; i < V; i++) {
                float v = bnb_cpu_load(xp + i * s0, lg->type);
                m = v > m ? v : m;
            }
            double s = 0;
            for (int64_t i = 0; i < V; i++) s += bnb_vexpf(bnb_cpu_load(xp + i * s0, lg->type) - m);
            lse = (double)m + log(s);
            xt = bnb_cpu_load(xp + k * s0, lg->type);
        }
        total += lse - (double)xt;
    }
    *(float *)node->data = (float)(total / (double)nrows);
    return BNB_OK;
}
