/* libFuzzer target: safetensors parser (+ tensor conversion and loading), and the same bytes as JSON text and as a
 * config.json. Built by run-fuzzers.sh. */
#include "bnb-model.h"

#include <stdlib.h>
#include <string.h>

static void walk(const bnb_json_value *v, int depth) {
    size_t n = bnb_json_len(v);
    for (size_t i = 0; i < n; i++) {
        bnb_json_key_at(v, i);
        walk(bnb_json_at(v, i), depth + 1);
    }
    int64_t iv;
    bnb_json_int(v, &iv);
    bnb_json_string(v, NULL);
    if (depth > BNB_JSON_MAX_DEPTH + 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bnb_safetensors *st = bnb_safetensors_parse_memory(data, size, "fuzz.safetensors");
    if (st) {
        for (int64_t i = 0; i < bnb_safetensors_n_tensors(st); i++) {
            bnb_st_tensor_info ti;
            if (bnb_safetensors_info(st, i, &ti) != BNB_OK) abort();
            if (ti.nbytes && ((const uint8_t *)ti.data < data || (const uint8_t *)ti.data + ti.nbytes > data + size)) abort();
            if (ti.n_elements > (1 << 22)) continue;
            float *y = malloc((size_t)(ti.n_elements ? ti.n_elements : 1) * sizeof(float));
            bnb_safetensors_to_f32(st, i, y, ti.n_elements);
            free(y);
            bnb_context *ctx = bnb_context_new((bnb_context_params){8 * (size_t)ti.n_elements + 65536, false});
            bnb_tensor *t = ctx ? bnb_safetensors_tensor_new(st, i, ctx) : NULL;
            if (t) bnb_safetensors_tensor_load(st, i, t);
            bnb_context_free(ctx);
            int64_t a, b, c, d;
            bnb_safetensors_int8_linear(st, "x", &a, &b, &c, &d);
        }
        bnb_safetensors_metadata(st, "format");
        bnb_safetensors_free(st);
    }
    bnb_json *doc = bnb_json_parse((const char *)data, size, "fuzz.json");
    if (doc) {
        walk(bnb_json_root(doc), 0);
        bnb_json_free(doc);
    }
    bnb_hf_config cfg;
    bnb_hf_config_parse((const char *)data, size, "fuzz-config.json", &cfg);
    return 0;
}
