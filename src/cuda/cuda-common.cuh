/* Device-side helpers shared by the CUDA op families: element loads/stores by type, shape descriptors for strided
 * tensors, warp/block reductions, launch checking. Include from .cu files only. */
#ifndef BNB_CUDA_COMMON_CUH
#define BNB_CUDA_COMMON_CUH

#include "backend-cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* Check the last launch; on failure return a BNB_ERR_BACKEND naming the op. */
#define BNB_CUDA_CHECK_LAUNCH(opname)                                                                                 \
    do {                                                                                                              \
        cudaError_t e_ = cudaGetLastError();                                                                          \
        if (e_ != cudaSuccess) return bnb_cuda_status(e_, opname ": kernel launch");                                 \
    } while (0)

/* Check a runtime call made while enqueuing (cudaMemcpyAsync...). */
#define BNB_CUDA_TRY(call, what)                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) return bnb_cuda_status(e_, what);                                                     \
    } while (0)

/* Shape + byte strides of a tensor, passed by value to kernels. Element counts fit 32 bits (supports() checks). */
struct bnb_cu_shape {
    int32_t ne[4];
    int64_t nb[4];
};

static inline bnb_cu_shape bnb_cu_shape_of(const bnb_tensor *t) {
    bnb_cu_shape s;
    for (int i = 0; i < 4; i++) {
        s.ne[i] = (int32_t)t->ne[i];
        s.nb[i] = (int64_t)t->nb[i];
    }
    return s;
}

/* Byte offset of contiguous element index i (row-major over ne0 fastest) in a strided tensor. */
__device__ __forceinline__ int64_t bnb_cu_offset(const bnb_cu_shape &s, uint32_t i) {
    uint32_t i0 = i % (uint32_t)s.ne[0];
    i /= (uint32_t)s.ne[0];
    uint32_t i1 = i % (uint32_t)s.ne[1];
    i /= (uint32_t)s.ne[1];
    uint32_t i2 = i % (uint32_t)s.ne[2];
    uint32_t i3 = i / (uint32_t)s.ne[2];
    return (int64_t)i0 * s.nb[0] + (int64_t)i1 * s.nb[1] + (int64_t)i2 * s.nb[2] + (int64_t)i3 * s.nb[3];
}

/* Byte offset of the start of row r (rows = ne1*ne2*ne3). */
__device__ __forceinline__ int64_t bnb_cu_row_offset(const bnb_cu_shape &s, uint32_t r) {
    uint32_t i1 = r % (uint32_t)s.ne[1];
    r /= (uint32_t)s.ne[1];
    uint32_t i2 = r % (uint32_t)s.ne[2];
    uint32_t i3 = r / (uint32_t)s.ne[2];
    return (int64_t)i1 * s.nb[1] + (int64_t)i2 * s.nb[2] + (int64_t)i3 * s.nb[3];
}

/* ---- scalar conversions (round to nearest even, like the host conversions in types.c) */
template <typename T> struct bnb_cu_type;
template <> struct bnb_cu_type<float> {
    static __device__ __forceinline__ float to_f32(float v) { return v; }
    static __device__ __forceinline__ float from_f32(float v) { return v; }
};
template <> struct bnb_cu_type<__half> {
    static __device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half from_f32(float v) { return __float2half_rn(v); }
};
template <> struct bnb_cu_type<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
};

template <typename T> __device__ __forceinline__ float bnb_cu_to_f32(T v) { return bnb_cu_type<T>::to_f32(v); }
template <typename T> __device__ __forceinline__ T bnb_cu_from_f32(float v) { return bnb_cu_type<T>::from_f32(v); }

/* Runtime-typed element access for the generic (strided, mixed-type) paths. */
__device__ __forceinline__ float bnb_cu_load(const char *p, int type) {
    switch (type) {
    case BNB_TYPE_F32: return *(const float *)p;
    case BNB_TYPE_F16: return __half2float(*(const __half *)p);
    case BNB_TYPE_BF16: return __bfloat162float(*(const __nv_bfloat16 *)p);
    case BNB_TYPE_I8: return (float)*(const int8_t *)p;
    case BNB_TYPE_U8: return (float)*(const uint8_t *)p;
    case BNB_TYPE_I32: return (float)*(const int32_t *)p;
    default: return 0.f;
    }
}

/* Integer stores round half to even and saturate, NaN -> 0 (as types.c). */
__device__ __forceinline__ void bnb_cu_store(char *p, int type, float v) {
    switch (type) {
    case BNB_TYPE_F32: *(float *)p = v; break;
    case BNB_TYPE_F16: *(__half *)p = __float2half_rn(v); break;
    case BNB_TYPE_BF16: *(__nv_bfloat16 *)p = __float2bfloat16_rn(v); break;
    case BNB_TYPE_I8: {
        float r = isnan(v) ? 0.f : fminf(fmaxf(rintf(v), -128.f), 127.f);
        *(int8_t *)p = (int8_t)r;
        break;
    }
    case BNB_TYPE_U8: {
        float r = isnan(v) ? 0.f : fminf(fmaxf(rintf(v), 0.f), 255.f);
        *(uint8_t *)p = (uint8_t)r;
        break;
    }
    case BNB_TYPE_I32: {
        double r = isnan(v) ? 0.0 : fmin(fmax(rint((double)v), -2147483648.0), 2147483647.0);
        *(int32_t *)p = (int32_t)r;
        break;
    }
    default: break;
    }
}

/* ---- 16-byte vectors of T */
template <typename T> struct bnb_cu_vec {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

template <typename T> __device__ __forceinline__ bnb_cu_vec<T> bnb_cu_load_vec(const T *p) {
    uint4 raw = *reinterpret_cast<const uint4 *>(p);
    bnb_cu_vec<T> r;
    memcpy(&r, &raw, 16);
    return r;
}

template <typename T> __device__ __forceinline__ void bnb_cu_store_vec(T *p, const bnb_cu_vec<T> &v) {
    uint4 raw;
    memcpy(&raw, &v, 16);
    *reinterpret_cast<uint4 *>(p) = raw;
}

static inline bool bnb_cu_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Record bad input (first reporter wins): err = c->err_flag, code = c->node_index + 1. */
__device__ __forceinline__ void bnb_cu_report_bad(int *err, int code, int value, int position) {
    if (atomicCAS(err, 0, code) == 0) {
        err[1] = value;
        err[2] = position;
    }
}

/* ---- reductions */
__device__ __forceinline__ float bnb_cu_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float bnb_cu_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum/max; every thread gets the result. `shared` holds 32 floats; blockDim.x is a multiple of 32.
 * Safe to call repeatedly (barrier before reuse of the shared slots). */
__device__ __forceinline__ float bnb_cu_block_sum(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = bnb_cu_warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : 0.f;
    return bnb_cu_warp_sum(v);
}

__device__ __forceinline__ float bnb_cu_block_max(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = bnb_cu_warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : -INFINITY;
    return bnb_cu_warp_max(v);
}

/* Grid for a grid-stride loop over n work items with `block` threads: enough blocks to fill the GPU, no more. */
static inline unsigned bnb_cu_grid(const bnb_cuda_ctx *c, int64_t n, int block) {
    int64_t want = (n + block - 1) / block;
    int64_t cap = (int64_t)c->n_sm * (2048 / block);
    if (want > cap) want = cap;
    return (unsigned)(want > 0 ? want : 1);
}

#endif
