"""Names -> policies and PRMs: the tables `--backend` and `--prm` pick from, and their factories.

The base modules (`policy.py`, `prm.py`) hold the interfaces that every implementation imports;
the tables that name the implementations live here, so no base module imports its own
implementations (that was an import circle). Each table is a plain dict name -> loader, and a
loader imports its module only when called: vLLM, the model PRMs and torch load only when picked,
so `PRMS`, `BACKENDS` and `prm_explains` cost nothing to import.

    from journey.models.registry import build_prm, load_policy
    policy = load_policy("embedded", "\\n", SamplingConfig())
    prm = build_prm("verifier", task)

`PRM_EXPLAINS` says whose reasons explain what went wrong ("42 * 3 is 126, not 116."), so a
reflection can quote them, and whose give only a statistic ("0 of 4 rollouts ...") or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: importing them would load torch
    from journey.models.base import Policy, SamplingConfig
    from journey.models.prm import PRM
    from journey.tasks.base import Task


# ---------------------------------------------------------------- policies


def _transformers(model: str, delimiter: str, sampling: SamplingConfig, device: str | None = None,
                  **options) -> Policy:
    from journey.models.embedded import check_model_path, load_failure, resolve_model
    from journey.models.transformers_policy import TransformersPolicy, check_chat_template

    check_model_path(model)
    try:
        policy = TransformersPolicy(model, delimiter=delimiter, sampling=sampling, device=device, **options)
    except (OSError, ValueError) as err:
        raise ValueError(load_failure("--model", model, err)) from None
    check_chat_template(policy.tokenizer, model, resolve_model(model))
    return policy


def _openai(model: str, delimiter: str, sampling: SamplingConfig) -> Policy:
    from journey.models.openai_policy import OpenAIPolicy

    return OpenAIPolicy(model, delimiter=delimiter, sampling=sampling)


def _vllm(model: str, delimiter: str, sampling: SamplingConfig, gpu_memory_utilization: float = 0.9) -> Policy:
    from journey.models.vllm_policy import VLLMPolicy

    return VLLMPolicy(model, delimiter=delimiter, sampling=sampling, gpu_memory_utilization=gpu_memory_utilization)


# name -> loader(model, delimiter, sampling)
BACKENDS: dict[str, Callable[[str, str, SamplingConfig], Policy]] = {
    "transformers": _transformers,
    "openai": _openai,
    "vllm": _vllm,
}


def load_policy(model: str, delimiter: str, sampling: SamplingConfig,
                backend: str = "transformers", gpu_memory_utilization: float = 0.9) -> Policy:
    """The policy for `--model` on `--backend`, or a one-line ValueError naming the flag.

    transformers: a local folder, `embedded`, or a hub id, run in this process (CPU or GPU).
    openai: a model served by an OpenAI-compatible server at $OPENAI_BASE_URL.
    vllm: vLLM in this process (GPU; the optional `vllm` extra), taking `gpu_memory_utilization`
    of the GPU for weights and KV cache; a PRM on the same GPU gets the rest.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "vllm":
        return _vllm(model, delimiter, sampling, gpu_memory_utilization)
    return BACKENDS[backend](model, delimiter, sampling)


# ---------------------------------------------------------------- PRMs
# A loader's `device` is where a PRM model goes (None: "cuda" when there is one, else "cpu").


def _verifier(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None) -> PRM:
    from journey.models.prm import VerifierPRM

    return VerifierPRM(task)


def _rollout(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None,
             depth: int | None = None, rollout_tokens: int | None = None) -> PRM:
    from journey.models.prm import RolloutPRM

    if policy is None:
        raise ValueError("the rollout PRM needs a policy")
    return RolloutPRM(task, policy, rollouts, rollout_tokens, depth)


def _model_prm(name: str) -> Callable[..., PRM]:
    def load(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None,
             batch_tokens: int | None = None, backend: str = "transformers",
             gpu_memory_utilization: float | None = None) -> PRM:
        if not model:
            raise ValueError(f"--prm {name} needs --prm-model (a PRM checkpoint)")
        if backend == "vllm":
            if name != "qwen":
                raise ValueError(f"--prm-backend vllm serves --prm qwen only, not --prm {name}")
            from journey.models.vllm_prm import VLLMQwenPRM

            return VLLMQwenPRM(model, task, gpu_memory_utilization=gpu_memory_utilization or 0.25)
        from journey.models.embedded import check_model_path, loading
        from journey.models.model_prms import DEFAULT_BATCH_TOKENS, QwenPRM, TokenPRM

        # vLLM's share of its GPU, so a refusal can say how much to give back
        share = getattr(policy, "gpu_memory_utilization", None)
        check_model_path(model, "--prm-model")
        with loading("--prm-model", model):
            return (TokenPRM if name == "token" else QwenPRM)(
                model, task, batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS, device=device, vllm_share=share)

    return load


def _judge(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None,
           batch_tokens: int | None = None, backend: str = "transformers",
           gpu_memory_utilization: float | None = None) -> PRM:
    from journey.models.judge import JudgePRM

    if backend != "transformers":
        raise ValueError(f"--prm-backend {backend} serves --prm qwen only; a judge runs with transformers "
                         "(or is the policy itself: --prm judge without --prm-model)")
    judge = policy
    if model:
        from journey.models.base import SamplingConfig
        from journey.models.embedded import resolve_model
        from journey.models.model_prms import DEFAULT_BATCH_TOKENS, default_device
        from journey.models.transformers_policy import check_room, load_dtype

        target = device or default_device()
        budget = batch_tokens or DEFAULT_BATCH_TOKENS
        try:  # on the CPU first, in the dtype it will run in, moved once it is known to fit
            judge = _transformers(model, task.step_delimiter, SamplingConfig(temperature=0.0), "cpu",
                                  dtype=load_dtype(resolve_model(model), target), batch_tokens=budget)
        except ValueError as err:
            raise ValueError(str(err).replace("--model", "--prm-model", 1)) from None
        check_room(judge.model, target, f"--prm-model {model}", getattr(policy, "gpu_memory_utilization", None),
                   budget, cache=True)
        judge.to(target)
    if judge is None:
        raise ValueError("--prm judge needs --prm-model or a policy")
    return JudgePRM(task, judge)


def _trained(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None) -> PRM:
    if not model:
        raise ValueError("--prm trained needs --prm-model (a checkpoint from `journey train --stage prm`)")
    from journey.models.trained_prm import TrainedPRM

    return TrainedPRM(model, task, device=device)


def _tests(task: Task, policy: Policy | None, model: str | None, rollouts: int, device: str | None,
           depth: int | None = None, rollout_tokens: int | None = None) -> PRM:
    from journey.models.tests_prm import TestsPRM  # the code task's: programs by their tests

    if policy is None:
        raise ValueError("the tests PRM needs a policy (for rollouts from plan steps)")
    return TestsPRM(task, policy, rollouts, rollout_tokens, depth)


# name -> loader(task, policy, model, rollouts, device)
PRMS: dict[str, Callable[..., PRM]] = {
    "verifier": _verifier,
    "rollout": _rollout,
    "token": _model_prm("token"),
    "qwen": _model_prm("qwen"),
    "judge": _judge,
    "trained": _trained,
    "tests": _tests,
}

# Whether a PRM's reasons say what went wrong, so a reflection can quote them. The verifier and
# the judge explain ("42 * 3 is 126, not 116."); rollout gives a statistic ("0 of 4 rollouts
# from this step reach the right answer."), token and qwen a number ("... gives this step 0.12.").
PRM_EXPLAINS: dict[str, bool] = {
    "verifier": True,
    "rollout": False,
    "token": False,
    "qwen": False,
    "judge": True,
    "trained": False,
    "tests": True,  # quotes the failing test: input, expected, got
}
assert PRM_EXPLAINS.keys() == PRMS.keys(), "every PRM says whether its reasons explain"


# The PRMs that roll the policy out: they also take the search depth and --rollout-tokens.
ROLLING_PRMS = ("rollout", "tests")
# The PRMs that run a model of their own: they take --prm-batch-tokens and --prm-backend.
MODEL_PRMS = ("token", "qwen", "judge")
PRM_BACKENDS = ("transformers", "vllm")  # vllm: --prm qwen through vLLM's pooling runner


def check_prm(name) -> None:
    """ValueError naming the known PRMs unless `name` is one."""
    if name not in PRMS:
        raise ValueError(f"unknown PRM {name!r}; known PRMs: {', '.join(PRMS)}")


def build_prm(name: str, task: Task, policy: Policy | None = None, model: str | None = None,
              rollouts: int = 4, device: str | None = None, depth: int | None = None,
              rollout_tokens: int | None = None, batch_tokens: int | None = None,
              backend: str = "transformers", gpu_memory_utilization: float | None = None) -> PRM:
    """The PRM called `name` for `task` (ValueError naming the known PRMs otherwise).

    rollout and tests roll out `policy`, each rollout up to `rollout_tokens` or else the steps
    left to `depth` at the policy's max_step_tokens; token and qwen read the PRM checkpoint
    `model` (a folder or a hub id); judge asks the LLM `model` (default: the policy itself). A
    PRM or judge model goes on `device` (default "cuda" when there is one) in forwards of at
    most `batch_tokens` tokens, refused up front if it does not fit there; with `backend` vllm
    a qwen PRM runs on vLLM's pooling runner with `gpu_memory_utilization` of its GPU.
    """
    check_prm(name)
    if backend != "transformers" and name not in MODEL_PRMS:
        raise ValueError(f"--prm-backend {backend} is for a PRM model (--prm qwen), not --prm {name}")
    extra = {}
    if name in ROLLING_PRMS:
        extra = {"depth": depth, "rollout_tokens": rollout_tokens}
    elif name in MODEL_PRMS:
        extra = {"batch_tokens": batch_tokens, "backend": backend, "gpu_memory_utilization": gpu_memory_utilization}
    return PRMS[name](task, policy, model, rollouts, device, **extra)


def prm_explains(name: str | None) -> bool:
    """Whether reasons from the PRM called `name` can be quoted in a reflection.

    None (a tree built by hand, with no run record) -> True: its reasons were written to be read.
    A name not in `PRM_EXPLAINS` -> False: a doubt without the reason is never a wrong lesson.
    """
    return True if name is None else PRM_EXPLAINS.get(name, False)
