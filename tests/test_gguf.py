"""GGUF files as --model: converted once into the cache (keyed by sha256), atomically, and loaded
by the policy like any checkpoint; `journey models list/pull` (tests/helpers.write_tiny_gguf)."""

import hashlib
import threading

import pytest

from journey.models.base import Prefix, SamplingConfig
from journey.models.embedded import check_model_path, resolve_model
from journey.models.gguf import cache_root, conversion_lock, gguf_file
from journey.models.registry import load_policy
from tests.helpers import run, write_tiny_gguf


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNEY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_cache_root_follows_journey_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNEY_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "gguf"
    monkeypatch.delenv("JOURNEY_CACHE")
    assert str(cache_root()).endswith(".cache/journey/gguf")


def test_which_paths_are_gguf(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.gguf").write_bytes(b"x")
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"x")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "hf" / "m.gguf").write_bytes(b"x")
    assert gguf_file(tmp_path / "x.GGUF") == tmp_path / "x.GGUF"
    assert gguf_file(tmp_path / "one") == tmp_path / "one" / "m.gguf"
    assert gguf_file(tmp_path / "hf") is None  # a checkpoint folder is loaded as one
    assert gguf_file("org/name") is None
    with pytest.raises(ValueError, match="holds 2 GGUF files"):
        gguf_file(tmp_path / "two")
    with pytest.raises(ValueError, match="no such GGUF file"):
        check_model_path(str(tmp_path / "gone.gguf"))
    check_model_path(str(tmp_path / "one"))  # checked without converting


def test_converts_once_into_the_sha_folder_and_loads(tiny_gguf, cache, tmp_path):
    folder = resolve_model(str(tiny_gguf))
    assert folder == str(cache / hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())
    saved = (cache / folder / "model.safetensors").stat().st_mtime_ns
    holder = tmp_path / "holder"  # a folder holding the file means the same
    holder.mkdir()
    (holder / "m.gguf").write_bytes(tiny_gguf.read_bytes())
    assert resolve_model(str(holder)) == folder
    assert (cache / folder / "model.safetensors").stat().st_mtime_ns == saved  # not converted again
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [folder.rsplit("/", 1)[1]]  # no temp left
    policy = load_policy(str(tiny_gguf), "\n\n", SamplingConfig(max_step_tokens=4))
    [[step]] = policy.propose([Prefix([{"role": "user", "content": "1 + 1"}], [], seed=0)], 1)
    assert step.tokens <= 4 and policy.tokenizer.eos_token == "<|im_end|>"


def test_a_second_converter_waits_for_the_first(tiny_gguf, cache):
    target = cache / hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    done = []
    with conversion_lock(target):
        worker = threading.Thread(target=lambda: done.append(resolve_model(str(tiny_gguf))))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not done  # waiting on the lock
    worker.join(timeout=120)
    assert done == [str(target)] and (target / "config.json").is_file()


def test_models_cli(cache):
    listed = run("models", "list")
    assert listed.exit_code == 0 and "smollm2-135m" in listed.output
    bad = run("models", "pull", "nope")
    assert bad.exit_code == 1 and "unknown model 'nope'; known: smollm2-135m" in bad.output


def test_a_pulled_models_name_is_a_model(tiny_gguf, cache, tmp_path, monkeypatch):
    """`--model smollm2-135m` is the pulled package's GGUF, converted; before the pull, one line
    saying to pull it (here a package of our own on sys.path stands in for the wheel)."""
    from journey.models import gguf

    monkeypatch.setitem(gguf.PULLABLE, "tiny-test", gguf.Pullable("tiny-test-pkg", "tiny_test_pkg", "tiny.gguf", "test"))
    with pytest.raises(ValueError, match=r"--model tiny-test: not installed here; run `journey models pull tiny-test` first"):
        resolve_model("tiny-test")
    package = tmp_path / "site" / "tiny_test_pkg"
    package.mkdir(parents=True)
    (package / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_model("tiny-test") == str(cache / hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())
