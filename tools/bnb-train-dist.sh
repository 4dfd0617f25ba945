#!/usr/bin/env bash
# Launch a data-parallel bnb program on N local GPUs, one process each (torchrun-style):
#   tools/bnb-train-dist.sh --gpus N PROGRAM [ARGS...]
# Each process gets RANK, WORLD_SIZE, LOCAL_RANK, a fresh BNB_DIST_ID_FILE (NCCL unique id exchange), and
# NCCL_NVLS_ENABLE=0 (NVLink multicast stays off). Exit status: the first non-zero rank status (77 if all skipped).
set -u
N=1
if [ "${1:-}" = "--gpus" ]; then N="$2"; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 --gpus N PROGRAM [ARGS...]" >&2; exit 2; }
export NCCL_NVLS_ENABLE=0
export WORLD_SIZE="$N"
dir=$(mktemp -d /tmp/bnb-dist.XXXXXX)
export BNB_DIST_ID_FILE="$dir/nccl-id"
pids=()
for ((r = 0; r < N; r++)); do
  RANK=$r LOCAL_RANK=$r "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
  wait "$p"; s=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; then [ "$s" -ne 0 ] && rc=$s; fi
done
rm -rf "$dir"
exit $rc
