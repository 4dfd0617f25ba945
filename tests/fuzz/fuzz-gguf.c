/* libFuzzer target: GGUF parser, metadata accessors, tensor conversion/loading and the GGUF tokenizer, all from a
 * memory buffer. Built by run-fuzzers.sh (clang -fsanitize=fuzzer,address,undefined). */
#include "bnb-model.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bnb_gguf *g = bnb_gguf_parse_memory(data, size, "fuzz.gguf");
    if (!g) return 0;
    for (int64_t i = 0; i < bnb_gguf_n_kv(g); i++) {
        const char *key = bnb_gguf_key(g, i);
        int64_t iv;
        double dv;
        bool bv;
        bnb_gguf_get_int(g, key, false, &iv);
        bnb_gguf_get_float(g, key, false, &dv);
        bnb_gguf_get_bool(g, key, false, &bv);
        bnb_gguf_get_str(g, key, NULL);
        int64_t n = bnb_gguf_arr_n(g, i);
        for (int64_t j = 0; j < n && j < 64; j++) {
            bnb_gguf_arr_int(g, i, j, &iv);
            bnb_gguf_arr_float(g, i, j, &dv);
            bnb_gguf_arr_str(g, i, j, NULL);
        }
    }
    for (int64_t i = 0; i < bnb_gguf_n_tensors(g); i++) {
        bnb_gguf_tensor_info ti;
        if (bnb_gguf_tensor_info_get(g, i, &ti) != BNB_OK) abort();
        if ((const uint8_t *)ti.data < data || (const uint8_t *)ti.data + ti.nbytes > data + size) abort();
        int64_t n = ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3];
        if (n > (int64_t)(1 << 22)) continue;
        float *y = malloc((size_t)(n ? n : 1) * sizeof(float));
        bnb_gguf_tensor_to_f32(g, i, y, n);
        free(y);
        bnb_context *ctx = bnb_context_new((bnb_context_params){ti.nbytes + 8 * (size_t)n + 65536, false});
        bnb_tensor *t = ctx ? bnb_gguf_tensor_new(g, i, ctx) : NULL;
        if (t) bnb_gguf_tensor_load(g, i, t);
        bnb_context_free(ctx);
    }
    bnb_tokenizer *tok = bnb_tokenizer_from_gguf(g);
    if (tok) {
        static const char text[] = "Hello, world! <|im_start|> 123 d\xC3\xB6n\xC3\xBC\xC5\x9F  \n\t x";
        int32_t ids[256];
        char out[512];
        int64_t n = bnb_tokenizer_encode(tok, text, sizeof text - 1, ids, 256, true, true);
        if (n > 0 && n <= 256) bnb_tokenizer_decode(tok, ids, n, out, sizeof out, false);
        bnb_tokenizer_free(tok);
    }
    bnb_gguf_free(g);
    return 0;
}
