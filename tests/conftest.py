"""Shared fixtures: the embedded policy (loaded once) and a few arith problems."""

import os

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
