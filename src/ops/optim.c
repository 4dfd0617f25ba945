/* Optimizer op constructors: the fused in-place update, the gradient squared-norm and the clipping scale.
 * Layouts and op_params: src/optim/optim-impl.h. */
#include "../optim/optim-impl.h"

#include <stdio.h>

static bool check_float_contig(const char *op, const bnb_tensor *t, const char *what) {
    if (!bnb_check_src(op, t, what)) return false;
    if (!bnb_type_is_float(t->type)) {
        bnb_fail(BNB_ERR_TYPE, "%s: %s is %s, must be f32/f16/bf16", op, what, bnb_type_name(t->type));
        return false;
    }
    if (!bnb_is_contiguous(t)) {
        bnb_fail(BNB_ERR_SHAPE, "%s: %s must be contiguous", op, what);
        return false;
    }
    return true;
}

/* A state of `n` logical elements: F32 [n] (32-bit) or OPT8 [n] with block 256 (8-bit). */
static bool check_state(const char *op, const bnb_tensor *s, const char *what, int bits, int64_t n) {
    if (!bnb_check_src(op, s, what)) return false;
    if (bits == 32) {
        if (s->type != BNB_TYPE_F32 || bnb_nelements(s) != n || !bnb_is_contiguous(s)) {
            bnb_fail(BNB_ERR_SHAPE, "bnb_optimizer_update: %s must be a contiguous f32 tensor of %lld elements (is %s "
                     "of %lld)", what, (long long)n, bnb_type_name(s->type), (long long)bnb_nelements(s));
            return false;
        }
    } else {
        if (s->type != BNB_TYPE_OPT8 || bnb_nelements(s) != n || s->quant.block != BNB_OPTIM_BLOCK || s->view_src) {
            bnb_fail(BNB_ERR_SHAPE, "bnb_optimizer_update: %s must be an opt8 tensor of %lld elements with block %d "
                     "(is %s of %lld, block %d)", what, (long long)n, BNB_OPTIM_BLOCK, bnb_type_name(s->type),
                     (long long)bnb_nelements(s), s->quant.block);
            return false;
        }
    }
    return true;
}

bnb_tensor *bnb_optimizer_update_op(bnb_context *ctx, bnb_optim_type type, int bits, int flags, bnb_tensor *param,
                                    bnb_tensor *grad, bnb_tensor *state1, bnb_tensor *state2, bnb_tensor *hyper,
                                    bnb_tensor *scale) {
    const char *op = "bnb_optimizer_update";
    if ((unsigned)type >= BNB_OPTIM_COUNT) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: invalid optimizer type %d", op, (int)type);
    if (bits != 32 && bits != 8) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: optim_bits %d (must be 32 or 8)", op, bits);
    if (!check_float_contig(op, param, "param") || !check_float_contig(op, grad, "grad")) return NULL;
    if (param->view_src) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: param '%s' is a view", op, param->name);
    if (!bnb_same_shape(param, grad)) {
        char a[64], b[64];
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: param is %s, grad is %s: shapes differ", op,
                             bnb_shape_str(param, a, sizeof a), bnb_shape_str(grad, b, sizeof b));
    }
    int64_t n = bnb_nelements(param);
    if (n > INT32_MAX) return bnb_fail_null(BNB_ERR_SHAPE, "%s: param has %lld elements (max 2^31-1)", op, (long long)n);
    int64_t n1 = type == BNB_OPTIM_ADEMAMIX ? (bits == 8 ? 2 * bnb_optim_npad(n) : 2 * n) : n;
    if (!check_state(op, state1, "state1", bits, n1)) return NULL;
    if (bnb_optim_n_states(type) == 2) {
        if (!check_state(op, state2, "state2", bits, n)) return NULL;
    } else if (state2) {
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: %s has one state, state2 must be NULL", op, bnb_optim_type_name(type));
    }
    if (!bnb_check_src(op, hyper, "hyper")) return NULL;
    if (hyper->type != BNB_TYPE_F32 || bnb_nelements(hyper) < BNB_OPTIM_HYPER_N || !bnb_is_contiguous(hyper))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: hyper must be a contiguous f32 tensor of %d elements", op, BNB_OPTIM_HYPER_N);
    if (scale && (scale->type != BNB_TYPE_F32 || bnb_nelements(scale) != 1))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: scale must be an f32 tensor of 1 element", op);
    if ((flags & BNB_UPD_F_SPARSE_ROWS) && bits != 32)
        return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: sparse row updates need 32-bit states", op);

    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_OPTIMIZER_UPDATE, param->type, param->ne);
    if (!t) return NULL;
    t->src[0] = param;
    t->src[1] = grad;
    t->src[2] = state1;
    t->src[3] = state2;
    t->src[4] = hyper;
    t->src[5] = scale;
    bnb_set_op_i32(t, BNB_UPD_P_TYPE, (int32_t)type);
    bnb_set_op_i32(t, BNB_UPD_P_BITS, bits);
    bnb_set_op_i32(t, BNB_UPD_P_FLAGS, flags);
    bnb_set_op_i32(t, BNB_UPD_P_NPAD, (int32_t)(bits == 8 ? bnb_optim_npad(n) : n));
    bnb_set_op_i32(t, BNB_UPD_P_ROLE, BNB_UPD_SOLO);
    /* in place: the allocator leaves nodes with view_src alone; data = the parameter's */
    t->view_src = param;
    t->view_offs = 0;
    bnb_view_init(t);
    snprintf(t->name, sizeof t->name, "%.40s (update)", param->name);
    return t;
}

bnb_tensor *bnb_optimizer_gnorm_op(bnb_context *ctx, bnb_tensor *grad, bnb_tensor *acc) {
    const char *op = "bnb_optimizer_gnorm";
    if (!check_float_contig(op, grad, "grad")) return NULL;
    if (acc && (acc->type != BNB_TYPE_F32 || bnb_nelements(acc) != 1))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: acc must be an f32 tensor of 1 element", op);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_OPTIMIZER_GNORM, BNB_TYPE_F32, (int64_t[4]){1, 1, 1, 1});
    if (!t) return NULL;
    t->src[0] = grad;
    t->src[1] = acc;
    return t;
}

bnb_tensor *bnb_optimizer_pclip_op(bnb_context *ctx, bnb_tensor *grad, bnb_tensor *history, bnb_tensor *hyper,
                                   int percentile, bnb_tensor *extra_scale) {
    const char *op = "bnb_optimizer_clip";
    if (!check_float_contig(op, grad, "grad")) return NULL;
    if (percentile < 0 || percentile >= BNB_OPTIM_HISTORY_N)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: percentile %d not in 0..99", op, percentile);
    if (!bnb_check_src(op, history, "history") || history->type != BNB_TYPE_F32 ||
        bnb_nelements(history) != BNB_OPTIM_HISTORY_N)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: history must be an f32 tensor of %d elements", op, BNB_OPTIM_HISTORY_N);
    if (!bnb_check_src(op, hyper, "hyper") || hyper->type != BNB_TYPE_F32 || bnb_nelements(hyper) < BNB_OPTIM_HYPER_N)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: hyper must be an f32 tensor of %d elements", op, BNB_OPTIM_HYPER_N);
    if (extra_scale && (extra_scale->type != BNB_TYPE_F32 || bnb_nelements(extra_scale) != 1))
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: extra scale must be an f32 tensor of 1 element", op);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_OPTIMIZER_CLIP, BNB_TYPE_F32, (int64_t[4]){1, 1, 1, 1});
    if (!t) return NULL;
    t->src[0] = grad;
    t->src[1] = history;
    t->src[2] = hyper;
    t->src[3] = extra_scale;
    bnb_set_op_i32(t, BNB_CLIP_P_MODE, BNB_CLIP_PERCENTILE);
    bnb_set_op_i32(t, BNB_CLIP_P_PERCENTILE, percentile);
    return t;
}

bnb_tensor *bnb_optimizer_gclip_op(bnb_context *ctx, bnb_tensor *total_sqnorm, float max_norm) {
    const char *op = "bnb_optimizer_clip";
    if (!bnb_check_src(op, total_sqnorm, "total") || total_sqnorm->type != BNB_TYPE_F32 ||
        bnb_nelements(total_sqnorm) != 1)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: total must be an f32 tensor of 1 element", op);
    if (!(max_norm > 0)) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: max_norm %g must be > 0", op, max_norm);
    bnb_tensor *t = bnb_new_op_tensor(ctx, BNB_OP_OPTIMIZER_CLIP, BNB_TYPE_F32, (int64_t[4]){1, 1, 1, 1});
    if (!t) return NULL;
    t->src[0] = total_sqnorm;
    bnb_set_op_i32(t, BNB_CLIP_P_MODE, BNB_CLIP_GLOBAL);
    bnb_set_op_f32(t, BNB_CLIP_P_MAX_NORM, max_norm);
    return t;
}
