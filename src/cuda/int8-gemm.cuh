/* LLM.int8 CUDA: what the int8 GEMM epilogue needs, shared by the cuBLASLt path (int8.cu: int32 C in memory, then
 * epilogue_kernel) and the fused sm_90a wgmma GEMM (int8-gemm-sm90a.cu: the same epilogue from the accumulator
 * registers). Both compute one output with epi_value and the outlier sums in the same order, so the two paths give
 * the same floats for the same int32 dot products. */
#ifndef BNB_CUDA_INT8_GEMM_CUH
#define BNB_CUDA_INT8_GEMM_CUH

#include "cuda-common.cuh"

#define OUTL_CAP 256 /* outlier columns staged for the epilogue */

struct epi_args {
    const int32_t *C; /* [t_end - t_begin x Op]: rows t_begin.. of this chunk (cuBLASLt path only) */
    int T, O, Op, K;
    int t_begin, t_end;
    const float *xmax, *wmax; /* [T], [O] */
    const float *bias;        /* [O] or NULL */
    const int *idx, *count;   /* outlier columns (count NULL: none) */
    const float *r_st;        /* [T x OUTL_CAP] staged residuals */
    const float *wo_st;       /* [OUTL_CAP x Op] staged outlier weights */
    /* sources for the columns past OUTL_CAP */
    const char *x; bnb_cu_shape xs; int xtype; /* float x (fused path) or NULL */
    const int8_t *q; int ldq;                  /* codes of x */
    const __half *xo;                          /* f16 outlier values of a pre-quantized x [count x T] or NULL */
    const int8_t *wq; int ldw;                 /* int8 weights */
    void *y;                                   /* [T x O] in ytype */
    int ytype;                                 /* BNB_TYPE_F32, F16 or BF16 */
};

/* y[i] in the output type YT: F32, or F16 / BF16 rounded to nearest even (the CPU's bnb_f32_to_f16 / _bf16). */
template <int YT> __device__ __forceinline__ void y_store_t(void *y, size_t i, float v) {
    if (YT == BNB_TYPE_F32) ((float *)y)[i] = v;
    else if (YT == BNB_TYPE_F16) ((__half *)y)[i] = __float2half_rn(v);
    else ((__nv_bfloat16 *)y)[i] = __float2bfloat16_rn(v);
}
/* y[i .. i + 3] in one store: i a multiple of 4 and y 16-byte aligned. */
template <int YT> __device__ __forceinline__ void y_store4_t(void *y, size_t i, float4 v) {
    if (YT == BNB_TYPE_F32) {
        *reinterpret_cast<float4 *>((float *)y + i) = v;
    } else if (YT == BNB_TYPE_F16) {
        const __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
        *reinterpret_cast<uint2 *>((__half *)y + i) =
            make_uint2(*reinterpret_cast<const uint32_t *>(&lo), *reinterpret_cast<const uint32_t *>(&hi));
    } else {
        const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        *reinterpret_cast<uint2 *>((__nv_bfloat16 *)y + i) =
            make_uint2(*reinterpret_cast<const uint32_t *>(&lo), *reinterpret_cast<const uint32_t *>(&hi));
    }
}
/* The same with the type known at run time only. */
__device__ __forceinline__ void y_store(void *y, int ytype, size_t i, float v) {
    if (ytype == BNB_TYPE_F32) y_store_t<BNB_TYPE_F32>(y, i, v);
    else if (ytype == BNB_TYPE_F16) y_store_t<BNB_TYPE_F16>(y, i, v);
    else y_store_t<BNB_TYPE_BF16>(y, i, v);
}
__device__ __forceinline__ void y_store4(void *y, int ytype, size_t i, float4 v) {
    if (ytype == BNB_TYPE_F32) y_store4_t<BNB_TYPE_F32>(y, i, v);
    else if (ytype == BNB_TYPE_F16) y_store4_t<BNB_TYPE_F16>(y, i, v);
    else y_store4_t<BNB_TYPE_BF16>(y, i, v);
}

/* r[t][j] of outlier column c = idx[j]: the float part of the column minus what the int8 part already counted. */
__device__ __forceinline__ float outl_residual(const epi_args &a, int t, int j, int c) {
    const float sx = a.xmax[t] / 127.f;
    if (a.xo) return __half2float(a.xo[(size_t)j * a.T + t]);
    const char *p = a.x + bnb_cu_row_offset(a.xs, (uint32_t)t) + (size_t)c * (a.xtype == BNB_TYPE_F32 ? 4 : 2);
    return bnb_cu_load(p, a.xtype) - (float)a.q[(size_t)t * a.ldq + c] * sx;
}

/* y = c * sx * sw + ex + b, rounded op by op (no contraction), identical in both epilogues. */
__device__ __forceinline__ float epi_value(int32_t c, float sx, float sw, float ex, float b) {
    return __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn((float)c, sx), sw), ex), b);
}

/* Fused sm_90a path (int8-gemm-sm90a.cu). bnb_int8_sm90a_ready: the device is compute capability 9.0 and the
 * sm_90a kernel is the one loaded (checked once per device by a probe launch, never during a capture), and the
 * T x O output has at least one tile per multiprocessor (BNB_INT8_GEMM=wgmma: any size; =lt: never).
 * bnb_int8_gemm_sm90a: y = epilogue(xq [T x kdim] · wq [O x kdim]ᵀ); xq / wq rows ldq / ldw bytes apart (multiples
 * of 16, 16-byte aligned bases), zero past K up to kdim. */
bool bnb_int8_sm90a_ready(bnb_cuda_ctx *c, int T, int O);
bnb_status bnb_int8_gemm_sm90a(bnb_cuda_ctx *c, const epi_args &a, int kdim);

#endif
