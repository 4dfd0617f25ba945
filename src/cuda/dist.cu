// Device kernels of the distributed layer (src/dist/): bf16 conversion of gradient buckets and 8-bit blockwise
// compression (signed dynamic map, block 256, f32 absmax) / decompress-and-sum over the ranks' gathered parts.
// Memory-bound; one pass each. The nearest-code search is a binary search over the sorted map in shared memory.
extern "C" {
#include "../dist/dist-impl.h"
}
#include "cuda-common.cuh"

static_assert(BNB_DIST_Q8_BLOCK == 256, "one thread per element, one block per absmax block");

extern "C" bnb_status bnb_dist_cuda_malloc(void **ptr, size_t bytes) {
    BNB_CUDA_TRY(cudaMalloc(ptr, bytes ? bytes : 1), "bnb_dist: cudaMalloc");
    return BNB_OK;
}
extern "C" void bnb_dist_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}
extern "C" bnb_status bnb_dist_cuda_set_device(int device) {
    BNB_CUDA_TRY(cudaSetDevice(device), "bnb_dist: cudaSetDevice");
    return BNB_OK;
}
extern "C" int bnb_dist_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}
extern "C" bnb_status bnb_dist_cuda_sync(void *stream) {
    BNB_CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream), "bnb_dist: cudaStreamSynchronize");
    return BNB_OK;
}
extern "C" bnb_status bnb_dist_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream) {
    BNB_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream), "bnb_dist: memcpy");
    return BNB_OK;
}
extern "C" bnb_status bnb_dist_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    BNB_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream), "bnb_dist: memcpy");
    return BNB_OK;
}
extern "C" bnb_status bnb_dist_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    BNB_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream), "bnb_dist: memcpy");
    BNB_CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream), "bnb_dist: sync");
    return BNB_OK;
}

static __global__ void f32_to_bf16_kernel(const float *src, __nv_bfloat16 *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}
static __global__ void bf16_to_f32_kernel(const __nv_bfloat16 *src, float *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}
static unsigned grid_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return (unsigned)(g < 65535 * 16 ? (g > 0 ? g : 1) : 65535 * 16);
}

extern "C" bnb_status bnb_dist_cuda_f32_to_bf16(const float *src, uint16_t *dst, int64_t n, void *stream) {
    f32_to_bf16_kernel<<<grid_for(n), 256, 0, (cudaStream_t)stream>>>(src, (__nv_bfloat16 *)dst, n);
    BNB_CUDA_CHECK_LAUNCH("bnb_dist f32_to_bf16");
    return BNB_OK;
}
extern "C" bnb_status bnb_dist_cuda_bf16_to_f32(const uint16_t *src, float *dst, int64_t n, void *stream) {
    bf16_to_f32_kernel<<<grid_for(n), 256, 0, (cudaStream_t)stream>>>((const __nv_bfloat16 *)src, dst, n);
    BNB_CUDA_CHECK_LAUNCH("bnb_dist bf16_to_f32");
    return BNB_OK;
}

struct q8_map {
    float v[256];
};

// One CUDA block of 256 threads per absmax block.
static __global__ void q8_compress_kernel(const float *x, int64_t n, uint8_t *codes, float *absmax, q8_map map) {
    __shared__ float smap[256];
    __shared__ float wmax[8];
    smap[threadIdx.x] = map.v[threadIdx.x];
    int64_t i = (int64_t)blockIdx.x * 256 + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    float a = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = a;
    __syncthreads();
    a = wmax[0];
    for (int w = 1; w < 8; w++) a = fmaxf(a, wmax[w]);
    if (threadIdx.x == 0) absmax[blockIdx.x] = a;
    if (i >= n) return;
    float inv = a > 0.0f ? 1.0f / a : 0.0f;
    codes[i] = (uint8_t)bnb_dist_nearest_code(smap, v * inv);
}

static __global__ void q8_decompress_sum_kernel(const uint8_t *codes, size_t cstride, const float *absmax,
                                                size_t astride, int world, int64_t n, float *out, q8_map map) {
    __shared__ float smap[256];
    smap[threadIdx.x] = map.v[threadIdx.x];
    __syncthreads();
    int64_t i = (int64_t)blockIdx.x * 256 + threadIdx.x;
    if (i >= n) return;
    float s = 0.0f;
    for (int r = 0; r < world; r++) s += smap[codes[r * cstride + i]] * absmax[r * astride + blockIdx.x];
    out[i] = s;
}

extern "C" bnb_status bnb_dist_cuda_q8_compress(const float *x, int64_t n, uint8_t *codes, float *absmax,
                                                void *stream) {
    if (n <= 0) return BNB_OK;
    q8_map m;
    memcpy(m.v, bnb_dist_q8_map(), sizeof m.v);
    int64_t nblk = bnb_dist_q8_blocks(n);
    if (nblk > INT32_MAX) return bnb_fail(BNB_ERR_SHAPE, "bnb_dist q8_compress: %lld elements", (long long)n);
    q8_compress_kernel<<<(unsigned)nblk, 256, 0, (cudaStream_t)stream>>>(x, n, codes, absmax, m);
    BNB_CUDA_CHECK_LAUNCH("bnb_dist q8_compress");
    return BNB_OK;
}

extern "C" bnb_status bnb_dist_cuda_q8_decompress_sum(const uint8_t *codes, size_t codes_stride, const float *absmax,
                                                      size_t absmax_stride, int world, int64_t n, float *out,
                                                      void *stream) {
    if (n <= 0) return BNB_OK;
    q8_map m;
    memcpy(m.v, bnb_dist_q8_map(), sizeof m.v);
    int64_t nblk = bnb_dist_q8_blocks(n);
    q8_decompress_sum_kernel<<<(unsigned)nblk, 256, 0, (cudaStream_t)stream>>>(codes, codes_stride, absmax,
                                                                              absmax_stride, world, n, out, m);
    BNB_CUDA_CHECK_LAUNCH("bnb_dist q8_decompress_sum");
    return BNB_OK;
}
