"""The relation terms act at the paper's scale (issue 8): the ``paper3d`` dual network (C = 320
at the bottleneck), a small CPU input, the default weights at full ramp.

Band tested, with rho_T = ||grad_T L_T|| / ||grad_T L_seg|| and rho_G = ||grad_G L_G|| /
||grad_T L_seg|| (L_seg reaches T and D only, so T's segmentation gradient is the yardstick):

(measured here with the defaults lambda_G = lambda_T = 0.001: rho_T ~ 5, rho_G ~ 10, total gradient
~ 9; the weights were chosen on real 2D data, docs/relation_weights.md, where rho_T ~ 0.1-0.2 and
rho_G ~ 0.05-0.2 once G is pre-trained; a random "stage-1" G here gives larger relation gradients)

- not negligible: rho >= 0.01. Below it a term changes the update by < 1%; the old MEAN
  reduction (squared differences / C^2) gave rho_T = 0.003 here. L_G must also move G by more
  than weight decay does: ||grad_G L_G|| >= 10 * weight_decay * ||theta_G||.
- not dominant: rho <= 30, and the whole gradient stays under the global clip (12). Above the
  clip the relation terms scale down L_seg's update (lambda_G = 1, lambda_T = 0.1 with the sum,
  rdcl's earlier default, not values from the paper, give rho_T ~ 300 and rho_G ~ 4500 here: a
  gradient of ~2400, clipped to 12, leaves L_seg 0.5% of its step).

And ``rdcl``, ``rdcl_g`` and ``backbone`` trained a few steps from the same seed, stage-1 weights
and batches end with different weights: G frozen in ``backbone`` and moved by L_G in ``rdcl_g``;
T moved by L_T in ``rdcl`` by a non-negligible share of its update.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from rdcl.config import preset
from rdcl.losses import DeepSupervisionLoss, DiceBCELoss
from rdcl.model import build_network
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import clip_gradients, make_optimizer
from rdcl.training.stages import method_terms

pytestmark = pytest.mark.slow

SHAPE = (2, 1, 8, 64, 64)  # paper3d bottleneck: 320 x 1 x 2 x 2
STEPS = 2


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed noise with a brighter ellipsoidal 'lesion' and its {0, 1} mask."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool3d(torch.randn(SHAPE, generator=gen), 3, 1, 1) * 3
    z, y, w = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in SHAPE[2:]),
                             indexing="ij")  # fmt: skip
    c = torch.randint(20, 44, (2,), generator=gen).float()
    mask = (((y - c[0]) ** 2 + (w - c[1]) ** 2) / 100 + (z - 4) ** 2 / 9 < 1).float()
    mask = mask.expand(*SHAPE).contiguous()
    return x + 2 * mask, mask


@pytest.fixture(scope="module")
def setup():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = preset("paper3d")
    torch.manual_seed(0)
    stage1 = build_network(cfg.model, kind="single").state_dict()
    yield cfg, stage1
    torch.set_num_threads(before)


def _norm(grads) -> float:
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def test_default_relation_gradients_are_in_the_band(setup) -> None:
    cfg, stage1 = setup
    tcfg = replace(cfg.train, rampup_steps=0)  # the default weights at full ramp
    method = get_method("rdcl")
    torch.manual_seed(0)
    net = build_for_method(cfg.model, method, stage1)
    (x_c, y_c), (x_n, _) = _batch(1), _batch(2)
    terms, ramp = method_terms(net, method, x_c=x_c, y_c=y_c, x_n=x_n, step=0, cfg=tcfg,
                               seg_loss=DeepSupervisionLoss(DiceBCELoss()))  # fmt: skip
    assert ramp == 1.0
    t_params, g_params = list(net.target.parameters()), list(net.general.parameters())
    grad = torch.autograd.grad
    seg_t = _norm(grad(terms["seg"], t_params, retain_graph=True, allow_unused=True))
    lt_t = _norm(grad(terms["loss_t"], t_params, retain_graph=True, allow_unused=True))
    lg_g = _norm(grad(terms["loss_g"], g_params, retain_graph=True, allow_unused=True))
    rho_t, rho_g = lt_t / seg_t, lg_g / seg_t
    assert 0.01 <= rho_t <= 30, f"rho_T = {rho_t:.3g}"
    assert 0.01 <= rho_g <= 30, f"rho_G = {rho_g:.3g}"
    total = (seg_t**2 + lt_t**2 + lg_g**2) ** 0.5
    assert total < tcfg.grad_clip, f"relation gradients reach the clip: {total:.3g}"
    weight_decay = tcfg.weight_decay * _norm([p.detach() for p in g_params])
    assert lg_g >= 10 * weight_decay, f"L_G {lg_g:.3g} vs weight decay {weight_decay:.3g}"
    # the whole step's gradient (T, D and G) is under the clip too
    net.zero_grad(set_to_none=True)
    terms["loss"].backward()
    assert clip_gradients(net.parameters(), tcfg.grad_clip) < tcfg.grad_clip


def _train(cfg, stage1, name: str) -> dict[str, torch.Tensor]:
    tcfg = replace(cfg.train, rampup_steps=0, method=name)
    method = get_method(name)
    torch.manual_seed(0)
    net = build_for_method(cfg.model, method, stage1)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(params, tcfg)
    seg_loss = DeepSupervisionLoss(DiceBCELoss())
    for step in range(STEPS):
        (x_c, y_c), (x_n, _) = _batch(10 + step), _batch(20 + step)
        terms, _ = method_terms(net, method, x_c=x_c, y_c=y_c, x_n=x_n, step=step, cfg=tcfg,
                                seg_loss=seg_loss)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        clip_gradients(params, tcfg.grad_clip)
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _flat(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return torch.cat([v.flatten().double() for k, v in state.items()
                      if k.startswith(prefix) and v.is_floating_point()])  # fmt: skip


def test_rdcl_rdcl_g_and_backbone_end_with_different_weights(setup) -> None:
    cfg, stage1 = setup
    torch.manual_seed(0)
    init = build_for_method(cfg.model, get_method("backbone"), stage1).state_dict()
    runs = {name: _train(cfg, stage1, name) for name in ("backbone", "rdcl_g", "rdcl")}
    g0, t0 = _flat(init, "general."), _flat(init, "target.")
    # backbone: G frozen; rdcl_g: G moved by L_G (beyond rounding: a real share of T's update)
    assert torch.equal(_flat(runs["backbone"], "general."), g0)
    dg = (_flat(runs["rdcl_g"], "general.") - g0).norm()
    dt = (_flat(runs["rdcl_g"], "target.") - t0).norm()
    assert dg > 0.01 * dt, f"G moved {dg:.3g}, T moved {dt:.3g}"
    # rdcl vs rdcl_g: the same L_seg and L_G, plus L_T on T: T ends measurably elsewhere
    t_diff = (_flat(runs["rdcl"], "target.") - _flat(runs["rdcl_g"], "target.")).norm()
    assert t_diff > 0.05 * dt, f"L_T moved T by {t_diff:.3g} against an update of {dt:.3g}"
    for name in ("rdcl_g", "rdcl"):
        assert not torch.equal(_flat(runs[name], ""), _flat(runs["backbone"], ""))
