/* bnb-perplexity: sliding-window perplexity of a model on a text file.
 * Windows of --ctx tokens start every --stride tokens; each window scores only the tokens no earlier window scored
 * (the first window scores all but its first token), so every token is predicted once with up to ctx-1 tokens of
 * context (Hugging Face's sliding-window evaluation). */
#include "tool-common.h"

#include <math.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: bnb-perplexity -m MODEL -f TEXT [options]\n"
            "  -m, --model PATH     GGUF file or Hugging Face directory\n"
            "  -f, --file PATH      text file\n"
            "  --ctx N              window length in tokens (default 512)\n"
            "  --stride S           window step (default ctx / 2)\n"
            "  --max-tokens N       use only the first N tokens of the text (default: all)\n"
            "  --weights KIND       f32 | f16 | int8 | nf4 (default: a GGUF's own int8 / f16 / nf4 stay so, else f32)\n"
            "  --int8-threshold T   LLM.int8 outlier threshold (default 6.0)\n"
            "  --device cpu|cuda    (default cpu)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --quiet              no progress bar\n"
            "  -h, --help\n");
}

static void progress(double frac, double ppl, double elapsed) {
    const int width = 40;
    int filled = (int)(frac * width + 0.5);
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < filled ? '=' : (i == filled ? '>' : ' '), stderr);
    fprintf(stderr, "] %5.1f%%  ppl %.4f  %.1f s", 100.0 * frac, ppl, elapsed);
    fflush(stderr);
}

int main(int argc, char **argv) {
    const char *prog = "bnb-perplexity";
    const char *model_path = NULL, *text_path = NULL, *device = "cpu", *weights = NULL;
    long long ctx = 512, stride = 0, max_tokens = 0, threads = 0;
    double int8_thr = 6.0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) text_path = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) ctx = tool_int(a, tool_value(argc, argv, &i, prog), 2, 1 << 20, prog);
        else if (!strcmp(a, "--stride")) stride = tool_int(a, tool_value(argc, argv, &i, prog), 1, 1 << 20, prog);
        else if (!strcmp(a, "--max-tokens")) max_tokens = tool_int(a, tool_value(argc, argv, &i, prog), 2, LLONG_MAX, prog);
        else if (!strcmp(a, "--weights")) weights = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "--int8-threshold")) int8_thr = tool_float(a, tool_value(argc, argv, &i, prog), 0, 1e30, prog);
        else if (!strcmp(a, "--device")) device = tool_value(argc, argv, &i, prog);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) threads = tool_int(a, tool_value(argc, argv, &i, prog), 1, 4096, prog);
        else if (!strcmp(a, "--quiet")) quiet = true;
        else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        }
    }
    if (!model_path || !text_path) {
        fprintf(stderr, "%s: need -m MODEL and -f TEXT (see --help)\n", prog);
        return 2;
    }
    if (stride == 0) stride = ctx / 2 > 0 ? ctx / 2 : 1;
    if (stride > ctx) {
        fprintf(stderr, "%s: --stride %lld is larger than --ctx %lld (tokens would be skipped)\n", prog, stride, ctx);
        return 2;
    }
    if (!weights) weights = tool_default_weights(model_path);
    bnb_model_params mp = bnb_model_default_params();
    if (bnb_weight_kind_parse(weights, &mp.weights) != BNB_OK) {
        fprintf(stderr, "%s: option --weights: %s\n", prog, bnb_last_error());
        return 2;
    }
    mp.int8_threshold = (float)int8_thr;
    mp.n_ctx = ctx;

    /* the text first: a bad path fails before the (slow) model load */
    FILE *f = fopen(text_path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open %s: %s\n", prog, text_path, strerror(errno));
        return 1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = (len + 65536 + 1) * 2;
            char *nt = realloc(text, cap);
            if (!nt) {
                fprintf(stderr, "%s: %s: out of memory\n", prog, text_path);
                fclose(f);
                free(text);
                return 1;
            }
            text = nt;
        }
        size_t r = fread(text + len, 1, 65536, f);
        len += r;
        if (r < 65536) break;
    }
    bool read_err = ferror(f);
    fclose(f);
    if (read_err) {
        fprintf(stderr, "%s: error reading %s\n", prog, text_path);
        free(text);
        return 1;
    }
    text[len] = 0;

    bnb_backend *be = tool_backend(device, (int)threads, prog);
    if (!be) {
        free(text);
        return 2;
    }
    mp.backend = be;
    double t0 = tool_now();
    bnb_model *m = bnb_model_load(model_path, &mp);
    int rc = 1;
    int32_t *ids = NULL;
    float *logits = NULL;
    if (!m) {
        fprintf(stderr, "%s: cannot load %s: %s\n", prog, model_path, bnb_last_error());
        goto out;
    }
    double t_load = tool_now() - t0;
    const bnb_tokenizer *tok = bnb_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "%s: %s has no tokenizer\n", prog, model_path);
        goto out;
    }
    const bool add_bos = bnb_tokenizer_add_bos(tok);
    int64_t n = bnb_tokenizer_encode(tok, text, len, NULL, 0, add_bos, false);
    if (n < 0) {
        fprintf(stderr, "%s: cannot tokenize %s: %s\n", prog, text_path, bnb_last_error());
        goto out;
    }
    ids = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!ids) goto out;
    bnb_tokenizer_encode(tok, text, len, ids, n, add_bos, false);
    if (max_tokens > 0 && n > max_tokens) n = max_tokens;
    if (n < 2) {
        fprintf(stderr, "%s: %s has %lld tokens; need at least 2\n", prog, text_path, (long long)n);
        goto out;
    }
    const int64_t V = bnb_model_get_config(m)->n_vocab;
    logits = malloc((size_t)(ctx * V) * sizeof(float));
    if (!logits) {
        fprintf(stderr, "%s: out of memory for %lld x %lld logits\n", prog, ctx, (long long)V);
        goto out;
    }
    fprintf(stderr, "%s: %s (%s weights, %s), %s: %lld tokens, ctx %lld, stride %lld; loaded in %.2f s\n", prog,
            model_path, weights, bnb_backend_name(be), text_path, (long long)n, ctx, stride, t_load);
    double nll = 0, t1 = tool_now();
    int64_t scored = 0, prev_end = 0;
    for (int64_t begin = 0; prev_end < n; begin += stride) {
        const int64_t end = begin + ctx < n ? begin + ctx : n, wn = end - begin;
        if (wn < 2 && begin > 0) break;
        if (bnb_model_eval(m, ids + begin, wn, 0, true, logits) != BNB_OK) {
            fprintf(stderr, "\n%s: eval of window at token %lld failed: %s\n", prog, (long long)begin, bnb_last_error());
            goto out;
        }
        /* score targets at positions max(prev_end, begin + 1) .. end-1 (predicted by the position before) */
        for (int64_t p = (prev_end > begin + 1 ? prev_end : begin + 1); p < end; p++) {
            const float *l = logits + (p - begin - 1) * V;
            double mx = l[0], s = 0;
            for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int64_t v = 0; v < V; v++) s += exp((double)l[v] - mx);
            nll += -((double)l[ids[p]] - mx - log(s));
            scored++;
        }
        prev_end = end;
        if (!quiet) progress((double)end / (double)n, exp(nll / (double)scored), tool_now() - t1);
    }
    if (!quiet) fprintf(stderr, "\n");
    const double ppl = exp(nll / (double)scored);
    printf("perplexity: %.4f over %lld tokens (ctx %lld, stride %lld, %s weights, %s) in %.1f s\n", ppl,
           (long long)scored, ctx, stride, weights, bnb_backend_name(be), tool_now() - t1);
    rc = 0;
out:
    free(text);
    free(ids);
    free(logits);
    bnb_model_free(m);
    bnb_backend_free(be);
    return rc;
}
