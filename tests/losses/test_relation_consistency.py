"""Ramp-up and the relation-consistency terms on a hand-checkable C = 2 example."""

from __future__ import annotations

import math

import pytest
import torch

from rdcl.config import TrainConfig
from rdcl.losses import RELATION_TERMS, rampup, relation_consistency, resolved_rampup_steps

# C = 2 channels over N = 2 positions (B = 1, spatial 1x2).
# Orthogonal channels [1, 0] and [0, 1]: Gram = I, rows already unit -> R = I.
ORTHOGONAL = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
# Identical channels [1, 1] and [1, 1]: Gram = [[2, 2], [2, 2]] -> R = all 1/sqrt(2).
IDENTICAL = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]])
# ||I - R||_F^2 = 2 (1 - 1/sqrt2)^2 + 2 (1/sqrt2)^2 = 2 (1.5 - sqrt2) + 1 = 4 - 2 sqrt(2) ~ 1.1716
# (the paper's squared Frobenius norm, the default "sum" reduction); "mean" divides by C^2 = 4.
D_ORTH_VS_IDENT = 4.0 - 2.0 * math.sqrt(2.0)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, math.exp(-5.0)), (50, math.exp(-1.25)), (100, 1.0), (250, 1.0), (-10, math.exp(-5.0))],
)
def test_rampup_values(step: int, expected: float) -> None:
    # t = 0 -> exp(-5); t = 0.5 -> exp(-5 * 0.25) = exp(-1.25); t >= 1 -> 1; t clipped at 0.
    assert rampup(step, 100) == pytest.approx(expected, rel=1e-12)


def test_rampup_zero_steps_is_one_and_negative_raises() -> None:
    assert rampup(0, 0) == 1.0
    with pytest.raises(ValueError, match="rampup_steps must be >= 0"):
        rampup(0, -1)


def test_relation_terms_orthogonal_vs_identical() -> None:
    terms = relation_consistency(
        ORTHOGONAL, IDENTICAL, ORTHOGONAL, lambda_g=1.0, lambda_t=0.1, ramp=0.5
    )
    assert set(terms) == set(RELATION_TERMS)
    assert terms["d_g"].item() == pytest.approx(D_ORTH_VS_IDENT, abs=1e-6)
    assert terms["d_t"].item() == pytest.approx(D_ORTH_VS_IDENT, abs=1e-6)
    assert terms["loss_g"].item() == pytest.approx(0.5 * D_ORTH_VS_IDENT, abs=1e-6)
    assert terms["loss_t"].item() == pytest.approx(-0.05 * D_ORTH_VS_IDENT, abs=1e-6)


def test_mean_reduction_divides_the_sum_by_c_squared() -> None:
    terms = relation_consistency(
        ORTHOGONAL, IDENTICAL, ORTHOGONAL, lambda_g=1.0, lambda_t=0.1, reduction="mean"
    )
    assert terms["d_g"].item() == pytest.approx(D_ORTH_VS_IDENT / 4, abs=1e-6)
    assert terms["d_g"].item() == pytest.approx(1.0 - 1.0 / math.sqrt(2.0), abs=1e-6)
    assert terms["loss_t"].item() == pytest.approx(-0.1 * D_ORTH_VS_IDENT / 4, abs=1e-6)
    with pytest.raises(ValueError, match="reduction must be one of"):
        relation_consistency(ORTHOGONAL, IDENTICAL, ORTHOGONAL, lambda_g=1, lambda_t=1,
                             reduction="max")  # fmt: skip


def test_relations_are_scale_invariant_and_zero_for_equal_structure() -> None:
    # R normalises the Gram rows, so scaling features by 3 does not change it: d = 0.
    terms = relation_consistency(
        ORTHOGONAL, 3.0 * ORTHOGONAL, IDENTICAL * 2.0, lambda_g=1.0, lambda_t=1.0
    )
    assert terms["d_g"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["d_t"].item() == pytest.approx(D_ORTH_VS_IDENT, abs=1e-6)


def _terms_at(cfg: TrainConfig, step: int) -> dict[str, torch.Tensor]:
    """The relation terms as the stage-2 step computes them from the config (stages.py)."""
    return relation_consistency(
        ORTHOGONAL,
        IDENTICAL,
        IDENTICAL,
        lambda_g=cfg.lambda_g,
        lambda_t=cfg.lambda_t,
        ramp=rampup(step, resolved_rampup_steps(cfg)),
        reduction=cfg.relation_reduction,
    )


def test_rampup_and_reduction_from_config() -> None:
    cfg = TrainConfig(lambda_g=2.0, lambda_t=0.5, rampup_steps=10)
    terms = _terms_at(cfg, 5)
    ramp = math.exp(-1.25)
    assert terms["d_t"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["loss_g"].item() == pytest.approx(2.0 * ramp * D_ORTH_VS_IDENT, abs=1e-6)
    assert _terms_at(cfg, 10)["loss_g"].item() == pytest.approx(2.0 * D_ORTH_VS_IDENT, abs=1e-6)
    mean = TrainConfig(lambda_g=2.0, lambda_t=0.5, rampup_steps=0, relation_reduction="mean")
    assert _terms_at(mean, 0)["loss_g"].item() == pytest.approx(2.0 * D_ORTH_VS_IDENT / 4, abs=1e-6)


def test_loss_t_gradient_reaches_t_features_only() -> None:
    g_n = ORTHOGONAL.clone().requires_grad_(True)
    g_c = (IDENTICAL + torch.tensor([0.0, 0.3]).view(1, 1, 1, 2)).requires_grad_(True)
    t_c = ORTHOGONAL.clone().requires_grad_(True)
    relation_consistency(g_n, g_c, t_c, lambda_g=1.0, lambda_t=1.0)["loss_t"].backward()
    # The fused op may hand unused inputs an exactly-zero gradient instead of None.
    for unused in (g_n, g_c):
        assert unused.grad is None or torch.count_nonzero(unused.grad) == 0
    assert t_c.grad is not None and t_c.grad.abs().sum() > 0


def test_config_relation_reduction_is_validated() -> None:
    from rdcl.config import ConfigError

    assert TrainConfig().relation_reduction == "sum"
    assert TrainConfig(relation_reduction="mean").relation_reduction == "mean"
    with pytest.raises(ConfigError, match=r"train\.relation_reduction must be one of"):
        TrainConfig(relation_reduction="Sum")


def test_row_reduction_divides_the_sum_by_c() -> None:
    terms = relation_consistency(
        ORTHOGONAL, IDENTICAL, ORTHOGONAL, lambda_g=1.0, lambda_t=0.1, reduction="row"
    )
    assert terms["d_g"].item() == pytest.approx(D_ORTH_VS_IDENT / 2, abs=1e-6)
    assert terms["loss_t"].item() == pytest.approx(-0.1 * D_ORTH_VS_IDENT / 2, abs=1e-6)
    row = TrainConfig(lambda_g=2.0, lambda_t=0.5, rampup_steps=0, relation_reduction="row")
    assert _terms_at(row, 0)["loss_g"].item() == pytest.approx(2.0 * D_ORTH_VS_IDENT / 2, abs=1e-6)
    assert TrainConfig(relation_reduction="row").relation_reduction == "row"
