"""`meqg app`: start to first screen, search latency from the UI, memory; each beside its peer.

* start: a fresh process from launch to the store screen's first frame and to a usable search
  (stats drawn), against `meqg store stats` on the same store (the CLI opening the same store);
* search: from the last keystroke to the hits on screen (typing, the 0.15 s debounce, the
  encoder, the index, the table), against the same `search_subjects` called directly;
* memory: the app process's peak RSS after its searches.

With `--big N` the same runs on a store of N synthetic vectors shaped like the store's own
(bench/store.py's generator), written once under --work; its index is built when it opens.
The monitor's lag inside the app against `meqg monitor` alone: bench/monitor.py --in-app.

    python bench/app.py [--store DIR] [--big 1000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

import meqg_mlx  # noqa: E402,F401
from meqg_mlx.paths import default_store  # noqa: E402

QUERIES = ("read a file line by line", "sort a list in place", "parse JSON from a string", "domestic cat")
SIZE = (160, 48)


async def until(pilot, condition, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.005)


async def drive(store: Path, launched: float) -> dict:
    """In the child: time the first frame, the store opening and each query typed into the app."""
    from meqg_tui.workbench import WorkbenchApp

    app = WorkbenchApp(store, Path("."), Path("."))
    result = {}
    async with app.run_test(size=SIZE) as pilot:
        result["first_frame_s"] = time.time() - launched
        screen = app.screen
        await until(pilot, lambda: screen.store is not None)
        result["stats_s"] = time.time() - launched
        await until(pilot, lambda: screen.index_ready)
        result["ready_s"] = time.time() - launched
        result["searches"] = []
        for query in QUERIES:
            screen.query_one("#query").value = ""
            await until(pilot, lambda: screen.query_one("#hits").row_count == 0)
            await pilot.press(*query[:-1])
            typed = time.perf_counter()  # from the last keystroke
            await pilot.press(query[-1])
            await until(pilot, lambda: screen.last_search.get("query") == query)
            shown = time.perf_counter() - typed
            direct = time.perf_counter()
            from meqg_tui.store_screen import search

            search(screen.store, screen.embedder, query, 20)
            result["searches"].append(
                {
                    "query": query,
                    "ui_s": shown,
                    "search_s": screen.last_search["seconds"],
                    "direct_s": time.perf_counter() - direct,
                }
            )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def child_run(store: Path) -> dict:
    launched = time.time()
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(store), str(launched)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def cli_stats_seconds(store: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [Path(sys.executable).with_name("meqg"), "store", "stats", "--store", str(store)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def big_store(like: Path, size: int, work: Path) -> Path:
    """A store of `size` synthetic vectors shaped like `like`'s, under the same encoder's name."""
    from store import fitted_vectors  # bench/store.py

    from meqg_mlx.concepts import ConceptStore, NewConcept

    path = work / f"app-bench-{size}"
    if (path / "meqg_store.json").exists():
        return path
    source = ConceptStore.open(like)
    _, real = source.all_vectors()
    store = ConceptStore.create(str(path), source.dim, source.meta["origin_model"])
    store.reserve_ids(size)
    for start in range(0, size, 200_000):
        chunk = fitted_vectors(real, min(200_000, size - start), seed=start)
        store.add([NewConcept(start + i, f"synthetic concept {start + i}", v) for i, v in enumerate(chunk)])
        print(f"  wrote {start + len(chunk):,}/{size:,}", flush=True)
    store.optimize()
    return path


def report(name: str, store: Path) -> None:
    stats_s = cli_stats_seconds(store)
    r = child_run(store)
    print(f"\n{name}: {store}")
    print(f"  start: first frame {r['first_frame_s']:.2f} s, stats shown {r['stats_s']:.2f} s "
          f"(meqg store stats: {stats_s:.2f} s; ratio {r['stats_s'] / stats_s:.2f}), "
          f"search index and encoder ready {r['ready_s']:.2f} s")  # fmt: skip
    print(f"  {'query':<28}{'UI (s)':>8}{'search (s)':>12}{'direct (s)':>12}{'UI/direct':>11}")
    for s in r["searches"]:
        ratio = s["ui_s"] / s["direct_s"]
        print(f"  {s['query']:<28}{s['ui_s']:>8.3f}{s['search_s']:>12.3f}{s['direct_s']:>12.3f}{ratio:>11.1f}")
    ui = np.median([s["ui_s"] for s in r["searches"][1:]])
    print(f"  median UI latency after the first query: {ui * 1000:.0f} ms (0.15 s of it is the debounce)")
    print(f"  peak RSS of the app process: {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        os.chdir(Path(sys.argv[2]).parent)
        print(json.dumps(asyncio.run(drive(Path(sys.argv[2]), float(sys.argv[3])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=default_store())
    parser.add_argument("--big", type=int, default=0, help="also a store of this many synthetic vectors")
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    report("store", args.store)
    if args.big:
        report(f"{args.big:,} synthetic concepts", big_store(args.store, args.big, args.work))


if __name__ == "__main__":
    main()
