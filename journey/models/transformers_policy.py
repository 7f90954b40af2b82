"""The transformers backend of `Policy`: a Hugging Face causal LM in this process (CPU or GPU).

Sampling is seeded per row: candidate j of a prefix with seed s is drawn from its own
`torch.Generator` seeded from `row_seed(s, j)`. A prefix therefore gets the same candidates
whatever else shares its batch, which is what lets `build-tree` resume a killed run and write
exactly what an uninterrupted run would (up to float noise from different padding). The n
samples of a prompt share one prefill (its KV cache is computed once and copied).
Every backend samples from the same distribution, softmax(logits / temperature) cut to top_p,
with the extra fields a model's generation_config could switch on (top_k, min_p, repetition
penalty) set off explicitly (`NEUTRAL_SAMPLING`); at temperature 0 one greedy sample is drawn
and copied n times (`draws`, `copies`). Log-probs are raw (see `Proposal`).
The interface lives in `journey.models.base`; `journey.models.registry.load_policy(model,
delimiter, sampling, backend)` picks a backend by name.

    from journey.models.base import Prefix, SamplingConfig
    from journey.models.transformers_policy import TransformersPolicy
    policy = TransformersPolicy("embedded", delimiter="\\n", sampling=SamplingConfig(max_step_tokens=48))
    policy.propose([Prefix([{"role": "user", "content": "(2 + 3) * 4 - 5"}], [], seed=0)], n=3)
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from journey.models.base import (
    GIB,
    NEUTRAL_SAMPLING,
    Finish,
    Policy,
    Prefix,
    Proposal,
    SamplingConfig,
    room_error,
    row_seed,
    token_batches,
)
from journey.models.embedded import resolve_model

try:  # transformers 5.24 renamed the KV cache `cache` in generate and model outputs; the old name warns
    from transformers.utils.generic import _rename_kwargs_for_bc  # noqa: F401  (only present since the rename)

    CACHE = "cache"
except ImportError:
    CACHE = "past_key_values"

if TYPE_CHECKING:
    from transformers import StoppingCriteriaList

log = logging.getLogger(__name__)


def check_room(module: torch.nn.Module, device: str, what: str, vllm_share: float | None = None,
               batch_tokens: int | None = None, cache: bool = False, config=None) -> None:
    """ValueError (see `room_error`) unless `module`, still on the CPU, fits on the CUDA `device`
    now: its weights, what a forward over `batch_tokens` tokens holds (`batch_bytes`, with the
    KV cache when `cache`: a judge generating), and 1 GiB for the CUDA context and allocator.
    No-op off CUDA. `config` is the model's config (default: `module.config`)."""
    if not str(device).startswith("cuda"):
        return
    tensors = [*module.parameters(), *module.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    config = config if config is not None else getattr(module, "config", None)
    width = tensors[0].element_size() if tensors else 2
    batch = batch_bytes(config, batch_tokens, width, cache) if batch_tokens and config is not None else GIB
    free, total = torch.cuda.mem_get_info(torch.device(device))
    problem = room_error(int(weights * 1.1) + batch + GIB, free, total, device, what, vllm_share)
    if problem:
        raise ValueError(problem)


def batch_bytes(config, tokens: int, width: int, cache: bool = False) -> int:
    """About what a transformer holds beside its weights for a forward over `tokens` tokens (all
    rows, padding included) at `width` bytes a value: one layer's activations at a time (hidden
    x 4, intermediate x 3 per token) and, when `cache`, every layer's keys and values.

    Qwen2.5-7B (hidden 3584, intermediate 18944, 28 layers, 4 KV heads of 128), bf16, 16,384
    tokens with the cache: (3584 * 4 + 18944 * 3 + 2 * 28 * 4 * 128) * 2 * 16384 = ~3.0 GiB
    """
    config = getattr(config, "text_config", None) or config
    hidden = config.hidden_size
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    per_token = hidden * 4 + inter * 3
    if cache:
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        per_token += 2 * config.num_hidden_layers * kv_heads * head_dim
    return tokens * per_token * width


def load_dtype(path: str, device: str) -> torch.dtype:
    """The dtype to load a PRM or judge checkpoint in: float32 on the CPU; on a GPU the dtype its
    config.json names when that is 16-bit, else bfloat16 (a float32 config.json would double a
    7B model to ~29 GB; these models are trained in bf16)."""
    if not str(device).startswith("cuda"):
        return torch.float32
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    named = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    named = getattr(torch, named, None) if isinstance(named, str) else named
    return named if named in (torch.float16, torch.bfloat16) else torch.bfloat16


def end_ids(tokenizer, generation_config) -> set[int]:
    """The tokens that end generation: the tokenizer's EOS and every id the model's
    generation_config lists (Llama-3-Instruct ends a turn with <|eot_id|>, Gemma 3 with
    <end_of_turn>, neither of them the tokenizer's EOS).

    eos 2, generation_config.eos_token_id [2, 7] -> {2, 7}
    """
    listed = getattr(generation_config, "eos_token_id", None)
    listed = [] if listed is None else [listed] if isinstance(listed, int) else list(listed)
    return {i for i in [tokenizer.eos_token_id, *listed] if i is not None}


def stop_length(tokenizer, ids: list[int], stop: str) -> int | None:
    """The fewest leading tokens of `ids` whose text holds `stop`, or None when none does
    (found by bisection: a longer prefix's text holds whatever a shorter one's does)."""
    if stop not in tokenizer.decode(ids):
        return None
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if stop in tokenizer.decode(ids[:mid]) else (mid + 1, high)
    return low


def check_chat_template(tokenizer, model: str, path: str, flag: str = "--model") -> None:
    """ValueError naming the flag when the tokenizer has no chat template (a base model): journey
    prompts through the template, and guessing one would train and sample a format the model
    never saw."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{flag} {model}: its tokenizer has no chat template (a base model?); "
                         f"add one as {Path(path) / 'chat_template.jinja'} or use an instruct model")


class SeededSampler:
    """A logits processor that samples each row from its own generator.

    It returns logits that are -inf except at the chosen token, so `generate` runs greedy on
    top of it. The token is drawn from softmax(logits / temperature) cut to top_p; the log-prob
    kept per step is the raw one, log_softmax(logits), as vLLM reports it (see `Proposal`).
    The nucleus is looked for among the `candidates` likeliest tokens first (`torch.topk`);
    the whole vocabulary is sorted only for a row whose nucleus may reach past them or holds
    ties (sorting SmolLM2's 49k probabilities a row took a third of its decoding time on a
    CPU). Either way a draw picks the same token (`nucleus_pick`).
    """

    candidates = 128

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p
        self.logprobs: list[torch.Tensor] = []  # one (B,) tensor per generated position

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float().cpu()  # (B, V)
        if self.temperature == 0:
            choice = scores.argmax(-1, keepdim=True)
        else:
            choice = self._sample(torch.softmax(scores / self.temperature, -1))
        self.logprobs.append(torch.log_softmax(scores, -1).gather(1, choice).squeeze(1))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, choice, 0.0)
        return out.to(input_ids.device)

    def _sample(self, probs: torch.Tensor) -> torch.Tensor:
        """Top-p sampling by inverse CDF, one uniform draw per row from that row's generator."""
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])  # (B,)
        top, ids = probs.topk(min(self.candidates, probs.shape[1]), -1)  # (B, k), descending
        choice, holds = nucleus_pick(top, ids, u, self.top_p)
        rest = (~holds).nonzero().squeeze(1)
        if len(rest):  # the nucleus may reach past the candidates, or hold ties: sort the whole row
            sorted_p, order = probs[rest].sort(-1, descending=True)
            choice[rest] = nucleus_pick(sorted_p, order, u[rest], self.top_p)[0]
        return choice


def nucleus_pick(sorted_p: torch.Tensor, ids: torch.Tensor, u: torch.Tensor, top_p: float):
    """(chosen ids (B, 1), rows where that is sure (B,)) for probabilities `sorted_p` (B, k),
    descending, of the tokens `ids` (B, k), and one uniform draw `u` (B,) a row: the token
    where u x (the nucleus's mass) falls in its cumulative sum, the nucleus being the fewest
    likeliest tokens whose mass reaches top_p.

    When `sorted_p` is only a row's top k, the choice is sure (the one the whole sorted row
    gives) if the nucleus ends before the k-th token with no two of its probabilities equal
    nor its last equal to the next: then it is the same tokens in the same order whatever
    order a sort gives ties, and the cumulative sums, running left to right, agree.
    """
    cum = sorted_p.cumsum(-1)
    keep = (cum - sorted_p) < top_p  # the smallest prefix whose mass reaches top_p
    kept = keep.sum(-1, keepdim=True)  # (B, 1), >= 1
    drops = sorted_p[:, :-1] > sorted_p[:, 1:]  # (B, k-1): strictly below the one before
    position = torch.arange(drops.shape[1]).unsqueeze(0)
    holds = (kept.squeeze(1) < sorted_p.shape[1]) & (drops | (position >= kept)).all(-1)
    sorted_p = sorted_p * keep
    cum = sorted_p.cumsum(-1)
    target = (u * cum[:, -1].double()).unsqueeze(1).float()
    idx = torch.searchsorted(cum, target, right=True).clamp(max=sorted_p.shape[1] - 1)
    idx = torch.minimum(idx, kept - 1)
    return ids.gather(1, idx), holds


class TransformersPolicy(Policy):
    """A causal LM through transformers' `generate` (CPU or GPU), chat template for prompts."""

    def __init__(
        self,
        model: str | Path = "embedded",
        delimiter: str = "\n",
        sampling: SamplingConfig | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        batch_tokens: int | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars speak for the run
        path = resolve_model(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = {"dtype": dtype} if dtype is not None else {}
        self._use(str(model), AutoModelForCausalLM.from_pretrained(path, **loaded).to(device).eval(),
                  AutoTokenizer.from_pretrained(path), delimiter, sampling, device, batch_tokens)

    @classmethod
    def around(cls, model, tokenizer, delimiter: str = "\n", sampling: SamplingConfig | None = None,
               name: str = "in training") -> TransformersPolicy:
        """A policy on a model already in memory (a trainer's, as it is at this step), with a
        copy of its tokenizer: nothing is loaded, and the caller's tokenizer keeps its padding
        side. The caller puts the model in eval mode for the calls (dropout off)."""
        import copy

        policy = cls.__new__(cls)
        policy._use(name, model, copy.deepcopy(tokenizer), delimiter, sampling,
                    next(model.parameters()).device.type, None)
        return policy

    def _use(self, name: str, model, tokenizer, delimiter: str, sampling: SamplingConfig | None,
             device: str, batch_tokens: int | None) -> None:
        self.model_id = name
        self.delimiter = delimiter
        self.sampling = sampling or SamplingConfig()
        self.device = device
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model
        self.eos_ids = end_ids(self.tokenizer, self.model.generation_config)
        # None: chunks of `sampling.batch_size` sequences; else batches of at most this many
        # tokens, prompt and reply (`token_batches`): what a judge uses, so memory is bounded.
        self.batch_tokens = batch_tokens
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)
        # The prefill needs the KV cache, not its logits: (B, T, vocab) floats, 1.3 GB for 64
        # prompts of 100 tokens and SmolLM2's 49k vocabulary. Models that can skip them take this.
        takes = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.one_logit = {"logits_to_keep": 1} if takes else {}
        self.stops: dict[str, StoppingCriteriaList] = {}  # stop string -> its criteria, built once

    def to(self, device: str) -> TransformersPolicy:
        """This policy with its model moved to `device` (e.g. a judge loaded on the CPU, checked
        with `check_room`, then put on its GPU)."""
        self.model.to(device)
        self.device = device
        return self

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
        k = self.draws(n)
        if self.batch_tokens:  # rows x (longest prompt + reply) within the budget
            ids = [self.prompt_ids(p) for p in prompts]
            batches = token_batches([k * (len(x) + max_new_tokens) for x in ids], self.batch_tokens)
        else:
            per_call = max(1, self.sampling.batch_size // k)
            batches = [list(range(i, min(i + per_call, len(prompts)))) for i in range(0, len(prompts), per_call)]
        out: list = [None] * len(prompts)
        for batch in batches:
            drawn = self._generate_chunk([prompts[i] for i in batch], [seeds[i] for i in batch], k,
                                         max_new_tokens, stop)
            for i, row in zip(batch, drawn):
                out[i] = row
        return [self.copies(drawn, n) for drawn in out]

    @torch.inference_mode()
    def _generate_chunk(
        self, prompts: list[str], seeds: list[int], n: int, max_new_tokens: int, stop: str | None
    ) -> list[list[Proposal]]:
        tok = self.tokenizer
        batch = tok.pad({"input_ids": [self.prompt_ids(p) for p in prompts]}, padding=True, return_tensors="pt")
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)  # (B, T), left-padded
        cache = self._shared_prefill(ids, mask, n) if n > 1 and ids.shape[1] > 1 else None
        # Each prompt repeated n times, prompt-major (generate refuses n > 1 without sampling).
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)  # (B*n, T)
        row_seeds = [row_seed(s, j) for s in seeds for j in range(n)]
        sampler = SeededSampler(row_seeds, self.sampling.temperature, self.sampling.top_p)
        seqs = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            **{CACHE: cache},
            do_sample=False,
            max_new_tokens=max_new_tokens,
            logits_processor=[sampler],
            stopping_criteria=self.stop_criteria(stop),
            # The logits processors a generation_config may switch on even without sampling
            # (Qwen2.5-Math ships repetition_penalty 1.05): off, as in the other backends.
            repetition_penalty=NEUTRAL_SAMPLING["repetition_penalty"],
            no_repeat_ngram_size=0,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(self.eos_ids),  # any of them ends a row
        )
        new = seqs[:, ids.shape[1] :].cpu()  # (B*n, new tokens)
        logps = torch.stack(sampler.logprobs, 1) if sampler.logprobs else torch.zeros(len(row_seeds), 0)
        rows = [self._to_proposal(new[r], logps[r], stop) for r in range(new.shape[0])]
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]

    def stop_criteria(self, stop: str | None) -> StoppingCriteriaList | None:
        """What ends a row at `stop`, built once per stop string: `generate(stop_strings=...)`
        builds it anew each call, walking the whole vocabulary (2% of a SmolLM2 search's time)."""
        if not stop:
            return None
        if stop not in self.stops:
            from transformers import StoppingCriteriaList, StopStringCriteria

            self.stops[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, [stop])])
        return self.stops[stop]

    def _shared_prefill(self, ids: torch.Tensor, mask: torch.Tensor, n: int):
        """The KV cache of every prompt but its last token, computed once and copied n times.

        The n samples of a prompt share its prefill; `generate` then runs only the last prompt
        token and the new ones. Positions follow the left padding, as `generate` computes them.
        None if this model's cache cannot be copied (then each row is prefilled on its own).
        """
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                         use_cache=True, **self.one_logit)
        cache = getattr(out, CACHE)
        if not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(n)
        return cache

    def _to_proposal(self, ids: torch.Tensor, logps: torch.Tensor, stop: str | None) -> Proposal:
        """Cut one generated row where it really ended: at the stop string, else at an end token
        (any of `eos_ids`), else at the length limit. The stop string is looked for before the
        first end token, because `generate` pads a row that stopped early with the pad token,
        which is the EOS itself in many tokenizers (SmolLM2, Llama 3, Mistral: pad = eos)."""
        ids_list = ids.tolist()
        end = next((i for i, t in enumerate(ids_list) if t in self.eos_ids), None)
        body = ids_list if end is None else ids_list[:end]
        k = stop_length(self.tokenizer, body, stop) if stop else None
        if k is not None:
            text = self.tokenizer.decode(body[:k])
            return self._proposal(text[: text.index(stop)], logps[:k], "stop")
        if end is not None:
            return self._proposal(self.tokenizer.decode(body), logps[: end + 1], "eos")
        return self._proposal(self.tokenizer.decode(body), logps[: len(body)], "length")

    @staticmethod
    def _proposal(text: str, logps: torch.Tensor, finish: Finish) -> Proposal:
        per_token = [round(x, 6) for x in logps.tolist()]
        return Proposal(text, len(per_token), float(logps.sum()), finish, per_token)
