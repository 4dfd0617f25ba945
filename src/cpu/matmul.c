/* CPU MUL_MAT: out[n][m] = sum_k a[m][k] * b[n][k] (ggml convention), batched over dims 2/3 with a broadcast.
 *
 * Two paths:
 *  - GEMM (both M and N reasonably large): BLIS-style blocking. For each block of K (KC) and of m (NC) a thread
 *    packs a into NR-wide panels laid out [k][NR] (f16/bf16 converted to f32 here), then for each block of n (MC)
 *    packs b into MR-wide panels [k][MR], and a register-blocked micro-kernel computes MR x NR tiles of out with
 *    outer products (NR along m is the SIMD direction, b values are broadcast). Packing buffers live in c->work.
 *  - DOT (matrix-vector and other thin shapes): each out element is a dot product of two contiguous rows;
 *    tiles of 4 a-rows x 4 (or 1) b-rows share their loads. Reads a once per 4 b-rows, needs no scratch.
 * Threads (OpenMP, c->n_threads) share out tiles; in the GEMM path a unit is (batch, m block, n range). */
#include "cpu-kernels.h"

#include <stdint.h>
#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- blocking parameters */
#if defined(__AVX512F__)
#define MR 12 /* out rows (n) per micro-tile: 12 x 2 zmm accumulators */
#define NR 32 /* out cols (m) per micro-tile: two 16-lane vectors */
#elif defined(__AVX2__) && defined(__FMA__)
#define MR 6
#define NR 16
#else
#define MR 4
#define NR 8
#endif
#ifndef KC
#define KC 256  /* k per packed block: an NR x KC panel of a (32 KiB) stays in L1 */
#endif
#ifndef MC
#define MC 192  /* n rows per packed b block (multiple of MR) */
#endif
#ifndef NC
#define NC 1024 /* m cols per packed a block (multiple of NR) */
#endif
#define DOT_TILE 4

typedef struct {
    const char *a_base, *b_base;
    char *out_base;
    bnb_type ta, tb;
    int64_t K, M, N;
    int64_t nb2, nb3;  /* out batches */
    int64_t r2, r3;    /* broadcast ratios b/a */
    size_t a_nb[4], b_nb[4], o_nb[4];
} mm_args;

static mm_args mm_args_of(const bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    mm_args g;
    g.a_base = a->data;
    g.b_base = b->data;
    g.out_base = node->data;
    g.ta = a->type;
    g.tb = b->type;
    g.K = a->ne[0];
    g.M = a->ne[1];
    g.N = b->ne[1];
    g.nb2 = b->ne[2];
    g.nb3 = b->ne[3];
    g.r2 = a->ne[2] > 0 ? b->ne[2] / a->ne[2] : 1;
    g.r3 = a->ne[3] > 0 ? b->ne[3] / a->ne[3] : 1;
    for (int i = 0; i < 4; i++) {
        g.a_nb[i] = a->nb[i];
        g.b_nb[i] = b->nb[i];
        g.o_nb[i] = node->nb[i];
    }
    return g;
}

static inline const char *a_row(const mm_args *g, int64_t i2, int64_t i3, int64_t m) {
    return g->a_base + (i2 / g->r2) * g->a_nb[2] + (i3 / g->r3) * g->a_nb[3] + m * g->a_nb[1];
}
static inline const char *b_row(const mm_args *g, int64_t i2, int64_t i3, int64_t n) {
    return g->b_base + i2 * g->b_nb[2] + i3 * g->b_nb[3] + n * g->b_nb[1];
}
static inline float *out_row(const mm_args *g, int64_t i2, int64_t i3, int64_t n) {
    return (float *)(g->out_base + i2 * g->o_nb[2] + i3 * g->o_nb[3] + n * g->o_nb[1]);
}

/* The GEMM path pays for packing all of a (transposed); with few b rows the dot path is faster (measured
 * crossover near N = 18 at M = K = 1024 with AVX-512). */
static bool use_gemm(int64_t M, int64_t N, int64_t K) { return N >= MR + MR / 2 && M >= NR / 2 && K >= 4; }

/* ---------------------------------------------------------------- row conversion (portable packing path) */
#if !defined(__AVX512F__)
static inline float bf16_bits_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* dst[0..n) = (float)src[0..n) for an f16/bf16 row. */
static void convert_row(const void *src, bnb_type t, float *dst, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    if (t == BNB_TYPE_F16) {
#if defined(__F16C__)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
        for (; i < n; i++) dst[i] = bnb_f16_to_f32(s[i]);
    } else {
        for (; i < n; i++) dst[i] = bf16_bits_to_f32(s[i]);
    }
}
#endif

/* ---------------------------------------------------------------- packing */
#if defined(__AVX512F__)
/* 16 elements of a row (type t) at p as f32; len < 16 reads only len elements and zero-fills the rest. */
static inline __m512 load_row16(const char *p, bnb_type t, int64_t len) {
    if (len < 16) {
        float buf[16] = {0};
        for (int64_t i = 0; i < len; i++) buf[i] = bnb_cpu_load(p + i * bnb_type_size(t), t);
        return _mm512_loadu_ps(buf);
    }
    if (t == BNB_TYPE_F32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (t == BNB_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* In-register 16x16 transpose: v[r] lane k -> v[k] lane r. */
static inline void transpose16(__m512 v[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* per 128-bit lane: u[i+j] holds k = j (+4, +8, +12) of rows i..i+3 */
        u[i + 0] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) { /* combine the four row groups of k = j, j+4, j+8, j+12 */
        __m512 a0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), a1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 b0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 b1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        v[j] = _mm512_shuffle_f32x4(a0, b0, 0x88);
        v[j + 8] = _mm512_shuffle_f32x4(a0, b0, 0xDD);
        v[j + 4] = _mm512_shuffle_f32x4(a1, b1, 0x88);
        v[j + 12] = _mm512_shuffle_f32x4(a1, b1, 0xDD);
    }
}
#endif

/* Pack `rows` rows (rows <= W, missing rows zero) of length kc into panel[k * W + r], converting to f32.
 * row(r) points at element k0 of row r. `tmp` (kc floats) is scratch for the portable path. */
static void pack_panel(float *restrict panel, int W, const char *const *rowp, int rows, bnb_type t, int64_t kc,
                       float *tmp) {
#if defined(__AVX512F__)
    (void)tmp;
    const size_t es = bnb_type_size(t);
    for (int r0 = 0; r0 < W; r0 += 16) {
        const int lanes = BNB_MIN(16, W - r0);
        const __mmask16 mask = (__mmask16)((1u << lanes) - 1);
        for (int64_t k = 0; k < kc; k += 16) {
            const int64_t len = BNB_MIN((int64_t)16, kc - k);
            __m512 v[16];
            for (int i = 0; i < 16; i++)
                v[i] = r0 + i < rows ? load_row16(rowp[r0 + i] + k * es, t, len) : _mm512_setzero_ps();
            transpose16(v);
            for (int64_t j = 0; j < len; j++) _mm512_mask_storeu_ps(panel + (k + j) * W + r0, mask, v[j]);
        }
    }
#else
    for (int r = 0; r < rows; r++) {
        const float *src;
        if (t == BNB_TYPE_F32) {
            src = (const float *)rowp[r];
        } else {
            convert_row(rowp[r], t, tmp, kc);
            src = tmp;
        }
        for (int64_t k = 0; k < kc; k++) panel[k * W + r] = src[k];
    }
    for (int r = rows; r < W; r++)
        for (int64_t k = 0; k < kc; k++) panel[k * W + r] = 0.f;
#endif
}

/* a rows m0..m0+nc, k0..k0+kc -> NR-wide panels, each kc*NR floats. */
static void pack_a(const mm_args *g, int64_t i2, int64_t i3, int64_t m0, int64_t nc, int64_t k0, int64_t kc,
                   float *pa, float *tmp) {
    size_t es = bnb_type_size(g->ta);
    for (int64_t j = 0; j < nc; j += NR) {
        const char *rows[NR];
        int cnt = (int)BNB_MIN((int64_t)NR, nc - j);
        for (int r = 0; r < cnt; r++) rows[r] = a_row(g, i2, i3, m0 + j + r) + k0 * es;
        pack_panel(pa + (j / NR) * kc * NR, NR, rows, cnt, g->ta, kc, tmp);
    }
}

/* b rows n0..n0+mc, k0..k0+kc -> MR-wide panels, each kc*MR floats. */
static void pack_b(const mm_args *g, int64_t i2, int64_t i3, int64_t n0, int64_t mc, int64_t k0, int64_t kc,
                   float *pb, float *tmp) {
    size_t es = bnb_type_size(g->tb);
    for (int64_t i = 0; i < mc; i += MR) {
        const char *rows[MR];
        int cnt = (int)BNB_MIN((int64_t)MR, mc - i);
        for (int r = 0; r < cnt; r++) rows[r] = b_row(g, i2, i3, n0 + i + r) + k0 * es;
        pack_panel(pb + (i / MR) * kc * MR, MR, rows, cnt, g->tb, kc, tmp);
    }
}

/* ---------------------------------------------------------------- micro-kernels */
/* c[i * ldc + j] (+)= sum_k pb[k*MR + i] * pa[k*NR + j] for an MR x NR tile; accumulate = add to c. */
#if defined(__AVX512F__)
static void micro_kernel(int64_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                         int64_t ldc, int accumulate) {
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    __m512 c8a = c0a, c8b = c0a, c9a = c0a, c9b = c0a, cAa = c0a, cAb = c0a, cBa = c0a, cBb = c0a;
    for (int i = 0; i < MR; i++) { /* the tile's 2 cache lines per row, read at the end */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
#define MM_ROW(i, ca, cb)                                                                                          \
    do {                                                                                                           \
        __m512 bb = _mm512_set1_ps(pb[i]);                                                                         \
        ca = _mm512_fmadd_ps(a0, bb, ca);                                                                          \
        cb = _mm512_fmadd_ps(a1, bb, cb);                                                                          \
    } while (0)
    for (int64_t k = 0; k < kc; k++) {
        __m512 a0 = _mm512_load_ps(pa), a1 = _mm512_load_ps(pa + 16);
        _mm_prefetch((const char *)(pb + 8 * MR), _MM_HINT_T0);
        MM_ROW(0, c0a, c0b);
        MM_ROW(1, c1a, c1b);
        MM_ROW(2, c2a, c2b);
        MM_ROW(3, c3a, c3b);
        MM_ROW(4, c4a, c4b);
        MM_ROW(5, c5a, c5b);
        MM_ROW(6, c6a, c6b);
        MM_ROW(7, c7a, c7b);
        MM_ROW(8, c8a, c8b);
        MM_ROW(9, c9a, c9b);
        MM_ROW(10, cAa, cAb);
        MM_ROW(11, cBa, cBb);
        pa += NR;
        pb += MR;
    }
#undef MM_ROW
#define MM_STORE(i, ca, cb)                                                                                        \
    do {                                                                                                           \
        float *p = c + (i)*ldc;                                                                                    \
        if (accumulate) {                                                                                          \
            ca = _mm512_add_ps(ca, _mm512_loadu_ps(p));                                                            \
            cb = _mm512_add_ps(cb, _mm512_loadu_ps(p + 16));                                                       \
        }                                                                                                          \
        _mm512_storeu_ps(p, ca);                                                                                   \
        _mm512_storeu_ps(p + 16, cb);                                                                              \
    } while (0)
    MM_STORE(0, c0a, c0b);
    MM_STORE(1, c1a, c1b);
    MM_STORE(2, c2a, c2b);
    MM_STORE(3, c3a, c3b);
    MM_STORE(4, c4a, c4b);
    MM_STORE(5, c5a, c5b);
    MM_STORE(6, c6a, c6b);
    MM_STORE(7, c7a, c7b);
    MM_STORE(8, c8a, c8b);
    MM_STORE(9, c9a, c9b);
    MM_STORE(10, cAa, cAb);
    MM_STORE(11, cBa, cBb);
#undef MM_STORE
}
#elif defined(__AVX2__) && defined(__FMA__)
static void micro_kernel(int64_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                         int64_t ldc, int accumulate) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 a0 = _mm256_load_ps(pa), a1 = _mm256_load_ps(pa + 8);
        for (int i = 0; i < MR; i++) {
            __m256 bb = _mm256_broadcast_ss(pb + i);
            acc[i][0] = _mm256_fmadd_ps(a0, bb, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a1, bb, acc[i][1]);
        }
        pa += NR;
        pb += MR;
    }
    for (int i = 0; i < MR; i++) {
        float *p = c + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(p));
            acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(p + 8));
        }
        _mm256_storeu_ps(p, acc[i][0]);
        _mm256_storeu_ps(p + 8, acc[i][1]);
    }
}
#else
static void micro_kernel(int64_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                         int64_t ldc, int accumulate) {
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += pb[i] * pa[j];
        pa += NR;
        pb += MR;
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
#endif

/* ---------------------------------------------------------------- GEMM driver */
typedef struct {
    int64_t kc, mc, nc;   /* block sizes actually used */
    size_t thread_bytes;  /* scratch per thread */
} gemm_plan;

static gemm_plan plan_gemm(int64_t M, int64_t N, int64_t K) {
    gemm_plan p;
    p.kc = BNB_MIN((int64_t)KC, K);
    p.nc = BNB_MIN((int64_t)NC, BNB_PAD(M, NR));
    p.mc = BNB_MIN((int64_t)MC, BNB_PAD(N, MR));
    size_t floats = (size_t)(p.kc * p.nc + p.kc * p.mc + MR * NR + KC);
    p.thread_bytes = BNB_PAD(floats * sizeof(float), BNB_ALIGN);
    return p;
}

/* One unit: batch (i2, i3), m block [m0, m0+nc), n range [n0, n1). */
static void gemm_unit(const mm_args *g, const gemm_plan *p, float *scratch, int64_t i2, int64_t i3, int64_t m0,
                      int64_t nc, int64_t n0, int64_t n1) {
    float *pa = scratch;
    float *pb = pa + p->kc * p->nc;
    float *tile = pb + p->kc * p->mc; /* MR x NR edge tile */
    float *tmp = tile + MR * NR;
    const int64_t ldc = (int64_t)(g->o_nb[1] / sizeof(float));
    for (int64_t k0 = 0; k0 < g->K; k0 += p->kc) {
        const int64_t kc = BNB_MIN(p->kc, g->K - k0);
        const int accumulate = k0 > 0;
        pack_a(g, i2, i3, m0, nc, k0, kc, pa, tmp);
        for (int64_t ic = n0; ic < n1; ic += p->mc) {
            const int64_t mc = BNB_MIN(p->mc, n1 - ic);
            pack_b(g, i2, i3, ic, mc, k0, kc, pb, tmp);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const float *pan_a = pa + (jr / NR) * kc * NR;
                const int64_t nr = BNB_MIN((int64_t)NR, nc - jr);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const float *pan_b = pb + (ir / MR) * kc * MR;
                    const int64_t mr = BNB_MIN((int64_t)MR, mc - ir);
                    float *c = out_row(g, i2, i3, ic + ir) + m0 + jr;
                    if (mr == MR && nr == NR) {
                        micro_kernel(kc, pan_a, pan_b, c, ldc, accumulate);
                    } else {
                        micro_kernel(kc, pan_a, pan_b, tile, NR, 0);
                        for (int64_t i = 0; i < mr; i++)
                            for (int64_t j = 0; j < nr; j++)
                                c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * NR + j] : tile[i * NR + j];
                    }
                }
            }
        }
    }
}

static void gemm(const mm_args *g, const gemm_plan *p, char *work, int nt) {
    const int64_t n_batch = g->nb2 * g->nb3;
    const int64_t m_blocks = (g->M + p->nc - 1) / p->nc;
    /* Split n when there are too few (batch, m block) units to keep nt threads evenly busy. */
    int64_t n_split = 1;
    if ((n_batch * m_blocks) % nt != 0 && n_batch * m_blocks < 8 * (int64_t)nt) n_split = nt;
    int64_t n_chunk = BNB_PAD((g->N + n_split - 1) / n_split, MR);
    n_split = (g->N + n_chunk - 1) / n_chunk;
    const int64_t units = n_batch * m_blocks * n_split;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
    for (int64_t u = 0; u < units; u++) {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        float *scratch = (float *)(work + (size_t)tid * p->thread_bytes);
        const int64_t s = u % n_split, mb = (u / n_split) % m_blocks, bt = u / (n_split * m_blocks);
        const int64_t m0 = mb * p->nc, nc = BNB_MIN(p->nc, g->M - m0);
        const int64_t n0 = s * n_chunk, n1 = BNB_MIN(g->N, n0 + n_chunk);
        gemm_unit(g, p, scratch, bt % g->nb2, bt / g->nb2, m0, nc, n0, n1);
    }
}

/* ---------------------------------------------------------------- DOT path */
#if defined(__AVX512F__)
/* 16 elements at p (type t) as f32. */
static inline __m512 load16(const char *p, bnb_type t) {
    if (t == BNB_TYPE_F32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (t == BNB_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#endif

/* out[j][i] = dot(a_i, b_j) for i < DOT_TILE, j < RB (RB is 1 or DOT_TILE, a compile-time constant after
 * inlining). All row pointers are valid (callers repeat a row to fill a short tile). */
static inline __attribute__((always_inline)) void dot_tile(const char *const *ar, bnb_type ta, const char *const *br,
                                                           bnb_type tb, int64_t K, int RB,
                                                           float res[DOT_TILE][DOT_TILE]) {
    const size_t ea = bnb_type_size(ta), eb = bnb_type_size(tb);
    int64_t k = 0;
#if defined(__AVX512F__)
    __m512 acc[DOT_TILE][DOT_TILE];
    for (int j = 0; j < RB; j++)
        for (int i = 0; i < DOT_TILE; i++) acc[j][i] = _mm512_setzero_ps();
    for (; k + 16 <= K; k += 16) {
        __m512 va[DOT_TILE];
        for (int i = 0; i < DOT_TILE; i++) va[i] = load16(ar[i] + k * ea, ta);
        for (int j = 0; j < RB; j++) {
            __m512 vb = load16(br[j] + k * eb, tb);
            for (int i = 0; i < DOT_TILE; i++) acc[j][i] = _mm512_fmadd_ps(va[i], vb, acc[j][i]);
        }
    }
    for (int j = 0; j < RB; j++)
        for (int i = 0; i < DOT_TILE; i++) res[j][i] = _mm512_reduce_add_ps(acc[j][i]);
#else
    for (int j = 0; j < RB; j++)
        for (int i = 0; i < DOT_TILE; i++) res[j][i] = 0.f;
#endif
    /* tail (all of K without AVX-512): blocks of 8 converted to f32, accumulated in scalar lanes */
    float fa[DOT_TILE][8], fb[DOT_TILE][8];
    for (; k < K; k += 8) {
        const int64_t len = BNB_MIN((int64_t)8, K - k);
        for (int i = 0; i < DOT_TILE; i++)
            for (int64_t x = 0; x < 8; x++) fa[i][x] = x < len ? bnb_cpu_load(ar[i] + (k + x) * ea, ta) : 0.f;
        for (int j = 0; j < RB; j++)
            for (int64_t x = 0; x < 8; x++) fb[j][x] = x < len ? bnb_cpu_load(br[j] + (k + x) * eb, tb) : 0.f;
        for (int j = 0; j < RB; j++)
            for (int i = 0; i < DOT_TILE; i++) {
                float s = 0.f;
                for (int x = 0; x < 8; x++) s += fa[i][x] * fb[j][x];
                res[j][i] += s;
            }
    }
}

static void dot_path(const mm_args *g, int nt) {
    const int64_t m_tiles = (g->M + DOT_TILE - 1) / DOT_TILE;
    /* n in groups of DOT_TILE; m in chunks of 16 tiles so threads get contiguous rows of a */
    const int64_t n_groups = (g->N + DOT_TILE - 1) / DOT_TILE;
    const int64_t m_chunk = 16, m_chunks = (m_tiles + m_chunk - 1) / m_chunk;
    const int64_t units = g->nb2 * g->nb3 * n_groups * m_chunks;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && units > 1)
#endif
    for (int64_t u = 0; u < units; u++) {
        const int64_t mcx = u % m_chunks, ng = (u / m_chunks) % n_groups, bt = u / (m_chunks * n_groups);
        const int64_t i2 = bt % g->nb2, i3 = bt / g->nb2;
        const int64_t n0 = ng * DOT_TILE, nn = BNB_MIN((int64_t)DOT_TILE, g->N - n0);
        const char *br[DOT_TILE];
        for (int j = 0; j < DOT_TILE; j++) br[j] = b_row(g, i2, i3, n0 + BNB_MIN(j, nn - 1));
        for (int64_t t = mcx * m_chunk; t < BNB_MIN(m_tiles, (mcx + 1) * m_chunk); t++) {
            const int64_t m0 = t * DOT_TILE, mm = BNB_MIN((int64_t)DOT_TILE, g->M - m0);
            const char *ar[DOT_TILE];
            for (int i = 0; i < DOT_TILE; i++) ar[i] = a_row(g, i2, i3, m0 + BNB_MIN(i, mm - 1));
            float res[DOT_TILE][DOT_TILE];
            if (nn == DOT_TILE) {
                dot_tile(ar, g->ta, br, g->tb, g->K, DOT_TILE, res);
            } else {
                for (int j = 0; j < nn; j++) {
                    float r1[DOT_TILE][DOT_TILE];
                    dot_tile(ar, g->ta, &br[j], g->tb, g->K, 1, r1);
                    memcpy(res[j], r1[0], sizeof res[j]);
                }
            }
            for (int j = 0; j < nn; j++) {
                float *o = out_row(g, i2, i3, n0 + j) + m0;
                for (int i = 0; i < mm; i++) o[i] = res[j][i];
            }
        }
    }
}

/* ---------------------------------------------------------------- entry points */
size_t bnb_cpu_mul_mat_work_size(const bnb_tensor *node, int n_threads) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    if (!a || !b || !use_gemm(a->ne[1], b->ne[1], a->ne[0])) return 0;
    gemm_plan p = plan_gemm(a->ne[1], b->ne[1], a->ne[0]);
    return p.thread_bytes * (size_t)BNB_MAX(n_threads, 1);
}

bnb_status bnb_cpu_mul_mat(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    char sa[64], sb[64];
    if (node->type != BNB_TYPE_F32 || !bnb_type_is_float(a->type) || !bnb_type_is_float(b->type) ||
        a->nb[0] != bnb_type_size(a->type) || b->nb[0] != bnb_type_size(b->type) || node->nb[0] != sizeof(float) ||
        a->ne[0] != b->ne[0] || a->ne[1] != node->ne[0] || b->ne[1] != node->ne[1] || a->ne[2] == 0 ||
        a->ne[3] == 0 || b->ne[2] % a->ne[2] != 0 || b->ne[3] % a->ne[3] != 0)
        return bnb_fail(BNB_ERR_SHAPE, "cpu mul_mat: unsupported operands a %s (%s), b %s (%s)",
                        bnb_shape_str(a, sa, sizeof sa), bnb_type_name(a->type), bnb_shape_str(b, sb, sizeof sb),
                        bnb_type_name(b->type));
    if (bnb_nelements(node) == 0) return BNB_OK;
    mm_args g = mm_args_of(node);
    int nt = bnb_cpu_threads(c, g.M * g.N * g.K / 8); /* a multiply-add is cheaper than an elementwise op */
    if (g.K == 0) { /* empty sums */
        for (int64_t i3 = 0; i3 < g.nb3; i3++)
            for (int64_t i2 = 0; i2 < g.nb2; i2++)
                for (int64_t n = 0; n < g.N; n++) memset(out_row(&g, i2, i3, n), 0, (size_t)g.M * sizeof(float));
        return BNB_OK;
    }
    if (use_gemm(g.M, g.N, g.K)) {
        gemm_plan p = plan_gemm(g.M, g.N, g.K);
        /* Use as many threads as the scratch was sized for (the scheduler sizes it for c->n_threads). */
        int fit = c->work ? (int)BNB_MIN((size_t)nt, c->work_size / p.thread_bytes) : 0;
        if (fit >= 1) {
            gemm(&g, &p, c->work, fit);
            return BNB_OK;
        }
    }
    dot_path(&g, nt);
    return BNB_OK;
}
