/* CUDA timing helpers shared by the GPU benchmarks (header-only; include after cuda_runtime_api.h and common.h):
 * median time of a region with CUDA events after warm-up, and the device-to-device copy ceiling. */
#ifndef BNB_BENCH_CUDA_BENCH_H
#define BNB_BENCH_CUDA_BENCH_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#define BENCH_CUDA_CHECK(call)                                                                                        \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));            \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

/* Median milliseconds of reps calls of fn (at most 256), each timed with events on stream, after warmup calls. */
static inline double bench_cuda_time_ms(cudaStream_t stream, void (*fn)(void *), void *arg, int warmup, int reps) {
    cudaEvent_t e0, e1;
    BENCH_CUDA_CHECK(cudaEventCreate(&e0));
    BENCH_CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < warmup; i++) fn(arg);
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
    double t[256];
    if (reps > 256) reps = 256;
    for (int i = 0; i < reps; i++) {
        BENCH_CUDA_CHECK(cudaEventRecord(e0, stream));
        fn(arg);
        BENCH_CUDA_CHECK(cudaEventRecord(e1, stream));
        BENCH_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        t[i] = ms;
    }
    BENCH_CUDA_CHECK(cudaEventDestroy(e0));
    BENCH_CUDA_CHECK(cudaEventDestroy(e1));
    return bench_median(t, reps);
}

typedef struct {
    void *dst, *src;
    size_t bytes;
    cudaStream_t stream;
} bench_cuda_copy_arg;
static inline void bench_cuda_run_copy(void *p) {
    bench_cuda_copy_arg *a = (bench_cuda_copy_arg *)p;
    BENCH_CUDA_CHECK(cudaMemcpyAsync(a->dst, a->src, a->bytes, cudaMemcpyDeviceToDevice, a->stream));
}

/* Median milliseconds of one device-to-device copy of `bytes` (the bandwidth ceiling counts 2 x bytes). */
static inline double bench_cuda_copy_ms(cudaStream_t stream, size_t bytes, int reps) {
    bench_cuda_copy_arg a = {NULL, NULL, bytes, stream};
    BENCH_CUDA_CHECK(cudaMalloc(&a.src, bytes));
    BENCH_CUDA_CHECK(cudaMalloc(&a.dst, bytes));
    BENCH_CUDA_CHECK(cudaMemsetAsync(a.src, 0x5a, bytes, stream));
    double ms = bench_cuda_time_ms(stream, bench_cuda_run_copy, &a, 3, reps);
    BENCH_CUDA_CHECK(cudaFree(a.src));
    BENCH_CUDA_CHECK(cudaFree(a.dst));
    return ms;
}

#endif
