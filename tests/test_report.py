from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from rdcl.report import (
    RG_COVID,
    RG_NONCOVID,
    RT_COVID,
    lesion_slice,
    mean_std,
    plot_loss_curves,
    plot_overlays,
    plot_relation_matrices,
    read_log,
    relation_differences,
    write_summary,
)
from rdcl.report.curves import PANELS, loss_curves_figure, moving_average
from rdcl.report.overlay import window_image


def _phantom():
    """A (6, 40, 48) HU volume with a ball lesion centred on z=3 (largest cross-section there)."""
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:6, :40, :48]
    image = -850.0 + 30.0 * rng.standard_normal((6, 40, 48))
    gt = ((z - 3) ** 2 * 9 + (y - 20) ** 2 + (x - 24) ** 2) < 64
    image[gt] = -400.0
    pred = np.roll(gt, 2, axis=2)
    return image, gt.astype(np.uint8), pred.astype(np.uint8)


def test_lesion_slice_picks_largest_then_falls_back():
    gt = np.zeros((5, 4, 4), np.uint8)
    gt[1, 0, :2] = 1  # 2 voxels
    gt[3, :2, :2] = 1  # 4 voxels: the largest
    gt[4, 2:, 2:] = 1  # 4 voxels: a tie, the lower index wins
    assert lesion_slice(gt) == 3
    pred = np.zeros_like(gt)
    pred[2, 0, 0] = 1
    assert lesion_slice(np.zeros_like(gt), pred) == 2  # empty GT: use the prediction
    assert lesion_slice(np.zeros_like(gt), np.zeros_like(gt)) == 2  # both empty: middle of 5
    with pytest.raises(ValueError, match="z, y, x"):
        lesion_slice(np.zeros((4, 4)))


def test_window_image_maps_window_to_unit_range():
    img = np.array([-2000.0, -1250.0, -500.0, 250.0, 1000.0])
    # (v - lo) / (hi - lo) with lo=-1250, hi=250: -500 -> 750/1500 = 0.5; outside clipped.
    np.testing.assert_allclose(window_image(img, (-1250.0, 250.0)), [0, 0, 0.5, 1, 1])


def test_plot_overlays_writes_deterministic_png(tmp_path):
    image, gt, pred = _phantom()
    a = plot_overlays(image, gt, pred, tmp_path / "a.png", title="rdcl case_000")
    b = plot_overlays(image, gt, pred, tmp_path / "b.png", title="rdcl case_000")
    png = mpimg.imread(a)
    assert png.shape == (480, 900, 4)  # figsize (9, 4.8) inches at 100 dpi, RGBA
    assert png[..., :3].std() > 0.05  # not a blank canvas
    assert a.read_bytes() == b.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_plot_overlays_2d_and_shape_errors(tmp_path):
    image, gt, pred = _phantom()
    out = plot_overlays(image[3], gt[3], pred[3], tmp_path / "s.png", title="2D", window=None)
    assert mpimg.imread(out).shape[2] == 4
    with pytest.raises(ValueError, match="one 2D/3D shape"):
        plot_overlays(image, gt[:3], pred, tmp_path / "x.png", title="bad")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_overlays(image, gt, pred, tmp_path / "x.jpg", title="bad")
    assert not (tmp_path / "x.png").exists()


def _write_log(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _records(stage, n, *, relation):
    out = []
    for s in range(n):
        rec = {"step": s, "stage": stage, "seg": 1.0 / (1 + s), "lr": 0.01 * (1 - s / n) ** 0.9}
        rec["loss_g"] = 0.01 * s if relation else None
        rec["loss_t"] = -0.001 * s if relation else None
        rec["loss"] = rec["seg"] + (rec["loss_g"] or 0.0) + (rec["loss_t"] or 0.0)
        rec["d_g"], rec["d_t"] = (0.1, 0.2) if relation else (None, None)
        out.append(rec)
    return out


def test_plot_loss_curves(tmp_path):
    base = _write_log(tmp_path / "base.jsonl", _records("train", 30, relation=False))
    rd = _write_log(
        tmp_path / "rdcl.jsonl",
        _records("pretrain", 10, relation=False) + _records("train", 30, relation=True),
    )
    out = plot_loss_curves({"baseline": base, "rdcl": rd}, tmp_path / "curves.png")
    png = mpimg.imread(out)
    assert png.shape == (700, 2000, 4)  # 2 x 4 panels, figsize (20, 7) at 100 dpi
    assert png[..., :3].std() > 0.05
    assert len(read_log(rd)) == 40


def test_loss_curves_draw_g_rank_and_rms(tmp_path):
    """G's effective rank and RMS (logged every few steps) get panels of their own, drawn from
    the records that carry them; a log without them says "not logged" there."""
    plain = _records("train", 30, relation=True)
    probed = [dict(r) for r in plain]
    for r in probed[::5]:
        r["g_rank"], r["g_rms"] = 10.0 - r["step"] / 10, 0.5 + r["step"] / 100
    titles = [title for title, _, _ in PANELS]
    rank_i = next(i for i, t in enumerate(titles) if "effective rank" in t)
    rms_i = next(i for i, t in enumerate(titles) if "RMS" in t)
    fig = loss_curves_figure({"rdcl": _write_log(tmp_path / "b.jsonl", probed)})
    axes = fig.axes
    for i, key in ((rank_i, "g_rank"), (rms_i, "g_rms")):
        (line,) = axes[i].get_lines()
        np.testing.assert_array_equal(line.get_xdata(), [r["step"] for r in probed[::5]])
        np.testing.assert_allclose(line.get_ydata(), [r[key] for r in probed[::5]])
    fig = loss_curves_figure({"rdcl": _write_log(tmp_path / "a.jsonl", plain)})
    for i in (rank_i, rms_i):
        assert not fig.axes[i].get_lines()
        assert [t.get_text() for t in fig.axes[i].texts] == ["not logged"]


def test_read_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="training log not found"):
        read_log(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3"):
        read_log(bad)


def test_moving_average_trailing_window():
    # window 2: [1, (1+3)/2, (3+5)/2, (5+7)/2]
    np.testing.assert_allclose(moving_average(np.array([1.0, 3, 5, 7]), 2), [1, 2, 4, 6])


def _relations():
    rng = np.random.default_rng(0)
    feats = rng.random((3, 8, 20))
    gram = feats @ feats.transpose(0, 2, 1)
    r = gram / np.linalg.norm(gram, axis=2, keepdims=True)
    return {RG_NONCOVID: r[0], RG_COVID: r[1], RT_COVID: r[2]}


def test_relation_differences_are_consecutive_absolute_differences():
    a, b, c = np.eye(2), np.array([[0.5, 0.0], [1.0, 1.0]]), np.zeros((2, 2))
    d = relation_differences({"A": a, "B": b, "C": c})
    assert list(d) == ["|A - B|", "|B - C|"]
    np.testing.assert_allclose(d["|A - B|"], [[0.5, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(d["|B - C|"], b)


def test_plot_relation_matrices(tmp_path):
    out = plot_relation_matrices(_relations(), tmp_path / "rel.png")
    png = mpimg.imread(out)
    assert png.shape == (660, 1100, 4)  # (3 * 3.4 + 0.8) x (2 * 3.3) inches at 100 dpi
    assert png[..., :3].std() > 0.05
    with pytest.raises(ValueError, match=r"square \(C, C\)"):
        plot_relation_matrices({"a": np.eye(3), "b": np.eye(4)}, tmp_path / "bad.png")


def test_mean_std_skips_nan():
    mean, std, n = mean_std([0.5, math.nan, 0.7, None])
    assert (mean, n) == (pytest.approx(0.6), 2)
    assert std == pytest.approx(0.1)  # population std of {0.5, 0.7}
    assert all(math.isnan(v) for v in mean_std([math.nan])[:2])


def test_write_summary_tables_figures_timings(tmp_path):
    fig = plot_relation_matrices(_relations(), tmp_path / "figs" / "rel.png")
    scores = {
        "baseline": [
            {"case": "case_1", "dsc": 0.6, "nsd": 0.5},
            {"case": "case_2", "dsc": 0.8, "nsd": 0.9},
        ],
        "rdcl": [
            {"case": "case_1", "dsc": 0.7, "nsd": 0.85},
            {"case": "case_2", "dsc": 0.9, "nsd": 0.95},
        ],
    }
    out = write_summary(
        tmp_path,
        scores=scores,
        figures={"Relation matrices": fig},
        timings={"synthesise": 1.26, "train": 10.0},
        config={"rdcl": {"train": {"steps": 7}}},
        notes=["Synthetic data."],
    )
    text = out.read_text()
    assert out == tmp_path / "report.md"
    # baseline DSC mean (0.6+0.8)/2 = 0.7, std 0.1; NSD (0.5+0.9)/2 = 0.7, std 0.2.
    assert "| baseline | 2 | 0.700 ± 0.100 | 0.700 ± 0.200 |" in text
    assert "| rdcl | 2 | 0.800 ± 0.100 | 0.900 ± 0.050 |" in text
    assert "| case_1 | 0.600 | 0.500 | 0.700 | 0.850 |" in text
    assert "highest mean DSC: **rdcl** (0.800)" in text
    assert "![Relation matrices](figs/rel.png)" in text
    assert "| synthesise | 1.3 |" in text and "| **total** | 11.3 |" in text
    assert '"steps": 7' in text and "Synthetic data." in text


def test_write_summary_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one method"):
        write_summary(tmp_path, scores={}, figures={}, timings={}, config={})
    with pytest.raises(FileNotFoundError, match="figure 'x' not found"):
        write_summary(
            tmp_path,
            scores={"m": [{"case": "a", "dsc": 1.0, "nsd": 1.0}]},
            figures={"x": tmp_path / "none.png"},
            timings={},
            config={},
        )
    with pytest.raises(ValueError, match="'case' key"):
        write_summary(tmp_path, scores={"m": [{"dsc": 1.0}]}, figures={}, timings={}, config={})
    assert not (tmp_path / "report.md").exists()
