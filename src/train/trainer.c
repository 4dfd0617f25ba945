/* Trainer: configuration, data sampling, the lr schedule, one optimizer step per call, evaluation, memory report. */
#include "train-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnb-impl.h"

bnb_train_config bnb_train_default_config(void) {
    bnb_train_config c;
    memset(&c, 0, sizeof c);
    bnb_train_preset("tiny", &c.model);
    c.optim = BNB_OPTIM_ADAMW;
    c.optim_bits = 8;
    c.lr = 1e-3f;
    c.min_lr_ratio = 0.1f;
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.99f;
    c.warmup = 100;
    c.steps = 1000;
    c.batch = 16;
    c.seq = 128;
    c.accum = 1;
    c.clip = 1.0f;
    c.pclip = 100;
    c.master = BNB_TYPE_F32;
    c.val_fraction = 0.1f;
    c.init_std = 0.02f;
    c.seed = 1234;
    return c;
}

bnb_status bnb_train_preset(const char *name, bnb_model_config *m) {
    static const struct {
        const char *name;
        int64_t d, ff, layers, heads, ctx;
    } presets[] = {
        {"tiny", 64, 192, 2, 4, 128},
        {"small", 192, 512, 4, 4, 256},
        {"medium", 384, 1024, 6, 6, 512},
        {"gpt2", 768, 3072, 12, 12, 1024},
    };
    if (!name || !m) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_train_preset: NULL argument");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(name, presets[i].name) != 0) continue;
        memset(m, 0, sizeof *m);
        m->n_vocab = 256;
        m->n_embd = presets[i].d;
        m->n_ff = presets[i].ff;
        m->n_layer = presets[i].layers;
        m->n_head = m->n_head_kv = presets[i].heads;
        m->head_dim = presets[i].d / presets[i].heads;
        m->n_ctx_train = presets[i].ctx;
        m->rms_eps = 1e-5f;
        m->rope_base = 10000.0f;
        m->rope_mode = BNB_ROPE_NORMAL;
        m->tied_output = true;
        return BNB_OK;
    }
    return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_train_preset: unknown preset '%s' (tiny, small, medium, gpt2)", name);
}

static bnb_status check_config(const bnb_train_config *c, const bnb_model_config *m, int64_t n_tokens) {
    if (m->n_vocab <= 0 || m->n_embd <= 0 || m->n_ff <= 0 || m->n_layer <= 0 || m->n_head <= 0 ||
        m->n_head_kv <= 0 || m->head_dim <= 0 || m->n_head % m->n_head_kv != 0 || (m->head_dim & 1))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: bad model dims (vocab %lld embd %lld ff %lld layers %lld "
                        "heads %lld/%lld head_dim %lld)", (long long)m->n_vocab, (long long)m->n_embd,
                        (long long)m->n_ff, (long long)m->n_layer, (long long)m->n_head, (long long)m->n_head_kv,
                        (long long)m->head_dim);
    if (c->batch <= 0 || c->seq <= 0 || c->accum <= 0 || c->steps <= 0 || c->warmup < 0 || !(c->lr > 0))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: batch %lld, seq %lld, accum %lld, steps %lld, warmup "
                        "%lld and lr %g must be positive", (long long)c->batch, (long long)c->seq,
                        (long long)c->accum, (long long)c->steps, (long long)c->warmup, (double)c->lr);
    if (c->master != BNB_TYPE_F32 && c->master != BNB_TYPE_BF16 && c->master != BNB_TYPE_F16)
        return bnb_fail(BNB_ERR_TYPE, "bnb_trainer: master weights must be F32, BF16 or F16");
    if (c->optim_bits != 8 && c->optim_bits != 32)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: optim_bits %d (8 or 32)", c->optim_bits);
    int64_t n_val = (int64_t)((double)n_tokens * c->val_fraction);
    if (n_tokens - n_val < c->seq + 2 || (c->val_fraction > 0 && n_val < c->seq + 2))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: %lld tokens are too few for sequences of %lld "
                        "(validation fraction %g)", (long long)n_tokens, (long long)c->seq, (double)c->val_fraction);
    return BNB_OK;
}

/* Shared part of both constructors: backend, params, optimizer, graphs. init: random weights. */
static bnb_trainer *trainer_setup(bnb_trainer *t, const int32_t *tokens, int64_t n, bool init) {
    const bnb_train_config *c = &t->cfg;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= t->mc.n_vocab) {
            bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer: token %lld is %d, outside the vocabulary (%lld)",
                     (long long)i, tokens[i], (long long)t->mc.n_vocab);
            goto fail;
        }
    t->tokens = malloc((size_t)n * sizeof(int32_t));
    int64_t bt = c->batch * c->seq;
    t->host_tok = malloc((size_t)bt * sizeof(int32_t));
    t->host_tgt = malloc((size_t)bt * sizeof(int32_t));
    t->host_pos = malloc((size_t)bt * sizeof(int32_t));
    if (!t->tokens || !t->host_tok || !t->host_tgt || !t->host_pos) {
        bnb_fail(BNB_ERR_OOM, "bnb_trainer: out of memory for %lld tokens", (long long)n);
        goto fail;
    }
    memcpy(t->tokens, tokens, (size_t)n * sizeof(int32_t));
    t->n_tokens = n;
    t->n_train = n - (int64_t)((double)n * c->val_fraction);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t i = 0; i < c->seq; i++) t->host_pos[b * c->seq + i] = (int32_t)i;
    t->rng = c->seed * 0x2545F4914F6CDD1Dull + 1;
    if (c->backend) {
        t->backend = c->backend;
    } else {
        t->backend = bnb_backend_cpu_new(c->n_threads);
        t->own_backend = true;
        if (!t->backend) goto fail;
    }
    bnb_context_params cp = {.mem_size = (size_t)(t->mc.n_layer * 9 + 8) * 1024, .no_alloc = true};
    t->wctx = bnb_context_new(cp);
    if (!t->wctx || train_create_params(t) != BNB_OK) goto fail;
    if (init) train_init_params(t, c->seed);
    bnb_optim_config oc = bnb_optim_default_config(c->optim);
    oc.optim_bits = c->optim_bits;
    oc.lr = c->lr;
    oc.weight_decay = c->weight_decay;
    if (c->optim != BNB_OPTIM_MOMENTUM) {
        oc.beta1 = c->beta1;
        oc.beta2 = c->beta2;
    }
    oc.percentile_clipping = c->pclip > 0 && c->pclip < 100 ? c->pclip : 100;
    t->opt = bnb_optimizer_new(c->optim, oc);
    if (!t->opt) goto fail;
    /* no weight decay on norms and other small vectors (tensors under 4096 elements also keep 32-bit states) */
    for (int i = 0; i < t->n_params; i++)
        if (bnb_nelements(t->params[i]) < 4096 || strstr(t->params[i]->name, "norm"))
            bnb_optimizer_override(t->opt, t->params[i], BNB_OPTIM_KEY_WEIGHT_DECAY, 0.0);
    if (c->clip > 0 && bnb_optimizer_set_max_grad_norm(t->opt, c->clip) != BNB_OK) goto fail;
    if (c->accum > 1 && train_build_graph(t, &t->micro_g, 1) != BNB_OK) goto fail;
    if (train_build_graph(t, &t->step_g, 2) != BNB_OK) goto fail;
    if (t->n_train < t->n_tokens && train_build_graph(t, &t->eval_g, 0) != BNB_OK) goto fail;
    return t;
fail:
    bnb_trainer_free(t);
    return NULL;
}

bnb_trainer *bnb_trainer_new(const bnb_train_config *cfg, const int32_t *tokens, int64_t n) {
    if (!cfg || !tokens) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_trainer_new: NULL argument");
    if (check_config(cfg, &cfg->model, n) != BNB_OK) return NULL;
    bnb_trainer *t = calloc(1, sizeof *t);
    if (!t) return bnb_fail_null(BNB_ERR_OOM, "bnb_trainer_new: out of memory");
    t->cfg = *cfg;
    t->mc = cfg->model;
    return trainer_setup(t, tokens, n, true);
}

/* Defined in checkpoint.c: reads a model config (+ weights) from a GGUF model or checkpoint. */
bnb_status train_read_file_config(const char *path, bnb_model_config *mc);
bnb_status train_load_file_weights(bnb_trainer *t, const char *path);

bnb_trainer *bnb_trainer_new_from_file(const char *path, const bnb_train_config *cfg, const int32_t *tokens,
                                       int64_t n) {
    if (!path || !cfg || !tokens) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_trainer_new_from_file: NULL argument");
    bnb_model_config mc;
    if (train_read_file_config(path, &mc) != BNB_OK) return NULL;
    if (check_config(cfg, &mc, n) != BNB_OK) return NULL;
    bnb_trainer *t = calloc(1, sizeof *t);
    if (!t) return bnb_fail_null(BNB_ERR_OOM, "bnb_trainer_new_from_file: out of memory");
    t->cfg = *cfg;
    t->cfg.model = mc;
    t->mc = mc;
    t = trainer_setup(t, tokens, n, false);
    if (t && train_load_file_weights(t, path) != BNB_OK) {
        bnb_trainer_free(t);
        return NULL;
    }
    return t;
}

void bnb_trainer_free(bnb_trainer *t) {
    if (!t) return;
    train_graph_release(&t->step_g);
    train_graph_release(&t->micro_g);
    train_graph_release(&t->eval_g);
    bnb_optimizer_free(t->opt);
    if (t->wctx) bnb_context_free(t->wctx);
    if (t->wbuf) bnb_buffer_free(t->wbuf);
    if (t->own_backend) bnb_backend_free(t->backend);
    free(t->layers);
    free(t->tokens);
    free(t->host_tok);
    free(t->host_tgt);
    free(t->host_pos);
    free(t);
}

float bnb_trainer_get_lr(const bnb_trainer *t, int64_t step) {
    const bnb_train_config *c = &t->cfg;
    if (step < c->warmup) return c->lr * (float)(step + 1) / (float)c->warmup;
    double span = (double)(c->steps - c->warmup), p = span > 0 ? (double)(step - c->warmup) / span : 1.0;
    if (p > 1) p = 1;
    double min_lr = c->lr * c->min_lr_ratio;
    return (float)(min_lr + 0.5 * (c->lr - min_lr) * (1.0 + cos(3.141592653589793 * p)));
}

/* Fill the host batch: B windows of seq+1 tokens from [lo, hi); random starts (RNG) or fixed (eval). */
static void fill_batch(bnb_trainer *t, int64_t lo, int64_t hi, bool random, int64_t eval_index) {
    int64_t T = t->cfg.seq, B = t->cfg.batch, span = hi - lo - T - 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t start;
        if (random) start = lo + (int64_t)(train_rng_next(&t->rng) % (uint64_t)(span + 1));
        else start = lo + ((eval_index * B + b) * T) % (span + 1);
        memcpy(t->host_tok + b * T, t->tokens + start, (size_t)T * sizeof(int32_t));
        memcpy(t->host_tgt + b * T, t->tokens + start + 1, (size_t)T * sizeof(int32_t));
    }
}

static bnb_status run_graph(bnb_trainer *t, train_graph *g, float *loss) {
    size_t bytes = (size_t)(t->cfg.batch * t->cfg.seq) * sizeof(int32_t);
    bnb_status st = bnb_tensor_set(g->tokens, t->host_tok, 0, bytes);
    if (st == BNB_OK) st = bnb_tensor_set(g->targets, t->host_tgt, 0, bytes);
    if (st == BNB_OK) st = bnb_tensor_set(g->pos, t->host_pos, 0, bytes);
    if (st == BNB_OK) st = bnb_graph_compute(t->backend, g->graph);
    if (st == BNB_OK) st = bnb_tensor_get_f32(g->loss, loss, 1);
    return st;
}

bnb_status bnb_trainer_step(bnb_trainer *t, float *loss) {
    if (!t) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_step: NULL trainer");
    bnb_status st = bnb_optimizer_set_lr(t->opt, bnb_trainer_get_lr(t, t->step));
    double sum = 0;
    for (int64_t a = 0; a < t->cfg.accum && st == BNB_OK; a++) {
        float l = 0;
        fill_batch(t, 0, t->n_train, true, 0);
        st = run_graph(t, a + 1 < t->cfg.accum ? &t->micro_g : &t->step_g, &l);
        sum += l;
        t->tokens_seen += t->cfg.batch * t->cfg.seq;
    }
    if (st == BNB_OK && t->cfg.accum > 1) st = bnb_graph_reset_grads(t->step_g.graph);
    if (st != BNB_OK) return st;
    t->step++;
    if (loss) *loss = (float)(sum / (double)t->cfg.accum);
    if (!isfinite(sum)) return bnb_fail(BNB_ERR_NUMERIC, "bnb_trainer_step: loss is %g at step %lld", sum,
                                        (long long)t->step);
    return BNB_OK;
}

bnb_status bnb_trainer_eval(bnb_trainer *t, int64_t n_batches, float *loss) {
    if (!t || !loss || n_batches <= 0) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_eval: bad arguments");
    if (!t->eval_g.graph) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_eval: no validation split");
    double sum = 0;
    for (int64_t i = 0; i < n_batches; i++) {
        float l = 0;
        fill_batch(t, t->n_train, t->n_tokens, false, i);
        bnb_status st = run_graph(t, &t->eval_g, &l);
        if (st != BNB_OK) return st;
        sum += l;
    }
    *loss = (float)(sum / (double)n_batches);
    return BNB_OK;
}

int64_t bnb_trainer_get_step(const bnb_trainer *t) { return t ? t->step : -1; }
const bnb_model_config *bnb_trainer_model_config(const bnb_trainer *t) { return t ? &t->mc : NULL; }

bnb_train_memory bnb_trainer_memory(const bnb_trainer *t) {
    bnb_train_memory m;
    memset(&m, 0, sizeof m);
    if (!t) return m;
    for (int i = 0; i < t->n_params; i++) {
        m.n_params += bnb_nelements(t->params[i]);
        m.params += bnb_nbytes(t->params[i]);
        m.grads += (size_t)bnb_nelements(t->params[i]) * sizeof(float) * (t->cfg.accum > 1 ? 2 : 1);
    }
    m.optim_states = bnb_optimizer_state_bytes(t->opt);
    m.activations = bnb_graph_mem_planned(t->step_g.graph);
    if (t->micro_g.graph && bnb_graph_mem_planned(t->micro_g.graph) > m.activations)
        m.activations = bnb_graph_mem_planned(t->micro_g.graph);
    return m;
}

bnb_status bnb_trainer_get_weight(bnb_trainer *t, const char *name, float *dst, int64_t n) {
    if (!t || !name || !dst) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_get_weight: NULL argument");
    for (int i = 0; i < t->n_params; i++)
        if (strcmp(t->params[i]->name, name) == 0) return bnb_tensor_get_f32(t->params[i], dst, n);
    return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_get_weight: no weight '%s'", name);
}
