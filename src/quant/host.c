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

#include "host-codes.h" /* codes of one block: 8-bit search, 4-bit encode, blocks of 64 */

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
