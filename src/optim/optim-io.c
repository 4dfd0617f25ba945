/* Optimizer state save/load: a simple checksummed binary format (documented in include/bnb.h at bnb_optimizer_save),
 * written atomically (temp file, fsync, rename). Loading validates the whole file before changing anything. */
#define _POSIX_C_SOURCE 200809L
#include "optimizer-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT_MAGIC "BNBOPTST"
#define OPT_VERSION 1u

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* A growable byte buffer (little-endian writers: the formats are defined little endian; hosts are x86/ARM LE). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n) nc *= 2;
        uint8_t *q = realloc(b->p, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }

static bnb_status put_tensor(bytes *b, const bnb_tensor *t) {
    uint64_t n = t ? bnb_nbytes(t) : 0;
    put_u64(b, n);
    if (!n || b->oom) return BNB_OK;
    size_t at = b->n;
    uint8_t zero = 0;
    for (uint64_t i = 0; i < n; i++) put(b, &zero, 1); /* reserve */
    if (b->oom) return BNB_OK;
    return bnb_tensor_get(t, b->p + at, 0, n);
}

bnb_status bnb_optimizer_save(const bnb_optimizer *opt, const char *path) {
    const char *op = "bnb_optimizer_save";
    if (!opt || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    bytes b = {0};
    put(&b, OPT_MAGIC, 8);
    put_u32(&b, OPT_VERSION);
    put_u32(&b, (uint32_t)opt->type);
    put_u32(&b, (uint32_t)opt->n_entries);
    put_u32(&b, 0);
    bnb_status s = BNB_OK;
    for (int i = 0; i < opt->n_entries && s == BNB_OK; i++) {
        const optim_entry *e = &opt->entries[i];
        uint32_t len = (uint32_t)strnlen(e->param->name, BNB_MAX_NAME);
        put_u32(&b, len);
        put(&b, e->param->name, len);
        put_u64(&b, (uint64_t)e->n);
        put_u32(&b, (uint32_t)e->bits);
        put_u32(&b, 0);
        if ((s = put_tensor(&b, e->hyper)) == BNB_OK && (s = put_tensor(&b, e->state1)) == BNB_OK &&
            (s = put_tensor(&b, e->state2)) == BNB_OK)
            s = put_tensor(&b, e->history);
    }
    if (s == BNB_OK && b.oom) s = bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    if (s == BNB_OK) put_u64(&b, fnv1a(b.p, b.n));
    if (s != BNB_OK || b.oom) {
        free(b.p);
        return s != BNB_OK ? s : bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(b.p);
        return bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = bnb_fail(BNB_ERR_IO, "%s: cannot create '%s': %s", op, tmp, strerror(errno));
    } else {
        bool ok = fwrite(b.p, 1, b.n, f) == b.n && fflush(f) == 0 && fsync(fileno(f)) == 0;
        int err = errno;
        ok = (fclose(f) == 0) && ok;
        if (!ok) s = bnb_fail(BNB_ERR_IO, "%s: writing '%s' failed: %s", op, tmp, strerror(err));
        else if (rename(tmp, path) != 0) s = bnb_fail(BNB_ERR_IO, "%s: cannot rename '%s' to '%s': %s", op, tmp, path, strerror(errno));
        if (s != BNB_OK) remove(tmp);
    }
    free(tmp);
    free(b.p);
    return s;
}

/* ------------------------------------------------------------------------------------------ load */
typedef struct {
    const uint8_t *p;
    size_t n, at;
} reader;

static bool get(reader *r, void *dst, size_t n) {
    if (n > r->n - r->at) return false;
    if (dst) memcpy(dst, r->p + r->at, n);
    r->at += n;
    return true;
}

/* A tensor blob: checks its size against t (NULL: must be empty); returns the data pointer in the file. */
static bool get_blob(reader *r, const bnb_tensor *t, const uint8_t **data, uint64_t *size) {
    if (!get(r, size, 8)) return false;
    if (*size > r->n - r->at) return false;
    *data = r->p + r->at;
    r->at += *size;
    return true;
}

bnb_status bnb_optimizer_load(bnb_optimizer *opt, const char *path) {
    const char *op = "bnb_optimizer_load";
    if (!opt || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    FILE *f = fopen(path, "rb");
    if (!f) return bnb_fail(BNB_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    uint8_t *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *q = realloc(buf, cap);
            if (!q) {
                free(buf);
                fclose(f);
                return bnb_fail(BNB_ERR_OOM, "%s: out of host memory reading '%s'", op, path);
            }
            buf = q;
        }
        size_t got = fread(buf + size, 1, cap - size, f);
        size += got;
        if (got == 0) break;
    }
    bool read_err = ferror(f);
    fclose(f);
    bnb_status s = BNB_OK;
    if (read_err) s = bnb_fail(BNB_ERR_IO, "%s: error reading '%s'", op, path);
    else if (size < 8 + 16 + 8 || memcmp(buf, OPT_MAGIC, 8) != 0)
        s = bnb_fail(BNB_ERR_IO, "%s: '%s' is not an optimizer state file (bad magic or too short: %zu bytes)", op, path, size);
    else {
        uint64_t want;
        memcpy(&want, buf + size - 8, 8);
        if (fnv1a(buf, size - 8) != want)
            s = bnb_fail(BNB_ERR_IO, "%s: '%s' is corrupt or truncated (checksum mismatch)", op, path);
    }
    reader r = {buf, size - 8, 8};
    uint32_t version = 0, type = 0, n_entries = 0, pad = 0;
    if (s == BNB_OK) {
        get(&r, &version, 4), get(&r, &type, 4), get(&r, &n_entries, 4), get(&r, &pad, 4);
        if (version != OPT_VERSION) s = bnb_fail(BNB_ERR_IO, "%s: '%s' has version %u (want %u)", op, path, version, OPT_VERSION);
        else if (type != (uint32_t)opt->type)
            s = bnb_fail(BNB_ERR_IO, "%s: '%s' holds %s states, the optimizer is %s", op, path,
                         bnb_optim_type_name((bnb_optim_type)type), bnb_optim_type_name(opt->type));
    }
    /* pass 0 validates everything, pass 1 writes */
    for (int pass = 0; pass < 2 && s == BNB_OK; pass++) {
        r.at = 8 + 16;
        for (uint32_t i = 0; i < n_entries && s == BNB_OK; i++) {
            uint32_t len = 0, bits = 0;
            uint64_t n = 0;
            char name[BNB_MAX_NAME + 1] = {0};
            if (!get(&r, &len, 4) || len > BNB_MAX_NAME || !get(&r, name, len) || !get(&r, &n, 8) || !get(&r, &bits, 4) ||
                !get(&r, &pad, 4)) {
                s = bnb_fail(BNB_ERR_IO, "%s: '%s': entry %u is truncated", op, path, i);
                break;
            }
            optim_entry *e = NULL;
            for (int k = 0; k < opt->n_entries && !e; k++)
                if (len > 0 && !strncmp(opt->entries[k].param->name, name, BNB_MAX_NAME) &&
                    strlen(opt->entries[k].param->name) == len)
                    e = &opt->entries[k];
            if (!e) {
                s = bnb_fail(BNB_ERR_INVALID_ARG, "%s: '%s': parameter '%s' has no states in this optimizer (run "
                             "bnb_optimizer_step on a graph with it first)", op, path, name);
                break;
            }
            if ((int64_t)n != e->n || (int)bits != e->bits) {
                s = bnb_fail(BNB_ERR_IO, "%s: '%s': parameter '%s' has %llu elements with %u-bit states in the file, "
                             "%lld with %d-bit states here", op, path, name, (unsigned long long)n, bits,
                             (long long)e->n, e->bits);
                break;
            }
            bnb_tensor *ts[4] = {e->hyper, e->state1, e->state2, e->history};
            for (int k = 0; k < 4 && s == BNB_OK; k++) {
                const uint8_t *data;
                uint64_t sz;
                if (!get_blob(&r, ts[k], &data, &sz)) {
                    s = bnb_fail(BNB_ERR_IO, "%s: '%s': entry '%s' is truncated", op, path, name);
                } else if (sz != (ts[k] ? bnb_nbytes(ts[k]) : 0)) {
                    s = bnb_fail(BNB_ERR_IO, "%s: '%s': entry '%s' part %d has %llu bytes, want %zu", op, path, name, k,
                                 (unsigned long long)sz, ts[k] ? bnb_nbytes(ts[k]) : (size_t)0);
                } else if (pass == 1 && sz) {
                    s = bnb_tensor_set(ts[k], data, 0, sz);
                }
            }
            if (pass == 1 && s == BNB_OK) s = bnb_optim_write_hyper(e); /* this optimizer's config wins; step from file */
        }
        if (s == BNB_OK && pass == 0 && r.at != r.n)
            s = bnb_fail(BNB_ERR_IO, "%s: '%s' has %zu unexpected trailing bytes", op, path, r.n - r.at);
    }
    free(buf);
    return s;
}
