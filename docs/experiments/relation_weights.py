"""Choose lambda_G, lambda_T and the relation reduction on real data (issue 8; results in
docs/relation_weights.md).

Target task: the 80 real COVID-19 CT slices of ``../shared/data/covid19_ct100`` (radiologist
infection masks), downsampled to ``size`` x ``size``; a seeded ``n_train`` of them are the few
labelled slices, the rest are held out. Non-COVID lesions: the 260 real MSD Task06_Lung tumour
patches of ``../shared/data/msd_lung_patches`` (48 x 48, 2 mm). Both are already intensity
normalised to [0, 1]; nothing is copied into the repository.

Protocol (the training code's own pieces: ``build_for_method``, ``method_terms`` = the exact
stage-2 loss of ``rdcl train``, ``make_optimizer``, ``poly_lr``, ``clip_gradients``):
stage 1 trains a single-encoder U-Net on the MSD patches (its encoder becomes G); stage 2 trains
each setting from the same seed for ``steps`` steps (``batch`` random ``patch`` x ``patch`` crops
of the labelled COVID slices, a third centred on infection, random flips; the same number of MSD
patches resized to ``patch``), then scores the whole held-out slices (DSC, NSD at 1 pixel).
Every ``probe_every`` steps the step's gradient is computed term by term (their sum is the same
gradient) and ||grad_T L_T|| / ||grad_T L_seg||, ||grad_G L_G|| / ||grad_T L_seg|| are recorded.

Usage: ``OMP_NUM_THREADS=1 python docs/experiments/relation_weights.py settings.json out.json``,
then ``python docs/experiments/relation_weights.py --summary out.json`` for the markdown table.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rdcl.config import ModelConfig, TrainConfig
from rdcl.losses import DeepSupervisionLoss, DiceBCELoss
from rdcl.metrics import dice, surface_dice
from rdcl.model import build_network
from rdcl.training.methods import build_for_method, get_method
from rdcl.training.schedule import clip_gradients, make_optimizer, poly_lr, set_lr
from rdcl.training.stages import method_terms

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def load_covid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(80, 1, size, size) images in [0, 1] and {0, 1} masks (area-downsampled, mask > 0.5)."""
    from PIL import Image

    root = DATA / "covid19_ct100"
    images, masks = [], []
    for path in sorted((root / "images").glob("tr_im_*.png")):
        mask_path = root / "masks" / path.name.replace("tr_im_", "tr_mask_")
        images.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)
        masks.append((np.asarray(Image.open(mask_path).convert("L")) > 127).astype(np.float32))
    x = torch.from_numpy(np.stack(images))[:, None]
    y = torch.from_numpy(np.stack(masks))[:, None]
    x = F.interpolate(x, size=(size, size), mode="area")
    y = (F.interpolate(y, size=(size, size), mode="area") > 0.5).float()
    return x, y


def load_msd(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(260, 1, size, size) MSD lung-tumour patches in [0, 1] (48 x 48 at 2 mm, resized
    bilinearly) and their {0, 1} masks."""
    parts = [np.load(DATA / "msd_lung_patches" / f"{s}_patches.npz") for s in ("val", "test")]
    x = torch.from_numpy(np.concatenate([p["images"] for p in parts])).float()
    y = torch.from_numpy(np.concatenate([p["labels"] for p in parts])).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)
    return x, (y > 0.5).float()


def crops(x, y, patch: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``batch`` random patch x patch crops of random slices; a third centred on a lesion pixel
    (nnU-Net's 33% foreground oversampling)."""
    out_x, out_y = [], []
    size = x.shape[-1]
    for b in range(batch):
        i = int(torch.randint(len(x), (), generator=gen))
        fg = torch.nonzero(y[i, 0])
        if b % 3 == 2 and len(fg):
            cy, cx = fg[int(torch.randint(len(fg), (), generator=gen))].tolist()
            y0 = min(max(cy - patch // 2, 0), size - patch)
            x0 = min(max(cx - patch // 2, 0), size - patch)
        else:
            y0, x0 = (int(v) for v in torch.randint(size - patch + 1, (2,), generator=gen))
        out_x.append(x[i, :, y0 : y0 + patch, x0 : x0 + patch])
        out_y.append(y[i, :, y0 : y0 + patch, x0 : x0 + patch])
    return flips(torch.stack(out_x), torch.stack(out_y), gen)


def model_config(features: list[int]) -> ModelConfig:
    """2D U-Net of the paper2d family (3x3 convs, stride 2 per stage) with these stage widths."""
    n = len(features)
    return ModelConfig(
        dim=2, features=tuple(features), kernels=((3, 3),) * n,
        strides=((1, 1),) + ((2, 2),) * (n - 1),
    )  # fmt: skip


def flips(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random left-right / up-down flips per batch (the same for image and mask)."""
    for axis in (-1, -2):
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(axis), y.flip(axis)
    return x, y


def pretrain(model_cfg: ModelConfig, tcfg: TrainConfig, msd, steps: int, batch: int) -> dict:
    """Stage 1: single-encoder U-Net on the MSD patches; returns its state_dict."""
    torch.manual_seed(tcfg.seed)
    net = build_network(model_cfg, kind="single")
    opt = make_optimizer(net.parameters(), tcfg)
    seg = DeepSupervisionLoss(DiceBCELoss())
    gen = torch.Generator().manual_seed(tcfg.seed)
    for step in range(steps):
        set_lr(opt, poly_lr(step, steps, tcfg.lr, tcfg.poly_exponent))
        idx = torch.randint(len(msd[0]), (batch,), generator=gen)
        x, y = flips(msd[0][idx], msd[1][idx], gen)
        loss = seg(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(net.parameters(), tcfg.grad_clip)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  pretrain {step:4d} seg {loss.item():.3f}", flush=True)
    return net.state_dict()


def _norm(grads) -> float:
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def train_setting(
    model_cfg, tcfg, method_name, pretrained, covid, msd, steps, batch, patch, probe_every
):
    """Stage 2 of one setting; returns (net, log rows)."""
    method = get_method(method_name)
    torch.manual_seed(tcfg.seed)
    net = build_for_method(model_cfg, method, pretrained if method.needs_pretrained else None)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(params, tcfg)
    seg_loss = DeepSupervisionLoss(DiceBCELoss())
    gen_c = torch.Generator().manual_seed(tcfg.seed)
    gen_n = torch.Generator().manual_seed(tcfg.seed + 1)
    t_params = list(net.target.parameters()) if hasattr(net, "target") else []
    g_params = [p for p in net.general.parameters() if p.requires_grad] if method.use_lg else []
    rows = []
    for step in range(steps):
        set_lr(opt, poly_lr(step, steps, tcfg.lr, tcfg.poly_exponent))
        x_c, y_c = crops(*covid, patch, batch, gen_c)
        x_n = None
        if method.use_lg:
            x_n = flips(*[t[torch.randint(len(msd[0]), (batch,), generator=gen_n)] for t in msd],
                        gen_n)[0]  # fmt: skip
        terms, ramp = method_terms(net, method, x_c=x_c, y_c=y_c, x_n=x_n, step=step, cfg=tcfg,
                                   seg_loss=seg_loss)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        probe = t_params and (step % probe_every == 0 or step == steps - 1)
        row = {"step": step, "ramp": ramp, "seg": terms["seg"].item()}
        for k in ("d_g", "d_t", "loss_g", "loss_t"):
            if terms.get(k) is not None:
                row[k] = terms[k].item()
        if probe:
            # the same gradient as terms["loss"].backward(), one term at a time (linear)
            total = {id(p): torch.zeros_like(p) for p in params}
            g_seg = torch.autograd.grad(terms["seg"], params, retain_graph=True, allow_unused=True)
            for p, g in zip(params, g_seg, strict=True):
                if g is not None:
                    total[id(p)] += g
            seg_t = _norm([g for p, g in zip(params, g_seg, strict=True)
                           if any(p is q for q in t_params)])  # fmt: skip
            row["grad_seg_T"] = seg_t
            for key, sub in (("loss_g", g_params), ("loss_t", t_params)):
                if terms.get(key) is None or not sub:
                    continue
                if key == "loss_t" and not method.use_lt:
                    continue
                gs = torch.autograd.grad(terms[key], sub, retain_graph=True, allow_unused=True)
                for p, g in zip(sub, gs, strict=True):
                    if g is not None:
                        total[id(p)] += g
                row[f"grad_{key}"] = _norm(gs)
            if method.use_lg:
                row["ratio_T"] = row.get("grad_loss_t", 0.0) / max(seg_t, 1e-30)
                row["ratio_G"] = row["grad_loss_g"] / max(seg_t, 1e-30)
            for p in params:
                p.grad = total[id(p)]
        else:
            terms["loss"].backward()
        row["grad_norm"] = clip_gradients(params, tcfg.grad_clip)
        opt.step()
        if probe:
            rows.append(row)
            shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()}
            print(f"  {method_name} {shown}", flush=True)
    return net, rows


@torch.no_grad()
def evaluate(net, x, y) -> dict:
    """Held-out DSC and NSD (tau = 1 pixel) per slice with infection, and their means."""
    net.eval()
    prob = torch.cat([torch.sigmoid(net(x[i : i + 8])[0]) for i in range(0, len(x), 8)])
    pred = (prob > 0.5).numpy()[:, 0]
    gt = y.numpy()[:, 0] > 0.5
    keep = [i for i in range(len(gt)) if gt[i].any()]
    dsc = [dice(pred[i], gt[i]) for i in keep]
    nsd = [float(surface_dice(pred[i], gt[i], (1.0, 1.0), 1.0)) for i in keep]
    net.train()
    return {"dsc": float(np.mean(dsc)), "nsd": float(np.mean(nsd)), "n_slices": len(keep),
            "dsc_std": float(np.std(dsc)), "nsd_std": float(np.std(nsd))}  # fmt: skip


def main(settings_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    spec = json.loads(Path(settings_path).read_text())
    model_cfg = model_config(spec["features"])
    base = TrainConfig(seed=spec["seed"], rampup_steps=spec["rampup_steps"])
    x, y = load_covid(spec["size"])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec["split_seed"]))
    tr, te = order[: spec["n_train"]], order[spec["n_train"] :]
    covid, test = (x[tr], y[tr]), (x[te], y[te])
    msd = load_msd(spec["patch"])
    out = {"spec": spec, "train_slices": tr.tolist(), "settings": {}}
    t0 = time.time()
    pretrained = pretrain(model_cfg, base, msd, spec["pretrain_steps"], spec["batch"])
    out["pretrain_s"] = time.time() - t0
    for s in spec["settings"]:
        t0 = time.time()
        tcfg = replace(base, method=s["method"], lambda_g=s.get("lambda_g", 1.0),
                       lambda_t=s.get("lambda_t", 0.1),
                       relation_reduction=s.get("reduction", "sum"))  # fmt: skip
        print(f"setting {s['name']}: {tcfg.method} lambda_g={tcfg.lambda_g} "
              f"lambda_t={tcfg.lambda_t} {tcfg.relation_reduction}", flush=True)  # fmt: skip
        net, rows = train_setting(model_cfg, tcfg, s["method"], pretrained, covid, msd,
                                  spec["steps"], spec["batch"], spec["patch"],
                                  spec["probe_every"])  # fmt: skip
        scores = evaluate(net, *test)
        out["settings"][s["name"]] = {**s, **scores, "seconds": time.time() - t0, "log": rows}
        print(f"  -> {s['name']}: DSC {scores['dsc']:.3f} NSD {scores['nsd']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
        Path(out_path).write_text(json.dumps(out, indent=1))


def summary(out_path: str) -> str:
    """Markdown table of a results file: scores, and per setting the median (min-max) gradient
    ratios over the probes after the ramp, the last probe's L_seg / L_G / L_T, and how many
    probed steps reached the clip."""
    out = json.loads(Path(out_path).read_text())
    ramp_end = out["spec"]["rampup_steps"]
    clip = TrainConfig().grad_clip
    lines = [
        "| setting | method | lambda_G | lambda_T | reduction | DSC | NSD | rho_T median (range) "
        "| rho_G median (range) | last L_seg / L_G / L_T | probes at clip |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["settings"].items():
        log = r["log"]
        late = [row for row in log if row["step"] >= ramp_end] or log

        def stat(key, rows=late):
            vals = [row[key] for row in rows if key in row]
            if not vals:
                return "-"
            return f"{np.median(vals):.3g} ({min(vals):.2g}-{max(vals):.2g})"

        last = log[-1] if log else {}
        terms = " / ".join(
            f"{last[k]:.3g}" if k in last else "-" for k in ("seg", "loss_g", "loss_t")
        )
        at_clip = sum(row["grad_norm"] >= clip * 0.999 for row in log)
        relation = r["method"] in ("rdcl", "rdcl_g")
        lambdas = (f"{r.get('lambda_g', 1.0):g}", f"{r.get('lambda_t', 0.1):g}",
                   r.get("reduction", "sum")) if relation else ("-", "-", "-")  # fmt: skip
        lines.append(
            f"| {name} | {r['method']} | {' | '.join(lambdas)} | {r['dsc']:.3f} +- "
            f"{r['dsc_std']:.3f} | {r['nsd']:.3f} +- {r['nsd_std']:.3f} | {stat('ratio_T')} | "
            f"{stat('ratio_G')} | {terms} | {at_clip}/{len(log)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        print(summary(sys.argv[2]))
    else:
        main(*sys.argv[1:3])
