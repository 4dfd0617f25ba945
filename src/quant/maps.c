/* Code maps of the quantized types (spec section 1), built the way bitsandbytes builds them so the float32 values
 * agree bit for bit: the dynamic (exponent + linear fraction) map, the linear map, NF4 / FP4 and the data-driven
 * quantile map. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>

/* torch.linspace(start, end, steps) in float32 as bitsandbytes' maps were made with it: a float32 step, the first
 * half counted up from start and the second half down from end, each point rounded once (a fused multiply-add).
 * Checked against bitsandbytes' signed dynamic map, all 256 values (tests/test-quant.c). */
static void linspace_f32(float *out, float start, float end, int steps) {
    if (steps == 1) {
        out[0] = start;
        return;
    }
    const float step = (end - start) / (float)(steps - 1);
    const int halfway = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Append the n-1 midpoints of n float32 points evenly on [0.1, 1], times scale (and their negatives if signed). */
static int add_midpoints(float *data, int count, int n, float scale, bool is_signed) {
    float bounds[257];
    linspace_f32(bounds, 0.1f, 1.0f, n);
    for (int j = 0; j + 1 < n; j++) {
        float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
        data[count++] = scale * mean;
        if (is_signed) data[count++] = -scale * mean;
    }
    return count;
}

bnb_status bnb_qmap_dynamic(float out[256], bool is_signed, int max_exponent_bits, int total_bits) {
    if (!out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_dynamic: out is NULL");
    if (total_bits < 2 || total_bits > 8 || max_exponent_bits < 1 || max_exponent_bits > total_bits - 1)
        return bnb_fail(BNB_ERR_INVALID_ARG,
                        "bnb_qmap_dynamic: total_bits %d / max_exponent_bits %d out of range (2..8, 1..total-1)",
                        total_bits, max_exponent_bits);
    const int s = total_bits - 1; /* non-sign bits */
    float data[600];
    int count = 0;
    int i = 0;
    float scale = 1.0f;
    for (i = 0; i < max_exponent_bits; i++) {
        int n = (1 << (i + s - max_exponent_bits + (is_signed ? 0 : 1))) + 1;
        /* 10**k: an int for k >= 0, a Python float (rounded to float32 by the tensor product) otherwise */
        scale = (float)pow(10.0, (double)(i - (max_exponent_bits - 1)));
        count = add_midpoints(data, count, n, scale, is_signed);
    }
    const int additional = (1 << (s - max_exponent_bits)) - 1;
    if (additional > 0) count = add_midpoints(data, count, additional + 1, scale, is_signed); /* last i's scale */
    data[count++] = 0.0f;
    data[count++] = 1.0f;
    if (count > 256) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_dynamic: %d values do not fit 256", count);
    while (count < 256) data[count++] = 0.0f;
    qsort(data, 256, sizeof(float), cmp_float);
    memcpy(out, data, 256 * sizeof(float));
    return BNB_OK;
}

bnb_status bnb_qmap_linear(float out[256], bool is_signed) {
    if (!out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_linear: out is NULL");
    if (!is_signed) {
        linspace_f32(out, 0.0f, 1.0f, 256);
        return BNB_OK;
    }
    /* 255 values on [-1, 1]; a zero goes between the first 127 and the rest */
    float v[255];
    linspace_f32(v, -1.0f, 1.0f, 255);
    memcpy(out, v, 127 * sizeof(float));
    out[127] = 0.0f;
    memcpy(out + 128, v + 127, 128 * sizeof(float));
    return BNB_OK;
}

const float bnb_nf4_values[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
    1.0f,
};

/* FP4 (e2m1, bitsandbytes' layout): bit 3 is the sign, the low 3 bits index the magnitude. */
const float bnb_fp4_values[16] = {
    0.0f, 0.005208333333f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f,
    -0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f,
};

bnb_status bnb_qmap_fill(bnb_qmap kind, float out[256]) {
    if (!out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_fill: out is NULL");
    switch (kind) {
    case BNB_QMAP_DYNAMIC_SIGNED: return bnb_qmap_dynamic(out, true, 7, 8);
    case BNB_QMAP_DYNAMIC_UNSIGNED: return bnb_qmap_dynamic(out, false, 7, 8);
    case BNB_QMAP_LINEAR_SIGNED: return bnb_qmap_linear(out, true);
    case BNB_QMAP_LINEAR_UNSIGNED: return bnb_qmap_linear(out, false);
    case BNB_QMAP_NF4:
    case BNB_QMAP_FP4:
        memset(out, 0, 256 * sizeof(float));
        memcpy(out, kind == BNB_QMAP_NF4 ? bnb_nf4_values : bnb_fp4_values, 16 * sizeof(float));
        return BNB_OK;
    case BNB_QMAP_QUANTILE:
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_fill: the quantile map needs data (use bnb_qmap_quantile)");
    default: return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_qmap_fill: unknown map kind %d", (int)kind);
    }
}
