/* The 8-bit re-quantizer of the CPU optimizers by two byte-table levels (included by optim.c after optim-q8.h;
 * AVX-512 VBMI + GFNI builds, with the 16-bit-key count's tables, i.e. wherever the plane lookups are on). Same
 * codes as quant_word_quads, hence quant_qn / bnb_optim_quantize_code.
 * quant_word_quads finds c = #{j : K_j < wkey(y)} by an 8-level search and then code = c + (y > P_c). Here c (or c
 * minus the one threshold of a bucket that the final compare resolves) comes from byte tables, 64 values per
 * instruction: wkey(y) = coarse (high byte: sign and exponent) : mant (low byte: 8 mantissa bits, in key order).
 * Level 1, indexed by the coarse byte (128 entries: exponents 64..127 of both signs; smaller |y| are 'tiny' lanes,
 * counted in scalar, rare): a fine offset ob and a shift sb. Level 2, index fi = ob | (mant >> sb) (ob aligned to
 * the coarse bucket's 2^(8-sb) entries): F = the thresholds below the fine bucket, M = the low key byte of the lower
 * threshold if the fine bucket holds two, else 0xff. Each fine bucket holds at most two thresholds, so
 * c' = F + (mant > M) leaves at most one threshold of the bucket above c' that y may exceed, P_c', and
 * code = c' + (y > P_c'), that compare on three bytes of the order-preserving ints (see quant_bkt_quads). The
 * tables are built per update from the count thresholds (a few us); maps whose fine buckets do not fit 256 entries
 * keep the search. Per 64 values ~45 ops, ~20 of them byte permutes, replace quant_word_quads' ~113 (two 32-lane
 * chains of 8 permute-compare-add levels, the bit reversal, a 4-plane float lookup and 8 unpacks). */
#ifndef BNB_CPU_OPTIM_Q8BKT_H
#define BNB_CPU_OPTIM_Q8BKT_H

#if defined(OPT8_AVX512) && defined(QV_REV) && defined(OPT8_VBMI)
struct q8bkt {
    _Alignas(64) uint8_t ob[128], sb[128]; /* level 1 by coarse & 127: c in [-128, -65] -> 0..63, [64, 127] -> 64.. */
    _Alignas(64) uint8_t F[256], M[256];   /* level 2 */
    _Alignas(64) uint8_t pk[3][256];       /* bits 30..23, 22..15, 14..7 of P_c's order-preserving int */
    float P[256];                          /* the thresholds (P_255 = +inf), for the scalar lanes */
    bool big;                              /* level 2 uses more than 128 entries */
};

/* thresholds' 16-bit keys as ints, +-inf outside every bucket */
static inline int32_t bkt_key(float p) { return isinf(p) ? (p > 0 ? 1 << 20 : -(1 << 20)) : (int32_t)wkey_of(p); }

static bool q8bkt_build(const qvec_tables *T, struct q8bkt *B) {
    if (!T->wcount) return false;
    float *P = B->P;
    for (int s = 0; s < 8; s++) /* every P_j is the pivot of exactly one level (as qvec_word_build) */
        for (int b = 0; b < (1 << s); b++) {
            int pos = 0;
            for (int k = 0; k < s; k++) pos |= ((b >> k) & 1) << (s - 1 - k);
            P[b * (256 >> s) + (128 >> s) - 1] = T->clvl[s][pos];
        }
    P[255] = INFINITY;
    int32_t K[255];
    for (int j = 0; j < 255; j++) K[j] = bkt_key(P[j]); /* increasing for finite P (qvec_word_build checked) */
    for (int j = 0; j < 256; j++) {
        int32_t o;
        memcpy(&o, &P[j], 4);
        o ^= (o >> 31) & 0x7fffffff;
        for (int b = 0; b < 3; b++) B->pk[b][j] = (uint8_t)(o >> (23 - 8 * b));
    }
    int size[128], sbv[128], first[128], cnt[128];
    int total = 0;
    for (int i = 0; i < 128; i++) {
        const int c = i < 64 ? i - 128 : i; /* coarse byte of bucket i, in key order */
        first[i] = 0;
        while (first[i] < 255 && K[first[i]] < c * 256) first[i]++;
        cnt[i] = 0;
        while (first[i] + cnt[i] < 255 && K[first[i] + cnt[i]] < (c + 1) * 256) cnt[i]++;
        int sb = 8;
        for (; sb > 0; sb--) { /* the coarsest split with <= 2 thresholds per fine bucket */
            int most = 0, run = 0;
            for (int t = 0; t < cnt[i]; t++) {
                const int f = (K[first[i] + t] & 255) >> sb;
                run = (t > 0 && f == ((K[first[i] + t - 1] & 255) >> sb)) ? run + 1 : 1;
                most = run > most ? run : most;
            }
            if (most <= 2) break;
        }
        sbv[i] = sb, size[i] = 256 >> sb;
        if (cnt[i] > 0) total += size[i];
    }
    /* offsets: non-empty buckets by size, largest first (each aligned to its size), then one entry per run of empty
     * buckets with the same count below */
    int off = 0;
    for (int sz = 256; sz >= 1; sz >>= 1)
        for (int i = 0; i < 128; i++)
            if (cnt[i] > 0 && size[i] == sz) B->ob[i] = (uint8_t)off, off += sz;
    for (int i = 0; i < 128; i++) {
        if (cnt[i] > 0) continue;
        int prev = -1;
        for (int h = i - 1; h >= 0 && prev < 0; h--)
            if (cnt[h] == 0 && first[h] == first[i]) prev = h;
        if (prev >= 0) {
            B->ob[i] = B->ob[prev];
        } else {
            if (off >= 256) return false;
            B->ob[i] = (uint8_t)off++;
        }
    }
    if (off > 256) return false;
    B->big = off > 128;
    memset(B->F, 0, sizeof B->F);
    memset(B->M, 0xff, sizeof B->M);
    for (int i = 0; i < 128; i++) {
        B->sb[i] = (uint8_t)(cnt[i] > 0 ? sbv[i] : 8);
        const int nf = cnt[i] > 0 ? size[i] : 1;
        for (int f = 0; f < nf; f++) {
            int in = 0, j1 = -1, below = first[i];
            for (int t = 0; t < cnt[i]; t++) {
                const int ft = (K[first[i] + t] & 255) >> B->sb[i];
                below += ft < f;
                if (ft == f && in++ == 0) j1 = first[i] + t;
            }
            if (in > 2) return false;
            B->F[B->ob[i] + f] = (uint8_t)below;
            if (in == 2) B->M[B->ob[i] + f] = (uint8_t)(K[j1] & 255);
        }
    }
    return true;
}

/* one lane's code in scalar: y = +-0 / NaN by the count form's fix-up, else #{P_j < y} */
static inline uint8_t bkt_scalar(const qvec_tables *T, const struct q8bkt *B, float vv, float am) {
    const float yv = am > 0.f ? vv / am : 0.f;
    if (yv == 0.f || isnan(yv)) return (uint8_t)T->fix[isnan(yv) ? 1 : 0][vv > 0.f ? 0 : (vv < 0.f ? 1 : 2)];
    int lo = 0, hi = 255; /* first j with !(P_j < y); P_255 = +inf */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (B->P[mid] < yv)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint8_t)lo;
}

/* 256-entry byte table lookup of 64 indices whose bit 7 is hi */
static inline __m512i bkt_lookup256(const uint8_t *t, __m512i i, __mmask64 hi) {
    return _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(_mm512_load_si512(t), i, _mm512_load_si512(t + 64)),
                                  _mm512_permutex2var_epi8(_mm512_load_si512(t + 128), i, _mm512_load_si512(t + 192)));
}

/* nq quads (q8_quad) whose tables have bkt. The final compare y > P_c' in bytes: bits 30..23 (sign and exponent),
 * 22..15 and 14..7 of the order-preserving ints of y and P_c'. P_c' is y's fine bucket's threshold or the first one
 * above the bucket, so equal first bytes (same sign and binade) leave a lexicographic compare of the next two, and
 * different first bytes mean P_c' > y. Lanes equal in all three bytes (rare) are redone in scalar. */
static inline __attribute__((always_inline)) void quant_bkt_quads(const int nq, const q8_quad *Q) {
    const __m512i sgn = _mm512_set1_epi32(0x7fffffff);
    /* byte 16L + 4q + r <- value 16q + 4L + r (plane_lookup64's order): byte 3 of dword 4L + r of w[q], as byte
     * 64 (q & 1) + 16L + 4r + 3 of the pair (w[q & 2], w[(q & 2) + 1]) */
    _Alignas(64) static const uint8_t i3[64] = {
        3,  7,  11, 15, 67, 71, 75, 79, 3,  7,  11, 15, 67, 71, 75, 79,  19, 23, 27, 31, 83, 87,
        91, 95, 19, 23, 27, 31, 83, 87, 91, 95, 35, 39, 43, 47, 99, 103, 107, 111, 35, 39, 43, 47,
        99, 103, 107, 111, 51, 55, 59, 63, 115, 119, 123, 127, 51, 55, 59, 63, 115, 119, 123, 127};
    const __mmask64 q23 = 0xff00ff00ff00ff00ull; /* bytes of values 32..63 */
    const __m512i I3 = _mm512_load_si512(i3), I2 = _mm512_sub_epi8(I3, _mm512_set1_epi8(1)),
                  I1 = _mm512_sub_epi8(I3, _mm512_set1_epi8(2));
    const __m512i laneoff = _mm512_set1_epi64(0x3830282018100800ll); /* 8 (j & 7) */
    const __m512i msktab = _mm512_set4_epi32(0, 0, 0x0103070f, 0x1f3f7fff); /* 0xff >> sb */
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _Pragma("GCC unroll 6")
    for (int q = 0; q < nq; q++) {
        const qvec_tables *T = Q[q].T;
        const struct q8bkt *B = T->bkt;
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512i w[4];
        __mmask16 spm[4];
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) {
            const __m512 y = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(Q[q].v + 16 * u), Q[q].am);
            spm[u] = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_EQ_UQ); /* y == +-0 or NaN */
            const __m512i yb = _mm512_castps_si512(y);
            /* the order-preserving int (yb ^ (sign ? 0x7fffffff : 0)) << 1: bytes 3, 2, 1 = its bits 30..7 */
            w[u] = _mm512_slli_epi32(_mm512_ternarylogic_epi32(yb, _mm512_srai_epi32(yb, 31), sgn, 0x78), 1);
        }
#define BKT_BYTE(I)                                                                                                  \
    _mm512_mask_blend_epi8(q23, _mm512_permutex2var_epi8(w[0], (I), w[1]), _mm512_permutex2var_epi8(w[2], (I), w[3]))
        const __m512i co = BKT_BYTE(I3), mt = BKT_BYTE(I2), nb = BKT_BYTE(I1);
#undef BKT_BYTE
        const __mmask64 tiny = ~_mm512_movepi8_mask(_mm512_add_epi8(co, _mm512_set1_epi8(64))); /* |y| < 2^-63 */
        const __m512i ob = _mm512_permutex2var_epi8(_mm512_load_si512(B->ob), co, _mm512_load_si512(B->ob + 64));
        const __m512i sb = _mm512_permutex2var_epi8(_mm512_load_si512(B->sb), co, _mm512_load_si512(B->sb + 64));
        const __m512i ms = _mm512_multishift_epi64_epi8(_mm512_add_epi8(sb, laneoff), mt);
        const __m512i fi = _mm512_ternarylogic_epi32(ob, ms, _mm512_shuffle_epi8(msktab, sb), 0xf8); /* ob|(ms&m) */
        __m512i f, m;
        if (B->big) {
            const __mmask64 hi = _mm512_movepi8_mask(fi);
            f = bkt_lookup256(B->F, fi, hi), m = bkt_lookup256(B->M, fi, hi);
        } else {
            f = _mm512_permutex2var_epi8(_mm512_load_si512(B->F), fi, _mm512_load_si512(B->F + 64));
            m = _mm512_permutex2var_epi8(_mm512_load_si512(B->M), fi, _mm512_load_si512(B->M + 64));
        }
        const __m512i c = _mm512_mask_sub_epi8(f, _mm512_cmpgt_epu8_mask(mt, m), f, _mm512_set1_epi8(-1));
        /* y > P_c' by bytes */
        const __mmask64 chi = _mm512_movepi8_mask(c);
        const __m512i pc = bkt_lookup256(B->pk[0], c, chi), pm = bkt_lookup256(B->pk[1], c, chi),
                      pn = bkt_lookup256(B->pk[2], c, chi);
        const __mmask64 eqc = _mm512_cmpeq_epi8_mask(co, pc), eqm = _mm512_mask_cmpeq_epi8_mask(eqc, mt, pm);
        const __mmask64 gt = _mm512_mask_cmpgt_epu8_mask(eqc, mt, pm) | _mm512_mask_cmpgt_epu8_mask(eqm, nb, pn);
        const __mmask64 tie = _mm512_mask_cmpeq_epi8_mask(eqm, nb, pn);
        const __m512i cn = _mm512_mask_sub_epi8(c, gt, c, _mm512_set1_epi8(-1));
        _mm512_storeu_si512(Q[q].out, _mm512_permutexvar_epi32(ord, cn));
        const __mmask64 slow = tiny | tie;
        if ((spm[0] | spm[1] | spm[2] | spm[3]) || slow) { /* rare: zero, NaN, |y| < 2^-63, or y and P_c' equal in bits 31..7 */
            const float am = _mm512_cvtss_f32(Q[q].am);
            for (int p = 0; p < 64; p++) {
                const int i = 16 * ((p >> 2) & 3) + 4 * (p >> 4) + (p & 3);
                if (((slow >> p) & 1) || ((spm[i >> 4] >> (i & 15)) & 1)) Q[q].out[i] = bkt_scalar(T, B, Q[q].v[i], am);
            }
        }
    }
}
#endif

#endif
