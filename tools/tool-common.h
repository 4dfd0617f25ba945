/* Small helpers shared by the command-line tools: strict option parsing, timing, backend choice. */
#ifndef BNB_TOOL_COMMON_H
#define BNB_TOOL_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include "bnb-model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double tool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The value of option argv[*i] (advances *i); exits with a message naming the option when it is missing. */
static inline const char *tool_value(int argc, char **argv, int *i, const char *prog) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: option %s needs a value (see --help)\n", prog, argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static inline long long tool_int(const char *opt, const char *s, long long lo, long long hi, const char *prog) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: option %s: '%s' is not an integer in [%lld, %lld]\n", prog, opt, s, lo, hi);
        exit(2);
    }
    return v;
}

static inline double tool_float(const char *opt, const char *s, double lo, double hi, const char *prog) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: option %s: '%s' is not a number in [%g, %g]\n", prog, opt, s, lo, hi);
        exit(2);
    }
    return v;
}

/* --device cpu|cuda -> a backend (NULL after printing why). */
/* --weights when not given: a GGUF's own int8 / f16 / nf4 linear weights stay in that precision (an int8 file runs
 * int8); anything else (other GGUF types, a Hugging Face directory) loads as f32. */
static inline const char *tool_default_weights(const char *model_path) {
    const char *w = "f32";
    bnb_gguf *g = bnb_gguf_open(model_path); /* NULL for a directory or another format */
    bnb_gguf_tensor_info ti;
    int64_t q = g ? bnb_gguf_find_tensor(g, "blk.0.attn_q.weight") : -1;
    if (q >= 0 && bnb_gguf_tensor_info_get(g, q, &ti) == BNB_OK)
        w = ti.type == BNB_TYPE_I8_ROW ? "int8" : ti.type == BNB_TYPE_F16 ? "f16" : ti.type == BNB_TYPE_Q4_NF4 ? "nf4" : "f32";
    bnb_gguf_free(g);
    bnb_clear_error();
    return w;
}

static inline bnb_backend *tool_backend(const char *device, int threads, const char *prog) {
    if (!strcmp(device, "auto")) device = bnb_cuda_available() ? "cuda" : "cpu"; /* the GPU when there is one */
    if (!strcmp(device, "cpu")) {
        bnb_backend *be = bnb_backend_cpu_new(threads);
        if (!be) fprintf(stderr, "%s: cannot create the CPU backend: %s\n", prog, bnb_last_error());
        return be;
    }
    if (!strcmp(device, "cuda")) {
        if (!bnb_cuda_available()) {
            fprintf(stderr, "%s: --device cuda: no CUDA device is available (this build %s CUDA support)\n", prog,
#ifdef BNB_HAVE_CUDA
                    "has"
#else
                    "lacks"
#endif
            );
            return NULL;
        }
        bnb_backend *be = bnb_backend_cuda_new(0);
        if (!be) fprintf(stderr, "%s: cannot create the CUDA backend: %s\n", prog, bnb_last_error());
        return be;
    }
    fprintf(stderr, "%s: option --device: '%s' is neither cpu nor cuda\n", prog, device);
    return NULL;
}

#endif
