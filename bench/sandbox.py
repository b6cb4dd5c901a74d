"""What the OS sandbox costs: `run_python` against a plain `python -I -c` subprocess, in one run.

The peer is the same interpreter started with subprocess.run and no isolation; the
ratio is the sandbox's wall time per program over the peer's (>1: slower).

    python bench/sandbox.py [--programs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from meqg_mlx.sandbox import isolation, run_python
from meqg_mlx.sandbox.bubblewrap import interpreter

PROGRAMS = {
    "print": "print(6 * 7)",
    "import json": "import json; print(json.dumps({'a': [1, 2]}))",
    "1e6 loop": "print(sum(i * i for i in range(10**6)))",
}


def seconds(call, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=20, help="runs of each program (the median is shown)")
    args = parser.parse_args()
    print(f"isolation: {isolation()}")
    print(f"{'program':>12}{'sandbox ms':>12}{'plain ms':>10}{'ratio':>8}")
    for name, code in PROGRAMS.items():
        ours = seconds(lambda: run_python(code), args.programs)
        peer = seconds(lambda: subprocess.run([interpreter(), "-I", "-c", code], capture_output=True), args.programs)
        print(f"{name:>12}{1e3 * ours:>12.1f}{1e3 * peer:>10.1f}{ours / peer:>8.2f}")


if __name__ == "__main__":
    main()
