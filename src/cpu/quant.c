/* CPU kernels of the quantization ops: quantize / dequantize (8-bit and 4-bit, the loops of src/quant/host.c with
 * the backend's threads and scratch) and mul_mat with a blockwise quantized weight (tiles of the weight decoded into
 * per-thread scratch, then f32 dot products). */
#include "../quant/quant.h"
#include "cpu-kernels.h"

#include <stdio.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define MM_TILE 16 /* weight rows decoded at a time per thread */

static size_t pad64(size_t x) { return BNB_PAD(x, 64); }

size_t bnb_cpu_quant_work_size(const bnb_tensor *node, int n_threads) {
    if (node->op == BNB_OP_QUANTIZE_BLOCKWISE || node->op == BNB_OP_QUANTIZE_4BIT) {
        bnb_quant_layout L = bnb_quant_layout_of(node);
        return L.nested ? pad64((size_t)L.nblk * 4) : 0;
    }
    if (node->op == BNB_OP_DEQUANTIZE_BLOCKWISE || node->op == BNB_OP_DEQUANTIZE_4BIT) {
        bnb_quant_layout L = bnb_quant_layout_of(node->src[0]);
        return L.nested ? pad64((size_t)L.nblk * 4) : 0;
    }
    if (bnb_is_mul_mat_quant(node)) {
        const bnb_tensor *a = node->src[0], *b = node->src[1];
        bnb_quant_layout L = bnb_quant_layout_of(a);
        const size_t K = (size_t)a->ne[0];
        size_t bytes = pad64((size_t)L.nblk * 4);
        if (b->type != BNB_TYPE_F32) bytes += pad64((size_t)bnb_nrows(b) * K * 4);
        bytes += (size_t)(n_threads > 0 ? n_threads : 1) * pad64((size_t)MM_TILE * K * 4);
        return bytes;
    }
    return 0;
}

static const float *map_of(const bnb_tensor *node, float buf[256]) {
    if (node->src[1]) return (const float *)node->src[1]->data;
    if (bnb_qmap_fill((bnb_qmap)bnb_get_op_i32(node, 2), buf) != BNB_OK) return NULL;
    return buf;
}

bnb_status bnb_cpu_quantize(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0];
    bnb_quant_layout L = bnb_quant_layout_of(node);
    if (L.n == 0) return BNB_OK;
    float mapbuf[256];
    const float *map = NULL;
    if (!L.four_bit) {
        map = map_of(node, mapbuf);
        if (!map) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: no code map", bnb_op_name(node->op));
    }
    uint32_t seed;
    int32_t s = bnb_get_op_i32(node, 1);
    memcpy(&seed, &s, sizeof seed);
    bnb_status st = bnb_quant_host_quantize(&L, node->type, map, x->data, x->type, node->data,
                                            bnb_get_op_i32(node, 0) != 0, seed, c->n_threads, (float *)c->work);
    if (st != BNB_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", bnb_last_error());
        return bnb_fail(st, "%s '%s': %s", bnb_op_name(node->op), node->name, msg);
    }
    return BNB_OK;
}

bnb_status bnb_cpu_dequantize(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *q = node->src[0];
    bnb_quant_layout L = bnb_quant_layout_of(q);
    if (L.n == 0) return BNB_OK;
    return bnb_quant_host_dequantize(&L, q->type, q->data, node->data, node->type, c->n_threads, (float *)c->work);
}

static float dot_f32(const float *a, const float *b, int64_t k) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#endif
    for (; i < k; i++) s += a[i] * b[i];
    return s;
}

bnb_status bnb_cpu_mul_mat_quant(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    const int64_t K = a->ne[0], M = a->ne[1];
    const int64_t N = b->ne[1], B2 = b->ne[2], NT = bnb_nrows(b);
    bnb_quant_layout L = bnb_quant_layout_of(a);
    const uint8_t *st = a->data;
    uint8_t *w = c->work;
    size_t need = bnb_cpu_quant_work_size(node, c->n_threads);
    if (!w || c->work_size < need)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_mul_mat (quantized a): scratch of %zu bytes missing", need);
    /* block scales */
    float *absmax = (float *)w;
    w += pad64((size_t)L.nblk * 4);
    if (L.nested)
        bnb_quant_unnest_absmax(&L, st, absmax);
    else
        memcpy(absmax, st + L.absmax, (size_t)L.nblk * 4);
    const float *map = L.four_bit ? (a->type == BNB_TYPE_Q4_NF4 ? bnb_nf4_values : bnb_fp4_values)
                                  : (const float *)(st + L.map);
    /* rows of b as f32 */
    float *bconv = NULL;
    if (b->type != BNB_TYPE_F32) {
        bconv = (float *)w;
        w += pad64((size_t)NT * (size_t)K * 4);
    }
    const int nt = c->n_threads > 0 ? c->n_threads : 1;
    float *out = node->data;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        float *tile = (float *)(w + (size_t)tid * pad64((size_t)MM_TILE * (size_t)K * 4));
        if (bconv) {
            const bnb_type_traits *tr = bnb_type_get_traits(b->type);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < NT; r++) {
                const int64_t i1 = r % N, i2 = (r / N) % B2, i3 = r / (N * B2);
                tr->to_f32((const uint8_t *)b->data + i1 * b->nb[1] + i2 * b->nb[2] + i3 * b->nb[3],
                           bconv + r * K, K);
            }
        }
        const int64_t ntiles = (M + MM_TILE - 1) / MM_TILE;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            const int64_t m0 = t * MM_TILE, m1 = BNB_MIN(M, m0 + MM_TILE);
            /* decode elements [m0*K, m1*K) block piece by block piece */
            for (int64_t e = m0 * K, end = m1 * K; e < end;) {
                const int64_t blk = e / L.block;
                const int64_t len = BNB_MIN(end, (blk + 1) * L.block) - e;
                bnb_quant_dequant_span(L.four_bit, map, st + L.codes, absmax[blk], e, len, tile + (e - m0 * K));
                e += len;
            }
            for (int64_t r = 0; r < NT; r++) {
                const float *brow;
                if (bconv) {
                    brow = bconv + r * K;
                } else {
                    const int64_t i1 = r % N, i2 = (r / N) % B2, i3 = r / (N * B2);
                    brow = (const float *)((const uint8_t *)b->data + i1 * b->nb[1] + i2 * b->nb[2] + i3 * b->nb[3]);
                }
                for (int64_t m = m0; m < m1; m++) out[r * M + m] = dot_f32(tile + (m - m0) * K, brow, K);
            }
        }
    }
    return BNB_OK;
}
