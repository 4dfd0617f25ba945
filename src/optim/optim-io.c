/* Optimizer state save/load: a simple checksummed binary format (documented in include/bnb.h at bnb_optimizer_save),
 * written atomically (temp file, fsync, rename). Loading validates the whole file before changing anything. */
#define _POSIX_C_SOURCE 200809L
#include "optimizer-priv.h"
#include "../io-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT_MAGIC "BNBOPTST"
#define OPT_VERSION 1u

static bnb_status put_tensor(bnb_bytes *b, const bnb_tensor *t) {
    uint64_t n = t ? bnb_nbytes(t) : 0;
    bnb_bytes_put_u64(b, n);
    if (!n) return BNB_OK;
    void *dst = bnb_bytes_reserve(b, n);
    return dst ? bnb_tensor_get(t, dst, 0, n) : BNB_OK; /* out of memory: reported by the caller */
}

bnb_status bnb_optimizer_save(const bnb_optimizer *opt, const char *path) {
    const char *op = "bnb_optimizer_save";
    if (!opt || !path) return bnb_fail(BNB_ERR_INVALID_ARG, "%s: NULL argument", op);
    bnb_bytes b = {0};
    bnb_bytes_put(&b, OPT_MAGIC, 8);
    bnb_bytes_put_u32(&b, OPT_VERSION);
    bnb_bytes_put_u32(&b, (uint32_t)opt->type);
    bnb_bytes_put_u32(&b, (uint32_t)opt->n_entries);
    bnb_bytes_put_u32(&b, 0);
    bnb_status s = BNB_OK;
    for (int i = 0; i < opt->n_entries && s == BNB_OK; i++) {
        const optim_entry *e = &opt->entries[i];
        uint32_t len = (uint32_t)strnlen(e->param->name, BNB_MAX_NAME);
        bnb_bytes_put_u32(&b, len);
        bnb_bytes_put(&b, e->param->name, len);
        bnb_bytes_put_u64(&b, (uint64_t)e->n);
        bnb_bytes_put_u32(&b, (uint32_t)e->bits);
        bnb_bytes_put_u32(&b, 0);
        if ((s = put_tensor(&b, e->hyper)) == BNB_OK && (s = put_tensor(&b, e->state1)) == BNB_OK &&
            (s = put_tensor(&b, e->state2)) == BNB_OK)
            s = put_tensor(&b, e->history);
    }
    if (s == BNB_OK) bnb_bytes_put_u64(&b, bnb_fnv1a64(b.data, b.size));
    if (s == BNB_OK && b.oom) s = bnb_fail(BNB_ERR_OOM, "%s: out of host memory", op);
    if (s == BNB_OK) s = bnb_atomic_write_file(path, b.data, b.size);
    bnb_bytes_free(&b);
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
    uint8_t *buf = NULL;
    size_t size = 0;
    bnb_status s = bnb_file_read_all(path, (size_t)1 << 44, (char **)&buf, &size);
    if (s != BNB_OK) return s;
    if (size < 8 + 16 + 8 || memcmp(buf, OPT_MAGIC, 8) != 0)
        s = bnb_fail(BNB_ERR_IO, "%s: '%s' is not an optimizer state file (bad magic or too short: %zu bytes)", op, path, size);
    else {
        uint64_t want;
        memcpy(&want, buf + size - 8, 8);
        if (bnb_fnv1a64(buf, size - 8) != want)
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
