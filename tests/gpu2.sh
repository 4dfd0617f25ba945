#!/usr/bin/env bash
# 2-GPU data-parallel test (nvidia-h200-x2): build, run test-dist-nccl on 2 ranks (2 GPUs == 1 GPU x2 accumulation,
# ZeRO-1, q8 vs f32 loss after 200 steps, bytes per step), then tokens/s 1 vs 2 GPUs for the gpt2 preset.
# Usage from the repo root: bash tests/gpu2.sh   (NCCL_NVLS_ENABLE=0 is exported by the launcher)
set -u
export NCCL_NVLS_ENABLE=0
B=build-gpu2
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null &&
  cmake --build $B -j16 --target test-dist test-dist-nccl 2>&1 | tail -3 || exit 1
nvidia-smi -L
$B/tests/test-dist | tail -3
timeout 300 tools/bnb-train-dist.sh --gpus 2 $B/tests/test-dist-nccl > /tmp/dist-test.log 2>&1; rc1=$?
timeout 200 tools/bnb-train-dist.sh --gpus 2 $B/tests/test-dist-nccl --bench > /tmp/dist-bench.log 2>&1; rc2=$?
echo "== test (rc $rc1)"; grep -v '^|' /tmp/dist-test.log | tail -20
echo "== bench (rc $rc2)"; grep -v '^|' /tmp/dist-bench.log | tail -8
echo "== summary"; grep '^|' /tmp/dist-test.log; grep '^|' /tmp/dist-bench.log
exit $(( rc1 != 0 ? rc1 : rc2 ))
