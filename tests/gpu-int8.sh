#!/usr/bin/env bash
# Focused GPU check of the int8 GEMM paths (run from the repo root on the GPU machine): build test-int8 and
# bench-int8, run the CUDA tests, the GPU bench with the sm_90a measurement modes, and memcheck over test-int8.
# MODES=1: the sm_90a kernel's measurement modes too. NCU=1: Nsight Compute speed-of-light of the kernels of the
# first calls of each shape in NCU_SHAPES (T,K,O ...; default 16,4096,4096; reports in $OUT/ncu-*.txt).
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=ON -DBNB_BUILD_TESTS=ON -DBNB_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null && cmake --build build-gpu -j16 --target test-int8 bench-int8 2>&1 | tail -2
timeout 200 build-gpu/tests/test-int8 --backend cuda 2>&1 | grep -E "FAIL|passed" | tail -8
env ${MODES:+BNB_INT8_BENCH_MODES=1} timeout 200 build-gpu/bin/bench-int8 --gpu-only 2>&1 | grep -v headline | tail -40
if [ -n "$NCU" ]; then  # Nsight Compute: durations and throughputs of the kernels of each shape's first calls
    for shape in ${NCU_SHAPES:-16,4096,4096}; do
        BNB_INT8_BENCH_SHAPE=$shape timeout 120 ncu --clock-control none --section SpeedOfLight --launch-count ${NCU_COUNT:-14} \
            build-gpu/bin/bench-int8 --gpu-only > "${OUT:-/tmp}/ncu-$shape.txt" 2>&1
        echo "ncu $shape:"
        grep -E "^  [a-zA-Z_0-9]+.*\(|Duration|DRAM Through|L2 Cache Through|Compute \(SM\)" "${OUT:-/tmp}/ncu-$shape.txt" |
            sed -E 's/\(CUtensorMap_st.*\)x/x/; s/, Context.*//' | head -${NCU_LINES:-80}
    done
fi
BNB_TEST_QUICK=1 timeout 100 compute-sanitizer --tool memcheck --print-limit 5 build-gpu/tests/test-int8 --backend cuda 2>&1 | tail -4
