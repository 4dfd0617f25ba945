/* CUDA kernels of the autodiff ops: FILL REPEAT SUM_TO ACC_GRAD UNARY_BACK MAX_ROWS_BACK GET_ROWS_BACK VIEW_BACK
 * SOFTMAX_BACK RMS_NORM_BACK LAYER_NORM_BACK ROPE_BACK CROSS_ENTROPY_BACK.
 * Results are contiguous F32 (ACC_GRAD adds into its contiguous F32 accumulator); sources may be strided and of any
 * float type (bnb_cu_load). Elementwise ops use grid-stride loops, row-wise ops one block per row with block
 * reductions; scatter-adds (get_rows_back, view_back) use atomicAdd into a zeroed result (their order of additions,
 * hence the last bits, may vary between runs). Out-of-range indices were already reported by the forward op of the
 * same graph: the backward kernels skip them. */
#include "cuda-common.cuh"

#define BW_BLOCK 256

/* ------------------------------------------------------------------------------------------------ FILL REPEAT ACC */

__global__ void fill_kernel(float *y, uint32_t n, float v) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = v;
}

/* out index i (contiguous over out's ne) -> byte offset of the broadcast element of a */
__device__ __forceinline__ int64_t broadcast_offset(const bnb_cu_shape &out, const bnb_cu_shape &a, uint32_t i) {
    int64_t off = 0;
#pragma unroll
    for (int d = 0; d < 4; d++) {
        const uint32_t id = i % (uint32_t)out.ne[d];
        i /= (uint32_t)out.ne[d];
        if (a.ne[d] != 1) off += (int64_t)id * a.nb[d];
    }
    return off;
}

__global__ void repeat_kernel(float *y, bnb_cu_shape out, const char *a, bnb_cu_shape as, int at, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = bnb_cu_load(a + broadcast_offset(out, as, i), at);
}

__global__ void acc_grad_kernel(float *acc, const char *g, bnb_cu_shape gs, int gt, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        acc[i] += bnb_cu_load(g + bnb_cu_offset(gs, i), gt);
}

/* ------------------------------------------------------------------------------------------------ SUM_TO */

/* The reduced set of one output element: indices over the dims where out has 1 and a does not. */
struct reduce_set {
    int32_t ne[4]; /* a's extent on reduced dims, 1 on kept dims */
    uint32_t n;    /* product */
};

__device__ __forceinline__ int64_t sum_to_base(const bnb_cu_shape &out, const bnb_cu_shape &a, uint32_t o) {
    int64_t off = 0;
#pragma unroll
    for (int d = 0; d < 4; d++) {
        const uint32_t id = o % (uint32_t)out.ne[d];
        o /= (uint32_t)out.ne[d];
        off += (int64_t)id * a.nb[d]; /* id is 0 on reduced dims */
    }
    return off;
}

__device__ __forceinline__ int64_t reduce_offset(const reduce_set &r, const bnb_cu_shape &a, uint32_t j) {
    int64_t off = 0;
#pragma unroll
    for (int d = 0; d < 4; d++) {
        const uint32_t id = j % (uint32_t)r.ne[d];
        j /= (uint32_t)r.ne[d];
        off += (int64_t)id * a.nb[d];
    }
    return off;
}

/* small reduced sets: one thread per output element */
__global__ void sum_to_thread_kernel(float *y, bnb_cu_shape out, const char *a, bnb_cu_shape as, int at,
                                     reduce_set r, uint32_t n_out) {
    for (uint32_t o = blockIdx.x * blockDim.x + threadIdx.x; o < n_out; o += gridDim.x * blockDim.x) {
        const char *base = a + sum_to_base(out, as, o);
        float s = 0.f;
        for (uint32_t j = 0; j < r.n; j++) s += bnb_cu_load(base + reduce_offset(r, as, j), at);
        y[o] = s;
    }
}

/* large reduced sets: one block per output element */
__global__ void sum_to_block_kernel(float *y, bnb_cu_shape out, const char *a, bnb_cu_shape as, int at,
                                    reduce_set r) {
    __shared__ float sh[32];
    const uint32_t o = blockIdx.x;
    const char *base = a + sum_to_base(out, as, o);
    float s = 0.f;
    for (uint32_t j = threadIdx.x; j < r.n; j += blockDim.x) s += bnb_cu_load(base + reduce_offset(r, as, j), at);
    s = bnb_cu_block_sum(s, sh);
    if (threadIdx.x == 0) y[o] = s;
}

/* ------------------------------------------------------------------------------------------------ UNARY_BACK */

#define GELU_K 0.7978845608028654f
#define GELU_A 0.044715f

__device__ __forceinline__ float unary_deriv(int op, float x) {
    switch (op) {
    case BNB_OP_ABS: return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case BNB_OP_SQR: return 2.f * x;
    case BNB_OP_SQRT: return 0.5f / sqrtf(x);
    case BNB_OP_EXP: return expf(x);
    case BNB_OP_LOG: return 1.f / x;
    case BNB_OP_RELU: return x > 0.f ? 1.f : 0.f;
    case BNB_OP_GELU: {
        const float th = tanhf(GELU_K * (x + GELU_A * x * x * x));
        return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * GELU_K * (1.f + 3.f * GELU_A * x * x);
    }
    case BNB_OP_SILU: {
        const float s = 1.f / (1.f + expf(-x));
        return s * (1.f + x * (1.f - s));
    }
    case BNB_OP_TANH: {
        const float th = tanhf(x);
        return 1.f - th * th;
    }
    default: return __int_as_float(0x7fc00000); /* NaN */
    }
}

__global__ void unary_back_kernel(float *y, const char *gy, bnb_cu_shape gs, int gt, const char *x, bnb_cu_shape xs,
                                  int xt, int op, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = bnb_cu_load(gy + bnb_cu_offset(gs, i), gt) * unary_deriv(op, bnb_cu_load(x + bnb_cu_offset(xs, i), xt));
}

/* ------------------------------------------------------------------------------------------------ MAX_ROWS_BACK */

__global__ void max_rows_back_kernel(float *y, const char *gy, bnb_cu_shape gs, int gt, const char *x,
                                     bnb_cu_shape xs, int xt, int ne0) {
    __shared__ float sv[BW_BLOCK];
    __shared__ int si[BW_BLOCK];
    const uint32_t r = blockIdx.x;
    const char *xr = x + bnb_cu_row_offset(xs, r);
    float m = -INFINITY;
    int best = ne0; /* sentinel: larger than any index */
    for (int i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float v = bnb_cu_load(xr + (int64_t)i * xs.nb[0], xt);
        if (best == ne0 || v > m) { /* first maximum of this thread's (increasing) subset */
            m = v;
            best = i;
        }
    }
    sv[threadIdx.x] = m;
    si[threadIdx.x] = best;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float v2 = sv[threadIdx.x + s];
            const int i2 = si[threadIdx.x + s];
            if (v2 > sv[threadIdx.x] || (v2 == sv[threadIdx.x] && i2 < si[threadIdx.x])) {
                sv[threadIdx.x] = v2;
                si[threadIdx.x] = i2;
            }
        }
        __syncthreads();
    }
    const int arg = si[0] < ne0 ? si[0] : 0;
    const float g = bnb_cu_load(gy + bnb_cu_row_offset(gs, r), gt);
    float *yr = y + (int64_t)r * ne0;
    for (int i = threadIdx.x; i < ne0; i += blockDim.x) yr[i] = i == arg ? g : 0.f;
}

/* ------------------------------------------------------------------------------------------------ scatter-adds */

__global__ void get_rows_back_kernel(float *y, const char *gy, bnb_cu_shape gs, int gt, const char *idx,
                                     int64_t idx_nb, int K, int R, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const uint32_t k = i % (uint32_t)K, row = i / (uint32_t)K;
        const int32_t t = *(const int32_t *)(idx + (int64_t)row * idx_nb);
        if (t < 0 || t >= R) continue;
        atomicAdd(y + (int64_t)t * K + k, bnb_cu_load(gy + (int64_t)k * gs.nb[0] + (int64_t)row * gs.nb[1], gt));
    }
}

struct view_map {
    int64_t st[4];
    int64_t off;
};

__global__ void view_back_kernel(float *y, const char *gy, bnb_cu_shape gs, int gt, view_map vm, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        uint32_t j = i;
        int64_t dst = vm.off;
#pragma unroll
        for (int d = 0; d < 4; d++) {
            dst += (int64_t)(j % (uint32_t)gs.ne[d]) * vm.st[d];
            j /= (uint32_t)gs.ne[d];
        }
        atomicAdd(y + dst, bnb_cu_load(gy + bnb_cu_offset(gs, i), gt));
    }
}

/* ------------------------------------------------------------------------------------------------ row-wise nn */

__global__ void softmax_back_kernel(float *o, const char *gy, bnb_cu_shape gs, int gt, const char *y, bnb_cu_shape ys,
                                    int yt, int ne0, float scale) {
    __shared__ float sh[32];
    const uint32_t r = blockIdx.x;
    const char *gr = gy + bnb_cu_row_offset(gs, r), *yr = y + bnb_cu_row_offset(ys, r);
    float dot = 0.f;
    for (int i = threadIdx.x; i < ne0; i += blockDim.x)
        dot += bnb_cu_load(gr + (int64_t)i * gs.nb[0], gt) * bnb_cu_load(yr + (int64_t)i * ys.nb[0], yt);
    dot = bnb_cu_block_sum(dot, sh);
    float *orow = o + (int64_t)r * ne0;
    for (int i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float yv = bnb_cu_load(yr + (int64_t)i * ys.nb[0], yt);
        orow[i] = scale * yv * (bnb_cu_load(gr + (int64_t)i * gs.nb[0], gt) - dot);
    }
}

/* rms: dx = r (dy - y mean(dy y)); layer: dx = r (dy - mean(dy) - y mean(dy y)); y = (x - mu) r */
__global__ void norm_back_kernel(float *o, const char *gy, bnb_cu_shape gs, int gt, const char *x, bnb_cu_shape xs,
                                 int xt, int ne0, float eps, bool layer) {
    __shared__ float sh[32];
    const uint32_t r = blockIdx.x;
    const char *gr = gy + bnb_cu_row_offset(gs, r), *xr = x + bnb_cu_row_offset(xs, r);
    float mu = 0.f;
    if (layer) {
        float s = 0.f;
        for (int i = threadIdx.x; i < ne0; i += blockDim.x) s += bnb_cu_load(xr + (int64_t)i * xs.nb[0], xt);
        mu = bnb_cu_block_sum(s, sh) / (float)ne0;
    }
    float ss = 0.f, sg = 0.f, sgx = 0.f;
    for (int i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float xc = bnb_cu_load(xr + (int64_t)i * xs.nb[0], xt) - mu, g = bnb_cu_load(gr + (int64_t)i * gs.nb[0], gt);
        ss += xc * xc;
        sg += g;
        sgx += g * xc;
    }
    ss = bnb_cu_block_sum(ss, sh);
    sg = bnb_cu_block_sum(sg, sh);
    sgx = bnb_cu_block_sum(sgx, sh);
    const float rs = rsqrtf(ss / (float)ne0 + eps);
    const float mg = layer ? sg / (float)ne0 : 0.f, mgy = sgx * rs / (float)ne0;
    float *orow = o + (int64_t)r * ne0;
    for (int i = threadIdx.x; i < ne0; i += blockDim.x) {
        const float xc = bnb_cu_load(xr + (int64_t)i * xs.nb[0], xt) - mu, g = bnb_cu_load(gr + (int64_t)i * gs.nb[0], gt);
        orow[i] = rs * (g - mg - xc * rs * mgy);
    }
}

/* Inverse rotation, thread per element of [head_dim, heads, tokens]; angles in double as the forward. */
__global__ void rope_back_kernel(float *o, const char *gy, bnb_cu_shape gs, int gt, const char *pos, int64_t pos_nb,
                                 int n_rot, bool neox, double base, uint32_t n) {
    const int hd = gs.ne[0], half = n_rot / 2;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int k = (int)(i % (uint32_t)hd);
        const uint32_t row = i / (uint32_t)hd; /* (head, token) */
        const uint32_t tok = row / (uint32_t)gs.ne[1];
        const char *gr = gy + bnb_cu_row_offset(gs, row);
        if (k >= n_rot) {
            o[i] = bnb_cu_load(gr + (int64_t)k * gs.nb[0], gt);
            continue;
        }
        const int pair = neox ? (k < half ? k : k - half) : k / 2;
        const bool first = neox ? k < half : (k % 2) == 0;
        const int k0 = neox ? pair : 2 * pair, k1 = neox ? pair + half : 2 * pair + 1;
        const double p = (double)*(const int32_t *)(pos + (int64_t)tok * pos_nb);
        double sn, cs;
        sincos(p * pow(base, -2.0 * pair / n_rot), &sn, &cs);
        const float g0 = bnb_cu_load(gr + (int64_t)k0 * gs.nb[0], gt), g1 = bnb_cu_load(gr + (int64_t)k1 * gs.nb[0], gt);
        o[i] = first ? g0 * (float)cs + g1 * (float)sn : -g0 * (float)sn + g1 * (float)cs;
    }
}

__global__ void cross_entropy_back_kernel(float *o, const char *gy, int gyt, const char *lg, bnb_cu_shape ls, int lt,
                                          const char *tg, bnb_cu_shape ts, int V, float inv_rows) {
    __shared__ float sh[32];
    const uint32_t r = blockIdx.x;
    const char *xr = lg + bnb_cu_row_offset(ls, r);
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, bnb_cu_load(xr + (int64_t)i * ls.nb[0], lt));
    m = bnb_cu_block_max(m, sh);
    float s = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(bnb_cu_load(xr + (int64_t)i * ls.nb[0], lt) - m);
    s = bnb_cu_block_sum(s, sh);
    const float scale = bnb_cu_load(gy, gyt) * inv_rows, inv = 1.f / s;
    const int32_t t = *(const int32_t *)(tg + bnb_cu_offset(ts, r));
    float *orow = o + (int64_t)r * V;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float p = expf(bnb_cu_load(xr + (int64_t)i * ls.nb[0], lt) - m) * inv;
        orow[i] = scale * (p - (i == t ? 1.f : 0.f));
    }
}

/* ------------------------------------------------------------------------------------------------ dispatch */

static const char *D(const bnb_tensor *t) { return (const char *)t->data; }

extern "C" bool bnb_cuda_backward_supports(const bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_FILL: return true;
    case BNB_OP_REPEAT: case BNB_OP_SUM_TO: return bnb_type_is_float(node->src[0]->type);
    case BNB_OP_ACC_GRAD: return bnb_type_is_float(node->src[1]->type);
    case BNB_OP_UNARY_BACK: case BNB_OP_MAX_ROWS_BACK: case BNB_OP_SOFTMAX_BACK: case BNB_OP_RMS_NORM_BACK:
    case BNB_OP_LAYER_NORM_BACK:
        return bnb_type_is_float(node->src[0]->type) && bnb_type_is_float(node->src[1]->type);
    case BNB_OP_GET_ROWS_BACK: case BNB_OP_ROPE_BACK:
        return bnb_type_is_float(node->src[0]->type) && node->src[1]->type == BNB_TYPE_I32;
    case BNB_OP_VIEW_BACK: return bnb_type_is_float(node->src[0]->type);
    case BNB_OP_CROSS_ENTROPY_BACK:
        return bnb_type_is_float(node->src[0]->type) && bnb_type_is_float(node->src[1]->type) &&
               node->src[2]->type == BNB_TYPE_I32;
    default: return false;
    }
}

extern "C" bnb_status bnb_cuda_backward(bnb_cuda_ctx *c, bnb_tensor *node) {
    float *y = (float *)node->data;
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    const uint32_t n = (uint32_t)bnb_nelements(node);
    const unsigned grid = bnb_cu_grid(c, n, BW_BLOCK);
    const unsigned rows = (unsigned)bnb_nrows(node);
    cudaStream_t st = c->stream;
    switch (node->op) {
    case BNB_OP_FILL:
        fill_kernel<<<grid, BW_BLOCK, 0, st>>>(y, n, bnb_get_op_f32(node, 0));
        BNB_CUDA_CHECK_LAUNCH("bnb_fill");
        return BNB_OK;
    case BNB_OP_REPEAT:
        repeat_kernel<<<grid, BW_BLOCK, 0, st>>>(y, bnb_cu_shape_of(node), D(a), bnb_cu_shape_of(a), a->type, n);
        BNB_CUDA_CHECK_LAUNCH("bnb_repeat");
        return BNB_OK;
    case BNB_OP_SUM_TO: {
        reduce_set r;
        r.n = 1;
        for (int d = 0; d < 4; d++) {
            r.ne[d] = node->ne[d] == a->ne[d] ? 1 : (int32_t)a->ne[d];
            r.n *= (uint32_t)r.ne[d];
        }
        if (r.n < 64)
            sum_to_thread_kernel<<<grid, BW_BLOCK, 0, st>>>(y, bnb_cu_shape_of(node), D(a), bnb_cu_shape_of(a), a->type, r, n);
        else
            sum_to_block_kernel<<<n, BW_BLOCK, 0, st>>>(y, bnb_cu_shape_of(node), D(a), bnb_cu_shape_of(a), a->type, r);
        BNB_CUDA_CHECK_LAUNCH("bnb_sum_to");
        return BNB_OK;
    }
    case BNB_OP_ACC_GRAD:
        acc_grad_kernel<<<grid, BW_BLOCK, 0, st>>>(y, D(b), bnb_cu_shape_of(b), b->type, n);
        BNB_CUDA_CHECK_LAUNCH("bnb_acc_grad");
        return BNB_OK;
    case BNB_OP_UNARY_BACK:
        unary_back_kernel<<<grid, BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, D(b), bnb_cu_shape_of(b),
                                                     b->type, node->op_params[0], n);
        BNB_CUDA_CHECK_LAUNCH("bnb_unary_back");
        return BNB_OK;
    case BNB_OP_MAX_ROWS_BACK:
        max_rows_back_kernel<<<rows, BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, D(b), bnb_cu_shape_of(b),
                                                        b->type, (int)node->ne[0]);
        BNB_CUDA_CHECK_LAUNCH("bnb_max_rows_back");
        return BNB_OK;
    case BNB_OP_GET_ROWS_BACK: {
        BNB_CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)n * sizeof(float), st), "bnb_get_rows_back: cudaMemsetAsync");
        const uint32_t ng = (uint32_t)bnb_nelements(a);
        if (ng == 0) return BNB_OK;
        get_rows_back_kernel<<<bnb_cu_grid(c, ng, BW_BLOCK), BW_BLOCK, 0, st>>>(
            y, D(a), bnb_cu_shape_of(a), a->type, D(b), (int64_t)b->nb[0], (int)node->ne[0], (int)node->ne[1], ng);
        BNB_CUDA_CHECK_LAUNCH("bnb_get_rows_back");
        return BNB_OK;
    }
    case BNB_OP_VIEW_BACK: {
        BNB_CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)n * sizeof(float), st), "bnb_view_back: cudaMemsetAsync");
        const uint32_t ng = (uint32_t)bnb_nelements(a);
        if (ng == 0) return BNB_OK;
        view_map vm;
        for (int d = 0; d < 4; d++) vm.st[d] = bnb_get_op_i64(node, 2 * d);
        vm.off = bnb_get_op_i64(node, 8);
        view_back_kernel<<<bnb_cu_grid(c, ng, BW_BLOCK), BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, vm, ng);
        BNB_CUDA_CHECK_LAUNCH("bnb_view_back");
        return BNB_OK;
    }
    case BNB_OP_SOFTMAX_BACK:
        softmax_back_kernel<<<rows, BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, D(b), bnb_cu_shape_of(b),
                                                       b->type, (int)node->ne[0], bnb_get_op_f32(node, 0));
        BNB_CUDA_CHECK_LAUNCH("bnb_softmax_back");
        return BNB_OK;
    case BNB_OP_RMS_NORM_BACK:
    case BNB_OP_LAYER_NORM_BACK:
        norm_back_kernel<<<rows, BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, D(b), bnb_cu_shape_of(b),
                                                    b->type, (int)node->ne[0], bnb_get_op_f32(node, 0),
                                                    node->op == BNB_OP_LAYER_NORM_BACK);
        BNB_CUDA_CHECK_LAUNCH("bnb_norm_back");
        return BNB_OK;
    case BNB_OP_ROPE_BACK:
        rope_back_kernel<<<grid, BW_BLOCK, 0, st>>>(y, D(a), bnb_cu_shape_of(a), a->type, D(b), (int64_t)b->nb[0],
                                                    node->op_params[0], node->op_params[1] == BNB_ROPE_NEOX,
                                                    (double)bnb_get_op_f32(node, 2), n);
        BNB_CUDA_CHECK_LAUNCH("bnb_rope_back");
        return BNB_OK;
    case BNB_OP_CROSS_ENTROPY_BACK: {
        const bnb_tensor *tg = node->src[2];
        cross_entropy_back_kernel<<<rows, BW_BLOCK, 0, st>>>(y, D(a), a->type, D(b), bnb_cu_shape_of(b), b->type, D(tg),
                                                             bnb_cu_shape_of(tg), (int)node->ne[0], 1.f / (float)rows);
        BNB_CUDA_CHECK_LAUNCH("bnb_cross_entropy_back");
        return BNB_OK;
    }
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cuda backend: %s is not an autodiff op", bnb_op_name(node->op));
    }
}
