// CUDA CPY: strided copy of src into the node's memory (dst's strides), converting float types.
#include "backend-cuda.h"
#include "cuda-common.cuh"

namespace {
constexpr int BLOCK = 256;

template <typename E>
__global__ void __launch_bounds__(BLOCK) cpy_same_kernel(const char *__restrict__ x, bnb_cu_shape xs, char *y,
                                                         bnb_cu_shape ys, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        *(E *)(y + bnb_cu_offset(ys, i)) = *(const E *)(x + bnb_cu_offset(xs, i));
}

__global__ void __launch_bounds__(BLOCK) cpy_convert_kernel(const char *__restrict__ x, bnb_cu_shape xs, int tx,
                                                            char *y, bnb_cu_shape ys, int ty, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        bnb_cu_store(y + bnb_cu_offset(ys, i), ty, bnb_cu_load(x + bnb_cu_offset(xs, i), tx));
}
} // namespace

extern "C" bnb_status bnb_cuda_cpy(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    const int64_t n = bnb_nelements(node);
    if (n > BNB_CUDA_MAX_ELEMENTS) return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_cpy: %lld elements is too many", (long long)n);
    const size_t es = bnb_type_size(node->type);
    if (src->type == node->type && bnb_is_contiguous(src) && bnb_is_contiguous(node)) {
        BNB_CUDA_TRY(cudaMemcpyAsync(node->data, src->data, (size_t)n * es, cudaMemcpyDeviceToDevice, c->stream),
                     "bnb_cpy: cudaMemcpyAsync device->device");
        return BNB_OK;
    }
    const unsigned grid = bnb_cu_grid(c, n, BLOCK);
    const bnb_cu_shape xs = bnb_cu_shape_of(src), ys = bnb_cu_shape_of(node);
    if (src->type == node->type) {
        switch (es) {
        case 1: cpy_same_kernel<uint8_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (char *)node->data, ys, (uint32_t)n); break;
        case 2: cpy_same_kernel<uint16_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (char *)node->data, ys, (uint32_t)n); break;
        default: cpy_same_kernel<uint32_t><<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (char *)node->data, ys, (uint32_t)n); break;
        }
    } else {
        cpy_convert_kernel<<<grid, BLOCK, 0, c->stream>>>((const char *)src->data, xs, (int)src->type,
                                                          (char *)node->data, ys, (int)node->type, (uint32_t)n);
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_cpy");
    return BNB_OK;
}
