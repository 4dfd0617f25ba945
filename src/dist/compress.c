/* 8-bit blockwise gradient compression (bitsandbytes' dynamic signed map, block 256, f32 absmax per block): the host
 * reference of what src/cuda/dist.cu does on the device, and the mode names. */
#include "dist-impl.h"

#include <math.h>
#include <string.h>

#include "bnb-impl.h"

static float g_map[256];
static int g_map_ready;

const float *bnb_dist_q8_map(void) {
    if (!g_map_ready) { /* idempotent: racing threads write the same values */
        bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, g_map);
        g_map_ready = 1;
    }
    return g_map;
}

int64_t bnb_dist_q8_blocks(int64_t n) { return n <= 0 ? 0 : (n + BNB_DIST_Q8_BLOCK - 1) / BNB_DIST_Q8_BLOCK; }
size_t bnb_dist_q8_bytes(int64_t n) { return n <= 0 ? 0 : (size_t)n + (size_t)bnb_dist_q8_blocks(n) * sizeof(float); }

bnb_status bnb_dist_q8_compress(const float *x, int64_t n, uint8_t *codes, float *absmax) {
    if (!x || !codes || !absmax || n < 0)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_q8_compress: NULL pointer or n %lld", (long long)n);
    const float *map = bnb_dist_q8_map();
    for (int64_t b = 0; b < bnb_dist_q8_blocks(n); b++) {
        int64_t lo = b * BNB_DIST_Q8_BLOCK, hi = lo + BNB_DIST_Q8_BLOCK < n ? lo + BNB_DIST_Q8_BLOCK : n;
        float a = 0;
        for (int64_t i = lo; i < hi; i++) {
            if (!isfinite(x[i]))
                return bnb_fail(BNB_ERR_NUMERIC, "bnb_dist_q8_compress: element %lld is %g", (long long)i, (double)x[i]);
            a = fmaxf(a, fabsf(x[i]));
        }
        absmax[b] = a;
        float inv = a > 0 ? 1.0f / a : 0.0f;
        for (int64_t i = lo; i < hi; i++) codes[i] = (uint8_t)bnb_dist_nearest_code(map, x[i] * inv);
    }
    return BNB_OK;
}

bnb_status bnb_dist_q8_decompress_add(const uint8_t *codes, const float *absmax, int64_t n, float *acc) {
    if (!codes || !absmax || !acc || n < 0)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_q8_decompress_add: NULL pointer or n %lld", (long long)n);
    const float *map = bnb_dist_q8_map();
    for (int64_t i = 0; i < n; i++) acc[i] += map[codes[i]] * absmax[i / BNB_DIST_Q8_BLOCK];
    return BNB_OK;
}

const char *bnb_dist_mode_name(bnb_dist_mode m) {
    switch (m) {
    case BNB_DIST_F32: return "f32";
    case BNB_DIST_BF16: return "bf16";
    case BNB_DIST_Q8: return "q8";
    }
    return "unknown";
}

bnb_status bnb_dist_mode_parse(const char *s, bnb_dist_mode *out) {
    if (!s || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_mode_parse: NULL argument");
    for (int m = 0; m <= BNB_DIST_Q8; m++)
        if (strcmp(s, bnb_dist_mode_name((bnb_dist_mode)m)) == 0) {
            *out = (bnb_dist_mode)m;
            return BNB_OK;
        }
    return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_mode_parse: '%s' (f32, bf16, q8)", s);
}
