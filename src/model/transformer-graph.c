/* The forward graph of the transformer for n tokens at positions n_past.. (prefill when n > 1, decode when n = 1).
 *
 * Per layer:  h = rms_norm(x) * attn_norm
 *             q, k, v = Wq h, Wk h, Wv h; q, k rotated (RoPE at the token positions)
 *             k, v written into the cache at n_past.. (CPY nodes, built first so they run before the reads)
 *             attention over cache positions 0 .. n_past+n-1 with the causal mask (softmax ne0 > ne1 when n_past > 0),
 *             query head h reading kv head h / (n_head / n_head_kv) (mul_mat's batch broadcast)
 *             x += Wo attn;  h = rms_norm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * Wup h)
 * Then logits = Wout (rms_norm(x) * output_norm) for the last token or all of them.
 * Cache index p + 1 holds position p; index 0 is the decode slot. One-token evals use a graph reused across tokens
 * (bnb_model_build_decode_graph; the scheme is described at bnb_model_graph in transformer.h). */
#include "transformer.h"
#ifdef BNB_HAVE_CUDA
#include "../cuda/backend-cuda.h" /* capture counters for BNB_DECODE_PROFILE */
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

bnb_tensor *bnb_model_linear(bnb_context *ctx, const bnb_model *m, bnb_tensor *w, bnb_tensor *x) {
    if (w->type == BNB_TYPE_I8_ROW) return bnb_matmul_int8(ctx, x, w, m->params.int8_threshold, NULL);
    return bnb_mul_mat(ctx, w, x);
}

void bnb_model_graph_release(bnb_model_graph *g) {
    if (!g) return;
    bnb_context_free(g->ctx); /* releases the graph's plan buffer too */
    free(g->patch);
    free(g->patch_base);
    free(g->patch_step);
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

/* Views of layer il's cache. K [hd, n_ctx + 1, nkv] per layer: `count` index rows from `index` seen as
 * [hd, count, nkv]; V^T [n_ctx + 1, hd, nkv] per layer: columns from `index` seen as [count, hd, nkv]. */
static bnb_tensor *k_view(bnb_context *ctx, const bnb_model *m, int64_t il, int64_t index, int64_t count) {
    const bnb_tensor *k = m->k_all;
    return bnb_view(ctx, m->k_all, 3, (const int64_t[]){k->ne[0], count, k->ne[2]},
                    (const size_t[]){k->nb[0], k->nb[1], k->nb[2]}, (size_t)il * k->nb[3] + (size_t)index * k->nb[1]);
}
static bnb_tensor *v_view(bnb_context *ctx, const bnb_model *m, int64_t il, int64_t index, int64_t count) {
    const bnb_tensor *v = m->v_all;
    return bnb_view(ctx, m->v_all, 3, (const int64_t[]){count, v->ne[1], v->ne[2]},
                    (const size_t[]){v->nb[0], v->nb[1], v->nb[2]}, (size_t)il * v->nb[3] + (size_t)index * v->nb[0]);
}

/* One layer's attention; returns the attention output [n_head * hd, n] in *out. The cache writes are built into
 * the graph here, before anything that reads the cache. Prefill (mask NULL): k, v go to indices n_past + 1 .., the
 * reads cover indices 1 .. n_past + n with the causal softmax. Decode (mask [n_kv + 1]): k, v go to slot 0, the
 * reads cover slot 0 and indices 1 .. n_kv, the mask hides what the token must not see. */
static bnb_status attention(bnb_model *m, bnb_model_graph *pg, int64_t il, const bnb_model_layer *L,
                            bnb_tensor *h, bnb_tensor *pos, int64_t n, int64_t n_past, bnb_tensor *mask,
                            int64_t n_kv_dec, bnb_tensor **out) {
    bnb_context *ctx = pg->ctx;
    bnb_graph *gr = pg->graph;
    const bnb_model_config *c = &m->cfg;
    const int64_t hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv, n_kv = n_past + n;
    bnb_tensor *q, *k, *v;
    if (n == 1 && L->w_qkv) { /* one matmul; q, k, v are consecutive pieces of its one column */
        bnb_tensor *qkv = bnb_model_linear(ctx, m, L->w_qkv, h);
        CHECK(qkv);
        const size_t e = sizeof(float);
        /* q and k heads are adjacent: one rotation for both */
        bnb_tensor *qk = bnb_view(ctx, qkv, 3, (const int64_t[]){hd, nh + nkv, 1},
                                  (const size_t[]){e, hd * e, (nh + nkv) * hd * e}, 0);
        CHECK(qk);
        qk = bnb_rope(ctx, qk, pos, (int)hd, c->rope_mode, c->rope_base);
        CHECK(qk);
        q = bnb_view(ctx, qk, 3, (const int64_t[]){hd, nh, 1}, (const size_t[]){e, hd * e, nh * hd * e}, 0);
        k = bnb_view(ctx, qk, 3, (const int64_t[]){hd, nkv, 1}, (const size_t[]){e, hd * e, nkv * hd * e},
                     (size_t)(nh * hd) * e);
        v = bnb_view(ctx, qkv, 3, (const int64_t[]){hd, nkv, 1}, (const size_t[]){e, hd * e, nkv * hd * e},
                     (size_t)((nh + nkv) * hd) * e);
        CHECK(q && k && v);
    } else {
        q = bnb_model_linear(ctx, m, L->wq, h);
        k = bnb_model_linear(ctx, m, L->wk, h);
        v = bnb_model_linear(ctx, m, L->wv, h);
        CHECK(q && k && v);
        q = bnb_reshape_3d(ctx, q, hd, nh, n);
        k = bnb_reshape_3d(ctx, k, hd, nkv, n);
        v = bnb_reshape_3d(ctx, v, hd, nkv, n);
        CHECK(q && k && v);
        q = bnb_rope(ctx, q, pos, (int)hd, c->rope_mode, c->rope_base);
        k = bnb_rope(ctx, k, pos, (int)hd, c->rope_mode, c->rope_base);
        CHECK(q && k);
    }

    const int64_t w_index = mask ? 0 : n_past + 1;
    /* k -> K rows w_index.. seen as [hd, nkv, n] */
    bnb_tensor *k_dst = k_view(ctx, m, il, w_index, n);
    /* v -> V^T columns w_index.. ([n, hd, nkv]) seen as [hd, nkv, n] */
    bnb_tensor *v_dst = v_view(ctx, m, il, w_index, n);
    CHECK(k_dst && v_dst);
    k_dst = bnb_permute(ctx, k_dst, 0, 2, 1, 3);
    v_dst = bnb_permute(ctx, v_dst, 2, 0, 1, 3);
    CHECK(k_dst && v_dst);
    bnb_tensor *k_w = bnb_cpy(ctx, k, k_dst), *v_w = bnb_cpy(ctx, v, v_dst);
    CHECK(k_w && v_w);
    if (mask && pg->direct) { /* the write views and the copies: their offsets move with the position */
        bnb_tensor *const moving[6] = {k_dst->src[0], k_dst, k_w, v_dst->src[0], v_dst, v_w};
        for (int i = 0; i < 6; i++) {
            pg->patch[pg->n_patch] = moving[i];
            pg->patch_base[pg->n_patch] = moving[i]->view_offs;
            pg->patch_step[pg->n_patch++] = i < 3 ? m->k_all->nb[1] : m->v_all->nb[0];
        }
    }
    bnb_status st = bnb_graph_build(gr, k_w);
    if (st == BNB_OK) st = bnb_graph_build(gr, v_w);
    if (st != BNB_OK) return st;

    /* reads of the cache: K [hd, kv, nkv], V^T [kv, hd, nkv] */
    const int64_t r0 = mask && !pg->direct ? 0 : 1; /* decode reads n_kv_dec + 1 from slot 0 (direct: index 1) */
    bnb_tensor *K = mask ? k_view(ctx, m, il, r0, n_kv_dec + 1) : k_view(ctx, m, il, 1, n_kv);
    bnb_tensor *V = mask ? v_view(ctx, m, il, r0, n_kv_dec + 1) : v_view(ctx, m, il, 1, n_kv);
    bnb_tensor *Q = bnb_permute(ctx, q, 0, 2, 1, 3); /* [hd, n, nh] */
    CHECK(K && V && Q);
    bnb_tensor *kq = bnb_mul_mat(ctx, K, Q); /* [kv, n, nh] */
    CHECK(kq);
    if (mask) {
        kq = bnb_add(ctx, kq, mask); /* 0 where visible, -inf elsewhere: exp gives exactly 0 there */
        CHECK(kq);
    }
    bnb_tensor *p = bnb_softmax(ctx, kq, 1.0f / sqrtf((float)hd), mask == NULL);
    CHECK(p);
    bnb_tensor *o = bnb_mul_mat(ctx, V, p); /* [hd, n, nh] */
    CHECK(o);
    if (n > 1) { /* one token: [hd, 1, nh] already has the memory order of [hd, nh, 1] */
        o = bnb_permute(ctx, o, 0, 2, 1, 3); /* [hd, nh, n] */
        CHECK(o);
        o = bnb_cont(ctx, o);
        CHECK(o);
    }
    *out = bnb_reshape_2d(ctx, o, hd * nh, n);
    CHECK(*out);
    return BNB_OK;
}

/* The layers and the head on top of g->tokens / g->pos (mask: decode, see attention()). */
static bnb_status build_body(bnb_model *m, bnb_model_graph *g, int64_t n, int64_t n_past, bool all_logits,
                             bnb_tensor *mask, int64_t n_kv_dec, bnb_tensor *x0) {
    const bnb_model_config *c = &m->cfg;
    bnb_context *ctx = g->ctx;
    bnb_tensor *x = x0 ? x0 : bnb_get_rows(ctx, m->tok_embd, g->tokens); /* F32 [n_embd, n] */
    CHECK(x);
    for (int64_t il = 0; il < c->n_layer; il++) {
        const bnb_model_layer *L = &m->layers[il];
        bnb_tensor *h = norm(ctx, m, x, L->attn_norm);
        CHECK(h);
        bnb_tensor *attn = NULL;
        bnb_status st = attention(m, g, il, L, h, g->pos, n, n_past, mask, n_kv_dec, &attn);
        if (st != BNB_OK) return st;
        bnb_tensor *proj = bnb_model_linear(ctx, m, L->wo, attn);
        CHECK(proj);
        x = bnb_add(ctx, x, proj);
        CHECK(x);
        h = norm(ctx, m, x, L->ffn_norm);
        CHECK(h);
        bnb_tensor *gate, *up;
        if (n == 1 && L->w_gu) { /* one matmul, gate and up are its two halves */
            bnb_tensor *gu = bnb_model_linear(ctx, m, L->w_gu, h);
            CHECK(gu);
            gate = bnb_view(ctx, gu, 2, (const int64_t[]){c->n_ff, 1}, (const size_t[]){4, (size_t)c->n_ff * 4}, 0);
            up = bnb_view(ctx, gu, 2, (const int64_t[]){c->n_ff, 1}, (const size_t[]){4, (size_t)c->n_ff * 4},
                          (size_t)c->n_ff * 4);
        } else {
            gate = bnb_model_linear(ctx, m, L->w_gate, h);
            up = bnb_model_linear(ctx, m, L->w_up, h);
        }
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
    return bnb_graph_build(g->graph, g->logits);
}

static bnb_status new_graph_ctx(const bnb_model *m, bnb_model_graph *g) {
    memset(g, 0, sizeof *g);
    const size_t max_nodes = (size_t)(m->cfg.n_layer * 64 + 64);
    const size_t mem = max_nodes * 1024 + (size_t)(1 << 20);
    g->ctx = bnb_context_new((bnb_context_params){.mem_size = mem, .no_alloc = true});
    if (!g->ctx) return bnb_last_status();
    g->graph = bnb_graph_new(g->ctx, max_nodes);
    CHECK(g->graph);
    return BNB_OK;
}

bnb_status bnb_model_build_graph(bnb_model *m, int64_t n, int64_t n_past, bool all_logits, bnb_model_graph *g) {
    bnb_status st = new_graph_ctx(m, g);
    if (st != BNB_OK) return st;
    bnb_context *ctx = g->ctx;
    g->tokens = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n), "tokens"));
    g->pos = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n), "positions"));
    CHECK(g->tokens && g->pos);
    g->inputs = bnb_backend_alloc_tensors(m->backend, ctx);
    CHECK(g->inputs);
    st = build_body(m, g, n, n_past, all_logits, NULL, 0, NULL);
    if (st != BNB_OK) return st;
    g->n = n;
    g->n_past = n_past;
    g->all_logits = all_logits;
    return BNB_OK;
}

bnb_status bnb_model_build_decode_graph(bnb_model *m, int64_t n_kv, int64_t gran, bnb_model_graph *g) {
    bnb_status st = new_graph_ctx(m, g);
    if (st != BNB_OK) return st;
    bnb_context *ctx = g->ctx;
    g->decode = true;
    g->direct = m->decode_direct;
    if (g->direct) {
        const size_t np = (size_t)(6 * m->cfg.n_layer);
        g->patch = malloc(np * sizeof *g->patch);
        g->patch_base = malloc(np * sizeof *g->patch_base);
        g->patch_step = malloc(np * sizeof *g->patch_step);
        if (!g->patch || !g->patch_base || !g->patch_step)
            return bnb_fail(BNB_ERR_OOM, "bnb_model_eval: out of host memory");
    }
    g->n_kv = n_kv;
    g->gran = gran;
    g->io = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, 2), "decode_io"));
    g->mask_line = bnb_set_input(bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_F32, 2 * (n_kv + 1)), "mask_line"));
    CHECK(g->io && g->mask_line);
    bnb_tensor *x_in = NULL, *mask_in = NULL; /* slot scheme: written by the commit graph */
    if (!g->direct) {
        x_in = bnb_set_input(bnb_set_name(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, m->cfg.n_embd, 1), "x_in"));
        mask_in = bnb_set_input(bnb_set_name(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, n_kv + 1, 1), "mask_in"));
        CHECK(x_in && mask_in);
    }
    g->inputs = bnb_backend_alloc_tensors(m->backend, ctx);
    CHECK(g->inputs);
    {
        /* n_kv + 1 zeros, then n_kv + 1 times -inf: the n_kv + 1 values from n_kv - n_past on show the first
         * n_past + 1 entries read (slot 0 and indices 1 .. n_past; direct: indices 1 .. n_past + 1) */
        float *line = malloc((size_t)(2 * (n_kv + 1)) * sizeof(float));
        if (!line) return bnb_fail(BNB_ERR_OOM, "bnb_model_eval: out of host memory");
        for (int64_t i = 0; i < 2 * (n_kv + 1); i++) line[i] = i <= n_kv ? 0.f : -INFINITY;
        st = bnb_tensor_set(g->mask_line, line, 0, (size_t)(2 * (n_kv + 1)) * sizeof(float));
        free(line);
        if (st != BNB_OK) return st;
    }
    const size_t e = sizeof(int32_t);
    g->tokens = bnb_view(ctx, g->io, 1, (const int64_t[]){1}, (const size_t[]){e}, 0);
    g->pos = bnb_view(ctx, g->io, 1, (const int64_t[]){1}, (const size_t[]){e}, e);
    /* its offset is set per token; direct: read by the graph, else copied into mask_in by the commit graph */
    g->m_src = bnb_view(ctx, g->mask_line, 2, (const int64_t[]){n_kv + 1, 1},
                        (const size_t[]){sizeof(float), (size_t)(n_kv + 1) * sizeof(float)}, 0);
    CHECK(g->tokens && g->pos && g->m_src);
    /* F32 [n_kv + 1, 1]: broadcast over heads */
    bnb_tensor *mask = g->direct ? g->m_src : mask_in;
    st = build_body(m, g, 1, n_kv, false, mask, n_kv, x_in);
    if (st != BNB_OK) return st;
    if (g->direct) {
        g->n = 1;
        return BNB_OK;
    }

    /* the commit graph: slot 0 of all layers -> index n_past + 1 (offsets set per token) */
    g->commit = bnb_graph_new(ctx, 16);
    CHECK(g->commit);
    const bnb_tensor *K = m->k_all, *V = m->v_all;
    const int64_t kne[3] = {K->ne[0], K->ne[2], K->ne[3]}, vne[4] = {1, V->ne[1], V->ne[2], V->ne[3]};
    const size_t knb[3] = {K->nb[0], K->nb[2], K->nb[3]}, vnb[4] = {V->nb[0], V->nb[1], V->nb[2], V->nb[3]};
    bnb_tensor *k_src = bnb_view(ctx, m->k_all, 3, kne, knb, 0), *v_src = bnb_view(ctx, m->v_all, 4, vne, vnb, 0);
    g->k_dst = bnb_view(ctx, m->k_all, 3, kne, knb, K->nb[1]);
    g->v_dst = bnb_view(ctx, m->v_all, 4, vne, vnb, V->nb[0]);
    CHECK(k_src && v_src && g->k_dst && g->v_dst);
    g->k_cpy = bnb_cpy(ctx, k_src, g->k_dst);
    g->v_cpy = bnb_cpy(ctx, v_src, g->v_dst);
    CHECK(g->k_cpy && g->v_cpy);
    const bnb_tensor *E = m->tok_embd;
    g->e_src = bnb_view(ctx, m->tok_embd, 2, (const int64_t[]){E->ne[0], 1}, (const size_t[]){E->nb[0], E->nb[1]}, 0);
    CHECK(g->e_src);
    bnb_tensor *e_cpy = bnb_cpy(ctx, g->e_src, x_in), *m_cpy = bnb_cpy(ctx, g->m_src, mask_in);
    CHECK(e_cpy && m_cpy);
    st = bnb_graph_build(g->commit, g->k_cpy);
    if (st == BNB_OK) st = bnb_graph_build(g->commit, g->v_cpy);
    if (st == BNB_OK) st = bnb_graph_build(g->commit, e_cpy);
    if (st == BNB_OK) st = bnb_graph_build(g->commit, m_cpy);
    if (st != BNB_OK) return st;
    g->n = 1;
    return BNB_OK;
}

/* BNB_DECODE_PROFILE=1: host time per decode phase (no extra syncs: on the GPU the launches are asynchronous, so the
 * logits read-back holds the wait for the device), printed by bnb_model_free. */
static struct {
    int on; /* -1 unknown */
    double io, graph, commit, read;
    int64_t n;
    unsigned long long plain, captures, replays; /* CUDA: of the last decode graph */
    int fused;
} g_prof = {-1, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bnb_model_decode_profile_report(void) {
    if (g_prof.on != 1 || g_prof.n == 0) return;
    const double k = 1e6 / (double)g_prof.n;
    fprintf(stderr, "decode profile: %lld tokens, us/token: inputs %.1f | graph %.1f | commit %.1f | logits read "
            "(incl. device wait) %.1f | total %.1f | fused qkv/gate-up %s\n", (long long)g_prof.n, g_prof.io * k, g_prof.graph * k,
            g_prof.commit * k, g_prof.read * k, (g_prof.io + g_prof.graph + g_prof.commit + g_prof.read) * k,
            g_prof.fused == 1 ? "yes" : "no");
    if (g_prof.plain + g_prof.replays)
        fprintf(stderr, "decode profile: last decode graph: %llu plain runs, %llu captures, %llu replays\n",
                g_prof.plain, g_prof.captures, g_prof.replays);
    g_prof.io = g_prof.graph = g_prof.commit = g_prof.read = 0;
    g_prof.n = 0;
}

/* The commit graph with the previous token's K/V going to index g->pending (0: slot 0 onto itself, a no-op). */
static bnb_status run_commit(bnb_model *m, bnb_model_graph *g) {
    const double t0 = g_prof.on == 1 ? prof_now() : 0;
    /* views: bnb_graph_compute re-derives their data from the offsets */
    g->k_dst->view_offs = g->k_cpy->view_offs = (size_t)g->pending * m->k_all->nb[1];
    g->v_dst->view_offs = g->v_cpy->view_offs = (size_t)g->pending * m->v_all->nb[0];
    g->pending = 0;
    bnb_status st = bnb_graph_compute(m->backend, g->commit);
    if (g_prof.on == 1) g_prof.commit += prof_now() - t0;
    return st;
}

bnb_status bnb_model_decode_flush(bnb_model *m, bnb_model_graph *g) {
    if (!g->graph || !g->commit || g->pending <= 0) return BNB_OK;
    return run_commit(m, g); /* the embedding / mask copies repeat the last token's: harmless */
}

bnb_status bnb_model_decode_step(bnb_model *m, bnb_model_graph *g, int32_t token, int64_t n_past, float *logits) {
    if (g_prof.on < 0) {
        const char *env = getenv("BNB_DECODE_PROFILE");
        g_prof.on = env && strcmp(env, "1") == 0;
    }
    double t0 = g_prof.on ? prof_now() : 0, t1 = 0, t3 = 0;
    if (!g->decode || n_past > g->n_kv || n_past + 1 > m->n_ctx)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_eval: position %lld is outside the decode graph's [0, %lld]",
                        (long long)n_past, (long long)g->n_kv);
    const int32_t io[2] = {token, (int32_t)n_past};
    g->m_src->view_offs = (size_t)(g->n_kv - n_past) * sizeof(float);
    for (int i = 0; i < g->n_patch; i++) /* direct: bnb_graph_compute re-derives the views' data */
        g->patch[i]->view_offs = g->patch_base[i] + (size_t)(n_past + 1) * g->patch_step[i];
    bnb_status st = bnb_tensor_set(g->io, io, 0, sizeof io);
    if (g_prof.on) t1 = prof_now();
    if (st == BNB_OK && !g->direct) {
        g->e_src->view_offs = (size_t)token * m->tok_embd->nb[1];
        st = run_commit(m, g);
    }
    const double tc = g_prof.on ? prof_now() : 0;
    if (st == BNB_OK) st = bnb_graph_compute(m->backend, g->graph);
    if (st != BNB_OK) return st;
    if (!g->direct) g->pending = n_past + 1; /* slot 0 -> index n_past + 1, at the start of the next eval */
    if (g_prof.on) t3 = prof_now();
    if (st == BNB_OK) st = bnb_tensor_get_f32(g->logits, logits, bnb_nelements(g->logits));
    if (g_prof.on && st == BNB_OK) {
        g_prof.io += t1 - t0, g_prof.graph += t3 - tc, g_prof.read += prof_now() - t3;
        g_prof.n++;
        g_prof.fused = m->fused;
#ifdef BNB_HAVE_CUDA
        bnb_cuda_graph_stats gs = bnb_cuda_get_graph_stats(g->graph);
        g_prof.plain = gs.n_plain, g_prof.captures = gs.n_captures, g_prof.replays = gs.n_replays;
#endif
    }
    return st;
}
