/* bnb-train: train a Llama-style model from scratch (byte-level) or fine-tune one (GGUF / bnb-train checkpoint) on a
 * text file with bnb's fused (8-bit) optimizers: one graph per step = forward + backward + optimizer update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bnb-model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bnb-train -f TEXT [options]\n"
            "model:  -m MODEL (fine-tune a GGUF model or bnb-train checkpoint) | --config tiny|small|medium|gpt2\n"
            "        --dim N --layers N --heads N --kv-heads N --ff N --ctx N   (from-scratch byte-level dims)\n"
            "train:  --optim adamw8bit|adamw|lion8bit|lion|adam8bit|adam|sgd  --lr F --min-lr-ratio F --wd F\n"
            "        --warmup N --steps N --batch N --seq N --accum N --clip F (0 off) --pclip P (percentile, 100 off)\n"
            "        --master f32|bf16 --device cpu|cuda --threads N --seed N --val-frac F\n"
            "output: --eval-every N --eval-batches N --ckpt FILE --ckpt-every N --resume --log CSV --plot SVG\n"
            "        --export FILE --export-weights int8|f16|f32 --quiet\n");
}

static bool parse_optim(const char *s, bnb_train_config *c) {
    static const struct { const char *name; bnb_optim_type t; int bits; } tab[] = {
        {"adamw8bit", BNB_OPTIM_ADAMW, 8}, {"adamw", BNB_OPTIM_ADAMW, 32}, {"lion8bit", BNB_OPTIM_LION, 8},
        {"lion", BNB_OPTIM_LION, 32},      {"adam8bit", BNB_OPTIM_ADAM, 8}, {"adam", BNB_OPTIM_ADAM, 32},
        {"sgd", BNB_OPTIM_MOMENTUM, 32},   {"sgd8bit", BNB_OPTIM_MOMENTUM, 8},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            c->optim = tab[i].t;
            c->optim_bits = tab[i].bits;
            if (tab[i].t == BNB_OPTIM_MOMENTUM) c->weight_decay = 0;
            return true;
        }
    return false;
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0, *len = (size_t)n;
    return buf;
}

static void print_memory(const bnb_trainer *t, int bits, bnb_backend *be) {
    bnb_train_memory m = bnb_trainer_memory(t);
    double mb = 1.0 / (1024.0 * 1024.0);
    fprintf(stderr, "memory: params %.2f MiB (%lld), grads %.2f MiB, optimizer states %.2f MiB (%d-bit; 32-bit "
            "AdamW would be %.2f MiB), activations %.2f MiB, total %.2f MiB\n", m.params * mb, (long long)m.n_params,
            m.grads * mb, m.optim_states * mb, bits, 8.0 * (double)m.n_params * mb, m.activations * mb,
            (m.params + m.grads + m.optim_states + m.activations) * mb);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) fprintf(stderr, "process peak RSS: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    size_t in_use = 0, peak = 0;
    if (!bnb_backend_is_cpu(be) && bnb_backend_memory(be, &in_use, &peak) == BNB_OK)
        fprintf(stderr, "device memory: %.1f MiB in use, peak %.1f MiB (%s)\n", in_use * mb, peak * mb, bnb_backend_name(be));
}

int main(int argc, char **argv) {
    bnb_train_config cfg = bnb_train_default_config();
    const char *model = NULL, *text = NULL, *ckpt = NULL, *log_path = NULL, *plot = NULL, *export_path = NULL;
    const char *device = "cpu", *export_w = "int8";
    int64_t eval_every = 0, eval_batches = 8, ckpt_every = 0;
    int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ff = 0, ctx = 0;
    bool resume = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
        if (OPT("-m") || OPT("--model")) model = v;
        else if (OPT("-f") || OPT("--file")) text = v;
        else if (OPT("--config")) {
            if (bnb_train_preset(v, &cfg.model) != BNB_OK) return fprintf(stderr, "%s\n", bnb_last_error()), 1;
        } else if (OPT("--dim")) dim = atoll(v);
        else if (OPT("--layers")) layers = atoll(v);
        else if (OPT("--heads")) heads = atoll(v);
        else if (OPT("--kv-heads")) kv_heads = atoll(v);
        else if (OPT("--ff")) ff = atoll(v);
        else if (OPT("--ctx")) ctx = atoll(v);
        else if (OPT("--optim")) {
            if (!parse_optim(v, &cfg)) return fprintf(stderr, "unknown optimizer '%s'\n", v), 1;
        } else if (OPT("--lr")) cfg.lr = (float)atof(v);
        else if (OPT("--min-lr-ratio")) cfg.min_lr_ratio = (float)atof(v);
        else if (OPT("--wd")) cfg.weight_decay = (float)atof(v);
        else if (OPT("--warmup")) cfg.warmup = atoll(v);
        else if (OPT("--steps")) cfg.steps = atoll(v);
        else if (OPT("--batch")) cfg.batch = atoll(v);
        else if (OPT("--seq")) cfg.seq = atoll(v);
        else if (OPT("--accum")) cfg.accum = atoll(v);
        else if (OPT("--clip")) cfg.clip = (float)atof(v);
        else if (OPT("--pclip")) cfg.pclip = atoi(v);
        else if (OPT("--master")) {
            if (strcmp(v, "f32") == 0) cfg.master = BNB_TYPE_F32;
            else if (strcmp(v, "bf16") == 0) cfg.master = BNB_TYPE_BF16;
            else return fprintf(stderr, "--master f32|bf16\n"), 1;
        } else if (OPT("--device")) device = v;
        else if (OPT("--threads")) cfg.n_threads = atoi(v);
        else if (OPT("--seed")) cfg.seed = strtoull(v, NULL, 10);
        else if (OPT("--val-frac")) cfg.val_fraction = (float)atof(v);
        else if (OPT("--eval-every")) eval_every = atoll(v);
        else if (OPT("--eval-batches")) eval_batches = atoll(v);
        else if (OPT("--ckpt")) ckpt = v;
        else if (OPT("--ckpt-every")) ckpt_every = atoll(v);
        else if (OPT("--log")) log_path = v;
        else if (OPT("--plot")) plot = v;
        else if (OPT("--export")) export_path = v;
        else if (OPT("--export-weights")) export_w = v;
        else if (strcmp(a, "--resume") == 0) resume = true;
        else if (strcmp(a, "--quiet") == 0) quiet = true;
        else {
            usage();
            return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 ? 0 : 1;
        }
#undef OPT
    }
    if (!text) {
        usage();
        return 1;
    }
    bnb_model_config *mc = &cfg.model;
    if (dim > 0) mc->n_embd = dim;
    if (layers > 0) mc->n_layer = layers;
    if (heads > 0) mc->n_head = mc->n_head_kv = heads;
    if (kv_heads > 0) mc->n_head_kv = kv_heads;
    if (ff > 0) mc->n_ff = ff;
    if (ctx > 0) mc->n_ctx_train = ctx;
    if (dim > 0 || heads > 0) mc->head_dim = mc->n_embd / mc->n_head;
    if (mc->n_ctx_train < cfg.seq) mc->n_ctx_train = cfg.seq;
    bnb_weight_kind ew;
    if (bnb_weight_kind_parse(export_w, &ew) != BNB_OK) return fprintf(stderr, "%s\n", bnb_last_error()), 1;

    bnb_backend *be = NULL;
    if (strcmp(device, "cuda") == 0) {
        be = bnb_backend_cuda_new(0);
        if (!be) return fprintf(stderr, "--device cuda: %s\n", bnb_last_error()), 1;
    } else if (strcmp(device, "cpu") != 0) {
        return fprintf(stderr, "--device cpu|cuda\n"), 1;
    } else {
        be = bnb_backend_cpu_new(cfg.n_threads);
    }
    cfg.backend = be;

    size_t len = 0;
    char *buf = read_text(text, &len);
    if (!buf) return fprintf(stderr, "%s: cannot read\n", text), 1;
    int32_t *tokens = NULL;
    int64_t n_tok = 0;
    bnb_tokenizer *tok = NULL;
    if (model) { /* the model's own tokenizer when it has one (GGUF), else bytes */
        bnb_gguf *g = bnb_gguf_open(model);
        if (g) {
            tok = bnb_tokenizer_from_gguf(g);
            bnb_gguf_free(g);
        }
        bnb_clear_error();
    }
    if (tok && bnb_tokenizer_n_vocab(tok) != 256) {
        n_tok = bnb_tokenizer_encode(tok, buf, len, NULL, 0, false, false);
        tokens = n_tok > 0 ? malloc((size_t)n_tok * sizeof(int32_t)) : NULL;
        if (!tokens || bnb_tokenizer_encode(tok, buf, len, tokens, n_tok, false, false) != n_tok)
            return fprintf(stderr, "tokenizing %s failed: %s\n", text, bnb_last_error()), 1;
    } else {
        n_tok = (int64_t)len;
        tokens = malloc((size_t)(n_tok ? n_tok : 1) * sizeof(int32_t));
        for (int64_t i = 0; i < n_tok; i++) tokens[i] = (uint8_t)buf[i];
    }
    bnb_tokenizer_free(tok);
    free(buf);

    bnb_trainer *t = model ? bnb_trainer_new_from_file(model, &cfg, tokens, n_tok) : bnb_trainer_new(&cfg, tokens, n_tok);
    free(tokens);
    if (!t) return fprintf(stderr, "bnb-train: %s\n", bnb_last_error()), 1;
    const bnb_model_config *m = bnb_trainer_model_config(t);
    fprintf(stderr, "model: vocab %lld, dim %lld, ff %lld, layers %lld, heads %lld/%lld | %lld tokens | optim %s "
            "%d-bit, lr %g, batch %lld x seq %lld x accum %lld | %s\n", (long long)m->n_vocab, (long long)m->n_embd,
            (long long)m->n_ff, (long long)m->n_layer, (long long)m->n_head, (long long)m->n_head_kv,
            (long long)n_tok, bnb_optim_type_name(cfg.optim), cfg.optim_bits, (double)cfg.lr, (long long)cfg.batch,
            (long long)cfg.seq, (long long)cfg.accum, bnb_backend_name(be));
    struct stat sb;
    if (resume && ckpt && stat(ckpt, &sb) == 0) {
        if (bnb_trainer_load(t, ckpt) != BNB_OK) return fprintf(stderr, "--resume: %s\n", bnb_last_error()), 1;
        fprintf(stderr, "resumed from %s at step %lld\n", ckpt, (long long)bnb_trainer_get_step(t));
    }
    FILE *log = NULL;
    if (log_path) {
        log = fopen(log_path, resume ? "a" : "w");
        if (log && ftell(log) == 0 && fseek(log, 0, SEEK_END) == 0 && ftell(log) == 0) /* new file: header */
            fprintf(log, "step,lr,train_loss,val_loss,tokens_per_s\n");
    }
    int64_t cap = cfg.steps + 2, n_tr = 0, n_va = 0;
    int64_t *tx = malloc((size_t)cap * sizeof(int64_t)), *vx = malloc((size_t)cap * sizeof(int64_t));
    float *ty = malloc((size_t)cap * sizeof(float)), *vy = malloc((size_t)cap * sizeof(float));
    double t0 = now_s(), tok_per_step = (double)(cfg.batch * cfg.seq * cfg.accum);
    int64_t first = bnb_trainer_get_step(t);
    float loss = NAN, val = NAN;
    int rc = 0;
    bool mem_printed = false;
    double t_after_first = 0;
    if (eval_every > 0 && first == 0 && bnb_trainer_eval(t, eval_batches, &val) == BNB_OK) {
        /* the starting point: for a fine-tune, the pretrained model's loss on this text (eval batches are fixed,
         * so this changes nothing in the run that follows) */
        vx[n_va] = 0, vy[n_va++] = val;
        fprintf(stderr, "validation loss before training: %.4f\n", val);
        if (log) fprintf(log, "0,0,nan,%.6f,0\n", val);
    }
    while (bnb_trainer_get_step(t) < cfg.steps) {
        int64_t s = bnb_trainer_get_step(t);
        float lr = bnb_trainer_get_lr(t, s);
        if (bnb_trainer_step(t, &loss) != BNB_OK) {
            fprintf(stderr, "\nstep %lld: %s\n", (long long)s, bnb_last_error());
            rc = 1;
            break;
        }
        s++;
        if (!mem_printed) print_memory(t, cfg.optim_bits, be), mem_printed = true, t_after_first = now_s();
        double el = now_s() - t0, tps = tok_per_step * (double)(s - first) / el;
        tx[n_tr] = s, ty[n_tr++] = loss;
        val = NAN;
        if (eval_every > 0 && (s % eval_every == 0 || s == cfg.steps) && bnb_trainer_eval(t, eval_batches, &val) == BNB_OK) {
            vx[n_va] = s, vy[n_va++] = val;
            if (!quiet) fprintf(stderr, "\nstep %lld: train loss %.4f, validation loss %.4f\n", (long long)s, loss, val);
        }
        if (log) fprintf(log, "%lld,%g,%.6f,%.6f,%.1f\n", (long long)s, (double)lr, loss, val, tps);
        if (!quiet) bnb_train_progress(s, cfg.steps, loss, tps, el, el * (double)(cfg.steps - s) / (double)(s - first));
        if (ckpt && ((ckpt_every > 0 && s % ckpt_every == 0) || s == cfg.steps) && bnb_trainer_save(t, ckpt) != BNB_OK) {
            fprintf(stderr, "\ncheckpoint: %s\n", bnb_last_error());
            rc = 1;
            break;
        }
    }
    double el = now_s() - t0;
    int64_t done = bnb_trainer_get_step(t) - first;
    fprintf(stderr, "done: %lld steps in %.1f s, %.0f tokens/s, final train loss %.4f", (long long)done, el,
            done > 0 ? tok_per_step * (double)done / el : 0.0, loss);
    if (n_va > 0) fprintf(stderr, ", validation loss %.4f", vy[n_va - 1]);
    if (done > 1 && t_after_first > 0) /* without the first step (planning, cuBLASLt heuristics, graph capture) */
        fprintf(stderr, "; steady state %.0f tokens/s", tok_per_step * (double)(done - 1) / (now_s() - t_after_first));
    fprintf(stderr, "\n");
    print_memory(t, cfg.optim_bits, be);
    if (log) fclose(log);
    if (plot && bnb_plot_loss_svg(plot, "bnb-train loss", tx, ty, n_tr, vx, vy, n_va) != BNB_OK)
        fprintf(stderr, "plot: %s\n", bnb_last_error());
    if (rc == 0 && export_path) {
        if (bnb_trainer_export(t, export_path, ew) != BNB_OK) {
            fprintf(stderr, "export: %s\n", bnb_last_error());
            rc = 1;
        } else {
            fprintf(stderr, "exported %s (%s weights)\n", export_path, export_w);
        }
    }
    free(tx), free(ty), free(vx), free(vy);
    bnb_trainer_free(t);
    bnb_backend_free(be);
    return rc;
}
