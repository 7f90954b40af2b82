"""Part 1, Table 6 at toy scale: phase 1 -> phase-2 shortcut vs phase-2 journey -> DPO, on `arith`.

    python examples/part1_experiment.py                      # `make experiment`; writes experiment-out/
    python examples/part1_experiment.py --train 300 --test 100 --out /tmp/x   # a smaller run

The paper (MATH500, deepseek-math-7b): phase 1 .372 -> shortcut .386 vs journey .470 -> DPO .472.
The same design here, every stage through the `journey` CLI:
  1. disjoint train and test problems (different seeds; test questions removed from train);
  2. phase 1 = the embedded policy (or --phase1 PATH);
  3. build-tree on the train problems; derive-longthought gives, from the SAME trees, one
     journey row and one shortcut row per usable tree (same problems, same number of rows);
  4. phase-2 SFT from phase 1 on each file with identical settings (3 epochs, as the paper);
  5. DPO on top of phase-2 journey with on-policy pairs (`sample-pairs`: 20 samples, 5 pairs);
  6. eval of every model on the same test set: greedy accuracy with its standard error,
     maj@k, pass@k, mean tokens, reflection words;
  7. the mechanism eval of every model (`eval --inject-errors`, DESIGN §11): recovery after an
     injected wrong step, detection, false alarms, backtrack validity.
With `--shaped` (the default) a fifth model, "shaped", is SFT'd like journey on traces from the
same trees with the trace-shape knobs on (`--trial-count uniform --trial-end dead-end
--backtrack state`), so the knobs are measured beside the plain journey arm.
Stages whose outputs exist are skipped, so an interrupted run continues. Prints a table and
writes results.json and results.png. `examples/scale_curve.py` runs this at several phase-1 sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("phase1", "shortcut", "journey", "dpo", "shaped")
SHAPE_KNOBS = ("--trial-count", "uniform", "--trial-end", "dead-end", "--backtrack", "state")


def journey_cli(*args, log: Path) -> None:
    """Run one `journey` command; its output goes to the screen and to `log`."""
    cmd = [sys.executable, "-m", "journey.cli", *map(str, args)]
    print("$ journey " + " ".join(map(str, args)), flush=True)
    with log.open("a") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True)
        fh.write(proc.stdout)
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        sys.exit(f"stage failed (exit {proc.returncode}); see {log}")


def disjoint_train(path: Path, test: Path) -> None:
    """Remove from the train problems any question that is also a test question."""
    test_q = {json.loads(line)["question"] for line in test.read_text().splitlines()}
    rows = [line for line in path.read_text().splitlines() if json.loads(line)["question"] not in test_q]
    path.write_text("\n".join(rows) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in MODELS if m in results]
    acc = [results[m]["accuracy"] for m in names]
    se = [results[m]["accuracy_se"] for m in names]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    bars = ax.bar(names, acc, yerr=se, capsize=4, color=["#999", "#6a9fd4", "#e07b39", "#5aa469", "#b07cc6"][: len(names)])
    for b, a in zip(bars, acc):
        ax.text(b.get_x() + b.get_width() / 2, a + 0.01, f"{a:.3f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("greedy accuracy (± s.e.)")
    ax.set_title("Journey learning on arith (toy-scale Part 1, Table 6)", fontsize=10)
    ax.set_ylim(0, min(1.0, max(acc) + 0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("experiment-out"))
    ap.add_argument("--train", type=int, default=1500, help="train problems for trees and DPO sampling")
    ap.add_argument("--test", type=int, default=400, help="held-out test problems")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=5e-5, help="phase-2 SFT learning rate (both arms)")
    ap.add_argument("--mask-wrong-steps", action="store_true", help="journey arm: no loss on the wrong steps")
    ap.add_argument("--dpo-lr", type=float, default=2e-5)
    ap.add_argument("--max-trials", type=int, default=2)
    ap.add_argument("--trial-prob", type=float, default=1.0)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--style", default="concise", help="reflection phrasing (derive-longthought --style)")
    ap.add_argument("--dpo-problems", type=int, default=300, help="train problems sampled for on-policy pairs")
    ap.add_argument("--samples", type=int, default=8, help="k for maj@k and pass@k")
    ap.add_argument("--phase1", default="embedded", help="the phase-1 policy (a checkpoint folder)")
    ap.add_argument("--dpo", action=argparse.BooleanOptionalAction, default=True,
                    help="the DPO arm: on-policy pairs from the journey model, then DPO (--no-dpo: skip it)")
    ap.add_argument("--shaped", action=argparse.BooleanOptionalAction, default=True,
                    help="also train the 'shaped' arm (journey traces with the trace-shape knobs on)")
    ap.add_argument("--inject", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the mechanism eval (eval --inject-errors) on every model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    t0 = time.time()
    run = lambda *a: journey_cli(*a, log=log)  # noqa: E731

    test, train = out / "test.jsonl", out / "train.jsonl"
    if not test.exists():
        run("problems", "--n", args.test, "--seed", 900_000 + args.seed, "--out", test)
    if not train.exists():
        run("problems", "--n", args.train, "--seed", 100_000 + args.seed, "--out", train)
        disjoint_train(train, test)
    trees = out / "trees.jsonl"
    run("build-tree", "--problems", train, "--out", trees, "--model", args.phase1, "--width", args.width, "--depth", 8,
        "--top-k", 2, "--temperature", 1.0, "--seed", args.seed,
        "--expand", "wrong")  # as the documented runs were built (before #25 made `never` the default)
    data = out / "data"
    if not (data / "sft_journey.jsonl").exists():
        run("derive-longthought", "--trees", trees, "--out-dir", data, "--max-trials", args.max_trials,
            "--trial-prob", args.trial_prob, "--style", args.style, "--seed", args.seed)
    shaped = out / "data-shaped"
    if args.shaped and not (shaped / "sft_journey.jsonl").exists():
        run("derive-longthought", "--trees", trees, "--out-dir", shaped, "--max-trials", args.max_trials,
            "--trial-prob", args.trial_prob, "--style", args.style, "--seed", args.seed, *SHAPE_KNOBS)
    sft = ("--epochs", args.epochs, "--lr", args.lr, "--batch-size", 16, "--seed", args.seed)
    arms = {"shortcut": data / "sft_shortcut.jsonl", "journey": data / "sft_journey.jsonl"}
    if args.shaped:
        arms["shaped"] = shaped / "sft_journey.jsonl"
    for kind, rows in arms.items():
        mask = ("--mask-wrong-steps",) if kind != "shortcut" and args.mask_wrong_steps else ()
        if not (out / kind / "train.json").exists():
            run("train", "--stage", "sft", "--data", rows, "--model", args.phase1,
                "--out", out / kind, "--overwrite", *sft, *mask)
    pairs = out / "dpo_onpolicy.jsonl"
    if args.dpo and not pairs.exists():
        run("sample-pairs", "--model", out / "journey", "--problems", train, "--samples", 20,
            "--pairs", 5, "--temperature", 0.7, "--top-p", 0.95, "--out", pairs, "--seed", args.seed,
            "--limit", args.dpo_problems)
    if args.dpo and not (out / "dpo" / "train.json").exists():
        run("train", "--stage", "dpo", "--data", pairs, "--model", out / "journey", "--out", out / "dpo",
            "--epochs", 1, "--lr", args.dpo_lr, "--batch-size", 16, "--beta", 0.1, "--overwrite",
            "--seed", args.seed)

    results, mechanism = {}, {}
    for name in [m for m in MODELS if (m != "shaped" or args.shaped) and (m != "dpo" or args.dpo)]:
        model = args.phase1 if name == "phase1" else out / name
        metrics = out / "eval" / f"{name}.json"
        if not metrics.exists():
            run("eval", "--model", model, "--problems", test, "-k", args.samples, "--out", metrics,
                "--seed", args.seed)
        results[name] = json.loads(metrics.read_text())
        inject = out / "eval" / f"{name}.inject.json"
        if args.inject and not inject.exists():
            run("eval", "--inject-errors", "--model", model, "--problems", test, "--out", inject, "--seed", args.seed)
        if args.inject:
            mechanism[name] = {k: v for k, v in json.loads(inject.read_text()).items() if k != "provenance"}
    derive = json.loads((data / "derive.json").read_text())["stats"]
    summary = {
        "design": vars(args) | {"out": str(out)},
        "parameters": parameters(args.phase1),
        "rows_per_arm": derive["used"],
        "mean_trials_per_journey": stats_trials(data),
        "models": {m: {k: v for k, v in r.items() if k != "provenance"} for m, r in results.items()},
        "mechanism": mechanism,
        "journey_minus_shortcut": difference(results, "journey", "shortcut"),
        "minutes": round((time.time() - t0) / 60, 1),
    }
    if args.dpo:
        summary["dpo_minus_journey"] = difference(results, "dpo", "journey")
    if args.shaped:
        summary["mean_trials_per_shaped"] = stats_trials(shaped)
        summary["shaped_minus_shortcut"] = difference(results, "shaped", "shortcut")
    if args.inject:
        summary["recovery_journey_minus_shortcut"] = difference(mechanism, "journey", "shortcut", key="recovery")
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, out / "results.png")
    print_table(summary, args.samples)


def difference(results: dict, a: str, b: str, key: str = "accuracy") -> dict:
    """a - b of a rate, with the standard error of the difference of two independent means
    (the two models answer the same test problems, so this errs on the wide side)."""
    def rate(m: dict) -> tuple[float, float]:
        v = m[key]
        return (v["rate"], v["se"]) if isinstance(v, dict) else (v, m[f"{key}_se"])

    (ra, sa), (rb, sb) = rate(results[a]), rate(results[b])
    return {"diff": round(ra - rb, 4), "se": round((sa ** 2 + sb ** 2) ** 0.5, 4)}


def parameters(model: str) -> int:
    """The parameter count of a policy (a checkpoint folder or "embedded")."""
    from transformers import AutoModelForCausalLM

    from journey.models.embedded import resolve_model

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(resolve_model(model)).parameters())


def stats_trials(folder: Path) -> float:
    """Failed trials per journey trace, from a derive-longthought folder's derive.json."""
    stats = json.loads((folder / "derive.json").read_text())["stats"]
    return round(stats["trials"] / max(stats["used"], 1), 3)


def print_table(summary: dict, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Part 1 at toy scale ({summary['rows_per_arm']} rows per phase-2 arm)", title_justify="left")
    at_k = (f"maj@{k}", f"pass@{k}") if k > 1 else ()  # eval samples only with -k > 1
    for col in ("model", "accuracy ± s.e.", *at_k, "mean tokens", "Wait / answer"):
        t.add_column(col, justify="right" if col != "model" else "left")
    for name, m in summary["models"].items():
        t.add_row(name, f"{m['accuracy']:.3f} ± {m['accuracy_se']:.3f}", *(f"{m[c]:.3f}" for c in at_k),
                  f"{m['mean_tokens']:.1f}", f"{m['reflection_words_per_answer']['Wait']:.2f}")
    Console().print(t)
    if summary["mechanism"]:
        t = Table(title="Mechanism (eval --inject-errors)", title_justify="left")
        for col in ("model", "recovery ± s.e.", "detection", "false alarms", "backtracks (valid)"):
            t.add_column(col, justify="right" if col != "model" else "left")
        for name, m in summary["mechanism"].items():
            valid = "" if m["backtrack_validity"] is None else f" ({m['backtrack_validity']:.2f})"
            t.add_row(name, f"{m['recovery']['rate']:.3f} ± {m['recovery']['se']:.3f}", f"{m['detection']['rate']:.3f}",
                      f"{m['false_alarm']['rate']:.3f}", f"{m['backtracks']}{valid}")
        Console().print(t)
    d, dpo = summary["journey_minus_shortcut"], summary.get("dpo_minus_journey")
    dpo_text = f"dpo - journey: {dpo['diff']:+.3f} ± {dpo['se']:.3f}   " if dpo else ""
    print(f"{summary['parameters'] / 1e6:.2f}M parameters   journey - shortcut: {d['diff']:+.3f} ± {d['se']:.3f}   "
          f"{dpo_text}({summary['minutes']} min)")


if __name__ == "__main__":
    main()
