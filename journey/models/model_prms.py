"""Model PRMs: step scores read from a neural reward model's logits, batched.

`token` — causal-LM PRMs in the Math-Shepherd style (peiyi9979/math-shepherd-mistral-7b-prm):
each step is followed by a tag (`ки`); the score of a step is the softmax over the logits of
the good and bad tokens (`+`, `-`) at its tag, taking the good one. Tag and tokens are
configurable. Input: `question step1 ки\\nstep2 ки` (Math-Shepherd's format).

`qwen` — Qwen2.5-Math-PRM style: the chat template with the system prompt "Please reason step
by step, and put your final answer within \\boxed{}.", the steps joined and ended by
`<extra_0>`, and a 2-way head whose softmax at each `<extra_0>` gives the step's score (column
1). Its remote code breaks on transformers >= 4.54, so we read the checkpoint with our own code:
`AutoModel` for the Qwen2 body (weights under `model.`), and the head (`score.0` Linear ->
ReLU -> `score.2` Linear to 2) loaded from the safetensors files by name. (vLLM's pooling
runner, `LLM(model, runner="pooling").reward(...)`, is the other way to read it on a GPU.)

Both score only the last step of each path (that is what tree search asks) and run all paths
of a call in batches. Verdict: score >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import torch

from journey.models.embedded import resolve_model
from journey.models.prm import PRM, StepScore
from journey.tasks.base import Task

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TokenPRM(PRM):
    """Math-Shepherd-style PRM read at a step tag (see module docstring)."""

    name = "token"

    def __init__(self, model: str, task: Task | None = None, tag: str = "ки", good: str = "+",
                 bad: str = "-", batch_size: int = 16):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(model)
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "right"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path).to(_device()).eval()
        self.tag, self.batch_size = tag, batch_size
        self.tag_id = self._single_id(tag)
        self.good_bad = [self._single_id(good), self._single_id(bad)]

    def _single_id(self, text: str) -> int:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == self.tok.unk_token_id:
            raise ValueError(f"the PRM's tokenizer does not have {text!r} as one token")
        return ids[0]

    def render(self, question: str, steps: list[str]) -> str:
        return f"{question} " + "\n".join(f"{s} {self.tag}" for s in steps)

    @torch.inference_mode()
    def score(self, questions, paths, answers=None) -> list[StepScore]:
        texts = [self.render(q, s) for q, s in zip(questions, paths)]
        out: list[StepScore] = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tok(texts[i : i + self.batch_size], return_tensors="pt", padding=True).to(_device())
            logits = self.model(**batch).logits  # (B, T, V)
            for row, ids in enumerate(batch["input_ids"]):
                at = (ids == self.tag_id).nonzero()[-1].item()  # the last step's tag
                p_good = torch.softmax(logits[row, at, self.good_bad].float(), -1)[0].item()
                out.append(StepScore(p_good, p_good >= 0.5, f"The reward model gives this step {p_good:.2f}."))
        return out


class QwenPRMHead(torch.nn.Module):
    """Qwen2.5-Math-PRM's head: Linear(h, h) -> ReLU -> Linear(h, 2), named score.0 / score.2."""

    def __init__(self, hidden: int):
        super().__init__()
        self.score = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.score(h)


def load_head_weights(path: Path) -> dict[str, torch.Tensor]:
    """The `score.*` tensors from a checkpoint's safetensors files."""
    from safetensors.torch import load_file

    weights = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        weights.update({k: v for k, v in load_file(f).items() if k.startswith("score.")})
    if not weights:
        raise ValueError(f"--prm-model {path}: no score.* head weights found (not a Qwen2.5-Math-PRM checkpoint?)")
    return weights


class QwenPRM(PRM):
    """Qwen2.5-Math-PRM style, read with our own code (see module docstring)."""

    name = "qwen"

    def __init__(self, model: str, task: Task | None = None, step_token: str = "<extra_0>", batch_size: int = 8):
        from transformers import AutoModel, AutoTokenizer

        path = Path(resolve_model(model))
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "right"
        self.body = AutoModel.from_pretrained(path).to(_device()).eval()
        self.head = QwenPRMHead(self.body.config.hidden_size)
        self.head.load_state_dict(load_head_weights(path))
        self.head.to(_device()).eval()
        self.step_token, self.batch_size = step_token, batch_size
        self.step_id = self.tok.convert_tokens_to_ids(step_token)
        if self.step_id is None or self.step_id == self.tok.unk_token_id:  # else scores read at <unk>
            raise ValueError(f"--prm-model {model}: the tokenizer has no {step_token!r} token "
                             "(not a Qwen2.5-Math-PRM checkpoint?)")

    def render(self, question: str, steps: list[str]) -> str:
        messages = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": question},
                    {"role": "assistant", "content": self.step_token.join(steps) + self.step_token}]
        return self.tok.apply_chat_template(messages, tokenize=False)

    @torch.inference_mode()
    def score(self, questions, paths, answers=None) -> list[StepScore]:
        texts = [self.render(q, s) for q, s in zip(questions, paths)]
        out: list[StepScore] = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tok(texts[i : i + self.batch_size], return_tensors="pt", padding=True,
                             add_special_tokens=False).to(_device())
            hidden = self.body(**batch).last_hidden_state  # (B, T, h)
            for row, ids in enumerate(batch["input_ids"]):
                at = (ids == self.step_id).nonzero()[-1].item()
                p = torch.softmax(self.head(hidden[row, at].float()), -1)[1].item()
                out.append(StepScore(p, p >= 0.5, f"The reward model gives this step {p:.2f}."))
        return out
