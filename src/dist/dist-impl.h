/* Internal declarations of the distributed layer (src/dist/, src/cuda/dist.cu). Not installed.
 * comm.c: NCCL loaded at run time (dlopen "libnccl.so.2"), the file-based unique-id exchange, collectives over
 * gradient buckets in three modes. dist.cu: the device kernels those collectives need (flatten, bf16 convert,
 * 8-bit blockwise compress / decompress-and-sum). Pointers to streams are passed as void* so C files need no CUDA
 * headers. */
#ifndef BNB_DIST_IMPL_H
#define BNB_DIST_IMPL_H

#include "bnb-model.h"

#define BNB_DIST_Q8_BLOCK 256 /* elements per absmax block of compressed gradients */

/* Nearest code of v (already divided by its block's absmax, in [-1, 1]) in the sorted 256-entry map; ties go to
 * the lower code. Shared by the host path and (same logic) the device kernel. */
#ifdef __CUDACC__
#define BNB_DIST_HD __host__ __device__
#else
#define BNB_DIST_HD
#endif
static inline BNB_DIST_HD int bnb_dist_nearest_code(const float *sorted_map, float v) {
    int lo = 0, hi = 255;
    while (hi - lo > 1) {
        int mid = (lo + hi) >> 1;
        if (sorted_map[mid] <= v) lo = mid;
        else hi = mid;
    }
    return (v - sorted_map[lo] <= sorted_map[hi] - v) ? lo : hi;
}

/* The signed dynamic map, sorted ascending (it is built sorted; checked by test-dist). */
const float *bnb_dist_q8_map(void);

#ifdef BNB_HAVE_CUDA
/* ---- dist.cu (all enqueue on `stream`, never synchronise unless said) */
bnb_status bnb_dist_cuda_malloc(void **ptr, size_t bytes);
void bnb_dist_cuda_free(void *ptr);
bnb_status bnb_dist_cuda_set_device(int device);
int bnb_dist_cuda_device_count(void);
bnb_status bnb_dist_cuda_sync(void *stream);
bnb_status bnb_dist_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream);
bnb_status bnb_dist_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream);
bnb_status bnb_dist_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream); /* synchronises */
/* f32 <-> bf16 (round to nearest even), n elements */
bnb_status bnb_dist_cuda_f32_to_bf16(const float *src, uint16_t *dst, int64_t n, void *stream);
bnb_status bnb_dist_cuda_bf16_to_f32(const uint16_t *src, float *dst, int64_t n, void *stream);
/* 8-bit blockwise: codes[n], absmax[ceil(n / BNB_DIST_Q8_BLOCK)] from x[n] */
bnb_status bnb_dist_cuda_q8_compress(const float *x, int64_t n, uint8_t *codes, float *absmax, void *stream);
/* out[i] = sum over r < world of map[codes_r[i]] * absmax_r[i / block], ranks summed in order 0..world-1;
 * codes of rank r at codes + r * codes_stride, absmax at absmax + r * absmax_stride (elements) */
bnb_status bnb_dist_cuda_q8_decompress_sum(const uint8_t *codes, size_t codes_stride, const float *absmax,
                                           size_t absmax_stride, int world, int64_t n, float *out, void *stream);

#endif

/* bucket.c: the element offsets of tensor i in a flattened bucket (prefix sums of numel) */
int64_t bnb_dist_bucket_offset(const int64_t *numel, const bnb_dist_bucket *b, int i);

/* dp-train.c phases, for callers that move the gradients themselves (tests simulate W ranks in one process):
 * local = this rank's forward + backward; then sum the grads over ranks (and *loss_sum); apply = update (+ nothing
 * for ZeRO-1 without a communicator: the caller copies owned parameters to the other ranks). */
bnb_dist_trainer *bnb_dist_trainer_new_virtual(const bnb_train_config *cfg, const int32_t *tokens, int64_t n,
                                               int rank, int world, bnb_dist_train_options opt);
bnb_status bnb_dist_trainer_local(bnb_dist_trainer *d);
bnb_status bnb_dist_trainer_apply(bnb_dist_trainer *d, float *loss);
int bnb_dist_trainer_grads(bnb_dist_trainer *d, bnb_tensor ***grads, bnb_tensor ***params, const int **owner);
double *bnb_dist_trainer_loss_sum(bnb_dist_trainer *d);
#endif
