/* Trainer: parameters, their initialisation, and the training / evaluation graphs of the Llama-style model. */
#include "train-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnb-impl.h"

uint64_t train_rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s) {
    double u1 = ((train_rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (train_rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static bnb_tensor *new_param(bnb_trainer *t, bnb_type type, int64_t ne0, int64_t ne1, const char *name) {
    bnb_tensor *p = ne1 > 0 ? bnb_new_tensor_2d(t->wctx, type, ne0, ne1) : bnb_new_tensor_1d(t->wctx, type, ne0);
    if (!p) return NULL;
    bnb_set_name(p, name);
    bnb_set_param(p);
    if (t->n_params < TRAIN_MAX_PARAMS) t->params[t->n_params++] = p;
    return p;
}

bnb_status train_create_params(bnb_trainer *t) {
    const bnb_model_config *c = &t->mc;
    if (c->n_layer * 9 + 3 > TRAIN_MAX_PARAMS)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: %lld layers is too many", (long long)c->n_layer);
    bnb_type mt = t->cfg.master;
    int64_t d = c->n_embd, hd = c->head_dim, dq = c->n_head * hd, dkv = c->n_head_kv * hd;
    char name[BNB_MAX_NAME];
    t->tok_embd = new_param(t, mt, d, c->n_vocab, "token_embd.weight");
    t->layers = calloc((size_t)c->n_layer, sizeof(train_layer));
    if (!t->layers) return bnb_fail(BNB_ERR_OOM, "bnb_trainer: out of memory");
    for (int64_t i = 0; i < c->n_layer; i++) {
        train_layer *L = &t->layers[i];
#define P(field, type, a, b, nm)                                                                                       \
    snprintf(name, sizeof name, "blk.%lld." nm, (long long)i);                                                         \
    L->field = new_param(t, type, a, b, name)
        P(attn_norm, BNB_TYPE_F32, d, 0, "attn_norm.weight");
        P(wq, mt, d, dq, "attn_q.weight");
        P(wk, mt, d, dkv, "attn_k.weight");
        P(wv, mt, d, dkv, "attn_v.weight");
        P(wo, mt, dq, d, "attn_output.weight");
        P(ffn_norm, BNB_TYPE_F32, d, 0, "ffn_norm.weight");
        P(w_gate, mt, d, c->n_ff, "ffn_gate.weight");
        P(w_up, mt, d, c->n_ff, "ffn_up.weight");
        P(w_down, mt, c->n_ff, d, "ffn_down.weight");
#undef P
    }
    t->output_norm = new_param(t, BNB_TYPE_F32, d, 0, "output_norm.weight");
    if (!c->tied_output) t->output = new_param(t, mt, d, c->n_vocab, "output.weight");
    for (int i = 0; i < t->n_params; i++)
        if (!t->params[i]) return bnb_last_status();
    t->wbuf = bnb_backend_alloc_tensors(t->backend, t->wctx);
    return t->wbuf ? BNB_OK : bnb_last_status();
}

static void fill_param(bnb_tensor *p, uint64_t *s, double std, bool ones) {
    int64_t n = bnb_nelements(p);
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return;
    for (int64_t i = 0; i < n; i++) v[i] = ones ? 1.0f : (float)(std * rng_normal(s));
    bnb_tensor_set_f32(p, v, n);
    free(v);
}

/* GPT-2 style: N(0, std), residual output projections scaled by 1/sqrt(2 n_layer), norms 1. */
void train_init_params(bnb_trainer *t, uint64_t seed) {
    uint64_t s = seed ^ 0x5EEDull;
    double std = t->cfg.init_std, res = std / sqrt(2.0 * (double)t->mc.n_layer);
    for (int i = 0; i < t->n_params; i++) {
        bnb_tensor *p = t->params[i];
        bool norm = strstr(p->name, "norm") != NULL;
        bool resid = strstr(p->name, "attn_output") || strstr(p->name, "ffn_down");
        fill_param(p, &s, resid ? res : std, norm);
    }
}

/* x [d, n] -> rms_norm(x) * w */
static bnb_tensor *norm(bnb_context *ctx, bnb_tensor *x, bnb_tensor *w, float eps) {
    return bnb_mul(ctx, bnb_rms_norm(ctx, x, eps), w);
}

static bnb_tensor *as_f32(bnb_context *ctx, bnb_tensor *w) {
    return w->type == BNB_TYPE_F32 ? w : bnb_cast(ctx, w, BNB_TYPE_F32);
}

/* Causal self-attention of one layer on h [d, T*B] -> [d, T*B]. */
static bnb_tensor *attention(bnb_context *ctx, const bnb_trainer *t, const train_layer *L, bnb_tensor *h,
                             bnb_tensor *pos, int64_t T, int64_t B) {
    const bnb_model_config *c = &t->mc;
    int64_t hd = c->head_dim, H = c->n_head, Hkv = c->n_head_kv;
    bnb_tensor *q = bnb_reshape_3d(ctx, bnb_mul_mat(ctx, L->wq, h), hd, H, T * B);
    bnb_tensor *k = bnb_reshape_3d(ctx, bnb_mul_mat(ctx, L->wk, h), hd, Hkv, T * B);
    bnb_tensor *v = bnb_reshape_4d(ctx, bnb_mul_mat(ctx, L->wv, h), hd, Hkv, T, B);
    q = bnb_rope(ctx, q, pos, (int)hd, c->rope_mode, c->rope_base);
    k = bnb_rope(ctx, k, pos, (int)hd, c->rope_mode, c->rope_base);
    q = bnb_cont(ctx, bnb_permute(ctx, bnb_reshape_4d(ctx, q, hd, H, T, B), 0, 2, 1, 3));   /* [hd, T, H, B] */
    k = bnb_cont(ctx, bnb_permute(ctx, bnb_reshape_4d(ctx, k, hd, Hkv, T, B), 0, 2, 1, 3)); /* [hd, T, Hkv, B] */
    bnb_tensor *vt = bnb_cont(ctx, bnb_permute(ctx, v, 1, 2, 0, 3));                        /* [T, hd, Hkv, B] */
    /* grouped-query attention: mul_mat broadcasts k/v over the heads, q head h reading kv head h / (H / Hkv) */
    bnb_tensor *kq = bnb_mul_mat(ctx, k, q); /* [T_k, T_q, H, B] */
    kq = bnb_softmax(ctx, kq, 1.0f / sqrtf((float)hd), true);
    bnb_tensor *o = bnb_mul_mat(ctx, vt, kq); /* [hd, T_q, H, B] */
    o = bnb_cont(ctx, bnb_permute(ctx, o, 0, 2, 1, 3)); /* [hd, H, T, B] */
    o = bnb_reshape_2d(ctx, o, hd * H, T * B);
    return bnb_mul_mat(ctx, L->wo, o);
}

/* Loss graph for B sequences of T tokens. mode 0: forward only; 1: + backward accumulating; 2: + backward
 * (accumulating when accum > 1) + optimizer update. */
bnb_status train_build_graph(bnb_trainer *t, train_graph *tg, int mode) {
    const bnb_model_config *c = &t->mc;
    int64_t T = t->cfg.seq, B = t->cfg.batch, n = T * B;
    size_t nodes = (size_t)(c->n_layer * 200 + 200) * (mode ? 4 : 1) + (size_t)t->n_params * 8;
    bnb_context_params cp = {.mem_size = nodes * 1024 + (1u << 20), .no_alloc = true};
    memset(tg, 0, sizeof *tg);
    tg->ctx = bnb_context_new(cp);
    if (!tg->ctx) return bnb_last_status();
    bnb_context *ctx = tg->ctx;
    tg->tokens = bnb_set_input(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n));
    tg->targets = bnb_set_input(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n));
    tg->pos = bnb_set_input(bnb_new_tensor_1d(ctx, BNB_TYPE_I32, n));
    bnb_tensor *x = bnb_get_rows(ctx, t->tok_embd, tg->tokens); /* [d, n] F32 */
    for (int64_t i = 0; i < c->n_layer && x; i++) {
        const train_layer *L = &t->layers[i];
        bnb_tensor *h = norm(ctx, x, L->attn_norm, c->rms_eps);
        x = bnb_add(ctx, x, attention(ctx, t, L, h, tg->pos, T, B));
        h = norm(ctx, x, L->ffn_norm, c->rms_eps);
        bnb_tensor *g = bnb_mul_mat(ctx, L->w_gate, h), *u = bnb_mul_mat(ctx, L->w_up, h);
        x = bnb_add(ctx, x, bnb_mul_mat(ctx, L->w_down, bnb_mul(ctx, bnb_silu(ctx, g), u)));
    }
    x = norm(ctx, x, t->output_norm, c->rms_eps);
    bnb_tensor *logits = bnb_mul_mat(ctx, t->output ? t->output : t->tok_embd, x); /* [V, n] */
    tg->loss = bnb_cross_entropy(ctx, logits, tg->targets);
    if (!tg->loss) return bnb_last_status();
    (void)as_f32;
    tg->graph = bnb_graph_new(ctx, nodes);
    if (!tg->graph) return bnb_last_status();
    bnb_status st = bnb_graph_build(tg->graph, bnb_set_output(tg->loss));
    if (st == BNB_OK && mode > 0) {
        if (t->cfg.accum > 1) {
            bnb_tensor *scaled = bnb_scale(ctx, tg->loss, 1.0f / (float)t->cfg.accum);
            st = bnb_graph_build(tg->graph, scaled);
            if (st == BNB_OK) st = bnb_graph_backward_accumulate(ctx, tg->graph, scaled);
        } else {
            st = bnb_graph_backward(ctx, tg->graph, tg->loss);
        }
        if (st == BNB_OK && mode == 2) st = bnb_optimizer_step(t->opt, ctx, tg->graph);
    }
    if (st != BNB_OK) return st;
    tg->inputs = bnb_backend_alloc_tensors(t->backend, ctx);
    if (!tg->inputs) return bnb_last_status();
    if (mode > 0 && t->cfg.accum > 1) st = bnb_graph_reset_grads(tg->graph);
    return st;
}

void train_graph_release(train_graph *tg) {
    if (tg->ctx) bnb_context_free(tg->ctx);
    if (tg->inputs) bnb_buffer_free(tg->inputs);
    memset(tg, 0, sizeof *tg);
}
