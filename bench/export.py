"""Export timing: `meqg export coreml` beside `meqg export torch` on the same trained run.

Each export runs `--rounds` times in a fresh process (what a user waits for: interpreter,
imports, tracing, conversion, writing), the two interleaved per round so the machine's
drifts hit them alike; printed: median wall seconds and peak RSS of each, and the ratio.
The tests check what an export holds, not how long it takes; this is where that is measured.

    python bench/export.py --run RUN [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


PEAK_REPORTER = """
import resource, sys
from meqg_cli.main import run
sys.argv = ["meqg", *sys.argv[1:]]
try:
    run()
finally:
    print(f"peak_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


def timed_export(kind: str, run: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `meqg export KIND` in a fresh process."""
    started = time.perf_counter()
    command = [sys.executable, "-c", PEAK_REPORTER, "export", kind, "--run", str(run), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"meqg export {kind} failed: {done.stderr.strip().splitlines()[0]}")  # not the peak line
    return seconds, int(done.stderr.strip().splitlines()[-1].split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run (meqg train or meqg demo)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    print(f"meqg bench/export.py on {os.cpu_count()} cores, run {args.run}")
    times: dict[str, list[float]] = {"torch": [], "coreml": []}
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for kind in times:
                seconds, peak = timed_export(kind, args.run, Path(tmp) / f"{kind}-{round_}")
                times[kind].append(seconds)
                peaks[kind] = max(peaks.get(kind, 0.0), peak)
    for kind, values in times.items():
        print(f"meqg export {kind:6s}  median {statistics.median(values):6.1f} s  (runs: "
              f"{', '.join(f'{v:.1f}' for v in values)})  peak RSS {peaks[kind]:.0f} MB")  # fmt: skip
    ratio = statistics.median(times["coreml"]) / statistics.median(times["torch"])
    print(f"coreml / torch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
