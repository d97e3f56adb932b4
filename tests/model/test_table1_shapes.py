"""Paper Table I: stage shapes, kernels and strides of the default network (3D) and the 2D preset.

Shapes are checked on the meta device, so the full-size networks cost no memory or compute.
"""

from __future__ import annotations

import pytest
import torch

from rdcl.config import ModelConfig, preset
from rdcl.model import build_network

# Table I, patch 56x160x192, batch 2: (channels, z, y, x) of encoder stages 0..5.
TABLE1_STAGES = [
    (32, 56, 160, 192),
    (64, 56, 80, 96),
    (128, 28, 40, 48),
    (256, 14, 20, 24),
    (320, 7, 10, 12),
    (320, 7, 5, 6),
]
TABLE1_KERNELS = [(1, 3, 3)] + [(3, 3, 3)] * 5
TABLE1_STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)]


def _convs(stage: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in stage.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


@pytest.fixture(scope="module")
def paper_dual() -> torch.nn.Module:
    with torch.device("meta"):
        return build_network(ModelConfig(), kind="dual")


def test_default_config_is_table1_stage_shapes(paper_dual: torch.nn.Module) -> None:
    with torch.device("meta"):
        x = torch.empty(2, 1, 56, 160, 192)
        for encoder in (paper_dual.general, paper_dual.target):
            shapes = [tuple(f.shape) for f in encoder(x)]
            assert shapes == [(2, *s) for s in TABLE1_STAGES]


def test_table1_kernels_strides_and_norm(paper_dual: torch.nn.Module) -> None:
    for i, stage in enumerate(paper_dual.target.stages):
        convs = _convs(stage)
        assert len(convs) == 2
        assert all(c.kernel_size == TABLE1_KERNELS[i] for c in convs)
        # Only the first conv of a stage downsamples.
        assert convs[0].stride == TABLE1_STRIDES[i]
        assert convs[1].stride == (1, 1, 1)
        norm = stage[0][1]
        assert isinstance(norm, torch.nn.InstanceNorm3d) and norm.affine and norm.eps == 1e-5
        assert stage[0][2].negative_slope == 0.01


def test_table1_decoder_mirrors_encoder(paper_dual: torch.nn.Module) -> None:
    decoder = paper_dual.decoder
    # Bottlenecks of G and T concatenated: 640 channels into the first transposed conv.
    assert decoder.upsample[0].in_channels == 640
    # Transposed conv kernel = stride, mirroring strides 5..1.
    for j, up in enumerate(decoder.upsample):
        assert up.kernel_size == up.stride == TABLE1_STRIDES[5 - j]
    # Decoder stage j serves encoder stage 4 - j; the last one uses stage 0's 1x3x3 kernel.
    assert [_convs(s)[0].kernel_size for s in decoder.stages] == [(3, 3, 3)] * 4 + [(1, 3, 3)]
    assert all(h.kernel_size == (1, 1, 1) for h in decoder.heads)


def test_table1_outputs_highest_resolution_first(paper_dual: torch.nn.Module) -> None:
    with torch.device("meta"):
        x = torch.empty(2, 1, 56, 160, 192)
        paper_dual.train()
        outputs = paper_dual(x)
        # One head per decoder stage (stages 4..0), none at the bottleneck scale (stage 5).
        assert [tuple(o.shape) for o in outputs] == [(2, 1, *s[1:]) for s in TABLE1_STAGES[:5]]
        paper_dual.eval()
        assert [tuple(o.shape) for o in paper_dual(x)] == [(2, 1, 56, 160, 192)]


def test_paper2d_preset_shapes() -> None:
    cfg = preset("paper2d").model
    with torch.device("meta"):
        net = build_network(cfg, kind="single")
        x = torch.empty(2, 1, 512, 512)
        features = net.encoder(x)
        expected = [(2, f, 512 // 2**i, 512 // 2**i) for i, f in enumerate(cfg.features)]
        assert [tuple(f.shape) for f in features] == expected
        outputs = net(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 1, *e[2:]) for e in expected[:-1]]
    assert all(c.kernel_size == (3, 3) for c in _convs(net.encoder))
    assert all(c.kernel_size == (1, 1) for c in net.decoder.heads)


def test_without_deep_supervision_single_output() -> None:
    cfg = preset("tiny3d").model
    net = build_network(ModelConfig(**{**cfg.__dict__, "deep_supervision": False}), kind="single")
    outputs = net(torch.randn(1, 1, 8, 16, 16))
    assert len(net.decoder.heads) == 1
    assert [tuple(o.shape) for o in outputs] == [(1, 1, 8, 16, 16)]
