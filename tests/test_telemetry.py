import pytest

from meqg_mlx.telemetry import SCHEMA_VERSION, TelemetryWriter, read_telemetry


def test_records_are_flushed_per_event_and_read_back(tmp_path):
    writer = TelemetryWriter(tmp_path / "run", "r1")
    writer.emit("step", 1, objective={"Delta": 1.5, "S_mod": float("nan")}, experts={"load": [3, 1]})
    # flushed: visible to another reader before close
    records, bad = read_telemetry(tmp_path / "run" / "telemetry.jsonl")
    assert bad == 0 and records[0]["schema"] == SCHEMA_VERSION and records[0]["run_id"] == "r1"
    assert records[0]["objective"] == {"Delta": 1.5, "S_mod": None}
    with open(tmp_path / "run" / "telemetry.jsonl", "a") as handle:
        handle.write('{"event": "step", "step": 2, "objective": {"Del')  # a torn last line
    writer.close()
    resumed = TelemetryWriter(tmp_path / "run", "r1")  # a resumed run appends after the torn line
    resumed.emit("checkpoint", 3, path="ckpt")
    resumed.close()
    records, bad = read_telemetry(tmp_path / "run" / "telemetry.jsonl")
    assert bad == 1 and [r["event"] for r in records] == ["step", "checkpoint"]


def test_unknown_event_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown telemetry event"):
        TelemetryWriter(tmp_path, "r").emit("party", 0)
