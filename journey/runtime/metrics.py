"""Evaluation metrics as pure functions: accuracy with its standard error, maj@k, unbiased pass@k,
and what eval-prm reads a PRM by: the share of variance groups explain, how a counterfactual moved scores.

    >>> pass_at_k(n=4, c=1, k=2)   # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    >>> majority_vote(["3", None, "4", "3"])
    '3'
"""

from __future__ import annotations

import math
from collections import Counter


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i).
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common extracted answer (None ignored); ties go to the one seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def ratio_and_se(hits: list[float], totals: list[float]) -> tuple[float, float]:
    """A share pooled over groups, sum(hits) / sum(totals), and its standard error with the
    groups (problems) as the sampled units: the delta-method (ratio-estimator) formula
    sqrt(sum((h_i - r * t_i)^2) / (m (m - 1))) / mean(t), over the m groups with t_i > 0.
    (0.0, 0.0) when nothing was counted.

    >>> ratio_and_se([1, 2, 0], [2, 2, 0])  # r = 3/4; residuals -0.5, 0.5: sqrt(0.5 / 2) / 2
    (0.75, 0.25)
    """
    pairs = [(h, t) for h, t in zip(hits, totals) if t > 0]
    m, total = len(pairs), sum(t for _, t in pairs)
    if total == 0:
        return 0.0, 0.0
    r = sum(h for h, _ in pairs) / total
    if m < 2:
        return r, 0.0
    residual = sum((h - r * t) ** 2 for h, t in pairs)
    return r, math.sqrt(residual / (m * (m - 1))) / (total / m)


def variance_share(values: list[float], groups: list) -> float | None:
    """The share of the variance of `values` that their groups' means explain: the between-group
    sum of squares over the total (eta squared). 1.0: every group is constant, so the value says
    nothing beyond the group; 0.0: every group has the overall mean. None when fewer than 2
    values or all are equal (no variance to explain). Groups are any hashable keys.

    >>> variance_share([1, 3, 5, 7], ["a", "a", "b", "b"])  # mean 4, total 9+1+1+9 = 20; means 2, 6: 16
    0.8
    """
    n = len(values)
    assert n == len(groups), f"{n} values but {len(groups)} groups"
    if n < 2:
        return None
    mean = sum(values) / n
    total = sum((v - mean) ** 2 for v in values)
    if total == 0:
        return None
    members: dict = {}
    for v, g in zip(values, groups):
        members.setdefault(g, []).append(v)
    between = sum(len(vs) * (sum(vs) / len(vs) - mean) ** 2 for vs in members.values())
    return between / total


def score_changes(before: list[float], after: list[float]) -> dict:
    """How a counterfactual moved scores: how many were changed, the share raised, the share
    lowered (strictly) and the mean change (after - before); the shares and mean are None for none.

    >>> score_changes([0.2, 0.5, 0.5], [0.8, 0.5, 0.2])
    {'n': 3, 'raised': 0.3333, 'lowered': 0.3333, 'mean_change': 0.1}
    """
    n = len(before)
    assert n == len(after), f"{n} scores before but {len(after)} after"
    if not n:
        return {"n": 0, "raised": None, "lowered": None, "mean_change": None}
    return {"n": n,
            "raised": round(sum(a > b for b, a in zip(before, after)) / n, 4),
            "lowered": round(sum(a < b for b, a in zip(before, after)) / n, 4),
            "mean_change": round(sum(a - b for b, a in zip(before, after)) / n, 4)}
