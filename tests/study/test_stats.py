"""Paired statistics (rdcl.study.stats) against scipy and by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from rdcl.study.stats import bootstrap_mean_ci, paired_comparison, wilcoxon_signed_rank


def _scipy(d: np.ndarray):
    # zero_method="wilcox" drops zero differences, so the test of d is the test of its non-zero
    # part. scipy's default for n <= 50 with tied magnitudes is a permutation test; rdcl uses the
    # normal approximation there, which is scipy's method="asymptotic".
    nz = d[d != 0]
    tied = len(np.unique(np.abs(nz))) < nz.size
    return scipy.stats.wilcoxon(nz, method="asymptotic" if tied or nz.size > 50 else "exact")


@pytest.mark.parametrize("n", [1, 2, 5, 9, 16, 30, 50, 51, 64, 80, 300])
@pytest.mark.parametrize("kind", ["continuous", "rounded", "shifted"])
def test_wilcoxon_matches_scipy(n, kind):
    rng = np.random.default_rng(n)
    d = rng.normal(0.0, 0.1, n)
    if kind == "rounded":  # ties and zeros
        d = np.round(d, 1)
    elif kind == "shifted":
        d = d + 0.05
    if not np.any(d != 0):
        assert math.isnan(wilcoxon_signed_rank(d)[1])
        return
    ref = _scipy(d)
    stat, p = wilcoxon_signed_rank(d)
    assert stat == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_wilcoxon_all_zero_is_nan():
    assert all(math.isnan(v) for v in wilcoxon_signed_rank([0.0, 0.0, 0.0]))


def test_bootstrap_interval_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(0.02, 0.1, 20)
    big = rng.normal(0.02, 0.1, 2000)
    lo_s, hi_s = bootstrap_mean_ci(small, seed=1)
    lo_b, hi_b = bootstrap_mean_ci(big, seed=1)
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert hi_b - lo_b < (hi_s - lo_s) / 5
    # the percentile interval of the mean is close to the normal-theory one for large n
    se = big.std(ddof=1) / math.sqrt(big.size)
    assert hi_b - lo_b == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_mean_ci(small, seed=1) == (lo_s, hi_s)  # seeded


def test_paired_comparison_counts_and_drops_nan():
    method = [0.8, 0.7, 0.5, float("nan"), 0.6]
    base = [0.7, 0.7, 0.6, 0.5, 0.4]
    c = paired_comparison(method, base)
    assert (c.n, c.wins, c.ties, c.losses) == (4, 2, 1, 1)
    assert c.mean_diff == pytest.approx((0.1 + 0.0 - 0.1 + 0.2) / 4)
    assert c.ci_low <= c.mean_diff <= c.ci_high
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([1.0], [1.0, 2.0])
