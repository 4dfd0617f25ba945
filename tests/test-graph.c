/* test-graph: graph building (topological order, shared subexpressions once, repeated builds add outputs) and the
 * liveness allocator (memory reuse, outputs and long-lived views kept intact, repeated computes with new inputs, the
 * same graph on two backends). */
#include "test-common.h"

#define F32 BNB_TYPE_F32

static tc_rng g_rng;

static bnb_context *new_ctx(bool no_alloc) {
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 8 << 20, .no_alloc = no_alloc});
    if (!ctx) {
        fprintf(stderr, "bnb_context_new failed: %s\n", bnb_last_error());
        exit(2);
    }
    return ctx;
}

static int node_index(const bnb_graph *g, const bnb_tensor *t) {
    for (int i = 0; i < bnb_graph_n_nodes(g); i++)
        if (bnb_graph_node(g, i) == t) return i;
    return -1;
}
static int leaf_index(const bnb_graph *g, const bnb_tensor *t) {
    for (int i = 0; i < bnb_graph_n_leafs(g); i++)
        if (bnb_graph_leaf(g, i) == t) return i;
    return -1;
}

/* Every node's sources come earlier (nodes) or are leaves of the graph; no tensor appears twice. */
static bool graph_well_formed(const bnb_graph *g, const char *what) {
    int n = bnb_graph_n_nodes(g), nl = bnb_graph_n_leafs(g);
    for (int i = 0; i < n; i++) {
        const bnb_tensor *t = bnb_graph_node(g, i);
        if (t->op == BNB_OP_NONE) return tc_check(false, "%s: node %d is a leaf", what, i);
        for (int j = 0; j < i; j++)
            if (bnb_graph_node(g, j) == t) return tc_check(false, "%s: node %d appears twice (also at %d)", what, i, j);
        for (int s = 0; s < BNB_MAX_SRC; s++) {
            const bnb_tensor *src = t->src[s];
            if (!src) continue;
            int k = src->op == BNB_OP_NONE ? leaf_index(g, src) : node_index(g, src);
            if (k < 0) return tc_check(false, "%s: source %d of node %d is not in the graph", what, s, i);
            if (src->op != BNB_OP_NONE && k >= i)
                return tc_check(false, "%s: node %d reads node %d, which comes later", what, i, k);
        }
    }
    for (int i = 0; i < nl; i++)
        for (int j = 0; j < i; j++)
            if (bnb_graph_leaf(g, i) == bnb_graph_leaf(g, j)) return tc_check(false, "%s: leaf %d appears twice", what, i);
    return tc_check(true, "%s: topological order, no duplicates (%d nodes, %d leafs)", what, n, nl);
}

static void fill(float *x, int64_t n) { tc_fill_signed(&g_rng, x, n, 0.1f, 1.f); }

/* relative error, counted as absolute below 1e-2 of the largest |ref| (sums with cancellation) */
static bool check_close(const char *what, const float *got, const double *ref, int64_t n, double tol) {
    int64_t w;
    double err = tc_rel_err(got, ref, NULL, 1e-2 * tc_max_abs(ref, n), n, &w);
    return tc_check(err <= tol, "%s: max rel err %.3g (tol %.3g) at %lld: got %.9g want %.9g", what, err, tol,
                    (long long)w, got[w], ref[w]);
}

/* ---------------------------------------------------------------------------------------------- building */
static void test_build(bnb_backend *be) {
    bnb_context *ctx = new_ctx(true);
    bnb_tensor *x = bnb_set_name(bnb_new_tensor_1d(ctx, F32, 64), "x");
    bnb_tensor *s = bnb_sqr(ctx, x);
    bnb_tensor *a = bnb_add(ctx, s, s);
    bnb_tensor *ns = bnb_neg(ctx, s);
    bnb_tensor *b = bnb_mul(ctx, s, ns);
    bnb_tensor *out = bnb_sub(ctx, a, b);
    bnb_graph *g = bnb_graph_new(ctx, 64);
    tc_check(bnb_graph_build(g, out) == BNB_OK, "build diamond: %s", bnb_last_error());
    graph_well_formed(g, "diamond");
    tc_check(bnb_graph_n_nodes(g) == 5 && bnb_graph_n_leafs(g) == 1,
             "shared subexpressions appear once: %d nodes (want 5), %d leafs (want 1)", bnb_graph_n_nodes(g),
             bnb_graph_n_leafs(g));
    tc_check(bnb_graph_node(g, -1) == out && bnb_graph_node(g, 0) == s && (out->flags & BNB_FLAG_OUTPUT),
             "the output is the last node and flagged; sqr(x) is first");

    /* repeated builds add outputs */
    bnb_tensor *e = bnb_exp(ctx, s), *f = bnb_add(ctx, e, x);
    tc_check(bnb_graph_build(g, f) == BNB_OK && bnb_graph_n_nodes(g) == 7 && bnb_graph_n_leafs(g) == 1,
             "second build adds exp and add: %d nodes (want 7)", bnb_graph_n_nodes(g));
    tc_check(bnb_graph_build(g, out) == BNB_OK && bnb_graph_build(g, s) == BNB_OK && bnb_graph_n_nodes(g) == 7,
             "building tensors already in the graph adds nothing: %d nodes", bnb_graph_n_nodes(g));
    tc_check((f->flags & BNB_FLAG_OUTPUT) && (out->flags & BNB_FLAG_OUTPUT) && (s->flags & BNB_FLAG_OUTPUT),
             "every built tensor is flagged as an output");
    graph_well_formed(g, "two outputs");
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);

    float xv[64], got[64];
    double ref[64];
    for (int it = 0; it < 3; it++) {
        fill(xv, 64);
        bnb_tensor_set_f32(x, xv, 64);
        bnb_status st = bnb_graph_compute(be, g);
        if (!tc_check(st == BNB_OK, "compute two outputs: %s", bnb_last_error())) break;
        bnb_tensor_get_f32(out, got, 64);
        for (int i = 0; i < 64; i++) {
            double q = (double)xv[i] * xv[i];
            ref[i] = 2 * q + q * q;
        }
        check_close("first output (2s + s^2)", got, ref, 64, 1e-5);
        bnb_tensor_get_f32(f, got, 64);
        for (int i = 0; i < 64; i++) ref[i] = exp((double)xv[i] * xv[i]) + xv[i];
        check_close("second output (exp(s) + x)", got, ref, 64, 1e-5);
        bnb_tensor_get_f32(s, got, 64);
        for (int i = 0; i < 64; i++) ref[i] = (double)xv[i] * xv[i];
        check_close("third output (s, an intermediate read by others)", got, ref, 64, 1e-5);
    }
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- allocator */
enum { N = 1000, CHAIN = 40, MID = 10 };

static void chain_ref(const float *x, double *end, double *mid) {
    for (int i = 0; i < N; i++) {
        double y = x[i];
        for (int k = 0; k < CHAIN; k++) {
            y = k % 2 ? y + x[i] : 0.5 * y;
            if (k == MID) mid[i] = y;
        }
        end[i] = y;
    }
}

static void test_allocator(bnb_backend *be) {
    bnb_context *ctx = new_ctx(true);
    bnb_tensor *x = bnb_set_name(bnb_new_tensor_1d(ctx, F32, N), "x"), *y = x, *mid = NULL;
    for (int k = 0; k < CHAIN; k++) {
        y = k % 2 ? bnb_add(ctx, y, x) : bnb_scale(ctx, y, 0.5f);
        if (k == MID) mid = y;
    }
    bnb_graph *g = bnb_graph_new(ctx, 256);
    bnb_graph_build(g, y);
    bnb_graph_build(g, mid); /* an early intermediate that is also an output: must survive the whole graph */
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    float xv[N], got[N];
    double end_ref[N], mid_ref[N];
    for (int it = 0; it < 20; it++) { /* the same graph, new inputs each time */
        fill(xv, N);
        bnb_tensor_set_f32(x, xv, N);
        bnb_status st = bnb_graph_compute(be, g);
        if (!tc_check(st == BNB_OK, "chain compute %d: %s", it, bnb_last_error())) break;
        chain_ref(xv, end_ref, mid_ref);
        bnb_tensor_get_f32(y, got, N);
        bool ok = check_close("chain end", got, end_ref, N, 1e-5);
        bnb_tensor_get_f32(mid, got, N);
        ok &= check_close("chain output in the middle (not overwritten)", got, mid_ref, N, 1e-5);
        if (!ok) break;
    }
    size_t planned = bnb_graph_mem_planned(g), naive = bnb_graph_mem_naive(g), tensor = N * sizeof(float);
    tc_check(planned < naive && planned <= naive / 4 && planned >= 3 * tensor,
             "liveness allocator on a chain of %d: planned %zu bytes, naive %zu (%zu per tensor)", CHAIN, planned, naive,
             tensor);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);

    /* a view of an early intermediate read at the very end keeps that intermediate alive */
    ctx = new_ctx(true);
    x = bnb_new_tensor_1d(ctx, F32, N);
    bnb_tensor *e = bnb_exp(ctx, x), *v = bnb_reshape_2d(ctx, e, 100, 10);
    y = e;
    for (int k = 0; k < 20; k++) y = k % 2 ? bnb_add(ctx, y, x) : bnb_scale(ctx, y, 0.5f);
    bnb_tensor *out = bnb_add(ctx, bnb_reshape_2d(ctx, y, 100, 10), v);
    g = bnb_graph_new(ctx, 256);
    bnb_graph_build(g, out);
    buf = bnb_backend_alloc_tensors(be, ctx);
    for (int it = 0; it < 3; it++) {
        fill(xv, N);
        bnb_tensor_set_f32(x, xv, N);
        if (!tc_check(bnb_graph_compute(be, g) == BNB_OK, "view chain compute: %s", bnb_last_error())) break;
        for (int i = 0; i < N; i++) {
            double ev = exp((double)xv[i]), t = ev;
            for (int k = 0; k < 20; k++) t = k % 2 ? t + xv[i] : 0.5 * t;
            end_ref[i] = t + ev;
        }
        bnb_tensor_get_f32(out, got, N);
        check_close("a view of an early intermediate read at the end", got, end_ref, N, 1e-5);
    }
    tc_check(bnb_graph_mem_planned(g) < bnb_graph_mem_naive(g), "view chain: planned %zu < naive %zu",
             bnb_graph_mem_planned(g), bnb_graph_mem_naive(g));
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- two backends */
/* y = softmax(mul_mat(w, x)) + 1: small, but uses scratch (mul_mat) and intermediates. */
enum { K = 24, M = 10, NB = 3 };
static void small_ref(const float *w, const float *x, double *out) {
    for (int n = 0; n < NB; n++) {
        double z[M], mx = -INFINITY, s = 0;
        for (int m = 0; m < M; m++) {
            z[m] = 0;
            for (int k = 0; k < K; k++) z[m] += (double)w[m * K + k] * x[n * K + k];
            mx = fmax(mx, z[m]);
        }
        for (int m = 0; m < M; m++) s += (z[m] = exp(z[m] - mx));
        for (int m = 0; m < M; m++) out[n * M + m] = z[m] / s + 1;
    }
}

static bool run_small(bnb_backend *be, bnb_graph *g, bnb_tensor *w, bnb_tensor *x, bnb_tensor *out, const char *what) {
    float wv[M * K], xv[K * NB], got[M * NB];
    double ref[M * NB];
    fill(wv, M * K);
    fill(xv, K * NB);
    bnb_status st = bnb_tensor_set_f32(w, wv, M * K);
    if (st == BNB_OK) st = bnb_tensor_set_f32(x, xv, K * NB);
    if (st == BNB_OK) st = bnb_graph_compute(be, g);
    if (st == BNB_OK) st = bnb_tensor_get_f32(out, got, M * NB);
    if (!tc_require(st == BNB_OK, "%s on %s: %s", what, bnb_backend_name(be), bnb_last_error())) return false;
    small_ref(wv, xv, ref);
    char msg[128];
    snprintf(msg, sizeof msg, "%s on %s", what, bnb_backend_name(be));
    return check_close(msg, got, ref, M * NB, 1e-5);
}

static bnb_tensor *build_small(bnb_context *ctx, bnb_tensor **w, bnb_tensor **x, bnb_tensor **out, bnb_graph **g) {
    *w = bnb_set_name(bnb_new_tensor_2d(ctx, F32, K, M), "w");
    *x = bnb_set_name(bnb_new_tensor_2d(ctx, F32, K, NB), "x");
    bnb_tensor *one = bnb_set_name(bnb_new_tensor_1d(ctx, F32, 1), "one");
    *out = bnb_add(ctx, bnb_softmax(ctx, bnb_mul_mat(ctx, *w, *x), 1.f, false), one);
    *g = bnb_graph_new(ctx, 64);
    bnb_graph_build(*g, *out);
    if (one->data) bnb_tensor_set_f32(one, (float[]){1.f}, 1);
    return one;
}

static void test_two_backends(bnb_backend *other) {
    /* host (arena) data: the CPU backends use it directly; computing alternately re-plans each time */
    bnb_backend *cpu1 = bnb_backend_cpu_new(1), *cpu2 = bnb_backend_cpu_new(2);
    bnb_context *ctx = new_ctx(false);
    bnb_tensor *w, *x, *out;
    bnb_graph *g;
    build_small(ctx, &w, &x, &out, &g);
    for (int i = 0; i < 4; i++) run_small(i % 2 ? cpu2 : cpu1, g, w, x, out, "host data, alternating CPU backends");
    bnb_context_free(ctx);

    /* backend buffers: run on one backend, free the buffer (tensors lose their data), allocate the leaves on the
     * other backend and run the same graph there */
    bnb_backend *second = other ? other : cpu2;
    ctx = new_ctx(true);
    bnb_tensor *one = build_small(ctx, &w, &x, &out, &g);
    bnb_buffer *buf = bnb_backend_alloc_tensors(cpu1, ctx);
    bnb_tensor_set_f32(one, (float[]){1.f}, 1);
    for (int i = 0; i < 2; i++) run_small(cpu1, g, w, x, out, "leaves in a CPU buffer");
    bnb_buffer_free(buf);
    if (tc_check(w->data == NULL && x->data == NULL && one->data == NULL,
                 "bnb_buffer_free: tensors of the freed buffer lose their data (w->data %p, x->data %p)", w->data,
                 x->data)) {
        buf = bnb_backend_alloc_tensors(second, ctx);
        if (tc_check(buf && w->buffer == buf && x->buffer == buf, "leaves rebound to %s: %s", bnb_backend_name(second),
                     bnb_last_error())) {
            bnb_tensor_set_f32(one, (float[]){1.f}, 1);
            for (int i = 0; i < 2; i++) run_small(second, g, w, x, out, "same graph after rebinding the leaves");
        }
        bnb_buffer_free(buf);
    }
    bnb_context_free(ctx);
    bnb_backend_free(cpu1);
    bnb_backend_free(cpu2);
}

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    tc_rng_seed(&g_rng, 7);
    bnb_backend *cuda = NULL;
    for (int i = 0; i < bl.n; i++) {
        printf("test-graph on %s\n", bnb_backend_name(bl.be[i]));
        test_build(bl.be[i]);
        test_allocator(bl.be[i]);
        if (!bnb_backend_is_cpu(bl.be[i])) cuda = bl.be[i];
    }
    test_two_backends(cuda);
    tc_close_backends(&bl);
    return tc_summary("test-graph");
}
