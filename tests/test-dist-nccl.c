/* Data parallel over NCCL, one process per GPU (start with tools/bnb-train-dist.sh --gpus 2 ...; tests/gpu2.sh).
 * 1) F32: W ranks == one process with W x accumulation (losses and weights); 2) the same with ZeRO-1 (+ states split);
 * 3) Q8-compressed vs F32 gradients: loss after 200 steps within 1%; bytes sent per step per mode.
 * --bench: tokens/s of the "gpt2" preset, 1 GPU vs W GPUs (same per-GPU batch), table printed last by rank 0.
 * Exits 77 (skip) without CUDA, NCCL or a second rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bnb-model.h"

static int n_pass, n_fail, g_rank;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) n_pass++;                                                                                            \
        else {                                                                                                         \
            n_fail++;                                                                                                  \
            printf("[rank %d] FAIL line %d: ", g_rank, __LINE__);                                                     \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int32_t *make_tokens(int64_t n) {
    const char *text = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
                       "of foolishness, it was the epoch of belief, it was the epoch of incredulity. ";
    int32_t *t = malloc((size_t)n * 4);
    uint64_t s = 99;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (s >> 60) == 0 ? (int32_t)((s >> 33) % 256) : (unsigned char)text[i % strlen(text)];
    }
    return t;
}

static bnb_train_config base_config(bnb_backend *be, const char *preset, int64_t batch, int64_t seq, int64_t steps) {
    bnb_train_config c = bnb_train_default_config();
    bnb_train_preset(preset, &c.model);
    c.batch = batch;
    c.seq = seq;
    c.steps = steps;
    c.warmup = steps / 10 + 1;
    c.backend = be;
    return c;
}

static double weight_diff(bnb_trainer *a, bnb_trainer *b, const bnb_model_config *m) {
    const char *names[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "output_norm.weight"};
    int64_t ne[] = {m->n_embd * m->n_vocab, m->n_embd * m->n_head * m->head_dim, m->n_ff * m->n_embd, m->n_embd};
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        float *x = malloc((size_t)ne[k] * 4), *y = malloc((size_t)ne[k] * 4);
        if (bnb_trainer_get_weight(a, names[k], x, ne[k]) || bnb_trainer_get_weight(b, names[k], y, ne[k])) worst = INFINITY;
        else
            for (int64_t i = 0; i < ne[k]; i++) worst = fmax(worst, fabs((double)x[i] - y[i]));
        free(x), free(y);
    }
    return worst;
}

/* Equality with one process doing W x accumulation (rank 0 runs the reference after the distributed run). */
static void test_equal(bnb_dist_comm *comm, bnb_backend *be, const int32_t *tok, int64_t n, bool zero1) {
    int W = bnb_dist_world(comm);
    const int steps = 8;
    bnb_train_config c = base_config(be, "small", 4, 64, 100);
    bnb_dist_train_options o = {BNB_DIST_F32, zero1, 0};
    bnb_dist_trainer *d = bnb_dist_trainer_new(&c, tok, n, comm, o);
    CHECK(d != NULL, "dist trainer: %s", bnb_last_error());
    if (!d) return;
    float dl[steps];
    for (int s = 0; s < steps; s++) CHECK(bnb_dist_trainer_step(d, &dl[s]) == BNB_OK, "step: %s", bnb_last_error());
    double states = (double)bnb_dist_trainer_state_bytes(d);
    bnb_dist_allreduce_scalar(comm, &states);
    if (g_rank == 0) {
        c.accum = W;
        bnb_trainer *ref = bnb_trainer_new(&c, tok, n);
        CHECK(ref != NULL, "reference: %s", bnb_last_error());
        double worst = 0;
        for (int s = 0; s < steps && ref; s++) {
            float l = 0;
            bnb_trainer_step(ref, &l);
            worst = fmax(worst, fabs(l - dl[s]) / l);
        }
        double wd = ref ? weight_diff(ref, bnb_dist_trainer_base(d), &c.model) : INFINITY;
        printf("%s: %d GPUs vs 1 GPU x%d accumulation: loss rel diff %.2e, max weight diff %.2e, optimizer states "
               "%.0f bytes summed over ranks, rank 0 holds %zu\n", zero1 ? "zero1" : "f32", W, W, worst, wd, states,
               bnb_dist_trainer_state_bytes(d));
        CHECK(worst < 1e-4, "losses differ by %g", worst);
        CHECK(wd < 1e-4, "weights differ by %g", wd);
        bnb_trainer_free(ref);
    }
    bnb_dist_barrier(comm);
    bnb_dist_trainer_free(d);
}

/* loss after `steps` with each mode, bytes per step */
static void test_modes(bnb_dist_comm *comm, bnb_backend *be, const int32_t *tok, int64_t n, double *bytes_per_step,
                       float *final) {
    const int steps = 200;
    for (int m = 0; m <= BNB_DIST_Q8; m++) {
        bnb_train_config c = base_config(be, "small", 4, 64, steps);
        bnb_dist_train_options o = {(bnb_dist_mode)m, false, 0};
        bnb_dist_trainer *d = bnb_dist_trainer_new(&c, tok, n, comm, o);
        CHECK(d != NULL, "trainer %s: %s", bnb_dist_mode_name(o.mode), bnb_last_error());
        if (!d) return;
        uint64_t b0 = bnb_dist_bytes_sent(comm);
        double tail = 0;
        for (int s = 0; s < steps; s++) {
            float l = 0;
            if (bnb_dist_trainer_step(d, &l) != BNB_OK) {
                CHECK(0, "step %d: %s", s, bnb_last_error());
                break;
            }
            if (s >= steps - 20) tail += l / 20.0;
        }
        bytes_per_step[m] = (double)(bnb_dist_bytes_sent(comm) - b0) / steps;
        final[m] = (float)tail;
        bnb_dist_trainer_free(d);
    }
    double rel = fabs(final[BNB_DIST_Q8] - final[BNB_DIST_F32]) / final[BNB_DIST_F32];
    if (g_rank == 0)
        printf("loss (mean of last 20 of 200 steps): f32 %.4f bf16 %.4f q8 %.4f (q8 vs f32 %.2f%%)\n", final[0],
               final[1], final[2], 100 * rel);
    CHECK(rel < 0.01, "q8 loss %.4f vs f32 %.4f", final[2], final[0]);
    CHECK(bytes_per_step[2] < bytes_per_step[0] / 3.0, "q8 should send < 1/3 of f32's bytes");
}

static double bench(bnb_dist_comm *comm, bnb_backend *be, const int32_t *tok, int64_t n, bool single) {
    bnb_train_config c = base_config(be, "gpt2", 8, 512, 1000);
    const int warm = 3, steps = 10;
    double tps = 0;
    if (single) { /* rank 0 alone, the plain trainer */
        if (g_rank == 0) {
            bnb_trainer *t = bnb_trainer_new(&c, tok, n);
            if (!t) {
                CHECK(0, "gpt2 trainer: %s", bnb_last_error());
            } else {
                double t0 = 0;
                for (int s = 0; s < warm + steps; s++) {
                    if (s == warm) t0 = now_s();
                    bnb_trainer_step(t, NULL);
                }
                tps = (double)c.batch * c.seq * steps / (now_s() - t0);
                bnb_trainer_free(t);
            }
        }
        bnb_dist_barrier(comm);
        return tps;
    }
    bnb_dist_train_options o = {BNB_DIST_F32, false, 0};
    bnb_dist_trainer *d = bnb_dist_trainer_new(&c, tok, n, comm, o);
    if (!d) {
        CHECK(0, "gpt2 dist trainer: %s", bnb_last_error());
        return 0;
    }
    double t0 = 0;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) {
            bnb_dist_barrier(comm);
            t0 = now_s();
        }
        bnb_dist_trainer_step(d, NULL);
    }
    tps = (double)c.batch * c.seq * steps * bnb_dist_world(comm) / (now_s() - t0);
    bnb_dist_trainer_free(d);
    return tps;
}

int main(int argc, char **argv) {
    bool do_bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
    const char *ws = getenv("WORLD_SIZE");
    if (!bnb_cuda_available() || !bnb_dist_nccl_available() || !ws || atoi(ws) < 2) {
        printf("test-dist-nccl: skipped (needs CUDA, libnccl.so.2 and WORLD_SIZE >= 2: run tools/bnb-train-dist.sh "
               "--gpus 2 %s)\n", argv[0]);
        return 77;
    }
    bnb_dist_comm *comm = bnb_dist_comm_from_env();
    if (!comm) {
        printf("test-dist-nccl: communicator: %s\n", bnb_last_error());
        return bnb_last_status() == BNB_ERR_NO_DEVICE ? 77 : 1;
    }
    g_rank = bnb_dist_rank(comm);
    bnb_backend *be = bnb_backend_cuda_new(bnb_dist_device(comm));
    int64_t n = 1 << 20;
    int32_t *tok = make_tokens(n);
    if (!do_bench) {
        test_equal(comm, be, tok, n, false);
        test_equal(comm, be, tok, n, true);
        double bps[3] = {0, 0, 0};
        float fin[3] = {0, 0, 0};
        test_modes(comm, be, tok, n, bps, fin);
        if (g_rank == 0) {
            printf("\n| mode | bytes sent / step / rank | final loss |\n|---|---|---|\n");
            for (int m = 0; m < 3; m++)
                printf("| %s | %.3f MB | %.4f |\n", bnb_dist_mode_name((bnb_dist_mode)m), bps[m] / 1e6, fin[m]);
        }
    } else {
        double t1 = bench(comm, be, tok, n, true), tw = bench(comm, be, tok, n, false);
        if (g_rank == 0)
            printf("\n| gpt2 preset, batch 8 x 512 per GPU | tokens/s |\n|---|---|\n| 1 GPU | %.0f |\n| %d GPUs | %.0f "
                   "|\n| scaling | %.2fx (goal >= 1.85x) |\n", t1, bnb_dist_world(comm), tw, t1 > 0 ? tw / t1 : 0);
    }
    double fails = n_fail;
    bnb_dist_allreduce_scalar(comm, &fails);
    printf("[rank %d] test-dist-nccl: %d passed, %d failed\n", g_rank, n_pass, n_fail);
    free(tok);
    bnb_backend_free(be);
    bnb_dist_comm_free(comm);
    return fails > 0 ? 1 : 0;
}
