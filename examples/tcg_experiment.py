"""A trained test-case generator (o1-Coder step 1), before and after DPO, on held-out code problems.

    python examples/tcg_experiment.py                 # `make tcg-experiment`; writes tcg-out/
    python examples/tcg_experiment.py --train 200 --steps 10 --test 20 --out /tmp/t   # a quick look

o1-Coder (TACO): the share of generated tests the reference program passes, 80.8% after SFT ->
89.2% after DPO. The same design at toy scale, from the embedded code policy (`embedded-code`):
  1. train problems from the code task's generator (`--train`, seed 7, the held-out questions
     removed) and the held-out problems the code policy is measured on (`--test`, seed 424242);
  2. `journey train --stage tcg` from embedded-code: SFT on the given tests (prompt: problem +
     reference), then DPO with the tests' outputs shuffled across tests as rejected, `--steps`
     steps each; OUT/tcg/sft is the SFT model, OUT/tcg the DPO one;
  3. `gen-tests --mode outputs` of the base, the SFT and the DPO model on the held-out problems
     (`--n` completions each, at `--temperature`): the share of written tests the reference
     passes (over all lines written, and over the ones that parsed), the parse failures, and the
     mutation score of the kept tests, each with its standard error over problems; plus
     `gen-tests --mode inputs` of the base model, the old generator, for reference (its share is
     high by construction: the reference writes its outputs);
  4. DPO minus SFT, with the standard error of the difference.
Stages whose outputs exist are skipped, so an interrupted run continues. Prints a table and writes
results.json and results.md (the table in docs/tcg.md comes from it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from part1_experiment import difference  # examples/ is this script's folder
from train_code_policy import heldout_code_problems

from journey.config import GenTestsConfig
from journey.stages.tcg import gen_tests
from journey.tasks.code import CodeTask

JOURNEY = [sys.executable, "-m", "journey.cli"]
SHARES = ("reference_passes", "reference_passes_parsed", "mutation_score_generated")


def write_problems(out: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """train.jsonl (held-out questions removed) and test.jsonl, once."""
    train, test = out / "train.jsonl", out / "test.jsonl"
    if not test.exists():
        held = heldout_code_problems(n_test)
        questions = {p.question for p in held}
        pool = [p for p in CodeTask().generate(n_train + n_test, seed=7) if p.question not in questions]
        out.mkdir(parents=True, exist_ok=True)
        train.write_text("".join(json.dumps(p.to_row()) + "\n" for p in pool[:n_train]))
        test.write_text("".join(json.dumps(p.to_row()) + "\n" for p in held))
    return train, test


def train_tcg(args, train: Path) -> Path:
    ckpt = args.out / "tcg"
    if not (ckpt / "train.json").exists():
        cmd = [*JOURNEY, "train", "--stage", "tcg", "--data", str(train), "--model", "embedded-code",
               "--out", str(ckpt), "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--dpo-lr", str(args.dpo_lr), "--beta", str(args.beta),
               "--max-length", "768", "--seed", str(args.seed), "--overwrite"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return ckpt


def evaluate(args, name: str, model: str, mode: str, test: Path) -> dict:
    """gen-tests' summary for one model (cached in OUT/eval-NAME.json)."""
    cached = args.out / f"eval-{name}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    n = args.n if mode == "outputs" else 5 * args.n  # inputs mode: one input a completion
    cfg = GenTestsConfig(problems=test, out=args.out / f"tests-{name}.jsonl", model=model, mode=mode, n=n,
                         temperature=args.temperature, seed=args.seed, overwrite=True)
    print(f"gen-tests --mode {mode} --model {model}", flush=True)
    summary = {"model": model, "mode": mode, "n": n, **gen_tests(cfg)}
    cached.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def rates(s: dict) -> dict:
    """The summary's shares as {key: {"rate", "se"}} (for `difference`)."""
    return {k: {"rate": s[k], "se": s[k + "_se"]} for k in SHARES}


def markdown(results: dict) -> str:
    def pct(s: dict, k: str) -> str:
        return f"{s[k]:.1%} ± {s[k + '_se']:.1%}"

    lines = ["| model | gen-tests mode | tests written | parse failures | reference passes (of written) "
             "| (of parsed) | mutation score, kept tests | given tests |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in results["models"].items():
        fails = s["parse_failures"] / s["proposed"] if s["proposed"] else 0.0
        lines.append(f"| {name} | {s['mode']} | {s['proposed']:,} | {fails:.1%} | {pct(s, 'reference_passes')} "
                     f"| {pct(s, 'reference_passes_parsed')} | {pct(s, 'mutation_score_generated')} "
                     f"({s['mutants_generated']:,} mutants) | {s['mutation_score_given']:.1%} |")
    lines += ["", "| DPO − SFT | difference ± s.e. |", "|---|---|"]
    for k, d in results["dpo_minus_sft"].items():
        lines.append(f"| {k} | {d['diff']:+.3f} ± {d['se']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("tcg-out"))
    ap.add_argument("--train", type=int, default=1000, help="train problems")
    ap.add_argument("--test", type=int, default=100, help="held-out problems")
    ap.add_argument("--steps", type=int, default=40, help="steps of each phase (SFT, DPO)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3, help="SFT learning rate")
    ap.add_argument("--dpo-lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=2, help="completions per problem (outputs mode)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train, test = write_problems(args.out, args.train, args.test)
    ckpt = train_tcg(args, train)
    models = {
        "embedded-code": evaluate(args, "base-outputs", "embedded-code", "outputs", test),
        "SFT": evaluate(args, "sft", str(ckpt / "sft"), "outputs", test),
        "SFT + DPO": evaluate(args, "dpo", str(ckpt), "outputs", test),
        "embedded-code (inputs mode)": evaluate(args, "base-inputs", "embedded-code", "inputs", test),
    }
    both = {"sft": rates(models["SFT"]), "dpo": rates(models["SFT + DPO"])}
    results = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "train": json.loads((ckpt / "train.json").read_text())["tcg"], "models": models,
               "dpo_minus_sft": {k: difference(both, "dpo", "sft", key=k) for k in SHARES}}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
