/* CPU kernels of the optimizers: the fused in-place update (32-bit and 8-bit blockwise states, all nine
 * optimizers), the gradient squared norm and the clipping scales. Formulas: include/bnb.h (optimizers section) and
 * spec section 4; layouts: src/optim/optim-impl.h. OpenMP over elements (32-bit) or 256-element blocks (8-bit). */
#if defined(__GNUC__) && !defined(__clang__)
/* sqrtf without errno lets the compiler vectorise the update loops; nothing here reads errno */
#pragma GCC optimize("no-math-errno")
/* the update loops are short and compute-bound: 16 lanes per instruction rather than GCC's default 8 */
#pragma GCC target("prefer-vector-width=512")
#endif
#include "cpu-kernels.h"
#include "../optim/optim-impl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define OPT8_AVX512 1
#ifdef __GFNI__
#define QV_REV 1 /* quant16 keeps its search index bit-reversed */
#endif
#ifdef __AVX512VBMI__
#define OPT8_VBMI 1 /* dequantize by byte-plane permutes (deq64) */
#endif
#endif
#include "optim-div.h" /* rcp_div_default, div_by_const */


typedef struct {
    int type;
    int32_t t; /* step of this update (1 at the first) */
    float lr, b1, b2, b3, alpha, eps, wd;
    float c1, c2;         /* 1 - b1^t, sqrt(1 - b2^t) */
    float step_size;      /* Adam: -lr c2 / c1 */
    float decay;          /* 1 - lr wd (decoupled weight decay, applied when wd > 0) */
    float gscale;         /* gradient scale (clipping) */
    float uscale;         /* LAMB/LARS trust-ratio scale of the step */
    bool skip_zeros;
    bool rcpdiv;          /* AdEMAMix's divisions by c1, c2 by reciprocal + residual (rcp_div_default) */
} upd_hp;

static inline float ld(const void *p, bnb_type t, int64_t i) {
    switch (t) {
    case BNB_TYPE_F16: return bnb_f16_to_f32(((const uint16_t *)p)[i]);
    case BNB_TYPE_BF16: return bnb_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}
static inline void st(void *p, bnb_type t, int64_t i, float v) {
    switch (t) {
    case BNB_TYPE_F16: ((uint16_t *)p)[i] = bnb_f32_to_f16(v); break;
    case BNB_TYPE_BF16: ((uint16_t *)p)[i] = bnb_f32_to_bf16(v); break;
    default: ((float *)p)[i] = v;
    }
}

static inline bool finitef(float x) { return fabsf(x) <= FLT_MAX; }
static inline float signf(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }

/* One element: new states and parameter from g (already scaled). Inlined with a constant type. Conditional
 * operations are computed unconditionally and then selected: GCC does not speculate a float operation inside an
 * if (it could trap), so an if would keep the loop scalar. The selected values are the same. */
static inline __attribute__((always_inline)) void elem_update(const upd_hp *h, int type, float g, float *p, float *s1,
                                                               float *s2, float *s3) {
    float pv = *p;
    switch (type) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB: {
        float m = h->b1 * *s1 + (1.f - h->b1) * g;
        float v = h->b2 * *s2 + (1.f - h->b2) * (g * g);
        pv = pv + h->uscale * h->step_size * (m / (sqrtf(v) + h->eps * h->c2));
        float pd = pv * h->decay;
        pv = h->wd > 0.f ? pd : pv;
        *s1 = m;
        *s2 = v;
        break;
    }
    case BNB_OPTIM_MOMENTUM:
    case BNB_OPTIM_LARS: {
        float gw = g + h->wd * pv;
        g = h->wd > 0.f ? gw : g;
        float mm = h->b1 * *s1 + g;
        float m = h->t == 1 ? g : mm;
        pv = pv - h->uscale * h->lr * m;
        *s1 = m;
        break;
    }
    case BNB_OPTIM_LION: {
        float pd = pv * h->decay;
        pv = h->wd > 0.f ? pd : pv;
        pv = pv - h->lr * signf(h->b1 * *s1 + (1.f - h->b1) * g);
        *s1 = h->b2 * *s1 + (1.f - h->b2) * g;
        break;
    }
    case BNB_OPTIM_RMSPROP: {
        float gw = g + h->wd * pv;
        g = h->wd > 0.f ? gw : g;
        float v = h->b1 * *s1 + (1.f - h->b1) * (g * g);
        pv = pv - h->lr * (g / (sqrtf(v) + h->eps));
        *s1 = v;
        break;
    }
    case BNB_OPTIM_ADAGRAD: {
        float gw = g + h->wd * pv;
        g = h->wd > 0.f ? gw : g;
        float v = *s1 + g * g;
        pv = pv - h->lr * (g / (sqrtf(v) + h->eps));
        *s1 = v;
        break;
    }
    case BNB_OPTIM_ADEMAMIX: {
        float m1 = h->b1 * *s1 + (1.f - h->b1) * g;
        float m2 = h->b3 * *s3 + (1.f - h->b3) * g;
        float v = h->b2 * *s2 + (1.f - h->b2) * (g * g);
        pv = pv - h->lr * ((m1 / h->c1 + h->alpha * m2) / (sqrtf(v) / h->c2 + h->eps));
        float pd = pv * h->decay;
        pv = h->wd > 0.f ? pd : pv;
        *s1 = m1;
        *s2 = v;
        *s3 = m2;
        break;
    }
    default: break;
    }
    *p = pv;
}

/* Squared norm contribution of one element's step direction for the trust ratio (LAMB: (c2/c1) m / (sqrt(v) +
 * eps c2), LARS: m), from the states before the update. */
static inline float elem_unorm(const upd_hp *h, int type, float g, float p, float s1, float s2) {
    if (type == BNB_OPTIM_LAMB) {
        float m = h->b1 * s1 + (1.f - h->b1) * g;
        float v = h->b2 * s2 + (1.f - h->b2) * (g * g);
        float u = (h->c2 / h->c1) * (m / (sqrtf(v) + h->eps * h->c2));
        return u * u;
    }
    if (h->wd > 0.f) g = g + h->wd * p;
    float m = h->t == 1 ? g : h->b1 * s1 + g;
    return m * m;
}

/* ------------------------------------------------------------------------------------------ 32-bit states */
/* Elements [i0, i1): branch-free selects so the loop vectorises for a constant type. The parameter, gradient and
 * states never overlap. */
static inline __attribute__((always_inline)) void run32_range(const upd_hp *h, int type, bnb_type pt, bnb_type gt,
                                                               void *restrict P, const void *restrict G,
                                                               float *restrict S1, float *restrict S2,
                                                               float *restrict S3, int64_t i0, int64_t i1) {
    const upd_hp hl = *h; /* a local copy: the state stores cannot alias it, so the loop needs no alias checks */
    h = &hl;
    const bool two = bnb_optim_n_states((bnb_optim_type)type) == 2;
    const bool three = type == BNB_OPTIM_ADEMAMIX;
    for (int64_t i = i0; i < i1; i++) {
        float g = ld(G, gt, i) * h->gscale;
        float p0 = ld(P, pt, i), p = p0;
        float a = S1[i], b = two ? S2[i] : 0.f, c = three ? S3[i] : 0.f;
        float a0 = a, b0 = b, c0 = c;
        elem_update(h, type, g, &p, &a, &b, &c);
        bool fin = finitef(g);
        bool keep = h->skip_zeros && g == 0.f;
        S1[i] = keep ? a0 : (fin ? a : 0.f);
        if (two) S2[i] = keep ? b0 : (fin ? b : 0.f);
        if (three) S3[i] = keep ? c0 : (fin ? c : 0.f);
        if (pt == BNB_TYPE_F32)
            ((float *)P)[i] = (fin && !keep) ? p : p0;
        else if (fin && !keep)
            st(P, pt, i, p);
    }
}

#ifdef OPT8_AVX512
/* elem_update on 16 lanes with f32 parameter and gradient, for the optimizers that take a square root: GCC 12 ignores
 * the no-math-errno pragma and keeps sqrtf's errno branch, so those loops stayed scalar (Adam 32-bit ~10 cycles an
 * element). The same f32 operations in the same order (separate multiplies and adds: the C11 build does not
 * contract them) and the same selects as elem_update / run32_range, so results are bit-identical. */
typedef struct {
    __m512 b1, omb1, b2, omb2, b3, omb3, usss, epsc2, lr, c1, c2, alpha, eps, decay, gscale, wdv, rc1, rc2;
    __mmask16 wd, skipz;
    bool rcp; /* c1, c2 in [2^-20, 2^20] and h->rcpdiv: div_by_const */
} vec_hp;

static inline vec_hp vec_hp_of(const upd_hp *h) {
    vec_hp k;
    k.b1 = _mm512_set1_ps(h->b1), k.omb1 = _mm512_set1_ps(1.f - h->b1);
    k.b2 = _mm512_set1_ps(h->b2), k.omb2 = _mm512_set1_ps(1.f - h->b2);
    k.b3 = _mm512_set1_ps(h->b3), k.omb3 = _mm512_set1_ps(1.f - h->b3);
    k.usss = _mm512_set1_ps(h->uscale * h->step_size), k.epsc2 = _mm512_set1_ps(h->eps * h->c2);
    k.lr = _mm512_set1_ps(h->lr), k.c1 = _mm512_set1_ps(h->c1), k.c2 = _mm512_set1_ps(h->c2);
    k.alpha = _mm512_set1_ps(h->alpha), k.eps = _mm512_set1_ps(h->eps), k.decay = _mm512_set1_ps(h->decay);
    k.gscale = _mm512_set1_ps(h->gscale), k.wdv = _mm512_set1_ps(h->wd);
    k.wd = h->wd > 0.f ? 0xffff : 0, k.skipz = h->skip_zeros ? 0xffff : 0;
    k.rcp = h->rcpdiv && h->c1 >= 0x1p-20f && h->c1 <= 0x1p20f && h->c2 >= 0x1p-20f && h->c2 <= 0x1p20f;
    k.rc1 = _mm512_set1_ps(1.f / (k.rcp ? h->c1 : 1.f)), k.rc2 = _mm512_set1_ps(1.f / (k.rcp ? h->c2 : 1.f));
    return k;
}


/* New parameter and states (before the skip-zeros select). type: Adam (also AdamW, LAMB), RMSprop, Adagrad or
 * AdEMAMix. Adam's and AdEMAMix's new states are zero in the lanes outside fin (the finite-gradient select folded
 * into their last add; the parameter of those lanes is not stored). */
static inline __attribute__((always_inline)) __m512 vec_update(const vec_hp *k, int type, __mmask16 fin, __m512 g,
                                                               __m512 pv, __m512 *s1, __m512 *s2, __m512 *s3) {
    if (type == BNB_OPTIM_RMSPROP || type == BNB_OPTIM_ADAGRAD) {
        g = _mm512_mask_add_ps(g, k->wd, g, _mm512_mul_ps(k->wdv, pv));
        const __m512 v = type == BNB_OPTIM_ADAGRAD
                             ? _mm512_add_ps(*s1, _mm512_mul_ps(g, g))
                             : _mm512_add_ps(_mm512_mul_ps(k->b1, *s1), _mm512_mul_ps(k->omb1, _mm512_mul_ps(g, g)));
        *s1 = v;
        return _mm512_sub_ps(pv, _mm512_mul_ps(k->lr, _mm512_div_ps(g, _mm512_add_ps(_mm512_sqrt_ps(v), k->eps))));
    }
    const __m512 m = _mm512_maskz_add_ps(fin, _mm512_mul_ps(k->b1, *s1), _mm512_mul_ps(k->omb1, g));
    const __m512 v = _mm512_maskz_add_ps(fin, _mm512_mul_ps(k->b2, *s2), _mm512_mul_ps(k->omb2, _mm512_mul_ps(g, g)));
    if (type == BNB_OPTIM_ADEMAMIX) {
        const __m512 m2 = _mm512_maskz_add_ps(fin, _mm512_mul_ps(k->b3, *s3), _mm512_mul_ps(k->omb3, g));
        const __m512 sv = _mm512_sqrt_ps(v);
        const __m512 mc = k->rcp ? div_by_const(m, k->c1, k->rc1) : _mm512_div_ps(m, k->c1);
        const __m512 num = _mm512_add_ps(mc, _mm512_mul_ps(k->alpha, m2));
        const __m512 den = _mm512_add_ps(k->rcp ? div_by_const(sv, k->c2, k->rc2) : _mm512_div_ps(sv, k->c2), k->eps);
        pv = _mm512_sub_ps(pv, _mm512_mul_ps(k->lr, _mm512_div_ps(num, den)));
        *s3 = m2;
    } else {
        pv = _mm512_add_ps(pv, _mm512_mul_ps(k->usss, _mm512_div_ps(m, _mm512_add_ps(_mm512_sqrt_ps(v), k->epsc2))));
    }
    *s1 = m, *s2 = v;
    return _mm512_mask_mul_ps(pv, k->wd, pv, k->decay);
}

/* run32_range for f32 parameter and gradient, 16 lanes at a time (masked tail) */
static inline __attribute__((always_inline)) void run32_vec_t(const upd_hp *h, const int type, float *restrict P,
                                                              const float *restrict G, float *restrict S1,
                                                              float *restrict S2, float *restrict S3, int64_t i0,
                                                              int64_t i1) {
    const vec_hp k = vec_hp_of(h);
    const bool two = type != BNB_OPTIM_RMSPROP && type != BNB_OPTIM_ADAGRAD, three = type == BNB_OPTIM_ADEMAMIX;
    const __m512 zero = _mm512_setzero_ps(), fmax = _mm512_set1_ps(FLT_MAX);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 ld = i1 - i >= 16 ? 0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(ld, G + i), k.gscale);
        const __m512 p0 = _mm512_maskz_loadu_ps(ld, P + i);
        const __m512 a0 = _mm512_maskz_loadu_ps(ld, S1 + i);
        const __m512 b0 = two ? _mm512_maskz_loadu_ps(ld, S2 + i) : zero;
        const __m512 c0 = three ? _mm512_maskz_loadu_ps(ld, S3 + i) : zero;
        __m512 a = a0, b = b0, c = c0;
        const __m512 pv = vec_update(&k, type, (__mmask16)0xffff, g, p0, &a, &b, &c);
        const __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(g), fmax, _CMP_LE_OQ);
        const __mmask16 keep = k.skipz & _mm512_cmp_ps_mask(g, zero, _CMP_EQ_OQ);
        _mm512_mask_storeu_ps(S1 + i, ld, _mm512_mask_mov_ps(_mm512_maskz_mov_ps(fin, a), keep, a0));
        if (two) _mm512_mask_storeu_ps(S2 + i, ld, _mm512_mask_mov_ps(_mm512_maskz_mov_ps(fin, b), keep, b0));
        if (three) _mm512_mask_storeu_ps(S3 + i, ld, _mm512_mask_mov_ps(_mm512_maskz_mov_ps(fin, c), keep, c0));
        _mm512_mask_storeu_ps(P + i, ld, _mm512_mask_mov_ps(p0, fin & ~keep, pv));
    }
}

/* true if run32_vec took the range */
static bool run32_vec(const upd_hp *h, void *P, const void *G, float *S1, float *S2, float *S3, int64_t i0,
                      int64_t i1) {
    switch (h->type) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB: run32_vec_t(h, BNB_OPTIM_ADAM, P, G, S1, S2, S3, i0, i1); return true;
    case BNB_OPTIM_RMSPROP: run32_vec_t(h, BNB_OPTIM_RMSPROP, P, G, S1, S2, S3, i0, i1); return true;
    case BNB_OPTIM_ADAGRAD: run32_vec_t(h, BNB_OPTIM_ADAGRAD, P, G, S1, S2, S3, i0, i1); return true;
    case BNB_OPTIM_ADEMAMIX: run32_vec_t(h, BNB_OPTIM_ADEMAMIX, P, G, S1, S2, S3, i0, i1); return true;
    default: return false;
    }
}
#endif

#define DISPATCH_TYPE(CALL)                                                                                           \
    switch (h->type) {                                                                                                \
    case BNB_OPTIM_ADAM: CALL(BNB_OPTIM_ADAM); break;                                                                 \
    case BNB_OPTIM_ADAMW: CALL(BNB_OPTIM_ADAMW); break;                                                               \
    case BNB_OPTIM_MOMENTUM: CALL(BNB_OPTIM_MOMENTUM); break;                                                         \
    case BNB_OPTIM_LION: CALL(BNB_OPTIM_LION); break;                                                                 \
    case BNB_OPTIM_RMSPROP: CALL(BNB_OPTIM_RMSPROP); break;                                                           \
    case BNB_OPTIM_ADAGRAD: CALL(BNB_OPTIM_ADAGRAD); break;                                                            \
    case BNB_OPTIM_LAMB: CALL(BNB_OPTIM_LAMB); break;                                                                 \
    case BNB_OPTIM_LARS: CALL(BNB_OPTIM_LARS); break;                                                                 \
    case BNB_OPTIM_ADEMAMIX: CALL(BNB_OPTIM_ADEMAMIX); break;                                                         \
    default: break;                                                                                                   \
    }

/* The F32/F32 case gets its own instantiation per optimizer (the hot, vectorised path). */
static __attribute__((noinline)) void run32(const upd_hp *h, bnb_type pt, bnb_type gt, void *P, const void *G, float *S1, float *S2,
                  float *S3, int64_t i0, int64_t i1) {
    if (pt == BNB_TYPE_F32 && gt == BNB_TYPE_F32) {
#ifdef OPT8_AVX512
        if (run32_vec(h, P, G, S1, S2, S3, i0, i1)) return;
#endif
#define CALL_F32(T) run32_range(h, T, BNB_TYPE_F32, BNB_TYPE_F32, P, G, S1, S2, S3, i0, i1)
        DISPATCH_TYPE(CALL_F32)
#undef CALL_F32
    } else {
#define CALL_ANY(T) run32_range(h, T, pt, gt, P, G, S1, S2, S3, i0, i1)
        DISPATCH_TYPE(CALL_ANY)
#undef CALL_ANY
    }
}

/* ------------------------------------------------------------------------------------------ 8-bit states */
#include "optim-q8.h" /* qvec_tables, plane_lookup64, quant_qn (AVX-512) */
#include "optim-q8tab.h" /* quant_tab_quads: the count by a direct table (AVX-512) */
#include "optim-q8bkt.h" /* quant_bkt_quads: the count by two byte-table levels (VBMI) */

typedef struct {
    uint8_t *codes;
    float *absmax;
    const float *map;
    const quant_table *qt;
#ifdef OPT8_AVX512
    const qvec_tables *qv;
#endif
} opt8_parts;

static opt8_parts opt8_of(bnb_tensor *s) {
    int64_t n = bnb_nelements(s);
    uint8_t *base = s->data;
    opt8_parts o = {0};
    o.codes = base;
    o.absmax = (float *)(base + bnb_opt8_absmax_offset(n));
    o.map = (const float *)(base + bnb_opt8_map_offset(n));
    return o;
}

#ifdef OPT8_VBMI
/* 64 dequantized values map[code] * am into out: plane_lookup64 of the codes transposed (dword 4L + q <- 4q + L);
 * the same floats as the gather */
static inline void deq64(const qvec_tables *T, const uint8_t *codes, __m512 am, float *out) {
    const __m512i tr = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512 r[4];
    plane_lookup64(T, _mm512_permutexvar_epi32(tr, _mm512_loadu_si512(codes)), r);
    for (int q = 0; q < 4; q++) _mm512_storeu_ps(out + 16 * q, _mm512_mul_ps(r[q], am));
}
#endif

static inline void dequant_block(const opt8_parts *o, int64_t off, int64_t blk, int len, float *out) {
    float am = o->absmax[blk];
#ifdef OPT8_AVX512
    if (len == BNB_OPTIM_BLOCK) {
        const __m512 vam = _mm512_set1_ps(am);
#ifdef OPT8_VBMI
        if (o->qv->planes) {
            for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) deq64(o->qv, o->codes + off + j, vam, out + j);
            return;
        }
#endif
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16) {
            __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(o->codes + off + j)));
            _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_i32gather_ps(idx, o->map, 4), vam));
        }
        return;
    }
#endif
    for (int j = 0; j < len; j++) out[j] = o->map[o->codes[off + j]] * am;
}

#ifdef OPT8_AVX512
/* Codes of a full block of f32 values whose absmax am is known (o->qv->ok): the table, the 16-bit-key count,
 * the count or the search, whichever the tables allow. */
static inline __attribute__((always_inline)) void quant_block_am(const opt8_parts *o, int64_t off, const float *vals,
                                                                 float am) {
    const __m512 vam = _mm512_set1_ps(am);
    if (o->qv->tab) { /* the whole block by table entries (quant_tab_quads) */
        const q8_quad Q[4] = {{o->qv, vals, vam, o->codes + off}, {o->qv, vals + 64, vam, o->codes + off + 64},
                              {o->qv, vals + 128, vam, o->codes + off + 128},
                              {o->qv, vals + 192, vam, o->codes + off + 192}};
        quant_tab_quads(4, Q);
        return;
    }
#if defined(QV_REV) && defined(OPT8_VBMI)
    if (o->qv->bkt) { /* the whole block by byte-table levels (quant_bkt_quads) */
        const q8_quad Q[4] = {{o->qv, vals, vam, o->codes + off}, {o->qv, vals + 64, vam, o->codes + off + 64},
                              {o->qv, vals + 128, vam, o->codes + off + 128},
                              {o->qv, vals + 192, vam, o->codes + off + 192}};
        quant_bkt_quads(4, Q);
        return;
    }
    if (o->qv->wcount) { /* the whole block: 8 chains of 32 lanes (quant_word_quads) */
        const q8_quad Q[4] = {{o->qv, vals, vam, o->codes + off}, {o->qv, vals + 64, vam, o->codes + off + 64},
                              {o->qv, vals + 128, vam, o->codes + off + 128},
                              {o->qv, vals + 192, vam, o->codes + off + 192}};
        quant_word_quads(4, Q);
        return;
    }
#endif
    if (o->qv->counted) { /* two quads at a time: 8 search chains in flight (quant_count_quads) */
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 128) {
            const q8_quad Q[2] = {{o->qv, vals + j, vam, o->codes + off + j},
                                  {o->qv, vals + j + 64, vam, o->codes + off + j + 64}};
            quant_count_quads(2, Q);
        }
        return;
    }
    for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16 * QN) QUANT_QN(o->qv, o->map, vals + j, vam, o->codes + off + j);
}
#endif

/* New absmax of the block, then the codes. */
static inline void quant_block(const opt8_parts *o, int64_t off, int64_t blk, int len, const float *vals) {
#ifdef OPT8_AVX512
    if (len == BNB_OPTIM_BLOCK && o->qv->ok) {
        /* max(a, m) is "a > m ? a : m" as below: a NaN value is skipped; the order of a max does not matter */
        __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 32) {
            m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(vals + j)), m0);
            m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(vals + j + 16)), m1);
        }
        const float am = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        o->absmax[blk] = am;
        quant_block_am(o, off, vals, am);
        return;
    }
#endif
    float am = 0.f;
    for (int j = 0; j < len; j++) {
        float a = fabsf(vals[j]);
        am = a > am ? a : am;
    }
    o->absmax[blk] = am;
    for (int j = 0; j < len; j++) {
        float y = am > 0.f ? vals[j] / am : 0.f;
        o->codes[off + j] = (uint8_t)quantize_code_table(o->map, o->qt, y, vals[j]);
    }
}

typedef struct {
    const upd_hp *h;
    bnb_type pt, gt;
    void *P;
    const void *G;
    opt8_parts q1, q2;
    int64_t n, npad; /* AdEMAMix: m2 at element offset npad of state1 */
} run8_args;

static size_t type_size(bnb_type t) { return t == BNB_TYPE_F16 || t == BNB_TYPE_BF16 ? 2 : 4; }

/* Software prefetch of block b's parameter, gradient and codes into L1, issued OPT8_PREFETCH_BLOCKS blocks ahead: the
 * re-quantization of a block is long and touches no new memory, and on the shared Zen 5 host the update then waited
 * on the parameter / gradient loads (perf: ~18% of the samples on them at times; prefetched, Adam8 with two threads
 * measured 24 -> 12 ms in such a period, no change in quiet ones). A prefetch never faults: no bounds check. */
#define OPT8_PREFETCH_BLOCKS 2
static inline void prefetch_block(const run8_args *a, int64_t b, const bool three) {
#if defined(__GNUC__)
    const int64_t i0 = b * BNB_OPTIM_BLOCK;
    const char *p = (const char *)a->P + (size_t)i0 * type_size(a->pt);
    const char *g = (const char *)a->G + (size_t)i0 * type_size(a->gt);
    for (size_t j = 0; j < BNB_OPTIM_BLOCK * type_size(a->pt); j += 64) __builtin_prefetch(p + j, 1, 3);
    for (size_t j = 0; j < BNB_OPTIM_BLOCK * type_size(a->gt); j += 64) __builtin_prefetch(g + j, 0, 3);
    for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) {
        __builtin_prefetch(a->q1.codes + i0 + j, 1, 3);
        if (a->q2.codes) __builtin_prefetch(a->q2.codes + i0 + j, 1, 3);
        if (three) __builtin_prefetch(a->q1.codes + a->npad + i0 + j, 1, 3);
    }
#endif
}

/* One 256-element block b: dequantize, update in f32 (the 32-bit loop on the block's f32 states: the same
 * per-element operations, vectorised), update the parameter, re-quantize. */
static inline __attribute__((always_inline)) void run8_block_t(const run8_args *a, int64_t b, const int type) {
    const upd_hp *h = a->h;
    const bool two = bnb_optim_n_states((bnb_optim_type)type) == 2, three = type == BNB_OPTIM_ADEMAMIX;
    int64_t i0 = b * BNB_OPTIM_BLOCK;
    int len = (int)BNB_MIN((int64_t)BNB_OPTIM_BLOCK, a->n - i0);
    prefetch_block(a, b + OPT8_PREFETCH_BLOCKS, three);
    _Alignas(64) float s1[BNB_OPTIM_BLOCK], s2[BNB_OPTIM_BLOCK], s3[BNB_OPTIM_BLOCK];
    dequant_block(&a->q1, i0, b, len, s1);
    if (two) dequant_block(&a->q2, i0, b, len, s2);
    if (three) dequant_block(&a->q1, a->npad + i0, a->npad / BNB_OPTIM_BLOCK + b, len, s3);
    void *P = (char *)a->P + (size_t)i0 * type_size(a->pt);
    const void *G = (const char *)a->G + (size_t)i0 * type_size(a->gt);
    /* a call, not inlined here: inside this large function GCC leaves the loop scalar */
    run32(h, a->pt, a->gt, P, G, s1, two ? s2 : NULL, three ? s3 : NULL, 0, len);
    quant_block(&a->q1, i0, b, len, s1);
    if (two) quant_block(&a->q2, i0, b, len, s2);
    if (three) quant_block(&a->q1, a->npad + i0, a->npad / BNB_OPTIM_BLOCK + b, len, s3);
}

#include "optim-block.h" /* adam8_block_avx, lion8_block_avx: the fused block kernels (AVX-512) */

static void run8_block(const run8_args *a, int64_t b) {
    const upd_hp *h = a->h;
#ifdef OPT8_AVX512
    if (a->pt == BNB_TYPE_F32 && a->gt == BNB_TYPE_F32 && (b + 1) * BNB_OPTIM_BLOCK <= a->n && a->q1.qv->ok) {
        /* skip_zeros as a constant: without it the states' selects fold into the updates' last adds */
        const bool sz = h->skip_zeros;
        if (h->type == BNB_OPTIM_LION) {
            sz ? lion8_block_avx(a, b, true) : lion8_block_avx(a, b, false);
            return;
        }
        if (a->q2.qv && a->q2.qv->ok) {
            if (h->type == BNB_OPTIM_ADAM || h->type == BNB_OPTIM_ADAMW || h->type == BNB_OPTIM_LAMB) {
                sz ? adam8_block_avx(a, b, false, true) : adam8_block_avx(a, b, false, false);
                return;
            }
            if (h->type == BNB_OPTIM_ADEMAMIX) {
                sz ? adam8_block_avx(a, b, true, true) : adam8_block_avx(a, b, true, false);
                return;
            }
        }
    }
#endif
#define CALL_8(T) run8_block_t(a, b, T)
    DISPATCH_TYPE(CALL_8)
#undef CALL_8
}

/* ------------------------------------------------------------------------------------------ the update node */

/* Reads the hyperparameters; t = stored step + 1. */
static void read_hyper(const bnb_tensor *node, upd_hp *h) {
    const float *hy = node->src[4]->data;
    int32_t step;
    memcpy(&step, &hy[BNB_HYPER_STEP], sizeof step);
    memset(h, 0, sizeof *h);
    h->type = bnb_get_op_i32(node, BNB_UPD_P_TYPE);
    h->t = step + 1;
    h->lr = hy[BNB_HYPER_LR];
    h->b1 = hy[BNB_HYPER_BETA1];
    h->b2 = hy[BNB_HYPER_BETA2];
    h->b3 = hy[BNB_HYPER_BETA3];
    h->alpha = hy[BNB_HYPER_ALPHA];
    h->eps = hy[BNB_HYPER_EPS];
    h->wd = hy[BNB_HYPER_WD];
    bnb_optim_bias_corrections(h->b1, h->b2, h->t, &h->c1, &h->c2);
    h->step_size = -h->lr * h->c2 / h->c1;
    h->decay = 1.f - h->lr * h->wd;
    h->gscale = node->src[5] ? *(const float *)node->src[5]->data : 1.f;
    h->uscale = 1.f;
    h->skip_zeros = bnb_get_op_i32(node, BNB_UPD_P_FLAGS) & BNB_UPD_F_SKIP_ZEROS;
    h->rcpdiv = rcp_div_default();
}

/* LAMB/LARS: ||u||^2 and ||p||^2 over the whole tensor with the states before this update. */
static void trust_norms(const bnb_cpu_ctx *c, const bnb_tensor *node, const upd_hp *h, double *unorm, double *pnorm) {
    const bnb_tensor *pt = node->src[0], *gt = node->src[1];
    int64_t n = bnb_nelements(pt);
    int bits = bnb_get_op_i32(node, BNB_UPD_P_BITS);
    double us = 0, ps = 0;
    int nth = bnb_cpu_threads(c, n);
    if (bits == 32) {
        const float *S1 = node->src[2]->data, *S2 = node->src[3] ? node->src[3]->data : NULL;
#pragma omp parallel for num_threads(nth) reduction(+ : us, ps) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float g = ld(gt->data, gt->type, i) * h->gscale, p = ld(pt->data, pt->type, i);
            ps += (double)p * p;
            if (!finitef(g) || (h->skip_zeros && g == 0.f)) continue;
            us += elem_unorm(h, h->type, g, p, S1[i], S2 ? S2[i] : 0.f);
        }
    } else {
        opt8_parts q1 = opt8_of(node->src[2]), q2 = node->src[3] ? opt8_of(node->src[3]) : q1;
        int64_t nblk = (n + BNB_OPTIM_BLOCK - 1) / BNB_OPTIM_BLOCK;
#pragma omp parallel for num_threads(nth) reduction(+ : us, ps) schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t i0 = b * BNB_OPTIM_BLOCK;
            int len = (int)BNB_MIN((int64_t)BNB_OPTIM_BLOCK, n - i0);
            for (int j = 0; j < len; j++) {
                float g = ld(gt->data, gt->type, i0 + j) * h->gscale, p = ld(pt->data, pt->type, i0 + j);
                ps += (double)p * p;
                if (!finitef(g) || (h->skip_zeros && g == 0.f)) continue;
                float s1 = q1.map[q1.codes[i0 + j]] * q1.absmax[b];
                float s2 = node->src[3] ? q2.map[q2.codes[i0 + j]] * q2.absmax[b] : 0.f;
                us += elem_unorm(h, h->type, g, p, s1, s2);
            }
        }
    }
    *unorm = us;
    *pnorm = ps;
}

static bool row_has_grad(const void *G, bnb_type gt, int64_t i0, int64_t len) {
    for (int64_t j = 0; j < len; j++)
        if (ld(G, gt, i0 + j) != 0.f) return true; /* NaN counts as a gradient */
    return false;
}

static bnb_status cpu_optimizer_update(const bnb_cpu_ctx *c, bnb_tensor *node) {
    bnb_tensor *param = node->src[0], *grad = node->src[1];
    int64_t n = bnb_nelements(param);
    int bits = bnb_get_op_i32(node, BNB_UPD_P_BITS), flags = bnb_get_op_i32(node, BNB_UPD_P_FLAGS);
    upd_hp h;
    read_hyper(node, &h);
    float max_unorm = ((const float *)node->src[4]->data)[BNB_HYPER_MAX_UNORM];
    if (bnb_optim_uses_unorm((bnb_optim_type)h.type) && max_unorm > 0.f) {
        double un, pn;
        trust_norms(c, node, &h, &un, &pn);
        double u = sqrt(un), lim = max_unorm * sqrt(pn);
        h.uscale = u > lim ? (float)(lim / u) : 1.f;
    }
    int nth = bnb_cpu_threads(c, n);
    if (bits == 32) {
        float *S1 = node->src[2]->data, *S2 = node->src[3] ? node->src[3]->data : NULL;
        float *S3 = h.type == BNB_OPTIM_ADEMAMIX ? S1 + n : NULL;
        if (flags & BNB_UPD_F_SPARSE_ROWS) {
            int64_t ne0 = param->ne[0], rows = n / (ne0 ? ne0 : 1);
#pragma omp parallel for num_threads(nth) schedule(static)
            for (int64_t r = 0; r < rows; r++)
                if (row_has_grad(grad->data, grad->type, r * ne0, ne0))
                    run32(&h, param->type, grad->type, param->data, grad->data, S1, S2, S3, r * ne0, (r + 1) * ne0);
        } else {
            /* chunks of 4096 keep every thread's range aligned and the loop body simple */
            const int64_t chunk = 4096, nch = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nth) schedule(static)
            for (int64_t k = 0; k < nch; k++)
                run32(&h, param->type, grad->type, param->data, grad->data, S1, S2, S3, k * chunk,
                      BNB_MIN(n, (k + 1) * chunk));
        }
    } else {
        run8_args a = {&h, param->type, grad->type, param->data, grad->data, opt8_of(node->src[2]), {0}, n,
                       bnb_get_op_i32(node, BNB_UPD_P_NPAD)};
        if (node->src[3]) a.q2 = opt8_of(node->src[3]);
        quant_table t1, t2;
        quant_table_build(a.q1.map, &t1);
        a.q1.qt = &t1;
        if (node->src[3]) {
            quant_table_build(a.q2.map, &t2);
            a.q2.qt = &t2;
        }
#ifdef OPT8_AVX512
        qvec_tables v1, v2;
#if defined(QV_REV) && defined(OPT8_VBMI)
        struct q8bkt bk[2];
#endif
        qvec_tables_build(a.q1.map, &v1);
        a.q1.qv = &v1;
        if (node->src[3]) {
            qvec_tables_build(a.q2.map, &v2);
            a.q2.qv = &v2;
        }
        /* the count re-quantizer (thresholds cached per map) */
        if (getenv("BNB_OPT8_NO_COUNT") == NULL) {
            if (v1.ok) qvec_count_cached(a.q1.map, &v1);
            if (node->src[3] && v2.ok) qvec_count_cached(a.q2.map, &v2);
#if defined(QV_REV) && defined(OPT8_VBMI)
            /* the 16-bit-key count (quant_word_quads), with the plane lookups (measured on Zen 5 and the Xeon) */
            if (v1.planes && getenv("BNB_OPT8_NO_WORD") == NULL) {
                qvec_word_build(&v1);
                if (node->src[3]) qvec_word_build(&v2);
                /* the byte-table levels (quant_bkt_quads) in place of the word search where the map allows */
                if (getenv("BNB_OPT8_NO_BKT") == NULL) {
                    if (q8bkt_build(&v1, &bk[0])) v1.bkt = &bk[0];
                    if (node->src[3] && q8bkt_build(&v2, &bk[1])) v2.bkt = &bk[1];
                }
            }
#endif
        }
        /* the table re-quantizer (quant_tab_quads): built per update from the count thresholds, large tensors only */
        struct q8tab *tabs = NULL;
        if (n >= QT8_MIN_N && v1.counted && (!node->src[3] || v2.counted) && q8tab_default() &&
            (tabs = malloc(2 * sizeof *tabs)) != NULL) {
            tabs[0].rcp = tabs[1].rcp = h.rcpdiv;
            if (q8tab_build(&v1, &tabs[0])) v1.tab = &tabs[0];
            if (node->src[3] && q8tab_build(&v2, &tabs[1])) v2.tab = &tabs[1];
        }
#endif
        int64_t nblk = (n + BNB_OPTIM_BLOCK - 1) / BNB_OPTIM_BLOCK;
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int64_t b = 0; b < nblk; b++) run8_block(&a, b);
#ifdef OPT8_AVX512
        free(tabs);
#endif
    }
    float *hy = node->src[4]->data;
    memcpy(&hy[BNB_HYPER_STEP], &h.t, sizeof h.t);
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------ norms and clipping */
static double sqnorm(const bnb_cpu_ctx *c, const bnb_tensor *g) {
    int64_t n = bnb_nelements(g);
    double s = 0;
    int nth = bnb_cpu_threads(c, n);
    if (g->type == BNB_TYPE_F32) {
        const float *x = g->data;
#pragma omp parallel for num_threads(nth) reduction(+ : s) schedule(static)
        for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    } else {
#pragma omp parallel for num_threads(nth) reduction(+ : s) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double v = ld(g->data, g->type, i);
            s += v * v;
        }
    }
    return s;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static bnb_status cpu_optimizer_clip(const bnb_cpu_ctx *c, bnb_tensor *node) {
    float *out = node->data;
    if (bnb_get_op_i32(node, BNB_CLIP_P_MODE) == BNB_CLIP_GLOBAL) {
        double total = sqrt((double)*(const float *)node->src[0]->data);
        double s = bnb_get_op_f32(node, BNB_CLIP_P_MAX_NORM) / (total + 1e-6);
        out[0] = (isfinite(s) && s < 1.0) ? (float)s : 1.f;
        return BNB_OK;
    }
    double sq = sqnorm(c, node->src[0]);
    float *hist = node->src[1]->data;
    const float *hy = node->src[2]->data;
    int32_t step;
    memcpy(&step, &hy[BNB_HYPER_STEP], sizeof step);
    float scale = 1.f;
    if (isfinite(sq)) {
        int32_t t = step + 1, cnt = t < BNB_OPTIM_HISTORY_N ? t : BNB_OPTIM_HISTORY_N;
        hist[t % BNB_OPTIM_HISTORY_N] = (float)sq;
        /* percentile of the norms recorded so far: slots 1..t before the ring is full, all once it is */
        float sorted[BNB_OPTIM_HISTORY_N];
        memcpy(sorted, t < BNB_OPTIM_HISTORY_N ? hist + 1 : hist, (size_t)cnt * sizeof(float));
        qsort(sorted, (size_t)cnt, sizeof(float), cmp_float);
        float clip = sqrtf(sorted[bnb_get_op_i32(node, BNB_CLIP_P_PERCENTILE) * cnt / BNB_OPTIM_HISTORY_N]);
        float cur = sqrtf((float)sq);
        if (cur > clip) scale = clip / cur;
    }
    if (node->src[3]) scale *= *(const float *)node->src[3]->data;
    out[0] = scale;
    return BNB_OK;
}

static bnb_status cpu_optimizer_gnorm(const bnb_cpu_ctx *c, bnb_tensor *node) {
    double s = sqnorm(c, node->src[0]);
    if (node->src[1]) s += *(const float *)node->src[1]->data;
    *(float *)node->data = (float)s;
    return BNB_OK;
}

bnb_status bnb_cpu_optimizer(const bnb_cpu_ctx *c, bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_OPTIMIZER_UPDATE: return cpu_optimizer_update(c, node);
    case BNB_OP_OPTIMIZER_GNORM: return cpu_optimizer_gnorm(c, node);
    case BNB_OP_OPTIMIZER_CLIP: return cpu_optimizer_clip(c, node);
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cpu backend: %s is not an optimizer op", bnb_op_name(node->op));
    }
}
