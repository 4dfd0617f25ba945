/* Token sampling: repetition penalty, then greedy (temperature <= 0) or temperature -> top-k -> top-p -> draw. */
#include "transformer.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float logit;
    int32_t id;
} cand;

struct bnb_sampler {
    bnb_sampler_params p;
    int32_t n_vocab;
    uint64_t rng;
    int32_t *recent; /* ring of the last repeat_last_n tokens */
    int32_t n_recent, head;
    cand *cands;
    float *work;
};

bnb_sampler_params bnb_sampler_default_params(void) {
    bnb_sampler_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .repeat_penalty = 1.1f,
                            .repeat_last_n = 64, .seed = 42};
    return p;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

bnb_sampler *bnb_sampler_new(const bnb_sampler_params *p, int32_t n_vocab) {
    if (n_vocab <= 0) return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_sampler_new: n_vocab %d must be positive", n_vocab);
    bnb_sampler_params q = p ? *p : bnb_sampler_default_params();
    if (!isfinite(q.temperature) || !(q.top_p > 0.f) || !(q.repeat_penalty > 0.f) || q.repeat_last_n < 0)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "bnb_sampler_new: temperature %g, top_p %g (> 0), repeat_penalty "
                             "%g (> 0), repeat_last_n %d (>= 0)", (double)q.temperature, (double)q.top_p,
                             (double)q.repeat_penalty, q.repeat_last_n);
    bnb_sampler *s = calloc(1, sizeof *s);
    if (!s) return bnb_fail_null(BNB_ERR_OOM, "bnb_sampler_new: out of host memory");
    s->p = q;
    s->n_vocab = n_vocab;
    s->rng = q.seed;
    s->recent = calloc((size_t)(q.repeat_last_n > 0 ? q.repeat_last_n : 1), sizeof(int32_t));
    s->cands = malloc((size_t)n_vocab * sizeof(cand));
    s->work = malloc((size_t)n_vocab * sizeof(float));
    if (!s->recent || !s->cands || !s->work) {
        bnb_sampler_free(s);
        return bnb_fail_null(BNB_ERR_OOM, "bnb_sampler_new: out of host memory");
    }
    return s;
}

void bnb_sampler_free(bnb_sampler *s) {
    if (!s) return;
    free(s->recent);
    free(s->cands);
    free(s->work);
    free(s);
}

void bnb_sampler_accept(bnb_sampler *s, int32_t token) {
    if (!s || s->p.repeat_last_n <= 0) return;
    s->recent[s->head] = token;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Heap of the k best seen so far with the worst at the root (c[0..k)); then sorted best first. */
static void sift_down(cand *h, int32_t k, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && cand_desc(&h[l], &h[w]) > 0) w = l; /* > 0: h[l] ranks after h[w] (worse) */
        if (r < k && cand_desc(&h[r], &h[w]) > 0) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void top_k_select(cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t j = k; j < n; j++)
        if (cand_desc(&c[j], &c[0]) < 0) { /* better than the worst kept: swap (c stays a permutation) */
            cand t = c[0];
            c[0] = c[j];
            c[j] = t;
            sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof(cand), cand_desc);
}

/* No top-k but a top-p cut: sort only a prefix long enough to hold top_p of the probability mass (a growing top-k
 * selection), not all n candidates. Returns the prefix length (c[0..len) sorted best first) and in *total the
 * softmax denominator over all n; returns n (everything sorted, *total untouched) when no shorter prefix does. */
static int32_t top_p_prefix(cand *c, int32_t n, float top_p, double *total) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++) mx = c[i].logit > mx ? c[i].logit : mx;
    if (isfinite(mx)) {
        double tot = 0;
        for (int32_t i = 0; i < n; i++) tot += expf(c[i].logit - mx);
        for (int32_t len = 256; len < n / 2; len *= 4) {
            top_k_select(c, n, len);
            double cum = 0;
            for (int32_t i = 0; i < len; i++) {
                cum += expf(c[i].logit - mx) / tot;
                if (cum >= top_p) {
                    *total = tot;
                    return len;
                }
            }
        }
    }
    qsort(c, (size_t)n, sizeof(cand), cand_desc);
    return n;
}

int32_t bnb_sampler_sample(bnb_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    const int32_t nv = s->n_vocab;
    float *l = s->work;
    memcpy(l, logits, (size_t)nv * sizeof(float));
    if (s->p.repeat_penalty != 1.f)
        for (int32_t i = 0; i < s->n_recent; i++) {
            int32_t t = s->recent[i];
            if (t < 0 || t >= nv) continue;
            /* applied once per distinct token: mark by checking earlier entries */
            bool seen = false;
            for (int32_t j = 0; j < i && !seen; j++) seen = s->recent[j] == t;
            if (seen) continue;
            l[t] = l[t] > 0 ? l[t] / s->p.repeat_penalty : l[t] * s->p.repeat_penalty;
        }
    if (s->p.temperature <= 0.f) {
        int32_t best = 0;
        for (int32_t i = 1; i < nv; i++)
            if (l[i] > l[best]) best = i;
        return best;
    }
    int32_t n = 0;
    for (int32_t i = 0; i < nv; i++)
        if (!isnan(l[i])) s->cands[n++] = (cand){l[i] / s->p.temperature, i};
    if (n == 0) return 0;
    int32_t k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    double total = 0; /* > 0: the softmax denominator over all n when only a sorted prefix of k is kept */
    if (k < n) top_k_select(s->cands, n, k); /* the best k first, in cand_desc order: O(n log k) */
    else if (s->p.top_p < 1.f) k = top_p_prefix(s->cands, n, s->p.top_p, &total);
    else qsort(s->cands, (size_t)n, sizeof(cand), cand_desc);
    /* softmax over the k candidates (sorted descending), then the top-p cut */
    const float mx = s->cands[0].logit;
    double sum = 0;
    for (int32_t i = 0; i < k; i++) {
        s->work[i] = expf(s->cands[i].logit - mx);
        sum += s->work[i];
    }
    if (total > 0) sum = total;
    int32_t keep = k;
    if (s->p.top_p < 1.f) {
        double cum = 0;
        for (int32_t i = 0; i < k; i++) {
            cum += s->work[i] / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        sum = 0;
        for (int32_t i = 0; i < keep; i++) sum += s->work[i];
    }
    const double u = (double)(splitmix64(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * sum;
    double acc = 0;
    for (int32_t i = 0; i < keep; i++) {
        acc += s->work[i];
        if (u < acc) return s->cands[i].id;
    }
    return s->cands[keep - 1].id;
}
