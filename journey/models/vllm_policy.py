"""The `vllm` policy backend: vLLM in this process, for GPUs (the optional `vllm` extra).

    pip install 'journey[vllm]'
    journey build-tree --backend vllm --model Qwen/Qwen2.5-Math-1.5B-Instruct ...

All prefixes of a call go to one `LLM.generate` with `SamplingParams(n=w, stop=[delimiter],
include_stop_str_in_output=True, seed=...)`; prefix caching (on by default in vLLM V1) shares
the work of prompts that extend one another, which is what tree search sends. One
SamplingParams per prefix carries that prefix's seed, so runs repeat. Not exercised in CI
(no GPU there); the import error below is.
"""

from __future__ import annotations

from journey.models.policy import Policy, Prefix, Proposal, SamplingConfig


class VLLMPolicy(Policy):
    """Policy on vLLM's offline `LLM` engine (see module docstring)."""

    def __init__(self, model: str, delimiter: str = "\n", sampling: SamplingConfig | None = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9):
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError("--backend vllm needs vLLM: pip install 'journey[vllm]' (on a GPU machine)") from None
        from journey.models.embedded import resolve_model

        self.model_id, self.delimiter = model, delimiter
        self.sampling = sampling or SamplingConfig()
        self.llm = LLM(resolve_model(model), tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)
        self.tokenizer = self.llm.get_tokenizer()

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, self.sampling.max_step_tokens, [self.delimiter])

    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, max_new_tokens, None)

    def _generate(self, prefixes, n, max_tokens, stop) -> list[list[Proposal]]:
        from vllm import SamplingParams

        params = [SamplingParams(n=n, temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                                 max_tokens=max_tokens, stop=stop, include_stop_str_in_output=True,
                                 seed=p.seed, logprobs=0) for p in prefixes]
        outputs = self.llm.generate([self.render(p) for p in prefixes], params, use_tqdm=False)
        return [[self._to_proposal(o, stop) for o in out.outputs] for out in outputs]

    def _to_proposal(self, o, stop) -> Proposal:
        """One vLLM `CompletionOutput` as a Proposal; the delimiter is cut off the text.

        finish_reason "stop" with `stop_reason` a stop string: the step ended; None or a token
        id: EOS. Anything but stop and length (an aborted request) is an error, not an ending.
        """
        text = o.text
        if o.finish_reason == "length":
            finish = "length"
        elif o.finish_reason != "stop":
            raise ValueError(f"vLLM ended a completion with finish_reason {o.finish_reason!r}, not 'stop' or 'length'")
        elif stop and o.stop_reason in stop:
            finish, text = "stop", text[: len(text) - len(o.stop_reason)] if text.endswith(o.stop_reason) else text
        else:
            finish = "eos"
        return Proposal(text, len(o.token_ids), float(o.cumulative_logprob or 0.0), finish)
