/* CUDA backend: internal interface shared by the backend core (backend-cuda.cu) and the op families (one .cu each).
 * Includable from C (benches, tests) and C++/CUDA. Not installed.
 *
 * How an op family plugs in: write `bnb_status bnb_cuda_<family>(bnb_cuda_ctx *c, bnb_tensor *node)` that enqueues
 * kernels on c->stream (never synchronises, never allocates device memory: scratch comes from c->scratch, sized by
 * bnb_cuda_scratch_size before the graph runs), checks every launch with BNB_CUDA_CHECK_LAUNCH (cuda-common.cuh),
 * and add it to the two switches in backend-cuda.cu (cuda_supports and cuda_compute_node). Kernels that can detect
 * bad input (out-of-range indices...) call bnb_cu_report_bad (cuda-common.cuh); graph_compute reports it. */
#ifndef BNB_BACKEND_CUDA_H
#define BNB_BACKEND_CUDA_H

#include "../bnb-impl.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bnb_cuda_mm_cache; /* cuBLASLt descriptors + algorithm per GEMM shape (matmul.cu) */

typedef struct bnb_cuda_ctx {
    int device;
    cudaStream_t stream;
    int n_sm;                    /* multiprocessors */
    void *lt;                    /* cublasLtHandle_t */
    void *workspace;             /* cuBLASLt workspace (preallocated: keeps GEMMs capturable) */
    size_t workspace_size;
    void *scratch;               /* per-node scratch, c->scratch_size >= bnb_cuda_scratch_size(node) */
    size_t scratch_size;
    int *err_flag;               /* device int[4]: {node index + 1 of the first bad input (0: none), bad value,
                                    its position}; reset before each compute */
    int node_index;              /* index of the node being launched */
    bool allow_tf32;             /* F32 GEMMs may use TF32 tensor cores (default off) */
    struct bnb_cuda_mm_cache *mm_cache;
} bnb_cuda_ctx;

/* Largest element count a CUDA kernel accepts (element indices are 32-bit inside kernels). */
#define BNB_CUDA_MAX_ELEMENTS ((int64_t)INT32_MAX)

/* ---- backend helpers (backend-cuda.cu) */
cudaStream_t bnb_cuda_stream(bnb_backend *be);   /* the backend's stream (NULL if be is not a CUDA backend) */
bnb_cuda_ctx *bnb_cuda_get_ctx(bnb_backend *be); /* NULL if be is not a CUDA backend */
bool bnb_backend_is_cuda(const bnb_backend *be);
void bnb_cuda_set_tf32(bnb_backend *be, bool allow); /* also: env BNB_CUDA_TF32=1 at creation */
/* Memory-pool counters, for tests and benches. */
typedef struct bnb_cuda_pool_stats {
    size_t bytes_in_use;    /* handed out and not yet returned */
    size_t bytes_cached;    /* returned, kept for reuse */
    size_t peak_in_use;     /* high-water mark of bytes_in_use */
    uint64_t n_cuda_malloc; /* cudaMalloc calls made by the pool */
    uint64_t n_reused;      /* allocations served from the cache */
} bnb_cuda_pool_stats;
bnb_cuda_pool_stats bnb_cuda_get_pool_stats(bnb_backend *be);
/* Capture counters of a graph computed on CUDA (all 0 if it never ran there). */
typedef struct bnb_cuda_graph_stats {
    uint64_t n_plain;    /* computes run as plain launches */
    uint64_t n_captures; /* CUDA-graph captures made */
    uint64_t n_replays;  /* computes run by replaying a captured graph (the capturing compute included) */
} bnb_cuda_graph_stats;
bnb_cuda_graph_stats bnb_cuda_get_graph_stats(const bnb_graph *g);

/* Scratch bytes node needs on CUDA (0 for most ops). */
size_t bnb_cuda_scratch_size(const bnb_tensor *node);
/* Turn a failed CUDA call into a bnb status (message: "<what>: <CUDA error string>"). BNB_OK when e is success. */
bnb_status bnb_cuda_status(cudaError_t e, const char *what);

/* ---- op families (one .cu each) */
/* elementwise.cu: CONT (copy/convert), ADD SUB MUL DIV, SCALE NEG ABS SQR SQRT EXP LOG RELU GELU SILU TANH */
bnb_status bnb_cuda_cont(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_binary(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_unary(bnb_cuda_ctx *c, bnb_tensor *node);
/* reduce.cu: SUM SUM_ROWS MEAN MAX_ROWS ARGMAX */
bnb_status bnb_cuda_reduce(bnb_cuda_ctx *c, bnb_tensor *node);
size_t bnb_cuda_reduce_scratch_size(const bnb_tensor *node);
/* matmul.cu: MUL_MAT through cuBLASLt */
bnb_status bnb_cuda_mul_mat(bnb_cuda_ctx *c, bnb_tensor *node);
size_t bnb_cuda_mul_mat_scratch_size(const bnb_tensor *node);
struct bnb_cuda_mm_cache *bnb_cuda_mm_cache_new(void);
void bnb_cuda_mm_cache_free(struct bnb_cuda_mm_cache *cache);
/* cpy.cu: CPY (copy into an existing tensor / view) */
bnb_status bnb_cuda_cpy(bnb_cuda_ctx *c, bnb_tensor *node);
/* nn.cu: GET_ROWS CONCAT SOFTMAX RMS_NORM LAYER_NORM ROPE CROSS_ENTROPY */
bnb_status bnb_cuda_get_rows(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_concat(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_softmax(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_norm(bnb_cuda_ctx *c, bnb_tensor *node); /* RMS_NORM and LAYER_NORM */
bnb_status bnb_cuda_rope(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_cross_entropy(bnb_cuda_ctx *c, bnb_tensor *node);
size_t bnb_cuda_cross_entropy_scratch_size(const bnb_tensor *node);
/* int8.cu: INT8_VECTORWISE_QUANT MATMUL_INT8 INT8_DEQUANTIZE (LLM.int8) */
bnb_status bnb_cuda_int8_vectorwise_quant(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_matmul_int8(bnb_cuda_ctx *c, bnb_tensor *node);
bnb_status bnb_cuda_int8_dequantize(bnb_cuda_ctx *c, bnb_tensor *node);
size_t bnb_cuda_int8_scratch_size(const bnb_tensor *node);
bool bnb_cuda_int8_supports(const bnb_tensor *node);
/* backward.cu: the autodiff ops FILL REPEAT SUM_TO ACC_GRAD UNARY_BACK MAX_ROWS_BACK GET_ROWS_BACK VIEW_BACK
 * SOFTMAX_BACK RMS_NORM_BACK LAYER_NORM_BACK ROPE_BACK CROSS_ENTROPY_BACK */
bool bnb_cuda_backward_supports(const bnb_tensor *node);
/* optim.cu: OPTIMIZER_UPDATE (multi-tensor groups) OPTIMIZER_GNORM OPTIMIZER_CLIP */
bnb_status bnb_cuda_optimizer(bnb_cuda_ctx *c, bnb_tensor *node);
bool bnb_cuda_optimizer_supports(const bnb_tensor *node);
bnb_status bnb_cuda_backward(bnb_cuda_ctx *c, bnb_tensor *node);

#ifdef __cplusplus
}
#endif
#endif
