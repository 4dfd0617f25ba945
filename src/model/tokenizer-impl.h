/* Internal structure of the tokenizers (tokenizer.c, tokenizer-text.c, tokenizer-load.c). Not installed. */
#ifndef BNB_TOKENIZER_IMPL_H
#define BNB_TOKENIZER_IMPL_H

#include "model-impl.h"

enum {
    TOK_NORMAL = 0,
    TOK_CONTROL = 1, /* special: BOS, EOS, <|im_start|>...: matched in text, dropped by skip_special */
    TOK_USER = 2,    /* user-defined / added non-special: matched in text, decoded verbatim */
    TOK_BYTE = 4,    /* SPM byte token <0xXX> */
    TOK_UNUSED = 8,  /* hole in the id space or unused slot */
    TOK_UNKNOWN = 16,
};

struct bnb_tokenizer {
    bnb_tokenizer_kind kind;
    bnb_pretok pretok;
    int32_t n_vocab;
    char **text;       /* token texts, NUL-terminated */
    uint32_t *len;
    float *score;      /* SPM merge priorities (NULL: use merge ranks) */
    uint8_t *attr;
    /* vocabulary hash: slot -> id + 1 (0 empty) */
    uint32_t *vhash;
    size_t vhash_cap;
    /* merges: (left id, right id) -> rank, result id */
    uint64_t *mkey;
    uint32_t *mrank;
    int32_t *mres;
    size_t mcap, n_merges;
    int32_t byte_id[256]; /* BPE: id of the mapped code point of byte b; SPM: id of <0xXX>; -1 if none */
    int32_t byte_cp[256];  /* GPT-2 bytes_to_unicode */
    int16_t cp_byte[324];  /* its inverse for code points < 324 (-1: none) */
    int32_t bos, eos, unk;
    bool add_bos, add_space_prefix, ignore_merges;
    /* special tokens matched in text, by first byte, longest first */
    int32_t *special_ids;
    uint32_t special_start[257];
};

/* tokenizer.c */
bnb_tokenizer *bnb_tok_alloc(bnb_tokenizer_kind kind, int32_t n_vocab);
/* Set token id's text (copied); false on OOM. */
bool bnb_tok_set_text(bnb_tokenizer *t, int32_t id, const char *s, size_t len);
/* Build the vocabulary hash, byte tables and special-token index once all texts/attrs are set. */
bnb_status bnb_tok_finish(bnb_tokenizer *t, const char *name);
int32_t bnb_tok_lookup(const bnb_tokenizer *t, const char *s, size_t len);
/* Add merge (left, right) with the next rank; ignored when the concatenation is not in the vocabulary. */
bnb_status bnb_tok_add_merge(bnb_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl, const char *name,
                             int64_t index);
bnb_status bnb_tok_merges_reserve(bnb_tokenizer *t, size_t n);

/* tokenizer-text.c */
/* GPT-2 byte <-> code point mapping */
int32_t bnb_byte_to_cp(uint8_t b);
int bnb_cp_to_byte(int32_t cp); /* -1 if cp is not one of the 256 */
/* Split text[0..n) into pre-tokens, calling fn(ctx, start, end) for each; stops early when fn returns false. */
typedef bool (*bnb_piece_fn)(void *ctx, size_t start, size_t end);
bool bnb_pretokenize(bnb_pretok mode, const uint8_t *text, size_t n, bnb_piece_fn fn, void *ctx);

#endif
