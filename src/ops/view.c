/* View ops (reshape, view, slice, permute, transpose) share memory; cont/cast make contiguous copies. */
#include "../bnb-impl.h"

#include <stdio.h>

static bool check_plain(const char *op, const bnb_tensor *a) {
    if (!bnb_check_src(op, a, "a")) return false;
    if (!bnb_type_is_plain(a->type)) {
        bnb_fail(BNB_ERR_TYPE, "%s: views of quantized type %s are not supported", op, bnb_type_name(a->type));
        return false;
    }
    return true;
}

static bnb_tensor *reshape(bnb_context *ctx, bnb_tensor *a, int nd, const int64_t *ne_in, const char *op) {
    if (!check_plain(op, a)) return NULL;
    char sa[64];
    if (!bnb_is_contiguous(a))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a (%s) is not contiguous; use bnb_cont first", op,
                             bnb_shape_str(a, sa, sizeof sa));
    int64_t ne[4] = {1, 1, 1, 1}, n = 1;
    for (int i = 0; i < nd; i++) {
        if (ne_in[i] < 0) return bnb_fail_null(BNB_ERR_SHAPE, "%s: dim %d is negative", op, i);
        ne[i] = ne_in[i];
        n *= ne[i];
    }
    if (n != bnb_nelements(a))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: a has %lld elements (%s), the new shape %lld", op,
                             (long long)bnb_nelements(a), bnb_shape_str(a, sa, sizeof sa), (long long)n);
    size_t nb[4];
    nb[0] = bnb_type_size(a->type);
    for (int i = 1; i < 4; i++) nb[i] = nb[i - 1] * (size_t)ne[i - 1];
    return bnb_new_view_tensor(ctx, BNB_OP_RESHAPE, a, ne, nb, 0);
}

bnb_tensor *bnb_reshape_1d(bnb_context *ctx, bnb_tensor *a, int64_t ne0) {
    return reshape(ctx, a, 1, (int64_t[]){ne0}, "bnb_reshape_1d");
}
bnb_tensor *bnb_reshape_2d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1) {
    return reshape(ctx, a, 2, (int64_t[]){ne0, ne1}, "bnb_reshape_2d");
}
bnb_tensor *bnb_reshape_3d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2) {
    return reshape(ctx, a, 3, (int64_t[]){ne0, ne1, ne2}, "bnb_reshape_3d");
}
bnb_tensor *bnb_reshape_4d(bnb_context *ctx, bnb_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    return reshape(ctx, a, 4, (int64_t[]){ne0, ne1, ne2, ne3}, "bnb_reshape_4d");
}

/* The byte range [lo, hi] a view touches, relative to its base, must lie inside the base's bytes. */
static bool view_in_range(const bnb_tensor *base, const int64_t ne[4], const size_t nb[4], size_t offset, size_t es) {
    size_t last = offset;
    for (int i = 0; i < 4; i++) {
        if (ne[i] == 0) return offset <= bnb_nbytes(base);
        last += (size_t)(ne[i] - 1) * nb[i];
    }
    return last + es <= bnb_nbytes(base) && last >= offset;
}

bnb_tensor *bnb_view(bnb_context *ctx, bnb_tensor *a, int nd, const int64_t *ne_in, const size_t *nb_in, size_t offset) {
    const char *op = "bnb_view";
    if (!check_plain(op, a)) return NULL;
    if (nd < 1 || nd > 4 || !ne_in || !nb_in)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: n_dims %d not in 1..4 (or ne/nb NULL)", op, nd);
    size_t es = bnb_type_size(a->type);
    int64_t ne[4] = {1, 1, 1, 1};
    size_t nb[4];
    for (int i = 0; i < nd; i++) {
        if (ne_in[i] < 0) return bnb_fail_null(BNB_ERR_SHAPE, "%s: dim %d is negative", op, i);
        ne[i] = ne_in[i];
        nb[i] = nb_in[i];
    }
    if (nb[0] != es) return bnb_fail_null(BNB_ERR_SHAPE, "%s: nb[0] is %zu, must be the element size %zu", op, nb[0], es);
    for (int i = nd; i < 4; i++) nb[i] = nb[i - 1] * (size_t)ne[i - 1];
    const bnb_tensor *base = a->view_src ? a->view_src : a;
    size_t abs_off = (a->view_src ? a->view_offs : 0) + offset;
    if (!view_in_range(base, ne, nb, abs_off, es)) {
        char sa[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: view at offset %zu runs past the end of a (%s, %zu bytes)", op,
                             offset, bnb_shape_str(base, sa, sizeof sa), bnb_nbytes(base));
    }
    return bnb_new_view_tensor(ctx, BNB_OP_VIEW, a, ne, nb, offset);
}

bnb_tensor *bnb_slice(bnb_context *ctx, bnb_tensor *a, int dim, int64_t start, int64_t len) {
    const char *op = "bnb_slice";
    if (!check_plain(op, a)) return NULL;
    if (dim < 0 || dim > 3) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: dim %d not in 0..3", op, dim);
    if (start < 0 || len < 0 || start + len > a->ne[dim])
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: [%lld, %lld) is outside dim %d of size %lld", op, (long long)start,
                             (long long)(start + len), dim, (long long)a->ne[dim]);
    int64_t ne[4] = {a->ne[0], a->ne[1], a->ne[2], a->ne[3]};
    ne[dim] = len;
    return bnb_new_view_tensor(ctx, BNB_OP_VIEW, a, ne, a->nb, (size_t)start * a->nb[dim]);
}

bnb_tensor *bnb_permute(bnb_context *ctx, bnb_tensor *a, int ax0, int ax1, int ax2, int ax3) {
    const char *op = "bnb_permute";
    if (!check_plain(op, a)) return NULL;
    int ax[4] = {ax0, ax1, ax2, ax3}, seen = 0;
    for (int i = 0; i < 4; i++) {
        if (ax[i] < 0 || ax[i] > 3 || (seen & (1 << ax[i])))
            return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: axes (%d,%d,%d,%d) are not a permutation of 0..3", op, ax0,
                                 ax1, ax2, ax3);
        seen |= 1 << ax[i];
    }
    int64_t ne[4];
    size_t nb[4];
    for (int i = 0; i < 4; i++) {
        ne[ax[i]] = a->ne[i];
        nb[ax[i]] = a->nb[i];
    }
    bnb_tensor *t = bnb_new_view_tensor(ctx, BNB_OP_PERMUTE, a, ne, nb, 0);
    if (t)
        for (int i = 0; i < 4; i++) t->op_params[i] = ax[i];
    return t;
}

bnb_tensor *bnb_transpose(bnb_context *ctx, bnb_tensor *a) {
    if (!check_plain("bnb_transpose", a)) return NULL;
    int64_t ne[4] = {a->ne[1], a->ne[0], a->ne[2], a->ne[3]};
    size_t nb[4] = {a->nb[1], a->nb[0], a->nb[2], a->nb[3]};
    return bnb_new_view_tensor(ctx, BNB_OP_TRANSPOSE, a, ne, nb, 0);
}

bnb_tensor *bnb_cast(bnb_context *ctx, bnb_tensor *a, bnb_type type) {
    const char *op = "bnb_cast";
    if (!check_plain(op, a)) return NULL;
    if (!bnb_type_is_plain(type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: target type %s is not a plain type", op, bnb_type_name(type));
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_CONT, type, a->ne);
    if (t) t->src[0] = a;
    return t;
}

bnb_tensor *bnb_cont(bnb_context *ctx, bnb_tensor *a) {
    if (!check_plain("bnb_cont", a)) return NULL;
    return bnb_cast(ctx, a, a->type);
}
