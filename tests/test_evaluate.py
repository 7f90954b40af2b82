"""stages/evaluate.py: eval's metrics on hand-built generations, sample-pairs' pairs, both commands end
to end, and both resuming per problem after a kill."""

import json
import shutil
from pathlib import Path

import pytest

from journey.models.base import Proposal
from journey.stages.evaluate import draw_pairs, score
from journey.tasks import get_task
from journey.tasks.base import Problem
from tests.helpers import lines, run, write_problems


def G(text, tokens=10):
    return Proposal(text, tokens, -1.0, "eos")


def test_score_on_hand_built_generations():
    task = get_task("arith")
    problems = [Problem("a", "1 + 2", "3"), Problem("b", "2 * 3", "6")]
    greedy = [G("1 + 2 = 3\nThe answer is 3.", 20), G("2 * 3 = 5\nWait, 2 * 3 is 6, not 5.\nThe answer is 6.", 40)]
    samples = [[G("The answer is 3."), G("The answer is 4."), G("The answer is 4."), G("x")],
               [G("The answer is 6."), G("The answer is 6."), G("The answer is 7."), G("The answer is 6.")]]
    m, records = score(task, problems, greedy, samples)
    assert m["accuracy"] == 1.0 and m["accuracy_se"] == 0.0
    assert m["maj@4"] == 0.5  # a: majority 4 (wrong); b: majority 6 (right)
    assert m["pass@1"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert m["pass@4"] == 1.0
    assert m["mean_tokens"] == 30.0
    assert m["reflection_words_per_answer"]["Wait"] == 0.5
    assert records[1]["answer"] == "6" and records[0]["sample_answers"][3] is None


def test_draw_pairs_pairs_right_with_wrong():
    import random

    task = get_task("arith")
    p = Problem("a", "1 + 2", "3")
    texts = ["The answer is 3.", "The answer is 3.", "1 + 2 = 3\nThe answer is 3.", "The answer is 4.", "oops"]
    right = [task.check_answer(task.extract_answer(t), p.answer) for t in texts]
    pairs = draw_pairs(task, p, texts, right, pairs=5, rng=random.Random(0))
    assert len(pairs) == 1  # two distinct right texts; one real wrong answer ("oops" states none)
    assert all(r["rejected"][0]["content"] == "The answer is 4." for r in pairs)
    for row in pairs:
        assert task.check_answer(task.extract_answer(row["chosen"][0]["content"]), "3")
        assert not task.check_answer(task.extract_answer(row["rejected"][0]["content"]), "3")


def test_eval_and_sample_pairs_cli(tmp_path):
    problems = tmp_path / "p.jsonl"
    assert run("problems", "--n", 12, "--seed", 4, "--out", problems).exit_code == 0
    metrics = tmp_path / "metrics.json"
    result = run("eval", "--model", "embedded", "--problems", problems, "-k", 3, "--out", metrics)
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    assert m["problems"] == 12 and 0 <= m["accuracy"] <= 1 and "maj@3" in m and m["pass@3"] >= m["pass@1"]
    assert len((tmp_path / "metrics.generations.jsonl").read_text().splitlines()) == 12
    pairs = tmp_path / "pairs.jsonl"
    result = run("sample-pairs", "--model", "embedded", "--problems", problems, "--samples", 8, "--out", pairs)
    assert result.exit_code == 0, result.output
    task = get_task("arith")
    golds = {json.loads(line)["id"]: json.loads(line)["answer"] for line in problems.read_text().splitlines()}
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows
    for r in rows:
        assert task.check_answer(task.extract_answer(r["chosen"][0]["content"]), golds[r["id"]])
        assert not task.check_answer(task.extract_answer(r["rejected"][0]["content"]), golds[r["id"]])


def test_eval_bad_input(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "question": "1"}\n')
    result = run("eval", "--model", "embedded", "--problems", problems, "--out", tmp_path / "m.json")
    assert result.exit_code == 1 and "p.jsonl:1: missing 'answer'" in result.output
    result = run("eval", "--model", tmp_path / "none", "--problems", problems, "--out", tmp_path / "m.json")
    assert result.exit_code == 1
    assert not (tmp_path / "m.json").exists()


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
