/* Per-block code search of the host quantizer (included by host.c only): 8-bit nearest-code search (AVX-512
 * register tables / count search, scalar bnb_qsearch fallback), 4-bit NF4/FP4 encoding, and the pipelined
 * blocks-of-64 path. Split out of host.c to keep files readable; no separate translation unit. */
#ifndef BNB_QUANT_HOST_CODES_H
#define BNB_QUANT_HOST_CODES_H

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

/* count8_16 on 4 x 16 values, the four searches interleaved level by level: each search is a chain of 8 dependent
 * permute -> compare -> or steps, and two or four of them written one after another left the out-of-order window
 * holding about one chain at a time (latency-bound). Codes of y[u] to out + 16u. */
static inline __attribute__((always_inline)) void count8_4x(const qsearch_tables *T, const __m512 y[4], uint8_t *out) {
    __m512i idx[4];
    __mmask16 g5[4], g6[4];
    const __m512 t0 = _mm512_set1_ps(_mm512_cvtss_f32(T->cnt[0][0]));
    for (int u = 0; u < 4; u++) idx[u] = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(y[u], t0, _CMP_GT_OQ), _mm512_set1_epi32(1));
    for (int L = 1; L < 5; L++)
        for (int u = 0; u < 4; u++) {
            const __mmask16 g = _mm512_cmp_ps_mask(y[u], _mm512_permutexvar_ps(idx[u], T->cnt[L][0]), _CMP_GT_OQ);
            idx[u] = _mm512_mask_or_epi32(idx[u], g, idx[u], _mm512_set1_epi32(1 << L));
        }
    for (int u = 0; u < 4; u++) {
        g5[u] = _mm512_cmp_ps_mask(y[u], _mm512_permutex2var_ps(T->cnt[5][0], idx[u], T->cnt[5][1]), _CMP_GT_OQ);
        idx[u] = _mm512_mask_or_epi32(idx[u], g5[u], idx[u], _mm512_set1_epi32(32));
    }
    for (int u = 0; u < 4; u++) {
        const __m512 v6 = _mm512_mask_blend_ps(g5[u], _mm512_permutex2var_ps(T->cnt[6][0], idx[u], T->cnt[6][1]),
                                               _mm512_permutex2var_ps(T->cnt[6][2], idx[u], T->cnt[6][3]));
        g6[u] = _mm512_cmp_ps_mask(y[u], v6, _CMP_GT_OQ);
        idx[u] = _mm512_mask_or_epi32(idx[u], g6[u], idx[u], _mm512_set1_epi32(64));
    }
    for (int u = 0; u < 4; u++) {
        const __m512i i = idx[u];
        const __m512 v7 = _mm512_mask_blend_ps(
            g6[u],
            _mm512_mask_blend_ps(g5[u], _mm512_permutex2var_ps(T->cnt[7][0], i, T->cnt[7][1]),
                                 _mm512_permutex2var_ps(T->cnt[7][2], i, T->cnt[7][3])),
            _mm512_mask_blend_ps(g5[u], _mm512_permutex2var_ps(T->cnt[7][4], i, T->cnt[7][5]),
                                 _mm512_permutex2var_ps(T->cnt[7][6], i, T->cnt[7][7])));
        const __mmask16 g7 = _mm512_cmp_ps_mask(y[u], v7, _CMP_GT_OQ);
        idx[u] = _mm512_mask_or_epi32(i, g7, i, _mm512_set1_epi32(128));
    }
#if defined(__GFNI__)
    /* bytes 0..255: two saturating packs (exact) leave dword 4L + q = group q's values 4L..4L+3, one dword permute
     * restores the order, one affine op reverses every byte's bits */
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i pk = _mm512_packus_epi16(_mm512_packus_epi32(idx[0], idx[1]), _mm512_packus_epi32(idx[2], idx[3]));
    _mm512_storeu_si512(out, _mm512_gf2p8affine_epi64_epi8(_mm512_permutexvar_epi32(ord, pk),
                                                           _mm512_set1_epi64((long long)0x8040201008040201ull), 0));
#else
    const __m128i lut = _mm_setr_epi8(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15), lo = _mm_set1_epi8(15);
    for (int u = 0; u < 4; u++) {
        const __m128i rev = _mm512_cvtepi32_epi8(idx[u]);
        const __m128i a = _mm_shuffle_epi8(lut, _mm_and_si128(rev, lo));
        const __m128i b = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(rev, 4), lo));
        _mm_storeu_si128((__m128i *)(out + 16 * u), _mm_or_si128(_mm_slli_epi16(a, 4), b));
    }
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
        for (; i + 64 <= len; i += 64) { /* four searches interleaved */
            BNB_PREFETCH_AHEAD(pf, esz, i);
            BNB_PREFETCH_AHEAD(pf, esz, i + 32);
            const __m512 y[4] = {_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv), _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vinv),
                                 _mm512_mul_ps(_mm512_loadu_ps(x + i + 32), vinv), _mm512_mul_ps(_mm512_loadu_ps(x + i + 48), vinv)};
            count8_4x(T, y, out + i);
        }
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
            count8_4x(T, v, codes + b * 64);
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

#endif
