#!/usr/bin/env bash
# The main job on the embedded default: problems -> build-tree, then a look at the trees.
# Run through `make demo` (which sets up .venv first). Outputs go to $DEMO_DIR (default demo-out/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-out}
mkdir -p "$out"
export HF_HUB_OFFLINE=1

echo "== 1. problems: 24 arith problems"
journey problems --task arith --n 24 --seed 0 --out "$out/problems.jsonl"

echo "== 2. build-tree: embedded policy, exact verifier PRM, w=4, D=8, K=2"
journey build-tree --problems "$out/problems.jsonl" --out "$out/trees.jsonl" \
  --width 4 --depth 8 --top-k 2 --overwrite

echo "== 3. a few solutions from the trees, with the verifier's verdicts"
python examples/show_paths.py "$out/trees.jsonl" --n 3

echo
echo "files: $out/problems.jsonl  $out/trees.jsonl"
