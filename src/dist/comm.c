/* Communicator: NCCL loaded at run time, the file-based unique-id exchange, and the bucketed gradient collectives
 * (F32 / BF16 all-reduce, 8-bit blockwise compressed all-gather + local sum). include/bnb-model.h, distributed. */
#define _POSIX_C_SOURCE 200809L
#include "dist-impl.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bnb-impl.h"
#ifdef BNB_HAVE_CUDA
#include "../cuda/backend-cuda.h"
#endif

/* ------------------------------------------------------------------------------------------ unique-id exchange */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bnb_status bnb_dist_exchange_file(const char *path, int rank, void *data, size_t bytes, double timeout_s) {
    const char *op = "bnb_dist_exchange_file";
    if (!path || !data || bytes == 0 || rank < 0) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: bad arguments", op);
    if (rank == 0) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) return bnb_fail(BNB_ERR_IO, "%s: cannot create %s: %s", op, tmp, strerror(errno));
        ssize_t w = write(fd, data, bytes);
        int ok = w == (ssize_t)bytes && fsync(fd) == 0;
        close(fd);
        if (!ok || rename(tmp, path) != 0) {
            unlink(tmp);
            return bnb_fail(BNB_ERR_IO, "%s: cannot write %s: %s", op, path, strerror(errno));
        }
        return BNB_OK;
    }
    double t0 = now_s();
    for (;;) { /* rename is atomic: the file is either absent or complete */
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            struct stat st;
            ssize_t r = -1;
            if (fstat(fd, &st) == 0 && (size_t)st.st_size == bytes) r = read(fd, data, bytes);
            close(fd);
            if (r == (ssize_t)bytes) return BNB_OK;
        }
        if (now_s() - t0 > timeout_s)
            return bnb_fail(BNB_ERR_IO, "%s: rank %d waited %.1f s for %s (%zu bytes) from rank 0", op, rank, timeout_s,
                            path, bytes);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------------------------------ NCCL at run time */
/* The few NCCL entry points used, declared by ABI (enums are ints, ncclComm_t and cudaStream_t are pointers), so
 * no nccl.h is needed to build. Values from nccl.h (2.x): ncclSum 0; ncclUint8 1, ncclFloat32 7, ncclFloat64 8,
 * ncclBfloat16 9. */
enum { NCCL_SUM = 0, NCCL_UINT8 = 1, NCCL_FLOAT32 = 7, NCCL_FLOAT64 = 8, NCCL_BFLOAT16 = 9 };
typedef struct nccl_id { char internal[128]; } nccl_id;
typedef struct nccl_api {
    void *lib;
    int (*get_unique_id)(nccl_id *id);
    int (*comm_init_rank)(void **comm, int nranks, nccl_id id, int rank);
    int (*comm_destroy)(void *comm);
    int (*all_reduce)(const void *s, void *r, size_t count, int dtype, int op, void *comm, void *stream);
    int (*all_gather)(const void *s, void *r, size_t count, int dtype, void *comm, void *stream);
    int (*broadcast)(const void *s, void *r, size_t count, int dtype, int root, void *comm, void *stream);
    int (*group_start)(void);
    int (*group_end)(void);
    const char *(*error_string)(int res);
} nccl_api;
static nccl_api g_nccl;
static int g_nccl_state __attribute__((unused)); /* 0 untried, 1 loaded, -1 unavailable */

static bool nccl_load(void) {
#ifdef BNB_HAVE_CUDA
    if (g_nccl_state) return g_nccl_state > 0;
    g_nccl_state = -1;
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    nccl_api a = {.lib = lib};
#define SYM(field, name)                                                                                               \
    if (!(*(void **)&a.field = dlsym(lib, name))) {                                                                   \
        dlclose(lib);                                                                                                  \
        return false;                                                                                                  \
    }
    SYM(get_unique_id, "ncclGetUniqueId");
    SYM(comm_init_rank, "ncclCommInitRank");
    SYM(comm_destroy, "ncclCommDestroy");
    SYM(all_reduce, "ncclAllReduce");
    SYM(all_gather, "ncclAllGather");
    SYM(broadcast, "ncclBroadcast");
    SYM(group_start, "ncclGroupStart");
    SYM(group_end, "ncclGroupEnd");
    SYM(error_string, "ncclGetErrorString");
#undef SYM
    g_nccl = a;
    g_nccl_state = 1;
    return true;
#else
    return false;
#endif
}

bool bnb_dist_nccl_available(void) { return nccl_load(); }

static __attribute__((unused)) bnb_status nccl_check(int r, const char *what) {
    if (r == 0) return BNB_OK;
    return bnb_fail(BNB_ERR_BACKEND, "%s: NCCL error %d (%s)", what, r, g_nccl.error_string ? g_nccl.error_string(r) : "?");
}

/* ------------------------------------------------------------------------------------------ communicator */
struct bnb_dist_comm {
    int rank, world, device;
    void *nccl;
    uint64_t bytes_sent;
    void *scratch; /* device scratch for flattened / converted / compressed buckets */
    size_t scratch_bytes;
    double *dscalar; /* device double for scalar reductions */
};

int bnb_dist_rank(const bnb_dist_comm *c) { return c ? c->rank : -1; }
int bnb_dist_world(const bnb_dist_comm *c) { return c ? c->world : 0; }
int bnb_dist_device(const bnb_dist_comm *c) { return c ? c->device : -1; }
uint64_t bnb_dist_bytes_sent(const bnb_dist_comm *c) { return c ? c->bytes_sent : 0; }

bnb_dist_comm *bnb_dist_comm_new(int rank, int world, int device, const char *id_file, double timeout_s) {
    const char *op = "bnb_dist_comm_new";
    if (world < 1 || rank < 0 || rank >= world || device < 0 || !id_file)
        return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: rank %d of world %d, device %d, id file %s", op, rank, world,
                             device, id_file ? id_file : "NULL");
#ifndef BNB_HAVE_CUDA
    (void)timeout_s;
    return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: this build has no CUDA (NCCL needs it)", op);
#else
    if (!nccl_load()) return bnb_fail_null(BNB_ERR_UNSUPPORTED, "%s: libnccl.so.2 not found (dlopen: %s)", op, dlerror());
    if (device >= bnb_dist_cuda_device_count())
        return bnb_fail_null(BNB_ERR_NO_DEVICE, "%s: device %d, but %d visible", op, device, bnb_dist_cuda_device_count());
    if (bnb_dist_cuda_set_device(device) != BNB_OK) return NULL;
    nccl_id id;
    memset(&id, 0, sizeof id);
    if (rank == 0 && nccl_check(g_nccl.get_unique_id(&id), "ncclGetUniqueId") != BNB_OK) return NULL;
    if (bnb_dist_exchange_file(id_file, rank, &id, sizeof id, timeout_s) != BNB_OK) return NULL;
    bnb_dist_comm *c = calloc(1, sizeof *c);
    if (!c) return bnb_fail_null(BNB_ERR_OOM, "%s: out of host memory", op);
    c->rank = rank;
    c->world = world;
    c->device = device;
    if (nccl_check(g_nccl.comm_init_rank(&c->nccl, world, id, rank), "ncclCommInitRank") != BNB_OK ||
        bnb_dist_cuda_malloc((void **)&c->dscalar, sizeof(double)) != BNB_OK) {
        bnb_dist_comm_free(c);
        return NULL;
    }
    return c;
#endif
}

bnb_dist_comm *bnb_dist_comm_from_env(void) {
    const char *r = getenv("RANK"), *w = getenv("WORLD_SIZE"), *l = getenv("LOCAL_RANK"), *f = getenv("BNB_DIST_ID_FILE");
    int rank = r ? atoi(r) : 0, world = w ? atoi(w) : 1, local = l ? atoi(l) : rank;
    return bnb_dist_comm_new(rank, world, local, f && *f ? f : "/tmp/bnb-nccl-id", 120.0);
}

void bnb_dist_comm_free(bnb_dist_comm *c) {
    if (!c) return;
#ifdef BNB_HAVE_CUDA
    if (c->nccl) g_nccl.comm_destroy(c->nccl);
    bnb_dist_cuda_free(c->scratch);
    bnb_dist_cuda_free(c->dscalar);
#endif
    free(c);
}

bnb_status bnb_dist_allreduce_scalar(bnb_dist_comm *c, double *v) {
    if (!c || !v) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_dist_allreduce_scalar: NULL argument");
#ifdef BNB_HAVE_CUDA
    bnb_status st = bnb_dist_cuda_memcpy_h2d(c->dscalar, v, sizeof *v, NULL);
    if (st == BNB_OK)
        st = nccl_check(g_nccl.all_reduce(c->dscalar, c->dscalar, 1, NCCL_FLOAT64, NCCL_SUM, c->nccl, NULL),
                        "bnb_dist_allreduce_scalar");
    if (st == BNB_OK) st = bnb_dist_cuda_memcpy_d2h(v, c->dscalar, sizeof *v, NULL);
    return st;
#else
    return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_dist_allreduce_scalar: no CUDA in this build");
#endif
}

bnb_status bnb_dist_barrier(bnb_dist_comm *c) {
    double z = 0;
    return bnb_dist_allreduce_scalar(c, &z);
}

#ifdef BNB_HAVE_CUDA
static bnb_status ensure_scratch(bnb_dist_comm *c, size_t bytes) {
    if (bytes <= c->scratch_bytes) return BNB_OK;
    bnb_dist_cuda_free(c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
    bnb_status st = bnb_dist_cuda_malloc(&c->scratch, bytes);
    if (st == BNB_OK) c->scratch_bytes = bytes;
    return st;
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

/* One bucket: tensors ts[first], ts[first-1], ... flattened in that order. */
static bnb_status reduce_bucket(bnb_dist_comm *c, void *stream, bnb_tensor **ts, const int64_t *numel,
                                const bnb_dist_bucket *b, bnb_dist_mode mode) {
    const char *op = "bnb_dist_allreduce_tensors";
    int W = c->world;
    bnb_status st = BNB_OK;
    if (mode == BNB_DIST_F32) { /* in place, tensor by tensor inside one NCCL group */
        g_nccl.group_start();
        for (int i = 0; i < b->count && st == BNB_OK; i++) {
            bnb_tensor *t = ts[b->first - i];
            st = nccl_check(g_nccl.all_reduce(t->data, t->data, (size_t)numel[b->first - i], NCCL_FLOAT32, NCCL_SUM,
                                              c->nccl, stream), op);
        }
        bnb_status st2 = nccl_check(g_nccl.group_end(), op);
        c->bytes_sent += (uint64_t)(2.0 * (W - 1) / W * (double)b->numel * 4.0);
        return st != BNB_OK ? st : st2;
    }
    if (mode == BNB_DIST_BF16) {
        if ((st = ensure_scratch(c, (size_t)b->numel * 2)) != BNB_OK) return st;
        uint16_t *buf = c->scratch;
        for (int i = 0; i < b->count && st == BNB_OK; i++)
            st = bnb_dist_cuda_f32_to_bf16(ts[b->first - i]->data, buf + bnb_dist_bucket_offset(numel, b, i),
                                           numel[b->first - i], stream);
        if (st == BNB_OK)
            st = nccl_check(g_nccl.all_reduce(buf, buf, (size_t)b->numel, NCCL_BFLOAT16, NCCL_SUM, c->nccl, stream), op);
        for (int i = 0; i < b->count && st == BNB_OK; i++)
            st = bnb_dist_cuda_bf16_to_f32(buf + bnb_dist_bucket_offset(numel, b, i), ts[b->first - i]->data,
                                           numel[b->first - i], stream);
        c->bytes_sent += (uint64_t)(2.0 * (W - 1) / W * (double)b->numel * 2.0);
        return st;
    }
    /* Q8: flat f32 | all ranks' codes | all ranks' absmax */
    int64_t n = b->numel, nblk = bnb_dist_q8_blocks(n);
    size_t flat_b = align256((size_t)n * 4), codes_b = align256((size_t)n * (size_t)W);
    if ((st = ensure_scratch(c, flat_b + codes_b + (size_t)nblk * 4 * (size_t)W)) != BNB_OK) return st;
    float *flat = c->scratch;
    uint8_t *codes = (uint8_t *)c->scratch + flat_b;
    float *absmax = (float *)((uint8_t *)c->scratch + flat_b + codes_b);
    for (int i = 0; i < b->count && st == BNB_OK; i++)
        st = bnb_dist_cuda_memcpy_d2d(flat + bnb_dist_bucket_offset(numel, b, i), ts[b->first - i]->data,
                                      (size_t)numel[b->first - i] * 4, stream);
    uint8_t *my_codes = codes + (size_t)c->rank * (size_t)n;
    float *my_absmax = absmax + (size_t)c->rank * (size_t)nblk;
    if (st == BNB_OK) st = bnb_dist_cuda_q8_compress(flat, n, my_codes, my_absmax, stream);
    if (st == BNB_OK) { /* in-place all-gathers: each rank's part already sits at its slot */
        g_nccl.group_start();
        st = nccl_check(g_nccl.all_gather(my_codes, codes, (size_t)n, NCCL_UINT8, c->nccl, stream), op);
        bnb_status st2 = nccl_check(g_nccl.all_gather(my_absmax, absmax, (size_t)nblk, NCCL_FLOAT32, c->nccl, stream), op);
        bnb_status st3 = nccl_check(g_nccl.group_end(), op);
        if (st == BNB_OK) st = st2 != BNB_OK ? st2 : st3;
    }
    if (st == BNB_OK) st = bnb_dist_cuda_q8_decompress_sum(codes, (size_t)n, absmax, (size_t)nblk, W, n, flat, stream);
    for (int i = 0; i < b->count && st == BNB_OK; i++)
        st = bnb_dist_cuda_memcpy_d2d(ts[b->first - i]->data, flat + bnb_dist_bucket_offset(numel, b, i),
                                      (size_t)numel[b->first - i] * 4, stream);
    c->bytes_sent += (uint64_t)((double)(W - 1) * (double)bnb_dist_q8_bytes(n));
    return st;
}
#endif

bnb_status bnb_dist_allreduce_tensors(bnb_dist_comm *c, bnb_backend *be, bnb_tensor **ts, int n, bnb_dist_mode mode,
                                      size_t bucket_bytes) {
    const char *op = "bnb_dist_allreduce_tensors";
    if (!c || !be || (!ts && n > 0) || n < 0 || (unsigned)mode > BNB_DIST_Q8)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: bad arguments", op);
#ifndef BNB_HAVE_CUDA
    return bnb_fail(BNB_ERR_UNSUPPORTED, "%s: no CUDA in this build", op);
#else
    void *stream = bnb_cuda_stream(be);
    if (!bnb_backend_is_cuda(be)) return bnb_fail(BNB_ERR_UNSUPPORTED, "%s: backend %s is not CUDA", op, bnb_backend_name(be));
    int64_t *numel = malloc((size_t)(n ? n : 1) * sizeof *numel);
    bnb_dist_bucket *bk = malloc((size_t)(n ? n : 1) * sizeof *bk);
    bnb_status st = BNB_OK;
    if (!numel || !bk) st = bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    for (int i = 0; i < n && st == BNB_OK; i++) {
        bnb_tensor *t = ts[i];
        if (!t || t->type != BNB_TYPE_F32 || !bnb_is_contiguous(t) || !t->data)
            st = bnb_fail(BNB_ERR_TYPE, "%s: tensor %d ('%s') must be F32, contiguous and allocated", op, i,
                          t ? t->name : "NULL");
        else numel[i] = bnb_nelements(t);
    }
    int nb = st == BNB_OK ? bnb_dist_plan_buckets(numel, n, 4, bucket_bytes ? bucket_bytes : (25u << 20), bk) : 0;
    if (nb < 0) st = bnb_last_status();
    if (st == BNB_OK && c->world > 1)
        for (int k = 0; k < nb && st == BNB_OK; k++) st = reduce_bucket(c, stream, ts, numel, &bk[k], mode);
    if (st == BNB_OK) st = bnb_dist_cuda_sync(stream);
    free(numel);
    free(bk);
    return st;
#endif
}

/* Broadcast every tensor from its owner (ZeRO-1 parameter gather), any plain type. Used by dp-train.c. */
bnb_status bnb_dist_broadcast_owned(bnb_dist_comm *c, bnb_backend *be, bnb_tensor **ts, const int *owner, int n);
bnb_status bnb_dist_broadcast_owned(bnb_dist_comm *c, bnb_backend *be, bnb_tensor **ts, const int *owner, int n) {
#ifndef BNB_HAVE_CUDA
    (void)c; (void)be; (void)ts; (void)owner; (void)n;
    return bnb_fail(BNB_ERR_UNSUPPORTED, "bnb_dist_broadcast_owned: no CUDA in this build");
#else
    void *stream = bnb_cuda_stream(be);
    bnb_status st = BNB_OK;
    if (c->world == 1) return BNB_OK;
    g_nccl.group_start();
    for (int i = 0; i < n && st == BNB_OK; i++) {
        size_t bytes = bnb_nbytes(ts[i]);
        st = nccl_check(g_nccl.broadcast(ts[i]->data, ts[i]->data, bytes, NCCL_UINT8, owner[i], c->nccl, stream),
                        "bnb_dist_broadcast_owned");
        c->bytes_sent += (uint64_t)((double)(c->world - 1) / c->world * (double)bytes);
    }
    bnb_status st2 = nccl_check(g_nccl.group_end(), "bnb_dist_broadcast_owned");
    if (st == BNB_OK) st = st2;
    if (st == BNB_OK) st = bnb_dist_cuda_sync(stream);
    return st;
#endif
}
