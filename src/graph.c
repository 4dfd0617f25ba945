/* Graph construction: topological order of the nodes reachable from the outputs, with cycle detection. */
#include "bnb-impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

bnb_graph *bnb_graph_new(bnb_context *ctx, size_t max_nodes) {
    if (!ctx) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_graph_new: ctx is NULL");
    if (max_nodes == 0) max_nodes = 8192;
    if (max_nodes > (1u << 24)) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_graph_new: max_nodes %zu too large", max_nodes);
    bnb_graph *g = bnb_ctx_alloc(ctx, sizeof *g);
    if (!g) return NULL;
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->size = (int)max_nodes;
    g->hash_size = max_nodes * 4 + 1;
    g->nodes = bnb_ctx_alloc(ctx, max_nodes * sizeof(bnb_tensor *));
    g->leafs = bnb_ctx_alloc(ctx, max_nodes * sizeof(bnb_tensor *));
    g->hash = bnb_ctx_alloc(ctx, g->hash_size * sizeof(bnb_tensor *));
    g->plan_offsets = bnb_ctx_alloc(ctx, max_nodes * sizeof(size_t));
    if (!g->nodes || !g->leafs || !g->hash || !g->plan_offsets) return NULL;
    memset(g->hash, 0, g->hash_size * sizeof(bnb_tensor *));
    g->next_in_ctx = ctx->graphs;
    ctx->graphs = g;
    return g;
}

static size_t hash_slot(const bnb_graph *g, const bnb_tensor *t) {
    size_t h = ((uintptr_t)t >> 4) % g->hash_size;
    while (g->hash[h] && g->hash[h] != t) h = (h + 1) % g->hash_size;
    return h;
}

/* Iterative DFS: post-order emits each node after its sources. A source found "in progress" closes a cycle.
 * Views are nodes too, so every tensor with an op is a node; leaves are tensors without an op. */
enum { MARK_NONE = 0, MARK_ACTIVE = 1, MARK_DONE = 2 };
typedef struct {
    bnb_tensor *t;
    int next_src;
} dfs_frame;

static bnb_status visit(bnb_graph *g, bnb_tensor *root, dfs_frame *stack, uint8_t *marks) {
    int sp = 0;
    size_t h = hash_slot(g, root);
    if (g->hash[h]) return BNB_OK; /* already in the graph */
    g->hash[h] = root;
    marks[h] = MARK_ACTIVE;
    stack[sp++] = (dfs_frame){root, 0};
    while (sp > 0) {
        dfs_frame *f = &stack[sp - 1];
        if (f->next_src < BNB_MAX_SRC) {
            bnb_tensor *s = f->t->src[f->next_src++];
            if (!s) continue;
            size_t hs = hash_slot(g, s);
            if (g->hash[hs]) {
                if (marks[hs] == MARK_ACTIVE)
                    return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_build: cycle through %s '%s'", bnb_op_name(s->op), s->name);
                continue;
            }
            if ((size_t)sp >= (size_t)g->size)
                return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_build: graph deeper than max_nodes (%d)", g->size);
            if ((size_t)(g->n_nodes + g->n_leafs) + (size_t)sp >= g->hash_size / 4)
                return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_build: more than max_nodes (%d) tensors", g->size);
            g->hash[hs] = s;
            marks[hs] = MARK_ACTIVE;
            stack[sp++] = (dfs_frame){s, 0};
            continue;
        }
        bnb_tensor *t = f->t;
        marks[hash_slot(g, t)] = MARK_DONE;
        sp--;
        if (t->op == BNB_OP_NONE) {
            if (g->n_leafs >= g->size) return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_build: more than %d leafs", g->size);
            g->leafs[g->n_leafs++] = t;
        } else {
            if (g->n_nodes >= g->size) return bnb_fail(BNB_ERR_GRAPH, "bnb_graph_build: more than %d nodes", g->size);
            g->nodes[g->n_nodes++] = t;
        }
    }
    return BNB_OK;
}

bnb_status bnb_graph_build(bnb_graph *g, bnb_tensor *out) {
    if (!g || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_graph_build: %s is NULL", g ? "out" : "graph");
    /* marks live in a side array parallel to the hash (heap: graphs can be large, building is not hot) */
    uint8_t *marks = calloc(g->hash_size, 1);
    dfs_frame *stack = malloc((size_t)g->size * sizeof *stack);
    if (!marks || !stack) {
        free(marks);
        free(stack);
        return bnb_fail(BNB_ERR_OOM, "bnb_graph_build: out of host memory");
    }
    for (size_t i = 0; i < g->hash_size; i++)
        if (g->hash[i]) marks[i] = MARK_DONE;
    int n_nodes0 = g->n_nodes, n_leafs0 = g->n_leafs;
    bnb_status st = visit(g, out, stack, marks);
    if (st != BNB_OK) { /* roll back to the graph before this call: keep the old nodes, re-hash them */
        g->n_nodes = n_nodes0;
        g->n_leafs = n_leafs0;
        memset(g->hash, 0, g->hash_size * sizeof *g->hash);
        for (int i = 0; i < g->n_nodes; i++) g->hash[hash_slot(g, g->nodes[i])] = g->nodes[i];
        for (int i = 0; i < g->n_leafs; i++) g->hash[hash_slot(g, g->leafs[i])] = g->leafs[i];
    } else {
        out->flags |= BNB_FLAG_OUTPUT;
        g->plan_backend = NULL; /* the plan must be redone */
    }
    free(marks);
    free(stack);
    return st;
}

int bnb_graph_n_nodes(const bnb_graph *g) { return g ? g->n_nodes : 0; }
int bnb_graph_n_leafs(const bnb_graph *g) { return g ? g->n_leafs : 0; }

bnb_tensor *bnb_graph_node(const bnb_graph *g, int i) {
    if (!g) return NULL;
    if (i < 0) i += g->n_nodes;
    if (i < 0 || i >= g->n_nodes) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_graph_node: index out of range");
    return g->nodes[i];
}

bnb_tensor *bnb_graph_leaf(const bnb_graph *g, int i) {
    if (!g) return NULL;
    if (i < 0) i += g->n_leafs;
    if (i < 0 || i >= g->n_leafs) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_graph_leaf: index out of range");
    return g->leafs[i];
}

void bnb_graph_print(const bnb_graph *g) {
    if (!g) return;
    printf("graph: %d nodes, %d leafs\n", g->n_nodes, g->n_leafs);
    char s[64];
    for (int i = 0; i < g->n_nodes; i++) {
        const bnb_tensor *t = g->nodes[i];
        printf("  %3d %-18s %-6s %-20s %s\n", i, bnb_op_name(t->op), bnb_type_name(t->type),
               bnb_shape_str(t, s, sizeof s), t->name);
    }
}

void bnb_graph_release(bnb_graph *g) {
    if (!g) return;
    if (g->backend_state && g->backend_state_free) g->backend_state_free(g->backend_state);
    g->backend_state = NULL;
    if (g->plan_buffer) {
        for (int i = 0; i < g->n_nodes; i++) {
            bnb_tensor *t = g->nodes[i];
            if (t->buffer == g->plan_buffer) {
                t->data = NULL;
                t->buffer = NULL;
            }
        }
        bnb_buffer_free(g->plan_buffer);
    }
    g->plan_buffer = NULL;
    g->plan_backend = NULL;
}

void bnb_graph_free_plan(bnb_graph *g) { bnb_graph_release(g); }

size_t bnb_graph_mem_planned(const bnb_graph *g) { return g ? g->plan_bytes : 0; }
size_t bnb_graph_mem_naive(const bnb_graph *g) { return g ? g->naive_bytes : 0; }
