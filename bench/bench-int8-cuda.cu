/* GPU part of bench-int8: bnb_matmul_int8_out on the CUDA backend (x f16, y f16 as bitsandbytes returns for f16
 * input, and y f32 beside; threshold 6, 4 outlier columns; activation
 * quantization, outlier detection, int8 GEMM and the fused epilogue all included; repeated computes replay a
 * captured CUDA graph) vs an fp16 cuBLASLt GEMM of the same shape (f16 in/out, f32 accumulation), both timed with
 * CUDA events on the same stream after warm-up, back to back. bitsandbytes' Linear8bitLt figures (H100, from the
 * LLM.int8 issue) are printed beside. */
#include "common.h"

#include "bnb.h"
#include "cuda/backend-cuda.h"

#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#define CK(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                     \
            return -1.0;                                                                                              \
        }                                                                                                             \
    } while (0)
#define LK(call)                                                                                                      \
    do {                                                                                                              \
        cublasStatus_t s_ = (call);                                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cublasLtGetStatusString(s_));               \
            return -1.0;                                                                                              \
        }                                                                                                             \
    } while (0)

static float urand(unsigned long long *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

/* Weight copies that the cold-L2 timings rotate through: more bytes than the H100's 50 MB L2 at 4096 x 4096, so each
 * call reads its weights from device memory, as a model's layers do in decoding. */
#define COLD_COPIES 8

/* fp16 cuBLASLt GEMM y [T x O] = x [T x K] · W [O x K]ᵀ; returns ms per call (median of 3 runs of reps). copies > 1:
 * calls rotate through that many weight matrices (cold L2). */
static double time_fp16(cudaStream_t stream, int T, int K, int O, int reps, int copies) {
    cublasLtHandle_t lt;
    LK(cublasLtCreate(&lt));
    __half *x, *w, *y;
    void *ws;
    const size_t ws_size = 64u << 20;
    CK(cudaMalloc(&x, (size_t)T * K * 2));
    CK(cudaMalloc(&w, (size_t)O * K * 2 * copies));
    CK(cudaMalloc(&y, (size_t)T * O * 2));
    CK(cudaMalloc(&ws, ws_size));
    CK(cudaMemsetAsync(x, 0x3c, (size_t)T * K * 2, stream)); /* ~1.0 */
    CK(cudaMemsetAsync(w, 0x20, (size_t)O * K * 2 * copies, stream));
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, K, O, K));
    LK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, K, T, K));
    LK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16F, O, T, O));
    LK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wss = ws_size;
    LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wss, sizeof wss));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    LK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &res, &nres));
    if (nres < 1) return -1.0;
    const float alpha = 1.f, beta = 0.f;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++)
        LK(cublasLtMatmul(lt, op, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &res.algo, ws, ws_size, stream));
    double runs[3];
    for (int r = 0; r < 3; r++) {
        CK(cudaEventRecord(e0, stream));
        for (int i = 0; i < reps; i++)
            LK(cublasLtMatmul(lt, op, &alpha, w + (size_t)(i % copies) * O * K, la, x, lb, &beta, y, lc, y, lc,
                              &res.algo, ws, ws_size, stream));
        CK(cudaEventRecord(e1, stream));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        runs[r] = ms / reps;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(lt);
    cudaFree(x), cudaFree(w), cudaFree(y), cudaFree(ws);
    return bench_median(runs, 3);
}

/* bnb_matmul_int8 through a graph on the CUDA backend; ms per compute. */
/* y_out (optional, T x O floats): the output, for comparing the GEMM paths. copies > 1 (at most COLD_COPIES): calls
 * rotate through that many graphs, each with its own copy of the weights (cold L2). */
static double time_int8(bnb_backend *be, int T, int K, int O, int reps, double *rel_err, float *y_out, bnb_type yt,
                        int copies) {
    if (copies < 1 || copies > COLD_COPIES) return -1.0;
    cudaStream_t stream = bnb_cuda_stream(be);
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_new_tensor_2d(ctx, BNB_TYPE_F16, K, T);
    bnb_tensor *wc[COLD_COPIES], *yc[COLD_COPIES];
    bnb_graph *gc[COLD_COPIES];
    for (int i = 0; i < copies; i++) {
        wc[i] = bnb_int8_new_weight(ctx, K, O);
        yc[i] = bnb_matmul_int8_out(ctx, x, wc[i], 6.f, NULL, yt);
        gc[i] = bnb_graph_new(ctx, 16); /* a few nodes: eight graphs fit the 1 MB context */
        if (!yc[i] || !gc[i] || bnb_graph_build(gc[i], yc[i]) != BNB_OK) {
            fprintf(stderr, "int8 graph %d: %s\n", i, bnb_last_error());
            return -1.0;
        }
    }
    bnb_tensor *y = yc[0];
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    if (!buf) return -1.0;
    unsigned long long s = 0x9E3779B97F4A7C15ull + (unsigned long long)T * 131 + K;
    float *xv = (float *)malloc((size_t)T * K * 4), *wv = (float *)malloc((size_t)O * K * 4);
    if (!xv || !wv) return -1.0;
    for (size_t i = 0; i < (size_t)T * K; i++) xv[i] = urand(&s) * 2.f;
    for (int t = 0; t < T; t++) /* 4 outlier columns, as in LLM.int8 activations */
        for (int j = 0; j < 4; j++)
            if (t % 3 == 0) xv[(size_t)t * K + (j * 997 + 13) % K] = 8.f + 12.f * fabsf(urand(&s));
    for (size_t i = 0; i < (size_t)O * K; i++) wv[i] = urand(&s) * 0.05f;
    if (bnb_tensor_set_f32(x, xv, (int64_t)T * K) != BNB_OK) return -1.0;
    for (int i = 0; i < copies; i++)
        if (bnb_int8_set_from(wc[i], BNB_TYPE_F32, wv, (int64_t)O * K) != BNB_OK) return -1.0;
    for (int i = 0; i < 3 * copies; i++)
        if (bnb_graph_compute(be, gc[i % copies]) != BNB_OK) {
            fprintf(stderr, "int8 compute: %s\n", bnb_last_error());
            return -1.0;
        }
    /* spot-check a few outputs against a float64 dot product of the f16-rounded inputs */
    {
        float *yv = (float *)malloc((size_t)T * O * 4);
        double num = 0, den = 0;
        if (yv && bnb_tensor_get_f32(y, yv, (int64_t)T * O) == BNB_OK) {
            if (y_out) memcpy(y_out, yv, (size_t)T * O * 4);
            for (int i = 0; i < 64; i++) {
                const int t = (int)(((unsigned)i * 2654435761u) % (unsigned)T), o = (int)(((unsigned)i * 40503u) % (unsigned)O);
                double ref = 0;
                for (int k = 0; k < K; k++)
                    ref += (double)bnb_f16_to_f32(bnb_f32_to_f16(xv[(size_t)t * K + k])) * wv[(size_t)o * K + k];
                num += (yv[(size_t)t * O + o] - ref) * (yv[(size_t)t * O + o] - ref);
                den += ref * ref;
            }
        }
        *rel_err = den > 0 ? sqrt(num / den) : INFINITY;
        free(yv);
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double runs[3];
    for (int r = 0; r < 3; r++) {
        CK(cudaEventRecord(e0, stream));
        for (int i = 0; i < reps; i++)
            if (bnb_graph_compute(be, gc[i % copies]) != BNB_OK) return -1.0;
        CK(cudaEventRecord(e1, stream));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        runs[r] = ms / reps;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    free(xv);
    free(wv);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
    return bench_median(runs, 3);
}

/* The many-token path with BNB_INT8_GEMM=lt (cuBLASLt int32 GEMM + epilogue kernel) and with =wgmma (the fused
 * sm_90a GEMM where the device has it) in each kernel variant (BNB_INT8_SM90_VAR 0-3). Both epilogues do the same
 * float ops on the same int32 dot products, so the outputs must be bitwise equal: bad = differing outputs summed
 * over the variants (-1: a run failed). */
#define N_VAR 4
static const int k_variants[N_VAR] = {0, 32, 8, 1}; /* plain; programmatic launch; 2-CTA clusters; grouped order */
static long compare_paths(bnb_backend *be, int T, int K, int O, int reps, double ms_var[N_VAR], double *ms_lt,
                          bnb_type yt) {
    float *a = (float *)malloc((size_t)T * O * 4), *b = (float *)malloc((size_t)T * O * 4);
    double err = 0;
    long bad = -1;
    if (!a || !b) goto out;
    setenv("BNB_INT8_GEMM", "lt", 1);
    *ms_lt = time_int8(be, T, K, O, reps, &err, b, yt, 1);
    if (*ms_lt < 0) goto out;
    bad = 0;
    setenv("BNB_INT8_GEMM", "wgmma", 1);
    for (int v = 0; v < N_VAR && bad >= 0; v++) {
        char vs[4];
        snprintf(vs, sizeof vs, "%d", k_variants[v]);
        setenv("BNB_INT8_SM90_VAR", vs, 1);
        ms_var[v] = time_int8(be, T, K, O, reps, &err, a, yt, 1);
        if (ms_var[v] < 0) bad = -1;
        for (size_t i = 0; bad >= 0 && i < (size_t)T * O; i++) bad += memcmp(&a[i], &b[i], 4) != 0;
    }
out:
    unsetenv("BNB_INT8_GEMM");
    unsetenv("BNB_INT8_SM90_VAR");
    free(a);
    free(b);
    return bad;
}

extern "C" int bench_int8_cuda(int quick, bench_json *js) {
    struct {
        int T, K, O;
        double bnb_ms, bnb_ratio;
    } shapes[5] = {{1, 4096, 4096, 0.452, 13.0},
                   {16, 4096, 4096, 0.830, 16.0},
                   {512, 4096, 16384, 1.126, 7.9},
                   {4096, 4096, 16384, 1.865, 2.2},
                   {4096, 8192, 8192, 1.729, 2.1}};
    bnb_backend *be = bnb_backend_cuda_new(0);
    if (!be) {
        fprintf(stderr, "bnb_backend_cuda_new: %s\n", bnb_last_error());
        return 1;
    }
    /* BNB_INT8_BENCH_SHAPE=T,K,O: only that shape, a few calls of each path (for ncu and other profilers) */
    const char *one = getenv("BNB_INT8_BENCH_SHAPE");
    if (one) {
        int T = 0, K = 0, O = 0;
        double err = 0;
        if (sscanf(one, "%d,%d,%d", &T, &K, &O) != 3 || T < 1 || K < 1 || O < 1) {
            fprintf(stderr, "BNB_INT8_BENCH_SHAPE: expected T,K,O, got '%s'\n", one);
            bnb_backend_free(be);
            return 1;
        }
        const double m8 = time_int8(be, T, K, O, 1, &err, NULL, BNB_TYPE_F16, 1);
        const double m16 = time_fp16(bnb_cuda_stream(be), T, K, O, 1, 1);
        printf("%dx%dx%d: int8 %.4f ms, fp16 %.4f ms (1 call per run: profiling, not a measurement)\n", T, K, O, m8, m16);
        bnb_backend_free(be);
        return m8 < 0 || m16 < 0;
    }
    printf("\nCUDA: bnb_matmul_int8_out (x f16, y f16 as bitsandbytes; threshold 6, 4 outlier columns, all passes) vs "
           "fp16 cuBLASLt (f16 in/out), CUDA events; y f32 (bnb_matmul_int8) beside\n");
    printf("%6s %6s %6s | %9s %9s %7s | %6s | %12s %10s | %8s | %9s %7s\n", "tokens", "in", "out", "int8 ms", "fp16 ms",
           "ratio", "goal", "bnb int8 ms", "bnb ratio", "rel err", "y f32 ms", "ratio");
    int n = quick ? 2 : 5;
    for (int i = 0; i < n; i++) {
        const int T = shapes[i].T, K = shapes[i].K, O = shapes[i].O;
        const double flop = 2.0 * T * K * O;
        const int reps = flop > 1e11 ? 20 : flop > 1e9 ? 50 : 200;
        double err = 0;
        const double m8 = time_int8(be, T, K, O, reps, &err, NULL, BNB_TYPE_F16, 1);
        const double m16 = time_fp16(bnb_cuda_stream(be), T, K, O, reps, 1);
        double err32 = 0;
        const double m32 = time_int8(be, T, K, O, reps, &err32, NULL, BNB_TYPE_F32, 1);
        if (m8 < 0 || m16 < 0 || m32 < 0) {
            fprintf(stderr, "shape %dx%dx%d failed\n", T, K, O);
            bnb_backend_free(be);
            return 1;
        }
        const double goal = T <= 16 ? 0.7 : T >= 4096 ? 0.8 : 1.0;
        printf("%6d %6d %6d | %9.4f %9.4f %6.2fx | %5.1fx | %12.3f %9.1fx | %8.2e | %9.4f %6.2fx%s\n", T, K, O, m8, m16,
               m8 / m16, goal, shapes[i].bnb_ms, shapes[i].bnb_ratio, err, m32, m32 / m16,
               m8 / m16 <= goal ? "" : "  (goal missed)");
        printf("headline: int8 %dx%dx%d %.4f ms vs fp16 %.4f ms = %.2fx (goal %.1fx, bitsandbytes %.1fx)\n", T, K, O, m8,
               m16, m8 / m16, goal, shapes[i].bnb_ratio);
        bench_json_row_begin(js);
        bench_json_str(js, "backend", "cuda");
        bench_json_int(js, "tokens", T);
        bench_json_int(js, "in", K);
        bench_json_int(js, "out", O);
        bench_json_num(js, "int8_ms", m8);
        bench_json_num(js, "fp16_ms", m16);
        bench_json_num(js, "ratio", m8 / m16);
        bench_json_num(js, "int8_f32_out_ms", m32);
        bench_json_num(js, "goal_ratio", goal);
        bench_json_num(js, "bnb_int8_ms", shapes[i].bnb_ms);
        bench_json_num(js, "rel_err", err);
        bench_json_row_end(js);
    }
    /* Decode shapes with hot L2 (one weight matrix, repeated: its 16 MB of int8 / 32 MB of fp16 stay in the 50 MB L2)
     * and cold L2 (calls rotate through COLD_COPIES weight matrices, as a model's layers do); the weight-only kernel
     * with 16 (default) and 32 rows per block */
    printf("\ndecode (x f16, y f16), 4096 x 4096: hot L2 = one weight matrix repeated, cold = %d copies in rotation "
           "(ms per call)\n%6s %5s | %9s %9s %9s | %7s %7s | %s\n",
           COLD_COPIES, "tokens", "L2", "int8 16r", "int8 32r", "fp16", "ratio", "ratio32", "goal");
    for (int T = 1; T <= 16; T += 15)
        for (int cold = 0; cold < 2; cold++) {
            const int copies = cold ? COLD_COPIES : 1;
            double err = 0;
            const double m16r = time_int8(be, T, 4096, 4096, 200, &err, NULL, BNB_TYPE_F16, copies);
            setenv("BNB_INT8_WM_ROWS", "32", 1);
            const double m32r = time_int8(be, T, 4096, 4096, 200, &err, NULL, BNB_TYPE_F16, copies);
            unsetenv("BNB_INT8_WM_ROWS");
            const double mh = time_fp16(bnb_cuda_stream(be), T, 4096, 4096, 200, copies);
            printf("%6d %5s | %9.4f %9.4f %9.4f | %6.2fx %6.2fx | 0.7x%s\n", T, cold ? "cold" : "hot", m16r, m32r, mh,
                   m16r / mh, m32r / mh, m16r / mh <= 0.7 ? "" : "  (goal missed)");
            bench_json_row_begin(js);
            bench_json_str(js, "backend", "cuda");
            bench_json_str(js, "case", cold ? "decode_cold_l2" : "decode_hot_l2");
            bench_json_int(js, "tokens", T);
            bench_json_num(js, "int8_ms", m16r);
            bench_json_num(js, "int8_32rows_ms", m32r);
            bench_json_num(js, "fp16_ms", mh);
            bench_json_num(js, "ratio", m16r / mh);
            bench_json_row_end(js);
        }
    /* A/B of the many-token GEMM paths, plus shapes that are not multiples of the 128 x 256 x 128 tile */
    const int ab[][3] = {{512, 4096, 16384}, {4096, 4096, 16384}, {4096, 8192, 8192}, {300, 4000, 1000},
                         {129, 4096, 520}, {77, 208, 36}};
    printf("\nGEMM paths: cuBLASLt (BNB_INT8_GEMM=lt) vs the sm_90a kernel (BNB_INT8_SM90_VAR 0 default, 32 programmatic "
           "dependent launch, 8 2-CTA clusters with weight multicast, 1 grouped tile order), outputs compared bitwise\n"
           "%6s %6s %6s %4s | %9s | %9s %9s %9s %9s | %s\n",
           "tokens", "in", "out", "y", "lt ms", "default", "pdl", "cluster", "grouped", "outputs differing");
    int fails = 0;
    for (int i = quick ? 3 : 0; i < (int)(sizeof ab / sizeof ab[0]); i++)
        for (int yi = 0; yi < 2; yi++) {
            const bnb_type yt = yi ? BNB_TYPE_F32 : BNB_TYPE_F16;
            double mv[N_VAR] = {0}, ml = 0;
            const long bad = compare_paths(be, ab[i][0], ab[i][1], ab[i][2], i < 3 ? 20 : 5, mv, &ml, yt);
            printf("%6d %6d %6d %4s | %9.4f | %9.4f %9.4f %9.4f %9.4f | %ld%s\n", ab[i][0], ab[i][1], ab[i][2],
                   bnb_type_name(yt), ml, mv[0], mv[1], mv[2], mv[3], bad, bad != 0 ? "  MISMATCH" : "");
            fails += bad != 0;
        }
    /* where the sm_90a kernel's time goes (BNB_INT8_SM90_MODE: measurement modes with wrong outputs) */
    if (getenv("BNB_INT8_BENCH_MODES")) {
        printf("\nsm_90a kernel modes (y f16; ms per compute; var = BNB_INT8_SM90_VAR): full | no epilogue | no MMAs | "
               "loads only\n");
        for (int i = 0; i < 6; i++) {
            const int var = i < 3 ? 0 : 8;
            char vs[4];
            snprintf(vs, sizeof vs, "%d", var);
            setenv("BNB_INT8_SM90_VAR", vs, 1);
            double ms[4], err = 0;
            for (int md = 0; md < 4; md++) {
                char v[4];
                snprintf(v, sizeof v, "%d", md);
                setenv("BNB_INT8_SM90_MODE", v, 1);
                setenv("BNB_INT8_GEMM", "wgmma", 1);
                ms[md] = time_int8(be, ab[i % 3][0], ab[i % 3][1], ab[i % 3][2], 20, &err, NULL, BNB_TYPE_F16, 1);
            }
            unsetenv("BNB_INT8_SM90_MODE");
            unsetenv("BNB_INT8_GEMM");
            unsetenv("BNB_INT8_SM90_VAR");
            printf("%6d %6d %6d var %d | %9.4f | %9.4f | %9.4f | %9.4f\n", ab[i % 3][0], ab[i % 3][1], ab[i % 3][2], var,
                   ms[0], ms[1], ms[2], ms[3]);
        }
    }
    bnb_backend_free(be);
    return fails ? 1 : 0;
}
