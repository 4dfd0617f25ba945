/* Internal declarations of the transformer model (transformer.c, transformer-graph.c, model-io.c). Not installed. */
#ifndef BNB_TRANSFORMER_H
#define BNB_TRANSFORMER_H

#include "model-impl.h"

typedef struct bnb_model_layer {
    bnb_tensor *attn_norm, *wq, *wk, *wv, *wo;
    bnb_tensor *ffn_norm, *w_gate, *w_up, *w_down;
    /* decode only: [wq; wk; wv] and [w_gate; w_up] as one matrix each (one matmul instead of three / two), copies
     * made at the first one-token eval (bnb_model_fuse_weights); NULL when not made */
    bnb_tensor *w_qkv, *w_gu;
} bnb_model_layer;

/* The graph of the last eval, reused when the next one has the same shape (perplexity windows, fixed prefills).
 *
 * Decode graphs (one token) are reused across tokens: their structure does not depend on the position, so the CUDA
 * backend captures them once and replays them. The new key/value go to the cache's slot 0 (a fixed address), the
 * attention reads slot 0 and cache positions 0 .. n_kv-1 (indices 1 .. n_kv) with an additive mask hiding the
 * positions >= n_past, and a small plain graph (`commit`, run before the next step) moves slot 0 to index n_past + 1
 * for all layers at once. The mask is a window of `mask_line` whose offset follows n_past; the position comes in
 * with the token (one host->device copy per token). */
typedef struct bnb_model_graph {
    bnb_context *ctx;
    bnb_graph *graph;
    bnb_buffer *inputs; /* tokens + positions (decode: io, mask_line, x_in, mask_in) */
    bnb_tensor *tokens, *pos, *logits;
    int64_t n, n_past;
    bool all_logits;
    /* decode graphs only */
    bool decode;
    bnb_tensor *io;        /* I32 [2]: token, position (tokens, pos are views of it) */
    bnb_tensor *mask_line; /* F32 [2 (n_kv + 1)]: zeros, then -inf; the mask is a window of it (m_src) */
    int64_t n_kv, gran;
    /* `commit`, run before the decode graph: slot 0 -> index n_past + 1 of every layer's K and V for the previous
     * token (or slot 0 onto itself when none is due), the token's embedding row -> x_in, the mask window -> mask_in;
     * plain copies whose source / destination offsets are set per token. The decode graph itself then has no
     * get_rows, whose index check would cost a device sync per token. */
    bnb_graph *commit;
    bnb_tensor *k_dst, *v_dst, *k_cpy, *v_cpy, *e_src, *m_src;
    int64_t pending; /* > 0: the commit to this index is due (run at the start of the next eval: its launches then
                      * overlap the host's preparation of that eval instead of delaying the logits) */
    /* direct (CPU: nothing to capture): the layers' K/V writes go straight to index n_past + 1 (their view offsets
     * are moved per token, base + (n_past + 1) * step) and there is no commit; the mask hides slot 0 instead */
    bool direct;
    int n_patch;
    bnb_tensor **patch;
    size_t *patch_base, *patch_step;
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
    /* K [head_dim, n_ctx + 1, n_head_kv, n_layer] and V [n_ctx + 1, head_dim, n_head_kv, n_layer] (V transposed:
     * attention reads rows over positions). Index 0 is the decode slot, position p lives at index p + 1. */
    bnb_tensor *k_all, *v_all;
    int64_t n_ctx;
    bnb_tensor *tok_embd, *output_norm, *output; /* output NULL when tied */
    bnb_model_layer *layers;
    bnb_tokenizer *tokenizer; /* owned, may be NULL */
    void (*tokenizer_free)(bnb_tokenizer *); /* set by the loader (keeps this file free of tokenizer code) */
    bnb_gguf *src_gguf; /* the GGUF file loaded from (its tokenizer.* keys are written back by save), or NULL */
    void (*src_gguf_free)(bnb_gguf *);
    bnb_model_graph cached;  /* prefill (n > 1), or every eval when decode graphs are off */
    bnb_model_graph decoded; /* one-token evals */
    int decode_graphs;       /* -1 unknown, 0 off (BNB_DECODE_GRAPH=0: rebuild per token, for comparisons), 1 on */
    bool decode_direct;      /* CPU (BNB_DECODE_DIRECT=0: the slot + commit scheme of the GPU, for tests) */
    int fused;               /* 0 not tried, 1 layers[].w_qkv / w_gu made, -1 not made (CPU unless
                              * BNB_DECODE_FUSE=1, BNB_DECODE_FUSE=0, nf4) */
    bnb_context *fctx;       /* the fused weights */
    bnb_buffer *fbuf;
};

/* Check a config (positive sizes, heads divide, ...); BNB_ERR_INVALID_ARG naming the field. `what` prefixes. */
bnb_status bnb_model_config_check(const bnb_model_config *cfg, const char *what);
/* The linear weight's storage type for a weight kind (F32/F16/I8_ROW/Q4_NF4). */
bnb_type bnb_model_linear_type(bnb_weight_kind k);
/* y = W x for a linear weight of any supported type (mul_mat or matmul_int8). */
bnb_tensor *bnb_model_linear(bnb_context *ctx, const bnb_model *m, bnb_tensor *w, bnb_tensor *x);
/* The forward graph for n tokens at n_past (transformer-graph.c). Fills g (ctx, graph, inputs, logits). */
bnb_status bnb_model_build_graph(bnb_model *m, int64_t n, int64_t n_past, bool all_logits, bnb_model_graph *g);
/* The reusable one-token graph for positions up to n_kv (see bnb_model_graph), mask rows of gran + 1. */
bnb_status bnb_model_build_decode_graph(bnb_model *m, int64_t n_kv, int64_t gran, bnb_model_graph *g);
/* One token through a decode graph at n_past (n_past <= g->n_kv); logits out. */
bnb_status bnb_model_decode_step(bnb_model *m, bnb_model_graph *g, int32_t token, int64_t n_past, float *logits);
/* Run the decode graph's due commit, if any (before anything else reads or writes the cache). */
bnb_status bnb_model_decode_flush(bnb_model *m, bnb_model_graph *g);
void bnb_model_graph_release(bnb_model_graph *g);
/* Make layers[].w_qkv / w_gu (F32, F16, I8_ROW weights); m->fused says whether they exist. */
bnb_status bnb_model_fuse_weights(bnb_model *m);
void bnb_model_unfuse_weights(bnb_model *m);
/* BNB_DECODE_PROFILE=1: print the decode phase times gathered so far (stderr) and reset them. */
void bnb_model_decode_profile_report(void);

/* Rows of a q/k weight for one head, between the HF (NEOX, rotate_half) and GGUF (NORMAL, interleaved) layouts:
 * GGUF row 2i+j of a head is HF row j*hd/2 + i. w has n_head * hd rows of `cols` floats; done in place. */
void bnb_model_permute_qk(float *w, int64_t n_head, int64_t hd, int64_t cols, bool to_normal);

#endif
