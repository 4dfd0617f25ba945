/* bench-quant: blockwise quantization throughput against the copy bandwidth measured in the same run.
 *   CPU (2 threads): memcpy, 8-bit quantize/dequantize (f32, block 256 and 4096), NF4 quantize f16 block 64 and
 *                    dequantize; quantile estimate vs a full sort at 10M values.
 *   CUDA (when a GPU is there): D2D copy, 8-bit quantize f32 at block 4096/256/64, dequantize, NF4 quantize f16
 *                    block 64 and dequantize; kernels timed with CUDA events after warm-up (medians), each as GB/s
 *                    and % of copy, next to bitsandbytes' H100 figures from the issue.
 * GB/s counts bytes read + written (codes, scales, input/output). Lines starting with "headline:" go to tests/gpu.sh's
 * summary. Usage: bench-quant [--json FILE] [--quick] [--cpu-only | --cuda-only] */
#include "common.h"

#include "bnb.h"
#include "quant/quant.h"
#include "cpu/cpu-kernels.h"

#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef BNB_HAVE_CUDA
#include "cuda/backend-cuda.h"
#include <cuda_runtime_api.h>
#endif

static bench_json js;
static int quick;

#define BK(x)                                                                                                         \
    do {                                                                                                              \
        if (!(x)) {                                                                                                   \
            fprintf(stderr, "bench-quant: %s failed: %s\n", #x, bnb_last_error());                                    \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static void fill_normalish(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        /* sum of 4 uniforms: roughly normal, cheap */
        double u = (double)((s >> 11) & 0xffff) + (double)((s >> 27) & 0xffff) + (double)((s >> 43) & 0xffff) +
                   (double)(s & 0xffff);
        x[i] = (float)((u / 65536.0 - 2.0) * 1.7);
    }
}

static void row(const char *dev, const char *name, double ms, double gbs, double pct, double bnb_gbs) {
    if (bnb_gbs > 0)
        printf("%-5s %-36s %9.3f ms %9.1f GB/s %6.1f%% of copy   (bitsandbytes %6.0f GB/s)\n", dev, name, ms, gbs, pct,
               bnb_gbs);
    else
        printf("%-5s %-36s %9.3f ms %9.1f GB/s %6.1f%% of copy\n", dev, name, ms, gbs, pct);
    bench_json_row_begin(&js);
    bench_json_str(&js, "device", dev);
    bench_json_str(&js, "case", name);
    bench_json_num(&js, "ms", ms);
    bench_json_num(&js, "gbs", gbs);
    bench_json_num(&js, "pct_copy", pct);
    bench_json_row_end(&js);
}

/* ---------------------------------------------------------------------------------------------- a graph node */
typedef struct {
    bnb_context *ctx;
    bnb_graph *g;
    bnb_buffer *buf;
    bnb_tensor *node;
    bnb_backend *be;
    double bytes;
} qcase;

/* quantize (kind 0: 8-bit, 1: NF4) or dequantize (deq) of n values of xtype */
static qcase make_case(bnb_backend *be, int64_t n, bnb_type xtype, bool four, int block, bool deq, const float *host) {
    qcase c = {0};
    c.be = be;
    c.ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_new_tensor_1d(c.ctx, xtype, n);
    bnb_tensor *q = four ? bnb_quantize_4bit(c.ctx, x, BNB_TYPE_Q4_NF4, block, false)
                         : bnb_quantize_blockwise(c.ctx, x, BNB_QMAP_DYNAMIC_SIGNED, NULL, block, false);
    BK(q);
    bnb_tensor *d = four ? bnb_dequantize_4bit(c.ctx, q, xtype) : bnb_dequantize_blockwise(c.ctx, q, xtype);
    BK(d);
    c.g = bnb_graph_new(c.ctx, 8);
    BK(bnb_graph_build(c.g, q) == BNB_OK && bnb_graph_build(c.g, d) == BNB_OK);
    c.buf = bnb_backend_alloc_tensors(be, c.ctx);
    BK(c.buf);
    BK(bnb_tensor_set_f32(x, host, n) == BNB_OK);
    BK(bnb_graph_compute(be, c.g) == BNB_OK); /* plans, sizes scratch, fills q for the dequantize case */
    c.node = deq ? d : q;
    const double es = (double)bnb_type_size(xtype), nblk = (double)((n + block - 1) / block);
    c.bytes = es * (double)n + (four ? 0.5 : 1.0) * (double)n + 4.0 * nblk;
    return c;
}

static void free_case(qcase *c) {
    bnb_buffer_free(c->buf);
    bnb_context_free(c->ctx);
}

/* ---------------------------------------------------------------------------------------------- CPU */
typedef struct {
    bnb_cpu_ctx ctx;
    bnb_tensor *node;
    bool deq;
} cpu_arg;

/* the CPU kernel alone (the graph around it was planned and run once by make_case) */
static void cpu_node(void *p) {
    cpu_arg *a = p;
    BK((a->deq ? bnb_cpu_dequantize(&a->ctx, a->node) : bnb_cpu_quantize(&a->ctx, a->node)) == BNB_OK);
}

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
    int threads;
} memcpy_arg;
static void run_memcpy(void *p) {
    memcpy_arg *a = p;
#pragma omp parallel num_threads(a->threads)
    {
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        size_t chunk = (a->bytes / (size_t)nt + 63) & ~(size_t)63;
        size_t s = (size_t)t * chunk, e = s + chunk < a->bytes ? s + chunk : a->bytes;
        if (s < e) memcpy((char *)a->dst + s, (const char *)a->src + s, e - s);
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void bench_cpu(void) {
    const int threads = 2;
    const int64_t n = quick ? (8 << 20) : (32 << 20);
    float *x = malloc((size_t)n * 4);
    BK(x);
    fill_normalish(x, n, 1);
    memcpy_arg ma = {malloc((size_t)n * 4), x, (size_t)n * 4, threads};
    BK(ma.dst);
    double t_copy = bench_time_median(run_memcpy, &ma, 2, quick ? 5 : 10);
    double copy_gbs = 2.0 * (double)ma.bytes / t_copy / 1e9;
    printf("\nCPU, %d threads, %lld values\n", threads, (long long)n);
    row("cpu", "memcpy (read+write)", t_copy * 1e3, copy_gbs, 100.0, 0);
    free(ma.dst);
    bnb_backend *be = bnb_backend_cpu_new(threads);
    BK(be);
    struct {
        const char *name;
        bnb_type xt;
        bool four, deq;
        int block;
    } cases[] = {
        {"q8 quantize f32 block 4096", BNB_TYPE_F32, false, false, 4096},
        {"q8 quantize f32 block 256", BNB_TYPE_F32, false, false, 256},
        {"q8 quantize f32 block 64", BNB_TYPE_F32, false, false, 64},
        {"q8 dequantize -> f32 block 256", BNB_TYPE_F32, false, true, 256},
        {"nf4 quantize f16 block 64", BNB_TYPE_F16, true, false, 64},
        {"nf4 dequantize -> f16 block 64", BNB_TYPE_F16, true, true, 64},
    };
    double worst = 1e9;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qcase c = make_case(be, n, cases[i].xt, cases[i].four, cases[i].block, cases[i].deq, x);
        cpu_arg a = {{threads, NULL, 0}, c.node, cases[i].deq};
        double t = bench_time_median(cpu_node, &a, 1, quick ? 3 : 7);
        double gbs = c.bytes / t / 1e9, pct = 100.0 * gbs / copy_gbs;
        worst = pct < worst ? pct : worst;
        row("cpu", cases[i].name, t * 1e3, gbs, pct, 0);
        free_case(&c);
    }
    printf("headline: cpu quant (2 threads) worst case %.0f%% of memcpy (goal >= 50%%)\n", worst);
    bnb_backend_free(be);
    free(x);

    /* quantiles: fast estimate vs a full sort, 10M values */
    const int64_t nq = 10000000;
    float *q = malloc((size_t)nq * 4), *c = malloc((size_t)nq * 4);
    BK(q && c);
    fill_normalish(q, nq, 7);
    float est[256], ex[256];
    double t0 = bench_now();
    memcpy(c, q, (size_t)nq * 4);
    qsort(c, (size_t)nq, 4, cmp_float);
    double t_sort = bench_now() - t0;
    BK(bnb_quantiles_exact(q, nq, 1.0f / 512.0f, ex) == BNB_OK);
    double ts[5];
    for (int r = 0; r < 5; r++) {
        t0 = bench_now();
        BK(bnb_quantiles_estimate(q, nq, 1.0f / 512.0f, est, threads) == BNB_OK);
        ts[r] = bench_now() - t0;
    }
    double t_est = bench_median(ts, 5), maxe = 0;
    for (int j = 0; j < 256; j++) maxe = fmax(maxe, fabs((double)est[j] - ex[j]));
    printf("cpu   quantiles of 10M: full sort %.1f ms, SRAM-style estimate %.1f ms (%d threads): %.1fx faster, max "
           "error %.3f%% of the range\n",
           t_sort * 1e3, t_est * 1e3, threads, t_sort / t_est, 100.0 * maxe / (ex[255] - ex[0]));
    printf("headline: quantile estimate %.1fx faster than a full sort at 10M (goal >= 10x), error %.3f%%\n",
           t_sort / t_est, 100.0 * maxe / (ex[255] - ex[0]));
    bench_json_row_begin(&js);
    bench_json_str(&js, "device", "cpu");
    bench_json_str(&js, "case", "quantiles_10M");
    bench_json_num(&js, "sort_ms", t_sort * 1e3);
    bench_json_num(&js, "estimate_ms", t_est * 1e3);
    bench_json_row_end(&js);
    free(q);
    free(c);
}

/* ---------------------------------------------------------------------------------------------- CUDA */
#ifdef BNB_HAVE_CUDA
#define CK(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "bench-quant: %s failed: %s\n", #call, cudaGetErrorString(e_));                           \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

#include "cuda-bench.h"

static cudaStream_t stream;

static double time_ms(void (*fn)(void *), void *arg, int warmup, int reps) {
    return bench_cuda_time_ms(stream, fn, arg, warmup, reps);
}

typedef struct {
    bnb_cuda_ctx *ctx;
    bnb_tensor *node;
    bool deq;
} kern_arg;
/* the kernel alone, enqueued on the backend's stream (no graph bookkeeping, no flag read-back) */
static void run_kernel(void *p) {
    kern_arg *a = p;
    bnb_status st = a->deq ? bnb_cuda_dequantize(a->ctx, a->node) : bnb_cuda_quantize(a->ctx, a->node);
    BK(st == BNB_OK);
}

static void bench_cuda(void) {
    bnb_backend *be = bnb_backend_cuda_new(0);
    BK(be);
    stream = bnb_cuda_stream(be);
    bnb_cuda_ctx *cctx = bnb_cuda_get_ctx(be);
    const size_t copy_bytes = (size_t)1 << 30;
    double ms = bench_cuda_copy_ms(stream, copy_bytes, quick ? 5 : 20);
    double copy_gbs = 2.0 * (double)copy_bytes / (ms * 1e-3) / 1e9;
    printf("\nCUDA\n");
    row("cuda", "copy D2D 1 GiB (read+write)", ms, copy_gbs, 100.0, 0);
    const int64_t n = (int64_t)1 << 28; /* 256M values: 1 GiB of f32 */
    float *x = malloc((size_t)n * 4);
    BK(x);
    fill_normalish(x, n, 3);
    struct {
        const char *name;
        bnb_type xt;
        bool four, deq;
        int block;
        double bnb_gbs, goal;
    } cases[] = {
        {"q8 quantize f32 block 4096", BNB_TYPE_F32, false, false, 4096, 822, 85},
        {"q8 quantize f32 block 256", BNB_TYPE_F32, false, false, 256, 753, 85},
        {"q8 quantize f32 block 64", BNB_TYPE_F32, false, false, 64, 497, 85},
        {"q8 dequantize -> f32 block 4096", BNB_TYPE_F32, false, true, 4096, 2530, 90},
        {"nf4 quantize f16 block 64", BNB_TYPE_F16, true, false, 64, 261, 75},
        {"nf4 dequantize -> f16 block 64", BNB_TYPE_F16, true, true, 64, 2090, 85},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qcase c = make_case(be, n, cases[i].xt, cases[i].four, cases[i].block, cases[i].deq, x);
        kern_arg a = {cctx, c.node, cases[i].deq};
        double t = time_ms(run_kernel, &a, 3, quick ? 5 : 20);
        double gbs = c.bytes / (t * 1e-3) / 1e9, pct = 100.0 * gbs / copy_gbs;
        row("cuda", cases[i].name, t, gbs, pct, cases[i].bnb_gbs);
        printf("headline: cuda %s %.0f GB/s = %.0f%% of copy (goal >= %.0f%%; bitsandbytes %.0f GB/s, %.1fx)\n",
               cases[i].name, gbs, pct, cases[i].goal, cases[i].bnb_gbs, gbs / cases[i].bnb_gbs);
        free_case(&c);
    }
    free(x);
    bnb_backend_free(be);
}
#endif

int main(int argc, char **argv) {
    bool cpu_only = false, cuda_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        if (!strcmp(argv[i], "--cpu-only")) cpu_only = true;
        if (!strcmp(argv[i], "--cuda-only")) cuda_only = true;
    }
    bench_json_open(&js, bench_json_path(argc, argv), "bench-quant");
#ifdef BNB_HAVE_CUDA
    if (!cpu_only && bnb_cuda_available()) bench_cuda();
#endif
    (void)cpu_only;
    if (!cuda_only) bench_cpu();
    bench_json_close(&js);
    return 0;
}
