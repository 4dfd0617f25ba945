/* bench-optim: fused optimizer updates (one graph compute = one step of bnb_optimizer_step's nodes).
 * CPU: update GB/s vs a 2-thread memcpy (goal >= 50%). CUDA (when present): one 256M-element fp32 parameter,
 * Adam8bit / Lion8bit / Adam32 ms per step (CUDA events after warm-up) vs goals and vs a D2D copy measured in the
 * same run, and 1000 tensors x 64K elements (multi-tensor launches) vs one tensor of the same total size.
 * Options: --quick (smaller sizes), --gpu-only (skip the CPU part), --only8 (CUDA: 8-bit cases only), --json FILE,
 * --variants A,B,... (CUDA 8-bit Adam cases: timed once per value of BNB_OPT8_B, in this order, same setup; e.g.
 * 1,0,1: k_upd8b, the previous kernels, k_upd8b again; see src/cuda/optim-bulk.cuh). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "bnb.h"
#include "common.h"

#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef BNB_HAVE_CUDA
#include "cuda/backend-cuda.h"
#include <cuda_runtime_api.h>

#include "cuda-bench.h"
#endif

typedef struct {
    bnb_backend *be;
    bnb_context *ctx;
    bnb_buffer *buf;
    bnb_graph *g;
    bnb_optimizer *opt;
} setup;

/* Bytes moved per element by one update (param f32, grad f32). */
static double bytes_per_elem(bnb_optim_type type, int bits) {
    int nst = type == BNB_OPTIM_ADAM || type == BNB_OPTIM_ADAMW || type == BNB_OPTIM_LAMB ? 2 : 1;
    double state = bits == 32 ? 8.0 : 2.0 + 8.0 / 256; /* read + write, absmax */
    return 4 + 4 + 4 + nst * state;                       /* p read, g read, p write, states */
}

static bool make_setup(setup *s, bnb_backend *be, bnb_optim_type type, int bits, int n_tensors, int64_t n_each) {
    memset(s, 0, sizeof *s);
    s->be = be;
    /* the optimizer adds per parameter an update node, its states, hyper, history and clip tensors: room for 16 */
    s->ctx = bnb_context_new((bnb_context_params){(size_t)n_tensors * 16384 + (4 << 20), true});
    s->g = bnb_graph_new(s->ctx, (size_t)n_tensors * 16 + 256);
    bnb_tensor **ps = malloc((size_t)n_tensors * sizeof *ps);
    for (int i = 0; i < n_tensors; i++) {
        ps[i] = bnb_set_param(bnb_new_tensor_1d(s->ctx, BNB_TYPE_F32, n_each));
        snprintf(ps[i]->name, sizeof ps[i]->name, "p%d", i);
        ps[i]->grad = bnb_set_input(bnb_new_tensor_1d(s->ctx, BNB_TYPE_F32, n_each));
    }
    s->buf = bnb_backend_alloc_tensors(be, s->ctx);
    if (!s->buf) {
        free(ps);
        return false;
    }
    /* values: a 1M-element random pattern repeated */
    int64_t pat = n_each < (1 << 20) ? n_each : (1 << 20);
    float *h = malloc((size_t)n_each * sizeof(float));
    uint64_t r = 12345;
    for (int64_t i = 0; i < pat; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = ((float)(r >> 40) / (float)(1 << 24) - 0.5f) * 0.02f;
    }
    for (int64_t i = pat; i < n_each; i++) h[i] = h[i % pat];
    for (int i = 0; i < n_tensors; i++) {
        bnb_tensor_set_f32(ps[i], h, n_each);
        bnb_tensor_set_f32(ps[i]->grad, h, n_each);
        bnb_graph_build(s->g, ps[i]);
    }
    free(h);
    free(ps);
    bnb_optim_config cfg = bnb_optim_default_config(type);
    cfg.optim_bits = bits;
    s->opt = bnb_optimizer_new(type, cfg);
    return s->opt && bnb_optimizer_step(s->opt, s->ctx, s->g) == BNB_OK;
}

static void free_setup(setup *s) {
    bnb_optimizer_free(s->opt);
    bnb_buffer_free(s->buf);
    bnb_context_free(s->ctx);
}

static void compute_fn(void *arg) {
    setup *s = arg;
    if (bnb_graph_compute(s->be, s->g) != BNB_OK) fprintf(stderr, "compute failed: %s\n", bnb_last_error());
}

typedef struct {
    char *dst, *src;
    size_t n;
    int threads;
} copy_arg;

static void memcpy_fn(void *arg) {
    copy_arg *c = arg;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int t = 0; t < c->threads; t++) {
        size_t chunk = c->n / (size_t)c->threads, off = (size_t)t * chunk;
        memcpy(c->dst + off, c->src + off, t == c->threads - 1 ? c->n - off : chunk);
    }
}

static void bench_cpu(bench_json *js, int quick) {
    const int threads = 2;
    const int64_t n = quick ? (4 << 20) : (16 << 20);
    bnb_backend *cpu = bnb_backend_cpu_new(threads);
    copy_arg ca = {malloc((size_t)n * 16), malloc((size_t)n * 16), (size_t)n * 16, threads};
    memset(ca.src, 1, ca.n);
    memset(ca.dst, 0, ca.n);
    double tc = bench_time_median(memcpy_fn, &ca, 2, 7), copy_gbs = 2.0 * (double)ca.n / tc / 1e9;
    printf("CPU, %d threads, %lld-element f32 parameter; memcpy %.1f GB/s (read + write)\n", threads, (long long)n, copy_gbs);
    printf("  %-10s %5s %10s %10s %8s %6s\n", "optimizer", "bits", "ms/step", "GB/s", "% copy", "goal");
    const struct {
        bnb_optim_type type;
        int bits;
    } cases[] = {{BNB_OPTIM_ADAM, 32}, {BNB_OPTIM_ADAM, 8}, {BNB_OPTIM_LION, 32}, {BNB_OPTIM_LION, 8},
                 {BNB_OPTIM_MOMENTUM, 32}, {BNB_OPTIM_ADEMAMIX, 8}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup s;
        if (!make_setup(&s, cpu, cases[i].type, cases[i].bits, 1, n)) {
            printf("  setup failed: %s\n", bnb_last_error());
            continue;
        }
        double t = bench_time_median(compute_fn, &s, 2, 7);
        double bpe = bytes_per_elem(cases[i].type, cases[i].bits) + (cases[i].type == BNB_OPTIM_ADEMAMIX ? (cases[i].bits == 32 ? 8 : 2) : 0);
        double gbs = bpe * (double)n / t / 1e9, pct = 100 * gbs / copy_gbs;
        printf("  %-10s %5d %10.2f %10.1f %7.0f%% %5s\n", bnb_optim_type_name(cases[i].type), cases[i].bits, t * 1e3, gbs,
               pct, pct >= 50 ? "ok" : "MISS");
        bench_json_row_begin(js);
        bench_json_str(js, "device", "cpu");
        bench_json_str(js, "optimizer", bnb_optim_type_name(cases[i].type));
        bench_json_int(js, "bits", cases[i].bits);
        bench_json_int(js, "threads", threads);
        bench_json_int(js, "elements", n);
        bench_json_num(js, "ms_per_step", t * 1e3);
        bench_json_num(js, "gb_per_s", gbs);
        bench_json_num(js, "memcpy_gb_per_s", copy_gbs);
        bench_json_num(js, "pct_of_memcpy", pct);
        bench_json_row_end(js);
        free_setup(&s);
    }
    free(ca.dst);
    free(ca.src);
    bnb_backend_free(cpu);
}

#ifdef BNB_HAVE_CUDA
/* ms per compute: reps back-to-back computes between two CUDA events after warm-up, averaged. Not the per-call
 * median of cuda-bench.h: that one also counts the host's work per step (graph walk, descriptors), which back-to-back
 * launches hide behind the previous step's kernels (H100, 1000 x 64K Adam32: 0.94 ms per call vs 0.70 back to back). */
static double cuda_ms(setup *s, int reps) {
    cudaStream_t st = bnb_cuda_stream(s->be);
    for (int i = 0; i < 3; i++) compute_fn(s);
    bnb_backend_synchronize(s->be);
    cudaEvent_t a, b;
    BENCH_CUDA_CHECK(cudaEventCreate(&a));
    BENCH_CUDA_CHECK(cudaEventCreate(&b));
    BENCH_CUDA_CHECK(cudaEventRecord(a, st));
    for (int i = 0; i < reps; i++) compute_fn(s);
    BENCH_CUDA_CHECK(cudaEventRecord(b, st));
    BENCH_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / reps;
}

/* D2D copy bandwidth (read + write) of `bytes`, measured the same way (cuda-bench.h). */
static double cuda_copy_gbs(bnb_backend *be, size_t bytes) {
    return 2.0 * (double)bytes / (bench_cuda_copy_ms(bnb_cuda_stream(be), bytes, 10) * 1e-3) / 1e9;
}

/* The --variants list: up to 8 values of BNB_OPT8_B (none: one timing with the environment as it is). */
typedef struct {
    int n;
    char v[8][8];
} opt8_variants;
static opt8_variants parse_variants(int argc, char **argv) {
    opt8_variants r = {0};
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--variants") != 0) continue;
        const char *p = argv[i + 1];
        while (*p && r.n < 8) {
            size_t len = strcspn(p, ",");
            snprintf(r.v[r.n++], sizeof r.v[0], "%.*s", (int)(len < 7 ? len : 7), p);
            p += len + (p[len] == ',');
        }
    }
    return r;
}
/* Times s with each variant (8-bit Adam only); returns the first timing; ms[k] per variant. */
static double cuda_ms_variants(setup *s, int reps, const opt8_variants *vs, bool adam8, double *ms) {
    if (!adam8 || vs->n == 0) return ms[0] = cuda_ms(s, reps);
    const char *old = getenv("BNB_OPT8_B");
    char keep[16] = "";
    if (old) snprintf(keep, sizeof keep, "%s", old);
    for (int k = 0; k < vs->n; k++) {
        setenv("BNB_OPT8_B", vs->v[k], 1);
        /* the CUDA graph captured before holds the previous kernel: drop it (a compute without capture), capture anew */
        bnb_backend_set_graph_capture(s->be, false);
        compute_fn(s);
        bnb_backend_set_graph_capture(s->be, true);
        ms[k] = cuda_ms(s, reps);
    }
    if (old) setenv("BNB_OPT8_B", keep, 1);
    else unsetenv("BNB_OPT8_B");
    return ms[0];
}

static void bench_cuda(bench_json *js, int quick, int only8, const opt8_variants *vs) {
    bnb_backend *be = bnb_backend_cuda_new(0);
    if (!be) return;
    const int64_t n = quick ? (32 << 20) : (256 << 20);
    double copy = cuda_copy_gbs(be, (size_t)1 << 30);
    printf("\nCUDA, one %lld-element f32 parameter; D2D copy %.0f GB/s (read + write, same run)\n", (long long)n, copy);
    printf("  %-10s %5s %9s %8s %8s %9s %14s\n", "optimizer", "bits", "ms/step", "GB/s", "% copy", "goal ms", "bitsandbytes");
    const struct {
        bnb_optim_type type;
        int bits;
        double goal, bnb;
    } cases[] = {{BNB_OPTIM_ADAM, 8, 1.8, 7.68}, {BNB_OPTIM_LION, 8, 1.6, 4.56}, {BNB_OPTIM_ADAM, 32, 3.0, 3.55}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only8 && cases[i].bits != 8) continue;
        setup s;
        if (!make_setup(&s, be, cases[i].type, cases[i].bits, 1, n)) {
            printf("  setup failed: %s\n", bnb_last_error());
            continue;
        }
        const bool adam8 = cases[i].type == BNB_OPTIM_ADAM && cases[i].bits == 8;
        double vms[8];
        double ms = cuda_ms_variants(&s, 20, vs, adam8, vms);
        double gbs = bytes_per_elem(cases[i].type, cases[i].bits) * (double)n / (ms * 1e-3) / 1e9;
        for (int k = 0; adam8 && k < vs->n; k++)
            printf("    BNB_OPT8_B=%-3s %9.3f ms %7.0f%% copy\n", vs->v[k], vms[k],
                   100 * bytes_per_elem(cases[i].type, 8) * (double)n / (vms[k] * 1e-3) / 1e9 / copy);
        double goal = cases[i].goal * (double)n / (256.0 * (1 << 20));
        printf("  %-10s %5d %9.3f %8.0f %7.0f%% %8.2f%s %10.2f ms\n", bnb_optim_type_name(cases[i].type), cases[i].bits, ms,
               gbs, 100 * gbs / copy, goal, ms <= goal ? " " : "!", cases[i].bnb);
        printf("headline: %s%d %lldM: %.3f ms/step (goal %.2f, bitsandbytes %.2f), %.0f%% of D2D copy\n",
               bnb_optim_type_name(cases[i].type), cases[i].bits, (long long)(n >> 20), ms, goal, cases[i].bnb, 100 * gbs / copy);
        bench_json_row_begin(js);
        bench_json_str(js, "device", "cuda");
        bench_json_str(js, "optimizer", bnb_optim_type_name(cases[i].type));
        bench_json_int(js, "bits", cases[i].bits);
        bench_json_int(js, "elements", n);
        bench_json_num(js, "ms_per_step", ms);
        bench_json_num(js, "gb_per_s", gbs);
        bench_json_num(js, "copy_gb_per_s", copy);
        bench_json_num(js, "goal_ms", goal);
        bench_json_num(js, "bitsandbytes_ms", cases[i].bnb);
        bench_json_row_end(js);
        free_setup(&s);
    }
    /* multi-tensor: 1000 x 64K vs one tensor of the same size */
    const int nt = quick ? 200 : 1000;
    const int64_t each = 64 * 1024;
    printf("\nCUDA multi-tensor: %d tensors x %lld elements vs one tensor of %lld (goal <= 1.3x)\n", nt, (long long)each,
           (long long)(nt * each));
    for (int bits = only8 ? 8 : 32; bits >= 8; bits -= 24) {
        setup many, one;
        if (!make_setup(&many, be, BNB_OPTIM_ADAM, bits, nt, each) || !make_setup(&one, be, BNB_OPTIM_ADAM, bits, 1, nt * each)) {
            printf("  setup failed: %s\n", bnb_last_error());
            return;
        }
        double vmany[8], vone[8];
        double ms_many = cuda_ms_variants(&many, 20, vs, bits == 8, vmany), ms_one = cuda_ms_variants(&one, 20, vs, bits == 8, vone);
        for (int k = 0; bits == 8 && k < vs->n; k++)
            printf("    BNB_OPT8_B=%-3s %d tensors %.3f ms, one tensor %.3f ms, ratio %.2fx\n", vs->v[k], nt, vmany[k],
                   vone[k], vmany[k] / vone[k]);
        printf("  adam %2d-bit: %d tensors %.3f ms, one tensor %.3f ms, ratio %.2fx %s\n", bits, nt, ms_many, ms_one,
               ms_many / ms_one, ms_many / ms_one <= 1.3 ? "ok" : "MISS");
        printf("headline: multi-tensor adam%d %dx64K: %.2fx one tensor (goal <= 1.3)\n", bits, nt, ms_many / ms_one);
        bench_json_row_begin(js);
        bench_json_str(js, "device", "cuda");
        bench_json_str(js, "case", "multi_tensor");
        bench_json_int(js, "bits", bits);
        bench_json_int(js, "tensors", nt);
        bench_json_num(js, "ms_many", ms_many);
        bench_json_num(js, "ms_one", ms_one);
        bench_json_num(js, "ratio", ms_many / ms_one);
        bench_json_row_end(js);
        free_setup(&many);
        free_setup(&one);
    }
    bnb_backend_free(be);
}
#endif

int main(int argc, char **argv) {
    int quick = bench_has_flag(argc, argv, "--quick");
    bench_json js;
    bench_json_open(&js, bench_json_path(argc, argv), "bench-optim");
    if (!bench_has_flag(argc, argv, "--gpu-only")) bench_cpu(&js, quick);
#ifdef BNB_HAVE_CUDA
    if (bnb_cuda_available()) {
        const opt8_variants vs = parse_variants(argc, argv);
        bench_cuda(&js, quick, bench_has_flag(argc, argv, "--only8"), &vs);
    }
    else printf("\nCUDA: no device, GPU part skipped\n");
#endif
    bench_json_close(&js);
    return 0;
}
