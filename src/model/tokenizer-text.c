/* Text handling for the tokenizers: UTF-8, approximate Unicode classes, GPT-2's byte <-> code point mapping, and the
 * pre-tokenizers (hand-written scanners equivalent to the GPT-2 / Llama-3 regexes on the classes below). */
#include "tokenizer-impl.h"

int bnb_utf8_decode(const uint8_t *s, size_t n, int32_t *cp) {
    if (n == 0) {
        *cp = -1;
        return 1;
    }
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    int32_t v, min;
    if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
    else {
        *cp = -1;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = -1;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = v;
    return len;
}

int bnb_utf8_encode(int32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- GPT-2 bytes_to_unicode */
static bool byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

int32_t bnb_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    /* the others, in byte order, map to 256, 257, ... */
    int k = 0;
    for (int x = 0; x < b; x++) k += !byte_is_printable(x);
    return 256 + k;
}

int bnb_cp_to_byte(int32_t cp) {
    if (cp >= 0 && cp < 256) return byte_is_printable(cp) ? cp : -1;
    if (cp >= 256 && cp < 256 + 68) {
        int k = cp - 256;
        for (int x = 0; x < 256; x++)
            if (!byte_is_printable(x) && k-- == 0) return x;
    }
    return -1;
}

/* ---------------------------------------------------------------- Unicode classes (approximate) */
enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER };

static bool is_space_cp(int32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int cp_class(int32_t c) {
    if (c < 0) return CL_OTHER; /* invalid UTF-8 byte */
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CL_LETTER;
        if (c >= '0' && c <= '9') return CL_NUMBER;
        if (is_space_cp(c)) return CL_SPACE;
        return CL_OTHER;
    }
    if (is_space_cp(c)) return CL_SPACE;
    /* numbers: superscripts, fractions, other scripts' digits, number forms, circled numbers, fullwidth digits */
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE) || (c >= 0x660 && c <= 0x669) ||
        (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F) || (c >= 0x9E6 && c <= 0x9EF) ||
        (c >= 0xE50 && c <= 0xE59) || c == 0x2070 || (c >= 0x2074 && c <= 0x2079) || (c >= 0x2080 && c <= 0x2089) ||
        (c >= 0x2150 && c <= 0x2189) || (c >= 0x2460 && c <= 0x249B) || (c >= 0x24EA && c <= 0x24FF) ||
        (c >= 0x2776 && c <= 0x2793) || c == 0x3007 || (c >= 0x3021 && c <= 0x3029) || (c >= 0xFF10 && c <= 0xFF19))
        return CL_NUMBER;
    /* letters in Latin-1 */
    if (c < 0x100) return (c == 0xAA || c == 0xB5 || c == 0xBA || (c >= 0xC0 && c != 0xD7 && c != 0xF7)) ? CL_LETTER : CL_OTHER;
    /* punctuation, symbols and marks */
    if ((c >= 0x2B9 && c <= 0x2FF && !(c >= 0x2B0 && c <= 0x2C1)) || (c >= 0x300 && c <= 0x36F) || c == 0x37E ||
        c == 0x387 || (c >= 0x483 && c <= 0x489) || (c >= 0x55A && c <= 0x55F) || (c >= 0x591 && c <= 0x5C7) ||
        (c >= 0x600 && c <= 0x61F && c != 0x620) || c == 0x6D4 || (c >= 0x64B && c <= 0x65F) ||
        (c >= 0x964 && c <= 0x965) || (c >= 0x2000 && c <= 0x2BFF) || (c >= 0x2E00 && c <= 0x2E7F) ||
        (c >= 0x3000 && c <= 0x303F) || (c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFE00 && c <= 0xFE6F) ||
        (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) ||
        (c >= 0xFF5B && c <= 0xFF65) || (c >= 0xFFF0 && c <= 0xFFFF) || (c >= 0x1F000 && c <= 0x1FBFF) ||
        (c >= 0xE0000))
        return CL_OTHER;
    return CL_LETTER;
}

typedef struct cur {
    const uint8_t *s;
    size_t n;
} cur;

/* class and length of the code point at i (i < n) */
static int cls_at(const cur *c, size_t i, int *len) {
    int32_t cp;
    *len = bnb_utf8_decode(c->s + i, c->n - i, &cp);
    return cp_class(cp);
}
static int32_t cp_at(const cur *c, size_t i, int *len) {
    int32_t cp;
    *len = bnb_utf8_decode(c->s + i, c->n - i, &cp);
    return cp;
}

/* run of code points of class `cls` from i; at most max code points (0 = unlimited) */
static size_t run_of(const cur *c, size_t i, int cls, int max) {
    int k = 0, len;
    while (i < c->n && (max == 0 || k < max) && cls_at(c, i, &len) == cls) i += (size_t)len, k++;
    return i;
}
static size_t run_of_other(const cur *c, size_t i) { return run_of(c, i, CL_OTHER, 0); }

/* 's 't 're 've 'm 'll 'd at i (s[i] == '\''); returns the end or 0 */
static size_t contraction(const cur *c, size_t i, bool icase) {
    if (i + 1 >= c->n) return 0;
    char a = (char)c->s[i + 1], b = i + 2 < c->n ? (char)c->s[i + 2] : 0;
    if (icase) {
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

/* whitespace at i: \s+(?!\S) | \s+ */
static size_t whitespace_piece(const cur *c, size_t i) {
    size_t k = i, last = i;
    int len = 1;
    while (k < c->n && cls_at(c, k, &len) == CL_SPACE) last = k, k += (size_t)len;
    if (k == i) return i + (size_t)len; /* not whitespace (cannot happen): one code point */
    if (k == c->n) return k;
    if (last > i) return last; /* leave the last whitespace char to the next piece */
    return k;
}

static size_t gpt2_next(const cur *c, size_t i) {
    int len;
    if (c->s[i] == '\'') {
        size_t e = contraction(c, i, false);
        if (e) return e;
    }
    size_t j = i;
    int cls = cls_at(c, i, &len);
    if (c->s[i] == ' ' && i + 1 < c->n) {
        int l2, c2 = cls_at(c, i + 1, &l2);
        if (c2 != CL_SPACE) j = i + 1, cls = c2;
    }
    if (cls == CL_LETTER || cls == CL_NUMBER) return run_of(c, j, cls, 0);
    if (cls == CL_OTHER) return run_of_other(c, j);
    return whitespace_piece(c, i);
}

static size_t llama3_next(const cur *c, size_t i) {
    int len, l2;
    if (c->s[i] == '\'') {
        size_t e = contraction(c, i, true);
        if (e) return e;
    }
    int32_t cp = cp_at(c, i, &len);
    int cls = cp_class(cp);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (cls != CL_LETTER && cls != CL_NUMBER && cp != '\r' && cp != '\n' && i + (size_t)len < c->n &&
        cls_at(c, i + (size_t)len, &l2) == CL_LETTER)
        return run_of(c, i + (size_t)len, CL_LETTER, 0);
    if (cls == CL_LETTER) return run_of(c, i, CL_LETTER, 0);
    if (cls == CL_NUMBER) return run_of(c, i, CL_NUMBER, 3);
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = i;
    if (cp == ' ' && i + 1 < c->n && cls_at(c, i + 1, &l2) == CL_OTHER) j = i + 1, cls = CL_OTHER;
    if (cls == CL_OTHER) {
        size_t e = run_of_other(c, j);
        while (e < c->n && (c->s[e] == '\r' || c->s[e] == '\n')) e++;
        return e;
    }
    /* \s*[\r\n]+ : up to and including the last newline of the whitespace run */
    size_t k = i, last_nl = 0;
    bool nl = false;
    while (k < c->n && cls_at(c, k, &l2) == CL_SPACE) {
        if (c->s[k] == '\r' || c->s[k] == '\n') last_nl = k, nl = true;
        k += (size_t)l2;
    }
    if (nl) return last_nl + 1;
    return whitespace_piece(c, i);
}

bool bnb_pretokenize(bnb_pretok mode, const uint8_t *text, size_t n, bnb_piece_fn fn, void *ctx) {
    size_t i = 0;
    while (i < n) {
        if (mode == BNB_PRETOK_GPT2_DIGITS) {
            /* every digit alone; the text between digits is pre-tokenized on its own */
            cur all = {text, n};
            int len;
            if (cls_at(&all, i, &len) == CL_NUMBER) {
                if (!fn(ctx, i, i + (size_t)len)) return false;
                i += (size_t)len;
                continue;
            }
            size_t r = i;
            while (r < n && cls_at(&all, r, &len) != CL_NUMBER) r += (size_t)len;
            cur seg = {text, r};
            while (i < r) {
                size_t e = gpt2_next(&seg, i);
                if (!fn(ctx, i, e)) return false;
                i = e;
            }
            continue;
        }
        cur c = {text, n};
        size_t e = mode == BNB_PRETOK_LLAMA3 ? llama3_next(&c, i) : gpt2_next(&c, i);
        if (e <= i) e = i + 1; /* never stall */
        if (!fn(ctx, i, e)) return false;
        i = e;
    }
    return true;
}
