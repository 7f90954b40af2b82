"""Is journey data a better start for RL? o1-Coder's step 5 from four starts, on `arith`.

    python examples/rl_experiment.py                       # `make rl-experiment`; writes rl-out/
    python examples/rl_experiment.py --part1 experiment-out --out rl-out   # reuse a Part 1 run

The published evidence since Part 1 (DESIGN §12: "Cognitive behaviors", ASTRO, "To Backtrack or
Not") says backtracking data pays mainly as the starting point for RL. The question here: does a
journey-initialised policy gain more from the same RL than a shortcut-initialised one?

  1. the Part 1 experiment (`examples/part1_experiment.py`, run here unless --part1 names a
     finished one): the same problems, trees and phase-1 model, and from them the phase-2 SFT
     models shortcut, journey and shaped (journey traces with the trace-shape knobs on); run
     here without its DPO arm and with greedy evals only (`--no-dpo --samples 1`: RL uses neither);
  2. RL (`journey train --stage rl`: TRL's GRPO, o1-Coder's φ reward — the exact verifier's step
     scores and the answer check, α linear 1 -> 0.5) from each start — phase 1, shortcut,
     journey, shaped — with the same budget: the same --rl-steps steps of --rl-batch
     completions (--group-size per problem) on the same train problems, the same lr and β, for
     each of --seeds;
  3. every model before and after RL on the Part 1 test set: greedy accuracy ± s.e. (`eval`) and
     the mechanism eval (`eval --inject-errors`: recovery, detection, false alarms); during RL,
     greedy accuracy on the first --test-subset test problems every --test-every steps
     (`train --stage rl --test-data`), for the plot of accuracy vs RL step.
Reports the gain of each start (after − before, ± s.e.), the gain differences that answer the
question (journey − shortcut, shaped − shortcut), a table, results.json and results.png (the
training outcome reward per RL step for each start, and test accuracy before/after).
Every stage whose output exists is skipped, and RL runs resume from their last checkpoint, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from part1_experiment import journey_cli  # examples/ is on the path when a script here runs

STARTS = ("phase1", "shortcut", "journey", "shaped")
MECHANISM = ("recovery", "detection", "false_alarm")


def rate(metrics: dict, key: str = "accuracy") -> tuple[float, float]:
    """A rate and its standard error from an eval or inject metrics file."""
    v = metrics[key]
    return (v["rate"], v["se"]) if isinstance(v, dict) else (v, metrics[f"{key}_se"])


def mean_over_seeds(values: list[tuple[float, float]]) -> tuple[float, float]:
    """The mean of per-seed rates on one test set, with the s.e. of that mean from each rate's own
    test-sampling s.e. (seeds are independent runs; the test problems are shared, so this errs wide)."""
    n = len(values)
    return sum(v for v, _ in values) / n, (sum(se ** 2 for _, se in values) ** 0.5) / n


def diff(a: tuple[float, float], b: tuple[float, float]) -> dict:
    return {"diff": round(a[0] - b[0], 4), "se": round((a[1] ** 2 + b[1] ** 2) ** 0.5, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("rl-out"))
    ap.add_argument("--part1", type=Path, default=None,
                    help="a finished examples/part1_experiment.py folder (default: run it into OUT/part1)")
    ap.add_argument("--train", type=int, default=500, help="Part 1 train problems (when it runs here)")
    ap.add_argument("--test", type=int, default=400, help="Part 1 test problems (when it runs here)")
    ap.add_argument("--phase1", default="embedded", help="the phase-1 policy (a checkpoint folder)")
    ap.add_argument("--rl-steps", type=int, default=60, help="RL steps, the same for every start")
    ap.add_argument("--rl-batch", type=int, default=16, help="completions per RL step")
    ap.add_argument("--group-size", type=int, default=4, help="completions per problem (GRPO's group)")
    ap.add_argument("--rl-lr", type=float, default=2e-5, help="RL learning rate (Part 1's DPO lr)")
    ap.add_argument("--beta", type=float, default=0.04, help="KL coefficient to the start model")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seeds", default="0,1", help="RL seeds, comma-separated")
    ap.add_argument("--test-every", type=int, default=10,
                    help="greedy accuracy on --test-subset test problems every N RL steps (0: off)")
    ap.add_argument("--test-subset", type=int, default=100, help="test problems measured during RL")
    ap.add_argument("--inject", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the mechanism eval on every model after RL")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    t0 = time.time()
    run = lambda *a: journey_cli(*a, log=log)  # noqa: E731
    seeds = [int(s) for s in args.seeds.split(",")]

    part1 = args.part1 or out / "part1"
    if not (part1 / "results.json").exists():
        if args.part1:
            sys.exit(f"--part1 {part1}: no results.json (not a finished Part 1 run)")
        cmd = [sys.executable, str(Path(__file__).with_name("part1_experiment.py")), "--out", str(part1),
               "--train", str(args.train), "--test", str(args.test), "--phase1", args.phase1,
               "--no-dpo", "--samples", "1"]  # RL starts from phase 1/shortcut/journey/shaped, greedy-graded
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit("the Part 1 experiment failed; see its log.txt")
    design = json.loads((part1 / "results.json").read_text())["design"]
    phase1 = design["phase1"]
    test, train = part1 / "test.jsonl", part1 / "train.jsonl"
    starts = {name: phase1 if name == "phase1" else str(part1 / name) for name in STARTS}
    during: tuple = ()
    if args.test_every:  # accuracy vs RL step on the first --test-subset test problems
        subset = out / "test-subset.jsonl"
        subset.write_text("".join(test.read_text().splitlines(keepends=True)[: args.test_subset]))
        during = ("--test-data", subset, "--test-steps", args.test_every)

    runs: dict[str, dict] = {}
    for seed in seeds:  # every start with one seed before the next seed: a cut-short run is balanced
        for name, model in starts.items():
            tag = f"{name}-s{seed}"
            ck = out / "rl" / tag
            if not (ck / "train.json").exists():
                run("train", "--stage", "rl", "--data", train, "--model", model, "--out", ck,
                    "--max-steps", args.rl_steps, "--batch-size", args.rl_batch, "--group-size", args.group_size,
                    "--lr", args.rl_lr, "--beta", args.beta, "--max-new-tokens", args.max_new_tokens,
                    "--seed", seed, "--save-steps", 10, *during)
            metrics = out / "eval" / f"{tag}.json"
            if not metrics.exists():
                run("eval", "--model", ck, "--problems", test, "--out", metrics, "--seed", design["seed"])
            inject = out / "eval" / f"{tag}.inject.json"
            if args.inject and not inject.exists():
                run("eval", "--inject-errors", "--model", ck, "--problems", test, "--out", inject,
                    "--seed", design["seed"])
            runs[tag] = {"start": name, "seed": seed,
                         "eval": json.loads(metrics.read_text()),
                         "inject": json.loads(inject.read_text()) if args.inject else None,
                         "reward_curve": json.loads((ck / "train.json").read_text())["reward_curve"],
                         "test_curve": json.loads((ck / "train.json").read_text()).get("test_curve")}

    summary = {"design": vars(args) | {"out": str(out), "part1": str(part1), "part1_design": design},
               "starts": {}, "minutes": None}
    for name in STARTS:
        before = json.loads((part1 / "eval" / f"{name}.json").read_text())
        before_inject = part1 / "eval" / f"{name}.inject.json"
        mine = [r for r in runs.values() if r["start"] == name]
        acc_before = rate(before)
        acc_after = mean_over_seeds([rate(r["eval"]) for r in mine])
        row = {"accuracy_before": acc_before, "accuracy_after": acc_after,
               "accuracy_after_per_seed": [rate(r["eval"]) for r in mine],
               "gain": diff(acc_after, acc_before),
               # what the answers look like: length and reflections ("Wait") per greedy answer
               "mean_tokens_before": before["mean_tokens"],
               "mean_tokens_after": sum(r["eval"]["mean_tokens"] for r in mine) / len(mine),
               "wait_per_answer_before": before["reflection_words_per_answer"]["Wait"],
               "wait_per_answer_after": sum(r["eval"]["reflection_words_per_answer"]["Wait"] for r in mine) / len(mine),
               "final_train_outcome": [r["reward_curve"][-1].get("outcome") for r in mine]}
        if args.inject and before_inject.exists():
            b = json.loads(before_inject.read_text())
            row["mechanism_before"] = {k: rate(b, k) for k in MECHANISM}
            row["mechanism_after"] = {k: mean_over_seeds([rate(r["inject"], k) for r in mine]) for k in MECHANISM}
        summary["starts"][name] = row
    s = summary["starts"]
    summary["gain_differences"] = {
        f"{a} - {b}": diff((s[a]["gain"]["diff"], s[a]["gain"]["se"]), (s[b]["gain"]["diff"], s[b]["gain"]["se"]))
        for a, b in (("journey", "shortcut"), ("shaped", "shortcut"), ("journey", "phase1"), ("shortcut", "phase1"))}
    summary["after_differences"] = {
        f"{a} - {b}": diff(s[a]["accuracy_after"], s[b]["accuracy_after"])
        for a, b in (("journey", "shortcut"), ("shaped", "shortcut"))}
    summary["runs"] = {tag: {k: v for k, v in r.items() if k not in ("eval", "inject")} for tag, r in runs.items()}
    summary["minutes"] = round((time.time() - t0) / 60, 1)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, runs, out / "results.png")
    print_table(summary)


def smooth(values: list[float], k: int = 5) -> list[float]:
    """A trailing moving average over k steps (the training reward of one step is 4 problems)."""
    return [sum(values[max(0, i - k + 1): i + 1]) / len(values[max(0, i - k + 1): i + 1]) for i in range(len(values))]


def plot(summary: dict, runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(STARTS, ("#999", "#6a9fd4", "#e07b39", "#b07cc6")))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1]})
    first_seed = runs[next(iter(runs))]["seed"]
    for r in runs.values():  # one line per run; the legend names each start once
        curve = r["reward_curve"]
        ax.plot([c["step"] for c in curve], smooth([c["outcome"] for c in curve]), color=colors[r["start"]],
                lw=1.2, ls="-" if r["seed"] == first_seed else "--",
                label=r["start"] if r["seed"] == first_seed else None)
    ax.set_xlabel("RL step")
    ax.set_ylabel("training outcome R (sampled, 5-step mean)")
    ax.set_title(f"RL from each start: the reward it earns (seed {first_seed} solid, others dashed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    steps = summary["design"]["rl_steps"]
    for name, row in summary["starts"].items():
        (b, bs), (a, as_) = row["accuracy_before"], row["accuracy_after"]
        bx.errorbar([0, steps], [b, a], yerr=[bs, as_], color=colors[name], marker="o", capsize=3, ls="none",
                    label=f"{name} (all test problems)")
        curves = [r["test_curve"] for r in runs.values() if r["start"] == name and r.get("test_curve")]
        if curves:  # the mean over seeds at each measured step, on the test subset
            at = sorted({c["step"] for curve in curves for c in curve})
            mean = [sum(c["accuracy"] for curve in curves for c in curve if c["step"] == s)
                    / sum(c["step"] == s for curve in curves for c in curve) for s in at]
            bx.plot(at, mean, color=colors[name], lw=1.2, marker=".",
                    label=f"{name} (first {summary['design']['test_subset']}, mean of seeds)")
    bx.set_xlabel("RL step")
    bx.set_ylabel("greedy test accuracy (± s.e.)")
    bx.set_title("Test accuracy vs RL step", fontsize=10)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no data hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="RL from four starts (same RL budget each)", title_justify="left")
    cols = ["start", "accuracy before", "after (mean of seeds)", "gain ± s.e.", "tokens before -> after",
            "Wait / answer before -> after"]
    if any("mechanism_after" in r for r in summary["starts"].values()):
        cols += ["recovery before -> after", "detection before -> after", "false alarms before -> after"]
    for col in cols:
        t.add_column(col, justify="left" if col == "start" else "right")
    for name, r in summary["starts"].items():
        cells = [name, "{:.3f} ± {:.3f}".format(*r["accuracy_before"]), "{:.3f} ± {:.3f}".format(*r["accuracy_after"]),
                 f"{r['gain']['diff']:+.3f} ± {r['gain']['se']:.3f}",
                 f"{r['mean_tokens_before']:.1f} -> {r['mean_tokens_after']:.1f}",
                 f"{r['wait_per_answer_before']:.2f} -> {r['wait_per_answer_after']:.2f}"]
        if "mechanism_after" in r:
            cells += [f"{r['mechanism_before'][k][0]:.3f} -> {r['mechanism_after'][k][0]:.3f}" for k in MECHANISM]
        t.add_row(*cells)
    Console().print(t)
    for key, d in summary["gain_differences"].items():
        print(f"gain {key}: {d['diff']:+.3f} ± {d['se']:.3f}")
    print(f"({summary['minutes']} min)")


if __name__ == "__main__":
    main()
