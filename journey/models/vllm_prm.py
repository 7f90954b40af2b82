"""`--prm qwen --prm-backend vllm`: Qwen2.5-Math-PRM on vLLM's pooling runner, in this process.

    journey build-tree --backend vllm --prm qwen --prm-model Qwen/Qwen2.5-Math-PRM-7B \\
        --prm-backend vllm --gpu-memory-utilization 0.6 --prm-gpu-memory-utilization 0.3 ...

vLLM serves the checkpoint as `Qwen2ForProcessRewardModel` (its own code, so the remote code
that breaks on new transformers is never run) with a token-classify pooler that reads the
2-way head at every step tag (`STEP` pooling; vLLM's default step tag is id 151651,
`<extra_0>` in Qwen's vocabulary) and applies softmax. journey asks for it as vLLM 0.33 spells
it: `LLM(model, runner="pooling", gpu_memory_utilization=share)` and `llm.encode(prompts,
pooling_task="token_classify")`; each output's `.outputs.data` is a `[steps, 2]` tensor of
probabilities, and the last step's score is its last row, column 1 (the same number the
transformers reader `QwenPRM` computes). The engine takes `share` of the GPU for weights and
activations, beside a vLLM policy's own share: the two shares must add up to at most 1.

The prompt is rendered as `QwenPRM` renders it and sent as token ids without special tokens
(the chat template holds them). A reply with a row count other than the prompt's step tags
(another pooler, or a checkpoint whose step tag is not vLLM's) is an error, not a guess.
Not run in CI (no GPU): tests/test_gpu_path.py drives it against a stand-in of vLLM's API.
"""

from __future__ import annotations

import math

from journey.models.base import PRM, StepScore
from journey.tasks.base import Task

STEP_TOKEN = "<extra_0>"


class VLLMQwenPRM(PRM):
    """Qwen2.5-Math-PRM through `vllm.LLM(runner="pooling").encode` (see module docstring)."""

    name = "qwen"

    def __init__(self, model: str, task: Task | None = None, gpu_memory_utilization: float = 0.25):
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError("--prm-backend vllm needs vLLM: pip install 'journey[vllm]' (on a GPU machine)") from None
        from journey.models.embedded import resolve_model

        self.llm = LLM(resolve_model(model), runner="pooling", gpu_memory_utilization=gpu_memory_utilization)
        self.tok = self.llm.get_tokenizer()
        self.step_id = self.tok.convert_tokens_to_ids(STEP_TOKEN)
        if self.step_id is None or self.step_id == self.tok.unk_token_id:
            raise ValueError(f"--prm-model {model}: the tokenizer has no {STEP_TOKEN!r} token "
                             "(not a Qwen2.5-Math-PRM checkpoint?)")

    def render(self, question: str, steps: list[str]) -> str:
        from journey.models.model_prms import qwen_prm_text

        return qwen_prm_text(self.tok, STEP_TOKEN, question, steps)

    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        ids = [self.tok.encode(self.render(q, s), add_special_tokens=False) for q, s in zip(questions, paths)]
        outputs = self.llm.encode([{"prompt_token_ids": x} for x in ids], pooling_task="token_classify",
                                  use_tqdm=False)
        out = []
        for x, o in zip(ids, outputs):
            rows = o.outputs.data.tolist()  # [steps, 2]
            if len(rows) != x.count(self.step_id):
                raise ValueError(f"vLLM's pooler gave {len(rows)} rows for a path with {x.count(self.step_id)} "
                                 f"step tags; is its step tag {STEP_TOKEN!r} (id {self.step_id})?")
            p = last_step_probability(rows[-1])
            out.append(StepScore(p, p >= 0.5, f"The reward model gives this step {p:.2f}."))
        return out


def last_step_probability(row: list[float]) -> float:
    """P(right) from a step's two values: probabilities as vLLM's pooler gives them (softmax
    on), or logits (softmax off in a pooler config), told apart by whether they sum to 1.

    [0.2, 0.8] -> 0.8; [0.0, 0.0] -> 0.5
    """
    if all(0.0 <= v <= 1.0 for v in row) and abs(sum(row) - 1.0) < 1e-3:
        return float(row[1])
    top = max(row)
    e = [math.exp(v - top) for v in row]
    return e[1] / sum(e)
