"""The `openai` policy backend: any OpenAI-compatible completions server (`vllm serve`, SGLang,
`python -m llama_cpp.server`, a hosted API), by base URL, with bounded concurrency, retries with
backoff, and timeouts.

    export OPENAI_BASE_URL=http://localhost:8000/v1 OPENAI_API_KEY=...   # key optional
    journey build-tree --backend openai --model Qwen/Qwen2.5-Math-1.5B-Instruct ...

Prompts are rendered locally with the model's own chat template (its tokenizer is loaded from
`tokenizer`, default the model name; a `.gguf` path goes through `resolve_model`, so the file
llama.cpp serves is also where the template comes from) and sent to `/completions` raw, so the
server continues the assistant turn exactly as the transformers backend does. Before its first
request the backend asks `GET /models` who serves: vLLM and SGLang write their name in
`owned_by` (and give `max_model_len`, which `check_fits` then uses); llama_cpp.server writes
`owned_by: "me"` (its only answer, measured on 0.3.36); any other answer, or none, is a hosted
OpenAI-style API. $JOURNEY_OPENAI_SERVER (vllm, sglang, llamacpp or other) says it instead of
asking, for a server that answers GET /models otherwise. The four differ where it matters:

    server    prompt sent as                    extra sampling fields     a step's end is read from
    vllm      text, add_special_tokens: false   top_k, min_p, rep. pen.   stop=[delimiter]; stop_reason
    sglang    token ids (no add_special_tokens) top_k, min_p, rep. pen.   stop=[delimiter]; matched_stop
    llamacpp  text minus the template's BOS     top_k, min_p, typical_p,  stop=[delimiter]; its
                                                repeat_penalty            log-probs' tokens
    other     text minus the template's BOS     none (refused there)      no stop sent: cut here

- The prompt already holds the chat template's BOS; a server that tokenizes it with special
  tokens would add a second one. vLLM is told not to, SGLang gets the ids we tokenized, and
  llama.cpp and a hosted API (which cannot be told; llama.cpp takes no token ids either) get the
  text without its leading BOS when the tokenizer adds one itself, so the server adds it back.
- Every field that `vllm serve` would otherwise fill in from the model's generation_config
  (top_k, min_p, repetition_penalty) is sent, set off (`NEUTRAL_SAMPLING`), so all backends
  sample from softmax(logits / temperature) cut to top_p; a hosted API gets only the
  standard fields (presence and frequency penalty 0). llama_cpp.server has defaults of its own
  (top_k 40, min_p 0.05, repeat_penalty 1.1) under its own names, sent off in `LLAMACPP_NEUTRAL`.
  One difference cannot be sent away: llama.cpp's sampler chain cuts to top_p *before* it
  divides by the temperature (top-k, typical, top-p, min-p, temp, dist), so at top_p < 1 its
  nucleus is the one of softmax(logits), not of softmax(logits / temperature); at top_p 1 the
  two are the same distribution.
- finish_reason "stop" covers both the model's end (EOS) and a stop string. vLLM's
  `stop_reason` and SGLang's `matched_stop` hold the stop string when the step ended there (None
  or a token id at EOS). llama_cpp.server says neither, but its log-probs list every generated
  token, the one that completed the stop string included, while its text is cut before the
  stop string; at EOS the tokens spell the text (EOS itself is not listed). So a step ended at
  the delimiter exactly when the listed tokens hold it (`logprobs` is always asked for). A
  hosted API says neither, so no `stop` is sent to it: the completion runs to EOS or the step's
  token budget and is cut here at the first delimiter, its tokens and log-probs counted up to
  the delimiter (from the log-probs' text offsets). That costs the tokens past the delimiter; it
  is the only answer a server that does not say why it stopped allows. Any finish_reason but
  stop and length is an error, not an ending.

On vLLM (and a hosted API) one request per prefix asks for `n` samples with the prefix's seed
(vLLM draws sample j from seed + j; journey's seeds are hashed, so those streams do not
overlap). SGLang and llama.cpp get `n` requests of one sample each, seeded seed + j, i.e. what
vLLM does inside: SGLang gives all n copies of one request the same SamplingParams, and its
seeded sampler (with --enable-deterministic-inference; without it the seed is dropped) hashes
only seed, position and column, so n > 1 with one seed would be n identical samples, a tree of
width 1; llama_cpp.server ignores `n` and answers one choice (its seed is per request and
repeatable). A reply with more or fewer choices than asked for is an error, never a narrower
tree or fewer distilled samples. At temperature 0 one sample is asked for and copied (vLLM
answers n > 1 there with HTTP 400). Log-probs are raw (before temperature), as vLLM reports them
by default and llama.cpp always does (a log-softmax of the logits); SGLang reports them after
temperature unless served with SGLANG_RETURN_ORIGINAL_LOGPROB=1.

llama_cpp.server runs one completion at a time (a lock around its one model), so it gets one
request at a time: more in flight would only wait in its queue, inside their timeouts. It
states its context (`--n_ctx`, default 2048) in no route, only in the HTTP 400 that refuses a
longer prompt ("This model's maximum context length is 2048 tokens, ..."), before evaluating
a token; and it silently shortens `max_tokens` to what fits. So on first use one prompt a token
longer than the model was trained for (its config's `max_position_embeddings`) is sent with
max_tokens 1, and `context_length` is read from the refusal (`llamacpp_context`).

Plain HTTP through the standard library. A request's timeout is `timeout` plus a second per
token it may generate: llama.cpp on 2 CPU cores makes 5 tokens/s with log-probs, and a request
that timed out keeps a server busy while its retry waits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from journey.models.base import NEUTRAL_SAMPLING, Policy, Prefix, Proposal, SamplingConfig

log = logging.getLogger(__name__)

SERVER_KINDS = ("vllm", "sglang", "llamacpp", "other")
SERVER_ENV = "JOURNEY_OPENAI_SERVER"  # names the kind instead of GET /models
OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "me": "llamacpp"}  # `owned_by` in GET /models -> kind
STOP_FIELD = {"vllm": "stop_reason", "sglang": "matched_stop"}
ONE_SAMPLE_A_REQUEST = ("sglang", "llamacpp")  # they get n requests seeded seed + j
# llama_cpp.server's own names and defaults (top_k 40, min_p 0.05, repeat_penalty 1.1), set off;
# top_k 0 is off there (it refuses -1)
LLAMACPP_NEUTRAL = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0,
                    "presence_penalty": 0.0, "frequency_penalty": 0.0}
TOKEN_SECONDS = 1.0  # each token a request may generate adds this to its timeout (see module docstring)
CONTEXT_REFUSAL = re.compile(r"maximum context length is (\d+) tokens")  # llama_cpp.server's HTTP 400


class HTTPRefusal(ValueError):
    """A server's answer with an HTTP error status: the one-line message, and the status and body."""

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status, self.detail = status, detail


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
        self.tokenizer_path = resolve_model(tokenizer or model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        self.concurrency, self.retries, self.timeout = concurrency, retries, timeout
        self._server: str | None = None  # one of SERVER_KINDS, asked on first use

    def propose(self, prefixes: list[Prefix], n: int) -> list[list[Proposal]]:
        return self._all(prefixes, n, self.sampling.max_step_tokens, self.delimiter)

    def complete(self, prefixes: list[Prefix], n: int, max_new_tokens: int) -> list[list[Proposal]]:
        return self._all(prefixes, n, max_new_tokens, None)

    def check_fits(self, prefixes, new_tokens, where, what) -> None:
        self.server()  # learns the served context length first
        super().check_fits(prefixes, new_tokens, where, what)

    def server(self) -> str:
        """Who serves the model: $JOURNEY_OPENAI_SERVER if set, else read from `owned_by` in GET
        /models ("vllm", "sglang", "me" -> "llamacpp"), else "other". Learns the context length."""
        if self._server is None:
            told = os.environ.get(SERVER_ENV, "")
            if told and told not in SERVER_KINDS:
                raise ValueError(f"${SERVER_ENV} must be one of {', '.join(SERVER_KINDS)}, got {told!r}")
            card = self._model_card()
            self._server = told or OWNED_BY.get(str(card.get("owned_by", "")).lower(), "other")
            if isinstance(card.get("max_model_len"), int):
                self.context_length = card["max_model_len"]
            elif self._server == "llamacpp":
                self.context_length = self.llamacpp_context()
            log.info("%s is served by %s (context %s)", self.base_url, self._server, self.context_length)
        return self._server

    def _model_card(self) -> dict:
        """This model's entry in GET /models (the first entry if none has its id); {} if none."""
        try:
            listing = self._request("/models", None)
        except ValueError as err:
            if "cannot reach the server" in str(err):
                raise
            return {}  # no such route (or no rights to it): a hosted API
        cards = [c for c in listing.get("data") or [] if isinstance(c, dict)]
        return next((c for c in cards if c.get("id") == self.model_id), cards[0] if cards else {})

    def llamacpp_context(self) -> int | None:
        """llama_cpp.server's n_ctx, from its refusal of a prompt one token longer than the model
        was trained for (see module docstring); None, said in the log, when the model's config
        gives no length or the server takes that prompt (its n_ctx is larger still)."""
        from transformers import AutoConfig

        try:
            trained = getattr(AutoConfig.from_pretrained(self.tokenizer_path), "max_position_embeddings", None)
        except (OSError, ValueError):
            trained = None
        probe = " a" * (trained + 1) if isinstance(trained, int) else ""
        if not probe or len(self.tokenizer(probe, add_special_tokens=False)["input_ids"]) <= trained:
            log.warning("%s: cannot learn llama.cpp's context length; prompts are not checked", self.base_url)
            return None
        try:
            self._request("/completions", {"model": self.model_id, "prompt": probe, "max_tokens": 1})
        except HTTPRefusal as err:
            found = CONTEXT_REFUSAL.search(err.detail) if err.status == 400 else None
            if found:
                return int(found.group(1))
            raise
        log.warning("%s: llama.cpp took a %d-token prompt; its context is not checked", self.base_url, trained + 1)
        return None

    def _all(self, prefixes, n, max_tokens, stop: str | None) -> list[list[Proposal]]:
        self.server()  # once, before the threads
        k = self.draws(n)
        bodies = [self.request_bodies(p, k, max_tokens, stop) for p in prefixes]  # per prefix
        flat = [b for per_prefix in bodies for b in per_prefix]
        workers = 1 if self.server() == "llamacpp" else self.concurrency  # it serves one at a time
        with ThreadPoolExecutor(max_workers=workers) as pool:
            replies = iter(pool.map(lambda b: self._request("/completions", b), flat))
        out = []
        for per_prefix in bodies:
            choices = [c for body in per_prefix for c in self.choices(next(replies), body["n"])]
            out.append(self.copies([self._to_proposal(c, stop) for c in choices], n))
        return out

    def choices(self, reply: dict, n: int) -> list[dict]:
        """The `n` choices of one /completions reply, in order; ValueError if it holds another
        number (a server that ignores `n` would otherwise narrow trees and thin samples silently)."""
        got = reply.get("choices") or []
        if len(got) != n:
            raise ValueError(
                f"{self.base_url}: asked for n = {n} completions, the server ({self.server()}) returned "
                f"{len(got)}: it ignores n (SGLang and llama.cpp get one request per sample; if one of "
                f"them serves, name it in ${SERVER_ENV})")
        return sorted(got, key=lambda c: c.get("index", 0))

    def request_bodies(self, prefix: Prefix, n: int, max_tokens: int, stop: str | None) -> list[dict]:
        """The /completions requests that draw `n` samples of `prefix`: one asking for n, or on
        SGLang and llama.cpp n asking for one each, seeded seed + j (see module docstring)."""
        if self.server() not in ONE_SAMPLE_A_REQUEST or n == 1:
            return [self.request_body(prefix, n, max_tokens, stop)]
        return [self.request_body(prefix, 1, max_tokens, stop) | {"seed": prefix.seed + j} for j in range(n)]

    def request_body(self, prefix: Prefix, n: int, max_tokens: int, stop: str | None) -> dict:
        """The JSON body of one /completions request, in the dialect of `self.server()`."""
        server, text = self.server(), self.render(prefix)
        body = {"model": self.model_id, "n": n, "max_tokens": max_tokens,
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": prefix.seed, "logprobs": 1}
        if server == "other":
            body["prompt"] = self._without_bos(text)
            return body  # no stop: a hosted API would not say whether it was hit (cut in _to_proposal)
        if server == "llamacpp":
            body |= LLAMACPP_NEUTRAL | {"prompt": self._without_bos(text)}
        elif server == "vllm":
            body |= NEUTRAL_SAMPLING | {"prompt": text, "add_special_tokens": False}
        else:  # SGLang tokenizes text with special tokens and takes no add_special_tokens
            body |= NEUTRAL_SAMPLING | {"prompt": self.tokenizer(text, add_special_tokens=False)["input_ids"]}
        if stop:
            body["stop"] = [stop]
        return body

    def _without_bos(self, text: str) -> str:
        """`text` less a leading BOS if this tokenizer adds one itself (the server will too)."""
        bos, bos_id = self.tokenizer.bos_token, self.tokenizer.bos_token_id
        if not bos or bos_id is None or not text.startswith(bos):
            return text
        adds = self.tokenizer("x", add_special_tokens=True)["input_ids"][:1] == [bos_id]
        return text[len(bos):] if adds else text

    def _to_proposal(self, choice: dict, stop: str | None) -> Proposal:
        """One choice as a Proposal: its text (cut at the delimiter here when the server was not
        sent one), tokens, summed log-prob and why it ended (see module docstring)."""
        text, lp = choice["text"], choice.get("logprobs") or {}
        logps = lp.get("token_logprobs") or []
        if stop and self.server() == "other":
            at = text.find(stop)
            if at >= 0:
                logps = logps[: tokens_ending_before(lp, at + len(stop))]
                text, finish = text[:at], "stop"
            else:
                finish = self._finish(choice, None)
        else:
            finish = self._finish(choice, stop)
        counted = text + (stop if finish == "stop" else "")
        tokens = len(logps) or len(self.tokenizer(counted, add_special_tokens=False)["input_ids"])
        return Proposal(text, tokens, float(sum(x for x in logps if x is not None)), finish)

    def _finish(self, choice: dict, stop: str | None) -> str:
        """Why a completion ended: length, stop (at the delimiter) or eos (see module docstring)."""
        reason = choice.get("finish_reason")
        if reason == "length":
            return "length"
        if reason != "stop":
            raise ValueError(f"{self.base_url}: a completion ended with finish_reason {reason!r}, "
                             "not 'stop' or 'length'")
        if not stop:
            return "eos"
        if self.server() == "llamacpp":
            spelled = (choice.get("logprobs") or {}).get("tokens")
            if spelled is None:
                raise ValueError(f"{self.base_url}: llama.cpp sent no log-probs' tokens, from which "
                                 "journey reads whether a completion stopped at the delimiter")
            return "stop" if stop in "".join(spelled) else "eos"
        field = STOP_FIELD[self.server()]
        if field not in choice:
            raise ValueError(f"{self.base_url}: the server calls itself {self.server()} but does not "
                             f"say why a completion stopped (no {field} in its reply)")
        return "stop" if choice[field] == stop else "eos"

    def _request(self, path: str, body: dict | None) -> dict:
        """GET (body None) or POST JSON, with retries and exponential backoff on connection
        errors, 429 and 5xx; ValueError naming the URL otherwise."""
        data = None if body is None else json.dumps(body).encode()
        limit = self.timeout + TOKEN_SECONDS * (body or {}).get("max_tokens", 0)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.base_url + path, data=data, headers=headers,
                                             method="GET" if body is None else "POST")
                with urllib.request.urlopen(req, timeout=limit) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500 or attempt == self.retries:
                    detail = err.read().decode(errors="replace")
                    raise HTTPRefusal(f"{self.base_url}{path}: HTTP {err.code} ({detail[:200]})",
                                      err.code, detail) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.retries:
                    raise ValueError(f"{self.base_url}{path}: cannot reach the server ({err})") from None
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning("request to %s failed; retrying in %.1fs", self.base_url, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")


def tokens_ending_before(logprobs: dict, end: int) -> int:
    """How many generated tokens start before character `end` of the completion's text.

    Read from the OpenAI log-probs' `text_offset` (made relative to the first token, since
    servers differ on whether offsets count the prompt), else from the token strings' lengths:
    offsets [10, 11, 13], end 2 -> 2 (the tokens at 0 and 1 start before 2).
    """
    offsets = logprobs.get("text_offset") or []
    if not offsets and logprobs.get("tokens"):
        lengths = [len(t) for t in logprobs["tokens"]]
        offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    if not offsets:
        return len(logprobs.get("token_logprobs") or [])
    return sum(o - offsets[0] < end for o in offsets)
