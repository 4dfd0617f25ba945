/* CUDA backend core: device memory pool, stream, cuBLASLt handle and workspace, node dispatch, and CUDA-graph
 * capture/replay of graphs computed repeatedly. Op kernels live in one .cu per family (see backend-cuda.h). */
#include "cuda-common.cuh"
#include "../quant/quant.h"

#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

#define WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLAS's recommendation for Hopper */

/* ------------------------------------------------------------------------------------------------ memory pool */
/* Sizes are rounded to a size class (512 B steps up to 1 MiB, then 8 steps per power of two: at most 12.5% waste);
 * freed blocks are kept per exact class and handed out again. All use is ordered on the backend's one stream, so a
 * block returned while kernels still read it can be reused safely by later work on that stream. */
typedef struct {
    void *ptr;
    size_t size; /* class size */
} pool_block;

typedef struct {
    pool_block *free_blocks;
    int n_free, cap;
    bnb_cuda_pool_stats stats;
} cuda_pool;

static size_t pool_class(size_t size) {
    if (size <= ((size_t)1 << 20)) return BNB_PAD(size ? size : 1, 512);
    size_t p = (size_t)1 << 20;
    while (p <= size / 2) p <<= 1; /* p = largest power of two <= size */
    size_t step = p / 8;
    return BNB_PAD(size, step);
}

typedef struct cuda_impl {
    bnb_cuda_ctx c;
    cuda_pool pool;
    bool capture_enabled;
    uint64_t id; /* unique per backend: per-graph state remembers which backend captured it */
    int *host_flag; /* pinned copy of the error flag */
} cuda_impl;

static uint64_t g_next_backend_id = 1;

extern "C" bnb_status bnb_cuda_status(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return BNB_OK;
    cudaGetLastError(); /* clear a sticky-free error so later calls start clean */
    return bnb_fail(BNB_ERR_BACKEND, "cuda backend: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static void pool_release_cached(cuda_pool *p) {
    for (int i = 0; i < p->n_free; i++) {
        cudaFree(p->free_blocks[i].ptr);
        p->stats.bytes_cached -= p->free_blocks[i].size;
    }
    p->n_free = 0;
}

static void *cuda_alloc(bnb_backend *be, size_t size) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    cuda_pool *p = &impl->pool;
    size_t cls = pool_class(size);
    for (int i = 0; i < p->n_free; i++) {
        if (p->free_blocks[i].size == cls) {
            void *ptr = p->free_blocks[i].ptr;
            p->free_blocks[i] = p->free_blocks[--p->n_free];
            p->stats.bytes_cached -= cls;
            p->stats.bytes_in_use += cls;
            if (p->stats.bytes_in_use > p->stats.peak_in_use) p->stats.peak_in_use = p->stats.bytes_in_use;
            p->stats.n_reused++;
            return ptr;
        }
    }
    cudaSetDevice(impl->c.device);
    void *ptr = NULL;
    cudaError_t e = cudaMalloc(&ptr, cls);
    if (e == cudaErrorMemoryAllocation && p->n_free > 0) { /* give the cache back and retry once */
        cudaGetLastError();
        pool_release_cached(p);
        e = cudaMalloc(&ptr, cls);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return bnb_fail_null(e == cudaErrorMemoryAllocation ? BNB_ERR_OOM : BNB_ERR_BACKEND,
                             "cuda backend: cudaMalloc of %zu bytes on device %d failed: %s", cls, impl->c.device,
                             cudaGetErrorString(e));
    }
    p->stats.n_cuda_malloc++;
    p->stats.bytes_in_use += cls;
    if (p->stats.bytes_in_use > p->stats.peak_in_use) p->stats.peak_in_use = p->stats.bytes_in_use;
    return ptr;
}

static void cuda_dealloc(bnb_backend *be, void *ptr, size_t size) {
    if (!ptr) return;
    cuda_impl *impl = (cuda_impl *)be->impl;
    cuda_pool *p = &impl->pool;
    size_t cls = pool_class(size);
    p->stats.bytes_in_use -= cls;
    if (p->n_free == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        pool_block *nb = (pool_block *)realloc(p->free_blocks, (size_t)cap * sizeof *nb);
        if (!nb) { /* cannot cache it: give it back to the driver */
            cudaSetDevice(impl->c.device);
            cudaFree(ptr);
            return;
        }
        p->free_blocks = nb;
        p->cap = cap;
    }
    p->free_blocks[p->n_free++] = pool_block{ptr, cls};
    p->stats.bytes_cached += cls;
}

/* ------------------------------------------------------------------------------------------------ copies */
static bnb_status cuda_copy_in(bnb_backend *be, void *dst, const void *src, size_t size) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    BNB_CUDA_TRY(cudaSetDevice(impl->c.device), "cudaSetDevice");
    /* from pageable memory this returns once the source was staged, so the caller may reuse src */
    return bnb_cuda_status(cudaMemcpyAsync(dst, src, size, cudaMemcpyHostToDevice, impl->c.stream),
                           "bnb_tensor_set: cudaMemcpyAsync host->device");
}

static bnb_status cuda_copy_out(bnb_backend *be, void *dst, const void *src, size_t size) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    BNB_CUDA_TRY(cudaSetDevice(impl->c.device), "cudaSetDevice");
    BNB_CUDA_TRY(cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToHost, impl->c.stream),
                 "bnb_tensor_get: cudaMemcpyAsync device->host");
    return bnb_cuda_status(cudaStreamSynchronize(impl->c.stream), "bnb_tensor_get: cudaStreamSynchronize");
}

static bnb_status cuda_fill(bnb_backend *be, void *dst, uint8_t value, size_t size) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    BNB_CUDA_TRY(cudaSetDevice(impl->c.device), "cudaSetDevice");
    return bnb_cuda_status(cudaMemsetAsync(dst, value, size, impl->c.stream), "bnb_buffer_clear: cudaMemsetAsync");
}

static bnb_status cuda_synchronize(bnb_backend *be) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    BNB_CUDA_TRY(cudaSetDevice(impl->c.device), "cudaSetDevice");
    return bnb_cuda_status(cudaStreamSynchronize(impl->c.stream), "cudaStreamSynchronize");
}

/* ------------------------------------------------------------------------------------------------ dispatch */
static bool too_large(const bnb_tensor *t) { return bnb_nelements(t) > BNB_CUDA_MAX_ELEMENTS; }

static bool cuda_supports(bnb_backend *be, const bnb_tensor *t) {
    (void)be;
    if (too_large(t)) return false;
    /* results are dense, except in-place nodes (view_src set: CPY into a view, optimizer updates) that write
     * through their own strides */
    if (t->op != BNB_OP_NONE && !bnb_op_is_view(t->op) && !t->view_src && !bnb_is_contiguous(t)) return false;
    for (int s = 0; s < BNB_MAX_SRC; s++)
        if (t->src[s] && too_large(t->src[s])) return false;
    if (bnb_is_mul_mat_quant(t)) return bnb_type_is_float(t->src[1]->type); /* quant.cu */
    switch (t->op) {
    case BNB_OP_NONE:
    case BNB_OP_RESHAPE:
    case BNB_OP_VIEW:
    case BNB_OP_PERMUTE:
    case BNB_OP_TRANSPOSE: return true;
    case BNB_OP_CONT: return bnb_type_is_plain(t->type) && bnb_type_is_plain(t->src[0]->type);
    case BNB_OP_ADD:
    case BNB_OP_SUB:
    case BNB_OP_MUL:
    case BNB_OP_DIV: return bnb_type_is_float(t->src[0]->type) && bnb_type_is_float(t->src[1]->type);
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
    case BNB_OP_SOFTMAX:
    case BNB_OP_RMS_NORM:
    case BNB_OP_LAYER_NORM: return bnb_type_is_float(t->src[0]->type);
    case BNB_OP_MUL_MAT: return bnb_type_is_float(t->src[0]->type) && bnb_type_is_float(t->src[1]->type);
    case BNB_OP_GET_ROWS:
    case BNB_OP_ROPE:
    case BNB_OP_CROSS_ENTROPY: return bnb_type_is_float(t->src[0]->type) && t->src[1]->type == BNB_TYPE_I32;
    case BNB_OP_CONCAT: return bnb_type_is_float(t->src[0]->type) && t->src[0]->type == t->src[1]->type;
    case BNB_OP_FILL: case BNB_OP_REPEAT: case BNB_OP_SUM_TO: case BNB_OP_ACC_GRAD: case BNB_OP_UNARY_BACK:
    case BNB_OP_MAX_ROWS_BACK: case BNB_OP_GET_ROWS_BACK: case BNB_OP_VIEW_BACK: case BNB_OP_SOFTMAX_BACK:
    case BNB_OP_RMS_NORM_BACK: case BNB_OP_LAYER_NORM_BACK: case BNB_OP_ROPE_BACK:
    case BNB_OP_CROSS_ENTROPY_BACK: return bnb_cuda_backward_supports(t); /* autodiff: backward.cu */
    case BNB_OP_OPTIMIZER_UPDATE:
    case BNB_OP_OPTIMIZER_GNORM:
    case BNB_OP_OPTIMIZER_CLIP: return bnb_cuda_optimizer_supports(t); /* optim.cu */
    case BNB_OP_CPY: return bnb_type_is_plain(t->type) && bnb_type_is_plain(t->src[0]->type); /* cpy.cu */
    case BNB_OP_INT8_VECTORWISE_QUANT:
    case BNB_OP_MATMUL_INT8:
    case BNB_OP_INT8_DEQUANTIZE: return bnb_cuda_int8_supports(t); /* int8.cu */
    case BNB_OP_QUANTIZE_BLOCKWISE:
    case BNB_OP_QUANTIZE_4BIT: return bnb_type_is_float(t->src[0]->type); /* quant.cu */
    case BNB_OP_DEQUANTIZE_BLOCKWISE:
    case BNB_OP_DEQUANTIZE_4BIT: return bnb_type_is_float(t->type);
    default: return false;
    }
}

extern "C" size_t bnb_cuda_scratch_size(const bnb_tensor *node) {
    if (bnb_is_quant_op(node->op) || bnb_is_mul_mat_quant(node)) return bnb_cuda_quant_scratch_size(node);
    switch (node->op) {
    case BNB_OP_SUM: return bnb_cuda_reduce_scratch_size(node);
    case BNB_OP_MUL_MAT: return bnb_cuda_mul_mat_scratch_size(node);
    case BNB_OP_CROSS_ENTROPY: return bnb_cuda_cross_entropy_scratch_size(node);
    case BNB_OP_INT8_VECTORWISE_QUANT:
    case BNB_OP_MATMUL_INT8: return bnb_cuda_int8_scratch_size(node); /* int8.cu */
    default: return 0;
    }
}

/* Ops whose kernels may flag bad input (graph_compute then reads the flag back and synchronises once). */
static bool may_flag(const bnb_tensor *node) {
    if (node->op == BNB_OP_QUANTIZE_BLOCKWISE || node->op == BNB_OP_QUANTIZE_4BIT) return true; /* NaN/Inf input */
    return node->op == BNB_OP_GET_ROWS || node->op == BNB_OP_CROSS_ENTROPY;
}

static bnb_status cuda_compute_node(bnb_cuda_ctx *c, bnb_tensor *t) {
    if (bnb_is_mul_mat_quant(t)) return bnb_cuda_mul_mat_quant(c, t); /* quantized weight: quant.cu */
    if (t->op == BNB_OP_QUANTIZE_BLOCKWISE || t->op == BNB_OP_QUANTIZE_4BIT) return bnb_cuda_quantize(c, t);
    if (t->op == BNB_OP_DEQUANTIZE_BLOCKWISE || t->op == BNB_OP_DEQUANTIZE_4BIT) return bnb_cuda_dequantize(c, t);
    switch (t->op) {
    case BNB_OP_RESHAPE:
    case BNB_OP_VIEW:
    case BNB_OP_PERMUTE:
    case BNB_OP_TRANSPOSE: return BNB_OK;
    case BNB_OP_CONT: return bnb_cuda_cont(c, t);
    case BNB_OP_ADD:
    case BNB_OP_SUB:
    case BNB_OP_MUL:
    case BNB_OP_DIV: return bnb_cuda_binary(c, t);
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
    case BNB_OP_TANH: return bnb_cuda_unary(c, t);
    case BNB_OP_SUM:
    case BNB_OP_SUM_ROWS:
    case BNB_OP_MEAN:
    case BNB_OP_MAX_ROWS:
    case BNB_OP_ARGMAX: return bnb_cuda_reduce(c, t);
    case BNB_OP_MUL_MAT: return bnb_cuda_mul_mat(c, t);
    case BNB_OP_GET_ROWS: return bnb_cuda_get_rows(c, t);
    case BNB_OP_CONCAT: return bnb_cuda_concat(c, t);
    case BNB_OP_SOFTMAX: return bnb_cuda_softmax(c, t);
    case BNB_OP_RMS_NORM:
    case BNB_OP_LAYER_NORM: return bnb_cuda_norm(c, t);
    case BNB_OP_ROPE: return bnb_cuda_rope(c, t);
    case BNB_OP_CROSS_ENTROPY: return bnb_cuda_cross_entropy(c, t);
    case BNB_OP_FILL: case BNB_OP_REPEAT: case BNB_OP_SUM_TO: case BNB_OP_ACC_GRAD: case BNB_OP_UNARY_BACK:
    case BNB_OP_MAX_ROWS_BACK: case BNB_OP_GET_ROWS_BACK: case BNB_OP_VIEW_BACK: case BNB_OP_SOFTMAX_BACK:
    case BNB_OP_RMS_NORM_BACK: case BNB_OP_LAYER_NORM_BACK: case BNB_OP_ROPE_BACK:
    case BNB_OP_CROSS_ENTROPY_BACK: return bnb_cuda_backward(c, t); /* autodiff: backward.cu */
    case BNB_OP_OPTIMIZER_UPDATE:
    case BNB_OP_OPTIMIZER_GNORM:
    case BNB_OP_OPTIMIZER_CLIP: return bnb_cuda_optimizer(c, t); /* optim.cu */
    case BNB_OP_CPY: return bnb_cuda_cpy(c, t);
    case BNB_OP_INT8_VECTORWISE_QUANT: return bnb_cuda_int8_vectorwise_quant(c, t); /* int8.cu */
    case BNB_OP_MATMUL_INT8: return bnb_cuda_matmul_int8(c, t);
    case BNB_OP_INT8_DEQUANTIZE: return bnb_cuda_int8_dequantize(c, t);
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not implemented", bnb_op_name(t->op));
    }
}

/* ------------------------------------------------------------------------------------------------ graph state */
/* Per-graph state: the signature of the last compute (structure, shapes, op params, data pointers), how many
 * computes in a row had it, and the CUDA graph captured for it. */
typedef struct cuda_graph_state {
    uint64_t backend_id;
    uint64_t sig;
    int n_same;
    bool capture_failed;
    cudaGraphExec_t exec;
    bnb_cuda_graph_stats stats;
} cuda_graph_state;

static void graph_state_drop_exec(cuda_graph_state *s) {
    if (s->exec) cudaGraphExecDestroy(s->exec);
    s->exec = NULL;
}

static void cuda_graph_state_free(void *p) {
    cuda_graph_state *s = (cuda_graph_state *)p;
    if (!s) return;
    graph_state_drop_exec(s);
    free(s);
}

extern "C" bnb_cuda_graph_stats bnb_cuda_get_graph_stats(const bnb_graph *g) {
    bnb_cuda_graph_stats z = {0, 0, 0};
    if (!g || g->backend_state_free != cuda_graph_state_free || !g->backend_state) return z;
    return ((const cuda_graph_state *)g->backend_state)->stats;
}

static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t mix_tensor(uint64_t h, const bnb_tensor *t) {
    h = mix(h, (uint64_t)(uintptr_t)t->data);
    h = mix(h, (uint64_t)t->type);
    for (int i = 0; i < 4; i++) {
        h = mix(h, (uint64_t)t->ne[i]);
        h = mix(h, (uint64_t)t->nb[i]);
    }
    return h;
}

static uint64_t graph_signature(const cuda_impl *impl, const bnb_graph *g) {
    uint64_t h = mix(0x243f6a8885a308d3ull, g->version);
    h = mix(h, (uint64_t)g->n_nodes);
    h = mix(h, (uint64_t)(uintptr_t)impl->c.scratch);
    h = mix(h, (uint64_t)impl->c.allow_tf32);
    for (int i = 0; i < g->n_nodes; i++) {
        const bnb_tensor *t = g->nodes[i];
        h = mix(h, (uint64_t)t->op);
        h = mix_tensor(h, t);
        for (int k = 0; k < BNB_MAX_OP_PARAMS; k += 2)
            h = mix(h, (uint64_t)(uint32_t)t->op_params[k] | ((uint64_t)(uint32_t)t->op_params[k + 1] << 32));
        for (int s = 0; s < BNB_MAX_SRC; s++)
            if (t->src[s]) h = mix_tensor(mix(h, (uint64_t)s), t->src[s]);
    }
    return h;
}

/* ------------------------------------------------------------------------------------------------ compute */
static bnb_status ensure_scratch(cuda_impl *impl, size_t need) {
    if (need <= impl->c.scratch_size) return BNB_OK;
    BNB_CUDA_TRY(cudaStreamSynchronize(impl->c.stream), "scratch growth: cudaStreamSynchronize");
    cudaFree(impl->c.scratch);
    impl->c.scratch = NULL;
    impl->c.scratch_size = 0;
    size_t size = BNB_PAD(need, (size_t)1 << 20);
    cudaError_t e = cudaMalloc(&impl->c.scratch, size);
    if (e != cudaSuccess) {
        cudaGetLastError();
        impl->c.scratch = NULL;
        return bnb_fail(BNB_ERR_OOM, "cuda backend: cannot allocate %zu bytes of scratch: %s", size,
                        cudaGetErrorString(e));
    }
    impl->c.scratch_size = size;
    return BNB_OK;
}

static bnb_status launch_nodes(cuda_impl *impl, bnb_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        bnb_tensor *t = g->nodes[i];
        if (bnb_nelements(t) == 0) continue;
        impl->c.node_index = i;
        bnb_status st = cuda_compute_node(&impl->c, t);
        if (st != BNB_OK) return st;
    }
    return BNB_OK;
}

/* Capture the launches of g into a CUDA graph. On success s->exec is set; a failure of the capture machinery itself
 * (not of a node) marks the signature as not capturable and returns BNB_OK with no exec (the caller runs plainly). */
static bnb_status capture(cuda_impl *impl, bnb_graph *g, cuda_graph_state *s) {
    cudaStream_t st = impl->c.stream;
    cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        s->capture_failed = true;
        return BNB_OK;
    }
    bnb_status node_st = launch_nodes(impl, g);
    cudaGraph_t graph = NULL;
    e = cudaStreamEndCapture(st, &graph);
    if (node_st != BNB_OK) { /* maybe an op that cannot be captured: the plain run that follows tells */
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        bnb_clear_error();
        s->capture_failed = true;
        return BNB_OK;
    }
    if (e != cudaSuccess || !graph) {
        cudaGetLastError();
        s->capture_failed = true;
        return BNB_OK;
    }
    e = cudaGraphInstantiate(&s->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        s->exec = NULL;
        s->capture_failed = true;
        return BNB_OK;
    }
    s->stats.n_captures++;
    return BNB_OK;
}

static cuda_graph_state *graph_state(cuda_impl *impl, bnb_graph *g) {
    if (g->backend_state && g->backend_state_free != cuda_graph_state_free) { /* another backend's state */
        if (g->backend_state_free) g->backend_state_free(g->backend_state);
        g->backend_state = NULL;
        g->backend_state_free = NULL;
    }
    cuda_graph_state *s = (cuda_graph_state *)g->backend_state;
    if (s && s->backend_id != impl->id) {
        graph_state_drop_exec(s);
        s->n_same = 0;
        s->sig = 0;
        s->capture_failed = false;
        s->backend_id = impl->id;
    }
    if (!s) {
        s = (cuda_graph_state *)calloc(1, sizeof *s);
        if (!s) return NULL;
        s->backend_id = impl->id;
        g->backend_state = s;
        g->backend_state_free = cuda_graph_state_free;
    }
    return s;
}

static bnb_status cuda_graph_compute(bnb_backend *be, bnb_graph *g) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    BNB_CUDA_TRY(cudaSetDevice(impl->c.device), "cudaSetDevice");
    size_t need = 0;
    bool check_flag = false;
    for (int i = 0; i < g->n_nodes; i++) {
        need = BNB_MAX(need, bnb_cuda_scratch_size(g->nodes[i]));
        check_flag = check_flag || may_flag(g->nodes[i]);
    }
    bnb_status st = ensure_scratch(impl, need);
    if (st != BNB_OK) return st;

    cuda_graph_state *s = graph_state(impl, g);
    if (!s) return bnb_fail(BNB_ERR_OOM, "cuda backend: out of host memory");
    uint64_t sig = graph_signature(impl, g);
    if (sig != s->sig || s->n_same == 0) {
        graph_state_drop_exec(s);
        s->sig = sig;
        s->n_same = 1;
        s->capture_failed = false;
    } else {
        s->n_same++;
    }
    if (!impl->capture_enabled) graph_state_drop_exec(s);

    if (check_flag)
        BNB_CUDA_TRY(cudaMemsetAsync(impl->c.err_flag, 0, 4 * sizeof(int), impl->c.stream), "error flag reset");
    if (impl->capture_enabled && !s->exec && s->n_same >= 2 && !s->capture_failed) {
        st = capture(impl, g, s);
        if (st != BNB_OK) return st;
    }
    if (s->exec) {
        BNB_CUDA_TRY(cudaGraphLaunch(s->exec, impl->c.stream), "cudaGraphLaunch");
        s->stats.n_replays++;
    } else {
        st = launch_nodes(impl, g);
        if (st != BNB_OK) return st;
        s->stats.n_plain++;
    }
    if (check_flag) {
        BNB_CUDA_TRY(cudaMemcpyAsync(impl->host_flag, impl->c.err_flag, 4 * sizeof(int), cudaMemcpyDeviceToHost,
                                     impl->c.stream),
                     "error flag read-back");
        BNB_CUDA_TRY(cudaStreamSynchronize(impl->c.stream), "cudaStreamSynchronize");
        int flag = impl->host_flag[0], value = impl->host_flag[1], where = impl->host_flag[2];
        if (flag > 0 && flag <= g->n_nodes) {
            const bnb_tensor *t = g->nodes[flag - 1];
            char sa[64];
            const bnb_tensor *src = t->src[0];
            bnb_shape_str(src, sa, sizeof sa);
            if (t->op == BNB_OP_QUANTIZE_BLOCKWISE || t->op == BNB_OP_QUANTIZE_4BIT) /* quant.cu: value = block */
                return bnb_fail(BNB_ERR_NUMERIC, "%s (node %d '%s'): block %d (from element %d) holds NaN or Inf",
                                bnb_op_name(t->op), flag - 1, t->name, value, where);
            if (t->op == BNB_OP_GET_ROWS)
                return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_get_rows (node %d '%s'): index %d at position %d is outside "
                                "[0, %lld) (a is %s)", flag - 1, t->name, value, where, (long long)src->ne[1], sa);
            return bnb_fail(BNB_ERR_INVALID_ARG, "%s (node %d '%s'): target %d of row %d is outside [0, %lld) "
                            "(logits are %s)", bnb_op_name(t->op), flag - 1, t->name, value, where,
                            (long long)src->ne[0], sa);
        }
    }
    return BNB_OK;
}

static void cuda_set_graph_capture(bnb_backend *be, bool enable) {
    ((cuda_impl *)be->impl)->capture_enabled = enable;
}

/* ------------------------------------------------------------------------------------------------ lifetime */
static void cuda_free(bnb_backend *be) {
    cuda_impl *impl = (cuda_impl *)be->impl;
    cudaSetDevice(impl->c.device);
    cudaStreamSynchronize(impl->c.stream);
    pool_release_cached(&impl->pool);
    free(impl->pool.free_blocks);
    bnb_cuda_mm_cache_free(impl->c.mm_cache);
    if (impl->c.lt) cublasLtDestroy((cublasLtHandle_t)impl->c.lt);
    cudaFree(impl->c.workspace);
    cudaFree(impl->c.scratch);
    cudaFree(impl->c.err_flag);
    cudaFreeHost(impl->host_flag);
    cudaStreamDestroy(impl->c.stream);
    free(impl);
    free(be);
}

static bnb_status cuda_memory(bnb_backend *be, size_t *in_use, size_t *peak) {
    const cuda_pool *p = &((cuda_impl *)be->impl)->pool;
    *in_use = p->stats.bytes_in_use;
    *peak = p->stats.peak_in_use;
    return BNB_OK;
}

static const bnb_backend_iface cuda_iface = {
    /* .name = */ "cuda",
    /* .is_cpu = */ false,
    /* .free = */ cuda_free,
    /* .alloc = */ cuda_alloc,
    /* .dealloc = */ cuda_dealloc,
    /* .copy_in = */ cuda_copy_in,
    /* .copy_out = */ cuda_copy_out,
    /* .fill = */ cuda_fill,
    /* .synchronize = */ cuda_synchronize,
    /* .supports = */ cuda_supports,
    /* .graph_compute = */ cuda_graph_compute,
    /* .set_graph_capture = */ cuda_set_graph_capture,
    /* .memory = */ cuda_memory,
};

extern "C" bool bnb_cuda_available(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return n > 0;
}

extern "C" bnb_backend *bnb_backend_cuda_new(int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return (bnb_backend *)bnb_fail_null(BNB_ERR_NO_DEVICE, "bnb_backend_cuda_new(%d): no usable CUDA device: %s",
                                            device, cudaGetErrorString(e));
    }
    if (n == 0)
        return (bnb_backend *)bnb_fail_null(BNB_ERR_NO_DEVICE, "bnb_backend_cuda_new(%d): no CUDA device found", device);
    if (device < 0 || device >= n)
        return (bnb_backend *)bnb_fail_null(BNB_ERR_NO_DEVICE, "bnb_backend_cuda_new(%d): device index out of range "
                                            "(%d device%s present)", device, n, n == 1 ? "" : "s");
    bnb_backend *be = (bnb_backend *)calloc(1, sizeof *be);
    cuda_impl *impl = (cuda_impl *)calloc(1, sizeof *impl);
    if (!be || !impl) {
        free(be);
        free(impl);
        return (bnb_backend *)bnb_fail_null(BNB_ERR_OOM, "bnb_backend_cuda_new: out of host memory");
    }
    be->iface = &cuda_iface;
    be->impl = impl;
    impl->c.device = device;
    impl->capture_enabled = true;
    impl->id = __atomic_fetch_add(&g_next_backend_id, 1, __ATOMIC_RELAXED);
    const char *tf32 = getenv("BNB_CUDA_TF32");
    impl->c.allow_tf32 = tf32 && tf32[0] == '1';

    const char *what = "cudaSetDevice";
    cublasStatus_t cs = CUBLAS_STATUS_SUCCESS;
    e = cudaSetDevice(device);
    if (e == cudaSuccess) {
        what = "cudaDeviceGetAttribute";
        e = cudaDeviceGetAttribute(&impl->c.n_sm, cudaDevAttrMultiProcessorCount, device);
    }
    if (e == cudaSuccess) {
        what = "cudaStreamCreate";
        e = cudaStreamCreateWithFlags(&impl->c.stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        what = "cudaMalloc (cuBLASLt workspace)";
        e = cudaMalloc(&impl->c.workspace, WORKSPACE_BYTES);
        impl->c.workspace_size = WORKSPACE_BYTES;
    }
    if (e == cudaSuccess) {
        what = "cudaMalloc (error flag)";
        e = cudaMalloc((void **)&impl->c.err_flag, 4 * sizeof(int));
    }
    if (e == cudaSuccess) {
        what = "cudaMemset (error flag)";
        e = cudaMemset(impl->c.err_flag, 0, 4 * sizeof(int));
    }
    if (e == cudaSuccess) {
        what = "cudaMallocHost";
        e = cudaMallocHost((void **)&impl->host_flag, 4 * sizeof(int));
    }
    if (e == cudaSuccess) {
        cublasLtHandle_t lt = NULL;
        cs = cublasLtCreate(&lt);
        impl->c.lt = lt;
        impl->c.mm_cache = bnb_cuda_mm_cache_new();
    }
    if (e != cudaSuccess || cs != CUBLAS_STATUS_SUCCESS || !impl->c.mm_cache) {
        if (e != cudaSuccess) {
            bnb_cuda_status(e, what);
        } else if (cs != CUBLAS_STATUS_SUCCESS) {
            bnb_fail(BNB_ERR_BACKEND, "cuda backend: cublasLtCreate failed: %s", cublasLtGetStatusString(cs));
        } else {
            bnb_fail(BNB_ERR_OOM, "cuda backend: out of host memory");
        }
        bnb_status keep = bnb_last_status();
        char msg[512];
        snprintf(msg, sizeof msg, "%s", bnb_last_error());
        if (impl->c.stream) cuda_free(be);
        else {
            free(impl);
            free(be);
        }
        return (bnb_backend *)bnb_fail_null(keep, "bnb_backend_cuda_new(%d): %s", device, msg);
    }
    return be;
}

/* ------------------------------------------------------------------------------------------------ helpers */
extern "C" bool bnb_backend_is_cuda(const bnb_backend *be) { return be && be->iface == &cuda_iface; }

extern "C" bnb_cuda_ctx *bnb_cuda_get_ctx(bnb_backend *be) {
    return bnb_backend_is_cuda(be) ? &((cuda_impl *)be->impl)->c : NULL;
}

extern "C" cudaStream_t bnb_cuda_stream(bnb_backend *be) {
    return bnb_backend_is_cuda(be) ? ((cuda_impl *)be->impl)->c.stream : NULL;
}

extern "C" void bnb_cuda_set_tf32(bnb_backend *be, bool allow) {
    if (bnb_backend_is_cuda(be)) ((cuda_impl *)be->impl)->c.allow_tf32 = allow;
}

extern "C" bnb_cuda_pool_stats bnb_cuda_get_pool_stats(bnb_backend *be) {
    bnb_cuda_pool_stats z = {0, 0, 0, 0, 0};
    return bnb_backend_is_cuda(be) ? ((cuda_impl *)be->impl)->pool.stats : z;
}
