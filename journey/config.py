"""Checks shared by the stage configs: each names the flag a user must change.

    check_at_least(1, batch_size=0)   # ValueError: --batch-size must be >= 1, got 0
"""

from __future__ import annotations

import math


def flag(name: str) -> str:
    """'max_step_tokens' -> '--max-step-tokens'."""
    return "--" + name.replace("_", "-")


def check_at_least(low: float, **values) -> None:
    """ValueError naming the first flag whose value is below `low` (or not a number)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise ValueError(f"{flag(name)} must be >= {low}, got {value}")


def check_positive(**values) -> None:
    """ValueError naming the first flag whose value is not a finite number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value > 0):
            raise ValueError(f"{flag(name)} must be > 0, got {value}")


def check_sampling_flags(temperature: float, top_p: float) -> None:
    """--temperature >= 0 and --top-p in (0, 1], both finite."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")
