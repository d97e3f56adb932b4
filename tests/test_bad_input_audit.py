"""One line on bad input (issue 18, item 5), the cases an audit of every subcommand still found:
a traceback (``cv --launcher`` with an unbalanced quote, ``download --mirror`` without a URL
scheme), a progress or log line above the error (``evaluate --csv`` into a missing folder,
found after scoring; ``demo --seed -1``), a check made only inside a fold after the study folder
was written (``cv --device``, ``cv --general`` of another dimensionality), a message listing
half the choices (``prepare``) and an option ignored in silence (``train --pretrained`` with
``baseline``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdcl.cli import main

TINY = [
    "--preset", "tiny2d", "--set", "train.steps=2", "--set", "train.device=cpu",
    "--set", "data.patch_size=[32,32]",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("audit")
    synthesize_dataset(root / "c2", kind="covid", n_cases=2, dim=2, shape=(40, 40), seed=0)
    synthesize_dataset(root / "c3", kind="tumour", n_cases=2, dim=3, shape=(8, 32, 32), seed=0)
    return {"c2": root / "c2", "c3": root / "c3"}


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rdcl {command}: error: "), err
    return err[0]


def _cv(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["cv", "-q", "--data", str(data["c2"]), "--out", str(out), "--folds", "2",
            "--train-per-fold", "1", "--methods", "baseline", *TINY, *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--launcher", 'torchrun "--nproc_per_node=2'], "cannot be split into words"),
        (["--device", "bogus"], "train.device: expected a device"),
        (["--general", "C3"], "is 3D but --data"),
    ],
    ids=["unbalanced_quote", "bad_device", "general_of_other_dim"],
)
def test_cv_refuses_before_the_study_folder_is_written(tmp_path, capsys, data, extra, message):
    extra = [str(data["c3"]) if a == "C3" else a for a in extra]
    out = tmp_path / "cv"
    assert main(_cv(data, out, *extra)) == 2
    assert message in _one_line(capsys, "cv")
    assert not out.exists()


def test_cv_report_only_does_not_need_the_training_device(tmp_path, capsys, data):
    out = tmp_path / "cv"
    assert main(_cv(data, out, "--report-only", "--device", "cuda:7")) == 0  # trains nothing
    assert (out / "report.md").is_file()


def test_evaluate_checks_the_csv_folder_before_scoring(tmp_path, capsys, data):
    labels = data["c2"] / "labelsTr"
    (tmp_path / "a_file").write_text("")
    csv = tmp_path / "a_file" / "sub" / "scores.csv"
    assert main(["evaluate", "--pred", str(labels), "--gt", str(labels), "--csv", str(csv)]) == 2
    line = _one_line(capsys, "evaluate")  # no progress line of the scoring above it
    assert "cannot be made" in line and str(tmp_path / "a_file") in line
    # a missing folder is still made, as before
    csv = tmp_path / "new" / "sub" / "scores.csv"
    assert main(["evaluate", "-q", "--pred", str(labels), "--gt", str(labels), "--csv",
                 str(csv)]) == 0  # fmt: skip
    assert csv.is_file()


@pytest.mark.parametrize("mirror", ["notaurl", "http:/host", "ftp://"])
def test_download_mirror_must_be_a_url(tmp_path, capsys, mirror):
    out = tmp_path / "dl"
    assert main(["download", "covid19-ct-seg", "--out", str(out), "--mirror", mirror]) == 2
    assert "--mirror: expected a URL" in _one_line(capsys, "download")
    assert not out.exists()


def test_prepare_names_every_layout(tmp_path, capsys, data):
    assert main(["prepare", "bogus", "--src", str(data["c2"]), "--out", str(tmp_path / "p")]) == 2
    line = _one_line(capsys, "prepare")
    for layout in ("covid19-ct-seg", "msd-lung", "nsclc-effusion", "msd-patches", "slices",
                   "native"):  # fmt: skip
        assert repr(layout) in line


def test_demo_refuses_a_negative_seed_before_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out), "--seed", "-1"]) == 2  # not -q: no log line
    assert "seed must be an integer >= 0" in _one_line(capsys, "demo")
    assert not out.exists()


def test_train_refuses_pretrained_for_a_method_from_scratch(tmp_path, capsys, data):
    ckpt = tmp_path / "g.ckpt"
    ckpt.write_bytes(b"unused: refused before it is read")
    out = tmp_path / "run"
    argv = ["train", "-q", "--data", str(data["c2"]), "--out", str(out), *TINY,
            "--method", "baseline", "--pretrained", str(ckpt)]  # fmt: skip
    assert main(argv) == 2
    assert "method 'baseline' does not use" in _one_line(capsys, "train")
    assert not out.exists()
