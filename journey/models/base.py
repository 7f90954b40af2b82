"""The model interfaces every backend and search speaks: `Policy` proposes steps, `PRM` scores them.

Plain types only, and no torch: `journey.search` and `journey.longthought` import this module,
never a backend, so they load in a fraction of a second. A backend is one module of its own
(`transformers_policy`, `openai_policy`, `vllm_policy`; the PRMs in `prm`, `model_prms`, `judge`,
`trained_prm`, `tests_prm`) and one line in `journey.models.registry`, where a name picks it.

The policy interface is one batched call, `propose(prefixes, n)`: for every prefix (a question's
messages, the steps so far, and a seed) `n` candidate next steps, each with its text, token
count, summed log-prob and why it ended. Search hands a whole depth of a whole batch of trees
to one call; a backend chunks it as it likes. Sampling is seeded per row (`row_seed`), not per
batch, so a prefix gets the same candidates whatever else shares its batch.

The PRM interface is `score(questions, paths, answers)`: a `StepScore` (score in [0, 1], verdict,
reason) for the last step of each path.

    from journey.models.base import Prefix, SamplingConfig
    from journey.models.registry import load_policy
    policy = load_policy("embedded", "\\n", SamplingConfig(max_step_tokens=48))
    policy.propose([Prefix([{"role": "user", "content": "(2 + 3) * 4 - 5"}], [], seed=0)], n=3)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from journey.checks import check_at_least, check_sampling_flags


@dataclass
class SamplingConfig:
    """How candidates are drawn. temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_step_tokens: int = 48
    batch_size: int = 256  # sequences (prompts x n) per generate call

    def __post_init__(self):
        check_sampling_flags(self.temperature, self.top_p)
        check_at_least(1, max_step_tokens=self.max_step_tokens, batch_size=self.batch_size)


Finish = Literal["stop", "eos", "length"]


@dataclass
class Prefix:
    """A node to extend: the question as chat messages, the steps so far, and its seed."""

    messages: list[dict]
    steps: list[str] = field(default_factory=list)
    seed: int = 0


@dataclass
class Proposal:
    """One generated step (or completion): its text without the delimiter, and its costs.

    `logprob` is the sum over the generated tokens of their log-probability under the model's
    own distribution: raw logits, before temperature, top-p or any penalty. That is what vLLM
    reports by default (`logprobs_mode="raw_logprobs"`), so every backend means the same thing.
    """

    text: str
    tokens: int
    logprob: float
    finish: Finish
    token_logprobs: list[float] = field(default_factory=list, repr=False, compare=False)


# Sampling fields every backend sets explicitly, so nothing is filled in from the model's
# generation_config (`vllm serve` and transformers both would): all backends draw from
# softmax(logits / temperature) cut to top_p, and nothing else. top_k -1 (off) is the one value
# that vLLM, SGLang and old vLLM versions all accept.
NEUTRAL_SAMPLING = {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
                    "presence_penalty": 0.0, "frequency_penalty": 0.0}


GIB = 2**30


def room_error(need: int, free: int, total: int, device: str, what: str,
               vllm_share: float | None = None) -> str | None:
    """The one-line refusal when `need` bytes will not fit in the `free` bytes of `device`
    (`total` in all), saying what to change; None when they fit. `vllm_share` is vLLM's
    --gpu-memory-utilization when vLLM holds the same GPU: the refusal then gives the largest
    share that leaves room (what others hold, total - free - share * total, stays held).

    need 18 GiB, free 7.5 of 80 GiB, share 0.9 -> "... set --gpu-memory-utilization 0.76 or lower ..."
    """
    if need <= free:
        return None
    head = (f"{what} needs about {need / GIB:.1f} GiB on {device}, but only {free / GIB:.1f} of its "
            f"{total / GIB:.0f} GiB are free")
    elsewhere = "put it on another GPU with --prm-device cuda:1 (or on the CPU, slowly: --prm-device cpu)"
    if vllm_share is None:
        return f"{head}; {elsewhere}, or give vLLM less of this GPU with --gpu-memory-utilization"
    others = max(0.0, total - free - vllm_share * total)
    share = int(100 * (1 - (need + others) / total)) / 100
    if share < 0.1:
        return f"{head} (vLLM holds --gpu-memory-utilization {vllm_share} of it); {elsewhere}"
    return (f"{head} (vLLM holds --gpu-memory-utilization {vllm_share} of it); set "
            f"--gpu-memory-utilization {share} or lower, or {elsewhere}")


def token_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Row indices grouped into batches whose padded size, rows x the longest row, stays within
    `budget` tokens (a row longer than the budget goes alone). Rows are taken longest first, so
    rows of like length share a batch and little is padding. A model's memory for a forward
    grows with its tokens, not its rows: this is what bounds it (`check_room` counts `budget`).

    [5, 3, 8, 2], budget 10 -> [[2], [0, 1], [3]]
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


BOUNDARY_PROBE = "A"  # what follows a prompt in running text: the next step's first letter


def boundary_ids(tokenizer, text: str) -> list[int]:
    """The ids of `text` as they occur when text follows it, so a prompt never ends inside a token.

    A BPE tokenizer merges a prompt's trailing step delimiter into a token that running text
    never has there: SmolLM2 makes "5\n\n" alone [37, 1116] ('\n\n' one token) but
    "5\n\nStep" [37, 198, 198, 3512], and a model sampled after 1116 continues from a context it
    never saw (what token healing mends). So `text` is tokenized with a letter after it and the
    tokens that end within `text` are kept; if one straddles the end (the letter merged into it),
    `text` is tokenized alone. A character-level tokenizer gives the same ids either way.
    """
    try:
        enc = tokenizer(text + BOUNDARY_PROBE, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # a slow (Python) tokenizer has no offsets
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    kept = [i for i, (_, end) in zip(enc["input_ids"], enc["offset_mapping"]) if end <= len(text)]
    if tokenizer.decode(kept) == text:
        return kept
    return tokenizer(text, add_special_tokens=False)["input_ids"]


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
        return len(self.prompt_ids(self.render(prefix)))

    def prompt_ids(self, text: str) -> list[int]:
        """`text`'s token ids as they occur in running text (`boundary_ids`)."""
        return boundary_ids(self.tokenizer, text)

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

    def draws(self, n: int) -> int:
        """How many samples to ask the engine for: 1 at temperature 0, else `n`.

        Every greedy sample is the same, and vLLM refuses n > 1 there ("n must be 1 when using
        greedy sampling"; `vllm serve` answers HTTP 400), so one is drawn and copied (`copies`).
        """
        return 1 if self.sampling.temperature == 0 else n

    def copies(self, drawn: list[Proposal], n: int) -> list[Proposal]:
        """The `n` proposals for what `draws(n)` asked for: the greedy one n times, else `drawn`."""
        return drawn * n if self.sampling.temperature == 0 else drawn

    @abstractmethod
    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        """For each prefix, `n` candidate next steps (ending at the delimiter, or at EOS)."""

    @abstractmethod
    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        """For each prefix, `n` whole continuations up to EOS (for eval and sampling pairs)."""


@dataclass(frozen=True)
class StepScore:
    """A PRM's judgement of one step."""

    score: float  # in [0, 1]; higher is better
    ok: bool  # the verdict: is this step right?
    reason: str


class PRM(ABC):
    """Scores the last step of each path, given its question and the steps above it."""

    name: str
    # PRMs that roll out (rollout, tests) set this in each `score` call: per path, (rollouts run,
    # rollouts cut off at their token budget), so search can count them in the trees' costs.
    last_rollouts: list[tuple[int, int]] | None = None

    @abstractmethod
    def score(self, questions: list[str], paths: list[list[str]],
              answers: list[str] | None = None, ended: list[bool] | None = None) -> list[StepScore]:
        """One `StepScore` per (question, path) pair, for the path's last step.

        `answers` (the ground truth per question) is for PRMs that need it, like `rollout`.
        `ended[i]` says the path's last step ended the solution (a final answer, or the model's
        EOS): the PRMs that roll out (rollout, tests) grade it as final and never continue it.
        """
