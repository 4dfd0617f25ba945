#include "../bnb-impl.h"

static const char *const g_op_names[BNB_OP_COUNT] = {
    [BNB_OP_NONE] = "none",         [BNB_OP_RESHAPE] = "bnb_reshape",     [BNB_OP_VIEW] = "bnb_view",
    [BNB_OP_PERMUTE] = "bnb_permute", [BNB_OP_TRANSPOSE] = "bnb_transpose", [BNB_OP_CONT] = "bnb_cont",
    [BNB_OP_ADD] = "bnb_add",       [BNB_OP_SUB] = "bnb_sub",             [BNB_OP_MUL] = "bnb_mul",
    [BNB_OP_DIV] = "bnb_div",       [BNB_OP_SCALE] = "bnb_scale",         [BNB_OP_NEG] = "bnb_neg",
    [BNB_OP_ABS] = "bnb_abs",       [BNB_OP_SQR] = "bnb_sqr",             [BNB_OP_SQRT] = "bnb_sqrt",
    [BNB_OP_EXP] = "bnb_exp",       [BNB_OP_LOG] = "bnb_log",             [BNB_OP_RELU] = "bnb_relu",
    [BNB_OP_GELU] = "bnb_gelu",     [BNB_OP_SILU] = "bnb_silu",           [BNB_OP_TANH] = "bnb_tanh",
    [BNB_OP_SUM] = "bnb_sum",       [BNB_OP_SUM_ROWS] = "bnb_sum_rows",   [BNB_OP_MEAN] = "bnb_mean",
    [BNB_OP_MAX_ROWS] = "bnb_max_rows", [BNB_OP_ARGMAX] = "bnb_argmax",   [BNB_OP_MUL_MAT] = "bnb_mul_mat",
    [BNB_OP_GET_ROWS] = "bnb_get_rows", [BNB_OP_CONCAT] = "bnb_concat",   [BNB_OP_SOFTMAX] = "bnb_softmax",
    [BNB_OP_RMS_NORM] = "bnb_rms_norm", [BNB_OP_LAYER_NORM] = "bnb_layer_norm", [BNB_OP_ROPE] = "bnb_rope",
    [BNB_OP_CROSS_ENTROPY] = "bnb_cross_entropy",
    [BNB_OP_INT8_VECTORWISE_QUANT] = "bnb_int8_vectorwise_quant", [BNB_OP_MATMUL_INT8] = "bnb_matmul_int8",
    [BNB_OP_INT8_DEQUANTIZE] = "bnb_int8_dequantize",
    [BNB_OP_OPTIMIZER_UPDATE] = "bnb_optimizer_update", [BNB_OP_OPTIMIZER_GNORM] = "bnb_optimizer_gnorm",
    [BNB_OP_OPTIMIZER_CLIP] = "bnb_optimizer_clip",
    [BNB_OP_QUANTIZE_BLOCKWISE] = "bnb_quantize_blockwise", [BNB_OP_DEQUANTIZE_BLOCKWISE] = "bnb_dequantize_blockwise",
    [BNB_OP_QUANTIZE_4BIT] = "bnb_quantize_4bit", [BNB_OP_DEQUANTIZE_4BIT] = "bnb_dequantize_4bit",
    [BNB_OP_FILL] = "bnb_fill", [BNB_OP_REPEAT] = "bnb_repeat", [BNB_OP_SUM_TO] = "bnb_sum_to",
    [BNB_OP_ACC_GRAD] = "bnb_acc_grad", [BNB_OP_UNARY_BACK] = "bnb_unary_back",
    [BNB_OP_MAX_ROWS_BACK] = "bnb_max_rows_back", [BNB_OP_GET_ROWS_BACK] = "bnb_get_rows_back",
    [BNB_OP_VIEW_BACK] = "bnb_view_back", [BNB_OP_SOFTMAX_BACK] = "bnb_softmax_back",
    [BNB_OP_RMS_NORM_BACK] = "bnb_rms_norm_back", [BNB_OP_LAYER_NORM_BACK] = "bnb_layer_norm_back",
    [BNB_OP_ROPE_BACK] = "bnb_rope_back", [BNB_OP_CROSS_ENTROPY_BACK] = "bnb_cross_entropy_back",
    [BNB_OP_CPY] = "bnb_cpy",
};

const char *bnb_op_name(bnb_op op) {
    if ((unsigned)op >= BNB_OP_COUNT || !g_op_names[op]) return "bnb_unknown_op";
    return g_op_names[op];
}
