/* Neural-net ops: get_rows, concat, softmax, rms_norm, layer_norm, rope, cross_entropy. */
#include "../bnb-impl.h"

bnb_tensor *bnb_get_rows(bnb_context *ctx, bnb_tensor *a, bnb_tensor *idx) {
    const char *op = "bnb_get_rows";
    if (!bnb_check_src(op, a, "a") || !bnb_check_src(op, idx, "idx")) return NULL;
    if (!bnb_type_is_float(a->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, must be f32/f16/bf16", op, bnb_type_name(a->type));
    if (idx->type != BNB_TYPE_I32)
        return bnb_fail_null(BNB_ERR_TYPE, "%s: idx is %s, must be i32", op, bnb_type_name(idx->type));
    if (a->ne[2] != 1 || a->ne[3] != 1 || idx->ne[1] != 1 || idx->ne[2] != 1 || idx->ne[3] != 1) {
        char sa[64], si[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s (must be 2-D), idx is %s (must be 1-D)", op,
                             bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(idx, si, sizeof si));
    }
    int64_t ne[4] = {a->ne[0], idx->ne[0], 1, 1};
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_GET_ROWS, BNB_TYPE_F32, ne);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = idx;
    return t;
}

bnb_tensor *bnb_concat(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b, int dim) {
    const char *op = "bnb_concat";
    if (!bnb_check_src(op, a, "a") || !bnb_check_src(op, b, "b")) return NULL;
    if (dim < 0 || dim > 3) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: dim %d not in 0..3", op, dim);
    if (a->type != b->type || !bnb_type_is_float(a->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, b is %s: must be the same float type", op,
                             bnb_type_name(a->type), bnb_type_name(b->type));
    int64_t ne[4];
    for (int i = 0; i < 4; i++) {
        if (i != dim && a->ne[i] != b->ne[i]) {
            char sa[64], sb[64];
            return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s, b is %s: dim %d differs", op,
                                 bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(b, sb, sizeof sb), i);
        }
        ne[i] = i == dim ? a->ne[i] + b->ne[i] : a->ne[i];
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_CONCAT, a->type, ne);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    t->op_params[0] = dim;
    return t;
}

static bnb_tensor *rowwise(bnb_context *ctx, bnb_op op, bnb_tensor *a) {
    const char *name = bnb_op_name(op);
    if (!bnb_check_src(name, a, "a")) return NULL;
    if (!bnb_type_is_float(a->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, must be f32/f16/bf16", name, bnb_type_name(a->type));
    bnb_tensor *t = bnb_new_op_tensor(ctx, op, a->type, a->ne);
    if (t) t->src[0] = a;
    return t;
}

bnb_tensor *bnb_softmax(bnb_context *ctx, bnb_tensor *a, float scale, bool causal) {
    bnb_tensor *t = rowwise(ctx, BNB_OP_SOFTMAX, a);
    if (!t) return NULL;
    if (causal && a->ne[1] > a->ne[0]) {
        char sa[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "bnb_softmax: causal mask needs ne[0] >= ne[1], a is %s",
                             bnb_shape_str(a, sa, sizeof sa));
    }
    bnb_set_op_f32(t, 0, scale);
    t->op_params[1] = causal;
    return t;
}

bnb_tensor *bnb_rms_norm(bnb_context *ctx, bnb_tensor *a, float eps) {
    bnb_tensor *t = rowwise(ctx, BNB_OP_RMS_NORM, a);
    if (t) bnb_set_op_f32(t, 0, eps);
    return t;
}

bnb_tensor *bnb_layer_norm(bnb_context *ctx, bnb_tensor *a, float eps) {
    bnb_tensor *t = rowwise(ctx, BNB_OP_LAYER_NORM, a);
    if (t) bnb_set_op_f32(t, 0, eps);
    return t;
}

bnb_tensor *bnb_rope(bnb_context *ctx, bnb_tensor *a, bnb_tensor *pos, int n_rot, int mode, float base) {
    const char *op = "bnb_rope";
    if (!bnb_check_src(op, pos, "pos")) return NULL;
    bnb_tensor *t = rowwise(ctx, BNB_OP_ROPE, a);
    if (!t) return NULL;
    char sa[64], sp[64];
    if (pos->type != BNB_TYPE_I32) return bnb_fail_null(BNB_ERR_TYPE, "%s: pos is %s, must be i32", op, bnb_type_name(pos->type));
    if (pos->ne[0] != a->ne[2] || bnb_nelements(pos) != pos->ne[0] || a->ne[3] != 1)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s ([head_dim, heads, tokens]), pos is %s: need one position per token",
                             op, bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(pos, sp, sizeof sp));
    if (n_rot <= 0 || n_rot % 2 || n_rot > a->ne[0])
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: n_rot %d must be even and in 2..head_dim (%lld)", op, n_rot,
                             (long long)a->ne[0]);
    if (mode != BNB_ROPE_NORMAL && mode != BNB_ROPE_NEOX)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: mode %d is neither BNB_ROPE_NORMAL nor BNB_ROPE_NEOX", op, mode);
    if (!(base > 0.f)) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: base %g must be positive", op, (double)base);
    t->src[1] = pos;
    t->op_params[0] = n_rot;
    t->op_params[1] = mode;
    bnb_set_op_f32(t, 2, base);
    return t;
}

bnb_tensor *bnb_cross_entropy(bnb_context *ctx, bnb_tensor *logits, bnb_tensor *targets) {
    const char *op = "bnb_cross_entropy";
    if (!bnb_check_src(op, logits, "logits") || !bnb_check_src(op, targets, "targets")) return NULL;
    char sa[64], sb[64];
    if (!bnb_type_is_float(logits->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: logits are %s, must be f32/f16/bf16", op, bnb_type_name(logits->type));
    if (targets->type != BNB_TYPE_I32)
        return bnb_fail_null(BNB_ERR_TYPE, "%s: targets are %s, must be i32", op, bnb_type_name(targets->type));
    if (bnb_nelements(targets) != bnb_nrows(logits) || logits->ne[0] == 0 || bnb_nrows(logits) == 0)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: logits are %s, targets %s: need one target per row", op,
                             bnb_shape_str(logits, sa, sizeof sa), bnb_shape_str(targets, sb, sizeof sb));
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_CROSS_ENTROPY, BNB_TYPE_F32, (int64_t[4]){1, 1, 1, 1});
    if (!t) return NULL;
    t->src[0] = logits;
    t->src[1] = targets;
    return t;
}
