"""Nothing lost, nothing doubled, every bad input a clear refusal: one test per class of failure.

Each case here failed on 48644a3 (exit 0, a silent mix of two runs, or an error naming no file,
line or flag). Full disks are real: a tiny tmpfs mounted for the test (skipped where mounting
is not allowed).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journey.runtime.io import DataError, atomic_folder, output_lock, read_jsonl, recover_folder
from tests.test_cli import run, write_problems

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
JOURNEY = [sys.executable, "-m", "journey.cli"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def problem_rows(n=3, seed=5):
    from journey.tasks import get_task

    return [p.to_row() for p in get_task("arith").generate(n, seed)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill `disk` up to `leave` bytes free."""
    free = shutil.disk_usage(disk).free - leave
    with (disk / "filler").open("wb") as fh:
        try:
            fh.write(b"\0" * max(free, 0))
        except OSError:
            pass


# ---------------------------------------------------------------- one writer


def test_second_writer_is_refused_for_every_output(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 2).exit_code == 0
    cases = [
        (tmp_path / "t2.jsonl", ["build-tree", "--problems", problems, "--out", tmp_path / "t2.jsonl"]),
        (tmp_path / "d", ["derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d"]),
        (tmp_path / "m.json", ["eval", "--model", "embedded", "--problems", problems, "--out", tmp_path / "m.json"]),
        (tmp_path / "pairs.jsonl", ["sample-pairs", "--model", "embedded", "--problems", problems,
                                    "--out", tmp_path / "pairs.jsonl", "-n", 2]),
        (tmp_path / "ck", ["train", "--stage", "sft", "--data", tmp_path / "none.jsonl", "--out", tmp_path / "ck"]),
        (tmp_path / "q.jsonl", ["problems", "--out", tmp_path / "q.jsonl"]),
    ]
    (tmp_path / "none.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "1"},
                                                                  {"role": "assistant", "content": "1"}]}) + "\n")
    for out, args in cases:
        with output_lock(out):
            result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "another journey run" in result.output and f"pid {os.getpid()}" in result.output, result.output
        assert not Path(out).exists(), args
    assert not list(tmp_path.glob("*.lock"))  # released and removed


def test_two_build_tree_processes_on_one_out_write_each_tree_once(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=4, seed=8)
    out = tmp_path / "t.jsonl"
    cmd = [*JOURNEY, "build-tree", "--problems", str(problems), "--out", str(out), "--depth", "3"]
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "t.jsonl.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    first.wait()
    assert first.returncode == 0
    assert second.returncode == 1 and "another journey run" in second.stderr
    ids = [r["problem"]["id"] for r in lines(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4


def test_lock_is_taken_over_after_a_killed_holder(tmp_path):
    out = tmp_path / "x.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, sys; from journey.runtime.io import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(DataError, match="another journey run"), output_lock(out):
        pass
    holder.kill()
    holder.wait()
    with output_lock(out):  # the lock file is still there, but nobody holds it
        pass


# ---------------------------------------------------------------- duplicates and stale rows


def test_resume_drops_duplicate_trees_and_says_so(tmp_path, caplog):
    problems = write_problems(tmp_path / "p.jsonl", n=3)
    out = tmp_path / "t.jsonl"
    args = ["build-tree", "--problems", problems, "--out", out, "--depth", 2]
    assert run(*args).exit_code == 0
    doubled = out.read_text().splitlines()
    out.write_text("\n".join(doubled + doubled) + "\n")
    result = run(*args)
    assert result.exit_code == 0 and "3 already done" in result.output
    assert "dropped 3 duplicate row(s)" in caplog.text
    assert len(lines(out)) == 3  # rewritten without the duplicates


def test_derive_drops_duplicate_trees_and_says_so(tmp_path, caplog):
    problems = write_problems(tmp_path / "p.jsonl", n=3)
    out = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", out, "--depth", 8).exit_code == 0
    once = run("derive-longthought", "--trees", out, "--out-dir", tmp_path / "a")
    text = out.read_text()
    out.write_text(text + text)
    twice = run("derive-longthought", "--trees", out, "--out-dir", tmp_path / "b")
    assert twice.exit_code == 0 and "dropped 3 tree(s)" in caplog.text
    for name in ("sft_journey.jsonl", "sft_shortcut.jsonl", "dpo_pairs.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), once.output


@pytest.mark.parametrize("change", ["question", "answer"])
def test_resume_refuses_a_changed_problem(tmp_path, change):
    rows = problem_rows(3)
    problems = write_rows(tmp_path / "p.jsonl", rows)
    out = tmp_path / "t.jsonl"
    args = ["build-tree", "--problems", problems, "--out", out, "--depth", 2]
    assert run(*args).exit_code == 0
    before = out.read_text()
    rows[1][change] = "(1 + 2) * 3" if change == "question" else "999"
    write_rows(problems, rows)
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert f"t.jsonl:2: problem {rows[1]['id']!r} has changed" in result.output
    assert out.read_text() == before
    assert run(*args, "--overwrite").exit_code == 0


def test_resume_refuses_trees_of_other_problems(tmp_path):
    out = tmp_path / "t.jsonl"
    first = write_rows(tmp_path / "p.jsonl", problem_rows(2, seed=1))
    assert run("build-tree", "--problems", first, "--out", out, "--depth", 2).exit_code == 0
    other = write_rows(tmp_path / "q.jsonl", [{**r, "id": "other-" + r["id"]} for r in problem_rows(2, seed=1)])
    result = run("build-tree", "--problems", other, "--out", out, "--depth", 2)
    assert result.exit_code == 1 and "is not in" in result.output and "q.jsonl" in result.output


# ---------------------------------------------------------------- sets of files


def test_derive_output_is_one_set_even_when_the_disk_fills(tmp_path, tiny_disk):
    problems = write_problems(tmp_path / "p.jsonl", n=4)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    out = tiny_disk / "data"
    assert run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 1).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill(tiny_disk, leave=1024)
    result = run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 2)
    assert result.exit_code == 1 and "no space left on the device" in result.output, result.output
    assert str(tiny_disk) in result.output  # names the file it could not write
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["data", "filler"]  # no .tmp, no .partial


def test_derive_replaces_its_own_output_but_never_a_folder_of_other_files(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    out = tmp_path / "data"
    assert run("derive-longthought", "--trees", trees, "--out-dir", out).exit_code == 0
    assert run("derive-longthought", "--trees", trees, "--out-dir", out, "--seed", 3).exit_code == 0
    assert json.loads((out / "derive.json").read_text())["config"]["seed"] == 3
    (out / "notes.txt").write_text("mine")
    result = run("derive-longthought", "--trees", trees, "--out-dir", out)
    assert result.exit_code == 1 and "holds other files" in result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_a_kill_between_the_two_renames_is_mended(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "derive.json").write_text("old")
    old = tmp_path / ".data.old"
    os.replace(out, old)  # killed after moving the old set aside, before the new one landed
    recover_folder(out)
    assert (out / "derive.json").read_text() == "old" and not old.exists()
    with atomic_folder(out, lambda p: True) as staging:
        (staging / "derive.json").write_text("new")
    assert (out / "derive.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_derive_json_keeps_numbers_as_numbers(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    assert run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", "-K", 3).exit_code == 0
    config = json.loads((tmp_path / "d" / "derive.json").read_text())["config"]
    assert config["max_trials"] == 3 and config["trial_prob"] == 0.8 and config["task"] is None
    assert config["trees"] == str(trees)


def test_build_tree_on_a_full_disk_names_the_file_and_resumes(tmp_path, tiny_disk):
    problems = write_problems(tmp_path / "p.jsonl", n=6)
    out = tiny_disk / "t.jsonl"
    fill(tiny_disk, leave=6000)
    result = run("build-tree", "--problems", problems, "--out", out, "--depth", 3)
    assert result.exit_code == 1, result.output
    assert f"{out}: cannot write (no space left on the device)" in result.output
    kept = out.read_text()
    assert kept == "" or kept.endswith("\n")  # no half line
    (tiny_disk / "filler").unlink()
    assert run("build-tree", "--problems", problems, "--out", out, "--depth", 3).exit_code == 0
    whole = tmp_path / "whole.jsonl"
    assert run("build-tree", "--problems", problems, "--out", whole, "--depth", 3).exit_code == 0
    assert len(lines(out)) == 6 and {r["problem"]["id"] for r in lines(out)} == {r["problem"]["id"] for r in lines(whole)}


# ---------------------------------------------------------------- resumable eval and sample-pairs


def cut_journal(path: Path, keep: int) -> None:
    """What a kill leaves: `keep` whole lines and half of the next."""
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join(text[:keep]) + text[keep][: len(text[keep]) // 2])


def test_eval_resumes_per_problem(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=6, seed=3)
    whole, killed = tmp_path / "whole.json", tmp_path / "killed.json"
    args = ["eval", "--model", "embedded", "--problems", problems, "-k", 2]
    assert run(*args, "--out", whole).exit_code == 0
    assert run(*args, "--out", killed).exit_code == 0
    generations = tmp_path / "killed.generations.jsonl"
    cut_journal(generations, 3)
    killed.unlink()
    result = run(*args, "--out", killed)
    assert result.exit_code == 0, result.output
    drop = lambda m: {k: v for k, v in m.items() if k != "provenance"}  # noqa: E731
    assert drop(json.loads(killed.read_text())) == drop(json.loads(whole.read_text()))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "config"} for r in rows]  # noqa: E731
    assert strip(lines(generations)) == strip(lines(tmp_path / "whole.generations.jsonl"))
    changed = run(*args, "--out", killed, "--temperature", 0.3)
    assert changed.exit_code == 1 and "different config (temperature 0.7 -> 0.3)" in changed.output
    assert run(*args, "--out", killed, "--temperature", 0.3, "--overwrite").exit_code == 0


def test_sample_pairs_resumes_per_problem(tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", n=6, seed=3)
    args = ["sample-pairs", "--model", "embedded", "--problems", problems, "-n", 6]
    assert run(*args, "--out", tmp_path / "whole.jsonl").exit_code == 0
    assert run(*args, "--out", tmp_path / "killed.jsonl").exit_code == 0
    cut_journal(tmp_path / "killed.samples.jsonl", 2)
    (tmp_path / "killed.jsonl").unlink()
    assert run(*args, "--out", tmp_path / "killed.jsonl").exit_code == 0
    assert (tmp_path / "killed.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()
    task_rows = lines(tmp_path / "killed.samples.jsonl")
    assert [r["id"] for r in task_rows] == [r["id"] for r in lines(problems)]


def test_eval_refuses_a_retrained_model_on_resume(tmp_path):
    ckpt = tmp_path / "model"
    from journey.models.embedded import EMBEDDED_PATH

    shutil.copytree(EMBEDDED_PATH, ckpt)
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    args = ["eval", "--model", ckpt, "--problems", problems, "--out", tmp_path / "m.json"]
    assert run(*args).exit_code == 0
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    result = run(*args)
    assert result.exit_code == 1 and "model_fingerprint" in result.output


# ---------------------------------------------------------------- train keeps the old checkpoint


def sft_rows(path: Path) -> Path:
    row = {"messages": [{"role": "user", "content": "1 + 2"}, {"role": "assistant", "content": "The answer is 3."}]}
    return write_rows(path, [row] * 4)


def test_failed_train_keeps_the_old_checkpoint_and_no_partial(tmp_path, monkeypatch):
    from journey.stages import train as train_mod
    from journey.stages.train import TrainConfig, run_train

    data = sft_rows(tmp_path / "d.jsonl")
    out = tmp_path / "ck"
    out.mkdir()
    (out / "config.json").write_text("{}")  # the old checkpoint
    (tmp_path / "ck.partial").mkdir()  # left by a killed run
    (tmp_path / "ck.partial" / "junk").write_text("x")

    def broken(cfg, rows, folder):
        assert not (folder / "junk").exists()  # the stale partial was removed first
        (folder / "half").write_text("x")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train_mod, "train_into", broken)
    with pytest.raises(RuntimeError):
        run_train(TrainConfig("sft", [data], out, max_steps=1, overwrite=True))
    assert (out / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "d.jsonl"]


def test_train_overwrite_replaces_only_when_the_new_one_is_saved(tmp_path):
    data = sft_rows(tmp_path / "d.jsonl")
    out = tmp_path / "ck"
    out.mkdir()
    (out / "marker").write_text("old")
    args = ["train", "--stage", "sft", "--data", data, "--out", out, "--max-steps", 1, "--batch-size", 2]
    refused = run(*args)
    assert refused.exit_code == 1 and "already exists" in refused.output
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and not (out / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "d.jsonl"]


# ---------------------------------------------------------------- problems


def test_problems_refuses_to_overwrite_silently(tmp_path):
    out = tmp_path / "p.jsonl"
    assert run("problems", "--n", 3, "--out", out).exit_code == 0
    before = out.read_text()
    result = run("problems", "--n", 5, "--seed", 2, "--out", out)
    assert result.exit_code == 1 and "pass --overwrite" in result.output and out.read_text() == before
    assert run("problems", "--n", 5, "--seed", 2, "--out", out, "--overwrite").exit_code == 0
    assert len(out.read_text().splitlines()) == 5


# ---------------------------------------------------------------- bad input, with its place named

GOOD = {"id": "a", "question": "1 + 2", "answer": "3"}
BAD_ROWS = {
    "null id": ({**GOOD, "id": None}, ":1: 'id' must be a string, got NoneType null"),
    "number id": ({**GOOD, "id": 7}, ":1: 'id' must be a string, got int 7"),
    "list id": ({**GOOD, "id": ["a"]}, ":1: 'id' must be a string, got list"),
    "empty id": ({**GOOD, "id": " "}, ":1: 'id' is empty"),
    "number question": ({**GOOD, "question": 12}, ":1: 'question' must be a string, got int 12"),
    "null answer": ({**GOOD, "answer": None}, ":1: 'answer' must be a string, got NoneType null"),
    "empty question": ({**GOOD, "question": ""}, ":1: 'question' is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
@pytest.mark.parametrize("command", ["build-tree", "eval", "sample-pairs"])
def test_bad_problem_fields_are_refused_with_file_and_line(tmp_path, case, command):
    row, message = BAD_ROWS[case]
    problems = write_rows(tmp_path / "p.jsonl", [row])
    out = tmp_path / "out.jsonl"
    extra = [] if command == "build-tree" else ["--model", "embedded"]
    result = run(command, "--problems", problems, "--out", out, *extra)
    assert result.exit_code == 1 and f"p.jsonl{message}" in result.output, result.output
    assert not out.exists()


def test_invalid_utf8_names_file_and_line(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(json.dumps(GOOD).encode() + b'\n{"id": "b", "question": "\xff", "answer": "1"}\n')
    result = run("build-tree", "--problems", problems, "--out", tmp_path / "t.jsonl")
    assert result.exit_code == 1 and "p.jsonl:2: not valid UTF-8" in result.output


def test_invalid_utf8_in_trees_names_file_and_line(tmp_path):
    trees = tmp_path / "t.jsonl"
    trees.write_bytes(b"\xc3\x28\n")
    result = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d")
    assert result.exit_code == 1 and "t.jsonl:1: not valid UTF-8" in result.output


@pytest.mark.parametrize("flag", ["--problems", "--trees", "--data"])
def test_a_folder_given_for_a_file_says_so(tmp_path, flag):
    folder = tmp_path / "dir"
    folder.mkdir()
    args = {"--problems": ["build-tree", "--problems", folder, "--out", tmp_path / "t.jsonl"],
            "--trees": ["derive-longthought", "--trees", folder, "--out-dir", tmp_path / "d"],
            "--data": ["train", "--stage", "sft", "--data", folder, "--out", tmp_path / "ck"]}[flag]
    result = run(*args)
    assert result.exit_code == 1 and f"{folder}: is a directory, expected a file" in result.output
    assert "no such file" not in result.output


NUMERIC_FLAGS = [
    (["build-tree"], ["--limit", "0"], "--limit must be >= 1, got 0"),
    (["build-tree"], ["--limit", "-1"], "--limit must be >= 1, got -1"),
    (["build-tree"], ["--max-step-tokens", "0"], "--max-step-tokens must be >= 1, got 0"),
    (["build-tree"], ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["build-tree"], ["--trees-in-flight", "0"], "--trees-in-flight must be >= 1, got 0"),
    (["build-tree"], ["--rollouts", "0"], "--rollouts must be >= 1, got 0"),
    (["build-tree"], ["--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
    (["build-tree"], ["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["build-tree"], ["--top-p", "nan"], "--top-p must be in (0, 1], got nan"),
    (["eval", "--model", "embedded"], ["--limit", "0"], "--limit must be >= 1, got 0"),
    (["eval", "--model", "embedded"], ["--samples", "0"], "--samples must be >= 1, got 0"),
    (["eval", "--model", "embedded"], ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["sample-pairs", "--model", "embedded"], ["--limit", "-1"], "--limit must be >= 1, got -1"),
    (["sample-pairs", "--model", "embedded"], ["--pairs", "0"], "--pairs must be >= 1, got 0"),
]


@pytest.mark.parametrize("command, args, message", NUMERIC_FLAGS)
def test_numeric_flags_name_themselves(tmp_path, command, args, message):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    out = tmp_path / "out.jsonl"
    result = run(*command, "--problems", problems, "--out", out, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


TRAIN_FLAGS = [
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--epochs", "0"], "--epochs must be > 0, got 0.0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--grad-accum", "0"], "--grad-accum must be >= 1, got 0"),
    (["--max-length", "4"], "--max-length must be >= 8, got 4"),
    (["--max-steps", "0"], "--max-steps must be > 0, or -1"),
    (["--beta", "0"], "--beta must be > 0, got 0.0"),
]


@pytest.mark.parametrize("args, message", TRAIN_FLAGS)
def test_train_flags_name_themselves(tmp_path, args, message):
    data = sft_rows(tmp_path / "d.jsonl")
    result = run("train", "--stage", "sft", "--data", data, "--out", tmp_path / "ck", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "ck").exists()


def test_not_a_directory_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    trees = tmp_path / "t.jsonl"
    assert run("build-tree", "--problems", problems, "--out", trees, "--depth", 8).exit_code == 0
    for args in (["build-tree", "--problems", problems, "--out", blocker / "sub" / "t.jsonl"],
                 ["derive-longthought", "--trees", trees, "--out-dir", blocker / "d"],
                 ["eval", "--model", "embedded", "--problems", problems, "--out", blocker / "m.json"]):
        result = run(*args)
        assert result.exit_code == 1 and str(blocker) in result.output, result.output
        assert "Errno" not in result.output and "PosixPath" not in result.output


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


def test_question_longer_than_the_context_is_refused_up_front(tmp_path):
    rows = [GOOD, {"id": "long", "question": "1 + " * 300_000 + "1", "answer": "300001"}]
    problems = write_rows(tmp_path / "p.jsonl", rows)
    for command in (["build-tree"], ["eval", "--model", "embedded"]):
        out = tmp_path / "out.jsonl"
        result = run(*command, "--problems", problems, "--out", out)
        assert result.exit_code == 1, result.output
        assert "p.jsonl:2" in result.output and "context" in result.output and "4,096" in result.output
        assert not out.exists()


# ---------------------------------------------------------------- signals


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


def test_read_jsonl_survives_pathological_json(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"x.jsonl:1: not valid JSON"):
        list(read_jsonl(path))


def test_write_errors_name_the_path(tmp_path, tiny_disk):
    from journey.runtime.io import write_text_atomic

    fill(tiny_disk)
    with pytest.raises(DataError, match=rf"{tiny_disk}/x.json: cannot write \(no space left on the device\)"):
        write_text_atomic(tiny_disk / "x.json", "x" * 100_000)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", [["build-tree"], ["eval", "--model", "embedded"],
                                     ["sample-pairs", "--model", "embedded"]])
def test_an_output_that_is_the_input_is_refused(tmp_path, command):
    problems = write_problems(tmp_path / "p.jsonl", n=2)
    before = problems.read_text()
    result = run(*command, "--problems", problems, "--out", problems)
    assert result.exit_code == 1 and "is the --problems input" in result.output, result.output
    assert problems.read_text() == before


# ---------------------------------------------------------------- one definition, one source


def test_build_tree_and_derive_count_correct_paths_the_same_way(tmp_path):
    import re

    problems = write_problems(tmp_path / "p.jsonl", n=6, seed=12)
    trees = tmp_path / "t.jsonl"
    built = run("build-tree", "--problems", problems, "--out", trees, "--depth", 8)
    derived = run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d")
    solved = int(re.search(r"trees with a correct path\s*│\s*(\d+) / 6", built.output).group(1))
    used = json.loads((tmp_path / "d" / "derive.json").read_text())["stats"]["used"]
    assert solved == used, (built.output, derived.output)
    assert "w·K·D: 64" in built.output  # 4 * 2 * 8, beside the exhaustive count


def test_cli_defaults_are_the_config_defaults():
    import dataclasses

    import typer.main

    from journey.cli import app
    from journey.config import (
        BuildTreeConfig,
        DeriveConfig,
        GenerateConfig,
        SamplePairsConfig,
        TrainConfig,
    )

    commands = typer.main.get_command(app).commands
    pairs = {"build-tree": BuildTreeConfig, "derive-longthought": DeriveConfig, "train": TrainConfig,
             "eval": GenerateConfig, "sample-pairs": SamplePairsConfig}
    checked = 0
    for name, cfg in pairs.items():
        fields = {f.name: f for f in dataclasses.fields(cfg)}
        for param in commands[name].params:
            f = fields.get(param.name)
            if f is None or f.default is dataclasses.MISSING:
                continue
            assert param.default == f.default, (name, param.name, param.default, f.default)
            checked += 1
    assert checked >= 40


U = {"role": "user", "content": "1 + 2"}
A = {"role": "assistant", "content": "The answer is 3."}
BAD_TRAIN_ROWS = [
    ("sft", {"messages": [U, {"role": "assistant", "content": 5}]}, ":1: 'messages' message 1 must be"),
    ("sft", {"messages": [{"role": "robot", "content": "x"}, A]}, ":1: 'messages' message 0 must be"),
    ("sft", {"messages": "hello"}, ":1: 'messages' must be a non-empty list of messages"),
    ("sft", {"messages": [U, A], "mask_spans": [[0, 999]]}, ":1: 'mask_spans' must be [start, end]"),
    ("sft", {"messages": [U, A], "mask_spans": "all"}, ":1: 'mask_spans' must be [start, end]"),
    ("dpo", {"prompt": [U], "chosen": "x", "rejected": [A]}, ":1: 'chosen' must be a non-empty list"),
    ("dpo", {"prompt": "q", "chosen": "", "rejected": "r"}, ":1: 'chosen' and 'rejected' must not be empty"),
    ("dpo", {"prompt": [U], "chosen": [A], "rejected": [{"role": "assistant"}]}, ":1: 'rejected' message 0 must be"),
]


@pytest.mark.parametrize("stage, row, message", BAD_TRAIN_ROWS)
def test_train_rows_of_the_wrong_types_are_refused(tmp_path, stage, row, message):
    data = write_rows(tmp_path / "d.jsonl", [row])
    result = run("train", "--stage", stage, "--data", data, "--out", tmp_path / "ck")
    assert result.exit_code == 1 and f"d.jsonl{message}" in result.output, result.output
    assert not (tmp_path / "ck").exists()


def test_dpo_rows_of_two_formats_are_refused(tmp_path):
    data = write_rows(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                             {"prompt": [U], "chosen": [A], "rejected": [A]}])
    result = run("train", "--stage", "dpo", "--data", data, "--out", tmp_path / "ck")
    assert result.exit_code == 1 and "use one format" in result.output and "d.jsonl:2" in result.output


def test_error_messages_print_brackets_as_written(tmp_path):
    problems = write_rows(tmp_path / "p.jsonl", [{**GOOD, "id": ["[bold]x[/]"]}])
    result = run("build-tree", "--problems", problems, "--out", tmp_path / "t.jsonl")
    assert result.exit_code == 1 and '["[bold]x[/]"]' in result.output, result.output


def test_a_byte_order_mark_is_not_data(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert [row for _, row in read_jsonl(path)] == [GOOD]
