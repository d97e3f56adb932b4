from __future__ import annotations

import csv
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from rdcl.demo import run_demo
from rdcl.demo.feature_relations import crop_around
from rdcl.demo.pipeline import FAST, METHODS, demo_config


def test_refuses_non_empty_out_dir_and_touches_nothing(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        run_demo(out, fast=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    file_out = tmp_path / "a_file"
    file_out.write_text("x")
    with pytest.raises(FileExistsError, match="must be a folder"):
        run_demo(file_out, overwrite=True, fast=True)
    assert file_out.read_text() == "x"


def test_demo_config_is_tiny3d_with_overrides():
    cfg = demo_config(FAST, method="rdcl", seed=3)
    assert cfg.data.patch_size == FAST.patch
    assert (cfg.train.method, cfg.train.seed, cfg.train.steps) == ("rdcl", 3, FAST.steps)
    assert cfg.model.features == (4, 8, 16, 16)  # the tiny3d network


def test_crop_centres_and_pads():
    x = np.arange(4 * 6 * 6, dtype=np.float32).reshape(1, 4, 6, 6)
    # centre (2, 3, 3), patch (2, 4, 4): start = centre - patch // 2 = (1, 1, 1)
    np.testing.assert_array_equal(
        crop_around(x, np.array([2, 3, 3]), (2, 4, 4)), x[:, 1:3, 1:5, 1:5]
    )
    # a centre at the corner is clamped inside the volume
    np.testing.assert_array_equal(crop_around(x, np.array([0, 0, 0]), (2, 4, 4)), x[:, :2, :4, :4])
    # patch larger than the volume along z: padded with the minimum (0 here) at the end
    out = crop_around(x, np.array([2, 3, 3]), (6, 4, 4))
    assert out.shape == (1, 6, 4, 4)
    np.testing.assert_array_equal(out[:, :4], x[:, :, 1:5, 1:5])
    assert np.all(out[:, 4:] == 0)


@pytest.mark.slow
def test_fast_demo_end_to_end(tmp_path):
    from rdcl.data.io import read_image

    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("not the demo's")  # kept by overwrite=True
    assert run_demo(out, overwrite=True, fast=True, progress=False) == out
    text = (out / "report.md").read_text()
    for method in METHODS:
        row = re.search(rf"^\| {method} \| (\d+) \| ([0-9.]+|n/a) ± .* \|$", text, re.M)
        assert row, f"no score row for {method} in report.md"
        assert int(row.group(1)) == FAST.n_test
    assert "| method | cases | DSC | NSD@3mm |" in text
    assert re.search(r"\|L_G\| / L_seg = [0-9.e+-]+ and \|L_T\| / L_seg = [0-9.e+-]+", text)
    assert (out / "keep.txt").read_text() == "not the demo's"
    for name in ("overlay_baseline", "overlay_rdcl", "loss_curves", "relation_matrices"):
        png = out / "figures" / f"{name}.png"
        assert f"figures/{name}.png" in text
        assert mpimg.imread(png).ndim == 3
    preds = sorted((out / "predictions" / "rdcl").glob("*.nii.gz"))
    assert len(preds) == FAST.n_test
    image, geometry = read_image(out / "data" / "covid" / "imagesTs" / "covid_003_0000.nii.gz")
    mask, mask_geometry = read_image(out / "predictions" / "rdcl" / "covid_003.nii.gz")
    assert mask.shape == image.shape == FAST.shape
    assert mask_geometry.matches(geometry, atol=1e-6)
    assert set(np.unique(mask)) <= {0, 1}
    assert "## Timings" in text and "train rdcl" in text
    # the table's means are those of the per-case CSV written by evaluate_folders
    rows = list(csv.DictReader((out / "scores" / "rdcl.csv").open()))
    assert len(rows) == FAST.n_test
    mean_dsc = np.mean([float(r["dsc"]) for r in rows])
    assert f"| rdcl | {FAST.n_test} | {mean_dsc:.3f} ± " in text
    # the exported predictor of the rdcl run, named with its C++ command, reproduces the mask
    import torch

    model = out / "model" / "rdcl.ts"
    assert "`rdcl_predict model/rdcl.ts INPUT.nii.gz OUTPUT.nii.gz`" in text
    assert "masks equal" in text or "Dice" in text
    module = torch.jit.load(str(model))
    got = module(
        torch.from_numpy(image.astype(np.float32)),
        torch.tensor(geometry.spacing, dtype=torch.float64),
    ).numpy()
    np.testing.assert_array_equal(got, mask)


def test_relation_scale_line_reads_the_rdcl_log(tmp_path):
    import json

    from rdcl.config import TrainConfig
    from rdcl.demo.pipeline import relation_scale

    log = tmp_path / "log.jsonl"
    rows = [{"step": i, "seg": 2.0, "loss_g": 0.2 * i, "loss_t": -0.02 * i} for i in range(20)]
    rows.insert(5, {"step": 5, "seg": 1.0, "loss_g": None, "loss_t": None})  # skipped
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train = TrainConfig(lambda_g=0.5, lambda_t=0.05, rampup_steps=7, relation_reduction="mean")
    line = relation_scale(log, train)
    # the last 2 of 20 rows: |L_G| / L_seg = mean(0.1 * 18, 0.1 * 19) = 1.85, |L_T| one tenth
    assert "lambda_G = 0.5, lambda_T = 0.05, reduction `mean`" in line and "/ C^2" in line
    assert "last 2 logged steps |L_G| / L_seg = 1.85 and |L_T| / L_seg = 0.185" in line
    log.write_text(json.dumps({"step": 0, "seg": 1.0}) + "\n")
    assert relation_scale(log, TrainConfig()).endswith("no relation terms were logged.")


def test_general_health_line_reads_g_rank_and_rms(tmp_path):
    import json

    from rdcl.demo.pipeline import general_health

    log = tmp_path / "log.jsonl"
    rows = [{"step": i, "seg": 1.0, "g_rank": None, "g_rms": None} for i in range(1, 101)]
    rows[49].update(g_rank=12.25, g_rms=0.7)  # step 50
    rows[99].update(g_rank=9.5, g_rms=0.55)  # step 100
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    line = general_health(log)
    assert "effective rank 12.2 at step 50 and 9.5 at step 100" in line
    assert "feature RMS 0.7 -> 0.55" in line
    log.write_text(json.dumps({"step": 1, "seg": 1.0, "g_rank": None}) + "\n")
    assert general_health(log).endswith("were not logged.")


def test_network_relations_are_the_three_relation_matrices():
    import torch
    from rdcl.kernels import relation_matrix

    from rdcl.config import preset
    from rdcl.demo.feature_relations import network_relations
    from rdcl.model import build_network
    from rdcl.report import RG_COVID, RG_NONCOVID, RT_COVID

    torch.manual_seed(0)
    cfg = preset("tiny2d").model
    net = build_network(cfg, kind="dual")
    x_n, x_c = torch.randn(2, 1, 32, 32), torch.randn(3, 1, 32, 32) + 0.5
    m = network_relations(net, x_n, x_c)
    assert list(m) == [RG_NONCOVID, RG_COVID, RT_COVID]
    assert all(v.shape == (cfg.features[-1],) * 2 for v in m.values())
    with torch.no_grad():
        want = {
            RG_NONCOVID: relation_matrix(net.general(x_n)[-1]),
            RG_COVID: relation_matrix(net.general(x_c)[-1]),
            RT_COVID: relation_matrix(net.target(x_c)[-1]),
        }
    for key, value in want.items():
        np.testing.assert_allclose(m[key], value.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(m[RG_COVID], m[RT_COVID])
