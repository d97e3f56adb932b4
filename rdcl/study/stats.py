"""Paired per-case statistics of a method against the baseline: mean difference with a bootstrap
95% interval, wins/ties/losses, and the two-sided Wilcoxon signed-rank p-value.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rdcl.errors import RdclInputError

EXACT_MAX_N = 50
"""Largest number of non-zero differences for which the exact distribution is used (scipy's)."""


@dataclass(frozen=True)
class PairedComparison:
    """A method against the baseline on the same cases (difference = method - baseline).

    ``ci_low``/``ci_high``: percentile bootstrap interval of the mean difference (``level``);
    ``wins``/``ties``/``losses``: cases where the method scores higher/equal/lower;
    ``p_wilcoxon``: two-sided Wilcoxon signed-rank p-value (NaN with no non-zero difference).
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
    a = np.asarray(method, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise RdclInputError(
            f"expected two equally long 1D score lists, found shapes {a.shape} and {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
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
