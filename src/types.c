/* Type traits: names, sizes, conversions, and the storage rules of the quantized kinds. */
#include "bnb-impl.h"

#include <math.h>

/* ---- half precision (round to nearest even, NaN kept quiet, Inf/overflow -> Inf) */
uint16_t bnb_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++; /* carry into exponent is correct rounding */
    return (uint16_t)half;
}

float bnb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t bnb_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float bnb_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- row conversions */
static void f32_to_f32(const void *s, float *d, int64_t n) { memcpy(d, s, (size_t)n * 4); }
static void f32_from_f32(const float *s, void *d, int64_t n) { memcpy(d, s, (size_t)n * 4); }
static void f16_to_f32(const void *s, float *d, int64_t n) {
    const uint16_t *h = s;
    for (int64_t i = 0; i < n; i++) d[i] = bnb_f16_to_f32(h[i]);
}
static void f16_from_f32(const float *s, void *d, int64_t n) {
    uint16_t *h = d;
    for (int64_t i = 0; i < n; i++) h[i] = bnb_f32_to_f16(s[i]);
}
static void bf16_to_f32(const void *s, float *d, int64_t n) {
    const uint16_t *h = s;
    for (int64_t i = 0; i < n; i++) d[i] = bnb_bf16_to_f32(h[i]);
}
static void bf16_from_f32(const float *s, void *d, int64_t n) {
    uint16_t *h = d;
    for (int64_t i = 0; i < n; i++) h[i] = bnb_f32_to_bf16(s[i]);
}
/* Integer types: from_f32 rounds half to even and saturates (NaN -> 0). */
static void i8_to_f32(const void *s, float *d, int64_t n) {
    const int8_t *p = s;
    for (int64_t i = 0; i < n; i++) d[i] = p[i];
}
static void i8_from_f32(const float *s, void *d, int64_t n) {
    int8_t *p = d;
    for (int64_t i = 0; i < n; i++) {
        float v = isnan(s[i]) ? 0.f : nearbyintf(s[i]);
        p[i] = (int8_t)(v < -128.f ? -128.f : v > 127.f ? 127.f : v);
    }
}
static void u8_to_f32(const void *s, float *d, int64_t n) {
    const uint8_t *p = s;
    for (int64_t i = 0; i < n; i++) d[i] = p[i];
}
static void u8_from_f32(const float *s, void *d, int64_t n) {
    uint8_t *p = d;
    for (int64_t i = 0; i < n; i++) {
        float v = isnan(s[i]) ? 0.f : nearbyintf(s[i]);
        p[i] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
    }
}
static void i32_to_f32(const void *s, float *d, int64_t n) {
    const int32_t *p = s;
    for (int64_t i = 0; i < n; i++) d[i] = (float)p[i];
}
static void i32_from_f32(const float *s, void *d, int64_t n) {
    int32_t *p = d;
    for (int64_t i = 0; i < n; i++) {
        double v = isnan(s[i]) ? 0.0 : nearbyint((double)s[i]);
        p[i] = (int32_t)(v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : v);
    }
}

static const bnb_type_traits g_traits[BNB_TYPE_COUNT] = {
    [BNB_TYPE_F32] = {"f32", 4, true, false, f32_to_f32, f32_from_f32},
    [BNB_TYPE_F16] = {"f16", 2, true, false, f16_to_f32, f16_from_f32},
    [BNB_TYPE_BF16] = {"bf16", 2, true, false, bf16_to_f32, bf16_from_f32},
    [BNB_TYPE_I8] = {"i8", 1, false, false, i8_to_f32, i8_from_f32},
    [BNB_TYPE_U8] = {"u8", 1, false, false, u8_to_f32, u8_from_f32},
    [BNB_TYPE_I32] = {"i32", 4, false, false, i32_to_f32, i32_from_f32},
    [BNB_TYPE_Q8_BLOCK] = {"q8_block", 0, false, true, NULL, NULL},
    [BNB_TYPE_Q4_NF4] = {"q4_nf4", 0, false, true, NULL, NULL},
    [BNB_TYPE_Q4_FP4] = {"q4_fp4", 0, false, true, NULL, NULL},
    [BNB_TYPE_I8_ROW] = {"i8_row", 0, false, true, NULL, NULL},
    [BNB_TYPE_OUTLIERS] = {"outliers", 0, false, true, NULL, NULL},
    [BNB_TYPE_OPT8] = {"opt8", 0, false, true, NULL, NULL},
};

const bnb_type_traits *bnb_type_get_traits(bnb_type t) {
    if ((unsigned)t >= BNB_TYPE_COUNT) return NULL;
    return &g_traits[t];
}

const char *bnb_type_name(bnb_type t) {
    if ((unsigned)t >= BNB_TYPE_COUNT) return "invalid";
    return g_traits[t].name;
}

size_t bnb_type_size(bnb_type t) {
    if ((unsigned)t >= BNB_TYPE_COUNT) return 0;
    return g_traits[t].type_size;
}

/* Bytes of the nested-absmax section for nblk block scales (see bnb.h). */
static size_t nested_absmax_bytes(int64_t nblk) {
    int64_t nblk2 = (nblk + 255) / 256;
    return BNB_PAD((size_t)nblk, 16) + BNB_PAD((size_t)nblk2 * 4 + 4, 16) + 256 * 4;
}

size_t bnb_type_nbytes(bnb_type type, int64_t n, int64_t ne0, bnb_quant_params qp) {
    if ((unsigned)type >= BNB_TYPE_COUNT || n < 0) return 0;
    if (!g_traits[type].is_quantized) return (size_t)n * g_traits[type].type_size;
    int64_t block = qp.block > 0 ? qp.block : 1;
    int64_t nblk = (n + block - 1) / block;
    size_t absmax = qp.nested ? nested_absmax_bytes(nblk) : (size_t)nblk * 4;
    switch (type) {
    case BNB_TYPE_Q8_BLOCK:
    case BNB_TYPE_OPT8: return BNB_PAD((size_t)n, 16) + BNB_PAD(absmax, 16) + 256 * 4;
    case BNB_TYPE_Q4_NF4:
    case BNB_TYPE_Q4_FP4: return BNB_PAD((size_t)(n + 1) / 2, 16) + absmax;
    case BNB_TYPE_I8_ROW: {
        int64_t rows = ne0 > 0 ? n / ne0 : 0;
        size_t base = BNB_PAD((size_t)n, 16) + (size_t)rows * 4;
        if (qp.threshold > 0) /* activations with outlier detection carry an OUTLIERS section (bnb.h) */
            base = BNB_PAD(base, 16) + bnb_type_nbytes(BNB_TYPE_OUTLIERS, n, ne0, qp);
        return base;
    }
    case BNB_TYPE_OUTLIERS: {
        int64_t cap = ne0, rows = ne0 > 0 ? n / ne0 : 0;
        return BNB_PAD((size_t)(cap + 1) * 4, 16) + (size_t)(cap * rows) * 2;
    }
    default: return 0;
    }
}
