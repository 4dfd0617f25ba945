/* 8-bit optimizer states on CUDA, the parts of src/cuda/optim.cu's k_upd8 that do not depend on the update: the
 * table-guided re-quantization (primitives in src/optim/optim-qf.h, host-checked by test-optim), the state maps in shared memory and their
 * set-up, and the loads / stores of a thread's 16 elements and codes. Included by optim.cu only (needs its
 * THREADS, Q_PER, finite_f, to_f / from_f, MUL). */
#ifndef BNB_CUDA_OPTIM_Q8_CUH
#define BNB_CUDA_OPTIM_Q8_CUH

/* Re-quantization: the nearest code of y = v / absmax (bnb_optim_quantize_code) from a table, not a search.
 * For a sorted finite map, the code before the sign rule is a nondecreasing step function of y: code0(y) = number of
 * thresholds T[k] < y (k = 0..254), T[k] = the largest float t in [map[k], map[k+1]] with (t - map[k]) <=
 * (map[k+1] - t), the CPU's tie rule evaluated in f32 (a monotone predicate, so T[k] is well defined and found exactly
 * by a midpoint guess checked against its neighbour, or a bisection over the float ordering). Buckets by the bits of y
 * (sign, 23 binades below 1 with 2^QF_M buckets each, one centre bucket for |y| < 2^-23 and +-0, one outer bucket each
 * side for everything else, NaN included) hold a = number of thresholds below the bucket and h = number inside; if
 * h <= 2 the code is a + (T[a] < y) + (T[a+1] < y) (one 8-byte load), else (outer buckets, crowded buckets) a
 * 8-step search over T. Maps that are not sorted and finite take bnb_optim_quantize_code itself.
 * The primitives are in src/optim/optim-qf.h, shared with test-optim's host check of the table path against
 * bnb_optim_quantize_code. */
#include "../optim/optim-qf.h"

/* A state map in shared memory: the sorted values (dequantize), the thresholds as pairs (T[a], T[a+1]) and the
 * bucket table (a | h << 8). */
struct qmap_sh {
    float map[256];
    float2 T2[256];
    int tab[QF_SEG * 256];
};
#define QG 8 /* values re-quantized together (two halves of a thread's 16) */

/* Sets up nm (1 or 2) maps (wsum: 16 ints of shared memory): all THREADS threads call it. Returns whether the maps are sorted and finite (else the
 * tables are not built and the callers use bnb_optim_quantize_code); zneg[q]: count of negative values. */
template <int nm> __device__ __forceinline__ bool qmap_setup(qmap_sh *s, const float *const *map, int *zneg, int *wsum) {
    const int k = threadIdx.x;
    bool ok = true;
    for (int q = 0; q < nm; q++) {
        float m = map[q][k];
        s[q].map[k] = m;
        ok = ok && finite_f(m);
#pragma unroll
        for (int j = 0; j < QF_SEG; j++) s[q].tab[QF_SEG * k + j] = 0;
    }
    __syncthreads();
    for (int q = 0; q < nm; q++) ok = ok && (k == 255 || s[q].map[k] <= s[q].map[k + 1]);
    const bool fast = __syncthreads_and(ok);
    for (int q = 0; q < nm; q++) zneg[q] = __syncthreads_count(s[q].map[k] < 0.f);
    if (!fast) return false;
    const float inf = __int_as_float(0x7f800000);
    for (int q = 0; q < nm; q++) {
        float T = k < 255 ? qf_threshold(s[q].map[k], s[q].map[k + 1]) : inf;
        s[q].T2[k].x = T;
        if (k > 0) s[q].T2[k - 1].y = T;
        if (k == 255) s[q].T2[255].y = inf;
        if (k < 255) atomicAdd(&s[q].tab[qf_bucket(T)], 1);
    }
    __syncthreads();
    /* exclusive scan of the counts: QF_SEG consecutive buckets per thread, then across threads */
    const int lane = k & 31, warp = k >> 5;
    int h[nm][QF_SEG], tot[nm];
    for (int q = 0; q < nm; q++) {
        tot[q] = 0;
#pragma unroll
        for (int j = 0; j < QF_SEG; j++) h[q][j] = s[q].tab[QF_SEG * k + j], tot[q] += h[q][j];
        int x = tot[q];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, x, o);
            x += lane >= o ? y : 0;
        }
        if (lane == 31) wsum[q * 8 + warp] = x;
        tot[q] = x - tot[q]; /* exclusive within the warp */
    }
    __syncthreads();
    for (int q = 0; q < nm; q++) {
        int a = tot[q];
        for (int w = 0; w < warp; w++) a += wsum[q * 8 + w];
#pragma unroll
        for (int j = 0; j < QF_SEG; j++) {
            int b = QF_SEG * k + j, hh = h[q][j] > 255 ? 255 : h[q][j];
            if (b == 0 || b >= QF_NB - 1) hh = 255; /* outer buckets: always the search */
            s[q].tab[b] = a | hh << 8;
            a += h[q][j];
        }
    }
    __syncthreads();
    return true;
}


/* Loads Q_PER values of type T at i (cnt valid) as floats; vec: one or more 16-byte loads. */
__device__ __forceinline__ void ld16(const float *x, int64_t i, int cnt, bool vec, float *o) {
    if (vec && cnt == Q_PER) {
#pragma unroll
        for (int q = 0; q < Q_PER / 4; q++) {
            float4 v = *(const float4 *)(x + i + 4 * q);
            o[4 * q] = v.x, o[4 * q + 1] = v.y, o[4 * q + 2] = v.z, o[4 * q + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < Q_PER; k++) o[k] = k < cnt ? x[i + k] : 0.f;
    }
}
template <typename T> __device__ __forceinline__ void ld16(const T *x, int64_t i, int cnt, bool vec, float *o) {
    if (vec && cnt == Q_PER) {
#pragma unroll
        for (int q = 0; q < Q_PER / 8; q++) {
            uint4 v = *(const uint4 *)(x + i + 8 * q);
            const T *e = (const T *)&v;
#pragma unroll
            for (int k = 0; k < 8; k++) o[8 * q + k] = to_f(e[k]);
        }
    } else {
#pragma unroll
        for (int k = 0; k < Q_PER; k++) o[k] = k < cnt ? to_f(x[i + k]) : 0.f;
    }
}
__device__ __forceinline__ void st16(float *x, int64_t i, int cnt, bool vec, const float *o) {
    if (vec && cnt == Q_PER) {
#pragma unroll
        for (int q = 0; q < Q_PER / 4; q++)
            *(float4 *)(x + i + 4 * q) = make_float4(o[4 * q], o[4 * q + 1], o[4 * q + 2], o[4 * q + 3]);
    } else {
#pragma unroll
        for (int k = 0; k < Q_PER; k++)
            if (k < cnt) x[i + k] = o[k];
    }
}
template <typename T> __device__ __forceinline__ void st16(T *x, int64_t i, int cnt, bool vec, const float *o) {
    if (vec && cnt == Q_PER) {
#pragma unroll
        for (int q = 0; q < Q_PER / 8; q++) {
            uint4 v;
            T *e = (T *)&v;
#pragma unroll
            for (int k = 0; k < 8; k++) e[k] = from_f<T>(o[8 * q + k]);
            *(uint4 *)(x + i + 8 * q) = v;
        }
    } else {
#pragma unroll
        for (int k = 0; k < Q_PER; k++)
            if (k < cnt) x[i + k] = from_f<T>(o[k]);
    }
}

/* 16 codes as 4 words (byte k in word k / 4, bits 8 (k % 4)); all indices compile-time, so no local memory. */
__device__ __forceinline__ uint32_t code_at(const uint4 &v, int k) {
    uint32_t w = (k >> 2) == 0 ? v.x : (k >> 2) == 1 ? v.y : (k >> 2) == 2 ? v.z : v.w;
    return (w >> (8 * (k & 3))) & 0xffu;
}
__device__ __forceinline__ uint4 ld_codes(const uint8_t *c, int64_t i, int cnt, bool vec) {
    if (vec && cnt == Q_PER) return *(const uint4 *)(c + i); /* codes 16-byte aligned (vec), i % 16 == 0 */
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < Q_PER; k++)
        if (k < cnt) w[k >> 2] |= (uint32_t)c[i + k] << (8 * (k & 3));
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* Dequantize 16 codes. */
__device__ __forceinline__ void deq16(const qmap_sh &s, uint4 cv, float am, float *o) {
#pragma unroll
    for (int k = 0; k < Q_PER; k++) o[k] = MUL(s.map[code_at(cv, k)], am);
}

/* ------------------------------------------------------------------ persistent kernel (k_upd8p) tables */
/* One 16-byte entry per bucket (src/optim/optim-qf.h: thresholds with the sign rule folded in): a value's code is
 * a + (ta < y) + (tb < y) from one LDS.128 when slow == 0. Dynamic shared memory: the entries of both maps, the sorted
 * maps (dequantize, bnb_optim_quantize_code) and the set-up's scratch (thresholds, their buckets). */
struct __align__(16) qent {
    float ta, tb;
    int a, slow;
};
#define QP_ENT_BYTES (QF_NB * 16)
#define QP_SMEM (2 * QP_ENT_BYTES + 4 * 256 * 4)
struct qp_maps {
    const qent *ent[2];
    const float *map[2];
};

/* All NT threads (NT >= 256; THREADS for k_upd8p, 512 for k_upd8b): builds the entry tables of nm maps in smem.
 * Returns whether the maps are sorted and finite (else no tables: callers take bnb_optim_quantize_code). */
template <int nm, int NT = THREADS> __device__ bool qp_setup(unsigned char *smem, const float *const *map, qp_maps &out) {
    qent *ent[2] = {(qent *)smem, (qent *)(smem + QP_ENT_BYTES)};
    float *msh[2] = {(float *)(smem + 2 * QP_ENT_BYTES), (float *)(smem + 2 * QP_ENT_BYTES) + 256};
    float *tt = msh[1] + 256;
    int *bk = (int *)(tt + 256);
    for (int q = 0; q < 2; q++) out.ent[q] = ent[q], out.map[q] = msh[q];
    const int k = threadIdx.x;
    const bool own = NT == 256 || k < 256; /* threads 0..255: one map value each */
    bool ok = true;
    for (int q = 0; q < nm; q++) {
        if (own) {
            float m = map[q][k];
            msh[q][k] = m;
            ok = ok && finite_f(m);
        }
    }
    __syncthreads();
    for (int q = 0; q < nm; q++) ok = ok && (!own || k == 255 || msh[q][k] <= msh[q][k + 1]);
    const bool fast = __syncthreads_and(ok);
    if (!fast) return false;
    const float inf = __int_as_float(0x7f800000);
    for (int q = 0; q < nm; q++) {
        const int zneg = __syncthreads_count(own && msh[q][k] < 0.f); /* also: the previous map's entries are written */
        if (own) {
            float T = k < 255 ? qf_fold(qf_threshold(msh[q][k], msh[q][k + 1]), k, zneg) : inf;
            tt[k] = T;
            bk[k] = k < 255 ? qf_bucket(T) : QF_NB;
        }
        __syncthreads();
        for (int b = k; b < QF_NB; b += NT) {
            const int a = qf_count_below(bk, b), h = qf_count_below(bk, b + 1) - a;
            qent e;
            e.ta = tt[a]; /* a <= 255, tt[255] = inf */
            e.tb = a < 255 ? tt[a + 1] : inf;
            e.a = a;
            e.slow = qf_entry_slow(b, h);
            ent[q][b] = e;
        }
    }
    __syncthreads();
    return true;
}

/* Codes of 8 values v (two words, code k in byte k % 4 of word k / 4) with the block's absmax am and r = RN(1 / am):
 * the entry-table path when rq, else (or when an entry is slow) bnb_optim_quantize_code with y = v / am. */
__device__ __forceinline__ uint2 req_group8(const qent *ent, const float *msh, bool rq, float am, float r,
                                            const float *v) {
    uint32_t lo = 0, hi = 0;
    int slow = rq ? 0 : 1;
    if (rq) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float q = __fmul_rn(v[k], r), y = __fmaf_rn(__fmaf_rn(-am, q, v[k]), r, q);
            const qent e = ent[qf_bucket(y)];
            const uint32_t c = (uint32_t)(e.a + (e.ta < y ? 1 : 0) + (e.tb < y ? 1 : 0));
            slow |= e.slow;
            if (k < 4) lo |= c << (8 * k);
            else hi |= c << (8 * (k - 4));
        }
    }
    if (slow) {
        lo = hi = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float y = am > 0.f ? v[k] / am : 0.f;
            const uint32_t c = (uint32_t)bnb_optim_quantize_code(msh, y, v[k]);
            if (k < 4) lo |= c << (8 * k);
            else hi |= c << (8 * (k - 4));
        }
    }
    return make_uint2(lo, hi);
}

/* New absmax of the 256-block (16 lanes; all 32 lanes call it) and the 16 codes of a thread's values. Fast path
 * (tables built, absmax in [2^-66, 2^90]): y by the reciprocal and one residual step (correctly rounded for |v| >=
 * 2^-90, host-checked; a value below that has |y| < 2^-23 and lands in the slow centre bucket), one entry load, two
 * compares; a group of QG values with any slow entry is redone by bnb_optim_quantize_code with y = v / absmax. */
__device__ __forceinline__ uint4 req16p(const qent *ent, const float *msh, bool fast, const float *vals, float &amo) {
    float am = 0.f;
#pragma unroll
    for (int k = 0; k < Q_PER; k++) am = fmaxf(am, fabsf(vals[k])); /* padding lanes hold 0 */
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
    amo = am;
    const bool rq = fast && am >= 0x1p-66f && am <= 0x1p90f;
    const float r = __frcp_rn(rq ? am : 1.f);
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll 1
    for (int half = 0; half < 2; half++) {
        float v[QG];
#pragma unroll
        for (int k = 0; k < QG; k++) v[k] = half ? vals[QG + k] : vals[k];
        const uint2 c = req_group8(ent, msh, rq, am, r, v);
        if (half) w[2] = c.x, w[3] = c.y;
        else w[0] = c.x, w[1] = c.y;
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

#endif
