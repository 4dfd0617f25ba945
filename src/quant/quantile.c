/* Quantiles of data: the exact reference (sort everything) and the fast SRAM-quantiles estimator (sort blocks of
 * 4096 values in cache with a radix sort, take each block's quantiles, average them), and the quantile code map. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define QBLOCK 4096

/* Probability of quantile j of 256. */
static double qprob(int j, double offset) { return offset + (double)j * (1.0 - 2.0 * offset) / 255.0; }

/* Quantile of sorted s[m] at p (linear interpolation between neighbours). */
static double quantile_sorted_f(const float *s, int64_t m, double p) {
    double pos = p * (double)(m - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo < 0) lo = 0;
    if (lo >= m - 1) return s[m - 1];
    double frac = pos - (double)lo;
    return (double)s[lo] + frac * ((double)s[lo + 1] - (double)s[lo]);
}

static int cmp_f32(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static bnb_status check_args(const char *fn, const float *x, int64_t n, float offset, const float *out) {
    if (!x || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL pointer", fn);
    if (n < 1) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: no values", fn);
    if (!(offset >= 0.0f && offset < 0.5f)) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: offset %g not in [0, 0.5)", fn, offset);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return bnb_fail(BNB_ERR_NUMERIC, "%s: element %lld is NaN or Inf", fn, (long long)i);
    return BNB_OK;
}

bnb_status bnb_quantiles_exact(const float *x, int64_t n, float offset, float out[256]) {
    bnb_status s = check_args("bnb_quantiles_exact", x, n, offset, out);
    if (s != BNB_OK) return s;
    float *c = malloc((size_t)n * sizeof(float));
    if (!c) return bnb_fail(BNB_ERR_OOM, "bnb_quantiles_exact: out of host memory");
    memcpy(c, x, (size_t)n * sizeof(float));
    qsort(c, (size_t)n, sizeof(float), cmp_f32);
    for (int j = 0; j < 256; j++) out[j] = (float)quantile_sorted_f(c, n, qprob(j, offset));
    free(c);
    return BNB_OK;
}

/* Order-preserving float <-> uint32 key. */
static inline uint32_t f2key(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static inline float key2f(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* LSD radix sort of m keys (3 passes of 11 bits); result in a, b is scratch. */
static void radix_sort(uint32_t *a, uint32_t *b, int m) {
    static const int shift[3] = {0, 11, 22};
    uint32_t hist[3][2048];
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < m; i++) {
        uint32_t k = a[i];
        hist[0][k & 2047]++;
        hist[1][(k >> 11) & 2047]++;
        hist[2][k >> 22]++;
    }
    for (int p = 0; p < 3; p++) {
        uint32_t sum = 0;
        for (int d = 0; d < 2048; d++) {
            uint32_t c = hist[p][d];
            hist[p][d] = sum;
            sum += c;
        }
        for (int i = 0; i < m; i++) {
            uint32_t k = a[i];
            b[hist[p][(k >> shift[p]) & 2047]++] = k;
        }
        uint32_t *t = a;
        a = b;
        b = t;
    }
    /* 3 passes: the sorted keys are in the original b; copy back */
    memcpy(b, a, (size_t)m * sizeof(uint32_t));
}

bnb_status bnb_quantiles_estimate(const float *x, int64_t n, float offset, float out[256], int n_threads) {
    bnb_status s = check_args("bnb_quantiles_estimate", x, n, offset, out);
    if (s != BNB_OK) return s;
    /* full blocks only, unless everything fits in one block (a short tail would bias the average) */
    const int64_t nblocks = n <= QBLOCK ? 1 : n / QBLOCK;
    const int m_full = n <= QBLOCK ? (int)n : QBLOCK;
    double pos[256];
    for (int j = 0; j < 256; j++) pos[j] = qprob(j, offset) * (double)(m_full - 1);
    double acc[256] = {0};
#ifdef _OPENMP
    const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    const int nt = 1;
    (void)n_threads;
#endif
    bool oom = false;
#pragma omp parallel num_threads(nt) if (nblocks > 1)
    {
        uint32_t *ka = malloc(2 * QBLOCK * sizeof(uint32_t));
        double my[256] = {0};
        if (!ka) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            if (!ka) continue;
            const float *xb = x + blk * QBLOCK;
            for (int i = 0; i < m_full; i++) ka[i] = f2key(xb[i]);
            radix_sort(ka, ka + QBLOCK, m_full);
            for (int j = 0; j < 256; j++) {
                int lo = (int)pos[j];
                double frac = pos[j] - lo;
                double v0 = key2f(ka[lo]);
                double v1 = lo + 1 < m_full ? key2f(ka[lo + 1]) : v0;
                my[j] += v0 + frac * (v1 - v0);
            }
        }
#pragma omp critical(bnb_quantile_acc)
        for (int j = 0; j < 256; j++) acc[j] += my[j];
        free(ka);
    }
    if (oom) return bnb_fail(BNB_ERR_OOM, "bnb_quantiles_estimate: out of host memory");
    for (int j = 0; j < 256; j++) out[j] = (float)(acc[j] / (double)nblocks);
    return BNB_OK;
}

static int cmp_float_asc(const void *a, const void *b) { return cmp_f32(a, b); }

bnb_status bnb_qmap_quantile(float out[256], const float *x, int64_t n, float offset) {
    if (!out || !x) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_quantile: NULL pointer");
    if (n < 256) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_quantile: %lld values, at least 256 needed", (long long)n);
    /* bitsandbytes: 255 quantiles; its default offset 1/512 then becomes 1/(2*255) */
    if (offset == 1.0f / 512.0f) offset = 1.0f / 510.0f;
    float q[256];
    bnb_status s = bnb_quantiles_estimate(x, n, offset, q, 0);
    if (s != BNB_OK) return s;
    float v[256];
    for (int k = 0; k < 255; k++) v[k] = q[(int)((double)k * 255.0 / 254.0)]; /* linspace(0, 255, 255).long() */
    v[255] = 0.0f;
    qsort(v, 256, sizeof(float), cmp_float_asc);
    float m = 0.0f;
    for (int k = 0; k < 256; k++) m = fabsf(v[k]) > m ? fabsf(v[k]) : m;
    for (int k = 0; k < 256; k++) out[k] = m > 0.0f ? v[k] / m : 0.0f;
    return BNB_OK;
}

#ifdef BNB_HAVE_CUDA
bnb_status bnb_cuda_quantiles(bnb_backend *be, const float *dev_x, int64_t n, float offset, float out[256]);
#endif

bnb_status bnb_quantiles_estimate_tensor(bnb_backend *be, const bnb_tensor *x, float offset, float out[256]) {
    const char *fn = "bnb_quantiles_estimate_tensor";
    if (!be || !x || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (x->type != BNB_TYPE_F32 || !bnb_is_contiguous(x) || !x->data)
        return bnb_fail(BNB_ERR_TYPE, "%s: x must be an allocated contiguous f32 tensor (is %s)", fn,
                        bnb_type_name(x->type));
    const int64_t n = bnb_nelements(x);
    if (n < 1) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: no values", fn);
    if (!(offset >= 0.0f && offset < 0.5f)) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: offset %g not in [0, 0.5)", fn, offset);
    if (bnb_backend_is_cpu(be)) return bnb_quantiles_estimate((const float *)x->data, n, offset, out, 0);
#ifdef BNB_HAVE_CUDA
    return bnb_cuda_quantiles(be, (const float *)x->data, n, offset, out);
#else
    return bnb_fail(BNB_ERR_UNSUPPORTED, "%s: backend %s", fn, bnb_backend_name(be));
#endif
}
