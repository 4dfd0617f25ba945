/* The fused 8-bit block kernels of the CPU optimizers (included by optim.c only, after the 8-bit helpers; AVX-512):
 * full 256-element blocks with f32 parameter and gradient, the old states dequantized, updated, their absmax kept
 * and the parameter stored 16 lanes at a time, then the codes. Bit-identical to the generic path (run8_block_t). */
#ifndef BNB_CPU_OPTIM_BLOCK_H
#define BNB_CPU_OPTIM_BLOCK_H

#ifdef OPT8_AVX512
/* 16 dequantized values: map[code] * absmax, as dequant_block (a gather) */
static inline __m512 deq16(const opt8_parts *o, int64_t off, __m512 am) {
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(o->codes + off)));
    return _mm512_mul_ps(_mm512_i32gather_ps(idx, o->map, 4), am);
}

/* Adam / AdamW / LAMB (three = false) and AdEMAMix (three = true) on a full block with f32 parameter and gradient:
 * dequantize, update and the states' absmax 16 lanes at a time in registers, then re-quantize. The f32 operations
 * are elem_update's / run32_range's, in the same order and without contraction (separate multiplies and adds), and
 * the selects are the same, so parameters and codes are bit-identical to the generic path. */
static inline __attribute__((always_inline)) void adam8_block_avx(const run8_args *a, int64_t b, const bool three,
                                                                  const bool skipz) {
    const upd_hp *h = a->h;
    const opt8_parts *q1 = &a->q1, *q2 = &a->q2;
    const int64_t i0 = b * BNB_OPTIM_BLOCK, i3 = a->npad + i0, b3 = a->npad / BNB_OPTIM_BLOCK + b;
    float *P = (float *)a->P + i0;
    const float *G = (const float *)a->G + i0;
    _Alignas(64) float s1[BNB_OPTIM_BLOCK], s2[BNB_OPTIM_BLOCK], s3[BNB_OPTIM_BLOCK];
    prefetch_block(a, b + OPT8_PREFETCH_BLOCKS, three);
    const vec_hp k = vec_hp_of(h);
    const __m512 zero = _mm512_setzero_ps(), fmax = _mm512_set1_ps(FLT_MAX);
    const __m512 am1 = _mm512_set1_ps(q1->absmax[b]), am2 = _mm512_set1_ps(q2->absmax[b]);
    const __m512 am3 = three ? _mm512_set1_ps(q1->absmax[b3]) : zero;
    __m512 mx1 = zero, mx2 = zero, mx3 = zero;
    bool pre = false; /* the old states dequantized into s1..s3 first (plane lookups), the update overwrites them */
#ifdef OPT8_VBMI
    pre = q1->qv->planes;
    for (int j = 0; pre && j < BNB_OPTIM_BLOCK; j += 64) {
        deq64(q1->qv, q1->codes + i0 + j, am1, s1 + j);
        deq64(q2->qv, q2->codes + i0 + j, am2, s2 + j);
        if (three) deq64(q1->qv, q1->codes + i3 + j, am3, s3 + j);
    }
#endif
#define DEQ(o, s, off, am) (pre ? _mm512_load_ps(s + j) : deq16(o, off, am))
    for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16) {
        const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(G + j), k.gscale);
        const __m512 p0 = _mm512_loadu_ps(P + j);
        const __m512 a1 = DEQ(q1, s1, i0 + j, am1), a2 = DEQ(q2, s2, i0 + j, am2);
        const __m512 a3 = three ? DEQ(q1, s3, i3 + j, am3) : zero;
        const __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(g), fmax, _CMP_LE_OQ);
        /* state: keep ? old : (finite ? new : 0), the zero from vec_update; parameter: finite && !keep ? new : old */
        __m512 n1 = a1, n2 = a2, n3 = a3;
        const __m512 pv = vec_update(&k, three ? BNB_OPTIM_ADEMAMIX : BNB_OPTIM_ADAM, fin, g, p0, &n1, &n2, &n3);
        __mmask16 upd = fin;
        if (skipz) { /* a zero gradient keeps the old states and parameter */
            const __mmask16 keep = _mm512_cmp_ps_mask(g, zero, _CMP_EQ_OQ);
            n1 = _mm512_mask_mov_ps(n1, keep, a1), n2 = _mm512_mask_mov_ps(n2, keep, a2);
            if (three) n3 = _mm512_mask_mov_ps(n3, keep, a3);
            upd = fin & ~keep;
        }
        _mm512_store_ps(s1 + j, n1);
        _mm512_store_ps(s2 + j, n2);
        mx1 = _mm512_max_ps(_mm512_abs_ps(n1), mx1);
        mx2 = _mm512_max_ps(_mm512_abs_ps(n2), mx2);
        if (three) {
            _mm512_store_ps(s3 + j, n3);
            mx3 = _mm512_max_ps(_mm512_abs_ps(n3), mx3);
        }
        _mm512_storeu_ps(P + j, _mm512_mask_mov_ps(p0, upd, pv));
    }
#undef DEQ
    /* absmax as quant_block (a NaN value is skipped by max's operand order), then the codes of both states */
    const float mxa = _mm512_reduce_max_ps(mx1), mxb = _mm512_reduce_max_ps(mx2);
    q1->absmax[b] = mxa;
    q2->absmax[b] = mxb;
    const __m512 n1 = _mm512_set1_ps(mxa), n2 = _mm512_set1_ps(mxb);
    const float mxc = three ? _mm512_reduce_max_ps(mx3) : 0.f;
    const __m512 n3 = _mm512_set1_ps(mxc);
    if (three) q1->absmax[b3] = mxc;
    if (q1->qv->tab && q2->qv->tab) { /* table entries (quant_tab_quads), the states' quads of a slice together */
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) {
            const q8_quad Q[3] = {{q1->qv, s1 + j, n1, q1->codes + i0 + j}, {q2->qv, s2 + j, n2, q2->codes + i0 + j},
                                  {q1->qv, s3 + j, n3, q1->codes + i3 + j}};
            quant_tab_quads(three ? 3 : 2, Q);
        }
        return;
    }
    if (q1->qv->counted && q2->qv->counted) {
        /* the count form on the two (three) states' quads together: 8 (12) search chains in flight */
#if defined(QV_REV) && defined(OPT8_VBMI)
        if (q1->qv->bkt && q2->qv->bkt) { /* byte-table levels: the states' quads of a slice together */
            for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) {
                const q8_quad Q[3] = {{q1->qv, s1 + j, n1, q1->codes + i0 + j}, {q2->qv, s2 + j, n2, q2->codes + i0 + j},
                                      {q1->qv, s3 + j, n3, q1->codes + i3 + j}};
                quant_bkt_quads(three ? 3 : 2, Q);
            }
            return;
        }
        if (q1->qv->wcount && q2->qv->wcount) { /* 16-bit keys: 128 values per state at a time, 8 (12) chains */
            for (int j = 0; j < BNB_OPTIM_BLOCK; j += 128) {
                const q8_quad Q[6] = {{q1->qv, s1 + j, n1, q1->codes + i0 + j}, {q2->qv, s2 + j, n2, q2->codes + i0 + j},
                                      {q1->qv, s1 + j + 64, n1, q1->codes + i0 + j + 64},
                                      {q2->qv, s2 + j + 64, n2, q2->codes + i0 + j + 64},
                                      {q1->qv, s3 + j, n3, q1->codes + i3 + j},
                                      {q1->qv, s3 + j + 64, n3, q1->codes + i3 + j + 64}};
                quant_word_quads(three ? 6 : 4, Q);
            }
            return;
        }
#endif
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) {
            const q8_quad Q[3] = {{q1->qv, s1 + j, n1, q1->codes + i0 + j}, {q2->qv, s2 + j, n2, q2->codes + i0 + j},
                                  {q1->qv, s3 + j, n3, q1->codes + i3 + j}};
            quant_count_quads(three ? 3 : 2, Q);
        }
        return;
    }
    for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16 * QN) {
        QUANT_QN(q1->qv, q1->map, s1 + j, n1, q1->codes + i0 + j);
        QUANT_QN(q2->qv, q2->map, s2 + j, n2, q2->codes + i0 + j);
        if (three) QUANT_QN(q1->qv, q1->map, s3 + j, n3, q1->codes + i3 + j);
    }
}

/* Lion on a full block with f32 parameter and gradient (the generic path: dequantize into L1, the 32-bit loop, an
 * absmax pass, re-quantize): dequantize, update, parameter store and the state's running absmax 16 lanes at a
 * time, then the codes. elem_update's operations in its order; signf(u) as +-1 with u's sign bit where u is
 * ordered and non-zero, else +0 (a NaN or zero u), so the parameter and codes are bit-identical. */
static inline __attribute__((always_inline)) void lion8_block_avx(const run8_args *a, int64_t b, const bool skipz) {
    const opt8_parts *q = &a->q1;
    const int64_t i0 = b * BNB_OPTIM_BLOCK;
    float *P = (float *)a->P + i0;
    const float *G = (const float *)a->G + i0;
    _Alignas(64) float s[BNB_OPTIM_BLOCK];
    prefetch_block(a, b + OPT8_PREFETCH_BLOCKS, false);
    const vec_hp k = vec_hp_of(a->h);
    const __m512 zero = _mm512_setzero_ps(), fmax = _mm512_set1_ps(FLT_MAX);
    const __m512i sgnbit = _mm512_set1_epi32((int)0x80000000u), one = _mm512_castps_si512(_mm512_set1_ps(1.f));
    const __m512 am = _mm512_set1_ps(q->absmax[b]);
    __m512 mx = zero;
    /* the old state dequantized into s first (plane lookups or gathers), the update overwrites it */
#ifdef OPT8_VBMI
    if (q->qv->planes)
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 64) deq64(q->qv, q->codes + i0 + j, am, s + j);
    else
#endif
        for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16) _mm512_store_ps(s + j, deq16(q, i0 + j, am));
    for (int j = 0; j < BNB_OPTIM_BLOCK; j += 16) {
        const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(G + j), k.gscale);
        const __m512 p0 = _mm512_loadu_ps(P + j);
        const __m512 a1 = _mm512_load_ps(s + j);
        const __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(g), fmax, _CMP_LE_OQ);
        const __m512 u = _mm512_add_ps(_mm512_mul_ps(k.b1, a1), _mm512_mul_ps(k.omb1, g));
        const __mmask16 nz = _mm512_cmp_ps_mask(u, zero, _CMP_NEQ_OQ);
        const __m512 sg = _mm512_castsi512_ps( /* (u & sign) | 1.0 */
            _mm512_maskz_ternarylogic_epi32(nz, _mm512_castps_si512(u), sgnbit, one, 0xea));
        const __m512 pv = _mm512_sub_ps(_mm512_mask_mul_ps(p0, k.wd, p0, k.decay), _mm512_mul_ps(k.lr, sg));
        __m512 n = _mm512_maskz_add_ps(fin, _mm512_mul_ps(k.b2, a1), _mm512_mul_ps(k.omb2, g));
        __mmask16 upd = fin;
        if (skipz) {
            const __mmask16 keep = _mm512_cmp_ps_mask(g, zero, _CMP_EQ_OQ);
            n = _mm512_mask_mov_ps(n, keep, a1);
            upd = fin & ~keep;
        }
        _mm512_store_ps(s + j, n);
        mx = _mm512_max_ps(_mm512_abs_ps(n), mx);
        _mm512_storeu_ps(P + j, _mm512_mask_mov_ps(p0, upd, pv));
    }
    const float mxs = _mm512_reduce_max_ps(mx); /* a NaN state is skipped, as quant_block */
    q->absmax[b] = mxs;
    quant_block_am(q, i0, s, mxs);
}
#endif /* OPT8_AVX512 */

#endif
