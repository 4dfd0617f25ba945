/* CPU kernels of LLM.int8 (spec section 3): vector-wise quantization with outlier columns, int8 x int8 -> int32
 * GEMM/GEMV with a fused dequantization epilogue (row and column scales, bias, outlier columns in float), and the
 * dequantization of I8_ROW tensors.
 *
 * GEMM layout: both operands are row-major along K (x rows of K int8, weight rows of K int8), so every output is a
 * dot product. A micro-tile computes 4 x-rows x 4 weight-rows with 16 vector accumulators and one horizontal sum
 * each at the end. Integer dot products by ISA (chosen at run time, env BNB_INT8_ISA=vnni|avx2|scalar overrides):
 *  - AVX-512 VNNI: vpdpbusd multiplies UNSIGNED bytes by SIGNED bytes. x is made unsigned by flipping its sign bit
 *    (x ^ 0x80 = x + 128 as u8), so acc = sum (x + 128) w = x·w + 128 sum(w); the weight row sums sum(w) are
 *    computed once per block of weight rows and subtracted. int32 wrap-around cancels, so the result is exact
 *    whenever the true x·w fits int32.
 *  - AVX2: vpmaddubsw (u8 x s8 -> saturating i16 pairs) with the sign trick: |x| times w carrying x's sign; with
 *    |x|, |w| <= 127 a pair sums to at most 32258 and never saturates.
 *  - scalar fallback.
 * Threads (OpenMP) take blocks of weight rows (output columns); inside a block all x tiles run against the block's
 * weights, which stay in L2. */
#include "cpu-kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TGT_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TGT_AVX2 __attribute__((target("avx2")))
#define INT8_MR 4   /* x rows per micro-tile */
#define INT8_NR 4   /* weight rows per micro-tile (the tiles' 4-way horizontal sums assume 4) */
#define INT8_OB 64  /* weight rows per thread block (at most) */

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_VNNI = 2 };

static int int8_isa(void) {
    const char *e = getenv("BNB_INT8_ISA");
    int best = ISA_SCALAR;
    if (__builtin_cpu_supports("avx2")) best = ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
        best = ISA_VNNI;
    if (e && !strcmp(e, "scalar")) return ISA_SCALAR;
    if (e && !strcmp(e, "avx2") && best >= ISA_AVX2) return ISA_AVX2;
    return best;
}

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ================================================================================== quantization of rows */
/* q = round-half-even(v * 127 / rowmax), saturated (|v| <= rowmax, so only rounding noise is clipped); NaN -> 0. */
static inline int8_t quant1(float v, float scale) {
    float r = nearbyintf(v * scale);
    if (!(r == r)) return 0;
    return (int8_t)(r > 127.f ? 127.f : r < -127.f ? -127.f : r);
}

/* Row r of a float tensor as an f32 pointer (converted into buf unless it is F32). */
static const float *load_row_f32(const bnb_tensor *x, int64_t r, float *buf) {
    int64_t i1 = r % x->ne[1], i2 = (r / x->ne[1]) % x->ne[2], i3 = r / (x->ne[1] * x->ne[2]);
    const char *p = (const char *)x->data + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3];
    if (x->type == BNB_TYPE_F32) return (const float *)p;
    bnb_type_get_traits(x->type)->to_f32(p, buf, x->ne[0]);
    return buf;
}

typedef struct {
    int8_t *q;        /* [rows x cols] */
    float *rowmax;    /* [rows] */
    int32_t *idx;     /* outlier columns (ascending), room for cols */
    int32_t n_outl;
} quant_out;

/* Vector-wise quantization of x (float, rows contiguous) with outlier columns at thr (> 0) or none (thr 0).
 * Scratch: flags (n_threads * cols bytes) when thr > 0, rowbuf (n_threads * cols floats). */
static void quant_rows(const bnb_cpu_ctx *c, const bnb_tensor *x, float thr, quant_out *o, uint8_t *flags,
                       float *rowbuf) {
    const int64_t K = x->ne[0], T = bnb_nrows(x);
    const int nth = bnb_cpu_threads(c, K * T);
    o->n_outl = 0;
    if (thr > 0) {
#pragma omp parallel num_threads(nth)
        {
            int tid = thread_id();
            uint8_t *fl = flags + (size_t)tid * K;
            float *buf = rowbuf + (size_t)tid * K;
            memset(fl, 0, (size_t)K);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < T; r++) {
                const float *xr = load_row_f32(x, r, buf);
                float mx = 0.f;
                for (int64_t k = 0; k < K; k++) {
                    float a = fabsf(xr[k]);
                    if (a >= thr)
                        fl[k] = 1;
                    else
                        mx = a > mx ? a : mx;
                }
                o->rowmax[r] = mx;
            }
        }
        /* OR the per-thread flags into flags[0..K) and list the outlier columns */
        for (int t = 1; t < nth; t++)
            for (int64_t k = 0; k < K; k++) flags[k] |= flags[(size_t)t * K + k];
        for (int64_t k = 0; k < K; k++)
            if (flags[k]) o->idx[o->n_outl++] = (int32_t)k;
    }
#pragma omp parallel num_threads(nth)
    {
        float *buf = rowbuf + (size_t)thread_id() * K;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < T; r++) {
            const float *xr = load_row_f32(x, r, buf);
            if (thr <= 0) {
                float mx = 0.f;
                for (int64_t k = 0; k < K; k++) mx = fmaxf(mx, fabsf(xr[k]));
                o->rowmax[r] = mx;
            }
            float mx = o->rowmax[r];
            float scale = mx > 0 ? 127.f / mx : 0.f;
            int8_t *qr = o->q + r * K;
            for (int64_t k = 0; k < K; k++) qr[k] = quant1(xr[k], scale);
            if (o->n_outl) /* whole outlier columns are 0: they are computed in float */
                for (int32_t j = 0; j < o->n_outl; j++) qr[o->idx[j]] = 0;
        }
    }
}

/* ================================================================================== integer micro-kernels */
/* out[i * 4 + j] = sum_k x[i][k] * w[j][k] for i < mr (1 or 4), j < 4. wsum[j] = sum_k w[j][k] (VNNI only).
 * The accumulators are named scalars, not an array: GCC kept an __m512i acc[4][4] array in memory too (16 stack
 * stores and register shuffles per 64-byte step, ~2x slower). The last chunk of K is masked (masked-off lanes load
 * 0 in w, so whatever x holds there adds nothing). */
TGT_VNNI static inline __m128i vnni_sum4(__m512i a0, __m512i a1, __m512i a2, __m512i a3, __m128i corr) {
    /* 4 horizontal sums at once (a 4-way transpose-add) minus the 128 * sum(w) correction */
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
    __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    return _mm_sub_epi32(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)), corr);
}
/* acc += u8(x) . s8(w) by 4-byte groups. Inline asm ties the accumulator to one register: with the intrinsic,
 * GCC 12 copies every accumulator to a new register (and spills some) on each step of the loop. */
#define VNNI_DP(acc, xv, wv) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(xv), "v"(wv))
#define VNNI_MASK(K, k) ((K) - (k) >= 64 ? ~(__mmask64)0 : _cvtu64_mask64(~0ull >> (64 - ((K) - (k)))))
#define VNNI_ROW(a0, a1, a2, a3, xp)                                                                                  \
    do {                                                                                                              \
        const __m512i xv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, (xp) + k), flip);                              \
        VNNI_DP(a0, xv, w0);                                                                                          \
        VNNI_DP(a1, xv, w1);                                                                                          \
        VNNI_DP(a2, xv, w2);                                                                                          \
        VNNI_DP(a3, xv, w3);                                                                                          \
    } while (0)

TGT_VNNI __attribute__((noinline)) static void vnni_tile_4x4(const int8_t *const *x, const int8_t *const *w,
                                                             const int32_t *wsum, int64_t K, int32_t *out) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
            a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    for (int64_t k = 0; k < K; k += 64) {
        const __mmask64 m = VNNI_MASK(K, k);
        const __m512i w0 = _mm512_maskz_loadu_epi8(m, w[0] + k), w1 = _mm512_maskz_loadu_epi8(m, w[1] + k),
                      w2 = _mm512_maskz_loadu_epi8(m, w[2] + k), w3 = _mm512_maskz_loadu_epi8(m, w[3] + k);
        VNNI_ROW(a00, a01, a02, a03, x[0]);
        VNNI_ROW(a10, a11, a12, a13, x[1]);
        VNNI_ROW(a20, a21, a22, a23, x[2]);
        VNNI_ROW(a30, a31, a32, a33, x[3]);
    }
    const __m128i corr = _mm_slli_epi32(_mm_loadu_si128((const __m128i *)wsum), 7);
    _mm_storeu_si128((__m128i *)(out + 0 * INT8_NR), vnni_sum4(a00, a01, a02, a03, corr));
    _mm_storeu_si128((__m128i *)(out + 1 * INT8_NR), vnni_sum4(a10, a11, a12, a13, corr));
    _mm_storeu_si128((__m128i *)(out + 2 * INT8_NR), vnni_sum4(a20, a21, a22, a23, corr));
    _mm_storeu_si128((__m128i *)(out + 3 * INT8_NR), vnni_sum4(a30, a31, a32, a33, corr));
}

TGT_VNNI __attribute__((noinline)) static void vnni_tile_1x4(const int8_t *const *x, const int8_t *const *w,
                                                             const int32_t *wsum, int64_t K, int32_t *out) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K; k += 64) {
        const __mmask64 m = VNNI_MASK(K, k);
        const __m512i w0 = _mm512_maskz_loadu_epi8(m, w[0] + k), w1 = _mm512_maskz_loadu_epi8(m, w[1] + k),
                      w2 = _mm512_maskz_loadu_epi8(m, w[2] + k), w3 = _mm512_maskz_loadu_epi8(m, w[3] + k);
        VNNI_ROW(a0, a1, a2, a3, x[0]);
    }
    const __m128i corr = _mm_slli_epi32(_mm_loadu_si128((const __m128i *)wsum), 7);
    _mm_storeu_si128((__m128i *)out, vnni_sum4(a0, a1, a2, a3, corr));
}
#undef VNNI_ROW

/* sum_k w[k] of n rows of K int8 (row stride K). */
TGT_VNNI static void vnni_row_sums(const int8_t *w, int64_t n, int64_t K, int32_t *sums) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t r = 0; r < n; r++) {
        const int8_t *p = w + r * K;
        __m512i acc = _mm512_setzero_si512();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512((const void *)(p + k)));
        if (k < K)
            acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(_cvtu64_mask64(~0ull >> (64 - (K - k))), p + k));
        sums[r] = _mm512_reduce_add_epi32(acc);
    }
}

/* mr (1 or 2) x 4 tile; 16 ymm registers allow 2 x 4 accumulators. */
TGT_AVX2 static inline __attribute__((always_inline)) void avx2_tile(const int mr, const int8_t *const *x,
                                                                     const int8_t *const *w, int64_t K,
                                                                     int32_t *out, int out_stride) {
    __m256i acc[2][INT8_NR];
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < INT8_NR; j++) acc[i][j] = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m256i wv[INT8_NR];
        for (int j = 0; j < INT8_NR; j++) wv[j] = _mm256_loadu_si256((const __m256i *)(w[j] + k));
        for (int i = 0; i < mr; i++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x[i] + k));
            __m256i ax = _mm256_abs_epi8(xv);
            for (int j = 0; j < INT8_NR; j++) {
                __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[j], xv));
                acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(p, ones16));
            }
        }
    }
    for (int i = 0; i < mr; i++) { /* 4 horizontal sums at once */
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[i][0], acc[i][1]), _mm256_hadd_epi32(acc[i][2], acc[i][3]));
        __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        int32_t s4[INT8_NR];
        _mm_storeu_si128((__m128i *)s4, q);
        for (int j = 0; j < INT8_NR; j++) {
            int32_t s = s4[j];
            for (int64_t kk = k; kk < K; kk++) s += (int32_t)x[i][kk] * (int32_t)w[j][kk];
            out[i * out_stride + j] = s;
        }
    }
}

TGT_AVX2 static void avx2_tile_4x4(const int8_t *const *x, const int8_t *const *w, int64_t K, int32_t *out) {
    avx2_tile(2, x, w, K, out, INT8_NR);
    avx2_tile(2, x + 2, w, K, out + 2 * INT8_NR, INT8_NR);
}
TGT_AVX2 static void avx2_tile_1x4(const int8_t *const *x, const int8_t *const *w, int64_t K, int32_t *out) {
    avx2_tile(1, x, w, K, out, INT8_NR);
}

static void scalar_tile(int mr, const int8_t *const *x, const int8_t *const *w, int64_t K, int32_t *out) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < INT8_NR; j++) {
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int32_t)x[i][k] * (int32_t)w[j][k];
            out[i * INT8_NR + j] = s;
        }
}

/* ================================================================================== matmul_int8 */
typedef struct {
    /* activations */
    const int8_t *xq;       /* [T x K] */
    const float *xmax;      /* [T] row absmax */
    const int32_t *outl;    /* outlier columns */
    int32_t n_outl;
    const bnb_tensor *xf;   /* float x (outlier values read from it), or NULL: f16 values below */
    const uint16_t *xo_f16; /* [n_outl x T] column-major (I8_ROW input) */
    /* weights */
    const int8_t *wq;       /* [O x K] */
    const float *wmax;      /* [O] SCB */
    const float *bias;      /* [O] or NULL */
    int64_t T, K, O;
    float *y;               /* [T x O] */
} mm_job;

/* Scratch of one MATMUL_INT8 node, shared by bnb_cpu_int8_work_size and the kernel. */
typedef struct {
    size_t q, rowmax, idx, flags, rowbuf, wq, wmax, bias, yf, thread0, per_thread, total;
    int64_t ob;
} mm_scratch;

static int64_t pick_ob(int64_t O, int nth) {
    int64_t want = (O + (int64_t)nth * 4 - 1) / ((int64_t)nth * 4); /* >= 4 blocks per thread */
    want = BNB_PAD(want, INT8_NR);
    return want < INT8_NR ? INT8_NR : want > INT8_OB ? INT8_OB : want;
}

static mm_scratch mm_scratch_of(const bnb_tensor *node, int nth) {
    const bnb_tensor *x = node->src[0], *w = node->src[1];
    const int64_t K = x->ne[0], T = bnb_nrows(x), O = w->ne[1];
    const bool x_float = x->type != BNB_TYPE_I8_ROW, w_float = w->type != BNB_TYPE_I8_ROW;
    const float thr = x_float ? bnb_get_op_f32(node, 0) : x->quant.threshold;
    const bool outliers = thr > 0;
    mm_scratch s = {0};
    size_t off = 0;
#define TAKE(field, bytes)                                                                                            \
    do {                                                                                                              \
        s.field = off;                                                                                                \
        off += BNB_PAD((size_t)(bytes), BNB_ALIGN);                                                                   \
    } while (0)
    if (x_float) {
        TAKE(q, T * K);
        TAKE(rowmax, T * 4);
        TAKE(idx, K * 4);
        TAKE(flags, outliers ? (int64_t)nth * K : 0);
    }
    TAKE(rowbuf, (int64_t)nth * K * 4);
    if (w_float) {
        TAKE(wq, O * K);
        TAKE(wmax, O * 4);
    }
    TAKE(bias, O * 4);
    TAKE(yf, node->type != BNB_TYPE_F32 ? T * O * 4 : 0); /* F16 / BF16 output: the F32 result, rounded at the end */
#undef TAKE
    s.ob = pick_ob(O, nth);
    /* per thread: weight row sums and scales [ob], outlier weights [ob x K] and x outliers [MR x K] (when outliers exist) */
    s.per_thread = BNB_PAD((size_t)s.ob * 8, BNB_ALIGN);
    if (outliers) s.per_thread += BNB_PAD((size_t)(s.ob + INT8_MR) * K * 4, BNB_ALIGN);
    s.thread0 = off;
    s.total = off + (size_t)nth * s.per_thread;
    return s;
}

size_t bnb_cpu_int8_work_size(const bnb_tensor *node, int n_threads) {
    switch (node->op) {
    case BNB_OP_MATMUL_INT8: return mm_scratch_of(node, n_threads).total;
    case BNB_OP_INT8_VECTORWISE_QUANT: {
        const int64_t K = node->src[0]->ne[0];
        return (size_t)n_threads * K * 5 + BNB_ALIGN;
    }
    default: return 0;
    }
}

/* Outlier value j of x row t, as float. */
static inline float outlier_x(const mm_job *jb, int64_t t, int32_t j, float *rowbuf) {
    (void)rowbuf;
    if (!jb->xf) return bnb_f16_to_f32(jb->xo_f16[(int64_t)j * jb->T + t]);
    const bnb_tensor *x = jb->xf;
    int64_t i1 = t % x->ne[1], i2 = (t / x->ne[1]) % x->ne[2], i3 = t / (x->ne[1] * x->ne[2]);
    const char *p = (const char *)x->data + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3];
    return bnb_cpu_load(p + (size_t)jb->outl[j] * x->nb[0], x->type);
}

static void mm_run(const bnb_cpu_ctx *c, const mm_job *jb, const mm_scratch *s) {
    const int64_t T = jb->T, K = jb->K, O = jb->O, ob = s->ob;
    const int64_t n_blocks = (O + ob - 1) / ob;
    const int isa = int8_isa();
    const int32_t n_outl = jb->n_outl;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, T * K * O)) schedule(dynamic, 1)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        char *mine = (char *)c->work + s->thread0 + (size_t)thread_id() * s->per_thread;
        int32_t *wsum = (int32_t *)mine;                                   /* [ob] */
        float *wscale = (float *)(wsum + ob);                               /* [ob] SCB / 127 */
        float *wo = (float *)(mine + BNB_PAD((size_t)ob * 8, BNB_ALIGN));   /* [ob x n_outl] */
        float *xo = n_outl ? wo + ob * K : NULL;                            /* [MR x n_outl] */
        const int64_t o0 = blk * ob, on = BNB_MIN(ob, O - o0);
        if (isa == ISA_VNNI) vnni_row_sums(jb->wq + o0 * K, on, K, wsum);
        for (int64_t o = 0; o < on; o++) wscale[o] = jb->wmax[o0 + o] / 127.f;
        for (int64_t o = 0; o < on; o++) /* dequantized weights of the outlier columns, [n_outl x ob] */
            for (int32_t j = 0; j < n_outl; j++)
                wo[j * ob + o] = (float)jb->wq[(o0 + o) * K + jb->outl[j]] * wscale[o];
        for (int64_t t0 = 0; t0 < T; t0 += INT8_MR) {
            const int mr = T - t0 >= INT8_MR ? INT8_MR : 1;
            const int64_t tn = BNB_MIN(INT8_MR, T - t0);
            for (int64_t i = 0; i < tn && n_outl; i++)
                for (int32_t j = 0; j < n_outl; j++) xo[i * n_outl + j] = outlier_x(jb, t0 + i, j, NULL);
            for (int64_t oo = 0; oo < on; oo += INT8_NR) {
                const int8_t *wr[INT8_NR];
                int32_t ws[INT8_NR];
                for (int j = 0; j < INT8_NR; j++) { /* rows past the end repeat the last one; results dropped */
                    int64_t o = BNB_MIN(oo + j, on - 1);
                    wr[j] = jb->wq + (o0 + o) * K;
                    ws[j] = wsum[o];
                }
                for (int64_t ts = 0; ts < tn; ts += mr) {
                    const int8_t *xr[INT8_MR];
                    for (int i = 0; i < mr; i++) xr[i] = jb->xq + (t0 + ts + i) * K;
                    int32_t acc[INT8_MR * INT8_NR];
                    if (isa == ISA_VNNI)
                        mr == INT8_MR ? vnni_tile_4x4(xr, wr, ws, K, acc) : vnni_tile_1x4(xr, wr, ws, K, acc);
                    else if (isa == ISA_AVX2)
                        mr == INT8_MR ? avx2_tile_4x4(xr, wr, K, acc) : avx2_tile_1x4(xr, wr, K, acc);
                    else
                        scalar_tile(mr, xr, wr, K, acc);
                    /* epilogue: scales, outlier columns, bias; 4 outputs at a time (the same float operations in
                     * the same order as the scalar loop for a short last group) */
                    for (int i = 0; i < mr; i++) {
                        const int64_t t = t0 + ts + i;
                        const float sx = jb->xmax[t] / 127.f;
                        const float *xoi = xo + (ts + i) * n_outl;
                        float *yr = jb->y + t * O + o0;
                        if (oo + INT8_NR <= on) {
                            const __m128i ai = _mm_loadu_si128((const __m128i *)(acc + i * INT8_NR));
                            __m128 v = _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(ai), _mm_set1_ps(sx)),
                                                  _mm_loadu_ps(wscale + oo));
                            __m128 extra = _mm_setzero_ps();
                            for (int32_t l = 0; l < n_outl; l++)
                                extra = _mm_add_ps(extra, _mm_mul_ps(_mm_set1_ps(xoi[l]), _mm_loadu_ps(wo + l * ob + oo)));
                            v = _mm_add_ps(_mm_add_ps(v, extra),
                                           jb->bias ? _mm_loadu_ps(jb->bias + o0 + oo) : _mm_setzero_ps());
                            _mm_storeu_ps(yr + oo, v);
                            continue;
                        }
                        for (int j = 0; j < INT8_NR && oo + j < on; j++) {
                            float v = (float)acc[i * INT8_NR + j] * sx * wscale[oo + j];
                            float extra = 0.f;
                            for (int32_t l = 0; l < n_outl; l++) extra += xoi[l] * wo[l * ob + oo + j];
                            yr[oo + j] = v + extra + (jb->bias ? jb->bias[o0 + oo + j] : 0.f);
                        }
                    }
                }
            }
        }
    }
}

bnb_status bnb_cpu_matmul_int8(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
    const int64_t K = x->ne[0], T = bnb_nrows(x), O = w->ne[1];
    mm_scratch s = mm_scratch_of(node, c->n_threads);
    if (s.total > c->work_size)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_matmul_int8 (cpu): scratch of %zu bytes missing", s.total);
    char *work = c->work;
    mm_job jb = {0};
    jb.T = T;
    jb.K = K;
    jb.O = O;
    jb.y = node->type == BNB_TYPE_F32 ? (float *)node->data : (float *)(work + s.yf);
    float *rowbuf = (float *)(work + s.rowbuf);
    /* weights: stored int8, or re-quantized from float master weights (no outliers for weights) */
    if (w->type == BNB_TYPE_I8_ROW) {
        bnb_int8_layout lw = bnb_int8_layout_of(w);
        jb.wq = w->data;
        jb.wmax = (const float *)((const char *)w->data + lw.rowmax_offs);
    } else {
        quant_out qw = {(int8_t *)(work + s.wq), (float *)(work + s.wmax), NULL, 0};
        quant_rows(c, w, 0.f, &qw, NULL, rowbuf);
        jb.wq = qw.q;
        jb.wmax = qw.rowmax;
    }
    /* activations: quantized here with outlier detection, or taken from an I8_ROW */
    if (x->type == BNB_TYPE_I8_ROW) {
        bnb_int8_layout lx = bnb_int8_layout_of(x);
        jb.xq = x->data;
        jb.xmax = (const float *)((const char *)x->data + lx.rowmax_offs);
        if (lx.has_outliers) {
            memcpy(&jb.n_outl, (const char *)x->data + lx.outl_count_offs, 4);
            jb.outl = (const int32_t *)((const char *)x->data + lx.outl_idx_offs);
            jb.xo_f16 = (const uint16_t *)((const char *)x->data + lx.outl_val_offs);
        }
    } else {
        quant_out qx = {(int8_t *)(work + s.q), (float *)(work + s.rowmax), (int32_t *)(work + s.idx), 0};
        quant_rows(c, x, bnb_get_op_f32(node, 0), &qx, (uint8_t *)(work + s.flags), rowbuf);
        jb.xq = qx.q;
        jb.xmax = qx.rowmax;
        jb.outl = qx.idx;
        jb.n_outl = qx.n_outl;
        jb.xf = x;
    }
    if (b) {
        float *bias = (float *)(work + s.bias);
        for (int64_t o = 0; o < O; o++) bias[o] = bnb_cpu_load((const char *)b->data + o * b->nb[0], b->type);
        jb.bias = bias;
    }
    mm_run(c, &jb, &s);
    if (node->type != BNB_TYPE_F32) { /* round once to the output type (nearest even, as the CUDA epilogues) */
        const int64_t n = T * O;
        const bnb_type ty = node->type;
        uint16_t *out = node->data;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, n)) schedule(static)
        for (int64_t i = 0; i < n; i++) out[i] = ty == BNB_TYPE_F16 ? bnb_f32_to_f16(jb.y[i]) : bnb_f32_to_bf16(jb.y[i]);
    }
    return BNB_OK;
}

/* ================================================================================== standalone quant / dequant */
bnb_status bnb_cpu_int8_vectorwise_quant(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0];
    const int64_t K = x->ne[0];
    const float thr = node->quant.threshold;
    if ((size_t)c->n_threads * K * 5 > c->work_size)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_int8_vectorwise_quant (cpu): scratch missing");
    bnb_int8_layout l = bnb_int8_layout_of(node);
    char *base = node->data;
    int32_t *idx = l.has_outliers ? (int32_t *)(base + l.outl_idx_offs) : NULL;
    quant_out o = {(int8_t *)base, (float *)(base + l.rowmax_offs), idx, 0};
    float *rowbuf = c->work;
    uint8_t *flags = (uint8_t *)c->work + (size_t)c->n_threads * K * 4;
    quant_rows(c, x, thr, &o, flags, rowbuf);
    if (l.has_outliers) {
        memcpy(base + l.outl_count_offs, &o.n_outl, 4);
        uint16_t *vals = (uint16_t *)(base + l.outl_val_offs);
        const int64_t T = l.rows;
        const int32_t n = o.n_outl;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, T * K)) schedule(static)
        for (int64_t r = 0; r < T; r++) {
            const float *xr = load_row_f32(x, r, rowbuf + (size_t)thread_id() * K);
            for (int32_t j = 0; j < n; j++) vals[(int64_t)j * T + r] = bnb_f32_to_f16(xr[idx[j]]);
        }
    }
    return BNB_OK;
}

bnb_status bnb_cpu_int8_dequantize(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *q = node->src[0];
    bnb_int8_layout l = bnb_int8_layout_of(q);
    const int8_t *qv = q->data;
    const float *rowmax = (const float *)((const char *)q->data + l.rowmax_offs);
    int32_t n = 0;
    const int32_t *idx = NULL;
    const uint16_t *vals = NULL;
    if (l.has_outliers) {
        memcpy(&n, (const char *)q->data + l.outl_count_offs, 4);
        idx = (const int32_t *)((const char *)q->data + l.outl_idx_offs);
        vals = (const uint16_t *)((const char *)q->data + l.outl_val_offs);
    }
    float *y = node->data;
    const int64_t K = l.cols, T = l.rows;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, T * K)) schedule(static)
    for (int64_t r = 0; r < T; r++) {
        const float s = rowmax[r] / 127.f;
        for (int64_t k = 0; k < K; k++) y[r * K + k] = (float)qv[r * K + k] * s;
        for (int32_t j = 0; j < n; j++) y[r * K + idx[j]] = bnb_f16_to_f32(vals[(int64_t)j * T + r]);
    }
    return BNB_OK;
}
