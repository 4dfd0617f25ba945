/* test-mlp: a 2-layer MLP, x [in, batch] -> mul_mat W1 -> + b1 -> gelu -> mul_mat W2 -> + b2 -> softmax, equals a
 * float64 forward pass written out here, on every backend, for F32/F16/BF16 weights. */
#include "test-common.h"

typedef struct {
    int in, hidden, out, batch;
} mlp_dims;

/* W1 is [in, hidden] (hidden rows of `in`), W2 [hidden, out]; biases [hidden], [out]; x [in, batch]. */
static void mlp_ref(const mlp_dims *d, const float *x, const float *w1, const float *b1, const float *w2,
                    const float *b2, double *y) {
    double *h = tc_malloc((size_t)d->hidden * sizeof *h), *z = tc_malloc((size_t)d->out * sizeof *z);
    for (int n = 0; n < d->batch; n++) {
        for (int j = 0; j < d->hidden; j++) {
            double s = b1[j];
            for (int i = 0; i < d->in; i++) s += (double)w1[j * d->in + i] * x[n * d->in + i];
            h[j] = tc_gelu_ref(s);
        }
        double mx = -INFINITY, sum = 0;
        for (int o = 0; o < d->out; o++) {
            double s = b2[o];
            for (int j = 0; j < d->hidden; j++) s += (double)w2[o * d->hidden + j] * h[j];
            z[o] = s;
            mx = fmax(mx, s);
        }
        for (int o = 0; o < d->out; o++) sum += (z[o] = exp(z[o] - mx));
        for (int o = 0; o < d->out; o++) y[n * d->out + o] = z[o] / sum;
    }
    free(h);
    free(z);
}

static float *rand_vec(tc_rng *r, int64_t n, float scale, bnb_type type) {
    float *v = tc_malloc((size_t)n * sizeof *v);
    tc_fill_signed(r, v, n, 0.05f * scale, scale);
    tc_round_to_type(v, n, type); /* the reference sees the values the tensor holds */
    return v;
}

static void test_mlp(bnb_backend *be, mlp_dims d, bnb_type wtype, uint64_t seed) {
    const char *bn = bnb_backend_name(be);
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_set_name(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, d.in, d.batch), "x");
    bnb_tensor *w1 = bnb_set_name(bnb_new_tensor_2d(ctx, wtype, d.in, d.hidden), "w1");
    bnb_tensor *b1 = bnb_set_name(bnb_new_tensor_1d(ctx, wtype, d.hidden), "b1");
    bnb_tensor *w2 = bnb_set_name(bnb_new_tensor_2d(ctx, wtype, d.hidden, d.out), "w2");
    bnb_tensor *b2 = bnb_set_name(bnb_new_tensor_1d(ctx, wtype, d.out), "b2");
    bnb_tensor *h = bnb_gelu(ctx, bnb_add(ctx, bnb_mul_mat(ctx, w1, x), b1));
    bnb_tensor *y = bnb_softmax(ctx, bnb_add(ctx, bnb_mul_mat(ctx, w2, h), b2), 1.0f, false);
    bnb_graph *g = y ? bnb_graph_new(ctx, 64) : NULL;
    bnb_buffer *buf = NULL;
    if (!tc_require(g && bnb_graph_build(g, y) == BNB_OK && (buf = bnb_backend_alloc_tensors(be, ctx)),
                    "mlp %s on %s: building: %s", bnb_type_name(wtype), bn, bnb_last_error())) {
        bnb_context_free(ctx);
        return;
    }
    tc_rng r;
    tc_rng_seed(&r, seed);
    float *w1v = rand_vec(&r, (int64_t)d.in * d.hidden, 1.f / sqrtf((float)d.in) * 1.7f, wtype);
    float *b1v = rand_vec(&r, d.hidden, 0.5f, wtype);
    float *w2v = rand_vec(&r, (int64_t)d.hidden * d.out, 1.f / sqrtf((float)d.hidden) * 1.7f, wtype);
    float *b2v = rand_vec(&r, d.out, 0.5f, wtype);
    bnb_tensor_set_f32(w1, w1v, (int64_t)d.in * d.hidden);
    bnb_tensor_set_f32(b1, b1v, d.hidden);
    bnb_tensor_set_f32(w2, w2v, (int64_t)d.hidden * d.out);
    bnb_tensor_set_f32(b2, b2v, d.out);
    int64_t ny = (int64_t)d.out * d.batch;
    float *got = tc_malloc((size_t)ny * sizeof *got);
    double *ref = tc_malloc((size_t)ny * sizeof *ref);
    for (int rep = 0; rep < 3; rep++) { /* new inputs each time through the same graph */
        float *xv = rand_vec(&r, (int64_t)d.in * d.batch, 1.f, BNB_TYPE_F32);
        bnb_tensor_set_f32(x, xv, (int64_t)d.in * d.batch);
        bnb_status st = bnb_graph_compute(be, g);
        if (tc_require(st == BNB_OK, "mlp compute on %s: %s", bn, bnb_last_error()) &&
            tc_require(bnb_tensor_get_f32(y, got, ny) == BNB_OK, "mlp output: %s", bnb_last_error())) {
            mlp_ref(&d, xv, w1v, b1v, w2v, b2v, ref);
            int64_t w;
            /* F32 accumulation over `in` terms and a few transcendental functions: 1e-5 relative for f32 weights;
             * half-precision weights may be multiplied in their precision on the GPU: their rounding */
            double tol = wtype == BNB_TYPE_F32 ? 2e-5 : tc_type_tol(wtype);
            double err = tc_rel_err(got, ref, NULL, 1e-2 * tc_max_abs(ref, ny), ny, &w);
            tc_check(err <= tol, "mlp %dx%dx%d batch %d, %s weights, on %s (run %d): max rel err %.3g (tol %.3g) at %lld: "
                     "got %.9g want %.9g", d.in, d.hidden, d.out, d.batch, bnb_type_name(wtype), bn, rep + 1, err, tol,
                     (long long)w, got[w], ref[w]);
            double rowsum = 0;
            for (int o = 0; o < d.out; o++) rowsum += got[o];
            tc_check(fabs(rowsum - 1) < 1e-5 * d.out, "mlp softmax row sums to 1 on %s: %.9g", bn, rowsum);
        }
        free(xv);
    }
    free(w1v), free(b1v), free(w2v), free(b2v), free(got), free(ref);
    bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    const mlp_dims dims[] = {{5, 3, 2, 1}, {64, 32, 10, 4}, {300, 129, 10, 7}, {784, 257, 10, 33}};
    const bnb_type types[] = {BNB_TYPE_F32, BNB_TYPE_F16, BNB_TYPE_BF16};
    for (int b = 0; b < bl.n; b++)
        for (int i = 0; i < 4; i++)
            for (int t = 0; t < 3; t++) test_mlp(bl.be[b], dims[i], types[t], 100 + 10 * (uint64_t)i + (uint64_t)t);
    tc_close_backends(&bl);
    return tc_summary("test-mlp");
}
