"""The incremental telemetry readers: only new bytes are read, unfinished lines wait, bad lines are counted."""

import json

import pytest

from meqg_tui.tail import ReplayTail, TelemetryTail


def line(step, ts=0.0, event="step"):
    return json.dumps({"schema": 1, "ts": ts, "run_id": "r", "step": step, "event": event}) + "\n"


def test_reads_only_what_was_appended_and_waits_for_unfinished_lines(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    tail = TelemetryTail(path)
    assert tail.read() == []  # no file yet: nothing, no error
    path.write_text(line(1) + line(2))
    assert [r["step"] for r in tail.read()] == [1, 2]
    with open(path, "a") as f:
        f.write(line(3)[:20])
    assert tail.read() == [] and tail.pending
    with open(path, "a") as f:
        f.write(line(3)[20:])
    assert [r["step"] for r in tail.read()] == [3] and not tail.pending
    # Overwrite the lines already read with garbage of the same length: a reader that re-parsed
    # the file would now count them as malformed.
    size = path.stat().st_size
    path.write_bytes(b"x" * (size - 1) + b"\n")
    assert tail.read() == [] and tail.malformed == 0


def test_malformed_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    path.write_text(line(1) + "not json\n" + "[1, 2]\n" + '{"step": 2}\n' + "\n" + line(3))
    tail = TelemetryTail(path)
    assert [r["step"] for r in tail.read()] == [1, 3]
    assert tail.malformed == 3


def test_a_replaced_file_is_read_from_the_start(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    path.write_text(line(1) + line(2) + line(3))
    tail = TelemetryTail(path)
    tail.read()
    path.write_text(line(7))
    assert [r["step"] for r in tail.read()] == [7] and tail.restarted


def test_replay_releases_records_at_the_recorded_pace(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    path.write_text("".join(line(step, ts=100.0 + step) for step in range(10)) + line(10, ts=1000.0))
    replay = ReplayTail(path, speed=2.0, max_gap=3.0)
    assert [r["step"] for r in replay.advance(0.0)] == [0]
    assert [r["step"] for r in replay.advance(1.0)] == [1, 2]  # 1 s of wall time = 2 run seconds
    replay.paused = True
    assert replay.advance(10.0) == []
    replay.paused = False
    assert [r["step"] for r in replay.advance(3.5)] == list(range(3, 10))
    assert not replay.done
    assert [r["step"] for r in replay.advance(1.5)] == [10]  # the 891 s gap counts as 3 s
    assert replay.done
    with pytest.raises(ValueError, match="speed"):
        ReplayTail(path, speed=0)
