"""The episode screen of `meqg app`: a Diamond episode on a run, step by step.

The same `DiamondEngine.run` as `meqg run` and `meqg serve`; the table is its telemetry:
each step's concept decoded to text with the text's own cosine, the gate's decision and
the criterion that failed, backtracks, view size, S_mod and the FLOPs spent so far.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, DataTable, Footer, Header, Input, Label, Select, Static

from meqg_mlx.errors import MeqgError

from .screen import WorkbenchScreen

from .runs_screen import list_runs


class EpisodeScreen(WorkbenchScreen):
    BINDINGS = [Binding("ctrl+r", "run_episode", "run episode"), Binding("slash", "focus_prompt", "prompt")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.engines: dict[Path, object] = {}  # loaded once per run: the model, store and encoder take seconds
        self.response: dict | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="episode-controls"):
            with Vertical(id="episode-choices"):
                yield Label("run")
                yield Select([], id="run", prompt="a trained run")
                yield Label("relation to follow")
                yield Select([("next", "next")], id="relation", value="next", allow_blank=False)
            with Vertical(id="episode-budget"):
                yield Label("tools")
                yield Checkbox("store", id="tool-store")
                yield Checkbox("python (sandboxed)", id="tool-python")
                yield Label("budget (seconds)")
                yield Input("2.0", id="seconds", type="number")
        yield Input(placeholder="prompt: what to reason about (enter runs the episode)", id="prompt")
        yield Static("", id="episode-status")
        table = DataTable(id="steps", cursor_type="row", zebra_stripes=True)
        table.add_columns("step", "gate", "failed", "backtracks", "view", "S_mod", "FLOPs so far", "cos", "text")
        yield table
        yield Static("", id="final", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#final").border_title = "final text"
        self.query_one("#prompt", Input).focus()
        self.load_runs()

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def load_runs(self) -> None:
        try:
            rows = await self.app.in_library(list_runs, self.app.runs_root)
        except (MeqgError, OSError) as exc:
            self.status(str(exc), "bold red")
            return
        choices = [(Path(r["run"]).name, r["run"]) for r in rows if r["checkpoint"]]
        select = self.query_one("#run", Select)
        select.set_options(choices)
        if choices:
            select.value = choices[0][1]
        else:
            self.status(f"no run with a checkpoint under {self.app.runs_root}: train one (runs screen, n)", "yellow")

    @on(Select.Changed, "#run")
    def run_changed(self, event: Select.Changed) -> None:
        if event.select.is_blank():
            return
        self.load_relations(Path(event.value))

    @work(exclusive=True, group="relations", exit_on_error=False)
    async def load_relations(self, run: Path) -> None:
        try:
            names = await self.app.in_library(relations_of, run)
        except MeqgError as exc:
            self.status(str(exc), "bold red")
            return
        select = self.query_one("#relation", Select)
        select.set_options([(name, name) for name in names])
        select.value = names[0]

    def status(self, message: str, style: str = "") -> None:
        self.query_one("#episode-status", Static).update(Text(message, style))

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    @on(Input.Submitted, "#prompt")
    def action_run_episode(self) -> None:
        select = self.query_one("#run", Select)
        prompt = self.query_one("#prompt", Input).value
        if select.is_blank():
            self.status("choose a run first", "bold red")
            return
        if not prompt.strip():
            self.status("the prompt is empty: type what to reason about", "bold red")
            return
        try:
            seconds = float(self.query_one("#seconds", Input).value)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            self.status("the budget must be a number of seconds > 0", "bold red")
            return
        tools = [name for name in ("store", "python") if self.query_one(f"#tool-{name}", Checkbox).value]
        self.run_episode(Path(select.value), prompt, tools, seconds, str(self.query_one("#relation", Select).value))

    @work(exclusive=True, group="episode", exit_on_error=False)
    async def run_episode(self, run: Path, prompt: str, tools: list[str], seconds: float, relation: str) -> None:
        if run not in self.engines:
            self.status(f"loading {run.name}: model, store, encoder ...", "italic")
            try:
                self.engines[run] = await self.app.in_library(load_engine, run)
            except MeqgError as exc:
                self.status(str(exc), "bold red")
                return
        self.status(f"running an episode on {run.name} ({seconds:g} s budget) ...", "italic")
        start = time.perf_counter()
        try:
            response = await self.app.in_library(run_on, self.engines[run], prompt, tools, seconds, relation)
        except MeqgError as exc:
            self.status(str(exc), "bold red")
            return
        self.show(response, time.perf_counter() - start)

    def show(self, response: dict, seconds: float) -> None:
        self.response = response
        telemetry = response["telemetry"]
        concepts = {c["step"]: c for c in response["concepts"]}
        table = self.query_one("#steps", DataTable)
        table.clear()
        flops = 0.0
        for step in telemetry["steps"]:
            gate, objective = step["gate"], step["objective"] or {}
            flops += step["flops"]
            concept = concepts.get(step["index"])
            text = (concept["text"] or f"[~ {concept['nearest_text']}]") if concept else ""
            table.add_row(
                str(step["index"]),
                Text("accepted", "green") if gate["accepted"] else Text("rejected", "bold red"),
                gate["failed"] or "",
                str(gate["retries"]),
                str(gate["view_size"]),
                f"{objective.get('S_mod', float('nan')):.3f}",
                f"{flops:.3g}",
                f"{concept['cosine']:.3f}" if concept else "",
                Text(" ".join(text.split())),
            )
        b = telemetry["budget"]
        accepted = sum(s["gate"]["accepted"] for s in telemetry["steps"])
        tools = "; ".join(f"tool {t['tool']}: {t.get('text', t.get('skipped'))}" for t in telemetry["tools"])
        self.status(
            f"{len(response['concepts'])} concepts, {accepted}/{len(telemetry['steps'])} steps accepted, "
            f"stopped by {telemetry['stopped_by']}; {b['seconds']:.2f} s of {b['limits']['seconds']:g}, "
            f"{b['flops']:.3g} FLOPs, {b['kv_bytes'] / 2**20:.2f} MiB state ({seconds:.1f} s with decoding)"
            + (f"\n{tools}" if tools else "")
        )
        self.query_one("#final", Static).update(
            Text(response["text"]) if response["text"] else Text("(no concept accepted)", "dim")
        )


def load_engine(run: Path):
    from meqg_mlx.episode.engine import DiamondEngine

    return DiamondEngine.from_run(run)


def relations_of(run: Path) -> list[str]:
    """The relations the run's model follows, `next` first (its config's vmm.relations)."""
    from meqg_mlx.config import load_run
    from meqg_mlx.corpus.relations import RelationVocabulary
    from meqg_mlx.runs import RunDir

    return list(RelationVocabulary.of_model(load_run(RunDir(run))[1].vmm.relations).names)


def run_on(engine, prompt: str, tools: list[str], seconds: float, relation: str) -> dict:
    from meqg_mlx.episode.budget import Budget

    return engine.run(prompt, tools, Budget(seconds=seconds), relation=relation)
