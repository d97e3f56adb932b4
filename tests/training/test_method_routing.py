"""Algorithm 1's gradient routing, checked on real training steps of every method.

Per-term: each loss term of a real stage-2 step is back-propagated alone and the modules that
receive a non-zero gradient are listed. Per-method: a real run of :func:`train` is compared with
its starting weights.
"""

from __future__ import annotations

import pytest
import torch
from _training_fakes import FakeSampler, fake_dataset, state_of, tiny_cfg

from rdcl.losses import DeepSupervisionLoss, DiceBCELoss
from rdcl.model import build_network
from rdcl.training import stages
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import make_optimizer


def _receivers(net: torch.nn.Module, loss: torch.Tensor) -> set[str]:
    net.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {
        name.split(".")[0]
        for name, p in net.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }


def _step_terms(method_name: str, pretrained_ckpt):
    cfg = tiny_cfg(method_name)
    method = get_method(method_name)
    torch.manual_seed(0)
    state = state_of(pretrained_ckpt) if method.needs_pretrained else None
    net = build_for_method(cfg.model, method, state)
    net.train()
    xc, xn = FakeSampler(1, cfg.data).batch(0), FakeSampler(2, cfg.data).batch(0)
    terms, ramp = stages.method_terms(
        net,
        method,
        x_c=xc["image"],
        y_c=xc["label"],
        x_n=xn["image"],
        step=1,
        cfg=cfg.train,
        seg_loss=DeepSupervisionLoss(DiceBCELoss()),
    )
    return net, terms, ramp


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("baseline", {"seg": {"encoder", "decoder"}}),
        ("pretrain", {"seg": {"encoder", "decoder"}}),
        ("multi_encoder", {"seg": {"target", "decoder"}}),
        ("backbone", {"seg": {"target", "decoder"}}),
        ("rdcl_g", {"seg": {"target", "decoder"}, "loss_g": {"general"}}),
        ("rdcl", {"seg": {"target", "decoder"}, "loss_g": {"general"}, "loss_t": {"target"}}),
    ],
)
def test_each_term_reaches_only_its_modules(method, expected, pretrained_ckpt):
    net, terms, ramp = _step_terms(method, pretrained_ckpt)
    used = {k for k in ("seg", "loss_g", "loss_t") if terms.get(k) is not None}
    assert used == set(expected)
    for term, modules in expected.items():
        assert _receivers(net, terms[term]) == modules, term
    # the summed loss reaches exactly the union
    assert _receivers(net, terms["loss"]) == set().union(*expected.values())
    if get_method(method).use_lg:
        # ramp(step 1 of 2) = exp(-5 * 0.5^2); L_G = lambda_G * ramp * d_g, L_T = -lambda_T*ramp*d_t
        assert ramp == pytest.approx(0.2865048)
        lam = tiny_cfg(method).train
        assert terms["loss_g"].item() == pytest.approx(lam.lambda_g * ramp * terms["d_g"].item())
        assert terms["d_g"].item() > 0
    if method == "rdcl":
        assert terms["loss_t"].item() == pytest.approx(-lam.lambda_t * ramp * terms["d_t"].item())


def test_seg_only_step_leaves_trainable_general_encoder_unchanged():
    """One optimiser over G, T and D with weight decay and momentum: an L_seg-only step must not
    move G (its gradient stays None, so SGD skips it), while T and D move."""
    cfg = tiny_cfg("rdcl")
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="dual")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = make_optimizer(net.parameters(), cfg.train)
    batch = FakeSampler(1, cfg.data).batch(0)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        DeepSupervisionLoss(DiceBCELoss())(net(batch["image"]), batch["label"]).backward()
        opt.step()
    after = net.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"target", "decoder"}


def _changed_modules(start: dict, end: dict) -> set[str]:
    return {k.split(".")[0] for k in start if not torch.equal(start[k], end[k])}


@pytest.mark.parametrize(
    ("method", "general_moves"),
    [("multi_encoder", False), ("backbone", False), ("rdcl_g", True), ("rdcl", True)],
)
def test_general_encoder_after_training(
    method, general_moves, tmp_path, fake_streams, pretrained_ckpt
):
    cfg = tiny_cfg(method, steps=2)
    final = stages.train(
        cfg,
        fake_dataset("covid"),
        [fake_dataset("general")],
        tmp_path,
        pretrained=pretrained_ckpt,
        progress=False,
    )
    end = state_of(final)
    g0 = {
        k[len("encoder.") :]: v
        for k, v in state_of(pretrained_ckpt).items()
        if k.startswith("encoder.")
    }
    g1 = {k[len("general.") :]: v for k, v in end.items() if k.startswith("general.")}
    assert g0.keys() == g1.keys()
    same = all(torch.equal(g0[k], g1[k]) for k in g0)
    assert same != general_moves
