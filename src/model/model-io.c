/* Mapping model files onto the transformer: GGUF (llama.cpp names and llama.* metadata) and Hugging Face
 * checkpoints (config.json + model.safetensors + tokenizer.json, including bitsandbytes int8 `weight` + `SCB`),
 * and writing both back. */
#include "transformer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------------ names */
/* GGUF name of layer weight k, and its Hugging Face counterpart. */
static const char *const g_layer_gguf[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                            "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
static const char *const g_layer_hf[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                          "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

/* HF name (without ".weight") of a model tensor; false for tensors without one. */
static bool hf_prefix(const char *gguf_name, char *out, size_t cap) {
    if (!strcmp(gguf_name, "token_embd.weight")) return snprintf(out, cap, "model.embed_tokens"), true;
    if (!strcmp(gguf_name, "output_norm.weight")) return snprintf(out, cap, "model.norm"), true;
    if (!strcmp(gguf_name, "output.weight")) return snprintf(out, cap, "lm_head"), true;
    long long l;
    char part[32];
    if (sscanf(gguf_name, "blk.%lld.%31[^.].weight", &l, part) == 2)
        for (int k = 0; k < 9; k++)
            if (!strcmp(part, g_layer_gguf[k])) return snprintf(out, cap, "model.layers.%lld.%s", l, g_layer_hf[k]), true;
    return false;
}

static bool is_qk(const char *gguf_name) { return strstr(gguf_name, ".attn_q.") || strstr(gguf_name, ".attn_k."); }

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}
static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static void tokenizer_free_cb(bnb_tokenizer *t) { bnb_tokenizer_free(t); }

static bnb_status check_shape(const char *file, const bnb_tensor *t, const int64_t ne[4]) {
    for (int d = 0; d < 4; d++)
        if (t->ne[d] != ne[d])
            return bnb_fail(BNB_ERR_SHAPE, "%s: tensor '%s' is [%lld, %lld, %lld, %lld], the architecture needs "
                            "[%lld, %lld] (check the config: n_embd %s)", file, t->name, (long long)ne[0],
                            (long long)ne[1], (long long)ne[2], (long long)ne[3], (long long)t->ne[0],
                            (long long)t->ne[1], "/ n_ff / heads / vocab");
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ GGUF */
static bnb_status gguf_int(const bnb_gguf *g, const char *file, const char *arch, const char *key, bool required,
                           int64_t def, int64_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    bnb_status st = bnb_gguf_get_int(g, full, required, out);
    if (st == BNB_OK) return BNB_OK;
    if (required) return bnb_fail(BNB_ERR_IO, "%s: %s", file, bnb_last_error());
    if (bnb_gguf_find_key(g, full) >= 0) return bnb_fail(BNB_ERR_IO, "%s: key %s: %s", file, full, bnb_last_error());
    bnb_clear_error();
    *out = def;
    return BNB_OK;
}
static bnb_status gguf_float(const bnb_gguf *g, const char *file, const char *arch, const char *key, double def,
                             double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (bnb_gguf_find_key(g, full) < 0) {
        *out = def;
        return BNB_OK;
    }
    if (bnb_gguf_get_float(g, full, true, out) != BNB_OK) return bnb_fail(BNB_ERR_IO, "%s: %s", file, bnb_last_error());
    return BNB_OK;
}

static bnb_model *load_gguf(const char *path, const bnb_model_params *params) {
    bnb_gguf *g = bnb_gguf_open(path);
    if (!g) return NULL;
    bnb_model *m = NULL;
    float *buf = NULL;
    const char *arch = bnb_gguf_get_str(g, "general.architecture", NULL);
    if (!arch) {
        bnb_fail(BNB_ERR_IO, "%s: key general.architecture is missing", path);
        goto done;
    }
    if (strcmp(arch, "llama") != 0) {
        bnb_fail(BNB_ERR_UNSUPPORTED, "%s: general.architecture is '%s'; bnb runs 'llama' (Llama-family) models",
                 path, arch);
        goto done;
    }
    bnb_model_config c;
    memset(&c, 0, sizeof c);
    int64_t v, tied_check;
    if (gguf_int(g, path, arch, "block_count", true, 0, &c.n_layer) || gguf_int(g, path, arch, "embedding_length", true, 0, &c.n_embd) ||
        gguf_int(g, path, arch, "feed_forward_length", true, 0, &c.n_ff) ||
        gguf_int(g, path, arch, "attention.head_count", true, 0, &c.n_head) ||
        gguf_int(g, path, arch, "attention.head_count_kv", false, c.n_head, &c.n_head_kv) ||
        gguf_int(g, path, arch, "context_length", false, 2048, &c.n_ctx_train))
        goto done;
    if (c.n_head <= 0) {
        bnb_fail(BNB_ERR_IO, "%s: llama.attention.head_count is %lld", path, (long long)c.n_head);
        goto done;
    }
    if (gguf_int(g, path, arch, "attention.key_length", false, c.n_embd / c.n_head, &c.head_dim)) goto done;
    int64_t n_rot;
    if (gguf_int(g, path, arch, "rope.dimension_count", false, c.head_dim, &n_rot)) goto done;
    if (n_rot != c.head_dim) {
        bnb_fail(BNB_ERR_UNSUPPORTED, "%s: llama.rope.dimension_count %lld != head dim %lld: partial rotary "
                 "embeddings are not supported", path, (long long)n_rot, (long long)c.head_dim);
        goto done;
    }
    if (bnb_gguf_find_key(g, "llama.rope.scaling.type") >= 0 || bnb_gguf_find_tensor(g, "rope_freqs.weight") >= 0) {
        const char *sc = bnb_gguf_get_str(g, "llama.rope.scaling.type", NULL);
        if (!sc || strcmp(sc, "none") != 0) {
            bnb_fail(BNB_ERR_UNSUPPORTED, "%s: RoPE scaling (llama.rope.scaling.type / rope_freqs) is not supported",
                     path);
            goto done;
        }
    }
    double eps, base;
    if (gguf_float(g, path, arch, "attention.layer_norm_rms_epsilon", 1e-5, &eps) ||
        gguf_float(g, path, arch, "rope.freq_base", 10000.0, &base))
        goto done;
    c.rms_eps = (float)eps;
    c.rope_base = (float)base;
    /* llama.cpp's converter permutes q/k for the interleaved rotation; files written by bnb from a Hugging Face
     * model keep the NEOX layout and say so */
    const char *rm = bnb_gguf_get_str(g, "bnb.rope_mode", NULL);
    c.rope_mode = rm && !strcmp(rm, "neox") ? BNB_ROPE_NEOX : BNB_ROPE_NORMAL;
    int64_t emb = bnb_gguf_find_tensor(g, "token_embd.weight");
    if (emb < 0) {
        bnb_fail(BNB_ERR_IO, "%s: tensor token_embd.weight is missing", path);
        goto done;
    }
    bnb_gguf_tensor_info ei;
    if (bnb_gguf_tensor_info_get(g, emb, &ei) != BNB_OK) goto done;
    if (gguf_int(g, path, arch, "vocab_size", false, ei.ne[1], &v)) goto done;
    c.n_vocab = v;
    tied_check = bnb_gguf_find_tensor(g, "output.weight");
    c.tied_output = tied_check < 0;
    char what[600];
    snprintf(what, sizeof what, "%s: llama.* metadata", path);
    if (bnb_model_config_check(&c, what) != BNB_OK) goto done;
    m = bnb_model_new(&c, params);
    if (!m) goto done;
    int64_t max_n = 0;
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t; t = bnb_ctx_next_tensor(m->wctx, t))
        max_n = BNB_MAX(max_n, bnb_nelements(t));
    buf = malloc((size_t)max_n * sizeof(float));
    if (!buf) {
        bnb_fail(BNB_ERR_OOM, "%s: cannot allocate %lld floats", path, (long long)max_n);
        goto fail;
    }
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t; t = bnb_ctx_next_tensor(m->wctx, t)) {
        int64_t i = bnb_gguf_find_tensor(g, t->name);
        if (i < 0) {
            bnb_fail(BNB_ERR_IO, "%s: tensor %s is missing", path, t->name);
            goto fail;
        }
        bnb_gguf_tensor_info ti;
        if (bnb_gguf_tensor_info_get(g, i, &ti) != BNB_OK || check_shape(path, t, ti.ne) != BNB_OK) goto fail;
        const bool same = ti.type == t->type && (!bnb_type_get_traits(t->type)->is_quantized ||
                                                 !memcmp(&ti.quant, &t->quant, sizeof ti.quant));
        bnb_status st;
        if (same) {
            st = bnb_gguf_tensor_load(g, i, t);
        } else {
            st = bnb_gguf_tensor_to_f32(g, i, buf, bnb_nelements(t));
            if (st == BNB_OK) st = bnb_model_set_weight(m, t->name, BNB_TYPE_F32, buf, bnb_nelements(t));
        }
        if (st != BNB_OK) {
            if (!strstr(bnb_last_error(), path)) bnb_fail(st, "%s: tensor %s: %s", path, t->name, bnb_last_error());
            goto fail;
        }
    }
    if (bnb_gguf_find_key(g, "tokenizer.ggml.model") >= 0) {
        m->tokenizer = bnb_tokenizer_from_gguf(g);
        if (!m->tokenizer) goto fail;
        m->tokenizer_free = tokenizer_free_cb;
        /* keep the (mapped) file: bnb_model_save_gguf copies its tokenizer.* keys */
        m->src_gguf = g;
        m->src_gguf_free = bnb_gguf_free;
        g = NULL;
    }
    goto done;
fail:
    bnb_model_free(m);
    m = NULL;
done:
    free(buf);
    bnb_gguf_free(g);
    return m;
}

/* ------------------------------------------------------------------------------------------------ Hugging Face */
static bnb_model *load_hf(const char *dir, const char *st_path, const bnb_model_params *params) {
    char cfg_path[4096], tok_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    bnb_hf_config hc;
    if (bnb_hf_config_load(cfg_path, &hc) != BNB_OK) return NULL;
    if (hc.model_type[0] && strcmp(hc.model_type, "llama") && strcmp(hc.model_type, "mistral"))
        return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: model_type '%s': bnb runs Llama-family models", cfg_path,
                             hc.model_type);
    bnb_safetensors *st = bnb_safetensors_open(st_path);
    if (!st) return NULL;
    bnb_model_config c = {.n_vocab = hc.vocab_size, .n_embd = hc.hidden_size, .n_ff = hc.intermediate_size,
                          .n_layer = hc.num_hidden_layers, .n_head = hc.num_attention_heads,
                          .n_head_kv = hc.num_key_value_heads, .head_dim = hc.head_dim,
                          .n_ctx_train = hc.max_position_embeddings, .rms_eps = (float)hc.rms_norm_eps,
                          .rope_base = (float)hc.rope_theta, .rope_mode = BNB_ROPE_NEOX,
                          .tied_output = hc.tie_word_embeddings || bnb_safetensors_find(st, "lm_head.weight") < 0};
    bnb_model *m = NULL;
    float *buf = NULL;
    int8_t *q8 = NULL;
    char what[4200];
    snprintf(what, sizeof what, "%s", cfg_path);
    if (bnb_model_config_check(&c, what) != BNB_OK) goto done;
    m = bnb_model_new(&c, params);
    if (!m) goto done;
    int64_t max_n = 0;
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t; t = bnb_ctx_next_tensor(m->wctx, t))
        max_n = BNB_MAX(max_n, bnb_nelements(t));
    buf = malloc((size_t)max_n * sizeof(float));
    q8 = malloc((size_t)max_n);
    if (!buf || !q8) {
        bnb_fail(BNB_ERR_OOM, "%s: cannot allocate %lld floats", st_path, (long long)max_n);
        goto fail;
    }
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t; t = bnb_ctx_next_tensor(m->wctx, t)) {
        char prefix[256], name[300];
        if (!hf_prefix(t->name, prefix, sizeof prefix)) continue;
        snprintf(name, sizeof name, "%s.SCB", prefix);
        bnb_status s;
        if (bnb_safetensors_find(st, name) >= 0) { /* bitsandbytes int8 layer */
            int64_t wi, si, in, out;
            if (bnb_safetensors_int8_linear(st, prefix, &wi, &si, &in, &out) != BNB_OK) goto fail;
            if (check_shape(st_path, t, (const int64_t[]){in, out, 1, 1}) != BNB_OK) goto fail;
            bnb_st_tensor_info wi_info;
            if (bnb_safetensors_info(st, wi, &wi_info) != BNB_OK) goto fail;
            if (bnb_safetensors_to_f32(st, si, buf, out) != BNB_OK) goto fail;
            memcpy(q8, wi_info.data, (size_t)(in * out));
            if (t->type == BNB_TYPE_I8_ROW && t->quant.threshold == 0.f) {
                s = bnb_int8_set_parts(t, q8, buf);
            } else { /* dequantize: w = CB * SCB / 127 */
                float *w = malloc((size_t)(in * out) * sizeof(float));
                if (!w) {
                    bnb_fail(BNB_ERR_OOM, "%s: out of host memory", st_path);
                    goto fail;
                }
                for (int64_t o = 0; o < out; o++)
                    for (int64_t i = 0; i < in; i++) w[o * in + i] = (float)q8[o * in + i] * buf[o] / 127.f;
                s = bnb_model_set_weight(m, t->name, BNB_TYPE_F32, w, in * out);
                free(w);
            }
        } else {
            snprintf(name, sizeof name, "%s.weight", prefix);
            int64_t i = bnb_safetensors_find(st, name);
            if (i < 0) {
                bnb_fail(BNB_ERR_IO, "%s: tensor %s is missing", st_path, name);
                goto fail;
            }
            bnb_st_tensor_info ti;
            if (bnb_safetensors_info(st, i, &ti) != BNB_OK) goto fail;
            if (ti.n_dims > 2 || check_shape(st_path, t, ti.ne) != BNB_OK) {
                if (ti.n_dims > 2) bnb_fail(BNB_ERR_SHAPE, "%s: tensor %s has %d dims", st_path, name, ti.n_dims);
                goto fail;
            }
            s = bnb_safetensors_to_f32(st, i, buf, ti.n_elements);
            if (s == BNB_OK) s = bnb_model_set_weight(m, t->name, BNB_TYPE_F32, buf, ti.n_elements);
        }
        if (s != BNB_OK) {
            if (!strstr(bnb_last_error(), st_path)) bnb_fail(s, "%s: tensor %s: %s", st_path, prefix, bnb_last_error());
            goto fail;
        }
    }
    if (file_exists(tok_path)) {
        m->tokenizer = bnb_tokenizer_load_json(tok_path);
        if (!m->tokenizer) goto fail;
        m->tokenizer_free = tokenizer_free_cb;
    }
    goto done;
fail:
    bnb_model_free(m);
    m = NULL;
done:
    free(buf);
    free(q8);
    bnb_safetensors_free(st);
    return m;
}

bnb_model *bnb_model_load(const char *path, const bnb_model_params *params) {
    if (!path) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_model_load: path is NULL");
    if (is_dir(path)) {
        char st_path[4096];
        snprintf(st_path, sizeof st_path, "%s/model.safetensors", path);
        if (!file_exists(st_path)) {
            char idx[4096];
            snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", path);
            if (file_exists(idx))
                return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: sharded checkpoints (model.safetensors.index.json) are "
                                     "not supported yet", path);
            return bnb_fail_null(BNB_ERR_IO, "%s: no model.safetensors in this directory", path);
        }
        return load_hf(path, st_path, params);
    }
    if (ends_with(path, ".safetensors")) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        return load_hf(dir, path, params);
    }
    if (!file_exists(path)) return bnb_fail_null(BNB_ERR_IO, "%s: %s", path, strerror(errno ? errno : ENOENT));
    return load_gguf(path, params);
}

/* ------------------------------------------------------------------------------------------------ writing */
/* Copy every tokenizer.* key of the source GGUF into the writer (strings, scalars, string and numeric arrays). */
static bnb_status copy_tokenizer_keys(bnb_gguf_writer *w, const bnb_gguf *g) {
    bnb_status st = BNB_OK;
    for (int64_t i = 0; i < bnb_gguf_n_kv(g) && !st; i++) {
        const char *key = bnb_gguf_key(g, i);
        if (!key || strncmp(key, "tokenizer.", 10) != 0) continue;
        const bnb_gguf_value_type vt = bnb_gguf_kv_type(g, i);
        if (vt == BNB_GGUF_STRING) {
            st = bnb_gguf_set_str(w, key, bnb_gguf_get_str(g, key, NULL));
        } else if (vt == BNB_GGUF_BOOL) {
            bool b;
            st = bnb_gguf_get_bool(g, key, true, &b);
            if (!st) st = bnb_gguf_set_bool(w, key, b);
        } else if (vt == BNB_GGUF_FLOAT32 || vt == BNB_GGUF_FLOAT64) {
            double d;
            st = bnb_gguf_get_float(g, key, true, &d);
            if (!st) st = bnb_gguf_set_f32(w, key, (float)d);
        } else if (vt != BNB_GGUF_ARRAY) {
            int64_t v;
            st = bnb_gguf_get_int(g, key, true, &v);
            if (!st) st = v >= 0 && v <= UINT32_MAX ? bnb_gguf_set_u32(w, key, (uint32_t)v) : bnb_gguf_set_i64(w, key, v);
        } else {
            const bnb_gguf_value_type at = bnb_gguf_arr_type(g, i);
            const int64_t n = bnb_gguf_arr_n(g, i);
            if (at == BNB_GGUF_STRING) {
                const char **v = malloc((size_t)(n ? n : 1) * sizeof(char *));
                if (!v) return bnb_fail(BNB_ERR_OOM, "bnb_model_save_gguf: out of host memory");
                for (int64_t j = 0; j < n; j++) v[j] = bnb_gguf_arr_str(g, i, j, NULL);
                st = bnb_gguf_set_arr_str(w, key, v, n);
                free(v);
            } else if (at == BNB_GGUF_FLOAT32 || at == BNB_GGUF_FLOAT64) {
                float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
                if (!v) return bnb_fail(BNB_ERR_OOM, "bnb_model_save_gguf: out of host memory");
                for (int64_t j = 0; j < n; j++) {
                    double d = 0;
                    bnb_gguf_arr_float(g, i, j, &d);
                    v[j] = (float)d;
                }
                st = bnb_gguf_set_arr(w, key, BNB_GGUF_FLOAT32, v, n);
                free(v);
            } else {
                int32_t *v = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
                if (!v) return bnb_fail(BNB_ERR_OOM, "bnb_model_save_gguf: out of host memory");
                for (int64_t j = 0; j < n; j++) {
                    int64_t x = 0;
                    bnb_gguf_arr_int(g, i, j, &x);
                    v[j] = (int32_t)x;
                }
                st = bnb_gguf_set_arr(w, key, BNB_GGUF_INT32, v, n);
                free(v);
            }
        }
    }
    return st;
}

bnb_status bnb_model_save_gguf(const bnb_model *m, const char *path) {
    if (!m || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_save_gguf: NULL argument");
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    if (!w) return bnb_last_status();
    const bnb_model_config *c = &m->cfg;
    bnb_status st = bnb_gguf_set_str(w, "general.architecture", "llama");
    if (!st) st = bnb_gguf_set_str(w, "general.name", "bnb model");
    if (!st) st = bnb_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    if (!st) st = bnb_gguf_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx_train);
    if (!st) st = bnb_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
    if (!st) st = bnb_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
    if (!st) st = bnb_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    if (!st) st = bnb_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv);
    if (!st) st = bnb_gguf_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
    if (!st) st = bnb_gguf_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
    if (!st) st = bnb_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab);
    if (!st) st = bnb_gguf_set_f32(w, "llama.rope.freq_base", c->rope_base);
    if (!st) st = bnb_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps);
    if (!st) st = bnb_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    if (!st) st = bnb_gguf_set_str(w, "bnb.rope_mode", c->rope_mode == BNB_ROPE_NEOX ? "neox" : "normal");
    if (!st) st = bnb_gguf_set_str(w, "bnb.weights", bnb_weight_kind_name(m->params.weights));
    if (!st && m->params.weights == BNB_WEIGHTS_INT8)
        st = bnb_gguf_set_f32(w, "bnb.int8_threshold", m->params.int8_threshold);
    if (!st && m->src_gguf) st = copy_tokenizer_keys(w, m->src_gguf);
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t && !st; t = bnb_ctx_next_tensor(m->wctx, t))
        st = bnb_gguf_writer_add_tensor(w, t);
    if (!st) st = bnb_gguf_writer_write(w, path);
    bnb_gguf_writer_free(w);
    return st;
}

/* Permute whole rows (row_bytes each) of a q/k weight between the layouts (see bnb_model_permute_qk). */
static bnb_status permute_rows(void *data, int64_t n_head, int64_t hd, size_t row_bytes, bool to_normal) {
    uint8_t *tmp = malloc((size_t)hd * row_bytes);
    if (!tmp) return bnb_fail(BNB_ERR_OOM, "bnb_model_save_hf: out of host memory");
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < n_head; h++) {
        uint8_t *blk = (uint8_t *)data + (size_t)(h * hd) * row_bytes;
        memcpy(tmp, blk, (size_t)hd * row_bytes);
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                const int64_t nr = 2 * i + j, xr = j * half + i;
                memcpy(blk + (size_t)(to_normal ? nr : xr) * row_bytes, tmp + (size_t)(to_normal ? xr : nr) * row_bytes,
                       row_bytes);
            }
    }
    free(tmp);
    return BNB_OK;
}

static bnb_status write_text(const char *path, const char *text) {
    bnb_atomic_file af;
    bnb_status st = bnb_atomic_open(&af, path);
    if (st) return st;
    st = bnb_atomic_write(&af, text, strlen(text));
    if (st) {
        bnb_atomic_abort(&af);
        return st;
    }
    return bnb_atomic_commit(&af);
}

bnb_status bnb_model_save_hf(const bnb_model *m, const char *dir) {
    if (!m || !dir) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_model_save_hf: NULL argument");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return bnb_fail(BNB_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    const bnb_model_config *c = &m->cfg;
    const bool int8 = m->params.weights == BNB_WEIGHTS_INT8;
    char cfg[2048], path[4096];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %lld,\n"
             "  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n"
             "  \"num_key_value_heads\": %lld,\n  \"head_dim\": %lld,\n  \"vocab_size\": %lld,\n"
             "  \"max_position_embeddings\": %lld,\n  \"rms_norm_eps\": %.9g,\n  \"rope_theta\": %.9g,\n"
             "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"%s\"%s\n}\n",
             (long long)c->n_embd, (long long)c->n_ff, (long long)c->n_layer, (long long)c->n_head,
             (long long)c->n_head_kv, (long long)c->head_dim, (long long)c->n_vocab, (long long)c->n_ctx_train,
             (double)c->rms_eps, (double)c->rope_base, c->tied_output ? "true" : "false",
             m->params.weights == BNB_WEIGHTS_F32 ? "float32" : "float16",
             int8 ? ",\n  \"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"load_in_8bit\": true, "
                    "\"llm_int8_threshold\": 6.0}" : "");
    snprintf(path, sizeof path, "%s/config.json", dir);
    bnb_status st = write_text(path, cfg);
    if (st) return st;
    bnb_safetensors_writer *w = bnb_safetensors_writer_new();
    if (!w) return bnb_last_status();
    st = bnb_safetensors_writer_set_metadata(w, "format", "pt");
    void *data = NULL;
    float *scb = NULL;
    for (bnb_tensor *t = bnb_ctx_next_tensor(m->wctx, NULL); t && !st; t = bnb_ctx_next_tensor(m->wctx, t)) {
        char prefix[256], name[300];
        if (!hf_prefix(t->name, prefix, sizeof prefix)) continue;
        const int64_t in = t->ne[0], out = t->ne[1], n = in * out;
        const bool perm = is_qk(t->name) && c->rope_mode == BNB_ROPE_NORMAL;
        const int64_t heads = strstr(t->name, ".attn_q.") ? c->n_head : c->n_head_kv;
        const int64_t shape[2] = {out, in};
        free(data);
        data = malloc((size_t)n * sizeof(float));
        if (!data) {
            st = bnb_fail(BNB_ERR_OOM, "bnb_model_save_hf: out of host memory");
            break;
        }
        snprintf(name, sizeof name, "%s.weight", prefix);
        if (t->type == BNB_TYPE_I8_ROW) {
            free(scb);
            scb = malloc((size_t)out * sizeof(float));
            if (!scb) {
                st = bnb_fail(BNB_ERR_OOM, "bnb_model_save_hf: out of host memory");
                break;
            }
            st = bnb_int8_get_parts(t, data, scb, NULL, NULL);
            if (!st && perm) st = permute_rows(data, heads, c->head_dim, (size_t)in, false);
            if (!st && perm) st = permute_rows(scb, heads, c->head_dim, sizeof(float), false);
            if (!st) st = bnb_safetensors_writer_add_raw(w, name, BNB_ST_I8, 2, shape, data, (size_t)n);
            snprintf(name, sizeof name, "%s.SCB", prefix);
            if (!st) st = bnb_safetensors_writer_add_raw(w, name, BNB_ST_F32, 1, &shape[0], scb, (size_t)out * 4);
        } else if (t->type == BNB_TYPE_F16) {
            st = bnb_tensor_get(t, data, 0, (size_t)n * 2);
            if (!st && perm) st = permute_rows(data, heads, c->head_dim, (size_t)in * 2, false);
            if (!st) st = bnb_safetensors_writer_add_raw(w, name, BNB_ST_F16, t->ne[1] > 1 ? 2 : 1,
                                                         t->ne[1] > 1 ? shape : &shape[1], data, (size_t)n * 2);
        } else { /* F32, and NF4 dequantized */
            st = bnb_tensor_get_f32(t, data, n);
            if (!st && perm) st = permute_rows(data, heads, c->head_dim, (size_t)in * 4, false);
            if (!st) st = bnb_safetensors_writer_add_raw(w, name, BNB_ST_F32, t->ne[1] > 1 ? 2 : 1,
                                                         t->ne[1] > 1 ? shape : &shape[1], data, (size_t)n * 4);
        }
    }
    free(data);
    free(scb);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!st) st = bnb_safetensors_writer_write(w, path);
    bnb_safetensors_writer_free(w);
    return st;
}
