"""The GPU path, run where there is no GPU: `--backend vllm` through build-tree, eval's greedy
n > 1, the PRM and rewrite seeds, against a stand-in of vLLM 0.33's Python API; the GPU memory
layout check; the GPU throughput benchmark's code.

The stand-in (`vllm` below) is vLLM's `LLM` and `SamplingParams` as far as journey uses them,
written from vLLM 0.33's source: the keywords they take (others are a TypeError), the checks
`SamplingParams` makes (temperature 0 with n > 1 is refused), text prompts tokenized with
special tokens unless told otherwise, sample j of a request seeded s drawn from seed s + j,
stop strings read into `stop_reason`, raw log-probs. It runs the weights with transformers.
What it cannot show is vLLM itself: kernels, memory, speed (for those: the README's "On a GPU").
"""

import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from journey.cli import app
from journey.config import BuildTreeConfig
from journey.longthought.rewrite import rewrite_drafts, rewrite_seed
from journey.models.base import GIB, Prefix, SamplingConfig, room_error
from journey.models.model_prms import QwenPRM, TokenPRM
from journey.models.prm import RolloutPRM
from journey.models.registry import build_prm, load_policy
from journey.models.transformers_policy import TransformersPolicy, check_room
from journey.tasks import get_task
from tests.helpers import QUESTION, make_bos_model

runner = CliRunner()
LOGPROBS_MODES = ("raw_logits", "raw_logprobs", "processed_logits", "processed_logprobs")
SAMPLING_FIELDS = dict(n=1, presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0, temperature=1.0,
                       top_p=1.0, top_k=0, min_p=0.0, seed=None, stop=None, stop_token_ids=None,
                       ignore_eos=False, max_tokens=16, min_tokens=0, logprobs=None,
                       include_stop_str_in_output=False, skip_special_tokens=True)


class SamplingParams:
    """vLLM 0.33's `SamplingParams` fields and checks (vllm/sampling_params.py)."""

    def __init__(self, **fields):
        unknown = set(fields) - set(SAMPLING_FIELDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument {sorted(unknown)[0]!r}")
        self.__dict__.update(SAMPLING_FIELDS | fields)
        self.stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if self.temperature < 1e-5:  # greedy
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0
            if self.n > 1:
                raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")


class LLM:
    """vLLM's offline engine, as journey drives it, running the weights with transformers."""

    def __init__(self, model: str, *, runner: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, enable_prefix_caching: bool | None = None,
                 logprobs_mode: str = "raw_logprobs", seed: int | None = None):
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode must be one of {LOGPROBS_MODES}")
        if runner not in ("auto", "generate", "pooling", "draft"):
            raise ValueError(f"runner must be one of auto, generate, pooling, draft, got {runner!r}")
        self.engine_args = dict(gpu_memory_utilization=gpu_memory_utilization, logprobs_mode=logprobs_mode,
                                enable_prefix_caching=enable_prefix_caching)
        self.runner_type = runner
        if runner == "pooling":  # Qwen2ForProcessRewardModel: the body and 2-way head, read here
            self.pooler = QwenPRM(model, device="cpu")
            self.requests = []
            LLM.last_pooling = self
            return
        self.runner = TransformersPolicy(model)
        self.model_config = SimpleNamespace(max_model_len=self.runner.context_length)
        self.requests: list[tuple[list[int], SamplingParams]] = []
        LLM.last = self

    def get_tokenizer(self):
        return self.pooler.tok if self.runner_type == "pooling" else self.runner.tokenizer

    def encode(self, prompts, pooling_params=None, *, use_tqdm=True, lora_request=None, pooling_task=None,
               tokenization_kwargs=None):
        """vLLM 0.33's pooling entry point. For Qwen2ForProcessRewardModel with "token_classify":
        STEP pooling at the step tag (vLLM's default tag 151651 is Qwen's <extra_0>; here the
        tokenizer's own <extra_0>), softmax over the head's two logits: a [steps, 2] tensor."""
        if self.runner_type != "pooling":
            raise ValueError("LLM.encode() is only supported for pooling models. Try passing `--runner pooling`")
        if pooling_task != "token_classify":
            raise ValueError(f"pooling task {pooling_task!r} is not supported by Qwen2ForProcessRewardModel "
                             "(supported: token_classify)")
        prm, out = self.pooler, []
        for p in prompts:
            ids = p["prompt_token_ids"] if isinstance(p, dict) else prm.tok(p)["input_ids"]
            self.requests.append(ids)
            with torch.inference_mode():
                hidden = prm.body(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, h)
                steps = [i for i, t in enumerate(ids) if t == prm.step_id]
                data = torch.softmax(prm.head(hidden[steps].float()), -1)  # (steps, 2)
            out.append(SimpleNamespace(prompt_token_ids=ids, outputs=SimpleNamespace(data=data), finished=True))
        return out

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
                 tokenization_kwargs=None):
        tok = self.runner.tokenizer
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        special = (tokenization_kwargs or {}).get("add_special_tokens", True)
        ids = [p["prompt_token_ids"] if isinstance(p, dict) else tok(p, add_special_tokens=special)["input_ids"]
               for p in prompts]
        self.requests += list(zip(ids, params))
        return [SimpleNamespace(prompt_token_ids=i, outputs=self._children(tok.decode(i), sp))
                for i, sp in zip(ids, params)]

    def _children(self, text: str, sp: SamplingParams) -> list:
        """The n samples of one request; child j is seeded seed + j (vLLM's ParentRequest)."""
        self.runner.sampling = SamplingConfig(sp.temperature, sp.top_p, 1, 256)
        stop = sp.stop[0] if sp.stop else None
        seeds = [(sp.seed or 0) + j for j in range(sp.n)]
        drawn = self.runner.generate_texts([text] * sp.n, seeds, 1, sp.max_tokens, stop)
        out = []
        for j, [p] in enumerate(drawn):
            kept = p.text + (stop if p.finish == "stop" and sp.include_stop_str_in_output else "")
            out.append(SimpleNamespace(index=j, text=kept, token_ids=[0] * p.tokens,
                                       cumulative_logprob=p.logprob if sp.logprobs is not None else None,
                                       finish_reason="length" if p.finish == "length" else "stop",
                                       stop_reason=stop if p.finish == "stop" else None))
        return out


@pytest.fixture
def vllm(monkeypatch):
    """`import vllm` gives the stand-in above."""
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_build_tree_on_vllm(vllm, tmp_path):
    problems, out = tmp_path / "p.jsonl", tmp_path / "t.jsonl"
    runner.invoke(app, ["problems", "--n", 3, "--seed", 5, "--out", str(problems)])
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out), "--backend", "vllm",
                                 "--depth", "5", "-w", "3"])
    assert result.exit_code == 0, result.output
    trees = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(trees) == 3 and max(n["depth"] for t in trees for n in t["nodes"]) > 1
    engine = vllm.LLM.last
    assert engine.engine_args == {"gpu_memory_utilization": 0.9, "logprobs_mode": "raw_logprobs",
                                  "enable_prefix_caching": True}
    for _, sp in engine.requests:  # every field a server would fill from generation_config: sent, off
        assert (sp.top_k, sp.min_p, sp.repetition_penalty, sp.stop) == (-1, 0.0, 1.0, ["\n"])


def test_greedy_with_n_above_1_on_vllm(vllm):
    """build-tree --temperature 0, the rollout PRM at T=0, eval --samples k at T=0: vLLM refuses
    n > 1 there, so one greedy sample is drawn and copied."""
    greedy = SamplingConfig(temperature=0.0)
    policy = load_policy("embedded", "\n", greedy, "vllm")
    [props] = policy.propose([Prefix(QUESTION, [], seed=3)], n=3)
    [[one]] = TransformersPolicy("embedded", sampling=greedy).propose([Prefix(QUESTION, [], seed=3)], n=1)
    assert [(p.text, p.finish) for p in props] == [(one.text, one.finish)] * 3
    assert all(sp.n == 1 for _, sp in vllm.LLM.last.requests)
    task = get_task("arith")
    [score] = RolloutPRM(task, policy, rollouts=4).score(["2 + 3 * 4"], [["3 * 4 = 12"]], ["14"])
    assert score.score in (0.0, 1.0)  # four copies of one greedy rollout
    [[a, b]] = policy.complete([Prefix(QUESTION, [], seed=3)], 2, 100)
    assert a == b and a.finish == "eos"


def test_vllm_gets_token_ids_with_one_bos(vllm, tmp_path):
    model, bos = make_bos_model(tmp_path)
    policy = load_policy(model, "\n", SamplingConfig(max_step_tokens=4), "vllm")
    assert policy.render(Prefix(QUESTION)).startswith("<s>")
    policy.propose([Prefix(QUESTION, ["2 + 3 = 5"], seed=0)], n=2)
    [(ids, _)] = vllm.LLM.last.requests
    assert ids[0] == bos and ids[1] != bos  # a text prompt would have been given a second BOS


def test_gpu_memory_utilization_reaches_vllm_and_is_checked(vllm, tmp_path):
    load_policy("embedded", "\n", SamplingConfig(), "vllm", gpu_memory_utilization=0.55)
    assert vllm.LLM.last.engine_args["gpu_memory_utilization"] == 0.55
    assert (BuildTreeConfig.gpu_memory_utilization, BuildTreeConfig.prm_device) == (0.9, None)
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 1, "--out", str(problems)])
    for flags, message in [(["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be in (0, 1], got 1.5"),
                           (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization must be in (0, 1], got 0"),
                           (["--prm-device", "gpu1"], "--prm-device must be cpu, cuda or cuda:N, got 'gpu1'")]:
        result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(tmp_path / "t.jsonl"),
                                     *flags])
        assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.parametrize(
    "need, free, share, expected",
    [
        (18.0, 20.0, 0.9, None),  # fits
        # vLLM holds 72 of 80 GiB, others 0.5: a PRM of 18 fits under 1 - 18.5/80 = 0.768
        (18.0, 7.5, 0.9, "set --gpu-memory-utilization 0.76 or lower, or put it on another GPU"),
        (75.0, 7.5, 0.9, "(vLLM holds --gpu-memory-utilization 0.9 of it); put it on another GPU"),
        (18.0, 7.5, None, "give vLLM less of this GPU with --gpu-memory-utilization"),
    ],
)
def test_room_error(need, free, share, expected):
    message = room_error(int(need * GIB), int(free * GIB), 80 * GIB, "cuda:0", "--prm-model Qwen/PRM", share)
    if expected is None:
        assert message is None
    else:
        assert message.startswith(f"--prm-model Qwen/PRM needs about {need:.1f} GiB on cuda:0, but only "
                                  f"{free:.1f} of its 80 GiB are free") and expected in message


def test_a_judge_that_does_not_fit_beside_vllm_is_refused_before_it_moves(vllm, monkeypatch):
    """On an 80 GiB card with vLLM at 0.9 and 1 GiB free, a judge needing ~1.1 GiB (weights, a
    batch of 16,384 tokens with its KV cache, 1 GiB for CUDA) is refused with the share that
    leaves it room. (torch's free-memory query is the one thing stood in for.)"""
    policy = load_policy("embedded", "\n", SamplingConfig(), "vllm", gpu_memory_utilization=0.9)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * GIB, 80 * GIB))
    with pytest.raises(ValueError, match=r"--prm-model embedded needs about 1\.1 GiB on cuda:0, .*"
                                         r"set --gpu-memory-utilization 0\.89 or lower"):
        build_prm("judge", get_task("arith"), policy, "embedded", device="cuda:0")
    check_room(policy.llm.runner.model, "cpu", "--prm-model x", 0.9)  # the CPU is never checked


def test_a_model_prm_that_does_not_fit_is_refused_before_it_moves(monkeypatch, tmp_path):
    model, _ = make_bos_model(tmp_path)  # any small causal LM will do
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(0.5 * GIB), 24 * GIB))
    with pytest.raises(ValueError, match=rf"--prm-model {model} needs about 1\.0 GiB on cuda:1, but only 0\.5 of "
                                         r"its 24 GiB are free; put it on another GPU with --prm-device"):
        TokenPRM(model, tag="#", device="cuda:1")


def test_rewrite_seeds_are_hashed_not_consecutive(vllm):
    """vLLM draws sample j of a request seeded s from s + j: consecutive seeds share streams. A
    draft's rewrite seed comes from the run seed and its text, wherever it sits in the batch."""
    task = get_task("arith")
    items = [("2 + 3", "2 + 3 = 5\nThe answer is 5.", "5"), ("4 * 5", "4 * 5 = 20\nThe answer is 20.", "20")]
    policy = load_policy("embedded", "\n", SamplingConfig(temperature=0.7), "vllm")
    seeds = []
    for batch in (items, items[::-1]):
        rewrite_drafts(policy, task, batch, max_new_tokens=8, seed=7)
        seeds.append({tuple(ids): sp.seed for ids, sp in vllm.LLM.last.requests[-2:]})
    assert seeds[0] == seeds[1]
    a, b = (rewrite_seed(7, q, d) for q, d, _ in items)
    assert abs(a - b) > 1000 and 0 <= a < 2**31 and rewrite_seed(8, *items[0][:2]) != a


def bench_main():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from bench_gpu_throughput import main
    finally:
        sys.path.pop(0)
    return main


def test_gpu_benchmark_reads_raw_math500_rows_and_refuses_repeats(vllm, tmp_path, capsys):
    """MATH-500's own rows (problem, solution, answer) with --format math, as `problems --from`
    reads them; repeated questions (the math task's shipped 20, cycled) are refused."""
    main = bench_main()
    raw = tmp_path / "math500.jsonl"
    raw.write_text("".join(json.dumps({"problem": f"What is ${i} + {i}$?", "solution": f"$\\boxed{{{2 * i}}}$",
                                       "answer": str(2 * i), "unique_id": f"test/algebra/{i}.json"}) + "\n"
                           for i in range(1, 4)))
    flags = ["--backend", "vllm", "--model", "embedded", "--task", "math", "--prm", "verifier", "--width", "2",
             "--depth", "1", "--max-step-tokens", "8", "--trees-in-flight", "3"]
    with pytest.raises(SystemExit, match="not journey rows: give --format"):
        main([*flags, "--problems", str(raw)])
    with pytest.raises(SystemExit, match="25 problems but only 20 different questions"):
        main([*flags, "--n", "25"])
    result = main([*flags, "--prm", "rollout", "--rollouts", "1", "--problems", str(raw), "--format", "math"])
    assert result["problems"] == 3


def test_gpu_benchmark_runs(vllm, capsys):
    main = bench_main()
    result = main(["--backend", "vllm", "--model", "embedded", "--task", "arith", "--prm", "verifier", "--n", "3",
                   "--width", "2", "--depth", "3", "--max-step-tokens", "32", "--trees-in-flight", "3"])
    assert result["problems"] == 3 and result["build_tree_tokens_per_s"] > 0 and result["generate_tokens_per_s"] > 0
    assert "build-tree / plain generate:" in capsys.readouterr().out


def test_qwen_prm_on_vllms_pooling_runner(vllm, qwen_prm_dir):
    """--prm qwen --prm-backend vllm: vLLM's pooling runner gives what the transformers reader does."""
    from journey.models.vllm_prm import VLLMQwenPRM

    prm = build_prm("qwen", get_task("arith"), None, str(qwen_prm_dir), backend="vllm", gpu_memory_utilization=0.3)
    assert isinstance(prm, VLLMQwenPRM) and vllm.LLM.last_pooling.engine_args["gpu_memory_utilization"] == 0.3
    questions, paths = ["2 + 3 * 4", "(23 + 19) * 3 - 41"], [["3 * 4 = 12"], ["23 + 19 = 42", "42 * 3 = 126"]]
    got = prm.score(questions, paths)
    want = QwenPRM(str(qwen_prm_dir), device="cpu").score(questions, paths)
    assert [s.score for s in got] == pytest.approx([s.score for s in want], abs=1e-5)
    assert [s.ok for s in got] == [s.ok for s in want]
    ids = vllm.LLM.last_pooling.requests[0]  # token ids, the template's own specials only
    assert ids == prm.tok.encode(prm.render(questions[0], paths[0]), add_special_tokens=False)


@pytest.mark.parametrize("flags, message", [
    (["--prm", "token", "--prm-backend", "vllm"], "--prm-backend vllm serves --prm qwen only"),
    (["--prm", "qwen", "--prm-backend", "vllm", "--prm-device", "cuda:1"], "vLLM places its engine itself"),
    (["--prm", "qwen", "--prm-backend", "vllm", "--backend", "vllm", "--gpu-memory-utilization", "0.8",
      "--prm-gpu-memory-utilization", "0.3"], "add up to more than the GPU"),
    (["--prm-batch-tokens", "0"], "--prm-batch-tokens must be >= 1"),
])
def test_prm_backend_flags_are_checked(flags, message, tmp_path):
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 1, "--out", str(problems)])
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(tmp_path / "t.jsonl"),
                                 "--prm-model", "x", *flags])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


def test_prm_backend_vllm_without_vllm_is_a_clear_error(qwen_prm_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm fails
    with pytest.raises(ValueError, match="--prm-backend vllm needs vLLM"):
        build_prm("qwen", get_task("arith"), None, str(qwen_prm_dir), backend="vllm")
