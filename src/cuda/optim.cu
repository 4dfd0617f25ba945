/* CUDA kernels of the optimizers: the fused in-place update (32-bit and 8-bit blockwise states, all nine optimizers,
 * multi-tensor: a group of same-kind update nodes is updated by one launch per MT_MAX tensors), the gradient squared
 * norm and the clipping scales. Same formulas and f32 arithmetic as src/cpu/optim.c (IEEE division and sqrt: the
 * build does not use fast math), so CPU and CUDA agree to the last bits except where powf differs by an ulp. */
#include "cuda-common.cuh"

extern "C" {
#include "../optim/optim-impl.h"
}

#define MT_MAX 24          /* tensors per launch (kernel parameter space) */
#define THREADS 256
#define CHUNK32 4096       /* elements per CTA, 32-bit states (16 per thread) */
#define CHUNK8 (THREADS / 32 * BNB_OPTIM_BLOCK) /* a warp per 256-element block: 2048 per CTA */
#define HY_UNORM 10        /* hyper slots used as LAMB/LARS norm accumulators */
#define HY_PNORM 11

struct upd_tensor {
    void *p;
    const void *g;
    void *s1, *s2;
    float *hyper;
    const float *scale;
    int32_t n, npad, blk0, pad;
};
struct upd_batch {
    upd_tensor t[MT_MAX];
    int32_t count, type, skip_zeros, use_unorm;
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

__device__ __forceinline__ int tensor_of(const upd_batch &b) {
    int k = 0;
    while (k + 1 < b.count && (int)blockIdx.x >= b.t[k + 1].blk0) k++;
    return k;
}

__device__ __forceinline__ dev_hp read_hp(const upd_batch &b, const upd_tensor &t) {
    dev_hp h;
    const float *hy = t.hyper;
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
    h.c1 = 1.f - powf(h.b1, (float)h.t);
    h.c2 = sqrtf(1.f - powf(h.b2, (float)h.t));
    h.step_size = -h.lr * h.c2 / h.c1;
    h.gscale = t.scale ? *t.scale : 1.f;
    h.uscale = 1.f;
    if (b.use_unorm && hy[BNB_HYPER_MAX_UNORM] > 0.f) {
        float u = sqrtf(hy[HY_UNORM]), lim = hy[BNB_HYPER_MAX_UNORM] * sqrtf(hy[HY_PNORM]);
        h.uscale = u > lim ? lim / u : 1.f;
    }
    h.skip_zeros = b.skip_zeros != 0;
    return h;
}

/* One element, as elem_update in src/cpu/optim.c. */
__device__ __forceinline__ void elem_update(const dev_hp &h, float g, float &p, float &s1, float &s2, float &s3) {
    float pv = p;
    switch (h.type) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB: {
        float m = h.b1 * s1 + (1.f - h.b1) * g;
        float v = h.b2 * s2 + (1.f - h.b2) * (g * g);
        pv = pv + h.uscale * h.step_size * (m / (sqrtf(v) + h.eps * h.c2));
        if (h.wd > 0.f) pv = pv * (1.f - h.lr * h.wd);
        s1 = m;
        s2 = v;
        break;
    }
    case BNB_OPTIM_MOMENTUM:
    case BNB_OPTIM_LARS: {
        if (h.wd > 0.f) g = g + h.wd * pv;
        float m = h.t == 1 ? g : h.b1 * s1 + g;
        pv = pv - h.uscale * h.lr * m;
        s1 = m;
        break;
    }
    case BNB_OPTIM_LION: {
        if (h.wd > 0.f) pv = pv * (1.f - h.lr * h.wd);
        float u = h.b1 * s1 + (1.f - h.b1) * g;
        pv = pv - h.lr * (u > 0.f ? 1.f : (u < 0.f ? -1.f : 0.f));
        s1 = h.b2 * s1 + (1.f - h.b2) * g;
        break;
    }
    case BNB_OPTIM_RMSPROP: {
        if (h.wd > 0.f) g = g + h.wd * pv;
        float v = h.b1 * s1 + (1.f - h.b1) * (g * g);
        pv = pv - h.lr * (g / (sqrtf(v) + h.eps));
        s1 = v;
        break;
    }
    case BNB_OPTIM_ADAGRAD: {
        if (h.wd > 0.f) g = g + h.wd * pv;
        float v = s1 + g * g;
        pv = pv - h.lr * (g / (sqrtf(v) + h.eps));
        s1 = v;
        break;
    }
    case BNB_OPTIM_ADEMAMIX: {
        float m1 = h.b1 * s1 + (1.f - h.b1) * g;
        float m2 = h.b3 * s3 + (1.f - h.b3) * g;
        float v = h.b2 * s2 + (1.f - h.b2) * (g * g);
        pv = pv - h.lr * ((m1 / h.c1 + h.alpha * m2) / (sqrtf(v) / h.c2 + h.eps));
        if (h.wd > 0.f) pv = pv * (1.f - h.lr * h.wd);
        s1 = m1;
        s2 = v;
        s3 = m2;
        break;
    }
    default: break;
    }
    p = pv;
}

__device__ __forceinline__ float elem_unorm(const dev_hp &h, float g, float p, float s1, float s2) {
    if (h.type == BNB_OPTIM_LAMB) {
        float m = h.b1 * s1 + (1.f - h.b1) * g;
        float v = h.b2 * s2 + (1.f - h.b2) * (g * g);
        float u = (h.c2 / h.c1) * (m / (sqrtf(v) + h.eps * h.c2));
        return u * u;
    }
    if (h.wd > 0.f) g = g + h.wd * p;
    float m = h.t == 1 ? g : h.b1 * s1 + g;
    return m * m;
}

/* ------------------------------------------------------------------------------------------ 32-bit */
template <typename PT, typename GT> __device__ __forceinline__ void upd32_one(const dev_hp &h, PT *P, const GT *G,
                                                                             float *S1, float *S2, float *S3, int64_t i) {
    float g = to_f(G[i]) * h.gscale;
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

template <typename PT, typename GT> __global__ void __launch_bounds__(THREADS) k_upd32(const upd_batch b) {
    const upd_tensor &t = b.t[tensor_of(b)];
    dev_hp h = read_hp(b, t);
    int64_t start = (int64_t)(blockIdx.x - t.blk0) * CHUNK32, end = min((int64_t)t.n, start + CHUNK32);
    PT *P = (PT *)t.p;
    const GT *G = (const GT *)t.g;
    float *S1 = (float *)t.s1, *S2 = (float *)t.s2, *S3 = b.type == BNB_OPTIM_ADEMAMIX ? S1 + t.n : nullptr;
    for (int64_t i = start + threadIdx.x; i < end; i += THREADS) upd32_one<PT, GT>(h, P, G, S1, S2, S3, i);
}

/* F32 param and grad, 16-byte aligned pointers, n % 4 == 0: float4 loads/stores. */
__global__ void __launch_bounds__(THREADS) k_upd32_vec(const upd_batch b) {
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
            float g = gg[k] * h.gscale;
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

#define PER_LANE (BNB_OPTIM_BLOCK / 32) /* 8 consecutive elements per lane */

/* Dequantize this lane's 8 values of block `blk` (element offset off of the block start in the codes). */
__device__ __forceinline__ void deq8(const opt8_dev &q, const float *smap, int64_t off, int64_t blk, int len, int j0,
                                     float *out) {
    float am = q.absmax[blk];
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) out[k] = j0 + k < len ? smap[q.codes[off + j0 + k]] * am : 0.f;
}

__device__ __forceinline__ void req8(const opt8_dev &q, const float *smap, int64_t off, int64_t blk, int len,
                                     int j0, const float *vals) {
    float am = 0.f;
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) am = fmaxf(am, fabsf(vals[k]));
    am = bnb_cu_warp_max(am);
    if ((threadIdx.x & 31) == 0) q.absmax[blk] = am;
    uint8_t c[PER_LANE];
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) c[k] = (uint8_t)bnb_optim_quantize_code(smap, am > 0.f ? vals[k] / am : 0.f, vals[k]);
    if (len == BNB_OPTIM_BLOCK) {
        uint2 w;
        memcpy(&w, c, 8);
        *(uint2 *)(q.codes + off + j0) = w;
    } else {
#pragma unroll
        for (int k = 0; k < PER_LANE; k++)
            if (j0 + k < len) q.codes[off + j0 + k] = c[k];
    }
}

template <typename PT, typename GT> __global__ void __launch_bounds__(THREADS) k_upd8(const upd_batch b) {
    __shared__ float smap1[256], smap2[256];
    const upd_tensor &t = b.t[tensor_of(b)];
    const bool two = bnb_optim_n_states((bnb_optim_type)b.type) == 2, three = b.type == BNB_OPTIM_ADEMAMIX;
    int64_t n1 = three ? 2 * (int64_t)t.npad : t.n;
    opt8_dev q1 = opt8_parts(t.s1, n1), q2 = two ? opt8_parts(t.s2, t.n) : q1;
    smap1[threadIdx.x] = q1.map[threadIdx.x];
    if (two) smap2[threadIdx.x] = q2.map[threadIdx.x];
    __syncthreads();
    dev_hp h = read_hp(b, t);
    int64_t blk = (int64_t)(blockIdx.x - t.blk0) * (THREADS / 32) + (threadIdx.x >> 5);
    int64_t i0 = blk * BNB_OPTIM_BLOCK;
    if (i0 >= t.n) return; /* whole warp leaves together */
    int len = (int)min((int64_t)BNB_OPTIM_BLOCK, t.n - i0), j0 = (threadIdx.x & 31) * PER_LANE;
    int64_t blk3 = t.npad / BNB_OPTIM_BLOCK + blk;
    float s1[PER_LANE], s2[PER_LANE], s3[PER_LANE];
    deq8(q1, smap1, i0, blk, len, j0, s1);
    if (two) deq8(q2, smap2, i0, blk, len, j0, s2);
    if (three) deq8(q1, smap1, (int64_t)t.npad + i0, blk3, len, j0, s3);
    PT *P = (PT *)t.p;
    const GT *G = (const GT *)t.g;
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) {
        if (j0 + k >= len) break;
        int64_t i = i0 + j0 + k;
        float g = to_f(G[i]) * h.gscale;
        if (h.skip_zeros && g == 0.f) continue;
        if (!finite_f(g)) {
            s1[k] = s2[k] = s3[k] = 0.f;
            continue;
        }
        float p = to_f(P[i]);
        elem_update(h, g, p, s1[k], s2[k], s3[k]);
        P[i] = from_f<PT>(p);
    }
    req8(q1, smap1, i0, blk, len, j0, s1);
    if (two) req8(q2, smap2, i0, blk, len, j0, s2);
    if (three) req8(q1, smap1, (int64_t)t.npad + i0, blk3, len, j0, s3);
}

/* ------------------------------------------------------------------------------------------ LAMB/LARS norms */
template <typename PT, typename GT> __global__ void __launch_bounds__(THREADS) k_unorm(const upd_batch b, int bits) {
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
        float g = to_f(G[i]) * h.gscale, p = to_f(P[i]);
        ps += p * p;
        if (!finite_f(g) || (h.skip_zeros && g == 0.f)) continue;
        float a, c;
        if (bits == 32) {
            a = ((const float *)t.s1)[i];
            c = t.s2 ? ((const float *)t.s2)[i] : 0.f;
        } else {
            a = q1.map[q1.codes[i]] * q1.absmax[i / BNB_OPTIM_BLOCK];
            c = t.s2 ? q2.map[q2.codes[i]] * q2.absmax[i / BNB_OPTIM_BLOCK] : 0.f;
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

__global__ void k_step_inc(const upd_batch b) {
    int k = threadIdx.x;
    if (k < b.count) {
        float *hy = b.t[k].hyper;
        hy[BNB_HYPER_STEP] = __int_as_float(__float_as_int(hy[BNB_HYPER_STEP]) + 1);
    }
}

/* ------------------------------------------------------------------------------------------ launching */
template <typename PT, typename GT> static void launch_typed(cudaStream_t s, const upd_batch &b, int bits, int grid,
                                                              bool vec) {
    if (bits == 8)
        k_upd8<PT, GT><<<grid, THREADS, 0, s>>>(b);
    else if (vec)
        k_upd32_vec<<<grid, THREADS, 0, s>>>(b);
    else
        k_upd32<PT, GT><<<grid, THREADS, 0, s>>>(b);
}

template <typename PT> static void launch_g(cudaStream_t s, bnb_type gt, const upd_batch &b, int bits, int grid, bool vec) {
    switch (gt) {
    case BNB_TYPE_F16: launch_typed<PT, __half>(s, b, bits, grid, vec); break;
    case BNB_TYPE_BF16: launch_typed<PT, __nv_bfloat16>(s, b, bits, grid, vec); break;
    default: launch_typed<PT, float>(s, b, bits, grid, vec); break;
    }
}

template <typename PT> static void launch_unorm_g(cudaStream_t s, bnb_type gt, const upd_batch &b, int bits, int grid) {
    switch (gt) {
    case BNB_TYPE_F16: k_unorm<PT, __half><<<grid, THREADS, 0, s>>>(b, bits); break;
    case BNB_TYPE_BF16: k_unorm<PT, __nv_bfloat16><<<grid, THREADS, 0, s>>>(b, bits); break;
    default: k_unorm<PT, float><<<grid, THREADS, 0, s>>>(b, bits); break;
    }
}

static bnb_status launch_batch(bnb_cuda_ctx *c, bnb_tensor *const *nodes, int count) {
    const bnb_tensor *n0 = nodes[0];
    int bits = bnb_get_op_i32(n0, BNB_UPD_P_BITS), type = bnb_get_op_i32(n0, BNB_UPD_P_TYPE);
    bnb_type pt = n0->src[0]->type, gt = n0->src[1]->type;
    upd_batch b;
    memset(&b, 0, sizeof b);
    b.count = count;
    b.type = type;
    b.skip_zeros = (bnb_get_op_i32(n0, BNB_UPD_P_FLAGS) & BNB_UPD_F_SKIP_ZEROS) != 0;
    int chunk = bits == 8 ? CHUNK8 : CHUNK32;
    int64_t blocks = 0;
    bool vec = bits == 32 && pt == BNB_TYPE_F32 && gt == BNB_TYPE_F32;
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
        t.blk0 = (int32_t)blocks;
        blocks += (t.n + chunk - 1) / chunk;
        vec = vec && t.n % 4 == 0 && bnb_cu_aligned16(t.p) && bnb_cu_aligned16(t.g) && bnb_cu_aligned16(t.s1) &&
              (!t.s2 || bnb_cu_aligned16(t.s2));
    }
    if (blocks == 0) return BNB_OK;
    if (blocks > INT32_MAX) return bnb_fail(BNB_ERR_SHAPE, "bnb_optimizer_update (cuda): too many blocks");
    /* LAMB/LARS: norms first (solo nodes only), accumulated into the hyper tensor */
    if (bnb_optim_uses_unorm((bnb_optim_type)type)) {
        /* max_unorm lives in device memory: the norms are always computed, used only when max_unorm > 0 */
        b.use_unorm = 1;
        BNB_CUDA_TRY(cudaMemsetAsync(b.t[0].hyper + HY_UNORM, 0, 2 * sizeof(float), c->stream), "bnb_optimizer_update");
        int grid = (int)BNB_MIN((int64_t)c->n_sm * 8, (b.t[0].n + THREADS - 1) / THREADS);
        if (grid < 1) grid = 1;
        switch (pt) {
        case BNB_TYPE_F16: launch_unorm_g<__half>(c->stream, gt, b, bits, grid); break;
        case BNB_TYPE_BF16: launch_unorm_g<__nv_bfloat16>(c->stream, gt, b, bits, grid); break;
        default: launch_unorm_g<float>(c->stream, gt, b, bits, grid); break;
        }
        BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update (norms)");
    }
    switch (pt) {
    case BNB_TYPE_F16: launch_g<__half>(c->stream, gt, b, bits, (int)blocks, vec); break;
    case BNB_TYPE_BF16: launch_g<__nv_bfloat16>(c->stream, gt, b, bits, (int)blocks, vec); break;
    default: launch_g<float>(c->stream, gt, b, bits, (int)blocks, vec); break;
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update");
    k_step_inc<<<1, 32, 0, c->stream>>>(b);
    BNB_CUDA_CHECK_LAUNCH("bnb_optimizer_update (step)");
    return BNB_OK;
}

static bnb_status cuda_update(bnb_cuda_ctx *c, bnb_tensor *node) {
    int role = bnb_get_op_i32(node, BNB_UPD_P_ROLE);
    if (role == BNB_UPD_MEMBER) return BNB_OK; /* updated by its group's leader */
    if (bnb_get_op_i32(node, BNB_UPD_P_FLAGS) & BNB_UPD_F_SPARSE_ROWS)
        return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_optimizer_update (cuda): sparse row updates run on the CPU backend "
                        "only; use dense updates (sparse_rows = false) on CUDA");
    if (role == BNB_UPD_SOLO) return launch_batch(c, &node, 1);
    const bnb_optim_group *grp;
    memcpy(&grp, &node->op_params[BNB_UPD_P_GROUP], sizeof grp);
    for (int i = 0; i < grp->n; i += MT_MAX) {
        bnb_status s = launch_batch(c, grp->nodes + i, BNB_MIN(MT_MAX, grp->n - i));
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

extern "C" bool bnb_cuda_optimizer_supports(const bnb_tensor *node) {
    if (node->op != BNB_OP_OPTIMIZER_UPDATE) return true;
    return !(bnb_get_op_i32(node, BNB_UPD_P_FLAGS) & BNB_UPD_F_SPARSE_ROWS);
}
