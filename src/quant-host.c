/* Host conversions of quantized tensors for bnb_tensor_set_f32/get_f32 (filled in by the quantization code). */
#include "bnb-impl.h"

bnb_status bnb_quant_host_from_f32(const bnb_tensor *t, const float *src, void *storage) {
    (void)src;
    (void)storage;
    return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_tensor_set_f32: quantizing into %s is not implemented yet",
                    bnb_type_name(t->type));
}

bnb_status bnb_quant_host_to_f32(const bnb_tensor *t, const void *storage, float *dst) {
    (void)storage;
    (void)dst;
    return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_tensor_get_f32: dequantizing %s is not implemented yet",
                    bnb_type_name(t->type));
}
