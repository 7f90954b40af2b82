"""Train the embedded policy: a ~0.9M-parameter Llama on correct `arith` solutions, on the CPU.

    python examples/train_embedded_policy.py                 # writes journey/assets/embedded-policy
    python examples/train_embedded_policy.py --steps 200 --out /tmp/p   # a quick look

Its data: 80% chats asking for a solution, answered with the canonical one; 20% chats asking
to check one reduction ("Check: 42 * 3 = 116"), answered with the exact verifier's sentence
("Wait, 42 * 3 is 126, not 116."). A real phase-1 model knows the language of reflection from
pretraining; ours learns it here, but never sees a reflection inside a solution.

Seeded and reproducible (same torch build, same threads). Resumable: the run saves its state
every 100 steps beside --out (OUT.resume.pt); the same command started again continues from it.
The model is meant to stay imperfect: a few minutes of training on 2-4-operation problems leaves
it making real arithmetic slips at temperature, which is what gives reasoning trees their wrong
branches. Held-out problems (`journey.models.embedded.heldout_problems`) are kept out of the
training pool.
Measure the result with `python examples/measure_embedded_policy.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from journey.models.embedded import EMBEDDED_PATH, build_config, build_tokenizer, heldout_problems
from journey.tasks.arith import ArithTask


def solution_chats(task: ArithTask, n: int, seed: int, exclude: set[str]) -> list[list[dict]]:
    """Chats asking for a problem's solution, answered with the canonical one."""
    return [task.messages(p.question) + [{"role": "assistant", "content": task.join_steps(task.solution(p.question))}]
            for p in task.generate(n, seed) if p.question not in exclude]


def near_miss(value: int, rng: random.Random) -> int:
    """A plausible wrong result: off by a little, off by ten, or digits swapped."""
    kind = rng.random()
    if kind < 0.4:
        wrong = value + rng.choice([-2, -1, 1, 2])
    elif kind < 0.7:
        wrong = value + rng.choice([-10, 10])
    elif kind < 0.85 and len(str(abs(value))) > 1:
        digits = str(abs(value))
        wrong = int(digits[::-1]) if digits[::-1] != digits else value + 1
    else:
        wrong = value + rng.randint(3, 9) * rng.choice([-1, 1])
    return wrong if wrong != value else value + 1


def check_chats(task: ArithTask, chats: list[list[dict]], rng: random.Random) -> list[list[dict]]:
    """One "Check: a op b = c" exchange per solution, half of them with a wrong c.

    The answer is the exact verifier's sentence: "Wait, 42 * 3 is 126, not 116." or
    "42 * 3 = 126 is right." So the policy knows the words of a reflection and can check a
    reduction when asked, but has never seen a reflection inside a solution: using them
    there is what journey learning has to teach (phase 2).
    """
    out = []
    for chat in chats:
        steps = chat[-1]["content"].split("\n")[:-1]
        a, op, b, _, c = rng.choice(steps).split()
        c = int(c) if rng.random() < 0.5 else near_miss(int(c), rng)
        check = task.verify_step(f"{a} {op} {b}", [], f"{a} {op} {b} = {c}")
        answer = check.reason if check.ok else f"Wait, {check.reason}"
        out.append([{"role": "user", "content": f"Check: {a} {op} {b} = {c}"},
                    {"role": "assistant", "content": answer}])
    return out


def encode(tok, chats: list[list[dict]]) -> list[tuple[list[int], list[int]]]:
    """Chats as (input_ids, assistant_mask), rendered by the chat template."""
    encs = [tok.apply_chat_template(c, return_assistant_tokens_mask=True, return_dict=True) for c in chats]
    return [(e["input_ids"], e["assistant_masks"]) for e in encs]


def make_batch(examples, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 outside the assistant turn."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, mask) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        attn[i, : len(x)] = 1
        labels[i, : len(x)] = torch.where(torch.tensor(mask) == 1, torch.tensor(x), -100)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def lr_at(step: int, steps: int, peak: float, warmup: float = 0.05) -> float:
    """One-cycle schedule: linear warm-up over `warmup` of the run, then cosine to 0."""
    w = max(1, int(steps * warmup))
    if step < w:
        return peak * (step + 1) / w
    return peak * 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, steps - w)))


def train_steps(model, draw, rng: random.Random, steps: int, peak_lr: float, pad_id: int,
                after_step=None, state: Path | None = None, run: dict | None = None,
                save_every: int = 100) -> tuple[list[float], float]:
    """The from-scratch training loop both embedded policies share: AdamW (weight decay 0.01,
    betas 0.9/0.95), the one-cycle `lr_at` schedule, gradient clipping at 1, one batch
    `draw(rng)` per step, a line every 100 steps. `after_step(steps_done, losses, t0)`, if
    given, runs after each step (snapshots). Returns the losses and the start time.

    With `state` (a file), the loop saves what it needs to go on — weights, optimizer, both
    random generators, the losses, the step and `run` (the flags) — every `save_every` steps,
    and continues from that file when it exists: a run cut at any point and started again
    with the same flags ends with the weights an uncut run has (same torch build and threads).
    A state file saved with other flags is refused. The caller deletes it once the model is saved."""
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.01, betas=(0.9, 0.95))
    start, losses, spent = 0, [], 0.0
    if state is not None and state.exists():
        saved = torch.load(state, weights_only=False)
        if saved["run"] != run:
            raise SystemExit(f"{state}: saved by a run with other flags ({saved['run']}); "
                             "rerun with those flags or delete the file to start over")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        start, losses, spent = saved["step"], saved["losses"], saved["seconds"]
        print(f"resuming from {state} at step {start} of {steps}", flush=True)
    model.train()
    t0 = time.time() - spent
    for step in range(start, steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak_lr)
        loss = model(**make_batch(draw(rng), pad_id)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:.0f}s", flush=True)
        if state is not None and (step + 1) % save_every == 0 and step + 1 < steps:
            tmp = state.with_name(state.name + ".tmp")
            torch.save({"run": run, "step": step + 1, "losses": losses, "seconds": time.time() - t0,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)
            tmp.replace(state)  # a cut while saving leaves the previous state whole
        if after_step:
            after_step(step + 1, losses, t0)
    return losses, t0


def state_file(out: Path) -> Path:
    """Where a training run keeps its resume state: beside OUT, deleted once OUT is saved."""
    return out.with_name(f"{out.name}.resume.pt")


def save_checkpoint(model, tok, out: Path, record: dict) -> None:
    """The checkpoint (generation config with the tokenizer's pad and eos), the tokenizer, and
    `record` as training.json (written last: a folder without it is a cut run)."""
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=EMBEDDED_PATH)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pool", type=int, default=100_000, help="training problems generated")
    ap.add_argument("--hidden", type=int, default=128, help="hidden size (the shipped model: 128)")
    ap.add_argument("--layers", type=int, default=4, help="transformer layers (the shipped model: 4)")
    ap.add_argument("--check-fraction", type=float, default=0.2,
                    help="share of training chats that check one reduction (0 = solutions only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = random.Random(args.seed)
    tok = build_tokenizer()
    task = ArithTask()
    exclude = {p.question for p in heldout_problems()}
    chats = solution_chats(task, args.pool, seed=10_000 + args.seed, exclude=exclude)
    n_checks = int(len(chats) * args.check_fraction / (1 - args.check_fraction))
    pool = encode(tok, chats + check_chats(task, rng.sample(chats, n_checks), rng))
    model = AutoModelForCausalLM.from_config(build_config(tok, hidden_size=args.hidden, layers=args.layers))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, {len(chats)} solutions + {n_checks} checks")
    state, flags = state_file(args.out), {k: str(v) for k, v in vars(args).items()}
    losses, t0 = train_steps(model, lambda r: r.sample(pool, args.batch_size), rng, args.steps, args.lr,
                             tok.pad_token_id, state=state, run=flags)
    record = {
        "script": "examples/train_embedded_policy.py",
        "args": flags,
        "parameters": n_params,
        "torch": torch.__version__,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": round(time.time() - t0, 1),
    }
    save_checkpoint(model, tok, args.out, record)
    state.unlink(missing_ok=True)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
