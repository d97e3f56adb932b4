"""Run (or summarise) the relation-settings validation grid of issue 17 (item 5).

    OMP_NUM_THREADS=1 python docs/experiments/validation_grid.py GRID.json CONFIG COVID_DIR \
        SPLIT_JSON OUT_DIR --pretrained STAGE1_FINAL --general DIR [DIR ...] [--unit K]
    python docs/experiments/validation_grid.py --summary OUT_DIR

Every (setting, unit) is one ``validation_pilot.py`` run in ``OUT_DIR/<setting>/f<fold>s<seed>``,
skipped when its ``curve.json`` exists (the grid resumes). The summary is a Markdown table of the
final validation DSC/NSD per unit and their mean, with the difference from ``lambda0`` per unit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(argv: list[str]) -> None:
    grid_path, config, covid, split, out = (Path(a) for a in argv[:5])
    rest = argv[5:]
    only = None
    if "--unit" in rest:  # run one unit's settings (e.g. one process per unit on two cores)
        i = rest.index("--unit")
        only, rest = int(rest[i + 1]), rest[:i] + rest[i + 2 :]
    grid = json.loads(grid_path.read_text())
    units = grid["units"] if only is None else [grid["units"][only - 1]]
    for setting in grid["settings"]:
        for unit in units:
            folder = out / setting["name"] / f"f{unit['fold']}s{unit['seed']}"
            if (folder / "curve.json").is_file():
                continue
            extra = [] if setting["method"] == "baseline" else rest
            sets = [*setting["set"], f"train.seed={unit['seed']}"]
            cmd = [sys.executable, str(HERE / "validation_pilot.py"), str(config), str(covid),
                   str(split), str(folder), "--fold", str(unit["fold"]), "--val", "4",
                   "--method", setting["method"], *extra]  # fmt: skip
            for s in sets:
                cmd += ["--set", s]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)


def _health(log: Path) -> dict:
    """G's last logged effective rank and, over the last 50 steps, d_G, d_T and |L_T| / L_seg."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ranks = [r["g_rank"] for r in records if r.get("g_rank") is not None]
    tail = records[-50:]

    def mean(key: str) -> float | None:
        values = [r[key] for r in tail if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    seg, loss_t = mean("seg"), mean("loss_t")
    return {
        "g_rank": ranks[-1] if ranks else None,
        "d_g": mean("d_g"),
        "d_t": mean("d_t"),
        "lt_over_seg": abs(loss_t) / seg if seg and loss_t is not None else None,
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def health_table(out: Path) -> str:
    """Per finished run: G's last effective rank, d_G, d_T and |L_T| / L_seg (last 50 steps)."""
    lines = ["| setting | unit | G rank (end) | d_G | d_T | abs(L_T) / L_seg |", "|---" * 6 + "|"]
    for curve in sorted(out.glob("*/*/curve.json")):
        h = _health(curve.parent / "run" / "log.jsonl")
        lines.append(
            f"| {curve.parent.parent.name} | {curve.parent.name} | {_fmt(h['g_rank'], '.1f')} | "
            f"{_fmt(h['d_g'], '.3g')} | {_fmt(h['d_t'], '.3g')} | {_fmt(h['lt_over_seg'], '.2f')} |"
        )
    return "\n".join(lines)


def summary(out: Path) -> str:
    rows = {}
    for curve in sorted(out.glob("*/*/curve.json")):
        data = json.loads(curve.read_text())
        final = data["curve"][-1]
        rows.setdefault(curve.parent.parent.name, {})[curve.parent.name] = final
    units = sorted({u for r in rows.values() for u in r})
    ref = rows.get("lambda0", {})
    lines = ["| setting | " + " | ".join(f"{u} DSC / NSD" for u in units) +
             " | mean DSC | mean NSD | mean DSC - lambda0 |",
             "|---" * (len(units) + 4) + "|"]  # fmt: skip
    for name, r in rows.items():
        cells = [f"{r[u]['dsc']:.3f} / {r[u]['nsd']:.3f}" if u in r else "-" for u in units]
        done = [u for u in units if u in r]
        mean_d = sum(r[u]["dsc"] for u in done) / len(done)
        mean_n = sum(r[u]["nsd"] for u in done) / len(done)
        paired = [r[u]["dsc"] - ref[u]["dsc"] for u in done if u in ref]
        diff = f"{sum(paired) / len(paired):+.3f}" if paired else "-"
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {mean_d:.3f} | {mean_n:.3f} | {diff} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        print(summary(Path(sys.argv[2])) + "\n\n" + health_table(Path(sys.argv[2])))
    else:
        run(sys.argv[1:])
