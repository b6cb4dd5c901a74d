"""What the monitor knows about a run, folded from telemetry records one at a time.

Plain Python and no UI, so it is tested on its own. Fields an older schema lacks
stay None and are shown as n/a; unknown events are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from meqg_mlx.telemetry import step_loss

SERIES = (
    "loss",
    "loss_documents",
    "loss_walks",
    "Delta",
    "S_geo",
    "S_ent",
    "S_mod",
    "phi",
    "accept_rate",
    "retries",
    "trust_radius",
    "kappa",
    "lr",
)
DECISIONS_KEPT = 12
EVENTS_KEPT = 1000


@dataclass
class Decision:
    step: int
    accepted: bool
    failed: str | None
    retries: int | None
    view_size: int | None
    collapse_pressure: float | None
    trust_radius: float | None


@dataclass
class RunState:
    run_id: str | None = None
    step: int = 0
    target: int | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    ended: str | None = None  # finished | interrupted | aborted | failed, from the `run` record
    records: int = 0
    schemas: set = field(default_factory=set)
    series: dict[str, tuple[list[int], list[float | None]]] = field(
        default_factory=lambda: {name: ([], []) for name in SERIES}
    )
    accepted: int = 0
    rejected: int = 0
    unchecked: int = 0
    backtracks: int = 0
    decisions: deque = field(default_factory=lambda: deque(maxlen=DECISIONS_KEPT))
    expert_load: list[float] | None = None
    router_entropy: float | None = None
    rvq: dict | None = None
    regime: str | None = None
    bands: tuple[float, float] | None = None  # Phi's (geometric, breakdown) thresholds, as the run set them
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    events_seen: int = 0
    _recent: deque = field(default_factory=lambda: deque(maxlen=50))  # (ts, step) for steps/s

    def apply(self, record: dict) -> None:
        self.records += 1
        self.schemas.add(record.get("schema"))
        self.run_id = record.get("run_id") or self.run_id
        ts = _number(record.get("ts"))
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        step = record.get("step")
        if isinstance(step, int):
            self.step = max(self.step, step)
        handler = getattr(self, f"_on_{record.get('event')}", None)
        if handler is not None:
            handler(record, step if isinstance(step, int) else self.step)

    def _on_step(self, r: dict, step: int) -> None:
        if self.ended:  # a resumed run is running again
            self.ended = None
        objective = r.get("objective") or {}
        gate = r.get("gate")
        values = {
            "loss": step_loss(r),
            **{
                f"loss_{source}": step_loss(r) if r.get("batch") == source else None
                for source in ("documents", "walks")
            },
            "phi": r.get("phi"),
            "accept_rate": r.get("accept_rate"),
            "kappa": r.get("kappa"),
            "lr": r.get("lr"),
            **{k: objective.get(k) for k in ("Delta", "S_geo", "S_ent", "S_mod")},
            "retries": gate.get("retries") if gate else None,
            "trust_radius": gate.get("trust_radius") if gate else None,
        }
        for name, value in values.items():
            xs, ys = self.series[name]
            xs.append(step)
            ys.append(_number(value))
        if gate is None:
            self.unchecked += 1
        else:
            self._decide(gate, step)
        experts = r.get("experts") or {}
        self.expert_load = experts.get("load", self.expert_load)
        self.router_entropy = _number(experts.get("entropy"))
        self.regime = r.get("regime") or self.regime
        if ts := _number(r.get("ts")):
            self._recent.append((ts, step))

    def _decide(self, gate: dict, step: int) -> None:
        accepted = bool(gate.get("accepted"))
        self.accepted += accepted
        self.rejected += not accepted
        self.backtracks += gate.get("retries") or 0
        self.decisions.append(
            Decision(
                step,
                accepted,
                gate.get("failed"),
                gate.get("retries"),
                gate.get("view_size"),
                _number(gate.get("collapse_pressure")),
                _number(gate.get("trust_radius")),
            )
        )

    def _on_gate(self, r: dict, step: int) -> None:
        gate = r.get("gate") or {}
        self._log(
            (step, "gate", f"rejected: {gate.get('failed') or 'n/a'} after {gate.get('retries', 'n/a')} backtracks")
        )

    def _on_regime(self, r: dict, step: int) -> None:
        self.regime = r.get("regime") or self.regime
        self._log((step, "regime", f"{r.get('regime', 'n/a')} (Phi {_fmt(r.get('phi'), '.3f')})"))

    def _on_recovery(self, r: dict, step: int) -> None:
        detail = r.get("checkpoint") or r.get("skipped") or (f"scale {r['scale']}" if "scale" in r else "")
        self._log(
            (step, "recovery", f"{r.get('action', 'n/a')} lr x{_fmt(r.get('lr_scale'), '.3g')} {detail}".rstrip())
        )

    def _on_checkpoint(self, r: dict, step: int) -> None:
        action = r.get("action", "n/a")
        if action == "started":
            self.target = r.get("config_steps", self.target)
            self.rvq = r.get("rvq", self.rvq)
            bands = r.get("bands") or {}
            if _number(bands.get("geometric")) is not None and _number(bands.get("breakdown")) is not None:
                self.bands = (bands["geometric"], bands["breakdown"])
            text = (
                f"started: {r.get('parameters', 'n/a'):,} parameters"
                if isinstance(r.get("parameters"), int)
                else "started"
            )
        elif action == "saved":
            text = f"saved {str(r.get('path', '')).rsplit('/', 1)[-1]}{'' if r.get('stable', True) else ' (unstable)'}"
        else:
            text = action
        self._log((step, "checkpoint", text))

    def _on_eval(self, r: dict, step: int) -> None:
        self.rvq = r.get("rvq", self.rvq)
        tables = r.get("tables")
        if isinstance(tables, dict):  # per relation: the model's recall@1 and its lead over the best baseline
            versus = r.get("versus") if isinstance(r.get("versus"), dict) else {}
            parts = []
            for relation, table in tables.items():
                model = table.get("model") if isinstance(table, dict) else None
                if not isinstance(model, dict):
                    continue
                lead = versus.get(relation)
                text = f"{relation} r@1 {_fmt(model.get('recall@1'), '.3f')}"
                if isinstance(lead, dict):
                    text += f" ({_fmt(lead.get('recall@1'), '+.3f')} vs {lead.get('baseline')})"
                parts.append(text)
        else:  # runs from before the per-relation tables: every method of one table
            parts = [
                f"{name} l2 {_fmt(m.get('l2'), '.3f')} r@1 {_fmt(m.get('recall@1'), '.3f')} "
                f"r@10 {_fmt(m.get('recall@10'), '.3f')}"
                for name, m in (r.get("metrics") or {}).items()
                if isinstance(m, dict)
            ]
        self._log((step, "eval", " | ".join(parts) or "n/a"))

    def _on_run(self, r: dict, step: int) -> None:
        self.ended = r.get("status", "finished")
        self.target = r.get("target", self.target)
        self._log((step, "run", f"{self.ended} at step {step}"))

    def _log(self, event: tuple[int, str, str]) -> None:
        self.events.append(event)
        self.events_seen += 1

    def new_events(self, seen: int) -> list[tuple[int, str, str]]:
        """The events logged after the first `seen` (as many as are still kept)."""
        fresh = min(self.events_seen - seen, len(self.events))
        return list(self.events)[len(self.events) - fresh :] if fresh > 0 else []

    def status(self, now: float | None, stall_after: float) -> str:
        """running | finished (or how it ended) | stalled (no record for `stall_after` s) | waiting."""
        if self.ended:
            return self.ended
        if self.last_ts is None:
            return "waiting"
        if now is not None and now - self.last_ts > stall_after:
            return "stalled"
        return "running"

    def elapsed(self, now: float | None, stall_after: float) -> float | None:
        """Seconds from the first record to now while running, else to the last record."""
        if self.first_ts is None:
            return None
        end = now if self.status(now, stall_after) == "running" and now is not None else self.last_ts
        return max(end - self.first_ts, 0.0)

    def steps_per_second(self) -> float | None:
        if len(self._recent) < 2:
            return None
        (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value, spec: str) -> str:
    number = _number(value)
    return "n/a" if number is None else format(number, spec)
