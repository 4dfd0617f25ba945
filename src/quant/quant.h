/* Internal interface of the quantization code (src/quant/, src/ops/quant.c, src/cpu/quant.c, src/cuda/quant.cu).
 *
 * Storage of the quantized kinds (see bnb_type in bnb.h): bnb_quant_layout() gives the byte offset of every part of
 * a tensor's single buffer, so host code, CPU kernels and CUDA kernels address the parts the same way. */
#ifndef BNB_QUANT_H
#define BNB_QUANT_H

#include "../bnb-impl.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const float bnb_nf4_values[16];
extern const float bnb_fp4_values[16];

#ifdef __cplusplus
}
#endif
#endif
