"""The training step synchronises with the host once per step, and the ``train.cuda_graphs`` switch
refuses to run where it cannot.

A CUDA graph cannot capture host synchronisation, and every synchronisation stalls the GPU's queue;
the step's one documented transfer is the ``tolist`` of the logged terms in
``rdcl.training.loop._synced_values``, called once per step by ``run_stage`` (the divergence guard).
The check runs real stages on the CPU under a ``TorchFunctionMode`` that records every tensor
operation which would synchronise on a GPU (``item``, ``tolist``, ``bool(tensor)``, ``.cpu()``,
``nonzero``, boolean-mask indexing, ...) with the rdcl function that called it; the same stage run
for 2 and for 4 steps differs by the per-step synchronisations alone (set-up, checkpoints and the
final checks are the same in both).
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

import pytest
import torch
from _training_fakes import fake_dataset, tiny_cfg
from torch.overrides import TorchFunctionMode

import rdcl
from rdcl.config import ConfigError
from rdcl.model import build_network
from rdcl.training import stages
from rdcl.training.graphs import GraphedStep, TensorStep, check_cuda_graphs, graph_step
from rdcl.training.step import StepForward

SYNC_OPS = frozenset(
    {
        "item",
        "tolist",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "__format__",
        "__repr__",
        "numpy",
        "cpu",
        "nonzero",
        "argwhere",
        "masked_select",
        "unique",
        "_local_scalar_dense",
    }
)
"""Tensor operations that wait for the device (a value or a data-dependent shape reaches the
host)."""

RDCL_ROOT = os.path.dirname(rdcl.__file__)


def _caller() -> str:
    """``file:function`` of the innermost rdcl frame (relative to the package)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(RDCL_ROOT):
            return f"{os.path.relpath(name, RDCL_ROOT)}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "<outside rdcl>"


class SyncRecorder(TorchFunctionMode):
    """Counts ``(op, caller)`` of every synchronising tensor operation run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        masked = name == "__getitem__" and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in _flat(args[1:])
        )
        if name in SYNC_OPS or masked:
            self.calls[("bool-mask indexing" if masked else name, _caller())] += 1
        return func(*args, **(kwargs or {}))


def _flat(items):
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from _flat(item)
        else:
            yield item


def _syncs(run, steps: int) -> collections.Counter:
    with SyncRecorder() as rec:
        run(steps)
    return rec.calls


def _per_step(run) -> collections.Counter:
    two, four = _syncs(run, 2), _syncs(run, 4)
    extra = four.copy()
    extra.subtract(two)
    assert all(n % 2 == 0 for n in extra.values()), (two, four)
    return collections.Counter({k: n // 2 for k, n in extra.items() if n})


ONE_SYNC = collections.Counter({("tolist", "training/loop.py:_synced_values"): 1})


@pytest.mark.parametrize("method", ["rdcl", "baseline"])
def test_stage2_step_synchronises_once(method, tmp_path, fake_streams, pretrained_ckpt):
    def run(steps: int) -> None:
        cfg = tiny_cfg(method, steps=steps, checkpoint_every=100)
        general = [fake_dataset("general")]
        stages.train(
            cfg,
            fake_dataset("covid"),
            general,
            tmp_path / f"{method}{steps}",
            pretrained=pretrained_ckpt if method != "baseline" else None,
            progress=False,
        )

    assert _per_step(run) == ONE_SYNC


def test_stage1_step_synchronises_once(tmp_path, fake_streams):
    def run(steps: int) -> None:
        cfg = tiny_cfg(pretrain_steps=steps, checkpoint_every=100)
        out = tmp_path / f"s{steps}"
        stages.pretrain_general(cfg, [fake_dataset("general")], out, progress=False)

    assert _per_step(run) == ONE_SYNC


def test_device_augmentation_does_not_synchronise():
    """``data.augment_on: device``: finishing a batch whose every augmentation fires (rotation,
    scaling, flips, brightness, contrast, gamma, noise) waits for nothing on the host."""
    import numpy as np

    from rdcl.config import DataConfig
    from rdcl.data import PatchSampler, finish_batch
    from rdcl.data.sampling.augment import AugmentParams

    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((1, 10, 20, 24)).astype(np.float32),
              (rng.random((10, 20, 24)) > 0.5).astype(np.uint8))]  # fmt: skip
    every = AugmentParams(p_rotate=1.0, p_scale=1.0, p_flip=1.0, p_brightness=1.0,
                          p_contrast=1.0, p_gamma=1.0, p_noise=1.0)  # fmt: skip
    cfg = DataConfig(patch_size=(8, 16, 16), batch_size=2)
    sampler = PatchSampler(cases, cfg, seed=0, params=every, augment_on="device")
    batch = sampler.batch(0)
    assert all(r.spatial and r.flips for r in batch["recipe"])
    with SyncRecorder() as rec:
        out = finish_batch(batch, "cpu")
    assert out["image"].shape == (2, 1, 8, 16, 16)
    assert not rec.calls, rec.calls


def test_recorder_sees_the_syncs_it_must_see():
    x = torch.arange(6.0)
    with SyncRecorder() as rec:
        x.sum().item()
        bool((x > 2).any())
        x[x > 2]
        float(x.max())
    ops = {op for op, _ in rec.calls}
    assert ops == {"item", "__bool__", "bool-mask indexing", "__float__"}


def test_cuda_graphs_config_is_refused_where_it_cannot_run(tmp_path, fake_streams):
    with pytest.raises(ConfigError, match=r"train\.cuda_graphs needs a CUDA device"):
        tiny_cfg(cuda_graphs=True)  # device "cpu"
    with pytest.raises(ConfigError, match="cannot both be on"):
        tiny_cfg(device="cuda", cuda_graphs=True, compile=True)
    cfg = tiny_cfg(device="cuda", cuda_graphs=True)
    with pytest.raises(ConfigError, match=r"needs a CUDA device, found cpu \(train.device 'auto'"):
        check_cuda_graphs(tiny_cfg(device="auto", cuda_graphs=True).train, torch.device("cpu"), 1)
    with pytest.raises(ConfigError, match="one rank only for now, found a world size of 2"):
        check_cuda_graphs(cfg.train, torch.device("cuda"), 2)
    check_cuda_graphs(tiny_cfg().train, torch.device("cpu"), 4)  # off: nothing to check
    module = StepForward(torch.nn.Identity())
    assert graph_step(module, tiny_cfg(), torch.device("cpu"), batch=2, inputs=1) is module
    if not torch.cuda.is_available():  # auto resolves to the CPU: refused before any writing
        out = tmp_path / "run"
        with pytest.raises(ConfigError, match=r"train\.cuda_graphs needs a CUDA device"):
            stages.pretrain_general(
                tiny_cfg(device="auto", cuda_graphs=True), [fake_dataset("g")], out
            )
        assert not Path(out).exists()


@pytest.mark.parametrize(("kind", "with_xn"), [("single", False), ("dual", False), ("dual", True)])
def test_graphed_step_keeps_the_step_structure(kind, with_xn):
    """What is captured takes and returns tensors only (make_graphed_callables counts None as an
    argument); GraphedStep gives back StepForward's (logits, g_c, t_c, g_n) with its Nones."""
    torch.manual_seed(0)
    net = build_network(tiny_cfg().model, kind=kind)
    step = StepForward(net)
    x_c, x_n = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    xs = (x_c, x_n) if with_xn else (x_c,)
    want = step(*xs)
    tensor_step = TensorStep(step)
    flat = tensor_step(*xs)
    assert all(isinstance(t, torch.Tensor) for t in flat)
    assert len(flat) == len(want[0]) + sum(f is not None for f in want[1:])
    got = GraphedStep(tensor_step, len(xs))(*xs)
    assert len(got) == 4 and len(got[0]) == len(want[0])
    for a, b in zip(got[0], want[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(got[1:], want[1:], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="captured for 2 input"):
        GraphedStep(tensor_step, 2)(x_c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_step_matches_eager(tmp_path, fake_streams, pretrained_ckpt):
    from rdcl.training import read_log

    losses = {}
    for graphs in (False, True):
        cfg = tiny_cfg("rdcl", device="cuda", cuda_graphs=graphs, tf32=False, steps=3)
        out = tmp_path / f"graphs{graphs}"
        stages.train(
            cfg,
            fake_dataset("covid"),
            [fake_dataset("general")],
            out,
            pretrained=pretrained_ckpt,
            progress=False,
        )
        losses[graphs] = [r["loss"] for r in read_log(out / "log.jsonl")]
    assert len(losses[True]) == 3
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-4, atol=1e-6)
