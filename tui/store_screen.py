"""The store screen of `meqg app`: stats, live search, and a concept with its typed relations.

Searches go through `search_subjects`, as `meqg store search` does, on the app's library
thread: typing never waits for the encoder or the index, and only the latest query's
results are shown. A relation is followed with enter; backspace returns along the path.
"""

from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from meqg_mlx.errors import MeqgError

from .screen import WorkbenchScreen

HITS = 20
DEBOUNCE_S = 0.15  # a search starts once typing pauses this long


class StoreScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("slash", "focus_search", "search"),
        Binding("backspace", "back", "back", show=True),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store = self.embedder = None
        self.concepts = 0
        self.index_ready = False
        self.concept_id: int | None = None
        self.path: list[int] = []  # concepts left by following relations, for backspace
        self.last_search: dict = {}  # query, hits, seconds: what the tests and the status line read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("opening the store ...", id="store-stats")
        with Horizontal(id="store-body"):
            with Vertical(id="search-pane"):
                yield Input(placeholder="search the store (enter a phrase)", id="query")
                yield Static("", id="search-status")
                table = DataTable(id="hits", cursor_type="row", zebra_stripes=True)
                table.add_columns("id", "score", "domain", "text")
                yield table
            with Vertical(id="concept-pane", classes="panel"):
                yield Static("select a hit (enter) to see its concept", id="concept")
                yield OptionList(id="relations")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#concept-pane").border_title = "concept"
        self.open_store()

    @work(exclusive=True, group="open", exit_on_error=False)
    async def open_store(self) -> None:
        try:
            self.store, self.embedder, stats = await self.app.in_library(open_store, self.app.store_path)
        except MeqgError as exc:
            self.query_one("#store-stats", Static).update(Text(f"store not opened: {exc}", "bold red"))
            return
        self.concepts = stats["concepts"]
        self.query_one("#store-stats", Static).update(stats_text(stats, self.app.store_path))
        self.query_one("#query", Input).focus()
        status = self.query_one("#search-status", Static)
        status.update(Text(f"loading the search index of {self.concepts:,} concepts ...", "italic"))
        await self.app.in_library(warm_up, self.store, self.embedder)  # searches typed meanwhile wait behind it
        self.index_ready = True
        if status.content.plain.startswith("loading the search index"):
            status.update(Text("ready: type to search", "dim"))
        if self.query_one("#query", Input).value:
            self.search(self.query_one("#query", Input).value)

    @on(Input.Changed, "#query")
    def query_changed(self, event: Input.Changed) -> None:
        if self.store is not None:
            self.search(event.value)

    @on(Input.Submitted, "#query")
    def query_submitted(self) -> None:
        self.query_one("#hits", DataTable).focus()

    @work(exclusive=True, group="search", exit_on_error=False)
    async def search(self, query: str) -> None:
        """The latest query wins: a newer keystroke cancels this worker while it waits or searches."""
        status = self.query_one("#search-status", Static)
        if not query.strip():
            status.update("")
            self.query_one("#hits", DataTable).clear()
            return
        await asyncio.sleep(DEBOUNCE_S)
        status.update(Text(f"searching {self.concepts:,} concepts ...", "italic"))
        start = time.perf_counter()
        hits = await self.app.in_library(search, self.store, self.embedder, query, HITS)
        seconds = time.perf_counter() - start
        table = self.query_one("#hits", DataTable)
        table.clear()
        for hit in hits:
            subject = hit.subject
            table.add_row(
                str(subject.concept_id),
                f"{hit.score:.3f}",
                str(subject.domain),
                Text(first_line(subject.text)),
                key=str(subject.concept_id),
            )
        status.update(Text(f"{len(hits)} hits for {query!r} in {seconds * 1000:.0f} ms", "dim"))
        self.last_search = {"query": query, "hits": hits, "seconds": seconds}

    @on(DataTable.RowSelected, "#hits")
    def hit_selected(self, event: DataTable.RowSelected) -> None:
        self.path.clear()
        self.show_concept(int(event.row_key.value))

    @on(OptionList.OptionSelected, "#relations")
    def relation_followed(self, event: OptionList.OptionSelected) -> None:
        if self.concept_id is not None:
            self.path.append(self.concept_id)
        self.show_concept(int(event.option.id))

    def action_back(self) -> None:
        if self.path:
            self.show_concept(self.path.pop())

    def action_focus_search(self) -> None:
        self.query_one("#query", Input).focus()

    @work(exclusive=True, group="concept", exit_on_error=False)
    async def show_concept(self, concept_id: int) -> None:
        try:
            row, neighbors = await self.app.in_library(concept_with_neighbors, self.store, concept_id)
        except MeqgError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.concept_id = concept_id
        self.query_one("#concept", Static).update(concept_text(row, len(self.path)))
        relations = self.query_one("#relations", OptionList)
        relations.clear_options()
        relations.add_options(
            [
                Option(
                    Text.assemble(
                        (f"{kind:>11} ", "bold cyan"), f"-> {target['concept_id']}  ", first_line(target["text"])
                    ),
                    id=str(target["concept_id"]),
                )
                for kind, _, target in neighbors
            ]
        )
        if relations.option_count:
            relations.highlighted = 0
        relations.focus()


def open_store(path):
    """The store, the embedder its vectors came from, and its stats (on the library thread)."""
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.encoder import default_embedder

    store = ConceptStore.open(path)
    embedder = default_embedder()
    store.check_model(embedder.name, embedder.dim)
    return store, embedder, store.stats()


def warm_up(store, embedder) -> None:
    """Load the search index and run the encoder once: the first search would wait for both (9 s for a
    1M-concept store here)."""
    store.nearest(embedder.encode(["warm up"])[0], 1)


def search(store, embedder, query: str, k: int) -> list:
    """`meqg store search`'s hits: subjects, each by its best own or attached vector."""
    from meqg_mlx.concepts.search import search_subjects

    return search_subjects(store, embedder.encode([query])[0], k)


def concept_with_neighbors(store, concept_id: int) -> tuple[dict, list]:
    rows = store.get([concept_id])
    if not rows:
        raise MeqgError(f"no concept with id {concept_id} in {store.uri}")
    return rows[0], store.neighbors(concept_id)


def first_line(text: str, width: int = 100) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def stats_text(stats: dict, path) -> Text:
    """The store at a glance: counts, relations by type, kinds, validation, index, domains."""

    def pairs(values: dict) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in values.items())

    return Text.assemble(
        (str(path), "bold"),
        f"  {stats['concepts']:,} concepts, {stats['relations']:,} relations,",
        f" {stats['dim']}-d {stats['origin_model']}\n",
        ("relations ", "dim"),
        pairs(stats["relation_types"]) or "none",
        "\n",
        ("kinds ", "dim"),
        pairs(stats["kinds"]),
        ("  validation ", "dim"),
        pairs(stats["validation"]),
        ("  index ", "dim"),
        stats["index"],
        "\n",
        ("domains ", "dim"),
        "  ".join(f"{d['domain']}:{d['label']} ({d['count']:,})" for d in stats["domains"]),
    )


def concept_text(row: dict, depth: int) -> Text:
    fields = Text.assemble(
        (f"#{row['concept_id']}", "bold"),
        f"  {row['kind']}  source {row['source']}  domain {row['domain']}  validation {row['validation']}",
        f"  (backspace: back, {depth} deep)" if depth else "",
        "\n",
        (f"key {row['key']}\n", "dim") if row.get("key") else "",
        "\n",
        row["text"],
    )
    return fields
