/* Blockwise quantize / dequantize on the host: the loops behind bnb_tensor_set_f32 / get_f32 of quantized tensors
 * and the CPU backend's quantization kernels (src/cpu/quant.c). OpenMP over blocks; AVX-512 for the 8-bit search
 * (the same 7-step search as bnb_qsearch, 16 lanes at a time, the map in L1 through gathers), the 4-bit encoders
 * and the dequantizers; scalar code elsewhere. */
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
    __m512 vm = _mm512_setzero_ps();
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    __mmask16 okm = 0xffff;
    for (; i + 16 <= len; i += 16) {
        __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        okm &= _mm512_cmp_ps_mask(a, big, _CMP_LE_OQ);
        vm = _mm512_max_ps(vm, a);
    }
    m = _mm512_reduce_max_ps(vm);
    ok = okm == 0xffff;
#endif
    for (; i < len; i++) {
        float a = fabsf(x[i]);
        if (!(a <= FLT_MAX)) ok = false;
        m = a > m ? a : m;
    }
    *finite = ok;
    return m;
}

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
} qsearch_tables;

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
    for (int i = 0; i < 128; i++) buf[i] = code[2 * i];
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
#endif

static void codes8_block(const float *map, const void *tables, const float *x, int64_t len, float inv, uint8_t *out,
                         bool stochastic, uint32_t seed, int64_t start) {
    int64_t i = 0;
    if (stochastic) {
        for (; i < len; i++) out[i] = (uint8_t)bnb_qsearch(map, x[i] * inv, bnb_qrand(seed, start + i), true);
        return;
    }
#ifdef BNB_Q_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; i + 16 <= len; i += 16)
        _mm_storeu_si128((__m128i *)(out + i),
                         qsearch16((const qsearch_tables *)tables, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)));
#else
    (void)tables;
#endif
    for (; i < len; i++) out[i] = (uint8_t)bnb_qsearch(map, x[i] * inv, 0.0f, false);
}

/* ---------------------------------------------------------------- 4-bit codes of one block (packed) */
#ifdef BNB_Q_AVX512
/* 16 codes of y (NF4 or FP4) as epi32 lanes */
static inline __m512i encode4_16(__m512 y, bool nf4) {
    static const float nf4_mid[15] = {-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f,
                                      -0.33967943489551544f, -0.23460740596055984f, -0.13791173323988914f,
                                      -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,
                                      0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
                                      0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};
    static const float fp4_mid[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                     0.4166667f, 0.583333f, 0.8333333f};
    const __m512i one = _mm512_set1_epi32(1);
    __m512i c = _mm512_setzero_si512();
    if (nf4) {
        for (int k = 0; k < 15; k++)
            c = _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(y, _mm512_set1_ps(nf4_mid[k]), _CMP_GT_OQ), c, one);
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
#endif

/* len values starting at an even element: bytes out[0 .. (len+1)/2) */
static void codes4_block(bool nf4, const float *x, int64_t len, float inv, uint8_t *out) {
    int64_t i = 0;
#ifdef BNB_Q_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; i + 32 <= len; i += 32) {
        __m512i c0 = encode4_16(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv), nf4);
        __m512i c1 = encode4_16(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vinv), nf4);
        /* pairs (2k, 2k+1): high nibble = even element */
        __m512i idx_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        __m512i idx_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        __m512i ev = _mm512_permutex2var_epi32(c0, idx_even, c1);
        __m512i od = _mm512_permutex2var_epi32(c0, idx_odd, c1);
        __m512i b = _mm512_or_si512(_mm512_slli_epi32(ev, 4), od);
        _mm_storeu_si128((__m128i *)(out + i / 2), _mm512_cvtepi32_epi8(b));
    }
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
    const int nt = threads_or_default(n_threads);
#pragma omp parallel num_threads(nt) if (nblk > 1)
    {
        float buf[4096];
        int64_t my_bad = INT64_MAX;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
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
            if (L->four_bit)
                codes4_block(nf4, x, len, inv, st + L->codes + start / 2);
            else
                codes8_block(map, tables, x, len, inv, st + L->codes + start, stochastic, seed, start);
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
#pragma omp parallel num_threads(nt) if (nblk > 1)
    {
        float buf[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t start = b * B, len = BNB_MIN(B, n - start);
            float *out = dst_type == BNB_TYPE_F32 ? (float *)dst + start : buf;
            bnb_quant_dequant_span(L->four_bit, map, st + L->codes, absmax[b], start, len, out);
            if (dst_type != BNB_TYPE_F32) store_block(out, len, dst, dst_type, start);
        }
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
