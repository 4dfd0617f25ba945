/* A small strict JSON parser (RFC 8259) for safetensors headers, config.json and tokenizer.json.
 * Memory is bounded by the input: at most one node per input byte pair and one string arena of len + 1 bytes.
 * Recursion depth is bounded by BNB_JSON_MAX_DEPTH. */
#include "model-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bnb_json_value {
    uint8_t type;
    uint8_t boolean;
    uint8_t is_int;
    uint32_t count;   /* children of arrays/objects */
    uint32_t first;   /* build: first child node index (UINT32_MAX none) */
    uint32_t next;    /* build: next sibling */
    const char *key;  /* member key (children of objects) */
    const char *str;
    size_t str_len;
    double num;
    int64_t ival;
    const bnb_json_value *const *kids;
};

struct bnb_json {
    bnb_json_value *nodes;
    size_t n_nodes, cap_nodes;
    char *strings; /* arena of len + 1 bytes */
    size_t str_used;
    const bnb_json_value **kids;
};

typedef struct parser {
    const char *s;
    size_t n, pos;
    const char *name;
    bnb_json *doc;
    bool failed;
} parser;

static bool fail_at(parser *p, const char *what) {
    if (!p->failed) {
        /* line number for the message */
        size_t line = 1;
        for (size_t i = 0; i < p->pos && i < p->n; i++) line += p->s[i] == '\n';
        bnb_fail(BNB_ERR_IO, "%s: invalid JSON at byte %zu (line %zu): %s", p->name, p->pos, line, what);
        p->failed = true;
    }
    return false;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static uint32_t new_node(parser *p, int type) {
    bnb_json *d = p->doc;
    if (d->n_nodes == d->cap_nodes) {
        size_t cap = d->cap_nodes ? d->cap_nodes * 2 : 64;
        if (cap > UINT32_MAX - 1) {
            fail_at(p, "too many values");
            return UINT32_MAX;
        }
        bnb_json_value *nn = realloc(d->nodes, cap * sizeof *nn);
        if (!nn) {
            bnb_fail(BNB_ERR_OOM, "%s: out of memory parsing JSON", p->name);
            p->failed = true;
            return UINT32_MAX;
        }
        d->nodes = nn;
        d->cap_nodes = cap;
    }
    bnb_json_value *v = &d->nodes[d->n_nodes];
    memset(v, 0, sizeof *v);
    v->type = (uint8_t)type;
    v->first = v->next = UINT32_MAX;
    return (uint32_t)d->n_nodes++;
}

static int hex_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, uint32_t *out) {
    if (p->n - p->pos < 4) return fail_at(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(p->s[p->pos + i]);
        if (h < 0) return fail_at(p, "bad hex digit in \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

/* Parse a string at p->pos (the opening quote); the unescaped text goes to the arena. */
static bool parse_string(parser *p, const char **out, size_t *out_len) {
    bnb_json *d = p->doc;
    p->pos++; /* quote */
    char *dst = d->strings + d->str_used;
    size_t k = 0;
    for (;;) {
        if (p->pos >= p->n) return fail_at(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) return fail_at(p, "control character in string");
        if (c == '\\') {
            if (p->pos + 1 >= p->n) return fail_at(p, "truncated escape");
            char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': dst[k++] = '"'; break;
            case '\\': dst[k++] = '\\'; break;
            case '/': dst[k++] = '/'; break;
            case 'b': dst[k++] = '\b'; break;
            case 'f': dst[k++] = '\f'; break;
            case 'n': dst[k++] = '\n'; break;
            case 'r': dst[k++] = '\r'; break;
            case 't': dst[k++] = '\t'; break;
            case 'u': {
                uint32_t u;
                if (!read_hex4(p, &u)) return false;
                if (u >= 0xDC00 && u <= 0xDFFF) return fail_at(p, "lone low surrogate");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    uint32_t lo;
                    if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return fail_at(p, "lone high surrogate");
                    p->pos += 2;
                    if (!read_hex4(p, &lo)) return false;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail_at(p, "bad surrogate pair");
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* an escape of >= 6 source bytes never yields more than 4 output bytes */
                k += (size_t)bnb_utf8_encode((int32_t)u, dst + k);
                break;
            }
            default: return fail_at(p, "invalid escape");
            }
            continue;
        }
        if (c < 0x80) {
            dst[k++] = (char)c;
            p->pos++;
            continue;
        }
        int32_t cp;
        int len = bnb_utf8_decode((const uint8_t *)p->s + p->pos, p->n - p->pos, &cp);
        if (cp < 0) return fail_at(p, "invalid UTF-8 in string");
        memcpy(dst + k, p->s + p->pos, (size_t)len);
        k += (size_t)len;
        p->pos += (size_t)len;
    }
    dst[k] = 0;
    d->str_used += k + 1;
    *out = dst;
    *out_len = k;
    return true;
}

static bool parse_number(parser *p, uint32_t node) {
    size_t start = p->pos;
    const char *s = p->s;
    size_t n = p->n, i = p->pos;
    bool is_int = true;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return fail_at(p, "truncated number");
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    } else return fail_at(p, "bad number");
    if (i < n && s[i] == '.') {
        is_int = false;
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return fail_at(p, "bad fraction");
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_int = false;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return fail_at(p, "bad exponent");
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t len = i - start;
    char buf[64];
    double v;
    if (len < sizeof buf) {
        memcpy(buf, s + start, len);
        buf[len] = 0;
        v = strtod(buf, NULL);
    } else {
        char *tmp = malloc(len + 1);
        if (!tmp) return fail_at(p, "out of memory");
        memcpy(tmp, s + start, len);
        tmp[len] = 0;
        v = strtod(tmp, NULL);
        free(tmp);
    }
    bnb_json_value *nv = &p->doc->nodes[node];
    nv->num = v;
    if (is_int) {
        /* exact int64 when it fits */
        bool neg = s[start] == '-';
        uint64_t acc = 0;
        bool ok = true;
        for (size_t j = start + (neg ? 1 : 0); j < i; j++) {
            uint64_t d = (uint64_t)(s[j] - '0');
            if (acc > (UINT64_MAX - d) / 10) {
                ok = false;
                break;
            }
            acc = acc * 10 + d;
        }
        if (ok && (neg ? acc <= (uint64_t)INT64_MAX + 1 : acc <= (uint64_t)INT64_MAX)) {
            nv->is_int = 1;
            nv->ival = neg ? (int64_t)(0 - acc) : (int64_t)acc;
        }
    }
    p->pos = i;
    return true;
}

static bool match_lit(parser *p, const char *lit) {
    size_t l = strlen(lit);
    if (p->n - p->pos < l || memcmp(p->s + p->pos, lit, l) != 0) return fail_at(p, "unexpected character");
    p->pos += l;
    return true;
}

static bool parse_value(parser *p, uint32_t *out, int depth);

static bool parse_container(parser *p, uint32_t node, bool is_object, int depth) {
    char close = is_object ? '}' : ']';
    p->pos++; /* [ or { */
    skip_ws(p);
    uint32_t last = UINT32_MAX, count = 0;
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return true;
    }
    for (;;) {
        const char *key = NULL;
        if (is_object) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"') return fail_at(p, "expected a string key");
            size_t klen;
            if (!parse_string(p, &key, &klen)) return false;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') return fail_at(p, "expected ':'");
            p->pos++;
        }
        uint32_t child;
        if (!parse_value(p, &child, depth + 1)) return false;
        bnb_json_value *nodes = p->doc->nodes; /* may have moved */
        nodes[child].key = key;
        if (last == UINT32_MAX) nodes[node].first = child;
        else nodes[last].next = child;
        last = child;
        count++;
        skip_ws(p);
        if (p->pos >= p->n) return fail_at(p, is_object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            break;
        }
        return fail_at(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->doc->nodes[node].count = count;
    return true;
}

static bool parse_value(parser *p, uint32_t *out, int depth) {
    if (depth > BNB_JSON_MAX_DEPTH) return fail_at(p, "nesting deeper than BNB_JSON_MAX_DEPTH (128)");
    skip_ws(p);
    if (p->pos >= p->n) return fail_at(p, "unexpected end of input");
    char c = p->s[p->pos];
    uint32_t node;
    switch (c) {
    case '{':
    case '[':
        node = new_node(p, c == '{' ? BNB_JSON_OBJECT : BNB_JSON_ARRAY);
        if (node == UINT32_MAX) return false;
        if (!parse_container(p, node, c == '{', depth)) return false;
        break;
    case '"': {
        node = new_node(p, BNB_JSON_STRING);
        if (node == UINT32_MAX) return false;
        const char *s;
        size_t len;
        if (!parse_string(p, &s, &len)) return false;
        p->doc->nodes[node].str = s;
        p->doc->nodes[node].str_len = len;
        break;
    }
    case 't':
    case 'f':
        node = new_node(p, BNB_JSON_BOOL);
        if (node == UINT32_MAX) return false;
        if (!match_lit(p, c == 't' ? "true" : "false")) return false;
        p->doc->nodes[node].boolean = c == 't';
        break;
    case 'n':
        node = new_node(p, BNB_JSON_NULL);
        if (node == UINT32_MAX) return false;
        if (!match_lit(p, "null")) return false;
        break;
    default:
        if (c != '-' && (c < '0' || c > '9')) return fail_at(p, "unexpected character");
        node = new_node(p, BNB_JSON_NUMBER);
        if (node == UINT32_MAX) return false;
        if (!parse_number(p, node)) return false;
        break;
    }
    *out = node;
    return true;
}

bnb_json *bnb_json_parse(const char *text, size_t len, const char *name) {
    if (!name) name = "JSON";
    if (!text && len) return bnb_fail_null(BNB_ERR_INVALID_ARG, "%s: bnb_json_parse: text is NULL", name);
    if (len > (size_t)UINT32_MAX) return bnb_fail_null(BNB_ERR_IO, "%s: JSON text of %zu bytes is too large", name, len);
    bnb_json *doc = calloc(1, sizeof *doc);
    if (!doc) return bnb_fail_null(BNB_ERR_OOM, "%s: out of memory", name);
    doc->strings = malloc(len + 1);
    if (!doc->strings) {
        free(doc);
        return bnb_fail_null(BNB_ERR_OOM, "%s: out of memory", name);
    }
    parser p = {text, len, 0, name, doc, false};
    uint32_t root;
    bool ok = parse_value(&p, &root, 1);
    if (ok) {
        skip_ws(&p);
        if (p.pos != p.n) ok = fail_at(&p, "trailing characters after the value");
    }
    if (ok) {
        /* children pointer arrays, in order */
        doc->kids = malloc((doc->n_nodes ? doc->n_nodes : 1) * sizeof *doc->kids);
        if (!doc->kids) {
            bnb_fail(BNB_ERR_OOM, "%s: out of memory", name);
            ok = false;
        } else {
            size_t k = 0;
            for (size_t i = 0; i < doc->n_nodes; i++) {
                bnb_json_value *v = &doc->nodes[i];
                if (v->type != BNB_JSON_ARRAY && v->type != BNB_JSON_OBJECT) continue;
                v->kids = (const bnb_json_value *const *)(doc->kids + k);
                for (uint32_t c = v->first; c != UINT32_MAX; c = doc->nodes[c].next) doc->kids[k++] = &doc->nodes[c];
            }
        }
    }
    if (!ok) {
        bnb_json_free(doc);
        return NULL;
    }
    return doc;
}

void bnb_json_free(bnb_json *doc) {
    if (!doc) return;
    free(doc->nodes);
    free(doc->strings);
    free(doc->kids);
    free(doc);
}

const bnb_json_value *bnb_json_root(const bnb_json *doc) { return doc && doc->n_nodes ? &doc->nodes[0] : NULL; }
bnb_json_type bnb_json_type_of(const bnb_json_value *v) { return v ? (bnb_json_type)v->type : BNB_JSON_NULL; }
size_t bnb_json_len(const bnb_json_value *v) {
    return v && (v->type == BNB_JSON_ARRAY || v->type == BNB_JSON_OBJECT) ? v->count : 0;
}
const bnb_json_value *bnb_json_at(const bnb_json_value *v, size_t i) {
    return i < bnb_json_len(v) ? v->kids[i] : NULL;
}
const char *bnb_json_key_at(const bnb_json_value *v, size_t i) {
    return v && v->type == BNB_JSON_OBJECT && i < v->count ? v->kids[i]->key : NULL;
}
const bnb_json_value *bnb_json_get(const bnb_json_value *obj, const char *key) {
    if (!obj || obj->type != BNB_JSON_OBJECT || !key) return NULL;
    for (uint32_t i = 0; i < obj->count; i++)
        if (strcmp(obj->kids[i]->key, key) == 0) return obj->kids[i];
    return NULL;
}
double bnb_json_number(const bnb_json_value *v) { return v && v->type == BNB_JSON_NUMBER ? v->num : 0; }
bool bnb_json_bool(const bnb_json_value *v) { return v && v->type == BNB_JSON_BOOL && v->boolean; }
const char *bnb_json_string(const bnb_json_value *v, size_t *len) {
    if (!v || v->type != BNB_JSON_STRING) return NULL;
    if (len) *len = v->str_len;
    return v->str;
}
bool bnb_json_int(const bnb_json_value *v, int64_t *out) {
    if (!v || v->type != BNB_JSON_NUMBER || !v->is_int) return false;
    *out = v->ival;
    return true;
}
