/* Tokenizers: byte tokenizer; byte-level BPE from tokenizer.json (both merge forms) and from GGUF (same ids), with
 * hand-computed expected ids, special tokens, pre-tokenizer splits (expected pieces from Python's `regex` with the
 * GPT-2 / Llama-3 patterns); SentencePiece-style BPE with byte fallback from GGUF (scores) and from tokenizer.json
 * (merge ranks); decode(encode(s)) == s for ASCII, UTF-8, whitespace runs and random bytes; hostile tokenizer files;
 * a 1 MB word encodes in O(n log n). */
#include "bnb-model.h"
#include "test-common.h"

#include <time.h>

/* internal: the pre-tokenizer (src/model/tokenizer-text.c) */
typedef bool (*bnb_piece_fn)(void *ctx, size_t start, size_t end);
bool bnb_pretokenize(bnb_pretok mode, const uint8_t *text, size_t n, bnb_piece_fn fn, void *ctx);

/* ---------------------------------------------------------------------------------------------- helpers */
/* GPT-2 bytes_to_unicode, written out plainly */
static int ref_byte_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256 + k;
}
static int utf8(int cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 63)), o[2] = (char)(0x80 | (cp & 63));
    return 3;
}

static bool ids_equal(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    if (na != nb) return false;
    for (int64_t i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void check_encode(const bnb_tokenizer *t, const char *what, const char *text, bool special, const int32_t *want,
                         int64_t nwant) {
    int32_t ids[256];
    int64_t n = bnb_tokenizer_encode(t, text, strlen(text), ids, 256, false, special);
    char got[512] = "", *p = got;
    for (int64_t i = 0; i < n && i < 40; i++) p += snprintf(p, (size_t)(got + sizeof got - p), "%d ", ids[i]);
    tc_check(ids_equal(ids, n, want, nwant), "%s: \"%s\" -> [%s] (%lld ids, want %lld)", what, text, got, (long long)n,
             (long long)nwant);
}

static bool round_trip(const bnb_tokenizer *t, const char *s, size_t n) {
    int32_t *ids = malloc((n + 8) * sizeof *ids);
    char *out = malloc(n + 8);
    int64_t k = bnb_tokenizer_encode(t, s, n, ids, (int64_t)n + 8, false, false);
    int64_t m = k >= 0 ? bnb_tokenizer_decode(t, ids, k, out, n + 8, false) : -1;
    bool ok = k >= 0 && m == (int64_t)n && memcmp(out, s, n) == 0;
    free(ids);
    free(out);
    return ok;
}

/* ASCII, UTF-8, whitespace runs, random bytes; `avoid_spm_space`: skip inputs containing U+2581 */
static void round_trips(const bnb_tokenizer *t, const char *what, bool avoid_spm_space) {
    const char *fixed[] = {"Hello, world! How are you?", "hello world", "  two leading, three trailing   ",
                           "tabs\t\tand\nnew\r\nlines\n\n\n", "dönüş 日本語 😀 ß", "x\u00a0y", "", " ", "'s 's've",
                           "12345 67.89", "a  b   c    d     e"};
    int ok = 0, n = (int)(sizeof fixed / sizeof fixed[0]);
    for (int i = 0; i < n; i++) ok += round_trip(t, fixed[i], strlen(fixed[i]));
    tc_check(ok == n, "%s: %d/%d fixed strings round trip", what, ok, n);
    tc_rng r;
    tc_rng_seed(&r, 99);
    char buf[300];
    int ok_r = 0, n_r = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = (size_t)tc_rand_int(&r, 200);
        int mode = it % 3; /* random bytes, random ASCII + whitespace, random valid UTF-8 */
        for (size_t k = 0; k < len; k++) {
            if (mode == 0) buf[k] = (char)tc_rng_next(&r);
            else if (mode == 1) buf[k] = " \t\nabcXYZ019'.,!é"[tc_rand_int(&r, 17)];
            else {
                int cp = (int)tc_rand_int(&r, 0x3000);
                if (cp < 32) cp = ' ';
                char u[4];
                int l = utf8(cp, u);
                if (k + (size_t)l > len) break;
                memcpy(buf + k, u, (size_t)l);
                k += (size_t)l - 1;
            }
        }
        if (avoid_spm_space) {
            bool has = false;
            for (size_t k = 0; k + 2 < len; k++) has |= !memcmp(buf + k, "\xE2\x96\x81", 3);
            if (has) continue;
        }
        n_r++;
        ok_r += round_trip(t, buf, len);
    }
    tc_check(ok_r == n_r, "%s: %d/%d random strings (bytes, ASCII+whitespace, UTF-8) round trip", what, ok_r, n_r);
}

/* ---------------------------------------------------------------------------------------------- test vocabularies */
/* byte-level BPE: ids 0..255 = the mapped code point of byte id, then merged tokens, then added tokens */
static const char *const g_merged[] = {"he", "ll", "hell", "hello", "\xC4\xA0w", "or", "\xC4\xA0wor", "\xC4\xA0worl",
                                       "\xC4\xA0world"};
static const char *const g_merges[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"},
                                          {"o", "r"}, {"\xC4\xA0w", "or"}, {"\xC4\xA0wor", "l"}, {"\xC4\xA0worl", "d"}};
enum { N_MERGED = 9, ID_END = 265, ID_USER = 266 };

static void json_escape(char **p, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *(*p)++ = '\\';
        if ((unsigned char)*s < 0x20) *p += sprintf(*p, "\\u%04x", *s);
        else *(*p)++ = *s;
    }
}

static char *bpe_json(bool pair_form) {
    char *j = malloc(1 << 16), *p = j;
    p += sprintf(p, "{\"added_tokens\": [{\"id\": %d, \"content\": \"<|end|>\", \"special\": true},"
                    " {\"id\": %d, \"content\": \"<user>\", \"special\": false}],"
                    " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {",
                 ID_END, ID_USER);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = utf8(ref_byte_cp(b), u);
        u[l] = 0;
        *p++ = '"';
        json_escape(&p, u);
        p += sprintf(p, "\": %d, ", b);
    }
    for (int i = 0; i < N_MERGED; i++) p += sprintf(p, "\"%s\": %d%s", g_merged[i], 256 + i, i + 1 < N_MERGED ? ", " : "");
    p += sprintf(p, "}, \"merges\": [");
    for (int i = 0; i < N_MERGED; i++) {
        if (pair_form) p += sprintf(p, "[\"%s\", \"%s\"]", g_merges[i][0], g_merges[i][1]);
        else p += sprintf(p, "\"%s %s\"", g_merges[i][0], g_merges[i][1]);
        p += sprintf(p, "%s", i + 1 < N_MERGED ? ", " : "]}}");
    }
    return j;
}

static bnb_gguf *bpe_gguf(void **mem) {
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    static char texts[267][8];
    const char *tok[267], *mer[N_MERGED];
    int32_t types[267];
    static char mtext[N_MERGED][32];
    for (int b = 0; b < 256; b++) {
        int l = utf8(ref_byte_cp(b), texts[b]);
        texts[b][l] = 0;
        tok[b] = texts[b];
        types[b] = 1;
    }
    for (int i = 0; i < N_MERGED; i++) {
        tok[256 + i] = g_merged[i];
        types[256 + i] = 1;
        snprintf(mtext[i], sizeof mtext[i], "%s %s", g_merges[i][0], g_merges[i][1]);
        mer[i] = mtext[i];
    }
    tok[ID_END] = "<|end|>", types[ID_END] = 3;
    tok[ID_USER] = "<user>", types[ID_USER] = 4;
    bnb_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    bnb_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, 267);
    bnb_gguf_set_arr(w, "tokenizer.ggml.token_type", BNB_GGUF_INT32, types, 267);
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.merges", mer, N_MERGED);
    bnb_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", ID_END);
    size_t size;
    bnb_gguf_writer_write_memory(w, mem, &size);
    bnb_gguf_writer_free(w);
    return bnb_gguf_parse_memory(*mem, size, "bpe.gguf");
}

/* SPM: <unk> <s> </s>, 256 byte tokens, then pieces; scores favour longer pieces */
static const char *const g_pieces[] = {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello",
                                       "\xE2\x96\x81hello", "\xE2\x96\x81w", "or", "\xE2\x96\x81wor", "ld",
                                       "\xE2\x96\x81world"};
enum { N_PIECES = 18, SPM_BASE = 259, SPM_N = SPM_BASE + N_PIECES };

static bnb_gguf *spm_gguf(void **mem, const char *model) {
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    const char *tok[SPM_N];
    float score[SPM_N];
    int32_t types[SPM_N];
    static char bytes[256][8];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    score[0] = score[1] = score[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[3 + b] = bytes[b], types[3 + b] = 6, score[3 + b] = 0;
    }
    for (int i = 0; i < N_PIECES; i++) {
        tok[SPM_BASE + i] = g_pieces[i];
        types[SPM_BASE + i] = 1;
        score[SPM_BASE + i] = i < 8 ? -10.0f : (float)strlen(g_pieces[i]);
    }
    bnb_gguf_set_str(w, "tokenizer.ggml.model", model);
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, SPM_N);
    bnb_gguf_set_arr(w, "tokenizer.ggml.scores", BNB_GGUF_FLOAT32, score, SPM_N);
    bnb_gguf_set_arr(w, "tokenizer.ggml.token_type", BNB_GGUF_INT32, types, SPM_N);
    bnb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    bnb_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    bnb_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    size_t size;
    bnb_gguf_writer_write_memory(w, mem, &size);
    bnb_gguf_writer_free(w);
    return bnb_gguf_parse_memory(*mem, size, "spm.gguf");
}

static char *spm_json(void) {
    char *j = malloc(1 << 16), *p = j;
    p += sprintf(p, "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, \"content\":"
                    " \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
                    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\":"
                    " \"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
                    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"vocab\": {"
                    "\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
    for (int b = 0; b < 256; b++) p += sprintf(p, ", \"<0x%02X>\": %d", b, 3 + b);
    for (int i = 0; i < N_PIECES; i++) p += sprintf(p, ", \"%s\": %d", g_pieces[i], SPM_BASE + i);
    p += sprintf(p, "}, \"merges\": [\"h e\", \"l l\", \"he ll\", \"hell o\", \"\xE2\x96\x81 hello\", \"\xE2\x96\x81 w\","
                    " \"o r\", \"\xE2\x96\x81w or\", \"l d\", \"\xE2\x96\x81wor ld\"]}}");
    return j;
}

/* ---------------------------------------------------------------------------------------------- tests */
static void test_byte(void) {
    bnb_tokenizer *t = bnb_tokenizer_new_byte(true);
    tc_check(t && bnb_tokenizer_n_vocab(t) == 258 && bnb_tokenizer_bos(t) == 256 && bnb_tokenizer_eos(t) == 257,
             "byte tokenizer: 258 tokens, BOS 256, EOS 257");
    const int32_t want[] = {256, 'h', 'i', 0xC3, 0xA9};
    int32_t ids[8];
    int64_t n = bnb_tokenizer_encode(t, "hi\xC3\xA9", 4, ids, 8, true, false);
    tc_check(ids_equal(ids, n, want, 5), "byte ids = bytes, BOS first");
    char out[16];
    tc_check(bnb_tokenizer_decode(t, ids, n, out, sizeof out, true) == 4 && !memcmp(out, "hi\xC3\xA9", 4),
             "decode skips BOS");
    tc_check(bnb_tokenizer_encode(t, "abcdef", 6, ids, 2, false, false) == 6 && ids[0] == 'a' && ids[1] == 'b',
             "encode with a small buffer returns the full count");
    int32_t bad = 300;
    tc_check(bnb_tokenizer_decode(t, &bad, 1, out, sizeof out, false) == -1 && bnb_last_status() == BNB_ERR_INVALID_ARG,
             "decode of an invalid id fails");
    round_trips(t, "byte", false);
    bnb_tokenizer_free(t);
    t = bnb_tokenizer_new_byte(false);
    tc_check(t && bnb_tokenizer_n_vocab(t) == 256 && bnb_tokenizer_bos(t) == -1, "byte tokenizer without BOS/EOS");
    bnb_tokenizer_free(t);
}

typedef struct pieces {
    const uint8_t *s;
    char out[1024];
    char *p;
} pieces;
static bool collect(void *ctx, size_t a, size_t b) {
    pieces *pc = ctx;
    pc->p += sprintf(pc->p, "[%.*s]", (int)(b - a), pc->s + a);
    return true;
}

static void test_pretokenizer(void) {
    const char *s = "Hello world's  12345 !!x\n\n  y\tI'LL \xC3\xA9\xE6\x97\xA5\xE6\x9C\xAC ok";
    /* from Python: regex.findall(<pattern>, s) */
    const char *want[3] = {
        "[Hello][ world]['s][ ][ 12345][ !!][x][\n\n ][ y][\t][I]['][LL][ \xC3\xA9\xE6\x97\xA5\xE6\x9C\xAC][ ok]",
        "[Hello][ world]['s][ ][ ][123][45][ !!][x][\n\n][ ][ y][\tI]['LL][ \xC3\xA9\xE6\x97\xA5\xE6\x9C\xAC][ ok]",
        "[Hello][ world]['s][  ][1][2][3][4][5][ !!][x][\n\n ][ y][\t][I]['][LL][ \xC3\xA9\xE6\x97\xA5\xE6\x9C\xAC][ ok]"};
    const char *names[3] = {"GPT-2", "Llama-3", "GPT-2 + single digits"};
    const bnb_pretok modes[3] = {BNB_PRETOK_GPT2, BNB_PRETOK_LLAMA3, BNB_PRETOK_GPT2_DIGITS};
    for (int m = 0; m < 3; m++) {
        pieces pc = {(const uint8_t *)s, "", NULL};
        pc.p = pc.out;
        bnb_pretokenize(modes[m], pc.s, strlen(s), collect, &pc);
        tc_check(!strcmp(pc.out, want[m]), "pre-tokenizer %s: %s", names[m], pc.out);
    }
}

static void test_bpe(void) {
    char *j1 = bpe_json(false), *j2 = bpe_json(true);
    bnb_tokenizer *t1 = bnb_tokenizer_from_json(j1, strlen(j1), "bpe1.json");
    bnb_tokenizer *t2 = bnb_tokenizer_from_json(j2, strlen(j2), "bpe2.json");
    void *mem = NULL;
    bnb_gguf *g = bpe_gguf(&mem);
    bnb_tokenizer *t3 = bnb_tokenizer_from_gguf(g);
    if (!tc_require(t1 && t2 && t3, "BPE tokenizers load: %s", bnb_last_error())) return;
    tc_check(bnb_tokenizer_get_kind(t1) == BNB_TOKENIZER_BPE && bnb_tokenizer_n_vocab(t1) == 267 &&
                 bnb_tokenizer_is_special(t1, ID_END) && !bnb_tokenizer_is_special(t1, ID_USER),
             "BPE from tokenizer.json: kind, vocabulary, special flags");
    const bnb_tokenizer *ts[3] = {t1, t2, t3};
    const char *nm[3] = {"json \"a b\" merges", "json [a, b] merges", "gguf"};
    for (int k = 0; k < 3; k++) {
        check_encode(ts[k], nm[k], "hello world", false, (const int32_t[]){259, 264}, 2);
        check_encode(ts[k], nm[k], "hellohello world!", false, (const int32_t[]){259, 259, 264, '!'}, 4);
        check_encode(ts[k], nm[k], "hell", false, (const int32_t[]){258}, 1);
        check_encode(ts[k], nm[k], "hello<|end|>", true, (const int32_t[]){259, ID_END}, 2);
        check_encode(ts[k], nm[k], "hello<|end|>", false, (const int32_t[]){259, '<', '|', 'e', 'n', 'd', '|', '>'}, 8);
        check_encode(ts[k], nm[k], "<user> world", true, (const int32_t[]){ID_USER, 264}, 2);
        /* ' ' maps to U+0120 'Ġ' = id 32; "\n" to U+010A = id 10 */
        check_encode(ts[k], nm[k], "  world\n", false, (const int32_t[]){' ', 264, '\n'}, 3);
        round_trips(ts[k], nm[k], false);
    }
    int32_t ids[4] = {259, ID_END, 264, ID_USER};
    char out[64];
    int64_t n = bnb_tokenizer_decode(t1, ids, 4, out, sizeof out, true);
    tc_check(n == 17 && !memcmp(out, "hello world<user>", 17), "decode skip_special drops <|end|>, keeps <user>");
    n = bnb_tokenizer_decode(t1, ids, 4, out, sizeof out, false);
    tc_check(n == 24 && !memcmp(out, "hello<|end|> world<user>", 24), "decode keeps special text");
    tc_check(bnb_tokenizer_token_bytes(t1, 264, out, sizeof out) == 6 && !memcmp(out, " world", 6),
             "token_bytes: \"\\u0120world\" -> \" world\"");
    tc_check(bnb_tokenizer_find(t1, "hello") == 259 && bnb_tokenizer_find(t1, "nope") == -1, "vocabulary lookup");
    tc_check(bnb_tokenizer_eos(t3) == ID_END, "GGUF eos id");
    /* a hostile 1 MB word: the merge queue keeps this O(n log n) */
    size_t big = 1 << 20;
    char *s = malloc(big);
    for (size_t i = 0; i < big; i++) s[i] = "hel"[i % 3 == 2 ? 2 : i % 3];
    clock_t c0 = clock();
    int64_t cnt = bnb_tokenizer_encode(t1, s, big, NULL, 0, false, false);
    double sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
    tc_check(cnt > 0 && sec < 10, "1 MB single word: %lld ids in %.2f s", (long long)cnt, sec);
    tc_check(round_trip(t1, s, big), "1 MB single word round trips");
    free(s);
    bnb_tokenizer_free(t1);
    bnb_tokenizer_free(t2);
    bnb_tokenizer_free(t3);
    bnb_gguf_free(g);
    free(mem);
    free(j1);
    free(j2);
}

static void test_spm(void) {
    void *mem = NULL;
    bnb_gguf *g = spm_gguf(&mem, "llama");
    bnb_tokenizer *t1 = bnb_tokenizer_from_gguf(g);
    char *j = spm_json();
    bnb_tokenizer *t2 = bnb_tokenizer_from_json(j, strlen(j), "spm.json");
    if (!tc_require(t1 && t2, "SPM tokenizers load: %s", bnb_last_error())) return;
    tc_check(bnb_tokenizer_get_kind(t1) == BNB_TOKENIZER_SPM && bnb_tokenizer_get_kind(t2) == BNB_TOKENIZER_SPM &&
                 bnb_tokenizer_bos(t1) == 1 && bnb_tokenizer_add_bos(t1) && bnb_tokenizer_bos(t2) == 1,
             "SPM kind, BOS 1, add_bos");
    const bnb_tokenizer *ts[2] = {t1, t2};
    const char *nm[2] = {"spm gguf (scores)", "spm json (merge ranks)"};
    const int32_t B = 3; /* id of <0x00> */
    for (int k = 0; k < 2; k++) {
        check_encode(ts[k], nm[k], "hello world", false, (const int32_t[]){SPM_BASE + 12, SPM_BASE + 17}, 2);
        /* é is not in the vocabulary: byte fallback <0xC3><0xA9> */
        check_encode(ts[k], nm[k], "h\xC3\xA9", false, (const int32_t[]){SPM_BASE, SPM_BASE + 1, B + 0xC3, B + 0xA9}, 4);
        check_encode(ts[k], nm[k], "hello</s>hello", true, (const int32_t[]){SPM_BASE + 12, 2, SPM_BASE + 12}, 3);
        round_trips(ts[k], nm[k], true);
        int32_t ids[32];
        char out[64];
        int64_t n = bnb_tokenizer_encode(ts[k], " hello", 6, ids, 32, true, false);
        int64_t m = bnb_tokenizer_decode(ts[k], ids, n, out, sizeof out, true);
        tc_check(ids[0] == 1 && m == 6 && !memcmp(out, " hello", 6), "%s: BOS + leading space round trip", nm[k]);
    }
    bnb_tokenizer_free(t1);
    bnb_tokenizer_free(t2);
    bnb_gguf_free(g);
    free(mem);
    free(j);
}

static void bad_json(const char *text, const char *what, bnb_status want, const char *field) {
    bnb_tokenizer *t = bnb_tokenizer_from_json(text, strlen(text), "bad-tok.json");
    const char *names[] = {"bad-tok.json", field, NULL};
    tc_check_error(t ? BNB_OK : bnb_last_status(), want, what, names);
    bnb_tokenizer_free(t);
}

static void test_hostile(void) {
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, \"merges\": []}}", "huge token id", BNB_ERR_IO, "ids");
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "negative id", BNB_ERR_IO, "model.vocab");
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}}", "vocab not an object", BNB_ERR_IO, "model.vocab");
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "merge without a space",
             BNB_ERR_IO, "model.merges");
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", "merge pair of one",
             BNB_ERR_IO, "model.merges");
    bad_json("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram model", BNB_ERR_UNSUPPORTED, "Unigram");
    bad_json("{\"added_tokens\": [{\"id\": 1}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
             "added token without content", BNB_ERR_IO, "added_tokens");
    bad_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "empty vocabulary", BNB_ERR_IO, "");
    char deep[400];
    memset(deep, '[', 300);
    deep[300] = 0;
    bad_json(deep, "deep nesting", BNB_ERR_IO, "nesting");
    void *mem = NULL;
    bnb_gguf *g = spm_gguf(&mem, "bert");
    bnb_tokenizer *t = bnb_tokenizer_from_gguf(g);
    const char *n1[] = {"spm.gguf", "tokenizer.ggml.model", NULL};
    tc_check_error(t ? BNB_OK : bnb_last_status(), BNB_ERR_UNSUPPORTED, "GGUF tokenizer model 'bert'", n1);
    bnb_gguf_free(g);
    free(mem);
    /* bos id out of range */
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    const char *tok[2] = {"a", "b"};
    bnb_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, 2);
    bnb_gguf_set_arr_str(w, "tokenizer.ggml.merges", tok, 0);
    bnb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 7);
    size_t size;
    bnb_gguf_writer_write_memory(w, &mem, &size);
    g = bnb_gguf_parse_memory(mem, size, "bos.gguf");
    t = bnb_tokenizer_from_gguf(g);
    const char *n2[] = {"bos.gguf", "tokenizer.ggml.bos_token_id", NULL};
    tc_check_error(t ? BNB_OK : bnb_last_status(), BNB_ERR_IO, "bos id past the vocabulary", n2);
    bnb_gguf_free(g);
    free(mem);
    int32_t types[1] = {1};
    bnb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 0);
    bnb_gguf_set_arr(w, "tokenizer.ggml.token_type", BNB_GGUF_INT32, types, 1);
    bnb_gguf_writer_write_memory(w, &mem, &size);
    g = bnb_gguf_parse_memory(mem, size, "types.gguf");
    t = bnb_tokenizer_from_gguf(g);
    const char *n3[] = {"types.gguf", "tokenizer.ggml.token_type", NULL};
    tc_check_error(t ? BNB_OK : bnb_last_status(), BNB_ERR_IO, "token_type count mismatch", n3);
    bnb_gguf_free(g);
    free(mem);
    bnb_gguf_writer_free(w);
    const char *n4[] = {"/nonexistent/tokenizer.json", NULL};
    tc_check_error(bnb_tokenizer_load_json("/nonexistent/tokenizer.json") ? BNB_OK : bnb_last_status(), BNB_ERR_IO,
                   "missing tokenizer.json", n4);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-v")) tc_verbose = 1;
    test_byte();
    test_pretokenizer();
    test_bpe();
    test_spm();
    test_hostile();
    return tc_summary("test-tokenizer");
}
