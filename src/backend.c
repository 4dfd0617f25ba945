/* Backend-independent parts: buffers, placing tensors, host copies with conversion, graph compute dispatch. */
#include "bnb-impl.h"

#include <stdint.h>
#include <stdlib.h>

const char *bnb_backend_name(const bnb_backend *be) { return be ? be->iface->name : "(null)"; }
bool bnb_backend_is_cpu(const bnb_backend *be) { return be && be->iface->is_cpu; }

void bnb_backend_free(bnb_backend *be) {
    if (be) be->iface->free(be);
}

bnb_status bnb_backend_synchronize(bnb_backend *be) {
    if (!be) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_backend_synchronize: backend is NULL");
    return be->iface->synchronize ? be->iface->synchronize(be) : BNB_OK;
}

bnb_status bnb_backend_memory(bnb_backend *be, size_t *in_use, size_t *peak) {
    if (!be) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_backend_memory: backend is NULL");
    size_t u = 0, p = 0;
    bnb_status st = be->iface->memory ? be->iface->memory(be, &u, &p) : BNB_OK;
    if (in_use) *in_use = u;
    if (peak) *peak = p;
    return st;
}

void bnb_backend_set_graph_capture(bnb_backend *be, bool enable) {
    if (be && be->iface->set_graph_capture) be->iface->set_graph_capture(be, enable);
}

bool bnb_backend_supports(bnb_backend *be, const bnb_tensor *t) {
    if (!be || !t) return false;
    if (t->op == BNB_OP_NONE || bnb_op_is_view(t->op)) return true;
    return be->iface->supports(be, t);
}

bnb_buffer *bnb_backend_alloc_buffer(bnb_backend *be, size_t size) {
    if (!be) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_backend_alloc_buffer: backend is NULL");
    bnb_buffer *buf = calloc(1, sizeof *buf);
    if (!buf) return bnb_fail_null(BNB_ERR_OOM, "bnb_backend_alloc_buffer: out of host memory");
    buf->backend = be;
    buf->size = size;
    buf->base = be->iface->alloc(be, size ? size : 1);
    if (!buf->base) {
        free(buf);
        return NULL; /* the backend set the error */
    }
    return buf;
}

static bool ptr_array_add(void ***arr, int *n, int *cap, void *p) {
    for (int i = 0; i < *n; i++)
        if ((*arr)[i] == p) return true;
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        void **na = realloc(*arr, (size_t)nc * sizeof *na);
        if (!na) return false;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return true;
}

static void ptr_array_remove(void **arr, int *n, void *p) {
    for (int i = 0; i < *n; i++)
        if (arr[i] == p) {
            arr[i] = arr[--*n];
            return;
        }
}

bnb_status bnb_buffer_link_context(bnb_buffer *buf, bnb_context *ctx) {
    if (!ptr_array_add((void ***)&buf->ctxs, &buf->n_ctxs, &buf->cap_ctxs, ctx) ||
        !ptr_array_add((void ***)&ctx->buffers, &ctx->n_buffers, &ctx->cap_buffers, buf))
        return bnb_fail(BNB_ERR_OOM, "bnb_buffer_place: out of host memory");
    return BNB_OK;
}

void bnb_buffer_unlink_context(bnb_buffer *buf, bnb_context *ctx) {
    ptr_array_remove((void **)buf->ctxs, &buf->n_ctxs, ctx);
    ptr_array_remove((void **)ctx->buffers, &ctx->n_buffers, buf);
}

void bnb_buffer_free(bnb_buffer *buf) {
    if (!buf) return;
    /* tensors placed in this buffer (and views of them) lose their data */
    while (buf->n_ctxs > 0) {
        bnb_context *ctx = buf->ctxs[buf->n_ctxs - 1];
        for (bnb_tensor *t = bnb_ctx_next_tensor(ctx, NULL); t; t = bnb_ctx_next_tensor(ctx, t)) {
            if (t->buffer == buf || (t->view_src && t->view_src->buffer == buf)) {
                t->data = NULL;
                t->buffer = NULL;
            }
        }
        bnb_buffer_unlink_context(buf, ctx);
    }
    free(buf->ctxs);
    buf->backend->iface->dealloc(buf->backend, buf->base, buf->size);
    free(buf);
}

size_t bnb_buffer_size(const bnb_buffer *buf) { return buf ? buf->size : 0; }

bnb_status bnb_buffer_clear(bnb_buffer *buf, uint8_t value) {
    if (!buf) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_buffer_clear: buffer is NULL");
    return buf->backend->iface->fill(buf->backend, buf->base, value, buf->size);
}

bnb_status bnb_buffer_place(bnb_buffer *buf, bnb_tensor *t, size_t offset) {
    if (!buf || !t) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_buffer_place: %s is NULL", buf ? "tensor" : "buffer");
    if (t->view_src) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_buffer_place: '%s' is a view", t->name);
    size_t bytes = bnb_nbytes(t);
    if (offset % BNB_ALIGN || offset > buf->size || bytes > buf->size - offset)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_buffer_place: '%s' (%zu bytes) at offset %zu does not fit a buffer of "
                        "%zu bytes (offsets must be %d-aligned)", t->name, bytes, offset, buf->size, BNB_ALIGN);
    bnb_status st = bnb_buffer_link_context(buf, t->ctx);
    if (st != BNB_OK) return st;
    t->data = (uint8_t *)buf->base + offset;
    t->buffer = buf;
    return BNB_OK;
}

static bool needs_leaf_alloc(const bnb_tensor *t) {
    return t->op == BNB_OP_NONE && !t->view_src && !t->data;
}

bnb_buffer *bnb_backend_alloc_tensors(bnb_backend *be, bnb_context *ctx) {
    if (!be || !ctx) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_backend_alloc_tensors: %s is NULL", be ? "ctx" : "backend");
    size_t total = 0;
    for (bnb_tensor *t = bnb_ctx_next_tensor(ctx, NULL); t; t = bnb_ctx_next_tensor(ctx, t))
        if (needs_leaf_alloc(t)) total += BNB_PAD(bnb_nbytes(t) ? bnb_nbytes(t) : 1, BNB_ALIGN);
    bnb_buffer *buf = bnb_backend_alloc_buffer(be, total ? total : BNB_ALIGN);
    if (!buf) return NULL;
    size_t off = 0;
    for (bnb_tensor *t = bnb_ctx_next_tensor(ctx, NULL); t; t = bnb_ctx_next_tensor(ctx, t)) {
        if (!needs_leaf_alloc(t)) continue;
        bnb_buffer_place(buf, t, off);
        off += BNB_PAD(bnb_nbytes(t) ? bnb_nbytes(t) : 1, BNB_ALIGN);
    }
    /* views of the newly placed leaves */
    for (bnb_tensor *t = bnb_ctx_next_tensor(ctx, NULL); t; t = bnb_ctx_next_tensor(ctx, t))
        if (t->view_src) bnb_view_init(t);
    return buf;
}

/* ---- host copies */
static bnb_status check_copy(const char *fn, const bnb_tensor *t, size_t offset, size_t size) {
    if (!t) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor is NULL", fn);
    if (!t->data) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: '%s' has no data (not allocated)", fn, t->name);
    size_t nbytes = bnb_nbytes(t);
    if (offset > nbytes || size > nbytes - offset)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: bytes [%zu, %zu) outside '%s' (%zu bytes)", fn, offset, offset + size,
                        t->name, nbytes);
    return BNB_OK;
}

static bnb_status copy_in(bnb_tensor *t, const void *src, size_t offset, size_t size) {
    uint8_t *dst = (uint8_t *)t->data + offset;
    if (!t->buffer || t->buffer->backend->iface->is_cpu) {
        memcpy(dst, src, size);
        return BNB_OK;
    }
    return t->buffer->backend->iface->copy_in(t->buffer->backend, dst, src, size);
}

static bnb_status copy_out(const bnb_tensor *t, void *dst, size_t offset, size_t size) {
    const uint8_t *src = (const uint8_t *)t->data + offset;
    if (!t->buffer || t->buffer->backend->iface->is_cpu) {
        memcpy(dst, src, size);
        return BNB_OK;
    }
    return t->buffer->backend->iface->copy_out(t->buffer->backend, dst, src, size);
}

bnb_status bnb_tensor_set(bnb_tensor *t, const void *src, size_t offset, size_t size) {
    bnb_status st = check_copy("bnb_tensor_set", t, offset, size);
    if (st != BNB_OK) return st;
    if (size && !src) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tensor_set: src is NULL");
    return size ? copy_in(t, src, offset, size) : BNB_OK;
}

bnb_status bnb_tensor_get(const bnb_tensor *t, void *dst, size_t offset, size_t size) {
    bnb_status st = check_copy("bnb_tensor_get", t, offset, size);
    if (st != BNB_OK) return st;
    if (size && !dst) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tensor_get: dst is NULL");
    return size ? copy_out(t, dst, offset, size) : BNB_OK;
}

static bnb_status check_f32_copy(const char *fn, const bnb_tensor *t, const void *p, int64_t n) {
    if (!t) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor is NULL", fn);
    if (n != bnb_nelements(t))
        return bnb_fail(BNB_ERR_SHAPE, "%s: '%s' has %lld elements, %lld given", fn, t->name,
                        (long long)bnb_nelements(t), (long long)n);
    if (n && !p) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: host pointer is NULL", fn);
    if (!t->data && n) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: '%s' has no data (not allocated)", fn, t->name);
    if (!bnb_is_contiguous(t))
        return bnb_fail(BNB_ERR_SHAPE, "%s: '%s' is not contiguous (copy it with bnb_cont first)", fn, t->name);
    return BNB_OK;
}

bnb_status bnb_tensor_set_f32(bnb_tensor *t, const float *src, int64_t n) {
    bnb_status st = check_f32_copy("bnb_tensor_set_f32", t, src, n);
    if (st != BNB_OK || n == 0) return st;
    const bnb_type_traits *tr = bnb_type_get_traits(t->type);
    if (t->type == BNB_TYPE_F32) return copy_in(t, src, 0, (size_t)n * 4);
    size_t bytes = bnb_nbytes(t);
    bool host_direct = !t->buffer || t->buffer->backend->iface->is_cpu;
    void *tmp = host_direct ? t->data : malloc(bytes);
    if (!tmp) return bnb_fail(BNB_ERR_OOM, "bnb_tensor_set_f32: out of host memory (%zu bytes)", bytes);
    if (tr->is_quantized) {
        st = bnb_quant_host_from_f32(t, src, tmp);
    } else {
        tr->from_f32(src, tmp, n);
    }
    if (st == BNB_OK && !host_direct) st = copy_in(t, tmp, 0, bytes);
    if (!host_direct) free(tmp);
    return st;
}

bnb_status bnb_tensor_get_f32(const bnb_tensor *t, float *dst, int64_t n) {
    bnb_status st = check_f32_copy("bnb_tensor_get_f32", t, dst, n);
    if (st != BNB_OK || n == 0) return st;
    const bnb_type_traits *tr = bnb_type_get_traits(t->type);
    if (t->type == BNB_TYPE_F32) return copy_out(t, dst, 0, (size_t)n * 4);
    size_t bytes = bnb_nbytes(t);
    bool host_direct = !t->buffer || t->buffer->backend->iface->is_cpu;
    void *tmp = host_direct ? t->data : malloc(bytes);
    if (!tmp) return bnb_fail(BNB_ERR_OOM, "bnb_tensor_get_f32: out of host memory (%zu bytes)", bytes);
    if (!host_direct) st = copy_out(t, tmp, 0, bytes);
    if (st == BNB_OK) {
        if (tr->is_quantized)
            st = bnb_quant_host_to_f32(t, tmp, dst);
        else
            tr->to_f32(tmp, dst, n);
    }
    if (!host_direct) free(tmp);
    return st;
}

/* ---- compute */
bnb_status bnb_graph_compute(bnb_backend *be, bnb_graph *g) {
    if (!be || !g) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_graph_compute: %s is NULL", be ? "graph" : "backend");
    for (int i = 0; i < g->n_nodes; i++) {
        const bnb_tensor *t = g->nodes[i];
        if (!bnb_backend_supports(be, t)) {
            char s[64];
            return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_graph_compute: %s does not support %s on %s %s", bnb_backend_name(be),
                            bnb_op_name(t->op), bnb_type_name(t->src[0] ? t->src[0]->type : t->type),
                            bnb_shape_str(t, s, sizeof s));
        }
    }
    bool replan = g->plan_backend != be;
    for (int i = 0; i < g->n_leafs && !replan; i++) {
        const bnb_tensor *l = g->leafs[i];
        if (!l->data && bnb_nbytes(l) > 0) replan = true; /* allocate reports the error */
        else if (l->buffer && l->buffer->backend != be && !(be->iface->is_cpu && l->buffer->backend->iface->is_cpu)) replan = true;
        else if (!l->buffer && !be->iface->is_cpu && l->data) replan = true;
    }
    if (replan) {
        bnb_status st = bnb_graph_allocate(be, g);
        if (st != BNB_OK) return st;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->view_src) bnb_view_init(g->nodes[i]);
    return be->iface->graph_compute(be, g);
}
