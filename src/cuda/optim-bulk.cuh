/* k_upd8b (helper optim-v6): 8-bit Adam / AdamW for f32 parameters and gradients, single tensors and multi-tensor
 * batches, with the global loads moved off the warps. One CTA of 512 threads per SM holds one copy of the entry
 * tables (qp_setup, 98 KB) and a ring of ST_B stages (43 KB each) in shared memory. A stage holds one chunk of 4096
 * elements (param, grad, both states' codes and absmaxes; on a change of tensor also its hyper values and both
 * maps), filled by bulk asynchronous copies (cp.async.bulk ... mbarrier::complete_tx, the copy engine: no thread
 * waits for them) and released by the warps as soon as they have read their elements into registers; the warp that
 * releases a stage last refills it with the chunk ST_B items ahead, so the copies of the next two chunks are in
 * flight while all 16 warps compute. Warp w takes 256-block w of the chunk; lane l its elements 4l..4l+3 and
 * 128+4l..131+4l (conflict-free 16-byte shared loads, coalesced stores), absmax over the warp. Updates as k_upd8p
 * (no per-element branches; a flag per thread sends its 8 elements to the exact per-element code), re-quantization as
 * req16p for one group of 8. Stores go straight to global memory. A partial chunk (a tensor's last) is not copied:
 * its threads load from global memory with bounds checks.
 * Items: a CTA takes a contiguous range of the batch's chunks (multi-tensor: the tensor changes rarely; single
 * tensors: ~2% faster than by grid stride, H100). On a change of tensor the stage carries the new tensor's maps: if they differ
 * from the tables' (bitwise), the tables are rebuilt (all tensors of a batch normally share the dynamic maps).
 * Included by optim.cu after k_upd8p (needs sqrt_nochk, div_nochk, qp_setup, elem_update_t, read_hp_from). */
#ifndef BNB_CUDA_OPTIM_BULK_CUH
#define BNB_CUDA_OPTIM_BULK_CUH

#define NT_B 512          /* threads per CTA (one CTA per SM) */
#define NW_B (NT_B / 32)  /* warps = 256-blocks per chunk */
#define ST_B 3            /* ring stages */
/* stage layout (bytes): p, g (16 KB each), codes 1 and 2 (4 KB each), absmax 1 and 2 (64 B each), hyper (64 B), maps
 * (2 x 1 KB, on a change of tensor), header {tensor, chunk of the tensor, changed} */
#define SB_P 0
#define SB_G (SB_P + CHUNK8 * 4)
#define SB_C1 (SB_G + CHUNK8 * 4)
#define SB_C2 (SB_C1 + CHUNK8)
#define SB_A1 (SB_C2 + CHUNK8)
#define SB_A2 (SB_A1 + 64)
#define SB_HY (SB_A2 + 64)
#define SB_MAP (SB_HY + 64)
#define SB_HDR (SB_MAP + 2048)
#define SB_BYTES ((SB_HDR + (int)sizeof(qb_hdr) + 127) / 128 * 128)
#define SB_DATA_BYTES (2 * CHUNK8 * 4 + 2 * CHUNK8 + 128) /* copied for a full chunk */
#define SB_CHG_BYTES (64 + 2048)                            /* copied on a change of tensor */
#define QB_RING ((QP_SMEM + 127) / 128 * 128)
#define QB_SMEM (QB_RING + ST_B * SB_BYTES) /* 228,352 bytes: under the 227 KB a CTA may have on sm_90 */
static_assert(BNB_OPTIM_HYPER_N * 4 == 64, "k_upd8b copies 64 bytes of hyper values");
static_assert(NT_B == 2 * 256, "k_upd8b compares both maps with one value per thread");

/* ---------------------------------------------------------------- mbarrier and bulk copies (sm_90) */
__device__ __forceinline__ uint32_t sm_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sm_addr(bar)), "r"(count) : "memory");
#endif
}
/* makes the barriers' initialization visible to the other threads and to the copy engine (async proxy) */
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;\n\tfence.proxy.async.shared::cta;" ::: "memory");
#endif
}
/* one arrival (release) that also expects `bytes` more of copies to land before the phase completes */
__device__ __forceinline__ void mbar_arrive_tx(uint64_t *bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sm_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done = 0;
    while (!done) {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(sm_addr(bar)), "r"(parity)
                     : "memory");
    }
#endif
}
/* global -> shared, 1-D, `bytes` a multiple of 16, both addresses 16-byte aligned; completes on bar. pol != 0: with
 * that L2 cache policy. */
__device__ __forceinline__ void bulk_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *bar, uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (pol)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;"
                     ::"r"(sm_addr(dst)), "l"(src), "r"(bytes), "r"(sm_addr(bar)), "l"(pol)
                     : "memory");
    else
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     ::"r"(sm_addr(dst)), "l"(src), "r"(bytes), "r"(sm_addr(bar))
                     : "memory");
#endif
}
__device__ __forceinline__ void fence_cta() { asm volatile("fence.acq_rel.cta;" ::: "memory"); }
__device__ __forceinline__ uint64_t l2_evict_first() {
    uint64_t pol = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
#endif
    return pol;
}

/* ---------------------------------------------------------------- items */
/* A stage's header, written by the issuer: the item and, on a change of tensor, the tensor's pointers (so that the
 * consumers read no descriptor from the kernel parameters). Also the issuer's cache of the current tensor. */
struct qb_hdr {
    float *p;
    const float *g;
    void *s1, *s2;
    const float *scale, *hyper;
    int64_t c0, c1; /* the tensor's chunks [c0, c1) */
    int32_t n, ti, lch, chg;
};
/* k_upd8b's variant bits (BNB_OPT8_B - 1; docs/perf-optim.md): */
#define QB_V_L2EF 1  /* bulk copies with an L2 evict-first policy */
#define QB_V_CS 2    /* streaming (evict-first) stores */
#define QB_V_CONT 4  /* contiguous chunk ranges per CTA (the default; wins over QB_V_GRID) */
#define QB_V_GRID 8  /* chunks by grid stride (measured slower: single tensors ~2%, batches 1.4x) */

/* The tensor of global chunk c (t[k].blk0: the tensor's first chunk, in chunks of CHUNK8). */
template <int CAP> __device__ __forceinline__ int chunk_tensor(const upd_batch<CAP> &b, int64_t c) {
    if (CAP == 1) return 0;
    int lo = 0, hi = b.count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (c >= b.t[mid].blk0) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
struct qb_range {
    int64_t lo, n; /* items: chunk lo + it (contiguous) or blockIdx.x + it * gridDim.x (grid stride) */
    bool cont;
};
__device__ __forceinline__ int64_t qb_chunk(const qb_range &r, int64_t it) {
    return r.cont ? r.lo + it : (int64_t)blockIdx.x + it * gridDim.x;
}

/* One thread: fills stage it % ST_B with item it (header, copies, the barrier's arrival with the bytes to expect).
 * cur: the tensor of the item issued before (shared; the issuers are ordered: item it + ST_B is issued only after every
 * warp has read item it, i.e. after item it + ST_B - 1 was issued). The kernel parameters (descriptors) are read only
 * on a change of tensor, so an item costs the issuing lane a few shared loads and the copies. */
template <int CAP>
__device__ __forceinline__ void qb_issue(const upd_batch<CAP> &b, unsigned char *ring, uint64_t *full, qb_hdr *cur,
                                         const qb_range &r, int64_t it, uint64_t pol) {
    const int s = (int)(it % ST_B);
    unsigned char *sb = ring + s * SB_BYTES;
    const int64_t c = qb_chunk(r, it);
    const bool chg = c < cur->c0 || c >= cur->c1;
    if (chg) {
        const int ti = chunk_tensor(b, c);
        const upd_tensor &t = b.t[ti];
        cur->p = (float *)t.p, cur->g = (const float *)t.g, cur->s1 = t.s1, cur->s2 = t.s2;
        cur->scale = t.scale, cur->hyper = t.hyper, cur->n = t.n, cur->ti = ti;
        cur->c0 = t.blk0, cur->c1 = t.blk0 + ((int64_t)t.n + CHUNK8 - 1) / CHUNK8;
    }
    qb_hdr *hdr = (qb_hdr *)(sb + SB_HDR);
    *hdr = *cur;
    const int64_t i0 = (c - cur->c0) * CHUNK8;
    const bool whole = (int64_t)cur->n - i0 >= CHUNK8;
    hdr->lch = (int32_t)(c - cur->c0), hdr->chg = chg ? 1 : 0;
    mbar_arrive_tx(&full[s], (chg ? SB_CHG_BYTES : 0) + (whole ? SB_DATA_BYTES : 0)); /* release: the header too */
    const opt8_dev q1 = opt8_parts(cur->s1, cur->n), q2 = opt8_parts(cur->s2, cur->n);
    if (chg) {
        bulk_g2s(sb + SB_HY, cur->hyper, 64, &full[s], 0);
        bulk_g2s(sb + SB_MAP, q1.map, 1024, &full[s], 0);
        bulk_g2s(sb + SB_MAP + 1024, q2.map, 1024, &full[s], 0);
    }
    if (whole) {
        bulk_g2s(sb + SB_P, cur->p + i0, CHUNK8 * 4, &full[s], pol);
        bulk_g2s(sb + SB_G, cur->g + i0, CHUNK8 * 4, &full[s], pol);
        bulk_g2s(sb + SB_C1, q1.codes + i0, CHUNK8, &full[s], pol);
        bulk_g2s(sb + SB_C2, q2.codes + i0, CHUNK8, &full[s], pol);
        bulk_g2s(sb + SB_A1, q1.absmax + i0 / BNB_OPTIM_BLOCK, 64, &full[s], pol);
        bulk_g2s(sb + SB_A2, q2.absmax + i0 / BNB_OPTIM_BLOCK, 64, &full[s], pol);
    }
}

/* Code k (0..7) of a thread's two code words. */
__device__ __forceinline__ uint32_t code8_at(const uint32_t *w, int k) { return (w[k >> 2] >> (8 * (k & 3))) & 0xffu; }

/* New absmax of the warp's 256-block and the codes of a thread's 8 values (req16p for one group). */
__device__ __forceinline__ uint2 req8b(const qent *ent, const float *msh, bool fast, const float *v, float &amo) {
    float am = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) am = fmaxf(am, fabsf(v[k])); /* padding lanes hold 0 */
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
    amo = am;
    const bool rq = fast && am >= 0x1p-66f && am <= 0x1p90f;
    return req_group8(ent, msh, rq, am, __frcp_rn(rq ? am : 1.f), v);
}

/* Stores 8 values or codes of a thread: 4 at i0, 4 at i1 (counts c0, c1 valid). */
__device__ __forceinline__ void st8f(float *x, int64_t i0, int64_t i1, int c0, int c1, const float *o, bool cs) {
    if (c0 == 4 && c1 == 4) {
        const float4 a = make_float4(o[0], o[1], o[2], o[3]), b = make_float4(o[4], o[5], o[6], o[7]);
        if (cs) __stcs((float4 *)(x + i0), a), __stcs((float4 *)(x + i1), b);
        else *(float4 *)(x + i0) = a, *(float4 *)(x + i1) = b;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (k < c0) x[i0 + k] = o[k];
            if (k < c1) x[i1 + k] = o[4 + k];
        }
    }
}
__device__ __forceinline__ void st8c(uint8_t *x, int64_t i0, int64_t i1, int c0, int c1, uint2 w, bool cs) {
    if (c0 == 4 && c1 == 4) {
        if (cs) __stcs((unsigned *)(x + i0), w.x), __stcs((unsigned *)(x + i1), w.y);
        else *(uint32_t *)(x + i0) = w.x, *(uint32_t *)(x + i1) = w.y;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (k < c0) x[i0 + k] = (uint8_t)(w.x >> (8 * k));
            if (k < c1) x[i1 + k] = (uint8_t)(w.y >> (8 * k));
        }
    }
}
__device__ __forceinline__ void ld8g(const float *x, int64_t i0, int64_t i1, int c0, int c1, float *o) {
#pragma unroll
    for (int k = 0; k < 4; k++) {
        o[k] = k < c0 ? x[i0 + k] : 0.f;
        o[4 + k] = k < c1 ? x[i1 + k] : 0.f;
    }
}

/* grid: at most one CTA per SM and at most the batch's chunk count; nch: the batch's chunks (blk0 in chunks). */
template <int OT, int CAP>
__global__ void __launch_bounds__(NT_B, 1) k_upd8b(const __grid_constant__ upd_batch<CAP> b, int64_t nch, int var) {
    extern __shared__ __align__(128) unsigned char b_smem[];
    __shared__ __align__(8) uint64_t full[ST_B];
    __shared__ unsigned rel[ST_B];
    __shared__ qb_hdr cur;
    unsigned char *ring = b_smem + QB_RING;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    qb_range r;
    r.cont = !(var & QB_V_GRID) || (var & QB_V_CONT);
    if (r.cont) {
        r.lo = (int64_t)blockIdx.x * nch / gridDim.x;
        r.n = (int64_t)(blockIdx.x + 1) * nch / gridDim.x - r.lo;
    } else {
        r.lo = 0;
        r.n = (nch - blockIdx.x + gridDim.x - 1) / gridDim.x;
    }
    const uint64_t pol = (var & QB_V_L2EF) ? l2_evict_first() : 0;
    const bool cs = (var & QB_V_CS) != 0;
    if (tid == 0) {
        for (int s = 0; s < ST_B; s++) mbar_init(&full[s], 1), rel[s] = 0;
        cur.c0 = cur.c1 = -1;
        mbar_init_fence();
        for (int64_t it = 0; it < ST_B && it < r.n; it++) qb_issue(b, ring, full, &cur, r, it, pol);
    }
    /* the tables of the first item's tensor, while its copies are in flight (the barriers inside also publish the
     * mbarrier initialization) */
    qp_maps tb;
    bool fast;
    {
        const upd_tensor &t0 = b.t[chunk_tensor(b, qb_chunk(r, 0))];
        const float *maps[2] = {opt8_parts(t0.s1, t0.n).map, opt8_parts(t0.s2, t0.n).map};
        fast = qp_setup<2, NT_B>(b_smem, maps, tb);
    }
    bc_cache bc = {0u, 0u, -1, 1.f, 1.f};
    dev_hp h = {};
    float *P = nullptr;
    const float *G = nullptr;
    opt8_dev q1 = {}, q2 = {};
    int64_t n = 0;
    float ob1 = 0.f, ob2 = 0.f, st = 0.f, ec2 = 0.f, dec = 1.f;
    bool wd = false, uok = false, skipz = false;
    int s = 0;
    uint32_t phase = 0;
#pragma unroll 1
    for (int64_t it = 0; it < r.n; it++, s = s == ST_B - 1 ? 0 : s + 1, phase ^= s == 0 ? 1u : 0u) {
        unsigned char *sb = ring + s * SB_BYTES;
        mbar_wait(&full[s], phase);
        const qb_hdr *hdr = (const qb_hdr *)(sb + SB_HDR);
        const int64_t cbase = (int64_t)hdr->lch * CHUNK8;
        if (hdr->chg) { /* CTA-uniform: a new tensor (always on the first item) */
            P = hdr->p, G = hdr->g, n = hdr->n;
            q1 = opt8_parts(hdr->s1, n), q2 = opt8_parts(hdr->s2, n);
            h = read_hp_from(b, hdr->scale, (const float *)(sb + SB_HY), &bc);
            ob1 = 1.f - h.b1, ob2 = 1.f - h.b2, st = MUL(h.uscale, h.step_size), ec2 = MUL(h.eps, h.c2);
            dec = SUB(1.f, MUL(h.lr, h.wd));
            wd = h.wd > 0.f, uok = ec2 >= 0.f && ec2 <= 0x1p50f, skipz = h.skip_zeros;
            /* the new maps against the tables' (both maps: 128 float4, tb.map[1] = tb.map[0] + 256), per warp: every
             * warp reads the same values, so all take the same branch without a barrier */
            const float4 *sm4 = (const float4 *)(sb + SB_MAP), *tm4 = (const float4 *)tb.map[0];
            bool same = true;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float4 x = sm4[32 * k + lane], y = tm4[32 * k + lane];
                same = same && __float_as_uint(x.x) == __float_as_uint(y.x) && __float_as_uint(x.y) == __float_as_uint(y.y) &&
                       __float_as_uint(x.z) == __float_as_uint(y.z) && __float_as_uint(x.w) == __float_as_uint(y.w);
            }
            if (!__all_sync(0xffffffffu, same)) {
                __syncthreads(); /* every warp is past the old tables */
                const float *maps[2] = {(const float *)sm4, (const float *)sm4 + 256};
                fast = qp_setup<2, NT_B>(b_smem, maps, tb);
            }
        }
        const bool whole = n - cbase >= CHUNK8;
        const int64_t i0 = cbase + 256 * w + 4 * lane, i1 = i0 + 128, blk = (cbase >> 8) + w;
        const int c0 = (int)max((int64_t)0, min((int64_t)4, n - i0)), c1 = (int)max((int64_t)0, min((int64_t)4, n - i1));
        float p[8], g[8];
        uint32_t w1[2] = {0u, 0u}, w2[2] = {0u, 0u};
        float am1 = 0.f, am2 = 0.f;
        if (whole) {
            const float4 *sp = (const float4 *)(sb + SB_P) + 64 * w + lane, *sg = (const float4 *)(sb + SB_G) + 64 * w + lane;
            const float4 pa = sp[0], pb = sp[32], ga = sg[0], gb = sg[32];
            p[0] = pa.x, p[1] = pa.y, p[2] = pa.z, p[3] = pa.w, p[4] = pb.x, p[5] = pb.y, p[6] = pb.z, p[7] = pb.w;
            g[0] = ga.x, g[1] = ga.y, g[2] = ga.z, g[3] = ga.w, g[4] = gb.x, g[5] = gb.y, g[6] = gb.z, g[7] = gb.w;
            const uint32_t *sc1 = (const uint32_t *)(sb + SB_C1) + 64 * w + lane, *sc2 = (const uint32_t *)(sb + SB_C2) + 64 * w + lane;
            w1[0] = sc1[0], w1[1] = sc1[32], w2[0] = sc2[0], w2[1] = sc2[32];
            am1 = ((const float *)(sb + SB_A1))[w], am2 = ((const float *)(sb + SB_A2))[w];
        }
        /* release the stage; the last warp to do so refills it with item it + ST_B */
        __syncwarp();
        if (lane == 0) {
            fence_cta(); /* the warp's stage reads before its count (release) */
            if (atomicAdd(&rel[s], 1u) == NW_B - 1) {
                rel[s] = 0;
                fence_cta(); /* every warp's reads before the copies that overwrite the stage (acquire) */
                if (it + ST_B < r.n) qb_issue(b, ring, full, &cur, r, it + ST_B, pol);
            }
        }
        if (!whole) { /* a tensor's last, partial chunk: from global memory */
            ld8g(G, i0, i1, c0, c1, g);
            ld8g(P, i0, i1, c0, c1, p);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                if (k < c0) w1[0] |= (uint32_t)q1.codes[i0 + k] << (8 * k), w2[0] |= (uint32_t)q2.codes[i0 + k] << (8 * k);
                if (k < c1) w1[1] |= (uint32_t)q1.codes[i1 + k] << (8 * k), w2[1] |= (uint32_t)q2.codes[i1 + k] << (8 * k);
            }
            if (c0 > 0) am1 = q1.absmax[blk], am2 = q2.absmax[blk];
        }
        float m[8], v[8];
        bool bad = c0 < 4 || c1 < 4 || !uok;
#pragma unroll
        for (int k = 0; k < 8; k++)
            bad = adam8_elem_fast(bad, h, ob1, ob2, st, ec2, skipz, g[k], tb.map[0], tb.map[1], code8_at(w1, k),
                                  code8_at(w2, k), am1, am2, p[k], m[k], v[k]);
        if (wd) {
#pragma unroll
            for (int k = 0; k < 8; k++) p[k] = MUL(p[k], dec);
        }
        if (bad) { /* rare: the exact per-element update (k_upd8's), from reloaded p, g */
            ld8g(G, i0, i1, c0, c1, g);
            ld8g(P, i0, i1, c0, c1, p);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float x = MUL(tb.map[0][code8_at(w1, k)], am1), y = MUL(tb.map[1][code8_at(w2, k)], am2), z = 0.f;
                if ((k < 4 ? k : k - 4) < (k < 4 ? c0 : c1)) {
                    const float gk = MUL(g[k], h.gscale);
                    if (!finite_f(gk)) x = y = 0.f;
                    else if (!(skipz && gk == 0.f)) elem_update_t(h, OT, gk, p[k], x, y, z);
                } else x = y = 0.f;
                m[k] = x, v[k] = y;
            }
        }
        st8f(P, i0, i1, c0, c1, p, cs);
        float a1, a2;
        const uint2 cw1 = req8b(tb.ent[0], tb.map[0], fast, m, a1);
        const uint2 cw2 = req8b(tb.ent[1], tb.map[1], fast, v, a2);
        if (lane == 0 && c0 > 0) q1.absmax[blk] = a1, q2.absmax[blk] = a2;
        st8c(q1.codes, i0, i1, c0, c1, cw1, cs);
        st8c(q2.codes, i0, i1, c0, c1, cw2, cs);
    }
}

/* BNB_OPT8_B: 0 = k_upd8p / k_upd8 as before; 1 (default) = k_upd8b for f32 Adam / AdamW (aligned); 2..16 = k_upd8b
 * with variant bits BNB_OPT8_B - 1 (QB_V_*). BNB_OPT8_BGRID=N caps the grid (tests: several items per CTA, tensor
 * changes inside a CTA's range). Read at every launch (bench-optim switches them between timings). */
static int opt8_bulk_var() {
    const char *e = getenv("BNB_OPT8_B");
    if (!e || !e[0]) return 0;
    const int v = atoi(e);
    return v <= 0 ? -1 : v > 16 ? 0 : v - 1;
}

/* Launches k_upd8b if it applies (f32 Adam / AdamW, all pointers 16-byte aligned, sm_90); false: use the others. The
 * batch's blk0 are re-counted in chunks of CHUNK8. */
template <int OT, int CAP> static bool launch8b(cudaStream_t s, const upd_batch<CAP> &b) {
    const int var = opt8_bulk_var();
    if (var < 0) return false;
    static int sms = 0, ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        ok = major >= 9 && cudaFuncSetAttribute(k_upd8b<OT, CAP>, cudaFuncAttributeMaxDynamicSharedMemorySize, QB_SMEM) == cudaSuccess;
        if (!ok) (void)cudaGetLastError();
    }
    if (!ok) return false;
    for (int k = 0; k < b.count; k++)
        if (!bnb_cu_aligned16(b.t[k].hyper)) return false;
    upd_batch<CAP> &bb = const_cast<upd_batch<CAP> &>(b); /* rebuilt by launch_batch for every launch */
    int64_t nch = 0;
    for (int k = 0; k < bb.count; k++) {
        bb.t[k].blk0 = (int32_t)nch;
        nch += ((int64_t)bb.t[k].n + CHUNK8 - 1) / CHUNK8;
    }
    if (nch <= 0) return true;
    int64_t grid = BNB_MIN((int64_t)BNB_MAX(1, sms), nch);
    const char *cap = getenv("BNB_OPT8_BGRID");
    if (cap && atoi(cap) > 0) grid = BNB_MIN(grid, (int64_t)atoi(cap));
    k_upd8b<OT, CAP><<<(int)grid, NT_B, QB_SMEM, s>>>(b, nch, var);
    return true;
}

#endif
