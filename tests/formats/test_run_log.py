from __future__ import annotations

import json

from rdcl.formats.run_log import LOG_KEYS, JsonlLog, read_log


def test_log_writes_ordered_records_and_nulls(tmp_path):
    p = tmp_path / "log.jsonl"
    with JsonlLog(p) as log:
        log.write({"step": 1, "stage": "train", "loss": 0.5, "seg": 0.5})
        log.write({"step": 2, "stage": "train", "loss": 0.25, "seg": 0.25})
    lines = p.read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert tuple(rec) == LOG_KEYS
    assert rec["loss"] == 0.5 and rec["d_g"] is None
    assert [r["step"] for r in read_log(p)] == [1, 2]


def test_resume_drops_lines_past_checkpoint_and_torn_line(tmp_path):
    p = tmp_path / "log.jsonl"
    with JsonlLog(p) as log:
        for s in range(1, 6):
            log.write({"step": s, "loss": float(s)})
    with p.open("a") as fh:
        fh.write('{"step": 6, "lo')  # killed mid-write
    with JsonlLog(p, keep_until=3) as log:
        log.write({"step": 4, "loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_log(p)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
    ]


def test_new_log_replaces_old(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 1}\n')
    JsonlLog(p).close()
    assert p.read_text() == ""
