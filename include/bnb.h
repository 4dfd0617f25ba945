/* bnb: a tensor compute-graph engine with bitsandbytes' quantization built in.
 *
 * THE public header. Conventions (ggml-like):
 *  - A tensor has up to 4 dims. ne[0] is the fastest-varying (a "row" has ne[0] elements), nb[i] are strides in
 *    bytes. A 2-D tensor [rows x cols] is created as bnb_new_tensor_2d(ctx, type, cols, rows).
 *  - Op constructors check shapes and types and return NULL (bnb_last_error() says why); they compute nothing.
 *  - bnb_graph_compute(backend, graph) runs a graph on the CPU or CUDA backend.
 *  - Every call that can fail returns bnb_status (or NULL) and sets a thread-local message.
 */
#ifndef BNB_H
#define BNB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(BNB_SHARED)
#  ifdef BNB_BUILD
#    define BNB_API __declspec(dllexport)
#  else
#    define BNB_API __declspec(dllimport)
#  endif
#else
#  define BNB_API __attribute__((visibility("default")))
#endif

#define BNB_VERSION_MAJOR 0
#define BNB_VERSION_MINOR 1
#define BNB_VERSION_PATCH 0

#define BNB_MAX_DIMS 4
#define BNB_MAX_SRC 6
#define BNB_MAX_OP_PARAMS 16 /* int32 slots */
#define BNB_MAX_NAME 64

/* ---------------------------------------------------------------------------------------------- status, errors */
typedef enum bnb_status {
    BNB_OK = 0,
    BNB_ERR_INVALID_ARG,  /* NULL pointer, out-of-range value */
    BNB_ERR_SHAPE,        /* shapes do not fit the op */
    BNB_ERR_TYPE,         /* type not supported by the op or the backend */
    BNB_ERR_OOM,          /* host or device allocation failed, or a context arena is full */
    BNB_ERR_BACKEND,      /* a backend call failed (CUDA error text in the message) */
    BNB_ERR_NO_DEVICE,    /* no GPU / no driver */
    BNB_ERR_UNSUPPORTED,  /* op or feature not available on this backend/build */
    BNB_ERR_GRAPH,        /* cycle, too many nodes, missing data */
    BNB_ERR_IO,           /* file errors, corrupt or truncated files */
    BNB_ERR_NUMERIC,      /* NaN/Inf where finite values are required */
} bnb_status;

BNB_API const char *bnb_last_error(void);            /* message of the last failure on this thread ("" if none) */
BNB_API const char *bnb_status_name(bnb_status s);   /* "BNB_ERR_SHAPE" ... */
BNB_API void bnb_clear_error(void);
BNB_API bnb_status bnb_last_status(void);             /* status of the last failure on this thread (BNB_OK if none) */

/* ---------------------------------------------------------------------------------------------- types */
typedef enum bnb_type {
    BNB_TYPE_F32 = 0,
    BNB_TYPE_F16,
    BNB_TYPE_BF16,
    BNB_TYPE_I8,
    BNB_TYPE_U8,
    BNB_TYPE_I32,
    /* Quantized kinds. Each tensor of these types holds ALL its parts in one buffer (see bnb_tensor_nbytes and the
     * storage rules below); ne[] counts the logical (dequantized) elements.
     *
     * Q8_BLOCK  blockwise 8-bit: [n u8 codes][pad16][nblk f32 absmax][256 f32 code map]
     *           nested: [n u8 codes][pad16][nblk u8 absmax codes][pad16][nblk2 f32 absmax2][f32 mean][pad16]
     *                   [256 f32 code map][256 f32 dynamic signed map]           (nblk2 = ceil(nblk/256))
     * Q4_NF4 / Q4_FP4  two codes a byte, element 2k in the HIGH nibble: [ceil(n/2) u8][pad16][nblk f32 absmax]
     *           nested as Q8_BLOCK (absmax codes, absmax2, mean, dynamic map).
     * I8_ROW    row-wise int8 (LLM.int8 weights/activations): [n i8 values][pad16][rows f32 row absmax (SCB)]
 *           and, when quant.threshold > 0 (activations quantized with outlier detection), then [pad16] and an
 *           OUTLIERS section (below) for cap = ne[0] columns: the outlier columns found, their f16 values; their
 *           int8 values are 0 (see bnb_int8_vectorwise_quant).
     * OUTLIERS  outlier columns of a [rows x cols] matrix, capacity cap = ne[0] columns:
     *           [i32 count][i32 col index x cap][pad16][f16 values: cap x rows, column-major]
     * OPT8      8-bit optimizer state (blockwise, block 256): [n u8 codes][pad16][nblk f32 absmax][256 f32 map]
     *           (map: dynamic signed for first moments, dynamic unsigned for second moments) */
    BNB_TYPE_Q8_BLOCK,
    BNB_TYPE_Q4_NF4,
    BNB_TYPE_Q4_FP4,
    BNB_TYPE_I8_ROW,
    BNB_TYPE_OUTLIERS,
    BNB_TYPE_OPT8,
    BNB_TYPE_COUNT
} bnb_type;

typedef struct bnb_type_traits {
    const char *name;
    size_t type_size;     /* bytes per element for plain types; 0 for quantized kinds (use bnb_tensor_nbytes) */
    bool is_float;        /* F32/F16/BF16 */
    bool is_quantized;    /* composite storage, see above */
    /* plain types only (NULL otherwise): conversions of n contiguous elements */
    void (*to_f32)(const void *src, float *dst, int64_t n);
    void (*from_f32)(const float *src, void *dst, int64_t n);
} bnb_type_traits;

BNB_API const bnb_type_traits *bnb_type_get_traits(bnb_type t); /* NULL for an invalid type */
BNB_API const char *bnb_type_name(bnb_type t);

/* Code-map kinds for the quantized types (spec section 1). */
typedef enum bnb_qmap {
    BNB_QMAP_DYNAMIC_SIGNED = 0,
    BNB_QMAP_DYNAMIC_UNSIGNED,
    BNB_QMAP_LINEAR_SIGNED,
    BNB_QMAP_LINEAR_UNSIGNED,
    BNB_QMAP_QUANTILE,
    BNB_QMAP_NF4,
    BNB_QMAP_FP4,
} bnb_qmap;

/* Fill out[256] with the code map of `kind` (spec section 1): DYNAMIC_* with bitsandbytes' defaults
 * (max_exponent_bits 7, total_bits 8), LINEAR_*, NF4/FP4 (16 values in out[0..15], the rest 0).
 * QUANTILE needs data: use bnb_qmap_quantile. Implemented by the quantization code (src/quant/). */
BNB_API bnb_status bnb_qmap_fill(bnb_qmap kind, float out[256]);

/* Parameters of a quantized tensor (stored with the tensor). */
typedef struct bnb_quant_params {
    int32_t block;       /* elements per absmax block (blockwise kinds), 0 otherwise */
    int32_t map;         /* bnb_qmap */
    int32_t nested;      /* absmax itself quantized */
    float threshold;     /* I8_ROW / OUTLIERS: outlier threshold (0 = none) */
} bnb_quant_params;

/* half-precision helpers (round-to-nearest-even) */
BNB_API uint16_t bnb_f32_to_f16(float f);
BNB_API float bnb_f16_to_f32(uint16_t h);
BNB_API uint16_t bnb_f32_to_bf16(float f);
BNB_API float bnb_bf16_to_f32(uint16_t h);

/* ---------------------------------------------------------------------------------------------- context */
typedef struct bnb_context bnb_context;

typedef struct bnb_context_params {
    size_t mem_size;  /* arena bytes for tensor metadata (and host data unless no_alloc); 0 = 16 MiB */
    bool no_alloc;    /* true: tensors get no host data; a backend buffer provides it (bnb_backend_alloc_tensors) */
} bnb_context_params;

BNB_API bnb_context *bnb_context_new(bnb_context_params params);
BNB_API void bnb_context_free(bnb_context *ctx); /* also releases its graphs' buffers; call before freeing backends */
BNB_API size_t bnb_context_used(const bnb_context *ctx);

/* ---------------------------------------------------------------------------------------------- tensors */
typedef enum bnb_op {
    BNB_OP_NONE = 0, /* leaf */
    /* views: share data with src[0] */
    BNB_OP_RESHAPE,
    BNB_OP_VIEW,
    BNB_OP_PERMUTE,
    BNB_OP_TRANSPOSE,
    /* copies */
    BNB_OP_CONT, /* contiguous copy, also type conversion (bnb_cast) */
    /* elementwise binary, b broadcast to a */
    BNB_OP_ADD,
    BNB_OP_SUB,
    BNB_OP_MUL,
    BNB_OP_DIV,
    /* elementwise unary */
    BNB_OP_SCALE,
    BNB_OP_NEG,
    BNB_OP_ABS,
    BNB_OP_SQR,
    BNB_OP_SQRT,
    BNB_OP_EXP,
    BNB_OP_LOG,
    BNB_OP_RELU,
    BNB_OP_GELU,
    BNB_OP_SILU,
    BNB_OP_TANH,
    /* reductions */
    BNB_OP_SUM,      /* all elements -> 1 */
    BNB_OP_SUM_ROWS, /* over ne[0] -> [1, ne1, ne2, ne3] */
    BNB_OP_MEAN,     /* over ne[0] -> [1, ne1, ne2, ne3] */
    BNB_OP_MAX_ROWS, /* over ne[0] -> [1, ...] */
    BNB_OP_ARGMAX,   /* over ne[0] -> I32 [1, ...] */
    /* linear algebra */
    BNB_OP_MUL_MAT,
    /* indexing */
    BNB_OP_GET_ROWS,
    BNB_OP_CONCAT,
    /* nn */
    BNB_OP_SOFTMAX,
    BNB_OP_RMS_NORM,
    BNB_OP_LAYER_NORM,
    BNB_OP_ROPE,
    BNB_OP_CROSS_ENTROPY,
    /* quantization (issue: quantization) */
    BNB_OP_QUANTIZE_BLOCKWISE,   /* float -> Q8_BLOCK */
    BNB_OP_DEQUANTIZE_BLOCKWISE, /* Q8_BLOCK -> float */
    BNB_OP_QUANTIZE_4BIT,        /* float -> Q4_NF4 / Q4_FP4 */
    BNB_OP_DEQUANTIZE_4BIT,      /* Q4_* -> float */
    /* LLM.int8 (issue: LLM.int8) */
    BNB_OP_INT8_VECTORWISE_QUANT, /* float -> I8_ROW (+ OUTLIERS) */
    BNB_OP_MATMUL_INT8,           /* x · Wᵀ with the mixed decomposition */
    /* optimizers (issue: autodiff + optimizers) */
    BNB_OP_OPTIMIZER_UPDATE,      /* fused in-place update of a parameter and its states */
    /* backward ops and later families append here, before BNB_OP_COUNT */
    /* autodiff (issue: autodiff; constructors in src/ops/backward.c) */
    BNB_OP_FILL,                /* constant: every element = value; no sources */
    BNB_OP_REPEAT,              /* broadcast a (dims equal or 1) to a larger shape */
    BNB_OP_SUM_TO,              /* sum a over the dims where the target shape has 1 (inverse of broadcasting) */
    BNB_OP_ACC_GRAD,            /* in place: accumulator += gradient (gradient accumulation over computes) */
    BNB_OP_UNARY_BACK,          /* dy * f'(x) for a unary op f (op_params[0] = the forward op) */
    BNB_OP_MAX_ROWS_BACK,       /* dy to the (first) argmax of each row */
    BNB_OP_GET_ROWS_BACK,       /* scatter-add of row gradients into the table */
    BNB_OP_VIEW_BACK,           /* scatter-add of a strided view's gradient into its source's shape */
    BNB_OP_SOFTMAX_BACK,
    BNB_OP_RMS_NORM_BACK,
    BNB_OP_LAYER_NORM_BACK,
    BNB_OP_ROPE_BACK,           /* inverse rotation */
    BNB_OP_CROSS_ENTROPY_BACK,
    /* LLM.int8 (src/ops/int8.c) */
    BNB_OP_INT8_DEQUANTIZE,     /* I8_ROW -> F32 (outlier columns restored) */
    /* optimizers (src/ops/optim.c) */
    BNB_OP_OPTIMIZER_GNORM,     /* F32 [1]: sum of squares of a gradient (+ an optional running sum) */
    BNB_OP_OPTIMIZER_CLIP,      /* F32 [1]: gradient scale of percentile clipping or of the global norm clip */
    /* model layer (src/ops/cpy.c) */
    BNB_OP_CPY,                 /* copy src into an existing tensor or view (KV cache writes), in place */
    BNB_OP_COUNT
} bnb_op;

enum bnb_tensor_flag {
    BNB_FLAG_PARAM = 1 << 0,  /* trainable parameter */
    BNB_FLAG_INPUT = 1 << 1,  /* set by the user before compute */
    BNB_FLAG_OUTPUT = 1 << 2, /* read after compute: never reused by the graph allocator */
    BNB_FLAG_LOSS = 1 << 3,
};

typedef struct bnb_buffer bnb_buffer;
typedef struct bnb_tensor bnb_tensor;

struct bnb_tensor {
    bnb_type type;
    int64_t ne[BNB_MAX_DIMS]; /* elements per dim */
    size_t nb[BNB_MAX_DIMS];  /* stride in bytes per dim */
    bnb_op op;
    int32_t op_params[BNB_MAX_OP_PARAMS];
    bnb_tensor *src[BNB_MAX_SRC];
    uint32_t flags;
    char name[BNB_MAX_NAME];
    bnb_quant_params quant;   /* quantized kinds only */
    void *data;               /* host pointer (CPU) or device pointer (CUDA); NULL until allocated */
    bnb_buffer *buffer;       /* the backend buffer holding data (NULL for host arena data) */
    bnb_tensor *view_src;     /* for views: the tensor whose memory is shared */
    size_t view_offs;         /* byte offset into view_src */
    bnb_tensor *grad;         /* gradient, once a backward graph exists */
    bnb_context *ctx;         /* owner */
    void *extra;              /* backend-private */
};

BNB_API bnb_tensor *bnb_new_tensor(bnb_context *ctx, bnb_type type, int n_dims, const int64_t *ne);
BNB_API bnb_tensor *bnb_new_tensor_1d(bnb_context *ctx, bnb_type type, int64_t ne0);
BNB_API bnb_tensor *bnb_new_tensor_2d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1);
BNB_API bnb_tensor *bnb_new_tensor_3d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1, int64_t ne2);
BNB_API bnb_tensor *bnb_new_tensor_4d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1, int64_t ne2,
                                      int64_t ne3);
/* A quantized tensor of logical shape ne with its quantization parameters (block size, map...). */
BNB_API bnb_tensor *bnb_new_tensor_quant(bnb_context *ctx, bnb_type type, int n_dims, const int64_t *ne,
                                         bnb_quant_params qp);
BNB_API bnb_tensor *bnb_dup_tensor(bnb_context *ctx, const bnb_tensor *t); /* same type/shape, no data */

BNB_API bnb_tensor *bnb_set_name(bnb_tensor *t, const char *name);
BNB_API bnb_tensor *bnb_set_flags(bnb_tensor *t, uint32_t flags); /* ORs flags in */
BNB_API bnb_tensor *bnb_set_param(bnb_tensor *t);
BNB_API bnb_tensor *bnb_set_input(bnb_tensor *t);
BNB_API bnb_tensor *bnb_set_output(bnb_tensor *t);

BNB_API int64_t bnb_nelements(const bnb_tensor *t);
BNB_API int64_t bnb_nrows(const bnb_tensor *t);  /* ne1*ne2*ne3 */
BNB_API size_t bnb_nbytes(const bnb_tensor *t);  /* bytes spanned by the data (all parts for quantized kinds) */
BNB_API int bnb_n_dims(const bnb_tensor *t);     /* highest dim with ne > 1, at least 1 */
BNB_API bool bnb_is_contiguous(const bnb_tensor *t);
BNB_API bool bnb_same_shape(const bnb_tensor *a, const bnb_tensor *b);
BNB_API size_t bnb_type_nbytes(bnb_type type, int64_t n_elements, int64_t ne0, bnb_quant_params qp);

/* Copy between host memory and a tensor (wherever it lives), converting F32 <-> the tensor's type.
 * n is the element count and must equal bnb_nelements(t); the tensor must be contiguous and allocated.
 * For quantized kinds: set quantizes (round-to-nearest), get dequantizes (available from the quantization issue). */
BNB_API bnb_status bnb_tensor_set_f32(bnb_tensor *t, const float *src, int64_t n);
BNB_API bnb_status bnb_tensor_get_f32(const bnb_tensor *t, float *dst, int64_t n);
/* Raw byte copies (no conversion): offset and size in bytes within bnb_nbytes(t). */
BNB_API bnb_status bnb_tensor_set(bnb_tensor *t, const void *src, size_t offset, size_t size);
BNB_API bnb_status bnb_tensor_get(const bnb_tensor *t, void *dst, size_t offset, size_t size);

/* ---------------------------------------------------------------------------------------------- views */
BNB_API bnb_tensor *bnb_reshape_1d(bnb_context *ctx, bnb_tensor *a, int64_t ne0);
BNB_API bnb_tensor *bnb_reshape_2d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1);
BNB_API bnb_tensor *bnb_reshape_3d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2);
BNB_API bnb_tensor *bnb_reshape_4d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2,
                                   int64_t ne3);
/* General strided view: n_dims sizes ne[], strides nb[] (bytes, nb[0] is the element size), byte offset. */
BNB_API bnb_tensor *bnb_view(bnb_context *ctx, bnb_tensor *a, int n_dims, const int64_t *ne, const size_t *nb,
                             size_t offset);
/* Slice of dim `dim`: elements [start, start+len). */
BNB_API bnb_tensor *bnb_slice(bnb_context *ctx, bnb_tensor *a, int dim, int64_t start, int64_t len);
/* permute: source dim i goes to position axes[i] (ggml semantics) */
BNB_API bnb_tensor *bnb_permute(bnb_context *ctx, bnb_tensor *a, int ax0, int ax1, int ax2, int ax3);
BNB_API bnb_tensor *bnb_transpose(bnb_context *ctx, bnb_tensor *a); /* swap dims 0 and 1 */
BNB_API bnb_tensor *bnb_cont(bnb_context *ctx, bnb_tensor *a);     /* contiguous copy, same type */
BNB_API bnb_tensor *bnb_cast(bnb_context *ctx, bnb_tensor *a, bnb_type type); /* contiguous copy, new type */

/* ---------------------------------------------------------------------------------------------- ops */
/* Binary: result has a's shape and type; b must have each dim equal to a's or 1 (broadcast). */
BNB_API bnb_tensor *bnb_add(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b);
BNB_API bnb_tensor *bnb_sub(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b);
BNB_API bnb_tensor *bnb_mul(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b);
BNB_API bnb_tensor *bnb_div(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b);
/* Unary, same shape and type */
BNB_API bnb_tensor *bnb_scale(bnb_context *ctx, bnb_tensor *a, float s);
BNB_API bnb_tensor *bnb_neg(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_abs(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_sqr(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_sqrt(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_exp(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_log(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_relu(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_gelu(bnb_context *ctx, bnb_tensor *a); /* tanh approximation */
BNB_API bnb_tensor *bnb_silu(bnb_context *ctx, bnb_tensor *a);
BNB_API bnb_tensor *bnb_tanh(bnb_context *ctx, bnb_tensor *a);
/* Reductions (results F32 except where noted) */
BNB_API bnb_tensor *bnb_sum(bnb_context *ctx, bnb_tensor *a);       /* -> [1] */
BNB_API bnb_tensor *bnb_sum_rows(bnb_context *ctx, bnb_tensor *a);  /* -> [1, ne1, ne2, ne3] */
BNB_API bnb_tensor *bnb_mean(bnb_context *ctx, bnb_tensor *a);      /* -> [1, ne1, ne2, ne3] */
BNB_API bnb_tensor *bnb_max_rows(bnb_context *ctx, bnb_tensor *a);  /* -> [1, ne1, ne2, ne3] */
BNB_API bnb_tensor *bnb_argmax(bnb_context *ctx, bnb_tensor *a);    /* -> I32 [1, ne1, ne2, ne3], first max */
/* Matrix product, ggml convention: a [K, M, B2, B3], b [K, N, B2', B3'] -> F32 [M, N, B2', B3'],
 * out[n][m] = sum_k a[m][k] * b[n][k]  (i.e. out = b · aᵀ in row-major terms; a is the weight [M rows of K]).
 * B2' and B3' must be multiples of a's (a is broadcast over batches). F32/F16/BF16 inputs, F32 accumulate. */
BNB_API bnb_tensor *bnb_mul_mat(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b);
/* Embedding lookup: a [K, R, ...] any float type, idx I32 [N] -> F32 [K, N] */
BNB_API bnb_tensor *bnb_get_rows(bnb_context *ctx, bnb_tensor *a, bnb_tensor *idx);
/* Concatenate along dim (other dims equal, same type) */
BNB_API bnb_tensor *bnb_concat(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b, int dim);
/* softmax over ne[0] of (a * scale), with an optional causal mask: row i1 (query position within ne1) sees columns
 * 0 .. i1 + (ne0 - ne1) (so a square ne0 == ne1 block is lower-triangular; with a KV cache ne0 > ne1). */
BNB_API bnb_tensor *bnb_softmax(bnb_context *ctx, bnb_tensor *a, float scale, bool causal);
BNB_API bnb_tensor *bnb_rms_norm(bnb_context *ctx, bnb_tensor *a, float eps);   /* over ne[0], no weight */
BNB_API bnb_tensor *bnb_layer_norm(bnb_context *ctx, bnb_tensor *a, float eps); /* over ne[0], no weight/bias */
/* Rotary embedding on a [head_dim, n_heads, n_tokens, 1]; pos I32 [n_tokens]. Rotates the first n_rot dims of each
 * head. mode BNB_ROPE_NORMAL: pairs (2i, 2i+1) (GPT-J / original llama); BNB_ROPE_NEOX: pairs (i, i + n_rot/2).
 * theta_i = pos * base^(-2i/n_rot). */
enum { BNB_ROPE_NORMAL = 0, BNB_ROPE_NEOX = 2 };
BNB_API bnb_tensor *bnb_rope(bnb_context *ctx, bnb_tensor *a, bnb_tensor *pos, int n_rot, int mode, float base);
/* Cross entropy from logits [V, N] and I32 targets [N] -> F32 [1]: mean over rows of -log softmax(logits)[target] */
BNB_API bnb_tensor *bnb_cross_entropy(bnb_context *ctx, bnb_tensor *logits, bnb_tensor *targets);

/* Copy src (any plain type) into dst (a plain tensor or a view of one, e.g. a slice of a KV cache), converting the
 * type; same shape. The result is a node that writes into dst's memory when the graph runs (no new memory); build
 * it into the graph before the nodes that must see the written values (graph order is build order). */
BNB_API bnb_tensor *bnb_cpy(bnb_context *ctx, bnb_tensor *src, bnb_tensor *dst);

BNB_API const char *bnb_op_name(bnb_op op);

/* ---------------------------------------------------------------------------------------------- graph */
typedef struct bnb_graph bnb_graph;

/* A graph lives in ctx's arena. max_nodes 0 = 8192. */
BNB_API bnb_graph *bnb_graph_new(bnb_context *ctx, size_t max_nodes);
/* Add `out` and everything it depends on (topological order); repeated calls add more outputs. Outputs get
 * BNB_FLAG_OUTPUT. Fails with BNB_ERR_GRAPH on a cycle or when max_nodes is exceeded. */
BNB_API bnb_status bnb_graph_build(bnb_graph *g, bnb_tensor *out);
BNB_API int bnb_graph_n_nodes(const bnb_graph *g);
BNB_API bnb_tensor *bnb_graph_node(const bnb_graph *g, int i); /* negative i counts from the end */
BNB_API int bnb_graph_n_leafs(const bnb_graph *g);
BNB_API bnb_tensor *bnb_graph_leaf(const bnb_graph *g, int i);
BNB_API void bnb_graph_print(const bnb_graph *g);
/* Release the graph's intermediate buffer (and captured CUDA graph) now; the next compute plans again.
 * bnb_context_free does this for every graph of the context. Free contexts and buffers before their backend. */
BNB_API void bnb_graph_free_plan(bnb_graph *g);
/* Bytes of intermediate memory the graph allocator planned (after the first compute); and without reuse. */
BNB_API size_t bnb_graph_mem_planned(const bnb_graph *g);
BNB_API size_t bnb_graph_mem_naive(const bnb_graph *g);

/* ---------------------------------------------------------------------------------------------- backends */
typedef struct bnb_backend bnb_backend;

BNB_API bnb_backend *bnb_backend_cpu_new(int n_threads);  /* n_threads <= 0: all cores */
BNB_API bnb_backend *bnb_backend_cuda_new(int device);     /* NULL + BNB_ERR_NO_DEVICE without a GPU */
BNB_API bool bnb_cuda_available(void);                     /* built with CUDA and a device is present */
BNB_API void bnb_backend_free(bnb_backend *be);
BNB_API const char *bnb_backend_name(const bnb_backend *be);
BNB_API bool bnb_backend_is_cpu(const bnb_backend *be);
BNB_API bnb_status bnb_backend_synchronize(bnb_backend *be);
/* Device memory held by the backend's tensors and graphs now and at its peak (CUDA: the memory pool's counters;
 * CPU: 0 and 0, host memory is the process's). */
BNB_API bnb_status bnb_backend_memory(bnb_backend *be, size_t *in_use, size_t *peak);
/* CUDA: capture repeated graph computes into a CUDA graph and replay it (default on). No-op on CPU. */
BNB_API void bnb_backend_set_graph_capture(bnb_backend *be, bool enable);

/* Allocate, in one buffer of `be`, every tensor of ctx that has no data yet and is not a view or op result
 * (leaves: inputs, parameters). Returns the buffer (freed with bnb_buffer_free; tensors then lose their data).
 * Tensors already in another buffer are left alone. */
BNB_API bnb_buffer *bnb_backend_alloc_tensors(bnb_backend *be, bnb_context *ctx);
/* Allocate one buffer of `size` bytes. */
BNB_API bnb_buffer *bnb_backend_alloc_buffer(bnb_backend *be, size_t size);
BNB_API void bnb_buffer_free(bnb_buffer *buf);
BNB_API size_t bnb_buffer_size(const bnb_buffer *buf);
/* Place tensor t at byte offset in buf (t must have no data yet). */
BNB_API bnb_status bnb_buffer_place(bnb_buffer *buf, bnb_tensor *t, size_t offset);
BNB_API bnb_status bnb_buffer_clear(bnb_buffer *buf, uint8_t value);

/* Run the graph. On the first call for this backend (or after leaves moved) the graph allocator plans the
 * intermediates into one backend buffer reusing memory by liveness; later calls reuse the plan. Every leaf the
 * graph reads must be allocated on this backend. */
BNB_API bnb_status bnb_graph_compute(bnb_backend *be, bnb_graph *g);
/* Whether `be` can run node t (type/op support). */
BNB_API bool bnb_backend_supports(bnb_backend *be, const bnb_tensor *t);

/* ==============================================================================================================
 * Sections added by later issues go below, one per family (quantization, LLM.int8, autodiff, optimizers...).
 * ============================================================================================================== */

/* ---------------------------------------------------------------------------------------------- quantization */
/* Code maps (spec section 1), float32, sorted ascending, bit-identical to bitsandbytes' (src/quant/maps.c).
 * bnb_qmap_fill gives the named kinds; these give the general constructions. */
BNB_API bnb_status bnb_qmap_dynamic(float out[256], bool is_signed, int max_exponent_bits, int total_bits);
BNB_API bnb_status bnb_qmap_linear(float out[256], bool is_signed);
/* Quantile map of data x[n] (n >= 256): 255 estimated quantiles (bitsandbytes' create_quantile_map: probabilities
 * offset .. 1-offset, offset 1/512 meaning bitsandbytes' default) plus one 0, sorted, divided by their max |value|.
 * Uses the fast estimator below. */
BNB_API bnb_status bnb_qmap_quantile(float out[256], const float *x, int64_t n, float offset);
/* Quantiles of x[n] at the 256 probabilities p_j = offset + j (1 - 2 offset) / 255, j = 0..255 (linear interpolation
 * between order statistics). _exact sorts a copy of all values; _estimate is the SRAM-quantiles estimator: blocks of
 * 4096 values are sorted in cache, their quantiles averaged (error well under 1% of the range; n_threads <= 0: all
 * cores). Non-finite values: BNB_ERR_NUMERIC. */
BNB_API bnb_status bnb_quantiles_exact(const float *x, int64_t n, float offset, float out[256]);
BNB_API bnb_status bnb_quantiles_estimate(const float *x, int64_t n, float offset, float out[256], int n_threads);
/* The same estimator on a backend: x an allocated contiguous F32 tensor of be (CPU or CUDA: a CTA per block of 4096
 * sorts it in shared memory). No finiteness check on CUDA (NaN sorts last). */
BNB_API bnb_status bnb_quantiles_estimate_tensor(bnb_backend *be, const bnb_tensor *x, float offset, float out[256]);

/* Blockwise 8-bit quantization: x (F32/F16/BF16, contiguous, any shape) -> Q8_BLOCK of x's shape.
 * map: a bnb_qmap kind (DYNAMIC_*, LINEAR_*), or any kind with `code` set: an F32 tensor of 256 sorted values (e.g.
 * from bnb_qmap_quantile) that the op copies into the result. block: 64..4096, a power of two. nested: the absmax
 * values are quantized again (block 256, dynamic signed map, mean kept). Codes: nearest map value (spec section 2).
 * Non-finite input: bnb_graph_compute fails with BNB_ERR_NUMERIC naming the block (CUDA: the kernel raises the
 * backend's error flag, read after the graph ran, and stores that block's absmax as NaN, which bnb_quant_check
 * reports too); bnb_tensor_set_f32 of a quantized tensor checks the same way. */
BNB_API bnb_tensor *bnb_quantize_blockwise(bnb_context *ctx, bnb_tensor *x, bnb_qmap map, bnb_tensor *code,
                                           int block, bool nested);
/* Same with stochastic rounding: the upper neighbour with probability (y - lower) / (upper - lower); the random
 * number of element i is a hash of (seed, i), so CPU and CUDA draw the same numbers. */
BNB_API bnb_tensor *bnb_quantize_blockwise_stochastic(bnb_context *ctx, bnb_tensor *x, bnb_qmap map, bnb_tensor *code,
                                                      int block, bool nested, uint32_t seed);
/* Q8_BLOCK -> type (F32/F16/BF16), same shape: x' = map[code] * absmax. */
BNB_API bnb_tensor *bnb_dequantize_blockwise(bnb_context *ctx, bnb_tensor *q, bnb_type type);
/* 4-bit: x (F32/F16/BF16) -> qtype (BNB_TYPE_Q4_NF4 or Q4_FP4), block 32..4096 (power of two), element 2k in the
 * HIGH nibble. */
BNB_API bnb_tensor *bnb_quantize_4bit(bnb_context *ctx, bnb_tensor *x, bnb_type qtype, int block, bool nested);
BNB_API bnb_tensor *bnb_dequantize_4bit(bnb_context *ctx, bnb_tensor *q, bnb_type type);
/* Read a Q8_BLOCK / Q4_* tensor's scales back and fail with BNB_ERR_NUMERIC naming the first block whose absmax is
 * not finite (the trace of non-finite input in a graph quantize on CUDA). */
BNB_API bnb_status bnb_quant_check(const bnb_tensor *q);
/* bnb_mul_mat(ctx, a, b) also takes a Q8_BLOCK / Q4_NF4 / Q4_FP4 weight a [K, M] (dequantized on the fly; blocks
 * run along the flattened a, so a row of K values may start mid-block). */

/* ---------------------------------------------------------------------------------------------- LLM.int8 */
/* LLM.int8() (spec section 3). Weights W [in, out] (ne0 = in features, ne1 = out rows) are stored as I8_ROW: CB int8
 * rows + SCB = row absmax (what a bitsandbytes int8 checkpoint holds as `weight` and `SCB`).
 *
 * Vector-wise quantization of x [cols, rows, ...] (F32/F16/BF16, rows contiguous) -> I8_ROW of x's shape:
 * rowmax_r = max |x_r,c| (threshold t > 0: over |x_r,c| < t only), q = round-half-even(x * 127 / rowmax_r).
 * With t > 0 the outlier columns (any |x_r,c| >= t) are listed, ascending, in the OUTLIERS section with their f16
 * values, and their int8 values are 0 in every row (so q·CBᵀ + outliers counts each column once). t = 0 also
 * converts weights (bnb_int8_quantize_weight). */
BNB_API bnb_tensor *bnb_int8_vectorwise_quant(bnb_context *ctx, bnb_tensor *x, float threshold);
/* Weight conversion as a graph op: F32/F16/BF16 w [in, out] -> I8_ROW (CB, SCB); = bnb_int8_vectorwise_quant(w, 0). */
BNB_API bnb_tensor *bnb_int8_quantize_weight(bnb_context *ctx, bnb_tensor *w);
/* I8_ROW -> F32 of the same shape: q * rowmax / 127, outlier columns restored from their f16 values. */
BNB_API bnb_tensor *bnb_int8_dequantize(bnb_context *ctx, bnb_tensor *q);
/* y = x · Wᵀ (+ bias) by the LLM.int8 decomposition -> F32 [out, ne1, ne2, ne3].
 *  x: F32/F16/BF16 [in, ne1, ne2, ne3] (rows contiguous): quantized on the fly with outlier detection at
 *     `threshold` (6.0 is bitsandbytes' default; 0 disables the decomposition); or an I8_ROW from
 *     bnb_int8_vectorwise_quant (its own outliers are used; `threshold` is ignored).
 *  w: I8_ROW [in, out] (inference), or F32/F16/BF16 [in, out]: 16-bit master weights (has_fp16_weights), re-quantized
 *     row-wise at every compute.
 *  bias: NULL or F32/F16/BF16 [out].
 * int32 accumulation C = q_x · CBᵀ; y = C * rowmax * SCB / 127² + bias + x[:, outl] · (CB[:, outl] * SCB / 127)ᵀ.
 * Gradients (training): dx = dy · dequant(W), dW = dyᵀ · x (float weights only), dbias = sum of dy over rows.
 * int8 values must lie in [-127, 127] (what the quantizers produce); |C| must fit int32 (in <= 133000).
 * CUDA, 1..16 rows of float x (decode): weight-only path, x · dequant(W)ᵀ in float (x is not quantized, so every
 * column is exact and the threshold has no effect; closer to the float result than the int8 path). */
BNB_API bnb_tensor *bnb_matmul_int8(bnb_context *ctx, bnb_tensor *x, bnb_tensor *w, float threshold,
                                    bnb_tensor *bias);
/* The same with the output in out_type (F32, F16 or BF16): the F32 result rounded once to nearest even. F16 is what
 * bitsandbytes returns for f16 input (half the output bytes; on the H100 ~1-3% faster than F32 output). */
BNB_API bnb_tensor *bnb_matmul_int8_out(bnb_context *ctx, bnb_tensor *x, bnb_tensor *w, float threshold,
                                        bnb_tensor *bias, bnb_type out_type);

/* Host conversions (any backend; the tensor must be allocated). I8_ROW t of shape [cols, rows...]:
 * quantize from host float data w[rows * cols] (type F32, F16 or BF16) with t->quant.threshold, and upload. */
BNB_API bnb_status bnb_int8_set_from(bnb_tensor *t, bnb_type src_type, const void *src, int64_t n);
/* Upload the parts directly (e.g. a bitsandbytes checkpoint's `weight` int8 [rows x cols] and `SCB` f32 [rows]).
 * Only for tensors without an outlier section (threshold 0). */
BNB_API bnb_status bnb_int8_set_parts(bnb_tensor *t, const int8_t *q, const float *rowmax);
/* Download the parts; any pointer may be NULL. outlier_cols needs room for ne[0] entries; *n_outliers is 0 when the
 * tensor has no outlier section. */
BNB_API bnb_status bnb_int8_get_parts(const bnb_tensor *t, int8_t *q, float *rowmax, int32_t *n_outliers,
                                      int32_t *outlier_cols);
/* New I8_ROW weight tensor [in, out] (threshold 0) in ctx. */
BNB_API bnb_tensor *bnb_int8_new_weight(bnb_context *ctx, int64_t in, int64_t out);

/* Building block for the model layer: an int8 linear layer y = x · Wᵀ + b. */
typedef struct bnb_linear_int8 {
    bnb_tensor *weight;    /* I8_ROW [in, out] (CB + SCB); with has_fp16_weights the master weight (F16/BF16/F32) */
    bnb_tensor *bias;      /* F32 [out] or NULL */
    float threshold;       /* outlier threshold (6.0 default, 0 = no decomposition) */
    bool has_fp16_weights; /* training mode: weight is a float master weight, re-quantized at every forward */
} bnb_linear_int8;
/* Create the tensors in ctx (allocate them with bnb_backend_alloc_tensors, then load). master_type is used only with
 * has_fp16_weights (F16, BF16 or F32); the weight is then marked BNB_FLAG_PARAM. */
BNB_API bnb_status bnb_linear_int8_init(bnb_linear_int8 *l, bnb_context *ctx, int64_t in, int64_t out, bool bias,
                                        float threshold, bool has_fp16_weights, bnb_type master_type);
/* Load weights w [out rows x in] and bias [out] (may be NULL) from host data of type src_type (F32/F16/BF16):
 * quantized to int8 once (inference) or stored as the master weight (has_fp16_weights). */
BNB_API bnb_status bnb_linear_int8_load(bnb_linear_int8 *l, bnb_type src_type, const void *w, const void *bias);
/* y = x · Wᵀ + b for x [in, tokens, ...] -> F32 [out, tokens, ...]. */
BNB_API bnb_tensor *bnb_linear_int8_forward(bnb_context *ctx, const bnb_linear_int8 *l, bnb_tensor *x);

/* ---------------------------------------------------------------------------------------------- autodiff */
/* Reverse-mode differentiation of a scalar loss. bnb_graph_backward walks g's nodes from `loss` (1 element, already
 * built into g) back to the leaves and appends to g the nodes computing d loss / d t for every tensor t on a path
 * to a BNB_FLAG_PARAM tensor. Afterwards param->grad is an F32 tensor of param's shape, marked BNB_FLAG_OUTPUT (the
 * allocator keeps it), and one bnb_graph_compute runs forward and backward. d loss = 1 is produced by a FILL node:
 * nothing to set by hand. Tensors used several times sum their gradients. Params without a path to the loss keep
 * grad NULL. Intermediate tensors also get t->grad, but their memory may be reused: read only params' grads.
 * Ops without a gradient rule fail with BNB_ERR_UNSUPPORTED naming the op; the graph is then left as it was.
 *
 * Semantics: with bnb_graph_backward each compute OVERWRITES param->grad with this compute's gradient (PyTorch's
 * zero_grad-every-step usage). With bnb_graph_backward_accumulate each param's gradient is ADDED into a persistent
 * F32 accumulator (a leaf of ctx, allocated by bnb_backend_alloc_tensors like the params; zero it once with
 * bnb_graph_reset_grads before the first compute), for gradient accumulation over micro-batches; param->grad is then
 * the in-place accumulation node (read it after compute; graphs that run after it, e.g. an optimizer graph, should
 * read bnb_grad_accumulator(param), the accumulator itself). Backward graphs built later for the same params reuse
 * the accumulator. */
BNB_API bnb_status bnb_graph_backward(bnb_context *ctx, bnb_graph *g, bnb_tensor *loss);
BNB_API bnb_status bnb_graph_backward_accumulate(bnb_context *ctx, bnb_graph *g, bnb_tensor *loss);
/* Zero the gradient accumulators of g's params (accumulate mode; no-op for params without one). */
BNB_API bnb_status bnb_graph_reset_grads(bnb_graph *g);
/* The persistent F32 accumulator of param (accumulate mode), NULL otherwise. */
BNB_API bnb_tensor *bnb_grad_accumulator(const bnb_tensor *param);

/* Ops used by the gradient graphs, also usable directly. */
/* F32 tensor of shape ne (n_dims 1..4) whose every element is `value` (computed by the backend: no host data). */
BNB_API bnb_tensor *bnb_fill(bnb_context *ctx, int n_dims, const int64_t *ne, float value);
/* Broadcast a to like's shape (each dim of a equal to like's or 1) -> F32. */
BNB_API bnb_tensor *bnb_repeat(bnb_context *ctx, bnb_tensor *a, const bnb_tensor *like);
/* Sum a down to like's shape (each dim of like equal to a's or 1) -> F32. The inverse of broadcasting. */
BNB_API bnb_tensor *bnb_sum_to(bnb_context *ctx, bnb_tensor *a, const bnb_tensor *like);

/* ---------------------------------------------------------------------------------------------- optimizers */
/* Fused optimizers as graph nodes (spec: bnb-numerics.md section 4). An optimizer object owns, per parameter,
 * its states (32-bit F32, or 8-bit blockwise BNB_TYPE_OPT8: first moments with the signed dynamic map, second
 * moments with the unsigned one, block 256) and a small per-parameter F32 "hyper" tensor on the parameter's backend
 * holding the step count and the hyperparameters. bnb_optimizer_step(opt, ctx, g) appends one fused in-place
 * OPTIMIZER_UPDATE node per parameter of g (tensors with BNB_FLAG_PARAM and a ->grad), so forward + backward +
 * update is ONE bnb_graph_compute. Call it after bnb_graph_backward (updates must come after every reader of the
 * parameters; appending them last guarantees that). The step counter lives on the backend and advances inside each
 * compute: build once, compute many times; nothing to call between computes. Changing lr (schedules) between
 * computes: bnb_optimizer_set_lr / bnb_optimizer_override (a small host-to-device write, no rebuild).
 * States are created at the first bnb_optimizer_step that sees a parameter, on the backend buffer that holds the
 * parameter (host memory for parameters in a host context): parameters must be allocated by then.
 *
 * Per element, g first multiplied by gnorm_scale (clipping), t = step (1 at the first update):
 *   ADAM/ADAMW/LAMB  m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p += -lr (c2/c1) m / (sqrt(v) + eps c2);
 *                    then p *= 1 - lr wd (decoupled).  c1 = 1 - b1^t, c2 = sqrt(1 - b2^t)
 *   MOMENTUM/LARS    g += wd p; m = g (t = 1) or b1 m + g; p -= lr m
 *   LION             p *= 1 - lr wd; p -= lr sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g
 *   RMSPROP          g += wd p; v = b1 v + (1-b1) g^2; p -= lr g / (sqrt(v) + eps)
 *   ADAGRAD          g += wd p; v += g^2; p -= lr g / (sqrt(v) + eps)
 *   ADEMAMIX         m1 = b1 m1 + (1-b1) g; m2 = b3 m2 + (1-b3) g; v = b2 v + (1-b2) g^2;
 *                    p -= lr (m1/c1 + alpha m2) / (sqrt(v)/c2 + eps); then p *= 1 - lr wd
 *   LAMB/LARS with max_unorm > 0: the step (the part multiplied by lr, before weight decay) is scaled by
 *   max_unorm ||p|| / ||u|| when ||u|| > max_unorm ||p|| (u = (c2/c1) m / (sqrt(v) + eps c2), resp. m).
 * A non-finite gradient element sets that element's states to 0 and leaves its parameter unchanged. skip_zeros:
 * elements with g == 0 are left alone (states and parameter). sparse_rows: rows (ne[0] elements) whose gradient is
 * all zero are left alone (StableEmbedding).
 * 8-bit: per block of 256, states are dequantized, updated in f32, the new absmax = max |state| over the block, the
 * parameter is updated with the f32 states, the states re-quantized (nearest code; a code whose sign differs from a
 * nonzero value moves one code toward it). Tensors with fewer than min_8bit_size elements keep 32-bit states.
 * Percentile clipping (percentile_clipping < 100): the squared gradient norm goes into a ring buffer of 100 (slot
 * t % 100); clip = sqrt(sorted[percentile * cnt / 100]) over the cnt = min(t, 100) norms recorded so far; gnorm_scale
 * = clip / ||g|| when ||g|| > clip. Once the ring is full this is bitsandbytes' sorted_buffer[percentile]; before,
 * bitsandbytes also sorts the unfilled zero slots, which scales the first 99 - percentile steps' gradients to 0: we
 * do not. A non-finite ||g|| is not recorded and gets scale 1 (its elements are then handled per element).
 * Global norm clip (bnb_optimizer_set_max_grad_norm): total = sqrt(sum over all parameters of ||g||^2); every
 * gradient is scaled by max_norm / (total + 1e-6) when that is < 1 (PyTorch's clip_grad_norm_). */
typedef enum bnb_optim_type {
    BNB_OPTIM_ADAM = 0,
    BNB_OPTIM_ADAMW,
    BNB_OPTIM_MOMENTUM, /* SGD with momentum */
    BNB_OPTIM_LION,
    BNB_OPTIM_RMSPROP,
    BNB_OPTIM_ADAGRAD,
    BNB_OPTIM_LAMB,
    BNB_OPTIM_LARS,
    BNB_OPTIM_ADEMAMIX,
    BNB_OPTIM_COUNT
} bnb_optim_type;

typedef struct bnb_optim_config {
    int optim_bits;          /* 32 or 8 */
    float lr;
    float beta1, beta2;      /* Adam-like betas; MOMENTUM/LARS: beta1 = momentum; RMSPROP: beta1 = alpha */
    float beta3, alpha;      /* AdEMAMix: slow EMA beta and mixing coefficient */
    float eps;
    float weight_decay;
    float max_unorm;         /* LAMB/LARS trust-ratio cap (0 = off) */
    int percentile_clipping; /* 0..99: clip at this percentile of the last 100 norms; 100 = off */
    bool skip_zeros;
    bool sparse_rows;        /* update only rows with a nonzero gradient (forces nothing else) */
    int64_t min_8bit_size;   /* tensors with fewer elements keep 32-bit states (default 4096) */
} bnb_optim_config;

/* Which hyperparameter an override sets (values are given as double; booleans 0/1). */
typedef enum bnb_optim_key {
    BNB_OPTIM_KEY_BITS = 0, BNB_OPTIM_KEY_LR, BNB_OPTIM_KEY_BETA1, BNB_OPTIM_KEY_BETA2, BNB_OPTIM_KEY_BETA3,
    BNB_OPTIM_KEY_ALPHA, BNB_OPTIM_KEY_EPS, BNB_OPTIM_KEY_WEIGHT_DECAY, BNB_OPTIM_KEY_MAX_UNORM,
    BNB_OPTIM_KEY_PERCENTILE_CLIPPING, BNB_OPTIM_KEY_SKIP_ZEROS, BNB_OPTIM_KEY_SPARSE_ROWS,
    BNB_OPTIM_KEY_MIN_8BIT_SIZE, BNB_OPTIM_KEY_COUNT
} bnb_optim_key;

typedef struct bnb_optimizer bnb_optimizer;

/* bitsandbytes' defaults for type (32-bit states; set optim_bits = 8 for the 8-bit variant). */
BNB_API bnb_optim_config bnb_optim_default_config(bnb_optim_type type);
BNB_API const char *bnb_optim_type_name(bnb_optim_type type);
BNB_API bnb_optimizer *bnb_optimizer_new(bnb_optim_type type, bnb_optim_config defaults);
BNB_API void bnb_optimizer_free(bnb_optimizer *opt); /* frees the states; graphs holding its nodes become invalid */
/* Append the update nodes for every parameter of g with a gradient (see above). Parameters already updated by g are
 * skipped, so calling it twice on one graph adds nothing. */
BNB_API bnb_status bnb_optimizer_step(bnb_optimizer *opt, bnb_context *ctx, bnb_graph *g);
/* GlobalOptimManager-style override of one hyperparameter for one parameter (before or after its first step; the
 * state precision (BITS, MIN_8BIT_SIZE) can only change before the states exist). */
BNB_API bnb_status bnb_optimizer_override(bnb_optimizer *opt, const bnb_tensor *param, bnb_optim_key key, double value);
/* New default learning rate for all parameters without an lr override (takes effect at the next compute). */
BNB_API bnb_status bnb_optimizer_set_lr(bnb_optimizer *opt, float lr);
/* Global gradient-norm clip over all parameters of the next bnb_optimizer_step graphs (0 = off, the default). */
BNB_API bnb_status bnb_optimizer_set_max_grad_norm(bnb_optimizer *opt, float max_norm);
/* The resolved configuration of param (defaults + overrides); BNB_ERR_INVALID_ARG for NULL arguments. */
BNB_API bnb_status bnb_optimizer_param_config(const bnb_optimizer *opt, const bnb_tensor *param, bnb_optim_config *out);
/* State tensor `which` (0: first state, 1: second) of param, NULL if it has none (yet). AdEMAMix's first state holds
 * m1 then m2 (32-bit: 2n floats; 8-bit: 2 * round_up(n, 256) codes). */
BNB_API bnb_tensor *bnb_optimizer_state(const bnb_optimizer *opt, const bnb_tensor *param, int which);
/* Steps taken for param (read from its backend), -1 if unknown. */
BNB_API int64_t bnb_optimizer_param_step(const bnb_optimizer *opt, const bnb_tensor *param);
/* Bytes of all allocated state tensors (states only: not the hyper or clipping history tensors). */
BNB_API size_t bnb_optimizer_state_bytes(const bnb_optimizer *opt);
/* Save / load every parameter's states, step count, hyperparameters and clipping history. Format (little endian):
 * "BNBOPTST" u32 version(1) u32 optim type u32 n_entries u32 0, then per entry: u32 name length, name, i64 n,
 * u32 bits, u32 0, u64 hyper bytes, hyper, u64 state1 bytes, state1, u64 state2 bytes, state2, u64 history bytes,
 * history; then u64 FNV-1a 64 of everything before. Written to path.tmp, fsynced, renamed over path. Load matches
 * entries by parameter name (names must be unique and non-empty) and requires the states to exist (run
 * bnb_optimizer_step on the graph first); shapes/bits must agree. Corrupt or truncated files: BNB_ERR_IO. */
BNB_API bnb_status bnb_optimizer_save(const bnb_optimizer *opt, const char *path);
BNB_API bnb_status bnb_optimizer_load(bnb_optimizer *opt, const char *path);

/* StableEmbedding (spec section 5): weight [dim, n_rows] (Xavier-uniform), then LayerNorm over dim with an affine
 * ln_weight (1) and ln_bias (0). bnb_stable_embedding_new creates the three parameters in ctx; fill them with
 * bnb_stable_embedding_init once they are allocated; register with an optimizer to force 32-bit states and sparse
 * row updates for the weight. */
typedef struct bnb_stable_embedding {
    bnb_tensor *weight, *ln_weight, *ln_bias;
    float eps;
} bnb_stable_embedding;
BNB_API bnb_status bnb_stable_embedding_new(bnb_context *ctx, int64_t n_rows, int64_t dim, bnb_stable_embedding *out);
BNB_API bnb_status bnb_stable_embedding_init(bnb_stable_embedding *e, uint64_t seed);
/* idx I32 [N] -> F32 [dim, N] */
BNB_API bnb_tensor *bnb_stable_embedding_forward(bnb_context *ctx, const bnb_stable_embedding *e, bnb_tensor *idx);
BNB_API bnb_status bnb_optimizer_register_stable_embedding(bnb_optimizer *opt, const bnb_stable_embedding *e);

#ifdef __cplusplus
}
#endif
#endif /* BNB_H */
