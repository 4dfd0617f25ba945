/* CUDA elementwise ops: CONT (copy / type conversion), binary ADD SUB MUL DIV with b broadcast to a, and the unary
 * maps. Each has a contiguous fast path (16-byte loads/stores, grid-stride, a few vectors in flight per thread) and a
 * generic path for any strides and type mix (one element per iteration, 32-bit index decomposition). Results are
 * contiguous with a's shape; arithmetic in f32. */
#include "cuda-common.cuh"

#include <math.h>

#define BLOCK 256
#define UNROLL 2

/* ------------------------------------------------------------------------------------------------ op functors */
enum { U_SCALE, U_NEG, U_ABS, U_SQR, U_SQRT, U_EXP, U_LOG, U_RELU, U_GELU, U_SILU, U_TANH, U_COUNT };
enum { B_ADD, B_SUB, B_MUL, B_DIV };

template <int OP> __device__ __forceinline__ float unary_apply(float x, float p) {
    if (OP == U_SCALE) return x * p;
    if (OP == U_NEG) return -x;
    if (OP == U_ABS) return fabsf(x);
    if (OP == U_SQR) return x * x;
    if (OP == U_SQRT) return sqrtf(x);
    if (OP == U_EXP) return expf(x);
    if (OP == U_LOG) return logf(x);
    if (OP == U_RELU) return x > 0.f ? x : 0.f;
    /* 0.5(1 + tanh u) == 1/(1 + exp(-2u)): the sigmoid form has no cancellation for negative x */
    if (OP == U_GELU) return x / (1.f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
    if (OP == U_SILU) return x / (1.f + expf(-x));
    return tanhf(x);
}

template <int OP> __device__ __forceinline__ float binary_apply(float a, float b) {
    if (OP == B_ADD) return a + b;
    if (OP == B_SUB) return a - b;
    if (OP == B_MUL) return a * b;
    return a / b;
}

static int unary_code(bnb_op op) {
    switch (op) {
    case BNB_OP_SCALE: return U_SCALE;
    case BNB_OP_NEG: return U_NEG;
    case BNB_OP_ABS: return U_ABS;
    case BNB_OP_SQR: return U_SQR;
    case BNB_OP_SQRT: return U_SQRT;
    case BNB_OP_EXP: return U_EXP;
    case BNB_OP_LOG: return U_LOG;
    case BNB_OP_RELU: return U_RELU;
    case BNB_OP_GELU: return U_GELU;
    case BNB_OP_SILU: return U_SILU;
    case BNB_OP_TANH: return U_TANH;
    default: return -1;
    }
}

/* ------------------------------------------------------------------------------------------------ unary */
/* Contiguous, 16-byte aligned: nvec full vectors, then `tail` (< vector width) trailing elements by block 0. */
template <typename T, int OP>
__global__ void __launch_bounds__(BLOCK) unary_vec_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t nvec,
                                                          int tail, float p) {
    constexpr int N = bnb_cu_vec<T>::N;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride * UNROLL) {
        bnb_cu_vec<T> v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
            if (i + u * stride < nvec) v[u] = bnb_cu_load_vec(x + (i + u * stride) * N);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            if (i + u * stride < nvec) {
#pragma unroll
                for (int k = 0; k < N; k++) v[u].v[k] = bnb_cu_from_f32<T>(unary_apply<OP>(bnb_cu_to_f32(v[u].v[k]), p));
                bnb_cu_store_vec(y + (i + u * stride) * N, v[u]);
            }
        }
    }
    if (blockIdx.x == 0 && threadIdx.x < tail) {
        int64_t j = nvec * N + threadIdx.x;
        y[j] = bnb_cu_from_f32<T>(unary_apply<OP>(bnb_cu_to_f32(x[j]), p));
    }
}

/* Any strides (src), contiguous dst of the same type. */
template <int OP>
__global__ void __launch_bounds__(BLOCK) unary_generic_kernel(const char *__restrict__ x, bnb_cu_shape xs,
                                                              char *__restrict__ y, int type, int es, uint32_t n,
                                                              float p) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        bnb_cu_store(y + (int64_t)i * es, type, unary_apply<OP>(bnb_cu_load(x + bnb_cu_offset(xs, i), type), p));
}

template <typename T, int OP>
static void launch_unary_vec(const bnb_cuda_ctx *c, const void *x, void *y, int64_t n, float p) {
    constexpr int N = bnb_cu_vec<T>::N;
    int64_t nvec = n / N;
    unsigned grid = bnb_cu_grid(c, (nvec + UNROLL - 1) / UNROLL, BLOCK);
    unary_vec_kernel<T, OP><<<grid, BLOCK, 0, c->stream>>>((const T *)x, (T *)y, nvec, (int)(n % N), p);
}

template <int OP>
static void launch_unary(const bnb_cuda_ctx *c, const bnb_tensor *src, bnb_tensor *dst, float p) {
    int64_t n = bnb_nelements(dst);
    if (bnb_is_contiguous(src) && bnb_cu_aligned16(src->data) && bnb_cu_aligned16(dst->data)) {
        switch (src->type) {
        case BNB_TYPE_F32: launch_unary_vec<float, OP>(c, src->data, dst->data, n, p); return;
        case BNB_TYPE_F16: launch_unary_vec<__half, OP>(c, src->data, dst->data, n, p); return;
        case BNB_TYPE_BF16: launch_unary_vec<__nv_bfloat16, OP>(c, src->data, dst->data, n, p); return;
        default: break;
        }
    }
    unary_generic_kernel<OP><<<bnb_cu_grid(c, n, BLOCK), BLOCK, 0, c->stream>>>(
        (const char *)src->data, bnb_cu_shape_of(src), (char *)dst->data, (int)dst->type,
        (int)bnb_type_size(dst->type), (uint32_t)n, p);
}

extern "C" bnb_status bnb_cuda_unary(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    float p = node->op == BNB_OP_SCALE ? bnb_get_op_f32(node, 0) : 0.f;
    switch (unary_code(node->op)) {
    case U_SCALE: launch_unary<U_SCALE>(c, src, node, p); break;
    case U_NEG: launch_unary<U_NEG>(c, src, node, p); break;
    case U_ABS: launch_unary<U_ABS>(c, src, node, p); break;
    case U_SQR: launch_unary<U_SQR>(c, src, node, p); break;
    case U_SQRT: launch_unary<U_SQRT>(c, src, node, p); break;
    case U_EXP: launch_unary<U_EXP>(c, src, node, p); break;
    case U_LOG: launch_unary<U_LOG>(c, src, node, p); break;
    case U_RELU: launch_unary<U_RELU>(c, src, node, p); break;
    case U_GELU: launch_unary<U_GELU>(c, src, node, p); break;
    case U_SILU: launch_unary<U_SILU>(c, src, node, p); break;
    case U_TANH: launch_unary<U_TANH>(c, src, node, p); break;
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not a unary op", bnb_op_name(node->op));
    }
    BNB_CUDA_CHECK_LAUNCH("unary op");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ binary */
/* b's shape descriptor as seen from the output: broadcast dims get stride 0. */
static bnb_cu_shape broadcast_shape(const bnb_tensor *a, const bnb_tensor *b) {
    bnb_cu_shape s;
    for (int i = 0; i < 4; i++) {
        s.ne[i] = (int32_t)a->ne[i];
        s.nb[i] = b->ne[i] == 1 ? 0 : (int64_t)b->nb[i];
    }
    return s;
}

/* a, dst contiguous; b rows contiguous along dim 0 (no broadcast there), all one type T, 16-byte aligned, ne0 a
 * multiple of the vector width. Vector j covers elements j*N .. j*N+N-1 of one row; b's row comes from bs. */
template <typename T, int OP, bool SAME_SHAPE>
__global__ void __launch_bounds__(BLOCK) binary_vec_kernel(const T *__restrict__ a, const char *__restrict__ b,
                                                           bnb_cu_shape bs, T *__restrict__ y, int64_t nvec) {
    constexpr int N = bnb_cu_vec<T>::N;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride * UNROLL) {
        bnb_cu_vec<T> va[UNROLL], vb[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int64_t j = i + u * stride;
            if (j < nvec) {
                va[u] = bnb_cu_load_vec(a + j * N);
                const T *pb = SAME_SHAPE ? (const T *)b + j * N : (const T *)(b + bnb_cu_offset(bs, (uint32_t)(j * N)));
                vb[u] = bnb_cu_load_vec(pb);
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int64_t j = i + u * stride;
            if (j < nvec) {
#pragma unroll
                for (int k = 0; k < N; k++)
                    va[u].v[k] = bnb_cu_from_f32<T>(binary_apply<OP>(bnb_cu_to_f32(va[u].v[k]), bnb_cu_to_f32(vb[u].v[k])));
                bnb_cu_store_vec(y + j * N, va[u]);
            }
        }
    }
}

template <int OP>
__global__ void __launch_bounds__(BLOCK) binary_generic_kernel(const char *__restrict__ a, bnb_cu_shape as, int ta,
                                                               const char *__restrict__ b, bnb_cu_shape bs, int tb,
                                                               char *__restrict__ y, int ty, int esy, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float va = bnb_cu_load(a + bnb_cu_offset(as, i), ta);
        float vb = bnb_cu_load(b + bnb_cu_offset(bs, i), tb);
        bnb_cu_store(y + (int64_t)i * esy, ty, binary_apply<OP>(va, vb));
    }
}

template <typename T, int OP>
static void launch_binary_vec(const bnb_cuda_ctx *c, const bnb_tensor *a, const bnb_tensor *b, bnb_tensor *y,
                              bool same_shape) {
    constexpr int N = bnb_cu_vec<T>::N;
    int64_t nvec = bnb_nelements(y) / N;
    unsigned grid = bnb_cu_grid(c, (nvec + UNROLL - 1) / UNROLL, BLOCK);
    bnb_cu_shape bs = broadcast_shape(a, b);
    if (same_shape)
        binary_vec_kernel<T, OP, true><<<grid, BLOCK, 0, c->stream>>>((const T *)a->data, (const char *)b->data, bs,
                                                                      (T *)y->data, nvec);
    else
        binary_vec_kernel<T, OP, false><<<grid, BLOCK, 0, c->stream>>>((const T *)a->data, (const char *)b->data, bs,
                                                                       (T *)y->data, nvec);
}

/* The vector path applies when a and dst are contiguous, all three share one type, b is contiguous along dim 0
 * without broadcast there, and every vector start in b is 16-byte aligned. */
static bool binary_vec_ok(const bnb_tensor *a, const bnb_tensor *b, const bnb_tensor *y) {
    size_t es = bnb_type_size(a->type);
    int64_t N = 16 / (int64_t)es;
    if (a->type != b->type || !bnb_is_contiguous(a) || a->ne[0] % N != 0) return false;
    if (!bnb_cu_aligned16(a->data) || !bnb_cu_aligned16(b->data) || !bnb_cu_aligned16(y->data)) return false;
    if (b->ne[0] != a->ne[0] || (b->nb[0] != es && a->ne[0] > 1)) return false;
    for (int i = 1; i < 4; i++)
        if (b->ne[i] != 1 && b->nb[i] % 16 != 0) return false;
    return true;
}

template <int OP> static void launch_binary(const bnb_cuda_ctx *c, const bnb_tensor *a, const bnb_tensor *b, bnb_tensor *y) {
    if (binary_vec_ok(a, b, y)) {
        bool same = bnb_same_shape(a, b) && bnb_is_contiguous(b);
        switch (a->type) {
        case BNB_TYPE_F32: launch_binary_vec<float, OP>(c, a, b, y, same); return;
        case BNB_TYPE_F16: launch_binary_vec<__half, OP>(c, a, b, y, same); return;
        case BNB_TYPE_BF16: launch_binary_vec<__nv_bfloat16, OP>(c, a, b, y, same); return;
        default: break;
        }
    }
    int64_t n = bnb_nelements(y);
    binary_generic_kernel<OP><<<bnb_cu_grid(c, n, BLOCK), BLOCK, 0, c->stream>>>(
        (const char *)a->data, bnb_cu_shape_of(a), (int)a->type, (const char *)b->data, broadcast_shape(a, b),
        (int)b->type, (char *)y->data, (int)y->type, (int)bnb_type_size(y->type), (uint32_t)n);
}

extern "C" bnb_status bnb_cuda_binary(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    if (bnb_nelements(b) == 0)
        return bnb_fail(BNB_ERR_SHAPE, "%s: b is empty but a is not", bnb_op_name(node->op));
    switch (node->op) {
    case BNB_OP_ADD: launch_binary<B_ADD>(c, a, b, node); break;
    case BNB_OP_SUB: launch_binary<B_SUB>(c, a, b, node); break;
    case BNB_OP_MUL: launch_binary<B_MUL>(c, a, b, node); break;
    case BNB_OP_DIV: launch_binary<B_DIV>(c, a, b, node); break;
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not a binary op", bnb_op_name(node->op));
    }
    BNB_CUDA_CHECK_LAUNCH("binary op");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ cont / cast */
/* 8 contiguous elements of T <-> 8 floats, as 16-byte accesses (two for f32). */
template <typename T> __device__ __forceinline__ void load8(const T *p, float *f) {
    constexpr int N = bnb_cu_vec<T>::N;
#pragma unroll
    for (int h = 0; h < 8 / N; h++) {
        bnb_cu_vec<T> v = bnb_cu_load_vec(p + h * N);
#pragma unroll
        for (int k = 0; k < N; k++) f[h * N + k] = bnb_cu_to_f32(v.v[k]);
    }
}

template <typename T> __device__ __forceinline__ void store8(T *p, const float *f) {
    constexpr int N = bnb_cu_vec<T>::N;
#pragma unroll
    for (int h = 0; h < 8 / N; h++) {
        bnb_cu_vec<T> v;
#pragma unroll
        for (int k = 0; k < N; k++) v.v[k] = bnb_cu_from_f32<T>(f[h * N + k]);
        bnb_cu_store_vec(p + h * N, v);
    }
}

template <typename Ti, typename To>
__global__ void __launch_bounds__(BLOCK) convert_vec_kernel(const Ti *__restrict__ x, To *__restrict__ y, int64_t n8,
                                                            int tail) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
        float f[8];
        load8(x + i * 8, f);
        store8(y + i * 8, f);
    }
    if (blockIdx.x == 0 && threadIdx.x < tail) {
        int64_t j = n8 * 8 + threadIdx.x;
        y[j] = bnb_cu_from_f32<To>(bnb_cu_to_f32(x[j]));
    }
}

/* Same type, any source strides: exact element copies (integers keep every bit). */
template <typename E>
__global__ void __launch_bounds__(BLOCK) copy_strided_kernel(const char *__restrict__ x, bnb_cu_shape xs,
                                                             E *__restrict__ y, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = *(const E *)(x + bnb_cu_offset(xs, i));
}

__global__ void __launch_bounds__(BLOCK) convert_generic_kernel(const char *__restrict__ x, bnb_cu_shape xs, int tx,
                                                                char *__restrict__ y, int ty, int esy, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        bnb_cu_store(y + (int64_t)i * esy, ty, bnb_cu_load(x + bnb_cu_offset(xs, i), tx));
}

template <typename Ti, typename To>
static void launch_convert_vec(const bnb_cuda_ctx *c, const void *x, void *y, int64_t n) {
    int64_t n8 = n / 8;
    convert_vec_kernel<Ti, To><<<bnb_cu_grid(c, n8, BLOCK), BLOCK, 0, c->stream>>>((const Ti *)x, (To *)y, n8, (int)(n % 8));
}

template <typename Ti> static bool launch_convert_from(const bnb_cuda_ctx *c, const void *x, void *y, bnb_type to, int64_t n) {
    switch (to) {
    case BNB_TYPE_F32: launch_convert_vec<Ti, float>(c, x, y, n); return true;
    case BNB_TYPE_F16: launch_convert_vec<Ti, __half>(c, x, y, n); return true;
    case BNB_TYPE_BF16: launch_convert_vec<Ti, __nv_bfloat16>(c, x, y, n); return true;
    default: return false;
    }
}

extern "C" bnb_status bnb_cuda_cont(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    int64_t n = bnb_nelements(node);
    size_t es = bnb_type_size(node->type);
    if (src->type == node->type && bnb_is_contiguous(src)) {
        BNB_CUDA_TRY(cudaMemcpyAsync(node->data, src->data, (size_t)n * es, cudaMemcpyDeviceToDevice, c->stream),
                     "bnb_cont: cudaMemcpyAsync device->device");
        return BNB_OK;
    }
    unsigned grid = bnb_cu_grid(c, n, BLOCK);
    if (src->type == node->type) {
        bnb_cu_shape xs = bnb_cu_shape_of(src);
        switch (es) {
        case 1: copy_strided_kernel<uint8_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (uint8_t *)node->data, (uint32_t)n); break;
        case 2: copy_strided_kernel<uint16_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (uint16_t *)node->data, (uint32_t)n); break;
        default: copy_strided_kernel<uint32_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (uint32_t *)node->data, (uint32_t)n); break;
        }
        BNB_CUDA_CHECK_LAUNCH("bnb_cont");
        return BNB_OK;
    }
    bool launched = false;
    if (bnb_is_contiguous(src) && bnb_cu_aligned16(src->data) && bnb_cu_aligned16(node->data)) {
        switch (src->type) {
        case BNB_TYPE_F32: launched = launch_convert_from<float>(c, src->data, node->data, node->type, n); break;
        case BNB_TYPE_F16: launched = launch_convert_from<__half>(c, src->data, node->data, node->type, n); break;
        case BNB_TYPE_BF16: launched = launch_convert_from<__nv_bfloat16>(c, src->data, node->data, node->type, n); break;
        default: break;
        }
    }
    if (!launched)
        convert_generic_kernel<<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, bnb_cu_shape_of(src),
                                                               (int)src->type, (char *)node->data, (int)node->type,
                                                               (int)es, (uint32_t)n);
    BNB_CUDA_CHECK_LAUNCH("bnb_cast");
    return BNB_OK;
}
