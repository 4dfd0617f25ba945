/* CUDA reductions: SUM (all elements), and over ne[0]: SUM_ROWS, MEAN, MAX_ROWS, ARGMAX (first maximum).
 * Row reductions use a warp per row for short rows and a block per row for long ones; sums accumulate in double.
 * SUM is two deterministic stages (block partials in scratch, then one block adds them in order). */
#include "cuda-common.cuh"

#include <float.h>

enum { R_SUM, R_MEAN, R_MAX, R_ARGMAX };

#define ROW_BLOCK 256
#define SUM_MAX_BLOCKS 1024

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* (value, index) pairs: larger value wins, ties go to the smaller index; NaN never wins. */
__device__ __forceinline__ void argmax_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

__device__ __forceinline__ void warp_argmax(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        argmax_merge(v, i, v2, i2);
    }
}

/* Per-thread partial over elements e = first, first+step, ... of one row; then combined across the warp (and the
 * block when !WARP_ROW). Lane/thread 0 writes the result. */
template <int KIND, bool WARP_ROW>
__global__ void __launch_bounds__(ROW_BLOCK) row_reduce_kernel(const char *__restrict__ x, bnb_cu_shape xs, int type,
                                                               char *__restrict__ y, uint32_t nrows) {
    __shared__ double sh_d[32];
    __shared__ float sh_f[32];
    __shared__ int sh_i[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint32_t row;
    int first, step;
    if (WARP_ROW) {
        row = blockIdx.x * (ROW_BLOCK / 32) + warp;
        first = lane;
        step = 32;
    } else {
        row = blockIdx.x;
        first = threadIdx.x;
        step = blockDim.x;
    }
    if (row >= nrows) return; /* whole warps (WARP_ROW) or whole blocks leave together */
    const char *xr = x + bnb_cu_row_offset(xs, row);
    const int ne0 = xs.ne[0];
    const int64_t nb0 = xs.nb[0];
    double s = 0.0;
    float m = -INFINITY;
    int mi = INT_MAX;
    for (int e = first; e < ne0; e += step) {
        float v = bnb_cu_load(xr + (int64_t)e * nb0, type);
        if (KIND == R_SUM || KIND == R_MEAN) s += (double)v;
        else if (KIND == R_MAX) m = fmaxf(m, v);
        else argmax_merge(m, mi, v, e);
    }
    if (KIND == R_SUM || KIND == R_MEAN) s = warp_sum_d(s);
    else if (KIND == R_MAX) m = bnb_cu_warp_max(m);
    else warp_argmax(m, mi);
    if (!WARP_ROW) {
        if (lane == 0) {
            sh_d[warp] = s;
            sh_f[warp] = m;
            sh_i[warp] = mi;
        }
        __syncthreads();
        if (warp != 0) return;
        int nw = blockDim.x >> 5;
        s = lane < nw ? sh_d[lane] : 0.0;
        m = lane < nw ? sh_f[lane] : -INFINITY;
        mi = lane < nw ? sh_i[lane] : INT_MAX;
        if (KIND == R_SUM || KIND == R_MEAN) s = warp_sum_d(s);
        else if (KIND == R_MAX) m = bnb_cu_warp_max(m);
        else warp_argmax(m, mi);
    }
    if (lane != 0) return;
    if (KIND == R_SUM) ((float *)y)[row] = (float)s;
    else if (KIND == R_MEAN) ((float *)y)[row] = (float)(s / (double)ne0);
    else if (KIND == R_MAX) ((float *)y)[row] = m;
    else ((int32_t *)y)[row] = mi == INT_MAX ? 0 : mi; /* all-NaN row: index 0 */
}

template <int KIND> static void launch_rows(const bnb_cuda_ctx *c, const bnb_tensor *src, bnb_tensor *dst) {
    uint32_t nrows = (uint32_t)bnb_nrows(src);
    bnb_cu_shape xs = bnb_cu_shape_of(src);
    if (src->ne[0] <= 1024) {
        unsigned grid = (nrows + ROW_BLOCK / 32 - 1) / (ROW_BLOCK / 32);
        row_reduce_kernel<KIND, true><<<grid, ROW_BLOCK, 0, c->stream>>>((const char *)src->data, xs, (int)src->type,
                                                                         (char *)dst->data, nrows);
    } else {
        row_reduce_kernel<KIND, false><<<nrows, ROW_BLOCK, 0, c->stream>>>((const char *)src->data, xs, (int)src->type,
                                                                           (char *)dst->data, nrows);
    }
}

/* SUM stage 1: each block adds a grid-stride share of all elements into partial[blockIdx.x]. */
__global__ void __launch_bounds__(ROW_BLOCK) sum_partial_kernel(const char *__restrict__ x, bnb_cu_shape xs, int type,
                                                                uint32_t n, double *__restrict__ partial) {
    __shared__ double sh[32];
    double s = 0.0;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        s += (double)bnb_cu_load(x + bnb_cu_offset(xs, i), type);
    s = warp_sum_d(s);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        s = warp_sum_d(s);
        if (lane == 0) partial[blockIdx.x] = s;
    }
}

/* SUM stage 2: one warp adds the partials in a fixed order. */
__global__ void sum_final_kernel(const double *__restrict__ partial, int n, float *__restrict__ y) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += 32) s += partial[i];
    s = warp_sum_d(s);
    if (threadIdx.x == 0) *y = (float)s;
}

extern "C" size_t bnb_cuda_reduce_scratch_size(const bnb_tensor *node) {
    return node->op == BNB_OP_SUM ? SUM_MAX_BLOCKS * sizeof(double) : 0;
}

extern "C" bnb_status bnb_cuda_reduce(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    switch (node->op) {
    case BNB_OP_SUM: {
        int64_t n = bnb_nelements(src);
        unsigned grid = bnb_cu_grid(c, n, ROW_BLOCK);
        if (grid > SUM_MAX_BLOCKS) grid = SUM_MAX_BLOCKS;
        double *partial = (double *)c->scratch;
        sum_partial_kernel<<<grid, ROW_BLOCK, 0, c->stream>>>((const char *)src->data, bnb_cu_shape_of(src),
                                                              (int)src->type, (uint32_t)n, partial);
        sum_final_kernel<<<1, 32, 0, c->stream>>>(partial, (int)grid, (float *)node->data);
        break;
    }
    case BNB_OP_SUM_ROWS: launch_rows<R_SUM>(c, src, node); break;
    case BNB_OP_MEAN: launch_rows<R_MEAN>(c, src, node); break;
    case BNB_OP_MAX_ROWS: launch_rows<R_MAX>(c, src, node); break;
    case BNB_OP_ARGMAX: launch_rows<R_ARGMAX>(c, src, node); break;
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not a reduction", bnb_op_name(node->op));
    }
    BNB_CUDA_CHECK_LAUNCH("reduction");
    return BNB_OK;
}
