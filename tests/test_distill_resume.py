"""journey.stages.distill: a refused rerun writes, creates and removes nothing (the finished folder
stays byte for byte), and a resumed run's distill.json differs from an uninterrupted one's only
in `created`, `argv`, timings and `this_run`."""

import json

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.config import DistillConfig
from journey.runtime.io import problem_sha256
from journey.stages.distill import FORMAT, distill_content, settled, summarize, system_prompt
from journey.tasks.base import Problem

runner = CliRunner()
PROBLEM = Problem("arith-0", "What is 2 + 3?", "5")


def finished_folder(tmp_path):
    """A distill folder as a finished run leaves it (journal row made with these flags)."""
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps(PROBLEM.to_row()) + "\n")
    out = tmp_path / "d"
    out.mkdir()
    cfg = DistillConfig(problems=problems, out_dir=out, teacher="embedded", task="arith", prompt="task",
                        samples=1, max_new_tokens=96)
    content = distill_content(cfg, system_prompt("task", "arith"))
    row = {"format": FORMAT, "id": PROBLEM.id, "problem_sha256": problem_sha256(PROBLEM), "config": content,
           "question": PROBLEM.question, "gold": PROBLEM.answer, "prompt_tokens": 10, "seconds": 0.1,
           "samples": [{"text": "2 + 3 = 5\nThe answer is 5.", "tokens": 9, "finish": "stop", "answer": "5",
                        "verdict": "kept", "why": ""}]}
    (out / "samples.jsonl").write_text(json.dumps(row) + "\n")
    for name in ("sft.jsonl", "distill.json", "README.md"):
        (out / name).write_text(f"finished {name}\n")
    return problems, out


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, error", [
    (["--max-new-tokens", "64"], "different config"),
    (["--teacher", "./nope"], "different config"),  # the config check comes first; the old run deleted files
    (["--task", "math"], "different config"),
    ("long problem", "--max-new-tokens"),  # a problem appended that does not fit the context
    ("notes in the folder", "holds other files"),
])
def test_a_refused_rerun_keeps_the_finished_folder(tmp_path, change, error):
    problems, out = finished_folder(tmp_path)
    args = ["distill", "--teacher", "embedded", "--task", "arith", "--prompt", "task", "--problems", str(problems),
            "--out-dir", str(out), "--samples", "1", "--max-new-tokens", "96"]
    if change == "long problem":
        with problems.open("a") as fh:
            fh.write(json.dumps({"id": "long", "question": "1 + " * 3000 + "1", "answer": "3001"}) + "\n")
    elif change == "notes in the folder":
        (out / "notes.txt").write_text("mine")
    else:
        args += change
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and error in " ".join(result.output.split()), result.output
    assert snapshot(tmp_path) == before


def test_a_refused_run_creates_no_folder(tmp_path):
    problems, _ = finished_folder(tmp_path)
    result = runner.invoke(app, ["distill", "--teacher", str(tmp_path / "nope"), "--task", "arith", "--prompt", "task",
                                 "--problems", str(problems), "--out-dir", str(tmp_path / "new" / "d")])
    assert result.exit_code == 1 and "--teacher" in result.output
    assert not (tmp_path / "new").exists()


def test_distill_json_keeps_what_a_resume_changes_apart():
    rec = {"samples": [{"tokens": 3, "verdict": "kept"}], "prompt_tokens": 2, "seconds": 1.0}
    whole, resumed = summarize([rec, rec], 0, 9.0), summarize([rec, rec], 1, 2.0)
    assert whole != resumed and settled(whole) == settled(resumed)
    assert "problems_resumed" not in settled(whole) and settled(whole)["seconds"] == {"generation": 2.0}
