/* CUDA LLM.int8 (spec section 3): vector-wise quantization with outlier columns, dequantization, and the mixed-
 * decomposition matmul.
 *
 * matmul_int8, x float with more than 16 rows (or x already I8_ROW):
 *   1. quant_rows: one block per row, one pass over the data: row absmax over |x| < t, outlier columns flagged,
 *      q = round-half-even(x * 127 / rowmax) (0 where |x| >= t) into scratch with the row stride padded to 16.
 *      Other entries of an outlier column keep their codes; the epilogue subtracts them again (below), which saves
 *      a second pass that would zero whole columns. Then compact_flags lists the outlier columns (ascending).
 *   2. cuBLASLt int8 GEMM, int32 accumulation (CUBLAS_COMPUTE_32I, IMMA tensor cores), "TN" layout: C [T x Op] =
 *      q [T x Kp] · CB [Op x Kp]ᵀ. cuBLASLt needs m, k and the leading dims multiples of 4 (16 for the fast kernels):
 *      K is padded to Kp = pad16(K) and O to Op = pad4(O) in scratch copies when the weight is not already so.
 *   3. epilogue (one pass over C): y = C * rowmax/127 * SCB/127 + bias + sum_j r[t][j] * wo[j][o], over outlier
 *      columns c_j: wo = CB[o][c_j] * SCB[o] / 127 and r = x[t][c_j] - q[t][c_j] * rowmax/127 (the float part of
 *      the column minus what the int8 part already counted; for a pre-quantized x whose outlier columns are zero,
 *      r is the stored f16 value). r and wo are staged for up to OUTL_CAP columns (the count is only known on the
 *      device; columns beyond the cap are gathered directly: slow, still correct).
 * matmul_int8 with 1..16 rows of float x (decode): weight-only path. The int8 weights are read once with 16-byte
 *   loads, converted in registers, and multiplied with x in float; y = acc * SCB/127 + bias. x is not quantized,
 *   so outlier columns are exact here and the threshold has no effect (the error is below the int8 path's).
 * Float (16-bit master) weights are quantized row-wise into scratch first (training mode). */
#include "cuda-common.cuh"
#include "int8-gemm.cuh" /* epi_args, epi_value, the fused sm_90a GEMM */

#include <cublasLt.h>

#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_T 16       /* rows handled by the weight-only path */
#define QBLOCK 256       /* threads of quant_rows */
#define EPI_TOKENS 8     /* tokens per epilogue block */

static inline size_t pad_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* ------------------------------------------------------------------------------------------------ helpers */
template <typename T> __device__ __forceinline__ float ld_f(const T *p) { return bnb_cu_to_f32(*p); }

__device__ __forceinline__ int8_t quant_code(float v, float scale) {
    float r = rintf(v * scale); /* round half to even, as the CPU's nearbyintf */
    if (!(r == r)) return 0;
    return (int8_t)fminf(fmaxf(r, -127.f), 127.f);
}

/* ------------------------------------------------------------------------------------------------ 1. quant rows */
/* One block per row r of x (rows contiguous, row r at row_offset(r)). Writes q[r * ldq + k] for k < ldq (0 past K),
 * rowmax[r], and flags[k] = 1 for |x| >= thr (thr > 0). */
template <typename T>
__global__ void __launch_bounds__(QBLOCK) quant_rows_kernel(const char *x, bnb_cu_shape xs, int K, float thr,
                                                            int8_t *q, int ldq, float *rowmax, int *flags) {
    __shared__ float red[32];
    const int r = blockIdx.x;
    const T *xr = (const T *)(x + bnb_cu_row_offset(xs, (uint32_t)r));
    float mx = 0.f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        float a = fabsf(ld_f(xr + k));
        if (thr > 0.f && a >= thr)
            flags[k] = 1;
        else
            mx = fmaxf(mx, a);
    }
    mx = bnb_cu_block_max(mx, red);
    const float scale = mx > 0.f ? 127.f / mx : 0.f;
    int8_t *qr = q + (size_t)r * ldq;
    for (int k = threadIdx.x; k < ldq; k += blockDim.x) {
        int8_t c = 0;
        if (k < K) {
            float v = ld_f(xr + k);
            c = (thr > 0.f && fabsf(v) >= thr) ? (int8_t)0 : quant_code(v, scale);
        }
        qr[k] = c;
    }
    if (threadIdx.x == 0) rowmax[r] = mx;
}

/* The same with 16-byte loads (rows 16-byte aligned, K a multiple of E = 16 / sizeof(T)), for the many-token path
 * where the scalar kernel ran at ~1 TB/s: thread i holds vectors i, i + QBLOCK, ... of its row in registers (VPT of
 * them), so x is read from memory once; VPT 0: rows longer than 8 vectors per thread, read twice (the second time
 * mostly from L2). Same float ops per element as quant_rows_kernel, and max is order-free: bitwise the same codes. */
template <typename T> struct vec16 {
    static constexpr int E = 16 / (int)sizeof(T);
    __device__ static void to_f32(uint4 v, float (&f)[E]) {
        const T *h = reinterpret_cast<const T *>(&v);
#pragma unroll
        for (int e = 0; e < E; e++) f[e] = bnb_cu_to_f32(h[e]);
    }
};
template <typename T, int VPT>
__global__ void __launch_bounds__(QBLOCK) quant_rows_vec_kernel(const char *x, bnb_cu_shape xs, int K, float thr,
                                                                int8_t *q, int ldq, float *rowmax, int *flags) {
    constexpr int E = vec16<T>::E, R = VPT > 0 ? VPT : 1;
    __shared__ float red[32];
    const int r = blockIdx.x, nv = K / E;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + bnb_cu_row_offset(xs, (uint32_t)r));
    uint4 v[R];
    float mx = 0.f;
    auto scan = [&](uint4 w, int j) { /* row max of |x| below thr; flag the columns at or above it */
        float f[E];
        vec16<T>::to_f32(w, f);
#pragma unroll
        for (int e = 0; e < E; e++) {
            const float a = fabsf(f[e]);
            if (thr > 0.f && a >= thr)
                flags[j * E + e] = 1;
            else
                mx = fmaxf(mx, a);
        }
    };
    if (VPT > 0) {
#pragma unroll
        for (int i = 0; i < R; i++) {
            const int j = threadIdx.x + i * QBLOCK;
            if (j < nv) v[i] = __ldcs(xr + j);
        }
#pragma unroll
        for (int i = 0; i < R; i++)
            if (threadIdx.x + i * QBLOCK < nv) scan(v[i], threadIdx.x + i * QBLOCK);
    } else {
        for (int j = threadIdx.x; j < nv; j += QBLOCK) scan(xr[j], j);
    }
    mx = bnb_cu_block_max(mx, red);
    const float scale = mx > 0.f ? 127.f / mx : 0.f;
    int8_t *qr = q + (size_t)r * ldq;
    auto put = [&](uint4 w, int j) { /* E codes, one store */
        float f[E];
        vec16<T>::to_f32(w, f);
        uint32_t b[E / 4];
#pragma unroll
        for (int g = 0; g < E / 4; g++) {
            b[g] = 0;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float fv = f[4 * g + e];
                const int8_t c = (thr > 0.f && fabsf(fv) >= thr) ? (int8_t)0 : quant_code(fv, scale);
                b[g] |= (uint32_t)(uint8_t)c << (8 * e);
            }
        }
        if (E == 8) *reinterpret_cast<uint2 *>(qr + (size_t)j * E) = make_uint2(b[0], b[E / 4 - 1]);
        else *reinterpret_cast<uint32_t *>(qr + (size_t)j * E) = b[0];
    };
    if (VPT > 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
            if (threadIdx.x + i * QBLOCK < nv) put(v[i], threadIdx.x + i * QBLOCK);
    } else {
        for (int j = threadIdx.x; j < nv; j += QBLOCK) put(xr[j], j);
    }
    for (int k = K + threadIdx.x; k < ldq; k += QBLOCK) qr[k] = 0; /* padding */
    if (threadIdx.x == 0) rowmax[r] = mx;
}

/* One block of 1024 threads: idx = the k with flags[k] != 0, ascending; *count = how many. Each thread takes 32
 * consecutive flags per round (one round covers 32768 columns: all its loads in flight at once, then one block scan);
 * the former one-flag-per-thread loop waited for a memory round trip per 1024 columns (13 us at K 8192). */
__global__ void __launch_bounds__(1024) compact_flags_kernel(const int *flags, int K, int *idx, int *count) {
    __shared__ int warp_incl[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int base = 0;
    for (int r0 = 0; r0 < K; r0 += 32 * 1024) {
        const int k0 = r0 + threadIdx.x * 32;
        unsigned bits = 0;
#pragma unroll
        for (int j = 0; j < 32; j++)
            if (k0 + j < K && flags[k0 + j] != 0) bits |= 1u << j;
        const int n = __popc(bits);
        int incl = n; /* inclusive scan over the warp, then over the warps' totals */
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        if (lane == 31) warp_incl[warp] = incl;
        __syncthreads();
        if (warp == 0) {
            int t = warp_incl[lane];
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int v = __shfl_up_sync(0xffffffffu, t, o);
                if (lane >= o) t += v;
            }
            warp_incl[lane] = t;
        }
        __syncthreads();
        int at = base + (warp > 0 ? warp_incl[warp - 1] : 0) + incl - n;
        while (bits) {
            idx[at++] = k0 + __ffs(bits) - 1;
            bits &= bits - 1;
        }
        base += warp_incl[31];
        __syncthreads(); /* warp_incl is rewritten by the next round */
    }
    if (threadIdx.x == 0) *count = base;
}

/* Standalone quantization: zero whole outlier columns and store their f16 values (column-major [count x rows]). */
template <typename T>
__global__ void outlier_columns_kernel(const char *x, bnb_cu_shape xs, int rows, const int *idx, const int *count,
                                       int8_t *q, int ldq, __half *vals) {
    const int n = *count;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)n * rows;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(i / rows), r = (int)(i % rows);
        const T *xr = (const T *)(x + bnb_cu_row_offset(xs, (uint32_t)r));
        const int c = idx[j];
        q[(size_t)r * ldq + c] = 0;
        vals[(size_t)j * rows + r] = __float2half_rn(ld_f(xr + c));
    }
}

/* ------------------------------------------------------------------------------------------------ dequantize */
__global__ void dequant_kernel(const int8_t *q, const float *rowmax, int K, int64_t n, float *y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = (float)q[i] * (rowmax[i / K] / 127.f);
}

__global__ void dequant_outliers_kernel(const int *idx, const int *count, const __half *vals, int rows, int K,
                                        float *y) {
    const int n = *count;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)n * rows;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(i / rows), r = (int)(i % rows);
        y[(size_t)r * K + idx[j]] = __half2float(vals[(size_t)j * rows + r]);
    }
}

/* ------------------------------------------------------------------------------------------------ weights */
/* Copy an int8 matrix [O rows x K] into [Op x Kp] with zero padding (weights, or the codes of a pre-quantized x). */
__global__ void pad_int8_kernel(const int8_t *w, int O, int K, int8_t *wp, int Op, int Kp) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)Op * Kp;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int o = (int)(i / Kp), k = (int)(i % Kp);
        wp[i] = (o < O && k < K) ? w[(size_t)o * K + k] : (int8_t)0;
    }
}

/* ------------------------------------------------------------------------------------------------ 3. epilogue */
/* Stage r[t][j] (j < min(count, OUTL_CAP)) and wo[j][o]. */
__global__ void outlier_stage_kernel(epi_args a, float *r_st, float *wo_st) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* a GEMM launched as a programmatic dependent (sm_90a kernel, variant bit 5) may start its prologue now; it waits
     * for this grid's completion (griddepcontrol.wait) before reading anything written here */
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
    const int n = min(*a.count, OUTL_CAP);
    const int64_t nr = (int64_t)a.T * n, nw = (int64_t)n * a.O;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nr + nw; i += (int64_t)gridDim.x * blockDim.x) {
        if (i < nr) {
            const int t = (int)(i / n), j = (int)(i % n);
            r_st[(size_t)t * OUTL_CAP + j] = outl_residual(a, t, j, a.idx[j]);
        } else {
            const int64_t i2 = i - nr;
            const int j = (int)(i2 / a.O), o = (int)(i2 % a.O);
            wo_st[(size_t)j * a.Op + o] = (float)a.wq[(size_t)o * a.ldw + a.idx[j]] * (a.wmax[o] / 127.f);
        }
    }
}

/* Block: 256 threads x 4 outputs = 1024 outputs of EPI_TOKENS tokens. */
__global__ void __launch_bounds__(256) epilogue_kernel(epi_args a) {
    const int o0 = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    const int t0 = a.t_begin + blockIdx.y * EPI_TOKENS;
    if (o0 >= a.O) return;
    float sw[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int o = min(o0 + i, a.O - 1);
        sw[i] = a.wmax[o] / 127.f;
        b[i] = a.bias ? a.bias[o] : 0.f;
    }
    int32_t acc[EPI_TOKENS][4]; /* C */
    const int tn = min(EPI_TOKENS, a.t_end - t0);
#pragma unroll
    for (int tt = 0; tt < EPI_TOKENS; tt++) {
        if (tt < tn) {
            const int t = t0 + tt;
            const int4 c = *reinterpret_cast<const int4 *>(a.C + (size_t)(t - a.t_begin) * a.Op + o0); /* Op % 4 == 0 */
            acc[tt][0] = c.x;
            acc[tt][1] = c.y;
            acc[tt][2] = c.z;
            acc[tt][3] = c.w;
        }
    }
    const int n = a.count ? *a.count : 0;
    float ex[EPI_TOKENS][4];
#pragma unroll
    for (int tt = 0; tt < EPI_TOKENS; tt++)
#pragma unroll
        for (int i = 0; i < 4; i++) ex[tt][i] = 0.f;
    const int ns = min(n, OUTL_CAP);
    for (int j = 0; j < ns; j++) {
        const float4 w = *reinterpret_cast<const float4 *>(a.wo_st + (size_t)j * a.Op + o0);
#pragma unroll
        for (int tt = 0; tt < EPI_TOKENS; tt++) {
            if (tt < tn) {
                const float r = a.r_st[(size_t)(t0 + tt) * OUTL_CAP + j];
                ex[tt][0] = __fmaf_rn(r, w.x, ex[tt][0]);
                ex[tt][1] = __fmaf_rn(r, w.y, ex[tt][1]);
                ex[tt][2] = __fmaf_rn(r, w.z, ex[tt][2]);
                ex[tt][3] = __fmaf_rn(r, w.w, ex[tt][3]);
            }
        }
    }
    for (int j = OUTL_CAP; j < n; j++) { /* beyond the staged columns: gather directly */
        const int c = a.idx[j];
        for (int tt = 0; tt < tn; tt++) {
            const float r = outl_residual(a, t0 + tt, j, c);
            for (int i = 0; i < 4; i++) {
                const int o = min(o0 + i, a.O - 1);
                ex[tt][i] = __fmaf_rn(r, __fmul_rn((float)a.wq[(size_t)o * a.ldw + c], sw[i]), ex[tt][i]);
            }
        }
    }
    const bool vec = (a.O & 3) == 0 && o0 + 4 <= a.O;
#pragma unroll
    for (int tt = 0; tt < EPI_TOKENS; tt++) {
        if (tt < tn) {
            const size_t yi = (size_t)(t0 + tt) * a.O + o0;
            const float sx = a.xmax[t0 + tt] / 127.f;
            float v[4];
#pragma unroll
            for (int i = 0; i < 4; i++) v[i] = epi_value(acc[tt][i], sx, sw[i], ex[tt][i], b[i]);
            if (vec) {
                y_store4(a.y, a.ytype, yi, make_float4(v[0], v[1], v[2], v[3]));
            } else {
                for (int i = 0; i < 4 && o0 + i < a.O; i++) y_store(a.y, a.ytype, yi + i, v[i]);
            }
        }
    }
}

#include "int8-weight-only.cuh" /* weight-only GEMV / MMA kernels for 1-16 tokens */


__global__ void bias_f32_kernel(const char *b, int type, size_t stride, int n, float *out) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = bnb_cu_load(b + (size_t)i * stride, type);
}

/* ================================================================================================ host side */
/* The whole plan of one node: which path, where each scratch part lies. Shared by scratch_size and compute. */
typedef struct {
    bool small;     /* weight-only path */
    bool x_float, w_float;
    bool x_pad;     /* pre-quantized x copied with padded rows */
    bool w_pad;     /* int8 weights copied to [Op x Kp] */
    bool outliers;  /* outlier columns possible */
    int64_t T, K, O, Kp, Op;
    size_t flags, idx, count, xq, xmax, wq, wmax, bias, C, r_st, wo_st, total;
} mm_plan;

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static mm_plan plan_of(const bnb_tensor *node) {
    const bnb_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
    mm_plan p;
    memset(&p, 0, sizeof p);
    p.x_float = x->type != BNB_TYPE_I8_ROW;
    p.w_float = w->type != BNB_TYPE_I8_ROW;
    p.T = bnb_nrows(x);
    p.K = x->ne[0];
    p.O = w->ne[1];
    p.Kp = (int64_t)pad_up((size_t)p.K, 16);
    p.Op = (int64_t)pad_up((size_t)p.O, 4);
    p.small = p.x_float && p.T <= SMALL_T;
    const float thr = p.x_float ? bnb_get_op_f32(node, 0) : x->quant.threshold;
    p.outliers = !p.small && thr > 0;
    /* pointers are not known when sizing scratch (before allocation): plan for the padded copies whenever the
     * shape alone cannot rule them out; compute decides with the real pointers and uses at most this much. */
    p.x_pad = !p.x_float && p.K % 16 != 0;
    p.w_pad = !p.small && !p.w_float && (p.K % 16 != 0 || p.O % 4 != 0 || !w->data || !aligned16(w->data));
    size_t off = 0;
#define TAKE(field, bytes)                                                                                            \
    do {                                                                                                              \
        p.field = off;                                                                                                \
        off += pad_up((size_t)(bytes), 256);                                                                          \
    } while (0)
    if (!p.small) {
        if (p.x_float) {
            TAKE(flags, p.K * 4);
            TAKE(idx, p.K * 4);
            TAKE(count, 4);
            TAKE(xmax, p.T * 4);
        }
        if (p.x_float || p.x_pad || !x->data || !aligned16(x->data)) TAKE(xq, p.T * p.Kp);
        TAKE(C, p.T * p.Op * 4);
        if (p.outliers) {
            TAKE(r_st, p.T * OUTL_CAP * 4);
            TAKE(wo_st, (int64_t)OUTL_CAP * p.Op * 4);
        }
    }
    if (p.w_float || p.w_pad || (!p.small && (!w->data || !aligned16(w->data)))) TAKE(wq, p.Op * p.Kp);
    if (p.w_float) TAKE(wmax, p.O * 4);
    if (b) TAKE(bias, p.O * 4);
#undef TAKE
    p.total = off;
    return p;
}

extern "C" size_t bnb_cuda_int8_scratch_size(const bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_MATMUL_INT8: return plan_of(node).total;
    case BNB_OP_INT8_VECTORWISE_QUANT: return pad_up((size_t)node->src[0]->ne[0] * 4, 256);
    default: return 0;
    }
}

extern "C" bool bnb_cuda_int8_supports(const bnb_tensor *node) {
    for (int s = 0; s < 3; s++) {
        const bnb_tensor *t = node->src[s];
        if (t && t->type != BNB_TYPE_I8_ROW && !bnb_type_is_float(t->type)) return false;
    }
    return true;
}

/* Byte strides of the rows of x are multiples of 16 (dims with more than one row). */
static bool rows_aligned16(const bnb_tensor *x) {
    for (int d = 1; d < 4; d++)
        if (x->ne[d] > 1 && x->nb[d] % 16 != 0) return false;
    return aligned16(x->data);
}

template <typename T>
static void launch_quant_rows_vec(bnb_cuda_ctx *c, int vpt, int rows, const char *d, bnb_cu_shape s, int K, float thr,
                                  int8_t *q, int ldq, float *rowmax, int *flags) {
#define QRV(V) quant_rows_vec_kernel<T, V><<<rows, QBLOCK, 0, c->stream>>>(d, s, K, thr, q, ldq, rowmax, flags)
    if (vpt <= 1) QRV(1);
    else if (vpt <= 2) QRV(2);
    else if (vpt <= 4) QRV(4);
    else if (vpt <= 8) QRV(8);
    else QRV(0);
#undef QRV
}

/* quant_rows launch for a float tensor t ([K, rows...], rows contiguous) */
static bnb_status launch_quant_rows(bnb_cuda_ctx *c, const bnb_tensor *t, float thr, int8_t *q, int ldq,
                                    float *rowmax, int *flags) {
    const int rows = (int)bnb_nrows(t), K = (int)t->ne[0];
    if (rows == 0) return BNB_OK;
    const bnb_cu_shape s = bnb_cu_shape_of(t);
    const char *d = (const char *)t->data;
    const int esz = (int)bnb_type_size(t->type), E = 16 / esz;
    /* 16-byte loads: aligned rows, K a multiple of the vector, code stores aligned (ldq and q multiples of E) */
    const char *qe = getenv("BNB_INT8_QUANT"); /* =scalar: the one-element kernel (A/B measurements) */
    if (K % E == 0 && ldq % E == 0 && ((uintptr_t)q % 16) == 0 && rows_aligned16(t) && !(qe && !strcmp(qe, "scalar"))) {
        const int vpt = (K / E + QBLOCK - 1) / QBLOCK; /* vectors per thread */
        switch (t->type) {
        case BNB_TYPE_F32: launch_quant_rows_vec<float>(c, vpt, rows, d, s, K, thr, q, ldq, rowmax, flags); break;
        case BNB_TYPE_F16: launch_quant_rows_vec<__half>(c, vpt, rows, d, s, K, thr, q, ldq, rowmax, flags); break;
        default: launch_quant_rows_vec<__nv_bfloat16>(c, vpt, rows, d, s, K, thr, q, ldq, rowmax, flags);
        }
        BNB_CUDA_CHECK_LAUNCH("bnb_int8 quant_rows");
        return BNB_OK;
    }
    switch (t->type) {
    case BNB_TYPE_F32: quant_rows_kernel<float><<<rows, QBLOCK, 0, c->stream>>>(d, s, K, thr, q, ldq, rowmax, flags); break;
    case BNB_TYPE_F16: quant_rows_kernel<__half><<<rows, QBLOCK, 0, c->stream>>>(d, s, K, thr, q, ldq, rowmax, flags); break;
    default: quant_rows_kernel<__nv_bfloat16><<<rows, QBLOCK, 0, c->stream>>>(d, s, K, thr, q, ldq, rowmax, flags);
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_int8 quant_rows");
    return BNB_OK;
}

#define LT_TRY(call, what)                                                                                            \
    do {                                                                                                              \
        cublasStatus_t s_ = (call);                                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            st = bnb_fail(BNB_ERR_BACKEND, "bnb_matmul_int8: %s failed (m %d n %d k %d): %s", what, m, n, k,          \
                          cublasLtGetStatusString(s_));                                                               \
            goto done;                                                                                                \
        }                                                                                                             \
    } while (0)

/* cuBLASLt algorithm per GEMM shape: the fastest of the heuristic's first ALGO_CANDIDATES, timed once on the first
 * uncaptured call (the heuristic's first pick was seen 1.2-2x off the best int8 kernel on H100). */
#define ALGO_CANDIDATES 8
#define ALGO_CACHE 64
typedef struct {
    const void *lt;
    int m, n, k, lda, ldb;
    cublasLtMatmulAlgo_t algo;
} algo_entry;
static algo_entry g_algos[ALGO_CACHE];
static int g_algo_count;
static std::mutex g_algo_mutex;

static bool algo_cache_get(const bnb_cuda_ctx *c, int m, int n, int k, int lda, int ldb, cublasLtMatmulAlgo_t *out) {
    std::lock_guard<std::mutex> lock(g_algo_mutex);
    for (int i = 0; i < g_algo_count; i++) {
        const algo_entry &e = g_algos[i];
        if (e.lt == c->lt && e.m == m && e.n == n && e.k == k && e.lda == lda && e.ldb == ldb) {
            *out = e.algo;
            return true;
        }
    }
    return false;
}

static void algo_cache_put(const bnb_cuda_ctx *c, int m, int n, int k, int lda, int ldb,
                           const cublasLtMatmulAlgo_t *algo) {
    std::lock_guard<std::mutex> lock(g_algo_mutex);
    algo_entry &e = g_algos[g_algo_count < ALGO_CACHE ? g_algo_count++ : (m + n + k) % ALGO_CACHE];
    e.lt = c->lt, e.m = m, e.n = n, e.k = k, e.lda = lda, e.ldb = ldb, e.algo = *algo;
}

/* Median-free quick timing: one warm-up and 3 timed runs per candidate; -1 if timing itself failed. */
static int pick_fastest(bnb_cuda_ctx *c, cublasLtMatmulDesc_t op, const int8_t *A, cublasLtMatrixLayout_t la,
                        const int8_t *B, cublasLtMatrixLayout_t lb, int32_t *C, cublasLtMatrixLayout_t lc,
                        const cublasLtMatmulHeuristicResult_t *cand, int n) {
    cudaEvent_t e0 = NULL, e1 = NULL;
    const int32_t alpha = 1, beta = 0;
    int best = -1;
    float best_ms = 0.f;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto out;
    for (int i = 0; i < n; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || cand[i].workspaceSize > c->workspace_size) continue;
        bool ok = true;
        for (int r = 0; r < 4 && ok; r++) {
            if (r == 1) ok = cudaEventRecord(e0, c->stream) == cudaSuccess;
            ok = ok && cublasLtMatmul((cublasLtHandle_t)c->lt, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc,
                                      &cand[i].algo, c->workspace, c->workspace_size,
                                      c->stream) == CUBLAS_STATUS_SUCCESS;
        }
        float ms = 0.f;
        ok = ok && cudaEventRecord(e1, c->stream) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess &&
             cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
        if (!ok) {
            cudaGetLastError();
            continue;
        }
        if (best < 0 || ms < best_ms) best = i, best_ms = ms;
    }
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return best;
}

/* C [n x m] (column-major m x n, ld m) = Aᵀ B: A int8 k x m (ld lda), B int8 k x n (ld ldb); int32 accumulation. */
static bnb_status int8_gemm(bnb_cuda_ctx *c, const int8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int m,
                            int n, int k) {
    bnb_status st = BNB_OK;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const int32_t alpha = 1, beta = 0;
    uint64_t ws = c->workspace_size;
    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I), "cublasLtMatmulDescCreate");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set transb");
    LT_TRY(cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, (uint64_t)k, (uint64_t)m, lda), "layout A");
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, (uint64_t)k, (uint64_t)n, ldb), "layout B");
    LT_TRY(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, (uint64_t)m, (uint64_t)n, m), "layout C");
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
           "set workspace size");
    if (!algo_cache_get(c, m, n, k, lda, ldb, &res.algo)) {
        cublasLtMatmulHeuristicResult_t cand[ALGO_CANDIDATES];
        LT_TRY(cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)c->lt, op, la, lb, lc, lc, pref, ALGO_CANDIDATES,
                                              cand, &nres),
               "cublasLtMatmulAlgoGetHeuristic");
        if (nres < 1) {
            st = bnb_fail(BNB_ERR_BACKEND, "bnb_matmul_int8: cuBLASLt has no int8 algorithm for m %d n %d k %d", m,
                          n, k);
            goto done;
        }
        res = cand[0];
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (nres > 1 && cudaStreamIsCapturing(c->stream, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusNone) {
            /* time each candidate once per shape (first plain run; captures reuse the choice) */
            const int best = pick_fastest(c, op, A, la, B, lb, C, lc, cand, nres);
            if (best >= 0) {
                res = cand[best];
                algo_cache_put(c, m, n, k, lda, ldb, &res.algo);
            }
        }
    }
    LT_TRY(cublasLtMatmul((cublasLtHandle_t)c->lt, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc, &res.algo,
                          c->workspace, c->workspace_size, c->stream),
           "cublasLtMatmul");
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}
#undef LT_TRY

static unsigned grid_for(const bnb_cuda_ctx *c, int64_t n) { return bnb_cu_grid(c, n, 256); }

template <typename T, int NT>
static void launch_weight_only_t(bnb_cuda_ctx *c, bool vec, const char *x, bnb_cu_shape xs, int Tn,
                                 const int8_t *w, int ldw, const float *wmax, const float *bias, int K, int O, void *y,
                                 int yt) {
    const int per_block = wo_rows(NT) * WO_WARPS;
    const dim3 grid((unsigned)((O + per_block - 1) / per_block));
    (void)vec; /* aligned shapes take weight_only_mma_kernel */
    weight_only_kernel<T, NT, false><<<grid, 32 * WO_WARPS, 0, c->stream>>>(x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
}

template <typename T>
static void launch_weight_only(bnb_cuda_ctx *c, bool vec, const char *x, bnb_cu_shape xs, int Tn,
                               const int8_t *w, int ldw, const float *wmax, const float *bias, int K, int O, void *y,
                               int yt) {
    if (Tn <= 1) launch_weight_only_t<T, 1>(c, vec, x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
    else if (Tn <= 2) launch_weight_only_t<T, 2>(c, vec, x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
    else if (Tn <= 4) launch_weight_only_t<T, 4>(c, vec, x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
    else if (Tn <= 8) launch_weight_only_t<T, 8>(c, vec, x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
    else launch_weight_only_t<T, 16>(c, vec, x, xs, Tn, w, ldw, wmax, bias, K, O, y, yt);
}

/* BNB_INT8_STAGES=1: per-stage times of the many-token path with CUDA events, printed to stderr on each computed
 * call that is not being captured (measurement aid; off by default, costs one getenv per call). */
#define STAGE_MAX 8
typedef struct {
    bool on;
    int n;
    cudaEvent_t ev[STAGE_MAX + 1];
    const char *name[STAGE_MAX];
} stage_timer;

static void stage_begin(stage_timer *tm, bnb_cuda_ctx *c) {
    tm->on = false, tm->n = 0;
    const char *e = getenv("BNB_INT8_STAGES");
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (!e || !*e || *e == '0' || cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess ||
        cs != cudaStreamCaptureStatusNone)
        return;
    for (int i = 0; i <= STAGE_MAX; i++) tm->ev[i] = NULL;
    if (cudaEventCreate(&tm->ev[0]) != cudaSuccess || cudaEventRecord(tm->ev[0], c->stream) != cudaSuccess) return;
    tm->on = true;
}

static void stage_mark(stage_timer *tm, bnb_cuda_ctx *c, const char *name) {
    if (!tm->on || tm->n >= STAGE_MAX) return;
    cudaEvent_t *e = &tm->ev[tm->n + 1];
    if (cudaEventCreate(e) != cudaSuccess || cudaEventRecord(*e, c->stream) != cudaSuccess) return;
    tm->name[tm->n++] = name;
}

static void stage_report(stage_timer *tm, bnb_cuda_ctx *c, int T, int K, int O) {
    if (!tm->on) return;
    if (tm->n > 0 && cudaEventSynchronize(tm->ev[tm->n]) == cudaSuccess) {
        fprintf(stderr, "int8 stages %dx%dx%d (ms):", T, K, O);
        for (int i = 0; i < tm->n; i++) {
            float ms = 0.f;
            cudaEventElapsedTime(&ms, tm->ev[i], tm->ev[i + 1]);
            fprintf(stderr, " %s %.4f%s", tm->name[i], ms, i + 1 < tm->n ? " |" : "\n");
        }
    }
    for (int i = 0; i <= tm->n; i++) cudaEventDestroy(tm->ev[i]);
    tm->on = false;
}

extern "C" bnb_status bnb_cuda_matmul_int8(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
    const mm_plan p = plan_of(node);
    if (p.total > c->scratch_size)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_matmul_int8 (cuda): scratch of %zu bytes missing", p.total);
    char *sc = (char *)c->scratch;
    const int T = (int)p.T, K = (int)p.K, O = (int)p.O, Kp = (int)p.Kp, Op = (int)p.Op;
    bnb_status st;
    /* bias as f32 */
    const float *bias = NULL;
    if (b) {
        float *bf = (float *)(sc + p.bias);
        bias_f32_kernel<<<grid_for(c, O), 256, 0, c->stream>>>((const char *)b->data, (int)b->type, b->nb[0], O, bf);
        BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 bias");
        bias = bf;
    }
    /* weights: int8 codes wq (row stride ldw) and row absmax wmax */
    const int8_t *wq;
    const float *wmax;
    int ldw;
    if (p.w_float) {
        int8_t *wqs = (int8_t *)(sc + p.wq);
        float *wm = (float *)(sc + p.wmax);
        if (Op > O) BNB_CUDA_TRY(cudaMemsetAsync(wqs + (size_t)O * Kp, 0, (size_t)(Op - O) * Kp, c->stream), "memset");
        if ((st = launch_quant_rows(c, w, 0.f, wqs, Kp, wm, NULL)) != BNB_OK) return st;
        wq = wqs, wmax = wm, ldw = Kp;
    } else {
        const bnb_int8_layout lw = bnb_int8_layout_of(w);
        wmax = (const float *)((const char *)w->data + lw.rowmax_offs);
        const bool direct = p.small || (K % 16 == 0 && O % 4 == 0 && aligned16(w->data));
        if (direct) {
            wq = (const int8_t *)w->data, ldw = K;
        } else {
            int8_t *wqs = (int8_t *)(sc + p.wq);
            pad_int8_kernel<<<grid_for(c, (int64_t)Op * Kp), 256, 0, c->stream>>>((const int8_t *)w->data, O, K, wqs,
                                                                                  Op, Kp);
            BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 pad weights");
            wq = wqs, ldw = Kp;
        }
    }
    void *y = node->data;
    const int yt = (int)node->type;
    if (p.small) { /* weight-only path */
        const bool vec = K % 16 == 0 && ldw % 16 == 0 && aligned16(wq) && rows_aligned16(x);
        const bnb_cu_shape xs = bnb_cu_shape_of(x);
        const char *xd = (const char *)x->data;
        if (vec) {
            /* m-tiles of 16 rows per block: WM_MT_DEFAULT; BNB_INT8_WM_ROWS=16|32 forces 1|2 (A/B measurements) */
            const char *rows_env = getenv("BNB_INT8_WM_ROWS");
            const int mt = rows_env ? (atoi(rows_env) == 32 ? 2 : 1) : WM_MT_DEFAULT;
            const dim3 grid((unsigned)((O + 16 * mt - 1) / (16 * mt)));
#define WM_LAUNCH_M(X, NT, MT)                                                                                        \
    weight_only_mma_kernel<X, NT, MT><<<grid, 32 * WM_WARPS, 0, c->stream>>>(xd, xs, T, wq, ldw, wmax, bias, K, O, y, yt)
#define WM_LAUNCH(X, NT)                                                                                              \
    do {                                                                                                              \
        if (mt == 1) WM_LAUNCH_M(X, NT, 1);                                                                           \
        else WM_LAUNCH_M(X, NT, 2);                                                                                   \
    } while (0)
            if (x->type == BNB_TYPE_F32) { if (T <= 8) WM_LAUNCH(float, 1); else WM_LAUNCH(float, 2); }
            else if (x->type == BNB_TYPE_F16) { if (T <= 8) WM_LAUNCH(__half, 1); else WM_LAUNCH(__half, 2); }
            else { if (T <= 8) WM_LAUNCH(__nv_bfloat16, 1); else WM_LAUNCH(__nv_bfloat16, 2); }
#undef WM_LAUNCH
#undef WM_LAUNCH_M
            BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 weight-only (mma)");
            return BNB_OK;
        }
        if (x->type == BNB_TYPE_F32) launch_weight_only<float>(c, vec, xd, xs, T, wq, ldw, wmax, bias, K, O, y, yt);
        else if (x->type == BNB_TYPE_F16) launch_weight_only<__half>(c, vec, xd, xs, T, wq, ldw, wmax, bias, K, O, y, yt);
        else launch_weight_only<__nv_bfloat16>(c, vec, xd, xs, T, wq, ldw, wmax, bias, K, O, y, yt);
        BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 weight-only");
        return BNB_OK;
    }
    /* activations: codes xq (row stride ldq), row absmax, outlier columns */
    stage_timer tm;
    stage_begin(&tm, c);
    epi_args a;
    memset(&a, 0, sizeof a);
    const int8_t *xq;
    int ldq;
    if (p.x_float) {
        const float thr = bnb_get_op_f32(node, 0);
        int8_t *xqs = (int8_t *)(sc + p.xq);
        float *xm = (float *)(sc + p.xmax);
        int *flags = (int *)(sc + p.flags);
        if (thr > 0) BNB_CUDA_TRY(cudaMemsetAsync(flags, 0, (size_t)K * 4, c->stream), "memset outlier flags");
        if ((st = launch_quant_rows(c, x, thr, xqs, Kp, xm, thr > 0 ? flags : NULL)) != BNB_OK) return st;
        stage_mark(&tm, c, "quant");
        if (thr > 0) {
            compact_flags_kernel<<<1, 1024, 0, c->stream>>>(flags, K, (int *)(sc + p.idx), (int *)(sc + p.count));
            BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 outlier columns");
            a.idx = (const int *)(sc + p.idx);
            a.count = (const int *)(sc + p.count);
        }
        xq = xqs, ldq = Kp;
        a.xmax = xm;
        a.x = (const char *)x->data;
        a.xs = bnb_cu_shape_of(x);
        a.xtype = (int)x->type;
    } else {
        const bnb_int8_layout lx = bnb_int8_layout_of(x);
        const char *base = (const char *)x->data;
        a.xmax = (const float *)(base + lx.rowmax_offs);
        if (lx.has_outliers) {
            a.idx = (const int *)(base + lx.outl_idx_offs);
            a.count = (const int *)(base + lx.outl_count_offs);
            a.xo = (const __half *)(base + lx.outl_val_offs);
        }
        if (K % 16 == 0 && aligned16(base)) {
            xq = (const int8_t *)base, ldq = K;
        } else {
            int8_t *xqs = (int8_t *)(sc + p.xq);
            pad_int8_kernel<<<grid_for(c, (int64_t)T * Kp), 256, 0, c->stream>>>((const int8_t *)base, T, K, xqs, T,
                                                                                 Kp);
            BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 pad x");
            xq = xqs, ldq = Kp;
        }
    }
    int32_t *C = (int32_t *)(sc + p.C);
    a.C = C;
    a.T = T, a.O = O, a.Op = Op, a.K = K;
    a.wmax = wmax;
    a.bias = bias;
    a.q = xq, a.ldq = ldq;
    a.wq = wq, a.ldw = ldw;
    a.y = y;
    a.ytype = yt;
    if (p.outliers && a.count) {
        a.r_st = (const float *)(sc + p.r_st);
        a.wo_st = (const float *)(sc + p.wo_st);
        const int64_t work = (int64_t)T * OUTL_CAP + (int64_t)OUTL_CAP * O; /* upper bound; kernel reads count */
        outlier_stage_kernel<<<grid_for(c, work), 256, 0, c->stream>>>(a, (float *)(sc + p.r_st),
                                                                       (float *)(sc + p.wo_st));
        BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 outlier staging");
    } else {
        a.count = NULL;
    }
    stage_mark(&tm, c, "outliers");
    a.t_begin = 0, a.t_end = T;
    const int kdim = ldw == Kp ? Kp : K;
    /* sm_90a: our wgmma GEMM with the epilogue fused (no int32 C in memory). TMA needs 16-byte aligned rows. */
    if (T > 0 && O > 0 && kdim > 0 && ldq % 16 == 0 && ldw % 16 == 0 && aligned16(xq) && aligned16(wq) &&
        bnb_int8_sm90a_ready(c, T, O)) {
        st = bnb_int8_gemm_sm90a(c, a, kdim);
        stage_mark(&tm, c, "gemm+epilogue (sm_90a)");
        stage_report(&tm, c, T, K, O);
        return st;
    }
    /* cuBLASLt: int32 GEMM C [T x Op], then the epilogue (one pass over C). Token chunks sized to keep C in L2 were
     * tried and measured slower (docs/perf-int8-cuda.md); t_begin/t_end still allow them. */
    if ((st = int8_gemm(c, wq, ldw, xq, ldq, C, Op, T, kdim)) != BNB_OK) return st;
    stage_mark(&tm, c, "gemm (cuBLASLt)");
    const dim3 grid((unsigned)((O + 1023) / 1024), (unsigned)((T + EPI_TOKENS - 1) / EPI_TOKENS));
    epilogue_kernel<<<grid, 256, 0, c->stream>>>(a);
    BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 epilogue");
    stage_mark(&tm, c, "epilogue");
    stage_report(&tm, c, T, K, O);
    return BNB_OK;
}

extern "C" bnb_status bnb_cuda_int8_vectorwise_quant(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0];
    const bnb_int8_layout l = bnb_int8_layout_of(node);
    const float thr = node->quant.threshold;
    char *base = (char *)node->data;
    int8_t *q = (int8_t *)base;
    int *flags = (int *)c->scratch;
    const int K = (int)l.cols, rows = (int)l.rows;
    bnb_status st;
    if (l.has_outliers) {
        if (c->scratch_size < (size_t)K * 4)
            return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_int8_vectorwise_quant (cuda): scratch missing");
        BNB_CUDA_TRY(cudaMemsetAsync(flags, 0, (size_t)K * 4, c->stream), "memset outlier flags");
    }
    if ((st = launch_quant_rows(c, x, thr, q, K, (float *)(base + l.rowmax_offs), l.has_outliers ? flags : NULL)) !=
        BNB_OK)
        return st;
    if (!l.has_outliers) return BNB_OK;
    int *idx = (int *)(base + l.outl_idx_offs), *count = (int *)(base + l.outl_count_offs);
    compact_flags_kernel<<<1, 1024, 0, c->stream>>>(flags, K, idx, count);
    BNB_CUDA_CHECK_LAUNCH("bnb_int8_vectorwise_quant outlier columns");
    const bnb_cu_shape xs = bnb_cu_shape_of(x);
    __half *vals = (__half *)(base + l.outl_val_offs);
    const unsigned grid = grid_for(c, (int64_t)rows * 64);
    const char *xd = (const char *)x->data;
    if (x->type == BNB_TYPE_F32) outlier_columns_kernel<float><<<grid, 256, 0, c->stream>>>(xd, xs, rows, idx, count, q, K, vals);
    else if (x->type == BNB_TYPE_F16) outlier_columns_kernel<__half><<<grid, 256, 0, c->stream>>>(xd, xs, rows, idx, count, q, K, vals);
    else outlier_columns_kernel<__nv_bfloat16><<<grid, 256, 0, c->stream>>>(xd, xs, rows, idx, count, q, K, vals);
    BNB_CUDA_CHECK_LAUNCH("bnb_int8_vectorwise_quant outlier values");
    return BNB_OK;
}

extern "C" bnb_status bnb_cuda_int8_dequantize(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *q = node->src[0];
    const bnb_int8_layout l = bnb_int8_layout_of(q);
    const char *base = (const char *)q->data;
    float *y = (float *)node->data;
    const int64_t n = l.cols * l.rows;
    dequant_kernel<<<grid_for(c, n), 256, 0, c->stream>>>((const int8_t *)base, (const float *)(base + l.rowmax_offs),
                                                          (int)l.cols, n, y);
    BNB_CUDA_CHECK_LAUNCH("bnb_int8_dequantize");
    if (l.has_outliers) {
        dequant_outliers_kernel<<<grid_for(c, l.rows * 64), 256, 0, c->stream>>>(
            (const int *)(base + l.outl_idx_offs), (const int *)(base + l.outl_count_offs),
            (const __half *)(base + l.outl_val_offs), (int)l.rows, (int)l.cols, y);
        BNB_CUDA_CHECK_LAUNCH("bnb_int8_dequantize outliers");
    }
    return BNB_OK;
}
