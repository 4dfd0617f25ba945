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
# 3.4M parameters: 4 layers, dim 256, 8 heads, SwiGLU 768
cand d256l4 --dim 256 --ff 768 --layers 4 --heads 8 --batch 32 --steps 1500 --warmup 150 --lr 1.5e-3
# 5.1M parameters: 6 layers, dim 256
cand d256l6 --dim 256 --ff 768 --layers 6 --heads 8 --batch 32 --steps 2000 --warmup 200 --lr 1.2e-3
