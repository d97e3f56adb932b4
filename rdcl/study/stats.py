"""Paired statistics of a method against a reference method, by case and by training run.

- Per case (:func:`paired_comparison`): mean difference with a percentile bootstrap 95% interval
  (``scipy.stats.bootstrap``), wins/ties/losses, and the two-sided Wilcoxon signed-rank p-value.
- Per training run (:func:`run_level_comparison`, the study's primary analysis): each (fold, seed)
  run is one unit; mean difference with a t-interval over the units, wins/ties/losses, and the
  two-sided Wilcoxon signed-rank and paired t-test p-values.

Every test and interval is scipy's (:func:`wilcoxon_signed_rank` says which Wilcoxon p is used).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

from rdcl.errors import RdclInputError


@dataclass(frozen=True)
class PairedComparison:
    """A method against a reference on the same paired units (difference = method - reference):
    cases (:func:`paired_comparison`) or training runs (:func:`run_level_comparison`).

    ``ci_low``/``ci_high``: interval of the mean difference at ``level``, of the kind named by
    ``interval`` (``"bootstrap"``: percentile bootstrap; ``"t"``: Student t-interval);
    ``wins``/``ties``/``losses``: units where the method scores higher/equal/lower;
    ``p_wilcoxon``: two-sided Wilcoxon signed-rank p-value (NaN with no non-zero difference);
    ``p_ttest``: two-sided paired t-test p-value (run level only; NaN otherwise or with < 2 units).
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    p_wilcoxon: float
    level: float = 0.95
    p_ttest: float = math.nan
    interval: str = "bootstrap"

    def to_dict(self) -> dict:
        """Plain dict for JSON/CSV."""
        return asdict(self)


def wilcoxon_signed_rank(diffs: Sequence[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences ``diffs`` (method - reference).

    ``scipy.stats.wilcoxon`` with its default ``method="auto"`` on the non-zero differences (NaN
    entries and zero differences are dropped first, Wilcoxon's own treatment of zeros): the exact
    null distribution of the statistic when at most 50 remain and none of their magnitudes tie;
    with tied magnitudes the exact permutation distribution over all 2^n sign assignments (with
    average ranks) when n <= 13, the normal approximation with the tie-corrected variance
    otherwise; the normal approximation for n > 50. No continuity correction.

    Returns:
        ``(statistic, p)``, statistic = min(W+, W-) as scipy reports it; ``(nan, nan)`` with no
        non-zero difference.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return math.nan, math.nan
    res = scipy.stats.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)


def bootstrap_mean_ci(
    values: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (finite entries), seeded.

    ``scipy.stats.bootstrap(method="percentile")`` with ``n_boot`` resamples drawn by
    ``numpy.random.default_rng(seed)``. Returns ``(nan, nan)`` for no finite values; a single
    value gives ``(v, v)``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:  # scipy needs two observations; every resample of one value is that value
        return float(v[0]), float(v[0])
    res = scipy.stats.bootstrap(
        (v,),
        np.mean,
        confidence_level=level,
        n_resamples=n_boot,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_comparison(
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare per-case scores of a method with the baseline's on the same cases (same order).

    Pairs where either score is NaN (e.g. DSC of a case whose masks are both empty) are left out.
    Raises ValueError when the two sequences differ in length.
    """
    a, b = _finite_pairs(method, baseline)
    d = a - b
    lo, hi = bootstrap_mean_ci(d, level=level, n_boot=n_boot, seed=seed)
    _, p = wilcoxon_signed_rank(d)
    return PairedComparison(
        n=int(d.size),
        mean_diff=float(d.mean()) if d.size else math.nan,
        ci_low=lo,
        ci_high=hi,
        wins=int(np.count_nonzero(d > 0)),
        ties=int(np.count_nonzero(d == 0)),
        losses=int(np.count_nonzero(d < 0)),
        p_wilcoxon=p,
        level=level,
    )


def _finite_pairs(
    method: Sequence[float], reference: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of two equally long 1D score lists where both scores are finite."""
    a = np.asarray(method, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise RdclInputError(
            f"expected two equally long 1D score lists, found shapes {a.shape} and {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def run_level_comparison(
    method: Sequence[float], reference: Sequence[float], *, level: float = 0.95
) -> PairedComparison:
    """Compare a method with a reference over paired training runs (the study's primary test).

    ``method[i]`` and ``reference[i]`` are the scores of the same unit (a fold and seed: the two
    methods trained on the same cases with the same seed), each the mean over that run's test
    cases. Units where either score is NaN are left out. The interval is the Student t-interval
    of the mean difference over the ``n`` units (mean +- t_{(1+level)/2, n-1} s / sqrt(n), from
    ``scipy.stats.ttest_1samp``), which treats the units as independent; ``p_ttest`` is the
    paired t-test (``scipy.stats.ttest_rel``) and ``p_wilcoxon`` :func:`wilcoxon_signed_rank`. With
    fewer than 2 units the interval and ``p_ttest`` are NaN; with identical differences the
    interval has zero width. Raises ValueError when the two sequences differ in length.
    """
    a, b = _finite_pairs(method, reference)
    d = a - b
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    lo = hi = p_t = math.nan
    if n >= 2:
        if np.all(d == d[0]):  # no spread: scipy's t is undefined (0/0) or infinite
            lo = hi = mean
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = scipy.stats.ttest_1samp(d, 0.0)
                ci = res.confidence_interval(confidence_level=level)
                lo, hi = float(ci.low), float(ci.high)
                p_t = float(scipy.stats.ttest_rel(a, b).pvalue)
    return PairedComparison(
        n=n,
        mean_diff=mean,
        ci_low=lo,
        ci_high=hi,
        wins=int(np.count_nonzero(d > 0)),
        ties=int(np.count_nonzero(d == 0)),
        losses=int(np.count_nonzero(d < 0)),
        p_wilcoxon=wilcoxon_signed_rank(d)[1],
        level=level,
        p_ttest=p_t,
        interval="t",
    )
