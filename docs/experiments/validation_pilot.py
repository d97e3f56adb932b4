"""Validation pilot for issue 17: one method on a split carved from a fold's LABELLED TRAINING
slices (never its test slices), scored on the held-out training slices at every kept snapshot.

    OMP_NUM_THREADS=1 python docs/experiments/validation_pilot.py CONFIG COVID_DIR SPLIT_JSON \
        OUT_DIR --fold 1 --val 4 --method baseline [--general DIR ...] [--set key=value ...]

Writes OUT_DIR/run (the rdcl run folder) and OUT_DIR/curve.json: validation DSC/NSD (mean over
the held-out slices) of the weights at each snapshot step and of final.ckpt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rdcl.config import load_config
from rdcl.data import load_dataset
from rdcl.data.datasets.subset import select_cases
from rdcl.study.scoring import read_scores, score_run
from rdcl.study.splits import read_split
from rdcl.training.run import run_training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("covid", type=Path)
    p.add_argument("split", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--val", type=int, default=4, help="training slices held out for validation")
    p.add_argument("--method", default="baseline")
    p.add_argument("--general", type=Path, nargs="*", default=[])
    p.add_argument("--pretrained", type=Path)
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    cfg = load_config(a.config).override([f"train.method={a.method}", *a.set])
    names = list(read_split(a.split).folds[a.fold - 1].train)
    train_names, val_names = names[: -a.val], names[-a.val :]
    spec = load_dataset(a.covid)
    run = a.out / "run"
    final = run / "final.ckpt"
    if not final.is_file():  # a finished run is only scored (again)
        final = run_training(
            cfg,
            select_cases(spec, train_names),
            a.general or None,
            run,
            resume=(run / "last.ckpt").is_file(),
            pretrained=a.pretrained,
            progress=False,
        )
    ckpts = [*sorted((run / "snapshots").glob("train_step_*.ckpt")), final]
    curve = []
    for ckpt in ckpts:
        tag = ckpt.stem
        csv = a.out / "scores" / f"{tag}.csv"
        score_run(ckpt, spec, val_names, a.out / "pred" / tag, csv)
        rows = read_scores(csv)
        curve.append({
            "checkpoint": tag,
            "dsc": sum(r["dsc"] for r in rows) / len(rows),
            "nsd": sum(r["nsd"] for r in rows) / len(rows),
        })  # fmt: skip
        print(json.dumps(curve[-1]), flush=True)
    info = {"train": train_names, "val": val_names, "method": a.method, "set": a.set}
    (a.out / "curve.json").write_text(json.dumps({**info, "curve": curve}, indent=1))


if __name__ == "__main__":
    main()
