"""An episode's budget (docs/design.md, Episode): wall seconds, analytic FLOPs and bytes of state it may hold.

The meter refuses a step *before* it is taken when the step would overrun a limit, so
the FLOP count never exceeds max_flops and an episode ends within its seconds plus its
longest unit of work (an encode, a tool call, a step, the inversion pass), which the
meter measures and reports. A meter given a `cancelled` event (set when the client that
asked has gone: `meqg serve`) refuses every later step, with stopped_by "cancelled".
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import InputError

LIMITS = ("seconds", "max_flops", "max_kv_bytes")


@dataclass
class Budget:
    seconds: float = 2.0
    max_flops: float = 3e11
    max_kv_bytes: float = 128 * 2**20

    def __post_init__(self):
        for name in LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"budget {name} must be a positive finite number, got {value!r}")

    @classmethod
    def from_dict(cls, data: object) -> "Budget":
        if not isinstance(data, dict):
            raise InputError(f"budget must be an object with {', '.join(LIMITS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(LIMITS))
        if unknown:
            raise InputError(f"unknown budget key '{unknown[0]}' (known: {', '.join(LIMITS)})")
        return cls(**data)


@dataclass
class BudgetMeter:
    budget: Budget
    flops: float = 0.0
    kv_bytes: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stopped_by: str | None = None
    longest: float = 0.0  # seconds of the longest unit of work so far
    cancelled: threading.Event | None = None

    @contextmanager
    def unit(self) -> Iterator[None]:
        """Time one unit of the episode's work (what the episode may overrun its seconds by)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.note(time.perf_counter() - started)

    def note(self, seconds: float) -> None:
        self.longest = max(self.longest, seconds)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def refuse(self, flops: float, kv_bytes: float, seconds: float) -> str | None:
        """The limit a step costing this much would overrun (None: it fits); remembered as stopped_by."""
        b = self.budget
        for name, over in (
            ("cancelled", self.cancelled is not None and self.cancelled.is_set()),
            ("max_flops", self.flops + flops > b.max_flops),
            ("max_kv_bytes", kv_bytes > b.max_kv_bytes),
            ("seconds", self.seconds + seconds > b.seconds),
        ):
            if over:
                self.stopped_by = name
                return name
        return None

    def charge(self, flops: float, kv_bytes: float) -> None:
        self.flops += flops
        self.kv_bytes = max(self.kv_bytes, kv_bytes)

    def report(self) -> dict:
        b = self.budget
        return {
            "seconds": self.seconds,
            "flops": self.flops,
            "kv_bytes": self.kv_bytes,
            "limits": {"seconds": b.seconds, "max_flops": b.max_flops, "max_kv_bytes": b.max_kv_bytes},
            "stopped_by": self.stopped_by,
            "longest_unit_seconds": self.longest,
        }
