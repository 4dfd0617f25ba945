/* Reverse-mode autodiff: bnb_graph_backward appends the gradient nodes of a scalar loss to its graph.
 *
 * The pass: (1) mark the float tensors that lie on a path to a BNB_FLAG_PARAM tensor (only they get gradients);
 * (2) seed d loss = 1 with a FILL node; (3) walk the nodes from the loss back to the first, calling each op's rule
 * (src/ops/backward.c) with the node's finished gradient -- a node's gradient is complete once every node after it
 * has been visited, since the graph is in topological order; (4) give every param a contiguous F32 gradient and
 * build it into the graph as an output (optionally through an in-place accumulator). */
#include "bnb-impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct bnb_backward_ctx {
    bnb_context *ctx;
    size_t hash_size;
    const bnb_tensor **needs; /* open-addressing set of the tensors that need a gradient */
};

static size_t set_slot(const bnb_backward_ctx *bc, const bnb_tensor *t) {
    size_t h = ((uintptr_t)t >> 4) % bc->hash_size;
    while (bc->needs[h] && bc->needs[h] != t) h = (h + 1) % bc->hash_size;
    return h;
}

bnb_context *bnb_backward_context(bnb_backward_ctx *bc) { return bc->ctx; }

bool bnb_grad_needed(bnb_backward_ctx *bc, const bnb_tensor *t) {
    return t && bc->needs[set_slot(bc, t)] == t;
}

static bnb_status grad_accumulate(bnb_backward_ctx *bc, bnb_tensor *t, bnb_tensor *c, bool negate) {
    if (!bnb_grad_needed(bc, t)) return BNB_OK;
    if (!c) { /* the constructor of the contribution failed and said why */
        bnb_status s = bnb_last_status();
        return s != BNB_OK ? s : bnb_fail(BNB_ERR_GRAPH, "bnb_graph_backward: no gradient built for '%s'", t->name);
    }
    if (c->type != BNB_TYPE_F32) c = bnb_cast(bc->ctx, c, BNB_TYPE_F32);
    bnb_tensor *r;
    if (!t->grad) {
        r = c && !bnb_same_shape(c, t) ? bnb_repeat(bc->ctx, c, t) : c;
        if (r && negate) r = bnb_neg(bc->ctx, r);
    } else {
        /* add/sub broadcast c over the existing gradient, which always has t's shape */
        r = negate ? bnb_sub(bc->ctx, t->grad, c) : bnb_add(bc->ctx, t->grad, c);
    }
    if (!r) return bnb_last_status() != BNB_OK ? bnb_last_status() : BNB_ERR_OOM;
    t->grad = r;
    return BNB_OK;
}

bnb_status bnb_grad_add(bnb_backward_ctx *bc, bnb_tensor *t, bnb_tensor *c) { return grad_accumulate(bc, t, c, false); }
bnb_status bnb_grad_sub(bnb_backward_ctx *bc, bnb_tensor *t, bnb_tensor *c) { return grad_accumulate(bc, t, c, true); }

bnb_tensor *bnb_grad_accumulator(const bnb_tensor *param) {
    if (!param || !param->grad || param->grad->op != BNB_OP_ACC_GRAD) return NULL;
    return param->grad->src[0];
}

static bool is_param(const bnb_tensor *t) { return (t->flags & BNB_FLAG_PARAM) && bnb_type_is_float(t->type); }

static bnb_status backward(bnb_context *ctx, bnb_graph *g, bnb_tensor *loss, bool accumulate) {
    const char *fn = accumulate ? "bnb_graph_backward_accumulate" : "bnb_graph_backward";
    if (!ctx || !g || !loss) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: ctx, graph or loss is NULL", fn);
    if (bnb_nelements(loss) != 1 || !bnb_type_is_float(loss->type)) {
        char s[64];
        return bnb_fail(BNB_ERR_SHAPE, "%s: loss '%s' is %s %s: must be one float element", fn, loss->name,
                        bnb_type_name(loss->type), bnb_shape_str(loss, s, sizeof s));
    }
    int li = -1;
    for (int i = 0; i < g->n_nodes && li < 0; i++)
        if (g->nodes[i] == loss) li = i;
    if (li < 0)
        return bnb_fail(BNB_ERR_GRAPH, "%s: loss '%s' is not a node of the graph (bnb_graph_build it first)", fn,
                        loss->name);

    bnb_backward_ctx bc = {ctx, 2 * (size_t)(li + 1 + g->n_leafs) + 1, NULL};
    bc.needs = calloc(bc.hash_size, sizeof *bc.needs);
    /* params' accumulators from earlier backward passes, reused in accumulate mode */
    bnb_tensor **old_acc = calloc((size_t)(li + 1 + g->n_leafs), sizeof *old_acc);
    if (!bc.needs || !old_acc) {
        free(bc.needs);
        free(old_acc);
        return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", fn);
    }
    /* (1) tensors on a path to a param; stale gradients of earlier passes are forgotten */
    for (int i = 0; i < g->n_leafs; i++) {
        bnb_tensor *t = g->leafs[i];
        old_acc[li + 1 + i] = bnb_grad_accumulator(t);
        t->grad = NULL;
        if (is_param(t)) bc.needs[set_slot(&bc, t)] = t;
    }
    for (int i = 0; i <= li; i++) {
        bnb_tensor *t = g->nodes[i];
        old_acc[i] = bnb_grad_accumulator(t);
        t->grad = NULL;
        bool need = is_param(t);
        for (int s = 0; s < BNB_MAX_SRC && !need; s++) need = bnb_grad_needed(&bc, t->src[s]);
        if (need && bnb_type_is_float(t->type)) bc.needs[set_slot(&bc, t)] = t;
    }
    bnb_status st = BNB_OK;
    if (!bnb_grad_needed(&bc, loss)) {
        st = bnb_fail(BNB_ERR_GRAPH, "%s: no BNB_FLAG_PARAM tensor leads to loss '%s'", fn, loss->name);
        goto done;
    }
    /* (2) seed */
    loss->grad = bnb_fill(ctx, 4, loss->ne, 1.0f);
    if (!loss->grad) {
        st = bnb_last_status();
        goto done;
    }
    bnb_set_name(loss->grad, "grad(loss)");
    /* (3) rules, last node first */
    for (int i = li; i >= 0 && st == BNB_OK; i--) {
        bnb_tensor *t = g->nodes[i];
        if (!t->grad || !bnb_grad_needed(&bc, t)) continue;
        bool any_src = false;
        for (int s = 0; s < BNB_MAX_SRC; s++) any_src |= bnb_grad_needed(&bc, t->src[s]);
        if (any_src) st = bnb_op_backward(&bc, t, t->grad);
    }
    if (st != BNB_OK) goto done;
    /* (4) params: contiguous F32 gradients, optionally accumulated in place, built into g as outputs */
    for (int pass = 0; pass < 2 && st == BNB_OK; pass++) {
        int n = pass == 0 ? g->n_leafs : li + 1;
        for (int i = 0; i < n && st == BNB_OK; i++) {
            bnb_tensor *p = pass == 0 ? g->leafs[i] : g->nodes[i];
            if (!is_param(p) || !p->grad) continue;
            bnb_tensor *gr = p->grad;
            if (!bnb_is_contiguous(gr) || gr->type != BNB_TYPE_F32 || bnb_op_is_view(gr->op) || gr->op == BNB_OP_NONE)
                gr = bnb_cast(ctx, gr, BNB_TYPE_F32);
            if (gr && accumulate) {
                bnb_tensor *acc = old_acc[pass == 0 ? li + 1 + i : i];
                if (!acc || !bnb_same_shape(acc, p)) {
                    acc = bnb_new_tensor(ctx, BNB_TYPE_F32, 4, p->ne);
                    if (acc) {
                        char name[BNB_MAX_NAME];
                        snprintf(name, sizeof name, "grad_acc(%.50s)", p->name);
                        bnb_set_name(acc, name);
                        if (acc->data) memset(acc->data, 0, bnb_nbytes(acc));
                    }
                }
                gr = acc ? bnb_acc_grad(ctx, acc, gr) : NULL;
            }
            if (!gr) {
                st = bnb_last_status() != BNB_OK ? bnb_last_status() : BNB_ERR_OOM;
                break;
            }
            if (!gr->name[0]) {
                char name[BNB_MAX_NAME];
                snprintf(name, sizeof name, "grad(%.55s)", p->name);
                bnb_set_name(gr, name);
            }
            p->grad = gr;
            st = bnb_graph_build(g, gr);
        }
    }
done:
    if (st != BNB_OK) { /* leave no half-built gradients behind */
        for (int i = 0; i < g->n_leafs; i++) g->leafs[i]->grad = NULL;
        for (int i = 0; i <= li; i++) g->nodes[i]->grad = NULL;
    }
    free(bc.needs);
    free(old_acc);
    return st;
}

bnb_status bnb_graph_backward(bnb_context *ctx, bnb_graph *g, bnb_tensor *loss) {
    return backward(ctx, g, loss, false);
}

bnb_status bnb_graph_backward_accumulate(bnb_context *ctx, bnb_graph *g, bnb_tensor *loss) {
    return backward(ctx, g, loss, true);
}

bnb_status bnb_graph_reset_grads(bnb_graph *g) {
    if (!g) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_graph_reset_grads: graph is NULL");
    for (int i = 0; i < g->n_nodes; i++) {
        const bnb_tensor *t = g->nodes[i];
        if (t->op != BNB_OP_ACC_GRAD) continue;
        bnb_tensor *acc = t->src[0];
        size_t n = bnb_nbytes(acc);
        if (!acc->data)
            return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_reset_grads: accumulator '%s' has no data: allocate it with "
                            "bnb_backend_alloc_tensors", acc->name);
        if (acc->buffer) {
            bnb_backend *be = acc->buffer->backend;
            bnb_status st = be->iface->fill(be, acc->data, 0, n);
            if (st != BNB_OK) return st;
        } else {
            memset(acc->data, 0, n);
        }
    }
    return BNB_OK;
}
