/* Data-parallel trainer on top of bnb_trainer (src/train/, read-only here): per rank, the trainer's
 * forward + backward-accumulate graph runs on this rank's micro-batches; the gradient accumulators are all-reduced
 * in buckets; then one optimizer graph (all parameters, or this rank's ZeRO-1 shard followed by a broadcast of the
 * updated parameters from their owners) applies the update. The trainer is built with accum * world micro-batches,
 * so its loss scale is 1 / (accum * world) and the summed accumulators equal a single process's. */
#include "dist-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../optim/optim-impl.h"
#include "../train/train-impl.h"
#include "bnb-impl.h"

bnb_status bnb_dist_broadcast_owned(bnb_dist_comm *c, bnb_backend *be, bnb_tensor **ts, const int *owner, int n);

struct bnb_dist_trainer {
    bnb_trainer *t;
    bnb_dist_comm *comm; /* NULL: a "virtual" rank driven by the caller (tests), or world 1 */
    bnb_dist_train_options o;
    int rank, world;
    int64_t accum; /* per rank */
    bool plain;    /* accum * world == 1: the trainer's own step */
    bnb_tensor *acc[TRAIN_MAX_PARAMS];
    int owner[TRAIN_MAX_PARAMS];
    bnb_context *octx;
    bnb_graph *og; /* optimizer graph */
    double loss_sum;
};

/* internal API (dist-impl.h users: tests drive virtual ranks through these phases) */
bnb_dist_trainer *bnb_dist_trainer_new_virtual(const bnb_train_config *cfg, const int32_t *tokens, int64_t n,
                                               int rank, int world, bnb_dist_train_options opt);
bnb_status bnb_dist_trainer_local(bnb_dist_trainer *d);
bnb_status bnb_dist_trainer_apply(bnb_dist_trainer *d, float *loss);
int bnb_dist_trainer_grads(bnb_dist_trainer *d, bnb_tensor ***grads, bnb_tensor ***params, const int **owner);
double *bnb_dist_trainer_loss_sum(bnb_dist_trainer *d);

static bnb_status copy_optimizer_config(bnb_dist_trainer *d, bnb_optimizer **out) {
    bnb_trainer *t = d->t;
    int big = 0;
    for (int i = 1; i < t->n_params; i++)
        if (bnb_nelements(t->params[i]) > bnb_nelements(t->params[big])) big = i;
    bnb_optim_config def, pc;
    bnb_status st = bnb_optimizer_param_config(t->opt, t->params[big], &def);
    if (st != BNB_OK) return st;
    bnb_optimizer *z = bnb_optimizer_new(t->cfg.optim, def);
    if (!z) return bnb_last_status();
    for (int i = 0; i < t->n_params && st == BNB_OK; i++) {
        if (d->owner[i] != d->rank) continue;
        if ((st = bnb_optimizer_param_config(t->opt, t->params[i], &pc)) != BNB_OK) break;
        const bnb_tensor *p = t->params[i];
#define OVR(field, key)                                                                                                \
    if (st == BNB_OK && pc.field != def.field) st = bnb_optimizer_override(z, p, key, (double)pc.field)
        OVR(lr, BNB_OPTIM_KEY_LR);
        OVR(weight_decay, BNB_OPTIM_KEY_WEIGHT_DECAY);
        OVR(beta1, BNB_OPTIM_KEY_BETA1);
        OVR(beta2, BNB_OPTIM_KEY_BETA2);
        OVR(eps, BNB_OPTIM_KEY_EPS);
        OVR(percentile_clipping, BNB_OPTIM_KEY_PERCENTILE_CLIPPING);
        OVR(optim_bits, BNB_OPTIM_KEY_BITS);
        OVR(min_8bit_size, BNB_OPTIM_KEY_MIN_8BIT_SIZE);
#undef OVR
    }
    if (st != BNB_OK) {
        bnb_optimizer_free(z);
        return st;
    }
    *out = z;
    return BNB_OK;
}

/* The optimizer graph: (ZeRO-1: global-norm clip scale over ALL reduced gradients, applied in place to the owned
 * ones, so the shard's update equals the full one) + the fused updates of the owned / all parameters. */
static bnb_status build_optimizer_graph(bnb_dist_trainer *d) {
    bnb_trainer *t = d->t;
    size_t nodes = (size_t)t->n_params * 8 + 64;
    bnb_context_params cp = {.mem_size = nodes * 1024 + (1u << 20), .no_alloc = true};
    if (!(d->octx = bnb_context_new(cp)) || !(d->og = bnb_graph_new(d->octx, nodes))) return bnb_last_status();
    bnb_status st = BNB_OK;
    if (d->o.zero1 && t->cfg.clip > 0) {
        bnb_tensor *sq = NULL, *gs;
        for (int i = 0; i < t->n_params; i++)
            if (!(sq = bnb_optimizer_gnorm_op(d->octx, d->acc[i], sq))) return bnb_last_status();
        if (!(gs = bnb_optimizer_gclip_op(d->octx, sq, t->cfg.clip))) return bnb_last_status();
        for (int i = 0; i < t->n_params && st == BNB_OK; i++) {
            if (d->owner[i] != d->rank) continue;
            bnb_tensor *c = bnb_cpy(d->octx, bnb_mul(d->octx, d->acc[i], gs), d->acc[i]);
            st = c ? bnb_graph_build(d->og, c) : bnb_last_status();
        }
    }
    for (int i = 0; i < t->n_params && st == BNB_OK; i++)
        if (d->owner[i] == d->rank) st = bnb_graph_build(d->og, t->params[i]);
    if (st == BNB_OK) st = bnb_optimizer_step(t->opt, d->octx, d->og);
    return st;
}

bnb_dist_trainer *bnb_dist_trainer_new_virtual(const bnb_train_config *cfg, const int32_t *tokens, int64_t n,
                                               int rank, int world, bnb_dist_train_options opt) {
    const char *op = "bnb_dist_trainer_new";
    if (!cfg || !tokens || world < 1 || rank < 0 || rank >= world || cfg->accum < 1)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: bad arguments (rank %d, world %d)", op, rank, world);
    bnb_dist_trainer *d = calloc(1, sizeof *d);
    if (!d) return bnb_fail_null(BNB_ERR_OOM, "%s: out of host memory", op);
    d->rank = rank;
    d->world = world;
    d->accum = cfg->accum;
    d->o = opt;
    bnb_train_config c = *cfg;
    c.accum = cfg->accum * world;
    d->plain = c.accum == 1;
    if (!(d->t = bnb_trainer_new(&c, tokens, n))) goto fail;
    bnb_trainer *t = d->t;
    if (d->plain) return d;
    int64_t numel[TRAIN_MAX_PARAMS];
    for (int i = 0; i < t->n_params; i++) {
        numel[i] = bnb_nelements(t->params[i]);
        if (!(d->acc[i] = bnb_grad_accumulator(t->params[i]))) {
            bnb_fail(BNB_ERR_GRAPH, "%s: parameter '%s' has no gradient accumulator", op, t->params[i]->name);
            goto fail;
        }
    }
    if (opt.zero1) {
        if (bnb_dist_zero_partition(numel, t->n_params, world, d->owner, NULL) != BNB_OK) goto fail;
    } else {
        for (int i = 0; i < t->n_params; i++) d->owner[i] = rank;
    }
    /* the step graph (its update nodes hold the trainer's optimizer) is replaced by the optimizer graph */
    train_graph_release(&t->step_g);
    for (int i = 0; i < t->n_params; i++) t->params[i]->grad = d->acc[i];
    if (opt.zero1) {
        bnb_optimizer *z = NULL;
        if (copy_optimizer_config(d, &z) != BNB_OK) goto fail;
        bnb_optimizer_free(t->opt); /* drops the full states; this rank keeps its shard's only */
        t->opt = z;
    }
    if (build_optimizer_graph(d) != BNB_OK) goto fail;
    return d;
fail:
    bnb_dist_trainer_free(d);
    return NULL;
}

bnb_dist_trainer *bnb_dist_trainer_new(const bnb_train_config *cfg, const int32_t *tokens, int64_t n,
                                       bnb_dist_comm *comm, bnb_dist_train_options opt) {
    if (!comm) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_dist_trainer_new: NULL communicator");
    if (bnb_dist_world(comm) > 1 && (!cfg || !cfg->backend || bnb_backend_is_cpu(cfg->backend)))
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_dist_trainer_new: cfg->backend must be the CUDA backend of "
                             "device %d", bnb_dist_device(comm));
    bnb_dist_trainer *d = bnb_dist_trainer_new_virtual(cfg, tokens, n, bnb_dist_rank(comm), bnb_dist_world(comm), opt);
    if (d) d->comm = comm;
    return d;
}

void bnb_dist_trainer_free(bnb_dist_trainer *d) {
    if (!d) return;
    if (d->octx) bnb_context_free(d->octx);
    bnb_trainer_free(d->t);
    free(d);
}

bnb_trainer *bnb_dist_trainer_base(bnb_dist_trainer *d) { return d ? d->t : NULL; }
size_t bnb_dist_trainer_state_bytes(const bnb_dist_trainer *d) { return d ? bnb_optimizer_state_bytes(d->t->opt) : 0; }
double *bnb_dist_trainer_loss_sum(bnb_dist_trainer *d) { return &d->loss_sum; }

int bnb_dist_trainer_grads(bnb_dist_trainer *d, bnb_tensor ***grads, bnb_tensor ***params, const int **owner) {
    if (grads) *grads = d->acc;
    if (params) *params = d->t->params;
    if (owner) *owner = d->owner;
    return d->plain ? 0 : d->t->n_params;
}

/* This rank's micro-batches: every rank draws the starts of all accum * world micro-batches from the trainer's RNG
 * (as bnb_trainer_step would, B starts per micro-batch) and trains on its own contiguous range of them. */
bnb_status bnb_dist_trainer_local(bnb_dist_trainer *d) {
    bnb_trainer *t = d->t;
    int64_t T = t->cfg.seq, B = t->cfg.batch, span = t->n_train - T - 1, M = d->accum * d->world;
    size_t bytes = (size_t)(B * T) * sizeof(int32_t);
    bnb_status st = bnb_optimizer_set_lr(t->opt, bnb_trainer_get_lr(t, t->step));
    d->loss_sum = 0;
    for (int64_t m = 0; m < M && st == BNB_OK; m++) {
        bool mine = m / d->accum == d->rank;
        for (int64_t b = 0; b < B; b++) {
            int64_t start = (int64_t)(train_rng_next(&t->rng) % (uint64_t)(span + 1));
            if (!mine) continue;
            memcpy(t->host_tok + b * T, t->tokens + start, (size_t)T * sizeof(int32_t));
            memcpy(t->host_tgt + b * T, t->tokens + start + 1, (size_t)T * sizeof(int32_t));
        }
        if (!mine) continue;
        train_graph *g = &t->micro_g;
        float l = 0;
        st = bnb_tensor_set(g->tokens, t->host_tok, 0, bytes);
        if (st == BNB_OK) st = bnb_tensor_set(g->targets, t->host_tgt, 0, bytes);
        if (st == BNB_OK) st = bnb_tensor_set(g->pos, t->host_pos, 0, bytes);
        if (st == BNB_OK) st = bnb_graph_compute(t->backend, g->graph);
        if (st == BNB_OK) st = bnb_tensor_get_f32(g->loss, &l, 1);
        d->loss_sum += l;
    }
    return st;
}

bnb_status bnb_dist_trainer_apply(bnb_dist_trainer *d, float *loss) {
    bnb_trainer *t = d->t;
    bnb_status st = bnb_graph_compute(t->backend, d->og);
    if (st == BNB_OK && d->o.zero1 && d->comm)
        st = bnb_dist_broadcast_owned(d->comm, t->backend, t->params, d->owner, t->n_params);
    if (st == BNB_OK) st = bnb_graph_reset_grads(t->micro_g.graph);
    if (st != BNB_OK) return st;
    t->step++;
    t->tokens_seen += t->cfg.batch * t->cfg.seq * d->accum * d->world;
    double mean = d->loss_sum / (double)(d->accum * d->world);
    if (loss) *loss = (float)mean;
    if (!isfinite(mean))
        return bnb_fail(BNB_ERR_NUMERIC, "bnb_dist_trainer_step: loss is %g at step %lld", mean, (long long)t->step);
    return BNB_OK;
}

bnb_status bnb_dist_trainer_step(bnb_dist_trainer *d, float *loss) {
    if (!d) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_trainer_step: NULL trainer");
    if (d->plain) return bnb_trainer_step(d->t, loss);
    bnb_status st = bnb_dist_trainer_local(d);
    if (st == BNB_OK && d->comm && d->world > 1) {
        st = bnb_dist_allreduce_tensors(d->comm, d->t->backend, d->acc, d->t->n_params, d->o.mode, d->o.bucket_bytes);
        if (st == BNB_OK) st = bnb_dist_allreduce_scalar(d->comm, &d->loss_sum);
    }
    if (st == BNB_OK) st = bnb_dist_trainer_apply(d, loss);
    return st;
}
