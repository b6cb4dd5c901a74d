"""The training monitor: a run's telemetry, live or replayed, as a Textual screen.

`meqg monitor RUN_DIR` shows it alone (MonitorApp); `meqg app` opens it from its runs
screen. Reads RUN_DIR/telemetry.jsonl only (never training code). Every tick takes in
what was appended since the last one and redraws once, so a fast writer costs one redraw
per tick, not one per event.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from meqg_mlx.runs import RunDir

from .state import RunState
from .tail import ReplayTail, TelemetryTail
from .widgets import EventsLog, ExpertsPanel, GatePanel, MetricPlot, RunHeader

KEYS = (
    ("p", "pause / resume reading (a replay's clock stops too)"),
    ("f", "follow on/off: plots show the last --window steps / the whole run"),
    ("tab", "next panel (shift+tab: previous); arrows scroll the focused panel"),
    ("s", "save a screenshot (SVG) to the run directory"),
    ("?", "this help"),
    ("q", "quit (in meqg app: back to the runs)"),
)
PLOTS = (  # each on its own axis: loss (~1-4) beside Delta (~10-30) would be flattened
    ("loss: distance + InfoNCE", ("loss",), False),
    ("Delta = S_geo + S_ent + lambda S_mod", ("Delta", "S_geo", "S_ent", "S_mod"), False),
    ("loss by batch: documents, relation walks", ("loss_documents", "loss_walks"), False),
    ("Phi", ("phi",), True),  # with the regime bands the run recorded
    ("acceptance rate and backtracks", ("accept_rate", "retries"), False),
    ("trust radius", ("trust_radius",), False),
    ("kappa-hat", ("kappa",), False),
    ("learning rate", ("lr",), False),
)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"  [bold]{key:>5}[/]  {what}" for key, what in KEYS)
        yield Static(f"[bold]meqg monitor keys[/]\n\n{rows}\n\n  (escape closes)", id="help")


class MonitorScreen(Screen):
    CSS_PATH = "monitor.tcss"
    BINDINGS = [
        Binding("p", "pause", "pause"),
        Binding("f", "follow", "follow"),
        Binding("s", "screenshot", "screenshot"),
        Binding("question_mark", "help", "keys"),
        Binding("q", "close", "quit"),
    ]

    def __init__(
        self,
        run_dir: str | Path,
        replay: float | None = None,
        stall_after: float = 30.0,
        window: int = 200,
        tick: float = 0.25,
        worker=None,
    ):
        """`worker`: the training process when `meqg train --monitor` started one (anything with poll())."""
        super().__init__()
        self.run_dir = Path(run_dir)
        path = RunDir(self.run_dir).telemetry_path
        self.source = ReplayTail(path, replay) if replay else TelemetryTail(path)
        self.replay, self.stall_after, self.window, self.tick_seconds = replay, stall_after, window, tick
        self.worker = worker
        self.state = RunState()
        self.paused, self.follow = False, True
        self._last_tick: float | None = None

    def compose(self) -> ComposeResult:
        # Kept as attributes: ticks must reach them while a help screen is on top.
        self.header = RunHeader(id="header")
        self.plots = [
            MetricPlot(title, series, regime_bands, id=f"plot-{i}")
            for i, (title, series, regime_bands) in enumerate(PLOTS)
        ]
        self.gate, self.experts = GatePanel(id="gate", classes="panel"), ExpertsPanel(id="experts", classes="panel")
        self.events = EventsLog(id="events", classes="panel", max_lines=2000, wrap=False, markup=False)
        self.gate.border_title, self.experts.border_title, self.events.border_title = "gate", "experts / RVQ", "events"
        yield self.header
        with Horizontal(id="body"):
            with Grid(id="plots", classes="panel") as plots:
                plots.border_title = "plots"
                yield from self.plots
            with Vertical(id="side"):
                yield self.gate
                yield self.experts
        yield self.events
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#plots").can_focus = True
        self.set_interval(self.tick_seconds, self.tick)
        self.sub_title = str(self.run_dir)
        self.tick()

    def tick(self) -> None:
        """Take in the new records, then redraw what they changed.

        A replay's clock moves by the time since the last tick, but by at most four tick
        intervals: a stalled UI (a busy machine, a slow first render) slows the replay down
        instead of skipping through the run.
        """
        now = time.monotonic()
        elapsed = 0.0 if self._last_tick is None else min(now - self._last_tick, 4 * self.tick_seconds)
        self._last_tick = now
        if self.replay:
            self.source.paused = self.paused
            records = self.source.advance(elapsed)
        else:
            records = [] if self.paused else self.source.read()
            if self.source.restarted:
                self.state = RunState()
                self.events.clear()
        seen = self.state.events_seen
        for record in records:
            self.state.apply(record)
        if records:
            self.events.add(self.state.new_events(seen))
            self.redraw()
        self._show_header()
        self._watch_worker()

    def redraw(self) -> None:
        window = self.window if self.follow else None
        for plot in self.plots:
            plot.show(self.state, window)
        self.gate.show(self.state)
        self.experts.show(self.state)

    def _show_header(self) -> None:
        now = None if self.replay else time.time()
        status = self.state.status(now, self.stall_after)
        flags = [
            f"malformed lines {self.source.malformed}" if self.source.malformed else "",
            "truncated last line" if self.source.pending and status not in ("running", "waiting") else "",
            f"replay x{self.replay:g}" + (" done" if self.source.done else "") if self.replay else "",
            "follow" if self.follow else "whole run",
            "PAUSED" if self.paused else "",
            self._worker_note(),
        ]
        self.header.show(
            self.state, status, self.state.elapsed(now, self.stall_after), [flag for flag in flags if flag]
        )

    def _worker_note(self) -> str:
        if self.worker is None:
            return ""
        code = self.worker.poll()
        return "training" if code is None else f"training process exited ({code})"

    def _watch_worker(self) -> None:
        """A training process that dies before writing anything leaves nothing to watch: close with its code."""
        if self.worker is not None and self.state.records == 0 and self.worker.poll() not in (None, 0):
            self.action_close(self.worker.poll())

    def action_close(self, return_code: int = 0) -> None:
        """Alone (`meqg monitor`) the app exits; opened from `meqg app`, back to the screen below."""
        if len(self.app.screen_stack) > 1:
            self.dismiss(return_code)
        else:
            self.app.exit(return_code=return_code)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._show_header()

    def action_follow(self) -> None:
        self.follow = not self.follow
        self.events.auto_scroll = self.follow
        self.redraw()
        self._show_header()

    def action_screenshot(self) -> None:
        name = f"monitor-step{self.state.step:07d}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            path = self.app.save_screenshot(filename=name, path=str(self.run_dir))
        except OSError as exc:
            self.notify(f"screenshot not saved: {exc}", severity="error", markup=False)
            return
        self.notify(f"saved {path}")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())


class MonitorApp(App):
    """`meqg monitor RUN_DIR` (and `meqg train --monitor`): the monitor screen alone."""

    TITLE = "meqg monitor"
    CSS_PATH = MonitorScreen.CSS_PATH  # a default screen's own CSS_PATH is not read: the app reads it

    def __init__(self, run_dir: str | Path, *args, **kwargs):
        super().__init__()
        self.monitor = MonitorScreen(run_dir, *args, **kwargs)

    def get_default_screen(self) -> Screen:
        return self.monitor
