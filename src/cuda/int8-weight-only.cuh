// LLM.int8 weight-only path for 1-16 tokens (included by int8.cu only): one pass over the int8 weights, dequantized
// in registers; a CUDA-core GEMV and the tensor-core (mma.sync) form. Split out to keep int8.cu readable.
#pragma once

/* ------------------------------------------------------------------------------------------------ weight-only GEMV */
/* y[t][o] = SCB[o]/127 * sum_k x[t][k] * CB[o][k] + bias[o] for t < T <= NT. A warp owns wo_rows(NT) weight rows
 * (more rows for more tokens: each x value loaded from L1 serves more weights); VEC: 16 int8 per lane per step
 * (K % 16 == 0, 16-byte aligned rows of w and x). */
#define WO_WARPS 4
__host__ __device__ constexpr int wo_rows(int nt) { return nt >= 8 ? 4 : 2; }

template <typename T> __device__ __forceinline__ void load16(const T *p, float *out);
template <> __device__ __forceinline__ void load16<float>(const float *p, float *out) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float4 v = reinterpret_cast<const float4 *>(p)[i];
        out[4 * i] = v.x, out[4 * i + 1] = v.y, out[4 * i + 2] = v.z, out[4 * i + 3] = v.w;
    }
}
template <> __device__ __forceinline__ void load16<__half>(const __half *p, float *out) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint4 v = reinterpret_cast<const uint4 *>(p)[i];
        const __half2 *h = reinterpret_cast<const __half2 *>(&v);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __half22float2(h[j]);
            out[8 * i + 2 * j] = f.x, out[8 * i + 2 * j + 1] = f.y;
        }
    }
}
template <> __device__ __forceinline__ void load16<__nv_bfloat16>(const __nv_bfloat16 *p, float *out) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint4 v = reinterpret_cast<const uint4 *>(p)[i];
        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __bfloat1622float2(h[j]);
            out[8 * i + 2 * j] = f.x, out[8 * i + 2 * j + 1] = f.y;
        }
    }
}

template <typename T, int NT, bool VEC>
__global__ void __launch_bounds__(32 * WO_WARPS) weight_only_kernel(const char *x, bnb_cu_shape xs, int Tn,
                                                                    const int8_t *w, int ldw, const float *wmax,
                                                                    const float *bias, int K, int O, void *y, int yt) {
    constexpr int WO_ROWS = wo_rows(NT);
    const int lane = threadIdx.x & 31;
    const int o_base = (blockIdx.x * WO_WARPS + (threadIdx.x >> 5)) * WO_ROWS;
    if (o_base >= O) return;
    const T *xr[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) xr[t] = (const T *)(x + bnb_cu_row_offset(xs, (uint32_t)min(t, Tn - 1)));
    const int8_t *wr[WO_ROWS];
#pragma unroll
    for (int r = 0; r < WO_ROWS; r++) wr[r] = w + (size_t)min(o_base + r, O - 1) * ldw;
    float acc[WO_ROWS][NT];
#pragma unroll
    for (int r = 0; r < WO_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.f;
    if (VEC) {
        for (int k = lane * 16; k < K; k += 32 * 16) {
            float wf[WO_ROWS][16];
#pragma unroll
            for (int r = 0; r < WO_ROWS; r++) {
                const int4 v = __ldg(reinterpret_cast<const int4 *>(wr[r] + k));
                const int8_t *b = reinterpret_cast<const int8_t *>(&v);
#pragma unroll
                for (int i = 0; i < 16; i++) wf[r][i] = (float)b[i];
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t < Tn) {
                    float xv[16];
                    load16<T>(xr[t] + k, xv);
#pragma unroll
                    for (int r = 0; r < WO_ROWS; r++)
#pragma unroll
                        for (int i = 0; i < 16; i++) acc[r][t] = fmaf(xv[i], wf[r][i], acc[r][t]);
                }
            }
        }
    } else {
        for (int k = lane; k < K; k += 32) {
            float wf[WO_ROWS];
#pragma unroll
            for (int r = 0; r < WO_ROWS; r++) wf[r] = (float)wr[r][k];
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t < Tn) {
                    const float xv = ld_f(xr[t] + k);
#pragma unroll
                    for (int r = 0; r < WO_ROWS; r++) acc[r][t] = fmaf(xv, wf[r], acc[r][t]);
                }
        }
    }
#pragma unroll
    for (int r = 0; r < WO_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = bnb_cu_warp_sum(acc[r][t]);
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < WO_ROWS; r++) {
            const int o = o_base + r;
            if (o >= O) continue;
            const float s = wmax[o] / 127.f, b = bias ? bias[o] : 0.f;
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t < Tn) y_store(y, yt, (size_t)t * O + o, acc[r][t] * s + b);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ weight-only MMA */
/* Tensor-core form of the weight-only path (K % 16 == 0, 16-byte aligned rows): y[t][o] = SCB[o]/127 *
 * sum_k x[t][k] * CB[o][k] + bias[o] with mma.sync m16n8k16 (f32 accumulation): weights are the A operand
 * (16 output rows per m-tile), tokens the B operand (8 per n-tile). int8 converts exactly to f16/bf16 with a byte
 * permute and one subtraction; x is f16 (f16 x), bf16 (bf16 x) or an exact-to-2^-16 bf16 hi+lo pair (f32 x, two
 * MMAs). Since the k sum is order-free, each thread's fragment k indices are permuted so that it loads 16
 * contiguous bytes of weight per row and the matching 16 x values (same permutation for A and B).
 * Block: WM_WARPS warps over WM_MT (template: 1 or 2) m-tiles (16 * WM_MT rows); warp w takes the 64-wide k chunks
 * w, w + WM_WARPS, ... (all m-tiles share the x fragments), the warps' partial sums meet in shared memory. A 2-block
 * cluster with 64 rows and K split across the pair (DSMEM reduction) measured slower on H100 (docs/perf-int8-cuda.md).
 * The launch bound of one block only lifts ptxas' register target (more loads kept ahead); two blocks still fit. */
#define WM_WARPS 8
#define WM_MT_DEFAULT 1 /* m-tiles per block: 16 rows (32 rows measured 4-11% slower at 1-16 x 4096 x 4096) */
#define WM_U 4 /* chunks loaded ahead per step (8 gave no more loads in flight in the SASS: ptxas keeps ~15 ahead) */

/* 16-byte read-only load as a volatile asm, so that the PTX keeps every load of a step ahead of the step's (volatile)
 * MMAs. ptxas still schedules: with the loads branch-free (load_xfrag) it keeps ~15 of a step's 16-32 ahead of the
 * first MMA, where __ldg behind a branch per load gave ~7 (1.3 TB/s from device memory at 16 tokens, now ~1.5). */
__device__ __forceinline__ uint4 ldg16_early(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

template <typename X> struct wm_traits;
template <> struct wm_traits<__half> { static constexpr bool bf = false, split = false; };
template <> struct wm_traits<__nv_bfloat16> { static constexpr bool bf = true, split = false; };
template <> struct wm_traits<float> { static constexpr bool bf = true, split = true; };

/* 4 int8 (one 32-bit word) -> 2 x (f16x2 or bf16x2): {b0,b1}, {b2,b3} */
template <bool BF> __device__ __forceinline__ void cvt_i8x4(uint32_t u, uint32_t &lo, uint32_t &hi) {
    u ^= 0x80808080u; /* biased bytes 0..255 */
    if (BF) { /* bf16 has 7 mantissa bits: go through f32 (0x4B0000xx = 2^23 + xx), then pack exactly */
        float f[4];
#pragma unroll
        for (int i = 0; i < 4; i++) f[i] = __int_as_float(0x4B000000 | ((u >> (8 * i)) & 0xffu)) - 8388736.f;
        __nv_bfloat162 ra = __floats2bfloat162_rn(f[0], f[1]), rb = __floats2bfloat162_rn(f[2], f[3]);
        lo = *reinterpret_cast<uint32_t *>(&ra), hi = *reinterpret_cast<uint32_t *>(&rb);
    } else { /* f16 0x64xx = 1024 + xx; minus 1152 */
        const uint32_t a = __byte_perm(u, 0x64646464u, 0x4140), b = __byte_perm(u, 0x64646464u, 0x4342);
        const __half2 off = __floats2half2_rn(1152.f, 1152.f);
        __half2 ra = __hsub2(*reinterpret_cast<const __half2 *>(&a), off);
        __half2 rb = __hsub2(*reinterpret_cast<const __half2 *>(&b), off);
        lo = *reinterpret_cast<uint32_t *>(&ra), hi = *reinterpret_cast<uint32_t *>(&rb);
    }
}

template <bool BF>
__device__ __forceinline__ void mma16816(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    if (BF)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* x fragment of one n-tile for one 64-chunk: 16 values from p (16-byte aligned) as 8 packed pairs (hi) and, for
 * split f32, the residual pairs (lo). */
template <typename X> struct xfrag { uint32_t hi[8], lo[wm_traits<X>::split ? 8 : 1]; };

/* Loads without branches (a branch around each load splits the block, and ptxas then interleaved the loads with the
 * MMAs): past K the address falls back to `safe` (the row start, always readable) and the values are zeroed. */
template <typename X> __device__ __forceinline__ void load_xfrag(const X *p, const X *safe, bool ok, xfrag<X> &f) {
    const X *src = ok ? p : safe;
    if constexpr (wm_traits<X>::split) {
        float v[16];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 u = ldg16_early(reinterpret_cast<const float4 *>(src) + (ok ? i : 0));
            v[4 * i] = ok ? __uint_as_float(u.x) : 0.f, v[4 * i + 1] = ok ? __uint_as_float(u.y) : 0.f;
            v[4 * i + 2] = ok ? __uint_as_float(u.z) : 0.f, v[4 * i + 3] = ok ? __uint_as_float(u.w) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
            const float2 hf = __bfloat1622float2(h);
            __nv_bfloat162 l = __floats2bfloat162_rn(v[2 * i] - hf.x, v[2 * i + 1] - hf.y);
            f.hi[i] = *reinterpret_cast<uint32_t *>(&h), f.lo[i] = *reinterpret_cast<uint32_t *>(&l);
        }
    } else {
        const uint4 a = ldg16_early(src), b = ldg16_early(reinterpret_cast<const uint4 *>(src) + (ok ? 1 : 0));
        f.hi[0] = ok ? a.x : 0u, f.hi[1] = ok ? a.y : 0u, f.hi[2] = ok ? a.z : 0u, f.hi[3] = ok ? a.w : 0u;
        f.hi[4] = ok ? b.x : 0u, f.hi[5] = ok ? b.y : 0u, f.hi[6] = ok ? b.z : 0u, f.hi[7] = ok ? b.w : 0u;
    }
}

template <typename X, int NT, int WM_MT>
__global__ void __launch_bounds__(32 * WM_WARPS, 1)
    weight_only_mma_kernel(const char *x, bnb_cu_shape xs, int Tn, const int8_t *w, int ldw, const float *wmax,
                           const float *bias, int K, int O, void *y, int yt) {
    constexpr bool BF = wm_traits<X>::bf, SPLIT = wm_traits<X>::split;
    constexpr int ROWS = 16 * WM_MT, COLS = 8 * NT;
    __shared__ float red[WM_WARPS][ROWS][COLS + 1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const int o0 = blockIdx.x * ROWS;
    const int8_t *wr[WM_MT][2];
#pragma unroll
    for (int m = 0; m < WM_MT; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) wr[m][h] = w + (size_t)min(o0 + 16 * m + 8 * h + g, O - 1) * ldw + q * 16;
    const X *xr[NT];
#pragma unroll
    for (int n = 0; n < NT; n++)
        xr[n] = (const X *)(x + bnb_cu_row_offset(xs, (uint32_t)min(8 * n + g, Tn - 1))) + q * 16;
    float acc[WM_MT][NT][4];
#pragma unroll
    for (int m = 0; m < WM_MT; m++)
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[m][n][i] = 0.f;
    const int nchunks = (K + 63) / 64;
    for (int c0 = warp; c0 < nchunks; c0 += WM_WARPS * WM_U) {
        int4 wv[WM_U][WM_MT][2];
        xfrag<X> xf[WM_U][NT];
#pragma unroll
        for (int u = 0; u < WM_U; u++) {
            const int k = (c0 + u * WM_WARPS) * 64; /* the row pointers include q * 16 */
            const bool ok = k + q * 16 < K;
#pragma unroll
            for (int m = 0; m < WM_MT; m++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                {
                    const uint4 v = ldg16_early(ok ? wr[m][h] + k : wr[m][h] - q * 16); /* row start if past K */
                    wv[u][m][h] = ok ? make_int4((int)v.x, (int)v.y, (int)v.z, (int)v.w) : make_int4(0, 0, 0, 0);
                }
#pragma unroll
            for (int n = 0; n < NT; n++) load_xfrag<X>(xr[n] + k, xr[n] - q * 16, ok, xf[u][n]);
        }
#pragma unroll
        for (int u = 0; u < WM_U; u++) {
#pragma unroll
            for (int s = 0; s < 4; s++) {
#pragma unroll
                for (int m = 0; m < WM_MT; m++) {
                    uint32_t r0lo, r0hi, r1lo, r1hi; /* rows g and g+8: {k 4s, 4s+1}, {4s+2, 4s+3} */
                    cvt_i8x4<BF>((uint32_t)(&wv[u][m][0].x)[s], r0lo, r0hi);
                    cvt_i8x4<BF>((uint32_t)(&wv[u][m][1].x)[s], r1lo, r1hi);
#pragma unroll
                    for (int n = 0; n < NT; n++) {
                        mma16816<BF>(acc[m][n], r0lo, r1lo, r0hi, r1hi, xf[u][n].hi[2 * s], xf[u][n].hi[2 * s + 1]);
                        if constexpr (SPLIT)
                            mma16816<BF>(acc[m][n], r0lo, r1lo, r0hi, r1hi, xf[u][n].lo[2 * s], xf[u][n].lo[2 * s + 1]);
                    }
                }
            }
        }
    }
    /* C fragment: c0,c1 row g, tokens 2q, 2q+1; c2,c3 row g+8 */
#pragma unroll
    for (int m = 0; m < WM_MT; m++)
#pragma unroll
        for (int n = 0; n < NT; n++) {
            red[warp][16 * m + g][8 * n + 2 * q] = acc[m][n][0];
            red[warp][16 * m + g][8 * n + 2 * q + 1] = acc[m][n][1];
            red[warp][16 * m + g + 8][8 * n + 2 * q] = acc[m][n][2];
            red[warp][16 * m + g + 8][8 * n + 2 * q + 1] = acc[m][n][3];
        }
    __syncthreads();
    for (int i = threadIdx.x; i < ROWS * COLS; i += blockDim.x) {
        const int r = i % ROWS, t = i / ROWS, o = o0 + r;
        if (t >= Tn || o >= O) continue;
        float s = 0.f;
#pragma unroll
        for (int v = 0; v < WM_WARPS; v++) s += red[v][r][t];
        y_store(y, yt, (size_t)t * O + o, s * (wmax[o] / 127.f) + (bias ? bias[o] : 0.f));
    }
}
