"""Monitor lag: how far `meqg monitor` falls behind a fast writer, against a bare tail reader.

A writer thread appends step records (from the recorded test run) at RATE events/s for
SECONDS; the monitor (Textual, headless, 4 ticks/s as `meqg monitor` runs), the same monitor
opened inside `meqg app` (its store screen opening the store on the library thread meanwhile)
and a plain `TelemetryTail` polled at the same rate each report the records they are behind
at every tick, and how long after the last write they have all of them.

    python bench/monitor.py [--rate 50] [--seconds 4] [--store DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

from meqg_mlx.paths import default_store
from meqg_tui.monitor import MonitorApp, MonitorScreen
from meqg_tui.tail import TelemetryTail
from meqg_tui.workbench import WorkbenchApp

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "data" / "telemetry" / "gated-run.jsonl"
TICK = 0.25


def writer(path: Path, count: int, rate: float) -> threading.Thread:
    steps = [r for r in map(json.loads, RECORDED.read_text().splitlines()) if r["event"] == "step"]

    def write():
        with open(path, "a") as f:
            for i in range(count):
                f.write(json.dumps(steps[i % len(steps)] | {"step": i + 1, "ts": time.time()}) + "\n")
                f.flush()
                time.sleep(1 / rate)

    return threading.Thread(target=write)


def written(path: Path) -> int:
    with open(path) as f:
        return sum(1 for _ in f)


async def monitor_lag(directory: Path, count: int, rate: float, store: Path | None = None) -> tuple[int, float]:
    """The monitor alone (`meqg monitor`), or with `store` opened over `meqg app` on that store."""
    path = directory / "telemetry.jsonl"
    path.touch()
    app = MonitorApp(directory, tick=TICK) if store is None else WorkbenchApp(store, directory.parent, directory)
    lags = []
    async with app.run_test(size=(160, 48)) as pilot:
        if store is None:
            monitor = app.monitor
        else:
            monitor = MonitorScreen(directory, tick=TICK)
            await app.push_screen(monitor)
        thread = writer(path, count, rate)
        thread.start()
        while thread.is_alive():
            await pilot.pause(TICK)
            lags.append(written(path) - monitor.state.records)
        finished = time.monotonic()
        while monitor.state.records < count:
            await pilot.pause(0.01)
        return max(lags), time.monotonic() - finished


def tail_lag(directory: Path, count: int, rate: float) -> tuple[int, float]:
    path = directory / "telemetry.jsonl"
    path.touch()
    tail, seen, lags = TelemetryTail(path), 0, []
    thread = writer(path, count, rate)
    thread.start()
    while thread.is_alive():
        time.sleep(TICK)
        seen += len(tail.read())
        lags.append(written(path) - seen)
    finished = time.monotonic()
    while seen < count:
        seen += len(tail.read())
    return max(lags), time.monotonic() - finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--store", type=Path, default=default_store(), help="the store `meqg app` opens meanwhile")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        app_lag, app_catch_up = asyncio.run(monitor_lag(Path(a), count, args.rate))
        in_app_lag, in_app_catch_up = asyncio.run(monitor_lag(Path(c), count, args.rate, args.store))
        tail_max, tail_catch_up = tail_lag(Path(b), count, args.rate)
    print(f"{count} records at {args.rate:g} events/s, ticks every {TICK} s")
    print(f"{'':<22}{'max lag (records)':>18}{'catch-up (s)':>14}")
    print(f"{'meqg monitor':<22}{app_lag:>18}{app_catch_up:>14.3f}")
    print(f"{'monitor in meqg app':<22}{in_app_lag:>18}{in_app_catch_up:>14.3f}")
    print(f"{'bare TelemetryTail':<22}{tail_max:>18}{tail_catch_up:>14.3f}")
    print(
        f"monitor lag - bare tail lag: {app_lag - tail_max} records "
        f"({(app_lag - tail_max) / args.rate:.2f} s of writing)"
    )


if __name__ == "__main__":
    main()
