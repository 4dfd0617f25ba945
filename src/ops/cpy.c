/* CPY: copy a tensor into an existing tensor or view (e.g. new keys/values into a slice of a KV cache). The node
 * takes dst's memory (view_src), so the graph allocator leaves it in place; it writes when the graph runs. */
#include "../bnb-impl.h"

bnb_tensor *bnb_cpy(bnb_context *ctx, bnb_tensor *src, bnb_tensor *dst) {
    const char *op = "bnb_cpy";
    if (!bnb_check_src(op, src, "src") || !bnb_check_src(op, dst, "dst")) return NULL;
    if (!bnb_type_is_plain(src->type) || !bnb_type_is_plain(dst->type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: src is %s, dst is %s: both must be plain types", op,
                             bnb_type_name(src->type), bnb_type_name(dst->type));
    if (src->type != dst->type && (!bnb_type_is_float(src->type) || !bnb_type_is_float(dst->type)))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: src is %s, dst is %s: conversion only between float types", op,
                             bnb_type_name(src->type), bnb_type_name(dst->type));
    if (!bnb_same_shape(src, dst)) {
        char sa[64], sb[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: src is %s, dst is %s: shapes differ", op,
                             bnb_shape_str(src, sa, sizeof sa), bnb_shape_str(dst, sb, sizeof sb));
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_CPY, dst->type, dst->ne);
    if (!t) return NULL;
    for (int i = 0; i < BNB_MAX_DIMS; i++) t->nb[i] = dst->nb[i];
    t->src[0] = src;
    t->src[1] = dst;
    t->view_src = dst->view_src ? dst->view_src : dst;
    t->view_offs = dst->view_src ? dst->view_offs : 0;
    bnb_view_init(t);
    return t;
}
