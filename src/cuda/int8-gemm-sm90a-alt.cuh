/* Alternative sm_90a int8 GEMM kernels, included by int8-gemm-sm90a.cu (which has the PTX wrappers and the per-tile
 * kernel they share code and conventions with). Selected by BNB_INT8_SM90_VAR; docs/perf-int8-cuda.md has their
 * measurements. */
/* Persistent form (BNB_INT8_SM90_VAR bit 2; measured slower than the kernel above, docs/perf-int8-cuda.md): one CTA per SM walks the tiles
 * blockIdx.x, + gridDim.x, ... with one k-block counter running across tiles, so the producer keeps loading the next
 * tile's stages while the consumers run the epilogue of the last one (the kernel above stages the int32 tile in the
 * pipeline's shared memory, which leaves the TMA idle during its epilogue; and each new CTA starts with an empty
 * pipeline). Here the ring has 3 stages and each consumer warpgroup has its own staging buffer for half of its
 * columns (64 rows x 128 int32, row stride P_TS): the epilogue stages columns 0-127, runs the rolled loop of the kernel
 * above on them, then columns 128-255. The epilogue operands (column scales, bias, staged outlier weights, row
 * scales, residuals) are loaded by producer warps 1-3 during the main loop (mbarriers epi_full / epi_empty). The
 * same float ops in the same order as epilogue_kernel: bitwise equal outputs. (A register epilogue without staging,
 * 32 unrolled column steps, measured 4.5x slower per tile: instruction fetch.) */
#define P_STAGES 3
#define P_HALF 128 /* columns per staging pass */
#define P_TS 132   /* row stride (int32) of a staging buffer */
#define P_STAGING_BYTES (2 * 64 * P_TS * 4)
#define P_EPI_FLOATS (2 * G_BN + G_EPI_Q * G_BN + G_BM * G_EPI_Q + G_BM)
#define P_SMEM (P_STAGES * G_STAGE_BYTES + P_STAGING_BYTES + 1024 + 256 + P_EPI_FLOATS * 4)

__global__ void __launch_bounds__(G_THREADS, 1)
    int8_gemm_sm90a_persistent(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_w,
                               const __grid_constant__ epi_args a, int kblocks, int flags) {
#ifdef G_SM90A
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *smem = smem_align1024(smem_raw);
    int32_t *staging = (int32_t *)(smem + P_STAGES * G_STAGE_BYTES);
    /* barriers: full[P_STAGES], empty[P_STAGES], epi_full, epi_empty */
    uint64_t *bars = (uint64_t *)(smem + P_STAGES * G_STAGE_BYTES + P_STAGING_BYTES);
    float *e_sw = (float *)((unsigned char *)bars + 256), *e_b = e_sw + G_BN, *e_wo = e_b + G_BN;
    float *e_r = e_wo + G_EPI_Q * G_BN, *e_sx = e_r + G_BM * G_EPI_Q;
    const uint32_t s_base = smem_u32(smem), bar_base = smem_u32(bars);
    const uint32_t epi_full = bar_base + 8 * 2 * P_STAGES, epi_empty = epi_full + 8;
    const int mode = flags & 3;
    const int MT = (a.T + G_BM - 1) / G_BM, n_tiles = MT * ((a.O + G_BN - 1) / G_BN);
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    if (threadIdx.x == 0) {
        for (int s = 0; s < P_STAGES; s++) {
            mbar_init(bar_base + 8 * s, 1);              /* full: the producer's expect_tx */
            mbar_init(bar_base + 8 * (P_STAGES + s), 8); /* empty: one arrive per consumer warp */
        }
        mbar_init(epi_full, 96); /* every thread of producer warps 1-3 */
        mbar_init(epi_empty, 8); /* one arrive per consumer warp */
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const int n_outl = a.count ? *a.count : 0, n_sm = min(n_outl, G_EPI_Q);
    if (wg == 0) { /* producer */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (tid >= 32) { /* epilogue operands of the CTA's i-th tile, once the epilogue of tile i - 1 is done */
            int i = 0;
            for (int tile = blockIdx.x; tile < n_tiles; tile += gridDim.x, i++) {
                const int m0 = (tile % MT) * G_BM, n0 = (tile / MT) * G_BN;
                if (i >= 1) mbar_wait(epi_empty, (i - 1) & 1);
                for (int k = tid - 32; k < G_BN; k += 96) {
                    const int o = n0 + k;
                    const bool ok = o < a.O;
                    e_sw[k] = ok ? a.wmax[o] / 127.f : 0.f;
                    e_b[k] = ok && a.bias ? a.bias[o] : 0.f;
                    for (int q = 0; q < n_sm; q++) e_wo[q * G_BN + k] = ok ? a.wo_st[(size_t)q * a.Op + o] : 0.f;
                }
                for (int k = tid - 32; k < G_BM; k += 96) e_sx[k] = m0 + k < a.T ? a.xmax[m0 + k] / 127.f : 0.f;
                for (int k = tid - 32; k < G_BM * G_EPI_Q; k += 96) {
                    const int t = m0 + k / G_EPI_Q, q = k % G_EPI_Q;
                    e_r[k] = t < a.T && q < n_sm ? a.r_st[(size_t)t * OUTL_CAP + q] : 0.f;
                }
                mbar_arrive(epi_full); /* release: the writes above are visible to the waiting consumers */
            }
        } else if (tid == 0) {
            int it = 0;
            for (int tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
                const int m0 = (tile % MT) * G_BM, n0 = (tile / MT) * G_BN;
                for (int kb = 0; kb < kblocks; kb++, it++) {
                    const int s = it % P_STAGES;
                    if (it >= P_STAGES) mbar_wait(bar_base + 8 * (P_STAGES + s), ((it / P_STAGES) - 1) & 1);
                    const uint32_t full = bar_base + 8 * s, dst = s_base + s * G_STAGE_BYTES;
                    mbar_expect_tx(full, G_STAGE_BYTES);
                    tma_load_2d(dst, &tm_x, kb * G_BK, m0, full);
                    tma_load_2d(dst + G_A_BYTES, &tm_w, kb * G_BK, n0, full);
                }
            }
        }
    } else { /* consumers */
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        const int warp = tid / 32, lane = tid % 32, n = n_outl;
        const uint32_t a_off = (uint32_t)(wg - 1) * 64 * G_BK;
        int32_t *ts = staging + (size_t)(wg - 1) * 64 * P_TS; /* this warpgroup's staging buffer */
        int it = 0, i = 0;
        for (int tile = blockIdx.x; tile < n_tiles; tile += gridDim.x, i++) {
            const int m0 = (tile % MT) * G_BM, n0 = (tile / MT) * G_BN;
            int32_t acc[128];
#pragma unroll
            for (int k = 0; k < 128; k++) acc[k] = 0;
            for (int kb = 0; kb < kblocks; kb++, it++) {
                const int s = it % P_STAGES;
                mbar_wait(bar_base + 8 * s, (it / P_STAGES) & 1);
                const uint32_t sa = s_base + s * G_STAGE_BYTES + a_off, sb = s_base + s * G_STAGE_BYTES + G_A_BYTES;
                if (!(mode & 2)) {
                    wgmma_fence();
#pragma unroll
                    for (int kk = 0; kk < G_BK / 32; kk++)
                        wgmma_m64n256k32_s8(acc, smem_desc(sa + kk * 32), smem_desc(sb + kk * 32));
                    wgmma_commit();
                    wgmma_wait0();
                }
                if (lane == 0) mbar_arrive(bar_base + 8 * (P_STAGES + s));
            }
            mbar_wait(epi_full, i & 1);
            if (mode & 1) { /* measurement mode: no epilogue (one store keeps the accumulators alive) */
                int32_t sum = 0;
#pragma unroll
                for (int k = 0; k < 128; k++) sum ^= acc[k];
                if (sum == 0x7eadbeef) y_store(a.y, a.ytype, 0, 1.f);
            } else {
#pragma unroll
                for (int h = 0; h < 2; h++) { /* column halves */
                    /* the accumulators of columns 128 h .. + 127 into the staging buffer (64 x P_TS, conflict-free) */
                    {
                        int32_t *p0 = ts + (warp * 16 + lane / 4) * P_TS + (lane % 4) * 2, *p1 = p0 + 8 * P_TS;
#pragma unroll
                        for (int j = 0; j < 16; j++) {
                            const int jj = 16 * h + j;
                            *reinterpret_cast<int2 *>(p0 + 8 * j) = make_int2(acc[4 * jj], acc[4 * jj + 1]);
                            *reinterpret_cast<int2 *>(p1 + 8 * j) = make_int2(acc[4 * jj + 2], acc[4 * jj + 3]);
                        }
                    }
                    if (wg == 1) asm volatile("bar.sync 3, 128;" ::: "memory");
                    else asm volatile("bar.sync 4, 128;" ::: "memory");
                    /* thread: 4 consecutive outputs (a warp covers the 128 columns of a row), rows warp, warp + 4,
                     * ..., 4 rows per step with all their shared-memory loads first */
                    const int cc = lane * 4, c = P_HALF * h + cc, o = n0 + c;
                    if (o < a.O) {
                        const float4 sw = *reinterpret_cast<const float4 *>(e_sw + c);
                        const float4 bb = *reinterpret_cast<const float4 *>(e_b + c);
                        const bool vec = (a.O & 3) == 0 && o + 3 < a.O;
                        float4 wr[G_EPI_Q];
#pragma unroll
                        for (int q = 0; q < G_EPI_Q; q++)
                            wr[q] = q < n_sm ? *reinterpret_cast<const float4 *>(e_wo + q * G_BN + c)
                                             : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 1
                        for (int lr0 = warp; lr0 < 64; lr0 += 16) {
                            int4 cv[4];
                            float sx[4], rr[4][G_EPI_Q];
#pragma unroll
                            for (int u = 0; u < 4; u++) {
                                const int lr = lr0 + 4 * u, rt = (wg - 1) * 64 + lr;
                                cv[u] = *reinterpret_cast<const int4 *>(ts + lr * P_TS + cc);
                                sx[u] = e_sx[rt];
                                const float4 ra = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q);
                                const float4 rb = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q + 4);
                                rr[u][0] = ra.x, rr[u][1] = ra.y, rr[u][2] = ra.z, rr[u][3] = ra.w;
                                rr[u][4] = rb.x, rr[u][5] = rb.y, rr[u][6] = rb.z, rr[u][7] = rb.w;
                            }
#pragma unroll
                            for (int u = 0; u < 4; u++) {
                                const int t = m0 + (wg - 1) * 64 + lr0 + 4 * u; /* token */
                                if (t >= a.T) break;
                                float4 e = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                                for (int q = 0; q < G_EPI_Q; q++) { /* same order as epilogue_kernel: q ascending */
                                    if (q < n_sm) {
                                        e.x = __fmaf_rn(rr[u][q], wr[q].x, e.x), e.y = __fmaf_rn(rr[u][q], wr[q].y, e.y);
                                        e.z = __fmaf_rn(rr[u][q], wr[q].z, e.z), e.w = __fmaf_rn(rr[u][q], wr[q].w, e.w);
                                    }
                                }
                                if (n > n_sm) e = outl_sums_rest4(a, n_sm, t, o, sw, e); /* rare */
                                const float4 y = make_float4(epi_value(cv[u].x, sx[u], sw.x, e.x, bb.x),
                                                             epi_value(cv[u].y, sx[u], sw.y, e.y, bb.y),
                                                             epi_value(cv[u].z, sx[u], sw.z, e.z, bb.z),
                                                             epi_value(cv[u].w, sx[u], sw.w, e.w, bb.w));
                                const size_t yi = (size_t)t * a.O + o;
                                if (vec) {
                                    y_store4(a.y, a.ytype, yi, y);
                                } else {
                                    y_store(a.y, a.ytype, yi, y.x);
                                    if (o + 1 < a.O) y_store(a.y, a.ytype, yi + 1, y.y);
                                    if (o + 2 < a.O) y_store(a.y, a.ytype, yi + 2, y.z);
                                    if (o + 3 < a.O) y_store(a.y, a.ytype, yi + 3, y.w);
                                }
                            }
                        }
                    }
                    /* the staging buffer is read: the next half (or tile) may overwrite it */
                    if (wg == 1) asm volatile("bar.sync 3, 128;" ::: "memory");
                    else asm volatile("bar.sync 4, 128;" ::: "memory");
                }
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(epi_empty); /* this warp is done with the epilogue operands */
        }
    }
#endif
}

/* 192-token tiles (BNB_INT8_SM90_VAR bit 4): three consumer warpgroups (64 x 256 each, 128 accumulators) and no
 * producer warpgroup, so 384 threads still fit the 168 registers a 128-accumulator wgmma needs (ptxas compiles the
 * whole kernel to the launch bound: setmaxnreg cannot give a fourth warpgroup room). Thread 0 issues the TMA loads:
 * the first 3 stages up front, then stage s again for k-block kb + 3 once all 12 warps have released it for kb. A
 * stage is 24 KB of x + 32 KB of weights for 48 K outputs (1.17 bytes per output per k-block against 1.5 for the
 * 128-token tile): less L2 -> SM traffic in a main loop that is bound by it. The epilogue operands are loaded by all
 * threads before the main loop; the epilogue stages each warpgroup's rows in column halves (64 x 132 int32 per
 * warpgroup in the free stage memory) and runs the same rolled loop, same float ops in the same order. */
#define K3_BM 192
#define K3_STAGES 3
#define K3_A_BYTES (K3_BM * G_BK)
#define K3_STAGE_BYTES (K3_A_BYTES + G_B_BYTES)
#define K3_EPI_FLOATS (2 * G_BN + G_EPI_Q * G_BN + K3_BM * G_EPI_Q + K3_BM)
#define K3_SMEM (K3_STAGES * K3_STAGE_BYTES + 1024 + 256 + K3_EPI_FLOATS * 4)

__global__ void __launch_bounds__(G_THREADS, 1)
    int8_gemm_sm90a_k192(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_w,
                         const __grid_constant__ epi_args a, int kblocks, int flags) {
#ifdef G_SM90A
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *smem = smem_align1024(smem_raw);
    uint64_t *bars = (uint64_t *)(smem + K3_STAGES * K3_STAGE_BYTES); /* full[K3_STAGES], empty[K3_STAGES] */
    float *e_sw = (float *)((unsigned char *)bars + 256), *e_b = e_sw + G_BN, *e_wo = e_b + G_BN;
    float *e_r = e_wo + G_EPI_Q * G_BN, *e_sx = e_r + K3_BM * G_EPI_Q;
    const uint32_t s_base = smem_u32(smem), bar_base = smem_u32(bars);
    const int mode = flags & 3;
    const int m0 = blockIdx.x * K3_BM, n0 = blockIdx.y * G_BN;
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
    const bool issuer = threadIdx.x == 0;
    if (issuer) {
        for (int s = 0; s < K3_STAGES; s++) {
            mbar_init(bar_base + 8 * s, 1);                /* full: the issuer's expect_tx */
            mbar_init(bar_base + 8 * (K3_STAGES + s), 12); /* empty: one arrive per warp */
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int kb = 0; kb < K3_STAGES && kb < kblocks; kb++) {
            const uint32_t full = bar_base + 8 * kb, dst = s_base + kb * K3_STAGE_BYTES;
            mbar_expect_tx(full, K3_STAGE_BYTES);
            tma_load_2d(dst, &tm_x, kb * G_BK, m0, full);
            tma_load_2d(dst + K3_A_BYTES, &tm_w, kb * G_BK, n0, full);
        }
    }
    /* epilogue operands (their loads overlap the first TMA loads) */
    const int n = a.count ? *a.count : 0, n_sm = min(n, G_EPI_Q);
    for (int k = threadIdx.x; k < G_BN; k += G_THREADS) {
        const int o = n0 + k;
        const bool ok = o < a.O;
        e_sw[k] = ok ? a.wmax[o] / 127.f : 0.f;
        e_b[k] = ok && a.bias ? a.bias[o] : 0.f;
        for (int q = 0; q < n_sm; q++) e_wo[q * G_BN + k] = ok ? a.wo_st[(size_t)q * a.Op + o] : 0.f;
    }
    for (int k = threadIdx.x; k < K3_BM; k += G_THREADS) e_sx[k] = m0 + k < a.T ? a.xmax[m0 + k] / 127.f : 0.f;
    for (int k = threadIdx.x; k < K3_BM * G_EPI_Q; k += G_THREADS) {
        const int t = m0 + k / G_EPI_Q, q = k % G_EPI_Q;
        e_r[k] = t < a.T && q < n_sm ? a.r_st[(size_t)t * OUTL_CAP + q] : 0.f;
    }
    __syncthreads(); /* barriers initialised, operands in place */
    int32_t acc[128];
#pragma unroll
    for (int i = 0; i < 128; i++) acc[i] = 0;
    const uint32_t a_off = (uint32_t)wg * 64 * G_BK;
    for (int kb = 0; kb < kblocks; kb++) {
        const int s = kb % K3_STAGES;
        mbar_wait(bar_base + 8 * s, (kb / K3_STAGES) & 1);
        const uint32_t sa = s_base + s * K3_STAGE_BYTES + a_off, sb = s_base + s * K3_STAGE_BYTES + K3_A_BYTES;
        if (!(mode & 2)) {
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < G_BK / 32; kk++)
                wgmma_m64n256k32_s8(acc, smem_desc(sa + kk * 32), smem_desc(sb + kk * 32));
            wgmma_commit();
            wgmma_wait0();
        }
        if (lane == 0) mbar_arrive(bar_base + 8 * (K3_STAGES + s));
        if (issuer && kb + K3_STAGES < kblocks) { /* refill stage s once every warp is done with it */
            mbar_wait(bar_base + 8 * (K3_STAGES + s), (kb / K3_STAGES) & 1);
            const uint32_t full = bar_base + 8 * s, dst = s_base + s * K3_STAGE_BYTES;
            mbar_expect_tx(full, K3_STAGE_BYTES);
            tma_load_2d(dst, &tm_x, (kb + K3_STAGES) * G_BK, m0, full);
            tma_load_2d(dst + K3_A_BYTES, &tm_w, (kb + K3_STAGES) * G_BK, n0, full);
        }
    }
    if (mode & 1) { /* measurement mode: no epilogue (one store keeps the accumulators alive) */
        int32_t sum = 0;
#pragma unroll
        for (int i = 0; i < 128; i++) sum ^= acc[i];
        if (sum == 0x7eadbeef) y_store(a.y, a.ytype, 0, 1.f);
        return;
    }
    asm volatile("bar.sync 1, 384;" ::: "memory"); /* every warpgroup past its last MMA: the stages are free */
    int32_t *ts = (int32_t *)smem + (size_t)wg * 64 * P_TS; /* this warpgroup's staging buffer */
#pragma unroll
    for (int h = 0; h < 2; h++) { /* column halves */
        {
            int32_t *p0 = ts + (warp * 16 + lane / 4) * P_TS + (lane % 4) * 2, *p1 = p0 + 8 * P_TS;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int jj = 16 * h + j;
                *reinterpret_cast<int2 *>(p0 + 8 * j) = make_int2(acc[4 * jj], acc[4 * jj + 1]);
                *reinterpret_cast<int2 *>(p1 + 8 * j) = make_int2(acc[4 * jj + 2], acc[4 * jj + 3]);
            }
        }
        asm volatile("bar.sync %0, 128;" ::"r"(2 + wg) : "memory");
        const int cc = lane * 4, c = P_HALF * h + cc, o = n0 + c;
        if (o < a.O) {
            const float4 sw = *reinterpret_cast<const float4 *>(e_sw + c), bb = *reinterpret_cast<const float4 *>(e_b + c);
            const bool vec = (a.O & 3) == 0 && o + 3 < a.O;
            float4 wr[G_EPI_Q];
#pragma unroll
            for (int q = 0; q < G_EPI_Q; q++)
                wr[q] = q < n_sm ? *reinterpret_cast<const float4 *>(e_wo + q * G_BN + c) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 1
            for (int lr0 = warp; lr0 < 64; lr0 += 8) { /* 2 rows per step: the other half's accumulators are live */
                int4 cv[2];
                float sx[2], rr[2][G_EPI_Q];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int lr = lr0 + 4 * u, rt = wg * 64 + lr;
                    cv[u] = *reinterpret_cast<const int4 *>(ts + lr * P_TS + cc);
                    sx[u] = e_sx[rt];
                    const float4 ra = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q);
                    const float4 rb = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q + 4);
                    rr[u][0] = ra.x, rr[u][1] = ra.y, rr[u][2] = ra.z, rr[u][3] = ra.w;
                    rr[u][4] = rb.x, rr[u][5] = rb.y, rr[u][6] = rb.z, rr[u][7] = rb.w;
                }
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int t = m0 + wg * 64 + lr0 + 4 * u; /* token */
                    if (t >= a.T) break;
                    float4 e = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                    for (int q = 0; q < G_EPI_Q; q++) { /* same order as epilogue_kernel: q ascending */
                        if (q < n_sm) {
                            e.x = __fmaf_rn(rr[u][q], wr[q].x, e.x), e.y = __fmaf_rn(rr[u][q], wr[q].y, e.y);
                            e.z = __fmaf_rn(rr[u][q], wr[q].z, e.z), e.w = __fmaf_rn(rr[u][q], wr[q].w, e.w);
                        }
                    }
                    if (n > n_sm) e = outl_sums_rest4(a, n_sm, t, o, sw, e); /* rare */
                    const float4 y = make_float4(epi_value(cv[u].x, sx[u], sw.x, e.x, bb.x),
                                                 epi_value(cv[u].y, sx[u], sw.y, e.y, bb.y),
                                                 epi_value(cv[u].z, sx[u], sw.z, e.z, bb.z),
                                                 epi_value(cv[u].w, sx[u], sw.w, e.w, bb.w));
                    const size_t yi = (size_t)t * a.O + o;
                    if (vec) {
                        y_store4(a.y, a.ytype, yi, y);
                    } else {
                        y_store(a.y, a.ytype, yi, y.x);
                        if (o + 1 < a.O) y_store(a.y, a.ytype, yi + 1, y.y);
                        if (o + 2 < a.O) y_store(a.y, a.ytype, yi + 2, y.z);
                        if (o + 3 < a.O) y_store(a.y, a.ytype, yi + 3, y.w);
                    }
                }
            }
        }
        asm volatile("bar.sync %0, 128;" ::"r"(2 + wg) : "memory"); /* read: the next half may overwrite it */
    }
#endif
}
