from __future__ import annotations

import math

import pytest
import torch

from rdcl.config import TrainConfig
from rdcl.training.schedule import clip_gradients, make_optimizer, poly_lr, set_lr


def test_poly_lr_values():
    # (1 - t/T)^0.9 * lr: t=0 -> lr; t=5 of 10 -> 0.5^0.9 = 0.535887...; t=9 -> 0.1^0.9
    assert poly_lr(0, 10, 0.01) == 0.01
    assert poly_lr(5, 10, 0.01) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(5, 10, 0.01) == pytest.approx(0.0053588673, rel=1e-8)
    assert poly_lr(9, 10, 0.01) == pytest.approx(0.01 * 0.1**0.9)
    assert poly_lr(10, 10, 0.01) == 0.0
    assert poly_lr(3, 4, 1.0, exponent=1.0) == 0.25


def test_poly_lr_rejects_bad_steps():
    with pytest.raises(ValueError, match="total_steps"):
        poly_lr(0, 0, 0.01)
    with pytest.raises(ValueError, match="step must be"):
        poly_lr(11, 10, 0.01)


def test_optimizer_defaults_and_frozen_params():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    b.requires_grad_(False)
    opt = make_optimizer([*a.parameters(), *b.parameters()], TrainConfig())
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.01,
        0.99,
        True,
        3e-5,
    )
    assert len(group["params"]) == 2  # b's frozen weight and bias are left out
    set_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(b.parameters(), TrainConfig())


def test_clip_gradients_global_norm():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    p.grad, q.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])  # global norm 13
    norm = clip_gradients([p, q], 6.5)
    assert norm == pytest.approx(13.0)
    assert torch.allclose(p.grad, torch.tensor([1.5, 2.0]), atol=1e-6)
    assert torch.allclose(q.grad, torch.tensor([6.0]), atol=1e-6)


def test_clip_gradients_reports_nonfinite_and_none():
    p = torch.nn.Parameter(torch.zeros(2))
    assert clip_gradients([p], 1.0) == 0.0
    p.grad = torch.tensor([float("inf"), 1.0])
    assert not math.isfinite(clip_gradients([p], 1.0))


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_non_positive_grad_clip_is_a_config_error(value):
    """clip_grad_norm_ with max_norm 0 zeroes every gradient: a run that silently never learns
    (0 is a common spelling of "no clipping" elsewhere), so the config refuses it."""
    from rdcl.config import ConfigError

    nan = "config key train\\.grad_clip: expected a finite number, found nan"  # as from a file
    with pytest.raises(
        ConfigError, match=r"train\.grad_clip must be > 0" if value == value else nan
    ):
        TrainConfig(grad_clip=value)


def test_snapshot_steps_are_evenly_spaced_with_both_ends():
    from rdcl.training.loop import snapshot_steps

    assert snapshot_steps(600, 6) == {0, 100, 200, 300, 400, 500, 600}
    assert snapshot_steps(3, 6) == {0, 1, 2, 3}  # more snapshots than steps: every step once
    assert snapshot_steps(600, 0) == set() and snapshot_steps(0, 4) == set()
