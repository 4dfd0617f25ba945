/* CPU backend: host memory, and a node-by-node dispatcher to the kernels (OpenMP inside each kernel). */
#include "cpu-kernels.h"
#include "backward.h"
#include "../quant/quant.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int n_threads;
    void *work;
    size_t work_size;
} cpu_impl;

static void cpu_free(bnb_backend *be) {
    cpu_impl *c = be->impl;
    free(c->work);
    free(c);
    free(be);
}

static void *cpu_alloc(bnb_backend *be, size_t size) {
    (void)be;
    void *p = aligned_alloc(BNB_ALIGN, BNB_PAD(size, BNB_ALIGN));
    if (!p) return bnb_fail_null(BNB_ERR_OOM, "cpu backend: cannot allocate %zu bytes", size);
    return p;
}

static void cpu_dealloc(bnb_backend *be, void *p, size_t size) {
    (void)be;
    (void)size;
    free(p);
}

static bnb_status cpu_copy(bnb_backend *be, void *dst, const void *src, size_t size) {
    (void)be;
    memcpy(dst, src, size);
    return BNB_OK;
}

static bnb_status cpu_fill(bnb_backend *be, void *dst, uint8_t v, size_t size) {
    (void)be;
    memset(dst, v, size);
    return BNB_OK;
}

static bool cpu_supports(bnb_backend *be, const bnb_tensor *t) {
    (void)be;
    switch (t->op) {
    case BNB_OP_NONE:
    case BNB_OP_RESHAPE:
    case BNB_OP_VIEW:
    case BNB_OP_PERMUTE:
    case BNB_OP_TRANSPOSE:
    case BNB_OP_CONT:
    case BNB_OP_ADD:
    case BNB_OP_SUB:
    case BNB_OP_MUL:
    case BNB_OP_DIV:
    case BNB_OP_SCALE:
    case BNB_OP_NEG:
    case BNB_OP_ABS:
    case BNB_OP_SQR:
    case BNB_OP_SQRT:
    case BNB_OP_EXP:
    case BNB_OP_LOG:
    case BNB_OP_RELU:
    case BNB_OP_GELU:
    case BNB_OP_SILU:
    case BNB_OP_TANH:
    case BNB_OP_SUM:
    case BNB_OP_SUM_ROWS:
    case BNB_OP_MEAN:
    case BNB_OP_MAX_ROWS:
    case BNB_OP_ARGMAX:
    case BNB_OP_MUL_MAT:
    case BNB_OP_GET_ROWS:
    case BNB_OP_CONCAT:
    case BNB_OP_SOFTMAX:
    case BNB_OP_RMS_NORM:
    case BNB_OP_LAYER_NORM:
    case BNB_OP_ROPE:
    case BNB_OP_INT8_VECTORWISE_QUANT:
    case BNB_OP_MATMUL_INT8:
    case BNB_OP_INT8_DEQUANTIZE:
    case BNB_OP_CROSS_ENTROPY: return true;
    case BNB_OP_CPY: return true; /* src/cpu/cpy.c */
    case BNB_OP_FILL: case BNB_OP_REPEAT: case BNB_OP_SUM_TO: case BNB_OP_ACC_GRAD: case BNB_OP_UNARY_BACK:
    case BNB_OP_MAX_ROWS_BACK: case BNB_OP_GET_ROWS_BACK: case BNB_OP_VIEW_BACK: case BNB_OP_SOFTMAX_BACK:
    case BNB_OP_RMS_NORM_BACK: case BNB_OP_LAYER_NORM_BACK: case BNB_OP_ROPE_BACK:
    case BNB_OP_CROSS_ENTROPY_BACK: return bnb_cpu_backward_supports(t); /* autodiff: src/cpu/backward.c */
    case BNB_OP_OPTIMIZER_UPDATE:
    case BNB_OP_OPTIMIZER_GNORM:
    case BNB_OP_OPTIMIZER_CLIP: return true;
    case BNB_OP_QUANTIZE_BLOCKWISE:
    case BNB_OP_DEQUANTIZE_BLOCKWISE:
    case BNB_OP_QUANTIZE_4BIT:
    case BNB_OP_DEQUANTIZE_4BIT: return true; /* quantization: src/cpu/quant.c */
    default: return false;
    }
}

size_t bnb_cpu_work_size(const bnb_tensor *node, int n_threads) {
    if (bnb_is_quant_op(node->op) || bnb_is_mul_mat_quant(node)) return bnb_cpu_quant_work_size(node, n_threads);
    switch (node->op) {
    case BNB_OP_MUL_MAT: return bnb_cpu_mul_mat_work_size(node, n_threads);
    case BNB_OP_INT8_VECTORWISE_QUANT:
    case BNB_OP_MATMUL_INT8: return bnb_cpu_int8_work_size(node, n_threads);
    default: return 0;
    }
}

static bnb_status cpu_compute_node(const bnb_cpu_ctx *c, bnb_tensor *t) {
    if (bnb_is_mul_mat_quant(t)) return bnb_cpu_mul_mat_quant(c, t); /* quantized weight: src/cpu/quant.c */
    if (t->op == BNB_OP_QUANTIZE_BLOCKWISE || t->op == BNB_OP_QUANTIZE_4BIT) return bnb_cpu_quantize(c, t);
    if (t->op == BNB_OP_DEQUANTIZE_BLOCKWISE || t->op == BNB_OP_DEQUANTIZE_4BIT) return bnb_cpu_dequantize(c, t);
    switch (t->op) {
    case BNB_OP_RESHAPE:
    case BNB_OP_VIEW:
    case BNB_OP_PERMUTE:
    case BNB_OP_TRANSPOSE: return BNB_OK;
    case BNB_OP_CONT: return bnb_cpu_cont(c, t);
    case BNB_OP_ADD:
    case BNB_OP_SUB:
    case BNB_OP_MUL:
    case BNB_OP_DIV: return bnb_cpu_binary(c, t);
    case BNB_OP_SCALE:
    case BNB_OP_NEG:
    case BNB_OP_ABS:
    case BNB_OP_SQR:
    case BNB_OP_SQRT:
    case BNB_OP_EXP:
    case BNB_OP_LOG:
    case BNB_OP_RELU:
    case BNB_OP_GELU:
    case BNB_OP_SILU:
    case BNB_OP_TANH: return bnb_cpu_unary(c, t);
    case BNB_OP_SUM:
    case BNB_OP_SUM_ROWS:
    case BNB_OP_MEAN:
    case BNB_OP_MAX_ROWS:
    case BNB_OP_ARGMAX: return bnb_cpu_reduce(c, t);
    case BNB_OP_MUL_MAT: return bnb_cpu_mul_mat(c, t);
    case BNB_OP_GET_ROWS: return bnb_cpu_get_rows(c, t);
    case BNB_OP_CONCAT: return bnb_cpu_concat(c, t);
    case BNB_OP_SOFTMAX: return bnb_cpu_softmax(c, t);
    case BNB_OP_RMS_NORM:
    case BNB_OP_LAYER_NORM: return bnb_cpu_norm(c, t);
    case BNB_OP_ROPE: return bnb_cpu_rope(c, t);
    case BNB_OP_CROSS_ENTROPY: return bnb_cpu_cross_entropy(c, t);
    case BNB_OP_FILL: case BNB_OP_REPEAT: case BNB_OP_SUM_TO: case BNB_OP_ACC_GRAD: case BNB_OP_UNARY_BACK:
    case BNB_OP_MAX_ROWS_BACK: case BNB_OP_GET_ROWS_BACK: case BNB_OP_VIEW_BACK: case BNB_OP_SOFTMAX_BACK:
    case BNB_OP_RMS_NORM_BACK: case BNB_OP_LAYER_NORM_BACK: case BNB_OP_ROPE_BACK:
    case BNB_OP_CROSS_ENTROPY_BACK: return bnb_cpu_backward(c, t); /* autodiff: src/cpu/backward.c */
    case BNB_OP_OPTIMIZER_UPDATE:
    case BNB_OP_OPTIMIZER_GNORM:
    case BNB_OP_OPTIMIZER_CLIP: return bnb_cpu_optimizer(c, t);
    case BNB_OP_INT8_VECTORWISE_QUANT: return bnb_cpu_int8_vectorwise_quant(c, t);
    case BNB_OP_MATMUL_INT8: return bnb_cpu_matmul_int8(c, t);
    case BNB_OP_INT8_DEQUANTIZE: return bnb_cpu_int8_dequantize(c, t);
    case BNB_OP_CPY: return bnb_cpu_cpy(c, t);
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cpu backend: %s is not implemented", bnb_op_name(t->op));
    }
}

static bnb_status cpu_graph_compute(bnb_backend *be, bnb_graph *g) {
    cpu_impl *impl = be->impl;
    size_t need = 0;
    for (int i = 0; i < g->n_nodes; i++) need = BNB_MAX(need, bnb_cpu_work_size(g->nodes[i], impl->n_threads));
    if (need > impl->work_size) { /* grows once per larger graph; never inside a kernel */
        free(impl->work);
        impl->work = aligned_alloc(BNB_ALIGN, BNB_PAD(need, BNB_ALIGN));
        impl->work_size = impl->work ? need : 0;
        if (!impl->work) return bnb_fail(BNB_ERR_OOM, "cpu backend: cannot allocate %zu bytes of scratch", need);
    }
    bnb_cpu_ctx c = {impl->n_threads, impl->work, impl->work_size};
    for (int i = 0; i < g->n_nodes; i++) {
        bnb_tensor *t = g->nodes[i];
        if (bnb_nelements(t) == 0) continue;
        bnb_status st = cpu_compute_node(&c, t);
        if (st != BNB_OK) return st;
    }
    return BNB_OK;
}

static const bnb_backend_iface cpu_iface = {
    .name = "cpu",
    .is_cpu = true,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
    .fill = cpu_fill,
    .synchronize = NULL,
    .supports = cpu_supports,
    .graph_compute = cpu_graph_compute,
    .set_graph_capture = NULL,
};

bnb_backend *bnb_backend_cpu_new(int n_threads) {
    if (n_threads <= 0) {
#ifdef _OPENMP
        n_threads = omp_get_num_procs();
#else
        n_threads = 1;
#endif
    }
    bnb_backend *be = calloc(1, sizeof *be);
    cpu_impl *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return bnb_fail_null(BNB_ERR_OOM, "bnb_backend_cpu_new: out of host memory");
    }
    c->n_threads = n_threads;
    be->iface = &cpu_iface;
    be->impl = c;
    return be;
}
