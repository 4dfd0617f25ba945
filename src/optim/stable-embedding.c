/* StableEmbedding (spec section 5): an embedding table with Xavier-uniform init, followed by LayerNorm over the
 * embedding dimension (affine weight/bias), whose optimizer states are forced to 32-bit with sparse row updates. */
#include "optimizer-priv.h"

#include <math.h>
#include <stdlib.h>

bnb_status bnb_stable_embedding_new(bnb_context *ctx, int64_t n_rows, int64_t dim, bnb_stable_embedding *out) {
    const char *op = "bnb_stable_embedding_new";
    if (!ctx || !out) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    if (n_rows <= 0 || dim <= 0)
        return bnb_fail(BNB_ERR_SHAPE, "%s: n_rows %lld and dim %lld must be > 0", op, (long long)n_rows, (long long)dim);
    memset(out, 0, sizeof *out);
    out->eps = 1e-5f;
    out->weight = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, dim, n_rows);
    out->ln_weight = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, dim);
    out->ln_bias = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, dim);
    if (!out->weight || !out->ln_weight || !out->ln_bias) return bnb_last_status();
    bnb_set_param(bnb_set_name(out->weight, "stable_embedding.weight"));
    bnb_set_param(bnb_set_name(out->ln_weight, "stable_embedding.norm.weight"));
    bnb_set_param(bnb_set_name(out->ln_bias, "stable_embedding.norm.bias"));
    return BNB_OK;
}

/* splitmix64 -> uniform [0, 1) */
static double next_uniform(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

bnb_status bnb_stable_embedding_init(bnb_stable_embedding *e, uint64_t seed) {
    const char *op = "bnb_stable_embedding_init";
    if (!e || !e->weight || !e->ln_weight || !e->ln_bias) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    if (!e->weight->data || !e->ln_weight->data || !e->ln_bias->data)
        return bnb_fail(BNB_ERR_GRAPH, "%s: allocate the parameters first (bnb_backend_alloc_tensors)", op);
    int64_t dim = e->weight->ne[0], rows = e->weight->ne[1], n = dim * rows;
    /* Xavier uniform (PyTorch's fan_in = dim, fan_out = rows for a [rows, dim] table) */
    double bound = sqrt(6.0 / (double)(dim + rows));
    float *w = malloc((size_t)BNB_MAX(n, dim) * sizeof(float));
    if (!w) return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < n; i++) w[i] = (float)((2.0 * next_uniform(&s) - 1.0) * bound);
    bnb_status st = bnb_tensor_set_f32(e->weight, w, n);
    for (int64_t i = 0; i < dim; i++) w[i] = 1.f;
    if (st == BNB_OK) st = bnb_tensor_set_f32(e->ln_weight, w, dim);
    for (int64_t i = 0; i < dim; i++) w[i] = 0.f;
    if (st == BNB_OK) st = bnb_tensor_set_f32(e->ln_bias, w, dim);
    free(w);
    return st;
}

bnb_tensor *bnb_stable_embedding_forward(bnb_context *ctx, const bnb_stable_embedding *e, bnb_tensor *idx) {
    if (!e) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_stable_embedding_forward: e is NULL");
    bnb_tensor *x = bnb_get_rows(ctx, e->weight, idx);
    if (!x) return NULL;
    x = bnb_layer_norm(ctx, x, e->eps);
    if (!x) return NULL;
    x = bnb_mul(ctx, x, e->ln_weight);
    return x ? bnb_add(ctx, x, e->ln_bias) : NULL;
}

bnb_status bnb_optimizer_register_stable_embedding(bnb_optimizer *opt, const bnb_stable_embedding *e) {
    if (!opt || !e || !e->weight)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_optimizer_register_stable_embedding: NULL argument");
    bnb_status s = bnb_optimizer_override(opt, e->weight, BNB_OPTIM_KEY_BITS, 32);
    if (s == BNB_OK) s = bnb_optimizer_override(opt, e->weight, BNB_OPTIM_KEY_SPARSE_ROWS, 1);
    if (s == BNB_OK) s = bnb_optimizer_override(opt, e->ln_weight, BNB_OPTIM_KEY_BITS, 32);
    if (s == BNB_OK) s = bnb_optimizer_override(opt, e->ln_bias, BNB_OPTIM_KEY_BITS, 32);
    return s;
}
