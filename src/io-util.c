/* File helpers: whole-file mapping with size checks, whole-file reads with a cap, atomic writes (temp file + fsync +
 * rename + directory fsync), a growable byte buffer for writers, and a checksum. */
#define _POSIX_C_SOURCE 200809L
#include "io-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

bnb_status bnb_file_map(const char *path, bnb_mapped_file *out) {
    memset(out, 0, sizeof *out);
    if (!path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_file_map: path is NULL");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bnb_fail(BNB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bnb_fail(BNB_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return bnb_fail(BNB_ERR_IO, "%s: file too large (%lld bytes)", path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return BNB_OK;
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
        close(fd);
        out->data = m;
        out->base = m;
        out->size = out->map_size = size;
        out->is_mmap = true;
        return BNB_OK;
    }
    /* fall back to reading (file systems without mmap) */
    uint8_t *buf = malloc(size);
    if (!buf) {
        close(fd);
        return bnb_fail(BNB_ERR_OOM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return bnb_fail(BNB_ERR_IO, "%s: read failed after %zu of %zu bytes", path, got, size);
        }
        got += (size_t)r;
    }
    close(fd);
    out->data = buf;
    out->base = buf;
    out->size = size;
    return BNB_OK;
}

void bnb_file_unmap(bnb_mapped_file *f) {
    if (!f) return;
    if (f->is_mmap && f->base) munmap(f->base, f->map_size);
    else free(f->base);
    memset(f, 0, sizeof *f);
}

bnb_status bnb_file_read_all(const char *path, size_t max_size, char **out, size_t *size) {
    *out = NULL;
    *size = 0;
    if (!path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_file_read_all: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return bnb_fail(BNB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return bnb_fail(BNB_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        fclose(f);
        return bnb_fail(BNB_ERR_IO, "%s: file is %lld bytes, more than the limit of %zu", path,
                        (long long)st.st_size, max_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return bnb_fail(BNB_ERR_OOM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return bnb_fail(BNB_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    *size = n;
    return BNB_OK;
}

/* ---------------------------------------------------------------- atomic writes */
static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void atomic_release(bnb_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

bnb_status bnb_atomic_open(bnb_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (!path || !*path) return bnb_fail(BNB_ERR_INVALID_ARG, "bnb_atomic_open: empty path");
    size_t n = strlen(path) + 48;
    af->path = str_dup(path);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        atomic_release(af);
        return bnb_fail(BNB_ERR_OOM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        bnb_status s = bnb_fail(BNB_ERR_IO, "%s: cannot create %s: %s", path, af->tmp_path, strerror(errno));
        atomic_release(af);
        return s;
    }
    return BNB_OK;
}

bnb_status bnb_atomic_write(bnb_atomic_file *af, const void *data, size_t size) {
    if (af->failed) return BNB_ERR_IO;
    if (size && fwrite(data, 1, size, af->f) != size) {
        af->failed = true;
        return bnb_fail(BNB_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    }
    return BNB_OK;
}

bnb_status bnb_atomic_pad(bnb_atomic_file *af, size_t n) {
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        bnb_status s = bnb_atomic_write(af, zeros, k);
        if (s != BNB_OK) return s;
        n -= k;
    }
    return BNB_OK;
}

void bnb_atomic_abort(bnb_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
}

bnb_status bnb_atomic_commit(bnb_atomic_file *af) {
    if (af->failed) {
        bnb_atomic_abort(af);
        return BNB_ERR_IO;
    }
    bool ok = fflush(af->f) == 0 && fsync(fileno(af->f)) == 0;
    ok = (fclose(af->f) == 0) && ok;
    af->f = NULL;
    if (!ok) {
        bnb_status s = bnb_fail(BNB_ERR_IO, "%s: flush/fsync failed: %s", af->path, strerror(errno));
        bnb_atomic_abort(af);
        return s;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        bnb_status s = bnb_fail(BNB_ERR_IO, "%s: rename from %s failed: %s", af->path, af->tmp_path, strerror(errno));
        bnb_atomic_abort(af);
        return s;
    }
    /* make the rename durable: fsync the directory */
    char *dir = str_dup(af->path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash == dir) d = "/";
        else if (slash) *slash = 0, d = dir;
        int fd = open(d, O_RDONLY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
    atomic_release(af);
    return BNB_OK;
}

/* ---------------------------------------------------------------- byte buffer */
void bnb_bytes_put(bnb_bytes *b, const void *p, size_t n) {
    if (b->oom || n == 0) return;
    if (b->size + n < b->size) {
        b->oom = true;
        return;
    }
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->size + n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->size, p, n);
    b->size += n;
}
void bnb_bytes_put_u8(bnb_bytes *b, uint8_t v) { bnb_bytes_put(b, &v, 1); }
void bnb_bytes_put_u32(bnb_bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bnb_bytes_put(b, x, 4);
}
void bnb_bytes_put_u64(bnb_bytes *b, uint64_t v) {
    bnb_bytes_put_u32(b, (uint32_t)v);
    bnb_bytes_put_u32(b, (uint32_t)(v >> 32));
}
void bnb_bytes_put_str(bnb_bytes *b, const char *s) { bnb_bytes_put(b, s, strlen(s)); }
void bnb_bytes_free(bnb_bytes *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void *bnb_bytes_reserve(bnb_bytes *b, size_t n) {
    static const uint8_t zeros[256];
    size_t at = b->size;
    for (size_t left = n; left > 0 && !b->oom;) {
        size_t k = left < sizeof zeros ? left : sizeof zeros;
        bnb_bytes_put(b, zeros, k);
        left -= k;
    }
    return b->oom ? NULL : b->data + at;
}

bnb_status bnb_atomic_write_file(const char *path, const void *data, size_t size) {
    bnb_atomic_file af;
    bnb_status s = bnb_atomic_open(&af, path);
    if (s != BNB_OK) return s;
    s = bnb_atomic_write(&af, data, size);
    if (s != BNB_OK) {
        bnb_atomic_abort(&af);
        return s;
    }
    return bnb_atomic_commit(&af);
}

uint64_t bnb_fnv1a64(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---------------------------------------------------------------- sinks */
bnb_status bnb_sink_write(bnb_sink *s, const void *p, size_t n) {
    if (s->af) return bnb_atomic_write(s->af, p, n);
    bnb_bytes_put(s->mem, p, n);
    return s->mem->oom ? bnb_fail(BNB_ERR_OOM, "%s: out of memory", s->who) : BNB_OK;
}

bnb_status bnb_sink_zeros(bnb_sink *s, size_t n) {
    static const uint8_t z[64];
    bnb_status st = BNB_OK;
    while (n && st == BNB_OK) {
        size_t k = n < sizeof z ? n : sizeof z;
        st = bnb_sink_write(s, z, k);
        n -= k;
    }
    return st;
}

bnb_status bnb_sink_tensor(bnb_sink *s, const bnb_tensor *t, size_t nbytes, const char *name, uint8_t **chunk) {
    const size_t chunk_size = 4u << 20;
    if (bnb_nbytes(t) != nbytes || !t->data)
        return bnb_fail(BNB_ERR_INVALID_ARG, "%s: tensor '%s' changed since it was added", s->who, name);
    if (!*chunk && !(*chunk = malloc(chunk_size))) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", s->who);
    bnb_status st = BNB_OK;
    for (size_t o = 0; o < nbytes && st == BNB_OK; o += chunk_size) {
        size_t k = nbytes - o < chunk_size ? nbytes - o : chunk_size;
        st = bnb_tensor_get(t, *chunk, o, k);
        if (st == BNB_OK) st = bnb_sink_write(s, *chunk, k);
    }
    return st;
}

bnb_status bnb_sink_to_file(const char *path, const char *who, bnb_sink_fn fn, void *ctx) {
    bnb_atomic_file af;
    bnb_status st = bnb_atomic_open(&af, path);
    if (st != BNB_OK) return st;
    bnb_sink s = {&af, NULL, who};
    st = fn(ctx, &s);
    if (st != BNB_OK) {
        bnb_atomic_abort(&af);
        return st;
    }
    return bnb_atomic_commit(&af);
}

bnb_status bnb_sink_to_memory(void **data, size_t *size, const char *who, bnb_sink_fn fn, void *ctx) {
    bnb_bytes b = {0};
    bnb_sink s = {NULL, &b, who};
    bnb_status st = fn(ctx, &s);
    if (st != BNB_OK) {
        bnb_bytes_free(&b);
        return st;
    }
    *data = b.data;
    *size = b.size;
    return BNB_OK;
}
