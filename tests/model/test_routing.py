"""Algorithm 1 gradient routing on the tiny dual network, and the frozen multi-encoder.

L_seg must reach T and D and never G; L_G (G's features of a COVID and a non-COVID batch) must
reach G only; L_T must reach T only (R_G(X_c) detached).

For L_seg "never" is structural: G's bottleneck is detached, so G's ``.grad`` stays None. The
relation distances come from one fused op (``rdcl.kernels.relation_losses``) whose backward returns
a gradient for all three inputs at once, so the encoder a relation term does not use may receive an
exactly-zero gradient instead of None; both count as "not reached".
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rdcl.config import preset
from rdcl.losses import DeepSupervisionLoss, DiceBCELoss, relation_consistency
from rdcl.model import build_network


def _grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def _none(module: nn.Module) -> bool:
    return all(g is None for g in _grads(module))


def _unreached(module: nn.Module) -> bool:
    """No gradient, or only exact zeros (the fused relation op's unused-input gradient)."""
    return all(g is None or torch.count_nonzero(g) == 0 for g in _grads(module))


def _all_reached(module: nn.Module) -> bool:
    """Every parameter got a gradient and the module's total gradient is nonzero."""
    grads = _grads(module)
    return all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


@pytest.fixture
def batches() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x_c = torch.randn(2, 1, 8, 16, 16, generator=gen)
    y_c = (torch.rand(2, 1, 8, 16, 16, generator=gen) > 0.7).float()
    x_n = torch.randn(2, 1, 8, 16, 16, generator=gen) + 0.5
    return {"x_c": x_c, "y_c": y_c, "x_n": x_n}


def _terms(net: nn.Module, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    logits, g_c, t_c = net.forward_with_features(b["x_c"])
    g_n = net.general_features(b["x_n"])
    terms = relation_consistency(g_n, g_c, t_c, lambda_g=1.0, lambda_t=1.0, ramp=1.0)
    terms["seg"] = DeepSupervisionLoss(DiceBCELoss())(logits, b["y_c"])
    return terms


@pytest.fixture
def dual() -> nn.Module:
    torch.manual_seed(0)
    return build_network(preset("tiny3d").model, kind="dual")


def test_seg_loss_reaches_target_and_decoder_never_general(dual: nn.Module, batches) -> None:
    _terms(dual, batches)["seg"].backward()
    assert _all_reached(dual.target)
    assert _all_reached(dual.decoder)
    assert _none(dual.general)


def test_general_relation_loss_reaches_general_only(dual: nn.Module, batches) -> None:
    terms = _terms(dual, batches)
    assert terms["d_g"] > 0
    terms["loss_g"].backward()
    assert _all_reached(dual.general)
    assert _unreached(dual.target)
    assert _none(dual.decoder)


def test_target_relation_loss_reaches_target_only(dual: nn.Module, batches) -> None:
    terms = _terms(dual, batches)
    assert terms["d_t"] > 0
    terms["loss_t"].backward()
    assert _all_reached(dual.target)
    assert _unreached(dual.general)
    assert _none(dual.decoder)


def test_total_loss_splits_exactly_into_routed_terms(dual: nn.Module, batches) -> None:
    # Algorithm 1 in one backward: G's gradient is exactly L_G's; T's is exactly L_seg's + L_T's.
    terms = _terms(dual, batches)
    separate = {}
    for name in ("seg", "loss_g", "loss_t"):
        dual.zero_grad(set_to_none=True)
        terms[name].backward(retain_graph=True)
        separate[name] = {
            part: [None if g is None else g.clone() for g in _grads(getattr(dual, part))]
            for part in ("general", "target")
        }
    dual.zero_grad(set_to_none=True)
    (terms["seg"] + terms["loss_g"] + terms["loss_t"]).backward()
    for alone, total in zip(separate["loss_g"]["general"], _grads(dual.general), strict=True):
        torch.testing.assert_close(total, alone, rtol=0, atol=0)
    # Same terms, different fp32 summation order: compare the whole flattened gradient of T.
    total = torch.cat([g.flatten() for g in _grads(dual.target)])
    parts = zip(separate["seg"]["target"], separate["loss_t"]["target"], strict=True)
    summed = torch.cat([(seg + rel).flatten() for seg, rel in parts])
    assert torch.linalg.vector_norm(total - summed) <= 1e-5 * torch.linalg.vector_norm(total)


def test_multi_encoder_frozen_general_gets_no_gradient(batches) -> None:
    torch.manual_seed(0)
    net = build_network(preset("tiny3d").model, kind="multi_encoder")
    assert not any(p.requires_grad for p in net.general.parameters())
    logits, g_c, _ = net.forward_with_features(batches["x_c"])
    assert not g_c.requires_grad
    DeepSupervisionLoss(DiceBCELoss())(logits, batches["y_c"]).backward()
    assert _none(net.general)
    assert _all_reached(net.target)
    assert _all_reached(net.decoder)
