"""config.py: every numeric flag's check names the flag, and the CLI's defaults are the configs' defaults."""

import pytest

from tests.helpers import run, write_problems, write_sft_rows

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
    data = write_sft_rows(tmp_path / "d.jsonl")
    result = run("train", "--stage", "sft", "--data", data, "--out", tmp_path / "ck", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "ck").exists()


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
