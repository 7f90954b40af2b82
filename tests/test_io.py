"""runtime/io.py: one writer per output (a lock taken over from a killed holder), a set of files
swapped whole, bad input refused with its file and line, write errors that name the path.

Full disks are real: a tiny tmpfs mounted for the test (the `tiny_disk` fixture, skipped where
mounting is not allowed).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journey.runtime.io import DataError, atomic_folder, output_lock, read_jsonl, recover_folder
from tests.helpers import ENV, GOOD_PROBLEM, JOURNEY, fill, lines, run, write_problems, write_rows

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


# ---------------------------------------------------------------- sets of files


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


# ---------------------------------------------------------------- bad input, with its place named


BAD_ROWS = {
    "null id": ({**GOOD_PROBLEM, "id": None}, ":1: 'id' must be a string, got NoneType null"),
    "number id": ({**GOOD_PROBLEM, "id": 7}, ":1: 'id' must be a string, got int 7"),
    "list id": ({**GOOD_PROBLEM, "id": ["a"]}, ":1: 'id' must be a string, got list"),
    "empty id": ({**GOOD_PROBLEM, "id": " "}, ":1: 'id' is empty"),
    "number question": ({**GOOD_PROBLEM, "question": 12}, ":1: 'question' must be a string, got int 12"),
    "null answer": ({**GOOD_PROBLEM, "answer": None}, ":1: 'answer' must be a string, got NoneType null"),
    "empty question": ({**GOOD_PROBLEM, "question": ""}, ":1: 'question' is empty"),
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
    problems.write_bytes(json.dumps(GOOD_PROBLEM).encode() + b'\n{"id": "b", "question": "\xff", "answer": "1"}\n')
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


def test_a_byte_order_mark_is_not_data(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_PROBLEM).encode() + b"\n")
    assert [row for _, row in read_jsonl(path)] == [GOOD_PROBLEM]
