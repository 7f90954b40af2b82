"""The `openai` policy backend: any OpenAI-compatible completions server (`vllm serve`, SGLang, a
hosted teacher), by base URL, with bounded concurrency, retries with backoff, and timeouts.

    export OPENAI_BASE_URL=http://localhost:8000/v1 OPENAI_API_KEY=...   # key optional
    journey build-tree --backend openai --model Qwen/Qwen2.5-Math-1.5B-Instruct ...

Prompts are rendered locally with the model's own chat template (its tokenizer is loaded from
`tokenizer`, default the model name), then sent to `/completions` as raw text, so the server
continues the assistant turn exactly as the transformers backend does. One request per prefix
asks for `n` samples with the prefix's seed (vLLM honours per-request seeds, so runs repeat).
finish_reason "stop" covers both the model's end (EOS) and the step delimiter; the server must
say which: vLLM's `stop_reason` or SGLang's `matched_stop` is the delimiter when the step ended
(None or a token id at EOS). A server that says neither (a hosted API) cannot propose steps:
that is an error, not a guess, since guessing EOS would end every branch after one step; so is
any finish_reason but stop and length. Plain HTTP through the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from journey.models.policy import Policy, Prefix, Proposal, SamplingConfig

log = logging.getLogger(__name__)


class OpenAIPolicy(Policy):
    """Completions over HTTP (see module docstring)."""

    def __init__(self, model: str, delimiter: str = "\n", sampling: SamplingConfig | None = None,
                 base_url: str | None = None, api_key: str | None = None, tokenizer: str | None = None,
                 concurrency: int = 16, retries: int = 4, timeout: float = 120.0):
        from transformers import AutoTokenizer

        from journey.models.embedded import resolve_model

        self.model_id, self.delimiter = model, delimiter
        self.sampling = sampling or SamplingConfig()
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "http://localhost:8000/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer or model))
        self.concurrency, self.retries, self.timeout = concurrency, retries, timeout

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._all(prefixes, n, self.sampling.max_step_tokens, [self.delimiter])

    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        return self._all(prefixes, n, max_new_tokens, None)

    def _all(self, prefixes, n, max_tokens, stop) -> list[list[Proposal]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, n, max_tokens, stop), prefixes))

    def _one(self, prefix: Prefix, n: int, max_tokens: int, stop: list[str] | None) -> list[Proposal]:
        body = {"model": self.model_id, "prompt": self.render(prefix), "n": n, "max_tokens": max_tokens,
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "seed": prefix.seed, "logprobs": 1}
        if stop:
            body["stop"] = stop
        reply = self._post("/completions", body)
        return [self._to_proposal(c, stop) for c in sorted(reply["choices"], key=lambda c: c.get("index", 0))]

    def _to_proposal(self, choice: dict, stop: list[str] | None) -> Proposal:
        lp = (choice.get("logprobs") or {}).get("token_logprobs") or []
        tokens = len(lp) or len(self.tokenizer(choice["text"], add_special_tokens=False)["input_ids"])
        return Proposal(choice["text"], tokens, float(sum(x for x in lp if x is not None)),
                        self._finish(choice, stop))

    def _finish(self, choice: dict, stop: list[str] | None) -> str:
        """Why a completion ended: length, stop (at the delimiter) or eos (see module docstring)."""
        reason = choice.get("finish_reason")
        if reason == "length":
            return "length"
        if reason != "stop":
            raise ValueError(f"{self.base_url}: a completion ended with finish_reason {reason!r}, "
                             "not 'stop' or 'length'")
        if not stop:
            return "eos"
        for key in ("stop_reason", "matched_stop"):  # vLLM, SGLang
            if key in choice:
                return "stop" if choice[key] in stop else "eos"
        raise ValueError(f"{self.base_url}: the server does not say whether a completion ended at the "
                         "step delimiter or at EOS (no stop_reason or matched_stop); serve the model "
                         "with vLLM or SGLang")

    def _post(self, path: str, body: dict) -> dict:
        """POST JSON with retries and exponential backoff on connection errors, 429 and 5xx."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500 or attempt == self.retries:
                    detail = err.read().decode(errors="replace")[:200]
                    raise ValueError(f"{self.base_url}{path}: HTTP {err.code} ({detail})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.retries:
                    raise ValueError(f"{self.base_url}{path}: cannot reach the server ({err})") from None
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning("request to %s failed; retrying in %.1fs", self.base_url, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")
