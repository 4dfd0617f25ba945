/* Quantization ops: quantize_blockwise / dequantize_blockwise (8-bit with a code map), quantize_4bit /
 * dequantize_4bit (NF4 / FP4). Constructors check and build nodes; kernels are in src/cpu/quant.c and
 * src/cuda/quant.cu.
 * op_params of the quantize nodes: [0] stochastic (0/1), [1] seed (bits of a uint32), [2] map kind.
 * The result's quant params (block, map, nested) describe its storage (bnb.h, bnb_type). */
#include "../quant/quant.h"

static bool check_float_input(const char *op, const bnb_tensor *x) {
    if (!bnb_check_src(op, x, "x")) return false;
    if (!bnb_type_is_float(x->type)) {
        bnb_fail(BNB_ERR_TYPE, "%s: x is %s: must be f32/f16/bf16", op, bnb_type_name(x->type));
        return false;
    }
    if (!bnb_is_contiguous(x)) {
        bnb_fail(BNB_ERR_SHAPE, "%s: x must be contiguous (use bnb_cont)", op);
        return false;
    }
    return true;
}

static bnb_tensor *quantize_node(bnb_context *ctx, const char *op, bnb_op kind, bnb_tensor *x, bnb_type qtype,
                                 bnb_qmap map, bnb_tensor *code, int block, bool nested, bool stochastic,
                                 uint32_t seed) {
    if (!check_float_input(op, x)) return NULL;
    const bool four = qtype != BNB_TYPE_Q8_BLOCK;
    if (!bnb_quant_block_ok(block, four))
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: block size %d not allowed (powers of two %d..4096)", op, block,
                             four ? 32 : 64);
    if (!four) {
        if (code) {
            if (code->type != BNB_TYPE_F32 || bnb_nelements(code) != 256 || !bnb_is_contiguous(code))
                return bnb_fail_null(BNB_ERR_SHAPE, "%s: code must be a contiguous f32 tensor of 256 values (is %s, %lld)",
                                     op, bnb_type_name(code->type), (long long)bnb_nelements(code));
        } else if (map != BNB_QMAP_DYNAMIC_SIGNED && map != BNB_QMAP_DYNAMIC_UNSIGNED && map != BNB_QMAP_LINEAR_SIGNED &&
                   map != BNB_QMAP_LINEAR_UNSIGNED) {
            return bnb_fail_null(BNB_ERR_INVALID_ARG,
                                 "%s: map kind %d needs its values in `code` (dynamic and linear maps are built in)", op,
                                 (int)map);
        }
    }
    bnb_tensor *t = bnb_new_op_tensor(ctx, kind, qtype, x->ne);
    if (!t) return NULL;
    t->quant.block = block;
    t->quant.map = four ? (qtype == BNB_TYPE_Q4_NF4 ? BNB_QMAP_NF4 : BNB_QMAP_FP4) : (int32_t)map;
    t->quant.nested = nested ? 1 : 0;
    t->src[0] = x;
    t->src[1] = four ? NULL : code;
    bnb_set_op_i32(t, 0, stochastic ? 1 : 0);
    int32_t s;
    memcpy(&s, &seed, sizeof s);
    bnb_set_op_i32(t, 1, s);
    bnb_set_op_i32(t, 2, t->quant.map);
    return t;
}

bnb_tensor *bnb_quantize_blockwise(bnb_context *ctx, bnb_tensor *x, bnb_qmap map, bnb_tensor *code, int block,
                                   bool nested) {
    return quantize_node(ctx, "bnb_quantize_blockwise", BNB_OP_QUANTIZE_BLOCKWISE, x, BNB_TYPE_Q8_BLOCK, map, code,
                         block, nested, false, 0);
}

bnb_tensor *bnb_quantize_blockwise_stochastic(bnb_context *ctx, bnb_tensor *x, bnb_qmap map, bnb_tensor *code,
                                              int block, bool nested, uint32_t seed) {
    return quantize_node(ctx, "bnb_quantize_blockwise_stochastic", BNB_OP_QUANTIZE_BLOCKWISE, x, BNB_TYPE_Q8_BLOCK, map,
                         code, block, nested, true, seed);
}

bnb_tensor *bnb_quantize_4bit(bnb_context *ctx, bnb_tensor *x, bnb_type qtype, int block, bool nested) {
    if (qtype != BNB_TYPE_Q4_NF4 && qtype != BNB_TYPE_Q4_FP4)
        return bnb_fail_null(BNB_ERR_TYPE, "bnb_quantize_4bit: qtype is %s: must be q4_nf4 or q4_fp4",
                             bnb_type_name(qtype));
    return quantize_node(ctx, "bnb_quantize_4bit", BNB_OP_QUANTIZE_4BIT, x, qtype, BNB_QMAP_NF4, NULL, block, nested,
                         false, 0);
}

static bnb_tensor *dequantize_node(bnb_context *ctx, const char *op, bnb_op kind, bnb_tensor *q, bnb_type type,
                                   bool four) {
    if (!bnb_check_src(op, q, "q")) return NULL;
    bool ok = four ? (q->type == BNB_TYPE_Q4_NF4 || q->type == BNB_TYPE_Q4_FP4)
                   : (q->type == BNB_TYPE_Q8_BLOCK || q->type == BNB_TYPE_OPT8);
    if (!ok)
        return bnb_fail_null(BNB_ERR_TYPE, "%s: q is %s: must be %s", op, bnb_type_name(q->type),
                             four ? "q4_nf4 or q4_fp4" : "q8_block (or opt8)");
    if (!bnb_type_is_float(type))
        return bnb_fail_null(BNB_ERR_TYPE, "%s: result type %s: must be f32/f16/bf16", op, bnb_type_name(type));
    if (q->view_src)
        return bnb_fail_null(BNB_ERR_SHAPE, "%s: q is a view; quantized tensors are used whole", op);
    if (!bnb_quant_block_ok(q->quant.block, four))
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: q has block size %d (not allowed)", op, q->quant.block);
    bnb_tensor *t = bnb_new_op_tensor(ctx, kind, type, q->ne);
    if (!t) return NULL;
    t->src[0] = q;
    return t;
}

bnb_tensor *bnb_dequantize_blockwise(bnb_context *ctx, bnb_tensor *q, bnb_type type) {
    return dequantize_node(ctx, "bnb_dequantize_blockwise", BNB_OP_DEQUANTIZE_BLOCKWISE, q, type, false);
}

bnb_tensor *bnb_dequantize_4bit(bnb_context *ctx, bnb_tensor *q, bnb_type type) {
    return dequantize_node(ctx, "bnb_dequantize_4bit", BNB_OP_DEQUANTIZE_4BIT, q, type, true);
}
