"""A real OpenAI-compatible completions server for the tests, serving a transformers model in the
request and reply shapes of vLLM, SGLang or a hosted OpenAI-style API.

    python -m tests.openai_server --model embedded --port 8765 --shape vllm   # from the repo root

Speaks the part of the protocol journey's `openai` backend uses, as each server does:

- GET /v1/models: `owned_by` "vllm" / "sglang" (with `max_model_len`), or "openai".
- POST /v1/completions with prompt (text, or token ids), n, max_tokens, temperature, top_p,
  seed, stop, logprobs and the server's own extra fields. Replies carry text, finish_reason
  ("stop" for EOS and for a stop string alike), per-token logprobs (tokens, token_logprobs,
  text_offset) and the server's own account of the stop: vLLM's `stop_reason` (the stop string,
  None at EOS), SGLang's `matched_stop` (the stop string, or the EOS id), nothing from openai.
- Text prompts are tokenized with special tokens unless the request says
  `add_special_tokens: false` (vLLM only; SGLang and openai take no such field), so a prompt
  that already holds a BOS gets a second one, as on the real servers.
- vllm: fields a request leaves unset are filled from the model's generation_config (as
  `vllm serve` does); n > 1 at temperature 0 is HTTP 400, as in vLLM. openai: a field outside
  the OpenAI completions API is HTTP 400 ("Unrecognized request argument"). This server samples
  only with top_k, min_p and repetition penalty off and answers 400 to anything else, so a
  client that leaves them to the server's defaults fails here.

Sample j of a request with seed s is drawn exactly as the transformers backend draws it, so
both backends build the same trees; except on sglang, which (as SGLang 0.5 does with
--enable-deterministic-inference) gives all n copies of a request one SamplingParams and draws
each from the seed alone, so n > 1 with one seed is n identical samples. Requests are served one at a time (one model); every
request is kept in `server.requests` as {"body": ..., "prompt_ids": [...]} for the tests.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from journey.models.base import SamplingConfig
from journey.models.embedded import resolve_model
from journey.models.transformers_policy import TransformersPolicy
from tests.helpers import send_json

SHAPES = ("vllm", "sglang", "openai")
OPENAI_FIELDS = {"model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
                 "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
                 "suffix", "temperature", "top_p", "user"}
# vLLM fills these from generation_config when a request leaves them unset (`get_diff_sampling_param`)
VLLM_DEFAULTED = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


def generation_defaults(model: str) -> dict:
    """The fields of the model's generation_config.json that vLLM reads as request defaults."""
    path = Path(resolve_model(model)) / "generation_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return {k: config[k] for k in VLLM_DEFAULTED if k in config}


def make_server(model: str, port: int = 0, shape: str = "vllm") -> ThreadingHTTPServer:
    assert shape in SHAPES, shape
    policy = TransformersPolicy(model)
    tok, defaults, lock = policy.tokenizer, generation_defaults(model), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def reply(self, code: int, body: dict) -> None:
            send_json(self, code, body)

        def error(self, message: str) -> None:
            self.reply(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})

        def do_GET(self):
            if self.path != "/v1/models":
                return self.reply(404, {"error": {"message": f"no route {self.path}"}})
            card = {"id": model, "object": "model", "owned_by": shape}
            if shape != "openai":
                card["max_model_len"] = policy.context_length
            self.reply(200, {"object": "list", "data": [card]})

        def do_POST(self):
            if self.path != "/v1/completions":
                return self.reply(404, {"error": {"message": f"no route {self.path}"}})
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            problem = self.check(req)
            if problem:
                return self.error(problem)
            ids = self.prompt_ids(req)
            server.requests.append({"body": req, "prompt_ids": ids})
            stop = (req.get("stop") or [None])[0]
            with lock:
                policy.sampling = SamplingConfig(self.setting(req, "temperature"), self.setting(req, "top_p"), 1)
                n, seed = req.get("n", 1), req.get("seed", 0)
                if shape == "sglang":  # every copy drawn from the same seed: n identical samples
                    props = [p for [p] in policy.generate_texts([tok.decode(ids)] * n, [seed] * n, 1,
                                                                req.get("max_tokens", 16), stop)]
                else:
                    [props] = policy.generate_texts([tok.decode(ids)], [seed], n, req.get("max_tokens", 16), stop)
            self.reply(200, {"object": "text_completion", "model": req.get("model"),
                             "choices": [self.choice(i, p, stop) for i, p in enumerate(props)]})

        def setting(self, req: dict, name: str):
            """A sampling field as this server applies it: the request's, else (vLLM) the model's
            generation_config, else the protocol's default."""
            if req.get(name) is not None:
                return req[name]
            return (defaults if shape == "vllm" else {}).get(name, VLLM_DEFAULTED[name])

        def check(self, req: dict) -> str | None:
            """What the real server would refuse in this request (or this server cannot do)."""
            if shape == "openai" and set(req) - OPENAI_FIELDS:
                return f"Unrecognized request argument supplied: {sorted(set(req) - OPENAI_FIELDS)[0]}"
            if shape == "vllm" and req.get("n", 1) > 1 and self.setting(req, "temperature") < 1e-5:
                return f"n must be 1 when using greedy sampling, got {req['n']}."
            if shape != "openai" and (self.setting(req, "top_k") not in (-1, 0) or self.setting(req, "min_p") != 0
                                      or self.setting(req, "repetition_penalty") != 1):
                return "this test server samples with top_k, min_p and repetition_penalty off only"
            return None

        def prompt_ids(self, req: dict) -> list[int]:
            if isinstance(req["prompt"], list):
                return req["prompt"]
            special = req.get("add_special_tokens", True) if shape == "vllm" else True
            return tok(req["prompt"], add_special_tokens=special)["input_ids"]

        def choice(self, i: int, p, stop: str | None) -> dict:
            text = p.text + (stop if p.finish == "stop" else "")  # the tokens generated
            tokens = [tok.decode([t]) for t in tok(text, add_special_tokens=False)["input_ids"]]
            if p.finish == "eos":
                tokens.append(tok.eos_token)
            start = 1000 if shape == "openai" else 0  # OpenAI's offsets may count the prompt
            offsets = [start + sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
            out = {"index": i, "text": p.text, "finish_reason": "length" if p.finish == "length" else "stop",
                   "logprobs": {"tokens": tokens, "token_logprobs": p.token_logprobs, "text_offset": offsets,
                                "top_logprobs": None}}
            if shape == "vllm":
                out["stop_reason"] = stop if p.finish == "stop" else None
            elif shape == "sglang":
                out["matched_stop"] = {"stop": stop, "eos": tok.eos_token_id}.get(p.finish)
            return out

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.requests = []
    return server


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--shape", choices=SHAPES, default="vllm")
    args = ap.parse_args()
    make_server(args.model, args.port, args.shape).serve_forever()
