"""The Python API does what the command line does (issue 12, item 3): the checks and the cleanup
``rdcl train``/``predict``/``export``/``evaluate`` rely on live in the library, so calling
``run_training``, ``run_pretraining``, ``Predictor.from_checkpoint`` and the metrics module gives
the same refusals, lookups and tables as the commands."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from _training_fakes import tiny_cfg

from rdcl.cli import main
from rdcl.config import ConfigError, preset
from rdcl.data import DatasetError
from rdcl.data.io import Geometry, is_dicom_folder, write_image
from rdcl.errors import RdclInputError
from rdcl.formats.checkpoint import FORMAT, CheckpointError, save_checkpoint
from rdcl.formats.run_folder import FINAL, LAST
from rdcl.inference import Predictor
from rdcl.metrics.evaluate import COLUMNS, METRICS, format_results, metric_labels
from rdcl.model import build_network
from rdcl.training import find_checkpoint, run_pretraining, run_training
from rdcl.training import stages as stages_module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 2D COVID set and a 3D non-COVID set (two tiny cases each)."""
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("parity")
    covid = synthesize_dataset(root / "covid2d", kind="covid", n_cases=2, dim=2, shape=(64, 64))
    general = synthesize_dataset(
        root / "general3d", kind="tumour", n_cases=2, dim=3, shape=(8, 32, 32), seed=1
    )
    return Path(covid), Path(general)


def _cfg(method: str = "baseline"):
    return tiny_cfg(method, steps=2, checkpoint_every=1)


# -- run_training / run_pretraining refuse what rdcl train refuses -----------------------------


def test_run_training_refuses_general_data_of_another_dimensionality(tmp_path, data):
    covid, general = data
    run = tmp_path / "run"
    want = f"--general {general} is 3D but --data {covid} is 2D"
    with pytest.raises(DatasetError, match=want):
        run_training(_cfg("rdcl"), covid, [general], run, progress=False)
    assert not run.exists()
    with pytest.raises(DatasetError, match=f"--general {general} is 3D but --data {covid} is 2D"):
        run_pretraining(_cfg(), [general], run, covid=covid, progress=False)
    with pytest.raises(DatasetError, match=f"--general {general} is 3D but --general {covid}"):
        run_pretraining(_cfg(), [covid, general], run, progress=False)
    assert not run.exists()


def test_cli_train_gives_the_api_error_for_mixed_dimensionality(tmp_path, data, capsys):
    covid, general = data
    run = tmp_path / "run"
    argv = ["train", "--data", str(covid), "--general", str(general), "--out", str(run),
            "--preset", "tiny2d", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rdcl train: error: --general {general} is 3D but --data {covid} is 2D"]
    assert not run.exists()


def test_run_training_refuses_a_config_of_another_dimensionality(tmp_path, data):
    covid, _ = data
    cfg = dataclasses.replace(preset("tiny3d"), train=_cfg().train)
    with pytest.raises(ConfigError, match=r"3D network but the data is 2D; choose a 2D config"):
        run_training(cfg, covid, None, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_run_training_refuses_a_stage1_checkpoint_for_a_method_from_scratch(tmp_path, data):
    covid, _ = data
    ckpt = tmp_path / "g.ckpt"
    ckpt.write_bytes(b"refused before it is read")
    run = tmp_path / "run"
    want = "--pretrained gives a stage-1 G, which method 'baseline' does not use"
    with pytest.raises(RdclInputError, match=want):
        run_training(_cfg("baseline"), covid, None, run, pretrained=ckpt, progress=False)
    with pytest.raises(RdclInputError, match=want):
        stages_module.train(_cfg("baseline"), covid, None, run, pretrained=ckpt, progress=False)
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_run_training_refuses_a_missing_gpu_before_any_work(tmp_path, data):
    covid, _ = data
    cfg = _cfg()
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, device="cuda"))
    with pytest.raises(ConfigError, match=r"train\.device: .*no CUDA GPU"):
        run_training(cfg, covid, None, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def _fail_in_preprocessing(monkeypatch):
    def broken(*a, **k):
        raise OSError(40, "Too many levels of symbolic links")

    monkeypatch.setattr(stages_module, "as_cached", broken)


def test_failed_fresh_run_removes_its_folder(tmp_path, monkeypatch, data):
    """What the CLI did after a failed run is the library's: the folder it created goes again,
    an empty folder it was given is emptied, a folder that held files is left alone."""
    covid, _ = data
    _fail_in_preprocessing(monkeypatch)
    run = tmp_path / "fresh"
    with pytest.raises(OSError, match="symbolic links"):
        run_training(_cfg(), covid, None, run, progress=False)
    assert not run.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="symbolic links"):
        run_training(_cfg(), covid, None, empty, progress=False)
    assert empty.is_dir() and not any(empty.iterdir())
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match="symbolic links"):
        run_training(_cfg(), covid, None, kept, progress=False)
    assert (kept / "notes.txt").read_text() == "mine"


def test_failed_fresh_pretraining_removes_its_folder(tmp_path, monkeypatch, data):
    from rdcl.training import stages

    covid, _ = data

    def broken(*a, **k):
        raise OSError(40, "Too many levels of symbolic links")

    monkeypatch.setattr(stages, "as_cached", broken)
    run = tmp_path / "stage1"
    with pytest.raises(OSError, match="symbolic links"):
        run_pretraining(_cfg(), [covid], run, progress=False)
    assert not run.exists()


# -- checkpoint lookup: Predictor.from_checkpoint takes a run folder as rdcl predict -m does ----


def _save(path: Path, cfg, seed: int) -> None:
    torch.manual_seed(seed)
    net = build_network(cfg.model, kind="single")
    save_checkpoint(
        path,
        {"format": FORMAT, "config": cfg.to_dict(), "kind": "single", "stage": "train",
         "step": seed, "model": net.state_dict()},
    )  # fmt: skip


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_from_checkpoint_takes_a_run_folder(tmp_path):
    cfg = preset("tiny2d")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(
        CheckpointError, match=f"no checkpoint in run folder {run}: expected {FINAL}$"
    ):
        Predictor.from_checkpoint(run, device="cpu")
    _save(run / LAST, cfg, seed=1)
    with pytest.raises(CheckpointError, match=f"the run has not finished, pass {run / LAST}"):
        Predictor.from_checkpoint(run, device="cpu")
    _save(run / FINAL, cfg, seed=2)
    assert find_checkpoint(run) == run / FINAL
    assert find_checkpoint(run / LAST) == run / LAST
    from_run = Predictor.from_checkpoint(run, device="cpu")
    assert _same_weights(from_run.network, Predictor.from_checkpoint(run / FINAL).network)
    assert not _same_weights(from_run.network, Predictor.from_checkpoint(run / LAST).network)


def test_find_checkpoint_names_what_it_looks_for(tmp_path):
    with pytest.raises(CheckpointError, match=r"^model not found: "):
        find_checkpoint(tmp_path / "none.ckpt", what="model")
    with pytest.raises(CheckpointError, match=r"^checkpoint not found: "):
        Predictor.from_checkpoint(tmp_path / "none.ckpt")


# -- DICOM folder detection ----------------------------------------------------------------------


def test_is_dicom_folder(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    for i in range(2):
        (series / f"IM{i:04d}").write_bytes(b"\0" * 132)
    (series / "slice.dcm").write_bytes(b"\0" * 132)
    assert is_dicom_folder(series)
    images = tmp_path / "images"
    images.mkdir()
    write_image(torch.zeros(4, 4).numpy(), Geometry.default(2), images / "a.nii.gz")
    (images / "README").write_text("a folder of images, not a series")
    assert not is_dicom_folder(images)
    assert not is_dicom_folder(images / "a.nii.gz")
    assert not is_dicom_folder(tmp_path / "missing")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("x")
    assert not is_dicom_folder(notes)


# -- the evaluate table takes its columns from the metrics module ------------------------------


def test_evaluate_table_columns_come_from_the_metrics_module():
    assert COLUMNS == ("case", *METRICS)
    rows = [
        {"case": "a", "dsc": 0.5, "nsd": 0.25, "hd95": 2.0, "assd": 1.0},
        {"case": "b", "dsc": 1.0, "nsd": 0.75, "hd95": math.inf, "assd": 3.0, "missing": True},
    ]
    lines = format_results(rows, tolerance_mm=2.0).splitlines()
    labels = metric_labels(2.0)
    assert list(labels) == list(METRICS)
    assert lines[0].split("\t") == ["case", "DSC", "NSD@2mm", "HD95_mm", "ASSD_mm"]
    assert lines[1] == "a\t0.5000\t0.2500\t2.0000\t1.0000"
    assert lines[2].endswith("\tno prediction: scored as an empty mask")
    assert lines[3] == "DSC: mean 0.7500 +- 0.2500 (n=2)"
    assert lines[5] == "HD95_mm: mean 2.0000 +- 0.0000 (n=1, 1 infinite left out)"
    assert lines[-1].startswith("1 of 2 cases had no prediction")


# -- intensity convention of a single file: predict_file as rdcl predict -i FILE ----------------


class _Threshold(torch.nn.Module):
    """Logits = normalised intensity - 0.5: with a (0, 100) training window the mask is v > 50."""

    def forward(self, x):
        return [x - 0.5]


def test_predict_file_uses_a_published_files_own_convention(tmp_path):
    """A coronacases_org_* volume is HU whatever the training data were: predict_file applies
    its window as rdcl predict (and predict_folder) do; an explicit window still wins."""
    import numpy as np

    from rdcl.data.io import read_image

    cfg = preset("tiny3d")
    data = dataclasses.replace(
        cfg.data, normalization="window", window=(0.0, 100.0), target_spacing=None
    )
    pred = Predictor(_Threshold(), config=cfg.replace(data=data), intensity=None, device="cpu")
    image = np.random.default_rng(0).uniform(0, 100, size=(4, 16, 16)).astype(np.float32)
    geom = Geometry.default(3)
    src = tmp_path / "coronacases_org_001.nii.gz"
    write_image(image, geom, src)
    own = read_image(pred.predict_file(src, tmp_path / "own.nii.gz"))[0]
    hu = pred.predict_array(image, geom, window=(-1250.0, 250.0))
    training = pred.predict_array(image, geom)
    np.testing.assert_array_equal(own, hu)
    assert not np.array_equal(own, training)  # (v + 1250) / 15 > 50 for every v >= 0
    given = pred.predict_file(src, tmp_path / "given.nii.gz", window=(0.0, 100.0))
    np.testing.assert_array_equal(read_image(given)[0], training)


def test_evaluate_folders_checks_its_arguments_before_any_work(tmp_path):
    """The checks rdcl evaluate made on --tolerance and --csv are evaluate_folders'."""
    from rdcl.errors import RdclInputError
    from rdcl.metrics.evaluate import evaluate_folders

    empty = tmp_path / "none"  # never read: the arguments are refused first
    for tau in (-1.0, math.nan, math.inf):
        with pytest.raises(RdclInputError, match="must be a finite distance >= 0 mm"):
            evaluate_folders(empty, empty, tolerance_mm=tau)
    with pytest.raises(IsADirectoryError, match="must be a file path, found a folder"):
        evaluate_folders(empty, empty, csv_path=tmp_path)
    (tmp_path / "s.csv").write_text("x")
    with pytest.raises(FileExistsError, match="CSV exists"):
        evaluate_folders(empty, empty, csv_path=tmp_path / "s.csv")
