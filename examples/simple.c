/* simple.c — the smallest useful bnb program: build a graph in C, compute it, print the result.
 *
 *   y = softmax(W · x + b)       W: 3x4, x: 4 (a batch of 2 columns), b: 3
 *
 * Runs on the CPU backend, and on the GPU too when one is present. */
#include <bnb.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        if (!(x)) {                                                                                                    \
            fprintf(stderr, "error: %s\n", bnb_last_error());                                                          \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

static int run(bnb_backend *be) {
    /* 1. a context holds tensor metadata; no_alloc: the backend will hold the data */
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    CHECK(ctx);

    /* 2. tensors (ne[0] is the row length) and ops: nothing is computed yet */
    bnb_tensor *W = bnb_set_name(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 4, 3), "W"); /* 3 rows of 4 */
    bnb_tensor *x = bnb_set_name(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 4, 2), "x"); /* 2 columns of 4 */
    bnb_tensor *b = bnb_set_name(bnb_new_tensor_1d(ctx, BNB_TYPE_F32, 3), "b");
    bnb_tensor *y = bnb_softmax(ctx, bnb_add(ctx, bnb_mul_mat(ctx, W, x), b), 1.0f, false);
    CHECK(y);

    /* 3. a graph of everything y depends on */
    bnb_graph *g = bnb_graph_new(ctx, 0);
    CHECK(g && bnb_graph_build(g, y) == BNB_OK);

    /* 4. place the inputs on the backend and fill them */
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    CHECK(buf);
    const float Wv[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0.5f, 0.5f, 0.5f, 0.5f};
    const float xv[8] = {1, 2, 3, 4, -1, 0, 1, 0.5f};
    const float bv[3] = {0.1f, 0.2f, -0.3f};
    CHECK(bnb_tensor_set_f32(W, Wv, 12) == BNB_OK);
    CHECK(bnb_tensor_set_f32(x, xv, 8) == BNB_OK);
    CHECK(bnb_tensor_set_f32(b, bv, 3) == BNB_OK);

    /* 5. compute and read back */
    CHECK(bnb_graph_compute(be, g) == BNB_OK);
    float out[6];
    CHECK(bnb_tensor_get_f32(y, out, 6) == BNB_OK);

    printf("backend %s: y = softmax(W x + b)\n", bnb_backend_name(be));
    for (int n = 0; n < 2; n++) printf("  column %d: %.6f %.6f %.6f\n", n, out[n * 3], out[n * 3 + 1], out[n * 3 + 2]);

    bnb_buffer_free(buf);
    bnb_context_free(ctx);
    return 0;
}

int main(void) {
    bnb_backend *cpu = bnb_backend_cpu_new(0);
    if (!cpu || run(cpu)) return 1;
    bnb_backend_free(cpu);
    if (bnb_cuda_available()) {
        bnb_backend *gpu = bnb_backend_cuda_new(0);
        if (!gpu || run(gpu)) return 1;
        bnb_backend_free(gpu);
    }
    return 0;
}
