/* Writes small valid inputs for the fuzzers (GGUF with tokenizer metadata and tensors of several types, safetensors,
 * tokenizer.json, config.json) into corpus directories: make-seeds <out-dir>. Used by run-fuzzers.sh. */
#include "bnb-model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void save(const char *dir, const char *sub, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *dir = argv[1];
    mkdir(dir, 0755);
    /* GGUF: tokenizer (gpt2 and llama) + tensors */
    for (int kind = 0; kind < 2; kind++) {
        bnb_gguf_writer *w = bnb_gguf_writer_new();
        const char *tok[6] = {"<s>", "a", "b", "ab", "\xC4\xA0", "\xE2\x96\x81"};
        const char *mer[2] = {"a b", "\xC4\xA0 a"};
        float score[6] = {0, -1, -1, 2, 0, 0};
        int32_t types[6] = {3, 1, 1, 1, 1, 1};
        bnb_gguf_set_str(w, "general.architecture", "llama");
        bnb_gguf_set_u32(w, "llama.block_count", 2);
        bnb_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
        bnb_gguf_set_str(w, "tokenizer.ggml.model", kind ? "llama" : "gpt2");
        bnb_gguf_set_str(w, "tokenizer.ggml.pre", kind ? "default" : "smollm");
        bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, 6);
        bnb_gguf_set_arr_str(w, "tokenizer.ggml.merges", mer, 2);
        bnb_gguf_set_arr(w, "tokenizer.ggml.scores", BNB_GGUF_FLOAT32, score, 6);
        bnb_gguf_set_arr(w, "tokenizer.ggml.token_type", BNB_GGUF_INT32, types, 6);
        bnb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 0);
        uint8_t blk[64];
        for (int i = 0; i < 64; i++) blk[i] = (uint8_t)(i * 37);
        blk[1] = 0x2c, blk[3] = 0x2c; /* sane f16 scales */
        bnb_gguf_writer_add_raw(w, "q8", BNB_GGML_TYPE_Q8_0, 1, (int64_t[]){32}, blk, 34);
        bnb_gguf_writer_add_raw(w, "q40", BNB_GGML_TYPE_Q4_0, 1, (int64_t[]){32}, blk, 18);
        bnb_gguf_writer_add_raw(w, "q41", BNB_GGML_TYPE_Q4_1, 1, (int64_t[]){32}, blk, 20);
        bnb_gguf_writer_add_raw(w, "f16", BNB_GGML_TYPE_F16, 2, (int64_t[]){4, 2}, blk, 16);
        bnb_gguf_writer_add_raw(w, "f32", BNB_GGML_TYPE_F32, 1, (int64_t[]){4}, blk, 16);
        if (kind) {
            bnb_context *ctx = bnb_context_new((bnb_context_params){1 << 20, false});
            bnb_tensor *q = bnb_new_tensor_quant(ctx, BNB_TYPE_Q4_NF4, 1, (int64_t[]){64},
                                                 (bnb_quant_params){64, BNB_QMAP_NF4, 0, 0});
            float x[64];
            for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) / 7;
            bnb_set_name(q, "nf4");
            bnb_tensor_set_f32(q, x, 64);
            bnb_tensor *r = bnb_new_tensor_quant(ctx, BNB_TYPE_I8_ROW, 2, (int64_t[]){8, 2}, (bnb_quant_params){0, 0, 0, 0});
            bnb_set_name(r, "i8row");
            bnb_tensor_set_f32(r, x, 16);
            bnb_gguf_writer_add_tensor(w, q);
            bnb_gguf_writer_add_tensor(w, r);
            void *mem;
            size_t size;
            bnb_gguf_writer_write_memory(w, &mem, &size);
            save(dir, "gguf", "seed-llama.gguf", mem, size);
            free(mem);
            bnb_context_free(ctx);
        } else {
            void *mem;
            size_t size;
            bnb_gguf_writer_write_memory(w, &mem, &size);
            save(dir, "gguf", "seed-gpt2.gguf", mem, size);
            free(mem);
        }
        bnb_gguf_writer_free(w);
    }
    /* safetensors */
    bnb_safetensors_writer *sw = bnb_safetensors_writer_new();
    int8_t q[8] = {1, -2, 3, -4, 5, -6, 7, -8};
    float scb[2] = {1.5f, 2.5f};
    uint16_t h[4] = {0x3c00, 0x4000, 0xbc00, 0x3f80};
    bnb_safetensors_writer_set_metadata(sw, "format", "pt");
    bnb_safetensors_writer_add_raw(sw, "x.weight", BNB_ST_I8, 2, (int64_t[]){2, 4}, q, 8);
    bnb_safetensors_writer_add_raw(sw, "x.SCB", BNB_ST_F32, 1, (int64_t[]){2}, scb, 8);
    bnb_safetensors_writer_add_raw(sw, "h", BNB_ST_F16, 1, (int64_t[]){4}, h, 8);
    bnb_safetensors_writer_add_raw(sw, "b", BNB_ST_BF16, 2, (int64_t[]){2, 2}, h, 8);
    void *mem;
    size_t size;
    bnb_safetensors_writer_write_memory(sw, &mem, &size);
    save(dir, "safetensors", "seed.safetensors", mem, size);
    free(mem);
    bnb_safetensors_writer_free(sw);
    const char *cfg = "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                      " \"num_key_value_heads\": 2, \"vocab_size\": 100, \"rms_norm_eps\": 1e-5, \"eos_token_id\": [2, 3],"
                      " \"tie_word_embeddings\": true, \"architectures\": [\"LlamaForCausalLM\"]}";
    save(dir, "safetensors", "seed-config.json", cfg, strlen(cfg));
    /* tokenizer.json seeds (selector byte 0) and texts for the fixed tokenizers */
    const char *tj = "\x01{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}], \"normalizer\": null,"
                     " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}},"
                     " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}]},"
                     " \"model\": {\"type\": \"BPE\", \"byte_fallback\": false, \"ignore_merges\": true, \"vocab\":"
                     " {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", [\"ab\", \"a\"]]}}";
    save(dir, "tokenizer", "seed-bpe.json", tj, strlen(tj));
    const char *tj2 = "\x02{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"<0x41>\": 0, \"\\u2581\": 1,"
                      " \"x\": 2, \"\\u2581x\": 3}, \"merges\": [\"\\u2581 x\"]}, \"pre_tokenizer\": {\"type\": \"Metaspace\","
                      " \"prepend_scheme\": \"first\"}}";
    save(dir, "tokenizer", "seed-spm.json", tj2, strlen(tj2));
    const char *texts[3] = {"\x80the thing's  interesting 123 <|end|>\n\n", "\xC0" "aba ab  b\tx\xC3\xA9", "\xF5raw \xFF\xFE bytes"};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "seed-text-%d", i);
        save(dir, "tokenizer", name, texts[i], strlen(texts[i]));
    }
    return 0;
}
