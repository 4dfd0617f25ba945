/* CPU CPY: strided copy of src into the node's memory (dst's, with dst's strides), converting float types. */
#include "cpu-kernels.h"

bnb_status bnb_cpu_cpy(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *src = node->src[0];
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node), ne1 = node->ne[1], ne2 = node->ne[2];
    const size_t es = bnb_type_size(node->type);
    const bool same = src->type == node->type;
    const bool rows_contig = same && src->nb[0] == es && node->nb[0] == es;
    const int nth = bnb_cpu_threads(c, nrows * ne0);
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t i1 = r % ne1, i2 = (r / ne1) % ne2, i3 = r / (ne1 * ne2);
        const char *sp = (const char *)src->data + i1 * src->nb[1] + i2 * src->nb[2] + i3 * src->nb[3];
        char *dp = (char *)node->data + i1 * node->nb[1] + i2 * node->nb[2] + i3 * node->nb[3];
        if (rows_contig) {
            memcpy(dp, sp, (size_t)ne0 * es);
        } else if (same) {
            for (int64_t i = 0; i < ne0; i++) memcpy(dp + i * node->nb[0], sp + i * src->nb[0], es);
        } else {
            for (int64_t i = 0; i < ne0; i++)
                bnb_cpu_store(dp + i * node->nb[0], node->type, bnb_cpu_load(sp + i * src->nb[0], src->type));
        }
    }
    return BNB_OK;
}
