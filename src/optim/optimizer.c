/* Optimizer objects: defaults, per-parameter overrides (bitsandbytes' GlobalOptimManager), per-parameter states on
 * the parameter's backend, and bnb_optimizer_step, which appends the clipping and fused update nodes to a graph.
 * Semantics: include/bnb.h (optimizers section); node layouts: optim-impl.h. */
#include "optimizer-priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const g_type_names[BNB_OPTIM_COUNT] = {"adam", "adamw", "momentum", "lion", "rmsprop",
                                                           "adagrad", "lamb", "lars", "ademamix"};

const char *bnb_optim_type_name(bnb_optim_type type) {
    return (unsigned)type < BNB_OPTIM_COUNT ? g_type_names[type] : "unknown";
}

bnb_optim_config bnb_optim_default_config(bnb_optim_type type) {
    bnb_optim_config c = {0};
    c.optim_bits = 32;
    c.lr = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.percentile_clipping = 100;
    c.min_8bit_size = 4096;
    switch (type) {
    case BNB_OPTIM_ADAMW: c.weight_decay = 1e-2f; break;
    case BNB_OPTIM_MOMENTUM: c.lr = 1e-2f; c.beta2 = 0.f; break;
    case BNB_OPTIM_LION: c.lr = 1e-4f; c.beta2 = 0.99f; break;
    case BNB_OPTIM_RMSPROP: c.lr = 1e-2f; c.beta1 = 0.99f; c.beta2 = 0.f; break;
    case BNB_OPTIM_ADAGRAD: c.lr = 1e-2f; c.beta1 = 0.f; c.beta2 = 0.f; c.eps = 1e-10f; break;
    case BNB_OPTIM_LAMB: c.max_unorm = 1.0f; break;
    case BNB_OPTIM_LARS: c.lr = 1e-2f; c.beta2 = 0.f; c.max_unorm = 0.02f; break;
    case BNB_OPTIM_ADEMAMIX: c.beta3 = 0.9999f; c.alpha = 5.0f; c.weight_decay = 1e-2f; break;
    default: break;
    }
    return c;
}

static bnb_status check_config(const char *op, const bnb_optim_config *c) {
    if (c->optim_bits != 32 && c->optim_bits != 8)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: optim_bits %d (must be 32 or 8)", op, c->optim_bits);
    if (!isfinite(c->lr) || c->lr < 0) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: lr %g must be finite and >= 0", op, c->lr);
    if (!(c->eps >= 0)) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: eps %g must be >= 0", op, c->eps);
    if (c->percentile_clipping < 0 || c->percentile_clipping > 100)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: percentile_clipping %d not in 0..100", op, c->percentile_clipping);
    float betas[3] = {c->beta1, c->beta2, c->beta3};
    for (int i = 0; i < 3; i++)
        if (!(betas[i] >= 0 && betas[i] < 1))
            return bnb_fail(BNB_ERR_INVALID_ARG, "%s: beta%d = %g not in [0, 1)", op, i + 1, betas[i]);
    if (c->min_8bit_size < 0) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: min_8bit_size must be >= 0", op);
    return BNB_OK;
}

bnb_optimizer *bnb_optimizer_new(bnb_optim_type type, bnb_optim_config defaults) {
    if ((unsigned)type >= BNB_OPTIM_COUNT)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_optimizer_new: invalid optimizer type %d", (int)type);
    if (check_config("bnb_optimizer_new", &defaults) != BNB_OK) return NULL;
    bnb_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return bnb_fail_null(BNB_ERR_OOM, "bnb_optimizer_new: out of host memory");
    opt->type = type;
    opt->defaults = defaults;
    return opt;
}

static void entry_release(optim_entry *e) {
    if (e->buf) bnb_buffer_free(e->buf);
    free(e->host);
    bnb_context_free(e->ctx);
    memset(e, 0, sizeof *e);
}

void bnb_optimizer_free(bnb_optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_entries; i++) entry_release(&opt->entries[i]);
    for (int i = 0; i < opt->n_groups; i++) {
        free(opt->groups[i]->nodes);
        free(opt->groups[i]);
    }
    free(opt->groups);
    free(opt->entries);
    free(opt->overrides);
    free(opt);
}

optim_entry *bnb_optim_find_entry(const bnb_optimizer *opt, const bnb_tensor *param) {
    for (int i = 0; i < opt->n_entries; i++)
        if (opt->entries[i].param == param) return &opt->entries[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ overrides */
static void apply_key(bnb_optim_config *c, bnb_optim_key key, double v) {
    switch (key) {
    case BNB_OPTIM_KEY_BITS: c->optim_bits = (int)v; break;
    case BNB_OPTIM_KEY_LR: c->lr = (float)v; break;
    case BNB_OPTIM_KEY_BETA1: c->beta1 = (float)v; break;
    case BNB_OPTIM_KEY_BETA2: c->beta2 = (float)v; break;
    case BNB_OPTIM_KEY_BETA3: c->beta3 = (float)v; break;
    case BNB_OPTIM_KEY_ALPHA: c->alpha = (float)v; break;
    case BNB_OPTIM_KEY_EPS: c->eps = (float)v; break;
    case BNB_OPTIM_KEY_WEIGHT_DECAY: c->weight_decay = (float)v; break;
    case BNB_OPTIM_KEY_MAX_UNORM: c->max_unorm = (float)v; break;
    case BNB_OPTIM_KEY_PERCENTILE_CLIPPING: c->percentile_clipping = (int)v; break;
    case BNB_OPTIM_KEY_SKIP_ZEROS: c->skip_zeros = v != 0; break;
    case BNB_OPTIM_KEY_SPARSE_ROWS: c->sparse_rows = v != 0; break;
    case BNB_OPTIM_KEY_MIN_8BIT_SIZE: c->min_8bit_size = (int64_t)v; break;
    default: break;
    }
}

static bnb_optim_config resolve_config(const bnb_optimizer *opt, const bnb_tensor *param) {
    bnb_optim_config c = opt->defaults;
    for (int i = 0; i < opt->n_overrides; i++)
        if (opt->overrides[i].param == param) apply_key(&c, opt->overrides[i].key, opt->overrides[i].value);
    return c;
}

static int effective_bits(const bnb_optim_config *c, int64_t n) {
    return c->optim_bits == 8 && n >= c->min_8bit_size ? 8 : 32;
}

/* Writes the hyperparameter slots (not the step) of e's hyper tensor. */
bnb_status bnb_optim_write_hyper(optim_entry *e) {
    float h[BNB_OPTIM_HYPER_N - 1] = {0};
    h[BNB_HYPER_LR - 1] = e->cfg.lr;
    h[BNB_HYPER_BETA1 - 1] = e->cfg.beta1;
    h[BNB_HYPER_BETA2 - 1] = e->cfg.beta2;
    h[BNB_HYPER_BETA3 - 1] = e->cfg.beta3;
    h[BNB_HYPER_ALPHA - 1] = e->cfg.alpha;
    h[BNB_HYPER_EPS - 1] = e->cfg.eps;
    h[BNB_HYPER_WD - 1] = e->cfg.weight_decay;
    h[BNB_HYPER_MAX_UNORM - 1] = e->cfg.max_unorm;
    return bnb_tensor_set(e->hyper, h, sizeof(float), sizeof h);
}

static bnb_status grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return BNB_OK;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return bnb_fail(BNB_ERR_OOM, "optimizer: out of host memory");
    *arr = p;
    *cap = nc;
    return BNB_OK;
}

bnb_status bnb_optimizer_override(bnb_optimizer *opt, const bnb_tensor *param, bnb_optim_key key, double value) {
    const char *op = "bnb_optimizer_override";
    if (!opt || !param) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: %s is NULL", op, opt ? "param" : "opt");
    if ((unsigned)key >= BNB_OPTIM_KEY_COUNT) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: invalid key %d", op, (int)key);
    bnb_optim_config c = resolve_config(opt, param);
    apply_key(&c, key, value);
    bnb_status s = check_config(op, &c);
    if (s != BNB_OK) return s;
    optim_entry *e = bnb_optim_find_entry(opt, param);
    if (e && effective_bits(&c, e->n) != e->bits)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: '%s' already has %d-bit states; set optim_bits before its first step",
                        op, param->name, e->bits);
    s = grow((void **)&opt->overrides, &opt->cap_overrides, opt->n_overrides + 1, sizeof(optim_override));
    if (s != BNB_OK) return s;
    opt->overrides[opt->n_overrides++] = (optim_override){param, key, value};
    if (e) {
        e->cfg = c;
        return bnb_optim_write_hyper(e);
    }
    return BNB_OK;
}

bnb_status bnb_optimizer_set_lr(bnb_optimizer *opt, float lr) {
    if (!opt) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_set_lr: opt is NULL");
    if (!isfinite(lr) || lr < 0) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_set_lr: lr %g must be >= 0", lr);
    opt->defaults.lr = lr;
    for (int i = 0; i < opt->n_entries; i++) {
        optim_entry *e = &opt->entries[i];
        e->cfg = resolve_config(opt, e->param);
        bnb_status s = bnb_optim_write_hyper(e);
        if (s != BNB_OK) return s;
    }
    return BNB_OK;
}

bnb_status bnb_optimizer_set_max_grad_norm(bnb_optimizer *opt, float max_norm) {
    if (!opt) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_set_max_grad_norm: opt is NULL");
    if (!(max_norm >= 0) || !isfinite(max_norm))
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_set_max_grad_norm: max_norm %g must be >= 0", max_norm);
    opt->max_grad_norm = max_norm;
    return BNB_OK;
}

bnb_status bnb_optimizer_param_config(const bnb_optimizer *opt, const bnb_tensor *param, bnb_optim_config *out) {
    if (!opt || !param || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_param_config: NULL argument");
    *out = resolve_config(opt, param);
    return BNB_OK;
}

bnb_tensor *bnb_optimizer_state(const bnb_optimizer *opt, const bnb_tensor *param, int which) {
    if (!opt || !param) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_optimizer_state: NULL argument");
    optim_entry *e = bnb_optim_find_entry(opt, param);
    if (!e) return NULL;
    return which == 0 ? e->state1 : which == 1 ? e->state2 : NULL;
}

int64_t bnb_optimizer_param_step(const bnb_optimizer *opt, const bnb_tensor *param) {
    if (!opt || !param) return -1;
    optim_entry *e = bnb_optim_find_entry(opt, param);
    if (!e) return -1;
    int32_t step;
    if (bnb_tensor_get(e->hyper, &step, 0, sizeof step) != BNB_OK) return -1;
    return step;
}

size_t bnb_optimizer_state_bytes(const bnb_optimizer *opt) {
    size_t s = 0;
    if (!opt) return 0;
    for (int i = 0; i < opt->n_entries; i++) {
        if (opt->entries[i].state1) s += bnb_nbytes(opt->entries[i].state1);
        if (opt->entries[i].state2) s += bnb_nbytes(opt->entries[i].state2);
    }
    return s;
}

/* ------------------------------------------------------------------------------------------ states */
static bnb_tensor *new_state(bnb_context *ctx, int bits, int64_t n, const char *pname, const char *what) {
    bnb_tensor *t;
    if (bits == 32) {
        t = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, n);
    } else {
        bnb_quant_params qp = {BNB_OPTIM_BLOCK, 0, 0, 0.f};
        t = bnb_new_tensor_quant(ctx, BNB_TYPE_OPT8, 1, &n, qp);
    }
    if (t) snprintf(t->name, sizeof t->name, "%.40s.%s", pname, what);
    return t;
}

/* Zero states (8-bit: codes 0 with absmax 0 dequantize to exactly 0) and the map of an OPT8 state. */
static bnb_status init_state(bnb_tensor *s, bnb_qmap map_kind, void *zeros) {
    size_t nbytes = bnb_nbytes(s);
    if (s->type != BNB_TYPE_OPT8) return bnb_tensor_set(s, zeros, 0, nbytes);
    float map[256];
    bnb_status st = bnb_qmap_fill(map_kind, map);
    if (st != BNB_OK) return st;
    size_t moff = bnb_opt8_map_offset(bnb_nelements(s));
    st = bnb_tensor_set(s, zeros, 0, moff);
    if (st == BNB_OK) st = bnb_tensor_set(s, map, moff, sizeof map);
    if (st == BNB_OK) s->quant.map = (int32_t)map_kind;
    return st;
}

static bnb_status entry_create(bnb_optimizer *opt, bnb_tensor *param, optim_entry **out) {
    const char *op = "bnb_optimizer_step";
    if (!param->data)
        return bnb_fail(BNB_ERR_GRAPH, "%s: parameter '%s' has no data: allocate parameters before the first step", op,
                        param->name);
    if (!bnb_type_is_float(param->type))
        return bnb_fail(BNB_ERR_TYPE, "%s: parameter '%s' is %s, must be f32/f16/bf16", op, param->name,
                        bnb_type_name(param->type));
    bnb_status s = grow((void **)&opt->entries, &opt->cap_entries, opt->n_entries + 1, sizeof(optim_entry));
    if (s != BNB_OK) return s;
    optim_entry e = {0};
    e.param = param;
    e.cfg = resolve_config(opt, param);
    e.n = bnb_nelements(param);
    e.bits = effective_bits(&e.cfg, e.n);
    if (e.cfg.sparse_rows && e.bits == 8) e.bits = 32; /* sparse row updates keep exact 32-bit states */
    e.ctx = bnb_context_new((bnb_context_params){8192, true});
    if (!e.ctx) return bnb_last_status();
    const bnb_optim_type type = opt->type;
    int64_t n1 = type == BNB_OPTIM_ADEMAMIX ? (e.bits == 8 ? 2 * bnb_optim_npad(e.n) : 2 * e.n) : e.n;
    e.state1 = new_state(e.ctx, e.bits, n1, param->name, "state1");
    if (bnb_optim_n_states(type) == 2) e.state2 = new_state(e.ctx, e.bits, e.n, param->name, "state2");
    e.hyper = bnb_new_tensor_1d(e.ctx, BNB_TYPE_F32, BNB_OPTIM_HYPER_N);
    e.history = bnb_new_tensor_1d(e.ctx, BNB_TYPE_F32, BNB_OPTIM_HISTORY_N);
    if (!e.state1 || (bnb_optim_n_states(type) == 2 && !e.state2) || !e.hyper || !e.history) {
        s = bnb_last_status();
        bnb_context_free(e.ctx);
        return s;
    }
    snprintf(e.hyper->name, sizeof e.hyper->name, "%.40s.hyper", param->name);
    snprintf(e.history->name, sizeof e.history->name, "%.40s.history", param->name);
    bnb_tensor *ts[4] = {e.state1, e.state2, e.hyper, e.history};
    size_t offs[4], total = 0, maxb = 0;
    for (int i = 0; i < 4; i++) {
        if (!ts[i]) continue;
        offs[i] = total;
        total += BNB_PAD(bnb_nbytes(ts[i]), BNB_ALIGN);
        maxb = BNB_MAX(maxb, bnb_nbytes(ts[i]));
    }
    if (param->buffer) {
        e.buf = bnb_backend_alloc_buffer(param->buffer->backend, total);
        if (!e.buf) {
            s = bnb_last_status();
            bnb_context_free(e.ctx);
            return s;
        }
        for (int i = 0; i < 4; i++)
            if (ts[i] && (s = bnb_buffer_place(e.buf, ts[i], offs[i])) != BNB_OK) {
                entry_release(&e);
                return s;
            }
    } else {
        e.host = aligned_alloc(BNB_ALIGN, BNB_PAD(total, BNB_ALIGN));
        if (!e.host) {
            bnb_context_free(e.ctx);
            return bnb_fail(BNB_ERR_OOM, "%s: cannot allocate %zu bytes of optimizer state", op, total);
        }
        for (int i = 0; i < 4; i++)
            if (ts[i]) ts[i]->data = (uint8_t *)e.host + offs[i];
    }
    void *zeros = calloc(1, maxb ? maxb : 1);
    if (!zeros) {
        entry_release(&e);
        return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    }
    bool unsigned1 = bnb_optim_state1_unsigned(type);
    s = init_state(e.state1, unsigned1 ? BNB_QMAP_DYNAMIC_UNSIGNED : BNB_QMAP_DYNAMIC_SIGNED, zeros);
    if (s == BNB_OK && e.state2) s = init_state(e.state2, BNB_QMAP_DYNAMIC_UNSIGNED, zeros);
    if (s == BNB_OK) s = bnb_tensor_set(e.history, zeros, 0, bnb_nbytes(e.history));
    if (s == BNB_OK) s = bnb_tensor_set(e.hyper, zeros, 0, sizeof(int32_t)); /* step 0 */
    free(zeros);
    if (s == BNB_OK) s = bnb_optim_write_hyper(&e);
    if (s != BNB_OK) {
        entry_release(&e);
        return s;
    }
    opt->entries[opt->n_entries] = e;
    *out = &opt->entries[opt->n_entries++];
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------ step */
static bool same_group_kind(const bnb_tensor *a, const bnb_tensor *b) {
    return bnb_get_op_i32(a, BNB_UPD_P_TYPE) == bnb_get_op_i32(b, BNB_UPD_P_TYPE) &&
           bnb_get_op_i32(a, BNB_UPD_P_BITS) == bnb_get_op_i32(b, BNB_UPD_P_BITS) &&
           bnb_get_op_i32(a, BNB_UPD_P_FLAGS) == bnb_get_op_i32(b, BNB_UPD_P_FLAGS) &&
           a->src[0]->type == b->src[0]->type && a->src[1]->type == b->src[1]->type &&
           !bnb_optim_uses_unorm((bnb_optim_type)bnb_get_op_i32(a, BNB_UPD_P_TYPE));
}

/* Marks runs of same-kind update nodes as multi-tensor groups (used by the CUDA backend). */
static bnb_status make_groups(bnb_optimizer *opt, bnb_tensor **upd, int n) {
    int i = 0;
    while (i < n) {
        int j = i + 1;
        while (j < n && same_group_kind(upd[i], upd[j])) j++;
        if (j - i > 1) {
            bnb_status s = grow((void **)&opt->groups, &opt->cap_groups, opt->n_groups + 1, sizeof(bnb_optim_group *));
            if (s != BNB_OK) return s;
            bnb_optim_group *grp = calloc(1, sizeof *grp);
            bnb_tensor **nodes = malloc((size_t)(j - i) * sizeof *nodes);
            if (!grp || !nodes) {
                free(grp);
                free(nodes);
                return bnb_fail(BNB_ERR_OOM, "bnb_optimizer_step: out of host memory");
            }
            grp->n = j - i;
            grp->nodes = nodes;
            memcpy(nodes, upd + i, (size_t)(j - i) * sizeof *nodes);
            opt->groups[opt->n_groups++] = grp;
            for (int k = i; k < j - 1; k++) bnb_set_op_i32(upd[k], BNB_UPD_P_ROLE, BNB_UPD_MEMBER);
            bnb_set_op_i32(upd[j - 1], BNB_UPD_P_ROLE, BNB_UPD_LEADER);
            memcpy(&upd[j - 1]->op_params[BNB_UPD_P_GROUP], &grp, sizeof grp);
        }
        i = j;
    }
    return BNB_OK;
}

bnb_status bnb_optimizer_step(bnb_optimizer *opt, bnb_context *ctx, bnb_graph *g) {
    const char *op = "bnb_optimizer_step";
    if (!opt || !ctx || !g) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    /* parameters with a gradient that g does not update yet */
    int n_leafs = g->n_leafs, np = 0;
    optim_entry **ents = malloc((size_t)(n_leafs ? n_leafs : 1) * sizeof *ents);
    bnb_tensor **upd = malloc((size_t)(n_leafs ? n_leafs : 1) * sizeof *upd);
    bnb_tensor **scales = malloc((size_t)(n_leafs ? n_leafs : 1) * sizeof *scales);
    bnb_status s = BNB_OK;
    if (!ents || !upd || !scales) {
        s = bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
        goto done;
    }
    for (int i = 0; i < n_leafs; i++) {
        bnb_tensor *p = g->leafs[i];
        if (!(p->flags & BNB_FLAG_PARAM) || !p->grad) continue;
        bool updated = false;
        for (int k = 0; k < g->n_nodes && !updated; k++)
            updated = g->nodes[k]->op == BNB_OP_OPTIMIZER_UPDATE && g->nodes[k]->src[0] == p;
        if (updated) continue;
        optim_entry *e = bnb_optim_find_entry(opt, p);
        if (!e && (s = entry_create(opt, p, &e)) != BNB_OK) goto done;
        upd[np++] = p;
    }
    /* entries may move while the array grows: look them up once all exist */
    for (int i = 0; i < np; i++) ents[i] = bnb_optim_find_entry(opt, upd[i]);
    /* clipping nodes first, so that only (unplanned, in-place) update nodes follow: a multi-tensor group's inputs
     * then stay live until its leader runs */
    bnb_tensor *gscale = NULL;
    if (opt->max_grad_norm > 0 && np > 0) {
        bnb_tensor *acc = NULL;
        for (int i = 0; i < np; i++)
            if (!(acc = bnb_optimizer_gnorm_op(ctx, ents[i]->param->grad, acc))) {
                s = bnb_last_status();
                goto done;
            }
        if (!(gscale = bnb_optimizer_gclip_op(ctx, acc, opt->max_grad_norm)) || (s = bnb_graph_build(g, gscale)) != BNB_OK) {
            s = gscale ? s : bnb_last_status();
            goto done;
        }
    }
    for (int i = 0; i < np; i++) {
        optim_entry *e = ents[i];
        scales[i] = gscale;
        if (e->cfg.percentile_clipping < 100) {
            scales[i] = bnb_optimizer_pclip_op(ctx, e->param->grad, e->history, e->hyper, e->cfg.percentile_clipping, gscale);
            if (!scales[i]) {
                s = bnb_last_status();
                goto done;
            }
            if ((s = bnb_graph_build(g, scales[i])) != BNB_OK) goto done;
        }
    }
    for (int i = 0; i < np; i++) {
        optim_entry *e = ents[i];
        int flags = (e->cfg.skip_zeros ? BNB_UPD_F_SKIP_ZEROS : 0) | (e->cfg.sparse_rows && e->bits == 32 ? BNB_UPD_F_SPARSE_ROWS : 0);
        upd[i] = bnb_optimizer_update_op(ctx, opt->type, e->bits, flags, e->param, e->param->grad, e->state1, e->state2,
                                         e->hyper, scales[i]);
        if (!upd[i]) {
            s = bnb_last_status();
            goto done;
        }
    }
    s = make_groups(opt, upd, np);
    for (int i = 0; i < np && s == BNB_OK; i++) s = bnb_graph_build(g, upd[i]);
done:
    free(ents);
    free(upd);
    free(scales);
    return s;
}
