"""Tiny presets: forward + backward for every network kind, eval mode, input checks, tracing."""

from __future__ import annotations

import itertools

import pytest
import torch

from rdcl.config import preset
from rdcl.model import KINDS, Features, build_network

PATCHES = {"tiny3d": (16, 32, 32), "tiny2d": (64, 64)}


@pytest.mark.parametrize("name", sorted(PATCHES))
@pytest.mark.parametrize("kind", KINDS)
def test_tiny_forward_backward(name: str, kind: str) -> None:
    torch.manual_seed(0)
    cfg = preset(name).model
    net = build_network(cfg, kind=kind)
    patch = PATCHES[name]
    x = torch.randn(2, 1, *patch)
    outputs = net(x)
    # tiny presets have 4 stages -> 3 decoder outputs, each stride-2 step halving y and x.
    assert len(outputs) == len(cfg.features) - 1
    assert tuple(outputs[0].shape) == (2, 1, *patch)
    for hi, lo in itertools.pairwise(outputs):
        assert lo.shape[-1] * 2 == hi.shape[-1] and lo.shape[-2] * 2 == hi.shape[-2]
    loss = sum(o.square().mean() for o in outputs)
    loss.backward()
    # G never trains from the logits (detached in dual, frozen in multi_encoder): see test_routing.
    trained = net.encoder if kind == "single" else net.target
    grads = [p.grad for m in (trained, net.decoder) for p in m.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kind", KINDS)
def test_eval_output_is_training_full_resolution_head(kind: str) -> None:
    torch.manual_seed(1)
    net = build_network(preset("tiny3d").model, kind=kind)
    x = torch.randn(1, 1, 8, 16, 16)
    train_out = net.train()(x)
    eval_out = net.eval()(x)
    assert len(train_out) == 3 and len(eval_out) == 1
    # InstanceNorm keeps no running statistics: eval and train compute the same full-res head.
    torch.testing.assert_close(eval_out[0], train_out[0])


def test_forward_with_features_shapes() -> None:
    """Every network returns the same Features(logits, general, target); G is None where the
    network has none."""
    cfg = preset("tiny3d").model
    x = torch.randn(2, 1, 8, 16, 16)
    for kind in KINDS:
        out = build_network(cfg, kind=kind).forward_with_features(x)
        assert type(out) is Features and out._fields == ("logits", "general", "target")
        assert len(out.logits) == 3
        assert tuple(out.target.shape) == (2, 16, 2, 2, 2)
        if kind == "single":
            assert out.general is None
        else:
            assert tuple(out.general.shape) == (2, 16, 2, 2, 2)


def test_forward_is_the_features_logits() -> None:
    cfg = preset("tiny2d").model
    x = torch.randn(1, 1, 32, 32)
    for kind in KINDS:
        net = build_network(cfg, kind=kind)
        for a, b in zip(net(x), net.forward_with_features(x).logits, strict=True):
            torch.testing.assert_close(a, b)


def test_dual_general_features_is_g_bottleneck() -> None:
    net = build_network(preset("tiny2d").model, kind="dual")
    x = torch.randn(2, 1, 32, 32)
    _, g, t = net.forward_with_features(x)
    torch.testing.assert_close(net.general_features(x), g)
    assert not torch.allclose(g, t)  # G and T are initialised independently


def test_bad_inputs_raise_clear_errors() -> None:
    net = build_network(preset("tiny3d").model, kind="dual")
    with pytest.raises(ValueError, match="multiple of the total stride"):
        net(torch.randn(1, 1, 8, 16, 12))
    with pytest.raises(ValueError, match=r"\(B, 1, z, y, x\)"):
        net(torch.randn(1, 2, 8, 16, 16))
    with pytest.raises(ValueError, match="kind must be one of"):
        build_network(preset("tiny3d").model, kind="triple")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_trace_eval_network_matches_eager(kind: str) -> None:
    torch.manual_seed(2)
    net = build_network(preset("tiny3d").model, kind=kind).eval()
    example = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        traced = torch.jit.trace(net, example, strict=False)
        for shape in ((1, 1, 8, 16, 16), (2, 1, 16, 32, 24)):
            x = torch.randn(*shape)
            expected, got = net(x), traced(x)
            assert len(got) == 1
            torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
