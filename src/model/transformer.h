/* Internal declarations of the transformer model (transformer.c, transformer-graph.c, model-io.c). Not installed. */
#ifndef BNB_TRANSFORMER_H
#define BNB_TRANSFORMER_H

#include "model-impl.h"

typedef struct bnb_model_layer {
    bnb_tensor *attn_norm, *wq, *wk, *wv, *wo;
    bnb_tensor *ffn_norm, *w_gate, *w_up, *w_down;
    bnb_tensor *k_cache; /* [head_dim, n_ctx, n_head_kv] */
    bnb_tensor *v_cache; /* [n_ctx, head_dim, n_head_kv] (transposed: attention reads rows over positions) */
} bnb_model_layer;

/* The graph of the last eval, reused when the next one has the same shape (perplexity windows, fixed prefills). */
typedef struct bnb_model_graph {
    bnb_context *ctx;
    bnb_graph *graph;
    bnb_buffer *inputs; /* tokens + positions */
    bnb_tensor *tokens, *pos, *logits;
    int64_t n, n_past;
    bool all_logits;
} bnb_model_graph;

struct bnb_model {
    bnb_model_config cfg;
    bnb_model_params params;
    bnb_backend *backend;
    bool own_backend;
    bnb_context *wctx; /* weights (metadata; data in wbuf) */
    bnb_buffer *wbuf;
    bnb_context *kvctx; /* KV cache */
    bnb_buffer *kvbuf;
    int64_t n_ctx;
    bnb_tensor *tok_embd, *output_norm, *output; /* output NULL when tied */
    bnb_model_layer *layers;
    bnb_tokenizer *tokenizer; /* owned, may be NULL */
    void (*tokenizer_free)(bnb_tokenizer *); /* set by the loader (keeps this file free of tokenizer code) */
    bnb_gguf *src_gguf; /* the GGUF file loaded from (its tokenizer.* keys are written back by save), or NULL */
    void (*src_gguf_free)(bnb_gguf *);
    bnb_model_graph cached;
};

/* Check a config (positive sizes, heads divide, ...); BNB_ERR_INVALID_ARG naming the field. `what` prefixes. */
bnb_status bnb_model_config_check(const bnb_model_config *cfg, const char *what);
/* The linear weight's storage type for a weight kind (F32/F16/I8_ROW/Q4_NF4). */
bnb_type bnb_model_linear_type(bnb_weight_kind k);
/* y = W x for a linear weight of any supported type (mul_mat or matmul_int8). */
bnb_tensor *bnb_model_linear(bnb_context *ctx, const bnb_model *m, bnb_tensor *w, bnb_tensor *x);
/* The forward graph for n tokens at n_past (transformer-graph.c). Fills g (ctx, graph, inputs, logits). */
bnb_status bnb_model_build_graph(bnb_model *m, int64_t n, int64_t n_past, bool all_logits, bnb_model_graph *g);
void bnb_model_graph_release(bnb_model_graph *g);

/* Rows of a q/k weight for one head, between the HF (NEOX, rotate_half) and GGUF (NORMAL, interleaved) layouts:
 * GGUF row 2i+j of a head is HF row j*hd/2 + i. w has n_head * hd rows of `cols` floats; done in place. */
void bnb_model_permute_qk(float *w, int64_t n_head, int64_t hd, int64_t cols, bool to_normal);

#endif
