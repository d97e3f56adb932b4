"""Does weight decay make G's features fade, and do they collapse, over a long stage 2? (issue 17,
item 4; results in docs/relation_weights.md, "Keeping G alive").

Runs rdcl's own training stages (``rdcl.training.stages.pretrain_general`` and ``train``, with
their optimiser, schedule, clip, ramp and the ``g_rank``/``g_rms`` log entries) on real slices,
the data streams replaced by in-memory samplers (pure functions of (seed, step), like
``rdcl.data.PatchSampler``):

- X_c: random ``patch`` x ``patch`` crops (a third centred on infection, random flips) of
  ``n_train`` seeded COVID-19 CT slices of ``../shared/data/covid19_ct100``, area-downsampled to
  ``size`` x ``size``;
- X_n and stage 1: the MSD Task06 lung-tumour patches of ``../shared/data/msd_lung_patches``
  resized to ``patch`` (the loaders of ``relation_weights.py``).

Stage 1 once (``pretrain_steps``), then stage 2 per setting from the same seed and stage-1 G
(``rampup_steps``: the ramp in steps; every ``train.*`` key a setting does not give takes the
default of the rdcl it runs with: the recorded runs give G's decay and anchor explicitly). The
result file holds each setting's log records (every ``feature_stats_every`` steps), the
effective rank and RMS of G's bottleneck on a fixed batch of ``n_probe`` lesion-centred training
crops at the start and the end, the L2 norm of G's parameters at both ends, and held-out DSC.

Usage: ``OMP_NUM_THREADS=1 python docs/experiments/general_decay.py settings.json out.json``;
``python docs/experiments/general_decay.py --summary out.json`` prints the markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relation_weights import crops, evaluate, flips, load_covid, load_msd, model_config

from rdcl.config import Config, DataConfig, TrainConfig
from rdcl.data.preprocessing.preprocess import IntensityStats
from rdcl.formats.checkpoint import load_checkpoint
from rdcl.model import build_network
from rdcl.training import stages
from rdcl.training.feature_stats import effective_rank, feature_rms
from rdcl.training.methods import build_for_method, get_method


class CropSampler:
    """(seed, step) -> a batch of COVID crops (``crops`` of relation_weights.py)."""

    def __init__(self, data, patch: int, batch: int, seed: int) -> None:
        self.data, self.patch, self.batch_size, self.seed = data, patch, batch, seed

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        x, y = crops(*self.data, self.patch, self.batch_size, gen)
        return {"image": x.contiguous(), "label": y.contiguous()}


class PatchSampler:
    """(seed, step) -> a batch of randomly drawn, randomly flipped whole patches."""

    def __init__(self, data, batch: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch, seed

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        idx = torch.randint(len(self.data[0]), (self.batch_size,), generator=gen)
        x, y = flips(self.data[0][idx], self.data[1][idx], gen)
        return {"image": x.contiguous(), "label": y.contiguous()}


def _dataset(name: str, sampler) -> SimpleNamespace:
    """Stand-in for a ``CachedDataset`` carrying its sampler (what training reads of one)."""
    return SimpleNamespace(
        stats=IntensityStats(mean=0.0, std=1.0, lo=0.0, hi=1.0),
        dim=2,
        normalization="window",
        window=(0.0, 1.0),
        info={"dataset": {"name": name, "dim": 2}},
        sampler=sampler,
    )


def _patch_streams() -> None:
    """Route stages' sampler and loader to the datasets' in-memory samplers."""

    def make_sampler(datasets, data_cfg, *, seed):
        ds = datasets[0] if isinstance(datasets, list) else datasets
        return ds.sampler

    def batch_stream(sampler, start, stop, num_workers, thread=False):
        return (sampler.batch(s) for s in range(start, stop))

    stages.make_sampler = make_sampler
    stages.batch_stream = batch_stream


def lesion_crops(data, patch: int, n: int) -> torch.Tensor:
    """(n, 1, patch, patch) crops of the first ``n`` slices with infection, centred on it."""
    x, y = data
    out = []
    for i in range(len(x)):
        fg = torch.nonzero(y[i, 0]).float()
        if len(fg) == 0:
            continue
        cy, cx = (round(v) for v in fg.mean(0).tolist())
        size = x.shape[-1]
        y0 = min(max(cy - patch // 2, 0), size - patch)
        x0 = min(max(cx - patch // 2, 0), size - patch)
        out.append(x[i, :, y0 : y0 + patch, x0 : x0 + patch])
        if len(out) == n:
            break
    return torch.stack(out)


def g_health(state: dict, cfg: Config, x: torch.Tensor) -> dict[str, float]:
    """Effective rank and RMS of G's bottleneck on ``x``, and the L2 norm of G's parameters."""
    net = build_network(cfg.model, kind="dual")
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        f = net.general_features(x)
    g_norm = float(
        torch.sqrt(sum((p.detach().double() ** 2).sum() for p in net.general.parameters()))
    )
    return {
        "rank": float(effective_rank(f)),
        "rms": float(feature_rms(f)),
        "param_norm": g_norm,
    }


def main(settings_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    spec = json.loads(Path(settings_path).read_text())
    _patch_streams()
    x, y = load_covid(spec["size"])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec["split_seed"]))
    tr, te = order[: spec["n_train"]], order[spec["n_train"] :]
    covid, test = (x[tr], y[tr]), (x[te], y[te])
    msd = load_msd(spec["patch"])
    probe_x = lesion_crops(covid, spec["patch"], spec["n_probe"])
    base = Config(
        model=model_config(spec["features"]),
        data=DataConfig(patch_size=(spec["patch"],) * 2, batch_size=spec["batch"], num_workers=0),
        train=TrainConfig(
            pretrain_steps=spec["pretrain_steps"],
            steps=spec["steps"],
            seed=spec["seed"],
            device="cpu",
            checkpoint_every=10**9,
            feature_stats_every=spec["feature_stats_every"],
            rampup_steps=spec.get("rampup_steps"),
            log_every=spec["feature_stats_every"],
        ),
    )
    out = {"spec": spec, "settings": {}, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        msd_set = _dataset("msd", PatchSampler(msd, spec["batch"], spec["seed"]))
        pre = stages.pretrain_general(base, [msd_set], tmp / "pretrain", progress=False)
        out["pretrain_s"] = time.time() - t0
        for s in spec["settings"]:
            t0 = time.time()
            overrides = {k: v for k, v in s.items() if k != "name"}
            cfg = base.replace(train=dataclasses.replace(base.train, method="rdcl", **overrides))
            print(f"setting {s['name']}: {overrides}", flush=True)
            c_set = _dataset(
                "covid", CropSampler(covid, spec["patch"], spec["batch"], cfg.train.seed)
            )
            n_set = _dataset("msd", PatchSampler(msd, spec["batch"], cfg.train.seed + 1))
            run = tmp / s["name"]
            final = stages.train(cfg, c_set, [n_set], run, pretrained=pre, progress=False)
            start_state = build_for_method(
                cfg.model, get_method("rdcl"), load_checkpoint(pre)["model"]
            ).state_dict()
            end_state = load_checkpoint(final)["model"]
            net = build_network(cfg.model, kind="dual")
            net.load_state_dict(end_state)
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            out["settings"][s["name"]] = {
                **s,
                "start": g_health(start_state, cfg, probe_x),
                "end": g_health(end_state, cfg, probe_x),
                **evaluate(net, *test),
                "seconds": time.time() - t0,
                "log": [r for r in log if r.get("g_rank") is not None],
            }
            r = out["settings"][s["name"]]
            print(
                f"  -> start rank {r['start']['rank']:.1f} rms {r['start']['rms']:.3f}; end rank "
                f"{r['end']['rank']:.1f} rms {r['end']['rms']:.3f}; DSC {r['dsc']:.3f} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            )
            Path(out_path).write_text(json.dumps(out, indent=1))


def _window(log: list[dict], lo: float, hi: float, key: str) -> float:
    """Median of ``key`` over the log records with lo < step / last step <= hi."""
    last = log[-1]["step"]
    vals = [r[key] for r in log if lo < r["step"] / last <= hi]
    return float(np.median(vals)) if vals else float("nan")


def summary(out_path: str) -> str:
    """Markdown table: per setting, G's effective rank and RMS on the fixed lesion batch at the
    start and the end of stage 2, the training-batch log's median over the first and last tenth,
    G's parameter norm, d_G at the end and held-out DSC."""
    out = json.loads(Path(out_path).read_text())
    lines = [
        "| setting | G decay | lambda_G | rank start -> end (fixed batch) | RMS start -> end "
        "(fixed batch) | log rank first / last tenth | log RMS first / last tenth | "
        "G param norm start -> end | d_G last tenth | DSC | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["settings"].items():
        log = r["log"]
        tcfg = TrainConfig(**{k: v for k, v in r.items() if k in TrainConfig.__annotations__})
        lines.append(
            f"| {name} | {tcfg.general_weight_decay:g} | {tcfg.lambda_g:g} | "
            f"{r['start']['rank']:.1f} -> {r['end']['rank']:.1f} | "
            f"{r['start']['rms']:.3f} -> {r['end']['rms']:.3f} | "
            f"{_window(log, 0, 0.1, 'g_rank'):.1f} / {_window(log, 0.9, 1, 'g_rank'):.1f} | "
            f"{_window(log, 0, 0.1, 'g_rms'):.3f} / {_window(log, 0.9, 1, 'g_rms'):.3f} | "
            f"{r['start']['param_norm']:.2f} -> {r['end']['param_norm']:.2f} | "
            f"{_window(log, 0.9, 1, 'd_g'):.3g} | {r['dsc']:.3f} | {r['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        print(summary(sys.argv[2]))
    else:
        main(sys.argv[1], sys.argv[2])
