/* CUDA nn ops: GET_ROWS, CONCAT, SOFTMAX, RMS_NORM, LAYER_NORM, ROPE, CROSS_ENTROPY.
 * Row ops (softmax, norms) run one block per row with the row held in registers (16-byte loads when the row is
 * contiguous and aligned): one read and one write of the data. Rows too long for registers take a multi-pass path. */
#include "cuda-common.cuh"

#include <math.h>

#define NV 4 /* chunks (16-byte vectors, or single elements) per thread on the register path */

enum { K_SOFTMAX, K_RMS, K_LAYER };

/* ------------------------------------------------------------------------------------------------ row ops */
/* One block per row. Chunk j of thread t covers elements (t + j*blockDim.x)*W .. +W-1, W = vector width (VEC) or 1.
 * p0: softmax scale or norm eps. ne1 and causal: the softmax mask (row i1 sees columns 0 .. i1 + ne0 - ne1). */
template <typename T, int KIND, bool VEC>
__global__ void __launch_bounds__(1024) row_op_kernel(const char *__restrict__ x, bnb_cu_shape xs,
                                                      T *__restrict__ y, float p0, int causal) {
    constexpr int W = VEC ? bnb_cu_vec<T>::N : 1;
    __shared__ float red[32];
    const uint32_t row = blockIdx.x;
    const int ne0 = xs.ne[0];
    const char *xr = x + bnb_cu_row_offset(xs, row);
    T *yr = y + (int64_t)row * ne0;
    const int limit = causal ? (int)(row % (uint32_t)xs.ne[1]) + ne0 - xs.ne[1] : ne0 - 1; /* last visible column */
    float v[NV][W];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int e0 = (threadIdx.x + j * blockDim.x) * W;
#pragma unroll
        for (int k = 0; k < W; k++) v[j][k] = 0.f;
        if (VEC) {
            if (e0 < ne0) {
                bnb_cu_vec<T> vv = bnb_cu_load_vec((const T *)xr + e0);
#pragma unroll
                for (int k = 0; k < W; k++) v[j][k] = bnb_cu_to_f32(vv.v[k]);
            }
        } else if (e0 < ne0) {
            v[j][0] = bnb_cu_to_f32(*(const T *)(xr + (int64_t)e0 * xs.nb[0]));
        }
    }
    if (KIND == K_SOFTMAX) {
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < NV; j++)
#pragma unroll
            for (int k = 0; k < W; k++) {
                int e = (threadIdx.x + j * blockDim.x) * W + k;
                v[j][k] = e <= limit && e < ne0 ? v[j][k] * p0 : -INFINITY;
                m = fmaxf(m, v[j][k]);
            }
        m = bnb_cu_block_max(m, red);
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < NV; j++)
#pragma unroll
            for (int k = 0; k < W; k++) {
                v[j][k] = v[j][k] == -INFINITY ? 0.f : expf(v[j][k] - m);
                s += v[j][k];
            }
        s = bnb_cu_block_sum(s, red);
        float inv = 1.f / s;
#pragma unroll
        for (int j = 0; j < NV; j++)
#pragma unroll
            for (int k = 0; k < W; k++) v[j][k] *= inv;
    } else {
        float mean = 0.f;
        if (KIND == K_LAYER) {
            float s = 0.f;
#pragma unroll
            for (int j = 0; j < NV; j++)
#pragma unroll
                for (int k = 0; k < W; k++)
                    if ((threadIdx.x + j * blockDim.x) * W + k < ne0) s += v[j][k];
            mean = bnb_cu_block_sum(s, red) / (float)ne0;
        }
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < NV; j++)
#pragma unroll
            for (int k = 0; k < W; k++)
                if ((threadIdx.x + j * blockDim.x) * W + k < ne0) {
                    float d = v[j][k] - mean;
                    ss += d * d;
                }
        ss = bnb_cu_block_sum(ss, red);
        float inv = 1.f / sqrtf(ss / (float)ne0 + p0);
#pragma unroll
        for (int j = 0; j < NV; j++)
#pragma unroll
            for (int k = 0; k < W; k++) v[j][k] = (v[j][k] - mean) * inv;
    }
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int e0 = (threadIdx.x + j * blockDim.x) * W;
        if (e0 >= ne0) continue;
        if (VEC) {
            bnb_cu_vec<T> vv;
#pragma unroll
            for (int k = 0; k < W; k++) vv.v[k] = bnb_cu_from_f32<T>(v[j][k]);
            bnb_cu_store_vec(yr + e0, vv);
        } else {
            yr[e0] = bnb_cu_from_f32<T>(v[j][0]);
        }
    }
}

/* Long rows: several passes over global memory (the row stays in L2 between passes). */
template <typename T, int KIND>
__global__ void __launch_bounds__(1024) row_op_long_kernel(const char *__restrict__ x, bnb_cu_shape xs,
                                                           T *__restrict__ y, float p0, int causal) {
    __shared__ float red[32];
    const uint32_t row = blockIdx.x;
    const int ne0 = xs.ne[0];
    const char *xr = x + bnb_cu_row_offset(xs, row);
    T *yr = y + (int64_t)row * ne0;
    const int limit = causal ? (int)(row % (uint32_t)xs.ne[1]) + ne0 - xs.ne[1] : ne0 - 1;
#define LOADX(e) bnb_cu_to_f32(*(const T *)(xr + (int64_t)(e) * xs.nb[0]))
    if (KIND == K_SOFTMAX) {
        float m = -INFINITY;
        for (int e = threadIdx.x; e <= limit; e += blockDim.x) m = fmaxf(m, LOADX(e) * p0);
        m = bnb_cu_block_max(m, red);
        float s = 0.f;
        for (int e = threadIdx.x; e <= limit; e += blockDim.x) s += expf(LOADX(e) * p0 - m);
        s = bnb_cu_block_sum(s, red);
        float inv = 1.f / s;
        for (int e = threadIdx.x; e < ne0; e += blockDim.x)
            yr[e] = bnb_cu_from_f32<T>(e <= limit ? expf(LOADX(e) * p0 - m) * inv : 0.f);
    } else {
        float mean = 0.f;
        if (KIND == K_LAYER) {
            float s = 0.f;
            for (int e = threadIdx.x; e < ne0; e += blockDim.x) s += LOADX(e);
            mean = bnb_cu_block_sum(s, red) / (float)ne0;
        }
        float ss = 0.f;
        for (int e = threadIdx.x; e < ne0; e += blockDim.x) {
            float d = LOADX(e) - mean;
            ss += d * d;
        }
        ss = bnb_cu_block_sum(ss, red);
        float inv = 1.f / sqrtf(ss / (float)ne0 + p0);
        for (int e = threadIdx.x; e < ne0; e += blockDim.x) yr[e] = bnb_cu_from_f32<T>((LOADX(e) - mean) * inv);
    }
#undef LOADX
}

template <typename T, int KIND>
static void launch_row_op(const bnb_cuda_ctx *c, const bnb_tensor *src, bnb_tensor *dst, float p0, int causal) {
    const int W = bnb_cu_vec<T>::N;
    int64_t ne0 = src->ne[0];
    unsigned nrows = (unsigned)bnb_nrows(src);
    bnb_cu_shape xs = bnb_cu_shape_of(src);
    bool vec = src->nb[0] == sizeof(T) && ne0 % W == 0 && bnb_cu_aligned16(src->data) && bnb_cu_aligned16(dst->data);
    for (int i = 1; i < 4; i++) vec = vec && (src->ne[i] == 1 || src->nb[i] % 16 == 0);
    int64_t per_thread = vec ? (int64_t)NV * W : NV;
    int64_t threads = (ne0 + per_thread - 1) / per_thread;
    threads = (threads + 31) / 32 * 32;
    if (threads < 32) threads = 32;
    if (threads <= 1024) {
        if (vec)
            row_op_kernel<T, KIND, true><<<nrows, (unsigned)threads, 0, c->stream>>>((const char *)src->data, xs,
                                                                                     (T *)dst->data, p0, causal);
        else
            row_op_kernel<T, KIND, false><<<nrows, (unsigned)threads, 0, c->stream>>>((const char *)src->data, xs,
                                                                                      (T *)dst->data, p0, causal);
    } else {
        row_op_long_kernel<T, KIND><<<nrows, 1024, 0, c->stream>>>((const char *)src->data, xs, (T *)dst->data, p0,
                                                                   causal);
    }
}

template <int KIND> static bnb_status row_op(const bnb_cuda_ctx *c, bnb_tensor *node, float p0, int causal) {
    const bnb_tensor *src = node->src[0];
    switch (src->type) {
    case BNB_TYPE_F32: launch_row_op<float, KIND>(c, src, node, p0, causal); break;
    case BNB_TYPE_F16: launch_row_op<__half, KIND>(c, src, node, p0, causal); break;
    case BNB_TYPE_BF16: launch_row_op<__nv_bfloat16, KIND>(c, src, node, p0, causal); break;
    default: return bnb_fail(BNB_ERR_TYPE, "%s: type %s is not supported on CUDA", bnb_op_name(node->op), bnb_type_name(src->type));
    }
    BNB_CUDA_CHECK_LAUNCH("row op");
    return BNB_OK;
}

extern "C" bnb_status bnb_cuda_softmax(bnb_cuda_ctx *c, bnb_tensor *node) {
    return row_op<K_SOFTMAX>(c, node, bnb_get_op_f32(node, 0), node->op_params[1] ? 1 : 0);
}

extern "C" bnb_status bnb_cuda_norm(bnb_cuda_ctx *c, bnb_tensor *node) {
    float eps = bnb_get_op_f32(node, 0);
    if (node->op == BNB_OP_RMS_NORM) return row_op<K_RMS>(c, node, eps, 0);
    return row_op<K_LAYER>(c, node, eps, 0);
}

/* ------------------------------------------------------------------------------------------------ get_rows */
/* Block per output row. An index outside [0, R) is clamped (never read out of bounds), its row written as zeros if
 * R == 0, and the node is reported through the error flag. */
__global__ void get_rows_kernel(const char *__restrict__ a, bnb_cu_shape as, int ta, const char *__restrict__ idx,
                                int64_t idx_nb0, float *__restrict__ y, int *err_flag, int err_code) {
    const uint32_t r = blockIdx.x;
    const int ne0 = as.ne[0], nrows_a = as.ne[1];
    int64_t k = *(const int32_t *)(idx + (int64_t)r * idx_nb0);
    bool bad = k < 0 || k >= nrows_a;
    if (bad && threadIdx.x == 0) bnb_cu_report_bad(err_flag, err_code, (int)k, (int)r);
    if (k < 0) k = 0;
    if (k >= nrows_a) k = nrows_a - 1;
    float *yr = y + (int64_t)r * ne0;
    const char *ar = a + k * as.nb[1];
    for (int e = threadIdx.x; e < ne0; e += blockDim.x) yr[e] = k < 0 ? 0.f : bnb_cu_load(ar + (int64_t)e * as.nb[0], ta);
}

extern "C" bnb_status bnb_cuda_get_rows(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *idx = node->src[1];
    unsigned n = (unsigned)idx->ne[0];
    get_rows_kernel<<<n, 256, 0, c->stream>>>((const char *)a->data, bnb_cu_shape_of(a), (int)a->type,
                                              (const char *)idx->data, (int64_t)idx->nb[0], (float *)node->data,
                                              c->err_flag, c->node_index + 1);
    BNB_CUDA_CHECK_LAUNCH("bnb_get_rows");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ concat */
template <typename E>
__global__ void concat_kernel(const char *__restrict__ a, bnb_cu_shape as, const char *__restrict__ b,
                              bnb_cu_shape bs, E *__restrict__ y, bnb_cu_shape ys, int dim, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        uint32_t rem = i;
        int32_t c[4];
#pragma unroll
        for (int d = 0; d < 4; d++) {
            c[d] = (int32_t)(rem % (uint32_t)ys.ne[d]);
            rem /= (uint32_t)ys.ne[d];
        }
        const char *src;
        const bnb_cu_shape *s;
        if (c[dim] < as.ne[dim]) {
            src = a;
            s = &as;
        } else {
            c[dim] -= as.ne[dim];
            src = b;
            s = &bs;
        }
        int64_t off = (int64_t)c[0] * s->nb[0] + (int64_t)c[1] * s->nb[1] + (int64_t)c[2] * s->nb[2] +
                      (int64_t)c[3] * s->nb[3];
        y[i] = *(const E *)(src + off);
    }
}

extern "C" bnb_status bnb_cuda_concat(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    int dim = node->op_params[0];
    uint32_t n = (uint32_t)bnb_nelements(node);
    unsigned grid = bnb_cu_grid(c, n, 256);
    if (bnb_type_size(node->type) == 4)
        concat_kernel<uint32_t><<<grid, 256, 0, c->stream>>>((const char *)a->data, bnb_cu_shape_of(a),
                                                             (const char *)b->data, bnb_cu_shape_of(b),
                                                             (uint32_t *)node->data, bnb_cu_shape_of(node), dim, n);
    else
        concat_kernel<uint16_t><<<grid, 256, 0, c->stream>>>((const char *)a->data, bnb_cu_shape_of(a),
                                                             (const char *)b->data, bnb_cu_shape_of(b),
                                                             (uint16_t *)node->data, bnb_cu_shape_of(node), dim, n);
    BNB_CUDA_CHECK_LAUNCH("bnb_concat");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ rope */
/* Thread per element of a [head_dim, heads, tokens]. Angles in double: theta = pos * base^(-2i/n_rot). */
template <typename T>
__global__ void rope_kernel(const char *__restrict__ x, bnb_cu_shape xs, const char *__restrict__ pos, int64_t pos_nb0,
                            T *__restrict__ y, int n_rot, int neox, double base, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        uint32_t i0 = i % (uint32_t)xs.ne[0], rest = i / (uint32_t)xs.ne[0];
        uint32_t i1 = rest % (uint32_t)xs.ne[1], i2 = rest / (uint32_t)xs.ne[1];
        const char *base_ptr = x + (int64_t)i1 * xs.nb[1] + (int64_t)i2 * xs.nb[2];
        float out;
        if ((int)i0 >= n_rot) {
            out = bnb_cu_to_f32(*(const T *)(base_ptr + (int64_t)i0 * xs.nb[0]));
        } else {
            int half = n_rot / 2, pair, first_dim, second_dim;
            bool is_first;
            if (neox) {
                pair = (int)i0 % half;
                is_first = (int)i0 < half;
                first_dim = pair;
                second_dim = pair + half;
            } else {
                pair = (int)i0 / 2;
                is_first = (i0 & 1u) == 0;
                first_dim = 2 * pair;
                second_dim = 2 * pair + 1;
            }
            float x0 = bnb_cu_to_f32(*(const T *)(base_ptr + (int64_t)first_dim * xs.nb[0]));
            float x1 = bnb_cu_to_f32(*(const T *)(base_ptr + (int64_t)second_dim * xs.nb[0]));
            double p = (double)*(const int32_t *)(pos + (int64_t)i2 * pos_nb0);
            double theta = p * pow(base, -2.0 * pair / n_rot);
            double sn, cs;
            sincos(theta, &sn, &cs);
            out = is_first ? (float)(x0 * cs - x1 * sn) : (float)(x0 * sn + x1 * cs);
        }
        y[i] = bnb_cu_from_f32<T>(out);
    }
}

extern "C" bnb_status bnb_cuda_rope(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *pos = node->src[1];
    int n_rot = node->op_params[0], neox = node->op_params[1] == BNB_ROPE_NEOX;
    double base = (double)bnb_get_op_f32(node, 2);
    uint32_t n = (uint32_t)bnb_nelements(node);
    unsigned grid = bnb_cu_grid(c, n, 256);
    bnb_cu_shape xs = bnb_cu_shape_of(a);
    switch (a->type) {
    case BNB_TYPE_F32:
        rope_kernel<float><<<grid, 256, 0, c->stream>>>((const char *)a->data, xs, (const char *)pos->data,
                                                        (int64_t)pos->nb[0], (float *)node->data, n_rot, neox, base, n);
        break;
    case BNB_TYPE_F16:
        rope_kernel<__half><<<grid, 256, 0, c->stream>>>((const char *)a->data, xs, (const char *)pos->data,
                                                         (int64_t)pos->nb[0], (__half *)node->data, n_rot, neox, base, n);
        break;
    case BNB_TYPE_BF16:
        rope_kernel<__nv_bfloat16><<<grid, 256, 0, c->stream>>>((const char *)a->data, xs, (const char *)pos->data,
                                                                (int64_t)pos->nb[0], (__nv_bfloat16 *)node->data,
                                                                n_rot, neox, base, n);
        break;
    default: return bnb_fail(BNB_ERR_TYPE, "bnb_rope: type %s is not supported on CUDA", bnb_type_name(a->type));
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_rope");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ cross entropy */
/* Online log-sum-exp state: max m and sum s of exp(x - m). */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return;
    s = (m == -INFINITY ? 0.f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.f : s2 * expf(m2 - mm));
    m = mm;
}

/* Block per row: loss[r] = logsumexp(row) - row[target]. Bad targets: flag, loss 0. */
__global__ void __launch_bounds__(256) cross_entropy_rows_kernel(const char *__restrict__ x, bnb_cu_shape xs, int tx,
                                                                 const char *__restrict__ tgt, bnb_cu_shape ts,
                                                                 double *__restrict__ loss, int *err_flag,
                                                                 int err_code) {
    __shared__ float sh_m[32], sh_s[32];
    const uint32_t row = blockIdx.x;
    const int ne0 = xs.ne[0];
    const char *xr = x + bnb_cu_row_offset(xs, row);
    float m = -INFINITY, s = 0.f;
    for (int e = threadIdx.x; e < ne0; e += blockDim.x) lse_merge(m, s, bnb_cu_load(xr + (int64_t)e * xs.nb[0], tx), 1.f);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sh_m[warp] = m;
        sh_s[warp] = s;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) lse_merge(m, s, sh_m[w], sh_s[w]);
    int t = *(const int32_t *)(tgt + bnb_cu_offset(ts, row));
    if (t < 0 || t >= ne0) {
        bnb_cu_report_bad(err_flag, err_code, t, (int)row);
        loss[row] = 0.0;
        return;
    }
    float xt = bnb_cu_load(xr + (int64_t)t * xs.nb[0], tx);
    loss[row] = ((double)m + log((double)s)) - (double)xt;
}

__global__ void __launch_bounds__(256) mean_kernel(const double *__restrict__ v, uint32_t n, float *__restrict__ y) {
    __shared__ double sh[32];
    double s = 0.0;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh[w];
        *y = (float)(t / (double)n);
    }
}

extern "C" size_t bnb_cuda_cross_entropy_scratch_size(const bnb_tensor *node) {
    return (size_t)bnb_nrows(node->src[0]) * sizeof(double);
}

extern "C" bnb_status bnb_cuda_cross_entropy(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0], *tgt = node->src[1];
    uint32_t nrows = (uint32_t)bnb_nrows(x);
    double *loss = (double *)c->scratch;
    cross_entropy_rows_kernel<<<nrows, 256, 0, c->stream>>>((const char *)x->data, bnb_cu_shape_of(x), (int)x->type,
                                                            (const char *)tgt->data, bnb_cu_shape_of(tgt), loss,
                                                            c->err_flag, c->node_index + 1);
    mean_kernel<<<1, 256, 0, c->stream>>>(loss, nrows, (float *)node->data);
    BNB_CUDA_CHECK_LAUNCH("bnb_cross_entropy");
    return BNB_OK;
}
