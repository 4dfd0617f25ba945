/* Vectorisable float math for the CPU kernels (private to src/cpu). */
#ifndef BNB_CPU_VEC_MATH_H
#define BNB_CPU_VEC_MATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) in float, within ~2 ulp of expf, written branch-free so loops calling it vectorise (libm's expf does not
 * under -std=c11). Range reduction x = n ln2 + r with ln2 split in two, a degree-6 polynomial on |r| <= ln2/2, and
 * 2^n applied as two factors so results down to the subnormals and up to overflow (inf) come out right. NaN in,
 * NaN out. */
static inline float bnb_vexpf(float x) {
    x = x < -104.f ? -104.f : x; /* exp(-104) rounds to 0 */
    x = x > 89.f ? 89.f : x;     /* exp(89) overflows to inf */
    const float magic = 12582912.f; /* 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits */
    float t = x * 1.44269504088896341f + magic;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    const int32_t n = (int32_t)(tb - 0x4B400000u);
    const float nf = t - magic;
    float r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const int32_t n1 = n / 2, n2 = n - n1;
    const uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return p * s1 * s2;
}

#endif
