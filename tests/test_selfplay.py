"""`journey selfplay`: rounds that resume after a kill, and bad flags refused up front."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import run, write_problems

TINY = ["--max-steps", "1", "--depth", "5", "--pair-samples", "3", "--eval-samples", "2", "--batch-size", "4"]


def test_selfplay_resumes_after_a_kill_between_rounds(tmp_path):
    train = write_problems(tmp_path / "train.jsonl", n=4, seed=3)
    test = write_problems(tmp_path / "test.jsonl", n=3, seed=4)
    out = tmp_path / "sp"
    cmd = [sys.executable, "-m", "journey.cli", "selfplay", "--problems", str(train), "--test", str(test),
           "--out-dir", str(out), "--rounds", "2", *TINY]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "round-0" / "round.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not first.exists():
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "round-1" / "round.json").exists()
    before = (first.stat().st_mtime_ns, first.read_text())
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (first.stat().st_mtime_ns, first.read_text()) == before  # round 0 was not run again
    summary = json.loads((out / "selfplay.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    r1 = summary["rounds"][1]
    assert r1["prm"] == str(out / "round-0" / "prm")  # round 1 searched with the PRM of round 0
    assert (out / "round-1" / "trees_exact.jsonl").exists()  # ... and labelled its data exactly
    for r in summary["rounds"]:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["prm_f1_right"] <= 1 and r["trees"] == 4
        assert (out / f"round-{r['round']}" / "prm" / "prm.json").exists()
    assert not (out.parent / "sp.lock").exists()


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--prm-loop", "sometimes"], "--prm-loop must be one of trained, fixed"),
    (["--sft-data", "both"], "--sft-data must be journey or shortcut"),
    (["--search", "dfs"], "--search must be one of beam, mcts"),
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    # the RL flags (--policy-update sft+rl or rl)
    (["--gamma", "0.5"], "--gamma is for --policy-update sft+rl or rl"),
    (["--policy-update", "sft+rl", "--group-size", "3"], "--batch-size 16 must be a multiple of --group-size 3"),
    (["--policy-update", "rl", "--rl-lr", "0"], "--rl-lr must be > 0"),
    (["--policy-update", "ppo"], "--policy-update must be one of sft+dpo, sft+rl, rl"),
])
def test_selfplay_bad_flags(tmp_path, args, message):
    train = write_problems(tmp_path / "train.jsonl", n=2)
    result = run("selfplay", "--problems", train, "--test", train, "--out-dir", tmp_path / "sp", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "sp").exists()


def command_flags(name: str) -> set[str]:
    """Every flag the command `name` takes."""
    import typer

    from journey.cli import app

    return {o for p in typer.main.get_command(app).commands[name].params for o in p.opts if o.startswith("--")}


def flags_named(text: str) -> set[str]:
    import re

    return set(re.findall(r"--[a-z][a-z0-9-]*", text))


def change_first_problem(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["question"] = "9 + 9"
    rows[0]["answer"] = "18"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# A run killed mid-round, then rerun after a problem changed: refused, and the message names only
# selfplay's own flags (it has --out-dir, no --out or --overwrite).
@pytest.mark.parametrize("journal, changed", [
    ("test_trees.jsonl", "test.jsonl"),  # the held-out trees, built first
    ("round-0/trees.jsonl", "train.jsonl"),  # round 0's trees
])
def test_a_changed_problem_mid_round_names_selfplay_flags(tmp_path, journal, changed):
    from journey.config import SelfplayConfig
    from journey.runtime.io import SELFPLAY_REMEDY
    from journey.stages.build_tree import run_build_tree
    from journey.stages.selfplay import held_out_trees

    train = write_problems(tmp_path / "train.jsonl", n=2, seed=3)
    test = write_problems(tmp_path / "test.jsonl", n=2, seed=4)
    args = ["--depth", "2", "--width", "2"]
    cfg = SelfplayConfig(problems=train, test=test, out_dir=tmp_path / "sp", tree={"depth": 2, "width": 2})
    held_out_trees(cfg)  # what a run killed after it left
    if journal.startswith("round-0"):
        run_build_tree(cfg.tree_config(train, tmp_path / "sp" / journal, cfg.model, cfg.prm, cfg.prm_model, cfg.seed),
                       remedy=SELFPLAY_REMEDY)
    change_first_problem(tmp_path / changed)
    before = (tmp_path / "sp" / journal).read_bytes()
    result = run("selfplay", "--problems", train, "--test", test, "--out-dir", tmp_path / "sp", *args)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "has changed" in text and "pick another --out-dir" in text, result.output
    assert flags_named(text) <= command_flags("selfplay"), flags_named(text) - command_flags("selfplay")
    assert (tmp_path / "sp" / journal).read_bytes() == before
