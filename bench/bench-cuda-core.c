/* bench-cuda-core: the CUDA backend's core numbers, all measured in one run with CUDA events after warm-up (medians):
 *   1. device-to-device copy bandwidth of 1 GiB (bytes read + written): the ceiling for memory-bound ops;
 *   2. add / gelu / softmax / rms_norm / layer_norm on 256 MiB tensors (F32 and BF16), GB/s and % of the ceiling;
 *   3. mul_mat F16 and BF16 8192^3 (F32 out) through bnb vs the same cuBLASLt GEMM called directly (ratio);
 *   4. a 12-layer MLP graph (mul_mat 1024x1024 + add + gelu, batch 64) computed 1000 times: per-step time with
 *      CUDA-graph replay vs plain launches.
 * Lines starting with "headline:" are collected by tests/gpu.sh. Usage: bench-cuda-core [--json FILE] [--quick] */
#include "common.h"

#include <bnb.h>

#include "cuda/backend-cuda.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>

#define CK(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "bench-cuda-core: %s failed: %s\n", #call, cudaGetErrorString(e_));                        \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)
#define BK(x)                                                                                                         \
    do {                                                                                                              \
        if (!(x)) {                                                                                                   \
            fprintf(stderr, "bench-cuda-core: %s failed: %s\n", #x, bnb_last_error());                                 \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static bnb_backend *be;
static cudaStream_t stream;
static bench_json js;
static int quick;

/* Random values in [-1, 1] (xorshift), never zero. */
static void fill_host(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float v = (float)((s >> 40) + 1) * (1.0f / 16777216.0f); /* (0, 1] */
        x[i] = (s & 1) ? v : -v;
    }
}

#include "cuda-bench.h"

/* Median milliseconds of reps calls of fn, timed with events on the backend's stream. */
static double time_ms(void (*fn)(void *), void *arg, int warmup, int reps) {
    return bench_cuda_time_ms(stream, fn, arg, warmup, reps);
}

/* ---------------------------------------------------------------------------------------------- 1. copy */
static double bench_copy(void) {
    const size_t bytes = (size_t)1 << 30;
    double ms = bench_cuda_copy_ms(stream, bytes, quick ? 5 : 20);
    double gbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    printf("%-34s %10.3f ms %9.1f GB/s\n", "copy D2D 1 GiB (read+write)", ms, gbs);
    bench_json_row_begin(&js);
    bench_json_str(&js, "case", "copy_d2d_1GiB");
    bench_json_num(&js, "ms", ms);
    bench_json_num(&js, "gbs", gbs);
    bench_json_row_end(&js);
    return gbs;
}

/* ---------------------------------------------------------------------------------------------- 2. memory-bound */
typedef struct {
    bnb_graph *g;
} graph_arg;
static void run_graph(void *p) {
    bnb_status st = bnb_graph_compute(be, ((graph_arg *)p)->g);
    if (st != BNB_OK) {
        fprintf(stderr, "bench-cuda-core: graph compute failed: %s\n", bnb_last_error());
        exit(1);
    }
}

enum { OP_ADD, OP_GELU, OP_SOFTMAX, OP_RMS, OP_LAYER, OP_N };
static const char *op_names[OP_N] = {"add", "gelu", "softmax", "rms_norm", "layer_norm"};

static double min_pct = 1e9;

static void bench_memory_bound(double copy_gbs, const float *rnd) {
    const bnb_type types[2] = {BNB_TYPE_F32, BNB_TYPE_BF16};
    const int64_t bytes = (int64_t)256 << 20, ne0 = 4096;
    printf("\n%-12s %-5s %-16s %10s %9s %8s\n", "op", "type", "shape", "ms", "GB/s", "% copy");
    for (int ti = 0; ti < 2; ti++) {
        bnb_type t = types[ti];
        int64_t n = bytes / (int64_t)(t == BNB_TYPE_F32 ? 4 : 2), rows = n / ne0;
        for (int op = 0; op < OP_N; op++) {
            bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
            bnb_tensor *a = bnb_new_tensor_2d(ctx, t, ne0, rows), *b = NULL, *y;
            switch (op) {
            case OP_ADD: b = bnb_new_tensor_2d(ctx, t, ne0, rows); y = bnb_add(ctx, a, b); break;
            case OP_GELU: y = bnb_gelu(ctx, a); break;
            case OP_SOFTMAX: y = bnb_softmax(ctx, a, 0.7f, false); break;
            case OP_RMS: y = bnb_rms_norm(ctx, a, 1e-5f); break;
            default: y = bnb_layer_norm(ctx, a, 1e-5f); break;
            }
            bnb_graph *g = bnb_graph_new(ctx, 8);
            BK(y && g && bnb_graph_build(g, y) == BNB_OK);
            bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
            BK(buf);
            BK(bnb_tensor_set_f32(a, rnd, n) == BNB_OK);
            if (b) BK(bnb_tensor_set_f32(b, rnd + 12345, n) == BNB_OK);
            graph_arg ga = {g};
            double ms = time_ms(run_graph, &ga, 3, quick ? 5 : 20);
            double moved = (double)bytes * (b ? 3.0 : 2.0);
            double gbs = moved / (ms * 1e-3) / 1e9, pct = 100.0 * gbs / copy_gbs;
            if (pct < min_pct) min_pct = pct;
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)ne0, (long long)rows);
            printf("%-12s %-5s %-16s %10.3f %9.1f %7.1f%%\n", op_names[op], bnb_type_name(t), shape, ms, gbs, pct);
            bench_json_row_begin(&js);
            bench_json_str(&js, "case", op_names[op]);
            bench_json_str(&js, "type", bnb_type_name(t));
            bench_json_int(&js, "ne0", ne0);
            bench_json_int(&js, "rows", rows);
            bench_json_num(&js, "ms", ms);
            bench_json_num(&js, "gbs", gbs);
            bench_json_num(&js, "pct_of_copy", pct);
            bench_json_row_end(&js);
            bnb_buffer_free(buf);
            bnb_context_free(ctx);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- 3. GEMM */
typedef struct {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    const void *a, *b;
    void *c, *ws;
    size_t ws_size;
} direct_gemm;

static void run_direct(void *p) {
    direct_gemm *d = p;
    const float alpha = 1.f, beta = 0.f;
    cublasStatus_t s = cublasLtMatmul(d->lt, d->op, &alpha, d->a, d->la, d->b, d->lb, &beta, d->c, d->lc, d->c, d->lc,
                                      &d->algo, d->ws, d->ws_size, stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "bench-cuda-core: direct cublasLtMatmul failed: %s\n", cublasLtGetStatusString(s));
        exit(1);
    }
}

#define LK(call)                                                                                                      \
    do {                                                                                                              \
        cublasStatus_t s_ = (call);                                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            fprintf(stderr, "bench-cuda-core: %s failed: %s\n", #call, cublasLtGetStatusString(s_));                   \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static double min_gemm_ratio = 1e9;

static void bench_gemm(const float *rnd) {
    const int64_t S = 8192;
    const bnb_type types[2] = {BNB_TYPE_F16, BNB_TYPE_BF16};
    printf("\n%-28s %10s %10s %8s %10s\n", "mul_mat 8192^3 (F32 out)", "ms", "TFLOP/s", "vs Lt", "max|diff|");
    for (int ti = 0; ti < 2; ti++) {
        bnb_type t = types[ti];
        bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
        bnb_tensor *a = bnb_new_tensor_2d(ctx, t, S, S), *b = bnb_new_tensor_2d(ctx, t, S, S);
        bnb_tensor *y = bnb_mul_mat(ctx, a, b);
        bnb_graph *g = bnb_graph_new(ctx, 8);
        BK(y && g && bnb_graph_build(g, y) == BNB_OK);
        bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
        BK(buf);
        BK(bnb_tensor_set_f32(a, rnd, S * S) == BNB_OK);
        BK(bnb_tensor_set_f32(b, rnd + 777, S * S) == BNB_OK);
        graph_arg ga = {g};
        double ms_bnb = time_ms(run_graph, &ga, 3, quick ? 5 : 20);

        direct_gemm d;
        memset(&d, 0, sizeof d);
        cudaDataType_t dt = t == BNB_TYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
        cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
        LK(cublasLtCreate(&d.lt));
        LK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        LK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
        LK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
        LK(cublasLtMatrixLayoutCreate(&d.la, dt, S, S, S));
        LK(cublasLtMatrixLayoutCreate(&d.lb, dt, S, S, S));
        LK(cublasLtMatrixLayoutCreate(&d.lc, CUDA_R_32F, S, S, S));
        d.ws_size = (size_t)32 << 20;
        CK(cudaMalloc(&d.ws, d.ws_size));
        CK(cudaMalloc(&d.c, (size_t)S * S * 4));
        cublasLtMatmulPreference_t pref;
        LK(cublasLtMatmulPreferenceCreate(&pref));
        uint64_t wss = d.ws_size;
        LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wss, sizeof wss));
        cublasLtMatmulHeuristicResult_t res;
        int nres = 0;
        LK(cublasLtMatmulAlgoGetHeuristic(d.lt, d.op, d.la, d.lb, d.lc, d.lc, pref, 1, &res, &nres));
        if (nres < 1) {
            fprintf(stderr, "bench-cuda-core: no direct cuBLASLt algorithm\n");
            exit(1);
        }
        d.algo = res.algo;
        d.a = a->data;
        d.b = b->data;
        double ms_lt = time_ms(run_direct, &d, 3, quick ? 5 : 20);

        /* the two results must agree: compare a sample of rows */
        const int64_t rows_chk = 8;
        float *h1 = malloc((size_t)(rows_chk * S) * 4), *h2 = malloc((size_t)(rows_chk * S) * 4);
        BK(h1 && h2);
        CK(cudaMemcpy(h1, y->data, (size_t)(rows_chk * S) * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(h2, d.c, (size_t)(rows_chk * S) * 4, cudaMemcpyDeviceToHost));
        double md = 0, mref = 0;
        for (int64_t i = 0; i < rows_chk * S; i++) {
            md = fmax(md, fabs((double)h1[i] - h2[i]));
            mref = fmax(mref, fabs((double)h2[i]));
        }
        free(h1);
        free(h2);
        double flop = 2.0 * (double)S * S * S;
        double tf_bnb = flop / (ms_bnb * 1e-3) / 1e12, tf_lt = flop / (ms_lt * 1e-3) / 1e12, ratio = tf_bnb / tf_lt;
        if (ratio < min_gemm_ratio) min_gemm_ratio = ratio;
        if (!(md <= 1e-3 * mref)) fprintf(stderr, "bench-cuda-core: bnb and direct cuBLASLt results differ (%g)\n", md);
        char name[64];
        snprintf(name, sizeof name, "%s bnb_mul_mat", bnb_type_name(t));
        printf("%-28s %10.3f %10.1f %7.1f%% %10.2e\n", name, ms_bnb, tf_bnb, 100 * ratio, md);
        snprintf(name, sizeof name, "%s cuBLASLt direct", bnb_type_name(t));
        printf("%-28s %10.3f %10.1f %8s\n", name, ms_lt, tf_lt, "");
        bench_json_row_begin(&js);
        bench_json_str(&js, "case", "mul_mat_8192");
        bench_json_str(&js, "type", bnb_type_name(t));
        bench_json_num(&js, "ms_bnb", ms_bnb);
        bench_json_num(&js, "tflops_bnb", tf_bnb);
        bench_json_num(&js, "ms_cublaslt", ms_lt);
        bench_json_num(&js, "tflops_cublaslt", tf_lt);
        bench_json_num(&js, "ratio", ratio);
        bench_json_num(&js, "max_abs_diff", md);
        bench_json_row_end(&js);
        printf("headline: mul_mat %s 8192^3: bnb %.1f TFLOP/s, cuBLASLt %.1f TFLOP/s (%.1f%%)\n", bnb_type_name(t),
               tf_bnb, tf_lt, 100 * ratio);
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(d.la);
        cublasLtMatrixLayoutDestroy(d.lb);
        cublasLtMatrixLayoutDestroy(d.lc);
        cublasLtMatmulDescDestroy(d.op);
        cublasLtDestroy(d.lt);
        CK(cudaFree(d.ws));
        CK(cudaFree(d.c));
        bnb_buffer_free(buf);
        bnb_context_free(ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- 4. MLP replay */
typedef struct {
    bnb_graph *g;
    int steps;
} steps_arg;
static void run_steps(void *p) {
    steps_arg *s = p;
    for (int i = 0; i < s->steps; i++) run_graph(&(graph_arg){s->g});
}

static void bench_mlp(const float *rnd) {
    const int64_t D = 1024, B = 64;
    const int L = 12, steps = quick ? 200 : 1000;
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 4 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, D, B), *h = x;
    bnb_tensor *w[12], *bias[12];
    for (int l = 0; l < L; l++) {
        w[l] = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, D, D);
        bias[l] = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, D);
        h = bnb_gelu(ctx, bnb_add(ctx, bnb_mul_mat(ctx, w[l], h), bias[l]));
    }
    bnb_graph *g = bnb_graph_new(ctx, 256);
    BK(h && g && bnb_graph_build(g, h) == BNB_OK);
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    BK(buf);
    BK(bnb_tensor_set_f32(x, rnd, D * B) == BNB_OK);
    float *ws = malloc((size_t)(D * D) * 4);
    BK(ws);
    for (int l = 0; l < L; l++) { /* weights scaled so activations stay O(1) */
        for (int64_t i = 0; i < D * D; i++) ws[i] = rnd[(i + 31 * l) % (D * D)] * 0.05f;
        BK(bnb_tensor_set_f32(w[l], ws, D * D) == BNB_OK);
        BK(bnb_tensor_set_f32(bias[l], rnd + 100 * l, D) == BNB_OK);
    }
    free(ws);
    steps_arg sa = {g, steps};
    double ms[2];
    printf("\n%-44s %12s\n", "12-layer MLP (1024x1024 f32, batch 64)", "us / step");
    for (int mode = 0; mode < 2; mode++) { /* 0: plain launches, 1: CUDA-graph replay */
        bnb_backend_set_graph_capture(be, mode == 1);
        ms[mode] = time_ms(run_steps, &sa, 1, 3) / steps;
        printf("%-44s %12.2f\n", mode ? "CUDA-graph replay" : "plain launches", ms[mode] * 1e3);
    }
    bnb_backend_set_graph_capture(be, true);
    bnb_cuda_graph_stats gs = bnb_cuda_get_graph_stats(g);
    printf("%-44s %12.2fx  (captures %llu, replays %llu, plain %llu)\n", "speedup", ms[0] / ms[1],
           (unsigned long long)gs.n_captures, (unsigned long long)gs.n_replays, (unsigned long long)gs.n_plain);
    bench_json_row_begin(&js);
    bench_json_str(&js, "case", "mlp12_replay");
    bench_json_int(&js, "steps", steps);
    bench_json_num(&js, "us_per_step_plain", ms[0] * 1e3);
    bench_json_num(&js, "us_per_step_replay", ms[1] * 1e3);
    bench_json_num(&js, "speedup", ms[0] / ms[1]);
    bench_json_row_end(&js);
    printf("headline: 12-layer MLP step: plain %.1f us, CUDA-graph replay %.1f us (%.2fx)\n", ms[0] * 1e3,
           ms[1] * 1e3, ms[0] / ms[1]);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

int main(int argc, char **argv) {
    quick = bench_has_flag(argc, argv, "--quick");
    if (!bnb_cuda_available()) {
        printf("bench-cuda-core: SKIP: no CUDA device\n");
        return 0;
    }
    be = bnb_backend_cuda_new(0);
    BK(be);
    stream = bnb_cuda_stream(be);
    if (bench_json_open(&js, bench_json_path(argc, argv), "bench-cuda-core") != 0) return 1;
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.0f MiB\n\n", prop.name, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1 << 20));
    const int64_t nrnd = ((int64_t)128 << 20) + 16384; /* enough for 128M bf16 elements + offsets */
    float *rnd = malloc((size_t)nrnd * 4);
    BK(rnd);
    fill_host(rnd, nrnd, 42);

    double copy_gbs = bench_copy();
    bench_memory_bound(copy_gbs, rnd);
    printf("headline: copy ceiling %.0f GB/s; memory-bound ops (add/gelu/softmax/norms, f32+bf16, 256 MiB): worst "
           "%.1f%% of copy\n", copy_gbs, min_pct);
    bench_gemm(rnd);
    bench_mlp(rnd);
    free(rnd);
    bench_json_close(&js);
    bnb_backend_free(be);
    return 0;
}
