/* safetensors: writer -> reader round trips for every dtype (bit-identical bytes, values vs the source), bnb tensors,
 * a bitsandbytes int8 linear layer (weight I8 + SCB F32) loaded as I8_ROW, atomic writes, hostile headers; the strict
 * JSON parser; Hugging Face config.json (Llama fields, defaults, errors). */
#include "bnb-model.h"
#include "test-common.h"

#include <unistd.h>

static void expect_bad_st(const void *data, size_t n, const char *what, const char *field) {
    bnb_clear_error();
    bnb_safetensors *st = bnb_safetensors_parse_memory(data, n, "hostile.safetensors");
    const char *names[] = {"hostile.safetensors", field, NULL};
    tc_check_error(st ? BNB_OK : bnb_last_status(), BNB_ERR_IO, what, names);
    bnb_safetensors_free(st);
}

/* a file from a JSON header and n data bytes */
static size_t make_st(uint8_t *buf, const char *header, size_t n_data) {
    uint64_t h = strlen(header);
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x3f, n_data);
    return 8 + h + n_data;
}

static void test_round_trip(void) {
    tc_rng r;
    tc_rng_seed(&r, 11);
    bnb_context *ctx = bnb_context_new((bnb_context_params){16 << 20, false});
    bnb_safetensors_writer *w = bnb_safetensors_writer_new();
    bnb_safetensors_writer_set_metadata(w, "format", "pt");
    bnb_safetensors_writer_set_metadata(w, "note", "quote \" backslash \\ newline \n");
    /* raw data of every dtype, shape [3, 5] */
    static const size_t dsize[BNB_ST_COUNT] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
    uint8_t raw[BNB_ST_COUNT][15 * 8];
    double ref[BNB_ST_COUNT][15];
    for (int d = 0; d < BNB_ST_COUNT; d++) {
        for (int k = 0; k < 15; k++) {
            double v = tc_rand_range(&r, -100, 100);
            uint8_t *p = raw[d] + k * dsize[d];
            switch ((bnb_st_dtype)d) {
            case BNB_ST_F64: memcpy(p, &v, 8); break;
            case BNB_ST_F32: { float f = (float)v; memcpy(p, &f, 4); v = f; break; }
            case BNB_ST_F16: { uint16_t h = bnb_f32_to_f16((float)v); memcpy(p, &h, 2); v = bnb_f16_to_f32(h); break; }
            case BNB_ST_BF16: { uint16_t h = bnb_f32_to_bf16((float)v); memcpy(p, &h, 2); v = bnb_bf16_to_f32(h); break; }
            case BNB_ST_I64: { int64_t x = (int64_t)v * 1000; memcpy(p, &x, 8); v = (double)x; break; }
            case BNB_ST_I32: { int32_t x = (int32_t)v * 1000; memcpy(p, &x, 4); v = x; break; }
            case BNB_ST_I16: { int16_t x = (int16_t)(v * 100); memcpy(p, &x, 2); v = x; break; }
            case BNB_ST_I8: { int8_t x = (int8_t)v; memcpy(p, &x, 1); v = x; break; }
            case BNB_ST_U8: { uint8_t x = (uint8_t)(v + 100); *p = x; v = x; break; }
            default: { uint8_t x = v > 0; *p = x; v = x; break; }
            }
            ref[d][k] = v;
        }
        char name[32];
        snprintf(name, sizeof name, "raw.%s", bnb_st_dtype_name((bnb_st_dtype)d));
        tc_require(bnb_safetensors_writer_add_raw(w, name, (bnb_st_dtype)d, 2, (int64_t[]){3, 5}, raw[d], 15 * dsize[d]) == BNB_OK,
                   "add %s: %s", name, bnb_last_error());
    }
    tc_check(bnb_safetensors_writer_add_raw(w, "bad", BNB_ST_F32, 1, (int64_t[]){4}, raw[1], 12) == BNB_ERR_INVALID_ARG,
             "add_raw rejects a wrong byte count");
    /* bnb tensors and a scalar */
    bnb_tensor *tf = bnb_set_name(bnb_new_tensor_3d(ctx, BNB_TYPE_BF16, 4, 3, 2), "model.layers.0.x");
    float xv[24];
    tc_fill_signed(&r, xv, 24, 0.1f, 2);
    bnb_tensor_set_f32(tf, xv, 24);
    tc_require(bnb_safetensors_writer_add_tensor(w, tf) == BNB_OK, "add bnb tensor: %s", bnb_last_error());
    bnb_tensor *tq = bnb_set_name(bnb_new_tensor_quant(ctx, BNB_TYPE_Q4_NF4, 1, (int64_t[]){64}, (bnb_quant_params){64, BNB_QMAP_NF4, 0, 0}), "nf4");
    tc_check(bnb_safetensors_writer_add_tensor(w, tq) == BNB_ERR_TYPE, "quantized bnb types are refused (GGUF holds them)");
    float one = 42;
    tc_require(bnb_safetensors_writer_add_raw(w, "scalar", BNB_ST_F32, 0, NULL, &one, 4) == BNB_OK, "scalar");
    /* int8 linear layer: weight I8 [out=6, in=32], SCB F32 [6] */
    int8_t wq[6 * 32];
    float scb[6];
    for (int i = 0; i < 6 * 32; i++) wq[i] = (int8_t)(tc_rand_int(&r, 255) - 127);
    for (int i = 0; i < 6; i++) scb[i] = tc_rand_range(&r, 0.5f, 3);
    bnb_safetensors_writer_add_raw(w, "lin.weight", BNB_ST_I8, 2, (int64_t[]){6, 32}, wq, sizeof wq);
    bnb_safetensors_writer_add_raw(w, "lin.SCB", BNB_ST_F32, 1, (int64_t[]){6}, scb, sizeof scb);

    void *mem;
    size_t size;
    tc_require(bnb_safetensors_writer_write_memory(w, &mem, &size) == BNB_OK, "write_memory: %s", bnb_last_error());
    char path[256];
    snprintf(path, sizeof path, "/tmp/bnb-test-st-%d.safetensors", (int)getpid());
    tc_check(bnb_safetensors_writer_write(w, path) == BNB_OK, "write file: %s", bnb_last_error());
    uint64_t hlen;
    memcpy(&hlen, mem, 8);
    tc_check((8 + hlen) % 8 == 0, "data section 8-byte aligned");
    bnb_safetensors *st = bnb_safetensors_open(path);
    if (!tc_require(st != NULL, "open: %s", bnb_last_error())) return;
    tc_check(bnb_safetensors_n_tensors(st) == BNB_ST_COUNT + 4, "tensor count %lld", (long long)bnb_safetensors_n_tensors(st));
    const char *note = bnb_safetensors_metadata(st, "note");
    tc_check(note && !strcmp(note, "quote \" backslash \\ newline \n") && !strcmp(bnb_safetensors_metadata(st, "format"), "pt"),
             "metadata with escapes");
    for (int d = 0; d < BNB_ST_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "raw.%s", bnb_st_dtype_name((bnb_st_dtype)d));
        int64_t i = bnb_safetensors_find(st, name);
        bnb_st_tensor_info info;
        float y[15];
        bool ok = i >= 0 && bnb_safetensors_info(st, i, &info) == BNB_OK && info.dtype == (bnb_st_dtype)d &&
                  info.n_dims == 2 && info.shape[0] == 3 && info.shape[1] == 5 && info.ne[0] == 5 && info.ne[1] == 3 &&
                  info.nbytes == 15 * dsize[d] && !memcmp(info.data, raw[d], info.nbytes) &&
                  bnb_safetensors_to_f32(st, i, y, 15) == BNB_OK;
        for (int k = 0; k < 15 && ok; k++) ok = y[k] == (float)ref[d][k];
        bnb_tensor *t = ok ? bnb_safetensors_tensor_new(st, i, ctx) : NULL;
        ok = ok && t && bnb_safetensors_tensor_load(st, i, t) == BNB_OK;
        float z[15];
        if (ok && t->type == BNB_TYPE_U8) {
            for (int k = 0; k < 15; k++) z[k] = ((uint8_t *)t->data)[k];
        } else if (ok) ok = bnb_tensor_get_f32(t, z, 15) == BNB_OK;
        for (int k = 0; k < 15 && ok; k++) ok = z[k] == (float)ref[d][k];
        tc_check(ok, "%s: bytes, values and bnb tensor (%s) round trip (%s)", name, t ? bnb_type_name(t->type) : "-",
                 bnb_last_error());
    }
    int64_t i = bnb_safetensors_find(st, "model.layers.0.x");
    bnb_tensor *t = bnb_safetensors_tensor_new(st, i, ctx);
    tc_check(t && t->type == BNB_TYPE_BF16 && bnb_same_shape(t, tf) && bnb_safetensors_tensor_load(st, i, t) == BNB_OK &&
                 !memcmp(t->data, tf->data, bnb_nbytes(tf)), "bnb BF16 [4,3,2] tensor bit-identical");
    float s0 = 0;
    i = bnb_safetensors_find(st, "scalar");
    tc_check(bnb_safetensors_to_f32(st, i, &s0, 1) == BNB_OK && s0 == 42, "scalar (shape [])");
    /* the int8 layer as LLM.int8 weights */
    int64_t wi = -1, si = -1, in = 0, out = 0;
    bnb_status lst = bnb_safetensors_int8_linear(st, "lin", &wi, &si, &in, &out);
    tc_check(lst == BNB_OK && in == 32 && out == 6,
             "int8 linear layer found (in %lld, out %lld)", (long long)in, (long long)out);
    const char *nm[] = {"nope.weight", NULL};
    tc_check_error(bnb_safetensors_int8_linear(st, "nope", &wi, &si, &in, &out), BNB_ERR_IO, "missing int8 layer", nm);
    bnb_st_tensor_info wi_info, si_info;
    bnb_safetensors_info(st, wi, &wi_info);
    bnb_safetensors_info(st, si, &si_info);
    bnb_tensor *w8 = bnb_int8_new_weight(ctx, in, out);
    bool ok = w8 && bnb_int8_set_parts(w8, wi_info.data, (const float *)si_info.data) == BNB_OK;
    float deq[6 * 32];
    ok = ok && bnb_tensor_get_f32(w8, deq, 6 * 32) == BNB_OK;
    double err = 0;
    for (int k = 0; ok && k < 6 * 32; k++) err = fmax(err, fabs(deq[k] - (double)wq[k] * scb[k / 32] / 127.0));
    tc_check(ok && err < 1e-5, "int8 layer -> I8_ROW dequantizes to q * SCB / 127 (max err %.2e, %s)", err, bnb_last_error());
    bnb_safetensors_free(st);
    unlink(path);

    /* every truncation fails cleanly */
    int bad = 0, n_tr = 0;
    for (size_t n = 0; n < size; n++, n_tr++) {
        bnb_safetensors *s2 = bnb_safetensors_parse_memory(mem, n, "trunc.safetensors");
        bad += s2 == NULL && bnb_last_status() == BNB_ERR_IO;
        bnb_safetensors_free(s2);
    }
    tc_check(bad == n_tr, "all %d truncations rejected with BNB_ERR_IO (%d)", n_tr, bad);
    free(mem);
    bnb_safetensors_writer_free(w);
    bnb_context_free(ctx);
}

static void test_hostile(void) {
    static uint8_t buf[1 << 16];
    uint64_t big = 1ull << 50;
    memcpy(buf, &big, 8);
    expect_bad_st(buf, 16, "header length past the end", "header length");
    expect_bad_st(buf, 5, "shorter than 8 bytes", "truncated");
    size_t n = make_st(buf, "[1,2]", 0);
    expect_bad_st(buf, n, "header not an object", "'{'");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8);
    expect_bad_st(buf, n, "trailing comma", "invalid JSON");
    n = make_st(buf, "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_bad_st(buf, n, "unknown dtype", "dtype");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8);
    expect_bad_st(buf, n, "offsets past the end", "data_offsets");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_bad_st(buf, n, "size does not match the shape", "data_offsets");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8);
    expect_bad_st(buf, n, "element count overflow", "shape");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
    expect_bad_st(buf, n, "negative dim", "shape");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);
    expect_bad_st(buf, n, "end before begin", "data_offsets");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_bad_st(buf, n, "overlapping tensors", "overlap");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_bad_st(buf, n, "duplicate name", "duplicate tensor 'a'");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_st(buf, n, "9 dims", "shape");
    n = make_st(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    expect_bad_st(buf, n, "missing data_offsets", "data_offsets");
    /* deep nesting: 100000 '[' */
    static char deep[100064];
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', 100000);
    deep[100005] = 0;
    n = make_st(buf, "{}", 0);
    uint64_t h = strlen(deep);
    uint8_t *big_buf = malloc(h + 8);
    memcpy(big_buf, &h, 8);
    memcpy(big_buf + 8, deep, h);
    expect_bad_st(big_buf, h + 8, "deep nesting", "nesting");
    free(big_buf);
    tc_check(bnb_safetensors_open("/nonexistent/x.safetensors") == NULL && bnb_last_status() == BNB_ERR_IO,
             "missing file: BNB_ERR_IO");
}

static void json_ok(const char *text, const char *what) {
    bnb_json *d = bnb_json_parse(text, strlen(text), "t.json");
    tc_check(d != NULL, "JSON accepts %s (%s)", what, d ? "" : bnb_last_error());
    bnb_json_free(d);
}
static void json_bad(const char *text, const char *what) {
    bnb_json *d = bnb_json_parse(text, strlen(text), "t.json");
    tc_check(!d && bnb_last_status() == BNB_ERR_IO && strstr(bnb_last_error(), "t.json"), "JSON rejects %s: %s", what,
             bnb_last_error());
    bnb_json_free(d);
}

static void test_json(void) {
    const char *text = "{\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {\"c\": 9007199254740993},"
                       " \"z\": \"\\u0000\"}";
    bnb_json *d = bnb_json_parse(text, strlen(text), "t.json");
    const bnb_json_value *root = bnb_json_root(d), *a = bnb_json_get(root, "a");
    int64_t iv = 0;
    size_t sl = 0;
    const char *s = bnb_json_string(bnb_json_at(a, 5), &sl);
    tc_check(d && bnb_json_len(root) == 3 && bnb_json_len(a) == 6 && bnb_json_int(bnb_json_at(a, 0), &iv) && iv == 1 &&
                 bnb_json_number(bnb_json_at(a, 1)) == -2500 && !bnb_json_int(bnb_json_at(a, 1), &iv) &&
                 bnb_json_bool(bnb_json_at(a, 2)) && bnb_json_type_of(bnb_json_at(a, 3)) == BNB_JSON_BOOL &&
                 bnb_json_type_of(bnb_json_at(a, 4)) == BNB_JSON_NULL && s && sl == 8 &&
                 !memcmp(s, "x\xC3\xA9\xF0\x9F\x98\x80\n", 8),
             "JSON values, escapes, surrogate pair");
    tc_check(bnb_json_int(bnb_json_get(bnb_json_get(root, "b"), "c"), &iv) && iv == 9007199254740993ll,
             "integers kept exactly beyond 2^53");
    s = bnb_json_string(bnb_json_get(root, "z"), &sl);
    tc_check(s && sl == 1 && s[0] == 0, "\\u0000 kept with its length");
    tc_check(!bnb_json_at(a, 6) && !bnb_json_get(a, "x") && !strcmp(bnb_json_key_at(root, 1), "b"), "accessor bounds");
    bnb_json_free(d);
    json_ok("  [ ]  ", "empty array with spaces");
    json_ok("-0.0e+5", "a bare number");
    json_bad("[1,]", "a trailing comma");
    json_bad("{\"a\":1,}", "a trailing comma in an object");
    json_bad("[01]", "a leading zero");
    json_bad("[1.]", "a bare decimal point");
    json_bad("\"a\tb\"", "a raw tab in a string");
    json_bad("\"\\x\"", "an invalid escape");
    json_bad("\"\\ud800\"", "a lone surrogate");
    json_bad("\"\xC3\x28\"", "invalid UTF-8");
    json_bad("[1] 2", "trailing data");
    json_bad("// c\n1", "a comment");
    json_bad("{\"a\" 1}", "a missing colon");
    json_bad("[tru]", "a bad literal");
    json_bad("", "empty input");
    json_bad("\"abc", "an unterminated string");
    char deep[300];
    memset(deep, '[', 128);
    memset(deep + 128, ']', 128);
    deep[256] = 0;
    json_ok(deep, "nesting 128");
    memset(deep, '[', 129);
    memset(deep + 129, ']', 129);
    deep[258] = 0;
    json_bad(deep, "nesting 129");
}

static void test_config(void) {
    const char *cfg_text =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 576,"
        " \"intermediate_size\": 1536, \"num_hidden_layers\": 30, \"num_attention_heads\": 9, \"num_key_value_heads\": 3,"
        " \"vocab_size\": 49152, \"rms_norm_eps\": 1e-05, \"rope_theta\": 100000, \"max_position_embeddings\": 8192,"
        " \"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": [2, 5], \"torch_dtype\": \"bfloat16\","
        " \"rope_scaling\": null, \"quantization_config\": {\"load_in_8bit\": true}}";
    bnb_hf_config c;
    tc_check(bnb_hf_config_parse(cfg_text, strlen(cfg_text), "config.json", &c) == BNB_OK && c.hidden_size == 576 &&
                 c.intermediate_size == 1536 && c.num_hidden_layers == 30 && c.num_attention_heads == 9 &&
                 c.num_key_value_heads == 3 && c.head_dim == 64 && c.vocab_size == 49152 && c.rms_norm_eps == 1e-5 &&
                 c.rope_theta == 100000 && c.max_position_embeddings == 8192 && c.tie_word_embeddings &&
                 c.bos_token_id == 1 && c.eos_token_id == 2 && !strcmp(c.model_type, "llama") &&
                 !strcmp(c.architecture, "LlamaForCausalLM") && !strcmp(c.torch_dtype, "bfloat16"),
             "config.json: Llama fields (%s)", bnb_last_error());
    const char *min = "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 4, \"vocab_size\": 100}";
    tc_check(bnb_hf_config_parse(min, strlen(min), "min.json", &c) == BNB_OK && c.num_key_value_heads == 4 &&
                 c.head_dim == 16 && c.rope_theta == 10000 && c.rms_norm_eps == 1e-6 && !c.tie_word_embeddings &&
                 c.bos_token_id == -1,
             "config.json: defaults");
    const char *missing = "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}";
    const char *n1[] = {"bad.json", "intermediate_size", NULL};
    tc_check_error(bnb_hf_config_parse(missing, strlen(missing), "bad.json", &c), BNB_ERR_IO, "missing field", n1);
    const char *wrong = "{\"hidden_size\": \"64\", \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                        " \"num_attention_heads\": 4, \"vocab_size\": 100}";
    const char *n2[] = {"bad.json", "hidden_size", NULL};
    tc_check_error(bnb_hf_config_parse(wrong, strlen(wrong), "bad.json", &c), BNB_ERR_IO, "string where a number goes", n2);
    const char *gqa = "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"vocab_size\": 100}";
    const char *n3[] = {"num_key_value_heads", NULL};
    tc_check_error(bnb_hf_config_parse(gqa, strlen(gqa), "bad.json", &c), BNB_ERR_IO, "kv heads not dividing heads", n3);
    const char *n4[] = {"/nonexistent/config.json", NULL};
    tc_check_error(bnb_hf_config_load("/nonexistent/config.json", &c), BNB_ERR_IO, "missing config file", n4);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-v")) tc_verbose = 1;
    test_round_trip();
    test_hostile();
    test_json();
    test_config();
    return tc_summary("test-safetensors");
}
