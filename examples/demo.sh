#!/usr/bin/env bash
# The main job on the embedded default, end to end:
#   problems -> build-tree -> derive-longthought -> train (SFT on journey traces) -> eval
# Run through `make demo` (which sets up .venv first). Outputs go to $DEMO_DIR (default demo-out/).
# About 2 minutes on 2 CPU cores (after setup); it ends with the mechanism eval of the journey model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-out}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 problems: 300 arith problems to learn from, 200 held out to test on"
journey problems --task arith --n 300 --seed 0 --out "$out/train.jsonl" --overwrite
journey problems --task arith --n 200 --seed 1 --out "$out/test.jsonl" --overwrite

step "2/6 build-tree: embedded policy, exact-verifier PRM, w=4, D=8, K=2"
journey build-tree --problems "$out/train.jsonl" --out "$out/trees.jsonl" \
  --width 4 --depth 8 --top-k 2 --overwrite

step "3/6 a look inside: solutions from the trees, with the verifier's verdicts"
python examples/show_paths.py "$out/trees.jsonl" --n 2

step "4/6 derive-longthought: shortcut + journey (K=2 trials per correct-path node) + DPO pairs"
journey derive-longthought --trees "$out/trees.jsonl" --out-dir "$out/data" --max-trials 2 --trial-prob 1.0 --style concise
python - "$out/data/sft_journey.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
row = max(rows, key=lambda r: r["trials"])
print(f"\na journey trace ({row['trials']} failed trials) for {row['messages'][0]['content']}:")
print("  " + row["messages"][1]["content"].replace("\n", "\n  "))
PY

step "5/6 train: SFT of the embedded policy on the journey traces (TRL, 3 epochs)"
journey train --stage sft --data "$out/data/sft_journey.jsonl" --model embedded \
  --out "$out/journey-sft" --epochs 3 --lr 5e-5 --batch-size 16 --overwrite

step "6/6 eval: the embedded policy and the journey-trained one on the held-out problems, then the mechanism eval"
journey eval --model embedded --problems "$out/test.jsonl" --samples 4 --out "$out/eval/embedded.json" --overwrite
journey eval --model "$out/journey-sft" --problems "$out/test.jsonl" --samples 4 --out "$out/eval/journey-sft.json" --overwrite

journey eval --inject-errors --model "$out/journey-sft" --problems "$out/test.jsonl" \
  --out "$out/eval/journey-sft.inject.json" --overwrite
python - "$out/eval" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
base, sft = (json.loads((d / f).read_text()) for f in ("embedded.json", "journey-sft.json"))
inj = json.loads((d / "journey-sft.inject.json").read_text())
diff = sft["accuracy"] - base["accuracy"]
se = (sft["accuracy_se"] ** 2 + base["accuracy_se"] ** 2) ** 0.5
rec, det, fa = (inj[k]["rate"] for k in ("recovery", "detection", "false_alarm"))
checks = det >= 0.1
verdict = f"doubts {det:.0%} of the slips it is shown" if checks else "does not notice the slips it is shown"
why = "" if checks else ": its reflections copy the trace format, they do not check steps"
print(f"\nwhat this means: journey SFT {sft['accuracy']:.3f} vs the embedded policy {base['accuracy']:.3f} "
      f"({diff:+.3f} ± {se:.3f}); after an injected wrong step it recovers {rec:.1%} and {verdict} "
      f"(false alarms {fa:.1%}){why} (docs/experiments.md: 'The scale curve').")
PY

printf '\nfiles in %s/: train.jsonl test.jsonl trees.jsonl data/ journey-sft/ eval/\n' "$out"
