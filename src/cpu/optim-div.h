/* Correctly rounded divisions without the divider for the CPU optimizers (included by optim.c only). */
#ifndef BNB_CPU_OPTIM_DIV_H
#define BNB_CPU_OPTIM_DIV_H

/* Divisions by a constant (AdEMAMix's m1 / c1 and sqrt(v) / c2) and the table re-quantizer's y = v / absmax by
 * reciprocal + residual step (the same correctly rounded results): on for Intel hosts, off elsewhere; BNB_OPT8_DIV=0
 * forces it on, =1 off. On Zen 5 the division
 * is cheap (~2.5 cycles per 16 lanes) and the extra multiply-adds measured slower (AdEMAMix8 1 thread 8M 15.7 -> 16.1
 * ms); on Intel a 16-lane division occupies the divider ~10 cycles (AdEMAMix8: 6 divisions and a square root per 16
 * elements): with the table re-quantizer measured faster on the GPU host's Xeon (see q8tab_default). */
static bool rcp_div_default(void) {
    const char *e = getenv("BNB_OPT8_DIV");
    if (e && *e) return strcmp(e, "0") == 0;
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_is("intel"); /* on with the table re-quantizer (q8tab_default) */
#else
    return false;
#endif
}

#ifdef OPT8_AVX512
/* a / c, correctly rounded, for a constant c in [2^-20, 2^20] with rc = RN(1/c): q = a rc, then one residual step
 * (Markstein, as the CUDA kernel's y = v / absmax; exact without underflow or overflow; checked against the division
 * on 1.6e9 random and edge-mantissa pairs, and 1.6e9 more of the re-quantizer's y = v / absmax). Lanes outside
 * 2^-90 <= |a| <= 2^90 (zero, tiny, huge, NaN) take the division. It keeps the divider free: on Intel a 16-lane
 * division occupies it ~10 cycles, on Zen 5 ~2.5. */
static inline __m512 div_by_const(__m512 a, __m512 c, __m512 rc) {
    const __m512 q = _mm512_mul_ps(a, rc);
    __m512 y = _mm512_fmadd_ps(_mm512_fnmadd_ps(q, c, a), rc, q);
    const __m512i t = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)),
                                       _mm512_set1_epi32(0x12800000)); /* |a|'s bits - bits(2^-90) */
    const __mmask16 out = _mm512_cmpgt_epu32_mask(t, _mm512_set1_epi32(0x6c800000 - 0x12800000)); /* 2^90 */
    if (out) y = _mm512_mask_div_ps(y, out, a, c);
    return y;
}
#endif

#endif
