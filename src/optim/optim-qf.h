/* The table-guided re-quantization of 8-bit optimizer states (see src/cuda/optim-q8.cuh for the scheme): float keys,
 * the exact tie thresholds T[k] between map values, the buckets by float bits, the search over T and the sign rule
 * of bnb_optim_quantize_code for a sorted map. Shared by the CUDA kernel (host + device) and the C tests, which
 * check the table path against bnb_optim_quantize_code; so plain f32 subtractions only (no products to contract). */
#ifndef BNB_OPTIM_QF_H
#define BNB_OPTIM_QF_H

#include <stdint.h>

#ifdef __CUDACC__
#define QF_HD __host__ __device__ __forceinline__
#else
#define QF_HD static inline
#endif

#define QF_M 6                           /* mantissa bits per bucket */
#define QF_E 23                          /* binades below 1 with their own buckets */
#define QF_KMAX ((QF_E << QF_M) + 1)     /* magnitude key of 1.0 */
#define QF_C (QF_KMAX + 1)               /* index of the centre bucket */
#define QF_NB (2 * QF_C + 1)             /* bucket count; 0 and QF_NB - 1 are the outer buckets */
#define QF_K 2                           /* thresholds a bucket may hold for the table path */
#define QF_SEG ((QF_NB + 255) / 256)     /* buckets per thread in the table build */

QF_HD uint32_t qf_f2u(float x) {
    union { float f; uint32_t u; } c;
    c.f = x;
    return c.u;
}
QF_HD float qf_u2f(uint32_t u) {
    union { float f; uint32_t u; } c;
    c.u = u;
    return c.f;
}
/* Order-preserving key of a float (-0 just below +0). */
QF_HD uint32_t qf_key(float x) {
    uint32_t u = qf_f2u(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
QF_HD float qf_unkey(uint32_t k) { return qf_u2f((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }
QF_HD int qf_pred(float t, float lo, float hi) { return (t - lo) <= (hi - t); }

/* Largest float t in [lo, hi] with qf_pred (lo <= hi, both finite: qf_pred(lo) holds). */
QF_HD float qf_threshold(float lo, float hi) {
    if (qf_pred(hi, lo, hi)) return hi;
    float t = (float)(((double)lo + (double)hi) * 0.5);
    if (!(t >= lo && t <= hi)) t = lo;
    for (int s = 0; s < 6; s++) {
        if (!qf_pred(t, lo, hi)) {
            t = qf_unkey(qf_key(t) - 1u);
            continue;
        }
        float u = qf_unkey(qf_key(t) + 1u);
        if (!qf_pred(u, lo, hi)) return t;
        t = u;
    }
    uint32_t a = qf_key(lo), b = qf_key(hi); /* pred at a, not at b */
    while (b - a > 1u) {
        uint32_t m = a + (b - a) / 2u;
        if (qf_pred(qf_unkey(m), lo, hi)) a = m;
        else b = m;
    }
    return qf_unkey(a);
}

/* Bucket of y: nondecreasing in y's value (+-0 and |y| < 2^-24 share the centre one). */
QF_HD int qf_bucket(float y) {
    uint32_t u = qf_f2u(y);
    int k = (int)((u & 0x7fffffffu) >> (23 - QF_M)) - ((127 - QF_E) << QF_M) + 1;
    k = k < 0 ? 0 : (k > QF_KMAX + 1 ? QF_KMAX + 1 : k);
    return (u >> 31) ? QF_C - k : QF_C + k;
}

/* Number of T[0..254] < y (T sorted; the whole code0 for any y, NaN included: 0). */
QF_HD int qf_search(const float *T, int stride, float y) {
    int i = 0;
    for (int step = 128; step > 0; step >>= 1) i += T[stride * (i + step - 1)] < y ? step : 0;
    return i;
}

/* The sign rule of bnb_optim_quantize_code for a sorted map with zneg negative values. */
QF_HD int qf_sign_rule(int c, float value, int zneg) {
    int c0 = c;
    c -= (value < 0.0f && c == zneg && zneg > 0) ? 1 : 0;
    c += (value > 0.0f && c0 < zneg && c < 255) ? 1 : 0;
    return c;
}

/* Entry tables of the persistent kernel k_upd8p (src/cuda/optim.cu): one 16-byte entry per bucket, {T'[a], T'[a+1],
 * a, slow}, so a value costs one shared load. T' = T with the sign rule folded in: for a sorted map with 0 < zneg <
 * 256 negative values, T'[zneg - 1] = -0.0f. Then for y != 0 and a value of y's sign, code = #{k : T'[k] < y} equals
 * qf_sign_rule(#{T[k] < y}) (y < 0: the rule caps the count at zneg - 1, which is what dropping T[zneg - 1] below
 * every negative y does; y > 0: the rule lifts zneg - 1 to zneg, which is what T' = -0 < y counts). T' stays sorted
 * (T[zneg - 2] <= map[zneg - 1] < 0 <= map[zneg] <= T[zneg]) and the buckets stay nondecreasing. slow: the bucket
 * holds more than QF_K thresholds, or it is the centre bucket (|y| < 2^-23, +-0: there the value's sign and y's may
 * differ, or the value is 0) or an outer one (|y| > ~1, inf, NaN); the kernel then takes bnb_optim_quantize_code. */
QF_HD float qf_fold(float T, int k, int zneg) { return (zneg > 0 && zneg < 256 && k == zneg - 1) ? -0.0f : T; }
/* Number of bk[0..254] < b (bk nondecreasing). */
QF_HD int qf_count_below(const int *bk, int b) {
    int i = 0;
    for (int step = 128; step > 0; step >>= 1) i += bk[i + step - 1] < b ? step : 0;
    return i;
}
QF_HD int qf_entry_slow(int b, int h) { return h > QF_K || b == 0 || b == QF_C || b >= QF_NB - 1; }

#endif
