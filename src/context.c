/* Context arena and tensor creation. A context owns tensor metadata (and host data unless no_alloc). */
#include "bnb-impl.h"

#include <stdio.h>
#include <stdlib.h>

/* Each tensor is preceded in the arena by a small header linking it to the next, so a context can be iterated. */
typedef struct tensor_node {
    bnb_tensor t;
    struct tensor_node *next;
} tensor_node;

bnb_context *bnb_context_new(bnb_context_params p) {
    size_t size = p.mem_size ? p.mem_size : (size_t)16 << 20;
    bnb_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return bnb_fail_null(BNB_ERR_OOM, "bnb_context_new: out of host memory");
    ctx->mem = aligned_alloc(BNB_ALIGN, BNB_PAD(size, BNB_ALIGN));
    if (!ctx->mem) {
        free(ctx);
        return bnb_fail_null(BNB_ERR_OOM, "bnb_context_new: cannot allocate an arena of %zu bytes", size);
    }
    ctx->size = BNB_PAD(size, BNB_ALIGN);
    ctx->no_alloc = p.no_alloc;
    return ctx;
}

void bnb_context_free(bnb_context *ctx) {
    if (!ctx) return;
    for (bnb_graph *g = ctx->graphs; g; g = g->next_in_ctx) bnb_graph_release(g);
    while (ctx->n_buffers > 0) bnb_buffer_unlink_context(ctx->buffers[ctx->n_buffers - 1], ctx);
    free(ctx->buffers);
    free(ctx->mem);
    free(ctx);
}

size_t bnb_context_used(const bnb_context *ctx) { return ctx ? ctx->used : 0; }

void *bnb_ctx_alloc(bnb_context *ctx, size_t size) {
    size_t need = BNB_PAD(size, BNB_ALIGN);
    if (need < size || ctx->used + need > ctx->size || ctx->used + need < ctx->used)
        return bnb_fail_null(BNB_ERR_OOM, "context arena full: %zu of %zu bytes used, %zu more needed", ctx->used,
                             ctx->size, size);
    void *p = ctx->mem + ctx->used;
    ctx->used += need;
    return p;
}

bnb_tensor *bnb_ctx_next_tensor(bnb_context *ctx, bnb_tensor *t) {
    if (!t) return ctx->first;
    tensor_node *next = ((tensor_node *)t)->next;
    return next ? &next->t : NULL;
}

static bnb_tensor *new_tensor_impl(bnb_context *ctx, bnb_type type, int n_dims, const int64_t *ne,
                                   bnb_quant_params qp, bool want_data) {
    if (!ctx) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_new_tensor: ctx is NULL");
    if ((unsigned)type >= BNB_TYPE_COUNT)
        return bnb_fail_null(BNB_ERR_TYPE, "bnb_new_tensor: invalid type %d", (int)type);
    if (n_dims < 1 || n_dims > BNB_MAX_DIMS || !ne)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_new_tensor: n_dims %d not in 1..4", n_dims);
    int64_t n = 1;
    int64_t full[4] = {1, 1, 1, 1};
    for (int i = 0; i < n_dims; i++) {
        if (ne[i] < 0) return bnb_fail_null(BNB_ERR_SHAPE, "bnb_new_tensor: dim %d is negative (%lld)", i, (long long)ne[i]);
        if (ne[i] > 0 && n > INT64_MAX / 16 / ne[i])
            return bnb_fail_null(BNB_ERR_SHAPE, "bnb_new_tensor: element count overflows");
        full[i] = ne[i];
        n *= ne[i];
    }
    const bnb_type_traits *tr = bnb_type_get_traits(type);
    if (tr->is_quantized) {
        if (qp.block < 0) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_new_tensor: negative block size");
    }
    tensor_node *node = bnb_ctx_alloc(ctx, sizeof *node);
    if (!node) return NULL;
    memset(node, 0, sizeof *node);
    bnb_tensor *t = &node->t;
    t->type = type;
    t->ctx = ctx;
    t->quant = qp;
    for (int i = 0; i < 4; i++) t->ne[i] = full[i];
    /* strides: plain types packed; quantized kinds count in elements of 1 byte (codes) for addressing rows */
    size_t es = tr->is_quantized ? 1 : tr->type_size;
    t->nb[0] = es;
    for (int i = 1; i < 4; i++) t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
    if (want_data && !ctx->no_alloc) {
        size_t bytes = bnb_nbytes(t);
        t->data = bnb_ctx_alloc(ctx, bytes ? bytes : 1);
        if (!t->data) return NULL;
    }
    /* link at the tail */
    if (!ctx->first)
        ctx->first = t;
    else
        ((tensor_node *)ctx->last)->next = node;
    ctx->last = t;
    ctx->n_tensors++;
    return t;
}

bnb_tensor *bnb_new_tensor(bnb_context *ctx, bnb_type type, int n_dims, const int64_t *ne) {
    bnb_quant_params qp = {0};
    if (bnb_type_get_traits(type) && bnb_type_get_traits(type)->is_quantized)
        return bnb_fail_null(BNB_ERR_TYPE, "bnb_new_tensor: %s is quantized; use bnb_new_tensor_quant",
                             bnb_type_name(type));
    return new_tensor_impl(ctx, type, n_dims, ne, qp, true);
}

bnb_tensor *bnb_new_tensor_quant(bnb_context *ctx, bnb_type type, int n_dims, const int64_t *ne,
                                 bnb_quant_params qp) {
    return new_tensor_impl(ctx, type, n_dims, ne, qp, true);
}

bnb_tensor *bnb_new_tensor_1d(bnb_context *ctx, bnb_type type, int64_t ne0) {
    return bnb_new_tensor(ctx, type, 1, (int64_t[]){ne0});
}
bnb_tensor *bnb_new_tensor_2d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1) {
    return bnb_new_tensor(ctx, type, 2, (int64_t[]){ne0, ne1});
}
bnb_tensor *bnb_new_tensor_3d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    return bnb_new_tensor(ctx, type, 3, (int64_t[]){ne0, ne1, ne2});
}
bnb_tensor *bnb_new_tensor_4d(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    return bnb_new_tensor(ctx, type, 4, (int64_t[]){ne0, ne1, ne2, ne3});
}

bnb_tensor *bnb_dup_tensor(bnb_context *ctx, const bnb_tensor *a) {
    if (!bnb_check_src("bnb_dup_tensor", a, "a")) return NULL;
    return new_tensor_impl(ctx, a->type, 4, a->ne, a->quant, true);
}

bnb_tensor *bnb_new_op_tensor(bnb_context *ctx, bnb_op op, bnb_type type, const int64_t ne[4]) {
    if (!ctx) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: ctx is NULL", bnb_op_name(op));
    bnb_quant_params qp = {0};
    bnb_tensor *t = new_tensor_impl(ctx, type, 4, ne, qp, false);
    if (t) t->op = op;
    return t;
}

bnb_tensor *bnb_new_view_tensor(bnb_context *ctx, bnb_op op, bnb_tensor *a, const int64_t ne[4], const size_t nb[4],
                                size_t offset) {
    bnb_tensor *t = new_tensor_impl(ctx, a->type, 4, ne, a->quant, false);
    if (!t) return NULL;
    t->op = op;
    for (int i = 0; i < 4; i++) t->nb[i] = nb[i];
    t->src[0] = a;
    bnb_tensor *base = a->view_src ? a->view_src : a;
    t->view_src = base;
    t->view_offs = (a->view_src ? a->view_offs : 0) + offset;
    bnb_view_init(t);
    return t;
}

void bnb_view_init(bnb_tensor *t) {
    if (!t->view_src) return;
    t->buffer = t->view_src->buffer;
    t->data = t->view_src->data ? (uint8_t *)t->view_src->data + t->view_offs : NULL;
}

bnb_tensor *bnb_set_name(bnb_tensor *t, const char *name) {
    if (!t) return NULL;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    return t;
}
bnb_tensor *bnb_set_flags(bnb_tensor *t, uint32_t flags) {
    if (t) t->flags |= flags;
    return t;
}
bnb_tensor *bnb_set_param(bnb_tensor *t) { return bnb_set_flags(t, BNB_FLAG_PARAM); }
bnb_tensor *bnb_set_input(bnb_tensor *t) { return bnb_set_flags(t, BNB_FLAG_INPUT); }
bnb_tensor *bnb_set_output(bnb_tensor *t) { return bnb_set_flags(t, BNB_FLAG_OUTPUT); }

int64_t bnb_nelements(const bnb_tensor *t) { return t ? t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] : 0; }
int64_t bnb_nrows(const bnb_tensor *t) { return t ? t->ne[1] * t->ne[2] * t->ne[3] : 0; }

size_t bnb_nbytes(const bnb_tensor *t) {
    if (!t) return 0;
    const bnb_type_traits *tr = bnb_type_get_traits(t->type);
    if (tr->is_quantized) return bnb_type_nbytes(t->type, bnb_nelements(t), t->ne[0], t->quant);
    if (bnb_nelements(t) == 0) return 0;
    size_t bytes = tr->type_size;
    for (int i = 0; i < 4; i++) bytes += (size_t)(t->ne[i] - 1) * t->nb[i];
    return bytes;
}

int bnb_n_dims(const bnb_tensor *t) {
    for (int i = 3; i >= 1; i--)
        if (t->ne[i] > 1) return i + 1;
    return 1;
}

bool bnb_is_contiguous(const bnb_tensor *t) {
    const bnb_type_traits *tr = bnb_type_get_traits(t->type);
    if (tr->is_quantized) return t->view_src == NULL;
    size_t expect = tr->type_size;
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] != 1 && t->nb[i] != expect) return false;
        expect *= (size_t)t->ne[i];
    }
    return true;
}

bool bnb_same_shape(const bnb_tensor *a, const bnb_tensor *b) {
    for (int i = 0; i < 4; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}
