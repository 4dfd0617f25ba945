/* The forward graph of the transformer for n tokens at positions n_past.. (prefill when n > 1, decode when n = 1).
 *
 * Per layer:  h = rms_norm(x) * attn_norm
 *             q, k, v = Wq h, Wk h, Wv h; q, k rotated (RoPE at the token positions)
 *             k, v written into the cache at n_past.. (CPY nodes, built first so they run before the reads)
 *             attention over cache positions 0 .. n_past+n-1 with the causal mask (softmax ne0 > ne1 when n_past > 0),
 *             query head h reading kv head h / (n_head / n_head_kv) (mul_mat's batch broadcast)
 *             x += Wo attn;  h = rms_norm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * Wup h)
 * Then logits = Wout (rms_norm(x) * output_norm) for the last token or all of them. */
#include "transformer.h"

#include <math.h>
#include <stdlib.h>

bnb_tensor *bnb_model_linear(bnb_context *ctx, const bnb_model *m, bnb_tensor *w, bnb_tensor *x) {
    if (w->type == BNB_TYPE_I8_ROW) return bnb_matmul_int8(ctx, x, w, m->params.int8_threshold, NULL);
    return bnb_mul_mat(ctx, w, x);
}

void bnb_model_graph_release(bnb_model_graph *g) {
    if (!g) return;
    bnb_context_free(g->ctx); /* releases the graph's plan buffer too */
    if (g->inputs) bnb_buffer_free(g->inputs);
    memset(g, 0, sizeof *g);
}

#define CHECK(t)                                                                                                      \
    do {                                                                                                              \
        if (!(t)) return bnb_last_status() != BNB_OK ? bnb_last_status() : BNB_ERR_GRAPH;                             \
    } while (0)

static bnb_tensor *norm(bnb_context *ctx, const bnb_model *m, bnb_tensor *x, bnb_tensor *w) {
    bnb_tensor *y = bnb_rms_norm(ctx, x, m->cfg.rms_eps);
    return y ? bnb_mul(ctx, y, w) : NULL;
}

/* One layer's attention; returns the attention output [n_head * hd, n] in *out. The cache writes are built into
 * the graph here, before anything that reads the cache. */
static bnb_status attention(bnb_model *m, bnb_context *ctx, bnb_graph *gr, const bnb_model_layer *L, bnb_tensor *h,
                            bnb_tensor *pos, int64_t n, int64_t n_past, bnb_tensor **out) {
    const bnb_model_config *c = &m->cfg;
    const int64_t hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv, n_ctx = m->n_ctx, n_kv = n_past + n;
    bnb_tensor *q = bnb_model_linear(ctx, m, L->wq, h);
    bnb_tensor *k = bnb_model_linear(ctx, m, L->wk, h);
    bnb_tensor *v = bnb_model_linear(ctx, m, L->wv, h);
    CHECK(q && k && v);
    q = bnb_reshape_3d(ctx, q, hd, nh, n);
    k = bnb_reshape_3d(ctx, k, hd, nkv, n);
    v = bnb_reshape_3d(ctx, v, hd, nkv, n);
    CHECK(q && k && v);
    q = bnb_rope(ctx, q, pos, (int)hd, c->rope_mode, c->rope_base);
    k = bnb_rope(ctx, k, pos, (int)hd, c->rope_mode, c->rope_base);
    CHECK(q && k);

    const size_t ek = bnb_type_size(L->k_cache->type), ev = bnb_type_size(L->v_cache->type);
    /* k -> k_cache[:, n_past.., :] seen as [hd, nkv, n] */
    bnb_tensor *k_dst = bnb_view(ctx, L->k_cache, 3, (const int64_t[]){hd, nkv, n},
                                 (const size_t[]){ek, (size_t)(hd * n_ctx) * ek, (size_t)hd * ek},
                                 (size_t)(n_past * hd) * ek);
    /* v -> v_cache[n_past.., :, :] (transposed cache [n_ctx, hd, nkv]) seen as [hd, nkv, n] */
    bnb_tensor *v_dst = bnb_view(ctx, L->v_cache, 3, (const int64_t[]){n, hd, nkv},
                                 (const size_t[]){ev, (size_t)n_ctx * ev, (size_t)(n_ctx * hd) * ev},
                                 (size_t)n_past * ev);
    CHECK(k_dst && v_dst);
    v_dst = bnb_permute(ctx, v_dst, 2, 0, 1, 3);
    CHECK(v_dst);
    bnb_tensor *k_w = bnb_cpy(ctx, k, k_dst), *v_w = bnb_cpy(ctx, v, v_dst);
    CHECK(k_w && v_w);
    bnb_status st = bnb_graph_build(gr, k_w);
    if (st == BNB_OK) st = bnb_graph_build(gr, v_w);
    if (st != BNB_OK) return st;

    /* reads of the cache: K [hd, n_kv, nkv], V^T [n_kv, hd, nkv] */
    bnb_tensor *K = bnb_view(ctx, L->k_cache, 3, (const int64_t[]){hd, n_kv, nkv},
                             (const size_t[]){ek, (size_t)hd * ek, (size_t)(hd * n_ctx) * ek}, 0);
    bnb_tensor *V = bnb_view(ctx, L->v_cache, 3, (const int64_t[]){n_kv, hd, nkv},
                             (const size_t[]){ev, (size_t)n_ctx * ev, (size_t)(n_ctx * hd) * ev}, 0);
    bnb_tensor *Q = bnb_permute(ctx, q, 0, 2, 1, 3); /* [hd, n, nh] */
    CHECK(K && V && Q);
    bnb_tensor *kq = bnb_mul_mat(ctx, K, Q); /* [n_kv, n, nh] */
    CHECK(kq);
    bnb_tensor *p = bnb_softmax(ctx, kq, 1.0f / sqrtf((float)hd), true);
    CHECK(p);
    bnb_tensor *o = bnb_mul_mat(ctx, V, p); /* [hd, n, nh] */
    CHECK(o);
    o = bnb_permute(ctx, o, 0, 2, 1, 3); /* [hd, nh, n] */
    CHECK(o);
    o = bnb_cont(ctx, o);
    CHECK(o);
    *out = bnb_reshape_2d(ctx, o, hd * nh, n);
    CHECK(*out);
    return BNB_OK;
}

bnb_status bnb_model_build_graph(bnb_model *m, int64_t n, int64_t n_past, bool all_logits, bnb_model_graph *g) {
    const bnb_model_config *c = &m->cfg;
    memset(g, 0, sizeof *g);
    const size_t max_nodes = (size_t)(c->n_layer * 64 + 64);
    const size_t mem = max_nodes * 1024 + (size_t)(1 << 20);
    g->ctx = bnb_context_new((bnb_context_params){.mem_size = mem, .no_alloc = true});
    if (!g->ctx) return bnb_last_status();
    bnb_context *ctx = g->ctx;
    g->graph = bnb_graph_new(ctx, max_nodes);
    CHECK(g->graph);
    g->tokens = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n), "tokens"));
    g->pos = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n), "positions"));
    CHECK(g->tokens && g->pos);
    g->inputs = bnb_backend_alloc_tensors(m->backend, ctx);
    CHECK(g->inputs);

    bnb_tensor *x = bnb_get_rows(ctx, m->tok_embd, g->tokens); /* F32 [n_embd, n] */
    CHECK(x);
    for (int64_t il = 0; il < c->n_layer; il++) {
        const bnb_model_layer *L = &m->layers[il];
        bnb_tensor *h = norm(ctx, m, x, L->attn_norm);
        CHECK(h);
        bnb_tensor *attn = NULL;
        bnb_status st = attention(m, ctx, g->graph, L, h, g->pos, n, n_past, &attn);
        if (st != BNB_OK) return st;
        bnb_tensor *proj = bnb_model_linear(ctx, m, L->wo, attn);
        CHECK(proj);
        x = bnb_add(ctx, x, proj);
        CHECK(x);
        h = norm(ctx, m, x, L->ffn_norm);
        CHECK(h);
        bnb_tensor *gate = bnb_model_linear(ctx, m, L->w_gate, h);
        bnb_tensor *up = bnb_model_linear(ctx, m, L->w_up, h);
        CHECK(gate && up);
        gate = bnb_silu(ctx, gate);
        CHECK(gate);
        bnb_tensor *act = bnb_mul(ctx, gate, up);
        CHECK(act);
        bnb_tensor *down = bnb_model_linear(ctx, m, L->w_down, act);
        CHECK(down);
        x = bnb_add(ctx, x, down);
        CHECK(x);
    }
    if (!all_logits && n > 1) {
        x = bnb_slice(ctx, x, 1, n - 1, 1);
        CHECK(x);
    }
    x = norm(ctx, m, x, m->output_norm);
    CHECK(x);
    g->logits = bnb_model_linear(ctx, m, m->output ? m->output : m->tok_embd, x);
    CHECK(g->logits);
    bnb_set_name(g->logits, "logits");
    bnb_status st = bnb_graph_build(g->graph, g->logits);
    if (st != BNB_OK) return st;
    g->n = n;
    g->n_past = n_past;
    g->all_logits = all_logits;
    return BNB_OK;
}
