/* Quantization tests: code maps against bitsandbytes' values and properties, blockwise 8-bit and 4-bit quantize /
 * dequantize as graph ops (nearest code checked element by element against a brute-force search, exact dequantized
 * values, all-zero and short blocks, F32/F16/BF16 inputs, nibble order, nested absmax, stochastic rounding), quantile
 * estimation against an exact sort, host set/get of quantized tensors, mul_mat with a quantized weight, bad input,
 * and CPU vs CUDA codes when a GPU is there (--backend cuda). */
#include "test-common.h"

#include "../src/quant/quant.h" /* layout and the scalar search, to read raw storage */

/* bitsandbytes' signed dynamic map (create_dynamic_map(signed=True)), the published float32 values */
static const double ref_dynamic_signed[256] = {
    -0.992968738079071, -0.9789062738418579, -0.96484375, -0.9507812261581421, -0.936718761920929, -0.922656238079071,
    -0.9085937738418579, -0.89453125, -0.8804687261581421, -0.866406261920929, -0.852343738079071, -0.8382812738418579,
    -0.82421875, -0.8101562261581421, -0.796093761920929, -0.782031238079071, -0.7679687738418579, -0.75390625,
    -0.7398437261581421, -0.725781261920929, -0.7117187976837158, -0.6976562738418579, -0.68359375, -0.6695312261581421,
    -0.655468761920929, -0.6414062976837158, -0.6273437738418579, -0.61328125, -0.5992187261581421, -0.585156261920929,
    -0.5710937976837158, -0.5570312738418579, -0.54296875, -0.5289062261581421, -0.5148437023162842, -0.500781238079071,
    -0.48671871423721313, -0.47265625, -0.4585937261581421, -0.44453126192092896, -0.43046873807907104,
    -0.4164062440395355, -0.40234375, -0.3882812261581421, -0.37421876192092896, -0.36015623807907104,
    -0.3460937440395355, -0.33203125, -0.3179687261581421, -0.30390626192092896, -0.28984373807907104,
    -0.2757812738418579, -0.26171875, -0.24765624105930328, -0.23359374701976776, -0.21953125298023224,
    -0.20546874403953552, -0.19140625, -0.17734375596046448, -0.16328124701976776, -0.14921875298023224,
    -0.13515624403953552, -0.12109375, -0.10703125596046448, -0.09859374910593033, -0.09578125923871994,
    -0.09296875447034836, -0.09015624970197678, -0.08734375238418579, -0.08453124761581421, -0.08171875774860382,
    -0.07890625298023224, -0.07609374821186066, -0.07328125089406967, -0.07046874612569809, -0.0676562562584877,
    -0.06484375149011612, -0.062031250447034836, -0.05921875312924385, -0.05640624836087227, -0.053593751043081284,
    -0.05078125, -0.047968748956918716, -0.04515625163912773, -0.04234374687075615, -0.039531249552965164,
    -0.03671875223517418, -0.033906251192092896, -0.031093750149011612, -0.028281250968575478, -0.025468749925494194,
    -0.02265625074505806, -0.019843751564621925, -0.017031250521540642, -0.014218750409781933, -0.011406250298023224,
    -0.009718749672174454, -0.009156249463558197, -0.008593750186264515, -0.008031249977648258, -0.0074687497690320015,
    -0.006906250026077032, -0.006343749817460775, -0.005781250074505806, -0.0052187503315508366,
    -0.0046562496572732925, -0.004093749914318323, -0.0035312497057020664, -0.002968749962747097,
    -0.002406249986961484, -0.001843750011175871, -0.001281249918974936, -0.0009437500848434865,
    -0.0008312499849125743, -0.0007187500596046448, -0.0006062500760890543, -0.000493750034365803,
    -0.0003812500217463821, -0.0002687500382307917, -0.00015625001105945557, -8.874999912222847e-05,
    -6.625000241911039e-05, -4.374999844003469e-05, -2.1249998098937795e-05, -7.749999895168003e-06,
    -3.250000190746505e-06, -5.500000384017767e-07, 0.0, 5.500000384017767e-07, 3.250000190746505e-06,
    7.749999895168003e-06, 2.1249998098937795e-05, 4.374999844003469e-05, 6.625000241911039e-05, 8.874999912222847e-05,
    0.00015625001105945557, 0.0002687500382307917, 0.0003812500217463821, 0.000493750034365803, 0.0006062500760890543,
    0.0007187500596046448, 0.0008312499849125743, 0.0009437500848434865, 0.001281249918974936, 0.001843750011175871,
    0.002406249986961484, 0.002968749962747097, 0.0035312497057020664, 0.004093749914318323, 0.0046562496572732925,
    0.0052187503315508366, 0.005781250074505806, 0.006343749817460775, 0.006906250026077032, 0.0074687497690320015,
    0.008031249977648258, 0.008593750186264515, 0.009156249463558197, 0.009718749672174454, 0.011406250298023224,
    0.014218750409781933, 0.017031250521540642, 0.019843751564621925, 0.02265625074505806, 0.025468749925494194,
    0.028281250968575478, 0.031093750149011612, 0.033906251192092896, 0.03671875223517418, 0.039531249552965164,
    0.04234374687075615, 0.04515625163912773, 0.047968748956918716, 0.05078125, 0.053593751043081284,
    0.05640624836087227, 0.05921875312924385, 0.062031250447034836, 0.06484375149011612, 0.0676562562584877,
    0.07046874612569809, 0.07328125089406967, 0.07609374821186066, 0.07890625298023224, 0.08171875774860382,
    0.08453124761581421, 0.08734375238418579, 0.09015624970197678, 0.09296875447034836, 0.09578125923871994,
    0.09859374910593033, 0.10703125596046448, 0.12109375, 0.13515624403953552, 0.14921875298023224,
    0.16328124701976776, 0.17734375596046448, 0.19140625, 0.20546874403953552, 0.21953125298023224,
    0.23359374701976776, 0.24765624105930328, 0.26171875, 0.2757812738418579, 0.28984373807907104,
    0.30390626192092896, 0.3179687261581421, 0.33203125, 0.3460937440395355, 0.36015623807907104,
    0.37421876192092896, 0.3882812261581421, 0.40234375, 0.4164062440395355, 0.43046873807907104,
    0.44453126192092896, 0.4585937261581421, 0.47265625, 0.48671871423721313, 0.500781238079071, 0.5148437023162842,
    0.5289062261581421, 0.54296875, 0.5570312738418579, 0.5710937976837158, 0.585156261920929, 0.5992187261581421,
    0.61328125, 0.6273437738418579, 0.6414062976837158, 0.655468761920929, 0.6695312261581421, 0.68359375,
    0.6976562738418579, 0.7117187976837158, 0.725781261920929, 0.7398437261581421, 0.75390625, 0.7679687738418579,
    0.782031238079071, 0.796093761920929, 0.8101562261581421, 0.82421875, 0.8382812738418579, 0.852343738079071,
    0.866406261920929, 0.8804687261581421, 0.89453125, 0.9085937738418579, 0.922656238079071, 0.936718761920929,
    0.9507812261581421, 0.96484375, 0.9789062738418579, 0.992968738079071, 1.0};

static bnb_backend *g_be;       /* backend under test */
static bnb_backend *g_cpu_ref;  /* CPU backend for the CPU-vs-CUDA comparison (CUDA runs only) */

/* ------------------------------------------------------------------------------------------------ maps */
static bool sorted_nondecreasing(const float *m, int n) {
    for (int i = 1; i < n; i++)
        if (m[i] < m[i - 1]) return false;
    return true;
}

static void test_maps(void) {
    float m[256];
    tc_check(bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, m) == BNB_OK, "dynamic signed map builds");
    int diff = 0, zeros = 0;
    for (int i = 0; i < 256; i++) {
        diff += m[i] != (float)ref_dynamic_signed[i];
        zeros += m[i] == 0.0f;
    }
    tc_check(diff == 0, "dynamic signed map equals bitsandbytes' 256 values bit for bit (%d differ)", diff);
    tc_check(fabsf(m[0] - -0.99297f) < 1e-5f && m[255] == 1.0f && zeros == 1 && sorted_nondecreasing(m, 256),
             "dynamic signed: min %.6f max %.6f, %d zeros, sorted", m[0], m[255], zeros);
    bnb_qmap_fill(BNB_QMAP_DYNAMIC_UNSIGNED, m);
    zeros = 0;
    bool nonneg = true;
    for (int i = 0; i < 256; i++) {
        nonneg &= m[i] >= 0.0f;
        zeros += m[i] == 0.0f;
    }
    tc_check(nonneg && m[255] == 1.0f && zeros == 1 && sorted_nondecreasing(m, 256) && m[1] > 0.0f,
             "dynamic unsigned: all >= 0, max 1, one zero, sorted (min nonzero %g)", m[1]);
    /* general construction: the defaults through bnb_qmap_dynamic are the same map */
    float m2[256];
    bnb_qmap_dynamic(m2, false, 7, 8);
    tc_check(!memcmp(m, m2, sizeof m), "bnb_qmap_dynamic(unsigned, 7, 8) == DYNAMIC_UNSIGNED");
    tc_check(bnb_qmap_dynamic(m2, true, 4, 8) == BNB_OK && sorted_nondecreasing(m2, 256) && m2[255] == 1.0f,
             "dynamic signed with 4 exponent bits builds, sorted, max 1");
    tc_check(bnb_qmap_dynamic(m2, true, 9, 8) == BNB_ERR_INVALID_ARG, "dynamic map rejects 9 exponent bits of 8");
    bnb_qmap_fill(BNB_QMAP_LINEAR_SIGNED, m);
    zeros = 0;
    for (int i = 0; i < 256; i++) zeros += m[i] == 0.0f;
    tc_check(m[0] == -1.0f && m[255] == 1.0f && m[127] == 0.0f && sorted_nondecreasing(m, 256) &&
                 fabsf(m[128]) < 1e-6f && fabsf(m[200] - (-1.0f + 2.0f * 199 / 254)) < 1e-6f,
             "linear signed: 255 even values on [-1, 1] + one 0 at 127");
    bnb_qmap_fill(BNB_QMAP_LINEAR_UNSIGNED, m);
    double maxd = 0;
    for (int i = 0; i < 256; i++) maxd = fmax(maxd, fabs(m[i] - i / 255.0));
    tc_check(m[0] == 0.0f && m[255] == 1.0f && maxd < 1e-7, "linear unsigned: i/255 (max diff %.2g)", maxd);
    bnb_qmap_fill(BNB_QMAP_NF4, m);
    const double nf4[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
    diff = 0;
    for (int i = 0; i < 16; i++) diff += m[i] != (float)nf4[i];
    tc_check(diff == 0 && m[16] == 0.0f, "NF4 values exact");
    bnb_qmap_fill(BNB_QMAP_FP4, m);
    const double fp4[8] = {0, 0.005208333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25};
    diff = 0;
    for (int i = 0; i < 8; i++) diff += m[i] != (float)fp4[i] || m[i + 8] != -(float)fp4[i];
    tc_check(diff == 0, "FP4 values exact (bit 3 = sign)");
    tc_check(bnb_qmap_fill(BNB_QMAP_QUANTILE, m) == BNB_ERR_INVALID_ARG, "quantile map needs data");
    /* the scalar search picks a nearest value (ties on a midpoint either side) */
    bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, m);
    tc_rng r;
    tc_rng_seed(&r, 11);
    int bad = 0;
    for (int t = 0; t < 200000; t++) {
        float y = tc_rand_range(&r, -1.0f, 1.0f);
        if (t % 3 == 0) y *= 0.001f;
        int c = bnb_qsearch(m, y, 0.f, false);
        double best = 1e9;
        for (int k = 0; k < 256; k++) best = fmin(best, fabs((double)m[k] - y));
        bad += fabs((double)m[c] - y) > best + 1e-9;
    }
    tc_check(bad == 0, "bnb_qsearch returns a nearest code (200000 draws, %d not nearest)", bad);
    tc_check(bnb_qsearch(m, 1.0f, 0.f, false) == 255 && bnb_qsearch(m, -1.0f, 0.f, false) == 0 &&
                 bnb_qsearch(m, 0.0f, 0.f, false) == 127,
             "bnb_qsearch: 1 -> 255, -1 -> 0, 0 -> 127");
}

/* The direct bucket table of the CUDA quantize kernels (quant.h bnb_qd_*): the code it gives must equal the
 * reference search (bnb_qsearch for the 8-bit maps, bnb_nf4_encode for NF4) at every bucket's ends, around every
 * code change (+-4 ulps), at random points of each bucket, below the first bucket and at +-0. The emin values are
 * the CUDA kernels' (src/cuda/quant-direct.cuh). */
static int qd_ref(int which, const float *map, float y) {
    return which == 3 ? bnb_nf4_encode(y) : bnb_qsearch(map, y, 0.f, false);
}
static void test_direct_table(void) {
    static const struct { bnb_qmap map; int emin; const char *name; } cases[] = {
        {BNB_QMAP_DYNAMIC_SIGNED, 104, "dynamic signed"},
        {BNB_QMAP_DYNAMIC_UNSIGNED, 104, "dynamic unsigned"},
        {BNB_QMAP_LINEAR_UNSIGNED, 104, "linear unsigned"},
        {BNB_QMAP_NF4, 122, "nf4"}};
    tc_rng r;
    tc_rng_seed(&r, 23);
    for (int w = 0; w < 4; w++) {
        float map[256] = {0};
        if (w < 3 && bnb_qmap_fill(cases[w].map, map) != BNB_OK) continue;
        const int emin = cases[w].emin, nq = BNB_QD_NQ(emin);
        uint32_t *tab = tc_malloc((size_t)(2 * nq) * sizeof(uint32_t));
        bool built = w == 3 ? bnb_qd_build(bnb_qd_code_nf4, NULL, emin, tab)
                            : bnb_qd_build(bnb_qd_code_map, map, emin, tab);
        if (!tc_check(built, "direct table %s builds", cases[w].name)) {
            free(tab);
            continue;
        }
        const float tiny = bnb_qt_bits_f((uint32_t)emin << 23);
        long long n = 0, bad = 0;
#define QD_PROBE(yv)                                                                                                  \
    do {                                                                                                              \
        const float y_ = (yv);                                                                                        \
        const int got = (int)((bnb_qd_word(tab, y_, emin, tiny) >> 16) & 0xffu);                                      \
        n++;                                                                                                          \
        if (got != qd_ref(w, map, y_) && bad++ < 5)                                                                   \
            fprintf(stderr, "  %s: y = %a: table %d, search %d\n", cases[w].name, (double)y_, got, qd_ref(w, map, y_)); \
    } while (0)
        for (int side = 0; side < 2; side++) {
            const float sg = side ? -1.f : 1.f;
            QD_PROBE(sg * 0.0f);
            QD_PROBE(sg * bnb_qt_bits_f(1u));
            QD_PROBE(sg * tiny * 0.5f);
            for (int i = 0; i < nq; i++) {
                const uint32_t lo = ((uint32_t)emin << 23) + ((uint32_t)i << 16);
                const int c0 = qd_ref(w, map, sg * bnb_qt_bits_f(lo));
                uint32_t a = 0, b = 0xffffu; /* the bucket's code change, if any, by bisection on the reference */
                if (qd_ref(w, map, sg * bnb_qt_bits_f(lo | 0xffffu)) != c0) {
                    while (b - a > 1) {
                        const uint32_t mid = (a + b) / 2;
                        if (qd_ref(w, map, sg * bnb_qt_bits_f(lo | mid)) == c0) a = mid;
                        else b = mid;
                    }
                    for (int d = -4; d <= 4; d++) {
                        const int64_t off = (int64_t)b + d;
                        if (off >= 0 && off <= 0xffff) QD_PROBE(sg * bnb_qt_bits_f(lo | (uint32_t)off));
                    }
                }
                QD_PROBE(sg * bnb_qt_bits_f(lo));
                QD_PROBE(sg * bnb_qt_bits_f(lo | 0xffffu));
                for (int k = 0; k < 4; k++) QD_PROBE(sg * bnb_qt_bits_f(lo | (tc_rng_next(&r) & 0xffffu)));
            }
        }
        for (int k = 0; k < 200000; k++) QD_PROBE(tc_rand_range(&r, -1.999f, 1.999f));
#undef QD_PROBE
        tc_check(bad == 0, "direct table %s == reference search at %lld probes (%lld differ)", cases[w].name, n, bad);
        free(tab);
    }
}

/* ------------------------------------------------------------------------------------------------ graph runs */
typedef struct qrun {
    uint8_t *raw;   /* the quantized tensor's storage */
    size_t raw_size;
    float *deq;     /* dequantized (as f32) */
    bnb_status st;
} qrun;

static void qrun_free(qrun *q) {
    free(q->raw);
    free(q->deq);
    memset(q, 0, sizeof *q);
}

/* Quantize host data x[n] (stored as xtype) on be with the given op and dequantize it back to f32. */
static qrun run_quant(bnb_backend *be, const float *x, int64_t n, bnb_type xtype, bnb_type qtype, bnb_qmap map,
                      const float *user_map, int block, bool nested, bool stochastic, uint32_t seed) {
    qrun q = {0};
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *tx = bnb_set_input(bnb_new_tensor_1d(ctx, xtype, n));
    bnb_tensor *code = user_map ? bnb_set_input(bnb_new_tensor_1d(ctx, BNB_TYPE_F32, 256)) : NULL;
    bnb_tensor *tq;
    if (qtype == BNB_TYPE_Q8_BLOCK)
        tq = stochastic ? bnb_quantize_blockwise_stochastic(ctx, tx, map, code, block, nested, seed)
                        : bnb_quantize_blockwise(ctx, tx, map, code, block, nested);
    else
        tq = bnb_quantize_4bit(ctx, tx, qtype, block, nested);
    bnb_tensor *td = !tq ? NULL
                     : qtype == BNB_TYPE_Q8_BLOCK ? bnb_dequantize_blockwise(ctx, tq, BNB_TYPE_F32)
                                                  : bnb_dequantize_4bit(ctx, tq, BNB_TYPE_F32);
    if (!td) {
        q.st = bnb_last_status();
        bnb_context_free(ctx);
        return q;
    }
    bnb_graph *g = bnb_graph_new(ctx, 16);
    bnb_graph_build(g, tq);
    bnb_graph_build(g, td);
    bnb_buffer *buf = bnb_backend_alloc_tensors(be, ctx);
    q.st = buf ? BNB_OK : bnb_last_status();
    if (q.st == BNB_OK) q.st = bnb_tensor_set_f32(tx, x, n);
    if (q.st == BNB_OK && code) q.st = bnb_tensor_set_f32(code, user_map, 256);
    if (q.st == BNB_OK) q.st = bnb_graph_compute(be, g);
    if (q.st == BNB_OK) {
        q.raw_size = bnb_nbytes(tq);
        q.raw = tc_malloc(q.raw_size);
        q.deq = tc_malloc((size_t)n * sizeof(float) + 4);
        q.st = bnb_tensor_get(tq, q.raw, 0, q.raw_size);
        if (q.st == BNB_OK) q.st = bnb_tensor_get_f32(td, q.deq, n);
    }
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
    return q;
}

static void round_to(float *x, int64_t n, bnb_type t) {
    for (int64_t i = 0; i < n; i++)
        x[i] = t == BNB_TYPE_F16 ? bnb_f16_to_f32(bnb_f32_to_f16(x[i]))
               : t == BNB_TYPE_BF16 ? bnb_bf16_to_f32(bnb_f32_to_bf16(x[i]))
                                    : x[i];
}

static int code_at(const uint8_t *raw, const bnb_quant_layout *L, int64_t i) {
    if (!L->four_bit) return raw[L->codes + i];
    uint8_t b = raw[L->codes + i / 2];
    return (i & 1) ? b & 15 : b >> 4;
}

/* Checks one quantize/dequantize run against the reference: absmax per block, nearest code per element (ties on a
 * midpoint may go either way), dequantized value = map[code] * absmax exactly. Returns the max |x - x'| / absmax. */
static double check_run(const char *what, const qrun *q, const float *x, int64_t n, bnb_type qtype, int block,
                        bool nested, const float *map) {
    if (!tc_check(q->st == BNB_OK, "%s: runs (%s: %s)", what, bnb_status_name(q->st), bnb_last_error())) return 1e9;
    bnb_quant_layout L = bnb_quant_layout_make(qtype, n, block, nested);
    tc_check(L.total == q->raw_size, "%s: layout size %zu == bnb_nbytes %zu", what, L.total, q->raw_size);
    const float *vals = L.four_bit ? (qtype == BNB_TYPE_Q4_NF4 ? bnb_nf4_values : bnb_fp4_values) : map;
    const int nv = L.four_bit ? 16 : 256;
    if (!L.four_bit) {
        tc_check(!memcmp(q->raw + L.map, map, 1024), "%s: the map is stored with the codes", what);
    }
    float *absmax = tc_malloc((size_t)L.nblk * 4 + 4);
    if (nested)
        bnb_quant_unnest_absmax(&L, q->raw, absmax);
    else
        memcpy(absmax, q->raw + L.absmax, (size_t)L.nblk * 4);
    int64_t bad_absmax = 0, not_nearest = 0, ties = 0, bad_deq = 0, not_search = 0;
    double max_err = 0;
    for (int64_t b = 0; b < L.nblk; b++) {
        int64_t s = b * block, e = BNB_MIN(n, s + block);
        float am = 0;
        for (int64_t i = s; i < e; i++) am = fmaxf(am, fabsf(x[i]));
        if (!nested)
            bad_absmax += absmax[b] != am;
        else /* nested: absmax itself quantized (dynamic map, largest half gap < 0.0071 of the group's scale) */
            bad_absmax += fabsf(absmax[b] - am) >
                          0.0071f * ((const float *)(q->raw + L.absmax2))[b / BNB_NESTED_BLOCK] + 1e-6f * am;
        float inv = am > 0 ? 1.0f / am : 0.0f;
        for (int64_t i = s; i < e; i++) {
            int c = code_at(q->raw, &L, i);
            float y = x[i] * inv;
            double best = 1e9;
            for (int k = 0; k < nv; k++) best = fmin(best, fabs((double)vals[k] - y));
            double d = fabs((double)vals[c] - y);
            if (d > best + 1e-12) {
                if (d - best < 1e-6 * fmax(fabs(y), 1e-30) + 1e-12) ties++;
                else not_nearest++;
            }
            if (q->deq[i] != vals[c] * absmax[b]) bad_deq++;
            if (!L.four_bit && c != bnb_qsearch(map, y, 0.0f, false)) not_search++; /* the spec's search, exactly */
            if (am > 0) max_err = fmax(max_err, fabs((double)q->deq[i] - x[i]) / am);
        }
    }
    tc_check(bad_absmax == 0, "%s: absmax per block (%lld wrong)", what, (long long)bad_absmax);
    tc_check(not_nearest == 0, "%s: every code is a nearest map value (%lld not, %lld ties)", what,
             (long long)not_nearest, (long long)ties);
    tc_check(bad_deq == 0, "%s: dequantized = map[code] * absmax exactly (%lld differ)", what, (long long)bad_deq);
    if (!L.four_bit)
        tc_check(not_search == 0, "%s: codes equal the scalar bitsandbytes search (%lld differ)", what,
                 (long long)not_search);
    free(absmax);
    return max_err;
}

/* the largest half gap between neighbouring map values within [lo, hi]: the error bound of a nearest code */
static double half_gap(const float *v, int n, double lo, double hi) {
    double g = 0;
    for (int i = 1; i < n; i++)
        if (v[i] >= lo && v[i - 1] <= hi) g = fmax(g, 0.5 * ((double)v[i] - v[i - 1]));
    return g;
}

static void test_blockwise(void) {
    tc_rng r;
    tc_rng_seed(&r, 42);
    const int blocks8[] = {64, 128, 256, 512, 1024, 2048, 4096};
    const bnb_qmap maps8[] = {BNB_QMAP_DYNAMIC_SIGNED, BNB_QMAP_LINEAR_SIGNED, BNB_QMAP_DYNAMIC_UNSIGNED,
                              BNB_QMAP_LINEAR_UNSIGNED};
    const bnb_type xtypes[] = {BNB_TYPE_F32, BNB_TYPE_F16, BNB_TYPE_BF16};
    const int64_t n = 3 * 4096 + 4 * 64 + 37; /* short last block for every block size */
    float *x = tc_malloc(n * sizeof(float));
    for (int mi = 0; mi < 4; mi++) {
        bool is_signed = mi < 2;
        float map[256];
        bnb_qmap_fill(maps8[mi], map);
        for (int bi = 0; bi < 7; bi++) {
            bnb_type xt = xtypes[(mi + bi) % 3];
            if (is_signed)
                tc_fill_signed(&r, x, n, 1e-4f, 3.0f);
            else
                tc_fill_positive(&r, x, n, 1e-4f, 3.0f);
            for (int64_t i = 0; i < blocks8[bi]; i++) x[i] = 0.0f; /* first block all zero */
            round_to(x, n, xt);
            char what[128];
            snprintf(what, sizeof what, "q8 map %d block %d %s", (int)maps8[mi], blocks8[bi], bnb_type_name(xt));
            qrun q = run_quant(g_be, x, n, xt, BNB_TYPE_Q8_BLOCK, maps8[mi], NULL, blocks8[bi], false, false, 0);
            double err = check_run(what, &q, x, n, BNB_TYPE_Q8_BLOCK, blocks8[bi], false, map);
            double bound = half_gap(map, 256, is_signed ? -1.0 : 0.0, 1.0) + 1e-6;
            tc_check(err <= bound, "%s: round-trip error %.3g of absmax <= half the largest map gap %.3g", what, err,
                     bound);
            if (q.st == BNB_OK) {
                bool zeros = true;
                for (int i = 0; i < blocks8[bi]; i++) zeros &= q.deq[i] == 0.0f;
                tc_check(zeros && ((float *)(q.raw + bnb_quant_layout_make(BNB_TYPE_Q8_BLOCK, n, blocks8[bi], false).absmax))[0] == 0.0f,
                         "%s: all-zero block -> absmax 0, exact zeros back", what);
            }
            qrun_free(&q);
        }
    }
    free(x);
}

static void test_4bit(void) {
    tc_rng r;
    tc_rng_seed(&r, 7);
    const int blocks4[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    const int64_t n = 2 * 4096 + 3 * 32 + 19; /* odd length: the last byte holds one code */
    float *x = tc_malloc(n * sizeof(float));
    for (int qi = 0; qi < 2; qi++) {
        bnb_type qt = qi ? BNB_TYPE_Q4_FP4 : BNB_TYPE_Q4_NF4;
        const float *vals = qi ? bnb_fp4_values : bnb_nf4_values;
        float sorted[16];
        memcpy(sorted, vals, sizeof sorted);
        for (int i = 0; i < 16; i++) /* insertion sort for the gap bound */
            for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
                float t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        for (int bi = 0; bi < 8; bi++) {
            bnb_type xt = (bnb_type)(bi % 3); /* F32, F16, BF16 */
            tc_fill_signed(&r, x, n, 1e-3f, 2.0f);
            for (int i = 0; i < blocks4[bi]; i++) x[blocks4[bi] + i] = 0.0f; /* second block all zero */
            round_to(x, n, xt);
            char what[128];
            snprintf(what, sizeof what, "%s block %d %s", bnb_type_name(qt), blocks4[bi], bnb_type_name(xt));
            qrun q = run_quant(g_be, x, n, xt, qt, BNB_QMAP_NF4, NULL, blocks4[bi], false, false, 0);
            double err = check_run(what, &q, x, n, qt, blocks4[bi], false, NULL);
            double bound = half_gap(sorted, 16, -1.0, 1.0) + 1e-6;
            tc_check(err <= bound, "%s: round-trip error %.3g of absmax <= %.3g", what, err, bound);
            if (q.st == BNB_OK) {
                bool zeros = true;
                for (int i = 0; i < blocks4[bi]; i++) zeros &= q.deq[blocks4[bi] + i] == 0.0f;
                tc_check(zeros, "%s: all-zero block -> exact zeros", what);
            }
            qrun_free(&q);
        }
    }
    /* nibble order: element 2k in the HIGH nibble */
    float y[64];
    for (int i = 0; i < 64; i++) y[i] = (i % 2) ? -1.0f : 1.0f; /* NF4 codes: even 15, odd 0 */
    qrun q = run_quant(g_be, y, 64, BNB_TYPE_F32, BNB_TYPE_Q4_NF4, BNB_QMAP_NF4, NULL, 64, false, false, 0);
    tc_check(q.st == BNB_OK && q.raw[0] == 0xF0 && q.raw[31] == 0xF0,
             "nibble order: (1, -1) packs as 0xF0 (element 0 high), got 0x%02X", q.raw ? q.raw[0] : 0);
    qrun_free(&q);
    free(x);
}

static void test_nested_and_user_map(void) {
    tc_rng r;
    tc_rng_seed(&r, 99);
    const int64_t n = 300 * 64 + 5; /* 301 blocks of 64: two nested groups of 256 */
    float *x = tc_malloc(n * sizeof(float));
    tc_fill_signed(&r, x, n, 1e-3f, 1.0f);
    for (int64_t b = 0; b < 301; b++) x[b * 64] *= 1.0f + (float)(b % 17); /* varied absmax */
    float map[256];
    bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, map);
    qrun q = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_DYNAMIC_SIGNED, NULL, 64, true, false, 0);
    check_run("q8 nested block 64", &q, x, n, BNB_TYPE_Q8_BLOCK, 64, true, map);
    if (q.st == BNB_OK) {
        bnb_quant_layout L = bnb_quant_layout_make(BNB_TYPE_Q8_BLOCK, n, 64, true);
        double sum = 0;
        for (int64_t b = 0; b < L.nblk; b++) {
            float am = 0;
            for (int64_t i = b * 64; i < BNB_MIN(n, b * 64 + 64); i++) am = fmaxf(am, fabsf(x[i]));
            sum += am;
        }
        float mean = *(float *)(q.raw + L.mean);
        tc_check(fabs(mean - sum / L.nblk) <= 1e-6 * sum / L.nblk, "nested: mean of absmax kept (%g vs %g)", mean,
                 sum / L.nblk);
        float m2[256];
        bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, m2);
        tc_check(!memcmp(q.raw + L.map2, m2, 1024), "nested: the dynamic signed map is stored for the absmax codes");
    }
    qrun_free(&q);
    qrun q4 = run_quant(g_be, x, n, BNB_TYPE_BF16 == BNB_TYPE_BF16 ? BNB_TYPE_F32 : BNB_TYPE_F32, BNB_TYPE_Q4_NF4,
                        BNB_QMAP_NF4, NULL, 64, true, false, 0);
    check_run("nf4 nested block 64", &q4, x, n, BNB_TYPE_Q4_NF4, 64, true, NULL);
    qrun_free(&q4);
    /* a user map with repeated values (4-bit dynamic map padded with zeros to 256) */
    float dup[256];
    bnb_qmap_dynamic(dup, true, 2, 4);
    qrun qd = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_QUANTILE, dup, 128, false, false, 0);
    check_run("q8 user map with repeated zeros block 128", &qd, x, n, BNB_TYPE_Q8_BLOCK, 128, false, dup);
    qrun_free(&qd);
    /* a user map from data (quantile map) */
    float qmap[256];
    tc_check(bnb_qmap_quantile(qmap, x, n, 1.0f / 512.0f) == BNB_OK, "quantile map from data");
    qrun qq = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_QUANTILE, qmap, 256, false, false, 0);
    check_run("q8 quantile map block 256", &qq, x, n, BNB_TYPE_Q8_BLOCK, 256, false, qmap);
    qrun_free(&qq);
    free(x);
}

static void test_stochastic(void) {
    /* every block: one 1.0 (absmax 1) and values v between two codes; the mean of the dequantized v must approach
     * v (unbiased), while round-to-nearest stays biased */
    const int64_t n = 1 << 20, block = 4096;
    float *x = tc_malloc(n * sizeof(float));
    float map[256];
    bnb_qmap_fill(BNB_QMAP_DYNAMIC_SIGNED, map);
    const float lo = map[200], hi = map[201], v = lo + 0.3f * (hi - lo);
    for (int64_t i = 0; i < n; i++) x[i] = (i % block == 0) ? 1.0f : v;
    qrun q = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_DYNAMIC_SIGNED, NULL, (int)block, false,
                       true, 1234);
    if (tc_check(q.st == BNB_OK, "stochastic quantize runs (%s)", bnb_last_error())) {
        double sum = 0;
        int64_t cnt = 0, other = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i % block == 0) continue;
            sum += q.deq[i] - (double)v;
            cnt++;
            other += q.deq[i] != lo && q.deq[i] != hi;
        }
        double mean_err = sum / cnt, gap = hi - lo;
        double sd = gap * sqrt(0.3 * 0.7 / cnt);
        tc_check(fabs(mean_err) < 5 * sd && other == 0,
                 "stochastic rounding unbiased: mean error %.3g (%.2f sd of %.2g), only the two neighbours used",
                 mean_err, fabs(mean_err) / sd, sd);
        tc_check(0.3 * gap > 5 * sd, "round to nearest would be biased by %.3g here (the test can fail)", 0.3 * gap);
        /* same seed, same codes; another seed, other codes */
        qrun q2 = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_DYNAMIC_SIGNED, NULL, (int)block,
                            false, true, 1234);
        qrun q3 = run_quant(g_be, x, n, BNB_TYPE_F32, BNB_TYPE_Q8_BLOCK, BNB_QMAP_DYNAMIC_SIGNED, NULL, (int)block,
                            false, true, 99);
        tc_check(q2.st == BNB_OK && !memcmp(q.raw, q2.raw, (size_t)n), "stochastic: same seed, same codes");
        tc_check(q3.st == BNB_OK && memcmp(q.raw, q3.raw, (size_t)n), "stochastic: another seed, other codes");
        qrun_free(&q2);
        qrun_free(&q3);
    }
    qrun_free(&q);
    free(x);
}

/* standard normal values (Box-Muller) */
static void fill_normal(tc_rng *r, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double u1 = tc_rng_uniform(r), u2 = tc_rng_uniform(r);
        x[i] = (float)(sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2));
    }
}

static void test_quantiles(void) {
    tc_rng r;
    tc_rng_seed(&r, 5);
    const int64_t n = 1000000;
    float *x = tc_malloc(n * sizeof(float));
    fill_normal(&r, x, n);
    float ex[256], es[256];
    tc_check(bnb_quantiles_exact(x, n, 1.0f / 512.0f, ex) == BNB_OK, "exact quantiles");
    tc_check(bnb_quantiles_estimate(x, n, 1.0f / 512.0f, es, 0) == BNB_OK, "estimated quantiles");
    double range = ex[255] - ex[0], maxe = 0;
    for (int j = 0; j < 256; j++) maxe = fmax(maxe, fabs((double)es[j] - ex[j]));
    tc_check(maxe <= 0.01 * range, "quantile estimate within 1%% of the exact range (max error %.3g of %.3g = %.3f%%)",
             maxe, range, 100 * maxe / range);
    tc_check(sorted_nondecreasing(es, 256), "estimated quantiles sorted");
    /* uniform data: quantiles are known */
    for (int64_t i = 0; i < n; i++) x[i] = (float)tc_rng_uniform(&r);
    bnb_quantiles_estimate(x, n, 0.0f, es, 2);
    maxe = 0;
    for (int j = 0; j < 256; j++) maxe = fmax(maxe, fabs(es[j] - j / 255.0));
    tc_check(maxe < 0.01, "uniform [0,1): estimated quantile j ~ j/255 (max error %.3g)", maxe);
    float qm[256];
    tc_check(bnb_qmap_quantile(qm, x, n, 1.0f / 512.0f) == BNB_OK, "quantile map");
    int zeros = 0;
    float mx = 0;
    for (int j = 0; j < 256; j++) {
        zeros += qm[j] == 0.0f;
        mx = fmaxf(mx, fabsf(qm[j]));
    }
    tc_check(sorted_nondecreasing(qm, 256) && mx == 1.0f && zeros >= 1, "quantile map: sorted, max |v| 1, has 0");
    tc_check(bnb_qmap_quantile(qm, x, 100, 1.0f / 512.0f) == BNB_ERR_INVALID_ARG, "quantile map needs >= 256 values");
    x[777] = NAN;
    tc_check(bnb_quantiles_estimate(x, n, 0.0f, es, 0) == BNB_ERR_NUMERIC, "quantile estimate rejects NaN");
    free(x);
}

/* the estimator on the backend under test (CUDA: shared-memory sorts) agrees with the CPU estimator and the exact sort */
static void test_quantiles_backend(void) {
    tc_rng r;
    tc_rng_seed(&r, 8);
    const int64_t n = 3000000 + 77;
    float *x = tc_malloc(n * sizeof(float));
    fill_normal(&r, x, n);
    float ex[256], cpu[256], be[256];
    bnb_quantiles_exact(x, n, 1.0f / 512.0f, ex);
    bnb_quantiles_estimate(x, n, 1.0f / 512.0f, cpu, 0);
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *t = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, n);
    bnb_buffer *buf = bnb_backend_alloc_tensors(g_be, ctx);
    bnb_status st = buf ? bnb_tensor_set_f32(t, x, n) : bnb_last_status();
    if (st == BNB_OK) st = bnb_quantiles_estimate_tensor(g_be, t, 1.0f / 512.0f, be);
    double range = ex[255] - ex[0], d_cpu = 0, d_ex = 0;
    for (int j = 0; st == BNB_OK && j < 256; j++) {
        d_cpu = fmax(d_cpu, fabs((double)be[j] - cpu[j]));
        d_ex = fmax(d_ex, fabs((double)be[j] - ex[j]));
    }
    tc_check(st == BNB_OK && d_cpu <= 1e-5 * range && d_ex <= 0.01 * range,
             "quantile estimate on %s: vs the CPU estimator %.2g, vs exact %.3f%% of the range (%s)",
             bnb_backend_name(g_be), d_cpu, 100 * d_ex / range, st == BNB_OK ? "ok" : bnb_last_error());
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
    free(x);
}

/* ------------------------------------------------------------------------------------------------ host set/get */
static void test_host_set_get(void) {
    tc_rng r;
    tc_rng_seed(&r, 3);
    const int64_t n = 5000;
    float *x = tc_malloc(n * sizeof(float)), *y = tc_malloc(n * sizeof(float));
    tc_fill_signed(&r, x, n, 1e-3f, 4.0f);
    const bnb_type types[] = {BNB_TYPE_Q8_BLOCK, BNB_TYPE_Q4_NF4, BNB_TYPE_Q4_FP4, BNB_TYPE_Q8_BLOCK};
    for (int ti = 0; ti < 4; ti++) {
        bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
        bnb_quant_params qp = {.block = 128, .map = ti == 3 ? BNB_QMAP_QUANTILE : BNB_QMAP_DYNAMIC_SIGNED,
                               .nested = ti == 1};
        bnb_tensor *t = bnb_new_tensor_quant(ctx, types[ti], 2, (int64_t[]){100, 50}, qp);
        bnb_buffer *buf = bnb_backend_alloc_tensors(g_be, ctx);
        bnb_status st = buf ? bnb_tensor_set_f32(t, x, n) : bnb_last_status();
        if (st == BNB_OK) st = bnb_tensor_get_f32(t, y, n);
        double maxe = 0, amax = 4.0;
        for (int64_t i = 0; i < n; i++) maxe = fmax(maxe, fabs((double)y[i] - x[i]));
        double bound = types[ti] == BNB_TYPE_Q8_BLOCK ? (ti == 3 ? 0.05 : 0.01) : 0.2;
        tc_check(st == BNB_OK && maxe <= bound * amax, "set_f32/get_f32 of %s%s: max error %.3g (<= %.3g)",
                 bnb_type_name(types[ti]), ti == 1 ? " nested" : ti == 3 ? " quantile map" : "", maxe, bound * amax);
        if (st == BNB_OK) tc_check(bnb_quant_check(t) == BNB_OK, "bnb_quant_check passes on finite data");
        x[1234] = INFINITY;
        st = bnb_tensor_set_f32(t, x, n);
        const char *names[] = {"block 9", NULL};
        tc_check_error(st, BNB_ERR_NUMERIC, "set_f32 with Inf names the block", names);
        x[1234] = 1.0f;
        if (buf) bnb_buffer_free(buf);
        bnb_context_free(ctx);
    }
    free(x);
    free(y);
}

/* ------------------------------------------------------------------------------------------------ mul_mat */
static void test_mul_mat(void) {
    tc_rng r;
    tc_rng_seed(&r, 17);
    const int64_t K = 96, M = 37; /* rows straddle blocks of 64 */
    const bnb_type qts[] = {BNB_TYPE_Q8_BLOCK, BNB_TYPE_Q4_NF4, BNB_TYPE_Q4_FP4};
    const int64_t Ns[] = {1, 5, 17}; /* 17 rows: CUDA dequantizes to f16 and runs cuBLASLt */
    float *w = tc_malloc(K * M * sizeof(float)), *wd = tc_malloc(K * M * sizeof(float));
    float *xb = tc_malloc(K * 17 * sizeof(float)), *out = tc_malloc(M * 17 * sizeof(float));
    tc_fill_signed(&r, w, K * M, 1e-3f, 1.0f);
    tc_fill_signed(&r, xb, K * 17, 1e-3f, 1.0f);
    for (int qi = 0; qi < 3; qi++)
        for (int ni = 0; ni < 3; ni++)
            for (int bt = 0; bt < 2; bt++) {
                const int64_t N = Ns[ni];
                bnb_type btype = bt ? BNB_TYPE_F16 : BNB_TYPE_F32;
                bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
                bnb_quant_params qp = {.block = 64, .map = BNB_QMAP_DYNAMIC_SIGNED, .nested = ni == 1};
                bnb_tensor *a = bnb_new_tensor_quant(ctx, qts[qi], 2, (int64_t[]){K, M}, qp);
                bnb_tensor *b = bnb_new_tensor_2d(ctx, btype, K, N);
                bnb_tensor *o = bnb_mul_mat(ctx, a, b);
                bnb_graph *g = bnb_graph_new(ctx, 8);
                bnb_status st = o ? bnb_graph_build(g, o) : bnb_last_status();
                bnb_buffer *buf = st == BNB_OK ? bnb_backend_alloc_tensors(g_be, ctx) : NULL;
                if (st == BNB_OK && !buf) st = bnb_last_status();
                if (st == BNB_OK) st = bnb_tensor_set_f32(a, w, K * M);
                if (st == BNB_OK) st = bnb_tensor_set_f32(b, xb, K * N);
                if (st == BNB_OK) st = bnb_tensor_get_f32(a, wd, K * M); /* the weight as the op sees it */
                if (st == BNB_OK) st = bnb_graph_compute(g_be, g);
                if (st == BNB_OK) st = bnb_tensor_get_f32(o, out, M * N);
                double maxe = 0; /* relative to sum |w b| */
                for (int64_t nn = 0; st == BNB_OK && nn < N; nn++)
                    for (int64_t m = 0; m < M; m++) {
                        double ref = 0, mag = 0;
                        for (int64_t k = 0; k < K; k++) {
                            double bv = bt ? bnb_f16_to_f32(bnb_f32_to_f16(xb[nn * K + k])) : xb[nn * K + k];
                            ref += (double)wd[m * K + k] * bv;
                            mag += fabs((double)wd[m * K + k] * bv);
                        }
                        maxe = fmax(maxe, fabs(out[nn * M + m] - ref) / (mag + 1e-30));
                    }
                /* CUDA with many rows: the weight goes through f16 (and so does an f32 b) before cuBLASLt */
                double tol = (!bnb_backend_is_cpu(g_be) && N > 8) ? 2e-3 : 1e-5;
                tc_check(st == BNB_OK && maxe < tol,
                         "mul_mat %s a (nested %d) x %s b, N=%lld: max error %.3g of sum|w b| (tol %.0g) (%s)",
                         bnb_type_name(qts[qi]), (int)(ni == 1), bnb_type_name(btype), (long long)N, maxe, tol,
                         st == BNB_OK ? "ok" : bnb_last_error());
                if (buf) bnb_buffer_free(buf);
                bnb_context_free(ctx);
            }
    free(w);
    free(wd);
    free(xb);
    free(out);
}

/* ------------------------------------------------------------------------------------------------ bad input */
static void test_errors(void) {
    bnb_context *ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *x = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, 1000);
    bnb_tensor *xi = bnb_new_tensor_1d(ctx, BNB_TYPE_I32, 1000);
    const char *n1[] = {"block size 100", NULL};
    tc_check_error(bnb_quantize_blockwise(ctx, x, BNB_QMAP_DYNAMIC_SIGNED, NULL, 100, false) ? BNB_OK
                                                                                              : bnb_last_status(),
                   BNB_ERR_INVALID_ARG, "8-bit block 100 rejected", n1);
    const char *n2[] = {"block size 32", NULL};
    tc_check_error(bnb_quantize_blockwise(ctx, x, BNB_QMAP_DYNAMIC_SIGNED, NULL, 32, false) ? BNB_OK
                                                                                             : bnb_last_status(),
                   BNB_ERR_INVALID_ARG, "8-bit block 32 rejected", n2);
    const char *n3[] = {"block size 8192", NULL};
    tc_check_error(bnb_quantize_4bit(ctx, x, BNB_TYPE_Q4_NF4, 8192, false) ? BNB_OK : bnb_last_status(),
                   BNB_ERR_INVALID_ARG, "4-bit block 8192 rejected", n3);
    tc_check(bnb_quantize_4bit(ctx, x, BNB_TYPE_Q4_NF4, 32, false) != NULL, "4-bit block 32 accepted");
    const char *n4[] = {"i32", NULL};
    tc_check_error(bnb_quantize_blockwise(ctx, xi, BNB_QMAP_DYNAMIC_SIGNED, NULL, 64, false) ? BNB_OK
                                                                                              : bnb_last_status(),
                   BNB_ERR_TYPE, "i32 input rejected", n4);
    tc_check_error(bnb_quantize_blockwise(ctx, x, BNB_QMAP_QUANTILE, NULL, 64, false) ? BNB_OK : bnb_last_status(),
                   BNB_ERR_INVALID_ARG, "quantile map without values rejected", NULL);
    tc_check_error(bnb_quantize_4bit(ctx, x, BNB_TYPE_Q8_BLOCK, 64, false) ? BNB_OK : bnb_last_status(), BNB_ERR_TYPE,
                   "quantize_4bit to q8_block rejected", NULL);
    bnb_context_free(ctx);
    /* NaN in a graph quantize: the compute fails naming the block (CUDA: through the backend's error flag) */
    const int64_t n = 4096;
    float *v = tc_malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = (float)(i % 13) - 6.0f;
    v[3 * 256 + 5] = NAN;
    ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    bnb_tensor *tx = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, n);
    bnb_tensor *tq = bnb_quantize_blockwise(ctx, tx, BNB_QMAP_DYNAMIC_SIGNED, NULL, 256, false);
    bnb_graph *g = bnb_graph_new(ctx, 8);
    bnb_graph_build(g, tq);
    bnb_buffer *buf = bnb_backend_alloc_tensors(g_be, ctx);
    bnb_tensor_set_f32(tx, v, n);
    bnb_status st = bnb_graph_compute(g_be, g);
    const char *names3[] = {"block 3", NULL};
    tc_check_error(st, BNB_ERR_NUMERIC, "graph quantize of NaN fails naming the block", names3);
    if (!bnb_backend_is_cpu(g_be)) /* CUDA: the result was written, with that block's absmax NaN */
        tc_check_error(bnb_quant_check(tq), BNB_ERR_NUMERIC, "bnb_quant_check names the NaN block", names3);
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
    free(v);
    /* empty tensor: a no-op */
    ctx = bnb_context_new((bnb_context_params){.mem_size = 1 << 20, .no_alloc = true});
    tx = bnb_new_tensor_1d(ctx, BNB_TYPE_F32, 0);
    tq = bnb_quantize_4bit(ctx, tx, BNB_TYPE_Q4_NF4, 64, false);
    bnb_tensor *td = tq ? bnb_dequantize_4bit(ctx, tq, BNB_TYPE_F32) : NULL;
    g = bnb_graph_new(ctx, 8);
    st = td ? bnb_graph_build(g, td) : bnb_last_status();
    buf = st == BNB_OK ? bnb_backend_alloc_tensors(g_be, ctx) : NULL;
    if (st == BNB_OK) st = bnb_graph_compute(g_be, g);
    tc_check(st == BNB_OK, "empty tensor: quantize + dequantize is a no-op (%s)", st ? bnb_last_error() : "ok");
    if (buf) bnb_buffer_free(buf);
    bnb_context_free(ctx);
}

/* ------------------------------------------------------------------------------------------------ CPU vs CUDA */
static void test_cpu_vs_cuda(void) {
    tc_rng r;
    tc_rng_seed(&r, 2024);
    const int64_t n = (1 << 22) + 123;
    float *x = tc_malloc(n * sizeof(float));
    fill_normal(&r, x, n);
    struct {
        bnb_type qt, xt;
        int block;
        bool nested, stoch;
    } cases[] = {
        {BNB_TYPE_Q8_BLOCK, BNB_TYPE_F32, 4096, false, false}, {BNB_TYPE_Q8_BLOCK, BNB_TYPE_F32, 256, false, false},
        {BNB_TYPE_Q8_BLOCK, BNB_TYPE_F16, 64, true, false},    {BNB_TYPE_Q8_BLOCK, BNB_TYPE_BF16, 256, false, true},
        {BNB_TYPE_Q4_NF4, BNB_TYPE_F16, 64, false, false},     {BNB_TYPE_Q4_NF4, BNB_TYPE_F32, 64, true, false},
        {BNB_TYPE_Q4_FP4, BNB_TYPE_BF16, 128, false, false},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        float *xr = tc_malloc(n * sizeof(float));
        memcpy(xr, x, n * sizeof(float));
        round_to(xr, n, cases[ci].xt);
        qrun a = run_quant(g_cpu_ref, xr, n, cases[ci].xt, cases[ci].qt, BNB_QMAP_DYNAMIC_SIGNED, NULL,
                           cases[ci].block, cases[ci].nested, cases[ci].stoch, 77);
        qrun b = run_quant(g_be, xr, n, cases[ci].xt, cases[ci].qt, BNB_QMAP_DYNAMIC_SIGNED, NULL, cases[ci].block,
                           cases[ci].nested, cases[ci].stoch, 77);
        if (tc_check(a.st == BNB_OK && b.st == BNB_OK && a.raw_size == b.raw_size, "cpu vs cuda case %zu runs", ci)) {
            bnb_quant_layout L = bnb_quant_layout_make(cases[ci].qt, n, cases[ci].block, cases[ci].nested);
            int64_t mism = 0, deq_mism = 0;
            for (int64_t i = 0; i < n; i++) {
                mism += code_at(a.raw, &L, i) != code_at(b.raw, &L, i);
                deq_mism += a.deq[i] != b.deq[i];
            }
            /* compare the scale parts and maps themselves (the 16-byte padding between parts is unspecified) */
            bool scales_same = true;
            if (L.nested) {
                scales_same = !memcmp(a.raw + L.absmax_codes, b.raw + L.absmax_codes, (size_t)L.nblk) &&
                              !memcmp(a.raw + L.absmax2, b.raw + L.absmax2, (size_t)L.nblk2 * 4) &&
                              !memcmp(a.raw + L.mean, b.raw + L.mean, 4) &&
                              !memcmp(a.raw + L.map2, b.raw + L.map2, 256 * 4);
            } else {
                scales_same = !memcmp(a.raw + L.absmax, b.raw + L.absmax, (size_t)L.nblk * 4);
            }
            if (L.map != BNB_QNONE) scales_same = scales_same && !memcmp(a.raw + L.map, b.raw + L.map, 256 * 4);
            printf("cpu vs cuda %s %s block %d%s%s: %lld of %lld codes differ (%.2g), %lld dequantized values differ, "
                   "scales %s\n",
                   bnb_type_name(cases[ci].qt), bnb_type_name(cases[ci].xt), cases[ci].block,
                   cases[ci].nested ? " nested" : "", cases[ci].stoch ? " stochastic" : "", (long long)mism,
                   (long long)n, (double)mism / n, (long long)deq_mism, scales_same ? "identical" : "DIFFER");
            tc_check((double)mism < 1e-5 * n && scales_same, "cpu vs cuda case %zu: codes agree (%lld differ)", ci,
                     (long long)mism);
        }
        qrun_free(&a);
        qrun_free(&b);
        free(xr);
    }
    free(x);
}

int main(int argc, char **argv) {
    tc_backends bl;
    int rc = tc_open_backends(argc, argv, &bl, 2);
    if (rc) return rc;
    test_maps();
    test_direct_table();
    for (int i = 0; i < bl.n; i++) {
        g_be = bl.be[i];
        printf("backend %s\n", bnb_backend_name(g_be));
        test_blockwise();
        test_4bit();
        test_nested_and_user_map();
        test_stochastic();
        test_host_set_get();
        test_quantiles_backend();
        test_mul_mat();
        test_errors();
        if (!bnb_backend_is_cpu(g_be)) {
            g_cpu_ref = bnb_backend_cpu_new(2);
            test_cpu_vs_cuda();
            bnb_backend_free(g_cpu_ref);
        }
    }
    test_quantiles();
    tc_close_backends(&bl);
    return tc_summary("test-quant");
}
