/* bench-int8: LLM.int8 matmul vs the float matmul of the same shape, timed in the same run.
 *  CPU: bnb_matmul_int8 (threshold 6, a few outlier columns, activation quantization included) vs bnb_mul_mat F32,
 *       on --threads N (default 2). Goal: int8 >= 2x faster.
 *  CUDA (when built with CUDA and a GPU is present): the five shapes of the LLM.int8 issue, int8 matmul (all fused
 *       passes) vs an fp16 cuBLASLt GEMM, CUDA events after warm-up (bench-int8-cuda.cu), with bitsandbytes' H100
 *       figures beside.
 * Options: --threads N, --quick (fewer shapes), --shape T,K,O (one CPU shape), --cpu-only, --gpu-only, --json FILE */
#include "common.h"

#include "bnb.h"

#include <math.h>

#ifdef BNB_HAVE_CUDA
int bench_int8_cuda(int quick, bench_json *js); /* bench-int8-cuda.cu */
#endif

typedef struct {
    bnb_backend *be;
    bnb_graph *g;
} run_arg;

static void run_graph(void *p) {
    run_arg *a = p;
    if (bnb_graph_compute(a->be, a->g) != BNB_OK) {
        fprintf(stderr, "compute failed: %s\n", bnb_last_error());
        exit(1);
    }
}

static unsigned long long g_rng = 88172645463325252ull;
static float frand(void) { /* xorshift, uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

/* Times one shape: returns 0 on success and fills the milliseconds (medians, and the best of the repeats). */
static int bench_cpu_shape(bnb_backend *be, int64_t T, int64_t K, int64_t O, double *ms_int8, double *ms_f32,
                           double best[2]) {
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, K, T);
    bnb_tensor *wf = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, K, O);
    bnb_tensor *wq = bnb_int8_new_weight(ctx, K, O);
    bnb_tensor *y8 = bnb_matmul_int8(ctx, x, wq, 6.f, NULL);
    bnb_tensor *yf = bnb_mul_mat(ctx, wf, x);
    bnb_graph *g8 = bnb_graph_new(ctx, 0), *gf = bnb_graph_new(ctx, 0);
    if (!y8 || !yf || bnb_graph_build(g8, y8) || bnb_graph_build(gf, yf)) {
        fprintf(stderr, "graph: %s\n", bnb_last_error());
        return 1;
    }
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    float *xv = malloc((size_t)(T * K) * 4), *wv = malloc((size_t)(K * O) * 4);
    if (!buf || !xv || !wv) return 1;
    for (int64_t i = 0; i < T * K; i++) xv[i] = frand() * 2.f;
    for (int64_t t = 0; t < T; t++) /* 4 outlier columns */
        for (int j = 0; j < 4; j++) xv[t * K + (j * 997 + 13) % K] = 20.f * frand() + 8.f;
    for (int64_t i = 0; i < K * O; i++) wv[i] = frand() * 0.05f;
    bnb_tensor_set_f32(x, xv, T * K);
    bnb_tensor_set_f32(wf, wv, K * O);
    bnb_int8_set_from(wq, BNB_TYPE_F32, wv, K * O);
    double flop = 2.0 * (double)T * K * O;
    int reps = flop > 2e10 ? 5 : flop > 1e9 ? 9 : 31;
    run_arg a8 = {be, g8}, af = {be, gf};
    /* interleaved repeats, so both see the same machine load; median and best */
    double t8[64], tf[64];
    run_graph(&a8);
    run_graph(&af);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        run_graph(&a8);
        t8[r] = bench_now() - t0;
        t0 = bench_now();
        run_graph(&af);
        tf[r] = bench_now() - t0;
    }
    best[0] = best[1] = 1e30;
    for (int r = 0; r < reps; r++) {
        best[0] = t8[r] < best[0] ? t8[r] : best[0];
        best[1] = tf[r] < best[1] ? tf[r] : best[1];
    }
    best[0] *= 1e3, best[1] *= 1e3;
    *ms_int8 = 1e3 * bench_median(t8, reps);
    *ms_f32 = 1e3 * bench_median(tf, reps);
    free(xv);
    free(wv);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    int threads = 2, quick = bench_has_flag(argc, argv, "--quick");
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    bench_json js;
    if (bench_json_open(&js, bench_json_path(argc, argv), "bench-int8")) return 1;
    bnb_backend *cpu = bnb_backend_cpu_new(threads);
    if (!cpu) return 1;
    const int64_t shapes[][3] = {{1, 4096, 4096}, {16, 4096, 4096}, {128, 4096, 4096}, {512, 4096, 4096},
                                 {512, 4096, 11008}, {97, 1000, 3001}};
    int n_shapes = bench_has_flag(argc, argv, "--gpu-only") ? 0 : quick ? 3 : (int)(sizeof shapes / sizeof shapes[0]);
    int64_t one[1][3];
    const int64_t(*list)[3] = shapes;
    for (int i = 1; i + 1 < argc; i++) /* --shape T,K,O: that CPU shape only */
        if (!strcmp(argv[i], "--shape")) {
            long long t, k, o;
            if (sscanf(argv[i + 1], "%lld,%lld,%lld", &t, &k, &o) != 3 || t < 1 || k < 1 || o < 1)
                return fprintf(stderr, "--shape wants T,K,O (positive)\n"), 1;
            one[0][0] = t, one[0][1] = k, one[0][2] = o;
            list = one, n_shapes = 1;
        }
    printf("CPU, %d threads: bnb_matmul_int8 (threshold 6, 4 outlier columns, x quantized in the op) vs "
           "bnb_mul_mat f32\n", threads);
    printf("%8s %6s %6s | %10s %9s | %10s %9s | %7s | %12s\n", "tokens", "in", "out", "int8 ms", "int8 GOPS",
           "f32 ms", "f32 GFLOPS", "speedup", "best-of speedup");
    for (int s = 0; s < n_shapes; s++) {
        const int64_t T = list[s][0], K = list[s][1], O = list[s][2];
        double m8, mf, best[2];
        if (bench_cpu_shape(cpu, T, K, O, &m8, &mf, best)) return 1;
        double ops = 2.0 * (double)T * K * O;
        printf("%8lld %6lld %6lld | %10.3f %9.1f | %10.3f %9.1f | %6.2fx | %11.2fx\n", (long long)T, (long long)K,
               (long long)O, m8, ops / m8 * 1e-6, mf, ops / mf * 1e-6, mf / m8, best[1] / best[0]);
        bench_json_row_begin(&js);
        bench_json_str(&js, "backend", "cpu");
        bench_json_int(&js, "threads", threads);
        bench_json_int(&js, "tokens", T);
        bench_json_int(&js, "in", K);
        bench_json_int(&js, "out", O);
        bench_json_num(&js, "int8_ms", m8);
        bench_json_num(&js, "f32_ms", mf);
        bench_json_num(&js, "speedup", mf / m8);
        bench_json_num(&js, "speedup_best", best[1] / best[0]);
        bench_json_row_end(&js);
    }
    bnb_backend_free(cpu);
#ifdef BNB_HAVE_CUDA
    if (!bench_has_flag(argc, argv, "--cpu-only")) {
        if (bnb_cuda_available()) {
            if (bench_int8_cuda(quick, &js)) return 1;
        } else {
            printf("CUDA: no device, GPU part skipped\n");
        }
    }
#endif
    bench_json_close(&js);
    return 0;
}
