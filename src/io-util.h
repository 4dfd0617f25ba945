/* File and byte-buffer helpers shared by every writer and reader of the library (model files, optimizer states,
 * trainer checkpoints). Internal; not installed. */
#ifndef BNB_IO_UTIL_H
#define BNB_IO_UTIL_H

#include "bnb-impl.h"

#include <stdio.h>

/* ---------------------------------------------------------------- files (io-util.c) */
/* A whole file in memory: mmap'ed read-only when possible, else read into a heap buffer. */
typedef struct bnb_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    void *base;          /* mapping or heap block to release */
    size_t map_size;
    bool is_mmap;
} bnb_mapped_file;
bnb_status bnb_file_map(const char *path, bnb_mapped_file *out);
void bnb_file_unmap(bnb_mapped_file *f);
/* Read a whole file (at most max_size bytes, else BNB_ERR_IO) into a malloc'ed, NUL-terminated buffer. */
bnb_status bnb_file_read_all(const char *path, size_t max_size, char **out, size_t *size);

/* Atomic write: data goes to "<path>.tmp.<pid>", is flushed and fsynced, then renamed over path (and the directory
 * fsynced). On any error the temp file is removed and path is left untouched. */
typedef struct bnb_atomic_file {
    FILE *f;
    char *path;
    char *tmp_path;
    bool failed;
} bnb_atomic_file;
bnb_status bnb_atomic_open(bnb_atomic_file *af, const char *path);
bnb_status bnb_atomic_write(bnb_atomic_file *af, const void *data, size_t size); /* remembers failure */
bnb_status bnb_atomic_pad(bnb_atomic_file *af, size_t n);                        /* n zero bytes */
bnb_status bnb_atomic_commit(bnb_atomic_file *af);                               /* fsync + rename; frees */
void bnb_atomic_abort(bnb_atomic_file *af);                                      /* remove temp; frees */

/* ---------------------------------------------------------------- growable byte buffer (io-util.c) */
typedef struct bnb_bytes {
    uint8_t *data;
    size_t size, cap;
    bool oom;
} bnb_bytes;
void bnb_bytes_put(bnb_bytes *b, const void *p, size_t n);
void bnb_bytes_put_u8(bnb_bytes *b, uint8_t v);
void bnb_bytes_put_u32(bnb_bytes *b, uint32_t v);
void bnb_bytes_put_u64(bnb_bytes *b, uint64_t v);
void bnb_bytes_put_str(bnb_bytes *b, const char *s); /* no terminator */
void bnb_bytes_free(bnb_bytes *b);

/* Reserve n bytes at the end and return them (NULL once the buffer is out of memory). */
void *bnb_bytes_reserve(bnb_bytes *b, size_t n);
/* Write size bytes to path atomically (bnb_atomic_open + write + commit). */
bnb_status bnb_atomic_write_file(const char *path, const void *data, size_t size);
/* Where a file writer's bytes go: an atomic file or a memory buffer. Writers produce their bytes once, through
 * bnb_sink_write, and bnb_sink_to_file / bnb_sink_to_memory run them against either target. */
typedef struct bnb_sink {
    bnb_atomic_file *af; /* or */
    bnb_bytes *mem;
    const char *who;     /* for error messages */
} bnb_sink;
bnb_status bnb_sink_write(bnb_sink *s, const void *p, size_t n);
bnb_status bnb_sink_zeros(bnb_sink *s, size_t n);
/* nbytes of tensor t (wherever it lives), streamed through *chunk (allocated on first use, freed by the caller);
 * fails when t no longer has nbytes of data (changed since a writer recorded it). */
bnb_status bnb_sink_tensor(bnb_sink *s, const bnb_tensor *t, size_t nbytes, const char *name, uint8_t **chunk);
typedef bnb_status (*bnb_sink_fn)(void *ctx, bnb_sink *s);
bnb_status bnb_sink_to_file(const char *path, const char *who, bnb_sink_fn fn, void *ctx);
bnb_status bnb_sink_to_memory(void **data, size_t *size, const char *who, bnb_sink_fn fn, void *ctx);

/* FNV-1a 64-bit hash (file checksums). */
uint64_t bnb_fnv1a64(const void *data, size_t n);

#endif
