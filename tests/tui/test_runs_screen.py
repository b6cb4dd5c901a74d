"""The runs screen of `meqg app`: a real `meqg train` started from the app in a worker process,
watched in the monitor, stopped with a checkpoint (x), resumed (r) to the step asked; a run that
cannot start is a message."""

import json
import os
import shutil
from pathlib import Path

from meqg_mlx.config import to_yaml
from meqg_mlx.runs import RunDir
from meqg_tui.monitor import MonitorScreen
from meqg_tui.runs_screen import NewRunDialog, ResumeDialog, RunsScreen

from ..train.test_trainer import small_config
from .conftest import RECORDED, drawn, wait_for, workbench

SIZE = (160, 48)


def last_step(run: Path) -> int:
    steps = [json.loads(line) for line in RunDir(run).telemetry_path.read_text().splitlines()]
    return max(r["step"] for r in steps if r["event"] == "step")


def notified(app, text: str) -> bool:
    return any(text in notification.message for notification in app._notifications)


def add_recorded_run(runs: Path) -> None:
    """runs/recorded: the recorded telemetry of a finished run (no checkpoint), last changed long ago."""
    recorded = runs / "recorded"
    recorded.mkdir()
    shutil.copy(RECORDED, recorded / "telemetry.jsonl")
    (recorded / "run.json").write_text(json.dumps({"run_id": "0123456789ab", "store": "store"}))
    for path in (recorded / "run.json", recorded / "telemetry.jsonl"):
        os.utime(path, (1.7e9, 1.7e9))


async def start_from_the_dialog(pilot, name: str, store: str, steps: int, config: str = "") -> None:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunDialog))
    dialog = pilot.app.screen
    for field, value in (("#name", name), ("#store", store), ("#steps", str(steps)), ("#config", config)):
        dialog.query_one(field).value = value
    await pilot.press("enter")


async def test_a_run_is_started_watched_stopped_with_a_checkpoint_and_resumed(workbench_dir):
    (workbench_dir / "tiny.yaml").write_text(to_yaml(small_config(learning_rate=3e-3, warmup_steps=5)))
    app = workbench("runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await start_from_the_dialog(pilot, "tiny", "store", 100_000, "tiny.yaml")
        run = Path("runs/tiny")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the monitor did not open")
        monitor = app.screen
        await wait_for(pilot, lambda: monitor.state.step >= 3, 240, "the monitor saw no training steps")
        assert monitor.worker is app.training[run] and f"step {monitor.state.step}" in monitor.header.content.plain

        await pilot.press("q")  # back to the runs; training goes on
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        table = app.screen.query_one("#runs")
        await wait_for(pilot, lambda: table.row_count == 1 and "training here" in str(table.get_row_at(0)[1]))
        await pilot.press("x")
        worker = app.training[run]
        await wait_for(pilot, lambda: worker.poll() is not None, 240, "training did not stop on x")
        assert worker.returncode == 0
        assert RunDir(run).latest_checkpoint() is not None
        stopped = last_step(run)
        await wait_for(pilot, lambda: run not in app.training and notified(app, "training stopped"))
        await wait_for(pilot, lambda: str(table.get_row_at(0)[2]) == str(stopped))

        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResumeDialog))
        app.screen.query_one("#steps").value = str(stopped + 3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        resumed = app.training[run]
        await wait_for(pilot, lambda: resumed.poll() is not None, 240, "the resumed run did not finish")
        assert resumed.returncode == 0 and last_step(run) == stopped + 3
        await wait_for(pilot, lambda: app.screen.state.ended == "finished")


async def test_a_run_that_cannot_start_is_a_message_and_x_on_a_run_not_started_here(workbench_dir):
    add_recorded_run(workbench_dir / "runs")
    app = workbench("runs")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert [str(cell) for cell in table.get_row_at(0)[:4]] == ["recorded", "finished", "60", "-"]
        await pilot.press("x")
        assert notified(app, "only runs started here can be stopped here")
        await pilot.press("r")
        assert notified(app, "recorded has no checkpoint to resume from")

        await start_from_the_dialog(pilot, "broken", "no-such-store", 10)
        await wait_for(pilot, lambda: notified(app, "no-such-store"), 120, "the failed start was not reported")
        # the monitor closes itself (nothing to watch), after the message: waited for, on a busy machine
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 60, "the monitor did not close itself")


def test_runs_screen_snapshot(workbench_dir, snap_compare):
    add_recorded_run(workbench_dir / "runs")

    async def listed(pilot):
        # the row, its columns sized to it, and the footer's keys: once seen drawn only half (a busy CI run)
        await wait_for(pilot, lambda: drawn(pilot.app, "recorded", "finished", "f4 eval"))

    assert snap_compare(workbench("runs"), terminal_size=SIZE, run_before=listed)
