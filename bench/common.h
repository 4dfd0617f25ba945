/* Small helpers shared by the benchmarks (header only): wall-clock timing, median of repeats, a --json FILE
 * option and a minimal JSON writer for result rows.
 *
 *   bench_json js;
 *   bench_json_open(&js, bench_json_path(argc, argv), "bench-foo");  // no-op writer when the path is NULL
 *   bench_json_row_begin(&js);
 *   bench_json_str(&js, "op", "add"); bench_json_num(&js, "gflops", 12.5); bench_json_int(&js, "threads", 2);
 *   bench_json_row_end(&js);
 *   bench_json_close(&js);  // -> {"bench": "bench-foo", "rows": [{"op": "add", "gflops": 12.5, "threads": 2}]}
 */
#ifndef BNB_BENCH_COMMON_H
#define BNB_BENCH_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on a monotonic clock. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v in place). */
static inline double bench_median(double *v, int n) {
    if (n <= 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median seconds of `reps` calls of fn(arg) after `warmup` untimed calls. */
static inline double bench_time_median(void (*fn)(void *), void *arg, int warmup, int reps) {
    double t[256];
    if (reps > 256) reps = 256;
    if (reps < 1) reps = 1;
    for (int i = 0; i < warmup; i++) fn(arg);
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        fn(arg);
        t[i] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

/* Value of "--json FILE" in argv, or NULL. */
static inline const char *bench_json_path(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--json") == 0) return argv[i + 1];
    return NULL;
}

/* True when flag (e.g. "--quick") is in argv. */
static inline int bench_has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return 1;
    return 0;
}

typedef struct {
    FILE *f;      /* NULL: every call is a no-op */
    int n_rows;
    int n_fields; /* fields in the current row */
} bench_json;

static inline void bench_json_put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* Open the file (path NULL: disabled). Returns 0, or -1 when the file cannot be created. */
static inline int bench_json_open(bench_json *js, const char *path, const char *bench_name) {
    memset(js, 0, sizeof *js);
    if (!path) return 0;
    js->f = fopen(path, "w");
    if (!js->f) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    fputs("{\"bench\": ", js->f);
    bench_json_put_string(js->f, bench_name);
    fputs(", \"rows\": [", js->f);
    return 0;
}

static inline void bench_json_row_begin(bench_json *js) {
    if (!js->f) return;
    fputs(js->n_rows ? ",\n  {" : "\n  {", js->f);
    js->n_fields = 0;
}

static inline void bench_json_key(bench_json *js, const char *key) {
    if (js->n_fields++) fputs(", ", js->f);
    bench_json_put_string(js->f, key);
    fputs(": ", js->f);
}

static inline void bench_json_str(bench_json *js, const char *key, const char *v) {
    if (!js->f) return;
    bench_json_key(js, key);
    bench_json_put_string(js->f, v);
}

/* Numbers: non-finite values are written as null (JSON has no inf/nan). */
static inline void bench_json_num(bench_json *js, const char *key, double v) {
    if (!js->f) return;
    bench_json_key(js, key);
    if (v != v || v > 1e308 || v < -1e308) fputs("null", js->f);
    else fprintf(js->f, "%.6g", v);
}

static inline void bench_json_int(bench_json *js, const char *key, long long v) {
    if (!js->f) return;
    bench_json_key(js, key);
    fprintf(js->f, "%lld", v);
}

static inline void bench_json_row_end(bench_json *js) {
    if (!js->f) return;
    fputc('}', js->f);
    js->n_rows++;
}

static inline void bench_json_close(bench_json *js) {
    if (!js->f) return;
    fputs("\n]}\n", js->f);
    fclose(js->f);
    js->f = NULL;
}

#endif
