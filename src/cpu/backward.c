/* CPU kernels of the autodiff ops. Every result is a contiguous F32 tensor (ACC_GRAD writes into its contiguous F32
 * accumulator); sources may be strided and of any float type (read through bnb_cpu_load), with a unit-stride F32
 * fast path where it matters. Row-wise ops parallelise over rows; sums are accumulated in double. */
#include "backward.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif



/* Row r (flattened over dims 1..3) of t. */
static inline const char *row_ptr(const bnb_tensor *t, int64_t r) {
    const int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return (const char *)t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

/* Element i of a row starting at p (any float type, any stride). */
static inline float ld(const bnb_tensor *t, const char *p, int64_t i) {
    return t->type == BNB_TYPE_F32 ? *(const float *)(p + i * t->nb[0]) : bnb_cpu_load(p + i * t->nb[0], t->type);
}

static inline bool f32_rows(const bnb_tensor *t) { return t->type == BNB_TYPE_F32 && t->nb[0] == sizeof(float); }

/* ================================================================================================ FILL REPEAT */

static bnb_status fill(const bnb_cpu_ctx *c, bnb_tensor *node) {
    float *y = node->data;
    const float v = bnb_get_op_f32(node, 0);
    const int64_t n = bnb_nelements(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = v;
    return BNB_OK;
}

static bnb_status repeat(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0];
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t i1 = r % node->ne[1], i2 = (r / node->ne[1]) % node->ne[2], i3 = r / (node->ne[1] * node->ne[2]);
        const char *ap = (const char *)a->data + (a->ne[1] == 1 ? 0 : i1) * a->nb[1] +
                         (a->ne[2] == 1 ? 0 : i2) * a->nb[2] + (a->ne[3] == 1 ? 0 : i3) * a->nb[3];
        float *y = (float *)node->data + r * ne0;
        if (a->ne[0] == 1) {
            const float v = bnb_cpu_load(ap, a->type);
            for (int64_t i = 0; i < ne0; i++) y[i] = v;
        } else {
            for (int64_t i = 0; i < ne0; i++) y[i] = bnb_cpu_load(ap + i * a->nb[0], a->type);
        }
    }
    return BNB_OK;
}

/* ================================================================================================ SUM_TO */

/* Output row ro (dims 1..3 of node) gathers every source row whose indices agree on the dims node keeps. A task is
 * (output row, chunk of ne[0]) so that one output row with a kept ne[0] (a bias gradient) still spreads out. */
#define SUM_TO_CHUNK 256
static bnb_status sum_to(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *a = node->src[0];
    const int64_t *no = node->ne, *na = a->ne;
    const bool keep0 = no[0] == na[0];
    const int64_t nchunk = keep0 ? (no[0] + SUM_TO_CHUNK - 1) / SUM_TO_CHUNK : 1;
    const int64_t ntask = bnb_nrows(node) * nchunk;
    /* dims 1..3 to loop over for one output row: the full source extent where the output has 1 */
    const int64_t e1 = no[1] == na[1] ? 1 : na[1], e2 = no[2] == na[2] ? 1 : na[2], e3 = no[3] == na[3] ? 1 : na[3];
    const int nth = bnb_cpu_threads(c, bnb_nelements(a));
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t ro = t / nchunk, ch = t % nchunk;
        const int64_t o1 = ro % no[1], o2 = (ro / no[1]) % no[2], o3 = ro / (no[1] * no[2]);
        const int64_t k0 = keep0 ? ch * SUM_TO_CHUNK : 0, k1 = keep0 ? BNB_MIN(no[0], k0 + SUM_TO_CHUNK) : 1;
        double acc[SUM_TO_CHUNK];
        for (int64_t k = 0; k < k1 - k0; k++) acc[k] = 0;
        for (int64_t j3 = 0; j3 < e3; j3++)
            for (int64_t j2 = 0; j2 < e2; j2++)
                for (int64_t j1 = 0; j1 < e1; j1++) {
                    const int64_t i1 = e1 == 1 ? o1 : j1, i2 = e2 == 1 ? o2 : j2, i3 = e3 == 1 ? o3 : j3;
                    const char *ap = (const char *)a->data + i1 * a->nb[1] + i2 * a->nb[2] + i3 * a->nb[3];
                    if (keep0) {
                        for (int64_t k = k0; k < k1; k++) acc[k - k0] += bnb_cpu_load(ap + k * a->nb[0], a->type);
                    } else if (f32_rows(a)) {
                        const float *x = (const float *)ap;
                        double s = 0;
                        for (int64_t k = 0; k < na[0]; k++) s += x[k];
                        acc[0] += s;
                    } else {
                        for (int64_t k = 0; k < na[0]; k++) acc[0] += bnb_cpu_load(ap + k * a->nb[0], a->type);
                    }
                }
        float *y = (float *)node->data + ro * no[0];
        for (int64_t k = k0; k < k1; k++) y[k] = (float)acc[k - k0];
    }
    return BNB_OK;
}

/* ================================================================================================ ACC_GRAD */

static bnb_status acc_grad(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *g = node->src[1];
    float *acc = node->data; /* = src[0]'s data */
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *gp = row_ptr(g, r);
        float *y = acc + r * ne0;
        if (f32_rows(g)) {
            const float *x = (const float *)gp;
            for (int64_t i = 0; i < ne0; i++) y[i] += x[i];
        } else {
            for (int64_t i = 0; i < ne0; i++) y[i] += bnb_cpu_load(gp + i * g->nb[0], g->type);
        }
    }
    return BNB_OK;
}

/* ================================================================================================ UNARY_BACK */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

/* d f(x) / dx for the unary op f */
static inline float unary_deriv(bnb_op op, float x) {
    switch (op) {
    case BNB_OP_ABS: return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case BNB_OP_SQR: return 2.f * x;
    case BNB_OP_SQRT: return 0.5f / sqrtf(x);
    case BNB_OP_EXP: return expf(x);
    case BNB_OP_LOG: return 1.f / x;
    case BNB_OP_RELU: return x > 0.f ? 1.f : 0.f;
    case BNB_OP_GELU: {
        const float u = GELU_K * (x + GELU_A * x * x * x), th = tanhf(u);
        return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * GELU_K * (1.f + 3.f * GELU_A * x * x);
    }
    case BNB_OP_SILU: {
        const float s = 1.f / (1.f + expf(-x));
        return s * (1.f + x * (1.f - s));
    }
    case BNB_OP_TANH: {
        const float th = tanhf(x);
        return 1.f - th * th;
    }
    default: return NAN;
    }
}

static bnb_status unary_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *x = node->src[1];
    const bnb_op op = (bnb_op)node->op_params[0];
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
    const bool fast = f32_rows(gy) && f32_rows(x);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *gp = row_ptr(gy, r), *xp = row_ptr(x, r);
        float *y = (float *)node->data + r * ne0;
        if (fast) {
            const float *g = (const float *)gp, *xv = (const float *)xp;
            for (int64_t i = 0; i < ne0; i++) y[i] = g[i] * unary_deriv(op, xv[i]);
        } else {
            for (int64_t i = 0; i < ne0; i++)
                y[i] = bnb_cpu_load(gp + i * gy->nb[0], gy->type) * unary_deriv(op, bnb_cpu_load(xp + i * x->nb[0], x->type));
        }
    }
    return BNB_OK;
}

/* ================================================================================================ MAX_ROWS_BACK */

static bnb_status max_rows_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *x = node->src[1];
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *xp = row_ptr(x, r);
        int64_t best = 0;
        float m = bnb_cpu_load(xp, x->type);
        for (int64_t i = 1; i < ne0; i++) {
            const float v = bnb_cpu_load(xp + i * x->nb[0], x->type);
            if (v > m) { m = v; best = i; } /* the first maximum, as bnb_argmax */
        }
        float *y = (float *)node->data + r * ne0;
        for (int64_t i = 0; i < ne0; i++) y[i] = 0.f;
        y[best] = bnb_cpu_load(row_ptr(gy, r), gy->type);
    }
    return BNB_OK;
}

/* ================================================================================================ GET_ROWS_BACK */

/* out[idx[n]] += gy[n]. Thread t owns the table rows with row % nth == t: no atomics, deterministic order. */
static bnb_status get_rows_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *idx = node->src[1];
    const int64_t K = node->ne[0], R = node->ne[1], N = bnb_nelements(idx);
    for (int64_t n = 0; n < N; n++) {
        const int32_t k = *(const int32_t *)((const char *)idx->data + n * idx->nb[0]);
        if (k < 0 || k >= R)
            return bnb_fail(BNB_ERR_INVALID_ARG, "cpu get_rows_back: index %d at %lld is outside [0, %lld)", k,
                            (long long)n, (long long)R);
    }
    float *out = node->data;
    memset(out, 0, (size_t)(K * R) * sizeof(float));
    const int nth = bnb_cpu_threads(c, K * N);
#pragma omp parallel num_threads(nth)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int tid = 0, nt = 1;
#endif
        for (int64_t n = 0; n < N; n++) {
            const int32_t k = *(const int32_t *)((const char *)idx->data + n * idx->nb[0]);
            if (k % nt != tid) continue;
            const char *gp = (const char *)gy->data + n * gy->nb[1];
            float *y = out + (int64_t)k * K;
            if (f32_rows(gy)) {
                const float *g = (const float *)gp;
                for (int64_t i = 0; i < K; i++) y[i] += g[i];
            } else {
                for (int64_t i = 0; i < K; i++) y[i] += bnb_cpu_load(gp + i * gy->nb[0], gy->type);
            }
        }
    }
    return BNB_OK;
}

/* ================================================================================================ VIEW_BACK */

/* True when distinct indices of (ne, st) address distinct elements: sorted by stride, each stride reaches past the
 * extent of the smaller ones. */
static bool view_injective(const int64_t ne[4], const int64_t st[4]) {
    int order[4] = {0, 1, 2, 3};
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && st[order[j]] < st[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int64_t extent = 1; /* elements spanned by the dims so far */
    for (int i = 0; i < 4; i++) {
        const int d = order[i];
        if (ne[d] <= 1) continue;
        if (st[d] < extent) return false;
        extent = st[d] * (ne[d] - 1) + extent;
    }
    return true;
}

static bnb_status view_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0];
    int64_t st[4];
    for (int i = 0; i < 4; i++) st[i] = bnb_get_op_i64(node, 2 * i);
    const int64_t off = bnb_get_op_i64(node, 8);
    float *out = node->data;
    memset(out, 0, (size_t)bnb_nelements(node) * sizeof(float));
    const int64_t ne0 = gy->ne[0], nrows = bnb_nrows(gy);
    /* overlapping views (stride 0, sliding windows) add into the same element: run those on one thread */
    const int nth = view_injective(gy->ne, st) ? bnb_cpu_threads(c, bnb_nelements(gy)) : 1;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t i1 = r % gy->ne[1], i2 = (r / gy->ne[1]) % gy->ne[2], i3 = r / (gy->ne[1] * gy->ne[2]);
        const char *gp = row_ptr(gy, r);
        float *y = out + off + i1 * st[1] + i2 * st[2] + i3 * st[3];
        for (int64_t i = 0; i < ne0; i++) y[i * st[0]] += bnb_cpu_load(gp + i * gy->nb[0], gy->type);
    }
    return BNB_OK;
}

/* ================================================================================================ row-wise nn */

static bnb_status softmax_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *yt = node->src[1];
    const float scale = bnb_get_op_f32(node, 0);
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *g = row_ptr(gy, r), *y = row_ptr(yt, r);
        double dot = 0;
        for (int64_t i = 0; i < ne0; i++) dot += (double)ld(gy, g, i) * ld(yt, y, i);
        float *o = (float *)node->data + r * ne0;
        for (int64_t i = 0; i < ne0; i++) o[i] = scale * ld(yt, y, i) * (ld(gy, g, i) - (float)dot);
    }
    return BNB_OK;
}

/* RMS_NORM: y = x r, r = 1/sqrt(mean(x^2) + eps): dx = r (dy - y mean(dy y)).
 * LAYER_NORM: y = (x - mu) r, r = 1/sqrt(var + eps): dx = r (dy - mean(dy) - y mean(dy y)). */
static bnb_status norm_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *xt = node->src[1];
    const bool layer = node->op == BNB_OP_LAYER_NORM_BACK;
    const double eps = bnb_get_op_f32(node, 0);
    const int64_t ne0 = node->ne[0], nrows = bnb_nrows(node);
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const char *g = row_ptr(gy, r), *x = row_ptr(xt, r);
        double mu = 0, ss = 0;
        if (layer) {
            for (int64_t i = 0; i < ne0; i++) mu += ld(xt, x, i);
            mu /= (double)ne0;
        }
        for (int64_t i = 0; i < ne0; i++) ss += (ld(xt, x, i) - mu) * (ld(xt, x, i) - mu);
        const double rs = 1.0 / sqrt(ss / (double)ne0 + eps);
        double sg = 0, sgy = 0;
        for (int64_t i = 0; i < ne0; i++) {
            const double gi = ld(gy, g, i);
            sg += gi;
            sgy += gi * (ld(xt, x, i) - mu) * rs;
        }
        const double mg = layer ? sg / (double)ne0 : 0.0, mgy = sgy / (double)ne0;
        float *o = (float *)node->data + r * ne0;
        for (int64_t i = 0; i < ne0; i++) o[i] = (float)(rs * (ld(gy, g, i) - mg - (ld(xt, x, i) - mu) * rs * mgy));
    }
    return BNB_OK;
}

/* The inverse rotation of ROPE (rotation by -theta), same angles: theta_i = pos * base^(-2i/n_rot). */
static bnb_status rope_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *pos = node->src[1];
    const int n_rot = node->op_params[0];
    const bool neox = node->op_params[1] == BNB_ROPE_NEOX;
    const double base = bnb_get_op_f32(node, 2);
    const int64_t hd = node->ne[0], nh = node->ne[1], nt = node->ne[2], half = n_rot / 2;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static)
    for (int64_t t = 0; t < nt * nh; t++) {
        const int64_t it = t / nh, h = t % nh;
        const double p = (double)*(const int32_t *)((const char *)pos->data + it * pos->nb[0]);
        const char *gp = (const char *)gy->data + h * gy->nb[1] + it * gy->nb[2];
        float *o = (float *)node->data + (it * nh + h) * hd;
        for (int64_t i = 0; i < half; i++) {
            const double theta = p * pow(base, -2.0 * (double)i / (double)n_rot);
            const float cs = (float)cos(theta), sn = (float)sin(theta);
            const int64_t k0 = neox ? i : 2 * i, k1 = neox ? i + half : 2 * i + 1;
            const float g0 = bnb_cpu_load(gp + k0 * gy->nb[0], gy->type), g1 = bnb_cpu_load(gp + k1 * gy->nb[0], gy->type);
            o[k0] = g0 * cs + g1 * sn;
            o[k1] = -g0 * sn + g1 * cs;
        }
        for (int64_t k = n_rot; k < hd; k++) o[k] = bnb_cpu_load(gp + k * gy->nb[0], gy->type);
    }
    return BNB_OK;
}

/* loss = mean over rows of -log softmax(logits)[target]: dlogits = dloss / rows * (softmax - onehot(target)). */
static bnb_status cross_entropy_back(const bnb_cpu_ctx *c, bnb_tensor *node) {
    const bnb_tensor *gy = node->src[0], *lg = node->src[1], *tg = node->src[2];
    const int64_t V = node->ne[0], nrows = bnb_nrows(node);
    const float scale = bnb_cpu_load(gy->data, gy->type) / (float)nrows;
    int bad = 0;
#pragma omp parallel for num_threads(bnb_cpu_threads(c, bnb_nelements(node))) schedule(static) reduction(| : bad)
    for (int64_t r = 0; r < nrows; r++) {
        /* targets: element r in flattened order */
        const int64_t t0 = r % tg->ne[0], t1 = (r / tg->ne[0]) % tg->ne[1], t2 = (r / (tg->ne[0] * tg->ne[1])) % tg->ne[2],
                      t3 = r / (tg->ne[0] * tg->ne[1] * tg->ne[2]);
        const int32_t k = *(const int32_t *)((const char *)tg->data + t0 * tg->nb[0] + t1 * tg->nb[1] + t2 * tg->nb[2] +
                                             t3 * tg->nb[3]);
        float *o = (float *)node->data + r * V;
        if (k < 0 || k >= V) {
            bad = 1;
            continue;
        }
        const char *x = row_ptr(lg, r);
        float m = -INFINITY;
        for (int64_t i = 0; i < V; i++) m = ld(lg, x, i) > m ? ld(lg, x, i) : m;
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += exp((double)ld(lg, x, i) - m);
        const double inv = 1.0 / sum;
        for (int64_t i = 0; i < V; i++) o[i] = scale * (float)(exp((double)ld(lg, x, i) - m) * inv);
        o[k] -= scale;
    }
    if (bad) return bnb_fail(BNB_ERR_INVALID_ARG, "cpu cross_entropy_back: a target is outside [0, %lld)", (long long)V);
    return BNB_OK;
}

/* ================================================================================================ dispatch */

bool bnb_cpu_backward_supports(const bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_FILL: case BNB_OP_REPEAT: case BNB_OP_SUM_TO: case BNB_OP_ACC_GRAD: case BNB_OP_UNARY_BACK:
    case BNB_OP_MAX_ROWS_BACK: case BNB_OP_GET_ROWS_BACK: case BNB_OP_VIEW_BACK: case BNB_OP_SOFTMAX_BACK:
    case BNB_OP_RMS_NORM_BACK: case BNB_OP_LAYER_NORM_BACK: case BNB_OP_ROPE_BACK: case BNB_OP_CROSS_ENTROPY_BACK:
        return true;
    default: return false;
    }
}

bnb_status bnb_cpu_backward(const bnb_cpu_ctx *c, bnb_tensor *node) {
    switch (node->op) {
    case BNB_OP_FILL: return fill(c, node);
    case BNB_OP_REPEAT: return repeat(c, node);
    case BNB_OP_SUM_TO: return sum_to(c, node);
    case BNB_OP_ACC_GRAD: return acc_grad(c, node);
    case BNB_OP_UNARY_BACK: return unary_back(c, node);
    case BNB_OP_MAX_ROWS_BACK: return max_rows_back(c, node);
    case BNB_OP_GET_ROWS_BACK: return get_rows_back(c, node);
    case BNB_OP_VIEW_BACK: return view_back(c, node);
    case BNB_OP_SOFTMAX_BACK: return softmax_back(c, node);
    case BNB_OP_RMS_NORM_BACK:
    case BNB_OP_LAYER_NORM_BACK: return norm_back(c, node);
    case BNB_OP_ROPE_BACK: return rope_back(c, node);
    case BNB_OP_CROSS_ENTROPY_BACK: return cross_entropy_back(c, node);
    default: return bnb_fail(BNB_ERR_UNSUPPORTED, "cpu backend: %s is not an autodiff op", bnb_op_name(node->op));
    }
}
