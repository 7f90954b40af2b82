"""models/registry.py: its tables and errors, which PRMs explain, and no import circle through it: every
models module imports first in a fresh process, the base modules import none of their
implementations, and the tables cost no heavy import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from journey.models.registry import (
    BACKENDS,
    PRM_EXPLAINS,
    PRMS,
    build_prm,
    load_policy,
    prm_explains,
)
from journey.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "journey" / "models"


@pytest.mark.parametrize("module", ["transformers_policy", "prm", "judge", "model_prms", "openai_policy", "vllm_policy",
                                    "registry"])
def test_each_models_module_imports_first_in_a_fresh_process(module):
    result = subprocess.run([sys.executable, "-c", f"import journey.models.{module}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize(
    "base, implementations",
    [("base", {"transformers_policy", "openai_policy", "vllm_policy", "registry", "prm", "judge", "model_prms"}),
     ("prm", {"judge", "model_prms", "registry"})],
)
def test_base_modules_import_none_of_their_implementations(base, implementations):
    imported = imported_modules(MODELS / f"{base}.py")
    assert not {f"journey.models.{m}" for m in implementations} & imported, imported
    import journey.models.base as base_module
    import journey.models.prm as prm

    names = vars({"base": base_module, "prm": prm}[base])
    assert not {"load_policy", "BACKENDS", "build_prm", "PRMS"} & names.keys()


def test_registry_tables_cost_no_heavy_import():
    code = ("import sys, journey.models.registry as r; "
            "assert r.prm_explains('rollout') is False and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "name, explains",
    [("verifier", True), ("judge", True), ("rollout", False), ("token", False), ("qwen", False),
     ("trained", False), (None, True), ("some-future-prm", False)],
)
def test_which_prms_explain(name, explains):
    assert prm_explains(name) is explains


def test_registry_tables_and_errors():
    assert list(BACKENDS) == ["transformers", "openai", "vllm"]
    assert list(PRMS) == list(PRM_EXPLAINS) == ["verifier", "rollout", "token", "qwen", "judge", "trained", "tests"]
    with pytest.raises(ValueError, match="--backend must be one of transformers, openai, vllm, got 'x'"):
        load_policy("embedded", "\n", None, backend="x")
    with pytest.raises(ValueError, match="unknown PRM 'x'; known PRMs: verifier, rollout, token, qwen, judge, trained, tests"):
        build_prm("x", get_task("arith"))
    with pytest.raises(ValueError, match="the rollout PRM needs a policy"):
        build_prm("rollout", get_task("arith"))
    with pytest.raises(ValueError, match="--prm judge needs --prm-model or a policy"):
        build_prm("judge", get_task("arith"))
