"""journey.runtime.io: the one check before the first write (`check_output`, `check_ours`), journals
that change nothing until a run writes, one writer, and full disks that name the path; then the
commands that go through it (an output that is an input is refused, nothing is created)."""

import errno
import json
import os

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.runtime.io import (
    DataError,
    JsonlAppender,
    check_ours,
    check_output,
    failed_write,
    output_lock,
    resume_journal,
    write_text_atomic,
)
from journey.search.tree import Tree
from journey.tasks.base import Problem

runner = CliRunner()
FMT = "journey.test/v1"


def snapshot(folder):
    """Every file under `folder` with its bytes (a refusal must leave this as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("{}\n")
    return tmp_path


@pytest.mark.parametrize("out, folder, inputs, error", [
    ("in.jsonl", False, {"--trees": "in.jsonl"}, "is the --trees input"),
    ("model/prm.json", False, {"--prm-model": "model"}, "is inside the --prm-model folder"),
    ("model", True, {"--model": "model"}, "is the --model input"),
    ("data", True, {"--data": "data/rows.jsonl"}, "holds the --data input"),
    ("data", False, {}, "is a directory"),
    ("in.jsonl", True, {}, "is a file, expected a folder"),
    ("in.jsonl/x.json", False, {}, "a file is in the way"),
    ("new/deeper/out.jsonl", False, {"--model": "embedded"}, None),  # a hub name is not a path
    ("new/ck", True, {"--model": "model", "--data": "data/rows.jsonl"}, None),
])
def test_check_output_refuses_inputs_and_creates_nothing(files, out, folder, inputs, error):
    before = snapshot(files)
    dirs = sorted(p for p in files.rglob("*") if p.is_dir())
    call = lambda: check_output(files / out, "--out", folder=folder,  # noqa: E731
                                inputs={k: files / v if v != "embedded" else v for k, v in inputs.items()})
    if error:
        with pytest.raises(DataError, match=error):
            call()
    else:
        call()
    assert snapshot(files) == before and sorted(p for p in files.rglob("*") if p.is_dir()) == dirs


@pytest.mark.parametrize("content, ours", [
    (b"", True),
    (b'{"format": "journey.test/v1", "id": "a"}\n', True),
    (b'{"format": "journey.test/v1", "id": "a", "te', True),  # a first line cut by a kill
    (b"my notes\nmore notes", False),
    (b'{"format": "journey.other/v1"}\n', False),
    (b"[1, 2]\n", False),
    (b"\n\n", False),
])
def test_check_ours_reads_one_line_and_changes_nothing(tmp_path, content, ours):
    path = tmp_path / "j.jsonl"
    path.write_bytes(content)
    if ours:
        check_ours(path, FMT)
    else:
        with pytest.raises(DataError, match="not a journey.test/v1 file"):
            check_ours(path, FMT)
    assert path.read_bytes() == content


def row(pid, **more):
    return {"format": FMT, "id": pid, "config": {"w": 2}, "question": "q", "gold": "1", **more}


PROBLEMS = [Problem("a", "q", "1"), Problem("b", "q", "1")]


def resume(path, config=None):
    return resume_journal(path, FMT, config or {"w": 2}, PROBLEMS, config_of=lambda r: r.get("config"),
                          problem_of=lambda r: {"id": r.get("id"), "question": r.get("question"),
                                                "answer": r.get("gold")})


@pytest.mark.parametrize("text, error", [
    ("my notes, no newline", "not a journey.test/v1 file"),  # the old resume cut the user's last line
    (json.dumps(row("a")) + "\n" + "notes", None),  # ours, with a cut last line: read, not cut yet
    (json.dumps(row("a")) + "\n" + json.dumps(row("b")) + "\nx", None),
    (json.dumps(row("a")) + "\n" + '{"format": "other"}\n' + "cut", "not a journey.test/v1 line"),
    (json.dumps(row("a", config={"w": 3})) + "\ncut", "different config"),
])
def test_a_refused_resume_changes_no_byte(tmp_path, text, error):
    path = tmp_path / "j.jsonl"
    path.write_text(text)
    if error:
        with pytest.raises(DataError, match=error):
            resume(path)
    else:
        resume(path)
    assert path.read_text() == text


def test_the_appender_mends_what_resume_read(tmp_path):
    path = tmp_path / "j.jsonl"
    rows = [row("a"), row("b"), row("a")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"format": "journey.te')
    done = resume(path)
    assert list(done) == ["a", "b"] and path.read_text().count("\n") == 3  # unchanged so far
    with JsonlAppender(path, kept=done):
        pass
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b"]


def test_a_lock_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "a" / "b" / "out.jsonl"
    with pytest.raises(RuntimeError), output_lock(out):
        assert out.parent.is_dir()
        raise RuntimeError("refused")
    assert not (tmp_path / "a").exists()


def full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    full_disk(monkeypatch)
    with pytest.raises(DataError, match=f"{tmp_path / 'x.json'}: cannot write \\(no space left"):
        write_text_atomic(tmp_path / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


class SafetensorError(Exception):
    """Named as safetensors' own error is (its Rust extension cannot be raised on demand)."""


@pytest.mark.parametrize("err, code", [
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
    (OSError(errno.ENOENT, "No such file or directory"), None),  # a missing input: its own message
    (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC),
    (SafetensorError("Error while deserializing header: HeaderTooLarge"), None),
    (RuntimeError("out of memory (os error 28)"), None),
])
def test_failed_write_tells_a_refused_write_from_other_errors(err, code):
    found = failed_write(err)
    assert (found.errno if found is not None else None) == code


def trees_file(path):
    t = Tree({"id": "x", "question": "1+1", "answer": "2"})
    t.add_child(0, text="The answer is 2.", verdict="correct", terminal=True, answer="2", correct=True)
    path.write_text(json.dumps(t.to_json()) + "\n")
    return path


# Every writer goes through write_text_atomic: a full disk is exit 1 naming the path, nothing at it.
@pytest.mark.parametrize("args", [
    ["problems", "--task", "arith", "--n", "3", "--out", "{d}/p.jsonl"],
    ["problems", "--from", "{d}/src.jsonl", "--format", "jsonl", "--out", "{d}/p.jsonl"],
    ["curate", "--problems", "{d}/src.jsonl", "--out", "{d}/p.jsonl"],
    ["show", "--trees", "{d}/t.jsonl", "--out", "{d}/p.jsonl"],
])
def test_writers_on_a_full_disk(tmp_path, monkeypatch, args):
    (tmp_path / "src.jsonl").write_text('{"id": "m1", "question": "What is $1+1$?", "answer": "2"}\n')
    trees_file(tmp_path / "t.jsonl")
    full_disk(monkeypatch)
    result = runner.invoke(app, [a.format(d=tmp_path) for a in args])
    assert result.exit_code == 1 and f"{tmp_path}/p.jsonl: cannot write" in " ".join(result.output.split())
    assert not (tmp_path / "p.jsonl").exists()


# An output that is an input is refused before anything is read into it or written (exit 1).
@pytest.mark.parametrize("args, error", [
    (["show", "--trees", "{d}/t.jsonl", "--out", "{d}/t.jsonl"], "is the --trees input"),
    (["eval-prm", "--trees", "{d}/t.jsonl", "--prm-model", "{d}/ck", "--out", "{d}/t.jsonl"], "is the --trees input"),
    (["eval-prm", "--trees", "{d}/t.jsonl", "--prm-model", "{d}/ck", "--out", "{d}/ck/prm.json"],
     "is inside the --prm-model folder"),
    (["run-tests", "--problems", "{d}/c.jsonl", "--solutions", "{d}/s.jsonl", "--out", "{d}/s.jsonl",
      "--overwrite"], "is the --solutions input"),
    (["gen-tests", "--problems", "{d}/c.jsonl", "--out", "{d}/c.jsonl", "--overwrite"], "is the --problems input"),
    (["train", "--stage", "sft", "--data", "{d}/data/sft.jsonl", "--model", "embedded", "--out", "{d}/data",
      "--overwrite"], "holds the --data"),
    (["train", "--stage", "sft", "--data", "{d}/data/sft.jsonl", "--model", "{d}/ck", "--out", "{d}/ck",
      "--overwrite"], "is the --model input"),
    (["train", "--stage", "sft", "--data", "{d}/data/sft.jsonl", "--model", "embedded", "--out", "{d}/other",
      "--overwrite"], "holds data files (rows.jsonl), not a checkpoint"),
])
def test_an_output_that_is_an_input_is_refused(tmp_path, args, error):
    trees_file(tmp_path / "t.jsonl")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "rows.jsonl").write_text("{}\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sft.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]}) + "\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "c1", "entry_point": "f", "solution": "def f(x):\n    return x\n",
                                                  "tests": [{"input": [1], "output": 1}]}) + "\n")
    (tmp_path / "s.jsonl").write_text(json.dumps({"id": "c1", "code": "def f(x):\n    return x\n"}) + "\n")
    before = snapshot(tmp_path)
    result = runner.invoke(app, [a.format(d=tmp_path) for a in args])
    assert result.exit_code == 1 and error in " ".join(result.output.split()), result.output
    assert snapshot(tmp_path) == before


def test_show_takes_the_lock(tmp_path):
    trees_file(tmp_path / "t.jsonl")
    with output_lock(tmp_path / "t.html"):
        result = runner.invoke(app, ["show", "--trees", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "t.html")])
    assert result.exit_code == 1 and "another journey run" in result.output
    assert not (tmp_path / "t.html").exists()


def code_problems(path):
    from journey.tasks.code import CodeTask

    path.write_text("".join(json.dumps(p.to_row()) + "\n" for p in CodeTask().generate(2, seed=2)))
    return path


def prm_rows(path):
    rows = [{"prompt": [{"role": "user", "content": "1 + 2 * 3"}], "steps": ["2 * 3 = 6", "1 + 6 = 7"],
             "labels": [1, 1], "step_delimiter": "\n"}] * 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# A real full disk (a 256 KiB tmpfs, filled): every command that writes there exits 1 with one
# line naming its output, and leaves the disk as it found it (no short file, no half folder).
@pytest.mark.parametrize("args, named", [
    (["train", "--stage", "sft", "--data", "{d}/sft.jsonl", "--out", "{disk}/ck", "--max-steps", "1"], "{disk}/ck"),
    (["train", "--stage", "prm", "--data", "{d}/prm.jsonl", "--out", "{disk}/ck", "--max-steps", "1"], "{disk}/ck"),
    (["eval-prm", "--trees", "{d}/t.jsonl", "--prm", "judge", "--prm-model", "embedded", "--out", "{disk}/m.json"],
     "{disk}/m.json"),
    (["gen-tests", "--problems", "{d}/c.jsonl", "--out", "{disk}/c.jsonl", "--n", "4", "--mutants", "2",
      "--max-new-tokens", "24", "--equivalence-inputs", "2"], "{disk}/c.jsonl"),
    (["selfplay", "--problems", "{d}/p.jsonl", "--test", "{d}/p.jsonl", "--out-dir", "{disk}/sp", "--depth", "2",
      "--max-steps", "1"], "{disk}/sp"),
])
def test_commands_on_a_real_full_disk(tmp_path, tiny_disk, args, named):
    from tests.helpers import fill, write_problems, write_sft_rows

    write_sft_rows(tmp_path / "sft.jsonl")
    prm_rows(tmp_path / "prm.jsonl")
    trees_file(tmp_path / "t.jsonl")
    code_problems(tmp_path / "c.jsonl")
    write_problems(tmp_path / "p.jsonl", n=2)
    fill(tiny_disk)
    before = snapshot(tiny_disk)
    result = runner.invoke(app, [a.format(d=tmp_path, disk=tiny_disk) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and named.format(disk=tiny_disk) in text, result.output
    assert "cannot write" in text and "no space left" in text, result.output
    assert snapshot(tiny_disk) == before and sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {f".x.json.{dead.pid}.tmp": False,  # a killed writer's: removed
                 f".x.json.{live.pid}.tmp": True,  # a writer still at work: kept
                 ".x.json.notapid.tmp": True,  # not our pattern
                 f".y.json.{dead.pid}.tmp": True,  # another file's
                 f"x.json.{dead.pid}.tmp": True}  # not hidden: not ours
        for name in names:
            (tmp_path / name).write_text("half")
        write_text_atomic(tmp_path / "x.json", "{}")
        assert {n: (tmp_path / n).exists() for n in names} == names
        assert (tmp_path / "x.json").read_text() == "{}"
    finally:
        live.kill()
        live.wait()


def killed_mid_run(cmd: list[str], out, env) -> None:
    """Start `cmd`, SIGKILL it once it holds the lock on `out` (its work under way), and wait."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = out.with_name(out.name + ".lock")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not lock.exists():
        time.sleep(0.01)
    time.sleep(0.3)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def curate_input(d):
    rows = [{"id": f"m{i}", "question": f"What is ${i}+{i}$?", "solution": f"So $\\boxed{{{2 * i}}}$."}
            for i in range(20000)]
    (d / "math.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_tests_input(d):
    from journey.tasks.code import CodeTask

    problems = CodeTask().generate(30, seed=1)
    (d / "cp.jsonl").write_text("".join(json.dumps(p.to_row()) + "\n" for p in problems))
    (d / "sol.jsonl").write_text("".join(json.dumps({"id": p.id, "code": p.meta["solution"]}) + "\n"
                                         for p in problems))


# kill -9 mid-run, then the same command again: it runs (no "the file exists"), and its output is
# the uninterrupted run's, byte for byte.
@pytest.mark.parametrize("setup, args", [
    (curate_input, ["curate", "--problems", "{d}/math.jsonl", "--out", "{out}"]),
    (run_tests_input, ["run-tests", "--problems", "{d}/cp.jsonl", "--solutions", "{d}/sol.jsonl", "--out", "{out}"]),
])
def test_killed_then_rerun_gives_the_uninterrupted_result(tmp_path, setup, args):
    import subprocess
    import sys
    from pathlib import Path

    setup(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = lambda out: [sys.executable, "-m", "journey.cli", *[a.format(d=tmp_path, out=out) for a in args]]  # noqa: E731
    killed, whole = tmp_path / "killed.jsonl", tmp_path / "whole.jsonl"
    killed_mid_run(cmd(killed), killed, env)
    assert not killed.exists()  # nothing at the final path
    again = subprocess.run(cmd(killed), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert subprocess.run(cmd(whole), env=env, capture_output=True).returncode == 0
    assert killed.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".killed", "killed"))) == ["killed.jsonl"]
