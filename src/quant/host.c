/* Blockwise quantize / dequantize on the host: the loops behind bnb_tensor_set_f32 / get_f32 of quantized tensors
 * and the CPU backend's quantization kernels (src/cpu/quant.c). OpenMP over blocks; AVX-512 for the 8-bit search
 * (bnb_qsearch's result as a count over sorted thresholds, or its 7-step walk, 16 lanes at a time from register
 * tables), the 4-bit encoders, blocks of 64 in registers and the dequantizers; scalar code elsewhere.
 * Performance notes: docs/perf-quant-cpu.md. */
#include "quant.h"

#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define BNB_Q_AVX512 1
#endif

/* ---------------------------------------------------------------- loading a block as f32 */
static const float *load_block(const void *src, bnb_type type, int64_t start, int64_t len, float *buf) {
    switch (type) {
    case BNB_TYPE_F32: return (const float *)src + start;
    case BNB_TYPE_F16: {
        const uint16_t *h = (const uint16_t *)src + start;
        int64_t i = 0;
#ifdef BNB_Q_AVX512
        for (; i + 16 <= len; i += 16)
            _mm512_storeu_ps(buf + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
#endif
        for (; i < len; i++) buf[i] = bnb_f16_to_f32(h[i]);
        return buf;
    }
    case BNB_TYPE_BF16: {
        const uint16_t *h = (const uint16_t *)src + start;
        int64_t i = 0;
#ifdef BNB_Q_AVX512
        for (; i + 16 <= len; i += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i)));
            _mm512_storeu_ps(buf + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
        }
#endif
        for (; i < len; i++) buf[i] = bnb_bf16_to_f32(h[i]);
        return buf;
    }
    default: return NULL;
    }
}

/* max |x| of a block; *finite = false if any value is NaN/Inf */
static float block_absmax(const float *x, int64_t len, bool *finite) {
    int64_t i = 0;
    float m = 0.0f;
    bool ok = true;
#ifdef BNB_Q_AVX512
    /* the max of |x|'s bits as unsigned integers: the same order as the floats, NaN and Inf above every finite
     * value, and no compare (port 5) per vector */
    __m512i vm0 = _mm512_setzero_si512(), vm1 = _mm512_setzero_si512();
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    for (; i + 32 <= len; i += 32) {
        vm0 = _mm512_max_epu32(vm0, _mm512_and_si512(_mm512_loadu_si512(x + i), absmask));
        vm1 = _mm512_max_epu32(vm1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), absmask));
    }
    for (; i + 16 <= len; i += 16) vm0 = _mm512_max_epu32(vm0, _mm512_and_si512(_mm512_loadu_si512(x + i), absmask));
    const uint32_t mb = _mm512_reduce_max_epu32(_mm512_max_epu32(vm0, vm1));
    ok = mb < 0x7f800000u;
    memcpy(&m, &mb, 4);
    if (!ok) m = 0.0f;
#endif
    for (; i < len; i++) {
        float a = fabsf(x[i]);
        if (!(a <= FLT_MAX)) ok = false;
        m = a > m ? a : m;
    }
    *finite = ok;
    return m;
}

/* The search of a block runs from L1 (the absmax pass loaded it) and makes no memory traffic of its own, so it
 * prefetches the source data a little ahead (pf: the source bytes BNB_PF_ELEMS elements on, esz bytes an element):
 * without it each block's absmax pass waits on DRAM while the memory is idle during the search. */
#define BNB_PF_ELEMS 4096
#define QCHUNK 64 /* blocks a parallel loop iteration */
#ifdef BNB_Q_AVX512
#define BNB_PREFETCH_AHEAD(pf, esz, i)                                                                             \
    do {                                                                                                           \
        _mm_prefetch((pf) + (i) * (esz), _MM_HINT_T0);                                                             \
        if ((esz) > 2) _mm_prefetch((pf) + (i) * (esz) + 64, _MM_HINT_T0);                                         \
    } while (0)
#endif

/* ---------------------------------------------------------------- 8-bit codes of one block */
#ifdef BNB_Q_AVX512
/* bnb_qsearch (non-stochastic) on 16 lanes without gathers. The 7 halving steps walk an implicit tree whose pivot
 * after s steps is fixed by the s comparison bits so far (idx), so each level is a register-table lookup
 * (permutexvar / permutex2var) of that level's pivot values. The final pivot is p = 2 * idx (even), its bracketing
 * pivots are p - 1 and p + 1 (index 0 and 255 at the ends, as in the scalar search), and the two midpoints the
 * scalar code computes are tabulated per p with the same float operations. Exactly bnb_qsearch for any map. */
typedef struct {
    __m512 lvl[7][8]; /* level s: 2^s pivot values (padded to whole vectors) */
    __m512 final_val[8];           /* code[2 idx]: the value at the final pivot */
    __m512 mid_up[8], mid_dn[8];   /* (code[p+1] + code[p]) / 2, (code[p-1 or 0] + code[p]) / 2 */
    bool sorted;                   /* map nondecreasing: the final step needs no code[p] (see qsearch16_sorted) */
    bool counted;                  /* count8 below applies (see count_tables_init) */
    __m512 cnt[8][8];              /* count8: level L's 2^L thresholds, indexed by the decisions so far, first in bit 0 */
} qsearch_tables;

/* For a strictly increasing finite map whose rounded midpoints m_j = (code[j] + code[j+1]) / 2 lie in
 * [code[j], code[j+1]] (and above code[j] for odd j), bnb_qsearch(y) = #{even j : y > m_j} + #{odd j : y >= m_j}:
 * with k = #{odd codes < y} (the tree walk), code[2k-1] < y <= code[2k+1], so every midpoint below 2k-1 is below y,
 * none above 2k is, and the final step adds [y > m_2k] and subtracts [y < m_2k-1]. Writing y >= m as y > prev(m)
 * (the float below m) makes it the count of y > r_j over 255 sorted thresholds: an 8-level binary search. */
static void count_tables_init(qsearch_tables *T, const float *code) {
    float r[256];
    T->counted = true;
    for (int j = 0; j < 255; j++) {
        const float m = (code[j + 1] + code[j]) * 0.5f;
        if (!isfinite(code[j]) || !isfinite(code[j + 1]) || !(code[j + 1] > code[j]) || !(m >= code[j]) ||
            !(m <= code[j + 1]) || ((j & 1) && !(m > code[j])))
            T->counted = false;
        r[j] = (j & 1) ? nextafterf(m, -INFINITY) : m;
        if (j > 0 && !(r[j] >= r[j - 1])) T->counted = false;
    }
    r[255] = INFINITY;
    for (int L = 0; L < 8; L++) {
        float tab[128] = {0};
        for (int i = 0; i < (1 << L); i++) { /* i: decisions d_0..d_{L-1} in bits 0..L-1 (d_0 = the 128 step) */
            int c = 0;
            for (int t = 0; t < L; t++) c += ((i >> t) & 1) << (7 - t);
            tab[i] = r[c + (1 << (7 - L)) - 1];
        }
        for (int v = 0; v < 8; v++) T->cnt[L][v] = _mm512_loadu_ps(tab + 16 * v);
    }
}

/* bnb_qsearch on 16 lanes as the count above: level L compares with the threshold picked by the decisions so far
 * (kept bit-reversed so that every level's table index is the low bits, and the blends of the 64- and 128-entry
 * lookups are the decisions of levels 5 and 6 themselves); the code is the 8 decision bits reversed. */
static inline __m128i count8_16(const qsearch_tables *T, __m512 y) {
    __mmask16 g[8];
    g[0] = _mm512_cmp_ps_mask(y, _mm512_set1_ps(_mm512_cvtss_f32(T->cnt[0][0])), _CMP_GT_OQ);
    __m512i idx = _mm512_maskz_mov_epi32(g[0], _mm512_set1_epi32(1));
    for (int L = 1; L < 5; L++) {
        g[L] = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(idx, T->cnt[L][0]), _CMP_GT_OQ);
        idx = _mm512_mask_or_epi32(idx, g[L], idx, _mm512_set1_epi32(1 << L));
    }
    g[5] = _mm512_cmp_ps_mask(y, _mm512_permutex2var_ps(T->cnt[5][0], idx, T->cnt[5][1]), _CMP_GT_OQ);
    idx = _mm512_mask_or_epi32(idx, g[5], idx, _mm512_set1_epi32(32));
    const __m512 v6 = _mm512_mask_blend_ps(g[5], _mm512_permutex2var_ps(T->cnt[6][0], idx, T->cnt[6][1]),
                                           _mm512_permutex2var_ps(T->cnt[6][2], idx, T->cnt[6][3]));
    g[6] = _mm512_cmp_ps_mask(y, v6, _CMP_GT_OQ);
    idx = _mm512_mask_or_epi32(idx, g[6], idx, _mm512_set1_epi32(64));
    const __m512 v7 = _mm512_mask_blend_ps(
        g[6],
        _mm512_mask_blend_ps(g[5], _mm512_permutex2var_ps(T->cnt[7][0], idx, T->cnt[7][1]),
                             _mm512_permutex2var_ps(T->cnt[7][2], idx, T->cnt[7][3])),
        _mm512_mask_blend_ps(g[5], _mm512_permutex2var_ps(T->cnt[7][4], idx, T->cnt[7][5]),
                             _mm512_permutex2var_ps(T->cnt[7][6], idx, T->cnt[7][7])));
    g[7] = _mm512_cmp_ps_mask(y, v7, _CMP_GT_OQ);
    idx = _mm512_mask_or_epi32(idx, g[7], idx, _mm512_set1_epi32(128));
    const __m128i rev = _mm512_cvtepi32_epi8(idx);
#if defined(__GFNI__)
    return _mm_gf2p8affine_epi64_epi8(rev, _mm_set1_epi64x(0x8040201008040201LL), 0); /* reverse each byte's bits */
#else
    const __m128i lut = _mm_setr_epi8(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15), lo = _mm_set1_epi8(15);
    const __m128i a = _mm_shuffle_epi8(lut, _mm_and_si128(rev, lo));
    const __m128i b = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(rev, 4), lo));
    return _mm_or_si128(_mm_slli_epi16(a, 4), b);
#endif
}

static void qsearch_tables_init(qsearch_tables *T, const float *code) {
    float buf[128];
    for (int s = 0; s < 7; s++) {
        const int cnt = 1 << s;
        for (int b = 0; b < cnt; b++) { /* pivot reached by the bits of b (MSB first: 1 = went up) */
            int pivot = 127;
            for (int t = 0; t < s; t++) pivot += ((b >> (s - 1 - t)) & 1) ? (64 >> t) : -(64 >> t);
            buf[b] = code[pivot];
        }
        for (int v = 0; v < 8; v++) {
            float tmp[16] = {0};
            for (int j = 0; j < 16 && v * 16 + j < cnt; j++) tmp[j] = buf[v * 16 + j];
            T->lvl[s][v] = _mm512_loadu_ps(tmp);
        }
    }
    float up[128], dn[128];
    for (int i = 0; i < 128; i++) {
        const int p = 2 * i;
        const float val = code[p], upper = code[p + 1], lower = p > 0 ? code[p - 1] : code[0];
        up[i] = (upper + val) * 0.5f;
        dn[i] = (lower + val) * 0.5f;
    }
    T->sorted = true;
    for (int i = 1; i < 256; i++)
        if (!(code[i] >= code[i - 1])) T->sorted = false;
    for (int i = 0; i < 128; i++) buf[i] = code[2 * i];
    count_tables_init(T, code);
    for (int v = 0; v < 8; v++) {
        T->final_val[v] = _mm512_loadu_ps(buf + 16 * v);
        T->mid_up[v] = _mm512_loadu_ps(up + 16 * v);
        T->mid_dn[v] = _mm512_loadu_ps(dn + 16 * v);
    }
}

/* t[idx] for a 128-entry table held in 8 vectors, idx in 0..127 */
static inline __m512 lookup128(const __m512 t[8], __m512i idx) {
    __m512 a = _mm512_permutex2var_ps(t[0], idx, t[1]), b = _mm512_permutex2var_ps(t[2], idx, t[3]);
    __m512 c = _mm512_permutex2var_ps(t[4], idx, t[5]), d = _mm512_permutex2var_ps(t[6], idx, t[7]);
    __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    __mmask16 b6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
    return _mm512_mask_blend_ps(b6, _mm512_mask_blend_ps(b5, a, b), _mm512_mask_blend_ps(b5, c, d));
}

static inline __m128i qsearch16(const qsearch_tables *T, __m512 y) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i idx = _mm512_setzero_si512();
    __m512 val = _mm512_permutexvar_ps(idx, T->lvl[0][0]); /* code[127] in every lane */
    for (int s = 0; s < 7; s++) {
        __mmask16 gt = _mm512_cmp_ps_mask(y, val, _CMP_GT_OQ);
        idx = _mm512_mask_add_epi32(_mm512_add_epi32(idx, idx), gt, _mm512_add_epi32(idx, idx), one);
        if (s + 1 < 5) {
            val = _mm512_permutexvar_ps(idx, T->lvl[s + 1][0]);
        } else if (s + 1 == 5) {
            val = _mm512_permutex2var_ps(T->lvl[5][0], idx, T->lvl[5][1]);
        } else if (s + 1 == 6) {
            __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
            val = _mm512_mask_blend_ps(b5, _mm512_permutex2var_ps(T->lvl[6][0], idx, T->lvl[6][1]),
                                       _mm512_permutex2var_ps(T->lvl[6][2], idx, T->lvl[6][3]));
        }
    }
    /* idx: 7 bits, final pivot p = 2 idx */
    const __m512 fval = lookup128(T->final_val, idx);
    const __mmask16 gt = _mm512_cmp_ps_mask(y, fval, _CMP_GT_OQ);
    const __mmask16 up = gt & _mm512_cmp_ps_mask(y, lookup128(T->mid_up, idx), _CMP_GT_OQ);
    const __mmask16 dn = (__mmask16)~gt & _mm512_cmp_ps_mask(y, lookup128(T->mid_dn, idx), _CMP_LT_OQ);
    __m512i p = _mm512_add_epi32(idx, idx);
    p = _mm512_mask_add_epi32(p, up, p, one);
    p = _mm512_mask_sub_epi32(p, dn & _mm512_cmpgt_epi32_mask(p, _mm512_setzero_si512()), p, one);
    return _mm512_cvtepi32_epi8(p);
}

/* The same walk for a nondecreasing map, with a cheaper final step: mid_dn[idx] <= code[p] <= mid_up[idx] (a rounded
 * midpoint lies between its ends), so "y > code[p] and y > mid_up" is "y > mid_up" and "!(y > code[p]) and
 * y < mid_dn" is "y < mid_dn" (NaN: every compare false, as in the scalar search): no lookup of code[p]. The 128-entry
 * lookups share their index bit masks. */
static inline __m128i qsearch16_sorted(const qsearch_tables *T, __m512 y) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i idx = _mm512_setzero_si512();
    __mmask16 gt = _mm512_cmp_ps_mask(y, _mm512_set1_ps(_mm512_cvtss_f32(T->lvl[0][0])), _CMP_GT_OQ);
    idx = _mm512_maskz_mov_epi32(gt, one);
    for (int s = 1; s < 5; s++) {
        gt = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(idx, T->lvl[s][0]), _CMP_GT_OQ);
        idx = _mm512_mask_add_epi32(_mm512_add_epi32(idx, idx), gt, _mm512_add_epi32(idx, idx), one);
    }
    gt = _mm512_cmp_ps_mask(y, _mm512_permutex2var_ps(T->lvl[5][0], idx, T->lvl[5][1]), _CMP_GT_OQ);
    idx = _mm512_mask_add_epi32(_mm512_add_epi32(idx, idx), gt, _mm512_add_epi32(idx, idx), one);
    const __mmask16 b5a = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    const __m512 v6 = _mm512_mask_blend_ps(b5a, _mm512_permutex2var_ps(T->lvl[6][0], idx, T->lvl[6][1]),
                                           _mm512_permutex2var_ps(T->lvl[6][2], idx, T->lvl[6][3]));
    gt = _mm512_cmp_ps_mask(y, v6, _CMP_GT_OQ);
    idx = _mm512_mask_add_epi32(_mm512_add_epi32(idx, idx), gt, _mm512_add_epi32(idx, idx), one);
    /* idx: 7 bits, final pivot p = 2 idx */
    const __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
#define BNB_LOOKUP128(t)                                                                                           \
    _mm512_mask_blend_ps(b6,                                                                                       \
                         _mm512_mask_blend_ps(b5, _mm512_permutex2var_ps(t[0], idx, t[1]),                         \
                                              _mm512_permutex2var_ps(t[2], idx, t[3])),                            \
                         _mm512_mask_blend_ps(b5, _mm512_permutex2var_ps(t[4], idx, t[5]),                         \
                                              _mm512_permutex2var_ps(t[6], idx, t[7])))
    const __mmask16 up = _mm512_cmp_ps_mask(y, BNB_LOOKUP128(T->mid_up), _CMP_GT_OQ);
    const __mmask16 dn = _mm512_cmp_ps_mask(y, BNB_LOOKUP128(T->mid_dn), _CMP_LT_OQ) &
                         _mm512_test_epi32_mask(idx, _mm512_set1_epi32(127));
#undef BNB_LOOKUP128
    __m512i p = _mm512_add_epi32(idx, idx);
    p = _mm512_mask_add_epi32(p, up, p, one);
    p = _mm512_mask_sub_epi32(p, dn, p, one);
    return _mm512_cvtepi32_epi8(p);
}
#endif

static void codes8_block(const float *map, const void *tables, const float *x, int64_t len, float inv, uint8_t *out,
                         bool stochastic, uint32_t seed, int64_t start, const char *pf, int esz) {
    int64_t i = 0;
    if (stochastic) {
        for (; i < len; i++) out[i] = (uint8_t)bnb_qsearch(map, x[i] * inv, bnb_qrand(seed, start + i), true);
        return;
    }
#ifdef BNB_Q_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    const qsearch_tables *T = tables;
    if (T->counted) {
        for (; i + 32 <= len; i += 32) { /* two independent searches in flight */
            BNB_PREFETCH_AHEAD(pf, esz, i);
            __m128i c0 = count8_16(T, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
            __m128i c1 = count8_16(T, _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vinv));
            _mm_storeu_si128((__m128i *)(out + i), c0);
            _mm_storeu_si128((__m128i *)(out + i + 16), c1);
        }
    }
    if (T->sorted) {
        for (; i + 32 <= len; i += 32) { /* two independent searches in flight */
            __m128i c0 = qsearch16_sorted(T, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
            __m128i c1 = qsearch16_sorted(T, _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vinv));
            _mm_storeu_si128((__m128i *)(out + i), c0);
            _mm_storeu_si128((__m128i *)(out + i + 16), c1);
        }
        for (; i + 16 <= len; i += 16)
            _mm_storeu_si128((__m128i *)(out + i), qsearch16_sorted(T, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)));
    }
    for (; i + 16 <= len; i += 16)
        _mm_storeu_si128((__m128i *)(out + i), qsearch16(T, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)));
#else
    (void)tables;
    (void)pf;
    (void)esz;
#endif
    for (; i < len; i++) out[i] = (uint8_t)bnb_qsearch(map, x[i] * inv, 0.0f, false);
}

/* ---------------------------------------------------------------- 4-bit codes of one block (packed) */
#ifdef BNB_Q_AVX512
/* 16 codes of y (NF4 or FP4) as epi32 lanes */
static inline __attribute__((always_inline)) __m512i encode4_16(__m512 y, bool nf4) {
    static const float nf4_mid_pad[16] = {-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f,
                                           -0.33967943489551544f, -0.23460740596055984f, -0.13791173323988914f,
                                           -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,
                                           0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
                                           0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f, 0.0f};
    /* nf4_lvl[0][c] = nf4_mid[c + 1] for c = 0, 4, 8, 12; nf4_lvl[1][c] = nf4_mid[c] for even c */
    static const float nf4_lvl[2][16] = {
        {-0.6106329262256622f, 0, 0, 0, -0.13791173323988914f, 0, 0, 0, 0.2035212516784668f, 0, 0, 0,
         0.6427869200706482f, 0, 0, 0},
        {-0.8480964004993439f, 0, -0.4599952697753906f, 0, -0.23460740596055984f, 0, -0.045525018125772476f, 0,
         0.1202552504837513f, 0, 0.2920137718319893f, 0, 0.5016634166240692f, 0, 0.8614784181118011f, 0}};
    static const float fp4_mid[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                     0.4166667f, 0.583333f, 0.8333333f};
    const __m512i one = _mm512_set1_epi32(1);
    __m512i c = _mm512_setzero_si512();
    if (nf4) {
        /* the count of thresholds below y by binary search (sorted thresholds): the step-s level compares with
         * nf4_mid[c + s - 1], c the multiple of 2s decided so far; that is a 16-entry register table indexed by c
         * itself (nf4_lvl[s]), and the step-4 level, with two candidates, is a blend */
        const __mmask16 g8 = _mm512_cmp_ps_mask(y, _mm512_set1_ps(nf4_mid_pad[7]), _CMP_GT_OQ);
        c = _mm512_maskz_mov_epi32(g8, _mm512_set1_epi32(8));
        const __m512 piv4 = _mm512_mask_blend_ps(g8, _mm512_set1_ps(nf4_mid_pad[3]), _mm512_set1_ps(nf4_mid_pad[11]));
        c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(y, piv4, _CMP_GT_OQ), c, _mm512_set1_epi32(4));
        const __m512 piv2 = _mm512_permutexvar_ps(c, _mm512_loadu_ps(nf4_lvl[0]));
        c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(y, piv2, _CMP_GT_OQ), c, _mm512_set1_epi32(2));
        const __m512 piv1 = _mm512_permutexvar_ps(c, _mm512_loadu_ps(nf4_lvl[1]));
        c = _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(y, piv1, _CMP_GT_OQ), c, _mm512_set1_epi32(1));
        return c;
    }
    __m512 a = _mm512_abs_ps(y);
    for (int k = 0; k < 7; k++)
        c = _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(a, _mm512_set1_ps(fp4_mid[k]), _CMP_GT_OQ), c, one);
    /* rank of the magnitude -> e2m1 bits */
    c = _mm512_permutexvar_epi32(c, _mm512_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0));
    __mmask16 neg = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_add_epi32(c, neg, c, _mm512_set1_epi32(8));
}

/* 32 4-bit codes (c0: elements 0..15, c1: 16..31, as epi32) packed into 16 bytes, high nibble = even element */
static inline __m128i pack32(__m512i c0, __m512i c1) {
#if defined(__AVX512VBMI__)
    /* Dword i of p holds c0[i] in byte 0 and c1[i] in byte 1; in each qword, (p << 4) | (p >> 32) puts the packed
     * byte of elements (2j, 2j+1) in byte 0 and that of (16+2j, 17+2j) in byte 1; one byte permute orders them. */
    const __m512i pc = _mm512_or_si512(c0, _mm512_slli_epi32(c1, 8));
    const __m512i q = _mm512_or_si512(_mm512_slli_epi64(pc, 4), _mm512_srli_epi64(pc, 32));
    const __m512i order = _mm512_setr_epi64(0x3830282018100800LL, 0x3931292119110901LL, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si128(_mm512_permutexvar_epi8(order, q));
#else
    const __m512i idx_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i idx_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i ev = _mm512_permutex2var_epi32(c0, idx_even, c1);
    const __m512i od = _mm512_permutex2var_epi32(c0, idx_odd, c1);
    return _mm512_cvtepi32_epi8(_mm512_or_si512(_mm512_slli_epi32(ev, 4), od));
#endif
}

/* 64 f32 or f16 values at p as 4 vectors; true if all are finite (absmax bits in *mbits) */
static inline bool load64(const void *p, bool f16, __m512 v[4], uint32_t *mbits) {
    for (int k = 0; k < 4; k++)
        v[k] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p + k)) : _mm512_loadu_ps((const float *)p + 16 * k);
    const __m512i am = _mm512_set1_epi32(0x7fffffff);
    const __m512i m01 = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v[0]), am),
                                         _mm512_and_si512(_mm512_castps_si512(v[1]), am));
    const __m512i m23 = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v[2]), am),
                                         _mm512_and_si512(_mm512_castps_si512(v[3]), am));
    *mbits = _mm512_reduce_max_epu32(_mm512_max_epu32(m01, m23));
    return *mbits < 0x7f800000u;
}

/* Blocks of 64 (the common NF4 / 8-bit block), each in registers (one load, absmax, codes), software-pipelined:
 * the scale of block b+1 (a reduction and a division) is computed before block b's codes, so the search of b does
 * not wait on it. A non-finite block gets absmax NaN and the codes of x * 0, as in the general path. Returns the
 * first non-finite block or INT64_MAX. */
static inline __attribute__((always_inline)) int64_t run64(const void *src, bool f16, int64_t b0, int64_t b1,
                                                           bool four_bit, bool nf4, const qsearch_tables *T,
                                                           uint8_t *codes, float *absmax) {
    const int esz = f16 ? 2 : 4;
    int64_t bad = INT64_MAX;
    /* vn is copied into v after the last block too (unused then): zero it so that copy reads defined values */
    __m512 v[4], vn[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m512 vinv = _mm512_setzero_ps(), vinvn = _mm512_setzero_ps();
#define BNB_STAGE64(b, vv, vi)                                                                                     \
    do {                                                                                                           \
        const char *pf = (const char *)src + ((b) * 64 + BNB_PF_ELEMS) * esz;                                      \
        _mm_prefetch(pf, _MM_HINT_T0);                                                                             \
        _mm_prefetch(pf + 64, _MM_HINT_T0);                                                                        \
        if (!f16) {                                                                                                \
            _mm_prefetch(pf + 128, _MM_HINT_T0);                                                                   \
            _mm_prefetch(pf + 192, _MM_HINT_T0);                                                                   \
        }                                                                                                          \
        uint32_t mb;                                                                                               \
        float m;                                                                                                   \
        if (load64((const char *)src + (b) * 64 * esz, f16, vv, &mb)) {                                            \
            memcpy(&m, &mb, 4);                                                                                    \
            absmax[b] = m;                                                                                         \
            vi = _mm512_set1_ps(bnb_qinv(m));                                                                      \
        } else {                                                                                                   \
            absmax[b] = NAN;                                                                                       \
            vi = _mm512_setzero_ps();                                                                              \
            if ((b) < bad) bad = (b);                                                                              \
        }                                                                                                          \
    } while (0)
    BNB_STAGE64(b0, v, vinv);
    for (int64_t b = b0; b < b1; b++) {
        if (b + 1 < b1) BNB_STAGE64(b + 1, vn, vinvn);
        for (int k = 0; k < 4; k++) v[k] = _mm512_mul_ps(v[k], vinv);
        if (four_bit) {
            uint8_t *o = codes + b * 32;
            _mm_storeu_si128((__m128i *)o, pack32(encode4_16(v[0], nf4), encode4_16(v[1], nf4)));
            _mm_storeu_si128((__m128i *)(o + 16), pack32(encode4_16(v[2], nf4), encode4_16(v[3], nf4)));
        } else {
            for (int k = 0; k < 4; k++) _mm_storeu_si128((__m128i *)(codes + b * 64 + 16 * k), count8_16(T, v[k]));
        }
        for (int k = 0; k < 4; k++) v[k] = vn[k];
        vinv = vinvn;
    }
#undef BNB_STAGE64
    return bad;
}

/* run64 specialised per source type and kind */
static int64_t blocks64(const void *src, bnb_type src_type, int64_t b0, int64_t b1, bool four_bit, bool nf4,
                        const qsearch_tables *T, uint8_t *codes, float *absmax) {
    const bool f16 = src_type == BNB_TYPE_F16;
    if (four_bit && nf4)
        return f16 ? run64(src, true, b0, b1, true, true, T, codes, absmax)
                   : run64(src, false, b0, b1, true, true, T, codes, absmax);
    if (four_bit)
        return f16 ? run64(src, true, b0, b1, true, false, T, codes, absmax)
                   : run64(src, false, b0, b1, true, false, T, codes, absmax);
    return f16 ? run64(src, true, b0, b1, false, false, T, codes, absmax)
               : run64(src, false, b0, b1, false, false, T, codes, absmax);
}
#endif

/* len values starting at an even element: bytes out[0 .. (len+1)/2) */
static inline __attribute__((always_inline)) void codes4_run(bool nf4, const float *x, int64_t len, float inv,
                                                             uint8_t *out, const char *pf, int esz) {
    int64_t i = 0;
#ifdef BNB_Q_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; i + 32 <= len; i += 32) {
        BNB_PREFETCH_AHEAD(pf, esz, i);
        __m512i c0 = encode4_16(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv), nf4);
        __m512i c1 = encode4_16(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vinv), nf4);
        _mm_storeu_si128((__m128i *)(out + i / 2), pack32(c0, c1));
    }
#else
    (void)pf;
    (void)esz;
#endif
    for (; i < len; i += 2) {
        float y0 = x[i] * inv;
        int c0 = nf4 ? bnb_nf4_encode(y0) : bnb_fp4_encode(y0);
        int c1 = 0;
        if (i + 1 < len) {
            float y1 = x[i + 1] * inv;
            c1 = nf4 ? bnb_nf4_encode(y1) : bnb_fp4_encode(y1);
        }
        out[i / 2] = (uint8_t)(c0 << 4 | c1);
    }
}

/* the loop specialised per kind (no test of nf4 per vector) */
static void codes4_block(bool nf4, const float *x, int64_t len, float inv, uint8_t *out, const char *pf, int esz) {
    if (nf4)
        codes4_run(true, x, len, inv, out, pf, esz);
    else
        codes4_run(false, x, len, inv, out, pf, esz);
}

/* ---------------------------------------------------------------- nested absmax */
void bnb_quant_nest_absmax(const bnb_quant_layout *L, const float *absmax, uint8_t *storage) {
    float *map2 = (float *)(storage + L->map2);
    bnb_qmap_dynamic(map2, true, 7, 8);
    double sum = 0.0;
    for (int64_t b = 0; b < L->nblk; b++) sum += absmax[b];
    const float mean = L->nblk ? (float)(sum / (double)L->nblk) : 0.0f;
    *(float *)(storage + L->mean) = mean;
    uint8_t *acodes = storage + L->absmax_codes;
    float *absmax2 = (float *)(storage + L->absmax2);
    for (int64_t j = 0; j < L->nblk2; j++) {
        int64_t b0 = j * BNB_NESTED_BLOCK, b1 = BNB_MIN(L->nblk, b0 + BNB_NESTED_BLOCK);
        float m = 0.0f;
        for (int64_t b = b0; b < b1; b++) {
            float a = fabsf(absmax[b] - mean);
            m = a > m ? a : m;
        }
        absmax2[j] = m;
        const float inv = bnb_qinv(m);
        for (int64_t b = b0; b < b1; b++) acodes[b] = (uint8_t)bnb_qsearch(map2, (absmax[b] - mean) * inv, 0.f, false);
    }
}

void bnb_quant_unnest_absmax(const bnb_quant_layout *L, const uint8_t *storage, float *absmax) {
    const float *map2 = (const float *)(storage + L->map2);
    const float mean = *(const float *)(storage + L->mean);
    const uint8_t *acodes = storage + L->absmax_codes;
    const float *absmax2 = (const float *)(storage + L->absmax2);
    for (int64_t b = 0; b < L->nblk; b++) absmax[b] = map2[acodes[b]] * absmax2[b / BNB_NESTED_BLOCK] + mean;
}

/* ---------------------------------------------------------------- whole tensors */
static int threads_or_default(int n_threads) {
#ifdef _OPENMP
    return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    (void)n_threads;
    return 1;
#endif
}

bnb_status bnb_quant_host_quantize(const bnb_quant_layout *L, bnb_type qtype, const float *map, const void *src,
                                   bnb_type src_type, void *storage, bool stochastic, uint32_t seed, int n_threads,
                                   float *absmax_scratch) {
    uint8_t *st = storage;
    const int64_t nblk = L->nblk, B = L->block, n = L->n;
    float *absmax = (float *)(st + L->absmax), *owned = NULL;
    if (L->nested) {
        absmax = absmax_scratch ? absmax_scratch : (owned = malloc((size_t)BNB_MAX(nblk, 1) * sizeof(float)));
        if (!absmax) return bnb_fail(BNB_ERR_OOM, "quantize: out of host memory");
    }
    const bool nf4 = qtype == BNB_TYPE_Q4_NF4;
    int64_t bad_block = INT64_MAX;
    const void *tables = NULL;
#ifdef BNB_Q_AVX512
    qsearch_tables qt; /* ~2.3 KB of register tables of this map */
    if (!L->four_bit) {
        qsearch_tables_init(&qt, map);
        tables = &qt;
    }
#endif
    const int esz = src_type == BNB_TYPE_F32 ? 4 : 2;
#ifdef BNB_Q_AVX512
    const bool fast64 = B == 64 && (src_type == BNB_TYPE_F32 || src_type == BNB_TYPE_F16) &&
                        (L->four_bit || (!stochastic && qt.counted));
#endif
    const int nt = threads_or_default(n_threads);
#pragma omp parallel num_threads(nt) if (nblk > 1)
    {
        float buf[4096];
        int64_t my_bad = INT64_MAX;
        /* chunks of QCHUNK blocks: whole blocks of 64 go through blocks64, the rest block by block */
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < (nblk + QCHUNK - 1) / QCHUNK; ch++) {
            int64_t b = ch * QCHUNK;
            const int64_t bend = BNB_MIN(nblk, b + QCHUNK);
#ifdef BNB_Q_AVX512
            const int64_t bfull = fast64 ? BNB_MIN(bend, n / 64) : b;
            if (b < bfull) {
                const int64_t bad = blocks64(src, src_type, b, bfull, L->four_bit, nf4, &qt, st + L->codes, absmax);
                if (bad < my_bad) my_bad = bad;
                b = bfull;
            }
#endif
            for (; b < bend; b++) {
            const int64_t start = b * B, len = BNB_MIN(B, n - start);
            const float *x = load_block(src, src_type, start, len, buf);
            bool finite;
            float m = block_absmax(x, len, &finite);
            if (!finite) {
                if (b < my_bad) my_bad = b;
                m = NAN;
            }
            absmax[b] = m;
            const float inv = finite ? bnb_qinv(m) : 0.0f;
            const char *pf = (const char *)src + (start + BNB_PF_ELEMS) * esz; /* prefetch only: may pass the end */
            if (L->four_bit)
                codes4_block(nf4, x, len, inv, st + L->codes + start / 2, pf, esz);
            else
                codes8_block(map, tables, x, len, inv, st + L->codes + start, stochastic, seed, start, pf, esz);
            }
        }
#pragma omp critical(bnb_quant_bad)
        if (my_bad < bad_block) bad_block = my_bad;
    }
    if (!L->four_bit) memcpy(st + L->map, map, 256 * sizeof(float));
    if (L->nested) {
        if (bad_block == INT64_MAX) bnb_quant_nest_absmax(L, absmax, st);
        free(owned);
    }
    if (bad_block != INT64_MAX)
        return bnb_fail(BNB_ERR_NUMERIC, "quantize: block %lld (elements %lld..%lld) holds NaN or Inf",
                        (long long)bad_block, (long long)(bad_block * B),
                        (long long)(BNB_MIN(n, (bad_block + 1) * B) - 1));
    return BNB_OK;
}

/* Decode elements [start, start+len) (all in one block, scale a) into out[0..len). map: 256 (8-bit) or 16 (4-bit)
 * values. */
void bnb_quant_dequant_span(bool four_bit, const float *map, const uint8_t *codes, float a, int64_t start, int64_t len,
                            float *out) {
    int64_t i = 0;
    if (four_bit) {
        if (start & 1) { /* odd start: the low nibble of the first byte */
            out[0] = map[codes[start / 2] & 15] * a;
            i = 1;
        }
        const uint8_t *c = codes + (start + i) / 2; /* byte of element start+i (even) */
        float *o = out + i;
        const int64_t rem = len - i;
        int64_t k = 0;
#ifdef BNB_Q_AVX512
        const __m512 tab = _mm512_loadu_ps(map), va = _mm512_set1_ps(a);
        const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        for (; k + 32 <= rem; k += 32) {
            __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + k / 2)));
            __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), tab), va);
            __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), tab), va);
            _mm512_storeu_ps(o + k, _mm512_permutex2var_ps(hi, ilo, lo));
            _mm512_storeu_ps(o + k + 16, _mm512_permutex2var_ps(hi, ihi, lo));
        }
#endif
        for (; k < rem; k++) o[k] = map[(c[k / 2] >> ((k & 1) ? 0 : 4)) & 15] * a;
        return;
    }
    const uint8_t *c = codes + start;
#ifdef BNB_Q_AVX512
    const __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= len; i += 16) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + i)));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_i32gather_ps(idx, map, 4), va));
    }
#endif
    for (; i < len; i++) out[i] = map[c[i]] * a;
}

/* store len floats as dst_type at dst + start */
static void store_block(const float *v, int64_t len, void *dst, bnb_type type, int64_t start) {
    if (type == BNB_TYPE_F16) {
        uint16_t *h = (uint16_t *)dst + start;
        int64_t i = 0;
#ifdef BNB_Q_AVX512
        for (; i + 16 <= len; i += 16)
            _mm256_storeu_si256((__m256i *)(h + i), _mm512_cvtps_ph(_mm512_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < len; i++) h[i] = bnb_f32_to_f16(v[i]);
    } else {
        uint16_t *h = (uint16_t *)dst + start;
        for (int64_t i = 0; i < len; i++) h[i] = bnb_f32_to_bf16(v[i]);
    }
}

#ifdef BNB_Q_AVX512
/* 64 output bytes at p: a streaming store (output too large to stay in cache: no read of the lines first) or not */
static inline void store64(void *p, __m512i v, bool stream) {
    if (stream)
        _mm512_stream_si512((__m512i *)p, v);
    else
        _mm512_storeu_si512(p, v);
}

/* 32 decoded values (the 32 elements from code byte c[0]'s element on) of a block as f32 or f16 at out. */
static inline void put32(__m512 v0, __m512 v1, void *out, bool f16, bool stream) {
    if (f16) {
        const __m256i h0 = _mm512_cvtps_ph(v0, _MM_FROUND_TO_NEAREST_INT);
        const __m256i h1 = _mm512_cvtps_ph(v1, _MM_FROUND_TO_NEAREST_INT);
        store64(out, _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1), stream);
    } else {
        store64(out, _mm512_castps_si512(v0), stream);
        store64((float *)out + 16, _mm512_castps_si512(v1), stream);
    }
}

/* One whole block (len a multiple of 32, start even) decoded straight into dst (f32 or f16), no staging buffer. */
static void dequant_block_direct(bool four_bit, const float *map, const uint8_t *codes, float a, int64_t start,
                                 int64_t len, void *dst, bool f16, bool stream) {
    const int osz = f16 ? 2 : 4;
    char *out = (char *)dst + start * osz;
    const __m512 va = _mm512_set1_ps(a);
    if (four_bit) {
        const uint8_t *c = codes + start / 2;
        const __m512 tab = _mm512_loadu_ps(map);
        const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        for (int64_t k = 0; k < len; k += 32) {
            const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + k / 2)));
            const __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), tab), va);
            const __m512 lo =
                _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), tab), va);
            put32(_mm512_permutex2var_ps(hi, ilo, lo), _mm512_permutex2var_ps(hi, ihi, lo), out + k * osz, f16,
                  stream);
        }
        return;
    }
    const uint8_t *c = codes + start;
    for (int64_t k = 0; k < len; k += 32) {
        const __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + k)));
        const __m512i i1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + k + 16)));
        put32(_mm512_mul_ps(_mm512_i32gather_ps(i0, map, 4), va), _mm512_mul_ps(_mm512_i32gather_ps(i1, map, 4), va),
              out + k * osz, f16, stream);
    }
}
#endif

bnb_status bnb_quant_host_dequantize(const bnb_quant_layout *L, bnb_type qtype, const void *storage, void *dst,
                                     bnb_type dst_type, int n_threads,
                                     float *absmax_scratch) {
    const uint8_t *st = storage;
    const int64_t nblk = L->nblk, B = L->block, n = L->n;
    float *absmax_buf = NULL;
    const float *absmax = (const float *)(st + L->absmax);
    if (L->nested) {
        float *dstabs = absmax_scratch ? absmax_scratch : (absmax_buf = malloc((size_t)BNB_MAX(nblk, 1) * sizeof(float)));
        if (!dstabs) return bnb_fail(BNB_ERR_OOM, "dequantize: out of host memory");
        bnb_quant_unnest_absmax(L, st, dstabs);
        absmax = dstabs;
    }
    const float *map = L->four_bit ? (qtype == BNB_TYPE_Q4_NF4 ? bnb_nf4_values : bnb_fp4_values)
                                   : (const float *)(st + L->map);
    const int nt = threads_or_default(n_threads);
    const int osz = dst_type == BNB_TYPE_F32 ? 4 : 2;
    /* outputs much larger than the caches are written with streaming stores */
    const bool big_out = (size_t)n * (size_t)osz >= ((size_t)8 << 20);
    (void)big_out;
#pragma omp parallel num_threads(nt) if (nblk > 1)
    {
        float buf[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t start = b * B, len = BNB_MIN(B, n - start);
#ifdef BNB_Q_AVX512
            if (dst_type != BNB_TYPE_BF16 && len % 32 == 0) {
                char *o = (char *)dst + start * osz;
                dequant_block_direct(L->four_bit, map, st + L->codes, absmax[b], start, len, dst,
                                     dst_type == BNB_TYPE_F16, big_out && ((uintptr_t)o & 63) == 0);
                continue;
            }
#endif
            float *out = dst_type == BNB_TYPE_F32 ? (float *)dst + start : buf;
            bnb_quant_dequant_span(L->four_bit, map, st + L->codes, absmax[b], start, len, out);
            if (dst_type != BNB_TYPE_F32) store_block(out, len, dst, dst_type, start);
        }
#ifdef BNB_Q_AVX512
        _mm_sfence(); /* order this thread's streaming stores before the region's end */
#endif
    }
    free(absmax_buf);
    return BNB_OK;
}

/* ---------------------------------------------------------------- bnb_tensor_set_f32 / get_f32 */
static bnb_status host_map_for(const bnb_tensor *t, const float *src, float map[256]) {
    if (t->quant.map == BNB_QMAP_QUANTILE) /* a quantile map of the data being stored */
        return bnb_qmap_quantile(map, src, bnb_nelements(t), 1.0f / 512.0f);
    return bnb_qmap_fill((bnb_qmap)t->quant.map, map);
}

static bnb_status check_quant_tensor(const char *fn, const bnb_tensor *t) {
    if (!bnb_quant_is_blockwise(t->type))
        return bnb_fail(BNB_ERR_UNSUPPORTED, "%s: converting %s is not supported", fn, bnb_type_name(t->type));
    bool four = t->type == BNB_TYPE_Q4_NF4 || t->type == BNB_TYPE_Q4_FP4;
    if (!bnb_quant_block_ok(t->quant.block, four))
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: '%s' has block size %d (allowed: powers of two %d..4096)", fn,
                        t->name, t->quant.block, four ? 32 : 64);
    return BNB_OK;
}

bnb_status bnb_quant_host_from_f32(const bnb_tensor *t, const float *src, void *storage) {
    if (t->type == BNB_TYPE_I8_ROW) return bnb_int8_host_from_f32(t, src, storage); /* LLM.int8: src/ops/int8.c */
    bnb_status s = check_quant_tensor("bnb_tensor_set_f32", t);
    if (s != BNB_OK) return s;
    bnb_quant_layout L = bnb_quant_layout_of(t);
    float map[256];
    if (!L.four_bit) {
        /* non-finite data first, so a quantile map is never built from it */
        for (int64_t i = 0; i < L.n; i++)
            if (!isfinite(src[i]))
                return bnb_fail(BNB_ERR_NUMERIC, "bnb_tensor_set_f32: '%s': block %lld (element %lld) holds NaN or Inf",
                                t->name, (long long)(i / L.block), (long long)i);
        s = host_map_for(t, src, map);
        if (s != BNB_OK) return s;
    }
    s = bnb_quant_host_quantize(&L, t->type, map, src, BNB_TYPE_F32, storage, false, 0, 0, NULL);
    if (s != BNB_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", bnb_last_error());
        return bnb_fail(s, "bnb_tensor_set_f32: '%s': %s", t->name, msg);
    }
    return BNB_OK;
}

bnb_status bnb_quant_host_to_f32(const bnb_tensor *t, const void *storage, float *dst) {
    if (t->type == BNB_TYPE_I8_ROW) return bnb_int8_host_to_f32(t, storage, dst); /* LLM.int8: src/ops/int8.c */
    bnb_status s = check_quant_tensor("bnb_tensor_get_f32", t);
    if (s != BNB_OK) return s;
    bnb_quant_layout L = bnb_quant_layout_of(t);
    return bnb_quant_host_dequantize(&L, t->type, storage, dst, BNB_TYPE_F32, 0, NULL);
}

/* Reads the scales back (from any backend) and names the first non-finite block. */
bnb_status bnb_quant_check(const bnb_tensor *q) {
    if (!q || !q->data) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_quant_check: tensor is NULL or not allocated");
    if (!bnb_quant_is_blockwise(q->type))
        return bnb_fail(BNB_ERR_TYPE, "bnb_quant_check: %s is not a blockwise quantized type", bnb_type_name(q->type));
    bnb_quant_layout L = bnb_quant_layout_of(q);
    size_t off = L.nested ? L.absmax2 : L.absmax;
    int64_t cnt = L.nested ? L.nblk2 + 1 : L.nblk; /* nested: absmax2 and the mean */
    float *v = malloc((size_t)BNB_MAX(cnt, 1) * sizeof(float));
    if (!v) return bnb_fail(BNB_ERR_OOM, "bnb_quant_check: out of host memory");
    bnb_status s = bnb_tensor_get(q, v, off, (size_t)cnt * sizeof(float));
    for (int64_t b = 0; s == BNB_OK && b < cnt; b++) {
        if (!isfinite(v[b])) {
            int64_t first = L.nested ? (b < L.nblk2 ? b * BNB_NESTED_BLOCK * L.block : 0) : b * L.block;
            s = bnb_fail(BNB_ERR_NUMERIC, "bnb_quant_check: '%s': block %lld (from element %lld) held NaN or Inf",
                         q->name, (long long)(L.nested ? b * BNB_NESTED_BLOCK : b), (long long)first);
        }
    }
    free(v);
    return s;
}
