"""journey.checks: absurd flags are refused before any model loads, naming the flag and the limit
(memory estimated from the shapes: sequences x tokens x the smallest model's bytes per token)."""

import json

import pytest
from typer.testing import CliRunner

from journey.checks import TOKEN_BYTES, check_fits_memory, memory_bytes
from journey.cli import app

runner = CliRunner()
BIG = str(10**9)


def test_check_fits_memory_names_the_flag_and_the_most_that_fits():
    most = memory_bytes() // (512 * TOKEN_BYTES)
    check_fits_memory("width", most, 512 * TOKEN_BYTES, "samples")
    with pytest.raises(ValueError, match=f"--width {most + 1} needs at least .* at most {most:,} fit"):
        check_fits_memory("width", most + 1, 512 * TOKEN_BYTES, "samples")


@pytest.mark.parametrize("args, error", [
    (["build-tree", "--problems", "{p}", "--out", "{d}/t.jsonl", "--width", "100000"], "--width 100000 needs"),
    (["build-tree", "--problems", "{p}", "--out", "{d}/t.jsonl", "--prm", "rollout", "--rollouts", BIG],
     f"--rollouts {BIG} needs"),
    (["eval", "--model", "embedded", "--problems", "{p}", "--out", "{d}/m.json", "--samples", BIG], "--samples"),
    (["sample-pairs", "--model", "embedded", "--problems", "{p}", "--out", "{d}/m.jsonl", "--samples", BIG],
     "--samples"),
    (["distill", "--teacher", "embedded", "--problems", "{p}", "--out-dir", "{d}/x", "--samples", BIG], "--samples"),
    (["selfplay", "--problems", "{p}", "--test", "{p}", "--out-dir", "{d}/sp", "--pair-samples", BIG],
     "--pair-samples"),
    (["selfplay", "--problems", "{p}", "--test", "{p}", "--out-dir", "{d}/sp", "--eval-samples", BIG],
     "--eval-samples"),
    (["problems", "--task", "arith", "--n", BIG, "--out", "{d}/x.jsonl"], f"--n {BIG} needs"),
    (["gen-tests", "--problems", "{p}", "--out", "{d}/x.jsonl", "--n", BIG], "--n"),
    (["problems", "--from", "{p}", "--format", "jsonl", "--n", "5", "--out", "{d}/x.jsonl"], "--n is for generated"),
    (["build-tree", "--problems", "{p}", "--out", "{d}/t.jsonl", "--ray", "--gpus-per-worker", "inf"],
     "--gpus-per-worker must be a finite"),
    (["build-tree", "--problems", "{p}", "--out", "{d}/t.jsonl", "--prm", "trained"], "--prm trained needs --prm-model"),
    (["selfplay", "--problems", "{p}", "--test", "{p}", "--out-dir", "{d}/sp", "--prm", "trained"],
     "--prm trained needs --prm-model"),
])
def test_absurd_flags_are_refused_before_anything_loads(tmp_path, args, error):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "a", "question": "1+1", "answer": "2"}) + "\n")
    result = runner.invoke(app, [a.format(p=p, d=tmp_path) for a in args])
    assert result.exit_code == 1 and error in " ".join(result.output.split()), result.output
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.jsonl"]  # nothing created
