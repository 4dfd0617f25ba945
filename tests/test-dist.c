/* Distributed layer, CPU only (no NCCL needed): gradient bucketing, the 8-bit blockwise compression round trip and
 * compressed sum vs a float64 reference, ZeRO-1 partitioning, the file-based unique-id exchange, the communicator's
 * clear failure without NCCL/GPU, and the data-parallel trainer driven as 2 virtual ranks in one process (gradients
 * summed on the host) against a single trainer with 2x accumulation: F32 (equal), ZeRO-1 (equal, states split),
 * Q8 (close). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/dist/dist-impl.h"
#include "../src/train/train-impl.h"
#include "test-common.h"

static int n_pass, n_fail;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) n_pass++;                                                                                            \
        else {                                                                                                         \
            n_fail++;                                                                                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                               \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

static void test_buckets(void) {
    int64_t numel[7] = {1000, 10, 5000, 3000, 0, 7, 4096};
    bnb_dist_bucket b[7];
    size_t cap = 4 * 4100;
    int nb = bnb_dist_plan_buckets(numel, 7, 4, cap, b);
    CHECK(nb > 0 && nb <= 7, "bucket count %d", nb);
    int next = 6, seen = 0;
    for (int k = 0; k < nb; k++) {
        CHECK(b[k].first == next, "bucket %d starts at %d, expected %d (reverse order)", k, b[k].first, next);
        int64_t s = 0;
        for (int i = 0; i < b[k].count; i++) {
            CHECK(bnb_dist_bucket_offset(numel, &b[k], i) == s, "offset of member %d of bucket %d", i, k);
            s += numel[b[k].first - i];
        }
        CHECK(s == b[k].numel, "bucket %d numel %lld vs %lld", k, (long long)b[k].numel, (long long)s);
        CHECK(b[k].count == 1 || (size_t)s * 4 <= cap, "bucket %d over cap with %d tensors", k, b[k].count);
        /* greedy: the next tensor would not have fit */
        if (k + 1 < nb) CHECK((size_t)(s + numel[b[k + 1].first]) * 4 > cap, "bucket %d could take one more", k);
        next -= b[k].count;
        seen += b[k].count;
    }
    CHECK(seen == 7 && next == -1, "buckets cover %d tensors", seen);
    CHECK(bnb_dist_plan_buckets(NULL, 3, 4, cap, b) == -1, "NULL numel accepted");
    /* a huge cap: one bucket */
    CHECK(bnb_dist_plan_buckets(numel, 7, 4, (size_t)1 << 40, b) == 1 && b[0].count == 7, "one big bucket");
}

/* nearest value of the map to v by float64 search */
static double nearest_map(const float *map, double v) {
    double best = map[0];
    for (int i = 1; i < 256; i++)
        if (fabs(map[i] - v) < fabs(best - v)) best = map[i];
    return best;
}

static void test_compress(void) {
    const float *map = bnb_dist_q8_map();
    int sorted = 1;
    for (int i = 1; i < 256; i++) sorted &= map[i] > map[i - 1];
    CHECK(sorted && map[255] == 1.0f && map[0] < -0.99f && map[0] >= -1.0f, "dynamic signed map sorted, in [-1, 1]");
    tc_rng r;
    tc_rng_seed(&r, 7);
    int64_t n = 1000 + 3 * 256; /* partial last block */
    float *x = malloc(n * 4), *y = malloc(n * 4), *acc = calloc(n, 4), *absmax = malloc(n * 4);
    uint8_t *codes = malloc(n);
    double *ref = calloc(n, sizeof(double));
    int bad_code = 0, bad_abs = 0;
    double worst_rel = 0;
    for (int rank = 0; rank < 3; rank++) {
        for (int64_t i = 0; i < n; i++) x[i] = tc_rand_range(&r, -1, 1) * (float)pow(10.0, tc_rand_range(&r, -4, 0));
        x[5] = 0.0f;
        CHECK(bnb_dist_q8_compress(x, n, codes, absmax) == BNB_OK, "compress: %s", bnb_last_error());
        memset(y, 0, n * 4);
        bnb_dist_q8_decompress_add(codes, absmax, n, y);
        for (int64_t i = 0; i < n; i++) {
            int64_t b0 = i / 256 * 256, b1 = b0 + 256 < n ? b0 + 256 : n;
            double a = 0;
            for (int64_t k = b0; k < b1; k++) a = fmax(a, fabs((double)x[k]));
            if ((float)a != absmax[i / 256]) bad_abs++;
            double want = a > 0 ? nearest_map(map, (double)(x[i] * (1.0f / (float)a))) * a : 0;
            if (fabs(y[i] - want) > 1e-6 * a) bad_code++; /* nearest code (ties are measure-zero here) */
            double e = fabs((double)y[i] - x[i]) / (a > 0 ? a : 1);
            if (e > worst_rel) worst_rel = e;
            ref[i] += want;
        }
        bnb_dist_q8_decompress_add(codes, absmax, n, acc);
    }
    CHECK(bad_abs == 0, "%d wrong absmax", bad_abs);
    CHECK(bad_code == 0, "%d elements not at their nearest code", bad_code);
    CHECK(worst_rel < 0.02, "round-trip error %.4f of absmax", worst_rel);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(acc[i] - ref[i]));
    CHECK(worst < 1e-6, "3-rank compressed sum vs float64 %g", worst);
    CHECK(bnb_dist_q8_bytes(n) == (size_t)n + 4 * 7, "wire bytes %zu", bnb_dist_q8_bytes(n));
    x[3] = NAN;
    CHECK(bnb_dist_q8_compress(x, n, codes, absmax) == BNB_ERR_NUMERIC, "NaN must be rejected");
    bnb_dist_mode m;
    CHECK(bnb_dist_mode_parse("q8", &m) == BNB_OK && m == BNB_DIST_Q8 && bnb_dist_mode_parse("x", &m) != BNB_OK,
          "mode names");
    free(x), free(y), free(acc), free(absmax), free(codes), free(ref);
}

static void test_zero(void) {
    int64_t numel[9] = {100, 5000, 64, 4096, 4096, 12000, 7, 3000, 3000};
    int owner[9];
    int64_t load[3], total = 0, maxn = 0;
    CHECK(bnb_dist_zero_partition(numel, 9, 3, owner, load) == BNB_OK, "partition");
    int64_t sum = 0, lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 9; i++) total += numel[i], maxn = numel[i] > maxn ? numel[i] : maxn;
    for (int r = 0; r < 3; r++) sum += load[r], lo = load[r] < lo ? load[r] : lo, hi = load[r] > hi ? load[r] : hi;
    int64_t chk[3] = {0, 0, 0};
    for (int i = 0; i < 9; i++) {
        CHECK(owner[i] >= 0 && owner[i] < 3, "owner %d", owner[i]);
        chk[owner[i]] += numel[i];
    }
    CHECK(sum == total && chk[0] == load[0] && chk[1] == load[1] && chk[2] == load[2], "loads add up");
    CHECK(hi - lo <= maxn, "imbalance %lld > largest tensor", (long long)(hi - lo));
    CHECK(hi <= total / 3 + maxn, "max load %lld", (long long)hi);
    int o1[9];
    bnb_dist_zero_partition(numel, 9, 1, o1, NULL);
    int all0 = 1;
    for (int i = 0; i < 9; i++) all0 &= o1[i] == 0;
    CHECK(all0, "world 1 owns all");
    CHECK(bnb_dist_zero_partition(numel, 9, 0, owner, NULL) == BNB_ERR_INVALID_ARG, "world 0");
}

static void test_exchange(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bnb-test-dist-%ld.id", (long)getpid());
    unlink(path);
    unsigned char id[128];
    for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 1);
    pid_t pid = fork();
    if (pid == 0) { /* rank 1: polls */
        unsigned char got[128];
        bnb_status st = bnb_dist_exchange_file(path, 1, got, sizeof got, 10.0);
        _exit(st == BNB_OK && memcmp(got, id, 128) == 0 ? 0 : 1);
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK(bnb_dist_exchange_file(path, 0, id, sizeof id, 10.0) == BNB_OK, "rank 0 write: %s", bnb_last_error());
    int status = 1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "rank 1 read the id");
    unlink(path);
    unsigned char got[128];
    CHECK(bnb_dist_exchange_file(path, 1, got, sizeof got, 0.05) == BNB_ERR_IO, "missing file times out");
    if (!bnb_cuda_available() || !bnb_dist_nccl_available()) {
        bnb_dist_comm *c = bnb_dist_comm_new(0, 1, 0, path, 1.0);
        CHECK(!c && (bnb_last_status() == BNB_ERR_UNSUPPORTED || bnb_last_status() == BNB_ERR_NO_DEVICE),
              "comm without NCCL/GPU: %s", bnb_last_error());
        bnb_dist_comm_free(c);
    }
    CHECK(bnb_dist_comm_new(2, 2, 0, path, 1.0) == NULL && bnb_last_status() == BNB_ERR_INVALID_ARG, "rank 2 of 2");
}

/* ---- data-parallel trainer, 2 virtual ranks on the CPU */
#define STEPS 3
static bnb_train_config small_config(void) {
    bnb_train_config c = bnb_train_default_config();
    bnb_train_preset("tiny", &c.model);
    c.model.n_layer = 1;
    c.batch = 2;
    c.seq = 16;
    c.steps = 20;
    c.warmup = 2;
    c.n_threads = 1;
    c.val_fraction = 0.1f;
    return c;
}

static void host_sum_grads(bnb_dist_trainer **d, int W, bnb_dist_mode mode) {
    bnb_tensor **g[2];
    int n = 0;
    for (int r = 0; r < W; r++) n = bnb_dist_trainer_grads(d[r], &g[r], NULL, NULL);
    for (int i = 0; i < n; i++) {
        int64_t ne = bnb_nelements(g[0][i]);
        float *a = malloc(ne * 4), *s = calloc(ne, 4), *absmax = malloc(bnb_dist_q8_blocks(ne) * 4);
        uint8_t *codes = malloc(ne);
        for (int r = 0; r < W; r++) {
            bnb_tensor_get_f32(g[r][i], a, ne);
            if (mode == BNB_DIST_Q8) {
                bnb_dist_q8_compress(a, ne, codes, absmax);
                bnb_dist_q8_decompress_add(codes, absmax, ne, s);
            } else {
                for (int64_t k = 0; k < ne; k++) s[k] += a[k];
            }
        }
        for (int r = 0; r < W; r++) bnb_tensor_set_f32(g[r][i], s, ne);
        free(a), free(s), free(absmax), free(codes);
    }
    double tot = 0;
    for (int r = 0; r < W; r++) tot += *bnb_dist_trainer_loss_sum(d[r]);
    for (int r = 0; r < W; r++) *bnb_dist_trainer_loss_sum(d[r]) = tot;
}

static double max_weight_diff(bnb_trainer *a, bnb_trainer *b) {
    const char *names[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "output_norm.weight"};
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        int64_t n = 256 * 256;
        float *x = malloc(n * 4), *y = malloc(n * 4);
        bnb_tensor *t = NULL;
        (void)t;
        int64_t ne = strstr(names[k], "norm") ? 64 : strstr(names[k], "embd") ? 64 * 256 : strstr(names[k], "down") ? 192 * 64 : 64 * 64;
        if (bnb_trainer_get_weight(a, names[k], x, ne) != BNB_OK || bnb_trainer_get_weight(b, names[k], y, ne) != BNB_OK)
            worst = INFINITY;
        else
            for (int64_t i = 0; i < ne; i++) worst = fmax(worst, fabs((double)x[i] - y[i]));
        free(x), free(y);
    }
    return worst;
}

static void test_dp_trainer(void) {
    const char *text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the "
                       "slings and arrows of outrageous fortune, or to take arms against a sea of troubles. ";
    int64_t n = 4000;
    int32_t *tok = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) tok[i] = (unsigned char)text[i % strlen(text)];
    bnb_train_config c = small_config();
    c.accum = 2;
    bnb_trainer *ref = bnb_trainer_new(&c, tok, n);
    CHECK(ref != NULL, "reference trainer: %s", bnb_last_error());
    if (!ref) return;
    float ref_loss[STEPS];
    for (int s = 0; s < STEPS; s++) bnb_trainer_step(ref, &ref_loss[s]);
    size_t ref_states = bnb_optimizer_state_bytes(ref->opt);

    for (int variant = 0; variant < 4; variant++) { /* 0 F32, 1 ZeRO-1, 2 Q8, 3 world 1 with accum 2 */
        int W = variant == 3 ? 1 : 2;
        bnb_dist_train_options o = {variant == 2 ? BNB_DIST_Q8 : BNB_DIST_F32, variant == 1, 0};
        bnb_train_config cv = small_config();
        cv.accum = variant == 3 ? 2 : 1;
        bnb_dist_trainer *d[2] = {NULL, NULL};
        for (int r = 0; r < W; r++) d[r] = bnb_dist_trainer_new_virtual(&cv, tok, n, r, W, o);
        if (!d[0] || (W == 2 && !d[1])) {
            CHECK(0, "variant %d: %s", variant, bnb_last_error());
            break;
        }
        double worst_loss = 0;
        for (int s = 0; s < STEPS; s++) {
            for (int r = 0; r < W; r++) bnb_dist_trainer_local(d[r]);
            if (W > 1) host_sum_grads(d, W, o.mode);
            float l = 0;
            for (int r = 0; r < W; r++) CHECK(bnb_dist_trainer_apply(d[r], &l) == BNB_OK, "apply: %s", bnb_last_error());
            if (o.zero1) { /* the broadcast from owners, by hand */
                bnb_tensor **p[2];
                const int *own;
                int np = bnb_dist_trainer_grads(d[0], NULL, &p[0], &own);
                bnb_dist_trainer_grads(d[1], NULL, &p[1], NULL);
                for (int i = 0; i < np; i++) {
                    size_t nbytes = bnb_nbytes(p[0][i]);
                    void *buf = malloc(nbytes);
                    bnb_tensor_get(p[own[i]][i], buf, 0, nbytes);
                    bnb_tensor_set(p[1 - own[i]][i], buf, 0, nbytes);
                    free(buf);
                }
            }
            worst_loss = fmax(worst_loss, fabs(l - ref_loss[s]) / ref_loss[s]);
        }
        double wd = max_weight_diff(ref, bnb_dist_trainer_base(d[0]));
        double wd1 = W > 1 ? max_weight_diff(bnb_dist_trainer_base(d[0]), bnb_dist_trainer_base(d[1])) : 0;
        printf("  dp variant %d (%s%s, world %d): loss rel diff %.2e, weights vs 1-process %.2e, rank0 vs rank1 %.2e\n",
               variant, bnb_dist_mode_name(o.mode), o.zero1 ? " zero1" : "", W, worst_loss, wd, wd1);
        CHECK(wd1 == 0, "ranks diverged (%g)", wd1);
        if (variant == 2) {
            CHECK(worst_loss < 0.01, "q8 loss differs by %g", worst_loss);
            CHECK(wd < 1e-2, "q8 weights differ by %g", wd);
        } else {
            CHECK(worst_loss < 1e-5, "variant %d loss differs by %g", variant, worst_loss);
            CHECK(wd < 1e-5, "variant %d weights differ by %g", variant, wd);
        }
        if (variant == 1) {
            size_t s0 = bnb_dist_trainer_state_bytes(d[0]), s1 = bnb_dist_trainer_state_bytes(d[1]);
            printf("  zero1 states: rank0 %zu + rank1 %zu bytes vs one process %zu\n", s0, s1, ref_states);
            CHECK(s0 + s1 == ref_states && s0 < ref_states && s1 < ref_states, "states not split");
        }
        for (int r = 0; r < W; r++) bnb_dist_trainer_free(d[r]);
    }
    bnb_trainer_free(ref);
    free(tok);
}

int main(void) {
    test_buckets();
    test_compress();
    test_zero();
    test_exchange();
    test_dp_trainer();
    printf("test-dist: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
