"""The `vllm` policy backend: vLLM's offline engine in this process, for GPUs (the `vllm` extra).

    pip install 'journey[vllm]'
    journey build-tree --backend vllm --model Qwen/Qwen2.5-Math-1.5B-Instruct ...

All prefixes of a call go to one `LLM.generate` with one `SamplingParams` per prefix
(`n=w, stop=[delimiter], include_stop_str_in_output=True, seed=prefix seed`); prefix caching
(on by default in vLLM V1) shares the work of prompts that extend one another, which is what
tree search sends. Written against vLLM 0.33, where:

- prompts go in as token ids (`{"prompt_token_ids": ...}`), tokenized here without special
  tokens: the rendered chat template already holds its BOS, and a text prompt would get a
  second one (the transformers backend tokenizes the same way);
- the sampling fields the server would fill in from generation_config (top_k, min_p,
  repetition_penalty) are set off explicitly (`NEUTRAL_SAMPLING`), as in every backend;
- log-probs are raw, before temperature (`logprobs_mode="raw_logprobs"`, set explicitly): what
  `Proposal.logprob` means in every backend;
- temperature 0 with n > 1 is refused by `SamplingParams` ("n must be 1 when using greedy
  sampling"), so one greedy sample is drawn and copied;
- sample j of a request seeded s is drawn from seed s + j; journey's seeds are 31-bit hashes
  (`search.build.node_seed`, `prm.text_seed`), so the streams of two prefixes do not overlap.
  A seed fixes the draws, not the arithmetic: outputs repeat bit for bit only when batch
  composition cannot change the kernels' results, i.e. with `VLLM_BATCH_INVARIANT=1` in the
  environment (slower); without it a rerun may differ in a few samples.

`gpu_memory_utilization` is the share of the GPU vLLM takes for weights and KV cache; a PRM or
judge loaded after it on the same GPU gets what is left (`model_prms.check_room`). Not run in
CI (no GPU there); tests/test_gpu_path.py drives it against a stand-in of vLLM's Python API.
"""

from __future__ import annotations

from journey.models.base import NEUTRAL_SAMPLING, Policy, Prefix, Proposal, SamplingConfig


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
        self.gpu_memory_utilization = gpu_memory_utilization
        self.llm = LLM(resolve_model(model), tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True,
                       logprobs_mode="raw_logprobs")
        self.tokenizer = self.llm.get_tokenizer()
        self.context_length = getattr(getattr(self.llm, "model_config", None), "max_model_len", None)

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, self.sampling.max_step_tokens, [self.delimiter])

    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        return self._generate(prefixes, n, max_new_tokens, None)

    def _generate(self, prefixes, n, max_tokens, stop) -> list[list[Proposal]]:
        from vllm import SamplingParams

        params = [SamplingParams(n=self.draws(n), temperature=self.sampling.temperature,
                                 top_p=self.sampling.top_p, **NEUTRAL_SAMPLING, max_tokens=max_tokens,
                                 stop=stop, include_stop_str_in_output=True, seed=p.seed, logprobs=0)
                  for p in prefixes]
        prompts = [{"prompt_token_ids": self.prompt_ids(self.render(p))}
                   for p in prefixes]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [self.copies([self._to_proposal(o, stop) for o in out.outputs], n) for out in outputs]

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
