#!/usr/bin/env bash
# Focused GPU check of the int8 GEMM paths (run from the repo root on the GPU machine): build test-int8 and
# bench-int8, run the CUDA tests, the GPU bench with the sm_90a measurement modes, and memcheck over test-int8.
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=ON -DBNB_BUILD_TESTS=ON -DBNB_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null && cmake --build build-gpu -j16 --target test-int8 bench-int8 2>&1 | tail -2
build-gpu/tests/test-int8 --backend cuda 2>&1 | tail -4
BNB_INT8_BENCH_MODES=1 build-gpu/bin/bench-int8 --gpu-only 2>&1 | tail -40
BNB_TEST_QUICK=1 timeout 100 compute-sanitizer --tool memcheck --print-limit 5 build-gpu/tests/test-int8 --backend cuda 2>&1 | tail -4
