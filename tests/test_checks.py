"""journey.checks: absurd flags are refused before any model loads, naming the flag and the limit
(memory estimated from the shapes: sequences x tokens x the smallest model's bytes per token)."""

import json

import pytest
from typer.testing import CliRunner

from journey.checks import TOKEN_BYTES, check_fits_memory, memory_bytes, sequence_bytes
from journey.cli import app

runner = CliRunner()
BIG = str(10**9)


def test_check_fits_memory_names_the_flag_and_the_most_that_fits():
    most = memory_bytes() // (512 * TOKEN_BYTES)
    check_fits_memory("width", most, 512 * TOKEN_BYTES, "samples")
    with pytest.raises(ValueError, match=f"--width {most + 1} needs at least .* at most {most:,} fit"):
        check_fits_memory("width", most + 1, 512 * TOKEN_BYTES, "samples")


QWEN_7B = {"num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
           "vocab_size": 152064, "torch_dtype": "bfloat16"}
EMBEDDED = {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "head_dim": 32, "vocab_size": 102,
            "dtype": "float32"}


# sequence_bytes(model, 1024): KV cache per token x tokens + one float32 logits row
@pytest.mark.parametrize("config, expected", [
    (QWEN_7B, 1024 * (2 * 28 * 4 * 128 * 2) + 152064 * 4),  # 59,328,512: head size 3584 / 28 = 128
    (EMBEDDED, 1024 * (2 * 4 * 4 * 32 * 4) + 102 * 4),  # 4,194,712: the floor's own model
    ({**QWEN_7B, "torch_dtype": "float32"}, 1024 * (2 * 28 * 4 * 128 * 4) + 152064 * 4),
    ({"text_config": QWEN_7B}, 1024 * (2 * 28 * 4 * 128 * 2) + 152064 * 4),  # a multimodal config
    ({**QWEN_7B, "vocab_size": None}, 1024 * TOKEN_BYTES),  # a size missing: the floor
    ("not json", 1024 * TOKEN_BYTES),
    (None, 1024 * TOKEN_BYTES),  # a folder without config.json (or a hub id): the floor
])
def test_sequence_bytes_reads_the_models_config(tmp_path, config, expected):
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    assert sequence_bytes(tmp_path, 1024) == expected
    assert sequence_bytes("Qwen/Qwen2.5-7B", 1024) == 1024 * TOKEN_BYTES


def test_a_big_model_is_refused_a_width_that_fits_only_the_smallest(tmp_path):
    from journey.config import BuildTreeConfig

    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "config.json").write_text(json.dumps(QWEN_7B))
    tokens = BuildTreeConfig.depth * BuildTreeConfig.max_step_tokens
    width = memory_bytes() // (tokens * TOKEN_BYTES) // 4  # fits 4 times over at the floor; 7B takes 14x
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "a", "question": "1+1", "answer": "2"}) + "\n")
    result = runner.invoke(app, ["build-tree", "--problems", str(p), "--out", str(tmp_path / "t.jsonl"),
                                 "--model", str(tmp_path / "big"), "--width", str(width)])
    assert result.exit_code == 1 and f"--width {width} needs at least" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "t.jsonl").exists()


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
