"""The stage configs: typed dataclasses that are the one source of every default and check.

Each stage's config mirrors its CLI flags (the CLI reads its defaults from here) and checks
itself in `__post_init__`, with errors that name the flag to change:

    BuildTreeConfig(problems=Path("p.jsonl"), out=Path("t.jsonl"), batch_size=0)
    # ValueError: --batch-size must be >= 1, got 0

This module imports no model code (no torch), so `journey --help` stays fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from journey.longthought.paths import TRIAL_COUNTS
from journey.longthought.prm_data import LABEL_SOURCES
from journey.longthought.render import STYLES
from journey.models.embedded import EMBEDDED_NAME, task_model
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
    top_k: int = 2  # K: children kept for expansion per tree per depth (of up to K·w, so K may exceed w)
    seed: int = 0
    expand: str = "never"  # beam: may steps the PRM judged wrong fill the K slots? never (Part 1) | wrong

    def __post_init__(self):
        for name in ("width", "depth", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{flag(name)} must be > 0, got {value}")
        if self.expand not in EXPANDS:
            raise ValueError(f"--expand must be one of {', '.join(EXPANDS)}, got {self.expand!r}")

    def exhaustive_expansions(self) -> int:
        """(w^D - 1)/(w - 1): the node expansions of the full tree (the paper's cost formula)."""
        w, d = self.width, self.depth
        return d if w == 1 else (w**d - 1) // (w - 1)


EXPANDS = ("never", "wrong")  # see journey.search.build
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


# ---------------------------------------------------------------- scale-out (Ray)


@dataclass(kw_only=True)
class RayOptions:
    """`--ray` and its flags, shared by build-tree, eval, sample-pairs and distill (see
    `journey.distributed`). They change where the work runs, never what is written, so they are
    not part of any stage's content and a run may be resumed with or without them."""

    ray: bool = False  # run on Ray actors (a local Ray unless --ray-address)
    ray_address: str | None = None  # auto (a cluster started with `ray start`) or HOST:PORT
    workers: int | None = None  # Ray actors, each with its own models (default: one per CPU, or per GPU share)
    gpus_per_worker: float = 0.0  # GPUs reserved per actor (0: CPU actors)

    def check_ray(self) -> None:
        if not self.ray:
            given = [f for f, v in (("--ray-address", self.ray_address), ("--workers", self.workers),
                                    ("--gpus-per-worker", self.gpus_per_worker)) if v]
            if given:
                raise ValueError(f"{given[0]} is for --ray; add --ray or drop {given[0]}")
            return
        if self.workers is not None:
            check_at_least(1, workers=self.workers)
        check_at_least(0, gpus_per_worker=self.gpus_per_worker)
        if self.ray_address is not None and not str(self.ray_address).strip():
            raise ValueError("--ray-address is empty; give auto or HOST:PORT")


# ---------------------------------------------------------------- the code domain (o1-Coder)


@dataclass
class CodeConfig:
    """How the `code` task runs and scores programs (journey.tasks.code, journey.sandbox).

    alpha: a in the reward v = a * compiles + (1 - a) * pass_rate (o1-Coder's 0.5).
    unsafe_no_sandbox: run model-written programs without bubblewrap (rlimits and a timeout
        only). Never a fallback: only this flag does it.
    workers: programs run at once (default: the CPU count).
    tests_per_problem: tests the generator writes per problem.
    """

    alpha: float = 0.5
    unsafe_no_sandbox: bool = False
    workers: int | None = None
    tests_per_problem: int = 5

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not 0 <= self.alpha <= 1:
            raise ValueError(f"--code-alpha must be in [0, 1], got {self.alpha}")
        if self.workers is not None:
            check_at_least(1, workers=self.workers)
        check_at_least(1, tests_per_problem=self.tests_per_problem)


@dataclass(kw_only=True)
class CodeOptions:
    """`--code-alpha` and `--unsafe-no-sandbox` of the stages that run a task's checks
    (build-tree, eval, sample-pairs): how the `code` task scores and where it runs programs.
    Other tasks ignore them. `code_alpha` changes code trees' scores, so it is part of a code
    tree's content; the sandbox flag changes where programs run, never a verdict."""

    code_alpha: float = 0.5
    unsafe_no_sandbox: bool = False

    def code_config(self) -> CodeConfig:
        return CodeConfig(alpha=self.code_alpha, unsafe_no_sandbox=self.unsafe_no_sandbox)


# ---------------------------------------------------------------- stages


# The config keys that decide a tree's content: a resumed run must match them.
TREE_CONTENT_KEYS = ("model", "task", "prm", "prm_model", "rollouts", "width", "depth", "temperature", "top_p",
                     "max_step_tokens", "seed", "search")
SEARCH_CONTENT_KEYS = {"beam": ("top_k", "expand"), "mcts": ("simulations", "c_puct", "rollout", "max_children")}
# Content keys added later, with the value that trees written before them were built with: a
# beam trees file from before --expand expanded wrong steps, so it resumes with --expand wrong
# (and a run with --expand never is refused, naming the key).
CONTENT_BEFORE_KEY = {"expand": "wrong"}


@dataclass
class BuildTreeConfig(RayOptions, CodeOptions):
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
    top_k: int = 2  # beam only: K children kept per tree per depth (may exceed width: K of up to K·w)
    expand: str = "never"  # beam only: steps judged wrong may fill the K slots (wrong) or not (never, Part 1)
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
    gpu_memory_utilization: float = 0.9  # --backend vllm: vLLM's share of its GPU (a PRM gets the rest)
    prm_device: str | None = None  # where a token/qwen PRM or judge model goes: cpu, cuda, cuda:1 (None: cuda if any)

    def __post_init__(self):
        self.check_ray()
        self.code_config()  # checks --code-alpha
        self.model = task_model(self.model, self.task)  # `embedded` + code -> the code policy
        check_at_least(1, max_step_tokens=self.max_step_tokens, batch_size=self.batch_size,
                       trees_in_flight=self.trees_in_flight, rollouts=self.rollouts)
        check_sampling_flags(self.temperature, self.top_p)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        u = self.gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 < u <= 1:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {u}")
        if self.prm_device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.prm_device):
            raise ValueError(f"--prm-device must be cpu, cuda or cuda:N, got {self.prm_device!r}")
        if self.search not in SEARCHES:
            raise ValueError(f"--search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.search == "mcts":
            self.search_config = MCTSConfig(self.width, self.depth, self.top_k, self.seed, simulations=self.simulations,
                                            c_puct=self.c_puct, rollout=self.rollout, max_children=self.max_children)
        else:
            self.search_config = SearchConfig(self.width, self.depth, self.top_k, self.seed, self.expand)
        self.sampling = SamplingConfig(self.temperature, self.top_p, self.max_step_tokens,
                                       self.batch_size)
        if self.prm not in PRMS:
            raise ValueError(f"unknown PRM {self.prm!r}; known PRMs: {', '.join(PRMS)}")

    def content(self) -> dict:
        """What decides a tree (compared on resume), the models' fingerprints included."""
        if not hasattr(self, "_content"):
            d = asdict(self)
            keys = TREE_CONTENT_KEYS + SEARCH_CONTENT_KEYS[self.search] + (("code_alpha",) if self.task == "code" else ())
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
    prm_labels: str = "auto"  # PRM rows' labels: auto | verdict | score | q (see longthought.prm_data)
    trial_count: str = "geometric"  # failed trials per node: geometric (p each, first miss stops) | uniform 0..K-1
    trial_end: str = "first-wrong"  # a trial stops at its first wrong step | dead-end (runs on to a wrong answer)
    backtrack: str = "step"  # a backtrack names the step (number and text) | state (restates what is left)

    def __post_init__(self):
        check_at_least(1, max_trials=self.max_trials, rewrite_max_tokens=self.rewrite_max_tokens)
        if not (isinstance(self.trial_prob, int | float) and 0.0 <= self.trial_prob <= 1.0):
            raise ValueError(f"--trial-prob must be in [0, 1], got {self.trial_prob}")
        check_at_least(0, pairs_per_problem=self.pairs_per_problem)
        for name, allowed in (("trial_count", TRIAL_COUNTS), ("trial_end", ("first-wrong", "dead-end")),
                              ("backtrack", ("step", "state"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.prm_labels not in LABEL_SOURCES:
            raise ValueError(f"--prm-labels must be one of {', '.join(LABEL_SOURCES)}, got {self.prm_labels!r}")
        if self.style not in STYLES:
            raise ValueError(f"--style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.rewrite_backend != "transformers":
            raise ValueError(f"--rewrite-backend {self.rewrite_backend!r}: only 'transformers' is built so far")


Stage = Literal["sft", "dpo", "prm"]
STAGES = ("sft", "dpo", "prm")
# TRL's defaults for SFT and DPO; tiny models want far more (see recipes). PRM: a new head.
DEFAULT_LR = {"sft": 2e-5, "dpo": 1e-6, "prm": 1e-4}
OBJECTIVES = ("pointwise", "pairwise")


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
    objective: str = "pointwise"  # PRM only: pointwise (prm_steps.jsonl) | pairwise (prm_pairs.jsonl)
    seed: int = 0
    overwrite: bool = False
    extra: dict = field(default_factory=dict)  # passed to SFTConfig / DPOConfig as is

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.stage == "prm" and self.lora:
            raise ValueError("--lora is for --stage sft or dpo (a PRM trains its new head and body together)")
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
class GenerateConfig(RayOptions, CodeOptions):
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
        self.check_ray()
        self.code_config()  # checks --code-alpha
        self.model = task_model(self.model, self.task)  # `embedded` + code -> the code policy
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


# ---------------------------------------------------------------- Part 2: import, curate, distill


@dataclass
class ImportConfig:
    """`problems --from FILE --format F`: turn a dataset file into problems.jsonl (journey.importers)."""

    source: Path
    format: str
    out: Path
    question_key: str = "question"  # --format jsonl: the field holding the question
    answer_key: str = "answer"  # --format jsonl: the field holding the answer
    overwrite: bool = False

    def __post_init__(self):
        from journey.importers import FORMATS

        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        keys = (self.question_key, self.answer_key)
        if self.format != "jsonl" and keys != (ImportConfig.question_key, ImportConfig.answer_key):
            raise ValueError("--question-key and --answer-key are for --format jsonl only")
        if not all(isinstance(k, str) and k.strip() for k in keys) or keys[0] == keys[1]:
            raise ValueError(f"--question-key and --answer-key must be two different field names, got {keys}")


@dataclass
class CurateConfig:
    """`curate`: keep the problems a checker can grade (journey.tasks.math.curate)."""

    problems: Path
    out: Path
    overwrite: bool = False


@dataclass
class DistillConfig(RayOptions):
    """Everything `distill` needs (Part 2: teacher samples -> curation -> reformat -> SFT rows)."""

    problems: Path
    out_dir: Path
    teacher: str  # 'embedded', a checkpoint folder, a hub id, or a served model's name (--backend openai)
    backend: str = "transformers"  # transformers | openai | vllm (does not change what is kept)
    task: str = "math"  # extracts and checks the answers: math (\boxed{}) or arith ("The answer is N.")
    samples: int = 4  # n: samples per problem
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 8192  # longest sample; longer ones are dropped as truncated
    min_tokens: int = 0  # shorter samples are dropped as too short (0: off)
    max_tokens: int | None = None  # longer samples are dropped as too long (None: off)
    reformat: bool = False  # a second, greedy teacher call rewrites each kept sample step by step
    prompt: str = "shipped"  # the teacher's system prompt: shipped | task (the task's own) | a file
    batch_size: int = 64  # sequences (problems x samples) per teacher call (speed only)
    seed: int = 0
    limit: int | None = None  # only the first N problems
    overwrite: bool = False

    def __post_init__(self):
        self.check_ray()
        from journey.models.registry import BACKENDS
        from journey.tasks import TASKS

        check_at_least(1, samples=self.samples, max_new_tokens=self.max_new_tokens,
                       batch_size=self.batch_size)
        check_at_least(0, min_tokens=self.min_tokens)
        if self.max_tokens is not None:
            check_at_least(max(1, self.min_tokens), max_tokens=self.max_tokens)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        check_sampling_flags(self.temperature, self.top_p)
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(sorted(TASKS))}, got {self.task!r}")
        if not str(self.teacher).strip():
            raise ValueError("--teacher is empty")


@dataclass
class EvalPRMConfig:
    """Everything `eval-prm` needs. Fields mirror the CLI flags."""

    trees: Path
    prm_model: str | None = None
    prm: str = "trained"
    out: Path | None = None
    task: str | None = None  # default: the task recorded in the trees

    def __post_init__(self):
        if self.prm not in PRMS:
            raise ValueError(f"unknown PRM {self.prm!r}; known PRMs: {', '.join(PRMS)}")
        if self.prm == "verifier":
            raise ValueError("--prm verifier is the reference itself; evaluate another PRM")


PRM_LOOPS = ("trained", "fixed")


@dataclass
class SelfplayConfig:
    """`selfplay`: rounds of search -> derive -> train policy and PRM (see journey.selfplay).
    Defaults finish a round in minutes on the embedded model with a few hundred problems."""

    problems: Path
    test: Path
    out_dir: Path
    rounds: int = 2
    model: str = EMBEDDED_NAME  # policy_0
    prm: str = "verifier"  # PRM_0
    prm_model: str | None = None
    prm_loop: str = "trained"  # later rounds search with the PRM trained before (trained) or keep --prm (fixed)
    task: str = "arith"
    search: str = "beam"
    width: int = 4
    depth: int = 8
    top_k: int = 2
    simulations: int = 16
    temperature: float = 1.0
    max_trials: int = 2
    trial_prob: float = 0.8
    style: str = "concise"
    sft_data: str = "journey"  # journey | shortcut
    epochs: float = 3.0
    lr: float = 5e-5
    dpo_lr: float = 2e-5
    prm_epochs: float = 1.0
    prm_lr: float = 1e-4
    batch_size: int = 16
    max_steps: int = -1  # > 0 caps every training (for quick runs and tests)
    pair_samples: int = 8
    pairs: int = 5
    dpo_problems: int | None = 100
    eval_samples: int = 4
    limit: int | None = None  # only the first N train problems
    test_limit: int | None = None
    seed: int = 0

    def __post_init__(self):
        check_at_least(1, rounds=self.rounds, pair_samples=self.pair_samples, pairs=self.pairs,
                       eval_samples=self.eval_samples, batch_size=self.batch_size)
        check_positive(epochs=self.epochs, lr=self.lr, dpo_lr=self.dpo_lr, prm_epochs=self.prm_epochs,
                       prm_lr=self.prm_lr)
        for name in ("limit", "test_limit", "dpo_problems"):
            if getattr(self, name) is not None:
                check_at_least(1, **{name: getattr(self, name)})
        if self.prm_loop not in PRM_LOOPS:
            raise ValueError(f"--prm-loop must be one of {', '.join(PRM_LOOPS)}, got {self.prm_loop!r}")
        if self.sft_data not in ("journey", "shortcut"):
            raise ValueError(f"--sft-data must be journey or shortcut, got {self.sft_data!r}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be > 0, or -1 to train by epochs; got {self.max_steps}")
        # The stage configs check the rest (search shape, PRM name, style) before anything runs.
        BuildTreeConfig(problems=self.problems, out=self.out_dir / "x", model=self.model, task=self.task,
                        prm=self.prm, prm_model=self.prm_model, width=self.width, depth=self.depth,
                        top_k=self.top_k, search=self.search, simulations=self.simulations,
                        temperature=self.temperature)
        DeriveConfig(trees=self.problems, out_dir=self.out_dir, max_trials=self.max_trials,
                     trial_prob=self.trial_prob, style=self.style)


@dataclass
class RunTestsConfig:
    """`journey run-tests`: score programs against their problems' tests in the sandbox."""

    problems: Path
    solutions: Path
    out: Path
    code_alpha: float = 0.5
    workers: int | None = None
    unsafe_no_sandbox: bool = False
    overwrite: bool = False

    def __post_init__(self):
        CodeConfig(alpha=self.code_alpha, workers=self.workers)


@dataclass
class GenTestsConfig:
    """`journey gen-tests`: a test-case generator (the policy proposes inputs, the sandboxed
    reference gives outputs) measured by how many tests the reference passes and by mutation
    score against the given tests."""

    problems: Path
    out: Path
    model: str = EMBEDDED_NAME
    backend: str = "transformers"
    n: int = 10  # test inputs asked of the policy per problem
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 48
    mutants: int = 20  # at most this many mutants of each reference
    seed: int = 0
    limit: int | None = None
    workers: int | None = None
    unsafe_no_sandbox: bool = False
    overwrite: bool = False

    def __post_init__(self):
        check_at_least(1, n=self.n, max_new_tokens=self.max_new_tokens, mutants=self.mutants)
        check_sampling_flags(self.temperature, self.top_p)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        CodeConfig(workers=self.workers)
