"""The shipped policy: a standard checkpoint, a lossless character tokenizer, a parseable first step."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from journey.models.base import Prefix, SamplingConfig
from journey.models.embedded import EMBEDDED_PATH, build_tokenizer, resolve_model
from journey.models.transformers_policy import TransformersPolicy
from journey.tasks.arith import STEP_RE, check_steps

TEXTS = [
    "(23 + 19) * 3 - 41",
    "Q: (1 + 2)\nA:",
    "Wait, 42 * 3 is 126, not 116. Let me go back to step 2.\n",
    "  two  spaces\n\nand blank lines  ",
]


def test_loads_as_a_standard_checkpoint():
    assert resolve_model("embedded") == str(EMBEDDED_PATH)
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_PATH)
    assert isinstance(model, LlamaForCausalLM)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 <= n_params <= 3e6
    size = sum(f.stat().st_size for f in EMBEDDED_PATH.iterdir())
    assert size <= 10 * 2**20


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trip_after_reload(text, tmp_path):
    shipped = AutoTokenizer.from_pretrained(EMBEDDED_PATH)
    ids = shipped(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert shipped.decode(ids) == text
    build_tokenizer().save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.decode(again(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_marks_the_assistant_turn():
    tok = AutoTokenizer.from_pretrained(EMBEDDED_PATH)
    messages = [{"role": "user", "content": "1 + 2"}, {"role": "assistant", "content": "1 + 2 = 3"}]
    enc = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(masked) == "1 + 2 = 3<|end|>"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>1 + 2<|end|><|assistant|>"


def test_greedy_first_step_is_a_parseable_reduction():
    policy = TransformersPolicy("embedded", sampling=SamplingConfig(temperature=0))
    question = "(23 + 19) * 3 - 41"
    [[step]] = policy.propose([Prefix([{"role": "user", "content": question}])], n=1)
    assert step.finish == "stop" and STEP_RE.match(step.text), step
    assert step.tokens == len(step.text) + 1 and step.logprob < 0
    assert check_steps(question, [step.text])[0].ok


# A model that is not there: one line naming the flag, nothing written. A name with no folder
# here is still looked up on the hub for real (offline in the tests: HF_HUB_OFFLINE=1).
@pytest.mark.parametrize("args, line", [
    (["train", "--stage", "sft", "--data", "{d}/sft.jsonl", "--out", "{d}/ck", "--model", "nope_ck"],
     "error: --model nope_ck: no folder nope_ck here, and not on the hub"),
    (["train", "--stage", "sft", "--data", "{d}/sft.jsonl", "--out", "{d}/ck", "--model", "org/nope"],
     "error: --model org/nope: no folder org/nope here, and not on the hub"),
    (["train", "--stage", "prm", "--data", "{d}/prm.jsonl", "--out", "{d}/ck", "--model", "nope_ck"],
     "error: --model nope_ck: no folder nope_ck here"),
    (["build-tree", "--problems", "{d}/p.jsonl", "--out", "{d}/t.jsonl", "--model", "nope_ck"],
     "error: --model nope_ck: no folder nope_ck here"),
    (["build-tree", "--problems", "{d}/p.jsonl", "--out", "{d}/t.jsonl", "--prm", "token", "--prm-model", "nope_ck"],
     "error: --prm-model nope_ck: no folder nope_ck here"),
    (["build-tree", "--problems", "{d}/p.jsonl", "--out", "{d}/t.jsonl", "--prm", "qwen", "--prm-model", "./nope"],
     "error: --prm-model ./nope: no such model directory"),
    (["eval", "--problems", "{d}/p.jsonl", "--out", "{d}/m.json", "--model", "org/nope"],
     "error: --model org/nope: no folder org/nope here"),
    (["distill", "--teacher", "nope_ck", "--problems", "{d}/p.jsonl", "--out-dir", "{d}/dd"],
     "error: --teacher nope_ck: no folder nope_ck here"),
])
def test_a_model_that_is_not_there_names_its_flag(tmp_path, args, line):
    from tests.helpers import run, write_sft_rows

    write_sft_rows(tmp_path / "sft.jsonl")
    row = {"prompt": [{"role": "user", "content": "1 + 2"}], "steps": ["1 + 2 = 3"], "labels": [1]}
    (tmp_path / "prm.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "question": "1 + 2", "answer": "3"}) + "\n")
    before = sorted(tmp_path.iterdir())
    result = run(*[a.format(d=tmp_path) for a in args])
    errors = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and errors[0].startswith(line), result.output
    assert "Traceback" not in result.output and sorted(tmp_path.iterdir()) == before
