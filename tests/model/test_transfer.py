"""Loading a pre-trained single-encoder network into G, and freezing G."""

from __future__ import annotations

import pytest
import torch

from rdcl.config import preset
from rdcl.model import build_network, freeze_general, load_general_encoder


def _assert_g_equals(net: torch.nn.Module, encoder: torch.nn.Module) -> None:
    src = encoder.state_dict()
    dst = net.general.state_dict()
    assert src.keys() == dst.keys()
    for key, value in src.items():
        assert torch.equal(dst[key], value), key


@pytest.mark.parametrize("form", ["module", "encoder", "state_dict", "encoder_state_dict"])
@pytest.mark.parametrize("kind", ["dual", "multi_encoder"])
def test_load_general_encoder_from_every_form(form: str, kind: str) -> None:
    cfg = preset("tiny2d").model
    torch.manual_seed(0)
    pretrained = build_network(cfg, kind="single")
    torch.manual_seed(1)
    net = build_network(cfg, kind=kind)
    assert not torch.equal(
        net.general.stages[0][0][0].weight, pretrained.encoder.stages[0][0][0].weight
    )
    source = {
        "module": pretrained,
        "encoder": pretrained.encoder,
        "state_dict": pretrained.state_dict(),
        "encoder_state_dict": pretrained.encoder.state_dict(),
    }[form]
    target_before = {k: v.clone() for k, v in net.target.state_dict().items()}
    load_general_encoder(net, source)
    _assert_g_equals(net, pretrained.encoder)
    for key, value in net.target.state_dict().items():
        assert torch.equal(value, target_before[key]), "T must stay untouched"


def test_load_general_encoder_rejects_other_architecture_and_single_net() -> None:
    net = build_network(preset("tiny2d").model, kind="dual")
    other = build_network(preset("tiny3d").model, kind="single")
    with pytest.raises(RuntimeError):
        load_general_encoder(net, other)
    with pytest.raises(TypeError, match="general encoder"):
        load_general_encoder(other, net.general)


def test_freeze_general_stops_g_only() -> None:
    net = build_network(preset("tiny2d").model, kind="dual")
    freeze_general(net)
    assert not any(p.requires_grad for p in net.general.parameters())
    assert all(p.requires_grad for p in net.target.parameters())
    assert all(p.requires_grad for p in net.decoder.parameters())
