/* bnb-run: generate text with a Llama-family model (GGUF file or Hugging Face checkpoint directory).
 * Streams tokens as they are generated; prints load time and prefill / decode speed at the end. */
#include "tool-common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: bnb-run -m MODEL [options]\n"
            "  -m, --model PATH       GGUF file, or Hugging Face directory (config.json, model.safetensors, tokenizer.json)\n"
            "  -p, --prompt TEXT      prompt (default \"Once upon a time\")\n"
            "  -n, --n-predict N      tokens to generate (default 64)\n"
            "  --chat                 wrap the prompt in the ChatML template (<|im_start|>user ... assistant)\n"
            "  --weights KIND         f32 | f16 | int8 | nf4 (default: a GGUF's own int8 / f16 / nf4 linear weights stay\n"
            "                         so, anything else loads as f32); int8 = LLM.int8 with outlier threshold\n"
            "  --int8-threshold T     LLM.int8 outlier threshold (default 6.0; 0 = no decomposition)\n"
            "  --device auto|cpu|cuda where to run (default auto: cuda when a GPU is present, else cpu)\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --ctx N                KV cache length (default: min(model context, 2048))\n"
            "  --seed S               sampling seed (default 42)\n"
            "  --temp T               temperature (default 0 = greedy)\n"
            "  --top-k K              top-k (default 40; 0 = off)\n"
            "  --top-p P              top-p (default 0.95; 1 = off)\n"
            "  --repeat-penalty R     repetition penalty (default 1.0 = off)\n"
            "  --repeat-last-n N      tokens the penalty looks back at (default 64)\n"
            "  -h, --help\n");
}

int main(int argc, char **argv) {
    const char *prog = "bnb-run";
    const char *model_path = NULL, *prompt = "Once upon a time", *device = "auto", *weights = NULL;
    long long n_predict = 64, threads = 0, n_ctx = 0;
    bool chat = false;
    double int8_thr = 6.0;
    bnb_sampler_params sp = bnb_sampler_default_params();
    sp.temperature = 0.f;
    sp.repeat_penalty = 1.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) n_predict = tool_int(a, tool_value(argc, argv, &i, prog), 0, 1 << 20, prog);
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--weights")) weights = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "--int8-threshold")) int8_thr = tool_float(a, tool_value(argc, argv, &i, prog), 0, 1e30, prog);
        else if (!strcmp(a, "--device")) device = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) threads = tool_int(a, tool_value(argc, argv, &i, prog), 1, 4096, prog);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) n_ctx = tool_int(a, tool_value(argc, argv, &i, prog), 1, 1 << 20, prog);
        else if (!strcmp(a, "--seed")) sp.seed = (uint64_t)tool_int(a, tool_value(argc, argv, &i, prog), 0, LLONG_MAX, prog);
        else if (!strcmp(a, "--temp")) sp.temperature = (float)tool_float(a, tool_value(argc, argv, &i, prog), 0, 100, prog);
        else if (!strcmp(a, "--top-k")) sp.top_k = (int32_t)tool_int(a, tool_value(argc, argv, &i, prog), 0, INT32_MAX, prog);
        else if (!strcmp(a, "--top-p")) sp.top_p = (float)tool_float(a, tool_value(argc, argv, &i, prog), 1e-6, 1, prog);
        else if (!strcmp(a, "--repeat-penalty")) sp.repeat_penalty = (float)tool_float(a, tool_value(argc, argv, &i, prog), 1e-3, 100, prog);
        else if (!strcmp(a, "--repeat-last-n")) sp.repeat_last_n = (int32_t)tool_int(a, tool_value(argc, argv, &i, prog), 0, 1 << 20, prog);
        else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        }
    }
    if (!model_path) {
        fprintf(stderr, "%s: no model given: use -m MODEL (see --help)\n", prog);
        return 2;
    }
    if (!weights) weights = tool_default_weights(model_path);
    bnb_model_params mp = bnb_model_default_params();
    if (bnb_weight_kind_parse(weights, &mp.weights) != BNB_OK) {
        fprintf(stderr, "%s: option --weights: %s\n", prog, bnb_last_error());
        return 2;
    }
    mp.int8_threshold = (float)int8_thr;
    mp.n_ctx = n_ctx;
    bnb_backend *be = tool_backend(device, (int)threads, prog);
    if (!be) return 2;
    mp.backend = be;

    double t0 = tool_now();
    bnb_model *m = bnb_model_load(model_path, &mp);
    if (!m) {
        fprintf(stderr, "%s: cannot load %s: %s\n", prog, model_path, bnb_last_error());
        bnb_backend_free(be);
        return 1;
    }
    double t_load = tool_now() - t0;
    const bnb_tokenizer *tok = bnb_model_tokenizer(m);
    int rc = 1;
    int32_t *ids = NULL;
    float *logits = NULL;
    bnb_sampler *smp = NULL;
    char *text = NULL;
    if (!tok) {
        fprintf(stderr, "%s: %s has no tokenizer (GGUF tokenizer.ggml.* keys or tokenizer.json)\n", prog, model_path);
        goto out;
    }
    const bnb_model_config *c = bnb_model_get_config(m);
    const int64_t ctx_len = bnb_model_n_ctx(m);
    if (chat) {
        const char *pre = "<|im_start|>user\n", *post = "<|im_end|>\n<|im_start|>assistant\n";
        text = malloc(strlen(pre) + strlen(prompt) + strlen(post) + 1);
        if (!text) goto out;
        sprintf(text, "%s%s%s", pre, prompt, post);
    } else {
        text = strdup(prompt);
        if (!text) goto out;
    }
    const bool add_bos = bnb_tokenizer_add_bos(tok);
    int64_t n_prompt = bnb_tokenizer_encode(tok, text, strlen(text), NULL, 0, add_bos, true);
    if (n_prompt < 0) {
        fprintf(stderr, "%s: cannot tokenize the prompt: %s\n", prog, bnb_last_error());
        goto out;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "%s: the prompt is empty (and the model adds no BOS token)\n", prog);
        goto out;
    }
    if (n_prompt + n_predict > ctx_len) {
        fprintf(stderr, "%s: prompt (%lld tokens) + -n %lld exceed the context of %lld (use --ctx)\n", prog,
                (long long)n_prompt, n_predict, (long long)ctx_len);
        goto out;
    }
    ids = malloc((size_t)(n_prompt + n_predict + 1) * sizeof(int32_t));
    logits = malloc((size_t)c->n_vocab * sizeof(float));
    smp = bnb_sampler_new(&sp, (int32_t)c->n_vocab);
    if (!ids || !logits || !smp) {
        fprintf(stderr, "%s: out of memory: %s\n", prog, bnb_last_error());
        goto out;
    }
    bnb_tokenizer_encode(tok, text, strlen(text), ids, n_prompt, add_bos, true);
    fprintf(stderr, "%s: %s: %lld layers, n_embd %lld, %lld heads (%lld kv), vocab %lld; %s weights (%.1f MiB) on %s; "
            "loaded in %.2f s\n", prog, model_path, (long long)c->n_layer, (long long)c->n_embd, (long long)c->n_head,
            (long long)c->n_head_kv, (long long)c->n_vocab, weights, (double)bnb_model_weight_bytes(m) / 1048576.0,
            bnb_backend_name(be), t_load);
    fputs(text, stdout);
    fflush(stdout);
    for (int64_t i = 0; i < n_prompt; i++) bnb_sampler_accept(smp, ids[i]);

    double tp = tool_now();
    if (bnb_model_eval(m, ids, n_prompt, 0, false, logits) != BNB_OK) {
        fprintf(stderr, "\n%s: prefill failed: %s\n", prog, bnb_last_error());
        goto out;
    }
    double t_prefill = tool_now() - tp;
    const int32_t eos = bnb_tokenizer_eos(tok);
    int64_t n_gen = 0, n_pos = n_prompt;
    double td = tool_now(), t_flush = td;
    char piece[256];
    for (; n_gen < n_predict; n_gen++) {
        int32_t t = bnb_sampler_sample(smp, logits);
        if (t == eos || (chat && bnb_tokenizer_is_special(tok, t))) break;
        bnb_sampler_accept(smp, t);
        int64_t len = bnb_tokenizer_token_bytes(tok, t, piece, sizeof piece);
        if (len > 0) fwrite(piece, 1, (size_t)(len < (int64_t)sizeof piece ? len : (int64_t)sizeof piece), stdout);
        /* stream, but at most one write(2) per 20 ms: at thousands of tokens/s a flush per token is measurable */
        const double now = tool_now();
        if (now - t_flush > 0.02) {
            fflush(stdout);
            t_flush = now;
        }
        ids[n_pos] = t;
        if (n_gen + 1 == n_predict) {
            n_gen++;
            break;
        }
        if (bnb_model_eval(m, &ids[n_pos], 1, n_pos, false, logits) != BNB_OK) {
            fprintf(stderr, "\n%s: decode failed at position %lld: %s\n", prog, (long long)n_pos, bnb_last_error());
            goto out;
        }
        n_pos++;
    }
    double t_decode = tool_now() - td;
    printf("\n");
    fflush(stdout);
    /* decode speed counts the evaluated tokens (the last sampled token needs no forward pass) */
    const int64_t n_decoded = n_pos - n_prompt;
    fprintf(stderr, "\n%s: load %.2f s | prefill %lld tokens in %.3f s (%.1f tok/s) | decode %lld tokens in %.3f s "
            "(%.1f tok/s) | %s weights, %s\n", prog, t_load, (long long)n_prompt, t_prefill,
            (double)n_prompt / t_prefill, (long long)n_decoded, t_decode,
            n_decoded > 0 ? (double)n_decoded / t_decode : 0.0, weights, bnb_backend_name(be));
    rc = 0;
out:
    free(text);
    free(ids);
    free(logits);
    bnb_sampler_free(smp);
    bnb_model_free(m);
    bnb_backend_free(be);
    return rc;
}
