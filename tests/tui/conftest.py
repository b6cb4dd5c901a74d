"""Telemetry recorded from a real `meqg train` run (tests/data/telemetry/gated-run.yaml on the small
test store, learning rate 0.5 so the gate rejects some steps, regime bands low enough to see recovery)."""

import json
import shutil
from pathlib import Path

import pytest

RECORDED = Path(__file__).parents[1] / "data" / "telemetry" / "gated-run.jsonl"


@pytest.fixture
def recorded_records() -> list[dict]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines()]


@pytest.fixture
def recorded_run(tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(RECORDED, run / "telemetry.jsonl")
    return run
