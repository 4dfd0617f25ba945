/* Loading tokenizers from GGUF metadata (tokenizer.ggml.*) and from Hugging Face tokenizer.json. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>

const char *bnb_gguf_name_internal(const bnb_gguf *g);

enum { GGUF_TOK_NORMAL = 1, GGUF_TOK_UNKNOWN = 2, GGUF_TOK_CONTROL = 3, GGUF_TOK_USER = 4, GGUF_TOK_UNUSED = 5,
       GGUF_TOK_BYTE = 6 };

/* "a b" -> (a, b): split at the first space after the first byte */
static bool split_merge(const char *s, size_t n, size_t *split) {
    for (size_t i = 1; i < n; i++)
        if (s[i] == ' ') {
            *split = i;
            return true;
        }
    return false;
}

static bnb_pretok pretok_from_name(const char *pre, bool *ignore_merges) {
    *ignore_merges = false;
    if (!pre) return BNB_PRETOK_GPT2;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) {
        *ignore_merges = true;
        return BNB_PRETOK_LLAMA3;
    }
    if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact") || !strcmp(pre, "command-r") ||
        !strcmp(pre, "codeshell"))
        return BNB_PRETOK_GPT2_DIGITS;
    return BNB_PRETOK_GPT2;
}

static bool check_id(int64_t v, int32_t n, const char *name, const char *key) {
    if (v < -1 || v >= n) {
        bnb_fail(BNB_ERR_IO, "%s: metadata '%s' = %lld is not a token id (vocabulary of %d)", name, key, (long long)v, n);
        return false;
    }
    return true;
}

bnb_tokenizer *bnb_tokenizer_from_gguf(const bnb_gguf *g) {
    if (!g) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_tokenizer_from_gguf: g is NULL");
    const char *name = bnb_gguf_name_internal(g);
    const char *model = bnb_gguf_get_str(g, "tokenizer.ggml.model", NULL);
    if (!model) return bnb_fail_null(BNB_ERR_IO, "%s: missing metadata 'tokenizer.ggml.model'", name);
    bnb_tokenizer_kind kind;
    if (!strcmp(model, "gpt2")) kind = BNB_TOKENIZER_BPE;
    else if (!strcmp(model, "llama")) kind = BNB_TOKENIZER_SPM;
    else
        return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: metadata 'tokenizer.ggml.model': unsupported tokenizer '%.64s' "
                                                  "(bnb reads 'gpt2' and 'llama')", name, model);
    int64_t ki = bnb_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ki < 0 || bnb_gguf_arr_type(g, ki) != BNB_GGUF_STRING)
        return bnb_fail_null(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.tokens' missing or not a string array", name);
    int64_t n = bnb_gguf_arr_n(g, ki);
    if (n <= 0 || n > (1 << 30)) return bnb_fail_null(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.tokens': %lld tokens", name, (long long)n);
    bnb_tokenizer *t = bnb_tok_alloc(kind, (int32_t)n);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        size_t l;
        const char *s = bnb_gguf_arr_str(g, ki, i, &l);
        if (!bnb_tok_set_text(t, (int32_t)i, s, l)) goto oom;
    }
    int64_t ti = bnb_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (ti >= 0) {
        if (bnb_gguf_arr_n(g, ti) != n) {
            bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.token_type' has %lld entries for %lld tokens", name,
                     (long long)bnb_gguf_arr_n(g, ti), (long long)n);
            goto fail;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t ty = GGUF_TOK_NORMAL;
            if (!bnb_gguf_arr_int(g, ti, i, &ty)) {
                bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.token_type' is not an integer array", name);
                goto fail;
            }
            t->attr[i] = ty == GGUF_TOK_CONTROL ? TOK_CONTROL : ty == GGUF_TOK_USER ? TOK_USER
                       : ty == GGUF_TOK_UNUSED ? TOK_UNUSED : ty == GGUF_TOK_UNKNOWN ? TOK_UNKNOWN : TOK_NORMAL;
        }
    }
    int64_t si = bnb_gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0 && kind == BNB_TOKENIZER_SPM) {
        if (bnb_gguf_arr_n(g, si) != n) {
            bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.scores' has %lld entries for %lld tokens", name,
                     (long long)bnb_gguf_arr_n(g, si), (long long)n);
            goto fail;
        }
        t->score = malloc((size_t)n * sizeof *t->score);
        if (!t->score) goto oom;
        for (int64_t i = 0; i < n; i++) {
            double v;
            if (!bnb_gguf_arr_float(g, si, i, &v)) {
                bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.scores' is not a number array", name);
                goto fail;
            }
            t->score[i] = (float)v;
        }
    }
    if (bnb_tok_finish(t, name) != BNB_OK) goto fail;
    int64_t mi = bnb_gguf_find_key(g, "tokenizer.ggml.merges");
    if (mi >= 0) {
        if (bnb_gguf_arr_type(g, mi) != BNB_GGUF_STRING) {
            bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.merges' is not a string array", name);
            goto fail;
        }
        int64_t nm = bnb_gguf_arr_n(g, mi);
        if (bnb_tok_merges_reserve(t, (size_t)nm) != BNB_OK) goto fail;
        for (int64_t j = 0; j < nm; j++) {
            size_t l, sp;
            const char *s = bnb_gguf_arr_str(g, mi, j, &l);
            if (!split_merge(s, l, &sp)) {
                bnb_fail(BNB_ERR_IO, "%s: metadata 'tokenizer.ggml.merges'[%lld] is not 'left right'", name, (long long)j);
                goto fail;
            }
            if (bnb_tok_add_merge(t, s, sp, s + sp + 1, l - sp - 1, name, j) != BNB_OK) goto fail;
        }
    } else if (kind == BNB_TOKENIZER_BPE) {
        bnb_fail(BNB_ERR_IO, "%s: missing metadata 'tokenizer.ggml.merges' (needed by a 'gpt2' tokenizer)", name);
        goto fail;
    }
    if (kind == BNB_TOKENIZER_SPM && !t->score && !t->mcap) {
        bnb_fail(BNB_ERR_IO, "%s: missing metadata 'tokenizer.ggml.scores' (needed by a 'llama' tokenizer)", name);
        goto fail;
    }
    int64_t v;
    if (bnb_gguf_get_int(g, "tokenizer.ggml.bos_token_id", false, &v) == BNB_OK) {
        if (!check_id(v, t->n_vocab, name, "tokenizer.ggml.bos_token_id")) goto fail;
        t->bos = (int32_t)v;
    }
    if (bnb_gguf_get_int(g, "tokenizer.ggml.eos_token_id", false, &v) == BNB_OK) {
        if (!check_id(v, t->n_vocab, name, "tokenizer.ggml.eos_token_id")) goto fail;
        t->eos = (int32_t)v;
    }
    if (bnb_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", false, &v) == BNB_OK) {
        if (!check_id(v, t->n_vocab, name, "tokenizer.ggml.unknown_token_id")) goto fail;
        t->unk = (int32_t)v;
    }
    bool b;
    t->add_bos = kind == BNB_TOKENIZER_SPM;
    if (bnb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", false, &b) == BNB_OK) t->add_bos = b;
    t->add_space_prefix = kind == BNB_TOKENIZER_SPM;
    if (bnb_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", false, &b) == BNB_OK) t->add_space_prefix = b;
    t->pretok = pretok_from_name(bnb_gguf_get_str(g, "tokenizer.ggml.pre", NULL), &t->ignore_merges);
    bnb_clear_error();
    return t;
oom:
    bnb_fail(BNB_ERR_OOM, "%s: out of memory loading the tokenizer", name);
fail:
    bnb_tokenizer_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- tokenizer.json */
/* Does the JSON tree v contain a string equal to s (anywhere)? Depth is bounded by the parser. */
static bool json_has_string(const bnb_json_value *v, const char *s) {
    bnb_json_type ty = bnb_json_type_of(v);
    if (ty == BNB_JSON_STRING) return strcmp(bnb_json_string(v, NULL), s) == 0;
    if (ty == BNB_JSON_ARRAY || ty == BNB_JSON_OBJECT)
        for (size_t i = 0; i < bnb_json_len(v); i++)
            if (json_has_string(bnb_json_at(v, i), s)) return true;
    return false;
}

/* An object anywhere in v with "type" == type_name. */
static const bnb_json_value *json_find_type(const bnb_json_value *v, const char *type_name) {
    bnb_json_type ty = bnb_json_type_of(v);
    if (ty == BNB_JSON_OBJECT) {
        const char *tn = bnb_json_string(bnb_json_get(v, "type"), NULL);
        if (tn && !strcmp(tn, type_name)) return v;
    }
    if (ty == BNB_JSON_ARRAY || ty == BNB_JSON_OBJECT)
        for (size_t i = 0; i < bnb_json_len(v); i++) {
            const bnb_json_value *r = json_find_type(bnb_json_at(v, i), type_name);
            if (r) return r;
        }
    return NULL;
}

static bnb_pretok pretok_from_json(const bnb_json_value *pre) {
    const bnb_json_value *split = json_find_type(pre, "Split");
    if (split) {
        const char *re = bnb_json_string(bnb_json_get(bnb_json_get(split, "pattern"), "Regex"), NULL);
        if (re && strstr(re, "\\p{N}{1,3}")) return BNB_PRETOK_LLAMA3;
    }
    const bnb_json_value *dig = json_find_type(pre, "Digits");
    if (dig && bnb_json_bool(bnb_json_get(dig, "individual_digits"))) return BNB_PRETOK_GPT2_DIGITS;
    return BNB_PRETOK_GPT2;
}

static int32_t find_any(const bnb_tokenizer *t, const char *const *names) {
    for (; *names; names++) {
        int32_t id = bnb_tokenizer_find(t, *names);
        if (id >= 0) return id;
    }
    return -1;
}

bnb_tokenizer *bnb_tokenizer_from_json(const char *text, size_t len, const char *name) {
    if (!name) name = "tokenizer.json";
    bnb_json *doc = bnb_json_parse(text, len, name);
    if (!doc) return NULL;
    bnb_tokenizer *t = NULL;
    const bnb_json_value *root = bnb_json_root(doc);
    const bnb_json_value *model = bnb_json_get(root, "model");
    const char *mtype = bnb_json_string(bnb_json_get(model, "type"), NULL);
    const bnb_json_value *vocab = bnb_json_get(model, "vocab");
    const bnb_json_value *merges = bnb_json_get(model, "merges");
    const bnb_json_value *added = bnb_json_get(root, "added_tokens");
    if (bnb_json_type_of(model) != BNB_JSON_OBJECT || (mtype && strcmp(mtype, "BPE") != 0)) {
        bnb_fail(BNB_ERR_UNSUPPORTED, "%s: field 'model.type': '%.32s' is not supported (bnb reads BPE tokenizers)", name,
                 mtype ? mtype : "(missing model)");
        goto fail;
    }
    if (bnb_json_type_of(vocab) != BNB_JSON_OBJECT || bnb_json_type_of(merges) != BNB_JSON_ARRAY) {
        bnb_fail(BNB_ERR_IO, "%s: fields 'model.vocab' (object) and 'model.merges' (array) are required", name);
        goto fail;
    }
    if (added && bnb_json_type_of(added) != BNB_JSON_ARRAY) {
        bnb_fail(BNB_ERR_IO, "%s: field 'added_tokens' is not an array", name);
        goto fail;
    }
    int64_t max_id = -1;
    size_t n_entries = bnb_json_len(vocab) + bnb_json_len(added);
    for (size_t i = 0; i < bnb_json_len(vocab); i++) {
        int64_t id;
        if (!bnb_json_int(bnb_json_at(vocab, i), &id) || id < 0) {
            bnb_fail(BNB_ERR_IO, "%s: field 'model.vocab'['%.100s'] is not a non-negative integer id", name,
                     bnb_json_key_at(vocab, i));
            goto fail;
        }
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < bnb_json_len(added); i++) {
        const bnb_json_value *a = bnb_json_at(added, i);
        int64_t id;
        if (!bnb_json_int(bnb_json_get(a, "id"), &id) || id < 0 || !bnb_json_string(bnb_json_get(a, "content"), NULL)) {
            bnb_fail(BNB_ERR_IO, "%s: field 'added_tokens'[%zu] needs an integer 'id' and a string 'content'", name, i);
            goto fail;
        }
        if (id > max_id) max_id = id;
    }
    /* ids may have holes, but not arbitrarily many: bound the table by the entries present */
    if (max_id < 0 || (uint64_t)max_id >= 2 * (uint64_t)n_entries + 1024 || max_id >= (1 << 30)) {
        bnb_fail(BNB_ERR_IO, "%s: token ids go up to %lld for %zu entries", name, (long long)max_id, n_entries);
        goto fail;
    }
    bool spm = bnb_json_bool(bnb_json_get(model, "byte_fallback")) ||
               json_has_string(bnb_json_get(root, "normalizer"), "\xE2\x96\x81") ||
               json_find_type(bnb_json_get(root, "pre_tokenizer"), "Metaspace") != NULL;
    t = bnb_tok_alloc(spm ? BNB_TOKENIZER_SPM : BNB_TOKENIZER_BPE, (int32_t)max_id + 1);
    if (!t) goto fail;
    for (size_t i = 0; i < bnb_json_len(vocab); i++) {
        int64_t id;
        bnb_json_int(bnb_json_at(vocab, i), &id);
        const char *k = bnb_json_key_at(vocab, i);
        if (!bnb_tok_set_text(t, (int32_t)id, k, strlen(k))) goto oom;
    }
    for (size_t i = 0; i < bnb_json_len(added); i++) {
        const bnb_json_value *a = bnb_json_at(added, i);
        int64_t id;
        size_t l;
        bnb_json_int(bnb_json_get(a, "id"), &id);
        const char *c = bnb_json_string(bnb_json_get(a, "content"), &l);
        if (!bnb_tok_set_text(t, (int32_t)id, c, l)) goto oom;
        t->attr[id] = bnb_json_bool(bnb_json_get(a, "special")) ? TOK_CONTROL : TOK_USER;
    }
    if (bnb_tok_finish(t, name) != BNB_OK) goto fail;
    size_t nm = bnb_json_len(merges);
    if (bnb_tok_merges_reserve(t, nm) != BNB_OK) goto fail;
    for (size_t j = 0; j < nm; j++) {
        const bnb_json_value *m = bnb_json_at(merges, j);
        const char *l, *r;
        size_t ll, rl;
        if (bnb_json_type_of(m) == BNB_JSON_STRING) {
            size_t n, sp;
            const char *s = bnb_json_string(m, &n);
            if (!split_merge(s, n, &sp)) {
                bnb_fail(BNB_ERR_IO, "%s: field 'model.merges'[%zu] is not 'left right'", name, j);
                goto fail;
            }
            l = s, ll = sp, r = s + sp + 1, rl = n - sp - 1;
        } else if (bnb_json_type_of(m) == BNB_JSON_ARRAY && bnb_json_len(m) == 2 &&
                   (l = bnb_json_string(bnb_json_at(m, 0), &ll)) && (r = bnb_json_string(bnb_json_at(m, 1), &rl))) {
        } else {
            bnb_fail(BNB_ERR_IO, "%s: field 'model.merges'[%zu] is neither \"a b\" nor [\"a\", \"b\"]", name, j);
            goto fail;
        }
        if (bnb_tok_add_merge(t, l, ll, r, rl, name, (int64_t)j) != BNB_OK) goto fail;
    }
    t->ignore_merges = bnb_json_bool(bnb_json_get(model, "ignore_merges"));
    t->pretok = pretok_from_json(bnb_json_get(root, "pre_tokenizer"));
    const char *unk = bnb_json_string(bnb_json_get(model, "unk_token"), NULL);
    if (unk) t->unk = bnb_tokenizer_find(t, unk);
    if (spm) {
        const bnb_json_value *ms = json_find_type(bnb_json_get(root, "pre_tokenizer"), "Metaspace");
        const char *scheme = bnb_json_string(bnb_json_get(ms, "prepend_scheme"), NULL);
        t->add_space_prefix = json_find_type(bnb_json_get(root, "normalizer"), "Prepend") != NULL ||
                              (ms && (bnb_json_bool(bnb_json_get(ms, "add_prefix_space")) ||
                                      (scheme && strcmp(scheme, "never") != 0)));
    }
    /* BOS: the first special token of the post-processor's template, else a conventional name */
    const bnb_json_value *tp = json_find_type(bnb_json_get(root, "post_processor"), "TemplateProcessing");
    const bnb_json_value *first = bnb_json_get(bnb_json_at(bnb_json_get(tp, "single"), 0), "SpecialToken");
    const char *bos_name = bnb_json_string(bnb_json_get(first, "id"), NULL);
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", NULL};
    if (bos_name) {
        t->bos = bnb_tokenizer_find(t, bos_name);
        t->add_bos = t->bos >= 0;
    } else {
        t->bos = find_any(t, bos_names);
        t->add_bos = spm && t->bos >= 0;
    }
    t->eos = find_any(t, eos_names);
    bnb_json_free(doc);
    bnb_clear_error();
    return t;
oom:
    bnb_fail(BNB_ERR_OOM, "%s: out of memory loading the tokenizer", name);
fail:
    bnb_tokenizer_free(t);
    bnb_json_free(doc);
    return NULL;
}

bnb_tokenizer *bnb_tokenizer_load_json(const char *path) {
    char *text;
    size_t n;
    if (bnb_file_read_all(path, (size_t)1 << 30, &text, &n) != BNB_OK) return NULL;
    bnb_tokenizer *t = bnb_tokenizer_from_json(text, n, path);
    free(text);
    return t;
}

bnb_status bnb_tokenizer_set_special(bnb_tokenizer *t, int32_t bos, int32_t eos, bool add_bos) {
    if (!t || bos < -1 || bos >= t->n_vocab || eos < -1 || eos >= t->n_vocab)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tokenizer_set_special: ids %d / %d out of range", bos, eos);
    t->bos = bos;
    t->eos = eos;
    t->add_bos = add_bos;
    return BNB_OK;
}
