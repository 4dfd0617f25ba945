/* GGUF export of a trained model for bnb-run / bnb_model_load: llama.* keys, a byte-level tokenizer written as a
 * GPT-2 BPE vocabulary of the 256 byte tokens with no merges (token id = byte value), weights in F32/F16/INT8. */
#include "train-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnb-impl.h"

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 + k in byte order. */
static void byte_token_text(int b, char out[4]) {
    int k = 0, cp = -1;
    for (int i = 0; i < 256; i++) {
        bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
        int c = printable ? i : 256 + k++;
        if (i == b) {
            cp = c;
            break;
        }
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static bnb_status add_keys(bnb_gguf_writer *w, const bnb_model_config *c, bool byte_vocab) {
    bnb_status st = bnb_gguf_set_str(w, "general.architecture", "llama");
    if (st == BNB_OK) st = bnb_gguf_set_str(w, "general.name", "bnb-train");
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx_train);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    if (st == BNB_OK) st = bnb_gguf_set_f32(w, "llama.rope.freq_base", c->rope_base);
    if (st == BNB_OK) st = bnb_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps);
    if (st == BNB_OK) st = bnb_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab);
    if (st != BNB_OK || !byte_vocab) return st;
    char texts[256][4];
    const char *ptrs[256];
    int32_t types[256];
    for (int i = 0; i < 256; i++) {
        byte_token_text(i, texts[i]);
        ptrs[i] = texts[i];
        types[i] = 1; /* NORMAL */
    }
    st = bnb_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == BNB_OK) st = bnb_gguf_set_str(w, "tokenizer.ggml.pre", "default");
    if (st == BNB_OK) st = bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, 256);
    if (st == BNB_OK) st = bnb_gguf_set_arr(w, "tokenizer.ggml.token_type", BNB_GGUF_INT32, types, 256);
    if (st == BNB_OK) st = bnb_gguf_set_arr_str(w, "tokenizer.ggml.merges", ptrs, 0);
    if (st == BNB_OK) st = bnb_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    return st;
}

bnb_status bnb_trainer_export(bnb_trainer *t, const char *path, bnb_weight_kind kind) {
    if (!t || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_trainer_export: NULL argument");
    if (kind != BNB_WEIGHTS_F32 && kind != BNB_WEIGHTS_F16 && kind != BNB_WEIGHTS_INT8)
        return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_trainer_export: weights must be f32, f16 or int8");
    size_t bytes = 0;
    for (int i = 0; i < t->n_params; i++) bytes += (size_t)bnb_nelements(t->params[i]) * 4 + 4096;
    bnb_context_params cp = {.mem_size = bytes + (1u << 20), .no_alloc = false};
    bnb_context *ctx = bnb_context_new(cp);
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    if (!ctx || !w) {
        if (ctx) bnb_context_free(ctx);
        bnb_gguf_writer_free(w);
        return bnb_last_status();
    }
    bnb_status st = add_keys(w, &t->mc, t->mc.n_vocab == 256);
    for (int i = 0; i < t->n_params && st == BNB_OK; i++) {
        bnb_tensor *p = t->params[i];
        int64_t n = bnb_nelements(p), in = p->ne[0], out = p->ne[1];
        float *v = malloc((size_t)n * sizeof(float));
        if (!v) {
            st = bnb_fail(BNB_ERR_OOM, "bnb_trainer_export: out of memory");
            break;
        }
        st = bnb_tensor_get_f32(p, v, n);
        bool linear = out > 1 && strstr(p->name, "token_embd") == NULL;
        bnb_tensor *e = NULL;
        if (st == BNB_OK) {
            if (linear && kind == BNB_WEIGHTS_INT8) {
                e = bnb_int8_new_weight(ctx, in, out);
                if (e) st = bnb_int8_set_from(e, BNB_TYPE_F32, v, n);
            } else {
                bnb_type ty = linear && kind == BNB_WEIGHTS_F16 ? BNB_TYPE_F16 : BNB_TYPE_F32;
                e = out > 1 ? bnb_new_tensor_2d(ctx, ty, in, out) : bnb_new_tensor_1d(ctx, ty, in);
                if (e) st = bnb_tensor_set_f32(e, v, n);
            }
            if (!e) st = bnb_last_status();
        }
        free(v);
        if (st == BNB_OK) {
            bnb_set_name(e, p->name);
            st = bnb_gguf_writer_add_tensor(w, e);
        }
    }
    if (st == BNB_OK) st = bnb_gguf_writer_write(w, path);
    bnb_gguf_writer_free(w);
    bnb_context_free(ctx);
    return st;
}
