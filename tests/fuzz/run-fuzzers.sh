#!/usr/bin/env bash
# Build the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) and run each for N executions.
#   [TARGETS="gguf safetensors tokenizer"] [FUZZ_FROM_HEAD=1] tests/fuzz/run-fuzzers.sh [RUNS=1000000] [BUILD_DIR]
# FUZZ_FROM_HEAD=1 builds the committed sources (git archive HEAD) instead of the working tree (useful while other
# files are mid-edit). Needs clang with libFuzzer (Debian: clang + libclang-rt-<ver>-dev or the clang package's bundled runtime).
# Prints, per target, the executions done and whether it crashed; exits non-zero on any crash.
set -euo pipefail
RUNS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${2:-$ROOT/build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/obj" "$OUT/corpus"
SRC_ROOT=$ROOT
if [[ "${FUZZ_FROM_HEAD:-0}" == 1 ]]; then
  SRC_ROOT="$OUT/head-src"
  rm -rf "$SRC_ROOT" "$OUT/obj"
  mkdir -p "$SRC_ROOT" "$OUT/obj"
  (cd "$ROOT" && git archive HEAD src include tests/fuzz) | tar -x -C "$SRC_ROOT"
fi
FLAGS=(-g -O1 -std=c11 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -I"$SRC_ROOT/include" -I"$SRC_ROOT/src" -DBNB_BUILD -D_POSIX_C_SOURCE=200809L -Wno-unknown-pragmas)

# the library (CPU build, no OpenMP) with the sanitizers and libFuzzer's coverage instrumentation
mapfile -t SRCS < <(cd "$SRC_ROOT" && find src -name '*.c' -not -path 'src/cuda/*' | sort)
OBJS=()
for s in "${SRCS[@]}"; do
  o="$OUT/obj/$(echo "$s" | tr '/' '_').o"
  if [[ ! -f "$o" || "$SRC_ROOT/$s" -nt "$o" ]]; then
    "$CC" "${FLAGS[@]}" -fsanitize=fuzzer-no-link -c "$SRC_ROOT/$s" -o "$o"
  fi
  OBJS+=("$o")
done
"$CC" "${FLAGS[@]}" "$SRC_ROOT/tests/fuzz/make-seeds.c" "${OBJS[@]}" -lm -o "$OUT/make-seeds"
"$OUT/make-seeds" "$OUT/corpus"

status=0
for t in ${TARGETS:-gguf safetensors tokenizer}; do
  "$CC" "${FLAGS[@]}" -fsanitize=fuzzer "$SRC_ROOT/tests/fuzz/fuzz-$t.c" "${OBJS[@]}" -lm -o "$OUT/fuzz-$t"
  mkdir -p "$OUT/corpus/$t" "$OUT/crashes-$t"
  log="$OUT/fuzz-$t.log"
  if "$OUT/fuzz-$t" -runs="$RUNS" -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$OUT/crashes-$t/" "$OUT/corpus/$t" >"$log" 2>&1; then
    res=ok
  else
    res=CRASH
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "fuzz-$t: $execs executions in ${secs}s, $cov, result: $res (log $log)"
done
exit $status
