/* CUDA kernels of the quantization ops: blockwise 8-bit and 4-bit quantize / dequantize (nested absmax, stochastic
 * rounding) and mul_mat with a blockwise quantized weight.
 *
 * Quantize: persistent CTAs, 16 consecutive elements a thread; absmax as an integer max of |x|'s bits (shuffles or
 * REDUX + shared memory). Deterministic 8-bit with a built-in map and NF4 find codes with the direct table
 * (quant.h bnb_qd_*, one shared load an element); stochastic rounding and caller maps use the table-guided search
 * (bnb_qt_*) or bnb_qsearch itself; all give the CPU's codes. Non-finite input: the block's absmax is stored as NaN
 * and the error flag is raised (graph_compute reports BNB_ERR_NUMERIC naming the block). Dequantize: 8-bit one CTA
 * a tile of 4096 with coalesced stores and a bank-conflict-free replicated map; 4-bit 16 codes a thread.
 * mul_mat: a fused dequantize-GEMV for up to 8 rows of b, otherwise the weight is dequantized to 16-bit in scratch
 * and the cuBLASLt path of matmul.cu runs on it. */
#include "cuda-common.cuh"
#include "../quant/quant.h"

#include <float.h>

/* 16 4-bit codes of elements i0..i0+15 (two per byte, packed in w0, w1) to codes[i0 / 2 ..]: one streaming 8-byte
 * store, or byte by byte for the tail of the tensor (n elements) */
__device__ __forceinline__ void store_4bit_codes16(uint8_t *codes, int64_t i0, int64_t n, uint32_t w0, uint32_t w1) {
    if (i0 + 16 <= n) {
        __stcs(reinterpret_cast<uint2 *>(codes + i0 / 2), make_uint2(w0, w1));
    } else {
        uint8_t cb[8];
        memcpy(cb, &w0, 4);
        memcpy(cb + 4, &w1, 4);
        for (int j = 0; j < 8 && i0 + 2 * j < n; j++) codes[i0 / 2 + j] = cb[j];
    }
}

#define DQEPT 16      /* elements a thread dequantizes (4-bit) */
#define GEMV_MAX_N 8  /* fused GEMV up to this many rows of b */

/* ------------------------------------------------------------------------------------------------ built-in maps */
/* DYNAMIC_SIGNED, DYNAMIC_UNSIGNED, LINEAR_SIGNED, LINEAR_UNSIGNED (bnb_qmap 0..3), uploaded once per device. */
__device__ float g_qmaps[4][256];
static bool g_qmaps_ready[64];

static bnb_status qmaps_device(bnb_cuda_ctx *c, const float **out) {
    int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    if (!g_qmaps_ready[dev]) {
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        cudaStreamIsCapturing(c->stream, &cs);
        if (cs != cudaStreamCaptureStatusNone)
            return bnb_fail(BNB_ERR_BACKEND, "quantize: code maps not on the device yet while capturing");
        float host[4][256];
        for (int k = 0; k < 4; k++) bnb_qmap_fill((bnb_qmap)k, host[k]);
        BNB_CUDA_TRY(cudaMemcpyToSymbol(g_qmaps, host, sizeof host), "quantize: code map upload");
        g_qmaps_ready[dev] = true;
    }
    void *p = NULL;
    BNB_CUDA_TRY(cudaGetSymbolAddress(&p, g_qmaps), "quantize: code map address");
    *out = (const float *)p;
    return BNB_OK;
}

/* max over the G consecutive threads of a group (G = block / 8, a power of two, 8..512); all threads get it */
__device__ __forceinline__ float group_max(float m, int G, float *sred) {
    const int w = G < 32 ? G : 32;
    for (int off = w / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (G <= 32) return m;
    const int warp = threadIdx.x / 32, wpg = G / 32;
    if ((threadIdx.x & 31) == 0) sred[warp] = m;
    __syncthreads();
    const int w0 = (warp / wpg) * wpg;
    float r = sred[w0];
    for (int k = 1; k < wpg; k++) r = fmaxf(r, sred[w0 + k]);
    return r;
}

/* ------------------------------------------------------------------------------------------------ quantize */
/* Search tables (quant.h, bnb_qt_*) of the built-in maps and of NF4, built on the host once per device. */
struct qtables {
    float win[128][4]; /* 8-bit: {code[2k-1], code[2k], code[2k+1], 0} */
    float r[128];      /* split list (+inf padded) */
    uint8_t tab[BNB_QT_BYTES];
};
__device__ qtables g_qtabs[5]; /* maps 0..3, then NF4 */
static bool g_qtabs_ready[64], g_qtabs_fast[64][5];
static int g_nsm[64];

static bnb_status qtables_device(bnb_cuda_ctx *c, const qtables **out, bool fast[5]) {
    int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    if (!g_qtabs_ready[dev]) {
        static qtables host[5];
        for (int k = 0; k < 4; k++) {
            float code[256];
            bnb_qmap_fill((bnb_qmap)k, code);
            g_qtabs_fast[dev][k] = bnb_qt_build_map(code, host[k].tab, host[k].r, host[k].win);
        }
        const float thr[16] = BNB_NF4_THRESHOLDS;
        memset(&host[4], 0, sizeof host[4]);
        for (int i = 0; i < 128; i++) host[4].r[i] = i < 15 ? thr[i] : INFINITY;
        g_qtabs_fast[dev][4] = bnb_qt_build(thr, 15, host[4].tab);
        BNB_CUDA_TRY(cudaMemcpyToSymbol(g_qtabs, host, sizeof host), "quantize: search table upload");
        int nsm = 0;
        BNB_CUDA_TRY(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev), "quantize: SM count");
        g_nsm[dev] = nsm > 0 ? nsm : 1;
        g_qtabs_ready[dev] = true;
    }
    void *p = NULL;
    BNB_CUDA_TRY(cudaGetSymbolAddress(&p, g_qtabs), "quantize: search table address");
    *out = (const qtables *)p;
    for (int k = 0; k < 5; k++) fast[k] = g_qtabs_fast[dev][k];
    return BNB_OK;
}

#define QT_THREADS 256
#define QT_EPT 16 /* elements a thread quantizes per tile */
#define QT_TILE (QT_THREADS * QT_EPT)

template <typename T> __device__ __forceinline__ void load16(const T *x, int64_t i0, int64_t n, float v[16]) {
    if (i0 + 16 <= n) {
        if constexpr (sizeof(T) == 4) {
            float4 r[4];
#pragma unroll
            for (int h = 0; h < 4; h++) r[h] = __ldcs(reinterpret_cast<const float4 *>(x + i0) + h);
#pragma unroll
            for (int h = 0; h < 4; h++) v[4 * h] = r[h].x, v[4 * h + 1] = r[h].y, v[4 * h + 2] = r[h].z, v[4 * h + 3] = r[h].w;
        } else {
            uint4 r[2];
#pragma unroll
            for (int h = 0; h < 2; h++) r[h] = __ldcs(reinterpret_cast<const uint4 *>(x + i0) + h);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                T e[8];
                memcpy(e, &r[h], 16);
#pragma unroll
                for (int j = 0; j < 8; j++) v[8 * h + j] = bnb_cu_to_f32<T>(e[j]);
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < 16; j++) v[j] = i0 + j < n ? bnb_cu_to_f32<T>(x[i0 + j]) : 0.0f;
    }
}

/* max over the G consecutive threads of a group (G = block / 16, a power of two, 2..256); all threads get it.
 * sred: 8 floats; the caller syncs before sred is written again. */
__device__ __forceinline__ float group_max16(float m, int G, float *sred) {
    const int w = G < 32 ? G : 32;
    for (int off = w / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (G <= 32) return m;
    const int warp = threadIdx.x / 32, wpg = G / 32;
    if ((threadIdx.x & 31) == 0) sred[warp] = m;
    __syncthreads();
    const int w0 = (warp / wpg) * wpg;
    float r = sred[w0];
    for (int k = 1; k < wpg; k++) r = fmaxf(r, sred[w0 + k]);
    return r;
}

/* mode 0: 8-bit with map; 1: NF4; 2: FP4. FAST: the table-guided search (map nondecreasing), else bnb_qsearch.
 * Persistent CTAs walk tiles of QT_TILE elements; a thread owns 16 consecutive elements of a tile. */
template <typename T, int MODE, bool FAST, bool STOCH>
__global__ void __launch_bounds__(QT_THREADS) k_quantize(const T *__restrict__ x, uint8_t *__restrict__ codes,
                                                         float *__restrict__ absmax_out,
                                                         const float *__restrict__ map_src, float *__restrict__ map_dst,
                                                         const qtables *__restrict__ qt, int64_t n, int block,
                                                         uint32_t seed, int *err, int err_code) {
    __shared__ __align__(16) float swin[128][4];
    __shared__ float sr[128];
    __shared__ __align__(16) uint8_t stab[BNB_QT_BYTES];
    __shared__ float smap[256];
    __shared__ float sred[2][8];
    if (MODE == 0) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) {
            smap[i] = map_src[i];
            if (blockIdx.x == 0 && map_dst) map_dst[i] = map_src[i];
        }
    }
    if (FAST && MODE != 2) {
        const uint4 *src = reinterpret_cast<const uint4 *>(qt);
        uint4 *dst0 = reinterpret_cast<uint4 *>(&swin[0][0]);
        for (int i = threadIdx.x; i < 128; i += blockDim.x) dst0[i] = src[i];
        const float *r = qt->r;
        for (int i = threadIdx.x; i < 128; i += blockDim.x) sr[i] = r[i];
        const uint4 *ts = reinterpret_cast<const uint4 *>(qt->tab);
        uint4 *td = reinterpret_cast<uint4 *>(stab);
        for (int i = threadIdx.x; i < BNB_QT_BYTES / 16; i += blockDim.x) td[i] = ts[i];
    }
    __syncthreads();
    const int G = block / QT_EPT;
    const int64_t ntiles = (n + QT_TILE - 1) / QT_TILE;
    int par = 0;
    for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x, par ^= 1) {
        const int64_t i0 = tile * QT_TILE + (int64_t)threadIdx.x * QT_EPT;
        float v[16];
        load16<T>(x, i0, n, v);
        float m = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++) m = fmaxf(m, fabsf(v[j]));
        bool nonfin = false;
#pragma unroll
        for (int j = 0; j < 16; j++) nonfin |= !(fabsf(v[j]) <= FLT_MAX);
        /* a non-finite value rides along as +inf (finite values never reach it) */
        m = group_max16(nonfin ? __int_as_float(0x7f800000) : m, G, sred[par]);
        const bool bad = !(m <= FLT_MAX);
        if (i0 >= n) continue;
        const int64_t b = i0 / block;
        if (threadIdx.x % G == 0) {
            absmax_out[b] = bad ? __int_as_float(0x7fc00000) : m;
            if (bad) bnb_cu_report_bad(err, err_code, (int)b, (int)(b * block > INT32_MAX ? INT32_MAX : b * block));
        }
        const float inv = bad ? 0.0f : (m > 0.0f ? 1.0f / m : 0.0f);
        if (MODE == 0) {
            uint8_t c[16];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float y = v[j] * inv;
                const float u = STOCH ? bnb_qrand(seed, i0 + j) : 0.0f;
                int code;
                if (FAST) {
                    const int t = stab[bnb_qt_index(y)];
                    if (t != BNB_QT_SLOW) {
                        int k = t;
#pragma unroll
                        for (int s = 0; s < BNB_QT_STEPS; s++) k += y > sr[k];
                        const float4 w4 = *reinterpret_cast<const float4 *>(swin[k]);
                        const float w[4] = {w4.x, w4.y, w4.z, w4.w};
                        code = bnb_qt_finish(y, k, w, u, STOCH);
                    } else {
                        code = bnb_qsearch(smap, y, u, STOCH);
                    }
                } else {
                    code = bnb_qsearch(smap, y, u, STOCH);
                }
                c[j] = (uint8_t)code;
            }
            if (i0 + 16 <= n) {
                uint4 o;
                memcpy(&o, c, 16);
                __stcs(reinterpret_cast<uint4 *>(codes + i0), o);
            } else {
                for (int j = 0; j < 16 && i0 + j < n; j++) codes[i0 + j] = c[j];
            }
        } else {
            int e[16];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float y = v[j] * inv;
                if (MODE == 1 && FAST) {
                    const int t = stab[bnb_qt_index(y)];
                    if (t != BNB_QT_SLOW) {
                        int k = t;
#pragma unroll
                        for (int s = 0; s < BNB_QT_STEPS; s++) k += y > sr[k];
                        e[j] = k;
                    } else {
                        e[j] = bnb_nf4_encode(y);
                    }
                } else {
                    e[j] = MODE == 1 ? bnb_nf4_encode(y) : bnb_fp4_encode(y);
                }
                if (i0 + j >= n) e[j] = 0;
            }
            uint32_t w0 = 0, w1 = 0;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                w0 |= (uint32_t)(e[2 * j] << 4 | e[2 * j + 1]) << (8 * j);
                w1 |= (uint32_t)(e[8 + 2 * j] << 4 | e[8 + 2 * j + 1]) << (8 * j);
            }
            store_4bit_codes16(codes, i0, n, w0, w1);
        }
    }
}

#include "quant-direct.cuh"

/* nested absmax, step 1: the mean of absmax[nblk] (double sum, one CTA of 1024 threads) */
__global__ void k_nest_mean(const float *__restrict__ absmax, int64_t nblk, float *mean_out) {
    __shared__ double s[32];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < nblk; i += blockDim.x) acc += absmax[i];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0) s[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) t += s[w];
        *mean_out = nblk ? (float)(t / (double)nblk) : 0.0f;
    }
}

/* step 2: absmax - mean quantized in groups of 256 with the dynamic signed map (one CTA of 256 per group) */
__global__ void k_nest_codes(const float *__restrict__ absmax, int64_t nblk, const float *__restrict__ mean_p,
                             const float *__restrict__ map2_src, float *__restrict__ map2_dst,
                             uint8_t *__restrict__ acodes, float *__restrict__ absmax2) {
    __shared__ float smap[256];
    __shared__ float sred[32];
    smap[threadIdx.x] = map2_src[threadIdx.x];
    if (blockIdx.x == 0) map2_dst[threadIdx.x] = map2_src[threadIdx.x];
    const float mean = *mean_p;
    const int64_t b = (int64_t)blockIdx.x * BNB_NESTED_BLOCK + threadIdx.x;
    const float cval = b < nblk ? absmax[b] - mean : 0.0f;
    float m = group_max(fabsf(cval), BNB_NESTED_BLOCK, sred); /* G = 256: whole CTA */
    __syncthreads();
    if (threadIdx.x == 0) absmax2[blockIdx.x] = m;
    const float inv = m > 0.0f ? 1.0f / m : 0.0f;
    if (b < nblk) acodes[b] = (uint8_t)bnb_qsearch(smap, cval * inv, 0.0f, false);
}

/* ------------------------------------------------------------------------------------------------ dequantize */
struct qparts { /* device pointers into one quantized tensor */
    const uint8_t *codes;
    const float *absmax;  /* not nested */
    const uint8_t *acodes; /* nested */
    const float *absmax2;
    const float *mean;
    const float *map;     /* 8-bit */
    const float *map2;    /* nested */
    int64_t n;
    int block;
    int lg_block; /* log2(block) */
    int mode; /* 0 8-bit, 1 NF4, 2 FP4 */
};

static qparts qparts_of(const bnb_tensor *q) {
    bnb_quant_layout L = bnb_quant_layout_of(q);
    const uint8_t *st = (const uint8_t *)q->data;
    qparts p;
    p.codes = st + L.codes;
    p.absmax = L.absmax != BNB_QNONE ? (const float *)(st + L.absmax) : NULL;
    p.acodes = L.nested ? st + L.absmax_codes : NULL;
    p.absmax2 = L.nested ? (const float *)(st + L.absmax2) : NULL;
    p.mean = L.nested ? (const float *)(st + L.mean) : NULL;
    p.map = L.map != BNB_QNONE ? (const float *)(st + L.map) : NULL;
    p.map2 = L.nested ? (const float *)(st + L.map2) : NULL;
    p.n = L.n;
    p.block = (int)L.block;
    p.lg_block = 0;
    while ((1 << p.lg_block) < p.block) p.lg_block++;
    p.mode = q->type == BNB_TYPE_Q4_NF4 ? 1 : q->type == BNB_TYPE_Q4_FP4 ? 2 : 0;
    return p;
}

__constant__ float c_q4vals[2][16];
static bool g_q4_ready[64];

static bnb_status q4_tables(bnb_cuda_ctx *c) {
    int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    if (g_q4_ready[dev]) return BNB_OK;
    float host[2][16];
    memcpy(host[0], bnb_nf4_values, sizeof host[0]);
    memcpy(host[1], bnb_fp4_values, sizeof host[1]);
    BNB_CUDA_TRY(cudaMemcpyToSymbol(c_q4vals, host, sizeof host), "dequantize: 4-bit table upload");
    g_q4_ready[dev] = true;
    return BNB_OK;
}

/* the scale of block b (nested: restored as map2[code] * absmax2 + mean, rounded like the CPU: no FMA) */
__device__ __forceinline__ float block_scale(const qparts &p, int64_t b) {
    if (!p.acodes) return p.absmax[b];
    return __fadd_rn(__fmul_rn(p.map2[p.acodes[b]], p.absmax2[b / BNB_NESTED_BLOCK]), *p.mean);
}

template <typename To> __device__ __forceinline__ void store16(To *out, int64_t i0, int64_t n, const float v[16]) {
    if (i0 + 16 <= n) {
        if constexpr (sizeof(To) == 4) {
#pragma unroll
            for (int j = 0; j < 16; j += 4)
                *reinterpret_cast<float4 *>((float *)out + i0 + j) = make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
        } else {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                bnb_cu_vec<To> r;
#pragma unroll
                for (int j = 0; j < 8; j++) r.v[j] = bnb_cu_from_f32<To>(v[8 * h + j]);
                bnb_cu_store_vec<To>(out + i0 + 8 * h, r);
            }
        }
    } else {
        for (int j = 0; j < 16 && i0 + j < n; j++) out[i0 + j] = bnb_cu_from_f32<To>(v[j]);
    }
}

template <typename To> __global__ void k_dequantize(qparts p, To *__restrict__ out) {
    __shared__ float smap[256];
    if (p.mode == 0)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) smap[i] = p.map[i];
    else if (threadIdx.x < 16)
        smap[threadIdx.x] = c_q4vals[p.mode - 1][threadIdx.x];
    __syncthreads();
    const int64_t i0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * DQEPT;
    if (i0 >= p.n) return;
    const float a = block_scale(p, i0 >> p.lg_block); /* 16 | block: one block per thread */
    float v[16];
    if (p.mode == 0) {
        uint8_t c[16];
        if (i0 + 16 <= p.n) {
            uint4 r = *reinterpret_cast<const uint4 *>(p.codes + i0);
            memcpy(c, &r, 16);
        } else {
            for (int j = 0; j < 16; j++) c[j] = i0 + j < p.n ? p.codes[i0 + j] : 0;
        }
#pragma unroll
        for (int j = 0; j < 16; j++) v[j] = smap[c[j]] * a;
    } else {
        uint8_t c[8];
        if (i0 + 16 <= p.n) {
            uint2 r = *reinterpret_cast<const uint2 *>(p.codes + i0 / 2);
            memcpy(c, &r, 8);
        } else {
            for (int j = 0; j < 8; j++) c[j] = i0 + 2 * j < p.n ? p.codes[i0 / 2 + j] : 0;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            v[2 * j] = smap[c[j] >> 4] * a;
            v[2 * j + 1] = smap[c[j] & 15] * a;
        }
    }
    store16<To>(out, i0, p.n, v);
}

/* 8-bit: CTAs over tiles of 1024 * STEPS codes; per step j a warp decodes 128 consecutive codes (4 a lane, one
 * 32-bit load) and writes them as one coalesced 16-byte (f32) or 8-byte (16-bit) store a lane. All STEPS code
 * words and scales of a tile are loaded before the first store (bytes in flight). REP: the map held 32 times, entry
 * c of lane l at word 32 c + l, so the lookups of a warp never share a bank (32 KB of shared memory). */
template <typename To, int STEPS, bool REP>
__global__ void __launch_bounds__(256) k_dequantize8(qparts p, To *__restrict__ out) {
    constexpr int TILE = 256 * 4 * STEPS;
    __shared__ float smap[REP ? 256 * 32 : 256];
    if (REP) {
        const float mv = p.map[threadIdx.x];
#pragma unroll 8
        for (int l = 0; l < 32; l++) smap[threadIdx.x * 32 + ((l + threadIdx.x) & 31)] = mv;
    } else {
        smap[threadIdx.x] = p.map[threadIdx.x];
    }
    __syncthreads();
    const uint32_t lane = threadIdx.x & 31;
    const int64_t ntiles = (p.n + TILE - 1) / TILE;
    for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        const int64_t base = tile * TILE + (int64_t)(threadIdx.x / 32) * (128 * STEPS) + lane * 4;
        uint32_t cw[STEPS];
        float a[STEPS];
#pragma unroll
        for (int j = 0; j < STEPS; j++) {
            const int64_t e = base + j * 128;
            if (e + 4 <= p.n) {
                cw[j] = __ldcs(reinterpret_cast<const unsigned int *>(p.codes + e));
            } else {
                cw[j] = 0;
                for (int q = 0; q < 4; q++)
                    if (e + q < p.n) cw[j] |= (uint32_t)p.codes[e + q] << (8 * q);
            }
            a[j] = e < p.n ? block_scale(p, e >> p.lg_block) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < STEPS; j++) {
            const int64_t e = base + j * 128;
            float v[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const uint32_t code = (cw[j] >> (8 * q)) & 255;
                v[q] = (REP ? smap[code * 32 + lane] : smap[code]) * a[j];
            }
            if (e + 4 <= p.n) {
                if constexpr (sizeof(To) == 4) {
                    __stcs(reinterpret_cast<float4 *>((float *)out + e), make_float4(v[0], v[1], v[2], v[3]));
                } else {
                    To h[4];
#pragma unroll
                    for (int q = 0; q < 4; q++) h[q] = bnb_cu_from_f32<To>(v[q]);
                    uint2 o;
                    memcpy(&o, h, 8);
                    __stcs(reinterpret_cast<uint2 *>(out + e), o);
                }
            } else {
                for (int q = 0; q < 4 && e + q < p.n; q++) out[e + q] = bnb_cu_from_f32<To>(v[q]);
            }
        }
    }
}

/* a persistent grid: as many CTAs as fit on the device at once (cached per kernel), at most `want` */
template <typename K> static int resident_grid(K kernel, int threads, int nsm, int64_t want) {
    /* cached per kernel (kernels of one signature share K, so key on the address) */
    static const void *keys[32];
    static int vals[32], nkeys;
    int per_sm = 0;
    for (int i = 0; i < nkeys; i++)
        if (keys[i] == (const void *)kernel) per_sm = vals[i];
    if (per_sm == 0) {
        int b = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, threads, 0) != cudaSuccess || b < 1) b = 1;
        per_sm = b;
        if (nkeys < 32) keys[nkeys] = (const void *)kernel, vals[nkeys++] = b;
    }
    const int64_t g = (int64_t)per_sm * nsm;
    if (want <= g) return (int)(want > 0 ? want : 1);
    /* as few CTAs as keep the same number of rounds: every CTA then walks the same number of tiles (+-1) */
    const int64_t rounds = (want + g - 1) / g;
    return (int)((want + rounds - 1) / rounds);
}

/* ------------------------------------------------------------------------------------------------ entry points */
static int n_blocks_for(int64_t n, int threads, int ept) { return (int)((n + (int64_t)threads * ept - 1) / ((int64_t)threads * ept)); }

template <typename T, int MODE, bool FAST, bool STOCH>
static void launch_quantize(bnb_cuda_ctx *c, const void *x, uint8_t *codes, float *absmax, const float *map_src,
                            float *map_dst, const qtables *qt, const bnb_quant_layout &L, uint32_t seed, int code) {
    auto kern = k_quantize<T, MODE, FAST, STOCH>;
    const int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    const int grid = resident_grid(kern, QT_THREADS, g_nsm[dev], (L.n + QT_TILE - 1) / QT_TILE);
    kern<<<grid, QT_THREADS, 0, c->stream>>>((const T *)x, codes, absmax, map_src, map_dst, qt, L.n, (int)L.block,
                                             seed, c->err_flag, code);
}

template <typename T, int MODE, int SUB>
static void launch_quantize_direct1(bnb_cuda_ctx *c, const void *x, uint8_t *codes, float *absmax, const float *map_src,
                                    float *map_dst, const uint32_t *qd, qd_special sp, const bnb_quant_layout &L,
                                    int code) {
    auto kern = k_quantize_direct<T, MODE, SUB>;
    const int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    const int grid = resident_grid(kern, QT_THREADS, g_nsm[dev], (L.n + SUB * QT_TILE - 1) / (SUB * QT_TILE));
    int lg = 0;
    while ((1ll << lg) < L.block) lg++;
    kern<<<grid, QT_THREADS, 0, c->stream>>>((const T *)x, codes, absmax, map_src, map_dst, qd, sp, L.n, lg,
                                             c->err_flag, code);
}

template <typename T>
static void launch_quantize_direct(bnb_cuda_ctx *c, int mode, const void *x, uint8_t *codes, float *absmax,
                                   const float *map_src, float *map_dst, const uint32_t *qd, qd_special sp,
                                   const bnb_quant_layout &L, int code) {
    /* measured on the H100: two sub-tiles a step help NF4 from 16-bit input (80.7% -> 82.4% of copy) and cost the
     * 8-bit f32 case 1-4% (more registers, fewer CTAs) */
    if (mode == 0) launch_quantize_direct1<T, 0, 1>(c, x, codes, absmax, map_src, map_dst, qd, sp, L, code);
    else if constexpr (sizeof(T) == 2) launch_quantize_direct1<T, 1, 2>(c, x, codes, absmax, NULL, NULL, qd, sp, L, code);
    else launch_quantize_direct1<T, 1, 1>(c, x, codes, absmax, NULL, NULL, qd, sp, L, code);
}

template <typename T>
static void launch_quantize_t(bnb_cuda_ctx *c, int mode, bool fast, bool stoch, const void *x, uint8_t *codes,
                              float *absmax, const float *map_src, float *map_dst, const qtables *qt,
                              const bnb_quant_layout &L, uint32_t seed, int code) {
    if (mode == 1) launch_quantize<T, 1, true, false>(c, x, codes, absmax, NULL, NULL, qt, L, seed, code);
    else if (mode == 2) launch_quantize<T, 2, false, false>(c, x, codes, absmax, NULL, NULL, qt, L, seed, code);
    else if (fast && stoch) launch_quantize<T, 0, true, true>(c, x, codes, absmax, map_src, map_dst, qt, L, seed, code);
    else if (fast) launch_quantize<T, 0, true, false>(c, x, codes, absmax, map_src, map_dst, qt, L, seed, code);
    else if (stoch) launch_quantize<T, 0, false, true>(c, x, codes, absmax, map_src, map_dst, qt, L, seed, code);
    else launch_quantize<T, 0, false, false>(c, x, codes, absmax, map_src, map_dst, qt, L, seed, code);
}

extern "C" bnb_status bnb_cuda_quantize(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *x = node->src[0];
    bnb_quant_layout L = bnb_quant_layout_of(node);
    if (L.n == 0) return BNB_OK;
    uint8_t *st = (uint8_t *)node->data;
    const int mode = node->type == BNB_TYPE_Q4_NF4 ? 1 : node->type == BNB_TYPE_Q4_FP4 ? 2 : 0;
    const float *maps = NULL, *map_src = NULL;
    bnb_status s = qmaps_device(c, &maps);
    if (s != BNB_OK) return s;
    const qtables *qt_all = NULL;
    bool fast_k[5];
    s = qtables_device(c, &qt_all, fast_k);
    if (s != BNB_OK) return s;
    const qtables *qt = qt_all + 4;
    bool fast = true;
    if (mode == 0) {
        int kind = bnb_get_op_i32(node, 2);
        if (node->src[1]) {
            map_src = (const float *)node->src[1]->data;
            fast = false; /* a caller's map may be unsorted: the plain search */
        } else if (kind >= 0 && kind < 4) {
            map_src = maps + 256 * kind;
            qt = qt_all + kind;
            fast = fast_k[kind];
        } else {
            return bnb_fail(BNB_ERR_INVALID_ARG, "%s: no code map", bnb_op_name(node->op));
        }
    }
    float *absmax = L.nested ? (float *)c->scratch : (float *)(st + L.absmax);
    uint32_t seed;
    int32_t sv = bnb_get_op_i32(node, 1);
    memcpy(&seed, &sv, sizeof seed);
    const bool stoch = bnb_get_op_i32(node, 0) != 0;
    float *map_dst = mode == 0 ? (float *)(st + L.map) : NULL;
    const int code = c->node_index + 1;
    /* deterministic 8-bit with a built-in map, or NF4: the direct table when it checked out */
    const int qd_k = mode == 1 ? 4 : (mode == 0 && !node->src[1] && !stoch ? bnb_get_op_i32(node, 2) : -1);
    const uint32_t *qd8 = NULL, *qd4 = NULL;
    if (qd_k >= 0 && qd_k < 5) {
        s = qd_tables_device(c, &qd8, &qd4);
        if (s != BNB_OK) return s;
    }
    const int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    if (qd_k >= 0 && qd_k < 5 && g_qd_ok[dev][qd_k]) {
        const uint32_t *qd = qd_k < 4 ? qd8 + (size_t)qd_k * QD_N8 : qd4;
        const qd_special sp = g_qd_sp[dev][qd_k];
        switch (x->type) {
        case BNB_TYPE_F32:
            launch_quantize_direct<float>(c, mode, x->data, st + L.codes, absmax, map_src, map_dst, qd, sp, L, code);
            break;
        case BNB_TYPE_F16:
            launch_quantize_direct<__half>(c, mode, x->data, st + L.codes, absmax, map_src, map_dst, qd, sp, L, code);
            break;
        case BNB_TYPE_BF16:
            launch_quantize_direct<__nv_bfloat16>(c, mode, x->data, st + L.codes, absmax, map_src, map_dst, qd, sp, L,
                                                  code);
            break;
        default: return bnb_fail(BNB_ERR_TYPE, "%s: x is %s", bnb_op_name(node->op), bnb_type_name(x->type));
        }
    } else {
    switch (x->type) {
    case BNB_TYPE_F32:
        launch_quantize_t<float>(c, mode, fast, stoch, x->data, st + L.codes, absmax, map_src, map_dst, qt, L, seed, code);
        break;
    case BNB_TYPE_F16:
        launch_quantize_t<__half>(c, mode, fast, stoch, x->data, st + L.codes, absmax, map_src, map_dst, qt, L, seed, code);
        break;
    case BNB_TYPE_BF16:
        launch_quantize_t<__nv_bfloat16>(c, mode, fast, stoch, x->data, st + L.codes, absmax, map_src, map_dst, qt, L,
                                         seed, code);
        break;
    default: return bnb_fail(BNB_ERR_TYPE, "%s: x is %s", bnb_op_name(node->op), bnb_type_name(x->type));
    }
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_quantize");
    if (L.nested) {
        k_nest_mean<<<1, 1024, 0, c->stream>>>(absmax, L.nblk, (float *)(st + L.mean));
        BNB_CUDA_CHECK_LAUNCH("bnb_quantize (nested mean)");
        k_nest_codes<<<(unsigned)L.nblk2, BNB_NESTED_BLOCK, 0, c->stream>>>(
            absmax, L.nblk, (const float *)(st + L.mean), maps, (float *)(st + L.map2), st + L.absmax_codes,
            (float *)(st + L.absmax2));
        BNB_CUDA_CHECK_LAUNCH("bnb_quantize (nested codes)");
    }
    return BNB_OK;
}

/* one CTA a tile: measured on the H100 (f32 out), a persistent grid of the same kernel reached 89% of copy, one CTA a
 * tile 94.8% (STEPS 8) and 95.9% (STEPS 4); the replicated map (REP) made no difference there but is kept */
template <typename To> static bnb_status launch_dequantize8(bnb_cuda_ctx *c, const qparts &p, void *out) {
    constexpr int STEPS = 4;
    const int64_t tiles = (p.n + 1024 * STEPS - 1) / (1024 * STEPS);
    k_dequantize8<To, STEPS, true><<<(unsigned)tiles, 256, 0, c->stream>>>(p, (To *)out);
    BNB_CUDA_CHECK_LAUNCH("bnb_dequantize");
    return BNB_OK;
}

static bnb_status launch_dequantize(bnb_cuda_ctx *c, const bnb_tensor *q, void *out, bnb_type type) {
    qparts p = qparts_of(q);
    if (p.n == 0) return BNB_OK;
    if (p.mode != 0) {
        bnb_status s = q4_tables(c);
        if (s != BNB_OK) return s;
    }
    const int threads = 256, grid = n_blocks_for(p.n, threads, DQEPT);
    if (p.mode == 0) {
        switch (type) {
        case BNB_TYPE_F32: return launch_dequantize8<float>(c, p, out);
        case BNB_TYPE_F16: return launch_dequantize8<__half>(c, p, out);
        case BNB_TYPE_BF16: return launch_dequantize8<__nv_bfloat16>(c, p, out);
        default: return bnb_fail(BNB_ERR_TYPE, "dequantize: result type %s", bnb_type_name(type));
        }
    }
    switch (type) {
    case BNB_TYPE_F32: k_dequantize<float><<<grid, threads, 0, c->stream>>>(p, (float *)out); break;
    case BNB_TYPE_F16: k_dequantize<__half><<<grid, threads, 0, c->stream>>>(p, (__half *)out); break;
    case BNB_TYPE_BF16: k_dequantize<__nv_bfloat16><<<grid, threads, 0, c->stream>>>(p, (__nv_bfloat16 *)out); break;
    default: return bnb_fail(BNB_ERR_TYPE, "dequantize: result type %s", bnb_type_name(type));
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_dequantize");
    return BNB_OK;
}

extern "C" bnb_status bnb_cuda_dequantize(bnb_cuda_ctx *c, bnb_tensor *node) {
    return launch_dequantize(c, node->src[0], node->data, node->type);
}

/* ------------------------------------------------------------------------------------------------ mul_mat */
/* One warp per weight row m: decode a[m][k] on the fly, dot with up to GEMV_MAX_N rows of b. */
template <typename Tb>
__global__ void k_gemv_q(qparts p, const Tb *__restrict__ b, int64_t ldb, float *__restrict__ out, int K, int M,
                         int N) {
    __shared__ float smap[256];
    if (p.mode == 0)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) smap[i] = p.map[i];
    else if (threadIdx.x < 16)
        smap[threadIdx.x] = c_q4vals[p.mode - 1][threadIdx.x];
    __syncthreads();
    const int m = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (m >= M) return;
    float acc[GEMV_MAX_N];
#pragma unroll
    for (int j = 0; j < GEMV_MAX_N; j++) acc[j] = 0.0f;
    const int64_t row0 = (int64_t)m * K;
    for (int k = lane; k < K; k += 32) {
        const int64_t e = row0 + k;
        uint8_t cb = p.mode == 0 ? p.codes[e] : p.codes[e / 2];
        int code = p.mode == 0 ? cb : ((e & 1) ? cb & 15 : cb >> 4);
        const float w = smap[code] * block_scale(p, e >> p.lg_block);
#pragma unroll
        for (int j = 0; j < GEMV_MAX_N; j++)
            if (j < N) acc[j] += w * bnb_cu_to_f32<Tb>(b[(int64_t)j * ldb + k]);
    }
#pragma unroll
    for (int j = 0; j < GEMV_MAX_N; j++) {
        if (j >= N) break;
        float s = acc[j];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) out[(int64_t)j * M + m] = s;
    }
}

/* b rows evenly spaced (one stride) and few enough for the fused GEMV */
static bool gemv_ok(const bnb_tensor *node) {
    const bnb_tensor *b = node->src[1];
    int64_t nt = bnb_nrows(b);
    if (nt > GEMV_MAX_N) return false;
    size_t es = bnb_type_size(b->type);
    return (b->ne[2] == 1 || b->nb[2] == b->nb[1] * (size_t)b->ne[1]) &&
           (b->ne[3] == 1 || b->nb[3] == b->nb[2] * (size_t)b->ne[2]) && b->nb[1] % es == 0;
}

/* the weight dequantized to 16-bit, described as a plain tensor for matmul.cu */
static void dequant_view(const bnb_tensor *node, bnb_tensor *fa, bnb_tensor *fnode, void *data) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    *fa = *a;
    fa->type = b->type == BNB_TYPE_BF16 ? BNB_TYPE_BF16 : BNB_TYPE_F16;
    fa->nb[0] = 2;
    for (int i = 1; i < 4; i++) fa->nb[i] = fa->nb[i - 1] * (size_t)fa->ne[i - 1];
    fa->data = data;
    fa->view_src = NULL;
    fa->buffer = NULL;
    *fnode = *node;
    fnode->src[0] = fa;
}

extern "C" size_t bnb_cuda_quant_scratch_size(const bnb_tensor *node) {
    if (node->op == BNB_OP_QUANTIZE_BLOCKWISE || node->op == BNB_OP_QUANTIZE_4BIT) {
        bnb_quant_layout L = bnb_quant_layout_of(node);
        return L.nested ? (size_t)L.nblk * 4 : 0;
    }
    if (bnb_is_mul_mat_quant(node) && !gemv_ok(node)) {
        bnb_tensor fa, fnode;
        dequant_view(node, &fa, &fnode, NULL);
        size_t wbytes = BNB_PAD((size_t)bnb_nelements(node->src[0]) * 2, 256);
        return wbytes + bnb_cuda_mul_mat_scratch_size(&fnode);
    }
    return 0;
}

extern "C" bnb_status bnb_cuda_mul_mat_quant(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    const int64_t K = a->ne[0], M = a->ne[1];
    qparts p = qparts_of(a);
    if (p.mode != 0) {
        bnb_status s = q4_tables(c);
        if (s != BNB_OK) return s;
    }
    if (gemv_ok(node)) {
        const int N = (int)bnb_nrows(b), warps = 8;
        const int64_t ldb = (int64_t)(b->nb[1] / bnb_type_size(b->type));
        const int grid = (int)((M + warps - 1) / warps);
        switch (b->type) {
        case BNB_TYPE_F32:
            k_gemv_q<float><<<grid, warps * 32, 0, c->stream>>>(p, (const float *)b->data, ldb, (float *)node->data,
                                                                (int)K, (int)M, N);
            break;
        case BNB_TYPE_F16:
            k_gemv_q<__half><<<grid, warps * 32, 0, c->stream>>>(p, (const __half *)b->data, ldb, (float *)node->data,
                                                                 (int)K, (int)M, N);
            break;
        default:
            k_gemv_q<__nv_bfloat16><<<grid, warps * 32, 0, c->stream>>>(p, (const __nv_bfloat16 *)b->data, ldb,
                                                                        (float *)node->data, (int)K, (int)M, N);
            break;
        }
        BNB_CUDA_CHECK_LAUNCH("bnb_mul_mat (quantized GEMV)");
        return BNB_OK;
    }
    /* many rows: dequantize the weight to 16-bit in scratch, then cuBLASLt */
    const size_t wbytes = BNB_PAD((size_t)bnb_nelements(a) * 2, 256);
    bnb_tensor fa, fnode;
    dequant_view(node, &fa, &fnode, c->scratch);
    if (c->scratch_size < wbytes)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_mul_mat (quantized a): scratch of %zu bytes missing", wbytes);
    bnb_status s = launch_dequantize(c, a, c->scratch, fa.type);
    if (s != BNB_OK) return s;
    bnb_cuda_ctx c2 = *c;
    c2.scratch = (char *)c->scratch + wbytes;
    c2.scratch_size = c->scratch_size - wbytes;
    return bnb_cuda_mul_mat(&c2, &fnode);
}

/* ------------------------------------------------------------------------------------------------ quantiles */
#include <cub/block/block_radix_sort.cuh>

#define QQ_THREADS 256
#define QQ_ITEMS 16 /* 4096 values a CTA, as the CPU estimator's blocks */

/* One CTA per block of 4096 values: sort in shared memory, add the block's 256 quantiles into acc (double). */
__global__ void k_quantiles(const float *__restrict__ x, int m_full, double offset, double *acc) {
    typedef cub::BlockRadixSort<float, QQ_THREADS, QQ_ITEMS> Sort;
    __shared__ typename Sort::TempStorage tmp;
    __shared__ float sorted[QQ_THREADS * QQ_ITEMS];
    float v[QQ_ITEMS];
    const int64_t base = (int64_t)blockIdx.x * QQ_THREADS * QQ_ITEMS;
#pragma unroll
    for (int j = 0; j < QQ_ITEMS; j++) {
        int r = threadIdx.x * QQ_ITEMS + j;
        v[j] = r < m_full ? x[base + r] : __int_as_float(0x7f800000); /* +inf pads sort last */
    }
    Sort(tmp).Sort(v);
#pragma unroll
    for (int j = 0; j < QQ_ITEMS; j++) sorted[threadIdx.x * QQ_ITEMS + j] = v[j];
    __syncthreads();
    const int j = threadIdx.x; /* quantile j of 256 */
    const double pos = (offset + (double)j * (1.0 - 2.0 * offset) / 255.0) * (double)(m_full - 1);
    const int lo = (int)pos;
    const double frac = pos - lo, v0 = sorted[lo], v1 = lo + 1 < m_full ? sorted[lo + 1] : v0;
    atomicAdd(&acc[j], v0 + frac * (v1 - v0));
}

extern "C" bnb_status bnb_cuda_quantiles(bnb_backend *be, const float *dev_x, int64_t n, float offset, float out[256]) {
    bnb_cuda_ctx *c = bnb_cuda_get_ctx(be);
    if (!c) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_quantiles_estimate_tensor: not a CUDA backend");
    const int64_t nblocks = n <= 4096 ? 1 : n / 4096;
    const int m_full = n <= 4096 ? (int)n : 4096;
    double *acc = NULL;
    BNB_CUDA_TRY(cudaMallocAsync((void **)&acc, 256 * sizeof(double), c->stream), "quantiles: scratch");
    BNB_CUDA_TRY(cudaMemsetAsync(acc, 0, 256 * sizeof(double), c->stream), "quantiles: clear");
    k_quantiles<<<(unsigned)nblocks, QQ_THREADS, 0, c->stream>>>(dev_x, m_full, (double)offset, acc);
    cudaError_t e = cudaGetLastError();
    double host[256];
    if (e == cudaSuccess) e = cudaMemcpyAsync(host, acc, sizeof host, cudaMemcpyDeviceToHost, c->stream);
    cudaFreeAsync(acc, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return bnb_cuda_status(e, "bnb_quantiles_estimate_tensor");
    for (int j = 0; j < 256; j++) out[j] = (float)(host[j] / (double)nblocks);
    return BNB_OK;
}
