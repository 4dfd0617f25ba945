/* Internal interface of the optimizers (src/optim/, src/ops/optim.c, src/cpu/optim.c, src/cuda/optim.cu).
 *
 * OPTIMIZER_UPDATE node (in place: view_src = param, so its data is the parameter's):
 *   src[0] param (F32/F16/BF16, contiguous)      src[1] grad (F32/F16/BF16, param's shape, contiguous)
 *   src[2] state1, src[3] state2 (or NULL)       src[4] hyper (F32 [BNB_OPTIM_HYPER_N], see below)
 *   src[5] gnorm scale (F32 [1]) or NULL
 *   32-bit states are F32 [n] (AdEMAMix state1: [2n], m1 then m2); 8-bit states are OPT8 [n] (AdEMAMix state1:
 *   OPT8 [2 * npad], npad = n rounded up to 256, m1 in [0, n), m2 in [npad, npad + n)).
 *   Which states: ADAM/ADAMW/LAMB: m (signed map), v (unsigned); MOMENTUM/LARS/LION: m (signed);
 *   RMSPROP/ADAGRAD: v (unsigned); ADEMAMIX: m1|m2 (signed), v (unsigned).
 * The update kernel reads the step count s from hyper, updates with t = s + 1 and stores t back.
 */
#ifndef BNB_OPTIM_IMPL_H
#define BNB_OPTIM_IMPL_H

#include "../bnb-impl.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define BNB_OPTIM_HD __host__ __device__ /* helpers shared with the CUDA kernels */
#else
#define BNB_OPTIM_HD
#endif

#define BNB_OPTIM_BLOCK 256      /* 8-bit state block */
#define BNB_OPTIM_HYPER_N 16     /* floats in a hyper tensor */
#define BNB_OPTIM_HISTORY_N 100  /* percentile-clipping ring buffer */

/* hyper tensor slots (F32; STEP holds an int32 bit pattern) */
enum {
    BNB_HYPER_STEP = 0,
    BNB_HYPER_LR,
    BNB_HYPER_BETA1,
    BNB_HYPER_BETA2,
    BNB_HYPER_BETA3,
    BNB_HYPER_ALPHA,
    BNB_HYPER_EPS,
    BNB_HYPER_WD,
    BNB_HYPER_MAX_UNORM,
};

/* update node op_params */
enum {
    BNB_UPD_P_TYPE = 0,  /* bnb_optim_type */
    BNB_UPD_P_BITS,      /* 32 or 8 */
    BNB_UPD_P_FLAGS,     /* BNB_UPD_F_* */
    BNB_UPD_P_NPAD,      /* AdEMAMix: element offset of m2 in state1 */
    BNB_UPD_P_ROLE,      /* multi-tensor role on CUDA: BNB_UPD_SOLO / MEMBER / LEADER */
    BNB_UPD_P_GROUP = 12 /* (slots 12-13) LEADER: const bnb_optim_group * */
};
enum { BNB_UPD_F_SKIP_ZEROS = 1, BNB_UPD_F_SPARSE_ROWS = 2 };
enum { BNB_UPD_SOLO = 0, BNB_UPD_MEMBER = 1, BNB_UPD_LEADER = 2 };

/* Consecutive update nodes of one kind (type, bits, flags, param/grad types) that the CUDA backend updates in one
 * multi-tensor launch: MEMBER nodes compute nothing there; the LEADER (the group's last node) updates all. */
typedef struct bnb_optim_group {
    int n;
    bnb_tensor **nodes;
} bnb_optim_group;

/* CLIP node op_params */
enum { BNB_CLIP_P_MODE = 0, BNB_CLIP_P_PERCENTILE, BNB_CLIP_P_MAX_NORM };
enum { BNB_CLIP_PERCENTILE = 0, BNB_CLIP_GLOBAL = 1 };
/* CLIP PERCENTILE: src[0] grad, src[1] history F32 [100] (written), src[2] hyper (step read), src[3] optional F32 [1]
 *                  multiplied into the result.
 * CLIP GLOBAL:     src[0] F32 [1] total squared norm. */

/* Constructors (src/ops/optim.c). */
bnb_tensor *bnb_optimizer_update_op(bnb_context *ctx, bnb_optim_type type, int bits, int flags, bnb_tensor *param,
                                    bnb_tensor *grad, bnb_tensor *state1, bnb_tensor *state2, bnb_tensor *hyper,
                                    bnb_tensor *scale);
bnb_tensor *bnb_optimizer_gnorm_op(bnb_context *ctx, bnb_tensor *grad, bnb_tensor *acc);
bnb_tensor *bnb_optimizer_pclip_op(bnb_context *ctx, bnb_tensor *grad, bnb_tensor *history, bnb_tensor *hyper,
                                   int percentile, bnb_tensor *extra_scale);
bnb_tensor *bnb_optimizer_gclip_op(bnb_context *ctx, bnb_tensor *total_sqnorm, float max_norm);

static inline BNB_OPTIM_HD int bnb_optim_n_states(bnb_optim_type t) {
    switch (t) {
    case BNB_OPTIM_ADAM:
    case BNB_OPTIM_ADAMW:
    case BNB_OPTIM_LAMB:
    case BNB_OPTIM_ADEMAMIX: return 2;
    default: return 1;
    }
}
/* Whether state 0 of type t is a second moment (unsigned map). */
static inline BNB_OPTIM_HD bool bnb_optim_state1_unsigned(bnb_optim_type t) {
    return t == BNB_OPTIM_RMSPROP || t == BNB_OPTIM_ADAGRAD;
}
static inline BNB_OPTIM_HD bool bnb_optim_uses_unorm(bnb_optim_type t) { return t == BNB_OPTIM_LAMB || t == BNB_OPTIM_LARS; }
static inline BNB_OPTIM_HD int64_t bnb_optim_npad(int64_t n) { return (n + BNB_OPTIM_BLOCK - 1) / BNB_OPTIM_BLOCK * BNB_OPTIM_BLOCK; }

/* OPT8 storage parts (see bnb_type in bnb.h): codes at 0, absmax at pad16(n), map after the absmax. */
static inline BNB_OPTIM_HD size_t bnb_opt8_absmax_offset(int64_t n) { return BNB_PAD((size_t)n, 16); }
static inline BNB_OPTIM_HD size_t bnb_opt8_map_offset(int64_t n) {
    int64_t nblk = (n + BNB_OPTIM_BLOCK - 1) / BNB_OPTIM_BLOCK;
    return BNB_PAD((size_t)n, 16) + BNB_PAD((size_t)nblk * 4, 16);
}

/* Bias corrections c1 = 1 - b1^t, c2 = sqrt(1 - b2^t), computed in double and rounded once, so the CPU and CUDA
 * agree bit for bit (powf differs by an ulp between libm and the CUDA math library). */
static inline BNB_OPTIM_HD void bnb_optim_bias_corrections(float b1, float b2, int32_t t, float *c1, float *c2) {
    *c1 = (float)(1.0 - pow((double)b1, (double)t));
    *c2 = (float)sqrt(1.0 - pow((double)b2, (double)t));
}

/* Nearest code of y in a sorted 256-entry map: a branch-free lower bound (8 halving steps), then the nearer of the
 * two neighbours (a tie goes to the lower code; bitsandbytes' search sends exact midpoints toward its pivot, so codes
 * can differ on exact ties only). Then the sign rule of the 8-bit optimizers: a nonzero value never gets a code of
 * the opposite sign (move one code toward it). Shared by the CPU and CUDA kernels so both give the same codes. */
static inline BNB_OPTIM_HD int bnb_optim_code_near(const float *map, int i, float y, float value) {
    int lo = i > 0 ? i - 1 : 0; /* i: the lower bound of y in the map (also the CPU table search's, optim-q8.h) */
    int c = (y - map[lo] <= map[i] - y) ? lo : i;
    float cv = map[c];
    c -= (value < 0.0f && !(cv < 0.0f) && c > 0 && map[c - 1] < 0.0f) ? 1 : 0;
    c += (value > 0.0f && cv < 0.0f && c < 255) ? 1 : 0;
    return c;
}
static inline BNB_OPTIM_HD int bnb_optim_quantize_code(const float *map, float y, float value) {
    int i = 0;
    for (int step = 128; step > 0; step >>= 1) i += map[i + step - 1] < y ? step : 0;
    return bnb_optim_code_near(map, i, y, value);
}

#ifdef __cplusplus
}
#endif
#endif
