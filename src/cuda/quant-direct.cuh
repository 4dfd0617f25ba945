/* Deterministic 8-bit / NF4 blockwise quantize with the direct table (src/quant/quant.h bnb_qd_*): the kernel and
 * its host-built tables. Included by quant.cu only (uses its QT_* tile constants and load helpers). */
#ifndef BNB_CUDA_QUANT_DIRECT_CUH
#define BNB_CUDA_QUANT_DIRECT_CUH

/* ---- deterministic 8-bit / NF4 quantize with the direct table (quant.h bnb_qd_*): per element one multiply, one
 * clamp, a few integer ops and ONE shared load give the code in bits 16..23 of a word; four words become four bytes
 * with three byte permutes. absmax as the integer max of |x|'s bits (non-finite: bits >= 0x7f800000), reduced with
 * shuffles (groups under a warp) or REDUX + shared memory. A block whose y can leave the table's domain (absmax
 * non-finite, or 1/absmax overflows, so y is +-0, +-inf or NaN) takes the precomputed codes of those values. */
#define QD_EMIN8 104 /* 8-bit maps: buckets from 2^-23 (the dynamic maps' first code change is above it) */
#define QD_EMIN4 122 /* NF4: from 2^-5 (its smallest threshold is 0.0398) */
#define QD_N8 (2 * BNB_QD_NQ(QD_EMIN8))
#define QD_N4 (2 * BNB_QD_NQ(QD_EMIN4))
__device__ uint32_t g_qd8[4][QD_N8];
__device__ uint32_t g_qd4[QD_N4];

struct qd_special { /* code << 16 of y = NaN, +inf, -inf */
    uint32_t nan, pinf, ninf;
};

template <int EMIN> __device__ __forceinline__ uint32_t qd_word(const uint32_t *stab, float y) {
    return bnb_qd_word(stab, y, EMIN, __uint_as_float((uint32_t)EMIN << 23));
}
/* the same for y in {+-0, +-inf, NaN} */
template <int EMIN> __device__ __forceinline__ uint32_t qd_word_special(const uint32_t *stab, float y, const qd_special &sp) {
    if (y != y) return sp.nan;
    if (fabsf(y) > FLT_MAX) return y > 0.0f ? sp.pinf : sp.ninf;
    return qd_word<EMIN>(stab, y);
}

/* max of u over the G consecutive threads of a group (G = block / 16, 2..256), all threads get it; sred: 8 words,
 * the caller alternates two so one __syncthreads a tile is enough */
__device__ __forceinline__ uint32_t group_umax16(uint32_t u, int G, uint32_t *sred) {
    if (G < 32) {
        for (int off = G / 2; off > 0; off >>= 1) u = max(u, __shfl_xor_sync(0xffffffffu, u, off));
        return u;
    }
    u = __reduce_max_sync(0xffffffffu, u);
    if (G == 32) return u;
    const int warp = threadIdx.x / 32, wpg = G / 32;
    if ((threadIdx.x & 31) == 0) sred[warp] = u;
    __syncthreads();
    const int w0 = warp & ~(wpg - 1);
    uint32_t r = sred[w0];
    for (int k = 1; k < wpg; k++) r = max(r, sred[w0 + k]);
    return r;
}

/* 16 consecutive elements of type T as raw 16-byte words (loaded early, converted when coded) */
template <typename T> struct qraw16 {
    uint4 r[sizeof(T)];
};
template <typename T> __device__ __forceinline__ void load_raw16(const T *x, int64_t i0, int64_t n, qraw16<T> &q) {
    if (i0 + 16 <= n) {
#pragma unroll
        for (int h = 0; h < (int)sizeof(T); h++) q.r[h] = __ldcs(reinterpret_cast<const uint4 *>(x + i0) + h);
    } else {
        T e[16];
        for (int j = 0; j < 16; j++) e[j] = i0 + j < n ? x[i0 + j] : bnb_cu_from_f32<T>(0.0f);
        memcpy(&q, e, sizeof e);
    }
}
template <typename T> __device__ __forceinline__ void raw16_to_f32(const qraw16<T> &q, float v[16]) {
    T e[16];
    memcpy(e, &q, sizeof e);
#pragma unroll
    for (int j = 0; j < 16; j++) v[j] = bnb_cu_to_f32<T>(e[j]);
}

/* one thread's 16 elements v of a sub-tile starting at i0 (block = 1 << lg_block, group of G threads) */
template <int MODE>
__device__ __forceinline__ void qd_codes16(const float v[16], int64_t i0, int64_t n, int lg_block, int G,
                                           const uint32_t *stab, uint32_t *sred, uint8_t *__restrict__ codes,
                                           float *__restrict__ absmax_out, const qd_special &sp, int *err,
                                           int err_code) {
    constexpr int EMIN = MODE == 0 ? QD_EMIN8 : QD_EMIN4;
    uint32_t mb = 0;
#pragma unroll
    for (int j = 0; j < 16; j++) mb = max(mb, __float_as_uint(v[j]) & 0x7fffffffu);
    mb = group_umax16(mb, G, sred); /* every thread of the CTA takes part */
    if (i0 >= n) return;
    const bool bad = mb >= 0x7f800000u; /* inf or NaN in the block */
    const float m = __uint_as_float(mb);
    const int64_t b = i0 >> lg_block;
    if ((threadIdx.x & (G - 1)) == 0) {
        absmax_out[b] = bad ? __int_as_float(0x7fc00000) : m;
        if (bad) bnb_cu_report_bad(err, err_code, (int)b, (int)(b << lg_block > INT32_MAX ? INT32_MAX : b << lg_block));
    }
    const float inv = bad ? 0.0f : (m > 0.0f ? 1.0f / m : 0.0f);
    uint32_t w[16];
    if (!bad && inv <= FLT_MAX) {
#pragma unroll
        for (int j = 0; j < 16; j++) w[j] = qd_word<EMIN>(stab, v[j] * inv);
    } else {
#pragma unroll
        for (int j = 0; j < 16; j++) w[j] = qd_word_special<EMIN>(stab, v[j] * inv, sp);
    }
    if (MODE == 0) {
        uint4 o;
        o.x = __byte_perm(__byte_perm(w[0], w[1], 0x0062), __byte_perm(w[2], w[3], 0x0062), 0x5410);
        o.y = __byte_perm(__byte_perm(w[4], w[5], 0x0062), __byte_perm(w[6], w[7], 0x0062), 0x5410);
        o.z = __byte_perm(__byte_perm(w[8], w[9], 0x0062), __byte_perm(w[10], w[11], 0x0062), 0x5410);
        o.w = __byte_perm(__byte_perm(w[12], w[13], 0x0062), __byte_perm(w[14], w[15], 0x0062), 0x5410);
        if (i0 + 16 <= n) {
            __stcs(reinterpret_cast<uint4 *>(codes + i0), o);
        } else {
            uint8_t c[16];
            memcpy(c, &o, 16);
            for (int j = 0; j < 16 && i0 + j < n; j++) codes[i0 + j] = c[j];
        }
    } else {
        /* pair byte in bits 16..23: even element's code in the high nibble */
        uint32_t p[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const uint32_t lo = i0 + 2 * j + 1 < n ? w[2 * j + 1] : 0u; /* the tail's missing odd nibble: 0 */
            p[j] = ((w[2 * j] << 4) & 0x00f00000u) | (lo & 0x000f0000u);
        }
        const uint32_t w0 = __byte_perm(__byte_perm(p[0], p[1], 0x0062), __byte_perm(p[2], p[3], 0x0062), 0x5410);
        const uint32_t w1 = __byte_perm(__byte_perm(p[4], p[5], 0x0062), __byte_perm(p[6], p[7], 0x0062), 0x5410);
        store_4bit_codes16(codes, i0, n, w0, w1);
    }
}

/* Persistent CTAs walk tiles of SUB * QT_TILE elements: all SUB sub-tiles' loads are issued before the first is
 * coded. A thread owns 16 consecutive elements of each sub-tile. */
template <typename T, int MODE, int SUB>
__global__ void __launch_bounds__(QT_THREADS, SUB == 1 ? (sizeof(T) == 2 ? 8 : 6) : (sizeof(T) == 2 ? 6 : 4)) k_quantize_direct(const T *__restrict__ x, uint8_t *__restrict__ codes,
                                                                float *__restrict__ absmax_out,
                                                                const float *__restrict__ map_src,
                                                                float *__restrict__ map_dst,
                                                                const uint32_t *__restrict__ qd, qd_special sp,
                                                                int64_t n, int lg_block, int *err, int err_code) {
    constexpr int NT = MODE == 0 ? QD_N8 : QD_N4;
    __shared__ __align__(16) uint32_t stab[NT];
    __shared__ uint32_t sred[4][QT_THREADS / 32]; /* rotated: one __syncthreads a reduction is enough */
    if (MODE == 0 && blockIdx.x == 0 && map_dst)
        for (int i = threadIdx.x; i < 256; i += QT_THREADS) map_dst[i] = map_src[i];
    for (int i = threadIdx.x; i < NT / 4; i += QT_THREADS)
        reinterpret_cast<uint4 *>(stab)[i] = reinterpret_cast<const uint4 *>(qd)[i];
    __syncthreads();
    const int G = 1 << (lg_block - 4);
    const int64_t ntiles = (n + (int64_t)SUB * QT_TILE - 1) / ((int64_t)SUB * QT_TILE);
    int rot = 0;
    for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        qraw16<T> raw[SUB];
#pragma unroll
        for (int s = 0; s < SUB; s++)
            load_raw16<T>(x, (tile * SUB + s) * QT_TILE + (int64_t)threadIdx.x * QT_EPT, n, raw[s]);
#pragma unroll
        for (int s = 0; s < SUB; s++) {
            float v[16];
            raw16_to_f32<T>(raw[s], v);
            qd_codes16<MODE>(v, (tile * SUB + s) * QT_TILE + (int64_t)threadIdx.x * QT_EPT, n, lg_block, G, stab,
                             sred[rot], codes, absmax_out, sp, err, err_code);
            rot = (rot + 1) & 3;
        }
    }
}

/* direct tables of the built-in maps (0..3) and NF4 (4), built and checked on the host once per device */
static bool g_qd_ready[64], g_qd_ok[64][5];
static qd_special g_qd_sp[64][5];

static bnb_status qd_tables_device(bnb_cuda_ctx *c, const uint32_t **t8, const uint32_t **t4) {
    int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
    if (!g_qd_ready[dev]) {
        static uint32_t h8[4][QD_N8], h4[QD_N4];
        for (int k = 0; k < 5; k++) {
            float code[256];
            const void *arg = NULL;
            bnb_qd_codefn f = bnb_qd_code_nf4;
            if (k < 4) {
                bnb_qmap_fill((bnb_qmap)k, code);
                arg = code;
                f = bnb_qd_code_map;
            }
            g_qd_ok[dev][k] = bnb_qd_build(f, arg, k < 4 ? QD_EMIN8 : QD_EMIN4, k < 4 ? h8[k] : h4);
            g_qd_sp[dev][k].nan = (uint32_t)f(arg, NAN) << 16;
            g_qd_sp[dev][k].pinf = (uint32_t)f(arg, INFINITY) << 16;
            g_qd_sp[dev][k].ninf = (uint32_t)f(arg, -INFINITY) << 16;
        }
        BNB_CUDA_TRY(cudaMemcpyToSymbol(g_qd8, h8, sizeof h8), "quantize: direct table upload");
        BNB_CUDA_TRY(cudaMemcpyToSymbol(g_qd4, h4, sizeof h4), "quantize: direct table upload");
        g_qd_ready[dev] = true;
    }
    void *p = NULL;
    BNB_CUDA_TRY(cudaGetSymbolAddress(&p, g_qd8), "quantize: direct table address");
    *t8 = (const uint32_t *)p;
    BNB_CUDA_TRY(cudaGetSymbolAddress(&p, g_qd4), "quantize: direct table address");
    *t4 = (const uint32_t *)p;
    return BNB_OK;
}

#endif
