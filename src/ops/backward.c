/* Autodiff ops: constructors of the ops that gradient graphs use (fill, repeat, sum_to, in-place accumulation and
 * the fused backward ops), and bnb_op_backward, the gradient rule of every differentiable core op.
 * Gradients are F32 throughout; a rule receives gy = d loss / d node and adds each source's share through
 * bnb_grad_add / bnb_grad_sub (src/autodiff.c), which sum the contributions of tensors used more than once. */
#include "../bnb-impl.h"

/* ================================================================================================ constructors */

static bool check_float(const char *op, const bnb_tensor *t, const char *what) {
    if (!bnb_check_src(op, t, what)) return false;
    if (!bnb_type_is_float(t->type)) {
        bnb_fail(BNB_ERR_TYPE, "%s: %s is %s, must be f32/f16/bf16", op, what, bnb_type_name(t->type));
        return false;
    }
    return true;
}

static bool check_same_shape(const char *op, const bnb_tensor *a, const bnb_tensor *b) {
    if (bnb_same_shape(a, b)) return true;
    char sa[64], sb[64];
    bnb_fail(BNB_ERR_SHAPE, "%s: shapes %s and %s differ", op, bnb_shape_str(a, sa, sizeof sa),
             bnb_shape_str(b, sb, sizeof sb));
    return false;
}

bnb_tensor *bnb_fill(bnb_context *ctx, int n_dims, const int64_t *ne_in, float value) {
    if (n_dims < 1 || n_dims > 4 || !ne_in)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_fill: n_dims %d not in 1..4 (or ne NULL)", n_dims);
    int64_t ne[4] = {1, 1, 1, 1};
    for (int i = 0; i < n_dims; i++) {
        if (ne_in[i] < 0) return bnb_fail_null(BNB_ERR_SHAPE, "bnb_fill: dim %d is negative", i);
        ne[i] = ne_in[i];
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_FILL, BNB_TYPE_F32, ne);
    if (t) bnb_set_op_f32(t, 0, value);
    return t;
}

/* small must have every dim equal to big's or 1 */
static bool check_broadcast(const char *op, const bnb_tensor *small, const int64_t big[4]) {
    for (int i = 0; i < 4; i++) {
        if (small->ne[i] != big[i] && small->ne[i] != 1) {
            char s[64];
            bnb_fail(BNB_ERR_SHAPE, "%s: %s does not broadcast to %lldx%lldx%lldx%lld (dim %d)", op,
                     bnb_shape_str(small, s, sizeof s), (long long)big[0], (long long)big[1], (long long)big[2],
                     (long long)big[3], i);
            return false;
        }
    }
    return true;
}

bnb_tensor *bnb_repeat(bnb_context *ctx, bnb_tensor *a, const bnb_tensor *like) {
    if (!check_float("bnb_repeat", a, "a") || !bnb_check_src("bnb_repeat", like, "like")) return NULL;
    if (!check_broadcast("bnb_repeat", a, like->ne)) return NULL;
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_REPEAT, BNB_TYPE_F32, like->ne);
    if (t) t->src[0] = a;
    return t;
}

static bnb_tensor *sum_to_ne(bnb_context *ctx, bnb_tensor *a, const int64_t ne[4]) {
    if (!check_float("bnb_sum_to", a, "a")) return NULL;
    bnb_tensor probe = {.ne = {ne[0], ne[1], ne[2], ne[3]}};
    if (!check_broadcast("bnb_sum_to", &probe, a->ne)) return NULL;
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_SUM_TO, BNB_TYPE_F32, ne);
    if (t) t->src[0] = a;
    return t;
}

bnb_tensor *bnb_sum_to(bnb_context *ctx, bnb_tensor *a, const bnb_tensor *like) {
    if (!bnb_check_src("bnb_sum_to", like, "like")) return NULL;
    return sum_to_ne(ctx, a, like->ne);
}

bnb_tensor *bnb_acc_grad(bnb_context *ctx, bnb_tensor *acc, bnb_tensor *g) {
    const char *op = "bnb_acc_grad";
    if (!bnb_check_src(op, acc, "acc") || !check_float(op, g, "g") || !check_same_shape(op, acc, g)) return NULL;
    if (acc->type != BNB_TYPE_F32 || !bnb_is_contiguous(acc) || acc->op != BNB_OP_NONE)
        return bnb_fail_null(BNB_ERR_TYPE, "%s: the accumulator must be a contiguous f32 leaf", op);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_ACC_GRAD, BNB_TYPE_F32, acc->ne);
    if (!t) return NULL;
    t->src[0] = acc;
    t->src[1] = g;
    /* writes into acc's memory: the allocator leaves nodes with view_src in place */
    t->view_src = acc;
    t->view_offs = 0;
    bnb_view_init(t);
    return t;
}

/* gy and x of the same shape -> F32 of x's shape */
static bnb_tensor *back_op(bnb_context *ctx, bnb_op op, bnb_tensor *gy, bnb_tensor *x) {
    const char *name = bnb_op_name(op);
    if (!check_float(name, gy, "gy") || !check_float(name, x, "x") || !check_same_shape(name, gy, x)) return NULL;
    bnb_tensor *t = bnb_new_op_tensor(ctx, op, BNB_TYPE_F32, x->ne);
    if (!t) return NULL;
    t->src[0] = gy;
    t->src[1] = x;
    return t;
}

bnb_tensor *bnb_unary_back(bnb_context *ctx, bnb_op fwd, bnb_tensor *gy, bnb_tensor *x) {
    switch (fwd) {
    case BNB_OP_ABS: case BNB_OP_SQR: case BNB_OP_SQRT: case BNB_OP_EXP: case BNB_OP_LOG:
    case BNB_OP_RELU: case BNB_OP_GELU: case BNB_OP_SILU: case BNB_OP_TANH: break;
    default: return bnb_fail_null(BNB_ERR_UNSUPPORTED, "bnb_unary_back: no derivative for %s", bnb_op_name(fwd));
    }
    bnb_tensor *t = back_op(ctx, BNB_OP_UNARY_BACK, gy, x);
    if (t) t->op_params[0] = (int32_t)fwd;
    return t;
}

bnb_tensor *bnb_max_rows_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x) {
    const char *op = "bnb_max_rows_back";
    if (!check_float(op, gy, "gy") || !check_float(op, x, "x")) return NULL;
    if (gy->ne[0] != 1 || gy->ne[1] != x->ne[1] || gy->ne[2] != x->ne[2] || gy->ne[3] != x->ne[3]) {
        char sa[64], sb[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: gy is %s, x is %s: gy must be [1, x.ne1, x.ne2, x.ne3]", op,
                             bnb_shape_str(gy, sa, sizeof sa), bnb_shape_str(x, sb, sizeof sb));
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_MAX_ROWS_BACK, BNB_TYPE_F32, x->ne);
    if (!t) return NULL;
    t->src[0] = gy;
    t->src[1] = x;
    return t;
}

bnb_tensor *bnb_get_rows_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *idx, const bnb_tensor *table) {
    const char *op = "bnb_get_rows_back";
    if (!check_float(op, gy, "gy") || !bnb_check_src(op, idx, "idx") || !bnb_check_src(op, table, "table")) return NULL;
    if (idx->type != BNB_TYPE_I32) return bnb_fail_null(BNB_ERR_TYPE, "%s: idx is %s, must be i32", op, bnb_type_name(idx->type));
    if (gy->ne[0] != table->ne[0] || gy->ne[1] != bnb_nelements(idx) || gy->ne[2] != 1 || gy->ne[3] != 1 ||
        table->ne[2] != 1 || table->ne[3] != 1) {
        char sa[64], sb[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: gy is %s, table %s: need gy [table.ne0, n_idx]", op,
                             bnb_shape_str(gy, sa, sizeof sa), bnb_shape_str(table, sb, sizeof sb));
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_GET_ROWS_BACK, BNB_TYPE_F32, table->ne);
    if (!t) return NULL;
    t->src[0] = gy;
    t->src[1] = idx;
    return t;
}

bnb_tensor *bnb_view_back(bnb_context *ctx, bnb_tensor *gy, const int64_t ne[4], const int64_t st[4], int64_t off) {
    const char *op = "bnb_view_back";
    if (!check_float(op, gy, "gy")) return NULL;
    /* every element the view addresses must lie inside the destination */
    int64_t n = ne[0] * ne[1] * ne[2] * ne[3], lo = off, hi = off;
    bool empty = bnb_nelements(gy) == 0;
    for (int i = 0; i < 4; i++) {
        if (st[i] < 0) return bnb_fail_null(BNB_ERR_SHAPE, "%s: negative stride in dim %d", op, i);
        hi += (gy->ne[i] - 1) * st[i];
    }
    if (!empty && (lo < 0 || hi >= n))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: view elements [%lld, %lld] outside a destination of %lld", op,
                             (long long)lo, (long long)hi, (long long)n);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_VIEW_BACK, BNB_TYPE_F32, ne);
    if (!t) return NULL;
    t->src[0] = gy;
    for (int i = 0; i < 4; i++) bnb_set_op_i64(t, 2 * i, st[i]);
    bnb_set_op_i64(t, 8, off);
    return t;
}

bnb_tensor *bnb_softmax_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *y, float scale) {
    bnb_tensor *t = back_op(ctx, BNB_OP_SOFTMAX_BACK, gy, y);
    if (t) bnb_set_op_f32(t, 0, scale);
    return t;
}

bnb_tensor *bnb_rms_norm_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x, float eps) {
    bnb_tensor *t = back_op(ctx, BNB_OP_RMS_NORM_BACK, gy, x);
    if (t) bnb_set_op_f32(t, 0, eps);
    return t;
}

bnb_tensor *bnb_layer_norm_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *x, float eps) {
    bnb_tensor *t = back_op(ctx, BNB_OP_LAYER_NORM_BACK, gy, x);
    if (t) bnb_set_op_f32(t, 0, eps);
    return t;
}

bnb_tensor *bnb_rope_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *pos, int n_rot, int mode, float base) {
    const char *op = "bnb_rope_back";
    if (!check_float(op, gy, "gy") || !bnb_check_src(op, pos, "pos")) return NULL;
    if (pos->type != BNB_TYPE_I32 || bnb_nelements(pos) != gy->ne[2] || n_rot <= 0 || n_rot % 2 || n_rot > gy->ne[0])
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: pos must be i32 with one entry per token, n_rot (%d) even <= head_dim",
                             op, n_rot);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_ROPE_BACK, BNB_TYPE_F32, gy->ne);
    if (!t) return NULL;
    t->src[0] = gy;
    t->src[1] = pos;
    t->op_params[0] = n_rot;
    t->op_params[1] = mode;
    bnb_set_op_f32(t, 2, base);
    return t;
}

bnb_tensor *bnb_cross_entropy_back(bnb_context *ctx, bnb_tensor *gy, bnb_tensor *logits, bnb_tensor *targets) {
    const char *op = "bnb_cross_entropy_back";
    if (!check_float(op, gy, "gy") || !check_float(op, logits, "logits") || !bnb_check_src(op, targets, "targets"))
        return NULL;
    if (bnb_nelements(gy) != 1 || targets->type != BNB_TYPE_I32 || bnb_nelements(targets) != bnb_nrows(logits))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: gy must have 1 element, targets i32 with one entry per row", op);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_CROSS_ENTROPY_BACK, BNB_TYPE_F32, logits->ne);
    if (!t) return NULL;
    t->src[0] = gy;
    t->src[1] = logits;
    t->src[2] = targets;
    return t;
}

/* ================================================================================================ gradient rules */

#define ADD(t, c) do { bnb_status st_ = bnb_grad_add(bc, (t), (c)); if (st_ != BNB_OK) return st_; } while (0)
#define SUB(t, c) do { bnb_status st_ = bnb_grad_sub(bc, (t), (c)); if (st_ != BNB_OK) return st_; } while (0)
#define NEED(t) bnb_grad_needed(bc, (t))

static bnb_tensor *contiguous(bnb_context *ctx, bnb_tensor *t) {
    return !t || bnb_is_contiguous(t) ? t : bnb_cont(ctx, t);
}

/* g summed down to t's shape where t was broadcast */
static bnb_tensor *reduce_like(bnb_context *ctx, bnb_tensor *g, const bnb_tensor *t) {
    return !g || bnb_same_shape(g, t) ? g : sum_to_ne(ctx, g, t->ne);
}

/* y = a ·ᵀ b (ggml): a [K,M,A2,A3], b [K,N,B2,B3], y [M,N,B2,B3]; batch i2 of b uses batch i2/(B2/A2) of a. */
static bnb_status mul_mat_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy) {
    bnb_context *ctx = bnb_backward_context(bc);
    bnb_tensor *a = node->src[0], *b = node->src[1];
    if (gy->nb[0] != sizeof(float)) gy = bnb_cont(ctx, gy);
    if (!gy) return bnb_last_status();
    if (NEED(b)) { /* gb[n][k] = sum_m gy[n][m] a[m][k] */
        bnb_tensor *af = a; /* a frozen quantized weight (QLoRA) is dequantized to be transposed */
        if (a->type == BNB_TYPE_Q8_BLOCK) af = bnb_dequantize_blockwise(ctx, a, BNB_TYPE_F32);
        else if (a->type == BNB_TYPE_Q4_NF4 || a->type == BNB_TYPE_Q4_FP4) af = bnb_dequantize_4bit(ctx, a, BNB_TYPE_F32);
        ADD(b, bnb_mul_mat(ctx, bnb_cont(ctx, bnb_transpose(ctx, af)), gy));
    }
    if (!NEED(a)) return BNB_OK;
    const int64_t K = a->ne[0], M = a->ne[1], N = b->ne[1], B2 = b->ne[2], B3 = b->ne[3];
    if (a->ne[2] == 1 && a->ne[3] == 1) {
        /* one weight for every batch: fold the batches into N, one product sums them */
        bnb_tensor *b2 = bnb_reshape_2d(ctx, contiguous(ctx, b), K, N * B2 * B3);
        bnb_tensor *g2 = bnb_reshape_2d(ctx, contiguous(ctx, gy), M, N * B2 * B3);
        ADD(a, bnb_mul_mat(ctx, bnb_cont(ctx, bnb_transpose(ctx, b2)), bnb_cont(ctx, bnb_transpose(ctx, g2))));
        return BNB_OK;
    }
    /* ga[m][k] = sum_n gy[n][m] b[n][k] per batch of b, then summed over the batches that shared a's batch */
    bnb_tensor *ga = bnb_mul_mat(ctx, bnb_cont(ctx, bnb_transpose(ctx, b)), bnb_cont(ctx, bnb_transpose(ctx, gy)));
    const int64_t A2 = a->ne[2], A3 = a->ne[3];
    if (ga && B3 != A3) { /* batch i3 = i3a * r3 + j: fold j into a dim of its own and sum it */
        ga = bnb_reshape_4d(ctx, ga, K * M * B2, B3 / A3, A3, 1);
        ga = sum_to_ne(ctx, ga, (int64_t[4]){K * M * B2, 1, A3, 1});
        ga = ga ? bnb_reshape_4d(ctx, ga, K, M, B2, A3) : NULL;
    }
    if (ga && B2 != A2) {
        ga = bnb_reshape_4d(ctx, ga, K * M, B2 / A2, A2, A3);
        ga = sum_to_ne(ctx, ga, (int64_t[4]){K * M, 1, A2, A3});
        ga = ga ? bnb_reshape_4d(ctx, ga, K, M, A2, A3) : NULL;
    }
    ADD(a, ga);
    return BNB_OK;
}

/* y is a strided view of a (bnb_view / bnb_slice): scatter gy back to a's elements. */
static bnb_status view_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy) {
    bnb_context *ctx = bnb_backward_context(bc);
    bnb_tensor *a = node->src[0];
    const size_t es = bnb_type_size(a->type);
    const size_t a_off = a->view_src ? a->view_offs : 0;
    int64_t st[4];
    for (int i = 0; i < 4; i++) st[i] = (int64_t)(node->nb[i] / es);
    if (bnb_is_contiguous(a)) {
        ADD(a, bnb_view_back(ctx, gy, a->ne, st, (int64_t)((node->view_offs - a_off) / es)));
        return BNB_OK;
    }
    /* a is itself strided: scatter into the memory of the base, then gather a's elements from there */
    bnb_tensor *base = a->view_src;
    const int64_t nbase = (int64_t)(bnb_nbytes(base) / es);
    bnb_tensor *gbase = bnb_view_back(ctx, gy, (int64_t[4]){nbase, 1, 1, 1}, st, (int64_t)(node->view_offs / es));
    if (!gbase) return bnb_last_status();
    size_t nb[4];
    for (int i = 0; i < 4; i++) nb[i] = a->nb[i] / es * sizeof(float);
    ADD(a, bnb_new_view_tensor(ctx, BNB_OP_VIEW, gbase, a->ne, nb, a_off / es * sizeof(float)));
    return BNB_OK;
}

bnb_status bnb_op_backward(bnb_backward_ctx *bc, bnb_tensor *node, bnb_tensor *gy) {
    bnb_context *ctx = bnb_backward_context(bc);
    bnb_tensor *a = node->src[0], *b = node->src[1];
    switch (node->op) {
    /* ---- views and copies */
    case BNB_OP_RESHAPE:
        ADD(a, bnb_reshape_4d(ctx, contiguous(ctx, gy), a->ne[0], a->ne[1], a->ne[2], a->ne[3]));
        return BNB_OK;
    case BNB_OP_VIEW: return view_backward(bc, node, gy);
    case BNB_OP_PERMUTE: {
        int inv[4];
        for (int i = 0; i < 4; i++) inv[node->op_params[i]] = i;
        ADD(a, bnb_permute(ctx, gy, inv[0], inv[1], inv[2], inv[3]));
        return BNB_OK;
    }
    case BNB_OP_TRANSPOSE: ADD(a, bnb_transpose(ctx, gy)); return BNB_OK;
    case BNB_OP_CONT: ADD(a, gy); return BNB_OK; /* also casts: gradients stay F32 */
    /* ---- elementwise binary (b broadcast over a) */
    case BNB_OP_ADD:
        ADD(a, gy);
        if (NEED(b)) ADD(b, reduce_like(ctx, gy, b));
        return BNB_OK;
    case BNB_OP_SUB:
        ADD(a, gy);
        if (NEED(b)) SUB(b, reduce_like(ctx, gy, b));
        return BNB_OK;
    case BNB_OP_MUL:
        if (NEED(a)) ADD(a, bnb_mul(ctx, gy, b));
        if (NEED(b)) ADD(b, reduce_like(ctx, bnb_mul(ctx, gy, a), b));
        return BNB_OK;
    case BNB_OP_DIV: /* d(a/b)/db = -(a/b)/b = -y/b */
        if (NEED(a)) ADD(a, bnb_div(ctx, gy, b));
        if (NEED(b)) SUB(b, reduce_like(ctx, bnb_div(ctx, bnb_mul(ctx, gy, node), b), b));
        return BNB_OK;
    /* ---- elementwise unary */
    case BNB_OP_SCALE: ADD(a, bnb_scale(ctx, gy, bnb_get_op_f32(node, 0))); return BNB_OK;
    case BNB_OP_NEG: SUB(a, gy); return BNB_OK;
    case BNB_OP_ABS:
    case BNB_OP_SQR:
    case BNB_OP_SQRT:
    case BNB_OP_EXP:
    case BNB_OP_LOG:
    case BNB_OP_RELU:
    case BNB_OP_GELU:
    case BNB_OP_SILU:
    case BNB_OP_TANH: ADD(a, bnb_unary_back(ctx, node->op, gy, a)); return BNB_OK;
    /* ---- reductions: the gradient of a sum is broadcast back (bnb_grad_add broadcasts) */
    case BNB_OP_SUM:
    case BNB_OP_SUM_ROWS: ADD(a, gy); return BNB_OK;
    case BNB_OP_MEAN: ADD(a, bnb_scale(ctx, gy, 1.0f / (float)a->ne[0])); return BNB_OK;
    case BNB_OP_MAX_ROWS: ADD(a, bnb_max_rows_back(ctx, gy, a)); return BNB_OK;
    case BNB_OP_ARGMAX: return BNB_OK; /* integer result: no gradient */
    /* ---- linear algebra, indexing */
    case BNB_OP_MUL_MAT: return mul_mat_backward(bc, node, gy);
    case BNB_OP_GET_ROWS: ADD(a, bnb_get_rows_back(ctx, gy, b, a)); return BNB_OK;
    case BNB_OP_CONCAT: {
        const int dim = node->op_params[0];
        if (NEED(a)) ADD(a, bnb_slice(ctx, gy, dim, 0, a->ne[dim]));
        if (NEED(b)) ADD(b, bnb_slice(ctx, gy, dim, a->ne[dim], b->ne[dim]));
        return BNB_OK;
    }
    /* ---- nn */
    case BNB_OP_SOFTMAX: ADD(a, bnb_softmax_back(ctx, gy, node, bnb_get_op_f32(node, 0))); return BNB_OK;
    case BNB_OP_RMS_NORM: ADD(a, bnb_rms_norm_back(ctx, gy, a, bnb_get_op_f32(node, 0))); return BNB_OK;
    case BNB_OP_LAYER_NORM: ADD(a, bnb_layer_norm_back(ctx, gy, a, bnb_get_op_f32(node, 0))); return BNB_OK;
    case BNB_OP_ROPE:
        ADD(a, bnb_rope_back(ctx, gy, b, node->op_params[0], node->op_params[1], bnb_get_op_f32(node, 2)));
        return BNB_OK;
    case BNB_OP_CROSS_ENTROPY: ADD(a, bnb_cross_entropy_back(ctx, gy, a, b)); return BNB_OK;
    /* ---- the autodiff ops themselves (so gradient graphs can be differentiated where it makes sense) */
    case BNB_OP_FILL: return BNB_OK;
    case BNB_OP_REPEAT: ADD(a, reduce_like(ctx, gy, a)); return BNB_OK;
    case BNB_OP_SUM_TO: ADD(a, gy); return BNB_OK;
    /* Ops of later families (e.g. BNB_OP_MATMUL_INT8) add a case here that calls their rule. */
    case BNB_OP_MATMUL_INT8: return bnb_int8_backward(bc, node, gy); /* src/ops/int8.c */
    default:
        return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_graph_backward: %s has no gradient rule (node '%s')",
                        bnb_op_name(node->op), node->name);
    }
}
