/* Reductions: sum (all), sum_rows / mean / max_rows / argmax (over ne[0]). Results are F32 (argmax I32). */
#include "../bnb-impl.h"

static bnb_tensor *reduce(bnb_context *ctx, bnb_op op, bnb_tensor *a, bool all, bnb_type out_type) {
    const char *name = bnb_op_name(op);
    if (!bnb_check_src(name, a, "a")) return NULL;
    if (!bnb_type_is_float(a->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, must be f32/f16/bf16", name, bnb_type_name(a->type));
    if ((op == BNB_OP_MAX_ROWS || op == BNB_OP_ARGMAX || op == BNB_OP_MEAN) && a->ne[0] == 0)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: rows of a are empty", name);
    int64_t ne[4] = {1, all ? 1 : a->ne[1], all ? 1 : a->ne[2], all ? 1 : a->ne[3]};
    bnb_tensor *t = bnb_new_op_tensor(ctx, op, out_type, ne);
    if (t) t->src[0] = a;
    return t;
}

bnb_tensor *bnb_sum(bnb_context *ctx, bnb_tensor *a) { return reduce(ctx, BNB_OP_SUM, a, true, BNB_TYPE_F32); }
bnb_tensor *bnb_sum_rows(bnb_context *ctx, bnb_tensor *a) { return reduce(ctx, BNB_OP_SUM_ROWS, a, false, BNB_TYPE_F32); }
bnb_tensor *bnb_mean(bnb_context *ctx, bnb_tensor *a) { return reduce(ctx, BNB_OP_MEAN, a, false, BNB_TYPE_F32); }
bnb_tensor *bnb_max_rows(bnb_context *ctx, bnb_tensor *a) { return reduce(ctx, BNB_OP_MAX_ROWS, a, false, BNB_TYPE_F32); }
bnb_tensor *bnb_argmax(bnb_context *ctx, bnb_tensor *a) { return reduce(ctx, BNB_OP_ARGMAX, a, false, BNB_TYPE_I32); }
