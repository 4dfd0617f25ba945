#!/usr/bin/env bash
# Focused GPU check of the int8 GEMM paths (run from the repo root on the GPU machine): build test-int8 and
# bench-int8, run the CUDA tests, the GPU bench with the sm_90a measurement modes, and memcheck over test-int8.
# MODES=1: the sm_90a kernel's measurement modes too. NCU=1: Nsight Compute speed-of-light of every kernel of one
# shape's calls (NCU_SHAPE=T,K,O, default 16,4096,4096; report in $OUT/ncu.txt).
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=ON -DBNB_BUILD_TESTS=ON -DBNB_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null && cmake --build build-gpu -j16 --target test-int8 bench-int8 2>&1 | tail -2
timeout 200 build-gpu/tests/test-int8 --backend cuda 2>&1 | grep -E "FAIL|passed" | tail -8
for shape in 512,4096,16384 4096,4096,16384 4096,8192,8192; do  # per-stage event times of the many-token path
    BNB_INT8_STAGES=1 BNB_INT8_BENCH_SHAPE=$shape timeout 60 build-gpu/bin/bench-int8 --gpu-only 2>&1 | grep "int8 stages" | tail -1
    BNB_INT8_QUANT=scalar BNB_INT8_STAGES=1 BNB_INT8_BENCH_SHAPE=$shape timeout 60 build-gpu/bin/bench-int8 --gpu-only 2>&1 | grep "int8 stages" | tail -1 | sed 's/^/scalar quant: /'
done
env ${MODES:+BNB_INT8_BENCH_MODES=1} timeout 200 build-gpu/bin/bench-int8 --gpu-only 2>&1 | grep -v headline | tail -40
if [ -n "$NCU" ]; then  # Nsight Compute: kernel durations and throughputs of one shape's calls (NCU_SHAPE, T,K,O)
    BNB_INT8_BENCH_SHAPE=${NCU_SHAPE:-16,4096,4096} timeout 120 ncu --clock-control none --section SpeedOfLight \
        --launch-skip ${NCU_SKIP:-0} --launch-count ${NCU_COUNT:-40} build-gpu/bin/bench-int8 --gpu-only > "${OUT:-/tmp}/ncu.txt" 2>&1
    grep -E "^  [a-zA-Z_0-9]+.*\(|Duration|DRAM Through|L2 Cache Through|Compute \(SM\)" "${OUT:-/tmp}/ncu.txt" | head -${NCU_LINES:-80}
fi
BNB_TEST_QUICK=1 timeout 100 compute-sanitizer --tool memcheck --print-limit 5 build-gpu/tests/test-int8 --backend cuda 2>&1 | tail -4
