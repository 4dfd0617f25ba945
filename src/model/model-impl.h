/* Internal declarations of the model layer's file code (src/model/). Not installed. */
#ifndef BNB_MODEL_IMPL_H
#define BNB_MODEL_IMPL_H

#include "bnb-impl.h"
#include "bnb-model.h"

#include <stdio.h>

#include "io-util.h" /* files: mapping, whole reads, atomic writes, byte buffers */

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
