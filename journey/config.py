"""The stage configs: typed dataclasses that are the one source of every default and check.

Each stage's config mirrors its CLI flags (the CLI reads its defaults from here) and checks
itself in `__post_init__`, with errors that name the flag to change:

    BuildTreeConfig(problems=Path("p.jsonl"), out=Path("t.jsonl"), batch_size=0)
    # ValueError: --batch-size must be >= 1, got 0

This module imports no model code (no torch), so `journey --help` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from journey.longthought.render import STYLES
from journey.models.embedded import EMBEDDED_NAME
from journey.models.registry import PRMS
from journey.provenance import model_fingerprint


def flag(name: str) -> str:
    """'max_step_tokens' -> '--max-step-tokens'."""
    return "--" + name.replace("_", "-")


def check_at_least(low: float, **values) -> None:
    """ValueError naming the first flag whose value is below `low` (or not a number)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise ValueError(f"{flag(name)} must be >= {low}, got {value}")


def check_positive(**values) -> None:
    """ValueError naming the first flag whose value is not a finite number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > 0):
            raise ValueError(f"{flag(name)} must be > 0, got {value}")


def check_sampling_flags(temperature: float, top_p: float) -> None:
    """--temperature >= 0 and --top-p in (0, 1], both finite."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


# ---------------------------------------------------------------- search and sampling


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


@dataclass
class SearchConfig:
    """The shape of the search (these, with the models, decide every tree's content)."""

    width: int = 3  # w: candidate next steps per expanded node
    depth: int = 8  # D: maximum steps from the root
    top_k: int = 2  # K: children kept for expansion per tree per depth
    seed: int = 0

    def __post_init__(self):
        for name in ("width", "depth", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{flag(name)} must be > 0, got {value}")
        if self.top_k > self.width:
            raise ValueError(f"--top-k ({self.top_k}) cannot exceed --width ({self.width})")

    def exhaustive_expansions(self) -> int:
        """(w^D - 1)/(w - 1): the node expansions of the full tree (the paper's cost formula)."""
        w, d = self.width, self.depth
        return d if w == 1 else (w**d - 1) // (w - 1)


SEARCHES = ("beam", "mcts")
ROLLOUTS = ("none", "policy")


@dataclass
class MCTSConfig(SearchConfig):
    """MCTS (`journey.search.mcts`): `width` children per expansion, at most `depth` steps,
    `simulations` selections per tree, PUCT's exploration weight `c_puct`, an optional policy
    rollout to a final answer as a new step's value, and progressive widening up to
    `max_children` children per node (default: width, i.e. one expansion per node)."""

    simulations: int = 16
    c_puct: float = 1.0
    rollout: str = "none"
    max_children: int | None = None

    def __post_init__(self):
        super().__post_init__()
        check_at_least(1, simulations=self.simulations)
        if isinstance(self.c_puct, bool) or not isinstance(self.c_puct, int | float) or not (
                math.isfinite(self.c_puct) and self.c_puct >= 0):
            raise ValueError(f"--c-puct must be >= 0, got {self.c_puct}")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"--rollout must be one of {', '.join(ROLLOUTS)}, got {self.rollout!r}")
        if self.max_children is None:
            self.max_children = self.width
        check_at_least(self.width, max_children=self.max_children)


# ---------------------------------------------------------------- stages


# The config keys that decide a tree's content: a resumed run must match them.
TREE_CONTENT_KEYS = ("model", "task", "prm", "prm_model", "rollouts", "width", "depth", "temperature", "top_p",
                     "max_step_tokens", "seed", "search")
SEARCH_CONTENT_KEYS = {"beam": ("top_k",), "mcts": ("simulations", "c_puct", "rollout", "max_children")}


@dataclass
class BuildTreeConfig:
    """Everything `build-tree` needs. Fields mirror the CLI flags."""

    problems: Path
    out: Path
    model: str = EMBEDDED_NAME
    backend: str = "transformers"  # transformers | openai | vllm (does not change trees)
    task: str = "arith"
    prm: str = "verifier"
    prm_model: str | None = None  # the checkpoint of a token/qwen PRM, or the judge LLM
    rollouts: int = 4  # m, for the rollout PRM
    width: int = 4
    depth: int = 8
    top_k: int = 2  # beam only
    search: str = "beam"  # beam | mcts
    simulations: int = 16  # mcts only: N selections per tree (about N * w steps generated)
    c_puct: float = 1.0  # mcts only
    rollout: str = "none"  # mcts only: none | policy
    max_children: int | None = None  # mcts only: progressive widening cap (default: width)
    temperature: float = 1.0
    top_p: float = 0.95
    max_step_tokens: int = 48
    batch_size: int = 256  # sequences per policy call (a speed knob; does not change trees)
    trees_in_flight: int = 64  # trees expanded in lockstep (a speed/memory knob)
    seed: int = 0
    overwrite: bool = False
    limit: int | None = None  # only the first N problems

    def __post_init__(self):
        check_at_least(1, max_step_tokens=self.max_step_tokens, batch_size=self.batch_size,
                       trees_in_flight=self.trees_in_flight, rollouts=self.rollouts)
        check_sampling_flags(self.temperature, self.top_p)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        if self.search not in SEARCHES:
            raise ValueError(f"--search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.search == "mcts":
            self.search_config = MCTSConfig(self.width, self.depth, self.top_k, self.seed,
                                            self.simulations, self.c_puct, self.rollout, self.max_children)
        else:
            self.search_config = SearchConfig(self.width, self.depth, self.top_k, self.seed)
        self.sampling = SamplingConfig(self.temperature, self.top_p, self.max_step_tokens,
                                       self.batch_size)
        if self.prm not in PRMS:
            raise ValueError(f"unknown PRM {self.prm!r}; known PRMs: {', '.join(PRMS)}")

    def content(self) -> dict:
        """What decides a tree (compared on resume), the models' fingerprints included."""
        if not hasattr(self, "_content"):
            d = asdict(self)
            keys = TREE_CONTENT_KEYS + SEARCH_CONTENT_KEYS[self.search]
            self._content = {**{k: d[k] for k in keys},
                             "model_fingerprint": model_fingerprint(self.model),
                             "prm_model_fingerprint": model_fingerprint(self.prm_model) if self.prm_model else None}
        return self._content


@dataclass
class DeriveConfig:
    """Everything `derive-longthought` needs. Fields mirror the CLI flags."""

    trees: Path
    out_dir: Path
    max_trials: int = 2  # K: trials per correct-path node, the correct continuation included
    trial_prob: float = 0.8  # p: chance of each failed trial at a correct-path node
    pairs_per_problem: int = 5  # P: DPO pairs per tree (the paper drew 5)
    style: str = "verbose"  # reflection phrasing: verbose (varied, paper words) | concise
    seed: int = 0
    task: str | None = None  # default: the task recorded in the trees
    tokenizer: str = EMBEDDED_NAME  # for the token counts in the summary
    rewrite_model: str | None = None
    rewrite_backend: str = "transformers"
    rewrite_max_tokens: int = 1024

    def __post_init__(self):
        check_at_least(1, max_trials=self.max_trials, rewrite_max_tokens=self.rewrite_max_tokens)
        if not (isinstance(self.trial_prob, int | float) and 0.0 <= self.trial_prob <= 1.0):
            raise ValueError(f"--trial-prob must be in [0, 1], got {self.trial_prob}")
        check_at_least(0, pairs_per_problem=self.pairs_per_problem)
        if self.style not in STYLES:
            raise ValueError(f"--style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.rewrite_backend != "transformers":
            raise ValueError(f"--rewrite-backend {self.rewrite_backend!r}: only 'transformers' is built so far")


Stage = Literal["sft", "dpo"]
DEFAULT_LR = {"sft": 2e-5, "dpo": 1e-6}  # TRL's defaults; tiny models want far more (see recipes)


@dataclass
class TrainConfig:
    """Everything `train` needs. Fields mirror the CLI flags."""

    stage: Stage
    data: list[Path]
    out: Path
    model: str = EMBEDDED_NAME
    epochs: float = 1.0
    lr: float | None = None  # default: DEFAULT_LR[stage]
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    max_steps: int = -1  # > 0 overrides epochs
    lora: bool = False
    lora_r: int = 16
    mask_wrong_steps: bool = False  # SFT: leave rows' `mask_spans` (the wrong steps) out of the loss
    beta: float = 0.1  # DPO only
    loss_type: str = "sigmoid"  # DPO only
    seed: int = 0
    overwrite: bool = False
    extra: dict = field(default_factory=dict)  # passed to SFTConfig / DPOConfig as is

    def __post_init__(self):
        if self.stage not in ("sft", "dpo"):
            raise ValueError(f"--stage must be 'sft' or 'dpo', got {self.stage!r}")
        if not self.data:
            raise ValueError("--data: give at least one file")
        check_positive(epochs=self.epochs, beta=self.beta)
        check_at_least(1, batch_size=self.batch_size, grad_accum=self.grad_accum, lora_r=self.lora_r)
        check_at_least(8, max_length=self.max_length)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be > 0, or -1 to train by --epochs; got {self.max_steps}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.stage]
        check_positive(lr=self.lr)
        if self.mask_wrong_steps and self.stage != "sft":
            raise ValueError("--mask-wrong-steps is for --stage sft only")


# The config keys that decide what is generated: a resumed run must match them.
GENERATION_CONTENT_KEYS = ("model", "task", "samples", "temperature", "top_p", "max_new_tokens", "seed")


@dataclass
class GenerateConfig:
    """What eval and sample-pairs share: the model, the problems, and how to sample."""

    model: str
    problems: Path
    out: Path
    task: str = "arith"
    backend: str = "transformers"
    samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 64
    seed: int = 0
    limit: int | None = None
    overwrite: bool = False

    def __post_init__(self):
        check_at_least(1, samples=self.samples, max_new_tokens=self.max_new_tokens,
                       batch_size=self.batch_size)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        check_sampling_flags(self.temperature, self.top_p)

    def content(self) -> dict:
        """What decides the generations (compared on resume), the model's fingerprint included."""
        if not hasattr(self, "_content"):
            d = asdict(self)
            self._content = {**{k: d[k] for k in GENERATION_CONTENT_KEYS},
                             "model_fingerprint": model_fingerprint(self.model)}
        return self._content


@dataclass
class SamplePairsConfig(GenerateConfig):
    """`sample-pairs`: the paper's on-policy recipe, n = 20 samples and P = 5 pairs per problem."""

    samples: int = 20
    pairs: int = 5  # P: pairs per problem (drawn from the samples; not part of what is generated)

    def __post_init__(self):
        super().__post_init__()
        check_at_least(1, pairs=self.pairs)
