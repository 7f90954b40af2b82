"""The command line as a user meets it: help, problems, build-tree, its bad inputs, and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from journey import __version__
from journey.cli import app
from tests.helpers import (
    ENV,
    GOOD_PROBLEM,
    JOURNEY,
    kill_and_resume,
    run,
    tree_content,
    write_problems,
    write_rows,
)

runner = CliRunner()


def test_help_lists_built_commands_only():
    result = run("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands")[1]
    for command in ("problems", "build-tree", "derive-longthought", "train", "eval", "sample-pairs", "show"):
        assert command in commands
    assert run("--version").output.strip() == f"journey {__version__}"


def test_problems_writes_jsonl(tmp_path):
    out = tmp_path / "sub" / "p.jsonl"
    result = run("problems", "--n", 5, "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and {"id", "question", "answer"} <= set(rows[0])
    assert run("problems", "--n", 5, "--seed", 3, "--out", tmp_path / "q.jsonl").exit_code == 0
    assert (tmp_path / "q.jsonl").read_text() == out.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "--n must be > 0"),
        (["--task", "nope"], "unknown task 'nope'"),
    ],
)
def test_problems_bad_input(tmp_path, args, message):
    out = tmp_path / "p.jsonl"
    result = run("problems", "--out", out, *args)
    assert result.exit_code == 1 and message in result.output
    assert not out.exists()


def test_problems_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("problems", "--out", blocker / "p.jsonl")
    assert result.exit_code == 1 and "cannot create folder" in result.output


def test_recipe_sets_defaults_and_flags_win(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("n: 4\nseed: 9\n")
    assert run("problems", "--config", recipe, "--out", tmp_path / "a.jsonl").exit_code == 0
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 4
    assert run("problems", "--config", recipe, "--n", 2, "--out", tmp_path / "b.jsonl").exit_code == 0
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
    recipe.write_text("wdith: 3\n")
    result = run("problems", "--config", recipe, "--out", tmp_path / "c.jsonl")
    assert result.exit_code == 1 and "r.yaml:1: unknown key 'wdith'" in result.output


# ---------------------------------------------------------------- build-tree


BAD_PROBLEMS = {
    "malformed": ('{"id": "a", "question": "1 + 2", "answer": "3"}\n{"id": \n', ":2: not valid JSON"),
    "missing": ('{"id": "a", "question": "1 + 2"}\n', ":1: missing 'answer'"),
    "duplicate": ('{"id": "a", "question": "1 + 2", "answer": "3"}\n' * 2, ":2: duplicate id 'a' (first on line 1)"),
    "empty": ("\n", "no problems in the file"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBLEMS))
def test_build_tree_bad_problems(tmp_path, case):
    text, message = BAD_PROBLEMS[case]
    problems = tmp_path / "p.jsonl"
    problems.write_text(text)
    out = tmp_path / "t.jsonl"
    result = run("build-tree", "--problems", problems, "--out", out)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", "0"], "--width must be > 0"),
        (["--depth", "0"], "--depth must be > 0"),
        (["--top-k", "-1"], "--top-k must be > 0"),
        (["--expand", "sometimes"], "--expand must be one of never, wrong, got 'sometimes'"),
        (["--model", "./no/such/model"], "--model ./no/such/model: no such model directory"),
        (["--prm", "oracle"], "unknown PRM 'oracle'"),
        (["--problems", "missing.jsonl"], "missing.jsonl: no such file"),
    ],
)
def test_build_tree_bad_flags(tmp_path, args, message):
    problems = write_problems(tmp_path / "p.jsonl")
    out = tmp_path / "t.jsonl"
    result = run("build-tree", "--problems", problems, "--out", out, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


def test_build_tree_refuses_a_different_config_then_overwrites(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    out = tmp_path / "t.jsonl"
    base = ["build-tree", "--problems", problems, "--out", out, "--depth", "3"]
    first = run(*base)
    assert first.exit_code == 0, first.output
    assert "trees with a correct path" in first.output
    before = out.read_text()
    assert "2 already done" in run(*base).output and out.read_text() == before
    changed = run(*base, "--width", "2")
    assert changed.exit_code == 1 and "different config (width 4 -> 2)" in changed.output
    assert out.read_text() == before
    assert run(*base, "--width", "2", "--overwrite").exit_code == 0
    assert all(r["run"]["config"]["width"] == 2 for r in map(json.loads, out.read_text().splitlines()))


def test_trees_from_before_expand_resume_as_expand_wrong(tmp_path):
    """A trees file written before --expand (no `expand` in its run config) was built expanding
    wrong steps: it resumes with --expand wrong and is refused, naming the key, with the default."""
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    out = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", out, "--depth", "3", "--expand", "wrong",
               "--limit", "1").exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["run"]["config"].pop("expand") == "wrong"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refused = run("build-tree", "--problems", problems, "--out", out, "--depth", "3")
    assert refused.exit_code == 1 and "expand 'wrong' -> 'never'" in refused.output, refused.output
    resumed = run("build-tree", "--problems", problems, "--out", out, "--depth", "3", "--expand", "wrong")
    assert resumed.exit_code == 0 and "(1 already done)" in resumed.output, resumed.output
    assert len(out.read_text().splitlines()) == 2


def test_build_tree_resumes_after_sigkill(tmp_path):
    """Kill a real `journey build-tree` mid-level (one tree written, three in flight), rerun it,
    and compare with an uninterrupted run: the restarted trees share batches with other trees
    than before, so this is where float noise would change structure if it could."""
    problems = write_problems(tmp_path / "p.jsonl", n=10, seed=21)
    cmd = [sys.executable, "-m", "journey.cli", "build-tree", "--problems", str(problems),
           "--depth", "6", "--trees-in-flight", "4", "--seed", "1"]
    killed, whole = kill_and_resume(cmd, tmp_path, 10)
    assert len(killed.read_text().splitlines()) == 10
    assert tree_content(killed) == tree_content(whole)


# ---------------------------------------------------------------- overwrite, recipes, signals, markup


def test_problems_refuses_to_overwrite_silently(tmp_path):
    out = tmp_path / "p.jsonl"
    assert run("problems", "--n", 3, "--out", out).exit_code == 0
    before = out.read_text()
    result = run("problems", "--n", 5, "--seed", 2, "--out", out)
    assert result.exit_code == 1 and "pass --overwrite" in result.output and out.read_text() == before
    assert run("problems", "--n", 5, "--seed", 2, "--out", out, "--overwrite").exit_code == 0
    assert len(out.read_text().splitlines()) == 5


RECIPES = [
    ("width: two\n", "r.yaml:1: width:", "two"),
    ("depth: 3\nwidth: [1, 2]\n", "r.yaml:2: width must be a single value", ""),
    ("top_k:\n", "r.yaml:1: top_k has no value", ""),
    ("seed: 1.5\n", "r.yaml:1: seed:", "1.5"),
    ("limit: abc\n", "r.yaml:1: limit:", "abc"),
]


@pytest.mark.parametrize("text, message, shown", RECIPES)
def test_recipe_values_are_checked_with_file_and_line(tmp_path, text, message, shown):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    result = run("build-tree", "--config", recipe, "--problems", problems, "--out", tmp_path / "t.jsonl")
    assert result.exit_code == 1, result.output  # ours, not click's usage error (exit 2)
    assert message in result.output and shown in result.output, result.output
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_says_what_was_kept(tmp_path, sig, code, name):
    problems = write_problems(tmp_path / "p.jsonl", n=8, seed=2)
    out = tmp_path / "t.jsonl"
    proc = subprocess.Popen([*JOURNEY, "build-tree", "--problems", str(problems), "--out", str(out),
                             "--trees-in-flight", "1", "--depth", "6"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out.exists() and out.read_text().count("\n")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    kept = out.read_text().count("\n")
    assert f"interrupted ({name})" in err and f"{kept:,} finished trees are kept in {out}" in " ".join(err.split())
    assert "rerun the same command to resume" in " ".join(err.split())
    assert not Path(str(out) + ".lock").exists()


def test_error_messages_print_brackets_as_written(tmp_path):
    problems = write_rows(tmp_path / "p.jsonl", [{**GOOD_PROBLEM, "id": ["[bold]x[/]"]}])
    result = run("build-tree", "--problems", problems, "--out", tmp_path / "t.jsonl")
    assert result.exit_code == 1 and '["[bold]x[/]"]' in result.output, result.output


# ---------------------------------------------------------------- issue 24: Ctrl-C during start-up

INTERRUPT_AT_IMPORT = """
import importlib.abc, os, runpy, signal, sys

class Interrupt(importlib.abc.MetaPathFinder):  # Ctrl-C while the commands are being imported
    def find_spec(self, name, path, target=None):
        if name == "journey.cli.main":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["journey", "build-tree", "--help"]
{start}
"""


@pytest.mark.parametrize("start", ['runpy.run_module("journey.cli", run_name="__main__")',  # python -m journey.cli
                                   "from journey.cli import app; app()"])  # the `journey` script
def test_ctrl_c_during_start_up_prints_no_traceback(start):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT.format(start=start)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted (SIGINT) during start-up" in proc.stderr
    assert "Usage" not in proc.stdout  # it stopped there


def test_ctrl_c_while_a_command_loads_its_stage_prints_no_traceback(tmp_path):
    """Between the app's start and a command's work (its stage imports torch): the same line."""
    import signal as signals

    import journey.stages.build_tree as stage
    from journey.cli.app import on_sigint

    def interrupt(cfg, progress=None):
        assert signals.getsignal(signals.SIGINT) is on_sigint  # inside user_errors
        raise KeyboardInterrupt

    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 1, "--out", str(problems)])
    before = signals.getsignal(signals.SIGINT)
    original, stage.run_build_tree = stage.run_build_tree, interrupt
    try:
        result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(tmp_path / "t.jsonl")])
    finally:
        stage.run_build_tree = original
    assert result.exit_code == 130 and "interrupted (SIGINT)" in result.output
    assert signals.getsignal(signals.SIGINT) is before  # put back after the command


# A real signal at any moment of the first seconds (the interpreter's own first ~50 ms aside):
# one line, exit 130 (SIGINT) or 143 (SIGTERM), never a traceback, never a silent exit.
LAUNCHERS = {"python -m journey.cli": [sys.executable, "-m", "journey.cli"],
             "journey script": [str(Path(sys.executable).parent / "journey")]}


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
@pytest.mark.parametrize("delay", [0.3, 1.0, 1.8, 2.6])
def test_a_signal_in_the_first_seconds_is_one_line(tmp_path, launcher, signame, code, delay):
    if not Path(LAUNCHERS[launcher][0]).exists():
        pytest.skip("no journey script beside this python")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 2, "--out", str(problems)])
    proc = subprocess.Popen([*LAUNCHERS[launcher], "build-tree", "--problems", str(problems), "--out",
                             str(tmp_path / "t.jsonl")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    assert proc.returncode == code, err
    assert lines and lines[-1].startswith(f"interrupted ({signame})"), err
    assert not any(bad in err for bad in ("Traceback", "Exception ignored", "│"))


# ---------------------------------------------------------------- issue 24: build-tree's PRM by default


@pytest.mark.parametrize("task, prm", [("arith", "verifier"), ("math", "rollout"), ("code", "tests")])
def test_build_tree_takes_the_tasks_own_prm_when_none_is_given(task, prm):
    from journey.config import BuildTreeConfig

    cfg = BuildTreeConfig(problems=Path("p"), out=Path("t"), task=task)
    assert (cfg.prm, cfg.prm_from_task) == (prm, True)
    given = BuildTreeConfig(problems=Path("p"), out=Path("t"), task=task, prm="rollout")
    assert (given.prm, given.prm_from_task) == ("rollout", False)
