/* The 8-bit re-quantizer of the CPU optimizers as a direct table (included by optim.c after optim-q8.h; AVX-512).
 * The count form (quant_qn_count) gives code = #{j : P_j < y} over the 255 sorted thresholds P_j for y != +-0 and
 * not NaN. Here that count comes from one gathered table entry per value instead of an 8-level search:
 * buckets by y's float bits (sign, and |y|'s bits >> 16: 7 mantissa bits, QT8_E binades below 1; |y| < 2^-QT8_E
 * shares the lowest bucket of its sign), each entry holding a = the number of thresholds below the bucket and, if
 * the bucket holds exactly one threshold P, the low 16 bits of P's order-preserving key. Two floats of one bucket
 * differ only in those low bits (their keys share the high bits), so P < y is low16(key P) < low16(key y), and the
 * entry stores (a << 16) | (0xffff - low16(key P)): code = (entry + low16(key y)) >> 16, the carry is the compare.
 * Buckets with two or more thresholds, or the merged lowest bucket with one, are flagged (bit 31) and their lanes
 * take a scalar count (rare); y = +-0 / NaN keep the count form's fix-up. Codes are identical to the count form,
 * hence to quant_qn and bnb_optim_quantize_code. Per 16 values: the division, ~12 integer ops and one gather (a
 * 24 KB table, of which a block touches a few binades) instead of ~34 ops (8 dependent permute-compare levels). */
#ifndef BNB_CPU_OPTIM_Q8TAB_H
#define BNB_CPU_OPTIM_Q8TAB_H

#ifdef OPT8_AVX512
#define QT8_SH 16                                /* key bits inside a bucket */
#define QT8_E 24                                 /* binades below 1 with their own buckets */
#define QT8_KLO ((127 - QT8_E) << 23)            /* |y|'s bits below this share the lowest bucket */
#define QT8_MLO (QT8_KLO >> QT8_SH)              /* lowest magnitude bucket */
#define QT8_MHI (0x3f800000 >> QT8_SH)           /* bucket of 1.0 (|y| <= 1: the block's absmax) */
#define QT8_NM (QT8_MHI - QT8_MLO + 1)           /* buckets per sign */
#define QT8_SLOW 0x80000000u
/* Tensors below this many elements keep the search (the table build, ~6K entries, would not pay off). */
#define QT8_MIN_N 65536

struct q8tab {
    /* entry of signed gather index i at ent[QT8_NM + i]: positive y, bucket m: i = m - QT8_MLO; negative y: i =
     * QT8_MLO - m - 1. Stored minus i << 16 (see quant_tab_quads). */
    uint32_t ent[2 * QT8_NM];
    bool rcp; /* y by reciprocal + residual step (see quant_tab_quads), else the division */
};

/* Whether to use the table: on for Intel hosts, off elsewhere (BNB_OPT8_TAB=1 / =0 force it). On Zen 5 it is slower than the search
 * (a 16-lane gather is microcoded on AMD, ~18 cycles; the reason the dequantize uses byte planes there): 2 threads,
 * 16M, gathers for the dequantize as on Intel, Adam8 27-28 -> 32 ms, AdEMAMix8 39 -> 47.6 ms. On Intel (Ice Lake /
 * Sapphire Rapids) a gather is a few uops plus 16 loads on otherwise idle load ports, while the search is ~20 uops
 * per 16 values on port 5 (its permutes and every compare into a mask): predicted faster there (~8 vs ~20 cycles per
 * 16 values and state). Measured on the GPU host's Xeon (2 threads, 16M, bench-optim --cpu-only, 2 alternating rounds,
 * table + reciprocal divisions vs default): Adam8 27.5 / 21.7 vs 29.2 / 25.9 ms, Lion8 16.9 / 10.9 vs 17.8 / 15.6,
 * AdEMAMix8 40.5 / 24.2 vs 31.1 / 30.1 (noisy; AdEMAMix mixed). */
static bool q8tab_default(void) {
    const char *e = getenv("BNB_OPT8_TAB");
    if (e && *e) return strcmp(e, "1") == 0;
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_is("intel"); /* Xeon of the GPU host: faster (2 of 2 rounds); Zen 5: slower (gathers) */
#else
    return false;
#endif
}

/* order-preserving int key of a float (-0 just below +0) */
static inline int32_t qt8_key(float x) {
    int32_t k;
    memcpy(&k, &x, 4);
    return k ^ ((k >> 31) & 0x7fffffff);
}

static inline uint32_t qt8_entry(const int32_t *K, int *j, int32_t klo, int32_t khi, bool merged) {
    while (*j < 255 && K[*j] < klo) (*j)++;
    int h = 0;
    while (*j + h < 255 && K[*j + h] <= khi) h++;
    uint32_t e = (uint32_t)*j << 16;
    if (h >= 2 || (merged && h == 1)) return e | QT8_SLOW;
    return h == 1 ? e | (0xffffu - ((uint32_t)K[*j] & 0xffffu)) : e;
}

/* The table of a map with count tables (T->counted); false if the thresholds are not sorted or a bucket holds two
 * or more (the merged lowest bucket one or more): such maps keep the search. ~6K entries by two merges over the
 * thresholds' keys. */
static bool q8tab_build(const qvec_tables *T, struct q8tab *Q) {
    if (!T->counted) return false;
    float P[255];
    for (int s = 0; s < 8; s++) /* every P_j, j < 255, is the pivot of exactly one level (build_levels' order) */
        for (int b = 0; b < (1 << s); b++) {
            int pos = b;
#ifdef QV_REV
            pos = 0;
            for (int k = 0; k < s; k++) pos |= ((b >> k) & 1) << (s - 1 - k);
#endif
            P[b * (256 >> s) + (128 >> s) - 1] = T->clvl[s][pos];
        }
    int32_t K[255];
    for (int j = 0; j < 255; j++) {
        if (isnan(P[j]) || (j > 0 && !(P[j - 1] <= P[j]))) return false;
        K[j] = qt8_key(P[j]);
        if (j > 0 && K[j] < K[j - 1]) return false; /* -0 after +0 */
    }
    /* positive y, bucket m: keys [m << 16, (m + 1) << 16) (the lowest from 0); negative y, bucket m: keys
     * [-((m + 1) << 16), -(m << 16)) (key(-x) = -1 - bits(x)); both sides walked in increasing key order */
    int j = 0;
    for (int m = QT8_MHI; m >= QT8_MLO; m--) {
        const uint32_t e = qt8_entry(K, &j, -((m + 1) << QT8_SH), -(m << QT8_SH) - 1, m == QT8_MLO);
        const int32_t i = QT8_MLO - m - 1;
        if (e & QT8_SLOW) return false;
        Q->ent[QT8_NM + i] = e - ((uint32_t)i << QT8_SH);
    }
    j = 0;
    for (int m = QT8_MLO; m <= QT8_MHI; m++) {
        const uint32_t e = qt8_entry(K, &j, m == QT8_MLO ? 0 : m << QT8_SH, ((m + 1) << QT8_SH) - 1, m == QT8_MLO);
        const int32_t i = m - QT8_MLO;
        if (e & QT8_SLOW) return false;
        Q->ent[QT8_NM + i] = e - ((uint32_t)i << QT8_SH);
    }
    return true;
}

/* Codes of nq quads (q8_quad: 64 values of one state, its tables, absmax and output) with table entries.
 * Per 16 values: y (three multiply-adds with rcp, see below), t = |y|'s bits - bits(2^-QT8_E) (one and, one sub),
 * one unsigned compare that finds every lane outside 2^-QT8_E <= |y| <= 1 (tiny, zero, NaN: rare, redone below),
 * kc = t for y > 0, ~t for y < 0 (the order-preserving key relative to the lowest bucket: srai + xor), the gather
 * at kc >> 16 and code = (entry + kc) >> 16: entries are stored minus (index << 16), so the sum is the stored
 * count a << 16 plus, for a bucket with one threshold P, (0xffff - low16(key P)) + low16(key y), whose carry is
 * P < y. */
static inline __attribute__((always_inline)) void quant_tab_quads(const int nq, const q8_quad *Q) {
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), klo = _mm512_set1_epi32(QT8_KLO);
    const __m512i span = _mm512_set1_epi32(0x3f800000 - QT8_KLO);
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _Pragma("GCC unroll 6")
    for (int q = 0; q < nq; q++) {
        const qvec_tables *T = Q[q].T;
        const void *base = (const void *)(T->tab->ent + QT8_NM);
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        /* y = v / am correctly rounded from the correctly rounded reciprocal and one residual step (Markstein; the
         * CUDA kernel's scheme, exact for am and v in [2^-90, 2^90] with |v| <= am): no divider use, which on Intel
         * takes ~10 cycles per 16 lanes. With am in [2^-60, 2^60] it is exact for |y| >= 2^-24 (|v| >= 2^-84);
         * lanes below (tiny, zero) are outside the compare's range and redone with the IEEE division. Other absmax
         * values: the division for all lanes. */
        const float amf = _mm512_cvtss_f32(Q[q].am);
        const bool rcp = T->tab->rcp && amf >= 0x1p-60f && amf <= 0x1p60f;
        const __m512 r = _mm512_set1_ps(1.f / (rcp ? amf : 1.f));
        __m512i cs[4];
        __mmask16 ok = 0xffff;
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) {
            const __m512 v = _mm512_loadu_ps(Q[q].v + 16 * u);
            __m512 y;
            if (rcp) {
                const __m512 qt = _mm512_mul_ps(v, r);
                y = _mm512_fmadd_ps(_mm512_fnmadd_ps(qt, Q[q].am, v), r, qt);
            } else {
                y = _mm512_maskz_div_ps(amp, v, Q[q].am);
            }
            const __m512i yb = _mm512_castps_si512(y);
            const __m512i t = _mm512_sub_epi32(_mm512_and_si512(yb, abs), klo);
            const __mmask16 in = _mm512_cmple_epu32_mask(t, span); /* 2^-24 <= |y| <= 1 */
            ok &= in;
            const __m512i kc = _mm512_xor_si512(t, _mm512_srai_epi32(yb, 31));
            const __m512i e = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), in, _mm512_srai_epi32(kc, QT8_SH),
                                                          base, 4);
            cs[u] = _mm512_srli_epi32(_mm512_add_epi32(e, kc), QT8_SH);
        }
        if (ok != 0xffff) { /* rare: tiny, zero or non-finite values; the 64 values again with the division */
            _Pragma("GCC unroll 4")
            for (int u = 0; u < 4; u++) {
                const __m512 vu = _mm512_loadu_ps(Q[q].v + 16 * u);
                const __m512 y = _mm512_maskz_div_ps(amp, vu, Q[q].am);
                const __m512i yb = _mm512_castps_si512(y);
                const __mmask16 sp = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_EQ_UQ); /* +-0 or NaN */
                /* tiny |y| in the lowest bucket of its sign */
                const __m512i t = _mm512_max_epi32(_mm512_sub_epi32(_mm512_and_si512(yb, abs), klo),
                                                   _mm512_setzero_si512());
                const __m512i kc = _mm512_xor_si512(t, _mm512_srai_epi32(yb, 31));
                const __m512i e = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), (__mmask16)~sp,
                                                              _mm512_srai_epi32(kc, QT8_SH), base, 4);
                cs[u] = _mm512_srli_epi32(_mm512_add_epi32(e, kc), QT8_SH);
                const __mmask16 vpos = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_GT_OQ);
                const __mmask16 vneg = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_LT_OQ);
                const __mmask16 nan = _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), zer = sp & ~nan;
                const __mmask16 cls[3] = {vpos, vneg, (__mmask16)~(vpos | vneg)};
                for (int k = 0; k < 3; k++) {
                    cs[u] = _mm512_mask_mov_epi32(cs[u], zer & cls[k], _mm512_set1_epi32(T->fix[0][k]));
                    cs[u] = _mm512_mask_mov_epi32(cs[u], nan & cls[k], _mm512_set1_epi32(T->fix[1][k]));
                }
            }
        }
        const __m512i pk = _mm512_packus_epi16(_mm512_packus_epi32(cs[0], cs[1]), _mm512_packus_epi32(cs[2], cs[3]));
        _mm512_storeu_si512(Q[q].out, _mm512_permutexvar_epi32(ord, pk));
    }
}
#endif /* OPT8_AVX512 */

#endif
