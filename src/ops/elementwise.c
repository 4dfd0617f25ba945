/* Elementwise ops: binary with broadcasting of b over a, and unary maps. Results have a's shape and type. */
#include "../bnb-impl.h"

static bnb_tensor *binary(bnb_context *ctx, bnb_op op, bnb_tensor *a, bnb_tensor *b) {
    const char *name = bnb_op_name(op);
    if (!bnb_check_src(name, a, "a") || !bnb_check_src(name, b, "b")) return NULL;
    if (!bnb_type_is_float(a->type) || !bnb_type_is_float(b->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, b is %s: both must be f32/f16/bf16", name,
                             bnb_type_name(a->type), bnb_type_name(b->type));
    for (int i = 0; i < 4; i++) {
        if (b->ne[i] != a->ne[i] && b->ne[i] != 1) {
            char sa[64], sb[64];
            return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s, b is %s: dim %d of b must be %lld or 1", name,
                                 bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(b, sb, sizeof sb), i,
                                 (long long)a->ne[i]);
        }
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, op, a->type, a->ne);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

bnb_tensor *bnb_add(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b) { return binary(ctx, BNB_OP_ADD, a, b); }
bnb_tensor *bnb_sub(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b) { return binary(ctx, BNB_OP_SUB, a, b); }
bnb_tensor *bnb_mul(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b) { return binary(ctx, BNB_OP_MUL, a, b); }
bnb_tensor *bnb_div(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b) { return binary(ctx, BNB_OP_DIV, a, b); }

static bnb_tensor *unary(bnb_context *ctx, bnb_op op, bnb_tensor *a) {
    const char *name = bnb_op_name(op);
    if (!bnb_check_src(name, a, "a")) return NULL;
    if (!bnb_type_is_float(a->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, must be f32/f16/bf16", name, bnb_type_name(a->type));
    bnb_tensor *t = bnb_new_op_tensor(ctx, op, a->type, a->ne);
    if (t) t->src[0] = a;
    return t;
}

bnb_tensor *bnb_scale(bnb_context *ctx, bnb_tensor *a, float s) {
    bnb_tensor *t = unary(ctx, BNB_OP_SCALE, a);
    if (t) bnb_set_op_f32(t, 0, s);
    return t;
}
bnb_tensor *bnb_neg(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_NEG, a); }
bnb_tensor *bnb_abs(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_ABS, a); }
bnb_tensor *bnb_sqr(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_SQR, a); }
bnb_tensor *bnb_sqrt(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_SQRT, a); }
bnb_tensor *bnb_exp(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_EXP, a); }
bnb_tensor *bnb_log(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_LOG, a); }
bnb_tensor *bnb_relu(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_RELU, a); }
bnb_tensor *bnb_gelu(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_GELU, a); }
bnb_tensor *bnb_silu(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_SILU, a); }
bnb_tensor *bnb_tanh(bnb_context *ctx, bnb_tensor *a) { return unary(ctx, BNB_OP_TANH, a); }
