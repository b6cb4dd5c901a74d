"""Incremental readers of RUN_DIR/telemetry.jsonl: live (tail -f) and replay (at a chosen speed).

Each call reads only the bytes appended since the last one, so a tick costs what is
new, never the whole file. A line without its newline yet is kept back until the
writer finishes it; lines that are not records (`meqg_mlx.telemetry.parse_line`) are counted.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from meqg_mlx.telemetry import parse_lines

CHUNK_BYTES = 1 << 22  # per read: a long finished run is taken in over a few ticks, the UI stays responsive


class TelemetryTail:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.malformed = 0
        self.restarted = False  # the file shrank (replaced or truncated): readers start over
        self._partial = b""

    @property
    def pending(self) -> bool:
        """Whether an unfinished last line is waiting (a torn line once the writer is gone)."""
        return bool(self._partial)

    def read(self, max_bytes: int = CHUNK_BYTES) -> list[dict]:
        """The records appended since the last call (at most `max_bytes` of them)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        self.restarted = size < self.offset
        if self.restarted:
            self.offset, self._partial, self.malformed = 0, b"", 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(max_bytes)
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        records, bad = parse_lines(lines)
        self.malformed += bad
        return records


class ReplayTail:
    """A finished run played back at `speed` times its recorded pace (gaps capped at `max_gap` s).

    The clock only moves while `paused` is False; records are read ahead incrementally.
    """

    def __init__(self, path: str | Path, speed: float, max_gap: float = 2.0, read_ahead: int = 2000):
        if not speed > 0:
            raise ValueError(f"replay speed must be > 0, got {speed}")
        self.tail = TelemetryTail(path)
        self.speed, self.max_gap, self.read_ahead = speed, max_gap, read_ahead
        self.paused = False
        self.clock = 0.0  # replayed run-seconds so far
        self._queue: deque[tuple[float, dict]] = deque()
        self._run_time, self._last_ts = 0.0, None

    @property
    def malformed(self) -> int:
        return self.tail.malformed

    @property
    def pending(self) -> bool:
        return self.tail.pending

    @property
    def done(self) -> bool:
        return not self._queue and self.tail.offset >= _size(self.tail.path)

    def advance(self, seconds: float) -> list[dict]:
        """Move the clock by `seconds` of wall time; the records whose time has come."""
        if not self.paused:
            self.clock += seconds * self.speed
        while len(self._queue) < self.read_ahead:
            fresh = self.tail.read()
            if not fresh:
                break
            for record in fresh:
                ts = record.get("ts")
                if isinstance(ts, (int, float)):
                    if self._last_ts is not None:
                        self._run_time += min(max(ts - self._last_ts, 0.0), self.max_gap)
                    self._last_ts = ts
                self._queue.append((self._run_time, record))
        released = []
        while self._queue and self._queue[0][0] <= self.clock:
            released.append(self._queue.popleft()[1])
        return released


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
