/* ZeRO-1 partitioning: which rank owns (keeps the optimizer states of, and updates) each parameter. Whole tensors,
 * so the 8-bit states' 256-element blocks never straddle ranks. */
#include "dist-impl.h"

#include <stdlib.h>

#include "bnb-impl.h"

bnb_status bnb_dist_zero_partition(const int64_t *numel, int n, int world, int *owner, int64_t *rank_numel) {
    if (!numel || !owner || n < 0 || world < 1)
        return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_zero_partition: NULL array, n %d or world %d", n, world);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    int64_t *load = calloc((size_t)world, sizeof *load);
    if (!order || !load) {
        free(order);
        free(load);
        return bnb_fail(BNB_ERR_OOM, "bnb_dist_zero_partition: out of host memory");
    }
    /* stable insertion sort by size, descending (n is a few hundred at most) */
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && numel[order[j - 1]] < numel[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (int k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < world; r++)
            if (load[r] < load[best]) best = r;
        owner[order[k]] = best;
        load[best] += numel[order[k]];
    }
    if (rank_numel)
        for (int r = 0; r < world; r++) rank_numel[r] = load[r];
    free(order);
    free(load);
    return BNB_OK;
}
