"""Paired statistics (rdcl.study.stats) against scipy and by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from rdcl.study.stats import (
    bootstrap_mean_ci,
    paired_comparison,
    run_level_comparison,
    wilcoxon_signed_rank,
)


def _signed_rank_p(d: np.ndarray) -> tuple[float, float]:
    """The two-sided Wilcoxon signed-rank test of ``d`` computed from its definitions: zeros
    dropped, average ranks of |d|; the exact distribution of W+ over all 2^n sign assignments for
    n <= 13 (with or without ties), the exact untied distribution by counting subsets for
    n <= 50 without ties, the normal approximation with the tie-corrected variance otherwise."""
    nz = d[d != 0]
    n = nz.size
    ranks = scipy.stats.rankdata(np.abs(nz))
    w_plus = ranks[nz > 0].sum()
    stat = min(w_plus, ranks.sum() - w_plus)
    tied = len(np.unique(np.abs(nz))) < n
    if n <= 13:
        signs = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # every sign assignment
        null = signs @ ranks
        eps = 1e-9
        p = 2 * min(np.mean(null <= w_plus + eps), np.mean(null >= w_plus - eps))
        return stat, min(1.0, p)
    if n <= 50 and not tied:
        counts = np.zeros(n * (n + 1) // 2 + 1)
        counts[0] = 1.0
        for k in range(1, n + 1):  # subsets of {1..n} by their sum
            counts[k:] = counts[k:] + counts[:-k].copy()
        return stat, min(1.0, 2 * counts[: round(stat) + 1].sum() / 2.0**n)
    _, t = np.unique(np.abs(nz), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - np.sum(t**3 - t) / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(var)
    return stat, math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("n", [1, 2, 5, 9, 13, 14, 16, 30, 50, 51, 64, 80, 300])
@pytest.mark.parametrize("kind", ["continuous", "rounded", "shifted"])
def test_wilcoxon_follows_its_definition(n, kind):
    rng = np.random.default_rng(n)
    d = rng.normal(0.0, 0.1, n)
    if kind == "rounded":  # ties and zeros
        d = np.round(d, 1)
    elif kind == "shifted":
        d = d + 0.05
    if not np.any(d != 0):
        assert math.isnan(wilcoxon_signed_rank(d)[1])
        return
    ref_stat, ref_p = _signed_rank_p(d)
    stat, p = wilcoxon_signed_rank(d)
    assert stat == pytest.approx(ref_stat, abs=1e-12)
    assert p == pytest.approx(ref_p, rel=1e-9, abs=1e-15)


def test_wilcoxon_with_tied_magnitudes_is_exact_for_small_n():
    # tied |d| at n <= 13: the exact permutation p, not the normal approximation (0.0707 here,
    # what rdcl reported before scipy.stats.wilcoxon replaced its own test)
    d = np.array([0.1, -0.1, 0.2, 0.2, 0.3, 0.1])
    assert wilcoxon_signed_rank(d) == pytest.approx((2.0, 0.125))  # 8 of 64 sign patterns
    assert wilcoxon_signed_rank([*d, 0.0, float("nan")]) == wilcoxon_signed_rank(d)


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


def test_bootstrap_is_the_percentile_interval_of_seeded_resample_means():
    # resamples drawn as rng.integers(0, n, (n_boot, n)) with rng = default_rng(seed), the
    # interval the alpha/2 and 1 - alpha/2 quantiles of their means
    v = np.random.default_rng(4).normal(0.01, 0.05, 37)
    idx = np.random.default_rng(7).integers(0, v.size, size=(2000, v.size))
    expected = np.quantile(v[idx].mean(axis=1), [0.05, 0.95])
    got = bootstrap_mean_ci(v, level=0.9, n_boot=2000, seed=7)
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert bootstrap_mean_ci([0.3]) == (0.3, 0.3)
    assert all(math.isnan(x) for x in bootstrap_mean_ci([float("nan")]))


def test_paired_comparison_counts_and_drops_nan():
    method = [0.8, 0.7, 0.5, float("nan"), 0.6]
    base = [0.7, 0.7, 0.6, 0.5, 0.4]
    c = paired_comparison(method, base)
    assert (c.n, c.wins, c.ties, c.losses) == (4, 2, 1, 1)
    assert c.mean_diff == pytest.approx((0.1 + 0.0 - 0.1 + 0.2) / 4)
    assert c.ci_low <= c.mean_diff <= c.ci_high
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([1.0], [1.0, 2.0])


def test_run_level_comparison_hand_computed():
    # five (fold, seed) units; differences 0.01, 0.03, -0.02, 0.04, 0.05 (no ties, no zeros)
    base = np.array([0.50, 0.60, 0.55, 0.40, 0.45])
    d = np.array([0.01, 0.03, -0.02, 0.04, 0.05])
    c = run_level_comparison(base + d, base)
    assert (c.n, c.wins, c.ties, c.losses, c.interval) == (5, 4, 0, 1, "t")
    assert c.mean_diff == pytest.approx(0.022)
    # t-interval by hand: s = sqrt(sum((d - 0.022)^2) / 4) = sqrt(0.00308 / 4), t_{0.975, 4}
    s = math.sqrt(0.00308 / 4)
    half = 2.7764451051977934 * s / math.sqrt(5)
    assert (c.ci_low, c.ci_high) == pytest.approx((0.022 - half, 0.022 + half), rel=1e-9)
    # exact Wilcoxon: |d| ranks 1..5, W- = 2 (the -0.02); P(W <= 2) = 3/32 ({}, {1}, {2})
    assert c.p_wilcoxon == pytest.approx(2 * 3 / 32)
    t = 0.022 / (s / math.sqrt(5))
    assert c.p_ttest == pytest.approx(2 * scipy.stats.t.sf(t, 4), rel=1e-9)
    assert c.p_ttest == pytest.approx(scipy.stats.ttest_rel(base + d, base).pvalue, rel=1e-9)


def test_run_level_comparison_matches_scipy_and_leaves_out_nan_units():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.6, 0.05, 15), rng.normal(0.58, 0.05, 15)
    a_nan = np.append(a, np.nan)
    c = run_level_comparison(a_nan, np.append(b, 0.5), level=0.9)
    assert c.n == 15 and c.level == 0.9
    ci = scipy.stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert c.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon(a - b, method="exact").pvalue)
    assert c.p_ttest == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue, rel=1e-12)
    # tied magnitudes at n <= 13: the exact permutation p, as the per-case comparison
    d = np.array([0.1, -0.1, 0.2, 0.2, 0.3, 0.1])
    tied = run_level_comparison(d, np.zeros_like(d))
    assert tied.p_wilcoxon == pytest.approx(_signed_rank_p(d)[1]) == pytest.approx(0.125)


def test_run_level_comparison_degenerate_cases():
    one = run_level_comparison([0.7], [0.6])
    assert one.n == 1 and one.mean_diff == pytest.approx(0.1)
    assert math.isnan(one.ci_low) and math.isnan(one.p_ttest)  # no interval from one run
    same = run_level_comparison([0.7, 0.8, 0.9], [0.6, 0.7, 0.8])
    assert same.ci_low == pytest.approx(0.1) and same.ci_high == pytest.approx(0.1)
    zeros = run_level_comparison([0.5, 0.5], [0.5, 0.5])
    assert zeros.ties == 2 and math.isnan(zeros.p_wilcoxon)
    with pytest.raises(ValueError, match="equally long"):
        run_level_comparison([1.0], [1.0, 2.0])
