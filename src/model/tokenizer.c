/* Tokenizers: vocabulary and merge tables, the BPE merge engine (priority queue over adjacent symbol pairs, so a
 * hostile 1 MB word costs O(n log n)), encode with special-token matching, decode. Loading is in tokenizer-load.c,
 * text classes and pre-tokenizers in tokenizer-text.c. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}
static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

bnb_tokenizer *bnb_tok_alloc(bnb_tokenizer_kind kind, int32_t n_vocab) {
    if (n_vocab <= 0) return bnb_fail_null(BNB_ERR_IO, "tokenizer: empty vocabulary");
    bnb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return bnb_fail_null(BNB_ERR_OOM, "tokenizer: out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->text = calloc((size_t)n_vocab, sizeof *t->text);
    t->len = calloc((size_t)n_vocab, sizeof *t->len);
    t->attr = calloc((size_t)n_vocab, 1);
    t->bos = t->eos = t->unk = -1;
    if (!t->text || !t->len || !t->attr) {
        bnb_tokenizer_free(t);
        return bnb_fail_null(BNB_ERR_OOM, "tokenizer: out of memory for %d tokens", n_vocab);
    }
    for (int b = 0; b < 256; b++) t->byte_cp[b] = bnb_byte_to_cp((uint8_t)b);
    for (int c = 0; c < 324; c++) t->cp_byte[c] = (int16_t)bnb_cp_to_byte(c);
    return t;
}

bool bnb_tok_set_text(bnb_tokenizer *t, int32_t id, const char *s, size_t len) {
    if (len > UINT32_MAX - 1) return false;
    char *d = malloc(len + 1);
    if (!d) return false;
    memcpy(d, s, len);
    d[len] = 0;
    free(t->text[id]);
    t->text[id] = d;
    t->len[id] = (uint32_t)len;
    return true;
}

void bnb_tokenizer_free(bnb_tokenizer *t) {
    if (!t) return;
    if (t->text)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->vhash);
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
    free(t->special_ids);
    free(t);
}

int32_t bnb_tok_lookup(const bnb_tokenizer *t, const char *s, size_t len) {
    if (!t->vhash) return -1;
    size_t mask = t->vhash_cap - 1;
    for (size_t k = fnv1a(s, len) & mask;; k = (k + 1) & mask) {
        uint32_t v = t->vhash[k];
        if (!v) return -1;
        int32_t id = (int32_t)(v - 1);
        if (t->len[id] == len && memcmp(t->text[id], s, len) == 0) return id;
    }
}

static bool is_byte_token(const char *s, uint32_t len, int *byte) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (h < 0) return false;
        v = v * 16 + h;
    }
    *byte = v;
    return true;
}

bnb_status bnb_tok_finish(bnb_tokenizer *t, const char *name) {
    /* missing texts become empty unused tokens */
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (!t->text[i]) {
            if (!bnb_tok_set_text(t, i, "", 0)) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", name);
            t->attr[i] |= TOK_UNUSED;
        }
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2) cap <<= 1;
    t->vhash = calloc(cap, sizeof *t->vhash);
    if (!t->vhash) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", name);
    t->vhash_cap = cap;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if ((t->attr[i] & TOK_UNUSED) || t->len[i] == 0) continue;
        if (bnb_tok_lookup(t, t->text[i], t->len[i]) >= 0) continue; /* duplicate text: first id wins */
        size_t k = fnv1a(t->text[i], t->len[i]) & (cap - 1);
        while (t->vhash[k]) k = (k + 1) & (cap - 1);
        t->vhash[k] = (uint32_t)i + 1;
    }
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    if (t->kind == BNB_TOKENIZER_BPE) {
        for (int b = 0; b < 256; b++) {
            char u[4];
            int l = bnb_utf8_encode(t->byte_cp[b], u);
            t->byte_id[b] = bnb_tok_lookup(t, u, (size_t)l);
        }
    } else {
        for (int32_t i = 0; i < t->n_vocab; i++) {
            int b;
            if (is_byte_token(t->text[i], t->len[i], &b) && !(t->attr[i] & (TOK_CONTROL | TOK_USER))) {
                t->attr[i] |= TOK_BYTE;
                if (t->byte_id[b] < 0) t->byte_id[b] = i;
            }
        }
    }
    /* special tokens matched in text: bucketed by first byte, longest first */
    uint32_t count[257] = {0};
    size_t n_sp = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->attr[i] & (TOK_CONTROL | TOK_USER)) && t->len[i] > 0) count[(uint8_t)t->text[i][0]]++, n_sp++;
    t->special_ids = malloc((n_sp ? n_sp : 1) * sizeof *t->special_ids);
    if (!t->special_ids) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", name);
    t->special_start[0] = 0;
    for (int b = 0; b < 256; b++) t->special_start[b + 1] = t->special_start[b] + count[b];
    uint32_t fill[256];
    for (int b = 0; b < 256; b++) fill[b] = t->special_start[b];
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->attr[i] & (TOK_CONTROL | TOK_USER)) && t->len[i] > 0) {
            int b = (uint8_t)t->text[i][0];
            /* insertion keeping longer texts first */
            uint32_t k = fill[b]++;
            while (k > t->special_start[b] && t->len[t->special_ids[k - 1]] < t->len[i]) {
                t->special_ids[k] = t->special_ids[k - 1];
                k--;
            }
            t->special_ids[k] = i;
        }
    return BNB_OK;
}

bnb_status bnb_tok_merges_reserve(bnb_tokenizer *t, size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    t->mkey = malloc(cap * sizeof *t->mkey);
    t->mrank = malloc(cap * sizeof *t->mrank);
    t->mres = malloc(cap * sizeof *t->mres);
    if (!t->mkey || !t->mrank || !t->mres) return bnb_fail(BNB_ERR_OOM, "tokenizer: out of memory for %zu merges", n);
    for (size_t k = 0; k < cap; k++) t->mkey[k] = UINT64_MAX;
    t->mcap = cap;
    t->n_merges = 0;
    return BNB_OK;
}

static bool merge_find(const bnb_tokenizer *t, int32_t l, int32_t r, uint32_t *rank, int32_t *res) {
    if (!t->mcap) return false;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t mask = t->mcap - 1;
    for (size_t k = mix64(key) & mask;; k = (k + 1) & mask) {
        if (t->mkey[k] == UINT64_MAX) return false;
        if (t->mkey[k] == key) {
            *rank = t->mrank[k];
            *res = t->mres[k];
            return true;
        }
    }
}

bnb_status bnb_tok_add_merge(bnb_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl, const char *name,
                             int64_t index) {
    if (t->n_merges * 2 >= t->mcap) return bnb_fail(BNB_ERR_IO, "%s: merge %lld: more merges than reserved", name, (long long)index);
    int32_t a = bnb_tok_lookup(t, l, ll), b = bnb_tok_lookup(t, r, rl);
    uint32_t rank = (uint32_t)t->n_merges++; /* ranks count every merge line, used or not */
    if (a < 0 || b < 0) return BNB_OK;
    char stackbuf[256];
    char *cat = ll + rl <= sizeof stackbuf ? stackbuf : malloc(ll + rl);
    if (!cat) return bnb_fail(BNB_ERR_OOM, "%s: out of memory", name);
    memcpy(cat, l, ll);
    memcpy(cat + ll, r, rl);
    int32_t res = bnb_tok_lookup(t, cat, ll + rl);
    if (cat != stackbuf) free(cat);
    if (res < 0) return BNB_OK;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->mcap - 1;
    size_t k = mix64(key) & mask;
    while (t->mkey[k] != UINT64_MAX) {
        if (t->mkey[k] == key) return BNB_OK; /* duplicate merge: the first (lowest rank) stays */
        k = (k + 1) & mask;
    }
    t->mkey[k] = key;
    t->mrank[k] = rank;
    t->mres[k] = res;
    return BNB_OK;
}

/* ---------------------------------------------------------------- merge engine */
typedef struct sym {
    uint32_t start, len;
    int32_t id, prev, next;
} sym;
typedef struct cand {
    double prio; /* smaller first */
    uint32_t left, size;
    int32_t res;
} cand;

typedef struct work {
    const bnb_tokenizer *t;
    sym *syms;
    size_t cap_syms;
    cand *heap;
    size_t n_heap, cap_heap;
    char *buf; /* BPE: mapped piece; SPM: normalized segment */
    size_t n_buf, cap_buf;
    /* output */
    int32_t *ids;
    int64_t cap, n;
    bool failed;
} work;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *n = realloc(*p, c * elem);
    if (!n) return false;
    *p = n;
    *cap = c;
    return true;
}

static void emit(work *w, int32_t id) {
    if (w->n < w->cap) w->ids[w->n] = id;
    w->n++;
}

static bool cand_less(const cand *a, const cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}
static void heap_push(work *w, cand c) {
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}
static cand heap_pop(work *w) {
    cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_less(&w->heap[l], best)) m = l, best = &w->heap[l];
        if (r < n && cand_less(&w->heap[r], best)) m = r;
        if (m == i) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void try_pair(work *w, int32_t li) {
    if (li < 0) return;
    const sym *l = &w->syms[li];
    if (l->next < 0) return;
    const sym *r = &w->syms[l->next];
    const bnb_tokenizer *t = w->t;
    cand c = {0, (uint32_t)li, l->len + r->len, -1};
    if (t->kind == BNB_TOKENIZER_SPM && t->score) {
        int32_t id = bnb_tok_lookup(t, w->buf + l->start, l->len + r->len);
        if (id < 0 || (t->attr[id] & TOK_UNUSED)) return;
        c.prio = -(double)t->score[id];
        c.res = id;
    } else {
        uint32_t rank;
        if (l->id < 0 || r->id < 0 || !merge_find(t, l->id, r->id, &rank, &c.res)) return;
        c.prio = rank;
    }
    heap_push(w, c);
}

/* Merge the symbols of w->buf[0..n_buf) (initial ids set by the caller) and emit the result. */
static void merge_and_emit(work *w, size_t n_syms) {
    const bnb_tokenizer *t = w->t;
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < n_syms; i++) try_pair(w, (int32_t)i);
    while (w->n_heap) {
        cand c = heap_pop(w);
        sym *l = &w->syms[c.left];
        if (l->len == 0 || l->next < 0) continue;
        sym *r = &w->syms[l->next];
        if (l->len + r->len != c.size) continue; /* stale */
        l->len += r->len;
        l->id = c.res;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = (int32_t)c.left;
        r->len = 0;
        try_pair(w, l->prev);
        try_pair(w, (int32_t)c.left);
    }
    for (int32_t i = 0; i >= 0 && (size_t)i < n_syms; i = w->syms[i].next) {
        const sym *s = &w->syms[i];
        if (s->id >= 0) {
            emit(w, s->id);
            continue;
        }
        if (t->kind == BNB_TOKENIZER_SPM && t->score) {
            int32_t id = bnb_tok_lookup(t, w->buf + s->start, s->len);
            if (id >= 0 && !(t->attr[id] & TOK_UNUSED)) {
                emit(w, id);
                continue;
            }
        }
        /* byte fallback */
        for (uint32_t k = 0; k < s->len; k++) {
            uint8_t b = (uint8_t)w->buf[s->start + k];
            if (t->kind == BNB_TOKENIZER_BPE) {
                /* the mapped code point spans several bytes: map the whole symbol back byte by byte */
                int32_t cp;
                int cl = bnb_utf8_decode((const uint8_t *)w->buf + s->start + k, s->len - k, &cp);
                int ob = cp >= 0 && cp < 324 ? t->cp_byte[cp] : -1;
                b = (uint8_t)(ob >= 0 ? ob : 0);
                k += (uint32_t)cl - 1;
            }
            int32_t id = t->byte_id[b] >= 0 ? t->byte_id[b] : t->unk;
            if (id < 0) {
                if (!w->failed) bnb_fail(BNB_ERR_UNSUPPORTED, "tokenizer: byte 0x%02X has no token and there is no unk token", b);
                w->failed = true;
                return;
            }
            emit(w, id);
        }
    }
}

/* Split w->buf into UTF-8 symbols (invalid bytes alone); ids by lookup (or from byte_ids for BPE). */
static size_t make_symbols(work *w, const uint8_t *orig) {
    const bnb_tokenizer *t = w->t;
    if (!grow((void **)&w->syms, &w->cap_syms, w->n_buf + 1, sizeof(sym)) ||
        !grow((void **)&w->heap, &w->cap_heap, 3 * w->n_buf + 4, sizeof(cand))) {
        bnb_fail(BNB_ERR_OOM, "tokenizer: out of memory");
        w->failed = true;
        return 0;
    }
    size_t n = 0, ob = 0;
    for (size_t i = 0; i < w->n_buf;) {
        int32_t cp;
        int len = bnb_utf8_decode((const uint8_t *)w->buf + i, w->n_buf - i, &cp);
        sym *s = &w->syms[n];
        s->start = (uint32_t)i;
        s->len = (uint32_t)len;
        s->prev = (int32_t)n - 1;
        s->next = (int32_t)n + 1;
        if (t->kind == BNB_TOKENIZER_BPE) s->id = t->byte_id[orig[ob++]];
        else s->id = bnb_tok_lookup(t, w->buf + i, (size_t)len);
        if (s->id >= 0 && (t->attr[s->id] & TOK_UNUSED)) s->id = -1;
        n++;
        i += (size_t)len;
    }
    if (n) w->syms[n - 1].next = -1;
    return n;
}

typedef struct seg_ctx {
    work *w;
    const uint8_t *text;
} seg_ctx;

static bool bpe_piece_cb(void *ctx, size_t start, size_t end) {
    seg_ctx *sc = ctx;
    work *w = sc->w;
    const bnb_tokenizer *t = w->t;
    size_t n = end - start;
    if (!grow((void **)&w->buf, &w->cap_buf, 2 * n + 1, 1)) {
        bnb_fail(BNB_ERR_OOM, "tokenizer: out of memory");
        w->failed = true;
        return false;
    }
    size_t k = 0;
    for (size_t i = start; i < end; i++) k += (size_t)bnb_utf8_encode(t->byte_cp[sc->text[i]], w->buf + k);
    w->n_buf = k;
    if (t->ignore_merges) {
        int32_t id = bnb_tok_lookup(t, w->buf, k);
        if (id >= 0 && !(t->attr[id] & TOK_UNUSED)) {
            emit(w, id);
            return true;
        }
    }
    size_t ns = make_symbols(w, sc->text + start);
    if (!w->failed) merge_and_emit(w, ns);
    return !w->failed;
}

static void encode_segment(work *w, const uint8_t *text, size_t n, bool after_special) {
    const bnb_tokenizer *t = w->t;
    if (n == 0) return;
    if (t->kind == BNB_TOKENIZER_BYTE) {
        for (size_t i = 0; i < n; i++) emit(w, text[i]);
        return;
    }
    if (t->kind == BNB_TOKENIZER_BPE) {
        seg_ctx sc = {w, text};
        bnb_pretokenize(t->pretok, text, n, bpe_piece_cb, &sc);
        return;
    }
    /* SPM: spaces -> U+2581, one in front after the start / a special token */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += text[i] == ' ';
    bool prefix = t->add_space_prefix && after_special;
    size_t need = n + 2 * spaces + (prefix ? 3 : 0) + 1;
    if (!grow((void **)&w->buf, &w->cap_buf, need, 1)) {
        bnb_fail(BNB_ERR_OOM, "tokenizer: out of memory");
        w->failed = true;
        return;
    }
    size_t k = 0;
    if (prefix) memcpy(w->buf, "\xE2\x96\x81", 3), k = 3;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') memcpy(w->buf + k, "\xE2\x96\x81", 3), k += 3;
        else w->buf[k++] = (char)text[i];
    }
    w->n_buf = k;
    size_t ns = make_symbols(w, NULL);
    if (!w->failed) merge_and_emit(w, ns);
}

/* longest special token starting at text[i], or -1 */
static int32_t match_special(const bnb_tokenizer *t, const uint8_t *text, size_t n, size_t i) {
    uint8_t b = text[i];
    for (uint32_t k = t->special_start[b]; k < t->special_start[b + 1]; k++) {
        int32_t id = t->special_ids[k];
        if (t->len[id] <= n - i && memcmp(t->text[id], text + i, t->len[id]) == 0) return id;
    }
    return -1;
}

int64_t bnb_tokenizer_encode(const bnb_tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap,
                             bool add_bos, bool parse_special) {
    if (!t || (!text && len) || cap < 0 || (cap > 0 && !ids)) {
        bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tokenizer_encode: bad arguments");
        return -1;
    }
    work w = {0};
    w.t = t;
    w.ids = ids;
    w.cap = cap;
    if (add_bos && t->bos >= 0) emit(&w, t->bos);
    const uint8_t *s = (const uint8_t *)text;
    size_t seg = 0;
    bool after_special = true;
    if (parse_special && t->special_start[256] > 0) {
        for (size_t i = 0; i < len && !w.failed;) {
            int32_t id = t->special_start[s[i] + 1] > t->special_start[s[i]] ? match_special(t, s, len, i) : -1;
            if (id < 0) {
                i++;
                continue;
            }
            encode_segment(&w, s + seg, i - seg, after_special);
            emit(&w, id);
            after_special = (t->attr[id] & TOK_CONTROL) != 0; /* SPM: a space prefix follows control tokens */
            i += t->len[id];
            seg = i;
        }
    }
    if (!w.failed) encode_segment(&w, s + seg, len - seg, after_special);
    free(w.syms);
    free(w.heap);
    free(w.buf);
    return w.failed ? -1 : w.n;
}

/* ---------------------------------------------------------------- decode */
typedef struct obuf {
    char *out;
    size_t cap, n;
} obuf;
static void put(obuf *o, const void *p, size_t n) {
    if (o->n < o->cap) {
        size_t k = o->cap - o->n < n ? o->cap - o->n : n;
        memcpy(o->out + o->n, p, k);
    }
    o->n += n;
}

/* one token; strip_space: drop a leading space (SPM prefix) */
static bool decode_one(const bnb_tokenizer *t, int32_t id, obuf *o, bool strip_space) {
    const char *s = t->text[id];
    uint32_t n = t->len[id];
    uint8_t a = t->attr[id];
    if (t->kind == BNB_TOKENIZER_BYTE) {
        if (id < 256) {
            uint8_t b = (uint8_t)id;
            put(o, &b, 1);
        } else put(o, s, n);
        return true;
    }
    if (a & (TOK_CONTROL | TOK_USER | TOK_UNKNOWN)) {
        put(o, s, n);
        return true;
    }
    if (t->kind == BNB_TOKENIZER_BPE) {
        for (uint32_t i = 0; i < n;) {
            int32_t cp;
            int l = bnb_utf8_decode((const uint8_t *)s + i, n - i, &cp);
            int b = cp >= 0 && cp < 324 ? t->cp_byte[cp] : -1;
            if (b >= 0) {
                uint8_t c = (uint8_t)b;
                put(o, &c, 1);
            } else put(o, s + i, (size_t)l);
            i += (uint32_t)l;
        }
        return true;
    }
    /* SPM */
    int byte;
    if ((a & TOK_BYTE) && is_byte_token(s, n, &byte)) {
        uint8_t c = (uint8_t)byte;
        if (!(strip_space && c == ' ')) put(o, &c, 1);
        return true;
    }
    for (uint32_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            if (!(strip_space && i == 0)) put(o, " ", 1);
            i += 3;
        } else {
            put(o, s + i, 1);
            i++;
        }
    }
    return true;
}

int64_t bnb_tokenizer_decode(const bnb_tokenizer *t, const int32_t *ids, int64_t n, char *out, size_t cap,
                             bool skip_special) {
    if (!t || n < 0 || (n > 0 && !ids) || (cap > 0 && !out)) {
        bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tokenizer_decode: bad arguments");
        return -1;
    }
    obuf o = {out, cap, 0};
    bool strip = t->kind == BNB_TOKENIZER_SPM && t->add_space_prefix;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tokenizer_decode: id %d at position %lld is not in 0..%d", id, (long long)i,
                     t->n_vocab - 1);
            return -1;
        }
        if (t->attr[id] & TOK_CONTROL) {
            if (!skip_special) put(&o, t->text[id], t->len[id]);
            strip = t->kind == BNB_TOKENIZER_SPM && t->add_space_prefix;
            continue;
        }
        decode_one(t, id, &o, strip);
        strip = false;
    }
    if (o.n < cap) out[o.n] = 0;
    return (int64_t)o.n;
}

int64_t bnb_tokenizer_token_bytes(const bnb_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab || (cap && !out)) {
        bnb_fail(BNB_ERR_INVALID_ARG, "bnb_tokenizer_token_bytes: bad id %d", id);
        return -1;
    }
    obuf o = {out, cap, 0};
    decode_one(t, id, &o, false);
    return (int64_t)o.n;
}

/* ---------------------------------------------------------------- byte tokenizer and getters */
bnb_tokenizer *bnb_tokenizer_new_byte(bool with_bos_eos) {
    bnb_tokenizer *t = bnb_tok_alloc(BNB_TOKENIZER_BYTE, with_bos_eos ? 258 : 256);
    if (!t) return NULL;
    bool ok = true;
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        ok = ok && bnb_tok_set_text(t, b, s, 6);
    }
    if (with_bos_eos) {
        ok = ok && bnb_tok_set_text(t, 256, "<s>", 3) && bnb_tok_set_text(t, 257, "</s>", 4);
        t->attr[256] = t->attr[257] = TOK_CONTROL;
        t->bos = 256;
        t->eos = 257;
        t->add_bos = true;
    }
    if (!ok || bnb_tok_finish(t, "byte tokenizer") != BNB_OK) {
        bnb_tokenizer_free(t);
        return bnb_fail_null(BNB_ERR_OOM, "bnb_tokenizer_new_byte: out of memory");
    }
    return t;
}

bnb_tokenizer_kind bnb_tokenizer_get_kind(const bnb_tokenizer *t) { return t ? t->kind : BNB_TOKENIZER_BYTE; }
bnb_pretok bnb_tokenizer_get_pretok(const bnb_tokenizer *t) { return t ? t->pretok : BNB_PRETOK_GPT2; }
int32_t bnb_tokenizer_n_vocab(const bnb_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t bnb_tokenizer_bos(const bnb_tokenizer *t) { return t ? t->bos : -1; }
int32_t bnb_tokenizer_eos(const bnb_tokenizer *t) { return t ? t->eos : -1; }
bool bnb_tokenizer_add_bos(const bnb_tokenizer *t) { return t && t->add_bos && t->bos >= 0; }
bool bnb_tokenizer_is_special(const bnb_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && (t->attr[id] & TOK_CONTROL);
}
const char *bnb_tokenizer_token_text(const bnb_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}
int32_t bnb_tokenizer_find(const bnb_tokenizer *t, const char *text) {
    return t && text ? bnb_tok_lookup(t, text, strlen(text)) : -1;
}
