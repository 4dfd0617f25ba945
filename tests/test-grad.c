/* Autodiff: finite-difference gradient checks of every differentiable op, on every available backend.
 *
 * For each case: loss = sum(op(inputs) * r) with a fixed random r. bnb computes the analytic gradients (F32) with
 * bnb_graph_backward; the test computes central finite differences of the same loss in float64 with a plain
 * reference implementation of the op written here. The forward loss is compared too, so the reference provably
 * implements the same function. Also: a 2-layer MLP with cross-entropy, tensors used twice (gradients add up),
 * gradient accumulation over computes, and the error paths. */
#include "test-common.h"

#define MAX_IN 6
#define FD_H 1e-6
#define FD_MAX_FULL 600 /* inputs up to this size get every element checked, larger ones FD_SAMPLES of them */
#define FD_SAMPLES 40
#define MIN_I(a, b) ((a) < (b) ? (a) : (b))

enum fill_kind { FILL_SIGNED = 0, FILL_POS, FILL_AWAY }; /* |x| in [0.2, 1.5]; [0.5, 2]; |x| in [0.1, 2] */

enum case_op {
    C_ADD, C_SUB, C_MUL, C_DIV, C_SCALE, C_NEG, C_ABS, C_SQR, C_SQRT, C_EXP, C_LOG, C_RELU, C_GELU, C_SILU, C_TANH,
    C_SUM, C_SUM_ROWS, C_MEAN, C_MAX_ROWS, C_MUL_MAT, C_GET_ROWS, C_CONCAT, C_SOFTMAX, C_RMS_NORM, C_LAYER_NORM,
    C_ROPE, C_CROSS_ENTROPY, C_CONT_T, C_RESHAPE, C_SLICE, C_VIEW, C_SLICE_T, C_PERMUTE, C_TRANSPOSE, C_MLP,
    C_TWICE, C_REPEAT, C_SUM_TO,
};

typedef struct tcase {
    const char *name;
    enum case_op op;
    int n_in;
    int64_t ne[MAX_IN][4];
    enum fill_kind fill[MAX_IN];
    unsigned no_grad;     /* bit i: input i is not a param */
    bnb_type type0;       /* type of input 0 (F32 unless set) */
    int n_ival;           /* I32 input: indices, targets or positions */
    int32_t ival[16];     /* its values; with n_ival > 16: value i = (7 i + 3) % idx_mod */
    int idx_mod;
    float f0;             /* scale, eps, rope base */
    int i0, i1;           /* dim, causal, n_rot, mode... */
    int ax[4];            /* permute axes */
    double tol;           /* 0: default */
} tcase;

/* ---------------------------------------------------------------------------------------------- bnb side */

static bnb_tensor *build_case(bnb_context *ctx, const tcase *c, bnb_tensor **x, bnb_tensor *iv) {
    bnb_tensor *a = x[0], *b = x[1];
    switch (c->op) {
    case C_ADD: return bnb_add(ctx, a, b);
    case C_SUB: return bnb_sub(ctx, a, b);
    case C_MUL: return bnb_mul(ctx, a, b);
    case C_DIV: return bnb_div(ctx, a, b);
    case C_SCALE: return bnb_scale(ctx, a, c->f0);
    case C_NEG: return bnb_neg(ctx, a);
    case C_ABS: return bnb_abs(ctx, a);
    case C_SQR: return bnb_sqr(ctx, a);
    case C_SQRT: return bnb_sqrt(ctx, a);
    case C_EXP: return bnb_exp(ctx, a);
    case C_LOG: return bnb_log(ctx, a);
    case C_RELU: return bnb_relu(ctx, a);
    case C_GELU: return bnb_gelu(ctx, a);
    case C_SILU: return bnb_silu(ctx, a);
    case C_TANH: return bnb_tanh(ctx, a);
    case C_SUM: return bnb_sum(ctx, a);
    case C_SUM_ROWS: return bnb_sum_rows(ctx, a);
    case C_MEAN: return bnb_mean(ctx, a);
    case C_MAX_ROWS: return bnb_max_rows(ctx, a);
    case C_MUL_MAT: return bnb_mul_mat(ctx, a, b);
    case C_GET_ROWS: return bnb_get_rows(ctx, a, iv);
    case C_CONCAT: return bnb_concat(ctx, a, b, c->i0);
    case C_SOFTMAX: return bnb_softmax(ctx, a, c->f0, c->i0 != 0);
    case C_RMS_NORM: return bnb_rms_norm(ctx, a, c->f0);
    case C_LAYER_NORM: return bnb_layer_norm(ctx, a, c->f0);
    case C_ROPE: return bnb_rope(ctx, a, iv, c->i0, c->i1, c->f0);
    case C_CROSS_ENTROPY: return bnb_cross_entropy(ctx, a, iv);
    case C_CONT_T: return bnb_cont(ctx, bnb_transpose(ctx, a));
    case C_RESHAPE: return bnb_reshape_3d(ctx, a, 3, 4, 2);
    case C_SLICE: return bnb_slice(ctx, a, c->i0, 1, 2);
    case C_VIEW: /* overlapping windows: [3, 4] with element strides (1, 2) at element offset 1 of a [4, 3] tensor */
        return bnb_view(ctx, a, 2, (int64_t[]){3, 4}, (size_t[]){4, 8}, 4);
    case C_SLICE_T: return bnb_slice(ctx, bnb_transpose(ctx, a), 1, 2, 3);
    case C_PERMUTE: return bnb_permute(ctx, a, c->ax[0], c->ax[1], c->ax[2], c->ax[3]);
    case C_TRANSPOSE: return bnb_transpose(ctx, a);
    case C_MLP: { /* x [D, N], W1 [D, H], b1 [H], W2 [H, C], b2 [C] -> cross entropy */
        bnb_tensor *h = bnb_gelu(ctx, bnb_add(ctx, bnb_mul_mat(ctx, x[1], x[0]), x[2]));
        bnb_tensor *logits = bnb_add(ctx, bnb_mul_mat(ctx, x[3], h), x[4]);
        return bnb_cross_entropy(ctx, logits, iv);
    }
    case C_TWICE: /* x*x + exp(x) + x*b: x feeds four uses, b is broadcast */
        return bnb_add(ctx, bnb_add(ctx, bnb_mul(ctx, a, a), bnb_exp(ctx, a)), bnb_mul(ctx, a, b));
    case C_REPEAT: return bnb_repeat(ctx, a, b);
    case C_SUM_TO: return bnb_sum_to(ctx, a, b);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- float64 reference */

typedef struct {
    double *d;
    int64_t ne[4];
} dten;

static inline double at(const dten *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return t->d[tc_idx(t->ne, i0, i1, i2, i3)];
}
/* broadcast read: dims of size 1 repeat */
static inline double atb(const dten *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return at(t, t->ne[0] == 1 ? 0 : i0, t->ne[1] == 1 ? 0 : i1, t->ne[2] == 1 ? 0 : i2, t->ne[3] == 1 ? 0 : i3);
}

#define FOR4(ne) \
    for (int64_t i3 = 0; i3 < (ne)[3]; i3++) \
        for (int64_t i2 = 0; i2 < (ne)[2]; i2++) \
            for (int64_t i1 = 0; i1 < (ne)[1]; i1++) \
                for (int64_t i0 = 0; i0 < (ne)[0]; i0++)

static double unary_ref(enum case_op op, double x, double s) {
    switch (op) {
    case C_SCALE: return s * x;
    case C_NEG: return -x;
    case C_ABS: return fabs(x);
    case C_SQR: return x * x;
    case C_SQRT: return sqrt(x);
    case C_EXP: return exp(x);
    case C_LOG: return log(x);
    case C_RELU: return x > 0 ? x : 0;
    case C_GELU: return tc_gelu_ref(x);
    case C_SILU: return tc_silu_ref(x);
    case C_TANH: return tanh(x);
    default: return NAN;
    }
}

/* softmax-family helper: y[0..n) = softmax(v[0..lim)) then zeros */
static void softmax_row(const double *v, double *y, int64_t n, int64_t lim) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < lim; i++) m = fmax(m, v[i]);
    for (int64_t i = 0; i < lim; i++) s += exp(v[i] - m);
    for (int64_t i = 0; i < n; i++) y[i] = i < lim ? exp(v[i] - m) / s : 0;
}

static double cross_entropy_ref(const dten *lg, const int32_t *tg) {
    const int64_t V = lg->ne[0], rows = lg->ne[1] * lg->ne[2] * lg->ne[3];
    double loss = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = lg->d + r * V;
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < V; i++) m = fmax(m, x[i]);
        for (int64_t i = 0; i < V; i++) s += exp(x[i] - m);
        loss += m + log(s) - x[tg[r]];
    }
    return loss / (double)rows;
}

/* y = a ·ᵀ b (ggml mul_mat), a batch broadcast by i / ratio */
static void mul_mat_ref(const dten *a, const dten *b, dten *y) {
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    FOR4(y->ne) {
        double s = 0;
        for (int64_t k = 0; k < a->ne[0]; k++) s += at(a, k, i0, i2 / r2, i3 / r3) * at(b, k, i1, i2, i3);
        y->d[tc_idx(y->ne, i0, i1, i2, i3)] = s;
    }
}

/* y (shape y->ne, set by the caller from bnb's result) = op(x) */
static void ref_case(const tcase *c, dten *x, const int32_t *iv, dten *y) {
    const dten *a = &x[0], *b = &x[1];
    const int64_t *ne = y->ne;
    switch (c->op) {
    case C_ADD: case C_SUB: case C_MUL: case C_DIV:
        FOR4(ne) {
            double u = at(a, i0, i1, i2, i3), v = atb(b, i0, i1, i2, i3);
            y->d[tc_idx(ne, i0, i1, i2, i3)] = c->op == C_ADD ? u + v : c->op == C_SUB ? u - v : c->op == C_MUL ? u * v : u / v;
        }
        return;
    case C_SCALE: case C_NEG: case C_ABS: case C_SQR: case C_SQRT: case C_EXP: case C_LOG: case C_RELU: case C_GELU:
    case C_SILU: case C_TANH:
        for (int64_t i = 0; i < tc_nel(ne); i++) y->d[i] = unary_ref(c->op, a->d[i], c->f0);
        return;
    case C_SUM: {
        double s = 0;
        for (int64_t i = 0; i < tc_nel(a->ne); i++) s += a->d[i];
        y->d[0] = s;
        return;
    }
    case C_SUM_ROWS: case C_MEAN: case C_MAX_ROWS:
        for (int64_t r = 0; r < tc_nel(ne); r++) {
            const double *row = a->d + r * a->ne[0];
            double s = c->op == C_MAX_ROWS ? -INFINITY : 0;
            for (int64_t i = 0; i < a->ne[0]; i++) s = c->op == C_MAX_ROWS ? fmax(s, row[i]) : s + row[i];
            y->d[r] = c->op == C_MEAN ? s / (double)a->ne[0] : s;
        }
        return;
    case C_MUL_MAT: mul_mat_ref(a, b, y); return;
    case C_GET_ROWS:
        FOR4(ne) y->d[tc_idx(ne, i0, i1, i2, i3)] = at(a, i0, iv[i1], 0, 0);
        return;
    case C_CONCAT: {
        const int d = c->i0;
        FOR4(ne) {
            int64_t i[4] = {i0, i1, i2, i3};
            const dten *s = a;
            if (i[d] >= a->ne[d]) {
                i[d] -= a->ne[d];
                s = b;
            }
            y->d[tc_idx(ne, i0, i1, i2, i3)] = at(s, i[0], i[1], i[2], i[3]);
        }
        return;
    }
    case C_SOFTMAX: {
        const int64_t n0 = ne[0], n1 = ne[1];
        double v[1024];
        for (int64_t r = 0; r < tc_nel(ne) / n0; r++) {
            const int64_t lim = c->i0 ? MIN_I(n0, r % n1 + (n0 - n1) + 1) : n0;
            for (int64_t i = 0; i < n0; i++) v[i] = a->d[r * n0 + i] * c->f0;
            softmax_row(v, y->d + r * n0, n0, lim);
        }
        return;
    }
    case C_RMS_NORM: case C_LAYER_NORM: {
        const int64_t n0 = ne[0];
        for (int64_t r = 0; r < tc_nel(ne) / n0; r++) {
            const double *xr = a->d + r * n0;
            double mu = 0, ss = 0;
            if (c->op == C_LAYER_NORM) {
                for (int64_t i = 0; i < n0; i++) mu += xr[i];
                mu /= (double)n0;
            }
            for (int64_t i = 0; i < n0; i++) ss += (xr[i] - mu) * (xr[i] - mu);
            const double rs = 1.0 / sqrt(ss / (double)n0 + c->f0);
            for (int64_t i = 0; i < n0; i++) y->d[r * n0 + i] = (xr[i] - mu) * rs;
        }
        return;
    }
    case C_ROPE: {
        const int n_rot = c->i0;
        const bool neox = c->i1 == 2;
        memcpy(y->d, a->d, (size_t)tc_nel(ne) * sizeof(double));
        for (int64_t t = 0; t < ne[2]; t++)
            for (int64_t h = 0; h < ne[1]; h++)
                for (int64_t i = 0; i < n_rot / 2; i++) {
                    const double th = iv[t] * pow((double)c->f0, -2.0 * (double)i / n_rot);
                    const int64_t k0 = neox ? i : 2 * i, k1 = neox ? i + n_rot / 2 : 2 * i + 1;
                    const double x0 = at(a, k0, h, t, 0), x1 = at(a, k1, h, t, 0);
                    y->d[tc_idx(ne, k0, h, t, 0)] = x0 * cos(th) - x1 * sin(th);
                    y->d[tc_idx(ne, k1, h, t, 0)] = x0 * sin(th) + x1 * cos(th);
                }
        return;
    }
    case C_CROSS_ENTROPY: y->d[0] = cross_entropy_ref(a, iv); return;
    case C_CONT_T: case C_TRANSPOSE:
        FOR4(ne) y->d[tc_idx(ne, i0, i1, i2, i3)] = at(a, i1, i0, i2, i3);
        return;
    case C_RESHAPE: memcpy(y->d, a->d, (size_t)tc_nel(ne) * sizeof(double)); return;
    case C_SLICE: {
        const int d = c->i0;
        FOR4(ne) {
            int64_t i[4] = {i0, i1, i2, i3};
            i[d] += 1;
            y->d[tc_idx(ne, i0, i1, i2, i3)] = at(a, i[0], i[1], i[2], i[3]);
        }
        return;
    }
    case C_VIEW:
        FOR4(ne) y->d[tc_idx(ne, i0, i1, i2, i3)] = a->d[1 + i0 + 2 * i1];
        return;
    case C_SLICE_T: /* transpose(a)[i0][i1 + 2] = a[i1 + 2][i0] */
        FOR4(ne) y->d[tc_idx(ne, i0, i1, i2, i3)] = at(a, i1 + 2, i0, i2, i3);
        return;
    case C_PERMUTE: /* source dim d goes to position ax[d] */
        FOR4(a->ne) {
            int64_t i[4] = {i0, i1, i2, i3}, j[4];
            for (int d = 0; d < 4; d++) j[c->ax[d]] = i[d];
            y->d[tc_idx(ne, j[0], j[1], j[2], j[3])] = at(a, i0, i1, i2, i3);
        }
        return;
    case C_MLP: {
        const dten *xin = &x[0], *w1 = &x[1], *b1 = &x[2], *w2 = &x[3], *b2 = &x[4];
        const int64_t H = w1->ne[1], N = xin->ne[1], C = w2->ne[1];
        double hbuf[256], lbuf[256];
        dten h = {hbuf, {H, N, 1, 1}}, lg = {lbuf, {C, N, 1, 1}};
        mul_mat_ref(w1, xin, &h);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < H; i++) hbuf[n * H + i] = tc_gelu_ref(hbuf[n * H + i] + b1->d[i]);
        mul_mat_ref(w2, &h, &lg);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < C; i++) lbuf[n * C + i] += b2->d[i];
        y->d[0] = cross_entropy_ref(&lg, iv);
        return;
    }
    case C_TWICE:
        FOR4(ne) {
            double u = at(a, i0, i1, i2, i3);
            y->d[tc_idx(ne, i0, i1, i2, i3)] = u * u + exp(u) + u * atb(b, i0, i1, i2, i3);
        }
        return;
    case C_REPEAT:
        FOR4(ne) y->d[tc_idx(ne, i0, i1, i2, i3)] = atb(a, i0, i1, i2, i3);
        return;
    case C_SUM_TO:
        for (int64_t i = 0; i < tc_nel(ne); i++) y->d[i] = 0;
        FOR4(a->ne) {
            y->d[tc_idx(ne, ne[0] == 1 ? 0 : i0, ne[1] == 1 ? 0 : i1, ne[2] == 1 ? 0 : i2, ne[3] == 1 ? 0 : i3)] +=
                at(a, i0, i1, i2, i3);
        }
        return;
    }
}

static double ref_loss(const tcase *c, dten *x, const int32_t *iv, dten *y, const double *r) {
    ref_case(c, x, iv, y);
    double l = 0;
    for (int64_t i = 0; i < tc_nel(y->ne); i++) l += y->d[i] * r[i];
    return l;
}

/* ---------------------------------------------------------------------------------------------- one case */

static uint64_t name_seed(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static void fill_host(tc_rng *rng, float *x, int64_t n, enum fill_kind k) {
    switch (k) {
    case FILL_SIGNED: tc_fill_signed(rng, x, n, 0.2f, 1.5f); break;
    case FILL_POS: tc_fill_positive(rng, x, n, 0.5f, 2.0f); break;
    case FILL_AWAY: tc_fill_signed(rng, x, n, 0.1f, 2.0f); break;
    }
}

static bnb_context *new_ctx(void) {
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 32u << 20, .no_alloc = true});
    if (!ctx) {
        fprintf(stderr, "bnb_context_new: %s\n", bnb_last_error());
        exit(2);
    }
    return ctx;
}

static void run_case(bnb_backend *be, const tcase *c) {
    const char *bn = bnb_backend_name(be);
    tc_rng rng;
    tc_rng_seed(&rng, name_seed(c->name));
    bnb_clear_error();
    bnb_context *ctx = new_ctx();
    bnb_tensor *x[MAX_IN] = {0};
    float *xh[MAX_IN] = {0};
    dten xd[MAX_IN];
    for (int i = 0; i < c->n_in; i++) {
        bnb_type type = i == 0 ? c->type0 : BNB_TYPE_F32;
        x[i] = bnb_new_tensor(ctx, type, 4, c->ne[i]);
        if (!(c->no_grad & (1u << i))) bnb_set_param(x[i]);
        const int64_t n = tc_nel(c->ne[i]);
        xh[i] = tc_malloc((size_t)n * sizeof(float));
        fill_host(&rng, xh[i], n, c->fill[i]);
        tc_round_to_type(xh[i], n, type);
        xd[i].d = tc_malloc((size_t)n * sizeof(double));
        memcpy(xd[i].ne, c->ne[i], sizeof xd[i].ne);
        for (int64_t e = 0; e < n; e++) xd[i].d[e] = xh[i][e];
    }
    bnb_tensor *iv = c->n_ival ? bnb_new_tensor_1d(ctx, BNB_TYPE_I32, c->n_ival) : NULL;
    int32_t *ivals = tc_malloc((size_t)(c->n_ival ? c->n_ival : 1) * sizeof(int32_t));
    for (int i = 0; i < c->n_ival; i++) ivals[i] = c->n_ival <= 16 ? c->ival[i] : (7 * i + 3) % c->idx_mod;
    bnb_tensor *y = build_case(ctx, c, x, iv);
    float *rh = NULL, *g = NULL;
    double *rd = NULL, *yd = NULL, *fd = NULL;
    bnb_buffer *buf = NULL;
    if (!tc_require(y != NULL, "%s [%s]: building the op: %s", c->name, bn, bnb_last_error())) goto out;
    const int64_t ny = bnb_nelements(y);
    bnb_tensor *r = bnb_new_tensor(ctx, BNB_TYPE_F32, 4, y->ne);
    bnb_tensor *loss = bnb_sum(ctx, bnb_mul(ctx, y, r));
    bnb_graph *gr = bnb_graph_new(ctx, 0);
    if (!tc_require(loss && gr && bnb_graph_build(gr, loss) == BNB_OK, "%s [%s]: graph: %s", c->name, bn, bnb_last_error()))
        goto out;
    bnb_status st = bnb_graph_backward(ctx, gr, loss);
    if (!tc_check(st == BNB_OK, "%s [%s]: bnb_graph_backward: %s", c->name, bn, bnb_last_error())) goto out;
    buf = bnb_backend_alloc_tensors(be, ctx);
    if (!tc_require(buf != NULL, "%s [%s]: alloc: %s", c->name, bn, bnb_last_error())) goto out;
    rh = tc_malloc((size_t)ny * sizeof(float));
    rd = tc_malloc((size_t)ny * sizeof(double));
    tc_fill_signed(&rng, rh, ny, 0.5f, 1.5f);
    for (int64_t e = 0; e < ny; e++) rd[e] = rh[e];
    bool ok = bnb_tensor_set_f32(r, rh, ny) == BNB_OK;
    for (int i = 0; i < c->n_in; i++) ok = ok && bnb_tensor_set_f32(x[i], xh[i], tc_nel(c->ne[i])) == BNB_OK;
    if (iv) ok = ok && bnb_tensor_set(iv, ivals, 0, (size_t)c->n_ival * sizeof(int32_t)) == BNB_OK;
    if (!tc_require(ok, "%s [%s]: upload: %s", c->name, bn, bnb_last_error())) goto out;
    st = bnb_graph_compute(be, gr);
    if (!tc_check(st == BNB_OK, "%s [%s]: compute: %s", c->name, bn, bnb_last_error())) goto out;

    /* forward: the reference implements the same function */
    dten ydt = {yd = tc_malloc((size_t)ny * sizeof(double)), {y->ne[0], y->ne[1], y->ne[2], y->ne[3]}};
    const double lref = ref_loss(c, xd, ivals, &ydt, rd);
    double lscale = 0;
    for (int64_t e = 0; e < ny; e++) lscale += fabs(yd[e] * rd[e]);
    float lb = 0;
    bnb_tensor_get_f32(loss, &lb, 1);
    const double ftol = (c->type0 == BNB_TYPE_F32 ? 2e-5 : 5e-3) * (bnb_backend_is_cpu(be) ? 1 : 50);
    tc_check(fabs(lb - lref) <= ftol * fmax(lscale, 1e-3), "%s [%s]: forward loss %.8g, reference %.8g", c->name, bn,
             (double)lb, lref);

    /* gradients vs central differences of the float64 reference */
    for (int i = 0; i < c->n_in; i++) {
        if (c->no_grad & (1u << i)) continue;
        const int64_t n = tc_nel(c->ne[i]);
        if (!tc_check(x[i]->grad != NULL, "%s [%s]: input %d has no gradient", c->name, bn, i)) continue;
        g = tc_malloc((size_t)n * sizeof(float));
        fd = tc_malloc((size_t)n * sizeof(double));
        st = bnb_tensor_get_f32(x[i]->grad, g, n);
        if (!tc_require(st == BNB_OK, "%s [%s]: reading grad %d: %s", c->name, bn, i, bnb_last_error())) goto out;
        /* small inputs: every element; large ones (which run the multi-threaded kernel paths): a sample */
        const int64_t n_check = n <= FD_MAX_FULL ? n : FD_SAMPLES;
        int64_t *which = tc_malloc((size_t)n_check * sizeof(int64_t));
        for (int64_t k = 0; k < n_check; k++) which[k] = n <= FD_MAX_FULL ? k : tc_rand_int(&rng, n);
        if (n > FD_MAX_FULL) /* half the sample: where bnb put the largest gradients (sparse ones: max_rows) */
            for (int64_t k = 0; k < n_check / 2; k++) {
                int64_t best = 0;
                for (int64_t e = 0; e < n; e++) {
                    bool taken = false;
                    for (int64_t q = 0; q < k && !taken; q++) taken = which[q] == e;
                    if (!taken && fabsf(g[e]) > fabsf(g[best])) best = e;
                }
                which[k] = best;
            }
        for (int64_t k = 0; k < n_check; k++) {
            const int64_t e = which[k];
            const double x0 = xd[i].d[e], h = FD_H * fmax(1.0, fabs(x0));
            xd[i].d[e] = x0 + h;
            const double lp = ref_loss(c, xd, ivals, &ydt, rd);
            xd[i].d[e] = x0 - h;
            const double lm = ref_loss(c, xd, ivals, &ydt, rd);
            xd[i].d[e] = x0;
            fd[e] = (lp - lm) / (2 * h);
        }
        double scale = 1e-3;
        for (int64_t k = 0; k < n_check; k++) scale = fmax(scale, fabs(fd[which[k]]));
        double err = 0;
        int64_t worst = 0;
        for (int64_t k = 0; k < n_check; k++) {
            const int64_t e = which[k];
            const double d = isfinite(g[e]) ? fabs(g[e] - fd[e]) / scale : INFINITY;
            if (d > err || isnan(d)) {
                err = d;
                worst = e;
            }
        }
        /* F32 gradients land within ~1e-7 of the float64 differences on the CPU; GPU GEMMs may use TF32 */
        const double tol = (c->tol > 0 ? c->tol : 2e-5) * (bnb_backend_is_cpu(be) ? 1 : 50);
        tc_check(err <= tol, "%s [%s]: d loss / d input %d (%lld of %lld elements): max error %.3g (tol %.1g) at %lld: "
                 "bnb %.7g, fd %.7g", c->name, bn, i, (long long)n_check, (long long)n, err, tol, (long long)worst,
                 (double)g[worst], fd[worst]);
        free(which);
        free(g);
        free(fd);
        g = NULL;
        fd = NULL;
    }
out:
    free(ivals);
    free(g);
    free(fd);
    free(rh);
    free(rd);
    free(yd);
    for (int i = 0; i < c->n_in; i++) {
        free(xh[i]);
        free(xd[i].d);
    }
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- other checks */

/* Gradient accumulation over computes: twice the gradient after two computes, once after a reset and one. */
static void test_accumulate(bnb_backend *be) {
    const char *bn = bnb_backend_name(be);
    tc_rng rng;
    tc_rng_seed(&rng, 99);
    bnb_context *ctx = new_ctx();
    const int64_t n = 21;
    bnb_tensor *x = bnb_set_param(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 7, 3));
    bnb_tensor *r = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 7, 3);
    bnb_tensor *loss = bnb_sum(ctx, bnb_mul(ctx, bnb_exp(ctx, x), r));
    bnb_graph *g = bnb_graph_new(ctx, 0);
    float xh[21], rh[21], gh[21], ah[21];
    bnb_buffer *buf = NULL;
    if (!tc_require(bnb_graph_build(g, loss) == BNB_OK, "accumulate [%s]: build: %s", bn, bnb_last_error())) goto out;
    bnb_status st = bnb_graph_backward_accumulate(ctx, g, loss);
    if (!tc_check(st == BNB_OK, "accumulate [%s]: backward: %s", bn, bnb_last_error())) goto out;
    tc_check(bnb_grad_accumulator(x) != NULL && x->grad != NULL, "accumulate [%s]: param has an accumulator", bn);
    buf = bnb_backend_alloc_tensors(be, ctx);
    if (!tc_require(buf != NULL, "accumulate [%s]: alloc: %s", bn, bnb_last_error())) goto out;
    tc_fill_signed(&rng, xh, n, 0.2f, 1.5f);
    tc_fill_signed(&rng, rh, n, 0.5f, 1.5f);
    bnb_tensor_set_f32(x, xh, n);
    bnb_tensor_set_f32(r, rh, n);
    for (int round = 0; round < 2; round++) {
        const int computes = round == 0 ? 2 : 1;
        st = bnb_graph_reset_grads(g);
        tc_check(st == BNB_OK, "accumulate [%s]: reset: %s", bn, bnb_last_error());
        for (int k = 0; k < computes && st == BNB_OK; k++) st = bnb_graph_compute(be, g);
        if (!tc_check(st == BNB_OK, "accumulate [%s]: compute: %s", bn, bnb_last_error())) goto out;
        bnb_tensor_get_f32(x->grad, gh, n);
        bnb_tensor_get_f32(bnb_grad_accumulator(x), ah, n);
        double err = 0;
        for (int64_t e = 0; e < n; e++) {
            const double want = computes * exp((double)xh[e]) * rh[e];
            err = fmax(err, fabs(gh[e] - want) / fabs(want));
            err = fmax(err, fabs(ah[e] - want) / fabs(want));
        }
        tc_check(err < 1e-5, "accumulate [%s]: %d compute(s) after a reset give %dx the gradient (rel err %.2g)", bn,
                 computes, computes, err);
    }
out:
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* A cast to F16 and back passes the gradient straight through (the rounding is not differentiated). */
static void test_cast(bnb_backend *be) {
    const char *bn = bnb_backend_name(be);
    bnb_context *ctx = new_ctx();
    bnb_tensor *x = bnb_set_param(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 9, 2));
    bnb_tensor *r = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 9, 2);
    bnb_tensor *loss = bnb_sum(ctx, bnb_mul(ctx, bnb_cast(ctx, bnb_cast(ctx, x, BNB_TYPE_F16), BNB_TYPE_F32), r));
    bnb_graph *g = bnb_graph_new(ctx, 0);
    bnb_buffer *buf = NULL;
    float xh[18], rh[18], gh[18];
    tc_rng rng;
    tc_rng_seed(&rng, 7);
    if (!tc_require(bnb_graph_build(g, loss) == BNB_OK && bnb_graph_backward(ctx, g, loss) == BNB_OK,
                    "cast [%s]: backward: %s", bn, bnb_last_error()))
        goto out;
    buf = bnb_backend_alloc_tensors(be, ctx);
    tc_fill_signed(&rng, xh, 18, 0.2f, 1.5f);
    tc_fill_signed(&rng, rh, 18, 0.5f, 1.5f);
    bnb_tensor_set_f32(x, xh, 18);
    bnb_tensor_set_f32(r, rh, 18);
    if (!tc_check(bnb_graph_compute(be, g) == BNB_OK, "cast [%s]: compute: %s", bn, bnb_last_error())) goto out;
    bnb_tensor_get_f32(x->grad, gh, 18);
    bool same = true;
    for (int e = 0; e < 18; e++) same = same && gh[e] == rh[e];
    tc_check(same, "cast [%s]: gradient through f32 -> f16 -> f32 casts equals r exactly", bn);
out:
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* QLoRA shape: a frozen NF4 weight W (not differentiable) in front of a trainable input: dx = Wᵀ dy with W
 * dequantized. The loss is linear in x, so the exact gradient is known: dx[n][k] = sum_m W[m][k] r[n][m]. */
static void test_quantized_weight(bnb_backend *be) {
    const char *bn = bnb_backend_name(be);
    enum { K = 128, M = 8, N = 5 };
    bnb_context *ctx = new_ctx();
    bnb_quant_params qp = {.block = 64, .map = BNB_QMAP_NF4, .nested = 0, .threshold = 0.f};
    bnb_tensor *w = bnb_new_tensor_quant(ctx, BNB_TYPE_Q4_NF4, 2, (int64_t[]){K, M}, qp);
    bnb_tensor *x = bnb_set_param(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, K, N));
    bnb_tensor *r = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, M, N);
    bnb_tensor *loss = w && x && r ? bnb_sum(ctx, bnb_mul(ctx, bnb_mul_mat(ctx, w, x), r)) : NULL;
    bnb_graph *g = bnb_graph_new(ctx, 0);
    bnb_buffer *buf = NULL;
    float *wh = tc_malloc(K * M * sizeof(float)), *xh = tc_malloc(K * N * sizeof(float)), rh[M * N],
          *gh = tc_malloc(K * N * sizeof(float));
    tc_rng rng;
    tc_rng_seed(&rng, 4);
    if (!tc_require(loss && bnb_graph_build(g, loss) == BNB_OK, "nf4 weight [%s]: build: %s", bn, bnb_last_error()))
        goto out;
    if (!tc_check(bnb_graph_backward(ctx, g, loss) == BNB_OK, "nf4 weight [%s]: backward: %s", bn, bnb_last_error()))
        goto out;
    buf = bnb_backend_alloc_tensors(be, ctx);
    tc_fill_signed(&rng, wh, K * M, 0.2f, 1.5f);
    tc_fill_signed(&rng, xh, K * N, 0.2f, 1.5f);
    tc_fill_signed(&rng, rh, M * N, 0.5f, 1.5f);
    bool ok = buf && bnb_tensor_set_f32(w, wh, K * M) == BNB_OK && bnb_tensor_get_f32(w, wh, K * M) == BNB_OK &&
              bnb_tensor_set_f32(x, xh, K * N) == BNB_OK && bnb_tensor_set_f32(r, rh, M * N) == BNB_OK;
    if (!tc_require(ok, "nf4 weight [%s]: upload: %s", bn, bnb_last_error())) goto out;
    if (!tc_check(bnb_graph_compute(be, g) == BNB_OK, "nf4 weight [%s]: compute: %s", bn, bnb_last_error())) goto out;
    bnb_tensor_get_f32(x->grad, gh, K * N);
    double err = 0, scale = 0, want[K * N];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int m = 0; m < M; m++) s += (double)wh[m * K + k] * rh[n * M + m];
            want[n * K + k] = s;
            scale = fmax(scale, fabs(s));
        }
    for (int e = 0; e < K * N; e++) err = fmax(err, fabs(gh[e] - want[e]));
    tc_check(err <= 1e-5 * scale, "nf4 weight [%s]: d loss / d x through a frozen NF4 weight (max error %.3g)", bn,
             err / scale);
out:
    free(wh);
    free(xh);
    free(gh);
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

static void test_errors(void) {
    bnb_context *ctx = new_ctx();
    bnb_tensor *p = bnb_set_param(bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 4, 3));
    bnb_tensor *c = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 4, 3);
    bnb_tensor *y = bnb_exp(ctx, p);
    bnb_tensor *loss = bnb_sum(ctx, y);
    bnb_tensor *other = bnb_sum(ctx, bnb_exp(ctx, c));
    bnb_graph *g = bnb_graph_new(ctx, 0);
    bnb_graph_build(g, loss);
    bnb_graph_build(g, other);
    tc_check_error(bnb_graph_backward(ctx, g, y), BNB_ERR_SHAPE, "non-scalar loss", (const char *const[]){"loss", NULL});
    bnb_tensor *stray = bnb_sum(ctx, y);
    tc_check_error(bnb_graph_backward(ctx, g, stray), BNB_ERR_GRAPH, "loss outside the graph",
                   (const char *const[]){"not a node", NULL});
    tc_check_error(bnb_graph_backward(ctx, g, other), BNB_ERR_GRAPH, "loss without params",
                   (const char *const[]){"BNB_FLAG_PARAM", NULL});
    tc_check(p->grad == NULL, "a failed backward leaves no gradients");
    tc_check_error(bnb_graph_backward(NULL, g, loss), BNB_ERR_INVALID_ARG, "NULL ctx", NULL);
    tc_check_error(bnb_graph_backward(ctx, g, NULL), BNB_ERR_INVALID_ARG, "NULL loss", NULL);
    bnb_tensor *wide = bnb_new_tensor_2d(ctx, BNB_TYPE_F32, 5, 3);
    tc_check(bnb_repeat(ctx, wide, p) == NULL && bnb_sum_to(ctx, p, wide) == NULL,
             "repeat/sum_to reject shapes that do not broadcast");
    tc_check(bnb_graph_backward(ctx, g, loss) == BNB_OK && p->grad && p->grad->type == BNB_TYPE_F32 &&
                 bnb_same_shape(p->grad, p) && c->grad == NULL && bnb_grad_accumulator(p) == NULL,
             "backward gives the param an F32 gradient of its shape; constants get none");
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- cases */

#define S(...) {__VA_ARGS__}
static const tcase g_cases[] = {
    {.name = "add", .op = C_ADD, .n_in = 2, .ne = {S(5, 4, 3, 1), S(5, 4, 3, 1)}},
    {.name = "add_bcast", .op = C_ADD, .n_in = 2, .ne = {S(5, 4, 3, 2), S(5, 1, 3, 1)}},
    {.name = "sub_bcast", .op = C_SUB, .n_in = 2, .ne = {S(5, 4, 3, 1), S(1, 4, 1, 1)}},
    {.name = "mul", .op = C_MUL, .n_in = 2, .ne = {S(6, 5, 1, 1), S(6, 5, 1, 1)}},
    {.name = "mul_bcast", .op = C_MUL, .n_in = 2, .ne = {S(5, 4, 3, 2), S(5, 1, 1, 2)}},
    {.name = "div", .op = C_DIV, .n_in = 2, .ne = {S(6, 5, 1, 1), S(6, 5, 1, 1)}, .fill = {FILL_SIGNED, FILL_POS}},
    {.name = "div_bcast", .op = C_DIV, .n_in = 2, .ne = {S(5, 4, 3, 1), S(5, 4, 1, 1)}, .fill = {FILL_SIGNED, FILL_POS}},
    {.name = "scale", .op = C_SCALE, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .f0 = -0.7f},
    {.name = "neg", .op = C_NEG, .n_in = 1, .ne = {S(7, 3, 2, 1)}},
    {.name = "abs", .op = C_ABS, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_AWAY}},
    {.name = "sqr", .op = C_SQR, .n_in = 1, .ne = {S(7, 3, 2, 1)}},
    {.name = "sqrt", .op = C_SQRT, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_POS}},
    {.name = "exp", .op = C_EXP, .n_in = 1, .ne = {S(7, 3, 2, 1)}},
    {.name = "exp_f16", .op = C_EXP, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .type0 = BNB_TYPE_F16, .tol = 1e-4},
    {.name = "log", .op = C_LOG, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_POS}},
    {.name = "relu", .op = C_RELU, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_AWAY}},
    {.name = "gelu", .op = C_GELU, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_AWAY}},
    {.name = "silu", .op = C_SILU, .n_in = 1, .ne = {S(7, 3, 2, 1)}, .fill = {FILL_AWAY}},
    {.name = "tanh", .op = C_TANH, .n_in = 1, .ne = {S(7, 3, 2, 1)}},
    {.name = "sum", .op = C_SUM, .n_in = 1, .ne = {S(5, 4, 3, 1)}},
    {.name = "sum_rows", .op = C_SUM_ROWS, .n_in = 1, .ne = {S(6, 4, 2, 1)}},
    {.name = "mean", .op = C_MEAN, .n_in = 1, .ne = {S(6, 4, 2, 1)}},
    {.name = "max_rows", .op = C_MAX_ROWS, .n_in = 1, .ne = {S(6, 4, 2, 1)}},
    {.name = "mul_mat", .op = C_MUL_MAT, .n_in = 2, .ne = {S(6, 5, 1, 1), S(6, 7, 1, 1)}},
    {.name = "mul_mat_batched", .op = C_MUL_MAT, .n_in = 2, .ne = {S(6, 5, 2, 1), S(6, 7, 4, 3)}},
    {.name = "mul_mat_2d_weight", .op = C_MUL_MAT, .n_in = 2, .ne = {S(6, 5, 1, 1), S(6, 7, 2, 3)}},
    {.name = "mul_mat_f16_weight", .op = C_MUL_MAT, .n_in = 2, .ne = {S(6, 5, 1, 1), S(6, 7, 1, 1)}, .type0 = BNB_TYPE_F16, .tol = 1e-4},
    {.name = "get_rows", .op = C_GET_ROWS, .n_in = 1, .ne = {S(4, 6, 1, 1)}, .n_ival = 5, .ival = {1, 3, 1, 5, 0}},
    {.name = "concat_dim0", .op = C_CONCAT, .n_in = 2, .ne = {S(3, 4, 2, 1), S(2, 4, 2, 1)}, .i0 = 0},
    {.name = "concat_dim1", .op = C_CONCAT, .n_in = 2, .ne = {S(3, 4, 2, 1), S(3, 2, 2, 1)}, .i0 = 1},
    {.name = "concat_dim2", .op = C_CONCAT, .n_in = 2, .ne = {S(3, 4, 2, 1), S(3, 4, 1, 1)}, .i0 = 2},
    {.name = "softmax", .op = C_SOFTMAX, .n_in = 1, .ne = {S(7, 4, 2, 1)}, .f0 = 0.8f},
    {.name = "softmax_causal", .op = C_SOFTMAX, .n_in = 1, .ne = {S(5, 5, 2, 1)}, .f0 = 1.3f, .i0 = 1},
    {.name = "softmax_causal_kv", .op = C_SOFTMAX, .n_in = 1, .ne = {S(7, 4, 2, 1)}, .f0 = 0.5f, .i0 = 1},
    {.name = "rms_norm", .op = C_RMS_NORM, .n_in = 1, .ne = {S(8, 3, 2, 1)}, .f0 = 1e-5f},
    {.name = "layer_norm", .op = C_LAYER_NORM, .n_in = 1, .ne = {S(8, 3, 2, 1)}, .f0 = 1e-5f},
    {.name = "rope_normal", .op = C_ROPE, .n_in = 1, .ne = {S(8, 2, 3, 1)}, .n_ival = 3, .ival = {0, 3, 7}, .f0 = 10000.f, .i0 = 8, .i1 = 0},
    {.name = "rope_neox", .op = C_ROPE, .n_in = 1, .ne = {S(8, 2, 3, 1)}, .n_ival = 3, .ival = {0, 3, 7}, .f0 = 10000.f, .i0 = 8, .i1 = 2},
    {.name = "rope_partial", .op = C_ROPE, .n_in = 1, .ne = {S(8, 2, 3, 1)}, .n_ival = 3, .ival = {1, 4, 9}, .f0 = 100.f, .i0 = 4, .i1 = 0},
    {.name = "rope_neox_partial", .op = C_ROPE, .n_in = 1, .ne = {S(8, 2, 3, 1)}, .n_ival = 3, .ival = {1, 4, 9}, .f0 = 100.f, .i0 = 4, .i1 = 2},
    {.name = "cross_entropy", .op = C_CROSS_ENTROPY, .n_in = 1, .ne = {S(6, 4, 1, 1)}, .n_ival = 4, .ival = {0, 5, 2, 3}},
    {.name = "cont_transpose", .op = C_CONT_T, .n_in = 1, .ne = {S(5, 3, 1, 1)}},
    {.name = "reshape", .op = C_RESHAPE, .n_in = 1, .ne = {S(4, 6, 1, 1)}},
    {.name = "slice_dim0", .op = C_SLICE, .n_in = 1, .ne = {S(5, 3, 1, 1)}, .i0 = 0},
    {.name = "slice_dim1", .op = C_SLICE, .n_in = 1, .ne = {S(4, 5, 3, 1)}, .i0 = 1},
    {.name = "slice_dim2", .op = C_SLICE, .n_in = 1, .ne = {S(4, 2, 5, 1)}, .i0 = 2},
    {.name = "view_strided", .op = C_VIEW, .n_in = 1, .ne = {S(4, 3, 1, 1)}},
    {.name = "slice_of_transpose", .op = C_SLICE_T, .n_in = 1, .ne = {S(6, 4, 1, 1)}},
    {.name = "permute", .op = C_PERMUTE, .n_in = 1, .ne = {S(2, 3, 4, 5)}, .ax = {2, 0, 1, 3}},
    {.name = "permute2", .op = C_PERMUTE, .n_in = 1, .ne = {S(2, 3, 4, 5)}, .ax = {1, 3, 0, 2}},
    {.name = "transpose", .op = C_TRANSPOSE, .n_in = 1, .ne = {S(5, 3, 2, 1)}},
    {.name = "repeat", .op = C_REPEAT, .n_in = 2, .ne = {S(5, 1, 3, 1), S(5, 4, 3, 2)}, .no_grad = 2},
    {.name = "sum_to", .op = C_SUM_TO, .n_in = 2, .ne = {S(5, 4, 3, 1), S(1, 4, 1, 1)}, .no_grad = 2},
    {.name = "used_twice", .op = C_TWICE, .n_in = 2, .ne = {S(5, 4, 1, 1), S(1, 4, 1, 1)}},
    /* large shapes: the multi-threaded CPU paths and many-block GPU launches */
    {.name = "big_gelu", .op = C_GELU, .n_in = 1, .ne = {S(200, 100, 1, 1)}},
    {.name = "big_add_bias", .op = C_ADD, .n_in = 2, .ne = {S(160, 150, 1, 1), S(160, 1, 1, 1)}},
    {.name = "big_mul_rows", .op = C_MUL, .n_in = 2, .ne = {S(160, 150, 1, 1), S(1, 150, 1, 1)}},
    {.name = "big_sum", .op = C_SUM, .n_in = 1, .ne = {S(170, 120, 1, 1)}},
    {.name = "big_max_rows", .op = C_MAX_ROWS, .n_in = 1, .ne = {S(300, 64, 1, 1)}},
    {.name = "big_mul_mat", .op = C_MUL_MAT, .n_in = 2, .ne = {S(64, 96, 1, 1), S(64, 150, 1, 1)}},
    {.name = "big_get_rows", .op = C_GET_ROWS, .n_in = 1, .ne = {S(64, 50, 1, 1)}, .n_ival = 400, .idx_mod = 50},
    {.name = "big_slice", .op = C_SLICE, .n_in = 1, .ne = {S(256, 200, 1, 1)}, .i0 = 1},
    {.name = "big_softmax_causal", .op = C_SOFTMAX, .n_in = 1, .ne = {S(300, 64, 1, 1)}, .f0 = 0.3f, .i0 = 1},
    {.name = "big_rms_norm", .op = C_RMS_NORM, .n_in = 1, .ne = {S(256, 80, 1, 1)}, .f0 = 1e-5f},
    {.name = "big_layer_norm", .op = C_LAYER_NORM, .n_in = 1, .ne = {S(256, 80, 1, 1)}, .f0 = 1e-5f},
    {.name = "big_rope_neox", .op = C_ROPE, .n_in = 1, .ne = {S(64, 8, 40, 1)}, .n_ival = 40, .idx_mod = 97,
     .f0 = 10000.f, .i0 = 64, .i1 = 2},
    {.name = "big_cross_entropy", .op = C_CROSS_ENTROPY, .n_in = 1, .ne = {S(500, 40, 1, 1)}, .n_ival = 40,
     .idx_mod = 500},
    {.name = "big_rms_norm_f16_long_rows", .op = C_RMS_NORM, .n_in = 1, .ne = {S(5000, 2, 1, 1)}, .f0 = 1e-5f,
     .type0 = BNB_TYPE_F16, .tol = 1e-4},
    {.name = "mlp_cross_entropy", .op = C_MLP, .n_in = 5, .ne = {S(6, 5, 1, 1), S(6, 8, 1, 1), S(8, 1, 1, 1), S(8, 4, 1, 1), S(4, 1, 1, 1)},
     .no_grad = 1, .n_ival = 5, .ival = {1, 0, 3, 3, 2}},
};

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    test_errors();
    for (int b = 0; b < bl.n; b++) {
        for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) run_case(bl.be[b], &g_cases[i]);
        test_accumulate(bl.be[b]);
        test_cast(bl.be[b]);
        test_quantized_weight(bl.be[b]);
    }
    tc_close_backends(&bl);
    return tc_summary("test-grad");
}
