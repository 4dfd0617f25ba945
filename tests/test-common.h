/* Shared helpers for the bnb tests: seeded RNG, non-zero random fills, rounding to a tensor type, float64
 * reference helpers, error measures, a tiny check/report framework and the list of backends to test.
 * Header-only (static inline) so each test is one .c file. */
#ifndef BNB_TEST_COMMON_H
#define BNB_TEST_COMMON_H

#include "bnb.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- RNG */
typedef struct tc_rng {
    uint64_t s;
} tc_rng;

static inline void tc_rng_seed(tc_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; }

/* splitmix64 */
static inline uint64_t tc_rng_next(tc_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double tc_rng_uniform(tc_rng *r) { return (double)(tc_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline float tc_rand_range(tc_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)tc_rng_uniform(r); }
static inline int64_t tc_rand_int(tc_rng *r, int64_t n) { return (int64_t)(tc_rng_next(r) % (uint64_t)n); }

/* |x| in [lo_abs, hi_abs], random sign: never zero (lo_abs > 0). */
static inline void tc_fill_signed(tc_rng *r, float *x, int64_t n, float lo_abs, float hi_abs) {
    for (int64_t i = 0; i < n; i++) {
        float v = tc_rand_range(r, lo_abs, hi_abs);
        x[i] = (tc_rng_next(r) & 1) ? v : -v;
    }
}
/* x in [lo, hi], lo > 0 for ops that need positive inputs (log, sqrt). */
static inline void tc_fill_positive(tc_rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tc_rand_range(r, lo, hi);
}

/* ---------------------------------------------------------------------------------------------- types */
static inline bool tc_is_float_type(bnb_type t) { return t == BNB_TYPE_F32 || t == BNB_TYPE_F16 || t == BNB_TYPE_BF16; }

/* The value v takes once stored in a tensor of `type` (inputs are rounded BEFORE the reference sees them). */
static inline float tc_round1(float v, bnb_type type) {
    switch (type) {
    case BNB_TYPE_F16: return bnb_f16_to_f32(bnb_f32_to_f16(v));
    case BNB_TYPE_BF16: return bnb_bf16_to_f32(bnb_f32_to_bf16(v));
    default: return v;
    }
}
static inline void tc_round_to_type(float *x, int64_t n, bnb_type type) {
    for (int64_t i = 0; i < n; i++) x[i] = tc_round1(x[i], type);
}

/* Relative tolerance of results stored in `type`: a few roundings of that type. */
static inline double tc_type_tol(bnb_type type) {
    switch (type) {
    case BNB_TYPE_F16: return 1e-3;
    case BNB_TYPE_BF16: return 1e-2;
    default: return 1e-5;
    }
}

/* ---------------------------------------------------------------------------------------------- float64 helpers */
/* Flat index of element (i0, i1, i2, i3) of a contiguous array of shape ne. */
static inline int64_t tc_idx(const int64_t ne[4], int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return i0 + ne[0] * (i1 + ne[1] * (i2 + ne[2] * i3));
}
static inline int64_t tc_nel(const int64_t ne[4]) { return ne[0] * ne[1] * ne[2] * ne[3]; }

static inline double tc_max_abs(const double *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}
static inline double tc_gelu_ref(double x) { /* tanh approximation */
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}
static inline double tc_silu_ref(double x) { return x / (1.0 + exp(-x)); }

/* ---------------------------------------------------------------------------------------------- error measures */
/* max_i |got_i - ref_i| / max(|ref_i|, scale_i): relative error with a per-element scale below which the error
 * counts as absolute (scale NULL: `floor` for every element). NaN/Inf in got gives INFINITY. *worst gets the index. */
static inline double tc_rel_err(const float *got, const double *ref, const double *scale, double floor, int64_t n,
                                int64_t *worst) {
    double m = 0;
    if (worst) *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = scale ? scale[i] : floor;
        double d = fmax(fabs(ref[i]), s);
        double e = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
        e = d > 0 ? e / d : (e == 0 ? 0 : INFINITY);
        if (e > m || (isnan(e) && !isnan(m))) {
            m = e;
            if (worst) *worst = i;
        }
    }
    return m;
}
/* ||got - ref||_2 / ||ref||_2 */
static inline double tc_norm_rel_err(const float *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---------------------------------------------------------------------------------------------- checks */
static int tc_n_passed, tc_n_failed;
static int tc_verbose;

/* Records one check; prints the formatted message when it fails (or always with tc_verbose). */
static inline bool tc_check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool tc_check(bool ok, const char *fmt, ...) {
    if (ok)
        tc_n_passed++;
    else
        tc_n_failed++;
    if (!ok || tc_verbose) {
        va_list ap;
        va_start(ap, fmt);
        printf("%s: ", ok ? "ok  " : "FAIL");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        fflush(stdout);
    }
    return ok;
}

/* A precondition of a check (setup step): counts only when it fails, so the summary counts real comparisons. */
static inline bool tc_require(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool tc_require(bool ok, const char *fmt, ...) {
    if (ok) return true;
    tc_n_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return false;
}

/* Checks that a call failed with `want` and that the message names every string of `names` (NULL-terminated). */
static inline bool tc_check_error(bnb_status got, bnb_status want, const char *what, const char *const *names) {
    const char *msg = bnb_last_error();
    bool ok = got == want && msg && msg[0];
    const char *missing = NULL;
    for (int i = 0; ok && names && names[i]; i++)
        if (!strstr(msg, names[i])) {
            ok = false;
            missing = names[i];
        }
    return tc_check(ok, "%s: status %s (want %s), message \"%s\"%s%s%s", what, bnb_status_name(got),
                    bnb_status_name(want), msg ? msg : "(null)", missing ? " lacks \"" : "", missing ? missing : "",
                    missing ? "\"" : "");
}

/* Prints "N passed, N failed" and returns the process exit code (1 on any failure). */
static inline int tc_summary(const char *prog) {
    printf("%s: %d passed, %d failed\n", prog, tc_n_passed, tc_n_failed);
    return tc_n_failed ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------- backends */
#define TC_MAX_BACKENDS 4
#define TC_SKIP 77 /* CTest SKIP_RETURN_CODE */

typedef struct tc_backends {
    int n;
    bnb_backend *be[TC_MAX_BACKENDS];
} tc_backends;

/* Opens the backends named by `--backend cpu|cuda|all` (default all available: CPU always, CUDA when
 * bnb_cuda_available()). Returns 0, TC_SKIP when CUDA is asked for but absent (after saying why), or 2 on bad usage.
 * `-v` turns on verbose output. */
static inline int tc_open_backends(int argc, char **argv, tc_backends *bl, int cpu_threads) {
    const char *which = "all";
    memset(bl, 0, sizeof *bl);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            which = argv[++i];
        else if (!strncmp(argv[i], "--backend=", 10))
            which = argv[i] + 10;
        else if (!strcmp(argv[i], "-v"))
            tc_verbose = 1;
        else {
            fprintf(stderr, "usage: %s [--backend cpu|cuda|all] [-v]\n", argv[0]);
            return 2;
        }
    }
    bool want_cpu = !strcmp(which, "cpu") || !strcmp(which, "all");
    bool want_cuda = !strcmp(which, "cuda") || !strcmp(which, "all");
    if (!want_cpu && !want_cuda) {
        fprintf(stderr, "%s: unknown backend '%s' (cpu, cuda or all)\n", argv[0], which);
        return 2;
    }
    if (!strcmp(which, "cuda") && !bnb_cuda_available()) {
        printf("%s: SKIP: --backend cuda but no CUDA device is available (bnb_cuda_available() is false: built "
               "without CUDA, or no GPU/driver)\n", argv[0]);
        return TC_SKIP;
    }
    if (want_cpu) {
        bl->be[bl->n] = bnb_backend_cpu_new(cpu_threads);
        if (!bl->be[bl->n]) {
            fprintf(stderr, "%s: bnb_backend_cpu_new failed: %s\n", argv[0], bnb_last_error());
            return 2;
        }
        bl->n++;
    }
    if (want_cuda && bnb_cuda_available()) {
        bl->be[bl->n] = bnb_backend_cuda_new(0);
        if (!bl->be[bl->n]) {
            fprintf(stderr, "%s: bnb_backend_cuda_new(0) failed: %s\n", argv[0], bnb_last_error());
            return 2;
        }
        bl->n++;
    }
    return 0;
}

static inline void tc_close_backends(tc_backends *bl) {
    for (int i = 0; i < bl->n; i++) bnb_backend_free(bl->be[i]);
    bl->n = 0;
}

/* Host buffer helpers that exit on allocation failure (tests only). */
static inline void *tc_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}
static inline void *tc_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n * size);
        exit(2);
    }
    return p;
}

#endif /* BNB_TEST_COMMON_H */
