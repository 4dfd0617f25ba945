/* The Llama-style transformer model: configuration, weight tensors, KV cache, evaluation (the graph itself is built
 * in transformer-graph.c; file loading and saving in model-io.c). */
#include "transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const g_kind_names[] = {"f32", "f16", "int8", "nf4"};

const char *bnb_weight_kind_name(bnb_weight_kind k) {
    return (unsigned)k < sizeof g_kind_names / sizeof g_kind_names[0] ? g_kind_names[k] : "unknown";
}

bnb_status bnb_weight_kind_parse(const char *s, bnb_weight_kind *out) {
    for (int i = 0; s && i < (int)(sizeof g_kind_names / sizeof g_kind_names[0]); i++)
        if (strcmp(s, g_kind_names[i]) == 0) {
            *out = (bnb_weight_kind)i;
            return BNB_OK;
        }
    return bnb_fail(BNB_ERR_INVALID_ARG, "weights '%s': must be one of f32, f16, int8, nf4", s ? s : "(null)");
}

bnb_model_params bnb_model_default_params(void) {
    bnb_model_params p;
    memset(&p, 0, sizeof p);
    p.weights = BNB_WEIGHTS_F32;
    p.int8_threshold = 6.0f;
    return p;
}

bnb_type bnb_model_linear_type(bnb_weight_kind k) {
    switch (k) {
    case BNB_WEIGHTS_F16: return BNB_TYPE_F16;
    case BNB_WEIGHTS_INT8: return BNB_TYPE_I8_ROW;
    case BNB_WEIGHTS_NF4: return BNB_TYPE_Q4_NF4;
    default: return BNB_TYPE_F32;
    }
}

bnb_status bnb_model_config_check(const bnb_model_config *c, const char *what) {
    if (!c) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: config is NULL", what);
#define POS(field, lim)                                                                                               \
    if (c->field <= 0 || c->field > (lim))                                                                            \
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: " #field " = %lld is outside 1..%lld", what, (long long)c->field,  \
                        (long long)(lim));
    POS(n_vocab, 1 << 24)
    POS(n_embd, 1 << 16)
    POS(n_ff, 1 << 18)
    POS(n_layer, 1024)
    POS(n_head, 1024)
    POS(n_head_kv, 1024)
    POS(head_dim, 4096)
#undef POS
    if (c->n_head % c->n_head_kv != 0)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: n_head %lld is not a multiple of n_head_kv %lld", what,
                        (long long)c->n_head, (long long)c->n_head_kv);
    if (c->head_dim % 2 != 0)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: head_dim %lld must be even (RoPE rotates pairs)", what,
                        (long long)c->head_dim);
    if (!(c->rms_eps > 0.f) || !(c->rms_eps < 1.f))
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: rms_eps %g is outside (0, 1)", what, (double)c->rms_eps);
    if (!(c->rope_base > 0.f) || !isfinite(c->rope_base))
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: rope_base %g must be positive", what, (double)c->rope_base);
    if (c->rope_mode != BNB_ROPE_NORMAL && c->rope_mode != BNB_ROPE_NEOX)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: rope_mode %d is neither NORMAL nor NEOX", what, c->rope_mode);
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ creation */
static bnb_tensor *new_linear(bnb_model *m, int64_t in, int64_t out, const char *name) {
    bnb_tensor *t;
    switch (m->params.weights) {
    case BNB_WEIGHTS_INT8: t = bnb_int8_new_weight(m->wctx, in, out); break;
    case BNB_WEIGHTS_NF4: {
        bnb_quant_params qp = {.block = 64, .map = BNB_QMAP_NF4, .nested = 0, .threshold = 0.f};
        t = bnb_new_tensor_quant(m->wctx, BNB_TYPE_Q4_NF4, 2, (const int64_t[]){in, out}, qp);
        break;
    }
    default: t = bnb_new_tensor_2d(m->wctx, bnb_model_linear_type(m->params.weights), in, out);
    }
    return bnb_set_name(t, name);
}

static bnb_tensor *new_named(bnb_context *ctx, bnb_type type, int64_t ne0, int64_t ne1, const char *name) {
    bnb_tensor *t = ne1 > 0 ? bnb_new_tensor_2d(ctx, type, ne0, ne1) : bnb_new_tensor_1d(ctx, type, ne0);
    return bnb_set_name(t, name);
}

bnb_model *bnb_model_new(const bnb_model_config *cfg, const bnb_model_params *params) {
    if (bnb_model_config_check(cfg, "bnb_model_new") != BNB_OK) return NULL;
    bnb_model_params p = params ? *params : bnb_model_default_params();
    if ((unsigned)p.weights > BNB_WEIGHTS_NF4)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_new: weights kind %d is unknown", (int)p.weights);
    if (p.weights == BNB_WEIGHTS_INT8 && !(p.int8_threshold >= 0.f))
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_new: int8 threshold %g must be >= 0",
                             (double)p.int8_threshold);
    int64_t n_ctx = p.n_ctx > 0 ? p.n_ctx : (cfg->n_ctx_train > 0 ? BNB_MIN(cfg->n_ctx_train, 2048) : 2048);
    if (n_ctx > (1 << 20)) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_new: n_ctx %lld is too large", (long long)n_ctx);
    bnb_model *m = calloc(1, sizeof *m);
    if (!m) return bnb_fail_null(BNB_ERR_OOM, "bnb_model_new: out of host memory");
    m->cfg = *cfg;
    m->params = p;
    m->n_ctx = n_ctx;
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    if (!m->layers) goto oom;
    if (p.backend) {
        m->backend = p.backend;
    } else {
        m->backend = bnb_backend_cpu_new(p.n_threads);
        if (!m->backend) goto fail;
        m->own_backend = true;
    }
    size_t meta = (size_t)(cfg->n_layer * 16 + 16) * 1024 + (1 << 20);
    m->wctx = bnb_context_new((bnb_context_params){.mem_size = meta, .no_alloc = true});
    m->kvctx = bnb_context_new((bnb_context_params){.mem_size = (size_t)(cfg->n_layer * 4 + 4) * 1024 + 65536,
                                                    .no_alloc = true});
    if (!m->wctx || !m->kvctx) goto fail;

    const bnb_model_config *c = cfg;
    const int64_t q_out = c->n_head * c->head_dim, kv_out = c->n_head_kv * c->head_dim;
    const bnb_type emb_type = p.weights == BNB_WEIGHTS_F32 ? BNB_TYPE_F32 : BNB_TYPE_F16;
    m->tok_embd = new_named(m->wctx, emb_type, c->n_embd, c->n_vocab, "token_embd.weight");
    m->output_norm = new_named(m->wctx, BNB_TYPE_F32, c->n_embd, 0, "output_norm.weight");
    if (!m->tok_embd || !m->output_norm) goto fail;
    if (!c->tied_output) {
        /* bitsandbytes keeps the head in 16-bit for int8/nf4 (llm_int8_skip_modules); so do we */
        m->output = new_named(m->wctx, emb_type, c->n_embd, c->n_vocab, "output.weight");
        if (!m->output) goto fail;
    }
    char name[BNB_MAX_NAME];
    for (int64_t i = 0; i < c->n_layer; i++) {
        bnb_model_layer *L = &m->layers[i];
#define NAME(s) (snprintf(name, sizeof name, "blk.%lld." s, (long long)i), name)
        L->attn_norm = new_named(m->wctx, BNB_TYPE_F32, c->n_embd, 0, NAME("attn_norm.weight"));
        L->wq = new_linear(m, c->n_embd, q_out, NAME("attn_q.weight"));
        L->wk = new_linear(m, c->n_embd, kv_out, NAME("attn_k.weight"));
        L->wv = new_linear(m, c->n_embd, kv_out, NAME("attn_v.weight"));
        L->wo = new_linear(m, q_out, c->n_embd, NAME("attn_output.weight"));
        L->ffn_norm = new_named(m->wctx, BNB_TYPE_F32, c->n_embd, 0, NAME("ffn_norm.weight"));
        L->w_gate = new_linear(m, c->n_embd, c->n_ff, NAME("ffn_gate.weight"));
        L->w_up = new_linear(m, c->n_embd, c->n_ff, NAME("ffn_up.weight"));
        L->w_down = new_linear(m, c->n_ff, c->n_embd, NAME("ffn_down.weight"));
#undef NAME
        if (!L->attn_norm || !L->wq || !L->wk || !L->wv || !L->wo || !L->ffn_norm || !L->w_gate || !L->w_up ||
            !L->w_down)
            goto fail;
    }
    /* one tensor per K and V for all layers: the decode commit moves slot 0 of every layer with one copy */
    m->k_all = bnb_set_name(bnb_new_tensor_4d(m->kvctx, BNB_TYPE_F32, c->head_dim, n_ctx + 1, c->n_head_kv,
                                              c->n_layer), "cache_k");
    m->v_all = bnb_set_name(bnb_new_tensor_4d(m->kvctx, BNB_TYPE_F32, n_ctx + 1, c->head_dim, c->n_head_kv,
                                              c->n_layer), "cache_v");
    if (!m->k_all || !m->v_all) goto fail;
    m->decode_graphs = -1;
    m->wbuf = bnb_backend_alloc_tensors(m->backend, m->wctx);
    if (!m->wbuf) goto fail;
    m->kvbuf = bnb_backend_alloc_tensors(m->backend, m->kvctx);
    if (!m->kvbuf) goto fail;
    if (bnb_buffer_clear(m->kvbuf, 0) != BNB_OK) goto fail;
    return m;
oom:
    bnb_fail(BNB_ERR_OOM, "bnb_model_new: out of host memory");
fail:
    bnb_model_free(m);
    return NULL;
}

void bnb_model_free(bnb_model *m) {
    if (!m) return;
    bnb_model_graph_release(&m->cached);
    bnb_model_graph_release(&m->decoded);
    bnb_model_decode_profile_report();
    bnb_model_unfuse_weights(m);
    if (m->wbuf) bnb_buffer_free(m->wbuf);
    if (m->kvbuf) bnb_buffer_free(m->kvbuf);
    bnb_context_free(m->wctx);
    bnb_context_free(m->kvctx);
    if (m->tokenizer && m->tokenizer_free) m->tokenizer_free(m->tokenizer);
    if (m->src_gguf && m->src_gguf_free) m->src_gguf_free(m->src_gguf);
    if (m->own_backend) bnb_backend_free(m->backend);
    free(m->layers);
    free(m);
}

const bnb_model_config *bnb_model_get_config(const bnb_model *m) { return m ? &m->cfg : NULL; }
bnb_weight_kind bnb_model_weight_kind(const bnb_model *m) { return m ? m->params.weights : BNB_WEIGHTS_F32; }
bnb_backend *bnb_model_backend(bnb_model *m) { return m ? m->backend : NULL; }
int64_t bnb_model_n_ctx(const bnb_model *m) { return m ? m->n_ctx : 0; }
const bnb_tokenizer *bnb_model_tokenizer(const bnb_model *m) { return m ? m->tokenizer : NULL; }
size_t bnb_model_weight_bytes(const bnb_model *m) { return m && m->wbuf ? bnb_buffer_size(m->wbuf) : 0; }

bnb_tensor *bnb_model_weight(bnb_model *m, const char *name) {
    if (!m || !name) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_weight: model or name is NULL");
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t; t = bnb_ctx_next_tensor(m->wctx, t))
        if (strcmp(t->name, name) == 0) return t;
    return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_weight: the model has no tensor '%s'", name);
}

bnb_status bnb_model_set_weight(bnb_model *m, const char *name, bnb_type src_type, const void *src, int64_t n) {
    bnb_tensor *t = bnb_model_weight(m, name);
    if (!t) return bnb_last_status();
    if (!src) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_set_weight: %s: data is NULL", name);
    if (n != bnb_nelements(t)) {
        char s[64];
        return bnb_fail(BNB_ERR_SHAPE, "bnb_model_set_weight: %s is %s (%lld elements), got %lld values", name,
                        bnb_shape_str(t, s, sizeof s), (long long)bnb_nelements(t), (long long)n);
    }
    if (!bnb_type_is_float(src_type))
        return bnb_fail(BNB_ERR_TYPE, "bnb_model_set_weight: %s: source type %s is not f32/f16/bf16", name,
                        bnb_type_name(src_type));
    bnb_model_graph_release(&m->cached);
    bnb_model_decode_flush(m, &m->decoded);
    bnb_model_graph_release(&m->decoded);
    bnb_model_unfuse_weights(m); /* made again from the new weights at the next one-token eval */
    if (t->type == BNB_TYPE_I8_ROW) return bnb_int8_set_from(t, src_type, src, n);
    if (t->type == src_type) return bnb_tensor_set(t, src, 0, bnb_nbytes(t));
    const float *f = src;
    float *tmp = NULL;
    if (src_type != BNB_TYPE_F32) {
        tmp = malloc((size_t)n * sizeof(float));
        if (!tmp) return bnb_fail(BNB_ERR_OOM, "bnb_model_set_weight: %s: out of host memory", name);
        bnb_type_get_traits(src_type)->to_f32(src, tmp, n);
        f = tmp;
    }
    bnb_status st = bnb_tensor_set_f32(t, f, n);
    free(tmp);
    return st;
}

void bnb_model_permute_qk(float *w, int64_t n_head, int64_t hd, int64_t cols, bool to_normal) {
    float *tmp = malloc((size_t)(hd * cols) * sizeof(float));
    if (!tmp) return;
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < n_head; h++) {
        float *blk = w + h * hd * cols;
        memcpy(tmp, blk, (size_t)(hd * cols) * sizeof(float));
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                const int64_t normal_row = 2 * i + j, neox_row = j * half + i;
                const int64_t dst = to_normal ? normal_row : neox_row, srow = to_normal ? neox_row : normal_row;
                memcpy(blk + dst * cols, tmp + srow * cols, (size_t)cols * sizeof(float));
            }
    }
    free(tmp);
}

/* ------------------------------------------------------------------------------------------------ fused weights */
void bnb_model_unfuse_weights(bnb_model *m) {
    for (int64_t i = 0; m->layers && i < m->cfg.n_layer; i++) m->layers[i].w_qkv = m->layers[i].w_gu = NULL;
    if (m->fbuf) bnb_buffer_free(m->fbuf);
    bnb_context_free(m->fctx);
    m->fbuf = NULL;
    m->fctx = NULL;
    m->fused = 0;
}

/* dst = the rows of src[0..n) one after another (same type, same row length); storage copied through the host. */
static bnb_status stack_rows(bnb_tensor *dst, bnb_tensor *const *src, int n, uint8_t *tmp) {
    if (dst->type == BNB_TYPE_I8_ROW) { /* int8 values, then the row scales (SCB) */
        const bnb_int8_layout ld = bnb_int8_layout_of(dst);
        size_t off_q = 0, off_s = ld.rowmax_offs;
        for (int i = 0; i < n; i++) {
            const bnb_int8_layout ls = bnb_int8_layout_of(src[i]);
            if (ls.has_outliers) return bnb_fail(BNB_ERR_UNSUPPORTED, "fuse: %s has an outlier section", src[i]->name);
            const size_t nq = (size_t)(ls.rows * ls.cols), ns = (size_t)ls.rows * 4;
            bnb_status st = bnb_tensor_get(src[i], tmp + off_q, 0, nq);
            if (st == BNB_OK) st = bnb_tensor_get(src[i], tmp + off_s, ls.rowmax_offs, ns);
            if (st != BNB_OK) return st;
            off_q += nq;
            off_s += ns;
        }
        memset(tmp + off_q, 0, ld.rowmax_offs - off_q); /* the padding */
        return bnb_tensor_set(dst, tmp, 0, ld.rowmax_offs + (size_t)ld.rows * 4);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const size_t nb = bnb_nbytes(src[i]);
        bnb_status st = bnb_tensor_get(src[i], tmp + off, 0, nb);
        if (st != BNB_OK) return st;
        off += nb;
    }
    return bnb_tensor_set(dst, tmp, 0, off);
}

bnb_status bnb_model_fuse_weights(bnb_model *m) {
    if (m->fused != 0) return BNB_OK;
    const char *env = getenv("BNB_DECODE_FUSE");
    const bnb_type t = m->layers[0].wq->type;
    /* the CPU gains nothing per token from the fused copies (same work, no launches to save) but pays for them */
    const bool forced = env && strcmp(env, "1") == 0; /* BNB_DECODE_FUSE=1: also on the CPU (tests) */
    if ((env && strcmp(env, "0") == 0) || (bnb_backend_is_cpu(m->backend) && !forced) ||
        (t != BNB_TYPE_F32 && t != BNB_TYPE_F16 && t != BNB_TYPE_I8_ROW)) {
        m->fused = -1;
        return BNB_OK;
    }
    const bnb_model_config *c = &m->cfg;
    const int64_t in = c->n_embd, qkv = (c->n_head + 2 * c->n_head_kv) * c->head_dim, gu = 2 * c->n_ff;
    m->fctx = bnb_context_new((bnb_context_params){.mem_size = (size_t)(c->n_layer * 4 + 4) * 1024 + 65536,
                                                   .no_alloc = true});
    if (!m->fctx) return bnb_last_status();
    for (int64_t i = 0; i < c->n_layer; i++) {
        bnb_model_layer *L = &m->layers[i];
        if (t == BNB_TYPE_I8_ROW) {
            L->w_qkv = bnb_int8_new_weight(m->fctx, in, qkv);
            L->w_gu = bnb_int8_new_weight(m->fctx, in, gu);
        } else {
            L->w_qkv = bnb_new_tensor_2d(m->fctx, t, in, qkv);
            L->w_gu = bnb_new_tensor_2d(m->fctx, t, in, gu);
        }
        if (!L->w_qkv || !L->w_gu) goto fail;
    }
    m->fbuf = bnb_backend_alloc_tensors(m->backend, m->fctx);
    if (!m->fbuf) goto fail;
    uint8_t *tmp = malloc(BNB_MAX(bnb_nbytes(m->layers[0].w_qkv), bnb_nbytes(m->layers[0].w_gu)));
    if (!tmp) {
        bnb_fail(BNB_ERR_OOM, "bnb_model_eval: out of host memory (fused weights)");
        goto fail;
    }
    bnb_status st = BNB_OK;
    for (int64_t i = 0; i < c->n_layer && st == BNB_OK; i++) {
        bnb_model_layer *L = &m->layers[i];
        st = stack_rows(L->w_qkv, (bnb_tensor *const[]){L->wq, L->wk, L->wv}, 3, tmp);
        if (st == BNB_OK) st = stack_rows(L->w_gu, (bnb_tensor *const[]){L->w_gate, L->w_up}, 2, tmp);
    }
    free(tmp);
    if (st != BNB_OK) goto fail;
    m->fused = 1;
    return BNB_OK;
fail:;
    bnb_status err = bnb_last_status() != BNB_OK ? bnb_last_status() : BNB_ERR_OOM;
    bnb_model_unfuse_weights(m);
    return err;
}

/* ------------------------------------------------------------------------------------------------ evaluation */
bnb_status bnb_model_eval(bnb_model *m, const int32_t *tokens, int64_t n, int64_t n_past, bool all_logits,
                          float *logits) {
    if (!m || !tokens || !logits) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_eval: NULL argument");
    if (n <= 0 || n_past < 0 || n_past + n > m->n_ctx)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_eval: %lld tokens at position %lld do not fit the context "
                        "of %lld", (long long)n, (long long)n_past, (long long)m->n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.n_vocab)
            return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_eval: token %d at %lld is outside the vocabulary "
                            "[0, %lld)", tokens[i], (long long)i, (long long)m->cfg.n_vocab);
    if (m->decode_graphs < 0) {
        const char *env = getenv("BNB_DECODE_GRAPH");
        m->decode_graphs = !(env && strcmp(env, "0") == 0);
        env = getenv("BNB_DECODE_DIRECT");
        m->decode_direct = bnb_backend_is_cpu(m->backend) && !(env && strcmp(env, "0") == 0);
    }
    /* at the first eval (the prefill), so the first decode step is not made slow by it (set_weight drops the decode
     * graph and the copies); without them (no memory, say) decoding just runs the separate matmuls */
    if (m->decode_graphs && m->fused == 0 && bnb_model_fuse_weights(m) != BNB_OK) {
        bnb_clear_error();
        m->fused = -1;
    }
    if (n == 1 && m->decode_graphs) {
        /* positions grow in buckets of gran: one graph (and one CUDA-graph capture) per bucket. The CPU pays for
         * every masked position, so it uses small buckets; the GPU hardly notices them but pays per capture. */
        const int64_t gran = BNB_MIN(m->n_ctx, bnb_backend_is_cpu(m->backend) ? 32 : 256);
        int64_t want = BNB_MIN(m->n_ctx, (BNB_MAX(n_past, 1) + gran - 1) / gran * gran);
        if (m->decode_direct) want = BNB_MIN(want, m->n_ctx - 1); /* direct: reads 1 .. want + 1 */
        bnb_model_graph *d = &m->decoded;
        if (d->graph && (d->n_kv != want || d->gran != gran)) {
            bnb_status st = bnb_model_decode_flush(m, d); /* the last token's K/V, before the graph goes */
            if (st != BNB_OK) {
                bnb_model_graph_release(d);
                return st;
            }
        }
        if (!d->graph || d->n_kv != want || d->gran != gran) {
            bnb_model_graph_release(d);
            bnb_status st = bnb_model_build_decode_graph(m, want, gran, d);
            if (st != BNB_OK) {
                bnb_model_graph_release(d);
                return st;
            }
        }
        bnb_status st = bnb_model_decode_step(m, d, tokens[0], n_past, logits);
        if (st != BNB_OK) bnb_model_graph_release(d);
        return st;
    }
    bnb_status fst = bnb_model_decode_flush(m, &m->decoded); /* the last decoded token's K/V into the cache */
    if (fst != BNB_OK) {
        bnb_model_graph_release(&m->decoded);
        return fst;
    }
    bnb_model_graph *g = &m->cached;
    if (!g->graph || g->n != n || g->n_past != n_past || g->all_logits != all_logits) {
        bnb_model_graph_release(g);
        bnb_status st = bnb_model_build_graph(m, n, n_past, all_logits, g);
        if (st != BNB_OK) {
            bnb_model_graph_release(g);
            return st;
        }
    }
    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    if (!pos) return bnb_fail(BNB_ERR_OOM, "bnb_model_eval: out of host memory");
    for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(n_past + i);
    bnb_status st = bnb_tensor_set(g->tokens, tokens, 0, (size_t)n * sizeof(int32_t));
    if (st == BNB_OK) st = bnb_tensor_set(g->pos, pos, 0, (size_t)n * sizeof(int32_t));
    free(pos);
    if (st == BNB_OK) st = bnb_graph_compute(m->backend, g->graph);
    if (st == BNB_OK) st = bnb_tensor_get_f32(g->logits, logits, bnb_nelements(g->logits));
    if (st != BNB_OK) bnb_model_graph_release(g);
    return st;
}
