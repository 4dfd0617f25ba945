/* Private structures of the optimizer object (src/optim/optimizer.c, optim-io.c, stable-embedding.c). */
#ifndef BNB_OPTIMIZER_PRIV_H
#define BNB_OPTIMIZER_PRIV_H

#include "optim-impl.h"

typedef struct optim_entry {
    bnb_tensor *param;
    bnb_optim_config cfg; /* defaults + overrides */
    int bits;             /* effective state precision (min_8bit_size applied) */
    int64_t n;
    bnb_context *ctx;     /* metadata of the tensors below (no_alloc) */
    bnb_tensor *state1, *state2, *hyper, *history;
    bnb_buffer *buf;      /* their data on the parameter's backend, or */
    void *host;           /* host memory for parameters living in a host context */
} optim_entry;

typedef struct optim_override {
    const bnb_tensor *param;
    bnb_optim_key key;
    double value;
} optim_override;

struct bnb_optimizer {
    bnb_optim_type type;
    bnb_optim_config defaults;
    float max_grad_norm;
    optim_entry *entries;
    int n_entries, cap_entries;
    optim_override *overrides;
    int n_overrides, cap_overrides;
    bnb_optim_group **groups; /* multi-tensor descriptors referenced by graph nodes */
    int n_groups, cap_groups;
};

optim_entry *bnb_optim_find_entry(const bnb_optimizer *opt, const bnb_tensor *param);
/* Writes the hyperparameter slots (not the step) of e's hyper tensor from e->cfg. */
bnb_status bnb_optim_write_hyper(optim_entry *e);

#endif
