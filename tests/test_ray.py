"""`--ray` (journey.runtime.distributed) on a real local Ray of 2 CPUs, started once for this module:
the same seeds give the same trees and rows as one process; a worker killed with SIGKILL
mid-batch loses and doubles nothing; resume, refusals and summaries work as without Ray.

    .venv/bin/python -m pytest -q tests/test_ray.py        (about a minute on 2 cores)
"""

import json
import os
import signal
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from journey.cli import app
from journey.config import BuildTreeConfig, DistillConfig, GenerateConfig, SamplePairsConfig
from journey.runtime.distributed import make_batches
from journey.runtime.io import write_jsonl_atomic
from journey.stages.build_tree import run_build_tree
from journey.stages.distill import run_distill
from journey.stages.evaluate import generations_path, run_eval, run_sample_pairs, samples_path
from journey.tasks import get_task

runner = CliRunner()
TREE = dict(width=3, depth=6, top_k=2, trees_in_flight=2, seed=3)  # 12 problems -> 4 batches of 3


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the one-process references, like each actor: no fight over 2 busy cores
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "problems.jsonl"
    write_jsonl_atomic(path, [p.to_row() for p in get_task("arith").generate(12, seed=5)])
    return path


def trees_by_id(path: Path) -> dict[str, dict]:
    """Each tree of a trees.jsonl, without what differs between runs (its time, its run record)
    and with log-probs apart (they move by ~1e-4 with batch padding: see journey.search.build);
    an id written twice fails."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row["costs"].pop("seconds")
        row.pop("run")
        row["logprobs"] = [n.pop("logprob") for n in row["nodes"]]
        assert row["problem"]["id"] not in out, f"{row['problem']['id']} written twice"
        out[row["problem"]["id"]] = row
    return out


def assert_same_trees(got: dict[str, dict], want: dict[str, dict]) -> None:
    """The same ids, nodes and costs; log-probs within 1e-3."""
    lp = lambda trees: {k: t["logprobs"] for k, t in trees.items()}  # noqa: E731
    rest = lambda trees: {k: {f: v for f, v in t.items() if f != "logprobs"} for k, t in trees.items()}  # noqa: E731
    assert rest(got) == rest(want)
    for k, want_lp in lp(want).items():
        assert all(a == b or abs(a - b) <= 1e-3 for a, b in zip(lp(got)[k], want_lp, strict=True)), k  # root: None


@pytest.fixture(scope="module")
def one_process_trees(problems, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ref") / "trees.jsonl"
    run_build_tree(BuildTreeConfig(problems=problems, out=out, **TREE))
    return trees_by_id(out)


@pytest.mark.parametrize("n, workers, unit, most, sizes", [
    (10, 2, 2, 4, [2, 2, 2, 2, 2]),     # 5 chunks, 2 workers: one chunk a batch
    (10, 1, 1, 4, [4, 4, 2]),           # capped at 4 units
    (40, 2, 4, 4, [8] * 5),             # 10 chunks // (2 x 2) = 2 chunks a batch
    (3, 2, 1, 64, [1, 1, 1]),           # fewer items than 2 per worker: one each
    (0, 2, 1, 4, []),
])
def test_batches_are_whole_chunks_and_at_least_two_per_worker(n, workers, unit, most, sizes):
    batches = make_batches(list(range(n)), workers, unit, most)
    assert [len(b) for b in batches] == sizes
    assert [x for b in batches for x in b] == list(range(n))  # in order, each once


def test_ray_trees_are_the_single_process_trees(problems, one_process_trees, tmp_path):
    out = tmp_path / "trees.jsonl"
    stats = run_build_tree(BuildTreeConfig(problems=problems, out=out, ray=True, workers=2, **TREE))
    assert_same_trees(trees_by_id(out), one_process_trees)
    workers = stats.extra["ray"]["workers"]
    assert [w["problems"] > 0 for w in workers] == [True, True]  # both actors built trees
    assert sum(w["problems"] for w in workers) == stats.trees == 12
    assert len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}


@pytest.mark.slow  # two more tree builds (~30 s on 2 busy cores)
def test_ray_mcts_trees_are_the_single_process_trees(problems, tmp_path):
    flags = dict(TREE, search="mcts", simulations=6, limit=6)
    run_build_tree(BuildTreeConfig(problems=problems, out=tmp_path / "a.jsonl", **flags))
    run_build_tree(BuildTreeConfig(problems=problems, out=tmp_path / "b.jsonl", ray=True, workers=2, **flags))
    assert_same_trees(trees_by_id(tmp_path / "b.jsonl"), trees_by_id(tmp_path / "a.jsonl"))


def busy_worker_pids() -> list[int]:
    """Processes of our Ray actors now inside a `run` call (Ray titles them `ray::JourneyWorker.run`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if title.startswith(b"ray::JourneyWorker.run"):
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(problems, one_process_trees, tmp_path):
    out, killed = tmp_path / "trees.jsonl", []

    def progress(event, value):  # after each written tree, until one is killed: SIGKILL a busy actor
        if event == "tree" and not killed:
            for pid in busy_worker_pids()[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    stats = run_build_tree(BuildTreeConfig(problems=problems, out=out, ray=True, workers=2, **TREE), progress)
    assert killed, "no actor was inside a batch when a tree was written"
    assert_same_trees(trees_by_id(out), one_process_trees)  # every id once, each the same tree
    workers = stats.extra["ray"]["workers"]
    assert sum(w["restarts"] for w in workers) == 1
    assert killed[0] not in {w["pid"] for w in workers}  # the slot has a new process
    assert sum(w["problems"] for w in workers) == 12 and stats.trees == 12


def test_a_run_resumed_on_ray_writes_the_rest(problems, one_process_trees, tmp_path):
    out = tmp_path / "trees.jsonl"
    run_build_tree(BuildTreeConfig(problems=problems, out=out, limit=5, **TREE))
    stats = run_build_tree(BuildTreeConfig(problems=problems, out=out, ray=True, workers=2, **TREE))
    assert stats.resumed == 5 and stats.trees == 12
    assert_same_trees(trees_by_id(out), one_process_trees)
    with pytest.raises(ValueError, match="different config"):  # the config check is the same code
        run_build_tree(BuildTreeConfig(problems=problems, out=out, ray=True, workers=2, **{**TREE, "seed": 4}))


def test_ray_eval_and_sample_pairs_write_what_one_process_writes(problems, tmp_path):
    flags = dict(model="embedded", problems=problems, samples=2, max_new_tokens=48, batch_size=4, limit=6)
    one = run_eval(GenerateConfig(out=tmp_path / "a.json", **flags))
    many = run_eval(GenerateConfig(out=tmp_path / "b.json", ray=True, workers=2, **flags))
    assert {k: v for k, v in many.items() if k != "provenance"} == {k: v for k, v in one.items() if k != "provenance"}
    rows = [sorted(generations_path(tmp_path / f).read_text().splitlines()) for f in ("a.json", "b.json")]
    assert rows[0] == rows[1] and len(rows[0]) == 6
    assert sum(w["problems"] for w in many["provenance"]["ray"]["workers"]) == 6

    pairs = dict(flags, samples=4, pairs=2, batch_size=8)
    s1 = run_sample_pairs(SamplePairsConfig(out=tmp_path / "p1.jsonl", **pairs))
    s2 = run_sample_pairs(SamplePairsConfig(out=tmp_path / "p2.jsonl", ray=True, workers=2, **pairs))
    assert {k: v for k, v in s2.items() if k != "ray"} == s1
    assert (tmp_path / "p1.jsonl").read_text() == (tmp_path / "p2.jsonl").read_text()
    assert sorted(samples_path(tmp_path / "p1.jsonl").read_text().splitlines()) == \
        sorted(samples_path(tmp_path / "p2.jsonl").read_text().splitlines())


def test_ray_distill_writes_what_one_process_writes(problems, tmp_path):
    flags = dict(problems=problems, teacher="embedded", task="arith", samples=2, max_new_tokens=64,
                 prompt="task", batch_size=4, limit=6)
    s1 = run_distill(DistillConfig(out_dir=tmp_path / "a", **flags))
    s2 = run_distill(DistillConfig(out_dir=tmp_path / "b", ray=True, workers=2, **flags))
    assert (tmp_path / "a" / "sft.jsonl").read_text() == (tmp_path / "b" / "sft.jsonl").read_text()
    assert s2["kept"] == s1["kept"] and s2["dropped"] == s1["dropped"]
    assert sum(w["problems"] for w in s2["ray"]["workers"]) == 6


def test_cli_build_tree_on_ray_prints_each_workers_throughput(problems, tmp_path):
    out = tmp_path / "t.jsonl"
    r = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out), "--limit", "4",
                            "--width", "2", "--depth", "3", "--ray", "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "worker 0 (" in r.output and "worker 1 (" in r.output and "trees/s" in r.output
    assert len(out.read_text().splitlines()) == 4


@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "--workers is for --ray; add --ray or drop --workers"),
    (["--ray", "--workers", "5"], "--workers 5: each worker takes 1 CPU and the Ray cluster has 2"),
    (["--ray", "--gpus-per-worker", "1", "--workers", "1"], "--workers 1 x --gpus-per-worker 1 needs 1 GPUs; the Ray cluster has 0"),
    (["--ray", "--workers", "0"], "--workers must be >= 1, got 0"),
])
def test_ray_flags_are_checked_with_one_line_naming_the_flag(problems, tmp_path, args, message):
    out = tmp_path / "t.jsonl"
    r = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out), *args])
    assert r.exit_code == 1 and message in " ".join(r.output.split()), r.output
    assert not out.exists()


# ---------------------------------------------------------------- a killed driver takes its Ray with it


def test_descendants_walks_the_process_tree():
    from journey.runtime.reaper import alive, descendants

    table = {2: (1, 10), 3: (2, 11), 4: (3, 12), 5: (1, 13), 6: (4, 14)}
    assert descendants({2}, table) == {3: 11, 4: 12, 6: 14}
    assert descendants({5}, table) == {}
    assert alive({3: 11, 4: 99, 7: 1}, table) == {3: 11}  # 4 is another process now, 7 is gone


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_behind(tmp_path):
    """kill -9 of a `build-tree --ray` driver: ~20 s later no process it started (gcs_server,
    raylet, workers, and the agents that waited on a dead GCS for minutes) still runs."""
    import subprocess
    import sys
    import time

    from journey.runtime.reaper import alive, descendants, process_table

    problems = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["problems", "--n", 200, "--out", str(problems)]).exit_code == 0
    out = tmp_path / "t.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    driver = subprocess.Popen([sys.executable, "-m", "journey.cli", "build-tree", "--problems", str(problems),
                               "--out", str(out), "--ray", "--workers", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, started = time.time() + 180, {}
    while time.time() < deadline and driver.poll() is None and not (out.exists() and out.read_text()):
        started.update(descendants({driver.pid}, process_table()))  # the Ray it started, as it grows
        time.sleep(0.5)
    assert driver.poll() is None and out.read_text(), "the driver ended before its Ray worked"
    started.update(descendants({driver.pid}, process_table()))
    names = {proc_name(pid) for pid in started}
    assert any("raylet" in n for n in names) and any("ray::" in n for n in names), names
    driver.kill()
    driver.wait()
    deadline = time.time() + 20
    while time.time() < deadline and alive(started, process_table()):
        time.sleep(0.5)
    left = alive(started, process_table())
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, [proc_name(pid) for pid in left]


def proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        return "?"
