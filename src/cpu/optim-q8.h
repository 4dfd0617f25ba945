/* The 8-bit re-quantizer of the CPU optimizers (included by optim.c only; no separate translation unit): the scalar
 * table search (quant_table), then on 16 lanes register-table search tables, byte-plane map lookups (VBMI) and
 * quant_qn. Codes identical to quantize_code_table / bnb_optim_quantize_code. Split out to keep optim.c readable. */
#ifndef BNB_CPU_OPTIM_Q8_H
#define BNB_CPU_OPTIM_Q8_H

/* Nearest-code search without a binary search: the lower bound of y starts from a table indexed by the top bits of
 * |y| (exponent + 4 mantissa bits: buckets 6% wide, which hold at most a couple of dynamic-map values), then steps
 * up while map[i] < y. It finds the same lower bound as bnb_optim_quantize_code's halving search, and the same final
 * arithmetic follows, so the codes are identical. */
#define QT_N 2048
typedef struct {
    uint8_t pos[QT_N], neg[QT_N];
} quant_table;

static float bucket_edge(uint32_t k) {
    uint32_t b = k << 19;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Two merges over the sorted map: O(QT_N + 256). */
static void quant_table_build(const float *map, quant_table *t) {
    int c = 0;
    for (uint32_t k = 0; k < QT_N; k++) {
        float lo = bucket_edge(k);
        while (c < 256 && map[c] < lo) c++;
        t->pos[k] = (uint8_t)BNB_MIN(c, 255);
    }
    c = 0;
    for (int k = QT_N - 1; k >= 0; k--) {
        float nhi = -bucket_edge((uint32_t)k + 1);
        while (c < 256 && map[c] < nhi) c++;
        t->neg[k] = (uint8_t)BNB_MIN(c, 255);
    }
}

static inline int quantize_code_table(const float *map, const quant_table *t, float y, float value) {
    uint32_t b;
    memcpy(&b, &y, 4);
    uint32_t k = (b & 0x7fffffffu) >> 19;
    if (k >= QT_N) k = QT_N - 1;
    int i = (b >> 31) ? t->neg[k] : t->pos[k];
    while (i < 255 && map[i] < y) i++;
    return bnb_optim_code_near(map, i, y, value);
}

#ifdef OPT8_AVX512
/* The same search 16 lanes at a time, without a binary search in memory: level s of the 8 halving steps compares y
 * with map[b * (256 >> s) + (128 >> s) - 1], b = the s comparison bits so far, so each level is a register-table
 * lookup (permutexvar / permutex2var) of that level's 2^s pivots. After level 7, i = 2b + gt; map[i] and map[lo] are
 * the level-7 pivot map[2b] and one gathered neighbour; then the same nearest-code arithmetic. For a nondecreasing,
 * NaN-free map, "map[c] < 0" is "c < nneg" (the count of negative codes), which gives the sign rule without lookups.
 * Codes are identical to quantize_code_table / bnb_optim_quantize_code. */
typedef struct {
    _Alignas(64) float lvl[8][128]; /* level s: 2^s pivots (padded with zeros to 16) */
    int nneg;
    int nneg_dec, nneg_inc; /* the sign rule's compares folded: c == nneg_dec (never if nneg = 0), c < min(nneg, 255) */
    bool ok; /* map nondecreasing and NaN-free: the vector path applies */
    _Alignas(64) uint8_t plane[4][256]; /* byte k of map[j] at plane[k][j] (deq64) */
    _Alignas(64) uint8_t plane7[4][128]; /* the same for lvl[7] */
    bool planes; /* map lookups by plane_lookup64 instead of gathers (see planes_default) */
    /* quant_qn_count: the same codes as an 8-level count over 255 thresholds (qvec_count_build) */
    bool counted;
    _Alignas(64) float clvl[8][128];     /* as lvl, with the thresholds in place of the map values */
    _Alignas(64) uint8_t cplane7[4][128]; /* byte planes of clvl[7] */
    int32_t fix[2][3]; /* codes of y = +-0 (fix[0]) and NaN y (fix[1]) for a value > 0, < 0, other */
    /* quant_word_quads: the count over 16-bit keys of the thresholds (qvec_word_build) */
    bool wcount;
    _Alignas(64) int16_t wl[8][128];      /* as clvl, the thresholds' keys (wkey) */
    _Alignas(64) uint8_t wplane[4][256];  /* byte planes of the thresholds P_0 .. P_254, P_255 = +inf */
    const struct q8tab *tab; /* quant_tab_quads' table (optim-q8tab.h), NULL if not built */
    const struct q8bkt *bkt; /* quant_bkt_quads' tables (optim-q8bkt.h), NULL if not built */
} qvec_tables;

#ifdef OPT8_VBMI
/* Plane lookups (VBMI) or gathers. AMD (Zen 4/5): a 16-lane gather is microcoded (~16 cycles), planes measured ~30%
 * faster on Zen 5 (Adam8 / Lion8 / AdEMAMix8). Intel: alone, the two measured within the run-to-run noise on the GPU
 * machine's Xeon (the update is bound by port 5, which takes every vpermt2b), but the planes also switch on the
 * 16-bit-key count and the byte-table re-quantizer (optim-q8bkt.h), and with them the Xeon (VBMI, 2 threads, 16M,
 * two runs each) took Adam8 23.3-23.6 ms vs 24.1-26.3, Lion8 11.6-11.7 vs 11.7-16.9, AdEMAMix8 28.4-30.1 vs
 * 30.2-38.2: planes wherever VBMI is compiled in. BNB_OPT8_LOOKUP=planes|gather overrides (codes are identical). */
static bool planes_default(void) {
    const char *e = getenv("BNB_OPT8_LOOKUP");
    if (e && !strcmp(e, "gather")) return false;
    return true;
}
#endif

/* The 8 halving levels of a sorted array of 256 (level s: its 2^s pivots; the search's order) and the byte planes of
 * level 7: the map values (lvl / plane7) or the count thresholds (clvl / cplane7). */
static void build_levels(const float *src, float lvl[8][128], uint8_t plane7[4][128]) {
    for (int s = 0; s < 8; s++)
        for (int b = 0; b < (1 << s); b++) {
            int pos = b;
#ifdef QV_REV
            pos = 0; /* the s bits of b reversed (see quant16) */
            for (int k = 0; k < s; k++) pos |= ((b >> k) & 1) << (s - 1 - k);
#endif
            lvl[s][pos] = src[b * (256 >> s) + (128 >> s) - 1];
        }
    for (int j = 0; j < 128; j++) {
        uint32_t u;
        memcpy(&u, &lvl[7][j], 4);
        for (int k = 0; k < 4; k++) plane7[k][j] = (uint8_t)(u >> (8 * k));
    }
}

static void qvec_tables_build(const float *map, qvec_tables *T) {
    memset(T, 0, sizeof *T);
    T->ok = !isnan(map[0]);
    for (int k = 1; k < 256; k++) T->ok = T->ok && map[k - 1] <= map[k];
    for (int k = 0; k < 256; k++) T->nneg += map[k] < 0.f;
#ifdef OPT8_VBMI
    T->planes = planes_default();
#endif
    for (int j = 0; j < 256; j++) {
        uint32_t u;
        memcpy(&u, &map[j], 4);
        for (int k = 0; k < 4; k++) T->plane[k][j] = (uint8_t)(u >> (8 * k));
    }
    T->nneg_dec = T->nneg > 0 ? T->nneg : -1;
    T->nneg_inc = BNB_MIN(T->nneg, 255);
    build_levels(map, T->lvl, T->plane7);
}

#ifdef OPT8_VBMI
/* map[c] bits for 64 byte indices c (a 256-entry table without gathers: a 16-lane gather is ~16 cycles on Zen 5).
 * Each byte of map[c] from its 256-byte plane (two 128-byte vpermt2b tables, bit 7 of c picks one), then bytes ->
 * dwords by unpacks. The unpacks work per 128-bit lane, so c comes transposed: dword 4L + q of c holds the indices
 * of values 16q + 4L .. 16q + 4L + 3; r[q] then holds map[] of values 16q .. 16q + 15 in order. */
static inline void planes_to_f32(const __m512i pb[4], __m512 r[4]) {
    const __m512i lo01 = _mm512_unpacklo_epi8(pb[0], pb[1]), hi01 = _mm512_unpackhi_epi8(pb[0], pb[1]);
    const __m512i lo23 = _mm512_unpacklo_epi8(pb[2], pb[3]), hi23 = _mm512_unpackhi_epi8(pb[2], pb[3]);
    r[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(lo01, lo23));
    r[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(lo01, lo23));
    r[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(hi01, hi23));
    r[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(hi01, hi23));
}

static inline void plane_lookup64(const qvec_tables *T, __m512i c, __m512 r[4]) {
    const __mmask64 hi = _mm512_movepi8_mask(c);
    __m512i pb[4];
    for (int k = 0; k < 4; k++) {
        const __m512i *t = (const __m512i *)T->plane[k];
        pb[k] = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(_mm512_load_si512(t), c, _mm512_load_si512(t + 1)),
                                       _mm512_permutex2var_epi8(_mm512_load_si512(t + 2), c, _mm512_load_si512(t + 3)));
    }
    planes_to_f32(pb, r);
}

/* lvl[7][c] for 64 byte indices c < 128 (same layout as plane_lookup64; one vpermt2b per plane) */
static inline void plane_lookup64_lvl7(const uint8_t (*p7)[128], __m512i c, __m512 r[4]) {
    __m512i pb[4];
    for (int k = 0; k < 4; k++) {
        const __m512i *t = (const __m512i *)p7[k];
        pb[k] = _mm512_permutex2var_epi8(_mm512_load_si512(t), c, _mm512_load_si512(t + 1));
    }
    planes_to_f32(pb, r);
}
#endif

/* The quantizer is bound by port 5 (permutes and compares into mask registers run only there): bit k of each lane as
 * a mask through a shift and vpmovd2m (port 0) instead of vptestmd (port 5). */
static inline __mmask16 bit_mask(__m512i b, int k) { return _mm512_movepi32_mask(_mm512_slli_epi32(b, 31 - k)); }

/* t[b] for a 128-entry table, b in 0..127 */
static inline __m512 lookup128(const float *t, __m512i b) {
    const __m512 a = _mm512_permutex2var_ps(_mm512_load_ps(t), b, _mm512_load_ps(t + 16));
    const __m512 c = _mm512_permutex2var_ps(_mm512_load_ps(t + 32), b, _mm512_load_ps(t + 48));
    const __m512 d = _mm512_permutex2var_ps(_mm512_load_ps(t + 64), b, _mm512_load_ps(t + 80));
    const __m512 e = _mm512_permutex2var_ps(_mm512_load_ps(t + 96), b, _mm512_load_ps(t + 112));
    const __mmask16 b5 = bit_mask(b, 5), b6 = bit_mask(b, 6);
    return _mm512_mask_blend_ps(b6, _mm512_mask_blend_ps(b5, a, c), _mm512_mask_blend_ps(b5, d, e));
}

/* Codes of QN x 16 values v of a block with absmax am (broadcast) into out. The QN searches are
 * interleaved step by step: each is a long dependent chain (division, 8 lookup-compare levels, gather), and written
 * one after another the out-of-order window held only about one of them at a time. */
#define QN 4
/* The 8 halving levels on QN x 16 values y with the level tables lvl (map values or count thresholds) and p7 (byte
 * planes of lvl[7]): i = the count of pivots below y (natural order), gt / v7 = the last level's decision / pivot. */
static inline __attribute__((always_inline)) void qv_search(const float (*lvl)[128], const uint8_t (*p7)[128],
                                                            bool planes, const __m512 y[QN], __m512i i[QN],
                                                            __mmask16 gt[QN], __m512 v7[QN]) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i b[QN];
    for (int u = 0; u < QN; u++) {
        gt[u] = _mm512_cmp_ps_mask(y[u], _mm512_set1_ps(lvl[0][0]), _CMP_GT_OQ);
        b[u] = _mm512_maskz_mov_epi32(gt[u], one);
    }
#ifdef QV_REV
    /* b holds the comparison bits first-at-bit-0 (the tables are stored in that order): one masked add per level */
#define QV_STEP(s, piv)                                                                                              \
    for (int u = 0; u < QN; u++) {                                                                                   \
        gt[u] = _mm512_cmp_ps_mask(y[u], (piv), _CMP_GT_OQ);                                                         \
        b[u] = _mm512_mask_add_epi32(b[u], gt[u], b[u], _mm512_set1_epi32(1 << (s)));                               \
    }
#else
#define QV_STEP(s, piv)                                                                                              \
    for (int u = 0; u < QN; u++) {                                                                                   \
        gt[u] = _mm512_cmp_ps_mask(y[u], (piv), _CMP_GT_OQ);                                                         \
        b[u] = _mm512_mask_add_epi32(_mm512_add_epi32(b[u], b[u]), gt[u], _mm512_add_epi32(b[u], b[u]), one);       \
    }
#endif
    for (int s = 1; s < 5; s++) QV_STEP(s, _mm512_permutexvar_ps(b[u], _mm512_load_ps(lvl[s])))
    QV_STEP(5, _mm512_permutex2var_ps(_mm512_load_ps(lvl[5]), b[u], _mm512_load_ps(lvl[5] + 16)))
    QV_STEP(6, _mm512_mask_blend_ps(bit_mask(b[u], 5),
                                    _mm512_permutex2var_ps(_mm512_load_ps(lvl[6]), b[u], _mm512_load_ps(lvl[6] + 16)),
                                    _mm512_permutex2var_ps(_mm512_load_ps(lvl[6] + 32), b[u], _mm512_load_ps(lvl[6] + 48))))
#undef QV_STEP
#if defined(OPT8_VBMI) && QN == 4
    if (planes)
        plane_lookup64_lvl7(p7, _mm512_packus_epi16(_mm512_packus_epi32(b[0], b[1]), _mm512_packus_epi32(b[2], b[3])), v7);
    else
#endif
    for (int u = 0; u < QN; u++) v7[u] = lookup128(lvl[7], b[u]);
    for (int u = 0; u < QN; u++) {
        gt[u] = _mm512_cmp_ps_mask(y[u], v7[u], _CMP_GT_OQ);
#ifdef QV_REV
        /* i = 2b + gt in natural order: reverse the 8 bits of the low byte (GF(2) affine with the reversal matrix) */
        i[u] = _mm512_gf2p8affine_epi64_epi8(_mm512_mask_add_epi32(b[u], gt[u], b[u], _mm512_set1_epi32(128)),
                                             _mm512_set1_epi64((long long)0x8040201008040201ull), 0);
#else
        const __m512i b2 = _mm512_add_epi32(b[u], b[u]);
        i[u] = _mm512_mask_add_epi32(b2, gt[u], b2, one);
#endif
    }
}

/* QN x 16 codes (0..255 in epi32 lanes) stored as bytes */
static inline __attribute__((always_inline)) void store_codes_qn(const __m512i cs[QN], uint8_t *out) {
#if QN % 4 == 0
    /* codes 0..255: two saturating packs (exact) leave lane L as a[4L..4L+3] b[..] c[..] d[..]; one dword permute
     * restores a, b, c, d order (4 port-5 uops instead of 4 two-uop vpmovdb) */
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int u = 0; u < QN; u += 4) {
        const __m512i pk = _mm512_packus_epi16(_mm512_packus_epi32(cs[u], cs[u + 1]), _mm512_packus_epi32(cs[u + 2], cs[u + 3]));
        _mm512_storeu_si512(out + 16 * u, _mm512_permutexvar_epi32(ord, pk));
    }
#else
    for (int u = 0; u < QN; u++) _mm_storeu_si128((__m128i *)(out + 16 * u), _mm512_cvtepi32_epi8(cs[u]));
#endif
}

/* Codes of QN x 16 values v of a block with absmax am (broadcast) into out. The QN searches are
 * interleaved step by step: each is a long dependent chain (division, 8 lookup-compare levels, gather), and written
 * one after another the out-of-order window held only about one of them at a time. */
static inline __attribute__((always_inline)) void quant_qn(const qvec_tables *T, const float *map, const float *v,
                                                           __m512 am, uint8_t *out) {
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __mmask16 amp = _mm512_cmp_ps_mask(am, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 y[QN], v7[QN];
    __m512i i[QN];
    __mmask16 gt[QN];
    for (int u = 0; u < QN; u++) y[u] = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(v + 16 * u), am);
    qv_search(T->lvl, T->plane7, T->planes, y, i, gt, v7); /* v7 = map[2b] */
    const __m512i ndec = _mm512_set1_epi32(T->nneg_dec), ninc = _mm512_set1_epi32(T->nneg_inc);
    __m512i cs[QN], los[QN];
    __m512 nbs[QN];
    for (int u = 0; u < QN; u++) los[u] = _mm512_max_epi32(_mm512_sub_epi32(i[u], one), zero);
    /* gt: map[i] is the neighbour map[2b+1], map[lo] = map[2b]; else map[i] = map[2b], map[lo] the neighbour */
#if defined(OPT8_VBMI) && QN == 4
    /* the neighbour indices (0..255) packed to bytes come out in plane_lookup64's transposed order (dword 4L + q:
     * values 4L .. 4L + 3 of group q) */
    if (T->planes)
        plane_lookup64(T, _mm512_packus_epi16(_mm512_packus_epi32(_mm512_mask_mov_epi32(los[0], gt[0], i[0]),
                                                              _mm512_mask_mov_epi32(los[1], gt[1], i[1])),
                                          _mm512_packus_epi32(_mm512_mask_mov_epi32(los[2], gt[2], i[2]),
                                                              _mm512_mask_mov_epi32(los[3], gt[3], i[3]))),
                   nbs);
    else
#endif
    for (int u = 0; u < QN; u++) nbs[u] = _mm512_i32gather_ps(_mm512_mask_mov_epi32(los[u], gt[u], i[u]), map, 4);
    for (int u = 0; u < QN; u++) {
        const __m512i lo = los[u];
        const __m512 nb = nbs[u];
        const __m512 mi = _mm512_mask_blend_ps(gt[u], v7[u], nb), mlo = _mm512_mask_blend_ps(gt[u], nb, v7[u]);
        const __mmask16 le = _mm512_cmp_ps_mask(_mm512_sub_ps(y[u], mlo), _mm512_sub_ps(mi, y[u]), _CMP_LE_OQ);
        __m512i c = _mm512_mask_blend_epi32(le, i[u], lo);
        /* sign rule */
        const __m512 vu = _mm512_loadu_ps(v + 16 * u);
        const __mmask16 vneg = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __mmask16 vpos = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __mmask16 dec = vneg & _mm512_cmpeq_epi32_mask(c, ndec);
        const __mmask16 inc = vpos & _mm512_cmplt_epi32_mask(c, ninc);
        c = _mm512_mask_sub_epi32(c, dec, c, one);
        cs[u] = _mm512_mask_add_epi32(c, inc, c, one);
    }
    store_codes_qn(cs, out);
}

/* quant_qn's codes as a count: for y != 0 and not NaN the code is a nondecreasing step function of y alone (the
 * lower bound is monotone in y, the nearest-code decision flips once per bracket, and the sign rule only lowers the
 * code nneg for y < 0 / raises codes below nneg for y > 0), so code = #{j : y > P_j} over 255 sorted thresholds
 * found by bisection (qvec_count_build): the 8 levels only, no neighbour lookup, nearest-code arithmetic or sign
 * rule. y = +-0 (value 0, or a tiny value over a huge or infinite absmax) and NaN y (value NaN or +-Inf) take the
 * code quant_qn gives for the value's sign. */
static inline __attribute__((always_inline)) void quant_qn_count(const qvec_tables *T, const float *v, __m512 am,
                                                                 uint8_t *out) {
    const __mmask16 amp = _mm512_cmp_ps_mask(am, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 y[QN], v7[QN];
    __m512i cs[QN];
    __mmask16 gt[QN], sp[QN], any = 0;
    for (int u = 0; u < QN; u++) {
        y[u] = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(v + 16 * u), am);
        sp[u] = _mm512_cmp_ps_mask(y[u], _mm512_setzero_ps(), _CMP_EQ_UQ); /* y == +-0 or NaN */
        any |= sp[u];
    }
    qv_search(T->clvl, T->cplane7, T->planes, y, cs, gt, v7);
    if (any) { /* rare: zero or non-finite values */
        for (int u = 0; u < QN; u++) {
            const __m512 vu = _mm512_loadu_ps(v + 16 * u);
            const __mmask16 vpos = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_GT_OQ);
            const __mmask16 vneg = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_LT_OQ);
            const __mmask16 nan = _mm512_cmp_ps_mask(y[u], y[u], _CMP_UNORD_Q), zer = sp[u] & ~nan;
            const __mmask16 cls[3] = {vpos, vneg, (__mmask16)~(vpos | vneg)};
            for (int k = 0; k < 3; k++) {
                cs[u] = _mm512_mask_mov_epi32(cs[u], zer & cls[k], _mm512_set1_epi32(T->fix[0][k]));
                cs[u] = _mm512_mask_mov_epi32(cs[u], nan & cls[k], _mm512_set1_epi32(T->fix[1][k]));
            }
        }
    }
    store_codes_qn(cs, out);
}

/* quant_qn_count on nq quads at once (a quad: 4 x 16 values of one state with its own tables, absmax and output).
 * Each 16-lane search is a chain of 8 dependent permute-compare-add levels (~70 cycles); the out-of-order window
 * holds about one 4-chain call, so with one quad at a time the re-quantizer was latency-bound. Interleaving the
 * quads of two or three states step by step keeps 8 or 12 chains in flight. Same codes as quant_qn_count. */
#define QQ_MAX 3
typedef struct {
    const qvec_tables *T;
    const float *v;
    __m512 am;
    uint8_t *out;
} q8_quad;

static inline __attribute__((always_inline)) void quant_count_quads(const int nq, const q8_quad *Q) {
    __m512 y[4 * QQ_MAX];
    __m512i b[4 * QQ_MAX];
    __mmask16 gt, sp[4 * QQ_MAX], any = 0;
    const __m512i one = _mm512_set1_epi32(1);
    _Pragma("GCC unroll 12")
    for (int q = 0; q < nq; q++) {
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        _Pragma("GCC unroll 12")
        for (int u = 0; u < 4; u++) {
            const int w = 4 * q + u;
            y[w] = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(Q[q].v + 16 * u), Q[q].am);
            sp[w] = _mm512_cmp_ps_mask(y[w], _mm512_setzero_ps(), _CMP_EQ_UQ); /* y == +-0 or NaN */
            any |= sp[w];
        }
    }
    _Pragma("GCC unroll 12")
    for (int w = 0; w < 4 * nq; w++)
        b[w] = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(y[w], _mm512_set1_ps(Q[w / 4].T->clvl[0][0]), _CMP_GT_OQ), one);
#ifdef QV_REV
#define QQ_STEP(s, piv)                                                                                              \
    _Pragma("GCC unroll 12")                                                                                         \
    for (int w = 0; w < 4 * nq; w++) {                                                                               \
        const float(*lv)[128] = Q[w / 4].T->clvl;                                                                    \
        gt = _mm512_cmp_ps_mask(y[w], (piv), _CMP_GT_OQ);                                                            \
        b[w] = _mm512_mask_add_epi32(b[w], gt, b[w], _mm512_set1_epi32(1 << (s)));                                  \
    }
#else
#define QQ_STEP(s, piv)                                                                                              \
    _Pragma("GCC unroll 12")                                                                                         \
    for (int w = 0; w < 4 * nq; w++) {                                                                               \
        const float(*lv)[128] = Q[w / 4].T->clvl;                                                                    \
        gt = _mm512_cmp_ps_mask(y[w], (piv), _CMP_GT_OQ);                                                            \
        b[w] = _mm512_mask_add_epi32(_mm512_add_epi32(b[w], b[w]), gt, _mm512_add_epi32(b[w], b[w]), one);         \
    }
#endif
    _Pragma("GCC unroll 4")
    for (int s = 1; s < 5; s++) QQ_STEP(s, _mm512_permutexvar_ps(b[w], _mm512_load_ps(lv[s])))
    QQ_STEP(5, _mm512_permutex2var_ps(_mm512_load_ps(lv[5]), b[w], _mm512_load_ps(lv[5] + 16)))
    QQ_STEP(6, _mm512_mask_blend_ps(bit_mask(b[w], 5),
                                    _mm512_permutex2var_ps(_mm512_load_ps(lv[6]), b[w], _mm512_load_ps(lv[6] + 16)),
                                    _mm512_permutex2var_ps(_mm512_load_ps(lv[6] + 32), b[w], _mm512_load_ps(lv[6] + 48))))
#undef QQ_STEP
    _Pragma("GCC unroll 12")
    for (int q = 0; q < nq; q++) {
        const qvec_tables *T = Q[q].T;
        __m512 v7[4];
        __m512i cs[4];
#ifdef OPT8_VBMI
        if (T->planes)
            plane_lookup64_lvl7(T->cplane7,
                                _mm512_packus_epi16(_mm512_packus_epi32(b[4 * q], b[4 * q + 1]),
                                                    _mm512_packus_epi32(b[4 * q + 2], b[4 * q + 3])),
                                v7);
        else
#endif
            _Pragma("GCC unroll 12")
            for (int u = 0; u < 4; u++) v7[u] = lookup128(T->clvl[7], b[4 * q + u]);
        _Pragma("GCC unroll 12")
        for (int u = 0; u < 4; u++) {
            const int w = 4 * q + u;
            gt = _mm512_cmp_ps_mask(y[w], v7[u], _CMP_GT_OQ);
#ifdef QV_REV
            cs[u] = _mm512_gf2p8affine_epi64_epi8(_mm512_mask_add_epi32(b[w], gt, b[w], _mm512_set1_epi32(128)),
                                                  _mm512_set1_epi64((long long)0x8040201008040201ull), 0);
#else
            const __m512i b2 = _mm512_add_epi32(b[w], b[w]);
            cs[u] = _mm512_mask_add_epi32(b2, gt, b2, one);
#endif
        }
        if (any) { /* rare: zero or non-finite values */
            _Pragma("GCC unroll 12")
            for (int u = 0; u < 4; u++) {
                const int w = 4 * q + u;
                const __m512 vu = _mm512_loadu_ps(Q[q].v + 16 * u);
                const __mmask16 vpos = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_GT_OQ);
                const __mmask16 vneg = _mm512_cmp_ps_mask(vu, _mm512_setzero_ps(), _CMP_LT_OQ);
                const __mmask16 nan = _mm512_cmp_ps_mask(y[w], y[w], _CMP_UNORD_Q), zer = sp[w] & ~nan;
                const __mmask16 cls[3] = {vpos, vneg, (__mmask16)~(vpos | vneg)};
                _Pragma("GCC unroll 12")
                for (int k = 0; k < 3; k++) {
                    cs[u] = _mm512_mask_mov_epi32(cs[u], zer & cls[k], _mm512_set1_epi32(T->fix[0][k]));
                    cs[u] = _mm512_mask_mov_epi32(cs[u], nan & cls[k], _mm512_set1_epi32(T->fix[1][k]));
                }
            }
        }
        const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i pk = _mm512_packus_epi16(_mm512_packus_epi32(cs[0], cs[1]), _mm512_packus_epi32(cs[2], cs[3]));
        _mm512_storeu_si512(Q[q].out, _mm512_permutexvar_epi32(ord, pk));
    }
}

#if defined(QV_REV) && defined(OPT8_VBMI)
/* The count on 16-bit keys, 32 lanes per instruction. wkey(x) = k >> 15 with k = the float's bits as an order-preserving
 * int (negatives: bits ^ 0x7fffffff): nondecreasing in x, and for |x| <= 1 it fits an int16 (|wkey| <= 0x7f01; 8
 * mantissa bits). With K_j = wkey(P_j), c = #{j : K_j < wkey(y)} counts every P_j < y except one threshold whose key
 * equals wkey(y); if no two finite thresholds share a key (qvec_word_build checks it), that threshold can only be
 * P_c, so code = c + (y > P_c), one float lookup and compare. Same codes as quant_count_quads. */
static inline int16_t wkey_of(float x) {
    if (x == INFINITY) return INT16_MAX;
    if (x == -INFINITY) return INT16_MIN;
    int32_t k;
    memcpy(&k, &x, 4);
    k ^= (k >> 31) & 0x7fffffff;
    return (int16_t)(k >> 15);
}

static void qvec_word_build(qvec_tables *T) {
    T->wcount = false;
    if (!T->counted) return;
    float P[256];
    for (int s = 0; s < 8; s++) /* every P_j is the pivot of exactly one level */
        for (int b = 0; b < (1 << s); b++) {
            int pos = 0;
            for (int k = 0; k < s; k++) pos |= ((b >> k) & 1) << (s - 1 - k);
            P[b * (256 >> s) + (128 >> s) - 1] = T->clvl[s][pos];
        }
    P[255] = INFINITY;
    for (int j = 0; j < 256; j++) {
        if (isfinite(P[j]) && !(fabsf(P[j]) <= 1.f)) return;
        if (j > 0 && isfinite(P[j]) && isfinite(P[j - 1]) && !(wkey_of(P[j - 1]) < wkey_of(P[j]))) return;
        uint32_t u;
        memcpy(&u, &P[j], 4);
        for (int k = 0; k < 4; k++) T->wplane[k][j] = (uint8_t)(u >> (8 * k));
    }
    for (int s = 0; s < 8; s++)
        for (int i = 0; i < 128; i++) T->wl[s][i] = i < (1 << s) ? wkey_of(T->clvl[s][i]) : 0;
    T->wcount = true;
}

static inline void plane_lookup64_t(const uint8_t (*pl)[256], __m512i c, __m512 r[4]) {
    const __mmask64 hi = _mm512_movepi8_mask(c);
    __m512i pb[4];
    for (int k = 0; k < 4; k++) {
        const __m512i *t = (const __m512i *)pl[k];
        pb[k] = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(_mm512_load_si512(t), c, _mm512_load_si512(t + 1)),
                                       _mm512_permutex2var_epi8(_mm512_load_si512(t + 2), c, _mm512_load_si512(t + 3)));
    }
    planes_to_f32(pb, r);
}

/* nq quads (q8_quad) with wcount tables: 2 nq 32-lane search chains */
#define QW_MAX 6
static inline __attribute__((always_inline)) void quant_word_quads(const int nq, const q8_quad *Q) {
    __m512i kw[2 * QW_MAX], b[2 * QW_MAX];
    __mmask16 sp[4 * QW_MAX];
    __mmask16 any = 0;
    const __m512i sgn = _mm512_set1_epi32(0x7fffffff);
    _Pragma("GCC unroll 12")
    for (int q = 0; q < nq; q++) {
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512i k[4];
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) {
            const int w = 4 * q + u;
            const __m512 y = _mm512_maskz_div_ps(amp, _mm512_loadu_ps(Q[q].v + 16 * u), Q[q].am);
            sp[w] = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_EQ_UQ); /* y == +-0 or NaN */
            any |= sp[w];
            const __m512i yb = _mm512_castps_si512(y);
            /* yb ^ (sign ? 0x7fffffff : 0), then >> 15 */
            k[u] = _mm512_srai_epi32(_mm512_ternarylogic_epi32(yb, _mm512_srai_epi32(yb, 31), sgn, 0x78), 15);
        }
        kw[2 * q] = _mm512_packs_epi32(k[0], k[1]);
        kw[2 * q + 1] = _mm512_packs_epi32(k[2], k[3]);
    }
    _Pragma("GCC unroll 12")
    for (int w = 0; w < 2 * nq; w++)
        b[w] = _mm512_maskz_mov_epi16(_mm512_cmpgt_epi16_mask(kw[w], _mm512_set1_epi16(Q[w / 2].T->wl[0][0])),
                                      _mm512_set1_epi16(1));
#define QW_STEP(s, piv)                                                                                              \
    _Pragma("GCC unroll 12")                                                                                         \
    for (int w = 0; w < 2 * nq; w++) {                                                                               \
        const int16_t(*lv)[128] = Q[w / 2].T->wl;                                                                    \
        const __mmask32 gt = _mm512_cmpgt_epi16_mask(kw[w], (piv));                                                  \
        b[w] = _mm512_mask_add_epi16(b[w], gt, b[w], _mm512_set1_epi16(1 << (s)));                                  \
    }
    _Pragma("GCC unroll 5")
    for (int s = 1; s < 6; s++) QW_STEP(s, _mm512_permutexvar_epi16(b[w], _mm512_load_si512(lv[s])))
    QW_STEP(6, _mm512_permutex2var_epi16(_mm512_load_si512(lv[6]), b[w], _mm512_load_si512(lv[6] + 32)))
    QW_STEP(7, _mm512_mask_blend_epi16(
                   _mm512_movepi16_mask(_mm512_slli_epi16(b[w], 9)),
                   _mm512_permutex2var_epi16(_mm512_load_si512(lv[7]), b[w], _mm512_load_si512(lv[7] + 32)),
                   _mm512_permutex2var_epi16(_mm512_load_si512(lv[7] + 64), b[w], _mm512_load_si512(lv[7] + 96))))
#undef QW_STEP
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _Pragma("GCC unroll 12")
    for (int q = 0; q < nq; q++) {
        const qvec_tables *T = Q[q].T;
        /* c = the bit-reversed counts as bytes: value 16q' + 4L + r at byte 16L + 4q' + r (plane_lookup64's order) */
        const __m512i rev = _mm512_set1_epi64((long long)0x8040201008040201ull);
        const __m512i c = _mm512_packus_epi16(_mm512_gf2p8affine_epi64_epi8(b[2 * q], rev, 0),
                                              _mm512_gf2p8affine_epi64_epi8(b[2 * q + 1], rev, 0));
        __m512 pc[4];
        plane_lookup64_t(T->wplane, c, pc);
        __mmask16 gt[4];
        const __mmask16 amp = _mm512_cmp_ps_mask(Q[q].am, _mm512_setzero_ps(), _CMP_GT_OQ);
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) /* y again (the same division): fewer live registers than keeping it */
            gt[u] = _mm512_cmp_ps_mask(_mm512_maskz_div_ps(amp, _mm512_loadu_ps(Q[q].v + 16 * u), Q[q].am), pc[u],
                                       _CMP_GT_OQ);
        const __mmask64 m = _mm512_kunpackd(_mm512_kunpackw(gt[3], gt[2]), _mm512_kunpackw(gt[1], gt[0]));
        const __m512i cn = _mm512_permutexvar_epi32(ord, c);
        _mm512_storeu_si512(Q[q].out, _mm512_mask_sub_epi8(cn, m, cn, _mm512_set1_epi8(-1)));
    }
    if (any) { /* rare: zero or non-finite values take quant_qn's code for the value's class */
        for (int q = 0; q < nq; q++)
            for (int u = 0; u < 4; u++) {
                const int w = 4 * q + u;
                if (!sp[w]) continue;
                for (int i = 0; i < 16; i++) {
                    if (!((sp[w] >> i) & 1)) continue;
                    const float vv = Q[q].v[16 * u + i], am = _mm512_cvtss_f32(Q[q].am);
                    const float yv = am > 0.f ? vv / am : 0.f;
                    const int cls = vv > 0.f ? 0 : (vv < 0.f ? 1 : 2);
                    Q[q].out[16 * u + i] = (uint8_t)Q[q].T->fix[isnan(yv) ? 1 : 0][cls];
                }
            }
    }
}
#endif

/* the count form when its tables are built, else the search */
#define QUANT_QN(T, map, v, am, out)                                                                                \
    do {                                                                                                           \
        if ((T)->counted)                                                                                          \
            quant_qn_count((T), (v), (am), (out));                                                                 \
        else                                                                                                       \
            quant_qn((T), (map), (v), (am), (out));                                                                \
    } while (0)

/* order-preserving int key of a float in [-1, 1] (both zeros -> 0) and back */
static inline int32_t fkey(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u >> 31) ? -(int32_t)(u & 0x7fffffffu) : (int32_t)u;
}
static inline float fkey_val(int32_t k) {
    const uint32_t u = k < 0 ? 0x80000000u | (uint32_t)(-k) : (uint32_t)k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The count tables of quant_qn_count, with quant_qn itself as the oracle (value = y, absmax 1: y / 1 = y exactly).
 * P_j (j = 0..254) = the largest y in [-1, 1] whose code is <= j (-inf if even y = -1 has a larger code, +inf if
 * y = 1 has a smaller one), by bisection over the float order, 64 thresholds per quant_qn call; y never leaves
 * [-1, 1] (|value| <= absmax). The codes at y = +-0 and NaN y per value sign come from quant_qn too. ~130 quant_qn
 * calls (~25 us): cached per map (qvec_count_cached). Needs T->ok (quant_qn exact). */
static void qvec_count_build(const float *map, qvec_tables *T) {
    _Alignas(64) float yv[64];
    _Alignas(64) uint8_t code[64];
    const __m512 one = _mm512_set1_ps(1.f);
    float P[256];
    int32_t lo[256], hi[256];
    memset(yv, 0, sizeof yv);
    yv[0] = -1.f, yv[1] = 1.f;
    quant_qn(T, map, yv, one, code);
    const int cmin = code[0], cmax = code[1];
    for (int j = 0; j < 255; j++) {
        lo[j] = fkey(-1.f), hi[j] = fkey(1.f); /* code(lo) <= j < code(hi) */
        P[j] = cmin > j ? -INFINITY : (cmax <= j ? INFINITY : 0.f);
    }
    for (int step = 0; step < 32; step++)
        for (int j0 = 0; j0 < 255; j0 += 64) {
            for (int t = 0; t < 64; t++) {
                const int j = j0 + t;
                yv[t] = j < 255 ? fkey_val(lo[j] + (hi[j] - lo[j]) / 2) : 0.f;
            }
            quant_qn(T, map, yv, one, code);
            for (int t = 0; t < 64 && j0 + t < 255; t++) {
                const int j = j0 + t, mid = lo[j] + (hi[j] - lo[j]) / 2;
                if (code[t] <= j)
                    lo[j] = mid;
                else
                    hi[j] = mid;
            }
        }
    T->counted = true;
    for (int j = 0; j < 255; j++) {
        if (cmin <= j && cmax > j) {
            P[j] = fkey_val(lo[j]);
            if (hi[j] - lo[j] != 1) T->counted = false;
        }
        if (j > 0 && !(P[j] >= P[j - 1])) T->counted = false; /* not monotone: keep quant_qn */
    }
    P[255] = INFINITY;
    build_levels(P, T->clvl, T->cplane7);
    /* y = +-0: value 1e-30, -1e-30, 0 over absmax +inf; NaN y: value +inf, -inf, NaN over absmax +inf */
    memset(yv, 0, sizeof yv);
    const float probe[6] = {1e-30f, -1e-30f, 0.f, INFINITY, -INFINITY, NAN};
    memcpy(yv, probe, sizeof probe);
    quant_qn(T, map, yv, _mm512_set1_ps(INFINITY), code);
    for (int k = 0; k < 3; k++) T->fix[0][k] = code[k], T->fix[1][k] = code[3 + k];
}

/* qvec_count_build's results depend only on the 256 map values: a small cache (the optimizers use two or three
 * maps) so that every tensor, not only large ones, gets the count form after the first update. */
typedef struct {
    bool used, counted;
    float map[256];
    float clvl[8][128];
    uint8_t cplane7[4][128];
    int32_t fix[2][3];
} qv_count_entry;
#define QV_CACHE_N 4
static qv_count_entry qv_count_cache[QV_CACHE_N];
static int qv_count_next;

static void qvec_count_cached(const float *map, qvec_tables *T) {
    bool hit = false;
#pragma omp critical(bnb_opt8_count_cache)
    for (int e = 0; e < QV_CACHE_N && !hit; e++) {
        const qv_count_entry *c = &qv_count_cache[e];
        if (c->used && !memcmp(c->map, map, sizeof c->map)) {
            T->counted = c->counted;
            memcpy(T->clvl, c->clvl, sizeof T->clvl);
            memcpy(T->cplane7, c->cplane7, sizeof T->cplane7);
            memcpy(T->fix, c->fix, sizeof T->fix);
            hit = true;
        }
    }
    if (hit) return;
    qvec_count_build(map, T);
#pragma omp critical(bnb_opt8_count_cache)
    {
        qv_count_entry *c = &qv_count_cache[qv_count_next];
        qv_count_next = (qv_count_next + 1) % QV_CACHE_N;
        c->used = true;
        c->counted = T->counted;
        memcpy(c->map, map, sizeof c->map);
        memcpy(c->clvl, T->clvl, sizeof c->clvl);
        memcpy(c->cplane7, T->cplane7, sizeof c->cplane7);
        memcpy(c->fix, T->fix, sizeof c->fix);
    }
}
#endif /* OPT8_AVX512 */

#endif
