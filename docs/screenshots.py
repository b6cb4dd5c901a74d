"""Refresh the README's screenshots of `meqg app`: one SVG per screen (Textual's own screenshots).

    python docs/screenshots.py [--store DIR] [--runs DIR] [--report DIR] [--out docs/screenshots]

Defaults: the store and runs `make demo` builds ($MEQG_HOME/stores/stdlib, $MEQG_HOME/runs), the
newest eval report under $MEQG_HOME (else tests/data/eval/ablation). Each screen is driven as a
user would: a search with its first hit opened, the runs, the first run's monitor, an episode on
the newest run with a checkpoint, the report.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import meqg_mlx  # noqa: F401  (sets up BLAS before MLX loads)
from meqg_mlx.paths import default_store, meqg_home
from meqg_tui.monitor import MonitorScreen
from meqg_tui.workbench import WorkbenchApp

SIZE = (160, 48)
QUERY = "read a file line by line"
PROMPT = "Read a file line by line. Strip each line and keep the ones that are not empty."
FALLBACK_REPORT = Path(__file__).parents[1] / "tests" / "data" / "eval" / "ablation"


async def until(pilot, condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.1)


async def shoot(store: Path, runs: Path, report: Path, out: Path) -> list[Path]:
    app = WorkbenchApp(store, runs, meqg_home())
    saved = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.store is not None)
        await pilot.press(*QUERY)
        await until(pilot, lambda: screen.last_search.get("query") == QUERY)
        await pilot.press("enter", "enter")
        await until(pilot, lambda: screen.concept_id is not None)
        save("store")

        await app.switch_mode("runs")
        await until(pilot, lambda: app.screen.rows)
        save("runs")
        watched = next(row["run"] for row in app.screen.rows if row["step"])
        await app.push_screen(MonitorScreen(watched))
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state.ended)
        await pilot.pause()
        save("monitor")
        await app.pop_screen()

        await app.switch_mode("episode")
        episode = app.screen
        await until(pilot, lambda: not episode.query_one("#run").is_blank())
        episode.query_one("#prompt").value = PROMPT
        episode.query_one("#seconds").value = "10"
        episode.action_run_episode()
        await until(pilot, lambda: episode.response is not None)
        save("episode")

        await app.switch_mode("eval")
        app.screen.open_report(str(report))
        await until(pilot, lambda: app.screen.report is not None)
        await pilot.pause()
        save("eval")
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=default_store())
    parser.add_argument("--runs", type=Path, default=meqg_home() / "runs")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "screenshots")
    args = parser.parse_args()
    from meqg_mlx.eval.report import find_reports

    report = args.report or next(iter(find_reports(meqg_home())), FALLBACK_REPORT)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(shoot(args.store, args.runs, report, args.out)):
        print(path)


if __name__ == "__main__":
    main()
