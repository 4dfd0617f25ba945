/* CUDA kernels of the optimizers: the fused in-place update (32-bit and 8-bit blockwise states, all nine optimizers,
 * multi-tensor: a group of same-kind update nodes is updated by one launch per MT_MAX tensors, the descriptors passed
 * by value as a large kernel parameter), sparse row updates (StableEmbedding), the gradient squared norm and the
 * clipping scales. Same formulas and the same f32 operations as src/cpu/optim.c: every product and sum is rounded
 * on its own (__fmul_rn / __fadd_rn keep nvcc from contracting them into FMAs, which the CPU build never does),
 * division and sqrt are IEEE, and the bias corrections come from double pow on both sides, so CPU and CUDA give
 * the same parameters and 8-bit codes. */
#include "cuda-common.cuh"

extern "C" {
#include "../optim/optim-impl.h"
}

#define MT_MAX 384         /* tensors per multi-tensor launch: 384 * 64 B of descriptors (kernel params <= 32764 B) */
#define THREADS 256
#define CHUNK32 4096       /* elements per CTA, 32-bit states (16 per thread) */
#define Q_PER 16           /* 8-bit: consecutive elements per thread (one 16-byte load of codes per state) */
#define CHUNK8 (THREADS * Q_PER) /* 4096 elements = 16 blocks of 256 per chunk, 16 threads per block */
#define R8 4               /* 8-bit: chunks per CTA (the map tables are built once per CTA) */
#define ROWS_PER_CTA (THREADS / 32) /* sparse rows: a warp per row */
#define HY_UNORM 10        /* hyper slots used as LAMB/LARS norm accumulators */
#define HY_PNORM 11

#define MUL(a, b) __fmul_rn((a), (b))
#define ADD(a, b) __fadd_rn((a), (b))
#define SUB(a, b) __fsub_rn((a), (b))

struct upd_tensor {
    void *p;
    const void *g;
    void *s1, *s2;
    float *hyper;
    const float *scale;
    int32_t n, npad, blk0, row; /* row: elements per row (sparse row updates) */
};
/* CAP = 1 for single tensors (small launch parameters), MT_MAX for groups. */
template <int CAP> struct upd_batch {
    int32_t count, type, skip_zeros, use_unorm;
    upd_tensor t[CAP];
};

struct dev_hp {
    int type, t;
    float lr, b1, b2, b3, alpha, eps, wd, c1, c2, step_size, gscale, uscale;
    bool skip_zeros;
};

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ bool finite_f(float x) { return fabsf(x) <= 3.402823466e38f; }

/* The tensor of this CTA: the last k with t[k].blk0 <= blockIdx.x (binary search). */
template <int CAP> __device__ __forceinline__ int tensor_of(const upd_batch<CAP> &b) {
    if (CAP == 1) return 0;
    int lo = 0, hi = b.count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if ((int)blockIdx.x >= b.t[mid].blk0) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Bias corrections of the last (b1, b2, t) seen (k_upd8b: tensors of a batch mostly share them; double pow is slow). */
struct bc_cache {
    uint32_t b1, b2;
    int32_t t;
    float c1, c2;
};
/* hy: the tensor's hyper values (t.hyper, or k_upd8b's copy of them in shared memory). */
template <int CAP> __device__ __forceinline__ dev_hp read_hp_from(const upd_batch<CAP> &b, const float *scale,
                                                                  const float *hy, bc_cache *bc = nullptr) {
    dev_hp h;
    int32_t step = __float_as_int(hy[BNB_HYPER_STEP]);
    h.type = b.type;
    h.t = step + 1;
    h.lr = hy[BNB_HYPER_LR];
    h.b1 = hy[BNB_HYPER_BETA1];
    h.b2 = hy[BNB_HYPER_BETA2];
    h.b3 = hy[BNB_HYPER_BETA3];
    h.alpha = hy[BNB_HYPER_ALPHA];
    h.eps = hy[BNB_HYPER_EPS];
    h.wd = hy[BNB_HYPER_WD];
    if (bc && bc->b1 == __float_as_uint(h.b1) && bc->b2 == __float_as_uint(h.b2) && bc->t == h.t) {
        h.c1 = bc->c1, h.c2 = bc->c2;
    } else {
        bnb_optim_bias_corrections(h.b1, h.b2, h.t, &h.c1, &h.c2);
        if (bc) *bc = {__float_as_uint(h.b1), __float_as_uint(h.b2), h.t, h.c1, h.c2};
    }
    h.step_size = -h.lr * h.c2 / h.c1; /* (-lr * c2) / c1: no add, nothing to contract */
    h.gscale = scale ? *scale : 1.f;
    h.uscale = 1.f;
    if (b.use_unorm && hy[BNB_HYPER_MAX_UNORM] > 0.f) {
        float u = sqrtf(hy[HY_UNORM]), lim = hy[BNB_HYPER_MAX_UNORM] * sqrtf(hy[HY_PNORM]);
        h.uscale = u > lim ? lim / u : 1.f;
    }
    h.skip_zeros = b.skip_zeros != 0;
    return h;
}
template <int CAP> __device__ __forceinline__ dev_hp read_hp(const upd_batch<CAP> &b, const upd_tensor &t) {
    return read_hp_from(b, t.scale, t.hyper);
}

/* One element, as elem_update in src/cpu/optim.c (same operations in the same order, each rounded). */
/* type: h.type, or a compile-time constant in the specialised 8-bit kernels (the switch then folds away). */
__device__ __forceinline__ void elem_update_t(const dev_hp &h, const int type, float g, float &p, float &s1, float &s2,
                                              float &s3) {
    float pv = p;
    switch (type) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB: {
        float m = ADD(MUL(h.b1, s1), MUL(1.f - h.b1, g));
        float v = ADD(MUL(h.b2, s2), MUL(1.f - h.b2, MUL(g, g)));
        pv = ADD(pv, MUL(MUL(h.uscale, h.step_size), m / ADD(sqrtf(v), MUL(h.eps, h.c2))));
        if (h.wd > 0.f) pv = MUL(pv, SUB(1.f, MUL(h.lr, h.wd)));
        s1 = m;
        s2 = v;
        break;
    }
    case BNB_OPTIM_MOMENTUM:
    case BNB_OPTIM_LARS: {
        if (h.wd > 0.f) g = ADD(g, MUL(h.wd, pv));
        float m = h.t == 1 ? g : ADD(MUL(h.b1, s1), g);
        pv = SUB(pv, MUL(MUL(h.uscale, h.lr), m));
        s1 = m;
        break;
    }
    case BNB_OPTIM_LION: {
        if (h.wd > 0.f) pv = MUL(pv, SUB(1.f, MUL(h.lr, h.wd)));
        float u = ADD(MUL(h.b1, s1), MUL(1.f - h.b1, g));
        pv = SUB(pv, MUL(h.lr, u > 0.f ? 1.f : (u < 0.f ? -1.f : 0.f)));
        s1 = ADD(MUL(h.b2, s1), MUL(1.f - h.b2, g));
        break;
    }
    case BNB_OPTIM_RMSPROP: {
        if (h.wd > 0.f) g = ADD(g, MUL(h.wd, pv));
        float v = ADD(MUL(h.b1, s1), MUL(1.f - h.b1, MUL(g, g)));
        pv = SUB(pv, MUL(h.lr, g / ADD(sqrtf(v), h.eps)));
        s1 = v;
        break;
    }
    case BNB_OPTIM_ADAGRAD: {
        if (h.wd > 0.f) g = ADD(g, MUL(h.wd, pv));
        float v = ADD(s1, MUL(g, g));
        pv = SUB(pv, MUL(h.lr, g / ADD(sqrtf(v), h.eps)));
        s1 = v;
        break;
    }
    case BNB_OPTIM_ADEMAMIX: {
        float m1 = ADD(MUL(h.b1, s1), MUL(1.f - h.b1, g));
        float m2 = ADD(MUL(h.b3, s3), MUL(1.f - h.b3, g));
        float v = ADD(MUL(h.b2, s2), MUL(1.f - h.b2, MUL(g, g)));
        pv = SUB(pv, MUL(h.lr, ADD(m1 / h.c1, MUL(h.alpha, m2)) / ADD(sqrtf(v) / h.c2, h.eps)));
        if (h.wd > 0.f) pv = MUL(pv, SUB(1.f, MUL(h.lr, h.wd)));
        s1 = m1;
        s2 = v;
        s3 = m2;
        break;
    }
    default: break;
    }
    p = pv;
}
__device__ __forceinline__ void elem_update(const dev_hp &h, float g, float &p, float &s1, float &s2, float &s3) {
    elem_update_t(h, h.type, g, p, s1, s2, s3);
}

__device__ __forceinline__ float elem_unorm(const dev_hp &h, float g, float p, float s1, float s2) {
    if (h.type == BNB_OPTIM_LAMB) {
        float m = ADD(MUL(h.b1, s1), MUL(1.f - h.b1, g));
        float v = ADD(MUL(h.b2, s2), MUL(1.f - h.b2, MUL(g, g)));
        float u = MUL(h.c2 / h.c1, m / ADD(sqrtf(v), MUL(h.eps, h.c2)));
        return MUL(u, u);
    }
    if (h.wd > 0.f) g = ADD(g, MUL(h.wd, p));
    float m = h.t == 1 ? g : ADD(MUL(h.b1, s1), g);
    return MUL(m, m);
}

/* ------------------------------------------------------------------------------------------ 32-bit */
template <typename PT, typename GT> __device__ __forceinline__ void upd32_one(const dev_hp &h, PT *P, const GT *G,
                                                                             float *S1, float *S2, float *S3, int64_t i) {
    float g = MUL(to_f(G[i]), h.gscale);
    if (h.skip_zeros && g == 0.f) return;
    if (!finite_f(g)) {
        S1[i] = 0.f;
        if (S2) S2[i] = 0.f;
        if (S3) S3[i] = 0.f;
        return;
    }
    float p = to_f(P[i]), a = S1[i], b = S2 ? S2[i] : 0.f, c = S3 ? S3[i] : 0.f;
    elem_update(h, g, p, a, b, c);
    S1[i] = a;
    if (S2) S2[i] = b;
    if (S3) S3[i] = c;
    P[i] = from_f<PT>(p);
}

template <typename PT, typename GT, int CAP> __global__ void __launch_bounds__(THREADS) k_upd32(const upd_batch<CAP> b) {
    const upd_tensor &t = b.t[tensor_of(b)];
    dev_hp h = read_hp(b, t);
    int64_t start = (int64_t)(blockIdx.x - t.blk0) * CHUNK32, end = min((int64_t)t.n, start + CHUNK32);
    PT *P = (PT *)t.p;
    const GT *G = (const GT *)t.g;
    float *S1 = (float *)t.s1, *S2 = (float *)t.s2, *S3 = b.type == BNB_OPTIM_ADEMAMIX ? S1 + t.n : nullptr;
    for (int64_t i = start + threadIdx.x; i < end; i += THREADS) upd32_one<PT, GT>(h, P, G, S1, S2, S3, i);
}

/* Sparse row updates (32-bit states): a warp per row; a row whose gradient is all zero (NaN counts as nonzero) is
 * left alone, params and states; other rows are updated in full, as on the CPU. */
template <typename PT, typename GT, int CAP>
__global__ void __launch_bounds__(THREADS) k_upd32_rows(const upd_batch<CAP> b) {
    const upd_tensor &t = b.t[tensor_of(b)];
    int64_t rows = t.n / t.row, r = (int64_t)(blockIdx.x - t.blk0) * ROWS_PER_CTA + (threadIdx.x >> 5);
    if (r >= rows) return; /* whole warp */
    int lane = threadIdx.x & 31;
    const GT *G = (const GT *)t.g;
    int64_t i0 = r * t.row, i1 = i0 + t.row;
    bool any = false;
    for (int64_t i = i0 + lane; i < i1 && !any; i += 32) any = to_f(G[i]) != 0.f;
    if (!__any_sync(0xffffffffu, any)) return;
    dev_hp h = read_hp(b, t);
    float *S1 = (float *)t.s1, *S2 = (float *)t.s2, *S3 = b.type == BNB_OPTIM_ADEMAMIX ? S1 + t.n : nullptr;
    for (int64_t i = i0 + lane; i < i1; i += 32) upd32_one<PT, GT>(h, (PT *)t.p, G, S1, S2, S3, i);
}

/* F32 param and grad, 16-byte aligned pointers, n % 4 == 0: float4 loads/stores. */
template <int CAP> __global__ void __launch_bounds__(THREADS) k_upd32_vec(const upd_batch<CAP> b) {
    const upd_tensor &t = b.t[tensor_of(b)];
    dev_hp h = read_hp(b, t);
    int64_t start = (int64_t)(blockIdx.x - t.blk0) * CHUNK32, end = min((int64_t)t.n, start + CHUNK32);
    float *P = (float *)t.p, *S1 = (float *)t.s1, *S2 = (float *)t.s2;
    const float *G = (const float *)t.g;
    float *S3 = b.type == BNB_OPTIM_ADEMAMIX ? S1 + t.n : nullptr;
    for (int64_t i = start + 4 * threadIdx.x; i < end; i += 4 * THREADS) {
        float4 p4 = *(const float4 *)(P + i), g4 = *(const float4 *)(G + i), a4 = *(const float4 *)(S1 + i);
        float4 b4 = S2 ? *(const float4 *)(S2 + i) : make_float4(0, 0, 0, 0);
        float4 c4 = S3 ? *(const float4 *)(S3 + i) : make_float4(0, 0, 0, 0);
        float *pp = &p4.x, *gg = &g4.x, *aa = &a4.x, *bb = &b4.x, *cc = &c4.x;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float g = MUL(gg[k], h.gscale);
            if (h.skip_zeros && g == 0.f) continue;
            if (!finite_f(g)) {
                aa[k] = bb[k] = cc[k] = 0.f;
                continue;
            }
            elem_update(h, g, pp[k], aa[k], bb[k], cc[k]);
        }
        *(float4 *)(P + i) = p4;
        *(float4 *)(S1 + i) = a4;
        if (S2) *(float4 *)(S2 + i) = b4;
        if (S3) *(float4 *)(S3 + i) = c4;
    }
}

/* ------------------------------------------------------------------------------------------ 8-bit */
struct opt8_dev {
    uint8_t *codes;
    float *absmax;
    const float *map;
};
__device__ __forceinline__ opt8_dev opt8_parts(void *base, int64_t n) {
    uint8_t *b = (uint8_t *)base;
    return {b, (float *)(b + bnb_opt8_absmax_offset(n)), (const float *)(b + bnb_opt8_map_offset(n))};
}

#include "optim-q8.cuh" /* re-quantization tables, state maps, 16-element loads and stores */

/* New absmax of the 256-block (16 lanes), then the codes; all 32 lanes of the warp call it. fast: the map's tables
 * are built (sorted finite map), zneg: its count of negative values. */
__device__ __forceinline__ void req16(const qmap_sh &s, bool fast, int zneg, const float *vals, int cnt,
                                      uint8_t *codes, float *absmax, int64_t i, int64_t blk, bool vec) {
    float am = 0.f;
#pragma unroll
    for (int k = 0; k < Q_PER; k++) am = fmaxf(am, fabsf(vals[k])); /* padding lanes hold 0 */
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
    if (cnt <= 0) return;
    if ((threadIdx.x & 15) == 0) absmax[blk] = am;
    /* y = v / am, correctly rounded, from the correctly rounded reciprocal and one residual step (exact for am and v
     * in [2^-90, 2^90] with |v| <= am: Markstein; 4e8 random and edge-mantissa pairs checked on the host); other
     * values take the IEEE division. */
    const bool rq = am >= 0x1p-90f && am <= 0x1p90f;
    const float r = __frcp_rn(rq ? am : 1.f);
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll 1
    for (int half = 0; half < 2; half++) { /* one copy of the code for both halves (registers, instruction cache) */
        float v[QG], y[QG];
        int c[QG];
        /* one flag per group: when any value is outside the residual step's range, the whole group takes the IEEE
         * division (the same correctly rounded y for the values inside it), so no per-value branch */
        bool exact = !rq;
#pragma unroll
        for (int k = 0; k < QG; k++) {
            v[k] = half ? vals[QG + k] : vals[k];
            float q = __fmul_rn(v[k], r);
            y[k] = __fmaf_rn(__fmaf_rn(-am, q, v[k]), r, q);
            exact = exact || !(fabsf(v[k]) >= 0x1p-90f);
        }
        if (exact) {
#pragma unroll
            for (int k = 0; k < QG; k++) y[k] = am > 0.f ? v[k] / am : 0.f;
        }
        if (fast) {
            int e[QG];
            bool slow = false;
#pragma unroll
            for (int k = 0; k < QG; k++) e[k] = s.tab[qf_bucket(y[k])];
#pragma unroll
            for (int k = 0; k < QG; k++) {
                int a = e[k] & 255;
                float2 t = s.T2[a];
                c[k] = a + (t.x < y[k] ? 1 : 0) + (t.y < y[k] ? 1 : 0);
                slow = slow || e[k] > (QF_K << 8 | 255);
            }
            if (slow) { /* rare for the dynamic maps: all QG values take the search */
#pragma unroll
                for (int k = 0; k < QG; k++)
                    if (e[k] > (QF_K << 8 | 255)) c[k] = qf_search(&s.T2[0].x, 2, y[k]);
            }
#pragma unroll
            for (int k = 0; k < QG; k++) c[k] = qf_sign_rule(c[k], v[k], zneg);
        } else {
#pragma unroll
            for (int k = 0; k < QG; k++) c[k] = bnb_optim_quantize_code(s.map, y[k], v[k]);
        }
        uint32_t lo = 0, hi = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) lo |= (uint32_t)c[k] << (8 * k), hi |= (uint32_t)c[4 + k] << (8 * k);
        if (half) w[2] = lo, w[3] = hi;
        else w[0] = lo, w[1] = hi;
    }
    uint4 cv = make_uint4(w[0], w[1], w[2], w[3]);
    if (vec && cnt == Q_PER) *(uint4 *)(codes + i) = cv;
    else {
#pragma unroll
        for (int k = 0; k < Q_PER; k++)
            if (k < cnt) codes[i + k] = (uint8_t)code_at(cv, k);
    }
}

/* Asynchronous global -> shared copies (sm_80+): a thread's next chunk is fetched while it works on the current one.
 * .ca (through L1) also for 16 bytes: a lane's 16 bytes are half of a 32-byte sector (lanes 64 bytes apart), and the
 * next copy of the same thread takes the other half; .cg would fetch each sector from L2 twice. */
#define PF_SLOTS 12 /* 16-byte slots per thread: p 0-3, g 4-7, codes of the states 8-10, absmaxes 11 (x, y, z) */
#define PF_BYTES (PF_SLOTS * THREADS * 16)
__device__ __forceinline__ void cp_async16(void *sm, const void *gm) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(sm)), "l"(gm)
                 : "memory");
}
__device__ __forceinline__ void cp_async4(void *sm, const void *gm) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned)__cvta_generic_to_shared(sm)), "l"(gm)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

/* A CTA sets up the state maps (tables) once, then updates R8 chunks of CHUNK8 elements of its tensor. Per chunk each
 * thread takes its 16 elements (param, grad, codes of each state), updates them in f32 and re-quantizes; 16 threads
 * share a 256-element block's absmax. No barrier inside the chunk loop. pf (variant 1, off by default: measured
 * slower): f32 param and grad, 16-byte aligned, full 16 elements: the thread's data come through its own shared-memory
 * slots (lane-interleaved: conflict-free 16-byte reads), copied asynchronously: chunk 0 while the tables are built,
 * chunk r + 1 while chunk r is re-quantized. Otherwise plain loads. */
/* OT: the optimizer type as a compile-time constant (specialised kernels: one update body, small code), or -1 (any
 * type, switch at run time). */
template <typename PT, typename GT, int CAP, int OT, int MINB>
__global__ void __launch_bounds__(THREADS, MINB) k_upd8(const upd_batch<CAP> b, int vec, int pf) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    constexpr bool PF = false;
#else
    constexpr bool PF = sizeof(PT) == 4 && sizeof(GT) == 4; /* launched with PF_BYTES of dynamic shared memory */
#endif
    extern __shared__ uint4 pf_slots[];
    __shared__ qmap_sh sm[2];
    __shared__ int wsum[16];
    const upd_tensor &t = b.t[tensor_of(b)];
    const int type = OT >= 0 ? OT : b.type;
    const bool two = bnb_optim_n_states((bnb_optim_type)type) == 2, three = type == BNB_OPTIM_ADEMAMIX;
    int64_t n1 = three ? 2 * (int64_t)t.npad : t.n;
    opt8_dev q1 = opt8_parts(t.s1, n1), q2 = two ? opt8_parts(t.s2, t.n) : q1;
    PT *P = (PT *)t.p;
    const GT *G = (const GT *)t.g;
    const int64_t base = (int64_t)(blockIdx.x - t.blk0) * (CHUNK8 * R8);
    uint4 *slot = pf_slots + threadIdx.x;
    /* issues the copies of the thread's 16 elements at i; false if they are not to be copied this way */
    auto prefetch = [&](int64_t i) -> bool {
        if (!PF || !pf || !vec || i + Q_PER > t.n) return false;
        const int64_t blk = i / BNB_OPTIM_BLOCK;
        float *am = (float *)(slot + 11 * THREADS);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            cp_async16(slot + q * THREADS, P + i + 4 * q);
            cp_async16(slot + (4 + q) * THREADS, G + i + 4 * q);
        }
        cp_async16(slot + 8 * THREADS, q1.codes + i);
        cp_async4(am, q1.absmax + blk);
        if (two) cp_async16(slot + 9 * THREADS, q2.codes + i), cp_async4(am + 1, q2.absmax + blk);
        if (three) cp_async16(slot + 10 * THREADS, q1.codes + t.npad + i), cp_async4(am + 2, q1.absmax + t.npad / BNB_OPTIM_BLOCK + blk);
        cp_async_commit();
        return true;
    };
    bool have = prefetch(base + (int64_t)threadIdx.x * Q_PER);
    const float *maps[2] = {q1.map, q2.map};
    int zn[2] = {0, 0};
    const bool fast = two ? qmap_setup<2>(sm, maps, zn, wsum) : qmap_setup<1>(sm, maps, zn, wsum);
    dev_hp h = read_hp(b, t);
#pragma unroll 1
    for (int r = 0; r < R8 && base + r * CHUNK8 < t.n; r++) { /* CTA-uniform: req16's shuffles need whole warps */
        int64_t i = base + r * CHUNK8 + (int64_t)threadIdx.x * Q_PER;
        int cnt = (int)max((int64_t)0, min((int64_t)Q_PER, (int64_t)t.n - i));
        int64_t blk = i / BNB_OPTIM_BLOCK, blk3 = t.npad / BNB_OPTIM_BLOCK + blk;
        float p[Q_PER], g[Q_PER], s1[Q_PER], s2[Q_PER], s3[Q_PER];
        uint4 c1 = make_uint4(0, 0, 0, 0), c2 = c1, c3 = c1;
        float am1 = 0.f, am2 = 0.f, am3 = 0.f;
        if (PF && have) {
            cp_async_wait_all();
#pragma unroll
            for (int q = 0; q < 4; q++) {
                float4 a = *(const float4 *)(slot + q * THREADS), c = *(const float4 *)(slot + (4 + q) * THREADS);
                p[4 * q] = a.x, p[4 * q + 1] = a.y, p[4 * q + 2] = a.z, p[4 * q + 3] = a.w;
                g[4 * q] = c.x, g[4 * q + 1] = c.y, g[4 * q + 2] = c.z, g[4 * q + 3] = c.w;
            }
            c1 = slot[8 * THREADS];
            if (two) c2 = slot[9 * THREADS];
            if (three) c3 = slot[10 * THREADS];
            const float4 am = *(const float4 *)(slot + 11 * THREADS);
            am1 = am.x, am2 = am.y, am3 = am.z;
        } else if (cnt > 0) {
            ld16(G, i, cnt, vec, g);
            ld16(P, i, cnt, vec, p);
            c1 = ld_codes(q1.codes, i, cnt, vec);
            am1 = q1.absmax[blk];
            if (two) c2 = ld_codes(q2.codes, i, cnt, vec), am2 = q2.absmax[blk];
            if (three) c3 = ld_codes(q1.codes, t.npad + i, cnt, vec), am3 = q1.absmax[blk3];
        }
        deq16(sm[0], c1, am1, s1);
        if (two) deq16(sm[1], c2, am2, s2);
        if (three) deq16(sm[0], c3, am3, s3);
#pragma unroll
        for (int k = 0; k < Q_PER; k++) {
            if (k >= cnt) {
                s1[k] = s2[k] = s3[k] = 0.f;
                continue;
            }
            float gk = MUL(g[k], h.gscale);
            if (h.skip_zeros && gk == 0.f) continue;
            if (!finite_f(gk)) {
                s1[k] = s2[k] = s3[k] = 0.f;
                continue;
            }
            float x = s1[k], y = two ? s2[k] : 0.f, z = three ? s3[k] : 0.f;
            elem_update_t(h, type, gk, p[k], x, y, z);
            s1[k] = x, s2[k] = y, s3[k] = z;
        }
        if (cnt > 0) st16(P, i, cnt, vec, p);
        /* the slots' old contents are all used (update done): fetch the next chunk during the re-quantization */
        have = r + 1 < R8 && prefetch(i + CHUNK8);
        /* re-quantize state by state through one copy of the code: s1 (map 1), AdEMAMix m2 (map 1, at npad), s2 (map 2) */
        const int nq = three ? 3 : two ? 2 : 1;
#pragma unroll 1
        for (int st = 0; st < nq; st++) {
            const bool m2 = three && st == 1, use2 = st == nq - 1 && st > 0;
            float v[Q_PER];
#pragma unroll
            for (int k = 0; k < Q_PER; k++) v[k] = st == 0 ? s1[k] : m2 ? s3[k] : s2[k];
            req16(sm[use2 ? 1 : 0], fast, zn[use2 ? 1 : 0], v, cnt, use2 ? q2.codes : m2 ? q1.codes + t.npad : q1.codes,
                  use2 ? q2.absmax : q1.absmax, i, m2 ? blk3 : blk, vec);
        }
    }
    if (PF && have) cp_async_wait_all(); /* never left in flight (cannot happen: the last chunk prefetches nothing) */
}

/* ------------------------------------------------------------------ persistent single-tensor Adam/AdamW (k_upd8p) */
/* sqrt.rn / div.rn as ptxas expands them (MUFU + Newton steps), without the range checks and slow-path calls: the
 * caller checks the operands' range for a whole group (sqrt: the same range ptxas tests, 2^-101 <= x (here <= 2^100);
 * division: |n|, d in [2^-60, 2^60], where no intermediate under- or overflows, so the result is that of the same
 * operations on the operands scaled into [1, 2), which pass ptxas' FCHK) and redoes the group with IEEE sqrtf and /
 * otherwise. Same instructions, so the same correctly rounded results. */
__device__ __forceinline__ float sqrt_nochk(float x) {
    float r;
    asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    const float s = __fmul_rn(x, r), hr = __fmul_rn(r, 0.5f);
    return __fmaf_rn(__fmaf_rn(-s, s, x), hr, s);
}
__device__ __forceinline__ float div_nochk(float n, float d) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
    r = __fmaf_rn(r, __fmaf_rn(-d, r, 1.f), r);
    const float q = __fmaf_rn(n, r, 0.f);
    return __fmaf_rn(r, __fmaf_rn(-d, q, n), q);
}

/* One element of the branch-free Adam/AdamW update of k_upd8p and k_upd8b: the new states mm, vv from the dequantized
 * states s1, s2 (codes through the maps, times the absmax) and the gradient g, then p += st * mm / (sqrt(vv) + ec2). True when the element is outside the range
 * in which sqrt_nochk / div_nochk are exact (vv in [2^-101, 2^100], so den in [2^-50.5, 2^51] as ec2 <= 2^50; |mm| in
 * [2^-60, 2^60]; a non-finite g fails) or a skipped zero (ORed into bad): the caller then redoes it by the exact
 * per-element path. */
__device__ __forceinline__ bool adam8_elem_fast(bool bad, const dev_hp &h, float ob1, float ob2, float st, float ec2,
                                                bool skipz, float g, const float *map1, const float *map2,
                                                uint32_t code1, uint32_t code2, float am1, float am2, float &p,
                                                float &mm, float &vv) {
    const float gk = MUL(g, h.gscale);
    const float s1 = MUL(map1[code1], am1), s2 = MUL(map2[code2], am2);
    mm = ADD(MUL(h.b1, s1), MUL(ob1, gk));
    vv = ADD(MUL(h.b2, s2), MUL(ob2, MUL(gk, gk)));
    bad = bad | ((uint32_t)__float_as_uint(vv) - 0x0d000000u > 0x64800000u);
    bad = bad | !(fabsf(mm) >= 0x1p-60f) | !(fabsf(mm) <= 0x1p60f) | (skipz & (gk == 0.f));
    const float den = ADD(sqrt_nochk(vv), ec2);
    p = ADD(p, MUL(st, div_nochk(mm, den)));
    return bad;
}

/* A grid of about 2 CTAs per SM; each builds both maps' entry tables once (qp_setup), then takes chunks of CHUNK8 by
 * grid stride. Per thread 16 elements: the fast update (no per-element branch: one flag per thread for the sqrt /
 * division ranges, non-finite g (caught by the v range), skip_zeros' g == 0; if set, the thread's 16 elements are
 * redone with the exact per-element code from reloaded p / g and the codes), then re-quantization by req16p. */
template <int OT> __global__ void __launch_bounds__(THREADS, 2) k_upd8p(const upd_batch<1> b) {
    extern __shared__ __align__(16) unsigned char p_smem[];
    const upd_tensor &t = b.t[0];
    opt8_dev q1 = opt8_parts(t.s1, t.n), q2 = opt8_parts(t.s2, t.n);
    float *P = (float *)t.p;
    const float *G = (const float *)t.g;
    const float *maps[2] = {q1.map, q2.map};
    qp_maps tb;
    const bool fast = qp_setup<2>(p_smem, maps, tb);
    const dev_hp h = read_hp(b, t);
    const float ob1 = 1.f - h.b1, ob2 = 1.f - h.b2, st = MUL(h.uscale, h.step_size), ec2 = MUL(h.eps, h.c2);
    const float dec = SUB(1.f, MUL(h.lr, h.wd));
    const bool wd = h.wd > 0.f, uok = ec2 >= 0.f && ec2 <= 0x1p50f, skipz = h.skip_zeros;
    const int64_t nch = ((int64_t)t.n + CHUNK8 - 1) / CHUNK8;
#pragma unroll 1
    for (int64_t ch = blockIdx.x; ch < nch; ch += gridDim.x) { /* CTA-uniform: req16p's shuffles need whole warps */
        const int64_t i = ch * CHUNK8 + (int64_t)threadIdx.x * Q_PER, blk = i / BNB_OPTIM_BLOCK;
        const int cnt = (int)max((int64_t)0, min((int64_t)Q_PER, (int64_t)t.n - i));
        float p[Q_PER], g[Q_PER], m[Q_PER], v[Q_PER];
        uint4 c1 = make_uint4(0, 0, 0, 0), c2 = c1;
        float am1 = 0.f, am2 = 0.f;
        if (cnt > 0) {
            ld16(G, i, cnt, true, g);
            ld16(P, i, cnt, true, p);
            c1 = ld_codes(q1.codes, i, cnt, true);
            c2 = ld_codes(q2.codes, i, cnt, true);
            am1 = q1.absmax[blk], am2 = q2.absmax[blk];
        }
        bool bad = cnt < Q_PER || !uok;
#pragma unroll
        for (int k = 0; k < Q_PER; k++)
            bad = adam8_elem_fast(bad, h, ob1, ob2, st, ec2, skipz, g[k], tb.map[0], tb.map[1], code_at(c1, k),
                                  code_at(c2, k), am1, am2, p[k], m[k], v[k]);
        if (wd) {
#pragma unroll
            for (int k = 0; k < Q_PER; k++) p[k] = MUL(p[k], dec);
        }
        if (bad && cnt > 0) { /* rare: the exact per-element update (k_upd8's), from reloaded p, g */
            ld16(G, i, cnt, true, g);
            ld16(P, i, cnt, true, p);
#pragma unroll
            for (int k = 0; k < Q_PER; k++) {
                float x = MUL(tb.map[0][code_at(c1, k)], am1), y = MUL(tb.map[1][code_at(c2, k)], am2), z = 0.f;
                if (k < cnt) {
                    const float gk = MUL(g[k], h.gscale);
                    if (!finite_f(gk)) x = y = 0.f;
                    else if (!(skipz && gk == 0.f)) elem_update_t(h, OT, gk, p[k], x, y, z);
                } else x = y = 0.f;
                m[k] = x, v[k] = y;
            }
        } else if (cnt <= 0) {
#pragma unroll
            for (int k = 0; k < Q_PER; k++) m[k] = v[k] = 0.f;
        }
        if (cnt > 0) st16(P, i, cnt, true, p);
        float a1, a2;
        const uint4 w1 = req16p(tb.ent[0], tb.map[0], fast, m, a1);
        const uint4 w2 = req16p(tb.ent[1], tb.map[1], fast, v, a2);
        if (cnt <= 0) continue;
        if ((threadIdx.x & 15) == 0) q1.absmax[blk] = a1, q2.absmax[blk] = a2;
        if (cnt == Q_PER) {
            *(uint4 *)(q1.codes + i) = w1;
            *(uint4 *)(q2.codes + i) = w2;
        } else {
#pragma unroll
            for (int k = 0; k < Q_PER; k++)
                if (k < cnt) q1.codes[i + k] = (uint8_t)code_at(w1, k), q2.codes[i + k] = (uint8_t)code_at(w2, k);
        }
    }
}

#include "optim-bulk.cuh" /* k_upd8b: bulk-copy ring, single tensors and batches */

/* BNB_OPT8_P: 1 (default) single-tensor f32 Adam/AdamW through k_upd8p, 0: through k_upd8 (as before). */
static bool opt8_persistent() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("BNB_OPT8_P");
        v = e && e[0] == '0' ? 0 : 1;
    }
    return v == 1;
}
template <int OT> static void launch8p(cudaStream_t s, const upd_batch<1> &b) {
    static int grid0 = 0;
    if (!grid0) {
        int dev = 0, sms = 0, per = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        cudaFuncSetAttribute(k_upd8p<OT>, cudaFuncAttributeMaxDynamicSharedMemorySize, QP_SMEM);
        cudaFuncSetAttribute(k_upd8p<OT>, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_upd8p<OT>, THREADS, QP_SMEM);
        grid0 = BNB_MAX(1, sms) * BNB_MAX(1, per);
    }
    const int64_t nch = ((int64_t)b.t[0].n + CHUNK8 - 1) / CHUNK8;
    k_upd8p<OT><<<(int)BNB_MIN((int64_t)grid0, nch), THREADS, QP_SMEM, s>>>(b);
}

/* Variants, kept for comparisons (BNB_OPT8_VARIANT; docs/perf-optim.md): 0 (default) plain loads, 1 slots (async
 * copies; measured slower), 2 plain loads and 3 CTAs per SM (register cap 80, spills; single-tensor f32 Adam and
 * Lion; slower), c: cycle through them launch by launch (test-optim checks all three in one run). */
static int opt8_variant() {
    static int v = -1, n = 0;
    if (v < 0) {
        const char *e = getenv("BNB_OPT8_VARIANT");
        v = e && e[0] >= '0' && e[0] <= '2' ? e[0] - '0' : e && e[0] == 'c' ? 3 : 0;
    }
    return v == 3 ? n++ % 3 : v;
}

/* Launches k_upd8; f32 param and grad: with the slots' dynamic shared memory (more than the default 48 KB in all; the
 * carveout asks for the most shared memory so that two CTAs fit an SM). */
template <typename PT, typename GT, int CAP, int OT>
static void launch8(cudaStream_t s, const upd_batch<CAP> &b, int grid, bool vec) {
    const int var = opt8_variant();
    constexpr bool f32 = sizeof(PT) == 4 && sizeof(GT) == 4;
    if constexpr (f32 && (OT == BNB_OPTIM_ADAM || OT == BNB_OPTIM_ADAMW)) {
        if (vec && launch8b<OT, CAP>(s, b)) return;
    }
    if constexpr (f32 && CAP == 1 && (OT == BNB_OPTIM_ADAM || OT == BNB_OPTIM_ADAMW)) {
        if (vec && opt8_persistent()) {
            launch8p<OT>(s, b);
            return;
        }
    }
    if constexpr (f32 && CAP == 1 && (OT == BNB_OPTIM_ADAM || OT == BNB_OPTIM_LION)) {
        if (var == 2) {
            k_upd8<PT, GT, CAP, OT, 3><<<grid, THREADS, 0, s>>>(b, vec ? 1 : 0, 0);
            return;
        }
    }
    constexpr int MINB = OT >= 0 ? 2 : 1; /* specialised kernels: at most 128 registers, 2 CTAs per SM */
    const bool pf = f32 && vec && var == 1;
    if (pf) {
        cudaFuncSetAttribute(k_upd8<PT, GT, CAP, OT, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_BYTES);
        cudaFuncSetAttribute(k_upd8<PT, GT, CAP, OT, MINB>, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
    }
    k_upd8<PT, GT, CAP, OT, MINB><<<grid, THREADS, pf ? PF_BYTES : 0, s>>>(b, vec ? 1 : 0, pf ? 1 : 0);
}

/* ------------------------------------------------------------------------------------------ LAMB/LARS norms */
template <typename PT, typename GT> __global__ void __launch_bounds__(THREADS) k_unorm(const upd_batch<1> b, int bits) {
    __shared__ float red[32];
    const upd_tensor &t = b.t[0];
    dev_hp h = read_hp(b, t);
    h.uscale = 1.f;
    const PT *P = (const PT *)t.p;
    const GT *G = (const GT *)t.g;
    opt8_dev q1 = {}, q2 = {};
    if (bits == 8) {
        q1 = opt8_parts(t.s1, t.n);
        if (t.s2) q2 = opt8_parts(t.s2, t.n);
    }
    float us = 0.f, ps = 0.f;
    for (int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x; i < t.n; i += (int64_t)gridDim.x * THREADS) {
        float g = MUL(to_f(G[i]), h.gscale), p = to_f(P[i]);
        ps += p * p;
        if (!finite_f(g) || (h.skip_zeros && g == 0.f)) continue;
        float a, c;
        if (bits == 32) {
            a = ((const float *)t.s1)[i];
            c = t.s2 ? ((const float *)t.s2)[i] : 0.f;
        } else {
            a = MUL(q1.map[q1.codes[i]], q1.absmax[i / BNB_OPTIM_BLOCK]);
            c = t.s2 ? MUL(q2.map[q2.codes[i]], q2.absmax[i / BNB_OPTIM_BLOCK]) : 0.f;
        }
        us += elem_unorm(h, g, p, a, c);
    }
    us = bnb_cu_block_sum(us, red);
    ps = bnb_cu_block_sum(ps, red);
    if (threadIdx.x == 0) {
        atomicAdd(&t.hyper[HY_UNORM], us);
        atomicAdd(&t.hyper[HY_PNORM], ps);
    }
}

template <int CAP> __global__ void k_step_inc(const upd_batch<CAP> b) {
    for (int k = threadIdx.x; k < b.count; k += blockDim.x) {
        float *hy = b.t[k].hyper;
        hy[BNB_HYPER_STEP] = __int_as_float(__float_as_int(hy[BNB_HYPER_STEP]) + 1);
    }
}

/* ------------------------------------------------------------------------------------------ launching */
enum { MODE_32 = 0, MODE_32_VEC, MODE_32_ROWS, MODE_8 };

template <typename PT, typename GT, int CAP>
static void launch_typed(cudaStream_t s, const upd_batch<CAP> &b, int mode, int grid, bool vec) {
    switch (mode) {
    case MODE_8: {
        constexpr bool f32 = sizeof(PT) == 4 && sizeof(GT) == 4;
        if constexpr (!f32) launch8<PT, GT, CAP, -1>(s, b, grid, vec);
        else if (b.type == BNB_OPTIM_ADAM) launch8<PT, GT, CAP, BNB_OPTIM_ADAM>(s, b, grid, vec);
        else if (b.type == BNB_OPTIM_ADAMW) launch8<PT, GT, CAP, BNB_OPTIM_ADAMW>(s, b, grid, vec);
        else if (b.type == BNB_OPTIM_LION) launch8<PT, GT, CAP, BNB_OPTIM_LION>(s, b, grid, vec);
        else if (b.type == BNB_OPTIM_MOMENTUM) launch8<PT, GT, CAP, BNB_OPTIM_MOMENTUM>(s, b, grid, vec);
        else launch8<PT, GT, CAP, -1>(s, b, grid, vec);
        break;
    }
    case MODE_32_VEC: k_upd32_vec<CAP><<<grid, THREADS, 0, s>>>(b); break;
    case MODE_32_ROWS: k_upd32_rows<PT, GT, CAP><<<grid, THREADS, 0, s>>>(b); break;
    default: k_upd32<PT, GT, CAP><<<grid, THREADS, 0, s>>>(b); break;
    }
}

template <typename PT, int CAP>
static void launch_g(cudaStream_t s, bnb_type gt, const upd_batch<CAP> &b, int mode, int grid, bool vec) {
    switch (gt) {
    case BNB_TYPE_F16: launch_typed<PT, __half, CAP>(s, b, mode, grid, vec); break;
    case BNB_TYPE_BF16: launch_typed<PT, __nv_bfloat16, CAP>(s, b, mode, grid, vec); break;
    default: launch_typed<PT, float, CAP>(s, b, mode, grid, vec); break;
    }
}

template <typename PT> static void launch_unorm_g(cudaStream_t s, bnb_type gt, const upd_batch<1> &b, int bits, int grid) {
    switch (gt) {
    case BNB_TYPE_F16: k_unorm<PT, __half><<<grid, THREADS, 0, s>>>(b, bits); break;
    case BNB_TYPE_BF16: k_unorm<PT, __nv_bfloat16><<<grid, THREADS, 0, s>>>(b, bits); break;
    default: k_unorm<PT, float><<<grid, THREADS, 0, s>>>(b, bits); break;
    }
}

template <int CAP> static bnb_status launch_batch(bnb_cuda_ctx *c, bnb_tensor *const *nodes, int count) {
    const bnb_tensor *n0 = nodes[0];
    int bits = bnb_get_op_i32(n0, BNB_UPD_P_BITS), type = bnb_get_op_i32(n0, BNB_UPD_P_TYPE);
    int flags = bnb_get_op_i32(n0, BNB_UPD_P_FLAGS);
    bnb_type pt = n0->src[0]->type, gt = n0->src[1]->type;
    static thread_local upd_batch<CAP> b; /* large (MT_MAX descriptors): not on the stack */
    memset(&b, 0, sizeof b);
    b.count = count;
    b.type = type;
    b.skip_zeros = (flags & BNB_UPD_F_SKIP_ZEROS) != 0;
    bool rows = bits == 32 && (flags & BNB_UPD_F_SPARSE_ROWS);
    int64_t blocks = 0;
    bool vec = true;
    for (int k = 0; k < count; k++) {
        const bnb_tensor *nd = nodes[k];
        upd_tensor &t = b.t[k];
        t.p = nd->src[0]->data;
        t.g = nd->src[1]->data;
        t.s1 = nd->src[2]->data;
        t.s2 = nd->src[3] ? nd->src[3]->data : nullptr;
        t.hyper = (float *)nd->src[4]->data;
        t.scale = nd->src[5] ? (const float *)nd->src[5]->data : nullptr;
        t.n = (int32_t)bnb_nelements(nd->src[0]);
        t.npad = bnb_get_op_i32(nd, BNB_UPD_P_NPAD);
        t.row = (int32_t)BNB_MAX((int64_t)1, nd->src[0]->ne[0]);
        t.blk0 = (int32_t)blocks;
        if (rows) blocks += (t.n / t.row + ROWS_PER_CTA - 1) / ROWS_PER_CTA;
        else blocks += (t.n + (bits == 8 ? CHUNK8 * R8 : CHUNK32) - 1) / (bits == 8 ? CHUNK8 * R8 : CHUNK32);
        vec = vec && bnb_cu_aligned16(t.p) && bnb_cu_aligned16(t.g) && bnb_cu_aligned16(t.s1) &&
              (!t.s2 || bnb_cu_aligned16(t.s2)) && (bits == 8 || t.n % 4 == 0);
    }
    if (blocks == 0) return BNB_OK;
    if (blocks > INT32_MAX) return bnb_fail(BNB_ERR_SHAPE, "bnb_optimizer_update (cuda): too many blocks");
    int mode = bits == 8 ? MODE_8 : rows ? MODE_32_ROWS : (vec && pt == BNB_TYPE_F32 && gt == BNB_TYPE_F32) ? MODE_32_VEC : MODE_32;
    /* LAMB/LARS: norms first (solo nodes only), accumulated into the hyper tensor */
    if (bnb_optim_uses_unorm((bnb_optim_type)type)) {
        /* max_unorm lives in device memory: the norms are always computed, used only when max_unorm > 0 */
        b.use_unorm = 1;
        upd_batch<1> b1;
        b1.count = 1, b1.type = b.type, b1.skip_zeros = b.skip_zeros, b1.use_unorm = 1;
        b1.t[0] = b.t[0];
        BNB_CUDA_TRY(cudaMemsetAsync(b.t[0].hyper + HY_UNORM, 0, 2 * sizeof(float), c->stream), "bnb_optimizer_update");
        int grid = (int)BNB_MIN((int64_t)c->n_sm * 8, (b.t[0].n + THREADS - 1) / THREADS);
        if (grid < 1) grid = 1;
        switch (pt) {
        case BNB_TYPE_F16: launch_unorm_g<__half>(c->stream, gt, b1, bits, grid); break;
        case BNB_TYPE_BF16: launch_unorm_g<__nv_bfloat16>(c->stream, gt, b1, bits, grid); break;
        default: launch_unorm_g<float>(c->stream, gt, b1, bits, grid); break;
        }
        BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update (norms)");
    }
    switch (pt) {
    case BNB_TYPE_F16: launch_g<__half, CAP>(c->stream, gt, b, mode, (int)blocks, vec); break;
    case BNB_TYPE_BF16: launch_g<__nv_bfloat16, CAP>(c->stream, gt, b, mode, (int)blocks, vec); break;
    default: launch_g<float, CAP>(c->stream, gt, b, mode, (int)blocks, vec); break;
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update");
    k_step_inc<CAP><<<1, 128, 0, c->stream>>>(b);
    BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update (step)");
    return BNB_OK;
}

static bnb_status cuda_update(bnb_cuda_ctx *c, bnb_tensor *node) {
    int role = bnb_get_op_i32(node, BNB_UPD_P_ROLE);
    if (role == BNB_UPD_MEMBER) return BNB_OK; /* updated by its group's leader */
    if (role == BNB_UPD_SOLO) return launch_batch<1>(c, &node, 1);
    const bnb_optim_group *grp;
    memcpy(&grp, &node->op_params[BNB_UPD_P_GROUP], sizeof grp);
    for (int i = 0; i < grp->n; i += MT_MAX) {
        int cnt = BNB_MIN(MT_MAX, grp->n - i);
        bnb_status s = cnt == 1 ? launch_batch<1>(c, grp->nodes + i, 1) : launch_batch<MT_MAX>(c, grp->nodes + i, cnt);
        if (s != BNB_OK) return s;
    }
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------ norms and clipping */
template <typename T> __global__ void __launch_bounds__(THREADS) k_sqnorm(const T *g, int64_t n, float *out,
                                                                          const float *acc) {
    __shared__ float red[32];
    float s = 0.f;
    for (int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * THREADS) {
        float v = to_f(g[i]);
        s += v * v;
    }
    s = bnb_cu_block_sum(s, red);
    if (threadIdx.x == 0) atomicAdd(out, blockIdx.x == 0 && acc ? s + *acc : s);
}

/* out holds ||g||^2 on entry, the scale on exit (single thread: 100 values). */
__global__ void k_pclip(float *out, float *hist, const float *hyper, int percentile, const float *extra) {
    if (threadIdx.x != 0) return;
    float sq = *out, scale = 1.f;
    if (finite_f(sq)) {
        int32_t t = __float_as_int(hyper[BNB_HYPER_STEP]) + 1;
        int cnt = t < BNB_OPTIM_HISTORY_N ? t : BNB_OPTIM_HISTORY_N;
        hist[t % BNB_OPTIM_HISTORY_N] = sq;
        float v[BNB_OPTIM_HISTORY_N];
        for (int i = 0; i < cnt; i++) v[i] = hist[t < BNB_OPTIM_HISTORY_N ? i + 1 : i];
        for (int i = 1; i < cnt; i++) { /* insertion sort */
            float x = v[i];
            int j = i - 1;
            while (j >= 0 && v[j] > x) {
                v[j + 1] = v[j];
                j--;
            }
            v[j + 1] = x;
        }
        float clip = sqrtf(v[percentile * cnt / BNB_OPTIM_HISTORY_N]), cur = sqrtf(sq);
        if (cur > clip) scale = clip / cur;
    }
    if (extra) scale *= *extra;
    *out = scale;
}

__global__ void k_gclip(const float *total, float *out, float max_norm) {
    double s = (double)max_norm / (sqrt((double)*total) + 1e-6);
    *out = (isfinite(s) && s < 1.0) ? (float)s : 1.f;
}

static bnb_status launch_sqnorm(bnb_cuda_ctx *c, const bnb_tensor *g, float *out, const float *acc) {
    int64_t n = bnb_nelements(g);
    int grid = (int)BNB_MAX((int64_t)1, BNB_MIN((int64_t)c->n_sm * 4, (n + THREADS - 1) / THREADS));
    BNB_CUDA_TRY(cudaMemsetAsync(out, 0, sizeof(float), c->stream), "bnb_optimizer_gnorm");
    switch (g->type) {
    case BNB_TYPE_F16: k_sqnorm<__half><<<grid, THREADS, 0, c->stream>>>((const __half *)g->data, n, out, acc); break;
    case BNB_TYPE_BF16:
        k_sqnorm<__nv_bfloat16><<<grid, THREADS, 0, c->stream>>>((const __nv_bfloat16 *)g->data, n, out, acc);
        break;
    default: k_sqnorm<float><<<grid, THREADS, 0, c->stream>>>((const float *)g->data, n, out, acc); break;
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_gnorm");
    return BNB_OK;
}

extern "C" bnb_status bnb_cuda_optimizer(bnb_cuda_ctx *c, bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_OPTIMIZER_UPDATE: return cuda_update(c, node);
    case BNB_OP_OPTIMIZER_GNORM:
        return launch_sqnorm(c, node->src[0], (float *)node->data,
                             node->src[1] ? (const float *)node->src[1]->data : nullptr);
    case BNB_OP_OPTIMIZER_CLIP: {
        float *out = (float *)node->data;
        if (bnb_get_op_i32(node, BNB_CLIP_P_MODE) == BNB_CLIP_GLOBAL) {
            k_gclip<<<1, 1, 0, c->stream>>>((const float *)node->src[0]->data, out,
                                            bnb_get_op_f32(node, BNB_CLIP_P_MAX_NORM));
            BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_clip");
            return BNB_OK;
        }
        bnb_status s = launch_sqnorm(c, node->src[0], out, nullptr);
        if (s != BNB_OK) return s;
        k_pclip<<<1, 32, 0, c->stream>>>(out, (float *)node->src[1]->data, (const float *)node->src[2]->data,
                                         bnb_get_op_i32(node, BNB_CLIP_P_PERCENTILE),
                                         node->src[3] ? (const float *)node->src[3]->data : nullptr);
        BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_clip");
        return BNB_OK;
    }
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not an optimizer op", bnb_op_name(node->op));
    }
}

extern "C" bool bnb_cuda_optimizer_supports(const bnb_tensor *node) { return true; }
