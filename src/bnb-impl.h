/* Internal declarations shared by the core, the op files and the backends. Not installed. */
#ifndef BNB_IMPL_H
#define BNB_IMPL_H

#include "bnb.h"

#include <assert.h>
#include <stdarg.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BNB_ALIGN 64 /* alignment of tensor data in buffers and arenas */
#define BNB_PAD(x, n) (((x) + (n)-1) / (n) * (n))
#define BNB_UNUSED(x) (void)(x)
#define BNB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BNB_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---------------------------------------------------------------- errors */
/* Set the thread-local message (printf style) and return `s`, so callers write `return bnb_fail(S, "...")`. */
bnb_status bnb_fail(bnb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, for constructors that return NULL. */
void *bnb_fail_null(bnb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Last status set on this thread (BNB_OK after bnb_clear_error). */
bnb_status bnb_last_status(void);
/* "64x32x1x1" style shape string into buf (returns buf). */
const char *bnb_shape_str(const bnb_tensor *t, char *buf, size_t n);

/* ---------------------------------------------------------------- context */
struct bnb_context {
    uint8_t *mem;
    size_t size;
    size_t used;
    bool no_alloc;
    int n_tensors;
    bnb_tensor *first; /* tensors in creation order; iterate with bnb_ctx_next_tensor */
    bnb_tensor *last;
    bnb_buffer **buffers; /* buffers holding tensors of this context (detached when either side is freed) */
    int n_buffers, cap_buffers;
    bnb_graph *graphs;    /* graphs in this context (their plan buffers are freed with it) */
};
/* Allocate `size` bytes from the arena (aligned); NULL + error when full. */
void *bnb_ctx_alloc(bnb_context *ctx, size_t size);
/* Iterate tensors: t = NULL gives the first. */
bnb_tensor *bnb_ctx_next_tensor(bnb_context *ctx, bnb_tensor *t);

/* ---------------------------------------------------------------- op construction helpers */
/* New result tensor for op with sources; NULL on arena exhaustion. */
bnb_tensor *bnb_new_op_tensor(bnb_context *ctx, bnb_op op, bnb_type type, const int64_t ne[4]);
/* View tensor sharing memory with a (offset in bytes), for the view ops. */
bnb_tensor *bnb_new_view_tensor(bnb_context *ctx, bnb_op op, bnb_tensor *a, const int64_t ne[4],
                                const size_t nb[4], size_t offset);
static inline void bnb_set_op_i32(bnb_tensor *t, int i, int32_t v) { t->op_params[i] = v; }
static inline int32_t bnb_get_op_i32(const bnb_tensor *t, int i) { return t->op_params[i]; }
static inline void bnb_set_op_f32(bnb_tensor *t, int i, float v) { memcpy(&t->op_params[i], &v, sizeof v); }
static inline float bnb_get_op_f32(const bnb_tensor *t, int i) {
    float v;
    memcpy(&v, &t->op_params[i], sizeof v);
    return v;
}
static inline bool bnb_type_is_float(bnb_type t) {
    return t == BNB_TYPE_F32 || t == BNB_TYPE_F16 || t == BNB_TYPE_BF16;
}
static inline bool bnb_type_is_plain(bnb_type t) { return t >= BNB_TYPE_F32 && t <= BNB_TYPE_I32; }
size_t bnb_type_size(bnb_type t); /* element bytes of plain types, 0 otherwise */
/* NULL checks for constructors: returns false and sets the error naming the op. */
bool bnb_check_src(const char *op, const bnb_tensor *t, const char *what);

/* ---------------------------------------------------------------- graph */
struct bnb_graph {
    bnb_context *ctx;
    int size;        /* capacity of nodes and leafs */
    int n_nodes;     /* tensors with an op (views included), topological order */
    int n_leafs;     /* tensors without an op */
    bnb_tensor **nodes;
    bnb_tensor **leafs;
    /* visited-set: open-addressing hash of tensor pointers */
    size_t hash_size;
    bnb_tensor **hash;
    /* allocation plan (graph allocator) */
    bnb_backend *plan_backend;   /* backend the plan is for */
    bnb_buffer *plan_buffer;     /* intermediates live here */
    size_t plan_bytes;           /* bytes used by the plan */
    size_t naive_bytes;          /* sum of intermediate sizes (no reuse) */
    size_t *plan_offsets;        /* per node: offset in plan_buffer, SIZE_MAX for nodes not placed there */
    void *backend_state;         /* backend-private per-graph state (e.g. a captured CUDA graph) */
    void (*backend_state_free)(void *);
    uint64_t version;            /* bumped when the plan changes */
    bnb_graph *next_in_ctx;      /* list of the context's graphs */
};
/* Plan and place intermediate tensors of g into one buffer of `be`. Called by bnb_graph_compute. */
bnb_status bnb_graph_allocate(bnb_backend *be, bnb_graph *g);
/* Data pointer of a view = base data + offset; call after the base is placed. */
void bnb_view_init(bnb_tensor *t);
/* True for ops that compute nothing (views). */
static inline bool bnb_op_is_view(bnb_op op) {
    return op == BNB_OP_RESHAPE || op == BNB_OP_VIEW || op == BNB_OP_PERMUTE || op == BNB_OP_TRANSPOSE;
}

/* ---------------------------------------------------------------- quantized host conversions */
/* Host-side conversion between F32 and a quantized tensor's full storage (bnb_nbytes(t) bytes at `storage`),
 * used by bnb_tensor_set_f32/get_f32. Implemented by the quantization code (src/quant/). */
bnb_status bnb_quant_host_from_f32(const bnb_tensor *t, const float *src, void *storage);
bnb_status bnb_quant_host_to_f32(const bnb_tensor *t, const void *storage, float *dst);

/* ---------------------------------------------------------------- LLM.int8 (src/ops/int8.c) */
/* Where the parts of an I8_ROW tensor lie in its storage (bnb.h): q int8 [rows x cols] at 0, rowmax f32 [rows],
 * and with threshold > 0 the OUTLIERS section: i32 count, i32 column indices [cols], f16 values column-major
 * (outlier j of row r at j * rows + r). */
typedef struct bnb_int8_layout {
    int64_t cols, rows;
    size_t rowmax_offs;
    bool has_outliers;
    size_t outl_count_offs, outl_idx_offs, outl_val_offs;
} bnb_int8_layout;
static inline bnb_int8_layout bnb_int8_layout_of(const bnb_tensor *t) {
    bnb_int8_layout l;
    l.cols = t->ne[0];
    l.rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t n = (size_t)(l.cols * l.rows);
    l.rowmax_offs = BNB_PAD(n, 16);
    l.has_outliers = t->quant.threshold > 0;
    l.outl_count_offs = BNB_PAD(l.rowmax_offs + (size_t)l.rows * 4, 16);
    l.outl_idx_offs = l.outl_count_offs + 4;
    l.outl_val_offs = l.outl_count_offs + BNB_PAD((size_t)(l.cols + 1) * 4, 16);
    return l;
}
/* Host conversion F32 <-> I8_ROW storage, for bnb_tensor_set_f32/get_f32 (the dispatcher calls these for I8_ROW). */
bnb_status bnb_int8_host_from_f32(const bnb_tensor *t, const float *src, void *storage);
bnb_status bnb_int8_host_to_f32(const bnb_tensor *t, const void *storage, float *dst);
/* Gradient rule of BNB_OP_MATMUL_INT8 (for bnb_op_backward): dx = gy · dequant(W); dW = gyᵀ · x when W is a float
 * master weight; dbias = gy summed over rows. */
typedef struct bnb_backward_ctx bnb_backward_ctx;
bnb_status bnb_int8_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy);

/* ---------------------------------------------------------------- autodiff (src/autodiff.c, src/ops/backward.c) */
/* State of one bnb_graph_backward pass, handed to the gradient rules. */
typedef struct bnb_backward_ctx bnb_backward_ctx;
bnb_context *bnb_backward_context(bnb_backward_ctx *bc);
/* Whether t lies on a path to a parameter (only then is its gradient built). */
bool bnb_grad_needed(bnb_backward_ctx *bc, const bnb_tensor *t);
/* Add (or subtract) contrib -- F32, t's shape or broadcastable to it -- to t's gradient; no-op when t needs none. */
bnb_status bnb_grad_add(bnb_backward_ctx *bc, bnb_tensor *t, bnb_tensor *contrib);
bnb_status bnb_grad_sub(bnb_backward_ctx *bc, bnb_tensor *t, bnb_tensor *contrib);
/* The gradient rule of node's op (src/ops/backward.c): gy = d loss / d node; adds to the sources' gradients.
 * Ops of later families add a case there calling their own rule. */
bnb_status bnb_op_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy);
/* Backward op constructors (results F32, contiguous). */
bnb_tensor *bnb_acc_grad(bnb_context *ctx, bnb_tensor *acc, bnb_tensor *g); /* in place into acc */
bnb_tensor *bnb_unary_back(bnb_context *ctx, bnb_op fwd, bnb_tensor *gy, bnb_tensor *x);
bnb_tensor *bnb_max_rows_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x);
bnb_tensor *bnb_get_rows_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *idx, const bnb_tensor *table);
/* gy is the gradient of a view with element strides st[4] and element offset off into a contiguous tensor of
 * shape ne: scatter-add it there. */
bnb_tensor *bnb_view_back(bnb_context *ctx, bnb_tensor *gy, const int64_t ne[4], const int64_t st[4], int64_t off);
bnb_tensor *bnb_softmax_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *y, float scale);
bnb_tensor *bnb_rms_norm_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x, float eps);
bnb_tensor *bnb_layer_norm_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x, float eps);
bnb_tensor *bnb_rope_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *pos, int n_rot, int mode, float base);
bnb_tensor *bnb_cross_entropy_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *logits, bnb_tensor *targets);
static inline int64_t bnb_get_op_i64(const bnb_tensor *t, int i) {
    int64_t v;
    memcpy(&v, &t->op_params[i], sizeof v);
    return v;
}
static inline void bnb_set_op_i64(bnb_tensor *t, int i, int64_t v) { memcpy(&t->op_params[i], &v, sizeof v); }

/* ---------------------------------------------------------------- backends */
typedef struct bnb_backend_iface {
    const char *name;
    bool is_cpu; /* data pointers are host pointers */
    void (*free)(bnb_backend *be);
    /* device memory */
    void *(*alloc)(bnb_backend *be, size_t size); /* NULL + error on failure */
    void (*dealloc)(bnb_backend *be, void *ptr, size_t size);
    bnb_status (*copy_in)(bnb_backend *be, void *dst, const void *host_src, size_t size);
    bnb_status (*copy_out)(bnb_backend *be, void *host_dst, const void *src, size_t size);
    bnb_status (*fill)(bnb_backend *be, void *dst, uint8_t value, size_t size);
    bnb_status (*synchronize)(bnb_backend *be);
    /* compute */
    bool (*supports)(bnb_backend *be, const bnb_tensor *node);
    bnb_status (*graph_compute)(bnb_backend *be, bnb_graph *g);
    void (*set_graph_capture)(bnb_backend *be, bool enable);
    bnb_status (*memory)(bnb_backend *be, size_t *in_use, size_t *peak); /* NULL: reports 0 */
} bnb_backend_iface;

struct bnb_backend {
    const bnb_backend_iface *iface;
    void *impl;
};

struct bnb_buffer {
    bnb_backend *backend;
    void *base;
    size_t size;
    bnb_context **ctxs; /* contexts with tensors placed here */
    int n_ctxs, cap_ctxs;
};
/* Record that a tensor of ctx lives in buf (so freeing either side detaches the other). */
bnb_status bnb_buffer_link_context(bnb_buffer *buf, bnb_context *ctx);
void bnb_buffer_unlink_context(bnb_buffer *buf, bnb_context *ctx);
/* Free a graph's plan buffer and backend state (done by bnb_context_free, and bnb_graph_free_plan). */
void bnb_graph_release(bnb_graph *g);

#ifdef __cplusplus
}
#endif
#endif
