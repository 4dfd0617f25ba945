/* bnb model layer: file formats (GGUF, safetensors, JSON, Hugging Face config.json), tokenizers, and (later) the
 * transformer model and generation. Built only on bnb.h.
 *
 * Conventions of the file readers:
 *  - A reader either maps a file (bnb_*_open) or parses a caller's memory buffer (bnb_*_parse_memory; the buffer
 *    must outlive the reader: tensor data pointers point into it). `name` (the file name) appears in every error.
 *  - Corrupt, truncated or hostile input never crashes and never allocates more than a small multiple of the input
 *    size: it fails with BNB_ERR_IO and a message naming the file and the field ("model.gguf: tensor 3
 *    (blk.0.attn_q.weight): data offset 123456 + 4096 bytes is past the end of the file (100000 bytes)").
 *  - Writers write to "<path>.tmp.<pid>", fsync, and rename over path: a crash never leaves a half-written file.
 */
#ifndef BNB_MODEL_H
#define BNB_MODEL_H

#include "bnb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================================== JSON
 * A small strict JSON (RFC 8259) parser: no comments, no trailing commas, no leading zeros, strings must be valid
 * UTF-8 without raw control characters, \u escapes (surrogate pairs combined; lone surrogates rejected), nesting at
 * most BNB_JSON_MAX_DEPTH. Strings are unescaped, NUL-terminated copies (they may contain \u0000: use the length). */
#define BNB_JSON_MAX_DEPTH 128

typedef enum bnb_json_type {
    BNB_JSON_NULL = 0,
    BNB_JSON_BOOL,
    BNB_JSON_NUMBER,
    BNB_JSON_STRING,
    BNB_JSON_ARRAY,
    BNB_JSON_OBJECT,
} bnb_json_type;

typedef struct bnb_json bnb_json;             /* a parsed document (owns all values) */
typedef struct bnb_json_value bnb_json_value; /* one value inside it */

BNB_API bnb_json *bnb_json_parse(const char *text, size_t len, const char *name);
BNB_API void bnb_json_free(bnb_json *doc);
BNB_API const bnb_json_value *bnb_json_root(const bnb_json *doc);
BNB_API bnb_json_type bnb_json_type_of(const bnb_json_value *v); /* BNB_JSON_NULL for v == NULL */
BNB_API size_t bnb_json_len(const bnb_json_value *v);            /* elements of an array / members of an object */
BNB_API const bnb_json_value *bnb_json_at(const bnb_json_value *v, size_t i);    /* array element / member value */
BNB_API const char *bnb_json_key_at(const bnb_json_value *v, size_t i);          /* member key (objects) */
BNB_API const bnb_json_value *bnb_json_get(const bnb_json_value *obj, const char *key); /* first match or NULL */
BNB_API double bnb_json_number(const bnb_json_value *v);        /* 0 unless a number */
BNB_API bool bnb_json_bool(const bnb_json_value *v);            /* false unless true */
BNB_API const char *bnb_json_string(const bnb_json_value *v, size_t *len); /* NULL unless a string */
/* Whole number that fits int64 exactly (a JSON number without fraction); false otherwise. */
BNB_API bool bnb_json_int(const bnb_json_value *v, int64_t *out);

/* ============================================================================================================== GGUF
 * GGUF v3 (llama.cpp's format): "GGUF", u32 version 3, u64 n_tensors, u64 n_kv, the metadata key/values, the tensor
 * infos (name, n_dims, ne[] (ne[0] fastest, as bnb), u32 type, u64 offset), padding to the alignment
 * (general.alignment, default 32), then the tensor data (each tensor at its offset from the data start, aligned).
 *
 * Tensor types read: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (Q*: dequantized to F32 at load; raw bytes stay available),
 * the integer types I8, I16, I32, I64, F64; and bnb's own types, stored with type ids BNB_GGUF_TYPE_BNB_BASE +
 * bnb_type (for every bnb type that has no ggml id: U8, Q8_BLOCK, Q4_NF4, Q4_FP4, I8_ROW, OUTLIERS, OPT8). A tensor
 * of a quantized bnb type holds its whole storage (bnb.h: codes, scales, map, outliers) as its data, with its
 * bnb_quant_params in the metadata key "bnb.quant.<tensor name>": a FLOAT32 array [block, map, nested, threshold].
 * bnb checkpoints (weights in any type, optimizer states) are GGUF files of these types. */
typedef enum bnb_gguf_value_type {
    BNB_GGUF_UINT8 = 0,
    BNB_GGUF_INT8 = 1,
    BNB_GGUF_UINT16 = 2,
    BNB_GGUF_INT16 = 3,
    BNB_GGUF_UINT32 = 4,
    BNB_GGUF_INT32 = 5,
    BNB_GGUF_FLOAT32 = 6,
    BNB_GGUF_BOOL = 7,
    BNB_GGUF_STRING = 8,
    BNB_GGUF_ARRAY = 9,
    BNB_GGUF_UINT64 = 10,
    BNB_GGUF_INT64 = 11,
    BNB_GGUF_FLOAT64 = 12,
} bnb_gguf_value_type;

/* ggml tensor type ids (the subset bnb reads), and bnb's own. */
enum {
    BNB_GGML_TYPE_F32 = 0,
    BNB_GGML_TYPE_F16 = 1,
    BNB_GGML_TYPE_Q4_0 = 2, /* blocks of 32: f16 d, 16 bytes; x_j = (lo nibble of byte j - 8) d for j < 16, hi for j >= 16 */
    BNB_GGML_TYPE_Q4_1 = 3, /* blocks of 32: f16 d, f16 m, 16 bytes; x = q d + m (nibbles as Q4_0, unsigned) */
    BNB_GGML_TYPE_Q8_0 = 8, /* blocks of 32: f16 d, 32 int8; x = q d */
    BNB_GGML_TYPE_I8 = 24,
    BNB_GGML_TYPE_I16 = 25,
    BNB_GGML_TYPE_I32 = 26,
    BNB_GGML_TYPE_I64 = 27,
    BNB_GGML_TYPE_F64 = 28,
    BNB_GGML_TYPE_BF16 = 30,
    BNB_GGUF_TYPE_BNB_BASE = 1000, /* 1000 + bnb_type: bnb's types without a ggml id */
};
#define BNB_GGUF_DEFAULT_ALIGNMENT 32

typedef struct bnb_gguf bnb_gguf;

/* One tensor of a GGUF file. */
typedef struct bnb_gguf_tensor_info {
    const char *name;
    int n_dims;
    int64_t ne[BNB_MAX_DIMS]; /* unused dims are 1 */
    uint32_t ggml_type;       /* the type id in the file */
    uint64_t offset;          /* from the start of the data section */
    size_t nbytes;            /* bytes of the data */
    const void *data;         /* the raw bytes (inside the mapped file / the caller's buffer) */
    bnb_type type;            /* the bnb type it loads as: its own for F32/F16/BF16/I8/I32 and bnb types, F32 for the
                                 ggml block types (dequantized) and I16/I64/F64 (converted) */
    bnb_quant_params quant;   /* bnb quantized types */
} bnb_gguf_tensor_info;

BNB_API bnb_gguf *bnb_gguf_open(const char *path);
BNB_API bnb_gguf *bnb_gguf_parse_memory(const void *data, size_t size, const char *name);
BNB_API void bnb_gguf_free(bnb_gguf *g);
BNB_API uint32_t bnb_gguf_version(const bnb_gguf *g);
BNB_API size_t bnb_gguf_alignment(const bnb_gguf *g);
BNB_API size_t bnb_gguf_data_offset(const bnb_gguf *g); /* file offset of the tensor data section */

/* metadata */
BNB_API int64_t bnb_gguf_n_kv(const bnb_gguf *g);
BNB_API int64_t bnb_gguf_find_key(const bnb_gguf *g, const char *key); /* index or -1 */
BNB_API const char *bnb_gguf_key(const bnb_gguf *g, int64_t i);
BNB_API bnb_gguf_value_type bnb_gguf_kv_type(const bnb_gguf *g, int64_t i);
/* Scalars by key, converting between numeric types where the value fits (bool counts as integer 0/1); a missing
 * key or a value of another kind: BNB_ERR_IO naming the key (nothing is set in the message when `required` is
 * false and the key is missing: the call then returns BNB_ERR_INVALID_ARG quietly). */
BNB_API bnb_status bnb_gguf_get_int(const bnb_gguf *g, const char *key, bool required, int64_t *out);
BNB_API bnb_status bnb_gguf_get_float(const bnb_gguf *g, const char *key, bool required, double *out);
BNB_API bnb_status bnb_gguf_get_bool(const bnb_gguf *g, const char *key, bool required, bool *out);
/* String value (NUL-terminated copy owned by g; *len may be NULL) or NULL. */
BNB_API const char *bnb_gguf_get_str(const bnb_gguf *g, const char *key, size_t *len);
/* Arrays: element type and count of KV i (count 0 / type -1 when KV i is not an array). */
BNB_API bnb_gguf_value_type bnb_gguf_arr_type(const bnb_gguf *g, int64_t i);
BNB_API int64_t bnb_gguf_arr_n(const bnb_gguf *g, int64_t i);
BNB_API const char *bnb_gguf_arr_str(const bnb_gguf *g, int64_t i, int64_t j, size_t *len); /* string arrays */
/* Numeric array element j converted to double / int64 (false when not numeric or out of range). */
BNB_API bool bnb_gguf_arr_float(const bnb_gguf *g, int64_t i, int64_t j, double *out);
BNB_API bool bnb_gguf_arr_int(const bnb_gguf *g, int64_t i, int64_t j, int64_t *out);

/* tensors */
BNB_API int64_t bnb_gguf_n_tensors(const bnb_gguf *g);
BNB_API int64_t bnb_gguf_find_tensor(const bnb_gguf *g, const char *name); /* index or -1 */
BNB_API bnb_status bnb_gguf_tensor_info_get(const bnb_gguf *g, int64_t i, bnb_gguf_tensor_info *info);
/* Dequantize / convert tensor i to F32 (n = its element count). bnb quantized types dequantize too. */
BNB_API bnb_status bnb_gguf_tensor_to_f32(const bnb_gguf *g, int64_t i, float *dst, int64_t n);
/* New tensor in ctx of tensor i's bnb type (info.type), shape and quant params, named like it; no data. */
BNB_API bnb_tensor *bnb_gguf_tensor_new(const bnb_gguf *g, int64_t i, bnb_context *ctx);
/* Fill an allocated tensor made by bnb_gguf_tensor_new (any backend) with tensor i's data. */
BNB_API bnb_status bnb_gguf_tensor_load(const bnb_gguf *g, int64_t i, bnb_tensor *t);

/* Writer. Keys and tensors are written in the order added; setting a key again replaces its value. */
typedef struct bnb_gguf_writer bnb_gguf_writer;
BNB_API bnb_gguf_writer *bnb_gguf_writer_new(void);
BNB_API void bnb_gguf_writer_free(bnb_gguf_writer *w);
BNB_API bnb_status bnb_gguf_writer_set_alignment(bnb_gguf_writer *w, uint32_t alignment); /* power of two */
BNB_API bnb_status bnb_gguf_set_u32(bnb_gguf_writer *w, const char *key, uint32_t v);
BNB_API bnb_status bnb_gguf_set_i32(bnb_gguf_writer *w, const char *key, int32_t v);
BNB_API bnb_status bnb_gguf_set_u64(bnb_gguf_writer *w, const char *key, uint64_t v);
BNB_API bnb_status bnb_gguf_set_i64(bnb_gguf_writer *w, const char *key, int64_t v);
BNB_API bnb_status bnb_gguf_set_f32(bnb_gguf_writer *w, const char *key, float v);
BNB_API bnb_status bnb_gguf_set_f64(bnb_gguf_writer *w, const char *key, double v);
BNB_API bnb_status bnb_gguf_set_bool(bnb_gguf_writer *w, const char *key, bool v);
BNB_API bnb_status bnb_gguf_set_str(bnb_gguf_writer *w, const char *key, const char *v);
/* Array of n numeric/bool elements of `type` (host little-endian layout) */
BNB_API bnb_status bnb_gguf_set_arr(bnb_gguf_writer *w, const char *key, bnb_gguf_value_type type, const void *data,
                                    int64_t n);
BNB_API bnb_status bnb_gguf_set_arr_str(bnb_gguf_writer *w, const char *key, const char *const *v, int64_t n);
/* Add a tensor: its name, shape, bnb type and quant params; the data is read (bnb_tensor_get, any backend) when the
 * file is written, so t must stay alive and allocated until then. Names must be unique and non-empty. */
BNB_API bnb_status bnb_gguf_writer_add_tensor(bnb_gguf_writer *w, const bnb_tensor *t);
/* Add raw data of a ggml/bnb type id (copied now); nbytes must match the type and shape. */
BNB_API bnb_status bnb_gguf_writer_add_raw(bnb_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims,
                                           const int64_t *ne, const void *data, size_t nbytes);
BNB_API bnb_status bnb_gguf_writer_write(bnb_gguf_writer *w, const char *path); /* atomic */
/* The whole file into a malloc'ed buffer (free with free()). */
BNB_API bnb_status bnb_gguf_writer_write_memory(bnb_gguf_writer *w, void **data, size_t *size);

/* ============================================================================================================== safetensors
 * u64 little-endian header length N, N bytes of JSON {"name": {"dtype": "F32", "shape": [rows, cols],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}, then the data (offsets relative to its start).
 * Shapes are row-major (outermost first): bnb's ne[] is the reverse. dtypes read: F64 F32 F16 BF16 I64 I32 I16 I8
 * U8 BOOL. A bitsandbytes int8 checkpoint stores per linear layer `<prefix>.weight` (I8 [out, in]) and
 * `<prefix>.SCB` (F32 [out]): see bnb_safetensors_int8_linear. */
typedef enum bnb_st_dtype {
    BNB_ST_F64 = 0, BNB_ST_F32, BNB_ST_F16, BNB_ST_BF16, BNB_ST_I64, BNB_ST_I32, BNB_ST_I16, BNB_ST_I8, BNB_ST_U8,
    BNB_ST_BOOL, BNB_ST_COUNT
} bnb_st_dtype;
#define BNB_ST_MAX_DIMS 8

typedef struct bnb_safetensors bnb_safetensors;

typedef struct bnb_st_tensor_info {
    const char *name;
    bnb_st_dtype dtype;
    int n_dims;                    /* 0 for a scalar */
    int64_t shape[BNB_ST_MAX_DIMS]; /* as in the file (row-major) */
    int64_t ne[BNB_MAX_DIMS];      /* bnb order (reversed), unused dims 1; only when n_dims <= 4 */
    int64_t n_elements;
    const void *data;
    size_t nbytes;
    bnb_type type;                 /* the bnb type it loads as: F32/F16/BF16/I8/U8/I32 as is, the others as F32 */
} bnb_st_tensor_info;

BNB_API bnb_safetensors *bnb_safetensors_open(const char *path);
BNB_API bnb_safetensors *bnb_safetensors_parse_memory(const void *data, size_t size, const char *name);
BNB_API void bnb_safetensors_free(bnb_safetensors *st);
BNB_API const char *bnb_st_dtype_name(bnb_st_dtype d);
BNB_API int64_t bnb_safetensors_n_tensors(const bnb_safetensors *st); /* sorted by data offset */
BNB_API int64_t bnb_safetensors_find(const bnb_safetensors *st, const char *name);
BNB_API bnb_status bnb_safetensors_info(const bnb_safetensors *st, int64_t i, bnb_st_tensor_info *info);
BNB_API const char *bnb_safetensors_metadata(const bnb_safetensors *st, const char *key); /* __metadata__ value */
BNB_API bnb_status bnb_safetensors_to_f32(const bnb_safetensors *st, int64_t i, float *dst, int64_t n);
/* New tensor (info.type, shape, name) in ctx without data (n_dims must be <= 4), and loading into it. */
BNB_API bnb_tensor *bnb_safetensors_tensor_new(const bnb_safetensors *st, int64_t i, bnb_context *ctx);
BNB_API bnb_status bnb_safetensors_tensor_load(const bnb_safetensors *st, int64_t i, bnb_tensor *t);
/* bitsandbytes int8 linear layer `prefix`: finds "<prefix>.weight" (I8 [out, in]) and "<prefix>.SCB" (F32 [out])
 * and checks that they fit; *weight / *scb get their indices. BNB_ERR_IO naming the tensor otherwise. */
BNB_API bnb_status bnb_safetensors_int8_linear(const bnb_safetensors *st, const char *prefix, int64_t *weight,
                                               int64_t *scb, int64_t *in, int64_t *out);

typedef struct bnb_safetensors_writer bnb_safetensors_writer;
BNB_API bnb_safetensors_writer *bnb_safetensors_writer_new(void);
BNB_API void bnb_safetensors_writer_free(bnb_safetensors_writer *w);
BNB_API bnb_status bnb_safetensors_writer_set_metadata(bnb_safetensors_writer *w, const char *key, const char *value);
/* Plain-typed tensor (F32/F16/BF16/I8/U8/I32), read when written (keep it alive and allocated). */
BNB_API bnb_status bnb_safetensors_writer_add_tensor(bnb_safetensors_writer *w, const bnb_tensor *t);
/* Raw data copied now; shape row-major (file order). */
BNB_API bnb_status bnb_safetensors_writer_add_raw(bnb_safetensors_writer *w, const char *name, bnb_st_dtype dtype,
                                                  int n_dims, const int64_t *shape, const void *data, size_t nbytes);
BNB_API bnb_status bnb_safetensors_writer_write(bnb_safetensors_writer *w, const char *path); /* atomic */
BNB_API bnb_status bnb_safetensors_writer_write_memory(bnb_safetensors_writer *w, void **data, size_t *size);

/* Hugging Face config.json, Llama-family fields. Missing optional fields keep the defaults noted. */
typedef struct bnb_hf_config {
    char model_type[32];            /* "llama", "mistral", ... ("" if absent) */
    char architecture[64];          /* architectures[0] ("" if absent) */
    int64_t hidden_size;            /* required */
    int64_t intermediate_size;      /* required */
    int64_t num_hidden_layers;      /* required */
    int64_t num_attention_heads;    /* required */
    int64_t num_key_value_heads;    /* default num_attention_heads */
    int64_t head_dim;               /* default hidden_size / num_attention_heads */
    int64_t vocab_size;             /* required */
    int64_t max_position_embeddings;/* default 2048 */
    double rms_norm_eps;            /* default 1e-6 */
    double rope_theta;              /* default 10000 */
    bool tie_word_embeddings;       /* default false */
    int64_t bos_token_id;           /* -1 if absent (first element of a list) */
    int64_t eos_token_id;           /* -1 if absent (first element of a list) */
    char torch_dtype[16];
} bnb_hf_config;
BNB_API bnb_status bnb_hf_config_parse(const char *json, size_t len, const char *name, bnb_hf_config *cfg);
BNB_API bnb_status bnb_hf_config_load(const char *path, bnb_hf_config *cfg);

/* ============================================================================================================== tokenizers
 * BYTE: 256 byte tokens (id = byte value), optional BOS 256 and EOS 257 (for from-scratch training).
 * BPE:  byte-level BPE (GPT-2 / Llama-3 / SmolLM): bytes mapped to printable code points (GPT-2's bytes_to_unicode),
 *       pre-tokenized by a hand-written scanner approximating the GPT-2 regex (contractions, ' ?letters', ' ?digits',
 *       ' ?punctuation', whitespace runs; Llama-3 variant: digits in groups of <= 3, one leading non-letter before
 *       letters; SmolLM/StarCoder variant: every digit alone), then merges applied by rank. Unicode classes are
 *       approximated by code-point ranges (letters, digits, punctuation/symbols, spaces).
 * SPM:  SentencePiece-style BPE (Llama-2): spaces as U+2581 "▁" (plus one at the start when add_space_prefix),
 *       adjacent pieces merged by score (GGUF) or merge rank (tokenizer.json), pieces missing from the vocabulary
 *       fall back to byte tokens <0xXX>.
 * Special tokens (GGUF token types CONTROL/USER_DEFINED, tokenizer.json added_tokens) are recognized in the text by
 * encode when parse_special is true; otherwise their text is tokenized like any other. */
typedef enum bnb_tokenizer_kind {
    BNB_TOKENIZER_BYTE = 0,
    BNB_TOKENIZER_BPE,
    BNB_TOKENIZER_SPM,
} bnb_tokenizer_kind;

typedef enum bnb_pretok {
    BNB_PRETOK_GPT2 = 0,    /* GPT-2 regex */
    BNB_PRETOK_LLAMA3,      /* Llama-3 regex */
    BNB_PRETOK_GPT2_DIGITS, /* every digit its own piece, then GPT-2 (SmolLM, StarCoder) */
} bnb_pretok;

typedef struct bnb_tokenizer bnb_tokenizer;

/* Byte tokenizer; with_bos_eos adds BOS = 256 and EOS = 257. */
BNB_API bnb_tokenizer *bnb_tokenizer_new_byte(bool with_bos_eos);
/* From a GGUF file's tokenizer.ggml.* keys (model "gpt2" -> BPE, "llama" -> SPM). */
BNB_API bnb_tokenizer *bnb_tokenizer_from_gguf(const bnb_gguf *g);
/* From a Hugging Face tokenizer.json (model.type "BPE"; byte_fallback or a "▁" normalizer/decoder -> SPM). */
BNB_API bnb_tokenizer *bnb_tokenizer_from_json(const char *text, size_t len, const char *name);
BNB_API bnb_tokenizer *bnb_tokenizer_load_json(const char *path);
BNB_API void bnb_tokenizer_free(bnb_tokenizer *tok);

BNB_API bnb_tokenizer_kind bnb_tokenizer_get_kind(const bnb_tokenizer *tok);
BNB_API bnb_pretok bnb_tokenizer_get_pretok(const bnb_tokenizer *tok);
BNB_API int32_t bnb_tokenizer_n_vocab(const bnb_tokenizer *tok);
BNB_API int32_t bnb_tokenizer_bos(const bnb_tokenizer *tok); /* -1 if none */
BNB_API int32_t bnb_tokenizer_eos(const bnb_tokenizer *tok); /* -1 if none */
BNB_API bool bnb_tokenizer_add_bos(const bnb_tokenizer *tok); /* whether the model expects BOS (file's default) */
/* Override BOS/EOS (-1: none) and whether BOS is added by default (e.g. from config.json / generation_config). */
BNB_API bnb_status bnb_tokenizer_set_special(bnb_tokenizer *tok, int32_t bos, int32_t eos, bool add_bos);
BNB_API bool bnb_tokenizer_is_special(const bnb_tokenizer *tok, int32_t id);
/* The token's text as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>"), NULL for an invalid id. */
BNB_API const char *bnb_tokenizer_token_text(const bnb_tokenizer *tok, int32_t id);
BNB_API int32_t bnb_tokenizer_find(const bnb_tokenizer *tok, const char *text); /* exact vocabulary lookup, -1 */

/* Encode len bytes of text. Writes at most cap ids and returns the number of ids the whole text needs (so a second
 * call with a larger buffer gets them all), or -1 on error (bnb_last_error). add_bos prepends BOS (if any). */
BNB_API int64_t bnb_tokenizer_encode(const bnb_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                                     int64_t cap, bool add_bos, bool parse_special);
/* Decode n ids into out (at most cap bytes, not NUL-terminated unless room is left: then a NUL follows). Returns the
 * byte length of the whole decoded text or -1 (invalid id). skip_special drops special tokens (BOS, EOS...);
 * otherwise their text is written. SPM: the space added in front by add_space_prefix is removed. */
BNB_API int64_t bnb_tokenizer_decode(const bnb_tokenizer *tok, const int32_t *ids, int64_t n, char *out, size_t cap,
                                     bool skip_special);
/* Bytes of one token as it appears in decoded text (streaming output; a UTF-8 character may span tokens).
 * Returns the length (may exceed cap: then out holds the first cap bytes) or -1. */
BNB_API int64_t bnb_tokenizer_token_bytes(const bnb_tokenizer *tok, int32_t id, char *out, size_t cap);

/* ============================================================================================================== model
 * A decoder-only Llama-style transformer built from bnb ops: token embedding, per layer RMSNorm -> grouped-query
 * attention with RoPE and a KV cache -> residual, RMSNorm -> SwiGLU MLP -> residual; final RMSNorm and output head
 * (its own weight or tied to the embedding). The same graph runs on the CPU and CUDA backends.
 *
 * Weights are named as in llama.cpp's GGUF files: token_embd.weight, blk.N.attn_norm.weight, blk.N.attn_q.weight,
 * blk.N.attn_k.weight, blk.N.attn_v.weight, blk.N.attn_output.weight, blk.N.ffn_norm.weight, blk.N.ffn_gate.weight,
 * blk.N.ffn_up.weight, blk.N.ffn_down.weight, output_norm.weight, output.weight (absent when tied). A linear weight
 * has bnb shape [in, out] (out rows of in values). Hugging Face names (model.layers.N.self_attn.q_proj.weight ...,
 * lm_head.weight) are mapped onto these when loading safetensors.
 * RoPE: GGUF llama files hold q/k rows permuted for the NORMAL (interleaved pair) rotation; Hugging Face checkpoints
 * use the NEOX (rotate_half) one. cfg.rope_mode records which the loaded weights expect. */
typedef enum bnb_weight_kind {
    BNB_WEIGHTS_F32 = 0,
    BNB_WEIGHTS_F16,
    BNB_WEIGHTS_INT8, /* LLM.int8: I8_ROW linear weights, bnb_matmul_int8 with the outlier threshold */
    BNB_WEIGHTS_NF4,  /* Q4_NF4 linear weights (block 64), dequantized inside mul_mat */
} bnb_weight_kind;
BNB_API const char *bnb_weight_kind_name(bnb_weight_kind k);                  /* "f32", "f16", "int8", "nf4" */
BNB_API bnb_status bnb_weight_kind_parse(const char *s, bnb_weight_kind *out); /* the names above */

typedef struct bnb_model_config {
    int64_t n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim;
    int64_t n_ctx_train;  /* context length the model was trained with */
    float rms_eps;        /* RMSNorm epsilon */
    float rope_base;      /* RoPE theta */
    int rope_mode;        /* BNB_ROPE_NORMAL or BNB_ROPE_NEOX */
    bool tied_output;     /* output head = token embedding */
} bnb_model_config;

typedef struct bnb_model_params {
    bnb_weight_kind weights; /* precision of the linear weights at load (default f32) */
    float int8_threshold;    /* LLM.int8 outlier threshold (default 6.0; 0 = no decomposition) */
    int64_t n_ctx;           /* KV cache length (0: min(n_ctx_train, 2048)) */
    bnb_backend *backend;    /* where weights, cache and compute live (NULL: a CPU backend the model owns) */
    int n_threads;           /* threads of that owned CPU backend (<= 0: all cores) */
} bnb_model_params;
BNB_API bnb_model_params bnb_model_default_params(void);

typedef struct bnb_model bnb_model;

/* A model with uninitialised weights for cfg (fill them with bnb_model_set_weight). Checks cfg. */
BNB_API bnb_model *bnb_model_new(const bnb_model_config *cfg, const bnb_model_params *params);
/* Load a model: a GGUF file (general.architecture "llama"; config from llama.* keys; tokenizer from the file), or
 * a Hugging Face checkpoint (a directory with config.json, model.safetensors and tokenizer.json, or the path of a
 * .safetensors file with config.json beside it; bitsandbytes int8 `weight` + `SCB` layers are read as LLM.int8
 * weights). Tensors are converted to params->weights. Errors name the file and the tensor or key. */
BNB_API bnb_model *bnb_model_load(const char *path, const bnb_model_params *params);
BNB_API void bnb_model_free(bnb_model *m);
BNB_API const bnb_model_config *bnb_model_get_config(const bnb_model *m);
BNB_API bnb_weight_kind bnb_model_weight_kind(const bnb_model *m);
BNB_API bnb_backend *bnb_model_backend(bnb_model *m);
BNB_API int64_t bnb_model_n_ctx(const bnb_model *m);
BNB_API size_t bnb_model_weight_bytes(const bnb_model *m); /* bytes of all weight tensors */
/* The tokenizer read with the model (NULL if the file had none); owned by the model. */
BNB_API const bnb_tokenizer *bnb_model_tokenizer(const bnb_model *m);
/* Weight tensor by its GGUF name (NULL + error if there is none). */
BNB_API bnb_tensor *bnb_model_weight(bnb_model *m, const char *name);
/* Set a weight from host data src[n] of type src_type (F32/F16/BF16) laid out [out rows x in] (n = all elements),
 * converting to the weight's type (quantizing for int8 / nf4). */
BNB_API bnb_status bnb_model_set_weight(bnb_model *m, const char *name, bnb_type src_type, const void *src, int64_t n);

/* Run n tokens at positions n_past .. n_past+n-1 (prefill: n > 1; decode: n = 1): their keys and values go into
 * the KV cache (entries from n_past on are overwritten; those before are attended to). n_past + n <= n_ctx.
 * logits: all_logits ? n x n_vocab (token-major) : the last token's n_vocab values. */
BNB_API bnb_status bnb_model_eval(bnb_model *m, const int32_t *tokens, int64_t n, int64_t n_past, bool all_logits,
                                  float *logits);

/* Write the model (config as llama.* keys, its weights in their current types, the tokenizer when it came from a
 * GGUF file) as GGUF v3; bnb_model_load reads it back with the same weights. */
BNB_API bnb_status bnb_model_save_gguf(const bnb_model *m, const char *path);
/* Write a Hugging Face checkpoint into directory dir (created if missing): config.json and model.safetensors with HF
 * tensor names, q/k rows in the NEOX layout. F32/F16 weights are written as such; int8 weights as bitsandbytes'
 * `weight` I8 + `SCB` F32; NF4 weights dequantized to F32. */
BNB_API bnb_status bnb_model_save_hf(const bnb_model *m, const char *dir);

/* ---------------------------------------------------------------------------------------------- sampling */
typedef struct bnb_sampler_params {
    float temperature;        /* <= 0: greedy (argmax) */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float repeat_penalty;     /* 1: off; logits of recent tokens divided (positive) / multiplied (negative) by it */
    int32_t repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} bnb_sampler_params;
BNB_API bnb_sampler_params bnb_sampler_default_params(void); /* temp 0.8, top_k 40, top_p 0.95, penalty 1.1/64 */

typedef struct bnb_sampler bnb_sampler;
BNB_API bnb_sampler *bnb_sampler_new(const bnb_sampler_params *p, int32_t n_vocab);
BNB_API void bnb_sampler_free(bnb_sampler *s);
/* Remember a token (prompt or generated) for the repetition penalty. */
BNB_API void bnb_sampler_accept(bnb_sampler *s, int32_t token);
/* Pick the next token from logits[n_vocab] (not modified). */
BNB_API int32_t bnb_sampler_sample(bnb_sampler *s, const float *logits);

/* ============================================================================================================== training
 * bnb_trainer (src/train/): trains a Llama-style model (the architecture above: RMSNorm, RoPE NORMAL, causal
 * attention, SwiGLU; tied output head unless the fine-tuned file has output.weight) on a token stream with
 * forward + backward + optimizer update as ONE bnb graph per step (two with gradient accumulation: the micro-batches
 * before the last run a forward + backward graph accumulating gradients). Data: the text is tokenized once (byte-level
 * for from-scratch runs: n_vocab 256, id = byte), the last val_fraction of the tokens is the validation split;
 * training sequences start at offsets drawn from the trainer's RNG (saved in checkpoints). LR: linear warmup then
 * cosine decay to lr * min_lr_ratio. Checkpoints (bnb_trainer_save) hold weights, optimizer states, step, RNG and
 * counters in one file written atomically (temp file + fsync + rename); a resumed run reproduces an uninterrupted
 * one bit for bit on the same backend and thread count. */
typedef struct bnb_train_config {
    bnb_model_config model;  /* dims of a from-scratch model (ignored by bnb_trainer_new_from_file) */
    bnb_optim_type optim;    /* BNB_OPTIM_ADAMW ... */
    int optim_bits;          /* 8 or 32 */
    float lr, min_lr_ratio, weight_decay, beta1, beta2;
    int64_t warmup, steps;   /* schedule length (steps = optimizer updates) */
    int64_t batch, seq, accum;
    float clip;              /* global gradient-norm clip (0: off) */
    int pclip;               /* percentile clipping 1..99 (100: off) */
    bnb_type master;         /* parameter (master weight) type: F32 or BF16 */
    float val_fraction;      /* held-out share of the tokens (default 0.1) */
    float init_std;          /* weight init std (default 0.02) */
    uint64_t seed;
    bnb_backend *backend;    /* NULL: a CPU backend with n_threads owned by the trainer */
    int n_threads;
} bnb_train_config;
BNB_API bnb_train_config bnb_train_default_config(void);
/* Named sizes for from-scratch byte-level models: "tiny" (dim 64, 2 layers), "small" (dim 192, 4 layers),
 * "medium" (dim 384, 6 layers), "gpt2" (dim 768, 12 layers, 12 heads). */
BNB_API bnb_status bnb_train_preset(const char *name, bnb_model_config *cfg);

typedef struct bnb_trainer bnb_trainer;
/* From scratch with cfg->model; tokens[n] (copied) are the whole corpus (split into train/validation). */
BNB_API bnb_trainer *bnb_trainer_new(const bnb_train_config *cfg, const int32_t *tokens, int64_t n);
/* Fine-tune: config and weights from a GGUF model or a bnb-train checkpoint (path); cfg gives everything else. */
BNB_API bnb_trainer *bnb_trainer_new_from_file(const char *path, const bnb_train_config *cfg, const int32_t *tokens,
                                               int64_t n);
BNB_API void bnb_trainer_free(bnb_trainer *t);
/* One optimizer update (accum micro-batches); *loss = mean training loss of its micro-batches. */
BNB_API bnb_status bnb_trainer_step(bnb_trainer *t, float *loss);
/* Mean loss over n_batches batches of the validation split (fixed windows: the same every call). */
BNB_API bnb_status bnb_trainer_eval(bnb_trainer *t, int64_t n_batches, float *loss);
BNB_API int64_t bnb_trainer_get_step(const bnb_trainer *t);   /* optimizer updates done */
BNB_API float bnb_trainer_get_lr(const bnb_trainer *t, int64_t step); /* the schedule's lr at a step */
BNB_API const bnb_model_config *bnb_trainer_model_config(const bnb_trainer *t);
/* Checkpoint (atomic) and resume: bnb_trainer_load requires a trainer built with the same model and optimizer. */
BNB_API bnb_status bnb_trainer_save(bnb_trainer *t, const char *path);
BNB_API bnb_status bnb_trainer_load(bnb_trainer *t, const char *path);
/* Write the model as a llama GGUF for bnb-run (byte-level tokenizer keys), linear weights as `kind`
 * (F32, F16 or INT8 (I8_ROW, threshold 0)); norms and embedding F32. */
BNB_API bnb_status bnb_trainer_export(bnb_trainer *t, const char *path, bnb_weight_kind kind);
/* Copy of weight `name` (GGUF name) as F32 [out rows x in]; n = its element count. */
BNB_API bnb_status bnb_trainer_get_weight(bnb_trainer *t, const char *name, float *dst, int64_t n);

typedef struct bnb_train_memory {
    size_t params, grads, optim_states, activations; /* bytes; activations = the step graph's planned buffer */
    int64_t n_params;
} bnb_train_memory;
BNB_API bnb_train_memory bnb_trainer_memory(const bnb_trainer *t);

/* Loss curve as a standalone SVG: up to two series (validation may be NULL / n_val 0), x = step. */
BNB_API bnb_status bnb_plot_loss_svg(const char *path, const char *title, const int64_t *train_x, const float *train_y,
                                     int64_t n_train, const int64_t *val_x, const float *val_y, int64_t n_val);
/* One-line progress bar on stderr (carriage return; newline at the last step): step, loss, tokens/s, ETA. */
BNB_API void bnb_train_progress(int64_t step, int64_t steps, float loss, double tokens_per_s, double elapsed_s,
                                double eta_s);

/* ============================================================================================================== distributed
 * Data-parallel training over NCCL (src/dist/). One process per GPU; NCCL is loaded at run time (dlopen of
 * libnccl.so.2), so bnb has no link-time NCCL dependency: without libnccl (or without CUDA) the communicator calls
 * fail with BNB_ERR_UNSUPPORTED. The NCCL unique id travels through a file: rank 0 writes it atomically (temp file +
 * rename), the others poll for it. Launch with tools/bnb-train-dist.sh (sets RANK, WORLD_SIZE, LOCAL_RANK and
 * NCCL_NVLS_ENABLE=0). Gradient modes: F32 all-reduce, BF16 all-reduce (gradients rounded to bf16 on the wire), or
 * Q8: 8-bit blockwise compression (signed dynamic map, block 256, one f32 absmax per block): every rank quantizes
 * its bucket, the codes and absmax are all-gathered, and every rank dequantizes and sums the ranks' parts in rank
 * order, so all ranks hold identical sums. */
typedef enum bnb_dist_mode { BNB_DIST_F32 = 0, BNB_DIST_BF16, BNB_DIST_Q8 } bnb_dist_mode;
BNB_API const char *bnb_dist_mode_name(bnb_dist_mode m);                  /* "f32", "bf16", "q8" */
BNB_API bnb_status bnb_dist_mode_parse(const char *s, bnb_dist_mode *out);

typedef struct bnb_dist_comm bnb_dist_comm;
BNB_API bool bnb_dist_nccl_available(void); /* CUDA build and libnccl.so.2 loadable */
/* Communicator of rank `rank` of `world` on CUDA device `device`. id_file: the exchange file, the same path for all
 * ranks on a filesystem they share; use a fresh path per run (a stale file would hand ranks > 0 an old id; the
 * launcher script does this). timeout_s: how long ranks > 0 wait for it. */
BNB_API bnb_dist_comm *bnb_dist_comm_new(int rank, int world, int device, const char *id_file, double timeout_s);
/* From the environment: RANK, WORLD_SIZE, LOCAL_RANK (device), BNB_DIST_ID_FILE (default /tmp/bnb-nccl-id). */
BNB_API bnb_dist_comm *bnb_dist_comm_from_env(void);
BNB_API void bnb_dist_comm_free(bnb_dist_comm *c);
BNB_API int bnb_dist_rank(const bnb_dist_comm *c);
BNB_API int bnb_dist_world(const bnb_dist_comm *c);
BNB_API int bnb_dist_device(const bnb_dist_comm *c);
/* Sum F32 tensors of a CUDA backend across ranks, in place, in buckets of at most bucket_bytes (0: 25 MiB) on the
 * backend's stream (synchronised on return). */
BNB_API bnb_status bnb_dist_allreduce_tensors(bnb_dist_comm *c, bnb_backend *be, bnb_tensor **ts, int n,
                                              bnb_dist_mode mode, size_t bucket_bytes);
/* Sum of one host double over ranks (small scalars: losses, counts). */
BNB_API bnb_status bnb_dist_allreduce_scalar(bnb_dist_comm *c, double *v);
BNB_API bnb_status bnb_dist_barrier(bnb_dist_comm *c);
/* Bytes this rank has sent so far by the collectives' algorithmic volume (ring all-reduce 2(W-1)/W of the
 * buffer, all-gather and broadcast (W-1)/W of the gathered size); scalars excluded. */
BNB_API uint64_t bnb_dist_bytes_sent(const bnb_dist_comm *c);

/* ---- building blocks (host, no NCCL; unit-tested on the CPU) */
/* Gradient buckets: tensors taken in REVERSE order (backward produces the last layers' gradients first), grouped
 * while a bucket stays <= cap_bytes (a tensor larger than cap gets a bucket of its own). Returns the bucket count
 * (<= n) written to out[] (room for n), -1 on bad arguments. Bucket k holds tensors first, first-1, ..., first-count+1. */
typedef struct bnb_dist_bucket {
    int first, count;
    int64_t numel;
} bnb_dist_bucket;
BNB_API int bnb_dist_plan_buckets(const int64_t *numel, int n, size_t elem_bytes, size_t cap_bytes,
                                  bnb_dist_bucket *out);
/* 8-bit blockwise compression of n floats: codes[n], absmax[bnb_dist_q8_blocks(n)]. Non-finite input: BNB_ERR_NUMERIC. */
BNB_API int64_t bnb_dist_q8_blocks(int64_t n);
BNB_API size_t bnb_dist_q8_bytes(int64_t n); /* codes + absmax bytes on the wire */
BNB_API bnb_status bnb_dist_q8_compress(const float *x, int64_t n, uint8_t *codes, float *absmax);
/* acc[i] += dequantized value (the "sum locally" half of the compressed all-reduce) */
BNB_API bnb_status bnb_dist_q8_decompress_add(const uint8_t *codes, const float *absmax, int64_t n, float *acc);
/* ZeRO-1 ownership: whole tensors to ranks, largest first onto the least-loaded rank (ties: lower tensor index,
 * lower rank), so every rank's state memory is near total / world. owner[n]; rank_numel[world] (may be NULL). */
BNB_API bnb_status bnb_dist_zero_partition(const int64_t *numel, int n, int world, int *owner, int64_t *rank_numel);
/* Exchange `bytes` bytes through `path`: rank 0 writes them (path.tmp.<pid>, then rename), other ranks poll until
 * the file holds `bytes` bytes or timeout_s passes (BNB_ERR_IO). */
BNB_API bnb_status bnb_dist_exchange_file(const char *path, int rank, void *data, size_t bytes, double timeout_s);

/* ---- data-parallel trainer. cfg->accum is the PER-RANK accumulation; the global batch is batch * accum * world
 * and rank r trains on micro-batches r*accum .. r*accum+accum-1 of the sequence a single-process trainer with
 * accum * world would draw, so (F32 mode) W ranks == 1 rank with W x accumulation, within fp tolerance. cfg->backend
 * must be the CUDA backend of the communicator's device. zero1: each rank keeps and updates the optimizer states of
 * its shard of the parameters only (bnb_dist_zero_partition), then the updated parameters are broadcast from their
 * owners. Gradients are all-reduced in buckets after the backward pass (the trainer's step graph has no per-node
 * hooks, so no overlap with backward yet). Checkpoints of a zero1 run hold only that rank's states. */
typedef struct bnb_dist_train_options {
    bnb_dist_mode mode;
    bool zero1;
    size_t bucket_bytes; /* 0: 25 MiB */
} bnb_dist_train_options;
typedef struct bnb_dist_trainer bnb_dist_trainer;
BNB_API bnb_dist_trainer *bnb_dist_trainer_new(const bnb_train_config *cfg, const int32_t *tokens, int64_t n,
                                               bnb_dist_comm *comm, bnb_dist_train_options opt);
BNB_API void bnb_dist_trainer_free(bnb_dist_trainer *d);
/* One optimizer update over the global batch; *loss = its mean training loss (same on every rank). */
BNB_API bnb_status bnb_dist_trainer_step(bnb_dist_trainer *d, float *loss);
/* The underlying trainer (eval, weights, export; not bnb_trainer_step). */
BNB_API bnb_trainer *bnb_dist_trainer_base(bnb_dist_trainer *d);
/* Optimizer state bytes held by this rank. */
BNB_API size_t bnb_dist_trainer_state_bytes(const bnb_dist_trainer *d);

#ifdef __cplusplus
}
#endif
#endif /* BNB_MODEL_H */
