"""Paired statistics of a method against a reference method.

- Per case (:func:`paired_comparison`): mean difference with a bootstrap 95% interval,
  wins/ties/losses, and the two-sided Wilcoxon signed-rank p-value (hand-written, below).
- Per training run (:func:`run_level_comparison`, the study's primary analysis): each (fold, seed)
  run is one unit; mean difference with a t-interval over the units, wins/ties/losses, and the
  two-sided Wilcoxon signed-rank and paired t-test p-values, both from scipy.stats.

Per case:

The Wilcoxon test follows scipy.stats.wilcoxon (``zero_method="wilcox"``: zero differences are
dropped; no continuity correction): the exact null distribution of W+ when at most 50 non-zero
differences remain and none of their magnitudes tie (scipy's ``method="exact"`` on the non-zero
differences), the normal approximation with the tie-corrected variance otherwise (scipy's
``method="asymptotic"``; with ties or zeros at n <= 50 scipy's default is a permutation test
instead, which is random for larger n).
The tests check both branches against scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rdcl.errors import RdclInputError

EXACT_MAX_N = 50
"""Largest number of non-zero differences for which the exact distribution is used (scipy's)."""


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


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``values`` (ties get the mean of their ranks)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _exact_cdf(n: int) -> np.ndarray:
    """P(W+ <= w) for w = 0 .. n(n+1)/2 under H0 with ``n`` untied non-zero differences."""
    top = n * (n + 1) // 2
    counts = np.zeros(top + 1, dtype=np.float64)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return np.cumsum(counts) / 2.0**n


def wilcoxon_signed_rank(diffs: Sequence[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences ``diffs`` (method - baseline).

    Returns ``(statistic, p)`` where statistic = min(W+, W-) as scipy reports it. NaN entries are
    dropped; with no non-zero difference left the result is ``(nan, nan)``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    d = d[d != 0]
    n = d.size
    if n == 0:
        return math.nan, math.nan
    ranks = _ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    stat = min(w_plus, w_minus)
    tied = len(np.unique(np.abs(d))) < n
    if n <= EXACT_MAX_N and not tied:
        cdf = _exact_cdf(n)
        p = 2.0 * cdf[round(stat)]
        return stat, float(min(1.0, p))
    _, counts = np.unique(np.abs(d), return_counts=True)
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts**3 - counts)) / 48.0
    if var <= 0:
        return stat, math.nan
    z = (w_plus - mean) / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return stat, float(min(1.0, p))


def bootstrap_mean_ci(
    values: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (finite entries), seeded.

    Returns ``(nan, nan)`` for no finite values; a single value gives ``(v, v)``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


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


def scipy_wilcoxon(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of ``diffs`` by ``scipy.stats.wilcoxon``.

    Zero differences are dropped (``zero_method="wilcox"``); the p-value is exact (the exact null
    distribution of the statistic) when at most :data:`EXACT_MAX_N` non-zero differences remain
    and none of their magnitudes tie, from the normal approximation otherwise (``method=
    "asymptotic"``). NaN when no non-zero difference remains.
    """
    import scipy.stats

    nz = diffs[diffs != 0]
    if nz.size == 0:
        return math.nan
    tied = len(np.unique(np.abs(nz))) < nz.size
    method = "exact" if nz.size <= EXACT_MAX_N and not tied else "asymptotic"
    return float(scipy.stats.wilcoxon(nz, method=method).pvalue)


def run_level_comparison(
    method: Sequence[float], reference: Sequence[float], *, level: float = 0.95
) -> PairedComparison:
    """Compare a method with a reference over paired training runs (the study's primary test).

    ``method[i]`` and ``reference[i]`` are the scores of the same unit (a fold and seed: the two
    methods trained on the same cases with the same seed), each the mean over that run's test
    cases. Units where either score is NaN are left out. The interval is the Student t-interval
    of the mean difference over the ``n`` units (mean +- t_{(1+level)/2, n-1} s / sqrt(n), from
    ``scipy.stats.ttest_1samp``), which treats the units as independent; ``p_ttest`` is the
    paired t-test (``scipy.stats.ttest_rel``) and ``p_wilcoxon`` :func:`scipy_wilcoxon`. With
    fewer than 2 units the interval and ``p_ttest`` are NaN; with identical differences the
    interval has zero width. Raises ValueError when the two sequences differ in length.
    """
    import scipy.stats

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
        p_wilcoxon=scipy_wilcoxon(d),
        level=level,
        p_ttest=p_t,
        interval="t",
    )
