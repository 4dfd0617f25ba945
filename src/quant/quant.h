/* Internal interface of the quantization code (src/quant/, src/ops/quant.c, src/cpu/quant.c, src/cuda/quant.cu).
 *
 * Storage of the quantized kinds (see bnb_type in bnb.h): bnb_quant_layout_of() gives the byte offset of every part
 * of a tensor's single buffer, so host code, CPU kernels and CUDA kernels address the parts the same way.
 * The per-element rules (nearest code, 4-bit encode, random numbers) are inline functions here, compiled both as C
 * and as CUDA device code, so both backends run the same arithmetic. */
#ifndef BNB_QUANT_H
#define BNB_QUANT_H

#include "../bnb-impl.h"

#include <math.h>

#ifdef __CUDACC__
#define BNB_QHD __host__ __device__ __forceinline__
#else
#define BNB_QHD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

extern const float bnb_nf4_values[16];
extern const float bnb_fp4_values[16];

/* Block sizes allowed for 8-bit (64..4096) and 4-bit (32..4096): powers of two. */
static inline bool bnb_quant_block_ok(int64_t block, bool four_bit) {
    return block >= (four_bit ? 32 : 64) && block <= 4096 && (block & (block - 1)) == 0;
}
static inline bool bnb_quant_is_blockwise(bnb_type t) {
    return t == BNB_TYPE_Q8_BLOCK || t == BNB_TYPE_OPT8 || t == BNB_TYPE_Q4_NF4 || t == BNB_TYPE_Q4_FP4;
}

#define BNB_QNONE ((size_t)-1)
#define BNB_NESTED_BLOCK 256

typedef struct bnb_quant_layout {
    int64_t n;        /* logical elements */
    int64_t block;    /* elements per absmax block */
    int64_t nblk;     /* absmax blocks */
    int64_t nblk2;    /* nested: blocks of absmax values (block 256) */
    bool four_bit;
    bool nested;
    size_t codes;        /* u8 codes (4-bit: two a byte, element 2k in the high nibble) */
    size_t absmax;       /* f32[nblk] (not nested), else BNB_QNONE */
    size_t absmax_codes; /* nested: u8[nblk] */
    size_t absmax2;      /* nested: f32[nblk2] */
    size_t mean;         /* nested: f32 mean added back to the dequantized absmax */
    size_t map;          /* 8-bit: f32[256] code map, else BNB_QNONE */
    size_t map2;         /* nested: f32[256] dynamic signed map of the absmax codes */
    size_t total;        /* == bnb_type_nbytes */
} bnb_quant_layout;

/* Layout of a blockwise kind (Q8_BLOCK, OPT8, Q4_NF4, Q4_FP4) of n elements. */
static inline bnb_quant_layout bnb_quant_layout_make(bnb_type type, int64_t n, int64_t block, bool nested) {
    bnb_quant_layout L;
    memset(&L, 0, sizeof L);
    L.n = n;
    L.block = block > 0 ? block : 1;
    L.nblk = (n + L.block - 1) / L.block;
    L.nblk2 = nested ? (L.nblk + BNB_NESTED_BLOCK - 1) / BNB_NESTED_BLOCK : 0;
    L.four_bit = type == BNB_TYPE_Q4_NF4 || type == BNB_TYPE_Q4_FP4;
    L.nested = nested;
    L.codes = 0;
    size_t off = BNB_PAD((size_t)(L.four_bit ? (n + 1) / 2 : n), 16);
    L.absmax = L.absmax_codes = L.absmax2 = L.mean = L.map = L.map2 = BNB_QNONE;
    if (!nested) {
        L.absmax = off;
        off += L.four_bit ? (size_t)L.nblk * 4 : BNB_PAD((size_t)L.nblk * 4, 16);
        if (!L.four_bit) {
            L.map = off;
            off += 1024;
        }
    } else {
        L.absmax_codes = off;
        off += BNB_PAD((size_t)L.nblk, 16);
        L.absmax2 = off;
        L.mean = off + (size_t)L.nblk2 * 4;
        off += BNB_PAD((size_t)L.nblk2 * 4 + 4, 16);
        if (!L.four_bit) {
            L.map = off;
            off += 1024;
        }
        L.map2 = off;
        off += 1024;
    }
    L.total = off;
    return L;
}
static inline bnb_quant_layout bnb_quant_layout_of(const bnb_tensor *t) {
    return bnb_quant_layout_make(t->type, bnb_nelements(t), t->quant.block, t->quant.nested != 0);
}

/* ---------------------------------------------------------------- per-element rules (spec section 2) */
/* Nearest code of y in the sorted 256-entry map: bitsandbytes' search (7 halving steps from pivot 127, then the
 * nearer of the pivot and its neighbour by the midpoint; a tie goes to the pivot). With u >= 0 (stochastic), the
 * upper of the two bracketing codes is taken with probability (y - lower) / (upper - lower), u uniform in [0, 1). */
BNB_QHD int bnb_qsearch(const float *code, float y, float u, bool stochastic) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (y > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (!stochastic) {
        if (y > val) return y > (upper + val) * 0.5f ? upper_pivot : pivot;
        return y < (lower + val) * 0.5f ? lower_pivot : pivot;
    }
    /* stochastic: bracket [lo, hi] around y */
    int lo = pivot, hi = upper_pivot;
    float vlo = val, vhi = upper;
    if (!(y > val)) {
        lo = lower_pivot;
        hi = pivot;
        vlo = lower;
        vhi = val;
    }
    if (!(vhi > vlo)) return pivot;
    float p_up = (y - vlo) / (vhi - vlo);
    return u < p_up ? hi : lo;
}

/* ---- Table-guided search (CUDA quantize kernels; same results as bnb_qsearch / bnb_nf4_encode).
 * Both rules reduce to k(y) = #{i : y > r[i]} over a nondecreasing split list r: for bnb_qsearch on a nondecreasing
 * map, r = the 127 odd codes (the tree's pivots), the walk ends at pivot 2k with lower_pivot max(2k-1, 0) and
 * upper_pivot 2k+1; for NF4, r = the 15 thresholds and k is the code. A bucket table indexed by the float's sign,
 * exponent and top BNB_QT_MBITS mantissa bits holds k at the bucket's lowest value (or BNB_QT_SLOW when the bucket
 * spans more than BNB_QT_STEPS splits, or y >= 2, NaN, inf); BNB_QT_STEPS steps "k += y > r[k]" then give k(y). */
#define BNB_QT_MBITS 5
#define BNB_QT_EMIN 103 /* bucket 0: |y| < 2^-24 */
#define BNB_QT_EMAX 127 /* last regular octave [1, 2); the bucket above is slow */
#define BNB_QT_NMAG ((((BNB_QT_EMAX) - (BNB_QT_EMIN) + 1) << BNB_QT_MBITS) + 2)
#define BNB_QT_NEG 832   /* negative half's offset: 64 mod 128 bytes, so +y and -y land in different banks */
#define BNB_QT_BYTES 1664 /* BNB_QT_NEG + BNB_QT_NMAG, padded to 16 */
#define BNB_QT_STEPS 2
#define BNB_QT_SLOW 0xFF

BNB_QHD int bnb_qt_index(float y) {
    uint32_t a;
    memcpy(&a, &y, 4);
    int q = (int)((a & 0x7fffffffu) >> (23 - BNB_QT_MBITS)) - (BNB_QT_EMIN << BNB_QT_MBITS) + 1;
    q = q < 0 ? 0 : q;
    q = q > BNB_QT_NMAG - 1 ? BNB_QT_NMAG - 1 : q;
    return (a >> 31) ? q + BNB_QT_NEG : q;
}

static inline float bnb_qt_bits_f(uint32_t a) {
    float f;
    memcpy(&f, &a, 4);
    return f;
}
static inline int bnb_qt_count(const float *r, int nr, float y) {
    int k = 0;
    for (int i = 0; i < nr; i++) k += y > r[i];
    return k;
}

/* Fill tab[BNB_QT_BYTES] for the split list r[nr] (nr <= 254). False (table all slow) if r is not nondecreasing
 * or holds a NaN: the caller then must use the plain search. */
static inline bool bnb_qt_build(const float *r, int nr, uint8_t *tab) {
    memset(tab, BNB_QT_SLOW, BNB_QT_BYTES);
    for (int i = 0; i < nr; i++)
        if (r[i] != r[i] || (i > 0 && !(r[i] >= r[i - 1]))) return false;
    for (int q = 0; q < BNB_QT_NMAG - 1; q++) {
        uint32_t lo = q == 0 ? 0u : ((uint32_t)(q - 1 + (BNB_QT_EMIN << BNB_QT_MBITS)) << (23 - BNB_QT_MBITS));
        uint32_t hi = q == 0 ? ((uint32_t)BNB_QT_EMIN << 23) - 1u : lo + (1u << (23 - BNB_QT_MBITS)) - 1u;
        float a = bnb_qt_bits_f(lo), b = bnb_qt_bits_f(hi);
        int kp0 = bnb_qt_count(r, nr, a), kp1 = bnb_qt_count(r, nr, b);   /* [a, b] */
        int kn0 = bnb_qt_count(r, nr, -b), kn1 = bnb_qt_count(r, nr, -a); /* [-b, -a] */
        tab[q] = kp1 - kp0 <= BNB_QT_STEPS ? (uint8_t)kp0 : BNB_QT_SLOW;
        tab[BNB_QT_NEG + q] = kn1 - kn0 <= BNB_QT_STEPS ? (uint8_t)kn0 : BNB_QT_SLOW;
    }
    return true;
}

/* The 8-bit search's tables for a map: split list (odd codes, +inf guard at 127) and per k the values
 * {code[max(2k-1,0)], code[2k], code[2k+1], 0}. */
static inline bool bnb_qt_build_map(const float *code, uint8_t *tab, float rodd[128], float win[128][4]) {
    for (int k = 0; k < 128; k++) {
        rodd[k] = k < 127 ? code[2 * k + 1] : INFINITY;
        win[k][0] = code[k > 0 ? 2 * k - 1 : 0];
        win[k][1] = code[2 * k];
        win[k][2] = code[2 * k + 1];
        win[k][3] = 0.0f;
    }
    for (int i = 1; i < 256; i++)
        if (!(code[i] >= code[i - 1])) {
            memset(tab, BNB_QT_SLOW, BNB_QT_BYTES);
            return false;
        }
    return bnb_qt_build(rodd, 127, tab);
}

/* bnb_qsearch's final step from k (the count of odd codes below y) and its window w (see above) */
BNB_QHD int bnb_qt_finish(float y, int k, const float w[4], float u, bool stochastic) {
    const int piv = 2 * k, lo = piv > 0 ? piv - 1 : 0, hi = piv + 1;
    const float lower = w[0], val = w[1], upper = w[2];
    if (!stochastic) {
        if (y > val) return y > (upper + val) * 0.5f ? hi : piv;
        return y < (lower + val) * 0.5f ? lo : piv;
    }
    int l = piv, h = hi;
    float vlo = val, vhi = upper;
    if (!(y > val)) {
        l = lo;
        h = piv;
        vlo = lower;
        vhi = val;
    }
    if (!(vhi > vlo)) return piv;
    float p_up = (y - vlo) / (vhi - vlo);
    return u < p_up ? h : l;
}

/* ---- Direct table (CUDA deterministic quantize; same codes as bnb_qsearch / bnb_nf4_encode, checked on the host).
 * Buckets are the top 16 bits of |y| (bf16 truncation: sign dropped, exponent, 7 mantissa bits) from 2^(emin-127)
 * up to 2, one table half per sign: nq = (128 - emin) << 7 entries each. |y| below 2^(emin-127) is clamped up to it.
 * Within a bucket the code is monotone in |y| and changes at most once (the builder checks), so the entry E gives
 * the code in bits 16..23 of (E + bits(|y|)) ^ sign_mask (sign_mask = 0 or ~0): positive side
 * E = (c0 << 16) + 0x10000 - thr - (q << 16), negative side E = -(c0 << 16) - thr - (q << 16), where c0 is the code at
 * the bucket's low end, thr the low 16 bits of the first |y| whose code differs (0x10000: none) and q = bits >> 16.
 * Only for 0 <= |y| < 2 (the caller sends NaN, inf and |y| >= 2 elsewhere). */
#define BNB_QD_NQ(emin) ((128 - (emin)) << 7)

BNB_QHD uint32_t bnb_qd_word(const uint32_t *tab, float y, int emin, float tiny /* 2^(emin-127) */) {
    const float ym = fmaxf(fabsf(y), tiny);
    uint32_t m, a;
    memcpy(&m, &ym, 4);
    memcpy(&a, &y, 4);
    const uint32_t sg = (uint32_t)((int32_t)a >> 31);
    const uint32_t e = tab[(m >> 16) - ((uint32_t)emin << 7) + (sg & (uint32_t)BNB_QD_NQ(emin))];
    return (e + m) ^ sg;
}

typedef int (*bnb_qd_codefn)(const void *arg, float y);

/* Fill tab[2 * BNB_QD_NQ(emin)] for the monotone code function f. False when a bucket holds two code changes, the
 * code is not constant below 2^(emin-127) on a side, or a code is outside 0..255. */
static inline bool bnb_qd_build(bnb_qd_codefn f, const void *arg, int emin, uint32_t *tab) {
    const int nq = BNB_QD_NQ(emin);
    for (int side = 0; side < 2; side++) {
        const float sgn = side ? -1.0f : 1.0f;
        const uint32_t q0 = (uint32_t)emin << 7;
        /* below the first bucket: the code of +-0, the smallest subnormal and 2^(emin-127) must agree */
        const int cz = f(arg, sgn * 0.0f);
        if (cz != f(arg, sgn * bnb_qt_bits_f(1u)) || cz != f(arg, sgn * bnb_qt_bits_f(q0 << 16))) return false;
        for (int i = 0; i < nq; i++) {
            const uint32_t q = q0 + (uint32_t)i, lo = q << 16;
            const int c0 = f(arg, sgn * bnb_qt_bits_f(lo)), c1 = f(arg, sgn * bnb_qt_bits_f(lo | 0xffffu));
            const int step = side ? c0 - c1 : c1 - c0;
            if (c0 < 0 || c0 > 255 || c1 < 0 || c1 > 255 || step < 0 || step > 1) return false;
            uint32_t thr = 0x10000u;
            if (step) { /* first low-16 value whose code is not c0: in (0, 0xffff] */
                uint32_t a = 0, b = 0xffffu;
                while (b - a > 1) {
                    const uint32_t mid = (a + b) / 2;
                    if (f(arg, sgn * bnb_qt_bits_f(lo | mid)) == c0) a = mid;
                    else b = mid;
                }
                thr = b;
            }
            tab[side * nq + i] = side ? 0u - ((uint32_t)c0 << 16) - thr - lo
                                      : ((uint32_t)c0 << 16) + 0x10000u - thr - lo;
        }
    }
    return true;
}

/* NF4 thresholds, as in bnb_nf4_encode */
#define BNB_NF4_THRESHOLDS                                                                                           \
    {-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,                        \
     -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,                     \
     0.1202552504837513f,  0.2035212516784668f,   0.2920137718319893f,   0.3893125355243683f,                        \
     0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,   INFINITY}

/* NF4: nearest of the 16 values (thresholds = midpoints; a value exactly on one goes down). */
BNB_QHD int bnb_nf4_encode(float y) {
    int c = 0;
    c += y > -0.8480964004993439f;
    c += y > -0.6106329262256622f;
    c += y > -0.4599952697753906f;
    c += y > -0.33967943489551544f;
    c += y > -0.23460740596055984f;
    c += y > -0.13791173323988914f;
    c += y > -0.045525018125772476f;
    c += y > 0.03979014977812767f;
    c += y > 0.1202552504837513f;
    c += y > 0.2035212516784668f;
    c += y > 0.2920137718319893f;
    c += y > 0.3893125355243683f;
    c += y > 0.5016634166240692f;
    c += y > 0.6427869200706482f;
    c += y > 0.8614784181118011f;
    return c;
}

/* FP4 (e2m1): sign bit 3 (set for y < 0), magnitude by thresholds between the sorted magnitudes. */
BNB_QHD int bnb_fp4_encode(float y) {
    int sign = y < 0.0f ? 8 : 0;
    float a = fabsf(y);
    int m;
    if (a > 0.29166667f) {
        if (a > 0.583333f) m = a > 0.8333333f ? 3 : 2;
        else m = a > 0.4166667f ? 5 : 4;
    } else {
        if (a > 0.0859375f) m = a > 0.20833333f ? 7 : 6;
        else m = a > 0.00260417f ? 1 : 0;
    }
    return m + sign;
}

/* code functions for bnb_qd_build: the 8-bit search over a map (arg: 256 floats) and NF4 */
static inline int bnb_qd_code_map(const void *arg, float y) { return bnb_qsearch((const float *)arg, y, 0.0f, false); }
static inline int bnb_qd_code_nf4(const void *arg, float y) {
    (void)arg;
    return bnb_nf4_encode(y);
}

/* Counter-based random number for stochastic rounding: uniform in [0, 1) from (seed, element index), the same on
 * every backend and thread count (a 64-bit mix of the pair, top 24 bits). */
BNB_QHD float bnb_qrand(uint32_t seed, int64_t i) {
    uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull + ((uint64_t)seed << 32 | 0x5851F42Du);
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(uint32_t)(z >> 40) * (1.0f / 16777216.0f);
}

/* ---------------------------------------------------------------- host helpers (src/quant/host.c, quantile.c) */
/* Reciprocal used to normalise a block (0 for an all-zero block, so y = 0 and the codes dequantize to exact 0). */
static inline float bnb_qinv(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

/* Host quantize / dequantize of n contiguous values of type `src_type` into / from storage laid out as L.
 * map: the 256-entry code map (8-bit). Fail with BNB_ERR_NUMERIC naming the block on non-finite input. */
bnb_status bnb_quant_host_quantize(const bnb_quant_layout *L, bnb_type qtype, const float *map, const void *src,
                                   bnb_type src_type, void *storage, bool stochastic, uint32_t seed, int n_threads,
                                   float *absmax_scratch);
bnb_status bnb_quant_host_dequantize(const bnb_quant_layout *L, bnb_type qtype, const void *storage, void *dst,
                                     bnb_type dst_type, int n_threads,
                                     float *absmax_scratch);
/* Decode elements [start, start+len) of one block (scale a) into out; map: 256 values (8-bit) or 16 (4-bit). */
void bnb_quant_dequant_span(bool four_bit, const float *map, const uint8_t *codes, float a, int64_t start, int64_t len,
                            float *out);
/* Nested absmax (spec section 2): quantize absmax[nblk] into L's nested parts / restore it. */
void bnb_quant_nest_absmax(const bnb_quant_layout *L, const float *absmax, uint8_t *storage);
void bnb_quant_unnest_absmax(const bnb_quant_layout *L, const uint8_t *storage, float *absmax);

/* ---------------------------------------------------------------- CPU backend kernels (src/cpu/quant.c) */
struct bnb_cpu_ctx;
bnb_status bnb_cpu_quantize(const struct bnb_cpu_ctx *c, bnb_tensor *node);   /* QUANTIZE_BLOCKWISE, QUANTIZE_4BIT */
bnb_status bnb_cpu_dequantize(const struct bnb_cpu_ctx *c, bnb_tensor *node); /* DEQUANTIZE_BLOCKWISE / _4BIT */
/* MUL_MAT with a blockwise quantized a */
bnb_status bnb_cpu_mul_mat_quant(const struct bnb_cpu_ctx *c, bnb_tensor *node);
size_t bnb_cpu_quant_work_size(const bnb_tensor *node, int n_threads);
/* ---------------------------------------------------------------- CUDA backend kernels (src/cuda/quant.cu) */
struct bnb_cuda_ctx;
bnb_status bnb_cuda_quantize(struct bnb_cuda_ctx *c, bnb_tensor *node);   /* QUANTIZE_BLOCKWISE, QUANTIZE_4BIT */
bnb_status bnb_cuda_dequantize(struct bnb_cuda_ctx *c, bnb_tensor *node); /* DEQUANTIZE_BLOCKWISE / _4BIT */
bnb_status bnb_cuda_mul_mat_quant(struct bnb_cuda_ctx *c, bnb_tensor *node);
size_t bnb_cuda_quant_scratch_size(const bnb_tensor *node);

static inline bool bnb_is_quant_op(bnb_op op) {
    return op == BNB_OP_QUANTIZE_BLOCKWISE || op == BNB_OP_DEQUANTIZE_BLOCKWISE || op == BNB_OP_QUANTIZE_4BIT ||
           op == BNB_OP_DEQUANTIZE_4BIT;
}
static inline bool bnb_is_mul_mat_quant(const bnb_tensor *t) {
    return t->op == BNB_OP_MUL_MAT && t->src[0] && bnb_quant_is_blockwise(t->src[0]->type);
}

#ifdef __cplusplus
}
#endif
#endif
