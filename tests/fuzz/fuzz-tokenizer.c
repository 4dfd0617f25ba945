/* libFuzzer target: tokenizers. The first byte picks the case:
 *   0..99    the rest is a tokenizer.json: load it, encode a fixed text and the input itself, decode;
 *   100..179 the rest is text for a fixed byte-level BPE tokenizer: decode(encode(text)) must equal text;
 *   180..239 the same for a fixed SentencePiece-style tokenizer (texts containing U+2581 are skipped);
 *   240..255 the same for the byte tokenizer.
 * A round-trip mismatch aborts (the fuzzer reports it as a crash). Built by run-fuzzers.sh. */
#include "bnb-model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bnb_tokenizer *g_bpe, *g_spm, *g_byte;

static int cp_of_byte(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int k = 0;
    for (int x = 0; x < b; x++) k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
    return 256 + k;
}

static bnb_tokenizer *make_bpe(void) {
    /* bytes + a few merges, as tokenizer.json */
    char *j = malloc(1 << 16), *p = j;
    p += sprintf(p, "{\"added_tokens\": [{\"id\": 300, \"content\": \"<|end|>\", \"special\": true}], \"pre_tokenizer\":"
                    " {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}]},"
                    " \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) p += sprintf(p, "\"\\u%04x\": %d, ", cp_of_byte(b), b);
    p += sprintf(p, "\"th\": 256, \"the\": 257, \"\\u0120the\": 258, \"in\": 259, \"ing\": 260, \"\\u0120\\u0120\": 261,"
                    " \"er\": 262, \"\\u0120t\": 263}, \"merges\": [\"t h\", \"th e\", \"\\u0120 the\", \"i n\", [\"in\", \"g\"],"
                    " \"\\u0120 \\u0120\", \"e r\", \"\\u0120 t\"]}}");
    bnb_tokenizer *t = bnb_tokenizer_from_json(j, strlen(j), "fuzz-bpe.json");
    free(j);
    return t;
}

static bnb_tokenizer *make_spm(void) {
    const char *tok[3 + 256 + 8];
    float score[3 + 256 + 8];
    static char bytes[256][8];
    static const char *const pieces[8] = {"\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "a", "ba", "aba", "\xE2\x96\x81" "ab"};
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    for (int b = 0; b < 256; b++) snprintf(bytes[b], 8, "<0x%02X>", b), tok[3 + b] = bytes[b];
    for (int i = 0; i < 3 + 256 + 8; i++) score[i] = i < 259 ? 0 : (float)(i % 5);
    for (int i = 0; i < 8; i++) tok[259 + i] = pieces[i];
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    bnb_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, 267);
    bnb_gguf_set_arr(w, "tokenizer.ggml.scores", BNB_GGUF_FLOAT32, score, 267);
    bnb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    void *mem;
    size_t size;
    bnb_gguf_writer_write_memory(w, &mem, &size);
    bnb_gguf_writer_free(w);
    bnb_gguf *g = bnb_gguf_parse_memory(mem, size, "fuzz-spm.gguf");
    bnb_tokenizer *t = bnb_tokenizer_from_gguf(g);
    bnb_gguf_free(g);
    free(mem);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_bpe = make_bpe();
    g_spm = make_spm();
    g_byte = bnb_tokenizer_new_byte(true);
    if (!g_bpe || !g_spm || !g_byte) {
        fprintf(stderr, "fuzz-tokenizer: setup failed: %s\n", bnb_last_error());
        abort();
    }
    return 0;
}

static void round_trip(const bnb_tokenizer *t, const char *s, size_t n) {
    int32_t *ids = malloc((n + 4) * sizeof *ids);
    char *out = malloc(n + 4);
    int64_t k = bnb_tokenizer_encode(t, s, n, ids, (int64_t)n + 4, false, false);
    if (k < 0 || k > (int64_t)n + 4) abort();
    int64_t m = bnb_tokenizer_decode(t, ids, k, out, n + 4, false);
    if (m != (int64_t)n || memcmp(out, s, n) != 0) {
        fprintf(stderr, "round trip mismatch: %zu bytes in, %lld out\n", n, (long long)m);
        abort();
    }
    /* with special-token parsing too: must not crash, ids in range */
    k = bnb_tokenizer_encode(t, s, n, ids, (int64_t)n + 4, true, true);
    for (int64_t i = 0; i < k && i < (int64_t)n + 4; i++)
        if (ids[i] < 0 || ids[i] >= bnb_tokenizer_n_vocab(t)) abort();
    free(ids);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    if (sel < 100) {
        bnb_tokenizer *t = bnb_tokenizer_from_json(s, n, "fuzz-tokenizer.json");
        if (t) {
            static const char text[] = "Hello world 123 <s> \xE2\x96\x81x \xC3\xA9\n\n  ";
            int32_t ids[512];
            char out[2048];
            int64_t k = bnb_tokenizer_encode(t, text, sizeof text - 1, ids, 512, true, true);
            if (k > 0 && k <= 512) bnb_tokenizer_decode(t, ids, k, out, sizeof out, true);
            k = bnb_tokenizer_encode(t, s, n < 256 ? n : 256, ids, 512, false, false);
            if (k > 0 && k <= 512) bnb_tokenizer_decode(t, ids, k, out, sizeof out, false);
            bnb_tokenizer_free(t);
        }
    } else if (sel < 180) {
        round_trip(g_bpe, s, n);
    } else if (sel < 240) {
        for (size_t i = 0; i + 2 < n; i++)
            if (!memcmp(s + i, "\xE2\x96\x81", 3)) return 0;
        round_trip(g_spm, s, n);
    } else {
        round_trip(g_byte, s, n);
    }
    return 0;
}
