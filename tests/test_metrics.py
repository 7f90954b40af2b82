"""runtime/metrics.py: pass@k, majority vote, standard errors (of a mean, of a pooled share), worked by hand."""

import pytest

from journey.runtime.metrics import majority_vote, mean_and_se, pass_at_k, ratio_and_se


@pytest.mark.parametrize("n, c, k, want", [(4, 1, 2, 0.5), (5, 0, 3, 0.0), (3, 3, 1, 1.0), (10, 3, 1, 0.3),
                                           (4, 2, 4, 1.0), (6, 2, 2, 1 - 6 / 15)])
def test_pass_at_k_hand_worked(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_and_se():
    assert majority_vote(["3", None, "4", "3"]) == "3"
    assert majority_vote(["4", "3"]) == "4" and majority_vote([None]) is None
    assert mean_and_se([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, (1 / 3) ** 0.5 / 2))


@pytest.mark.parametrize("hits, totals, want", [
    ([1, 2], [2, 2], (0.75, 0.25)),  # equal totals: the mean of 1/2 and 2/2 and its s.e.
    ([1, 2, 0], [2, 2, 0], (0.75, 0.25)),  # a group with nothing counted is left out
    ([0, 3], [1, 3], (0.75, 0.375)),  # r = 3/4; residuals 0 - .75, 3 - 2.25: sqrt(1.125 / 2) / mean 2
    ([2], [4], (0.5, 0.0)),  # one group: no standard error
    ([0, 0], [0, 0], (0.0, 0.0)),
])
def test_ratio_and_se_hand_worked(hits, totals, want):
    assert ratio_and_se(hits, totals) == pytest.approx(want)
