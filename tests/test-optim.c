/* Optimizers: every optimizer's 32-bit update vs a float64 implementation of the spec formulas over 10 steps; every
 * 8-bit update vs dequantize -> update (float64) -> requantize applied to the kernel's own states each step; param
 * types; min_8bit_size; overrides; percentile and global clipping; skip_zeros; NaN gradients; save/load; StableEmbedding
 * sparse rows; 8-bit vs 32-bit Adam on an MLP; CPU vs CUDA trajectories. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "bnb.h"
#include "test-common.h"

#include <unistd.h>

#define NSTEPS 10
#define TMIN(a, b) ((a) < (b) ? (a) : (b))

/* ---------------------------------------------------------------------------------------------- float64 reference */
typedef struct {
    int type, t;
    double lr, b1, b2, b3, alpha, eps, wd, gscale, uscale;
    bool skip_zeros;
} ref_hp;

static ref_hp ref_hp_of(bnb_optim_type type, const bnb_optim_config *c, int t) {
    ref_hp h = {type, t, c->lr, c->beta1, c->beta2, c->beta3, c->alpha, c->eps, c->weight_decay, 1, 1, c->skip_zeros};
    return h;
}

static double sgn(double x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }

/* One element (g already scaled). Non-finite g: states 0, p unchanged; skip_zeros: g == 0 leaves all alone. */
static void ref_elem(const ref_hp *h, double g, double *p, double *s1, double *s2, double *s3) {
    if (h->skip_zeros && g == 0) return;
    if (!isfinite(g)) {
        *s1 = *s2 = *s3 = 0;
        return;
    }
    double c1 = 1 - pow(h->b1, h->t), c2 = sqrt(1 - pow(h->b2, h->t));
    switch (h->type) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB:
        *s1 = h->b1 * *s1 + (1 - h->b1) * g;
        *s2 = h->b2 * *s2 + (1 - h->b2) * g * g;
        *p += -h->uscale * h->lr * (c2 / c1) * *s1 / (sqrt(*s2) + h->eps * c2);
        if (h->wd > 0) *p *= 1 - h->lr * h->wd;
        break;
    case BNB_OPTIM_MOMENTUM:
    case BNB_OPTIM_LARS:
        if (h->wd > 0) g += h->wd * *p;
        *s1 = h->t == 1 ? g : h->b1 * *s1 + g;
        *p -= h->uscale * h->lr * *s1;
        break;
    case BNB_OPTIM_LION:
        if (h->wd > 0) *p *= 1 - h->lr * h->wd;
        *p -= h->lr * sgn(h->b1 * *s1 + (1 - h->b1) * g);
        *s1 = h->b2 * *s1 + (1 - h->b2) * g;
        break;
    case BNB_OPTIM_RMSPROP:
        if (h->wd > 0) g += h->wd * *p;
        *s1 = h->b1 * *s1 + (1 - h->b1) * g * g;
        *p -= h->lr * g / (sqrt(*s1) + h->eps);
        break;
    case BNB_OPTIM_ADAGRAD:
        if (h->wd > 0) g += h->wd * *p;
        *s1 += g * g;
        *p -= h->lr * g / (sqrt(*s1) + h->eps);
        break;
    case BNB_OPTIM_ADEMAMIX:
        *s1 = h->b1 * *s1 + (1 - h->b1) * g;
        *s3 = h->b3 * *s3 + (1 - h->b3) * g;
        *s2 = h->b2 * *s2 + (1 - h->b2) * g * g;
        *p -= h->lr * ((*s1 / c1 + h->alpha * *s3) / (sqrt(*s2) / c2 + h->eps));
        if (h->wd > 0) *p *= 1 - h->lr * h->wd;
        break;
    }
}

/* LAMB/LARS trust ratio from the states before the update. */
static double ref_uscale(const ref_hp *h, double max_unorm, const double *g, const double *p, const double *s1,
                         const double *s2, int64_t n) {
    if ((h->type != BNB_OPTIM_LAMB && h->type != BNB_OPTIM_LARS) || max_unorm <= 0) return 1;
    double un = 0, pn = 0, c1 = 1 - pow(h->b1, h->t), c2 = sqrt(1 - pow(h->b2, h->t));
    for (int64_t i = 0; i < n; i++) {
        pn += p[i] * p[i];
        double gi = g[i] * h->gscale;
        if (!isfinite(gi) || (h->skip_zeros && gi == 0)) continue;
        double u;
        if (h->type == BNB_OPTIM_LAMB) {
            double m = h->b1 * s1[i] + (1 - h->b1) * gi, v = h->b2 * s2[i] + (1 - h->b2) * gi * gi;
            u = (c2 / c1) * m / (sqrt(v) + h->eps * c2);
        } else {
            if (h->wd > 0) gi += h->wd * p[i];
            u = h->t == 1 ? gi : h->b1 * s1[i] + gi;
        }
        un += u * u;
    }
    double lim = max_unorm * sqrt(pn), u = sqrt(un);
    return u > lim ? lim / u : 1;
}

/* Brute-force nearest code with the sign rule (ties: lower index). */
static int ref_code(const float *map, double y, double value) {
    int best = 0;
    for (int c = 1; c < 256; c++)
        if (fabs(map[c] - y) < fabs(map[best] - y)) best = c;
    if (value < 0 && !(map[best] < 0) && best > 0 && map[best - 1] < 0) best--;
    else if (value > 0 && map[best] < 0 && best < 255) best++;
    return best;
}

/* ---------------------------------------------------------------------------------------------- a test rig */
/* One parameter of n elements with a leaf gradient set from the host before each compute. */
typedef struct {
    bnb_backend *be;
    bnb_context *ctx;
    bnb_buffer *buf;
    bnb_tensor *p, *g;
    bnb_graph *graph;
    bnb_optimizer *opt;
} rig;

static bool rig_open(rig *r, bnb_backend *be, bnb_optim_type type, bnb_optim_config cfg, bnb_type pt, bnb_type gt,
                     int64_t ne0, int64_t ne1, const float *p0) {
    memset(r, 0, sizeof *r);
    r->be = be;
    r->ctx = bnb_context_new((bnb_context_params){1 << 20, true});
    r->p = bnb_set_param(bnb_set_name(bnb_new_tensor_2d(r->ctx, pt, ne0, ne1), "w"));
    r->g = bnb_set_input(bnb_set_name(bnb_new_tensor_2d(r->ctx, gt, ne0, ne1), "w.grad"));
    r->p->grad = r->g;
    r->buf = bnb_backend_alloc_tensors(be, r->ctx);
    r->opt = bnb_optimizer_new(type, cfg);
    r->graph = bnb_graph_new(r->ctx, 64);
    if (!r->buf || !r->opt || !r->graph) return false;
    if (bnb_tensor_set_f32(r->p, p0, ne0 * ne1) != BNB_OK) return false;
    if (bnb_graph_build(r->graph, r->p) != BNB_OK) return false;
    return bnb_optimizer_step(r->opt, r->ctx, r->graph) == BNB_OK;
}

static void rig_close(rig *r) {
    bnb_optimizer_free(r->opt);
    bnb_buffer_free(r->buf);
    bnb_context_free(r->ctx);
}

static bool rig_step(rig *r, const float *g) {
    return bnb_tensor_set_f32(r->g, g, bnb_nelements(r->g)) == BNB_OK && bnb_graph_compute(r->be, r->graph) == BNB_OK;
}

static void fill_grad(tc_rng *rng, float *g, int64_t n, int step) {
    float s = 1.0f / (1 + step);
    tc_fill_signed(rng, g, n, 0.05f * s, 1.0f * s);
}

static float *f32s(int64_t n) { return tc_calloc((size_t)n, sizeof(float)); }
static double *f64s(int64_t n) { return tc_calloc((size_t)n, sizeof(double)); }

/* ---------------------------------------------------------------------------------------------- 32-bit */
static void test_32bit(bnb_backend *be, bnb_optim_type type, bnb_type pt, bnb_type gt) {
    const int64_t ne0 = 70, ne1 = 73, n = ne0 * ne1;
    bnb_optim_config cfg = bnb_optim_default_config(type);
    if (type == BNB_OPTIM_MOMENTUM || type == BNB_OPTIM_RMSPROP || type == BNB_OPTIM_LION) cfg.weight_decay = 0.01f;
    tc_rng rng;
    tc_rng_seed(&rng, 100 + type);
    float *p0 = f32s(n), *g = f32s(n), *got = f32s(2 * n);
    tc_fill_signed(&rng, p0, n, 0.1f, 1.0f);
    tc_round_to_type(p0, n, pt);
    double *p = f64s(n), *s1 = f64s(n), *s2 = f64s(n), *s3 = f64s(n), *gd = f64s(n);
    for (int64_t i = 0; i < n; i++) p[i] = p0[i];
    rig r;
    bool ok = rig_open(&r, be, type, cfg, pt, gt, ne0, ne1, p0);
    double worst_p = 0, worst_s = 0;
    for (int t = 1; ok && t <= NSTEPS; t++) {
        fill_grad(&rng, g, n, t);
        tc_round_to_type(g, n, gt);
        ok = rig_step(&r, g);
        ref_hp h = ref_hp_of(type, &cfg, t);
        for (int64_t i = 0; i < n; i++) gd[i] = g[i];
        h.uscale = ref_uscale(&h, cfg.max_unorm, gd, p, s1, s2, n);
        for (int64_t i = 0; i < n; i++) ref_elem(&h, gd[i], &p[i], &s1[i], &s2[i], &s3[i]);
        if (pt != BNB_TYPE_F32) /* the parameter is stored rounded each step */
            for (int64_t i = 0; i < n; i++) p[i] = tc_round1((float)p[i], pt);
        bnb_tensor_get_f32(r.p, got, n);
        double ps = 0.1; /* params are ~U(0.1, 1): errors relative to max(|p|, 0.1) */
        worst_p = fmax(worst_p, tc_rel_err(got, p, NULL, ps, n, NULL));
        bnb_tensor *st = bnb_optimizer_state(r.opt, r.p, 0);
        bnb_tensor_get_f32(st, got, bnb_nelements(st));
        worst_s = fmax(worst_s, tc_rel_err(got, s1, NULL, tc_max_abs(s1, n) * 1e-3 + 1e-30, n, NULL));
        if (type == BNB_OPTIM_ADEMAMIX) worst_s = fmax(worst_s, tc_rel_err(got + n, s3, NULL, tc_max_abs(s3, n) * 1e-3 + 1e-30, n, NULL));
        if ((st = bnb_optimizer_state(r.opt, r.p, 1))) {
            bnb_tensor_get_f32(st, got, n);
            worst_s = fmax(worst_s, tc_rel_err(got, s2, NULL, tc_max_abs(s2, n) * 1e-3 + 1e-30, n, NULL));
        }
    }
    double tol_p = pt == BNB_TYPE_F32 ? 5e-6 : (pt == BNB_TYPE_F16 ? 2e-3 : 1.6e-2);
    double tol_s = pt == BNB_TYPE_F32 ? 2e-4 : 5e-2; /* states follow a rounded parameter only through wd */
    tc_check(ok && worst_p <= tol_p && worst_s <= tol_s,
             "%s 32-bit %s param %s grad %s: %d steps, param rel err %.2e (tol %.0e), states %.2e %s",
             bnb_backend_name(be), bnb_optim_type_name(type), bnb_type_name(pt), bnb_type_name(gt), NSTEPS, worst_p,
             tol_p, worst_s, ok ? "" : bnb_last_error());
    if (ok) tc_check(bnb_optimizer_param_step(r.opt, r.p) == NSTEPS, "%s step counter = %lld", bnb_optim_type_name(type),
                     (long long)bnb_optimizer_param_step(r.opt, r.p));
    rig_close(&r);
    free(p0), free(g), free(got), free(p), free(s1), free(s2), free(s3), free(gd);
}

/* ---------------------------------------------------------------------------------------------- 8-bit */
typedef struct {
    uint8_t *codes;
    float *absmax;
    float map[256];
} host_opt8;

static void read_opt8(const bnb_tensor *s, host_opt8 *h, void *scratch) {
    int64_t n = bnb_nelements(s), nblk = (n + 255) / 256;
    size_t aoff = (size_t)((n + 15) / 16 * 16), moff = aoff + (size_t)((nblk * 4 + 15) / 16 * 16);
    bnb_tensor_get(s, scratch, 0, bnb_nbytes(s));
    h->codes = scratch;
    h->absmax = (float *)((uint8_t *)scratch + aoff);
    memcpy(h->map, (uint8_t *)scratch + moff, sizeof h->map);
}

/* Per step: from the kernel's states and parameter before the step, the reference computes the states and the
 * parameter after it (dequantize -> float64 update -> requantize); codes must match except rare ties. */
static void test_8bit(bnb_backend *be, bnb_optim_type type, bnb_type pt, int64_t n, bool skip_zeros, bool nan_grads) {
    bnb_optim_config cfg = bnb_optim_default_config(type);
    cfg.optim_bits = 8;
    cfg.skip_zeros = skip_zeros;
    tc_rng rng;
    tc_rng_seed(&rng, 200 + type);
    int nst = type == BNB_OPTIM_ADAM || type == BNB_OPTIM_ADAMW || type == BNB_OPTIM_LAMB || type == BNB_OPTIM_ADEMAMIX ? 2 : 1;
    int64_t npad = (n + 255) / 256 * 256, n1 = type == BNB_OPTIM_ADEMAMIX ? 2 * npad : n, nblk = npad / 256;
    float *p0 = f32s(n), *g = f32s(n), *pk = f32s(n);
    tc_fill_signed(&rng, p0, n, 0.1f, 1.0f);
    tc_round_to_type(p0, n, pt);
    void *raw1 = tc_malloc(n1 + 4096 + (size_t)nblk * 16), *raw2 = tc_malloc(n + 4096 + (size_t)nblk * 16);
    host_opt8 before1, before2, after1, after2;
    uint8_t *c1b = tc_malloc(n1), *c2b = tc_malloc(n);
    float *a1b = f32s(2 * nblk), *a2b = f32s(nblk);
    double *p = f64s(n), *s1 = f64s(n), *s2 = f64s(n), *s3 = f64s(n), *gd = f64s(n);
    rig r;
    bool ok = rig_open(&r, be, type, cfg, pt, BNB_TYPE_F32, n, 1, p0);
    bnb_tensor *st1 = ok ? bnb_optimizer_state(r.opt, r.p, 0) : NULL, *st2 = ok ? bnb_optimizer_state(r.opt, r.p, 1) : NULL;
    ok = ok && st1 && st1->type == BNB_TYPE_OPT8 && (nst == 1 || (st2 && st2->type == BNB_TYPE_OPT8));
    if (ok) { /* maps: signed dynamic for first moments, unsigned for second moments */
        float ms[256], mu[256];
        bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, ms);
        bnb_qmap_fill(BNB_QMAP_DYNAMIC_UNSIGNED, mu);
        read_opt8(st1, &before1, raw1);
        bool us = type == BNB_OPTIM_RMSPROP || type == BNB_OPTIM_ADAGRAD;
        bool maps_ok = !memcmp(before1.map, us ? mu : ms, sizeof ms);
        if (st2) {
            read_opt8(st2, &before2, raw2);
            maps_ok = maps_ok && !memcmp(before2.map, mu, sizeof mu);
        }
        tc_check(maps_ok, "%s 8-bit state maps are the dynamic signed/unsigned maps", bnb_optim_type_name(type));
    }
    int64_t code_diff = 0, code_total = 0;
    double worst_p = 0, worst_am = 0;
    for (int t = 1; ok && t <= NSTEPS; t++) {
        /* snapshot the kernel's states and parameter */
        read_opt8(st1, &before1, raw1);
        memcpy(c1b, before1.codes, n1);
        memcpy(a1b, before1.absmax, (size_t)(n1 / 256 + (n1 % 256 != 0)) * 4);
        if (st2) {
            read_opt8(st2, &before2, raw2);
            memcpy(c2b, before2.codes, n);
            memcpy(a2b, before2.absmax, (size_t)nblk * 4);
        }
        bnb_tensor_get_f32(r.p, pk, n);
        fill_grad(&rng, g, n, t);
        if (skip_zeros)
            for (int64_t i = 0; i < n; i += 7) g[i] = 0.f;
        if (nan_grads) {
            g[3] = NAN;
            g[n / 2] = INFINITY;
            g[n - 1] = -INFINITY;
        }
        ok = rig_step(&r, g);
        ref_hp h = ref_hp_of(type, &cfg, t);
        for (int64_t i = 0; i < n; i++) {
            p[i] = pk[i];
            gd[i] = g[i];
            s1[i] = (double)(before1.map[c1b[i]] * a1b[i / 256]);
            s2[i] = st2 ? (double)(before2.map[c2b[i]] * a2b[i / 256]) : 0;
            s3[i] = type == BNB_OPTIM_ADEMAMIX ? (double)(before1.map[c1b[npad + i]] * a1b[(npad + i) / 256]) : 0;
        }
        h.uscale = ref_uscale(&h, cfg.max_unorm, gd, p, s1, s2, n);
        for (int64_t i = 0; i < n; i++) ref_elem(&h, gd[i], &p[i], &s1[i], &s2[i], &s3[i]);
        if (pt != BNB_TYPE_F32)
            for (int64_t i = 0; i < n; i++) p[i] = tc_round1((float)p[i], pt);
        bnb_tensor_get_f32(r.p, pk, n);
        worst_p = fmax(worst_p, tc_rel_err(pk, p, NULL, 0.1, n, NULL));
        read_opt8(st1, &after1, raw1);
        if (st2) read_opt8(st2, &after2, raw2);
        for (int part = 0; part < (type == BNB_OPTIM_ADEMAMIX ? 3 : nst); part++) {
            const double *s = part == 0 ? s1 : part == 1 ? s2 : s3;
            const host_opt8 *q = part == 1 ? &after2 : &after1;
            int64_t off = part == 2 ? npad : 0;
            for (int64_t b = 0; b < nblk; b++) {
                int64_t i0 = b * 256, len = TMIN(256, n - i0);
                double am = 0;
                for (int64_t j = 0; j < len; j++) am = fmax(am, fabs(s[i0 + j]));
                double got_am = q->absmax[(off + i0) / 256];
                worst_am = fmax(worst_am, fabs(got_am - am) / fmax(am, 1e-30));
                for (int64_t j = 0; j < len; j++) {
                    int want = am > 0 ? ref_code(q->map, s[i0 + j] / am, s[i0 + j]) : ref_code(q->map, 0, s[i0 + j]);
                    int gotc = q->codes[off + i0 + j];
                    code_total++;
                    if (gotc != want) {
                        code_diff++;
                        /* a tie: both codes are (nearly) equally close */
                        double y = am > 0 ? s[i0 + j] / am : 0;
                        if (fabs(fabs(q->map[gotc] - y) - fabs(q->map[want] - y)) > 1e-5 * fmax(fabs(y), 1e-3))
                            code_diff += 1000000; /* not a tie: fail */
                    }
                }
            }
        }
    }
    tc_check(ok && worst_p <= (pt == BNB_TYPE_F32 ? 1e-6 : pt == BNB_TYPE_F16 ? 1e-3 : 8e-3) && worst_am <= 1e-5 &&
                 code_diff <= code_total / 1000 + 2,
             "%s 8-bit %s param %s n=%lld%s%s: param rel err %.2e, absmax rel err %.2e, codes differing %lld of %lld %s",
             bnb_backend_name(be), bnb_optim_type_name(type), bnb_type_name(pt), (long long)n,
             skip_zeros ? " skip_zeros" : "", nan_grads ? " nan-grads" : "", worst_p, worst_am, (long long)code_diff,
             (long long)code_total, ok ? "" : bnb_last_error());
    if (nan_grads && ok) { /* the NaN elements' states are 0 (code of 0), params unchanged */
        read_opt8(st1, &after1, raw1);
        tc_check(after1.map[after1.codes[3]] == 0.f && after1.map[after1.codes[n / 2]] == 0.f,
                 "%s 8-bit: states of non-finite gradient elements are 0", bnb_optim_type_name(type));
    }
    rig_close(&r);
    free(p0), free(g), free(pk), free(raw1), free(raw2), free(c1b), free(c2b), free(a1b), free(a2b);
    free(p), free(s1), free(s2), free(s3), free(gd);
}

#include "test-optim-requant.inc"
#include "test-optim-exact.inc"
#include "test-optim-more.inc"
