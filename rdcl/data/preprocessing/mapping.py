"""One intensity mapping for every data set of a run, COVID and non-COVID alike.

The general encoder G is pre-trained on the non-COVID sets (stage 1) and compares their relation
matrices with the COVID set's (L_G, stage 2), so the same tissue must reach G as the same input
from every set. rdcl's rule:

- **HU sets** (``DatasetSpec.units == "hu"``: NIfTI/NRRD/DICOM CT, COVID-19-CT-Seg, MSD Task06,
  NSCLC effusion, ``rdcl prepare slices``) are all mapped by ONE rule, the run's
  (``data.normalization``; default ``window`` with ``data.window`` = the lung window
  (-1250, 250) HU -> [0, 1]). A set whose ``dataset.json`` declares another rule is refused.
  The lung window is the default because it is the only mapping every COVID-19-CT-Seg case can
  share: its 10 radiopaedia volumes were published already windowed to (-1250, 250).
  With ``ct`` the foreground statistics are pooled over every HU set of the call
  (:func:`pooled_stats`) instead of each set's own.
- **Mapped sets** (``units == "mapped"``: already windowed PNG slices, normalised ``.npz`` patches)
  have no HU; they declare their mapping (``window`` over their own value range: PNG (0, 255),
  patches (0, 1)), which rdcl takes to be the lung window of the HU sets. They can only join a run
  whose rule is ``window``.

:func:`check_one_mapping` enforces this before any preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rdcl.data.datasets import published
from rdcl.data.datasets.layout import load_case
from rdcl.data.datasets.spec import DatasetError, DatasetSpec
from rdcl.data.preprocessing.intensity import compute_intensity_stats

if TYPE_CHECKING:
    from rdcl.config import DataConfig
    from rdcl.data.preprocessing.intensity import IntensityStats

__all__ = ["InputMapping", "check_one_mapping", "input_mapping", "pooled_stats"]


@dataclass(frozen=True)
class InputMapping:
    """How one data set's voxel values become network input.

    ``units``: ``"hu"`` or ``"mapped"``; ``normalization``: ``"ct"``, ``"window"``, ``"zscore"`` or
    ``None`` (a mapped set that declares nothing); ``window``: the window in the set's own units
    for ``"window"`` (for HU sets in HU), else ``None``.
    """

    name: str
    units: str
    normalization: str | None
    window: tuple[float, float] | None

    def describe(self) -> str:
        """One phrase for messages, e.g. ``window (-1250, 250) HU``."""
        if self.normalization == "window" and self.window is not None:
            unit = " HU" if self.units == "hu" else " (its own units)"
            return f"window ({self.window[0]:g}, {self.window[1]:g}){unit}"
        return str(self.normalization or "no declared mapping")


def _cached_units(info: dict[str, Any]) -> str:
    if "units" in info:
        return str(info["units"])
    layout = info.get("dataset", {}).get("layout")
    return "mapped" if layout == "npz" else "hu"


def input_mapping(dataset: Any, data_cfg: DataConfig) -> InputMapping:
    """The :class:`InputMapping` of a ``DatasetSpec`` or a ``CachedDataset`` under ``data_cfg``."""
    if isinstance(dataset, DatasetSpec):
        units = dataset.units
        norm = dataset.normalization or (data_cfg.normalization if units == "hu" else None)
        window = None
        if norm == "window":
            if dataset.layout == "covid19_ct_seg":  # radiopaedia's (0, 255) is this window
                window = published.CORONACASES_WINDOW
            else:
                windows = {tuple(c.window or data_cfg.window) for c in dataset.cases}
                window = windows.pop() if len(windows) == 1 else None
        return InputMapping(dataset.name, units, norm, window)
    info = getattr(dataset, "info", {}) or {}
    w = info.get("window")
    name = str(info.get("dataset", {}).get("name", getattr(dataset, "cache_dir", "cache")))
    units = _cached_units(info)
    window = (float(w[0]), float(w[1])) if w else None
    if window is None and info.get("dataset", {}).get("layout") == "covid19_ct_seg":
        window = published.CORONACASES_WINDOW
    return InputMapping(name, units, info.get("normalization"), window)


def check_one_mapping(datasets: Sequence[Any], data_cfg: DataConfig) -> list[InputMapping]:
    """Refuse a run whose data sets would reach G through different intensity mappings.

    Args:
        datasets: the run's ``DatasetSpec``/``CachedDataset`` inputs, COVID set first.
        data_cfg: the run's data settings (``normalization``, ``window``).

    Returns:
        The :class:`InputMapping` of each dataset, in order.

    Raises:
        DatasetError: (one line) two HU sets with different rules, a mapped set that declares no
            mapping, or a mapped set in a run whose rule is not ``window``.
    """
    mappings = [input_mapping(d, data_cfg) for d in datasets]
    hu = [m for m in mappings if m.units == "hu"]
    rules = {(m.normalization, m.window if m.normalization == "window" else None) for m in hu}
    if len(rules) > 1:
        listed = "; ".join(f"{m.name}: {m.describe()}" for m in hu)
        raise DatasetError(
            "G must see one intensity mapping, but the HU data sets of this run map differently "
            f"({listed}); give them the same rdcl.normalization/window in dataset.json or "
            "remove the declarations so that data.normalization applies to all"
        )
    rule = next(iter(rules))[0] if rules else data_cfg.normalization
    for m in mappings:
        if m.units != "mapped":
            continue
        if m.normalization is None:
            raise DatasetError(
                f"data set {m.name} holds no HU (already windowed or normalised) and declares no "
                "mapping; expected rdcl.normalization 'window' with its value range as window"
            )
        if m.normalization != "window" or rule != "window":
            raise DatasetError(
                f"data set {m.name} is already windowed ({m.describe()}) and can share only a "
                f"window mapping, but the run maps HU with {rule!r}; set data.normalization: window"
            )
    return mappings


def pooled_stats(specs: Sequence[DatasetSpec], *, seed: int = 0) -> IntensityStats:
    """Foreground intensity statistics pooled over every case of ``specs`` (HU sets), for the ``ct``
    rule shared by a run's sets
    (:func:`rdcl.data.preprocessing.intensity.compute_intensity_stats`)."""
    pairs = (load_case(c)[:2] for spec in specs for c in spec.cases)
    return compute_intensity_stats(pairs, seed=seed)
