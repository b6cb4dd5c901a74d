"""The eval screen of `meqg app`: a `meqg eval` report (one run's, or an ablation's) read back.

The verdict lines come first, coloured (met green, not met red, inconclusive yellow); the
cascade-failure curves and the reliability diagram are drawn in the terminal; report.md's
tables below. Everything is read from the report directory `meqg eval --out` wrote.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Markdown, OptionList, Static
from textual.widgets.option_list import Option
from textual_plotext import PlotextPlot

from meqg_mlx.errors import MeqgError

from .screen import WorkbenchScreen

VERDICT_STYLES = {"met": "bold green", "not met": "bold red", "inconclusive": "bold yellow"}


class EvalScreen(WorkbenchScreen):
    BINDINGS = [Binding("o", "focus_path", "open a directory"), Binding("r", "rescan", "rescan")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.report: dict | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="eval-body"):
            with Vertical(id="reports-pane", classes="panel"):
                yield OptionList(id="reports")
                yield Input(placeholder="open a report directory (enter)", id="report-path")
            with VerticalScroll(id="report-pane"):
                yield Static("choose a report (enter)", id="verdicts")
                with Horizontal(id="report-plots"):
                    yield PlotextPlot(id="cascade-plot")
                    yield PlotextPlot(id="reliability-plot")
                yield Markdown("", id="report-md")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#reports-pane").border_title = "eval reports"
        self.action_rescan()

    @work(exclusive=True, group="scan", exit_on_error=False)
    async def action_rescan(self) -> None:
        from meqg_mlx.eval.report import find_reports

        roots = [root for root in (self.app.home, self.app.runs_root) if Path(root).is_dir()]
        found = await self.app.in_library(find_reports, *roots)
        reports = self.query_one("#reports", OptionList)
        reports.clear_options()
        reports.add_options([Option(str(path), id=str(path)) for path in found])
        if not found:
            self.query_one("#verdicts", Static).update(
                Text(f"no eval reports under {', '.join(map(str, roots))}: run `meqg eval --out DIR`", "yellow")
            )

    def action_focus_path(self) -> None:
        self.query_one("#report-path", Input).focus()

    @on(OptionList.OptionSelected, "#reports")
    def report_chosen(self, event: OptionList.OptionSelected) -> None:
        self.open_report(event.option.id)

    @on(Input.Submitted, "#report-path")
    def path_given(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.open_report(event.value.strip())

    @work(exclusive=True, group="report", exit_on_error=False)
    async def open_report(self, directory: str) -> None:
        from meqg_mlx.eval.report import read_report

        try:
            report = await self.app.in_library(read_report, Path(directory).expanduser())
        except MeqgError as exc:
            self.query_one("#verdicts", Static).update(Text(str(exc), "bold red"))
            return
        self.show(report)

    def show(self, report: dict) -> None:
        from meqg_mlx.eval.report import cascade_curves, verdict_lines

        self.report = report
        summary = report["summary"]
        lines = verdict_lines(summary)
        verdicts = Text(f"{report['directory']}\n", "bold")
        for line, verdict in lines:
            verdicts.append(line + "\n", VERDICT_STYLES.get(verdict, "dim"))
        if not lines:
            verdicts.append("one run's report: no kill-numbers (an ablation's report has them)", "dim")
        self.query_one("#verdicts", Static).update(verdicts)
        draw_cascade(self.query_one("#cascade-plot", PlotextPlot), cascade_curves(summary))
        draw_reliability(self.query_one("#reliability-plot", PlotextPlot), summary)
        self.query_one("#report-md", Markdown).update(without_images(report["markdown"]))


def draw_cascade(widget: PlotextPlot, curves: dict[str, list[float]]) -> None:
    plt = widget.plt
    plt.clear_data()
    plt.clear_figure()
    for name, values in curves.items():
        plt.plot(list(range(1, len(values) + 1)), values, label=name, marker="braille")
    plt.title("cascade failure by horizon")
    plt.xlabel("horizon h")
    plt.xticks(list(range(1, max(map(len, curves.values()), default=1) + 1)))
    plt.ylim(0, 1.02)
    widget.refresh()


def draw_reliability(widget: PlotextPlot, summary: dict) -> None:
    """The run's (or the first variant's) reliability diagram: accuracy per confidence bin."""
    plt = widget.plt
    plt.clear_data()
    plt.clear_figure()
    if "variants" in summary:
        name, variant = next(iter(summary["variants"].items()))
        diagram, title = variant["reliability"], f"reliability: {name}"
    else:
        diagram, title = summary["reliability"], "reliability (free-running)"
    edges = diagram["edges"]
    centres = [round((a + b) / 2, 3) for a, b in zip(edges[:-1], edges[1:])]
    plt.bar(centres, [a if c else 0.0 for a, c in zip(diagram["accuracy"], diagram["count"])], width=0.8 / len(centres))
    plt.plot([0, 1], [0, 1], label="calibrated", marker="braille")
    plt.title(title)
    plt.xlabel("confidence")
    plt.xticks([0, 0.25, 0.5, 0.75, 1])  # plotext's own choice among the bars changes from run to run
    plt.xlim(0, 1)
    plt.ylim(0, 1)
    widget.refresh()


def without_images(markdown_text: str) -> str:
    """report.md without its PNG links (drawn above instead)."""
    return "\n".join(line for line in markdown_text.splitlines() if not line.lstrip().startswith("!["))
