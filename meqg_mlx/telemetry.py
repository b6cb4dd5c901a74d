"""The telemetry vocabulary and RUN/telemetry.jsonl: one JSON object per line, flushed per event.

The events, the fields each may carry and the rule for a valid line are defined here
once; the writer, `read_telemetry`, the monitor's tail and the CLI's progress line all
use them (docs/design.md, Telemetry). Bottom layer: importing it loads no MLX, so the
monitor can.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .atomic import write_bytes
from .runs import RunDir

SCHEMA_VERSION = 2  # 2: step records carry `loss`; the started record carries the regime `bands`

EVENTS: dict[str, frozenset[str]] = {  # event -> the fields its records may carry
    "step": frozenset(
        {
            "loss",
            "batch",
            "objective",
            "terms",
            "gate",
            "lr",
            "lr_scale",
            "experts",
            "throughput",
            "accept_rate",
            "forwards",
            "phi",
            "kappa",
            "regime",
            "tokens_per_s",
            "seconds",
        }
    ),
    "gate": frozenset({"gate"}),
    "regime": frozenset({"regime", "phi"}),
    "recovery": frozenset({"action", "phi", "lr_scale", "checkpoint", "skipped", "scale"}),
    "checkpoint": frozenset(
        {"action", "path", "stable", "parameters", "rvq", "config_steps", "bands", "superseded", "discarded"}
    ),
    "eval": frozenset(
        {"metrics", "tables", "versus", "candidates", "rvq", "train_loss", "held_out_loss", "held_out_token_accuracy"}
    ),
    "run": frozenset({"status", "accepted", "target", "seconds"}),
}
RUN_STATUSES = ("finished", "interrupted", "aborted", "failed")


def json_safe(value):
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def parse_line(line: bytes | str) -> dict | None:
    """The record a line holds, or None when it is not one: a valid line is a JSON object whose
    `event` is a string (events this version does not know are kept; readers skip them)."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("event"), str) else None


def step_loss(record: dict) -> float | None:
    """A step record's loss: its `loss` field, or (schema 1 training records) distance + contrastive."""
    loss = record.get("loss")
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    terms = record.get("terms") or {}
    parts = [terms.get("distance"), terms.get("contrastive")]
    if all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
        return float(parts[0] + parts[1])
    return None


class TelemetryWriter:
    def __init__(self, run: RunDir | str | Path, run_id: str, resume_step: int | None = None):
        """Appends to the run's telemetry; with `resume_step`, records of later steps (written after
        the checkpoint being resumed, then undone by a crash) are cut first, so each step is there once."""
        self.path = RunDir(run).telemetry_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.superseded = self._cut_after(resume_step) if resume_step is not None else 0
        torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        self._file = open(self.path, "a", encoding="utf-8")
        if torn:  # a crash cut the last line: keep it malformed on its own, not glued to ours
            self._file.write("\n")

    def _cut_after(self, step: int) -> int:
        """Drop the lines after the last record of step <= `step` (atomically); returns how many went."""
        if not self.path.exists():
            return 0
        lines = self.path.read_bytes().splitlines(keepends=True)
        kept = 0
        for number, line in enumerate(lines, 1):
            record = parse_line(line)
            if record is not None and isinstance(record.get("step"), int) and record["step"] > step:
                break
            if record is not None:
                kept = number
        if kept < len(lines):
            replaced = b"".join(lines[:kept])
            write_bytes(self.path, replaced if replaced.endswith(b"\n") or not replaced else replaced + b"\n")
        return len(lines) - kept

    def emit(self, event: str, step: int, **fields) -> dict:
        if event not in EVENTS:
            raise ValueError(f"unknown telemetry event {event!r} (known: {', '.join(EVENTS)})")
        unknown = sorted(set(fields) - EVENTS[event])
        if unknown:
            raise ValueError(f"telemetry event {event!r} has no field {unknown[0]!r}")
        record = {
            "schema": SCHEMA_VERSION,
            "ts": time.time(),
            "run_id": self.run_id,
            "step": step,
            "event": event,
            **json_safe(fields),
        }
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        self._file.close()


def parse_lines(lines) -> tuple[list[dict], int]:
    """The records among `lines` and how many lines were not records (blank lines are neither)."""
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        record = parse_line(line)
        if record is None:
            bad += 1
        else:
            records.append(record)
    return records, bad


def read_telemetry(path: str | Path) -> tuple[list[dict], int]:
    """All valid records and the number of lines that are not (a torn last line counts)."""
    return parse_lines(Path(path).read_bytes().splitlines())


LIVE_SECONDS = 120.0  # a run with no end record whose telemetry changed this recently is still training


def run_overview(run: RunDir) -> dict:
    """One run at a glance (`meqg runs`), from its run.json, telemetry and directories: id, status,
    step, store, parameters, the last validation (per relation: model recall@1, the best baseline's,
    their difference), whether it has an inverter, and when it last changed."""
    meta = run.read_meta()
    records = read_telemetry(run.telemetry_path)[0] if run.telemetry_path.is_file() else []
    changed = max(p.stat().st_mtime for p in (run.meta_path, run.telemetry_path) if p.exists())
    steps = [r for r in records if r.get("event") == "step"]
    started = [r for r in records if r.get("event") == "checkpoint" and r.get("action") == "started"]
    ended = records[-1].get("status") if records and records[-1].get("event") == "run" else None
    status = ended or ("running" if time.time() - changed < LIVE_SECONDS else "unfinished")  # no end record
    evals = [r for r in records if r.get("event") == "eval" and r.get("versus")]
    validation = {}
    if evals:
        last = evals[-1]
        for relation, versus in last["versus"].items():
            validation[relation] = {
                "step": last["step"],
                "model": last["tables"][relation]["model"]["recall@1"],
                "baseline": versus["baseline"],
                "baseline_recall@1": last["tables"][relation][versus["baseline"]]["recall@1"],
                "difference": versus["recall@1"],
                "low": versus["low"],
                "high": versus["high"],
            }
    return {
        "run": str(run.path),
        "run_id": meta.get("run_id"),
        "status": status,
        "step": steps[-1]["step"] if steps else 0,
        "store": meta.get("store"),
        "parameters": started[0].get("parameters") if started else None,
        "validation": validation,
        "inverter": run.inverter.model_dir.exists(),
        "modified": changed,
    }


def validation_line(validation: dict) -> str:
    """`next` (else the first relation): the model's recall@1 beside the best baseline's, and how many more."""
    if not validation:
        return "-"
    relation = "next" if "next" in validation else next(iter(validation))
    v = validation[relation]
    more = f" (+{len(validation) - 1} relations)" if len(validation) > 1 else ""
    return f"{relation} {v['model']:.3f} vs {v['baseline']} {v['baseline_recall@1']:.3f} ({v['difference']:+.3f}){more}"
