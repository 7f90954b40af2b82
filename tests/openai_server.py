"""A real OpenAI-compatible completions server for the tests, serving a transformers model.

    python tests/openai_server.py --model embedded --port 8765

Speaks the part of the protocol journey's `openai` backend uses: POST /v1/completions with
prompt, n, max_tokens, temperature, top_p, seed, stop, logprobs; replies with choices carrying
text, finish_reason, vLLM's stop_reason, and per-token logprobs. Sample j of a request with
seed s is drawn exactly as the transformers backend draws it, so both backends build the same
trees. Requests are served one at a time (one model).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from journey.models.policy import SamplingConfig, TransformersPolicy


def make_server(model: str, port: int = 0) -> ThreadingHTTPServer:
    policy = TransformersPolicy(model)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path != "/v1/completions":
                return self.reply(404, {"error": {"message": f"no route {self.path}"}})
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stop = (req.get("stop") or [None])[0]
            with lock:
                policy.sampling = SamplingConfig(req.get("temperature", 1.0), req.get("top_p", 1.0), 1)
                [props] = policy.generate_texts([req["prompt"]], [req.get("seed", 0)], req.get("n", 1),
                                                req.get("max_tokens", 16), stop)
            choices = [{
                "index": i, "text": p.text,
                "finish_reason": "length" if p.finish == "length" else "stop",
                "stop_reason": stop if p.finish == "stop" else None,
                "logprobs": {"token_logprobs": p.token_logprobs},
            } for i, p in enumerate(props)]
            self.reply(200, {"object": "text_completion", "model": req.get("model"), "choices": choices})

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    make_server(args.model, args.port).serve_forever()
