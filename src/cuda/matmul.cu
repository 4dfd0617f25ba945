/* CUDA MUL_MAT through cuBLASLt. ggml convention: out[n][m] = sum_k a[m][k] b[n][k], a [K, M, A2, A3] (rows of K),
 * b [K, N, B2, B3], out F32 [M, N, B2, B3]. Column-major, a is a K x M matrix (ld = a's row stride), b is K x N and
 * out is M x N (ld M), so out = Aᵀ · B: transa = T, transb = N.
 * Inputs F32/F16/BF16, F32 accumulate and output; F32 x F32 uses full FP32 unless TF32 is allowed.
 * Mixed types: a 16-bit a with an F32 b converts b to a's type; otherwise the 16-bit side(s) go to F32 (in scratch).
 * Batches: one GEMM when a is not batched and b's batches are evenly spaced rows; a strided-batched GEMM when strides
 * are uniform; a loop over batches otherwise (a broadcast over b's batches: a batch = b batch / ratio). */
#include "cuda-common.cuh"

#include <cublasLt.h>
#include <stdlib.h>

#define CACHE_ENTRIES 128

/* ------------------------------------------------------------------------------------------------ descriptor cache */
typedef struct {
    int32_t m, n, k, batch;
    int32_t type; /* bnb_type of A and B */
    int32_t compute;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c; /* elements */
    uint32_t align_a, align_b, align_c;
    uint32_t pad;
} mm_key;

typedef struct {
    mm_key key;
    bool valid;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} mm_entry;

struct bnb_cuda_mm_cache {
    mm_entry e[CACHE_ENTRIES];
    int next;
};

static void entry_destroy(mm_entry *e) {
    if (!e->valid) return;
    cublasLtMatmulDescDestroy(e->op);
    cublasLtMatrixLayoutDestroy(e->la);
    cublasLtMatrixLayoutDestroy(e->lb);
    cublasLtMatrixLayoutDestroy(e->lc);
    e->valid = false;
}

extern "C" struct bnb_cuda_mm_cache *bnb_cuda_mm_cache_new(void) {
    return (struct bnb_cuda_mm_cache *)calloc(1, sizeof(struct bnb_cuda_mm_cache));
}

extern "C" void bnb_cuda_mm_cache_free(struct bnb_cuda_mm_cache *cache) {
    if (!cache) return;
    for (int i = 0; i < CACHE_ENTRIES; i++) entry_destroy(&cache->e[i]);
    free(cache);
}

static cudaDataType_t cuda_type(int t) {
    return t == BNB_TYPE_F16 ? CUDA_R_16F : t == BNB_TYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

#define LT_TRY(call, what)                                                                                            \
    do {                                                                                                              \
        cublasStatus_t s_ = (call);                                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                            \
            st = bnb_fail(BNB_ERR_BACKEND, "bnb_mul_mat: %s failed: %s", what, cublasLtGetStatusString(s_));         \
            goto fail;                                                                                                \
        }                                                                                                             \
    } while (0)

static bnb_status layout_new(cublasLtMatrixLayout_t *l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                             int32_t batch, int64_t stride) {
    bnb_status st = BNB_OK;
    *l = NULL;
    LT_TRY(cublasLtMatrixLayoutCreate(l, t, (uint64_t)rows, (uint64_t)cols, ld), "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch),
               "set batch count");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
               "set batch stride");
    }
    return BNB_OK;
fail:
    if (*l) cublasLtMatrixLayoutDestroy(*l);
    *l = NULL;
    return st;
}

/* Build descriptors and pick an algorithm for key (host-side only: no stream work). */
static bnb_status entry_create(bnb_cuda_ctx *c, const mm_key *k, mm_entry *e) {
    bnb_status st = BNB_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    uint64_t ws = c->workspace_size;
    cudaDataType_t dt = cuda_type(k->type);
    memset(e, 0, sizeof *e);
    LT_TRY(cublasLtMatmulDescCreate(&e->op, (cublasComputeType_t)k->compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
    LT_TRY(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set transb");
    if ((st = layout_new(&e->la, dt, k->k, k->m, k->lda, k->batch, k->stride_a)) != BNB_OK) goto fail;
    if ((st = layout_new(&e->lb, dt, k->k, k->n, k->ldb, k->batch, k->stride_b)) != BNB_OK) goto fail;
    if ((st = layout_new(&e->lc, CUDA_R_32F, k->m, k->n, k->ldc, k->batch, k->stride_c)) != BNB_OK) goto fail;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
           "set workspace size");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->align_a,
                                                sizeof k->align_a), "set alignment A");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->align_b,
                                                sizeof k->align_b), "set alignment B");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->align_c,
                                                sizeof k->align_c), "set alignment C");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align_c,
                                                sizeof k->align_c), "set alignment D");
    LT_TRY(cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)c->lt, e->op, e->la, e->lb, e->lc, e->lc, pref, 1, &res,
                                          &nres), "cublasLtMatmulAlgoGetHeuristic");
    if (nres < 1) {
        st = bnb_fail(BNB_ERR_BACKEND, "bnb_mul_mat: cuBLASLt has no algorithm for M=%d N=%d K=%d batch=%d type %s",
                      k->m, k->n, k->k, k->batch, bnb_type_name((bnb_type)k->type));
        goto fail;
    }
    e->algo = res.algo;
    e->key = *k;
    e->valid = true;
    cublasLtMatmulPreferenceDestroy(pref);
    return BNB_OK;
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    e->valid = true; /* destroy what exists (NULL handles are skipped by cuBLASLt) */
    if (e->op) cublasLtMatmulDescDestroy(e->op);
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
    memset(e, 0, sizeof *e);
    return st;
}

static bnb_status cache_get(bnb_cuda_ctx *c, const mm_key *k, mm_entry **out) {
    struct bnb_cuda_mm_cache *cache = c->mm_cache;
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        if (cache->e[i].valid && memcmp(&cache->e[i].key, k, sizeof *k) == 0) {
            *out = &cache->e[i];
            return BNB_OK;
        }
    }
    mm_entry *e = &cache->e[cache->next];
    cache->next = (cache->next + 1) % CACHE_ENTRIES;
    entry_destroy(e);
    bnb_status st = entry_create(c, k, e);
    if (st == BNB_OK) *out = e;
    return st;
}

static uint32_t align_of(uintptr_t v) {
    uint32_t a = 256;
    while (a > 1 && (v % a) != 0) a >>= 1;
    return a;
}

/* ------------------------------------------------------------------------------------------------ operands */
typedef struct {
    const char *data;
    bnb_type type;
    int64_t ne[4];
    int64_t nb[4]; /* bytes */
} operand;

static operand operand_of(const bnb_tensor *t) {
    operand o;
    o.data = (const char *)t->data;
    o.type = t->type;
    for (int i = 0; i < 4; i++) {
        o.ne[i] = t->ne[i];
        o.nb[i] = (int64_t)t->nb[i];
    }
    return o;
}

/* cuBLASLt needs element-multiple strides and ld >= K. */
static bool operand_usable(const bnb_tensor *t) {
    int64_t es = (int64_t)bnb_type_size(t->type);
    for (int i = 1; i < 4; i++)
        if ((int64_t)t->nb[i] % es != 0) return false;
    return t->ne[1] <= 1 || (int64_t)t->nb[1] / es >= t->ne[0];
}

typedef struct {
    bnb_type gemm_type; /* type both operands have when the GEMM runs */
    bool convert_a, convert_b;
    size_t off_b, bytes; /* scratch layout: a' at 0, b' at off_b */
} mm_plan;

static mm_plan make_plan(const bnb_tensor *node) {
    const bnb_tensor *a = node->src[0], *b = node->src[1];
    mm_plan p;
    memset(&p, 0, sizeof p);
    if (a->type == b->type) p.gemm_type = a->type;
    else if (b->type == BNB_TYPE_F32) p.gemm_type = a->type; /* 16-bit weights, f32 activations */
    else p.gemm_type = BNB_TYPE_F32;
    p.convert_a = a->type != p.gemm_type || !operand_usable(a);
    p.convert_b = b->type != p.gemm_type || !operand_usable(b);
    size_t es = bnb_type_size(p.gemm_type);
    size_t bytes_a = p.convert_a ? BNB_PAD((size_t)bnb_nelements(a) * es, 256) : 0;
    size_t bytes_b = p.convert_b ? BNB_PAD((size_t)bnb_nelements(b) * es, 256) : 0;
    p.off_b = bytes_a;
    p.bytes = bytes_a + bytes_b;
    return p;
}

extern "C" size_t bnb_cuda_mul_mat_scratch_size(const bnb_tensor *node) { return make_plan(node).bytes; }

__global__ void to_contiguous_kernel(const char *__restrict__ x, bnb_cu_shape xs, int tx, char *__restrict__ y, int ty,
                                     int esy, uint32_t n) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        bnb_cu_store(y + (int64_t)i * esy, ty, bnb_cu_load(x + bnb_cu_offset(xs, i), tx));
}

/* Convert t into contiguous scratch of type `type`; o then describes the copy. */
static bnb_status convert_operand(bnb_cuda_ctx *c, const bnb_tensor *t, bnb_type type, char *dst, operand *o) {
    uint32_t n = (uint32_t)bnb_nelements(t);
    int es = (int)bnb_type_size(type);
    to_contiguous_kernel<<<bnb_cu_grid(c, n, 256), 256, 0, c->stream>>>((const char *)t->data, bnb_cu_shape_of(t),
                                                                         (int)t->type, dst, (int)type, es, n);
    BNB_CUDA_CHECK_LAUNCH("bnb_mul_mat: operand conversion");
    o->data = dst;
    o->type = type;
    int64_t stride = es;
    for (int i = 0; i < 4; i++) {
        o->ne[i] = t->ne[i];
        o->nb[i] = stride;
        stride *= t->ne[i];
    }
    return BNB_OK;
}

/* ------------------------------------------------------------------------------------------------ GEMM */
static bnb_status gemm(bnb_cuda_ctx *c, mm_key *k, const void *A, const void *B, void *C) {
    k->align_a = BNB_MIN(align_of((uintptr_t)A), k->batch > 1 ? align_of((uintptr_t)(k->stride_a * (int64_t)bnb_type_size((bnb_type)k->type))) : 256u);
    k->align_b = BNB_MIN(align_of((uintptr_t)B), k->batch > 1 ? align_of((uintptr_t)(k->stride_b * (int64_t)bnb_type_size((bnb_type)k->type))) : 256u);
    k->align_c = BNB_MIN(align_of((uintptr_t)C), k->batch > 1 ? align_of((uintptr_t)(k->stride_c * 4)) : 256u);
    mm_entry *e = NULL;
    bnb_status st = cache_get(c, k, &e);
    if (st != BNB_OK) return st;
    const float alpha = 1.f, beta = 0.f;
    cublasStatus_t s = cublasLtMatmul((cublasLtHandle_t)c->lt, e->op, &alpha, A, e->la, B, e->lb, &beta, C, e->lc, C,
                                      e->lc, &e->algo, c->workspace, c->workspace_size, c->stream);
    if (s != CUBLAS_STATUS_SUCCESS)
        return bnb_fail(BNB_ERR_BACKEND, "bnb_mul_mat: cublasLtMatmul (M=%d N=%d K=%d batch=%d) failed: %s", k->m, k->n,
                        k->k, k->batch, cublasLtGetStatusString(s));
    return BNB_OK;
}

/* Uniform stride (elements) over the B2*B3 batches of an operand, or -1. */
static int64_t batch_stride(const operand *o, int64_t es) {
    if (o->ne[2] == 1 && o->ne[3] == 1) return 0;
    if (o->ne[3] == 1) return o->nb[2] / es;
    if (o->ne[2] == 1) return o->nb[3] / es;
    return o->nb[3] == o->nb[2] * o->ne[2] ? o->nb[2] / es : -1;
}

extern "C" bnb_status bnb_cuda_mul_mat(bnb_cuda_ctx *c, bnb_tensor *node) {
    const bnb_tensor *ta = node->src[0], *tb = node->src[1];
    mm_plan p = make_plan(node);
    operand a = operand_of(ta), b = operand_of(tb);
    bnb_status st;
    if (p.convert_a && (st = convert_operand(c, ta, p.gemm_type, (char *)c->scratch, &a)) != BNB_OK) return st;
    if (p.convert_b && (st = convert_operand(c, tb, p.gemm_type, (char *)c->scratch + p.off_b, &b)) != BNB_OK) return st;

    const int64_t K = a.ne[0], M = a.ne[1], N = b.ne[1], B2 = b.ne[2], B3 = b.ne[3];
    const int64_t es = (int64_t)bnb_type_size(p.gemm_type);
    float *out = (float *)node->data;
    if (K == 0) /* empty sum: zeros */
        return bnb_cuda_status(cudaMemsetAsync(out, 0, (size_t)bnb_nelements(node) * 4, c->stream), "bnb_mul_mat: memset");

    mm_key k;
    memset(&k, 0, sizeof k);
    k.type = (int32_t)p.gemm_type;
    k.compute = (int32_t)(p.gemm_type == BNB_TYPE_F32 && c->allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
    k.k = (int32_t)K;
    k.m = (int32_t)M;
    k.lda = M > 1 ? a.nb[1] / es : K;
    k.ldc = M;

    const int64_t nbatch = B2 * B3;
    const bool a_single = a.ne[2] == 1 && a.ne[3] == 1;
    /* 1) a not batched and b's columns (rows of K) evenly spaced across batches: one GEMM, N * batches columns */
    const int64_t cols = N * nbatch;
    int64_t row = N > 1 ? b.nb[1] : B2 > 1 ? b.nb[2] : B3 > 1 ? b.nb[3] : K * es;
    bool uniform = (B2 == 1 || b.nb[2] == row * N) && (B3 == 1 || b.nb[3] == row * N * B2);
    int64_t ldb = cols > 1 ? row / es : K;
    if (a_single && uniform && ldb >= K && cols <= INT32_MAX) {
        k.n = (int32_t)cols;
        k.ldb = ldb;
        k.batch = 1;
        return gemm(c, &k, a.data, b.data, out);
    }
    /* 2) strided batched */
    int64_t sa = batch_stride(&a, es), sb = batch_stride(&b, es);
    bool a_full = a.ne[2] == B2 && a.ne[3] == B3;
    k.n = (int32_t)N;
    k.ldb = N > 1 ? b.nb[1] / es : K;
    if (sb >= 0 && ((a_full && sa >= 0) || a_single) && nbatch <= INT32_MAX) {
        k.batch = (int32_t)nbatch;
        k.stride_a = a_single ? 0 : sa;
        k.stride_b = sb;
        k.stride_c = M * N;
        if (!(a_single && nbatch > 1)) return gemm(c, &k, a.data, b.data, out);
    }
    /* 3) one GEMM per batch (a broadcast: a batch = b batch / ratio) */
    k.batch = 1;
    k.stride_a = k.stride_b = k.stride_c = 0;
    const int64_t r2 = B2 / a.ne[2], r3 = B3 / a.ne[3];
    for (int64_t i3 = 0; i3 < B3; i3++) {
        for (int64_t i2 = 0; i2 < B2; i2++) {
            const char *pa = a.data + (i2 / r2) * a.nb[2] + (i3 / r3) * a.nb[3];
            const char *pb = b.data + i2 * b.nb[2] + i3 * b.nb[3];
            float *pc = out + (i2 + i3 * B2) * M * N;
            if ((st = gemm(c, &k, pa, pb, pc)) != BNB_OK) return st;
        }
    }
    return BNB_OK;
}
