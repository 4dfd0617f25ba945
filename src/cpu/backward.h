/* CPU kernels of the autodiff ops (src/cpu/backward.c): FILL REPEAT SUM_TO ACC_GRAD UNARY_BACK MAX_ROWS_BACK
 * GET_ROWS_BACK VIEW_BACK SOFTMAX_BACK RMS_NORM_BACK LAYER_NORM_BACK ROPE_BACK CROSS_ENTROPY_BACK. */
#ifndef BNB_CPU_BACKWARD_H
#define BNB_CPU_BACKWARD_H

#include "cpu-kernels.h"

bool bnb_cpu_backward_supports(const bnb_tensor *node);
bnb_status bnb_cpu_backward(const bnb_cpu_ctx *c, bnb_tensor *node);

#endif
