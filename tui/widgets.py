"""The monitor's panels; each draws itself from a RunState."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import RichLog, Static
from textual_plotext import PlotextPlot

from .state import RunState

BAR = 24


def na(value, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class RunHeader(Static):
    """Run id, status, step, elapsed, steps/s, and how reading is going."""

    def show(self, state: RunState, status: str, elapsed: float | None, flags: list[str]) -> None:
        target = f"/{state.target}" if state.target else ""
        text = Text.assemble(
            ("meqg monitor  ", "bold"),
            (f"run {state.run_id or 'n/a'}  ", ""),
            (f" {status} ", f"reverse {STATUS_STYLES.get(status, 'yellow')}"),
            f"  step {state.step}{target}  elapsed {clock(elapsed)}  {na(state.steps_per_second(), '.2f')} steps/s",
            ("  " + "  ".join(flags)) if flags else "",
        )
        self.update(text)


STATUS_STYLES = {
    "running": "green",
    "finished": "blue",
    "stalled": "red",
    "failed": "red",
    "aborted": "red",
    "interrupted": "yellow",
    "waiting": "yellow",
}


class MetricPlot(PlotextPlot):
    """Some series over steps; with `regime_bands`, the run's Phi regime thresholds as red lines."""

    def __init__(self, title: str, series: tuple[str, ...], regime_bands: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.title, self.names, self.regime_bands = title, series, regime_bands

    def show(self, state: RunState, window: int | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        bands = state.bands if self.regime_bands else None
        title = f"{self.title} (regimes at {bands[0]:g}, {bands[1]:g})" if bands else self.title
        plt.title(title)
        plotted = False
        for name in self.names:
            xs, ys = _window(*state.series[name], window)
            points = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
            if points:
                plt.plot(*zip(*points), label=name, marker="braille")
                plotted = True
        if plotted:
            for band in bands or ():
                plt.hline(band, "red")
        else:
            plt.title(f"{title}: n/a")
        self.refresh()


def _window(xs: list, ys: list, window: int | None, points: int = 400) -> tuple[list, list]:
    """The last `window` steps (all when None), thinned to about `points` points for drawing."""
    if window is not None and xs:
        first = xs[-1] - window
        start = next((i for i in range(len(xs) - 1, -1, -1) if xs[i] <= first), -1) + 1
        xs, ys = xs[start:], ys[start:]
    stride = max(len(xs) // points, 1)
    return xs[::stride], ys[::stride]


class Panel(Vertical, can_focus=True):
    """A bordered panel that takes focus (tab moves between panels)."""


class GatePanel(Panel):
    def compose(self):
        yield Static(id="gate-summary")
        yield Static(id="gate-decisions")

    def show(self, state: RunState) -> None:
        checked = state.accepted + state.rejected
        rate = f"{state.accepted / checked:.1%}" if checked else "n/a"
        last = state.decisions[-1] if state.decisions else None
        self.query_one("#gate-summary", Static).update(
            f"accepted {state.accepted}  rejected {state.rejected}  unchecked {state.unchecked}  ({rate} of checks)\n"
            f"backtracks {state.backtracks}  view size {na(last.view_size if last else None)}  "
            f"collapse pressure {na(last.collapse_pressure if last else None, '.4f')}"
        )
        table = Table(box=None, pad_edge=False, expand=True)
        for column in ("step", "decision", "failed", "backtracks", "view", "collapse", "trust r"):
            table.add_column(column, justify="right" if column != "decision" else "left")
        for d in reversed(state.decisions):
            table.add_row(
                str(d.step),
                Text("accept", "green") if d.accepted else Text("reject", "bold red"),
                d.failed or "-",
                na(d.retries),
                na(d.view_size),
                na(d.collapse_pressure, ".4f"),
                na(d.trust_radius, ".4f"),
            )
        self.query_one("#gate-decisions", Static).update(table)


class ExpertsPanel(Panel):
    def compose(self):
        yield Static(id="experts-body")

    def show(self, state: RunState) -> None:
        lines = Text()
        load = state.expert_load
        if load:
            total = sum(load) or 1
            for index, value in enumerate(load):
                share = value / total
                filled = round(share * BAR * len(load) / 2)
                lines.append(f"expert {index:<2} ")
                lines.append("█" * min(filled, BAR) + "·" * max(BAR - filled, 0), "cyan")
                lines.append(f" {share:6.1%}\n")
            entropy, ceiling = state.router_entropy, math.log(len(load))
            lines.append(f"router entropy {na(entropy, '.3f')} of {ceiling:.3f} nats\n")
        else:
            lines.append("expert load n/a\n")
        rvq = state.rvq
        if rvq and rvq.get("perplexity") is not None:
            for level, (ppl, used) in enumerate(zip(rvq["perplexity"], rvq.get("used") or [None] * 99)):
                lines.append(
                    f"RVQ level {level}: perplexity {na(ppl, '.1f')}, used {na(used, 'd')}"
                    f"/{rvq.get('codes', 'n/a')} codes\n"
                )
        else:
            lines.append("RVQ usage n/a\n")
        self.query_one("#experts-body", Static).update(lines)


class EventsLog(RichLog):
    """Regime changes, recoveries, checkpoints, evals, rejections and the run's end, as they arrive."""

    STYLES = {
        "regime": "magenta",
        "recovery": "bold yellow",
        "checkpoint": "blue",
        "eval": "green",
        "gate": "red",
        "run": "bold",
    }

    def add(self, events) -> None:
        for step, kind, text in events:
            self.write(Text.assemble((f"{step:>7} ", "dim"), (f"{kind:<10} ", self.STYLES.get(kind, "")), text))
