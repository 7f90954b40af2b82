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
