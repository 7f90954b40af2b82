"""Shared fixtures: the embedded policy (loaded once), a few arith problems, a tiny disk that fills
up. Shared plain functions and data are in tests/helpers.py."""

import os
import subprocess

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def policy():
    import torch

    from journey.models.base import SamplingConfig
    from journey.models.transformers_policy import TransformersPolicy

    torch.set_num_threads(2)
    return TransformersPolicy("embedded", sampling=SamplingConfig(temperature=0.7, top_p=0.95))


@pytest.fixture(scope="session")
def arith_problems():
    from journey.tasks import get_task

    return get_task("arith").generate(8, seed=11)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def qwen_prm_dir(tmp_path_factory):
    """A tiny Qwen2.5-Math-PRM-shaped checkpoint: Qwen2 body under model.*, head under score.*."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import AddedToken
    from transformers import Qwen2Config, Qwen2Model

    from journey.models.embedded import build_tokenizer

    d = tmp_path_factory.mktemp("qwen-prm")
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<extra_0>", special=True)]})
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    body = Qwen2Model(cfg)
    head = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    weights = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    weights |= {f"score.{k}": v.contiguous() for k, v in head.state_dict().items()}
    save_file(weights, str(d / "model.safetensors"))
    cfg.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def smol_dir(tmp_path_factory):
    """A tiny random-weight model with the real SmolLM2 tokenizer and template (tests/helpers.build_smol)."""
    from tests.helpers import build_smol

    return build_smol(tmp_path_factory.mktemp("smol") / "model")
