/* mul_mat: ggml convention, out[n][m] = sum_k a[m][k] * b[n][k], batched over dims 2 and 3 with a broadcast. */
#include "../bnb-impl.h"

bnb_tensor *bnb_mul_mat(bnb_context *ctx, bnb_tensor *a, bnb_tensor *b) {
    const char *op = "bnb_mul_mat";
    if (!bnb_check_src(op, a, "a") || !bnb_check_src(op, b, "b")) return NULL;
    char sa[64], sb[64];
    /* a may also be a blockwise quantized weight (Q8_BLOCK / Q4_*), dequantized on the fly (src/cpu/quant.c) */
    const bool a_quant = a->type == BNB_TYPE_Q8_BLOCK || a->type == BNB_TYPE_Q4_NF4 || a->type == BNB_TYPE_Q4_FP4;
    if (a_quant && (a->view_src || a->ne[2] != 1 || a->ne[3] != 1))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: quantized a (%s) must be a whole 2-D tensor", op,
                             bnb_shape_str(a, sa, sizeof sa));
    if ((!bnb_type_is_float(a->type) && !a_quant) || !bnb_type_is_float(b->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: a is %s, b is %s: both must be f32/f16/bf16", op,
                             bnb_type_name(a->type), bnb_type_name(b->type));
    if (a->ne[0] != b->ne[0])
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s, b is %s: inner dims (ne[0]) differ", op,
                             bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(b, sb, sizeof sb));
    for (int i = 2; i < 4; i++) {
        if (a->ne[i] == 0 || b->ne[i] % a->ne[i] != 0)
            return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s, b is %s: batch dim %d of b must be a multiple of a's",
                                 op, bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(b, sb, sizeof sb), i);
    }
    if ((!a_quant && a->nb[0] != bnb_type_size(a->type)) || b->nb[0] != bnb_type_size(b->type))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a is %s, b is %s: rows (dim 0) of a and b must be contiguous (use bnb_cont)",
                             op, bnb_shape_str(a, sa, sizeof sa), bnb_shape_str(b, sb, sizeof sb));
    int64_t ne[4] = {a->ne[1], b->ne[1], b->ne[2], b->ne[3]};
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_MUL_MAT, BNB_TYPE_F32, ne);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    return t;
}
