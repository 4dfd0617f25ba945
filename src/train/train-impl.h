/* Internal declarations of the trainer (trainer.c, train-graph.c, checkpoint.c). Not installed. */
#ifndef BNB_TRAIN_IMPL_H
#define BNB_TRAIN_IMPL_H

#include "bnb-model.h"

#define TRAIN_MAX_PARAMS 1024

typedef struct train_layer {
    bnb_tensor *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} train_layer;

/* One compiled step graph (forward [+ backward] [+ optimizer update]) and its inputs. */
typedef struct train_graph {
    bnb_context *ctx;
    bnb_graph *graph;
    bnb_buffer *inputs; /* tokens, targets, positions (+ gradient accumulators) */
    bnb_tensor *tokens, *targets, *pos, *loss;
} train_graph;

struct bnb_trainer {
    bnb_train_config cfg;
    bnb_model_config mc;
    bnb_backend *backend;
    bool own_backend;
    bnb_context *wctx; /* parameters */
    bnb_buffer *wbuf;
    bnb_tensor *tok_embd, *output_norm, *output; /* output NULL when tied */
    train_layer *layers;
    bnb_tensor *params[TRAIN_MAX_PARAMS];
    int n_params;
    bnb_optimizer *opt;
    train_graph step_g;  /* forward + backward + update (accum == 1) or the last micro-batch */
    train_graph micro_g; /* forward + backward accumulate (accum > 1) */
    train_graph eval_g;  /* forward only */
    int32_t *tokens;
    int64_t n_tokens, n_train; /* [0, n_train) train, [n_train, n_tokens) validation */
    uint64_t rng;              /* data sampling RNG state */
    int64_t step;              /* optimizer updates done */
    int64_t tokens_seen;       /* data position: training tokens consumed */
    int32_t *host_tok, *host_tgt, *host_pos;
};

/* train-graph.c */
bnb_status train_create_params(bnb_trainer *t);
void train_init_params(bnb_trainer *t, uint64_t seed);
bnb_status train_build_graph(bnb_trainer *t, train_graph *tg, int mode); /* mode: 0 eval, 1 micro, 2 step */
void train_graph_release(train_graph *tg);

uint64_t train_rng_next(uint64_t *s);
#endif
