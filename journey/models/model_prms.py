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
ReLU -> `score.2` Linear to 2) read tensor by tensor with safetensors' `safe_open` from only
the shards that hold it (a 7B PRM's shards are ~4 GB each; its head is 50 MB). A hub id
(`Qwen/Qwen2.5-Math-PRM-7B`) is fetched into the Hugging Face cache first (`checkpoint_folder`;
with HF_HUB_OFFLINE=1 only the cache is read). On a GPU, vLLM's pooling runner is the other way
to read it: `LLM(model, runner="pooling").encode(prompts, pooling_task="token_classify")`
gives a `[tokens, 2]` tensor per prompt (vLLM 0.33 has no `.reward(...)`). journey reads it
with transformers instead, so it sits beside a vLLM policy in one process without a second
engine claiming its own share of the GPU.

Both load on the CPU in the dtype they were trained in (`load_dtype`: on a GPU the checkpoint's
16-bit dtype, else bfloat16; float32 on the CPU), check that they fit on `device` (default:
"cuda" when there is one), and only then move there: next to a vLLM policy, the GPU has only
what vLLM's --gpu-memory-utilization leaves, and a PRM that does not fit is refused with what
to change (`check_room`, which counts the weights and a batch) rather than failing with CUDA
out-of-memory. Both score only the last step of each path (that is what tree search asks), in
batches of at most `batch_tokens` tokens (rows x the longest row, `token_batches`; memory grows
with tokens, not rows), and read the model only where they must: the token PRM runs the body
and applies the LM head to one position per row (not the whole vocabulary at every position),
the qwen PRM its head to one position per row. Verdict: score >= 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from journey.models.base import token_batches
from journey.models.embedded import resolve_model
from journey.models.prm import PRM, StepScore
from journey.models.transformers_policy import check_room, load_dtype
from journey.tasks.base import Task

DEFAULT_BATCH_TOKENS = 16384  # tokens per forward of a model PRM or a judge (--prm-batch-tokens)
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


# What a hub snapshot needs for the PRMs read here: config, tokenizer, safetensors weights.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_folder(model: str) -> Path:
    """A local folder holding `model`: itself if it is a folder (or `embedded`), else the hub
    id's snapshot in the Hugging Face cache, downloaded there first unless HF_HUB_OFFLINE=1."""
    path = Path(resolve_model(model)).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=CHECKPOINT_FILES))
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"--prm-model {model}: not a local folder, and not on the hub or in its "
                         f"cache ({first})") from None


class TokenPRM(PRM):
    """Math-Shepherd-style PRM read at a step tag (see module docstring)."""

    name = "token"

    def __init__(self, model: str, task: Task | None = None, tag: str = "ки", good: str = "+",
                 bad: str = "-", batch_tokens: int = DEFAULT_BATCH_TOKENS, device: str | None = None,
                 vllm_share: float | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(model)  # a hub id is left to transformers (no head to read by hand)
        self.device = device or default_device()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "right"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        dtype = load_dtype(path, self.device)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()  # on the CPU
        check_room(self.model, self.device, f"--prm-model {model}", vllm_share, batch_tokens)
        self.model.to(self.device)
        self.tag, self.batch_tokens = tag, batch_tokens
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
    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        texts = [self.render(q, s) for q, s in zip(questions, paths)]
        out: list[StepScore | None] = [None] * len(texts)
        for idx, batch in batches_by_tokens(self.tok, texts, self.batch_tokens, self.device, True):
            hidden = self.model.base_model(**batch, use_cache=False).last_hidden_state  # (B, T, h)
            at = last_position(batch["input_ids"], self.tag_id)  # (B,) the last step's tag
            rows = hidden[torch.arange(len(idx), device=hidden.device), at]  # (B, h)
            logits = self.model.get_output_embeddings()(rows)[:, self.good_bad].float()  # (B, 2)
            for i, p_good in zip(idx, torch.softmax(logits, -1)[:, 0].tolist()):
                out[i] = StepScore(p_good, p_good >= 0.5, f"The reward model gives this step {p_good:.2f}.")
        return out



def batches_by_tokens(tok, texts: list[str], budget: int, device: str, special: bool):
    """(indices, tokenized right-padded batch on `device`) for `texts` in batches of at most
    `budget` tokens (`token_batches`); `special`: the tokenizer adds its special tokens."""
    lengths = [len(x) for x in tok(texts, add_special_tokens=special)["input_ids"]]
    for idx in token_batches(lengths, budget):
        batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=special)
        yield idx, batch.to(device)


def last_position(ids: torch.Tensor, token: int) -> torch.Tensor:
    """(B,) the last position of `token` in each row of `ids` (B, T) (a ValueError without one)."""
    hits = ids == token
    if not bool(hits.any(-1).all()):
        raise ValueError("a PRM input lost its step tag (cut by the tokenizer?)")
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return torch.where(hits, positions, -1).max(-1).values


class QwenPRMHead(torch.nn.Module):
    """Qwen2.5-Math-PRM's head: Linear(h, h) -> ReLU -> Linear(h, 2), named score.0 / score.2."""

    def __init__(self, hidden: int):
        super().__init__()
        self.score = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.score(h)

    @classmethod
    def from_weights(cls, weights: dict[str, torch.Tensor]) -> QwenPRMHead:
        """The head, sized and filled from its `score.*` tensors (float32)."""
        head = cls(weights["score.0.weight"].shape[1])
        head.load_state_dict(weights)
        return head


def load_head_weights(path: Path) -> dict[str, torch.Tensor]:
    """The `score.*` tensors of a checkpoint folder, read one by one (`safe_open`), never a
    whole shard. A sharded checkpoint's `model.safetensors.index.json` says which shards hold
    them, and only those are opened; otherwise each file's header is read for their names."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]  # tensor name -> shard file
        where = {k: path / f for k, f in weight_map.items() if k.startswith("score.")}
    else:
        where = {}
        for f in sorted(path.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as shard:
                where |= {k: f for k in shard.keys() if k.startswith("score.")}
    if not where:
        raise ValueError(f"--prm-model {path}: no score.* head weights found (not a Qwen2.5-Math-PRM checkpoint?)")
    weights = {}
    for f in sorted(set(where.values())):
        with safe_open(str(f), framework="pt") as shard:
            weights |= {k: shard.get_tensor(k) for k, g in where.items() if g == f}
    return weights


class QwenPRM(PRM):
    """Qwen2.5-Math-PRM style, read with our own code (see module docstring)."""

    name = "qwen"

    def __init__(self, model: str, task: Task | None = None, step_token: str = "<extra_0>",
                 batch_tokens: int = DEFAULT_BATCH_TOKENS, device: str | None = None,
                 vllm_share: float | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = checkpoint_folder(model)
        self.device = device or default_device()
        self.head = QwenPRMHead.from_weights(load_head_weights(path))
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "right"
        self.step_token, self.batch_tokens = step_token, batch_tokens
        self.step_id = self.tok.convert_tokens_to_ids(step_token)
        if self.step_id is None or self.step_id == self.tok.unk_token_id:  # else scores read at <unk>
            raise ValueError(f"--prm-model {model}: the tokenizer has no {step_token!r} token "
                             "(not a Qwen2.5-Math-PRM checkpoint?)")
        self.body = AutoModel.from_pretrained(path, dtype=load_dtype(str(path), self.device)).eval()  # on the CPU
        check_room(torch.nn.ModuleList([self.body, self.head]), self.device, f"--prm-model {model}", vllm_share,
                   batch_tokens, config=self.body.config)
        self.body.to(self.device)
        self.head.to(self.device).eval()

    def render(self, question: str, steps: list[str]) -> str:
        return qwen_prm_text(self.tok, self.step_token, question, steps)

    @torch.inference_mode()
    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        texts = [self.render(q, s) for q, s in zip(questions, paths)]
        out: list[StepScore | None] = [None] * len(texts)
        for idx, batch in batches_by_tokens(self.tok, texts, self.batch_tokens, self.device, False):
            hidden = self.body(**batch, use_cache=False).last_hidden_state  # (B, T, h)
            at = last_position(batch["input_ids"], self.step_id)
            rows = hidden[torch.arange(len(idx), device=hidden.device), at].float()  # (B, h)
            for i, p in zip(idx, torch.softmax(self.head(rows), -1)[:, 1].tolist()):
                out[i] = StepScore(p, p >= 0.5, f"The reward model gives this step {p:.2f}.")
        return out


def qwen_prm_text(tok, step_token: str, question: str, steps: list[str]) -> str:
    """A path as Qwen2.5-Math-PRM reads it: its system prompt, the question, and the steps
    joined and ended by `step_token`, through the chat template."""
    messages = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": question},
                {"role": "assistant", "content": step_token.join(steps) + step_token}]
    return tok.apply_chat_template(messages, tokenize=False)
