/* CUDA backend specifics: device creation errors, the memory pool, host<->device copies, element-count limits, a
 * large tensor, mul_mat dispatch paths (batched, broadcast, strided, mixed types) vs float64, and CUDA-graph
 * capture/replay (same results as plain launches, new input data picked up, re-capture on change, disabling).
 * Exits 77 (CTest skip) without a GPU, after checking that creating the backend fails cleanly.
 * BNB_TEST_QUICK=1 skips the 2 GiB tensor (used under compute-sanitizer). */
#include "test-common.h"

#include "cuda/backend-cuda.h"

#include <math.h>

static tc_rng rng;

static bnb_context *new_ctx(size_t mem, bool no_alloc) {
    return bnb_context_new((bnb_context_params){.mem_size = mem, .no_alloc = no_alloc});
}

static void fill_random(bnb_tensor *t, float *host) {
    int64_t n = bnb_nelements(t);
    tc_fill_signed(&rng, host, n, 0.05f, 1.0f);
    tc_round_to_type(host, n, t->type);
    bnb_tensor_set_f32(t, host, n);
}

/* ---------------------------------------------------------------------------------------------- creation */
static void test_creation(void) {
    bnb_backend *be = bnb_backend_cuda_new(1000);
    tc_check(!be && bnb_last_status() == BNB_ERR_NO_DEVICE && strstr(bnb_last_error(), "bnb_backend_cuda_new"),
             "cuda_new(1000): NULL + BNB_ERR_NO_DEVICE (%s)", bnb_last_error());
    be = bnb_backend_cuda_new(-1);
    tc_check(!be && bnb_last_status() == BNB_ERR_NO_DEVICE, "cuda_new(-1) fails: %s", bnb_last_error());
    if (be) bnb_backend_free(be);
}

/* ---------------------------------------------------------------------------------------------- pool + copies */
static void test_pool_and_copies(bnb_backend *be) {
    bnb_cuda_pool_stats s0 = bnb_cuda_get_pool_stats(be);
    bnb_buffer *b1 = bnb_backend_alloc_buffer(be, 10u << 20);
    if (!tc_require(b1 != NULL, "alloc 10 MiB: %s", bnb_last_error())) return;
    void *p1 = b1->base;
    bnb_cuda_pool_stats s1 = bnb_cuda_get_pool_stats(be);
    tc_check(s1.n_cuda_malloc == s0.n_cuda_malloc + 1 && s1.bytes_in_use >= s0.bytes_in_use + (10u << 20),
             "first alloc calls cudaMalloc once (%llu -> %llu)", (unsigned long long)s0.n_cuda_malloc,
             (unsigned long long)s1.n_cuda_malloc);
    bnb_buffer_free(b1);
    bnb_cuda_pool_stats s2 = bnb_cuda_get_pool_stats(be);
    tc_check(s2.bytes_in_use == s0.bytes_in_use && s2.bytes_cached >= (10u << 20), "freed block is cached");
    bnb_buffer *b2 = bnb_backend_alloc_buffer(be, (10u << 20) - 1000);
    bnb_cuda_pool_stats s3 = bnb_cuda_get_pool_stats(be);
    tc_check(b2 && b2->base == p1 && s3.n_cuda_malloc == s2.n_cuda_malloc && s3.n_reused == s2.n_reused + 1,
             "same size class reuses the block without cudaMalloc");
    bnb_buffer_free(b2);

    /* raw byte round trips at odd sizes and offsets */
    const size_t sizes[] = {1, 3, 4097, (size_t)3 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k], off = k * 7;
        bnb_context *ctx = new_ctx(1 << 16, true);
        bnb_tensor *t = bnb_new_tensor_1d(ctx, BNB_TYPE_U8, (int64_t)(n + off));
        bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
        uint8_t *src = tc_malloc(n), *dst = tc_malloc(n);
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)(tc_rng_next(&rng) | 1);
        memset(dst, 0, n);
        bnb_status st1 = bnb_tensor_set(t, src, off, n), st2 = bnb_tensor_get(t, dst, off, n);
        tc_check(st1 == BNB_OK && st2 == BNB_OK && memcmp(src, dst, n) == 0, "byte round trip of %zu at offset %zu", n, off);
        free(src);
        free(dst);
        bnb_buffer_free(buf);
        bnb_context_free(ctx);
    }
    /* f32 <-> f16/bf16 through the device */
    const bnb_type types[] = {BNB_TYPE_F32, BNB_TYPE_F16, BNB_TYPE_BF16};
    for (int k = 0; k < 3; k++) {
        bnb_context *ctx = new_ctx(1 << 16, true);
        bnb_tensor *t = bnb_new_tensor_2d(ctx, types[k], 333, 7);
        bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
        int64_t n = bnb_nelements(t);
        float *x = tc_malloc((size_t)n * 4), *y = tc_malloc((size_t)n * 4);
        fill_random(t, x);
        for (int64_t i = 0; i < n; i++) y[i] = NAN;
        bnb_tensor_get_f32(t, y, n);
        tc_check(memcmp(x, y, (size_t)n * 4) == 0, "set_f32/get_f32 round trip %s", bnb_type_name(types[k]));
        free(x);
        free(y);
        bnb_buffer_free(buf);
        bnb_context_free(ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- limits, large */
static void test_limits(bnb_backend *be) {
    bnb_context *ctx = new_ctx(1 << 16, true);
    bnb_tensor *a = bnb_new_tensor_1d(ctx, BNB_TYPE_F16, ((int64_t)1 << 31) + 8);
    bnb_tensor *y = bnb_neg(ctx, a);
    bnb_graph *g = bnb_graph_new(ctx, 8);
    bnb_graph_build(g, y);
    tc_check(!bnb_backend_supports(be, y), "a node with > 2^31 elements is not supported");
    bnb_status st = bnb_graph_compute(be, g);
    tc_check(st == BNB_ERR_UNSUPPORTED && strstr(bnb_last_error(), "bnb_neg"),
             "compute of a 2^31+8 element neg: %s (%s)", bnb_status_name(st), bnb_last_error());
    bnb_context_free(ctx);

    const char *quick = getenv("BNB_TEST_QUICK");
    if (quick && quick[0] == '1') return;
    /* 2 GiB + 12 bytes of f32: byte offsets beyond 2^31 in the vector path */
    int64_t n = ((int64_t)1 << 29) + 3;
    ctx = new_ctx(1 << 16, true);
    a = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, n);
    y = bnb_scale(ctx, a, -2.0f);
    g = bnb_graph_new(ctx, 8);
    bnb_graph_build(g, y);
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    if (!tc_require(buf != NULL, "alloc 2 GiB: %s", bnb_last_error())) {
        bnb_context_free(ctx);
        return;
    }
    float *x = tc_malloc((size_t)n * 4), *out = tc_malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000003u) * 1e-3f + 0.5f;
    bnb_tensor_set_f32(a, x, n);
    st = bnb_graph_compute(be, g);
    for (int64_t i = 0; i < n; i++) out[i] = 0.f;
    bnb_tensor_get_f32(y, out, n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += out[i] != -2.0f * x[i];
    tc_check(st == BNB_OK && bad == 0, "scale of %lld f32 (2 GiB): %lld wrong (%s)", (long long)n, (long long)bad,
             bnb_status_name(st));
    free(x);
    free(out);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- mul_mat paths */
/* out[b][n][m] = sum_k a[ab][m][k] b[b][n][k] with a batch = b batch / ratio; host copies are dense [K,M,A2,A3]. */
static void mm_ref(const float *a, const float *b, double *out, int64_t K, int64_t M, int64_t N, int64_t A2,
                   int64_t A3, int64_t B2, int64_t B3) {
    for (int64_t i3 = 0; i3 < B3; i3++)
        for (int64_t i2 = 0; i2 < B2; i2++) {
            const float *ab = a + ((i3 / (B3 / A3)) * A2 + i2 / (B2 / A2)) * K * M;
            const float *bb = b + (i3 * B2 + i2) * K * N;
            double *ob = out + (i3 * B2 + i2) * M * N;
            for (int64_t n = 0; n < N; n++)
                for (int64_t m = 0; m < M; m++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++) s += (double)ab[m * K + k] * (double)bb[n * K + k];
                    ob[n * M + m] = s;
                }
        }
}

typedef struct {
    const char *name;
    bnb_type ta, tb;
    int64_t K, M, N, A2, A3, B2, B3;
    bool permute_b; /* b built as a transposed view (rows not contiguous -> conversion path) */
    double tol;
} mm_case;

static void test_mul_mat_case(bnb_backend *be, const mm_case *c) {
    bnb_context *ctx = new_ctx(1 << 20, true);
    bnb_tensor *a = bnb_new_tensor_4d(ctx, c->ta, c->K, c->M, c->A2, c->A3);
    bnb_tensor *b, *bsrc = NULL;
    if (c->permute_b) { /* storage [N, K] per batch, viewed as [K, N]: nb[0] = N*es -> not usable; make it cont */
        bsrc = bnb_new_tensor_4d(ctx, c->tb, c->K, c->N * 2, c->B2, c->B3);
        b = bnb_view(ctx, bsrc, 4, (int64_t[]){c->K, c->N, c->B2, c->B3}, (size_t[]){bsrc->nb[0], bsrc->nb[1] * 2,
                     bsrc->nb[2], bsrc->nb[3]}, bsrc->nb[1]); /* every other row: row stride 2K */
    } else {
        b = bnb_new_tensor_4d(ctx, c->tb, c->K, c->N, c->B2, c->B3);
    }
    bnb_tensor *y = bnb_mul_mat(ctx, a, b);
    bnb_graph *g = bnb_graph_new(ctx, 16);
    if (!tc_require(y && bnb_graph_build(g, y) == BNB_OK, "%s: build: %s", c->name, bnb_last_error())) {
        bnb_context_free(ctx);
        return;
    }
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    int64_t na = bnb_nelements(a), nb = c->K * c->N * c->B2 * c->B3, ny = bnb_nelements(y);
    float *ha = tc_malloc((size_t)na * 4), *hb = tc_malloc((size_t)nb * 4), *hy = tc_malloc((size_t)ny * 4);
    double *ref = tc_malloc((size_t)ny * 8);
    fill_random(a, ha);
    if (bsrc) { /* fill the whole source, remember the viewed rows */
        int64_t ns = bnb_nelements(bsrc);
        float *hs = tc_malloc((size_t)ns * 4);
        fill_random(bsrc, hs);
        for (int64_t bt = 0; bt < c->B2 * c->B3; bt++)
            for (int64_t n = 0; n < c->N; n++)
                memcpy(hb + (bt * c->N + n) * c->K, hs + (bt * 2 * c->N + 2 * n + 1) * c->K, (size_t)c->K * 4);
        free(hs);
    } else {
        fill_random(b, hb);
    }
    mm_ref(ha, hb, ref, c->K, c->M, c->N, c->A2, c->A3, c->B2, c->B3);
    for (int64_t i = 0; i < ny; i++) hy[i] = NAN;
    bnb_status st = bnb_graph_compute(be, g);
    bnb_tensor_get_f32(y, hy, ny);
    double err = tc_norm_rel_err(hy, ref, ny);
    tc_check(st == BNB_OK && err <= c->tol, "mul_mat %s: rel err %.2e (tol %.0e) %s", c->name, err, c->tol,
             st == BNB_OK ? "" : bnb_last_error());
    free(ha);
    free(hb);
    free(hy);
    free(ref);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

static void test_mul_mat(bnb_backend *be) {
    const bnb_type F32 = BNB_TYPE_F32, F16 = BNB_TYPE_F16, BF16 = BNB_TYPE_BF16;
    const mm_case cases[] = {
        {"f32 single", F32, F32, 67, 45, 33, 1, 1, 1, 1, false, 1e-6},
        {"f32 a broadcast, b batches merged", F32, F32, 64, 40, 8, 1, 1, 3, 2, false, 1e-6},
        {"f16 strided batched", F16, F16, 128, 32, 16, 3, 2, 3, 2, false, 1e-5},
        {"bf16 a batch broadcast (loop)", BF16, BF16, 96, 24, 10, 2, 1, 6, 2, false, 1e-5},
        {"f32 b rows strided", F32, F32, 40, 20, 12, 1, 1, 2, 1, true, 1e-6},
        {"f16 a with f32 b (b -> f16)", F16, F32, 80, 36, 9, 1, 1, 1, 1, false, 2e-3},
        {"bf16 a with f32 b (b -> bf16)", BF16, F32, 80, 36, 9, 1, 1, 1, 1, false, 1e-2},
        {"f32 a with bf16 b (b -> f32)", F32, BF16, 72, 20, 5, 1, 1, 2, 1, false, 1e-6},
        {"f16 a with bf16 b (both -> f32)", F16, BF16, 72, 20, 5, 1, 1, 1, 1, false, 1e-6},
        {"f32 M=1 N=1", F32, F32, 300, 1, 1, 1, 1, 1, 1, false, 1e-6},
        {"f32 K odd", F32, F32, 3, 5, 7, 1, 1, 1, 1, false, 1e-6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_mul_mat_case(be, &cases[i]);
}

/* ---------------------------------------------------------------------------------------------- graph capture */
typedef struct {
    bnb_context *ctx;
    bnb_tensor *x, *w, *bias, *idx, *emb, *out, *sm;
    bnb_graph *g;
    bnb_buffer *buf;
    int64_t K, M, N, V;
} mlp;

/* out = sum_rows(softmax(gelu(w x + bias) * s)) + get_rows(emb, idx)-derived term, all in one graph. */
static bool mlp_build(bnb_backend *be, mlp *m) {
    m->K = 48, m->M = 40, m->N = 6, m->V = 10;
    m->ctx = new_ctx(1 << 20, true);
    m->x = bnb_new_tensor_2d(m->ctx, BNB_TYPE_F32, m->K, m->N);
    m->w = bnb_new_tensor_2d(m->ctx, BNB_TYPE_F16, m->K, m->M);
    m->bias = bnb_new_tensor_1d(m->ctx, BNB_TYPE_F32, m->M);
    m->emb = bnb_new_tensor_2d(m->ctx, BNB_TYPE_F32, m->M, m->V);
    m->idx = bnb_new_tensor_1d(m->ctx, BNB_TYPE_I32, m->N);
    bnb_tensor *h = bnb_gelu(m->ctx, bnb_add(m->ctx, bnb_mul_mat(m->ctx, m->w, m->x), m->bias));
    bnb_tensor *e = bnb_get_rows(m->ctx, m->emb, m->idx);
    m->sm = bnb_softmax(m->ctx, bnb_add(m->ctx, h, e), 0.5f, false);
    m->out = bnb_rms_norm(m->ctx, m->sm, 1e-6f);
    m->g = bnb_graph_new(m->ctx, 64);
    if (!m->out || bnb_graph_build(m->g, m->out) != BNB_OK) return false;
    m->buf = bnb_backend_alloc_tensors(be, m->ctx);
    return m->buf != NULL;
}

static void mlp_free(mlp *m) {
    bnb_buffer_free(m->buf);
    bnb_context_free(m->ctx);
}

/* float64 reference of mlp with the given inputs and softmax scale */
static void mlp_ref(const mlp *m, const float *x, const float *w, const float *bias, const float *emb,
                    const int32_t *idx, float scale, double *out) {
    int64_t M = m->M;
    double *row = tc_malloc((size_t)M * 8);
    for (int64_t n = 0; n < m->N; n++) {
        double mx = -INFINITY;
        for (int64_t i = 0; i < M; i++) {
            double s = 0;
            for (int64_t k = 0; k < m->K; k++) s += (double)w[i * m->K + k] * x[n * m->K + k];
            s += bias[i];
            double gl = 0.5 * s * (1 + tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
            row[i] = (gl + emb[idx[n] * M + i]) * scale;
            mx = fmax(mx, row[i]);
        }
        double z = 0, ss = 0;
        for (int64_t i = 0; i < M; i++) z += row[i] = exp(row[i] - mx);
        for (int64_t i = 0; i < M; i++) {
            row[i] /= z;
            ss += row[i] * row[i];
        }
        double inv = 1 / sqrt(ss / M + 1e-6);
        for (int64_t i = 0; i < M; i++) out[n * M + i] = row[i] * inv;
    }
    free(row);
}

static void test_capture(bnb_backend *be) {
    mlp m;
    if (!tc_require(mlp_build(be, &m), "capture graph setup: %s", bnb_last_error())) return;
    int64_t nx = m.K * m.N, nw = m.K * m.M, ne = m.M * m.V, ny = m.M * m.N;
    float *x = tc_malloc((size_t)nx * 4), *w = tc_malloc((size_t)nw * 4), *bias = tc_malloc((size_t)m.M * 4);
    float *emb = tc_malloc((size_t)ne * 4), *y = tc_malloc((size_t)ny * 4), *y_plain = tc_malloc((size_t)ny * 4);
    double *ref = tc_malloc((size_t)ny * 8);
    int32_t idx[6];
    fill_random(m.x, x);
    fill_random(m.w, w);
    fill_random(m.bias, bias);
    fill_random(m.emb, emb);
    for (int i = 0; i < 6; i++) idx[i] = (int32_t)tc_rand_int(&rng, m.V);
    bnb_tensor_set(m.idx, idx, 0, sizeof idx);

    /* plain launches (capture off) */
    bnb_backend_set_graph_capture(be, false);
    bnb_status st = bnb_graph_compute(be, m.g);
    bnb_tensor_get_f32(m.out, y_plain, ny);
    mlp_ref(&m, x, w, bias, emb, idx, 0.5f, ref);
    double err = tc_norm_rel_err(y_plain, ref, ny);
    tc_check(st == BNB_OK && err < 2e-3, "graph without capture vs float64: %.2e (%s)", err, bnb_status_name(st));
    bnb_cuda_graph_stats s0 = bnb_cuda_get_graph_stats(m.g);

    /* capture on: 1st compute plain, 2nd captures and replays, 3rd and later replay */
    bnb_backend_set_graph_capture(be, true);
    bool same = true;
    for (int it = 0; it < 4; it++) {
        for (int64_t i = 0; i < ny; i++) y[i] = NAN;
        st = bnb_graph_compute(be, m.g);
        bnb_tensor_get_f32(m.out, y, ny);
        same = same && st == BNB_OK && memcmp(y, y_plain, (size_t)ny * 4) == 0;
    }
    bnb_cuda_graph_stats s1 = bnb_cuda_get_graph_stats(m.g);
    tc_check(same, "4 computes with capture give the plain results bit for bit");
    tc_check(s1.n_captures == s0.n_captures + 1 && s1.n_replays >= s0.n_replays + 2,
             "one capture, replays afterwards (plain %llu->%llu, captures %llu->%llu, replays %llu->%llu)",
             (unsigned long long)s0.n_plain, (unsigned long long)s1.n_plain, (unsigned long long)s0.n_captures,
             (unsigned long long)s1.n_captures, (unsigned long long)s0.n_replays, (unsigned long long)s1.n_replays);

    /* new input data in the same buffers: the replay must see it */
    fill_random(m.x, x);
    for (int i = 0; i < 6; i++) idx[i] = (int32_t)tc_rand_int(&rng, m.V);
    bnb_tensor_set(m.idx, idx, 0, sizeof idx);
    st = bnb_graph_compute(be, m.g);
    bnb_tensor_get_f32(m.out, y, ny);
    mlp_ref(&m, x, w, bias, emb, idx, 0.5f, ref);
    err = tc_norm_rel_err(y, ref, ny);
    bnb_cuda_graph_stats s2 = bnb_cuda_get_graph_stats(m.g);
    tc_check(st == BNB_OK && err < 2e-3 && s2.n_replays == s1.n_replays + 1 && s2.n_captures == s1.n_captures,
             "replay picks up new inputs: err %.2e", err);

    /* bad index under replay: reported, then recovered */
    int32_t bad_idx[6] = {0, 1, 2, (int32_t)m.V + 3, 1, 0};
    bnb_tensor_set(m.idx, bad_idx, 0, sizeof bad_idx);
    st = bnb_graph_compute(be, m.g);
    tc_check(st == BNB_ERR_INVALID_ARG && strstr(bnb_last_error(), "get_rows") && strstr(bnb_last_error(), "13"),
             "out-of-range index under replay: %s (%s)", bnb_status_name(st), bnb_last_error());
    bnb_tensor_set(m.idx, idx, 0, sizeof idx);
    st = bnb_graph_compute(be, m.g);
    bnb_tensor_get_f32(m.out, y, ny);
    err = tc_norm_rel_err(y, ref, ny);
    tc_check(st == BNB_OK && err < 2e-3, "after the error the replay works again: %.2e", err);

    /* a changed op parameter: re-captured (not a stale replay) */
    bnb_set_op_f32(m.sm, 0, 0.25f);
    bnb_cuda_graph_stats s3 = bnb_cuda_get_graph_stats(m.g);
    bool ok = true;
    for (int it = 0; it < 3; it++) {
        st = bnb_graph_compute(be, m.g);
        bnb_tensor_get_f32(m.out, y, ny);
        mlp_ref(&m, x, w, bias, emb, idx, 0.25f, ref);
        ok = ok && st == BNB_OK && tc_norm_rel_err(y, ref, ny) < 2e-3;
    }
    bnb_cuda_graph_stats s4 = bnb_cuda_get_graph_stats(m.g);
    tc_check(ok && s4.n_captures == s3.n_captures + 1 && s4.n_plain == s3.n_plain + 1,
             "changed softmax scale: results follow, re-captured once (captures %llu->%llu)",
             (unsigned long long)s3.n_captures, (unsigned long long)s4.n_captures);

    /* disabled: plain launches only */
    bnb_backend_set_graph_capture(be, false);
    for (int it = 0; it < 3; it++) st = bnb_graph_compute(be, m.g);
    bnb_tensor_get_f32(m.out, y, ny);
    bnb_cuda_graph_stats s5 = bnb_cuda_get_graph_stats(m.g);
    tc_check(st == BNB_OK && s5.n_plain == s4.n_plain + 3 && s5.n_replays == s4.n_replays &&
                 tc_norm_rel_err(y, ref, ny) < 2e-3,
             "capture disabled: 3 plain computes");
    bnb_backend_set_graph_capture(be, true);

    free(x);
    free(w);
    free(bias);
    free(emb);
    free(y);
    free(y_plain);
    free(ref);
    mlp_free(&m);
}

int main(int argc, char **argv) {
    tc_rng_seed(&rng, 20240611);
    if (!bnb_cuda_available()) {
        bnb_backend *be = bnb_backend_cuda_new(0);
        tc_check(!be && bnb_last_status() == BNB_ERR_NO_DEVICE && strstr(bnb_last_error(), "bnb_backend_cuda_new"),
                 "without a GPU, bnb_backend_cuda_new(0) gives NULL + BNB_ERR_NO_DEVICE: \"%s\"", bnb_last_error());
        int rc = tc_summary(argv[0]);
        if (rc) return rc;
        printf("%s: SKIP: no CUDA device\n", argv[0]);
        return TC_SKIP;
    }
    (void)argc;
    test_creation();
    bnb_backend *be = bnb_backend_cuda_new(0);
    if (!tc_require(be != NULL, "bnb_backend_cuda_new(0): %s", bnb_last_error())) return tc_summary(argv[0]);
    test_pool_and_copies(be);
    test_limits(be);
    test_mul_mat(be);
    test_capture(be);
    bnb_backend_free(be);
    return tc_summary(argv[0]);
}
