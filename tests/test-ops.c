/* test-ops: every core op x type x shape x layout (contiguous, transposed, permuted, sliced inputs) against a
 * float64 reference computed here from the SAME type-rounded input values, on every backend of --backend.
 * Each case runs twice with new random inputs and a poisoned output (the graph allocator reuses memory), and when
 * CUDA runs its outputs are also compared with the CPU's directly. */
#include "test-common.h"

#define MAX_IN 4

enum { L_CONT, L_TRANS, L_PERM, L_PERM12, L_SLICE };
static const char *const layout_names[] = {"cont", "transposed", "permuted", "perm12", "sliced"};
enum { F_SIGNED, F_POS, F_INDEX };

typedef struct {
    bnb_tensor *t, *leaf; /* what the op sees (maybe a view) and the leaf holding the data */
    int fill;
    float lo, hi;         /* |x| range (F_SIGNED), range (F_POS), or indices in [0, hi) (F_INDEX) */
    float *host;          /* leaf contents as stored (rounded to the leaf type) */
    double *val;          /* logical contents of t, contiguous in t->ne order */
} op_input;

typedef struct op_case op_case;
typedef bnb_tensor *(*build_fn)(op_case *c);
/* ref: fill ref[] (and optionally scale[], the magnitude below which errors count as absolute; left < 0 it
 * defaults to floor_frac * max|ref|) for an output of shape ne. */
typedef void (*ref_fn)(const op_case *c, const int64_t ne[4], double *ref, double *scale);

struct op_case {
    char desc[160];
    build_fn build;
    ref_fn ref;
    bnb_type type, type2;
    int64_t ne[4], ne2[4];
    int layout, layout2;
    int ip[4];
    float fp[4];
    double tol, floor_frac;
    /* state while running */
    bnb_context *ctx;
    op_input in[MAX_IN];
    int n_in;
};

static bnb_backend *g_be[TC_MAX_BACKENDS];
static bool g_checked[TC_MAX_BACKENDS]; /* false: a CPU partner run only to compare CUDA against */
static int g_nbe;
static uint64_t g_seed = 20240601;

#define VAL(c, i) ((c)->in[i].val)
#define NE(c, i) ((c)->in[i].t->ne)

static double dmax(double a, double b) { return a > b ? a : b; }

/* ---------------------------------------------------------------------------------------------- inputs */
/* New input of logical shape ne, built as a leaf plus a view giving the requested layout. */
static bnb_tensor *add_input(op_case *c, bnb_type type, const int64_t ne[4], int layout, int fill, float lo, float hi) {
    if (c->n_in >= MAX_IN) return NULL;
    int64_t l[4] = {ne[0], ne[1], ne[2], ne[3]};
    if (layout == L_TRANS) l[0] = ne[1], l[1] = ne[0];
    if (layout == L_PERM) l[0] = ne[1], l[1] = ne[2], l[2] = ne[0];
    if (layout == L_PERM12) l[1] = ne[2], l[2] = ne[1];
    if (layout == L_SLICE) l[0] = ne[0] + 3, l[1] = ne[1] + 2;
    bnb_tensor *leaf = bnb_new_tensor(c->ctx, type, 4, l), *t = leaf;
    if (!leaf) return NULL;
    if (layout == L_TRANS) t = bnb_transpose(c->ctx, leaf);
    if (layout == L_PERM) t = bnb_permute(c->ctx, leaf, 1, 2, 0, 3);
    if (layout == L_PERM12) t = bnb_permute(c->ctx, leaf, 0, 2, 1, 3);
    if (layout == L_SLICE) t = bnb_slice(c->ctx, bnb_slice(c->ctx, leaf, 0, 2, ne[0]), 1, 1, ne[1]);
    if (!t) return NULL;
    for (int i = 0; i < 4; i++)
        if (t->ne[i] != ne[i]) return NULL;
    op_input *in = &c->in[c->n_in++];
    *in = (op_input){t, leaf, fill, lo, hi, tc_malloc((size_t)bnb_nelements(leaf) * sizeof(float)),
                     tc_malloc((size_t)bnb_nelements(t) * sizeof(double))};
    return t;
}

static bnb_tensor *add_signed(op_case *c, bnb_type type, const int64_t ne[4], int layout) {
    return add_input(c, type, ne, layout, F_SIGNED, 0.1f, 2.f);
}
static bnb_tensor *add_index(op_case *c, int64_t n, int64_t range) {
    return add_input(c, BNB_TYPE_I32, (int64_t[4]){n, 1, 1, 1}, L_CONT, F_INDEX, 0, (float)range);
}

/* Logical contents of a (view) tensor from its leaf's host copy. */
static void gather(op_input *in) {
    const bnb_tensor *t = in->t;
    size_t es = bnb_type_get_traits(t->type)->type_size, off = t->view_src ? t->view_offs : 0;
    int64_t k = 0;
    for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < t->ne[1]; i1++)
                for (int64_t i0 = 0; i0 < t->ne[0]; i0++) {
                    size_t b = off + (size_t)i0 * t->nb[0] + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
                               (size_t)i3 * t->nb[3];
                    in->val[k++] = in->host[b / es];
                }
}

static bool fill_inputs(op_case *c, uint64_t seed) {
    tc_rng r;
    tc_rng_seed(&r, seed);
    for (int i = 0; i < c->n_in; i++) {
        op_input *in = &c->in[i];
        int64_t n = bnb_nelements(in->leaf);
        bnb_status st;
        if (in->fill == F_INDEX) {
            int32_t *idx = tc_malloc((size_t)n * sizeof *idx);
            for (int64_t j = 0; j < n; j++) in->host[j] = (float)(idx[j] = (int32_t)tc_rand_int(&r, (int64_t)in->hi));
            st = bnb_tensor_set(in->leaf, idx, 0, (size_t)n * sizeof *idx);
            free(idx);
        } else {
            if (in->fill == F_POS)
                tc_fill_positive(&r, in->host, n, in->lo, in->hi);
            else
                tc_fill_signed(&r, in->host, n, in->lo, in->hi);
            tc_round_to_type(in->host, n, in->leaf->type);
            st = bnb_tensor_set_f32(in->leaf, in->host, n);
        }
        if (!tc_require(st == BNB_OK, "%s: uploading input %d: %s", c->desc, i, bnb_last_error())) return false;
        gather(in);
    }
    return true;
}

static void free_inputs(op_case *c) {
    for (int i = 0; i < c->n_in; i++) {
        free(c->in[i].host);
        free(c->in[i].val);
    }
    c->n_in = 0;
}

/* ---------------------------------------------------------------------------------------------- runner */
static void compute_ref(const op_case *c, const int64_t ne[4], bnb_type out_type, double *ref, double *scale) {
    int64_t n = tc_nel(ne);
    for (int64_t i = 0; i < n; i++) scale[i] = -1;
    c->ref(c, ne, ref, scale);
    double fl = c->floor_frac * tc_max_abs(ref, n);
    if (out_type == BNB_TYPE_F16) fl = dmax(fl, 6.103515625e-05); /* below f16's smallest normal, errors are absolute */
    for (int64_t i = 0; i < n; i++)
        if (scale[i] < 0) scale[i] = fl;
}

static void report_err(bool ok, const op_case *c, const char *where, double err, int64_t w, const float *got,
                       const double *ref, const int64_t ne[4]) {
    tc_check(ok, "%s on %s: max rel err %.3g (tol %.3g) at [%lld,%lld,%lld,%lld] of %lldx%lldx%lldx%lld: got %.9g, want %.9g",
             c->desc, where, err, c->tol, (long long)(w % ne[0]), (long long)(w / ne[0] % ne[1]),
             (long long)(w / ne[0] / ne[1] % ne[2]), (long long)(w / ne[0] / ne[1] / ne[2]), (long long)ne[0],
             (long long)ne[1], (long long)ne[2], (long long)ne[3], got[w], ref[w]);
}

static void run_case(const op_case *proto) {
    float *outs[TC_MAX_BACKENDS] = {0};
    double *scale0 = NULL;
    int64_t ne[4] = {0}, n = 0;
    uint64_t seed = ++g_seed;
    for (int b = 0; b < g_nbe; b++) {
        op_case c = *proto;
        const char *bname = bnb_backend_name(g_be[b]);
        c.ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
        c.n_in = 0;
        bnb_tensor *out = c.ctx ? c.build(&c) : NULL;
        if (!tc_require(out != NULL, "%s: constructor failed: %s", c.desc, bnb_last_error())) {
            free_inputs(&c);
            bnb_context_free(c.ctx);
            break;
        }
        memcpy(ne, out->ne, sizeof ne);
        n = bnb_nelements(out);
        bnb_graph *g = bnb_graph_new(c.ctx, 256);
        bnb_status st = g ? bnb_graph_build(g, out) : BNB_ERR_OOM;
        bnb_buffer *buf = st == BNB_OK ? bnb_backend_alloc_tensors(g_be[b], c.ctx) : NULL;
        if (tc_require(buf != NULL, "%s: graph build / leaf allocation on %s: %s", c.desc, bname, bnb_last_error())) {
            float *got = tc_malloc((size_t)n * sizeof *got);
            double *ref = tc_malloc((size_t)n * sizeof *ref), *scale = tc_malloc((size_t)n * sizeof *scale);
            for (int rep = 0; rep < 2; rep++) {
                if (!fill_inputs(&c, seed * 2 + (uint64_t)rep)) break;
                if (rep == 1) { /* poison the output: every element must be written again */
                    size_t nb = bnb_nbytes(out);
                    uint8_t *p = tc_malloc(nb);
                    memset(p, 0xFF, nb);
                    bnb_tensor_set(out, p, 0, nb);
                    free(p);
                }
                st = bnb_graph_compute(g_be[b], g);
                if (!tc_require(st == BNB_OK, "%s: compute on %s: %s: %s", c.desc, bname, bnb_status_name(st),
                              bnb_last_error()))
                    break;
                st = bnb_tensor_get_f32(out, got, n);
                if (!tc_require(st == BNB_OK, "%s: reading the output: %s", c.desc, bnb_last_error())) break;
                compute_ref(&c, ne, out->type, ref, scale);
                if (g_checked[b]) {
                    int64_t w;
                    double err = tc_rel_err(got, ref, scale, 0, n, &w);
                    char where[64];
                    snprintf(where, sizeof where, "%s, run %d", bname, rep + 1);
                    report_err(err <= c.tol, &c, where, err, w, got, ref, ne);
                }
                if (rep == 0) {
                    outs[b] = tc_malloc((size_t)n * sizeof(float));
                    memcpy(outs[b], got, (size_t)n * sizeof(float));
                    if (!scale0) {
                        scale0 = tc_malloc((size_t)n * sizeof(double));
                        memcpy(scale0, scale, (size_t)n * sizeof(double));
                    }
                }
            }
            free(got);
            free(ref);
            free(scale);
            bnb_buffer_free(buf);
        }
        free_inputs(&c);
        bnb_context_free(c.ctx); /* frees the graph; its plan buffer is owned by the graph */
    }
    /* other backends against the first (the CPU) directly */
    for (int b = 1; b < g_nbe; b++) {
        if (!outs[0] || !outs[b]) continue;
        double *r = tc_malloc((size_t)n * sizeof *r);
        for (int64_t i = 0; i < n; i++) r[i] = outs[0][i];
        int64_t w;
        double err = tc_rel_err(outs[b], r, scale0, 0, n, &w);
        op_case c = *proto;
        c.tol *= 2;
        char where[64];
        snprintf(where, sizeof where, "%s vs %s", bnb_backend_name(g_be[b]), bnb_backend_name(g_be[0]));
        report_err(err <= c.tol, &c, where, err, w, outs[b], r, ne);
        free(r);
    }
    for (int b = 0; b < g_nbe; b++) free(outs[b]);
    free(scale0);
}

static void set_desc(op_case *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_desc(op_case *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->desc, sizeof c->desc, fmt, ap);
    va_end(ap);
}

static const bnb_type float_types[] = {BNB_TYPE_F32, BNB_TYPE_F16, BNB_TYPE_BF16};
#define SHAPE(a, b, c_, d) {a, b, c_, d}

/* ---------------------------------------------------------------------------------------------- cont / cast */
static bnb_tensor *build_cast(op_case *c) {
    bnb_tensor *x = add_signed(c, c->type, c->ne, c->layout);
    if (!x) return NULL;
    return c->type2 == c->type ? bnb_cont(c->ctx, x) : bnb_cast(c->ctx, x, c->type2);
}
static void ref_copy(const op_case *c, const int64_t ne[4], double *ref, double *scale) {
    memcpy(ref, VAL(c, 0), (size_t)tc_nel(ne) * sizeof(double));
}

static void test_cast(void) {
    const int64_t shapes[][4] = {SHAPE(1, 1, 1, 1), SHAPE(7, 3, 1, 1), SHAPE(300, 5, 1, 1), SHAPE(33, 4, 3, 2)};
    for (int ti = 0; ti < 3; ti++)
        for (int to = 0; to < 3; to++)
            for (int s = 0; s < 4; s++)
                for (int l = L_CONT; l <= L_SLICE; l++) {
                    if (s == 0 && l != L_CONT) continue;
                    op_case c = {.build = build_cast, .ref = ref_copy, .type = float_types[ti], .type2 = float_types[to],
                                 .layout = l, .tol = tc_type_tol(float_types[to]), .floor_frac = 1e-3};
                    memcpy(c.ne, shapes[s], sizeof c.ne);
                    set_desc(&c, "%s %s->%s %lldx%lldx%lldx%lld %s", ti == to ? "bnb_cont" : "bnb_cast",
                             bnb_type_name(c.type), bnb_type_name(c.type2), (long long)c.ne[0], (long long)c.ne[1],
                             (long long)c.ne[2], (long long)c.ne[3], layout_names[l]);
                    run_case(&c);
                }
}

/* ---------------------------------------------------------------------------------------------- binary */
static bnb_tensor *build_binary(op_case *c) {
    bnb_tensor *a = add_signed(c, c->type, c->ne, c->layout);
    bnb_tensor *b = add_input(c, c->type2, c->ne2, c->layout2, F_SIGNED, 0.25f, 2.f);
    if (!a || !b) return NULL;
    switch (c->ip[0]) {
    case BNB_OP_ADD: return bnb_add(c->ctx, a, b);
    case BNB_OP_SUB: return bnb_sub(c->ctx, a, b);
    case BNB_OP_MUL: return bnb_mul(c->ctx, a, b);
    default: return bnb_div(c->ctx, a, b);
    }
}
static void ref_binary(const op_case *c, const int64_t ne[4], double *ref, double *scale) {
    const int64_t *nb = NE(c, 1);
    for (int64_t i3 = 0; i3 < ne[3]; i3++)
        for (int64_t i2 = 0; i2 < ne[2]; i2++)
            for (int64_t i1 = 0; i1 < ne[1]; i1++)
                for (int64_t i0 = 0; i0 < ne[0]; i0++) {
                    int64_t i = tc_idx(ne, i0, i1, i2, i3);
                    double x = VAL(c, 0)[i];
                    double y = VAL(c, 1)[tc_idx(nb, i0 % nb[0], i1 % nb[1], i2 % nb[2], i3 % nb[3])];
                    switch (c->ip[0]) {
                    case BNB_OP_ADD: ref[i] = x + y; break;
                    case BNB_OP_SUB: ref[i] = x - y; break;
                    case BNB_OP_MUL: ref[i] = x * y; break;
                    default: ref[i] = x / y;
                    }
                }
}

static void test_binary(void) {
    const int ops[] = {BNB_OP_ADD, BNB_OP_SUB, BNB_OP_MUL, BNB_OP_DIV};
    const int64_t shapes[][4] = {SHAPE(1, 1, 1, 1), SHAPE(5, 3, 1, 1), SHAPE(300, 3, 1, 1), SHAPE(17, 5, 3, 2)};
    const int bmasks[] = {0, 0xE, 0x1, 0xA, 0xF, 0x5}; /* bit k set: b->ne[k] = 1 */
    const bnb_type pairs[][2] = {{BNB_TYPE_F32, BNB_TYPE_F32}, {BNB_TYPE_F16, BNB_TYPE_F16}, {BNB_TYPE_BF16, BNB_TYPE_BF16},
                                 {BNB_TYPE_F32, BNB_TYPE_F16}, {BNB_TYPE_F16, BNB_TYPE_F32}, {BNB_TYPE_BF16, BNB_TYPE_F32}};
    const int layouts[][2] = {{L_CONT, L_CONT}, {L_TRANS, L_CONT}, {L_CONT, L_PERM}, {L_SLICE, L_TRANS}, {L_PERM, L_SLICE}};
    for (int o = 0; o < 4; o++)
        for (int p = 0; p < 6; p++)
            for (int s = 0; s < 4; s++)
                for (int m = 0; m < 6; m++)
                    for (int l = 0; l < 5; l++) {
                        if ((s < 2 && l > 1) || (m > 1 && p > 2 && l > 0) || (s == 0 && m > 0)) continue;
                        op_case c = {.build = build_binary, .ref = ref_binary, .type = pairs[p][0], .type2 = pairs[p][1],
                                     .layout = layouts[l][0], .layout2 = layouts[l][1], .ip = {ops[o]},
                                     .tol = tc_type_tol(pairs[p][0]), .floor_frac = 1e-3};
                        for (int k = 0; k < 4; k++) {
                            c.ne[k] = shapes[s][k];
                            c.ne2[k] = (bmasks[m] >> k) & 1 ? 1 : shapes[s][k];
                        }
                        set_desc(&c, "%s %s,%s a %lldx%lldx%lldx%lld (%s) b %lldx%lldx%lldx%lld (%s)",
                                 bnb_op_name(ops[o]), bnb_type_name(c.type), bnb_type_name(c.type2), (long long)c.ne[0],
                                 (long long)c.ne[1], (long long)c.ne[2], (long long)c.ne[3], layout_names[c.layout],
                                 (long long)c.ne2[0], (long long)c.ne2[1], (long long)c.ne2[2], (long long)c.ne2[3],
                                 layout_names[c.layout2]);
                        run_case(&c);
                    }
}

/* ---------------------------------------------------------------------------------------------- unary */
static bnb_tensor *build_unary(op_case *c) {
    int op = c->ip[0];
    bool pos = op == BNB_OP_SQRT || op == BNB_OP_LOG;
    bnb_tensor *x = add_input(c, c->type, c->ne, c->layout, pos ? F_POS : F_SIGNED, pos ? 0.1f : 0.05f, pos ? 4.f : 3.f);
    if (!x) return NULL;
    switch (op) {
    case BNB_OP_SCALE: return bnb_scale(c->ctx, x, c->fp[0]);
    case BNB_OP_NEG: return bnb_neg(c->ctx, x);
    case BNB_OP_ABS: return bnb_abs(c->ctx, x);
    case BNB_OP_SQR: return bnb_sqr(c->ctx, x);
    case BNB_OP_SQRT: return bnb_sqrt(c->ctx, x);
    case BNB_OP_EXP: return bnb_exp(c->ctx, x);
    case BNB_OP_LOG: return bnb_log(c->ctx, x);
    case BNB_OP_RELU: return bnb_relu(c->ctx, x);
    case BNB_OP_GELU: return bnb_gelu(c->ctx, x);
    case BNB_OP_SILU: return bnb_silu(c->ctx, x);
    default: return bnb_tanh(c->ctx, x);
    }
}
static void ref_unary(const op_case *c, const int64_t ne[4], double *ref, double *scale) {
    int64_t n = tc_nel(ne);
    for (int64_t i = 0; i < n; i++) {
        double x = VAL(c, 0)[i];
        switch (c->ip[0]) {
        case BNB_OP_SCALE: ref[i] = x * (double)c->fp[0]; break;
        case BNB_OP_NEG: ref[i] = -x; break;
        case BNB_OP_ABS: ref[i] = fabs(x); break;
        case BNB_OP_SQR: ref[i] = x * x; break;
        case BNB_OP_SQRT: ref[i] = sqrt(x); break;
        case BNB_OP_EXP: ref[i] = exp(x); break;
        case BNB_OP_LOG: ref[i] = log(x); break;
        case BNB_OP_RELU: ref[i] = x > 0 ? x : 0; break;
        case BNB_OP_GELU: ref[i] = tc_gelu_ref(x); break;
        case BNB_OP_SILU: ref[i] = tc_silu_ref(x); break;
        default: ref[i] = tanh(x);
        }
    }
}

static void test_unary(void) {
    const int ops[] = {BNB_OP_SCALE, BNB_OP_NEG, BNB_OP_ABS, BNB_OP_SQR, BNB_OP_SQRT, BNB_OP_EXP,
                       BNB_OP_LOG, BNB_OP_RELU, BNB_OP_GELU, BNB_OP_SILU, BNB_OP_TANH};
    const int64_t shapes[][4] = {SHAPE(1, 1, 1, 1), SHAPE(7, 3, 1, 1), SHAPE(513, 3, 1, 1), SHAPE(33, 4, 3, 2),
                                 SHAPE(4099, 17, 1, 1)};
    for (int o = 0; o < 11; o++)
        for (int t = 0; t < 3; t++)
            for (int s = 0; s < 5; s++)
                for (int l = L_CONT; l <= L_SLICE; l++) {
                    if ((s == 0 || s == 2) && l != L_CONT) continue;
                    if (s == 4 && l != L_CONT && l != L_TRANS) continue;
                    op_case c = {.build = build_unary, .ref = ref_unary, .type = float_types[t], .layout = l,
                                 .ip = {ops[o]}, .fp = {s % 2 ? -1.375f : 0.7f}, .tol = tc_type_tol(float_types[t]),
                                 .floor_frac = 1e-3};
                    memcpy(c.ne, shapes[s], sizeof c.ne);
                    set_desc(&c, "%s %s %lldx%lldx%lldx%lld %s", bnb_op_name(ops[o]), bnb_type_name(c.type),
                             (long long)c.ne[0], (long long)c.ne[1], (long long)c.ne[2], (long long)c.ne[3],
                             layout_names[l]);
                    run_case(&c);
                }
}

/* ---------------------------------------------------------------------------------------------- reductions */
static bnb_tensor *build_reduce(op_case *c) {
    bnb_tensor *x = add_input(c, c->type, c->ne, c->layout, F_SIGNED, 0.05f, 3.f);
    if (!x) return NULL;
    switch (c->ip[0]) {
    case BNB_OP_SUM: return bnb_sum(c->ctx, x);
    case BNB_OP_SUM_ROWS: return bnb_sum_rows(c->ctx, x);
    case BNB_OP_MEAN: return bnb_mean(c->ctx, x);
    case BNB_OP_MAX_ROWS: return bnb_max_rows(c->ctx, x);
    default: return bnb_argmax(c->ctx, x);
    }
}
static void ref_reduce(const op_case *c, const int64_t ne[4], double *ref, double *scale) {
    const int64_t *nx = NE(c, 0);
    const double *x = VAL(c, 0);
    int64_t rows = nx[1] * nx[2] * nx[3], n0 = nx[0];
    if (c->ip[0] == BNB_OP_SUM) {
        double s = 0, a = 0;
        for (int64_t i = 0; i < n0 * rows; i++) s += x[i], a += fabs(x[i]);
        ref[0] = s;
        scale[0] = a; /* summation error is relative to sum |x| */
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const double *row = x + r * n0;
        double s = 0, a = 0;
        int64_t am = 0;
        for (int64_t i = 0; i < n0; i++) {
            s += row[i], a += fabs(row[i]);
            if (row[i] > row[am]) am = i; /* first max */
        }
        switch (c->ip[0]) {
        case BNB_OP_SUM_ROWS: ref[r] = s, scale[r] = a; break;
        case BNB_OP_MEAN: ref[r] = s / (double)n0, scale[r] = a / (double)n0; break;
        case BNB_OP_MAX_ROWS: ref[r] = row[am]; break;
        default: ref[r] = (double)am;
        }
    }
}

static void test_reduce(void) {
    const int ops[] = {BNB_OP_SUM, BNB_OP_SUM_ROWS, BNB_OP_MEAN, BNB_OP_MAX_ROWS, BNB_OP_ARGMAX};
    const int64_t shapes[][4] = {SHAPE(1, 1, 1, 1), SHAPE(7, 3, 1, 1), SHAPE(300, 5, 1, 1), SHAPE(513, 2, 3, 2),
                                 SHAPE(33, 4, 3, 2)};
    for (int o = 0; o < 5; o++)
        for (int t = 0; t < 3; t++)
            for (int s = 0; s < 5; s++)
                for (int l = L_CONT; l <= L_SLICE; l++) {
                    if (s != 1 && s != 4 && l != L_CONT) continue;
                    bool exact = ops[o] == BNB_OP_MAX_ROWS || ops[o] == BNB_OP_ARGMAX;
                    op_case c = {.build = build_reduce, .ref = ref_reduce, .type = float_types[t], .layout = l,
                                 .ip = {ops[o]}, .tol = exact ? 0 : tc_type_tol(BNB_TYPE_F32), .floor_frac = 0};
                    memcpy(c.ne, shapes[s], sizeof c.ne);
                    set_desc(&c, "%s %s %lldx%lldx%lldx%lld %s", bnb_op_name(ops[o]), bnb_type_name(c.type),
                             (long long)c.ne[0], (long long)c.ne[1], (long long)c.ne[2], (long long)c.ne[3],
                             layout_names[l]);
                    run_case(&c);
                }
}

/* ---------------------------------------------------------------------------------------------- mul_mat */
static bnb_tensor *build_mul_mat(op_case *c) {
    bnb_tensor *a = add_signed(c, c->type, c->ne, c->layout);
    bnb_tensor *b = add_signed(c, c->type2, c->ne2, c->layout2);
    return a && b ? bnb_mul_mat(c->ctx, a, b) : NULL;
}
/* out[m, n, i2, i3] = sum_k a[k, m, i2 / (B2/A2), i3 / (B3/A3)] * b[k, n, i2, i3] (a broadcast over b's batches) */
static void ref_mul_mat(const op_case *c, const int64_t ne[4], double *ref, double *scale) {
    const int64_t *na = NE(c, 0), *nb = NE(c, 1);
    int64_t K = na[0], r2 = nb[2] / na[2], r3 = nb[3] / na[3];
    for (int64_t i3 = 0; i3 < ne[3]; i3++)
        for (int64_t i2 = 0; i2 < ne[2]; i2++)
            for (int64_t n = 0; n < ne[1]; n++)
                for (int64_t m = 0; m < ne[0]; m++) {
                    const double *ar = VAL(c, 0) + tc_idx(na, 0, m, i2 / r2, i3 / r3);
                    const double *br = VAL(c, 1) + tc_idx(nb, 0, n, i2, i3);
                    double s = 0, a = 0;
                    for (int64_t k = 0; k < K; k++) s += ar[k] * br[k], a += fabs(ar[k] * br[k]);
                    int64_t i = tc_idx(ne, m, n, i2, i3);
                    ref[i] = s;
                    scale[i] = a; /* error relative to sum |a_k b_k| (the norm of the products) */
                }
}

static void test_mul_mat(void) {
    const int64_t kmn[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 16, 8}, {300, 67, 33}, {513, 3, 260}, {32, 1, 17}, {17, 33, 1},
                              {257, 100, 130}, {96, 37, 4}};
    const int64_t batch[][4] = {{1, 1, 1, 1}, {2, 3, 2, 3}, {1, 1, 4, 3}, {2, 1, 4, 3}}; /* a2 a3 b2 b3 */
    const bnb_type pairs[][2] = {{BNB_TYPE_F32, BNB_TYPE_F32}, {BNB_TYPE_F16, BNB_TYPE_F16}, {BNB_TYPE_BF16, BNB_TYPE_BF16},
                                 {BNB_TYPE_F16, BNB_TYPE_F32}, {BNB_TYPE_BF16, BNB_TYPE_F32}};
    const int layouts[][2] = {{L_CONT, L_CONT}, {L_SLICE, L_CONT}, {L_CONT, L_PERM12}, {L_PERM12, L_SLICE}};
    for (int p = 0; p < 5; p++)
        for (int s = 0; s < 9; s++)
            for (int bt = 0; bt < 4; bt++)
                for (int l = 0; l < 4; l++) {
                    if ((s >= 3 && bt > 1) || (s == 7 && bt > 0) || (bt > 0 && l > 0 && l != bt) || (s == 0 && l > 0)) continue;
                    double tol = dmax(tc_type_tol(pairs[p][0]), tc_type_tol(pairs[p][1]));
                    op_case c = {.build = build_mul_mat, .ref = ref_mul_mat, .type = pairs[p][0], .type2 = pairs[p][1],
                                 .layout = layouts[l][0], .layout2 = layouts[l][1],
                                 .ne = {kmn[s][0], kmn[s][1], batch[bt][0], batch[bt][1]},
                                 .ne2 = {kmn[s][0], kmn[s][2], batch[bt][2], batch[bt][3]}, .tol = tol};
                    set_desc(&c, "bnb_mul_mat %s,%s a %lldx%lldx%lldx%lld (%s) b %lldx%lldx%lldx%lld (%s)",
                             bnb_type_name(c.type), bnb_type_name(c.type2), (long long)c.ne[0], (long long)c.ne[1],
                             (long long)c.ne[2], (long long)c.ne[3], layout_names[c.layout], (long long)c.ne2[0],
                             (long long)c.ne2[1], (long long)c.ne2[2], (long long)c.ne2[3], layout_names[c.layout2]);
                    run_case(&c);
                }
}

#include "test-ops-nn.inc"

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    for (int i = 0; i < bl.n; i++) {
        g_be[g_nbe] = bl.be[i];
        g_checked[g_nbe++] = true;
    }
    bnb_backend *partner = NULL;
    if (g_nbe > 0 && !bnb_backend_is_cpu(g_be[0])) { /* CUDA only: run the CPU too, to compare against */
        partner = bnb_backend_cpu_new(2);
        if (partner) {
            memmove(g_be + 1, g_be, (size_t)g_nbe * sizeof *g_be);
            memmove(g_checked + 1, g_checked, (size_t)g_nbe * sizeof *g_checked);
            g_be[0] = partner;
            g_checked[0] = false;
            g_nbe++;
        }
    }
    printf("test-ops on:");
    for (int i = 0; i < g_nbe; i++) printf(" %s%s", bnb_backend_name(g_be[i]), g_checked[i] ? "" : " (reference only)");
    printf("\n");
    test_cast();
    test_binary();
    test_unary();
    test_reduce();
    test_mul_mat();
    test_get_rows();
    test_concat();
    test_softmax();
    test_norm();
    test_rope();
    test_cross_entropy();
    test_views();
    bnb_backend_free(partner);
    tc_close_backends(&bl);
    return tc_summary("test-ops");
}
