/* LLM.int8 int8 GEMM with the epilogue fused, for sm_90a (H100/H200): wgmma m64n256k32 s8.s8 -> s32, tiles loaded by
 * TMA (cp.async.bulk.tensor, 128-byte swizzle) into a 4-stage mbarrier ring, one producer warp, two consumer
 * warpgroups. The epilogue y = c * sx * sw + outlier sums + bias (epi_value, same op order as int8.cu's
 * epilogue_kernel) runs on the int32 tile staged in shared memory: no int32 C in global memory.
 *
 * Block tile: 128 tokens x 256 outputs, K in steps of 128 bytes. Consumer warpgroup g (1, 2) owns tokens
 * 64 (g - 1) .. +63 of the tile. Rows past T / O come in as zeros from the TMA (out-of-bounds fill) and are not
 * stored; K past kdim likewise, so any shape works as long as the row strides are multiples of 16 bytes.
 *
 * This file is compiled for sm_90a as well as the project's architectures; only the sm_90a pass
 * (__CUDA_ARCH_FEAT_SM90_ALL) has the real kernel body, and a probe launch tells the host which one was loaded.
 *
 * Status and measurements: docs/perf-int8-cuda.md. Outputs are bitwise equal to the cuBLASLt path (bench-int8 and
 * test-int8 compare them). BNB_INT8_SM90_VAR (comparisons): bit 0 grouped tile order, bit 1 streaming (evict-first)
 * output stores, bit 3 2-CTA clusters + weight multicast, bit 5 programmatic dependent launch. (A persistent kernel
 * and a 192-token-tile kernel were measured slower and removed: docs/perf-int8-cuda.md, run 5.) */
#include "int8-gemm.cuh"

#include <cuda.h> /* CUtensorMap and its enums only: the encoder comes from cudaGetDriverEntryPoint, no -lcuda */

#include <mutex>
#include <stdlib.h>
#include <string.h>

#define G_BM 128
#define G_BN 256
#define G_BK 128
#define G_STAGES 4
#define G_A_BYTES (G_BM * G_BK)
#define G_B_BYTES (G_BN * G_BK)
#define G_STAGE_BYTES (G_A_BYTES + G_B_BYTES)
#define G_GROUP 8 /* output tiles per group of the grouped tile order (variant bit 0) */
#define G_TS 264  /* row stride (int32) of the accumulator tile staged in shared memory (conflict-free) */
#define G_VAR_DEFAULT 0 /* per-tile kernel, plain order and stores, no clusters */
#define G_EPI_Q 8 /* outlier columns whose epilogue operands are staged in shared memory (the epilogue reads 2 float4) */
#define G_EPI_BYTES ((2 * G_BN + G_EPI_Q * G_BN + G_BM * G_EPI_Q + G_BM) * 4)
#define G_SMEM (G_STAGES * G_STAGE_BYTES + 1024 /* align */ + 256 /* barriers */ + G_EPI_BYTES)
#define G_THREADS 384
#define G_DEFAULT_ON 1 /* the default GEMM on sm_90 (BNB_INT8_GEMM=lt forces cuBLASLt + epilogue_kernel) */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define G_SM90A 1
#endif

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
/* The dynamic shared memory rounded up to 1024 bytes (128-byte swizzle) by pointer arithmetic on the __shared__
 * array itself: a round trip through an integer would hide the address space from the compiler, which then emits
 * generic loads and stores (LD/ST instead of LDS/STS) for every shared access, ordered against the global stores. */
__device__ __forceinline__ unsigned char *smem_align1024(unsigned char *raw) {
    return raw + ((1024u - (smem_u32(raw) & 1023u)) & 1023u);
}

#ifdef G_SM90A
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
/* Spins on the phase; a wait of more than ~2^32 cycles (seconds) means a broken pipeline: trap rather than hang. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    const long long start = clock64();
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
        if (!done && clock64() - start > (1ll << 32)) __trap();
    } while (!done);
}
/* 2-D tile (c0 = byte along K, c1 = row) of the tensor map into shared memory, completing on bar. */
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 ::"r"(dst), "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}
/* The same, written to the same offset in the shared memory of every CTA of the cluster in mask (and completing on
 * the barrier at bar's offset in each of them). */
__device__ __forceinline__ void tma_load_2d_mc(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar,
                                               uint16_t mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
                 " [%0], [%1, {%2, %3}], [%4], %5;"
                 ::"r"(dst), "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar), "h"(mask)
                 : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
/* arrive on the barrier at the same offset in CTA `cta` of the cluster */
__device__ __forceinline__ void mbar_arrive_cta(uint32_t bar, uint32_t cta) {
    /* default semantics (release, CTA scope): the wgmma reads of the stage are complete (wait_group 0) before this;
     * run 5's .release.cluster form made every k-block pay a cluster-scope fence */
    asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
                 "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar), "r"(cta)
                 : "memory");
}
__device__ __forceinline__ void cluster_sync_all() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
/* wgmma shared-memory descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart. */
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
    uint64_t d = 0;
    d |= (uint64_t)((addr & 0x3FFFF) >> 4);
    d |= (uint64_t)1 << 16;          /* leading byte offset (unused for swizzled K-major) */
    d |= (uint64_t)(1024 >> 4) << 32; /* stride byte offset */
    d |= (uint64_t)1 << 62;          /* 128-byte swizzle */
    return d;
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

/* D [64 x 256] s32 += A [64 x 32] s8 (smem, K-major) * B [256 x 32] s8 (smem, K-major); generated operand list. */
__device__ __forceinline__ void wgmma_m64n256k32_s8(int32_t (&d)[128], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p;\n"
        "}\n"
        :
          "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
          "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
          "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
          "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
          "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
          "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
          "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
          "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]),
          "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]),
          "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]),
          "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
        : "l"(da), "l"(db), "r"(1));
}
/* Outlier sums for columns q >= q0 (past the ones staged in shared memory) of 4 consecutive outputs o.. of token t,
 * continuing e (same q order as epilogue_kernel); columns past O get 0. Not inlined: rare, kept out of the hot loop. */
__device__ __noinline__ float4 outl_sums_rest4(const epi_args &a, int q0, int t, int o, float4 sw, float4 e) {
    const int n = *a.count, ns = min(n, OUTL_CAP);
    const bool h1 = o + 1 < a.O, h2 = o + 2 < a.O, h3 = o + 3 < a.O;
    for (int q = q0; q < ns; q++) { /* staged in global memory */
        const float *wr = a.wo_st + (size_t)q * a.Op + o;
        const float r = a.r_st[(size_t)t * OUTL_CAP + q];
        e.x = __fmaf_rn(r, wr[0], e.x), e.y = __fmaf_rn(r, h1 ? wr[1] : 0.f, e.y);
        e.z = __fmaf_rn(r, h2 ? wr[2] : 0.f, e.z), e.w = __fmaf_rn(r, h3 ? wr[3] : 0.f, e.w);
    }
    for (int q = max(q0, OUTL_CAP); q < n; q++) { /* beyond the staged columns: gather directly (slow, correct) */
        const int c = a.idx[q];
        const int8_t *wc = a.wq + (size_t)o * a.ldw + c;
        const float r = outl_residual(a, t, q, c);
        e.x = __fmaf_rn(r, __fmul_rn((float)wc[0], sw.x), e.x);
        e.y = __fmaf_rn(r, h1 ? __fmul_rn((float)wc[a.ldw], sw.y) : 0.f, e.y);
        e.z = __fmaf_rn(r, h2 ? __fmul_rn((float)wc[2 * (size_t)a.ldw], sw.z) : 0.f, e.z);
        e.w = __fmaf_rn(r, h3 ? __fmul_rn((float)wc[3 * (size_t)a.ldw], sw.w) : 0.f, e.w);
    }
    return e;
}

#endif /* G_SM90A */

__global__ void int8_sm90a_probe_kernel(int *out) {
#ifdef G_SM90A
    *out = 1;
#else
    *out = 0;
#endif
}

#ifdef G_SM90A
/* The per-tile kernel's epilogue rows, once the int32 tile is staged (row stride G_TS): thread = 4 consecutive outputs
 * o .. o + 3 (staging column c; a warp writes 512 contiguous bytes of a row), every other row, 4 rows per step with all
 * their shared loads first; the thread's columns of the staged outlier weights in wr. YT: the output type. */
template <int YT>
__device__ __forceinline__ void tile_rows_epilogue(const epi_args &a, const int32_t *ts, const float *e_sx,
                                                   const float *e_r, const float4 (&wr)[G_EPI_Q], float4 sw, float4 bb,
                                                   int o, int c, int wg, int tid, int m0, int n, int n_sm, bool vec,
                                                   int var) {
#pragma unroll 1
    for (int lr0 = tid >> 6; lr0 < 64; lr0 += 8) {
        int4 cv[4];
        float sx[4], rr[4][G_EPI_Q];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int lr = lr0 + 2 * u, rt = (wg - 1) * 64 + lr;
            cv[u] = *reinterpret_cast<const int4 *>(ts + lr * G_TS + c);
            sx[u] = e_sx[rt];
            const float4 ra = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q);
            const float4 rb = *reinterpret_cast<const float4 *>(e_r + rt * G_EPI_Q + 4);
            rr[u][0] = ra.x, rr[u][1] = ra.y, rr[u][2] = ra.z, rr[u][3] = ra.w;
            rr[u][4] = rb.x, rr[u][5] = rb.y, rr[u][6] = rb.z, rr[u][7] = rb.w;
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int t = m0 + (wg - 1) * 64 + lr0 + 2 * u; /* token */
            if (t >= a.T) break;
            float4 e = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int q = 0; q < G_EPI_Q; q++) { /* same order as epilogue_kernel: q ascending */
                if (q < n_sm) {
                    e.x = __fmaf_rn(rr[u][q], wr[q].x, e.x), e.y = __fmaf_rn(rr[u][q], wr[q].y, e.y);
                    e.z = __fmaf_rn(rr[u][q], wr[q].z, e.z), e.w = __fmaf_rn(rr[u][q], wr[q].w, e.w);
                }
            }
            if (n > n_sm) e = outl_sums_rest4(a, n_sm, t, o, sw, e); /* rare: more columns than staged */
            const float4 y = make_float4(epi_value(cv[u].x, sx[u], sw.x, e.x, bb.x),
                                         epi_value(cv[u].y, sx[u], sw.y, e.y, bb.y),
                                         epi_value(cv[u].z, sx[u], sw.z, e.z, bb.z),
                                         epi_value(cv[u].w, sx[u], sw.w, e.w, bb.w));
            const size_t yi = (size_t)t * a.O + o;
            if (vec) {
                if (YT == BNB_TYPE_F32 && (var & 2)) /* evict-first: keep x / W in L2 */
                    __stcs(reinterpret_cast<float4 *>((float *)a.y + yi), y);
                else
                    y_store4_t<YT>(a.y, yi, y);
            } else {
                y_store_t<YT>(a.y, yi, y.x);
                if (o + 1 < a.O) y_store_t<YT>(a.y, yi + 1, y.y);
                if (o + 2 < a.O) y_store_t<YT>(a.y, yi + 2, y.z);
                if (o + 3 < a.O) y_store_t<YT>(a.y, yi + 3, y.w);
            }
        }
    }
}
#endif

/* Grid: x = token tiles (fastest, so neighbouring blocks share the weight tile in L2), y = output tiles.
 * Variant bit 3 (launched as clusters of 2 along x, grid x even): the two CTAs of a cluster share the weight tile:
 * each loads one 128-row half of it (tm_wh, box 128 rows) and multicasts it into both CTAs' stage, so the L2 -> SM
 * traffic per tile is 32 KB per stage instead of 48 KB; a stage is refilled once the consumers of both CTAs have
 * released it (empty barriers count 16 arrivals, half of them remote). */
__global__ void __launch_bounds__(G_THREADS, 1)
    int8_gemm_sm90a_kernel(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_w,
                           const __grid_constant__ CUtensorMap tm_wh, const __grid_constant__ epi_args a, int kblocks,
                           int flags) {
#ifdef G_SM90A
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *smem = smem_align1024(smem_raw);
    uint64_t *bars = (uint64_t *)(smem + G_STAGES * G_STAGE_BYTES); /* full[G_STAGES], empty[G_STAGES] */
    const uint32_t s_base = smem_u32(smem), bar_base = smem_u32(bars);
    const int mode = flags & 3, var = flags >> 2;
    const bool mc = (var & 8) != 0;
    const uint32_t rank = mc ? cluster_rank() : 0;
    int mt = blockIdx.x, nt = blockIdx.y;
    if ((var & 1) && !mc) { /* 1-D grid in groups of G_GROUP output tiles, output tiles fastest inside a group */
        const int MT = (a.T + G_BM - 1) / G_BM, NT = (a.O + G_BN - 1) / G_BN, per = G_GROUP * MT;
        const int g = blockIdx.x / per, w = blockIdx.x % per, gn = min(G_GROUP, NT - g * G_GROUP);
        nt = g * G_GROUP + w % gn, mt = w / gn;
    }
    const int m0 = mt * G_BM, n0 = nt * G_BN;
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    if (threadIdx.x == 0) {
        for (int s = 0; s < G_STAGES; s++) {
            mbar_init(bar_base + 8 * s, 1);                  /* full: the producer's expect_tx */
            mbar_init(bar_base + 8 * (G_STAGES + s), mc ? 16 : 8); /* empty: one arrive per consumer warp (x CTAs) */
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (mc) cluster_sync_all(); /* the peer's barriers are initialised before any multicast or remote arrive */
    else __syncthreads();
    /* launched as a programmatic dependent (variant bit 5): the prologue above overlapped the previous kernel; wait for
     * its results before reading any input (a no-op otherwise) */
    asm volatile("griddepcontrol.wait;" ::: "memory");
    /* epilogue operands of this tile in shared memory, loaded by producer warps 1-3 during the main loop: column
     * scales and bias [G_BN], staged outlier weights [G_EPI_Q][G_BN], residuals [G_BM][G_EPI_Q] (read from global
     * memory in the epilogue they were latency-bound: ~80 us per tile in run 1) */
    float *e_sw = (float *)(smem + G_STAGES * G_STAGE_BYTES + 256), *e_b = e_sw + G_BN, *e_wo = e_b + G_BN;
    float *e_r = e_wo + G_EPI_Q * G_BN, *e_sx = e_r + G_BM * G_EPI_Q;
    const int n_outl = a.count ? *a.count : 0, n_sm = min(n_outl, G_EPI_Q);
    if (wg == 0) { /* producer */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (tid >= 32) {
            for (int i = tid - 32; i < G_BN; i += 96) {
                const int o = n0 + i;
                const bool ok = o < a.O;
                e_sw[i] = ok ? a.wmax[o] / 127.f : 0.f;
                e_b[i] = ok && a.bias ? a.bias[o] : 0.f;
                for (int q = 0; q < n_sm; q++) e_wo[q * G_BN + i] = ok ? a.wo_st[(size_t)q * a.Op + o] : 0.f;
            }
            for (int i = tid - 32; i < G_BM; i += 96) e_sx[i] = m0 + i < a.T ? a.xmax[m0 + i] / 127.f : 0.f;
            for (int i = tid - 32; i < G_BM * G_EPI_Q; i += 96) {
                const int t = m0 + i / G_EPI_Q, q = i % G_EPI_Q;
                e_r[i] = t < a.T && q < n_sm ? a.r_st[(size_t)t * OUTL_CAP + q] : 0.f;
            }
            asm volatile("bar.arrive 1, 352;" ::: "memory"); /* warps 1-3 + the 8 consumer warps */
        }
        if (tid == 0) {
            for (int kb = 0; kb < kblocks; kb++) {
                const int s = kb % G_STAGES;
                if (kb >= G_STAGES) mbar_wait(bar_base + 8 * (G_STAGES + s), ((kb / G_STAGES) - 1) & 1);
                const uint32_t full = bar_base + 8 * s, dst = s_base + s * G_STAGE_BYTES;
                mbar_expect_tx(full, G_STAGE_BYTES);
                tma_load_2d(dst, &tm_x, kb * G_BK, m0, full);
                if (mc)
                    tma_load_2d_mc(dst + G_A_BYTES + rank * (G_B_BYTES / 2), &tm_wh, kb * G_BK, n0 + (int)rank * 128,
                                   full, (uint16_t)3);
                else
                    tma_load_2d(dst + G_A_BYTES, &tm_w, kb * G_BK, n0, full);
            }
        }
    } else { /* consumers */
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        int32_t acc[128];
#pragma unroll
        for (int i = 0; i < 128; i++) acc[i] = 0;
        const uint32_t a_off = (uint32_t)(wg - 1) * 64 * G_BK;
        for (int kb = 0; kb < kblocks; kb++) {
            const int s = kb % G_STAGES;
            mbar_wait(bar_base + 8 * s, (kb / G_STAGES) & 1);
            const uint32_t sa = s_base + s * G_STAGE_BYTES + a_off, sb = s_base + s * G_STAGE_BYTES + G_A_BYTES;
            if (!(mode & 2)) {
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < G_BK / 32; kk++)
                    wgmma_m64n256k32_s8(acc, smem_desc(sa + kk * 32), smem_desc(sb + kk * 32));
                wgmma_commit();
                wgmma_wait0();
            } /* one group in flight (wait_group 1, stage kb - 1 released after kb's MMAs are issued, k-block 0 zeroing the
               * accumulators by the scale-d operand so ptxas does not serialize, C7515) was measured: no gain (0.4252
               * vs 0.4250 ms at 4096 x 8192 x 8192; docs/perf-int8-cuda.md, run 8) */
            if ((tid & 31) == 0) {
                mbar_arrive(bar_base + 8 * (G_STAGES + s));
                if (mc) mbar_arrive_cta(bar_base + 8 * (G_STAGES + s), rank ^ 1);
            }
        }
        if (mode & 1) { /* measurement mode: no epilogue (one store keeps the accumulators alive) */
            int32_t sum = 0;
#pragma unroll
            for (int i = 0; i < 128; i++) sum ^= acc[i];
            if (sum == 0x7eadbeef) y_store(a.y, a.ytype, 0, 1.f);
        }
        const int warp = tid / 32, lane = tid % 32, n = n_outl;
        if (!(mode & 1)) {
            asm volatile("bar.sync 1, 352;" ::: "memory"); /* the shared epilogue operands are in place */
            /* The raw int32 tile goes to shared memory (the pipeline stages: free once both warpgroups are past their
             * last MMA) through 64 plain stores, and a rolled loop does the epilogue from there: small code. Run 3's
             * epilogue straight from the registers was a 32-times unrolled body with the outlier loops inside
             * (~80 us per tile, fixed, with or without MMAs: instruction fetch). */
            asm volatile("bar.sync 2, 256;" ::: "memory");
            int32_t *ts = (int32_t *)smem + (size_t)(wg - 1) * 64 * G_TS;
            {
                int32_t *p0 = ts + (warp * 16 + lane / 4) * G_TS + (lane % 4) * 2, *p1 = p0 + 8 * G_TS;
#pragma unroll
                for (int j = 0; j < 32; j++) {
                    *reinterpret_cast<int2 *>(p0 + 8 * j) = make_int2(acc[4 * j], acc[4 * j + 1]);
                    *reinterpret_cast<int2 *>(p1 + 8 * j) = make_int2(acc[4 * j + 2], acc[4 * j + 3]);
                }
            }
            if (wg == 1) asm volatile("bar.sync 3, 128;" ::: "memory");
            else asm volatile("bar.sync 4, 128;" ::: "memory");
            /* thread: outputs o .. o + 3 (tile_rows_epilogue); its columns of the staged outlier weights in
             * registers */
            const int c = (tid & 63) * 4, o = n0 + c;
            if (o < a.O) {
                const float4 sw = *reinterpret_cast<const float4 *>(e_sw + c);
                const float4 bb = *reinterpret_cast<const float4 *>(e_b + c);
                const bool vec = (a.O & 3) == 0 && o + 3 < a.O;
                float4 wr[G_EPI_Q];
#pragma unroll
                for (int q = 0; q < G_EPI_Q; q++)
                    wr[q] = q < n_sm ? *reinterpret_cast<const float4 *>(e_wo + q * G_BN + c)
                                     : make_float4(0.f, 0.f, 0.f, 0.f);
                /* the row loop once per output type: no type branches around the stores */
                if (a.ytype == BNB_TYPE_F16)
                    tile_rows_epilogue<BNB_TYPE_F16>(a, ts, e_sx, e_r, wr, sw, bb, o, c, wg, tid, m0, n, n_sm, vec,
                                                     var);
                else if (a.ytype == BNB_TYPE_BF16)
                    tile_rows_epilogue<BNB_TYPE_BF16>(a, ts, e_sx, e_r, wr, sw, bb, o, c, wg, tid, m0, n, n_sm, vec,
                                                     var);
                else
                    tile_rows_epilogue<BNB_TYPE_F32>(a, ts, e_sx, e_r, wr, sw, bb, o, c, wg, tid, m0, n, n_sm, vec,
                                                     var);
            }
        }
    }
    if (mc) cluster_sync_all(); /* no CTA leaves while its peer may still arrive on its barriers */
#endif
}

/* ================================================================================================ host side */
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

#define G_MAX_DEV 64
static std::mutex g_mutex;
static signed char g_ready[G_MAX_DEV]; /* 0 unknown, 1 yes, -1 no */
static int g_sms[G_MAX_DEV];           /* multiprocessors, read with g_ready */
static encode_tiled_fn g_encode;

/* Once per device, outside captures: compute capability 9.0, the tensor-map encoder found, the sm_90a body loaded.
 * By default only for T x O of at least one wave of tiles: below that cuBLASLt's smaller tiles / split K win
 * (300 x 4000 x 1000: 0.031 vs 0.048 ms). */
bool bnb_int8_sm90a_ready(bnb_cuda_ctx *c, int T, int O) {
    /* BNB_INT8_GEMM=lt / =wgmma: force either path (A/B measurements, tests); unset: G_DEFAULT_ON */
    const char *env = getenv("BNB_INT8_GEMM");
    if (env && strcmp(env, "lt") == 0) return false;
    const bool forced = env && strcmp(env, "wgmma") == 0;
    if (!G_DEFAULT_ON && !forced) return false;
    if (c->device < 0 || c->device >= G_MAX_DEV) return false;
    const int64_t tiles = (int64_t)((T + G_BM - 1) / G_BM) * ((O + G_BN - 1) / G_BN);
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (g_ready[c->device]) return g_ready[c->device] > 0 && (forced || tiles >= g_sms[c->device]);
    }
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return false;
    bool ok = false;
    int major = 0, minor = 0;
    int *d_flag = NULL, flag = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c->device) == cudaSuccess && major == 9 &&
        minor == 0) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult q;
        if (!g_encode && cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                                          &q) == cudaSuccess && q == cudaDriverEntryPointSuccess)
            g_encode = (encode_tiled_fn)fn;
        if (cudaDeviceGetAttribute(&g_sms[c->device], cudaDevAttrMultiProcessorCount, c->device) != cudaSuccess)
            g_sms[c->device] = 1;
        if (g_encode && cudaMalloc(&d_flag, sizeof(int)) == cudaSuccess) {
            int8_sm90a_probe_kernel<<<1, 1, 0, c->stream>>>(d_flag);
            ok = cudaMemcpyAsync(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream) == cudaSuccess &&
                 cudaStreamSynchronize(c->stream) == cudaSuccess && flag == 1;
            ok = ok && cudaFuncSetAttribute(int8_gemm_sm90a_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            G_SMEM) == cudaSuccess;
            cudaFree(d_flag);
        }
    }
    cudaGetLastError(); /* a failed probe leaves no sticky launch error behind */
    std::lock_guard<std::mutex> lock(g_mutex);
    g_ready[c->device] = ok ? 1 : -1;
    return ok && (forced || tiles >= g_sms[c->device]);
}

static bool encode_map(CUtensorMap *m, const int8_t *base, int rows, int kdim, int ld, int box_rows) {
    const cuuint64_t dims[2] = {(cuuint64_t)kdim, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)ld};
    const cuuint32_t box[2] = {G_BK, (cuuint32_t)box_rows};
    const cuuint32_t estr[2] = {1, 1};
    return g_encode(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void *)base, dims, strides, box, estr,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bnb_status bnb_int8_gemm_sm90a(bnb_cuda_ctx *c, const epi_args &a, int kdim) {
    /* BNB_INT8_SM90_VAR: bit 0 grouped tile order, bit 1 streaming output stores, bit 3 clusters of 2 sharing the
     * weight tile by TMA multicast, bit 5 programmatic dependent launch (default G_VAR_DEFAULT) */
    const char *vs = getenv("BNB_INT8_SM90_VAR");
    const int var = vs ? atoi(vs) & 43 : G_VAR_DEFAULT;
    CUtensorMap tx, tw, twh;
    if (!encode_map(&tx, a.q, a.T, kdim, a.ldq, G_BM) || !encode_map(&tw, a.wq, a.O, kdim, a.ldw, G_BN) ||
        !encode_map(&twh, a.wq, a.O, kdim, a.ldw, G_BN / 2))
        return bnb_fail(BNB_ERR_BACKEND, "bnb_matmul_int8 (cuda sm_90a): tensor map for T %d K %d O %d failed", a.T,
                        kdim, a.O);
    const unsigned MT = (unsigned)((a.T + G_BM - 1) / G_BM), NT = (unsigned)((a.O + G_BN - 1) / G_BN);
    /* BNB_INT8_SM90_MODE (measurements only, wrong results): 1 no epilogue, 2 no MMAs, 3 loads only */
    const char *m = getenv("BNB_INT8_SM90_MODE");
    const int mode = m ? atoi(m) & 3 : 0, kblocks = (kdim + G_BK - 1) / G_BK, flags = mode | (var & 11) << 2;
    /* clusters of 2 along the token tiles: grid x rounded up to even (a spare tile stores nothing) */
    const dim3 grid = (var & 8) ? dim3((MT + 1) & ~1u, NT) : (var & 1) ? dim3(MT * NT) : dim3(MT, NT);
    if (!(var & 40)) {
        int8_gemm_sm90a_kernel<<<grid, G_THREADS, G_SMEM, c->stream>>>(tx, tw, twh, a, kblocks, flags);
    } else {
        cudaLaunchAttribute attr[1];
        memset(attr, 0, sizeof attr);
        if (var & 8) {
            attr[0].id = cudaLaunchAttributeClusterDimension;
            attr[0].val.clusterDim.x = 2, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
        } else { /* programmatic dependent launch: the prologue under the tail of the previous kernel */
            attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            attr[0].val.programmaticStreamSerializationAllowed = 1;
        }
        cudaLaunchConfig_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.gridDim = grid, cfg.blockDim = dim3(G_THREADS), cfg.dynamicSmemBytes = G_SMEM, cfg.stream = c->stream;
        cfg.attrs = attr, cfg.numAttrs = 1;
        if (cudaLaunchKernelEx(&cfg, int8_gemm_sm90a_kernel, tx, tw, twh, a, kblocks, flags) != cudaSuccess) {
            cudaGetLastError();
            return bnb_fail(BNB_ERR_BACKEND, "bnb_matmul_int8 (sm_90a GEMM): %s launch failed",
                            (var & 8) ? "cluster" : "programmatic dependent");
        }
    }
    BNB_CUDA_CHECK_LAUNCH("bnb_matmul_int8 (sm_90a GEMM)");
    return BNB_OK;
}
