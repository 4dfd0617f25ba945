/* bench-matmul: F32 bnb_mul_mat GFLOP/s on the CPU backend (public API: graph + bnb_graph_compute), at 512^3,
 * 1024^3 and 2048^3 on 1 and 2 threads, against
 *   - the machine's F32 peak, measured with an FMA-throughput loop (the formula estimate is printed too),
 *   - a naive triple loop (512 and 1024 only), whose result also checks the kernel (max error / max |ref|);
 *     2048 is checked on sampled entries against double-precision dot products.
 * Usage: bench-matmul [--json FILE] [--quick] */
#include "common.h"

#include <bnb.h>

#include <math.h>
#include <stdint.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- peak */
#if defined(__AVX512F__)
#define LANES 16
#define VEC __m512
#define VSET(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSUM(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 8
#define VEC __m256
#define VSET(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float vsum8(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#define VSUM(v) vsum8(v)
#else
#define LANES 1
#define VEC float
#define VSET(x) (x)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VSUM(v) (v)
#endif

/* 16 independent FMA chains (enough to cover latency x ports); returns a value so nothing is optimized out. */
static float fma_loop(long iters) {
    VEC x = VSET(0.999999f), y = VSET(1e-7f);
    VEC c0 = VSET(1.f), c1 = VSET(1.1f), c2 = VSET(1.2f), c3 = VSET(1.3f), c4 = VSET(1.4f), c5 = VSET(1.5f);
    VEC c6 = VSET(1.6f), c7 = VSET(1.7f), c8 = VSET(1.8f), c9 = VSET(1.9f), c10 = VSET(2.f), c11 = VSET(2.1f);
    VEC c12 = VSET(2.2f), c13 = VSET(2.3f), c14 = VSET(2.4f), c15 = VSET(2.5f);
    for (long i = 0; i < iters; i++) {
        c0 = VFMA(c0, x, y), c1 = VFMA(c1, x, y), c2 = VFMA(c2, x, y), c3 = VFMA(c3, x, y);
        c4 = VFMA(c4, x, y), c5 = VFMA(c5, x, y), c6 = VFMA(c6, x, y), c7 = VFMA(c7, x, y);
        c8 = VFMA(c8, x, y), c9 = VFMA(c9, x, y), c10 = VFMA(c10, x, y), c11 = VFMA(c11, x, y);
        c12 = VFMA(c12, x, y), c13 = VFMA(c13, x, y), c14 = VFMA(c14, x, y), c15 = VFMA(c15, x, y);
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3)); /* keep the chains independent & live */
    }
    return VSUM(c0) + VSUM(c1) + VSUM(c2) + VSUM(c3) + VSUM(c4) + VSUM(c5) + VSUM(c6) + VSUM(c7) + VSUM(c8) +
           VSUM(c9) + VSUM(c10) + VSUM(c11) + VSUM(c12) + VSUM(c13) + VSUM(c14) + VSUM(c15);
}

static volatile float g_sink;

/* Measured F32 GFLOP/s of nt threads each running the FMA loop: best of 5 (other load only lowers it). */
static double measure_peak(int nt) {
    const long iters = 20000000;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
        {
            float s = fma_loop(iters);
            if (s == 12345.f) g_sink = s;
        }
        const double t = bench_now() - t0;
        if (t < best) best = t;
    }
    return (double)nt * iters * 16.0 * LANES * 2.0 / best * 1e-9;
}

static double cpu_mhz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[256];
    double mhz = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "cpu MHz", 7) == 0) {
            const char *p = strchr(line, ':');
            if (p) mhz = atof(p + 1);
            break;
        }
    fclose(f);
    return mhz;
}

/* ---------------------------------------------------------------- data and references */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* out[n][m] = sum_k a[m][k] * b[n][k]: the plain triple loop, single-threaded */
static void naive_matmul(const float *a, const float *b, float *out, int M, int N, int K) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            float s = 0.f;
            for (int k = 0; k < K; k++) s += a[(size_t)m * K + k] * b[(size_t)n * K + k];
            out[(size_t)n * M + m] = s;
        }
}

/* ---------------------------------------------------------------- one size */
typedef struct {
    bnb_backend *be;
    bnb_graph *g;
    int ok;
} compute_arg;

static void compute_once(void *p) {
    compute_arg *c = p;
    if (bnb_graph_compute(c->be, c->g) != BNB_OK) c->ok = 0;
}

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        if (!(x)) {                                                                                                    \
            fprintf(stderr, "bench-matmul: %s failed: %s\n", #x, bnb_last_error());                                    \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

int main(int argc, char **argv) {
    const int quick = bench_has_flag(argc, argv, "--quick");
    bench_json js;
    if (bench_json_open(&js, bench_json_path(argc, argv), "bench-matmul") != 0) return 1;

    const int threads[] = {1, 2};
    const int sizes[] = {512, 1024, 2048};
    const int n_sizes = quick ? 2 : 3;

    /* peak: measured per thread count, and the formula with 2 FMA units per core */
    double peak[3] = {0};
    const double mhz = cpu_mhz();
    for (int t = 0; t < 2; t++) peak[threads[t]] = measure_peak(threads[t]);
    printf("F32 peak, measured with an FMA loop: 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n", peak[1], peak[2]);
    printf("F32 peak, formula: cores x %d lanes x 2 (FMA) x 2 FMA units x %.0f MHz = %.1f GFLOP/s per core "
           "(measured/formula per core: %.2f)\n",
           LANES, mhz, LANES * 2.0 * 2.0 * mhz * 1e-3, peak[1] / (LANES * 4.0 * mhz * 1e-3));
    printf("\n%-6s %-7s %9s %8s %10s %9s %12s\n", "size", "threads", "GFLOP/s", "% peak", "ms", "vs naive",
           "max rel err");

    for (int si = 0; si < n_sizes; si++) {
        const int S = sizes[si], M = S, N = S, K = S;
        const double flops = 2.0 * M * N * K;
        float *ha = malloc(sizeof(float) * (size_t)M * K), *hb = malloc(sizeof(float) * (size_t)N * K);
        float *hout = malloc(sizeof(float) * (size_t)M * N), *href = NULL;
        CHECK(ha && hb && hout);
        for (size_t i = 0; i < (size_t)M * K; i++) ha[i] = frand();
        for (size_t i = 0; i < (size_t)N * K; i++) hb[i] = frand();

        double naive_s = 0;
        if (S <= 1024) {
            href = malloc(sizeof(float) * (size_t)M * N);
            CHECK(href);
            double t0 = bench_now();
            naive_matmul(ha, hb, href, M, N, K);
            naive_s = bench_now() - t0;
        }

        for (int ti = 0; ti < 2; ti++) {
            const int nt = threads[ti];
            bnb_backend *be = bnb_backend_cpu_new(nt);
            CHECK(be);
            bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
            CHECK(ctx);
            bnb_tensor *a = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, K, M);
            bnb_tensor *b = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, K, N);
            bnb_tensor *out = bnb_mul_mat(ctx, a, b);
            CHECK(out);
            bnb_graph *g = bnb_graph_new(ctx, 0);
            CHECK(g && bnb_graph_build(g, out) == BNB_OK);
            bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
            CHECK(buf);
            CHECK(bnb_tensor_set_f32(a, ha, (int64_t)M * K) == BNB_OK);
            CHECK(bnb_tensor_set_f32(b, hb, (int64_t)N * K) == BNB_OK);

            compute_arg arg = {be, g, 1};
            const int reps = quick ? 3 : (S <= 512 ? 60 : S <= 1024 ? 30 : 9);
            const double sec = bench_time_median(compute_once, &arg, 1, reps);
            CHECK(arg.ok);
            CHECK(bnb_tensor_get_f32(out, hout, (int64_t)M * N) == BNB_OK);

            /* error: max |out - ref| / max |ref|; ref = naive loop, or sampled double dots at 2048 */
            double max_err = 0, max_ref = 0;
            if (href) {
                for (size_t i = 0; i < (size_t)M * N; i++) {
                    max_err = fmax(max_err, fabs((double)hout[i] - href[i]));
                    max_ref = fmax(max_ref, fabs((double)href[i]));
                }
            } else {
                for (int s = 0; s < 4096; s++) {
                    int n = (int)((frand() + 1.f) * 0.5f * N) % N, m = (int)((frand() + 1.f) * 0.5f * M) % M;
                    double ref = 0;
                    for (int k = 0; k < K; k++) ref += (double)ha[(size_t)m * K + k] * hb[(size_t)n * K + k];
                    max_err = fmax(max_err, fabs(hout[(size_t)n * M + m] - ref));
                    max_ref = fmax(max_ref, fabs(ref));
                }
            }
            const double rel = max_ref > 0 ? max_err / max_ref : max_err;
            const double gflops = flops / sec * 1e-9;
            const double pct = 100.0 * gflops / peak[nt];
            const double speedup = naive_s > 0 ? naive_s / sec : 0;
            char sp[32] = "-";
            if (naive_s > 0) snprintf(sp, sizeof sp, "%.0fx", speedup);
            printf("%-6d %-7d %9.1f %7.1f%% %10.2f %9s %12.2e%s\n", S, nt, gflops, pct, sec * 1e3, sp, rel,
                   rel > 1e-4 ? "  WRONG" : "");
            fflush(stdout);

            bench_json_row_begin(&js);
            bench_json_int(&js, "size", S);
            bench_json_int(&js, "threads", nt);
            bench_json_num(&js, "gflops", gflops);
            bench_json_num(&js, "pct_peak", pct);
            bench_json_num(&js, "peak_gflops", peak[nt]);
            bench_json_num(&js, "ms", sec * 1e3);
            bench_json_num(&js, "naive_ms", naive_s > 0 ? naive_s * 1e3 : NAN);
            bench_json_num(&js, "speedup_vs_naive", naive_s > 0 ? speedup : NAN);
            bench_json_num(&js, "max_rel_err", rel);
            bench_json_row_end(&js);

            bnb_buffer_free(buf);
            bnb_context_free(ctx);
            bnb_backend_free(be);
            if (rel > 1e-4) {
                fprintf(stderr, "bench-matmul: result differs from the reference (%.3g)\n", rel);
                return 1;
            }
        }
        free(ha);
        free(hb);
        free(hout);
        free(href);
    }
    bench_json_close(&js);
    return 0;
}
