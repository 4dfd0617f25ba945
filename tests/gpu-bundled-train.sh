#!/usr/bin/env bash
# Train candidates for the bundled example model on the GPU machine with bnb-train (8-bit AdamW, CUDA) and export
# each with int8 weights. usage: tests/gpu-bundled-train.sh BIN_DIR TEXT OUT_DIR
# Each candidate writes OUT_DIR/<name>.gguf, <name>.csv (loss log), <name>.svg (plot) and <name>.log.
BIN=${1:?bin dir}; TEXT=${2:?text}; OUT=${3:?out dir}
mkdir -p "$OUT"
cand() { # name args...
  local name=$1; shift
  "$BIN/bnb-train" -f "$TEXT" --config small --seq 256 --optim adamw8bit --device cuda --seed 1337 \
    --eval-every 100 --eval-batches 16 --log "$OUT/$name.csv" --plot "$OUT/$name.svg" \
    --export "$OUT/$name.gguf" --export-weights int8 --quiet "$@" > "$OUT/$name.log" 2>&1
  echo "candidate $name rc $?: $(tail -4 "$OUT/$name.log" | tr '\n' ' ')"
}
# Round 1 (all 8-bit AdamW, batch 32 x 256): d256l4 (3.4M params, 1500 steps) reached validation 1.492 at step 900
# and then overfit (1.584 at 1500); d256l6 (5.2M, 2000 steps) 1.496 at 900, 1.93 at 2000. Round 2: schedules that end
# where validation bottomed out, with more weight decay.
cand r2a --dim 256 --ff 768 --layers 4 --heads 8 --batch 32 --steps 800 --warmup 100 --lr 1.5e-3
cand r2b --dim 256 --ff 768 --layers 4 --heads 8 --batch 32 --steps 1000 --warmup 100 --lr 1.5e-3 --wd 0.1
cand r2c --dim 256 --ff 768 --layers 6 --heads 8 --batch 32 --steps 900 --warmup 100 --lr 1.2e-3 --wd 0.1
