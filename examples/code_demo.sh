#!/usr/bin/env bash
# The pipeline on the code domain (o1-Coder), end to end on the embedded code policy:
#   problems -> build-tree (tests as reward, in the sandbox) -> derive-longthought -> train -> eval,
#   then the test-case generator (gen-tests) on the held-out problems.
# Run from the repository root after `make setup`:  bash examples/code_demo.sh
# Outputs go to $CODE_DIR (default code-out/). Test problems are the policy's held-out ones
# (seed 424242, never trained on); train problems with the same questions are dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CODE_DIR:-code-out}
n_train=${N_TRAIN:-100}
n_test=${N_TEST:-200}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 problems: $n_train code problems to learn from, the policy's $n_test held-out ones to test on"
journey problems --task code --n "$n_train" --seed 0 --out "$out/train.jsonl" --overwrite
journey problems --task code --n "$n_test" --seed 424242 --out "$out/test.jsonl" --overwrite
python - "$out/train.jsonl" "$out/test.jsonl" <<'PY'
import json, sys
train, test = sys.argv[1], sys.argv[2]
held = {json.loads(l)["question"] for l in open(test)}
rows = [l for l in open(train) if json.loads(l)["question"] not in held]
open(train, "w").writelines(rows)
print(f"{len(rows)} train problems after dropping held-out questions")
PY

step "2/6 build-tree: embedded code policy, tests PRM (programs run in the sandbox), w=4, D=6, K=2"
journey build-tree --task code --model embedded --prm tests --rollouts 2 --problems "$out/train.jsonl" \
  --out "$out/trees.jsonl" --width 4 --depth 6 --top-k 2 --max-step-tokens 256 --overwrite

step "3/6 derive-longthought: shortcut + journey (a trial = a failing program; reflections quote the failing test)"
journey derive-longthought --trees "$out/trees.jsonl" --out-dir "$out/data" --max-trials 2 --trial-prob 1.0
python - "$out/data/sft_journey.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
if rows:
    row = max(rows, key=lambda r: r["trials"])
    print(f"\na journey trace ({row['trials']} failed trials):\n  " + row["messages"][-1]["content"].replace("\n", "\n  "))
PY

step "4/6 train: SFT of the embedded code policy on the journey traces (TRL, 3 epochs)"
journey train --stage sft --data "$out/data/sft_journey.jsonl" --model embedded-code \
  --out "$out/journey-sft" --epochs 3 --lr 5e-5 --batch-size 16 --overwrite

step "5/6 eval: both policies on the held-out problems (programs run in the sandbox)"
journey eval --task code --model embedded --problems "$out/test.jsonl" \
  --out "$out/eval/embedded.json" --overwrite
journey eval --task code --model "$out/journey-sft" --problems "$out/test.jsonl" \
  --out "$out/eval/journey-sft.json" --overwrite

step "6/6 gen-tests: the policy proposes test inputs, the sandboxed reference answers them"
journey gen-tests --problems "$out/test.jsonl" --model embedded --n 10 --out "$out/gen_tests.jsonl" --overwrite

printf '\nfiles in %s/: train.jsonl test.jsonl trees.jsonl data/ journey-sft/ eval/ gen_tests.jsonl\n' "$out"
