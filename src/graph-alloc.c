/* Graph allocator: places every intermediate of a graph in ONE backend buffer, reusing the memory of tensors whose
 * last reader has run (liveness). Outputs are never reused. Views take their base's memory. */
#include "bnb-impl.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    size_t off, size;
} block;

typedef struct {
    block *free_blocks;
    int n_free, cap;
    size_t high; /* high-water mark */
} free_list;

/* Best fit among free blocks, else grow at the end. */
static size_t fl_alloc(free_list *fl, size_t size) {
    int best = -1;
    for (int i = 0; i < fl->n_free; i++)
        if (fl->free_blocks[i].size >= size && (best < 0 || fl->free_blocks[i].size < fl->free_blocks[best].size))
            best = i;
    if (best >= 0) {
        size_t off = fl->free_blocks[best].off;
        fl->free_blocks[best].off += size;
        fl->free_blocks[best].size -= size;
        if (fl->free_blocks[best].size == 0) {
            memmove(&fl->free_blocks[best], &fl->free_blocks[best + 1], (size_t)(fl->n_free - best - 1) * sizeof(block));
            fl->n_free--;
        }
        return off;
    }
    /* a free block touching the end can be extended */
    if (fl->n_free > 0) {
        block *last = &fl->free_blocks[fl->n_free - 1];
        if (last->off + last->size == fl->high) {
            size_t off = last->off;
            fl->high = off + size;
            fl->n_free--;
            return off;
        }
    }
    size_t off = fl->high;
    fl->high += size;
    return off;
}

/* Return a block, keeping the list sorted by offset and merging neighbours. cap is n_nodes+1: enough. */
static void fl_free(free_list *fl, size_t off, size_t size) {
    int i = 0;
    while (i < fl->n_free && fl->free_blocks[i].off < off) i++;
    memmove(&fl->free_blocks[i + 1], &fl->free_blocks[i], (size_t)(fl->n_free - i) * sizeof(block));
    fl->free_blocks[i] = (block){off, size};
    fl->n_free++;
    if (i + 1 < fl->n_free && fl->free_blocks[i].off + fl->free_blocks[i].size == fl->free_blocks[i + 1].off) {
        fl->free_blocks[i].size += fl->free_blocks[i + 1].size;
        memmove(&fl->free_blocks[i + 1], &fl->free_blocks[i + 2], (size_t)(fl->n_free - i - 2) * sizeof(block));
        fl->n_free--;
    }
    if (i > 0 && fl->free_blocks[i - 1].off + fl->free_blocks[i - 1].size == fl->free_blocks[i].off) {
        fl->free_blocks[i - 1].size += fl->free_blocks[i].size;
        memmove(&fl->free_blocks[i], &fl->free_blocks[i + 1], (size_t)(fl->n_free - i - 1) * sizeof(block));
        fl->n_free--;
    }
}

/* A node the allocator owns: an op result that is not a view and was not placed by the user. */
static bool planned_here(const bnb_graph *g, const bnb_tensor *t) {
    /* in-place nodes (e.g. optimizer updates) set view_src to the tensor they write into */
    if (t->op == BNB_OP_NONE || bnb_op_is_view(t->op) || t->view_src) return false;
    return t->data == NULL || (t->buffer && t->buffer == g->plan_buffer);
}

bnb_status bnb_graph_allocate(bnb_backend *be, bnb_graph *g) {
    int n = g->n_nodes;
    /* check leaves */
    for (int i = 0; i < g->n_leafs; i++) {
        bnb_tensor *l = g->leafs[i];
        if (!l->data && bnb_nbytes(l) > 0)
            return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_compute: leaf '%s' (%s) has no data: allocate it with "
                            "bnb_backend_alloc_tensors", l->name, bnb_type_name(l->type));
        if (l->data && !be->iface->is_cpu && (!l->buffer || l->buffer->backend != be))
            return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_compute: leaf '%s' lives on %s, the graph runs on %s",
                            l->name, l->buffer ? bnb_backend_name(l->buffer->backend) : "the host", bnb_backend_name(be));
        if (l->data && be->iface->is_cpu && l->buffer && !l->buffer->backend->iface->is_cpu)
            return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_compute: leaf '%s' lives on %s, the graph runs on %s",
                            l->name, bnb_backend_name(l->buffer->backend), bnb_backend_name(be));
    }
    /* forget the previous plan's placements */
    for (int i = 0; i < n; i++) {
        bnb_tensor *t = g->nodes[i];
        if (g->plan_buffer && t->buffer == g->plan_buffer && !t->view_src) {
            t->data = NULL;
            t->buffer = NULL;
        }
    }
    if (g->plan_buffer && g->plan_buffer->backend != be) {
        bnb_buffer_free(g->plan_buffer);
        g->plan_buffer = NULL;
    }
    /* last use: stash node index in op-free scratch arrays keyed by position */
    int *last_use = malloc((size_t)(n ? n : 1) * sizeof(int));
    free_list fl = {malloc((size_t)(n + 2) * sizeof(block)), 0, n + 2, 0};
    if (!last_use || !fl.free_blocks) {
        free(last_use);
        free(fl.free_blocks);
        return bnb_fail(BNB_ERR_OOM, "bnb_graph_compute: out of host memory while planning");
    }
    /* map tensor -> node index via a temporary tag in `extra` of planned nodes (restored afterwards) */
    void **saved_extra = malloc((size_t)(n ? n : 1) * sizeof(void *));
    if (!saved_extra) {
        free(last_use);
        free(fl.free_blocks);
        return bnb_fail(BNB_ERR_OOM, "bnb_graph_compute: out of host memory while planning");
    }
    for (int i = 0; i < n; i++) {
        saved_extra[i] = g->nodes[i]->extra;
        g->nodes[i]->extra = (void *)(intptr_t)(i + 1);
        last_use[i] = g->nodes[i]->flags & BNB_FLAG_OUTPUT ? INT32_MAX : i;
    }
    for (int i = 0; i < n; i++) {
        bnb_tensor *t = g->nodes[i];
        for (int s = 0; s < BNB_MAX_SRC; s++) {
            bnb_tensor *src = t->src[s];
            if (!src) continue;
            bnb_tensor *base = src->view_src ? src->view_src : src;
            if (base->op == BNB_OP_NONE) continue;
            int bi = (int)(intptr_t)base->extra - 1;
            if (bi >= 0 && bi < n && g->nodes[bi] == base && last_use[bi] != INT32_MAX) last_use[bi] = BNB_MAX(last_use[bi], i);
        }
        /* a view that is an output keeps its base alive */
        if (bnb_op_is_view(t->op) && (t->flags & BNB_FLAG_OUTPUT) && t->view_src) {
            int bi = (int)(intptr_t)t->view_src->extra - 1;
            if (bi >= 0 && bi < n && g->nodes[bi] == t->view_src) last_use[bi] = INT32_MAX;
        }
    }
    size_t naive = 0;
    for (int i = 0; i < n; i++) {
        bnb_tensor *t = g->nodes[i];
        g->plan_offsets[i] = SIZE_MAX;
        if (planned_here(g, t)) {
            size_t size = BNB_PAD(bnb_nbytes(t), BNB_ALIGN);
            if (size == 0) size = BNB_ALIGN;
            naive += size;
            g->plan_offsets[i] = fl_alloc(&fl, size);
        }
        /* free sources whose last reader is this node */
        for (int s = 0; s < BNB_MAX_SRC; s++) {
            bnb_tensor *src = t->src[s];
            if (!src) continue;
            bnb_tensor *base = src->view_src ? src->view_src : src;
            int bi = (int)(intptr_t)base->extra - 1;
            if (bi < 0 || bi >= n || g->nodes[bi] != base || last_use[bi] != i) continue;
            if (g->plan_offsets[bi] == SIZE_MAX) continue;
            last_use[bi] = -1; /* freed once even if read twice by this node */
            size_t size = BNB_PAD(bnb_nbytes(base), BNB_ALIGN);
            fl_free(&fl, g->plan_offsets[bi], size ? size : BNB_ALIGN);
        }
    }
    for (int i = 0; i < n; i++) g->nodes[i]->extra = saved_extra[i];
    free(saved_extra);
    free(last_use);
    free(fl.free_blocks);

    size_t need = fl.high ? fl.high : BNB_ALIGN;
    if (!g->plan_buffer || bnb_buffer_size(g->plan_buffer) < need) {
        if (g->plan_buffer) bnb_buffer_free(g->plan_buffer);
        g->plan_buffer = bnb_backend_alloc_buffer(be, need);
        if (!g->plan_buffer) return bnb_last_status() != BNB_OK ? bnb_last_status() : BNB_ERR_OOM;
    }
    for (int i = 0; i < n; i++) {
        bnb_tensor *t = g->nodes[i];
        if (g->plan_offsets[i] != SIZE_MAX) {
            t->data = (uint8_t *)g->plan_buffer->base + g->plan_offsets[i];
            t->buffer = g->plan_buffer;
        }
    }
    g->plan_bytes = fl.high;
    g->naive_bytes = naive;
    g->plan_backend = be;
    g->version++;
    return BNB_OK;
}
