"""Benchmark `build-tree --ray`: trees/s with 1 and with 2 Ray workers, measured in one run.

    python benchmarks/bench_ray.py               # 128 problems, w=3 D=8 K=2, 1 vs 2 workers (~2 min)
    python benchmarks/bench_ray.py --quick       # 32 problems
    python benchmarks/bench_ray.py --repeats 2   # 1, 2, 1, 2 workers (interleaved against drift)

One local Ray (`ray.init(num_cpus=2)`) serves every run; each worker is an actor with one torch
thread and its own embedded policy. Reported per run: trees/s (time from the first batch
handed out to the last tree written; actor start-up and model loading are timed apart), trees
per CPU-second of the workers and the share of their busy time they had a CPU (on a shared
machine, below 100% means other jobs took the cores: the ratio then measures the machine, not
the code), the driver's own time (not waiting on workers: receiving, checking and writing
rows) as a share of the wall time, and whether the trees are identical to the first run's (same seeds).
goal: trees/s with 2 workers / with 1 worker >= 1.7 on 2 cores, identical trees.
On a shared machine this is noisy: compare the two within one run, and note the load average
printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ray

from journey.config import BuildTreeConfig
from journey.runtime.io import write_jsonl_atomic
from journey.stages.build_tree import run_build_tree
from journey.tasks import get_task


def trees_of(path: Path) -> dict[str, dict]:
    """Trees by id, without their time and run record (what differs between runs), log-probs
    rounded to 1e-3 (they move by ~1e-4 with batch padding: see journey.search.build)."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row["costs"].pop("seconds")
        row.pop("run")
        for n in row["nodes"]:
            n["logprob"] = n["logprob"] if n["logprob"] is None else round(n["logprob"], 3)
        out[row["problem"]["id"]] = row
    return out


def one_run(problems: Path, out: Path, workers: int, in_flight: int) -> dict:
    t0 = time.perf_counter()
    stats = run_build_tree(BuildTreeConfig(problems=problems, out=out, width=3, depth=8, top_k=2,
                                           trees_in_flight=in_flight, ray=True, workers=workers))
    total = time.perf_counter() - t0
    report = stats.extra["ray"]
    return {"workers": workers, "trees": stats.trees, "seconds": stats.seconds,
            "trees_per_s": stats.trees / stats.seconds, "startup_s": total - stats.seconds,
            "driver_share": report["driver_seconds"] / report["wall_seconds"],
            "per_worker": [round(w["problems"] / w["seconds"], 2) for w in report["workers"]],
            "cpu_share": [round(w["cpu_seconds"] / w["seconds"], 2) for w in report["workers"]],
            "trees_per_cpu_s": stats.trees / sum(w["cpu_seconds"] for w in report["workers"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 problems instead of 128")
    ap.add_argument("--problems", type=int, default=None)
    ap.add_argument("--trees-in-flight", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    n = args.problems or (32 if args.quick else 128)
    print(f"load average at start: {os.getloadavg()}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        problems = Path(tmp) / "problems.jsonl"
        write_jsonl_atomic(problems, [p.to_row() for p in get_task("arith").generate(n, seed=0)])
        for r in range(args.repeats):
            for workers in (1, 2):
                out = Path(tmp) / f"trees-{workers}-{r}.jsonl"
                run = one_run(problems, out, workers, args.trees_in_flight)
                trees = trees_of(out)
                first = first or trees
                run["identical"] = trees == first
                runs.append(run)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}))
    ray.shutdown()
    print(f"load average at end: {os.getloadavg()}")
    one = [x["trees_per_s"] for x in runs if x["workers"] == 1]
    two = [x["trees_per_s"] for x in runs if x["workers"] == 2]
    ratio = (sum(two) / len(two)) / (sum(one) / len(one))
    print("\n| workers | trees/s | trees per worker CPU-second | CPU each worker got | driver's own time "
          "| trees identical |\n|---|---|---|---|---|---|")
    for x in runs:
        print(f"| {x['workers']} | {x['trees_per_s']:.2f} ({x['trees']} trees in {x['seconds']:.1f} s) | "
              f"{x['trees_per_cpu_s']:.2f} | {', '.join(f'{c:.0%}' for c in x['cpu_share'])} | "
              f"{x['driver_share']:.1%} | {x['identical']} |")
    print(f"\n2 workers / 1 worker: {ratio:.2f}x trees/s (goal >= 1.7x); "
          f"all trees identical: {all(x['identical'] for x in runs)}")


if __name__ == "__main__":
    main()
