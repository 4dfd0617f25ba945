/* The 8-bit re-quantizer of the CPU optimizers by two byte-table levels (included by optim.c after optim-q8.h;
 * AVX-512 VBMI + GFNI builds, with the 16-bit-key count's tables, i.e. AMD by default). Same codes as
 * quant_word_quads, hence quant_qn / bnb_optim_quantize_code.
 * quant_word_quads finds c = #{j : K_j < wkey(y)} by an 8-level search and then code = c + (y > P_c). Here c (or c
 * minus the one threshold of a bucket that the final compare resolves) comes from byte tables, 64 values per
 * instruction: wkey(y) = coarse (high byte: sign and exponent) : mant (low byte: 8 mantissa bits, in key order).
 * Level 1, indexed by the coarse byte (128 entries: exponents 64..127 of both signs; smaller |y| are 'tiny' lanes,
 * counted in scalar, rare): a fine offset ob and a shift sb. Level 2, index fi = ob | (mant >> sb) (ob aligned to
 * the coarse bucket's 2^(8-sb) entries): F = the thresholds below the fine bucket, M = the low key byte of the lower
 * threshold if the fine bucket holds two, else 0xff. Each fine bucket holds at most two thresholds, so
 * c' = F + (mant > M) leaves at most one threshold of the bucket above c' that y may exceed, P_c', and
 * code = c' + (y > P_c'). The tables are built per update from the count thresholds (a few us); maps whose fine
 * buckets do not fit 256 entries keep the search. Per 64 values ~15 byte ops replace quant_word_quads' ~57 (two
 * 32-lane chains of 8 permute-compare-add levels plus the bit reversal). */
#ifndef BNB_CPU_OPTIM_Q8BKT_H
#define BNB_CPU_OPTIM_Q8BKT_H

#if defined(OPT8_AVX512) && defined(QV_REV) && defined(OPT8_VBMI)
struct q8bkt {
    _Alignas(64) uint8_t ob[128], sb[128]; /* level 1 by coarse & 127: c in [-128, -65] -> 0..63, [64, 127] -> 64.. */
    _Alignas(64) uint8_t F[256], M[256];   /* level 2 */
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

/* 256- or 128-entry byte table lookup */
static inline __m512i bkt_lookup(const uint8_t *t, __m512i i, bool big) {
    const __m512i a = _mm512_permutex2var_epi8(_mm512_load_si512(t), i, _mm512_load_si512(t + 64));
    if (!big) return a;
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(i), a,
                                  _mm512_permutex2var_epi8(_mm512_load_si512(t + 128), i, _mm512_load_si512(t + 192)));
}

/* nq quads (q8_quad) whose tables have bkt */
static inline __attribute__((always_inline)) void quant_bkt_quads(const int nq, const q8_quad *Q) {
    const __m512i sgn = _mm512_set1_epi32(0x7fffffff);
    /* byte 16L + 4q + r <- value 16q + 4L + r (plane_lookup64's order): its key is word 8L + 4(q & 1) + r of
     * kw[q >> 1], i.e. bytes 2w (mant) and 2w + 1 (coarse) of the pair (kw0, kw1) */
    _Alignas(64) static const uint8_t ilo[64] = {
        0,  2,  4,  6,  8,  10, 12, 14, 64, 66, 68, 70, 72, 74, 76, 78,  16, 18, 20, 22, 24, 26,
        28, 30, 80, 82, 84, 86, 88, 90, 92, 94, 32, 34, 36, 38, 40, 42,  44, 46, 96, 98, 100, 102,
        104, 106, 108, 110, 48, 50, 52, 54, 56, 58, 60, 62, 112, 114, 116, 118, 120, 122, 124, 126};
    const __m512i IL = _mm512_load_si512(ilo), IH = _mm512_add_epi8(IL, _mm512_set1_epi8(1));
    const __m512i laneoff = _mm512_set1_epi64(0x3830282018100800ll); /* 8 (j & 7) */
    const __m512i msktab = _mm512_set4_epi32(0, 0, 0x0103070f, 0x1f3f7fff); /* 0xff >> sb */
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _Pragma("GCC unroll 6")
    for (int q = 0; q < nq; q++) {
        const qvec_tables *T = Q[q].T;
        const struct q8bkt *B = T->bkt;
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512i k[4];
        __mmask16 sp[4];
        __m512 y[4];
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) {
            y[u] = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(Q[q].v + 16 * u), Q[q].am);
            sp[u] = _mm512_cmp_ps_mask(y[u], _mm512_setzero_ps(), _CMP_EQ_UQ); /* y == +-0 or NaN */
            const __m512i yb = _mm512_castps_si512(y[u]);
            k[u] = _mm512_srai_epi32(_mm512_ternarylogic_epi32(yb, _mm512_srai_epi32(yb, 31), sgn, 0x78), 15);
        }
        const __m512i kw0 = _mm512_packs_epi32(k[0], k[1]), kw1 = _mm512_packs_epi32(k[2], k[3]);
        const __m512i co = _mm512_permutex2var_epi8(kw0, IH, kw1), mt = _mm512_permutex2var_epi8(kw0, IL, kw1);
        const __mmask64 tiny = ~_mm512_movepi8_mask(_mm512_add_epi8(co, _mm512_set1_epi8(64)));
        const __m512i ob = _mm512_permutex2var_epi8(_mm512_load_si512(B->ob), co, _mm512_load_si512(B->ob + 64));
        const __m512i sb = _mm512_permutex2var_epi8(_mm512_load_si512(B->sb), co, _mm512_load_si512(B->sb + 64));
        const __m512i ms = _mm512_multishift_epi64_epi8(_mm512_add_epi8(sb, laneoff), mt);
        const __m512i fi = _mm512_ternarylogic_epi32(ob, ms, _mm512_shuffle_epi8(msktab, sb), 0xf8); /* ob|(ms&m) */
        const __m512i f = bkt_lookup(B->F, fi, B->big), m = bkt_lookup(B->M, fi, B->big);
        const __m512i c = _mm512_mask_sub_epi8(f, _mm512_cmpgt_epu8_mask(mt, m), f, _mm512_set1_epi8(-1));
        __m512 pc[4];
        plane_lookup64_t(T->wplane, c, pc);
        __mmask16 gt[4];
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) gt[u] = _mm512_cmp_ps_mask(y[u], pc[u], _CMP_GT_OQ);
        const __mmask64 g = _mm512_kunpackd(_mm512_kunpackw(gt[3], gt[2]), _mm512_kunpackw(gt[1], gt[0]));
        const __m512i cn = _mm512_permutexvar_epi32(ord, c);
        _mm512_storeu_si512(Q[q].out, _mm512_mask_sub_epi8(cn, g, cn, _mm512_set1_epi8(-1)));
        if ((sp[0] | sp[1] | sp[2] | sp[3]) || tiny) { /* rare: zero, NaN or |y| < 2^-63 */
            const float am = _mm512_cvtss_f32(Q[q].am);
            for (int u = 0; u < 4; u++)
                for (int i = 0; i < 16; i++)
                    if ((sp[u] >> i) & 1) Q[q].out[16 * u + i] = bkt_scalar(T, B, Q[q].v[16 * u + i], am);
            for (int p = 0; p < 64; p++)
                if ((tiny >> p) & 1) {
                    const int i = 16 * ((p >> 2) & 3) + 4 * (p >> 4) + (p & 3);
                    Q[q].out[i] = bkt_scalar(T, B, Q[q].v[i], am);
                }
        }
    }
}
#endif

#endif
