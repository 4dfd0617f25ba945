/* CPU backend: kernel entry points, one family per file. Each kernel computes `node` from node->src[...] whose data
 * are host pointers, using OpenMP with c->n_threads threads inside the kernel. Kernels never allocate: scratch comes
 * from c->work (c->work_size bytes, sized by bnb_cpu_work_size before the graph runs). Kernels must handle
 * non-contiguous sources (any nb[] strides) unless the constructor guarantees otherwise, F32/F16/BF16 inputs where
 * the constructor allows them, and empty tensors (no-op). Return BNB_OK or an error via bnb_fail. */
#ifndef BNB_CPU_KERNELS_H
#define BNB_CPU_KERNELS_H

#include "../bnb-impl.h"

typedef struct bnb_cpu_ctx {
    int n_threads;
    void *work;       /* scratch shared by all threads of one kernel */
    size_t work_size;
} bnb_cpu_ctx;

/* Scratch bytes the kernel for node needs with n_threads threads (0 for most ops). */
size_t bnb_cpu_work_size(const bnb_tensor *node, int n_threads);

/* Threads for a kernel of `work` element-operations: below BNB_CPU_PAR_MIN it runs on one thread, because an OpenMP
 * fork/join costs microseconds, and far more when the cores are shared with other processes (decode of a small model
 * runs hundreds of tiny kernels per token). */
#define BNB_CPU_PAR_MIN 32768
static inline int bnb_cpu_threads(const bnb_cpu_ctx *c, int64_t work) {
    return work < BNB_CPU_PAR_MIN || c->n_threads < 1 ? 1 : c->n_threads;
}

/* Load/store one element of a float type as f32 (for generic strided paths). */
static inline float bnb_cpu_load(const void *p, bnb_type t) {
    switch (t) {
    case BNB_TYPE_F32: return *(const float *)p;
    case BNB_TYPE_F16: return bnb_f16_to_f32(*(const uint16_t *)p);
    case BNB_TYPE_BF16: return bnb_bf16_to_f32(*(const uint16_t *)p);
    case BNB_TYPE_I32: return (float)*(const int32_t *)p;
    case BNB_TYPE_I8: return (float)*(const int8_t *)p;
    case BNB_TYPE_U8: return (float)*(const uint8_t *)p;
    default: return 0.f;
    }
}
static inline void bnb_cpu_store(void *p, bnb_type t, float v) {
    switch (t) {
    case BNB_TYPE_F32: *(float *)p = v; break;
    case BNB_TYPE_F16: *(uint16_t *)p = bnb_f32_to_f16(v); break;
    case BNB_TYPE_BF16: *(uint16_t *)p = bnb_f32_to_bf16(v); break;
    default: {
        const bnb_type_traits *tr = bnb_type_get_traits(t);
        tr->from_f32(&v, p, 1);
    }
    }
}

/* src/cpu/elementwise.c: CONT (copy/convert), ADD SUB MUL DIV, SCALE NEG ABS SQR SQRT EXP LOG RELU GELU SILU TANH */
bnb_status bnb_cpu_cont(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_binary(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_unary(const bnb_cpu_ctx *c, bnb_tensor *node);
/* src/cpu/reduce.c: SUM SUM_ROWS MEAN MAX_ROWS ARGMAX */
bnb_status bnb_cpu_reduce(const bnb_cpu_ctx *c, bnb_tensor *node);
/* src/cpu/matmul.c: MUL_MAT */
bnb_status bnb_cpu_mul_mat(const bnb_cpu_ctx *c, bnb_tensor *node);
size_t bnb_cpu_mul_mat_work_size(const bnb_tensor *node, int n_threads);
/* src/cpu/optim.c: OPTIMIZER_UPDATE OPTIMIZER_GNORM OPTIMIZER_CLIP */
bnb_status bnb_cpu_optimizer(const bnb_cpu_ctx *c, bnb_tensor *node);
/* src/cpu/nn.c: GET_ROWS CONCAT SOFTMAX RMS_NORM LAYER_NORM ROPE CROSS_ENTROPY */
bnb_status bnb_cpu_get_rows(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_concat(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_softmax(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_norm(const bnb_cpu_ctx *c, bnb_tensor *node); /* RMS_NORM and LAYER_NORM */
bnb_status bnb_cpu_rope(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_cross_entropy(const bnb_cpu_ctx *c, bnb_tensor *node);
/* src/cpu/int8.c: INT8_VECTORWISE_QUANT MATMUL_INT8 INT8_DEQUANTIZE (LLM.int8) */
bnb_status bnb_cpu_int8_vectorwise_quant(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_matmul_int8(const bnb_cpu_ctx *c, bnb_tensor *node);
bnb_status bnb_cpu_int8_dequantize(const bnb_cpu_ctx *c, bnb_tensor *node);
size_t bnb_cpu_int8_work_size(const bnb_tensor *node, int n_threads);
/* src/cpu/cpy.c: CPY (copy into an existing tensor / view) */
bnb_status bnb_cpu_cpy(const bnb_cpu_ctx *c, bnb_tensor *node);

#endif
