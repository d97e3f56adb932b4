"""G's feature statistics (effective rank, RMS) and what keeps G alive: the definitions, their
place in the run log, the host transfer they ride on, G's own weight decay and anchor, and
resuming checkpoints written before those options existed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from _training_fakes import FakeSampler, fake_dataset, tiny_cfg

from rdcl.config import ConfigError
from rdcl.errors import CheckpointError
from rdcl.formats.checkpoint import load_checkpoint, save_checkpoint
from rdcl.formats.run_log import read_log
from rdcl.model import build_network
from rdcl.training import feature_stats, stages
from rdcl.training.feature_stats import (
    GeneralFeatureProbe,
    channel_matrix,
    effective_rank,
    feature_rms,
)
from rdcl.training.loop import _load_optimizer_state, feature_stats_due
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import anchor_parameters, make_optimizer


def _erank_reference(features: np.ndarray) -> float:
    """exp(entropy) of the normalised squared singular values of the (C, B*N) matrix, by SVD."""
    c = features.shape[1]
    a = np.moveaxis(features, 1, 0).reshape(c, -1)
    s2 = np.linalg.svd(a, compute_uv=False) ** 2
    p = s2 / s2.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def test_effective_rank_known_values():
    # one feature in every channel (rank 1): 1
    u, v = torch.randn(6), torch.randn(2, 5)
    ones = u[None, :, None] * v[:, None, :]  # (B=2, C=6, N=5)
    assert float(effective_rank(ones)) == pytest.approx(1.0, abs=1e-4)
    # C orthogonal channels of equal energy: C
    eye = torch.eye(4).reshape(1, 4, 2, 2)
    assert float(effective_rank(eye)) == pytest.approx(4.0, rel=1e-5)
    # energies 3 : 1 on two orthogonal directions: exp(H(0.75, 0.25))
    two = torch.zeros(1, 3, 4)
    two[0, 0, 0], two[0, 1, 1] = math.sqrt(3.0), 1.0
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert float(effective_rank(two)) == pytest.approx(expected, rel=1e-5)
    # all zero: 0, not NaN
    assert float(effective_rank(torch.zeros(2, 5, 3, 3))) == 0.0


def test_effective_rank_matches_the_svd_definition_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 16, 4, 5, generator=g, dtype=torch.float64)
    f[:, 8:] = f[:, :8] * 0.1 + 0.01 * torch.randn(3, 8, 4, 5, generator=g, dtype=torch.float64)
    ref = _erank_reference(f.numpy())
    assert float(effective_rank(f)) == pytest.approx(ref, rel=1e-9)
    assert float(effective_rank(f * 1e3)) == pytest.approx(ref, rel=1e-9)
    assert float(effective_rank(f.float())) == pytest.approx(ref, rel=1e-4)  # float32 Gram
    assert 1.0 < ref < 16.0


def test_channel_matrix_puts_every_sample_side_by_side():
    f = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    a = channel_matrix(f)
    assert a.shape == (3, 8)
    torch.testing.assert_close(a[1], torch.cat([f[0, 1], f[1, 1]]))
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        channel_matrix(torch.zeros(3))


def test_feature_rms_and_probe():
    f = torch.full((2, 3, 4), -2.0, requires_grad=True)
    assert float(feature_rms(f)) == pytest.approx(2.0)
    probe = GeneralFeatureProbe()
    assert probe.stats() == {}
    probe.keep(f * 1.0)
    stats = probe.stats()
    assert set(stats) == set(GeneralFeatureProbe.KEYS)
    assert float(stats["g_rank"]) == pytest.approx(1.0) and float(stats["g_rms"]) == 2.0
    assert not stats["g_rank"].requires_grad
    probe.keep(None)
    assert probe.stats() == {}


def test_feature_stats_due():
    cfg = tiny_cfg(feature_stats_every=4, log_every=2).train
    assert [d for d in range(1, 11) if feature_stats_due(d, 10, cfg)] == [4, 8, 10]
    cfg = tiny_cfg(feature_stats_every=4, log_every=3).train  # logged and due: 12, 24, last
    assert [d for d in range(1, 26) if feature_stats_due(d, 25, cfg)] == [12, 24, 25]
    off = tiny_cfg(feature_stats_every=0).train
    assert not any(feature_stats_due(d, 10, off) for d in range(1, 11))
    with pytest.raises(ConfigError, match=r"train\.feature_stats_every.* >= 0"):
        tiny_cfg(feature_stats_every=-1)


def test_log_carries_g_rank_and_rms_where_due(tmp_path, fake_streams, pretrained_ckpt):
    cfg = tiny_cfg(steps=5, feature_stats_every=2)
    stages.train(cfg, fake_dataset("c"), [fake_dataset("g")], tmp_path / "rdcl",
                 pretrained=pretrained_ckpt, progress=False)  # fmt: skip
    recs = read_log(tmp_path / "rdcl" / "log.jsonl")
    c = cfg.model.features[-1]
    due = {r["step"]: r for r in recs if r["g_rank"] is not None}
    assert sorted(due) == [2, 4, 5]
    assert all(r["g_rms"] is None for r in recs if r["step"] not in due)
    assert all(1.0 <= r["g_rank"] <= c and r["g_rms"] > 0 for r in due.values())
    base = tiny_cfg("baseline", steps=3, feature_stats_every=1)
    stages.train(base, fake_dataset("c"), None, tmp_path / "base", progress=False)
    recs = read_log(tmp_path / "base" / "log.jsonl")
    assert all(r["g_rank"] is None and r["g_rms"] is None for r in recs)


def test_logged_values_are_g_on_the_steps_covid_batch(tmp_path, fake_streams, pretrained_ckpt):
    """One step: the logged rank and RMS are those of G(X_c) for step 0's COVID batch with the
    weights before the update (G = the stage-1 encoder)."""
    cfg = tiny_cfg(steps=1)
    stages.train(cfg, fake_dataset("c"), [fake_dataset("g")], tmp_path / "r",
                 pretrained=pretrained_ckpt, progress=False)  # fmt: skip
    (rec,) = read_log(tmp_path / "r" / "log.jsonl")
    net = build_for_method(cfg.model, get_method("rdcl"), load_checkpoint(pretrained_ckpt)["model"])
    x_c = FakeSampler(cfg.train.seed, cfg.data).batch(0)["image"]
    with torch.no_grad():
        g_c = net.general_features(x_c)
    assert rec["g_rank"] == pytest.approx(float(effective_rank(g_c)), rel=1e-5)
    assert rec["g_rms"] == pytest.approx(float(feature_rms(g_c)), rel=1e-5)


def test_stats_ride_on_the_one_transfer_and_run_only_when_due(
    tmp_path, fake_streams, pretrained_ckpt, monkeypatch
):
    from test_step_sync import ONE_SYNC, _per_step

    def run(steps: int) -> None:
        cfg = tiny_cfg(steps=steps, checkpoint_every=100, feature_stats_every=1)
        stages.train(cfg, fake_dataset("c"), [fake_dataset("g")], tmp_path / f"s{steps}",
                     pretrained=pretrained_ckpt, progress=False)  # fmt: skip

    assert _per_step(run) == ONE_SYNC  # statistics every step, still one transfer per step
    calls = []
    real = feature_stats.effective_rank
    monkeypatch.setattr(feature_stats, "effective_rank", lambda f: calls.append(1) or real(f))
    cfg = tiny_cfg(steps=7, feature_stats_every=3)
    stages.train(cfg, fake_dataset("c"), [fake_dataset("g")], tmp_path / "count",
                 pretrained=pretrained_ckpt, progress=False)  # fmt: skip
    assert len(calls) == 3  # steps 3, 6 and the last, 7


def _dual(method: str = "rdcl"):
    torch.manual_seed(0)
    return build_network(tiny_cfg().model, kind="dual"), get_method(method)


def test_general_weight_decay_gets_its_own_group_only_when_it_differs():
    net, _ = _dual()
    g_ids = {id(p) for p in net.general.parameters()}
    cfg = tiny_cfg(general_weight_decay=3e-5).train  # the same as train.weight_decay
    same = make_optimizer(net.parameters(), cfg, general=net.general.parameters())
    assert len(same.param_groups) == 1
    cfg = tiny_cfg().train  # the default: no decay on G
    assert cfg.general_weight_decay == 0.0
    opt = make_optimizer(net.parameters(), cfg, general=net.general.parameters())
    rest, g = opt.param_groups
    assert {id(p) for p in g["params"]} == g_ids and g["weight_decay"] == 0.0
    assert not g_ids & {id(p) for p in rest["params"]}
    assert rest["weight_decay"] == cfg.weight_decay == 3e-5
    assert len(rest["params"]) + len(g["params"]) == len(list(net.parameters()))
    net.general.requires_grad_(False)  # backbone: G frozen, nothing to group
    opt = make_optimizer(net.parameters(), cfg, general=net.general.parameters())
    assert len(opt.param_groups) == 1


def test_anchor_pulls_towards_the_starting_weights():
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    assert anchor_parameters(opt, lin.parameters(), 0.0) is None
    start = [p.detach().clone() for p in lin.parameters()]
    anchor_parameters(opt, lin.parameters(), 0.5)
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(1.0)
    opt.step()  # no gradient of its own: the anchor alone, 0.1 * 0.5 * (theta - theta_0)
    for p, p0 in zip(lin.parameters(), start, strict=True):
        torch.testing.assert_close(p, p0 + 1.0 - 0.05)


def test_anchor_keeps_g_nearer_stage1(tmp_path, fake_streams, pretrained_ckpt):
    """In the training loop, G's anchor holds it nearer its stage-1 weights under a strong L_G."""
    g0 = {k: v for k, v in load_checkpoint(pretrained_ckpt)["model"].items()}
    dist = {}
    for anchor in (0.0, 20.0):  # no momentum: lr * anchor = 0.2 of the displacement per step
        cfg = tiny_cfg(steps=12, general_anchor=anchor, lambda_g=1.0, rampup_steps=0, momentum=0.0,
                       nesterov=False)  # fmt: skip
        final = stages.train(cfg, fake_dataset("c"), [fake_dataset("g")], tmp_path / f"a{anchor}",
                             pretrained=pretrained_ckpt, progress=False)  # fmt: skip
        state = load_checkpoint(final)["model"]
        dist[anchor] = sum(
            float((state[f"general.{k[len('encoder.') :]}"] - v).square().sum())
            for k, v in g0.items()
            if k.startswith("encoder.")
        )
    assert 0 < dist[20.0] < 0.5 * dist[0.0]


def test_checkpoints_from_before_the_options_resume(tmp_path, fake_streams, pretrained_ckpt):
    """A last.ckpt whose config lacks train.general_weight_decay and train.general_anchor (one
    optimiser group) resumes when the run decays G at train.weight_decay without an anchor, as
    such runs did; other values are a config change, named."""
    out = tmp_path / "run"
    args = (fake_dataset("c"), [fake_dataset("g")], out)
    cfg = tiny_cfg(steps=4, checkpoint_every=2, general_weight_decay=3e-5, general_anchor=0.0)
    stages.train(cfg, *args, pretrained=pretrained_ckpt, progress=False)
    (out / "final.ckpt").unlink()
    ckpt = load_checkpoint(out / "last.ckpt")
    for key in ("general_weight_decay", "general_anchor"):
        del ckpt["config"]["train"][key]
    assert len(ckpt["optimizer"]["param_groups"]) == 1
    save_checkpoint(out / "last.ckpt", ckpt)
    for key, value in (("general_weight_decay", 0.0), ("general_anchor", 0.1)):
        other = cfg.replace(train=dataclasses.replace(cfg.train, **{key: value}))
        with pytest.raises(ConfigError, match=rf"differs .*train\.{key}") as err:
            stages.train(other, *args, pretrained=pretrained_ckpt, resume=True, progress=False)
        old = {"general_weight_decay": 3e-05, "general_anchor": 0.0}[key]
        assert f"predates the key: --set train.{key}={old} resumes it" in str(err.value)
    final = stages.train(cfg, *args, pretrained=pretrained_ckpt, resume=True, progress=False)
    assert load_checkpoint(final)["step"] == 4


def test_optimizer_state_of_another_layout_is_a_clear_error(tmp_path):
    net, _ = _dual()
    one = make_optimizer(net.parameters(), tiny_cfg(general_weight_decay=3e-5).train,
                         general=net.general.parameters())  # fmt: skip
    two = make_optimizer(net.parameters(), tiny_cfg(general_weight_decay=0.0).train,
                         general=net.general.parameters())  # fmt: skip
    with pytest.raises(CheckpointError, match=r"cannot resume .*parameter groups of sizes"):
        _load_optimizer_state(two, one.state_dict(), tmp_path / "last.ckpt")
    _load_optimizer_state(one, one.state_dict(), tmp_path / "last.ckpt")  # same layout: fine
