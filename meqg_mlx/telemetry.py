"""RUN_DIR/telemetry.jsonl: one schema-versioned JSON object per line, flushed per event.

The TUI tails this file and never imports training code, so everything it shows
must be in these records.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

SCHEMA_VERSION = 1
EVENTS = ("step", "gate", "regime", "recovery", "checkpoint", "episode", "eval", "run")


def json_safe(value):
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class TelemetryWriter:
    def __init__(self, run_dir: str | Path, run_id: str):
        self.path = Path(run_dir) / "telemetry.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        self._file = open(self.path, "a", encoding="utf-8")
        if torn:  # a crash cut the last line: keep it malformed on its own, not glued to ours
            self._file.write("\n")

    def emit(self, event: str, step: int, **fields) -> dict:
        if event not in EVENTS:
            raise ValueError(f"unknown telemetry event {event!r}")
        record = {"schema": SCHEMA_VERSION, "ts": time.time(), "run_id": self.run_id, "step": step,
                  "event": event, **json_safe(fields)}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        self._file.close()


def read_telemetry(path: str | Path) -> tuple[list[dict], int]:
    """All well-formed records and the number of malformed lines (a torn last line counts)."""
    records, bad = [], 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
        else:
            bad += 1
    return records, bad
