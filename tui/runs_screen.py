"""The runs screen of `meqg app`: every run at a glance, its monitor, and training started,
stopped and resumed from here.

A row is `run_overview`, as `meqg runs` prints it. Training runs in a worker process
(`TrainingWorker`, as `meqg train --monitor` starts it) and the monitor follows its
telemetry; stopping is Ctrl-C's (the step finishes, a checkpoint is written).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from meqg_mlx.errors import MeqgError

from .screen import WorkbenchScreen

from .monitor import MonitorScreen
from .widgets import STATUS_STYLES

REFRESH_S = 2.0


class RunsScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("m", "monitor", "monitor"),
        Binding("n", "new", "new run"),
        Binding("r", "resume", "resume"),
        Binding("x", "stop", "stop"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: list[dict] = []
        self.overviews: dict = {}  # run -> (its files' mtimes and sizes, its row): unchanged runs are not re-read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-status")
        table = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns(
            "run", "status", "step", "validation: r@1 model vs best baseline", "checkpoint", "inverter", "modified"
        )
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_runs()
        self.set_interval(REFRESH_S, self.refresh_runs)

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def refresh_runs(self) -> None:
        if not self.is_current and self.rows:
            return  # another screen is in front: its work comes first on the library thread
        try:
            rows = await self.app.in_library(list_runs, self.app.runs_root, self.overviews)
        except (MeqgError, OSError) as exc:
            self.query_one("#runs-status", Static).update(Text(str(exc), "bold red"))
            return
        self.rows = rows
        table = self.query_one("#runs", DataTable)
        selected = self.selected_run()
        table.clear()
        for row in rows:
            run = Path(row["run"])
            worker = self.app.training.get(run)
            status = row["status"] if worker is None or worker.poll() is not None else "training here"
            table.add_row(
                run.name,
                Text(status, STATUS_STYLES.get(status, "green" if worker else "")),
                str(row["step"]),
                row["validation_line"],
                "yes" if row["checkpoint"] else "no",
                "yes" if row["inverter"] else "no",
                datetime.datetime.fromtimestamp(row["modified"]).strftime("%Y-%m-%d %H:%M"),
                key=str(run),
            )
        if selected is not None and str(selected) in [row["run"] for row in rows]:
            table.move_cursor(row=table.get_row_index(str(selected)))
        self.query_one("#runs-status", Static).update(
            Text.assemble(
                (f"{len(rows)} runs under {self.app.runs_root}", "bold"),
                "   enter/m: monitor   n: new run   r: resume   x: stop (checkpoints)",
            )
        )
        self.report_failed_workers()

    def selected_run(self) -> Path | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        return Path(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def report_failed_workers(self) -> None:
        for run, worker in list(self.app.training.items()):
            if worker.poll() is not None:
                del self.app.training[run]
                if worker.returncode:
                    self.notify(f"{run.name}: {worker.failure()}", severity="error", timeout=15, markup=False)
                else:
                    self.notify(f"{run.name}: training stopped (exit 0)")

    @on(DataTable.RowSelected, "#runs")
    def run_selected(self) -> None:
        self.action_monitor()

    def action_monitor(self) -> None:
        run = self.selected_run()
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        self.app.push_screen(MonitorScreen(run, worker=self.app.training.get(run)))

    def action_new(self) -> None:
        self.app.push_screen(NewRunDialog(str(self.app.store_path)), self.start_new)

    def start_new(self, answer: tuple[str, str, int, str] | None) -> None:
        if answer is None:
            return
        from meqg_mlx.paths import new_run_dir

        name, store, steps, config = answer
        run = new_run_dir(name, self.app.runs_root)
        self.start(run, ["--store", store, "--steps", str(steps)] + (["--config", config] if config else []))

    def action_resume(self) -> None:
        run = self.selected_run()
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        if run in self.app.training:
            self.notify(f"{run.name} is already training", severity="warning")
            return
        row = next(r for r in self.rows if r["run"] == str(run))
        if not row["checkpoint"]:
            self.notify(f"{run.name} has no checkpoint to resume from", severity="error")
            return
        self.app.push_screen(
            ResumeDialog(run.name, row["step"]),
            lambda steps: steps and self.start(run, ["--resume", "--steps", str(steps)]),
        )

    def start(self, run: Path, arguments: list[str]) -> None:
        from .worker import TrainingWorker

        self.app.training[run] = worker = TrainingWorker(run, arguments)
        self.notify(f"training {run.name} in process {worker.process.pid}")
        self.app.push_screen(MonitorScreen(run, worker=worker))

    def action_stop(self) -> None:
        run = self.selected_run()
        worker = self.app.training.get(run) if run else None
        if worker is None or worker.poll() is not None:
            self.notify("this app trains no such run: only runs started here can be stopped here", severity="warning")
            return
        worker.interrupt()
        self.notify(f"stopping {run.name} after the current step (checkpointing)")


def list_runs(root: Path, cache: dict | None = None) -> list[dict]:
    """`run_overview` of each run under root, with its validation line and whether it has a checkpoint.

    With `cache`, a run whose run.json, telemetry and checkpoint pointer are unchanged since the last
    call is not read again (a long run's telemetry is megabytes).
    """
    from meqg_mlx.runs import runs_under
    from meqg_mlx.telemetry import run_overview, validation_line

    if not Path(root).is_dir():
        raise MeqgError(f"no runs directory {root}")
    cache = {} if cache is None else cache
    rows = []
    for run in runs_under(root):
        files = (run.meta_path, run.telemetry_path, run.checkpoints / "latest")
        key = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in files)
        cached = cache.get(run.path)
        if cached is None or cached[0] != key or cached[1]["status"] == "running":  # "running" goes stale
            row = run_overview(run)
            row |= {
                "validation_line": validation_line(row["validation"]),
                "checkpoint": bool(run.checkpoint_dirs()),  # opening one whose `latest` is broken says why
            }
            cache[run.path] = (key, row)
        rows.append(cache[run.path][1])
    return rows


class NewRunDialog(ModalScreen[tuple[str, str, int, str] | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, store: str):
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("new training run (enter starts, escape cancels)", classes="dialog-title")
            yield Label("name")
            yield Input(f"app-{datetime.datetime.now():%Y%m%d-%H%M}", id="name")
            yield Label("store")
            yield Input(self.store, id="store")
            yield Label("steps")
            yield Input("100", id="steps", type="integer")
            yield Label("config (YAML overlaid on the defaults; empty: the defaults)")
            yield Input("", id="config")
            yield Static("", id="dialog-error")
            yield Button("start", id="start", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        store = self.query_one("#store", Input).value.strip()
        steps = self.query_one("#steps", Input).value.strip()
        config = self.query_one("#config", Input).value.strip()
        error = self.query_one("#dialog-error", Static)
        if not name or "/" in name:
            error.update(Text("a run needs a name without '/'", "red"))
        elif not store:
            error.update(Text("a run needs a store", "red"))
        elif not steps.isdigit() or int(steps) < 1:
            error.update(Text("steps must be a whole number >= 1", "red"))
        elif config and not Path(config).expanduser().is_file():
            error.update(Text(f"no config file {config}", "red"))
        else:
            self.dismiss((name, store, int(steps), config))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ResumeDialog(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, name: str, step: int):
        super().__init__()
        self.run_name, self.step = name, step

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"resume {self.run_name} from step {self.step}: train until step", classes="dialog-title")
            yield Input(str(self.step + 100), id="steps", type="integer")
            yield Static("", id="dialog-error")

    @on(Input.Submitted)
    def submit(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value.isdigit() or int(value) <= self.step:
            self.query_one("#dialog-error", Static).update(Text(f"give a step above {self.step}", "red"))
            return
        self.dismiss(int(value))

    def action_cancel(self) -> None:
        self.dismiss(None)
