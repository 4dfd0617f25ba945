/* Internal declarations of the model layer's file code (src/model/). Not installed. */
#ifndef BNB_MODEL_IMPL_H
#define BNB_MODEL_IMPL_H

#include "bnb-impl.h"
#include "bnb-model.h"

#include <stdio.h>

/* ---------------------------------------------------------------- files (file-util.c) */
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

/* ---------------------------------------------------------------- growable byte buffer (file-util.c) */
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

/* checked arithmetic */
static inline bool bnb_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool bnb_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* ---------------------------------------------------------------- ggml block formats (gguf.c) */
/* Bytes of n elements of a GGUF tensor type (0 for unknown types, or n not a multiple of the block). */
size_t bnb_ggml_type_nbytes(uint32_t ggml_type, uint64_t n);
/* Dequantize n elements of a GGUF type (F32/F16/BF16/Q8_0/Q4_0/Q4_1 and the plain integer types) to F32. */
bnb_status bnb_ggml_to_f32(uint32_t ggml_type, const void *src, float *dst, int64_t n);

/* ---------------------------------------------------------------- UTF-8 helpers (tokenizer-text.c) */
/* Decode one code point at s[0..n): returns its byte length (>= 1); invalid sequences give *cp = -1 and length 1. */
int bnb_utf8_decode(const uint8_t *s, size_t n, int32_t *cp);
/* Encode cp (valid scalar value) into out[4]; returns the length. */
int bnb_utf8_encode(int32_t cp, char out[4]);

#endif
