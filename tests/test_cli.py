"""The ``rdcl`` command: --help everywhere and the bad-input matrix (exit 2, one line, no
traceback, nothing written). Commands run in-process through ``main([...])``; one test goes
through ``python -m rdcl`` to check the real process exit status."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcl.cli import COMMANDS, main
from rdcl.config import preset
from rdcl.data.io import Geometry, read_image, write_image

GEOM = Geometry(
    spacing=(2.5, 0.8, 0.7),
    origin=(-10.0, 20.5, 3.25),
    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
)
SHAPE = (6, 12, 10)


def _ct(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(-800.0, 50.0, size=SHAPE).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 3:7, 4:7] = 1
    image[label > 0] = -300
    return image, label


ENDING = ".nrrd"
"""Dataset file suffix in these tests. Not NIfTI: SimpleITK reads NaN/inf NIfTI voxels as 0."""


def _dataset(root: Path, n: int = 2) -> Path:
    """nnU-Net raw layout with ``n`` small 3D cases."""
    for i in range(n):
        image, label = _ct(i)
        write_image(image, GEOM, root / "imagesTr" / f"c{i}_0000{ENDING}")
        write_image(label, GEOM, root / "labelsTr" / f"c{i}{ENDING}")
    meta = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n,
        "file_ending": ENDING,
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _write_4d(path: Path) -> None:
    import SimpleITK as sitk

    vol = sitk.GetImageFromArray(_ct()[0])
    sitk.WriteImage(sitk.JoinSeries([vol, vol]), str(path))  # a genuine 4D image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained 3D single-encoder network saved as an rdcl checkpoint."""
    from rdcl.formats.checkpoint import FORMAT, save_checkpoint
    from rdcl.model import build_network

    cfg = preset("tiny3d")
    torch.manual_seed(0)
    net = build_network(cfg.model, kind="single")
    path = tmp_path_factory.mktemp("model") / "final.ckpt"
    stats = {"mean": -700.0, "std": 200.0, "lo": -1000.0, "hi": 100.0}
    save_checkpoint(
        path,
        {
            "format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
            "step": 0, "model": net.state_dict(), "optimizer": None, "rng": None,
            "intensity": stats, "dataset": {"name": "t", "dim": 3},
        },
    )  # fmt: skip
    return path


def _user_error(capsys, argv: list[str], match: str) -> str:
    """Run ``rdcl argv``, expect exit 2 with one ``rdcl <cmd>: error:`` line naming ``match``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"rdcl {argv[0]}: error: "), err
    assert "Traceback" not in err
    assert match in lines[0], err
    return lines[0]


@pytest.mark.parametrize("name", ["", *[c.name for c in COMMANDS]])
def test_help_exits_zero(capsys, name):
    argv = [name, "--help"] if name else ["--help"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rdcl {name}".rstrip())


def test_fixed_commands_are_registered():
    names = {c.name for c in COMMANDS}
    assert {"demo", "synth", "preprocess", "train", "predict", "evaluate"} <= names


def test_usage_error_is_one_line(capsys):
    assert main(["predict", "-i", "x.nii.gz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rdcl predict: error: the following arguments")
    assert main([]) == 2
    assert "rdcl: error:" in capsys.readouterr().err


def _corrupt(root: Path) -> None:
    (root / "imagesTr" / f"c1_0000{ENDING}").write_bytes(b"not an image file")


def _shape_mismatch(root: Path) -> None:
    write_image(
        np.zeros((6, 12, 9), np.uint8), GEOM, root / "labelsTr" / f"c1{ENDING}", overwrite=True
    )


def _geometry_mismatch(root: Path) -> None:
    other = Geometry(spacing=(3.0, 0.8, 0.7), origin=GEOM.origin, direction=GEOM.direction)
    write_image(_ct(1)[1], other, root / "labelsTr" / f"c1{ENDING}", overwrite=True)


def _label_values(root: Path) -> None:
    write_image(_ct(1)[1] * 2, GEOM, root / "labelsTr" / f"c1{ENDING}", overwrite=True)


def _nan_voxels(root: Path) -> None:
    image = _ct(1)[0].astype(np.float32)
    image[1, 2, 3] = np.nan
    write_image(image, GEOM, root / "imagesTr" / f"c1_0000{ENDING}", overwrite=True)


def _four_d(root: Path) -> None:
    _write_4d(root / "imagesTr" / f"c1_0000{ENDING}")


def _empty(root: Path) -> None:
    # A dataset folder with its dataset.json but no images (yet).
    for folder in ("imagesTr", "labelsTr"):
        for p in (root / folder).iterdir():
            p.unlink()
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": 0}))


@pytest.mark.parametrize(
    ("breaker", "match"),
    [
        (_corrupt, f"c1_0000{ENDING}"),
        (_shape_mismatch, "shape mismatch"),
        (_geometry_mismatch, "geometry mismatch"),
        (_label_values, "label values"),
        (_nan_voxels, "NaN"),
        (_four_d, "4D"),
        (_empty, "empty dataset"),
    ],
)
def test_preprocess_bad_dataset_writes_nothing(tmp_path, capsys, breaker, match):
    root = _dataset(tmp_path / "data")
    breaker(root)
    out = tmp_path / "cache"
    _user_error(
        capsys, ["preprocess", "--data", str(root), "--out", str(out), "--preset", "tiny3d"], match
    )
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temp folder left behind


def test_preprocess_ok_then_refuses_existing_cache(tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    out = tmp_path / "cache"
    argv = ["preprocess", "--data", str(root), "--out", str(out), "--preset", "tiny3d", "-q"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.npz")) == ["c0.npz", "c1.npz"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _user_error(capsys, argv, "--overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main([*argv, "--overwrite"]) == 0


def test_preprocess_overwrite_never_deletes_the_dataset(tmp_path, capsys):
    # --overwrite replaces the --out folder wholesale: with --out at (or above) the dataset it
    # used to delete the raw data and leave only the cache.
    root = _dataset(tmp_path / "data")
    for out in (root, tmp_path):
        argv = ["preprocess", "--data", str(root), "--out", str(out), "--preset", "tiny3d"]
        _user_error(capsys, [*argv, "-q", "--overwrite"], "would delete the dataset")
        assert (root / "dataset.json").is_file()


def test_output_folders_get_the_umask_mode(tmp_path):
    # Staged output folders come from mkdtemp (0700); they must end up like plain new folders.
    old = os.umask(0o022)
    try:
        root = _dataset(tmp_path / "data")
        out = tmp_path / "cache"
        assert (
            main(["preprocess", "--data", str(root), "--out", str(out), "--preset", "tiny3d", "-q"])
            == 0
        )
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        syn = tmp_path / "syn"
        argv = ["synth", "--out", str(syn), "--kind", "covid", "--cases", "1", "--dim", "2", "-q"]
        assert main(argv) == 0
        assert stat.S_IMODE(syn.stat().st_mode) == 0o755
    finally:
        os.umask(old)


def test_missing_and_non_dataset_folders(tmp_path, capsys):
    _user_error(
        capsys,
        ["preprocess", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "c")],
        "not found",
    )
    (tmp_path / "empty").mkdir()
    _user_error(
        capsys,
        ["preprocess", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "c")],
        "unknown dataset layout",
    )
    assert not (tmp_path / "c").exists()


def test_predict_file_and_folder(tmp_path, capsys, checkpoint):
    image, _ = _ct()
    src = tmp_path / "in"
    write_image(image, GEOM, src / "a_0000.nii.gz")
    write_image(image[:, :, ::-1].copy(), GEOM, src / "b_0000.nii.gz")
    out = tmp_path / "mask.nii.gz"
    assert (
        main(
            [
                "predict",
                "-i",
                str(src / "a_0000.nii.gz"),
                "-o",
                str(out),
                "-m",
                str(checkpoint),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    mask, geom = read_image(out)
    assert mask.shape == SHAPE and geom.matches(GEOM, atol=1e-6)
    assert set(np.unique(mask)) <= {0, 1}
    # The run folder also works as -m; folder in -> folder out with the _0000 suffix dropped.
    assert (
        main(
            [
                "predict",
                "-i",
                str(src),
                "-o",
                str(tmp_path / "pred"),
                "-m",
                str(checkpoint.parent),
                "-q",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.nii.gz", "b.nii.gz"]
    np.testing.assert_array_equal(read_image(tmp_path / "pred" / "a.nii.gz")[0], mask)


def test_predict_bad_inputs(tmp_path, capsys, checkpoint):
    m = ["-m", str(checkpoint)]
    out = tmp_path / "out.nii.gz"
    _user_error(
        capsys, ["predict", "-i", str(tmp_path / "missing.nii.gz"), "-o", str(out), *m], "not found"
    )
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage")
    _user_error(capsys, ["predict", "-i", str(bad), "-o", str(out), *m], "cannot read")
    nan = _ct()[0].astype(np.float32)
    nan[0, 0, 0] = np.inf
    write_image(nan, GEOM, tmp_path / "nan.mha")
    _user_error(capsys, ["predict", "-i", str(tmp_path / "nan.mha"), "-o", str(out), *m], "NaN/inf")
    _write_4d(tmp_path / "four.nii.gz")
    _user_error(capsys, ["predict", "-i", str(tmp_path / "four.nii.gz"), "-o", str(out), *m], "4D")
    assert not out.exists()
    write_image(_ct()[0], GEOM, tmp_path / "ok.nii.gz")
    ok = ["predict", "-i", str(tmp_path / "ok.nii.gz"), "-o", str(out)]
    _user_error(capsys, [*ok, "-m", str(tmp_path / "none.ckpt")], "model not found")
    _user_error(capsys, [*ok, "-m", str(bad)], "not an rdcl checkpoint")
    _user_error(capsys, [*ok, "-m", str(tmp_path)], "no checkpoint in run folder")
    _user_error(capsys, [*ok[:-1], str(tmp_path / "out.txt"), *m], "image suffix")
    out.write_bytes(b"precious")
    _user_error(capsys, [*ok, *m], "--overwrite")
    assert out.read_bytes() == b"precious"
    (tmp_path / "empty").mkdir()
    _user_error(
        capsys,
        ["predict", "-i", str(tmp_path / "empty"), "-o", str(tmp_path / "p"), *m],
        "no image files",
    )


def test_config_and_output_errors(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    base = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny3d"]
    _user_error(capsys, [*base, "--set", "train.lr=-1"], "train.lr")
    _user_error(capsys, [*base, "--set", "train.nope=1"], "unknown config key")
    _user_error(capsys, [*base, "--method", "magic"], "train.method")
    _user_error(capsys, [*base[:-1], "tiny2d"], "2D network but the data is 3D")
    _user_error(
        capsys, [*base[:-2], "--config", str(tmp_path / "no.yaml")], "config file not found"
    )
    assert not (tmp_path / "run").exists()
    full = tmp_path / "full"
    (full / "keep.txt").parent.mkdir()
    (full / "keep.txt").write_text("keep")
    _user_error(capsys, ["demo", "--out", str(full)], "--overwrite")
    _user_error(
        capsys, ["synth", "--out", str(full), "--kind", "covid", "--cases", "2"], "--overwrite"
    )
    _user_error(
        capsys,
        ["synth", "--out", str(tmp_path / "s"), "--kind", "covid", "--cases", "0"],
        "--cases",
    )
    assert (full / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "full"]


def test_python_m_rdcl_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rdcl", "predict", "-i", str(tmp_path / "x.nii.gz"), "-o",
         str(tmp_path / "y.nii.gz"), "-m", str(tmp_path / "m.ckpt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"rdcl predict: error: input not found: {tmp_path / 'x.nii.gz'}"
    ]


def test_synth_then_preprocess(tmp_path, capsys):
    data = tmp_path / "covid"
    argv = ["synth", "--out", str(data), "--kind", "covid", "--cases", "2", "--dim", "2"]
    assert main([*argv, "--shape", "64,64", "--test", "1", "-q"]) == 0
    assert len(list((data / "imagesTr").iterdir())) == 2
    assert len(list((data / "imagesTs").iterdir())) == 1
    _user_error(
        capsys,
        [
            "synth",
            "--out",
            str(tmp_path / "x"),
            "--kind",
            "covid",
            "--cases",
            "1",
            "--shape",
            "6,a",
        ],
        "comma-separated integers",
    )
    cache = tmp_path / "cache"
    assert (
        main(["preprocess", "--data", str(data), "--out", str(cache), "--preset", "tiny2d", "-q"])
        == 0
    )
    assert (cache / "stats.json").is_file() and len(list(cache.glob("*.npz"))) == 2


def test_train_bad_dataset_leaves_no_run_folder(tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    _label_values(root)  # found while preprocessing, after the run folder was created
    run = tmp_path / "run"
    argv = ["train", "--data", str(root), "--out", str(run), "--preset", "tiny3d"]
    _user_error(capsys, [*argv, "--method", "baseline", "--device", "cpu", "-q"], "label values")
    assert not run.exists()
    _user_error(capsys, [*argv, "--method", "rdcl"], "non-COVID")
    assert not run.exists()


def test_train_predict_pipeline(tmp_path, capsys):
    """synth -> train (baseline, 1 step) -> predict with the run folder as the model."""
    data, run, pred = tmp_path / "covid", tmp_path / "run", tmp_path / "pred"
    synth = ["synth", "--out", str(data), "--kind", "covid", "--dim", "2", "--shape", "64,64"]
    assert main([*synth, "--cases", "2", "--test", "2", "-q"]) == 0
    train = ["train", "--data", str(data), "--out", str(run), "--preset", "tiny2d"]
    opts = ["--method", "baseline", "--set", "train.steps=1", "--device", "cpu", "-q"]
    assert main([*train, *opts]) == 0
    assert (run / "final.ckpt").is_file() and (run / "config.json").is_file()
    before = (run / "final.ckpt").read_bytes()
    _user_error(capsys, [*train, *opts], "--overwrite")  # the finished run is kept
    assert (run / "final.ckpt").read_bytes() == before
    assert (
        main(["predict", "-i", str(data / "imagesTs"), "-o", str(pred), "-m", str(run), "-q"]) == 0
    )
    names = sorted(p.name for p in pred.iterdir())
    assert names == sorted(p.name for p in (data / "labelsTs").iterdir())
    for name in names:
        mask, geom = read_image(pred / name)
        image, igeom = read_image(data / "imagesTs" / name.replace(".nii.gz", "_0000.nii.gz"))
        assert mask.shape == image.shape and geom.matches(igeom, atol=1e-6)
        assert set(np.unique(mask)) <= {0, 1}
    # evaluate: the labels against themselves score DSC = NSD = 1, HD95 = ASSD = 0 exactly.
    gt = str(data / "labelsTs")
    assert main(["evaluate", "--pred", gt, "--gt", gt]) == 0
    out = capsys.readouterr().out
    assert "DSC: mean 1.0000 +- 0.0000 (n=2)" in out and "HD95_mm: mean 0.0000" in out
    csv = tmp_path / "scores.csv"
    assert main(["evaluate", "--pred", str(pred), "--gt", gt, "--csv", str(csv), "-q"]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "case,dsc,nsd,hd95,assd,missing" and len(lines) == 3
    capsys.readouterr()  # drop the progress bar of the run above
    _user_error(
        capsys, ["evaluate", "--pred", str(pred), "--gt", gt, "--csv", str(csv)], "--overwrite"
    )
    assert csv.read_text().splitlines() == lines


def test_evaluate_bad_inputs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_image(_ct()[1], GEOM, a / "c0.nii.gz")
    shifted = Geometry(spacing=GEOM.spacing, origin=(0.0, 0.0, 0.0), direction=GEOM.direction)
    write_image(_ct()[1], shifted, b / "c0.nii.gz")
    write_image(_ct()[1], GEOM, tmp_path / "zz.nii.gz")
    _user_error(capsys, ["evaluate", "--pred", str(tmp_path / "none"), "--gt", str(b)], "not found")
    _user_error(capsys, ["evaluate", "--pred", str(a), "--gt", str(b)], "geometry")
    _user_error(
        capsys,
        ["evaluate", "--pred", str(tmp_path / "zz.nii.gz"), "--gt", str(b / "c0.nii.gz")],
        "geometry",
    )
    (tmp_path / "c").mkdir()
    write_image(_ct()[1], GEOM, tmp_path / "c" / "other.nii.gz")
    _user_error(
        capsys, ["evaluate", "--pred", str(a), "--gt", str(tmp_path / "c")], "matching case names"
    )
    _user_error(
        capsys, ["evaluate", "--pred", str(a), "--gt", str(a), "--tolerance", "-1"], "--tolerance"
    )


def test_bad_or_unavailable_device_is_a_user_error(tmp_path, capsys, checkpoint, monkeypatch):
    # --device cuda without a GPU (or a typo) used to end in a torch traceback; evaluate --device
    # auto (documented) was refused.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    img = tmp_path / "ok.nii.gz"
    write_image(_ct()[0], GEOM, img)
    out = str(tmp_path / "p.nii.gz")
    for device, match in (("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("foo", "'foo'")):
        argv = ["predict", "-i", str(img), "-o", out, "-m", str(checkpoint), "--device", device]
        _user_error(capsys, argv, match)
        _user_error(
            capsys, ["evaluate", "--pred", str(img), "--gt", str(img), "--device", device], match
        )
    root = _dataset(tmp_path / "data")
    argv = ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--preset", "tiny3d"]
    _user_error(capsys, [*argv, "--method", "baseline", "--device", "cuda", "-q"], "no CUDA GPU")
    assert not (tmp_path / "run").exists()
    assert main(["evaluate", "--pred", str(img), "--gt", str(img), "--device", "auto", "-q"]) == 0


def test_evaluate_bad_tolerance_and_csv_folder(tmp_path, capsys):
    img = tmp_path / "m.nii.gz"
    write_image(_ct()[1], GEOM, img)
    argv = ["evaluate", "--pred", str(img), "--gt", str(img)]
    for tol in ("nan", "inf"):
        _user_error(capsys, [*argv, "--tolerance", tol], "--tolerance")
    (tmp_path / "scores").mkdir()
    _user_error(capsys, [*argv, "--csv", str(tmp_path / "scores"), "--overwrite"], "a folder")


@pytest.mark.parametrize("command", ["train", "preprocess"])
def test_symlink_loop_data_folder_is_one_line(tmp_path, capsys, command):
    """A --data root that is a symlink loop: exit 2, one line naming the loop, nothing made."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    assert main([command, "--data", str(loop), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "symlink loop" in err[0] and "Errno" not in err[0], err
    assert not out.exists()
