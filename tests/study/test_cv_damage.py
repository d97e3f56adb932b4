"""``rdcl cv`` notices damage before it writes (issue 18, item 5: a truncated final.ckpt of a
finished unit went unnoticed and the tables were rewritten, exit 0; a truncated case failed
inside a fold after 18 s leaving a partial study; a missing --launcher was found after the study
folder was written)."""

from __future__ import annotations

import shutil

import pytest

from rdcl.cli import main

TINY = [
    "--preset", "tiny2d", "--set", "train.steps=2", "--set", "train.pretrain_steps=2",
    "--set", "train.device=cpu", "--set", "data.patch_size=[32,32]",
]  # fmt: skip


@pytest.fixture(scope="module")
def covid(tmp_path_factory):
    from rdcl.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("cvdamage")
    synthesize_dataset(root / "covid", kind="covid", n_cases=4, dim=2, shape=(40, 40), seed=0)
    return root / "covid"


def _argv(data, out, *extra):
    return ["cv", "-q", "--data", str(data), "--out", str(out), "--folds", "2",
            "--train-per-fold", "2", "--methods", "baseline", *TINY, *extra]  # fmt: skip


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rdcl cv: error: "), err
    return err[0]


def test_truncated_case_is_refused_before_the_study_is_written(tmp_path, capsys, covid):
    data = tmp_path / "covid"
    shutil.copytree(covid, data)
    label = sorted((data / "labelsTr").iterdir())[-1]
    label.write_bytes(label.read_bytes()[:100])
    out = tmp_path / "cv"
    assert main(_argv(data, out)) == 2
    assert label.name in _one_line(capsys)
    assert not out.exists()


def test_missing_launcher_is_refused_before_the_study_is_written(tmp_path, capsys, covid):
    out = tmp_path / "cv"
    assert main(_argv(covid, out, "--launcher", "no-such-launcher --nproc_per_node=2")) == 2
    assert "no-such-launcher" in _one_line(capsys)
    assert not out.exists()


@pytest.mark.slow
def test_truncated_checkpoint_of_a_finished_unit_is_refused(tmp_path, capsys, monkeypatch, covid):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cv"
    assert main(_argv(covid, out, "--fold", "1")) == 0
    final = out / "runs" / "baseline" / "fold_1" / "final.ckpt"
    tables = (out / "results.md").stat().st_mtime_ns
    final.write_bytes(final.read_bytes()[:1000])
    capsys.readouterr()
    for extra in (["--fold", "1"], ["--report-only"]):
        assert main(_argv(covid, out, *extra)) == 2
        line = _one_line(capsys)
        assert "baseline fold 1" in line and "damaged" in line
    assert (out / "results.md").stat().st_mtime_ns == tables  # the tables are not rewritten
