"""`journey distill`: curation reasons (table-driven), end to end on the embedded teacher through
the transformers backend and a local OpenAI-compatible server, resume, reformat, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from journey.cli import app
from journey.config import DistillConfig
from journey.models.embedded import EMBEDDED_PATH
from journey.stages.distill import REASONS, sample_verdict, show_prompts, teacher_messages
from journey.tasks import get_task
from journey.tasks.math import checker
from tests.openai_server import make_server

runner = CliRunner()
arith, math = get_task("arith"), get_task("math")
boxed_only = get_task("math", answers=("boxed",))
SOLVED = "2 + 3 = 5\n5 * 4 = 20\nThe answer is 20."


def cfg(**kw) -> DistillConfig:
    return DistillConfig(problems=Path("p.jsonl"), out_dir=Path("d"), teacher="embedded", **kw)


@pytest.mark.parametrize(
    "task, text, tokens, finish, flags, verdict",
    [
        (arith, SOLVED, 20, "eos", {}, "kept"),
        (arith, SOLVED, 64, "length", {}, "truncated"),
        (arith, SOLVED, 20, "eos", {"max_tokens": 10}, "too long"),
        (arith, SOLVED, 20, "eos", {"min_tokens": 30}, "too short"),
        (arith, "2 + 3 = 5\n这个答案是对的\n5 * 4 = 20\nThe answer is 20.", 20, "eos", {}, "wrong language"),
        (arith, "2 + 3 = 5\n5 * 4 = 20", 10, "eos", {}, "missing answer"),
        (arith, "2 + 3 = 5\n5 * 4 = 21\nThe answer is 21.", 20, "eos", {}, "wrong answer"),
        (arith, "2 + 3 = 5\nThe answer is 20.\nLet me also say hello.", 20, "eos", {}, "wrong format"),
        (math, "First, 5 * 4 = 20.\n\nSo the answer is $\\boxed{20}$.", 20, "eos", {}, "kept"),
        (math, "So the answer is $\\boxed 20$.", 20, "eos", {}, "kept"),
        (math, "Wait, $\\pi$ and $\\theta$ are Greek, so this is fine: \\boxed{20}", 20, "eos", {}, "kept"),
        (math, "So \\boxed{21}.", 20, "eos", {}, "wrong answer"),
        (math, "So the answer is 20.", 20, "eos", {}, "kept"),  # --answer-formats: boxed, hash, says
        (math, "5 * 4 = 20\n\n#### 20", 20, "eos", {}, "kept"),
        (boxed_only, "So the answer is 20.", 20, "eos", {}, "missing answer"),
        (math, "So \\boxed{20}.\n\nI hope this helps!", 20, "eos", {}, "wrong format"),
    ],
)
def test_each_sample_gets_the_first_reason_that_applies(task, text, tokens, finish, flags, verdict):
    got, why, _ = sample_verdict(task, "(2 + 3) * 4", "20", text, tokens, finish, cfg(**flags), set())
    assert got == verdict and (bool(why) == (verdict != "kept")), why


def test_duplicates_are_counted_after_the_first_kept_one():
    kept: set[str] = set()
    verdicts = [sample_verdict(arith, "(2 + 3) * 4", "20", t, 20, "eos", cfg(), kept)[0]
                for t in (SOLVED, "2 + 3 = 5\n5 * 4 = 21\nThe answer is 21.", SOLVED + "  ", SOLVED)]
    assert verdicts == ["kept", "wrong answer", "duplicate", "duplicate"]


def test_a_question_in_another_language_allows_answers_in_it():
    text = "2 + 3 = 5\n这个答案是对的\n5 * 4 = 20\nThe answer is 20."
    assert sample_verdict(arith, "计算 (2 + 3) * 4", "20", text, 20, "eos", cfg(), set())[0] == "kept"


def test_a_timed_out_check_is_a_wrong_answer_with_its_reason(monkeypatch):
    monkeypatch.setattr(checker(), "timeout", 1.0)
    verdict, why, _ = sample_verdict(math, "Q", "5", "So \\boxed{9^{9^{9^{9}}}}", 20, "eos", cfg(), set())
    assert verdict == "wrong answer" and why == "answer '9^{9^{9^{9}}}', expected '5' (timed out after 1 s)"


def test_prompts_are_published_and_fit_the_task():
    assert "\\boxed{}" in show_prompts("shipped", "math") and "The answer is N." in show_prompts("shipped", "arith")
    assert "{answer_format}" not in show_prompts("shipped", "math")
    assert teacher_messages(math, "Q", "SYS") == [{"role": "system", "content": "SYS"},
                                                  {"role": "user", "content": "Q"}]
    assert teacher_messages(math, "Q", None) == math.messages("Q")  # --prompt task
    result = runner.invoke(app, ["distill", "--show-prompt", "--task", "math"])
    assert result.exit_code == 0 and "# reformat prompt" in result.output and "\\boxed{}" in result.output


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    path = tmp_path_factory.mktemp("distill") / "p.jsonl"
    assert runner.invoke(app, ["problems", "--n", 3, "--seed", 21, "--out", str(path)]).exit_code == 0
    return path


def distill(problems, out, *flags):
    return runner.invoke(app, ["distill", "--teacher", "embedded", "--task", "arith", "--problems", str(problems),
                               "--out-dir", str(out), "--samples", 3, "--max-new-tokens", 96, "--prompt", "task",
                               *map(str, flags)])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def transformers_run(problems, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "d"
    first = distill(problems, out, "--limit", 1)
    assert first.exit_code == 0, first.output
    assert len(read_jsonl(out / "samples.jsonl")) == 1
    second = distill(problems, out)  # resumes: the first problem is not sampled again
    assert second.exit_code == 0, second.output
    return out, second.output


def test_end_to_end_on_the_embedded_teacher(transformers_run, problems):
    out, output = transformers_run
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "distill.json", "samples.jsonl", "sft.jsonl"]
    record = json.loads((out / "distill.json").read_text())
    s = record["stats"]
    assert s["problems"] == 3 and s["samples"] == 9 and record["this_run"]["problems_resumed"] == 1
    assert s["kept"] + sum(s["dropped"].values()) == 9 and list(s["dropped"]) == list(REASONS)
    journal = read_jsonl(out / "samples.jsonl")
    verdicts = [x["verdict"] for r in journal for x in r["samples"]]
    assert verdicts.count("kept") == s["kept"] and all(verdicts.count(k) == n for k, n in s["dropped"].items())
    assert s["tokens"]["samples"] == sum(x["tokens"] for r in journal for x in r["samples"]) > 0
    assert s["tokens"]["prompt"] > 0 and s["seconds"]["generation"] > 0
    rows = read_jsonl(out / "sft.jsonl")
    assert len(rows) == s["kept"] > 0
    task, gold = get_task("arith"), {r["id"]: r["gold"] for r in journal}
    for row in rows:  # TRL rows, each a kept, right answer
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert task.check_answer(task.extract_answer(assistant["content"]), gold[row["id"]])
    assert record["models"]["teacher"]["fingerprint"] and record["inputs"][str(problems)]
    assert "problems │ 3 (1 already done)" in " ".join(output.split())
    meta = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "samples"]


def test_rerun_writes_the_same_rows_without_the_teacher(transformers_run, problems, tmp_path):
    out, _ = transformers_run
    before = (out / "sft.jsonl").read_text()
    result = runner.invoke(app, ["distill", "--teacher", "no/such-model", "--task", "arith", "--problems",
                                 str(problems), "--out-dir", str(out), "--samples", 3, "--max-new-tokens", 96,
                                 "--prompt", "task"])
    assert result.exit_code == 1 and "different config (teacher 'embedded' -> 'no/such-model'" in result.output
    assert distill(problems, out).exit_code == 0 and (out / "sft.jsonl").read_text() == before


def test_the_openai_backend_distils_the_same_samples(transformers_run, problems, tmp_path, monkeypatch):
    srv = make_server("embedded", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{srv.server_address[1]}/v1")
        result = distill(problems, tmp_path / "d", "--backend", "openai")
        assert result.exit_code == 0, result.output
    finally:
        srv.shutdown()
    texts = lambda d: [[(x["text"], x["verdict"]) for x in r["samples"]]  # noqa: E731
                       for r in read_jsonl(d / "samples.jsonl")]
    assert texts(tmp_path / "d") == texts(transformers_run[0])
    record = json.loads((tmp_path / "d" / "distill.json").read_text())
    assert record["models"]["teacher"]["backend"] == "openai"


def test_reformat_asks_again_and_counts_what_it_keeps(problems, tmp_path):
    result = distill(problems, tmp_path / "d", "--reformat", "--limit", 2)
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "d" / "distill.json").read_text())["stats"]
    assert s["reformat"]["tried"] == s["kept"] > 0 and s["tokens"]["reformat"] > 0
    assert s["reformat"]["kept"] + s["reformat"]["discarded"] == s["reformat"]["tried"]
    samples = [x for r in read_jsonl(tmp_path / "d" / "samples.jsonl") for x in r["samples"] if x["verdict"] == "kept"]
    rows = read_jsonl(tmp_path / "d" / "sft.jsonl")
    assert [r["reformatted"] for r in rows] == [x["reformat_verdict"] == "kept" for x in samples]
    assert [r["messages"][1]["content"] for r in rows] == [x["reformatted"] or x["text"].strip() for x in samples]
    assert f"reformats kept / tried │ {s['reformat']['kept']} / {s['reformat']['tried']}" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--out-dir", "D"], "--teacher is required"),
        (["--teacher", "embedded", "--out-dir", "D"], "--problems is required"),
        (["--teacher", "embedded", "--problems", "P", "--out-dir", "D", "--backend", "tgi"], "--backend must be one of"),
        (["--teacher", "embedded", "--problems", "P", "--out-dir", "D", "--task", "chess"], "--task must be one of"),
        (["--teacher", "embedded", "--problems", "P", "--out-dir", "D", "--samples", "0"], "--samples must be >= 1"),
        (["--teacher", "embedded", "--problems", "P", "--out-dir", "D", "--prompt", "nope.md"], "--prompt nope.md: no such file"),
        (["--teacher", "embedded", "--problems", "P", "--out-dir", "OTHER"], "--out-dir OTHER: the folder holds other files"),
        (["--teacher", "./nowhere", "--problems", "P", "--out-dir", "D"], "--teacher ./nowhere: no such model directory"),
        # a real teacher keeps distill's defaults (our prompt, 8,192 new tokens): refused up front
        (["--teacher", "./teacher", "--problems", "P", "--out-dir", "D", "--task", "arith"], "the model's context is 4,096"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(tmp_path, monkeypatch, problems, flags, message):
    monkeypatch.chdir(tmp_path)
    if "./teacher" in flags:
        shutil.copytree(EMBEDDED_PATH, "teacher")  # the embedded policy, as any checkpoint folder
    Path("P").write_text(problems.read_text())
    Path("OTHER").mkdir()
    Path("OTHER/notes.txt").write_text("mine")
    result = runner.invoke(app, ["distill", *flags])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    assert Path("OTHER/notes.txt").read_text() == "mine" and not Path("D/sft.jsonl").exists()


@pytest.mark.slow
def test_trl_trains_on_the_rows(transformers_run, tmp_path):
    out, _ = transformers_run
    result = runner.invoke(app, ["train", "--stage", "sft", "--data", str(out / "sft.jsonl"),
                                 "--out", str(tmp_path / "ck"), "--max-steps", 2, "--batch-size", 4])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ck" / "config.json").is_file()


def test_cli_defaults_are_the_config_defaults():
    import dataclasses

    import typer.main

    from journey.config import CurateConfig, ImportConfig

    commands = typer.main.get_command(app).commands
    checked = 0
    for name, config in (("distill", DistillConfig), ("problems", ImportConfig), ("curate", CurateConfig)):
        defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
        if name == "problems":  # its other flags are for generating problems, not importing them
            defaults = {k: v for k, v in defaults.items() if k in ("question_key", "answer_key")}
        for param in commands[name].params:
            if param.name in defaults:
                assert param.default == defaults[param.name], (name, param.name)
                checked += 1
    assert checked == 22  # 17 + --ray, --ray-address, --workers, --gpus-per-worker, --answer-formats


@pytest.mark.slow  # a subprocess that loads torch and the teacher: ~40 s on 2 busy cores
def test_a_killed_run_keeps_finished_problems_and_resumes(problems, tmp_path):
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "journey.cli", "distill", "--teacher", "embedded", "--task", "arith",
           "--problems", str(problems), "--out-dir", str(out), "--samples", "3", "--max-new-tokens", "96",
           "--prompt", "task", "--batch-size", "3"]  # one problem per teacher call
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    journal, deadline = out / "samples.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (journal.exists() and journal.read_text().count("\n")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    kept = len(read_jsonl(journal))
    assert proc.returncode == 130 and 1 <= kept < 3, err
    assert f"{kept:,} finished problems are kept in {journal}" in " ".join(err.split())
    assert not (out / "sft.jsonl").exists() and not (out / "distill.json").exists()
    result = distill(problems, out, "--batch-size", 3)
    assert result.exit_code == 0, result.output
    assert f"problems │ 3 ({kept} already done)" in " ".join(result.output.split())
    assert [r["id"] for r in read_jsonl(journal)] == [r["id"] for r in read_jsonl(problems)]


def test_the_embedded_teacher_works_with_the_defaults(problems, tmp_path):
    """`journey distill --teacher embedded --problems P --out-dir D`: its own task (arith), the
    task's prompt (the only one it knows) and a budget inside its 4,096-token context."""
    out = tmp_path / "d"
    result = runner.invoke(app, ["distill", "--teacher", "embedded", "--problems", str(problems),
                                 "--out-dir", str(out), "--limit", "1", "--samples", "2"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "distill.json").read_text())["config"]
    assert (config["task"], config["prompt"], config["max_new_tokens"]) == ("arith", "task", 512)
    assert read_jsonl(out / "samples.jsonl")[0]["samples"][0]["verdict"] != "truncated"
    real = DistillConfig(problems=problems, out_dir=out, teacher="Qwen/QwQ-32B")
    assert (real.task, real.prompt, real.max_new_tokens) == ("math", "shipped", 8192)
