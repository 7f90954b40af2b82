"""The scale curve (issue "Science", DESIGN §11): does journey learning start to pay as the
phase-1 policy grows?

    python examples/scale_curve.py                           # `make scale-curve`; writes scale-out/
    python examples/scale_curve.py --hidden 128,192,256     # and a 3.4M-parameter phase 1

For each phase-1 size (hidden width, 4 layers; 128 is the shipped embedded policy, the others
are trained here by `examples/train_embedded_policy.py --hidden H` with its defaults), the whole
Part 1 design runs (`examples/part1_experiment.py --phase1 PATH`): trees, shortcut / journey /
shaped SFT, DPO, eval, and the mechanism eval of every model. Each size lives in its own folder
and every stage is skipped when its output exists, so an interrupted run continues where it
stopped. At the end: a table per size, curve.json, curve.md (the README's tables) and curve.png
with journey - shortcut (and shaped - shortcut) greedy accuracy and recovery after an injected
wrong step against the parameter count, each with the standard error of the difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from part1_experiment import difference  # examples/ is this script's folder

HERE = Path(__file__).resolve().parent
SHIPPED_HIDDEN = 128  # the embedded policy: examples/train_embedded_policy.py at its defaults


def sh(cmd: list) -> None:
    """Run one script (its output on the screen; each experiment also keeps its own log.txt);
    stop the whole curve if it fails."""
    print("$ python " + " ".join(map(str, cmd)), flush=True)
    proc = subprocess.run([sys.executable, *map(str, cmd)])
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(map(str, cmd))}")


def phase1(hidden: int, out: Path) -> str:
    """The phase-1 policy of this width: the shipped one, or one trained here (once)."""
    if hidden == SHIPPED_HIDDEN:
        return "embedded"
    path = out / f"phase1-h{hidden}"
    if not (path / "training.json").exists():  # written last: a folder without it is a cut run
        sh([HERE / "train_embedded_policy.py", "--hidden", hidden, "--out", path])
    return str(path)


def curve_rows(results: dict[int, dict]) -> list[dict]:
    """One row per size, from each size's results.json (pure)."""
    rows = []
    for hidden, r in sorted(results.items()):
        row = {"hidden": hidden, "parameters": r["parameters"], "rows_per_arm": r["rows_per_arm"],
               "accuracy": {m: r["models"][m]["accuracy"] for m in r["models"]},
               "journey_minus_shortcut": r["journey_minus_shortcut"],
               "dpo_minus_journey": r["dpo_minus_journey"]}
        for key in ("shaped_minus_shortcut", "recovery_journey_minus_shortcut"):
            if key in r:
                row[key] = r[key]
        if r.get("mechanism"):
            row["recovery"] = {m: v["recovery"]["rate"] for m, v in r["mechanism"].items()}
            row["detection"] = {m: v["detection"]["rate"] for m, v in r["mechanism"].items()}
            row["false_alarm"] = {m: v["false_alarm"]["rate"] for m, v in r["mechanism"].items()}
            if "shaped" in r["mechanism"]:
                row["recovery_shaped_minus_shortcut"] = difference(r["mechanism"], "shaped", "shortcut", key="recovery")
        rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["parameters"] / 1e6 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = (("greedy accuracy", "journey_minus_shortcut", "shaped_minus_shortcut"),
              ("recovery after an injected wrong step", "recovery_journey_minus_shortcut",
               "recovery_shaped_minus_shortcut"))
    for ax, (title, journey_key, shaped_key) in zip(axes, panels):
        for key, label, color, shift in ((journey_key, "journey − shortcut", "#e07b39", 1.0),
                                         (shaped_key, "shaped journey − shortcut", "#b07cc6", 1.04)):
            pts = [(xi * shift, r[key]) for xi, r in zip(x, rows) if key in r]  # shifted apart to stay readable
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1]["diff"] for p in pts], yerr=[p[1]["se"] for p in pts],
                            marker="o", capsize=4, label=label, color=color)
        ax.axhline(0, color="#888", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:.2f}M" for v in x])
        ax.minorticks_off()
        ax.set_xlabel("phase-1 parameters")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("difference (± s.e.)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Journey learning on arith against phase-1 size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_curve(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    fmt = lambda d: f"{d['diff']:+.3f} ± {d['se']:.3f}" if d else "-"  # noqa: E731
    t = Table(title="Scale curve (journey learning on arith)", title_justify="left")
    t.caption = "j = journey, s = shortcut, shaped = journey with the trace-shape knobs; accuracy is greedy"
    for col in ("phase 1", "s acc", "j acc", "j − s", "shaped − s", "recovery j − s", "j detects", "j false alarms"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['parameters'] / 1e6:.2f}M", f"{r['accuracy']['shortcut']:.3f}", f"{r['accuracy']['journey']:.3f}",
                  fmt(r["journey_minus_shortcut"]), fmt(r.get("shaped_minus_shortcut")),
                  fmt(r.get("recovery_journey_minus_shortcut")),
                  f"{r['detection']['journey']:.3f}" if "detection" in r else "-",
                  f"{r['false_alarm']['journey']:.3f}" if "false_alarm" in r else "-")
    Console().print(t)


def markdown(rows: list[dict], results: dict[int, dict]) -> str:
    """The README's tables: accuracy per arm and the mechanism per arm, one line per size and model."""
    fmt = lambda d: f"{d['diff']:+.3f} ± {d['se']:.3f}" if d else "–"  # noqa: E731
    out = ["| phase 1 | rows per arm | phase 1 | shortcut | journey | DPO | shaped | journey − shortcut "
           "| shaped − shortcut |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = results[r["hidden"]]["models"]
        acc = [f"{m[k]['accuracy']:.3f} ± {m[k]['accuracy_se']:.3f}" if k in m else "–"
               for k in ("phase1", "shortcut", "journey", "dpo", "shaped")]
        out.append(f"| {r['parameters'] / 1e6:.2f}M | {r['rows_per_arm']:,} | " + " | ".join(acc)
                   + f" | {fmt(r['journey_minus_shortcut'])} | {fmt(r.get('shaped_minus_shortcut'))} |")
    out += ["", "| phase 1 | model | recovery ± s.e. | detection | false alarms | backtracks (valid) |",
            "|---|---|---|---|---|---|"]
    for r in rows:
        for name, v in results[r["hidden"]].get("mechanism", {}).items():
            valid = "" if v["backtrack_validity"] is None else f" ({v['backtrack_validity']:.2f})"
            out.append(f"| {r['parameters'] / 1e6:.2f}M | {name} | {v['recovery']['rate']:.3f} ± {v['recovery']['se']:.3f}"
                       f" | {v['detection']['rate']:.3f} | {v['false_alarm']['rate']:.3f} | {v['backtracks']}{valid} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("scale-out"))
    ap.add_argument("--hidden", default="128,192",
                    help="phase-1 widths, comma-separated (128: the shipped 0.87M policy; 192: 1.94M; 256: 3.4M; "
                         "each new width is trained first: ~20 min for 192 on 2 CPU cores)")
    ap.add_argument("--samples", type=int, default=4, help="k for maj@k and pass@k in each experiment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("experiment_args", nargs="*", help="passed on to part1_experiment.py (after --)")
    args = ap.parse_args()
    try:
        sizes = sorted({int(h) for h in args.hidden.split(",")})
    except ValueError:
        ap.error(f"--hidden: expected comma-separated integers, got {args.hidden!r}")
    if any(h < 8 or h % 4 for h in sizes):
        ap.error("--hidden: each width must be a multiple of 4 (4 attention heads), at least 8")
    args.out.mkdir(parents=True, exist_ok=True)
    t0, results = time.time(), {}
    for hidden in sizes:
        policy = phase1(hidden, args.out)
        folder = args.out / f"h{hidden}"
        sh([HERE / "part1_experiment.py", "--phase1", policy, "--out", folder, "--samples", args.samples,
            "--seed", args.seed, *args.experiment_args])
        results[hidden] = json.loads((folder / "results.json").read_text())
        print(f"  h{hidden}: {results[hidden]['parameters'] / 1e6:.2f}M parameters, journey - shortcut "
              f"{results[hidden]['journey_minus_shortcut']['diff']:+.3f}", flush=True)
    rows = curve_rows(results)
    (args.out / "curve.json").write_text(json.dumps({"sizes": rows, "minutes": round((time.time() - t0) / 60, 1)},
                                                    indent=2) + "\n")
    plot(rows, args.out / "curve.png")
    (args.out / "curve.md").write_text(markdown(rows, results))
    print_curve(rows)
    print(f"wrote {args.out / 'curve.json'}, curve.png and curve.md ({(time.time() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()
