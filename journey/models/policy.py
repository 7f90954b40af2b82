"""Policies: models that propose the next reasoning step (or a whole solution) for many prompts.

The interface is one batched call, `propose(prefixes, n)`: for every prefix (a question's
messages, the steps so far, and a seed) `n` candidate next steps, each with its text, token
count, summed log-prob and why it ended. Search hands a whole depth of a whole batch of trees
to one call; a backend chunks it as it likes.

Sampling is seeded per row, not per batch: candidate j of a prefix with seed s is drawn from
its own `torch.Generator` seeded from (s, j). A prefix therefore gets the same candidates
whatever else shares its batch, which is what lets `build-tree` resume a killed run and write
exactly what an uninterrupted run would (up to float noise from different padding). The n
samples of a prompt share one prefill (its KV cache is computed once and copied).
Backends: `TransformersPolicy` here, `OpenAIPolicy` (openai_policy.py), `VLLMPolicy`
(vllm_policy.py); `journey.models.registry.load_policy(model, delimiter, sampling, backend)`
picks one by name. This module imports none of the other backends (they import it).

    from journey.models.policy import Prefix, SamplingConfig, TransformersPolicy
    policy = TransformersPolicy("embedded", delimiter="\\n", sampling=SamplingConfig(max_step_tokens=48))
    policy.propose([Prefix([{"role": "user", "content": "(2 + 3) * 4 - 5"}], [], seed=0)], n=3)
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from journey.config import SamplingConfig
from journey.models.embedded import resolve_model

log = logging.getLogger(__name__)

Finish = Literal["stop", "eos", "length"]


@dataclass
class Prefix:
    """A node to extend: the question as chat messages, the steps so far, and its seed."""

    messages: list[dict]
    steps: list[str] = field(default_factory=list)
    seed: int = 0


@dataclass
class Proposal:
    """One generated step (or completion): its text without the delimiter, and its costs."""

    text: str
    tokens: int
    logprob: float
    finish: Finish
    token_logprobs: list[float] = field(default_factory=list, repr=False, compare=False)


def row_seed(seed: int, j: int) -> int:
    """The seed of candidate `j` of a prefix seeded `seed` (a fixed mix, stable across runs)."""
    return (seed * 1_000_003 + j * 7_919 + 12_345) % (2**63 - 1)


class Policy(ABC):
    """Proposes next steps for many prefixes in one call."""

    delimiter: str
    tokenizer: object  # a transformers tokenizer with the model's chat template
    context_length: int | None = None  # the longest sequence the model takes; None: unknown

    def prompt_tokens(self, prefix: Prefix) -> int:
        """How many tokens the rendered prompt of `prefix` takes."""
        return len(self.tokenizer(self.render(prefix), add_special_tokens=False)["input_ids"])

    def check_fits(self, prefixes: list[Prefix], new_tokens: int, where: list[str], what: str) -> None:
        """ValueError for the first prompt that leaves fewer than `new_tokens` of the model's
        context (naming `where[i]`, e.g. "problems.jsonl:7", and `what` reserves the room), so a
        too-long input is refused before any generation rather than run out of memory."""
        if not self.context_length:
            return
        for prefix, place in zip(prefixes, where):
            # Cheap bound first: char-level and byte-level tokenizers make at most one token
            # per UTF-8 byte (a few more for specials), so most prompts need no tokenizing.
            if len(self.render(prefix).encode()) + 8 + new_tokens <= self.context_length:
                continue
            n = self.prompt_tokens(prefix)
            if n + new_tokens > self.context_length:
                raise ValueError(
                    f"{place}: the prompt is {n:,} tokens and {what} needs {new_tokens:,} more; "
                    f"the model's context is {self.context_length:,} tokens")
    sampling: SamplingConfig  # read at each call (a judge sets temperature 0 for its calls)

    def render(self, prefix: Prefix) -> str:
        """The prompt text: the chat template's assistant turn, continued by the steps so far."""
        head = self.tokenizer.apply_chat_template(
            prefix.messages, tokenize=False, add_generation_prompt=True
        )
        return head + "".join(s + self.delimiter for s in prefix.steps)

    @abstractmethod
    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        """For each prefix, `n` candidate next steps (ending at the delimiter, or at EOS)."""

    @abstractmethod
    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        """For each prefix, `n` whole continuations up to EOS (for eval and sampling pairs)."""


class SeededSampler:
    """A logits processor that samples each row from its own generator.

    It returns logits that are -inf except at the chosen token, so `generate` runs greedy on
    top of it; the chosen token's log-prob (under temperature and top-p) is kept per step.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p
        self.logprobs: list[torch.Tensor] = []  # one (B,) tensor per generated position

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float().cpu()  # (B, V)
        if self.temperature == 0:
            choice = scores.argmax(-1, keepdim=True)
            logp = torch.log_softmax(scores, -1)
        else:
            logp = torch.log_softmax(scores / self.temperature, -1)
            choice = self._sample(logp.exp())
        self.logprobs.append(logp.gather(1, choice).squeeze(1))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, choice, 0.0)
        return out.to(input_ids.device)

    def _sample(self, probs: torch.Tensor) -> torch.Tensor:
        """Top-p sampling by inverse CDF, one uniform draw per row from that row's generator."""
        sorted_p, order = probs.sort(-1, descending=True)
        cum = sorted_p.cumsum(-1)
        keep = (cum - sorted_p) < self.top_p  # the smallest prefix whose mass reaches top_p
        sorted_p = sorted_p * keep
        cum = sorted_p.cumsum(-1)
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
        target = (u * cum[:, -1].double()).unsqueeze(1).float()
        idx = torch.searchsorted(cum, target, right=True).clamp(max=probs.shape[1] - 1)
        idx = torch.minimum(idx, keep.sum(-1, keepdim=True) - 1)
        return order.gather(1, idx)


class TransformersPolicy(Policy):
    """A causal LM through transformers' `generate` (CPU or GPU), chat template for prompts."""

    def __init__(
        self,
        model: str | Path = "embedded",
        delimiter: str = "\n",
        sampling: SamplingConfig | None = None,
        device: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars speak for the run
        path = resolve_model(model)
        self.model_id = str(model)
        self.delimiter = delimiter
        self.sampling = sampling or SamplingConfig()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, self.sampling.max_step_tokens, stop=self.delimiter)

    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, max_new_tokens, stop=None)

    def _generate(
        self, prefixes: list[Prefix], n: int, max_new_tokens: int, stop: str | None
    ) -> list[list[Proposal]]:
        return self.generate_texts([self.render(p) for p in prefixes], [p.seed for p in prefixes],
                                   n, max_new_tokens, stop)

    def generate_texts(
        self, prompts: list[str], seeds: list[int], n: int, max_new_tokens: int, stop: str | None
    ) -> list[list[Proposal]]:
        """n continuations of each rendered prompt text (chunked by the sampling batch size)."""
        per_call = max(1, self.sampling.batch_size // n)
        out: list[list[Proposal]] = []
        for i in range(0, len(prompts), per_call):
            out.extend(self._generate_chunk(prompts[i : i + per_call], seeds[i : i + per_call], n,
                                            max_new_tokens, stop))
        return out

    @torch.inference_mode()
    def _generate_chunk(
        self, prompts: list[str], seeds: list[int], n: int, max_new_tokens: int, stop: str | None
    ) -> list[list[Proposal]]:
        tok = self.tokenizer
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T), left-padded
        cache = self._shared_prefill(ids, mask, n) if n > 1 and ids.shape[1] > 1 else None
        # Each prompt repeated n times, prompt-major (generate refuses n > 1 without sampling).
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)  # (B*n, T)
        row_seeds = [row_seed(s, j) for s in seeds for j in range(n)]
        sampler = SeededSampler(row_seeds, self.sampling.temperature, self.sampling.top_p)
        seqs = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            past_key_values=cache,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            logits_processor=[sampler],
            stop_strings=[stop] if stop else None,
            tokenizer=tok,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        new = seqs[:, ids.shape[1] :].cpu()  # (B*n, new tokens)
        logps = torch.stack(sampler.logprobs, 1) if sampler.logprobs else torch.zeros(len(row_seeds), 0)
        rows = [self._to_proposal(new[r], logps[r], stop) for r in range(new.shape[0])]
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _shared_prefill(self, ids: torch.Tensor, mask: torch.Tensor, n: int):
        """The KV cache of every prompt but its last token, computed once and copied n times.

        The n samples of a prompt share its prefill; `generate` then runs only the last prompt
        token and the new ones. Positions follow the left padding, as `generate` computes them.
        None if this model's cache cannot be copied (then each row is prefilled on its own).
        """
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                         use_cache=True)
        cache = out.past_key_values
        if not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(n)
        return cache

    def _to_proposal(self, ids: torch.Tensor, logps: torch.Tensor, stop: str | None) -> Proposal:
        """Cut one generated row at EOS or the stop string; count its tokens and log-probs."""
        tok = self.tokenizer
        ids_list = ids.tolist()
        if tok.eos_token_id in ids_list:
            k = ids_list.index(tok.eos_token_id)
            return self._proposal(tok.decode(ids_list[:k]), logps[: k + 1], "eos")
        # Rows that stopped early are padded after their last token.
        k = len(ids_list)
        while k > 0 and ids_list[k - 1] == tok.pad_token_id:
            k -= 1
        text = tok.decode(ids_list[:k])
        if stop and stop in text:
            return self._proposal(text[: text.index(stop)], logps[:k], "stop")
        return self._proposal(text, logps[:k], "length")

    @staticmethod
    def _proposal(text: str, logps: torch.Tensor, finish: Finish) -> Proposal:
        per_token = [round(x, 6) for x in logps.tolist()]
        return Proposal(text, len(per_token), float(logps.sum()), finish, per_token)
