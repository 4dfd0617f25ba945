/* Built when the CUDA backend is off (BNB_CUDA=OFF): the CUDA entry points report that clearly. */
#include "bnb-impl.h"

bnb_backend *bnb_backend_cuda_new(int device) {
    return bnb_fail_null(BNB_ERR_NO_DEVICE, "bnb_backend_cuda_new(%d): bnb was built without CUDA (BNB_CUDA=OFF)", device);
}

bool bnb_cuda_available(void) { return false; }
