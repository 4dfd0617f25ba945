#!/usr/bin/env bash
# One-shot GPU check for bnb, run from the repo root on the GPU machine:
#   bash tests/gpu.sh            (logs and JSON go to ${OUT:-/tmp/bnb-gpu-out})
# 1. configure + build with CUDA (Release, sm_90, -j16) into build-gpu/
# 2. the whole CTest suite (GPU tests included; a GPU test that skips here is reported)
# 3. every GPU benchmark in BENCHES below (each writes <name>.json)
# 4. compute-sanitizer memcheck over the GPU test binaries (skipped when the tool is absent), in the time left
# and prints a summary table LAST. Never stops at the first failure; exits 1 if anything failed.
# Time: phases share a deadline (BNB_GPU_DEADLINE seconds, default 510) so the script ends within ~9 minutes.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
OUT=${OUT:-/tmp/bnb-gpu-out}
BUILD=${BNB_GPU_BUILD:-$ROOT/build-gpu}
DEADLINE=${BNB_GPU_DEADLINE:-510}
JOBS=${BNB_GPU_JOBS:-16}
mkdir -p "$OUT"

# ---- GPU benchmarks: "binary [args...]" (binaries in $BUILD/bin; --json $OUT/<binary>.json is appended).
# Append a line for each new GPU benchmark; print lines starting with "headline:" for the summary.
BENCHES=(
  "bench-cuda-core"
  "bench-quant"
  "bench-int8 --gpu-only"
  "bench-optim --gpu-only"
  "bench-int8 --cpu-only"
  "bench-optim --cpu-only"
)

export PATH=/usr/local/cuda/bin:$PATH
FAILED=0
SUMMARY=()
note() { SUMMARY+=("$(printf '%-22s %s' "$1" "$2")"); }
left() { echo $((DEADLINE - SECONDS)); }

DEVICE=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "== device: ${DEVICE:-unknown (nvidia-smi failed)}"

# ---------------------------------------------------------------------------------------------- 1. build
t0=$SECONDS
GEN=()
[ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja > /dev/null && GEN=(-G Ninja)
CFG=(-S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=ON -DBNB_BUILD_TESTS=ON
     -DBNB_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90)
echo "== configure: cmake ${CFG[*]}"
CFG_OK=1
if ! cmake "${CFG[@]}" > "$OUT/configure.log" 2>&1; then
  if grep -q -i 'openmp' "$OUT/configure.log"; then
    echo "configure failed on OpenMP; retrying with BNB_OPENMP=OFF" | tee -a "$OUT/configure.log"
    cmake "${CFG[@]}" -DBNB_OPENMP=OFF >> "$OUT/configure.log" 2>&1 || CFG_OK=0
  else
    CFG_OK=0
  fi
fi
if [ "$CFG_OK" -eq 0 ]; then
  FAILED=1
  echo "== configure FAILED:"; grep -A4 'CMake Error' "$OUT/configure.log" | head -30
  note "configure" "FAILED - $(grep -m1 -A2 'CMake Error' "$OUT/configure.log" | tr -s ' \n' ' ' | cut -c1-150)"
elif cmake --build "$BUILD" -j "$JOBS" > "$OUT/build.log" 2>&1; then
  note "build" "ok ($((SECONDS - t0)) s, $(grep -c -i 'warning' "$OUT/build.log") warning lines)"
else
  FAILED=1
  echo "== build FAILED; first errors:"; grep -m10 -E 'error' "$OUT/build.log"
  # build what can be built, so the tests that compiled still run
  if [ -f "$BUILD/build.ninja" ]; then cmake --build "$BUILD" -j "$JOBS" -- -k 0 >> "$OUT/build.log" 2>&1
  else cmake --build "$BUILD" -j "$JOBS" -- -k >> "$OUT/build.log" 2>&1; fi
  note "build" "FAILED ($((SECONDS - t0)) s) - $(grep -m1 -E 'error' "$OUT/build.log" | cut -c1-120)"
fi

# ---------------------------------------------------------------------------------------------- 2. ctest
t0=$SECONDS
if [ "$CFG_OK" -eq 0 ]; then note "ctest" "not run (configure failed)"; else
CT_CAP=$(( $(left) - 150 )); [ "$CT_CAP" -gt 300 ] && CT_CAP=300; [ "$CT_CAP" -lt 60 ] && CT_CAP=60
echo "== ctest (cap ${CT_CAP} s)"
(cd "$BUILD" && timeout "$CT_CAP" ctest --output-on-failure --timeout 240 -j 8) > "$OUT/ctest.log" 2>&1
CT_RC=$?
n_pass=$(grep -cE 'Test +#[0-9]+: .* Passed' "$OUT/ctest.log")
n_skip=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$OUT/ctest.log")
n_fail=$(grep -cE 'Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception|Not Run)' "$OUT/ctest.log")
failed_names=$(grep -E 'Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception|Not Run)' "$OUT/ctest.log" | grep -oE '#[0-9]+: [^ ]+' | cut -d' ' -f2 | sort -u | tr '\n' ' ')
skipped_names=$(grep -E 'Test +#[0-9]+: .*\*\*\*Skipped' "$OUT/ctest.log" | grep -oE '#[0-9]+: [^ ]+' | cut -d' ' -f2 | sort -u | tr '\n' ' ')
if [ "$CT_RC" -eq 124 ]; then FAILED=1; failed_names="$failed_names(ctest hit its ${CT_CAP} s cap)"; fi
[ "$CT_RC" -ne 0 ] && FAILED=1
note "ctest" "$n_pass passed, $n_fail failed, $n_skip skipped ($((SECONDS - t0)) s, rc $CT_RC)"
[ -n "$failed_names" ] && note "  failed" "$failed_names"
[ -n "$skipped_names" ] && note "  skipped" "$skipped_names"
grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed' "$OUT/ctest.log" | sort -u > "$OUT/ctest-counts.txt"
fi

# ---------------------------------------------------------------------------------------------- 3. benches
HEADLINES=()
for entry in "${BENCHES[@]}"; do
  read -r -a parts <<< "$entry"
  name=${parts[0]}
  tag=$(printf '%s' "$entry" | tr -c 'a-zA-Z0-9-' '_' | sed 's/_--/-/g; s/__*/_/g') # log/JSON name per entry
  if [ "$(left)" -lt 40 ]; then note "bench $name" "SKIPPED (out of time)"; continue; fi
  if [ ! -x "$BUILD/bin/$name" ]; then FAILED=1; note "bench $name" "MISSING (not built)"; continue; fi
  t0=$SECONDS
  cap=$(( $(left) - 30 )); [ "$cap" -gt 240 ] && cap=240
  echo "== bench $entry (cap ${cap} s)"
  timeout "$cap" "$BUILD/bin/$name" "${parts[@]:1}" --json "$OUT/$tag.json" 2>&1 | tee "$OUT/$tag.log"
  rc=$?
  if [ "$rc" -ne 0 ]; then FAILED=1; note "bench $tag" "FAILED rc $rc ($((SECONDS - t0)) s)"; else note "bench $tag" "ok ($((SECONDS - t0)) s)"; fi
  if grep -q '^headline:' "$OUT/$tag.log"; then
    while IFS= read -r l; do HEADLINES+=("  $name: ${l#headline: }"); done < <(grep '^headline:' "$OUT/$tag.log")
  else
    while IFS= read -r l; do HEADLINES+=("  $tag: $l"); done < <(tail -3 "$OUT/$tag.log")
  fi
done

# ---------------------------------------------------------------------------------------------- 3b. applications
if [ "$(left)" -gt 60 ] && [ -x "$BUILD/bin/bnb-run" ]; then
  t0=$SECONDS
  echo "== applications (tests/gpu-apps.sh)"
  timeout $(( $(left) - 30 )) bash "$ROOT/tests/gpu-apps.sh" "$BUILD/bin" "$OUT" 2>&1 | tee "$OUT/apps.log"
  rc=$?
  if [ "$rc" -ne 0 ]; then FAILED=1; note "applications" "FAILED rc $rc ($((SECONDS - t0)) s)"; else note "applications" "ok ($((SECONDS - t0)) s)"; fi
  while IFS= read -r l; do HEADLINES+=("  apps: ${l#headline: }"); done < <(grep '^headline:' "$OUT/apps.log")
fi

# ---------------------------------------------------------------------------------------------- 4. sanitizer
SAN=${BNB_GPU_SANITIZER:-$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null)}
if [ "$CFG_OK" -eq 0 ]; then
  note "memcheck" "not run (configure failed)"
elif [ -z "$SAN" ]; then
  note "memcheck" "skipped (compute-sanitizer not found)"
elif [ "$(left)" -lt 30 ]; then
  note "memcheck" "skipped (out of time)"
else
  t0=$SECONDS
  # GPU test commands from CTest (label gpu), one shell-quoted command per line
  (cd "$BUILD" && ctest -L gpu --show-only=json-v1) > "$OUT/gpu-tests.json" 2> /dev/null
  python3 - "$OUT/gpu-tests.json" > "$OUT/gpu-tests.txt" << 'EOF'
import json, shlex, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
for t in d.get("tests", []):
    cmd = t.get("command")
    if cmd:
        print(t["name"] + "\t" + shlex.join(cmd))
EOF
  cap=$(( $(left) - 10 ))
  echo "== memcheck over $(wc -l < "$OUT/gpu-tests.txt") GPU tests (cap ${cap} s, 4 at a time)"
  mkdir -p "$OUT/memcheck"
  run_one() { # name cmd...
    local name=$1; shift
    (cd "$BUILD/tests" 2> /dev/null || cd "$BUILD"
     BNB_TEST_QUICK=1 timeout "$SAN_CAP" "$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 "$@" \
       > "$OUT/memcheck/$name.log" 2>&1; echo $? > "$OUT/memcheck/$name.rc")
  }
  export -f run_one; export SAN OUT BUILD; export SAN_CAP=$cap
  while IFS=$'\t' read -r name cmd; do
    [ -z "$name" ] && continue
    while [ "$(jobs -rp | wc -l)" -ge 4 ]; do sleep 1; done
    eval "run_one $name $cmd" &
  done < "$OUT/gpu-tests.txt"
  wait
  clean=0; dirty=0; tout=0; skipped=0; bad_names=""
  for rcf in "$OUT"/memcheck/*.rc; do
    [ -e "$rcf" ] || continue
    n=$(basename "$rcf" .rc); rc=$(cat "$rcf"); log="$OUT/memcheck/$n.log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then tout=$((tout + 1)); bad_names="$bad_names $n(timeout)"
    elif [ "$rc" = 77 ]; then skipped=$((skipped + 1))
    elif grep -q 'SKIP:' "$log" && grep -q 'terminated before first instrumented API call' "$log"; then
      skipped=$((skipped + 1)) # a test that skipped (its data absent) before touching the GPU
    elif grep -q 'ERROR SUMMARY: 0 errors' "$log" && [ "$rc" = 0 ]; then clean=$((clean + 1))
    else dirty=$((dirty + 1)); FAILED=1; bad_names="$bad_names $n(rc $rc, $(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log"))"
    fi
  done
  note "memcheck" "$clean clean, $dirty with errors or failures, $tout timed out, $skipped skipped ($((SECONDS - t0)) s)"
  [ -n "$bad_names" ] && note "  not clean" "$bad_names"
fi

# ---------------------------------------------------------------------------------------------- summary (last)
echo
echo "==================================== bnb GPU summary ===================================="
echo "device: ${DEVICE:-unknown}   total time: ${SECONDS} s   logs: $OUT"
for l in "${SUMMARY[@]}"; do echo "$l"; done
if [ -s "$OUT/ctest-counts.txt" ]; then echo "per-test check counts:"; sed 's/^/  /' "$OUT/ctest-counts.txt"; fi
if [ ${#HEADLINES[@]} -gt 0 ]; then echo "bench headlines:"; for l in "${HEADLINES[@]}"; do echo "$l"; done; fi
if [ "$FAILED" -eq 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
exit "$FAILED"
