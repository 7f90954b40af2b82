"""runtime/metrics.py: pass@k, majority vote and standard error, worked by hand."""

import pytest

from journey.runtime.metrics import majority_vote, mean_and_se, pass_at_k


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
