/* CPU kernels: SUM (all elements), SUM_ROWS, MEAN, MAX_ROWS, ARGMAX (over ne[0]).
 *
 * Sums accumulate in double (8 independent lanes on the F32 unit-stride path, which the compiler vectorises), so
 * large sums keep float accuracy. MAX_ROWS propagates NaN; ARGMAX returns the first index of the maximum, a NaN
 * counting as the maximum (first NaN wins). */
#include "cpu-kernels.h"

#include <math.h>

#define RED_BLOCK 16384  /* elements of one row per task (SUM) */


/* Sum of n contiguous floats in double with 8 lanes. */
static double sum_f32(const float *restrict x, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j];
    double s = 0;
    for (; i < n; i++) s += (double)x[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Sum of n elements at p (stride bytes) of type t. */
static double sum_any(const char *p, size_t stride, bnb_type t, int64_t n) {
    if (t == BNB_TYPE_F32 && stride == 4) return sum_f32((const float *)p, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)bnb_cpu_load(p + (size_t)i * stride, t);
    return s;
}

static inline const char *row_ptr(const bnb_tensor *a, int64_t r) {
    int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
    return (const char *)a->data + i1 * a->nb[1] + i2 * a->nb[2] + i3 * a->nb[3];
}

/* Max and first index of the max over n elements; NaN counts as the maximum. */
static float max_any(const char *p, size_t stride, bnb_type t, int64_t n, int64_t *arg) {
    if (t == BNB_TYPE_F32 && stride == 4) {
        const float *x = (const float *)p;
        /* omp simd lets the max reduction be reordered (vmaxps); NaN is tracked on the side */
        float m = x[0];
        int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
        for (int64_t i = 0; i < n; i++) {
            m = x[i] > m ? x[i] : m;
            nan |= x[i] != x[i];
        }
        if (nan) m = NAN;
        if (arg) {
            int64_t k = 0;
            if (nan) {
                while (x[k] == x[k]) k++;
            } else {
                while (x[k] != m) k++;
            }
            *arg = k;
        }
        return m;
    }
    float m = bnb_cpu_load(p, t);
    int64_t k = 0;
    if (m == m) {
        for (int64_t i = 1; i < n; i++) {
            float v = bnb_cpu_load(p + (size_t)i * stride, t);
            if (v != v) {
                m = v;
                k = i;
                break;
            }
            if (v > m) {
                m = v;
                k = i;
            }
        }
    }
    if (arg) *arg = k;
    return m;
}

bnb_status bnb_cpu_reduce(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0];
    const bnb_op op = node->op;
    if (!bnb_type_is_float(a->type))
        return bnb_fail(BNB_ERR_TYPE, "cpu %s: a is %s: need a float type", bnb_op_name(op), bnb_type_name(a->type));
    const int64_t ne0 = a->ne[0], nrows = bnb_nrows(a);
    const size_t s0 = a->nb[0];

    if (op == BNB_OP_SUM) {
        /* tasks of (row, block) so that one long row still spreads over the threads */
        const bool flat = bnb_is_contiguous(a);
        const int64_t len = flat ? bnb_nelements(a) : ne0, nr = flat ? 1 : nrows;
        const size_t stride = flat ? bnb_type_size(a->type) : s0;
        const int64_t nblk = (len + RED_BLOCK - 1) / RED_BLOCK, ntask = nblk * nr;
        const int nth = bnb_cpu_threads(c, bnb_nelements(a));
        double total = 0;
#pragma omp parallel for num_threads(nth) schedule(static) reduction(+ : total)
        for (int64_t t = 0; t < ntask; t++) {
            const int64_t r = t / nblk, e0 = (t % nblk) * RED_BLOCK, e1 = BNB_MIN(len, e0 + RED_BLOCK);
            const char *p = (flat ? (const char *)a->data : row_ptr(a, r)) + (size_t)e0 * stride;
            total += sum_any(p, stride, a->type, e1 - e0);
        }
        *(float *)node->data = (float)total;
        return BNB_OK;
    }

    /* per-row reductions; node is [1, ne1, ne2, ne3] */
    const int nth = bnb_cpu_threads(c, bnb_nelements(a));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *p = row_ptr(a, r);
        char *out = (char *)row_ptr(node, r);
        switch (op) {
        case BNB_OP_SUM_ROWS: *(float *)out = (float)sum_any(p, s0, a->type, ne0); break;
        case BNB_OP_MEAN: *(float *)out = (float)(sum_any(p, s0, a->type, ne0) / (double)ne0); break;
        case BNB_OP_MAX_ROWS: *(float *)out = max_any(p, s0, a->type, ne0, NULL); break;
        case BNB_OP_ARGMAX: {
            int64_t k = 0;
            max_any(p, s0, a->type, ne0, &k);
            *(int32_t *)out = (int32_t)k;
            break;
        }
        default: break;
        }
    }
    return BNB_OK;
}
