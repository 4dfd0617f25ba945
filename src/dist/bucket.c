/* Gradient bucketing: which gradient tensors travel together in one collective (include/bnb-model.h, distributed). */
#include "dist-impl.h"

#include "bnb-impl.h"

int bnb_dist_plan_buckets(const int64_t *numel, int n, size_t elem_bytes, size_t cap_bytes, bnb_dist_bucket *out) {
    if (!numel || !out || n < 0 || elem_bytes == 0) {
        bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_plan_buckets: NULL array, n %d or element size %zu", n, elem_bytes);
        return -1;
    }
    int nb = 0;
    for (int i = n - 1; i >= 0;) {
        if (numel[i] < 0) {
            bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_plan_buckets: tensor %d has %lld elements", i, (long long)numel[i]);
            return -1;
        }
        bnb_dist_bucket b = {i, 0, 0};
        /* take tensors while the bucket stays within cap; the first one always goes in */
        while (i >= 0 && (b.count == 0 || (size_t)(b.numel + numel[i]) * elem_bytes <= cap_bytes)) {
            b.numel += numel[i];
            b.count++;
            i--;
        }
        out[nb++] = b;
    }
    return nb;
}

int64_t bnb_dist_bucket_offset(const int64_t *numel, const bnb_dist_bucket *b, int i) {
    int64_t off = 0;
    for (int k = b->first; k > b->first - i; k--) off += numel[k];
    return off;
}
