"""Run configuration: frozen dataclasses, presets, JSON/YAML loading and CLI overrides.

A :class:`Config` is saved with every checkpoint and embedded in every exported model. Nothing in
rdcl reads hidden globals or environment variables for configuration.

Every config is checked when it is constructed (``__post_init__``): each section's field types
(:mod:`rdcl.config_types`) and values, and in :class:`Config` the constraints between sections
(patch and spacing dimensionality, patch a multiple of the network's stride). A constructor,
:func:`dataclasses.replace`, :meth:`Config.from_dict`, :meth:`Config.override` and
:func:`load_config` all raise :class:`ConfigError` (one line) for an invalid value, so a config
object that exists is a valid one.

Axis convention: every spatial tuple is in array order, (z, y, x) in 3D and (y, x) in 2D; spacings
are in mm.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from rdcl.config_types import ConfigValueError, check_section, coerce_section
from rdcl.errors import ConfigError
from rdcl.fsutil import write_text_atomic

METHODS = ("baseline", "pretrain", "multi_encoder", "backbone", "rdcl_g", "rdcl")
"""Training methods (paper Tables II/III); ``pretrain`` fine-tunes a G pre-trained on non-COVID."""


AUTOCAST_MODES = ("none", "bf16")
"""Values of ``train.autocast``: fp32 everywhere, or bf16 autocast of the forward pass."""

AUGMENT_ON = ("loader", "device")
"""Values of ``data.augment_on``: where the spatial, flip and intensity augmentation run."""

NORMALIZATIONS = ("ct", "window", "zscore")
"""Values of ``data.normalization`` (and of a dataset's own ``rdcl.normalization``): the
intensity schemes of :mod:`rdcl.data.preprocessing.intensity` and of the predictor pipeline
(:mod:`rdcl.inference.pipeline`)."""

LUNG_WINDOW = (-1250.0, 250.0)
"""The lung window in HU: the default ``data.window`` and the intensity convention of
COVID-19-CT-Seg (its radiopaedia volumes were published windowed to it and scaled to 0..255)."""


def alternatives(names: tuple[str, ...]) -> str:
    """``names`` for a message: ``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


RUN_RECORD = "run"
"""Top-level entry of a run's ``config.json`` recording how it ran (world size, per-rank batch);
not a setting: :meth:`Config.from_dict` ignores it."""


RELATION_REDUCTIONS = ("sum", "row", "mean")
"""Values of ``train.relation_reduction``: Eq. 4-5's squared Frobenius norm (a sum over the C x C
relation entries, at most 4C), that sum / C (per row, at most 4) or that sum / C^2."""

DEFAULT_RAMPUP_FRACTION = 0.6
"""Default ``train.rampup_fraction``, chosen on the validation grid of issue 17
(``docs/relation_weights.md``, "Validation grid"): a ramp over 0.6 of stage 2 scored above 0.3
(the relation-consistency code rdcl builds on, Liu et al., IEEE TMI 2020, ``liuquande/SRC-MT``,
ramps over 30 of 100 epochs) on both validation units; the paper gives no ramp length."""


@dataclass(frozen=True)
class ModelConfig:
    """Network architecture (paper Table I by default).

    ``features[i]``, ``kernels[i]`` and ``strides[i]`` describe encoder stage i; ``strides[0]`` is
    all ones. ``dim`` is 2 or 3 and every kernel/stride tuple has ``dim`` entries.
    """

    dim: int = 3
    in_channels: int = 1
    num_classes: int = 1
    features: tuple[int, ...] = (32, 64, 128, 256, 320, 320)
    kernels: tuple[tuple[int, ...], ...] = (
        (1, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
    )
    strides: tuple[tuple[int, ...], ...] = (
        (1, 1, 1),
        (1, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (1, 2, 2),
    )
    convs_per_stage: int = 2
    deep_supervision: bool = True
    norm_eps: float = 1e-5
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` for a wrongly typed value or inconsistent stage lists."""
        _check_types(self, "model")
        if self.dim not in (2, 3):
            raise ConfigError(f"model.dim must be 2 or 3, found {self.dim}")
        for name in ("in_channels", "num_classes", "convs_per_stage"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, found {getattr(self, name)}")
        for name in ("features", "kernels", "strides"):
            if not getattr(self, name) or min(_flat(getattr(self, name)), default=0) < 1:
                raise ConfigError(
                    f"model.{name} must be a non-empty list of values >= 1, found "
                    f"{getattr(self, name)}"
                )
        n = len(self.features)
        if len(self.kernels) != n or len(self.strides) != n:
            raise ConfigError(
                f"model.features, kernels and strides need one entry per stage; found "
                f"{n}, {len(self.kernels)} and {len(self.strides)}"
            )
        for name, seq in (("kernels", self.kernels), ("strides", self.strides)):
            for i, t in enumerate(seq):
                if len(t) != self.dim:
                    raise ConfigError(
                        f"model.{name}[{i}] must have {self.dim} entries (dim={self.dim}), "
                        f"found {tuple(t)}"
                    )
        if any(s != 1 for s in self.strides[0]):
            raise ConfigError(f"model.strides[0] must be all ones, found {self.strides[0]}")

    def total_stride(self) -> tuple[int, ...]:
        """Product of all strides per axis: patch sizes must be multiples of it."""
        out = [1] * self.dim
        for s in self.strides:
            out = [a * b for a, b in zip(out, s, strict=True)]
        return tuple(out)


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing, sampling and augmentation.

    ``normalization``: the ONE rule that maps every HU data set of a run (COVID and non-COVID, both
    stages; :mod:`rdcl.data.preprocessing.mapping`) to the network input. ``"window"`` (default)
    maps ``window`` (default the lung window (-1250, 250) HU, the only mapping every COVID-19-CT-Seg
    case shares) to [0, 1]; ``"ct"`` clips to the foreground 0.5/99.5 percentiles and z-scores with
    the foreground statistics pooled over the run's HU sets (nnU-Net's CT scheme); ``"zscore"``
    z-scores each image with its own statistics. Already windowed sets (PNG slices,
    ``.npz`` patches) declare their own window and need ``"window"``.

    ``general_patch_size``: the patch of the non-COVID batches X_n (stage 1 and L_G), for
    non-COVID data smaller than the COVID patch (e.g. 96 mm tumour patches); ``None``: the same
    as ``patch_size``. The relation matrices average over positions, so X_n and X_c need not
    share a shape.

    ``target_spacing`` (mm, array order): the grid every case is resampled to. ``"auto"`` (the
    default) is nnU-Net's rule over the training set (median spacing, 10th percentile on a coarse
    axis of anisotropic data; :mod:`rdcl.data.preprocessing.spacing`), resolved when training starts
    and saved with the run's config and checkpoints, which prediction then uses; ``null`` keeps
    every case on its own grid.

    ``augment_on``: ``"loader"`` computes each augmented patch in the loader (worker processes
    with ``num_workers``); ``"device"`` has the loader only crop and ship each sample's source
    region with its drawn parameters, and the step applies the rotation/scaling, flips and intensity
    augmentation on the training device (:mod:`rdcl.data.sampling.device_augment`; the same draws,
    equal to float32 rounding except the noise values). Meant for GPUs, where it frees the loader's
    CPU cores.

    ``num_workers``: DataLoader worker processes computing batches ahead (0: in the training
    process); ``loader_thread`` (with ``num_workers: 0``): one background thread of the training
    process computes them ahead instead, without the workers' inter-process copies (the choice
    for ``augment_on: device``, whose batches are plain crops).
    """

    patch_size: tuple[int, ...] = (56, 160, 192)
    general_patch_size: tuple[int, ...] | None = None
    batch_size: int = 2
    target_spacing: tuple[float, ...] | Literal["auto"] | None = "auto"
    normalization: str = "window"
    window: tuple[float, float] = LUNG_WINDOW
    foreground_oversample: float = 0.33
    augment: bool = True
    augment_on: str = "loader"
    num_workers: int = 0
    loader_thread: bool = False

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` for a wrongly typed or impossible value."""
        _check_types(self, "data")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"data.normalization must be {alternatives(NORMALIZATIONS)}, found "
                f"{self.normalization!r}"
            )
        if self.augment_on not in AUGMENT_ON:
            raise ConfigError(
                f"data.augment_on must be one of {AUGMENT_ON}, found {self.augment_on!r}"
            )
        if self.loader_thread and self.num_workers > 0:
            raise ConfigError(
                f"data.loader_thread computes batches in the training process; expected "
                f"data.num_workers 0 with it, found {self.num_workers}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, found {self.batch_size}")
        if not 0.0 <= self.foreground_oversample <= 1.0:
            raise ConfigError(
                f"data.foreground_oversample must be in [0, 1], found {self.foreground_oversample}"
            )
        if any(p < 1 for p in self.patch_size):
            raise ConfigError(f"data.patch_size must be positive, found {self.patch_size}")
        if self.general_patch_size is not None and any(p < 1 for p in self.general_patch_size):
            raise ConfigError(
                f"data.general_patch_size must be positive or null, found {self.general_patch_size}"
            )
        if self.window[1] <= self.window[0]:
            raise ConfigError(
                f"data.window must be (low, high) with low < high, found {self.window}"
            )
        if self.target_spacing not in (None, "auto") and not all(
            math.isfinite(t) and t > 0 for t in self.target_spacing
        ):
            raise ConfigError(
                f"data.target_spacing must be positive mm, auto or null, found "
                f"{self.target_spacing}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the collaborative-learning schedule (paper + nnU-Net defaults).

    ``lambda_g``/``lambda_t`` are the final weights of L_G and L_T; both ramp up from 0 with
    exp(-5 (1 - t)^2), t = step / ramp clipped to 1, over the first ``rampup_fraction`` of the
    stage-2 steps (ramp = round(rampup_fraction * ``steps``)), or over ``rampup_steps`` steps when
    that is set (it wins over the fraction; configs and checkpoints written before the fraction
    existed set it, so they keep their meaning). ``rdcl.losses.resolved_rampup_steps`` is the one
    resolution. ``relation_reduction`` reduces the squared relation differences: ``"sum"`` (the
    paper's squared Frobenius norm), ``"row"`` (sum / C) or ``"mean"`` (sum / C^2). The defaults
    and the experiments behind them: docs/relation_weights.md.
    ``snapshots`` > 0 also keeps the weights at that many evenly spaced steps of each stage (and
    at step 0) in ``snapshots/<stage>_step_NNNNNNN.ckpt`` (for relation matrices over training).

    G in stage 2 (``rdcl``, ``rdcl_g``), whose only loss L_G is minimised by collapsing its
    channels into one feature and is blind to the features' scale: ``general_weight_decay`` is
    its weight decay (default 0: a decay has nothing to regularise there and, over a long run,
    fades G's features to nothing), ``general_anchor`` the strength a of an L2 pull towards its
    stage-1 weights theta_0, a (theta - theta_0) added to its gradient (default 0.01: keeps G's
    effective rank where 0.001 lets it fall to a third). ``feature_stats_every``: every that many
    steps (and at the last) the log records G's bottleneck effective rank and feature RMS
    (``g_rank``, ``g_rms``; 0: never). Measurements: docs/relation_weights.md, "Keeping G alive".
    """

    method: str = "rdcl"
    pretrain_steps: int = 1000
    steps: int = 1000
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    general_weight_decay: float = 0.0
    general_anchor: float = 0.01
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    lambda_g: float = 0.001
    lambda_t: float = 0.001
    rampup_fraction: float = DEFAULT_RAMPUP_FRACTION
    rampup_steps: int | None = None
    relation_reduction: str = "sum"
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 1
    feature_stats_every: int = 50
    snapshots: int = 0
    device: str = "auto"
    # Speed switches (what each does and its measured effect: docs/architecture.md, "Training
    # speed", and bench/RESULTS.md). None changes the method; the defaults are the measured best
    # or, where not yet measured on a GPU, the conservative choice.
    batched_general: bool = True
    cudnn_benchmark: bool = False
    channels_last: bool = False
    tf32: bool = True
    autocast: str = "none"
    fused_sgd: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    dist_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` for a wrongly typed or impossible value."""
        _check_types(self, "train")
        if self.method not in METHODS:
            raise ConfigError(f"train.method must be one of {METHODS}, found {self.method!r}")
        for name in ("pretrain_steps", "steps", "rampup_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, found {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a finite number > 0, found {self.lr}")
        if not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip must be > 0, found {self.grad_clip}")
        if not 0 <= self.rampup_fraction <= 1:  # also rejects NaN
            raise ConfigError(
                f"train.rampup_fraction must be in [0, 1], found {self.rampup_fraction}"
            )
        for name in ("lambda_g", "lambda_t", "weight_decay", "general_weight_decay",
                     "general_anchor", "poly_exponent"):  # fmt: skip
            if not getattr(self, name) >= 0:  # also rejects NaN
                raise ConfigError(f"train.{name} must be >= 0, found {getattr(self, name)}")
        if self.relation_reduction not in RELATION_REDUCTIONS:
            raise ConfigError(
                f"train.relation_reduction must be one of {RELATION_REDUCTIONS}, found "
                f"{self.relation_reduction!r}"
            )
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"train.momentum must be in [0, 1), found {self.momentum}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("train.checkpoint_every and train.log_every must be >= 1")
        if self.feature_stats_every < 0:
            raise ConfigError(
                f"train.feature_stats_every must be >= 0, found {self.feature_stats_every}"
            )
        if self.snapshots < 0:
            raise ConfigError(f"train.snapshots must be >= 0, found {self.snapshots}")
        if self.autocast not in AUTOCAST_MODES:
            raise ConfigError(
                f"train.autocast must be one of {AUTOCAST_MODES}, found {self.autocast!r}"
            )
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"train.dist_timeout_s must be > 0, found {self.dist_timeout_s}")
        if self.cuda_graphs and not self.device.startswith(("cuda", "auto")):
            raise ConfigError(
                f"train.cuda_graphs needs a CUDA device (train.device cuda, cuda:N or auto), "
                f"found {self.device!r}"
            )
        if self.cuda_graphs and self.compile:
            raise ConfigError(
                "train.cuda_graphs and train.compile cannot both be on (torch.compile's "
                "mode='reduce-overhead' is its own CUDA graph); found both true"
            )


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` when the sections do not fit together (each section has
        checked itself when it was constructed)."""
        for name, klass in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), klass):
                raise ConfigError(
                    f"config section {name!r} must be a {klass.__name__}, found "
                    f"{type(getattr(self, name)).__name__}"
                )
        spacing = self.data.target_spacing
        if spacing not in (None, "auto") and len(spacing) != self.model.dim:
            raise ConfigError(
                f"data.target_spacing must have {self.model.dim} entries (model.dim), or be auto "
                f"or null, found {spacing}"
            )
        total = self.model.total_stride()
        patches = [("patch_size", self.data.patch_size)]
        if self.data.general_patch_size is not None:
            patches.append(("general_patch_size", self.data.general_patch_size))
        for name, patch in patches:
            if len(patch) != self.model.dim:
                raise ConfigError(
                    f"data.{name} must have {self.model.dim} entries (model.dim), found {patch}"
                )
            if any(p % s for p, s in zip(patch, total, strict=True)):
                raise ConfigError(
                    f"data.{name} {patch} must be a multiple of the network's total stride {total}"
                )

    def general_data(self) -> DataConfig:
        """``data`` with ``patch_size`` = ``general_patch_size`` (when set): the settings of
        the non-COVID batches X_n."""
        if self.data.general_patch_size is None:
            return self.data
        return dataclasses.replace(self.data, patch_size=self.data.general_patch_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable nested dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a nested dict; unknown keys raise :class:`ConfigError`."""
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
        unknown = set(d) - set(sections) - {RUN_RECORD}
        if unknown:
            raise ConfigError(
                f"unknown config sections {sorted(unknown)}; expected {list(sections)}"
            )
        kwargs = {}
        for name, klass in sections.items():
            kwargs[name] = _section_from_dict(klass, name, d.get(name, {}) or {})
        return cls(**kwargs)

    def replace(self, **sections: Any) -> Config:
        """Copy with whole sections replaced, e.g. ``cfg.replace(train=...)`` (checked as any
        construction is)."""
        return dataclasses.replace(self, **sections)

    def override(self, items: list[str] | tuple[str, ...]) -> Config:
        """Apply ``section.key=value`` overrides (values parsed as YAML, e.g. ``train.lr=0.1``,
        ``data.patch_size=[32,64,64]``) and coerce each to its field's type (``train.lr=1e-3``
        is a float although YAML reads it as a string). Raises :class:`ConfigError` (one line
        naming the key, the expected type and the value) for unknown keys and bad values."""
        import yaml

        d = self.to_dict()
        for item in items:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(f"override must look like section.key=value, found {item!r}")
            key, raw = item.split("=", 1)
            section, name = key.strip().split(".", 1)
            if section not in d or not isinstance(d[section], dict) or name not in d[section]:
                raise ConfigError(f"unknown config key {key!r}")
            try:
                d[section][name] = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"config key {key}: cannot parse the value {raw!r} ({_yaml_problem(exc)})"
                ) from None
        return Config.from_dict(d)

    def save(self, path: str | Path) -> None:
        """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically
        (:func:`rdcl.fsutil.write_text_atomic`: an existing file is replaced only when complete)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            write_text_atomic(path, json.dumps(self.to_dict(), indent=2))


def _check_types(section: Any, name: str) -> None:
    """Raise :class:`ConfigError` when a field of ``section`` (a section dataclass instance named
    ``name`` in files) does not hold a value of its declared type, e.g. ``steps="10"``."""
    try:
        check_section(section, name)
    except ConfigValueError as exc:
        raise ConfigError(str(exc)) from None


def _flat(value: Any) -> list[Any]:
    """The leaves of nested tuples/lists: ``((1, 2), (3,))`` -> ``[1, 2, 3]``."""
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _flat(v)]
    return [value]


def _section_from_dict(klass: type, name: str, d: dict[str, Any]) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, found {type(d).__name__}")
    known = {f.name for f in fields(klass)}
    unknown = set(map(str, d)) - known
    if unknown or not all(isinstance(k, str) for k in d):
        raise ConfigError(f"unknown keys in config section {name!r}: {sorted(unknown)}")
    try:
        values = coerce_section(klass, name, d)  # lists become tuples where declared
    except ConfigValueError as exc:
        raise ConfigError(str(exc)) from None
    return klass(**values)


def _yaml_problem(exc: Exception) -> str:
    """One line from a PyYAML error: its problem and where (line and column, 1-based)."""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_config(path: str | Path) -> Config:
    """Load a JSON or YAML config file (missing keys take the defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            d = yaml.safe_load(text) or {}
        else:
            d = json.loads(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse config file {path}: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # JSON, or bytes that are not UTF-8
        reason = " ".join(str(exc).split())
        raise ConfigError(f"cannot parse config file {path}: {reason}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"config file {path} must hold a mapping, found {type(d).__name__}")
    return Config.from_dict(d)


def _preset_2d(features: tuple[int, ...], patch: tuple[int, int], batch: int) -> Config:
    n = len(features)
    return Config(
        model=ModelConfig(
            dim=2,
            features=features,
            kernels=((3, 3),) * n,
            strides=((1, 1),) + ((2, 2),) * (n - 1),
        ),
        data=DataConfig(patch_size=patch, batch_size=batch, normalization="window"),
    )


PRESETS: dict[str, Config] = {
    # The paper's 3D setting: Table I network, patch 56x160x192, batch 2.
    "paper3d": Config(),
    # The journal version's 2D experiment (nnU-Net 2D style network on axial slices).
    "paper2d": _preset_2d((32, 64, 128, 256, 480, 480, 480), (512, 512), 12),
    # Small presets for CPU tests and the demo.
    "tiny3d": Config(
        model=ModelConfig(
            features=(4, 8, 16, 16),
            kernels=((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
            strides=((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
        ),
        data=DataConfig(patch_size=(16, 32, 32), batch_size=2, num_workers=0),
        train=TrainConfig(pretrain_steps=20, steps=20, rampup_fraction=0.5, checkpoint_every=10),
    ),
    "tiny2d": dataclasses.replace(
        _preset_2d((8, 16, 32, 32), (64, 64), 4),
        train=TrainConfig(pretrain_steps=20, steps=20, rampup_fraction=0.5, checkpoint_every=10),
    ),
}


def preset(name: str) -> Config:
    """Return a named preset (``paper3d``, ``paper2d``, ``tiny3d``, ``tiny2d``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def resolve_config(
    config: str | Path | None = None,
    preset_name: str | None = None,
    overrides: Sequence[str] = (),
    *,
    dim: int | None = None,
) -> Config:
    """The run configuration as ``rdcl train``/``rdcl cv`` resolve it: the file ``config``, else
    the preset ``preset_name`` (default ``paper3d``, or ``paper2d`` for 2D data: ``dim`` 2), with
    ``overrides`` (``section.key=value``) applied. ``dim`` only picks the default preset: whether
    the network fits the data is checked once, where the run is planned
    (``rdcl.training.plan.check_inputs``)."""
    if config is not None:
        cfg = load_config(config)
    else:
        cfg = preset(preset_name or ("paper2d" if dim == 2 else "paper3d"))
    return cfg.override(list(overrides)) if overrides else cfg
