/* test-errors: every error path returns the right status and a message naming the op and the shapes, and nothing
 * crashes (run it under BNB_SANITIZE=ON). Compute-time errors run on every backend of --backend. */
#include "test-common.h"

/* Internal (src/bnb-impl.h), linked from the static library: the status of the last failure, for constructors that
 * return NULL. */
bnb_status bnb_last_status(void);

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})
/* expr returns a pointer: must be NULL with status `want` and a message containing every name */
#define EXPECT_NULL(expr, want, what, ...)                                                                              \
    do {                                                                                                               \
        bnb_clear_error();                                                                                             \
        const void *p_ = (const void *)(expr);                                                                         \
        tc_check_error(p_ ? BNB_OK : bnb_last_status(), want, what, NAMES(__VA_ARGS__));                               \
    } while (0)
/* expr returns a bnb_status */
#define EXPECT_STATUS(expr, want, what, ...)                                                                            \
    do {                                                                                                               \
        bnb_clear_error();                                                                                             \
        bnb_status s_ = (expr);                                                                                        \
        tc_check_error(s_, want, what, NAMES(__VA_ARGS__));                                                            \
    } while (0)

#define F32 BNB_TYPE_F32
#define I32 BNB_TYPE_I32

static bnb_context *new_ctx(size_t mem, bool no_alloc) {
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = mem, .no_alloc = no_alloc});
    if (!ctx) {
        fprintf(stderr, "bnb_context_new failed: %s\n", bnb_last_error());
        exit(2);
    }
    return ctx;
}

/* ---------------------------------------------------------------------------------------------- constructors */
static void test_shape_and_type_errors(void) {
    bnb_context *ctx = new_ctx(1 << 20, true);
    bnb_tensor *a = bnb_new_tensor_2d(ctx, F32, 32, 64), *b = bnb_new_tensor_2d(ctx, F32, 33, 16);
    EXPECT_NULL(bnb_mul_mat(ctx, a, b), BNB_ERR_SHAPE, "mul_mat inner dims differ", "bnb_mul_mat", "32x64", "33x16");
    bnb_tensor *a3 = bnb_new_tensor_3d(ctx, F32, 8, 4, 3), *b3 = bnb_new_tensor_3d(ctx, F32, 8, 2, 4);
    EXPECT_NULL(bnb_mul_mat(ctx, a3, b3), BNB_ERR_SHAPE, "mul_mat batch not a multiple", "bnb_mul_mat", "8x4x3", "8x2x4");
    bnb_tensor *b64 = bnb_new_tensor_2d(ctx, F32, 64, 3);
    EXPECT_NULL(bnb_mul_mat(ctx, bnb_transpose(ctx, a), b64), BNB_ERR_SHAPE, "mul_mat with strided rows", "bnb_mul_mat",
                "64x32", "64x3");
    bnb_tensor *ai = bnb_new_tensor_2d(ctx, I32, 32, 4);
    EXPECT_NULL(bnb_mul_mat(ctx, ai, a), BNB_ERR_TYPE, "mul_mat of i32", "bnb_mul_mat", "i32");

    bnb_tensor *x = bnb_new_tensor_2d(ctx, F32, 5, 3), *y = bnb_new_tensor_2d(ctx, F32, 4, 3);
    EXPECT_NULL(bnb_add(ctx, x, y), BNB_ERR_SHAPE, "add with non-broadcastable b", "bnb_add", "5x3", "4x3");
    EXPECT_NULL(bnb_sub(ctx, x, y), BNB_ERR_SHAPE, "sub with non-broadcastable b", "bnb_sub", "5x3", "4x3");
    EXPECT_NULL(bnb_mul(ctx, x, bnb_new_tensor_2d(ctx, F32, 5, 2)), BNB_ERR_SHAPE, "mul with b 5x2", "bnb_mul", "5x3", "5x2");
    EXPECT_NULL(bnb_div(ctx, bnb_new_tensor_1d(ctx, F32, 5), x), BNB_ERR_SHAPE, "div with b bigger than a", "bnb_div");
    bnb_tensor *xi = bnb_new_tensor_2d(ctx, I32, 5, 3);
    EXPECT_NULL(bnb_add(ctx, xi, x), BNB_ERR_TYPE, "add of i32", "bnb_add", "i32");
    EXPECT_NULL(bnb_exp(ctx, xi), BNB_ERR_TYPE, "exp of i32", "bnb_exp", "i32");
    EXPECT_NULL(bnb_scale(ctx, xi, 2.f), BNB_ERR_TYPE, "scale of i32", "bnb_scale", "i32");
    EXPECT_NULL(bnb_sum_rows(ctx, xi), BNB_ERR_TYPE, "sum_rows of i32", "bnb_sum_rows", "i32");
    EXPECT_NULL(bnb_softmax(ctx, xi, 1.f, false), BNB_ERR_TYPE, "softmax of i32", "bnb_softmax", "i32");
    EXPECT_NULL(bnb_softmax(ctx, bnb_new_tensor_2d(ctx, F32, 4, 6), 1.f, true), BNB_ERR_SHAPE,
                "causal softmax with ne1 > ne0", "bnb_softmax", "4x6");

    bnb_tensor *emb = bnb_new_tensor_2d(ctx, F32, 8, 10), *fidx = bnb_new_tensor_1d(ctx, F32, 3);
    EXPECT_NULL(bnb_get_rows(ctx, emb, fidx), BNB_ERR_TYPE, "get_rows with f32 indices", "bnb_get_rows", "f32");
    EXPECT_NULL(bnb_get_rows(ctx, bnb_new_tensor_3d(ctx, F32, 8, 10, 2), bnb_new_tensor_1d(ctx, I32, 3)), BNB_ERR_SHAPE,
                "get_rows of a 3-D table", "bnb_get_rows", "8x10x2");

    bnb_tensor *q = bnb_new_tensor_3d(ctx, F32, 16, 2, 5), *pos = bnb_new_tensor_1d(ctx, I32, 5);
    EXPECT_NULL(bnb_rope(ctx, q, bnb_new_tensor_1d(ctx, F32, 5), 16, BNB_ROPE_NORMAL, 1e4f), BNB_ERR_TYPE,
                "rope pos not i32", "bnb_rope", "f32");
    EXPECT_NULL(bnb_rope(ctx, q, bnb_new_tensor_1d(ctx, I32, 4), 16, BNB_ROPE_NORMAL, 1e4f), BNB_ERR_SHAPE,
                "rope pos count != tokens", "bnb_rope", "16x2x5", "4");
    EXPECT_NULL(bnb_rope(ctx, q, pos, 7, BNB_ROPE_NORMAL, 1e4f), BNB_ERR_INVALID_ARG, "rope odd n_rot", "bnb_rope", "7");
    EXPECT_NULL(bnb_rope(ctx, q, pos, 18, BNB_ROPE_NORMAL, 1e4f), BNB_ERR_INVALID_ARG, "rope n_rot > head_dim", "bnb_rope", "18");
    EXPECT_NULL(bnb_rope(ctx, q, pos, 16, 1, 1e4f), BNB_ERR_INVALID_ARG, "rope bad mode", "bnb_rope");
    EXPECT_NULL(bnb_rope(ctx, q, pos, 16, BNB_ROPE_NEOX, 0.f), BNB_ERR_INVALID_ARG, "rope base 0", "bnb_rope");

    bnb_tensor *logits = bnb_new_tensor_2d(ctx, F32, 10, 4);
    EXPECT_NULL(bnb_cross_entropy(ctx, logits, bnb_new_tensor_1d(ctx, F32, 4)), BNB_ERR_TYPE,
                "cross_entropy f32 targets", "bnb_cross_entropy", "f32");
    EXPECT_NULL(bnb_cross_entropy(ctx, logits, bnb_new_tensor_1d(ctx, I32, 3)), BNB_ERR_SHAPE,
                "cross_entropy target count", "bnb_cross_entropy", "10x4", "3");

    EXPECT_NULL(bnb_concat(ctx, x, y, 1), BNB_ERR_SHAPE, "concat dim 1 with ne0 differing", "bnb_concat", "5x3", "4x3");
    EXPECT_NULL(bnb_concat(ctx, x, y, 4), BNB_ERR_INVALID_ARG, "concat dim 4", "bnb_concat", "4");
    EXPECT_NULL(bnb_concat(ctx, x, bnb_new_tensor_2d(ctx, BNB_TYPE_F16, 5, 3), 0), BNB_ERR_TYPE, "concat f32 with f16",
                "bnb_concat", "f32", "f16");
    EXPECT_NULL(bnb_cast(ctx, x, BNB_TYPE_Q4_NF4), BNB_ERR_TYPE, "cast to a quantized type", "bnb_cast");

    EXPECT_NULL(bnb_new_tensor_2d(ctx, F32, 4, -1), BNB_ERR_SHAPE, "tensor with a negative dim", "bnb_new_tensor");
    EXPECT_NULL(bnb_new_tensor_1d(ctx, BNB_TYPE_COUNT, 4), BNB_ERR_TYPE, "tensor of an invalid type", "bnb_new_tensor");
    EXPECT_NULL(bnb_new_tensor(ctx, F32, 5, (int64_t[]){1, 1, 1, 1, 1}), BNB_ERR_INVALID_ARG, "tensor with 5 dims",
                "bnb_new_tensor");
    EXPECT_NULL(bnb_new_tensor_1d(ctx, BNB_TYPE_Q8_BLOCK, 64), BNB_ERR_TYPE, "quantized via bnb_new_tensor",
                "bnb_new_tensor");
    bnb_context_free(ctx);
}

static void test_null_arguments(void) {
    bnb_context *ctx = new_ctx(1 << 20, false);
    bnb_tensor *a = bnb_new_tensor_2d(ctx, F32, 4, 3), *idx = bnb_new_tensor_1d(ctx, I32, 3);
    EXPECT_NULL(bnb_add(ctx, NULL, a), BNB_ERR_INVALID_ARG, "add(NULL, b)", "bnb_add", "NULL");
    EXPECT_NULL(bnb_mul(ctx, a, NULL), BNB_ERR_INVALID_ARG, "mul(a, NULL)", "bnb_mul", "NULL");
    EXPECT_NULL(bnb_add(NULL, a, a), BNB_ERR_INVALID_ARG, "add with ctx NULL", "bnb_add", "ctx");
    EXPECT_NULL(bnb_mul_mat(ctx, NULL, a), BNB_ERR_INVALID_ARG, "mul_mat(NULL, b)", "bnb_mul_mat");
    EXPECT_NULL(bnb_gelu(ctx, NULL), BNB_ERR_INVALID_ARG, "gelu(NULL)", "bnb_gelu");
    EXPECT_NULL(bnb_sum(ctx, NULL), BNB_ERR_INVALID_ARG, "sum(NULL)", "bnb_sum");
    EXPECT_NULL(bnb_softmax(ctx, NULL, 1.f, true), BNB_ERR_INVALID_ARG, "softmax(NULL)", "bnb_softmax");
    EXPECT_NULL(bnb_rms_norm(ctx, NULL, 1e-5f), BNB_ERR_INVALID_ARG, "rms_norm(NULL)", "bnb_rms_norm");
    EXPECT_NULL(bnb_rope(ctx, bnb_new_tensor_3d(ctx, F32, 4, 1, 3), NULL, 4, 0, 1e4f), BNB_ERR_INVALID_ARG, "rope pos NULL",
                "bnb_rope", "pos");
    EXPECT_NULL(bnb_get_rows(ctx, a, NULL), BNB_ERR_INVALID_ARG, "get_rows(a, NULL)", "bnb_get_rows");
    EXPECT_NULL(bnb_cross_entropy(ctx, NULL, idx), BNB_ERR_INVALID_ARG, "cross_entropy(NULL, t)", "bnb_cross_entropy");
    EXPECT_NULL(bnb_concat(ctx, a, NULL, 0), BNB_ERR_INVALID_ARG, "concat(a, NULL)", "bnb_concat");
    EXPECT_NULL(bnb_reshape_1d(ctx, NULL, 4), BNB_ERR_INVALID_ARG, "reshape(NULL)", "bnb_reshape");
    EXPECT_NULL(bnb_permute(ctx, NULL, 0, 1, 2, 3), BNB_ERR_INVALID_ARG, "permute(NULL)", "bnb_permute");
    EXPECT_NULL(bnb_transpose(ctx, NULL), BNB_ERR_INVALID_ARG, "transpose(NULL)", "bnb_transpose");
    EXPECT_NULL(bnb_slice(ctx, NULL, 0, 0, 1), BNB_ERR_INVALID_ARG, "slice(NULL)", "bnb_slice");
    EXPECT_NULL(bnb_view(ctx, NULL, 1, (int64_t[]){1}, (size_t[]){4}, 0), BNB_ERR_INVALID_ARG, "view(NULL)", "bnb_view");
    EXPECT_NULL(bnb_view(ctx, a, 1, NULL, (size_t[]){4}, 0), BNB_ERR_INVALID_ARG, "view with ne NULL", "bnb_view");
    EXPECT_NULL(bnb_cont(ctx, NULL), BNB_ERR_INVALID_ARG, "cont(NULL)", "bnb_cont");
    EXPECT_NULL(bnb_new_tensor_1d(NULL, F32, 4), BNB_ERR_INVALID_ARG, "new tensor with ctx NULL", "bnb_new_tensor", "ctx");
    EXPECT_NULL(bnb_graph_new(NULL, 0), BNB_ERR_INVALID_ARG, "graph_new(NULL)", "bnb_graph_new");
    bnb_graph *g = bnb_graph_new(ctx, 16);
    EXPECT_STATUS(bnb_graph_build(NULL, a), BNB_ERR_INVALID_ARG, "graph_build(NULL, t)", "bnb_graph_build");
    EXPECT_STATUS(bnb_graph_build(g, NULL), BNB_ERR_INVALID_ARG, "graph_build(g, NULL)", "bnb_graph_build");
    bnb_backend *cpu = bnb_backend_cpu_new(1);
    EXPECT_STATUS(bnb_graph_compute(NULL, g), BNB_ERR_INVALID_ARG, "graph_compute(NULL, g)", "bnb_graph_compute");
    EXPECT_STATUS(bnb_graph_compute(cpu, NULL), BNB_ERR_INVALID_ARG, "graph_compute(be, NULL)", "bnb_graph_compute");
    float buf[12] = {0};
    EXPECT_STATUS(bnb_tensor_set_f32(NULL, buf, 12), BNB_ERR_INVALID_ARG, "set_f32(NULL)", "bnb_tensor_set_f32");
    EXPECT_STATUS(bnb_tensor_get_f32(a, NULL, 12), BNB_ERR_INVALID_ARG, "get_f32 into NULL", "bnb_tensor_get_f32");
    EXPECT_STATUS(bnb_tensor_set(a, NULL, 0, 8), BNB_ERR_INVALID_ARG, "tensor_set from NULL", "bnb_tensor_set");
    EXPECT_NULL(bnb_backend_alloc_tensors(NULL, ctx), BNB_ERR_INVALID_ARG, "alloc_tensors(NULL, ctx)",
                "bnb_backend_alloc_tensors");
    EXPECT_NULL(bnb_backend_alloc_tensors(cpu, NULL), BNB_ERR_INVALID_ARG, "alloc_tensors(be, NULL)",
                "bnb_backend_alloc_tensors");
    EXPECT_STATUS(bnb_buffer_place(NULL, a, 0), BNB_ERR_INVALID_ARG, "buffer_place(NULL)", "bnb_buffer_place");
    EXPECT_STATUS(bnb_backend_synchronize(NULL), BNB_ERR_INVALID_ARG, "synchronize(NULL)", "bnb_backend_synchronize");
    /* these must simply not crash */
    bnb_context_free(NULL);
    bnb_backend_free(NULL);
    bnb_buffer_free(NULL);
    bnb_graph_print(NULL);
    bnb_backend_set_graph_capture(NULL, true);
    tc_check(bnb_graph_n_nodes(NULL) == 0 && bnb_graph_n_leafs(NULL) == 0 && bnb_graph_node(NULL, 0) == NULL,
             "graph queries on NULL return 0/NULL");
    tc_check(bnb_nelements(NULL) == 0 && bnb_nbytes(NULL) == 0 && bnb_set_name(NULL, "x") == NULL &&
                 !bnb_backend_supports(NULL, a) && bnb_backend_name(NULL) != NULL && bnb_type_get_traits(BNB_TYPE_COUNT) == NULL,
             "tensor/backend queries on NULL are safe");
    EXPECT_NULL(bnb_graph_node(g, 5), BNB_ERR_INVALID_ARG, "graph_node out of range", "bnb_graph_node");
    bnb_backend_free(cpu);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- views */
static void test_view_errors(void) {
    bnb_context *ctx = new_ctx(1 << 20, false);
    bnb_tensor *x = bnb_new_tensor_2d(ctx, F32, 10, 8);
    EXPECT_NULL(bnb_view(ctx, x, 2, (int64_t[]){10, 8}, (size_t[]){4, 40}, 4), BNB_ERR_SHAPE, "view past the end",
                "bnb_view", "10x8");
    EXPECT_NULL(bnb_view(ctx, x, 2, (int64_t[]){10, 9}, (size_t[]){4, 40}, 0), BNB_ERR_SHAPE, "view with too many rows",
                "bnb_view");
    EXPECT_NULL(bnb_view(ctx, x, 1, (int64_t[]){81}, (size_t[]){4}, 0), BNB_ERR_SHAPE, "1-D view of 81 of 80", "bnb_view");
    EXPECT_NULL(bnb_view(ctx, x, 1, (int64_t[]){4}, (size_t[]){2}, 0), BNB_ERR_SHAPE, "view with nb[0] != element size",
                "bnb_view");
    EXPECT_NULL(bnb_view(ctx, x, 0, (int64_t[]){4}, (size_t[]){4}, 0), BNB_ERR_INVALID_ARG, "view with 0 dims", "bnb_view");
    bnb_tensor *s = bnb_slice(ctx, x, 1, 2, 4); /* rows 2..5 */
    tc_check(s != NULL, "valid slice: %s", bnb_last_error());
    EXPECT_NULL(bnb_view(ctx, s, 2, (int64_t[]){10, 7}, (size_t[]){4, 40}, 0), BNB_ERR_SHAPE,
                "view of a slice past its base's end", "bnb_view");
    EXPECT_NULL(bnb_slice(ctx, x, 1, 5, 4), BNB_ERR_SHAPE, "slice [5,9) of dim 1 (8)", "bnb_slice", "dim 1", "8");
    EXPECT_NULL(bnb_slice(ctx, x, 0, -1, 2), BNB_ERR_SHAPE, "slice with negative start", "bnb_slice");
    EXPECT_NULL(bnb_slice(ctx, x, 0, 0, 11), BNB_ERR_SHAPE, "slice longer than dim 0", "bnb_slice", "10");
    EXPECT_NULL(bnb_slice(ctx, x, 4, 0, 1), BNB_ERR_INVALID_ARG, "slice of dim 4", "bnb_slice", "4");
    EXPECT_NULL(bnb_reshape_2d(ctx, x, 7, 11), BNB_ERR_SHAPE, "reshape 80 elements to 7x11", "bnb_reshape_2d", "80", "77");
    EXPECT_NULL(bnb_reshape_3d(ctx, x, 2, 2, 2), BNB_ERR_SHAPE, "reshape 80 elements to 2x2x2", "bnb_reshape_3d", "80", "8");
    EXPECT_NULL(bnb_reshape_1d(ctx, bnb_transpose(ctx, x), 80), BNB_ERR_SHAPE, "reshape of a transposed view",
                "bnb_reshape_1d", "contiguous");
    EXPECT_NULL(bnb_permute(ctx, x, 0, 0, 1, 2), BNB_ERR_INVALID_ARG, "permute (0,0,1,2)", "bnb_permute", "0,0,1,2");
    EXPECT_NULL(bnb_permute(ctx, x, 0, 1, 2, 4), BNB_ERR_INVALID_ARG, "permute (0,1,2,4)", "bnb_permute", "0,1,2,4");
    EXPECT_NULL(bnb_permute(ctx, x, -1, 1, 2, 3), BNB_ERR_INVALID_ARG, "permute (-1,1,2,3)", "bnb_permute");
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- graphs, data, arena */
static void test_graph_errors(void) {
    bnb_context *ctx = new_ctx(1 << 20, false);
    bnb_tensor *x = bnb_set_name(bnb_new_tensor_1d(ctx, F32, 4), "x");
    bnb_tensor *y = x;
    for (int i = 0; i < 10; i++) y = bnb_neg(ctx, y);
    bnb_graph *g = bnb_graph_new(ctx, 4);
    EXPECT_STATUS(bnb_graph_build(g, y), BNB_ERR_GRAPH, "graph of 11 tensors with max_nodes 4", "bnb_graph_build", "4");
    tc_check(bnb_graph_n_nodes(g) == 0 && bnb_graph_n_leafs(g) == 0, "a failed build leaves the graph as it was (%d nodes)",
             bnb_graph_n_nodes(g));
    bnb_status st0 = bnb_graph_build(g, bnb_neg(ctx, x));
    tc_check(st0 == BNB_OK && bnb_graph_n_nodes(g) == 1, "the graph still builds a small output after the failure: %s",
             bnb_status_name(st0));

    /* a cycle, made by hand: y = x + x; z = -y; then y reads z */
    bnb_tensor *a = bnb_add(ctx, x, x), *z = bnb_set_name(bnb_neg(ctx, a), "z");
    a->src[1] = z;
    bnb_graph *g2 = bnb_graph_new(ctx, 64);
    EXPECT_STATUS(bnb_graph_build(g2, z), BNB_ERR_GRAPH, "graph with a cycle", "bnb_graph_build", "cycle");
    a->src[0] = a;
    a->src[1] = x;
    EXPECT_STATUS(bnb_graph_build(g2, z), BNB_ERR_GRAPH, "graph with a self-loop", "bnb_graph_build", "cycle");
    a->src[0] = x;
    bnb_status st = bnb_graph_build(g2, z);
    tc_check(st == BNB_OK && bnb_graph_n_nodes(g2) == 2 && bnb_graph_n_leafs(g2) == 1,
             "after the cycle is undone the graph builds (%s, %d nodes, %d leafs)", bnb_status_name(st),
             bnb_graph_n_nodes(g2), bnb_graph_n_leafs(g2));

    /* data copies */
    float buf[16] = {1, 2, 3, 4};
    EXPECT_STATUS(bnb_tensor_set_f32(x, buf, 3), BNB_ERR_SHAPE, "set_f32 with 3 of 4 elements", "bnb_tensor_set_f32",
                  "'x'", "4", "3");
    EXPECT_STATUS(bnb_tensor_get_f32(x, buf, 5), BNB_ERR_SHAPE, "get_f32 with 5 of 4 elements", "bnb_tensor_get_f32", "4",
                  "5");
    EXPECT_STATUS(bnb_tensor_set(x, buf, 8, 12), BNB_ERR_INVALID_ARG, "tensor_set of bytes [8,20) of 16", "bnb_tensor_set",
                  "16");
    bnb_tensor *m = bnb_new_tensor_2d(ctx, F32, 4, 4);
    EXPECT_STATUS(bnb_tensor_set_f32(bnb_transpose(ctx, m), buf, 16), BNB_ERR_SHAPE, "set_f32 into a transposed view",
                  "bnb_tensor_set_f32", "contiguous");
    bnb_context_free(ctx);

    /* a leaf with no data */
    ctx = new_ctx(1 << 20, true);
    bnb_tensor *in = bnb_set_name(bnb_new_tensor_1d(ctx, F32, 8), "input_without_data");
    g = bnb_graph_new(ctx, 16);
    bnb_graph_build(g, bnb_exp(ctx, in));
    bnb_backend *cpu = bnb_backend_cpu_new(1);
    EXPECT_STATUS(bnb_graph_compute(cpu, g), BNB_ERR_GRAPH, "compute with an unallocated leaf", "input_without_data");
    EXPECT_STATUS(bnb_tensor_set_f32(in, buf, 8), BNB_ERR_INVALID_ARG, "set_f32 into an unallocated tensor",
                  "bnb_tensor_set_f32", "input_without_data");
    bnb_backend_free(cpu);
    bnb_context_free(ctx);

    /* arena exhaustion */
    ctx = new_ctx(4096, false);
    EXPECT_NULL(bnb_new_tensor_1d(ctx, F32, 10000), BNB_ERR_OOM, "40 kB tensor in a 4 kB arena", "arena");
    bnb_tensor *t = NULL;
    int n = 0;
    bnb_clear_error();
    while ((t = bnb_new_tensor_1d(ctx, F32, 16)) != NULL && n < 1000) n++;
    tc_check(t == NULL && n > 0 && bnb_last_status() == BNB_ERR_OOM && strstr(bnb_last_error(), "arena"),
             "filling a 4 kB arena: %d tensors, then %s \"%s\"", n, bnb_status_name(bnb_last_status()), bnb_last_error());
    EXPECT_NULL(bnb_graph_new(ctx, 8192), BNB_ERR_OOM, "graph in a full arena", "arena");
    bnb_context_free(ctx);
    ctx = new_ctx(1024, true);
    bnb_tensor *v = bnb_new_tensor_1d(ctx, F32, 4);
    for (n = 0; v && n < 1000; n++) v = bnb_neg(ctx, v);
    tc_check(v == NULL && bnb_last_status() == BNB_ERR_OOM, "op results in a 1 kB metadata arena: NULL after %d, %s",
             n, bnb_status_name(bnb_last_status()));
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- compute time */
static void test_compute_errors(bnb_backend *be) {
    const char *bn = bnb_backend_name(be);
    bnb_context *ctx = new_ctx(1 << 20, true);
    bnb_tensor *emb = bnb_new_tensor_2d(ctx, F32, 4, 5), *idx = bnb_new_tensor_1d(ctx, I32, 3);
    bnb_tensor *rows = bnb_get_rows(ctx, emb, idx);
    bnb_tensor *logits = bnb_new_tensor_2d(ctx, F32, 6, 2), *tgt = bnb_new_tensor_1d(ctx, I32, 2);
    bnb_tensor *loss = bnb_cross_entropy(ctx, logits, tgt);
    bnb_graph *g1 = bnb_graph_new(ctx, 16), *g2 = bnb_graph_new(ctx, 16);
    bnb_buffer *buf = NULL;
    if (!tc_require(rows && loss && g1 && g2 && bnb_graph_build(g1, rows) == BNB_OK && bnb_graph_build(g2, loss) == BNB_OK &&
                        (buf = bnb_backend_alloc_tensors(be, ctx)) != NULL,
                    "setup on %s: %s", bn, bnb_last_error())) {
        bnb_context_free(ctx);
        return;
    }
    float e[20];
    for (int i = 0; i < 20; i++) e[i] = (float)i + 0.5f;
    bnb_tensor_set_f32(emb, e, 20);
    char what[128];
    snprintf(what, sizeof what, "get_rows index 7 of 5 rows on %s", bn);
    bnb_tensor_set(idx, (int32_t[]){0, 7, 1}, 0, 12);
    EXPECT_STATUS(bnb_graph_compute(be, g1), BNB_ERR_INVALID_ARG, what, "get_rows", "7", "5");
    snprintf(what, sizeof what, "get_rows index -1 on %s", bn);
    bnb_tensor_set(idx, (int32_t[]){0, 1, -1}, 0, 12);
    EXPECT_STATUS(bnb_graph_compute(be, g1), BNB_ERR_INVALID_ARG, what, "get_rows", "-1");
    bnb_tensor_set(idx, (int32_t[]){4, 0, 2}, 0, 12);
    float got[12] = {0};
    bnb_status st = bnb_graph_compute(be, g1);
    bnb_tensor_get_f32(rows, got, 12);
    tc_check(st == BNB_OK && got[0] == 16.5f && got[4] == 0.5f && got[11] == 11.5f,
             "get_rows on %s works again after the error (%s): %g %g %g", bn, bnb_status_name(st), got[0], got[4], got[11]);

    float l[12];
    for (int i = 0; i < 12; i++) l[i] = 0.25f * (float)i;
    bnb_tensor_set_f32(logits, l, 12);
    snprintf(what, sizeof what, "cross_entropy target 6 of 6 classes on %s", bn);
    bnb_tensor_set(tgt, (int32_t[]){2, 6}, 0, 8);
    EXPECT_STATUS(bnb_graph_compute(be, g2), BNB_ERR_INVALID_ARG, what, "cross_entropy", "6");
    snprintf(what, sizeof what, "cross_entropy target -3 on %s", bn);
    bnb_tensor_set(tgt, (int32_t[]){-3, 0}, 0, 8);
    EXPECT_STATUS(bnb_graph_compute(be, g2), BNB_ERR_INVALID_ARG, what, "cross_entropy", "-3");
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

static void test_backend_errors(void) {
    if (!bnb_cuda_available()) {
        EXPECT_NULL(bnb_backend_cuda_new(0), BNB_ERR_NO_DEVICE, "bnb_backend_cuda_new(0) without a GPU",
                    "bnb_backend_cuda_new");
    } else {
        bnb_clear_error();
        bnb_backend *be = bnb_backend_cuda_new(4096);
        tc_check(be == NULL && bnb_last_error()[0], "bnb_backend_cuda_new(4096) fails with a message: %s", bnb_last_error());
        bnb_backend_free(be);
    }
    bnb_backend *cpu = bnb_backend_cpu_new(1);
    bnb_context *ctx = new_ctx(1 << 16, true);
    bnb_tensor *t = bnb_set_name(bnb_new_tensor_1d(ctx, F32, 16), "t");
    bnb_buffer *buf = bnb_backend_alloc_buffer(cpu, 256);
    EXPECT_STATUS(bnb_buffer_place(buf, t, 3), BNB_ERR_INVALID_ARG, "buffer_place at a misaligned offset", "bnb_buffer_place");
    EXPECT_STATUS(bnb_buffer_place(buf, t, 256), BNB_ERR_INVALID_ARG, "buffer_place past the end", "bnb_buffer_place", "256");
    bnb_status st = bnb_buffer_place(buf, t, 64);
    tc_check(st == BNB_OK, "buffer_place at 64: %s", bnb_status_name(st));
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
    bnb_backend_free(cpu);
}

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    test_shape_and_type_errors();
    test_null_arguments();
    test_view_errors();
    test_graph_errors();
    for (int i = 0; i < bl.n; i++) test_compute_errors(bl.be[i]);
    test_backend_errors();
    tc_close_backends(&bl);
    return tc_summary("test-errors");
}
