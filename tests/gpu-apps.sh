#!/usr/bin/env bash
# Application figures on the GPU machine (called by tests/gpu.sh; prints "headline:" lines for its summary):
#  - bnb-run decode speed of the bundled model (int8 and f32 weights) on CUDA and on the CPU;
#  - bnb-train tokens/s and device memory, 8-bit vs 32-bit AdamW, for the bundled model's config and for a
#    GPT-2-small-sized config (the gpt2 preset: 12 layers, dim 768, sequence 1024).
# usage: tests/gpu-apps.sh BIN_DIR OUT_DIR   (text: $BNB_TEXT, ../shared/data or .device-carry/tinyshakespeare.txt)
BIN=${1:?bin dir}; OUT=${2:?out dir}
cd "$(dirname "$0")/.." || exit 1
TEXT=${BNB_TEXT:-}
for c in ../shared/data/tinyshakespeare.txt .device-carry/tinyshakespeare.txt; do
  [ -z "$TEXT" ] && [ -f "$c" ] && TEXT=$c
done
rc=0
export OMP_WAIT_POLICY=passive

for dev in cuda cpu; do
  for w in int8 f32; do
    log="$OUT/run-$dev-$w.log"
    "$BIN/bnb-run" -m models/shakespeare-int8.gguf --weights "$w" --device "$dev" -p "ROMEO:" -n 240 --temp 0.8 \
      > "$log" 2>&1 || rc=1
    echo "headline: bnb-run bundled model, $w weights, $dev: $(grep -o 'decode [0-9]* tokens in [0-9.]* s ([0-9.]* tok/s)' "$log")"
  done
done

if [ -z "$TEXT" ]; then
  echo "headline: bnb-train figures skipped: no training text (set BNB_TEXT)"
  exit $rc
fi
train() { # name optim steps args...
  local name=$1 optim=$2 steps=$3; shift 3
  local log="$OUT/train-$name-$optim.log"
  timeout 150 "$BIN/bnb-train" -f "$TEXT" --device cuda --optim "$optim" --steps "$steps" --warmup 2 --quiet "$@" \
    > "$log" 2>&1 || rc=1
  local tps mem states
  tps=$(grep -o 'steady state [0-9]* tokens/s' "$log" | tail -1)
  mem=$(grep -o 'peak [0-9.]* MiB' "$log" | tail -1)
  states=$(grep -o 'optimizer states [0-9.]* MiB' "$log" | tail -1)
  echo "headline: bnb-train $name $optim on cuda: ${tps:-FAILED ($(tail -1 "$log"))}, device memory $mem, $states"
}
for o in adamw8bit adamw; do
  train bundled "$o" 60 --config small --dim 128 --ff 384 --layers 4 --heads 4 --seq 256 --batch 16
done
for o in adamw8bit adamw; do
  train gpt2-small "$o" 12 --config gpt2 --seq 1024 --batch 8
done
exit $rc
