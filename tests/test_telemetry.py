import pytest

from meqg_mlx.telemetry import SCHEMA_VERSION, TelemetryWriter, read_telemetry, step_loss


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


def test_a_steps_loss_is_its_own_field_else_the_schema_1_sum():
    assert step_loss({"loss": 5.25, "terms": {"distance": 1.0, "contrastive": 2.0}}) == 5.25
    assert step_loss({"terms": {"distance": 1.0, "contrastive": 2.5}}) == 3.5  # schema 1 wrote no loss
    assert step_loss({"loss": True, "terms": {"distance": 1.0}}) is None
    assert step_loss({"terms": {"distance": "x", "contrastive": 1.0}}) is None and step_loss({}) is None
